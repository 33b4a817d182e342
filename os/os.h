// The OS layer's interface: everything the allocator asks of the operating
// system, and the only header of os/ that files outside os/ include. The
// layer is the lowest one (docs/design.md); os/linux/ implements it, and
// nothing above it makes a system call itself.
//
// Unless its comment says otherwise, every function here is allocation-free
// and safe to call inside malloc and before main.
//
// Two groups are inline, because they run on every malloc and free or are
// read as often: the per-CPU critical sections (os/linux/rseq.h) and the
// clocks (os/linux/clock.h). This header includes both, so that their code
// is compiled into the fast paths with nothing in between.
#ifndef JSMALLOC_OS_OS_H_
#define JSMALLOC_OS_OS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "os/linux/clock.h"
#include "os/linux/rseq.h"

struct io_uring;  // liburing's ring (os/linux/madvise_batcher.cc)

namespace jsmalloc::os {

// ---------------------------------------------------------------------------
// Memory mapping and madvise: address space for the heap, pages given back,
// and how much of it is resident.

// Maps `bytes` of fresh, zeroed, readable and writable anonymous memory whose
// start is a multiple of `alignment` (a power of two, >= the system page).
// `hint` is where we would like it (to keep the heap contiguous); the kernel
// may ignore it. Returns nullptr when the kernel refuses (ENOMEM). The range
// is named "[anon:jsmalloc]" in /proc/PID/maps where the kernel allows.
void* MapAligned(size_t bytes, size_t alignment, void* hint);

// Unmaps a range obtained from MapAligned (or part of one).
void Unmap(void* ptr, size_t bytes);

// Maps `bytes` (a multiple of the system page) of zeroed anonymous memory
// that a child made by fork() gets zeroed instead of shared copy-on-write
// (MADV_WIPEONFORK, Linux 4.14): after fork, the parent's writes there take
// no copy-on-write fault. *wiped says whether the kernel agreed (if not,
// the memory is shared as usual). nullptr when the kernel refuses the map.
void* MapWipeOnFork(size_t bytes, bool* wiped);

// Tells the kernel the contents of [ptr, ptr+bytes) are no longer needed; the
// range stays mapped. With MADV_DONTNEED (default) it reads back as zeros at
// once; with MADV_FREE (madv_free) the kernel takes the pages only under
// memory pressure, and until then they may keep their contents. Returns false
// if refused.
bool ReleasePages(void* ptr, size_t bytes, bool madv_free = false);

// The kernel's base page size (4 KiB on x86-64).
size_t SystemPageSize();

// Resident set size of this process in bytes (from /proc/self/statm), or 0.
size_t ResidentBytes();

// Bytes of [p, p+bytes) (page-aligned) that are resident now, from mincore();
// SIZE_MAX if the kernel will not tell.
size_t ResidentBytesIn(const void* p, size_t bytes);

// ---------------------------------------------------------------------------
// Transparent hugepages: what the kernel will do (sysfs), asking for them
// (MADV_HUGEPAGE, MADV_COLLAPSE), and checking which ranges it backs with
// them (/proc/self/pagemap + /proc/kpageflags, or /proc/self/smaps).

enum class ThpMode { kAlways, kMadvise, kNever, kUnknown };

struct ThpSettings {
  ThpMode enabled = ThpMode::kUnknown;
  ThpMode shmem_or_unused = ThpMode::kUnknown;
  char defrag[32] = "unknown";
  bool khugepaged_defrag = false;
  size_t hpage_pmd_size = 0;
  // khugepaged/max_ptes_none: how many missing base pages khugepaged fills
  // with zeroed memory when it collapses a range (kernel default 511, all
  // but one). -1 when unreadable.
  int khugepaged_max_ptes_none = -1;
};

// /sys/kernel/mm/transparent_hugepage/*, read once and cached.
const ThpSettings& GetThpSettings();
const char* ThpModeName(ThpMode m);
bool AdviseHugePages(void* p, size_t bytes);
// MADV_NOHUGEPAGE: no THP on faults and no khugepaged collapse in the range
// (the kernel splits the mapping's VMA at its ends).
bool AdviseNoHugePages(void* p, size_t bytes);
bool CollapseHugePages(void* p, size_t bytes);
// out[i] = whether hugepage i of `count` 2 MiB hugepages from `start` is a
// transparent hugepage now. False when the kernel will not tell (needs
// CAP_SYS_ADMIN for page frame numbers). Callers serialise the calls.
bool HugePagesBackedByThp(const void* start, size_t count, bool* out);
// AnonHugePages and Rss summed over the VMAs intersecting the range.
bool ThpBytesInRange(const void* start, size_t bytes, size_t* anon_huge_bytes, size_t* rss_bytes);

// ---------------------------------------------------------------------------
// NUMA topology and placement: the machine's nodes and which CPUs belong to
// them (sysfs), what this process may use (affinity, cpuset, memory policy),
// and per-range memory policy (mbind). Raw system calls, no libnuma.

inline constexpr int kMaxNumaNodes = 64;  // node masks are uint64_t
inline constexpr int kMaxTopologyCpus = 1024;

// Values are the kernel's MPOL_* modes.
enum class MemPolicy : int {
  kDefault = 0,
  kPreferred = 1,
  kBind = 2,
  kInterleave = 3,
  kLocal = 4,
  kPreferredMany = 5,
  kWeightedInterleave = 6,
  kUnknown = -1,
};

// "default", "preferred", "bind", "interleave", "local", "preferred-many",
// "weighted-interleave", "unknown".
const char* MemPolicyName(MemPolicy);

struct NumaTopology {
  // constexpr so a process-wide instance can be constinit.
  constexpr NumaTopology() : cpu_node{} {
    for (int16_t& n : cpu_node) n = -1;
  }

  int num_cpus = 0;                    // entries of cpu_node in use (possible CPUs)
  int num_nodes = 0;                   // highest node id seen + 1
  int16_t cpu_node[kMaxTopologyCpus];  // node of each CPU, -1 when unknown
  uint64_t nodes_online = 0;           // nodes present
  uint64_t nodes_with_memory = 0;      // sysfs has_memory, else online
  uint64_t mems_allowed = ~0ull;       // cpuset's Mems_allowed (/proc/self/status)
  uint64_t cpus_allowed[kMaxTopologyCpus / 64] = {};  // sched_getaffinity
  uint64_t nodes_of_allowed_cpus = 0;
  MemPolicy policy = MemPolicy::kDefault;  // task policy, get_mempolicy(..., 0, 0)
  uint64_t policy_nodes = 0;
  bool injected = false;  // built from a spec, not the machine

  bool AllowsCpu(int cpu) const;
  int NodeOfCpu(int cpu) const;  // -1 if unknown or out of range
};

// Reads the machine from `node_dir` (normally "/sys/devices/system/node";
// tests pass a fake tree): node_dir/online, node_dir/has_memory (optional,
// else = online), node_dir/nodeN/cpulist. Without `online`, nodeN/cpulist for
// N < kMaxNumaNodes are probed. Fills cpu_node, nodes_online,
// nodes_with_memory, num_nodes and num_cpus (highest CPU in any cpulist + 1,
// at least the highest sched_getaffinity CPU + 1). Node ids >= kMaxNumaNodes
// and CPU ids >= kMaxTopologyCpus are ignored. Missing directory (kernel
// without NUMA): one node 0 holding every CPU in
// /sys/devices/system/cpu/possible (or the affinity set). Resets *out first;
// false only if nothing could be read at all.
bool ReadNumaTopology(const char* node_dir, NumaTopology* out);

// Fills the process part: cpus_allowed (sched_getaffinity) and
// nodes_of_allowed_cpus (from cpu_node, so call after ReadNumaTopology or
// ParseNumaTopologySpec), mems_allowed (/proc/self/status "Mems_allowed:",
// low 64 bits; get_mempolicy(MPOL_F_MEMS_ALLOWED) if /proc is unreadable)
// and the calling thread's task policy (get_mempolicy with no address).
// For an injected topology only the affinity is real (CPU ids are the real
// ones sched_getcpu returns); its nodes are fictional, so mems_allowed and
// the policy keep the spec's values.
void ReadProcessNumaState(NumaTopology* out);

// Injected topology for tests and JSMALLOC_NUMA_TOPOLOGY: ';'-separated
// cpulists, entry i = CPUs of node i. "0;1" = node 0 has CPU 0, node 1 has
// CPU 1; "0-1;" = node 1 has memory but no CPU. Sets injected, nodes_online =
// nodes_with_memory = mems_allowed = every listed node, cpus_allowed = every
// listed CPU, policy default. False (and *out reset) on a malformed spec, no
// CPU at all, a CPU in two nodes, a CPU >= kMaxTopologyCpus, or more than
// kMaxNumaNodes nodes.
bool ParseNumaTopologySpec(const char* spec, NumaTopology* out);

// mbind(addr, len, mode, nodes, flags 0): kPreferred (lowest node of
// `nodes`), kBind, kInterleave, kPreferredMany, kWeightedInterleave need
// nodes != 0; kDefault and kLocal need nodes == 0. Pages already present do
// not move. Returns 0 or the errno (EINVAL for a bad mode/mask, a node not
// online or not allowed, or an unaligned addr).
int BindMemory(void* addr, size_t len, MemPolicy mode, uint64_t nodes);

// Highest possible CPU number + 1 (/sys/devices/system/cpu/possible; the
// configured CPU count if unreadable). Read once and cached.
int PossibleCpuCount();

// The CPU the caller runs on (sched_getcpu), -1 on failure.
int CurrentCpuSlow();

// ---------------------------------------------------------------------------
// rseq / per-CPU: registration of the restartable sequences the per-CPU
// caches run in. The critical sections themselves, the slab layout they
// work on and RseqCurrentCpuInline are inline in os/linux/rseq.h.

enum class RseqMode : int {
  kUnavailable = 0,  // kernel refused, or not x86-64: use per-thread caches
  kGlibc = 1,        // glibc's registration
  kOwn = 2,          // our own registration, made per thread on first use
  // Not registered with the kernel: every thread reads CPU 0 and nothing
  // restarts a preempted critical section. Only for counting the per-CPU
  // fast path's instructions under valgrind, which refuses rseq (and runs
  // one thread at a time); enabled by JSMALLOC_RSEQ_SIMULATE=1 and only
  // when the process runs under valgrind, and only in the library built for
  // that (libjsmalloc_rseq_sim.so: JSMALLOC_RSEQ_SIMULATION). Unsafe anywhere
  // else; the production libraries never enter it.
  kSimulated = 3,
};

// Decides the mode once per process (idempotent, thread-safe).
RseqMode RseqInit();
RseqMode CurrentRseqMode();
// In kOwn mode, registers the calling thread if it is not yet; returns true
// when the calling thread has a usable registration.
bool RseqEnsureThreadRegistered();
// The CPU the calling thread runs on according to its rseq area; negative
// when the thread has no registration.
int RseqCurrentCpu();
// Restarts any critical section running on `cpu` (membarrier with
// MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ). False if the kernel cannot.
bool RseqFenceCpu(int cpu);
bool RseqFenceAvailable();
// Why rseq is unavailable, for the stats report ("" when available).
const char* RseqUnavailableReason();

// ---------------------------------------------------------------------------
// Futex: lets locks sleep instead of spinning when the owner was preempted
// (2 cores, many threads: spinning would burn the owner's CPU).

// Sleeps while *word == expected (spurious wake-ups possible).
void FutexWait(std::atomic<int32_t>* word, int32_t expected);
// Wakes up to `count` sleepers on word.
void FutexWake(std::atomic<int32_t>* word, int32_t count);
// Gives up the CPU once.
void Yield();

// ---------------------------------------------------------------------------
// Clocks: MonotonicNanosCoarse (policies: cache resizing, release rates),
// MonotonicNanos (measuring short durations) and SleepNanos (the background
// thread's period), inline in os/linux/clock.h (vDSO, no system call).

// ---------------------------------------------------------------------------
// Small files and process info: reading files without allocating or mapping
// them (the unwinder's call frame information), writing reports, and facts
// about this process for reports and settings.

// open(path, O_RDONLY | O_CLOEXEC), retried on EINTR; -1 if it fails. Not a
// cancellation point (nor are ReadAt and CloseFile): a thread cancelled
// inside malloc would unwind through its noexcept frame.
int OpenForReading(const char* path);
// Reads exactly n bytes at `offset` (pread, retried on EINTR and short
// reads); false on an error or at the end of the file. A pread leaves the
// data in the page cache only, where a first touch of a mapped file page
// would map the 64 KiB around it into the process's RSS.
bool ReadAt(int fd, uint64_t offset, void* buf, size_t n);
void CloseFile(int fd);
// True when path exists and is not a regular file (a device such as
// /dev/null, a FIFO, a socket): writers must write through it, not replace
// it by renaming a new file onto it.
bool IsSpecialFile(const char* path);

// Async-signal-safe write of raw bytes to stderr.
void WriteStderr(const char* data, size_t len);
// Appends bytes to a file (created 0644 if missing); false on error.
bool AppendToFile(const char* path, const char* data, size_t len);

int ProcessId();
// The base name of argv[0] (from /proc/self/cmdline), NUL-terminated and cut
// to len - 1 bytes; "?" when it cannot be read. Copies into out[len].
void ProgramName(char* out, size_t len);
// The current working directory into out[len]; false if it does not fit or
// cannot be read.
bool CurrentDirectory(char* out, size_t len);
// The process environment ("NAME=value" strings, NULL-terminated), read
// directly so that it works before main.
char* const* Environment();
// Installs `handler` for signal `sig` (SA_RESTART, nothing masked). False if
// the kernel refuses.
bool InstallSignalHandler(int sig, void (*handler)(int));

// ---------------------------------------------------------------------------
// Helper threads: the allocator's own threads (the background thread, the
// report thread), detached, with every signal blocked so that none meant for
// the program is delivered to them, and named so that they show in ps.

// Starts fn(nullptr) on a new thread named `name` (at most 15 characters);
// stack_bytes 0 keeps the default size. False if the thread could not start.
bool StartHelperThread(void* (*fn)(void*), const char* name, size_t stack_bytes);

// ---------------------------------------------------------------------------
// Madvise batching via io_uring: the background thread's releases go to the
// kernel up to kMaxBatch ranges per submission (IORING_OP_MADVISE) instead of
// one system call each, with plain madvise where io_uring is not allowed
// (kernel.io_uring_disabled, seccomp, old kernels). Not thread-safe: its
// user (SystemPageSource) serialises the calls.
//
// Flush returns only once the kernel has done every range it was given:
// its caller hands the memory out again right after. A signal that
// interrupts the wait is resumed from, never taken as the end of the batch.
class MadviseBatcher {
 public:
  enum class Mode { kIoUring, kDirect };
  static constexpr int kMaxBatch = 64;  // a request's index fits in the low 8 bits of its user data

  constexpr MadviseBatcher() = default;

  // advice: MADV_DONTNEED or MADV_FREE. allow_io_uring=false forces plain
  // madvise. liburing's probe allocates: call this outside allocator locks.
  bool Init(int advice, bool allow_io_uring);
  Mode mode() const { return mode_; }
  const char* fallback_reason() const { return reason_; }

  void Add(void* p, size_t bytes);
  // Submits everything queued and waits; returns bytes advised successfully.
  size_t Flush();
  void Shutdown();

  size_t batches() const { return batches_; }
  size_t ranges() const { return ranges_; }
  size_t failures() const { return failures_; }
  size_t syscalls() const { return syscalls_; }
  // Waits for completions that a signal interrupted (and that were resumed).
  size_t interrupted_waits() const { return interrupted_waits_; }

  // Tests: make the next Init fail to set up io_uring with this errno.
  static void FailNextSetupForTest(int err) { fail_setup_errno_ = err; }

 private:
  size_t FlushDirect(int from);
  size_t FlushIoUring();
  int SubmitAll();
  void StopRing(const char* reason);  // never enters the ring again; direct madvise from now on
  struct ::io_uring* Ring();

  struct Range {
    void* p;
    size_t bytes;
  };
  Mode mode_ = Mode::kDirect;
  const char* reason_ = "not initialised";
  int advice_ = 0;
  bool ring_ready_ = false;
  // liburing's struct io_uring, kept opaque so that no layer above sees
  // liburing.h (madvise_batcher.cc checks that it fits).
  alignas(8) unsigned char ring_storage_[256] = {};
  Range pending_[kMaxBatch] = {};
  int count_ = 0;
  uint64_t batch_tag_ = 0;  // the batch a completion belongs to (user data above the index)
  size_t batches_ = 0, ranges_ = 0, failures_ = 0, syscalls_ = 0, interrupted_waits_ = 0;
  static inline int fail_setup_errno_ = 0;
};

// ---------------------------------------------------------------------------
// Guard pages: page protection and fault handling for guarded sampling
// (runtime/guarded_pool.h, docs/reliability.md): mprotect, the SIGSEGV/SIGBUS
// handler, and asking the dynamic loader about code addresses. What the
// fault handler calls is async-signal-safe except dladdr (see DescribePc).

// Reserves `bytes` (a multiple of the system page) of address space that is
// inaccessible (PROT_NONE, MAP_NORESERVE: no memory is committed), named
// "[anon:jsmalloc-guarded]" in /proc/PID/maps where the kernel allows.
// nullptr when the kernel refuses.
void* ReserveInaccessible(size_t bytes);

// Makes [p, p+bytes) readable and writable (page-aligned range inside a
// reservation). Fresh pages read as zeros. False if the kernel refused.
bool MakeAccessible(void* p, size_t bytes);

// Makes [p, p+bytes) inaccessible again and gives its memory back: the range
// is replaced by a fresh PROT_NONE mapping (one mmap(MAP_FIXED) instead of
// mprotect + madvise), so a later access faults and nothing stays resident.
bool MakeInaccessible(void* p, size_t bytes);

// What the fault handler learnt about an access.
enum class FaultAccess { kUnknown, kRead, kWrite };

// Called on SIGSEGV/SIGBUS with the faulting address. Returns false if the
// fault is not its business: the handler then chains to the handler that
// was installed before (or to the default action, which re-faults and kills
// the process as it would have without us). Returns true only after
// handling it (the guarded pool reports and aborts, so it does not return).
using FaultCallback = bool (*)(uintptr_t addr, FaultAccess access);

// Installs the handler for SIGSEGV and SIGBUS (SA_SIGINFO | SA_ONSTACK),
// remembering the previous handlers. Once per process; later calls return
// the first result. False if sigaction failed.
bool InstallFaultHandler(FaultCallback callback);

// The calling thread's kernel thread id (gettid).
int CurrentThreadId();

// Where a code address lies, from dladdr: the module's path and load base,
// and the nearest exported symbol at or below the address (nullptr if none,
// e.g. a static function or an executable linked without -rdynamic). dladdr
// takes the loader's lock but does not allocate. False if no module holds pc.
struct PcInfo {
  const char* module;
  uintptr_t module_base;
  const char* symbol;
  uintptr_t symbol_addr;
};
bool DescribePc(uintptr_t pc, PcInfo* out);

// Sleeps forever (a thread that faulted while another one is reporting waits
// for the abort).
[[noreturn]] void SleepForever();

// ---------------------------------------------------------------------------
// Fatal errors and randomness: ending the process on detected heap misuse,
// and the per-process random bits the hardened free lists are keyed with.

// Writes "jsmalloc: <msg> <ptr>\n" to stderr and aborts. Used for detected
// heap misuse; never returns.
[[noreturn]] void FatalError(const char* msg, const void* ptr);
// abort(): for callers that wrote their own message first.
[[noreturn]] void Abort();

// 64 bits of the 16 random bytes the kernel gives every process at exec
// (AT_RANDOM), or 0 if there are none. No system call.
unsigned long long KernelRandom64();

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_OS_H_
