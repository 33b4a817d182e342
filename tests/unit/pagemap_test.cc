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

TEST(PageMapTest, RejectsRangesBeyondAddressSpace) {
  auto pm = testing::NewPageMap();
  EXPECT_FALSE(pm->Ensure(PageId{1} << PageMap::kBits, 1));
}

}  // namespace
}  // namespace jsmalloc
