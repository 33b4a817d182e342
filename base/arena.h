// Metadata memory. Spans, thread caches, pagemap leaves and every other
// internal structure live here, never in the system malloc (which we may be
// replacing) and never in the user heap.
#ifndef JSMALLOC_BASE_ARENA_H_
#define JSMALLOC_BASE_ARENA_H_

#include <cstddef>
#include <new>

#include "base/spinlock.h"

namespace jsmalloc {

// Bump allocator over chunks mapped from the OS. Memory is never returned:
// metadata is small relative to the heap it describes, and reuse of freed
// metadata objects is done by the typed free lists below.
class MetadataArena {
 public:
  constexpr MetadataArena() = default;
  // Returns zeroed memory aligned to `align` (<= 4096), or nullptr when the
  // OS refuses.
  void* Alloc(size_t bytes, size_t align = 64);
  size_t bytes_mapped() const { return mapped_; }
  size_t bytes_used() const { return used_; }
  SpinLock* lock() { return &lock_; }

 private:
  SpinLock lock_;
  char* cur_ = nullptr;
  size_t left_ = 0;
  size_t mapped_ = 0;
  size_t used_ = 0;
};

// The process-wide metadata arena (constant-initialised, usable before main).
MetadataArena* GlobalArena();

// Free list of fixed-size objects carved from an arena. Not thread-safe:
// each user guards it with the lock that guards the objects' owner.
template <typename T>
class ObjectPool {
 public:
  constexpr ObjectPool() = default;
  void Init(MetadataArena* arena) { arena_ = arena; }

  T* New() {
    void* p;
    if (free_ != nullptr) {
      p = free_;
      free_ = free_->next;
    } else {
      p = arena_->Alloc(sizeof(T) < sizeof(FreeNode) ? sizeof(FreeNode) : sizeof(T), alignof(T));
      if (p == nullptr) return nullptr;
    }
    ++in_use_;
    return new (p) T();
  }

  void Delete(T* obj) {
    obj->~T();
    FreeNode* n = reinterpret_cast<FreeNode*>(obj);
    n->next = free_;
    free_ = n;
    --in_use_;
  }

  size_t in_use() const { return in_use_; }

 private:
  struct FreeNode {
    FreeNode* next;
  };
  MetadataArena* arena_ = nullptr;
  FreeNode* free_ = nullptr;
  size_t in_use_ = 0;
};

// Aborts with a message: the arena could not map more metadata.
[[noreturn]] void ArenaExhausted();

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_ARENA_H_
