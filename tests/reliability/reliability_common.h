// Helpers shared by the reliability tests (fork and threads, out of memory,
// soak). Every test binary links libjsmalloc, so malloc/free/new here are
// JSMalloc's. Objects carry a pattern derived from a per-object seed (not
// its address), so contents can be checked after realloc moved them, and an
// object handed out twice, lost, or written by the allocator is caught.
#ifndef JSMALLOC_TESTS_RELIABILITY_COMMON_H_
#define JSMALLOC_TESTS_RELIABILITY_COMMON_H_

#include <fcntl.h>
#include <jsmalloc/jsmalloc.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <random>

namespace reliability {

inline size_t Prop(const char* name) {
  size_t v = 0;
  if (jsmalloc_get_numeric_property(name, &v) == 0) {
    fprintf(stderr, "unknown property %s\n", name);
    abort();
  }
  return v;
}

// /proc/self/statm: field 1 is the address-space size, field 2 the resident
// set, both in pages. Read with plain syscalls (no stdio buffers), so it
// allocates nothing and can run in a process that is out of memory.
inline bool ReadStatm(size_t* vm_bytes, size_t* rss_bytes) {
  char buf[256];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  unsigned long long vm = 0, rss = 0;
  if (sscanf(buf, "%llu %llu", &vm, &rss) != 2) return false;
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (vm_bytes != nullptr) *vm_bytes = static_cast<size_t>(vm) * page;
  if (rss_bytes != nullptr) *rss_bytes = static_cast<size_t>(rss) * page;
  return true;
}

inline size_t RssBytes() {
  size_t rss = 0;
  ReadStatm(nullptr, &rss);
  return rss;
}

inline size_t VmSizeBytes() {
  size_t vm = 0;
  ReadStatm(&vm, nullptr);
  return vm;
}

// --- Patterned objects ---------------------------------------------------------
// Stamped positions: every byte of the first 64, one byte per 4 KiB (so every
// page of a large block is touched and counts in RSS), and the last byte.
inline unsigned char Tag(uint64_t seed, size_t i) {
  uint64_t x = (seed ^ (i * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
  return static_cast<unsigned char>(x >> 56);
}

template <typename F>
inline void ForEachStampedPosition(size_t size, size_t limit, F&& f) {
  if (size == 0) return;
  size_t head = size < 64 ? size : 64;
  for (size_t i = 0; i < head && i < limit; ++i) f(i);
  for (size_t i = 4096; i < size && i < limit; i += 4096) f(i);
  if (size - 1 >= head && size - 1 < limit && (size - 1) % 4096 != 0) f(size - 1);
}

inline void Stamp(unsigned char* p, size_t size, uint64_t seed) {
  ForEachStampedPosition(size, size, [&](size_t i) { p[i] = Tag(seed, i); });
}

// Checks the positions stamped for an object of `size` bytes that lie below
// `limit` (a realloc keeps only min(old, new) bytes).
inline bool CheckStamp(const unsigned char* p, size_t size, uint64_t seed, size_t limit = SIZE_MAX) {
  bool ok = true;
  ForEachStampedPosition(size, limit, [&](size_t i) { ok = ok && p[i] == Tag(seed, i); });
  return ok;
}

// What a failed CheckStamp found, for the failure message: the object, the
// first stamped position that differs (expected and found byte), how many
// differ and how many of those read zero (zeros point at memory released to
// the OS while in use; other values at memory handed out twice).
inline void DescribeDamage(const unsigned char* p, size_t size, uint64_t seed, char* out, size_t out_size,
                           size_t limit = SIZE_MAX) {
  size_t first = SIZE_MAX, differ = 0, zero = 0, checked = 0;
  ForEachStampedPosition(size, limit, [&](size_t i) {
    ++checked;
    if (p[i] == Tag(seed, i)) return;
    if (first == SIZE_MAX) first = i;
    ++differ;
    if (p[i] == 0) ++zero;
  });
  if (first == SIZE_MAX) {
    snprintf(out, out_size, "%p (%zu B): intact", static_cast<const void*>(p), size);
    return;
  }
  snprintf(out, out_size, "%p (%zu B): offset %zu expected 0x%02x found 0x%02x; %zu of %zu positions differ, %zu read 0",
           static_cast<const void*>(p), size, first, Tag(seed, first), p[first], differ, checked, zero);
}

inline bool StampedPositionsAreZero(const unsigned char* p, size_t size) {
  bool ok = true;
  ForEachStampedPosition(size, size, [&](size_t i) { ok = ok && p[i] == 0; });
  return ok;
}

struct Obj {
  unsigned char* p = nullptr;
  size_t size = 0;
  uint64_t seed = 0;
};

// Sizes for the fork and thread tests: mostly small, some medium, a few
// large (> 256 KiB, served by the back-end directly).
inline size_t MixedSize(std::mt19937_64& rng) {
  uint64_t r = rng() % 100;
  if (r < 70) return 1 + rng() % 512;
  if (r < 90) return 513 + rng() % 32768;
  if (r < 97) return 32768 + rng() % (256 * 1024);
  return 256 * 1024 + 1 + rng() % (1536 * 1024);
}

// --- Watchdog -------------------------------------------------------------------
// A deadlock must fail the test, not hang it until ctest's timeout: SIGALRM
// prints what was running and aborts (so the core or a debugger shows where
// every thread waits). Fork children inherit the handler and arm their own
// alarm (alarms are not inherited).
inline const char*& WatchdogWhat() {
  static const char* what = "test";
  return what;
}

inline void WatchdogHandler(int) {
  const char* what = WatchdogWhat();
  const char prefix[] = "\nwatchdog: deadlock or hang in ";
  ssize_t r = write(2, prefix, sizeof(prefix) - 1);
  r = write(2, what, strlen(what));
  char pid[64];
  int n = snprintf(pid, sizeof(pid), " (pid %d); aborting\n", static_cast<int>(getpid()));
  r = write(2, pid, static_cast<size_t>(n));
  (void)r;
  // JSMALLOC_TEST_WATCHDOG_PAUSE=1: stay stopped instead, so a debugger can
  // attach (gdb -p PID -batch -ex "thread apply all bt").
  const char* pause_env = getenv("JSMALLOC_TEST_WATCHDOG_PAUSE");
  if (pause_env != nullptr && pause_env[0] == '1') {
    for (;;) pause();
  }
  signal(SIGABRT, SIG_DFL);
  abort();
}

inline void ArmWatchdog(unsigned seconds, const char* what) {
  WatchdogWhat() = what;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = &WatchdogHandler;
  sigaction(SIGALRM, &sa, nullptr);
  alarm(seconds);
}

inline void DisarmWatchdog() { alarm(0); }

inline unsigned EnvUnsigned(const char* name, unsigned fallback) {
  const char* v = getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  unsigned long x = strtoul(v, &end, 10);
  if (end == v || *end != '\0') return fallback;
  return static_cast<unsigned>(x);
}

}  // namespace reliability

#endif  // JSMALLOC_TESTS_RELIABILITY_COMMON_H_
