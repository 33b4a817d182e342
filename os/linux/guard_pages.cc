#include "os/os.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "os/linux/os_memory.h"

namespace jsmalloc::os {

namespace {

// "[anon:jsmalloc-guarded]" in /proc/PID/maps. After MakeInaccessible
// replaced part of the pool, the piece is renamed so that it merges back
// with its neighbours.
void NameRange(void* p, size_t bytes) { NameMapping(p, bytes, "jsmalloc-guarded"); }

constinit std::atomic<FaultCallback> g_callback{nullptr};
// 0: not installed, 1: being installed, 2: installed, 3: sigaction failed.
constinit std::atomic<int> g_install_state{0};
struct sigaction g_prev_segv;
struct sigaction g_prev_bus;
// The executable's path and load base: dladdr names the main program by
// argv[0] (often relative) or "". Read when the handler is installed, so
// that a report needs no system call for them.
char g_exe_path[512];
uintptr_t g_exe_base = 0;

FaultAccess AccessOf(int sig, void* uctx) {
#if defined(__x86_64__) && defined(REG_ERR)
  if (sig == SIGSEGV && uctx != nullptr) {
    // The page-fault error code: bit 1 set for a write.
    const ucontext_t* uc = static_cast<const ucontext_t*>(uctx);
    return (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0 ? FaultAccess::kWrite : FaultAccess::kRead;
  }
#endif
  return FaultAccess::kUnknown;
}

void OnFault(int sig, siginfo_t* info, void* uctx) {
  int saved_errno = errno;
  FaultCallback cb = g_callback.load(std::memory_order_acquire);
  // si_code > 0: sent by the kernel for a fault (not by kill or raise).
  if (cb != nullptr && info != nullptr && info->si_code > 0 &&
      cb(reinterpret_cast<uintptr_t>(info->si_addr), AccessOf(sig, uctx))) {
    errno = saved_errno;
    return;
  }
  // Not ours: whatever handled this signal before us.
  const struct sigaction* prev = sig == SIGSEGV ? &g_prev_segv : &g_prev_bus;
  if ((prev->sa_flags & SA_SIGINFO) != 0 && prev->sa_sigaction != nullptr) {
    errno = saved_errno;
    prev->sa_sigaction(sig, info, uctx);
    return;
  }
  if ((prev->sa_flags & SA_SIGINFO) == 0 && prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
    errno = saved_errno;
    prev->sa_handler(sig);
    return;
  }
  // The default action (SIG_IGN cannot stop a fault either): restore it.
  // Returning re-executes the access, which faults again and ends the
  // process as if we had never been installed; a signal sent by kill() is
  // raised again (it is blocked until this handler returns).
  struct sigaction dfl;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  if (info == nullptr || info->si_code <= 0) raise(sig);
  errno = saved_errno;
}

}  // namespace

void* ReserveInaccessible(size_t bytes) {
  int saved_errno = errno;
  void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  errno = saved_errno;
  if (p == MAP_FAILED) return nullptr;
  NameRange(p, bytes);
  errno = saved_errno;
  return p;
}

bool MakeAccessible(void* p, size_t bytes) {
  int saved_errno = errno;
  bool ok = mprotect(p, bytes, PROT_READ | PROT_WRITE) == 0;
  errno = saved_errno;
  return ok;
}

bool MakeInaccessible(void* p, size_t bytes) {
  int saved_errno = errno;
  void* q = mmap(p, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  bool ok = q == p;
  if (!ok) {
    // Could not replace the pages (out of mappings): at least protect them.
    ok = mprotect(p, bytes, PROT_NONE) == 0;
    if (ok) madvise(p, bytes, MADV_DONTNEED);
  } else {
    NameRange(p, bytes);
  }
  errno = saved_errno;
  return ok;
}

bool InstallFaultHandler(FaultCallback callback) {
  int expected = 0;
  if (!g_install_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    while (expected == 1) {  // another thread is installing it
      sched_yield();
      expected = g_install_state.load(std::memory_order_acquire);
    }
    return expected == 2;
  }
  int saved_errno = errno;
  ssize_t len = readlink("/proc/self/exe", g_exe_path, sizeof(g_exe_path) - 1);
  g_exe_path[len > 0 ? len : 0] = '\0';
  Dl_info exe;
  unsigned long phdr = getauxval(AT_PHDR);
  if (phdr != 0 && dladdr(reinterpret_cast<void*>(phdr), &exe) != 0) {
    g_exe_base = reinterpret_cast<uintptr_t>(exe.dli_fbase);
  }
  g_callback.store(callback, std::memory_order_release);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = &OnFault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  bool ok = sigaction(SIGSEGV, &sa, &g_prev_segv) == 0;
  if (ok && sigaction(SIGBUS, &sa, &g_prev_bus) != 0) {
    sigaction(SIGSEGV, &g_prev_segv, nullptr);
    ok = false;
  }
  errno = saved_errno;
  g_install_state.store(ok ? 2 : 3, std::memory_order_release);
  return ok;
}

int CurrentThreadId() { return static_cast<int>(syscall(SYS_gettid)); }

bool DescribePc(uintptr_t pc, PcInfo* out) {
  Dl_info info;
  memset(&info, 0, sizeof(info));
  if (dladdr(reinterpret_cast<void*>(pc), &info) == 0) return false;
  const bool main_program = info.dli_fname == nullptr || info.dli_fname[0] == '\0' ||
                            (g_exe_base != 0 && reinterpret_cast<uintptr_t>(info.dli_fbase) == g_exe_base);
  out->module = !main_program ? info.dli_fname : g_exe_path[0] != '\0' ? g_exe_path : "(main program)";
  out->module_base = reinterpret_cast<uintptr_t>(info.dli_fbase);
  out->symbol = info.dli_sname;
  out->symbol_addr = reinterpret_cast<uintptr_t>(info.dli_saddr);
  return true;
}

void SleepForever() {
  for (;;) {
    struct timespec ts = {1, 0};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace jsmalloc::os
