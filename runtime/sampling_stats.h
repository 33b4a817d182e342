// Heap sampling in the stats report and the numeric properties: the numbers
// of GetSamplingStats (runtime/sample_records.h), formatted.
#ifndef JSMALLOC_RUNTIME_SAMPLING_STATS_H_
#define JSMALLOC_RUNTIME_SAMPLING_STATS_H_

#include <cstddef>

#include "base/internal_printer.h"

namespace jsmalloc {

// The sampling lines of the stats report.
void PrintSamplingSection(Printer* out);
// Numeric properties "jsmalloc.sampling.*".
bool GetSamplingProperty(const char* name, size_t* value);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_SAMPLING_STATS_H_
