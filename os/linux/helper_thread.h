// The allocator's own threads (the background thread, the report thread):
// detached, with every signal blocked so that none meant for the program is
// delivered to them, and named so that they show in ps and /proc.
#ifndef JSMALLOC_OS_LINUX_HELPER_THREAD_H_
#define JSMALLOC_OS_LINUX_HELPER_THREAD_H_

#include <cstddef>

namespace jsmalloc::os {

// Starts fn(nullptr) on a new thread named `name` (at most 15 characters);
// stack_bytes 0 keeps the default size. False if the thread could not start.
bool StartHelperThread(void* (*fn)(void*), const char* name, size_t stack_bytes);

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_HELPER_THREAD_H_
