// Drives the allocator into the situations that fire each USDT probe, one
// scenario per run (argv[1]), and prints what the probes should report as
// "EXPECT key=value" lines for tests/probes/probe_test.py to compare with the
// events bpftrace saw. Built twice: statically linked with libjsmalloc.a (so
// that `bpftrace -c` finds the probes in the executable itself) and linked
// with libjsmalloc.so.
#include <malloc.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vector>

#include "jsmalloc/jsmalloc.h"
#include "base/size_map.h"
#ifdef JSMALLOC_PROBE_WORKLOAD_STATIC
#include "probes/jsmalloc_probes.h"
#endif

namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kHugePage = 2 * kMiB;

void Expect(const char* key, unsigned long long value) {
  printf("EXPECT %s=%llu\n", key, value);
  fflush(stdout);
}

[[noreturn]] void Die(const char* what) {
  fprintf(stderr, "probe_workload: %s\n", what);
  exit(1);
}

void* MustMalloc(size_t n) {
  void* p = malloc(n);
  if (p == nullptr) Die("malloc failed");
  memset(p, 1, n < 4096 ? n : 4096);
  return p;
}

uintptr_t SpanStart(const void* p, size_t* bytes) {
  void* start = nullptr;
  if (!jsmalloc_get_span_extent(p, &start, bytes)) Die("no span for a live object");
  return reinterpret_cast<uintptr_t>(start);
}

void ExpectClass(size_t size) {
  int cl = jsmalloc::SizeMap::ClassFor(size);
  Expect("cl", static_cast<unsigned long long>(cl));
  Expect("class_pages", jsmalloc::SizeMap::ClassPages(cl));
  Expect("class_objects", jsmalloc::SizeMap::ObjectsPerSpan(cl));
  Expect("page_size", jsmalloc::kPageSize);
}

// Objects of one size class: spans come from the back-end, objects go through
// the central free list and overflow the transfer cache on the way back, and
// the emptied spans return to the back-end on malloc_trim.
void Spans() {
  constexpr size_t kSize = 1024;
  ExpectClass(kSize);
  std::vector<void*> objs;
  for (size_t i = 0; i < 16 * kMiB / kSize; ++i) objs.push_back(MustMalloc(kSize));
  size_t bytes = 0;
  Expect("span_addr", SpanStart(objs[objs.size() / 2], &bytes));
  Expect("span_bytes", bytes);
  Expect("objects", objs.size());
  for (void* p : objs) free(p);
  malloc_trim(0);
}

// Small spans filling whole hugepages: hugepages taken from the OS and filled.
void Fill() {
  constexpr size_t kSize = 1024;
  std::vector<void*> objs;
  for (size_t i = 0; i < 32 * kMiB / kSize; ++i) objs.push_back(MustMalloc(kSize));
  for (void* p : objs) free(p);
}

// Hugepages half used (every other span freed) are subreleased by
// malloc_trim (broken), refilled (filled while broken, collapsed with
// JSMALLOC_COLLAPSE=1), then freed and released.
void Break() {
  constexpr size_t kSize = 1024;
  ExpectClass(kSize);
  std::vector<void*> objs, kept;
  for (size_t i = 0; i < 32 * kMiB / kSize; ++i) objs.push_back(MustMalloc(kSize));
  size_t freed = 0;
  for (void* p : objs) {
    size_t bytes;
    uintptr_t s = SpanStart(p, &bytes);
    if ((s / bytes) % 2 == 1) {
      free(p);
      ++freed;
    } else {
      kept.push_back(p);
    }
  }
  Expect("freed", freed);
  malloc_trim(0);  // empties the odd spans, then subreleases their pages
  printf("PHASE refill\n");
  fflush(stdout);
  for (size_t i = 0; i < freed; ++i) kept.push_back(MustMalloc(kSize));
  printf("PHASE free\n");
  fflush(stdout);
  for (void* p : kept) free(p);
  malloc_trim(0);
}

// Whole-hugepage allocations: a hugepage-cache miss, then a hit on the same
// hugepages, then an explicit release of 64 MiB. The first block is the
// largest freed yet, so its free releases it (JSMALLOC_RELEASE_GROWING) and
// the next one misses again; the one after that reuses backed hugepages.
void Large() {
  constexpr size_t kSize = 4 * kMiB;
  void* a = MustMalloc(kSize);
  Expect("miss_addr", reinterpret_cast<uintptr_t>(a));
  Expect("hugepages", kSize / kHugePage);
  free(a);
  void* again = MustMalloc(kSize);
  free(again);  // not larger than the first: kept backed
  void* b = MustMalloc(kSize);
  Expect("hit_addr", reinterpret_cast<uintptr_t>(b));
  free(b);
  Expect("release_request", 64 * kMiB);
  size_t got = jsmalloc_release_memory_to_os(64 * kMiB);
  Expect("released", got);
}

// A block of a few hugepages that is not a whole number of them: served from
// a region, which is freed with it.
void Region() {
  void* p = MustMalloc(3 * kMiB + 64 * 1024);
  Expect("block_addr", reinterpret_cast<uintptr_t>(p));
  free(p);
}

// Free memory for the background thread to release at a high rate.
void Background() {
  void* p = MustMalloc(64 * kMiB);
  memset(p, 1, 64 * kMiB);
  free(p);
  jsmalloc_set_background_release_rate(256 * kMiB);
  if (!jsmalloc_start_background_thread()) Die("background thread did not start");
  usleep(2300 * 1000);  // two cycles
}

// A soft limit exceeded (the allocation stands), then a hard one (refused).
void Limit() {
  Expect("page_size", jsmalloc::kPageSize);
  std::vector<void*> blocks;
  blocks.reserve(64);
  Expect("soft_limit", 32 * kMiB);
  jsmalloc_set_memory_limit(32 * kMiB, 0);
  for (int i = 0; i < 48; ++i) blocks.push_back(MustMalloc(kMiB));
  for (void* p : blocks) free(p);
  blocks.clear();
  Expect("hard_limit", 16 * kMiB);
  jsmalloc_set_memory_limit(16 * kMiB, 1);
  int refused = 0;
  for (int i = 0; i < 64; ++i) {
    void* p = malloc(kMiB);
    if (p == nullptr) {
      ++refused;
      break;
    }
    memset(p, 1, kMiB);
    blocks.push_back(p);
  }
  Expect("refused", refused);
  for (void* p : blocks) free(p);
  jsmalloc_set_memory_limit(0, 0);
}

// Allocations for the heap sampler (run with a small JSMALLOC_SAMPLE_INTERVAL):
// 4000 blocks of 10000 bytes, all freed.
// NUMA-aware mode on an injected two-node topology (JSMALLOC_NUMA_AWARE=1,
// JSMALLOC_NUMA_TOPOLOGY=0/1): everything runs pinned to CPU 1, so the
// back-end and central-list events it causes must carry node 1.
void Numa() {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(1, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) Die("cannot pin to CPU 1");
  constexpr size_t kSize = 1024;
  ExpectClass(kSize);
  std::vector<void*> objs;
  for (size_t i = 0; i < 4 * kMiB / kSize; ++i) objs.push_back(MustMalloc(kSize));
  void* big = MustMalloc(8 * kMiB);
  Expect("node_small", static_cast<unsigned long long>(jsmalloc_get_numa_node(objs[0])));
  Expect("node_big", static_cast<unsigned long long>(jsmalloc_get_numa_node(big)));
  for (void* p : objs) free(p);
  free(big);
  malloc_trim(0);
}

void Sampled() {
  std::vector<void*> blocks;
  for (int i = 0; i < 4000; ++i) blocks.push_back(MustMalloc(10000));
  Expect("size", 10000);
  Expect("bytes", 4000 * 10000);
  for (void* p : blocks) free(p);
}

#ifdef JSMALLOC_PROBE_WORKLOAD_STATIC
// Two allocation sites reporting sampled allocations (as the heap sampler
// will), for top_sampled_sites.bt: the big site 30 x 100000 bytes, the small
// one 10 x 1000 bytes; half of the big site's samples are freed.
extern "C" __attribute__((noinline)) void* SampleSiteBig() {
  void* p = MustMalloc(100000);
  jsmalloc::ProbeSampleAlloc(p, 100000, jsmalloc_get_allocated_size(p));
  return p;
}

extern "C" __attribute__((noinline)) void* SampleSiteSmall() {
  void* p = MustMalloc(1000);
  jsmalloc::ProbeSampleAlloc(p, 1000, jsmalloc_get_allocated_size(p));
  return p;
}

void Samples() {
  std::vector<void*> big, small;
  for (int i = 0; i < 30; ++i) big.push_back(SampleSiteBig());
  for (int i = 0; i < 10; ++i) small.push_back(SampleSiteSmall());
  Expect("big_bytes", 30 * 100000);
  Expect("small_bytes", 10 * 1000);
  for (size_t i = 0; i < big.size(); i += 2) {
    jsmalloc::ProbeSampleFree(big[i], 100000);
    free(big[i]);
  }
  Expect("big_freed_bytes", 15 * 100000);
}

// The probe helpers other components call (per-CPU cache resizing, heap
// sampling), with known arguments.
void Helpers() {
  void* p = MustMalloc(1000);
  Expect("ptr", reinterpret_cast<uintptr_t>(p));
  jsmalloc::ProbeCpuCacheResize(1, 7, 16, 48);
  jsmalloc::ProbeSampleAlloc(p, 1000, jsmalloc_get_allocated_size(p));
  Expect("allocated", jsmalloc_get_allocated_size(p));
  jsmalloc::ProbeSampleFree(p, 1000);
  free(p);
}
#endif

// With PROBE_WORKLOAD_WAIT=1 the scenario waits for a line on stdin before it
// starts (so a tracer can attach with -p first) and the process stays alive
// after it until stdin closes (so the tracer can resolve its symbols).
void WaitForStdin(bool until_eof) {
  char line[64];
  while (fgets(line, sizeof(line), stdin) != nullptr) {
    if (!until_eof) return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s spans|fill|break|large|region|background|limit|sampled|numa|helpers|samples\n",
            argv[0]);
    return 2;
  }
  void* probe = malloc(16);
  if (!jsmalloc_get_ownership(probe)) Die("malloc is not JSMalloc's");
  free(probe);
  const char* wait = getenv("PROBE_WORKLOAD_WAIT");
  const bool wait_mode = wait != nullptr && strcmp(wait, "1") == 0;
  if (wait_mode) {
    printf("READY %d\n", static_cast<int>(getpid()));
    fflush(stdout);
    WaitForStdin(false);
  }
  Expect("pid", static_cast<unsigned long long>(getpid()));
  const char* s = argv[1];
  if (!strcmp(s, "spans")) Spans();
  else if (!strcmp(s, "fill")) Fill();
  else if (!strcmp(s, "break")) Break();
  else if (!strcmp(s, "large")) Large();
  else if (!strcmp(s, "region")) Region();
  else if (!strcmp(s, "background")) Background();
  else if (!strcmp(s, "limit")) Limit();
  else if (!strcmp(s, "sampled")) Sampled();
  else if (!strcmp(s, "numa")) Numa();
#ifdef JSMALLOC_PROBE_WORKLOAD_STATIC
  else if (!strcmp(s, "helpers")) Helpers();
  else if (!strcmp(s, "samples")) Samples();
#endif
  else Die("unknown scenario");
  printf("DONE %s\n", s);
  fflush(stdout);
  if (wait_mode) WaitForStdin(true);
  return 0;
}
