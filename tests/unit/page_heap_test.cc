#include "backend/page_heap.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "tests/unit/test_support.h"

namespace jsmalloc {
namespace {

class PageHeapTest : public ::testing::Test {
 protected:
  PageHeapTest() : pagemap_(testing::NewPageMap()) {
    PageHeapOptions o;
    o.keep_free_min_bytes = ~size_t{0} >> 1;  // no automatic release unless a test asks
    heap_ = std::make_unique<PageHeap>(pagemap_.get(), &source_, GlobalArena(), o);
  }
  testing::FakePageSource source_;
  std::unique_ptr<PageMap> pagemap_;
  std::unique_ptr<PageHeap> heap_;
};

TEST_F(PageHeapTest, NewRecordsEveryPageAndDeleteCoalesces) {
  Span* a = heap_->New(3);
  Span* b = heap_->New(5);
  Span* c = heap_->New(200);  // beyond the per-length lists
  ASSERT_TRUE(a && b && c);
  for (Span* s : {a, b, c}) {
    EXPECT_EQ(s->location, Span::kInUse);
    for (Length i = 0; i < s->num_pages; ++i) EXPECT_EQ(pagemap_->Get(s->first_page + i), s);
  }
  EXPECT_EQ(b->first_page, a->first_page + 3) << "best fit keeps the heap compact";
  BackendStats st = heap_->Stats();
  EXPECT_EQ(st.in_use_bytes, (3 + 5 + 200) * kPageSize);
  EXPECT_EQ(st.spans_in_use, 3u);
  EXPECT_TRUE(heap_->CheckInvariants());
  heap_->Delete(a);
  heap_->Delete(c);
  heap_->Delete(b);
  EXPECT_TRUE(heap_->CheckInvariants());
  st = heap_->Stats();
  EXPECT_EQ(st.in_use_bytes, 0u);
  EXPECT_EQ(st.free_bytes, st.system_bytes);
  // Each mapping from the OS coalesces back into one run (the fake source
  // does not place mappings next to each other).
  EXPECT_LE(st.free_runs, source_.maps.load());
}

TEST_F(PageHeapTest, ReusesFreedRunsBeforeGrowing) {
  Span* a = heap_->New(10);
  size_t maps = source_.maps.load();
  PageId first = a->first_page;
  heap_->Delete(a);
  Span* b = heap_->New(4);
  EXPECT_EQ(b->first_page, first);
  EXPECT_EQ(source_.maps.load(), maps);
  heap_->Delete(b);
}

TEST_F(PageHeapTest, AlignedAllocation) {
  for (Length align : {Length{2}, Length{8}, Length{64}, Length{256}}) {
    Span* pad = heap_->New(1);  // misalign the next free run
    Span* s = heap_->NewAligned(3, align);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->first_page % align, 0u);
    EXPECT_EQ(s->num_pages, 3u);
    for (Length i = 0; i < 3; ++i) EXPECT_EQ(pagemap_->Get(s->first_page + i), s);
    EXPECT_TRUE(heap_->CheckInvariants());
    heap_->Delete(s);
    heap_->Delete(pad);
  }
  EXPECT_TRUE(heap_->CheckInvariants());
  EXPECT_EQ(heap_->Stats().in_use_bytes, 0u);
}

TEST_F(PageHeapTest, ReleaseAccountingAndReuseOfReleasedPages) {
  Span* a = heap_->New(50);
  Span* keep = heap_->New(1);
  heap_->Delete(a);
  size_t released = heap_->ReleaseAtLeast(1);
  EXPECT_GE(released, 50 * kPageSize);
  BackendStats st = heap_->Stats();
  EXPECT_EQ(st.unmapped_bytes, released);
  EXPECT_EQ(st.free_bytes + st.unmapped_bytes + st.in_use_bytes, st.system_bytes);
  EXPECT_EQ(source_.released_bytes.load(), released);
  EXPECT_TRUE(heap_->CheckInvariants());
  // Released pages come back as in-use, and read as zero.
  Span* b = heap_->New(50);
  ASSERT_NE(b, nullptr);
  const char* mem = static_cast<const char*>(b->start());
  for (size_t i = 0; i < b->bytes(); i += 4096) EXPECT_EQ(mem[i], 0);
  EXPECT_TRUE(heap_->CheckInvariants());
  heap_->Delete(b);
  heap_->Delete(keep);
  EXPECT_TRUE(heap_->CheckInvariants());
}

TEST_F(PageHeapTest, AutomaticReleaseAboveThreshold) {
  PageHeapOptions o;
  o.keep_free_min_bytes = 64 * kPageSize;
  o.keep_free_divisor = 1 << 30;
  PageHeap heap(pagemap_.get(), &source_, GlobalArena(), o);
  Span* big = heap.New(512);
  Span* pin = heap.New(1);
  heap.Delete(big);
  BackendStats st = heap.Stats();
  EXPECT_LE(st.free_bytes, 64 * kPageSize);
  EXPECT_GT(st.unmapped_bytes, 0u);
  EXPECT_TRUE(heap.CheckInvariants());
  heap.Delete(pin);
}

TEST_F(PageHeapTest, OutOfMemoryIsReportedNotFatal) {
  source_.fail_maps = 2;  // both the aligned and the fallback attempt
  EXPECT_EQ(heap_->New(100000), nullptr);
  Span* s = heap_->New(1);
  ASSERT_NE(s, nullptr) << "serves again once the OS gives memory";
  heap_->Delete(s);
}

TEST_F(PageHeapTest, DoubleDeleteAborts) {
  Span* s = heap_->New(2);
  heap_->Delete(s);
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(heap_->Delete(s), "jsmalloc: double free");
}

// Random operations against a model: no page is handed out twice, every
// handed-out page is recorded, and the invariants hold throughout.
TEST_F(PageHeapTest, RandomOperationsAgainstModel) {
  std::mt19937_64 rng(12345);
  std::map<PageId, Span*> live;  // first page -> span
  std::vector<Span*> order;
  for (int step = 0; step < 20000; ++step) {
    int op = static_cast<int>(rng() % 10);
    if (op < 5 || order.empty()) {
      Length n = rng() % 4 == 0 ? 1 + rng() % 300 : 1 + rng() % 8;
      Span* s = (rng() % 8 == 0) ? heap_->NewAligned(n, Length{1} << (rng() % 6)) : heap_->New(n);
      ASSERT_NE(s, nullptr);
      auto next = live.lower_bound(s->first_page);
      if (next != live.end()) ASSERT_GT(next->first, s->last_page()) << "overlap";
      if (next != live.begin()) {
        auto prev = std::prev(next);
        ASSERT_LT(prev->second->last_page(), s->first_page) << "overlap";
      }
      // Write through the pages: they must be ours and writable.
      static_cast<char*>(s->start())[0] = 1;
      static_cast<char*>(s->start())[s->bytes() - 1] = 1;
      live[s->first_page] = s;
      order.push_back(s);
    } else if (op < 9) {
      size_t i = rng() % order.size();
      Span* s = order[i];
      order[i] = order.back();
      order.pop_back();
      live.erase(s->first_page);
      heap_->Delete(s);
    } else {
      heap_->ReleaseAtLeast((rng() % 64) * kPageSize);
    }
    if (step % 1000 == 0) ASSERT_TRUE(heap_->CheckInvariants()) << step;
  }
  for (Span* s : order) heap_->Delete(s);
  ASSERT_TRUE(heap_->CheckInvariants());
  EXPECT_EQ(heap_->Stats().in_use_bytes, 0u);
}

}  // namespace
}  // namespace jsmalloc
