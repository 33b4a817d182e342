// The THP layer against this machine's kernel (THP mode `madvise`).
#include "os/linux/thp.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "os/linux/os_memory.h"

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
