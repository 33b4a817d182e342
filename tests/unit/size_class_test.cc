#include <gtest/gtest.h>

#include "base/size_map.h"

namespace jsmalloc {
namespace {

TEST(SizeClassTest, TableInvariants) {
  ASSERT_GE(kNumClasses - 1, 60);
  ASSERT_LE(kNumClasses - 1, 90);
  EXPECT_EQ(SizeMap::ClassSize(kNumClasses - 1), kMaxSize);
  for (int cl = 1; cl < kNumClasses; ++cl) {
    SCOPED_TRACE(cl);
    size_t size = SizeMap::ClassSize(cl);
    if (cl > 1) EXPECT_GT(size, SizeMap::ClassSize(cl - 1)) << "strictly increasing";
    if (size >= 16) EXPECT_EQ(size % kMinAlign, 0u) << "16-byte alignment";
    size_t span = SizeMap::ClassPages(cl) * kPageSize;
    EXPECT_GE(span, size);
    EXPECT_EQ(SizeMap::ObjectsPerSpan(cl), span / size);
    EXPECT_GE(SizeMap::ObjectsPerSpan(cl), 1u);
    EXPECT_LE(SizeMap::ObjectsPerSpan(cl), 65535u);
    EXPECT_LE((span % size) * 8, span) << "span tail waste <= 12.5%";
    EXPECT_GE(SizeMap::BatchSize(cl), 2);
    EXPECT_LE(SizeMap::BatchSize(cl), 32);
  }
}

// The table is computed for the build's page size; check the function for
// every supported page size so all build variants are known good.
TEST(SizeClassTest, TablesForEveryPageSize) {
  for (size_t page : {size_t{4096}, size_t{8192}, size_t{32768}, size_t{262144}}) {
    SCOPED_TRACE(page);
    SizeClassTable t = ComputeSizeClasses(page);
    EXPECT_GE(t.num_classes - 1, 60);
    EXPECT_LE(t.num_classes - 1, 90);
    EXPECT_EQ(t.info[t.num_classes - 1].size, kMaxSize);
    for (int cl = 1; cl < t.num_classes; ++cl) {
      const SizeClassInfo& c = t.info[cl];
      size_t span = c.pages * page;
      EXPECT_EQ(c.objects, span / c.size);
      EXPECT_GE(c.objects, 1u);
      EXPECT_LE(c.objects, 65535u);
      EXPECT_LE((span % c.size) * 8, span);
      if (c.size >= 16) EXPECT_EQ(c.size % 16, 0u);
    }
  }
}

TEST(SizeClassTest, EveryRequestGetsTheSmallestFittingClassWithinTheWasteBound) {
  for (size_t s = 0; s <= kMaxSize; ++s) {
    int cl = SizeMap::ClassFor(s);
    ASSERT_GE(cl, 1);
    ASSERT_LT(cl, kNumClasses);
    size_t size = SizeMap::ClassSize(cl);
    ASSERT_GE(size, s) << s;
    if (cl > 1) ASSERT_LT(SizeMap::ClassSize(cl - 1), s) << "not the smallest for " << s;
    if (s > 0) ASSERT_LE(size - s, MaxInternalWaste(s)) << s;
  }
}

TEST(SizeClassTest, AlignedClassesAlign) {
  for (size_t align = 1; align <= kPageSize; align *= 2) {
    for (size_t s : {size_t{1}, size_t{7}, size_t{100}, align, align + 1, size_t{5000}, kMaxSize}) {
      int cl = SizeMap::ClassForAligned(s, align);
      if (cl == 0) {
        if (s > kMaxSize) continue;
        // Only acceptable when no class is a multiple of align and large enough.
        for (int c = SizeMap::ClassFor(s < align ? align : s); c < kNumClasses; ++c)
          EXPECT_NE(SizeMap::ClassSize(c) % align, 0u);
        continue;
      }
      EXPECT_GE(SizeMap::ClassSize(cl), s);
      EXPECT_EQ(SizeMap::ClassSize(cl) % align, 0u) << "size " << s << " align " << align;
    }
  }
  EXPECT_EQ(SizeMap::ClassForAligned(100, kPageSize * 2), 0);
  EXPECT_EQ(SizeMap::ClassForAligned(kMaxSize + 1, 8), 0);
}

}  // namespace
}  // namespace jsmalloc
