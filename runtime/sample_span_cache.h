// Spans of freed sampled small objects, kept for the next samples: finding a
// page or a few in the back-end costs more than the rest of a sample. At
// most kMaxSpans spans and kMaxBytes; FlushCaches gives them back
// (ReleaseKeptSampleSpans, runtime/sample_records.h).
//
// Not thread-safe: the sampler's lock (runtime/sample_records.cc) guards it.
// A kept span stays in use for the back-end; its Span::sample marks it kept.
#ifndef JSMALLOC_RUNTIME_SAMPLE_SPAN_CACHE_H_
#define JSMALLOC_RUNTIME_SAMPLE_SPAN_CACHE_H_

#include <cstddef>

#include "base/config.h"
#include "base/span.h"

namespace jsmalloc {

class SampleSpanCache {
 public:
  static constexpr int kMaxSpans = 16;
  static constexpr size_t kMaxBytes = 512 << 10;

  // A kept span of `pages` pages from NUMA partition `partition`, taken out
  // of the cache; nullptr if there is none.
  Span* Take(Length pages, int partition) {
    for (int i = 0; i < count_; ++i) {
      Span* s = spans_[i];
      if (s->num_pages == pages && s->partition == partition) {
        spans_[i] = spans_[--count_];
        bytes_ -= s->bytes();
        return s;
      }
    }
    return nullptr;
  }
  // True if the cache has room for `span`.
  bool HasRoomFor(const Span* span) const {
    return count_ < kMaxSpans && bytes_ + span->bytes() <= kMaxBytes;
  }
  // Keeps `span`; only after HasRoomFor(span).
  void Keep(Span* span) {
    spans_[count_++] = span;
    bytes_ += span->bytes();
  }
  // Empties the cache into out[0, kMaxSpans); returns how many it held.
  int TakeAll(Span** out) {
    int n = count_;
    for (int i = 0; i < n; ++i) out[i] = spans_[i];
    count_ = 0;
    bytes_ = 0;
    return n;
  }

  int count() const { return count_; }
  size_t bytes() const { return bytes_; }

 private:
  Span* spans_[kMaxSpans] = {};
  int count_ = 0;
  size_t bytes_ = 0;
};

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_SAMPLE_SPAN_CACHE_H_
