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
//
// This file is the decision and the interval; the records of sampled
// allocations, the spans kept for them and the sampling stats are in
// runtime/sample_records.h (runtime/sample_span_cache.h,
// runtime/sampling_stats.h), the profiles written from them in
// runtime/profile_output.h.
#ifndef JSMALLOC_RUNTIME_SAMPLER_H_
#define JSMALLOC_RUNTIME_SAMPLER_H_

#include <cstddef>
#include <cstdint>

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

// A thread's generator is base/random.h's, seeded on its first decision.

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

// ---- The process-wide interval --------------------------------------------

// Called from Static::Init with the parsed options: the interval, and the
// sampler's records and profile output (runtime/sample_records.h,
// runtime/profile_output.h).
void InitSampling(const Options& options);

size_t GetSampleInterval();
// 0 turns sampling off. The calling thread draws its next interval at once;
// other threads switch when their current countdown runs out (at most
// kSamplingOffRecheckBytes of their allocations when sampling was off).
void SetSampleInterval(size_t bytes);
// The interval profile headers carry: the current one, or while sampling is
// off the last one that was in effect.
size_t ProfileHeaderInterval();

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_SAMPLER_H_
