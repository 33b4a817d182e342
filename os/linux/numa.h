// NUMA: per-address queries that only the OS layer's unit tests use (the
// interface is the "NUMA topology and placement" group of os/os.h; the text
// parsers are in numa_parse.h). Allocation-free raw system calls.
#ifndef JSMALLOC_OS_LINUX_NUMA_H_
#define JSMALLOC_OS_LINUX_NUMA_H_

#include <cstddef>
#include <cstdint>

#include "os/os.h"

namespace jsmalloc::os {

// get_mempolicy(MPOL_F_ADDR) for one address: the policy governing its VMA
// (kDefault with nodes 0 when the VMA has none). False on error (EFAULT: not
// mapped).
bool AddressPolicy(const void* addr, MemPolicy* mode, uint64_t* nodes);

// Node holding the (touched) page at addr, via move_pages(0, 1, &page,
// nullptr, status, 0); the negative errno from status when the page is not
// present (-ENOENT, -EFAULT), or -errno if the call fails.
int NodeOfPage(const void* addr);

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_NUMA_H_
