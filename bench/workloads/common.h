// Shared helpers for the benchmark workloads (bench/workloads/wl_*.cc).
//
// The workloads are ordinary programs that use malloc/free/new/delete; they
// link no allocator, so bench/run can swap allocators with LD_PRELOAD. Every
// program is deterministic (fixed seeds, its own PRNG) and prints one line
// `checksum <hex>` on stdout that must be the same under every allocator.
// Diagnostics (RSS, hugepage figures, the allocator libraries mapped into the
// process) go to stderr as `wl: key=value ...` lines that bench/run parses.
#ifndef JSMALLOC_BENCH_WORKLOADS_COMMON_H_
#define JSMALLOC_BENCH_WORKLOADS_COMMON_H_

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace wl {

// ---------------------------------------------------------------- PRNG ----

inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// splitmix64: small, fast, good enough for picking sizes and slots.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL) {}
  uint64_t Next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return Mix64(state_);
  }
  // Uniform in [0, n), n > 0 (multiply-shift; the bias is irrelevant here).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }
  // Uniform in [lo, hi].
  uint64_t Range(uint64_t lo, uint64_t hi) { return lo + Below(hi - lo + 1); }
  // Log-uniform in [lo, hi]: a power-of-two band first, then uniform in it.
  uint64_t LogUniform(uint64_t lo, uint64_t hi) {
    int lo_bit = 63 - __builtin_clzll(lo);
    int hi_bit = 63 - __builtin_clzll(hi);
    int b = lo_bit + static_cast<int>(Below(hi_bit - lo_bit + 1));
    uint64_t band_lo = uint64_t{1} << b;
    uint64_t band_hi = (band_lo << 1) - 1;
    if (band_lo < lo) band_lo = lo;
    if (band_hi > hi) band_hi = hi;
    return Range(band_lo, band_hi);
  }
  // True with probability num/den.
  bool Chance(uint64_t num, uint64_t den) { return Below(den) < num; }

 private:
  uint64_t state_;
};

// ------------------------------------------------------------ arguments --

struct Args {
  double scale = 1.0;
  int threads = 0;  // 0: the workload's default
  bool help = false;
};

// Parses --scale F, --threads N and --help. Unknown options are an error.
inline Args ParseArgs(int argc, char** argv, const char* usage) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const char* s = argv[i];
    auto value = [&](const char* name) -> const char* {
      size_t n = strlen(name);
      if (strncmp(s, name, n) == 0 && s[n] == '=') return s + n + 1;
      if (strcmp(s, name) == 0 && i + 1 < argc) return argv[++i];
      return nullptr;
    };
    const char* v;
    if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
      a.help = true;
    } else if ((v = value("--scale")) != nullptr) {
      a.scale = strtod(v, nullptr);
      if (!(a.scale > 0.0 && a.scale < 1000.0)) {
        fprintf(stderr, "%s: bad --scale '%s'\n", argv[0], v);
        exit(2);
      }
    } else if ((v = value("--threads")) != nullptr) {
      a.threads = atoi(v);
      if (a.threads < 1 || a.threads > 256) {
        fprintf(stderr, "%s: bad --threads '%s'\n", argv[0], v);
        exit(2);
      }
    } else {
      fprintf(stderr, "%s: unknown argument '%s' (try --help)\n", argv[0], s);
      exit(2);
    }
  }
  if (a.help) {
    fputs(usage, stdout);
    fputs("\nCommon options:\n"
          "  --scale F     multiply the iteration counts by F (default 1.0)\n"
          "  --threads N   number of worker threads (workload default otherwise)\n"
          "  --help        this text\n"
          "\nOutput: `checksum <hex>` on stdout (identical under every allocator);\n"
          "`wl: ...` diagnostics on stderr.\n",
          stdout);
    exit(0);
  }
  return a;
}

// Scales an iteration count, keeping at least `min`.
inline uint64_t Scaled(uint64_t n, double scale, uint64_t min = 1) {
  double v = static_cast<double>(n) * scale;
  uint64_t r = static_cast<uint64_t>(v);
  return r < min ? min : r;
}

// -------------------------------------------------------------- output --

[[noreturn]] inline void Die(const char* what) {
  fprintf(stderr, "wl: FAILED: %s\n", what);
  fflush(stderr);
  _exit(3);
}

inline void PrintChecksum(uint64_t sum) {
  printf("checksum %016" PRIx64 "\n", sum);
  fflush(stdout);
}

inline double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Reads a whole /proc file into buf without allocating (returns bytes read).
inline size_t ReadProcFile(const char* path, char* buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r <= 0) break;
    n += static_cast<size_t>(r);
  }
  close(fd);
  buf[n] = '\0';
  return n;
}

// Value in kB of a "Key:   123 kB" line in a /proc file body, or -1.
inline long FindKib(const char* body, const char* key) {
  size_t klen = strlen(key);
  const char* p = body;
  while (p != nullptr && *p != '\0') {
    if (strncmp(p, key, klen) == 0 && p[klen] == ':') return strtol(p + klen + 1, nullptr, 10);
    p = strchr(p, '\n');
    if (p != nullptr) ++p;
  }
  return -1;
}

struct MemStatus {
  long rss_kib = -1;  // VmRSS
  long hwm_kib = -1;  // VmHWM (peak RSS)
};

inline MemStatus ReadMemStatus() {
  static char buf[8192];
  MemStatus m;
  if (ReadProcFile("/proc/self/status", buf, sizeof(buf)) > 0) {
    m.rss_kib = FindKib(buf, "VmRSS");
    m.hwm_kib = FindKib(buf, "VmHWM");
  }
  return m;
}

// RSS from /proc/self/statm through a descriptor opened once: pread into a
// stack buffer, so a sampler can call it while the process must not allocate.
class Statm {
 public:
  Statm() : fd_(open("/proc/self/statm", O_RDONLY | O_CLOEXEC)), page_kib_(sysconf(_SC_PAGESIZE) / 1024) {}
  ~Statm() {
    if (fd_ >= 0) close(fd_);
  }
  Statm(const Statm&) = delete;
  Statm& operator=(const Statm&) = delete;
  // Resident set (KiB), or -1. `anon_kib` (optional): resident minus the
  // file-backed and shared pages, i.e. RssAnon.
  long RssKib(long* anon_kib = nullptr) const {
    char buf[160];
    ssize_t n = fd_ >= 0 ? pread(fd_, buf, sizeof(buf) - 1, 0) : -1;
    if (n <= 0) return -1;
    buf[n] = '\0';
    char* end;
    strtoul(buf, &end, 10);  // total program size
    unsigned long resident = strtoul(end, &end, 10);
    unsigned long shared = strtoul(end, nullptr, 10);
    if (anon_kib != nullptr) anon_kib[0] = static_cast<long>((resident - shared) * page_kib_);
    return static_cast<long>(resident * page_kib_);
  }
  // Virtual size (KiB), or -1.
  long VirtKib() const {
    char buf[160];
    ssize_t n = fd_ >= 0 ? pread(fd_, buf, sizeof(buf) - 1, 0) : -1;
    if (n <= 0) return -1;
    buf[n] = '\0';
    return static_cast<long>(strtoul(buf, nullptr, 10) * page_kib_);
  }

 private:
  int fd_;
  long page_kib_;
};

// Sleeps until `deadline` (seconds on NowSeconds()'s clock, CLOCK_MONOTONIC);
// no allocation.
inline void SleepUntil(double deadline) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(deadline);
  ts.tv_nsec = static_cast<long>((deadline - static_cast<double>(ts.tv_sec)) * 1e9);
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec += 1;
    ts.tv_nsec -= 1000000000L;
  }
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

// Fills every byte of a block from its tag (8-byte words tag ^ index*odd,
// the last partial word truncated), and checks it; CheckFull returns a value
// to fold into the checksum.
inline uint64_t FillWord(uint64_t tag, size_t i) { return tag ^ (i * 0x9e3779b97f4a7c15ULL); }

inline void FillFull(void* p, size_t size, uint64_t tag) {
  auto* c = static_cast<unsigned char*>(p);
  size_t words = size / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t v = FillWord(tag, i);
    memcpy(c + 8 * i, &v, 8);
  }
  uint64_t last = FillWord(tag, words);
  memcpy(c + 8 * words, &last, size - 8 * words);
}

inline uint64_t CheckFull(const void* p, size_t size, uint64_t tag) {
  const auto* c = static_cast<const unsigned char*>(p);
  size_t words = size / 8;
  uint64_t acc = 0;
  for (size_t i = 0; i < words; ++i) {
    uint64_t v;
    memcpy(&v, c + 8 * i, 8);
    if (v != FillWord(tag, i)) Die("block contents corrupted");
    acc += v;
  }
  uint64_t last = FillWord(tag, words), got = 0;
  memcpy(&got, c + 8 * words, size - 8 * words);
  uint64_t want = 0;
  memcpy(&want, &last, size - 8 * words);
  if (got != want) Die("block tail corrupted");
  return Mix64(tag + size) ^ acc;
}

struct HugeStatus {
  long anon_kib = -1;       // Anonymous
  long anon_huge_kib = -1;  // AnonHugePages
  long rss_kib = -1;        // Rss
};

// From /proc/self/smaps_rollup (walks the page tables: not for hot loops).
inline HugeStatus ReadHugeStatus() {
  static char buf[8192];
  HugeStatus h;
  if (ReadProcFile("/proc/self/smaps_rollup", buf, sizeof(buf)) > 0) {
    h.anon_kib = FindKib(buf, "Anonymous");
    h.anon_huge_kib = FindKib(buf, "AnonHugePages");
    h.rss_kib = FindKib(buf, "Rss");
  }
  return h;
}

inline void PrintMem(const char* stage) {
  MemStatus m = ReadMemStatus();
  fprintf(stderr, "wl: stage=%s rss_kib=%ld hwm_kib=%ld\n", stage, m.rss_kib, m.hwm_kib);
}

inline void PrintHuge(const char* stage, const HugeStatus& h) {
  fprintf(stderr, "wl: stage=%s thp_kib=%ld anon_kib=%ld smaps_rss_kib=%ld\n", stage,
          h.anon_huge_kib, h.anon_kib, h.rss_kib);
}

// Prints which allocator libraries are mapped into this process, so that
// bench/run can check that its LD_PRELOAD took effect:
//   wl: allocator-libs=libjemalloc.so.2     (or =none)
inline void PrintAllocatorLibs() {
  static char buf[1 << 20];
  size_t n = ReadProcFile("/proc/self/maps", buf, sizeof(buf));
  static const char* const kNames[] = {"libjemalloc", "libtcmalloc", "libmimalloc", "libjsmalloc"};
  char out[512];
  size_t o = 0;
  out[0] = '\0';
  for (const char* name : kNames) {
    const char* hit = n > 0 ? strstr(buf, name) : nullptr;
    if (hit == nullptr) continue;
    const char* end = hit;
    while (*end != '\0' && *end != '\n' && *end != ' ') ++end;
    int len = static_cast<int>(end - hit);
    o += snprintf(out + o, sizeof(out) - o, "%s%.*s", o ? "," : "", len, hit);
    if (o >= sizeof(out)) break;
  }
  fprintf(stderr, "wl: allocator-libs=%s\n", o ? out : "none");
}

// Ends a workload: diagnostics to stderr, the checksum to stdout.
inline int Finish(const char* name, uint64_t checksum, double t0) {
  fprintf(stderr, "wl: workload=%s seconds=%.3f\n", name, NowSeconds() - t0);
  PrintMem("exit");
  PrintAllocatorLibs();
  fflush(stderr);
  PrintChecksum(checksum);
  return 0;
}

// Keeps the compiler from proving a store dead or a buffer unused.
inline void Escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

// Fills a block with a tag: the first and last 8 bytes (the whole block when
// it is shorter than 16 bytes) plus one word in every 4 KiB page in between,
// so that every page is touched and the tag can be verified on free.
inline void StampBlock(void* p, size_t size, uint64_t tag) {
  auto* c = static_cast<unsigned char*>(p);
  if (size < 16) {
    for (size_t i = 0; i < size; ++i) c[i] = static_cast<unsigned char>(tag >> (8 * (i & 7)));
    return;
  }
  memcpy(c, &tag, 8);
  for (size_t off = 4096; off + 8 <= size - 8; off += 4096) {
    uint64_t v = tag ^ off;
    memcpy(c + off, &v, 8);
  }
  uint64_t tail = ~tag;
  memcpy(c + size - 8, &tail, 8);
}

// Verifies a StampBlock tag and returns a value to fold into the checksum.
inline uint64_t CheckBlock(const void* p, size_t size, uint64_t tag) {
  const auto* c = static_cast<const unsigned char*>(p);
  if (size < 16) {
    for (size_t i = 0; i < size; ++i)
      if (c[i] != static_cast<unsigned char>(tag >> (8 * (i & 7)))) Die("block contents corrupted");
    return Mix64(tag + size);
  }
  uint64_t head, tail;
  memcpy(&head, c, 8);
  memcpy(&tail, c + size - 8, 8);
  if (head != tag || tail != ~tag) Die("block contents corrupted");
  uint64_t acc = 0;
  for (size_t off = 4096; off + 8 <= size - 8; off += 4096) {
    uint64_t v;
    memcpy(&v, c + off, 8);
    if (v != (tag ^ off)) Die("block page contents corrupted");
    acc += v;
  }
  return Mix64(tag + size) ^ acc;
}

}  // namespace wl

#endif  // JSMALLOC_BENCH_WORKLOADS_COMMON_H_
