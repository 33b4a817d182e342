/*
 * fastpath: malloc/free pairs for counting instructions under callgrind.
 *
 *   fastpath hot   K    K pairs of malloc(64) + free
 *   fastpath live  K    the same with LIVE_OBJECTS other 64 B objects live
 *                       throughout: the object freed is never the last of its
 *                       page or span (in hot, an allocator that retires an
 *                       emptied page, as mimalloc does, pays for that on
 *                       every pair, which no program with a heap does)
 *   fastpath mixed K    K pairs over a fixed pseudo-random sequence of sizes
 *                       16..2048 B, keeping a ring of live objects: each pair
 *                       frees the oldest object and allocates a new one
 *
 * Both modes first run a fixed warm-up (the same for every K), so running the
 * program for two values of K and subtracting the instruction counts leaves
 * the cost of K2 - K1 pairs alone: start-up, warm-up and exit cancel.
 *
 * Links with no allocator: callgrind_pairs preloads the one under test. Built
 * with -fno-builtin-malloc -fno-builtin-free, and each pointer escapes through
 * an empty asm statement, so every call reaches the allocator.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WARMUP_PAIRS 20000
#define LIVE_OBJECTS 256  /* 64 B objects kept live in the live mode */
#define RING_SLOTS 32     /* live objects of the mixed mode */
#define SEQ_LEN 4096      /* length of the size sequence (a power of two) */

/* Sizes of the mixed mode, small ones listed more than once so that they
 * come up more often, as in most heaps. 23 entries: the sequence does not
 * line up with the ring. */
static const unsigned kSizes[] = {16,  16,  24,  32,  32,  48,  64,  64,
                                  80,  96,  128, 128, 160, 192, 256, 320,
                                  384, 512, 640, 768, 1024, 1536, 2048};

static unsigned short g_seq[SEQ_LEN];

static inline void escape(void* p) { __asm__ volatile("" : : "r"(p) : "memory"); }

static inline void use(void* p) {
  escape(p);
  *(volatile char*)p = 1;
}

static __attribute__((noinline)) void hot_pairs(long n) {
  for (long i = 0; i < n; i++) {
    void* p = malloc(64);
    use(p);
    free(p);
  }
}

static void* g_ring[RING_SLOTS];

static __attribute__((noinline)) void mixed_pairs(long n, unsigned* pos) {
  unsigned k = *pos;
  for (long i = 0; i < n; i++, k++) {
    unsigned slot = k % RING_SLOTS;
    free(g_ring[slot]);
    void* p = malloc(g_seq[k % SEQ_LEN]);
    use(p);
    g_ring[slot] = p;
  }
  *pos = k;
}

static void make_sequence(void) {
  uint64_t x = 0x9e3779b97f4a7c15ULL; /* xorshift64, fixed seed */
  for (unsigned i = 0; i < SEQ_LEN; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    g_seq[i] = (unsigned short)kSizes[x % (sizeof(kSizes) / sizeof(kSizes[0]))];
  }
}

static int usage(const char* argv0) {
  fprintf(stderr, "usage: %s hot|live|mixed PAIRS\n", argv0);
  return 2;
}

int main(int argc, char** argv) {
  if (argc != 3) return usage(argv[0]);
  char* end = NULL;
  long pairs = strtol(argv[2], &end, 10);
  if (end == argv[2] || *end != '\0' || pairs < 0) return usage(argv[0]);

  if (strcmp(argv[1], "hot") == 0) {
    hot_pairs(WARMUP_PAIRS);
    hot_pairs(pairs);
  } else if (strcmp(argv[1], "live") == 0) {
    static void* live[LIVE_OBJECTS];
    for (unsigned i = 0; i < LIVE_OBJECTS; i++) {
      live[i] = malloc(64);
      use(live[i]);
    }
    hot_pairs(WARMUP_PAIRS);
    hot_pairs(pairs);
    for (unsigned i = 0; i < LIVE_OBJECTS; i++) free(live[i]);
  } else if (strcmp(argv[1], "mixed") == 0) {
    make_sequence();
    unsigned pos = 0;
    for (unsigned i = 0; i < RING_SLOTS; i++) {
      g_ring[i] = malloc(g_seq[pos++ % SEQ_LEN]);
      use(g_ring[i]);
    }
    mixed_pairs(WARMUP_PAIRS, &pos);
    mixed_pairs(pairs, &pos);
    for (unsigned i = 0; i < RING_SLOTS; i++) free(g_ring[i]);
  } else {
    return usage(argv[0]);
  }
  return 0;
}
