// An ordered set of small trivially copyable values kept sorted in one
// array from the metadata arena: binary search to find, memmove to insert and
// remove. The back-ends' ordered sets (free ranges of the hugepage cache,
// long free runs of the page heap) hold tens to a few thousand entries, where
// this beats a tree and needs nothing of the C++ runtime library (std::map's
// rebalancing lives in libstdc++.so, which a C program would then load just
// for the allocator). Not thread-safe: the owner's lock guards it.
#ifndef JSMALLOC_BASE_SORTED_ARRAY_H_
#define JSMALLOC_BASE_SORTED_ARRAY_H_

#include <cstddef>
#include <cstring>
#include <type_traits>

#include "base/arena.h"

namespace jsmalloc {

template <typename T, typename Less>
class SortedArray {
  static_assert(std::is_trivially_copyable_v<T>, "moved with memmove");

 public:
  constexpr SortedArray() = default;
  SortedArray(const SortedArray&) = delete;
  SortedArray& operator=(const SortedArray&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }
  T& operator[](size_t i) { return data_[i]; }

  // The first element not less than `key`.
  T* lower_bound(const T& key) {
    size_t lo = 0, hi = size_;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (Less()(data_[mid], key)) lo = mid + 1;
      else hi = mid;
    }
    return data_ + lo;
  }

  // Inserts v (which must not be present); returns where it went. Dies if
  // the metadata arena is exhausted, as the std containers did.
  T* insert(const T& v) {
    size_t at = static_cast<size_t>(lower_bound(v) - data_);
    if (size_ == cap_) Grow();
    memmove(data_ + at + 1, data_ + at, sizeof(T) * (size_ - at));
    data_[at] = v;
    ++size_;
    return data_ + at;
  }

  void erase(T* pos) {
    size_t at = static_cast<size_t>(pos - data_);
    memmove(data_ + at, data_ + at + 1, sizeof(T) * (size_ - at - 1));
    --size_;
  }

  // Removes the element equal to v (neither less nor greater); false if none.
  bool erase_value(const T& v) {
    T* p = lower_bound(v);
    if (p == end() || Less()(v, *p)) return false;
    erase(p);
    return true;
  }

 private:
  void Grow() {
    size_t cap = cap_ == 0 ? 64 : cap_ * 2;
    // The old array stays in the arena (which never frees): at most as much
    // again as the final array.
    T* fresh = static_cast<T*>(GlobalArena()->Alloc(sizeof(T) * cap, alignof(T) < 16 ? 16 : alignof(T)));
    if (fresh == nullptr) ArenaExhausted();
    if (size_ != 0) memcpy(fresh, data_, sizeof(T) * size_);
    data_ = fresh;
    cap_ = cap;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
  size_t cap_ = 0;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_SORTED_ARRAY_H_
