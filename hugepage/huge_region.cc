#include "hugepage/huge_region.h"

#include "probes/jsmalloc_probes.h"

namespace jsmalloc {

void HugeRegion::Init(HugePageId first, size_t hugepages, PageSource* source) {
  first_ = first;
  hugepages_ = hugepages;
  source_ = source;
  used_.ClearAll();
  backed_.ClearAll();
  idle_.ClearAll();
  for (auto& u : used_in_hugepage_) u = 0;
  used_pages_ = 0;
  backed_count_ = 0;
  longest_free_ = hugepages * kPagesPerHugePage;
  released_total_ = 0;
}

bool HugeRegion::Alloc(Length n, PageId* page, size_t* newly_backed) {
  const size_t limit = hugepages_ * kPagesPerHugePage;
  if (n > longest_free_) return false;
  size_t at = used_.FindBestFit(n, limit, nullptr);
  if (at >= limit) return false;
  used_.SetRange(at, n);
  used_pages_ += n;
  size_t backed = 0;
  for (size_t p = at; p < at + n;) {
    size_t h = p / kPagesPerHugePage;
    size_t end = (h + 1) * kPagesPerHugePage < at + n ? (h + 1) * kPagesPerHugePage : at + n;
    if (used_in_hugepage_[h] == 0 && !backed_.Get(h)) {
      backed_.SetRange(h, 1);
      ++backed_count_;
      ++backed;
      JSMALLOC_PROBE(hugepage_taken, ProbeAddr(HugePageStart(first_ + h)), 1, ProbeNumaNode());
    }
    idle_.ClearRange(h, 1);
    used_in_hugepage_[h] = static_cast<uint16_t>(used_in_hugepage_[h] + (end - p));
    p = end;
  }
  longest_free_ = used_.LongestFreeRun(limit);
  *page = FirstPageOf(first_) + at;
  *newly_backed = backed;
  return true;
}

void HugeRegion::Free(PageId page, Length n) {
  const size_t limit = hugepages_ * kPagesPerHugePage;
  size_t at = page - FirstPageOf(first_);
  used_.ClearRange(at, n);
  used_pages_ -= n;
  for (size_t p = at; p < at + n;) {
    size_t h = p / kPagesPerHugePage;
    size_t end = (h + 1) * kPagesPerHugePage < at + n ? (h + 1) * kPagesPerHugePage : at + n;
    used_in_hugepage_[h] = static_cast<uint16_t>(used_in_hugepage_[h] - (end - p));
    p = end;
  }
  longest_free_ = used_.LongestFreeRun(limit);
}

size_t HugeRegion::ReleaseIdle(bool all) {
  size_t released = 0;
  for (size_t h = 0; h < hugepages_; ++h) {
    if (used_in_hugepage_[h] != 0 || !backed_.Get(h)) continue;
    if (!all && !idle_.Get(h)) {
      idle_.SetRange(h, 1);
      continue;
    }
    if (source_->Release(HugePageStart(first_ + h), kHugePageSize)) {
      backed_.ClearRange(h, 1);
      idle_.ClearRange(h, 1);
      --backed_count_;
      ++released;
      ++released_total_;
      JSMALLOC_PROBE(hugepage_released, ProbeAddr(HugePageStart(first_ + h)), 1, ProbeNumaNode());
    }
  }
  return released;
}

RegionStats HugeRegion::Stats() const {
  RegionStats s;
  s.hugepages = hugepages_;
  s.backed_hugepages = backed_count_;
  s.used_pages = used_pages_;
  s.free_backed_pages = backed_count_ * kPagesPerHugePage - used_pages_;
  s.released_hugepages_total = released_total_;
  return s;
}

}  // namespace jsmalloc
