// Heap-misuse checks beyond the ones that are always on (docs/reliability.md).
//
// JSMALLOC_CHECK=1 ("check mode") validates every free at once instead of
// when the object reaches a central free list: the pointer must be the start
// of an object of a span in use, must not be freed twice (a mark in the
// object's second word, keyed per process, set on free and cleared on
// allocation), and a sized delete must pass a size of the block's class.
// It costs nothing when off: allocations reach AllocateChecked through the
// sampling countdown (kept negative in check mode), frees reach CheckFree
// through FreeSlow (the free fast paths are switched off), and the sized
// delete forms test one global. Heap sampling is off in check mode.
#ifndef JSMALLOC_RUNTIME_HEAP_CHECK_H_
#define JSMALLOC_RUNTIME_HEAP_CHECK_H_

#include <cstddef>
#include <cstdint>

#include "base/config.h"

namespace jsmalloc {

extern constinit bool g_check_mode __attribute__((visibility("hidden")));

// Called once at initialisation (Static::Init), before any allocation.
void InitHeapCheck(bool on);

// Check mode's allocation path (from AllocateSampleSlow): allocates and
// clears the object's free mark.
void* AllocateChecked(size_t size, size_t alignment) noexcept;
// Validates a free of p (size class cl, 0 for large) and marks the object
// freed. Aborts naming the address and the error.
void CheckFree(void* p, int cl);
// realloc's source block p (class cl, not 0) in check mode: aborts if it
// carries the freed mark.
void CheckNotFreed(const void* p, int cl);
// operator delete(p, size[, align]): aborts if size does not fit the block.
void CheckSizedFree(void* p, size_t size, size_t alignment);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_HEAP_CHECK_H_
