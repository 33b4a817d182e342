// The back-end against the real kernel, run as a process of its own with the
// back-end chosen by the environment (JSMALLOC_BACKEND=hugepage|legacy):
// hugepage coverage of a large heap of small objects, and how far RSS falls
// after freeing most of it and calling malloc_trim.
#include <gtest/gtest.h>
#include <jsmalloc/jsmalloc.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "process_memory.h"

using jsmalloc_test::RssBytes;
using jsmalloc_test::ThpMode;

namespace {

size_t Prop(const char* name) {
  size_t v = 0;
  EXPECT_EQ(jsmalloc_get_numeric_property(name, &v), 1) << name;
  return v;
}

bool HugepageBackend() { return Prop("jsmalloc.hugepage_aware_active") == 1; }

// What these tests assume of the machine, checked instead of assumed: root
// (the exact coverage reads /proc/self/pagemap and /proc/kpageflags), and a
// THP mode of always, madvise or never; what is expected depends on it (under
// `always` the kernel also backs the legacy heap; under `never` nothing is a
// hugepage). tests/vm runs them under each mode.
class HugepageKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string mode = ThpMode();
    if (mode != "madvise" && mode != "always" && mode != "never") {
      GTEST_SKIP() << "THP is '" << mode << "' here; these tests expect always, madvise or never";
    }
    if (geteuid() != 0) GTEST_SKIP() << "not root: the exact hugepage coverage needs /proc/kpageflags";
  }
};

struct Heap {
  std::vector<std::pair<char*, size_t>> objs;
  size_t bytes = 0;
};

// ~512 MiB of mixed small objects, each written in full.
Heap BuildHeap(size_t target) {
  Heap h;
  std::mt19937_64 rng(2024);
  h.objs.reserve(target / 200);
  while (h.bytes < target) {
    size_t size = 16 + rng() % (rng() % 8 == 0 ? 4096 : 512);
    char* p = static_cast<char*>(malloc(size));
    if (p == nullptr) break;
    memset(p, static_cast<int>(size & 0xff), size);
    h.objs.emplace_back(p, size);
    h.bytes += size;
  }
  return h;
}

TEST_F(HugepageKernelTest, LargeHeapOfSmallObjectsSitsOnHugepages) {
  Heap h = BuildHeap(size_t{512} << 20);
  size_t ppm = Prop("jsmalloc.hugepage_coverage");
  bool exact = Prop("jsmalloc.hugepage_coverage_exact") == 1;
  const std::string thp = ThpMode();
  printf("THP=%s backend=%s coverage=%.2f%% (%s) allocated=%zu MiB rss=%zu MiB\n", thp.c_str(),
         HugepageBackend() ? "hugepage" : "legacy", ppm / 1e4, exact ? "exact" : "estimate",
         Prop("generic.current_allocated_bytes") >> 20, RssBytes() >> 20);
  if (thp == "never") {
    // No hugepages at all, and nothing fails for it. (The legacy page heap
    // reports an estimate: it never asks for hugepages.)
    if (HugepageBackend()) EXPECT_TRUE(exact) << "root can read /proc/kpageflags";
    EXPECT_EQ(ppm, 0u) << "THP=never: no transparent hugepages";
  } else if (thp == "always" && !HugepageBackend()) {
    // The kernel backs the legacy heap's aligned 2 MiB ranges on its own:
    // whatever it managed is fine, there is nothing of JSMalloc's to check.
  } else if (HugepageBackend()) {
    EXPECT_TRUE(exact) << "root can read /proc/kpageflags";
    EXPECT_GE(ppm, 900000u) << "at least 90% of in-use bytes on transparent hugepages";
  } else {
    // The legacy page heap does not ask for hugepages; with THP in `madvise`
    // mode the kernel gives it none.
    EXPECT_LT(ppm, 500000u);
  }
  for (auto& [p, n] : h.objs) free(p);
}

TEST_F(HugepageKernelTest, TrimReturnsEverythingButThePagesOfLiveObjects) {
  malloc_trim(0);  // whatever earlier tests left cached
  size_t baseline = RssBytes();
  Heap h = BuildHeap(size_t{512} << 20);
  size_t peak = RssBytes();
  // Keep one object in 50, scattered: most spans empty out, some stay.
  std::vector<std::pair<char*, size_t>> live;
  for (size_t i = 0; i < h.objs.size(); ++i) {
    if (i % 50 == 0) live.push_back(h.objs[i]);
    else free(h.objs[i].first);
  }
  std::vector<std::pair<char*, size_t>>().swap(h.objs);  // 40 MiB of bookkeeping
  malloc_trim(0);
  size_t after = RssBytes();
  // The bound: every span that still holds a live object, plus metadata and
  // a fixed slack for the program itself (binary, stacks, gtest).
  std::set<std::pair<uintptr_t, size_t>> spans;
  for (auto& [p, n] : live) {
    void* start;
    size_t bytes;
    ASSERT_EQ(jsmalloc_get_span_extent(p, &start, &bytes), 1);
    spans.emplace(reinterpret_cast<uintptr_t>(start), bytes);
    ASSERT_EQ(static_cast<unsigned char>(p[n - 1]), n & 0xff) << "live data intact";
  }
  size_t span_bytes = 0;
  for (auto& s : spans) span_bytes += s.second;
  size_t metadata = Prop("jsmalloc.metadata_bytes");
  size_t slack = size_t{16} << 20;
  printf("backend=%s baseline=%zu MiB peak=%zu MiB after_trim=%zu MiB live_spans=%zu MiB "
         "metadata=%zu MiB bound=%zu MiB\n",
         HugepageBackend() ? "hugepage" : "legacy", baseline >> 20, peak >> 20, after >> 20,
         span_bytes >> 20, metadata >> 20, (baseline + span_bytes + metadata + slack) >> 20);
  EXPECT_LE(after, baseline + span_bytes + metadata + slack);
  EXPECT_LT(after - baseline, (peak - baseline) / 2);
  for (auto& [p, n] : live) free(p);
}

// khugepaged (max_ptes_none 511 by default) collapses any range of an
// MADV_HUGEPAGE mapping with a page present, faulting the released pages
// back in. MADV_COLLAPSE does the same collapse at once, so it stands in for
// khugepaged here: after a trim has subreleased the hugepages that still
// hold live objects, collapsing them must fail and leave RSS where it was.
// With JSMALLOC_KHUGEPAGED_GUARD=0 (registered as kernel.hugepage_noguard.)
// the same collapses succeed and RSS grows: what the guard prevents.
TEST_F(HugepageKernelTest, KhugepagedCannotRefillSubreleasedHugepages) {
  const char* g = getenv("JSMALLOC_KHUGEPAGED_GUARD");
  const bool guard = g == nullptr || strcmp(g, "0") != 0;
  malloc_trim(0);
  Heap h = BuildHeap(size_t{64} << 20);
  std::vector<std::pair<char*, size_t>> live;
  for (size_t i = 0; i < h.objs.size(); ++i) {
    if (i % 50 == 0) live.push_back(h.objs[i]);
    else free(h.objs[i].first);
  }
  std::vector<std::pair<char*, size_t>>().swap(h.objs);
  malloc_trim(0);
  const uintptr_t kHuge = uintptr_t{2} << 20;
  std::set<uintptr_t> hugepages;
  for (auto& [p, n] : live) hugepages.insert(reinterpret_cast<uintptr_t>(p) & ~(kHuge - 1));
  if (!HugepageBackend()) {
    // The legacy page heap does not advise MADV_HUGEPAGE, so khugepaged in
    // `madvise` mode never looks at it: check that its heap is not advised.
    FILE* f = fopen("/proc/self/smaps", "r");
    ASSERT_NE(f, nullptr);
    char line[512];
    uintptr_t probe = *hugepages.begin(), lo = 0, hi = 0;
    bool in = false, checked = false;
    while (fgets(line, sizeof(line), f) != nullptr) {
      unsigned long a, b;
      if (sscanf(line, "%lx-%lx ", &a, &b) == 2) {
        lo = a;
        hi = b;
        in = probe >= lo && probe < hi;
      } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
        EXPECT_EQ(strstr(line, " hg"), nullptr) << "legacy heap advised MADV_HUGEPAGE: " << line;
        checked = true;
      }
    }
    fclose(f);
    EXPECT_TRUE(checked) << "found the heap mapping in smaps";
    for (auto& [p, n] : live) free(p);
    return;
  }
  const size_t advised = Prop("jsmalloc.hugepage.filler_nohugepage");
  const size_t before = RssBytes();
  size_t collapsed = 0;
  for (uintptr_t hp : hugepages) {
    if (madvise(reinterpret_cast<void*>(hp), kHuge, 25 /* MADV_COLLAPSE */) == 0) ++collapsed;
  }
  const size_t after = RssBytes();
  printf("guard=%d: %zu hugepages hold live objects, %zu advised MADV_NOHUGEPAGE, %zu collapsed; "
         "RSS %zu -> %zu MiB\n",
         guard, hugepages.size(), advised, collapsed, before >> 20, after >> 20);
  for (auto& [p, n] : live) {
    ASSERT_EQ(static_cast<unsigned char>(p[n - 1]), n & 0xff) << "live data intact";
  }
  if (ThpMode() == "never") {
    // khugepaged does not run under `never`, so the guard is off by default
    // (JSMALLOC_KHUGEPAGED_GUARD, docs/tuning.md) and nothing is advised.
    // MADV_COLLAPSE, the stand-in for khugepaged here, ignores the THP mode
    // (6.1 and later) and does refill the released pages: only a program
    // that calls it itself would see that.
    EXPECT_EQ(advised, 0u) << "no guard under THP never";
  } else if (guard) {
    EXPECT_GE(advised, hugepages.size() / 2) << "the trim subreleased them, advised first";
    EXPECT_LE(collapsed, hugepages.size() - advised);
    EXPECT_LE(after, before + (collapsed + 1) * kHuge) << "released pages stayed released";
  } else {
    EXPECT_EQ(advised, 0u);
    EXPECT_GE(collapsed, hugepages.size() / 2) << "positive control: the kernel collapses them";
    EXPECT_GE(after, before + collapsed * kHuge / 2) << "and faults their released pages back in";
  }
  for (auto& [p, n] : live) free(p);
}

TEST_F(HugepageKernelTest, SoftAndHardMemoryLimits) {
  // Hard: allocations past the limit fail cleanly, and work again once
  // memory is freed.
  size_t limit = size_t{96} << 20;
  jsmalloc_set_memory_limit(limit, 1);
  std::vector<void*> blocks;
  errno = 0;
  for (int i = 0; i < 1000; ++i) {
    void* p = malloc(1 << 20);
    if (p == nullptr) break;
    memset(p, 1, 1 << 20);
    blocks.push_back(p);
  }
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_LT(blocks.size(), 1000u);
  EXPECT_GT(blocks.size(), 40u);
  EXPECT_GE(Prop("jsmalloc.memory_limit_hits"), 1u);
  for (void* p : blocks) free(p);
  void* again = malloc(1 << 20);
  EXPECT_NE(again, nullptr) << "serves again after memory was freed";
  free(again);
  // Soft: allocations succeed, free memory is released to stay under.
  size_t hits_before = Prop("jsmalloc.memory_limit_hits");
  jsmalloc_set_memory_limit(size_t{64} << 20, 0);
  std::vector<void*> smalls;
  for (int i = 0; i < 200000; ++i) smalls.push_back(malloc(256));
  for (size_t i = 0; i < smalls.size(); i += 2) free(smalls[i]);
  void* big = malloc(size_t{40} << 20);
  ASSERT_NE(big, nullptr) << "a soft limit never fails an allocation";
  memset(big, 2, size_t{40} << 20);
  printf("soft limit 64 MiB: physical=%zu MiB allocated=%zu MiB\n",
         Prop("generic.physical_memory_used") >> 20, Prop("generic.current_allocated_bytes") >> 20);
  EXPECT_GT(Prop("jsmalloc.memory_limit_hits"), hits_before) << "the limiter engaged";
  // What is resident beyond what is allocated is bounded by the half-empty
  // spans of the small objects (25 MiB live in ~50 MiB of spans) plus slack.
  EXPECT_LE(Prop("generic.physical_memory_used"), Prop("generic.current_allocated_bytes") + (size_t{48} << 20));
  free(big);
  for (size_t i = 1; i < smalls.size(); i += 2) free(smalls[i]);
  jsmalloc_set_memory_limit(0, 0);
}

}  // namespace
