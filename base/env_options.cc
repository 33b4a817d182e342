#include "base/env_options.h"

#include <cstring>

#include "os/os.h"
#include "base/internal_printer.h"

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

namespace {

// Digits only; false on overflow or anything else.
bool ParseDecimal(const char* s, const char** end, size_t* out) {
  size_t v = 0;
  const char* p = s;
  while (*p >= '0' && *p <= '9') {
    size_t d = static_cast<size_t>(*p - '0');
    if (v > (~size_t{0} - d) / 10) return false;
    v = v * 10 + d;
    ++p;
  }
  if (p == s) return false;
  *end = p;
  *out = v;
  return true;
}

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

bool ParseSize(const char* s, size_t* out) {
  size_t v;
  const char* p;
  if (!ParseDecimal(s, &p, &v)) return false;
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

bool ParseSignal(const char* s, int* out) {
  static constexpr struct {
    const char* name;
    int number;
  } kSignals[] = {{"HUP", 1},   {"INT", 2},    {"QUIT", 3},  {"USR1", 10}, {"USR2", 12},
                  {"PIPE", 13}, {"ALRM", 14},  {"TERM", 15}, {"CHLD", 17}, {"CONT", 18},
                  {"TSTP", 20}, {"TTIN", 21},  {"TTOU", 22}, {"URG", 23},  {"XCPU", 24},
                  {"XFSZ", 25}, {"VTALRM", 26}, {"PROF", 27}, {"WINCH", 28}, {"IO", 29},
                  {"PWR", 30},  {"SYS", 31}};
  size_t v;
  const char* end;
  if (ParseDecimal(s, &end, &v)) {
    if (*end != '\0' || v < 1 || v > 64 || v == 9 || v == 19) return false;
    *out = static_cast<int>(v);
    return true;
  }
  const char* name = s;
  if (Lower(name[0]) == 's' && Lower(name[1]) == 'i' && Lower(name[2]) == 'g') name += 3;
  for (const auto& sig : kSignals) {
    size_t i = 0;
    while (sig.name[i] != '\0' && Lower(name[i]) == Lower(sig.name[i])) ++i;
    if (sig.name[i] == '\0' && name[i] == '\0') {
      *out = sig.number;
      return true;
    }
  }
  return false;
}

int EditDistance(const char* a, const char* b) {
  constexpr size_t kMax = 64;
  size_t la = strlen(a), lb = strlen(b);
  if (la >= kMax || lb >= kMax) return 1 << 20;
  int prev[kMax], cur[kMax];
  for (size_t j = 0; j <= lb; ++j) prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= la; ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= lb; ++j) {
      int sub = prev[j - 1] + (Lower(a[i - 1]) == Lower(b[j - 1]) ? 0 : 1);
      int del = prev[j] + 1, ins = cur[j - 1] + 1;
      cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
    memcpy(prev, cur, sizeof(int) * (lb + 1));
  }
  return prev[lb];
}

namespace {

void WarnLine(const char* name, const char* where, const char* value, const char* expected, const char* using_what) {
  char buf[768];
  Printer p(buf, sizeof(buf));
  p.Str("jsmalloc: ignoring ").Str(name).Str("='").Str(value).Char('\'').Str(where).Str(": expected ")
      .Str(expected).Str("; using ").Str(using_what).Char('\n');
  os::WriteStderr(p.data(), p.written());
}

}  // namespace

void WarnBadOption(const char* name, const char* value, const char* expected, const char* dflt) {
  char using_what[128];
  Printer p(using_what, sizeof(using_what));
  p.Str("the default ").Str(dflt);
  WarnLine(name, "", value, expected, using_what);
}

namespace {

// ---- The settings -------------------------------------------------------------
// Each one: its name, what a value looks like (for the warning), how to apply
// a value, and how to print the value in effect.

struct Setting {
  const char* name;
  const char* expected;
  bool (*apply)(const char* value, Options* o);
  void (*show)(const Options& o, Printer* p);
};

template <bool Options::*F>
bool ApplyBool(const char* v, Options* o) { return ParseBool(v, &(o->*F)); }
template <bool Options::*F>
void ShowBool(const Options& o, Printer* p) { p->Str(o.*F ? "1" : "0"); }

template <size_t Options::*F>
bool ApplySize(const char* v, Options* o) { return ParseSize(v, &(o->*F)); }
template <size_t Options::*F>
void ShowSize(const Options& o, Printer* p) { p->U(o.*F); }

template <size_t Options::*F>
bool ApplyCount(const char* v, Options* o) {
  const char* end;
  size_t n;
  if (!ParseDecimal(v, &end, &n) || *end != '\0') return false;
  o->*F = n;
  return true;
}

// -1 (automatic), 0 or 1.
template <int Options::*F>
bool ApplyTri(const char* v, Options* o) {
  bool on;
  if (strcmp(v, "auto") == 0) {
    o->*F = -1;
    return true;
  }
  if (!ParseBool(v, &on)) return false;
  o->*F = on ? 1 : 0;
  return true;
}
template <int Options::*F>
void ShowTri(const Options& o, Printer* p) { p->Str(o.*F < 0 ? "auto" : (o.*F ? "1" : "0")); }

// A path, made absolute against the working directory of the moment.
bool CopyPath(const char* v, char* out) {
  if (v[0] == '\0') return false;
  char buf[kOptionPathLen];
  Printer p(buf, sizeof(buf));
  if (v[0] != '/') {
    char cwd[kOptionPathLen];
    if (!os::CurrentDirectory(cwd, sizeof(cwd))) return false;
    p.Str(cwd);
    if (strcmp(cwd, "/") != 0) p.Char('/');
  }
  p.Str(v);
  if (p.needed() >= kOptionPathLen) return false;
  memcpy(out, buf, p.needed() + 1);
  return true;
}
template <char (Options::*F)[kOptionPathLen]>
bool ApplyPath(const char* v, Options* o) { return CopyPath(v, o->*F); }
template <char (Options::*F)[kOptionPathLen]>
void ShowPath(const Options& o, Printer* p) { p->Str((o.*F)[0] != '\0' ? o.*F : "(none)"); }

template <int Options::*F>
bool ApplySignal(const char* v, Options* o) {
  if (strcmp(v, "0") == 0) {
    o->*F = 0;
    return true;
  }
  return ParseSignal(v, &(o->*F));
}
template <int Options::*F>
void ShowSignal(const Options& o, Printer* p) {
  if (o.*F == 0) p->Str("(none)");
  else p->I(o.*F);
}

bool ApplyStatsOnExit(const char* v, Options* o) {
  if (ParseBool(v, &o->stats_on_exit)) return true;
  // Anything else names the file the report goes to.
  if (!CopyPath(v, o->stats_file)) return false;
  o->stats_on_exit = true;
  return true;
}

bool ApplyBackend(const char* v, Options* o) {
  if (strcmp(v, "hugepage") == 0) o->legacy_page_heap = false;
  else if (strcmp(v, "legacy") == 0) o->legacy_page_heap = true;
  else return false;
  return true;
}
void ShowBackend(const Options& o, Printer* p) { p->Str(o.legacy_page_heap ? "legacy" : "hugepage"); }

bool ApplyDelay(const char* v, Options* o) {
  const char* end;
  size_t n;
  if (!ParseDecimal(v, &end, &n) || (*end != '\0' && strcmp(end, "s") != 0) || n < 1 || n > 16) return false;
  o->release_delay = n;
  return true;
}

bool ApplyLargePages(const char* v, Options* o) {
  if (strcmp(v, "adaptive") == 0) o->large_huge = false;
  else if (strcmp(v, "huge") == 0) o->large_huge = true;
  else return false;
  return true;
}
void ShowLargePages(const Options& o, Printer* p) { p->Str(o.large_huge ? "huge" : "adaptive"); }

bool ApplyAdvice(const char* v, Options* o) {
  if (strcmp(v, "dontneed") == 0) o->release_with_madv_free = false;
  else if (strcmp(v, "free") == 0) o->release_with_madv_free = true;
  else return false;
  return true;
}
void ShowAdvice(const Options& o, Printer* p) { p->Str(o.release_with_madv_free ? "free" : "dontneed"); }

bool ApplyNumaBind(const char* v, Options* o) {
  if (strcmp(v, "none") == 0) o->numa_bind = 0;
  else if (strcmp(v, "preferred") == 0) o->numa_bind = 1;
  else if (strcmp(v, "strict") == 0) o->numa_bind = 2;
  else return false;
  return true;
}
void ShowNumaBind(const Options& o, Printer* p) {
  p->Str(o.numa_bind == 0 ? "none" : (o.numa_bind == 1 ? "preferred" : "strict"));
}

// Checked against the topology parser at initialisation (runtime/init.cc).
bool ApplyTopology(const char* v, Options* o) {
  size_t n = strlen(v);
  if (n == 0 || n >= kOptionPathLen) return false;
  memcpy(o->numa_topology, v, n + 1);
  return true;
}

constexpr const char kSizeForm[] = "a byte count such as 1048576, 64K, 32M or 1G";
constexpr const char kBoolForm[] = "1 or 0 (also true/false, yes/no, on/off)";
constexpr const char kPathForm[] = "a file path (relative paths start from the working directory)";
constexpr const char kSignalForm[] = "a signal number or name such as 12, USR2 or SIGUSR1 (not KILL or STOP); 0 for none";

constexpr Setting kSettings[] = {
    {"stats_on_exit", "1 or 0, or a file path to append the report to", &ApplyStatsOnExit, &ShowBool<&Options::stats_on_exit>},
    {"stats_file", kPathForm, &ApplyPath<&Options::stats_file>, &ShowPath<&Options::stats_file>},
    {"stats_signal", kSignalForm, &ApplySignal<&Options::stats_signal>, &ShowSignal<&Options::stats_signal>},
    {"stats_wide", kBoolForm, &ApplyBool<&Options::stats_wide>, &ShowBool<&Options::stats_wide>},
    {"per_cpu", "1, 0 or auto", &ApplyTri<&Options::per_cpu>, &ShowTri<&Options::per_cpu>},
    {"max_per_cpu_cache_bytes", kSizeForm, &ApplySize<&Options::max_per_cpu_cache_bytes>,
     &ShowSize<&Options::max_per_cpu_cache_bytes>},
    {"max_total_thread_cache_bytes", kSizeForm, &ApplySize<&Options::max_total_thread_cache_bytes>,
     &ShowSize<&Options::max_total_thread_cache_bytes>},
    {"page_heap_keep_free_bytes", kSizeForm, &ApplySize<&Options::page_heap_keep_free_bytes>,
     &ShowSize<&Options::page_heap_keep_free_bytes>},
    {"backend", "hugepage or legacy", &ApplyBackend, &ShowBackend},
    {"collapse", kBoolForm, &ApplyBool<&Options::collapse>, &ShowBool<&Options::collapse>},
    {"large_pages", "adaptive or huge", &ApplyLargePages, &ShowLargePages},
    {"release_growing", kBoolForm, &ApplyBool<&Options::release_growing>, &ShowBool<&Options::release_growing>},
    {"khugepaged_guard", "1, 0 or auto", &ApplyTri<&Options::khugepaged_guard>, &ShowTri<&Options::khugepaged_guard>},
    {"release_advice", "dontneed or free", &ApplyAdvice, &ShowAdvice},
    {"background", "auto, 1 or 0", &ApplyTri<&Options::background>, &ShowTri<&Options::background>},
    {"release_rate", "bytes per second such as 4M (0: no steady release)", &ApplySize<&Options::release_rate>,
     &ShowSize<&Options::release_rate>},
    {"release_delay", "whole seconds from 1 to 16", &ApplyDelay, &ShowSize<&Options::release_delay>},
    {"io_uring", kBoolForm, &ApplyBool<&Options::io_uring>, &ShowBool<&Options::io_uring>},
    {"memory_limit", "a byte count such as 512M or 4G (0: no limit)", &ApplySize<&Options::memory_limit>,
     &ShowSize<&Options::memory_limit>},
    {"memory_limit_hard", kBoolForm, &ApplyBool<&Options::memory_limit_hard>, &ShowBool<&Options::memory_limit_hard>},
    {"sample_interval", "a byte count such as 2M or 512K (0 turns sampling off)", &ApplySize<&Options::sample_interval>,
     &ShowSize<&Options::sample_interval>},
    {"heap_profile_on_exit", kPathForm, &ApplyPath<&Options::heap_profile_on_exit>,
     &ShowPath<&Options::heap_profile_on_exit>},
    {"heap_profile_signal", kSignalForm, &ApplySignal<&Options::heap_profile_signal>,
     &ShowSignal<&Options::heap_profile_signal>},
    {"heap_profile_prefix", "a path prefix such as /tmp/app (files PREFIX.PID.N.heap)",
     &ApplyPath<&Options::heap_profile_prefix>, &ShowPath<&Options::heap_profile_prefix>},
    {"numa_aware", kBoolForm, &ApplyBool<&Options::numa_aware>, &ShowBool<&Options::numa_aware>},
    {"numa_bind", "none, preferred or strict", &ApplyNumaBind, &ShowNumaBind},
    {"numa_topology", "CPU lists per node separated by ';' or '/', such as 0-3;4-7", &ApplyTopology,
     &ShowPath<&Options::numa_topology>},
    {"check", kBoolForm, &ApplyBool<&Options::check>, &ShowBool<&Options::check>},
    {"hardened", kBoolForm, &ApplyBool<&Options::hardened>, &ShowBool<&Options::hardened>},
    {"guarded_rate", "a whole number N such as 100: one sampled allocation in N is guarded (0: off)",
     &ApplyCount<&Options::guarded_rate>, &ShowSize<&Options::guarded_rate>},
    {"guarded_slots", "a whole number such as 64: guarded allocations live at once",
     &ApplyCount<&Options::guarded_slots>, &ShowSize<&Options::guarded_slots>},
};
constexpr size_t kNumSettings = sizeof(kSettings) / sizeof(kSettings[0]);

// JSMALLOC_* variables that are not settings of the library but are known:
// the tools' and the test harness's own.
bool IsOtherKnownVariable(const char* name, size_t len) {
  auto is = [&](const char* s) { return strlen(s) == len && strncmp(name, s, len) == 0; };
  if (is("JSMALLOC_OPTIONS") || is("JSMALLOC_LIB") || is("JSMALLOC_RSEQ_SIMULATE")) return true;
  return len > 14 && strncmp(name, "JSMALLOC_TEST_", 14) == 0;
}

// Matches `name` (n bytes) against a setting, ignoring case.
const Setting* FindSetting(const char* name, size_t n) {
  for (const Setting& s : kSettings) {
    if (strlen(s.name) != n) continue;
    size_t i = 0;
    while (i < n && Lower(name[i]) == s.name[i]) ++i;
    if (i == n) return &s;
  }
  return nullptr;
}

const Setting* Closest(const char* name) {
  const Setting* best = &kSettings[0];
  int best_d = 1 << 30;
  for (const Setting& s : kSettings) {
    int d = EditDistance(name, s.name);
    if (d < best_d) {
      best_d = d;
      best = &s;
    }
  }
  return best;
}

void VariableName(const Setting& s, Printer* p) {
  p->Str("JSMALLOC_");
  for (const char* c = s.name; *c != '\0'; ++c) p->Char(*c >= 'a' && *c <= 'z' ? static_cast<char>(*c - 'a' + 'A') : *c);
}

class Parser {
 public:
  explicit Parser(Options* o) : o_(o) {}

  // One setting from JSMALLOC_OPTIONS (from_options) or its own variable.
  void Apply(const Setting& s, const char* value, bool from_options) {
    char shown[kOptionPathLen + 32];
    Printer cur(shown, sizeof(shown));
    s.show(*o_, &cur);
    if (s.apply(value, o_)) {
      set_by_options_[&s - kSettings] = from_options;
      return;
    }
    char name[64], using_what[kOptionPathLen + 64];
    Printer n(name, sizeof(name));
    Printer u(using_what, sizeof(using_what));
    if (from_options) n.Str(s.name);
    else VariableName(s, &n);
    u.Str(set_by_options_[&s - kSettings] ? "the value from JSMALLOC_OPTIONS, " : "the default ").Str(shown);
    WarnLine(name, from_options ? " in JSMALLOC_OPTIONS" : "", value, s.expected, using_what);
  }

  void ParseOptionsString(const char* text) {
    // name=value pairs separated by commas; spaces around them are allowed.
    const char* p = text;
    while (*p != '\0') {
      while (*p == ' ' || *p == ',') ++p;
      if (*p == '\0') break;
      const char* start = p;
      while (*p != '\0' && *p != ',') ++p;
      const char* end = p;
      while (end > start && end[-1] == ' ') --end;
      Pair(start, static_cast<size_t>(end - start));
    }
  }

  void Variable(const char* entry) {
    const char* eq = strchr(entry, '=');
    if (eq == nullptr) return;
    size_t len = static_cast<size_t>(eq - entry);
    if (IsOtherKnownVariable(entry, len)) return;
    const Setting* s = FindSetting(entry + 9, len - 9);
    if (s != nullptr) {
      // Only the upper-case spelling is the variable; others are typos.
      char want[64];
      Printer w(want, sizeof(want));
      VariableName(*s, &w);
      if (strncmp(entry, want, len) == 0) {
        Apply(*s, eq + 1, false);
        return;
      }
    }
    char name[128];
    Printer n(name, sizeof(name));
    n.Str(entry, len < 100 ? len : 100);
    char suggestion[64];
    Printer sg(suggestion, sizeof(suggestion));
    VariableName(*Closest(name + 9), &sg);
    Unknown(name, "", suggestion);
  }

 private:
  void Pair(const char* text, size_t n) {
    char buf[kOptionPathLen + 64];
    if (n >= sizeof(buf)) n = sizeof(buf) - 1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    char* eq = strchr(buf, '=');
    if (eq == nullptr) {
      char msg[kOptionPathLen + 160];
      Printer m(msg, sizeof(msg));
      m.Str("jsmalloc: ignoring '").Str(buf)
          .Str("' in JSMALLOC_OPTIONS: expected name=value pairs separated by commas, such as "
               "sample_interval=1M,background=1\n");
      os::WriteStderr(m.data(), m.written());
      return;
    }
    char* name_end = eq;
    while (name_end > buf && name_end[-1] == ' ') --name_end;
    *name_end = '\0';
    const char* value = eq + 1;
    while (*value == ' ') ++value;
    const Setting* s = FindSetting(buf, strlen(buf));
    if (s == nullptr) {
      Unknown(buf, " in JSMALLOC_OPTIONS", Closest(buf)->name);
      return;
    }
    Apply(*s, value, true);
  }

  void Unknown(const char* name, const char* where, const char* suggestion) {
    char msg[320];
    Printer m(msg, sizeof(msg));
    m.Str("jsmalloc: ignoring unknown setting ").Str(name).Str(where).Str("; did you mean ").Str(suggestion)
        .Str("? (docs/tuning.md lists every setting)\n");
    os::WriteStderr(m.data(), m.written());
  }

  Options* o_;
  bool set_by_options_[kNumSettings] = {};
};

}  // namespace

void ParseOptionsFrom(char* const* env, Options* out) {
  if (env == nullptr) return;
  Parser parser(out);
  for (char* const* e = env; *e != nullptr; ++e) {
    if (strncmp(*e, "JSMALLOC_OPTIONS=", 17) == 0) parser.ParseOptionsString(*e + 17);
  }
  // A variable of its own overrides the setting in JSMALLOC_OPTIONS.
  for (char* const* e = env; *e != nullptr; ++e) {
    if (strncmp(*e, "JSMALLOC_", 9) == 0) parser.Variable(*e);
  }
}

void ParseOptions(Options* out) { ParseOptionsFrom(os::Environment(), out); }

size_t OptionNames(const char** names, size_t max) {
  for (size_t i = 0; i < kNumSettings && i < max; ++i) names[i] = kSettings[i].name;
  return kNumSettings;
}

}  // namespace jsmalloc
