// large_churn: large allocations, 64 KiB - 64 MiB (log-uniform). A few
// threads each keep a handful of them alive, write every page of each new
// block, and repeatedly free one and allocate another. Measures how an
// allocator caches, maps and unmaps large spans (page faults, mmap/munmap,
// madvise), and the footprint that costs.
//
// The threads go in lockstep (all free, then all allocate, in each
// iteration), so that the bytes live at once follow the same course under
// every allocator. Free
// running, the peak of three threads' live sets was decided by the
// scheduler: the fast allocators (no page faults on reuse) let the threads
// drift apart and coincide at their peaks, and the same allocator's peak RSS
// varied from 490 to 840 MiB between runs. The peak of the bytes live
// (requested sizes, summed over threads) is printed beside the RSS.
#include <atomic>
#include <barrier>
#include <cstdio>
#include <thread>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_large_churn: large-block churn, 64 KiB - 64 MiB (log-uniform).\n"
    "T threads (default 3) each keep 4 live blocks; each iteration verifies and\n"
    "frees one, allocates a new one and writes every 4 KiB page of it; the\n"
    "threads wait for each other after the frees and after the writes. Prints\n"
    "the peak of the bytes live as `wl: mem live_kib=...`.\n"
    "250 iterations per thread x scale.\n";

constexpr uint64_t kIterations = 250;
constexpr int kLive = 4;

struct Block {
  void* p = nullptr;
  uint64_t tag = 0;
  size_t size = 0;
};

std::atomic<uint64_t> g_live{0}, g_peak_live{0};

void NoteLive(int64_t delta) {
  uint64_t now = g_live.fetch_add(static_cast<uint64_t>(delta)) + static_cast<uint64_t>(delta);
  uint64_t peak = g_peak_live.load();
  while (now > peak && !g_peak_live.compare_exchange_weak(peak, now)) {
  }
}

uint64_t Work(int id, uint64_t iters, std::barrier<>* step) {
  wl::Rng rng(4242 + id);
  Block live[kLive];
  uint64_t sum = 0;
  for (uint64_t i = 0; i < iters; ++i) {
    Block& b = live[rng.Below(kLive)];
    if (b.p != nullptr) {
      sum += wl::CheckBlock(b.p, b.size, b.tag);
      free(b.p);
      NoteLive(-static_cast<int64_t>(b.size));
    }
    step->arrive_and_wait();  // every thread's free before anyone's malloc
    b.size = rng.LogUniform(64 * 1024, 64 * 1024 * 1024);
    b.p = malloc(b.size);
    if (b.p == nullptr) wl::Die("malloc returned NULL");
    NoteLive(static_cast<int64_t>(b.size));
    b.tag = wl::Mix64((static_cast<uint64_t>(id) << 40) + i);
    wl::StampBlock(b.p, b.size, b.tag);
    step->arrive_and_wait();
  }
  for (Block& b : live) {
    if (b.p == nullptr) continue;
    sum += wl::CheckBlock(b.p, b.size, b.tag);
    free(b.p);
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const int nthreads = args.threads ? args.threads : 3;
  const uint64_t iters = wl::Scaled(kIterations, args.scale, 10);
  double t0 = wl::NowSeconds();
  std::vector<uint64_t> sums(nthreads * 8, 0);
  std::vector<std::thread> threads;
  std::barrier<> step(nthreads);
  for (int t = 0; t < nthreads; ++t)
    threads.emplace_back([&sums, &step, t, iters] { sums[t * 8] = Work(t, iters, &step); });
  for (std::thread& t : threads) t.join();
  uint64_t sum = 0;
  for (int t = 0; t < nthreads; ++t) sum += sums[t * 8];
  fprintf(stderr, "wl: mem live_kib=%llu\n", static_cast<unsigned long long>(g_peak_live.load() >> 10));
  return wl::Finish("large_churn", sum, t0);
}
