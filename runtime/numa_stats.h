// NUMA partitions in the stats: what topology and process policy were
// detected, how memory is placed, and each partition's bytes and coverage.
#ifndef JSMALLOC_RUNTIME_NUMA_STATS_H_
#define JSMALLOC_RUNTIME_NUMA_STATS_H_

#include <cstddef>

#include "base/internal_printer.h"

namespace jsmalloc {

struct NumaPartitionStats {
  uint64_t nodes = 0;          // nodes whose CPUs use the partition
  size_t cpus = 0;             // CPUs mapped to it
  size_t heap_bytes = 0;       // address space its back-end obtained
  size_t in_use_bytes = 0;     // pages held by spans in use (objects and caches)
  size_t free_bytes = 0;       // free and backed: back-end + central + transfer
  size_t released_bytes = 0;   // free and given back to the OS
  size_t bound_bytes = 0;      // mapped with the partition's mbind
  size_t bind_failures = 0;
  size_t remote_frees = 0;     // objects freed home from another node's CPU
  size_t rehomed = 0;          // objects a central list passed on to their home
};

NumaPartitionStats GetNumaPartitionStats(int partition);
void PrintNumaSection(Printer* out);
// "jsmalloc.numa.*" properties (runtime/stats.cc lists them).
bool GetNumaProperty(const char* name, size_t* value);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_NUMA_STATS_H_
