// Heap profiles written from the sampler's records (runtime/sample_records.h)
// in the legacy gperftools format (runtime/heap_profile.h), which
// google-pprof reads:
//
//   live        the sampled allocations not freed yet (DumpHeapProfile; also
//               written at exit and on a signal, see below);
//   peak        those that were live when the estimated live heap was at its
//               highest (DumpPeakHeapProfile);
//   allocation  every sample taken between StartAllocationProfile and
//               StopAllocationProfile, freed or not.
#ifndef JSMALLOC_RUNTIME_PROFILE_OUTPUT_H_
#define JSMALLOC_RUNTIME_PROFILE_OUTPUT_H_

namespace jsmalloc {

// Called once by InitSampling: remembers the process id, so that a forked
// child writes its exit profile to a file of its own.
void InitProfileOutput();

// Profiles, written to `path`. Return false (errno set) on failure.
bool DumpHeapProfile(const char* path);
bool DumpPeakHeapProfile(const char* path);
// False if one is already running (it keeps running).
bool StartAllocationProfile();
// Writes every sample taken since the start and ends the profile; false if
// none was running (errno EINVAL) or the file could not be written.
bool StopAllocationProfile(const char* path);

// Library destructor: JSMALLOC_HEAP_PROFILE_ON_EXIT (PATH, or PATH.PID in a
// forked child).
void HeapProfileAtExit();
// JSMALLOC_HEAP_PROFILE_SIGNAL: writes PREFIX.PID.N.heap. Called by the
// report thread (runtime/report_thread.h), never from the signal handler.
void DumpHeapProfileOnSignal();

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_PROFILE_OUTPUT_H_
