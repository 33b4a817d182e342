#include "hugepage/huge_cache.h"

#include "probes/jsmalloc_probes.h"

namespace jsmalloc {

HugeCache::HugeCache(PageSource* source, ClockFn clock, size_t grow_hugepages, uint64_t epoch_ns, bool dense,
                     int window_epochs)
    : source_(source),
      clock_(clock),
      grow_hugepages_(grow_hugepages),
      epoch_ns_(epoch_ns),
      dense_(dense),
      window_(window_epochs < 1 ? 1 : (window_epochs > kEpochs ? kEpochs : window_epochs)) {
  epoch_ = clock_() / epoch_ns_;
}

void HugeCache::NoteDemand() {
  uint64_t e = clock_() / epoch_ns_;
  if (e != epoch_) {
    // Epochs with no activity had a peak equal to the demand at the time.
    uint64_t gap = e - epoch_;
    if (gap > kEpochs) gap = kEpochs;
    for (uint64_t i = 1; i <= gap; ++i) peaks_[(epoch_ + i) % kEpochs] = in_use_;
    epoch_ = e;
  }
  size_t& peak = peaks_[epoch_ % kEpochs];
  if (in_use_ > peak) peak = in_use_;
}

size_t HugeCache::DemandLimit() const {
  // The peaks of the current epoch and the window_ - 1 before it.
  size_t peak = 0;
  for (int i = 0; i < window_; ++i) {
    size_t p = peaks_[(epoch_ + kEpochs - static_cast<uint64_t>(i)) % kEpochs];
    peak = p > peak ? p : peak;
  }
  return peak > in_use_ ? peak - in_use_ : 0;
}

void HugeCache::Insert(HugePageId first, size_t count, bool backed) {
  Range* next = free_.lower_bound(Range{first, 0, false});
  if (next != free_.begin()) {
    Range* prev = next - 1;
    if (prev->first + prev->count == first && prev->backed == backed) {
      first = prev->first;
      count += prev->count;
      free_.erase(prev);
      next = prev;  // the element after the erased one moved into its slot
    }
  }
  if (next != free_.end() && first + count == next->first && next->backed == backed) {
    count += next->count;
    free_.erase(next);
  }
  free_.insert(Range{first, count, backed});
}

bool HugeCache::Grow(size_t count) {
  size_t n = count > grow_hugepages_ ? count : grow_hugepages_;
  void* mem = source_->Map(n * kHugePageSize, kHugePageSize, next_hint_, dense_);
  if (mem == nullptr && n > count) {
    n = count;
    mem = source_->Map(n * kHugePageSize, kHugePageSize, nullptr, dense_);
  }
  if (mem == nullptr) return false;
  next_hint_ = static_cast<char*>(mem) + n * kHugePageSize;
  mapped_ += n;
  unbacked_free_ += n;
  Insert(reinterpret_cast<uintptr_t>(mem) >> kHugePageShift, n, false);
  return true;
}

bool HugeCache::Get(size_t count, HugePageId* first, bool* backed) {
  Range* best = nullptr;
  for (int pass = 0; pass < 2 && best == nullptr; ++pass) {
    bool want_backed = pass == 0;
    for (Range* r = free_.begin(); r != free_.end(); ++r) {
      if (r->backed != want_backed || r->count < count) continue;
      if (best == nullptr || r->count < best->count) best = r;
      if (best->count == count) break;
    }
  }
  if (best == nullptr) {
    if (!Grow(count)) return false;
    return Get(count, first, backed);
  }
  Range r = *best;
  free_.erase(best);
  if (r.count > count) Insert(r.first + count, r.count - count, r.backed);
  HugePageId start = r.first;
  if (r.backed) {
    backed_free_ -= count;
    ++hits_;
    JSMALLOC_PROBE(hugecache_hit, ProbeAddr(HugePageStart(start)), count, ProbeNumaNode());
  } else {
    unbacked_free_ -= count;
    ++misses_;
    JSMALLOC_PROBE(hugecache_miss, ProbeAddr(HugePageStart(start)), count, ProbeNumaNode());
  }
  in_use_ += count;
  NoteDemand();
  *first = start;
  *backed = r.backed;
  return true;
}

void HugeCache::Put(HugePageId first, size_t count, bool backed) {
  NoteDemand();
  in_use_ -= count;
  if (backed) backed_free_ += count;
  else unbacked_free_ += count;
  Insert(first, count, backed);
}

size_t HugeCache::ReleaseRange(Range* r, size_t max) {
  const Range whole = *r;
  // Release from the top of the range: the low part stays backed and may
  // still coalesce with a backed neighbour below.
  size_t take = whole.count < max ? whole.count : max;
  HugePageId rel = whole.first + whole.count - take;
  if (!source_->Release(HugePageStart(rel), take * kHugePageSize)) return 0;
  JSMALLOC_PROBE(hugecache_release, ProbeAddr(HugePageStart(rel)), take, ProbeNumaNode());
  JSMALLOC_PROBE(hugepage_released, ProbeAddr(HugePageStart(rel)), take, ProbeNumaNode());
  if (take < whole.count) r->count = whole.count - take;  // the backed low part stays in place
  else free_.erase(r);
  backed_free_ -= take;
  unbacked_free_ += take;
  released_ += take;
  Insert(rel, take, false);
  return take;
}

size_t HugeCache::ReleaseAtLeast(size_t count) {
  size_t done = 0;
  while (done < count) {
    // Highest-address backed range first: keeps the heap dense at the bottom.
    Range* found = nullptr;
    for (Range* r = free_.end(); r != free_.begin();) {
      --r;
      if (r->backed) {
        found = r;
        break;
      }
    }
    if (found == nullptr) break;
    size_t got = ReleaseRange(found, count - done);
    if (got == 0) break;
    done += got;
  }
  return done;
}

size_t HugeCache::ReleaseExcess() {
  NoteDemand();
  if (last_release_epoch_ == epoch_) return 0;
  last_release_epoch_ = epoch_;
  size_t limit = DemandLimit();
  return backed_free_ > limit ? ReleaseAtLeast(backed_free_ - limit) : 0;
}

HugeCacheStats HugeCache::Stats() const {
  HugeCacheStats s;
  s.mapped_hugepages = mapped_;
  s.backed_free = backed_free_;
  s.unbacked_free = unbacked_free_;
  s.in_use = in_use_;
  s.hits = hits_;
  s.misses = misses_;
  s.released_hugepages = released_;
  s.demand_limit = DemandLimit();
  s.free_ranges = free_.size();
  return s;
}

}  // namespace jsmalloc
