#include "caches/transfer_cache.h"

#include <cstring>

#include "os/os.h"
#include "probes/jsmalloc_probes.h"
#include "base/freelist_link.h"

namespace jsmalloc {

int TransferCache::DefaultCapacity(size_t object_size, int batch) {
  // Objects of 8 KiB and more get a quarter of the bytes: a handful of them
  // still serves a batch or two of cross-CPU traffic, while 512 KiB for each
  // of the ~25 large classes held 10 MiB of a 70 MiB heap in realloc_builder
  // (its peak RSS fell from 135 to 120 MiB with no change in time; smaller
  // budgets for the small classes slowed xmalloc and larson instead).
  const size_t bytes = object_size >= (size_t{8} << 10) ? (size_t{128} << 10) : (size_t{512} << 10);
  size_t cap = bytes / object_size;
  size_t lo = static_cast<size_t>(batch), hi = static_cast<size_t>(batch) * 64;
  if (cap < lo) cap = lo;
  if (cap > hi) cap = hi;
  return static_cast<int>(cap);
}

void TransferCache::Init(CentralFreeList* central, void** slots, int capacity, bool mark_objects) {
  central_ = central;
  slots_ = slots;
  capacity_ = capacity;
  // Objects of 8 bytes have no second word.
  mark_objects_ = mark_objects && central->object_size() >= 2 * sizeof(uintptr_t);
}

bool TransferCache::HoldsAsFree(const void* p) const {
  return mark_objects_ && CarriesFreeMark(p, central_->object_size());
}

void TransferCache::InsertRange(void* const* batch, int n) {
  if (mark_objects_) {
    // A batch that will not fit goes to the central list unmarked: it checks
    // and marks each object where it links it into its span, so each object
    // is read once and looked up in the pagemap once, not twice (binary
    // trees of 8K-512K nodes spent a quarter of their time here and in the
    // central list).
    if (used_.load(std::memory_order_relaxed) + n > capacity_) {
      lock_->Lock();
      ++insert_misses_;
      const int used = used_.load(std::memory_order_relaxed);
      lock_->Unlock();
      JSMALLOC_PROBE(transfer_overflow, central_->sizeclass(), n, used, capacity_);
      central_->InsertRange(batch, n, /*mark=*/true);
      return;
    }
    // Outside the lock. Two copies inserted at the same instant from two
    // threads can both pass; the central list's count may find them later.
    for (int i = 0; i < n; ++i) {
      if (JSMALLOC_UNLIKELY(!central_->IsObjectStart(batch[i]))) {
        os::FatalError("invalid free of pointer that is not the start of an object:", batch[i]);
      }
      // A write before the mark's read: an object refilled into a cache but
      // never handed to the program may lie on a page nobody has touched,
      // and a read first maps the kernel's huge zero page there, which a
      // 6.1 kernel splits into 4 KiB pages at the next write (the object
      // is free: its first word holds nothing).
      *static_cast<uintptr_t*>(batch[i]) = 0;
      uintptr_t* w = MarkWord(batch[i]);
      const uintptr_t mark = FreeMark(batch[i]);
      if (JSMALLOC_UNLIKELY(*w == mark)) os::FatalError("double free of pointer", batch[i]);
      *w = mark;
    }
  }
  lock_->Lock();
  int used = used_.load(std::memory_order_relaxed);
  if (used + n <= capacity_) {
    memcpy(slots_ + used, batch, sizeof(void*) * static_cast<size_t>(n));
    used_.store(used + n, std::memory_order_relaxed);
    ++insert_hits_;
    lock_->Unlock();
    return;
  }
  ++insert_misses_;
  lock_->Unlock();
  JSMALLOC_PROBE(transfer_overflow, central_->sizeclass(), n, used, capacity_);
  central_->InsertRange(batch, n);
}

int TransferCache::RemoveRange(void** batch, int n, int min_n) {
  lock_->Lock();
  int used = used_.load(std::memory_order_relaxed);
  if (used >= min_n && used > 0) {
    if (n > used) n = used;
    used -= n;
    memcpy(batch, slots_ + used, sizeof(void*) * static_cast<size_t>(n));
    used_.store(used, std::memory_order_relaxed);
    if (used < low_water_) low_water_ = used;
    ++remove_hits_;
    lock_->Unlock();
    if (mark_objects_) {
      for (int i = 0; i < n; ++i) *MarkWord(batch[i]) = 0;
    }
    return n;
  }
  ++remove_misses_;
  lock_->Unlock();
  // The central list clears the marks of what it takes off its spans' lists
  // and leaves the objects it carves fresh untouched: writing a mark word
  // there faulted in pages the program had not used yet (a small process
  // peaked 0.3-0.6 MiB higher).
  return central_->RemoveRange(batch, n);
}

int TransferCache::Plunder() {
  // The oldest objects sit at the bottom of the array (pushes and pops are
  // at the top); the first low_water_ of them were not touched since the
  // last call.
  void* buf[256];
  int moved = 0;
  lock_->Lock();
  int stale = low_water_;
  lock_->Unlock();
  while (stale > 0) {
    lock_->Lock();
    int used = used_.load(std::memory_order_relaxed);
    int take = stale < 256 ? stale : 256;
    if (take > used) take = used;
    memcpy(buf, slots_, sizeof(void*) * static_cast<size_t>(take));
    memmove(slots_, slots_ + take, sizeof(void*) * static_cast<size_t>(used - take));
    used_.store(used - take, std::memory_order_relaxed);
    lock_->Unlock();
    if (take == 0) break;
    // The central list takes a batch at a time.
    for (int i = 0; i < take; i += 64) central_->InsertRange(buf + i, take - i < 64 ? take - i : 64);
    stale -= take;
    moved += take;
  }
  lock_->Lock();
  low_water_ = used_.load(std::memory_order_relaxed);
  lock_->Unlock();
  return moved;
}

void TransferCache::Drain() {
  void* buf[64];
  for (;;) {
    lock_->Lock();
    int used = used_.load(std::memory_order_relaxed);
    int take = used < 64 ? used : 64;
    used -= take;
    memcpy(buf, slots_ + used, sizeof(void*) * static_cast<size_t>(take));
    used_.store(used, std::memory_order_relaxed);
    lock_->Unlock();
    if (take == 0) return;
    central_->InsertRange(buf, take);
  }
}

TransferStats TransferCache::Stats() {
  SpinLockHolder h(lock_);
  TransferStats s;
  s.objects = static_cast<size_t>(used_.load(std::memory_order_relaxed));
  s.capacity = static_cast<size_t>(capacity_);
  s.insert_hits = insert_hits_;
  s.insert_misses = insert_misses_;
  s.remove_hits = remove_hits_;
  s.remove_misses = remove_misses_;
  return s;
}

}  // namespace jsmalloc
