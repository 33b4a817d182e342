// Per-CPU front-end: the slow paths and the capacity policy around the
// per-CPU slab. The fast paths (one restartable sequence each) are inlined
// into malloc/free from allocator.h; everything here runs on a miss.
//
// Capacity policy: every class on every CPU starts with no capacity. A miss
// (pop on empty, push on full) grows that class on that CPU by a batch (by
// what an underflow refills: a page's worth of small objects once the class
// underflows kRefillStreak times in a row), if the CPU's byte budget allows; otherwise capacity is taken from another
// class of the same CPU that has unused room. A class that keeps
// overflowing with no underflow in between (kShrinkStreak in a row: the
// CPU frees it in a burst, or only frees it) shrinks by a batch on each
// further overflow instead, down to two batches, as a per-thread list does:
// what it would keep is not going to be allocated here soon, and kept, it
// pins partly used spans whose scattered free objects the next allocations
// get. A periodic pass (at most once
// a second, piggy-backed on misses) halves the unused room of classes that
// did not miss since the last pass and drains CPUs that saw no misses at
// all, returning their objects to the transfer caches.
//
// Env supplies the CPU: the real one reads rseq and runs the critical
// sections; tests inject a fake CPU number and plain operations.
#ifndef JSMALLOC_CACHES_CPU_CACHE_H_
#define JSMALLOC_CACHES_CPU_CACHE_H_

#include <atomic>
#include <cstddef>

#include "os/os.h"
#include "probes/jsmalloc_probes.h"
#include "base/arena.h"
#include "base/lock_table.h"
#include "caches/per_cpu_slab.h"
#include "base/size_map.h"
#include "base/spinlock.h"
#include "caches/transfer_cache.h"

namespace jsmalloc {

struct CpuCacheCpuStats {
  size_t capacity_bytes = 0;  // budgeted capacity
  size_t cached_bytes = 0;    // objects held
  size_t misses = 0;          // underflows + overflows, cumulative
  size_t underflows = 0;
  size_t overflows = 0;
  size_t drains = 0;
  size_t shrinks = 0;  // overflows that shrank a class freed in a burst (kShrinkStreak)
  size_t fence_failures = 0;  // drains given up (or left stopped) without a fence
  bool populated = false;
  bool retired = false;  // slab stopped for good after a failed fence
};

struct CpuCacheClassStats {
  size_t capacity = 0;  // slots, summed over CPUs
  size_t objects = 0;   // objects, summed over CPUs
  size_t misses = 0;    // cumulative, summed over CPUs
};

template <typename Env>
class CpuCacheT {
 public:
  static constexpr uint64_t kResizeIntervalNs = 1000000000;  // 1 s
  static constexpr int kShrinkStreak = 8;  // overflows in a row before shrinking
  // Underflows in a row (no overflow between) after which a class refills a
  // page's worth at a time (TransferCache::RefillObjects): an allocation
  // burst, such as a structure being built. A class that churns keeps
  // refilling a batch: moving 4 batches per miss cost larson 4.6% of its
  // time and 60 ns at its p99.9.
  static constexpr int kRefillStreak = 4;

  // slab: initialised over memory for env->NumCpus() CPUs.
  void Init(Env* env, PerCpuSlab* slab, TransferCache* transfer, MetadataArena* arena,
            size_t max_bytes_per_cpu);

  // NUMA partitions: CPU c fills from and drains to
  // transfer_by_partition[cpu_partition[c]] (both arrays outlive the cache).
  void SetPartitions(TransferCache* const* transfer_by_partition, const uint8_t* cpu_partition,
                     int partitions) {
    for (int p = 0; p < partitions && p < kMaxCachePartitions; ++p) {
      partition_transfer_[p] = transfer_by_partition[p];
    }
    cpu_partition_ = cpu_partition;
  }

  // Called when the pop fast path found the class empty. Returns an object
  // (nullptr only when memory is exhausted).
  void* Underflow(int cl);
  // Called when the push fast path found the class full.
  void Overflow(void* p, int cl);

  // Returns every object cached on `cpu` to the transfer caches and sets its
  // capacities to zero. Works from any thread (stops and fences the CPU).
  // Returns the bytes moved, or 0 when the CPU holds nothing or the kernel
  // cannot fence.
  size_t DrainCpu(int cpu);
  size_t DrainAll();
  // The periodic pass (see above); `now` in nanoseconds.
  void ResizePass(uint64_t now);

  void SetMaxBytesPerCpu(size_t bytes) { max_bytes_.store(bytes, std::memory_order_relaxed); }
  size_t max_bytes_per_cpu() const { return max_bytes_.load(std::memory_order_relaxed); }
  int num_cpus() const { return slab_->num_cpus(); }

  CpuCacheCpuStats CpuStats(int cpu);
  void ClassStats(CpuCacheClassStats* out /* [kMaxClasses] */);
  size_t TotalCachedBytes();

  // True when p is the top object of class cl on the caller's CPU: it was
  // just freed there (realloc's check of its source block).
  bool IsCachedOnTop(const void* p, int cl) {
    int cpu = env_->CurrentCpu();
    return cpu >= 0 && slab_->TopIs(cpu, cl, p);
  }

  // For fork (runtime/fork_locks.cc): the resize pass's lock comes before
  // the CPUs' locks (the pass takes them under it); a fork during a pass
  // left the child unable to resize or drain.
  void LockResizeForFork() { resize_lock_->Lock(); }
  void UnlockResizeAfterFork(bool child) {
    if (child) resize_lock_->ResetAfterFork();
    else resize_lock_->Unlock();
  }
  void LockCpusForFork() {
    for (int c = 0; c < slab_->num_cpus(); ++c) locks_[c].lock.Lock();
  }
  void UnlockCpusAfterFork(bool child) {
    for (int c = 0; c < slab_->num_cpus(); ++c) {
      if (child) locks_[c].lock.ResetAfterFork();
      else locks_[c].lock.Unlock();
    }
  }

 private:
  // A CPU's state, guarded by locks_[cpu]. Zero (the arena's pages, never
  // written) until the CPU is first used: a process that runs on a few of a
  // machine's CPUs touches no page of the others' state (the locks live in
  // their own small array for the same reason: passes over every CPU take
  // them).
  struct CpuState {
    bool populated;
    bool headers_ready;  // the slab's headers for this CPU are written
    size_t capacity_bytes;
    uint16_t capacity[kMaxClasses];  // source of truth; mirrored into the slab
    uint32_t misses[kMaxClasses];
    uint32_t misses_at_last_pass[kMaxClasses];
    // Overflows of the class since its last underflow on this CPU (capped).
    uint8_t overflow_streak[kMaxClasses];
    // Underflows of the class since its last overflow on this CPU (capped).
    uint8_t underflow_streak[kMaxClasses];
    size_t total_misses;
    size_t total_misses_at_last_pass;
    size_t underflows, overflows, drains;
    size_t streak_shrinks;  // overflows that shrank a class that only frees
    size_t fence_failures;  // drains that found the kernel unable to fence
    bool retired;           // stopped for good: a fence failed mid-drain
    int steal_cursor;
    uint32_t steal_backoff;  // misses to skip stealing after a fruitless try
  };

  // Marks the CPU in use, writing its slab headers the first time; false
  // for a retired CPU (its slab stays stopped). Lock held.
  bool PopulateLocked(int cpu, CpuState& s);
  // Grows (cpu, cl) by up to `want` slots within the budget. Lock held.
  bool GrowLocked(int cpu, CpuState& s, int cl, int want);
  // Frees at least `bytes` of unused capacity on the CPU, taken from classes
  // other than `except`. Lock held.
  void StealLocked(int cpu, CpuState& s, int except, size_t bytes);
  void SetCapacityLocked(int cpu, CpuState& s, int cl, uint16_t cap);
  void MaybeResize();
  // The calling thread's CPU, registering with rseq if needed; -1 if none.
  int CurrentCpu();

  static constexpr int kMaxCachePartitions = 8;
  TransferCache* TransferFor(int cpu) const {
    return cpu_partition_ != nullptr && cpu >= 0 ? partition_transfer_[cpu_partition_[cpu]] : transfer_;
  }

  Env* env_ = nullptr;
  PerCpuSlab* slab_ = nullptr;
  TransferCache* transfer_ = nullptr;
  TransferCache* partition_transfer_[kMaxCachePartitions] = {};
  const uint8_t* cpu_partition_ = nullptr;
  CpuState* cpus_ = nullptr;
  // One per CPU, then the resize pass's: in the LockTable (fork releases
  // them without a copy-on-write fault), else from the arena.
  PaddedSpinLock* locks_ = nullptr;
  std::atomic<size_t> max_bytes_{0};
  std::atomic<uint64_t> last_resize_ns_{0};
  SpinLock own_resize_lock_;
  SpinLock* resize_lock_ = &own_resize_lock_;
};

#if JSMALLOC_HAVE_RSEQ_SLAB
// The real CPU: rseq registration and critical sections from the OS layer (os/os.h).
struct RseqCpuEnv {
  int CurrentCpu() { return os::RseqCurrentCpu(); }
  bool EnsureRegistered() { return os::RseqEnsureThreadRegistered(); }
  bool Push(PerCpuSlab* slab, int cl, void* p) {
    return os::RseqSlabPush(slab->base(), static_cast<size_t>(cl), p);
  }
  size_t PopBatch(PerCpuSlab* slab, int cl, void** out, size_t n) {
    return os::RseqSlabPopBatch(slab->base(), static_cast<size_t>(cl), out, n);
  }
  size_t PushBatch(PerCpuSlab* slab, int cl, void* const* in, size_t n) {
    return os::RseqSlabPushBatch(slab->base(), static_cast<size_t>(cl), in, n);
  }
  bool FenceAvailable() { return os::RseqFenceAvailable(); }
  bool Fence(int cpu) { return os::RseqFenceCpu(cpu); }
  uint64_t Now();
};
using CpuCache = CpuCacheT<RseqCpuEnv>;
#endif

}  // namespace jsmalloc

#include "caches/cpu_cache_inl.h"

#endif  // JSMALLOC_CACHES_CPU_CACHE_H_
