// A small allocation churn for running the bpftrace scripts of probes/
// against: threads that keep a window of live blocks of mixed sizes (mostly
// small, some mid-size, a few of several MiB), a footprint that grows and
// shrinks in phases, and malloc_trim now and then, so spans come and go,
// hugepages fill, break and go back, and releases happen.
//
//   jsmalloc_probe_churn [milliseconds [threads]]     (default 1500 ms, 2 threads)
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

struct Rng {
  uint64_t s;
  uint64_t Next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  size_t Below(size_t n) { return static_cast<size_t>(Next() % n); }
};

size_t PickSize(Rng& r) {
  size_t roll = r.Below(1000);
  if (roll < 700) return 16 + r.Below(500);             // small
  if (roll < 950) return 512 + r.Below(32 * 1024);      // mid-size
  if (roll < 995) return 64 * 1024 + r.Below(192 * 1024);  // large classes
  return (1 + r.Below(6)) << 20;                        // several MiB
}

std::atomic<uint64_t> g_ops{0};

void Worker(int id, std::chrono::steady_clock::time_point end) {
  Rng r{0x9e3779b97f4a7c15ull * static_cast<uint64_t>(id + 1)};
  std::vector<void*> slots(32768, nullptr);
  uint64_t ops = 0;
  for (int phase = 0; std::chrono::steady_clock::now() < end; ++phase) {
    // Even phases use the whole window (the footprint grows), odd phases a
    // sixteenth of it (what lies outside is freed: the footprint shrinks).
    size_t window = phase % 2 == 0 ? slots.size() : slots.size() / 16;
    for (size_t i = window; i < slots.size(); ++i) {
      free(slots[i]);
      slots[i] = nullptr;
    }
    for (int k = 0; k < 200000 && std::chrono::steady_clock::now() < end; ++k) {
      size_t i = r.Below(window);
      free(slots[i]);
      size_t n = PickSize(r);
      slots[i] = malloc(n);
      if (slots[i] == nullptr) {
        fprintf(stderr, "churn: malloc(%zu) failed\n", n);
        exit(1);
      }
      memset(slots[i], static_cast<int>(k), n < 256 ? n : 256);
      ++ops;
    }
    if (id == 0) malloc_trim(0);
  }
  for (void* p : slots) free(p);
  g_ops.fetch_add(ops);
}

}  // namespace

int main(int argc, char** argv) {
  long ms = argc > 1 ? atol(argv[1]) : 1500;
  int threads = argc > 2 ? atoi(argv[2]) : 2;
  if (ms <= 0 || threads <= 0) {
    fprintf(stderr, "usage: %s [milliseconds [threads]]\n", argv[0]);
    return 2;
  }
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) ts.emplace_back(Worker, i, end);
  for (auto& t : ts) t.join();
  malloc_trim(0);
  printf("churn: %llu allocations in %ld ms on %d threads\n",
         static_cast<unsigned long long>(g_ops.load()), ms, threads);
  return 0;
}
