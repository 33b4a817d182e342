#include "os/os.h"

#include <pthread.h>
#include <signal.h>

namespace jsmalloc::os {

bool StartHelperThread(void* (*fn)(void*), const char* name, size_t stack_bytes) {
  // The new thread inherits the creator's mask: block everything around the
  // creation, then restore the caller's.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t tid;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (stack_bytes != 0) pthread_attr_setstacksize(&attr, stack_bytes);
  int rc = pthread_create(&tid, &attr, fn, nullptr);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) return false;
  pthread_setname_np(tid, name);
  return true;
}

}  // namespace jsmalloc::os
