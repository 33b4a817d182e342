#include "runtime/hugepage_coverage.h"
#include "runtime/runtime_locks.h"

#include "hugepage/huge_page_aware_allocator.h"
#include "os/os.h"
#include "base/spinlock.h"
#include "runtime/static_vars.h"

namespace jsmalloc {

namespace {

// Scratch for the snapshot, grown from the metadata arena and reused; one
// computation at a time.
}  // namespace

constinit SpinLock& coverage_lock = g_runtime_locks.coverage.lock;

namespace {
constinit HugePageAwareAllocator::UsedHugePage* snapshot = nullptr;
constinit size_t snapshot_cap = 0;
constexpr size_t kChunk = 1024;
constinit bool thp_flags[kChunk] = {};

size_t Ppm(size_t part, size_t whole) {
  if (whole == 0) return 0;
  return static_cast<size_t>(static_cast<double>(part) * 1e6 / static_cast<double>(whole));
}

}  // namespace

HugepageCoverage ComputeHugepageCoverage() {
  Static::InitIfNeeded();
  HugepageCoverage total;
  total.exact = true;
  for (int p = 0; p < Static::num_partitions(); ++p) {
    HugepageCoverage c = ComputePartitionHugepageCoverage(p);
    total.in_use_bytes += c.in_use_bytes;
    total.covered_bytes += c.covered_bytes;
    total.exact = total.exact && c.exact;
  }
  total.ppm = Ppm(total.covered_bytes, total.in_use_bytes);
  return total;
}

HugepageCoverage ComputePartitionHugepageCoverage(int partition) {
  Static::InitIfNeeded();
  HugepageCoverage c;
  HugePageAwareAllocator* h = Static::hugepage_allocator(partition);
  if (h == nullptr) {
    // Legacy page heap: no per-hugepage bookkeeping. Estimate from the
    // kernel's counters over the whole heap: in use x (THP share of RSS).
    BackendStats b = Static::partition_backend(partition)->Stats();
    c.in_use_bytes = b.in_use_bytes;
    uintptr_t lo, hi;
    size_t anon_huge = 0, rss = 0;
    if (Static::legacy_heap_range(partition, &lo, &hi) && hi > lo &&
        os::ThpBytesInRange(reinterpret_cast<void*>(lo), hi - lo, &anon_huge, &rss) && rss > 0) {
      double share = static_cast<double>(anon_huge) / static_cast<double>(rss);
      if (share > 1) share = 1;
      c.covered_bytes = static_cast<size_t>(static_cast<double>(c.in_use_bytes) * share);
    }
    c.ppm = Ppm(c.covered_bytes, c.in_use_bytes);
    return c;
  }
  SpinLockHolder hold(&coverage_lock);
  size_t n = h->UsedHugePages(snapshot, snapshot_cap);
  while (n > snapshot_cap) {
    size_t cap = n + n / 2 + 64;
    void* mem = Static::arena()->Alloc(cap * sizeof(*snapshot), 64);
    if (mem == nullptr) return c;
    snapshot = static_cast<HugePageAwareAllocator::UsedHugePage*>(mem);
    snapshot_cap = cap;
    n = h->UsedHugePages(snapshot, snapshot_cap);
  }
  c.exact = true;
  for (size_t i = 0; i < n; ++i) c.in_use_bytes += snapshot[i].used_bytes;
  // Ask the kernel about each hugepage; consecutive hugepages in one call.
  for (size_t i = 0; i < n && c.exact;) {
    size_t j = i + 1;
    while (j < n && j - i < kChunk && snapshot[j].hugepage == snapshot[j - 1].hugepage + 1) ++j;
    if (!os::HugePagesBackedByThp(HugePageStart(snapshot[i].hugepage), j - i, thp_flags)) {
      c.exact = false;
      break;
    }
    for (size_t k = i; k < j; ++k) {
      if (thp_flags[k - i]) c.covered_bytes += snapshot[k].used_bytes;
    }
    i = j;
  }
  if (!c.exact) {
    // Without page flags: the THP share of the resident heap, applied to
    // the bytes in use.
    c.covered_bytes = 0;
    size_t anon_huge = 0, rss = 0;
    uintptr_t lo = ~uintptr_t{0}, hi = 0;
    for (size_t i = 0; i < n; ++i) {
      uintptr_t a = snapshot[i].hugepage << kHugePageShift;
      if (a < lo) lo = a;
      if (a + kHugePageSize > hi) hi = a + kHugePageSize;
    }
    if (hi > lo && os::ThpBytesInRange(reinterpret_cast<void*>(lo), hi - lo, &anon_huge, &rss) &&
        rss > 0) {
      double share = static_cast<double>(anon_huge) / static_cast<double>(rss);
      if (share > 1) share = 1;
      c.covered_bytes = static_cast<size_t>(static_cast<double>(c.in_use_bytes) * share);
    }
  }
  c.ppm = Ppm(c.covered_bytes, c.in_use_bytes);
  return c;
}

}  // namespace jsmalloc
