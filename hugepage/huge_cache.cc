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

HugeCache::Range* HugeCache::BestBackedRange(size_t count) {
  Range* best = nullptr;
  for (Range* r = free_.begin(); r != free_.end(); ++r) {
    if (!r->backed || r->count < count) continue;
    if (best == nullptr || r->count < best->count) best = r;
    if (best->count == count) break;
  }
  return best;
}

bool HugeCache::BestWindow(size_t count, HugePageId* start, size_t* backed) const {
  // A stretch is a maximal run of adjacent free ranges, backed or not. In
  // each long enough, the window of `count` hugepages with the most backed
  // ones starts where a range starts or ends where one ends (the backed
  // count changes slope only there), so only those are looked at.
  bool found = false;
  size_t best_backed = 0, best_len = 0;
  const Range* b = free_.begin();
  while (b != free_.end()) {
    const Range* e = b + 1;
    while (e != free_.end() && (e - 1)->first + (e - 1)->count == e->first) ++e;
    const HugePageId lo = b->first, hi = (e - 1)->first + (e - 1)->count;
    const size_t len = hi - lo;
    if (len >= count) {
      for (const Range* c = b; c != e; ++c) {
        for (int side = 0; side < 2; ++side) {
          HugePageId s = side == 0 ? c->first : c->first + c->count;
          if (side == 1) {
            if (s < lo + count) continue;
            s -= count;
          }
          if (s + count > hi) continue;
          size_t k = 0;
          for (const Range* d = b; d != e; ++d) {
            if (!d->backed) continue;
            HugePageId x = d->first > s ? d->first : s;
            HugePageId y = d->first + d->count < s + count ? d->first + d->count : s + count;
            if (y > x) k += y - x;
          }
          // Most backed; then the shortest stretch; then the lowest address.
          bool better = !found || k > best_backed || (k == best_backed && len < best_len) ||
                        (k == best_backed && len == best_len && s < *start);
          if (better) {
            found = true;
            best_backed = k;
            best_len = len;
            *start = s;
          }
        }
      }
    }
    b = e;
  }
  *backed = best_backed;
  return found;
}

void HugeCache::TakeWindow(HugePageId start, size_t count) {
  const HugePageId end = start + count;
  Range* r = free_.lower_bound(Range{start, 0, false});
  if (r != free_.begin() && (r - 1)->first + (r - 1)->count > start) --r;
  while (r != free_.end() && r->first < end) {
    const Range whole = *r;
    free_.erase(r);
    HugePageId x = whole.first > start ? whole.first : start;
    HugePageId y = whole.first + whole.count < end ? whole.first + whole.count : end;
    (whole.backed ? backed_free_ : unbacked_free_) -= y - x;
    // The parts outside the window stay free as they were; they cannot
    // coalesce with the neighbours they had (those differ in state or are
    // taken), so they go back in place.
    if (whole.first < start) free_.insert(Range{whole.first, start - whole.first, whole.backed});
    if (whole.first + whole.count > end) free_.insert(Range{end, whole.first + whole.count - end, whole.backed});
    r = free_.lower_bound(Range{y, 0, false});
  }
}

bool HugeCache::Get(size_t count, HugePageId* first, size_t* backed) {
  HugePageId start;
  size_t got_backed;
  if (Range* best = BestBackedRange(count)) {
    // Common case: one backed range holds it.
    Range r = *best;
    free_.erase(best);
    if (r.count > count) Insert(r.first + count, r.count - count, r.backed);
    backed_free_ -= count;
    start = r.first;
    got_backed = count;
  } else {
    // Otherwise the window with the most backed hugepages, even if it spans
    // backed and unbacked ranges: backed hugepages left behind would stay
    // resident beside fresh ones (in a churn of large buffers of varied
    // sizes, that held the cache at twice the live heap).
    if (!BestWindow(count, &start, &got_backed)) {
      // Nothing long enough: grow, onto the end of the stretch that ends
      // where the last mapping did if there is one, so that it is extended
      // rather than stranded.
      size_t tail = 0;
      if (!free_.empty() && next_hint_ != nullptr) {
        const Range* top = free_.end() - 1;
        if (HugePageStart(top->first + top->count) == next_hint_) {
          HugePageId lo = top->first;
          for (const Range* c = top; c != free_.begin() && (c - 1)->first + (c - 1)->count == c->first;) {
            --c;
            lo = c->first;
          }
          tail = top->first + top->count - lo;
        }
      }
      if (!Grow(tail < count ? count - tail : count)) return false;
      if (!BestWindow(count, &start, &got_backed) && (!Grow(count) || !BestWindow(count, &start, &got_backed))) {
        return false;
      }
    }
    TakeWindow(start, count);
    // The request faults in fresh hugepages while backed ones sit free,
    // too short or apart: as many of those go back to the OS, so that the
    // cache's shape does not add to the RSS (in a churn of large buffers of
    // varied sizes it kept the peak 15-30% above the bytes live).
    if (got_backed < count && backed_free_ > 0) ReleaseAtLeast(count - got_backed);
  }
  if (got_backed == count) {
    ++hits_;
    JSMALLOC_PROBE(hugecache_hit, ProbeAddr(HugePageStart(start)), count, ProbeNumaNode());
  } else {
    ++misses_;
    JSMALLOC_PROBE(hugecache_miss, ProbeAddr(HugePageStart(start)), count - got_backed, ProbeNumaNode());
  }
  in_use_ += count;
  NoteDemand();
  *first = start;
  *backed = got_backed;
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
