#include "runtime/env_options.h"

#include <cstring>

#include "os/linux/os_memory.h"
#include "runtime/internal_printer.h"

namespace jsmalloc {

bool ParseBool(const char* s, bool* out) {
  if (strcmp(s, "1") == 0 || strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "on") == 0) {
    *out = true;
    return true;
  }
  if (strcmp(s, "0") == 0 || strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "off") == 0) {
    *out = false;
    return true;
  }
  return false;
}

bool ParseSize(const char* s, size_t* out) {
  if (*s == '\0') return false;
  size_t v = 0;
  const char* p = s;
  while (*p >= '0' && *p <= '9') {
    size_t d = static_cast<size_t>(*p - '0');
    if (v > (~size_t{0} - d) / 10) return false;
    v = v * 10 + d;
    ++p;
  }
  if (p == s) return false;
  int shift = 0;
  if (*p == 'k' || *p == 'K') shift = 10;
  else if (*p == 'm' || *p == 'M') shift = 20;
  else if (*p == 'g' || *p == 'G') shift = 30;
  if (shift != 0) {
    ++p;
    if (*p == 'i' || *p == 'I') ++p;
    if (*p == 'b' || *p == 'B') ++p;
  }
  if (*p != '\0') return false;
  if (shift != 0 && (v << shift) >> shift != v) return false;
  *out = v << shift;
  return true;
}

namespace {

void WarnLine(const char* name, const char* value, const char* expected, const char* dflt) {
  char buf[512];
  Printer p(buf, sizeof(buf));
  p.Str("jsmalloc: ignoring ").Str(name).Str("='").Str(value).Str("': expected ").Str(expected)
      .Str("; using the default ").Str(dflt).Char('\n');
  os::WriteStderr(p.data(), p.written());
}

}  // namespace

void WarnBadOption(const char* name, const char* value, const char* expected, const char* dflt) {
  WarnLine(name, value, expected, dflt);
}

namespace {

void GetBool(const char* name, bool* v) {
  const char* s = os::GetEnv(name);
  if (s == nullptr) return;
  if (!ParseBool(s, v)) WarnLine(name, s, "0 or 1", *v ? "1" : "0");
}

void GetSize(const char* name, size_t* v) {
  const char* s = os::GetEnv(name);
  if (s == nullptr) return;
  if (!ParseSize(s, v)) {
    char num[32];
    Printer p(num, sizeof(num));
    p.U(*v);
    WarnLine(name, s, "a byte count such as 1048576, 64K or 32M", num);
  }
}

// A file path (non-empty, shorter than `len`), copied into out[].
void GetPath(const char* name, char* out, size_t len) {
  const char* s = os::GetEnv(name);
  if (s == nullptr) return;
  size_t n = strlen(s);
  if (n == 0 || n >= len) {
    char expected[64];
    Printer p(expected, sizeof(expected));
    p.Str("a file path shorter than ").U(len).Str(" bytes");
    WarnLine(name, s, expected, "(none)");
    return;
  }
  memcpy(out, s, n + 1);
}

// A two-way choice: `first` sets *second_chosen = false, `second` true.
void GetChoice(const char* name, const char* first, const char* second, bool* second_chosen) {
  const char* s = os::GetEnv(name);
  if (s == nullptr) return;
  if (strcmp(s, first) == 0) {
    *second_chosen = false;
  } else if (strcmp(s, second) == 0) {
    *second_chosen = true;
  } else {
    char expected[96];
    Printer p(expected, sizeof(expected));
    p.Str(first).Str(" or ").Str(second);
    WarnLine(name, s, expected, *second_chosen ? second : first);
  }
}

}  // namespace

void ParseOptions(Options* out) {
  const char* stats = os::GetEnv("JSMALLOC_STATS_ON_EXIT");
  if (stats != nullptr && stats[0] == '/' && strlen(stats) < sizeof(out->stats_path)) {
    // A path: programs that close stderr at exit (coreutils) still report.
    memcpy(out->stats_path, stats, strlen(stats) + 1);
    out->stats_on_exit = true;
  } else {
    GetBool("JSMALLOC_STATS_ON_EXIT", &out->stats_on_exit);
  }
  const char* per_cpu = os::GetEnv("JSMALLOC_PER_CPU");
  if (per_cpu != nullptr) {
    bool on;
    if (ParseBool(per_cpu, &on)) out->per_cpu = on ? 1 : 0;
    else WarnLine("JSMALLOC_PER_CPU", per_cpu, "0 or 1", "(per-CPU where rseq works)");
  }
  GetSize("JSMALLOC_MAX_PER_CPU_CACHE_BYTES", &out->max_per_cpu_cache_bytes);
  GetSize("JSMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES", &out->max_total_thread_cache_bytes);
  GetSize("JSMALLOC_PAGE_HEAP_KEEP_FREE_BYTES", &out->page_heap_keep_free_bytes);
  GetChoice("JSMALLOC_BACKEND", "hugepage", "legacy", &out->legacy_page_heap);
  GetBool("JSMALLOC_COLLAPSE", &out->collapse);
  if (const char* g = os::GetEnv("JSMALLOC_KHUGEPAGED_GUARD")) {
    bool on;
    if (ParseBool(g, &on)) out->khugepaged_guard = on ? 1 : 0;
    else WarnLine("JSMALLOC_KHUGEPAGED_GUARD", g, "0 or 1", "(on where khugepaged would refill released pages)");
  }
  GetChoice("JSMALLOC_RELEASE_ADVICE", "dontneed", "free", &out->release_with_madv_free);
  GetBool("JSMALLOC_BACKGROUND", &out->background);
  GetSize("JSMALLOC_RELEASE_RATE", &out->release_rate);
  GetBool("JSMALLOC_IO_URING", &out->io_uring);
  GetSize("JSMALLOC_MEMORY_LIMIT", &out->memory_limit);
  GetBool("JSMALLOC_MEMORY_LIMIT_HARD", &out->memory_limit_hard);
  GetSize("JSMALLOC_SAMPLE_INTERVAL", &out->sample_interval);
  GetPath("JSMALLOC_HEAP_PROFILE_ON_EXIT", out->heap_profile_on_exit, sizeof(out->heap_profile_on_exit));
  GetPath("JSMALLOC_HEAP_PROFILE_PREFIX", out->heap_profile_prefix, sizeof(out->heap_profile_prefix));
  GetBool("JSMALLOC_NUMA_AWARE", &out->numa_aware);
  if (const char* b = os::GetEnv("JSMALLOC_NUMA_BIND")) {
    if (strcmp(b, "none") == 0) out->numa_bind = 0;
    else if (strcmp(b, "preferred") == 0) out->numa_bind = 1;
    else if (strcmp(b, "strict") == 0) out->numa_bind = 2;
    else WarnLine("JSMALLOC_NUMA_BIND", b, "none, preferred or strict", "preferred");
  }
  GetBool("JSMALLOC_CHECK", &out->check);
  GetBool("JSMALLOC_HARDENED", &out->hardened);
  GetSize("JSMALLOC_GUARDED_RATE", &out->guarded_rate);
  GetSize("JSMALLOC_GUARDED_SLOTS", &out->guarded_slots);
  // Checked against the topology parser at initialisation (static_vars.cc).
  GetPath("JSMALLOC_NUMA_TOPOLOGY", out->numa_topology, sizeof(out->numa_topology));
  const char* sig = os::GetEnv("JSMALLOC_HEAP_PROFILE_SIGNAL");
  if (sig != nullptr) {
    // A catchable signal's number: 1 to 64, not SIGKILL (9) or SIGSTOP (19).
    int v = 0;
    const char* c = sig;
    while (*c >= '0' && *c <= '9' && v <= 64) v = v * 10 + (*c++ - '0');
    if (c != sig && *c == '\0' && v >= 1 && v <= 64 && v != 9 && v != 19) {
      out->heap_profile_signal = v;
    } else {
      WarnLine("JSMALLOC_HEAP_PROFILE_SIGNAL", sig, "a signal number such as 12 (SIGUSR2)", "(none)");
    }
  }
}

}  // namespace jsmalloc
