// Monotonic time for policies (cache resizing, release rates). Coarse is
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

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_CLOCK_H_
