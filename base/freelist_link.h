// The links of free objects in per-thread lists and span free lists: the
// next pointer stored in the object's first word, always XOR a per-process
// random key whose top bit is set (in the spirit of glibc's safe-linking).
// A use-after-free write of a plain address (or of zeros) into a free
// object's link therefore decodes to a value with the top bit set, which no
// user-space address has: the read aborts with a message instead of steering
// the next allocations to an address of the writer's choosing, which would
// need the key. Hardened mode (JSMALLOC_HARDENED=1, or the CMake option
// JSMALLOC_HARDENED_DEFAULT) also checks that every link read leads to an
// object of the same size class. The per-CPU caches keep their objects in
// arrays outside the objects and need none of this.
#ifndef JSMALLOC_BASE_FREELIST_LINK_H_
#define JSMALLOC_BASE_FREELIST_LINK_H_

#include <cstdint>

#include "os/os.h"
#include "base/pagemap.h"

namespace jsmalloc {

// 0 until InitFreelistLinks (components built without the process-wide
// allocator, as unit tests do, keep plain links), then random with bit 63 set.
extern constinit uintptr_t g_link_key __attribute__((visibility("hidden")));
// Hardened mode: links also checked against the pagemap.
extern constinit bool g_link_validate __attribute__((visibility("hidden")));
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
  intptr_t next = static_cast<intptr_t>(*static_cast<const uintptr_t*>(obj) ^ g_link_key);
  if (JSMALLOC_UNLIKELY(next < 0)) CorruptLink(obj);
  if (JSMALLOC_UNLIKELY(g_link_validate) && next != 0 &&
      pm.SizeClassOf(reinterpret_cast<void*>(next)) != cl) {
    CorruptLink(obj);
  }
  return reinterpret_cast<void*>(next);
}

// The second word of a free object (the link is its first): where the
// transfer caches and check mode keep their free marks, in objects of 16
// bytes or more.
inline uintptr_t* MarkWord(void* obj) { return static_cast<uintptr_t*>(obj) + 1; }
// The free mark of object p: keyed per process (the free-list key) so that
// a program's data is unlikely to equal it.
inline uintptr_t FreeMark(const void* p) { return ~(reinterpret_cast<uintptr_t>(p) ^ g_link_key); }

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_FREELIST_LINK_H_
