// Hugepage units and the small generic pieces the hugepage-aware back-end is
// built from: a fixed-size bitmap with free-run search (and the intrusive
// list of base/intrusive_list.h).
#ifndef JSMALLOC_HUGEPAGE_HUGE_PAGES_H_
#define JSMALLOC_HUGEPAGE_HUGE_PAGES_H_

#include <cstddef>
#include <cstdint>

#include "base/config.h"
#include "base/intrusive_list.h"

namespace jsmalloc {

inline constexpr Length kPagesPerHugePage = kHugePageSize / kPageSize;
using HugePageId = uintptr_t;  // address >> kHugePageShift

inline constexpr HugePageId HugePageOf(PageId p) { return p >> (kHugePageShift - kPageShift); }
inline constexpr PageId FirstPageOf(HugePageId h) { return h << (kHugePageShift - kPageShift); }
// Hugepages covering n pages.
inline constexpr size_t HugePagesFor(Length n) { return (n + kPagesPerHugePage - 1) / kPagesPerHugePage; }
inline void* HugePageStart(HugePageId h) { return reinterpret_cast<void*>(h << kHugePageShift); }

// N bits; runs of zero bits are free pages.
template <size_t N>
class Bitmap {
 public:
  static constexpr size_t kWords = (N + 63) / 64;

  bool Get(size_t i) const { return (words_[i / 64] >> (i % 64)) & 1; }
  void SetRange(size_t start, size_t n) { ApplyRange(start, n, true); }
  void ClearRange(size_t start, size_t n) { ApplyRange(start, n, false); }
  void ClearAll() {
    for (auto& w : words_) w = 0;
  }
  size_t CountSet(size_t start, size_t n) const {
    size_t c = 0;
    for (size_t i = start; i < start + n;) {
      size_t bit = i % 64;
      size_t take = 64 - bit < start + n - i ? 64 - bit : start + n - i;
      uint64_t mask = take == 64 ? ~uint64_t{0} : ((uint64_t{1} << take) - 1) << bit;
      c += static_cast<size_t>(__builtin_popcountll(words_[i / 64] & mask));
      i += take;
    }
    return c;
  }

  // First position >= from whose bit equals `value`, or `limit` if none.
  size_t Find(size_t from, bool value, size_t limit) const {
    while (from < limit) {
      size_t w = from / 64;
      uint64_t word = value ? words_[w] : ~words_[w];
      word &= ~uint64_t{0} << (from % 64);
      if (word != 0) {
        size_t pos = w * 64 + static_cast<size_t>(__builtin_ctzll(word));
        return pos < limit ? pos : limit;
      }
      from = (w + 1) * 64;
    }
    return limit;
  }

  // Calls f(start, length) for every maximal run of clear bits in [0, limit).
  template <typename F>
  void ForEachFreeRun(size_t limit, F f) const {
    ForEachFreeRun(0, limit, f);
  }
  // The same over [from, limit): runs are cut at `from`.
  template <typename F>
  void ForEachFreeRun(size_t from, size_t limit, F f) const {
    size_t i = Find(from, false, limit);
    while (i < limit) {
      size_t end = Find(i, true, limit);
      f(i, end - i);
      i = Find(end, false, limit);
    }
  }

  // Best fit: the start of the shortest run of clear bits in [0, limit)
  // holding n (lowest address among equals); `limit` if none. Also reports
  // the longest run seen.
  size_t FindBestFit(size_t n, size_t limit, size_t* longest) const {
    size_t best = limit, best_len = ~size_t{0}, max_len = 0;
    ForEachFreeRun(limit, [&](size_t start, size_t len) {
      if (len > max_len) max_len = len;
      if (len >= n && len < best_len) {
        best = start;
        best_len = len;
      }
    });
    if (longest != nullptr) *longest = max_len;
    return best;
  }

  size_t LongestFreeRun(size_t limit) const {
    size_t max_len = 0;
    ForEachFreeRun(limit, [&](size_t, size_t len) {
      if (len > max_len) max_len = len;
    });
    return max_len;
  }

 private:
  void ApplyRange(size_t start, size_t n, bool value) {
    for (size_t i = start; i < start + n;) {
      size_t bit = i % 64;
      size_t take = 64 - bit < start + n - i ? 64 - bit : start + n - i;
      uint64_t mask = take == 64 ? ~uint64_t{0} : ((uint64_t{1} << take) - 1) << bit;
      if (value) words_[i / 64] |= mask;
      else words_[i / 64] &= ~mask;
      i += take;
    }
  }
  uint64_t words_[kWords] = {};
};

}  // namespace jsmalloc

#endif  // JSMALLOC_HUGEPAGE_HUGE_PAGES_H_
