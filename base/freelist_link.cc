#include "base/freelist_link.h"

#include "os/os.h"

namespace jsmalloc {

constinit uintptr_t g_link_key = 0;
constinit bool g_link_validate = false;

void InitFreelistLinks(bool hardened) {
  // Differs per process and per run: the kernel's random bytes for this
  // exec, the clock (a forked child keeps its parent's key, as it keeps its
  // lists) and an ASLR'd address, mixed.
  uint64_t x = os::KernelRandom64() ^ os::MonotonicNanos() ^
               (reinterpret_cast<uintptr_t>(&g_link_key) * 0xff51afd7ed558ccdull);
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  g_link_key = x | (uint64_t{1} << 63);
  g_link_validate = hardened;
}

void CorruptLink(const void* obj) {
  os::FatalError("corrupted free-list link (a write to freed memory?) in the free object at", obj);
}

}  // namespace jsmalloc
