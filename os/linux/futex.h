// Futex wait/wake, so that locks can sleep instead of spinning when the owner
// was preempted (2 cores, many threads: spinning would burn the owner's CPU).
#ifndef JSMALLOC_OS_LINUX_FUTEX_H_
#define JSMALLOC_OS_LINUX_FUTEX_H_

#include <atomic>
#include <cstdint>

namespace jsmalloc::os {

// Sleeps while *word == expected (spurious wake-ups possible).
void FutexWait(std::atomic<int32_t>* word, int32_t expected);
// Wakes up to `count` sleepers on word.
void FutexWake(std::atomic<int32_t>* word, int32_t count);
// Gives up the CPU once.
void Yield();

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_FUTEX_H_
