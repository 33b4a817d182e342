// steady_churn: a long-running steady state. Worker threads keep a working
// set of mixed sizes (16 B - 128 KiB) that is constantly replaced, and whose
// total moves in waves between about 200 and 400 MiB (grow, then shrink).
// A sampler thread records RSS every 100 ms (and /proc/self/smaps_rollup
// every 500 ms, for hugepage coverage); with WL_RSS_LOG=/path it writes
// `elapsed_ms rss_kib` lines there at exit.
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_steady_churn: steady-state churn of a 200-400 MiB working set in waves.\n"
    "T threads (default 2) each own half of the working set (16 B - 128 KiB\n"
    "blocks: 60% <= 512 B, 30% <= 8 KiB, 10% <= 128 KiB; every page touched);\n"
    "each operation allocates or frees a block, biased to grow the set to\n"
    "200 MiB/thread then to shrink it to 100 MiB/thread, and so on.\n"
    "25M operations per thread x scale. Env WL_RSS_LOG=/path: RSS samples\n"
    "(`elapsed_ms rss_kib`, every 100 ms) are written there at exit.\n";

constexpr uint64_t kOpsPerThread = 25000000;
constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kHighPerThread = 200 * kMiB;
constexpr uint64_t kLowPerThread = 100 * kMiB;

struct Block {
  void* p;
  uint64_t tag;
  uint32_t size;
};

size_t PickSize(wl::Rng& rng) {
  uint64_t r = rng.Below(100);
  if (r < 60) return rng.LogUniform(16, 512);
  if (r < 90) return rng.LogUniform(513, 8192);
  return rng.LogUniform(8193, 128 * 1024);
}

struct Worker {
  int id;
  uint64_t ops;
  uint64_t sum = 0;
  uint64_t waves = 0;
  std::vector<Block> live;

  void Run() {
    wl::Rng rng(9000 + id);
    live.reserve(400000);
    uint64_t live_bytes = 0;
    uint64_t seq = 0;
    bool growing = true;
    for (uint64_t i = 0; i < ops; ++i) {
      // Growing: 50.5% allocations; shrinking: 49.5%. Net ~1% of the ops
      // move the total, the rest replace blocks (~2M ops per half-wave).
      bool alloc = live.empty() || rng.Below(1000) < (growing ? 505u : 495u);
      if (alloc) {
        size_t size = PickSize(rng);
        void* p = malloc(size);
        if (p == nullptr) wl::Die("malloc returned NULL");
        uint64_t tag = wl::Mix64((static_cast<uint64_t>(id) << 48) + seq++);
        wl::StampBlock(p, size, tag);
        live.push_back(Block{p, tag, static_cast<uint32_t>(size)});
        live_bytes += size;
        if (growing && live_bytes >= kHighPerThread) {
          growing = false;
          ++waves;
        }
      } else {
        size_t k = rng.Below(live.size());
        Block b = live[k];
        live[k] = live.back();
        live.pop_back();
        sum += wl::CheckBlock(b.p, b.size, b.tag);
        free(b.p);
        live_bytes -= b.size;
        if (!growing && live_bytes <= kLowPerThread) growing = true;
      }
    }
  }
};

// RSS sampler: preallocated arrays, no allocation while sampling.
constexpr int kMaxSamples = 1 << 16;
uint32_t g_sample_ms[kMaxSamples];
uint32_t g_sample_rss_kib[kMaxSamples];
int g_samples = 0;

struct Sampler {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  double thp_sum = 0, anon_sum = 0;
  int huge_samples = 0;

  void Run(double t0) {
    int statm = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    long page_kib = sysconf(_SC_PAGESIZE) / 1024;
    char buf[128];
    std::unique_lock<std::mutex> lock(mu);
    for (int tick = 0;; ++tick) {
      if (cv.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop; })) break;
      ssize_t n = statm >= 0 ? pread(statm, buf, sizeof(buf) - 1, 0) : -1;
      if (n > 0 && g_samples < kMaxSamples) {
        buf[n] = '\0';
        char* end;
        strtoul(buf, &end, 10);  // size
        unsigned long resident = strtoul(end, nullptr, 10);
        g_sample_ms[g_samples] = static_cast<uint32_t>((wl::NowSeconds() - t0) * 1000.0);
        g_sample_rss_kib[g_samples] = static_cast<uint32_t>(resident * page_kib);
        ++g_samples;
      }
      // Hugepage coverage every half second, past the first second.
      if (tick % 5 == 4 && tick >= 9) {
        wl::HugeStatus h = wl::ReadHugeStatus();
        if (h.anon_kib > 0) {
          thp_sum += h.anon_huge_kib;
          anon_sum += h.anon_kib;
          ++huge_samples;
        }
      }
    }
    if (statm >= 0) close(statm);
  }
};

void WriteRssLog(const char* path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "wl: cannot write WL_RSS_LOG %s\n", path);
    return;
  }
  static char line[64];
  for (int i = 0; i < g_samples; ++i) {
    int len = snprintf(line, sizeof(line), "%u %u\n", g_sample_ms[i], g_sample_rss_kib[i]);
    if (write(fd, line, len) != len) break;
  }
  close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const int nthreads = args.threads ? args.threads : 2;
  const uint64_t ops = wl::Scaled(kOpsPerThread, args.scale, 1000);
  const char* log_path = getenv("WL_RSS_LOG");
  double t0 = wl::NowSeconds();

  Sampler* sampler = new Sampler();
  std::thread sampler_thread([sampler, t0] { sampler->Run(t0); });

  std::vector<Worker*> workers;
  for (int i = 0; i < nthreads; ++i) {
    Worker* w = new Worker();
    w->id = i;
    w->ops = ops;
    workers.push_back(w);
  }
  std::vector<std::thread> threads;
  for (Worker* w : workers) threads.emplace_back([w] { w->Run(); });
  for (std::thread& t : threads) t.join();

  // The working set is still live here: the end of the steady state.
  wl::HugeStatus end = wl::ReadHugeStatus();
  {
    std::lock_guard<std::mutex> g(sampler->mu);
    sampler->stop = true;
  }
  sampler->cv.notify_one();
  sampler_thread.join();
  wl::PrintMem("steady_end");
  wl::PrintHuge("steady_end", end);
  if (sampler->huge_samples > 0)
    fprintf(stderr, "wl: steady thp_avg_kib=%.0f anon_avg_kib=%.0f samples=%d\n",
            sampler->thp_sum / sampler->huge_samples, sampler->anon_sum / sampler->huge_samples,
            sampler->huge_samples);

  uint64_t sum = 0;
  uint64_t waves = 0;
  for (Worker* w : workers) {
    for (const Block& b : w->live) {
      w->sum += wl::CheckBlock(b.p, b.size, b.tag);
      free(b.p);
    }
    sum += w->sum;
    waves += w->waves;
    delete w;
  }
  uint64_t rss_max = 0, rss_total = 0;
  for (int i = 0; i < g_samples; ++i) {
    rss_max = g_sample_rss_kib[i] > rss_max ? g_sample_rss_kib[i] : rss_max;
    rss_total += g_sample_rss_kib[i];
  }
  fprintf(stderr, "wl: waves=%llu rss_samples=%d rss_max_kib=%llu rss_mean_kib=%llu\n",
          static_cast<unsigned long long>(waves), g_samples,
          static_cast<unsigned long long>(rss_max),
          static_cast<unsigned long long>(g_samples ? rss_total / g_samples : 0));
  if (log_path != nullptr && log_path[0] != '\0') WriteRssLog(log_path);
  delete sampler;
  return wl::Finish("steady_churn", sum, t0);
}
