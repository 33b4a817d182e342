#include "runtime/report_thread.h"

#include <atomic>

#include "os/os.h"
#include "base/arena.h"
#include "runtime/profile_output.h"
#include "runtime/static_vars.h"
#include "runtime/stats.h"

namespace jsmalloc {

namespace {

constexpr int32_t kStatsRequest = 1;
constexpr int32_t kHeapProfileRequest = 2;

constinit std::atomic<int32_t> g_pending{0};
constinit std::atomic<bool> g_running{false};
constinit std::atomic<uint64_t> g_stats_reports{0};
constinit std::atomic<uint64_t> g_heap_profiles{0};
// The report is formatted here, made once from metadata (64 KiB holds the
// widest report), so writing it touches no heap being reported.
constinit char* g_buffer = nullptr;
constexpr size_t kBufferLen = 64 * 1024;

void OnSignal(int sig) {
  const Options& o = Static::options();
  int32_t want = 0;
  if (sig == o.stats_signal) want |= kStatsRequest;
  if (sig == o.heap_profile_signal) want |= kHeapProfileRequest;
  g_pending.fetch_or(want, std::memory_order_release);
  os::FutexWake(&g_pending, 1);  // a system call: async-signal-safe
}

void ServeStatsRequest() {
  if (g_buffer == nullptr) g_buffer = static_cast<char*>(Static::arena()->Alloc(kBufferLen, 64));
  if (g_buffer == nullptr) return;
  size_t n = WriteStatsReport(g_buffer, kBufferLen);
  if (n >= kBufferLen) n = kBufferLen - 1;
  const char* path = Static::options().stats_file;
  if (path[0] != '\0') os::AppendToFile(path, g_buffer, n);
  else os::WriteStderr(g_buffer, n);
  g_stats_reports.fetch_add(1, std::memory_order_relaxed);
}

void* ThreadMain(void*) {
  for (;;) {
    int32_t got = g_pending.exchange(0, std::memory_order_acquire);
    if (got == 0) {
      os::FutexWait(&g_pending, 0);
      continue;
    }
    if (got & kStatsRequest) ServeStatsRequest();
    if (got & kHeapProfileRequest) {
      DumpHeapProfileOnSignal();
      g_heap_profiles.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return nullptr;
}

bool StartThread() {
  if (!os::StartHelperThread(&ThreadMain, "jsmalloc-report", 256 * 1024)) return false;
  g_running.store(true, std::memory_order_release);
  return true;
}

bool Configured() {
  const Options& o = Static::options();
  return o.stats_signal != 0 || o.heap_profile_signal != 0;
}

}  // namespace

void StartReportThreadIfConfigured() {
  if (!Configured() || g_running.load(std::memory_order_acquire)) return;
  if (!StartThread()) {
    static const char kMsg[] = "jsmalloc: could not start the report thread; signal reports are off\n";
    os::WriteStderr(kMsg, sizeof(kMsg) - 1);
    return;
  }
  const Options& o = Static::options();
  for (int sig : {o.stats_signal, o.heap_profile_signal}) {
    if (sig != 0 && !os::InstallSignalHandler(sig, &OnSignal)) {
      static const char kMsg[] = "jsmalloc: could not install a signal handler for a report signal\n";
      os::WriteStderr(kMsg, sizeof(kMsg) - 1);
    }
  }
}

void ReportThreadAfterForkChild() {
  if (!g_running.load(std::memory_order_relaxed)) return;
  // The parent's thread is not in the child; the handlers are (fork keeps
  // them), so only the thread is started again. A request the parent had not
  // served yet is the parent's.
  g_running.store(false, std::memory_order_relaxed);
  g_pending.store(0, std::memory_order_relaxed);
  StartThread();
}

uint64_t SignalStatsReports() { return g_stats_reports.load(std::memory_order_relaxed); }
uint64_t SignalHeapProfiles() { return g_heap_profiles.load(std::memory_order_relaxed); }

}  // namespace jsmalloc
