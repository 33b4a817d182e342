// Clocks, inline (os/os.h includes this header; include os/os.h instead).
// Monotonic time for policies (cache resizing, release rates): coarse is
// enough and costs no system call (vDSO).
#ifndef JSMALLOC_OS_LINUX_CLOCK_H_
#define JSMALLOC_OS_LINUX_CLOCK_H_

#include <time.h>

#include <cstdint>

namespace jsmalloc::os {

inline uint64_t MonotonicNanosCoarse() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Precise monotonic time (vDSO), for measuring short durations (probes).
inline uint64_t MonotonicNanos() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Sleeps for about `ns` nanoseconds (the background thread's period).
inline void SleepNanos(uint64_t ns) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(ns / 1000000000u);
  ts.tv_nsec = static_cast<long>(ns % 1000000000u);
  nanosleep(&ts, nullptr);
}

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_CLOCK_H_
