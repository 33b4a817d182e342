// USDT probes (provider "jsmalloc") for bpftrace, SystemTap, perf and gdb.
// docs/probes.md lists every probe with its arguments.
//
// Every probe has a semaphore: a 16-bit counter in section .probes whose
// address the probe's ELF note carries. A tracer that attaches to the probe
// increments it (the kernel does, through the uprobe's reference counter) and
// decrements it on detach. An untraced probe therefore costs one load of the
// semaphore and a branch that is predicted not taken; its arguments are not
// computed. The probe itself is a single nop that the tracer replaces with a
// breakpoint.
//
//   JSMALLOC_PROBE(span_alloc, cl, pages, addr, objects, node);
//   if (JSMALLOC_PROBE_ENABLED(release)) t0 = ProbeNowNs();
//
// Probes sit on slow paths only (central free lists, transfer-cache misses,
// the back-ends, the background thread): nothing on the per-CPU or
// per-thread fast paths of malloc and free.
#ifndef JSMALLOC_PROBES_JSMALLOC_PROBES_H_
#define JSMALLOC_PROBES_JSMALLOC_PROBES_H_

#include <cstddef>
#include <cstdint>

// The notes carry the semaphores' addresses (must precede <sys/sdt.h>: a
// translation unit with probes includes <sys/sdt.h> only through this header).
#ifndef _SDT_HAS_SEMAPHORES
#define _SDT_HAS_SEMAPHORES 1
#endif
#include <sys/sdt.h>

// Every probe of the provider. X(name) per probe; probes.cc defines one
// semaphore per entry and the header declares them.
#define JSMALLOC_PROBE_LIST(X) \
  X(span_alloc)                \
  X(span_return)               \
  X(central_refill)            \
  X(central_return)            \
  X(transfer_overflow)         \
  X(cpu_cache_resize)          \
  X(sample_alloc)              \
  X(sample_free)               \
  X(backend_grow)              \
  X(hugepage_taken)            \
  X(hugepage_filled)           \
  X(hugepage_broken)           \
  X(hugepage_released)         \
  X(hugepage_collapsed)        \
  X(region_created)            \
  X(region_freed)              \
  X(hugecache_hit)             \
  X(hugecache_miss)            \
  X(hugecache_release)         \
  X(release)                   \
  X(background_cycle)          \
  X(memory_limit_hit)

// The semaphores have C names: the probe notes refer to them from assembly as
// jsmalloc_<probe>_semaphore. Hidden, so a load is one RIP-relative access.
#define JSMALLOC_PROBE_DECLARE_SEMAPHORE_(name) \
  extern __attribute__((visibility("hidden"))) unsigned short jsmalloc_##name##_semaphore;
extern "C" {
JSMALLOC_PROBE_LIST(JSMALLOC_PROBE_DECLARE_SEMAPHORE_)
}
#undef JSMALLOC_PROBE_DECLARE_SEMAPHORE_

// True while a tracer is attached to the probe.
#define JSMALLOC_PROBE_ENABLED(name) \
  __builtin_expect(__atomic_load_n(&jsmalloc_##name##_semaphore, __ATOMIC_RELAXED) != 0, 0)

#define JSMALLOC_PROBE_NARGS_(...) JSMALLOC_PROBE_NARGS_I_(__VA_ARGS__, 6, 5, 4, 3, 2, 1, 0)
#define JSMALLOC_PROBE_NARGS_I_(_1, _2, _3, _4, _5, _6, n, ...) n
#define JSMALLOC_PROBE_CAT_(a, b) a##b
#define JSMALLOC_PROBE_STAP_(n) JSMALLOC_PROBE_CAT_(STAP_PROBE, n)

// Fires probe `name` with 1 to 6 arguments (integers or pointers), which are
// evaluated only when a tracer is attached.
#define JSMALLOC_PROBE(name, ...)                                                        \
  do {                                                                                   \
    if (JSMALLOC_PROBE_ENABLED(name)) {                                                  \
      JSMALLOC_PROBE_STAP_(JSMALLOC_PROBE_NARGS_(__VA_ARGS__))(jsmalloc, name, __VA_ARGS__); \
    }                                                                                    \
  } while (0)

namespace jsmalloc {

// The NUMA node argument of back-end probes: the node of the partition whose
// back-end is working. A thread-local override (node + 1, 0 for none) set
// around each call into a partition, so the components under it need not
// know their node; otherwise the process's single node.
extern __thread int t_probe_numa_node __attribute__((tls_model("initial-exec")));
extern int g_probe_default_numa_node;
inline int ProbeNumaNode() {
  int n = t_probe_numa_node;
  return n != 0 ? n - 1 : g_probe_default_numa_node;
}
class ProbeNumaNodeScope {
 public:
  explicit ProbeNumaNodeScope(int node) : saved_(t_probe_numa_node) { t_probe_numa_node = node + 1; }
  ~ProbeNumaNodeScope() { t_probe_numa_node = saved_; }
  ProbeNumaNodeScope(const ProbeNumaNodeScope&) = delete;
  ProbeNumaNodeScope& operator=(const ProbeNumaNodeScope&) = delete;

 private:
  int saved_;
};

// Precise monotonic nanoseconds, for durations that probes report. Call it
// only under JSMALLOC_PROBE_ENABLED: it is a clock read.
uint64_t ProbeNowNs();

// Addresses as probe arguments.
inline uintptr_t ProbeAddr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// `kind` argument of the release probe.
enum ProbeReleaseKind : int {
  kProbeReleaseForced = 0,  // ReleaseAtLeast: release API, malloc_trim, release rate, memory limit
  kProbeReleaseDemand = 1,  // the back-end's own policy (hugepage-cache demand, page-heap excess)
  kProbeReleaseSubrelease = 2,  // subrelease inside partly used hugepages
};

// Fires the release probe when it goes out of scope: release(kind, requested,
// *released, duration_ns, node), the duration measured from construction.
// Declared before a lock holder, it fires after the lock is dropped. Demand
// releases fire only when something was released (they are tried on every
// span free). Untraced, construction and destruction test the semaphore only.
class ProbeReleaseScope {
 public:
  ProbeReleaseScope(int kind, size_t requested, const size_t* released)
      : kind_(kind), requested_(requested), released_(released),
        t0_(JSMALLOC_PROBE_ENABLED(release) ? ProbeNowNs() : 0) {}
  ~ProbeReleaseScope() {
    if (__builtin_expect(t0_ != 0, 0)) Fire();
  }
  ProbeReleaseScope(const ProbeReleaseScope&) = delete;
  ProbeReleaseScope& operator=(const ProbeReleaseScope&) = delete;

 private:
  void Fire() const;
  int kind_;
  size_t requested_;
  const size_t* released_;
  uint64_t t0_;
};

// Probes fired from code in other components, as plain functions (each
// checks its own semaphore first, so an untraced call costs the call and one
// branch). Callers on hot paths may test JSMALLOC_PROBE_ENABLED(name) first.
//
// cpu_cache_resize: the capacity (in objects) of class `cl` on CPU `cpu`
// changed from old_cap to new_cap.
void ProbeCpuCacheResize(int cpu, int cl, unsigned old_cap, unsigned new_cap);
// sample_alloc: a sampled allocation `ptr` of requested_size bytes, which
// occupies allocated_size bytes (its size class or span).
void ProbeSampleAlloc(const void* ptr, size_t requested_size, size_t allocated_size);
// sample_free: a sampled allocation `ptr` of `size` bytes (as requested) is freed.
void ProbeSampleFree(const void* ptr, size_t size);

}  // namespace jsmalloc

#endif  // JSMALLOC_PROBES_JSMALLOC_PROBES_H_
