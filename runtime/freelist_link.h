// The links of free objects in per-thread lists and span free lists: the
// next pointer stored in the object's first word. Hardened mode
// (JSMALLOC_HARDENED=1, or the CMake option JSMALLOC_HARDENED_DEFAULT)
// stores it XOR a per-process random key, and every link read back is
// checked to lead to an object of the same size class: a use-after-free
// write into a free object then aborts instead of steering the next
// allocations to an address of the attacker's choosing. The per-CPU caches
// keep their objects in arrays outside the objects and need none of this.
#ifndef JSMALLOC_RUNTIME_FREELIST_LINK_H_
#define JSMALLOC_RUNTIME_FREELIST_LINK_H_

#include <cstdint>

#include "os/linux/os_memory.h"
#include "runtime/pagemap.h"

namespace jsmalloc {

// 0 when hardened mode is off: the links are plain pointers.
extern constinit uintptr_t g_link_key __attribute__((visibility("hidden")));
extern constinit PageMap g_pagemap __attribute__((visibility("hidden")));

// Sets the key once at initialisation (before any object is freed).
void InitFreelistLinks(bool hardened);

JSMALLOC_ALWAYS_INLINE void StoreLink(void* obj, void* next) {
  *static_cast<uintptr_t*>(obj) = reinterpret_cast<uintptr_t>(next) ^ g_link_key;
}

[[noreturn]] void CorruptLink(const void* obj);

// The next object after obj in a list of class cl (pm: the pagemap the
// objects are recorded in).
JSMALLOC_ALWAYS_INLINE void* LoadLink(const void* obj, int cl, const PageMap& pm = g_pagemap) {
  uintptr_t key = g_link_key;
  void* next = reinterpret_cast<void*>(*static_cast<const uintptr_t*>(obj) ^ key);
  if (JSMALLOC_UNLIKELY(key != 0) && next != nullptr && pm.SizeClassOf(next) != cl) {
    CorruptLink(obj);
  }
  return next;
}

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_FREELIST_LINK_H_
