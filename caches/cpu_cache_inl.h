// Implementation of CpuCacheT (a template so tests can inject the CPU).
#ifndef JSMALLOC_CACHES_CPU_CACHE_INL_H_
#define JSMALLOC_CACHES_CPU_CACHE_INL_H_

#include <cstring>

namespace jsmalloc {

template <typename Env>
void CpuCacheT<Env>::Init(Env* env, PerCpuSlab* slab, TransferCache* transfer,
                          MetadataArena* arena, size_t max_bytes_per_cpu) {
  env_ = env;
  slab_ = slab;
  transfer_ = transfer;
  max_bytes_.store(max_bytes_per_cpu, std::memory_order_relaxed);
  size_t n = static_cast<size_t>(slab->num_cpus());
  void* mem = arena->Alloc(sizeof(CpuState) * n, 64);
  if (mem == nullptr) ArenaExhausted();
  cpus_ = static_cast<CpuState*>(mem);  // zeroed by the arena, and left so
  locks_ = LockTable::Allocate(static_cast<int>(n) + 1);
  if (locks_ == nullptr) {
    void* locks = arena->Alloc(sizeof(PaddedSpinLock) * (n + 1), 64);
    if (locks == nullptr) ArenaExhausted();
    locks_ = static_cast<PaddedSpinLock*>(locks);
    for (size_t i = 0; i <= n; ++i) new (&locks_[i]) PaddedSpinLock();
  }
  resize_lock_ = &locks_[n].lock;
}

template <typename Env>
int CpuCacheT<Env>::CurrentCpu() {
  int cpu = env_->CurrentCpu();
  if (JSMALLOC_UNLIKELY(cpu < 0) && env_->EnsureRegistered()) cpu = env_->CurrentCpu();
  if (cpu >= slab_->num_cpus()) return -1;
  return cpu;
}

template <typename Env>
void CpuCacheT<Env>::SetCapacityLocked(int cpu, CpuState& s, int cl, uint16_t cap) {
  size_t size = SizeMap::ClassSize(cl);
  s.capacity_bytes -= s.capacity[cl] * size;
  s.capacity_bytes += cap * size;
  if (cap != s.capacity[cl]) ProbeCpuCacheResize(cpu, cl, s.capacity[cl], cap);
  s.capacity[cl] = cap;
  slab_->SetCapacity(cpu, cl, cap);
}

template <typename Env>
void CpuCacheT<Env>::StealLocked(int cpu, CpuState& s, int except, size_t bytes) {
  // Takes unused room only from classes that have not missed since the last
  // resize pass: taking it from a busy class just makes that class miss and
  // steal it back. Looks at a few classes from a rotating cursor, and after a
  // fruitless try skips the next misses, so a CPU whose classes are all busy
  // or full pays almost nothing per miss; the resize pass shrinks idle
  // classes anyway.
  constexpr int kStealScan = 8;
  constexpr uint32_t kStealBackoff = 32;
  if (s.steal_backoff > 0) {
    --s.steal_backoff;
    return;
  }
  size_t freed = 0;
  int cl = s.steal_cursor;
  for (int i = 0; i < kStealScan && freed < bytes; ++i) {
    if (++cl >= kNumClasses) cl = 1;
    if (cl == except || s.capacity[cl] == 0 || s.misses[cl] != s.misses_at_last_pass[cl]) continue;
    uint16_t len = slab_->Length(cpu, cl);
    if (len >= s.capacity[cl]) continue;
    size_t size = SizeMap::ClassSize(cl);
    size_t unused = s.capacity[cl] - len;
    size_t take = (bytes - freed + size - 1) / size;
    if (take > unused) take = unused;
    SetCapacityLocked(cpu, s, cl, static_cast<uint16_t>(s.capacity[cl] - take));
    freed += take * size;
  }
  s.steal_cursor = cl;
  if (freed == 0) s.steal_backoff = kStealBackoff;
}

template <typename Env>
bool CpuCacheT<Env>::PopulateLocked(int cpu, CpuState& s) {
  if (JSMALLOC_UNLIKELY(s.retired)) return false;
  if (!s.headers_ready) {
    slab_->InitCpu(cpu);
    s.headers_ready = true;
  }
  s.populated = true;
  return true;
}

template <typename Env>
bool CpuCacheT<Env>::GrowLocked(int cpu, CpuState& s, int cl, int want) {
  uint16_t cap = s.capacity[cl];
  uint16_t max = slab_->MaxCapacity(cpu, cl);
  if (cap >= max) return false;
  size_t n = static_cast<size_t>(want);
  if (n > static_cast<size_t>(max - cap)) n = max - cap;
  size_t size = SizeMap::ClassSize(cl);
  size_t budget = max_bytes_per_cpu();
  if (s.capacity_bytes + n * size > budget) {
    StealLocked(cpu, s, cl, s.capacity_bytes + n * size - budget);
    if (s.capacity_bytes + n * size > budget) {
      size_t room = budget > s.capacity_bytes ? (budget - s.capacity_bytes) / size : 0;
      if (room == 0) return false;
      n = room;
    }
  }
  SetCapacityLocked(cpu, s, cl, static_cast<uint16_t>(cap + n));
  return true;
}

template <typename Env>
void* CpuCacheT<Env>::Underflow(int cl) {
  MaybeResize();
  const int batch = SizeMap::BatchSize(cl);
  int fetch = batch;
  void* buf[TransferCache::kMaxRefill];
  int cpu = CurrentCpu();
  if (cpu >= 0) {
    CpuState& s = cpus_[cpu];
    SpinLockHolder h(&locks_[cpu].lock);
    ++s.misses[cl];
    ++s.total_misses;
    ++s.underflows;
    s.overflow_streak[cl] = 0;
    if (s.underflow_streak[cl] < kRefillStreak) {
      ++s.underflow_streak[cl];
    } else {
      fetch = TransferCache::RefillObjects(cl);
    }
    if (PopulateLocked(cpu, s)) GrowLocked(cpu, s, cl, fetch);
  }
  TransferCache* transfer = TransferFor(cpu);
  int got = cpu >= 0 ? transfer[cl].RemoveRange(buf, fetch, batch) : transfer[cl].RemoveRange(buf, 1);
  if (got == 0) return nullptr;
  // Keep one for the caller, cache the rest on whatever CPU we now run on,
  // in one critical section. Reversed so that pops hand them out in the order
  // the central list gave them (ascending addresses for freshly carved
  // objects): objects allocated one after another sit next to each other.
  int rest = got - 1;
  for (int i = 0; i < rest / 2; ++i) {
    void* t = buf[1 + i];
    buf[1 + i] = buf[got - 1 - i];
    buf[got - 1 - i] = t;
  }
  size_t pushed = rest > 0 ? env_->PushBatch(slab_, cl, buf + 1, static_cast<size_t>(rest)) : 0;
  if (pushed < static_cast<size_t>(rest)) {
    transfer[cl].InsertRange(buf + 1 + pushed, rest - static_cast<int>(pushed));
  }
  return buf[0];
}

template <typename Env>
void CpuCacheT<Env>::Overflow(void* p, int cl) {
  // The push refuses an address that is not aligned as the class's objects
  // are: a pointer into an object, never a valid free.
  if (JSMALLOC_UNLIKELY(reinterpret_cast<uintptr_t>(p) & ObjectAlignMask(SizeMap::ClassSize(cl)))) {
    os::FatalError("invalid free of pointer that is not the start of an object:", p);
  }
  MaybeResize();
  int cpu = CurrentCpu();
  if (cpu < 0) {
    transfer_[cl].InsertRange(&p, 1);
    return;
  }
  // The push refuses an object equal to the top of its class: p was freed
  // just before and is cached (unless the thread moved to another CPU
  // meanwhile, where this reads another top and lets the central list find
  // it later).
  if (JSMALLOC_UNLIKELY(slab_->TopIs(cpu, cl, p))) os::FatalError("double free of pointer", p);
  const int batch = SizeMap::BatchSize(cl);
  bool grown = false;
  int batches_out = 1;
  {
    CpuState& s = cpus_[cpu];
    SpinLockHolder h(&locks_[cpu].lock);
    ++s.misses[cl];
    ++s.total_misses;
    ++s.overflows;
    s.underflow_streak[cl] = 0;
    if (s.overflow_streak[cl] < kShrinkStreak) {
      ++s.overflow_streak[cl];
      grown = PopulateLocked(cpu, s) && GrowLocked(cpu, s, cl, batch);
    } else if (s.capacity[cl] > 2 * batch) {
      // Shrink by a batch and hand two down, so that a batch of frees fits
      // again. Until the pops below, `current` may sit above the new end:
      // pushes then fail (full), pops are unaffected.
      SetCapacityLocked(cpu, s, cl, static_cast<uint16_t>(s.capacity[cl] - batch));
      ++s.streak_shrinks;
      batches_out = 2;
    }
  }
  if (grown && env_->Push(slab_, cl, p)) return;
  // Still full: hand a batch (two when shrinking) from this CPU to the
  // transfer cache, one critical section each, then retry.
  void* buf[64];
  TransferCache* transfer = TransferFor(cpu);
  for (int k = 0; k < batches_out; ++k) {
    size_t n = env_->PopBatch(slab_, cl, buf, static_cast<size_t>(batch));
    if (n == 0) break;
    transfer[cl].InsertRange(buf, static_cast<int>(n));
  }
  if (!env_->Push(slab_, cl, p)) transfer[cl].InsertRange(&p, 1);
}

template <typename Env>
size_t CpuCacheT<Env>::DrainCpu(int cpu) {
  CpuState& s = cpus_[cpu];
  SpinLockHolder h(&locks_[cpu].lock);
  if (!s.populated) return 0;
  if (!env_->FenceAvailable()) return 0;
  slab_->StopCpu(cpu);
  // After the fence no critical section that saw the old headers can still
  // commit on that CPU; the region is ours until StartCpu.
  if (!env_->Fence(cpu)) {
    // Nothing taken and `current` untouched: whatever a section still in
    // flight commits agrees with the restored headers.
    ++s.fence_failures;
    slab_->StartCpu(cpu, s.capacity);
    return 0;
  }
  size_t bytes = 0;
  for (int cl = 1; cl < kNumClasses; ++cl) {
    size_t count;
    void** objs = slab_->StoppedObjects(cpu, cl, &count);
    for (size_t i = 0; i < count; ++i) os::SlabObjectAcquired(objs[i]);
    const size_t batch = static_cast<size_t>(SizeMap::BatchSize(cl));
    for (size_t i = 0; i < count; i += batch) {
      size_t k = count - i < batch ? count - i : batch;
      TransferFor(cpu)[cl].InsertRange(objs + i, static_cast<int>(k));
    }
    bytes += count * SizeMap::ClassSize(cl);
    s.capacity[cl] = 0;
  }
  s.capacity_bytes = 0;
  ++s.drains;
  s.populated = false;
  // A section that started while the CPU was stopped fails on `begin`, but
  // it read `current` first: between those two loads (an interrupt is
  // enough) the old `current` and a restored `begin` would hand out objects
  // now in the transfer cache. The second fence restarts any such section,
  // and every later one reads the emptied `current`.
  slab_->EmptyStopped(cpu);
  if (!env_->Fence(cpu)) {
    // Cannot happen once a fence succeeded (the registration is the
    // process's until exec), but if it did: leave the CPU stopped for good.
    // Every operation on it misses and goes to the transfer cache.
    ++s.fence_failures;
    s.retired = true;
    return bytes;
  }
  slab_->StartCpu(cpu, s.capacity);
  return bytes;
}

template <typename Env>
size_t CpuCacheT<Env>::DrainAll() {
  size_t bytes = 0;
  for (int cpu = 0; cpu < slab_->num_cpus(); ++cpu) bytes += DrainCpu(cpu);
  return bytes;
}

template <typename Env>
void CpuCacheT<Env>::MaybeResize() {
  uint64_t now = env_->Now();
  uint64_t last = last_resize_ns_.load(std::memory_order_relaxed);
  if (now - last < kResizeIntervalNs) return;
  if (!last_resize_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;
  ResizePass(now);
}

template <typename Env>
void CpuCacheT<Env>::ResizePass(uint64_t now) {
  if (!resize_lock_->TryLock()) return;  // one pass at a time is plenty
  last_resize_ns_.store(now, std::memory_order_relaxed);
  for (int cpu = 0; cpu < slab_->num_cpus(); ++cpu) {
    CpuState& s = cpus_[cpu];
    bool idle;
    {
      SpinLockHolder h(&locks_[cpu].lock);
      if (!s.populated) continue;
      idle = s.total_misses == s.total_misses_at_last_pass;
      s.total_misses_at_last_pass = s.total_misses;
      if (!idle) {
        // Classes that did not miss since the last pass give back half of
        // the room they are not using; a full one (nothing freed into it, or
        // it would have overflowed) gives back a quarter of its capacity.
        // Objects above a lowered capacity stay poppable; pushes stop there.
        for (int cl = 1; cl < kNumClasses; ++cl) {
          if (s.misses[cl] == s.misses_at_last_pass[cl] && s.capacity[cl] > 0) {
            uint16_t len = slab_->Length(cpu, cl);
            uint16_t cap = s.capacity[cl];
            uint16_t give = len < cap ? static_cast<uint16_t>((cap - len + 1) / 2)
                                      : static_cast<uint16_t>((cap + 3) / 4);
            SetCapacityLocked(cpu, s, cl, static_cast<uint16_t>(cap - give));
          }
          s.misses_at_last_pass[cl] = s.misses[cl];
        }
      }
    }
    // A CPU nobody allocated on for a whole interval gives everything back.
    if (idle) DrainCpu(cpu);
  }
  resize_lock_->Unlock();
}

template <typename Env>
CpuCacheCpuStats CpuCacheT<Env>::CpuStats(int cpu) {
  CpuCacheCpuStats out;
  CpuState& s = cpus_[cpu];
  SpinLockHolder h(&locks_[cpu].lock);
  out.populated = s.populated;
  out.capacity_bytes = s.capacity_bytes;
  out.misses = s.total_misses;
  out.underflows = s.underflows;
  out.overflows = s.overflows;
  out.drains = s.drains;
  out.shrinks = s.streak_shrinks;
  out.fence_failures = s.fence_failures;
  out.retired = s.retired;
  for (int cl = 1; cl < kNumClasses; ++cl) {
    out.cached_bytes += slab_->Length(cpu, cl) * SizeMap::ClassSize(cl);
  }
  return out;
}

template <typename Env>
void CpuCacheT<Env>::ClassStats(CpuCacheClassStats* out) {
  for (int cl = 0; cl < kMaxClasses; ++cl) out[cl] = CpuCacheClassStats();
  for (int cpu = 0; cpu < slab_->num_cpus(); ++cpu) {
    CpuState& s = cpus_[cpu];
    SpinLockHolder h(&locks_[cpu].lock);
    if (!s.populated) continue;
    for (int cl = 1; cl < kNumClasses; ++cl) {
      out[cl].capacity += s.capacity[cl];
      out[cl].objects += slab_->Length(cpu, cl);
      out[cl].misses += s.misses[cl];
    }
  }
}

template <typename Env>
size_t CpuCacheT<Env>::TotalCachedBytes() {
  size_t total = 0;
  for (int cpu = 0; cpu < slab_->num_cpus(); ++cpu) {
    if (!__atomic_load_n(&cpus_[cpu].populated, __ATOMIC_RELAXED)) continue;
    for (int cl = 1; cl < kNumClasses; ++cl) {
      total += slab_->Length(cpu, cl) * SizeMap::ClassSize(cl);
    }
  }
  return total;
}

}  // namespace jsmalloc

#endif  // JSMALLOC_CACHES_CPU_CACHE_INL_H_
