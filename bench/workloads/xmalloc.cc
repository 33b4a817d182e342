// xmalloc: producer/consumer cross-thread frees. Producers allocate blocks of
// mixed sizes, fill them and push the pointers through preallocated
// lock-free single-producer/single-consumer rings; consumers verify the
// contents and free the blocks. Every object is freed by a thread that did
// not allocate it (the pattern of message passing and pipelines).
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_xmalloc: producer/consumer cross-thread frees.\n"
    "T threads (default 4: 2 producers, 2 consumers, paired through lock-free\n"
    "rings of 4096 pointers, drained in batches of >= 256). Producers allocate 16 B - 16 KiB blocks (75% <= 256 B,\n"
    "20% <= 2 KiB), fill them and push them; consumers verify and free them.\n"
    "35M blocks per producer x scale.\n";

constexpr uint64_t kBlocksPerProducer = 35000000;
constexpr size_t kRing = 4096;  // power of two
// A consumer waits for this many blocks (or the end) before it drains the
// ring, so that the threads do not hand the CPU back and forth per block.
constexpr uint64_t kBatch = 256;

struct Header {
  uint64_t tag;
  uint32_t size;
  uint32_t fill;
};

// Single-producer/single-consumer ring. A side that has to wait spins
// briefly, then sleeps on a condition variable; the other side wakes it only
// when it has announced that it sleeps (so the fast path takes no lock, and a
// busy machine does not turn the waits into sched_yield storms).
struct alignas(64) Ring {
  std::atomic<uint64_t> head{0};  // next slot the producer writes
  char pad1[64 - sizeof(std::atomic<uint64_t>)];
  std::atomic<uint64_t> tail{0};  // next slot the consumer reads
  char pad2[64 - sizeof(std::atomic<uint64_t>)];
  std::atomic<bool> done{false};  // the producer pushed its end marker
  std::atomic<bool> consumer_sleeps{false};
  std::atomic<bool> producer_sleeps{false};
  std::mutex mu;
  std::condition_variable consumer_cv;
  std::condition_variable producer_cv;
  void* slots[kRing];
};

std::atomic<uint64_t> g_sleeps{0};

// Waits until ready() holds: a short spin, then sleep with `sleeps` set.
template <typename Ready>
void WaitFor(Ring* ring, std::atomic<bool>* sleeps, std::condition_variable* cv, Ready ready) {
  for (int i = 0; i < 200; ++i) {
    if (ready()) return;
    __builtin_ia32_pause();
  }
  g_sleeps.fetch_add(1, std::memory_order_relaxed);
  std::unique_lock<std::mutex> lock(ring->mu);
  sleeps->store(true);  // seq_cst: ordered before the re-check in ready()
  cv->wait(lock, ready);
  sleeps->store(false);
}

// Wakes the other side if it sleeps (its condition is re-checked there).
void Wake(Ring* ring, std::atomic<bool>* sleeps, std::condition_variable* cv) {
  if (sleeps->load()) {
    std::lock_guard<std::mutex> g(ring->mu);
    cv->notify_one();
  }
}

void Produce(Ring* ring, int id, uint64_t count) {
  wl::Rng rng(77 + id);
  uint64_t head = 0;
  for (uint64_t i = 0; i <= count; ++i) {
    void* p = nullptr;  // the last one is the end marker
    if (i < count) {
      uint64_t r = rng.Below(100);
      size_t size = r < 75 ? rng.Range(16, 256) : r < 95 ? rng.Range(257, 2048) : rng.Range(2049, 16384);
      p = malloc(size);
      if (p == nullptr) wl::Die("malloc returned NULL");
      Header h{wl::Mix64((static_cast<uint64_t>(id) << 40) + i), static_cast<uint32_t>(size), 0};
      h.fill = static_cast<uint32_t>(h.tag >> 56);
      memcpy(p, &h, sizeof(h));
      memset(static_cast<char*>(p) + sizeof(h), static_cast<int>(h.fill), size - sizeof(h));
    }
    if (head - ring->tail.load(std::memory_order_acquire) >= kRing)
      WaitFor(ring, &ring->producer_sleeps, &ring->producer_cv,
              [&] { return head - ring->tail.load() < kRing; });
    ring->slots[head & (kRing - 1)] = p;
    ring->head.store(++head);  // seq_cst: ordered before the sleeps check
    if (p == nullptr) ring->done.store(true);
    if ((head % kBatch) == 0 || p == nullptr) Wake(ring, &ring->consumer_sleeps, &ring->consumer_cv);
  }
}

uint64_t Consume(Ring* ring) {
  uint64_t sum = 0;
  uint64_t tail = 0;
  uint64_t head = 0;
  for (;;) {
    if (tail == head) {
      // Drained: let a waiting producer go on, then wait for a batch.
      Wake(ring, &ring->producer_sleeps, &ring->producer_cv);
      auto ready = [&] {
        head = ring->head.load();
        return head - tail >= kBatch || (head != tail && ring->done.load());
      };
      if (!ready()) WaitFor(ring, &ring->consumer_sleeps, &ring->consumer_cv, ready);
    }
    void* p = ring->slots[tail & (kRing - 1)];
    ring->tail.store(++tail, std::memory_order_release);
    if (p == nullptr) break;
    Header h;
    memcpy(&h, p, sizeof(h));
    const unsigned char* c = static_cast<const unsigned char*>(p);
    if (h.fill != (h.tag >> 56)) wl::Die("block header corrupted");
    if (h.size > sizeof(h) &&
        (c[h.size - 1] != h.fill || c[sizeof(h) + (h.size - sizeof(h)) / 2] != h.fill))
      wl::Die("block contents corrupted");
    sum += wl::Mix64(h.tag + h.size);
    free(p);
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  int nthreads = args.threads ? args.threads : 4;
  const int pairs = nthreads < 2 ? 1 : nthreads / 2;
  const uint64_t count = wl::Scaled(kBlocksPerProducer, args.scale, 1000);
  double t0 = wl::NowSeconds();

  std::vector<Ring*> rings;
  for (int i = 0; i < pairs; ++i) rings.push_back(new Ring());
  std::vector<uint64_t> sums(pairs, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < pairs; ++i) {
    threads.emplace_back([&, i] { sums[i] = Consume(rings[i]); });
    threads.emplace_back([&, i] { Produce(rings[i], i, count); });
  }
  for (std::thread& t : threads) t.join();
  uint64_t sum = 0;
  for (int i = 0; i < pairs; ++i) {
    sum += sums[i];
    delete rings[i];
  }
  fprintf(stderr, "wl: sleeps=%llu\n", static_cast<unsigned long long>(g_sleeps.load()));
  return wl::Finish("xmalloc", sum, t0);
}
