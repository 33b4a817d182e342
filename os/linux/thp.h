// Transparent hugepages: what the kernel will do (sysfs), asking for them
// (MADV_HUGEPAGE, MADV_COLLAPSE), and checking which ranges it backs with
// them (/proc/self/pagemap + /proc/kpageflags, or /proc/self/smaps).
// Allocation-free: fixed buffers and raw file descriptors only.
#ifndef JSMALLOC_OS_LINUX_THP_H_
#define JSMALLOC_OS_LINUX_THP_H_

#include <cstddef>

namespace jsmalloc::os {

enum class ThpMode { kAlways, kMadvise, kNever, kUnknown };

struct ThpSettings {
  ThpMode enabled = ThpMode::kUnknown;
  ThpMode shmem_or_unused = ThpMode::kUnknown;
  char defrag[32] = "unknown";
  bool khugepaged_defrag = false;
  size_t hpage_pmd_size = 0;
  // khugepaged/max_ptes_none: how many missing base pages khugepaged fills
  // with zeroed memory when it collapses a range (kernel default 511, all
  // but one). -1 when unreadable.
  int khugepaged_max_ptes_none = -1;
};

// /sys/kernel/mm/transparent_hugepage/*, read once and cached.
const ThpSettings& GetThpSettings();
// "always [madvise] never" -> kMadvise (the bracketed word is active).
ThpMode ParseThpMode(const char* line);
const char* ThpModeName(ThpMode m);
bool AdviseHugePages(void* p, size_t bytes);
// MADV_NOHUGEPAGE: no THP on faults and no khugepaged collapse in the range
// (the kernel splits the mapping's VMA at its ends).
bool AdviseNoHugePages(void* p, size_t bytes);
bool CollapseHugePages(void* p, size_t bytes);
// out[i] = whether hugepage i of `count` 2 MiB hugepages from `start` is a
// transparent hugepage now. False when the kernel will not tell (needs
// CAP_SYS_ADMIN for page frame numbers).
bool HugePagesBackedByThp(const void* start, size_t count, bool* out);
// AnonHugePages and Rss summed over the VMAs intersecting the range.
bool ThpBytesInRange(const void* start, size_t bytes, size_t* anon_huge_bytes, size_t* rss_bytes);

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_THP_H_
