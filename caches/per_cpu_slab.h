// Memory layout of the per-CPU caches and the operations on it that are not
// restartable sequences: setting capacities, stopping a CPU's cache so its
// contents can be taken from another CPU, and plain push/pop for a CPU that
// is stopped (or for tests, which drive a fake CPU).
//
// CPU c owns the region base + (c << kPerCpuShift). Word cl of the region is
// the header of size class cl; the remaining words are object slots. Each
// class has a fixed range of slots [begin, max_end), of which [begin, end)
// is its current capacity and [begin, current) holds objects.
#ifndef JSMALLOC_CACHES_PER_CPU_SLAB_H_
#define JSMALLOC_CACHES_PER_CPU_SLAB_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "os/os.h"
#include "base/size_class_table.h"

namespace jsmalloc {

class PerCpuSlab {
 public:
  static constexpr int kShift = os::kPerCpuShift;
  static constexpr size_t kRegionBytes = size_t{1} << kShift;
  static constexpr size_t kSlots = kRegionBytes / sizeof(void*);
  static_assert(kSlots <= 65536, "slot indexes are 16-bit");

  struct alignas(8) Header {  // aligned: InitCpu writes it with one 8-byte atomic store
    uint16_t current;
    uint16_t end;
    uint16_t begin;
    uint16_t max_end;
  };
  static_assert(sizeof(Header) == sizeof(void*));

  // The number of slots reserved for each class: what the largest useful
  // cache of the class holds, scaled down so that all classes fit.
  static void ComputeMaxCapacities(uint16_t* out /* [kMaxClasses] */);

  // Memory for num_cpus regions: zeroed, aligned to kRegionBytes, and with
  // kLeadingRegions more below it. A thread without an rseq registration
  // reads a cpu_id of -1 or -2 (the kernel ABI's two negative values), and
  // the critical sections use it as they use any CPU number, to save the
  // sign test: its region is one of the two below CPU 0's, whose headers
  // stay zero, so every push and pop there misses. The third is read as the
  // word below `current` (the push compares the object with the slot below
  // it: for an all-zero header, the word below the region). Address space
  // only, apart from the page of alignment masks (Init). nullptr if it
  // cannot be mapped.
  static constexpr size_t kLeadingRegions = 3;
  static_assert(os::kSlabAlignMaskOffset <= kRegionBytes / 2, "the mask table must clear the headers");
  static void* MapMemory(int num_cpus);
  static void UnmapMemory(void* base, int num_cpus);

  // base: kRegionBytes * num_cpus bytes of zeroed memory aligned to
  // kRegionBytes, from MapMemory. Lays the classes out and writes the table
  // of object alignment masks below base; writes no CPU's region. A CPU's all-zero headers read as every class empty with no
  // capacity (every operation misses) until InitCpu.
  void Init(void* base, int num_cpus, const uint16_t* max_capacity);
  // Writes cpu's headers: every class empty, capacity zero, its slots
  // [LayoutBegin, LayoutEnd). Once, before the CPU's first capacity change
  // (the caller holds that CPU's lock).
  void InitCpu(int cpu);
  uint16_t LayoutBegin(int cl) const { return begin_[cl]; }
  uint16_t LayoutEnd(int cl) const { return max_end_[cl]; }

  uintptr_t base() const { return reinterpret_cast<uintptr_t>(base_); }
  int num_cpus() const { return num_cpus_; }
  void** Region(int cpu) const {
    return reinterpret_cast<void**>(base_ + (static_cast<size_t>(cpu) << kShift));
  }
  Header* HeaderOf(int cpu, int cl) const { return reinterpret_cast<Header*>(Region(cpu) + cl); }

  // Racy snapshot readers (stats, policy decisions): another thread may be
  // changing the header as we read.
  uint16_t Length(int cpu, int cl) const {
    Header* h = HeaderOf(cpu, cl);
    uint16_t cur = __atomic_load_n(&h->current, __ATOMIC_RELAXED);
    uint16_t beg = __atomic_load_n(&h->begin, __ATOMIC_RELAXED);
    return cur > beg && beg != kStoppedBegin ? static_cast<uint16_t>(cur - beg) : 0;
  }
  uint16_t Capacity(int cpu, int cl) const {
    Header* h = HeaderOf(cpu, cl);
    uint16_t end = __atomic_load_n(&h->end, __ATOMIC_RELAXED);
    uint16_t beg = __atomic_load_n(&h->begin, __ATOMIC_RELAXED);
    return end > beg && beg != kStoppedBegin ? static_cast<uint16_t>(end - beg) : 0;
  }
  uint16_t MaxCapacity(int cpu, int cl) const {
    Header* h = HeaderOf(cpu, cl);
    return static_cast<uint16_t>(h->max_end - h->begin);
  }

  // Changes the capacity of (cpu, cl) to `capacity` slots (<= MaxCapacity).
  // A single 16-bit store: the owner CPU's critical sections write only
  // `current`, so this cannot tear their update. Lowering the capacity below
  // the current length leaves the objects above it reachable by pops.
  void SetCapacity(int cpu, int cl, uint16_t capacity) {
    Header* h = HeaderOf(cpu, cl);
    __atomic_store_n(&h->end, static_cast<uint16_t>(h->begin + capacity), __ATOMIC_RELAXED);
  }

  // Makes every critical section on `cpu` fail (push sees end 0, pop sees
  // begin 0xffff). The caller then fences the CPU, after which `current`
  // is stable and the region is the caller's until StartCpu.
  void StopCpu(int cpu);
  bool IsStopped(int cpu) const {
    return __atomic_load_n(&HeaderOf(cpu, 1)->begin, __ATOMIC_RELAXED) == kStoppedBegin;
  }
  // While stopped: the objects of class cl and how many there are.
  void** StoppedObjects(int cpu, int cl, size_t* count) const;
  // While stopped: empties every class (current = begin). The caller must
  // fence the CPU again before StartCpu: a critical section that began while
  // the CPU was stopped may have read the old `current` and be about to read
  // `begin`; restored under it, it would pop objects already taken.
  void EmptyStopped(int cpu);
  // Restarts a stopped CPU with the given capacities; `current` is left as
  // it is (emptied by EmptyStopped, or untouched when a drain gives up).
  void StartCpu(int cpu, const uint16_t* capacity /* [kMaxClasses] */);

  // True when p is the top object of (cpu, cl): freeing it again would hand
  // it out twice. Racy like the other readers: a false answer is possible
  // while the CPU's owner pushes or pops, a true one only if p is cached.
  bool TopIs(int cpu, int cl, const void* p) const { return TopIsAt(reinterpret_cast<uintptr_t>(base_), cpu, cl, p); }
  // The same from the slab's base address (realloc's check, inline).
  static bool TopIsAt(uintptr_t base, int cpu, int cl, const void* p) {
    void** region = reinterpret_cast<void**>(base + (static_cast<uintptr_t>(cpu) << kShift));
    Header* h = reinterpret_cast<Header*>(region + cl);
    uint16_t cur = __atomic_load_n(&h->current, __ATOMIC_RELAXED);
    uint16_t beg = __atomic_load_n(&h->begin, __ATOMIC_RELAXED);
    if (beg == kStoppedBegin || cur <= beg) return false;
    return __atomic_load_n(&region[cur - 1], __ATOMIC_RELAXED) == p;
  }

  // Plain operations on a given CPU, without rseq: for a stopped CPU and for
  // tests that drive a fake CPU from one thread.
  void* PopOn(int cpu, int cl) {
    Header* h = HeaderOf(cpu, cl);
    if (h->current <= h->begin) return nullptr;
    --h->current;
    return Region(cpu)[h->current];
  }
  // As the rseq push: refuses an object equal to the top (a double free,
  // which the miss path reports).
  bool PushOn(int cpu, int cl, void* p) {
    Header* h = HeaderOf(cpu, cl);
    if (Region(cpu)[static_cast<int>(h->current) - 1] == p) return false;
    if (h->current >= h->end) return false;
    Region(cpu)[h->current] = p;
    ++h->current;
    return true;
  }

 private:
  static constexpr uint16_t kStoppedBegin = 0xffff;
  char* base_ = nullptr;
  int num_cpus_ = 0;
  uint16_t begin_[kMaxClasses] = {};  // the layout, kept while a CPU is stopped
  uint16_t max_end_[kMaxClasses] = {};
};

}  // namespace jsmalloc

#endif  // JSMALLOC_CACHES_PER_CPU_SLAB_H_
