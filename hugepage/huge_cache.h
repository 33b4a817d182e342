// Free whole hugepages, kept for reuse, plus the address space behind them.
//
// Ranges of free hugepages are either backed (touched, probably a
// transparent hugepage already) or unbacked (never touched or released).
// Requests take the best-fitting backed range first; failing that, the
// window of free hugepages with the most backed ones, across adjacent backed
// and unbacked ranges, so backed hugepages are not stranded beside the
// fresh ones a request takes. When nothing is long enough, the cache maps
// more address space from the OS in large 2 MiB-aligned steps, extending the
// free stretch at its top when it can.
//
// Release policy (demand-based): the cache tracks how many hugepages were
// taken out of it at the peak of each recent interval (the window: a few
// epochs). It keeps enough backed hugepages to go back to the recent peak and
// releases the rest, at most once per epoch, so a program that cycles between
// peaks does not fault its memory in again and again while one that shrank
// for good gives it back once the window has passed.
//
// A cache maps address space for one kind of memory (PageSource::Map's
// `dense`): the back-end keeps one for hugepages of small objects, which the
// kernel backs with transparent hugepages, and one for large allocations,
// which start on base pages.
#ifndef JSMALLOC_HUGEPAGE_HUGE_CACHE_H_
#define JSMALLOC_HUGEPAGE_HUGE_CACHE_H_

#include "hugepage/huge_pages.h"
#include "backend/page_allocator.h"
#include "base/sorted_array.h"

namespace jsmalloc {

struct HugeCacheStats {
  size_t mapped_hugepages = 0;     // address space obtained from the OS
  size_t backed_free = 0;          // free hugepages, backed
  size_t unbacked_free = 0;        // free hugepages, released or untouched
  size_t in_use = 0;               // hugepages handed out and not returned
  size_t hits = 0;                 // requests served with backed hugepages
  size_t misses = 0;               // requests served with unbacked ones
  size_t released_hugepages = 0;   // cumulative
  size_t demand_limit = 0;         // backed hugepages the policy keeps now
  size_t free_ranges = 0;

  HugeCacheStats& operator+=(const HugeCacheStats& o) {
    mapped_hugepages += o.mapped_hugepages;
    backed_free += o.backed_free;
    unbacked_free += o.unbacked_free;
    in_use += o.in_use;
    hits += o.hits;
    misses += o.misses;
    released_hugepages += o.released_hugepages;
    demand_limit += o.demand_limit;
    free_ranges += o.free_ranges;
    return *this;
  }
};

using ClockFn = uint64_t (*)();

class HugeCache {
 public:
  static constexpr int kEpochs = 16;

  // grow_hugepages: smallest address-space growth. epoch_ns: length of one
  // demand interval; window_epochs (1..kEpochs) of them make the window.
  // dense: what the address space is mapped for (PageSource::Map).
  HugeCache(PageSource* source, ClockFn clock, size_t grow_hugepages, uint64_t epoch_ns, bool dense,
            int window_epochs = kEpochs);

  // `count` contiguous free hugepages, *backed of them backed: the
  // best-fitting backed range, else the window of free hugepages (across
  // backed and unbacked ranges) with the most backed ones, else grown
  // address space. False when the OS refuses more address space.
  bool Get(size_t count, HugePageId* first, size_t* backed);
  // Returns a range (backed: its pages may be resident).
  void Put(HugePageId first, size_t count, bool backed);
  // Releases backed free hugepages above what recent demand needs; returns
  // hugepages released. Cheap when called more than once per epoch.
  size_t ReleaseExcess();
  // Releases up to `count` backed free hugepages regardless of demand.
  size_t ReleaseAtLeast(size_t count);

  HugeCacheStats Stats() const;
  size_t backed_free() const { return backed_free_; }

 private:
  struct Range {
    HugePageId first;
    size_t count;
    bool backed;
  };
  struct ByFirst {
    bool operator()(const Range& a, const Range& b) const { return a.first < b.first; }
  };
  using RangeSet = SortedArray<Range, ByFirst>;

  void Insert(HugePageId first, size_t count, bool backed);  // coalescing
  Range* BestBackedRange(size_t count);
  bool BestWindow(size_t count, HugePageId* start, size_t* backed) const;
  void TakeWindow(HugePageId start, size_t count);
  bool Grow(size_t count);
  size_t ReleaseRange(Range* r, size_t max);
  void NoteDemand();
  size_t DemandLimit() const;

  PageSource* source_;
  ClockFn clock_;
  size_t grow_hugepages_;
  uint64_t epoch_ns_;
  bool dense_;
  int window_;
  RangeSet free_;
  void* next_hint_ = nullptr;
  size_t mapped_ = 0, backed_free_ = 0, unbacked_free_ = 0, in_use_ = 0;
  size_t hits_ = 0, misses_ = 0, released_ = 0;
  // Peak of in_use_ in each of the last kEpochs epochs (ring).
  size_t peaks_[kEpochs] = {};
  uint64_t epoch_ = 0;
  uint64_t last_release_epoch_ = ~uint64_t{0};
};

}  // namespace jsmalloc

#endif  // JSMALLOC_HUGEPAGE_HUGE_CACHE_H_
