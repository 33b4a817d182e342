// fork_server: a service that forks while its threads allocate, as redis does
// to snapshot and pre-fork servers do to spawn workers. Two threads churn a
// heap of mixed small objects (every block written) at a fixed rate (as a
// service at a given load: flat out, a faster allocator's threads would
// write more pages while a child lives and take more CPU from it, and the
// figures would measure that instead of fork); the main thread forks
// 100 times, and each child allocates 2,000 objects of up to 4 KiB, writes
// them, checks them and exits. The figures: how long fork() holds the parent
// (the pause), how long a child takes for its work (its first allocations
// run on what the allocator left behind at fork: locks, caches, pages
// shared copy-on-write), the memory each child copies (its private dirty
// pages), and the parent's page faults while children live.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "../lib/latency.h"
#include "common.h"

namespace {

const char kUsage[] =
    "wl_fork_server: 2 threads churn ~20 MiB of 16 B - 1 KiB objects (1M malloc+free\n"
    "per second each) while the\n"
    "main thread forks 100 times x scale; each child allocates and writes 2,000\n"
    "objects of 16 B - 4 KiB, checks them and exits. Prints `wl: fork ...` with\n"
    "the fork() pause, the children's run time and private dirty memory, and the\n"
    "parent's page faults during the forks.\n";

constexpr int kForks = 100;
constexpr size_t kSlots = 20000;
constexpr int kChildObjects = 2000;
constexpr double kChurnOpsPerSecond = 1e6;  // per churn thread
// One child in this many reads its smaps_rollup (walking every page table
// of the process costs about a millisecond, which the parent waits for).
constexpr int kDirtySampleEvery = 10;

std::atomic<bool> g_stop{false};
std::atomic<uint64_t> g_churn_ops{0};

void Churn(int id, uint64_t* sum_out) {
  wl::Rng rng(500 + id);
  std::vector<void*> slot(kSlots, nullptr);
  std::vector<uint32_t> size(kSlots, 0);
  std::vector<uint64_t> tag(kSlots, 0);
  uint64_t sum = 0, serial = static_cast<uint64_t>(id) << 48, ops = 0;
  const double start = wl::NowSeconds();
  while (!g_stop.load(std::memory_order_relaxed)) {
    // Paced: ahead of the rate, sleep until the next batch is due.
    double due = start + static_cast<double>(ops) / kChurnOpsPerSecond;
    double now = wl::NowSeconds();
    if (due - now > 50e-6) {
      timespec ts = {0, static_cast<long>((due - now) * 1e9)};
      nanosleep(&ts, nullptr);
    }
    for (int i = 0; i < 256; ++i) {
      size_t k = rng.Below(kSlots);
      if (slot[k] != nullptr) {
        sum += wl::CheckBlock(slot[k], size[k], tag[k]);
        free(slot[k]);
      }
      size[k] = static_cast<uint32_t>(rng.Range(16, 1024));
      slot[k] = malloc(size[k]);
      if (slot[k] == nullptr) wl::Die("malloc failed");
      tag[k] = ++serial;
      memset(slot[k], static_cast<int>(serial), size[k]);
      wl::StampBlock(slot[k], size[k], tag[k]);
    }
    ops += 256;
  }
  for (size_t k = 0; k < kSlots; ++k) {
    if (slot[k] != nullptr) {
      sum += wl::CheckBlock(slot[k], size[k], tag[k]);
      free(slot[k]);
    }
  }
  g_churn_ops.fetch_add(ops);
  *sum_out = sum;
}

long PrivateDirtyKib() {
  static char buf[8192];
  if (wl::ReadProcFile("/proc/self/smaps_rollup", buf, sizeof(buf)) <= 0) return -1;
  return wl::FindKib(buf, "Private_Dirty");
}

struct ChildReport {
  double seconds;
  long private_dirty_kib;
  uint64_t check;
};

// The child's work; never returns.
[[noreturn]] void Child(int n, int fd) {
  double t0 = wl::NowSeconds();
  wl::Rng rng(9000 + static_cast<uint64_t>(n));
  void* obj[kChildObjects];
  uint32_t size[kChildObjects];
  uint64_t check = 0;
  for (int i = 0; i < kChildObjects; ++i) {
    size[i] = static_cast<uint32_t>(rng.Range(16, 4096));
    obj[i] = malloc(size[i]);
    if (obj[i] == nullptr) _exit(4);
    wl::StampBlock(obj[i], size[i], static_cast<uint64_t>(n) * kChildObjects + i);
  }
  for (int i = 0; i < kChildObjects; ++i) {
    check += wl::CheckBlock(obj[i], size[i], static_cast<uint64_t>(n) * kChildObjects + i);
    free(obj[i]);
  }
  double seconds = wl::NowSeconds() - t0;
  ChildReport r{seconds, n % kDirtySampleEvery == 0 ? PrivateDirtyKib() : -1, check};
  if (write(fd, &r, sizeof(r)) != static_cast<ssize_t>(sizeof(r))) _exit(5);
  _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const int forks = static_cast<int>(wl::Scaled(kForks, args.scale, 5));
  double t0 = wl::NowSeconds();
  int pipefd[2];
  if (pipe(pipefd) != 0) wl::Die("pipe");
  uint64_t churn_sum[2] = {0, 0};
  std::thread a(Churn, 0, &churn_sum[0]), b(Churn, 1, &churn_sum[1]);
  // Let the heap reach its working size before the first fork.
  usleep(300000);
  bench::LatencyHistogram pause, child_time;
  uint64_t check = 0;
  long dirty_total = 0, dirty_max = 0, dirty_n = 0;
  rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  double t_forks = wl::NowSeconds();
  for (int n = 0; n < forks; ++n) {
    uint64_t f0 = bench::MonotonicNs();
    pid_t pid = fork();
    if (pid == 0) Child(n, pipefd[1]);
    pause.Add(bench::MonotonicNs() - f0);
    if (pid < 0) wl::Die("fork");
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      wl::Die("child failed");
    }
    ChildReport r;
    if (read(pipefd[0], &r, sizeof(r)) != static_cast<ssize_t>(sizeof(r))) wl::Die("child report");
    child_time.Add(static_cast<uint64_t>(r.seconds * 1e9));
    check += r.check;
    if (r.private_dirty_kib >= 0) {
      dirty_total += r.private_dirty_kib;
      ++dirty_n;
      if (r.private_dirty_kib > dirty_max) dirty_max = r.private_dirty_kib;
    }
  }
  double fork_seconds = wl::NowSeconds() - t_forks;
  getrusage(RUSAGE_SELF, &after);
  g_stop.store(true);
  a.join();
  b.join();
  fprintf(stderr,
          "wl: fork forks=%d seconds=%.3f pause_p50_us=%.1f pause_max_us=%.1f child_p50_ms=%.3f "
          "child_max_ms=%.3f child_dirty_kib=%ld child_dirty_max_kib=%ld parent_faults=%ld "
          "churn_mops=%.2f\n",
          forks, fork_seconds, static_cast<double>(pause.Quantile(0.5)) / 1e3,
          static_cast<double>(pause.max()) / 1e3, static_cast<double>(child_time.Quantile(0.5)) / 1e6,
          static_cast<double>(child_time.max()) / 1e6, dirty_n ? dirty_total / dirty_n : 0, dirty_max,
          after.ru_minflt - before.ru_minflt,
          static_cast<double>(g_churn_ops.load()) / 1e6 / (wl::NowSeconds() - t0));
  // The churn threads' sums depend on how long they ran; only the
  // children's work (fixed) goes into the checksum.
  (void)churn_sum;
  return wl::Finish("fork_server", check, t0);
}
