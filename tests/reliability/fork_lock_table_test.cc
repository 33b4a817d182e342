// The fork lock table (runtime/fork_locks.h, issue 17 item 3): for every
// allocator lock in turn, a thread holds it while the main thread forks. The
// fork must wait for it (proof that the handlers take that very lock), and
// the child must find every lock usable and the allocator working: it takes
// and drops each lock, allocates every kind of block, starts threads, resizes
// the per-CPU caches, writes a heap profile and the stats. A lock the table
// missed or reset wrongly hangs the child (a watchdog turns that into a
// failure naming the lock). Also: docs/design.md lists the same order.
//
// Linked with the static library: the test reaches the table itself.
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "jsmalloc/jsmalloc.h"
#include "reliability_common.h"
#include "runtime/fork_locks.h"
#include "runtime/static_vars.h"

namespace {

using jsmalloc::ForkLockAt;
using jsmalloc::ForkLockCount;

// Codes the child exits with; the parent's message says which step failed.
enum ChildExit { kChildOk = 0, kChildAllocFailed = 3, kChildBadData = 4, kChildStats = 5 };

// Everything a child does that needs the allocator's locks.
[[noreturn]] void ChildWork(int held) {
  // The watchdog names the step that hung.
  static char what[200];
  auto step = [&](const char* doing) {
    snprintf(what, sizeof(what), "fork child (forked while '%s' was held) stuck %s", ForkLockAt(held).name, doing);
  };
  step("at its start");
  reliability::ArmWatchdog(10, what);
  for (int j = 0; j < ForkLockCount(); ++j) {
    static char taking[96];
    snprintf(taking, sizeof(taking), "taking '%s' (left held?)", ForkLockAt(j).name);
    step(taking);
    ForkLockAt(j).lock();
    ForkLockAt(j).unlock(false);
  }
  step("allocating, in the reports or the heap profile");
  // Every size range: small classes, page-sized, the largest class, large
  // blocks from the back-end, and aligned ones.
  const size_t sizes[] = {8, 24, 64, 200, 1000, 4096, 10000, 65536, 256 << 10, 300 << 10, 3 << 20};
  std::vector<void*> blocks;
  for (int round = 0; round < 4; ++round) {
    for (size_t s : sizes) {
      char* p = static_cast<char*>(malloc(s));
      if (p == nullptr) _exit(kChildAllocFailed);
      memset(p, round + 1, s);
      blocks.push_back(p);
      void* a = nullptr;
      if (posix_memalign(&a, 4096, s) != 0) _exit(kChildAllocFailed);
      blocks.push_back(a);
    }
  }
  // Threads: the registry, thread-cache creation and teardown, cross-thread frees.
  std::thread t([&] {
    for (size_t i = 0; i < blocks.size(); i += 2) {
      free(blocks[i]);
      blocks[i] = malloc(sizes[i / 2 % (sizeof(sizes) / sizeof(sizes[0]))]);
    }
  });
  t.join();
  for (void* p : blocks) free(p);
  // The per-CPU resize pass, trimming, the sampler and unwinder, the reports.
  size_t per_cpu = jsmalloc_get_max_per_cpu_cache_bytes();
  jsmalloc_set_max_per_cpu_cache_bytes(per_cpu / 2 + 4096);
  jsmalloc_set_max_per_cpu_cache_bytes(per_cpu);
  malloc_trim(0);
  if (jsmalloc_dump_heap_profile("/dev/null") != 1) _exit(kChildStats);  // written through, not replaced
  char buf[4096];
  if (jsmalloc_get_stats(buf, sizeof(buf)) == 0) _exit(kChildStats);
  FILE* f = fopen("/dev/null", "w");
  if (f == nullptr || malloc_info(0, f) != 0) _exit(kChildStats);
  fclose(f);
  reliability::DisarmWatchdog();
  _exit(kChildOk);
}

bool PerCpuEntry(const char* name) { return strncmp(name, "per-CPU", 7) == 0; }

TEST(ForkLockTable, ForkWhileEachLockIsHeld) {
  free(malloc(1));  // the allocator is built and its fork handlers registered
  const bool per_cpu = jsmalloc::Static::front_end() == jsmalloc::FrontEnd::kPerCpu;
  ASSERT_GE(ForkLockCount(), 10);
  for (int i = 0; i < ForkLockCount(); ++i) {
    const char* name = ForkLockAt(i).name;
    SCOPED_TRACE(name);
    // Per-CPU entries take nothing in per-thread mode: no cache exists.
    const bool real_lock = per_cpu || !PerCpuEntry(name);
    std::atomic<int> stage{0};  // 1 held, 2 about to release
    std::thread holder([&] {
      ForkLockAt(i).lock();
      stage.store(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      stage.store(2);
      ForkLockAt(i).unlock(false);
    });
    while (stage.load() != 1) std::this_thread::yield();
    pid_t pid = fork();
    ASSERT_NE(pid, -1);
    if (pid == 0) ChildWork(i);
    // The prepare handler took this lock, so fork() returned only after the
    // holder let it go.
    if (real_lock) {
      EXPECT_EQ(stage.load(), 2) << "fork() did not wait for '" << name << "'";
    }
    holder.join();
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == kChildOk)
        << "child after a fork while '" << name << "' was held: "
        << (WIFSIGNALED(status) ? std::string("killed by signal ") + std::to_string(WTERMSIG(status))
                                : std::string("exit code ") + std::to_string(WEXITSTATUS(status)));
    // The parent goes on allocating.
    void* p = malloc(1000);
    ASSERT_NE(p, nullptr);
    free(p);
  }
}

// docs/design.md prints the table's order.
TEST(ForkLockTable, DesignDocListsTheSameOrder) {
  std::ifstream in(JSMALLOC_SOURCE_DIR "/docs/design.md");
  ASSERT_TRUE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  std::string doc, word;
  while (ss >> word) doc += (doc.empty() ? "" : " ") + word;  // lines unwrapped
  std::string order;
  for (int i = 0; i < ForkLockCount(); ++i) order += std::string(i ? " → " : "") + ForkLockAt(i).name;
  EXPECT_NE(doc.find(order), std::string::npos) << "docs/design.md should list the lock order as: " << order;
}

}  // namespace
