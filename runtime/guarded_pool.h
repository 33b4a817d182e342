// Guarded sampling, in the spirit of GWP-ASan (docs/reliability.md).
//
// One in JSMALLOC_GUARDED_RATE sampled allocations (runtime/sampler.h) of at
// most kGuardedMaxSize bytes is placed in the guarded pool instead of a span:
// a reservation, made on the first guarded allocation, of
// JSMALLOC_GUARDED_SLOTS slots, each of kGuardedMaxSize bytes between
// inaccessible guard pages:
//
//   [guard][slot 0][guard][slot 1][guard] ... [slot N-1][guard]
//
// Only the pages a live block occupies are accessible. A block lies either
// against the end of its slot (right-aligned: an overflow runs into the guard
// page after it) or at the start (left-aligned: an underflow runs into the
// guard page before it), chosen by a random bit per allocation; the bytes of
// its pages around it are filled with a pattern that free() checks. On free
// the slot's pages become inaccessible again and their memory is given back;
// the slot joins the back of a FIFO of free slots, so it is reused as late as
// possible (a use after free faults until then). A fault in the pool ends in
// a report on stderr (kind, address, the block, its allocation and free
// stacks) and abort(); so do a double free and a free of a pointer inside
// the pool that is not a live block.
//
// Guarded blocks are not in the pagemap: their size class reads 0, so free()
// and the size queries reach the large-object paths, which test
// InGuardedPool (two loads and a compare) before anything else. Nothing is
// added to the malloc or free fast paths, and with JSMALLOC_GUARDED_RATE=0
// (the default) the pool is never created.
//
// Each guarded allocation is still a sample: it keeps its sampler record
// (live samples, profiles and estimates count it); the pool holds the record
// and hands it back to the sampler on free (FreeGuardedSample).
#ifndef JSMALLOC_RUNTIME_GUARDED_POOL_H_
#define JSMALLOC_RUNTIME_GUARDED_POOL_H_

#include <cstddef>
#include <cstdint>

#include "base/config.h"
#include "base/internal_printer.h"
#include "runtime/stack_trace.h"

namespace jsmalloc {

struct SampledAllocation;  // runtime/sample_records.h

// Largest guarded allocation (the data bytes of a slot): every size a size
// class serves. Larger sampled allocations are not guarded.
inline constexpr size_t kGuardedMaxSize = kMaxSize;
// JSMALLOC_GUARDED_SLOTS is clamped to this (metadata is ~1.1 KiB a slot).
inline constexpr size_t kGuardedMaxSlots = 4096;
// Frames kept per stack (allocation and free).
inline constexpr int kGuardedStackDepth = 64;

// The pool's address range: [g_guarded_begin, g_guarded_begin +
// g_guarded_bytes), both 0 until the pool exists. Written once, before the
// first guarded block is handed out.
extern constinit uintptr_t g_guarded_begin __attribute__((visibility("hidden")));
extern constinit uintptr_t g_guarded_bytes __attribute__((visibility("hidden")));

// True if p lies in the guarded pool (guard pages included).
JSMALLOC_ALWAYS_INLINE bool InGuardedPool(const void* p) {
  // The size first (published last): once it is seen, so is the start.
  uintptr_t bytes = __atomic_load_n(&g_guarded_bytes, __ATOMIC_ACQUIRE);
  uintptr_t off = reinterpret_cast<uintptr_t>(p) - __atomic_load_n(&g_guarded_begin, __ATOMIC_RELAXED);
  return off < bytes;
}

// ---- Called by the sampler (runtime/sample_records.cc) --------------------------

// A guarded block for a sampled allocation (alignment 0: malloc's), its
// allocation stack copied; creates the pool on first use. nullptr if this one
// cannot be guarded (too large, no free slot, the pool could not be made).
void* GuardedAllocate(size_t size, size_t alignment, void* const* stack, int depth);
// The sampler's record of the block (set before the block is handed out).
void GuardedSetRecord(void* p, SampledAllocation* record);
// The sampler could not record the block: its slot goes back unused.
void GuardedAbandon(void* p);

// Implemented in runtime/sample_records.cc: drops the record of a guarded
// sample that is being freed (live list, estimates, peak profile, probe).
void FreeGuardedSample(SampledAllocation* record, void* p);

// ---- Called by the free and size paths (runtime/allocator.cc) -------------------

// free(p) for p in the pool. `here` is where the stack walk for the free
// stack starts (UnwindStartHere() in the caller, whose frame must still be
// live; the walk drops the caller's frame and the allocator's entry points).
// Aborts with a report on a double free or a pointer that is not a live
// guarded block.
void GuardedDeallocate(void* p, const UnwindStart* here);
// malloc_usable_size(p) for p in the pool: the requested size (at least 1).
// Aborts with a report if p is not a live guarded block.
size_t GuardedUsableSize(const void* p);
// Ownership queries: the block's size if p is inside a live guarded block,
// else 0. Never aborts.
size_t GuardedOwnedSize(const void* p);

// ---- Stats (for runtime/stats.cc) -------------------------------------------------

struct GuardedStats {
  size_t rate;                 // JSMALLOC_GUARDED_RATE (0: off)
  size_t slots;                // slots in the pool (0 until it exists)
  size_t slots_in_use;         // live guarded allocations
  size_t slots_quarantined;    // freed slots not reused yet (inaccessible)
  size_t live_bytes;           // requested bytes of the live guarded blocks
  size_t mapped_bytes;         // the accessible (resident once touched) pages under them:
                               // in use by the application, outside the back-end's accounting
  size_t max_size;             // kGuardedMaxSize
  size_t pool_bytes;           // address space reserved (0 until the pool exists)
  uint64_t allocations_total;  // guarded allocations since start
  uint64_t frees_total;
  uint64_t skipped_total;      // samples picked for guarding but not guarded (too large, pool full)
  uint64_t errors_reported;    // reports printed (each is followed by abort)
};
GuardedStats GetGuardedStats();
// One line for the stats report ("Guarded sampling: ...\n").
void PrintGuardedSection(Printer* out);
// Numeric properties "jsmalloc.guarded.*" (rate, slots, slots_in_use,
// slots_quarantined, live_bytes, mapped_bytes, max_size, pool_bytes,
// allocations_total, frees_total, skipped_total, errors_reported).
bool GetGuardedProperty(const char* name, size_t* value);
// The property names (for PropertyNames); returns how many there are.
size_t GuardedPropertyNames(const char** names, size_t max);

// ---- fork() (runtime/fork_locks.cc): taken right after the sampler's lock ------
void GuardedLockForFork();
void GuardedUnlockAfterFork(bool child);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_GUARDED_POOL_H_
