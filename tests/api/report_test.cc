// Settings and reports as a user meets them, in processes of their own (each
// test runs this binary again with --child NAME and a chosen environment):
// JSMALLOC_OPTIONS and its precedence, warnings for unknown names, relative
// report paths, the stats report on a signal written by the report thread
// (also in a forked child), and the width of the per-class table.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <jsmalloc/jsmalloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace {

std::string g_exe;

std::string ExeName() { return g_exe.substr(g_exe.rfind('/') + 1); }

std::string TmpDir() {
  static std::string dir = [] {
    char tmpl[] = "/tmp/jsmalloc-report-test.XXXXXX";
    const char* d = mkdtemp(tmpl);
    return std::string(d != nullptr ? d : "/tmp");
  }();
  return dir;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

struct ChildResult {
  int status = -1;
  std::string out, err;
};

// Runs this binary with --child NAME in `cwd`, with the test's JSMALLOC_*
// variables removed and `env` added.
ChildResult RunChild(const std::string& name, const std::vector<std::string>& env, const std::string& cwd = "") {
  static int n = 0;
  std::string base = TmpDir() + "/child" + std::to_string(++n);
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) {
    if (strncmp(*e, "JSMALLOC_", 9) != 0) envs.push_back(*e);
  }
  envs.push_back("REPORT_TEST_DIR=" + TmpDir());
  // The front-end under test (CTest runs the set once per mode).
  if (const char* mode = getenv("JSMALLOC_TEST_PER_CPU")) envs.push_back(std::string("JSMALLOC_PER_CPU=") + mode);
  for (const std::string& e : env) envs.push_back(e);
  pid_t pid = fork();
  if (pid == 0) {
    int out = open((base + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open((base + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    std::vector<char*> argv = {g_exe.data(), const_cast<char*>("--child"), const_cast<char*>(name.c_str()), nullptr};
    std::vector<char*> envp;
    for (std::string& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    execve(g_exe.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  ChildResult r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = ReadFile(base + ".out");
  r.err = ReadFile(base + ".err");
  return r;
}

size_t Prop(const char* name) {
  size_t v = 0;
  return jsmalloc_get_numeric_property(name, &v) ? v : SIZE_MAX;
}

// Waits (without allocating) until a property reaches `want`; false after 30 s.
bool WaitForProperty(const char* name, size_t want) {
  for (int i = 0; i < 3000; ++i) {
    if (Prop(name) == want) return true;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  return false;
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// ---- Children ------------------------------------------------------------------

// Keeps some memory live, asks for a report by signal, and waits without
// allocating: only the report thread can write it. Then the same in a forked
// child, which has a report thread of its own.
int ChildStatsSignal() {
  std::vector<void*> keep;
  for (int i = 0; i < 2000; ++i) keep.push_back(malloc(100 + i));
  raise(SIGUSR1);
  if (!WaitForProperty("jsmalloc.signal_stats_reports", 1)) return 10;
  pid_t child = fork();
  if (child == 0) {
    kill(getpid(), SIGUSR1);
    _exit(WaitForProperty("jsmalloc.signal_stats_reports", 2) ? 0 : 11);
  }
  int st = 0;
  waitpid(child, &st, 0);
  printf("pids %d %d\n", static_cast<int>(getpid()), static_cast<int>(child));
  for (void* p : keep) free(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 12;
}

// Reports at exit after leaving the directory the relative path was given in.
int ChildRelative() {
  if (chdir("/") != 0) return 10;
  void* p = malloc(1000);
  free(p);
  return 0;
}

int ChildProperties() {
  printf("interval %zu\nguarded_rate %zu\nbackground %zu\n", Prop("jsmalloc.sampling.interval"),
         Prop("jsmalloc.guarded.rate"), Prop("jsmalloc.background_thread_running"));
  return 0;
}

int ChildReport() {
  std::vector<void*> keep;
  for (size_t size = 8; size <= 256 * 1024; size += size / 4 + 8) keep.push_back(malloc(size));
  size_t n = jsmalloc_get_stats(nullptr, 0);
  std::string report(n + 1, '\0');
  jsmalloc_get_stats(report.data(), report.size());
  report.resize(n);
  fputs(report.c_str(), stdout);
  for (void* p : keep) free(p);
  return 0;
}

// The per-class table: from its title to the next rule.
std::string ClassTable(const std::string& report) {
  size_t from = report.find("Size classes");
  size_t to = report.find("-----", from);
  return from == std::string::npos ? "" : report.substr(from, to - from);
}

// The size (second column) of each row: the classes the table lists.
std::vector<long> ClassRows(const std::string& table) {
  std::vector<long> sizes;
  std::istringstream in(table);
  for (std::string line; std::getline(in, line);) {
    long cl, size;
    if (sscanf(line.c_str(), "%ld %ld", &cl, &size) == 2) sizes.push_back(size);
  }
  return sizes;
}

size_t Widest(const std::string& text) {
  size_t widest = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) widest = std::max(widest, line.size());
  return widest;
}

// ---- Tests ---------------------------------------------------------------------

TEST(Settings, OptionsStringAndVariablesTogether) {
  ChildResult c = RunChild("properties", {"JSMALLOC_OPTIONS=sample_interval=1M,guarded_rate=7,background=1",
                                          "JSMALLOC_SAMPLE_INTERVAL=64K"});
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_NE(c.out.find("interval 65536\n"), std::string::npos) << "the variable wins: " << c.out;
  EXPECT_NE(c.out.find("guarded_rate 7\n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("background 1\n"), std::string::npos) << c.out;
  EXPECT_EQ(c.err, "");
}

TEST(Settings, UnknownAndMalformedSettingsWarnOnceEach) {
  ChildResult c = RunChild("properties", {"JSMALLOC_SAMPLEINTERVAL=1", "JSMALLOC_GUARDED_RATE=abc",
                                          "JSMALLOC_OPTIONS=backgrund=1", "JSMALLOC_STATS_SIGNAL=KILL"});
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(Count(c.err, "\n"), 4) << c.err;
  EXPECT_EQ(Count(c.err, "did you mean JSMALLOC_SAMPLE_INTERVAL?"), 1) << c.err;
  EXPECT_EQ(Count(c.err, "did you mean background?"), 1) << c.err;
  EXPECT_EQ(Count(c.err, "JSMALLOC_GUARDED_RATE='abc': expected a whole number"), 1) << c.err;
  EXPECT_EQ(Count(c.err, "JSMALLOC_STATS_SIGNAL='KILL': expected a signal number or name"), 1) << c.err;
  EXPECT_NE(c.out.find("interval 2097152\n"), std::string::npos) << "defaults kept: " << c.out;
  EXPECT_NE(c.out.find("guarded_rate 0\n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("background 0\n"), std::string::npos) << c.out;
}

TEST(Reports, RelativeStatsPathIsTheStartingDirectorys) {
  std::string dir = TmpDir() + "/relative";
  ASSERT_EQ(system(("mkdir -p " + dir).c_str()), 0);
  ChildResult c = RunChild("relative", {"JSMALLOC_STATS_ON_EXIT=report.txt"}, dir);
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(c.err, "");
  std::string report = ReadFile(dir + "/report.txt");
  EXPECT_EQ(Count(report, "JSMalloc "), 1) << report;
  EXPECT_NE(report.find(" (" + ExeName() + ") ("), std::string::npos) << "program name in the banner: " << report.substr(0, 200);
}

TEST(Reports, SignalReportIsWrittenByTheReportThreadAlsoAfterFork) {
  std::string path = TmpDir() + "/signal.txt";
  unlink(path.c_str());
  ChildResult c = RunChild("stats_signal", {"JSMALLOC_STATS_SIGNAL=SIGUSR1", "JSMALLOC_STATS_FILE=" + path});
  ASSERT_EQ(c.status, 0) << c.out << c.err;
  EXPECT_EQ(c.err, "");
  int parent = 0, child = 0;
  ASSERT_EQ(sscanf(c.out.c_str(), "pids %d %d", &parent, &child), 2) << c.out;
  std::string report = ReadFile(path);
  EXPECT_EQ(Count(report, "\nJSMalloc ") + (report.rfind("JSMalloc ", 0) == 0 ? 1 : 0), 2) << report;
  EXPECT_NE(report.find("JSMalloc " JSMALLOC_VERSION_STRING " pid " + std::to_string(parent) + " (" + ExeName() + ") ("),
            std::string::npos);
  EXPECT_NE(report.find("JSMalloc " JSMALLOC_VERSION_STRING " pid " + std::to_string(child) + " (" + ExeName() + ") ("),
            std::string::npos);
  EXPECT_EQ(Count(report, "Hugepage coverage: "), 2);
}

TEST(Reports, ClassTableFitsHundredColumnsUnlessWideIsAsked) {
  // Sampling off: a sampled object has a span of its own, outside its class.
  ChildResult narrow = RunChild("report", {"JSMALLOC_SAMPLE_INTERVAL=0"});
  ASSERT_EQ(narrow.status, 0) << narrow.err;
  std::string table = ClassTable(narrow.out);
  ASSERT_NE(table, "") << narrow.out;
  EXPECT_GT(Count(table, "\n"), 20) << table;
  EXPECT_LE(Widest(table), 100u) << table;
  EXPECT_EQ(table.find("objs/span"), std::string::npos);

  ChildResult wide = RunChild("report", {"JSMALLOC_STATS_WIDE=1", "JSMALLOC_SAMPLE_INTERVAL=0"});
  ASSERT_EQ(wide.status, 0) << wide.err;
  std::string wtable = ClassTable(wide.out);
  EXPECT_NE(wtable.find("objs/span"), std::string::npos) << wtable;
  EXPECT_NE(wtable.find("cumulative_spans"), std::string::npos) << wtable;
  EXPECT_EQ(ClassRows(wtable), ClassRows(table)) << "the same classes in both forms";
}

TEST(Reports, NoLineContradictsAnother) {
  // The back-end line once said "26.0 MiB released; 0.0 MiB released in
  // total": bytes never touched were called released.
  ChildResult c = RunChild("report", {});
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(c.out.find("released in total"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("not backed (released, or never touched)"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find(" MiB given back to the OS since start"), std::string::npos) << c.out;
}

}  // namespace

int main(int argc, char** argv) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  g_exe = n > 0 ? std::string(self, static_cast<size_t>(n)) : argv[0];
  if (argc == 3 && strcmp(argv[1], "--child") == 0) {
    std::string name = argv[2];
    if (name == "stats_signal") return ChildStatsSignal();
    if (name == "relative") return ChildRelative();
    if (name == "properties") return ChildProperties();
    if (name == "report") return ChildReport();
    fprintf(stderr, "unknown child %s\n", name.c_str());
    return 100;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
