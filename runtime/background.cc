#include "runtime/background.h"

#include <sys/mman.h>

#include <atomic>

#include "hugepage/huge_page_aware_allocator.h"
#include "backend/memory_limiter.h"
#include "os/os.h"
#include "probes/jsmalloc_probes.h"
#include "runtime/static_vars.h"

namespace jsmalloc {

namespace {

constexpr uint64_t kPeriodNs = 1000000000;  // 1 s
// JSMALLOC_BACKGROUND=auto starts the thread once the spans in use first
// reach this: a process that never holds this much has little to give back.
constexpr size_t kAutoStartBytes = size_t{32} << 20;
// Hugepages of live large allocations PromoteDense looks at per cycle.
constexpr size_t kPromoteHugepagesPerCycle = 1024;
// An idle class releases the free pages inside its spans once they hold at
// least this much (smaller amounts are not worth a walk of its spans).
constexpr size_t kIdleClassMinFreeBytes = size_t{1} << 20;

constinit std::atomic<int> state{0};  // 0 stopped, 1 starting, 2 running
constinit std::atomic<size_t> rate{0};
constinit std::atomic<size_t> cycles{0};
constinit std::atomic<size_t> released{0};
constinit std::atomic<size_t> promoted{0};
constinit os::MadviseBatcher batcher;
constinit const char* madvise_path = "madvise";
constinit size_t release_credit = 0;  // bytes we may still release (thread-local to the loop)

void* ThreadMain(void*) {
  uint64_t last = os::MonotonicNanosCoarse();
  for (;;) {
    os::SleepNanos(kPeriodNs);
    uint64_t now = os::MonotonicNanosCoarse();
    BackgroundCycle(now, now - last);
    last = now;
  }
  return nullptr;
}

}  // namespace

void BackgroundCycle(uint64_t now_ns, uint64_t elapsed_ns) {
  Static::InitIfNeeded();
  uint64_t t0 = JSMALLOC_PROBE_ENABLED(background_cycle) ? ProbeNowNs() : 0;
  cycles.fetch_add(1, std::memory_order_relaxed);
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (Static::front_end() == FrontEnd::kPerCpu) Static::cpu_cache().ResizePass(now_ns);
#endif
  // Objects that sat in a transfer cache for a whole cycle go back to their
  // spans, so idle classes' spans can empty and their pages be released.
  for (int p = 0; p < Static::num_partitions(); ++p) {
    for (int cl = 1; cl < kNumClasses; ++cl) Static::transfer(p)[cl].Plunder();
  }
  size_t got = 0;
  // Free objects in spans that still hold live ones: a class nobody has
  // taken objects from for a whole release delay gives back the pages on
  // which every object is free (what malloc_trim does for every class), so
  // a service that drops most of its entries and goes quiet shrinks toward
  // its live set (the demo's kv cache: 754 MiB sat free in such spans after
  // it dropped 3/4 of its entries, none of it released without this).
  const int delay = static_cast<int>(Static::options().release_delay);
  for (int p = 0; p < Static::num_partitions(); ++p) {
    for (int cl = 1; cl < kNumClasses; ++cl)
      got += Static::central(p, cl).ReleaseFreePagesIfIdle(delay, kIdleClassMinFreeBytes);
  }
  for (int p = 0; p < Static::num_partitions(); ++p) {
    if (HugePageAwareAllocator* h = Static::hugepage_allocator(p)) {
      ProbeNumaNodeScope node(Static::numa_plan().partition_node[p]);
      got += h->ReleaseExcess();
      promoted.fetch_add(h->PromoteDense(kPromoteHugepagesPerCycle), std::memory_order_relaxed);
    }
  }
  // The release rate: credit accrues with time, capped at one second's worth
  // so an idle period does not turn into a burst.
  size_t r = rate.load(std::memory_order_relaxed);
  if (r > 0) {
    size_t add = static_cast<size_t>(static_cast<double>(r) * static_cast<double>(elapsed_ns) / 1e9);
    release_credit = release_credit + add > r ? r : release_credit + add;
    BackendStats b = Static::backend()->Stats();
    size_t want = release_credit < b.free_bytes ? release_credit : b.free_bytes;
    if (want > 0) {
      size_t done = Static::backend()->ReleaseAtLeast(want);
      got += done;
      release_credit -= done < release_credit ? done : release_credit;
    }
  }
  released.fetch_add(got, std::memory_order_relaxed);
  if (t0 != 0) JSMALLOC_PROBE(background_cycle, got, ProbeNowNs() - t0);
}

bool StartBackgroundThread() {
  Static::InitIfNeeded();
  int expected = 0;
  if (!state.compare_exchange_strong(expected, 1)) return true;
  rate.store(Static::options().release_rate, std::memory_order_relaxed);
  // io_uring set-up may allocate (outside every allocator lock here).
  if (batcher.Init(Static::options().release_with_madv_free ? MADV_FREE : MADV_DONTNEED,
                   Static::options().io_uring)) {
    if (batcher.mode() == os::MadviseBatcher::Mode::kIoUring) {
      madvise_path = "io_uring";
    } else {
      madvise_path = batcher.fallback_reason();
    }
    Static::system_page_source()->SetBatcher(&batcher);
  }
  if (!os::StartHelperThread(&ThreadMain, "jsmalloc-bg", 0)) {
    state.store(0);
    return false;
  }
  // Its cycles release what demand no longer needs; frees need not.
  for (int p = 0; p < Static::num_partitions(); ++p) {
    if (HugePageAwareAllocator* h = Static::hugepage_allocator(p)) h->SetBackgroundRelease(true);
  }
  state.store(2);
  return true;
}

namespace {

void AutoStart() { StartBackgroundThread(); }

}  // namespace

void ArmBackgroundAutoStart() {
  if (Static::options().background < 0) Static::memory_limiter()->SetGrowthHook(kAutoStartBytes, &AutoStart);
}

void SetReleaseRate(size_t bytes_per_second) { rate.store(bytes_per_second, std::memory_order_relaxed); }

BackgroundStats GetBackgroundStats() {
  BackgroundStats s;
  s.running = state.load() == 2;
  s.cycles = cycles.load(std::memory_order_relaxed);
  s.released_bytes = released.load(std::memory_order_relaxed);
  s.promoted_hugepages = promoted.load(std::memory_order_relaxed);
  s.auto_start = Static::options().background < 0;
  s.release_rate = rate.load(std::memory_order_relaxed);
  // The ring can stop taking requests later (the batcher then goes direct).
  s.madvise_path = madvise_path;
  if (state.load() == 2 && batcher.mode() != os::MadviseBatcher::Mode::kIoUring && madvise_path[0] == 'i') {
    s.madvise_path = batcher.fallback_reason();
  }
  s.madvise_batches = batcher.batches();
  s.madvise_ranges = batcher.ranges();
  s.madvise_syscalls = batcher.syscalls();
  s.madvise_interrupted_waits = batcher.interrupted_waits();
  return s;
}

void BackgroundAfterForkChild() {
  // The io_uring instance is shared with the parent's thread; the child must
  // not submit into it. Go back to plain madvise and no thread: frees release
  // again, and in auto mode the child starts its own thread once it grows
  // (an exec'ed child never does).
  Static::system_page_source()->SetBatcher(nullptr);
  if (state.load() != 0) {
    for (int p = 0; p < Static::num_partitions(); ++p) {
      if (HugePageAwareAllocator* h = Static::hugepage_allocator(p)) h->SetBackgroundRelease(false);
    }
  }
  state.store(0);
  ArmBackgroundAutoStart();
}

}  // namespace jsmalloc
