// Compile-time constants shared by every layer. The page size is a build
// variant (JSMALLOC_PAGE_SHIFT: 12, 13, 15 or 18); everything else follows.
#ifndef JSMALLOC_BASE_CONFIG_H_
#define JSMALLOC_BASE_CONFIG_H_

#include <cstddef>
#include <cstdint>

#ifndef JSMALLOC_PAGE_SHIFT
#define JSMALLOC_PAGE_SHIFT 13
#endif

#define JSMALLOC_LIKELY(x) __builtin_expect(!!(x), 1)
#define JSMALLOC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define JSMALLOC_ALWAYS_INLINE inline __attribute__((always_inline))
#define JSMALLOC_NOINLINE __attribute__((noinline))

namespace jsmalloc {

inline constexpr int kPageShift = JSMALLOC_PAGE_SHIFT;
static_assert(kPageShift == 12 || kPageShift == 13 || kPageShift == 15 || kPageShift == 18,
              "supported page sizes: 4, 8, 32 and 256 KiB");
inline constexpr size_t kPageSize = size_t{1} << kPageShift;

// Largest size served from size classes; larger requests go to the page heap.
inline constexpr size_t kMaxSize = 256 * 1024;
inline constexpr size_t kMinAlign = 16;  // x86-64 ABI for sizes >= 16

inline constexpr int kHugePageShift = 21;
inline constexpr size_t kHugePageSize = size_t{1} << kHugePageShift;

// User-space virtual addresses on x86-64 (4-level paging) fit in 47 bits; we
// map 48 bits so that 5-level kernels handing out low addresses still work.
inline constexpr int kAddressBits = 48;

// Upper bound on the number of size classes (index 0 means "not small").
inline constexpr int kMaxClasses = 96;

// Page numbers and lengths in units of kPageSize.
using PageId = uintptr_t;
using Length = uintptr_t;

inline PageId PageIdOf(const void* p) {
  return reinterpret_cast<uintptr_t>(p) >> kPageShift;
}
inline void* PageStart(PageId id) { return reinterpret_cast<void*>(id << kPageShift); }
inline constexpr Length PagesFor(size_t bytes) {
  return (bytes + kPageSize - 1) >> kPageShift;
}

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_CONFIG_H_
