// The only place (with futex.h) that talks to the kernel about memory. Every
// layer above asks here for address space and gives pages back through here.
#ifndef JSMALLOC_OS_LINUX_OS_MEMORY_H_
#define JSMALLOC_OS_LINUX_OS_MEMORY_H_

#include <cstddef>
#include <cstdint>

namespace jsmalloc::os {

// Maps `bytes` of fresh, zeroed, readable and writable anonymous memory whose
// start is a multiple of `alignment` (a power of two, >= the system page).
// `hint` is where we would like it (to keep the heap contiguous); the kernel
// may ignore it. Returns nullptr when the kernel refuses (ENOMEM).
void* MapAligned(size_t bytes, size_t alignment, void* hint);

// Unmaps a range obtained from MapAligned (or part of one).
void Unmap(void* ptr, size_t bytes);

// Tells the kernel the contents of [ptr, ptr+bytes) are no longer needed; the
// range stays mapped. With MADV_DONTNEED (default) it reads back as zeros at
// once; with MADV_FREE (madv_free) the kernel takes the pages only under
// memory pressure, and until then they may keep their contents. Returns false
// if refused.
bool ReleasePages(void* ptr, size_t bytes, bool madv_free = false);

// The kernel's base page size (4 KiB on x86-64).
size_t SystemPageSize();

// Async-signal-safe, allocation-free write of raw bytes to stderr.
void WriteStderr(const char* data, size_t len);
// Appends bytes to a file (created 0644 if missing); false on error.
bool AppendToFile(const char* path, const char* data, size_t len);

// Writes "jsmalloc: <msg> <ptr>\n" to stderr and aborts. Used for detected
// heap misuse; never returns.
[[noreturn]] void FatalError(const char* msg, const void* ptr);
// abort(): for callers that wrote their own message first.
[[noreturn]] void Abort();

// Names [p, p+bytes) "[anon:<name>]" in /proc/PID/maps and smaps
// (prctl PR_SET_VMA_ANON_NAME), so that tools (scripts/jsmalloc-hugepages)
// can tell the allocator's memory from the rest. Does nothing once the
// kernel has refused (no CONFIG_ANON_VMA_NAME). The heap's mappings are
// "jsmalloc", the guarded pool's "jsmalloc-guarded".
void NameMapping(void* p, size_t bytes, const char* name);

// Returns a value of the named environment variable, or nullptr. Safe before
// main and inside malloc (reads environ directly).
const char* GetEnv(const char* name);

// Resident set size of this process in bytes (from /proc/self/statm), or 0.
size_t ResidentBytes();

// Bytes of [p, p+bytes) (page-aligned) that are resident now, from mincore();
// SIZE_MAX if the kernel will not tell.
size_t ResidentBytesIn(const void* p, size_t bytes);

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_OS_MEMORY_H_
