#include "caches/central_free_list.h"

#include "os/os.h"
#include "base/freelist_link.h"
#include "probes/jsmalloc_probes.h"

namespace jsmalloc {

void CentralFreeList::Init(int sizeclass, size_t object_size, Length pages_per_span,
                           PageAllocator* pages, PageMap* pagemap) {
  sizeclass_ = sizeclass;
  object_size_ = object_size;
  has_mark_word_ = object_size >= 2 * sizeof(uintptr_t);
  size_shift_ = __builtin_ctzll(object_size);
  size_low_mask_ = (uint64_t{1} << size_shift_) - 1;
  const uint64_t odd = object_size >> size_shift_;
  uint64_t inv = odd;  // Newton's iteration doubles the correct low bits
  for (int i = 0; i < 5; ++i) inv *= 2 - odd * inv;
  size_odd_inverse_ = inv;
  size_odd_limit_ = ~uint64_t{0} / odd;
  pages_per_span_ = pages_per_span;
  objects_per_span_ = static_cast<uint32_t>((pages_per_span << kPageShift) / object_size);
  if (objects_per_span_ != 0) {  // Bucket's condition of exactness
    if (uint64_t{kBuckets} * objects_per_span_ * objects_per_span_ >= (uint64_t{1} << kBucketShift)) {
      os::FatalError("size class with too many objects per span:", reinterpret_cast<void*>(uintptr_t{objects_per_span_}));
    }
    bucket_mul_ = BucketMultiplier(objects_per_span_);
  }
  span_tail_bytes_ = (pages_per_span << kPageShift) - objects_per_span_ * object_size;
  pages_ = pages;
  pagemap_ = pagemap;
}

void CentralFreeList::FileSpan(Span* span) {
  int b = BucketFor(span->allocated);
  span->bucket = static_cast<uint8_t>(b);
  buckets_[b].PushFront(span);
  if (b > highest_nonempty_) highest_nonempty_ = b;
}

Span* CentralFreeList::Populate() {
  Span* span = pages_->New(pages_per_span_);
  if (span == nullptr) return nullptr;
  span->sizeclass = static_cast<uint8_t>(sizeclass_);
  span->freelist = nullptr;
  span->allocated = 0;
  span->carved = 0;
  span->released_pages = 0;
  // Publish the class before any object of the span can reach free().
  pagemap_->SetSizeClass(span->first_page, span->num_pages, static_cast<uint8_t>(sizeclass_));
  JSMALLOC_PROBE(span_alloc, sizeclass_, span->num_pages, ProbeAddr(span->start()),
                 objects_per_span_, home_ != nullptr ? node_ : ProbeNumaNode());
  return span;
}

int CentralFreeList::RemoveRange(void** batch, int n) {
  int got = 0;
  lock_->Lock();
  ++removes_;
  while (got < n) {
    while (highest_nonempty_ >= 0 && buckets_[highest_nonempty_].empty()) --highest_nonempty_;
    Span* span;
    if (highest_nonempty_ < 0) {
      // Grow without holding our lock: the back-end may take a while (mmap).
      // Take from the fresh span ourselves: if another thread populated too,
      // a span filed untouched could sit empty and never be returned.
      lock_->Unlock();
      span = Populate();
      lock_->Lock();
      if (span == nullptr) break;
      ++num_spans_;
      ++spans_created_;
    } else {
      span = buckets_[highest_nonempty_].first();
      SpanList::Remove(span);
    }
    // As many as the span has free, or as the batch still wants: each comes
    // from its free list, then from the part never carved, then from pages
    // ReleaseFreePages took back.
    uint32_t take = objects_per_span_ - span->allocated;
    if (take > static_cast<uint32_t>(n - got)) take = static_cast<uint32_t>(n - got);
    span->allocated += take;
    while (take > 0) {
      void* obj = span->freelist;
      if (obj != nullptr) {
        do {
          batch[got++] = obj;
          void* next = LoadLink(obj, sizeclass_, *pagemap_);
          // The transfer caches' free mark goes as the object leaves.
          if (has_mark_word_) *MarkWord(obj) = 0;
          obj = next;
        } while (--take > 0 && obj != nullptr);
        span->freelist = obj;
      } else if (span->carved < objects_per_span_) {
        char* next = static_cast<char*>(span->start()) + static_cast<size_t>(span->carved) * object_size_;
        do {
          batch[got++] = next;
          next += object_size_;
          ++span->carved;
        } while (--take > 0 && span->carved < objects_per_span_);
      } else {
        // allocated < objects_per_span_, so some are on released pages.
        RefillFromReleased(span);
        if (span->freelist == nullptr) {
          lock_->Unlock();
          // A link overwritten with another list's end (a use after free
          // that copied a free object's first word) cut the list short.
          os::FatalError("corrupted free list (a write to freed memory?): free objects missing from the span at",
                         span->start());
        }
      }
    }
    if (span->allocated < objects_per_span_) FileSpan(span);
  }
  live_objects_ += static_cast<size_t>(got);
  lock_->Unlock();
  JSMALLOC_PROBE(central_refill, sizeclass_, n, got);
  return got;
}

void CentralFreeList::InsertRange(void* const* batch, int n, bool mark) {
  Span* empty[64];
  int num_empty = 0;
  void* strays[64];
  int num_strays = 0;
  int spans_returned = 0;
  int i = 0;
  while (i < n) {
    lock_->Lock();
    // One span at a time: the objects of a batch that follow each other in
    // the same span (most do: they were allocated together) are checked
    // against it and linked in without another pagemap lookup, and the span
    // is refiled once for the run, not once per object.
    while (i < n && num_empty < 64 && num_strays < 64) {
      void* obj = batch[i];
      Span* span = pagemap_->Get(PageIdOf(obj));
      if (span == nullptr || span->sizeclass != sizeclass_ || span->location != Span::kInUse) {
        lock_->Unlock();
        os::FatalError("invalid free of pointer not allocated by jsmalloc:", obj);
      }
      if (JSMALLOC_UNLIKELY(span->partition != partition_) && home_ != nullptr) {
        strays[num_strays++] = obj;
        ++i;
        continue;
      }
      const uintptr_t span_start = reinterpret_cast<uintptr_t>(span->start());
      const uintptr_t span_bytes = span->num_pages << kPageShift;
      const uint32_t before = span->allocated;
      uint32_t allocated = before;
      void* head = span->freelist;
      do {
        // kNotAnObject is above any carved count.
        if (ObjectIndex(span, obj) >= span->carved) {
          lock_->Unlock();
          os::FatalError("invalid free of pointer that is not the start of an object:", obj);
        }
        // The link is written before the mark is read (see
        // TransferCache::InsertRange: a read first could cost the page its
        // hugepage). A double free aborts right after, so the link it
        // overwrote in a copy already on the list is never followed.
        StoreLink(obj, head);
        if (allocated == 0 || (mark && *MarkWord(obj) == FreeMark(obj))) {
          lock_->Unlock();
          os::FatalError("double free of pointer", obj);
        }
        if (mark) *MarkWord(obj) = FreeMark(obj);
        head = obj;
        --allocated;
        if (++i == n) break;
        obj = batch[i];
      } while (reinterpret_cast<uintptr_t>(obj) - span_start < span_bytes);
      span->freelist = head;
      span->allocated = allocated;
      live_objects_ -= before - allocated;
      const bool was_full = before == objects_per_span_;
      if (allocated == 0) {
        if (!was_full) SpanList::Remove(span);
        // Its released pages leave with it (the back-end counts them as
        // backed, an upper bound; they fault in as zeros when reused).
        released_sys_pages_ -= static_cast<size_t>(__builtin_popcountll(span->released_pages));
        --num_spans_;
        ++spans_released_;
        empty[num_empty++] = span;
      } else if (was_full) {
        FileSpan(span);
      } else if (BucketFor(allocated) != span->bucket) {
        SpanList::Remove(span);
        FileSpan(span);
      }
    }
    lock_->Unlock();
    // Empty spans go back to the back-end outside our lock.
    for (int k = 0; k < num_empty; ++k) {
      ClearMarks(empty[k]);
      empty[k]->released_pages = 0;
      pagemap_->SetSizeClass(empty[k]->first_page, empty[k]->num_pages, 0);
      JSMALLOC_PROBE(span_return, sizeclass_, empty[k]->num_pages, ProbeAddr(empty[k]->start()),
                     home_ != nullptr ? node_ : ProbeNumaNode());
      pages_->Delete(empty[k]);
    }
    spans_returned += num_empty;
    num_empty = 0;
    // The span's partition cannot change while its object is live.
    for (int k = 0; k < num_strays; ++k) {
      Span* span = pagemap_->Get(PageIdOf(strays[k]));
      home_(span->partition, sizeclass_)->InsertRange(&strays[k], 1, mark);
    }
    if (num_strays > 0) {
      lock_->Lock();
      objects_rehomed_ += static_cast<size_t>(num_strays);
      lock_->Unlock();
    }
    num_strays = 0;
  }
  JSMALLOC_PROBE(central_return, sizeclass_, n, spans_returned);
}

// Objects carved fresh are handed out without a write (RemoveRange), so no
// stale free mark may be left where a later span could carve an object at
// the same address: a free of it would abort as a double free, and realloc
// would call it freed. Every carved object of an empty span is free, so its
// pages were written when it was freed; released pages read as zeros and are
// skipped (a write would fault them in again).
void CentralFreeList::ClearMarks(Span* span) {
  if (!has_mark_word_) return;
  char* start = static_cast<char*>(span->start());
  const uint64_t released = span->released_pages;  // nonzero only for spans of at most 64 system pages
  const uint32_t carved = span->carved;
  size_t off = sizeof(uintptr_t);
  for (uint32_t i = 0; i < carved; ++i, off += object_size_) {
    if (released != 0 && ((released >> (off / kSysPage)) & 1) != 0) continue;
    *reinterpret_cast<uintptr_t*>(start + off) = 0;
  }
}

CentralStats CentralFreeList::Stats() {
  SpinLockHolder h(lock_);
  CentralStats s;
  s.spans = num_spans_;
  s.live_objects = live_objects_;
  s.free_objects = num_spans_ * objects_per_span_ - live_objects_;
  s.free_bytes = s.free_objects * object_size_ + num_spans_ * span_tail_bytes_;
  s.spans_created = spans_created_;
  s.spans_released = spans_released_;
  s.objects_rehomed = objects_rehomed_;
  s.released_bytes = released_sys_pages_ * kSysPage;
  s.idle_laps = idle_laps_;
  return s;
}

// Spans larger than 64 system pages (the 256 KiB-page build's biggest) keep
// all their pages: released_pages has 64 bits; and only 4 KiB system pages
// are released.
bool CentralFreeList::CanReleaseInSpans() const {
  return objects_per_span_ != 0 && (pages_per_span_ << kPageShift) <= 64 * kSysPage &&
         os::SystemPageSize() == kSysPage;
}

size_t CentralFreeList::ReleaseFreePages() {
  if (!CanReleaseInSpans()) return 0;
  size_t spans;
  {
    SpinLockHolder h(lock_);
    spans = num_spans_;
  }
  return ReleaseLap(spans, false, 0);
}

size_t CentralFreeList::ReleaseFreePagesIfIdle(int idle_calls, size_t min_free_bytes) {
  if (!CanReleaseInSpans()) return 0;
  if (idle_calls < 1) idle_calls = 1;
  size_t visits_left, removes, free_bytes;
  {
    SpinLockHolder h(lock_);
    if (removes_ != removes_at_idle_check_) {
      removes_at_idle_check_ = removes_;
      idle_checks_ = 0;
      futile_lap_free_bytes_ = ~size_t{0};
      return 0;
    }
    ++idle_checks_;
    if (idle_checks_ % idle_calls != 0 || num_spans_ == 0) return 0;
    // Free bytes in spans, less what is already released.
    free_bytes = (num_spans_ * objects_per_span_ - live_objects_) * object_size_;
    if (free_bytes < released_sys_pages_ * kSysPage + min_free_bytes) return 0;
    if (free_bytes == futile_lap_free_bytes_) return 0;  // nothing freed since a walk found nothing
    visits_left = num_spans_;
    removes = removes_;
    ++idle_laps_;
  }
  // The class is idle for allocation, not necessarily for frees: stop if
  // it allocates again.
  const size_t got = ReleaseLap(visits_left, true, removes);
  SpinLockHolder h(lock_);
  futile_lap_free_bytes_ = got == 0 && removes_ == removes ? free_bytes : ~size_t{0};
  return got;
}

// One lap over the spans, a few at a time, so a free of this class waits for
// at most one chunk. Each span visited moves from the back of its bucket to
// the front; the first one moved marks where the bucket's lap ends (compared,
// never read: it may have been freed since).
size_t CentralFreeList::ReleaseLap(size_t visits_left, bool stop_if_allocating, size_t removes_at_start) {
  static constexpr int kChunkSpans = 16;
  Span* lap_end[kBuckets] = {};
  size_t got = 0;
  bool more = true;
  while (more && visits_left > 0) {
    more = false;
    SpinLockHolder h(lock_);
    if (stop_if_allocating && removes_ != removes_at_start) break;
    int budget = kChunkSpans;
    for (int b = 0; b < kBuckets && budget > 0 && visits_left > 0; ++b) {
      while (budget > 0 && visits_left > 0 && !buckets_[b].empty()) {
        Span* s = buckets_[b].last();
        if (s == lap_end[b]) break;
        SpanList::Remove(s);
        buckets_[b].PushFront(s);
        if (lap_end[b] == nullptr) lap_end[b] = s;
        got += ReleaseSpanFreePages(s);
        --budget;
        --visits_left;
      }
      if (budget == 0) more = true;
    }
  }
  return got;
}

size_t CentralFreeList::ReleaseSpanFreePages(Span* span) {
  // Which objects are free: the free list, and those released before.
  // Objects past `carved` were never handed out: the bump index gives them
  // out, so their pages stay as they are (untouched, usually).
  static constexpr size_t kMinObjectSize = 8;
  static constexpr size_t kMaxObjects = (64 * kSysPage) / kMinObjectSize;
  uint64_t free_bits[kMaxObjects / 64] = {};
  const size_t carved = span->carved;
  char* start = static_cast<char*>(span->start());
  // The system pages object i lies on, as a mask.
  auto pages_of = [&](size_t i) {
    size_t a = i * object_size_ / kSysPage, b = ((i + 1) * object_size_ - 1) / kSysPage;
    return (b - a + 1 >= 64 ? ~uint64_t{0} : ((uint64_t{1} << (b - a + 1)) - 1)) << a;
  };
  for (void* o = span->freelist; o != nullptr; o = LoadLink(o, sizeclass_, *pagemap_)) {
    size_t i = static_cast<size_t>(static_cast<char*>(o) - start) / object_size_;
    free_bits[i / 64] |= uint64_t{1} << (i % 64);
  }
  auto is_free = [&](size_t i) {
    // On the list, or off it because one of its pages is released.
    return ((free_bits[i / 64] >> (i % 64)) & 1) != 0 || (pages_of(i) & span->released_pages) != 0;
  };
  // A page can go when every object that overlaps it is free and carved.
  const size_t pages = (pages_per_span_ << kPageShift) / kSysPage;
  uint64_t can = 0;
  for (size_t p = 0; p < pages; ++p) {
    size_t first = p * kSysPage / object_size_;
    size_t last = ((p + 1) * kSysPage - 1) / object_size_;  // may be past the last object (tail)
    bool ok = true;
    for (size_t i = first; i <= last && ok; ++i) {
      if (i >= objects_per_span_) break;  // the unused tail of the span
      ok = i < carved && is_free(i);
    }
    if (ok) can |= uint64_t{1} << p;
  }
  uint64_t fresh = can & ~span->released_pages;
  if (fresh == 0) return 0;
  // Release each run of fresh pages.
  size_t released = 0;
  for (size_t p = 0; p < pages;) {
    if (!((fresh >> p) & 1)) {
      ++p;
      continue;
    }
    size_t q = p;
    while (q < pages && ((fresh >> q) & 1)) ++q;
    if (!os::ReleasePages(start + p * kSysPage, (q - p) * kSysPage)) {
      fresh &= ~(((q - p == 64) ? ~uint64_t{0} : ((uint64_t{1} << (q - p)) - 1)) << p);
    } else {
      released += (q - p) * kSysPage;
    }
    p = q;
  }
  span->released_pages |= fresh;
  released_sys_pages_ += released / kSysPage;
  // The free list keeps only objects on pages still there.
  void* head = nullptr;
  for (size_t i = carved; i-- > 0;) {
    if (!((free_bits[i / 64] >> (i % 64)) & 1)) continue;
    if (pages_of(i) & span->released_pages) continue;
    void* o = start + i * object_size_;
    StoreLink(o, head);
    head = o;
  }
  span->freelist = head;
  return released;
}

// The span ran out of listed and never-carved objects: the objects of its
// lowest run of released pages go back on the list (writing their links
// faults those pages in again, as zeros).
void CentralFreeList::RefillFromReleased(Span* span) {
  uint64_t r = span->released_pages;
  if (r == 0) return;
  size_t p = static_cast<size_t>(__builtin_ctzll(r));
  size_t q = p;
  while (q < 64 && ((r >> q) & 1)) ++q;
  uint64_t run = (q - p == 64 ? ~uint64_t{0} : ((uint64_t{1} << (q - p)) - 1)) << p;
  span->released_pages &= ~run;
  released_sys_pages_ -= q - p;
  // Every object overlapping the run is free and off the list (a maximal run
  // is bounded by pages that are there, so no object reaches another run).
  size_t first = p * kSysPage / object_size_;
  size_t last = (q * kSysPage - 1) / object_size_;
  if (last >= span->carved) last = span->carved - 1;  // released pages hold only carved objects
  char* start = static_cast<char*>(span->start());
  void* head = span->freelist;
  for (size_t i = last + 1; i-- > first;) {
    void* o = start + i * object_size_;
    StoreLink(o, head);
    head = o;
  }
  span->freelist = head;
}

}  // namespace jsmalloc
