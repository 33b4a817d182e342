// Many threads through thread caches, transfer caches, central lists and the
// page heap at once, with object contents checked. Run under TSan too.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
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

struct Stack {
  std::unique_ptr<PageMap> pagemap = testing::NewPageMap();
  testing::FakePageSource source;
  std::unique_ptr<PageHeap> heap;
  CentralFreeList central[kMaxClasses];
  TransferCache transfer[kMaxClasses];
  std::vector<void*> slots[kMaxClasses];
  ThreadCacheRegistry registry;
  Stack() {
    heap = std::make_unique<PageHeap>(pagemap.get(), &source, GlobalArena());
    for (int cl = 1; cl < kNumClasses; ++cl) {
      central[cl].Init(cl, SizeMap::ClassSize(cl), SizeMap::ClassPages(cl), heap.get(), pagemap.get());
      int cap = TransferCache::DefaultCapacity(SizeMap::ClassSize(cl), SizeMap::BatchSize(cl));
      slots[cl].resize(static_cast<size_t>(cap));
      transfer[cl].Init(&central[cl], slots[cl].data(), cap);
    }
    registry.Init(transfer, GlobalArena(), 8 << 20);
  }
};

uint64_t Tag(const void* p, size_t size) { return reinterpret_cast<uintptr_t>(p) * 31 + size; }

TEST(ConcurrencyTest, ThreadsShareMiddleEndAndPageHeap) {
  Stack s;
  constexpr int kThreads = 4;
  // Objects allocated by one thread are freed by the next (cross-thread).
  std::vector<std::vector<std::pair<void*, int>>> handoff(kThreads);
  std::atomic<int> errors{0};
  auto worker = [&](int id, int round) {
    ThreadCache* tc = s.registry.Create();
    std::mt19937 rng(static_cast<unsigned>(id * 1000 + round));
    std::vector<std::pair<void*, int>> mine;
    for (int i = 0; i < 20000; ++i) {
      if (mine.empty() || rng() % 3 != 0) {
        int cl = 1 + static_cast<int>(rng() % static_cast<unsigned>(kNumClasses - 1));
        if (rng() % 4 != 0) cl = 1 + static_cast<int>(rng() % 30);  // mostly small
        void* p = tc->Allocate(cl);
        if (p == nullptr) { errors++; continue; }
        *static_cast<uint64_t*>(p) = Tag(p, SizeMap::ClassSize(cl));
        if (SizeMap::ClassSize(cl) > 8) static_cast<char*>(p)[SizeMap::ClassSize(cl) - 1] = static_cast<char>(cl);
        mine.emplace_back(p, cl);
      } else {
        size_t k = rng() % mine.size();
        auto [p, cl] = mine[k];
        mine[k] = mine.back();
        mine.pop_back();
        if (*static_cast<uint64_t*>(p) != Tag(p, SizeMap::ClassSize(cl)) ||
            (SizeMap::ClassSize(cl) > 8 &&
             static_cast<char*>(p)[SizeMap::ClassSize(cl) - 1] != static_cast<char>(cl))) errors++;
        tc->Deallocate(p, cl);
      }
    }
    handoff[static_cast<size_t>(id)] = std::move(mine);
    s.registry.Destroy(tc);
  };
  for (int round = 0; round < 3; ++round) {
    std::vector<std::thread> ts;
    for (int i = 0; i < kThreads; ++i) ts.emplace_back(worker, i, round);
    for (auto& t : ts) t.join();
    // Free the survivors from other threads, through fresh caches.
    std::vector<std::thread> fs;
    for (int i = 0; i < kThreads; ++i) {
      fs.emplace_back([&, i] {
        ThreadCache* tc = s.registry.Create();
        for (auto [p, cl] : handoff[static_cast<size_t>((i + 1) % kThreads)]) {
          if (*static_cast<uint64_t*>(p) != Tag(p, SizeMap::ClassSize(cl))) errors++;
          tc->Deallocate(p, cl);
        }
        s.registry.Destroy(tc);
      });
    }
    for (auto& t : fs) t.join();
  }
  EXPECT_EQ(errors.load(), 0);
  for (int cl = 1; cl < kNumClasses; ++cl) s.transfer[cl].Drain();
  for (int cl = 1; cl < kNumClasses; ++cl) {
    EXPECT_EQ(s.central[cl].Stats().live_objects, 0u) << cl;
    EXPECT_EQ(s.central[cl].Stats().spans, 0u) << cl;
  }
  EXPECT_EQ(s.heap->Stats().in_use_bytes, 0u) << "every span went home";
  EXPECT_TRUE(s.heap->CheckInvariants());
}

TEST(ConcurrencyTest, PageHeapUnderContention) {
  auto pagemap = testing::NewPageMap();
  testing::FakePageSource source;
  PageHeap heap(pagemap.get(), &source, GlobalArena());
  std::vector<std::thread> ts;
  std::atomic<int> errors{0};
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      std::vector<Span*> mine;
      for (int i = 0; i < 5000; ++i) {
        if (mine.empty() || rng() % 2) {
          Span* s = heap.New(1 + rng() % 40);
          if (s == nullptr) { errors++; continue; }
          memset(s->start(), t, 64);
          mine.push_back(s);
        } else {
          Span* s = mine.back();
          mine.pop_back();
          if (static_cast<unsigned char*>(s->start())[63] != t) errors++;
          heap.Delete(s);
        }
        if (i % 500 == 0) heap.ReleaseAtLeast(kPageSize * 16);
      }
      for (Span* s : mine) heap.Delete(s);
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_TRUE(heap.CheckInvariants());
  EXPECT_EQ(heap.Stats().in_use_bytes, 0u);
}

}  // namespace
}  // namespace jsmalloc
