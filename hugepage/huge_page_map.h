// Hugepage number -> pointer (the filler's tracker of that hugepage), a
// two-level radix tree over the 48-bit address space with the root (256 KiB)
// and the leaves from the metadata arena, made on first use: zeroed by the
// kernel, they cost RSS only where written. Guarded by the back-end lock.
#ifndef JSMALLOC_HUGEPAGE_HUGE_PAGE_MAP_H_
#define JSMALLOC_HUGEPAGE_HUGE_PAGE_MAP_H_

#include "hugepage/huge_pages.h"
#include "base/arena.h"

namespace jsmalloc {

template <typename T>
class HugePageMap {
 public:
  static constexpr int kBits = kAddressBits - kHugePageShift;
  static constexpr int kLeafBits = 12;
  static constexpr size_t kLeafLength = size_t{1} << kLeafBits;
  static constexpr size_t kRootLength = size_t{1} << (kBits - kLeafBits);

  explicit HugePageMap(MetadataArena* arena) : arena_(arena) {}

  T* Get(HugePageId h) const {
    if ((h >> kBits) != 0 || root_ == nullptr) return nullptr;
    Leaf* leaf = root_[h >> kLeafBits];
    return leaf == nullptr ? nullptr : leaf->v[h & (kLeafLength - 1)];
  }
  bool Set(HugePageId h, T* v) {
    if ((h >> kBits) != 0) return false;
    if (root_ == nullptr) {
      root_ = static_cast<Leaf**>(arena_->Alloc(sizeof(Leaf*) * kRootLength, 4096));
      if (root_ == nullptr) return false;
    }
    Leaf*& leaf = root_[h >> kLeafBits];
    if (leaf == nullptr) {
      leaf = static_cast<Leaf*>(arena_->Alloc(sizeof(Leaf), 64));
      if (leaf == nullptr) return false;
    }
    leaf->v[h & (kLeafLength - 1)] = v;
    return true;
  }

 private:
  struct Leaf {
    T* v[kLeafLength];
  };
  MetadataArena* arena_;
  Leaf** root_ = nullptr;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_HUGEPAGE_HUGE_PAGE_MAP_H_
