// NUMA text parsing, apart from the system calls (numa.cc): sysfs CPU and
// node lists, /proc/self/status masks, the injected topology spec, and the
// kernel's mempolicy modes. Pure functions over caller-owned buffers: no
// file is opened here and nothing allocates, so unit tests drive them with
// strings.
#ifndef JSMALLOC_OS_LINUX_NUMA_PARSE_H_
#define JSMALLOC_OS_LINUX_NUMA_PARSE_H_

#include <cstddef>
#include <cstdint>

#include "os/os.h"

namespace jsmalloc::os {

// Parses a Linux cpulist/nodelist ("0-3,8,10-11", trailing newline allowed;
// empty means no bits) into a bitmap of `bits` bits; `out` must hold
// (bits+63)/64 words and is zeroed first. False on malformed input or a value
// >= bits.
bool ParseCpuList(const char* s, size_t len, uint64_t* out, int bits);

// The same, leniently, for the machine's own files: values >= bits are
// dropped (a 2048-CPU box still maps its first 1024).
bool ParseSysfsCpuList(const char* s, size_t len, uint64_t* out, int bits);

// The highest number in a cpulist into *highest (-1 for an empty list),
// with no upper bound. False on malformed input.
bool ParseCpuListHighest(const char* s, size_t len, int* highest);

// The length of the complete entries of a list cut short by a full buffer:
// up to (not including) its last ','; 0 if there is none.
size_t WholeListEntries(const char* s, size_t len);

// Parses a /proc/PID/status mask ("00000000,00000003", comma-separated 32-bit
// hex words, most significant first, trailing newline allowed) into its low
// 64 bits. False on malformed input.
bool ParseStatusHexMask(const char* s, size_t len, uint64_t* low64);

// One line of /proc/PID/status (without its newline): true, with the mask's
// low 64 bits in *mems, if it is a well-formed "Mems_allowed:" line.
bool ParseMemsAllowedLine(const char* line, size_t len, uint64_t* mems);

// A mode as get_mempolicy returns it (MPOL_F_* mode flags ORed in) as a
// MemPolicy; kUnknown for a mode this code does not know.
MemPolicy MemPolicyFromKernel(int mode);

// Assigns the CPUs of a kMaxTopologyCpus-bit map to `node` where they have no
// node yet; returns the highest CPU in the map, -1 if it is empty.
int AssignCpusToNode(NumaTopology* t, int node, const uint64_t* cpus);

// The nodes of the CPUs in t->cpus_allowed.
uint64_t NodesOfAllowedCpus(const NumaTopology& t);

// Back to defaults in place: `*t = NumaTopology()` would put a 2.3 KiB
// temporary on the stack, and we may run on a small thread stack.
void ResetNumaTopology(NumaTopology* t);

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_NUMA_PARSE_H_
