// The probe semaphores and the probe helpers other components call.
#include "probes/jsmalloc_probes.h"

#include "os/os.h"

// One 16-bit semaphore per probe in section .probes, where tracers (bcc,
// bpftrace, SystemTap) look for them to turn the address in the note into a
// file offset for the kernel's uprobe reference counter.
#define JSMALLOC_PROBE_DEFINE_SEMAPHORE_(name)                                   \
  __attribute__((visibility("hidden"), section(".probes"), used)) unsigned short \
      jsmalloc_##name##_semaphore = 0;
extern "C" {
JSMALLOC_PROBE_LIST(JSMALLOC_PROBE_DEFINE_SEMAPHORE_)
}
#undef JSMALLOC_PROBE_DEFINE_SEMAPHORE_

namespace jsmalloc {

__thread int t_probe_numa_node __attribute__((tls_model("initial-exec"))) = 0;
constinit int g_probe_default_numa_node = 0;

uint64_t ProbeNowNs() { return os::MonotonicNanos(); }

void ProbeReleaseScope::Fire() const {
  if (kind_ == kProbeReleaseDemand && *released_ == 0) return;
  uint64_t ns = ProbeNowNs() - t0_;
  JSMALLOC_PROBE(release, kind_, requested_, *released_, ns, ProbeNumaNode());
}

// Sets up a frame pointer in the (leaf) helper on the traced path: GCC
// leaves leaf functions frameless even with -fno-omit-frame-pointer, and a
// frame-pointer stack walk (bpftrace's ustack) from a frameless function
// skips its caller.
#define JSMALLOC_PROBE_KEEP_FRAME_() asm volatile("" : : "r"(__builtin_frame_address(0)))

void ProbeCpuCacheResize(int cpu, int cl, unsigned old_cap, unsigned new_cap) {
  if (JSMALLOC_PROBE_ENABLED(cpu_cache_resize)) {
    JSMALLOC_PROBE_KEEP_FRAME_();
    STAP_PROBE4(jsmalloc, cpu_cache_resize, cpu, cl, old_cap, new_cap);
  }
}

void ProbeSampleAlloc(const void* ptr, size_t requested_size, size_t allocated_size) {
  if (JSMALLOC_PROBE_ENABLED(sample_alloc)) {
    JSMALLOC_PROBE_KEEP_FRAME_();
    STAP_PROBE3(jsmalloc, sample_alloc, ProbeAddr(ptr), requested_size, allocated_size);
  }
}

void ProbeSampleFree(const void* ptr, size_t size) {
  if (JSMALLOC_PROBE_ENABLED(sample_free)) {
    JSMALLOC_PROBE_KEEP_FRAME_();
    STAP_PROBE2(jsmalloc, sample_free, ProbeAddr(ptr), size);
  }
}

}  // namespace jsmalloc
