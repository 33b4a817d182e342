// Metadata memory. Spans, thread caches, pagemap leaves and every other
// internal structure live here, never in the system malloc (which we may be
// replacing) and never in the user heap.
#ifndef JSMALLOC_RUNTIME_ARENA_H_
#define JSMALLOC_RUNTIME_ARENA_H_

#include <cstddef>
#include <new>

#include "runtime/spinlock.h"

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

// A std-compatible allocator over a node pool, for the back-ends' ordered
// sets. All nodes of one container type have the same size, so one free list
// per instantiation suffices; it has its own lock because several containers
// (under different owner locks) may share it.
template <typename T>
class ArenaStlAllocator {
 public:
  using value_type = T;
  ArenaStlAllocator() = default;
  template <typename U>
  ArenaStlAllocator(const ArenaStlAllocator<U>&) {}

  T* allocate(size_t n) {
    if (n == 1) {
      SpinLockHolder h(&lock());
      if (free_list() != nullptr) {
        Node* node = free_list();
        free_list() = node->next;
        return reinterpret_cast<T*>(node);
      }
    }
    size_t bytes = n * (sizeof(T) < sizeof(Node) ? sizeof(Node) : sizeof(T));
    void* p = GlobalArena()->Alloc(bytes, alignof(T) < 16 ? 16 : alignof(T));
    if (p == nullptr) throw_or_die();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) {
    if (n != 1) return;  // multi-object blocks are not recycled (never used)
    Node* node = reinterpret_cast<Node*>(p);
    SpinLockHolder h(&lock());
    node->next = free_list();
    free_list() = node;
  }
  template <typename U>
  bool operator==(const ArenaStlAllocator<U>&) const {
    return true;
  }

 private:
  struct Node {
    Node* next;
  };
  static Node*& free_list() {
    static constinit Node* head = nullptr;
    return head;
  }
  static SpinLock& lock() {
    static constinit SpinLock l;
    return l;
  }
  [[noreturn]] static void throw_or_die();
};

[[noreturn]] void ArenaExhausted();

template <typename T>
void ArenaStlAllocator<T>::throw_or_die() {
  ArenaExhausted();
}

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_ARENA_H_
