// idle_after_burst: a service that handles a burst of work and then waits.
// Two worker threads build up a large heap (~600 MiB at scale 1: mixed
// 16 B - 64 KiB objects plus 256 KiB - 4 MiB buffers, with short-lived
// request temporaries alongside), then free about 90% of it (each thread
// frees half of what the other built), and go idle: the workers block on a
// condition variable and nothing calls malloc or free for 10 s, while the
// ~10% that survived stays live. How much of the freed memory each allocator
// hands back to the kernel, and when, is the measurement: the main thread
// reads /proc/self/statm (a descriptor opened up front, pread into a stack
// buffer, no allocation) right after the frees and 1, 2, 5 and 10 s into the
// idle period.
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_idle_after_burst: burst, free 90%, then idle for 10 s.\n"
    "T threads (default 2) each allocate 200 MiB x scale of 16 B - 64 KiB\n"
    "objects and 100 MiB x scale of 256 KiB - 4 MiB buffers (every page\n"
    "written), with short-lived temporaries; then each frees the 90% that do\n"
    "not survive of half its own objects and half of the next thread's. The\n"
    "threads then block and the process makes no allocator call for 10 s\n"
    "(not scaled) while RSS is read at 0, 1, 2, 5 and 10 s. Prints\n"
    "`wl: mem live_kib=... rss_freed_kib=... rss_idle{1,2,5,10}_kib=...`.\n";

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kSmallBytesPerThread = 200 * kMiB;
constexpr uint64_t kLargeBytesPerThread = 100 * kMiB;
constexpr int kTemps = 32;
// Seconds into the idle period at which RSS is read; the last ends it.
constexpr double kIdlePoints[4] = {1.0, 2.0, 5.0, 10.0};

struct Obj {
  void* p;
  uint64_t tag;
  uint64_t size;
};

// About one object in ten survives the free phase (decided by its tag, so
// that any thread can tell).
bool Survives(uint64_t tag) { return wl::Mix64(tag ^ 0x5eed) % 10 == 0; }

// A reusable barrier (std::barrier allocates in its constructor on some
// implementations; this one never does).
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    int gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
      return;
    }
    cv_.wait(l, [&] { return gen_ != gen; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_;
  int count_ = 0;
  int gen_ = 0;
};

struct Shared {
  explicit Shared(int n) : burst_done(n + 1), measured(n + 1), free_done(n + 1) {}
  Barrier burst_done;  // workers + main
  Barrier measured;    // main has read the RSS of the whole burst
  Barrier free_done;
  std::mutex mu;
  std::condition_variable cv;
  bool wake = false;
};

struct alignas(64) Worker {
  int id = 0;
  int nthreads = 0;
  uint64_t small_budget = 0, large_budget = 0;
  std::vector<Obj> objs;
  std::vector<Worker*>* all = nullptr;
  Shared* shared = nullptr;
  uint64_t sum = 0;
  uint64_t freed_bytes = 0;

  void* Alloc(uint64_t size, uint64_t tag) {
    void* p = malloc(size);
    if (p == nullptr) wl::Die("malloc returned NULL");
    wl::StampBlock(p, size, tag);
    return p;
  }

  void Burst() {
    wl::Rng rng(0xb0057 + id);
    uint64_t small = 0, large = 0, seq = 0;
    Obj temps[kTemps] = {};
    objs.reserve(small_budget / 2048 + 1024);
    while (small < small_budget || large < large_budget) {
      uint64_t tag = wl::Mix64((static_cast<uint64_t>(id) << 48) + ++seq);
      // One allocation in 64 is a buffer, while both budgets last.
      bool big = large < large_budget && (small >= small_budget || rng.Below(64) == 0);
      uint64_t size;
      if (big) {
        size = rng.LogUniform(256 * 1024, 4 * kMiB);
        large += size;
      } else {
        size = rng.Below(100) < 80 ? rng.LogUniform(16, 1024) : rng.LogUniform(1025, 64 * 1024);
        small += size;
      }
      objs.push_back(Obj{Alloc(size, tag), tag, size});
      // The request's temporaries: allocated, used, freed a little later.
      Obj& t = temps[rng.Below(kTemps)];
      if (t.p != nullptr) {
        sum += wl::CheckBlock(t.p, t.size, t.tag);
        free(t.p);
      }
      t.size = rng.LogUniform(16, 8192);
      t.tag = wl::Mix64((static_cast<uint64_t>(id) << 48) + (uint64_t{1} << 47) + seq);
      t.p = Alloc(t.size, t.tag);
    }
    for (Obj& t : temps) {
      if (t.p == nullptr) continue;
      sum += wl::CheckBlock(t.p, t.size, t.tag);
      free(t.p);
    }
  }

  // Frees the non-survivors among the objects of `owner` at positions
  // congruent to `parity` mod 2, in a scattered order (a stride coprime with
  // the count).
  void FreeHalf(Worker* owner, uint64_t parity) {
    std::vector<Obj>& v = owner->objs;
    uint64_t n = v.size();
    if (n == 0) return;
    uint64_t stride = 7919;
    while (std::gcd(stride, n) != 1) stride += 2;
    uint64_t k = 0;
    for (uint64_t j = 0; j < n; ++j) {
      k = (k + stride) % n;
      if (k % 2 != parity) continue;
      Obj& o = v[k];
      if (Survives(o.tag)) continue;
      sum += wl::CheckBlock(o.p, o.size, o.tag);
      free(o.p);
      freed_bytes += o.size;
      o.p = nullptr;
    }
  }

  void Run() {
    Burst();
    shared->burst_done.Wait();
    shared->measured.Wait();
    // Own objects at even positions, the next thread's at odd ones: half of
    // the frees are cross-thread.
    FreeHalf(this, 0);
    FreeHalf((*all)[(id + 1) % nthreads], 1);
    shared->free_done.Wait();
    // Idle: a blocked worker, like a service thread waiting for requests.
    {
      std::unique_lock<std::mutex> l(shared->mu);
      shared->cv.wait(l, [&] { return shared->wake; });
    }
    for (Obj& o : objs) {
      if (o.p == nullptr) continue;
      sum += wl::CheckBlock(o.p, o.size, o.tag);
      free(o.p);
      o.p = nullptr;
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const int nthreads = args.threads ? args.threads : 2;
  double t0 = wl::NowSeconds();
  wl::Statm statm;
  Shared* shared = new Shared(nthreads);
  std::vector<Worker*> workers;
  for (int i = 0; i < nthreads; ++i) {
    Worker* w = new Worker();
    w->id = i;
    w->nthreads = nthreads;
    w->small_budget = wl::Scaled(kSmallBytesPerThread, args.scale, kMiB);
    w->large_budget = wl::Scaled(kLargeBytesPerThread, args.scale, 4 * kMiB);
    w->all = &workers;
    w->shared = shared;
    workers.push_back(w);
  }
  std::vector<std::thread> threads;
  threads.reserve(nthreads);
  for (Worker* w : workers) threads.emplace_back([w] { w->Run(); });

  shared->burst_done.Wait();
  uint64_t burst_bytes = 0, live_bytes = 0;
  uint64_t live_objs = 0;
  for (Worker* w : workers) {
    for (const Obj& o : w->objs) {
      burst_bytes += o.size;
      if (Survives(o.tag)) {
        live_bytes += o.size;
        ++live_objs;
      }
    }
  }
  long rss_burst = statm.RssKib();
  double burst_s = wl::NowSeconds() - t0;
  shared->measured.Wait();

  shared->free_done.Wait();
  // Idle from here: nothing below calls the allocator until `wake`.
  const double idle_start = wl::NowSeconds();
  long anon_freed = 0;
  const long rss_freed = statm.RssKib(&anon_freed);
  long rss_idle[4];
  long anon_idle[4];
  for (int i = 0; i < 4; ++i) {
    wl::SleepUntil(idle_start + kIdlePoints[i]);
    rss_idle[i] = statm.RssKib(&anon_idle[i]);
  }
  const double idle_s = wl::NowSeconds() - idle_start;
  {
    std::lock_guard<std::mutex> l(shared->mu);
    shared->wake = true;
  }
  shared->cv.notify_all();
  for (std::thread& t : threads) t.join();

  uint64_t sum = 0, freed = 0;
  for (Worker* w : workers) {
    sum += w->sum;
    freed += w->freed_bytes;
    delete w;
  }
  delete shared;
  if (freed + live_bytes != burst_bytes) wl::Die("freed + live bytes differ from the burst");
  fprintf(stderr, "wl: stage=burst_end rss_kib=%ld seconds=%.3f\n", rss_burst, burst_s);
  fprintf(stderr,
          "wl: mem burst_kib=%llu live_kib=%llu live_objects=%llu rss_freed_kib=%ld "
          "anon_freed_kib=%ld rss_idle1_kib=%ld rss_idle2_kib=%ld rss_idle5_kib=%ld "
          "rss_idle10_kib=%ld anon_idle10_kib=%ld idle_s=%.3f idle_start_mono=%.6f\n",
          static_cast<unsigned long long>(burst_bytes / 1024),
          static_cast<unsigned long long>(live_bytes / 1024),
          static_cast<unsigned long long>(live_objs), rss_freed, anon_freed, rss_idle[0],
          rss_idle[1], rss_idle[2], rss_idle[3], anon_idle[3], idle_s, idle_start);
  return wl::Finish("idle_after_burst", sum, t0);
}
