// alloc_test: thread scaling of thread-local malloc/free. The same per-thread
// job (a random-replacement churn of small blocks over a private set of 2048
// slots, no sharing) runs with 1, then 2, then 4 threads; the time of each
// phase goes to stderr. An allocator that scales keeps the 2-thread phase
// near the 1-thread time on two cores; 4 threads on 2 cores take about twice.
#include <thread>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_alloc_test: thread scaling of thread-local malloc/free.\n"
    "Phases with 1, 2 and 4 threads (--threads N: only N); each thread does\n"
    "15M x scale free+malloc replacements of 8 B - 1 KiB (log-uniform) blocks over\n"
    "2048 private slots.\n";

constexpr uint64_t kOpsPerThread = 15000000;
constexpr size_t kSlots = 2048;

uint64_t Job(int id, uint64_t ops) {
  wl::Rng rng(60000 + id);
  void* slot[kSlots];
  uint32_t size[kSlots];
  uint64_t tag[kSlots];
  uint64_t sum = 0;
  for (size_t i = 0; i < kSlots; ++i) {
    size[i] = static_cast<uint32_t>(rng.LogUniform(8, 1024));
    tag[i] = wl::Mix64(i + (static_cast<uint64_t>(id) << 40));
    slot[i] = malloc(size[i]);
    if (slot[i] == nullptr) wl::Die("malloc returned NULL");
    wl::StampBlock(slot[i], size[i], tag[i]);
  }
  for (uint64_t op = 0; op < ops; ++op) {
    size_t i = rng.Below(kSlots);
    sum += wl::CheckBlock(slot[i], size[i], tag[i]);
    free(slot[i]);
    size[i] = static_cast<uint32_t>(rng.LogUniform(8, 1024));
    tag[i] = wl::Mix64(op ^ (static_cast<uint64_t>(id) << 40));
    slot[i] = malloc(size[i]);
    if (slot[i] == nullptr) wl::Die("malloc returned NULL");
    wl::StampBlock(slot[i], size[i], tag[i]);
  }
  for (size_t i = 0; i < kSlots; ++i) {
    sum += wl::CheckBlock(slot[i], size[i], tag[i]);
    free(slot[i]);
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const uint64_t ops = wl::Scaled(kOpsPerThread, args.scale, 1000);
  std::vector<int> phases = {1, 2, 4};
  if (args.threads) phases = {args.threads};
  double t0 = wl::NowSeconds();
  uint64_t sum = 0;
  for (int n : phases) {
    double a = wl::NowSeconds();
    std::vector<uint64_t> sums(n * 8, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < n; ++t) threads.emplace_back([&sums, t, ops] { sums[t * 8] = Job(t, ops); });
    for (std::thread& t : threads) t.join();
    for (int t = 0; t < n; ++t) sum = sum * 3 + sums[t * 8];
    double s = wl::NowSeconds() - a;
    fprintf(stderr, "wl: threads=%d seconds=%.3f mops_per_s=%.2f\n", n, s,
            static_cast<double>(ops) * n / s / 1e6);
  }
  return wl::Finish("alloc_test", sum, t0);
}
