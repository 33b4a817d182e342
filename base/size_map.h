// Request size -> size class, and the per-class properties the caches need.
#ifndef JSMALLOC_BASE_SIZE_MAP_H_
#define JSMALLOC_BASE_SIZE_MAP_H_

#include <cstddef>

#include "base/size_class_table.h"

namespace jsmalloc {

class SizeMap {
 public:
  // Class for a request of at most kMaxSize bytes (0 maps to the 8-byte class).
  static JSMALLOC_ALWAYS_INLINE int ClassFor(size_t size) {
    return kClassLookup.cls[ClassIndex(size)];
  }
  static JSMALLOC_ALWAYS_INLINE size_t ClassSize(int cl) { return kSizeClasses.info[cl].size; }
  static size_t ClassPages(int cl) { return kSizeClasses.info[cl].pages; }
  static size_t ObjectsPerSpan(int cl) { return kSizeClasses.info[cl].objects; }
  static int BatchSize(int cl) { return static_cast<int>(kSizeClasses.info[cl].batch); }

  // Smallest class whose objects all start at multiples of `align` (every
  // span is page-aligned, so a class size that is a multiple of `align`
  // suffices when align <= kPageSize). Returns 0 if no class fits.
  static int ClassForAligned(size_t size, size_t align);
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_SIZE_MAP_H_
