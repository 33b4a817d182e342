#include "os/linux/os_memory.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "os/linux/file_io.h"

extern char** environ;

namespace jsmalloc::os {

namespace {

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

// Needs CONFIG_ANON_VMA_NAME; after the first refusal we stop asking.
constinit std::atomic<bool> g_vma_names_unsupported{false};

constexpr char kHeapMappingName[] = "jsmalloc";

}  // namespace

void NameMapping(void* p, size_t bytes, const char* name) {
  if (g_vma_names_unsupported.load(std::memory_order_relaxed)) return;
  if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, reinterpret_cast<unsigned long>(p), bytes,
            reinterpret_cast<unsigned long>(name)) != 0) {
    g_vma_names_unsupported.store(true, std::memory_order_relaxed);
  }
}

void* MapAligned(size_t bytes, size_t alignment, void* hint) {
  int saved_errno = errno;
  // Try the hint first: when the heap grows upward contiguously, the new range
  // merges with the previous VMA and the kernel's per-mapping cost stays flat.
  if (hint != nullptr && (reinterpret_cast<uintptr_t>(hint) & (alignment - 1)) == 0) {
    void* p = mmap(hint, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == hint) {
      NameMapping(p, bytes, kHeapMappingName);
      errno = saved_errno;
      return p;
    }
    if (p != MAP_FAILED) munmap(p, bytes);  // old kernels ignore FIXED_NOREPLACE
  }
  size_t over = bytes + alignment;
  if (over < bytes) return nullptr;
  void* raw = mmap(nullptr, over, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    errno = saved_errno;
    return nullptr;
  }
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + alignment - 1) & ~(alignment - 1);
  if (aligned > start) munmap(raw, aligned - start);
  uintptr_t end = start + over;
  if (end > aligned + bytes) munmap(reinterpret_cast<void*>(aligned + bytes), end - (aligned + bytes));
  NameMapping(reinterpret_cast<void*>(aligned), bytes, kHeapMappingName);
  errno = saved_errno;
  return reinterpret_cast<void*>(aligned);
}

void Unmap(void* ptr, size_t bytes) {
  int saved_errno = errno;
  munmap(ptr, bytes);
  errno = saved_errno;
}

void* MapWipeOnFork(size_t bytes, bool* wiped) {
  int saved_errno = errno;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    errno = saved_errno;
    *wiped = false;
    return nullptr;
  }
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
  *wiped = madvise(p, bytes, MADV_WIPEONFORK) == 0;
  NameMapping(p, bytes, "jsmalloc-locks");
  errno = saved_errno;
  return p;
}

bool ReleasePages(void* ptr, size_t bytes, bool madv_free) {
  int saved_errno = errno;
  int rc;
  do {
    rc = madvise(ptr, bytes, madv_free ? MADV_FREE : MADV_DONTNEED);
  } while (rc != 0 && errno == EAGAIN);
  errno = saved_errno;
  return rc == 0;
}

size_t SystemPageSize() {
  static size_t cached = 0;
  if (cached == 0) cached = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return cached;
}

void WriteStderr(const char* data, size_t len) {
  int saved_errno = errno;
  while (len > 0) {
    ssize_t n = write(2, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  errno = saved_errno;
}

bool AppendToFile(const char* path, const char* data, size_t len) {
  int saved_errno = errno;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  bool ok = fd >= 0;
  while (ok && len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ok = false;
    else {
      data += n;
      len -= static_cast<size_t>(n);
    }
  }
  if (fd >= 0) close(fd);
  errno = saved_errno;
  return ok;
}

void FatalError(const char* msg, const void* ptr) {
  char buf[256];
  size_t n = 0;
  auto put = [&](const char* s) {
    while (*s && n < sizeof(buf) - 1) buf[n++] = *s++;
  };
  put("jsmalloc: ");
  put(msg);
  put(" 0x");
  uintptr_t v = reinterpret_cast<uintptr_t>(ptr);
  char hex[17];
  int h = 0;
  do {
    hex[h++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  while (h > 0 && n < sizeof(buf) - 1) buf[n++] = hex[--h];
  if (n < sizeof(buf) - 1) buf[n++] = '\n';
  WriteStderr(buf, n);
  abort();
}

void Abort() { abort(); }

const char* GetEnv(const char* name) {
  if (environ == nullptr) return nullptr;
  size_t len = strlen(name);
  for (char** e = environ; *e != nullptr; ++e) {
    if (strncmp(*e, name, len) == 0 && (*e)[len] == '=') return *e + len + 1;
  }
  return nullptr;
}

size_t ResidentBytes() {
  char buf[128];
  if (ReadSmallFile("/proc/self/statm", buf, sizeof(buf)) <= 0) return 0;
  // statm: size resident shared ... (in pages)
  const char* p = buf;
  while (*p && *p != ' ') ++p;
  while (*p == ' ') ++p;
  size_t pages = 0;
  while (*p >= '0' && *p <= '9') pages = pages * 10 + static_cast<size_t>(*p++ - '0');
  return pages * SystemPageSize();
}

size_t ResidentBytesIn(const void* p, size_t bytes) {
  const size_t page = SystemPageSize();
  int saved_errno = errno;
  unsigned char vec[512];  // one byte per page: 2 MiB of 4 KiB pages per call
  size_t resident = 0;
  const char* at = static_cast<const char*>(p);
  while (bytes > 0) {
    size_t chunk = bytes < sizeof(vec) * page ? bytes : sizeof(vec) * page;
    if (mincore(const_cast<char*>(at), chunk, vec) != 0) {
      errno = saved_errno;
      return ~size_t{0};
    }
    size_t pages = (chunk + page - 1) / page;
    for (size_t i = 0; i < pages; ++i) resident += vec[i] & 1;
    at += chunk;
    bytes -= chunk;
  }
  errno = saved_errno;
  return resident * page;
}

}  // namespace jsmalloc::os
