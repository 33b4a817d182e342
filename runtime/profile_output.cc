#include "runtime/profile_output.h"

#include <errno.h>
#include <unistd.h>

#include <atomic>

#include "os/os.h"
#include "base/env_options.h"
#include "base/internal_printer.h"
#include "runtime/heap_profile.h"
#include "runtime/sample_records.h"
#include "runtime/sampler.h"
#include "runtime/static_vars.h"

namespace jsmalloc {

namespace {

constinit std::atomic<uint64_t> g_signal_dumps{0};
constinit pid_t g_init_pid = 0;

void WriteErrLine(const char* what, const char* path) {
  char buf[512];
  Printer p(buf, sizeof(buf));
  p.Str("jsmalloc: ").Str(what).Str(path).Char('\n');
  os::WriteStderr(p.data(), p.written());
}

bool DumpRecords(const char* path, bool peak) {
  Static::InitIfNeeded();
  InSampler guard;
  ProfileTable table;
  if (!CollectSampledProfile(&table, peak)) return false;
  return WriteHeapProfile(path, table, ProfileHeaderInterval());
}

}  // namespace

void InitProfileOutput() { g_init_pid = getpid(); }

bool DumpHeapProfile(const char* path) { return DumpRecords(path, /*peak=*/false); }

bool DumpPeakHeapProfile(const char* path) { return DumpRecords(path, /*peak=*/true); }

bool StartAllocationProfile() {
  Static::InitIfNeeded();
  return StartRecordingSamples();
}

bool StopAllocationProfile(const char* path) {
  Static::InitIfNeeded();
  InSampler guard;
  ProfileTable table;
  size_t interval;
  if (!StopRecordingSamples(&table, &interval)) return false;
  return WriteHeapProfile(path, table, interval);
}

void HeapProfileAtExit() {
  if (!Static::inited() || !SampleRecordsReady()) return;
  const char* path = Static::options().heap_profile_on_exit;
  if (path[0] == '\0') return;
  int saved = errno;
  char buf[sizeof(Static::options().heap_profile_on_exit) + 32];
  if (getpid() != g_init_pid) {
    // A forked child: its own file next to the parent's.
    Printer p(buf, sizeof(buf));
    p.Str(path).Char('.').U(static_cast<uint64_t>(getpid()));
    path = buf;
  }
  if (!DumpHeapProfile(path)) WriteErrLine("could not write the heap profile at exit to ", path);
  errno = saved;
}

void DumpHeapProfileOnSignal() {
  if (!SampleRecordsReady()) return;
  int saved = errno;
  InSampler guard;
  const Options& o = Static::options();
  char path[sizeof(o.heap_profile_prefix) + 64];
  Printer p(path, sizeof(path));
  p.Str(o.heap_profile_prefix[0] != '\0' ? o.heap_profile_prefix : "/tmp/jsmalloc")
      .Char('.').U(static_cast<uint64_t>(getpid())).Char('.')
      .U(g_signal_dumps.fetch_add(1, std::memory_order_relaxed) + 1).Str(".heap");
  if (DumpHeapProfile(path)) WriteErrLine("heap profile written to ", path);
  else WriteErrLine("could not write heap profile ", path);
  errno = saved;
}

}  // namespace jsmalloc
