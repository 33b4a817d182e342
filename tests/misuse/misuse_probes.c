/* Heap-misuse probes for docs/reliability.md's table, run under any
 * allocator (LD_PRELOAD): `misuse_probes NAME` runs one probe and, if the
 * allocator let the program go on, keeps allocating as a program would and
 * reports what it got. Exit status and stderr say what happened:
 *   killed by SIGABRT with the address on stderr: caught with a message
 *   killed by another signal: crashed (caught, but with no message)
 *   exit 3: a block was handed out twice, or allocation was steered
 *   "probe: a block was handed out twice" on stderr before an abort: caught
 *   late, after the harm
 *   exit 0: nothing noticed
 * `misuse_probes --list` prints the probe names. Plain C, no dependencies. */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void* volatile sink;
static void* opaque(void* p) {
  sink = p;
  return sink;
}

/* After the misuse: the next allocations of the size; two equal ones, or one
 * equal to a block still in use, mean the allocator hands out a block twice. */
static int handed_twice(size_t size, void* live) {
  void* got[64];
  int bad = 0;
  for (int i = 0; i < 64; ++i) {
    got[i] = malloc(size);
    int twice = got[i] == live;
    for (int j = 0; j < i; ++j) twice |= got[j] == got[i];
    /* Said at once: an allocator may still abort later (when the program's
     * writes into the block trip it), after the harm. */
    if (twice && !bad) fprintf(stderr, "probe: a block was handed out twice\n");
    bad |= twice;
    if (got[i] != NULL) memset(got[i], 0x5a, size);
  }
  return bad;
}

static int finish(int bad) {
  if (bad) return 3;
  fprintf(stderr, "probe: not detected\n");
  return 0;
}

static int immediate_double_free(void) {
  void* p = malloc(64);
  free(p);
  free(opaque(p));
  return finish(handed_twice(64, NULL));
}

static int delayed_double_free(void) {
  void* p = malloc(64);
  void* q = malloc(64);
  free(p);
  free(q);
  free(opaque(p));
  return finish(handed_twice(64, NULL));
}

static void* free_it(void* p) {
  free(p);
  return NULL;
}

static int cross_thread_double_free(void) {
  void* p = malloc(64);
  void* q = malloc(64);
  free(p);
  free(q);
  pthread_t t;
  pthread_create(&t, NULL, free_it, opaque(p));
  pthread_join(t, NULL);
  return finish(handed_twice(64, NULL));
}

/* The same, then the caches are drained (malloc_trim here; an idle CPU's
 * drain or a thread's exit does the same) before the program allocates
 * again. */
static int double_free_then_trim(int cross_thread) {
  void* v[100];
  for (int i = 0; i < 100; ++i) v[i] = malloc(64);
  void* p = v[10];
  free(p);
  free(v[11]);
  if (cross_thread) {
    pthread_t t;
    pthread_create(&t, NULL, free_it, opaque(p));
    pthread_join(t, NULL);
  } else {
    free(opaque(p));
  }
  malloc_trim(0);
  return finish(handed_twice(64, NULL));
}
static int delayed_double_free_then_trim(void) { return double_free_then_trim(0); }
static int cross_thread_double_free_then_trim(void) { return double_free_then_trim(1); }

static int interior(size_t offset) {
  char* p = malloc(64);
  free(opaque(p + offset));
  return finish(handed_twice(64, p));
}

static int stack_pointer(void) {
  char buf[64];
  free(opaque(buf + 16));
  return finish(0);
}

static char global_block[64];
static int global_pointer(void) {
  free(opaque(global_block));
  return finish(0);
}

static int realloc_freed(void) {
  void* p = malloc(64);
  free(p);
  void* q = realloc(opaque(p), 48); /* fits in place */
  return finish(handed_twice(64, q));
}

static int large_double_free(void) {
  void* p = malloc(1 << 20);
  free(p);
  free(opaque(p));
  return finish(handed_twice(1 << 20, NULL));
}

/* A use after free writes an address into the first word of freed blocks
 * (where most allocators keep their free-list link). Steered: a later
 * allocation returns that address. */
static char target[4096] __attribute__((aligned(64)));
static int link_overwrite(void) {
  void* v[256];
  for (int i = 0; i < 256; ++i) v[i] = malloc(64);
  for (int i = 0; i < 256; i += 2) free(v[i]);
  for (int i = 0; i < 256; i += 2) *(void**)v[i] = target;
  for (int i = 0; i < 4096; ++i) {
    if (malloc(64) == (void*)target) {
      fprintf(stderr, "probe: allocation steered to the written address\n");
      return 3;
    }
  }
  return finish(0);
}

struct probe {
  const char* name;
  int (*run)(void);
  size_t offset;
};

static int interior8(void) { return interior(8); }
static int interior16(void) { return interior(16); }

static const struct probe probes[] = {
    {"immediate_double_free", immediate_double_free, 0},
    {"delayed_double_free", delayed_double_free, 0},
    {"cross_thread_double_free", cross_thread_double_free, 0},
    {"delayed_double_free_then_trim", delayed_double_free_then_trim, 0},
    {"cross_thread_double_free_then_trim", cross_thread_double_free_then_trim, 0},
    {"interior_plus_8", interior8, 0},
    {"interior_plus_16", interior16, 0},
    {"stack_pointer", stack_pointer, 0},
    {"global_pointer", global_pointer, 0},
    {"realloc_freed", realloc_freed, 0},
    {"large_double_free", large_double_free, 0},
    {"link_overwrite", link_overwrite, 0},
};

int main(int argc, char** argv) {
  size_t n = sizeof(probes) / sizeof(probes[0]);
  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < n; ++i) printf("%s\n", probes[i].name);
    return 0;
  }
  for (size_t i = 0; argc == 2 && i < n; ++i) {
    if (strcmp(argv[1], probes[i].name) == 0) return probes[i].run();
  }
  fprintf(stderr, "usage: %s --list | PROBE\n", argv[0]);
  return 2;
}
