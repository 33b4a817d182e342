#include "base/size_map.h"

namespace jsmalloc {

int SizeMap::ClassForAligned(size_t size, size_t align) {
  if (size > kMaxSize || align > kPageSize) return 0;
  if (size < align) size = align;
  for (int cl = ClassFor(size); cl < kNumClasses; ++cl) {
    if ((ClassSize(cl) & (align - 1)) == 0) return cl;
  }
  return 0;
}

}  // namespace jsmalloc
