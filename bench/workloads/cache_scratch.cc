// cache_scratch: false-sharing and locality probe, after the classic
// cache-scratch / cache-thrash tests. Three phases, repeated for several
// passes (each pass timed on stderr):
//  - passive: the main thread allocates one small object per thread, back to
//    back, and hands them out; each thread frees its object, then repeatedly
//    allocates a small object, writes it many times and frees it. An
//    allocator that gives the freed neighbours to different threads makes
//    them write to one cache line.
//  - active: the same without the hand-off (threads allocate concurrently).
//  - locality: each thread builds a linked list of small nodes while the
//    other threads do the same, then walks and updates it repeatedly; an
//    allocator that interleaves the threads' nodes costs cache misses.
#include <atomic>
#include <thread>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_cache_scratch: false-sharing / locality probe.\n"
    "T threads (default 2). 12 passes of three phases, 150k x scale objects per\n"
    "thread and phase: passive false sharing (8 B objects allocated by main, freed\n"
    "by the workers, then 8 B objects allocated, written 400 times and freed),\n"
    "active false sharing (workers allocate 8, 16 or 32 B objects concurrently and write\n"
    "them 400 times), and locality (per-thread linked lists of 32 B nodes built\n"
    "concurrently, then walked 40 times).\n";

constexpr int kPasses = 12;
constexpr uint64_t kObjectsPerThread = 150000;  // per pass and phase
constexpr int kWritesPerObject = 400;
constexpr uint64_t kListNodes = 150000;
constexpr int kListWalks = 40;

// Writes `obj` `writes` times through a volatile pointer so that every store
// reaches the cache; returns a value of the final contents.
uint64_t Scribble(void* obj, size_t size, int writes, uint64_t seed) {
  volatile unsigned char* c = static_cast<volatile unsigned char*>(obj);
  for (size_t i = 0; i < size; ++i) c[i] = static_cast<unsigned char>(seed + i);
  for (int w = 0; w < writes; ++w) {
    size_t i = static_cast<size_t>(w) & (size - 1);  // size: a power of two
    c[i] = static_cast<unsigned char>(c[i] + w + 1);
  }
  uint64_t v = 0;
  for (size_t i = 0; i < size; ++i) v = v * 131 + c[i];
  return v;
}

struct Node {
  Node* next;
  uint64_t value;
  uint64_t pad[2];
};

struct Barrier {
  explicit Barrier(int n) : n_(n) {}
  void Wait() {
    int gen = gen_.load();
    if (count_.fetch_add(1) + 1 == n_) {
      count_.store(0);
      gen_.fetch_add(1);
    } else {
      while (gen_.load() == gen) std::this_thread::yield();
    }
  }
  int n_;
  std::atomic<int> count_{0};
  std::atomic<int> gen_{0};
};

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const int nthreads = args.threads ? args.threads : 2;
  const uint64_t objects = wl::Scaled(kObjectsPerThread, args.scale, 100);
  const uint64_t nodes = wl::Scaled(kListNodes, args.scale, 100);
  double t0 = wl::NowSeconds();

  std::vector<uint64_t> sums(nthreads * 8, 0);  // 8 apart: no sharing here
  Barrier barrier(nthreads + 1);
  std::vector<void*> handed(nthreads, nullptr);
  double phase_seconds[3] = {0, 0, 0};

  std::vector<std::thread> threads;
  for (int t = 0; t < nthreads; ++t) {
    threads.emplace_back([&, t] {
      wl::Rng rng(500 + t);
      uint64_t sum = 0;
      for (int pass = 0; pass < kPasses; ++pass) {
        // Passive: free the object main allocated, then churn small objects.
        barrier.Wait();
        free(handed[t]);
        for (uint64_t i = 0; i < objects; ++i) {
          void* p = malloc(8);
          if (p == nullptr) wl::Die("malloc returned NULL");
          sum += Scribble(p, 8, kWritesPerObject, i + t);
          free(p);
        }
        barrier.Wait();
        // Active: concurrent allocation of small objects, written heavily;
        // a few are kept alive for a while so that the heap is not just LIFO.
        void* keep[16] = {};
        for (uint64_t i = 0; i < objects; ++i) {
          size_t size = size_t{8} << rng.Below(3);
          void* p = malloc(size);
          if (p == nullptr) wl::Die("malloc returned NULL");
          sum += Scribble(p, size, kWritesPerObject, i * 3 + t);
          size_t k = rng.Below(16);
          free(keep[k]);
          keep[k] = p;
        }
        for (void* p : keep) free(p);
        barrier.Wait();
        // Locality: build a list concurrently with the other threads.
        Node* head = nullptr;
        for (uint64_t i = 0; i < nodes; ++i) {
          Node* n = new Node{head, i * 7 + t, {0, 0}};
          head = n;
        }
        for (int w = 0; w < kListWalks; ++w) {
          for (Node* n = head; n != nullptr; n = n->next) {
            n->value = n->value * 3 + w;
            sum += n->value;
          }
        }
        while (head != nullptr) {
          Node* next = head->next;
          delete head;
          head = next;
        }
        barrier.Wait();
      }
      sums[t * 8] = sum;
    });
  }

  for (int pass = 0; pass < kPasses; ++pass) {
    // Back-to-back small objects for the passive phase.
    for (int t = 0; t < nthreads; ++t) {
      handed[t] = malloc(8);
      if (handed[t] == nullptr) wl::Die("malloc returned NULL");
      memset(handed[t], t, 8);
      wl::Escape(handed[t]);
    }
    double a = wl::NowSeconds();
    barrier.Wait();  // workers start the passive phase
    barrier.Wait();  // passive done
    double b = wl::NowSeconds();
    barrier.Wait();  // active done
    double c = wl::NowSeconds();
    barrier.Wait();  // locality done
    double d = wl::NowSeconds();
    phase_seconds[0] += b - a;
    phase_seconds[1] += c - b;
    phase_seconds[2] += d - c;
    fprintf(stderr, "wl: pass=%d passive_s=%.3f active_s=%.3f locality_s=%.3f\n", pass, b - a,
            c - b, d - c);
  }
  for (std::thread& t : threads) t.join();
  fprintf(stderr, "wl: total passive_s=%.3f active_s=%.3f locality_s=%.3f\n", phase_seconds[0],
          phase_seconds[1], phase_seconds[2]);

  uint64_t sum = 0;
  for (int t = 0; t < nthreads; ++t) sum += sums[t * 8];
  return wl::Finish("cache_scratch", sum, t0);
}
