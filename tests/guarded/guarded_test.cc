// Guarded sampling (runtime/guarded_pool.h) in the process-wide allocator.
// The suites run under different environments (tests/guarded/guarded.cmake):
//   Guarded.*      JSMALLOC_GUARDED_RATE=1 JSMALLOC_SAMPLE_INTERVAL=1: every
//                  allocation that fits a slot is guarded while slots last;
//   GuardedLazy.*  rate 1, sampling off until a test turns it on;
//   GuardedOff.*   sampling on, guarding off (the default).
// Errors are provoked in forked children whose stderr is captured: each must
// die of SIGABRT after a report naming the error, the address, the block and
// its stacks.
#include <gtest/gtest.h>
#include <jsmalloc/jsmalloc.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kSystemPage = 4096;

// A guarded block is owned by JSMalloc but lies in no span of the pagemap.
bool IsGuarded(const void* p) {
  void* start = nullptr;
  size_t bytes = 0;
  return p != nullptr && jsmalloc_get_ownership(p) == 1 &&
         jsmalloc_get_span_extent(p, &start, &bytes) == 0;
}

enum class Side { kAny, kLeft, kRight };

bool OnSide(const void* p, size_t size, Side side) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  switch (side) {
    case Side::kAny: return true;
    case Side::kLeft: return a % kSystemPage == 0;
    case Side::kRight: return (a + size) % kSystemPage == 0;
  }
  return false;
}

// A guarded block from malloc(size) (against the requested side of its
// slot); nullptr if 200 tries give none. The rejects are freed afterwards.
void* GuardedMalloc(size_t size, Side side = Side::kAny) {
  void* rejects[200];
  int n = 0;
  void* got = nullptr;
  while (n < 200) {
    void* p = malloc(size);
    if (p != nullptr && IsGuarded(p) && OnSide(p, size, side)) {
      got = p;
      break;
    }
    rejects[n++] = p;
  }
  for (int i = 0; i < n; ++i) free(rejects[i]);
  return got;
}

size_t Prop(const char* name) {
  size_t v = 0;
  jsmalloc_get_numeric_property(name, &v);
  return v;
}

bool HasProp(const char* name) {
  size_t v = 0;
  return jsmalloc_get_numeric_property(name, &v) == 1;
}

std::string ReadFile(const char* path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string Exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  return buf;
}

std::string Hex(const void* p) {
  char buf[32];
  snprintf(buf, sizeof(buf), "0x%lx", static_cast<unsigned long>(reinterpret_cast<uintptr_t>(p)));
  return buf;
}

struct ChildResult {
  int status = 0;
  std::string err;  // the child's stderr
  bool aborted() const { return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT; }
};

// Runs fn in a forked child with stderr captured and no core dump.
ChildResult RunInChild(const std::function<void()>& fn) {
  int fds[2];
  ChildResult r;
  if (pipe(fds) != 0) return r;
  fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    close(fds[1]);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    fn();
    _exit(0);
  }
  close(fds[1]);
  char buf[4096];
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n > 0) r.err.append(buf, static_cast<size_t>(n));
    else if (n < 0 && errno == EINTR) continue;
    else break;
  }
  close(fds[0]);
  waitpid(pid, &r.status, 0);
  return r;
}

// The part of a report from `title` to the next "jsmalloc:" line.
std::string Section(const std::string& report, const std::string& title) {
  size_t at = report.find(title);
  if (at == std::string::npos) return "";
  size_t end = report.find("jsmalloc:", at + title.size());
  return report.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

// The checks every report of an error on block p makes.
void ExpectStacks(const ChildResult& r, bool freed) {
  const std::string exe = Exe();
  std::string alloc = Section(r.err, "allocated by thread");
  EXPECT_NE(alloc.find("#0 0x"), std::string::npos) << r.err;
  EXPECT_NE(alloc.find(exe), std::string::npos) << "the allocation stack reaches the test:\n" << r.err;
  if (freed) {
    std::string free_stack = Section(r.err, "freed by thread");
    EXPECT_NE(free_stack.find("#0 0x"), std::string::npos) << r.err;
    EXPECT_NE(free_stack.find(exe), std::string::npos) << "the free stack reaches the test:\n" << r.err;
  }
}

void Touch(void* p, ptrdiff_t offset, bool write) {
  volatile char* c = static_cast<volatile char*>(p) + offset;
  if (write) *c = 1;
  else (void)*c;
}

// ---- Guarded.*: rate 1, every allocation sampled ---------------------------------

TEST(Guarded, BlocksAreUsableAndExactlySized) {
  // (malloc(0) does not advance the sampling countdown: it is never sampled.)
  for (size_t size : {1, 7, 8, 13, 16, 100, 1000, 4096, 5000, 65536, 100000, 262144}) {
    char* p = static_cast<char*>(GuardedMalloc(size));
    ASSERT_NE(p, nullptr) << "no guarded block of " << size << " bytes";
    size_t n = size == 0 ? 1 : size;
    EXPECT_EQ(malloc_usable_size(p), n) << size;
    EXPECT_EQ(jsmalloc_get_allocated_size(p), n) << size;
    EXPECT_EQ(jsmalloc_get_ownership(p + n - 1), 1) << "owned at any of its bytes";
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (n <= 8 ? 8 : 16), 0u) << size;
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(p[i], 0) << "fresh pages: " << size << " at " << i;
    memset(p, 0x5a, n);
    free(p);
  }
}

TEST(Guarded, LargerThanASlotIsNotGuarded) {
  for (int i = 0; i < 20; ++i) {
    void* p = malloc(300000);
    ASSERT_NE(p, nullptr);
    EXPECT_FALSE(IsGuarded(p));
    free(p);
  }
}

TEST(Guarded, BothPlacementsOccur) {
  void* left = GuardedMalloc(64, Side::kLeft);
  void* right = GuardedMalloc(64, Side::kRight);
  EXPECT_NE(left, nullptr) << "a block at the start of its slot";
  EXPECT_NE(right, nullptr) << "a block against the end of its slot";
  free(left);
  free(right);
}

TEST(Guarded, AlignedAllocations) {
  for (size_t align : {size_t{32}, size_t{64}, size_t{256}, size_t{4096}, size_t{65536}}) {
    for (size_t size : {size_t{1}, size_t{100}, size_t{5000}}) {
      void* got = nullptr;
      std::vector<void*> rejects;
      for (int i = 0; i < 200 && got == nullptr; ++i) {
        void* p = nullptr;
        switch (i % 3) {
          case 0: p = memalign(align, size); break;
          case 1: p = aligned_alloc(align, size); break;
          case 2: ASSERT_EQ(posix_memalign(&p, align, size), 0); break;
        }
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u) << align << " " << size;
        if (IsGuarded(p)) got = p;
        else rejects.push_back(p);
      }
      ASSERT_NE(got, nullptr) << "no guarded block aligned to " << align;
      EXPECT_EQ(malloc_usable_size(got), size);
      memset(got, 1, size);
      free(got);
      for (void* p : rejects) free(p);
    }
  }
  void* d = nullptr;
  for (int i = 0; i < 200; ++i) {
    d = operator new(200, std::align_val_t(128));
    if (IsGuarded(d)) break;
    operator delete(d, 200, std::align_val_t(128));
    d = nullptr;
  }
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(d) % 128, 0u);
  operator delete(d, 200, std::align_val_t(128));
}

TEST(Guarded, CallocAndRealloc) {
  char* c = nullptr;
  for (int i = 0; i < 200 && c == nullptr; ++i) {
    char* p = static_cast<char*>(calloc(25, 4));
    if (IsGuarded(p)) c = p;
    else free(p);
  }
  ASSERT_NE(c, nullptr);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(c[i], 0);
  for (int i = 0; i < 100; ++i) c[i] = static_cast<char>(i);
  // Growing and shrinking keep the contents; a guarded block always moves,
  // so its guard follows the new size.
  char* g = static_cast<char*>(realloc(c, 3000));
  ASSERT_NE(g, nullptr);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(g[i], static_cast<char>(i));
  memset(g + 100, 7, 2900);
  char* s = static_cast<char*>(GuardedMalloc(2000));
  ASSERT_NE(s, nullptr);
  memset(s, 3, 2000);
  char* s2 = static_cast<char*>(realloc(s, 1500));
  ASSERT_NE(s2, nullptr);
  EXPECT_NE(s2, s) << "a guarded block moves even when shrinking";
  for (int i = 0; i < 1500; ++i) ASSERT_EQ(s2[i], 3);
  free(s2);
  EXPECT_EQ(realloc(g, 0), nullptr);
}

TEST(Guarded, SlotsAreReusedAndSamplesCounted) {
  // More guarded allocations than slots, one live at a time: each is guarded,
  // so freed slots come back (after every other free slot).
  const size_t live_before = Prop("jsmalloc.sampling.live_samples");
  for (int i = 0; i < 3 * 1024 + 100; ++i) {
    void* p = malloc(128);
    ASSERT_TRUE(IsGuarded(p)) << "allocation " << i;
    static_cast<char*>(p)[127] = 1;
    free(p);
  }
  // Guarded allocations are samples: the sampler counts them live.
  void* held[10];
  for (void*& p : held) {
    p = GuardedMalloc(1000);
    ASSERT_NE(p, nullptr);
  }
  EXPECT_GE(Prop("jsmalloc.sampling.live_samples"), live_before + 10);
  char path[] = "/tmp/jsmalloc-guarded-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  ASSERT_EQ(jsmalloc_dump_heap_profile(path), 1);
  EXPECT_NE(ReadFile(path).find("heap_v2"), std::string::npos);
  unlink(path);
  for (void* p : held) free(p);
  if (HasProp("jsmalloc.guarded.allocations_total")) {
    EXPECT_GE(Prop("jsmalloc.guarded.allocations_total"), 3u * 1024);
    EXPECT_EQ(Prop("jsmalloc.guarded.slots"), 1024u);
  }
}

TEST(Guarded, UseAfterFreeWrite) {
  ChildResult r = RunInChild([] {
    char* p = static_cast<char*>(GuardedMalloc(100));
    if (p == nullptr) _exit(3);
    fprintf(stderr, "block %s\n", Hex(p).c_str());
    free(p);
    Touch(p, 10, true);
  });
  ASSERT_TRUE(r.aborted()) << "status " << r.status << "\n" << r.err;
  EXPECT_NE(r.err.find("guarded sampling: use-after-free (write)"), std::string::npos) << r.err;
  size_t at = r.err.find("block 0x");
  ASSERT_NE(at, std::string::npos) << r.err;
  uintptr_t p = strtoull(r.err.c_str() + at + 6, nullptr, 16);
  EXPECT_NE(r.err.find("at address " + Hex(reinterpret_cast<void*>(p + 10))), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("10 bytes inside a 100-byte block at " + Hex(reinterpret_cast<void*>(p)) + " (freed"),
            std::string::npos)
      << r.err;
  ExpectStacks(r, true);
}

TEST(Guarded, UseAfterFreeReadWhileOtherSlotsAreReused) {
  ChildResult r = RunInChild([] {
    char* p = static_cast<char*>(GuardedMalloc(64));
    if (p == nullptr) _exit(3);
    free(p);
    // Freed slots are reused last: more allocations do not reopen it.
    for (int i = 0; i < 200; ++i) free(malloc(64));
    Touch(p, 0, false);
  });
  ASSERT_TRUE(r.aborted()) << "status " << r.status << "\n" << r.err;
  EXPECT_NE(r.err.find("use-after-free (read)"), std::string::npos) << r.err;
  ExpectStacks(r, true);
}

TEST(Guarded, OverflowOneBytePastTheEnd) {
  ChildResult r = RunInChild([] {
    char* p = static_cast<char*>(GuardedMalloc(64, Side::kRight));
    if (p == nullptr) _exit(3);
    fprintf(stderr, "block %s\n", Hex(p).c_str());
    Touch(p, 64, true);
  });
  ASSERT_TRUE(r.aborted()) << "status " << r.status << "\n" << r.err;
  EXPECT_NE(r.err.find("buffer overflow (write)"), std::string::npos) << r.err;
  size_t at = r.err.find("block 0x");
  ASSERT_NE(at, std::string::npos);
  uintptr_t p = strtoull(r.err.c_str() + at + 6, nullptr, 16);
  EXPECT_NE(r.err.find("at address " + Hex(reinterpret_cast<void*>(p + 64))), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("0 bytes to the right of a 64-byte block"), std::string::npos) << r.err;
  ExpectStacks(r, false);
}

TEST(Guarded, OverflowReadFarPastTheEndOfALeftAlignedBlock) {
  ChildResult r = RunInChild([] {
    char* p = static_cast<char*>(GuardedMalloc(64, Side::kLeft));
    if (p == nullptr) _exit(3);
    Touch(p, 3 * 4096 + 5, false);  // beyond the block's page, inside its slot
  });
  ASSERT_TRUE(r.aborted()) << r.err;
  EXPECT_NE(r.err.find("buffer overflow (read)"), std::string::npos) << r.err;
}

TEST(Guarded, UnderflowOneByteBeforeTheStart) {
  ChildResult r = RunInChild([] {
    char* p = static_cast<char*>(GuardedMalloc(64, Side::kLeft));
    if (p == nullptr) _exit(3);
    Touch(p, -1, true);
  });
  ASSERT_TRUE(r.aborted()) << "status " << r.status << "\n" << r.err;
  EXPECT_NE(r.err.find("buffer underflow (write)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("1 bytes to the left of a 64-byte block"), std::string::npos) << r.err;
  ExpectStacks(r, false);
}

TEST(Guarded, SmallOverflowIntoTheAlignmentGapIsFoundAtFree) {
  ChildResult r = RunInChild([] {
    // 100 bytes against the end: 16-byte alignment leaves 12 bytes before
    // the guard page, which hold a pattern that free() checks.
    char* p = nullptr;
    for (int i = 0; i < 200 && p == nullptr; ++i) {
      char* q = static_cast<char*>(GuardedMalloc(100));
      if (q != nullptr && (reinterpret_cast<uintptr_t>(q) + 112) % kSystemPage == 0) p = q;
    }
    if (p == nullptr) _exit(3);
    p[100] = 'x';
    free(p);
  });
  ASSERT_TRUE(r.aborted()) << "status " << r.status << "\n" << r.err;
  EXPECT_NE(r.err.find("buffer overflow (found at free)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("0 bytes to the right of a 100-byte block"), std::string::npos) << r.err;
  ExpectStacks(r, false);
  EXPECT_NE(Section(r.err, "freed by thread").find(Exe()), std::string::npos) << r.err;
}

TEST(Guarded, DoubleFree) {
  ChildResult r = RunInChild([] {
    void* p = GuardedMalloc(100);
    if (p == nullptr) _exit(3);
    fprintf(stderr, "block %s\n", Hex(p).c_str());
    free(p);
    free(p);
  });
  ASSERT_TRUE(r.aborted()) << "status " << r.status << "\n" << r.err;
  EXPECT_NE(r.err.find("guarded sampling: double free"), std::string::npos) << r.err;
  size_t at = r.err.find("block 0x");
  ASSERT_NE(at, std::string::npos);
  uintptr_t p = strtoull(r.err.c_str() + at + 6, nullptr, 16);
  EXPECT_NE(r.err.find("at address " + Hex(reinterpret_cast<void*>(p))), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("first freed by thread"), std::string::npos) << r.err;
  EXPECT_NE(Section(r.err, "freed again by thread").find(Exe()), std::string::npos) << r.err;
  ExpectStacks(r, false);
}

TEST(Guarded, InvalidFreeInsideABlock) {
  ChildResult r = RunInChild([] {
    char* p = static_cast<char*>(GuardedMalloc(100));
    if (p == nullptr) _exit(3);
    free(p + 16);
  });
  ASSERT_TRUE(r.aborted()) << r.err;
  EXPECT_NE(r.err.find("guarded sampling: invalid free"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("16 bytes inside a 100-byte block"), std::string::npos) << r.err;
}

TEST(Guarded, FaultOutsideThePoolIsNotOurs) {
  // The pool's handler passes other faults on (here: to the default action).
  ChildResult r = RunInChild([] {
    void* page = mmap(nullptr, kSystemPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) _exit(3);
    Touch(page, 0, true);
  });
  EXPECT_TRUE(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGSEGV) << "status " << r.status;
  EXPECT_EQ(r.err.find("guarded sampling"), std::string::npos) << r.err;
}

TEST(Guarded, ThreadsAllocateAndFreeGuardedBlocks) {
  std::vector<std::thread*> threads;
  std::atomic<int> guarded{0};
  for (int t = 0; t < 4; ++t) {
    threads.push_back(new std::thread([&guarded, t] {
      std::vector<void*> mine;
      for (int i = 0; i < 2000; ++i) {
        void* p = malloc(16 + (i * 37 + t) % 3000);
        if (IsGuarded(p)) guarded.fetch_add(1);
        memset(p, 1, 16);
        mine.push_back(p);
        if (mine.size() > 8) {
          free(mine.front());
          mine.erase(mine.begin());
        }
      }
      for (void* p : mine) free(p);
    }));
  }
  for (std::thread* th : threads) {
    th->join();
    delete th;
  }
  EXPECT_GT(guarded.load(), 1000);
}

// ---- GuardedLazy.*: rate 1, sampling off at start ---------------------------------

bool PoolInMaps() { return ReadFile("/proc/self/maps").find("jsmalloc-guarded") != std::string::npos; }

void UserHandler(int, siginfo_t*, void*) {
  static const char kMsg[] = "user handler ran\n";
  (void)!write(2, kMsg, sizeof(kMsg) - 1);
  _exit(42);
}

TEST(GuardedLazy, PoolAppearsWithTheFirstGuardedAllocationAndChainsToEarlierHandlers) {
  ASSERT_EQ(jsmalloc_get_sample_interval(), 0u);
  for (int i = 0; i < 1000; ++i) free(malloc(100));
  EXPECT_FALSE(PoolInMaps());
  ChildResult r = RunInChild([] {
    // A handler installed before the pool exists...
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = &UserHandler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, nullptr);
    jsmalloc_set_sample_interval(1);
    void* p = GuardedMalloc(100);
    if (p == nullptr) _exit(3);
    // ... still gets the faults outside the pool.
    void* page = mmap(nullptr, kSystemPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    Touch(page, 0, true);
    _exit(4);
  });
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 42) << "status " << r.status << "\n" << r.err;
  EXPECT_NE(r.err.find("user handler ran"), std::string::npos) << r.err;
}

TEST(GuardedLazy, ErrorsAreCaughtOnceSamplingIsOn) {
  ChildResult r = RunInChild([] {
    jsmalloc_set_sample_interval(1);
    char* p = static_cast<char*>(GuardedMalloc(48, Side::kRight));
    if (p == nullptr) _exit(3);
    Touch(p, 48, true);
  });
  ASSERT_TRUE(r.aborted()) << "status " << r.status << "\n" << r.err;
  EXPECT_NE(r.err.find("buffer overflow (write)"), std::string::npos) << r.err;
}

// ---- GuardedOff.*: the default (rate 0) ---------------------------------------------

TEST(GuardedOff, NoPoolAndSamplesKeepTheirSpans) {
  ASSERT_EQ(jsmalloc_get_sample_interval(), 1u);
  for (int i = 0; i < 2000; ++i) {
    void* p = malloc(16 + (i * 97) % 5000);
    ASSERT_FALSE(IsGuarded(p)) << i;
    void* start = nullptr;
    size_t bytes = 0;
    EXPECT_EQ(jsmalloc_get_span_extent(p, &start, &bytes), 1);
    free(p);
  }
  EXPECT_FALSE(PoolInMaps());
  if (HasProp("jsmalloc.guarded.pool_bytes")) {
    EXPECT_EQ(Prop("jsmalloc.guarded.pool_bytes"), 0u);
    EXPECT_EQ(Prop("jsmalloc.guarded.allocations_total"), 0u);
  }
}

}  // namespace
