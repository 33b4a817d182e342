// A PageSource that places everything it maps on chosen NUMA nodes (mbind)
// before any page is touched, so the kernel faults the pages in there and
// keeps refaulting them there after a release. Wraps the process's source:
// one per NUMA partition.
#ifndef JSMALLOC_BACKEND_BOUND_PAGE_SOURCE_H_
#define JSMALLOC_BACKEND_BOUND_PAGE_SOURCE_H_

#include <atomic>

#include "backend/page_allocator.h"
#include "os/os.h"

namespace jsmalloc {

class BoundPageSource final : public PageSource {
 public:
  // mode kDefault: no binding (a plain pass-through).
  void Init(PageSource* inner, os::MemPolicy mode, uint64_t nodes) {
    inner_ = inner;
    mode_ = mode;
    nodes_ = nodes;
  }

  void* Map(size_t bytes, size_t align, void* hint, bool dense) override;
  bool Release(void* ptr, size_t bytes) override { return inner_->Release(ptr, bytes); }
  bool Collapse(void* ptr, size_t bytes) override { return inner_->Collapse(ptr, bytes); }
  bool AllowHugePages(void* ptr, size_t bytes, bool allow) override {
    return inner_->AllowHugePages(ptr, bytes, allow);
  }
  size_t ResidentBytes(void* ptr, size_t bytes) override { return inner_->ResidentBytes(ptr, bytes); }
  void FlushReleases() override { inner_->FlushReleases(); }

  os::MemPolicy mode() const { return mode_; }
  uint64_t nodes() const { return nodes_; }
  size_t bound_bytes() const { return bound_bytes_.load(std::memory_order_relaxed); }
  size_t bind_failures() const { return bind_failures_.load(std::memory_order_relaxed); }
  int last_bind_error() const { return last_error_.load(std::memory_order_relaxed); }

 private:
  PageSource* inner_ = nullptr;
  os::MemPolicy mode_ = os::MemPolicy::kDefault;
  uint64_t nodes_ = 0;
  std::atomic<size_t> bound_bytes_{0};
  std::atomic<size_t> bind_failures_{0};
  std::atomic<int> last_error_{0};
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BACKEND_BOUND_PAGE_SOURCE_H_
