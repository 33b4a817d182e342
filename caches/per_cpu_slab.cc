#include "caches/per_cpu_slab.h"

#include "os/os.h"

namespace jsmalloc {

// One region more than asked, in front: its last word is what the push of a
// never-used CPU 0 compares against (it stays zero, and untouched).
void* PerCpuSlab::MapMemory(int num_cpus) {
  size_t bytes = kRegionBytes * (static_cast<size_t>(num_cpus) + kLeadingRegions);
  void* mem = os::MapAligned(bytes, kRegionBytes, nullptr);
  return mem == nullptr ? nullptr : static_cast<char*>(mem) + kLeadingRegions * kRegionBytes;
}

void PerCpuSlab::UnmapMemory(void* base, int num_cpus) {
  if (base == nullptr) return;
  os::Unmap(static_cast<char*>(base) - kLeadingRegions * kRegionBytes,
            kRegionBytes * (static_cast<size_t>(num_cpus) + kLeadingRegions));
}

void PerCpuSlab::ComputeMaxCapacities(uint16_t* out) {
  // Enough for a few batches of small objects, fewer of large ones: 256 KiB
  // worth of a class, between 8 and 8192 objects. (At 2048, a program that
  // builds and frees a structure of 8K small nodes, as a compiler's or an
  // interpreter's tree, sent every batch through the transfer cache and the
  // spans: binary trees of 8191 32-byte nodes ran 2x slower than under
  // mimalloc.) Only the slots a class grows into are touched.
  size_t total = 0;
  for (int cl = 0; cl < kMaxClasses; ++cl) out[cl] = 0;
  for (int cl = 1; cl < kNumClasses; ++cl) {
    size_t n = (size_t{256} << 10) / kSizeClasses.info[cl].size;
    if (n < 8) n = 8;
    if (n > 8192) n = 8192;
    out[cl] = static_cast<uint16_t>(n);
    total += n;
  }
  const size_t available = kSlots - 1 - kMaxClasses;  // headers, and index 0xffff unused
  if (total > available) {
    for (int cl = 1; cl < kNumClasses; ++cl) {
      size_t n = out[cl] * available / total;
      out[cl] = static_cast<uint16_t>(n < 1 ? 1 : n);
    }
  }
}

void PerCpuSlab::Init(void* base, int num_cpus, const uint16_t* max_capacity) {
  base_ = static_cast<char*>(base);
  num_cpus_ = num_cpus;
  uint32_t next = kMaxClasses;  // slots start after the headers
  for (int cl = 1; cl < kNumClasses; ++cl) {
    begin_[cl] = static_cast<uint16_t>(next);
    next += max_capacity[cl];
    max_end_[cl] = static_cast<uint16_t>(next);
  }
  // The push's table of object alignment masks, below CPU 0's region (in
  // the leading region that an unregistered thread's cpu_id of -1 selects,
  // far above that region's all-zero headers): one page of RSS.
  uint16_t* masks = reinterpret_cast<uint16_t*>(base_ - os::kSlabAlignMaskOffset);
  for (int cl = 1; cl < kNumClasses; ++cl) masks[cl] = ObjectAlignMask(kSizeClasses.info[cl].size);
  // No CPU's region is written here (InitCpu): a header page per possible
  // CPU (4 KiB each, 1 MiB on a host that reports 256 possible CPUs) would
  // be in the RSS of every process, however few CPUs it runs on.
}

void PerCpuSlab::InitCpu(int cpu) {
  for (int cl = 1; cl < kNumClasses; ++cl) {
    // One 8-byte store per header: a critical section racing with it sees
    // either the all-zero header (empty, no capacity: it misses) or this one.
    Header h = {begin_[cl], begin_[cl], begin_[cl], max_end_[cl]};  // current, end, begin, max_end
    __atomic_store(HeaderOf(cpu, cl), &h, __ATOMIC_RELEASE);
  }
}

void PerCpuSlab::StopCpu(int cpu) {
  for (int cl = 1; cl < kNumClasses; ++cl) {
    Header* h = HeaderOf(cpu, cl);
    __atomic_store_n(&h->end, uint16_t{0}, __ATOMIC_RELAXED);
    __atomic_store_n(&h->begin, kStoppedBegin, __ATOMIC_RELAXED);
  }
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void** PerCpuSlab::StoppedObjects(int cpu, int cl, size_t* count) const {
  Header* h = HeaderOf(cpu, cl);
  uint16_t cur = __atomic_load_n(&h->current, __ATOMIC_RELAXED);
  *count = cur > begin_[cl] ? cur - begin_[cl] : 0;
  return Region(cpu) + begin_[cl];
}

void PerCpuSlab::EmptyStopped(int cpu) {
  for (int cl = 1; cl < kNumClasses; ++cl) {
    __atomic_store_n(&HeaderOf(cpu, cl)->current, begin_[cl], __ATOMIC_RELAXED);
  }
}

void PerCpuSlab::StartCpu(int cpu, const uint16_t* capacity) {
  for (int cl = 1; cl < kNumClasses; ++cl) {
    __atomic_store_n(&HeaderOf(cpu, cl)->end, static_cast<uint16_t>(begin_[cl] + capacity[cl]),
                     __ATOMIC_RELAXED);
  }
  // begin last: until it is restored every operation on this CPU still fails.
  __atomic_thread_fence(__ATOMIC_RELEASE);
  for (int cl = 1; cl < kNumClasses; ++cl) {
    __atomic_store_n(&HeaderOf(cpu, cl)->begin, begin_[cl], __ATOMIC_RELEASE);
  }
}

}  // namespace jsmalloc
