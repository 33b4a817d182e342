// Radix tree from page number to span, covering the 48-bit address space.
//
// Two levels: a root array (in the owning object, so it needs no allocation
// and is zero before any constructor runs) of pointers to leaves allocated on
// demand from the metadata arena. Each leaf also holds the size class of
// every page, so free() finds an object's class with two dependent loads and
// no lock. Readers never lock: a leaf, once published, is never freed, and
// entries are written before the memory they describe is handed out.
#ifndef JSMALLOC_BASE_PAGEMAP_H_
#define JSMALLOC_BASE_PAGEMAP_H_

#include <atomic>
#include <cstdint>

#include "base/arena.h"
#include "base/config.h"
#include "base/span.h"
#include "base/spinlock.h"

namespace jsmalloc {

class PageMap {
 public:
  static constexpr int kBits = kAddressBits - kPageShift;
  static constexpr int kLeafBits = 17;
  static constexpr int kRootBits = kBits - kLeafBits;
  static constexpr size_t kLeafLength = size_t{1} << kLeafBits;
  static constexpr size_t kRootLength = size_t{1} << kRootBits;

  struct Leaf {
    Span* span[kLeafLength];
    uint8_t sizeclass[kLeafLength];
    // Where a page with a size class sits in its span (0 for the first
    // page): the span's start without the Span, whose line is seldom in
    // cache when a batch of freed objects is checked.
    uint16_t page_in_span[kLeafLength];
  };

  constexpr PageMap() = default;
  void Init(MetadataArena* arena) { arena_ = arena; }

  // Size class of the page holding p; 0 if the page holds no small objects or
  // is not ours.
  JSMALLOC_ALWAYS_INLINE uint8_t SizeClassOf(const void* p) const {
    uintptr_t addr = reinterpret_cast<uintptr_t>(p);
    // One compare covers both "beyond 48 bits" and the root's bound.
    uintptr_t root = addr >> (kPageShift + kLeafBits);
    if (JSMALLOC_UNLIKELY(root >= (uintptr_t{1} << kRootBits))) return 0;
    const Leaf* leaf = root_[root].load(std::memory_order_acquire);
    if (JSMALLOC_UNLIKELY(leaf == nullptr)) return 0;
    return leaf->sizeclass[(addr >> kPageShift) & (kLeafLength - 1)];
  }

  // The first page's address of the span of size class cl holding p, or 0
  // when p's page is not of that class. Reads only the leaf's compact
  // arrays (checking a batch of freed objects touched a cold Span each).
  uintptr_t SpanStartIfClass(const void* p, int cl) const {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
    const uintptr_t root = addr >> (kPageShift + kLeafBits);
    if (JSMALLOC_UNLIKELY(root >= (uintptr_t{1} << kRootBits))) return 0;
    const Leaf* leaf = root_[root].load(std::memory_order_acquire);
    if (JSMALLOC_UNLIKELY(leaf == nullptr)) return 0;
    const size_t i = (addr >> kPageShift) & (kLeafLength - 1);
    if (leaf->sizeclass[i] != cl) return 0;
    return ((addr >> kPageShift) - leaf->page_in_span[i]) << kPageShift;
  }

  // Span covering page `id`, or nullptr. Entries of free runs are only kept
  // for their first and last pages; interior entries may be stale.
  Span* Get(PageId id) const {
    if ((id >> kBits) != 0) return nullptr;
    const Leaf* leaf = root_[id >> kLeafBits].load(std::memory_order_acquire);
    if (leaf == nullptr) return nullptr;
    return leaf->span[id & (kLeafLength - 1)];
  }

  // Makes sure leaves exist for [start, start+n). Returns false when the
  // metadata arena is exhausted. Locked: the back-ends of several NUMA
  // partitions share the map, and two creating one leaf would lose entries.
  bool Ensure(PageId start, Length n) {
    SpinLockHolder h(&ensure_lock_);
    for (PageId key = start >> kLeafBits; key <= (start + n - 1) >> kLeafBits; ++key) {
      if ((key >> kRootBits) != 0) return false;
      if (root_[key].load(std::memory_order_relaxed) == nullptr) {
        void* mem = arena_->Alloc(sizeof(Leaf), 4096);
        if (mem == nullptr) return false;
        leaf_bytes_ += sizeof(Leaf);
        root_[key].store(static_cast<Leaf*>(mem), std::memory_order_release);
      }
    }
    return true;
  }

  // The leaf for `id` must exist (Ensure was called for the range).
  void Set(PageId id, Span* s) { LeafFor(id)->span[id & (kLeafLength - 1)] = s; }
  void SetRange(PageId start, Length n, Span* s) {
    for (Length i = 0; i < n; ++i) Set(start + i, s);
  }
  // A span of size class cl (0: none) over [start, start+n); n at most
  // 65535 pages when cl is not 0 (spans of objects are far smaller).
  void SetSizeClass(PageId start, Length n, uint8_t cl) {
    for (Length i = 0; i < n; ++i) {
      Leaf* leaf = LeafFor(start + i);
      const size_t k = (start + i) & (kLeafLength - 1);
      leaf->page_in_span[k] = static_cast<uint16_t>(cl != 0 ? i : 0);
      leaf->sizeclass[k] = cl;
    }
  }

  size_t metadata_bytes() const { return leaf_bytes_; }

 private:
  Leaf* LeafFor(PageId id) const { return root_[id >> kLeafBits].load(std::memory_order_relaxed); }

  MetadataArena* arena_ = nullptr;
  SpinLock ensure_lock_;
  size_t leaf_bytes_ = 0;
  std::atomic<Leaf*> root_[kRootLength] = {};
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_PAGEMAP_H_
