// A small lock usable before main and inside malloc: constant-initialised, no
// allocation, spins briefly then sleeps on a futex so a preempted owner is not
// starved on a 2-core machine.
#ifndef JSMALLOC_BASE_SPINLOCK_H_
#define JSMALLOC_BASE_SPINLOCK_H_

#include <atomic>
#include <cstdint>

#include "base/config.h"

namespace jsmalloc {

class SpinLock {
 public:
  constexpr SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  JSMALLOC_ALWAYS_INLINE void Lock() {
    int32_t expected = kFree;
    if (JSMALLOC_LIKELY(state_.compare_exchange_strong(expected, kHeld, std::memory_order_acquire,
                                                       std::memory_order_relaxed))) {
      return;
    }
    SlowLock();
  }
  JSMALLOC_ALWAYS_INLINE void Unlock() {
    if (JSMALLOC_UNLIKELY(state_.exchange(kFree, std::memory_order_release) == kContended)) {
      SlowUnlock();
    }
  }
  bool TryLock() {
    int32_t expected = kFree;
    return state_.compare_exchange_strong(expected, kHeld, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }
  bool IsHeld() const { return state_.load(std::memory_order_relaxed) != kFree; }

  // After fork() the child has one thread: whoever held the lock in the
  // parent is gone, so the child resets it instead of unlocking.
  void ResetAfterFork() { state_.store(kFree, std::memory_order_relaxed); }

 private:
  static constexpr int32_t kFree = 0;

 public:
  // Zeroed memory holds a free lock (base/lock_table.cc relies on it).
  static constexpr bool kZeroIsFree = kFree == 0;

 private:
  static constexpr int32_t kHeld = 1;
  static constexpr int32_t kContended = 2;
  void SlowLock();
  void SlowUnlock();
  std::atomic<int32_t> state_{kFree};
};

class SpinLockHolder {
 public:
  explicit SpinLockHolder(SpinLock* l) : lock_(l) { lock_->Lock(); }
  ~SpinLockHolder() { lock_->Unlock(); }
  SpinLockHolder(const SpinLockHolder&) = delete;
  SpinLockHolder& operator=(const SpinLockHolder&) = delete;

 private:
  SpinLock* lock_;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_SPINLOCK_H_
