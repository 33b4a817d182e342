// Every C++ operator new and delete form. Failure follows the standard: call
// the installed new-handler and retry, or throw std::bad_alloc; the nothrow
// forms return nullptr instead.
#include <cstddef>
#include <new>

#include "runtime/allocator.h"
#include "runtime/heap_check.h"
#include "runtime/stack_trace.h"

using jsmalloc::Allocate;
using jsmalloc::AllocateAligned;
using jsmalloc::Free;

// In the entry section: stack traces of sampled allocations start at the
// caller of these functions (runtime/stack_trace.h).
#define JSMALLOC_API __attribute__((visibility("default"))) JSMALLOC_ENTRY_SECTION

namespace {

// Out of line: keeps the exception machinery off the fast path.
JSMALLOC_ENTRY_SECTION __attribute__((noinline)) void* NewFailed(size_t size, size_t align, bool nothrow) {
  for (;;) {
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      if (nothrow) return nullptr;
      throw std::bad_alloc();
    }
    if (nothrow) {
      try {
        handler();
      } catch (const std::bad_alloc&) {
        return nullptr;
      }
    } else {
      handler();
    }
    void* p = align == 0 ? Allocate(size) : AllocateAligned(size, align);
    if (p != nullptr) return p;
  }
}

JSMALLOC_ENTRY_SECTION inline void* New(size_t size) {
  void* p = Allocate(size);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return NewFailed(size, 0, false);
}

JSMALLOC_ENTRY_SECTION inline void* NewNothrow(size_t size) noexcept {
  void* p = Allocate(size);
  if (__builtin_expect(p != nullptr, 1)) return p;
  try {
    return NewFailed(size, 0, true);
  } catch (...) {
    return nullptr;
  }
}

JSMALLOC_ENTRY_SECTION inline void* NewAligned(size_t size, std::align_val_t al) {
  size_t align = static_cast<size_t>(al);
  void* p = AllocateAligned(size, align);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return NewFailed(size, align, false);
}

JSMALLOC_ENTRY_SECTION inline void* NewAlignedNothrow(size_t size, std::align_val_t al) noexcept {
  size_t align = static_cast<size_t>(al);
  void* p = AllocateAligned(size, align);
  if (__builtin_expect(p != nullptr, 1)) return p;
  try {
    return NewFailed(size, align, true);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

JSMALLOC_API void* operator new(size_t size) { return New(size); }
JSMALLOC_API void* operator new[](size_t size) { return New(size); }
JSMALLOC_API void* operator new(size_t size, const std::nothrow_t&) noexcept { return NewNothrow(size); }
JSMALLOC_API void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  return NewNothrow(size);
}
JSMALLOC_API void* operator new(size_t size, std::align_val_t al) { return NewAligned(size, al); }
JSMALLOC_API void* operator new[](size_t size, std::align_val_t al) { return NewAligned(size, al); }
JSMALLOC_API void* operator new(size_t size, std::align_val_t al, const std::nothrow_t&) noexcept {
  return NewAlignedNothrow(size, al);
}
JSMALLOC_API void* operator new[](size_t size, std::align_val_t al, const std::nothrow_t&) noexcept {
  return NewAlignedNothrow(size, al);
}

JSMALLOC_API void operator delete(void* p) noexcept { Free(p); }
JSMALLOC_API void operator delete[](void* p) noexcept { Free(p); }
JSMALLOC_API void operator delete(void* p, const std::nothrow_t&) noexcept { Free(p); }
JSMALLOC_API void operator delete[](void* p, const std::nothrow_t&) noexcept { Free(p); }
// The sized forms check the size in check mode (runtime/heap_check.h).
JSMALLOC_API void operator delete(void* p, size_t size) noexcept {
  if (JSMALLOC_UNLIKELY(jsmalloc::g_check_mode)) jsmalloc::CheckSizedFree(p, size, 0);
  Free(p);
}
JSMALLOC_API void operator delete[](void* p, size_t size) noexcept {
  if (JSMALLOC_UNLIKELY(jsmalloc::g_check_mode)) jsmalloc::CheckSizedFree(p, size, 0);
  Free(p);
}
JSMALLOC_API void operator delete(void* p, std::align_val_t) noexcept { Free(p); }
JSMALLOC_API void operator delete[](void* p, std::align_val_t) noexcept { Free(p); }
JSMALLOC_API void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  Free(p);
}
JSMALLOC_API void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  Free(p);
}
JSMALLOC_API void operator delete(void* p, size_t size, std::align_val_t al) noexcept {
  if (JSMALLOC_UNLIKELY(jsmalloc::g_check_mode)) {
    jsmalloc::CheckSizedFree(p, size, static_cast<size_t>(al));
  }
  Free(p);
}
JSMALLOC_API void operator delete[](void* p, size_t size, std::align_val_t al) noexcept {
  if (JSMALLOC_UNLIKELY(jsmalloc::g_check_mode)) {
    jsmalloc::CheckSizedFree(p, size, static_cast<size_t>(al));
  }
  Free(p);
}
