#include "os/linux/madvise_batcher.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

#include "os/linux/os_memory.h"

namespace jsmalloc::os {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

void ReleaseAndCheck(MadviseBatcher& b, int advice) {
  const size_t n = 32;
  char* mem = static_cast<char*>(MapAligned(64 * kMiB, kMiB, nullptr));
  ASSERT_NE(mem, nullptr);
  memset(mem, 7, 64 * kMiB);
  size_t rss_before = ResidentBytes();
  for (size_t i = 0; i < n; ++i) b.Add(mem + i * 2 * kMiB, kMiB);
  b.Add(mem + 1, 4096);  // unaligned: the kernel refuses this one alone
  size_t done = b.Flush();
  EXPECT_EQ(done, n * kMiB);
  EXPECT_EQ(b.failures(), 1u);
  EXPECT_EQ(b.ranges(), n + 1);
  if (advice == MADV_DONTNEED) {
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(mem[i * 2 * kMiB + 12345], 0) << i;
    EXPECT_EQ(mem[kMiB + 5], 7) << "the gaps are untouched";
    EXPECT_LE(ResidentBytes() + 30 * kMiB, rss_before);
  }
  Unmap(mem, 64 * kMiB);
}

TEST(MadviseBatcherTest, IoUringBatchesReleases) {
  MadviseBatcher b;
  ASSERT_TRUE(b.Init(MADV_DONTNEED, true));
  ASSERT_EQ(b.mode(), MadviseBatcher::Mode::kIoUring) << b.fallback_reason();
  ReleaseAndCheck(b, MADV_DONTNEED);
  EXPECT_LT(b.syscalls(), b.ranges()) << "one submission for many ranges";
  b.Shutdown();
}

TEST(MadviseBatcherTest, DirectPathWhenIoUringIsOff) {
  MadviseBatcher b;
  ASSERT_TRUE(b.Init(MADV_DONTNEED, false));
  EXPECT_EQ(b.mode(), MadviseBatcher::Mode::kDirect);
  EXPECT_NE(std::strstr(b.fallback_reason(), "JSMALLOC_IO_URING=0"), nullptr);
  ReleaseAndCheck(b, MADV_DONTNEED);
  EXPECT_EQ(b.syscalls(), b.ranges());
}

TEST(MadviseBatcherTest, FallsBackWhenTheKernelRefusesIoUring) {
  MadviseBatcher b;
  MadviseBatcher::FailNextSetupForTest(EPERM);
  ASSERT_TRUE(b.Init(MADV_DONTNEED, true));
  EXPECT_EQ(b.mode(), MadviseBatcher::Mode::kDirect);
  EXPECT_NE(std::strstr(b.fallback_reason(), "not permitted"), nullptr);
  ReleaseAndCheck(b, MADV_DONTNEED);
}

TEST(MadviseBatcherTest, MadvFreeThroughIoUring) {
  MadviseBatcher b;
  ASSERT_TRUE(b.Init(MADV_FREE, true));
  ReleaseAndCheck(b, MADV_FREE);
  b.Shutdown();
}

TEST(MadviseBatcherTest, AutoFlushesAtBatchSize) {
  MadviseBatcher b;
  ASSERT_TRUE(b.Init(MADV_DONTNEED, true));
  char* mem = static_cast<char*>(MapAligned(kMiB * 2, kMiB, nullptr));
  for (int i = 0; i < MadviseBatcher::kMaxBatch; ++i) b.Add(mem + static_cast<size_t>(i) * 4096, 4096);
  EXPECT_EQ(b.batches(), 1u) << "a full batch goes out without Flush";
  EXPECT_EQ(b.Flush(), 0u);
  Unmap(mem, kMiB * 2);
}

}  // namespace
}  // namespace jsmalloc::os
