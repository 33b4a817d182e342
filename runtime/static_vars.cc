#include "runtime/static_vars.h"

#include <pthread.h>

#include <new>

#include "backend/bound_page_source.h"
#include "hugepage/huge_page_aware_allocator.h"
#include "backend/memory_limiter.h"
#include "backend/page_heap.h"
#include "backend/partitioned_backend.h"
#include "os/os.h"
#include "runtime/background.h"
#include "runtime/fork_locks.h"
#include "base/freelist_link.h"
#include "runtime/heap_check.h"
#include "runtime/allocator.h"
#include "runtime/guarded_pool.h"
#include "runtime/report_thread.h"
#include "runtime/sampler.h"
#include "runtime/stack_trace.h"
#include "runtime/stats.h"

namespace jsmalloc {

constinit PageMap g_pagemap;
constinit uintptr_t g_percpu_base = 0;
constinit uintptr_t g_percpu_free_base = 0;
constinit const uint8_t* g_numa_cpu_partition = nullptr;
constinit int g_numa_cpus = 0;
constinit std::atomic<bool> Static::inited_{false};
constinit std::atomic<bool> Static::key_ready_{false};

namespace {

// One NUMA partition: a back-end and the middle-end over it. Without
// NUMA-aware mode (or on one node) there is only partition 0.
struct Partition {
  CentralFreeList central[kMaxClasses];
  TransferCache transfer[kMaxClasses];
  BoundPageSource source;             // places fresh memory on the partition's nodes
  PageAllocator* raw = nullptr;       // page heap or hugepage-aware
  HugePageAwareAllocator* hpaa = nullptr;
  PartitionView view;                 // what the central lists allocate from
  std::atomic<size_t> remote_frees{0};  // objects freed home from another node's CPU
  alignas(64) char backend_storage[sizeof(PageHeap) > sizeof(HugePageAwareAllocator)
                                        ? sizeof(PageHeap)
                                        : sizeof(HugePageAwareAllocator)];
};

struct State {
  Options options;
  SystemPageSource source;
  Partition first;  // partition 0 lives here; the others come from the arena
  Partition* parts[kMaxNumaPartitions] = {};
  int num_parts = 1;
  NumaPlan plan;
  os::NumaTopology topology;
  const char* topology_source = "";  // "" when not read (NUMA-aware mode off)
  PartitionedBackend partitioned;
  PageAllocator* raw_backend = nullptr;  // partition 0's, or the partitioned one
  MemoryLimiter* limiter = nullptr;
  ThreadCacheRegistry registry;
  const char* per_cpu_off_reason = "";
#if JSMALLOC_HAVE_RSEQ_SLAB
  RseqCpuEnv cpu_env;
  PerCpuSlab slab;
  CpuCache cpu_cache;
#endif
};

alignas(64) constinit char state_storage[sizeof(State)] = {};
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
  t_state.free_cache = nullptr;
  t_state.dead = true;
  S().registry.Destroy(tc);
}

CentralFreeList* HomeCentral(int partition, int cl) { return &S().parts[partition]->central[cl]; }

}  // namespace

PageAllocator* Static::backend() { return S().limiter; }
HugePageAwareAllocator* Static::hugepage_allocator() { return S().parts[0]->hpaa; }
HugePageAwareAllocator* Static::hugepage_allocator(int p) { return S().parts[p]->hpaa; }
PageAllocator* Static::partition_backend(int p) { return S().parts[p]->raw; }
const BoundPageSource& Static::partition_source(int p) { return S().parts[p]->source; }
size_t Static::partition_remote_frees(int p) {
  return S().parts[p]->remote_frees.load(std::memory_order_relaxed);
}
void Static::CountRemoteFree(int home) {
  S().parts[home]->remote_frees.fetch_add(1, std::memory_order_relaxed);
}
int Static::num_partitions() { return S().num_parts; }
const NumaPlan& Static::numa_plan() { return S().plan; }
const os::NumaTopology* Static::numa_topology() {
  return S().topology_source[0] != '\0' ? &S().topology : nullptr;
}
const char* Static::numa_topology_source() { return S().topology_source; }
MemoryLimiter* Static::memory_limiter() { return S().limiter; }
SystemPageSource* Static::system_page_source() { return &S().source; }
bool Static::legacy_heap_range(int p, uintptr_t* lo, uintptr_t* hi) {
  if (S().parts[p]->hpaa != nullptr) return false;
  static_cast<PageHeap*>(S().parts[p]->raw)->AddressRange(lo, hi);
  return true;
}
CentralFreeList& Static::central(int p, int cl) { return S().parts[p]->central[cl]; }
TransferCache* Static::transfer(int p) { return S().parts[p]->transfer; }
ThreadCacheRegistry& Static::registry() { return S().registry; }
const Options& Static::options() { return S().options; }
MetadataArena* Static::arena() { return GlobalArena(); }
const char* Static::per_cpu_off_reason() { return S().per_cpu_off_reason; }
#if JSMALLOC_HAVE_RSEQ_SLAB
CpuCache& Static::cpu_cache() { return S().cpu_cache; }
#endif

int Static::CurrentPartition() {
  State& st = S();
  if (st.num_parts == 1) return 0;
  // rseq's CPU id is one TLS load, but only once rseq is set up (per-CPU mode).
  int cpu = -1;
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (front_end() == FrontEnd::kPerCpu) cpu = os::RseqCurrentCpu();
#endif
  if (cpu < 0) cpu = os::CurrentCpuSlow();
  return st.plan.PartitionOfCpu(cpu);
}

namespace {

int CurrentPartitionFn() { return Static::CurrentPartition(); }

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
    void* mem = PerCpuSlab::MapMemory(cpus);
    if (mem == nullptr) {
      st->per_cpu_off_reason = "could not map the per-CPU slab";
    } else {
      uint16_t caps[kMaxClasses];
      PerCpuSlab::ComputeMaxCapacities(caps);
      st->slab.Init(mem, cpus, caps);
      st->cpu_cache.Init(&st->cpu_env, &st->slab, st->parts[0]->transfer, GlobalArena(),
                         st->options.max_per_cpu_cache_bytes);
      uintptr_t free_base = st->slab.base();
      // Check mode validates every free in FreeSlow.
      if (g_check_mode) free_base = 0;
      if (st->num_parts > 1) {
        TransferCache* transfers[kMaxNumaPartitions];
        for (int p = 0; p < st->num_parts; ++p) transfers[p] = st->parts[p]->transfer;
        st->cpu_cache.SetPartitions(transfers, st->plan.cpu_partition, st->num_parts);
        // Frees must find the object's home first: through FreeSlow.
        free_base = 0;
      }
      __atomic_store_n(&g_percpu_free_base, free_base, __ATOMIC_RELEASE);
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

// Reads the topology (or the injected one) and plans the partitions. Only in
// NUMA-aware mode: otherwise nothing is read and there is one partition.
void InitNuma(State* st) {
  if (!st->options.numa_aware) {
    PlanNumaPartitions(st->topology, false, NumaBind::kNone, &st->plan);
    return;
  }
  bool injected = false;
  if (st->options.numa_topology[0] != '\0') {
    // '/' may stand for ';', which shells and CTest treat specially.
    for (char* c = st->options.numa_topology; *c != '\0'; ++c) {
      if (*c == '/') *c = ';';
    }
    injected = os::ParseNumaTopologySpec(st->options.numa_topology, &st->topology);
    if (!injected) {
      WarnBadOption("JSMALLOC_NUMA_TOPOLOGY", st->options.numa_topology,
                    "CPU lists per node separated by ';', such as 0-3;4-7", "(the machine's)");
    }
  }
  if (injected) {
    st->topology_source = "injected (JSMALLOC_NUMA_TOPOLOGY)";
  } else {
    os::ReadNumaTopology("/sys/devices/system/node", &st->topology);
    os::ReadProcessNumaState(&st->topology);
    st->topology_source = "/sys/devices/system/node";
  }
  PlanNumaPartitions(st->topology, true, static_cast<NumaBind>(st->options.numa_bind), &st->plan);
  // The per-CPU caches index the plan by CPU: a machine with more CPUs than
  // it describes keeps one partition rather than read beyond it.
  if (os::PossibleCpuCount() > os::kMaxTopologyCpus && st->plan.partitions > 1) {
    st->plan.partitions = 1;
    st->plan.placement = "more CPUs than the topology table holds: one partition";
  }
  g_probe_default_numa_node = st->plan.partition_node[0];
}

// Whether subreleased filler hugepages are advised MADV_NOHUGEPAGE
// (HugePageFiller): needed when khugepaged would collapse them and fault
// their released pages back in, i.e. THP is not off and max_ptes_none > 0
// (unreadable counts as the kernel default, 511).
bool GuardKhugepaged(const Options& o) {
  if (o.khugepaged_guard >= 0) return o.khugepaged_guard == 1;
  const os::ThpSettings& t = os::GetThpSettings();
  return t.enabled != os::ThpMode::kNever && t.khugepaged_max_ptes_none != 0;
}

// Builds partition p's back-end and middle-end.
bool InitPartition(State* st, int p, MetadataArena* arena) {
  Partition* part = p == 0 ? &st->first : static_cast<Partition*>(arena->Alloc(sizeof(Partition), 64));
  if (part == nullptr) return false;
  if (p != 0) new (part) Partition();
  st->parts[p] = part;
  part->source.Init(&st->source, st->plan.place_mode[p], st->plan.place_nodes[p]);
  if (st->options.legacy_page_heap) {
    PageHeapOptions heap_options;
    heap_options.keep_free_min_bytes = st->options.page_heap_keep_free_bytes;
    heap_options.partition = static_cast<uint8_t>(p);
    part->raw = new (part->backend_storage) PageHeap(&g_pagemap, &part->source, arena, heap_options);
  } else {
    HugePageAwareOptions hp;
    hp.clock = &Clock;
    hp.collapse = st->options.collapse;
    hp.guard_khugepaged = GuardKhugepaged(st->options);
    const os::ThpMode thp = os::GetThpSettings().enabled;
    hp.sparse_large = !st->options.large_huge;
    hp.release_growing_large = st->options.release_growing;
    hp.promote_dense = thp != os::ThpMode::kNever;  // a user who turned THP off gets none
    hp.sparse_nohugepage = thp == os::ThpMode::kAlways;
    hp.cache_window_epochs = static_cast<int>(st->options.release_delay);
    hp.partition = static_cast<uint8_t>(p);
    part->hpaa = new (part->backend_storage)
        HugePageAwareAllocator(&g_pagemap, &part->source, arena, hp);
    part->raw = part->hpaa;
  }
  return true;
}

void InitMiddleEnd(State* st, int p, MetadataArena* arena) {
  Partition* part = st->parts[p];
  PageAllocator* pages = st->limiter;
  if (st->num_parts > 1) {
    part->view.Init(st->limiter, part->raw, st->plan.partition_node[p]);
    pages = &part->view;
  }
  for (int cl = 1; cl < kNumClasses; ++cl) {
    size_t size = SizeMap::ClassSize(cl);
    part->central[cl].Init(cl, size, SizeMap::ClassPages(cl), pages, &g_pagemap);
    if (st->num_parts > 1) part->central[cl].SetPartition(p, st->plan.partition_node[p], &HomeCentral);
    int cap = TransferCache::DefaultCapacity(size, SizeMap::BatchSize(cl));
    void** slots = static_cast<void**>(arena->Alloc(sizeof(void*) * static_cast<size_t>(cap), 64));
    if (slots == nullptr) cap = 0;
    // Check mode keeps a mark of its own in the objects' second word.
    part->transfer[cl].Init(&part->central[cl], slots, cap, !st->options.check);
  }
}

}  // namespace

void Static::Init() {
  {
    SpinLockHolder h(&init_lock);
    if (inited_.load(std::memory_order_relaxed)) return;
    // Default-initialised, not value-initialised: the storage is static (zero)
    // already, and zeroing the whole State again would fault in every page of
    // it (~470 KiB) in every process, however small.
    State* st = new (state_storage) State;
    ParseOptions(&st->options);
    InitHeapCheck(st->options.check);
    InitFreelistLinks(st->options.hardened);
    MetadataArena* arena = GlobalArena();
    g_pagemap.Init(arena);
    st->source.Configure(!st->options.legacy_page_heap, st->options.release_with_madv_free);
    InitNuma(st);
    st->num_parts = st->plan.partitions;
    for (int p = 0; p < st->num_parts; ++p) {
      if (!InitPartition(st, p, arena)) {
        // No metadata for another partition: the ones built serve everything.
        st->num_parts = p;
        st->plan.partitions = p;
        for (int c = 0; c < st->plan.num_cpus; ++c) {
          if (st->plan.cpu_partition[c] >= p) st->plan.cpu_partition[c] = 0;
        }
        break;
      }
    }
    if (st->num_parts > 1) {
      PageAllocator* raws[kMaxNumaPartitions];
      for (int p = 0; p < st->num_parts; ++p) raws[p] = st->parts[p]->raw;
      st->partitioned.Init(raws, st->plan.partition_node, st->num_parts, &CurrentPartitionFn);
      st->raw_backend = &st->partitioned;
    } else {
      st->raw_backend = st->parts[0]->raw;
    }
    st->limiter = new (limiter_storage) MemoryLimiter(st->raw_backend);
    st->limiter->SetFlushCaches(&FlushCaches);
    if (st->options.memory_limit != 0) {
      st->limiter->SetLimit(st->options.memory_limit, st->options.memory_limit_hard);
    }
    for (int p = 0; p < st->num_parts; ++p) InitMiddleEnd(st, p, arena);
    st->registry.Init(st->parts[0]->transfer, arena, st->options.max_total_thread_cache_bytes);
    if (st->num_parts > 1) {
      // The whole table: CPUs the topology did not list read partition 0,
      // as they do for the per-CPU cache.
      g_numa_cpus = os::kMaxTopologyCpus;
      g_numa_cpu_partition = st->plan.cpu_partition;
    }
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
  if (S().options.background > 0) StartBackgroundThread();
  else ArmBackgroundAutoStart();
  StartReportThreadIfConfigured();
}

void Static::LockInitForFork() { init_lock.Lock(); }
void Static::UnlockInitAfterFork(bool child) {
  if (child) init_lock.ResetAfterFork();
  else init_lock.Unlock();
}

// Registered only once the allocator is built, so every lock exists. The
// table and its order: runtime/fork_locks.cc.
void Static::PrepareFork() {
  if (!inited()) return;
  LockAllForFork();
}

void Static::ParentAfterFork() {
  if (!inited()) return;
  UnlockAllAfterFork(false);
}

void Static::ChildAfterFork() {
  if (!inited()) return;
  UnlockAllAfterFork(true);
  // The parent's helper threads do not exist here.
  BackgroundAfterForkChild();
  // Last: starting a thread may allocate, which needs every lock usable.
  ReportThreadAfterForkChild();
}

// jsmalloc_mark_thread_idle: gives the calling thread's cache back (its
// objects to the transfer caches, its budget share to the registry); the next
// allocation makes a new one.
void ReleaseThreadCache() {
  ThreadCache* tc = t_state.cache;
  if (tc == nullptr || t_state.in_setup) return;
  t_state.cache = nullptr;
  t_state.free_cache = nullptr;
  if (Static::thread_key_ready()) pthread_setspecific(thread_key, nullptr);
  S().registry.Destroy(tc);
}

// Used by the allocator paths to attach a cache to the calling thread.
ThreadCache* CreateThreadCache() {
  if (t_state.dead || t_state.in_setup || !Static::thread_key_ready()) return nullptr;
  t_state.in_setup = true;
  int p = Static::CurrentPartition();
  ThreadCache* tc = S().registry.Create(S().parts[p]->transfer, p);
  if (tc != nullptr) {
    t_state.cache = tc;
    // With partitions every free checks the object's home first (FreeSlow).
    t_state.free_cache = S().num_parts > 1 || g_check_mode ? nullptr : tc;
    // May allocate (keys beyond the first 32); that allocation sees the cache.
    pthread_setspecific(thread_key, tc);
  }
  t_state.in_setup = false;
  return tc;
}

}  // namespace jsmalloc
