// The pages of one hugepage held by the filler: which are in use, which were
// released to the OS, and the longest free run (what the filler sorts on).
#ifndef JSMALLOC_HUGEPAGE_PAGE_TRACKER_H_
#define JSMALLOC_HUGEPAGE_PAGE_TRACKER_H_

#include "base/intrusive_head_list.h"
#include "hugepage/huge_pages.h"

namespace jsmalloc {

class PageTracker : public HeadListLinks {
 public:
  void Init(HugePageId hp, bool donated) {
    hp_ = hp;
    used_.ClearAll();
    released_.ClearAll();
    idle_.ClearAll();
    used_count_ = 0;
    released_count_ = 0;
    idle_count_ = 0;
    longest_free_ = kPagesPerHugePage;
    donated_ = donated;
    ever_released_ = false;
    no_thp_ = false;
    sparse_ = false;
    promote_ = kUnchecked;
    promote_check_at = 0;
    promote_backoff = 0;
    return_pending = false;
  }

  HugePageId hugepage() const { return hp_; }
  Length used() const { return used_count_; }
  Length free() const { return kPagesPerHugePage - used_count_; }
  Length longest_free() const { return longest_free_; }
  Length released() const { return released_count_; }
  bool donated() const { return donated_; }
  // Subreleased at some point since it was last whole: the kernel split its
  // transparent hugepage, so it is "broken" until collapsed again.
  bool broken() const { return ever_released_; }
  void MarkWhole() { ever_released_ = false; }
  // Advised MADV_NOHUGEPAGE by the filler while it has released pages.
  bool no_thp() const { return no_thp_; }
  void set_no_thp(bool v) { no_thp_ = v; }
  // Held by the back-end's filler for large allocations, not small spans.
  bool sparse() const { return sparse_; }
  void set_sparse(bool v) { sparse_ = v; }
  // PromoteDense's state for a hugepage of large allocations: collapsed into
  // a transparent hugepage because all of it was resident (kDense, until a
  // subrelease splits it), being collapsed outside the back-end's lock
  // (kCollapsing: not subreleased, and not handed back to the cache if it
  // empties meanwhile), or neither.
  enum Promote : uint8_t { kUnchecked, kCollapsing, kDense };
  Promote promote() const { return promote_; }
  void set_promote(Promote p) { promote_ = p; }
  bool empty() const { return used_count_ == 0; }
  bool full() const { return used_count_ == kPagesPerHugePage; }

  // Marks n pages used (best fit); returns the index of the first page, and
  // in *was_released how many of them had been released to the OS.
  Length Alloc(Length n, Length* was_released) {
    size_t longest;
    size_t at = used_.FindBestFit(n, kPagesPerHugePage, &longest);
    MarkUsed(at, n, was_released);
    return at;
  }
  // Marks a given range used (a donated tail's head, or tests).
  void MarkUsed(Length index, Length n, Length* was_released) {
    used_.SetRange(index, n);
    idle_.ClearRange(index, n);
    used_count_ += n;
    Length r = released_.CountSet(index, n);
    if (r > 0) {
      released_.ClearRange(index, n);
      released_count_ -= r;
    }
    if (was_released != nullptr) *was_released = r;
    longest_free_ = used_.LongestFreeRun(kPagesPerHugePage);
  }
  void Free(Length index, Length n) {
    used_.ClearRange(index, n);
    used_count_ -= n;
    longest_free_ = used_.LongestFreeRun(kPagesPerHugePage);
  }
  bool IsUsed(Length index) const { return used_.Get(index); }

  // Calls f(index, length) for each free run that is still backed, and marks
  // it released if f returns true (the OS took it; a refused release leaves
  // the pages backed and counted so). Returns the pages marked.
  template <typename F>
  Length ReleaseFree(F f) {
    return ReleaseRange(0, kPagesPerHugePage, f);
  }
  // The same within [index, index + n) (a large allocation's pages,
  // released as it is freed).
  template <typename F>
  Length ReleaseRange(Length index, Length n, F f) {
    Length total = 0;
    ForEachFreeBackedRun(index, index + n, [&](size_t a, size_t len) {
      if (f(a, len)) total += MarkReleased(a, len);
    });
    released_count_ += total;
    if (total > 0) Broke();
    return total;
  }

  // Ageing for the demand-driven subrelease: a page is idle if it has been
  // free and backed since the last MarkIdle. ReleaseIdle calls f(index,
  // length) for idle runs, at most `max` pages, and marks them released like
  // ReleaseFree (a refused run stays idle); pages freed since the last
  // MarkIdle (a long run that the churn frees and takes again within the
  // epoch) are left alone.
  template <typename F>
  Length ReleaseIdle(Length max, F f) {
    Length total = 0;
    size_t i = 0;
    while (i < kPagesPerHugePage && total < max) {
      size_t a = idle_.Find(i, true, kPagesPerHugePage);
      if (a >= kPagesPerHugePage) break;
      size_t b = idle_.Find(a, false, kPagesPerHugePage);
      if (b - a > max - total) b = a + (max - total);
      if (f(a, b - a)) total += MarkReleased(a, b - a);
      i = b;
    }
    released_count_ += total;
    if (total > 0) Broke();
    return total;
  }
  // Starts a new age: every free, backed page is idle from now on.
  void MarkIdle() {
    idle_.ClearAll();
    ForEachFreeBackedRun(0, kPagesPerHugePage, [&](size_t a, size_t n) { idle_.SetRange(a, n); });
    idle_count_ = idle_.CountSet(0, kPagesPerHugePage);
  }
  // Idle pages as of the last MarkIdle (an upper bound after allocations).
  Length idle_hint() const { return idle_count_; }

  // Filler bookkeeping: which list the tracker is on.
  uint16_t list_group = 0;
  uint16_t list_chunk = 0;
  uint16_t list_longest = 0;
  bool on_list = false;
  // PromoteDense bookkeeping (the back-end's, under its lock): the cycle from
  // which to look at this hugepage again, the back-off after a sparse check,
  // and whether it emptied while being collapsed.
  uint32_t promote_check_at = 0;
  uint8_t promote_backoff = 0;
  bool return_pending = false;

 private:
  // f(index, length) for each run of pages in [from, limit) that are free
  // and not released.
  template <typename F>
  void ForEachFreeBackedRun(size_t from, size_t limit, F f) const {
    used_.ForEachFreeRun(from, limit, [&](size_t start, size_t len) {
      size_t i = start, end = start + len;
      while (i < end) {
        size_t a = released_.Find(i, false, end);
        if (a >= end) break;
        size_t b = released_.Find(a, true, end);
        f(a, b - a);
        i = b;
      }
    });
  }
  // Pages went back to the OS: the kernel split the transparent hugepage.
  void Broke() {
    ever_released_ = true;
    if (promote_ == kDense) promote_ = kUnchecked;
  }
  Length MarkReleased(size_t a, size_t n) {
    released_.SetRange(a, n);
    idle_.ClearRange(a, n);
    return n;
  }

  HugePageId hp_ = 0;
  Bitmap<kPagesPerHugePage> used_;
  Bitmap<kPagesPerHugePage> released_;
  Bitmap<kPagesPerHugePage> idle_;
  Length idle_count_ = 0;
  Length used_count_ = 0;
  Length released_count_ = 0;
  Length longest_free_ = kPagesPerHugePage;
  bool donated_ = false;
  bool ever_released_ = false;
  bool no_thp_ = false;
  bool sparse_ = false;
  Promote promote_ = kUnchecked;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_HUGEPAGE_PAGE_TRACKER_H_
