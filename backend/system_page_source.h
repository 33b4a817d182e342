// The PageSource of the running process: address space from mmap; for the
// hugepage-aware back-end, ranges for dense memory marked MADV_HUGEPAGE (the
// machine's THP mode may be `madvise`) and the others MADV_NOHUGEPAGE when THP
// is `always`; releases with MADV_DONTNEED or MADV_FREE, optionally queued in
// a batch that goes to the kernel through io_uring.
#ifndef JSMALLOC_BACKEND_SYSTEM_PAGE_SOURCE_H_
#define JSMALLOC_BACKEND_SYSTEM_PAGE_SOURCE_H_

#include <atomic>

#include "backend/page_allocator.h"
#include "os/os.h"
#include "base/spinlock.h"

namespace jsmalloc {

class SystemPageSource final : public PageSource {
 public:
  void Configure(bool advise_hugepages, bool madv_free) {
    advise_hugepages_ = advise_hugepages;
    madv_free_ = madv_free;
  }
  // From now on releases are queued in `batcher` until FlushReleases (the
  // background thread installs it once io_uring is set up).
  void SetBatcher(os::MadviseBatcher* batcher) { batcher_.store(batcher, std::memory_order_release); }

  void* Map(size_t bytes, size_t align, void* hint, bool dense) override;
  size_t ResidentBytes(void* ptr, size_t bytes) override;
  bool Release(void* ptr, size_t bytes) override;
  bool Collapse(void* ptr, size_t bytes) override;
  bool AllowHugePages(void* ptr, size_t bytes, bool allow) override;
  void FlushReleases() override;

  bool madv_free() const { return madv_free_; }
  size_t releases() const { return releases_.load(std::memory_order_relaxed); }
  size_t advise_failures() const { return advise_failures_.load(std::memory_order_relaxed); }

 private:
  bool advise_hugepages_ = false;
  bool madv_free_ = false;
  std::atomic<os::MadviseBatcher*> batcher_{nullptr};
  // The batcher is one per process, but with NUMA partitions several
  // back-ends (each under its own lock) queue and flush into it at once. A
  // flush holds this until the kernel has done every range queued so far, so
  // a back-end that finds nothing left to flush still knows its ranges are
  // done before it hands them out. (Without it, one partition's queued range
  // could be released after that partition reused it.) Callers hold a
  // back-end lock, which fork() takes first, so it is free at fork.
  SpinLock batch_lock_;
  std::atomic<size_t> releases_{0};
  std::atomic<size_t> advise_failures_{0};
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BACKEND_SYSTEM_PAGE_SOURCE_H_
