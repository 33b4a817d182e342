// NUMA: the machine's nodes and which CPUs belong to them (sysfs), what this
// process may use (affinity, cpuset, memory policy), and per-range memory
// policy (mbind, get_mempolicy, move_pages). Allocation-free: fixed buffers,
// raw file descriptors and raw system calls, no libnuma, so it can run inside
// malloc and before main.
#ifndef JSMALLOC_OS_LINUX_NUMA_H_
#define JSMALLOC_OS_LINUX_NUMA_H_

#include <cstddef>
#include <cstdint>

namespace jsmalloc::os {

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

// get_mempolicy(MPOL_F_ADDR) for one address: the policy governing its VMA
// (kDefault with nodes 0 when the VMA has none). False on error (EFAULT: not
// mapped).
bool AddressPolicy(const void* addr, MemPolicy* mode, uint64_t* nodes);

// Node holding the (touched) page at addr, via move_pages(0, 1, &page,
// nullptr, status, 0); the negative errno from status when the page is not
// present (-ENOENT, -EFAULT), or -errno if the call fails.
int NodeOfPage(const void* addr);

// Highest possible CPU number + 1 (/sys/devices/system/cpu/possible; the
// configured CPU count if unreadable). Read once and cached.
int PossibleCpuCount();

// The CPU the caller runs on (sched_getcpu), -1 on failure.
int CurrentCpuSlow();

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_NUMA_H_
