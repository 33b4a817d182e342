// hello_test PAGE_SIZE: every allocation path of a Bazel-built binary goes
// through JSMalloc (malloc, calloc, realloc, aligned_alloc, new, from several
// threads), and the allocator is the variant with the expected page size.
#include <string.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "jsmalloc/jsmalloc.h"

namespace {

int failures = 0;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what);
    __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
  }
}

void Churn(int seed) {
  std::vector<void*> blocks;
  for (int i = 0; i < 20000; ++i) {
    size_t size = 1 + static_cast<size_t>((i * 7919 + seed * 104729) % 70000);
    void* p = std::malloc(size);
    if (p == nullptr || jsmalloc_get_ownership(p) != 1) {
      Check(false, "malloc from a thread owned by JSMalloc");
      return;
    }
    std::memset(p, seed, size);
    blocks.push_back(p);
    if (blocks.size() > 64) {
      std::free(blocks[i % 64]);
      blocks[i % 64] = blocks.back();
      blocks.pop_back();
    }
  }
  for (void* p : blocks) std::free(p);
}

}  // namespace

int main(int argc, char** argv) {
  size_t want_page_size = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 0;

  void* m = std::malloc(24);
  Check(jsmalloc_get_ownership(m) == 1, "malloc owned");
  void* c = std::calloc(100, 8);
  Check(jsmalloc_get_ownership(c) == 1, "calloc owned");
  bool zero = true;
  for (size_t i = 0; i < 800; ++i) zero = zero && static_cast<char*>(c)[i] == 0;
  Check(zero, "calloc zeroed");
  m = std::realloc(m, 5000);
  Check(jsmalloc_get_ownership(m) == 1, "realloc owned");
  void* a = std::aligned_alloc(4096, 8192);
  Check(jsmalloc_get_ownership(a) == 1 && reinterpret_cast<uintptr_t>(a) % 4096 == 0,
        "aligned_alloc owned and aligned");
  void* big = std::malloc(3 << 20);
  Check(jsmalloc_get_ownership(big) == 1, "3 MiB malloc owned");
  auto v = std::make_unique<std::vector<int>>(1000, 7);
  Check(jsmalloc_get_ownership(v.get()) == 1 && jsmalloc_get_ownership(v->data()) == 1,
        "operator new owned");
  char* dup = strdup("allocated inside libc");
  Check(jsmalloc_get_ownership(dup) == 1, "strdup (libc calling malloc) owned");
  std::free(dup);
  int on_stack = 0;
  Check(jsmalloc_get_ownership(&on_stack) == 0, "a stack address not owned");

  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(Churn, t + 1);
  for (auto& t : threads) t.join();

  size_t page_size = 0;
  Check(jsmalloc_get_numeric_property("jsmalloc.page_size", &page_size) == 1,
        "property jsmalloc.page_size");
  if (want_page_size != 0 && page_size != want_page_size) {
    std::fprintf(stderr, "FAILED: jsmalloc.page_size is %zu, want %zu\n", page_size,
                 want_page_size);
    ++failures;
  }
  size_t allocated = 0;
  Check(jsmalloc_get_numeric_property("generic.current_allocated_bytes", &allocated) == 1 &&
            allocated >= (3u << 20),
        "generic.current_allocated_bytes counts the live 3 MiB block");

  std::free(big);
  std::free(a);
  std::free(c);
  std::free(m);
  std::printf("hello_test: JSMalloc %s, page size %zu: %s\n", jsmalloc_version(), page_size,
              failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
