#include "runtime/sampling_stats.h"

#include <cstring>

#include "runtime/sample_records.h"

namespace jsmalloc {

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

}  // namespace jsmalloc
