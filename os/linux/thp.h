// Transparent hugepages: the Linux implementation's parser of the sysfs
// mode files, for os/linux/thp.cc and its unit tests (the interface is the
// "Transparent hugepages" group of os/os.h).
#ifndef JSMALLOC_OS_LINUX_THP_H_
#define JSMALLOC_OS_LINUX_THP_H_

#include <cstddef>
#include <cstdint>

#include "os/os.h"

namespace jsmalloc::os {

// "always [madvise] never" -> kMadvise (the bracketed word is active).
ThpMode ParseThpMode(const char* line);

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_THP_H_
