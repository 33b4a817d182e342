// Heap profiles in the legacy gperftools text format, which Debian's
// google-pprof reads:
//
//   heap profile:    N:    B [    N:    B] @ heap_v2/<interval>
//        n:    b [    n:    b] @ 0x... 0x... ...      one line per stack and size
//   ...
//
//   MAPPED_LIBRARIES:
//   <the contents of /proc/self/maps>
//
// Counts and bytes are the raw samples (n samples of the same requested size
// s from one stack; b = n * s). pprof unsamples each line with the heap_v2
// rule, scaling it by 1 / (1 - exp(-(b/n) / interval)); as every line holds a
// single size, that is exactly the weight of each of its samples, so the
// totals pprof reports are unbiased estimates. The first pair of a line is
// what pprof shows by default (in-use), the second with --alloc_space; both
// carry the same numbers here (runtime/profile_output.h says what each
// profile holds).
//
// The first address of a line is a return address minus one (pprof takes it
// as it is); the others are return addresses (pprof subtracts one).
//
// Everything here works without malloc: tables and buffers are mapped from
// the OS, and files are written with open/write.
#ifndef JSMALLOC_RUNTIME_HEAP_PROFILE_H_
#define JSMALLOC_RUNTIME_HEAP_PROFILE_H_

#include <cstddef>
#include <cstdint>

#include "runtime/sampler.h"

namespace jsmalloc {

// (stack, requested size) -> number of samples. Open addressing over memory
// mapped from the OS; grows by doubling. Not thread-safe.
class ProfileTable {
 public:
  struct Entry {
    uint64_t hash;  // 0: empty slot
    size_t size;    // requested bytes of each sample
    size_t count;   // samples
    int depth;
    void* stack[kMaxStackDepth];
  };

  constexpr ProfileTable() = default;
  ~ProfileTable() { Reset(); }
  ProfileTable(const ProfileTable&) = delete;
  ProfileTable& operator=(const ProfileTable&) = delete;

  // Makes room for `n` entries without growing. False if the OS refuses.
  bool Reserve(size_t n);
  // Adds `count` samples of `size` bytes with this stack (depth is clamped
  // to kMaxStackDepth). False if the table could not grow.
  bool Add(void* const* stack, int depth, size_t size, size_t count);
  // Unmaps everything.
  void Reset();
  void Swap(ProfileTable& other) {
    Entry* s = slots_;
    size_t c = capacity_, u = used_;
    slots_ = other.slots_;
    capacity_ = other.capacity_;
    used_ = other.used_;
    other.slots_ = s;
    other.capacity_ = c;
    other.used_ = u;
  }

  size_t entries() const { return used_; }
  // Entry i of the slots, nullptr for an empty slot; i < capacity().
  size_t capacity() const { return capacity_; }
  const Entry* slot(size_t i) const { return slots_[i].hash != 0 ? &slots_[i] : nullptr; }

 private:
  bool Grow(size_t min_capacity);
  static uint64_t Hash(void* const* stack, int depth, size_t size);

  Entry* slots_ = nullptr;
  size_t capacity_ = 0;  // a power of two, or 0
  size_t used_ = 0;
};

// Writes the profile in `table` to the file at `path` (created or
// truncated, mode 0644): header, one line per entry, then MAPPED_LIBRARIES
// and this process's /proc/self/maps. `interval` (> 0) goes in the header.
// Returns false with errno set when the file cannot be written.
bool WriteHeapProfile(const char* path, const ProfileTable& table, size_t interval);
// The same into an open file descriptor.
bool WriteHeapProfileToFd(int fd, const ProfileTable& table, size_t interval);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_HEAP_PROFILE_H_
