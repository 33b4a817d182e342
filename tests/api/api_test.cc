// The exported API of the process-wide allocator: this binary links
// libjsmalloc first, so malloc and operator new here are JSMalloc's.
#include <errno.h>
#include <gtest/gtest.h>
#include <jsmalloc/jsmalloc.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

extern "C" {
void free_sized(void* p, size_t size);
void free_aligned_sized(void* p, size_t alignment, size_t size);
}

namespace {

size_t Prop(const char* name) {
  size_t v = 0;
  EXPECT_EQ(jsmalloc_get_numeric_property(name, &v), 1) << name;
  return v;
}

bool Aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

TEST(ApiTest, MallocReallyIsJSMalloc) {
  size_t before = Prop("generic.current_allocated_bytes");
  std::vector<void*> v;
  for (int i = 0; i < 100; ++i) v.push_back(malloc(100000));
  EXPECT_GE(Prop("generic.current_allocated_bytes"), before + 100 * 100000);
  void* start;
  size_t bytes;
  EXPECT_EQ(jsmalloc_get_span_extent(v[0], &start, &bytes), 1) << "malloc'd memory is in our pagemap";
  for (void* p : v) free(p);
  EXPECT_STREQ(jsmalloc_version(), JSMALLOC_VERSION_STRING);
}

TEST(ApiTest, MallocFreeEverySizeAndUsableSize) {
  for (size_t size = 0; size <= 300000; size += (size < 2048 ? 1 : size / 8)) {
    char* p = static_cast<char*>(malloc(size));
    ASSERT_NE(p, nullptr) << size;
    size_t usable = malloc_usable_size(p);
    EXPECT_GE(usable, size);
    if (size >= 16) EXPECT_TRUE(Aligned(p, 16)) << size;
    memset(p, 0xcd, usable);  // the whole usable size is ours to write
    free(p);
  }
  for (size_t mb : {1, 3, 17, 64}) {
    char* p = static_cast<char*>(malloc(mb << 20));
    ASSERT_NE(p, nullptr);
    p[0] = p[(mb << 20) - 1] = 1;
    EXPECT_GE(malloc_usable_size(p), mb << 20);
    free(p);
  }
  EXPECT_EQ(malloc_usable_size(nullptr), 0u);
  free(nullptr);  // no-op
}

TEST(ApiTest, CallocZeroesAlsoRecycledMemory) {
  for (size_t size : {8, 100, 4096, 100000, 1 << 20}) {
    for (int round = 0; round < 50; ++round) {
      char* dirty = static_cast<char*>(malloc(size));
      memset(dirty, 0xff, size);
      free(dirty);
      char* p = static_cast<char*>(calloc(1, size));
      ASSERT_NE(p, nullptr);
      for (size_t i = 0; i < size; i += 7) ASSERT_EQ(p[i], 0) << size << " at " << i;
      ASSERT_EQ(p[size - 1], 0);
      free(p);
    }
  }
  void* z = calloc(0, 10);
  EXPECT_NE(z, nullptr);
  free(z);
}

TEST(ApiTest, ReallocKeepsContentsAcrossClassesAndIntoThePageHeap) {
  std::string pattern;
  char* p = nullptr;
  size_t size = 0;
  for (size_t next : {size_t{1}, size_t{15}, size_t{16}, size_t{100}, size_t{1000}, size_t{5000},
                      size_t{70000}, size_t{262144}, size_t{262145}, size_t{1} << 20, size_t{5} << 20,
                      size_t{300000}, size_t{200}, size_t{3}}) {
    p = static_cast<char*>(realloc(p, next));
    ASSERT_NE(p, nullptr);
    size_t keep = size < next ? size : next;
    for (size_t i = 0; i < keep; ++i) ASSERT_EQ(p[i], static_cast<char>(i * 31 + 7)) << next << " " << i;
    for (size_t i = 0; i < next; ++i) p[i] = static_cast<char>(i * 31 + 7);
    size = next;
  }
  free(p);
  void* q = realloc(nullptr, 50);  // = malloc
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(realloc(q, 0), nullptr) << "realloc(p, 0) frees and returns NULL, as glibc";
}

TEST(ApiTest, EveryAlignmentFromOneToOneMiB) {
  for (size_t align = 1; align <= (size_t{1} << 20); align *= 2) {
    for (size_t size : {size_t{1}, align / 2 + 1, align, align + 1, 3 * align, size_t{300000}}) {
      void* a = memalign(align, size);
      ASSERT_NE(a, nullptr);
      EXPECT_TRUE(Aligned(a, align)) << "memalign " << align << " " << size;
      EXPECT_GE(malloc_usable_size(a), size);
      memset(a, 1, size);
      free(a);
      void* b = aligned_alloc(align, size);
      ASSERT_NE(b, nullptr);
      EXPECT_TRUE(Aligned(b, align));
      free_aligned_sized(b, align, size);
      if (align >= sizeof(void*)) {
        void* c = nullptr;
        ASSERT_EQ(posix_memalign(&c, align, size), 0);
        EXPECT_TRUE(Aligned(c, align));
        free(c);
      }
      void* d = operator new(size, std::align_val_t(align));
      EXPECT_TRUE(Aligned(d, align));
      operator delete(d, size, std::align_val_t(align));
    }
  }
  void* v = valloc(100);
  EXPECT_TRUE(Aligned(v, static_cast<size_t>(sysconf(_SC_PAGESIZE))));
  free(v);
  void* pv = pvalloc(100);
  EXPECT_TRUE(Aligned(pv, static_cast<size_t>(sysconf(_SC_PAGESIZE))));
  EXPECT_GE(malloc_usable_size(pv), static_cast<size_t>(sysconf(_SC_PAGESIZE)));
  free(pv);
  void* m3 = memalign(24, 10);  // glibc rounds the alignment up to 32
  EXPECT_TRUE(Aligned(m3, 32));
  free(m3);
}

TEST(ApiTest, BadInputGetsTheDocumentedAnswers) {
  errno = 0;
  EXPECT_EQ(malloc(SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(malloc(SIZE_MAX / 2), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(calloc(SIZE_MAX / 2, 3), nullptr) << "overflowing calloc";
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  void* keep = malloc(10);
  EXPECT_EQ(reallocarray(keep, SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  free(keep);  // the original block is untouched and still ours
  errno = 0;
  void* r = malloc(10);
  EXPECT_EQ(realloc(r, SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  free(r);
  void* p = reinterpret_cast<void*>(1);
  EXPECT_EQ(posix_memalign(&p, 3, 10), EINVAL);
  EXPECT_EQ(posix_memalign(&p, 4, 10), EINVAL) << "not a multiple of sizeof(void*)";
  EXPECT_EQ(p, reinterpret_cast<void*>(1)) << "untouched on error";
  EXPECT_EQ(posix_memalign(&p, 64, SIZE_MAX), ENOMEM);
  errno = 0;
  EXPECT_EQ(aligned_alloc(3, 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_THROW(static_cast<void>(operator new(SIZE_MAX)), std::bad_alloc);
  EXPECT_THROW(static_cast<void>(operator new[](SIZE_MAX / 2)), std::bad_alloc);
  EXPECT_EQ(operator new(SIZE_MAX, std::nothrow), nullptr);
  EXPECT_EQ(operator new(SIZE_MAX, std::align_val_t(64), std::nothrow), nullptr);
  EXPECT_THROW(static_cast<void>(operator new(SIZE_MAX, std::align_val_t(64))), std::bad_alloc);
}

int handler_calls = 0;
void TestNewHandler() {
  if (++handler_calls >= 3) std::set_new_handler(nullptr);  // then bad_alloc
}

TEST(ApiTest, NewCallsTheNewHandler) {
  handler_calls = 0;
  std::set_new_handler(TestNewHandler);
  EXPECT_THROW(static_cast<void>(operator new(SIZE_MAX)), std::bad_alloc);
  EXPECT_EQ(handler_calls, 3);
  std::set_new_handler(nullptr);
}

TEST(ApiTest, EveryOperatorNewAndDeleteForm) {
  struct alignas(256) Over {
    char c[300];
  };
  int* a = new int(5);
  delete a;
  int* b = new int[10];
  delete[] b;
  void* c = operator new(24, std::nothrow);
  operator delete(c, std::nothrow);
  void* d = operator new[](24, std::nothrow);
  operator delete[](d, std::nothrow);
  void* e = operator new(40);
  operator delete(e, 40);
  void* f = operator new[](40);
  operator delete[](f, 40);
  Over* o = new Over;
  EXPECT_TRUE(Aligned(o, 256));
  delete o;
  Over* oa = new Over[3];
  EXPECT_TRUE(Aligned(oa, 256));
  delete[] oa;
  void* g = operator new[](100, std::align_val_t(128));
  operator delete[](g, std::align_val_t(128));
  void* h = operator new(100, std::align_val_t(128), std::nothrow);
  operator delete(h, std::align_val_t(128), std::nothrow);
  void* i = operator new[](100, std::align_val_t(128), std::nothrow);
  operator delete[](i, std::align_val_t(128), std::nothrow);
  void* j = operator new[](100, std::align_val_t(128));
  operator delete[](j, 100, std::align_val_t(128));
  void* k = operator new(100, std::align_val_t(64));
  operator delete(k, std::align_val_t(64));
  void* l = malloc(77);
  free_sized(l, 77);
}

TEST(ApiTest, GlibcCompanionsAnswerFromOurState) {
  std::vector<void*> v;
  for (int i = 0; i < 1000; ++i) v.push_back(malloc(1000));
  struct mallinfo2 mi = mallinfo2();
  EXPECT_GE(mi.uordblks, 1000u * 1000u);
  EXPECT_EQ(mi.arena, Prop("generic.heap_size"));
  EXPECT_GE(mi.arena, mi.uordblks);
  for (void* p : v) free(p);
  // malloc_info: XML with our numbers.
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  ASSERT_EQ(malloc_info(0, f), 0);
  fclose(f);
  std::string xml(buf, len);
  free(buf);
  EXPECT_EQ(xml.rfind("<malloc version=\"jsmalloc-", 0), 0u) << xml.substr(0, 80);
  EXPECT_NE(xml.find("</malloc>"), std::string::npos);
  EXPECT_EQ(malloc_info(1, stdout), -1);
  // mallopt: documented parameters accepted, unknown refused.
  EXPECT_EQ(mallopt(M_ARENA_MAX, 2), 1);
  EXPECT_EQ(mallopt(M_MMAP_THRESHOLD, 1 << 20), 1);
  EXPECT_EQ(mallopt(12345, 1), 0);
  // malloc_stats writes glibc's lines and our report to stderr.
  ::testing::internal::CaptureStderr();
  malloc_stats();
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("system bytes"), std::string::npos);
  EXPECT_NE(err.find("JSMalloc "), std::string::npos);
}

TEST(ApiTest, TrimReleasesFreeMemory) {
  void* big = malloc(64 << 20);
  memset(big, 1, 64 << 20);
  free(big);
  size_t free_before = Prop("jsmalloc.page_heap_free_bytes");
  size_t unmapped_before = Prop("jsmalloc.page_heap_unmapped_bytes");
  EXPECT_EQ(malloc_trim(0), 1);
  EXPECT_LT(Prop("jsmalloc.page_heap_free_bytes"), free_before + 1);
  EXPECT_GE(Prop("jsmalloc.page_heap_unmapped_bytes"), unmapped_before);
  EXPECT_EQ(Prop("jsmalloc.page_heap_free_bytes"), 0u) << "trim releases all of it";
  void* again = malloc(1 << 20);
  memset(again, 2, 1 << 20);
  free(again);
  // Everything free goes back: at least what the back-end held free, and
  // nothing stays free and backed.
  size_t free_now = Prop("jsmalloc.page_heap_free_bytes");
  EXPECT_GE(jsmalloc_release_memory_to_os(SIZE_MAX), free_now);
  EXPECT_EQ(Prop("jsmalloc.page_heap_free_bytes"), 0u);
}

TEST(ApiTest, StatsReportAndProperties) {
  size_t need = jsmalloc_get_stats(nullptr, 0);
  ASSERT_GT(need, 100u);
  // The numbers move between calls (this test allocates too): leave room.
  std::vector<char> buf(need + 4096);
  size_t got = jsmalloc_get_stats(buf.data(), buf.size());
  EXPECT_LT(got, buf.size());
  EXPECT_EQ(strlen(buf.data()), got) << "complete when the buffer is large enough";
  std::string report(buf.data());
  EXPECT_EQ(report.rfind("JSMalloc " JSMALLOC_VERSION_STRING, 0), 0u);
  EXPECT_NE(report.find("page size: "), std::string::npos);
  EXPECT_NE(report.find("front-end: "), std::string::npos);
  EXPECT_NE(report.find("back-end: "), std::string::npos);
  char small[32];
  EXPECT_GT(jsmalloc_get_stats(small, sizeof(small)), sizeof(small));
  EXPECT_EQ(strlen(small), sizeof(small) - 1) << "truncated, terminated";
  size_t v;
  for (const char* name : {"generic.current_allocated_bytes", "generic.heap_size", "generic.physical_memory_used",
                           "jsmalloc.page_heap_free_bytes", "jsmalloc.page_heap_unmapped_bytes"}) {
    EXPECT_EQ(jsmalloc_get_numeric_property(name, &v), 1) << name;
  }
  EXPECT_EQ(jsmalloc_get_numeric_property("no.such.property", &v), 0);
  EXPECT_EQ(jsmalloc_get_numeric_property(nullptr, &v), 0);
  EXPECT_LE(Prop("generic.physical_memory_used"), Prop("generic.virtual_memory_used"));
}

TEST(ApiDeathTest, FreeOfForeignPointerAbortsNamingTheAddress) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  int on_stack;
  // The death test re-executes the binary, so the address differs: match its form.
  EXPECT_DEATH(free(&on_stack), "jsmalloc: invalid free of pointer not allocated by jsmalloc: 0x[0-9a-f]+");
  static int global;
  EXPECT_DEATH(free(&global), "jsmalloc: invalid free");
  char* big = static_cast<char*>(malloc(1 << 20));
  EXPECT_DEATH(free(big + 4096), "jsmalloc: invalid free");
  free(big);
  // Back to back, before anything can reuse the memory.
  EXPECT_DEATH(
      {
        void* q = malloc(1 << 20);
        free(q);
        free(q);
      },
      "jsmalloc: (invalid|double) free.*0x[0-9a-f]+");
}

TEST(ApiTest, BadEnvironmentValueWarnsOnceAndKeepsDefault) {
  std::string cmd = "JSMALLOC_MAX_PER_CPU_CACHE_BYTES=lots LD_PRELOAD=" + std::string(JSMALLOC_LIB_PATH) +
                    " /bin/true 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char line[512];
  std::string out;
  while (fgets(line, sizeof(line), p) != nullptr) out += line;
  EXPECT_EQ(pclose(p), 0);
  EXPECT_NE(out.find("jsmalloc: ignoring JSMALLOC_MAX_PER_CPU_CACHE_BYTES='lots'"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

}  // namespace
