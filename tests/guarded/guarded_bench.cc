// Cost of guarded sampling (docs/reliability.md): times malloc+free
// pairs of one size. Run it under different environments, e.g.
//   JSMALLOC_SAMPLE_INTERVAL=1 JSMALLOC_GUARDED_RATE=0   every pair sampled
//   JSMALLOC_SAMPLE_INTERVAL=1 JSMALLOC_GUARDED_RATE=1   every pair guarded
// the difference per pair is the cost of guarding one allocation (and its
// free). Usage: jsmalloc_guarded_bench [pairs] [size] [live]
// `live` blocks stay allocated throughout (they hold slots).
#include <jsmalloc/jsmalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <vector>

static double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

int main(int argc, char** argv) {
  long pairs = argc > 1 ? atol(argv[1]) : 200000;
  size_t size = argc > 2 ? static_cast<size_t>(atol(argv[2])) : 64;
  long live = argc > 3 ? atol(argv[3]) : 0;
  std::vector<void*> held;
  for (long i = 0; i < live; ++i) held.push_back(malloc(size));
  // Warm up (the pool is made, slots are touched once).
  for (long i = 0; i < 1000; ++i) free(malloc(size));
  double t0 = Now();
  for (long i = 0; i < pairs; ++i) {
    char* p = static_cast<char*>(malloc(size));
    p[0] = static_cast<char>(i);
    p[size - 1] = 1;
    free(p);
  }
  double t1 = Now();
  size_t guarded = 0, samples = 0;
  jsmalloc_get_numeric_property("jsmalloc.sampling.samples_total", &samples);
  jsmalloc_get_numeric_property("jsmalloc.guarded.allocations_total", &guarded);
  printf("size %zu pairs %ld: %.3f us per malloc+free (samples so far: %zu, guarded allocations: %zu)\n", size, pairs,
         (t1 - t0) * 1e6 / static_cast<double>(pairs), samples, guarded);
  for (void* p : held) free(p);
  return 0;
}
