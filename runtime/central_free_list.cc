#include "runtime/central_free_list.h"

#include "os/linux/os_memory.h"
#include "runtime/freelist_link.h"
#include "probes/jsmalloc_probes.h"

namespace jsmalloc {

void CentralFreeList::Init(int sizeclass, size_t object_size, Length pages_per_span,
                           PageAllocator* pages, PageMap* pagemap) {
  sizeclass_ = sizeclass;
  object_size_ = object_size;
  pages_per_span_ = pages_per_span;
  objects_per_span_ = static_cast<uint32_t>((pages_per_span << kPageShift) / object_size);
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
  // Publish the class before any object of the span can reach free().
  pagemap_->SetSizeClass(span->first_page, span->num_pages, static_cast<uint8_t>(sizeclass_));
  JSMALLOC_PROBE(span_alloc, sizeclass_, span->num_pages, ProbeAddr(span->start()),
                 objects_per_span_, home_ != nullptr ? node_ : ProbeNumaNode());
  return span;
}

int CentralFreeList::RemoveRange(void** batch, int n) {
  int got = 0;
  lock_.Lock();
  while (got < n) {
    while (highest_nonempty_ >= 0 && buckets_[highest_nonempty_].empty()) --highest_nonempty_;
    Span* span;
    if (highest_nonempty_ < 0) {
      // Grow without holding our lock: the back-end may take a while (mmap).
      // Take from the fresh span ourselves: if another thread populated too,
      // a span filed untouched could sit empty and never be returned.
      lock_.Unlock();
      span = Populate();
      lock_.Lock();
      if (span == nullptr) break;
      ++num_spans_;
      ++spans_created_;
    } else {
      span = buckets_[highest_nonempty_].first();
      SpanList::Remove(span);
    }
    while (got < n && span->allocated < objects_per_span_) {
      void* obj;
      if (span->freelist != nullptr) {
        obj = span->freelist;
        span->freelist = LoadLink(obj, sizeclass_, *pagemap_);
      } else {
        obj = static_cast<char*>(span->start()) + static_cast<size_t>(span->carved) * object_size_;
        ++span->carved;
      }
      ++span->allocated;
      batch[got++] = obj;
    }
    if (span->allocated < objects_per_span_) FileSpan(span);
  }
  live_objects_ += static_cast<size_t>(got);
  lock_.Unlock();
  JSMALLOC_PROBE(central_refill, sizeclass_, n, got);
  return got;
}

void CentralFreeList::InsertRange(void* const* batch, int n) {
  Span* empty[64];
  int num_empty = 0;
  void* strays[64];
  int num_strays = 0;
  int spans_returned = 0;
  int i = 0;
  while (i < n) {
    lock_.Lock();
    for (; i < n && num_empty < 64 && num_strays < 64; ++i) {
      void* obj = batch[i];
      Span* span = pagemap_->Get(PageIdOf(obj));
      if (span == nullptr || span->sizeclass != sizeclass_ || span->location != Span::kInUse) {
        lock_.Unlock();
        os::FatalError("invalid free of pointer not allocated by jsmalloc:", obj);
      }
      if (JSMALLOC_UNLIKELY(span->partition != partition_) && home_ != nullptr) {
        strays[num_strays++] = obj;
        continue;
      }
      size_t offset = static_cast<size_t>(static_cast<char*>(obj) - static_cast<char*>(span->start()));
      if (offset % object_size_ != 0 || offset / object_size_ >= span->carved) {
        lock_.Unlock();
        os::FatalError("invalid free of pointer that is not the start of an object:", obj);
      }
      if (span->allocated == 0) {
        lock_.Unlock();
        os::FatalError("double free of pointer", obj);
      }
      bool was_full = span->allocated == objects_per_span_;
      int old_bucket = was_full ? -1 : span->bucket;
      StoreLink(obj, span->freelist);
      span->freelist = obj;
      --span->allocated;
      --live_objects_;
      if (span->allocated == 0) {
        if (!was_full) SpanList::Remove(span);
        --num_spans_;
        ++spans_released_;
        empty[num_empty++] = span;
      } else if (was_full) {
        FileSpan(span);
      } else if (BucketFor(span->allocated) != old_bucket) {
        SpanList::Remove(span);
        FileSpan(span);
      }
    }
    lock_.Unlock();
    // Empty spans go back to the back-end outside our lock.
    for (int k = 0; k < num_empty; ++k) {
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
      home_(span->partition, sizeclass_)->InsertRange(&strays[k], 1);
    }
    if (num_strays > 0) {
      lock_.Lock();
      objects_rehomed_ += static_cast<size_t>(num_strays);
      lock_.Unlock();
    }
    num_strays = 0;
  }
  JSMALLOC_PROBE(central_return, sizeclass_, n, spans_returned);
}

CentralStats CentralFreeList::Stats() {
  SpinLockHolder h(&lock_);
  CentralStats s;
  s.spans = num_spans_;
  s.live_objects = live_objects_;
  s.free_objects = num_spans_ * objects_per_span_ - live_objects_;
  s.free_bytes = s.free_objects * object_size_ + num_spans_ * span_tail_bytes_;
  s.spans_created = spans_created_;
  s.spans_released = spans_released_;
  s.objects_rehomed = objects_rehomed_;
  return s;
}

}  // namespace jsmalloc
