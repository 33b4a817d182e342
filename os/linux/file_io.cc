#include "os/linux/file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace jsmalloc::os {

// Raw system calls: glibc's open, pread and close are cancellation points,
// and a thread cancelled inside malloc (sampling reads unwind tables there)
// would unwind through malloc's noexcept frame into std::terminate.

int OpenForReading(const char* path) {
  const int saved_errno = errno;
  long fd;
  do {
    fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  errno = saved_errno;
  return fd < 0 ? -1 : static_cast<int>(fd);
}

bool ReadAt(int fd, uint64_t offset, void* buf, size_t n) {
  const int saved_errno = errno;
  char* p = static_cast<char*>(buf);
  bool ok = true;
  while (n > 0) {
    long got = syscall(SYS_pread64, fd, p, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      ok = false;
      break;
    }
    p += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  errno = saved_errno;
  return ok;
}

void CloseFile(int fd) {
  const int saved_errno = errno;
  syscall(SYS_close, fd);  // not retried on EINTR: on Linux the descriptor is gone either way
  errno = saved_errno;
}

long ReadSome(int fd, void* buf, size_t n) {
  const int saved_errno = errno;
  long got;
  do {
    got = syscall(SYS_read, fd, buf, n);
  } while (got < 0 && errno == EINTR);
  errno = saved_errno;
  return got < 0 ? -1 : got;
}

long ReadSmallFile(const char* path, char* buf, size_t cap, bool* truncated) {
  if (truncated != nullptr) *truncated = false;
  if (cap == 0) return -1;
  buf[0] = '\0';
  const int fd = OpenForReading(path);
  if (fd < 0) return -1;
  size_t have = 0;
  long got = 0;
  while (have + 1 < cap) {
    got = ReadSome(fd, buf + have, cap - 1 - have);
    if (got <= 0) break;
    have += static_cast<size_t>(got);
  }
  if (got >= 0 && have + 1 >= cap && truncated != nullptr) {
    char probe;
    *truncated = ReadSome(fd, &probe, 1) > 0;
  }
  CloseFile(fd);
  buf[have] = '\0';
  return got < 0 ? -1 : static_cast<long>(have);
}

bool IsSpecialFile(const char* path) {
  int saved = errno;
  struct stat st;
  bool special = stat(path, &st) == 0 && !S_ISREG(st.st_mode);
  errno = saved;
  return special;
}

}  // namespace jsmalloc::os
