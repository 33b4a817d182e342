// The hugepage-aware back-end: routes each request by size to the filler,
// a region or whole hugepages from the hugepage cache, so that the heap sits
// on intact 2 MiB hugepages while memory the program no longer needs still
// goes back to the OS.
//
//   n < 1 hugepage                      -> filler (packed into partly used hugepages;
//                                          spans of small objects and large
//                                          allocations on separate hugepages)
//   n a multiple of a hugepage          -> hugepage cache (whole hugepages)
//   otherwise, n <= region / 4          -> region (packed, no per-allocation slack)
//   otherwise                           -> hugepage cache, and the unused tail of
//                                          the last hugepage is donated to the filler
//
// Dense and sparse memory. Spans of small objects are used densely, so their
// hugepages come from a cache whose address space the kernel backs with
// transparent hugepages on first touch. A large allocation may be touched
// only in part (a 4 MiB buffer of which a request writes the head): faulting
// a whole zeroed 2 MiB hugepage for it would cost time and RSS the program
// does not use. So large allocations (the large-allocation filler, regions,
// whole hugepages) come from a second cache, mapped for base pages, and are
// made hugepages only once they are seen to be dense: PromoteDense, run by
// the background thread, collapses (MADV_COLLAPSE) every hugepage of a live
// large allocation, and every hugepage of the large-allocation filler, whose
// base pages are all resident.
#ifndef JSMALLOC_HUGEPAGE_HUGE_PAGE_AWARE_ALLOCATOR_H_
#define JSMALLOC_HUGEPAGE_HUGE_PAGE_AWARE_ALLOCATOR_H_

#include <atomic>

#include "hugepage/huge_cache.h"
#include "hugepage/huge_page_filler.h"
#include "hugepage/huge_page_map.h"
#include "hugepage/huge_region.h"
#include "backend/page_allocator.h"
#include "base/arena.h"
#include "base/pagemap.h"
#include "base/size_class_table.h"
#include "base/lock_table.h"
#include "base/spinlock.h"

namespace jsmalloc {

struct HugePageAwareOptions {
  ClockFn clock = nullptr;             // monotonic nanoseconds
  size_t cache_grow_hugepages = 64;    // address space mapped at once (128 MiB)
  uint64_t demand_epoch_ns = 1000000000;
  size_t region_hugepages = HugeRegion::kMaxHugePages;
  bool collapse = false;               // MADV_COLLAPSE hugepages refilled after subrelease
  // Large allocations from base-page address space, made hugepages when seen
  // dense (above); false puts them on transparent hugepages from the start.
  bool sparse_large = true;
  // PromoteDense may collapse (THP not "never").
  bool promote_dense = true;
  // The page source advises base-page ranges MADV_NOHUGEPAGE (THP "always"),
  // so a range must be advised MADV_HUGEPAGE before it can be collapsed.
  bool sparse_nohugepage = false;
  // A small heap stays on base pages: the first this many hugepages of
  // small objects are advised MADV_NOHUGEPAGE until the heap needs more, so a
  // process with a few MiB live does not pay 2 MiB per hugepage it touches.
  // Then they are advised MADV_HUGEPAGE (khugepaged collapses them) and the
  // rest of the heap is on hugepages from the start. 0: hugepages at once.
  size_t small_heap_hugepages = 4;
  // Epochs of demand the hugepage caches and the fillers keep backed: free
  // memory goes back once the demand for it has been gone this long (the
  // release delay, JSMALLOC_RELEASE_DELAY). 1 .. HugeCache::kEpochs.
  int cache_window_epochs = 5;
  // Advise subreleased filler hugepages MADV_NOHUGEPAGE (HugePageFiller):
  // on when khugepaged would fill released pages back in (max_ptes_none > 0).
  bool guard_khugepaged = false;
  // Filler pages kept free and backed beyond the recent demand: the larger
  // of this many hugepages' worth and 1/filler_slack_divisor of the pages
  // in use. The rest is subreleased once per demand epoch.
  size_t filler_slack_hugepages = 4;
  size_t filler_slack_divisor = 8;
  uint8_t partition = 0;               // NUMA partition stamped on every span
  // Large allocations on base pages (sparse_large) that were larger, when
  // made, than any freed before go back to the OS as they are freed, as
  // glibc maps a chunk above its mmap threshold and unmaps it on free, then
  // raises the threshold to its size: buffers that grow by doubling then
  // cost their last sizes at the peak, not every size they went through.
  // Sizes at or below the largest freed so far stay backed for reuse (a
  // churn of similar buffers pays no madvise).
  bool release_growing_large = true;
};

// Hugepage accounting for the stats report and the coverage property.
struct HugePageStats {
  FillerStats filler;         // both fillers
  FillerStats small_filler;   // the one for spans of small objects
  FillerStats sparse_filler;  // the one for large allocations and donated tails
  HugeCacheStats cache;         // both caches
  HugeCacheStats dense_cache;   // hugepages for small objects' spans
  HugeCacheStats sparse_cache;  // base-page memory for large allocations
  RegionStats regions;  // summed over regions
  size_t region_count = 0;
  size_t large_hugepages = 0;        // whole hugepages held by large allocations
  // release_growing_large: frees released at once, their bytes, and the
  // size a freed large allocation must exceed to be released.
  size_t growth_releases = 0, growth_released_bytes = 0, growth_threshold_bytes = 0;
  size_t donated_large_allocs = 0;
  size_t collapses = 0, collapse_failures = 0;
  // PromoteDense: hugepages of large allocations collapsed because they were
  // dense, collapses the kernel refused, and large allocations found sparse.
  size_t promoted_hugepages = 0, promote_failures = 0, sparse_checks = 0;
  size_t small_heap_hugepages = 0;  // base-page zone of a small heap (0 once outgrown)
};

class HugePageAwareAllocator final : public PageAllocator {
 public:
  // The most pages a span of small objects has. Such spans are looked up from
  // any object inside them, so the pagemap maps every page; longer spans hold
  // one large allocation, looked up only by its first page (free, realloc,
  // malloc_usable_size), so only their first and last pages are recorded:
  // writing all 1024 entries of an 8 MiB span on every malloc and free would
  // cost more than the rest of the allocation. Interior entries stay null, so
  // freeing a pointer inside a large block is still caught as invalid.
  static constexpr Length kMaxObjectSpanPages = [] {
    Length m = 0;
    for (int cl = 1; cl < kNumClasses; ++cl) {
      if (kSizeClasses.info[cl].pages > m) m = kSizeClasses.info[cl].pages;
    }
    return m;
  }();

  HugePageAwareAllocator(PageMap* pagemap, PageSource* source, MetadataArena* arena,
                         const HugePageAwareOptions& options);

  Span* New(Length n) override;
  Span* NewAligned(Length n, Length align_pages) override;
  void Delete(Span* span) override;
  size_t ReleaseAtLeast(size_t bytes) override;
  BackendStats Stats() override;
  size_t BackedBytes() override;
  void Print(Printer* out) override;
  const char* Name() const override { return "hugepage-aware"; }
  // Guarded by `lock` from now on; only before first use.
  void UseLock(SpinLock* lock) { lock_.MoveTo(lock); }
  void LockForFork() override { lock_->Lock(); }
  void UnlockAfterFork(bool child) override {
    if (child) lock_->ResetAfterFork();
    else lock_->Unlock();
  }

  // Releases what the hugepage cache's demand policy no longer needs
  // (called on frees at most once per epoch, and by the background thread).
  size_t ReleaseExcess();
  // Subreleases up to `bytes` of free pages inside partly used hugepages.
  size_t SubRelease(size_t bytes);
  // Collapses into transparent hugepages the hugepages of live large
  // allocations whose base pages are all resident, then the hugepages of the
  // large-allocation filler that are all resident (at most max_hugepages
  // checks in one call; memory found sparse is looked at again later, less
  // and less often). Called by the background thread once per cycle; the
  // collapses run outside the back-end's lock. Returns hugepages collapsed.
  size_t PromoteDense(size_t max_hugepages);
  // While a background thread calls ReleaseExcess every cycle, frees leave
  // it to that thread (no madvise on a program's free path).
  void SetBackgroundRelease(bool on) { background_release_.store(on, std::memory_order_relaxed); }
  void WaitForDeferredFrees() override;
  HugePageStats HugeStats();
  // Snapshot for the coverage property: every hugepage holding in-use pages
  // with its in-use byte count, into out[0..max). Returns how many there are
  // (which may exceed max: call again with a larger buffer).
  struct UsedHugePage {
    HugePageId hugepage;
    size_t used_bytes;
  };
  size_t UsedHugePages(UsedHugePage* out, size_t max);

 private:
  Span* NewLocked(Length n);
  Span* AllocSmall(Length n, bool sparse);
  Span* AllocWhole(Length n);
  Span* AllocRegion(Length n);
  Span* AllocDonating(Length n);
  Span* MakeSpan(PageId first, Length n, Span::Origin origin);
  // release: the freed pages go back to the OS at once (MarkGrowing).
  void FreeSmall(PageId p, Length n, bool release = false);
  void ReturnTracker(PageTracker* t, bool release = false);
  // options_.release_growing_large: marks a new large allocation on base
  // pages larger than any freed so far to be released when it is freed.
  Span* MarkGrowing(Span* s);
  Span* NewAlignedLocked(Length n, Length align_pages);
  HugeRegion* RegionOf(PageId p);
  HugePageFiller& FillerOf(const PageTracker* t) { return t->sparse() ? sparse_filler_ : filler_; }
  // Large allocations' memory (see "Dense and sparse memory").
  HugeCache& LargeCache() { return options_.sparse_large ? sparse_cache_ : cache_; }
  HugeCache& CacheFor(bool sparse) { return sparse ? LargeCache() : cache_; }
  // cache.Get, and when it hands out fresh hugepages, releases as many backed
  // free ones of the other cache as its own could not (RSS stays flat).
  bool TakeHugepages(HugeCache& cache, size_t count, HugePageId* h, size_t* backed);
  void DeleteLocked(Span* span);
  void ReturnSpanPages(Span* span);
  void AddLargeSpan(Span* s);
  bool CollapseSparse(char* hp, bool keep_advice);  // MADV_COLLAPSE of base-page memory
  void PromoteDenseFiller(size_t max_checks, size_t max_collapses, size_t* checked, size_t* collapsed,
                          size_t* failed);
  size_t FillerUsedPages() const { return filler_.used_pages() + sparse_filler_.used_pages(); }
  FillerStats FillerStatsLocked() const;
  HugeCacheStats CacheStatsLocked() const;  // both caches
  Length SubReleaseBoth(Length pages);
  void MaybeCollapse(PageTracker* t);
  size_t ReleaseExcessLocked();

  // In the LockTable once Static moves it there (base/lock_table.h: fork
  // then copies no page to release it).
  MovableLock lock_;
  std::atomic<bool> background_release_{false};
  std::atomic<bool> promote_in_flight_{false};  // PromoteDense holds a span outside the lock
  PageMap* pagemap_;
  PageSource* source_;
  HugePageAwareOptions options_;
  HugePageFiller filler_;         // spans of small objects
  HugePageFiller sparse_filler_;  // large allocations under a hugepage, donated tails
  HugeCache cache_;         // dense: hugepages of small objects' spans
  HugeCache sparse_cache_;  // base pages: large allocations (options_.sparse_large)
  HugePageMap<PageTracker> trackers_;
  IntrusiveList<HugeRegion> regions_;
  SpanList large_spans_;  // spans from the cache (whole hugepages), for coverage
  ObjectPool<Span> span_pool_;
  ObjectPool<PageTracker> tracker_pool_;
  ObjectPool<HugeRegion> region_pool_;
  BackendStats stats_;  // in_use_bytes, spans_in_use, released_total
  size_t region_count_ = 0;
  size_t large_hugepages_ = 0;
  size_t donated_large_ = 0;
  // Pages past the end of large allocations rounded up to whole hugepages of
  // base-page memory: address space only, counted as not backed.
  size_t large_slack_pages_ = 0;
  size_t growth_threshold_pages_ = 0;  // MarkGrowing: the largest released so far
  size_t growth_releases_ = 0, growth_released_pages_ = 0;
  size_t collapses_ = 0, collapse_failures_ = 0;
  size_t promoted_hugepages_ = 0, promote_failures_ = 0, sparse_checks_ = 0;
  uint32_t promote_cycle_ = 0;  // PromoteDense calls so far (its clock)
  // options_.small_heap_hugepages: where the base-page zone starts (0 until
  // the first hugepage of small objects is taken), and whether the heap has
  // outgrown it.
  HugePageId small_zone_ = 0;
  bool small_zone_done_ = false;
  void NoteSmallHeapHugepage(HugePageId h);
  uint64_t last_region_sweep_ns_ = 0;
  // Peak filler pages in use in each of the last demand_epochs_ epochs (the
  // release delay; the current one in demand_slot_): the filler keeps free what that demand
  // could take back, and subreleases the rest (SubReleaseBeyondDemand).
  static constexpr int kMaxDemandEpochs = HugeCache::kEpochs;
  int demand_epochs_;
  size_t filler_peak_used_[kMaxDemandEpochs] = {};
  int demand_slot_ = 0;
  size_t filler_demand_released_ = 0;  // pages, cumulative
  size_t SubReleaseBeyondDemandLocked();
};

}  // namespace jsmalloc

#endif  // JSMALLOC_HUGEPAGE_HUGE_PAGE_AWARE_ALLOCATOR_H_
