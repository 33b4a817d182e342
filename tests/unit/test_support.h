// Shared fakes for component tests: a page source that records what the
// back-end asks of the OS and can be told to refuse.
#ifndef JSMALLOC_TESTS_UNIT_TEST_SUPPORT_H_
#define JSMALLOC_TESTS_UNIT_TEST_SUPPORT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "backend/page_allocator.h"
#include "os/os.h"
#include "base/pagemap.h"
#include "caches/per_cpu_slab.h"

namespace jsmalloc::testing {

class FakePageSource final : public PageSource {
 public:
  void* Map(size_t bytes, size_t align, void* hint, bool dense) override {
    if (fail_maps.load() > 0) {
      fail_maps.fetch_sub(1);
      return nullptr;
    }
    void* p = os::MapAligned(bytes, align, nullptr);
    if (p != nullptr) {
      maps.fetch_add(1);
      mapped_bytes.fetch_add(bytes);
      std::lock_guard<std::mutex> l(log_mu);
      mappings.push_back({reinterpret_cast<uintptr_t>(p), bytes, dense});
    }
    return p;
  }
  // Whether `p` lies in a mapping made for dense memory (-1: not mapped here).
  int DenseAt(const void* p) {
    std::lock_guard<std::mutex> l(log_mu);
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    for (const Mapping& m : mappings) {
      if (a >= m.start && a < m.start + m.bytes) return m.dense ? 1 : 0;
    }
    return -1;
  }
  // Residency as the kernel reports it, unless a test sets `resident_all`
  // (every byte resident) or `resident_none`.
  size_t ResidentBytes(void* ptr, size_t bytes) override {
    if (resident_all.load()) return bytes;
    if (resident_none.load()) return 0;
    return os::ResidentBytesIn(ptr, bytes);
  }
  bool Collapse(void* ptr, size_t bytes) override {
    if (on_collapse) on_collapse(ptr);
    Log('C', ptr);
    collapse_calls.fetch_add(1);
    collapsed_bytes.fetch_add(bytes);
    return collapse_ok.load();
  }
  bool Release(void* ptr, size_t bytes) override {
    Log('R', ptr);
    releases.fetch_add(1);
    released_bytes.fetch_add(bytes);
    return os::ReleasePages(ptr, bytes);
  }
  bool AllowHugePages(void* ptr, size_t bytes, bool allow) override {
    // An event log for tests that check the order of advice and releases.
    Log(allow ? 'H' : 'N', ptr);
    (allow ? allow_calls : disallow_calls).fetch_add(1);
    return advice_ok.load();
  }
  // Events: 'R' release, 'N' MADV_NOHUGEPAGE, 'H' MADV_HUGEPAGE, 'C' collapse, with the
  // address; only while `logging` (tests that need it turn it on).
  void Log(char what, void* ptr) {
    if (!logging) return;
    std::lock_guard<std::mutex> l(log_mu);
    events.push_back({what, ptr});
  }
  struct Event {
    char what;
    void* ptr;
  };
  bool logging = false;
  std::mutex log_mu;
  std::vector<Event> events;
  struct Mapping {
    uintptr_t start;
    size_t bytes;
    bool dense;
  };
  std::vector<Mapping> mappings;
  std::atomic<bool> advice_ok{true};
  std::atomic<bool> resident_all{false}, resident_none{false}, collapse_ok{true};
  std::atomic<size_t> collapse_calls{0}, collapsed_bytes{0};
  // Runs at the start of each Collapse: a back-end calls Collapse outside
  // its lock, so a test can free concurrently from here.
  std::function<void(void*)> on_collapse;
  std::atomic<int> fail_maps{0};
  std::atomic<size_t> maps{0}, mapped_bytes{0}, releases{0}, released_bytes{0};
  std::atomic<size_t> allow_calls{0}, disallow_calls{0};
};

// The CPU as the per-CPU cache sees it, faked: tests set `cpu` and the
// "critical sections" are plain operations on that CPU's slab region.
struct FakeCpuEnv {
  int cpu = 0;
  bool fence_ok = true;
  int fences = 0;
  uint64_t now = 0;
  int CurrentCpu() { return cpu; }
  bool EnsureRegistered() { return true; }
  void* Pop(PerCpuSlab* s, int cl) { return s->PopOn(cpu, cl); }
  bool Push(PerCpuSlab* s, int cl, void* p) { return s->PushOn(cpu, cl, p); }
  size_t PopBatch(PerCpuSlab* s, int cl, void** out, size_t n) {
    // Same contract as the rseq form: out[k-1] was the top.
    size_t k = 0;
    while (k < n && s->Length(cpu, cl) > k) ++k;
    for (size_t i = k; i > 0; --i) out[i - 1] = s->PopOn(cpu, cl);
    return k;
  }
  size_t PushBatch(PerCpuSlab* s, int cl, void* const* in, size_t n) {
    size_t k = 0;
    while (k < n && s->PushOn(cpu, cl, in[k])) ++k;
    return k;
  }
  bool FenceAvailable() { return fence_ok; }
  // Fence number `fail_fence` (1-based; 0: none) fails although fences are
  // available. on_fence runs at every fence that succeeds, as the kernel's
  // restart of the sections in flight on that CPU.
  int fail_fence = 0;
  std::function<void(int)> on_fence;
  bool Fence(int cpu) {
    ++fences;
    if (!fence_ok || fences == fail_fence) return false;
    if (on_fence) on_fence(cpu);
    return true;
  }
  uint64_t Now() { return now; }
};

// A pagemap of its own per test (the root is large: keep it off the stack).
inline std::unique_ptr<PageMap> NewPageMap() {
  auto pm = std::make_unique<PageMap>();
  pm->Init(GlobalArena());
  return pm;
}

}  // namespace jsmalloc::testing

#endif  // JSMALLOC_TESTS_UNIT_TEST_SUPPORT_H_
