// jsmalloc.hugepage_coverage: the share of in-use heap bytes that lie on
// hugepages the kernel currently backs with a transparent hugepage.
#ifndef JSMALLOC_RUNTIME_HUGEPAGE_COVERAGE_H_
#define JSMALLOC_RUNTIME_HUGEPAGE_COVERAGE_H_

#include <cstddef>

namespace jsmalloc {

struct HugepageCoverage {
  size_t in_use_bytes = 0;
  size_t covered_bytes = 0;   // in-use bytes on THP-backed hugepages
  size_t ppm = 0;             // covered / in use, parts per million
  // True when measured page by page (/proc/self/pagemap + /proc/kpageflags,
  // needs CAP_SYS_ADMIN); false when estimated from /proc/self/smaps.
  bool exact = false;
};

// Over every NUMA partition, and for one.
HugepageCoverage ComputeHugepageCoverage();
HugepageCoverage ComputePartitionHugepageCoverage(int partition);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_HUGEPAGE_COVERAGE_H_
