// Reports asked for by a signal (JSMALLOC_STATS_SIGNAL,
// JSMALLOC_HEAP_PROFILE_SIGNAL) are written by a thread of their own: the
// handler only records the request and wakes it. Writing in the handler could
// deadlock on a lock the interrupted thread holds, and writing on the next
// allocating thread would put a file write on a latency-critical path.
#ifndef JSMALLOC_RUNTIME_REPORT_THREAD_H_
#define JSMALLOC_RUNTIME_REPORT_THREAD_H_

#include <cstdint>

namespace jsmalloc {

// Installs the handlers and starts the thread when a signal is configured.
// Called once the allocator is ready, outside its locks.
void StartReportThreadIfConfigured();

// fork() keeps only the calling thread: the child starts its own.
void ReportThreadAfterForkChild();

// Reports written so far on a signal (stats, heap profiles).
uint64_t SignalStatsReports();
uint64_t SignalHeapProfiles();

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_REPORT_THREAD_H_
