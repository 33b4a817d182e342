// The back-end interface: runs of pages for spans, implemented by the legacy
// page heap and the hugepage-aware allocator; and the interface to the OS
// they get address space from (PageSource).
#ifndef JSMALLOC_BACKEND_PAGE_ALLOCATOR_H_
#define JSMALLOC_BACKEND_PAGE_ALLOCATOR_H_

#include <cstddef>

#include "base/config.h"
#include "base/internal_printer.h"
#include "base/span.h"

namespace jsmalloc {

struct BackendStats {
  size_t system_bytes = 0;    // address space obtained from the OS
  size_t free_bytes = 0;      // free, still backed (or never touched) pages
  size_t unmapped_bytes = 0;  // free pages given back with MADV_DONTNEED
  size_t in_use_bytes = 0;    // pages held by spans in use
  size_t spans_in_use = 0;
  size_t free_runs = 0;       // free runs (normal + returned)
  size_t released_total = 0;  // bytes released to the OS, cumulative
  size_t grow_calls = 0;      // times the heap asked the OS for memory

  // Sums (several NUMA partitions' back-ends).
  BackendStats& operator+=(const BackendStats& o) {
    system_bytes += o.system_bytes;
    free_bytes += o.free_bytes;
    unmapped_bytes += o.unmapped_bytes;
    in_use_bytes += o.in_use_bytes;
    spans_in_use += o.spans_in_use;
    free_runs += o.free_runs;
    released_total += o.released_total;
    grow_calls += o.grow_calls;
    return *this;
  }
};

// Where a back-end gets its address space. Injected so unit tests can hand
// out memory (and observe releases) without the process-wide state.
class PageSource {
 public:
  virtual ~PageSource() = default;
  // Zeroed memory of `bytes`, aligned to `align`; nullptr when refused.
  // dense: the range is for memory used densely, which the kernel should
  // back with transparent hugepages as it faults them in (MADV_HUGEPAGE);
  // otherwise faults are base pages (under THP "always" the range is advised
  // MADV_NOHUGEPAGE), so a buffer touched at its head costs what it touches.
  virtual void* Map(size_t bytes, size_t align, void* hint, bool dense) = 0;
  // Drops the contents of a range (it stays mapped and reads as zero).
  virtual bool Release(void* ptr, size_t bytes) = 0;
  // Asks the kernel to make a range (whole hugepages) transparent hugepages
  // again (MADV_COLLAPSE). False if it cannot.
  virtual bool Collapse(void* ptr, size_t bytes) { return false; }
  // Whether the kernel may back a range (whole hugepages) with transparent
  // hugepages on its own (MADV_HUGEPAGE / MADV_NOHUGEPAGE). The filler turns
  // it off for hugepages it subreleased, so khugepaged cannot collapse them
  // and fault the released pages back in behind its back. False if refused.
  virtual bool AllowHugePages(void* ptr, size_t bytes, bool allow) { return false; }
  // Bytes of the range resident now (mincore), or SIZE_MAX if unknown: how
  // the back-end tells densely used large allocations from sparse ones.
  virtual size_t ResidentBytes(void* ptr, size_t bytes) { return ~size_t{0}; }
  // Releases may be queued (batched through io_uring); a back-end calls this
  // before it drops its lock, so no released range is handed out before the
  // kernel has dropped its contents.
  virtual void FlushReleases() {}
};

// Flushes queued releases when a back-end operation ends; declared after the
// lock holder so it runs before the lock is dropped.
class FlushReleasesOnExit {
 public:
  explicit FlushReleasesOnExit(PageSource* s) : s_(s) {}
  ~FlushReleasesOnExit() { s_->FlushReleases(); }
  FlushReleasesOnExit(const FlushReleasesOnExit&) = delete;
  FlushReleasesOnExit& operator=(const FlushReleasesOnExit&) = delete;

 private:
  PageSource* s_;
};

class PageAllocator {
 public:
  virtual ~PageAllocator() = default;
  // A span of exactly n pages, recorded in the pagemap for every page, or
  // nullptr when the OS refuses memory.
  virtual Span* New(Length n) = 0;
  // Same, with the first page a multiple of align_pages (a power of two).
  virtual Span* NewAligned(Length n, Length align_pages) = 0;
  // Returns a span obtained from New*.
  virtual void Delete(Span* span) = 0;
  // Releases at least `bytes` of free memory to the OS if that much is free;
  // returns what was released.
  virtual size_t ReleaseAtLeast(size_t bytes) = 0;
  virtual BackendStats Stats() = 0;
  // Bytes of the heap that may be resident (mapped minus released), from
  // counters: cheap enough to ask on every growth.
  virtual size_t BackedBytes() = 0;
  virtual void Print(Printer* out) = 0;
  virtual const char* Name() const = 0;
  // Waits until frees deferred by work outside the back-end's lock (a large
  // allocation being collapsed into hugepages) have been carried out, so that
  // what the program freed can be released or reused. Short (milliseconds).
  virtual void WaitForDeferredFrees() {}
  // fork(): the parent holds the back-end's locks across fork.
  virtual void LockForFork() = 0;
  virtual void UnlockAfterFork(bool child) = 0;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BACKEND_PAGE_ALLOCATOR_H_
