// larson: a server-like workload. Each thread owns the slots of its part of a
// shared working set of mixed-size blocks (16 B - 4 KiB, mostly small) and
// repeatedly frees a random slot and allocates a new block for it. Now and
// then a thread hands a batch of its blocks to the next thread, which frees
// them: many objects are freed by a thread other than the one that
// allocated them, as in a server whose requests migrate between workers.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "../lib/latency.h"
#include "common.h"

namespace {

const char kUsage[] =
    "wl_larson: server-like churn with cross-thread frees.\n"
    "T threads (default 4) each own 8000 slots of blocks of 16 B - 4 KiB\n"
    "(70% <= 128 B, 20% <= 1 KiB, 10% <= 4 KiB); each iteration frees a random\n"
    "slot and allocates a new block; every 1024 iterations 64 blocks are handed\n"
    "to the next thread, which frees them. 10M iterations per thread x scale.\n";

constexpr size_t kSlots = 8000;
constexpr size_t kBatch = 64;
constexpr uint64_t kHandoffEvery = 1024;
constexpr uint64_t kDrainEvery = 256;
constexpr uint64_t kIterations = 10000000;

struct Block {
  void* p;
  uint64_t tag;
  uint32_t size;
};

struct alignas(64) Mailbox {
  std::mutex mu;
  std::vector<Block> items;
};

size_t PickSize(wl::Rng& rng) {
  uint64_t r = rng.Below(100);
  if (r < 70) return rng.Range(16, 128);
  if (r < 90) return rng.Range(129, 1024);
  return rng.Range(1025, 4096);
}

class Worker {
 public:
  Worker(int id, int nthreads, uint64_t iters, std::vector<Mailbox>* boxes,
         std::atomic<int>* done)
      : id_(id), nthreads_(nthreads), iters_(iters), boxes_(boxes), done_(done),
        rng_(1000 + id) {}

  void Run() {
    slots_.resize(kSlots);
    inbox_.reserve(4096);
    for (Block& b : slots_) Allocate(&b);
    Mailbox& next = (*boxes_)[(id_ + 1) % nthreads_];
    // Each iteration is a request: its latency includes the handoffs and
    // mailbox drains that fall into it, as a server's would. One in 8 is
    // timed: two clock reads (~10 ns each) on every ~40 ns iteration would
    // double the work being measured.
    const bench::TickClock& clock = bench::TickClock::Get();
    double t0 = wl::NowSeconds();
    for (uint64_t it = 0; it < iters_; ++it) {
      const bool timed = (it & 7) == 0;
      const uint64_t start = timed ? clock.Now() : 0;
      Block& b = slots_[rng_.Below(kSlots)];
      Release(b);
      Allocate(&b);
      if (it % kHandoffEvery == kHandoffEvery - 1 && nthreads_ > 1) {
        size_t start = rng_.Below(kSlots - kBatch);
        {
          std::lock_guard<std::mutex> g(next.mu);
          for (size_t j = 0; j < kBatch; ++j) next.items.push_back(slots_[start + j]);
        }
        for (size_t j = 0; j < kBatch; ++j) Allocate(&slots_[start + j]);
      }
      if (it % kDrainEvery == 0) Drain();
      if (timed) latency_.Add(clock.ToNs(clock.Now() - start));
    }
    seconds_ = wl::NowSeconds() - t0;
    // Nobody hands anything over once every thread is past its loop. Until
    // then a thread that is done keeps emptying its mailbox, as a server's
    // idle worker would: left to pile up, the blocks handed to it made the
    // live set (and every allocator's peak RSS) depend on how far the
    // scheduler let the threads drift apart (39-75 MiB under glibc, 74-226
    // MiB under JSMalloc from run to run).
    done_->fetch_add(1);
    while (done_->load() < nthreads_) {
      Drain();
      std::this_thread::yield();
    }
    Drain();
    for (Block& b : slots_) Release(b);
  }

  uint64_t sum() const { return sum_; }
  const bench::LatencyHistogram& latency() const { return latency_; }
  double seconds() const { return seconds_; }

 private:
  void Allocate(Block* b) {
    size_t size = PickSize(rng_);
    void* p = malloc(size);
    if (p == nullptr) wl::Die("malloc returned NULL");
    uint64_t tag = wl::Mix64((static_cast<uint64_t>(id_) << 48) + seq_++);
    wl::StampBlock(p, size, tag);
    *b = Block{p, tag, static_cast<uint32_t>(size)};
  }

  void Release(const Block& b) {
    sum_ += wl::CheckBlock(b.p, b.size, b.tag);
    free(b.p);
  }

  void Drain() {
    Mailbox& mine = (*boxes_)[id_];
    {
      std::lock_guard<std::mutex> g(mine.mu);
      if (mine.items.empty()) return;
      std::swap(mine.items, inbox_);
    }
    for (const Block& b : inbox_) Release(b);
    inbox_.clear();
  }

  int id_;
  int nthreads_;
  uint64_t iters_;
  std::vector<Mailbox>* boxes_;
  std::atomic<int>* done_;
  wl::Rng rng_;
  uint64_t seq_ = 0;
  uint64_t sum_ = 0;
  std::vector<Block> slots_;
  std::vector<Block> inbox_;
  bench::LatencyHistogram latency_;
  double seconds_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const int nthreads = args.threads ? args.threads : 4;
  const uint64_t iters = wl::Scaled(kIterations, args.scale, 1000);
  bench::TickClock::Get();  // calibrated before the clock starts
  double t0 = wl::NowSeconds();

  std::vector<Mailbox> boxes(nthreads);
  for (Mailbox& m : boxes) m.items.reserve(4096);
  std::atomic<int> done{0};
  std::vector<Worker*> workers;
  for (int i = 0; i < nthreads; ++i) workers.push_back(new Worker(i, nthreads, iters, &boxes, &done));
  std::vector<std::thread> threads;
  for (Worker* w : workers) threads.emplace_back([w] { w->Run(); });
  for (std::thread& t : threads) t.join();

  // Every block is freed exactly once, by whichever thread: the sum of the
  // per-block values does not depend on the interleaving.
  uint64_t sum = 0;
  bench::LatencyHistogram all;
  double seconds = 0;
  for (Worker* w : workers) {
    sum += w->sum();
    all.Merge(w->latency());
    if (w->seconds() > seconds) seconds = w->seconds();
    delete w;
  }
  all.Print(stderr, seconds);
  return wl::Finish("larson", sum, t0);
}
