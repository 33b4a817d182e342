#include "backend/system_page_source.h"

#include <sys/mman.h>

#include "os/os.h"
#include "probes/jsmalloc_probes.h"

namespace jsmalloc {

void* SystemPageSource::Map(size_t bytes, size_t align, void* hint, bool dense) {
  void* p = os::MapAligned(bytes, align, hint);
  if (p != nullptr && advise_hugepages_) {
    // Under THP "always" the kernel would fault whole hugepages into sparse
    // ranges too; under "madvise" and "never" leaving them alone suffices.
    bool ok = true;
    if (dense) ok = os::AdviseHugePages(p, bytes);
    else if (os::GetThpSettings().enabled == os::ThpMode::kAlways) ok = os::AdviseNoHugePages(p, bytes);
    if (!ok) advise_failures_.fetch_add(1, std::memory_order_relaxed);
  }
  if (p != nullptr) JSMALLOC_PROBE(backend_grow, bytes, ProbeAddr(p), ProbeNumaNode());
  return p;
}

bool SystemPageSource::Release(void* ptr, size_t bytes) {
  releases_.fetch_add(1, std::memory_order_relaxed);
  os::MadviseBatcher* b = batcher_.load(std::memory_order_acquire);
  if (b != nullptr) {
    SpinLockHolder h(&batch_lock_);
    b->Add(ptr, bytes);
    return true;
  }
  return os::ReleasePages(ptr, bytes, madv_free_);
}

bool SystemPageSource::Collapse(void* ptr, size_t bytes) { return os::CollapseHugePages(ptr, bytes); }

size_t SystemPageSource::ResidentBytes(void* ptr, size_t bytes) { return os::ResidentBytesIn(ptr, bytes); }

bool SystemPageSource::AllowHugePages(void* ptr, size_t bytes, bool allow) {
  // Only where this source advised hugepages in the first place (the
  // legacy page heap leaves the kernel's defaults alone).
  if (!advise_hugepages_) return false;
  return allow ? os::AdviseHugePages(ptr, bytes) : os::AdviseNoHugePages(ptr, bytes);
}

void SystemPageSource::FlushReleases() {
  os::MadviseBatcher* b = batcher_.load(std::memory_order_acquire);
  if (b == nullptr) return;
  SpinLockHolder h(&batch_lock_);
  b->Flush();
}

}  // namespace jsmalloc
