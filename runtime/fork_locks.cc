#include "runtime/fork_locks.h"

#include "backend/memory_limiter.h"
#include "base/arena.h"
#include "runtime/guarded_pool.h"
#include "runtime/sample_records.h"
#include "runtime/stack_trace.h"
#include "runtime/static_state.h"
#include "runtime/static_vars.h"
#include "runtime/report_thread.h"
#include "runtime/background.h"
#include "runtime/stats.h"

namespace jsmalloc {
namespace {

void Release(SpinLock* l, bool child) {
  if (child) l->ResetAfterFork();
  else l->Unlock();
}

// Per-CPU entries are no-ops in per-thread mode (there is no cache).
bool PerCpu() {
#if JSMALLOC_HAVE_RSEQ_SLAB
  return Static::front_end() == FrontEnd::kPerCpu;
#else
  return false;
#endif
}

// With NUMA partitions: every partition's transfer caches, then every
// partition's central lists (a central list passes another partition's
// object home only after dropping its own lock).
void LockTransfer() {
  for (int p = 0; p < Static::num_partitions(); ++p) {
    for (int cl = 1; cl < kNumClasses; ++cl) Static::transfer(p)[cl].LockForFork();
  }
}
void UnlockTransfer(bool child) {
  for (int p = Static::num_partitions() - 1; p >= 0; --p) {
    for (int cl = kNumClasses - 1; cl >= 1; --cl) Static::transfer(p)[cl].UnlockAfterFork(child);
  }
}
void LockCentral() {
  for (int p = 0; p < Static::num_partitions(); ++p) {
    for (int cl = 1; cl < kNumClasses; ++cl) Static::central(p, cl).LockForFork();
  }
}
void UnlockCentral(bool child) {
  for (int p = Static::num_partitions() - 1; p >= 0; --p) {
    for (int cl = kNumClasses - 1; cl >= 1; --cl) Static::central(p, cl).UnlockAfterFork(child);
  }
}

// The order every path nests them in. The pagemap's leaf lock and the page
// source's release-batch lock are not listed: they are only ever taken under
// a back-end's lock, so holding the back-ends covers them.
constexpr ForkLock kTable[] = {
    {"init", &Static::LockInitForFork, &Static::UnlockInitAfterFork},
    {"stats report", [] { report_lock.Lock(); }, [](bool c) { Release(&report_lock, c); }},
    {"hugepage-coverage scratch", [] { coverage_lock.Lock(); }, [](bool c) { Release(&coverage_lock, c); }},
    {"sampler", &SamplerLockForFork, &SamplerUnlockAfterFork},
    {"unwinder rule cache", &UnwinderLockForFork, &UnwinderUnlockAfterFork},
    {"guarded pool", &GuardedLockForFork, &GuardedUnlockAfterFork},
    {"thread-cache registry", [] { Static::registry().LockForFork(); },
     [](bool c) { Static::registry().UnlockAfterFork(c); }},
#if JSMALLOC_HAVE_RSEQ_SLAB
    {"per-CPU resize pass", [] { if (PerCpu()) Static::cpu_cache().LockResizeForFork(); },
     [](bool c) { if (PerCpu()) Static::cpu_cache().UnlockResizeAfterFork(c); }},
    {"per-CPU cache locks", [] { if (PerCpu()) Static::cpu_cache().LockCpusForFork(); },
     [](bool c) { if (PerCpu()) Static::cpu_cache().UnlockCpusAfterFork(c); }},
#endif
    {"transfer caches", &LockTransfer, &UnlockTransfer},
    {"central lists", &LockCentral, &UnlockCentral},
    // The memory limiter has no lock of its own: it passes to the back-ends.
    {"back-ends", [] { Static::memory_limiter()->LockForFork(); },
     [](bool c) { Static::memory_limiter()->UnlockAfterFork(c); }},
    {"metadata arena", [] { GlobalArena()->lock()->Lock(); }, [](bool c) { Release(GlobalArena()->lock(), c); }},
};

constexpr int kCount = sizeof(kTable) / sizeof(kTable[0]);

}  // namespace

int ForkLockCount() { return kCount; }
const ForkLock& ForkLockAt(int i) { return kTable[i]; }

void LockAllForFork() {
  for (int i = 0; i < kCount; ++i) kTable[i].lock();
}

void UnlockAllAfterFork(bool child) {
  for (int i = kCount - 1; i >= 0; --i) kTable[i].unlock(child);
}

// The pthread_atfork hooks (registered by Static::RegisterThreadHooks).
void Static::LockInitForFork() { g_init_lock.Lock(); }
void Static::UnlockInitAfterFork(bool child) {
  if (child) g_init_lock.ResetAfterFork();
  else g_init_lock.Unlock();
}

// Registered only once the allocator is built, so every lock exists. The
// table and its order: runtime/fork_locks.cc.
void Static::PrepareFork() {
  if (!inited()) return;
  LockAllForFork();
}

void Static::ParentAfterFork() {
  if (!inited()) return;
  UnlockAllAfterFork(false);
}

void Static::ChildAfterFork() {
  if (!inited()) return;
  UnlockAllAfterFork(true);
  // The parent's helper threads do not exist here.
  BackgroundAfterForkChild();
  // Last: starting a thread may allocate, which needs every lock usable.
  ReportThreadAfterForkChild();
}

}  // namespace jsmalloc
