// sparse_large: a server that reserves large buffers it mostly never uses.
// 20,000 live slots (split over the threads); every operation replaces a
// random slot. One allocation in 16 is a 1 - 5 MiB buffer of which only the
// first 4 KiB is written (a request buffer sized for the worst case, or a
// vector reserved ahead), the others are 64 B - 4 KiB objects written in
// full. About 1,250 such buffers are live at any time: ~3.7 GiB of address
// space holding ~5 MiB of data, next to ~26 MiB of small objects. An
// allocator that backs large blocks with transparent hugepages, or reuses
// the dirty pages of freed buffers for them, turns the reservations into
// resident memory; one that maps them lazily and returns them keeps RSS near
// the data. Peak RSS and system time (page faults, mmap/munmap/madvise) are
// the figures; the operation count is fixed, so the checksum is too.
#include <atomic>
#include <thread>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_sparse_large: 20,000 live slots over T threads (default 2); each\n"
    "operation frees a random slot's block (after checking it) and allocates\n"
    "a new one: 1 in 16 a 1 - 5 MiB buffer with only its first 4 KiB written,\n"
    "otherwise a 64 B - 4 KiB object written in full. 4M operations x scale\n"
    "in total. Prints `wl: mem ops=... live_kib=... written_kib=...`.\n";

constexpr uint64_t kSlots = 20000;
constexpr uint64_t kOps = 4000000;
constexpr uint64_t kMiB = 1024 * 1024;
constexpr size_t kWritten = 4096;

struct Slot {
  void* p = nullptr;
  uint64_t tag = 0;
  uint64_t size = 0;
};

struct alignas(64) Worker {
  int id = 0;
  uint64_t slots = 0, ops = 0;
  uint64_t sum = 0, large = 0;
  uint64_t live = 0, written = 0;  // at the end, before the final frees

  static bool IsLarge(uint64_t size) { return size >= kMiB; }

  uint64_t Release(const Slot& s) {
    uint64_t v = IsLarge(s.size) ? wl::CheckFull(s.p, kWritten, s.tag) + s.size
                                 : wl::CheckFull(s.p, s.size, s.tag);
    free(s.p);
    return v;
  }

  void Run() {
    wl::Rng rng(0x5ba75e + id);
    std::vector<Slot> v(slots);
    uint64_t seq = 0;
    auto fill = [&](Slot& s) {
      s.tag = wl::Mix64((static_cast<uint64_t>(id) << 48) + ++seq);
      s.size = rng.Below(16) == 0 ? rng.Range(kMiB, 5 * kMiB) : rng.LogUniform(64, 4096);
      s.p = malloc(s.size);
      if (s.p == nullptr) wl::Die("malloc returned NULL");
      if (IsLarge(s.size)) {
        wl::FillFull(s.p, kWritten, s.tag);  // the rest stays untouched
        ++large;
      } else {
        wl::FillFull(s.p, s.size, s.tag);
      }
    };
    for (Slot& s : v) fill(s);
    for (uint64_t i = 0; i < ops; ++i) {
      Slot& s = v[rng.Below(slots)];
      sum += Release(s);
      fill(s);
    }
    for (const Slot& s : v) {
      live += s.size;
      written += IsLarge(s.size) ? kWritten : s.size;
    }
    // Measured by the main thread once every worker is here.
    Arrive();
    for (Slot& s : v) sum += Release(s);
  }

  // Waits until main has read the end-of-run figures.
  std::atomic<bool>* go = nullptr;
  std::atomic<int>* arrived = nullptr;
  void Arrive() {
    arrived->fetch_add(1);
    while (!go->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
};

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const int nthreads = args.threads ? args.threads : 2;
  const uint64_t ops = wl::Scaled(kOps, args.scale, 1000);
  double t0 = wl::NowSeconds();
  wl::Statm statm;
  std::atomic<bool> go{false};
  std::atomic<int> arrived{0};
  std::vector<Worker*> workers;
  for (int i = 0; i < nthreads; ++i) {
    Worker* w = new Worker();
    w->id = i;
    w->slots = kSlots / nthreads;
    w->ops = ops / nthreads;
    w->go = &go;
    w->arrived = &arrived;
    workers.push_back(w);
  }
  std::vector<std::thread> threads;
  for (Worker* w : workers) threads.emplace_back([w] { w->Run(); });
  while (arrived.load() < nthreads) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  long anon_end = 0;
  const long rss_end = statm.RssKib(&anon_end);
  const long virt_end = statm.VirtKib();
  wl::HugeStatus huge = wl::ReadHugeStatus();
  go = true;
  for (std::thread& t : threads) t.join();

  uint64_t sum = 0, large = 0, live = 0, written = 0, total_ops = 0;
  for (Worker* w : workers) {
    sum += w->sum;
    large += w->large;
    live += w->live;
    written += w->written;
    total_ops += w->ops;
    delete w;
  }
  wl::PrintHuge("end", huge);
  fprintf(stderr,
          "wl: mem ops=%llu large_allocs=%llu live_kib=%llu written_kib=%llu rss_end_kib=%ld "
          "anon_end_kib=%ld virt_end_kib=%ld\n",
          static_cast<unsigned long long>(total_ops), static_cast<unsigned long long>(large),
          static_cast<unsigned long long>(live / 1024),
          static_cast<unsigned long long>(written / 1024), rss_end, anon_end, virt_end);
  return wl::Finish("sparse_large", sum, t0);
}
