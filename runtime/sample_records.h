// The records of sampled allocations (runtime/sampler.h decides which
// allocations are sampled): TakeSample makes the allocation and its record,
// the free paths drop the record. The records form the live list, plus the
// records freed since the highest estimated live heap (the peak profile);
// the running estimates and the allocation profile are kept with them.
//
// Every record is taken from an ObjectPool over the metadata arena, and one
// spin lock (the sampler's lock) guards all of this state, the spans kept
// for samples (runtime/sample_span_cache.h) included.
#ifndef JSMALLOC_RUNTIME_SAMPLE_RECORDS_H_
#define JSMALLOC_RUNTIME_SAMPLE_RECORDS_H_

#include <cstddef>
#include <cstdint>

#include "base/intrusive_list.h"
#include "base/span.h"
#include "runtime/allocator.h"
#include "runtime/sampler.h"

namespace jsmalloc {

class ProfileTable;

// One sampled allocation.
struct SampledAllocation : IntrusiveLinks {  // the live list, or the records kept for the peak
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

// Marks the calling thread as inside the sampler for a scope (taking a
// sample, writing a profile): its own allocations (there should be none)
// are not sampled.
class InSampler {
 public:
  InSampler() : was_(t_state.in_sampler) { t_state.in_sampler = true; }
  ~InSampler() { t_state.in_sampler = was_; }
  InSampler(const InSampler&) = delete;
  InSampler& operator=(const InSampler&) = delete;

 private:
  bool was_;
};

// Called once by InitSampling; until then nothing here may be used but
// SampleRecordsReady (false) and the functions that test it themselves.
void InitSampleRecords();
bool SampleRecordsReady();

// ---- Allocation and free ----------------------------------------------------

// The sampled allocation itself (AllocateSampleSlow, inside an InSampler
// scope): its own span or a guarded block (runtime/guarded_pool.h), its
// record with the stack. `caller` is the stack when no walk works. nullptr
// if memory is short (the caller then allocates without sampling).
void* TakeSample(size_t size, size_t alignment, size_t interval, void* caller);

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

// ---- Reading the records ------------------------------------------------------

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

// Adds the live records (peak: those that made up the highest estimated
// live heap) to `table`, empty on entry. False (errno ENOMEM) if the table
// cannot hold them.
bool CollectSampledProfile(ProfileTable* table, bool peak);
// The allocation profile: from Start, every sample taken is also added to a
// table, which Stop hands over in `out` (empty on entry) with the interval
// for its header. Start returns false if one is running already; Stop if
// none is (errno EINVAL).
bool StartRecordingSamples();
bool StopRecordingSamples(ProfileTable* out, size_t* interval);

// ---- fork(): the sampler's lock is taken before every other allocator lock --
void SamplerLockForFork();
void SamplerUnlockAfterFork(bool child);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_SAMPLE_RECORDS_H_
