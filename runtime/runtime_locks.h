// The runtime's process-wide locks that fork() holds (runtime/fork_locks.cc),
// on one page of their own. After fork, releasing a lock in the parent is a
// copy-on-write fault on the page it sits on, and with other threads
// running also a TLB shootdown (23 us a page on a 2-CPU VM): scattered over
// the data of their files, these six cost up to six faults of the parent's
// fork() pause; together, one. (The per-list locks are in base/lock_table.h,
// which a child gets zeroed and which costs the parent no fault at all; these
// are needed before that table exists.)
#ifndef JSMALLOC_RUNTIME_RUNTIME_LOCKS_H_
#define JSMALLOC_RUNTIME_RUNTIME_LOCKS_H_

#include "base/lock_table.h"

namespace jsmalloc {

struct alignas(4096) RuntimeLocks {
  PaddedSpinLock init;      // Static::Init
  PaddedSpinLock report;    // the stats report's scratch
  PaddedSpinLock coverage;  // the hugepage-coverage scratch
  PaddedSpinLock sampler;   // the sampled-allocation records
  PaddedSpinLock unwinder;  // the unwinder's rule cache
  PaddedSpinLock guarded;   // the guarded-sampling pool
};

extern RuntimeLocks g_runtime_locks;

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_RUNTIME_LOCKS_H_
