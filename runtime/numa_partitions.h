// NUMA partitions: which CPUs share a middle-end and back-end, and where each
// partition's fresh memory is placed. A pure function of the topology (real
// or injected) and the requested mode, so tests can present any machine.
#ifndef JSMALLOC_RUNTIME_NUMA_PARTITIONS_H_
#define JSMALLOC_RUNTIME_NUMA_PARTITIONS_H_

#include <cstdint>

#include "os/os.h"

namespace jsmalloc {

// Partitions beyond this fold several nodes together (node rank modulo the
// limit); each size class then exists this many times at most.
inline constexpr int kMaxNumaPartitions = 4;

// How fresh memory of a partition is bound when the process has no policy of
// its own (JSMALLOC_NUMA_BIND).
enum class NumaBind : uint8_t { kNone = 0, kPreferred = 1, kStrict = 2 };

struct NumaPlan {
  bool aware = false;   // NUMA-aware mode requested
  int partitions = 1;   // 1 unless aware and the allowed CPUs span nodes
  int num_cpus = 0;     // entries of cpu_partition in use
  uint8_t cpu_partition[os::kMaxTopologyCpus] = {};
  // Nodes whose CPUs use the partition, and the first of them (its label).
  uint64_t partition_nodes[kMaxNumaPartitions] = {};
  int partition_node[kMaxNumaPartitions] = {};
  // The mbind applied to every mapping the partition makes; kDefault: none.
  os::MemPolicy place_mode[kMaxNumaPartitions] = {};
  uint64_t place_nodes[kMaxNumaPartitions] = {};
  // One line on the placement choice for the stats report.
  const char* placement = "NUMA-aware mode off";

  int PartitionOfCpu(int cpu) const {
    return cpu >= 0 && cpu < num_cpus ? cpu_partition[cpu] : 0;
  }
};

void PlanNumaPartitions(const os::NumaTopology& topo, bool aware, NumaBind bind, NumaPlan* out);

// "none", "preferred", "strict".
const char* NumaBindName(NumaBind b);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_NUMA_PARTITIONS_H_
