#include "runtime/static_vars.h"

#include <pthread.h>

#include <new>

#include "hugepage/huge_page_aware_allocator.h"
#include "hugepage/memory_limiter.h"
#include "hugepage/page_heap.h"
#include "os/linux/clock.h"
#include "runtime/background.h"
#include "os/linux/os_memory.h"
#include "runtime/allocator.h"
#include "runtime/sampler.h"

namespace jsmalloc {

constinit PageMap g_pagemap;
constinit uintptr_t g_percpu_base = 0;
constinit std::atomic<bool> Static::inited_{false};
constinit std::atomic<bool> Static::key_ready_{false};

namespace {

struct State {
  Options options;
  SystemPageSource source;
  PageAllocator* raw_backend = nullptr;  // page heap or hugepage-aware
  HugePageAwareAllocator* hpaa = nullptr;
  MemoryLimiter* limiter = nullptr;
  CentralFreeList central[kMaxClasses];
  TransferCache transfer[kMaxClasses];
  ThreadCacheRegistry registry;
  const char* per_cpu_off_reason = "";
#if JSMALLOC_HAVE_RSEQ_SLAB
  RseqCpuEnv cpu_env;
  PerCpuSlab slab;
  CpuCache cpu_cache;
#endif
};

alignas(64) constinit char state_storage[sizeof(State)] = {};
alignas(64) constinit char heap_storage[sizeof(PageHeap) > sizeof(HugePageAwareAllocator)
                                             ? sizeof(PageHeap)
                                             : sizeof(HugePageAwareAllocator)] = {};
alignas(64) constinit char limiter_storage[sizeof(MemoryLimiter)] = {};

uint64_t Clock() { return os::MonotonicNanosCoarse(); }
constinit SpinLock init_lock;
constinit std::atomic<int> hooks_state{0};  // 0 none, 1 in progress, 2 done
pthread_key_t thread_key;

State& S() { return *reinterpret_cast<State*>(state_storage); }

void DestroyThreadCache(void* arg) {
  ThreadCache* tc = static_cast<ThreadCache*>(arg);
  // Anything this thread allocates from now on (later TLS destructors) goes
  // straight to the middle-end.
  t_state.cache = nullptr;
  t_state.dead = true;
  S().registry.Destroy(tc);
}

}  // namespace

PageAllocator* Static::backend() { return S().limiter; }
HugePageAwareAllocator* Static::hugepage_allocator() { return S().hpaa; }
MemoryLimiter* Static::memory_limiter() { return S().limiter; }
SystemPageSource* Static::system_page_source() { return &S().source; }
bool Static::legacy_heap_range(uintptr_t* lo, uintptr_t* hi) {
  if (S().hpaa != nullptr) return false;
  static_cast<PageHeap*>(S().raw_backend)->AddressRange(lo, hi);
  return true;
}
CentralFreeList& Static::central(int cl) { return S().central[cl]; }
TransferCache* Static::transfer() { return S().transfer; }
ThreadCacheRegistry& Static::registry() { return S().registry; }
const Options& Static::options() { return S().options; }
MetadataArena* Static::arena() { return GlobalArena(); }
const char* Static::per_cpu_off_reason() { return S().per_cpu_off_reason; }
#if JSMALLOC_HAVE_RSEQ_SLAB
CpuCache& Static::cpu_cache() { return S().cpu_cache; }
#endif

namespace {

// Chooses the front-end: per-CPU caches wherever rseq works, unless
// JSMALLOC_PER_CPU=0. Called under the init lock.
void InitFrontEnd(State* st) {
  if (st->options.per_cpu == 0) {
    st->per_cpu_off_reason = "disabled by JSMALLOC_PER_CPU=0";
    return;
  }
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (os::RseqInit() == os::RseqMode::kUnavailable) {
    st->per_cpu_off_reason = os::RseqUnavailableReason();
  } else {
    int cpus = os::PossibleCpuCount();
    size_t bytes = PerCpuSlab::kRegionBytes * static_cast<size_t>(cpus);
    void* mem = os::MapAligned(bytes, PerCpuSlab::kRegionBytes, nullptr);
    if (mem == nullptr) {
      st->per_cpu_off_reason = "could not map the per-CPU slab";
    } else {
      uint16_t caps[kMaxClasses];
      PerCpuSlab::ComputeMaxCapacities(caps);
      st->slab.Init(mem, cpus, caps);
      st->cpu_cache.Init(&st->cpu_env, &st->slab, st->transfer, GlobalArena(),
                         st->options.max_per_cpu_cache_bytes);
      __atomic_store_n(&g_percpu_base, st->slab.base(), __ATOMIC_RELEASE);
      return;
    }
  }
#else
  st->per_cpu_off_reason = "per-CPU caches exist for x86-64 only";
#endif
  if (st->options.per_cpu == 1) {
    static const char kMsg[] = "jsmalloc: JSMALLOC_PER_CPU=1 but per-CPU caches are unavailable; using per-thread caches\n";
    os::WriteStderr(kMsg, sizeof(kMsg) - 1);
  }
}

}  // namespace

void Static::Init() {
  {
    SpinLockHolder h(&init_lock);
    if (inited_.load(std::memory_order_relaxed)) return;
    State* st = new (state_storage) State();
    ParseOptions(&st->options);
    MetadataArena* arena = GlobalArena();
    g_pagemap.Init(arena);
    st->source.Configure(!st->options.legacy_page_heap, st->options.release_with_madv_free);
    if (st->options.legacy_page_heap) {
      PageHeapOptions heap_options;
      heap_options.keep_free_min_bytes = st->options.page_heap_keep_free_bytes;
      st->raw_backend = new (heap_storage) PageHeap(&g_pagemap, &st->source, arena, heap_options);
    } else {
      HugePageAwareOptions hp;
      hp.clock = &Clock;
      hp.collapse = st->options.collapse;
      st->hpaa = new (heap_storage) HugePageAwareAllocator(&g_pagemap, &st->source, arena, hp);
      st->raw_backend = st->hpaa;
    }
    st->limiter = new (limiter_storage) MemoryLimiter(st->raw_backend);
    st->limiter->SetFlushCaches(&FlushCaches);
    if (st->options.memory_limit != 0) {
      st->limiter->SetLimit(st->options.memory_limit, st->options.memory_limit_hard);
    }
    for (int cl = 1; cl < kNumClasses; ++cl) {
      size_t size = SizeMap::ClassSize(cl);
      st->central[cl].Init(cl, size, SizeMap::ClassPages(cl), st->limiter, &g_pagemap);
      int cap = TransferCache::DefaultCapacity(size, SizeMap::BatchSize(cl));
      void** slots = static_cast<void**>(arena->Alloc(sizeof(void*) * static_cast<size_t>(cap), 64));
      if (slots == nullptr) cap = 0;
      st->transfer[cl].Init(&st->central[cl], slots, cap);
    }
    st->registry.Init(st->transfer, arena, st->options.max_total_thread_cache_bytes);
    InitFrontEnd(st);
    InitSampling(st->options);
    inited_.store(true, std::memory_order_release);
  }
  RegisterThreadHooks();
}

// Outside the init lock: these glibc calls may allocate, and their
// allocations must find the allocator ready (they take the uncached path
// until key_ready_ is set).
void Static::RegisterThreadHooks() {
  int expected = 0;
  if (!hooks_state.compare_exchange_strong(expected, 1)) return;
  pthread_atfork(&Static::PrepareFork, &Static::ParentAfterFork, &Static::ChildAfterFork);
  if (pthread_key_create(&thread_key, &DestroyThreadCache) == 0) {
    key_ready_.store(true, std::memory_order_release);
  }
  hooks_state.store(2);
  if (S().options.background) StartBackgroundThread();
  InstallHeapProfileSignal();
}

// Lock order everywhere: sampler -> registry -> per-CPU cache locks -> transfer caches
// -> central lists -> back-end -> metadata arena. No path takes them in another order.
void Static::PrepareFork() {
  if (!inited()) return;
  State& st = S();
  SamplerLockForFork();
  st.registry.LockForFork();
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (front_end() == FrontEnd::kPerCpu) st.cpu_cache.LockForFork();
#endif
  for (int cl = 1; cl < kNumClasses; ++cl) st.transfer[cl].LockForFork();
  for (int cl = 1; cl < kNumClasses; ++cl) st.central[cl].LockForFork();
  st.limiter->LockForFork();
  GlobalArena()->lock()->Lock();
}

void Static::ParentAfterFork() {
  if (!inited()) return;
  State& st = S();
  GlobalArena()->lock()->Unlock();
  st.limiter->UnlockAfterFork(false);
  for (int cl = 1; cl < kNumClasses; ++cl) st.central[cl].UnlockAfterFork(false);
  for (int cl = 1; cl < kNumClasses; ++cl) st.transfer[cl].UnlockAfterFork(false);
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (front_end() == FrontEnd::kPerCpu) st.cpu_cache.UnlockAfterFork(false);
#endif
  st.registry.UnlockAfterFork(false);
  SamplerUnlockAfterFork(false);
}

void Static::ChildAfterFork() {
  if (!inited()) return;
  State& st = S();
  GlobalArena()->lock()->ResetAfterFork();
  st.limiter->UnlockAfterFork(true);
  BackgroundAfterForkChild();
  for (int cl = 1; cl < kNumClasses; ++cl) st.central[cl].UnlockAfterFork(true);
  for (int cl = 1; cl < kNumClasses; ++cl) st.transfer[cl].UnlockAfterFork(true);
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (front_end() == FrontEnd::kPerCpu) st.cpu_cache.UnlockAfterFork(true);
#endif
  st.registry.UnlockAfterFork(true);
  SamplerUnlockAfterFork(true);
}

// jsmalloc_mark_thread_idle: gives the calling thread's cache back (its
// objects to the transfer caches, its budget share to the registry); the next
// allocation makes a new one.
void ReleaseThreadCache() {
  ThreadCache* tc = t_state.cache;
  if (tc == nullptr || t_state.in_setup) return;
  t_state.cache = nullptr;
  if (Static::thread_key_ready()) pthread_setspecific(thread_key, nullptr);
  S().registry.Destroy(tc);
}

// Used by the allocator paths to attach a cache to the calling thread.
ThreadCache* CreateThreadCache() {
  if (t_state.dead || t_state.in_setup || !Static::thread_key_ready()) return nullptr;
  t_state.in_setup = true;
  ThreadCache* tc = S().registry.Create();
  if (tc != nullptr) {
    t_state.cache = tc;
    // May allocate (keys beyond the first 32); that allocation sees the cache.
    pthread_setspecific(thread_key, tc);
  }
  t_state.in_setup = false;
  return tc;
}

}  // namespace jsmalloc
