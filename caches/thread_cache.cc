#include "caches/thread_cache.h"

namespace jsmalloc {

void ThreadCache::Init(TransferCache* transfer, ThreadCacheRegistry* registry, size_t max_size) {
  transfer_ = transfer;
  partition_ = 0;
  registry_ = registry;
  for (int cl = 0; cl < kMaxClasses; ++cl) {
    lists_[cl].head = nullptr;
    lists_[cl].length = 0;
    lists_[cl].lowater = 0;
    lists_[cl].max_length = 1;
    lists_[cl].overages = 0;
    lists_[cl].object_size = cl > 0 && cl < kNumClasses ? static_cast<uint32_t>(SizeMap::ClassSize(cl)) : 0;
    lists_[cl].align_mask = cl > 0 && cl < kNumClasses ? ObjectAlignMask(SizeMap::ClassSize(cl)) : 0;
  }
  SetSize(0);
  max_size_.store(max_size, std::memory_order_relaxed);
}

void ThreadCache::InteriorFree(void* p) {
  os::FatalError("invalid free of pointer that is not the start of an object:", p);
}

void* ThreadCache::FetchFromTransfer(int cl) {
  FreeList& l = lists_[cl];
  const int batch = SizeMap::BatchSize(cl);
  int want = static_cast<int>(l.max_length < static_cast<uint32_t>(batch) ? l.max_length : batch);
  void* buf[64];
  int got = transfer_[cl].RemoveRange(buf, want);
  ++misses_;
  if (got == 0) return nullptr;
  // Keep all but one; hand that one out.
  for (int i = 1; i < got; ++i) {
    StoreLink(buf[i], l.head);
    l.head = buf[i];
  }
  l.length += static_cast<uint32_t>(got - 1);
  SetSize(size() + static_cast<size_t>(got - 1) * SizeMap::ClassSize(cl));
  // Slow start: grow one at a time up to a batch, then by batches, so threads
  // that allocate a class rarely do not hoard it.
  if (l.max_length < static_cast<uint32_t>(batch)) {
    ++l.max_length;
  } else {
    uint32_t n = l.max_length + static_cast<uint32_t>(batch);
    if (n > kMaxListLength) n = kMaxListLength;
    l.max_length = n - n % static_cast<uint32_t>(batch);
  }
  return buf[0];
}

void ThreadCache::ReleaseToTransfer(int cl, uint32_t n) {
  FreeList& l = lists_[cl];
  if (n > l.length) n = l.length;
  const uint32_t batch = static_cast<uint32_t>(SizeMap::BatchSize(cl));
  void* buf[64];
  uint32_t left = n;
  void* last = nullptr;
  while (left > 0) {
    uint32_t k = left < batch ? left : batch;
    for (uint32_t i = 0; i < k; ++i) {
      // A list that ends before its count: the last object read was freed
      // again (on another thread, or after others) and its link rewritten
      // there.
      if (JSMALLOC_UNLIKELY(l.head == nullptr)) os::FatalError("double free of pointer", last);
      last = l.head;
      buf[i] = l.head;
      l.head = LoadLink(l.head, cl);
    }
    transfer_[cl].InsertRange(buf, static_cast<int>(k));
    left -= k;
  }
  l.length -= n;
  if (l.lowater > l.length) l.lowater = l.length;
  SetSize(size() - static_cast<size_t>(n) * SizeMap::ClassSize(cl));
}

void ThreadCache::ListTooLong(int cl) {
  FreeList& l = lists_[cl];
  ++overflows_;
  const uint32_t batch = static_cast<uint32_t>(SizeMap::BatchSize(cl));
  ReleaseToTransfer(cl, batch < l.length ? batch : l.length);
  // A list that keeps overflowing is too long for this thread's pattern
  // (it frees more than it allocates): shrink it.
  if (l.max_length < batch) {
    ++l.max_length;
  } else if (l.max_length > batch) {
    if (++l.overages > 3) {
      l.max_length -= batch;
      l.overages = 0;
    }
  }
  if (size() > max_size()) Scavenge();
}

void ThreadCache::Scavenge() {
  ++scavenges_;
  // Objects below the low-water mark were not needed since the last pass:
  // return half of them. Lists that dipped to zero are left alone.
  for (int cl = 1; cl < kNumClasses; ++cl) {
    FreeList& l = lists_[cl];
    if (l.lowater > 0) {
      uint32_t drop = l.lowater > 1 ? l.lowater / 2 : 1;
      ReleaseToTransfer(cl, drop);
      const uint32_t batch = static_cast<uint32_t>(SizeMap::BatchSize(cl));
      if (l.max_length > batch) {
        uint32_t m = l.max_length - batch;
        l.max_length = m > batch ? m : batch;
      }
    }
    l.lowater = l.length;
  }
  registry_->IncreaseCacheLimit(this);
}

void ThreadCache::Flush() {
  for (int cl = 1; cl < kNumClasses; ++cl) {
    if (lists_[cl].length > 0) ReleaseToTransfer(cl, lists_[cl].length);
    lists_[cl].lowater = 0;
  }
}

void ThreadCacheRegistry::Init(TransferCache* transfer, MetadataArena* arena,
                               size_t overall_budget) {
  transfer_ = transfer;
  pool_.Init(arena);
  budget_ = overall_budget;
  unclaimed_ = static_cast<int64_t>(overall_budget);
}

ThreadCache* ThreadCacheRegistry::Create(TransferCache* transfer, int partition) {
  SpinLockHolder h(lock_);
  ThreadCache* tc = pool_.New();
  if (tc == nullptr) return nullptr;
  // A new thread starts small and earns more room by missing.
  size_t share = kMinPerThread;
  unclaimed_ -= static_cast<int64_t>(share);
  tc->Init(transfer != nullptr ? transfer : transfer_, this, share);
  tc->partition_ = partition;
  tc->next_ = head_;
  tc->prev_ = nullptr;
  if (head_ != nullptr) head_->prev_ = tc;
  head_ = tc;
  ++count_;
  return tc;
}

void ThreadCacheRegistry::Destroy(ThreadCache* tc) {
  tc->Flush();
  SpinLockHolder h(lock_);
  unclaimed_ += static_cast<int64_t>(tc->max_size());
  if (tc->prev_ != nullptr) tc->prev_->next_ = tc->next_;
  else head_ = tc->next_;
  if (tc->next_ != nullptr) tc->next_->prev_ = tc->prev_;
  if (next_victim_ == tc) next_victim_ = tc->next_;
  --count_;
  pool_.Delete(tc);
}

void ThreadCacheRegistry::IncreaseCacheLimit(ThreadCache* tc) {
  SpinLockHolder h(lock_);
  if (unclaimed_ >= static_cast<int64_t>(kStealAmount)) {
    unclaimed_ -= static_cast<int64_t>(kStealAmount);
    tc->max_size_.store(tc->max_size() + kStealAmount, std::memory_order_relaxed);
    return;
  }
  // Budget exhausted: take room from the next thread in round-robin order
  // that has more than the minimum. Its cache shrinks at its next scavenge.
  for (size_t i = 0; i < count_; ++i) {
    if (next_victim_ == nullptr) next_victim_ = head_;
    ThreadCache* v = next_victim_;
    next_victim_ = v->next_;
    if (v != tc && v->max_size() > kMinPerThread) {
      v->max_size_.store(v->max_size() - kStealAmount, std::memory_order_relaxed);
      tc->max_size_.store(tc->max_size() + kStealAmount, std::memory_order_relaxed);
      return;
    }
  }
}

void ThreadCacheRegistry::SetBudget(size_t bytes) {
  SpinLockHolder h(lock_);
  unclaimed_ += static_cast<int64_t>(bytes) - static_cast<int64_t>(budget_);
  budget_ = bytes;
}

ThreadCacheStats ThreadCacheRegistry::Stats() {
  SpinLockHolder h(lock_);
  ThreadCacheStats s;
  s.caches = count_;
  s.budget = budget_;
  s.unclaimed = unclaimed_ > 0 ? static_cast<size_t>(unclaimed_) : 0;
  for (ThreadCache* tc = head_; tc != nullptr; tc = tc->next_) {
    s.bytes += tc->size();
    // Lengths are owned by other threads; a rough snapshot is what stats need.
    for (int cl = 1; cl < kNumClasses; ++cl) {
      s.class_objects[cl] += __atomic_load_n(&tc->lists_[cl].length, __ATOMIC_RELAXED);
    }
  }
  return s;
}

}  // namespace jsmalloc
