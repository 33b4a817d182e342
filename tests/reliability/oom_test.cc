// Out of memory (issue 8, item 4), in the process running on JSMalloc.
// Every case runs in a fork child, so limits do not leak into the test
// process: the child reports over a pipe with plain write() (no allocation
// while memory is exhausted) and exits; the parent turns its lines into
// gtest failures and prints "faults injected: N", the number of allocation
// calls the child saw fail.
//
// The faults:
//  - RLIMIT_AS at the child's address-space size + 256 MiB: JSMalloc's
//    mmap calls fail (heap growth, and in the end metadata);
//  - JSMalloc's hard memory limit, set by the API (and, in other ctest
//    registrations, by JSMALLOC_MEMORY_LIMIT + JSMALLOC_MEMORY_LIMIT_HARD=1),
//    single-threaded and with two threads hitting it at once;
//  - a cgroup memory limit (v2 memory.max, else v1 memory.limit_in_bytes)
//    around the child with JSMalloc's hard limit inside it.
// What must hold: every failure is a NULL with errno == ENOMEM (the return
// value ENOMEM for posix_memalign), std::bad_alloc from throwing new,
// nullptr from nothrow new; nothing crashes; a failed realloc leaves the old
// block intact; and after freeing, the same allocations succeed again.
#include <errno.h>
#include <gtest/gtest.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "reliability_common.h"

namespace {

using reliability::ArmWatchdog;
using reliability::CheckStamp;
using reliability::Prop;
using reliability::Stamp;
using reliability::StampedPositionsAreZero;

// --- Child side: reporting without allocating ------------------------------------

int g_report_fd = -1;
int g_child_failures = 0;
long g_faults = 0;

__attribute__((format(printf, 2, 3))) void Line(const char* kind, const char* fmt, ...) {
  char buf[1200];
  int n = snprintf(buf, sizeof(buf), "%s ", kind);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(buf + n, sizeof(buf) - static_cast<size_t>(n) - 1, fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof(buf) - 2) len = sizeof(buf) - 2;
  buf[len++] = '\n';
  ssize_t w = write(g_report_fd, buf, len);
  (void)w;
}

#define CHILD_EXPECT(cond, ...)   \
  do {                            \
    if (!(cond)) {                \
      g_child_failures++;         \
      Line("FAIL", __VA_ARGS__);  \
    }                             \
  } while (0)

// Keeps the compiler from pairing and removing a new/delete.
__attribute__((noinline)) void Escape(void* p) { asm volatile("" : : "r"(p) : "memory"); }

// One allocation that is expected to fail (the heap is exhausted): NULL and
// errno ENOMEM. Counts the fault.
void ExpectNullEnomem(const char* what, void* p, int err) {
  if (p == nullptr) g_faults++;
  CHILD_EXPECT(p == nullptr, "%s succeeded although memory is exhausted", what);
  CHILD_EXPECT(p != nullptr || err == ENOMEM, "%s returned NULL with errno %d, want ENOMEM (%d)", what, err, ENOMEM);
  if (p != nullptr) free(p);
}

// --- The ladder: allocate until NULL, from large to small ------------------------

constexpr size_t kLadder[] = {size_t{64} << 20, size_t{8} << 20, size_t{1} << 20, size_t{300} << 10,
                              size_t{64} << 10, 4096, 512, 64, 16};
constexpr int kRungs = sizeof(kLadder) / sizeof(kLadder[0]);
constexpr size_t kMaxBlocks = size_t{1} << 20;
constexpr size_t kMaxPerRung = 250000;

struct Block {
  unsigned char* p;
  size_t size;
};

struct Ladder {
  Block* blocks = nullptr;  // preallocated before the limit
  size_t n = 0;
  size_t count[kRungs] = {};
  bool ended_null[kRungs] = {};
  size_t bytes = 0;
};

void DumpState(const char* when);

void FillUntilNull(Ladder* l) {
  for (int r = 0; r < kRungs; ++r) {
    size_t size = kLadder[r];
    for (;;) {
      if (l->n == kMaxBlocks || l->count[r] == kMaxPerRung) break;
      errno = 0;
      void* p = malloc(size);
      int err = errno;
      if (p == nullptr) {
        g_faults++;
        l->ended_null[r] = true;
        CHILD_EXPECT(err == ENOMEM, "malloc(%zu) returned NULL with errno %d, want ENOMEM", size, err);
        break;
      }
      Stamp(static_cast<unsigned char*>(p), size, l->n);
      l->blocks[l->n++] = Block{static_cast<unsigned char*>(p), size};
      l->count[r]++;
      l->bytes += size;
    }
  }
  char counts[256];
  size_t off = 0;
  for (int r = 0; r < kRungs; ++r) {
    off += static_cast<size_t>(snprintf(counts + off, sizeof(counts) - off, "%s%zu%s", r ? " " : "", l->count[r],
                                        l->ended_null[r] ? "" : "+"));
  }
  Line("INFO", "filled %zu MiB in %zu blocks before malloc returned NULL (per size 64M..16B: %s; + = stopped at the cap)",
       l->bytes >> 20, l->n, counts);
  if (getenv("JSMALLOC_TEST_OOM_VERBOSE") != nullptr) DumpState("state at exhaustion");
  CHILD_EXPECT(l->ended_null[0] && l->ended_null[2], "large allocations never failed (64 MiB: %zu, 1 MiB: %zu)",
               l->count[0], l->count[2]);
}

// Blocks allocated before the limit, for the realloc checks.
struct Keepers {
  unsigned char* p[3];
  size_t size[3];
};

void MakeKeepers(Keepers* k) {
  const size_t sizes[3] = {200, 100 << 10, 2 << 20};
  for (int i = 0; i < 3; ++i) {
    k->size[i] = sizes[i];
    k->p[i] = static_cast<unsigned char*>(malloc(sizes[i]));
    Stamp(k->p[i], sizes[i], 0xC0FFEE + static_cast<uint64_t>(i));
  }
}

bool KeepersIntact(const Keepers& k) {
  for (int i = 0; i < 3; ++i) {
    if (!CheckStamp(k.p[i], k.size[i], 0xC0FFEE + static_cast<uint64_t>(i))) return false;
  }
  return true;
}

// With the heap exhausted, every entry point must fail cleanly.
void ExpectEveryEntryPointFails(Keepers& k) {
  const size_t huge = size_t{64} << 20;
  errno = 0;
  void* p = malloc(huge);
  ExpectNullEnomem("malloc(64 MiB)", p, errno);
  errno = 0;
  p = calloc(1, huge);
  ExpectNullEnomem("calloc(1, 64 MiB)", p, errno);
  errno = 0;
  p = calloc(huge / 16, 16);
  ExpectNullEnomem("calloc(4 Mi, 16)", p, errno);
  errno = 0;
  p = memalign(size_t{1} << 16, huge);
  ExpectNullEnomem("memalign(64 KiB, 64 MiB)", p, errno);
  errno = 0;
  p = aligned_alloc(4096, huge);
  ExpectNullEnomem("aligned_alloc(4 KiB, 64 MiB)", p, errno);
  errno = 0;
  p = valloc(huge);
  ExpectNullEnomem("valloc(64 MiB)", p, errno);
  errno = 0;
  p = pvalloc(huge);
  ExpectNullEnomem("pvalloc(64 MiB)", p, errno);
  for (size_t align : {size_t{4096}, size_t{2} << 20}) {
    void* q = nullptr;
    int rc = posix_memalign(&q, align, huge);
    if (rc != 0) g_faults++;
    CHILD_EXPECT(rc == ENOMEM, "posix_memalign(%zu, 64 MiB) returned %d, want ENOMEM", align, rc);
    if (rc == 0) free(q);
  }
  // realloc failure leaves the old block where it was, intact.
  for (int i = 0; i < 3; ++i) {
    const char* names[2] = {"realloc(keeper, 64 MiB)", "reallocarray(keeper, 8 Mi, 8)"};
    for (int form = 0; form < 2; ++form) {
      errno = 0;
      void* q = form == 0 ? realloc(k.p[i], huge) : reallocarray(k.p[i], huge / 8, 8);
      int err = errno;
      if (q != nullptr) {
        // The keeper moved (and grew): follow it.
        g_child_failures++;
        Line("FAIL", "%s of a %zu-byte block succeeded although memory is exhausted", names[form], k.size[i]);
        k.p[i] = static_cast<unsigned char*>(q);
        break;
      }
      g_faults++;
      CHILD_EXPECT(err == ENOMEM, "%s returned NULL with errno %d, want ENOMEM", names[form], err);
      CHILD_EXPECT(CheckStamp(k.p[i], k.size[i], 0xC0FFEE + static_cast<uint64_t>(i)),
                   "a failed %s changed the old block of %zu bytes", names[form], k.size[i]);
      CHILD_EXPECT(malloc_usable_size(k.p[i]) >= k.size[i], "a failed %s shrank the old block", names[form]);
    }
  }
  // C++: throwing forms throw std::bad_alloc, nothrow forms return nullptr.
  auto expect_bad_alloc = [](const char* what, auto&& fn) {
    try {
      fn();
      g_child_failures++;
      Line("FAIL", "%s did not throw although memory is exhausted", what);
    } catch (const std::bad_alloc&) {
      g_faults++;
    } catch (...) {
      g_child_failures++;
      Line("FAIL", "%s threw something other than std::bad_alloc", what);
    }
  };
  expect_bad_alloc("new char[64 MiB]", [&] {
    char* c = new char[huge];
    Escape(c);
    delete[] c;
  });
  expect_bad_alloc("operator new(64 MiB, align_val_t(4096))", [&] {
    void* c = ::operator new(huge, std::align_val_t(4096));
    Escape(c);
    ::operator delete(c, std::align_val_t(4096));
  });
  expect_bad_alloc("std::vector<char>(64 MiB)", [&] {
    std::vector<char> v(huge);
    Escape(v.data());
  });
  char* c = new (std::nothrow) char[huge];
  Escape(c);
  if (c == nullptr) g_faults++;
  CHILD_EXPECT(c == nullptr, "new (nothrow) char[64 MiB] succeeded although memory is exhausted");
  delete[] c;
  void* a = ::operator new(huge, std::align_val_t(4096), std::nothrow);
  Escape(a);
  if (a == nullptr) g_faults++;
  CHILD_EXPECT(a == nullptr, "aligned nothrow new succeeded although memory is exhausted");
  if (a != nullptr) ::operator delete(a, std::align_val_t(4096));
}

// Small requests at exhaustion: each either succeeds (from what the caches
// still hold) or fails cleanly. Returns how many failed.
struct Small {
  void* p;
  size_t size;
  bool via_new;
};

size_t SmallRequestsAtExhaustion(Small* out, size_t max, size_t* kept) {
  size_t failed = 0;
  *kept = 0;
  for (size_t i = 0; i < max; ++i) {
    size_t size = size_t{8} << (i % 12);  // 8 B .. 16 KiB
    bool via_new = i % 2 == 1;
    errno = 0;
    void* p = via_new ? ::operator new(size, std::nothrow) : malloc(size);
    int err = errno;
    if (p == nullptr) {
      ++failed;
      g_faults++;
      if (!via_new) CHILD_EXPECT(err == ENOMEM, "malloc(%zu) at exhaustion: errno %d, want ENOMEM", size, err);
      continue;
    }
    memset(p, 0x3c, size);
    out[(*kept)++] = Small{p, size, via_new};
  }
  return failed;
}

void FreeSmalls(Small* s, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (s[i].via_new) ::operator delete(s[i].p);
    else free(s[i].p);
  }
}

void CheckAndFreeLadder(Ladder* l) {
  size_t corrupt = 0;
  for (size_t i = 0; i < l->n; ++i) {
    if (!CheckStamp(l->blocks[i].p, l->blocks[i].size, i)) ++corrupt;
    free(l->blocks[i].p);
  }
  CHILD_EXPECT(corrupt == 0, "%zu blocks changed while memory was exhausted", corrupt);
}

// The allocator's view when an allocation failed where it should not have.
void DumpState(const char* when) {
  static const char* const kProps[] = {
      "generic.current_allocated_bytes",        "generic.heap_size",
      "generic.physical_memory_used",           "jsmalloc.page_heap_free_bytes",
      "jsmalloc.page_heap_unmapped_bytes",      "jsmalloc.central_cache_free_bytes",
      "jsmalloc.transfer_cache_free_bytes",     "jsmalloc.current_total_thread_cache_bytes",
      "jsmalloc.cpu_cache_free_bytes",          "jsmalloc.metadata_bytes",
      "jsmalloc.hugepage.filler_hugepages",     "jsmalloc.hugepage.filler_free_pages",
      "jsmalloc.hugepage.filler_released_pages", "jsmalloc.hugepage.cache_backed_free",
      "jsmalloc.hugepage.cache_unbacked_free",  "jsmalloc.hugepage.regions",
      "jsmalloc.hugepage.large",                "jsmalloc.spans_in_use",
      "jsmalloc.sampling.live_samples",         "jsmalloc.sampling.kept_span_bytes"};
  char buf[1024];
  size_t off = 0;
  for (const char* name : kProps) {
    size_t v = 0;
    jsmalloc_get_numeric_property(name, &v);
    int n = snprintf(buf + off, sizeof(buf) - off, "%s%s=%zu", off ? " " : "", name + (name[0] == 'g' ? 8 : 9), v);
    if (n < 0 || static_cast<size_t>(n) >= sizeof(buf) - off) break;
    off += static_cast<size_t>(n);
  }
  Line("INFO", "%s: %s", when, buf);
  const char* path = getenv("JSMALLOC_TEST_OOM_REPORT");
  if (path != nullptr) {
    static char report[1 << 18];
    size_t len = jsmalloc_get_stats(report, sizeof(report));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ssize_t w = write(fd, report, len < sizeof(report) ? len : sizeof(report) - 1);
      (void)w;
      close(fd);
    }
  }
}

// After everything was freed, the same allocations must succeed again. A
// NULL on the way is examined:
//  1. the same call again at once, nothing freed in between. If it succeeds,
//     the first NULL was spurious: the failing call itself made the room
//     (a hard limit's cache flush) but did not use it. Fails the test.
//  2. malloc_trim(0) (hands back everything the per-thread, per-CPU and
//     transfer caches and the sampler hold), then the call again. If it
//     succeeds, the memory was there, in the allocator's own caches, and
//     malloc returned NULL anyway. Fails the test.
//  3. Still NULL: the heap is full to the byte and what differs from the
//     first round sits in partly used spans of other size classes. Tolerated
//     for requests under 64 KiB, up to 1 MiB in all, and shown.
void ExpectServesAgain(const Ladder& first) {
  size_t n = 0, bytes = 0, spurious = 0, after_trim = 0, short_count = 0, short_bytes = 0;
  Block* again = first.blocks;  // reuse the preallocated array
  for (int r = 0; r < kRungs; ++r) {
    for (size_t i = 0; i < first.count[r]; ++i) {
      const size_t size = kLadder[r];
      errno = 0;
      void* p = malloc(size);
      if (p == nullptr) {
        int err = errno;
        g_faults++;
        char when[160];
        snprintf(when, sizeof(when), "state when malloc(%zu) #%zu of the second round failed", size, i);
        if (spurious + after_trim + short_count == 0) DumpState(when);
        p = malloc(size);
        if (p != nullptr) {
          if (spurious++ == 0) {
            g_child_failures++;
            Line("FAIL", "after freeing everything, malloc(%zu) #%zu of %zu returned NULL (errno %d), and the same "
                 "call made right after, with nothing freed in between, succeeded: the failing call made room "
                 "(the hard limit flushes the caches) but did not retry", size, i, first.count[r], err);
          }
        } else {
          malloc_trim(0);
          p = malloc(size);
          if (p != nullptr) {
            if (after_trim++ == 0) {
              g_child_failures++;
              Line("FAIL", "after freeing everything, malloc(%zu) #%zu of %zu returned NULL (errno %d) twice while "
                   "the allocator held enough free memory in its caches: after malloc_trim(0) the same call "
                   "succeeded (nothing flushes the caches when the OS refuses memory)", size, i, first.count[r], err);
            }
          }
        }
        if (p == nullptr) {
          ++short_count;
          short_bytes += size;
          if (size >= (size_t{64} << 10)) {
            g_child_failures++;
            Line("FAIL", "after freeing everything, malloc(%zu) #%zu failed even after malloc_trim (errno %d); "
                 "%zu of %zu MiB allocated again", size, i, err, bytes >> 20, first.bytes >> 20);
          }
          continue;
        }
      }
      Stamp(static_cast<unsigned char*>(p), size, n + 7);
      again[n++] = Block{static_cast<unsigned char*>(p), size};
      bytes += size;
    }
  }
  size_t corrupt = 0;
  for (size_t k = 0; k < n; ++k) {
    if (!CheckStamp(again[k].p, again[k].size, k + 7)) ++corrupt;
    free(again[k].p);
  }
  CHILD_EXPECT(corrupt == 0, "%zu blocks corrupt on the second round", corrupt);
  CHILD_EXPECT(short_bytes <= (size_t{1} << 20), "the second round fell %zu bytes short of the first", short_bytes);
  Line("INFO", "served again: %zu of %zu blocks (%zu of %zu bytes) allocated, checked and freed; NULLs on the way: "
       "%zu spurious (an immediate retry succeeded), %zu served only after malloc_trim, %zu small requests "
       "(%zu bytes) short even then", n, first.n, bytes, first.bytes, spurious, after_trim, short_count, short_bytes);
}

// The whole single-threaded scenario under whatever limit the caller set.
// The arrays are allocated before the limit by the caller.
void ExhaustCheckRecover(Ladder* l, Small* smalls, size_t max_smalls, Keepers& keepers) {
  FillUntilNull(l);
  ExpectEveryEntryPointFails(keepers);
  size_t kept = 0;
  size_t failed = SmallRequestsAtExhaustion(smalls, max_smalls, &kept);
  Line("INFO", "at exhaustion: %zu of %zu small requests (8 B..16 KiB, malloc and nothrow new) failed cleanly, "
       "%zu were served from the caches", failed, max_smalls, kept);
  CHILD_EXPECT(KeepersIntact(keepers), "blocks allocated before exhaustion changed");
  FreeSmalls(smalls, kept);
  CheckAndFreeLadder(l);
  ExpectServesAgain(*l);
}

struct Arrays {
  Ladder ladder;
  Small* smalls = nullptr;
  size_t max_smalls = 20000;
  Keepers keepers;

  Arrays() {
    ladder.blocks = static_cast<Block*>(calloc(kMaxBlocks, sizeof(Block)));
    smalls = static_cast<Small*>(calloc(max_smalls, sizeof(Small)));
    MakeKeepers(&keepers);
  }
};

// --- Parent side ------------------------------------------------------------------

std::string DescribeStatus(int status) {
  char buf[96];
  if (WIFEXITED(status)) snprintf(buf, sizeof(buf), "exited with code %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) snprintf(buf, sizeof(buf), "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else snprintf(buf, sizeof(buf), "status 0x%x", status);
  return buf;
}

struct Outcome {
  int status = 0;
  long faults = 0;
};

// Runs `body` in a fork child and reports what it said.
Outcome RunInChild(const char* name, const std::function<void()>& body) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    g_report_fd = fds[1];
    ArmWatchdog(120, name);
    body();
    Line("FAULTS", "%ld", g_faults);
    _exit(g_child_failures == 0 ? 0 : 1);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  Outcome o;
  EXPECT_EQ(waitpid(pid, &o.status, 0), pid);
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("FAIL ", 0) == 0) ADD_FAILURE() << name << ": " << line.substr(5);
    else if (line.rfind("FAULTS ", 0) == 0) o.faults = std::stol(line.substr(7));
    else printf("  %s\n", line.c_str());
  }
  EXPECT_TRUE(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0) << name << ": child " << DescribeStatus(o.status);
  printf("%s: faults injected: %ld\n", name, o.faults);
  ::testing::Test::RecordProperty("faults_injected", static_cast<int>(o.faults));
  return o;
}

// --- The cases -------------------------------------------------------------------

TEST(Oom, RlimitAsEveryEntryPointFailsCleanlyAndServesAgain) {
  Outcome o = RunInChild("RLIMIT_AS", [] {
    Arrays arrays;
    size_t vm = reliability::VmSizeBytes();
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = vm + (size_t{256} << 20);
    if (setrlimit(RLIMIT_AS, &rl) != 0) {
      g_child_failures++;
      Line("FAIL", "setrlimit(RLIMIT_AS) failed: errno %d", errno);
      return;
    }
    Line("INFO", "RLIMIT_AS = VmSize %zu MiB + 256 MiB; front-end %s", vm >> 20,
         Prop("jsmalloc.per_cpu_caches_active") ? "per-CPU" : "per-thread");
    ExhaustCheckRecover(&arrays.ladder, arrays.smalls, arrays.max_smalls, arrays.keepers);
  });
  EXPECT_GT(o.faults, 0);
}

// Sets a hard limit 128 MiB above what the heap holds now.
size_t SetHardLimitAboveCurrent(size_t headroom) {
  size_t limit = Prop("generic.physical_memory_used") + headroom;
  jsmalloc_set_memory_limit(limit, 1);
  return limit;
}

// Two threads run into the hard limit at once, each freeing half of what it
// holds every 16 failures, so the limiter flips between failing and
// succeeding under concurrency. Returns the faults they saw.
void TwoThreadsAtTheLimit() {
  std::atomic<long> faults{0}, served{0};
  std::atomic<int> bad{0};
  auto body = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<Block> mine;
    mine.reserve(4096);
    long my_faults = 0;
    for (int i = 0; i < 6000 && mine.size() < 4096; ++i) {
      size_t size = rng() % 10 < 7 ? 1 + rng() % 4096 : (size_t{256} << 10) + rng() % (size_t{2} << 20);
      errno = 0;
      void* p = malloc(size);
      int err = errno;
      if (p == nullptr) {
        ++my_faults;
        if (err != ENOMEM) bad++;
        if (my_faults % 16 == 0) {
          for (size_t k = 0; k < mine.size(); k += 2) {
            if (!CheckStamp(mine[k].p, mine[k].size, reinterpret_cast<uintptr_t>(mine[k].p))) bad++;
            free(mine[k].p);
            mine[k] = mine.back();
            mine.pop_back();
          }
        }
        continue;
      }
      Stamp(static_cast<unsigned char*>(p), size, reinterpret_cast<uintptr_t>(p));
      mine.push_back(Block{static_cast<unsigned char*>(p), size});
      served++;
    }
    for (const Block& b : mine) {
      if (!CheckStamp(b.p, b.size, reinterpret_cast<uintptr_t>(b.p))) bad++;
      free(b.p);
    }
    faults += my_faults;
  };
  try {
    std::thread a(body, 1), b(body, 2);
    a.join();
    b.join();
  } catch (...) {
    g_child_failures++;
    Line("FAIL", "could not start two threads");
    return;
  }
  g_faults += faults.load();
  Line("INFO", "two threads at the limit: %ld allocations failed, %ld served", faults.load(), served.load());
  CHILD_EXPECT(faults.load() > 0, "two threads never reached the hard limit");
  CHILD_EXPECT(bad.load() == 0, "%d wrong errno values or corrupt blocks with two threads at the limit", bad.load());
  // Serves again: 64 MiB in 1 MiB blocks, under a limit with 128 MiB headroom.
  void* blocks[64];
  int got = 0;
  for (; got < 64; ++got) {
    blocks[got] = malloc(size_t{1} << 20);
    if (blocks[got] == nullptr) break;
    memset(blocks[got], 7, size_t{1} << 20);
  }
  CHILD_EXPECT(got == 64, "after the threads freed everything only %d of 64 MiB could be allocated", got);
  for (int i = 0; i < got; ++i) free(blocks[i]);
}

TEST(Oom, HardLimitEveryEntryPointFailsCleanlyAndServesAgain) {
  Outcome o = RunInChild("hard limit (API)", [] {
    Arrays arrays;
    size_t hits_before = Prop("jsmalloc.memory_limit_hits");
    size_t limit = SetHardLimitAboveCurrent(size_t{128} << 20);
    Line("INFO", "jsmalloc_set_memory_limit(%zu MiB, hard); front-end %s", limit >> 20,
         Prop("jsmalloc.per_cpu_caches_active") ? "per-CPU" : "per-thread");
    ExhaustCheckRecover(&arrays.ladder, arrays.smalls, arrays.max_smalls, arrays.keepers);
    size_t hits = Prop("jsmalloc.memory_limit_hits") - hits_before;
    Line("INFO", "jsmalloc.memory_limit_hits: %zu", hits);
    CHILD_EXPECT(hits > 0, "the limiter never counted a hit");
    TwoThreadsAtTheLimit();
    size_t physical = Prop("generic.physical_memory_used");
    size_t metadata = Prop("jsmalloc.metadata_bytes");
    CHILD_EXPECT(physical <= limit + metadata,
                 "the heap holds %zu MiB resident, over the hard limit of %zu MiB (+%zu MiB metadata)",
                 physical >> 20, limit >> 20, metadata >> 20);
  });
  EXPECT_GT(o.faults, 0);
}

// Registered only with JSMALLOC_MEMORY_LIMIT (bytes) and
// JSMALLOC_MEMORY_LIMIT_HARD=1 in the environment.
TEST(Oom, HardLimitFromEnvironment) {
  const char* env = getenv("JSMALLOC_MEMORY_LIMIT");
  if (env == nullptr) GTEST_SKIP() << "JSMALLOC_MEMORY_LIMIT is not set (ctest sets it for this case)";
  int hard = 0;
  size_t limit = jsmalloc_get_memory_limit(&hard);
  EXPECT_EQ(limit, strtoull(env, nullptr, 10)) << "JSMALLOC_MEMORY_LIMIT=" << env << " (plain bytes) was applied";
  EXPECT_EQ(hard, 1) << "JSMALLOC_MEMORY_LIMIT_HARD=1 was applied";
  Outcome o = RunInChild("hard limit (environment)", [limit] {
    Arrays arrays;
    Line("INFO", "JSMALLOC_MEMORY_LIMIT=%zu MiB, hard; heap resident now %zu MiB; front-end %s", limit >> 20,
         Prop("generic.physical_memory_used") >> 20,
         Prop("jsmalloc.per_cpu_caches_active") ? "per-CPU" : "per-thread");
    ExhaustCheckRecover(&arrays.ladder, arrays.smalls, arrays.max_smalls, arrays.keepers);
  });
  EXPECT_GT(o.faults, 0);
}

// --- cgroup memory limit ------------------------------------------------------------

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WriteFile(const std::string& path, const std::string& value, int* err) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return false;
  }
  ssize_t n = write(fd, value.data(), value.size());
  *err = errno;
  close(fd);
  return n == static_cast<ssize_t>(value.size());
}

bool HasWord(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  std::string w;
  while (in >> w) {
    if (w == word) return true;
  }
  return false;
}

// The cgroup v2 mount point, or "" (from /proc/self/mountinfo).
std::string Cgroup2Mount() {
  std::istringstream in(ReadFile("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(in, line)) {
    size_t dash = line.find(" - ");
    if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0) continue;
    std::istringstream f(line);
    std::string id, parent, dev, root, mnt;
    f >> id >> parent >> dev >> root >> mnt;
    return mnt;
  }
  return "";
}

// The own cgroup path of a hierarchy from /proc/self/cgroup: "0::" for v2,
// "N:memory:" for the v1 memory controller.
std::string OwnCgroup(const std::string& prefix_field) {
  std::istringstream in(ReadFile("/proc/self/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon != std::string::npos && line.compare(colon + 1, prefix_field.size(), prefix_field) == 0) {
      std::string own = line.substr(colon + 1 + prefix_field.size());
      return own == "/" ? "" : own;
    }
  }
  return "";
}

// A child memory cgroup of our own with a hard limit: cgroup v2 (memory.max)
// where v2 has the memory controller, else the v1 memory hierarchy
// (memory.limit_in_bytes). Its directory, or "" with the reason in *why.
struct MemoryCgroup {
  std::string dir;
  std::string events;  // file with the oom_kill count
  const char* kind = "";
};

MemoryCgroup MakeMemoryCgroup(size_t limit, std::string* why) {
  MemoryCgroup cg;
  int err = 0;
  std::string v2 = Cgroup2Mount();
  std::string name = "/jsmalloc-oom-" + std::to_string(getpid());
  if (!v2.empty() && HasWord(ReadFile(v2 + "/cgroup.controllers"), "memory")) {
    std::string parent = v2 + OwnCgroup(":");
    if (!HasWord(ReadFile(parent + "/cgroup.subtree_control"), "memory") &&
        !WriteFile(parent + "/cgroup.subtree_control", "+memory", &err)) {
      *why = "cannot enable the memory controller for children of " + parent + ": " + strerror(err);
      return cg;
    }
    cg.dir = parent + name;
    cg.events = cg.dir + "/memory.events";
    cg.kind = "cgroup v2 memory.max";
    if (mkdir(cg.dir.c_str(), 0755) != 0 || !WriteFile(cg.dir + "/memory.max", std::to_string(limit), &err)) {
      *why = "cannot create " + cg.dir + " with memory.max: " + strerror(errno);
      rmdir(cg.dir.c_str());
      cg.dir.clear();
      return cg;
    }
    WriteFile(cg.dir + "/memory.swap.max", "0", &err);  // absent without swap accounting: fine
    return cg;
  }
  const std::string v1 = "/sys/fs/cgroup/memory";
  if (access((v1 + "/memory.limit_in_bytes").c_str(), F_OK) != 0) {
    *why = "neither cgroup v2 with the memory controller nor a v1 memory hierarchy at " + v1;
    return cg;
  }
  cg.dir = v1 + OwnCgroup("memory:") + name;
  cg.events = cg.dir + "/memory.oom_control";
  cg.kind = "cgroup v1 memory.limit_in_bytes";
  if (mkdir(cg.dir.c_str(), 0755) != 0 ||
      !WriteFile(cg.dir + "/memory.limit_in_bytes", std::to_string(limit), &err)) {
    *why = "cannot create " + cg.dir + " with memory.limit_in_bytes: " + strerror(errno);
    rmdir(cg.dir.c_str());
    cg.dir.clear();
  }
  return cg;
}

// The kernel OOM-kills a process that faults past its cgroup's limit; malloc
// never sees a failure (it hands out address space, the fault comes later).
// JSMalloc's hard limit set below the cgroup's turns that into clean
// failures: the child must exit normally, and the cgroup count no OOM kill.
TEST(Oom, CgroupMemoryLimitWithHardLimitInside) {
  const size_t cg_max = size_t{192} << 20;
  std::string why;
  MemoryCgroup cg = MakeMemoryCgroup(cg_max, &why);
  // Root on a Linux with either cgroup version can do this; the reason is printed.
  if (cg.dir.empty()) GTEST_SKIP() << why;
  const std::string dir = cg.dir;
  int err = 0;
  // The child waits until it has been moved into the cgroup.
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(go[1]);
    close(fds[0]);
    g_report_fd = fds[1];
    ArmWatchdog(120, "cgroup child");
    char c;
    if (read(go[0], &c, 1) != 1) _exit(3);
    // New charges go to the cgroup; stay 96 MiB under memory.max.
    size_t limit = SetHardLimitAboveCurrent(size_t{96} << 20);
    Line("INFO", "cgroup limit %zu MiB, JSMalloc hard limit %zu MiB", cg_max >> 20, limit >> 20);
    std::vector<void*> blocks;
    blocks.reserve(1024);
    for (int i = 0; i < 1024; ++i) {
      errno = 0;
      void* p = malloc(size_t{1} << 20);
      if (p == nullptr) {
        g_faults++;
        CHILD_EXPECT(errno == ENOMEM, "errno %d, want ENOMEM", errno);
        break;
      }
      memset(p, 0x11, size_t{1} << 20);  // really charged to the cgroup
      blocks.push_back(p);
    }
    CHILD_EXPECT(g_faults > 0, "1 GiB was allocated under a 192 MiB cgroup");
    size_t got = blocks.size();
    for (void* p : blocks) free(p);
    blocks.clear();
    for (size_t i = 0; i < got; ++i) {
      void* p = malloc(size_t{1} << 20);
      CHILD_EXPECT(p != nullptr, "block %zu of %zu failed after freeing", i, got);
      if (p == nullptr) break;
      memset(p, 0x22, size_t{1} << 20);
      blocks.push_back(p);
    }
    for (void* p : blocks) free(p);
    Line("INFO", "%zu MiB touched before the limit, the same again after freeing", got);
    Line("FAULTS", "%ld", g_faults);
    _exit(g_child_failures == 0 ? 0 : 1);
  }
  close(go[0]);
  close(fds[1]);
  bool moved = WriteFile(dir + "/cgroup.procs", std::to_string(pid), &err);
  EXPECT_TRUE(moved) << "moving the child into " << dir << ": " << strerror(err);
  ssize_t w = write(go[1], "g", 1);
  (void)w;
  close(go[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  std::string events = ReadFile(cg.events);
  rmdir(dir.c_str());
  long faults = 0;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("FAIL ", 0) == 0) ADD_FAILURE() << "cgroup: " << line.substr(5);
    else if (line.rfind("FAULTS ", 0) == 0) faults = std::stol(line.substr(7));
    else printf("  %s\n", line.c_str());
  }
  printf("%s: faults injected: %ld; %s: %s\n", cg.kind, faults, cg.events.c_str(), events.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << DescribeStatus(status);
  size_t at = events.find("oom_kill ");
  if (at != std::string::npos) EXPECT_EQ(atol(events.c_str() + at + 9), 0) << "the kernel OOM-killed the child";
  EXPECT_GT(faults, 0);
}

}  // namespace
