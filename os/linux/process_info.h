// Facts about this process that reports and settings need: its id, its
// program name, its working directory, its environment, and signal handlers.
// All of it without allocating (safe before main and inside malloc).
#ifndef JSMALLOC_OS_LINUX_PROCESS_INFO_H_
#define JSMALLOC_OS_LINUX_PROCESS_INFO_H_

#include <cstddef>

namespace jsmalloc::os {

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

// 64 bits of the 16 random bytes the kernel gives every process at exec
// (AT_RANDOM), or 0 if there are none. No system call.
unsigned long long KernelRandom64();

// Installs `handler` for signal `sig` (SA_RESTART, nothing masked). False if
// the kernel refuses.
bool InstallSignalHandler(int sig, void (*handler)(int));

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_PROCESS_INFO_H_
