/* JSMalloc public C API. The standard allocation functions (malloc, free, ...)
 * are exported with their usual prototypes; this header adds what is specific
 * to JSMalloc. */
#ifndef JSMALLOC_JSMALLOC_H_
#define JSMALLOC_JSMALLOC_H_

#include <stddef.h>

#if defined(__GNUC__)
#define JSMALLOC_EXPORT __attribute__((visibility("default")))
#else
#define JSMALLOC_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define JSMALLOC_VERSION_STRING "0.1.0"

/* Writes the human-readable stats report into buf (always NUL-terminated when
 * len > 0) and returns the length the full report needs, excluding the NUL.
 * Call with (NULL, 0) to size the buffer. */
JSMALLOC_EXPORT size_t jsmalloc_get_stats(char *buf, size_t len);

/* Looks up a numeric property by name. Returns 1 and stores the value when the
 * name is known, 0 otherwise. See docs/tuning.md for the list of names. */
JSMALLOC_EXPORT int jsmalloc_get_numeric_property(const char *name,
                                                  size_t *value);

/* Returns at least `bytes` of free page-heap memory to the OS (MADV_DONTNEED)
 * if that much is free; returns the number of bytes actually released. Pass
 * SIZE_MAX to release everything that is free. */
JSMALLOC_EXPORT size_t jsmalloc_release_memory_to_os(size_t bytes);

/* Per-CPU cache budget in bytes (each CPU's caches together). Takes effect
 * as caches grow or shrink; has no effect in per-thread mode. */
JSMALLOC_EXPORT void jsmalloc_set_max_per_cpu_cache_bytes(size_t bytes);
JSMALLOC_EXPORT size_t jsmalloc_get_max_per_cpu_cache_bytes(void);

/* Starts the background thread (memory release, cache rebalancing); also
 * JSMALLOC_BACKGROUND=1. Returns 1 if it runs. */
JSMALLOC_EXPORT int jsmalloc_start_background_thread(void);
/* Bytes per second the background thread releases to the OS. */
JSMALLOC_EXPORT void jsmalloc_set_background_release_rate(size_t bytes_per_second);

/* Memory limit on the heap's resident bytes (0 removes it). Over a soft limit
 * JSMalloc releases free memory, breaking hugepages if it must; with hard != 0
 * allocations that would stay over it fail as out of memory. */
JSMALLOC_EXPORT void jsmalloc_set_memory_limit(size_t bytes, int hard);
JSMALLOC_EXPORT size_t jsmalloc_get_memory_limit(int *hard);

/* If p points into memory JSMalloc has handed out (any byte of an object, or
 * of the span holding it), stores the span's start and length and returns 1;
 * otherwise returns 0. For tests and tools that reason about which pages must
 * stay resident. */
JSMALLOC_EXPORT int jsmalloc_get_span_extent(const void *p, void **start, size_t *bytes);

/* The names jsmalloc_get_numeric_property knows: stores up to `max` of them
 * in names[] (static strings) and returns how many there are. */
JSMALLOC_EXPORT size_t jsmalloc_get_property_names(const char **names, size_t max);

/* Usable bytes of the block at p (malloc_usable_size), or 0 if p is not a
 * block JSMalloc handed out: any byte of a small object, or the first byte
 * of a large block (> 256 KiB). Never aborts, unlike malloc_usable_size. */
JSMALLOC_EXPORT size_t jsmalloc_get_allocated_size(const void *p);
/* 1 if p is owned by JSMalloc in the sense above, 0 otherwise. */
JSMALLOC_EXPORT int jsmalloc_get_ownership(const void *p);
/* NUMA-aware mode: the node of the partition whose memory holds p (the
 * first node of a partition that spans several); -1 if JSMALLOC does not own
 * p. 0 for everything when NUMA-aware mode is off. */
JSMALLOC_EXPORT int jsmalloc_get_numa_node(const void *p);

/* The calling thread will not allocate for a while: its per-thread cache (if
 * any) goes back to the shared caches. Per-CPU caches are not per thread, so
 * in per-CPU mode only the thread's fallback cache is affected. */
JSMALLOC_EXPORT void jsmalloc_mark_thread_idle(void);
/* The thread is allocating again; caches are made on demand, so this only
 * makes sure the allocator is initialised. */
JSMALLOC_EXPORT void jsmalloc_mark_thread_busy(void);

/* Bytes per second the background thread releases (0 if never set). */
JSMALLOC_EXPORT size_t jsmalloc_get_background_release_rate(void);

/* ---- Heap sampling and profiles --------------------------------------------
 * On average one allocation per `interval` bytes allocated is sampled
 * (exponentially distributed intervals, counted per thread): its size,
 * alignment, time and stack are recorded until it is freed. The profiles below
 * are written in the legacy gperftools heap-profile format (heap_v2, with
 * /proc/self/maps appended), which `google-pprof --text PROGRAM FILE` reads;
 * pprof scales each sample back to an unbiased estimate of all allocations.
 * Functions returning int return 1 on success and 0 on failure (errno set).
 * See docs/tuning.md. */

/* Mean sampling interval in bytes; 0 turns sampling off (the default is
 * JSMALLOC_SAMPLE_INTERVAL, or 2 MiB). The calling thread switches at once;
 * other threads when their current interval runs out (within 16 MiB of their
 * allocations if sampling was off). */
JSMALLOC_EXPORT void jsmalloc_set_sample_interval(size_t bytes);
JSMALLOC_EXPORT size_t jsmalloc_get_sample_interval(void);

/* Writes a profile of the sampled allocations that are live now to `path`
 * (created or truncated). Returns 1 when the file was written, 0 (errno
 * set) when not. */
JSMALLOC_EXPORT int jsmalloc_dump_heap_profile(const char *path);

/* Writes the peak-heap profile to `path`: the sampled allocations that were
 * live when the estimated live heap was at its highest so far. */
JSMALLOC_EXPORT int jsmalloc_dump_peak_heap_profile(const char *path);

/* Starts an allocation profile: every allocation sampled from now until the
 * stop call is counted, whether it is freed or not. Returns 0 if one is
 * already running (it goes on). */
JSMALLOC_EXPORT int jsmalloc_start_allocation_profile(void);
/* Ends the allocation profile and writes it to `path`. Returns 0 (errno
 * EINVAL) if none was running. */
JSMALLOC_EXPORT int jsmalloc_stop_allocation_profile(const char *path);

/* Version string, e.g. "0.1.0". */
JSMALLOC_EXPORT const char *jsmalloc_version(void);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* JSMALLOC_JSMALLOC_H_ */
