#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/env_options.h"
#include "base/internal_printer.h"

namespace jsmalloc {
namespace {

TEST(PrinterTest, FormatsAndCountsTruncatedOutput) {
  char buf[16];
  Printer p(buf, sizeof(buf));
  p.Str("a=").U(1234).Char(' ').I(-5).Char(' ').Hex(255);
  EXPECT_STREQ(buf, "a=1234 -5 0xff");
  p.Str("0123456789");
  EXPECT_EQ(p.needed(), 24u);
  EXPECT_EQ(std::string(buf).size(), 15u) << "truncated, NUL-terminated";
  char big[64];
  Printer q(big, sizeof(big));
  q.F(3.14159, 2).Char('|').UW(42, 5).Char('|').StrW("ab", 4).Char('|').MiB(3 << 20);
  EXPECT_STREQ(big, "3.14|   42|ab  |3.0");
}

TEST(EnvOptionsTest, ParseSize) {
  size_t v = 7;
  EXPECT_TRUE(ParseSize("1048576", &v));
  EXPECT_EQ(v, 1048576u);
  EXPECT_TRUE(ParseSize("64K", &v));
  EXPECT_EQ(v, 65536u);
  EXPECT_TRUE(ParseSize("32MiB", &v));
  EXPECT_EQ(v, size_t{32} << 20);
  EXPECT_TRUE(ParseSize("2g", &v));
  EXPECT_EQ(v, size_t{2} << 30);
  v = 7;
  EXPECT_FALSE(ParseSize("", &v));
  EXPECT_FALSE(ParseSize("abc", &v));
  EXPECT_FALSE(ParseSize("12Q", &v));
  EXPECT_FALSE(ParseSize("-1", &v));
  EXPECT_FALSE(ParseSize("99999999999999999999999", &v));
  EXPECT_FALSE(ParseSize("17179869184G", &v)) << "overflow on shift";
  EXPECT_EQ(v, 7u) << "bad input leaves the value alone";
}

TEST(EnvOptionsTest, ParseBool) {
  bool b = false;
  EXPECT_TRUE(ParseBool("1", &b));
  EXPECT_TRUE(b);
  EXPECT_TRUE(ParseBool("off", &b));
  EXPECT_FALSE(b);
  EXPECT_FALSE(ParseBool("maybe", &b));
  EXPECT_FALSE(b);
}

TEST(EnvOptionsTest, BadValueWarnsOnceAndKeepsDefault) {
  setenv("JSMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES", "lots", 1);
  setenv("JSMALLOC_STATS_ON_EXIT", "1", 1);
  Options o;
  ::testing::internal::CaptureStderr();
  ParseOptions(&o);
  std::string err = ::testing::internal::GetCapturedStderr();
  unsetenv("JSMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES");
  unsetenv("JSMALLOC_STATS_ON_EXIT");
  EXPECT_EQ(o.max_total_thread_cache_bytes, Options().max_total_thread_cache_bytes);
  EXPECT_TRUE(o.stats_on_exit);
  EXPECT_NE(err.find("JSMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES='lots'"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

// ParseOptionsFrom over a made-up environment; returns what it printed.
std::string Parse(std::vector<std::string> env, Options* o) {
  std::vector<char*> block;
  for (std::string& e : env) block.push_back(e.data());
  block.push_back(nullptr);
  ::testing::internal::CaptureStderr();
  ParseOptionsFrom(block.data(), o);
  return ::testing::internal::GetCapturedStderr();
}

bool SameOptions(const Options& a, const Options& b) {
  return a.stats_on_exit == b.stats_on_exit && strcmp(a.stats_file, b.stats_file) == 0 &&
         a.stats_signal == b.stats_signal && a.stats_wide == b.stats_wide && a.per_cpu == b.per_cpu &&
         a.max_per_cpu_cache_bytes == b.max_per_cpu_cache_bytes &&
         a.max_total_thread_cache_bytes == b.max_total_thread_cache_bytes &&
         a.page_heap_keep_free_bytes == b.page_heap_keep_free_bytes && a.legacy_page_heap == b.legacy_page_heap &&
         a.collapse == b.collapse && a.large_huge == b.large_huge && a.khugepaged_guard == b.khugepaged_guard &&
         a.release_with_madv_free == b.release_with_madv_free && a.background == b.background &&
         a.release_delay == b.release_delay &&
         a.release_rate == b.release_rate && a.io_uring == b.io_uring && a.memory_limit == b.memory_limit &&
         a.memory_limit_hard == b.memory_limit_hard && a.sample_interval == b.sample_interval &&
         strcmp(a.heap_profile_on_exit, b.heap_profile_on_exit) == 0 &&
         a.heap_profile_signal == b.heap_profile_signal &&
         strcmp(a.heap_profile_prefix, b.heap_profile_prefix) == 0 && a.numa_aware == b.numa_aware &&
         a.numa_bind == b.numa_bind && strcmp(a.numa_topology, b.numa_topology) == 0 && a.check == b.check &&
         a.hardened == b.hardened && a.guarded_rate == b.guarded_rate && a.guarded_slots == b.guarded_slots;
}

int Lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST(EnvOptionsTest, OptionsStringSetsEverythingAVariableSets) {
  Options o;
  std::string err = Parse({"JSMALLOC_OPTIONS=sample_interval=1M, background=1 ,numa_bind=strict,"
                           "guarded_rate=7,per_cpu=0,backend=legacy,stats_signal=USR1,memory_limit=2G"},
                          &o);
  EXPECT_EQ(err, "");
  EXPECT_EQ(o.sample_interval, size_t{1} << 20);
  EXPECT_EQ(o.background, 1);
  EXPECT_EQ(o.numa_bind, 2);
  EXPECT_EQ(o.guarded_rate, 7u);
  EXPECT_EQ(o.per_cpu, 0);
  EXPECT_TRUE(o.legacy_page_heap);
  EXPECT_EQ(o.stats_signal, 10);
  EXPECT_EQ(o.memory_limit, size_t{2} << 30);
}

TEST(EnvOptionsTest, VariableOverridesOptionsWhateverTheOrder) {
  Options o;
  std::string err = Parse({"JSMALLOC_SAMPLE_INTERVAL=64K", "JSMALLOC_OPTIONS=sample_interval=1M,guarded_rate=3"}, &o);
  EXPECT_EQ(err, "");
  EXPECT_EQ(o.sample_interval, 65536u);
  EXPECT_EQ(o.guarded_rate, 3u);
}

TEST(EnvOptionsTest, BadValueNamesItsFormAndWhatIsKept) {
  Options o;
  std::string err = Parse({"JSMALLOC_OPTIONS=guarded_rate=5", "JSMALLOC_GUARDED_RATE=abc"}, &o);
  EXPECT_EQ(o.guarded_rate, 5u);
  EXPECT_EQ(Lines(err), 1) << err;
  EXPECT_NE(err.find("ignoring JSMALLOC_GUARDED_RATE='abc': expected a whole number"), std::string::npos) << err;
  EXPECT_NE(err.find("using the value from JSMALLOC_OPTIONS, 5"), std::string::npos) << err;

  Options d;
  err = Parse({"JSMALLOC_OPTIONS=sample_interval=lots"}, &d);
  EXPECT_EQ(d.sample_interval, Options().sample_interval);
  EXPECT_NE(err.find("ignoring sample_interval='lots' in JSMALLOC_OPTIONS: expected a byte count"),
            std::string::npos) << err;
  EXPECT_NE(err.find("using the default 2097152"), std::string::npos) << err;
}

TEST(EnvOptionsTest, EveryBadValueWarnsOnceAndKeepsTheDefault) {
  const char* names[64];
  size_t n = OptionNames(names, 64);
  ASSERT_LT(n, 64u);
  for (size_t i = 0; i < n; ++i) {
    std::string var = "JSMALLOC_";
    for (const char* c = names[i]; *c; ++c) var += static_cast<char>(toupper(*c));
    if (var == "JSMALLOC_STATS_ON_EXIT" || var == "JSMALLOC_NUMA_TOPOLOGY") continue;  // any text is a path / spec
    if (var.find("_FILE") != std::string::npos || var.find("PROFILE_ON_EXIT") != std::string::npos ||
        var.find("PREFIX") != std::string::npos) {
      continue;  // paths: only an empty one is bad
    }
    Options o;
    std::string err = Parse({var + "=%%bad%%"}, &o);
    EXPECT_EQ(Lines(err), 1) << var << ": " << err;
    EXPECT_NE(err.find("ignoring " + var + "='%%bad%%': expected "), std::string::npos) << err;
    EXPECT_NE(err.find("; using the default "), std::string::npos) << err;
    EXPECT_TRUE(SameOptions(o, Options())) << var << " changed something";
  }
}

TEST(EnvOptionsTest, UnknownNamesGetTheClosestKnownOne) {
  Options o;
  std::string err = Parse({"JSMALLOC_SAMPLEINTERVAL=1", "JSMALLOC_OPTIONS=backgrund=1,foo", "JSMALLOC_TEST_X=1",
                           "JSMALLOC_LIB=/x.so", "JSMALLOC_sample_interval=5", "OTHER=1"},
                          &o);
  EXPECT_EQ(Lines(err), 4) << err;
  EXPECT_NE(err.find("unknown setting JSMALLOC_SAMPLEINTERVAL; did you mean JSMALLOC_SAMPLE_INTERVAL?"),
            std::string::npos) << err;
  EXPECT_NE(err.find("unknown setting JSMALLOC_sample_interval; did you mean JSMALLOC_SAMPLE_INTERVAL?"),
            std::string::npos) << err;
  EXPECT_NE(err.find("unknown setting backgrund in JSMALLOC_OPTIONS; did you mean background?"), std::string::npos)
      << err;
  EXPECT_NE(err.find("ignoring 'foo' in JSMALLOC_OPTIONS: expected name=value pairs"), std::string::npos) << err;
  EXPECT_EQ(o.background, -1) << "auto, the default";
  EXPECT_EQ(o.sample_interval, Options().sample_interval);
}

TEST(EnvOptionsTest, RelativePathsBecomeAbsolute) {
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof(cwd)), nullptr);
  Options o;
  std::string err = Parse({"JSMALLOC_STATS_ON_EXIT=report.txt", "JSMALLOC_HEAP_PROFILE_ON_EXIT=/abs/p.heap"}, &o);
  EXPECT_EQ(err, "");
  EXPECT_TRUE(o.stats_on_exit);
  EXPECT_EQ(std::string(o.stats_file), std::string(cwd) + "/report.txt");
  EXPECT_STREQ(o.heap_profile_on_exit, "/abs/p.heap");
  Options b;
  Parse({"JSMALLOC_STATS_ON_EXIT=yes"}, &b);
  EXPECT_TRUE(b.stats_on_exit);
  EXPECT_STREQ(b.stats_file, "") << "a boolean, not a file named yes";
}

TEST(EnvOptionsTest, Signals) {
  int s = 0;
  EXPECT_TRUE(ParseSignal("12", &s));
  EXPECT_EQ(s, 12);
  EXPECT_TRUE(ParseSignal("SIGUSR1", &s));
  EXPECT_EQ(s, 10);
  EXPECT_TRUE(ParseSignal("usr2", &s));
  EXPECT_EQ(s, 12);
  EXPECT_TRUE(ParseSignal("HUP", &s));
  EXPECT_EQ(s, 1);
  s = 3;
  for (const char* bad : {"9", "19", "KILL", "SIGSTOP", "65", "0x10", "", "USR", "SIGUSR1x"}) {
    EXPECT_FALSE(ParseSignal(bad, &s)) << bad;
  }
  EXPECT_EQ(s, 3);
}

TEST(EnvOptionsTest, EditDistance) {
  EXPECT_EQ(EditDistance("background", "background"), 0);
  EXPECT_EQ(EditDistance("backgrund", "background"), 1);
  EXPECT_EQ(EditDistance("SAMPLEINTERVAL", "sample_interval"), 1);
  EXPECT_EQ(EditDistance("", "abc"), 3);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3);
}

// docs/tuning.md and the jsmalloc(3) man page describe every setting.
TEST(EnvOptionsTest, DocsListEverySetting) {
  const char* names[64];
  size_t n = OptionNames(names, 64);
  for (const char* doc : {"/docs/tuning.md", "/docs/man/jsmalloc.3"}) {
    std::ifstream f(std::string(JSMALLOC_SOURCE_DIR) + doc);
    ASSERT_TRUE(f.good()) << doc;
    std::stringstream text;
    text << f.rdbuf();
    std::string t = text.str();
    // groff escapes '_' nowhere but may split words; the variable is written whole.
    for (size_t i = 0; i < n; ++i) {
      std::string var = "JSMALLOC_";
      for (const char* c = names[i]; *c; ++c) var += static_cast<char>(toupper(*c));
      EXPECT_NE(t.find(var), std::string::npos) << doc << " does not mention " << var;
    }
    EXPECT_NE(t.find("JSMALLOC_OPTIONS"), std::string::npos) << doc;
  }
}

}  // namespace
}  // namespace jsmalloc
