#include "os/os.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <linux/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "os/linux/os_memory.h"

// glibc >= 2.35 exports these; weak so that the library still loads (and
// falls back to its own registration) with an older glibc.
extern "C" {
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));
}

namespace jsmalloc::os {

constinit long g_rseq_offset = 0;

namespace {

constexpr uint32_t kRseqSig = 0x53053053;

// Our own area, used only when glibc did not register one. Initial-exec TLS,
// so its offset from the thread pointer is the same in every thread. The
// kernel writes a CPU number >= 0 once the thread registers; until then the
// critical sections see a negative cpu_id and take the slow path.
__thread struct rseq t_own_rseq __attribute__((tls_model("initial-exec"), aligned(32))) = {
    0, static_cast<uint32_t>(RSEQ_CPU_ID_UNINITIALIZED), 0, 0};
__thread bool t_own_registered __attribute__((tls_model("initial-exec"))) = false;

constinit std::atomic<int> mode{-1};
constinit std::atomic<int> fence_state{-1};  // -1 unknown, 0 no, 1 yes
constinit const char* unavailable_reason = "";

long ThreadPointer() {
  long tp;
  asm("mov %%fs:0, %0" : "=r"(tp));
  return tp;
}

bool RegisterOwn() {
  int saved = errno;
  long rc = syscall(SYS_rseq, &t_own_rseq, sizeof(t_own_rseq), 0, kRseqSig);
  bool ok = rc == 0 || errno == EBUSY;  // EBUSY: already registered (fork child)
  errno = saved;
  if (ok) t_own_registered = true;
  return ok && static_cast<int32_t>(t_own_rseq.cpu_id) >= 0;
}

#if JSMALLOC_RSEQ_SIMULATION
// Only libjsmalloc_rseq_sim.so (built for counting instructions under
// valgrind, never installed) has this mode; the production libraries do not.

// True when valgrind runs us: it preloads its core into every client.
bool UnderValgrind() {
  const char* preload = GetEnv("LD_PRELOAD");
  if (preload == nullptr) return false;
  for (const char* p = preload; *p != '\0'; ++p) {
    if (strncmp(p, "vgpreload_core", 14) == 0) return true;
  }
  return false;
}

bool SimulateRequested() {
  const char* v = GetEnv("JSMALLOC_RSEQ_SIMULATE");
  return v != nullptr && v[0] == '1' && v[1] == '\0' && UnderValgrind();
}

void SimulateCpu0() {
  t_own_rseq.cpu_id_start = 0;
  t_own_rseq.cpu_id = 0;
  t_own_registered = true;
}
#endif  // JSMALLOC_RSEQ_SIMULATION

}  // namespace

RseqMode RseqInit() {
  int m = mode.load(std::memory_order_acquire);
  if (m >= 0) return static_cast<RseqMode>(m);
  RseqMode result = RseqMode::kUnavailable;
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (&__rseq_size != nullptr && &__rseq_offset != nullptr && __rseq_size >= 20) {
    g_rseq_offset = static_cast<long>(__rseq_offset);
    // glibc registered this thread already if cpu_id is valid.
    result = RseqCurrentCpu() >= 0 ? RseqMode::kGlibc : RseqMode::kUnavailable;
    if (result == RseqMode::kUnavailable) unavailable_reason = "glibc rseq area has no CPU id";
  } else {
    g_rseq_offset = reinterpret_cast<long>(&t_own_rseq) - ThreadPointer();
    if (RegisterOwn()) {
      result = RseqMode::kOwn;
#if JSMALLOC_RSEQ_SIMULATION
    } else if (SimulateRequested()) {
      SimulateCpu0();
      result = RseqMode::kSimulated;
#endif
    } else {
      unavailable_reason = "rseq system call refused";
    }
  }
#else
  unavailable_reason = "per-CPU critical sections exist for x86-64 only";
#endif
  int expected = -1;
  mode.compare_exchange_strong(expected, static_cast<int>(result), std::memory_order_acq_rel);
  return static_cast<RseqMode>(mode.load(std::memory_order_acquire));
}

RseqMode CurrentRseqMode() {
  int m = mode.load(std::memory_order_acquire);
  return m < 0 ? RseqMode::kUnavailable : static_cast<RseqMode>(m);
}

const char* RseqUnavailableReason() { return unavailable_reason; }

int RseqCurrentCpu() {
#if JSMALLOC_HAVE_RSEQ_SLAB
  return RseqCurrentCpuInline();
#else
  return -1;
#endif
}

bool RseqEnsureThreadRegistered() {
  if (RseqCurrentCpu() >= 0) return true;
#if JSMALLOC_RSEQ_SIMULATION
  if (CurrentRseqMode() == RseqMode::kSimulated) {
    SimulateCpu0();
    return true;
  }
#endif
  if (CurrentRseqMode() != RseqMode::kOwn || t_own_registered) return false;
  return RegisterOwn();
}

bool RseqFenceAvailable() {
  int s = fence_state.load(std::memory_order_acquire);
  if (s >= 0) return s == 1;
  int saved = errno;
  long rc = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0);
  errno = saved;
  fence_state.store(rc == 0 ? 1 : 0, std::memory_order_release);
  return rc == 0;
}

bool RseqFenceCpu(int cpu) {
  if (!RseqFenceAvailable()) return false;
  int saved = errno;
  long rc = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU,
                    cpu);
  errno = saved;
  return rc == 0;
}

}  // namespace jsmalloc::os
