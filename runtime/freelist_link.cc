#include "runtime/freelist_link.h"

#include "os/linux/clock.h"

namespace jsmalloc {

constinit uintptr_t g_link_key = 0;

void InitFreelistLinks(bool hardened) {
  if (!hardened) return;
  // Differs per process and per run (clock and ASLR'd address); the high
  // bits make a decoded garbage link land outside the address space.
  uint64_t x = os::MonotonicNanos() ^ (reinterpret_cast<uintptr_t>(&g_link_key) * 0xff51afd7ed558ccdull);
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  g_link_key = x | (uint64_t{1} << 63);
}

void CorruptLink(const void* obj) {
  os::FatalError("corrupted free-list link (a write to freed memory?) in the free object at", obj);
}

}  // namespace jsmalloc
