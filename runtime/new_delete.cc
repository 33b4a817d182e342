// Every C++ operator new and delete form. Failure follows the standard: call
// the installed new-handler and retry, or throw std::bad_alloc; the nothrow
// forms return nullptr instead.
//
// The C++ runtime (libstdc++: the new-handler, std::bad_alloc, throwing and
// catching) is referenced weakly, and the library does not depend on it: a C
// program that loads JSMalloc does not map libstdc++ (about 1 MiB of its
// RSS) for nothing. A C++ program has it loaded before JSMalloc's references
// are bound, so these work as usual. Only a process whose C++ runtime came
// later (a C program that dlopens a C++ plugin) has none to throw with: an
// operator new that fails then aborts with a message.
#include <cstddef>
#include <new>

#include "os/os.h"
#include "runtime/allocator.h"
#include "runtime/heap_check.h"
#include "base/internal_printer.h"
#include "runtime/stack_trace.h"

asm(".weak __gxx_personality_v0");
asm(".weak __cxa_allocate_exception");
asm(".weak __cxa_begin_catch");
asm(".weak __cxa_end_catch");
asm(".weak _ZTVSt9bad_alloc");       // vtable for std::bad_alloc
asm(".weak _ZTISt9bad_alloc");       // typeinfo for std::bad_alloc
asm(".weak _ZNSt9bad_allocD1Ev");    // std::bad_alloc::~bad_alloc()
asm(".weak _ZSt9terminatev");        // std::terminate, if an exception leaves a noexcept form
namespace std {
new_handler get_new_handler() noexcept __attribute__((weak));
}
extern "C" [[noreturn]] void __cxa_throw(void*, void*, void (*)(void*)) __attribute__((weak));

using jsmalloc::Allocate;
using jsmalloc::AllocateAligned;
using jsmalloc::Free;

// In the entry section: stack traces of sampled allocations start at the
// caller of these functions (runtime/stack_trace.h).
#define JSMALLOC_API __attribute__((visibility("default"))) JSMALLOC_ENTRY_SECTION

namespace {

std::new_handler CurrentNewHandler() {
  return &std::get_new_handler != nullptr ? std::get_new_handler() : nullptr;
}

[[noreturn]] __attribute__((noinline)) void ThrowBadAlloc(size_t size) {
  if (&__cxa_throw == nullptr) {
    char buf[192];
    jsmalloc::Printer p(buf, sizeof(buf));
    p.Str("jsmalloc: operator new could not allocate ").U(size)
        .Str(" bytes, and no C++ runtime was loaded when JSMalloc started to throw std::bad_alloc\n");
    jsmalloc::os::WriteStderr(p.data(), p.written());
    jsmalloc::os::Abort();
  }
  throw std::bad_alloc();
}

// Out of line: keeps the exception machinery off the fast path.
JSMALLOC_ENTRY_SECTION __attribute__((noinline)) void* NewFailed(size_t size, size_t align, bool nothrow) {
  for (;;) {
    std::new_handler handler = CurrentNewHandler();
    if (handler == nullptr) {
      if (nothrow) return nullptr;
      ThrowBadAlloc(size);
    }
    if (nothrow) {
      // The nothrow forms return null when the handler gives up by throwing.
      try {
        handler();
      } catch (...) {
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
  return NewFailed(size, 0, true);  // catches what the handler throws
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
  return NewFailed(size, align, true);  // catches what the handler throws
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
