#include "runtime/heap_check.h"

#include <climits>

#include "os/os.h"
#include "runtime/allocator.h"
#include "base/freelist_link.h"
#include "base/internal_printer.h"
#include "runtime/sample_records.h"

namespace jsmalloc {

constinit bool g_check_mode = false;

namespace {

// The free mark of object p is kMarkKey ^ p in its second word: a value a
// program is vanishingly unlikely to store there by chance.
constinit uintptr_t mark_key = 0;

// The countdown stays this negative in check mode, so that every allocation
// takes AllocateSampleSlow (no process allocates 2^62 bytes).
constexpr int64_t kCheckCountdown = INT64_MIN / 2;

[[noreturn]] void SizedDeleteError(const void* p, size_t passed, size_t block) {
  char buf[256];
  Printer out(buf, sizeof(buf));
  out.Str("jsmalloc: sized delete of pointer ").Hex(reinterpret_cast<uintptr_t>(p)).Str(" with size ")
      .U(passed).Str(", but the block holds ").U(block).Str(" bytes (wrong size passed to operator delete)\n");
  os::WriteStderr(out.data(), out.written());
  os::Abort();
}

}  // namespace

void InitHeapCheck(bool on) {
  if (!on) return;
  // Any odd 64-bit value differing per process; it only has to be unlikely
  // to equal what a program leaves in a freed object.
  uintptr_t seed = os::MonotonicNanos() ^ (reinterpret_cast<uintptr_t>(&mark_key) << 17);
  seed ^= seed >> 31;
  seed *= 0x9e3779b97f4a7c15ull;
  mark_key = seed | 1;
  g_check_mode = true;
}

void* AllocateChecked(size_t size, size_t alignment) noexcept {
  void* p = alignment == 0 ? AllocateUnsampled(size) : AllocateAlignedUnsampled(size, alignment);
  // After the allocation: a failed one gives its bytes back to the
  // countdown (AllocateLarge), which for an impossible size made it
  // positive, and the thread's next allocations skipped this function (a
  // free of one of them was then reported as a double free).
  t_state.bytes_until_sample = kCheckCountdown;
  if (p != nullptr) {
    int cl = g_pagemap.SizeClassOf(p);
    if (cl != 0 && SizeMap::ClassSize(cl) >= 2 * sizeof(uintptr_t)) *MarkWord(p) = 0;
  }
  return p;
}

void CheckFree(void* p, int cl) {
  if (p == nullptr || cl == 0) return;  // large blocks: FreeSlow checks them anyway
  Span* span = g_pagemap.Get(PageIdOf(p));
  if (span == nullptr || span->sizeclass != cl || span->location != Span::kInUse) {
    os::FatalError("invalid free of pointer not allocated by jsmalloc:", p);
  }
  const size_t size = SizeMap::ClassSize(cl);
  size_t offset = static_cast<size_t>(static_cast<char*>(p) - static_cast<char*>(span->start()));
  if (offset % size != 0 || offset / size >= span->carved) {
    os::FatalError("invalid free of pointer that is not the start of an object:", p);
  }
  if (size < 2 * sizeof(uintptr_t)) return;  // no room for a mark beside the free-list link
  uintptr_t mark = mark_key ^ reinterpret_cast<uintptr_t>(p);
  if (*MarkWord(p) == mark) os::FatalError("double free of pointer", p);
  *MarkWord(p) = mark;
}

void CheckNotFreed(const void* p, int cl) {
  if (SizeMap::ClassSize(cl) < 2 * sizeof(uintptr_t)) return;
  void* q = const_cast<void*>(p);
  if (*MarkWord(q) == (mark_key ^ reinterpret_cast<uintptr_t>(p))) os::FatalError("realloc of freed pointer", p);
}

void CheckSizedFree(void* p, size_t size, size_t alignment) {
  if (p == nullptr) return;
  int cl = g_pagemap.SizeClassOf(p);
  if (cl != 0) {
    // The aligned forms choose the class as AllocateAligned did, for any
    // alignment (new(8, align_val_t{16}) is a 16-byte object).
    int want = size > kMaxSize ? -1
               : alignment != 0 ? SizeMap::ClassForAligned(size, alignment)
                                : SizeMap::ClassFor(size);
    if (want != cl) SizedDeleteError(p, size, SizeMap::ClassSize(cl));
    return;
  }
  Span* span = g_pagemap.Get(PageIdOf(p));
  if (span == nullptr || span->start() != p || span->location != Span::kInUse) {
    os::FatalError("invalid free of pointer not allocated by jsmalloc:", p);
  }
  // A block with a span of its own and no class is PagesFor(size) pages
  // whatever its size (a small request aligned beyond a page is one too),
  // except that an alignment beyond a page may round it up to whole
  // hugepages. A sampled block has a span of its own whatever its size;
  // compare with what the program asked for, to the same granularity as
  // unsampled ones.
  size_t block = span->sample != nullptr ? SampledAllocatedSize(span) : span->bytes();
  bool fits;
  if (span->sample == nullptr) {
    const Length want = PagesFor(size == 0 ? 1 : size);
    if (alignment > kPageSize) {
      const size_t limit = (size + alignment + kHugePageSize - 1) / kHugePageSize * kHugePageSize;
      fits = want <= span->num_pages && span->bytes() <= limit;
    } else {
      fits = want == span->num_pages;
    }
  } else {
    fits = block <= kMaxSize ? SizeMap::ClassFor(size) == SizeMap::ClassFor(block) && size <= kMaxSize
                             : PagesFor(size) == PagesFor(block);
  }
  if (!fits) SizedDeleteError(p, size, block);
}

}  // namespace jsmalloc
