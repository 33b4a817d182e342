// Spans of one size class and the objects free inside them. Serves batches
// to the transfer cache and takes batches back; asks the back-end for new
// spans and gives empty ones back.
#ifndef JSMALLOC_CACHES_CENTRAL_FREE_LIST_H_
#define JSMALLOC_CACHES_CENTRAL_FREE_LIST_H_

#include <cstddef>

#include "backend/page_allocator.h"
#include "base/pagemap.h"
#include "base/lock_table.h"
#include "base/spinlock.h"

namespace jsmalloc {

struct CentralStats {
  size_t spans = 0;
  size_t live_objects = 0;    // objects outside the spans (caches + app)
  size_t free_objects = 0;    // objects inside spans, including never carved
  size_t free_bytes = 0;      // free_objects * size + unusable span tails
  size_t spans_created = 0;   // cumulative
  size_t spans_released = 0;  // cumulative
  size_t objects_rehomed = 0;  // objects of another partition passed home
  size_t released_bytes = 0;   // of free_bytes: system pages released by ReleaseFreePages
  size_t idle_laps = 0;        // walks ReleaseFreePagesIfIdle made (cumulative)

  // Sums (a class over NUMA partitions).
  CentralStats& operator+=(const CentralStats& o) {
    released_bytes += o.released_bytes;
    spans += o.spans;
    live_objects += o.live_objects;
    free_objects += o.free_objects;
    free_bytes += o.free_bytes;
    spans_created += o.spans_created;
    spans_released += o.spans_released;
    objects_rehomed += o.objects_rehomed;
    idle_laps += o.idle_laps;
    return *this;
  }
};

class CentralFreeList {
 public:
  // Spans are bucketed by how full they are; allocation takes from the
  // fullest, so lightly used spans drain and return to the back-end.
  static constexpr int kBuckets = 8;

  // The occupancy bucket of a span with `allocated` of its objects in use,
  // allocated * kBuckets / objects, by a multiplication: the free path's
  // batches compute it per span they touch, and a division was a quarter of
  // their cost. mul = BucketMultiplier(objects); exact while
  // kBuckets * objects^2 < 2^kBucketShift (Init checks it): the product's
  // error is below allocated * kBuckets / 2^kBucketShift < 1 / objects.
  static constexpr int kBucketShift = 44;
  static constexpr uint64_t BucketMultiplier(uint32_t objects) {
    return ((uint64_t{1} << kBucketShift) / objects) + 1;
  }
  static constexpr int Bucket(uint32_t allocated, uint64_t mul) {
    return static_cast<int>((uint64_t{allocated} * kBuckets * mul) >> kBucketShift);
  }

  CentralFreeList() = default;
  CentralFreeList(const CentralFreeList&) = delete;
  CentralFreeList& operator=(const CentralFreeList&) = delete;

  void Init(int sizeclass, size_t object_size, Length pages_per_span, PageAllocator* pages,
            PageMap* pagemap);
  // NUMA partitions: this list serves partition `partition`; an object of
  // another partition's span that reaches it (a thread moved between nodes
  // mid-operation) is passed on to home(its partition, class).
  using HomeFn = CentralFreeList* (*)(int partition, int sizeclass);
  void SetPartition(int partition, int node, HomeFn home) {
    partition_ = static_cast<uint8_t>(partition);
    node_ = node;
    home_ = home;
  }

  // True when p is the start of an object of a span of this class. No lock:
  // p is a free object the caller holds, so its span stays in use. A
  // multiplication instead of a division (the transfer caches call it for
  // every object they take in).
  bool IsObjectStart(const void* p) const {
    const uintptr_t start = pagemap_->SpanStartIfClass(p, sizeclass_);
    // kNotAnObject is above any count; the span's tail past its last
    // object is not an object either.
    return start != 0 && IndexAt(reinterpret_cast<uintptr_t>(p) - start) < objects_per_span_;
  }

  // Fills batch with up to n objects; returns how many (0 only when the
  // back-end is out of memory). Objects taken off a span's list leave with
  // their free mark cleared; objects carved fresh are not written (their
  // pages stay untouched until the program uses them), which holds because
  // a span that empties clears its objects' marks before it goes.
  int RemoveRange(void** batch, int n);
  // Returns n objects of this class. Aborts on a pointer that is not the start
  // of an object of this class, or on an object returned twice to an
  // otherwise empty span. mark: the objects do not carry the transfer
  // caches' free mark yet (base/freelist_link.h); each is checked for it (it
  // is then free already: a double free aborts) and given it here.
  void InsertRange(void* const* batch, int n, bool mark = false);

  CentralStats Stats();

  // malloc_trim: in every span that still holds live objects, releases to
  // the OS the system pages (4 KiB) on which every object is free, and takes
  // those objects off the span's free list; they come back (their pages
  // fault in again as zeros) once the span has run out of other free
  // objects. A fragmented heap (one object in 16 live, scattered) then keeps
  // only the pages its live objects are on. Returns bytes released.
  size_t ReleaseFreePages();
  // The background thread's form, called once a cycle: releases as
  // ReleaseFreePages does once no object has been taken from this list for
  // `idle_calls` calls in a row (the class is idle: nobody will fault those
  // pages back soon), and again every `idle_calls` calls while it stays
  // idle, if at least min_free_bytes not yet released sit free in its spans
  // and something was freed since a walk that released nothing (free space
  // scattered over pages that live objects keep is walked once, not every
  // delay). Both forms hold the lock for 16 spans at a time, so frees of the class
  // wait for one chunk, not the whole walk.
  size_t ReleaseFreePagesIfIdle(int idle_calls, size_t min_free_bytes);
  int sizeclass() const { return sizeclass_; }
  size_t object_size() const { return object_size_; }
  // Guards this list with `lock` from now on; only before first use.
  void UseLock(SpinLock* lock) { lock_.MoveTo(lock); }
  void LockForFork() { lock_->Lock(); }
  void UnlockAfterFork(bool child) {
    if (child) lock_->ResetAfterFork();
    else lock_->Unlock();
  }

 private:
  static constexpr size_t kSysPage = 4096;  // what ReleaseFreePages releases
  bool CanReleaseInSpans() const;  // ReleaseFreePages works for this class
  static constexpr uint64_t kNotAnObject = ~uint64_t{0};
  // The index in span of the object that starts at p, or kNotAnObject.
  // offset = k * object_size_ <=> the low size_shift_ bits are zero and
  // what remains is a multiple of the odd part; the odd part's inverse maps
  // the multiples, and only them, to [0, max / odd], and a multiple to k.
  uint64_t ObjectIndex(const Span* span, const void* p) const {
    return IndexAt(reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(span->start()));
  }
  // The same for an offset from the span's start.
  uint64_t IndexAt(uint64_t offset) const {
    if ((offset & size_low_mask_) != 0) return kNotAnObject;
    const uint64_t k = (offset >> size_shift_) * size_odd_inverse_;
    return k <= size_odd_limit_ ? k : kNotAnObject;
  }
  int BucketFor(uint32_t allocated) const { return Bucket(allocated, bucket_mul_); }
  void FileSpan(Span* span);  // puts a non-full span in its bucket
  void ClearMarks(Span* span);  // zeroes the mark words of an empty span's objects
  Span* Populate();
  size_t ReleaseSpanFreePages(Span* span);
  // Visits up to visits_left spans, 16 under each hold of the lock, releasing
  // their free pages; with stop_if_allocating, stops once RemoveRange has run
  // since removes_ was removes_at_start.
  size_t ReleaseLap(size_t visits_left, bool stop_if_allocating, size_t removes_at_start);
  void RefillFromReleased(Span* span);

  // In the LockTable once Static moves it there (base/lock_table.h: fork
  // then copies no page to release it).
  MovableLock lock_;
  int sizeclass_ = 0;
  size_t object_size_ = 0;
  bool has_mark_word_ = false;  // objects of 16 bytes and more: MarkWord exists
  // object_size_ = odd << size_shift_ (IsObjectStart).
  uint64_t size_low_mask_ = 0;
  int size_shift_ = 0;
  uint64_t size_odd_inverse_ = 0;
  uint64_t size_odd_limit_ = 0;
  uint32_t objects_per_span_ = 0;
  uint64_t bucket_mul_ = 0;  // BucketMultiplier(objects_per_span_)
  Length pages_per_span_ = 0;
  size_t span_tail_bytes_ = 0;
  PageAllocator* pages_ = nullptr;
  PageMap* pagemap_ = nullptr;
  SpanList buckets_[kBuckets];
  int highest_nonempty_ = -1;  // hint: no bucket above it has spans
  size_t num_spans_ = 0;
  size_t live_objects_ = 0;
  size_t spans_created_ = 0;
  size_t spans_released_ = 0;
  size_t objects_rehomed_ = 0;
  size_t released_sys_pages_ = 0;  // system pages released inside live spans
  size_t removes_ = 0;             // RemoveRange calls
  size_t removes_at_idle_check_ = 0;
  int idle_checks_ = 0;             // calls of ReleaseFreePagesIfIdle with no RemoveRange between
  size_t idle_laps_ = 0;
  // Free bytes when an idle walk released nothing (~0: none did since the
  // class last allocated): the next walk waits until more is free.
  size_t futile_lap_free_bytes_ = ~size_t{0};
  uint8_t partition_ = 0;
  HomeFn home_ = nullptr;
  int node_ = 0;  // for probes, with partitions
};

}  // namespace jsmalloc

#endif  // JSMALLOC_CACHES_CENTRAL_FREE_LIST_H_
