#include <gtest/gtest.h>

#include <cstring>
#include <new>
#include <vector>

#include "base/intrusive_head_list.h"

namespace jsmalloc {
namespace {

struct Node : HeadListLinks {
  int id = 0;
};

std::vector<int> Ids(const HeadList<Node>& list) {
  std::vector<int> ids;
  list.ForEach([&](Node* n) { ids.push_back(n->id); });
  return ids;
}

TEST(HeadListTest, AllZeroMemoryIsAnEmptyList) {
  alignas(HeadList<Node>) unsigned char raw[sizeof(HeadList<Node>) * 4];
  std::memset(raw, 0, sizeof(raw));
  auto* lists = reinterpret_cast<HeadList<Node>*>(raw);
  static_assert(sizeof(HeadList<Node>) == sizeof(void*), "the head is one pointer");
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(lists[i].empty());
    EXPECT_EQ(lists[i].first(), nullptr);
    EXPECT_TRUE(Ids(lists[i]).empty());
  }
  Node a;
  a.id = 1;
  lists[2].PushFront(&a);
  EXPECT_EQ(lists[2].first(), &a);
  EXPECT_TRUE(lists[1].empty());
  EXPECT_TRUE(lists[3].empty());
  HeadList<Node>::Remove(&a);
  EXPECT_TRUE(lists[2].empty());
}

TEST(HeadListTest, RemoveFromAnyPositionKeepsTheOthersInOrder) {
  for (int victim = 0; victim < 4; ++victim) {
    Node n[4];
    HeadList<Node> list;
    for (int i = 3; i >= 0; --i) {
      n[i].id = i;
      list.PushFront(&n[i]);
    }
    EXPECT_EQ(Ids(list), (std::vector<int>{0, 1, 2, 3}));
    EXPECT_TRUE(HeadList<Node>::Linked(&n[victim]));
    HeadList<Node>::Remove(&n[victim]);
    EXPECT_FALSE(HeadList<Node>::Linked(&n[victim]));
    std::vector<int> want;
    for (int i = 0; i < 4; ++i)
      if (i != victim) want.push_back(i);
    EXPECT_EQ(Ids(list), want) << "removed " << victim;
    EXPECT_EQ(list.first()->id, want[0]);
    // The rest still unlink cleanly, first to last.
    for (int i : want) HeadList<Node>::Remove(&n[i]);
    EXPECT_TRUE(list.empty());
  }
}

TEST(HeadListTest, ForEachMayRemoveTheElementItIsGiven) {
  Node n[6];
  HeadList<Node> list;
  for (int i = 5; i >= 0; --i) {
    n[i].id = i;
    list.PushFront(&n[i]);
  }
  std::vector<int> seen;
  list.ForEach([&](Node* x) {
    seen.push_back(x->id);
    if (x->id % 2 == 0) HeadList<Node>::Remove(x);
  });
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(Ids(list), (std::vector<int>{1, 3, 5}));
}

TEST(HeadListTest, AnElementMovesBetweenLists) {
  // The filler's pattern: remove from one list, push on another, many times.
  HeadList<Node> lists[3];
  Node n[5];
  for (int i = 0; i < 5; ++i) {
    n[i].id = i;
    lists[0].PushFront(&n[i]);
  }
  for (int round = 0; round < 20; ++round) {
    Node* x = &n[round % 5];
    HeadList<Node>::Remove(x);
    lists[(round + 1) % 3].PushFront(x);
  }
  size_t total = 0;
  for (auto& l : lists) total += Ids(l).size();
  EXPECT_EQ(total, 5u);
  for (auto& l : lists) {
    l.ForEach([&](Node* x) { HeadList<Node>::Remove(x); });
    EXPECT_TRUE(l.empty());
  }
}

}  // namespace
}  // namespace jsmalloc
