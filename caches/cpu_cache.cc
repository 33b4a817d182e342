#include "caches/cpu_cache.h"

#include "os/os.h"

namespace jsmalloc {

#if JSMALLOC_HAVE_RSEQ_SLAB
uint64_t RseqCpuEnv::Now() { return os::MonotonicNanosCoarse(); }
template class CpuCacheT<RseqCpuEnv>;
#endif

}  // namespace jsmalloc
