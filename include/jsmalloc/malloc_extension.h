// C++ interface to JSMalloc's statistics and controls, in the spirit of
// TCMalloc's MallocExtension. Header-only over the C API in jsmalloc.h.
//
// The C functions are referenced weakly, so a program that includes this
// header runs whether JSMalloc is linked in, preloaded (LD_PRELOAD) or absent:
// when it is absent every call answers "unknown" (empty string, nullopt,
// kUnknownOwnership, 0) and changes nothing. IsAvailable() tells which.
#ifndef JSMALLOC_MALLOC_EXTENSION_H_
#define JSMALLOC_MALLOC_EXTENSION_H_

#include <cstddef>
#include <map>
#include <optional>
#include <string>

#include "jsmalloc/jsmalloc.h"

#pragma weak jsmalloc_get_stats
#pragma weak jsmalloc_get_numeric_property
#pragma weak jsmalloc_get_property_names
#pragma weak jsmalloc_release_memory_to_os
#pragma weak jsmalloc_set_max_per_cpu_cache_bytes
#pragma weak jsmalloc_get_max_per_cpu_cache_bytes
#pragma weak jsmalloc_start_background_thread
#pragma weak jsmalloc_set_background_release_rate
#pragma weak jsmalloc_get_background_release_rate
#pragma weak jsmalloc_set_memory_limit
#pragma weak jsmalloc_get_memory_limit
#pragma weak jsmalloc_get_allocated_size
#pragma weak jsmalloc_get_ownership
#pragma weak jsmalloc_mark_thread_idle
#pragma weak jsmalloc_mark_thread_busy
#pragma weak jsmalloc_version
#pragma weak jsmalloc_set_sample_interval
#pragma weak jsmalloc_get_sample_interval
#pragma weak jsmalloc_dump_heap_profile
#pragma weak jsmalloc_dump_peak_heap_profile
#pragma weak jsmalloc_start_allocation_profile
#pragma weak jsmalloc_stop_allocation_profile

namespace jsmalloc {

class MallocExtension {
 public:
  // True when JSMalloc is the allocator of this process (linked or preloaded).
  static bool IsAvailable() { return &jsmalloc_version != nullptr; }
  static std::string Version() { return IsAvailable() ? jsmalloc_version() : std::string(); }

  // The full text report (summary, size classes, per-CPU and thread caches,
  // transfer and central free lists, back-end, hugepages, ...).
  static std::string GetStats() {
    if (&jsmalloc_get_stats == nullptr) return {};
    // The report can grow between the sizing call and the real one (other
    // threads allocate): leave room and retry until it fits.
    size_t need = jsmalloc_get_stats(nullptr, 0);
    for (;;) {
      std::string out(need + 4096, '\0');
      size_t got = jsmalloc_get_stats(out.data(), out.size());
      if (got < out.size()) {
        out.resize(got);
        return out;
      }
      need = got;
    }
  }

  // A numeric property by name (docs/tuning.md lists them), or nullopt.
  // The const char* form allocates nothing, so it can observe the calling
  // thread's own cache without disturbing it.
  static std::optional<size_t> GetNumericProperty(const char* name) {
    size_t v = 0;
    if (&jsmalloc_get_numeric_property == nullptr || !jsmalloc_get_numeric_property(name, &v)) {
      return std::nullopt;
    }
    return v;
  }
  static std::optional<size_t> GetNumericProperty(const std::string& name) {
    return GetNumericProperty(name.c_str());
  }

  // Every numeric property with its current value.
  static std::map<std::string, size_t> GetProperties() {
    std::map<std::string, size_t> out;
    if (&jsmalloc_get_property_names == nullptr) return out;
    size_t n = jsmalloc_get_property_names(nullptr, 0);
    const char* small[64];
    const char** names = n <= 64 ? small : new const char*[n];
    jsmalloc_get_property_names(names, n);
    for (size_t i = 0; i < n; ++i) {
      if (auto v = GetNumericProperty(names[i])) out.emplace(names[i], *v);
    }
    if (names != small) delete[] names;
    return out;
  }

  // Returns at least `bytes` of free memory to the OS if that much is free
  // (SIZE_MAX: everything free); returns the bytes released.
  static size_t ReleaseMemoryToSystem(size_t bytes) {
    return &jsmalloc_release_memory_to_os != nullptr ? jsmalloc_release_memory_to_os(bytes) : 0;
  }

  struct MemoryLimit {
    size_t limit = 0;  // bytes; 0 = none
    bool hard = false;
  };
  static MemoryLimit GetMemoryLimit() {
    MemoryLimit m;
    if (&jsmalloc_get_memory_limit != nullptr) {
      int hard = 0;
      m.limit = jsmalloc_get_memory_limit(&hard);
      m.hard = hard != 0;
    }
    return m;
  }
  static void SetMemoryLimit(const MemoryLimit& m) {
    if (&jsmalloc_set_memory_limit != nullptr) jsmalloc_set_memory_limit(m.limit, m.hard ? 1 : 0);
  }

  // The background thread and its release rate (bytes per second).
  static bool StartBackgroundThread() {
    return &jsmalloc_start_background_thread != nullptr && jsmalloc_start_background_thread() != 0;
  }
  static size_t GetBackgroundReleaseRate() {
    return &jsmalloc_get_background_release_rate != nullptr ? jsmalloc_get_background_release_rate() : 0;
  }
  static void SetBackgroundReleaseRate(size_t bytes_per_second) {
    if (&jsmalloc_set_background_release_rate != nullptr) jsmalloc_set_background_release_rate(bytes_per_second);
  }

  // Byte budget of each CPU's cache.
  static size_t GetMaxPerCpuCacheSize() {
    return &jsmalloc_get_max_per_cpu_cache_bytes != nullptr ? jsmalloc_get_max_per_cpu_cache_bytes() : 0;
  }
  static void SetMaxPerCpuCacheSize(size_t bytes) {
    if (&jsmalloc_set_max_per_cpu_cache_bytes != nullptr) jsmalloc_set_max_per_cpu_cache_bytes(bytes);
  }

  // Usable bytes of the block at p, or nullopt if JSMalloc did not hand it
  // out (see jsmalloc_get_allocated_size for which pointers qualify).
  static std::optional<size_t> GetAllocatedSize(const void* p) {
    if (&jsmalloc_get_allocated_size == nullptr) return std::nullopt;
    size_t n = jsmalloc_get_allocated_size(p);
    if (n == 0) return std::nullopt;
    return n;
  }

  enum class Ownership { kUnknownOwnership = 0, kOwned, kNotOwned };
  static Ownership GetOwnership(const void* p) {
    if (&jsmalloc_get_ownership == nullptr) return Ownership::kUnknownOwnership;
    return jsmalloc_get_ownership(p) ? Ownership::kOwned : Ownership::kNotOwned;
  }

  // The calling thread will be idle / is busy again (see jsmalloc.h).
  static void MarkThreadIdle() {
    if (&jsmalloc_mark_thread_idle != nullptr) jsmalloc_mark_thread_idle();
  }
  static void MarkThreadBusy() {
    if (&jsmalloc_mark_thread_busy != nullptr) jsmalloc_mark_thread_busy();
  }

  // Heap sampling: the mean interval in bytes between samples (0: off).
  static size_t GetProfileSamplingInterval() {
    return &jsmalloc_get_sample_interval != nullptr ? jsmalloc_get_sample_interval() : 0;
  }
  static void SetProfileSamplingInterval(size_t bytes) {
    if (&jsmalloc_set_sample_interval != nullptr) jsmalloc_set_sample_interval(bytes);
  }

  // Profiles in the format google-pprof reads (see jsmalloc.h); false when
  // the file could not be written (errno set) or JSMalloc is absent.
  // The live heap now:
  static bool DumpHeapProfile(const std::string& path) {
    return &jsmalloc_dump_heap_profile != nullptr && jsmalloc_dump_heap_profile(path.c_str()) != 0;
  }
  // The live heap at its highest point so far:
  static bool DumpPeakHeapProfile(const std::string& path) {
    return &jsmalloc_dump_peak_heap_profile != nullptr &&
           jsmalloc_dump_peak_heap_profile(path.c_str()) != 0;
  }
  // Every sampled allocation between the two calls (false from Start if a
  // profile is already running, from Stop if none is).
  static bool StartAllocationProfile() {
    return &jsmalloc_start_allocation_profile != nullptr && jsmalloc_start_allocation_profile() != 0;
  }
  static bool StopAllocationProfile(const std::string& path) {
    return &jsmalloc_stop_allocation_profile != nullptr &&
           jsmalloc_stop_allocation_profile(path.c_str()) != 0;
  }
};

}  // namespace jsmalloc

#endif  // JSMALLOC_MALLOC_EXTENSION_H_
