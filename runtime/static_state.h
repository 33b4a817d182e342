// The process-wide allocator state behind Static's accessors, shared by the
// files that build it (init.cc), read it (static_vars.cc), attach threads to
// it (thread_lifecycle.cc) and fork with it (fork_locks.cc). Nothing else
// includes this header: the rest of the allocator goes through Static.
#ifndef JSMALLOC_RUNTIME_STATIC_STATE_H_
#define JSMALLOC_RUNTIME_STATIC_STATE_H_

#include <atomic>

#include "backend/bound_page_source.h"
#include "backend/memory_limiter.h"
#include "backend/page_heap.h"
#include "backend/partitioned_backend.h"
#include "hugepage/huge_page_aware_allocator.h"
#include "runtime/static_vars.h"

namespace jsmalloc {

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

// Static storage, constructed in place by Static::Init (init.cc).
alignas(64) extern char g_state_storage[sizeof(State)];
inline State& S() { return *reinterpret_cast<State*>(g_state_storage); }

// Serialises Static::Init; taken first by the fork lock table.
extern SpinLock& g_init_lock;

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_STATIC_STATE_H_
