// Per-class array of free objects between the thread (or CPU) caches and the
// central free list. Moving a batch here is a memcpy under a short lock and
// touches no span, so a thread that frees what another allocated hands the
// objects over cheaply.
#ifndef JSMALLOC_CACHES_TRANSFER_CACHE_H_
#define JSMALLOC_CACHES_TRANSFER_CACHE_H_

#include <atomic>
#include <cstddef>

#include "caches/central_free_list.h"
#include "base/freelist_link.h"
#include "base/size_map.h"
#include "base/lock_table.h"
#include "base/spinlock.h"

namespace jsmalloc {

struct TransferStats {
  size_t objects = 0;
  size_t capacity = 0;
  size_t insert_hits = 0, insert_misses = 0;  // misses overflowed to central
  size_t remove_hits = 0, remove_misses = 0;  // misses were fetched from central

  // Sums (a class over NUMA partitions).
  TransferStats& operator+=(const TransferStats& o) {
    objects += o.objects;
    capacity += o.capacity;
    insert_hits += o.insert_hits;
    insert_misses += o.insert_misses;
    remove_hits += o.remove_hits;
    remove_misses += o.remove_misses;
    return *this;
  }
};

class TransferCache {
 public:
  TransferCache() = default;
  TransferCache(const TransferCache&) = delete;
  TransferCache& operator=(const TransferCache&) = delete;

  // slots: storage for `capacity` pointers, owned by the caller.
  // mark_objects: see InsertRange (always off for objects of 8 bytes, which
  // have no second word; the caller turns it off in check mode, whose mark
  // is in that word).
  void Init(CentralFreeList* central, void** slots, int capacity, bool mark_objects = true);

  // Free objects that enter here (from a CPU's or thread's cache, or a
  // free with no cache) must be the start of an object (a free of a pointer
  // into one that passed the free path's alignment test aborts here), and
  // get a keyed mark in their second word, checked first: an object that carries it is already free here or in the central
  // list, so it was freed twice, and the insert aborts. A double free is
  // thus caught at the latest when its second copy leaves a cache, unless a
  // copy was allocated again meanwhile. What RemoveRange hands out carries
  // no mark (cleared here, or by the central list).
  void InsertRange(void* const* batch, int n);
  // Takes n objects, or as many as are held when that is at least min_n;
  // otherwise n from the central list. Returns how many (0: out of memory).
  int RemoveRange(void** batch, int n) { return RemoveRange(batch, n, n); }
  int RemoveRange(void** batch, int n, int min_n);
  // True when p (an object of this class) carries the free mark: it is free
  // here or in the central list (realloc's check of its source block).
  bool HoldsAsFree(const void* p) const;
  // The same without the cache: whether an object of `object_size` bytes
  // carries the mark (not for check mode, whose mark is its own).
  static bool CarriesFreeMark(const void* p, size_t object_size) {
    return object_size >= 2 * sizeof(uintptr_t) && *MarkWord(const_cast<void*>(p)) == FreeMark(p);
  }

  // Moves everything held here to the central free list (malloc_trim).
  void Drain();
  // Moves to the central free list the objects that stayed here since the
  // previous call (the lowest the count fell to meanwhile): what an idle
  // class holds goes back, so its spans can empty and be released, while a
  // class in use keeps its working set. Returns objects moved. Called by
  // the background thread once per cycle.
  int Plunder();

  TransferStats Stats();
  size_t objects() const { return static_cast<size_t>(used_.load(std::memory_order_relaxed)); }
  CentralFreeList* central() const { return central_; }
  // Guards this list with `lock` from now on; only before first use.
  void UseLock(SpinLock* lock) { lock_.MoveTo(lock); }
  void LockForFork() { lock_->Lock(); }
  void UnlockAfterFork(bool child) {
    if (child) lock_->ResetAfterFork();
    else lock_->Unlock();
  }

  // What a CPU's cache takes on a miss in an allocation burst: for small
  // objects a system page's worth (up to 4 batches), else a batch. Two CPUs
  // that refill a class at the same time from the same fresh span then get
  // whole pages each, not alternate 1 KiB pieces of the same pages: two
  // threads building linked lists of 32-byte nodes at once walked them 2x
  // slower than one thread did (cache_scratch's locality phase), each page
  // and many lines holding both threads' nodes. (Per-thread caches keep
  // fetching a batch: the same change there made cache_scratch 15% faster
  // but binary trees 5.6% slower.)
  static constexpr size_t kRefillBytes = 4096;
  static constexpr int kMaxRefill = 128;
  static int RefillObjects(int cl) {
    const int batch = SizeMap::BatchSize(cl);
    size_t n = kRefillBytes / SizeMap::ClassSize(cl);
    if (n > static_cast<size_t>(4 * batch)) n = static_cast<size_t>(4 * batch);
    if (n > static_cast<size_t>(kMaxRefill)) n = kMaxRefill;
    return n > static_cast<size_t>(batch) ? static_cast<int>(n) : batch;
  }

  // The default capacity in objects for a class: about 512 KiB of objects
  // (128 KiB from 8 KiB objects up), between 1 and 64 batches.
  static int DefaultCapacity(size_t object_size, int batch);

 private:
  // In the LockTable once Static moves it there (base/lock_table.h: fork
  // then copies no page to release it).
  MovableLock lock_;
  CentralFreeList* central_ = nullptr;
  void** slots_ = nullptr;
  int capacity_ = 0;
  bool mark_objects_ = true;
  std::atomic<int> used_{0};
  int low_water_ = 0;  // lowest used_ since the last Plunder
  size_t insert_hits_ = 0, insert_misses_ = 0, remove_hits_ = 0, remove_misses_ = 0;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_CACHES_TRANSFER_CACHE_H_
