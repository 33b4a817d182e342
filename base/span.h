// A span is a run of contiguous pages: either free in the page heap, holding
// one large allocation, or carved into objects of one size class.
#ifndef JSMALLOC_BASE_SPAN_H_
#define JSMALLOC_BASE_SPAN_H_

#include <cstddef>
#include <cstdint>

#include "base/config.h"
#include "base/intrusive_list.h"

namespace jsmalloc {

struct SampledAllocation;  // runtime/sample_records.h

// In a list (SpanList), a span is linked through its IntrusiveLinks base. A
// list's head is only links: with whole Spans as sentinels, a central free
// list's eight bucket heads took 576 bytes, written for all 96 classes at
// start-up (~45 KiB of every process's RSS, however small).
struct Span : IntrusiveLinks {
  enum Location : uint8_t { kInUse = 0, kOnNormalFreelist = 1, kOnReturnedFreelist = 2 };

  PageId first_page = 0;
  Length num_pages = 0;

  // Small-object spans: free objects returned to this span (linked through
  // their first word), plus a bump index for objects never handed out, so a
  // fresh span does not touch (and fault in) pages it has not used yet.
  // Large allocations in the hugepage-aware back-end use it as a number: the
  // first hugepage PromoteDense has not collapsed yet (see below).
  void* freelist = nullptr;
  // Small-object spans: objects outside the span, objects ever handed out.
  // Large allocations in the hugepage-aware back-end (sizeclass 0) reuse the
  // two for HugePageAwareAllocator::PromoteDense: the cycle at which it looks
  // at the span next, and its current back-off in cycles.
  uint32_t allocated = 0;
  uint32_t carved = 0;

  // Small-object spans: system pages (4 KiB, bit i = page i of the span)
  // that malloc_trim released because every object on them was free
  // (CentralFreeList::ReleaseFreePages). Those objects are off the free
  // list until the span runs out of others.
  uint64_t released_pages = 0;

  uint8_t sizeclass = 0;  // 0: large allocation or free run
  Location location = kInUse;
  uint8_t bucket = 0;          // central free list occupancy bucket
  bool in_large_set = false;   // page heap: held in the ordered set, not a list
  // Hugepage-aware back-end: which component the pages came from.
  enum Origin : uint8_t { kFromFiller = 0, kFromRegion = 1, kFromCache = 2, kFromCacheDonated = 3 };
  Origin origin = kFromFiller;
  // NUMA partition whose back-end owns the pages (0 without partitions): a
  // free goes home to it, and a page heap never coalesces across it.
  uint8_t partition = 0;
  // Large allocations, PromoteDense: the background thread is collapsing the
  // span's hugepages (a free meanwhile only parks it), or has found it dense.
  enum Promote : uint8_t { kUnchecked = 0, kCollapsing = 1, kFreePending = 2, kDense = 3 };
  Promote promote = kUnchecked;
  // Hugepage-aware back-end, large allocations: released to the OS when
  // freed (HugePageAwareOptions::release_growing_large).
  bool release_on_free = false;
  // Non-null while the span holds one sampled allocation (its record): the
  // sampler gives every sampled allocation a span of its own, and FreeSlow
  // hands the record back before the span returns to the back-end.
  SampledAllocation* sample = nullptr;

  void* start() const { return PageStart(first_page); }
  PageId last_page() const { return first_page + num_pages - 1; }
  size_t bytes() const { return num_pages << kPageShift; }
};

using SpanList = IntrusiveList<Span>;

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_SPAN_H_
