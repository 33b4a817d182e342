// Request latency for the benchmark programs (bench/workloads, bench/demo):
// a cheap clock and a log-linear histogram, so that a workload can time
// millions of requests without storing or sorting them. bench/run and
// scripts/demo read the same `wl: latency ...` line this prints.
#ifndef JSMALLOC_BENCH_LIB_LATENCY_H_
#define JSMALLOC_BENCH_LIB_LATENCY_H_

#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace bench {

inline uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Ticks of the invariant TSC where the CPU has one (rdtsc costs ~7 ns, a
// vDSO clock_gettime ~20 ns, which is a fifth of a small request), else
// CLOCK_MONOTONIC nanoseconds. ToNs() converts with a rate measured against
// CLOCK_MONOTONIC when the clock is first used (20 ms).
class TickClock {
 public:
  static TickClock& Get() {
    static TickClock clock;
    return clock;
  }
  uint64_t Now() const {
#if defined(__x86_64__)
    if (tsc_) {
      uint32_t lo, hi;
      asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
      return (static_cast<uint64_t>(hi) << 32) | lo;
    }
#endif
    return MonotonicNs();
  }
  uint64_t ToNs(uint64_t ticks) const { return static_cast<uint64_t>(static_cast<double>(ticks) * ns_per_tick_); }
  bool tsc() const { return tsc_; }

 private:
  TickClock() {
    tsc_ = HasInvariantTsc();
    if (!tsc_) return;
    uint64_t n0 = MonotonicNs(), t0 = Now();
    timespec pause = {0, 20000000};
    nanosleep(&pause, nullptr);
    uint64_t n1 = MonotonicNs(), t1 = Now();
    if (t1 <= t0 || n1 <= n0) {
      tsc_ = false;
      return;
    }
    ns_per_tick_ = static_cast<double>(n1 - n0) / static_cast<double>(t1 - t0);
  }
  static bool HasInvariantTsc() {
#if defined(__x86_64__)
    FILE* f = fopen("/proc/cpuinfo", "r");
    if (f == nullptr) return false;
    char line[4096];
    bool constant = false, nonstop = false;
    while (fgets(line, sizeof(line), f) != nullptr) {
      if (strncmp(line, "flags", 5) != 0) continue;
      constant = strstr(line, " constant_tsc") != nullptr;
      nonstop = strstr(line, " nonstop_tsc") != nullptr;
      break;
    }
    fclose(f);
    return constant && nonstop;
#else
    return false;
#endif
  }
  bool tsc_ = false;
  double ns_per_tick_ = 1.0;
};

// Latencies in nanoseconds in log-linear buckets: exact below 32 ns, then 32
// buckets per power of two (3% wide), so a percentile is read from counts
// within 3%. Merge per-thread histograms before reading them.
class LatencyHistogram {
 public:
  void Add(uint64_t ns) {
    ++counts_[Index(ns)];
    ++total_;
    if (ns > max_) max_ = ns;
  }
  void Merge(const LatencyHistogram& o) {
    for (int i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    if (o.max_ > max_) max_ = o.max_;
  }
  // The upper edge of the bucket holding the q-quantile (q in [0, 1]),
  // never above the largest value seen.
  uint64_t Quantile(double q) const {
    if (total_ == 0) return 0;
    uint64_t want = static_cast<uint64_t>(q * static_cast<double>(total_) + 0.5);
    if (want == 0) want = 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= want) return UpperEdge(i) < max_ ? UpperEdge(i) : max_;
    }
    return max_;
  }
  uint64_t max() const { return max_; }
  uint64_t total() const { return total_; }

  // One line for bench/run and scripts/demo:
  //   wl: latency requests=N seconds=S p50_ns=.. p90_ns=.. p99_ns=.. p999_ns=.. max_ns=..
  // `seconds` is the time the requests took (for requests per second).
  void Print(FILE* out, double seconds) const {
    fprintf(out,
            "wl: latency requests=%llu seconds=%.4f p50_ns=%llu p90_ns=%llu p99_ns=%llu p999_ns=%llu "
            "max_ns=%llu\n",
            static_cast<unsigned long long>(total_), seconds, static_cast<unsigned long long>(Quantile(0.5)),
            static_cast<unsigned long long>(Quantile(0.9)), static_cast<unsigned long long>(Quantile(0.99)),
            static_cast<unsigned long long>(Quantile(0.999)), static_cast<unsigned long long>(max_));
  }

  static int Index(uint64_t ns) {
    if (ns < kSub) return static_cast<int>(ns);
    int msb = 63 - __builtin_clzll(ns);
    int sub = static_cast<int>(ns >> (msb - 5)) - kSub;
    return kSub + (msb - 5) * kSub + sub;
  }
  static uint64_t UpperEdge(int i) {
    if (i < kSub) return static_cast<uint64_t>(i);
    int shift = (i - kSub) / kSub;
    uint64_t sub = static_cast<uint64_t>((i - kSub) % kSub) + kSub;
    return ((sub + 1) << shift) - 1;
  }

 private:
  static constexpr int kSub = 32;
  static constexpr int kBuckets = kSub + 59 * kSub;
  uint64_t counts_[kBuckets] = {};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

}  // namespace bench

#endif  // JSMALLOC_BENCH_LIB_LATENCY_H_
