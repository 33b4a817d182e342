#include "backend/bound_page_source.h"

namespace jsmalloc {

void* BoundPageSource::Map(size_t bytes, size_t align, void* hint, bool dense) {
  void* p = inner_->Map(bytes, align, hint, dense);
  if (p == nullptr || mode_ == os::MemPolicy::kDefault) return p;
  // A failed bind is not an allocation failure: the memory is still good,
  // only placed by the kernel's default policy. Counted for the stats.
  int err = os::BindMemory(p, bytes, mode_, nodes_);
  if (err == 0) {
    bound_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  } else {
    bind_failures_.fetch_add(1, std::memory_order_relaxed);
    last_error_.store(err, std::memory_order_relaxed);
  }
  return p;
}

}  // namespace jsmalloc
