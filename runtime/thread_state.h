// The calling thread's allocator state (one initial-exec TLS block): its
// cache and its sampling countdown. Apart from allocator.h so that the code
// that only attaches or detaches caches (thread_lifecycle.cc) needs nothing
// of the allocation paths.
#ifndef JSMALLOC_RUNTIME_THREAD_STATE_H_
#define JSMALLOC_RUNTIME_THREAD_STATE_H_

#include <cstdint>

namespace jsmalloc {

class ThreadCache;

struct ThreadState {
  ThreadCache* cache;  // null until the thread's first allocation
  // The cache free() may push to directly: `cache`, except with several NUMA
  // partitions, where a free must first find the object's home (FreeSlow).
  ThreadCache* free_cache;
  bool in_setup;       // creating the cache (calls that may re-enter malloc)
  bool dead;           // cache destroyed at thread exit; use the middle-end
  // Heap sampling (runtime/sampler.h). Bytes left before the next sample;
  // below zero sends the allocation to AllocateSampleSlow. Zero in a new
  // thread, so that its first allocation draws the first interval.
  int64_t bytes_until_sample;
  uint64_t sample_rng;  // the thread's generator (0: not seeded yet)
  bool sample_armed;    // bytes_until_sample leads to a sample point
  bool in_sampler;      // taking a sample or writing a profile: not sampled
};

extern __thread ThreadState t_state __attribute__((tls_model("initial-exec")));

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_THREAD_STATE_H_
