#include "runtime/sample_records.h"
#include "runtime/runtime_locks.h"

#include <errno.h>
#include <time.h>

#include <cstring>
#include <new>

#include "os/os.h"
#include "probes/jsmalloc_probes.h"
#include "base/arena.h"
#include "base/env_options.h"
#include "base/random.h"
#include "base/size_map.h"
#include "base/spinlock.h"
#include "runtime/guarded_pool.h"
#include "runtime/heap_profile.h"
#include "runtime/sample_span_cache.h"
#include "runtime/stack_trace.h"
#include "runtime/static_vars.h"

namespace jsmalloc {

namespace {

constexpr int64_t kQ16 = 65536;

// Records in a list, and how many.
struct RecordList {
  IntrusiveList<SampledAllocation> list;
  size_t count;
  void PushBack(SampledAllocation* r) {
    list.PushBack(r);
    ++count;
  }
  void Remove(SampledAllocation* r) {
    IntrusiveList<SampledAllocation>::Remove(r);
    --count;
  }
};

struct SamplerState {
  SpinLock& lock = g_runtime_locks.sampler.lock;  // guards everything below
  ObjectPool<SampledAllocation> pool;
  SampleSpanCache kept;  // Span::sample == &kept_marker
  uint64_t samples_total;
  RecordList live;
  RecordList peak_kept;  // freed, but live at the peak
  uint64_t next_seq;
  uint64_t live_est_bytes;
  uint64_t live_est_objects_q16;
  uint64_t peak_est_bytes;
  uint64_t peak_seq;  // records with seq <= peak_seq that were live then form the peak
  bool alloc_profile_active;
  ProfileTable alloc_profile;
  size_t alloc_profile_interval;
};

alignas(64) constinit char state_storage[sizeof(SamplerState)] = {};
constinit bool state_ready = false;
SamplerState& St() { return *reinterpret_cast<SamplerState*>(state_storage); }

// Span::sample of a kept span: a free of its address is a double free.
constinit SampledAllocation kept_marker = {};

uint64_t RealtimeNanos() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);  // a few ms of resolution is plenty
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Frees the records kept for a peak that is no longer the highest one.
void DropPeakKeptLocked(SamplerState& st) {
  while (st.peak_kept.count > 0) {
    SampledAllocation* r = st.peak_kept.list.first();
    st.peak_kept.Remove(r);
    st.pool.Delete(r);
  }
}

// A record leaves the live list: it is kept for the peak profile if it was
// live at the peak, else freed.
void DropLiveLocked(SamplerState& st, SampledAllocation* r) {
  st.live.Remove(r);
  st.live_est_bytes -= r->est_bytes;
  st.live_est_objects_q16 -= r->est_objects_q16;
  if (r->seq <= st.peak_seq) {
    st.peak_kept.PushBack(r);  // part of the peak profile
  } else {
    st.pool.Delete(r);
  }
}

// What an unsampled allocation of this request would occupy.
size_t UnsampledSize(size_t size, size_t alignment) {
  if (size <= kMaxSize && alignment <= kPageSize) {
    int cl = alignment <= 1 ? SizeMap::ClassFor(size) : SizeMap::ClassForAligned(size, alignment);
    if (cl != 0) return SizeMap::ClassSize(cl);
  }
  return PagesFor(size == 0 ? 1 : size) << kPageShift;
}

// Guarded sampling: one in `rate` samples (JSMALLOC_GUARDED_RATE) that fit
// in a slot gets a guarded block; nullptr otherwise (or when the pool has no
// free slot).
void* MaybeGuard(size_t size, size_t alignment, void* const* stack, int depth) {
  size_t rate = Static::options().guarded_rate;
  if (size > kGuardedMaxSize) return nullptr;
  if (rate > 1 && NextRandom(&t_state.sample_rng) % rate != 0) return nullptr;
  return GuardedAllocate(size, alignment, stack, depth);
}

}  // namespace

void InitSampleRecords() {
  SamplerState* st = new (state_storage) SamplerState();
  st->pool.Init(GlobalArena());
  state_ready = true;
}

bool SampleRecordsReady() { return state_ready; }

// ---- Allocation and free ------------------------------------------------------

JSMALLOC_ENTRY_SECTION __attribute__((noinline)) void* TakeSample(size_t size, size_t alignment,
                                                                  size_t interval, void* caller) {
  void* stack[kMaxStackDepth];
  // The walk starts at this frame (CaptureStack would add two more).
  int depth = CaptureStackFrom(UnwindStartHere(), stack, kMaxStackDepth);
  if (depth < 0) depth = CaptureStackWithLibgcc(stack, kMaxStackDepth);
  if (depth == 0) {
    stack[0] = caller;
    depth = 1;
  }
  size_t allocated = UnsampledSize(size, alignment);
  Length pages = PagesFor(allocated);
  Length align_pages = alignment > kPageSize ? alignment >> kPageShift : 1;
  double weight = SampleWeight(size, interval);
  uint64_t now = RealtimeNanos();
  SamplerState& st = St();
  SampledAllocation* r;
  Span* span = nullptr;
  // Guarded sampling (runtime/guarded_pool.h): one in JSMALLOC_GUARDED_RATE
  // samples goes to the guarded pool instead of a span of its own.
  void* guarded = nullptr;
  if (JSMALLOC_UNLIKELY(Static::options().guarded_rate != 0)) guarded = MaybeGuard(size, alignment, stack, depth);
  st.lock.Lock();
  if (guarded == nullptr && allocated <= kMaxSize && align_pages == 1) {
    // A kept span of the right length (it starts on a page, which is all
    // the alignment asked for) and of the caller's NUMA partition.
    span = st.kept.Take(pages, Static::CurrentPartition());
  }
  if (guarded == nullptr && span == nullptr) {
    st.lock.Unlock();
    span = align_pages > 1 ? Static::backend()->NewAligned(pages, align_pages) : Static::backend()->New(pages);
    if (span == nullptr) return nullptr;
    // A large block's usable size is its span, sampled or not (an aligned
    // one may have been rounded up to whole hugepages).
    if (allocated > kMaxSize) allocated = span->bytes();
    st.lock.Lock();
  }
  {
    r = st.pool.New();
    if (r != nullptr) {
      r->ptr = guarded != nullptr ? guarded : span->start();
      r->requested = size;
      r->alignment = alignment;
      r->allocated = allocated;
      r->time_ns = now;
      r->seq = ++st.next_seq;
      r->interval = interval;
      r->est_bytes = static_cast<uint64_t>(weight * static_cast<double>(size) + 0.5);
      r->est_objects_q16 = static_cast<uint64_t>(weight * kQ16 + 0.5);
      r->depth = depth;
      memcpy(r->stack, stack, sizeof(void*) * static_cast<size_t>(depth));
      if (guarded != nullptr) GuardedSetRecord(guarded, r);
      else span->sample = r;
      st.live.PushBack(r);
      st.live_est_bytes += r->est_bytes;
      st.live_est_objects_q16 += r->est_objects_q16;
      if (st.live_est_bytes > st.peak_est_bytes) {
        // A new peak: the records kept for the old one were freed before now.
        st.peak_est_bytes = st.live_est_bytes;
        st.peak_seq = r->seq;
        DropPeakKeptLocked(st);
      }
      if (st.alloc_profile_active) st.alloc_profile.Add(stack, depth, size, 1);
      ++st.samples_total;
    }
  }
  st.lock.Unlock();
  if (r == nullptr) {
    if (guarded != nullptr) {
      GuardedAbandon(guarded);
      return nullptr;
    }
    span->sample = nullptr;
    Static::backend()->Delete(span);
    return nullptr;
  }
  void* p = guarded != nullptr ? guarded : span->start();
  ProbeSampleAlloc(p, size, allocated);
  return p;
}

bool IsKeptSampledSpan(const Span* span) { return span->sample == &kept_marker; }

bool FreeSampled(Span* span) {
  SampledAllocation* r = span->sample;
  if (r == &kept_marker) os::FatalError("double free of pointer", span->start());
  void* p = r->ptr;
  size_t requested = r->requested;
  bool keep;
  SamplerState& st = St();
  {
    SpinLockHolder h(&st.lock);
    keep = r->allocated <= kMaxSize && st.kept.HasRoomFor(span);
    DropLiveLocked(st, r);
    if (keep) {
      span->sample = &kept_marker;
      st.kept.Keep(span);
    } else {
      span->sample = nullptr;
    }
  }
  ProbeSampleFree(p, requested);
  return keep;
}

// A guarded sample is freed (runtime/guarded_pool.h): its record leaves the
// live list as a span's does; the pool keeps its slot.
void FreeGuardedSample(SampledAllocation* r, void* p) {
  size_t requested = r->requested;
  SamplerState& st = St();
  {
    SpinLockHolder h(&st.lock);
    DropLiveLocked(st, r);
  }
  ProbeSampleFree(p, requested);
}

void ReleaseKeptSampleSpans() {
  if (!state_ready) return;
  Span* spans[SampleSpanCache::kMaxSpans];
  int n;
  SamplerState& st = St();
  {
    SpinLockHolder h(&st.lock);
    n = st.kept.TakeAll(spans);
  }
  for (int i = 0; i < n; ++i) {
    spans[i]->sample = nullptr;
    Static::backend()->Delete(spans[i]);
  }
}

size_t SampledAllocatedSize(const Span* span) {
  // Read once: another thread may be freeing it (the record stays readable:
  // records are recycled, never unmapped).
  const SampledAllocation* r = __atomic_load_n(&span->sample, __ATOMIC_RELAXED);
  return r != nullptr ? r->allocated : 0;
}

// ---- Reading the records --------------------------------------------------------

SamplingStats GetSamplingStats() {
  Static::InitIfNeeded();
  SamplingStats s = {};
  s.interval = GetSampleInterval();
  SamplerState& st = St();
  SpinLockHolder h(&st.lock);
  s.samples_total = st.samples_total;
  s.kept_spans = static_cast<size_t>(st.kept.count());
  s.kept_bytes = st.kept.bytes();
  s.live_samples = st.live.count;
  s.live_bytes_estimate = st.live_est_bytes;
  s.live_objects_estimate = (st.live_est_objects_q16 + kQ16 / 2) / kQ16;
  s.peak_bytes_estimate = st.peak_est_bytes;
  s.allocation_profile_active = st.alloc_profile_active;
  return s;
}

bool CollectSampledProfile(ProfileTable* table, bool peak) {
  SamplerState& st = St();
  SpinLockHolder h(&st.lock);
  size_t n = st.live.count + (peak ? st.peak_kept.count : 0);
  if (!table->Reserve(n)) {
    errno = ENOMEM;
    return false;
  }
  st.live.list.ForEach([&](SampledAllocation* r) {
    if (peak && r->seq > st.peak_seq) return;
    table->Add(r->stack, r->depth, r->requested, 1);
  });
  if (peak) {
    st.peak_kept.list.ForEach(
        [&](SampledAllocation* r) { table->Add(r->stack, r->depth, r->requested, 1); });
  }
  return true;
}

bool StartRecordingSamples() {
  SamplerState& st = St();
  SpinLockHolder h(&st.lock);
  if (st.alloc_profile_active) return false;
  st.alloc_profile.Reset();
  st.alloc_profile_active = true;
  st.alloc_profile_interval = ProfileHeaderInterval();
  return true;
}

bool StopRecordingSamples(ProfileTable* out, size_t* interval) {
  const size_t now = GetSampleInterval();
  SamplerState& st = St();
  SpinLockHolder h(&st.lock);
  if (!st.alloc_profile_active) {
    errno = EINVAL;
    return false;
  }
  st.alloc_profile_active = false;
  out->Swap(st.alloc_profile);
  // The interval in effect now, unless sampling was turned off meanwhile.
  *interval = now != 0 ? now : st.alloc_profile_interval;
  return true;
}

// ---- fork() ------------------------------------------------------------------------

void SamplerLockForFork() {
  if (state_ready) St().lock.Lock();
}

void SamplerUnlockAfterFork(bool child) {
  if (!state_ready) return;
  if (child) St().lock.ResetAfterFork();
  else St().lock.Unlock();
}

}  // namespace jsmalloc
