// NUMA partitions of the back-end. PartitionedBackend is the back-end the
// rest of the allocator sees when there are several partitions: large
// allocations come from the calling CPU's partition, every span goes back to
// the partition that made it (Span::partition), and stats add up over all.
// PartitionView is one partition as its own central free lists see it:
// growth still passes the process-wide memory limit.
#ifndef JSMALLOC_BACKEND_PARTITIONED_BACKEND_H_
#define JSMALLOC_BACKEND_PARTITIONED_BACKEND_H_

#include "backend/memory_limiter.h"
#include "backend/page_allocator.h"

namespace jsmalloc {

inline constexpr int kMaxBackendPartitions = 8;

class PartitionedBackend final : public PageAllocator {
 public:
  using CurrentPartitionFn = int (*)();

  // parts[p] made spans stamped with partition p; nodes[p] labels it.
  void Init(PageAllocator* const* parts, const int* nodes, int n, CurrentPartitionFn current);

  Span* New(Length n) override;
  Span* NewAligned(Length n, Length align_pages) override;
  void Delete(Span* span) override;
  size_t ReleaseAtLeast(size_t bytes) override;
  BackendStats Stats() override;
  size_t BackedBytes() override;
  void WaitForDeferredFrees() override {
    for (int p = 0; p < n_; ++p) parts_[p]->WaitForDeferredFrees();
  }
  void Print(Printer* out) override;
  const char* Name() const override { return parts_[0]->Name(); }
  void LockForFork() override;
  void UnlockAfterFork(bool child) override;

  int partitions() const { return n_; }
  PageAllocator* part(int p) const { return parts_[p]; }
  int node(int p) const { return nodes_[p]; }

 private:
  int Current() const;

  PageAllocator* parts_[kMaxBackendPartitions] = {};
  int nodes_[kMaxBackendPartitions] = {};
  int n_ = 0;
  CurrentPartitionFn current_ = nullptr;
};

class PartitionView final : public PageAllocator {
 public:
  // limiter: the process-wide limit (nullptr: none).
  void Init(MemoryLimiter* limiter, PageAllocator* part, int node) {
    limiter_ = limiter;
    part_ = part;
    node_ = node;
  }

  Span* New(Length n) override;
  Span* NewAligned(Length n, Length align_pages) override;
  void Delete(Span* span) override;
  size_t ReleaseAtLeast(size_t bytes) override;
  BackendStats Stats() override { return part_->Stats(); }
  size_t BackedBytes() override { return part_->BackedBytes(); }
  void WaitForDeferredFrees() override { part_->WaitForDeferredFrees(); }
  void Print(Printer* out) override { part_->Print(out); }
  const char* Name() const override { return part_->Name(); }
  void LockForFork() override { part_->LockForFork(); }
  void UnlockAfterFork(bool child) override { part_->UnlockAfterFork(child); }

 private:
  MemoryLimiter* limiter_ = nullptr;
  PageAllocator* part_ = nullptr;
  int node_ = 0;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BACKEND_PARTITIONED_BACKEND_H_
