// fragmentation: allocate millions of small objects, free most of them in a
// scattered pattern, then allocate larger objects totalling about the freed
// amount. An allocator that cannot reuse the holes left by the small objects
// for the larger ones grows its footprint. Repeated for a few rounds; RSS
// (VmRSS, VmHWM from /proc/self/status) at each stage goes to stderr.
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_fragmentation: small objects, scattered frees, then larger objects.\n"
    "Single-threaded. 4 rounds of: allocate 4M x scale objects of 16-64 B, free 90%\n"
    "of them (scattered), allocate 256 B - 4 KiB objects totalling the freed\n"
    "bytes, free everything. RSS per stage and hugepage figures on stderr.\n";

constexpr uint64_t kSmallObjects = 4000000;
constexpr int kRounds = 4;

struct Obj {
  void* p;
  uint32_t size;
};

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const uint64_t n = wl::Scaled(kSmallObjects, args.scale, 10000);
  double t0 = wl::NowSeconds();
  uint64_t sum = 0;
  wl::Rng rng(31337);
  long peak_after_large = 0;

  std::vector<Obj> small(n);
  std::vector<Obj> large;
  large.reserve(n / 8);
  for (int round = 0; round < kRounds; ++round) {
    uint64_t salt = static_cast<uint64_t>(round) << 56;
    for (uint64_t i = 0; i < n; ++i) {
      uint32_t size = static_cast<uint32_t>(rng.Range(16, 64));
      void* p = malloc(size);
      if (p == nullptr) wl::Die("malloc returned NULL");
      wl::StampBlock(p, size, wl::Mix64(salt + i));
      small[i] = Obj{p, size};
    }
    if (round == 0) wl::PrintMem("small_allocated");
    // Free 90%, scattered: keep the objects whose hash falls in one decile.
    uint64_t freed = 0;
    for (uint64_t i = 0; i < n; ++i) {
      if (wl::Mix64(i ^ salt) % 10 == (static_cast<uint64_t>(round) % 10)) continue;
      sum += wl::CheckBlock(small[i].p, small[i].size, wl::Mix64(salt + i));
      free(small[i].p);
      freed += small[i].size;
      small[i].p = nullptr;
    }
    if (round == 0) wl::PrintMem("small_freed");
    // Larger objects (log-uniform 256 B - 4 KiB) totalling the freed bytes.
    uint64_t total = 0;
    uint64_t k = 0;
    while (total < freed) {
      uint32_t size = static_cast<uint32_t>(rng.LogUniform(256, 4096));
      void* p = malloc(size);
      if (p == nullptr) wl::Die("malloc returned NULL");
      wl::StampBlock(p, size, wl::Mix64(salt + (1ULL << 40) + k));
      large.push_back(Obj{p, size});
      total += size;
      ++k;
    }
    wl::MemStatus m = wl::ReadMemStatus();
    if (m.rss_kib > peak_after_large) peak_after_large = m.rss_kib;
    if (round == kRounds - 1) {
      wl::PrintMem("large_allocated");
      wl::PrintHuge("large_allocated", wl::ReadHugeStatus());
    }
    // Tear down: the survivors of the small phase, then the large objects.
    for (uint64_t i = 0; i < n; ++i) {
      if (small[i].p == nullptr) continue;
      sum += wl::CheckBlock(small[i].p, small[i].size, wl::Mix64(salt + i));
      free(small[i].p);
    }
    for (uint64_t j = 0; j < large.size(); ++j) {
      sum += wl::CheckBlock(large[j].p, large[j].size, wl::Mix64(salt + (1ULL << 40) + j));
      free(large[j].p);
    }
    large.clear();
  }
  fprintf(stderr, "wl: max_rss_after_large_kib=%ld\n", peak_after_large);
  return wl::Finish("fragmentation", sum, t0);
}
