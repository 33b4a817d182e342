// The whole allocator: malloc / free / realloc / memalign / calloc sequences
// on the process-wide JSMalloc, with content checks.
//
// libFuzzer and the sanitizers use glibc's malloc, so this binary does not
// replace malloc: it links the component library (jsmalloc_core) and calls
// the allocator's internal entry points, as tests/stress/stress_test.cc does
// under JSMALLOC_STRESS_DIRECT: jsmalloc::Allocate, AllocateAligned, Free,
// UsableSize, OwnedSize, FlushCaches, TrimAll. realloc and calloc exist only
// as exported C functions (runtime/malloc_api.cc), so they are reimplemented
// here the way malloc_api.cc does them: realloc keeps the block when the new
// size fits and wastes at most half (and the block is not guarded), else
// allocates (growing by at least a quarter), copies and frees; calloc checks
// the multiplication, allocates and zeroes.
//
// Every live block is filled over its whole usable size with a pattern
// derived from its id and the byte offset; the pattern is verified before the
// block is freed or reallocated, and a reallocated block must still hold its
// prefix. Blocks are also checked for alignment, usable size >= request,
// OwnedSize == UsableSize, and overlap with every other live block.
//
// The allocator is process-wide, so its state carries over from one input to
// the next (each input frees everything it allocated). The configuration
// comes from the environment (JSMALLOC_PER_CPU, JSMALLOC_BACKEND,
// JSMALLOC_NUMA_*, JSMALLOC_CHECK, JSMALLOC_HARDENED, JSMALLOC_GUARDED_RATE):
// the ctest suite runs this target once per configuration (fuzz.cmake).
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "runtime/allocator.h"
#include "runtime/guarded_pool.h"
#include "runtime/stats.h"
#include "tests/fuzz/fuzz_common.h"

namespace jsmalloc {
namespace {

constexpr size_t kSlots = 64;
constexpr size_t kMaxLiveBytes = size_t{96} << 20;

struct Block {
  char* p = nullptr;
  size_t requested = 0;
  size_t usable = 0;
  size_t align = 0;
  uint64_t id = 0;
};

inline uint64_t Word(uint64_t id, uint64_t k) {
  uint64_t x = id * 0x9E3779B97F4A7C15ull + k * 0xBF58476D1CE4E5B9ull + 1;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return x;
}

inline uint8_t ByteAt(uint64_t id, size_t off) {
  return static_cast<uint8_t>(Word(id, off / 8) >> (8 * (off % 8)));
}

// Blocks up to kDenseLimit bytes carry the pattern in every byte. Larger ones
// (filling and checking all of them would be most of the run time) carry it
// in their first 4 KiB, the first 64 bytes of every further 4 KiB (every
// 1 MiB above 32 MiB: the rare blocks of over 256 MiB), and their last 64
// bytes.
constexpr size_t kDenseLimit = 64 << 10;
constexpr size_t kFineLimit = 32 << 20;

// Calls f(a, b) for the patterned pieces of [from, to) in a block of `usable`
// bytes. with_tail: include the block's last 64 bytes (false when checking a
// prefix of a reallocated block, whose old tail was not copied).
template <typename F>
void ForEachPiece(size_t usable, size_t from, size_t to, bool with_tail, F f) {
  auto clip = [&](size_t a, size_t b) {
    a = a < from ? from : a;
    b = b > to ? to : b;
    if (a < b) f(a, b);
  };
  if (usable <= kDenseLimit) {
    clip(0, usable);
    return;
  }
  clip(0, 4096);
  const size_t stride = usable <= kFineLimit ? 4096 : size_t{1} << 20;
  for (size_t k = stride; k < to; k += stride) clip(k, k + 64);
  if (with_tail) clip(usable - 64, usable);
}

void FillRange(char* p, uint64_t id, size_t from, size_t to) {
  size_t o = from;
  for (; o < to && o % 8 != 0; ++o) p[o] = static_cast<char>(ByteAt(id, o));
  for (; o + 8 <= to; o += 8) {
    uint64_t w = Word(id, o / 8);
    std::memcpy(p + o, &w, 8);
  }
  for (; o < to; ++o) p[o] = static_cast<char>(ByteAt(id, o));
}

void VerifyRange(const char* p, uint64_t id, size_t from, size_t to, const char* when) {
  size_t o = from;
  auto bad = [&](size_t at) {
    FUZZ_CHECK(false, "%s: block %p (id %lu) corrupted at offset %zu: %#x, expected %#x", when, (const void*)p,
               (unsigned long)id, at, (unsigned)(uint8_t)p[at], (unsigned)ByteAt(id, at));
  };
  for (; o < to && o % 8 != 0; ++o)
    if (static_cast<uint8_t>(p[o]) != ByteAt(id, o)) bad(o);
  for (; o + 8 <= to; o += 8) {
    uint64_t w;
    std::memcpy(&w, p + o, 8);
    if (w != Word(id, o / 8)) {
      for (size_t i = o; i < o + 8; ++i)
        if (static_cast<uint8_t>(p[i]) != ByteAt(id, i)) bad(i);
    }
  }
  for (; o < to; ++o)
    if (static_cast<uint8_t>(p[o]) != ByteAt(id, o)) bad(o);
}

// The pattern over the whole block.
void Fill(char* p, uint64_t id, size_t usable) {
  ForEachPiece(usable, 0, usable, true, [&](size_t a, size_t b) { FillRange(p, id, a, b); });
}
// Checks [0, to) of a block of `usable` bytes that was filled with Fill.
void Verify(const char* p, uint64_t id, size_t usable, size_t to, const char* when) {
  ForEachPiece(usable, 0, to, to == usable, [&](size_t a, size_t b) { VerifyRange(p, id, a, b, when); });
}

// realloc as runtime/malloc_api.cc implements it (an anonymous function
// there), over the internal entry points.
void* Realloc(void* old, size_t size) {
  if (old == nullptr) return Allocate(size);
  if (size == 0) {
    Free(old);
    return nullptr;
  }
  size_t old_size = UsableSize(old);
  // A guarded block always moves, so that its guard sits at the new size.
  if (size <= old_size && size >= old_size / 2 && !InGuardedPool(old)) return old;
  size_t want = size;
  if (size > old_size && size - old_size < old_size / 4 && old_size + old_size / 4 > old_size) {
    want = old_size + old_size / 4;
  }
  void* p = Allocate(want);
  if (p == nullptr && want != size) p = Allocate(size);
  if (p == nullptr) return nullptr;
  std::memcpy(p, old, size < old_size ? size : old_size);
  Free(old);
  return p;
}

void* Calloc(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = Allocate(total);
  if (p != nullptr) std::memset(p, 0, total);
  return p;
}

size_t PickSize(fuzz::Input& in) {
  uint8_t k = in.ConsumeIntegral<uint8_t>();
  if (k < 120) return in.ConsumeIntegralInRange<size_t>(0, 256);
  if (k < 200) return in.ConsumeIntegralInRange<size_t>(257, 8192);
  if (k < 235) return in.ConsumeIntegralInRange<size_t>(8193, kMaxSize + 64);
  if (k < 252) return in.ConsumeIntegralInRange<size_t>(kMaxSize, size_t{4} << 20);  // filler / cache
  return in.ConsumeIntegralInRange<size_t>(size_t{4} << 20, size_t{24} << 20);        // regions, cache + donated tail
}

struct State {
  Block slots[kSlots];
  fuzz::IntervalSet ranges;  // [p, p + usable) of live blocks
  size_t live_bytes = 0;     // of all but the huge block
  char* huge_live = nullptr; // at most one block above 256 MiB
  bool huge_done = false;
  uint64_t next_id = 1;
};

void Adopt(State& st, Block& b, void* p, size_t requested, size_t align, uint64_t id, const char* what) {
  FUZZ_CHECK(p != nullptr, "%s(%zu, align %zu) returned null", what, requested, align);
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  size_t need_align = align != 0 ? align : (requested >= 16 ? 16 : 8);
  FUZZ_CHECK(a % need_align == 0, "%s(%zu): %p not aligned to %zu", what, requested, p, need_align);
  size_t usable = UsableSize(p);
  FUZZ_CHECK(usable >= requested && usable >= 1, "%s(%zu): usable size %zu", what, requested, usable);
  FUZZ_CHECK(OwnedSize(p) == usable, "%s(%zu): OwnedSize %zu != UsableSize %zu", what, requested, OwnedSize(p),
             usable);
  FUZZ_CHECK(st.ranges.Insert(a, usable), "%s(%zu): [%p, +%zu) overlaps a live block", what, requested, p, usable);
  b.p = static_cast<char*>(p);
  b.requested = requested;
  b.usable = usable;
  b.align = align;
  b.id = id;
  st.live_bytes += usable;
}

void FreeBlock(State& st, Block& b, const char* when) {
  Verify(b.p, b.id, b.usable, b.usable, when);
  FUZZ_CHECK(UsableSize(b.p) == b.usable, "%s: usable size of %p changed from %zu to %zu", when, (void*)b.p, b.usable,
             UsableSize(b.p));
  FUZZ_CHECK(st.ranges.Erase(reinterpret_cast<uintptr_t>(b.p)), "model lost a block");
  if (b.p == st.huge_live) st.huge_live = nullptr;
  else st.live_bytes -= b.usable;
  Free(b.p);
  b = Block{};
}

cpu_set_t g_original_cpus;
int g_ncpus = 0;

void PinTo(int k) {
  if (g_ncpus <= 1) return;
  int seen = 0;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &g_original_cpus)) continue;
    if (seen++ == k % g_ncpus) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(c, &one);
      sched_setaffinity(0, sizeof(one), &one);
      return;
    }
  }
}


// At exit: which configuration ran, and how much of it was exercised.
void PrintConfiguration() {
  static const char* const kNames[] = {
      "jsmalloc.per_cpu_caches_active", "jsmalloc.hugepage_aware_active",   "jsmalloc.check_mode",
      "jsmalloc.hardened",              "jsmalloc.numa.partitions",         "jsmalloc.numa.partition0.remote_frees",
      "jsmalloc.numa.partition1.remote_frees", "jsmalloc.sampling.samples_total",
      "jsmalloc.guarded.allocations_total"};
  if (!Static::inited()) return;
  std::fprintf(stderr, "allocator configuration:");
  for (const char* name : kNames) {
    size_t v;
    if (GetNumericProperty(name, &v)) std::fprintf(stderr, " %s=%zu", name + 9, v);
  }
  std::fprintf(stderr, "\n");
}

}  // namespace
}  // namespace jsmalloc

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace jsmalloc;
  if (sched_getaffinity(0, sizeof(g_original_cpus), &g_original_cpus) == 0) g_ncpus = CPU_COUNT(&g_original_cpus);
  std::atexit(PrintConfiguration);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jsmalloc;
  fuzz::Input in(data, size);
  State st;
  bool pinned = false;

  int ops = 0;
  while (in.remaining_bytes() > 0 && ops++ < 400) {
    uint8_t op = in.ConsumeIntegral<uint8_t>();
    Block& b = st.slots[in.ConsumeIntegralInRange<size_t>(0, kSlots - 1)];
    switch (op % 16) {
      case 0:
      case 1:
      case 2:
      case 3: {  // malloc (frees what the slot held first)
        if (b.p != nullptr) FreeBlock(st, b, "free before malloc");
        size_t n = PickSize(in);
        if (st.live_bytes + n > kMaxLiveBytes) break;
        void* p = Allocate(n);
        Adopt(st, b, p, n, 0, st.next_id++, "malloc");
        Fill(b.p, b.id, b.usable);
        break;
      }
      case 4:
      case 5:
      case 6: {  // free
        if (b.p != nullptr) FreeBlock(st, b, "free");
        break;
      }
      case 7:
      case 8:
      case 9: {  // realloc, including realloc(NULL, n) and realloc(p, 0)
        size_t n = in.ConsumeIntegral<uint8_t>() < 16 ? 0 : PickSize(in);
        if (b.p != nullptr && b.p == st.huge_live) break;  // not counted in live_bytes
        if (b.p == nullptr) {
          if (n == 0 || st.live_bytes + n > kMaxLiveBytes) break;
          void* p = Realloc(nullptr, n);
          Adopt(st, b, p, n, 0, st.next_id++, "realloc(NULL)");
          Fill(b.p, b.id, b.usable);
          break;
        }
        if (st.live_bytes + n > kMaxLiveBytes) break;
        Verify(b.p, b.id, b.usable, b.usable, "before realloc");
        if (n == 0) {  // frees, returns NULL
          FUZZ_CHECK(st.ranges.Erase(reinterpret_cast<uintptr_t>(b.p)), "model lost a block");
          st.live_bytes -= b.usable;
          FUZZ_CHECK(Realloc(b.p, 0) == nullptr, "realloc(p, 0) did not return NULL");
          b = Block{};
          break;
        }
        Block old = b;
        st.ranges.Erase(reinterpret_cast<uintptr_t>(old.p));
        st.live_bytes -= old.usable;
        void* p = Realloc(old.p, n);
        Adopt(st, b, p, n, 0, old.id, "realloc");
        // The prefix must survive: checked where the old block carried the pattern.
        size_t kept = n < old.usable ? n : old.usable;
        Verify(b.p, b.id, old.usable, kept, "after realloc (the prefix must survive)");
        if (p == old.p) {
          FUZZ_CHECK(b.usable == old.usable, "realloc in place changed the usable size");
        }
        Fill(b.p, b.id, b.usable);  // (again over the prefix: the pieces may differ)
        break;
      }
      case 10:
      case 11: {  // memalign / aligned_alloc / posix_memalign (all AllocateAligned)
        if (b.p != nullptr) FreeBlock(st, b, "free before memalign");
        uint8_t k = in.ConsumeIntegral<uint8_t>();
        int shift = k < 200 ? in.ConsumeIntegralInRange<int>(0, 12) : in.ConsumeIntegralInRange<int>(13, 22);
        size_t align = size_t{1} << shift;
        size_t n = PickSize(in);
        if (st.live_bytes + n + align > kMaxLiveBytes) break;
        void* p = AllocateAligned(n, align);
        Adopt(st, b, p, n, align, st.next_id++, "memalign");
        Fill(b.p, b.id, b.usable);
        break;
      }
      case 12: {  // calloc, including products that overflow
        if (b.p != nullptr) FreeBlock(st, b, "free before calloc");
        size_t count = in.ConsumeIntegralInRange<size_t>(0, 64);
        size_t each = PickSize(in) / 64;
        if (in.ConsumeIntegral<uint8_t>() < 8) {
          each = ~size_t{0} / 2 + in.ConsumeIntegral<uint8_t>();
          count = count < 2 ? 2 : count;
          errno = 0;
          FUZZ_CHECK(Calloc(count, each) == nullptr && errno == ENOMEM, "calloc(%zu, %zu) overflow not refused",
                     count, each);
          break;
        }
        size_t n = count * each;
        if (st.live_bytes + n > kMaxLiveBytes) break;
        void* p = Calloc(count, each);
        Adopt(st, b, p, n, 0, st.next_id++, "calloc");
        static const char kZeros[4096] = {};
        for (size_t i = 0; i < n; i += sizeof(kZeros)) {
          size_t len = n - i < sizeof(kZeros) ? n - i : sizeof(kZeros);
          FUZZ_CHECK(std::memcmp(b.p + i, kZeros, len) == 0, "calloc(%zu, %zu): bytes at %zu are not zero", count,
                     each, i);
        }
        Fill(b.p, b.id, b.usable);
        break;
      }
      case 13: {  // impossible sizes fail cleanly; rarely, one block above 256 MiB
        if (in.ConsumeIntegral<uint8_t>() < 2) {
          // More than a quarter of a region and not whole hugepages: whole
          // hugepages from the cache, the last one's tail donated to the
          // filler (where the next small spans may land).
          if (b.p != nullptr) FreeBlock(st, b, "free before a huge block");
          if (st.huge_done) break;  // at most one per input (each costs ~256 MiB of page faults)
          st.huge_done = true;
          size_t n = (size_t{256} << 20) + in.ConsumeIntegralInRange<size_t>(1, 8) * kHugePageSize +
                     in.ConsumeIntegralInRange<size_t>(1, kHugePageSize - 1);
          Adopt(st, b, Allocate(n), n, 0, st.next_id++, "malloc (huge)");
          Fill(b.p, b.id, b.usable);
          st.live_bytes -= b.usable;  // outside the live-bytes budget
          st.huge_live = b.p;
          break;
        }
        size_t n = (size_t{1} << 47) + in.ConsumeIntegral<uint32_t>();
        errno = 0;
        void* p = in.ConsumeBool() ? Allocate(n) : AllocateAligned(n, size_t{1} << in.ConsumeIntegralInRange<int>(3, 20));
        FUZZ_CHECK(p == nullptr && errno == ENOMEM, "allocation of %zu bytes did not fail with ENOMEM", n);
        break;
      }
      case 14: {  // move to another CPU (per-CPU caches of several CPUs)
        PinTo(in.ConsumeIntegral<uint8_t>());
        pinned = true;
        break;
      }
      default: {  // caches back to the middle-end, or everything back to the OS (rarely)
        uint8_t k = in.ConsumeIntegral<uint8_t>();
        if (k < 4) TrimAll();
        else if (k < 64) FlushCaches();
        break;
      }
    }
  }

  // The allocator's own accounting: at least our live bytes are allocated.
  size_t live = 0;
  for (auto& [p, len] : st.ranges.map()) live += len;
  Summary s = GetSummary();
  FUZZ_CHECK(s.allocated_bytes >= live, "allocated_bytes %zu < %zu bytes live", s.allocated_bytes, live);
  for (Block& b : st.slots)
    if (b.p != nullptr) FreeBlock(st, b, "final free");
  FUZZ_CHECK(st.ranges.size() == 0 && st.live_bytes == 0, "model not empty");
  if (pinned) sched_setaffinity(0, sizeof(g_original_cpus), &g_original_cpus);
  return 0;
}
