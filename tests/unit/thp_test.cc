// The THP layer against this machine's kernel (THP mode `madvise`).
#include "os/linux/thp.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "os/os.h"

namespace jsmalloc::os {
namespace {

constexpr size_t kHuge = size_t{2} << 20;

TEST(ThpTest, ParsesSysfsModes) {
  EXPECT_EQ(ParseThpMode("always [madvise] never\n"), ThpMode::kMadvise);
  EXPECT_EQ(ParseThpMode("[always] madvise never"), ThpMode::kAlways);
  EXPECT_EQ(ParseThpMode("always madvise [never]"), ThpMode::kNever);
  EXPECT_EQ(ParseThpMode("garbage"), ThpMode::kUnknown);
  EXPECT_STREQ(ThpModeName(ThpMode::kMadvise), "madvise");
}

TEST(ThpTest, ReadsThisMachinesSettings) {
  const ThpSettings& s = GetThpSettings();
  EXPECT_NE(s.enabled, ThpMode::kUnknown);
  EXPECT_EQ(s.hpage_pmd_size, kHuge);
  EXPECT_STRNE(s.defrag, "unknown");
}

// Advised, touched memory becomes THP; a 4 KiB hole splits the hugepage;
// MADV_COLLAPSE makes a non-advised range THP again.
TEST(ThpTest, KernelBacksAdvisedRangesAndSplitsOnPartialRelease) {
  void* mem = MapAligned(4 * kHuge, kHuge, nullptr);
  ASSERT_NE(mem, nullptr);
  ASSERT_TRUE(AdviseHugePages(mem, 4 * kHuge));
  memset(mem, 1, 4 * kHuge);
  bool thp[4];
  ASSERT_TRUE(HugePagesBackedByThp(mem, 4, thp)) << "needs root for /proc/kpageflags";
  int count = thp[0] + thp[1] + thp[2] + thp[3];
  EXPECT_GE(count, 1);
  size_t anon = 0, rss = 0;
  ASSERT_TRUE(ThpBytesInRange(mem, 4 * kHuge, &anon, &rss));
  EXPECT_GE(rss, 4 * kHuge);
  EXPECT_EQ(anon, static_cast<size_t>(count) * kHuge) << "smaps agrees with kpageflags";
  // Release one base page inside the first THP: the kernel splits it.
  int first = thp[0] ? 0 : (thp[1] ? 1 : (thp[2] ? 2 : 3));
  char* hole = static_cast<char*>(mem) + static_cast<size_t>(first) * kHuge + 4096;
  ASSERT_TRUE(ReleasePages(hole, 4096));
  bool after[4];
  ASSERT_TRUE(HugePagesBackedByThp(mem, 4, after));
  EXPECT_FALSE(after[first]);
  Unmap(mem, 4 * kHuge);
}

// Resident bytes of exactly [p, p + bytes) (mincore: smaps sums whole VMAs,
// which may take in a neighbouring mapping).
size_t ResidentBytes(void* p, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  static unsigned char vec[2 * kHuge / 4096];
  if (bytes / page > sizeof(vec) || mincore(p, bytes, vec) != 0) return 0;
  size_t n = 0;
  for (size_t i = 0; i < bytes / page; ++i) n += vec[i] & 1;
  return n * page;
}

// What the filler's khugepaged guard rests on: a collapse (MADV_COLLAPSE
// here, khugepaged in the background) of a half-released advised hugepage
// faults the released half back in; after MADV_NOHUGEPAGE it is refused.
TEST(ThpTest, NoHugepageAdviceStopsACollapseFromRefillingReleasedPages) {
  void* mem = MapAligned(2 * kHuge, kHuge, nullptr);
  ASSERT_NE(mem, nullptr);
  ASSERT_TRUE(AdviseHugePages(mem, 2 * kHuge));
  memset(mem, 3, 2 * kHuge);
  char* open_hp = static_cast<char*>(mem);
  char* guarded_hp = open_hp + kHuge;
  ASSERT_TRUE(AdviseNoHugePages(guarded_hp, kHuge));
  ASSERT_TRUE(ReleasePages(open_hp + kHuge / 2, kHuge / 2));
  ASSERT_TRUE(ReleasePages(guarded_hp + kHuge / 2, kHuge / 2));
  const size_t rss_before = ResidentBytes(mem, 2 * kHuge);
  EXPECT_EQ(rss_before, kHuge) << "half of each hugepage resident";
  EXPECT_TRUE(CollapseHugePages(open_hp, kHuge)) << "the hazard: collapse refills the released half";
  EXPECT_FALSE(CollapseHugePages(guarded_hp, kHuge)) << "refused under MADV_NOHUGEPAGE";
  const size_t rss_after = ResidentBytes(mem, 2 * kHuge);
  EXPECT_EQ(rss_after, rss_before + kHuge / 2) << "only the unguarded hugepage grew";
  EXPECT_EQ(open_hp[kHuge - 1], 0) << "the refilled pages read as zero";
  EXPECT_EQ(guarded_hp[0], 3) << "contents kept";
  // Lifting the advice (the hugepage became whole again) allows it again.
  ASSERT_TRUE(AdviseHugePages(guarded_hp, kHuge));
  memset(guarded_hp + kHuge / 2, 4, kHuge / 2);
  EXPECT_TRUE(CollapseHugePages(guarded_hp, kHuge));
  Unmap(mem, 2 * kHuge);
}

TEST(ThpTest, ReadsKhugepagedMaxPtesNone) {
  // This machine runs the kernel default; the guard keys off this value.
  const ThpSettings& s = GetThpSettings();
  EXPECT_GE(s.khugepaged_max_ptes_none, 0) << "readable";
  EXPECT_LE(s.khugepaged_max_ptes_none, 511);
}

TEST(ThpTest, CollapseMakesTouchedRangeHuge) {
  void* mem = MapAligned(kHuge, kHuge, nullptr);
  ASSERT_NE(mem, nullptr);
  ASSERT_EQ(madvise(mem, kHuge, MADV_NOHUGEPAGE), 0);
  memset(mem, 2, kHuge);
  bool thp = true;
  ASSERT_TRUE(HugePagesBackedByThp(mem, 1, &thp));
  EXPECT_FALSE(thp) << "MADV_NOHUGEPAGE range should start as base pages";
  ASSERT_EQ(madvise(mem, kHuge, MADV_HUGEPAGE), 0);
  ASSERT_TRUE(CollapseHugePages(mem, kHuge));
  ASSERT_TRUE(HugePagesBackedByThp(mem, 1, &thp));
  EXPECT_TRUE(thp);
  EXPECT_EQ(static_cast<char*>(mem)[kHuge - 1], 2) << "contents kept";
  Unmap(mem, kHuge);
}

}  // namespace
}  // namespace jsmalloc::os
