// Lock words kept apart from what they guard, in memory that a child made
// by fork() gets zeroed instead of sharing copy-on-write (os::MapWipeOnFork).
//
// Why: the fork handlers hold every allocator lock across fork() and release
// them after it. A lock word on a page shared with the child makes that
// release a copy-on-write fault, and with other threads running it is also a
// TLB shootdown: 23 us per page on a 2-CPU VM against 3 us single-threaded.
// The central lists' and transfer caches' locks alone sat on 9 pages, and
// the parent's release took 300-500 us of its fork() pause. Here they take
// no fault in the parent, and the child finds them all free (zero), which is
// what it would reset them to.
#ifndef JSMALLOC_BASE_LOCK_TABLE_H_
#define JSMALLOC_BASE_LOCK_TABLE_H_

#include <cstddef>

#include "base/spinlock.h"

namespace jsmalloc {

// One lock per cache line: the locks of different size classes are taken by
// different CPUs at once, and sharing a line would make them contend.
struct alignas(64) PaddedSpinLock {
  SpinLock lock;
};

struct LockTableStats {
  size_t locks = 0;   // handed out
  size_t bytes = 0;   // mapped
  bool wiped = true;  // every chunk is wiped in a forked child (false: shared as usual)
};

// A component's lock: its own until the process-wide set-up moves it into
// the table with MoveTo (before the component's first use). Reads as the
// SpinLock* in use.
class MovableLock {
 public:
  MovableLock() = default;
  MovableLock(const MovableLock&) = delete;
  MovableLock& operator=(const MovableLock&) = delete;
  void MoveTo(SpinLock* lock) { lock_ = lock; }
  operator SpinLock*() const { return lock_; }
  SpinLock* operator->() const { return lock_; }

 private:
  SpinLock own_;
  SpinLock* lock_ = &own_;
};

class LockTable {
 public:
  // n free locks; nullptr when the kernel refuses the memory (the caller
  // keeps its own lock). Safe before main; never freed.
  static PaddedSpinLock* Allocate(int n);
  static LockTableStats Stats();
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_LOCK_TABLE_H_
