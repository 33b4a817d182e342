// The exported C allocation API: the standard functions, glibc's companions
// and JSMalloc's own. Every entry point is a thin shell over allocator.h.
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "jsmalloc/jsmalloc.h"
#include "os/os.h"
#include "backend/memory_limiter.h"
#include "runtime/allocator.h"
#include "runtime/background.h"
#include "runtime/guarded_pool.h"
#include "runtime/profile_output.h"
#include "runtime/sampler.h"
#include "runtime/stack_trace.h"
#include "runtime/stats.h"
#include "runtime/thread_lifecycle.h"

using jsmalloc::Allocate;
using jsmalloc::AllocateAligned;
using jsmalloc::Free;

// In the entry section: stack traces of sampled allocations start at the
// caller of these functions (runtime/stack_trace.h).
#define JSMALLOC_API extern "C" __attribute__((visibility("default"))) JSMALLOC_ENTRY_SECTION

namespace {

bool IsPowerOfTwo(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

size_t SystemPage() { return jsmalloc::os::SystemPageSize(); }

JSMALLOC_ENTRY_SECTION void* Realloc(void* old, size_t size) {
  if (old == nullptr) return Allocate(size);
  if (size == 0) {  // glibc frees and returns NULL
    Free(old);
    return nullptr;
  }
  size_t old_size = jsmalloc::ReallocSourceSize(old);
  // Keep the block if the request fits and does not waste more than half;
  // a guarded block always moves, so that its guard sits at the new size.
  if (size <= old_size && size >= old_size / 2 && !jsmalloc::InGuardedPool(old)) return old;
  size_t want = size;
  // Grow by at least a quarter so that loops growing a buffer byte by byte
  // copy O(n) bytes in total, not O(n^2).
  if (size > old_size && size - old_size < old_size / 4 && old_size + old_size / 4 > old_size) {
    want = old_size + old_size / 4;
  }
  void* p = Allocate(want);
  if (p == nullptr && want != size) p = Allocate(size);
  if (p == nullptr) return nullptr;  // errno set; old block untouched
  memcpy(p, old, size < old_size ? size : old_size);
  Free(old);
  return p;
}

}  // namespace

JSMALLOC_API void* malloc(size_t size) noexcept { return Allocate(size); }

JSMALLOC_API void free(void* p) noexcept { Free(p); }

JSMALLOC_API void cfree(void* p) noexcept { Free(p); }

JSMALLOC_API void free_sized(void* p, size_t /*size*/) noexcept { Free(p); }

JSMALLOC_API void free_aligned_sized(void* p, size_t /*alignment*/, size_t /*size*/) noexcept {
  Free(p);
}

JSMALLOC_API void* calloc(size_t n, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = Allocate(total);
  if (p != nullptr) memset(p, 0, total);
  return p;
}

JSMALLOC_API void* realloc(void* p, size_t size) noexcept { return Realloc(p, size); }

JSMALLOC_API void* reallocarray(void* p, size_t n, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return Realloc(p, total);
}

JSMALLOC_API void* memalign(size_t alignment, size_t size) noexcept {
  // glibc rounds a non-power-of-two alignment up to the next power of two.
  if (!IsPowerOfTwo(alignment)) {
    if (alignment > (~size_t{0} >> 1) + 1) {
      errno = EINVAL;
      return nullptr;
    }
    size_t a = 1;
    while (a < alignment) a <<= 1;
    alignment = a;
  }
  return AllocateAligned(size, alignment);
}

JSMALLOC_API void* aligned_alloc(size_t alignment, size_t size) noexcept {
  if (!IsPowerOfTwo(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  return AllocateAligned(size, alignment);
}

JSMALLOC_API int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  if (!IsPowerOfTwo(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  int saved = errno;
  void* p = AllocateAligned(size, alignment);
  errno = saved;  // posix_memalign reports through its return value only
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

JSMALLOC_API void* valloc(size_t size) noexcept { return AllocateAligned(size, SystemPage()); }

JSMALLOC_API void* pvalloc(size_t size) noexcept {
  size_t page = SystemPage();
  size_t rounded = (size + page - 1) & ~(page - 1);
  if (rounded < size) {
    errno = ENOMEM;
    return nullptr;
  }
  return AllocateAligned(rounded == 0 ? page : rounded, page);
}

JSMALLOC_API size_t malloc_usable_size(void* p) noexcept { return jsmalloc::UsableSize(p); }

// glibc's internal names, which some programs and libraries call directly.
JSMALLOC_API void* __libc_malloc(size_t size) { return Allocate(size); }
JSMALLOC_API void __libc_free(void* p) { Free(p); }
JSMALLOC_API void* __libc_calloc(size_t n, size_t size) { return calloc(n, size); }
JSMALLOC_API void* __libc_realloc(void* p, size_t size) { return Realloc(p, size); }
JSMALLOC_API void* __libc_memalign(size_t alignment, size_t size) { return memalign(alignment, size); }
JSMALLOC_API void* __libc_valloc(size_t size) { return valloc(size); }
JSMALLOC_API void* __libc_pvalloc(size_t size) { return pvalloc(size); }
JSMALLOC_API int __posix_memalign(void** out, size_t alignment, size_t size) {
  return posix_memalign(out, alignment, size);
}

// ---- glibc companions ------------------------------------------------------

JSMALLOC_API struct mallinfo2 mallinfo2() noexcept {
  jsmalloc::Summary s = jsmalloc::GetSummary();
  struct mallinfo2 mi;
  memset(&mi, 0, sizeof(mi));
  mi.arena = s.system_bytes;  // all our memory is "non-mmapped" in glibc terms
  mi.ordblks = 0;
  mi.hblks = 0;
  mi.hblkhd = 0;
  mi.usmblks = 0;
  mi.fsmblks = s.central_free_bytes + s.transfer_free_bytes + s.thread_cache_bytes + s.cpu_cache_bytes;
  mi.uordblks = s.allocated_bytes;
  mi.fordblks = s.system_bytes > s.allocated_bytes ? s.system_bytes - s.allocated_bytes : 0;
  mi.keepcost = s.backend_free_bytes;
  return mi;
}

JSMALLOC_API struct mallinfo mallinfo() noexcept {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo mi;
  auto clip = [](size_t v) { return static_cast<int>(v > 0x7fffffff ? 0x7fffffff : v); };
  mi.arena = clip(m2.arena);
  mi.ordblks = clip(m2.ordblks);
  mi.smblks = clip(m2.smblks);
  mi.hblks = clip(m2.hblks);
  mi.hblkhd = clip(m2.hblkhd);
  mi.usmblks = clip(m2.usmblks);
  mi.fsmblks = clip(m2.fsmblks);
  mi.uordblks = clip(m2.uordblks);
  mi.fordblks = clip(m2.fordblks);
  mi.keepcost = clip(m2.keepcost);
  return mi;
}

JSMALLOC_API void malloc_stats() noexcept {
  // glibc's lines first (scripts parse them), then our report.
  jsmalloc::Summary s = jsmalloc::GetSummary();
  char buf[512];
  jsmalloc::Printer p(buf, sizeof(buf));
  p.Str("Arena 0:\nsystem bytes     = ").U(s.system_bytes)
      .Str("\nin use bytes     = ").U(s.allocated_bytes)
      .Str("\nTotal (incl. mmap):\nsystem bytes     = ").U(s.system_bytes)
      .Str("\nin use bytes     = ").U(s.allocated_bytes)
      .Str("\nmax mmap regions =          0\nmax mmap bytes   =          0\n");
  jsmalloc::os::WriteStderr(p.data(), p.written());
  jsmalloc::DumpStatsToStderr();
}

JSMALLOC_API int malloc_trim(size_t /*pad*/) noexcept { return jsmalloc::TrimAll() > 0 ? 1 : 0; }

JSMALLOC_API int mallopt(int param, int /*value*/) noexcept {
  // Parameters glibc documents; we accept them and ignore what does not apply
  // to our design (arenas, mmap thresholds, trimming thresholds).
  switch (param) {
    case M_MXFAST:
    case M_TRIM_THRESHOLD:
    case M_TOP_PAD:
    case M_MMAP_THRESHOLD:
    case M_MMAP_MAX:
    case M_CHECK_ACTION:
    case M_PERTURB:
    case M_ARENA_TEST:
    case M_ARENA_MAX:
      return 1;
    default:
      return 0;
  }
}

namespace {

// malloc_info's XML into buf; returns the length the whole text needs.
// names: every numeric property (PropertyNames).
size_t FormatMallocInfo(char* buf, size_t len, const char* const* names, size_t n) {
  jsmalloc::Printer p(buf, len);
  jsmalloc::Summary s = jsmalloc::GetSummary();
  p.Str("<malloc version=\"jsmalloc-").Str(JSMALLOC_VERSION_STRING).Str("\">\n<heap nr=\"0\">\n<sizes>\n");
  size_t free_count = 0;
  const size_t cached_bytes =
      s.central_free_bytes + s.transfer_free_bytes + s.thread_cache_bytes + s.cpu_cache_bytes;
  for (int cl = 1; cl < jsmalloc::kNumClasses; ++cl) {
    size_t count = 0;
    for (int part = 0; part < jsmalloc::Static::num_partitions(); ++part) {
      count += jsmalloc::Static::central(part, cl).Stats().free_objects +
               jsmalloc::Static::transfer(part)[cl].objects();
    }
    if (count == 0) continue;
    size_t size = jsmalloc::SizeMap::ClassSize(cl);
    size_t from = cl > 1 ? jsmalloc::SizeMap::ClassSize(cl - 1) + 1 : 1;
    free_count += count;
    p.Str("  <size from=\"").U(from).Str("\" to=\"").U(size).Str("\" total=\"").U(count * size)
        .Str("\" count=\"").U(count).Str("\"/>\n");
  }
  p.Str("</sizes>\n<total type=\"fast\" count=\"").U(free_count).Str("\" size=\"")
      .U(cached_bytes).Str("\"/>\n")
      .Str("<total type=\"rest\" count=\"0\" size=\"").U(s.backend_free_bytes).Str("\"/>\n")
      .Str("<system type=\"current\" size=\"").U(s.physical_bytes).Str("\"/>\n")
      .Str("<system type=\"max\" size=\"").U(s.virtual_bytes).Str("\"/>\n")
      .Str("<aspace type=\"total\" size=\"").U(s.system_bytes).Str("\"/>\n")
      .Str("<aspace type=\"mprotect\" size=\"").U(s.system_bytes).Str("\"/>\n")
      .Str("</heap>\n")
      .Str("<total type=\"fast\" count=\"").U(free_count).Str("\" size=\"")
      .U(cached_bytes).Str("\"/>\n")
      .Str("<total type=\"rest\" count=\"0\" size=\"").U(s.backend_free_bytes).Str("\"/>\n")
      .Str("<total type=\"mmap\" count=\"0\" size=\"0\"/>\n")
      .Str("<system type=\"current\" size=\"").U(s.physical_bytes).Str("\"/>\n")
      .Str("<system type=\"max\" size=\"").U(s.virtual_bytes).Str("\"/>\n")
      .Str("<aspace type=\"total\" size=\"").U(s.system_bytes).Str("\"/>\n")
      .Str("<aspace type=\"mprotect\" size=\"").U(s.system_bytes).Str("\"/>\n")
      .Str("<jsmalloc allocated=\"").U(s.allocated_bytes).Str("\" unmapped=\"").U(s.unmapped_bytes)
      .Str("\" metadata=\"").U(s.metadata_bytes).Str("\"/>\n");
  // Every numeric property, so the XML carries the same numbers as the
  // report and jsmalloc_get_numeric_property.
  p.Str("<properties>\n");
  for (size_t i = 0; i < n; ++i) {
    size_t v;
    if (jsmalloc::GetNumericProperty(names[i], &v)) {
      p.Str("  <property name=\"").Str(names[i]).Str("\" value=\"").U(v).Str("\"/>\n");
    }
  }
  p.Str("</properties>\n</malloc>\n");
  return p.needed();
}

}  // namespace

JSMALLOC_API int malloc_info(int options, FILE* fp) noexcept {
  if (options != 0 || fp == nullptr) {
    errno = EINVAL;
    return -1;
  }
  // The names and the text go into blocks of our own heap: this runs outside
  // every allocator lock (stdio, below, may allocate through us too), and
  // nothing is sized in advance, so no property and no line is dropped.
  const size_t n = jsmalloc::PropertyNames(nullptr, 0);
  auto* names = static_cast<const char**>(jsmalloc::Allocate(n * sizeof(const char*)));
  if (names == nullptr) return -1;  // errno is ENOMEM
  jsmalloc::PropertyNames(names, n);
  size_t len = 32 * 1024;
  for (;;) {
    char* buf = static_cast<char*>(jsmalloc::Allocate(len));
    if (buf == nullptr) {
      jsmalloc::Free(names);
      return -1;
    }
    size_t need = FormatMallocInfo(buf, len, names, n);
    if (need < len) {
      int rc = fputs(buf, fp) < 0 ? -1 : 0;
      jsmalloc::Free(buf);
      jsmalloc::Free(names);
      return rc;
    }
    jsmalloc::Free(buf);
    len = need + 1;  // the heap changed meanwhile: the loop checks again
  }
}

// ---- JSMalloc's own API ----------------------------------------------------

JSMALLOC_API size_t jsmalloc_get_stats(char* buf, size_t len) {
  return jsmalloc::WriteStatsReport(buf, len);
}

JSMALLOC_API int jsmalloc_get_numeric_property(const char* name, size_t* value) {
  return jsmalloc::GetNumericProperty(name, value) ? 1 : 0;
}

JSMALLOC_API size_t jsmalloc_release_memory_to_os(size_t bytes) {
  jsmalloc::Static::InitIfNeeded();
  return jsmalloc::Static::backend()->ReleaseAtLeast(bytes);
}

JSMALLOC_API const char* jsmalloc_version(void) { return JSMALLOC_VERSION_STRING; }

JSMALLOC_API int jsmalloc_get_span_extent(const void* p, void** start, size_t* bytes) {
  if (!jsmalloc::Static::inited() || p == nullptr) return 0;
  jsmalloc::Span* s = jsmalloc::g_pagemap.Get(jsmalloc::PageIdOf(p));
  if (s == nullptr || s->location != jsmalloc::Span::kInUse) return 0;
  if (jsmalloc::PageIdOf(p) < s->first_page || jsmalloc::PageIdOf(p) > s->last_page()) return 0;
  if (start != nullptr) *start = s->start();
  if (bytes != nullptr) *bytes = s->bytes();
  return 1;
}

JSMALLOC_API size_t jsmalloc_get_property_names(const char** names, size_t max) {
  return jsmalloc::PropertyNames(names, names == nullptr ? 0 : max);
}

JSMALLOC_API size_t jsmalloc_get_allocated_size(const void* p) { return jsmalloc::OwnedSize(p); }

JSMALLOC_API int jsmalloc_get_ownership(const void* p) { return jsmalloc::OwnedSize(p) != 0 ? 1 : 0; }

JSMALLOC_API int jsmalloc_get_numa_node(const void* p) {
  if (jsmalloc::OwnedSize(p) == 0) return -1;
  jsmalloc::Span* span = jsmalloc::g_pagemap.Get(jsmalloc::PageIdOf(p));
  if (span == nullptr) return -1;
  return jsmalloc::Static::numa_plan().partition_node[span->partition];
}

JSMALLOC_API void jsmalloc_mark_thread_idle(void) { jsmalloc::ReleaseThreadCache(); }

// Caches are created on demand, so there is nothing to do: the name exists
// so that code written against TCMalloc's MarkThreadBusy has its pair.
JSMALLOC_API void jsmalloc_mark_thread_busy(void) { jsmalloc::Static::InitIfNeeded(); }

JSMALLOC_API size_t jsmalloc_get_background_release_rate(void) {
  size_t v = 0;
  jsmalloc::GetNumericProperty("jsmalloc.background_release_rate", &v);
  return v;
}

JSMALLOC_API int jsmalloc_start_background_thread(void) {
  return jsmalloc::StartBackgroundThread() ? 1 : 0;
}

JSMALLOC_API void jsmalloc_set_background_release_rate(size_t bytes_per_second) {
  jsmalloc::SetReleaseRate(bytes_per_second);
}

JSMALLOC_API void jsmalloc_set_memory_limit(size_t bytes, int hard) {
  jsmalloc::Static::InitIfNeeded();
  jsmalloc::Static::memory_limiter()->SetLimit(bytes, hard != 0);
  // Bring the heap under a new, lower limit now rather than at the next growth.
  size_t backed = jsmalloc::Static::backend()->BackedBytes();
  if (bytes != 0 && backed > bytes) {
    jsmalloc::Static::backend()->ReleaseAtLeast(backed - bytes);
    backed = jsmalloc::Static::backend()->BackedBytes();
    if (backed > bytes) {
      jsmalloc::FlushCaches();
      backed = jsmalloc::Static::backend()->BackedBytes();
      if (backed > bytes) jsmalloc::Static::backend()->ReleaseAtLeast(backed - bytes);
    }
  }
}

JSMALLOC_API size_t jsmalloc_get_memory_limit(int* hard) {
  jsmalloc::Static::InitIfNeeded();
  if (hard != nullptr) *hard = jsmalloc::Static::memory_limiter()->hard() ? 1 : 0;
  return jsmalloc::Static::memory_limiter()->limit();
}

JSMALLOC_API void jsmalloc_set_max_per_cpu_cache_bytes(size_t bytes) {
  jsmalloc::Static::InitIfNeeded();
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (jsmalloc::Static::front_end() == jsmalloc::FrontEnd::kPerCpu) {
    jsmalloc::Static::cpu_cache().SetMaxBytesPerCpu(bytes);
  }
#endif
}

JSMALLOC_API size_t jsmalloc_get_max_per_cpu_cache_bytes(void) {
  size_t v = 0;
  jsmalloc::GetNumericProperty("jsmalloc.max_per_cpu_cache_bytes", &v);
  return v;
}

JSMALLOC_API void jsmalloc_set_sample_interval(size_t bytes) { jsmalloc::SetSampleInterval(bytes); }

JSMALLOC_API size_t jsmalloc_get_sample_interval(void) { return jsmalloc::GetSampleInterval(); }

JSMALLOC_API int jsmalloc_dump_heap_profile(const char* path) {
  return jsmalloc::DumpHeapProfile(path) ? 1 : 0;
}

JSMALLOC_API int jsmalloc_dump_peak_heap_profile(const char* path) {
  return jsmalloc::DumpPeakHeapProfile(path) ? 1 : 0;
}

JSMALLOC_API int jsmalloc_start_allocation_profile(void) {
  return jsmalloc::StartAllocationProfile() ? 1 : 0;
}

JSMALLOC_API int jsmalloc_stop_allocation_profile(const char* path) {
  return jsmalloc::StopAllocationProfile(path) ? 1 : 0;
}

namespace {

// Initialise as early as the loader lets us, and print the report at exit
// when asked. A destructor (not atexit) so that nothing is allocated.
__attribute__((constructor)) void JsmallocOnLoad() { jsmalloc::Static::InitIfNeeded(); }

__attribute__((destructor)) void JsmallocOnExit() {
  jsmalloc::HeapProfileAtExit();
  if (jsmalloc::Static::inited() && jsmalloc::Static::options().stats_on_exit) {
    const char* path = jsmalloc::Static::options().stats_file;
    if (path[0] != '\0') jsmalloc::DumpStatsToFile(path);
    else jsmalloc::DumpStatsToStderr();
  }
}

}  // namespace
