// The legacy page heap: free lists of page runs by length (1..kMaxListPages)
// plus an ordered set for longer runs, best-fit allocation, coalescing on
// free, and release of free runs to the OS.
#ifndef JSMALLOC_BACKEND_PAGE_HEAP_H_
#define JSMALLOC_BACKEND_PAGE_HEAP_H_


#include "backend/page_allocator.h"
#include "base/arena.h"
#include "base/sorted_array.h"
#include "base/pagemap.h"
#include "base/lock_table.h"
#include "base/spinlock.h"

namespace jsmalloc {

struct PageHeapOptions {
  // Free (not yet released) bytes kept beyond which the heap releases memory
  // to the OS on its own: max(keep_free_min_bytes, in_use / keep_free_divisor).
  size_t keep_free_min_bytes = size_t{32} << 20;
  size_t keep_free_divisor = 4;
  // Smallest growth request to the OS.
  size_t min_grow_bytes = kHugePageSize;
  // NUMA partition stamped on every span (several heaps share one pagemap).
  uint8_t partition = 0;
};

class PageHeap final : public PageAllocator {
 public:
  static constexpr Length kMaxListPages = 128;

  PageHeap(PageMap* pagemap, PageSource* source, MetadataArena* arena,
           const PageHeapOptions& options = PageHeapOptions());

  Span* New(Length n) override;
  Span* NewAligned(Length n, Length align_pages) override;
  void Delete(Span* span) override;
  size_t ReleaseAtLeast(size_t bytes) override;
  BackendStats Stats() override;
  // Lowest and highest address the heap ever mapped (for coverage estimates).
  void AddressRange(uintptr_t* lo, uintptr_t* hi) {
    SpinLockHolder h(lock_);
    *lo = lo_;
    *hi = hi_;
  }
  size_t BackedBytes() override;
  void Print(Printer* out) override;
  const char* Name() const override { return "legacy page heap"; }
  // Guarded by `lock` from now on; only before first use.
  void UseLock(SpinLock* lock) { lock_.MoveTo(lock); }
  void LockForFork() override { lock_->Lock(); }
  void UnlockAfterFork(bool child) override {
    if (child) lock_->ResetAfterFork();
    else lock_->Unlock();
  }

  // Consistency check for tests: every free run is in the right list, the
  // pagemap agrees at its ends, neighbours of the same kind are coalesced,
  // and the byte counters add up. Returns false on the first violation.
  bool CheckInvariants();

 private:
  struct ByLengthThenAddress {
    bool operator()(const Span* a, const Span* b) const {
      if (a->num_pages != b->num_pages) return a->num_pages < b->num_pages;
      return a->first_page < b->first_page;
    }
  };
  using LargeSet = SortedArray<Span*, ByLengthThenAddress>;

  Span* NewLocked(Length n);
  Span* SearchFreeLists(Length n);
  Span* Carve(Span* span, Length n);
  void InsertFree(Span* span);
  void RemoveFree(Span* span);
  void MergeIntoFreeLists(Span* span);
  bool Grow(Length n);
  size_t ReleaseSpan(Span* span);
  size_t ReleaseAtLeastLocked(size_t bytes);
  void MaybeReleaseExcess();
  Span* NewSpan(PageId first, Length n);
  void DeleteSpan(Span* s);
  SpanList* ListFor(Span::Location loc, Length n) {
    return loc == Span::kOnNormalFreelist ? &normal_[n] : &returned_[n];
  }
  LargeSet* SetFor(Span::Location loc) {
    return loc == Span::kOnNormalFreelist ? &large_normal_ : &large_returned_;
  }

  // In the LockTable once Static moves it there (base/lock_table.h: fork
  // then copies no page to release it).
  MovableLock lock_;
  PageMap* const pagemap_;
  PageSource* const source_;
  PageHeapOptions options_;
  // Backing state of the run the last Carve took pages from (NewAligned
  // gives its head and tail back in that state).
  Span::Location last_carved_from_ = Span::kOnNormalFreelist;
  ObjectPool<Span> span_pool_;
  SpanList normal_[kMaxListPages + 1];
  SpanList returned_[kMaxListPages + 1];
  LargeSet large_normal_;
  LargeSet large_returned_;
  void* next_hint_ = nullptr;
  uintptr_t lo_ = ~uintptr_t{0}, hi_ = 0;
  BackendStats stats_;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BACKEND_PAGE_HEAP_H_
