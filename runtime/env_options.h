// Run-time settings from JSMALLOC_* environment variables, read once at
// initialisation. A malformed value prints one warning line and keeps the
// default. docs/tuning.md lists every variable.
#ifndef JSMALLOC_RUNTIME_ENV_OPTIONS_H_
#define JSMALLOC_RUNTIME_ENV_OPTIONS_H_

#include <cstddef>
#include <cstdint>

// The CMake option JSMALLOC_NUMA_AWARE_DEFAULT makes NUMA-aware mode the
// default of a build.
#ifndef JSMALLOC_NUMA_AWARE_DEFAULT
#define JSMALLOC_NUMA_AWARE_DEFAULT 0
#endif
// The CMake option JSMALLOC_HARDENED_DEFAULT turns freelist encoding on by
// default.
#ifndef JSMALLOC_HARDENED_DEFAULT
#define JSMALLOC_HARDENED_DEFAULT 0
#endif

namespace jsmalloc {

struct Options {
  bool stats_on_exit = false;                       // JSMALLOC_STATS_ON_EXIT=1 or =/path
  char stats_path[256] = {};                        // report appended here instead of stderr
  int per_cpu = -1;                                 // JSMALLOC_PER_CPU: -1 auto, 0 off, 1 on
  size_t max_per_cpu_cache_bytes = 3 << 20;         // JSMALLOC_MAX_PER_CPU_CACHE_BYTES
  size_t max_total_thread_cache_bytes = 32 << 20;   // JSMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES
  size_t page_heap_keep_free_bytes = 32 << 20;      // JSMALLOC_PAGE_HEAP_KEEP_FREE_BYTES
  bool legacy_page_heap = false;                    // JSMALLOC_BACKEND=legacy|hugepage
  bool collapse = false;                            // JSMALLOC_COLLAPSE
  int khugepaged_guard = -1;                        // JSMALLOC_KHUGEPAGED_GUARD: -1 auto, 0 off, 1 on
  bool release_with_madv_free = false;              // JSMALLOC_RELEASE_ADVICE=free|dontneed
  bool background = false;                          // JSMALLOC_BACKGROUND
  size_t release_rate = 4 << 20;                    // JSMALLOC_RELEASE_RATE (bytes/s)
  bool io_uring = true;                             // JSMALLOC_IO_URING
  size_t memory_limit = 0;                          // JSMALLOC_MEMORY_LIMIT (0: none)
  bool memory_limit_hard = false;                   // JSMALLOC_MEMORY_LIMIT_HARD
  size_t sample_interval = 2 << 20;                 // JSMALLOC_SAMPLE_INTERVAL (0: off)
  char heap_profile_on_exit[256] = {};              // JSMALLOC_HEAP_PROFILE_ON_EXIT (path)
  int heap_profile_signal = 0;                      // JSMALLOC_HEAP_PROFILE_SIGNAL (0: none)
  char heap_profile_prefix[256] = {};               // JSMALLOC_HEAP_PROFILE_PREFIX (signal dumps)
  bool numa_aware = JSMALLOC_NUMA_AWARE_DEFAULT != 0;  // JSMALLOC_NUMA_AWARE
  uint8_t numa_bind = 1;                            // JSMALLOC_NUMA_BIND: 0 none, 1 preferred, 2 strict
  char numa_topology[256] = {};                     // JSMALLOC_NUMA_TOPOLOGY (injected, "0-1;2-3")
  bool check = false;                               // JSMALLOC_CHECK: sized-delete size checks
  bool hardened = JSMALLOC_HARDENED_DEFAULT != 0;   // JSMALLOC_HARDENED: encoded freelist links
  size_t guarded_rate = 0;                          // JSMALLOC_GUARDED_RATE: 1 in N samples guarded (0: off)
  size_t guarded_slots = 64;                        // JSMALLOC_GUARDED_SLOTS: guarded allocations at once
};

// Parses the environment into *out (which holds the defaults on entry).
void ParseOptions(Options* out);

// Prints the one warning line of a malformed setting.
void WarnBadOption(const char* name, const char* value, const char* expected, const char* dflt);

// Parsers shared with tests. Return false (leaving *out alone) on bad input.
bool ParseBool(const char* s, bool* out);
// Accepts a decimal number with an optional K, M or G suffix (powers of 1024).
bool ParseSize(const char* s, size_t* out);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_ENV_OPTIONS_H_
