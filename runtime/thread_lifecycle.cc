#include "runtime/thread_lifecycle.h"

#include <pthread.h>

#include "runtime/heap_check.h"
#include "runtime/static_state.h"
#include "runtime/thread_state.h"

namespace jsmalloc {
namespace {

pthread_key_t thread_key;

void DestroyThreadCache(void* arg) {
  ThreadCache* tc = static_cast<ThreadCache*>(arg);
  // Anything this thread allocates from now on (later TLS destructors) goes
  // straight to the middle-end.
  t_state.cache = nullptr;
  t_state.free_cache = nullptr;
  t_state.dead = true;
  S().registry.Destroy(tc);
}

}  // namespace

bool CreateThreadKey() { return pthread_key_create(&thread_key, &DestroyThreadCache) == 0; }

// Used by the allocator paths to attach a cache to the calling thread.
ThreadCache* CreateThreadCache() {
  if (t_state.dead || t_state.in_setup || !Static::thread_key_ready()) return nullptr;
  t_state.in_setup = true;
  int p = Static::CurrentPartition();
  ThreadCache* tc = S().registry.Create(S().parts[p]->transfer, p);
  if (tc != nullptr) {
    t_state.cache = tc;
    // With partitions every free checks the object's home first (FreeSlow).
    t_state.free_cache = S().num_parts > 1 || g_check_mode ? nullptr : tc;
    // May allocate (keys beyond the first 32); that allocation sees the cache.
    pthread_setspecific(thread_key, tc);
  }
  t_state.in_setup = false;
  return tc;
}

// The next allocation makes a new one.
void ReleaseThreadCache() {
  ThreadCache* tc = t_state.cache;
  if (tc == nullptr || t_state.in_setup) return;
  t_state.cache = nullptr;
  t_state.free_cache = nullptr;
  if (Static::thread_key_ready()) pthread_setspecific(thread_key, nullptr);
  S().registry.Destroy(tc);
}

}  // namespace jsmalloc
