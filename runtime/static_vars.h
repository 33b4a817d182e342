// The process-wide allocator: one instance of every component, built on
// first use (which may be before main, from any thread) in static storage.
#ifndef JSMALLOC_RUNTIME_STATIC_VARS_H_
#define JSMALLOC_RUNTIME_STATIC_VARS_H_

#include <atomic>

#include "backend/page_allocator.h"
#include "backend/system_page_source.h"
#include "caches/cpu_cache.h"
#include "caches/central_free_list.h"
#include "base/env_options.h"
#include "runtime/numa_partitions.h"
#include "base/pagemap.h"
#include "caches/thread_cache.h"
#include "caches/transfer_cache.h"

namespace jsmalloc {

// Read by free() on every call: a plain global, so it needs no indirection.
extern constinit PageMap g_pagemap __attribute__((visibility("hidden")));

// Base of the per-CPU slab when the per-CPU front-end is active, else 0.
// Read on every malloc/free to choose the front-end.
extern constinit uintptr_t g_percpu_base __attribute__((visibility("hidden")));

// The same base for free(), or 0 when frees take the slow path to find their
// NUMA partition. Next to g_percpu_base: one cache line for both.
extern constinit uintptr_t g_percpu_free_base __attribute__((visibility("hidden")));

// With several NUMA partitions: the partition of each CPU (g_numa_cpus
// entries), read by every free; null with one partition.
extern constinit const uint8_t* g_numa_cpu_partition __attribute__((visibility("hidden")));
extern constinit int g_numa_cpus __attribute__((visibility("hidden")));

enum class FrontEnd { kPerThread, kPerCpu };

class Static {
 public:
  static JSMALLOC_ALWAYS_INLINE bool inited() { return inited_.load(std::memory_order_acquire); }
  // Builds everything once; safe to call from any thread at any time,
  // including reentrantly from functions Init itself calls.
  static void InitIfNeeded() {
    if (JSMALLOC_UNLIKELY(!inited())) Init();
  }

  // The back-end as the rest of the allocator sees it (behind the memory
  // limiter).
  static PageAllocator* backend();
  // The hugepage-aware back-end when it is the one in use, else nullptr:
  // partition 0's, or partition p's.
  static class HugePageAwareAllocator* hugepage_allocator();
  static class HugePageAwareAllocator* hugepage_allocator(int p);
  static class MemoryLimiter* memory_limiter();
  static SystemPageSource* system_page_source();
  // Partition p's legacy page heap address range; false with the hugepage back-end.
  static bool legacy_heap_range(int p, uintptr_t* lo, uintptr_t* hi);

  // NUMA partitions (runtime/numa_partitions.h); 1 unless NUMA-aware mode
  // found the process's CPUs on several nodes.
  static int num_partitions();
  // The partition of the CPU the caller runs on (0 with one partition).
  static int CurrentPartition();
  static const NumaPlan& numa_plan();
  // The topology read or injected; nullptr when NUMA-aware mode is off.
  static const os::NumaTopology* numa_topology();
  static const char* numa_topology_source();
  // Partition p's back-end (without the memory limit) and its page source.
  static PageAllocator* partition_backend(int p);
  static const class BoundPageSource& partition_source(int p);
  static size_t partition_remote_frees(int p);
  static void CountRemoteFree(int home);

  static CentralFreeList& central(int p, int cl);
  static TransferCache* transfer(int p);  // partition p's, indexed by size class
  static ThreadCacheRegistry& registry();
  static FrontEnd front_end() { return g_percpu_base != 0 ? FrontEnd::kPerCpu : FrontEnd::kPerThread; }
#if JSMALLOC_HAVE_RSEQ_SLAB
  // Valid when front_end() == kPerCpu.
  static CpuCache& cpu_cache();
#endif
  // Why the per-CPU front-end is not active ("" when it is).
  static const char* per_cpu_off_reason();
  static const Options& options();
  static MetadataArena* arena();
  static bool thread_key_ready() { return key_ready_.load(std::memory_order_acquire); }

  // pthread_atfork handlers: hold every allocator lock across fork() so the
  // child starts with consistent structures.
  static void PrepareFork();
  static void ParentAfterFork();
  static void ChildAfterFork();
  // The init lock's entry in the fork table (runtime/fork_locks.h).
  static void LockInitForFork();
  static void UnlockInitAfterFork(bool child);

 private:
  static void Init();
  static void RegisterThreadHooks();
  static constinit std::atomic<bool> inited_;
  static constinit std::atomic<bool> key_ready_;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_STATIC_VARS_H_
