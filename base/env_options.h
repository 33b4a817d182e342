// Run-time settings, read once at initialisation from JSMALLOC_OPTIONS
// ("name=value,name=value", like jemalloc's MALLOC_CONF) and from one
// JSMALLOC_<NAME> variable per setting; a variable overrides the same setting
// in JSMALLOC_OPTIONS. A malformed value prints one warning line saying what
// the value should look like and keeps the default; an unknown name prints one
// warning naming the closest known setting. docs/tuning.md lists every one.
#ifndef JSMALLOC_BASE_ENV_OPTIONS_H_
#define JSMALLOC_BASE_ENV_OPTIONS_H_

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

// Paths are made absolute at start-up (against the working directory then),
// so a later chdir does not move a report.
constexpr size_t kOptionPathLen = 256;

struct Options {
  bool stats_on_exit = false;                       // stats_on_exit: 1, or a path (implies stats_file)
  char stats_file[kOptionPathLen] = {};             // stats_file: reports appended here instead of stderr
  int stats_signal = 0;                             // stats_signal: a report on this signal (0: none)
  bool stats_wide = false;                          // stats_wide: the per-class table with every column
  int per_cpu = -1;                                 // per_cpu: -1 auto, 0 off, 1 on
  size_t max_per_cpu_cache_bytes = 3 << 20;         // max_per_cpu_cache_bytes
  size_t max_total_thread_cache_bytes = 32 << 20;   // max_total_thread_cache_bytes
  size_t page_heap_keep_free_bytes = 32 << 20;      // page_heap_keep_free_bytes
  bool legacy_page_heap = false;                    // backend=legacy|hugepage
  bool collapse = false;                            // collapse
  bool large_huge = false;                          // large_pages=huge|adaptive
  bool release_growing = true;                      // release_growing: large frees above the largest yet released
  int khugepaged_guard = -1;                        // khugepaged_guard: -1 auto, 0 off, 1 on
  bool release_with_madv_free = false;              // release_advice=free|dontneed
  int background = -1;                              // background: -1 auto, 0 off, 1 at start
  size_t release_rate = 0;                          // release_rate (bytes/s)
  size_t release_delay = 5;                         // release_delay (seconds, 1..16)
  bool io_uring = true;                             // io_uring
  size_t memory_limit = 0;                          // memory_limit (0: none)
  bool memory_limit_hard = false;                   // memory_limit_hard
  size_t sample_interval = 2 << 20;                 // sample_interval (0: off)
  char heap_profile_on_exit[kOptionPathLen] = {};   // heap_profile_on_exit (path)
  int heap_profile_signal = 0;                      // heap_profile_signal (0: none)
  char heap_profile_prefix[kOptionPathLen] = {};    // heap_profile_prefix (signal dumps)
  bool numa_aware = JSMALLOC_NUMA_AWARE_DEFAULT != 0;  // numa_aware
  uint8_t numa_bind = 1;                            // numa_bind: 0 none, 1 preferred, 2 strict
  char numa_topology[kOptionPathLen] = {};          // numa_topology (injected, "0-1;2-3")
  bool check = false;                               // check: every free validated
  bool hardened = JSMALLOC_HARDENED_DEFAULT != 0;   // hardened: encoded freelist links
  size_t guarded_rate = 0;                          // guarded_rate: 1 in N samples guarded (0: off)
  size_t guarded_slots = 64;                        // guarded_slots: guarded allocations at once
};

// Parses the process environment into *out (which holds the defaults on
// entry), warning on stderr about what it cannot use.
void ParseOptions(Options* out);
// The same over a given environment block ("NAME=value" strings, NULL-ended),
// for tests.
void ParseOptionsFrom(char* const* env, Options* out);

// Prints the one warning line of a malformed setting.
void WarnBadOption(const char* name, const char* value, const char* expected, const char* dflt);

// Parsers shared with tests. Return false (leaving *out alone) on bad input.
bool ParseBool(const char* s, bool* out);
// Accepts a decimal number with an optional K, M or G suffix (powers of 1024).
bool ParseSize(const char* s, size_t* out);
// A catchable signal: a number (1-64 but 9 and 19) or a name with or without
// "SIG" (USR1, SIGUSR2, ...).
bool ParseSignal(const char* s, int* out);

// Levenshtein distance of two short strings, case-insensitive (for "did you
// mean"); strings longer than 63 bytes compare as far apart.
int EditDistance(const char* a, const char* b);

// The settings' names as JSMALLOC_OPTIONS spells them (lower case); the
// variable of each is "JSMALLOC_" + the name in upper case. Returns how many
// there are and stores up to `max` of them.
size_t OptionNames(const char** names, size_t max);

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_ENV_OPTIONS_H_
