// The Linux implementation's own helpers for memory and the environment,
// used inside os/linux/ (the layer's interface is os/os.h).
#ifndef JSMALLOC_OS_LINUX_OS_MEMORY_H_
#define JSMALLOC_OS_LINUX_OS_MEMORY_H_

#include <cstddef>
#include <cstdint>

#include "os/os.h"

namespace jsmalloc::os {

// Names [p, p+bytes) "[anon:<name>]" in /proc/PID/maps and smaps
// (prctl PR_SET_VMA_ANON_NAME), so that tools (scripts/jsmalloc-hugepages)
// can tell the allocator's memory from the rest. Does nothing once the
// kernel has refused (no CONFIG_ANON_VMA_NAME). The heap's mappings are
// "jsmalloc", the guarded pool's "jsmalloc-guarded".
void NameMapping(void* p, size_t bytes, const char* name);

// Returns a value of the named environment variable, or nullptr. Safe before
// main and inside malloc (reads environ directly).
const char* GetEnv(const char* name);

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_OS_MEMORY_H_
