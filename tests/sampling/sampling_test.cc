// The process-wide heap sampler (this binary links libjsmalloc): estimates
// for allocation sites that allocate known amounts, the three profiles and
// google-pprof on them, the environment variables (in child processes of this
// binary, started with --child NAME), sampling off, threads and fork.
//
// The allocating functions live in sections of their own
// ("sampling_site_<name>"), so a test knows the exact address range of each
// and can attribute every profile line by its first frame.
#include "run_command.h"
#include <gtest/gtest.h>
#include <jsmalloc/jsmalloc.h>
#include <jsmalloc/malloc_extension.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <new>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#define SITE_SECTION(name) __attribute__((noinline, section("sampling_site_" #name)))
#define DECLARE_SITE(name)                                                               \
  extern "C" const char __start_sampling_site_##name[] __attribute__((visibility("hidden"))); \
  extern "C" const char __stop_sampling_site_##name[] __attribute__((visibility("hidden")));
#define SITE_RANGE(name)                                                                   \
  SiteRange {                                                                              \
    #name, reinterpret_cast<uintptr_t>(__start_sampling_site_##name),                     \
        reinterpret_cast<uintptr_t>(__stop_sampling_site_##name)                          \
  }

DECLARE_SITE(known)
DECLARE_SITE(peak)
DECLARE_SITE(after_peak)
DECLARE_SITE(churn)
DECLARE_SITE(keep)
DECLARE_SITE(before)
DECLARE_SITE(leak)
DECLARE_SITE(signal)
DECLARE_SITE(entry)
DECLARE_SITE(new_site)

namespace {

constexpr size_t kMiB = size_t{1} << 20;

struct SiteRange {
  std::string name;
  uintptr_t lo, hi;
  bool Contains(uintptr_t pc) const { return pc >= lo && pc < hi; }
};

// ---- Allocation sites ------------------------------------------------------------

// `n` objects of `size` bytes into slots[] with malloc.
SITE_SECTION(known) void AllocateKnownAmount(void** slots, size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) slots[i] = malloc(size);
}
SITE_SECTION(peak) void PeakSite(void** slots, size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) slots[i] = malloc(size);
}
SITE_SECTION(after_peak) void AfterPeakSite(void** slots, size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) slots[i] = malloc(size);
}
SITE_SECTION(keep) void KeepSite(void** slots, size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) slots[i] = malloc(size);
}
SITE_SECTION(before) void BeforeSite(void** slots, size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) slots[i] = malloc(size);
}
SITE_SECTION(leak) void LeakSite(void** slots, size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) slots[i] = malloc(size);
}
SITE_SECTION(signal) void SignalSite(void** slots, size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) slots[i] = malloc(size);
}
// Allocates and frees `total` bytes in objects of `size`, a few live at a time.
SITE_SECTION(churn) void ChurnSite(size_t total, size_t size) {
  void* ring[16] = {};
  for (size_t i = 0; i < total / size; ++i) {
    free(ring[i % 16]);
    ring[i % 16] = malloc(size);
    static_cast<char*>(ring[i % 16])[0] = 1;
  }
  for (void* p : ring) free(p);
}
SITE_SECTION(new_site) void NewSite(char** slots, size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) slots[i] = new char[size];
}

// ---- Helpers ------------------------------------------------------------------------

std::string Exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  return buf;
}

const std::string& TmpDir() {
  static std::string dir = [] {
    char d[] = "/tmp/jsmalloc-sampling-XXXXXX";
    if (mkdtemp(d) == nullptr) abort();
    return std::string(d);
  }();
  return dir;
}

std::string Tmp(const std::string& name) { return TmpDir() + "/" + name; }

// A numeric property; SIZE_MAX if the name is unknown.
size_t Prop(const char* name) {
  size_t v = 0;
  return jsmalloc_get_numeric_property(name, &v) == 1 ? v : SIZE_MAX;
}

class ScopedInterval {
 public:
  explicit ScopedInterval(size_t bytes) : old_(jsmalloc_get_sample_interval()) {
    jsmalloc_set_sample_interval(bytes);
  }
  ~ScopedInterval() { jsmalloc_set_sample_interval(old_); }

 private:
  size_t old_;
};

struct ProfileLine {
  size_t count = 0, bytes = 0, count2 = 0, bytes2 = 0;
  std::vector<uintptr_t> pcs;
};

struct Profile {
  bool ok = false;
  size_t interval = 0;
  size_t total_count = 0, total_bytes = 0;
  std::vector<ProfileLine> lines;
  std::string maps;
};

Profile ParseProfile(const std::string& path) {
  Profile p;
  std::ifstream f(path);
  std::string line;
  if (!std::getline(f, line)) return p;
  std::smatch m;
  if (!std::regex_match(line, m,
                        std::regex(R"(heap profile:\s*(\d+):\s+(\d+)\s+\[\s*(\d+):\s+(\d+)\]\s+@\s+heap_v2/(\d+))"))) {
    return p;
  }
  p.total_count = std::stoull(m[1]);
  p.total_bytes = std::stoull(m[2]);
  p.interval = std::stoull(m[5]);
  const std::regex entry(R"(\s*(\d+):\s+(\d+)\s+\[\s*(\d+):\s+(\d+)\]\s+@((\s+0x[0-9a-f]+)+))");
  while (std::getline(f, line)) {
    if (line.empty()) break;
    if (!std::regex_match(line, m, entry)) return p;
    ProfileLine l;
    l.count = std::stoull(m[1]);
    l.bytes = std::stoull(m[2]);
    l.count2 = std::stoull(m[3]);
    l.bytes2 = std::stoull(m[4]);
    std::istringstream addrs(m[5].str());
    std::string a;
    while (addrs >> a) l.pcs.push_back(std::stoull(a, nullptr, 16));
    p.lines.push_back(l);
  }
  if (!std::getline(f, line) || line != "MAPPED_LIBRARIES:") return p;
  std::stringstream rest;
  rest << f.rdbuf();
  p.maps = rest.str();
  p.ok = true;
  return p;
}

// pprof's heap_v2 unsampling of one line.
double Unsampled(const ProfileLine& l, size_t interval) {
  if (l.count == 0) return 0;
  double avg = static_cast<double>(l.bytes) / static_cast<double>(l.count);
  return static_cast<double>(l.bytes) / (-std::expm1(-avg / static_cast<double>(interval)));
}

// Estimated bytes of the lines whose innermost frame lies in the site.
double SiteBytes(const Profile& p, const SiteRange& s) {
  double sum = 0;
  for (const ProfileLine& l : p.lines) {
    if (!l.pcs.empty() && s.Contains(l.pcs[0])) sum += Unsampled(l, p.interval);
  }
  return sum;
}

bool HavePprof() { return system("command -v google-pprof > /dev/null 2>&1") == 0; }

// `google-pprof --text [flags] BINARY PROFILE`, stderr included.
std::string Pprof(const std::string& profile, const std::string& flags = "") {
  return RunCommand("google-pprof --text " + flags + " " + Exe() + " " + profile + " 2>&1");
}

// The first row of pprof's table (the largest flat entry) and its MB.
std::string TopRow(const std::string& out, double* mb = nullptr) {
  std::istringstream in(out);
  std::string line;
  bool table = false;
  while (std::getline(in, line)) {
    if (line.rfind("Total:", 0) == 0) {
      table = true;
      continue;
    }
    if (table && !line.empty()) {
      if (mb != nullptr) *mb = std::atof(line.c_str());
      return line;
    }
  }
  return "";
}

// The flat MB pprof gives a function (0 when it is not listed).
double PprofMB(const std::string& out, const std::string& function) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(function) != std::string::npos && line.find('%') != std::string::npos) {
      return std::atof(line.c_str());
    }
  }
  return 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Children write their site ranges (their addresses differ: ASLR) and
// property values here; the parent reads them back.
void WriteKeyValues(const std::string& path, const std::map<std::string, std::string>& kv) {
  std::ofstream f(path);
  for (const auto& [k, v] : kv) f << k << " " << v << "\n";
}

std::map<std::string, std::string> ReadKeyValues(const std::string& path) {
  std::map<std::string, std::string> kv;
  std::ifstream f(path);
  std::string k, v;
  while (f >> k >> v) kv[k] = v;
  return kv;
}

void AddSite(std::map<std::string, std::string>* kv, const SiteRange& s) {
  (*kv)["site." + s.name + ".lo"] = std::to_string(s.lo);
  (*kv)["site." + s.name + ".hi"] = std::to_string(s.hi);
}

SiteRange ChildSite(const std::map<std::string, std::string>& kv, const std::string& name) {
  SiteRange s{name, 0, 0};
  auto lo = kv.find("site." + name + ".lo");
  auto hi = kv.find("site." + name + ".hi");
  if (lo != kv.end() && hi != kv.end()) {
    s.lo = std::stoull(lo->second);
    s.hi = std::stoull(hi->second);
  }
  return s;
}

struct ChildResult {
  int status = -1;  // exit code, or -signal
  std::string err;  // its stderr
};

// Runs this binary with --child NAME and extra environment variables (and
// JSMALLOC_* from the test's environment removed first).
ChildResult RunChild(const std::string& name, const std::vector<std::string>& env) {
  ChildResult r;
  std::string err_path = Tmp("child-" + name + ".stderr");
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) {
    if (strncmp(*e, "JSMALLOC_", 9) != 0) envs.push_back(*e);
  }
  envs.push_back("SAMPLING_TEST_DIR=" + TmpDir());
  for (const std::string& e : env) envs.push_back(e);
  std::string exe = Exe();
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) dup2(fd, 2);
    std::vector<char*> argv = {const_cast<char*>(exe.c_str()), const_cast<char*>("--child"),
                               const_cast<char*>(name.c_str()), nullptr};
    std::vector<char*> envp;
    for (std::string& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    execve(exe.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
  r.err = ReadFile(err_path);
  return r;
}

// ---- (b) a known amount from a known function --------------------------------------

// A profile written to a device or a FIFO goes through it: the dump once
// wrote a file beside the target and renamed it onto /dev/null, which left
// the machine with a regular file there.
TEST(HeapProfile, ADeviceOrAFifoIsWrittenThroughNotReplaced) {
  ScopedInterval interval(64 * 1024);
  std::vector<void*> keep;
  for (int i = 0; i < 1000; ++i) keep.push_back(malloc(4096));
  std::string fifo = Tmp("profile.fifo");
  unlink(fifo.c_str());
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << strerror(errno);
  std::string got;
  std::thread reader([&] {
    std::ifstream in(fifo);
    got.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  });
  EXPECT_EQ(jsmalloc_dump_heap_profile(fifo.c_str()), 1) << strerror(errno);
  reader.join();
  struct stat st;
  ASSERT_EQ(stat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced";
  EXPECT_NE(got.find("heap profile:"), std::string::npos) << got.substr(0, 200);
  unlink(fifo.c_str());
  for (void* p : keep) free(p);
}

TEST(HeapProfile, KnownAmountEstimatedWithinTenPercent) {
  // 200 MiB in 4 KiB objects. At 64 KiB a 4 KiB object is sampled with
  // probability 6%, about 3100 samples: the estimate's relative standard
  // deviation is 1.7%, so 10% is more than five of them.
  ScopedInterval interval(64 * 1024);
  constexpr size_t kObject = 4096, kTotal = 200 * kMiB, kN = kTotal / kObject;
  std::vector<void*> slots(kN);
  size_t live_before = Prop("jsmalloc.sampling.live_bytes_estimate");
  AllocateKnownAmount(slots.data(), kN, kObject);
  std::string path = Tmp("known.heap");
  ASSERT_EQ(jsmalloc_dump_heap_profile(path.c_str()), 1) << strerror(errno);
  Profile p = ParseProfile(path);
  ASSERT_TRUE(p.ok) << ReadFile(path).substr(0, 2000);
  EXPECT_EQ(p.interval, 64u * 1024);
  double est = SiteBytes(p, SITE_RANGE(known));
  EXPECT_NEAR(est / kTotal, 1.0, 0.10) << "estimated " << est / kMiB << " MiB";
  // Every sample of the site has the size asked for.
  for (const ProfileLine& l : p.lines) {
    if (SITE_RANGE(known).Contains(l.pcs[0])) {
      EXPECT_EQ(l.bytes, l.count * kObject);
    }
  }
  // The running estimate in the stats moved by about as much.
  double grew = double(Prop("jsmalloc.sampling.live_bytes_estimate")) - double(live_before);
  EXPECT_NEAR(grew / kTotal, 1.0, 0.10);
  EXPECT_GE(Prop("jsmalloc.sampling.live_samples"), 2000u);
  for (void* s : slots) free(s);
  EXPECT_LT(double(Prop("jsmalloc.sampling.live_bytes_estimate")), double(live_before) + 0.05 * kTotal);
}

// Sampled or not, a block reports the same usable size; a large aligned
// block rounded up to whole hugepages reports its whole span (the soak
// test's accounting once disagreed by the rounding of a sampled one).
TEST(HeapProfile, SampledLargeBlocksReportTheirWholeSpanAsUsable) {
  for (size_t interval : {size_t{1}, size_t{0}}) {  // every allocation sampled; none
    ScopedInterval scoped(interval);
    for (size_t align : {size_t{4096}, size_t{65536}}) {
      for (size_t size : {size_t{300} << 10, (size_t{2} << 20) + 1, (size_t{3} << 20) + 12345}) {
        size_t before = Prop("generic.current_allocated_bytes");
        void* p = nullptr;
        ASSERT_EQ(posix_memalign(&p, align, size), 0);
        void* start = nullptr;
        size_t span_bytes = 0;
        ASSERT_EQ(jsmalloc_get_span_extent(p, &start, &span_bytes), 1);
        EXPECT_EQ(start, p);
        EXPECT_EQ(malloc_usable_size(p), span_bytes) << "interval " << interval << " align " << align << " size " << size;
        EXPECT_EQ(Prop("generic.current_allocated_bytes") - before, span_bytes) << "what the stats count";
        free(p);
      }
    }
  }
}

// The same through operator new: the stack starts at the caller of new.
TEST(HeapProfile, OperatorNewSiteEstimatedWithinTenPercent) {
  ScopedInterval interval(64 * 1024);
  constexpr size_t kObject = 4000, kN = 50000;  // 200 MB
  std::vector<char*> slots(kN);
  NewSite(slots.data(), kN, kObject);
  std::string path = Tmp("new.heap");
  ASSERT_EQ(jsmalloc_dump_heap_profile(path.c_str()), 1);
  Profile p = ParseProfile(path);
  ASSERT_TRUE(p.ok);
  double est = SiteBytes(p, SITE_RANGE(new_site));
  EXPECT_NEAR(est / (kObject * kN), 1.0, 0.10);
  for (char* s : slots) delete[] s;
}

// At the default interval: 16 GiB allocated and freed in 4 KiB objects gives
// about 8000 samples in an allocation profile (1.1% standard deviation).
TEST(HeapProfile, DefaultIntervalEstimateIsUnbiased) {
  ASSERT_EQ(jsmalloc_get_sample_interval(), size_t{2} << 20) << "JSMALLOC_SAMPLE_INTERVAL set?";
  ASSERT_EQ(jsmalloc_start_allocation_profile(), 1);
  constexpr size_t kTotal = size_t{16} << 30;
  ChurnSite(kTotal, 4096);
  std::string path = Tmp("default.heap");
  ASSERT_EQ(jsmalloc_stop_allocation_profile(path.c_str()), 1);
  Profile p = ParseProfile(path);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.interval, size_t{2} << 20);
  EXPECT_NEAR(SiteBytes(p, SITE_RANGE(churn)) / double(kTotal), 1.0, 0.10);
}

// ---- (c) google-pprof names the allocating function first ---------------------------

TEST(HeapProfile, PprofNamesTheAllocatingFunctionFirst) {
  ASSERT_TRUE(HavePprof()) << "google-pprof not found: scripts/install-deps google-perftools";
  // At the default interval (about 100 samples of this site).
  constexpr size_t kObject = 4096, kTotal = 200 * kMiB, kN = kTotal / kObject;
  std::vector<void*> slots(kN);
  AllocateKnownAmount(slots.data(), kN, kObject);
  std::string path = Tmp("pprof.heap");
  ASSERT_EQ(jsmalloc_dump_heap_profile(path.c_str()), 1);
  std::string out = Pprof(path);
  double mb = 0;
  std::string top = TopRow(out, &mb);
  EXPECT_NE(top.find("AllocateKnownAmount"), std::string::npos) << out;
  // Four standard deviations at ~100 samples.
  EXPECT_NEAR(mb / (kTotal / double(kMiB)), 1.0, 0.4) << out;
  EXPECT_NE(out.find("Adjusting heap profiles for 1-in-2097152 sampling rate"), std::string::npos) << out;
  // The allocator's own frames are not in the stacks.
  std::string cum = Pprof(path, "--cum");
  EXPECT_EQ(cum.find("jsmalloc::"), std::string::npos) << cum;
  EXPECT_EQ(cum.find(" malloc\n"), std::string::npos) << cum;
  for (void* s : slots) free(s);
}

// ---- (d) allocation profile -----------------------------------------------------------

TEST(HeapProfile, AllocationProfileCountsEverySampleBetweenStartAndStop) {
  ScopedInterval interval(64 * 1024);
  std::string path = Tmp("alloc.heap");
  errno = 0;
  EXPECT_EQ(jsmalloc_stop_allocation_profile(path.c_str()), 0) << "none running";
  EXPECT_EQ(errno, EINVAL);
  constexpr size_t kObject = 4096;
  std::vector<void*> before(32 * kMiB / kObject), keep(32 * kMiB / kObject);
  BeforeSite(before.data(), before.size(), kObject);  // live, but allocated before the start
  ASSERT_EQ(jsmalloc_start_allocation_profile(), 1);
  EXPECT_EQ(jsmalloc_start_allocation_profile(), 0) << "already running";
  EXPECT_EQ(Prop("jsmalloc.sampling.allocation_profile_active"), 1u);
  ChurnSite(128 * kMiB, kObject);  // allocated and freed inside the window
  KeepSite(keep.data(), keep.size(), kObject);
  ASSERT_EQ(jsmalloc_stop_allocation_profile(path.c_str()), 1) << strerror(errno);
  EXPECT_EQ(Prop("jsmalloc.sampling.allocation_profile_active"), 0u);
  Profile p = ParseProfile(path);
  ASSERT_TRUE(p.ok);
  EXPECT_NEAR(SiteBytes(p, SITE_RANGE(churn)) / (128.0 * kMiB), 1.0, 0.10);
  EXPECT_NEAR(SiteBytes(p, SITE_RANGE(keep)) / (32.0 * kMiB), 1.0, 0.20);
  EXPECT_EQ(SiteBytes(p, SITE_RANGE(before)), 0.0);
  // Both column pairs hold the allocations: pprof's default view shows them.
  for (const ProfileLine& l : p.lines) {
    EXPECT_EQ(l.count, l.count2);
    EXPECT_EQ(l.bytes, l.bytes2);
  }
  if (HavePprof()) {
    std::string out = Pprof(path);
    EXPECT_NE(TopRow(out).find("ChurnSite"), std::string::npos) << out;
    EXPECT_EQ(out.find("BeforeSite"), std::string::npos) << out;
    EXPECT_NEAR(PprofMB(out, "KeepSite") / 33.554432, 1.0, 0.20) << out;
  } else {
    ADD_FAILURE() << "google-pprof not found: scripts/install-deps google-perftools";
  }
  // A second window starts empty.
  ASSERT_EQ(jsmalloc_start_allocation_profile(), 1);
  ASSERT_EQ(jsmalloc_stop_allocation_profile(path.c_str()), 1);
  Profile empty = ParseProfile(path);
  ASSERT_TRUE(empty.ok);
  EXPECT_EQ(SiteBytes(empty, SITE_RANGE(churn)), 0.0);
  for (void* s : before) free(s);
  for (void* s : keep) free(s);
}

// ---- (d) peak heap profile (in a fresh process) -----------------------------------------

int ChildPeak() {
  jsmalloc_set_sample_interval(64 * 1024);
  constexpr size_t kObject = 4096;
  std::vector<void*> peak(128 * kMiB / kObject), after(32 * kMiB / kObject);
  PeakSite(peak.data(), peak.size(), kObject);
  for (void* s : peak) free(s);
  AfterPeakSite(after.data(), after.size(), kObject);
  std::string dir = getenv("SAMPLING_TEST_DIR");
  if (!jsmalloc_dump_peak_heap_profile((dir + "/peak.heap").c_str())) return 2;
  if (!jsmalloc_dump_heap_profile((dir + "/now.heap").c_str())) return 3;
  std::map<std::string, std::string> kv;
  AddSite(&kv, SITE_RANGE(peak));
  AddSite(&kv, SITE_RANGE(after_peak));
  kv["peak_bytes_estimate"] = std::to_string(Prop("jsmalloc.sampling.peak_bytes_estimate"));
  kv["live_bytes_estimate"] = std::to_string(Prop("jsmalloc.sampling.live_bytes_estimate"));
  WriteKeyValues(dir + "/peak.txt", kv);
  for (void* s : after) free(s);
  return 0;
}

TEST(HeapProfile, PeakProfileHoldsTheLiveSetAtTheHighestPoint) {
  ChildResult c = RunChild("peak", {});
  ASSERT_EQ(c.status, 0) << c.err;
  auto kv = ReadKeyValues(Tmp("peak.txt"));
  SiteRange peak_site = ChildSite(kv, "peak"), after_site = ChildSite(kv, "after_peak");
  ASSERT_NE(peak_site.lo, 0u);
  Profile peak = ParseProfile(Tmp("peak.heap"));
  Profile now = ParseProfile(Tmp("now.heap"));
  ASSERT_TRUE(peak.ok);
  ASSERT_TRUE(now.ok);
  // At the peak: everything PeakSite allocated (all freed since), nothing of
  // what came after.
  EXPECT_NEAR(SiteBytes(peak, peak_site) / (128.0 * kMiB), 1.0, 0.10);
  EXPECT_EQ(SiteBytes(peak, after_site), 0.0);
  // Now: the reverse.
  EXPECT_EQ(SiteBytes(now, peak_site), 0.0);
  EXPECT_NEAR(SiteBytes(now, after_site) / (32.0 * kMiB), 1.0, 0.20);
  double peak_est = std::stod(kv["peak_bytes_estimate"]);
  EXPECT_NEAR(peak_est / (128.0 * kMiB), 1.0, 0.15);
  EXPECT_LT(std::stod(kv["live_bytes_estimate"]), peak_est / 2);
}

// ---- (e) JSMALLOC_HEAP_PROFILE_ON_EXIT -----------------------------------------------

int ChildLeak() {
  constexpr size_t kObject = 4096;
  static std::vector<void*> leak(64 * kMiB / kObject);
  LeakSite(leak.data(), leak.size(), kObject);
  std::map<std::string, std::string> kv;
  AddSite(&kv, SITE_RANGE(leak));
  WriteKeyValues(std::string(getenv("SAMPLING_TEST_DIR")) + "/leak.txt", kv);
  return 0;  // exit: the library destructor writes the profile
}

TEST(HeapProfile, ProfileOnExitIsWrittenAndReadable) {
  std::string path = Tmp("exit.heap");
  unlink(path.c_str());
  ChildResult c = RunChild("leak", {"JSMALLOC_HEAP_PROFILE_ON_EXIT=" + path, "JSMALLOC_SAMPLE_INTERVAL=64K"});
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(c.err, "");
  Profile p = ParseProfile(path);
  ASSERT_TRUE(p.ok) << ReadFile(path).substr(0, 1000);
  EXPECT_EQ(p.interval, 65536u);
  SiteRange leak = ChildSite(ReadKeyValues(Tmp("leak.txt")), "leak");
  EXPECT_NEAR(SiteBytes(p, leak) / (64.0 * kMiB), 1.0, 0.15);
  ASSERT_TRUE(HavePprof()) << "google-pprof not found: scripts/install-deps google-perftools";
  std::string out = Pprof(path);
  double mb = 0;
  EXPECT_NE(TopRow(out, &mb).find("LeakSite"), std::string::npos) << out;
  EXPECT_NEAR(mb / 67.108864, 1.0, 0.15) << out;
}

// ---- (f) sampling off ----------------------------------------------------------------

int ChildOff() {
  // Every entry point, small and large, on two threads.
  auto work = [] {
    std::vector<void*> v;
    for (int i = 0; i < 20000; ++i) {
      v.push_back(malloc(100 + i % 5000));
      v.push_back(new char[4096]);
      v.push_back(calloc(3, 1000));
      v.push_back(aligned_alloc(64, 2048));
      if (i % 100 == 0) v.push_back(malloc(1 << 20));
    }
    for (size_t i = 0; i < v.size(); ++i) {
      if (i % 5 == 1) delete[] static_cast<char*>(v[i]);
      else free(v[i]);
    }
  };
  std::thread t(work);
  work();
  t.join();
  ChurnSite(256 * kMiB, 4096);
  std::string dir = getenv("SAMPLING_TEST_DIR");
  std::map<std::string, std::string> kv;
  for (const char* n : {"jsmalloc.sampling.interval", "jsmalloc.sampling.samples_total",
                        "jsmalloc.sampling.live_samples", "jsmalloc.sampling.live_bytes_estimate",
                        "jsmalloc.sampling.peak_bytes_estimate"}) {
    kv[n] = std::to_string(Prop(n));
  }
  WriteKeyValues(dir + "/off.txt", kv);
  return jsmalloc_dump_heap_profile((dir + "/off.heap").c_str()) ? 0 : 2;
}

TEST(HeapProfile, IntervalZeroRecordsNothing) {
  ChildResult c = RunChild("off", {"JSMALLOC_SAMPLE_INTERVAL=0"});
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(c.err, "");
  auto kv = ReadKeyValues(Tmp("off.txt"));
  EXPECT_EQ(kv["jsmalloc.sampling.interval"], "0");
  EXPECT_EQ(kv["jsmalloc.sampling.samples_total"], "0");
  EXPECT_EQ(kv["jsmalloc.sampling.live_samples"], "0");
  EXPECT_EQ(kv["jsmalloc.sampling.live_bytes_estimate"], "0");
  EXPECT_EQ(kv["jsmalloc.sampling.peak_bytes_estimate"], "0");
  Profile p = ParseProfile(Tmp("off.heap"));
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.lines.size(), 0u);
  EXPECT_EQ(p.total_count, 0u);
  EXPECT_EQ(p.interval, size_t{2} << 20) << "the header keeps a usable interval";
}

TEST(HeapProfile, SetIntervalZeroStopsSamplingInTheCallingThread) {
  uint64_t before;
  {
    ScopedInterval off(0);
    EXPECT_EQ(Prop("jsmalloc.sampling.interval"), 0u);
    before = Prop("jsmalloc.sampling.samples_total");
    ChurnSite(512 * kMiB, 4096);
    EXPECT_EQ(Prop("jsmalloc.sampling.samples_total"), before);
  }
  // And on again.
  ScopedInterval on(64 * 1024);
  ChurnSite(64 * kMiB, 4096);
  EXPECT_GT(Prop("jsmalloc.sampling.samples_total"), before + 100);
}

// ---- Environment: bad values, the signal ---------------------------------------------

int ChildReportInterval() {
  std::map<std::string, std::string> kv;
  kv["interval"] = std::to_string(jsmalloc_get_sample_interval());
  WriteKeyValues(std::string(getenv("SAMPLING_TEST_DIR")) + "/interval.txt", kv);
  return 0;
}

TEST(HeapProfile, BadEnvironmentValuesWarnOnceAndKeepDefaults) {
  ChildResult c = RunChild("interval", {"JSMALLOC_SAMPLE_INTERVAL=12x"});
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(ReadKeyValues(Tmp("interval.txt"))["interval"], "2097152");
  EXPECT_EQ(std::count(c.err.begin(), c.err.end(), '\n'), 1) << c.err;
  EXPECT_NE(c.err.find("JSMALLOC_SAMPLE_INTERVAL='12x'"), std::string::npos) << c.err;
  c = RunChild("interval", {"JSMALLOC_SAMPLE_INTERVAL=64K", "JSMALLOC_HEAP_PROFILE_SIGNAL=9"});
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(ReadKeyValues(Tmp("interval.txt"))["interval"], "65536");
  EXPECT_EQ(std::count(c.err.begin(), c.err.end(), '\n'), 1) << c.err;
  EXPECT_NE(c.err.find("JSMALLOC_HEAP_PROFILE_SIGNAL='9'"), std::string::npos) << c.err;
}

int ChildSignal() {
  constexpr size_t kObject = 4096;
  std::vector<void*> keep(32 * kMiB / kObject);
  SignalSite(keep.data(), keep.size(), kObject);
  std::map<std::string, std::string> kv;
  AddSite(&kv, SITE_RANGE(signal));
  kv["pid"] = std::to_string(getpid());
  WriteKeyValues(std::string(getenv("SAMPLING_TEST_DIR")) + "/signal.txt", kv);
  raise(SIGUSR2);  // the handler only wakes the report thread
  // This thread allocates nothing while it waits: the report thread writes
  // the profile on its own (the property read and nanosleep do not allocate).
  int ok = 1;
  for (int i = 0; i < 3000 && ok != 0; ++i) {
    size_t dumps = 0;
    if (jsmalloc_get_numeric_property("jsmalloc.signal_heap_profiles", &dumps) && dumps == 1) ok = 0;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  for (void* s : keep) free(s);
  return ok;
}

TEST(HeapProfile, SignalDumpIsWrittenByTheReportThread) {
  std::string prefix = Tmp("sig");
  ChildResult c = RunChild("signal", {"JSMALLOC_HEAP_PROFILE_SIGNAL=12", "JSMALLOC_HEAP_PROFILE_PREFIX=" + prefix,
                                      "JSMALLOC_SAMPLE_INTERVAL=65536"});
  ASSERT_EQ(c.status, 0) << c.err;
  auto kv = ReadKeyValues(Tmp("signal.txt"));
  std::string path = prefix + "." + kv["pid"] + ".1.heap";
  EXPECT_NE(c.err.find("jsmalloc: heap profile written to " + path), std::string::npos) << c.err;
  Profile p = ParseProfile(path);
  ASSERT_TRUE(p.ok) << path;
  EXPECT_NEAR(SiteBytes(p, ChildSite(kv, "signal")) / (32.0 * kMiB), 1.0, 0.20);
}

// ---- Sampled objects behave like any others --------------------------------------------

struct Allocated {
  void* p;
  size_t requested;
};

// Fills out[] (the caller's array: nothing else here allocates); returns how
// many.
SITE_SECTION(entry) int AllocateThroughEveryEntryPoint(Allocated* out) {
  int n = 0;
  out[n++] = {malloc(1000), 1000};
  out[n++] = {calloc(10, 101), 1010};
  out[n++] = {realloc(nullptr, 1020), 1020};
  void* r = malloc(1030);
  out[n++] = {realloc(r, 3000), 3000};
  out[n++] = {memalign(64, 1040), 1040};
  out[n++] = {aligned_alloc(64, 1088), 1088};
  void* pm = nullptr;
  if (posix_memalign(&pm, 32768, 1050) == 0) out[n++] = {pm, 1050};
  out[n++] = {valloc(1060), 1060};
  out[n++] = {new char[1080], 1080};
  out[n++] = {new (std::align_val_t(256)) char[1090], 1090};
  out[n++] = {new (std::nothrow) char[1100], 1100};
  out[n++] = {operator new(1110), 1110};
  out[n++] = {malloc(300000), 300000};
  out[n++] = {malloc(3000000), 3000000};
  asm volatile("" ::: "memory");
  return n;
}

TEST(HeapProfile, EveryEntryPointIsAttributedToItsCaller) {
  // Interval 1: every allocation is sampled (probability 1 - e^-1000).
  Allocated a[32];
  int n;
  {
    ScopedInterval every(1);
    n = AllocateThroughEveryEntryPoint(a);
  }
  std::vector<Allocated> v(a, a + n);
  std::string path = Tmp("entry.heap");
  ASSERT_EQ(jsmalloc_dump_heap_profile(path.c_str()), 1);
  Profile p = ParseProfile(path);
  ASSERT_TRUE(p.ok);
  std::multiset<size_t> got, want;
  for (const ProfileLine& l : p.lines) {
    if (SITE_RANGE(entry).Contains(l.pcs[0])) {
      for (size_t i = 0; i < l.count; ++i) got.insert(l.bytes / l.count);
    }
  }
  for (const Allocated& e : v) want.insert(e.requested);
  EXPECT_EQ(got, want);
  EXPECT_EQ(n, 14);
  for (const Allocated& e : v) {
    if (e.requested == 1080 || e.requested == 1100) delete[] static_cast<char*>(e.p);
    else if (e.requested == 1090) operator delete[](e.p, std::align_val_t(256));
    else if (e.requested == 1110) operator delete(e.p);
    else free(e.p);
  }
}

TEST(HeapProfile, SampledObjectsHaveTheirOwnSpanAndNormalSizes) {
  void* plain;
  size_t plain_usable;
  {
    ScopedInterval off(0);
    plain = malloc(1000);
    plain_usable = malloc_usable_size(plain);
  }
  ScopedInterval every(1);
  uint64_t live_before = Prop("jsmalloc.sampling.live_samples");
  void* s = malloc(1000);
  EXPECT_EQ(Prop("jsmalloc.sampling.live_samples"), live_before + 1);
  EXPECT_EQ(malloc_usable_size(s), plain_usable) << "a sampled object keeps its class size";
  EXPECT_EQ(jsmalloc_get_allocated_size(s), plain_usable);
  EXPECT_EQ(jsmalloc_get_ownership(s), 1);
  void* start = nullptr;
  size_t bytes = 0;
  ASSERT_EQ(jsmalloc_get_span_extent(s, &start, &bytes), 1);
  EXPECT_EQ(start, s) << "its own span";
  EXPECT_EQ(bytes, Prop("jsmalloc.page_size"));
  memset(s, 0xab, 1000);
  // realloc within the usable size keeps it; beyond moves it.
  void* s2 = realloc(s, plain_usable);
  EXPECT_EQ(s2, s);
  void* s3 = realloc(s2, 5000);
  ASSERT_NE(s3, nullptr);
  EXPECT_EQ(static_cast<unsigned char*>(s3)[999], 0xab);
  // Alignments.
  void* a = aligned_alloc(4096, 5000);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 4096, 0u);
  void* b = nullptr;
  ASSERT_EQ(posix_memalign(&b, 1 << 20, 100), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % (1 << 20), 0u);
  void* c = calloc(1, 3000);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(static_cast<char*>(c)[i], 0);
  free(a);
  free(b);
  free(c);
  free(s3);
  EXPECT_EQ(Prop("jsmalloc.sampling.live_samples"), live_before);
  free(plain);
}

// Freed sampled small objects leave their spans to the next samples, up to a
// bound; malloc_trim gives them back; a double free is still caught.
TEST(HeapProfile, KeptSpansAreBoundedReleasedAndGuarded) {
  std::vector<void*> v;
  {
    ScopedInterval every(1);
    for (int i = 0; i < 64; ++i) v.push_back(malloc(100 + i));
  }
  for (void* p : v) free(p);
  size_t kept = Prop("jsmalloc.sampling.kept_span_bytes");
  EXPECT_GT(kept, 0u);
  EXPECT_LE(kept, 512u << 10);
  EXPECT_NE(jsmalloc::MallocExtension::GetStats().find("KiB) kept for samples"), std::string::npos);
  void* reused;
  {
    ScopedInterval every(1);
    reused = malloc(100);
  }
  void* start = nullptr;
  ASSERT_EQ(jsmalloc_get_span_extent(reused, &start, nullptr), 1);
  EXPECT_EQ(start, reused);
  free(reused);
  malloc_trim(0);
  EXPECT_EQ(Prop("jsmalloc.sampling.kept_span_bytes"), 0u);
  // Freeing a sampled object twice, while its span is kept: caught.
  EXPECT_DEATH(
      {
        void* p;
        {
          ScopedInterval every(1);
          p = malloc(200);
        }
        uintptr_t again = reinterpret_cast<uintptr_t>(p);
        free(p);
        free(reinterpret_cast<void*>(again));
      },
      "double free");
}

// ---- Threads that come and go, and fork -------------------------------------------------

TEST(HeapProfile, ThreadsAndForkWhileSampling) {
  ScopedInterval interval(4096);  // a sample every few allocations
  uint64_t live_before = Prop("jsmalloc.sampling.live_samples");
  uint64_t samples_before = Prop("jsmalloc.sampling.samples_total");
  std::atomic<bool> stop{false};
  auto worker = [&](unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<void*> ring(64, nullptr);
    for (int i = 0; i < 20000 && !stop.load(std::memory_order_relaxed); ++i) {
      size_t k = rng() % ring.size();
      free(ring[k]);
      size_t size = rng() % 8 == 0 ? 1 + rng() % 600000 : 1 + rng() % 2048;
      ring[k] = malloc(size);
      static_cast<char*>(ring[k])[0] = 1;
    }
    for (void* p : ring) free(p);
  };
  for (int round = 0; round < 3; ++round) {
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < 4; ++t) threads.emplace_back(worker, round * 10 + t);
    // fork() while they allocate: the child allocates, dumps and exits.
    for (int f = 0; f < 2; ++f) {
      std::string path = Tmp("fork." + std::to_string(round) + "." + std::to_string(f) + ".heap");
      pid_t pid = fork();
      if (pid == 0) {
        std::vector<void*> v;
        for (int i = 0; i < 2000; ++i) v.push_back(malloc(1 + i % 3000));
        int ok = jsmalloc_dump_heap_profile(path.c_str());
        for (void* p : v) free(p);
        _exit(ok ? 0 : 1);
      }
      int st = 0;
      ASSERT_EQ(waitpid(pid, &st, 0), pid);
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
      EXPECT_TRUE(ParseProfile(path).ok) << path;
    }
    for (auto& t : threads) t.join();
  }
  EXPECT_GT(Prop("jsmalloc.sampling.samples_total"), samples_before + 1000);
  // Everything the workers sampled has been freed (a few samples may be
  // thread bookkeeping that outlives the threads).
  EXPECT_LE(Prop("jsmalloc.sampling.live_samples"), live_before + 8);
}

// ---- Stats, properties and the C++ wrappers ---------------------------------------------

TEST(HeapProfile, StatsReportPropertiesAndExtension) {
  using jsmalloc::MallocExtension;
  EXPECT_EQ(MallocExtension::GetProfileSamplingInterval(), jsmalloc_get_sample_interval());
  {
    size_t old = MallocExtension::GetProfileSamplingInterval();
    MallocExtension::SetProfileSamplingInterval(123456);
    EXPECT_EQ(MallocExtension::GetProfileSamplingInterval(), 123456u);
    EXPECT_EQ(Prop("jsmalloc.sampling.interval"), 123456u);
    MallocExtension::SetProfileSamplingInterval(old);
  }
  std::string report = MallocExtension::GetStats();
  EXPECT_NE(report.find("Sampling: one allocation per 2097152 bytes"), std::string::npos) << report;
  EXPECT_NE(report.find("samples taken"), std::string::npos);
  auto props = MallocExtension::GetProperties();
  for (const char* n : {"jsmalloc.sampling.interval", "jsmalloc.sampling.samples_total",
                        "jsmalloc.sampling.live_samples", "jsmalloc.sampling.live_bytes_estimate",
                        "jsmalloc.sampling.live_objects_estimate", "jsmalloc.sampling.peak_bytes_estimate",
                        "jsmalloc.sampling.allocation_profile_active", "jsmalloc.sampling.kept_span_bytes"}) {
    EXPECT_EQ(props.count(n), 1u) << n;
  }
  EXPECT_LE(props["jsmalloc.sampling.live_bytes_estimate"], props["jsmalloc.sampling.peak_bytes_estimate"]);
  EXPECT_LE(props["jsmalloc.sampling.live_samples"], props["jsmalloc.sampling.samples_total"]);
  std::string a = Tmp("ext.heap"), b = Tmp("ext.peak.heap"), c = Tmp("ext.alloc.heap");
  EXPECT_TRUE(MallocExtension::DumpHeapProfile(a));
  EXPECT_TRUE(MallocExtension::DumpPeakHeapProfile(b));
  EXPECT_TRUE(MallocExtension::StartAllocationProfile());
  EXPECT_TRUE(MallocExtension::StopAllocationProfile(c));
  EXPECT_FALSE(MallocExtension::StopAllocationProfile(c));
  EXPECT_TRUE(ParseProfile(a).ok && ParseProfile(b).ok && ParseProfile(c).ok);
  EXPECT_FALSE(MallocExtension::DumpHeapProfile("/nonexistent-dir/x.heap"));
  // malloc_info carries the sampling properties as well.
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  ASSERT_EQ(malloc_info(0, f), 0);
  fclose(f);
  EXPECT_NE(std::string(buf, len).find("jsmalloc.sampling.samples_total"), std::string::npos);
  free(buf);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "--child") == 0) {
    std::string name = argv[2];
    if (name == "peak") return ChildPeak();
    if (name == "leak") return ChildLeak();
    if (name == "off") return ChildOff();
    if (name == "interval") return ChildReportInterval();
    if (name == "signal") return ChildSignal();
    fprintf(stderr, "unknown child %s\n", name.c_str());
    return 100;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
