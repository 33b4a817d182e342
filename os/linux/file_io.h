// Reading files without allocating and without mapping them: the OS layer's
// one reader of small files (sysfs, /proc), and reads by offset for the
// unwinder, which reads objects' call frame information this way (a first
// touch of a mapped file page maps the 64 KiB around it into the process's
// RSS; a pread leaves the data in the page cache only). Every read is
// retried on EINTR, errno is left as it was, and none of these is a
// cancellation point.
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

// read(fd, buf, n) retried on EINTR: the bytes read, 0 at the end of the
// file, -1 on an error. For readers that stream a file through a buffer.
long ReadSome(int fd, void* buf, size_t n);

// Reads the whole of a small file into buf[0, cap - 1) and NUL-terminates
// it (cap >= 1), reading until the end of the file. Returns the bytes read,
// or -1 if the file cannot be opened or read. When `truncated` is given it
// is set to whether the file held more than cap - 1 bytes.
long ReadSmallFile(const char* path, char* buf, size_t cap, bool* truncated = nullptr);

// True when path exists and is not a regular file (a device such as
// /dev/null, a FIFO, a socket): writers must write through it, not replace
// it by renaming a new file onto it.
bool IsSpecialFile(const char* path);

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_FILE_IO_H_
