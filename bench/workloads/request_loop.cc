// request_loop: the allocation pattern of a request-serving thread pool, with
// every request timed. Each thread serves requests back to back; a request
// frees what the other thread handed over, parses (a few mixed-size objects,
// written in full), builds a response that grows by realloc, rarely needs a
// large buffer of which it writes only the head, keeps an object in a
// session table (replacing an older one), and frees the rest -- a quarter of
// those frees handed to the other thread, as when a response is written out
// by another worker. Per-request latency (p50 .. p99.9, max) and requests per
// second are the figures; the request count is fixed, so the checksum is too.
#include <atomic>
#include <thread>
#include <vector>

#include "../lib/latency.h"
#include "common.h"

namespace {

const char kUsage[] =
    "wl_request_loop: 2 threads (T with --threads) serving requests back to back.\n"
    "A request allocates 2-12 objects of 16 B - 4 KiB and a response grown by realloc\n"
    "to 64 B - 16 KiB, 1 in 1000 a 256 KiB - 4 MiB buffer with its first 16 KiB\n"
    "written; keeps one object in a 20,000-slot session table per thread; a\n"
    "quarter of the frees go to the next thread. 1.5M requests per thread x scale.\n"
    "Prints `wl: latency requests=... p50_ns=... p99_ns=... p999_ns=...`.\n";

constexpr uint64_t kRequestsPerThread = 1500000;
constexpr size_t kSessionSlots = 20000;
// Handoffs in flight: a thread that falls behind (descheduled) lets at most
// this many of the other's frees wait for it; beyond, the other frees them
// itself, so the live set does not depend on the scheduler.
constexpr size_t kRing = 4096;  // power of two

struct Block {
  void* p = nullptr;
  uint32_t size = 0;
  uint64_t tag = 0;
};

// Single-producer/single-consumer ring of blocks handed to another thread.
// A full ring makes the producer free the block itself (a server would not
// block either); the sum of the checks does not depend on who frees.
struct alignas(64) Ring {
  std::atomic<uint64_t> head{0};
  char pad1[64 - sizeof(std::atomic<uint64_t>)];
  std::atomic<uint64_t> tail{0};
  char pad2[64 - sizeof(std::atomic<uint64_t>)];
  Block slots[kRing];

  bool Push(const Block& b) {
    uint64_t h = head.load(std::memory_order_relaxed);
    if (h - tail.load(std::memory_order_acquire) >= kRing) return false;
    slots[h & (kRing - 1)] = b;
    head.store(h + 1, std::memory_order_release);
    return true;
  }
  bool Pop(Block* b) {
    uint64_t t = tail.load(std::memory_order_relaxed);
    if (t == head.load(std::memory_order_acquire)) return false;
    *b = slots[t & (kRing - 1)];
    tail.store(t + 1, std::memory_order_release);
    return true;
  }
};

uint64_t Release(const Block& b) {
  uint64_t v = wl::CheckBlock(b.p, b.size, b.tag);
  free(b.p);
  return v;
}

struct Worker {
  bench::LatencyHistogram latency;
  uint64_t sum = 0;  // added to: the same total whichever thread frees a block
  double seconds = 0;
};

void Serve(int id, int threads, uint64_t requests, Ring* rings, Worker* out) {
  wl::Rng rng(1000 + id);
  Ring* inbox = &rings[id];
  Ring* next = &rings[(id + 1) % threads];
  std::vector<Block> session(kSessionSlots);
  const bench::TickClock& clock = bench::TickClock::Get();
  uint64_t sum = 0, serial = static_cast<uint64_t>(id) << 48;
  auto give_away = [&](const Block& b, bool cross) {
    if (cross && threads > 1 && next->Push(b)) return;
    sum += Release(b);
  };
  double t0 = wl::NowSeconds();
  for (uint64_t r = 0; r < requests; ++r) {
    const uint64_t start = clock.Now();
    Block handed;
    while (inbox->Pop(&handed)) sum += Release(handed);
    // Parse: a few objects, written in full.
    Block parts[12];
    int n = static_cast<int>(rng.Range(2, 12));
    for (int i = 0; i < n; ++i) {
      uint32_t size = static_cast<uint32_t>(rng.Chance(7, 10) ? rng.Range(16, 128) : rng.LogUniform(129, 4096));
      void* p = malloc(size);
      if (p == nullptr) wl::Die("malloc failed");
      memset(p, static_cast<int>(serial), size);
      parts[i] = Block{p, size, ++serial};
      wl::StampBlock(p, size, parts[i].tag);
    }
    // The response, grown by realloc as it is built.
    uint32_t target = static_cast<uint32_t>(rng.LogUniform(64, 16384));
    uint32_t len = 0, cap = 0;
    char* resp = nullptr;
    while (len < target) {
      uint32_t add = static_cast<uint32_t>(rng.Range(16, 512));
      if (len + add > target) add = target - len;
      if (len + add > cap) {
        cap = cap == 0 ? 64 : cap * 2;
        if (cap < len + add) cap = len + add;
        resp = static_cast<char*>(realloc(resp, cap));
        if (resp == nullptr) wl::Die("realloc failed");
      }
      memset(resp + len, 'a' + static_cast<int>(add % 26), add);
      len += add;
    }
    Block response{resp, len, ++serial};
    wl::StampBlock(resp, len, response.tag);
    // Rarely a large buffer sized for the worst case, its head written.
    if (rng.Chance(1, 1000)) {
      size_t big = rng.LogUniform(256 << 10, 4 << 20);
      char* b = static_cast<char*>(malloc(big));
      if (b == nullptr) wl::Die("malloc failed");
      memset(b, 7, 16384);
      sum += wl::Mix64(static_cast<unsigned char>(b[big > 16384 ? 16383 : 0]) + big);
      free(b);
    }
    // Keep one part in the session table; the one it replaces is freed.
    Block& slot = session[rng.Below(kSessionSlots)];
    if (slot.p != nullptr) give_away(slot, rng.Chance(1, 4));
    slot = parts[0];
    for (int i = 1; i < n; ++i) give_away(parts[i], rng.Chance(1, 4));
    give_away(response, rng.Chance(1, 4));
    out->latency.Add(clock.ToNs(clock.Now() - start));
  }
  out->seconds = wl::NowSeconds() - t0;
  for (Block& b : session) {
    if (b.p != nullptr) sum += Release(b);
  }
  out->sum = sum;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const int threads = args.threads > 0 ? args.threads : 2;
  const uint64_t requests = wl::Scaled(kRequestsPerThread, args.scale, 1000);
  bench::TickClock::Get();  // calibrated before the clock starts
  double t0 = wl::NowSeconds();
  std::vector<Ring>* rings = new std::vector<Ring>(static_cast<size_t>(threads));
  std::vector<Worker>* workers = new std::vector<Worker>(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back(Serve, t, threads, requests, rings->data(), &(*workers)[static_cast<size_t>(t)]);
  }
  for (std::thread& th : pool) th.join();
  // What was still in flight when a thread finished.
  uint64_t sum = 0;
  Block b;
  for (Ring& r : *rings) {
    while (r.Pop(&b)) sum += Release(b);
  }
  bench::LatencyHistogram all;
  double seconds = 0;
  for (Worker& w : *workers) {
    all.Merge(w.latency);
    sum += w.sum;
    if (w.seconds > seconds) seconds = w.seconds;
  }
  delete workers;
  delete rings;
  all.Print(stderr, seconds);
  return wl::Finish("request_loop", sum, t0);
}
