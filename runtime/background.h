// The background thread: off by default for linked programs; started by
// jsmalloc_start_background_thread() or JSMALLOC_BACKGROUND=1. Once a second
// it rebalances the per-CPU caches, lets the hugepage cache drop what recent
// demand no longer needs, and releases free memory at the configured rate
// (JSMALLOC_RELEASE_RATE bytes/s), sending its madvise calls in batches
// through io_uring where the kernel allows it.
#ifndef JSMALLOC_RUNTIME_BACKGROUND_H_
#define JSMALLOC_RUNTIME_BACKGROUND_H_

#include <cstddef>
#include <cstdint>

namespace jsmalloc {

struct BackgroundStats {
  bool running = false;
  size_t cycles = 0;
  size_t released_bytes = 0;     // by the rate and the demand policy
  size_t release_rate = 0;       // bytes per second
  const char* madvise_path = "";  // "io_uring" or "madvise (reason)"
  size_t madvise_batches = 0;
  size_t madvise_ranges = 0;
  size_t madvise_syscalls = 0;
};

// Starts the thread once; returns true if it runs (now or already).
bool StartBackgroundThread();
void SetReleaseRate(size_t bytes_per_second);
BackgroundStats GetBackgroundStats();
// One cycle of the thread's work, `elapsed_ns` after the previous one
// (exposed so tests can drive it without the thread).
void BackgroundCycle(uint64_t now_ns, uint64_t elapsed_ns);
// In a fork child: the thread did not survive; allow starting a new one.
void BackgroundAfterForkChild();

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_BACKGROUND_H_
