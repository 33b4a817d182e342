// Shared pieces of the libFuzzer targets (tests/fuzz/*_fuzz.cc): a check
// macro that aborts with a message (libFuzzer then saves the input), a byte
// reader over the input, a fake address space that hands out page ranges
// without mapping anything, and a metadata arena whose memory goes back to the
// OS after every input.
#ifndef JSMALLOC_TESTS_FUZZ_FUZZ_COMMON_H_
#define JSMALLOC_TESTS_FUZZ_FUZZ_COMMON_H_

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <map>
#include <vector>

#include "backend/page_allocator.h"
#include "os/os.h"
#include "base/arena.h"
#include "base/config.h"

// A violated invariant or a disagreement with the model: print where and why,
// then abort so that libFuzzer writes the input out as a crash artifact.
#define FUZZ_CHECK(cond, ...)                                                   \
  do {                                                                          \
    if (__builtin_expect(!(cond), 0)) {                                         \
      std::fprintf(stderr, "\nFUZZ_CHECK failed at %s:%d: %s\n  ", __FILE__,    \
                   __LINE__, #cond);                                            \
      std::fprintf(stderr, __VA_ARGS__);                                        \
      std::fputc('\n', stderr);                                                 \
      std::abort();                                                             \
    }                                                                           \
  } while (0)

namespace jsmalloc::fuzz {

using Input = FuzzedDataProvider;

// A page count that is usually small and sometimes large: `small` bounds the
// common case, `large` the rare one.
inline size_t PickLength(Input& in, size_t small, size_t large) {
  uint8_t kind = in.ConsumeIntegral<uint8_t>();
  if (kind < 200) return in.ConsumeIntegralInRange<size_t>(1, small);
  return in.ConsumeIntegralInRange<size_t>(1, large);
}

// Address space on paper. Map hands out ranges of a fixed window far from
// anything the process maps (the components under test never touch the
// memory of the spans they manage), so every input sees the same addresses and
// nothing is mapped or has to be unmapped. It honours the hint when the hint
// is the next free address, as the kernel would when the range is free, so
// consecutive growths are contiguous unless the fuzzer opens a gap.
//
// Every call is recorded; on_release lets a target check each release against
// its model at the moment it happens (nothing in use may ever be released).
class FakeSpace final : public PageSource {
 public:
  FakeSpace(uintptr_t base, size_t window_bytes) : next_(base), limit_(base + window_bytes) {}

  void* Map(size_t bytes, size_t align, void* hint, bool dense) override {
    ++map_calls;
    if (fail_maps > 0) {
      --fail_maps;
      ++refused_maps;
      return nullptr;
    }
    uintptr_t h = reinterpret_cast<uintptr_t>(hint);
    uintptr_t at;
    if (h != 0 && h == next_ && (h & (align - 1)) == 0 && gap_ == 0) {
      at = h;
    } else {
      at = (next_ + gap_ + align - 1) & ~(uintptr_t{align} - 1);
    }
    gap_ = 0;
    if (at < next_ || at + bytes < at || at + bytes > limit_) {
      ++refused_maps;  // the window is "out of memory"
      return nullptr;
    }
    next_ = at + bytes;
    mapped_bytes += bytes;
    mappings.emplace_back(at, bytes);
    dense_mappings.push_back(dense);
    return reinterpret_cast<void*>(at);
  }

  bool Release(void* ptr, size_t bytes) override {
    ++release_calls;
    if (fail_releases > 0) {
      --fail_releases;
      ++refused_releases;
      return false;
    }
    uintptr_t a = reinterpret_cast<uintptr_t>(ptr);
    FUZZ_CHECK(a % kPageSize == 0 && bytes % kPageSize == 0 && bytes > 0,
               "release of a range that is not whole pages: %#lx + %zu", (unsigned long)a, bytes);
    FUZZ_CHECK(Covered(a, bytes), "release of a range never mapped: %#lx + %zu", (unsigned long)a, bytes);
    if (on_release) on_release(a, bytes);
    released_bytes += bytes;
    releases.emplace_back(a, bytes);
    return true;
  }

  // Hugepage advice (the filler's khugepaged guard): recorded, checked by
  // the target through on_advice; MADV_NOHUGEPAGE refused while
  // fail_advice > 0.
  bool AllowHugePages(void* ptr, size_t bytes, bool allow) override {
    ++advice_calls;
    if (!allow && fail_advice > 0) {  // only the advice that guards a release
      --fail_advice;
      if (on_advice_refused) on_advice_refused(reinterpret_cast<uintptr_t>(ptr));
      return false;
    }
    if (on_advice) on_advice(reinterpret_cast<uintptr_t>(ptr), bytes, allow);
    return true;
  }

  // Address space the component got elsewhere (the filler's and region's
  // hugepages come from the hugepage cache): releases there are legitimate.
  void AddForeign(uintptr_t a, size_t bytes) { mappings.emplace_back(a, bytes); }

  // The next mapping does not follow the previous one (a hint the kernel
  // could not honour).
  void OpenGap(size_t bytes) { gap_ = bytes; }

  // True if [a, a+bytes) lies inside what Map handed out.
  bool Covered(uintptr_t a, size_t bytes) const {
    uintptr_t end = a + bytes;
    // Mappings are handed out in address order; walk the contiguous pieces.
    for (size_t i = 0; i < mappings.size(); ++i) {
      uintptr_t s = mappings[i].first, e = s + mappings[i].second;
      if (a < s || a >= e) continue;
      while (end > e && i + 1 < mappings.size() && mappings[i + 1].first == e) {
        ++i;
        e = mappings[i].first + mappings[i].second;
      }
      return end <= e;
    }
    return false;
  }

  int fail_maps = 0;
  int fail_releases = 0;
  int fail_advice = 0;
  size_t advice_calls = 0;
  std::function<void(uintptr_t, size_t, bool)> on_advice;
  std::function<void(uintptr_t)> on_advice_refused;
  size_t map_calls = 0, refused_maps = 0, release_calls = 0, refused_releases = 0;
  size_t mapped_bytes = 0, released_bytes = 0;
  std::vector<std::pair<uintptr_t, size_t>> mappings;
  std::vector<bool> dense_mappings;  // Map's `dense`, per mapping
  std::vector<std::pair<uintptr_t, size_t>> releases;
  std::function<void(uintptr_t, size_t)> on_release;

 private:
  uintptr_t next_, limit_;
  size_t gap_ = 0;
};

// A metadata arena for one input. MetadataArena never unmaps; this one's
// first allocation is the start of its first 1 MiB chunk (the chunk is mapped
// 4 KiB-aligned and the first object needs no padding), so when the input is
// done and the arena never needed a second chunk, the chunk is unmapped. If
// the arena's layout ever changes, the checks below make this a (bounded)
// leak instead of an unmap of the wrong memory.
class ScopedArena {
 public:
  static constexpr size_t kChunk = size_t{1} << 20;
  ScopedArena() {
    void* p = arena_.Alloc(64, 64);
    if (p != nullptr && arena_.bytes_mapped() == kChunk && reinterpret_cast<uintptr_t>(p) % 4096 == 0) chunk_ = p;
  }
  ~ScopedArena() {
    if (chunk_ != nullptr && arena_.bytes_mapped() == kChunk) os::Unmap(chunk_, kChunk);
  }
  ScopedArena(const ScopedArena&) = delete;
  ScopedArena& operator=(const ScopedArena&) = delete;
  MetadataArena* get() { return &arena_; }

 private:
  MetadataArena arena_;
  void* chunk_ = nullptr;
};

// Half-open page intervals [first, first+n) keyed by first page, for "is this
// range in use" questions.
class IntervalSet {
 public:
  // False if [first, first+n) overlaps a member.
  bool Insert(uintptr_t first, uintptr_t n) {
    if (Overlaps(first, n)) return false;
    m_[first] = n;
    return true;
  }
  bool Erase(uintptr_t first) { return m_.erase(first) == 1; }
  bool Overlaps(uintptr_t first, uintptr_t n) const {
    auto it = m_.lower_bound(first);
    if (it != m_.end() && it->first < first + n) return true;
    if (it != m_.begin()) {
      --it;
      if (it->first + it->second > first) return true;
    }
    return false;
  }
  size_t size() const { return m_.size(); }
  const std::map<uintptr_t, uintptr_t>& map() const { return m_; }

 private:
  std::map<uintptr_t, uintptr_t> m_;
};

// A set of integers (page or hugepage numbers) kept as disjoint, coalesced
// half-open ranges.
class RangeSet {
 public:
  void Add(uintptr_t first, uintptr_t n) {
    if (n == 0) return;
    uintptr_t end = first + n;
    auto it = m_.upper_bound(first);
    if (it != m_.begin()) {
      auto prev = std::prev(it);
      if (prev->second >= first) {
        first = prev->first;
        if (prev->second > end) end = prev->second;
        total_ -= prev->second - prev->first;
        m_.erase(prev);
      }
    }
    it = m_.lower_bound(first);
    while (it != m_.end() && it->first <= end) {
      if (it->second > end) end = it->second;
      total_ -= it->second - it->first;
      it = m_.erase(it);
    }
    m_[first] = end;
    total_ += end - first;
  }
  void Remove(uintptr_t first, uintptr_t n) {
    if (n == 0) return;
    uintptr_t end = first + n;
    auto it = m_.upper_bound(first);
    if (it != m_.begin()) --it;
    while (it != m_.end() && it->first < end) {
      uintptr_t s = it->first, e = it->second;
      if (e <= first) {
        ++it;
        continue;
      }
      total_ -= e - s;
      it = m_.erase(it);
      if (s < first) {
        m_[s] = first;
        total_ += first - s;
      }
      if (e > end) {
        m_[end] = e;
        total_ += e - end;
      }
    }
  }
  // Members in [first, first+n).
  uintptr_t Count(uintptr_t first, uintptr_t n) const {
    uintptr_t end = first + n, c = 0;
    auto it = m_.upper_bound(first);
    if (it != m_.begin()) --it;
    for (; it != m_.end() && it->first < end; ++it) {
      uintptr_t s = it->first > first ? it->first : first;
      uintptr_t e = it->second < end ? it->second : end;
      if (e > s) c += e - s;
    }
    return c;
  }
  bool Contains(uintptr_t x) const { return Count(x, 1) == 1; }
  uintptr_t total() const { return total_; }
  const std::map<uintptr_t, uintptr_t>& ranges() const { return m_; }  // first -> end

 private:
  std::map<uintptr_t, uintptr_t> m_;
  uintptr_t total_ = 0;
};

// A plain bit vector for models of page bitmaps: set bits are used pages.
// Runs of clear bits are found word by word (a model written apart from the
// allocator's Bitmap, checked against it).
class BitVec {
 public:
  explicit BitVec(size_t n = 0) : n_(n), w_((n + 63) / 64) {}
  size_t size() const { return n_; }
  bool Get(size_t i) const { return (w_[i / 64] >> (i % 64)) & 1; }
  void Set(size_t i, bool v) {
    if (v) w_[i / 64] |= uint64_t{1} << (i % 64);
    else w_[i / 64] &= ~(uint64_t{1} << (i % 64));
  }
  void SetRange(size_t start, size_t n, bool v) {
    for (size_t i = start; i < start + n;) {
      if (i % 64 == 0 && start + n - i >= 64) {
        w_[i / 64] = v ? ~uint64_t{0} : 0;
        i += 64;
      } else {
        Set(i++, v);
      }
    }
  }
  size_t Count(size_t start, size_t n) const {
    size_t c = 0;
    for (size_t i = start; i < start + n;) {
      if (i % 64 == 0 && start + n - i >= 64) {
        c += static_cast<size_t>(__builtin_popcountll(w_[i / 64]));
        i += 64;
      } else {
        c += Get(i++) ? 1 : 0;
      }
    }
    return c;
  }
  // f(start, length) for each maximal run of clear bits.
  template <typename F>
  void ForEachClearRun(F f) const {
    size_t i = 0;
    while (i < n_) {
      // Skip set bits.
      while (i < n_ && Get(i)) {
        if (i % 64 == 0 && w_[i / 64] == ~uint64_t{0}) i += 64;
        else ++i;
      }
      if (i >= n_) break;
      size_t j = i;
      while (j < n_ && !Get(j)) {
        if (j % 64 == 0 && w_[j / 64] == 0 && j + 64 <= n_) j += 64;
        else ++j;
      }
      f(i, j - i);
      i = j;
    }
  }
  size_t LongestClearRun() const {
    size_t best = 0;
    ForEachClearRun([&](size_t, size_t len) { best = len > best ? len : best; });
    return best;
  }
  // Start of the shortest clear run of at least n (lowest among equals), or
  // size() if none.
  size_t BestFit(size_t n) const {
    size_t best = n_, best_len = ~size_t{0};
    ForEachClearRun([&](size_t start, size_t len) {
      if (len >= n && len < best_len) {
        best = start;
        best_len = len;
      }
    });
    return best;
  }

 private:
  size_t n_;
  std::vector<uint64_t> w_;
};

}  // namespace jsmalloc::fuzz

#endif  // JSMALLOC_TESTS_FUZZ_FUZZ_COMMON_H_
