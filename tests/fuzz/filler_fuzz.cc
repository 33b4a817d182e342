// Hugepage filler (hugepage/huge_page_filler.h) against a model that keeps,
// per hugepage, which pages are used and which are released. Operations:
// allocate (TryAlloc, and AllocFromNew with a fresh hugepage when nothing
// fits), take a donated tail, free any live run, subrelease (the OS
// refusing releases only with kRefusedReleases, below). Checked:
//   - TryAlloc fails only if no hugepage has a long enough free run;
//   - placement follows the documented order: never-subreleased hugepages
//     first, then the most used (occupancy chunk), then the shortest longest
//     free run that fits; within the hugepage the best-fitting run (lowest
//     address among equals); was_released is what the model says;
//   - Free reports "empty" exactly when the hugepage's last run goes;
//   - SubRelease releases only free, not yet released pages, returns what it
//     released, and releases at least min(desired, free backed pages);
//   - every tracker's used / free / released / longest free run / broken and
//     every counter of Stats() match the model;
//   - ageing (MarkIdle, SubReleaseIdle): only pages free since the last
//     MarkIdle and never taken since are released, at most `desired`, and
//     at least min(desired, such pages) when the OS refuses nothing;
//   - the khugepaged guard: a page is released only from a hugepage
//     advised MADV_NOHUGEPAGE (unless the advice was refused), the advice is
//     lifted exactly when no page is released any more (or the hugepage
//     leaves the filler: ForgetTracker), never given twice, and Stats().no_thp
//     counts the advised hugepages.
// Op bytes 0xf8..0xff are the ageing operations and advice refusals (added
// later; the rest of the encoding is unchanged, so older inputs replay as
// before unless they hold such bytes).
#include <algorithm>
#include <cstring>
#include <memory>
#include <tuple>
#include <vector>

#include "hugepage/huge_page_filler.h"
#include "tests/fuzz/fuzz_common.h"

namespace jsmalloc {
namespace {

constexpr size_t kPool = 48;  // hugepages the fuzzer can hand the filler

// The fuzzer also makes the OS refuse releases: SubRelease must keep refused
// pages backed and counted so (it once counted them released; the input in
// regressions/filler/ shows it).
constexpr bool kRefusedReleases = true;
constexpr Length kHP = kPagesPerHugePage;
constexpr HugePageId kFirstHugePage = (uintptr_t{0x3100} << 32) >> kHugePageShift;

struct ModelPage {
  bool in_filler = false;
  bool donated = false;
  bool broken = false;
  bool no_thp = false;        // advised MADV_NOHUGEPAGE (source's view)
  bool advice_refused = false;  // refused, so released without advice, until no page is released
  fuzz::BitVec used{kHP}, released{kHP}, idle{kHP};
  PageTracker tracker;
  Length Used() const { return used.Count(0, kHP); }
  Length Released() const { return released.Count(0, kHP); }
  Length Longest() const { return used.LongestClearRun(); }
  // Best fit as documented: the shortest free run of at least n, lowest first.
  Length BestFit(Length n) const { return used.BestFit(n); }
  int Group() const { return broken ? 1 : 0; }
  int Chunk() const { return static_cast<int>((Used() * HugePageFiller::kChunks) / (kHP + 1)); }
};

struct Alloc {
  size_t hp;  // pool index
  Length index, n;
};

}  // namespace
}  // namespace jsmalloc

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jsmalloc;
  fuzz::Input in(data, size);
  static const bool refusals = kRefusedReleases || std::getenv("JSMALLOC_TEST_FUZZ_FILLER_REFUSALS") != nullptr;
  fuzz::FakeSpace space(0, 0);  // the filler never maps; it only releases
  space.AddForeign(reinterpret_cast<uintptr_t>(HugePageStart(kFirstHugePage)), kPool * kHugePageSize);
  auto filler = std::make_unique<HugePageFiller>(&space, /*guard_khugepaged=*/true);
  auto pool = std::make_unique<ModelPage[]>(kPool);
  std::vector<Alloc> allocs;
  size_t subreleased_total = 0;

  auto index_of = [&](PageTracker* t) -> size_t {
    for (size_t i = 0; i < kPool; ++i)
      if (&pool[i].tracker == t) return i;
    FUZZ_CHECK(false, "tracker %p is not one the fuzzer handed in", (void*)t);
    return 0;
  };

  bool idle_only = false;  // a SubReleaseIdle is running
  space.on_advice = [&](uintptr_t a, size_t bytes, bool allow) {
    HugePageId hp = HugePageOf(a >> kPageShift);
    FUZZ_CHECK(a % kHugePageSize == 0 && bytes == kHugePageSize, "advice for %#lx + %zu, not one hugepage",
               (unsigned long)a, bytes);
    FUZZ_CHECK(hp >= kFirstHugePage && hp < kFirstHugePage + kPool, "advice outside the pool");
    ModelPage& m = pool[hp - kFirstHugePage];
    FUZZ_CHECK(m.no_thp == allow, "advice %s given twice for hugepage %lu", allow ? "HUGEPAGE" : "NOHUGEPAGE",
               (unsigned long)hp);
    m.no_thp = !allow;
  };
  space.on_advice_refused = [&](uintptr_t a) {
    HugePageId hp = HugePageOf(a >> kPageShift);
    FUZZ_CHECK(hp >= kFirstHugePage && hp < kFirstHugePage + kPool, "advice outside the pool");
    pool[hp - kFirstHugePage].advice_refused = true;
  };

  // Releases come in through the source while SubRelease runs.
  space.on_release = [&](uintptr_t a, size_t bytes) {
    PageId first = a >> kPageShift;
    Length n = bytes >> kPageShift;
    HugePageId hp = HugePageOf(first);
    FUZZ_CHECK(hp >= kFirstHugePage && hp < kFirstHugePage + kPool, "release outside the pool: %#lx",
               (unsigned long)a);
    ModelPage& m = pool[hp - kFirstHugePage];
    FUZZ_CHECK(m.in_filler, "release in hugepage %lu which the filler does not hold", (unsigned long)hp);
    Length idx = first - FirstPageOf(hp);
    FUZZ_CHECK(idx + n <= kHP, "release crosses a hugepage boundary");
    FUZZ_CHECK(m.no_thp || m.advice_refused, "release in hugepage %lu, which is not advised MADV_NOHUGEPAGE",
               (unsigned long)hp);
    if (idle_only) {
      FUZZ_CHECK(m.idle.Count(idx, n) == n, "SubReleaseIdle released pages %lu+%lu of hugepage %lu that are not idle",
                 (unsigned long)idx, (unsigned long)n, (unsigned long)hp);
    }
    m.idle.SetRange(idx, n, false);
    for (Length i = idx; i < idx + n; ++i) {
      FUZZ_CHECK(!m.used.Get(i), "released page %lu of hugepage %lu, which is in use", (unsigned long)i,
                 (unsigned long)hp);
      FUZZ_CHECK(!m.released.Get(i), "released page %lu of hugepage %lu twice", (unsigned long)i,
                 (unsigned long)hp);
      m.released.Set(i, true);
    }
    m.broken = true;
  };

  // Stats() and ForEachTracker walk the lists the bitmaps mark non-empty
  // (a list left out of them would be missed, and counted here): every 16th
  // operation and at the end; the trackers and the O(1) counters every time.
  int step = 0;
  auto check_all = [&](const char* after) {
    const bool full = (++step % 16) == 0 || std::strcmp(after, "freeing everything") == 0;
    FillerStats want;
    for (size_t i = 0; i < kPool; ++i) {
      ModelPage& m = pool[i];
      if (!m.in_filler) continue;
      const PageTracker& t = m.tracker;
      Length used = m.Used(), rel = m.Released();
      FUZZ_CHECK(t.used() == used && t.free() == kHP - used && t.released() == rel && t.longest_free() == m.Longest() &&
                     t.broken() == m.broken && t.donated() == m.donated,
                 "after %s: hugepage %zu: tracker used %lu rel %lu longest %lu broken %d, model %lu %lu %lu %d", after,
                 i, (unsigned long)t.used(), (unsigned long)t.released(), (unsigned long)t.longest_free(), t.broken(),
                 (unsigned long)used, (unsigned long)rel, (unsigned long)m.Longest(), m.broken);
      if (rel == 0) m.advice_refused = false;  // whole again: the next subrelease advises anew
      if (!m.advice_refused) {
        FUZZ_CHECK(m.no_thp == (rel > 0), "after %s: hugepage %zu advised MADV_NOHUGEPAGE %d with %lu released pages",
                   after, i, m.no_thp, (unsigned long)rel);
      }
      FUZZ_CHECK(t.no_thp() == m.no_thp, "after %s: hugepage %zu: tracker no_thp %d, source saw %d", after, i,
                 t.no_thp(), m.no_thp);
      if (m.no_thp) ++want.no_thp;
      ++want.hugepages;
      if (m.broken) ++want.broken;
      else if (used == kHP) ++want.full;
      else ++want.intact_partial;
      if (m.donated) ++want.donated;
      if (!m.broken) want.used_pages_on_intact += used;
      want.used_pages += used;
      want.released_pages += rel;
      want.free_pages += kHP - used - rel;
    }
    FUZZ_CHECK(filler->free_backed_pages() == want.free_pages && filler->released_pages() == want.released_pages,
               "after %s: free_backed_pages %zu released_pages %zu, model %zu %zu", after,
               filler->free_backed_pages(), filler->released_pages(), want.free_pages, want.released_pages);
    if (!full) return;
    FillerStats s = filler->Stats();
    FUZZ_CHECK(s.hugepages == want.hugepages && s.full == want.full && s.intact_partial == want.intact_partial &&
                   s.broken == want.broken && s.donated == want.donated && s.used_pages == want.used_pages &&
                   s.free_pages == want.free_pages && s.released_pages == want.released_pages &&
                   s.used_pages_on_intact == want.used_pages_on_intact && s.subreleased_total_pages == subreleased_total &&
                   s.no_thp == want.no_thp,
               "after %s: stats hugepages %zu full %zu partial %zu broken %zu donated %zu used %zu free %zu released "
               "%zu intact-used %zu subreleased %zu; model %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu",
               after, s.hugepages, s.full, s.intact_partial, s.broken, s.donated, s.used_pages, s.free_pages,
               s.released_pages, s.used_pages_on_intact, s.subreleased_total_pages, want.hugepages, want.full,
               want.intact_partial, want.broken, want.donated, want.used_pages, want.free_pages, want.released_pages,
               want.used_pages_on_intact, subreleased_total);
    size_t visited = 0;
    filler->ForEachTracker([&](PageTracker* t) {
      size_t i = index_of(t);
      FUZZ_CHECK(pool[i].in_filler, "after %s: ForEachTracker visits hugepage %zu, not in the filler", after, i);
      ++visited;
    });
    FUZZ_CHECK(visited == want.hugepages, "after %s: ForEachTracker visited %zu of %zu", after, visited,
               want.hugepages);
  };

  auto fresh = [&](bool donated) -> ModelPage* {
    for (size_t i = 0; i < kPool; ++i) {
      ModelPage& m = pool[i];
      if (m.in_filler) continue;
      m.in_filler = true;
      m.donated = donated;
      m.broken = false;
      m.used = fuzz::BitVec(kHP);
      m.released = fuzz::BitVec(kHP);
      m.idle = fuzz::BitVec(kHP);
      FUZZ_CHECK(!m.no_thp, "hugepage %zu re-enters the filler still advised MADV_NOHUGEPAGE", i);
      m.advice_refused = false;
      m.tracker.Init(kFirstHugePage + i, donated);
      return &m;
    }
    return nullptr;
  };

  // A hugepage that left the filler: the back-end releases it whole (not
  // modelled here) and calls ForgetTracker, which lifts any advice.
  auto forget = [&](ModelPage& m) {
    m.in_filler = false;
    filler->ForgetTracker(&m.tracker);
    FUZZ_CHECK(!m.no_thp && !m.tracker.no_thp(), "ForgetTracker left the hugepage advised MADV_NOHUGEPAGE");
  };

  int ops = 0;
  while (in.remaining_bytes() > 0 && ops++ < 300) {
    uint8_t op = in.ConsumeIntegral<uint8_t>();
    if (op >= 0xf8) {
      switch (op & 3) {
        case 0:  // a new epoch: every free, backed page is idle from now on
          filler->MarkIdle();
          for (size_t i = 0; i < kPool; ++i) {
            ModelPage& m = pool[i];
            if (!m.in_filler) continue;
            for (Length p = 0; p < kHP; ++p) m.idle.Set(p, !m.used.Get(p) && !m.released.Get(p));
          }
          check_all("MarkIdle");
          break;
        case 1:
        case 2: {  // demand-driven subrelease: idle pages only
          Length desired = fuzz::PickLength(in, kHP / 4, 8 * kHP);
          size_t idle_total = 0;
          for (size_t i = 0; i < kPool; ++i) {
            if (pool[i].in_filler) idle_total += pool[i].idle.Count(0, kHP);
          }
          size_t refused = space.refused_releases;
          idle_only = true;
          Length got = filler->SubReleaseIdle(desired);
          idle_only = false;
          subreleased_total += got;
          FUZZ_CHECK(got <= desired && got <= idle_total, "SubReleaseIdle(%lu) = %lu with %zu idle pages",
                     (unsigned long)desired, (unsigned long)got, idle_total);
          if (space.refused_releases == refused) {
            FUZZ_CHECK(got >= std::min<size_t>(desired, idle_total), "SubReleaseIdle(%lu) released %lu of %zu idle",
                       (unsigned long)desired, (unsigned long)got, idle_total);
          }
          check_all("SubReleaseIdle");
          break;
        }
        default:  // the kernel refuses the next advice: that release goes ahead unadvised
          space.fail_advice = 1;
          break;
      }
      continue;
    }
    switch (op % 8) {
      case 0:
      case 1:
      case 2: {  // allocate n < a hugepage
        Length n = fuzz::PickLength(in, kHP / 8, kHP - 1);
        // The placement the documentation promises: smallest (group, -chunk, longest) that fits.
        bool any = false;
        std::tuple<int, int, Length> best{};
        for (size_t i = 0; i < kPool; ++i) {
          ModelPage& m = pool[i];
          if (!m.in_filler || m.Longest() < n) continue;
          std::tuple<int, int, Length> key{m.Group(), -m.Chunk(), m.Longest()};
          if (!any || key < best) best = key;
          any = true;
        }
        PageId page = 0;
        Length was_released = 0;
        PageTracker* t = filler->TryAlloc(n, &page, &was_released);
        FUZZ_CHECK((t != nullptr) == any, "TryAlloc(%lu) = %p but a fitting hugepage %s", (unsigned long)n, (void*)t,
                   any ? "exists" : "does not exist");
        ModelPage* m;
        Length idx;
        if (t != nullptr) {
          m = &pool[index_of(t)];
          FUZZ_CHECK(m->in_filler, "TryAlloc returned a hugepage not in the filler");
          std::tuple<int, int, Length> key{m->Group(), -m->Chunk(), m->Longest()};
          FUZZ_CHECK(key == best,
                     "TryAlloc(%lu) chose group %d chunk %d longest %lu; best is group %d chunk %d longest %lu",
                     (unsigned long)n, std::get<0>(key), -std::get<1>(key), (unsigned long)std::get<2>(key),
                     std::get<0>(best), -std::get<1>(best), (unsigned long)std::get<2>(best));
          FUZZ_CHECK(HugePageOf(page) == t->hugepage(), "TryAlloc's page is not in its hugepage");
          idx = page - FirstPageOf(t->hugepage());
          Length want = m->BestFit(n);
          FUZZ_CHECK(idx == want, "TryAlloc(%lu) took index %lu, best fit is %lu", (unsigned long)n,
                     (unsigned long)idx, (unsigned long)want);
          Length rel = m->released.Count(idx, n);
          FUZZ_CHECK(was_released == rel, "TryAlloc: was_released %lu, model %lu", (unsigned long)was_released,
                     (unsigned long)rel);
        } else {
          m = fresh(false);
          if (m == nullptr) break;
          page = filler->AllocFromNew(&m->tracker, n);
          idx = page - FirstPageOf(m->tracker.hugepage());
          FUZZ_CHECK(idx == 0, "AllocFromNew(%lu) at index %lu of an empty hugepage", (unsigned long)n,
                     (unsigned long)idx);
        }
        FUZZ_CHECK(m->used.Count(idx, n) == 0, "allocated pages %lu+%lu, some in use", (unsigned long)idx,
                   (unsigned long)n);
        m->used.SetRange(idx, n, true);
        m->released.SetRange(idx, n, false);
        m->idle.SetRange(idx, n, false);
        allocs.push_back({static_cast<size_t>(m - pool.get()), idx, n});
        check_all("allocate");
        break;
      }
      case 3: {  // a donated tail: its first `used` pages belong to a large allocation
        ModelPage* m = fresh(true);
        if (m == nullptr) break;
        Length used = in.ConsumeIntegralInRange<Length>(1, kHP - 1);
        filler->AddDonated(&m->tracker, used);
        m->used.SetRange(0, used, true);
        allocs.push_back({static_cast<size_t>(m - pool.get()), 0, used});
        check_all("AddDonated");
        break;
      }
      case 4:
      case 5: {  // free a live run
        if (allocs.empty()) break;
        size_t k = in.ConsumeIntegralInRange<size_t>(0, allocs.size() - 1);
        Alloc a = allocs[k];
        allocs[k] = allocs.back();
        allocs.pop_back();
        ModelPage& m = pool[a.hp];
        m.used.SetRange(a.index, a.n, false);
        bool empty = filler->Free(&m.tracker, FirstPageOf(kFirstHugePage + a.hp) + a.index, a.n);
        bool want_empty = m.Used() == 0;
        FUZZ_CHECK(empty == want_empty, "Free: empty %d, model %d", empty, want_empty);
        if (empty) forget(m);  // the caller owns the tracker again
        check_all("Free");
        break;
      }
      case 6: {  // subrelease
        Length desired = fuzz::PickLength(in, kHP, 40 * kHP);
        size_t free_backed = filler->free_backed_pages();
        size_t refused = space.refused_releases;
        Length got = filler->SubRelease(desired);
        subreleased_total += got;
        FUZZ_CHECK(got <= free_backed, "SubRelease(%lu) = %lu with %zu free backed pages", (unsigned long)desired,
                   (unsigned long)got, free_backed);
        if (space.refused_releases == refused) {
          FUZZ_CHECK(got >= std::min<size_t>(desired, free_backed),
                     "SubRelease(%lu) released %lu of %zu free backed pages", (unsigned long)desired,
                     (unsigned long)got, free_backed);
        }
        check_all("SubRelease");
        break;
      }
      default: {  // the OS refuses the next release(s), or free the newest run (LIFO)
        if (refusals && in.ConsumeBool()) {
          space.fail_releases = in.ConsumeIntegralInRange<int>(1, 3);
          break;
        }
        if (allocs.empty()) break;
        Alloc a = allocs.back();
        allocs.pop_back();
        ModelPage& m = pool[a.hp];
        m.used.SetRange(a.index, a.n, false);
        bool empty = filler->Free(&m.tracker, FirstPageOf(kFirstHugePage + a.hp) + a.index, a.n);
        FUZZ_CHECK(empty == (m.Used() == 0), "Free (newest): empty %d", empty);
        if (empty) forget(m);
        check_all("Free (newest)");
        break;
      }
    }
  }
  // Free everything; every hugepage must come back empty.
  space.fail_releases = 0;
  while (!allocs.empty()) {
    Alloc a = allocs.back();
    allocs.pop_back();
    ModelPage& m = pool[a.hp];
    m.used.SetRange(a.index, a.n, false);
    bool empty = filler->Free(&m.tracker, FirstPageOf(kFirstHugePage + a.hp) + a.index, a.n);
    FUZZ_CHECK(empty == (m.Used() == 0), "final Free: empty %d", empty);
    if (empty) forget(m);
  }
  check_all("freeing everything");
  FillerStats s = filler->Stats();
  FUZZ_CHECK(s.hugepages == 0 && s.free_pages == 0 && s.released_pages == 0, "filler not empty at the end");
  return 0;
}
