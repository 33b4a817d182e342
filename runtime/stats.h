// Numbers about the heap, gathered from every component, and the text report.
#ifndef JSMALLOC_RUNTIME_STATS_H_
#define JSMALLOC_RUNTIME_STATS_H_

#include <cstddef>

#include "base/internal_printer.h"
#include "base/spinlock.h"

namespace jsmalloc {

struct Summary {
  size_t system_bytes;         // address space the back-end obtained
  size_t in_use_pages_bytes;   // pages held by spans in use
  size_t backend_free_bytes;   // free in the back-end, still backed
  size_t unmapped_bytes;       // free in the back-end, released to the OS
  size_t central_free_bytes;
  size_t transfer_free_bytes;
  size_t thread_cache_bytes;
  size_t cpu_cache_bytes;
  size_t metadata_bytes;
  size_t allocated_bytes;      // in use by the application
  size_t physical_bytes;       // system - unmapped + metadata
  size_t virtual_bytes;        // system + metadata
  size_t spans_in_use;
  size_t thread_caches;
};

Summary GetSummary();

// The locks the report paths hold while they take every other lock: the
// text report and the hugepage coverage scratch (malloc_info formats into
// blocks of its own and holds none). fork() takes them first
// (Static::PrepareFork).
extern SpinLock& report_lock;
extern SpinLock& coverage_lock;
// Writes the full report; returns the length it needs.
size_t WriteStatsReport(char* buf, size_t len);
void PrintStatsReport(Printer* out);
// The report's first line (library, version, front-end, back-end, page size).
void PrintBanner(Printer* out);
bool GetNumericProperty(const char* name, size_t* value);
// Every name GetNumericProperty knows, in report order: stores up to `max`
// of them in out[] and returns how many there are.
size_t PropertyNames(const char** out, size_t max);
// Writes the report to stderr (at exit, malloc_stats).
void DumpStatsToStderr();
// Appends the report to a file (JSMALLOC_STATS_ON_EXIT=/path).
void DumpStatsToFile(const char* path);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_STATS_H_
