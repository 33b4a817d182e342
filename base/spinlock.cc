#include "base/spinlock.h"

#include "os/os.h"

namespace jsmalloc {

void SpinLock::SlowLock() {
  // Spin a little: critical sections here are short, and a futex round trip
  // costs more than a few hundred pauses when the owner is running.
  for (int i = 0; i < 100; ++i) {
    int32_t expected = kFree;
    if (state_.load(std::memory_order_relaxed) == kFree &&
        state_.compare_exchange_weak(expected, kHeld, std::memory_order_acquire,
                                     std::memory_order_relaxed)) {
      return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
  // Mark contended and sleep until the holder wakes us (Drepper's mutex #2).
  while (state_.exchange(kContended, std::memory_order_acquire) != kFree) {
    os::FutexWait(&state_, kContended);
  }
}

void SpinLock::SlowUnlock() { os::FutexWake(&state_, 1); }

}  // namespace jsmalloc
