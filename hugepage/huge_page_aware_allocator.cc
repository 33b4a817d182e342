#include "hugepage/huge_page_aware_allocator.h"

#include "os/os.h"
#include "probes/jsmalloc_probes.h"

namespace jsmalloc {

HugePageAwareAllocator::HugePageAwareAllocator(PageMap* pagemap, PageSource* source,
                                               MetadataArena* arena,
                                               const HugePageAwareOptions& options)
    : pagemap_(pagemap),
      source_(source),
      options_(options),
      filler_(source, options.guard_khugepaged),
      // No khugepaged guard for large allocations: their address space is
      // never advised MADV_HUGEPAGE (THP "madvise") or is advised
      // MADV_NOHUGEPAGE (THP "always"), so khugepaged leaves it alone, and
      // the guard's "allow THP again once whole" would advise MADV_HUGEPAGE
      // memory meant for base pages.
      sparse_filler_(source, false),
      cache_(source, options.clock, options.cache_grow_hugepages, options.demand_epoch_ns, /*dense=*/true,
             options.cache_window_epochs),
      sparse_cache_(source, options.clock, options.cache_grow_hugepages, options.demand_epoch_ns,
                    /*dense=*/false, options.cache_window_epochs),
      trackers_(arena),
      demand_epochs_(options.cache_window_epochs < 1 ? 1
                     : options.cache_window_epochs > kMaxDemandEpochs ? kMaxDemandEpochs
                                                                      : options.cache_window_epochs) {
  span_pool_.Init(arena);
  tracker_pool_.Init(arena);
  region_pool_.Init(arena);
}

namespace {

// See kMaxObjectSpanPages.
void RecordSpan(PageMap* pagemap, PageId first, Length n, Span* s) {
  if (n <= HugePageAwareAllocator::kMaxObjectSpanPages) {
    pagemap->SetRange(first, n, s);
  } else {
    pagemap->Set(first, s);
    pagemap->Set(first + n - 1, s);
  }
}

// Hugepages handed out unbacked will be faulted in from the OS.
void ProbeTaken(HugePageId first, size_t count, size_t backed) {
  if (backed < count) {
    JSMALLOC_PROBE(hugepage_taken, ProbeAddr(HugePageStart(first)), count - backed, ProbeNumaNode());
  }
}

}  // namespace

Span* HugePageAwareAllocator::MakeSpan(PageId first, Length n, Span::Origin origin) {
  Span* s = span_pool_.New();
  if (s == nullptr) return nullptr;
  s->first_page = first;
  s->num_pages = n;
  s->location = Span::kInUse;
  s->origin = origin;
  s->partition = options_.partition;
  s->release_on_free = false;
  if (!pagemap_->Ensure(first, n)) {
    span_pool_.Delete(s);
    return nullptr;
  }
  RecordSpan(pagemap_, first, n, s);
  stats_.in_use_bytes += n << kPageShift;
  ++stats_.spans_in_use;
  return s;
}

Span* HugePageAwareAllocator::AllocSmall(Length n, bool sparse) {
  PageId page;
  Length was_released;
  HugePageFiller& filler = sparse ? sparse_filler_ : filler_;
  // The demand the filler's free pages are kept for (SubReleaseBeyondDemand).
  auto note_peak = [this] {
    size_t used = FillerUsedPages();
    if (used > filler_peak_used_[demand_slot_]) filler_peak_used_[demand_slot_] = used;
  };
  PageTracker* t = filler.TryAlloc(n, &page, &was_released);
  if (t != nullptr) {
    if (t->full()) MaybeCollapse(t);
    note_peak();
    return MakeSpan(page, n, Span::kFromFiller);
  }
  HugePageId h;
  size_t backed;
  HugeCache& cache = CacheFor(sparse);
  if (!TakeHugepages(cache, 1, &h, &backed)) return nullptr;
  t = tracker_pool_.New();
  if (t == nullptr || !trackers_.Set(h, t)) {
    if (t != nullptr) tracker_pool_.Delete(t);
    cache.Put(h, 1, backed > 0);
    return nullptr;
  }
  t->Init(h, false);
  t->set_sparse(sparse);
  t->promote_check_at = promote_cycle_ + 2;  // PromoteDense: after a whole cycle
  if (!sparse) NoteSmallHeapHugepage(h);
  ProbeTaken(h, 1, backed);
  page = filler.AllocFromNew(t, n);
  note_peak();
  return MakeSpan(page, n, Span::kFromFiller);
}

// The first hugepages of small objects stay on base pages while the heap is
// small (options_.small_heap_hugepages); the first one taken beyond them ends
// that: the zone is advised for hugepages like the rest, except hugepages
// whose released pages the khugepaged guard protects (it advises them again
// when they are whole).
void HugePageAwareAllocator::NoteSmallHeapHugepage(HugePageId h) {
  const size_t zone = options_.small_heap_hugepages;
  if (zone == 0 || small_zone_done_) return;
  if (small_zone_ == 0) {
    // The dense cache hands out its lowest hugepages first: this one and the
    // next zone - 1 of the fresh address space.
    small_zone_ = h;
    source_->AllowHugePages(HugePageStart(h), zone * kHugePageSize, false);
    return;
  }
  if (h >= small_zone_ && h < small_zone_ + zone) return;
  small_zone_done_ = true;
  for (size_t i = 0; i < zone; ++i) {
    PageTracker* t = trackers_.Get(small_zone_ + i);
    if (t != nullptr && t->no_thp()) continue;
    source_->AllowHugePages(HugePageStart(small_zone_ + i), kHugePageSize, true);
  }
}

// A hugepage that was subreleased and is full again can be a transparent
// hugepage again if the kernel collapses it.
void HugePageAwareAllocator::MaybeCollapse(PageTracker* t) {
  if (!options_.collapse || !t->broken()) return;
  bool ok = source_->Collapse(HugePageStart(t->hugepage()), kHugePageSize);
  if (ok) {
    ++collapses_;
  } else {
    ++collapse_failures_;
  }
  JSMALLOC_PROBE(hugepage_collapsed, ProbeAddr(HugePageStart(t->hugepage())), static_cast<int>(ok),
                 ProbeNumaNode());
  // Either way, stop trying for this hugepage until it is subreleased again.
  t->MarkWhole();
}

bool HugePageAwareAllocator::TakeHugepages(HugeCache& cache, size_t count, HugePageId* h, size_t* backed) {
  const size_t before = cache.backed_free();
  if (!cache.Get(count, h, backed)) return false;
  if (!options_.sparse_large || *backed == count) return true;
  // The cache faulted in fresh hugepages and gave back as many of its own
  // stranded backed ones as it had; the rest of the fresh ones are matched
  // from the other cache's backed free hugepages. Without this the two kinds
  // (dense and sparse) each hold their own backed reserve and RSS grows by
  // the sum (realloc_builder: the dense cache kept 16 MiB backed and unused
  // while the large cache faulted fresh ones).
  const size_t released_own = before - cache.backed_free() - *backed;
  const size_t fresh = count - *backed;
  if (fresh <= released_own) return true;
  HugeCache& other = &cache == &cache_ ? sparse_cache_ : cache_;
  if (other.backed_free() > 0) other.ReleaseAtLeast(fresh - released_own);
  return true;
}

Span* HugePageAwareAllocator::AllocWhole(Length n) {
  HugePageId h;
  size_t backed;
  size_t count = HugePagesFor(n);
  if (!TakeHugepages(LargeCache(), count, &h, &backed)) return nullptr;
  Span* s = MakeSpan(FirstPageOf(h), n, Span::kFromCache);
  if (s == nullptr) {
    LargeCache().Put(h, count, backed > 0);
    return nullptr;
  }
  large_hugepages_ += count;
  large_slack_pages_ += count * kPagesPerHugePage - n;
  AddLargeSpan(s);
  ProbeTaken(h, count, backed);
  return s;
}

Span* HugePageAwareAllocator::AllocDonating(Length n) {
  size_t count = (n + kPagesPerHugePage - 1) / kPagesPerHugePage;
  HugePageId h;
  size_t backed;
  if (!TakeHugepages(LargeCache(), count, &h, &backed)) return nullptr;
  HugePageId tail = h + count - 1;
  PageTracker* t = tracker_pool_.New();
  if (t == nullptr || !trackers_.Set(tail, t)) {
    if (t != nullptr) tracker_pool_.Delete(t);
    LargeCache().Put(h, count, backed > 0);
    return nullptr;
  }
  Span* s = MakeSpan(FirstPageOf(h), n, Span::kFromCacheDonated);
  if (s == nullptr) {
    tracker_pool_.Delete(t);
    LargeCache().Put(h, count, backed > 0);
    return nullptr;
  }
  t->Init(tail, true);
  t->set_sparse(true);  // its head is a large allocation
  sparse_filler_.AddDonated(t, n - (count - 1) * kPagesPerHugePage);
  large_hugepages_ += count - 1;
  ++donated_large_;
  AddLargeSpan(s);
  ProbeTaken(h, count, backed);
  return s;
}

Span* HugePageAwareAllocator::AllocRegion(Length n) {
  PageId page;
  size_t newly_backed;
  // Fullest region that fits first, so emptier ones can drain.
  HugeRegion* best = nullptr;
  regions_.ForEach([&](HugeRegion* r) {
    if (r->longest_free() >= n && (best == nullptr || r->used_pages() > best->used_pages())) best = r;
  });
  if (best == nullptr) {
    HugePageId h;
    size_t backed;
    size_t hps = options_.region_hugepages;
    if (!TakeHugepages(LargeCache(), hps, &h, &backed)) return nullptr;
    best = region_pool_.New();
    if (best == nullptr) {
      LargeCache().Put(h, hps, backed > 0);
      return nullptr;
    }
    // Whatever the cache had backed there is released first, so the region's
    // own accounting of backed hugepages is exact.
    if (backed > 0) {
      source_->Release(HugePageStart(h), hps * kHugePageSize);
      JSMALLOC_PROBE(hugepage_released, ProbeAddr(HugePageStart(h)), hps, ProbeNumaNode());
    }
    best->Init(h, hps, source_);
    regions_.PushFront(best);
    ++region_count_;
    JSMALLOC_PROBE(region_created, ProbeAddr(HugePageStart(h)), hps, ProbeNumaNode());
  }
  if (!best->Alloc(n, &page, &newly_backed)) return nullptr;
  Span* s = MakeSpan(page, n, Span::kFromRegion);
  if (s == nullptr) best->Free(page, n);
  return s;
}

Span* HugePageAwareAllocator::NewLocked(Length n) {
  if (n == 0) n = 1;
  // Spans of small objects and large allocations shorter than a hugepage go
  // to two fillers, never sharing a hugepage: mixed, the large ones' churn
  // (short-lived, long runs) leaves holes that the long-lived small spans
  // then pin, and the filler fragments (in the soak test 35% of the filler's
  // pages were in use, against about 60% when they are kept apart).
  if (n < kPagesPerHugePage) return AllocSmall(n, n > kMaxObjectSpanPages);
  // On base pages the unused tail of the last hugepage costs address space
  // only: whole hugepages, no region and no donated tail.
  if (n % kPagesPerHugePage == 0 || options_.sparse_large) return AllocWhole(n);
  if (n <= options_.region_hugepages * kPagesPerHugePage / 4) return AllocRegion(n);
  return AllocDonating(n);
}

Span* HugePageAwareAllocator::New(Length n) {
  SpinLockHolder hold(lock_);
  FlushReleasesOnExit flush(source_);
  return MarkGrowing(NewLocked(n));
}

Span* HugePageAwareAllocator::NewAligned(Length n, Length align_pages) {
  if (align_pages <= 1) return New(n);
  SpinLockHolder hold(lock_);
  FlushReleasesOnExit flush(source_);
  return MarkGrowing(NewAlignedLocked(n, align_pages));
}

Span* HugePageAwareAllocator::NewAlignedLocked(Length n, Length align_pages) {
  if (align_pages <= kPagesPerHugePage) {
    Length total = n + align_pages - 1;
    if (total >= kPagesPerHugePage) {
      // Whole hugepages start hugepage-aligned, which satisfies any
      // alignment up to a hugepage.
      return AllocWhole((n + kPagesPerHugePage - 1) / kPagesPerHugePage * kPagesPerHugePage);
    }
    // Over-allocate in the filler and give back the misaligned head and tail.
    Span* s = AllocSmall(total, n > kMaxObjectSpanPages);
    if (s == nullptr) return nullptr;
    PageId first = s->first_page;
    PageId aligned = (first + align_pages - 1) & ~(align_pages - 1);
    stats_.in_use_bytes -= s->bytes();
    --stats_.spans_in_use;
    RecordSpan(pagemap_, first, total, nullptr);
    span_pool_.Delete(s);
    if (aligned > first) FreeSmall(first, aligned - first);
    if (first + total > aligned + n) FreeSmall(aligned + n, first + total - (aligned + n));
    return MakeSpan(aligned, n, Span::kFromFiller);
  }
  // Alignment beyond a hugepage: whole hugepages from an over-sized run.
  size_t align_hps = align_pages / kPagesPerHugePage;
  size_t need = (n + kPagesPerHugePage - 1) / kPagesPerHugePage;
  size_t count = need + align_hps - 1;
  HugePageId h;
  size_t backed;
  HugeCache& cache = LargeCache();
  if (!TakeHugepages(cache, count, &h, &backed)) return nullptr;
  HugePageId aligned = (h + align_hps - 1) & ~(align_hps - 1);
  // Head and tail go back as backed if any of the run was: an upper bound
  // (releasing an unbacked hugepage later costs nothing).
  if (aligned > h) cache.Put(h, aligned - h, backed > 0);
  if (h + count > aligned + need) cache.Put(aligned + need, h + count - (aligned + need), backed > 0);
  Span* s = MakeSpan(FirstPageOf(aligned), need * kPagesPerHugePage, Span::kFromCache);
  if (s == nullptr) {
    cache.Put(aligned, need, backed > 0);
    return nullptr;
  }
  large_hugepages_ += need;
  AddLargeSpan(s);
  ProbeTaken(aligned, need, backed);
  return s;
}

HugeCacheStats HugePageAwareAllocator::CacheStatsLocked() const {
  HugeCacheStats c = cache_.Stats();
  c += sparse_cache_.Stats();
  return c;
}

FillerStats HugePageAwareAllocator::FillerStatsLocked() const {
  FillerStats f = filler_.Stats();
  f += sparse_filler_.Stats();
  return f;
}

// Least used hugepages first within each filler; the sparse one first: its
// free pages sit between large allocations, which come and go in bulk.
Length HugePageAwareAllocator::SubReleaseBoth(Length pages) {
  Length got = sparse_filler_.SubRelease(pages);
  if (got < pages) got += filler_.SubRelease(pages - got);
  return got;
}

HugeRegion* HugePageAwareAllocator::RegionOf(PageId p) {
  HugeRegion* r = nullptr;
  regions_.ForEach([&](HugeRegion* x) {
    if (x->Contains(p)) r = x;
  });
  if (r == nullptr) os::FatalError("hugepage region lost track of page", PageStart(p));
  return r;
}

void HugePageAwareAllocator::ReturnTracker(PageTracker* t, bool release) {
  HugePageId h = t->hugepage();
  // A hugepage that was partly released goes back unbacked as a whole: its
  // transparent hugepage is gone anyway.
  bool backed = t->released() == 0 && !release;
  if (release) stats_.released_total += (kPagesPerHugePage - t->released()) << kPageShift;
  if (!backed) {
    source_->Release(HugePageStart(h), kHugePageSize);
    JSMALLOC_PROBE(hugepage_released, ProbeAddr(HugePageStart(h)), 1, ProbeNumaNode());
  }
  FillerOf(t).ForgetTracker(t);
  trackers_.Set(h, nullptr);
  HugeCache& cache = CacheFor(t->sparse());
  tracker_pool_.Delete(t);
  cache.Put(h, 1, backed);
}

void HugePageAwareAllocator::FreeSmall(PageId p, Length n, bool release) {
  PageTracker* t = trackers_.Get(HugePageOf(p));
  if (t == nullptr) os::FatalError("hugepage filler lost track of page", PageStart(p));
  if (FillerOf(t).Free(t, p, n)) {
    // PromoteDense is collapsing it outside the lock: it goes back when done.
    if (t->promote() == PageTracker::kCollapsing) {
      t->return_pending = true;
      return;
    }
    ReturnTracker(t, release);
  } else if (release) {
    stats_.released_total += FillerOf(t).ReleaseFreed(t, p, n) << kPageShift;
  }
}

// Decided when the allocation is made, as glibc decides to mmap a chunk:
// larger than any large allocation freed so far. Every one so marked is
// released when freed, and raises the threshold to its size then.
Span* HugePageAwareAllocator::MarkGrowing(Span* s) {
  if (s == nullptr || !options_.release_growing_large || !options_.sparse_large) return s;
  const Length n = s->num_pages;
  if (n <= kMaxObjectSpanPages || n <= growth_threshold_pages_) return s;
  // Only base-page memory: regions and the dense filler are hugepages.
  if (s->origin == Span::kFromRegion) return s;
  if (s->origin == Span::kFromFiller && !trackers_.Get(HugePageOf(s->first_page))->sparse()) return s;
  s->release_on_free = true;
  return s;
}

void HugePageAwareAllocator::Delete(Span* span) {
  SpinLockHolder hold(lock_);
  FlushReleasesOnExit flush(source_);
  DeleteLocked(span);
  if (!background_release_.load(std::memory_order_relaxed)) ReleaseExcessLocked();
}

void HugePageAwareAllocator::DeleteLocked(Span* span) {
  if (span->location != Span::kInUse) os::FatalError("double free of pages at", span->start());
  stats_.in_use_bytes -= span->num_pages << kPageShift;
  --stats_.spans_in_use;
  RecordSpan(pagemap_, span->first_page, span->num_pages, nullptr);
  span->location = Span::kOnNormalFreelist;
  if (span->promote == Span::kCollapsing) {
    // PromoteDense is collapsing its hugepages outside the lock: the pages go
    // back when it is done (they are nobody's until then).
    span->promote = Span::kFreePending;
    return;
  }
  ReturnSpanPages(span);
  span_pool_.Delete(span);
}

// The pages of a span no longer in use go back to where they came from.
void HugePageAwareAllocator::ReturnSpanPages(Span* span) {
  PageId first = span->first_page;
  Length n = span->num_pages;
  if (span->origin == Span::kFromCache || span->origin == Span::kFromCacheDonated) {
    SpanList::Remove(span);
    // Hugepages PromoteDense advised MADV_HUGEPAGE to collapse them (all of
    // a dense span, the first ones of a span it was not done with) go back
    // to the base-page cache as they came.
    size_t advised = span->promote == Span::kDense ? n / kPagesPerHugePage
                                                   : reinterpret_cast<uintptr_t>(span->freelist);
    if (options_.sparse_nohugepage && advised > 0) {
      source_->AllowHugePages(span->start(), advised * kHugePageSize, false);
    }
  }
  // A large allocation MarkGrowing picked when it was made.
  const bool release = span->release_on_free;
  if (release) {
    if (n > growth_threshold_pages_) growth_threshold_pages_ = n;
    ++growth_releases_;
    growth_released_pages_ += n;
  }
  switch (span->origin) {
    case Span::kFromFiller:
      FreeSmall(first, n, release);
      break;
    case Span::kFromCache: {
      size_t count = HugePagesFor(n);
      large_hugepages_ -= count;
      large_slack_pages_ -= count * kPagesPerHugePage - n;
      if (release) {
        source_->Release(PageStart(first), count * kHugePageSize);
        stats_.released_total += count * kHugePageSize;
        LargeCache().Put(HugePageOf(first), count, false);
        break;
      }
      // Kept backed for the next large allocation, which then faults in only
      // what it touches beyond what this one did. (Releasing at free, as an
      // munmap would, tripled the system time of a churn of buffers written
      // at their head: madvise and its TLB shootdowns on every free.) So the
      // cache's "backed" large ranges are an upper bound of what is
      // resident; the demand policy releases what recent demand does not need.
      LargeCache().Put(HugePageOf(first), count, true);
      break;
    }
    case Span::kFromCacheDonated: {
      size_t whole = n / kPagesPerHugePage;
      large_hugepages_ -= whole;
      --donated_large_;
      if (whole > 0 && release) {
        source_->Release(PageStart(first), whole * kHugePageSize);
        stats_.released_total += whole * kHugePageSize;
      }
      if (whole > 0) LargeCache().Put(HugePageOf(first), whole, !release);
      FreeSmall(first + whole * kPagesPerHugePage, n - whole * kPagesPerHugePage, release);
      break;
    }
    case Span::kFromRegion: {
      HugeRegion* r = RegionOf(first);
      r->Free(first, n);
      if (r->empty()) {
        // Back to the cache as one unbacked range.
        stats_.released_total += r->ReleaseIdle(true) * kHugePageSize;
        IntrusiveList<HugeRegion>::Remove(r);
        --region_count_;
        JSMALLOC_PROBE(region_freed, ProbeAddr(HugePageStart(r->first_hugepage())), r->hugepages(),
                       ProbeNumaNode());
        LargeCache().Put(r->first_hugepage(), r->hugepages(), false);
        region_pool_.Delete(r);
      }
      break;
    }
  }
}

void HugePageAwareAllocator::AddLargeSpan(Span* s) {
  large_spans_.PushFront(s);
  // PromoteDense looks at it after a whole cycle has passed.
  s->carved = 1;
  s->allocated = promote_cycle_ + 2;
}

// Under THP "always" base-page memory is advised MADV_NOHUGEPAGE, which
// MADV_COLLAPSE refuses: the hugepage is advised MADV_HUGEPAGE first, and
// again MADV_NOHUGEPAGE after a refusal (or at once, without keep_advice).
bool HugePageAwareAllocator::CollapseSparse(char* hp, bool keep_advice) {
  if (options_.sparse_nohugepage) source_->AllowHugePages(hp, kHugePageSize, true);
  const bool ok = source_->Collapse(hp, kHugePageSize);
  if (options_.sparse_nohugepage && !(ok && keep_advice)) source_->AllowHugePages(hp, kHugePageSize, false);
  if (ok) JSMALLOC_PROBE(hugepage_collapsed, ProbeAddr(hp), 1, ProbeNumaNode());
  return ok;
}

namespace {
// PromoteDense's back-off after memory is found sparse: 1, 2, 4, ..., 64
// cycles, then every 64 (so a buffer filled slowly is still found).
uint32_t NextPromoteBackoff(uint32_t cycles) { return cycles >= 32 ? 64 : cycles == 0 ? 1 : cycles * 2; }
}  // namespace

size_t HugePageAwareAllocator::PromoteDense(size_t max_hugepages) {
  if (!options_.sparse_large || !options_.promote_dense) return 0;
  // Per call: at most max_hugepages residency checks, kMaxCollapses
  // collapses (each copies up to 2 MiB) and kMaxSpans spans (each found by a
  // walk of the list under the lock). One span at a time is held
  // (kCollapsing) while its hugepages are looked at outside the lock, so a
  // free of it is parked for one span's collapses at most.
  static constexpr size_t kMaxCollapses = 16;
  static constexpr size_t kMaxSpans = 64;
  size_t checked = 0, collapsed = 0, failed = 0, spans = 0;
  {
    SpinLockHolder hold(lock_);
    ++promote_cycle_;
  }
  while (checked < max_hugepages && collapsed + failed < kMaxCollapses && spans++ < kMaxSpans) {
    Span* s = nullptr;
    {
      SpinLockHolder hold(lock_);
      s = large_spans_.Find([&](Span* c) {
        // Not dense already, being collapsed or backing off, and at least one
        // whole hugepage.
        return c->promote == Span::kUnchecked && static_cast<int32_t>(c->allocated - promote_cycle_) <= 0 &&
               c->num_pages >= kPagesPerHugePage;
      });
      if (s == nullptr) break;
      s->promote = Span::kCollapsing;
      promote_in_flight_.store(true, std::memory_order_relaxed);
    }
    // Outside the lock: the span stays ours (a free only parks it).
    char* start = static_cast<char*>(s->start());
    const size_t whole = s->num_pages / kPagesPerHugePage;
    // Hugepages before this one were collapsed by earlier calls.
    size_t h = reinterpret_cast<uintptr_t>(s->freelist);
    bool sparse = false, out_of_budget = false;
    for (; h < whole; ++h) {
      if (collapsed + failed >= kMaxCollapses) {
        out_of_budget = true;
        break;
      }
      char* hp = start + h * kHugePageSize;
      ++checked;
      if (source_->ResidentBytes(hp, kHugePageSize) != kHugePageSize) {
        sparse = true;  // a base page is missing: not dense (yet)
        break;
      }
      // A collapsed hugepage keeps its advice until the span is freed.
      if (CollapseSparse(hp, /*keep_advice=*/true)) {
        ++collapsed;
      } else {
        ++failed;  // tried again later, less often
        sparse = true;
        break;
      }
    }
    SpinLockHolder hold(lock_);
    FlushReleasesOnExit flush(source_);
    const bool dense = !sparse && !out_of_budget;
    // The hugepages before h are collapsed: later calls go on from h, and a
    // free gives back the advice of those.
    if (!dense) s->freelist = reinterpret_cast<void*>(static_cast<uintptr_t>(h));
    if (s->promote == Span::kFreePending) {
      s->promote = dense ? Span::kDense : Span::kUnchecked;
      ReturnSpanPages(s);
      span_pool_.Delete(s);
    } else if (dense) {
      s->promote = Span::kDense;
    } else {
      s->promote = Span::kUnchecked;
      if (out_of_budget) {
        s->allocated = promote_cycle_ + 1;  // not looked at to the end: next cycle
      } else {
        // Sparse: look again after a back-off.
        s->carved = NextPromoteBackoff(s->carved);
        s->allocated = promote_cycle_ + s->carved;
        ++sparse_checks_;
      }
    }
    promote_in_flight_.store(false, std::memory_order_release);
  }
  if (checked < max_hugepages && collapsed + failed < kMaxCollapses) {
    PromoteDenseFiller(max_hugepages, kMaxCollapses, &checked, &collapsed, &failed);
  }
  SpinLockHolder hold(lock_);
  promoted_hugepages_ += collapsed;
  promote_failures_ += failed;
  return collapsed;
}

// Hugepages of the large-allocation filler (allocations under a hugepage,
// donated tails): one whose 2 MiB are all resident costs no more as a
// transparent hugepage, so it is collapsed as a dense large span's are.
// Up to kBatch of them are held (kCollapsing) while they are looked at
// outside the lock; one that empties meanwhile goes back to the cache after.
void HugePageAwareAllocator::PromoteDenseFiller(size_t max_checks, size_t max_collapses, size_t* checked,
                                                size_t* collapsed, size_t* failed) {
  static constexpr int kBatch = 16;
  PageTracker* batch[kBatch];
  int k = 0;
  {
    SpinLockHolder hold(lock_);
    const size_t room = max_checks - *checked;
    sparse_filler_.ForEachTracker([&](PageTracker* t) {
      if (k >= kBatch || static_cast<size_t>(k) >= room) return;
      // Collapsed already, or holding released pages (not all resident).
      if (t->promote() != PageTracker::kUnchecked || t->released() != 0) return;
      if (static_cast<int32_t>(t->promote_check_at - promote_cycle_) > 0) return;
      t->set_promote(PageTracker::kCollapsing);
      batch[k++] = t;
    });
    if (k == 0) return;
    promote_in_flight_.store(true, std::memory_order_relaxed);
  }
  enum Outcome : uint8_t { kSparse, kDense, kRefused, kNotLooked };
  Outcome outcome[kBatch];
  for (int i = 0; i < k; ++i) {
    if (*collapsed + *failed >= max_collapses) {
      outcome[i] = kNotLooked;
      continue;
    }
    char* hp = static_cast<char*>(HugePageStart(batch[i]->hugepage()));
    ++*checked;
    if (source_->ResidentBytes(hp, kHugePageSize) != kHugePageSize) {
      outcome[i] = kSparse;
      continue;
    }
    // Advised MADV_NOHUGEPAGE again at once under THP "always": the collapsed
    // hugepage stays, and after a later subrelease khugepaged does not refill
    // the released pages.
    const bool ok = CollapseSparse(hp, /*keep_advice=*/false);
    if (ok) {
      ++*collapsed;
    } else {
      ++*failed;
    }
    outcome[i] = ok ? kDense : kRefused;
  }
  SpinLockHolder hold(lock_);
  FlushReleasesOnExit flush(source_);
  for (int i = 0; i < k; ++i) {
    PageTracker* t = batch[i];
    if (outcome[i] == kDense) {
      t->set_promote(PageTracker::kDense);
    } else {
      t->set_promote(PageTracker::kUnchecked);
      if (outcome[i] == kNotLooked) {
        t->promote_check_at = promote_cycle_ + 1;
      } else {
        // Sparse or refused: look again after a back-off, as for large spans.
        t->promote_backoff = static_cast<uint8_t>(NextPromoteBackoff(t->promote_backoff));
        t->promote_check_at = promote_cycle_ + t->promote_backoff;
        if (outcome[i] == kSparse) ++sparse_checks_;
      }
    }
    if (t->return_pending) {
      t->return_pending = false;
      ReturnTracker(t);
    }
  }
  promote_in_flight_.store(false, std::memory_order_release);
}

void HugePageAwareAllocator::WaitForDeferredFrees() {
  while (promote_in_flight_.load(std::memory_order_acquire)) os::Yield();
}

size_t HugePageAwareAllocator::ReleaseExcessLocked() {
  size_t released = 0;
  ProbeReleaseScope probe(kProbeReleaseDemand, 0, &released);
  size_t hps = cache_.ReleaseExcess();
  if (options_.sparse_large) hps += sparse_cache_.ReleaseExcess();
  // Region hugepages unused for a whole sweep interval go back too.
  uint64_t now = options_.clock();
  size_t filler_bytes = 0;
  if (now - last_region_sweep_ns_ >= options_.demand_epoch_ns) {
    last_region_sweep_ns_ = now;
    regions_.ForEach([&](HugeRegion* r) { hps += r->ReleaseIdle(false); });
    filler_bytes = SubReleaseBeyondDemandLocked() << kPageShift;
  }
  stats_.released_total += hps * kHugePageSize + filler_bytes;
  released = hps * kHugePageSize + filler_bytes;
  return released;
}

// Free filler pages are kept (backed, their hugepages intact) as long as the
// peak demand of the last demand_epochs_ epochs could take them back; beyond
// that, plus a slack, they only hold RSS, and a long churn that fragments the
// filler would grow without bound. Releasing them breaks the hugepages they
// sit on, so it starts with the least used ones, and it takes only pages
// free since the previous epoch (HugePageFiller::SubReleaseIdle): releasing
// pages the churn takes back within the second only made the kernel fault
// them in again (~60 MiB/s in the soak test).
size_t HugePageAwareAllocator::SubReleaseBeyondDemandLocked() {
  const size_t used = FillerUsedPages();
  size_t demand = used;
  for (int i = 0; i < demand_epochs_; ++i) demand = filler_peak_used_[i] > demand ? filler_peak_used_[i] : demand;
  size_t slack = used / options_.filler_slack_divisor;
  size_t min_slack = options_.filler_slack_hugepages * kPagesPerHugePage;
  if (slack < min_slack) slack = min_slack;
  const size_t keep = (demand - used) + slack;
  const size_t dense_free = filler_.free_backed_pages();
  const size_t free_backed = dense_free + sparse_filler_.free_backed_pages();
  Length released = 0;
  if (free_backed > keep) {
    // From each filler in proportion to its free pages.
    const size_t excess = free_backed - keep;
    const size_t from_dense = excess * dense_free / free_backed;
    released = filler_.SubReleaseIdle(from_dense);
    released += sparse_filler_.SubReleaseIdle(excess - from_dense);
    filler_demand_released_ += released;
  }
  filler_.MarkIdle();
  sparse_filler_.MarkIdle();
  demand_slot_ = (demand_slot_ + 1) % demand_epochs_;
  filler_peak_used_[demand_slot_] = used;
  return released;
}

size_t HugePageAwareAllocator::ReleaseExcess() {
  SpinLockHolder hold(lock_);
  FlushReleasesOnExit flush(source_);
  return ReleaseExcessLocked();
}

size_t HugePageAwareAllocator::SubRelease(size_t bytes) {
  size_t got = 0;
  ProbeReleaseScope probe(kProbeReleaseSubrelease, bytes, &got);  // fires after the unlock
  SpinLockHolder hold(lock_);
  FlushReleasesOnExit flush(source_);
  Length pages = (bytes >> kPageShift) + ((bytes & (kPageSize - 1)) != 0);
  got = SubReleaseBoth(pages) << kPageShift;
  stats_.released_total += got;
  return got;
}

size_t HugePageAwareAllocator::ReleaseAtLeast(size_t bytes) {
  size_t got = 0;
  ProbeReleaseScope probe(kProbeReleaseForced, bytes, &got);  // fires after the unlock
  SpinLockHolder hold(lock_);
  FlushReleasesOnExit flush(source_);
  // Whole free hugepages first (no hugepage in use is broken), then
  // subrelease inside partly used ones.
  size_t hps = bytes / kHugePageSize + (bytes % kHugePageSize != 0);
  // Base-page memory first: releasing it breaks no transparent hugepage.
  if (options_.sparse_large) got = sparse_cache_.ReleaseAtLeast(hps) * kHugePageSize;
  if (got < bytes) {
    size_t rest = bytes - got;
    got += cache_.ReleaseAtLeast(rest / kHugePageSize + (rest % kHugePageSize != 0)) * kHugePageSize;
  }
  if (got < bytes) {
    regions_.ForEach([&](HugeRegion* r) {
      if (got < bytes) got += r->ReleaseIdle(true) * kHugePageSize;
    });
  }
  if (got < bytes) {
    // Round up without overflowing: callers pass SIZE_MAX for "everything".
    size_t rest = bytes - got;
    Length pages = (rest >> kPageShift) + ((rest & (kPageSize - 1)) != 0);
    got += SubReleaseBoth(pages) << kPageShift;
  }
  stats_.released_total += got;
  return got;
}

size_t HugePageAwareAllocator::BackedBytes() {
  SpinLockHolder hold(lock_);
  HugeCacheStats c = CacheStatsLocked();
  size_t unbacked = c.unbacked_free * kHugePageSize +
                    ((filler_.released_pages() + sparse_filler_.released_pages() + large_slack_pages_) << kPageShift);
  regions_.ForEach([&](HugeRegion* r) {
    RegionStats rs = r->Stats();
    unbacked += (rs.hugepages - rs.backed_hugepages) * kHugePageSize;
  });
  return c.mapped_hugepages * kHugePageSize - unbacked;
}

BackendStats HugePageAwareAllocator::Stats() {
  SpinLockHolder hold(lock_);
  BackendStats s = stats_;
  HugeCacheStats c = CacheStatsLocked();
  FillerStats f = FillerStatsLocked();
  size_t region_free_backed = 0, region_unbacked_free = 0;
  regions_.ForEach([&](HugeRegion* r) {
    RegionStats rs = r->Stats();
    region_free_backed += rs.free_backed_pages << kPageShift;
    region_unbacked_free += (rs.hugepages - rs.backed_hugepages) * kHugePageSize;
  });
  s.system_bytes = c.mapped_hugepages * kHugePageSize;
  s.free_bytes = c.backed_free * kHugePageSize + (f.free_pages << kPageShift) + region_free_backed;
  s.unmapped_bytes = c.unbacked_free * kHugePageSize + (f.released_pages << kPageShift) + region_unbacked_free +
                     (large_slack_pages_ << kPageShift);
  s.free_runs = c.free_ranges;
  return s;
}

HugePageStats HugePageAwareAllocator::HugeStats() {
  SpinLockHolder hold(lock_);
  HugePageStats s;
  s.small_filler = filler_.Stats();
  s.sparse_filler = sparse_filler_.Stats();
  s.filler = s.small_filler;
  s.filler += s.sparse_filler;
  s.dense_cache = cache_.Stats();
  s.sparse_cache = sparse_cache_.Stats();
  s.cache = CacheStatsLocked();
  s.promoted_hugepages = promoted_hugepages_;
  s.promote_failures = promote_failures_;
  s.small_heap_hugepages = small_zone_done_ ? 0 : options_.small_heap_hugepages;
  s.sparse_checks = sparse_checks_;
  regions_.ForEach([&](HugeRegion* r) {
    RegionStats rs = r->Stats();
    s.regions.hugepages += rs.hugepages;
    s.regions.backed_hugepages += rs.backed_hugepages;
    s.regions.used_pages += rs.used_pages;
    s.regions.free_backed_pages += rs.free_backed_pages;
    s.regions.released_hugepages_total += rs.released_hugepages_total;
  });
  s.region_count = region_count_;
  s.large_hugepages = large_hugepages_;
  s.growth_releases = growth_releases_;
  s.growth_released_bytes = growth_released_pages_ << kPageShift;
  s.growth_threshold_bytes = growth_threshold_pages_ << kPageShift;
  s.donated_large_allocs = donated_large_;
  s.collapses = collapses_;
  s.collapse_failures = collapse_failures_;
  return s;
}

size_t HugePageAwareAllocator::UsedHugePages(UsedHugePage* out, size_t max) {
  SpinLockHolder hold(lock_);
  size_t n = 0;
  auto add = [&](HugePageId hp, size_t bytes) {
    if (bytes == 0) return;
    if (n < max) out[n] = UsedHugePage{hp, bytes};
    ++n;
  };
  filler_.ForEachTracker([&](PageTracker* t) { add(t->hugepage(), t->used() << kPageShift); });
  sparse_filler_.ForEachTracker([&](PageTracker* t) { add(t->hugepage(), t->used() << kPageShift); });
  large_spans_.ForEach([&](Span* s) {
    size_t whole = s->num_pages / kPagesPerHugePage;
    for (size_t i = 0; i < whole; ++i) add(HugePageOf(s->first_page) + i, kHugePageSize);
    // The partly used last hugepage of a whole-hugepage span (a donated
    // tail is the filler's).
    Length rest = s->num_pages % kPagesPerHugePage;
    if (rest != 0 && s->origin == Span::kFromCache) add(HugePageOf(s->first_page) + whole, rest << kPageShift);
  });
  regions_.ForEach([&](HugeRegion* r) {
    for (size_t i = 0; i < r->hugepages(); ++i) add(r->first_hugepage() + i, r->UsedBytesIn(i));
  });
  return n;
}

void HugePageAwareAllocator::Print(Printer* out) {
  HugePageStats h = HugeStats();
  BackendStats b = Stats();
  out->Str("------------------------------------------------\n");
  out->Str("Back-end (hugepage-aware): ").MiB(b.system_bytes).Str(" MiB mapped: ")
      .MiB(b.in_use_bytes).Str(" MiB in ").U(b.spans_in_use).Str(" spans in use, ")
      .MiB(b.free_bytes).Str(" MiB free and backed,\n  ").MiB(b.unmapped_bytes)
      .Str(" MiB not backed (released, or never touched); ").MiB(b.released_total)
      .Str(" MiB given back to the OS since start\n");
  out->Str("Hugepages (2 MiB):      held  intact+used  broken  free_pages  released_pages  used_pages\n");
  auto filler_row = [&](const char* name, const FillerStats& f) {
    out->Str(name).UW(f.hugepages, 10).UW(f.full + f.intact_partial, 13).UW(f.broken, 8).UW(f.free_pages, 12)
        .UW(f.released_pages, 16).UW(f.used_pages, 12).Char('\n');
  };
  filler_row("  filler (small)  ", h.small_filler);
  filler_row("  filler (large)  ", h.sparse_filler);
  out->Str("  regions (").U(h.region_count).Str(")     ").UW(h.regions.hugepages, 10)
      .UW(h.regions.backed_hugepages, 13).UW(0, 8).UW(h.regions.free_backed_pages, 12)
      .UW((h.regions.hugepages - h.regions.backed_hugepages) * kPagesPerHugePage, 16)
      .UW(h.regions.used_pages, 12).Char('\n');
  out->Str("  large allocs    ").UW(h.large_hugepages, 10).UW(h.large_hugepages, 13).UW(0, 8)
      .UW(0, 12).UW(0, 16).UW(h.large_hugepages * kPagesPerHugePage, 12).Char('\n');
  auto cache_row = [&](const char* name, const HugeCacheStats& c) {
    out->Str(name).UW(c.backed_free + c.unbacked_free, 10).UW(0, 13).UW(0, 8)
        .UW(c.backed_free * kPagesPerHugePage, 12).UW(c.unbacked_free * kPagesPerHugePage, 16).UW(0, 12)
        .Char('\n');
  };
  cache_row("  cache (dense)   ", h.dense_cache);
  cache_row("  cache (large)   ", h.sparse_cache);
  out->Str("Filler: ").U(h.filler.subreleased_total_pages).Str(" pages subreleased since start (")
      .U(h.filler.refaulted_total_pages).Str(" refaulted); ").U(h.filler.donated)
      .Str(" donated tails; ").U(h.collapses).Str(" collapses (").U(h.collapse_failures).Str(" refused)\n");
  out->Str("Filler khugepaged guard: ").Str(options_.guard_khugepaged ? "on; " : "off; ").U(h.filler.no_thp)
      .Str(" hugepages advised MADV_NOHUGEPAGE now, ").U(h.filler.no_thp_refused)
      .Str(" subreleased without it\n");
  if (h.small_heap_hugepages != 0) {
    out->Str("Small heap: its first ").U(h.small_heap_hugepages)
        .Str(" hugepages of small objects stay on base pages until it needs more\n");
  }
  out->Str("Large allocations: ").Str(options_.sparse_large ? "base pages until dense; " : "on hugepages; ")
      .U(h.promoted_hugepages).Str(" hugepages collapsed when dense (").U(h.promote_failures)
      .Str(" refused), ").U(h.sparse_checks).Str(" checks found one sparse\n");
  if (options_.sparse_large && options_.release_growing_large) {
    out->Str("Large frees released as they grew: ").U(h.growth_releases).Str(" (")
        .MiB(h.growth_released_bytes).Str(" MiB); a freed large allocation is released at once above ")
        .MiB(h.growth_threshold_bytes).Str(" MiB\n");
  }
  out->Str("Hugepage cache: ").U(h.cache.mapped_hugepages).Str(" hugepages reserved, ").U(h.cache.in_use)
      .Str(" in use; ").U(h.cache.hits).Str(" hits, ").U(h.cache.misses).Str(" misses, ")
      .U(h.cache.released_hugepages).Str(" released; keeps ").U(h.cache.demand_limit)
      .Str(" backed\n");
}

}  // namespace jsmalloc
