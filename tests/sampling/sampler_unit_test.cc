// Unit tests of the sampling decision, the stack capture and the profile
// writer. Linked against the components only (this process runs on glibc's
// malloc); the process-wide sampler is tested in sampling_test.cc.
#include "run_command.h"
#include <gtest/gtest.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/random.h"
#include "runtime/heap_profile.h"
#include "runtime/sampler.h"
#include "runtime/stack_trace.h"

namespace jsmalloc {
namespace {

TEST(Sampler, IntervalsAreExponentialWithTheMean) {
  uint64_t rng = RandomSeed(12345);
  constexpr size_t kMean = size_t{2} << 20;
  constexpr int kDraws = 1000000;
  double sum = 0, sum_sq = 0;
  int below_median = 0, below_mean = 0;
  const double median = kMean * std::log(2.0);
  for (int i = 0; i < kDraws; ++i) {
    int64_t v = DrawSampleInterval(&rng, kMean);
    ASSERT_GE(v, 0);
    sum += static_cast<double>(v);
    sum_sq += static_cast<double>(v) * static_cast<double>(v);
    if (v < median) ++below_median;
    if (v < static_cast<int64_t>(kMean)) ++below_mean;
  }
  double mean = sum / kDraws;
  double sd = std::sqrt(sum_sq / kDraws - mean * mean);
  // The standard error of the mean is kMean / 1000: 1% is ten of them.
  EXPECT_NEAR(mean / kMean, 1.0, 0.01);
  EXPECT_NEAR(sd / kMean, 1.0, 0.02) << "exponential: sd == mean";
  EXPECT_NEAR(below_median / double(kDraws), 0.5, 0.005);
  EXPECT_NEAR(below_mean / double(kDraws), 1 - std::exp(-1.0), 0.005);
}

TEST(Sampler, SmallMeansAndSeeds) {
  uint64_t rng = RandomSeed(0);
  EXPECT_NE(rng, 0u);
  EXPECT_NE(RandomSeed(1), RandomSeed(2));
  double sum = 0;
  for (int i = 0; i < 200000; ++i) sum += static_cast<double>(DrawSampleInterval(&rng, 100));
  // The countdown is the integer part of an exponential of mean 100.
  EXPECT_NEAR(sum / 200000, 99.5, 1.0);
  EXPECT_EQ(DrawSampleInterval(&rng, ~size_t{0}) <= kMaxSampleCountdown, true);
}

// Simulates a thread: the fast path's subtraction, then the decision when the
// countdown runs out.
struct SimThread {
  int64_t countdown = 0;
  uint64_t rng = 0;
  // True if this allocation was sampled.
  bool Allocate(size_t size, size_t interval) {
    countdown = static_cast<int64_t>(static_cast<uint64_t>(countdown) - size);
    if (countdown >= 0) return false;
    return SampleDecision(&countdown, &rng, size, interval);
  }
};

TEST(Sampler, IntervalZeroSamplesNothing) {
  SimThread t;
  int sampled = 0;
  for (int i = 0; i < 1000000; ++i) sampled += t.Allocate(4096, 0);
  EXPECT_EQ(sampled, 0);
  EXPECT_GE(t.countdown, 0);
  EXPECT_LE(t.countdown, kSamplingOffRecheckBytes);
  EXPECT_EQ(NextSampleCountdown(&t.rng, 0), kSamplingOffRecheckBytes);
  EXPECT_EQ(SampleProbability(4096, 0), 0.0);
  EXPECT_EQ(SampleWeight(4096, 0), 0.0);
}

TEST(Sampler, SampledFractionAndEstimateAreUnbiased) {
  constexpr size_t kInterval = 65536;
  for (size_t size : {size_t{64}, size_t{4096}, size_t{100000}, size_t{1} << 20}) {
    SimThread t;
    // About 20000 samples: the estimate's relative standard deviation is
    // below 0.7%, the tolerance below is seven of them.
    double p0 = 1 - std::exp(-static_cast<double>(size) / kInterval);
    const int kAllocs = static_cast<int>(20000 / p0);
    int sampled = 0;
    double estimate = 0;
    for (int i = 0; i < kAllocs; ++i) {
      if (t.Allocate(size, kInterval)) {
        ++sampled;
        estimate += SampleWeight(size, kInterval) * static_cast<double>(size);
      }
    }
    double p = 1 - std::exp(-static_cast<double>(size) / kInterval);
    EXPECT_NEAR(SampleProbability(size, kInterval), p, 1e-12);
    double expected = kAllocs * p;
    double sd = std::sqrt(kAllocs * p * (1 - p));
    EXPECT_NEAR(sampled, expected, 5 * sd + 1) << "size " << size;
    double truth = static_cast<double>(kAllocs) * static_cast<double>(size);
    EXPECT_NEAR(estimate / truth, 1.0, 0.05) << "size " << size;
  }
}

TEST(Sampler, FirstAllocationOfAThreadIsSampledFairly) {
  // Fresh threads each allocating one object of the mean size: the first
  // sample point falls inside it with probability 1 - 1/e.
  constexpr size_t kInterval = 8192;
  int sampled = 0;
  constexpr int kThreads = 100000;
  for (int i = 0; i < kThreads; ++i) {
    SimThread t;
    sampled += t.Allocate(kInterval, kInterval);
  }
  EXPECT_NEAR(sampled / double(kThreads), 1 - std::exp(-1.0), 0.01);
}

TEST(Sampler, WeightIsTheInverseProbability) {
  EXPECT_NEAR(SampleWeight(2 << 20, 2 << 20), 1 / (1 - std::exp(-1.0)), 1e-12);
  EXPECT_NEAR(SampleWeight(1, 2 << 20), 2097152.5, 1.0);  // ~ interval / size for small sizes
  EXPECT_NEAR(SampleWeight(size_t{1} << 40, 2 << 20), 1.0, 1e-12);
}

__attribute__((noinline)) int CaptureHere(void** out, int max) {
  int n = CaptureStack(out, max);
  asm volatile("" ::: "memory");  // not a tail call
  return n;
}

TEST(StackTrace, StartsAtTheCallerOfTheCapture) {
  void* frames[kMaxStackDepth];
  int n = CaptureHere(frames, kMaxStackDepth);
  ASSERT_GE(n, 3);
  uintptr_t f = reinterpret_cast<uintptr_t>(&CaptureHere);
  uintptr_t pc = reinterpret_cast<uintptr_t>(frames[0]);
  EXPECT_GT(pc, f);
  EXPECT_LT(pc, f + 64) << "frame 0 is the return address into CaptureHere";
  EXPECT_FALSE(InAllocatorEntry(pc));
  EXPECT_TRUE(InAllocatorEntry(reinterpret_cast<uintptr_t>(&CaptureStack)));
  EXPECT_EQ(CaptureHere(frames, 2), 2);
  EXPECT_EQ(CaptureHere(frames, 0), 0);
}

// ---- The caching unwinder gives exactly libgcc's frames ------------------------

struct Captured {
  int n = 0;
  void* frames[kMaxStackDepth];
};

// One call site for both unwinders, so their innermost frames match.
__attribute__((noinline)) Captured CaptureWith(bool cached) {
  Captured c;
  int (*fn)(void**, int) = cached ? &CaptureStackCached : &CaptureStackWithLibgcc;
  c.n = fn(c.frames, kMaxStackDepth);
  asm volatile("" ::: "memory");
  return c;
}

int supported = 0, unsupported = 0;

void CompareHere(const char* where) {
  Captured a = CaptureWith(true);
  Captured b = CaptureWith(false);
  if (a.n < 0) {
    ++unsupported;
    return;
  }
  ++supported;
  ASSERT_EQ(a.n, b.n) << where;
  // Frame 1 is one of the two calls above; every other frame is the same.
  for (int i = 0; i < a.n; ++i) {
    if (i == 1) {
      EXPECT_LT(std::abs(static_cast<char*>(a.frames[1]) - static_cast<char*>(b.frames[1])), 64) << where;
    } else {
      EXPECT_EQ(a.frames[i], b.frames[i]) << where << " frame " << i;
    }
  }
}

__attribute__((noinline)) int Recurse(int depth) {
  if (depth == 0) {
    CompareHere("recursion");
    return 0;
  }
  int r = Recurse(depth - 1);
  asm volatile("" ::: "memory");
  return r + 1;
}

__attribute__((noinline)) int DeepCapture(int depth, Captured* out) {
  if (depth == 0) {
    *out = CaptureWith(true);
    return 0;
  }
  int r = DeepCapture(depth - 1, out);
  asm volatile("" ::: "memory");
  return r + 1;
}

// A variable-length array: the frame is addressed through rbp.
__attribute__((noinline)) int WithVla(int n) {
  volatile char buf[n];
  buf[0] = 1;
  CompareHere("vla");
  return buf[0] + Recurse(n % 3);
}

__attribute__((noinline, optimize("no-omit-frame-pointer"))) int WithFramePointer(int n) {
  CompareHere("frame pointer");
  return WithVla(n + 16) + 1;
}

// Over-aligned locals make GCC realign the stack (CFA through another
// register): the cache may refuse the frame, but must not get it wrong.
__attribute__((noinline)) int OverAligned(int n) {
  alignas(128) volatile char buf[256];
  buf[n & 255] = 1;
  CompareHere("realigned");
  return buf[0];
}

int CompareInQsort(const void* a, const void* b) {
  static int once = 0;
  if (once++ == 0) CompareHere("qsort callback");
  return *static_cast<const int*>(a) - *static_cast<const int*>(b);
}

TEST(StackTrace, CachedWalkMatchesLibgcc) {
  supported = unsupported = 0;
  // Rounds 0-1 read FDEs from the objects' files (the second hits the rule
  // cache); rounds 2-3 again after forgetting the rules, through libgcc's
  // lookup in the mappings.
  for (int round = 0; round < 4; ++round) {
    if (round == 0 || round == 2) {
      ResetUnwindRulesForTest();
      SetReadFdesFromFilesForTest(round == 0);
    }
    for (int d = 0; d < 70; d += 7) Recurse(d);
    WithVla(100);
    WithVla(5000);
    WithFramePointer(3);
    OverAligned(7);
    int v[16];
    for (int i = 0; i < 16; ++i) v[i] = (i * 7) % 16;
    qsort(v, 16, sizeof(int), &CompareInQsort);
    std::vector<int> w(100);
    std::sort(w.begin(), w.end(), [](int x, int y) {
      static int once = 0;
      if (once++ == 0) CompareHere("std::sort comparator");
      return x < y;
    });
    std::thread t([] { Recurse(5); });
    t.join();
    try {
      throw std::runtime_error("x");
    } catch (const std::exception&) {
      CompareHere("catch block");
    }
  }
  SetReadFdesFromFilesForTest(true);
  EXPECT_GE(supported, 80) << unsupported << " unsupported";
  EXPECT_GT(FdeReads().from_file, 0u) << "the cached walk read no FDE from a file";
  // Through a signal frame: the cache hands it to libgcc (or matches it).
  static int in_handler_frames = 0;
  struct sigaction sa = {}, old = {};
  sa.sa_handler = [](int) {
    CompareHere("signal handler");
    void* f[kMaxStackDepth];
    in_handler_frames = CaptureStack(f, kMaxStackDepth);
  };
  sigaction(SIGUSR1, &sa, &old);
  raise(SIGUSR1);
  sigaction(SIGUSR1, &old, nullptr);
  EXPECT_GE(in_handler_frames, 3) << "the walk continues past the signal frame";
  // A deep stack is cut at 64 frames.
  Captured a;
  EXPECT_EQ(DeepCapture(100, &a), 100);
  EXPECT_EQ(a.n, kMaxStackDepth);
}

// ---- FDEs read from the objects' files ------------------------------------

// An object's executable segment and its unwind table's address.
struct ObjectText {
  uintptr_t lo = 0, hi = 0, eh_frame_hdr = 0;
};

ObjectText TextOf(const char* name_part) {
  struct Query {
    const char* part;
    ObjectText out;
  } q{name_part, {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* arg) {
        Query* q = static_cast<Query*>(arg);
        const char* name = info->dlpi_name ? info->dlpi_name : "";
        if (q->part[0] == '\0' ? name[0] != '\0' : strstr(name, q->part) == nullptr) return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X)) {
            q->out.lo = info->dlpi_addr + ph.p_vaddr;
            q->out.hi = q->out.lo + ph.p_memsz;
          } else if (ph.p_type == PT_GNU_EH_FRAME) {
            q->out.eh_frame_hdr = info->dlpi_addr + ph.p_vaddr;
          }
        }
        return 1;
      },
      &q);
  return q.out;
}

// Every few bytes of the program's, libc's and libstdc++'s code: the rule
// worked out from the FDE read from the file is the one worked out from
// libgcc's lookup through the mapping (including "no FDE here").
TEST(StackTrace, FdesReadFromFilesGiveTheRulesOfTheMappedOnes) {
  for (const char* object : {"", "libc.so", "libstdc++.so"}) {
    ObjectText t = TextOf(object);
    ASSERT_NE(t.lo, 0u) << "no executable segment found for '" << object << "'";
    size_t handled = 0, declined = 0, ends = 0, checked = 0;
    const uintptr_t step = std::max<uintptr_t>(13, (t.hi - t.lo) / 6000) | 1;
    for (uintptr_t pc = t.lo; pc < t.hi; pc += step) {
      bool ok = false;
      const uint64_t from_file = UnwindRuleFromFileForTest(pc, &ok);
      if (!ok) {
        ++declined;
        continue;
      }
      ++handled;
      const uint64_t through_mapping = UnwindRuleThroughMappingForTest(pc);
      ASSERT_EQ(from_file, through_mapping) << "pc " << reinterpret_cast<void*>(pc) << " in '" << object << "'";
      if ((from_file & 3) == 2) ++ends;  // Rule::kEnd
      ++checked;
    }
    EXPECT_EQ(declined, 0u) << "'" << object << "': the file path declined PCs it should read";
    EXPECT_GT(checked, 500u) << object;
    EXPECT_LT(ends, checked / 2) << object;
  }
}

// Rss of the mapping holding `addr` in this process, from /proc/self/smaps
// (read without stdio, so that only the code under test touches libc's
// read-only data).
long RssKibOfMappingAt(uintptr_t addr) {
  static char buf[1 << 21];
  int fd = open("/proc/self/smaps", O_RDONLY);
  if (fd < 0) return -1;
  size_t used = 0;
  ssize_t n;
  while (used < sizeof(buf) - 1 && (n = read(fd, buf + used, sizeof(buf) - 1 - used)) > 0) used += n;
  close(fd);
  buf[used] = '\0';
  for (char* line = buf; line != nullptr && *line != '\0';) {
    char* end;
    unsigned long lo = strtoul(line, &end, 16);
    if (*end == '-') {
      unsigned long hi = strtoul(end + 1, nullptr, 16);
      if (addr >= lo && addr < hi) {
        char* rss = strstr(line, "\nRss:");
        return rss ? strtol(rss + 5, nullptr, 10) : -1;
      }
    }
    line = strchr(line, '\n');
    if (line) ++line;
  }
  return -1;
}

// The point of reading FDEs from files: working out the rules of libc's
// code must not fault libc's unwind tables into the process (a child of
// fork starts with none of a file mapping's pages mapped). The same walk
// through libgcc's lookup does fault them in, which shows the measure works.
TEST(StackTrace, RulesFromFilesLeaveUnwindTablesOutOfTheRss) {
  ObjectText libc = TextOf("libc.so");
  ASSERT_NE(libc.eh_frame_hdr, 0u);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Twice: parsing the first reading touches libc's read-only data (the
    // character tables strtoul uses) after the figures were taken.
    RssKibOfMappingAt(libc.eh_frame_hdr);
    const long before = RssKibOfMappingAt(libc.eh_frame_hdr);
    const uintptr_t step = (libc.hi - libc.lo) / 64;
    for (uintptr_t pc = libc.lo + 1; pc < libc.hi; pc += step) {
      bool ok;
      UnwindRuleFromFileForTest(pc, &ok);
      if (!ok) _exit(10);
    }
    const long after_file = RssKibOfMappingAt(libc.eh_frame_hdr);
    for (uintptr_t pc = libc.lo + 1; pc < libc.hi; pc += step) UnwindRuleThroughMappingForTest(pc);
    const long after_mapping = RssKibOfMappingAt(libc.eh_frame_hdr);
    fprintf(stderr, "libc unwind tables' mapping: %ld KiB resident, %ld after 64 rules from the file, %ld after the same through the mapping\n",
            before, after_file, after_mapping);
    if (before < 0 || after_file < 0 || after_mapping < 0) _exit(11);
    if (after_file - before >= 16) _exit(12);
    if (after_mapping - after_file < 64) _exit(13);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  const int code = WEXITSTATUS(status);
  EXPECT_NE(code, 10) << "the file path declined a libc PC";
  EXPECT_NE(code, 11) << "could not read /proc/self/smaps";
  EXPECT_NE(code, 12) << "rules read from the file still faulted libc's unwind tables in";
  EXPECT_NE(code, 13) << "the control did not fault them in: the measure shows nothing";
  EXPECT_EQ(code, 0);
}

// The rule cache starts on one page of slots and grows as PCs fill it; a
// rule comes back the same from the cache as worked out afresh, before,
// across and after each growth.
TEST(StackTrace, RuleCacheStartsSmallAndGrowsWithTheRulesItHolds) {
  ResetUnwindRulesForTest();
  EXPECT_EQ(UnwindRuleCacheSlotsForTest(), 256u) << "a small process's few samples touch one page of the cache";
  ObjectText libc = TextOf("libc.so");
  ASSERT_NE(libc.lo, 0u);
  const uintptr_t step = std::max<uintptr_t>(17, (libc.hi - libc.lo) / 4000) | 1;
  std::vector<uintptr_t> pcs;
  for (uintptr_t pc = libc.lo + 1; pc < libc.hi && pcs.size() < 4000; pc += step) pcs.push_back(pc);
  ASSERT_GT(pcs.size(), 3000u);
  size_t last_slots = UnwindRuleCacheSlotsForTest(), growths = 0;
  for (int pass = 0; pass < 2; ++pass) {
    for (uintptr_t pc : pcs) {
      ASSERT_EQ(UnwindRuleForTest(pc), UnwindRuleUncachedForTest(pc)) << "pass " << pass << " pc " << reinterpret_cast<void*>(pc);
      const size_t slots = UnwindRuleCacheSlotsForTest();
      if (slots != last_slots) {
        EXPECT_EQ(slots, std::min<size_t>(last_slots * 4, 8192)) << "grows fourfold, to 8192 at most";
        ++growths;
        last_slots = slots;
      }
    }
  }
  EXPECT_EQ(growths, 3u);
  EXPECT_EQ(UnwindRuleCacheSlotsForTest(), 8192u) << "grows to its full size and no further";
  ResetUnwindRulesForTest();
  EXPECT_EQ(UnwindRuleCacheSlotsForTest(), 256u);
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string TempPath(const char* name) {
  char dir[] = "/tmp/jsmalloc-sampler-unit-XXXXXX";
  EXPECT_NE(mkdtemp(dir), nullptr);
  return std::string(dir) + "/" + name;
}

TEST(ProfileWriter, AggregatesByStackAndSize) {
  ProfileTable t;
  void* a[3] = {reinterpret_cast<void*>(0x1000), reinterpret_cast<void*>(0x2000),
                reinterpret_cast<void*>(0x3000)};
  void* b[2] = {reinterpret_cast<void*>(0x1000), reinterpret_cast<void*>(0x4000)};
  ASSERT_TRUE(t.Add(a, 3, 100, 1));
  ASSERT_TRUE(t.Add(a, 3, 100, 2));
  ASSERT_TRUE(t.Add(a, 3, 200, 1));
  ASSERT_TRUE(t.Add(b, 2, 100, 1));
  ASSERT_TRUE(t.Add(a, 2, 100, 1));  // a prefix is another stack
  EXPECT_EQ(t.entries(), 4u);
  size_t found = 0;
  for (size_t i = 0; i < t.capacity(); ++i) {
    const ProfileTable::Entry* e = t.slot(i);
    if (e == nullptr) continue;
    ++found;
    if (e->depth == 3 && e->size == 100) EXPECT_EQ(e->count, 3u);
    else EXPECT_EQ(e->count, 1u);
  }
  EXPECT_EQ(found, 4u);
  // Growth keeps every entry.
  for (int i = 0; i < 5000; ++i) {
    void* s[1] = {reinterpret_cast<void*>(uintptr_t{0x10000} + i)};
    ASSERT_TRUE(t.Add(s, 1, 8, 1));
  }
  EXPECT_EQ(t.entries(), 5004u);
  EXPECT_GE(t.capacity(), 2 * t.entries());
  t.Reset();
  EXPECT_EQ(t.entries(), 0u);
}

TEST(ProfileWriter, WritesTheLegacyHeapProfileFormat) {
  ProfileTable t;
  void* a[3] = {reinterpret_cast<void*>(0x401001), reinterpret_cast<void*>(0x402002),
                reinterpret_cast<void*>(0x403003)};
  void* b[1] = {reinterpret_cast<void*>(0x7f0000001234)};
  ASSERT_TRUE(t.Add(a, 3, 4096, 5));
  ASSERT_TRUE(t.Add(b, 1, 123, 1));
  std::string path = TempPath("format.heap");
  ASSERT_TRUE(WriteHeapProfile(path.c_str(), t, 524288));
  std::string text = ReadFile(path);
  std::istringstream in(text);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  // pprof's header pattern, and the totals of the lines.
  std::smatch m;
  ASSERT_TRUE(std::regex_match(line, m, std::regex(R"(heap profile:\s*(\d+):\s+(\d+)\s+\[\s*(\d+):\s+(\d+)\]\s+@\s+heap_v2/(\d+))")))
      << line;
  EXPECT_EQ(m[1], "6");
  EXPECT_EQ(m[2], std::to_string(5 * 4096 + 123));
  EXPECT_EQ(m[3], "6");
  EXPECT_EQ(m[4], std::to_string(5 * 4096 + 123));
  EXPECT_EQ(m[5], "524288");
  std::vector<std::string> entries;
  while (std::getline(in, line) && !line.empty()) entries.push_back(line);
  ASSERT_EQ(entries.size(), 2u);
  std::sort(entries.begin(), entries.end());
  const std::regex entry(R"(\s*(\d+):\s+(\d+)\s+\[\s*(\d+):\s+(\d+)\]\s+@((\s+0x[0-9a-f]+)+))");
  for (const std::string& e : entries) EXPECT_TRUE(std::regex_match(e, entry)) << e;
  // The first address is the call site (return address - 1), the rest are
  // return addresses (pprof subtracts one from those itself).
  EXPECT_NE(text.find("5:    20480 [     5:    20480] @ 0x401000 0x402002 0x403003\n"), std::string::npos)
      << text.substr(0, 300);
  EXPECT_NE(text.find("1:      123 [     1:      123] @ 0x7f0000001233\n"), std::string::npos);
  // Then the memory map, so that pprof can find each address's file.
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(line, "MAPPED_LIBRARIES:");
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_TRUE(std::regex_search(line, std::regex(R"(^[0-9a-f]+-[0-9a-f]+ [r-][w-][x-][ps] )"))) << line;
  EXPECT_NE(text.find("[stack]"), std::string::npos);
  unlink(path.c_str());
  EXPECT_FALSE(WriteHeapProfile("/nonexistent-dir/x.heap", t, 524288));
  EXPECT_EQ(errno, ENOENT);
}

__attribute__((noinline)) int SiteAlpha(int x) { return x * 3 + 1; }
__attribute__((noinline)) int SiteBeta(int x) { return x * 5 + 2; }

// google-pprof reads what the writer writes, resolves the addresses through
// MAPPED_LIBRARIES, and reports unbiased totals (heap_v2 unsampling).
TEST(ProfileWriter, GooglePprofReadsItAndUnsamples) {
  if (system("command -v google-pprof > /dev/null 2>&1") != 0) {
    FAIL() << "google-pprof not found: scripts/install-deps google-perftools";
  }
  constexpr size_t kInterval = 65536;
  // 100 samples of 4 KiB from SiteAlpha, 10 of 1 MiB from SiteBeta. The
  // addresses are return addresses a little inside each function.
  void* alpha[1] = {reinterpret_cast<char*>(&SiteAlpha) + 5};
  void* beta[1] = {reinterpret_cast<char*>(&SiteBeta) + 5};
  ProfileTable t;
  ASSERT_TRUE(t.Add(alpha, 1, 4096, 100));
  ASSERT_TRUE(t.Add(beta, 1, 1 << 20, 10));
  std::string path = TempPath("pprof.heap");
  ASSERT_TRUE(WriteHeapProfile(path.c_str(), t, kInterval));
  // pprof needs the program's real path, as /proc/self/maps names it.
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  ASSERT_GT(n, 0);
  exe[n] = '\0';
  std::string out = RunCommand(std::string("google-pprof --text ") + exe + " " + path + " 2>&1");
  double alpha_mb = 100 * 4096 * SampleWeight(4096, kInterval) / 1048576;
  double beta_mb = 10 * double(1 << 20) * SampleWeight(1 << 20, kInterval) / 1048576;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(Total: ([0-9.]+) MB)"))) << out;
  EXPECT_NEAR(std::stod(m[1]), alpha_mb + beta_mb, 0.1) << out;
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(\n\s*([0-9.]+)\s+[0-9.]+%\s+[0-9.]+%\s+[0-9.]+\s+[0-9.]+%\s+\S*SiteAlpha)")))
      << out;
  EXPECT_NEAR(std::stod(m[1]), alpha_mb, 0.1);
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(\n\s*([0-9.]+)\s+[0-9.]+%\s+[0-9.]+%\s+[0-9.]+\s+[0-9.]+%\s+\S*SiteBeta)")))
      << out;
  EXPECT_NEAR(std::stod(m[1]), beta_mb, 0.1);
  EXPECT_NE(out.find("Adjusting heap profiles for 1-in-65536 sampling rate"), std::string::npos) << out;
  unlink(path.c_str());
}

}  // namespace
}  // namespace jsmalloc
