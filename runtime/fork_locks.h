// Every allocator lock, in the one order any path may nest them, as a table
// that the fork handlers walk: take them all, first to last, before fork();
// release (parent) or reset (child) them last to first after it. A lock
// missing from the table would be inherited held by the child of a fork made
// while another thread held it, and the child would hang on it.
#ifndef JSMALLOC_RUNTIME_FORK_LOCKS_H_
#define JSMALLOC_RUNTIME_FORK_LOCKS_H_

namespace jsmalloc {

struct ForkLock {
  const char* name;  // as docs/design.md lists it
  void (*lock)();
  // child: reset to unlocked (the thread that took it does not exist there).
  void (*unlock)(bool child);
};

int ForkLockCount();
const ForkLock& ForkLockAt(int i);

// The whole table (the allocator must be initialized).
void LockAllForFork();
void UnlockAllAfterFork(bool child);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_FORK_LOCKS_H_
