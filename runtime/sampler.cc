#include "runtime/sampler.h"

#include "runtime/heap_check.h"
#include "base/log_exp.h"

#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "os/os.h"
#include "probes/jsmalloc_probes.h"
#include "runtime/allocator.h"
#include "base/arena.h"
#include "base/env_options.h"
#include "runtime/guarded_pool.h"
#include "runtime/heap_profile.h"
#include "runtime/stack_trace.h"
#include "runtime/static_vars.h"

namespace jsmalloc {

// ---- The sampling decision ----------------------------------------------------

uint64_t SamplerSeed(uint64_t salt) {
  // splitmix64 of the salt: nearby salts give unrelated seeds.
  uint64_t z = salt + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return z != 0 ? z : 0x2545f4914f6cdd1dull;
}

uint64_t SamplerNextRandom(uint64_t* state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545f4914f6cdd1dull;
}

int64_t DrawSampleInterval(uint64_t* state, size_t mean) {
  // u uniform in (0, 1] from the top 53 bits; -ln(u) is exponential with
  // mean 1. The countdown is the integer part: an allocation of s bytes then
  // drives it below zero exactly when the exponential variable is below s.
  uint64_t r = SamplerNextRandom(state);
  double u = static_cast<double>((r >> 11) + 1) * 0x1.0p-53;
  double v = -NaturalLog(u) * static_cast<double>(mean);
  if (!(v < static_cast<double>(kMaxSampleCountdown))) return kMaxSampleCountdown;
  return static_cast<int64_t>(v);
}

int64_t NextSampleCountdown(uint64_t* rng, size_t interval) {
  return interval == 0 ? kSamplingOffRecheckBytes : DrawSampleInterval(rng, interval);
}

namespace {

constinit std::atomic<uint64_t> seed_counter{0};

bool Decide(int64_t* countdown, uint64_t* rng, bool* armed, size_t size, size_t interval) {
  if (*rng == 0) {
    uint64_t salt = reinterpret_cast<uintptr_t>(rng) ^ os::MonotonicNanos() ^
                    (seed_counter.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b97f4a7c15ull);
    *rng = SamplerSeed(salt);
  }
  if (interval == 0) {
    *armed = false;
    *countdown = kSamplingOffRecheckBytes;
    return false;
  }
  if (!*armed) {
    // The countdown did not lead to a sample point (a new thread, or
    // sampling was off or its interval changed): this allocation starts the
    // thread's stream of bytes, and is sampled if it covers the first point.
    *armed = true;
    int64_t first = DrawSampleInterval(rng, interval);
    if (static_cast<uint64_t>(first) >= size) {
      *countdown = first - static_cast<int64_t>(size);
      return false;
    }
  }
  *countdown = DrawSampleInterval(rng, interval);
  return true;
}

}  // namespace

bool SampleDecision(int64_t* countdown, uint64_t* rng, size_t size, size_t interval) {
  // The unit-test form: a countdown that ran out is a sample point once the
  // generator is seeded.
  bool armed = *rng != 0;
  return Decide(countdown, rng, &armed, size, interval);
}

double SampleProbability(size_t size, size_t interval) {
  if (interval == 0) return 0.0;
  return -ExpMinusOne(-static_cast<double>(size) / static_cast<double>(interval));
}

double SampleWeight(size_t size, size_t interval) {
  double p = SampleProbability(size, interval);
  return p > 0.0 ? 1.0 / p : 0.0;
}

// ---- Records --------------------------------------------------------------------

struct SampledAllocation {
  SampledAllocation* next;  // live list, or the list of records kept for the peak
  SampledAllocation* prev;
  void* ptr;
  size_t requested;
  size_t alignment;   // as asked (0: malloc's)
  size_t allocated;   // what an unsampled allocation would have occupied
  uint64_t time_ns;   // CLOCK_REALTIME when it was sampled
  uint64_t seq;       // 1, 2, ... in sampling order
  size_t interval;    // the mean interval it was sampled at
  uint64_t est_bytes;      // requested * weight, rounded
  uint64_t est_objects_q16;  // weight in 1/65536ths
  int depth;
  void* stack[kMaxStackDepth];
};

namespace {

constexpr int64_t kQ16 = 65536;

// Intrusive doubly linked list with a sentinel.
struct RecordList {
  SampledAllocation head;
  size_t count;
  void Init() {
    head.next = head.prev = &head;
    count = 0;
  }
  void PushBack(SampledAllocation* r) {
    r->prev = head.prev;
    r->next = &head;
    head.prev->next = r;
    head.prev = r;
    ++count;
  }
  void Remove(SampledAllocation* r) {
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->next = r->prev = nullptr;
    --count;
  }
  SampledAllocation* first() { return head.next; }
  const SampledAllocation* end() const { return &head; }
};

// Spans of freed sampled small objects, kept for the next samples: finding a
// page or a few in the back-end costs more than the rest of a sample. At
// most kKeptSpans spans and kKeptBytes; FlushCaches gives them back.
constexpr int kKeptSpans = 16;
constexpr size_t kKeptBytes = 512 << 10;

struct SamplerState {
  SpinLock lock;  // guards everything below
  ObjectPool<SampledAllocation> pool;
  Span* kept[kKeptSpans];  // in use for the back-end; sample == &kept_marker
  int kept_count;
  size_t kept_bytes;
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

constinit std::atomic<size_t> g_interval{kDefaultSampleInterval};
// The interval in profile headers while sampling is off.
constinit std::atomic<size_t> g_last_interval{kDefaultSampleInterval};
// Span::sample of a kept span: a free of its address is a double free.
constinit SampledAllocation kept_marker = {};
constinit std::atomic<uint64_t> g_signal_dumps{0};
constinit pid_t g_init_pid = 0;

uint64_t RealtimeNanos() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);  // a few ms of resolution is plenty
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

void WriteErrLine(const char* what, const char* path) {
  char buf[512];
  Printer p(buf, sizeof(buf));
  p.Str("jsmalloc: ").Str(what).Str(path).Char('\n');
  os::WriteStderr(p.data(), p.written());
}

// Marks the calling thread as inside the sampler for a scope: its own
// allocations (there should be none) are not sampled.
class InSampler {
 public:
  InSampler() : was_(t_state.in_sampler) { t_state.in_sampler = true; }
  ~InSampler() { t_state.in_sampler = was_; }
  InSampler(const InSampler&) = delete;
  InSampler& operator=(const InSampler&) = delete;

 private:
  bool was_;
};

// Frees the records kept for a peak that is no longer the highest one.
void DropPeakKeptLocked(SamplerState& st) {
  while (st.peak_kept.count > 0) {
    SampledAllocation* r = st.peak_kept.first();
    st.peak_kept.Remove(r);
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
  if (rate > 1 && SamplerNextRandom(&t_state.sample_rng) % rate != 0) return nullptr;
  return GuardedAllocate(size, alignment, stack, depth);
}

// The sampled allocation itself: its own span, its record. nullptr if memory
// is short (the caller then allocates without sampling).
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
    const int partition = Static::CurrentPartition();
    for (int i = 0; i < st.kept_count; ++i) {
      if (st.kept[i]->num_pages == pages && st.kept[i]->partition == partition) {
        span = st.kept[i];
        st.kept[i] = st.kept[--st.kept_count];
        st.kept_bytes -= span->bytes();
        break;
      }
    }
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

void* AllocateUnsampledAny(size_t size, size_t alignment) {
  return alignment == 0 ? AllocateUnsampled(size) : AllocateAlignedUnsampled(size, alignment);
}

}  // namespace

// The slow path of every allocation whose countdown ran out (allocator.h).
JSMALLOC_ENTRY_SECTION void* AllocateSampleSlow(size_t size, size_t alignment) noexcept {
  Static::InitIfNeeded();
  // Check mode sends every allocation here (runtime/heap_check.h).
  if (JSMALLOC_UNLIKELY(g_check_mode)) return AllocateChecked(size, alignment);
  ThreadState* ts = &t_state;
  if (ts->in_sampler || size > kMaxRequest || alignment > kMaxRequest) {
    // Inside the sampler (never sampled), or an impossible request (which
    // fails, and AllocateLarge gives its bytes back to the countdown). The
    // next allocation after this one starts a new stream.
    if (ts->in_sampler) {
      ts->sample_armed = false;
      ts->bytes_until_sample = 0;
    }
    return AllocateUnsampledAny(size, alignment);
  }
  size_t interval = g_interval.load(std::memory_order_relaxed);
  if (!Decide(&ts->bytes_until_sample, &ts->sample_rng, &ts->sample_armed, size, interval)) {
    return AllocateUnsampledAny(size, alignment);
  }
  void* p;
  {
    InSampler guard;
    p = TakeSample(size, alignment, interval, __builtin_return_address(0));
  }
  if (JSMALLOC_UNLIKELY(p == nullptr)) p = AllocateUnsampledAny(size, alignment);
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
    st.live.Remove(r);
    st.live_est_bytes -= r->est_bytes;
    st.live_est_objects_q16 -= r->est_objects_q16;
    keep = r->allocated <= kMaxSize && st.kept_count < kKeptSpans &&
           st.kept_bytes + span->bytes() <= kKeptBytes;
    if (r->seq <= st.peak_seq) {
      st.peak_kept.PushBack(r);  // part of the peak profile
    } else {
      st.pool.Delete(r);
    }
    if (keep) {
      span->sample = &kept_marker;
      st.kept[st.kept_count++] = span;
      st.kept_bytes += span->bytes();
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
    st.live.Remove(r);
    st.live_est_bytes -= r->est_bytes;
    st.live_est_objects_q16 -= r->est_objects_q16;
    if (r->seq <= st.peak_seq) {
      st.peak_kept.PushBack(r);  // part of the peak profile
    } else {
      st.pool.Delete(r);
    }
  }
  ProbeSampleFree(p, requested);
}

void ReleaseKeptSampleSpans() {
  if (!state_ready) return;
  Span* spans[kKeptSpans];
  int n;
  SamplerState& st = St();
  {
    SpinLockHolder h(&st.lock);
    n = st.kept_count;
    for (int i = 0; i < n; ++i) spans[i] = st.kept[i];
    st.kept_count = 0;
    st.kept_bytes = 0;
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

// ---- Configuration -------------------------------------------------------------

void InitSampling(const Options& options) {
  SamplerState* st = new (state_storage) SamplerState();
  st->pool.Init(GlobalArena());
  st->live.Init();
  st->peak_kept.Init();
  size_t interval = options.sample_interval;
  if (interval > static_cast<size_t>(kMaxSampleCountdown)) interval = kMaxSampleCountdown;
  g_interval.store(interval, std::memory_order_relaxed);
  if (interval != 0) g_last_interval.store(interval, std::memory_order_relaxed);
  g_init_pid = getpid();
  state_ready = true;
}

void DumpHeapProfileOnSignal() {
  if (!state_ready) return;
  int saved = errno;
  InSampler guard;
  const Options& o = Static::options();
  char path[sizeof(o.heap_profile_prefix) + 64];
  Printer p(path, sizeof(path));
  p.Str(o.heap_profile_prefix[0] != '\0' ? o.heap_profile_prefix : "/tmp/jsmalloc")
      .Char('.').U(static_cast<uint64_t>(getpid())).Char('.')
      .U(g_signal_dumps.fetch_add(1, std::memory_order_relaxed) + 1).Str(".heap");
  if (DumpHeapProfile(path)) WriteErrLine("heap profile written to ", path);
  else WriteErrLine("could not write heap profile ", path);
  errno = saved;
}

size_t GetSampleInterval() {
  Static::InitIfNeeded();
  return g_interval.load(std::memory_order_relaxed);
}

void SetSampleInterval(size_t bytes) {
  Static::InitIfNeeded();
  if (bytes > static_cast<size_t>(kMaxSampleCountdown)) bytes = kMaxSampleCountdown;
  g_interval.store(bytes, std::memory_order_relaxed);
  if (bytes != 0) g_last_interval.store(bytes, std::memory_order_relaxed);
  // The calling thread draws a new interval on its next allocation.
  t_state.sample_armed = false;
  t_state.bytes_until_sample = 0;
}

// ---- Stats ----------------------------------------------------------------------

SamplingStats GetSamplingStats() {
  Static::InitIfNeeded();
  SamplingStats s = {};
  s.interval = g_interval.load(std::memory_order_relaxed);
  SamplerState& st = St();
  SpinLockHolder h(&st.lock);
  s.samples_total = st.samples_total;
  s.kept_spans = static_cast<size_t>(st.kept_count);
  s.kept_bytes = st.kept_bytes;
  s.live_samples = st.live.count;
  s.live_bytes_estimate = st.live_est_bytes;
  s.live_objects_estimate = (st.live_est_objects_q16 + kQ16 / 2) / kQ16;
  s.peak_bytes_estimate = st.peak_est_bytes;
  s.allocation_profile_active = st.alloc_profile_active;
  return s;
}

void PrintSamplingSection(Printer* out) {
  SamplingStats s = GetSamplingStats();
  if (s.interval == 0) {
    out->Str("Sampling: off (JSMALLOC_SAMPLE_INTERVAL=0)");
  } else {
    out->Str("Sampling: one allocation per ").U(s.interval).Str(" bytes on average (");
    if (s.interval % (1 << 20) == 0) out->U(s.interval >> 20).Str(" MiB");
    else if (s.interval % 1024 == 0) out->U(s.interval >> 10).Str(" KiB");
    else out->U(s.interval).Str(" bytes");
    out->Str(", exponential intervals)");
  }
  out->Str("\n  ").U(s.samples_total).Str(" samples taken, ").U(s.live_samples)
      .Str(" live; estimated live heap ").MiB(s.live_bytes_estimate).Str(" MiB in ")
      .U(s.live_objects_estimate).Str(" objects, peak ").MiB(s.peak_bytes_estimate)
      .Str(" MiB\n  allocation profile ").Str(s.allocation_profile_active ? "running" : "off")
      .Str("; ").U(s.kept_spans).Str(" spans (").U(s.kept_bytes >> 10).Str(" KiB) kept for samples\n");
}

bool GetSamplingProperty(const char* name, size_t* value) {
  SamplingStats s = GetSamplingStats();
  const struct {
    const char* n;
    size_t v;
  } props[] = {
      {"jsmalloc.sampling.interval", s.interval},
      {"jsmalloc.sampling.samples_total", static_cast<size_t>(s.samples_total)},
      {"jsmalloc.sampling.live_samples", s.live_samples},
      {"jsmalloc.sampling.live_bytes_estimate", s.live_bytes_estimate},
      {"jsmalloc.sampling.live_objects_estimate", s.live_objects_estimate},
      {"jsmalloc.sampling.peak_bytes_estimate", s.peak_bytes_estimate},
      {"jsmalloc.sampling.allocation_profile_active", s.allocation_profile_active ? size_t{1} : 0},
      {"jsmalloc.sampling.kept_span_bytes", s.kept_bytes},
  };
  for (const auto& e : props) {
    if (strcmp(e.n, name) == 0) {
      *value = e.v;
      return true;
    }
  }
  return false;
}

// ---- Profiles -------------------------------------------------------------------

namespace {

size_t HeaderInterval() {
  size_t i = g_interval.load(std::memory_order_relaxed);
  return i != 0 ? i : g_last_interval.load(std::memory_order_relaxed);
}

enum class Which { kLive, kPeak };

bool DumpRecords(const char* path, Which which) {
  Static::InitIfNeeded();
  InSampler guard;
  ProfileTable table;
  SamplerState& st = St();
  {
    SpinLockHolder h(&st.lock);
    size_t n = st.live.count + (which == Which::kPeak ? st.peak_kept.count : 0);
    if (!table.Reserve(n)) {
      errno = ENOMEM;
      return false;
    }
    for (SampledAllocation* r = st.live.first(); r != st.live.end(); r = r->next) {
      if (which == Which::kPeak && r->seq > st.peak_seq) continue;
      table.Add(r->stack, r->depth, r->requested, 1);
    }
    if (which == Which::kPeak) {
      for (SampledAllocation* r = st.peak_kept.first(); r != st.peak_kept.end(); r = r->next) {
        table.Add(r->stack, r->depth, r->requested, 1);
      }
    }
  }
  return WriteHeapProfile(path, table, HeaderInterval());
}

}  // namespace

bool DumpHeapProfile(const char* path) { return DumpRecords(path, Which::kLive); }

bool DumpPeakHeapProfile(const char* path) { return DumpRecords(path, Which::kPeak); }

bool StartAllocationProfile() {
  Static::InitIfNeeded();
  SamplerState& st = St();
  SpinLockHolder h(&st.lock);
  if (st.alloc_profile_active) return false;
  st.alloc_profile.Reset();
  st.alloc_profile_active = true;
  st.alloc_profile_interval = HeaderInterval();
  return true;
}

bool StopAllocationProfile(const char* path) {
  Static::InitIfNeeded();
  InSampler guard;
  ProfileTable table;
  size_t interval;
  SamplerState& st = St();
  {
    SpinLockHolder h(&st.lock);
    if (!st.alloc_profile_active) {
      errno = EINVAL;
      return false;
    }
    st.alloc_profile_active = false;
    table.Swap(st.alloc_profile);
    // The interval in effect now, unless sampling was turned off meanwhile.
    interval = g_interval.load(std::memory_order_relaxed);
    if (interval == 0) interval = st.alloc_profile_interval;
  }
  return WriteHeapProfile(path, table, interval);
}

void HeapProfileAtExit() {
  if (!Static::inited() || !state_ready) return;
  const char* path = Static::options().heap_profile_on_exit;
  if (path[0] == '\0') return;
  int saved = errno;
  char buf[sizeof(Static::options().heap_profile_on_exit) + 32];
  if (getpid() != g_init_pid) {
    // A forked child: its own file next to the parent's.
    Printer p(buf, sizeof(buf));
    p.Str(path).Char('.').U(static_cast<uint64_t>(getpid()));
    path = buf;
  }
  if (!DumpHeapProfile(path)) WriteErrLine("could not write the heap profile at exit to ", path);
  errno = saved;
}

void SamplerLockForFork() {
  if (state_ready) St().lock.Lock();
}

void SamplerUnlockAfterFork(bool child) {
  if (!state_ready) return;
  if (child) St().lock.ResetAfterFork();
  else St().lock.Unlock();
}

}  // namespace jsmalloc
