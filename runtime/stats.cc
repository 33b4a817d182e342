#include "runtime/stats.h"

#include "base/lock_table.h"
#include "runtime/runtime_locks.h"

#include <cstring>
#include <new>

#include "backend/page_allocator.h"
#include "jsmalloc/jsmalloc.h"
#include "os/os.h"
#include "hugepage/huge_page_aware_allocator.h"
#include "backend/memory_limiter.h"
#include "runtime/allocator.h"
#include "runtime/background.h"
#include "base/freelist_link.h"
#include "runtime/guarded_pool.h"
#include "runtime/heap_check.h"
#include "runtime/hugepage_coverage.h"
#include "runtime/numa_stats.h"
#include "runtime/report_thread.h"
#include "runtime/sampling_stats.h"
#include "runtime/static_vars.h"

namespace jsmalloc {

// One report at a time (the per-class scratch is static). Taken by fork().
constinit SpinLock& report_lock = g_runtime_locks.report.lock;

Summary GetSummary() {
  Static::InitIfNeeded();
  Summary s = {};
  BackendStats b = Static::backend()->Stats();
  s.system_bytes = b.system_bytes;
  s.in_use_pages_bytes = b.in_use_bytes;
  s.backend_free_bytes = b.free_bytes;
  s.unmapped_bytes = b.unmapped_bytes;
  s.spans_in_use = b.spans_in_use;
  size_t released_in_spans = 0;
  for (int p = 0; p < Static::num_partitions(); ++p) {
    for (int cl = 1; cl < kNumClasses; ++cl) {
      CentralStats c = Static::central(p, cl).Stats();
      s.central_free_bytes += c.free_bytes - c.released_bytes;
      released_in_spans += c.released_bytes;
      s.transfer_free_bytes += Static::transfer(p)[cl].objects() * SizeMap::ClassSize(cl);
    }
  }
  ThreadCacheStats t = Static::registry().Stats();
  s.thread_cache_bytes = t.bytes;
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (Static::front_end() == FrontEnd::kPerCpu) s.cpu_cache_bytes = Static::cpu_cache().TotalCachedBytes();
#endif
  s.thread_caches = t.caches;
  s.metadata_bytes = Static::arena()->bytes_mapped();
  // Pages malloc_trim released inside spans still in use are not backed.
  s.unmapped_bytes += released_in_spans;
  size_t cached = released_in_spans + s.central_free_bytes + s.transfer_free_bytes + s.thread_cache_bytes +
                  s.cpu_cache_bytes;
  // The pieces are read one after another while other threads run, so the
  // difference can dip below zero for a moment. Guarded blocks live outside
  // the back-end: their pages count as in use by the application.
  s.allocated_bytes = s.in_use_pages_bytes > cached ? s.in_use_pages_bytes - cached : 0;
  GuardedStats g = GetGuardedStats();
  s.allocated_bytes += g.mapped_bytes;
  s.physical_bytes = s.system_bytes - s.unmapped_bytes + s.metadata_bytes + g.mapped_bytes;
  s.virtual_bytes = s.system_bytes + s.metadata_bytes + g.pool_bytes;
  return s;
}

const char* FrontEndName() {
  if (Static::front_end() == FrontEnd::kPerThread) return "per-thread caches";
  switch (os::CurrentRseqMode()) {
    case os::RseqMode::kGlibc: return "per-CPU caches (rseq: glibc's registration)";
    case os::RseqMode::kSimulated: return "per-CPU caches (rseq: SIMULATED for valgrind, unsafe)";
    default: return "per-CPU caches (rseq: own registration)";
  }
}

void PrintBanner(Printer* out) {
  // The pid and program name tell apart the reports of several processes
  // (a shell script, a compiler driver) appended to one file.
  char name[64];
  os::ProgramName(name, sizeof(name));
  out->Str("JSMalloc ").Str(JSMALLOC_VERSION_STRING).Str(" pid ").I(os::ProcessId()).Str(" (").Str(name)
      .Str(") (front-end: ").Str(FrontEndName()).Str(", back-end: ").Str(Static::backend()->Name())
      .Str(", page size: ").U(kPageSize >> 10).Str(" KiB, size classes: ").U(kNumClasses - 1)
      .Str(")\n");
}

namespace {

void Line(Printer* out, const char* op, size_t v, const char* what) {
  out->Str("MALLOC: ").Str(op).UW(v, 14).Str(" (").F(static_cast<double>(v) / 1048576.0, 1)
      .Str(" MiB) ").Str(what).Char('\n');
}

}  // namespace

// Per-CPU section: each CPU that has cached anything, and per class the
// capacity and misses summed over CPUs.
void PrintCpuCaches(Printer* out) {
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (Static::front_end() == FrontEnd::kPerCpu) {
    CpuCache& cc = Static::cpu_cache();
    out->Str("Per-CPU caches: ").U(static_cast<uint64_t>(cc.num_cpus())).Str(" possible CPUs, budget ")
        .MiB(cc.max_bytes_per_cpu()).Str(" MiB per CPU, rseq fence ")
        .Str(os::RseqFenceAvailable() ? "available" : "unavailable (idle CPUs are not drained)").Char('\n');
    out->Str("  cpu  capacity_MiB  cached_MiB  underflows  overflows  drains  shrinks\n");
    for (int cpu = 0; cpu < cc.num_cpus(); ++cpu) {
      CpuCacheCpuStats c = cc.CpuStats(cpu);
      if (!c.populated && c.misses == 0) continue;
      out->UW(static_cast<uint64_t>(cpu), 5).Str("  ").F(static_cast<double>(c.capacity_bytes) / 1048576.0, 2)
          .Str("          ").F(static_cast<double>(c.cached_bytes) / 1048576.0, 2).UW(c.underflows, 12)
          .UW(c.overflows, 11).UW(c.drains, 8).UW(c.shrinks, 9);
      if (c.fence_failures > 0) out->Str("  fences failed ").U(c.fence_failures);
      if (c.retired) out->Str(" (slab stopped for good)");
      out->Char('\n');
    }
    return;
  }
#endif
  out->Str("Per-CPU caches: off (").Str(Static::per_cpu_off_reason()).Str(")\n");
}

// Coverage, the kernel's THP settings and the background thread.
void PrintHugepageSection(Printer* out) {
  const os::ThpSettings& thp = os::GetThpSettings();
  HugepageCoverage c = ComputeHugepageCoverage();
  // At the moment of the report (tools that sample a run average it).
  out->Str("Hugepage coverage: ").F(static_cast<double>(c.ppm) / 10000.0, 2).Str("% of the ")
      .MiB(c.in_use_bytes).Str(" MiB in use is on hugepages now (")
      .Str(c.exact ? "exact: /proc/self/pagemap" : "estimate: /proc/self/smaps").Str(")\n");
  out->Str("Kernel THP: enabled=").Str(os::ThpModeName(thp.enabled)).Str(", defrag=").Str(thp.defrag)
      .Str("; heap ")
      .Str(Static::hugepage_allocator() != nullptr ? "advised MADV_HUGEPAGE" : "not advised (legacy heap)")
      .Str("; releases use ").Str(Static::system_page_source()->madv_free() ? "MADV_FREE" : "MADV_DONTNEED")
      .Char('\n');
  BackgroundStats bg = GetBackgroundStats();
  if (bg.running) {
    out->Str("Background thread: running").Str(bg.auto_start ? " (started on first need), " : ", ").U(bg.cycles)
        .Str(" cycles; ").MiB(bg.released_bytes).Str(" MiB released by it (free for ")
        .U(Static::options().release_delay).Str(" s; steady rate ").MiB(bg.release_rate).Str(" MiB/s); ")
        .U(bg.promoted_hugepages).Str(" hugepages collapsed;\n  madvise via ").Str(bg.madvise_path)
        .Str(" (").U(bg.madvise_batches).Str(" batches, ").U(bg.madvise_ranges).Str(" ranges, ")
        .U(bg.madvise_syscalls).Str(" system calls, ").U(bg.madvise_interrupted_waits)
        .Str(" interrupted waits resumed)\n");
  } else if (bg.auto_start) {
    out->Str("Background thread: not started (starts when the spans in use reach 32 MiB; "
             "JSMALLOC_BACKGROUND=1 at once)\n");
  } else {
    out->Str("Background thread: off (JSMALLOC_BACKGROUND=0; =1 or jsmalloc_start_background_thread() starts it)\n");
  }
}

void PrintStatsReport(Printer* out) {
  Static::InitIfNeeded();
  // One report at a time: the per-class scratch below is static (too large
  // for the stacks of small threads).
  SpinLockHolder hold(&report_lock);
  PrintBanner(out);
  Summary s = GetSummary();
  out->Str("------------------------------------------------\n");
  Line(out, "  ", s.allocated_bytes, "Bytes in use by application");
  Line(out, "+ ", s.backend_free_bytes, "Bytes in page heap freelist");
  Line(out, "+ ", s.central_free_bytes, "Bytes in central cache freelist");
  Line(out, "+ ", s.transfer_free_bytes, "Bytes in transfer cache freelist");
  Line(out, "+ ", s.cpu_cache_bytes, "Bytes in per-CPU cache freelists");
  Line(out, "+ ", s.thread_cache_bytes, "Bytes in thread cache freelists");
  Line(out, "+ ", s.metadata_bytes, "Bytes in malloc metadata");
  out->Str("MALLOC:   ------------\n");
  Line(out, "= ", s.physical_bytes, "Actual memory used (physical + swap)");
  Line(out, "+ ", s.unmapped_bytes, "Bytes not backed (released to OS, or never touched)");
  out->Str("MALLOC:   ------------\n");
  Line(out, "= ", s.virtual_bytes, "Virtual address space used");
  out->Str("MALLOC: ").UW(s.spans_in_use, 17).Str("              Spans in use\n");
  out->Str("MALLOC: ").UW(s.thread_caches, 17).Str("              Thread caches in use\n");
  out->Str("MALLOC: ").UW(os::ResidentBytes(), 17).Str("              Process RSS (bytes)\n");

  ThreadCacheStats t = Static::registry().Stats();
  out->Str("------------------------------------------------\n");
  PrintCpuCaches(out);
  out->Str("Thread caches: ").U(t.caches).Str(" caches, ").MiB(t.bytes).Str(" MiB cached, budget ")
      .MiB(t.budget).Str(" MiB (").MiB(t.unclaimed).Str(" MiB unclaimed)\n");
  out->Str("------------------------------------------------\n");
  static CpuCacheClassStats cpu_classes[kMaxClasses];  // too big for the stack of small threads
  for (int cl = 0; cl < kMaxClasses; ++cl) cpu_classes[cl] = CpuCacheClassStats();
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (Static::front_end() == FrontEnd::kPerCpu) Static::cpu_cache().ClassStats(cpu_classes);
#endif
  const bool wide = Static::options().stats_wide;
  if (wide) {
    out->Str("Size classes (object counts, then KiB per cache level):\n");
    out->Str("class   size pages objs/span  spans     live  central_free  transfer  thread_cache"
             "  cpu_cache  cpu_capacity  cpu_misses  transfer_hit%  cumulative_spans"
             "  live_KiB  central_KiB  transfer_KiB  thread_KiB  cpu_KiB\n");
  } else {
    // Fits 100 columns; JSMALLOC_STATS_WIDE=1 prints every count.
    out->Str("Size classes (KiB held at each level; front = per-CPU + per-thread caches;\n"
             "JSMALLOC_STATS_WIDE=1 adds object counts and capacities):\n");
    out->Str("class    size pages  spans   live_KiB  central_KiB  transfer_KiB  front_KiB"
             "    cpu_misses  xfer_hit%\n");
  }
  for (int cl = 1; cl < kNumClasses; ++cl) {
    CentralStats c = Static::central(0, cl).Stats();
    TransferStats tr = Static::transfer(0)[cl].Stats();
    // NUMA partitions: the class's counts summed over them.
    for (int p = 1; p < Static::num_partitions(); ++p) {
      c += Static::central(p, cl).Stats();
      tr += Static::transfer(p)[cl].Stats();
    }
    size_t tc_objs = t.class_objects[cl];
    size_t hits = tr.insert_hits + tr.remove_hits;
    size_t total = hits + tr.insert_misses + tr.remove_misses;
    if (c.spans == 0 && tr.objects == 0 && tc_objs == 0 && c.spans_created == 0) continue;
    size_t cached = tr.objects + tc_objs + cpu_classes[cl].objects;
    size_t live = c.live_objects > cached ? c.live_objects - cached : 0;
    const size_t size = SizeMap::ClassSize(cl);
    if (!wide) {
      out->UW(static_cast<uint64_t>(cl), 5).UW(size, 8).UW(SizeMap::ClassPages(cl), 6).UW(c.spans, 7)
          .UW(live * size >> 10, 11).UW(c.free_objects * size >> 10, 13).UW(tr.objects * size >> 10, 14)
          .UW((tc_objs + cpu_classes[cl].objects) * size >> 10, 11).UW(cpu_classes[cl].misses, 14)
          .UW(total ? hits * 100 / total : 0, 11).Char('\n');
      continue;
    }
    out->UW(static_cast<uint64_t>(cl), 5).UW(size, 7).UW(SizeMap::ClassPages(cl), 6)
        .UW(SizeMap::ObjectsPerSpan(cl), 10).UW(c.spans, 7).UW(live, 9).UW(c.free_objects, 14)
        .UW(tr.objects, 10).UW(tc_objs, 14).UW(cpu_classes[cl].objects, 11)
        .UW(cpu_classes[cl].capacity, 14).UW(cpu_classes[cl].misses, 12)
        .UW(total ? hits * 100 / total : 0, 15)
        .UW(c.spans_created, 18)
        // The same counts in KiB: what each cache level holds of this class.
        .UW(live * size >> 10, 10).UW(c.free_objects * size >> 10, 13)
        .UW(tr.objects * size >> 10, 14).UW(tc_objs * size >> 10, 12)
        .UW(cpu_classes[cl].objects * size >> 10, 9).Char('\n');
  }
  Static::backend()->Print(out);
  PrintHugepageSection(out);
  PrintNumaSection(out);
  PrintGuardedSection(out);
  out->Str("Heap checks: check mode ")
      .Str(g_check_mode ? "on (every free validated at once, sized delete checked, sampling off)"
                        : "off (JSMALLOC_CHECK=1); bad frees caught when objects reach their span")
      .Str("\n  free-list links ").Str(g_link_validate ? "encoded and validated against the pagemap (hardened)"
                                                  : "encoded (JSMALLOC_HARDENED=1 also validates them)")
      .Char('\n');
  // fork(): where the locks its handlers hold live (base/lock_table.h).
  const LockTableStats lt = LockTable::Stats();
  out->Str("Fork: ").U(lt.locks).Str(" locks in ").U(lt.bytes >> 10).Str(" KiB ")
      .Str(lt.wiped ? "that a forked child gets zeroed (MADV_WIPEONFORK): released after fork without copy-on-write"
                    : "shared with a forked child as usual (the kernel refused MADV_WIPEONFORK)")
      .Char('\n');
  PrintSamplingSection(out);
}

size_t WriteStatsReport(char* buf, size_t len) {
  Printer p(buf, len);
  PrintStatsReport(&p);
  return p.needed();
}

namespace {

// The report in a metadata buffer made once (64 KiB holds every class and
// free-list line), so printing at exit touches no heap being reported.
const Printer* FormatReport() {
  static char* buffer = nullptr;
  static constexpr size_t kLen = 64 * 1024;
  static Printer* printer = nullptr;
  alignas(Printer) static char printer_storage[sizeof(Printer)];
  if (buffer == nullptr) buffer = static_cast<char*>(Static::arena()->Alloc(kLen, 64));
  if (buffer == nullptr) return nullptr;
  printer = new (printer_storage) Printer(buffer, kLen);
  PrintStatsReport(printer);
  return printer;
}

}  // namespace

void DumpStatsToStderr() {
  const Printer* p = FormatReport();
  if (p != nullptr) os::WriteStderr(p->data(), p->written());
}

void DumpStatsToFile(const char* path) {
  const Printer* p = FormatReport();
  if (p != nullptr) os::AppendToFile(path, p->data(), p->written());
}

size_t MaxPerCpuCacheBytes() {
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (Static::front_end() == FrontEnd::kPerCpu) return Static::cpu_cache().max_bytes_per_cpu();
#endif
  return Static::options().max_per_cpu_cache_bytes;
}

namespace {

// The names GetNumericProperty answers; tests check that each one resolves.
constexpr const char* kPropertyNames[] = {
    "generic.current_allocated_bytes",
    "generic.heap_size",
    "generic.physical_memory_used",
    "generic.virtual_memory_used",
    "jsmalloc.page_heap_free_bytes",
    "jsmalloc.page_heap_unmapped_bytes",
    "jsmalloc.page_heap_in_use_bytes",
    "jsmalloc.page_heap_released_total_bytes",
    "jsmalloc.central_cache_free_bytes",
    "jsmalloc.transfer_cache_free_bytes",
    "jsmalloc.current_total_thread_cache_bytes",
    "jsmalloc.max_total_thread_cache_bytes",
    "jsmalloc.thread_caches",
    "jsmalloc.metadata_bytes",
    "jsmalloc.pagemap_bytes",
    "jsmalloc.spans_in_use",
    "jsmalloc.page_size",
    "jsmalloc.num_size_classes",
    "jsmalloc.max_size",
    "jsmalloc.per_cpu_caches_active",
    "jsmalloc.cpu_cache_free_bytes",
    "jsmalloc.max_per_cpu_cache_bytes",
    "jsmalloc.hugepage_aware_active",
    "jsmalloc.hugepage_coverage",
    "jsmalloc.hugepage_coverage_exact",
    "jsmalloc.hugepage.filler_hugepages",
    "jsmalloc.hugepage.filler_broken",
    "jsmalloc.hugepage.filler_used_pages",
    "jsmalloc.hugepage.filler_free_pages",
    "jsmalloc.hugepage.filler_released_pages",
    "jsmalloc.hugepage.cache_backed_free",
    "jsmalloc.hugepage.cache_unbacked_free",
    "jsmalloc.hugepage.cache_mapped",
    "jsmalloc.hugepage.cache_released_total",
    "jsmalloc.hugepage.regions",
    "jsmalloc.hugepage.region_backed",
    "jsmalloc.hugepage.large",
    "jsmalloc.hugepage.collapses",
    "jsmalloc.hugepage.filler_nohugepage",
    "jsmalloc.hugepage.promoted",
    "jsmalloc.hugepage.large_cache_backed_free",
    "jsmalloc.hugepage.large_growth_releases",
    "jsmalloc.hugepage.large_growth_threshold_bytes",
    "jsmalloc.memory_limit",
    "jsmalloc.memory_limit_hard",
    "jsmalloc.memory_limit_hits",
    "jsmalloc.background_thread_running",
    "jsmalloc.background_release_rate",
    "jsmalloc.background_io_uring",
    "jsmalloc.background_released_bytes",
    "jsmalloc.sampling.interval",
    "jsmalloc.sampling.samples_total",
    "jsmalloc.sampling.live_samples",
    "jsmalloc.sampling.live_bytes_estimate",
    "jsmalloc.sampling.live_objects_estimate",
    "jsmalloc.sampling.peak_bytes_estimate",
    "jsmalloc.sampling.allocation_profile_active",
    "jsmalloc.sampling.kept_span_bytes",
    "jsmalloc.check_mode",
    "jsmalloc.hardened",
    "jsmalloc.signal_stats_reports",
    "jsmalloc.signal_heap_profiles",
    "jsmalloc.numa.aware",
    "jsmalloc.numa.partitions",
    "jsmalloc.numa.nodes_online",
    "jsmalloc.numa.injected_topology",
    "jsmalloc.numa.process_policy",
    "jsmalloc.numa.process_policy_nodes",
#define JSMALLOC_NUMA_PARTITION_PROPERTIES_(p)                                       \
  "jsmalloc.numa.partition" #p ".nodes", "jsmalloc.numa.partition" #p ".cpus",        \
      "jsmalloc.numa.partition" #p ".heap_bytes", "jsmalloc.numa.partition" #p ".in_use_bytes", \
      "jsmalloc.numa.partition" #p ".free_bytes", "jsmalloc.numa.partition" #p ".released_bytes", \
      "jsmalloc.numa.partition" #p ".bound_bytes", "jsmalloc.numa.partition" #p ".remote_frees", \
      "jsmalloc.numa.partition" #p ".hugepage_coverage",
    JSMALLOC_NUMA_PARTITION_PROPERTIES_(0)
    JSMALLOC_NUMA_PARTITION_PROPERTIES_(1)
    JSMALLOC_NUMA_PARTITION_PROPERTIES_(2)
    JSMALLOC_NUMA_PARTITION_PROPERTIES_(3)
#undef JSMALLOC_NUMA_PARTITION_PROPERTIES_
};
static_assert(kMaxNumaPartitions == 4, "list a property block per partition above");

}  // namespace

size_t PropertyNames(const char** out, size_t max) {
  constexpr size_t n = sizeof(kPropertyNames) / sizeof(kPropertyNames[0]);
  for (size_t i = 0; i < n && i < max; ++i) out[i] = kPropertyNames[i];
  // Then the guarded pool's (runtime/guarded_pool.h keeps its own list).
  return n + GuardedPropertyNames(max > n ? out + n : nullptr, max > n ? max - n : 0);
}

bool GetNumericProperty(const char* name, size_t* value) {
  if (name == nullptr || value == nullptr) return false;
  Static::InitIfNeeded();
  // Expensive ones are computed only when asked for.
  if (strcmp(name, "jsmalloc.hugepage_coverage") == 0 || strcmp(name, "jsmalloc.hugepage_coverage_exact") == 0) {
    HugepageCoverage c = ComputeHugepageCoverage();
    *value = name[sizeof("jsmalloc.hugepage_coverage") - 1] == '\0' ? c.ppm : (c.exact ? 1 : 0);
    return true;
  }
  if (strncmp(name, "jsmalloc.sampling.", 18) == 0) return GetSamplingProperty(name, value);
  if (strncmp(name, "jsmalloc.numa.", 14) == 0) return GetNumaProperty(name, value);
  if (strncmp(name, "jsmalloc.guarded.", 17) == 0) return GetGuardedProperty(name, value);
  if (strncmp(name, "jsmalloc.hugepage.", 18) == 0 && Static::hugepage_allocator() != nullptr) {
    HugePageStats h = Static::hugepage_allocator()->HugeStats();
    const struct {
      const char* n;
      size_t v;
    } hp[] = {
        {"jsmalloc.hugepage.filler_hugepages", h.filler.hugepages},
        {"jsmalloc.hugepage.filler_broken", h.filler.broken},
        {"jsmalloc.hugepage.filler_used_pages", h.filler.used_pages},
        {"jsmalloc.hugepage.filler_free_pages", h.filler.free_pages},
        {"jsmalloc.hugepage.filler_released_pages", h.filler.released_pages},
        {"jsmalloc.hugepage.cache_backed_free", h.cache.backed_free},
        {"jsmalloc.hugepage.cache_unbacked_free", h.cache.unbacked_free},
        {"jsmalloc.hugepage.cache_mapped", h.cache.mapped_hugepages},
        {"jsmalloc.hugepage.cache_released_total", h.cache.released_hugepages},
        {"jsmalloc.hugepage.regions", h.region_count},
        {"jsmalloc.hugepage.region_backed", h.regions.backed_hugepages},
        {"jsmalloc.hugepage.large", h.large_hugepages},
        {"jsmalloc.hugepage.collapses", h.collapses},
        {"jsmalloc.hugepage.filler_nohugepage", h.filler.no_thp},
        {"jsmalloc.hugepage.promoted", h.promoted_hugepages},
        {"jsmalloc.hugepage.large_cache_backed_free", h.sparse_cache.backed_free},
        {"jsmalloc.hugepage.large_growth_releases", h.growth_releases},
        {"jsmalloc.hugepage.large_growth_threshold_bytes", h.growth_threshold_bytes},
    };
    for (const auto& e : hp) {
      if (strcmp(e.n, name) == 0) {
        *value = e.v;
        return true;
      }
    }
    return false;
  }
  Summary s = GetSummary();
  struct Entry {
    const char* name;
    size_t v;
  };
  ThreadCacheStats t = Static::registry().Stats();
  BackendStats b = Static::backend()->Stats();
  const Entry entries[] = {
      {"generic.current_allocated_bytes", s.allocated_bytes},
      {"generic.heap_size", s.system_bytes},
      {"generic.physical_memory_used", s.physical_bytes},
      {"generic.virtual_memory_used", s.virtual_bytes},
      {"jsmalloc.page_heap_free_bytes", s.backend_free_bytes},
      {"jsmalloc.page_heap_unmapped_bytes", s.unmapped_bytes},
      {"jsmalloc.page_heap_in_use_bytes", s.in_use_pages_bytes},
      {"jsmalloc.page_heap_released_total_bytes", b.released_total},
      {"jsmalloc.central_cache_free_bytes", s.central_free_bytes},
      {"jsmalloc.transfer_cache_free_bytes", s.transfer_free_bytes},
      {"jsmalloc.current_total_thread_cache_bytes", s.thread_cache_bytes},
      {"jsmalloc.max_total_thread_cache_bytes", t.budget},
      {"jsmalloc.thread_caches", s.thread_caches},
      {"jsmalloc.metadata_bytes", s.metadata_bytes},
      {"jsmalloc.pagemap_bytes", g_pagemap.metadata_bytes()},
      {"jsmalloc.spans_in_use", s.spans_in_use},
      {"jsmalloc.page_size", kPageSize},
      {"jsmalloc.num_size_classes", static_cast<size_t>(kNumClasses - 1)},
      {"jsmalloc.max_size", kMaxSize},
      {"jsmalloc.hugepage_aware_active", Static::hugepage_allocator() != nullptr ? size_t{1} : 0},
      {"jsmalloc.memory_limit", Static::memory_limiter()->limit()},
      {"jsmalloc.memory_limit_hard", Static::memory_limiter()->hard() ? size_t{1} : 0},
      {"jsmalloc.memory_limit_hits", Static::memory_limiter()->limit_hits()},
      {"jsmalloc.background_thread_running", GetBackgroundStats().running ? size_t{1} : 0},
      {"jsmalloc.background_release_rate", GetBackgroundStats().release_rate},
      {"jsmalloc.background_io_uring", GetBackgroundStats().running && GetBackgroundStats().madvise_path[0] == 'i' ? size_t{1} : 0},
      {"jsmalloc.background_released_bytes", GetBackgroundStats().released_bytes},
      {"jsmalloc.per_cpu_caches_active", Static::front_end() == FrontEnd::kPerCpu ? size_t{1} : 0},
      {"jsmalloc.cpu_cache_free_bytes", s.cpu_cache_bytes},
      {"jsmalloc.max_per_cpu_cache_bytes", MaxPerCpuCacheBytes()},
      {"jsmalloc.check_mode", g_check_mode ? size_t{1} : 0},
      {"jsmalloc.hardened", g_link_validate ? size_t{1} : 0},
      {"jsmalloc.signal_stats_reports", static_cast<size_t>(SignalStatsReports())},
      {"jsmalloc.signal_heap_profiles", static_cast<size_t>(SignalHeapProfiles())},
  };
  for (const Entry& e : entries) {
    if (strcmp(e.name, name) == 0) {
      *value = e.v;
      return true;
    }
  }
  return false;
}

}  // namespace jsmalloc
