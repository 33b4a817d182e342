// Allocates through malloc and new, checks that JSMalloc owns both blocks,
// and prints one of its numeric properties.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "jsmalloc/jsmalloc.h"

int main() {
  void* p = std::malloc(100);
  auto* s = new std::string(1000, 'x');
  if (p == nullptr || jsmalloc_get_ownership(p) != 1 || jsmalloc_get_ownership(s->data()) != 1) {
    std::fprintf(stderr, "hello: JSMalloc does not own the program's allocations\n");
    return 1;
  }
  size_t page_size = 0;
  if (!jsmalloc_get_numeric_property("jsmalloc.page_size", &page_size)) {
    std::fprintf(stderr, "hello: no property jsmalloc.page_size\n");
    return 1;
  }
  std::printf("hello from JSMalloc %s: malloc(100) and new std::string owned, "
              "jsmalloc.page_size=%zu, malloc_usable_size=%zu\n",
              jsmalloc_version(), page_size, jsmalloc_get_allocated_size(p));
  delete s;
  std::free(p);
  return 0;
}
