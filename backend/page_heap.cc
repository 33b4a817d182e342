#include "backend/page_heap.h"

#include "os/os.h"
#include "probes/jsmalloc_probes.h"

namespace jsmalloc {

PageHeap::PageHeap(PageMap* pagemap, PageSource* source, MetadataArena* arena,
                   const PageHeapOptions& options)
    : pagemap_(pagemap), source_(source), options_(options) {
  span_pool_.Init(arena);
}

Span* PageHeap::NewSpan(PageId first, Length n) {
  Span* s = span_pool_.New();
  if (s == nullptr) return nullptr;
  s->first_page = first;
  s->num_pages = n;
  s->partition = options_.partition;
  return s;
}

void PageHeap::DeleteSpan(Span* s) { span_pool_.Delete(s); }

void PageHeap::InsertFree(Span* span) {
  size_t bytes = span->bytes();
  if (span->location == Span::kOnNormalFreelist) stats_.free_bytes += bytes;
  else stats_.unmapped_bytes += bytes;
  ++stats_.free_runs;
  if (span->num_pages <= kMaxListPages) {
    span->in_large_set = false;
    ListFor(span->location, span->num_pages)->PushFront(span);
  } else {
    span->in_large_set = true;
    SetFor(span->location)->insert(span);
  }
}

void PageHeap::RemoveFree(Span* span) {
  size_t bytes = span->bytes();
  if (span->location == Span::kOnNormalFreelist) stats_.free_bytes -= bytes;
  else stats_.unmapped_bytes -= bytes;
  --stats_.free_runs;
  if (span->in_large_set) {
    SetFor(span->location)->erase_value(span);
    span->in_large_set = false;
  } else {
    SpanList::Remove(span);
  }
}

// Best fit: the shortest run that holds n pages, preferring backed memory over
// released memory of the same length (no page faults to refill it), and the
// lowest address among equals so the heap stays compact.
Span* PageHeap::SearchFreeLists(Length n) {
  for (Length len = n; len <= kMaxListPages; ++len) {
    if (!normal_[len].empty()) return normal_[len].first();
    if (!returned_[len].empty()) return returned_[len].first();
  }
  Span key;
  key.num_pages = n > kMaxListPages ? n : kMaxListPages + 1;
  key.first_page = 0;
  Span* best = nullptr;
  Span** it = large_normal_.lower_bound(&key);
  if (it != large_normal_.end()) best = *it;
  Span** jt = large_returned_.lower_bound(&key);
  if (jt != large_returned_.end() && (best == nullptr || (*jt)->num_pages < best->num_pages)) {
    best = *jt;
  }
  return best;
}

// Splits the first n pages off a free run and hands them out.
Span* PageHeap::Carve(Span* span, Length n) {
  RemoveFree(span);
  Span::Location old = span->location;
  if (span->num_pages > n) {
    Span* rest = NewSpan(span->first_page + n, span->num_pages - n);
    if (rest == nullptr) {
      // Out of metadata: put the run back whole and fail.
      InsertFree(span);
      return nullptr;
    }
    rest->location = old;
    pagemap_->Set(rest->first_page, rest);
    pagemap_->Set(rest->last_page(), rest);
    InsertFree(rest);
    span->num_pages = n;
  }
  last_carved_from_ = old;
  span->location = Span::kInUse;
  span->sizeclass = 0;
  pagemap_->SetRange(span->first_page, n, span);
  stats_.in_use_bytes += span->bytes();
  ++stats_.spans_in_use;
  return span;
}

Span* PageHeap::NewLocked(Length n) {
  if (n == 0) n = 1;
  Span* s = SearchFreeLists(n);
  if (s == nullptr && stats_.unmapped_bytes > 0 &&
      stats_.free_bytes + stats_.unmapped_bytes >= (n << kPageShift)) {
    // Enough free memory, but perhaps in neighbouring pieces that differ in
    // backing state and so were not coalesced. Releasing the backed ones
    // merges them; better than growing the heap.
    ReleaseAtLeastLocked(~size_t{0});
    s = SearchFreeLists(n);
  }
  if (s == nullptr) {
    if (!Grow(n)) return nullptr;
    s = SearchFreeLists(n);
    if (s == nullptr) return nullptr;
  }
  return Carve(s, n);
}

Span* PageHeap::New(Length n) {
  SpinLockHolder h(lock_);
  FlushReleasesOnExit flush(source_);
  return NewLocked(n);
}

Span* PageHeap::NewAligned(Length n, Length align_pages) {
  if (align_pages <= 1) return New(n);
  SpinLockHolder h(lock_);
  FlushReleasesOnExit flush(source_);
  Length total = n + align_pages - 1;
  if (total < n) return nullptr;
  Span* s = NewLocked(total);
  if (s == nullptr) return nullptr;
  // Give back the misaligned head and the unused tail, in the backing state
  // they were carved from: pages of a released run were never touched.
  const Span::Location back = last_carved_from_;
  PageId aligned = (s->first_page + align_pages - 1) & ~(align_pages - 1);
  Length head = aligned - s->first_page;
  Length tail = total - head - n;
  stats_.in_use_bytes -= s->bytes();
  --stats_.spans_in_use;
  if (head > 0) {
    Span* h_span = NewSpan(s->first_page, head);
    if (h_span == nullptr) {
      s->location = back;
      MergeIntoFreeLists(s);
      return nullptr;
    }
    s->first_page = aligned;
    s->num_pages -= head;
    h_span->location = back;
    MergeIntoFreeLists(h_span);
  }
  if (tail > 0) {
    Span* t_span = NewSpan(s->first_page + n, tail);
    if (t_span != nullptr) {
      s->num_pages = n;
      t_span->location = back;
      MergeIntoFreeLists(t_span);
    }
  }
  stats_.in_use_bytes += s->bytes();
  ++stats_.spans_in_use;
  pagemap_->SetRange(s->first_page, s->num_pages, s);
  return s;
}

// Coalesces a free run with free neighbours in the same backing state and
// files it. Runs of different states stay apart so that the byte counters of
// backed and released memory are exact.
void PageHeap::MergeIntoFreeLists(Span* span) {
  Span::Location loc = span->location;
  if (span->first_page > 0) {
    Span* prev = pagemap_->Get(span->first_page - 1);
    // Another partition's heap may own the neighbouring mapping.
    if (prev != nullptr && prev->location == loc && prev->last_page() == span->first_page - 1 &&
        prev->partition == options_.partition) {
      RemoveFree(prev);
      span->first_page = prev->first_page;
      span->num_pages += prev->num_pages;
      DeleteSpan(prev);
    }
  }
  Span* next = pagemap_->Get(span->last_page() + 1);
  if (next != nullptr && next->location == loc && next->first_page == span->last_page() + 1 &&
      next->partition == options_.partition) {
    RemoveFree(next);
    span->num_pages += next->num_pages;
    DeleteSpan(next);
  }
  pagemap_->Set(span->first_page, span);
  pagemap_->Set(span->last_page(), span);
  InsertFree(span);
}

void PageHeap::Delete(Span* span) {
  SpinLockHolder h(lock_);
  FlushReleasesOnExit flush(source_);
  if (span->location != Span::kInUse) {
    os::FatalError("double free of pages at", span->start());
  }
  stats_.in_use_bytes -= span->bytes();
  --stats_.spans_in_use;
  span->sizeclass = 0;
  span->freelist = nullptr;
  span->allocated = span->carved = 0;
  span->location = Span::kOnNormalFreelist;
  MergeIntoFreeLists(span);
  MaybeReleaseExcess();
}

void PageHeap::MaybeReleaseExcess() {
  size_t keep = stats_.in_use_bytes / options_.keep_free_divisor;
  if (keep < options_.keep_free_min_bytes) keep = options_.keep_free_min_bytes;
  if (stats_.free_bytes > keep) {
    size_t released = 0;
    ProbeReleaseScope probe(kProbeReleaseDemand, stats_.free_bytes - keep / 2, &released);
    released = ReleaseAtLeastLocked(stats_.free_bytes - keep / 2);
  }
}

bool PageHeap::Grow(Length n) {
  size_t bytes = n << kPageShift;
  if ((bytes >> kPageShift) != n) return false;
  size_t grow = (bytes + options_.min_grow_bytes - 1) & ~(options_.min_grow_bytes - 1);
  if (grow < bytes) return false;
  size_t align = kHugePageSize > kPageSize ? kHugePageSize : kPageSize;
  // The legacy heap leaves hugepages to the kernel's defaults (its source
  // advises nothing).
  void* mem = source_->Map(grow, align, next_hint_, false);
  if (mem == nullptr && grow > bytes) {
    grow = (bytes + kPageSize - 1) & ~(kPageSize - 1);
    mem = source_->Map(grow, kPageSize, nullptr, false);
  }
  if (mem == nullptr) return false;
  PageId first = PageIdOf(mem);
  Length pages = grow >> kPageShift;
  // Leaves for the run and one page either side, so coalescing can look at
  // neighbours without checking for a missing leaf.
  if (!pagemap_->Ensure(first > 0 ? first - 1 : first, pages + 2)) return false;
  Span* s = NewSpan(first, pages);
  if (s == nullptr) return false;
  next_hint_ = static_cast<char*>(mem) + grow;
  if (reinterpret_cast<uintptr_t>(mem) < lo_) lo_ = reinterpret_cast<uintptr_t>(mem);
  if (reinterpret_cast<uintptr_t>(mem) + grow > hi_) hi_ = reinterpret_cast<uintptr_t>(mem) + grow;
  stats_.system_bytes += grow;
  ++stats_.grow_calls;
  s->location = Span::kOnNormalFreelist;
  MergeIntoFreeLists(s);
  return true;
}

size_t PageHeap::ReleaseSpan(Span* span) {
  RemoveFree(span);
  size_t bytes = span->bytes();
  if (!source_->Release(span->start(), bytes)) {
    InsertFree(span);  // stays backed; the kernel refused
    return 0;
  }
  stats_.released_total += bytes;
  span->location = Span::kOnReturnedFreelist;
  MergeIntoFreeLists(span);
  return bytes;
}

size_t PageHeap::ReleaseAtLeastLocked(size_t bytes) {
  size_t released = 0;
  // Longest runs first: one madvise covers the most memory, and short runs
  // are the ones most likely to be reused soon.
  while (released < bytes && !large_normal_.empty()) {
    size_t got = ReleaseSpan(*(large_normal_.end() - 1));
    if (got == 0) return released;
    released += got;
  }
  for (Length len = kMaxListPages; len > 0 && released < bytes; --len) {
    while (released < bytes && !normal_[len].empty()) {
      size_t got = ReleaseSpan(normal_[len].first());
      if (got == 0) return released;
      released += got;
    }
  }
  return released;
}

size_t PageHeap::ReleaseAtLeast(size_t bytes) {
  size_t released = 0;
  ProbeReleaseScope probe(kProbeReleaseForced, bytes, &released);  // fires after the unlock
  SpinLockHolder h(lock_);
  FlushReleasesOnExit flush(source_);
  released = ReleaseAtLeastLocked(bytes);
  return released;
}

size_t PageHeap::BackedBytes() {
  SpinLockHolder h(lock_);
  return stats_.system_bytes - stats_.unmapped_bytes;
}

BackendStats PageHeap::Stats() {
  SpinLockHolder h(lock_);
  return stats_;
}

void PageHeap::Print(Printer* out) {
  BackendStats s;
  size_t normal_counts[kMaxListPages + 1], returned_counts[kMaxListPages + 1];
  size_t large_normal_runs, large_returned_runs, large_normal_pages = 0, large_returned_pages = 0;
  {
    SpinLockHolder h(lock_);
    s = stats_;
    for (Length i = 1; i <= kMaxListPages; ++i) {
      normal_counts[i] = normal_[i].Count();
      returned_counts[i] = returned_[i].Count();
    }
    large_normal_runs = large_normal_.size();
    large_returned_runs = large_returned_.size();
    for (Span* sp : large_normal_) large_normal_pages += sp->num_pages;
    for (Span* sp : large_returned_) large_returned_pages += sp->num_pages;
  }
  out->Str("------------------------------------------------\n");
  out->Str("Page heap (legacy): ").MiB(s.system_bytes).Str(" MiB mapped: ")
      .MiB(s.in_use_bytes).Str(" MiB in ").U(s.spans_in_use).Str(" spans in use, ")
      .MiB(s.free_bytes).Str(" MiB free and backed,\n  ").MiB(s.unmapped_bytes)
      .Str(" MiB not backed (released, or never touched); ").U(s.grow_calls).Str(" growths, ")
      .MiB(s.released_total).Str(" MiB given back to the OS since start\n");
  out->Str("Free runs by length (pages: normal / released):\n");
  for (Length i = 1; i <= kMaxListPages; ++i) {
    if (normal_counts[i] == 0 && returned_counts[i] == 0) continue;
    out->Str("  ").UW(i, 4).Str(" pages: ").UW(normal_counts[i], 6).Str(" / ")
        .UW(returned_counts[i], 6).Char('\n');
  }
  out->Str("  >").U(kMaxListPages).Str(" pages: ").U(large_normal_runs).Str(" runs (")
      .U(large_normal_pages).Str(" pages) / ").U(large_returned_runs).Str(" runs (")
      .U(large_returned_pages).Str(" pages)\n");
}

bool PageHeap::CheckInvariants() {
  SpinLockHolder h(lock_);
  size_t free_bytes = 0, unmapped = 0, runs = 0;
  auto check = [&](Span* s, Span::Location loc) {
    if (s->location != loc) return false;
    if (pagemap_->Get(s->first_page) != s || pagemap_->Get(s->last_page()) != s) return false;
    Span* prev = s->first_page > 0 ? pagemap_->Get(s->first_page - 1) : nullptr;
    if (prev != nullptr && prev != s && prev->location == loc && prev->last_page() == s->first_page - 1 &&
        prev->partition == s->partition)
      return false;  // uncoalesced neighbour
    Span* next = pagemap_->Get(s->last_page() + 1);
    if (next != nullptr && next != s && next->location == loc && next->first_page == s->last_page() + 1 &&
        next->partition == s->partition)
      return false;
    if (loc == Span::kOnNormalFreelist) free_bytes += s->bytes();
    else unmapped += s->bytes();
    ++runs;
    return true;
  };
  for (Length i = 1; i <= kMaxListPages; ++i) {
    if (normal_[i].Find([&](Span* s) { return s->num_pages != i || !check(s, Span::kOnNormalFreelist); })) {
      return false;
    }
    if (returned_[i].Find([&](Span* s) { return s->num_pages != i || !check(s, Span::kOnReturnedFreelist); })) {
      return false;
    }
  }
  for (Span* s : large_normal_)
    if (s->num_pages <= kMaxListPages || !check(s, Span::kOnNormalFreelist)) return false;
  for (Span* s : large_returned_)
    if (s->num_pages <= kMaxListPages || !check(s, Span::kOnReturnedFreelist)) return false;
  if (free_bytes != stats_.free_bytes || unmapped != stats_.unmapped_bytes || runs != stats_.free_runs)
    return false;
  return stats_.free_bytes + stats_.unmapped_bytes + stats_.in_use_bytes == stats_.system_bytes;
}

}  // namespace jsmalloc
