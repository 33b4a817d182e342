// The process-wide allocator: one instance of every component, built on
// first use (which may be before main, from any thread) in static storage.
#ifndef JSMALLOC_RUNTIME_STATIC_VARS_H_
#define JSMALLOC_RUNTIME_STATIC_VARS_H_

#include <atomic>

#include "hugepage/page_allocator.h"
#include "hugepage/system_page_source.h"
#include "runtime/cpu_cache.h"
#include "runtime/central_free_list.h"
#include "runtime/env_options.h"
#include "runtime/pagemap.h"
#include "runtime/thread_cache.h"
#include "runtime/transfer_cache.h"

namespace jsmalloc {

// Read by free() on every call: a plain global, so it needs no indirection.
extern constinit PageMap g_pagemap __attribute__((visibility("hidden")));

// Base of the per-CPU slab when the per-CPU front-end is active, else 0.
// Read on every malloc/free to choose the front-end.
extern constinit uintptr_t g_percpu_base __attribute__((visibility("hidden")));

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
  // The hugepage-aware back-end when it is the one in use, else nullptr.
  static class HugePageAwareAllocator* hugepage_allocator();
  static class MemoryLimiter* memory_limiter();
  static SystemPageSource* system_page_source();
  // The legacy page heap's address range; false with the hugepage back-end.
  static bool legacy_heap_range(uintptr_t* lo, uintptr_t* hi);
  static CentralFreeList& central(int cl);
  static TransferCache* transfer();  // indexed by size class
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

 private:
  static void Init();
  static void RegisterThreadHooks();
  static constinit std::atomic<bool> inited_;
  static constinit std::atomic<bool> key_ready_;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_STATIC_VARS_H_
