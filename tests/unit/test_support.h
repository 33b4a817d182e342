// Shared fakes for component tests: a page source that records what the
// back-end asks of the OS and can be told to refuse.
#ifndef JSMALLOC_TESTS_UNIT_TEST_SUPPORT_H_
#define JSMALLOC_TESTS_UNIT_TEST_SUPPORT_H_

#include <atomic>
#include <memory>

#include "hugepage/page_allocator.h"
#include "os/linux/os_memory.h"
#include "runtime/pagemap.h"

namespace jsmalloc::testing {

class FakePageSource final : public PageSource {
 public:
  void* Map(size_t bytes, size_t align, void* hint) override {
    if (fail_maps.load() > 0) {
      fail_maps.fetch_sub(1);
      return nullptr;
    }
    void* p = os::MapAligned(bytes, align, nullptr);
    if (p != nullptr) {
      maps.fetch_add(1);
      mapped_bytes.fetch_add(bytes);
    }
    return p;
  }
  bool Release(void* ptr, size_t bytes) override {
    releases.fetch_add(1);
    released_bytes.fetch_add(bytes);
    return os::ReleasePages(ptr, bytes);
  }
  std::atomic<int> fail_maps{0};
  std::atomic<size_t> maps{0}, mapped_bytes{0}, releases{0}, released_bytes{0};
};

// A pagemap of its own per test (the root is large: keep it off the stack).
inline std::unique_ptr<PageMap> NewPageMap() {
  auto pm = std::make_unique<PageMap>();
  pm->Init(GlobalArena());
  return pm;
}

}  // namespace jsmalloc::testing

#endif  // JSMALLOC_TESTS_UNIT_TEST_SUPPORT_H_
