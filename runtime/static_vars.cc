// The process-wide state's storage and its accessors (Static). It is built
// by Static::Init (init.cc); threads attach to it in thread_lifecycle.cc.
#include "runtime/static_vars.h"
#include "runtime/runtime_locks.h"

#include "runtime/static_state.h"

namespace jsmalloc {

constinit PageMap g_pagemap;
constinit uintptr_t g_percpu_base = 0;
constinit uintptr_t g_percpu_free_base = 0;
constinit const uint8_t* g_numa_cpu_partition = nullptr;
constinit int g_numa_cpus = 0;
constinit std::atomic<bool> Static::inited_{false};
constinit std::atomic<bool> Static::key_ready_{false};

alignas(64) constinit char g_state_storage[sizeof(State)] = {};
constinit RuntimeLocks g_runtime_locks;
constinit SpinLock& g_init_lock = g_runtime_locks.init.lock;

PageAllocator* Static::backend() { return S().limiter; }
HugePageAwareAllocator* Static::hugepage_allocator() { return S().parts[0]->hpaa; }
HugePageAwareAllocator* Static::hugepage_allocator(int p) { return S().parts[p]->hpaa; }
PageAllocator* Static::partition_backend(int p) { return S().parts[p]->raw; }
const BoundPageSource& Static::partition_source(int p) { return S().parts[p]->source; }
size_t Static::partition_remote_frees(int p) {
  return S().parts[p]->remote_frees.load(std::memory_order_relaxed);
}
void Static::CountRemoteFree(int home) {
  S().parts[home]->remote_frees.fetch_add(1, std::memory_order_relaxed);
}
int Static::num_partitions() { return S().num_parts; }
const NumaPlan& Static::numa_plan() { return S().plan; }
const os::NumaTopology* Static::numa_topology() {
  return S().topology_source[0] != '\0' ? &S().topology : nullptr;
}
const char* Static::numa_topology_source() { return S().topology_source; }
MemoryLimiter* Static::memory_limiter() { return S().limiter; }
SystemPageSource* Static::system_page_source() { return &S().source; }
bool Static::legacy_heap_range(int p, uintptr_t* lo, uintptr_t* hi) {
  if (S().parts[p]->hpaa != nullptr) return false;
  static_cast<PageHeap*>(S().parts[p]->raw)->AddressRange(lo, hi);
  return true;
}
CentralFreeList& Static::central(int p, int cl) { return S().parts[p]->central[cl]; }
TransferCache* Static::transfer(int p) { return S().parts[p]->transfer; }
ThreadCacheRegistry& Static::registry() { return S().registry; }
const Options& Static::options() { return S().options; }
MetadataArena* Static::arena() { return GlobalArena(); }
const char* Static::per_cpu_off_reason() { return S().per_cpu_off_reason; }
#if JSMALLOC_HAVE_RSEQ_SLAB
CpuCache& Static::cpu_cache() { return S().cpu_cache; }
#endif

int Static::CurrentPartition() {
  State& st = S();
  if (st.num_parts == 1) return 0;
  // rseq's CPU id is one TLS load, but only once rseq is set up (per-CPU mode).
  int cpu = -1;
#if JSMALLOC_HAVE_RSEQ_SLAB
  if (front_end() == FrontEnd::kPerCpu) cpu = os::RseqCurrentCpu();
#endif
  if (cpu < 0) cpu = os::CurrentCpuSlow();
  return st.plan.PartitionOfCpu(cpu);
}

}  // namespace jsmalloc
