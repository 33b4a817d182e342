// bench/lib/latency.h: the histogram that bench/run's and the demo's latency
// percentiles come from, and the clock that times the requests.
#include "../../bench/lib/latency.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>

namespace {

using bench::LatencyHistogram;

TEST(LatencyHistogram, SmallValuesAreExact) {
  LatencyHistogram h;
  for (uint64_t v = 0; v < 32; ++v) h.Add(v);
  EXPECT_EQ(h.total(), 32u);
  EXPECT_EQ(h.Quantile(0.5), 15u);  // the 16th of 0..31
  EXPECT_EQ(h.Quantile(1.0), 31u);
  EXPECT_EQ(h.max(), 31u);
}

TEST(LatencyHistogram, BucketsAreLogLinearWithinThreePercent) {
  // Every value falls in a bucket whose upper edge is at most 1/32 above it,
  // and the edges rise with the index.
  uint64_t prev_edge = 0;
  for (int i = 0; i < 32 + 40 * 32; ++i) {
    uint64_t edge = LatencyHistogram::UpperEdge(i);
    if (i > 0) ASSERT_GT(edge, prev_edge) << i;
    prev_edge = edge;
  }
  for (uint64_t v : {33ull, 100ull, 1000ull, 12345ull, 999999ull, 123456789ull, 1ull << 40}) {
    int i = LatencyHistogram::Index(v);
    uint64_t edge = LatencyHistogram::UpperEdge(i);
    EXPECT_GE(edge, v);
    EXPECT_LE(static_cast<double>(edge - v), static_cast<double>(v) / 32.0 + 1) << v;
    if (i > 0) EXPECT_LT(LatencyHistogram::UpperEdge(i - 1), v) << v;
  }
}

TEST(LatencyHistogram, PercentilesOfAUniformSpread) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 100000; ++v) h.Add(v * 10);  // 10 ns .. 1 ms
  const struct {
    double q;
    double want;
  } cases[] = {{0.5, 500000}, {0.9, 900000}, {0.99, 990000}, {0.999, 999000}};
  for (const auto& c : cases) {
    double got = static_cast<double>(h.Quantile(c.q));
    EXPECT_GE(got, c.want * 0.999) << c.q;
    EXPECT_LE(got, c.want * (1 + 1.0 / 32)) << c.q;
  }
  EXPECT_EQ(h.Quantile(1.0), 1000000u);  // never above the largest value seen
}

TEST(LatencyHistogram, MergeAddsCountsAndKeepsTheMax) {
  LatencyHistogram a, b;
  for (int i = 0; i < 900; ++i) a.Add(100);
  for (int i = 0; i < 100; ++i) b.Add(100000);
  b.Add(7777777);
  a.Merge(b);
  EXPECT_EQ(a.total(), 1001u);
  EXPECT_EQ(a.max(), 7777777u);
  EXPECT_LE(a.Quantile(0.5), 103u);
  EXPECT_GE(a.Quantile(0.95), 100000u);
}

TEST(LatencyHistogram, EmptyReadsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.Quantile(0.99), 0u);
  EXPECT_EQ(h.max(), 0u);
}

TEST(LatencyHistogram, PrintsTheLineBenchRunParses) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 1000; ++v) h.Add(v * 1000);
  char buf[512] = {};
  FILE* f = fmemopen(buf, sizeof(buf) - 1, "w");
  ASSERT_NE(f, nullptr);
  h.Print(f, 2.5);
  fclose(f);
  unsigned long long n, p50, p90, p99, p999, mx;
  double s;
  ASSERT_EQ(sscanf(buf,
                   "wl: latency requests=%llu seconds=%lf p50_ns=%llu p90_ns=%llu p99_ns=%llu p999_ns=%llu "
                   "max_ns=%llu",
                   &n, &s, &p50, &p90, &p99, &p999, &mx),
            7)
      << buf;
  EXPECT_EQ(n, 1000u);
  EXPECT_DOUBLE_EQ(s, 2.5);
  EXPECT_LE(p50, p90);
  EXPECT_LE(p90, p99);
  EXPECT_LE(p99, p999);
  EXPECT_LE(p999, mx);
  EXPECT_EQ(mx, 1000000u);
}

TEST(TickClock, AgreesWithTheMonotonicClock) {
  const bench::TickClock& c = bench::TickClock::Get();
  uint64_t n0 = bench::MonotonicNs(), t0 = c.Now();
  usleep(50000);
  uint64_t n1 = bench::MonotonicNs(), t1 = c.Now();
  ASSERT_GT(t1, t0);
  double wall = static_cast<double>(n1 - n0), measured = static_cast<double>(c.ToNs(t1 - t0));
  // Calibrated over 20 ms: within 5% (a preempted read moves both clocks).
  EXPECT_NEAR(measured / wall, 1.0, 0.05) << (c.tsc() ? "TSC" : "CLOCK_MONOTONIC");
}

}  // namespace
