// Fork and threads (issue 8, item 3), in the process running on JSMalloc.
// Goes beyond tests/stress (one fork at a time from the main thread while
// three threads malloc/free; short threads in waves):
//  - fork() from two threads while hammer threads run every entry point
//    (malloc, calloc, realloc, memalign family, large blocks > 256 KiB,
//    cross-thread frees) and a maintenance thread keeps taking the
//    allocator's global locks (malloc_trim, release, properties, thread
//    idle, heap sampling at a short interval); each child checks what it
//    inherited, frees it from several threads of its own, allocates heavily,
//    formats the stats report, forks a grandchild now and then, and exits;
//    the parent checks every status;
//  - fork() while another thread formats the stats report, malloc_info or
//    the hugepage coverage (locks of their own); the child calls each;
//  - posix_spawn, posix_spawnp, vfork+execve and fork+execve of /bin/true
//    while the hammer threads run;
//  - pthread_cancel of threads blocked in cancellation points while holding
//    blocks that their cleanup handlers (or C++ destructors run by the forced
//    unwind) free, and of threads in an asynchronous-cancellation window;
//  - 5000 threads created and destroyed in waves of 50 (joinable and
//    detached, TLS and pthread-key destructors that allocate, frees of the
//    previous wave's blocks) while two threads allocate continuously.
// Afterwards the allocator still works and its numbers add up (allocated
// bytes back near the baseline, thread caches back to a handful, metadata
// bounded). ctest runs this binary per-CPU, per-thread and NUMA-aware on an
// injected two-node topology (tests/reliability/reliability.cmake).
#include <gtest/gtest.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "reliability_common.h"

extern char** environ;

namespace {

using reliability::ArmWatchdog;
using reliability::CheckStamp;
using reliability::DisarmWatchdog;
using reliability::MixedSize;
using reliability::Obj;
using reliability::Prop;
using reliability::Stamp;
using reliability::StampedPositionsAreZero;

// --- One thread's operations ---------------------------------------------------

// A worker's private set of live objects plus the operations on it. Every
// failed check increments *bad.
class Worker {
 public:
  Worker(uint64_t seed, size_t max_live, std::atomic<long>* bad)
      : rng_(seed), next_seed_(seed << 32), max_live_(max_live), bad_(bad) {
    live_.reserve(max_live + 1);
  }
  ~Worker() { FreeAll(); }

  std::vector<Obj>& live() { return live_; }

  Obj Allocate() {
    size_t size = MixedSize(rng_);
    uint64_t seed = ++next_seed_;
    unsigned char* p = nullptr;
    switch (rng_() % 8) {
      case 0: {
        p = static_cast<unsigned char*>(calloc(1, size));
        if (p != nullptr && !StampedPositionsAreZero(p, size)) Bad("calloc memory not zeroed");
        break;
      }
      case 1: {
        size_t align = size_t{16} << (rng_() % 13);  // 16 B ... 64 KiB
        void* q = nullptr;
        if (posix_memalign(&q, align, size) != 0) q = nullptr;
        p = static_cast<unsigned char*>(q);
        if (p != nullptr && (reinterpret_cast<uintptr_t>(p) & (align - 1)) != 0) Bad("posix_memalign misaligned");
        break;
      }
      case 2: {
        size_t align = size_t{64} << (rng_() % 10);  // 64 B ... 32 KiB
        p = static_cast<unsigned char*>(memalign(align, size));
        if (p != nullptr && (reinterpret_cast<uintptr_t>(p) & (align - 1)) != 0) Bad("memalign misaligned");
        break;
      }
      case 3: {
        size_t align = size_t{4096} << (rng_() % 3);
        size_t rounded = (size + align - 1) & ~(align - 1);
        p = static_cast<unsigned char*>(aligned_alloc(align, rounded));
        if (p != nullptr && (reinterpret_cast<uintptr_t>(p) & (align - 1)) != 0) Bad("aligned_alloc misaligned");
        break;
      }
      default:
        p = static_cast<unsigned char*>(malloc(size));
        break;
    }
    if (p == nullptr) {
      Bad("allocation failed");
      return Obj{};
    }
    Stamp(p, size, seed);
    return Obj{p, size, seed};
  }

  void Release(const Obj& o) {
    if (o.p == nullptr) return;
    if (!CheckStamp(o.p, o.size, o.seed)) Bad("contents changed before free", o);
    free(o.p);
  }

  // One random step: allocate, free, or realloc.
  void Step() {
    uint64_t r = rng_() % 100;
    if (live_.size() < 8 || (live_.size() < max_live_ && r < 45)) {
      Obj o = Allocate();
      if (o.p != nullptr) live_.push_back(o);
    } else if (r < 85 || live_.size() >= max_live_) {
      size_t k = rng_() % live_.size();
      Release(live_[k]);
      live_[k] = live_.back();
      live_.pop_back();
    } else {
      Obj& o = live_[rng_() % live_.size()];
      size_t size = MixedSize(rng_);
      if (!CheckStamp(o.p, o.size, o.seed)) Bad("contents changed before realloc", o);
      auto* p = static_cast<unsigned char*>(realloc(o.p, size));
      if (p == nullptr) {
        Bad("realloc failed");
        return;
      }
      if (!CheckStamp(p, o.size, o.seed, size)) Bad("realloc lost contents");
      o.p = p;
      o.size = size;
      o.seed = ++next_seed_;
      Stamp(p, size, o.seed);
    }
  }

  void FreeAll() {
    for (const Obj& o : live_) Release(o);
    live_.clear();
  }

  std::mt19937_64& rng() { return rng_; }

 private:
  void Bad(const char* what) {
    if (bad_->fetch_add(1) < 5) fprintf(stderr, "pid %d: %s\n", static_cast<int>(getpid()), what);
  }
  void Bad(const char* what, const Obj& o) {
    if (bad_->fetch_add(1) >= 5) return;
    char damage[256];
    reliability::DescribeDamage(o.p, o.size, o.seed, damage, sizeof(damage));
    fprintf(stderr, "pid %d: %s: %s\n", static_cast<int>(getpid()), what, damage);
  }

  std::mt19937_64 rng_;
  uint64_t next_seed_;
  size_t max_live_;
  std::atomic<long>* bad_;
  std::vector<Obj> live_;
};

// --- Hammer threads: the load other threads put on the allocator ---------------

// Threads allocating, freeing and reallocating mixed sizes, handing objects to
// each other through a small exchange (cross-thread frees), and one
// maintenance thread taking the allocator's global locks as often as it can.
class Hammer {
 public:
  // reports: the maintenance thread also formats the stats report,
  // malloc_info and the hugepage coverage (each under a lock of its own).
  explicit Hammer(int threads, bool reports = false) : reports_(reports) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, i] { Run(static_cast<uint64_t>(i) + 101); });
    }
    threads_.emplace_back([this] { Maintain(); });
  }
  ~Hammer() { Stop(); }

  void Stop() {
    if (stopped_) return;
    stop_ = true;
    for (auto& t : threads_) t.join();
    stopped_ = true;
    std::lock_guard<std::mutex> l(mu_);
    for (const Obj& o : exchange_) {
      if (!CheckStamp(o.p, o.size, o.seed)) bad_++;
      free(o.p);
    }
    exchange_.clear();
  }

  long bad() const { return bad_.load(); }
  long ops() const { return ops_.load(); }
  // The hammer and maintenance threads, for signalling them.
  std::vector<pthread_t> Threads() {
    std::vector<pthread_t> out;
    for (auto& t : threads_) out.push_back(t.native_handle());
    return out;
  }
  long maintenance() const { return maintenance_.load(); }

 private:
  void Run(uint64_t seed) {
    Worker w(seed, 300, &bad_);
    long n = 0;
    while (!stop_) {
      w.Step();
      if (++n % 16 == 0 && !w.live().empty()) {
        // Cross-thread: give one object away, free one somebody else gave.
        std::lock_guard<std::mutex> l(mu_);
        if (exchange_.size() < 256) {
          exchange_.push_back(w.live().back());
          w.live().pop_back();
        }
        if (exchange_.size() > 64) {
          size_t k = w.rng()() % exchange_.size();
          w.Release(exchange_[k]);
          exchange_[k] = exchange_.back();
          exchange_.pop_back();
        }
      }
    }
    ops_ += n;
  }

  void Maintain() {
    std::vector<char> report(1 << 16);
    FILE* devnull = fopen("/dev/null", "w");  // only this thread uses it
    long n = 0;
    while (!stop_) {
      size_t v = 0;
      switch (n % (reports_ ? 7 : 4)) {
        case 0: malloc_trim(0); break;  // drains per-CPU caches, takes every lock
        case 1: jsmalloc_release_memory_to_os(size_t{1} << 20); break;
        case 2: jsmalloc_get_numeric_property("generic.current_allocated_bytes", &v); break;
        case 3: jsmalloc_mark_thread_idle(); break;  // the thread-cache registry
        case 4: jsmalloc_get_stats(report.data(), report.size()); break;
        case 5: malloc_info(0, devnull); break;
        case 6: jsmalloc_get_numeric_property("jsmalloc.hugepage_coverage", &v); break;
      }
      ++n;
      std::this_thread::sleep_for(std::chrono::microseconds(reports_ ? 20 : 200));
    }
    fclose(devnull);
    maintenance_ += n;
  }

  bool reports_;
  std::atomic<bool> stop_{false};
  bool stopped_ = false;
  std::atomic<long> bad_{0};
  std::atomic<long> ops_{0};
  std::atomic<long> maintenance_{0};
  std::mutex mu_;
  std::vector<Obj> exchange_;
  std::vector<std::thread> threads_;
};

// Heap sampling at a short interval for the duration of a test, so the
// sampler's lock and sampled spans are busy at fork time too.
class ShortSampleInterval {
 public:
  ShortSampleInterval() : saved_(jsmalloc_get_sample_interval()) { jsmalloc_set_sample_interval(64 << 10); }
  ~ShortSampleInterval() { jsmalloc_set_sample_interval(saved_); }

 private:
  size_t saved_;
};

std::string DescribeStatus(int status) {
  char buf[96];
  if (status == -1) snprintf(buf, sizeof(buf), "not created or not reaped (fork/waitpid failed)");
  else if (WIFEXITED(status)) snprintf(buf, sizeof(buf), "exit code %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) snprintf(buf, sizeof(buf), "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else snprintf(buf, sizeof(buf), "status 0x%x", status);
  return buf;
}

// --- The fork child --------------------------------------------------------------

// Exit codes of a fork child, so the parent's message says what went wrong.
enum ChildExit {
  kChildOk = 0,
  kChildInheritedCorrupt = 10,
  kChildThreadFailed = 11,
  kChildBadObjects = 12,
  kChildGrandchildFailed = 13,
  kChildStatsBroken = 14,
};

// Runs in the child right after fork(): the parent had threads in the middle
// of allocator calls, possibly holding its locks. The forking thread's own
// objects (`inherited`) were stable across the fork; the child checks them,
// frees them from three threads of its own while those threads allocate
// heavily, and may fork a grandchild.
[[noreturn]] void ChildBody(int index, const std::vector<Obj>& inherited, bool grandchild) {
  ArmWatchdog(30, "fork child (allocator locks not reset after fork?)");
  for (const Obj& o : inherited) {
    if (!CheckStamp(o.p, o.size, o.seed)) _exit(kChildInheritedCorrupt);
  }
  std::atomic<long> bad{0};
  std::vector<std::thread> ts;
  try {
    for (int t = 0; t < 3; ++t) {
      ts.emplace_back([&, t] {
        Worker w(static_cast<uint64_t>(index) * 7 + static_cast<uint64_t>(t) + 1, 200, &bad);
        // This thread's share of the parent's objects: a cross-process,
        // cross-thread free of memory allocated before the fork.
        for (size_t k = static_cast<size_t>(t); k < inherited.size(); k += 3) w.Release(inherited[k]);
        for (int i = 0; i < 2500; ++i) w.Step();
        w.FreeAll();
      });
    }
  } catch (...) {
    _exit(kChildThreadFailed);
  }
  for (auto& t : ts) t.join();
  if (bad.load() != 0) _exit(kChildBadObjects);
  char report[4096];
  size_t v = 0;
  if (jsmalloc_get_stats(report, sizeof(report)) == 0 ||
      jsmalloc_get_numeric_property("generic.current_allocated_bytes", &v) == 0) {
    _exit(kChildStatsBroken);
  }
  if (grandchild) {
    pid_t pid = fork();
    if (pid < 0) _exit(kChildGrandchildFailed);
    if (pid == 0) {
      ArmWatchdog(20, "fork grandchild");
      std::atomic<long> gbad{0};
      {
        Worker w(static_cast<uint64_t>(index) + 99999, 200, &gbad);
        for (int i = 0; i < 2000; ++i) w.Step();
      }
      _exit(gbad.load() == 0 ? 0 : kChildBadObjects);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      _exit(kChildGrandchildFailed);
    }
  }
  _exit(kChildOk);
}

struct ForkTally {
  std::atomic<int> forks{0};
  std::atomic<int> failed{0};
  std::mutex mu;
  std::vector<std::string> failures;

  void Record(const char* who, int index, int status, const char* detail = nullptr) {
    forks++;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    failed++;
    std::lock_guard<std::mutex> l(mu);
    failures.push_back(std::string(who) + " fork " + std::to_string(index) + ": child " + DescribeStatus(status) +
                       (detail != nullptr ? std::string("; it was in ") + detail : std::string()));
  }
};

// Forks `count` children from the calling thread (stopping early at the
// deadline), each running ChildBody, and records every child's status.
void ForkChildren(const char* who, int count, uint64_t seed, std::chrono::steady_clock::time_point deadline,
                  ForkTally* tally) {
  std::atomic<long> bad{0};
  Worker mine(seed, 400, &bad);
  for (int i = 0; i < count && std::chrono::steady_clock::now() < deadline; ++i) {
    // Objects this thread owns at the fork: a few hundred, some large.
    while (mine.live().size() < 200) mine.Step();
    for (int k = 0; k < 50; ++k) mine.Step();
    pid_t pid = fork();
    if (pid < 0) {
      tally->Record(who, i, -1);
      continue;
    }
    if (pid == 0) ChildBody(i, mine.live(), i % 8 == 3);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) status = -1;
    tally->Record(who, i, status);
  }
  mine.FreeAll();
  if (bad.load() != 0) {
    std::lock_guard<std::mutex> l(tally->mu);
    tally->failures.push_back(std::string(who) + ": its own objects were corrupted");
  }
}

TEST(ForkAndThreads, ConfiguredModeIsActive) {
  const char* expect = getenv("JSMALLOC_TEST_EXPECT_PER_CPU");
  if (expect != nullptr) EXPECT_EQ(Prop("jsmalloc.per_cpu_caches_active"), static_cast<size_t>(atoi(expect)));
  const char* parts = getenv("JSMALLOC_TEST_EXPECT_NUMA_PARTITIONS");
  if (parts != nullptr) EXPECT_EQ(Prop("jsmalloc.numa.partitions"), static_cast<size_t>(atoi(parts)));
  printf("per_cpu=%zu numa_aware=%zu partitions=%zu\n", Prop("jsmalloc.per_cpu_caches_active"),
         Prop("jsmalloc.numa.aware"), Prop("jsmalloc.numa.partitions"));
}

// fork() from the main thread and from a second thread while three hammer
// threads are inside allocator calls and a maintenance thread keeps taking
// every lock (malloc_trim drains the per-CPU caches under their locks and a
// membarrier; release takes the back-end's; the stats walk everything; heap
// sampling at 64 KiB keeps the sampler's lock busy). The pthread_atfork
// handlers must leave every child consistent: a child that deadlocks trips
// its 30 s watchdog (SIGABRT), a corrupt one exits with a code naming why.
TEST(ForkAndThreads, ForkFromTwoThreadsWhileOthersHoldAllocatorLocks) {
  ArmWatchdog(240, "ForkFromTwoThreadsWhileOthersHoldAllocatorLocks (parent)");
  ShortSampleInterval sampling;
  const int forks_main = static_cast<int>(reliability::EnvUnsigned("JSMALLOC_TEST_FORKS", 60));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  auto start = std::chrono::steady_clock::now();
  ForkTally tally;
  Hammer hammer(3);
  std::thread second([&] { ForkChildren("second thread", forks_main / 3, 555, deadline, &tally); });
  ForkChildren("main thread", forks_main, 777, deadline, &tally);
  second.join();
  hammer.Stop();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf("forks: %d (%d failed) in %.1f s; hammer ops %ld, maintenance calls %ld (malloc_trim, release, properties, mark idle)\n",
         tally.forks.load(), tally.failed.load(), secs, hammer.ops(), hammer.maintenance());
  for (const std::string& f : tally.failures) ADD_FAILURE() << f;
  EXPECT_EQ(hammer.bad(), 0) << "objects corrupted in the parent";
  EXPECT_GE(tally.forks.load(), forks_main / 2) << "too few forks before the deadline";
  DisarmWatchdog();
}

// The reporting calls have locks of their own (the stats report's scratch,
// malloc_info's buffer, the hugepage-coverage snapshot). A thread inside one
// of them when another thread forks must not leave the child unable to call
// it: the child calls each in turn, and its watchdog names the one it hangs
// in. Stops after 2 failed children (each costs the 5 s watchdog).
TEST(ForkAndThreads, ForkWhileAnotherThreadReadsStats) {
  ArmWatchdog(240, "ForkWhileAnotherThreadReadsStats (parent)");
  const int forks = static_cast<int>(reliability::EnvUnsigned("JSMALLOC_TEST_FORKS", 60));
  // Where the child is, readable by the parent after the child died.
  auto* stage = static_cast<char*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(stage, MAP_FAILED);
  ForkTally tally;
  Hammer hammer(2, /*reports=*/true);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < forks && tally.failed.load() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(300 + 97 * (i % 11)));
    pid_t pid = fork();
    if (pid < 0) {
      tally.Record("main thread", i, -1);
      continue;
    }
    if (pid == 0) {
      auto at = [stage](const char* what) {
        snprintf(stage, 4096, "%s", what);
        ArmWatchdog(5, what);
      };
      static char report[1 << 16];
      at("jsmalloc_get_stats (runtime/stats.cc report_lock held by a parent thread at fork?)");
      jsmalloc_get_stats(report, sizeof(report));
      at("malloc_info (runtime/malloc_api.cc: a lock held by a parent thread at fork?)");
      FILE* f = fopen("/dev/null", "w");
      malloc_info(0, f);
      fclose(f);
      at("jsmalloc.hugepage_coverage (runtime/hugepage_coverage.cc coverage_lock held by a parent thread at fork?)");
      size_t v = 0;
      jsmalloc_get_numeric_property("jsmalloc.hugepage_coverage", &v);
      at("allocating after the reports");
      std::atomic<long> bad{0};
      {
        Worker w(static_cast<uint64_t>(i) + 1, 200, &bad);
        for (int k = 0; k < 2000; ++k) w.Step();
      }
      _exit(bad.load() == 0 ? kChildOk : kChildBadObjects);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) status = -1;
    tally.Record("main thread", i, status, stage);
  }
  hammer.Stop();
  munmap(stage, 4096);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf("forks: %d (%d failed) in %.1f s; maintenance calls %ld (stats report, malloc_info, coverage, trim, ...)\n",
         tally.forks.load(), tally.failed.load(), secs, hammer.maintenance());
  for (const std::string& f : tally.failures) ADD_FAILURE() << f;
  EXPECT_EQ(hammer.bad(), 0);
  DisarmWatchdog();
}

// Creates processes without running the child's atfork handlers (posix_spawn,
// vfork: the child shares the parent's memory until exec) and with fork+exec,
// while the hammer threads run. The parent's heap must be unaffected and every
// /bin/true must exit 0.
__attribute__((noinline)) pid_t VforkExec(const char* path, char* const argv[]) {
  pid_t pid = vfork();
  if (pid == 0) {
    execve(path, argv, environ);
    _exit(127);
  }
  return pid;
}

__attribute__((noinline)) pid_t ForkExec(const char* path, char* const argv[]) {
  pid_t pid = fork();
  if (pid == 0) {
    execve(path, argv, environ);
    _exit(127);
  }
  return pid;
}

TEST(ForkAndThreads, PosixSpawnAndVforkExecWhileThreadsAllocate) {
  ArmWatchdog(180, "PosixSpawnAndVforkExecWhileThreadsAllocate");
  const char* kTrue = "/bin/true";
  ASSERT_EQ(access(kTrue, X_OK), 0) << kTrue;
  char arg0[] = "true";
  char* argv[] = {arg0, nullptr};
  const int rounds = static_cast<int>(reliability::EnvUnsigned("JSMALLOC_TEST_SPAWNS", 200));
  Hammer hammer(3);
  int counts[4] = {0, 0, 0, 0};
  std::vector<std::string> failures;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < rounds; ++i) {
    pid_t pid = -1;
    int kind = i % 4;
    if (kind == 0) {
      // File actions and attributes allocate in the parent, between threads.
      posix_spawn_file_actions_t fa;
      posix_spawnattr_t attr;
      posix_spawn_file_actions_init(&fa);
      posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
      posix_spawn_file_actions_adddup2(&fa, 1, 2);
      posix_spawnattr_init(&attr);
      sigset_t none;
      sigemptyset(&none);
      posix_spawnattr_setsigmask(&attr, &none);
      posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
      int rc = posix_spawn(&pid, kTrue, &fa, &attr, argv, environ);
      posix_spawn_file_actions_destroy(&fa);
      posix_spawnattr_destroy(&attr);
      if (rc != 0) {
        failures.push_back("posix_spawn: " + std::string(strerror(rc)));
        continue;
      }
    } else if (kind == 1) {
      int rc = posix_spawnp(&pid, "true", nullptr, nullptr, argv, environ);
      if (rc != 0) {
        failures.push_back("posix_spawnp: " + std::string(strerror(rc)));
        continue;
      }
    } else if (kind == 2) {
      pid = VforkExec(kTrue, argv);
    } else {
      pid = ForkExec(kTrue, argv);
    }
    if (pid < 0) {
      failures.push_back("process creation failed: " + std::string(strerror(errno)));
      continue;
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) status = -1;
    static const char* kNames[] = {"posix_spawn", "posix_spawnp", "vfork+execve", "fork+execve"};
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failures.push_back(std::string(kNames[kind]) + " #" + std::to_string(i) + ": " + DescribeStatus(status));
    }
    counts[kind]++;
  }
  hammer.Stop();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf("posix_spawn %d, posix_spawnp %d, vfork+execve %d, fork+execve %d in %.1f s; hammer ops %ld\n",
         counts[0], counts[1], counts[2], counts[3], secs, hammer.ops());
  for (const std::string& f : failures) ADD_FAILURE() << f;
  EXPECT_EQ(hammer.bad(), 0);
  DisarmWatchdog();
}

// A profiler's or a timer's signals land on threads inside the allocator,
// also while one waits for a batch of madvise requests through io_uring
// (the background thread's batcher, started here in every mode). An
// interrupted wait once ended the flush early and the batch's MADV_DONTNEED
// then dropped memory already handed out again (docs/reliability.md,
// findings). Every thread gets a signal with a no-op handler (no
// SA_RESTART) every ~20 us while the hammer threads run; no block may
// change.
void NoOpSignal(int) {}

TEST(ForkAndThreads, SignalsWhileThreadsAllocateAndReleaseThroughIoUring) {
  ArmWatchdog(120, "SignalsWhileThreadsAllocateAndReleaseThroughIoUring");
  ASSERT_EQ(jsmalloc_start_background_thread(), 1);
  size_t io_uring = 0;
  jsmalloc_get_numeric_property("jsmalloc.background_io_uring", &io_uring);
  struct sigaction sa = {}, old = {};
  sa.sa_handler = &NoOpSignal;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR2, &sa, &old), 0);
  const double seconds = static_cast<double>(reliability::EnvUnsigned("JSMALLOC_TEST_SIGNAL_MS", 2000)) / 1000;
  long signals = 0;
  {
    Hammer hammer(3);
    std::vector<pthread_t> threads = hammer.Threads();
    auto start = std::chrono::steady_clock::now();
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
      for (pthread_t t : threads) {
        if (pthread_kill(t, SIGUSR2) == 0) ++signals;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    hammer.Stop();
    EXPECT_EQ(hammer.bad(), 0);
    printf("signals sent %ld; hammer ops %ld; maintenance calls %ld\n", signals, hammer.ops(), hammer.maintenance());
  }
  sigaction(SIGUSR2, &old, nullptr);
  static char report[1 << 16];
  jsmalloc_get_stats(report, sizeof(report));
  const char* line = strstr(report, "madvise via");
  if (line != nullptr) {
    const char* end = strchr(line, '\n');
    printf("%.*s\n", static_cast<int>(end != nullptr ? end - line : 80), line);
  }
  DisarmWatchdog();
  if (io_uring == 0) GTEST_SKIP() << "releases do not go through io_uring here (see the report line above)";
}

// Bytes the application holds: generic.current_allocated_bytes without the
// spans of freed sampled objects that the sampler keeps for its next samples
// (counted as in use, at most 512 KiB).
size_t AllocatedBytes() {
  return Prop("generic.current_allocated_bytes") - Prop("jsmalloc.sampling.kept_span_bytes");
}

// --- Cancellation ---------------------------------------------------------------

std::atomic<long> g_cleanups{0};       // cleanup handlers run
std::atomic<long> g_raii_frees{0};     // destructors run by the forced unwind
std::atomic<long> g_raii_live{0};      // RaiiBlocks not destroyed yet
thread_local bool t_erasing = false;   // a destructor run by the loop itself
std::atomic<long> g_blocks_freed{0};   // blocks freed by either
std::atomic<long> g_ready{0};          // threads holding blocks, about to block

struct Held {
  void* blocks[24];
  int n = 0;
};

void FreeHeld(void* arg) {
  Held* h = static_cast<Held*>(arg);
  for (int i = 0; i < h->n; ++i) free(h->blocks[i]);
  g_blocks_freed += h->n;
  h->n = 0;
  g_cleanups++;
}

void Hold(Held* h, std::mt19937_64& rng, int count) {
  for (int i = 0; i < count && h->n < 24; ++i) {
    size_t size = MixedSize(rng);
    void* p = malloc(size);
    memset(p, 0x5a, size < 4096 ? size : 4096);
    h->blocks[h->n++] = p;
  }
}

void Drop(Held* h, int keep) {
  while (h->n > keep) {
    free(h->blocks[--h->n]);
    g_blocks_freed++;
  }
}

struct RaiiBlock {
  explicit RaiiBlock(size_t n) : p(static_cast<char*>(malloc(n))) {
    memset(p, 1, n < 256 ? n : 256);
    g_raii_live++;
  }
  ~RaiiBlock() {
    free(p);
    g_raii_live--;
    if (!t_erasing) {
      g_raii_frees++;
      g_blocks_freed++;
    }
  }
  char* p;
};

pthread_mutex_t g_cancel_mu = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_cancel_cv = PTHREAD_COND_INITIALIZER;  // never signalled
int g_never_written[2] = {-1, -1};                      // pipe nobody writes

void UnlockCancelMutex(void*) { pthread_mutex_unlock(&g_cancel_mu); }

// Asynchronous cancellation is enabled only around this loop, which calls
// nothing (malloc is not async-cancel-safe, so POSIX forbids cancelling
// asynchronously inside it; no allocator can survive that). No cleanups live
// in this frame, so the forced unwind passes through it to the caller's.
__attribute__((noinline)) void Spin(volatile unsigned long* counter, unsigned long n) {
  for (unsigned long i = 0; i < n; ++i) *counter = *counter + 1;
}

void* CancelVictim(void* arg) {
  int kind = static_cast<int>(reinterpret_cast<uintptr_t>(arg) % 5);
  std::mt19937_64 rng(reinterpret_cast<uintptr_t>(arg));
  Held held;
  pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, nullptr);
  pthread_cleanup_push(&FreeHeld, &held);
  bool first = true;
  switch (kind) {
    case 0:  // blocks in nanosleep between allocations
      for (;;) {
        Hold(&held, rng, 8);
        if (first) g_ready++, first = false;
        usleep(50);
        Drop(&held, 2);
      }
    case 1: {  // blocks in read() on a pipe nobody writes
      Hold(&held, rng, 12);
      g_ready++;
      char c;
      for (;;) {
        if (read(g_never_written[0], &c, 1) <= 0) Hold(&held, rng, 1);
      }
    }
    case 2: {  // blocks in pthread_cond_wait; the cleanup must unlock the mutex
      Hold(&held, rng, 6);
      pthread_mutex_lock(&g_cancel_mu);
      pthread_cleanup_push(&UnlockCancelMutex, nullptr);
      g_ready++;
      for (;;) pthread_cond_wait(&g_cancel_cv, &g_cancel_mu);
      pthread_cleanup_pop(1);
      break;
    }
    case 3: {  // C++ objects freed by destructors during the forced unwind
      std::vector<std::unique_ptr<RaiiBlock>> blocks;
      for (;;) {
        blocks.push_back(std::make_unique<RaiiBlock>(MixedSize(rng)));
        if (blocks.size() > 16) {
          t_erasing = true;
          blocks.erase(blocks.begin());
          t_erasing = false;
        }
        if (first && blocks.size() >= 4) g_ready++, first = false;
        std::string s(100 + rng() % 5000, 'x');  // freed by the unwind too
        pthread_testcancel();
      }
    }
    default: {  // an asynchronous-cancellation window between allocations
      volatile unsigned long counter = 0;
      for (;;) {
        Hold(&held, rng, 6);
        if (first) g_ready++, first = false;
        int old;
        pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &old);
        Spin(&counter, 20000);
        pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, &old);
        Drop(&held, 3);
      }
    }
  }
  pthread_cleanup_pop(1);
  return nullptr;
}

// Threads blocked in cancellation points (nanosleep, read, pthread_cond_wait,
// pthread_testcancel) or in an asynchronous-cancellation window, each holding
// blocks, are cancelled; cleanup handlers and the destructors run by the
// forced unwind free the blocks. Afterwards every block was freed, the
// allocator's allocated bytes are back at the baseline and the cancelled
// threads' caches are gone.
TEST(ForkAndThreads, CancelledThreadsFreeInCleanupHandlers) {
  ArmWatchdog(180, "CancelledThreadsFreeInCleanupHandlers");
  ASSERT_EQ(pipe(g_never_written), 0);
  auto run_round = [](int threads, uint64_t salt) {
    std::vector<pthread_t> ts(static_cast<size_t>(threads));
    long ready_before = g_ready.load();
    for (int i = 0; i < threads; ++i) {
      uintptr_t arg = static_cast<uintptr_t>(i) + salt * 5;
      if (pthread_create(&ts[static_cast<size_t>(i)], nullptr, &CancelVictim, reinterpret_cast<void*>(arg)) != 0) {
        ADD_FAILURE() << "pthread_create failed";
        return 0;
      }
    }
    // Cancel once all hold blocks, after a random extra delay.
    while (g_ready.load() < ready_before + threads) std::this_thread::sleep_for(std::chrono::microseconds(50));
    std::this_thread::sleep_for(std::chrono::microseconds(salt % 7 * 100));
    for (pthread_t t : ts) pthread_cancel(t);
    int cancelled = 0;
    for (pthread_t t : ts) {
      void* ret = nullptr;
      pthread_join(t, &ret);
      if (ret == PTHREAD_CANCELED) cancelled++;
    }
    return cancelled;
  };
  // Warm-up: the first cancellation loads libgcc_s for the unwinder, whose
  // allocations stay.
  run_round(5, 0);
  malloc_trim(0);
  const size_t base_alloc = AllocatedBytes();
  const size_t base_caches = Prop("jsmalloc.thread_caches");
  const long cleanups_before = g_cleanups.load();
  const long raii_before = g_raii_frees.load();
  const int rounds = static_cast<int>(reliability::EnvUnsigned("JSMALLOC_TEST_CANCEL_ROUNDS", 60));
  int threads = 0, cancelled = 0;
  auto start = std::chrono::steady_clock::now();
  for (int r = 1; r <= rounds; ++r) {
    threads += 10;
    cancelled += run_round(10, static_cast<uint64_t>(r));
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  malloc_trim(0);
  const size_t alloc = AllocatedBytes();
  const size_t caches = Prop("jsmalloc.thread_caches");
  const long cleanups = g_cleanups.load() - cleanups_before;
  const long raii = g_raii_frees.load() - raii_before;
  printf("cancelled %d of %d threads in %.1f s; cleanup handlers %ld, unwind destructors %ld, blocks freed %ld\n"
         "allocated bytes: baseline %zu, after %zu (%+lld); thread caches: baseline %zu, after %zu\n",
         cancelled, threads, secs, cleanups, raii, g_blocks_freed.load(), base_alloc, alloc,
         static_cast<long long>(alloc) - static_cast<long long>(base_alloc), base_caches, caches);
  EXPECT_EQ(cancelled, threads) << "every thread ends cancelled";
  // Every thread pushed FreeHeld; the fifth that frees through destructors
  // (kind 3) held at least 4 RaiiBlocks when it was cancelled.
  EXPECT_EQ(cleanups, static_cast<long>(threads)) << "every cleanup handler ran";
  EXPECT_GE(raii, static_cast<long>(threads) / 5 * 4) << "the forced unwind ran the destructors";
  EXPECT_EQ(g_raii_live.load(), 0) << "every C++ object of a cancelled thread was destroyed";
  // What the cancelled threads held is all back: within 1 MiB of the
  // baseline (sampled blocks count a page each; caches are not allocated).
  const long long slack = 1 << 20;
  EXPECT_LE(static_cast<long long>(alloc), static_cast<long long>(base_alloc) + slack);
  EXPECT_GE(static_cast<long long>(alloc), static_cast<long long>(base_alloc) - slack);
  EXPECT_LE(caches, base_caches + 1) << "cancelled threads' caches were destroyed";
  // And the allocator still serves, from several threads.
  std::atomic<long> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t) {
    ts.emplace_back([&, t] {
      Worker w(static_cast<uint64_t>(t) + 4242, 300, &bad);
      for (int i = 0; i < 20000; ++i) w.Step();
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  close(g_never_written[0]);
  close(g_never_written[1]);
  DisarmWatchdog();
}

// --- Thousands of threads -----------------------------------------------------

std::atomic<long> g_key_destructors{0};
pthread_key_t g_wave_key;

struct WaveTls {
  ~WaveTls() {
    // Allocation and free in a thread_local destructor, during thread exit.
    void* p = malloc(300);
    free(p);
  }
};
thread_local WaveTls wave_tls;

struct Handoff {
  std::mutex mu;
  std::vector<Obj> objs;  // blocks from one wave, freed by the next
  // Every thread of a wave waits here with its blocks allocated, so the main
  // thread sees the whole wave alive (a wave's worth of thread caches in
  // per-thread mode: the positive control for the count coming back down).
  std::atomic<int> arrived{0};
  std::atomic<int> wave_open{-1};
};

void WaveThread(int wave, uint64_t seed, Handoff* handoff, std::atomic<long>* bad, std::atomic<long>* done) {
  (void)wave_tls;
  pthread_setspecific(g_wave_key, malloc(64 + seed % 512));
  std::mt19937_64 rng(seed);
  std::vector<Obj> mine;
  mine.reserve(32);
  for (int k = 0; k < 24; ++k) {
    size_t size = rng() % 50 == 0 ? (300 << 10) : 1 + rng() % 4096 + (rng() % 8 == 0 ? rng() % 60000 : 0);
    auto* p = static_cast<unsigned char*>(malloc(size));
    if (p == nullptr) {
      (*bad)++;
      continue;
    }
    Stamp(p, size, seed * 100 + static_cast<uint64_t>(k));
    mine.push_back(Obj{p, size, seed * 100 + static_cast<uint64_t>(k)});
  }
  handoff->arrived++;
  while (handoff->wave_open.load() < wave) std::this_thread::sleep_for(std::chrono::microseconds(50));
  std::vector<Obj> theirs;
  {
    std::lock_guard<std::mutex> l(handoff->mu);
    // Take up to 12 of an earlier thread's blocks, leave 8 of ours.
    for (int k = 0; k < 12 && !handoff->objs.empty(); ++k) {
      theirs.push_back(handoff->objs.back());
      handoff->objs.pop_back();
    }
    for (int k = 0; k < 8; ++k) {
      handoff->objs.push_back(mine.back());
      mine.pop_back();
    }
  }
  for (const Obj& o : theirs) {
    if (!CheckStamp(o.p, o.size, o.seed)) (*bad)++;
    free(o.p);
  }
  for (const Obj& o : mine) {
    if (!CheckStamp(o.p, o.size, o.seed)) (*bad)++;
    free(o.p);
  }
  if (done != nullptr) (*done)++;
}

size_t ThreadsInProcess() {
  FILE* f = fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  size_t n = 0;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (strncmp(line, "Threads:", 8) == 0) n = strtoul(line + 8, nullptr, 10);
  }
  fclose(f);
  return n;
}

// 5000 threads (default; JSMALLOC_TEST_WAVE_THREADS) in waves of 50, 40
// joined and 10 detached per wave, each allocating, handing blocks to a later
// thread and freeing an earlier thread's, with allocating TLS and key
// destructors, while two threads allocate continuously. Afterwards: caches
// back to a handful, allocated bytes back at the baseline, metadata bounded
// (5000 leaked thread caches would be megabytes), and after malloc_trim the
// resident heap back near the baseline.
TEST(ForkAndThreads, ThousandsOfThreadsCreatedAndDestroyedWhileOthersAllocate) {
  ArmWatchdog(240, "ThousandsOfThreadsCreatedAndDestroyedWhileOthersAllocate");
  ASSERT_EQ(pthread_key_create(&g_wave_key, [](void* p) {
              free(p);
              free(malloc(128));  // allocation in a key destructor
              g_key_destructors++;
            }),
            0);
  const int total = static_cast<int>(reliability::EnvUnsigned("JSMALLOC_TEST_WAVE_THREADS", 5000));
  constexpr int kWave = 50, kDetached = 10;
  malloc_trim(0);
  const size_t base_threads = ThreadsInProcess();
  const size_t base_alloc = AllocatedBytes();
  const size_t base_caches = Prop("jsmalloc.thread_caches");
  const size_t base_metadata = Prop("jsmalloc.metadata_bytes");
  const size_t base_physical = Prop("generic.physical_memory_used");

  std::atomic<bool> stop{false};
  std::atomic<long> bad{0};
  std::atomic<long> allocator_ops{0};
  std::vector<std::thread> allocators;
  for (int i = 0; i < 2; ++i) {
    allocators.emplace_back([&, i] {
      Worker w(static_cast<uint64_t>(i) + 31337, 300, &bad);
      long n = 0;
      while (!stop) {
        w.Step();
        ++n;
      }
      w.FreeAll();
      allocator_ops += n;
    });
  }
  Handoff handoff;
  std::atomic<long> detached_done{0};
  size_t max_caches = 0;
  int created = 0;
  auto start = std::chrono::steady_clock::now();
  for (int wave = 0; created < total; ++wave) {
    std::vector<std::thread> joinable;
    long detached_expected = detached_done.load();
    int in_wave = 0;
    for (int i = 0; i < kWave && created < total; ++i, ++created) {
      uint64_t seed = static_cast<uint64_t>(created) + 1;
      if (i < kDetached) {
        struct Args {
          int wave;
          uint64_t seed;
          Handoff* handoff;
          std::atomic<long>* bad;
          std::atomic<long>* done;
        };
        auto* args = new Args{wave, seed, &handoff, &bad, &detached_done};
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        int rc = pthread_create(&t, &attr, [](void* a) -> void* {
          auto* args = static_cast<Args*>(a);
          WaveThread(args->wave, args->seed, args->handoff, args->bad, args->done);
          delete args;
          return nullptr;
        }, args);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
          delete args;
          bad++;
          continue;
        }
        ++detached_expected;
      } else {
        joinable.emplace_back(WaveThread, wave, seed, &handoff, &bad, nullptr);
      }
      ++in_wave;
    }
    while (handoff.arrived.load() < in_wave) std::this_thread::sleep_for(std::chrono::microseconds(50));
    size_t c = Prop("jsmalloc.thread_caches");  // the whole wave is alive now
    if (c > max_caches) max_caches = c;
    handoff.arrived = 0;
    handoff.wave_open = wave;
    for (auto& t : joinable) t.join();
    while (detached_done.load() < detached_expected) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  stop = true;
  for (auto& t : allocators) t.join();
  for (const Obj& o : handoff.objs) {
    if (!CheckStamp(o.p, o.size, o.seed)) bad++;
    free(o.p);
  }
  handoff.objs.clear();
  handoff.objs.shrink_to_fit();
  // Detached threads signal before their exit path (TLS and key destructors,
  // the thread cache's teardown) has run: wait until they are gone.
  for (int i = 0; i < 1000 && ThreadsInProcess() > base_threads; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const size_t caches = Prop("jsmalloc.thread_caches");
  const size_t alloc = AllocatedBytes();
  const size_t metadata = Prop("jsmalloc.metadata_bytes");
  malloc_trim(0);
  const size_t physical = Prop("generic.physical_memory_used");
  printf("%d threads in %.1f s (waves of %d, %d detached each) while 2 threads made %ld allocator calls\n"
         "thread caches: baseline %zu, max with a wave alive %zu, after %zu; key destructors %ld\n"
         "allocated bytes: baseline %zu, after %zu (%+lld); metadata: %zu -> %zu KiB; "
         "physical after trim: %zu -> %zu MiB; threads in process %zu (baseline %zu)\n",
         created, secs, kWave, kDetached, allocator_ops.load(), base_caches, max_caches, caches,
         g_key_destructors.load(), base_alloc, alloc,
         static_cast<long long>(alloc) - static_cast<long long>(base_alloc), base_metadata >> 10, metadata >> 10,
         base_physical >> 20, physical >> 20, ThreadsInProcess(), base_threads);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(g_key_destructors.load(), static_cast<long>(created)) << "every key destructor ran";
  EXPECT_LE(caches, base_caches + 2) << "thread caches of exited threads were destroyed";
  if (Prop("jsmalloc.per_cpu_caches_active") == 0) {
    EXPECT_GE(max_caches, base_caches + kWave) << "a live wave shows up as thread caches (positive control)";
  }
  const long long slack = 1 << 20;
  EXPECT_LE(static_cast<long long>(alloc), static_cast<long long>(base_alloc) + slack) << "memory returns";
  EXPECT_GE(static_cast<long long>(alloc), static_cast<long long>(base_alloc) - slack);
  // Thread caches are recycled: metadata grows with the most caches alive at
  // once (about a wave plus the allocators), not with the 5000 created.
  EXPECT_LE(metadata, base_metadata + (size_t{4} << 20)) << "metadata grows with threads created";
  EXPECT_LE(physical, base_physical + (metadata - base_metadata) + (size_t{16} << 20))
      << "the heap gives its memory back after malloc_trim";
  pthread_key_delete(g_wave_key);
  DisarmWatchdog();
}

}  // namespace
