#include "os/linux/thp.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "os/linux/file_io.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

namespace jsmalloc::os {

namespace {

constexpr size_t kHuge = size_t{2} << 20;
constexpr uint64_t kKpfThp = uint64_t{1} << 22;

constinit ThpSettings settings;
constinit std::atomic<bool> settings_ready{false};

uint64_t ParseU64(const char* s) {
  uint64_t v = 0;
  while (*s == ' ' || *s == '\t') ++s;
  while (*s >= '0' && *s <= '9') v = v * 10 + static_cast<uint64_t>(*s++ - '0');
  return v;
}

}  // namespace

ThpMode ParseThpMode(const char* line) {
  const char* open_b = strchr(line, '[');
  if (open_b == nullptr) return ThpMode::kUnknown;
  const char* w = open_b + 1;
  if (strncmp(w, "always]", 7) == 0) return ThpMode::kAlways;
  if (strncmp(w, "madvise]", 8) == 0) return ThpMode::kMadvise;
  if (strncmp(w, "never]", 6) == 0) return ThpMode::kNever;
  return ThpMode::kUnknown;
}

const char* ThpModeName(ThpMode m) {
  switch (m) {
    case ThpMode::kAlways: return "always";
    case ThpMode::kMadvise: return "madvise";
    case ThpMode::kNever: return "never";
    default: return "unknown";
  }
}

const ThpSettings& GetThpSettings() {
  if (settings_ready.load(std::memory_order_acquire)) return settings;
  int saved = errno;
  char buf[256];
  ThpSettings s;
  if (ReadSmallFile("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof(buf)) > 0) {
    s.enabled = ParseThpMode(buf);
  }
  if (ReadSmallFile("/sys/kernel/mm/transparent_hugepage/shmem_enabled", buf, sizeof(buf)) > 0) {
    s.shmem_or_unused = ParseThpMode(buf);
  }
  if (ReadSmallFile("/sys/kernel/mm/transparent_hugepage/defrag", buf, sizeof(buf)) > 0) {
    const char* a = strchr(buf, '[');
    const char* b = a != nullptr ? strchr(a, ']') : nullptr;
    if (a != nullptr && b != nullptr && static_cast<size_t>(b - a - 1) < sizeof(s.defrag)) {
      memcpy(s.defrag, a + 1, static_cast<size_t>(b - a - 1));
      s.defrag[b - a - 1] = 0;
    }
  }
  if (ReadSmallFile("/sys/kernel/mm/transparent_hugepage/khugepaged/defrag", buf, sizeof(buf)) > 0) {
    s.khugepaged_defrag = buf[0] == '1';
  }
  if (ReadSmallFile("/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none", buf, sizeof(buf)) > 0 &&
      buf[0] >= '0' && buf[0] <= '9') {
    s.khugepaged_max_ptes_none = static_cast<int>(ParseU64(buf));
  }
  if (ReadSmallFile("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", buf, sizeof(buf)) > 0) {
    s.hpage_pmd_size = ParseU64(buf);
  }
  settings = s;
  settings_ready.store(true, std::memory_order_release);
  errno = saved;
  return settings;
}

bool AdviseHugePages(void* p, size_t bytes) {
  int saved = errno;
  bool ok = madvise(p, bytes, MADV_HUGEPAGE) == 0;
  errno = saved;
  return ok;
}

bool AdviseNoHugePages(void* p, size_t bytes) {
  int saved = errno;
  bool ok = madvise(p, bytes, MADV_NOHUGEPAGE) == 0;
  errno = saved;
  return ok;
}

bool CollapseHugePages(void* p, size_t bytes) {
  int saved = errno;
  bool ok = madvise(p, bytes, MADV_COLLAPSE) == 0;
  errno = saved;
  return ok;
}

bool HugePagesBackedByThp(const void* start, size_t count, bool* out) {
  int saved = errno;
  int pm = OpenForReading("/proc/self/pagemap");
  int kf = pm >= 0 ? OpenForReading("/proc/kpageflags") : -1;
  bool ok = pm >= 0 && kf >= 0;
  const uintptr_t base = reinterpret_cast<uintptr_t>(start);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  // A hugepage counts only if it is mapped as one: every base page present,
  // physically contiguous, and a THP. After a partial MADV_DONTNEED the
  // kernel keeps the compound page for a while (deferred split) but maps it
  // with small pages, so the THP flag alone would over-report.
  static uint64_t entries[512];  // callers serialise (the coverage lock)
  const size_t per_huge = kHuge / page;
  if (per_huge > 512) ok = false;
  for (size_t i = 0; ok && i < count; ++i) {
    out[i] = false;
    const uint64_t off = (base + i * kHuge) / page * sizeof(uint64_t);
    if (!ReadAt(pm, off, entries, per_huge * sizeof(uint64_t))) {
      ok = false;
      break;
    }
    if ((entries[0] >> 63) == 0) continue;  // not present: not a THP
    const uint64_t kPfnMask = (uint64_t{1} << 55) - 1;
    uint64_t pfn = entries[0] & kPfnMask;
    if (pfn == 0) {
      ok = false;  // PFNs hidden: no CAP_SYS_ADMIN
      break;
    }
    bool whole = true;
    for (size_t k = 1; k < per_huge && whole; ++k) {
      whole = (entries[k] >> 63) != 0 && (entries[k] & kPfnMask) == pfn + k;
    }
    if (!whole) continue;
    uint64_t flags = 0;
    if (!ReadAt(kf, pfn * sizeof(uint64_t), &flags, sizeof(flags))) {
      ok = false;
      break;
    }
    out[i] = (flags & kKpfThp) != 0;
  }
  if (pm >= 0) CloseFile(pm);
  if (kf >= 0) CloseFile(kf);
  errno = saved;
  return ok;
}

bool ThpBytesInRange(const void* start, size_t bytes, size_t* anon_huge_bytes, size_t* rss_bytes) {
  int saved = errno;
  int fd = OpenForReading("/proc/self/smaps");
  if (fd < 0) {
    errno = saved;
    return false;
  }
  const uintptr_t lo = reinterpret_cast<uintptr_t>(start), hi = lo + bytes;
  size_t anon = 0, rss = 0;
  bool in_range = false;
  char buf[8192];
  size_t have = 0;
  bool eof = false;
  while (!eof || have > 0) {
    if (!eof && have < sizeof(buf) - 1) {
      long n = ReadSome(fd, buf + have, sizeof(buf) - 1 - have);
      if (n <= 0) eof = true;
      else have += static_cast<size_t>(n);
    }
    char* nl = static_cast<char*>(memchr(buf, '\n', have));
    if (nl == nullptr) {
      if (eof || have == sizeof(buf) - 1) have = 0;  // drop an over-long or final partial line
      continue;
    }
    *nl = 0;
    const char* line = buf;
    // A VMA header starts with "start-end " in hex; field lines with "Name:".
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    const char* p = line;
    uintptr_t a = 0, b = 0;
    while (hex(*p) >= 0) a = a * 16 + static_cast<uintptr_t>(hex(*p++));
    if (p != line && *p == '-') {
      ++p;
      while (hex(*p) >= 0) b = b * 16 + static_cast<uintptr_t>(hex(*p++));
      in_range = a < hi && b > lo;
    } else if (in_range) {
      if (strncmp(line, "Rss:", 4) == 0) rss += ParseU64(line + 4) * 1024;
      else if (strncmp(line, "AnonHugePages:", 14) == 0) anon += ParseU64(line + 14) * 1024;
    }
    size_t used = static_cast<size_t>(nl - buf) + 1;
    memmove(buf, buf + used, have - used);
    have -= used;
  }
  CloseFile(fd);
  errno = saved;
  *anon_huge_bytes = anon;
  *rss_bytes = rss;
  return true;
}

}  // namespace jsmalloc::os
