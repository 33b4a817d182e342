// Heap sampling: on average one allocation per `interval` bytes is sampled.
//
// Every thread counts the bytes it allocates down from a random interval
// (t_state.bytes_until_sample, decremented on the fast path in allocator.h);
// when the count goes below zero the allocation takes AllocateSampleSlow,
// which records it (size, alignment, time, stack) and draws the next
// interval. Intervals are exponentially distributed with mean `interval`, so
// sample points form a Poisson process over the thread's allocated bytes and
// an allocation of s bytes is sampled with probability 1 - exp(-s/interval),
// independently of what came before. A sample of s bytes therefore stands
// for 1 / (1 - exp(-s/interval)) allocations of its size: the estimates in
// the stats and the heap_v2 unsampling pprof applies both use that weight.
//
// A sampled allocation gets a span of its own (page-granular, flagged by
// Span::sample), even when it is small: free() then finds its class is 0 and
// takes the large-object path, where FreeSlow sees the flag. Neither fast
// path tests anything for sampling besides the countdown in malloc.
#ifndef JSMALLOC_RUNTIME_SAMPLER_H_
#define JSMALLOC_RUNTIME_SAMPLER_H_

#include <cstddef>
#include <cstdint>

#include "base/internal_printer.h"
#include "base/span.h"

namespace jsmalloc {

struct Options;

inline constexpr size_t kDefaultSampleInterval = size_t{2} << 20;  // 2 MiB
// Deepest stack a sample records.
inline constexpr int kMaxStackDepth = 64;
// With sampling off a thread still looks at the interval every this many
// bytes, so that turning it on (from another thread) takes effect.
inline constexpr int64_t kSamplingOffRecheckBytes = int64_t{16} << 20;
// Intervals are capped here (a huge mean must not overflow the countdown).
inline constexpr int64_t kMaxSampleCountdown = int64_t{1} << 62;

// ---- The sampling decision (pure functions; unit-tested) --------------------

// Seeds a per-thread generator (never returns 0).
uint64_t SamplerSeed(uint64_t salt);
// Next value of a xorshift64* generator; *state must not be 0.
uint64_t SamplerNextRandom(uint64_t* state);
// An exponentially distributed byte count with the given mean (> 0).
int64_t DrawSampleInterval(uint64_t* state, size_t mean);
// The next countdown for a thread: an exponential interval, or
// kSamplingOffRecheckBytes when interval == 0 (sampling off).
int64_t NextSampleCountdown(uint64_t* rng, size_t interval);
// Decides whether an allocation of `size` bytes, which drove *countdown below
// zero (the fast path already subtracted it), is sampled, and sets *countdown
// for the allocations that follow. *rng == 0 means the thread has not drawn
// its first interval yet: it is seeded here, the interval drawn, and the
// allocation sampled if it covers the first sample point.
bool SampleDecision(int64_t* countdown, uint64_t* rng, size_t size, size_t interval);
// Probability that an allocation of `size` bytes is sampled, and the number
// of allocations one such sample stands for (its inverse).
double SampleProbability(size_t size, size_t interval);
double SampleWeight(size_t size, size_t interval);

// ---- The process-wide sampler ---------------------------------------------

// Called from Static::Init with the parsed options.
void InitSampling(const Options& options);
// JSMALLOC_HEAP_PROFILE_SIGNAL: writes PREFIX.PID.N.heap. Called by the
// report thread (runtime/report_thread.h), never from the signal handler.
void DumpHeapProfileOnSignal();

size_t GetSampleInterval();
// 0 turns sampling off. The calling thread draws its next interval at once;
// other threads switch when their current countdown runs out (at most
// kSamplingOffRecheckBytes of their allocations when sampling was off).
void SetSampleInterval(size_t bytes);

// FreeSlow: `span` holds a sampled allocation (span->sample != nullptr) that
// is being freed. Drops the record; returns true if the sampler keeps the
// span for a later sample (a small object's), false if the caller must
// return it to the back-end (the flag is cleared then).
bool FreeSampled(Span* span);
// True for a sampled span that was freed and is kept for the next sample.
bool IsKeptSampledSpan(const Span* span);
// FlushCaches: the spans kept for samples go back to the back-end.
void ReleaseKeptSampleSpans();
// Usable size of the sampled allocation in `span`: what an unsampled
// allocation of the same request would have had (its class size); 0 if the
// span holds no sampled allocation (any more).
size_t SampledAllocatedSize(const Span* span);

struct SamplingStats {
  size_t interval;
  uint64_t samples_total;       // samples taken since start
  size_t live_samples;          // sampled allocations not yet freed
  size_t live_bytes_estimate;   // unsampled estimate of the live heap (requested bytes)
  size_t live_objects_estimate;
  size_t peak_bytes_estimate;   // highest live_bytes_estimate seen
  bool allocation_profile_active;
  size_t kept_spans;            // spans of freed samples kept for the next ones
  size_t kept_bytes;
};
SamplingStats GetSamplingStats();
// The sampling line of the stats report.
void PrintSamplingSection(Printer* out);
// Numeric properties "jsmalloc.sampling.*".
bool GetSamplingProperty(const char* name, size_t* value);

// Profiles, written to `path` in the legacy gperftools heap-profile format
// (heap_v2), which google-pprof reads. Return false (errno set) on failure.
bool DumpHeapProfile(const char* path);
bool DumpPeakHeapProfile(const char* path);
// False if one is already running (it keeps running).
bool StartAllocationProfile();
// Writes every sample taken since the start and ends the profile; false if
// none was running (errno EINVAL) or the file could not be written.
bool StopAllocationProfile(const char* path);
// Library destructor: JSMALLOC_HEAP_PROFILE_ON_EXIT.
void HeapProfileAtExit();

// fork(): the sampler's lock is taken before every other allocator lock.
void SamplerLockForFork();
void SamplerUnlockAfterFork(bool child);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_SAMPLER_H_
