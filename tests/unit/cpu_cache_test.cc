// The per-CPU cache's policy on a fake CPU (no rseq), and the real rseq
// critical sections on this machine's CPUs.
#include "caches/cpu_cache.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "backend/page_heap.h"
#include "caches/central_free_list.h"
#include "os/os.h"
#include "tests/unit/test_support.h"

#if defined(__SANITIZE_THREAD__)
// Objects pass between threads through the rseq slab, whose ordering (same
// CPU, or a kernel-mediated migration) TSan cannot see: tell it.
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#define JSMALLOC_TSAN_ACQUIRE(p) __tsan_acquire(p)
#define JSMALLOC_TSAN_RELEASE(p) __tsan_release(p)
#else
#define JSMALLOC_TSAN_ACQUIRE(p) (void)(p)
#define JSMALLOC_TSAN_RELEASE(p) (void)(p)
#endif

namespace jsmalloc {
namespace {

using testing::FakeCpuEnv;

// The fast-path pop as the allocator does it: on the real CPU the inline
// critical section runtime/allocator.h uses (os::RseqSlabTryPop), on the
// fake one a plain pop of that CPU's region.
void* FastPop(FakeCpuEnv& env, PerCpuSlab* slab, int cl) { return env.Pop(slab, cl); }
#if JSMALLOC_HAVE_RSEQ_SLAB
void* FastPop(RseqCpuEnv&, PerCpuSlab* slab, int cl) {
  void* p;
  return os::RseqSlabTryPop(slab->base(), static_cast<size_t>(cl), &p) ? p : nullptr;
}
#endif

// A private middle-end plus a slab for `cpus` CPUs.
template <typename Env>
struct Fixture {
  std::unique_ptr<PageMap> pagemap = testing::NewPageMap();
  testing::FakePageSource source;
  std::unique_ptr<PageHeap> heap;
  CentralFreeList central[kMaxClasses];
  TransferCache transfer[kMaxClasses];
  std::vector<void*> slots[kMaxClasses];
  PerCpuSlab slab;
  void* slab_mem = nullptr;
  int cpus;
  Env env;
  CpuCacheT<Env> cache;

  Fixture(int num_cpus, size_t budget) : cpus(num_cpus) {
    heap = std::make_unique<PageHeap>(pagemap.get(), &source, GlobalArena());
    for (int cl = 1; cl < kNumClasses; ++cl) {
      central[cl].Init(cl, SizeMap::ClassSize(cl), SizeMap::ClassPages(cl), heap.get(), pagemap.get());
      int cap = TransferCache::DefaultCapacity(SizeMap::ClassSize(cl), SizeMap::BatchSize(cl));
      slots[cl].resize(static_cast<size_t>(cap));
      transfer[cl].Init(&central[cl], slots[cl].data(), cap);
    }
    slab_mem = PerCpuSlab::MapMemory(cpus);
    uint16_t caps[kMaxClasses];
    PerCpuSlab::ComputeMaxCapacities(caps);
    slab.Init(slab_mem, cpus, caps);
    cache.Init(&env, &slab, transfer, GlobalArena(), budget);
  }
  ~Fixture() { PerCpuSlab::UnmapMemory(slab_mem, cpus); }
  std::atomic<long> fast_pops{0};
  void* Alloc(int cl) {
    void* p = FastPop(env, &slab, cl);
    if (p != nullptr) {
      fast_pops.fetch_add(1, std::memory_order_relaxed);
    } else {
      p = cache.Underflow(cl);
    }
    if (p != nullptr) JSMALLOC_TSAN_ACQUIRE(p);
    return p;
  }
  void Free(void* p, int cl) {
    JSMALLOC_TSAN_RELEASE(p);
    if (!env.Push(&slab, cl, p)) cache.Overflow(p, cl);
  }
  size_t LiveInCentral() {
    size_t n = 0;
    for (int cl = 1; cl < kNumClasses; ++cl) n += central[cl].Stats().live_objects;
    return n;
  }
};

TEST(PerCpuSlabTest, LayoutFitsAndClassesDoNotOverlap) {
  uint16_t caps[kMaxClasses];
  PerCpuSlab::ComputeMaxCapacities(caps);
  size_t total = kMaxClasses;
  for (int cl = 1; cl < kNumClasses; ++cl) {
    EXPECT_GE(caps[cl], 1u);
    total += caps[cl];
  }
  EXPECT_LT(total, PerCpuSlab::kSlots);
  Fixture<FakeCpuEnv> f(2, 1 << 20);
  f.slab.InitCpu(0);
  for (int cl = 2; cl < kNumClasses; ++cl) {
    EXPECT_EQ(f.slab.LayoutBegin(cl), f.slab.LayoutEnd(cl - 1));
    EXPECT_EQ(f.slab.HeaderOf(0, cl)->begin, f.slab.HeaderOf(0, cl - 1)->max_end);
    EXPECT_EQ(f.slab.HeaderOf(0, cl)->begin, f.slab.LayoutBegin(cl));
    EXPECT_EQ(f.slab.Capacity(0, cl), 0) << "classes start with no capacity";
    EXPECT_EQ(f.slab.Capacity(1, cl), 0) << "a CPU never used has no capacity";
    EXPECT_EQ(f.slab.Length(1, cl), 0);
  }
}

// Resident pages of [p, p + bytes), by mincore.
size_t ResidentPages(const void* p, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((bytes + page - 1) / page);
  if (mincore(const_cast<void*>(p), bytes, vec.data()) != 0) return ~size_t{0};
  size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

// A host may report hundreds of possible CPUs: the slab must cost nothing
// for the CPUs a process never runs on (it wrote a header page for every
// one at start-up, 4 KiB each).
TEST(PerCpuSlabTest, CpusNeverUsedTouchNoSlabMemory) {
  const int cpus = 64;
  Fixture<FakeCpuEnv> f(cpus, 1 << 20);
  const size_t region = PerCpuSlab::kRegionBytes;
  EXPECT_EQ(ResidentPages(f.slab_mem, region * cpus), 0u) << "Init wrote a CPU's region";
  f.env.cpu = 37;
  std::vector<void*> got;
  for (int i = 0; i < 100; ++i) got.push_back(f.Alloc(3));
  for (void* p : got) f.Free(p, 3);
  for (int c = 0; c < cpus; ++c) {
    const size_t resident = ResidentPages(static_cast<char*>(f.slab_mem) + region * c, region);
    if (c == 37) {
      EXPECT_GE(resident, 1u) << "the CPU in use has its headers";
    } else {
      EXPECT_EQ(resident, 0u) << "CPU " << c << " was never used";
    }
  }
  // A pass over every CPU (resize, drain, stats) touches none of the others.
  f.cache.DrainAll();
  f.cache.ResizePass(~uint64_t{0} >> 1);
  CpuCacheClassStats stats[kMaxClasses];
  f.cache.ClassStats(stats);
  for (int c = 0; c < cpus; ++c) {
    if (c != 37) EXPECT_EQ(ResidentPages(static_cast<char*>(f.slab_mem) + region * c, region), 0u) << c;
  }
}

TEST(CpuCacheTest, MissesGrowCapacityAndObjectsStayPerCpu) {
  Fixture<FakeCpuEnv> f(4, 1 << 20);
  const int cl = 5;
  std::vector<void*> objs;
  std::set<void*> seen;
  for (int i = 0; i < 500; ++i) {
    void* p = f.Alloc(cl);
    ASSERT_NE(p, nullptr);
    ASSERT_TRUE(seen.insert(p).second) << "handed out twice";
    objs.push_back(p);
  }
  EXPECT_GT(f.slab.Capacity(0, cl), 0);
  EXPECT_EQ(f.slab.Capacity(1, cl), 0) << "CPU 1 never missed";
  for (void* p : objs) f.Free(p, cl);
  EXPECT_GT(f.slab.Length(0, cl), 0);
  EXPECT_LE(f.slab.Length(0, cl), f.slab.MaxCapacity(0, cl));
  // Another CPU cannot see CPU 0's objects: it misses and fetches its own.
  f.env.cpu = 2;
  void* q = f.Alloc(cl);
  EXPECT_EQ(f.cache.CpuStats(2).underflows, 1u);
  f.Free(q, cl);
}

// A class that keeps underflowing (an allocation burst) refills a system
// page's worth of small objects at a time, so two CPUs that do so at the
// same time from the same fresh spans get whole pages each: their objects
// never share a page (with one batch per refill they took alternate 1 KiB
// pieces, and two threads' linked lists shared every page and many cache
// lines). The first refills of a burst take one batch.
TEST(CpuCacheTest, CpusInAnAllocationBurstGetWholePagesOfSmallObjects) {
  using Cache = CpuCacheT<FakeCpuEnv>;
  Fixture<FakeCpuEnv> f(2, 4 << 20);
  const int cl = 3;
  const int batch = SizeMap::BatchSize(cl);
  ASSERT_EQ(SizeMap::ClassSize(cl), 32u);
  ASSERT_EQ(TransferCache::RefillObjects(cl), 128);
  std::map<uintptr_t, int> owner;
  std::vector<std::pair<void*, int>> live;
  int shared = 0;
  auto alloc = [&](int cpu) {
    f.env.cpu = cpu;
    void* p = f.Alloc(cl);
    ASSERT_NE(p, nullptr);
    live.emplace_back(p, cpu);
    auto [it, fresh] = owner.emplace(reinterpret_cast<uintptr_t>(p) >> 12, cpu);
    if (!fresh && it->second != cpu) ++shared;
  };
  // Each CPU on its own first: a batch per refill until the streak.
  for (int cpu = 0; cpu < 2; ++cpu) {
    for (int k = 0; k < Cache::kRefillStreak; ++k) {
      alloc(cpu);
      EXPECT_EQ(f.slab.Length(cpu, cl), batch - 1) << "refill " << k << " takes a batch";
      for (int i = 1; i < batch; ++i) alloc(cpu);
    }
    alloc(cpu);
    EXPECT_EQ(f.slab.Length(cpu, cl), 127) << "then a page's worth";
  }
  // Then both at once.
  for (int i = 0; i < 4096; ++i) {
    alloc(0);
    alloc(1);
  }
  EXPECT_EQ(shared, 0) << "pages holding both CPUs' objects";
  // An overflow ends the streak.
  f.env.cpu = 0;
  while (f.slab.Length(0, cl) < f.slab.Capacity(0, cl)) {
    f.Free(live.back().first, cl);
    live.pop_back();
  }
  f.Free(live.back().first, cl);  // overflows
  live.pop_back();
  while (f.slab.Length(0, cl) > 0) live.emplace_back(f.Alloc(cl), 0);
  live.emplace_back(f.Alloc(cl), 0);
  EXPECT_EQ(f.slab.Length(0, cl), batch - 1);
  // Larger objects keep one batch per refill.
  EXPECT_EQ(TransferCache::RefillObjects(SizeMap::ClassFor(1024)), SizeMap::BatchSize(SizeMap::ClassFor(1024)));
  for (auto [p, cpu] : live) {
    f.env.cpu = cpu;
    f.Free(p, cl);
  }
}

TEST(CpuCacheTest, BudgetIsRespectedByStealingFromOtherClasses) {
  const size_t budget = 64 * 1024;
  Fixture<FakeCpuEnv> f(1, budget);
  std::vector<std::pair<void*, int>> live;
  for (int round = 0; round < 3; ++round) {
    for (int cl = 1; cl < 40; ++cl) {
      for (int i = 0; i < 100; ++i) live.emplace_back(f.Alloc(cl), cl);
    }
    for (auto [p, cl] : live) f.Free(p, cl);
    live.clear();
    EXPECT_LE(f.cache.CpuStats(0).capacity_bytes, budget);
    EXPECT_LE(f.cache.CpuStats(0).cached_bytes, budget + 32 * 4096) << "objects beyond capacity are bounded";
  }
  f.cache.SetMaxBytesPerCpu(16 * 1024);
  for (int cl = 1; cl < 10; ++cl) f.Free(f.Alloc(cl), cl);
  EXPECT_LE(f.cache.CpuStats(0).capacity_bytes, budget);
}

// A burst of frees (a big structure torn down) shrinks the class back to
// two batches on that CPU instead of keeping up to 8K objects that pin
// partly used spans; an allocation burst grows it again.
TEST(CpuCacheTest, AFreeBurstShrinksTheClassAndAnAllocationBurstGrowsItAgain) {
  Fixture<FakeCpuEnv> f(2, 4 << 20);
  const int cl = 3;  // 32-byte objects: 8192 slots at most
  const int batch = SizeMap::BatchSize(cl);
  std::vector<void*> objs;
  for (int i = 0; i < 20000; ++i) objs.push_back(f.Alloc(cl));
  const int grown = f.slab.Capacity(0, cl);
  EXPECT_GE(grown, 4096);
  EXPECT_EQ(f.cache.CpuStats(0).shrinks, 0u);
  for (void* p : objs) f.Free(p, cl);
  EXPECT_GT(f.cache.CpuStats(0).shrinks, 0u);
  EXPECT_LE(f.slab.Capacity(0, cl), 2 * batch);
  EXPECT_LE(f.slab.Length(0, cl), f.slab.Capacity(0, cl));
  EXPECT_EQ(f.LiveInCentral(), static_cast<size_t>(f.slab.Length(0, cl)) + f.transfer[cl].objects())
      << "every object is in the CPU's cache, the transfer cache or its span";
  objs.clear();
  for (int i = 0; i < 20000; ++i) objs.push_back(f.Alloc(cl));
  EXPECT_EQ(f.slab.Capacity(0, cl), grown);
  std::set<void*> seen(objs.begin(), objs.end());
  EXPECT_EQ(seen.size(), objs.size()) << "nothing handed out twice across the shrinks";
  for (void* p : objs) f.Free(p, cl);
}

// Churn where frees and allocations alternate in runs shorter than the
// streak keeps the capacity it grew to.
TEST(CpuCacheTest, AlternatingChurnDoesNotShrink) {
  Fixture<FakeCpuEnv> f(1, 4 << 20);
  const int cl = 5;
  const int batch = SizeMap::BatchSize(cl);
  std::vector<void*> live;
  for (int i = 0; i < 4096; ++i) live.push_back(f.Alloc(cl));
  for (void* p : live) f.Free(p, cl);
  live.clear();
  const int cap = f.slab.Capacity(0, cl);
  for (int round = 0; round < 200; ++round) {
    // 4 batches more than the cache holds come and go each round.
    for (int i = 0; i < cap + 4 * batch; ++i) live.push_back(f.Alloc(cl));
    for (void* p : live) f.Free(p, cl);
    live.clear();
  }
  EXPECT_EQ(f.cache.CpuStats(0).shrinks, 0u);
  EXPECT_GE(f.slab.Capacity(0, cl), cap);
}

TEST(CpuCacheTest, DrainReturnsEverythingAndCpuKeepsWorking) {
  Fixture<FakeCpuEnv> f(2, 1 << 20);
  std::vector<std::pair<void*, int>> live;
  for (int cl = 1; cl < kNumClasses; cl += 3) {
    for (int i = 0; i < 40; ++i) live.emplace_back(f.Alloc(cl), cl);
  }
  for (auto [p, cl] : live) f.Free(p, cl);
  size_t cached = f.cache.CpuStats(0).cached_bytes;
  EXPECT_GT(cached, 0u);
  EXPECT_EQ(f.cache.DrainCpu(0), cached);
  EXPECT_EQ(f.env.fences, 2) << "one to take the objects, one before restarting the CPU";
  EXPECT_EQ(f.cache.CpuStats(0).cached_bytes, 0u);
  EXPECT_EQ(f.cache.CpuStats(0).capacity_bytes, 0u);
  EXPECT_FALSE(f.slab.IsStopped(0));
  for (int cl = 1; cl < kNumClasses; ++cl) f.transfer[cl].Drain();
  EXPECT_EQ(f.LiveInCentral(), 0u) << "nothing lost";
  void* p = f.Alloc(7);
  ASSERT_NE(p, nullptr);
  f.Free(p, 7);
}

TEST(CpuCacheTest, DrainDoesNothingWithoutAFence) {
  Fixture<FakeCpuEnv> f(1, 1 << 20);
  f.Free(f.Alloc(3), 3);
  f.env.fence_ok = false;
  EXPECT_EQ(f.cache.DrainCpu(0), 0u);
  EXPECT_GT(f.cache.CpuStats(0).cached_bytes, 0u);
  EXPECT_FALSE(f.slab.IsStopped(0));
}

// A critical section on the drained CPU that starts while it is stopped
// reads `current` (still the old top: the objects are being taken) and then
// `begin`. If an interrupt holds it between the two loads while the drain
// restarts the CPU, it sees the old top over a restored begin and pops an
// object already in the transfer cache: the same object twice (found by
// MigratingThreadsNeverLoseOrDuplicateObjects below, ~1 run in 200). The
// drain must fence again before the restart, which restarts that section.
TEST(CpuCacheTest, DrainRestartsSectionsThatReadTheOldTop) {
  Fixture<FakeCpuEnv> f(2, 1 << 20);
  const int cl = 3;
  std::vector<void*> v;
  for (int i = 0; i < 40; ++i) v.push_back(f.Alloc(cl));
  for (void* p : v) f.Free(p, cl);
  ASSERT_GT(f.slab.Length(0, cl), 0);
  PerCpuSlab::Header* h = f.slab.HeaderOf(0, cl);
  // The section, modelled load by load as the pop in os/linux/rseq.h.
  struct {
    bool running = false, restarted = false;
    uint16_t current = 0;
  } section;
  f.env.on_fence = [&](int cpu) {
    if (cpu != 0) return;
    if (section.running) section.restarted = true;  // the kernel's abort
    if (f.env.fences == 1) {  // starts just after the first fence
      section.running = true;
      section.current = __atomic_load_n(&h->current, __ATOMIC_RELAXED);
    }
  };
  ASSERT_GT(f.cache.DrainCpu(0), 0u);
  ASSERT_TRUE(section.running);
  EXPECT_TRUE(section.restarted) << "the restart of the CPU did not fence the section that read the old top";
  if (section.restarted) section.current = h->current;  // it begins again
  const uint16_t begin = h->begin;
  EXPECT_LE(section.current, begin) << "the section would pop slot " << section.current - 1
                                    << ", whose object the drain already handed on";
  EXPECT_EQ(f.slab.Length(0, cl), 0);
  for (int c = 1; c < kNumClasses; ++c) f.transfer[c].Drain();
  EXPECT_EQ(f.LiveInCentral(), 0u);
}

// The kernel refuses the first fence: nothing is taken and the CPU goes on
// with its objects. It refuses the second (after the objects were taken):
// the CPU stays stopped for good and its threads use the transfer cache.
TEST(CpuCacheTest, DrainGivesUpOrRetiresTheCpuWhenAFenceFails) {
  Fixture<FakeCpuEnv> f(1, 1 << 20);
  std::vector<void*> v;
  for (int i = 0; i < 20; ++i) v.push_back(f.Alloc(3));
  for (void* p : v) f.Free(p, 3);
  const size_t cached = f.cache.CpuStats(0).cached_bytes;
  ASSERT_GT(cached, 0u);
  f.env.fail_fence = 1;
  EXPECT_EQ(f.cache.DrainCpu(0), 0u);
  EXPECT_EQ(f.cache.CpuStats(0).cached_bytes, cached) << "objects kept when the first fence fails";
  EXPECT_EQ(f.cache.CpuStats(0).fence_failures, 1u);
  EXPECT_FALSE(f.slab.IsStopped(0));
  void* p = f.Alloc(3);
  EXPECT_NE(p, nullptr);
  f.Free(p, 3);

  f.env.fences = 0;
  f.env.fail_fence = 2;
  EXPECT_EQ(f.cache.DrainCpu(0), cached);
  EXPECT_TRUE(f.slab.IsStopped(0)) << "restarted without the second fence";
  EXPECT_TRUE(f.cache.CpuStats(0).retired);
  EXPECT_EQ(f.cache.CpuStats(0).fence_failures, 2u);
  // The CPU keeps serving through the transfer cache, and loses nothing.
  std::vector<void*> w;
  for (int i = 0; i < 100; ++i) {
    w.push_back(f.Alloc(3));
    ASSERT_NE(w.back(), nullptr);
  }
  EXPECT_EQ(f.cache.CpuStats(0).cached_bytes, 0u);
  EXPECT_EQ(std::set<void*>(w.begin(), w.end()).size(), w.size()) << "an object handed out twice";
  for (void* q : w) f.Free(q, 3);
  EXPECT_TRUE(f.slab.IsStopped(0));
  f.cache.ResizePass(uint64_t{10} << 30);
  EXPECT_TRUE(f.slab.IsStopped(0));
  for (int c = 1; c < kNumClasses; ++c) f.transfer[c].Drain();
  EXPECT_EQ(f.LiveInCentral(), 0u);
}

TEST(CpuCacheTest, ResizePassShrinksIdleClassesAndDrainsIdleCpus) {
  Fixture<FakeCpuEnv> f(2, 1 << 20);
  // CPU 0 uses classes 3 and 9; CPU 1 uses class 3.
  for (int cpu : {0, 1}) {
    f.env.cpu = cpu;
    std::vector<void*> v;
    for (int i = 0; i < 200; ++i) v.push_back(f.Alloc(3));
    for (void* p : v) f.Free(p, 3);
  }
  f.env.cpu = 0;
  {
    std::vector<void*> v;
    for (int i = 0; i < 64; ++i) v.push_back(f.Alloc(9));
    for (int i = 0; i < 32; ++i) f.Free(v[static_cast<size_t>(i)], 9);
  }
  f.cache.ResizePass(1);  // establishes the baseline
  // Only CPU 0, class 9 is active in the next interval.
  std::vector<void*> v;
  for (int i = 0; i < 100; ++i) v.push_back(f.Alloc(9));
  uint16_t cap3_before = f.slab.Capacity(0, 3);
  f.cache.ResizePass(2);
  EXPECT_LE(f.slab.Capacity(0, 3), cap3_before) << "idle class shrinks";
  EXPECT_EQ(f.cache.CpuStats(1).cached_bytes, 0u) << "idle CPU drained";
  EXPECT_EQ(f.cache.CpuStats(1).drains, 1u);
  for (void* p : v) f.Free(p, 9);
}

#if JSMALLOC_HAVE_RSEQ_SLAB
// Runs the calling thread on CPU 0 until the end of the scope.
struct PinnedToCpu0 {
  cpu_set_t old_set;
  bool ok = false;
  PinnedToCpu0() {
    if (sched_getaffinity(0, sizeof(old_set), &old_set) != 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    ok = sched_setaffinity(0, sizeof(one), &one) == 0;
  }
  ~PinnedToCpu0() {
    if (ok) sched_setaffinity(0, sizeof(old_set), &old_set);
  }
};

// The real critical sections: threads pinned to CPUs that they leave and
// rejoin, allocating and freeing through the rseq push/pop, with every object
// tagged so a lost or doubled object is caught.
// The batch critical sections on the real CPU: counts, order and limits.
TEST(RseqSlabTest, BatchPushAndPopMoveWholeRunsInOrder) {
  if (os::RseqInit() == os::RseqMode::kUnavailable) {
    GTEST_SKIP() << "rseq unavailable: " << os::RseqUnavailableReason();
  }
  PinnedToCpu0 pin;  // every critical section runs on the same CPU
  ASSERT_TRUE(pin.ok);
  ASSERT_TRUE(os::RseqEnsureThreadRegistered());
  int ncpu = os::PossibleCpuCount();
  Fixture<RseqCpuEnv> f(ncpu, 256 * 1024);
  const int cl = 5;
  f.slab.InitCpu(0);
  uint16_t cap = f.slab.MaxCapacity(0, cl) < 40 ? f.slab.MaxCapacity(0, cl) : 40;
  f.slab.SetCapacity(0, cl, cap);
  void* in[64];
  for (int i = 0; i < 64; ++i) in[i] = reinterpret_cast<void*>(uintptr_t{0x10000} + 16 * i);
  RseqCpuEnv env;
  EXPECT_EQ(env.PushBatch(&f.slab, cl, in, 25), 25u);
  EXPECT_EQ(f.slab.Length(0, cl), 25);
  EXPECT_EQ(env.PushBatch(&f.slab, cl, in + 25, 39), static_cast<size_t>(cap - 25)) << "stops at capacity";
  EXPECT_EQ(f.slab.Length(0, cl), cap);
  EXPECT_EQ(env.PushBatch(&f.slab, cl, in, 5), 0u) << "full";
  EXPECT_EQ(FastPop(env, &f.slab, cl), in[cap - 1]) << "the last pushed is on top";
  void* out[64];
  size_t k = env.PopBatch(&f.slab, cl, out, 10);
  ASSERT_EQ(k, 10u);
  for (size_t i = 0; i < k; ++i) EXPECT_EQ(out[i], in[cap - 11 + static_cast<int>(i)]) << i;
  k = env.PopBatch(&f.slab, cl, out, 64);
  EXPECT_EQ(k, static_cast<size_t>(cap - 11)) << "the rest";
  for (size_t i = 0; i < k; ++i) EXPECT_EQ(out[i], in[i]);
  EXPECT_EQ(env.PopBatch(&f.slab, cl, out, 8), 0u) << "empty";
  EXPECT_EQ(f.slab.Length(0, cl), 0);
}

// The push refuses an address that is not aligned as its class's objects are
// (a pointer into an object): the miss path then aborts (tests/misuse).
TEST(RseqSlabTest, PushRefusesAnAddressInsideAnObject) {
  if (os::RseqInit() == os::RseqMode::kUnavailable) {
    GTEST_SKIP() << "rseq unavailable: " << os::RseqUnavailableReason();
  }
  PinnedToCpu0 pin;
  ASSERT_TRUE(pin.ok);
  ASSERT_TRUE(os::RseqEnsureThreadRegistered());
  Fixture<RseqCpuEnv> f(os::PossibleCpuCount(), 256 * 1024);
  f.slab.InitCpu(0);
  RseqCpuEnv env;
  const uintptr_t base = 0x40000000;  // aligned to every class's mask
  for (int cl = 1; cl < kNumClasses; ++cl) {
    const size_t size = SizeMap::ClassSize(cl);
    f.slab.SetCapacity(0, cl, f.slab.MaxCapacity(0, cl) < 8 ? f.slab.MaxCapacity(0, cl) : 8);
    const uintptr_t obj = base + 3 * size;  // the fourth object of a span at base
    EXPECT_TRUE(env.Push(&f.slab, cl, reinterpret_cast<void*>(obj))) << size;
    EXPECT_EQ(FastPop(env, &f.slab, cl), reinterpret_cast<void*>(obj)) << size;
    if (size >= 16) {
      EXPECT_FALSE(env.Push(&f.slab, cl, reinterpret_cast<void*>(obj + 8))) << "p + 8, size " << size;
    }
    // A power-of-two size is checked to its own alignment (up to a page and
    // to 64 KiB: the masks are 16-bit).
    if ((size & (size - 1)) == 0 && size >= 32 && size <= kPageSize && size <= 65536) {
      EXPECT_FALSE(env.Push(&f.slab, cl, reinterpret_cast<void*>(obj + size / 2))) << "p + size/2, size " << size;
    }
    EXPECT_EQ(f.slab.Length(0, cl), 0) << size;
  }
}

TEST(RseqSlabTest, MigratingThreadsNeverLoseOrDuplicateObjects) {
  if (os::RseqInit() == os::RseqMode::kUnavailable) {
    GTEST_SKIP() << "rseq unavailable: " << os::RseqUnavailableReason();
  }
  int ncpu = os::PossibleCpuCount();
  Fixture<RseqCpuEnv> f(ncpu, 256 * 1024);
  std::atomic<int> errors{0};
  std::atomic<long> ops{0};
  auto worker = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(id));
    std::vector<std::pair<void*, int>> mine;
    for (int i = 0; i < 200000; ++i) {
      if (i % 997 == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(static_cast<int>(rng() % static_cast<unsigned>(ncpu)), &set);
        sched_setaffinity(0, sizeof(set), &set);
      }
      if (mine.empty() || rng() % 2 == 0) {
        int cl = 1 + static_cast<int>(rng() % 20);
        void* p = f.Alloc(cl);
        if (p == nullptr) { errors++; continue; }
        *static_cast<uintptr_t*>(p) = reinterpret_cast<uintptr_t>(p) ^ 0x5a5a;
        mine.emplace_back(p, cl);
      } else {
        size_t k = rng() % mine.size();
        auto [p, cl] = mine[k];
        mine[k] = mine.back();
        mine.pop_back();
        if (*static_cast<uintptr_t*>(p) != (reinterpret_cast<uintptr_t>(p) ^ 0x5a5a)) errors++;
        *static_cast<uintptr_t*>(p) = 0;
        f.Free(p, cl);
      }
      ops++;
    }
    for (auto [p, cl] : mine) f.Free(p, cl);
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < 6; ++i) ts.emplace_back(worker, i);  // more threads than CPUs
  // Meanwhile, drain CPUs from outside, as the resize pass does.
  std::atomic<bool> done{false};
  std::thread drainer([&] {
    while (!done) {
      for (int c = 0; c < ncpu; ++c) f.cache.DrainCpu(c);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  for (auto& t : ts) t.join();
  done = true;
  drainer.join();
  EXPECT_EQ(errors.load(), 0);
  // The critical sections must really have served most allocations.
  EXPECT_GT(f.fast_pops.load(), ops.load() / 4) << "rseq pop rarely succeeded";
  // Everything freed: after draining all CPUs and transfer caches, no object
  // may be live in any central list, and no span in use.
  f.cache.DrainAll();
  for (int cl = 1; cl < kNumClasses; ++cl) f.transfer[cl].Drain();
  EXPECT_EQ(f.LiveInCentral(), 0u);
  EXPECT_EQ(f.heap->Stats().in_use_bytes, 0u);
}
#endif

}  // namespace
}  // namespace jsmalloc
