// The allocation and deallocation paths shared by the C API and operator
// new/delete. The fast paths are inline; everything else is out of line.
#ifndef JSMALLOC_RUNTIME_ALLOCATOR_H_
#define JSMALLOC_RUNTIME_ALLOCATOR_H_

#include <cstddef>
#include <cstdint>

#include "os/os.h"
#include "base/size_map.h"
#include "runtime/static_vars.h"
#include "caches/thread_cache.h"
#include "runtime/thread_state.h"

namespace jsmalloc {

// Largest request we try to satisfy; anything larger cannot be mapped anyway.
inline constexpr size_t kMaxRequest = size_t{1} << 46;

// The slow paths are noexcept so that the exported (noexcept) entry points
// can reach them by tail call: the fast paths then need no stack frame.
void* AllocateSlow(size_t size) noexcept;
void* AllocateClassSlow(int cl) noexcept;
// The thread's list for cl is empty: refill it (sets errno on failure).
void* AllocateMiss(ThreadCache* tc, int cl) noexcept;
// The current CPU's cache for cl is empty / full.
void* CpuAllocateMiss(int cl) noexcept;
void CpuFreeMiss(void* p, int cl) noexcept;
void* AllocateLarge(size_t size, size_t alignment) noexcept;
void FreeSlow(void* p, int cl) noexcept;
// The allocation ran the thread's sampling countdown out (alignment 0:
// malloc's). Samples it or not, and allocates.
void* AllocateSampleSlow(size_t size, size_t alignment) noexcept;
// Usable size of an allocated block; aborts on a pointer we do not own.
size_t UsableSize(const void* p);
// realloc's source block: its usable size, after the checks a free of it
// makes at once (a pointer into an object, a block just freed): realloc may
// keep the block in place, and must not hand out one that is also free.
size_t ReallocSourceSize(const void* p);
// Usable size, or 0 if p is not the start of (or inside) a small object or
// the start of a large block JSMalloc handed out. Never aborts.
size_t OwnedSize(const void* p);
// Flushes the calling thread's cache and the transfer caches, then releases
// all free back-end memory. Returns bytes released.
size_t TrimAll();
// Returns objects from the per-CPU (or the calling thread's) cache and the
// transfer caches to the central lists, so empty spans go to the back-end.
void FlushCaches();

// The per-CPU fast paths; false/nullptr when per-CPU caches are off.
JSMALLOC_ALWAYS_INLINE bool PerCpuActive(uintptr_t* base) {
#if JSMALLOC_HAVE_RSEQ_SLAB
  // Acquire (a plain load on x86) so that the rseq offset and slab layout
  // published before the base are seen by the critical section that uses it.
  *base = __atomic_load_n(&g_percpu_base, __ATOMIC_ACQUIRE);
  return *base != 0;
#else
  *base = 0;
  return false;
#endif
}

// The free fast path's switch: the slab base, or 0 when frees go through
// FreeSlow (several NUMA partitions: an object may belong to another node).
JSMALLOC_ALWAYS_INLINE bool PerCpuFreeActive(uintptr_t* base) {
#if JSMALLOC_HAVE_RSEQ_SLAB
  *base = __atomic_load_n(&g_percpu_free_base, __ATOMIC_ACQUIRE);
  return *base != 0;
#else
  *base = 0;
  return false;
#endif
}

JSMALLOC_ALWAYS_INLINE void* CpuPopOrMiss(uintptr_t base, int cl) {
#if JSMALLOC_HAVE_RSEQ_SLAB
  void* p;
  if (JSMALLOC_LIKELY(os::RseqSlabTryPop(base, static_cast<size_t>(cl), &p))) return p;
#endif
  return CpuAllocateMiss(cl);
}

JSMALLOC_ALWAYS_INLINE void* AllocateClass(int cl) {
  uintptr_t base;
  if (JSMALLOC_LIKELY(PerCpuActive(&base))) return CpuPopOrMiss(base, cl);
  ThreadCache* tc = t_state.cache;
  if (JSMALLOC_LIKELY(tc != nullptr)) {
    void* p = tc->TryPop(cl);
    if (JSMALLOC_LIKELY(p != nullptr)) return p;
    return AllocateMiss(tc, cl);
  }
  return AllocateClassSlow(cl);
}

// Counts `size` bytes against the thread's sampling countdown; true when it
// runs out. Unsigned arithmetic: an impossible size wraps instead of
// overflowing (AllocateLarge gives it back). Zero counts as run out: a new
// thread's countdown is 0, and a first request of 0 bytes left it at 0, so
// it skipped the slow path that draws the first interval and, in check mode,
// clears the block's freed mark (its later free was reported as a double
// free).
// The test is the signed `countdown <= size`: `left <= 0` wherever the
// subtraction does not wrap, and what the subtraction's own flags say, so on
// x86-64 it is one sub on the thread's variable and a jle, as the js of
// `left < 0` was (compilers do not fuse it from C: they load, subtract,
// store and test).
JSMALLOC_ALWAYS_INLINE bool SampleCountdownExpired(size_t size) {
#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__)
  bool expired;
  asm("subq %2, %0" : "+m"(t_state.bytes_until_sample), "=@ccle"(expired) : "r"(size));
  return JSMALLOC_UNLIKELY(expired);
#else
  const int64_t before = t_state.bytes_until_sample;
  t_state.bytes_until_sample = static_cast<int64_t>(static_cast<uint64_t>(before) - size);
  return JSMALLOC_UNLIKELY(before <= static_cast<int64_t>(size));
#endif
}

// Sets errno to ENOMEM and returns null on failure.
JSMALLOC_ALWAYS_INLINE void* AllocateUnsampled(size_t size) {
  uintptr_t base;
  if (JSMALLOC_LIKELY(size <= kMaxSize && PerCpuActive(&base))) {
    return CpuPopOrMiss(base, SizeMap::ClassFor(size));
  }
  ThreadCache* tc = t_state.cache;
  if (JSMALLOC_LIKELY(size <= kMaxSize && tc != nullptr)) {
    int cl = SizeMap::ClassFor(size);
    void* p = tc->TryPop(cl);
    if (JSMALLOC_LIKELY(p != nullptr)) return p;
    return AllocateMiss(tc, cl);  // a tail call: the fast path saves no registers
  }
  return AllocateSlow(size);
}

JSMALLOC_ALWAYS_INLINE void* Allocate(size_t size) {
  if (SampleCountdownExpired(size)) return AllocateSampleSlow(size, 0);
  return AllocateUnsampled(size);
}

// alignment: a power of two.
inline void* AllocateAlignedUnsampled(size_t size, size_t alignment) {
  if (alignment <= kPageSize && size <= kMaxSize) {
    int cl = SizeMap::ClassForAligned(size, alignment);
    if (cl != 0) return AllocateClass(cl);
  }
  return AllocateLarge(size, alignment);
}

inline void* AllocateAligned(size_t size, size_t alignment) {
  if (SampleCountdownExpired(size)) return AllocateSampleSlow(size, alignment);
  return AllocateAlignedUnsampled(size, alignment);
}

JSMALLOC_ALWAYS_INLINE void Free(void* p) {
  int cl = g_pagemap.SizeClassOf(p);
#if JSMALLOC_HAVE_RSEQ_SLAB
  uintptr_t base;
  if (JSMALLOC_LIKELY(cl != 0 && PerCpuFreeActive(&base))) {
    if (JSMALLOC_LIKELY(os::RseqSlabPush(base, static_cast<size_t>(cl), p))) return;
    CpuFreeMiss(p, cl);
    return;
  }
#endif
  ThreadCache* tc = t_state.free_cache;
  // A pointer into an object goes to FreeSlow, whose Deallocate aborts.
  if (JSMALLOC_LIKELY(cl != 0 && tc != nullptr) && JSMALLOC_LIKELY(tc->DeallocateIfAligned(p, cl))) return;
  FreeSlow(p, cl);
}

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_ALLOCATOR_H_
