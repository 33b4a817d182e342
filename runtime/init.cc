// Static::Init: builds the allocator on first use (which may be before main,
// from any thread): options, the pagemap, NUMA partitions, back-ends, the
// middle-end over them and the front-end; then registers the thread and fork
// hooks.
#include <pthread.h>

#include <new>

#include "base/lock_table.h"
#include "base/freelist_link.h"
#include "os/os.h"
#include "runtime/allocator.h"
#include "runtime/background.h"
#include "runtime/heap_check.h"
#include "runtime/report_thread.h"
#include "runtime/sampler.h"
#include "runtime/static_state.h"
#include "runtime/thread_lifecycle.h"

namespace jsmalloc {
namespace {

alignas(64) constinit char limiter_storage[sizeof(MemoryLimiter)] = {};
constinit std::atomic<int> hooks_state{0};  // 0 none, 1 in progress, 2 done

uint64_t Clock() { return os::MonotonicNanosCoarse(); }

CentralFreeList* HomeCentral(int partition, int cl) { return &S().parts[partition]->central[cl]; }

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
    PageHeap* heap = new (part->backend_storage) PageHeap(&g_pagemap, &part->source, arena, heap_options);
    if (PaddedSpinLock* l = LockTable::Allocate(1)) heap->UseLock(&l->lock);
    part->raw = heap;
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
    if (PaddedSpinLock* l = LockTable::Allocate(1)) part->hpaa->UseLock(&l->lock);
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
  // Their locks live in the LockTable (fork releases them without a
  // copy-on-write fault); if it has no memory, each keeps its own.
  PaddedSpinLock* locks = LockTable::Allocate(2 * kNumClasses);
  for (int cl = 1; cl < kNumClasses; ++cl) {
    size_t size = SizeMap::ClassSize(cl);
    if (locks != nullptr) {
      part->central[cl].UseLock(&locks[2 * cl].lock);
      part->transfer[cl].UseLock(&locks[2 * cl + 1].lock);
    }
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
    SpinLockHolder h(&g_init_lock);
    if (inited_.load(std::memory_order_relaxed)) return;
    // Default-initialised, not value-initialised: the storage is static (zero)
    // already, and zeroing the whole State again would fault in every page of
    // it (~470 KiB) in every process, however small.
    State* st = new (g_state_storage) State;
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
    if (PaddedSpinLock* l = LockTable::Allocate(1)) st->registry.UseLock(&l->lock);
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
  if (CreateThreadKey()) key_ready_.store(true, std::memory_order_release);
  hooks_state.store(2);
  if (S().options.background > 0) StartBackgroundThread();
  else ArmBackgroundAutoStart();
  StartReportThreadIfConfigured();
}

}  // namespace jsmalloc
