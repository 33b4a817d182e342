// The background thread. By default (JSMALLOC_BACKGROUND=auto) it starts on
// first need: when the spans in use first reach 32 MiB (a small process
// never gets one). JSMALLOC_BACKGROUND=1 or jsmalloc_start_background_thread()
// start it at once, =0 never. Once a second it rebalances the per-CPU caches,
// returns objects that sat idle in transfer caches, releases free memory the
// demand of the last few seconds (JSMALLOC_RELEASE_DELAY) no longer needs,
// collapses dense large allocations into hugepages, and releases free memory
// at a steady rate if one is set (JSMALLOC_RELEASE_RATE), sending its madvise
// calls in batches through io_uring where the kernel allows it. While it runs,
// frees leave releasing to it.
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
  size_t madvise_interrupted_waits = 0;  // waits for io_uring completions interrupted (EINTR) and resumed
  size_t promoted_hugepages = 0;  // dense large allocations' hugepages collapsed
  bool auto_start = false;        // JSMALLOC_BACKGROUND=auto
};

// Starts the thread once; returns true if it runs (now or already).
bool StartBackgroundThread();
// JSMALLOC_BACKGROUND=auto: start it when the heap first grows past the
// threshold (called once the allocator is ready, and in a fork child).
void ArmBackgroundAutoStart();
void SetReleaseRate(size_t bytes_per_second);
BackgroundStats GetBackgroundStats();
// One cycle of the thread's work, `elapsed_ns` after the previous one
// (exposed so tests can drive it without the thread).
void BackgroundCycle(uint64_t now_ns, uint64_t elapsed_ns);
// In a fork child: the thread did not survive; allow starting a new one.
void BackgroundAfterForkChild();

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_BACKGROUND_H_
