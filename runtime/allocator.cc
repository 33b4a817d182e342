#include "runtime/allocator.h"

#include <errno.h>

#include "os/os.h"
#include "runtime/heap_check.h"
#include "runtime/guarded_pool.h"
#include "runtime/sample_records.h"
#include "runtime/sampler.h"
#include "runtime/thread_lifecycle.h"

namespace jsmalloc {

__thread ThreadState t_state __attribute__((tls_model("initial-exec"))) = {};


namespace {

ThreadCache* GetCache() {
  ThreadCache* tc = t_state.cache;
  return tc != nullptr ? tc : CreateThreadCache();
}

void* AllocateUncached(int cl) {
  void* p = nullptr;
  return Static::transfer(Static::CurrentPartition())[cl].RemoveRange(&p, 1) == 1 ? p : nullptr;
}

// Several NUMA partitions: the free fast paths are off, and every small free
// comes here. An object goes to the caller's cache only if it belongs to the
// caller's node; otherwise straight back to its home partition.
JSMALLOC_ALWAYS_INLINE void FreePartitioned(void* p, int cl) {
  Span* span = g_pagemap.Get(PageIdOf(p));
  if (JSMALLOC_UNLIKELY(span == nullptr)) os::FatalError("invalid free of pointer not allocated by jsmalloc:", p);
  const int home = span->partition;
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (Static::front_end() == FrontEnd::kPerCpu) {
    int cpu = os::RseqCurrentCpuInline();
    // A thread that has only freed so far may not be registered with rseq yet.
    if (JSMALLOC_UNLIKELY(cpu < 0) && os::RseqEnsureThreadRegistered()) cpu = os::RseqCurrentCpu();
    if (JSMALLOC_LIKELY(cpu >= 0 && cpu < g_numa_cpus && g_numa_cpu_partition[cpu] == home)) {
      // A migration between the check and the push can still leave the
      // object on another node's CPU; the central list sends it home later.
      if (!os::RseqSlabPush(g_percpu_base, static_cast<size_t>(cl), p)) CpuFreeMiss(p, cl);
      return;
    }
  } else
#endif
  {
    ThreadCache* tc = GetCache();
    if (tc != nullptr && tc->partition() == home) {
      tc->Deallocate(p, cl);
      return;
    }
  }
  Static::CountRemoteFree(home);
  Static::transfer(home)[cl].InsertRange(&p, 1);
}

// The back-end refused memory (RLIMIT_AS, a hard limit, the OS). The caches
// may hold what it needs: objects whose return would empty spans of other
// classes. Hand everything back once before failing.
JSMALLOC_NOINLINE void FlushBeforeFailing() { FlushCaches(); }

}  // namespace

void* CpuAllocateMiss(int cl) noexcept {
#if JSMALLOC_HAVE_RSEQ_SLAB
  void* p = Static::cpu_cache().Underflow(cl);
  if (JSMALLOC_UNLIKELY(p == nullptr)) {
    FlushBeforeFailing();
    p = Static::cpu_cache().Underflow(cl);
    if (p == nullptr) errno = ENOMEM;
  }
  return p;
#else
  return AllocateClassSlow(cl);
#endif
}

void CpuFreeMiss(void* p, int cl) noexcept {
#if JSMALLOC_HAVE_RSEQ_SLAB
  Static::cpu_cache().Overflow(p, cl);
#else
  Static::transfer(Static::CurrentPartition())[cl].InsertRange(&p, 1);
#endif
}

void* AllocateClassSlow(int cl) noexcept {
  Static::InitIfNeeded();
  if (Static::front_end() == FrontEnd::kPerCpu) return CpuAllocateMiss(cl);
  ThreadCache* tc = GetCache();
  void* p = tc != nullptr ? tc->Allocate(cl) : AllocateUncached(cl);
  if (JSMALLOC_UNLIKELY(p == nullptr)) {
    FlushBeforeFailing();
    tc = t_state.cache;
    p = tc != nullptr ? tc->Allocate(cl) : AllocateUncached(cl);
    if (p == nullptr) errno = ENOMEM;
  }
  return p;
}

void* AllocateMiss(ThreadCache* tc, int cl) noexcept {
  if (Static::num_partitions() > 1) {
    // The thread's cache serves the node it runs on: follow a move.
    int part = Static::CurrentPartition();
    if (part != tc->partition()) tc->Rebind(part, Static::transfer(part));
  }
  void* p = tc->FetchFromTransfer(cl);
  if (JSMALLOC_UNLIKELY(p == nullptr)) {
    FlushBeforeFailing();  // flushes tc too; it refills below
    p = tc->FetchFromTransfer(cl);
    if (p == nullptr) errno = ENOMEM;
  }
  return p;
}

void* AllocateSlow(size_t size) noexcept {
  if (size <= kMaxSize) return AllocateClassSlow(SizeMap::ClassFor(size));
  return AllocateLarge(size, kPageSize);
}

void* AllocateLarge(size_t size, size_t alignment) noexcept {
  Static::InitIfNeeded();
  if (size > kMaxRequest || alignment > kMaxRequest) {
    // Nothing was allocated: the bytes go back to the sampling countdown
    // (which an impossible size may have wrapped).
    t_state.bytes_until_sample =
        static_cast<int64_t>(static_cast<uint64_t>(t_state.bytes_until_sample) + size);
    errno = ENOMEM;
    return nullptr;
  }
  Length n = PagesFor(size == 0 ? 1 : size);
  Length align_pages = alignment > kPageSize ? alignment >> kPageShift : 1;
  auto get = [&] {
    return align_pages > 1 ? Static::backend()->NewAligned(n, align_pages) : Static::backend()->New(n);
  };
  Span* span = get();
  if (span == nullptr) {
    FlushBeforeFailing();
    span = get();
  }
  if (span == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  return span->start();
}

namespace {

// what: the message for a pointer JSMalloc does not own; inside: for one
// inside a block it handed out (not the block's start).
Span* LargeSpanOrDie(const void* p, const char* what, const char* inside) {
  Span* span = Static::inited() ? g_pagemap.Get(PageIdOf(p)) : nullptr;
  if (span == nullptr || span->first_page != PageIdOf(p) || span->start() != p) {
    os::FatalError(span != nullptr && span->location == Span::kInUse ? inside : what, p);
  }
  if (span->location != Span::kInUse) os::FatalError("double free of pointer", p);
  return span;
}

}  // namespace

void FreeSlow(void* p, int cl) noexcept {
  if (JSMALLOC_UNLIKELY(g_check_mode)) CheckFree(p, cl);
  if (cl != 0 && g_numa_cpu_partition != nullptr) {
    FreePartitioned(p, cl);  // cl != 0: p is not null
    return;
  }
  if (p == nullptr) return;
  if (cl != 0) {
    if (Static::front_end() == FrontEnd::kPerCpu) {
#if JSMALLOC_HAVE_RSEQ_SLAB
      if (os::RseqSlabPush(g_percpu_base, static_cast<size_t>(cl), p)) return;
#endif
      CpuFreeMiss(p, cl);
      return;
    }
    ThreadCache* tc = GetCache();
    if (tc != nullptr) {
      tc->Deallocate(p, cl);
    } else {
      Static::transfer(0)[cl].InsertRange(&p, 1);
    }
    return;
  }
  if (JSMALLOC_UNLIKELY(InGuardedPool(p))) {
    // A guarded sample (runtime/guarded_pool.h). The free stack is walked
    // from this frame (a local whose address escapes: no tail call).
    UnwindStart here = UnwindStartHere();
    GuardedDeallocate(p, &here);
    return;
  }
  Span* span = LargeSpanOrDie(p, "invalid free of pointer not allocated by jsmalloc:",
                              "invalid free of pointer that is not the start of an object:");
  if (span->sample != nullptr && FreeSampled(span)) return;  // kept for the next sample
  Static::backend()->Delete(span);
}

size_t ReallocSourceSize(const void* p) {
  int cl = g_pagemap.SizeClassOf(p);
  if (cl == 0) {
    if (JSMALLOC_UNLIKELY(InGuardedPool(p))) return GuardedUsableSize(p);  // aborts unless live
    Span* released = g_pagemap.Get(PageIdOf(p));
    if (released != nullptr && released->start() == p && released->location != Span::kInUse) {
      os::FatalError("realloc of freed pointer", p);
    }
    Span* span = LargeSpanOrDie(p, "invalid realloc of pointer not allocated by jsmalloc (or freed):",
                                "invalid realloc of pointer that is not the start of an object:");
    if (span->sample != nullptr && IsKeptSampledSpan(span)) os::FatalError("realloc of freed pointer", p);
    return span->sample != nullptr ? SampledAllocatedSize(span) : span->bytes();
  }
  const size_t size = SizeMap::ClassSize(cl);
  if (JSMALLOC_UNLIKELY(reinterpret_cast<uintptr_t>(p) & ObjectAlignMask(size))) {
    os::FatalError("invalid realloc of pointer that is not the start of an object:", p);
  }
  // Just freed (the top of its class in the caller's cache), or freed
  // earlier and already out of the caches (the transfer caches' free mark;
  // partition 0's setting stands for all).
  // All inline: out-of-line accessors here were a third of this function's
  // cost in a realloc-heavy request loop.
  bool freed = false;
#if JSMALLOC_HAVE_RSEQ_SLAB
  uintptr_t base;
  if (PerCpuActive(&base)) {
    const int cpu = os::RseqCurrentCpuInline();
    freed = cpu >= 0 && PerCpuSlab::TopIsAt(base, cpu, cl, p);
  } else
#endif
  if (ThreadCache* tc = t_state.free_cache) freed = tc->IsCachedOnTop(p, cl);
  if (JSMALLOC_UNLIKELY(g_check_mode)) {
    if (freed) os::FatalError("realloc of freed pointer", p);
    CheckNotFreed(p, cl);
    return size;
  }
  freed = freed || TransferCache::CarriesFreeMark(p, size);
  if (JSMALLOC_UNLIKELY(freed)) os::FatalError("realloc of freed pointer", p);
  return size;
}

size_t UsableSize(const void* p) {
  if (p == nullptr) return 0;
  int cl = g_pagemap.SizeClassOf(p);
  if (cl != 0) return SizeMap::ClassSize(cl);
  if (JSMALLOC_UNLIKELY(InGuardedPool(p))) return GuardedUsableSize(p);
  Span* span = LargeSpanOrDie(p, "malloc_usable_size of pointer not allocated by jsmalloc:",
                              "malloc_usable_size of pointer that is not the start of an object:");
  return span->sample != nullptr ? SampledAllocatedSize(span) : span->bytes();
}

size_t OwnedSize(const void* p) {
  if (p == nullptr || !Static::inited()) return 0;
  int cl = g_pagemap.SizeClassOf(p);
  if (cl != 0) return SizeMap::ClassSize(cl);
  if (JSMALLOC_UNLIKELY(InGuardedPool(p))) return GuardedOwnedSize(p);
  Span* span = g_pagemap.Get(PageIdOf(p));
  if (span == nullptr || span->location != Span::kInUse) return 0;
  if (span->sample != nullptr) {
    // A sampled allocation: a small one is owned at any of its bytes.
    size_t size = SampledAllocatedSize(span);
    size_t offset = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(span->start());
    if (offset == 0 || (size <= kMaxSize && offset < size)) return size;
    return 0;
  }
  return span->start() == p ? span->bytes() : 0;
}

void FlushCaches() {
  if (t_state.cache != nullptr) t_state.cache->Flush();
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (Static::front_end() == FrontEnd::kPerCpu) Static::cpu_cache().DrainAll();
#endif
  for (int p = 0; p < Static::num_partitions(); ++p) {
    for (int cl = 1; cl < kNumClasses; ++cl) Static::transfer(p)[cl].Drain();
  }
  ReleaseKeptSampleSpans();
}

size_t TrimAll() {
  Static::InitIfNeeded();
  FlushCaches();
  // Free objects' pages inside spans that still hold live objects.
  size_t in_spans = 0;
  for (int p = 0; p < Static::num_partitions(); ++p) {
    for (int cl = 1; cl < kNumClasses; ++cl) in_spans += Static::central(p, cl).ReleaseFreePages();
  }
  // Everything the program freed, including a large allocation whose free
  // the background thread parked while collapsing it.
  Static::backend()->WaitForDeferredFrees();
  return in_spans + Static::backend()->ReleaseAtLeast(~size_t{0});
}

}  // namespace jsmalloc
