// Hugepages that are partly in use. Small page runs (less than a hugepage)
// are packed into them so that as few hugepages as possible are touched and
// whole hugepages empty out and go back to the hugepage cache.
//
// Placement: among hugepages that have a free run long enough, prefer ones
// that were never subreleased (their transparent hugepage is intact), then
// the most used (so lightly used hugepages drain), then the shortest
// longest-free-run that fits (best fit, so long runs stay available).
//
// Subrelease (MADV_DONTNEED of free pages inside a hugepage that is still
// partly used) breaks the hugepage, so it is sparing: SubRelease when memory
// must be returned (a memory limit, malloc_trim, the release API, the
// release rate), SubReleaseIdle for what the back-end's demand policy finds
// beyond recent demand, and then only pages free for a whole epoch. Both
// take the least used hugepages first.
//
// The back-end keeps two fillers, one for spans of small objects and one for
// large allocations (HugePageAwareAllocator::NewLocked says why).
//
// khugepaged: with its default max_ptes_none (511) it collapses any range of
// an MADV_HUGEPAGE mapping that has one page present, filling the released
// pages with fresh zeroed memory. The process's RSS then grows back while
// the filler counts those pages as released. So, when the kernel would do
// that, a hugepage is advised MADV_NOHUGEPAGE before its first page is
// subreleased, and MADV_HUGEPAGE again once no page of it is released (it
// became fully backed again, or it empties and leaves the filler).
#ifndef JSMALLOC_HUGEPAGE_HUGE_PAGE_FILLER_H_
#define JSMALLOC_HUGEPAGE_HUGE_PAGE_FILLER_H_

#include "backend/page_allocator.h"
#include "hugepage/page_tracker.h"

namespace jsmalloc {

struct FillerStats {
  size_t hugepages = 0;       // hugepages held
  size_t full = 0;            // every page in use
  size_t intact_partial = 0;  // partly used, never subreleased
  size_t broken = 0;          // subreleased since last whole
  size_t donated = 0;         // tails of large allocations
  size_t used_pages = 0;
  size_t free_pages = 0;      // free and backed
  size_t released_pages = 0;  // free and released to the OS
  size_t subreleased_total_pages = 0;
  size_t refaulted_total_pages = 0;  // released pages allocated again
  size_t used_pages_on_intact = 0;  // used pages on hugepages never broken
  size_t no_thp = 0;          // advised MADV_NOHUGEPAGE now (released pages)
  size_t no_thp_refused = 0;  // subreleased without that advice (refused or over the cap)

  FillerStats& operator+=(const FillerStats& o) {
    hugepages += o.hugepages;
    full += o.full;
    intact_partial += o.intact_partial;
    broken += o.broken;
    donated += o.donated;
    used_pages += o.used_pages;
    free_pages += o.free_pages;
    released_pages += o.released_pages;
    subreleased_total_pages += o.subreleased_total_pages;
    refaulted_total_pages += o.refaulted_total_pages;
    used_pages_on_intact += o.used_pages_on_intact;
    no_thp += o.no_thp;
    no_thp_refused += o.no_thp_refused;
    return *this;
  }
};

class HugePageFiller {
 public:
  static constexpr int kChunks = 8;

  // At most this many hugepages are advised MADV_NOHUGEPAGE at once: each
  // can split the heap's mapping (two more VMAs at worst), and the kernel
  // caps a process's VMAs (vm.max_map_count, 65530 by default).
  static constexpr size_t kMaxNoThp = 4096;

  // guard_khugepaged: advise subreleased hugepages MADV_NOHUGEPAGE (above).
  explicit HugePageFiller(PageSource* source, bool guard_khugepaged = false)
      : source_(source), guard_khugepaged_(guard_khugepaged) {}

  // n < kPagesPerHugePage. Returns the tracker and sets *page, or nullptr if
  // no hugepage held here has a free run of n pages.
  PageTracker* TryAlloc(Length n, PageId* page, Length* was_released);
  // Takes a new (empty) tracker and allocates n pages in it.
  PageId AllocFromNew(PageTracker* t, Length n);
  // Takes the tail hugepage of a large allocation whose first `used` pages
  // belong to it.
  void AddDonated(PageTracker* t, Length used);
  // Frees n pages at `page`. Returns true when the hugepage became empty: it
  // has been removed from the filler and the caller owns the tracker.
  bool Free(PageTracker* t, PageId page, Length n);
  // Called for a tracker Free handed back, after its hugepage was released
  // whole: lets the kernel use a transparent hugepage there again.
  void ForgetTracker(PageTracker* t);
  // Releases up to `desired` free backed pages, least used hugepages first.
  // Returns pages released.
  Length SubRelease(Length desired);
  // The same, but only pages that have stayed free since the last MarkIdle
  // (see PageTracker::ReleaseIdle), so pages the churn takes back within an
  // epoch are not released only to be faulted in again.
  Length SubReleaseIdle(Length desired);
  // Releases the free, backed pages of [page, page + n) in t, a range just
  // freed by Free (t still partly used). Returns pages released.
  Length ReleaseFreed(PageTracker* t, PageId page, Length n);
  // Starts a new age on every hugepage: what is free and backed now is idle.
  void MarkIdle();

  FillerStats Stats() const;
  template <typename F>
  void ForEachTracker(F f) const {
    if (lists_ == nullptr) return;
    for (int g = 0; g < 2; ++g)
      for (int c = 0; c < kChunks; ++c) ForEachIn(g, c, 0, f);
  }
  size_t free_backed_pages() const { return free_backed_pages_; }
  size_t used_pages() const { return used_pages_; }
  size_t released_pages() const { return released_pages_; }

 private:
  int GroupOf(const PageTracker* t) const { return t->broken() ? 1 : 0; }
  int ChunkOf(const PageTracker* t) const {
    return static_cast<int>((t->used() * kChunks) / (kPagesPerHugePage + 1));
  }
  void Insert(PageTracker* t);
  void Remove(PageTracker* t);
  void AllowThp(PageTracker* t);
  Length SubReleaseFrom(Length desired, bool idle_only);
  // Releases what `how` picks in t (t off its list meanwhile): the khugepaged
  // guard, the probe and the counters. how(release) returns pages marked.
  template <typename How>
  Length ReleaseOn(PageTracker* t, How how);

  PageSource* source_;
  bool guard_khugepaged_;
  size_t no_thp_ = 0;
  size_t no_thp_refused_ = 0;
  // lists_[group][chunk][longest free run], 33 KiB with 8 KiB pages: from
  // the metadata arena on first use, zeroed by the kernel (an all-zero
  // HeadList is empty), so a small heap touches only the lists it uses.
  // One-pointer heads: a hugepage filling up visits ~150 lists over 5
  // chunks; at half the size they fall on fewer pages (small_process: 4-8
  // KiB less metadata RSS).
  using Lists = HeadList<PageTracker>[2][kChunks][kPagesPerHugePage + 1];
  Lists* lists_ = nullptr;
  HeadList<PageTracker>& ListAt(int g, int c, Length l) const { return (*lists_)[g][c][l]; }
  // Bit l set: list (g, c, l) holds trackers.
  Bitmap<kPagesPerHugePage + 1> nonempty_[2][kChunks];
  // Calls f(tracker) on the lists (g, c, l) for l >= from, non-empty ones
  // only (the rest are not read: a small heap's untouched lists stay
  // unmapped). f may remove the tracker it is given, but not insert one.
  template <typename F>
  void ForEachIn(int g, int c, Length from, F f) const {
    for (size_t l = nonempty_[g][c].Find(from, true, kPagesPerHugePage + 1); l <= kPagesPerHugePage;
         l = nonempty_[g][c].Find(l + 1, true, kPagesPerHugePage + 1)) {
      ListAt(g, c, l).ForEach(f);
    }
  }
  size_t hugepages_ = 0;
  size_t used_pages_ = 0;
  size_t free_backed_pages_ = 0;
  size_t released_pages_ = 0;
  size_t subreleased_total_ = 0;
  size_t refaulted_total_ = 0;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_HUGEPAGE_HUGE_PAGE_FILLER_H_
