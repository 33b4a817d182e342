// C++ consumer of an installed JSMalloc: operator new/delete, standard
// containers and jsmalloc::MallocExtension.
//
//   consumer_cxx PAGE_SIZE
#include <jsmalloc/malloc_extension.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace {
int failures = 0;
void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "consumer_cxx: FAILED: %s\n", what);
    ++failures;
  }
}
bool Owned(const void* p) {
  return jsmalloc::MallocExtension::GetOwnership(p) == jsmalloc::MallocExtension::Ownership::kOwned;
}
}  // namespace

int main(int argc, char** argv) {
  using jsmalloc::MallocExtension;
  size_t want_page = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 0;
  Check(MallocExtension::IsAvailable(), "MallocExtension::IsAvailable()");

  auto one = std::make_unique<long>(42);
  Check(Owned(one.get()), "new long owned");
  std::vector<int> v(100000, 7);
  Check(Owned(v.data()), "vector storage owned");
  std::string s(1000, 'x');
  Check(Owned(s.data()), "string storage owned");
  int* a = new int[300000];
  Check(Owned(a), "new[] owned");
  Check(MallocExtension::GetAllocatedSize(a).value_or(0) >= 300000 * sizeof(int), "GetAllocatedSize");
  delete[] a;
  int local = 0;
  Check(MallocExtension::GetOwnership(&local) == MallocExtension::Ownership::kNotOwned, "stack not owned");

  auto page = MallocExtension::GetNumericProperty("jsmalloc.page_size");
  Check(page.has_value(), "jsmalloc.page_size");
  if (want_page != 0) Check(page.value_or(0) == want_page, "page size");
  auto props = MallocExtension::GetProperties();
  Check(props.count("generic.current_allocated_bytes") == 1, "GetProperties");

  std::string stats = MallocExtension::GetStats();
  std::string banner = stats.substr(0, stats.find('\n'));
  Check(banner.rfind("JSMalloc ", 0) == 0, "report banner");
  std::printf("banner: %s\n", banner.c_str());
  std::printf("version: %s, page size: %zu, %zu properties\n", MallocExtension::Version().c_str(),
              page.value_or(0), props.size());
  if (failures != 0) return 1;
  std::printf("consumer ok\n");
  return 0;
}
