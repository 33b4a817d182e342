// A large run of hugepages carved into pages, for allocations of one
// hugepage or more that do not end on a hugepage boundary (a few MiB up to a
// quarter of the region). Packing them back to back wastes no slack per
// allocation, which a whole-hugepage allocation would. A hugepage of the
// region that no allocation uses any more stays backed for reuse until
// ReleaseIdle finds it still unused one sweep later (the back-end sweeps once
// per demand interval), or until memory must be returned; programs that churn
// large blocks then do not fault the same memory in again and again.
#ifndef JSMALLOC_HUGEPAGE_HUGE_REGION_H_
#define JSMALLOC_HUGEPAGE_HUGE_REGION_H_

#include "hugepage/huge_pages.h"
#include "backend/page_allocator.h"

namespace jsmalloc {

struct RegionStats {
  size_t hugepages = 0;          // hugepages spanned
  size_t backed_hugepages = 0;   // hugepages currently backed
  size_t used_pages = 0;
  size_t free_backed_pages = 0;  // free pages inside backed hugepages
  size_t released_hugepages_total = 0;
};

class HugeRegion : public IntrusiveLinks {
 public:
  static constexpr size_t kMaxHugePages = 512;  // 1 GiB
  static constexpr size_t kMaxPages = kMaxHugePages * kPagesPerHugePage;

  // `hugepages` <= kMaxHugePages, from the hugepage cache (unbacked).
  void Init(HugePageId first, size_t hugepages, PageSource* source);

  // n pages, best fit; false if no run fits. *newly_backed: hugepages that
  // had to be backed again for it.
  bool Alloc(Length n, PageId* page, size_t* newly_backed);
  // Frees a run. Hugepages it leaves unused stay backed (see ReleaseIdle).
  void Free(PageId page, Length n);
  // Releases backed hugepages that no allocation uses: all of them, or
  // (all == false) those already unused at the previous sweep, marking the
  // others for the next one. Returns hugepages released.
  size_t ReleaseIdle(bool all);

  bool Contains(PageId p) const {
    return p >= FirstPageOf(first_) && p < FirstPageOf(first_ + hugepages_);
  }
  bool empty() const { return used_pages_ == 0; }
  HugePageId first_hugepage() const { return first_; }
  size_t hugepages() const { return hugepages_; }
  size_t used_pages() const { return used_pages_; }
  size_t longest_free() const { return longest_free_; }
  size_t UsedBytesIn(size_t hugepage_index) const {
    return static_cast<size_t>(used_in_hugepage_[hugepage_index]) << kPageShift;
  }
  RegionStats Stats() const;

 private:
  HugePageId first_ = 0;
  size_t hugepages_ = 0;
  PageSource* source_ = nullptr;
  Bitmap<kMaxPages> used_;
  uint16_t used_in_hugepage_[kMaxHugePages] = {};
  Bitmap<kMaxHugePages> backed_;
  Bitmap<kMaxHugePages> idle_;  // unused at the last sweep
  size_t used_pages_ = 0;
  size_t backed_count_ = 0;
  size_t longest_free_ = 0;
  size_t released_total_ = 0;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_HUGEPAGE_HUGE_REGION_H_
