// Per-thread front-end: a free list per size class, sized at run time, and a
// registry that shares one global byte budget among all thread caches,
// moving capacity to the threads that miss.
#ifndef JSMALLOC_CACHES_THREAD_CACHE_H_
#define JSMALLOC_CACHES_THREAD_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "os/os.h"
#include "base/arena.h"
#include "base/size_map.h"
#include "base/lock_table.h"
#include "base/spinlock.h"
#include "base/freelist_link.h"
#include "caches/transfer_cache.h"

namespace jsmalloc {

class ThreadCacheRegistry;

class ThreadCache {
 public:
  // A list never grows beyond this many objects.
  static constexpr uint32_t kMaxListLength = 8192;

  void Init(TransferCache* transfer, ThreadCacheRegistry* registry, size_t max_size);

  // Pops an object of class cl; nullptr only when memory is exhausted.
  JSMALLOC_ALWAYS_INLINE void* Allocate(int cl) {
    void* p = TryPop(cl);
    if (JSMALLOC_LIKELY(p != nullptr)) return p;
    return FetchFromTransfer(cl);
  }

  // Pops from the list only; nullptr when it is empty.
  JSMALLOC_ALWAYS_INLINE void* TryPop(int cl) {
    FreeList& l = lists_[cl];
    void* p = l.head;
    if (JSMALLOC_LIKELY(p != nullptr)) {
      l.head = LoadLink(p, cl);
      if (--l.length < l.lowater) l.lowater = l.length;
      SetSize(size() - l.object_size);
    }
    return p;
  }

  // Refills list cl from the transfer cache and returns one object; nullptr
  // only when memory is exhausted.
  JSMALLOC_NOINLINE void* FetchFromTransfer(int cl);

  // Frees p to list cl and returns true; returns false, doing nothing, for
  // an address not aligned as class cl's objects are (a pointer into an
  // object, never a valid free: the free fast path then goes to FreeSlow,
  // whose Deallocate aborts).
  JSMALLOC_ALWAYS_INLINE bool DeallocateIfAligned(void* p, int cl) {
    FreeList* lp = &lists_[cl];
#if defined(__GNUC__)
    // Keeps the list's address in a register: GCC 12 otherwise computes it
    // a second time for the later fields (two more instructions).
    asm("" : "+r"(lp));
#endif
    FreeList& l = *lp;
    bool aligned;
#if defined(__x86_64__)
    // One test with a memory operand (GCC 12 makes it a copy and an `and`).
    asm("testw %w1, %2" : "=@ccz"(aligned) : "r"(p), "m"(l.align_mask));
#else
    aligned = (reinterpret_cast<uintptr_t>(p) & l.align_mask) == 0;
#endif
    if (JSMALLOC_UNLIKELY(!aligned)) return false;
    // A free of the object freed last in this class (the commonest double
    // free) would put it on the list twice.
    if (JSMALLOC_UNLIKELY(l.head == p)) os::FatalError("double free of pointer", p);
    StoreLink(p, l.head);
    l.head = p;
    uint16_t length = static_cast<uint16_t>(l.length + 1);
    l.length = length;
    size_t sz = size() + l.object_size;
    SetSize(sz);
    if (JSMALLOC_UNLIKELY(length > l.max_length)) {
      ListTooLong(cl);
      return true;
    }
    if (JSMALLOC_UNLIKELY(sz > max_size())) Scavenge();
    return true;
  }

  JSMALLOC_ALWAYS_INLINE void Deallocate(void* p, int cl) {
    if (JSMALLOC_UNLIKELY(!DeallocateIfAligned(p, cl))) InteriorFree(p);
  }

  // True when p is the object freed last in class cl (realloc's check).
  bool IsCachedOnTop(const void* p, int cl) const { return lists_[cl].head == p; }

  // Returns every cached object to the transfer cache.
  void Flush();

  // NUMA partitions: the cache holds objects of one partition only. Moves it
  // to another (flushing what it holds back to the old one).
  void Rebind(int partition, TransferCache* transfer) {
    Flush();
    partition_ = partition;
    transfer_ = transfer;
  }
  int partition() const { return partition_; }

  size_t size() const { return size_.load(std::memory_order_relaxed); }
  size_t max_size() const { return max_size_.load(std::memory_order_relaxed); }
  uint32_t list_length(int cl) const { return lists_[cl].length; }
  uint32_t list_max_length(int cl) const { return lists_[cl].max_length; }

 private:
  friend class ThreadCacheRegistry;
  // 24 bytes, so that the fast paths find everything they need (the class's
  // size and alignment mask too) at one address. Lengths fit 16 bits: a list
  // never holds more than kMaxListLength + 1 objects.
  struct FreeList {
    void* head;
    uint16_t length;
    uint16_t lowater;     // lowest length since the last scavenge
    uint16_t max_length;  // grows on misses, shrinks on overflows
    uint16_t overages;    // 0-3
    uint32_t object_size;  // SizeMap::ClassSize of the class
    // ObjectAlignMask of the class, for the free path.
    uint16_t align_mask;
  };
  static_assert(kMaxListLength < 0xffff, "list lengths are 16-bit");
  static_assert(sizeof(FreeList) == 24, "a list stays 24 bytes");

  void SetSize(size_t v) { size_.store(v, std::memory_order_relaxed); }
  JSMALLOC_NOINLINE void ListTooLong(int cl);
  [[noreturn]] JSMALLOC_NOINLINE static void InteriorFree(void* p);
  JSMALLOC_NOINLINE void Scavenge();
  void ReleaseToTransfer(int cl, uint32_t n);

  FreeList lists_[kMaxClasses];
  std::atomic<size_t> size_{0};      // bytes cached; read by stats from other threads
  std::atomic<size_t> max_size_{0};  // this thread's share of the budget
  TransferCache* transfer_ = nullptr;
  int partition_ = 0;
  ThreadCacheRegistry* registry_ = nullptr;
  ThreadCache* next_ = nullptr;  // registry list, guarded by the registry lock
  ThreadCache* prev_ = nullptr;

 public:
  // Counters for the stats report (owner thread writes, others read roughly).
  size_t misses_ = 0;
  size_t overflows_ = 0;
  size_t scavenges_ = 0;
};

struct ThreadCacheStats {
  size_t caches = 0;
  size_t bytes = 0;
  size_t budget = 0;
  size_t unclaimed = 0;
  size_t class_objects[kMaxClasses] = {};
};

class ThreadCacheRegistry {
 public:
  static constexpr size_t kMinPerThread = 2 * kMaxSize;  // 512 KiB
  static constexpr size_t kStealAmount = 64 * 1024;
  static constexpr size_t kDefaultBudget = size_t{32} << 20;

  void Init(TransferCache* transfer, MetadataArena* arena, size_t overall_budget);

  // A new cache with an initial share of the budget, or nullptr if metadata
  // memory is exhausted.
  // transfer: the caches of the partition the thread starts on (nullptr: the
  // registry's).
  ThreadCache* Create(TransferCache* transfer = nullptr, int partition = 0);
  // Flushes and recycles a cache (thread exit).
  void Destroy(ThreadCache* tc);
  // Gives tc more room: from the unclaimed budget, else from another thread.
  void IncreaseCacheLimit(ThreadCache* tc);
  void SetBudget(size_t bytes);

  ThreadCacheStats Stats();
  // Guarded by `lock` from now on; only before first use.
  void UseLock(SpinLock* lock) { lock_.MoveTo(lock); }
  void LockForFork() { lock_->Lock(); }
  void UnlockAfterFork(bool child) {
    if (child) lock_->ResetAfterFork();
    else lock_->Unlock();
  }

 private:
  // In the LockTable once Static moves it there (base/lock_table.h: fork
  // then copies no page to release it).
  MovableLock lock_;
  TransferCache* transfer_ = nullptr;
  ObjectPool<ThreadCache> pool_;
  ThreadCache* head_ = nullptr;
  ThreadCache* next_victim_ = nullptr;
  size_t budget_ = kDefaultBudget;
  // May go negative when the budget is lowered below what caches hold.
  int64_t unclaimed_ = 0;
  size_t count_ = 0;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_CACHES_THREAD_CACHE_H_
