// What the kernel says of this process's memory, for the tests that check
// it against the kernel (tests/kernel/, tests/vm/vm_probe.cc).
#ifndef JSMALLOC_TESTS_KERNEL_PROCESS_MEMORY_H_
#define JSMALLOC_TESTS_KERNEL_PROCESS_MEMORY_H_

#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <string>

namespace jsmalloc_test {

// Resident bytes of the process (/proc/self/statm).
inline size_t RssBytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  size_t size = 0, rss = 0;
  if (f != nullptr) {
    if (fscanf(f, "%zu %zu", &size, &rss) != 2) rss = 0;
    fclose(f);
  }
  return rss * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// The kernel's THP mode: the bracketed word of .../transparent_hugepage/enabled
// ("unavailable" without the file).
inline std::string ThpMode() {
  FILE* f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f == nullptr) return "unavailable";
  char buf[128] = {};
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  std::string s(buf, n);
  size_t a = s.find('['), b = s.find(']');
  return a != std::string::npos && b != std::string::npos && b > a ? s.substr(a + 1, b - a - 1) : "unknown";
}

}  // namespace jsmalloc_test

#endif  // JSMALLOC_TESTS_KERNEL_PROCESS_MEMORY_H_
