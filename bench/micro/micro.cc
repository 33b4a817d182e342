// jsmalloc_micro: micro-benchmarks of the malloc API for any allocator.
//
// The binary is linked with no allocator of its own; the one under test is
// put in front of glibc with LD_PRELOAD. The compiler must not see through the
// allocation calls: the build passes -fno-builtin-malloc and friends (and
// -fno-allocation-dce where the compiler has it), and every pointer goes
// through benchmark::DoNotOptimize before one byte of it is written.
//
// Benchmark names are stable (bench/run filters by them):
//   BM_MallocFree/<size>          malloc + free of one size
//   BM_NewDeleteSized/<size>      ::operator new(n) + sized ::operator delete(p, n)
//   BM_Calloc/<size>              calloc(1, n) + free
//   BM_ReallocGrow                16 B grown to 1 MiB by x1.5 reallocs, then freed
//   BM_BatchInOrder/<N>           N mixed-size objects allocated, freed in order
//   BM_BatchShuffled/<N>          ... freed in a pre-shuffled order
//   BM_Batch{InOrder,Shuffled}/1024/real_time/threads:<T>   the same on T threads
//   BM_ProducerConsumer/real_time one thread allocates, another frees
//   BM_MallocFreeMixed/real_time/threads:<T>  rotating 16..1024 B sizes on T threads
// Every benchmark sets items_per_second: one item is one allocation together
// with its free (for BM_ReallocGrow: one realloc call). Multi-threaded ones
// use wall-clock time, so items_per_second is the throughput of all threads
// together, and the ns_per_* counters are per thread (averaged over threads).

#include <benchmark/benchmark.h>

#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

namespace {

// splitmix64: the same sizes and orders on every run and under every
// allocator.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  size_t Below(size_t n) { return static_cast<size_t>(Next() % n); }

 private:
  uint64_t state_;
};

// Hides the pointer from the optimizer, then writes its first byte, as any
// real user of the memory would.
inline void Use(void* p) {
  benchmark::DoNotOptimize(p);
  static_cast<volatile char*>(p)[0] = 1;
}

// Sizes of the batch benchmarks: drawn at random from this list, so small
// objects dominate as they do in most C and C++ heaps.
constexpr size_t kMixSizes[] = {16,  16,  24,  32,  32,  48,  64,  64,  80,   96,
                                128, 160, 192, 256, 384, 512, 768, 1024, 2048, 4096};
constexpr size_t kNumMixSizes = sizeof(kMixSizes) / sizeof(kMixSizes[0]);

// Sizes the mixed pair and producer/consumer benchmarks rotate through.
constexpr size_t kRotSizes[] = {16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024};
constexpr size_t kNumRotSizes = sizeof(kRotSizes) / sizeof(kRotSizes[0]);

using Clock = std::chrono::steady_clock;

double NanosSince(Clock::time_point start) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count();
}

// ---------------------------------------------------------------------------
// Pairs of one size.

void BM_MallocFree(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = std::malloc(size);
    Use(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_NewDeleteSized(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = ::operator new(size);
    Use(p);
    ::operator delete(p, size);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Calloc(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = std::calloc(1, size);
    Use(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}

void PairSizes(benchmark::internal::Benchmark* b) {
  for (int64_t s : {8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536, 262144})
    b->Arg(s);
  b->Arg(1 << 20);  // large: past every thread/CPU cache
  b->Arg(8 << 20);
}

void CallocSizes(benchmark::internal::Benchmark* b) {
  for (int64_t s : {16, 64, 256, 1024, 4096, 65536, 1 << 20}) b->Arg(s);
}

BENCHMARK(BM_MallocFree)->Apply(PairSizes);
BENCHMARK(BM_NewDeleteSized)->Apply(PairSizes);
BENCHMARK(BM_Calloc)->Apply(CallocSizes);

// ---------------------------------------------------------------------------
// realloc: a buffer grown from 16 B to 1 MiB in x1.5 steps, then freed.

constexpr size_t kGrowFrom = 16;
constexpr size_t kGrowTo = 1 << 20;

size_t NextGrowSize(size_t n) { return std::min(n + n / 2, kGrowTo); }

void BM_ReallocGrow(benchmark::State& state) {
  size_t steps = 0;
  for (size_t n = kGrowFrom; n < kGrowTo; n = NextGrowSize(n)) ++steps;
  for (auto _ : state) {
    size_t n = kGrowFrom;
    char* p = static_cast<char*>(std::malloc(n));
    Use(p);
    while (n < kGrowTo) {
      n = NextGrowSize(n);
      p = static_cast<char*>(std::realloc(p, n));
      Use(p);
      p[n - 1] = 1;
    }
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(steps));
  state.counters["reallocs_per_iter"] = static_cast<double>(steps);
}

BENCHMARK(BM_ReallocGrow);

// ---------------------------------------------------------------------------
// Batches: N objects of mixed sizes allocated, then all freed, in allocation
// order or in an order shuffled before timing starts.

void BatchBenchmark(benchmark::State& state, bool shuffled) {
  const size_t n = static_cast<size_t>(state.range(0));
  Rng rng(0x5eed0000u + static_cast<uint64_t>(state.thread_index()));
  std::vector<size_t> sizes(n);
  for (size_t& s : sizes) s = kMixSizes[rng.Below(kNumMixSizes)];
  std::vector<uint32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
  if (shuffled) {
    for (size_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.Below(i + 1)]);
  }
  std::vector<void*> ptrs(n);

  const Clock::time_point start = Clock::now();
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) {
      void* p = std::malloc(sizes[i]);
      Use(p);
      ptrs[i] = p;
    }
    for (size_t i = 0; i < n; ++i) std::free(ptrs[order[i]]);
    benchmark::ClobberMemory();
  }
  const double objects = static_cast<double>(state.iterations()) * static_cast<double>(n);
  const double ns = NanosSince(start);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
  state.counters["ns_per_object"] =
      benchmark::Counter(objects > 0 ? ns / objects : 0, benchmark::Counter::kAvgThreads);
}

void BM_BatchInOrder(benchmark::State& state) { BatchBenchmark(state, false); }
void BM_BatchShuffled(benchmark::State& state) { BatchBenchmark(state, true); }

BENCHMARK(BM_BatchInOrder)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK(BM_BatchShuffled)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK(BM_BatchInOrder)->Arg(1024)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();
BENCHMARK(BM_BatchShuffled)->Arg(1024)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();

// ---------------------------------------------------------------------------
// Mixed pairs on 1, 2 and 4 threads: each thread keeps a ring of live objects
// and replaces the oldest with a new one of the next size in 16..1024 B.

constexpr size_t kRingSlots = 16;  // not a multiple of kNumRotSizes: sizes wander over slots

void BM_MallocFreeMixed(benchmark::State& state) {
  void* ring[kRingSlots];
  size_t k = static_cast<size_t>(state.thread_index()) % kNumRotSizes;
  for (size_t i = 0; i < kRingSlots; ++i) {
    ring[i] = std::malloc(kRotSizes[k]);
    Use(ring[i]);
    if (++k == kNumRotSizes) k = 0;
  }
  size_t slot = 0;
  const Clock::time_point start = Clock::now();
  for (auto _ : state) {
    std::free(ring[slot]);
    void* p = std::malloc(kRotSizes[k]);
    Use(p);
    ring[slot] = p;
    if (++k == kNumRotSizes) k = 0;
    slot = (slot + 1) % kRingSlots;
  }
  const double ns = NanosSince(start);
  for (void* p : ring) std::free(p);
  const double pairs = static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations());
  state.counters["ns_per_pair"] =
      benchmark::Counter(pairs > 0 ? ns / pairs : 0, benchmark::Counter::kAvgThreads);
}

BENCHMARK(BM_MallocFreeMixed)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();

// ---------------------------------------------------------------------------
// Producer/consumer: the benchmark thread allocates batches of objects and
// hands them through a bounded single-producer/single-consumer ring to a
// consumer thread, which frees them: every free is a cross-thread free.

constexpr size_t kPcBatch = 64;  // objects per batch (one benchmark iteration)
constexpr size_t kPcSlots = 32;  // batches in flight at most

struct PcQueue {
  alignas(64) std::atomic<uint64_t> head{0};  // batches published by the producer
  alignas(64) std::atomic<uint64_t> tail{0};  // batches freed by the consumer
  alignas(64) std::atomic<bool> done{false};
  alignas(64) void* slots[kPcSlots][kPcBatch];
};

// Busy-waits a little, then gives the CPU away (the machine may have fewer
// cores than runnable threads).
inline void Backoff(unsigned* spins) {
  if (++*spins < 128) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();
  }
}

void Consume(PcQueue* q) {
  uint64_t tail = 0;
  unsigned spins = 0;
  for (;;) {
    const uint64_t head = q->head.load(std::memory_order_acquire);
    if (tail == head) {
      if (q->done.load(std::memory_order_acquire) &&
          q->head.load(std::memory_order_acquire) == tail)
        return;
      Backoff(&spins);
      continue;
    }
    spins = 0;
    for (; tail < head; ++tail) {
      void** batch = q->slots[tail % kPcSlots];
      for (size_t i = 0; i < kPcBatch; ++i) std::free(batch[i]);
      q->tail.store(tail + 1, std::memory_order_release);
    }
  }
}

void BM_ProducerConsumer(benchmark::State& state) {
  std::unique_ptr<PcQueue> q(new PcQueue);
  std::thread consumer(Consume, q.get());
  uint64_t head = 0;
  size_t k = 0;
  const Clock::time_point start = Clock::now();
  for (auto _ : state) {
    unsigned spins = 0;
    while (head - q->tail.load(std::memory_order_acquire) >= kPcSlots) Backoff(&spins);
    void** batch = q->slots[head % kPcSlots];
    for (size_t i = 0; i < kPcBatch; ++i) {
      void* p = std::malloc(kRotSizes[k]);
      Use(p);
      batch[i] = p;
      if (++k == kNumRotSizes) k = 0;
    }
    q->head.store(++head, std::memory_order_release);
  }
  q->done.store(true, std::memory_order_release);
  consumer.join();  // every object freed before the clock stops
  const double ns = NanosSince(start);
  const double objects = static_cast<double>(state.iterations()) * kPcBatch;
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kPcBatch));
  state.counters["ns_per_object"] = objects > 0 ? ns / objects : 0;
}

BENCHMARK(BM_ProducerConsumer)->UseRealTime();

// The file that defines the malloc this binary calls: with LD_PRELOAD it
// must be the preloaded library, otherwise the run measured glibc.
std::string MallocProvider() {
  Dl_info info;
  void* (*fn)(size_t) = &std::malloc;
  benchmark::DoNotOptimize(fn);
  if (dladdr(reinterpret_cast<void*>(fn), &info) != 0 && info.dli_fname != nullptr)
    return info.dli_fname;
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  const char* preload = std::getenv("LD_PRELOAD");
  benchmark::AddCustomContext("ld_preload", preload != nullptr && *preload ? preload : "(none)");
  benchmark::AddCustomContext("malloc_provider", MallocProvider());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
