#include <gtest/gtest.h>

#include "tests/unit/test_support.h"

namespace jsmalloc {
namespace {

TEST(PageMapTest, UnknownAddressesHaveNoClassAndNoSpan) {
  auto pm = testing::NewPageMap();
  int local;
  EXPECT_EQ(pm->SizeClassOf(&local), 0);
  EXPECT_EQ(pm->SizeClassOf(nullptr), 0);
  EXPECT_EQ(pm->SizeClassOf(reinterpret_cast<void*>(~uintptr_t{0})), 0) << "beyond 48 bits";
  EXPECT_EQ(pm->Get(PageIdOf(&local)), nullptr);
  EXPECT_EQ(pm->Get(~PageId{0}), nullptr);
}

TEST(PageMapTest, SetGetAcrossLeafBoundary) {
  auto pm = testing::NewPageMap();
  // A range straddling two leaves, high in the address space.
  PageId start = (PageId{5} << PageMap::kLeafBits) - 3;
  ASSERT_TRUE(pm->Ensure(start, 6));
  Span a, b;
  pm->SetRange(start, 3, &a);
  pm->SetRange(start + 3, 3, &b);
  pm->SetSizeClass(start, 6, 7);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(pm->Get(start + i), &a);
  for (int i = 3; i < 6; ++i) EXPECT_EQ(pm->Get(start + i), &b);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(pm->SizeClassOf(PageStart(start + i)), 7);
  EXPECT_EQ(pm->SizeClassOf(PageStart(start + 6)), 0);
  EXPECT_EQ(pm->metadata_bytes(), 2 * sizeof(PageMap::Leaf));
  // Ensure again does not allocate again.
  ASSERT_TRUE(pm->Ensure(start, 6));
  EXPECT_EQ(pm->metadata_bytes(), 2 * sizeof(PageMap::Leaf));
}

// The span's start from the leaf's compact arrays: for every page of a span
// with a class, across a leaf boundary, and 0 for another class, for a page
// whose class was cleared and for an unknown address.
TEST(PageMapTest, SpanStartIfClassFindsTheFirstPageWithoutTheSpan) {
  auto pm = testing::NewPageMap();
  PageId start = (PageId{9} << PageMap::kLeafBits) - 2;
  ASSERT_TRUE(pm->Ensure(start, 10));
  pm->SetSizeClass(start, 5, 3);      // straddles the boundary
  pm->SetSizeClass(start + 5, 4, 8);  // the next span, another class
  for (PageId i = 0; i < 5; ++i) {
    const char* p = static_cast<const char*>(PageStart(start + i)) + 100;
    EXPECT_EQ(pm->SpanStartIfClass(p, 3), reinterpret_cast<uintptr_t>(PageStart(start))) << i;
    EXPECT_EQ(pm->SpanStartIfClass(p, 8), 0u) << i;
  }
  for (PageId i = 5; i < 9; ++i) {
    EXPECT_EQ(pm->SpanStartIfClass(PageStart(start + i), 8), reinterpret_cast<uintptr_t>(PageStart(start + 5))) << i;
  }
  pm->SetSizeClass(start, 5, 0);
  EXPECT_EQ(pm->SpanStartIfClass(PageStart(start + 1), 3), 0u) << "class cleared with the span";
  int local;
  EXPECT_EQ(pm->SpanStartIfClass(&local, 3), 0u);
  EXPECT_EQ(pm->SpanStartIfClass(reinterpret_cast<void*>(~uintptr_t{0}), 3), 0u) << "beyond 48 bits";
}

TEST(PageMapTest, RejectsRangesBeyondAddressSpace) {
  auto pm = testing::NewPageMap();
  EXPECT_FALSE(pm->Ensure(PageId{1} << PageMap::kBits, 1));
}

}  // namespace
}  // namespace jsmalloc
