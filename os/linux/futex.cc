#include "os/os.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace jsmalloc::os {

void FutexWait(std::atomic<int32_t>* word, int32_t expected) {
  int saved_errno = errno;
  syscall(SYS_futex, reinterpret_cast<int32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
  errno = saved_errno;
}

void FutexWake(std::atomic<int32_t>* word, int32_t count) {
  int saved_errno = errno;
  syscall(SYS_futex, reinterpret_cast<int32_t*>(word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr,
          0);
  errno = saved_errno;
}

void Yield() { sched_yield(); }

}  // namespace jsmalloc::os
