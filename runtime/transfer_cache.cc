#include "runtime/transfer_cache.h"

#include <cstring>

#include "probes/jsmalloc_probes.h"

namespace jsmalloc {

int TransferCache::DefaultCapacity(size_t object_size, int batch) {
  size_t cap = (size_t{512} << 10) / object_size;
  size_t lo = static_cast<size_t>(batch), hi = static_cast<size_t>(batch) * 64;
  if (cap < lo) cap = lo;
  if (cap > hi) cap = hi;
  return static_cast<int>(cap);
}

void TransferCache::Init(CentralFreeList* central, void** slots, int capacity) {
  central_ = central;
  slots_ = slots;
  capacity_ = capacity;
}

void TransferCache::InsertRange(void* const* batch, int n) {
  lock_.Lock();
  int used = used_.load(std::memory_order_relaxed);
  if (used + n <= capacity_) {
    memcpy(slots_ + used, batch, sizeof(void*) * static_cast<size_t>(n));
    used_.store(used + n, std::memory_order_relaxed);
    ++insert_hits_;
    lock_.Unlock();
    return;
  }
  ++insert_misses_;
  lock_.Unlock();
  JSMALLOC_PROBE(transfer_overflow, central_->sizeclass(), n, used, capacity_);
  central_->InsertRange(batch, n);
}

int TransferCache::RemoveRange(void** batch, int n) {
  lock_.Lock();
  int used = used_.load(std::memory_order_relaxed);
  if (used >= n) {
    used -= n;
    memcpy(batch, slots_ + used, sizeof(void*) * static_cast<size_t>(n));
    used_.store(used, std::memory_order_relaxed);
    ++remove_hits_;
    lock_.Unlock();
    return n;
  }
  ++remove_misses_;
  lock_.Unlock();
  return central_->RemoveRange(batch, n);
}

void TransferCache::Drain() {
  void* buf[64];
  for (;;) {
    lock_.Lock();
    int used = used_.load(std::memory_order_relaxed);
    int take = used < 64 ? used : 64;
    used -= take;
    memcpy(buf, slots_ + used, sizeof(void*) * static_cast<size_t>(take));
    used_.store(used, std::memory_order_relaxed);
    lock_.Unlock();
    if (take == 0) return;
    central_->InsertRange(buf, take);
  }
}

TransferStats TransferCache::Stats() {
  SpinLockHolder h(&lock_);
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
