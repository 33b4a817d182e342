// The OS layer's one reader of small files (sysfs, /proc), on top of the
// file functions of os/os.h: raw system calls (not cancellation points),
// every read retried on EINTR, errno left as it was, nothing allocated.
#ifndef JSMALLOC_OS_LINUX_FILE_IO_H_
#define JSMALLOC_OS_LINUX_FILE_IO_H_

#include <cstddef>
#include <cstdint>

#include "os/os.h"

namespace jsmalloc::os {

// read(fd, buf, n) retried on EINTR: the bytes read, 0 at the end of the
// file, -1 on an error. For readers that stream a file through a buffer.
long ReadSome(int fd, void* buf, size_t n);

// Reads the whole of a small file into buf[0, cap - 1) and NUL-terminates
// it (cap >= 1), reading until the end of the file. Returns the bytes read,
// or -1 if the file cannot be opened or read. When `truncated` is given it
// is set to whether the file held more than cap - 1 bytes.
long ReadSmallFile(const char* path, char* buf, size_t cap, bool* truncated = nullptr);

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_FILE_IO_H_
