// Reading a file by offset without allocating and without mapping it: the
// unwinder reads objects' call frame information this way (a first touch of
// a mapped file page maps the 64 KiB around it into the process's RSS; a
// pread leaves the data in the page cache only). errno is left as it was,
// and none of these is a cancellation point.
#ifndef JSMALLOC_OS_LINUX_FILE_IO_H_
#define JSMALLOC_OS_LINUX_FILE_IO_H_

#include <cstddef>
#include <cstdint>

namespace jsmalloc::os {

// open(path, O_RDONLY | O_CLOEXEC), retried on EINTR; -1 if it fails.
int OpenForReading(const char* path);

// Reads exactly n bytes at `offset` (pread, retried on EINTR and short
// reads); false on an error or at the end of the file.
bool ReadAt(int fd, uint64_t offset, void* buf, size_t n);

void CloseFile(int fd);

// True when path exists and is not a regular file (a device such as
// /dev/null, a FIFO, a socket): writers must write through it, not replace
// it by renaming a new file onto it.
bool IsSpecialFile(const char* path);

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_FILE_IO_H_
