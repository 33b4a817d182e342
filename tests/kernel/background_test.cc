// The background thread releasing at its rate, through io_uring or plain
// madvise (JSMALLOC_IO_URING=1|0, expected path in JSMALLOC_TEST_EXPECT_IO_URING).
#include <gtest/gtest.h>
#include <jsmalloc/jsmalloc.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

size_t Prop(const char* name) {
  size_t v = 0;
  EXPECT_EQ(jsmalloc_get_numeric_property(name, &v), 1) << name;
  return v;
}

TEST(BackgroundTest, ReleasesFreedMemoryAtItsRate) {
  ASSERT_EQ(jsmalloc_start_background_thread(), 1);
  jsmalloc_set_background_release_rate(size_t{512} << 20);
  std::vector<void*> v;
  for (int i = 0; i < 3000; ++i) {
    void* p = malloc(64 * 1024);
    memset(p, 3, 64 * 1024);
    v.push_back(p);
  }
  for (void* p : v) free(p);
  size_t before = Prop("generic.physical_memory_used");
  // The thread wakes once a second; on a loaded machine give it up to 15 s.
  size_t after = before;
  for (int i = 0; i < 30; ++i) {
    usleep(500 * 1000);
    after = Prop("generic.physical_memory_used");
    if (i >= 5 && Prop("jsmalloc.background_released_bytes") >= (size_t{100} << 20) &&
        after + (size_t{100} << 20) < before) {
      break;
    }
  }
  printf("physical before=%zu MiB after=%zu MiB released=%zu MiB io_uring=%zu\n", before >> 20,
         after >> 20, Prop("jsmalloc.background_released_bytes") >> 20, Prop("jsmalloc.background_io_uring"));
  EXPECT_EQ(Prop("jsmalloc.background_thread_running"), 1u);
  EXPECT_GE(Prop("jsmalloc.background_released_bytes"), size_t{100} << 20);
  EXPECT_LT(after + (size_t{100} << 20), before);
  const char* expect = getenv("JSMALLOC_TEST_EXPECT_IO_URING");
  if (expect != nullptr) EXPECT_EQ(Prop("jsmalloc.background_io_uring"), static_cast<size_t>(atoi(expect)));
  char buf[65536];
  jsmalloc_get_stats(buf, sizeof(buf));
  EXPECT_NE(strstr(buf, "Background thread: running"), nullptr);
}

}  // namespace
