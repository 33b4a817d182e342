// The LockTable: locks on cache lines of their own, in memory that a forked
// child gets zeroed, so that the parent releases them after fork() without a
// copy-on-write fault and the child finds them free.
#include "base/lock_table.h"

#include "os/os.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <set>

namespace jsmalloc {
namespace {

long MinorFaults() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

TEST(LockTableTest, LocksAreFreeDistinctAndOnLinesOfTheirOwn) {
  PaddedSpinLock* a = LockTable::Allocate(200);
  PaddedSpinLock* b = LockTable::Allocate(3);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::set<uintptr_t> lines;
  for (int i = 0; i < 200; ++i) {
    EXPECT_FALSE(a[i].lock.IsHeld());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(&a[i]) % 64, 0u);
    lines.insert(reinterpret_cast<uintptr_t>(&a[i]) / 64);
  }
  for (int i = 0; i < 3; ++i) lines.insert(reinterpret_cast<uintptr_t>(&b[i]) / 64);
  EXPECT_EQ(lines.size(), 203u);
  EXPECT_EQ(LockTable::Allocate(0), nullptr);
  // A request larger than a chunk gets a mapping of its own, and handing
  // the locks out touches none of it (most per-CPU locks are never taken).
  PaddedSpinLock* big = LockTable::Allocate(5000);
  ASSERT_NE(big, nullptr);
  ASSERT_EQ(reinterpret_cast<uintptr_t>(big) % os::SystemPageSize(), 0u);
  const size_t resident = os::ResidentBytesIn(big, 5000 * sizeof(PaddedSpinLock));
  if (resident != SIZE_MAX) EXPECT_EQ(resident, 0u) << "handing locks out wrote to them";
  EXPECT_FALSE(big[17].lock.IsHeld());
  big[4999].lock.Lock();
  big[4999].lock.Unlock();
  LockTableStats s = LockTable::Stats();
  EXPECT_GE(s.locks, 5203u);
  EXPECT_GE(s.bytes, 5203u * 64);
}

// What fork_locks.cc does around fork(): hold every lock, fork, release them
// in the parent and reset them in the child.
TEST(LockTableTest, AForkedChildFindsTheLocksFreeAndTheParentReleasesThemWithoutAFault) {
  const int n = 400;  // several pages' worth
  PaddedSpinLock* locks = LockTable::Allocate(n);
  ASSERT_NE(locks, nullptr);
  if (!LockTable::Stats().wiped) GTEST_SKIP() << "the kernel refused MADV_WIPEONFORK (Linux < 4.14)";
  for (int i = 0; i < n; ++i) locks[i].lock.Lock();
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int held = 0;
    for (int i = 0; i < n; ++i) held += locks[i].lock.IsHeld() ? 1 : 0;
    char c = 0;
    (void)!read(pipefd[0], &c, 1);  // stay alive (pages shared) until the parent is done
    _exit(held == 0 ? 0 : 1);
  }
  // The child is alive: a page it shared would be copied on this write.
  // (The first call copies the stack page getrusage writes to.)
  MinorFaults();
  const long before = MinorFaults();
  for (int i = 0; i < n; ++i) locks[i].lock.Unlock();
  const long faults = MinorFaults() - before;
  (void)!write(pipefd[1], "x", 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(pipefd[0]);
  close(pipefd[1]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child saw held locks";
#if defined(__SANITIZE_THREAD__)
  // TSan writes its shadow of the locks on every release, and its shadow
  // pages are shared with the child like any others: the count is TSan's.
  (void)faults;
#else
  EXPECT_EQ(faults, 0) << "the parent's release copied lock-table pages";
#endif
  for (int i = 0; i < n; ++i) EXPECT_FALSE(locks[i].lock.IsHeld());
}

}  // namespace
}  // namespace jsmalloc
