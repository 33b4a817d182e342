#include "hugepage/huge_page_filler.h"

#include "probes/jsmalloc_probes.h"
#include "base/arena.h"

namespace jsmalloc {

void HugePageFiller::Insert(PageTracker* t) {
  if (lists_ == nullptr) {
    // Zeroed by the kernel: every list in it is empty (HeadList).
    lists_ = static_cast<Lists*>(GlobalArena()->Alloc(sizeof(Lists), 4096));
    if (lists_ == nullptr) ArenaExhausted();
  }
  int g = GroupOf(t), c = ChunkOf(t);
  Length l = t->longest_free();
  ListAt(g, c, l).PushFront(t);
  nonempty_[g][c].SetRange(l, 1);
  t->list_group = static_cast<uint16_t>(g);
  t->list_chunk = static_cast<uint16_t>(c);
  t->list_longest = static_cast<uint16_t>(l);
  t->on_list = true;
}

void HugePageFiller::Remove(PageTracker* t) {
  HeadList<PageTracker>::Remove(t);
  HeadList<PageTracker>& list = ListAt(t->list_group, t->list_chunk, t->list_longest);
  if (list.empty()) nonempty_[t->list_group][t->list_chunk].ClearRange(t->list_longest, 1);
  t->on_list = false;
}

PageTracker* HugePageFiller::TryAlloc(Length n, PageId* page, Length* was_released) {
  for (int g = 0; g < 2; ++g) {
    for (int c = kChunks - 1; c >= 0; --c) {
      size_t l = nonempty_[g][c].Find(n, true, kPagesPerHugePage + 1);
      if (l > kPagesPerHugePage) continue;
      PageTracker* t = ListAt(g, c, l).first();
      Remove(t);
      Length idx = t->Alloc(n, was_released);
      if (t->full()) {
        JSMALLOC_PROBE(hugepage_filled, ProbeAddr(HugePageStart(t->hugepage())), t->broken(),
                       ProbeNumaNode());
      }
      used_pages_ += n;
      free_backed_pages_ -= n - *was_released;
      released_pages_ -= *was_released;
      refaulted_total_ += *was_released;
      if (t->released() == 0) AllowThp(t);
      Insert(t);
      *page = FirstPageOf(t->hugepage()) + idx;
      return t;
    }
  }
  return nullptr;
}

PageId HugePageFiller::AllocFromNew(PageTracker* t, Length n) {
  ++hugepages_;
  free_backed_pages_ += kPagesPerHugePage;
  Length was_released;
  Length idx = t->Alloc(n, &was_released);
  used_pages_ += n;
  free_backed_pages_ -= n;
  Insert(t);
  return FirstPageOf(t->hugepage()) + idx;
}

void HugePageFiller::AddDonated(PageTracker* t, Length used) {
  ++hugepages_;
  t->MarkUsed(0, used, nullptr);
  used_pages_ += used;
  free_backed_pages_ += kPagesPerHugePage - used;
  Insert(t);
}

bool HugePageFiller::Free(PageTracker* t, PageId page, Length n) {
  Remove(t);
  t->Free(page - FirstPageOf(t->hugepage()), n);
  used_pages_ -= n;
  free_backed_pages_ += n;
  if (t->empty()) {
    --hugepages_;
    free_backed_pages_ -= kPagesPerHugePage - t->released();
    released_pages_ -= t->released();
    return true;
  }
  Insert(t);
  return false;
}

void HugePageFiller::AllowThp(PageTracker* t) {
  if (!t->no_thp()) return;
  // If the kernel refuses, the hugepage only goes without THP (nothing is
  // lost); the next subrelease advises it again anyway.
  source_->AllowHugePages(HugePageStart(t->hugepage()), kHugePageSize, true);
  t->set_no_thp(false);
  --no_thp_;
}

void HugePageFiller::ForgetTracker(PageTracker* t) { AllowThp(t); }

Length HugePageFiller::SubRelease(Length desired) { return SubReleaseFrom(desired, false); }

Length HugePageFiller::SubReleaseIdle(Length desired) { return SubReleaseFrom(desired, true); }

void HugePageFiller::MarkIdle() {
  ForEachTracker([](PageTracker* t) { t->MarkIdle(); });
}

Length HugePageFiller::SubReleaseFrom(Length desired, bool idle_only) {
  Length done = 0;
  if (lists_ == nullptr) return 0;  // never held a hugepage
  // Least used first: their free pages are the most likely to stay free.
  for (int c = 0; c < kChunks && done < desired; ++c) {
    for (int g = 0; g < 2 && done < desired; ++g) {
      for (size_t l = nonempty_[g][c].Find(1, true, kPagesPerHugePage + 1);
           l <= kPagesPerHugePage && done < desired;
           l = nonempty_[g][c].Find(l + 1, true, kPagesPerHugePage + 1)) {
        HeadList<PageTracker>& list = ListAt(g, c, l);
        // Collect first: releasing moves trackers between lists.
        PageTracker* batch[64];
        int k = 0;
        list.ForEach([&](PageTracker* t) {
          // A hugepage being collapsed keeps its pages until the collapse
          // ends (a page released meanwhile would be refilled with zeros).
          if (k < 64 && t->free() > t->released() && (!idle_only || t->idle_hint() > 0) &&
              t->promote() != PageTracker::kCollapsing)
            batch[k++] = t;
        });
        for (int i = 0; i < k && done < desired; ++i) {
          PageTracker* t = batch[i];
          const Length want = desired - done;
          done += ReleaseOn(t, [&](auto release) {
            return idle_only ? t->ReleaseIdle(want, release) : t->ReleaseFree(release);
          });
        }
      }
    }
  }
  return done;
}

template <typename How>
Length HugePageFiller::ReleaseOn(PageTracker* t, How how) {
  Remove(t);
  bool was_broken = t->broken();
  // Before the first page goes: khugepaged must not refill it.
  if (guard_khugepaged_ && !t->no_thp()) {
    if (no_thp_ < kMaxNoThp && source_->AllowHugePages(HugePageStart(t->hugepage()), kHugePageSize, false)) {
      t->set_no_thp(true);
      ++no_thp_;
    } else if (t->released() == 0) {
      ++no_thp_refused_;
    }
  }
  auto release = [&](Length index, Length len) {
    return source_->Release(PageStart(FirstPageOf(t->hugepage()) + index), len << kPageShift);
  };
  Length got = how(release);
  if (got > 0) {
    JSMALLOC_PROBE(hugepage_broken, ProbeAddr(HugePageStart(t->hugepage())), t->used(), got, kPagesPerHugePage,
                   !was_broken, ProbeNumaNode());
  }
  if (t->released() == 0) AllowThp(t);  // nothing went after all
  free_backed_pages_ -= got;
  released_pages_ += got;
  subreleased_total_ += got;
  Insert(t);
  return got;
}

Length HugePageFiller::ReleaseFreed(PageTracker* t, PageId page, Length n) {
  // A hugepage being collapsed keeps its pages until the collapse ends.
  if (t->promote() == PageTracker::kCollapsing) return 0;
  const Length index = page - FirstPageOf(t->hugepage());
  return ReleaseOn(t, [&](auto release) { return t->ReleaseRange(index, n, release); });
}

FillerStats HugePageFiller::Stats() const {
  FillerStats s;
  s.hugepages = hugepages_;
  s.used_pages = used_pages_;
  s.free_pages = free_backed_pages_;
  s.released_pages = released_pages_;
  s.subreleased_total_pages = subreleased_total_;
  s.refaulted_total_pages = refaulted_total_;
  s.no_thp = no_thp_;
  s.no_thp_refused = no_thp_refused_;
  ForEachTracker([&](PageTracker* t) {
    if (t->broken()) ++s.broken;
    else if (t->full()) ++s.full;
    else ++s.intact_partial;
    if (t->donated()) ++s.donated;
    if (!t->broken()) s.used_pages_on_intact += t->used();
  });
  return s;
}

}  // namespace jsmalloc
