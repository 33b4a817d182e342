#include "os/os.h"

#include <errno.h>
#include <signal.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <cstring>

#include "os/linux/file_io.h"

extern char** environ;

namespace jsmalloc::os {

int ProcessId() { return static_cast<int>(getpid()); }

unsigned long long KernelRandom64() {
  const unsigned char* r = reinterpret_cast<const unsigned char*>(getauxval(AT_RANDOM));
  if (r == nullptr) return 0;
  unsigned long long x;
  memcpy(&x, r + 8, sizeof(x));  // glibc's stack canary comes from bytes 0-7
  return x;
}

void ProgramName(char* out, size_t len) {
  if (len == 0) return;
  char buf[512];
  const long n = ReadSmallFile("/proc/self/cmdline", buf, sizeof(buf));
  if (n <= 0) {
    out[0] = len > 1 ? '?' : '\0';
    if (len > 1) out[1] = '\0';
    return;
  }
  buf[n] = '\0';  // argv[0] ends at the first NUL (or here if it was cut)
  const char* name = buf;
  for (const char* c = buf; *c != '\0'; ++c) {
    if (*c == '/' && c[1] != '\0') name = c + 1;
  }
  size_t i = 0;
  for (; name[i] != '\0' && i + 1 < len; ++i) out[i] = name[i];
  out[i] = '\0';
}

bool CurrentDirectory(char* out, size_t len) {
  int saved_errno = errno;
  bool ok = getcwd(out, len) != nullptr;  // the glibc wrapper allocates only when out is NULL
  errno = saved_errno;
  return ok;
}

char* const* Environment() { return environ; }

bool InstallSignalHandler(int sig, void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, nullptr) == 0;
}

}  // namespace jsmalloc::os
