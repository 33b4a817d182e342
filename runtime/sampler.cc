#include "runtime/sampler.h"

#include <atomic>

#include "os/os.h"
#include "base/env_options.h"
#include "base/log_exp.h"
#include "base/random.h"
#include "runtime/allocator.h"
#include "runtime/heap_check.h"
#include "runtime/profile_output.h"
#include "runtime/sample_records.h"
#include "runtime/stack_trace.h"
#include "runtime/static_vars.h"

namespace jsmalloc {

// ---- The sampling decision ----------------------------------------------------

int64_t DrawSampleInterval(uint64_t* state, size_t mean) {
  // u uniform in (0, 1] from the top 53 bits; -ln(u) is exponential with
  // mean 1. The countdown is the integer part: an allocation of s bytes then
  // drives it below zero exactly when the exponential variable is below s.
  uint64_t r = NextRandom(state);
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
    *rng = RandomSeed(salt);
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

// ---- The process-wide interval --------------------------------------------------

namespace {

constinit std::atomic<size_t> g_interval{kDefaultSampleInterval};
// The interval in profile headers while sampling is off.
constinit std::atomic<size_t> g_last_interval{kDefaultSampleInterval};

}  // namespace

void InitSampling(const Options& options) {
  InitSampleRecords();
  InitProfileOutput();
  size_t interval = options.sample_interval;
  if (interval > static_cast<size_t>(kMaxSampleCountdown)) interval = kMaxSampleCountdown;
  g_interval.store(interval, std::memory_order_relaxed);
  if (interval != 0) g_last_interval.store(interval, std::memory_order_relaxed);
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

size_t ProfileHeaderInterval() {
  size_t i = g_interval.load(std::memory_order_relaxed);
  return i != 0 ? i : g_last_interval.load(std::memory_order_relaxed);
}

// ---- The slow path of a sampled allocation ------------------------------------------

namespace {

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

}  // namespace jsmalloc
