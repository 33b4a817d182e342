// soak: a long mixed-thread churn at a constant request rate, for RSS over
// time under every allocator (the access pattern of
// tests/reliability/soak_test.cc, which runs on JSMalloc only, in a
// stand-alone program that bench/run can preload anything into).
//
// Four threads each keep a live set of ~24 MiB of objects whose sizes follow
// a heavy-tailed law (Pareto, alpha 0.7, from 16 B, cut at 4 MiB: most
// objects are tiny, most bytes are in the few large ones). They allocate
// with malloc, calloc (checked zeroed), posix_memalign / memalign /
// aligned_alloc (32 B - 64 KiB alignment), resize with realloc (the kept
// prefix checked), and free; a quarter of the frees go through a shared
// ring and happen on another thread. Every 5 s each thread allocates a burst
// of 8 MiB more and lets it go a second later, three quarters of it through
// the ring. Live bytes peak around 130 MiB.
//
// The load is paced: each thread does a fixed number of operations per
// 10 ms tick and sleeps until the next tick, like a service under a steady
// request rate, for 6000 ticks (60 s) x scale. So the operation count, and
// with it the checksum, is the same under every allocator, and the runs of
// different allocators share a time axis. A thread that cannot keep up
// runs late (`late_ticks`), it does not skip work.
//
// The main thread samples RSS (/proc/self/statm) and the live bytes the
// program holds every 100 ms without allocating, and prints the ratio
// RSS / live: its median past the first third of the run (warm-up) and its
// value at the end, with everything still live. With WL_LIVE_LOG=/path it
// writes the samples there (`elapsed_ms rss_kib live_kib`).
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_soak: paced mixed-thread churn (default 4 threads), ~24 MiB live per\n"
    "thread of Pareto(alpha 0.7) sizes 16 B - 4 MiB; malloc, calloc, aligned\n"
    "allocations, realloc; a quarter of the frees cross-thread through a\n"
    "ring; an 8 MiB burst per thread every 5 s, freed 1 s later. 700\n"
    "operations per thread per 10 ms tick, 6000 ticks (60 s) x scale.\n"
    "Samples RSS and live bytes every 100 ms; prints `wl: mem\n"
    "rss_live_median=... rss_live_final=...`. Env WL_LIVE_LOG=/path: the\n"
    "samples (`elapsed_ms rss_kib live_kib`).\n";

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kLivePerThread = 24 * kMiB;
constexpr size_t kMaxObjects = 200000;
constexpr size_t kMaxBurstObjects = 50000;
constexpr size_t kRingSlots = 8192;
constexpr double kTickSeconds = 0.010;
constexpr uint64_t kTicks = 6000;
constexpr uint64_t kOpsPerTick = 700;
constexpr uint64_t kBurstEvery = 500;  // ticks (5 s)
constexpr uint64_t kBurstHold = 100;   // ticks (1 s)
constexpr uint64_t kBurstBytes = 8 * kMiB;
constexpr double kSampleSeconds = 0.100;

struct Obj {
  unsigned char* p = nullptr;
  uint64_t tag = 0;
  uint64_t size = 0;
};

// Pareto(x_m = 16, alpha = 0.7), cut at 4 MiB: median ~43 B, mean ~2 KiB.
uint64_t ParetoSize(wl::Rng& rng) {
  double u = (static_cast<double>(rng.Next() >> 11) + 1.0) / 9007199254740992.0;  // (0, 1]
  double x = 16.0 * std::pow(u, -1.0 / 0.7);
  return x >= 4194304.0 ? 4194304 : static_cast<uint64_t>(x);
}

// The positions StampBlock writes for a block of `size` bytes that lie in
// the first `keep` bytes must hold the stamp (a realloc keeps min(old, new)).
void CheckKeptPrefix(const unsigned char* c, uint64_t size, uint64_t tag, uint64_t keep) {
  if (size < 16) {
    for (uint64_t i = 0; i < size && i < keep; ++i)
      if (c[i] != static_cast<unsigned char>(tag >> (8 * (i & 7)))) wl::Die("realloc lost contents");
    return;
  }
  uint64_t v;
  if (keep >= 8) {
    memcpy(&v, c, 8);
    if (v != tag) wl::Die("realloc lost the head");
  }
  for (uint64_t off = 4096; off + 8 <= size - 8 && off + 8 <= keep; off += 4096) {
    memcpy(&v, c + off, 8);
    if (v != (tag ^ off)) wl::Die("realloc lost a page");
  }
  if (size <= keep) {
    memcpy(&v, c + size - 8, 8);
    if (v != ~tag) wl::Die("realloc lost the tail");
  }
}

// The positions StampBlock would write are zero (calloc).
bool StampPositionsZero(const unsigned char* c, uint64_t size) {
  if (size < 16) {
    for (uint64_t i = 0; i < size; ++i)
      if (c[i] != 0) return false;
    return true;
  }
  uint64_t v, acc = 0;
  memcpy(&v, c, 8);
  acc |= v;
  for (uint64_t off = 4096; off + 8 <= size - 8; off += 4096) {
    memcpy(&v, c + off, 8);
    acc |= v;
  }
  memcpy(&v, c + size - 8, 8);
  return (acc | v) == 0;
}

// Cross-thread frees: a fixed-size ring under a mutex (no allocation after
// construction).
class Ring {
 public:
  bool Push(const Obj& o) {
    std::lock_guard<std::mutex> l(mu_);
    if (count_ == kRingSlots) return false;
    slots_[(head_ + count_) % kRingSlots] = o;
    ++count_;
    count_relaxed_.store(count_, std::memory_order_relaxed);
    bytes_.fetch_add(o.size, std::memory_order_relaxed);
    return true;
  }
  bool Pop(Obj* o) {
    std::lock_guard<std::mutex> l(mu_);
    if (count_ == 0) return false;
    *o = slots_[head_];
    head_ = (head_ + 1) % kRingSlots;
    --count_;
    count_relaxed_.store(count_, std::memory_order_relaxed);
    bytes_.fetch_sub(o->size, std::memory_order_relaxed);
    return true;
  }
  size_t ApproxCount() const { return count_relaxed_.load(std::memory_order_relaxed); }
  uint64_t Bytes() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  std::mutex mu_;
  Obj slots_[kRingSlots];
  size_t head_ = 0, count_ = 0;
  std::atomic<size_t> count_relaxed_{0};
  std::atomic<uint64_t> bytes_{0};
};

struct Shared {
  Ring ring;
  double start = 0;
  uint64_t ticks = 0;
};

class Worker {
 public:
  Worker(int id, Shared* s) : id_(id), s_(s), rng_(0x50a4 + static_cast<uint64_t>(id)) {
    live_.reserve(kMaxObjects);
    burst_.reserve(kMaxBurstObjects);
  }

  void Run() {
    uint64_t release_at = 0;
    for (uint64_t tick = 0; tick < s_->ticks; ++tick) {
      if (tick > 0 && tick % kBurstEvery == 0) {
        Burst();
        release_at = tick + kBurstHold;
      }
      if (tick == release_at && !burst_.empty()) ReleaseBurst();
      for (uint64_t i = 0; i < kOpsPerTick; ++i) Step();
      ops_ += kOpsPerTick;
      double next = s_->start + static_cast<double>(tick + 1) * kTickSeconds;
      if (wl::NowSeconds() > next)
        ++late_;
      else
        wl::SleepUntil(next);
    }
  }

  // After Run, on the main thread: verify and free everything left.
  void FreeAll() {
    for (const Obj& o : live_) Release(o);
    live_.clear();
    for (const Obj& o : burst_) Release(o);
    burst_.clear();
  }
  // Frees an object someone gave to the ring (main thread, at the end).
  void ReleaseForeign(const Obj& o) { Release(o); }

  uint64_t held() const { return held_.load(std::memory_order_relaxed); }
  uint64_t sum() const { return sum_; }
  uint64_t ops() const { return ops_; }
  uint64_t late() const { return late_; }
  uint64_t cross() const { return cross_; }
  uint64_t bursts() const { return bursts_; }
  uint64_t misaligned() const { return misaligned_; }

 private:
  Obj Allocate(uint64_t size) {
    uint64_t tag = wl::Mix64((static_cast<uint64_t>(id_) << 56) + ++seq_);
    uint64_t r = rng_.Below(100);
    uint64_t align = uint64_t{32} << rng_.Below(12);  // 32 B .. 64 KiB
    uint64_t how = rng_.Below(3);
    unsigned char* p;
    if (r < 5) {
      p = static_cast<unsigned char*>(calloc(1, size));
      if (p != nullptr && !StampPositionsZero(p, size)) wl::Die("calloc memory not zeroed");
    } else if (r < 10) {
      void* q = nullptr;
      if (how == 0) {
        if (posix_memalign(&q, align, size) != 0) q = nullptr;
      } else if (how == 1) {
        q = memalign(align, size);
      } else {
        size = (size + align - 1) & ~(align - 1);  // C11 wants a multiple
        q = aligned_alloc(align, size);
      }
      p = static_cast<unsigned char*>(q);
      if (p != nullptr && (reinterpret_cast<uintptr_t>(p) & (align - 1)) != 0) {
        // A broken contract, but the program does not depend on it: counted
        // and reported rather than fatal, so the run still measures memory
        // (mimalloc 2.0.9's aligned_alloc(256, 256), for one).
        if (misaligned_++ == 0)
          fprintf(stderr, "wl: note: %s(%llu, %llu) returned %p, not %llu-aligned\n",
                  how == 0 ? "posix_memalign" : how == 1 ? "memalign" : "aligned_alloc",
                  static_cast<unsigned long long>(align), static_cast<unsigned long long>(size),
                  static_cast<void*>(p), static_cast<unsigned long long>(align));
      }
    } else {
      p = static_cast<unsigned char*>(malloc(size));
    }
    if (p == nullptr) wl::Die("allocation failed");
    wl::StampBlock(p, size, tag);
    held_.fetch_add(size, std::memory_order_relaxed);
    return Obj{p, tag, size};
  }

  void Release(const Obj& o) {
    sum_ += wl::CheckBlock(o.p, o.size, o.tag);
    free(o.p);
  }

  void Drop(const Obj& o) {
    held_.fetch_sub(o.size, std::memory_order_relaxed);
    Release(o);
  }

  // Hands an object to the ring (another thread frees it); false if full.
  bool Give(const Obj& o) {
    if (!s_->ring.Push(o)) return false;
    held_.fetch_sub(o.size, std::memory_order_relaxed);
    return true;
  }

  void Step() {
    // Every draw happens whatever the outcome, so the sequence of objects
    // each thread allocates does not depend on timing; who frees an object
    // does, which the checksum (a sum over objects) does not see.
    bool pop = rng_.Below(8) == 0;
    if (pop || s_->ring.ApproxCount() > kRingSlots / 2) {
      Obj o;
      if (s_->ring.Pop(&o)) {
        Release(o);
        ++cross_;
      }
    }
    bool below = live_bytes_ < kLivePerThread;
    uint64_t r = rng_.Below(100);
    if (live_.empty() || (below && r < 60 && live_.size() < kMaxObjects)) {
      Obj o = Allocate(ParetoSize(rng_));
      live_bytes_ += o.size;
      live_.push_back(o);
    } else if (r < 90 || !below) {
      size_t k = rng_.Below(live_.size());
      bool give = rng_.Below(4) == 0;
      Obj o = live_[k];
      live_[k] = live_.back();
      live_.pop_back();
      live_bytes_ -= o.size;
      if (!(give && Give(o))) Drop(o);
    } else {
      Obj& o = live_[rng_.Below(live_.size())];
      uint64_t size = ParetoSize(rng_);
      uint64_t tag = wl::Mix64((static_cast<uint64_t>(id_) << 56) + ++seq_);
      sum_ += wl::CheckBlock(o.p, o.size, o.tag);
      auto* p = static_cast<unsigned char*>(realloc(o.p, size));
      if (p == nullptr) wl::Die("realloc failed");
      CheckKeptPrefix(p, o.size, o.tag, std::min(o.size, size));
      wl::StampBlock(p, size, tag);
      held_.fetch_add(size, std::memory_order_relaxed);
      held_.fetch_sub(o.size, std::memory_order_relaxed);
      live_bytes_ = live_bytes_ + size - o.size;
      o = Obj{p, tag, size};
    }
  }

  void Burst() {
    uint64_t bytes = 0;
    while (bytes < kBurstBytes && burst_.size() < kMaxBurstObjects) {
      Obj o = Allocate(ParetoSize(rng_));
      bytes += o.size;
      burst_.push_back(o);
    }
    ++bursts_;
  }

  void ReleaseBurst() {
    for (const Obj& o : burst_) {
      bool give = rng_.Below(4) != 0;
      if (!(give && Give(o))) Drop(o);
    }
    burst_.clear();
  }

  int id_;
  Shared* s_;
  wl::Rng rng_;
  uint64_t seq_ = 0;
  std::vector<Obj> live_, burst_;
  uint64_t live_bytes_ = 0;  // of live_ (requested sizes)
  std::atomic<uint64_t> held_{0};  // live_ + burst_, for the sampler
  uint64_t sum_ = 0, ops_ = 0, late_ = 0, cross_ = 0, bursts_ = 0, misaligned_ = 0;
};

constexpr int kMaxSamples = 1 << 17;
uint32_t g_ms[kMaxSamples];
uint32_t g_rss[kMaxSamples];
uint32_t g_live[kMaxSamples];

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const int nthreads = args.threads ? args.threads : 4;
  double t0 = wl::NowSeconds();
  wl::Statm statm;
  auto* shared = new Shared();
  shared->ticks = wl::Scaled(kTicks, args.scale, 200);
  std::vector<Worker*> workers;
  for (int i = 0; i < nthreads; ++i) workers.push_back(new Worker(i, shared));
  auto live_now = [&] {
    uint64_t b = shared->ring.Bytes();
    for (Worker* w : workers) b += w->held();
    return b;
  };
  // Workers stay alive after their last tick until main has read the final
  // figures: a thread's exit flushes its caches, which is not the steady
  // state being measured.
  std::atomic<int> done{0};
  std::atomic<bool> release{false};
  shared->start = wl::NowSeconds();
  std::vector<std::thread> threads;
  for (Worker* w : workers)
    threads.emplace_back([w, &done, &release] {
      w->Run();
      done.fetch_add(1);
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });

  // Sampling: pread of statm and relaxed loads only.
  int n = 0;
  for (int k = 1; done.load() < nthreads; ++k) {
    wl::SleepUntil(shared->start + k * kSampleSeconds);
    long rss = statm.RssKib();
    if (rss > 0 && n < kMaxSamples) {
      g_ms[n] = static_cast<uint32_t>((wl::NowSeconds() - shared->start) * 1000.0);
      g_rss[n] = static_cast<uint32_t>(rss);
      g_live[n] = static_cast<uint32_t>(live_now() / 1024);
      ++n;
    }
  }
  // The end: everything still live (own sets, pending bursts, the ring),
  // every worker thread still there.
  const double run_s = wl::NowSeconds() - shared->start;
  const long rss_end = statm.RssKib();
  const uint64_t live_end = live_now();
  release = true;
  for (std::thread& t : threads) t.join();
  if (n < kMaxSamples) {
    g_ms[n] = static_cast<uint32_t>(run_s * 1000.0);
    g_rss[n] = static_cast<uint32_t>(rss_end);
    g_live[n] = static_cast<uint32_t>(live_end / 1024);
    ++n;
  }

  uint64_t sum = 0, ops = 0, late = 0, cross = 0, bursts = 0, misaligned = 0;
  {
    Obj o;
    while (shared->ring.Pop(&o)) workers[0]->ReleaseForeign(o);
  }
  for (Worker* w : workers) {
    w->FreeAll();
    sum += w->sum();
    ops += w->ops();
    late += w->late();
    cross += w->cross();
    bursts += w->bursts();
    misaligned += w->misaligned();
  }

  // RSS / live past the first third (the warm-up fills the live sets).
  std::vector<double> ratios;
  double peak_live = 0;
  for (int i = 0; i < n; ++i) {
    peak_live = std::max(peak_live, static_cast<double>(g_live[i]));
    if (g_ms[i] >= run_s * 1000.0 / 3 && g_live[i] > 0)
      ratios.push_back(static_cast<double>(g_rss[i]) / g_live[i]);
  }
  const double final_ratio = live_end > 0 ? static_cast<double>(rss_end) * 1024.0 / live_end : 0;
  fprintf(stderr,
          "wl: mem ops=%llu live_kib=%llu peak_live_kib=%.0f rss_end_kib=%ld rss_live_median=%.3f "
          "rss_live_final=%.3f samples=%d run_s=%.2f late_ticks=%llu bursts=%llu "
          "cross_frees=%llu misaligned=%llu\n",
          static_cast<unsigned long long>(ops), static_cast<unsigned long long>(live_end / 1024),
          peak_live, rss_end, Median(ratios), final_ratio, n, run_s,
          static_cast<unsigned long long>(late), static_cast<unsigned long long>(bursts),
          static_cast<unsigned long long>(cross), static_cast<unsigned long long>(misaligned));
  const char* log_path = getenv("WL_LIVE_LOG");
  if (log_path != nullptr && log_path[0] != '\0') {
    FILE* f = fopen(log_path, "w");
    if (f == nullptr) {
      fprintf(stderr, "wl: cannot write WL_LIVE_LOG %s\n", log_path);
    } else {
      for (int i = 0; i < n; ++i) fprintf(f, "%u %u %u\n", g_ms[i], g_rss[i], g_live[i]);
      fclose(f);
    }
  }
  for (Worker* w : workers) delete w;
  delete shared;
  return wl::Finish("soak", sum, t0);
}
