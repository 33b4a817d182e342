// The allocator's pseudo-random numbers: xorshift64* over one 64-bit word of
// state, seeded through splitmix64. Fast and small (a thread keeps its state
// in a word of its TLS); statistically fine for sampling decisions and
// placement choices, and not meant for anything an attacker must not guess.
#ifndef JSMALLOC_BASE_RANDOM_H_
#define JSMALLOC_BASE_RANDOM_H_

#include <cstdint>

namespace jsmalloc {

// A generator state from any salt (splitmix64 of it: nearby salts give
// unrelated states). Never 0.
inline uint64_t RandomSeed(uint64_t salt) {
  uint64_t z = salt + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return z != 0 ? z : 0x2545f4914f6cdd1dull;
}

// The next value of the xorshift64* generator whose state is *state (which
// must not be 0, and never becomes 0).
inline uint64_t NextRandom(uint64_t* state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545f4914f6cdd1dull;
}

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_RANDOM_H_
