// jsmalloc::MallocExtension (C++) and the C calls behind it, against the
// process-wide allocator (this binary links libjsmalloc). Run once per
// front-end mode by ctest.
#include <gtest/gtest.h>
#include <jsmalloc/malloc_extension.h>
#include <malloc.h>
#include <stdio.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using jsmalloc::MallocExtension;

size_t Prop(const char* name) {
  auto v = MallocExtension::GetNumericProperty(name);
  EXPECT_TRUE(v.has_value()) << name;
  return v.value_or(0);
}

TEST(ExtensionTest, AvailableAndReports) {
  EXPECT_TRUE(MallocExtension::IsAvailable());
  EXPECT_EQ(MallocExtension::Version(), jsmalloc_version());
  std::string report = MallocExtension::GetStats();
  EXPECT_EQ(report.rfind("JSMalloc ", 0), 0u) << report.substr(0, 80);
  for (const char* section : {"MALLOC:", "Size classes", "Back-end", "Hugepage coverage"}) {
    EXPECT_NE(report.find(section), std::string::npos) << section;
  }
}

TEST(ExtensionTest, EveryListedPropertyResolves) {
  size_t n = jsmalloc_get_property_names(nullptr, 0);
  ASSERT_GT(n, 30u);
  auto props = MallocExtension::GetProperties();
  EXPECT_EQ(props.size(), n) << "every listed name must resolve";
  EXPECT_FALSE(MallocExtension::GetNumericProperty("no.such.property").has_value());
  // They agree with each other.
  EXPECT_EQ(props["jsmalloc.page_size"] % 4096, 0u);
  EXPECT_LE(props["generic.current_allocated_bytes"], props["generic.heap_size"]);
  EXPECT_EQ(props["generic.virtual_memory_used"],
            props["generic.heap_size"] + props["jsmalloc.metadata_bytes"]);
  EXPECT_EQ(props["generic.physical_memory_used"],
            props["generic.heap_size"] - props["jsmalloc.page_heap_unmapped_bytes"] +
                props["jsmalloc.metadata_bytes"]);
}

// N objects of one class: the allocated-bytes property moves by exactly N
// times the class size, the class's row in the report counts them live, and
// malloc_info's XML shows the same property values.
TEST(ExtensionTest, KnownAllocationPatternShowsEverywhere) {
  constexpr size_t kN = 20000;
  constexpr size_t kSize = 1000;  // class 1024
  std::vector<void*> v;
  v.reserve(kN);
  malloc_trim(0);
  size_t before = Prop("generic.current_allocated_bytes");
  size_t samples_before = Prop("jsmalloc.sampling.live_samples");
  for (size_t i = 0; i < kN; ++i) {
    v.push_back(malloc(kSize));
    memset(v.back(), 1, kSize);
  }
  size_t after = Prop("generic.current_allocated_bytes");
  // Sampled objects (about one per 2 MiB) have spans of their own, outside
  // the class's row.
  size_t sampled = Prop("jsmalloc.sampling.live_samples") - samples_before;
  ASSERT_EQ(MallocExtension::GetAllocatedSize(v[0]).value_or(0), 1024u);
  // Exact up to what this process's other bookkeeping allocates meanwhile
  // (gtest, the property map): well under 1%.
  EXPECT_NEAR(static_cast<double>(after - before), kN * 1024.0, kN * 1024.0 * 0.01);

  // The report's row for the 1024-byte class.
  std::string report = MallocExtension::GetStats();
  std::istringstream in(report.substr(report.find("Size classes")));
  std::string line;
  size_t live = 0;
  bool found = false;
  while (std::getline(in, line)) {
    std::istringstream row(line);
    // The default (narrow) table: class, size, pages, spans, live KiB.
    size_t cl, size, pages, spans, live_kib;
    if (row >> cl >> size >> pages >> spans >> live_kib && size == 1024) {
      live = live_kib;  // one KiB per object of this class
      found = true;
      break;
    }
  }
  ASSERT_TRUE(found) << "no row for the 1024-byte class";
  EXPECT_GE(live + sampled, kN);
  EXPECT_LE(live, kN + 2000) << "live objects of that class beyond ours";

  char* xml = nullptr;
  size_t xml_len = 0;
  FILE* f = open_memstream(&xml, &xml_len);
  ASSERT_EQ(malloc_info(0, f), 0);
  fclose(f);
  std::string x(xml, xml_len);
  free(xml);
  EXPECT_NE(x.find("<property name=\"jsmalloc.page_size\" value=\"" +
                   std::to_string(Prop("jsmalloc.page_size")) + "\"/>"),
            std::string::npos);
  EXPECT_NE(x.find("<property name=\"generic.heap_size\""), std::string::npos);

  for (void* p : v) free(p);
  size_t end = Prop("generic.current_allocated_bytes");
  EXPECT_NEAR(static_cast<double>(end), static_cast<double>(before), kN * 1024.0 * 0.01);
}

// malloc_info carries every property jsmalloc_get_property_names lists and
// jsmalloc_get_numeric_property answers (it once kept 96 of 110 in a fixed
// array, dropping the guarded pool's).
TEST(ExtensionTest, MallocInfoCarriesEveryProperty) {
  size_t n = jsmalloc_get_property_names(nullptr, 0);
  ASSERT_GT(n, 100u);
  std::vector<const char*> names(n);
  ASSERT_EQ(jsmalloc_get_property_names(names.data(), n), n);
  char* xml = nullptr;
  size_t xml_len = 0;
  FILE* f = open_memstream(&xml, &xml_len);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(malloc_info(0, f), 0);
  fclose(f);
  std::string x(xml, xml_len);
  free(xml);
  size_t answered = 0;
  for (const char* name : names) {
    size_t v;
    if (jsmalloc_get_numeric_property(name, &v) == 0) continue;
    ++answered;
    EXPECT_NE(x.find(std::string("<property name=\"") + name + "\""), std::string::npos) << name;
  }
  EXPECT_GE(answered, n - 2) << "most listed properties have values";
  size_t in_xml = 0;
  for (size_t at = x.find("<property name="); at != std::string::npos; at = x.find("<property name=", at + 1)) ++in_xml;
  EXPECT_EQ(in_xml, answered);
  EXPECT_NE(x.find("jsmalloc.guarded."), std::string::npos);
  EXPECT_EQ(x.compare(x.size() - 10, 10, "</malloc>\n"), 0) << "the text is whole";
}

TEST(ExtensionTest, OwnershipAndAllocatedSize) {
  int on_stack = 0;
  void* small = malloc(100);
  void* large = malloc(3 << 20);
  EXPECT_EQ(MallocExtension::GetOwnership(small), MallocExtension::Ownership::kOwned);
  EXPECT_EQ(MallocExtension::GetOwnership(static_cast<char*>(small) + 50),
            MallocExtension::Ownership::kOwned);
  EXPECT_EQ(MallocExtension::GetOwnership(large), MallocExtension::Ownership::kOwned);
  EXPECT_EQ(MallocExtension::GetOwnership(&on_stack), MallocExtension::Ownership::kNotOwned);
  EXPECT_EQ(MallocExtension::GetOwnership(nullptr), MallocExtension::Ownership::kNotOwned);
  EXPECT_EQ(MallocExtension::GetAllocatedSize(small).value_or(0), malloc_usable_size(small));
  EXPECT_EQ(MallocExtension::GetAllocatedSize(large).value_or(0), size_t{3} << 20);
  EXPECT_FALSE(MallocExtension::GetAllocatedSize(&on_stack).has_value());
  free(large);
  // A freed large block is no longer owned (the address is kept as an
  // integer so the compiler sees no use after free).
  uintptr_t large_addr = reinterpret_cast<uintptr_t>(large);
  EXPECT_EQ(MallocExtension::GetOwnership(reinterpret_cast<void*>(large_addr)),
            MallocExtension::Ownership::kNotOwned);
  free(small);
}

TEST(ExtensionTest, SettingsRoundTrip) {
  MallocExtension::SetMemoryLimit({size_t{8} << 30, false});
  auto m = MallocExtension::GetMemoryLimit();
  EXPECT_EQ(m.limit, size_t{8} << 30);
  EXPECT_FALSE(m.hard);
  MallocExtension::SetMemoryLimit({0, false});
  EXPECT_EQ(MallocExtension::GetMemoryLimit().limit, 0u);

  if (Prop("jsmalloc.per_cpu_caches_active") == 1) {  // no effect in per-thread mode
    size_t old = MallocExtension::GetMaxPerCpuCacheSize();
    MallocExtension::SetMaxPerCpuCacheSize(size_t{3} << 20);
    EXPECT_EQ(MallocExtension::GetMaxPerCpuCacheSize(), size_t{3} << 20);
    MallocExtension::SetMaxPerCpuCacheSize(old);
  }

  MallocExtension::SetBackgroundReleaseRate(size_t{16} << 20);
  EXPECT_EQ(MallocExtension::GetBackgroundReleaseRate(), size_t{16} << 20);

  std::vector<void*> v;
  for (int i = 0; i < 1000; ++i) v.push_back(malloc(100000));
  for (void* p : v) free(p);
  malloc_trim(0);  // drain the caches, so their spans are free
  for (int i = 0; i < 100; ++i) free(malloc(100000));  // some free again
  size_t free_now = Prop("jsmalloc.page_heap_free_bytes");
  EXPECT_GE(MallocExtension::ReleaseMemoryToSystem(SIZE_MAX), free_now);
  EXPECT_EQ(Prop("jsmalloc.page_heap_free_bytes"), 0u) << "everything free was released";
}

// MarkThreadIdle gives a per-thread cache back; allocation works after it.
TEST(ExtensionTest, MarkThreadIdleReleasesThePerThreadCache) {
  bool per_cpu = Prop("jsmalloc.per_cpu_caches_active") == 1;
  std::thread t([&] {
    std::vector<void*> v;
    for (int i = 0; i < 1000; ++i) v.push_back(malloc(64));
    for (void* p : v) free(p);
    size_t caches = Prop("jsmalloc.thread_caches");
    size_t cached = Prop("jsmalloc.current_total_thread_cache_bytes");
    MallocExtension::MarkThreadIdle();
    if (!per_cpu) {
      EXPECT_EQ(Prop("jsmalloc.thread_caches"), caches - 1);
      EXPECT_LT(Prop("jsmalloc.current_total_thread_cache_bytes"), cached);
    }
    MallocExtension::MarkThreadBusy();
    void* p = malloc(64);
    ASSERT_NE(p, nullptr);
    memset(p, 7, 64);
    free(p);
    if (!per_cpu) EXPECT_EQ(Prop("jsmalloc.thread_caches"), caches) << "a new cache on demand";
  });
  t.join();
}

}  // namespace
