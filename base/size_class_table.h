// Size classes, computed at compile time for the configured page size.
//
// Spacing: 8, then 16..128 in steps of 16, then 8 classes per doubling up to
// 4 KiB and 4 per doubling up to kMaxSize. That gives 73 classes and bounds
// the internal fragmentation of a request r (class size - r):
//   r <= 128         : < 16 bytes
//   128 < r <= 4096  : < r / 8   (12.5 %)
//   4096 < r <= 256K : < r / 4   (25 %)
// Every class >= 16 is a multiple of 16, so every object is 16-byte aligned.
// Pages per span: the fewest pages that hold min(8, 64 KiB / size) objects
// (at least one) and leave an unused tail of at most 1/8 of the span, so
// span-level waste is bounded by 12.5 % as well.
#ifndef JSMALLOC_BASE_SIZE_CLASS_TABLE_H_
#define JSMALLOC_BASE_SIZE_CLASS_TABLE_H_

#include <array>
#include <cstddef>
#include <cstdint>

#include "base/config.h"

namespace jsmalloc {

struct SizeClassInfo {
  uint32_t size;     // object size in bytes
  uint32_t pages;    // pages per span
  uint32_t objects;  // objects per span
  uint32_t batch;    // objects moved at once between cache levels
};

struct SizeClassTable {
  int num_classes;  // including class 0 (unused)
  std::array<SizeClassInfo, kMaxClasses> info;
};

// The upper bound on internal fragmentation stated above, used by tests.
constexpr size_t MaxInternalWaste(size_t request) {
  if (request <= 128) return 15;
  if (request <= 4096) return request / 8;
  return request / 4;
}

constexpr uint32_t BatchFor(size_t size) {
  // Move about 64 KiB at a time, between 2 and 32 objects: enough to amortise
  // a lock acquisition, small enough not to hoard large objects.
  size_t n = (64 * 1024) / size;
  if (n < 2) n = 2;
  if (n > 32) n = 32;
  return static_cast<uint32_t>(n);
}

constexpr uint32_t PagesFor(size_t size, size_t page_size) {
  // Mid-size classes want a few objects per span, or every allocation of them
  // would be a page-heap operation.
  size_t min_objects = (64 * 1024) / size;
  if (min_objects > 8) min_objects = 8;
  if (min_objects < 1) min_objects = 1;
  size_t pages = (size * min_objects + page_size - 1) / page_size;
  for (;; ++pages) {
    size_t span = pages * page_size;
    if ((span % size) * 8 <= span) break;
  }
  return static_cast<uint32_t>(pages);
}

constexpr SizeClassTable ComputeSizeClasses(size_t page_size) {
  SizeClassTable t{};
  int n = 1;  // class 0 is "no class"
  auto add = [&](size_t size) {
    uint32_t pages = PagesFor(size, page_size);
    t.info[n] = SizeClassInfo{static_cast<uint32_t>(size), pages,
                              static_cast<uint32_t>(pages * page_size / size), BatchFor(size)};
    ++n;
  };
  add(8);
  for (size_t s = 16; s <= 128; s += 16) add(s);
  for (size_t base = 128; base < kMaxSize; base *= 2) {
    size_t steps = base < 4096 ? 8 : 4;
    for (size_t i = 1; i <= steps; ++i) add(base + base / steps * i);
  }
  t.num_classes = n;
  return t;
}

inline constexpr SizeClassTable kSizeClasses = ComputeSizeClasses(kPageSize);
inline constexpr int kNumClasses = kSizeClasses.num_classes;
static_assert(kNumClasses - 1 >= 60 && kNumClasses - 1 <= 90, "60-90 size classes");
static_assert(kSizeClasses.info[kNumClasses - 1].size == kMaxSize);

// Every object of a class starts at a multiple of its size from its span's
// page-aligned start, so its address is a multiple of the size's lowest set
// bit (up to the page size). The free paths test an address against this
// mask (capped to 16 bits, which the per-CPU push tests): a pointer into an
// object rather than at its start usually fails it (p + 8 always, for
// objects of 16 bytes or more; any offset into a power-of-two object of up
// to 64 KiB, or a page if that is smaller).
constexpr uint16_t ObjectAlignMask(size_t size) {
  if (size == 0) return 0;
  size_t low = size & (~size + 1);
  if (low > kPageSize) low = kPageSize;
  if (low > 65536) low = 65536;
  return static_cast<uint16_t>(low - 1);
}

// Request size -> index into the class lookup array. Sizes up to 1 KiB are
// resolved at 8-byte granularity, larger ones at 128 bytes (all classes above
// 1 KiB are multiples of 128).
constexpr size_t ClassIndex(size_t size) {
  // Small requests are the common case: keep their arm on the fall-through.
  return __builtin_expect(size <= 1024, 1) ? (size + 7) >> 3 : (size + 127 + (120 << 7)) >> 7;
}
inline constexpr size_t kClassArraySize = ClassIndex(kMaxSize) + 1;

struct ClassLookup {
  std::array<uint8_t, kClassArraySize> cls;
};

constexpr ClassLookup ComputeClassLookup() {
  ClassLookup l{};
  int c = 1;
  for (size_t idx = 0; idx < kClassArraySize; ++idx) {
    // Largest request that maps to this index.
    size_t max_req = idx <= 128 ? idx * 8 : (idx << 7) - (120 << 7);
    while (kSizeClasses.info[c].size < max_req) ++c;
    l.cls[idx] = static_cast<uint8_t>(c);
  }
  return l;
}

inline constexpr ClassLookup kClassLookup = ComputeClassLookup();

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_SIZE_CLASS_TABLE_H_
