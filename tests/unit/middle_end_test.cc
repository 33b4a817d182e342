// Central free list, transfer cache and thread cache, each driven directly
// over a private page heap and pagemap.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "backend/page_heap.h"
#include "caches/central_free_list.h"
#include "base/size_map.h"
#include "caches/thread_cache.h"
#include "caches/transfer_cache.h"
#include "tests/unit/test_support.h"

namespace jsmalloc {
namespace {

class MiddleEndTest : public ::testing::Test {
 protected:
  MiddleEndTest() : pagemap_(testing::NewPageMap()) {
    heap_ = std::make_unique<PageHeap>(pagemap_.get(), &source_, GlobalArena());
    for (int cl = 1; cl < kNumClasses; ++cl) {
      central_[cl].Init(cl, SizeMap::ClassSize(cl), SizeMap::ClassPages(cl), heap_.get(),
                        pagemap_.get());
      int cap = TransferCache::DefaultCapacity(SizeMap::ClassSize(cl), SizeMap::BatchSize(cl));
      slots_[cl].resize(static_cast<size_t>(cap));
      transfer_[cl].Init(&central_[cl], slots_[cl].data(), cap);
    }
  }
  testing::FakePageSource source_;
  std::unique_ptr<PageMap> pagemap_;
  std::unique_ptr<PageHeap> heap_;
  CentralFreeList central_[kMaxClasses];
  TransferCache transfer_[kMaxClasses];
  std::vector<void*> slots_[kMaxClasses];
};

TEST_F(MiddleEndTest, CentralHandsOutDistinctAlignedObjectsAndReturnsEmptySpans) {
  for (int cl : {1, 5, 20, 40, 60, kNumClasses - 1}) {
    SCOPED_TRACE(cl);
    CentralFreeList& c = central_[cl];
    size_t size = SizeMap::ClassSize(cl);
    std::vector<void*> objs;
    std::set<void*> seen;
    size_t want = SizeMap::ObjectsPerSpan(cl) * 3 + 1;
    while (objs.size() < want) {
      void* batch[32];
      int n = c.RemoveRange(batch, 32);
      ASSERT_GT(n, 0);
      for (int i = 0; i < n; ++i) {
        ASSERT_TRUE(seen.insert(batch[i]).second) << "object handed out twice";
        ASSERT_EQ(pagemap_->SizeClassOf(batch[i]), cl);
        if (size >= 16) ASSERT_EQ(reinterpret_cast<uintptr_t>(batch[i]) % 16, 0u);
        memset(batch[i], 0xab, size);  // the whole object is usable
        objs.push_back(batch[i]);
      }
    }
    CentralStats st = c.Stats();
    EXPECT_EQ(st.live_objects, objs.size());
    EXPECT_EQ(st.spans, (objs.size() + SizeMap::ObjectsPerSpan(cl) - 1) / SizeMap::ObjectsPerSpan(cl));
    // Return in a scattered order; every span must go back to the page heap.
    std::reverse(objs.begin(), objs.end());
    for (size_t i = 0; i < objs.size(); i += 7) c.InsertRange(&objs[i], static_cast<int>(std::min<size_t>(7, objs.size() - i)));
    st = c.Stats();
    EXPECT_EQ(st.live_objects, 0u);
    EXPECT_EQ(st.spans, 0u);
    EXPECT_EQ(st.spans_released, st.spans_created);
    EXPECT_EQ(pagemap_->SizeClassOf(objs[0]), 0) << "class cleared when the span left";
  }
  EXPECT_EQ(heap_->Stats().in_use_bytes, 0u);
  EXPECT_TRUE(heap_->CheckInvariants());
}

TEST_F(MiddleEndTest, CentralPrefersFullerSpans) {
  const int cl = 5;  // 64-byte objects, 128 per span
  CentralFreeList& c = central_[cl];
  const size_t per_span = SizeMap::ObjectsPerSpan(cl);
  std::vector<void*> objs(per_span * 2);
  for (size_t got = 0; got < objs.size();) got += static_cast<size_t>(c.RemoveRange(&objs[got], static_cast<int>(std::min<size_t>(32, objs.size() - got))));
  // Free 90% of span A and 10% of span B (objects were carved in order).
  std::vector<void*> a(objs.begin(), objs.begin() + static_cast<long>(per_span));
  std::vector<void*> b(objs.begin() + static_cast<long>(per_span), objs.end());
  Span* span_a = pagemap_->Get(PageIdOf(a[0]));
  Span* span_b = pagemap_->Get(PageIdOf(b[0]));
  ASSERT_NE(span_a, span_b);
  for (size_t i = 0; i < per_span * 9 / 10; ++i) c.InsertRange(&a[i], 1);
  for (size_t i = 0; i < per_span / 10; ++i) c.InsertRange(&b[i], 1);
  void* p;
  ASSERT_EQ(c.RemoveRange(&p, 1), 1);
  EXPECT_EQ(pagemap_->Get(PageIdOf(p)), span_b) << "allocation should fill the fuller span";
}

TEST_F(MiddleEndTest, CentralAbortsOnForeignAndMisalignedPointers) {
  const int cl = 9;
  void* p;
  ASSERT_EQ(central_[cl].RemoveRange(&p, 1), 1);
  int local;
  void* foreign = &local;
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(central_[cl].InsertRange(&foreign, 1), "jsmalloc: invalid free");
  void* inner = static_cast<char*>(p) + 8;
  EXPECT_DEATH(central_[cl].InsertRange(&inner, 1), "not the start of an object");
  central_[cl].InsertRange(&p, 1);
}

// Bucket is the division it replaces, for every span size a class can have
// in any page-size build (up to 32768 objects: 8-byte objects in one 256 KiB
// page) and every count of objects in use.
TEST(CentralBucketTest, MultiplicationEqualsTheDivision) {
  auto check = [](uint32_t n) {
    const uint64_t mul = CentralFreeList::BucketMultiplier(n);
    for (uint32_t a = 0; a <= n; ++a) {
      ASSERT_EQ(CentralFreeList::Bucket(a, mul), static_cast<int>(uint64_t{a} * CentralFreeList::kBuckets / n))
          << a << " of " << n;
    }
  };
  for (uint32_t n = 1; n <= 4096; ++n) check(n);
  for (uint32_t n = 4097; n <= 32768; n += 97) check(n);
  check(32768);
  check(65536);
}

// A batch whose objects come in runs of one span, interleaved with runs of
// others: counts, buckets and the spans' return stay exact.
TEST_F(MiddleEndTest, CentralTakesBatchesWithRunsOfSeveralSpans) {
  const int cl = 5;  // 64-byte objects, 128 per span
  CentralFreeList& c = central_[cl];
  const size_t per_span = SizeMap::ObjectsPerSpan(cl);
  std::vector<void*> objs(per_span * 3);
  for (size_t got = 0; got < objs.size();) got += static_cast<size_t>(c.RemoveRange(&objs[got], static_cast<int>(std::min<size_t>(32, objs.size() - got))));
  std::vector<void*> span[3];
  for (void* p : objs) {
    Span* s = pagemap_->Get(PageIdOf(p));
    size_t k = s == pagemap_->Get(PageIdOf(objs[0])) ? 0 : s == pagemap_->Get(PageIdOf(objs.back())) ? 2 : 1;
    span[k].push_back(p);
  }
  ASSERT_EQ(span[0].size(), per_span);
  ASSERT_EQ(span[1].size(), per_span);
  // Runs of 1, 2 and 3 objects in turn from the three spans: 3/4 of span 0,
  // 1/2 of span 1, 1/8 of span 2 freed, then span 2 should be the fullest.
  const size_t want[3] = {per_span * 3 / 4, per_span / 2, per_span / 8};
  size_t next[3] = {0, 0, 0};
  std::vector<void*> batch;
  for (int turn = 0; next[0] < want[0] || next[1] < want[1] || next[2] < want[2]; ++turn) {
    const int k = turn % 3;
    for (int r = 0; r <= k && next[k] < want[k]; ++r) batch.push_back(span[k][next[k]++]);
    if (batch.size() >= 29 || (next[0] == want[0] && next[1] == want[1] && next[2] == want[2])) {
      c.InsertRange(batch.data(), static_cast<int>(batch.size()));
      batch.clear();
    }
  }
  CentralStats st = c.Stats();
  EXPECT_EQ(st.live_objects, 3 * per_span - want[0] - want[1] - want[2]);
  EXPECT_EQ(st.spans, 3u);
  void* p;
  ASSERT_EQ(c.RemoveRange(&p, 1), 1);
  EXPECT_EQ(pagemap_->Get(PageIdOf(p)), pagemap_->Get(PageIdOf(span[2][0])))
      << "the fullest span is filed in the highest bucket";
  c.InsertRange(&p, 1);
  // The rest, in one batch per span alternating, empties all three.
  std::vector<void*> rest;
  for (size_t i = 0; i < per_span; ++i) {
    for (int k = 0; k < 3; ++k) {
      if (i >= want[k]) rest.push_back(span[k][i]);
    }
  }
  for (size_t i = 0; i < rest.size(); i += 64) c.InsertRange(&rest[i], static_cast<int>(std::min<size_t>(64, rest.size() - i)));
  st = c.Stats();
  EXPECT_EQ(st.live_objects, 0u);
  EXPECT_EQ(st.spans, 0u);
  EXPECT_EQ(heap_->Stats().in_use_bytes, 0u);
}

// Objects that arrive unmarked (the transfer cache is full) are checked and
// marked by the central list: a second copy aborts there, in the same batch
// or later, and also once the transfer cache has room again.
TEST_F(MiddleEndTest, CentralMarksWhatTheFullTransferCacheSendsOn) {
  const int cl = 5;
  void* objs[4];
  ASSERT_EQ(central_[cl].RemoveRange(objs, 4), 4);
  central_[cl].InsertRange(objs, 2, /*mark=*/true);
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(central_[cl].InsertRange(&objs[1], 1, /*mark=*/true), "jsmalloc: double free of pointer 0x");
  void* twice[2] = {objs[2], objs[2]};
  EXPECT_DEATH(central_[cl].InsertRange(twice, 2, /*mark=*/true), "jsmalloc: double free of pointer 0x");
  void* inside = static_cast<char*>(objs[3]) + 16;
  EXPECT_DEATH(central_[cl].InsertRange(&inside, 1, /*mark=*/true),
               "jsmalloc: invalid free of pointer that is not the start of an object: 0x");
  EXPECT_TRUE(transfer_[cl].HoldsAsFree(objs[0]));
  EXPECT_FALSE(transfer_[cl].HoldsAsFree(objs[2]));

  // Through a full transfer cache.
  TransferCache& t = transfer_[cl];
  const int batch = SizeMap::BatchSize(cl);
  const size_t cap = t.Stats().capacity;
  std::vector<void*> fill(cap);
  // Through the transfer cache, which clears the marks of what it hands out
  // (objs[0] and objs[1] among them, possibly).
  for (size_t got = 0; got < cap;) got += static_cast<size_t>(t.RemoveRange(&fill[got], static_cast<int>(std::min<size_t>(static_cast<size_t>(batch), cap - got))));
  for (size_t i = 0; i < cap; i += static_cast<size_t>(batch)) t.InsertRange(&fill[i], static_cast<int>(std::min<size_t>(static_cast<size_t>(batch), cap - i)));
  ASSERT_EQ(t.objects(), cap);
  t.InsertRange(&objs[2], 1);  // full: on to the central list, marked there
  EXPECT_EQ(t.Stats().insert_misses, 1u);
  EXPECT_TRUE(t.HoldsAsFree(objs[2]));
  EXPECT_DEATH(t.InsertRange(&objs[2], 1), "jsmalloc: double free of pointer 0x");
  void* back[1];
  ASSERT_EQ(t.RemoveRange(back, 1), 1);  // room again
  EXPECT_DEATH(t.InsertRange(&objs[2], 1), "jsmalloc: double free of pointer 0x");
  t.InsertRange(back, 1);
  // What the transfer cache hands out (from the central list now) is unmarked.
  t.Drain();
  std::vector<void*> all(cap + 3);
  for (size_t got = 0; got < all.size();) got += static_cast<size_t>(t.RemoveRange(&all[got], 1));
  for (void* p : all) EXPECT_FALSE(t.HoldsAsFree(p));
  for (void* p : all) t.InsertRange(&p, 1);
  t.Drain();
  central_[cl].InsertRange(&objs[3], 1);
  EXPECT_EQ(central_[cl].Stats().live_objects, 0u);
  EXPECT_EQ(central_[cl].Stats().spans, 0u);
}

// Refilling a cache with objects carved fresh from a new span writes none of
// them: their pages stay out of memory until the program uses them (a small
// process's peak counted every page a refill had written a cleared mark to).
TEST_F(MiddleEndTest, FreshObjectsLeaveUntouched) {
  // Every class's span stays live to the end, so each comes from memory the
  // page heap never handed out before.
  std::vector<std::pair<int, std::vector<void*>>> live;
  for (int cl : {2, 5, 12, 30}) {
    SCOPED_TRACE(cl);
    const size_t per_span = SizeMap::ObjectsPerSpan(cl);
    const size_t span_bytes = SizeMap::ClassPages(cl) << kPageShift;
    const int batch = SizeMap::BatchSize(cl);
    std::vector<void*> objs(per_span);
    for (size_t got = 0; got < per_span;) {
      got += static_cast<size_t>(transfer_[cl].RemoveRange(&objs[got], static_cast<int>(std::min<size_t>(static_cast<size_t>(batch), per_span - got))));
    }
    void* start = *std::min_element(objs.begin(), objs.end());
    ASSERT_EQ(central_[cl].Stats().spans, 1u);
    EXPECT_EQ(os::ResidentBytesIn(start, span_bytes), 0u) << "a refill wrote into objects never used";
    live.emplace_back(cl, std::move(objs));
  }
  for (auto& [cl, objs] : live) {
    for (void* p : objs) transfer_[cl].InsertRange(&p, 1);
    transfer_[cl].Drain();
    EXPECT_EQ(central_[cl].Stats().spans, 0u);
  }
}

// A span that empties takes its objects' free marks with it, so a span
// carved later from the same memory (objects handed out unwritten) holds no
// stale mark: freeing its objects must not abort as a double free, and none
// may look freed to realloc.
TEST_F(MiddleEndTest, ReusedSpanMemoryCarriesNoStaleMarks) {
  for (int cl : {2, 5, 12, 30}) {
    SCOPED_TRACE(cl);
    TransferCache& t = transfer_[cl];
    const size_t want = SizeMap::ObjectsPerSpan(cl) * 2;
    const int batch = SizeMap::BatchSize(cl);
    auto take = [&](std::vector<void*>& v) {
      v.resize(want);
      for (size_t got = 0; got < want;) {
        got += static_cast<size_t>(t.RemoveRange(&v[got], static_cast<int>(std::min<size_t>(static_cast<size_t>(batch), want - got))));
      }
    };
    std::vector<void*> first, second;
    take(first);
    for (void* p : first) t.InsertRange(&p, 1);  // marked here or in the central list
    // Those whose span emptied already (the transfer cache overflowed into
    // the central list: with larger pages) lost their marks with it.
    size_t marked = 0;
    for (void* p : first) marked += t.HoldsAsFree(p) ? 1 : 0;
    ASSERT_GT(marked, 0u) << "nothing was marked: the test shows nothing";
    t.Drain();
    ASSERT_EQ(central_[cl].Stats().spans, 0u) << "the spans went back to the page heap";
    take(second);
    std::set<void*> old(first.begin(), first.end());
    size_t reused = 0;
    for (void* p : second) reused += old.count(p);
    ASSERT_GT(reused, 0u) << "the page heap handed out other memory: the test shows nothing";
    for (void* p : second) EXPECT_FALSE(t.HoldsAsFree(p));
    for (void* p : second) t.InsertRange(&p, 1);  // a stale mark would abort here
    t.Drain();
    EXPECT_EQ(central_[cl].Stats().spans, 0u);
  }
}

// Records the first touch of each page of a range (userfaultfd, missing
// pages): whether it was a write. A read first of a never-touched page maps
// the kernel's zero page (the huge one in a hugepage-advised range), which
// a 6.1 kernel splits into 4 KiB pages at the next write.
class FirstTouchRecorder {
 public:
  // False (with the reason in *why) when userfaultfd is not available.
  bool Start(void* start, size_t bytes, std::string* why) {
    uffd_ = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (uffd_ < 0) {
      *why = std::string("userfaultfd: ") + strerror(errno);
      return false;
    }
    uffdio_api api = {};
    api.api = UFFD_API;
    uffdio_register reg = {};
    reg.range.start = reinterpret_cast<uintptr_t>(start);
    reg.range.len = bytes;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (ioctl(uffd_, UFFDIO_API, &api) != 0 || ioctl(uffd_, UFFDIO_REGISTER, &reg) != 0) {
      *why = std::string("userfaultfd registration: ") + strerror(errno);
      close(uffd_);
      uffd_ = -1;
      return false;
    }
    range_ = reg.range;
    handler_ = std::thread([this] { Serve(); });
    return true;
  }
  void Stop() {
    stop_.store(true);
    handler_.join();
    ioctl(uffd_, UFFDIO_UNREGISTER, &range_);
    close(uffd_);
  }
  int reads() const { return reads_.load(); }
  int writes() const { return writes_.load(); }

 private:
  void Serve() {
    static char zeros[4096] __attribute__((aligned(4096)));
    while (!stop_.load()) {
      pollfd p = {uffd_, POLLIN, 0};
      if (poll(&p, 1, 10) <= 0) continue;
      uffd_msg msg;
      if (read(uffd_, &msg, sizeof(msg)) != static_cast<ssize_t>(sizeof(msg))) continue;
      if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
      if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) {
        writes_.fetch_add(1);
      } else {
        reads_.fetch_add(1);
      }
      uffdio_copy copy = {};
      copy.dst = msg.arg.pagefault.address & ~uint64_t{4095};
      copy.src = reinterpret_cast<uintptr_t>(zeros);
      copy.len = 4096;
      ioctl(uffd_, UFFDIO_COPY, &copy);
    }
  }
  int uffd_ = -1;
  uffdio_range range_ = {};
  std::thread handler_;
  std::atomic<bool> stop_{false};
  std::atomic<int> reads_{0}, writes_{0};
};

// Objects refilled into a cache and never handed to the program (a CPU's
// cache overflowing, or drained) go back down with their pages untouched:
// the transfer cache's and the central list's double-free checks must write
// to such an object before they read its mark.
TEST_F(MiddleEndTest, ObjectsNeverUsedGoBackWithAWriteFirst) {
  const int cl = 5;
  const size_t per_span = SizeMap::ObjectsPerSpan(cl);
  const size_t span_bytes = SizeMap::ClassPages(cl) << kPageShift;
  const int batch = SizeMap::BatchSize(cl);
  // Both spans carved before either goes back (an emptied span's memory
  // would be reused, touched).
  std::vector<void*> spans[2];
  for (auto& objs : spans) {
    objs.resize(per_span);
    for (size_t got = 0; got < per_span;) {
      got += static_cast<size_t>(central_[cl].RemoveRange(&objs[got], static_cast<int>(per_span - got)));
    }
  }
  for (bool through_transfer : {true, false}) {
    SCOPED_TRACE(through_transfer ? "transfer cache" : "central list");
    std::vector<void*>& objs = spans[through_transfer ? 0 : 1];
    void* start = *std::min_element(objs.begin(), objs.end());
    ASSERT_EQ(os::ResidentBytesIn(start, span_bytes), 0u) << "the span is touched already: the test shows nothing";
    FirstTouchRecorder rec;
    std::string why;
    if (!rec.Start(start, span_bytes, &why)) GTEST_SKIP() << why;
    for (size_t i = 0; i < per_span; i += static_cast<size_t>(batch)) {
      const int n = static_cast<int>(std::min<size_t>(static_cast<size_t>(batch), per_span - i));
      if (through_transfer) {
        transfer_[cl].InsertRange(&objs[i], n);
      } else {
        central_[cl].InsertRange(&objs[i], n, /*mark=*/true);
      }
    }
    rec.Stop();
    EXPECT_GT(rec.writes(), 0) << "no page was touched: the test shows nothing";
    EXPECT_EQ(rec.reads(), 0) << "a never-touched page was read before it was written";
  }
  transfer_[cl].Drain();
  EXPECT_EQ(central_[cl].Stats().spans, 0u);
}

// Clearing an empty span's marks skips the pages released inside it: they
// stay out of memory when the span goes back.
TEST_F(MiddleEndTest, EmptySpanLeavesItsReleasedPagesAlone) {
  constexpr size_t kSysPage = 4096;  // what the central list releases
  if (os::SystemPageSize() != kSysPage) GTEST_SKIP() << "spans release 4 KiB pages only; this system's pages are larger";
  // A class whose span has several system pages and can release them (at
  // most 64), in every page-size build.
  int cl = 0;
  for (int c = 2; c < kNumClasses && cl == 0; ++c) {
    const size_t bytes = SizeMap::ClassPages(c) << kPageShift;
    if (SizeMap::ClassSize(c) >= 16 && SizeMap::ObjectsPerSpan(c) >= 8 && bytes >= 4 * kSysPage &&
        bytes <= 64 * kSysPage) {
      cl = c;
    }
  }
  ASSERT_NE(cl, 0) << "no class with a span of 4 to 64 system pages";
  SCOPED_TRACE(cl);
  CentralFreeList& c = central_[cl];
  const size_t size = SizeMap::ClassSize(cl);
  const size_t per_span = SizeMap::ObjectsPerSpan(cl);
  std::vector<void*> objs(per_span);
  for (size_t got = 0; got < per_span;) got += static_cast<size_t>(c.RemoveRange(&objs[got], static_cast<int>(per_span - got)));
  std::sort(objs.begin(), objs.end());
  char* start = static_cast<char*>(objs[0]);
  for (void* p : objs) memset(p, 0x5a, size);
  // Everything but the last object is freed (marked as the transfer cache's
  // overflow would be); every page before the last object's can go.
  c.InsertRange(objs.data(), static_cast<int>(per_span - 1), /*mark=*/true);
  ASSERT_GT(c.ReleaseFreePages(), 0u);
  const size_t gone = (static_cast<size_t>(static_cast<char*>(objs[per_span - 1]) - start) / kSysPage) * kSysPage;
  ASSERT_GE(gone, kSysPage);
  ASSERT_EQ(os::ResidentBytesIn(start, gone), 0u);
  c.InsertRange(&objs[per_span - 1], 1, /*mark=*/true);
  EXPECT_EQ(c.Stats().spans, 0u);
  EXPECT_EQ(os::ResidentBytesIn(start, gone), 0u) << "clearing the marks faulted released pages in";
}

// malloc_trim's release inside spans that still hold live objects: only
// pages whose every object is free go, the live objects keep their bytes,
// and the released objects are handed out again (once the span has no other
// free object), each exactly once. Classes whose objects cross page
// boundaries included.
TEST_F(MiddleEndTest, ReleaseFreePagesKeepsLiveObjectsAndHandsTheRestOutAgain) {
  int classes_with_free_pages = 0;
  for (int cl = 1; cl < kNumClasses; cl += 3) {
    SCOPED_TRACE(cl);
    CentralFreeList& c = central_[cl];
    const size_t size = SizeMap::ClassSize(cl);
    const size_t per_span = SizeMap::ObjectsPerSpan(cl);
    std::vector<void*> objs;
    while (objs.size() < per_span * 4) {  // four whole spans, every object carved
      void* batch[64];
      int n = c.RemoveRange(batch, static_cast<int>(std::min<size_t>(64, per_span * 4 - objs.size())));
      ASSERT_GT(n, 0);
      objs.insert(objs.end(), batch, batch + n);
    }
    // Keep one object in 16 (scattered), each filled with its own byte.
    std::vector<void*> keep, freed;
    for (size_t i = 0; i < objs.size(); ++i) {
      if ((i * 7919) % 16 == 0) {
        memset(objs[i], static_cast<int>(i & 0xff), size);
        keep.push_back(objs[i]);
      } else {
        freed.push_back(objs[i]);
      }
    }
    for (size_t i = 0; i < freed.size(); i += 32) c.InsertRange(&freed[i], static_cast<int>(std::min<size_t>(32, freed.size() - i)));
    // The 4 KiB pages that only freed objects of spans still in use lie on:
    // at least these must go.
    std::set<uintptr_t> freed_pages, kept_pages;
    auto pages = [](void* o, size_t n, std::set<uintptr_t>* out) {
      for (uintptr_t a = reinterpret_cast<uintptr_t>(o) / 4096; a <= (reinterpret_cast<uintptr_t>(o) + n - 1) / 4096; ++a) out->insert(a);
    };
    for (void* o : keep) pages(o, size, &kept_pages);
    for (void* o : freed) {
      Span* sp = pagemap_->Get(PageIdOf(o));
      if (sp != nullptr && sp->allocated > 0) pages(o, size, &freed_pages);
    }
    size_t expect = 0;
    for (uintptr_t a : freed_pages) expect += kept_pages.count(a) == 0;
    size_t released = c.ReleaseFreePages();
    CentralStats st = c.Stats();
    EXPECT_EQ(st.released_bytes, released);
    if ((SizeMap::ClassPages(cl) << kPageShift) <= 64 * 4096) {
      EXPECT_GE(released, expect * 4096);
      if (expect > 0) ++classes_with_free_pages;
    }
    EXPECT_EQ(c.ReleaseFreePages(), 0u) << "nothing new the second time";
    for (size_t k = 0; k < keep.size(); ++k) {
      size_t i = static_cast<size_t>(std::find(objs.begin(), objs.end(), keep[k]) - objs.begin());
      const unsigned char* b = static_cast<const unsigned char*>(keep[k]);
      for (size_t j = 0; j < size; ++j) ASSERT_EQ(b[j], static_cast<unsigned char>(i & 0xff)) << "live object changed";
    }
    // Every freed object comes back exactly once, writable, before the span
    // asks the back-end for more.
    std::set<void*> back;
    std::set<void*> live(keep.begin(), keep.end());
    while (back.size() < freed.size()) {
      void* batch[64];
      int n = c.RemoveRange(batch, static_cast<int>(std::min<size_t>(64, freed.size() - back.size())));
      ASSERT_GT(n, 0);
      for (int j = 0; j < n; ++j) {
        ASSERT_TRUE(back.insert(batch[j]).second) << "handed out twice";
        ASSERT_EQ(live.count(batch[j]), 0u) << "a live object handed out";
        memset(batch[j], 0x5a, size);
      }
    }
    EXPECT_EQ(back, std::set<void*>(freed.begin(), freed.end()));
    EXPECT_EQ(c.Stats().released_bytes, 0u) << "all refilled";
    std::vector<void*> all(back.begin(), back.end());
    all.insert(all.end(), keep.begin(), keep.end());
    for (size_t i = 0; i < all.size(); i += 32) c.InsertRange(&all[i], static_cast<int>(std::min<size_t>(32, all.size() - i)));
    EXPECT_EQ(c.Stats().spans, 0u);
  }
  EXPECT_GT(classes_with_free_pages, 0) << "no class was checked for released pages";
}

// A class whose spans have at least two 4 KiB pages (so one can be freed
// while another keeps a live object) and at most 64 (what the release
// inside spans handles); its objects from `spans` whole spans, split into
// each span's first object (kept) and the rest (freed).
static int SplitSpans(CentralFreeList* central, PageMap* pagemap, size_t spans, std::vector<void*>* keep,
                      std::vector<void*>* freed) {
  int cl = 1;
  while (cl < kNumClasses && ((SizeMap::ClassPages(cl) << kPageShift) < 2 * 4096 ||
                              (SizeMap::ClassPages(cl) << kPageShift) > 64 * 4096 || SizeMap::ClassSize(cl) > 1024))
    ++cl;
  if (cl >= kNumClasses) return 0;
  CentralFreeList& c = central[cl];
  std::vector<void*> objs(SizeMap::ObjectsPerSpan(cl) * spans);
  for (size_t got = 0; got < objs.size();) {
    int n = c.RemoveRange(&objs[got], static_cast<int>(std::min<size_t>(64, objs.size() - got)));
    if (n <= 0) return 0;
    got += static_cast<size_t>(n);
  }
  for (void* o : objs) {
    Span* sp = pagemap->Get(PageIdOf(o));
    size_t off = static_cast<size_t>(static_cast<char*>(o) - static_cast<char*>(sp->start()));
    (off == 0 ? keep : freed)->push_back(o);
  }
  return cl;
}

// A span whose pages were released inside it and whose last live objects
// are then freed leaves with its released pages: the count of pages
// released inside live spans goes back to zero (it underflowed the stats
// report's "central cache freelist" line before).
TEST_F(MiddleEndTest, SpanEmptiedAfterAReleaseTakesItsReleasedPagesAlong) {
  std::vector<void*> keep, freed;
  const int cl = SplitSpans(central_, pagemap_.get(), 2, &keep, &freed);
  ASSERT_GT(cl, 0) << "no class with multi-page spans";
  CentralFreeList& c = central_[cl];
  for (void* o : freed) c.InsertRange(&o, 1);
  ASSERT_GT(c.ReleaseFreePages(), 0u) << "class " << cl << " size " << SizeMap::ClassSize(cl) << " pages " << SizeMap::ClassPages(cl) << " keep " << keep.size() << " freed " << freed.size() << " spans " << c.Stats().spans;
  ASSERT_GT(c.Stats().released_bytes, 0u);
  for (void* o : keep) c.InsertRange(&o, 1);
  CentralStats st = c.Stats();
  EXPECT_EQ(st.spans, 0u);
  EXPECT_EQ(st.released_bytes, 0u);
  EXPECT_EQ(st.free_bytes, 0u);
}

// The background thread's form: nothing until the class has seen no
// RemoveRange for `idle_calls` calls, then what ReleaseFreePages would
// release; any RemoveRange starts the count again.
TEST_F(MiddleEndTest, ReleaseFreePagesIfIdleWaitsForAWholeIdleDelay) {
  std::vector<void*> keep, freed;
  // More spans than one chunk of the walk (16), so the lap takes several.
  const int cl = SplitSpans(central_, pagemap_.get(), 40, &keep, &freed);
  ASSERT_GT(cl, 0) << "no class with multi-page spans";
  CentralFreeList& c = central_[cl];
  for (void* o : freed) c.InsertRange(&o, 1);
  EXPECT_EQ(c.ReleaseFreePagesIfIdle(3, 0), 0u) << "RemoveRange ran since the last call";
  EXPECT_EQ(c.ReleaseFreePagesIfIdle(3, 0), 0u) << "idle for 1 call of 3";
  void* one;
  ASSERT_EQ(c.RemoveRange(&one, 1), 1);
  c.InsertRange(&one, 1);
  EXPECT_EQ(c.ReleaseFreePagesIfIdle(3, 0), 0u) << "taken from again: the count starts over";
  EXPECT_EQ(c.ReleaseFreePagesIfIdle(3, 0), 0u);
  EXPECT_EQ(c.ReleaseFreePagesIfIdle(3, 0), 0u);
  EXPECT_EQ(c.ReleaseFreePagesIfIdle(3, size_t{1} << 40), 0u) << "less free than the minimum";
  size_t got = 0;
  for (int i = 0; i < 3; ++i) got += c.ReleaseFreePagesIfIdle(3, 0);
  EXPECT_GT(got, 0u) << "idle for 3 calls";
  EXPECT_EQ(c.Stats().released_bytes, got);
  // One lap reached every span: a full trim finds nothing more to release.
  EXPECT_EQ(c.ReleaseFreePages(), 0u) << "the idle release skipped spans";
  // Free space left on pages that live objects keep: one more walk finds
  // nothing to release, and the class is not walked again until something
  // is freed.
  const size_t laps = c.Stats().idle_laps;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c.ReleaseFreePagesIfIdle(3, 0), 0u);
  EXPECT_EQ(c.Stats().idle_laps, laps + 1) << "the walk that found nothing";
  for (int i = 0; i < 9; ++i) EXPECT_EQ(c.ReleaseFreePagesIfIdle(3, 0), 0u);
  EXPECT_EQ(c.Stats().idle_laps, laps + 1) << "not walked again while nothing is freed";
  c.InsertRange(&keep.back(), 1);
  keep.pop_back();
  for (int i = 0; i < 3; ++i) c.ReleaseFreePagesIfIdle(3, 0);
  EXPECT_EQ(c.Stats().idle_laps, laps + 2) << "walked again after a free";
  for (void* o : keep) c.InsertRange(&o, 1);
  EXPECT_EQ(c.Stats().released_bytes, 0u);
}

TEST_F(MiddleEndTest, IsObjectStartAcceptsExactlyTheObjectStartsOfItsClass) {
  // The multiplication by the odd part's inverse against the division, at
  // every 8-byte offset of a span, for every class.
  for (int cl = 1; cl < kNumClasses; ++cl) {
    SCOPED_TRACE(cl);
    CentralFreeList& c = central_[cl];
    const size_t size = SizeMap::ClassSize(cl);
    void* obj = nullptr;
    ASSERT_EQ(c.RemoveRange(&obj, 1), 1);
    Span* span = pagemap_->Get(PageIdOf(obj));
    ASSERT_NE(span, nullptr);
    char* start = static_cast<char*>(span->start());
    const size_t bytes = span->bytes();
    size_t wrong = 0;
    // The span's tail past its last object holds no object, even at a
    // multiple of the size.
    const size_t objects = SizeMap::ObjectsPerSpan(cl);
    for (size_t off = 0; off < bytes; off += 8) {
      if (c.IsObjectStart(start + off) != (off % size == 0 && off / size < objects)) ++wrong;
    }
    EXPECT_EQ(wrong, 0u) << "size " << size;
    // Another class's object, and memory no span covers.
    int other = cl == 1 ? 2 : 1;
    EXPECT_FALSE(central_[other].IsObjectStart(obj));
    static char not_heap[64];
    EXPECT_FALSE(c.IsObjectStart(not_heap));
    c.InsertRange(&obj, 1);
  }
}

TEST_F(MiddleEndTest, TransferCacheAbortsOnAnObjectFreedTwiceOrAnInteriorPointer) {
  const int cl = 5;
  void* objs[4];
  ASSERT_EQ(transfer_[cl].RemoveRange(objs, 4), 4);
  transfer_[cl].InsertRange(objs, 2);
  // The second copy of objs[1] arrives while the first is still here.
  EXPECT_DEATH(transfer_[cl].InsertRange(&objs[1], 1), "jsmalloc: double free of pointer 0x");
  // In a batch with its own copy.
  void* twice[2] = {objs[2], objs[2]};
  EXPECT_DEATH(transfer_[cl].InsertRange(twice, 2), "jsmalloc: double free of pointer 0x");
  void* inside = static_cast<char*>(objs[3]) + 16;
  EXPECT_DEATH(transfer_[cl].InsertRange(&inside, 1),
               "jsmalloc: invalid free of pointer that is not the start of an object: 0x");
  // Handed out again, an object loses its mark: its next free is fine.
  void* back[2];
  ASSERT_EQ(transfer_[cl].RemoveRange(back, 2), 2);
  transfer_[cl].InsertRange(back, 2);
  transfer_[cl].InsertRange(&objs[2], 1);
  transfer_[cl].InsertRange(&objs[3], 1);
}

TEST_F(MiddleEndTest, TransferCacheHoldsUpToCapacityThenOverflowsToCentral) {
  const int cl = 3;
  TransferCache& t = transfer_[cl];
  const int batch = SizeMap::BatchSize(cl);
  const size_t cap = t.Stats().capacity;
  std::vector<void*> objs(cap + static_cast<size_t>(batch));
  for (size_t got = 0; got < objs.size();) got += static_cast<size_t>(central_[cl].RemoveRange(&objs[got], batch));
  for (size_t i = 0; i < objs.size(); i += static_cast<size_t>(batch)) t.InsertRange(&objs[i], batch);
  TransferStats st = t.Stats();
  EXPECT_EQ(st.objects, cap);
  EXPECT_EQ(st.insert_misses, 1u);
  EXPECT_EQ(central_[cl].Stats().live_objects, cap) << "the overflow batch went back to central";
  std::vector<void*> back(static_cast<size_t>(batch));
  EXPECT_EQ(t.RemoveRange(back.data(), batch), batch);
  EXPECT_EQ(t.Stats().remove_hits, 1u);
  t.InsertRange(back.data(), batch);
  t.Drain();
  EXPECT_EQ(t.objects(), 0u);
  EXPECT_EQ(central_[cl].Stats().live_objects, 0u);
}

// A remove with a minimum takes what the cache holds when that is at least
// the minimum (a per-CPU refill of several batches), and goes to the central
// list only below it.
TEST_F(MiddleEndTest, TransferCacheRemoveWithAMinimumTakesWhatItHolds) {
  const int cl = 3;
  TransferCache& t = transfer_[cl];
  const int batch = SizeMap::BatchSize(cl);
  std::vector<void*> objs(static_cast<size_t>(3 * batch));
  for (size_t got = 0; got < objs.size();) got += static_cast<size_t>(central_[cl].RemoveRange(&objs[got], batch));
  t.InsertRange(&objs[0], batch);
  t.InsertRange(&objs[static_cast<size_t>(batch)], batch);
  std::vector<void*> out(static_cast<size_t>(4 * batch));
  // 2 batches held, 4 wanted, at least 1 batch: both batches, from here.
  EXPECT_EQ(t.RemoveRange(out.data(), 4 * batch, batch), 2 * batch);
  EXPECT_EQ(t.objects(), 0u);
  EXPECT_EQ(t.Stats().remove_hits, 1u);
  std::set<void*> seen(out.begin(), out.begin() + 2 * batch);
  for (int i = 0; i < 2 * batch; ++i) EXPECT_TRUE(seen.count(objs[static_cast<size_t>(i)])) << i;
  // Fewer than the minimum held: the whole request from the central list.
  t.InsertRange(&objs[static_cast<size_t>(2 * batch)], batch / 2);
  std::vector<void*> more(static_cast<size_t>(4 * batch));
  EXPECT_EQ(t.RemoveRange(more.data(), 4 * batch, batch), 4 * batch);
  EXPECT_EQ(t.objects(), static_cast<size_t>(batch / 2)) << "what it held stays";
  EXPECT_EQ(t.Stats().remove_misses, 1u);
  t.InsertRange(out.data(), 2 * batch);
  for (int i = 0; i < 4 * batch; i += batch) t.InsertRange(&more[static_cast<size_t>(i)], batch);
  t.InsertRange(&objs[static_cast<size_t>(2 * batch + batch / 2)], batch - batch / 2);
  t.Drain();
  EXPECT_EQ(central_[cl].Stats().live_objects, 0u);
}

// The background thread's Plunder moves back only what sat in the transfer
// cache untouched for a whole interval: an idle class empties in two calls, a
// class in use keeps what it cycles through.
TEST_F(MiddleEndTest, TransferCachePlunderTakesOnlyWhatStayedUnused) {
  const int cl = 4;
  TransferCache& t = transfer_[cl];
  const int batch = SizeMap::BatchSize(cl);
  std::vector<void*> objs(static_cast<size_t>(batch) * 6);
  for (size_t got = 0; got < objs.size();) got += static_cast<size_t>(central_[cl].RemoveRange(&objs[got], batch));
  for (size_t i = 0; i < objs.size(); i += static_cast<size_t>(batch)) t.InsertRange(&objs[i], batch);
  EXPECT_EQ(t.Plunder(), 0) << "the first call only marks what is there";
  EXPECT_EQ(t.objects(), objs.size());
  // Busy: two batches taken and given back since; the other four sat idle.
  std::vector<void*> tmp(static_cast<size_t>(batch) * 2);
  ASSERT_EQ(t.RemoveRange(tmp.data(), batch), batch);
  ASSERT_EQ(t.RemoveRange(tmp.data() + batch, batch), batch);
  t.InsertRange(tmp.data(), batch);
  t.InsertRange(tmp.data() + batch, batch);
  EXPECT_EQ(t.Plunder(), 4 * batch);
  EXPECT_EQ(t.objects(), static_cast<size_t>(2 * batch));
  EXPECT_EQ(central_[cl].Stats().live_objects, static_cast<size_t>(2 * batch)) << "the rest went back";
  // The two recent batches are the ones kept (still valid objects).
  std::vector<void*> out(static_cast<size_t>(batch) * 2);
  ASSERT_EQ(t.RemoveRange(out.data(), batch), batch);
  ASSERT_EQ(t.RemoveRange(out.data() + batch, batch), batch);
  std::set<void*> kept(out.begin(), out.end());
  t.InsertRange(out.data(), batch);
  t.InsertRange(out.data() + batch, batch);
  for (void* p : tmp) EXPECT_EQ(kept.count(p), 1u);
  EXPECT_EQ(t.Plunder(), 0) << "the kept ones were used in this interval";
  EXPECT_EQ(t.Plunder(), 2 * batch) << "and then idle for one";
  EXPECT_EQ(t.objects(), 0u);
  EXPECT_EQ(central_[cl].Stats().live_objects, 0u);
}

TEST_F(MiddleEndTest, ThreadCacheGrowsListsOnMissesAndScavengesToBudget) {
  ThreadCacheRegistry registry;
  registry.Init(transfer_, GlobalArena(), 4 << 20);
  ThreadCache* tc = registry.Create();
  ASSERT_NE(tc, nullptr);
  const int cl = 10;
  EXPECT_EQ(tc->list_max_length(cl), 1u);
  std::vector<void*> objs;
  for (int i = 0; i < 2000; ++i) objs.push_back(tc->Allocate(cl));
  EXPECT_GT(tc->list_max_length(cl), 1u) << "misses grow the list";
  std::set<void*> unique(objs.begin(), objs.end());
  EXPECT_EQ(unique.size(), objs.size());
  for (void* p : objs) tc->Deallocate(p, cl);
  EXPECT_LE(tc->list_length(cl), tc->list_max_length(cl));
  EXPECT_LE(tc->size(), tc->max_size() + SizeMap::ClassSize(cl));
  EXPECT_EQ(tc->size(), tc->list_length(cl) * SizeMap::ClassSize(cl));
  // Large objects blow the per-thread budget quickly: the cache must scavenge.
  const int big = kNumClasses - 1;
  std::vector<void*> bigs;
  for (int i = 0; i < 64; ++i) bigs.push_back(tc->Allocate(big));
  for (void* p : bigs) tc->Deallocate(p, big);
  EXPECT_LE(tc->size(), tc->max_size() + SizeMap::ClassSize(big) * SizeMap::BatchSize(big));
  EXPECT_GT(tc->scavenges_ + tc->overflows_, 0u);
  registry.Destroy(tc);
  EXPECT_EQ(registry.Stats().caches, 0u);
  for (int c = 1; c < kNumClasses; ++c) transfer_[c].Drain();
  for (int c = 1; c < kNumClasses; ++c) EXPECT_EQ(central_[c].Stats().live_objects, 0u) << c;
  EXPECT_EQ(heap_->Stats().in_use_bytes, 0u);
}

TEST_F(MiddleEndTest, RegistryMovesBudgetToBusyThreads) {
  ThreadCacheRegistry registry;
  const size_t budget = 2 * ThreadCacheRegistry::kMinPerThread + 4 * ThreadCacheRegistry::kStealAmount;
  registry.Init(transfer_, GlobalArena(), budget);
  ThreadCache* idle = registry.Create();
  ThreadCache* busy = registry.Create();
  for (int i = 0; i < 4; ++i) registry.IncreaseCacheLimit(idle);
  EXPECT_EQ(registry.Stats().unclaimed, 0u);
  size_t idle_before = idle->max_size();
  registry.IncreaseCacheLimit(busy);
  EXPECT_EQ(idle->max_size(), idle_before - ThreadCacheRegistry::kStealAmount) << "stolen from idle";
  EXPECT_EQ(busy->max_size(), ThreadCacheRegistry::kMinPerThread + ThreadCacheRegistry::kStealAmount);
  EXPECT_EQ(idle->max_size() + busy->max_size(), budget) << "budget conserved";
  registry.Destroy(idle);
  registry.Destroy(busy);
  EXPECT_EQ(registry.Stats().unclaimed, budget);
}

}  // namespace
}  // namespace jsmalloc
