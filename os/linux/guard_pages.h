// Page protection and fault handling for guarded sampling
// (runtime/guarded_pool.h, docs/reliability.md): the only place that
// calls mprotect, installs the SIGSEGV/SIGBUS handler and asks the dynamic
// loader about code addresses. Everything here is allocation-free; what the
// fault handler calls is async-signal-safe except dladdr (see DescribePc).
#ifndef JSMALLOC_OS_LINUX_GUARD_PAGES_H_
#define JSMALLOC_OS_LINUX_GUARD_PAGES_H_

#include <cstddef>
#include <cstdint>

namespace jsmalloc::os {

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

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_GUARD_PAGES_H_
