#include "runtime/numa_partitions.h"

namespace jsmalloc {

const char* NumaBindName(NumaBind b) {
  switch (b) {
    case NumaBind::kNone: return "none";
    case NumaBind::kPreferred: return "preferred";
    case NumaBind::kStrict: return "strict";
  }
  return "?";
}

namespace {

int LowestNode(uint64_t mask) { return mask == 0 ? -1 : __builtin_ctzll(mask); }

}  // namespace

void PlanNumaPartitions(const os::NumaTopology& topo, bool aware, NumaBind bind, NumaPlan* out) {
  *out = NumaPlan();
  out->aware = aware;
  out->num_cpus = topo.num_cpus < os::kMaxTopologyCpus ? topo.num_cpus : os::kMaxTopologyCpus;
  out->partition_nodes[0] = 1;
  if (!aware) return;

  // A partition per node that has CPUs this process may run on: a node the
  // process cannot run on would never allocate, and memory-only nodes are
  // left to the kernel's fallback.
  uint64_t nodes = topo.nodes_of_allowed_cpus;
  if (nodes == 0) nodes = topo.nodes_online != 0 ? topo.nodes_online : 1;
  int rank_of[os::kMaxNumaNodes];
  int n = 0;
  for (int node = 0; node < os::kMaxNumaNodes; ++node) {
    rank_of[node] = -1;
    if ((nodes >> node) & 1) rank_of[node] = n++;
  }
  out->partitions = n < kMaxNumaPartitions ? n : kMaxNumaPartitions;
  for (int p = 0; p < kMaxNumaPartitions; ++p) out->partition_nodes[p] = 0;
  for (int node = 0; node < os::kMaxNumaNodes; ++node) {
    if (rank_of[node] >= 0) out->partition_nodes[rank_of[node] % kMaxNumaPartitions] |= uint64_t{1} << node;
  }
  for (int p = 0; p < out->partitions; ++p) out->partition_node[p] = LowestNode(out->partition_nodes[p]);
  for (int cpu = 0; cpu < out->num_cpus; ++cpu) {
    int node = topo.NodeOfCpu(cpu);
    int rank = node >= 0 && node < os::kMaxNumaNodes ? rank_of[node] : -1;
    out->cpu_partition[cpu] = static_cast<uint8_t>(rank >= 0 ? rank % kMaxNumaPartitions : 0);
  }

  // Placement. Never fight what the process asked for: an injected topology
  // has no real nodes to bind to; a process policy other than bind (numactl
  // --interleave, --preferred) is left to the kernel; under bind (--membind)
  // a partition binds within the process's nodes or not at all.
  if (topo.injected) {
    out->placement = "injected topology: no mbind (its nodes are not the machine's)";
    return;
  }
  uint64_t usable = topo.nodes_with_memory & topo.mems_allowed;
  switch (topo.policy) {
    case os::MemPolicy::kDefault:
    case os::MemPolicy::kLocal:
      if (bind == NumaBind::kNone) {
        out->placement = "no mbind (JSMALLOC_NUMA_BIND=none): first-touch placement";
        return;
      }
      out->placement = bind == NumaBind::kStrict ? "each partition bound (MPOL_BIND) to its nodes"
                                                 : "each partition prefers its nodes (MPOL_PREFERRED)";
      break;
    case os::MemPolicy::kBind:
      usable &= topo.policy_nodes;
      out->placement = "process policy bind: each partition bound within the policy's nodes";
      bind = NumaBind::kStrict;
      break;
    default:
      out->placement = "process memory policy kept: no mbind";
      return;
  }
  for (int p = 0; p < out->partitions; ++p) {
    uint64_t target = out->partition_nodes[p] & usable;
    if (target == 0) continue;  // the kernel's fallback decides
    out->place_nodes[p] = target;
    if (bind == NumaBind::kStrict) {
      out->place_mode[p] = os::MemPolicy::kBind;
    } else {
      out->place_mode[p] = (target & (target - 1)) == 0 ? os::MemPolicy::kPreferred
                                                        : os::MemPolicy::kPreferredMany;
    }
  }
}

}  // namespace jsmalloc
