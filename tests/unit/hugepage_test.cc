// Filler, hugepage cache, region and the hugepage-aware allocator on a fake
// page source and a fake clock.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <vector>

#include "hugepage/huge_cache.h"
#include "hugepage/huge_page_aware_allocator.h"
#include "hugepage/huge_page_filler.h"
#include "hugepage/huge_region.h"
#include "tests/unit/test_support.h"

namespace jsmalloc {
namespace {

uint64_t g_now = 0;
uint64_t FakeClock() { return g_now; }
constexpr uint64_t kSec = 1000000000;

// Address space for the filler and region tests that do not need a cache.
HugePageId MapHugePages(size_t n) {
  void* p = os::MapAligned(n * kHugePageSize, kHugePageSize, nullptr);
  return reinterpret_cast<uintptr_t>(p) >> kHugePageShift;
}

TEST(BitmapTest, RunsAndBestFit) {
  Bitmap<300> b;
  b.SetRange(10, 5);
  b.SetRange(60, 70);
  EXPECT_EQ(b.CountSet(0, 300), 75u);
  EXPECT_EQ(b.LongestFreeRun(300), 170u);  // 130..299
  size_t longest;
  EXPECT_EQ(b.FindBestFit(8, 300, &longest), 0u) << "the 10-page run at 0 is the best fit";
  EXPECT_EQ(b.FindBestFit(20, 300, nullptr), 15u) << "45 pages at 15";
  EXPECT_EQ(b.FindBestFit(100, 300, nullptr), 130u);
  EXPECT_EQ(b.FindBestFit(171, 300, nullptr), 300u) << "none";
  b.ClearRange(60, 70);
  EXPECT_EQ(b.LongestFreeRun(300), 285u);
}

TEST(HugePageFillerTest, PacksIntoFullestHugepageAndEmptiesOut) {
  testing::FakePageSource source;
  HugePageFiller filler(&source);
  HugePageId base = MapHugePages(2);
  PageTracker a, b;
  a.Init(base, false);
  b.Init(base + 1, false);
  PageId pa = filler.AllocFromNew(&a, kPagesPerHugePage / 2);
  PageId pb = filler.AllocFromNew(&b, 1);
  EXPECT_EQ(HugePageOf(pa), base);
  EXPECT_EQ(HugePageOf(pb), base + 1);
  // The next small allocation goes to the fuller hugepage `a`.
  PageId p;
  Length rel;
  EXPECT_EQ(filler.TryAlloc(1, &p, &rel), &a);
  EXPECT_EQ(HugePageOf(p), base);
  FillerStats s = filler.Stats();
  EXPECT_EQ(s.hugepages, 2u);
  EXPECT_EQ(s.used_pages, kPagesPerHugePage / 2 + 2);
  EXPECT_EQ(s.free_pages, 2 * kPagesPerHugePage - s.used_pages);
  // Freeing everything in `b` hands the hugepage back.
  EXPECT_TRUE(filler.Free(&b, pb, 1));
  EXPECT_FALSE(filler.Free(&a, p, 1));
  EXPECT_EQ(filler.Stats().hugepages, 1u);
  EXPECT_TRUE(filler.Free(&a, pa, kPagesPerHugePage / 2));
  EXPECT_EQ(filler.Stats().hugepages, 0u);
  EXPECT_EQ(filler.free_backed_pages(), 0u);
}

TEST(HugePageFillerTest, SubreleaseBreaksLeastUsedFirstAndIsAccounted) {
  if (kPagesPerHugePage < 8) GTEST_SKIP() << "needs >= 8 pages per hugepage (this build: " << kPagesPerHugePage << ")";
  testing::FakePageSource source;
  HugePageFiller filler(&source);
  HugePageId base = MapHugePages(2);
  PageTracker busy, light;
  busy.Init(base, false);
  light.Init(base + 1, false);
  filler.AllocFromNew(&busy, kPagesPerHugePage - 2);
  PageId lp = filler.AllocFromNew(&light, 2);
  Length got = filler.SubRelease(4);
  EXPECT_EQ(got, kPagesPerHugePage - 2) << "releases the whole free run of the lightly used hugepage";
  EXPECT_EQ(source.released_bytes.load(), got << kPageShift);
  FillerStats s = filler.Stats();
  EXPECT_EQ(s.broken, 1u);
  EXPECT_EQ(s.released_pages, got);
  EXPECT_TRUE(light.broken());
  EXPECT_FALSE(busy.broken());
  // Allocating into released pages takes them back.
  PageId p;
  Length was_released = 0;
  PageTracker* t = filler.TryAlloc(kPagesPerHugePage - 2, &p, &was_released);
  EXPECT_EQ(t, &light);
  EXPECT_EQ(was_released, kPagesPerHugePage - 2);
  EXPECT_EQ(filler.Stats().released_pages, 0u);
  filler.Free(&light, p, kPagesPerHugePage - 2);
  filler.Free(&light, lp, 2);
}

// khugepaged (max_ptes_none > 0) would collapse a subreleased hugepage and
// fault its released pages back in: the filler advises it MADV_NOHUGEPAGE
// before the first release, and MADV_HUGEPAGE once no page is released.
TEST(HugePageFillerTest, KhugepagedGuardAdvisesBeforeSubreleaseAndRestoresWhenWhole) {
  if (kPagesPerHugePage < 8) GTEST_SKIP() << "needs >= 8 pages per hugepage (this build: " << kPagesPerHugePage << ")";
  testing::FakePageSource source;
  source.logging = true;
  HugePageFiller filler(&source, /*guard_khugepaged=*/true);
  HugePageId base = MapHugePages(2);
  PageTracker busy, light;
  busy.Init(base, false);
  light.Init(base + 1, false);
  filler.AllocFromNew(&busy, kPagesPerHugePage);  // full: nothing to release there
  PageId lp = filler.AllocFromNew(&light, 2);
  ASSERT_EQ(filler.SubRelease(4), kPagesPerHugePage - 2);
  void* light_start = HugePageStart(light.hugepage());
  ASSERT_GE(source.events.size(), 2u);
  EXPECT_EQ(source.events[0].what, 'N') << "advice first";
  EXPECT_EQ(source.events[0].ptr, light_start);
  EXPECT_EQ(source.events[1].what, 'R') << "then the release";
  EXPECT_TRUE(light.no_thp());
  EXPECT_FALSE(busy.no_thp());
  EXPECT_EQ(filler.Stats().no_thp, 1u);
  // A second subrelease of the same hugepage does not advise again.
  source.events.clear();
  PageId p;
  Length was_released;
  ASSERT_EQ(filler.TryAlloc(1, &p, &was_released), &light);
  filler.Free(&light, p, 1);
  filler.SubRelease(kPagesPerHugePage);
  for (const auto& e : source.events) EXPECT_NE(e.what, 'N');
  // Taking back every released page makes the hugepage whole: advice lifted.
  source.events.clear();
  ASSERT_EQ(filler.TryAlloc(kPagesPerHugePage - 2, &p, &was_released), &light);
  EXPECT_EQ(was_released, kPagesPerHugePage - 2);
  ASSERT_EQ(source.events.size(), 1u);
  EXPECT_EQ(source.events[0].what, 'H');
  EXPECT_FALSE(light.no_thp());
  EXPECT_EQ(filler.Stats().no_thp, 0u);
  // A hugepage that empties while advised: ForgetTracker lifts it.
  filler.Free(&light, p, kPagesPerHugePage - 2);
  filler.SubRelease(kPagesPerHugePage);
  EXPECT_TRUE(light.no_thp());
  source.events.clear();
  ASSERT_TRUE(filler.Free(&light, lp, 2));
  filler.ForgetTracker(&light);
  ASSERT_EQ(source.events.size(), 1u);
  EXPECT_EQ(source.events[0].what, 'H');
  EXPECT_EQ(filler.Stats().no_thp, 0u);
  // The kernel refusing the advice: the release still happens, counted.
  source.advice_ok = false;
  filler.Free(&busy, FirstPageOf(busy.hugepage()), 4);
  EXPECT_EQ(filler.SubRelease(kPagesPerHugePage), 4u);
  EXPECT_FALSE(busy.no_thp());
  EXPECT_EQ(filler.Stats().no_thp_refused, 1u);
  // Without the guard (max_ptes_none 0, THP off) no advice at all.
  testing::FakePageSource quiet;
  HugePageFiller plain(&quiet, /*guard_khugepaged=*/false);
  PageTracker t;
  t.Init(MapHugePages(1), false);
  plain.AllocFromNew(&t, 1);
  EXPECT_EQ(plain.SubRelease(kPagesPerHugePage), kPagesPerHugePage - 1);
  EXPECT_EQ(quiet.allow_calls.load() + quiet.disallow_calls.load(), 0u);
}

// The demand-driven subrelease takes only pages free for a whole epoch
// (since the last MarkIdle); pages freed, or taken and freed again, since
// then stay backed.
TEST(HugePageFillerTest, IdleSubreleaseTakesOnlyPagesFreeForAWholeEpoch) {
  if (kPagesPerHugePage < 8) GTEST_SKIP() << "needs >= 8 pages per hugepage (this build: " << kPagesPerHugePage << ")";
  constexpr Length kQ = kPagesPerHugePage / 4;
  testing::FakePageSource source;
  HugePageFiller filler(&source);
  PageTracker t;
  t.Init(MapHugePages(1), false);
  PageId first = filler.AllocFromNew(&t, 2 * kQ);  // the first half used
  filler.MarkIdle();                               // the second half idle
  filler.Free(&t, first, kQ);                      // the first quarter free, not idle yet
  // A run longer than that hole comes from the idle half: busy again.
  PageId p;
  Length was_released;
  ASSERT_EQ(filler.TryAlloc(kQ + 1, &p, &was_released), &t);
  ASSERT_EQ(p - FirstPageOf(t.hugepage()), 2 * kQ);
  filler.Free(&t, p, kQ + 1);  // freed again: not idle until the next MarkIdle
  Length got = filler.SubReleaseIdle(kPagesPerHugePage);
  EXPECT_EQ(got, kPagesPerHugePage - 2 * kQ - (kQ + 1)) << "only what stayed free since MarkIdle";
  EXPECT_EQ(t.released(), got);
  EXPECT_EQ(filler.free_backed_pages(), kQ + kQ + 1);
  // The next epoch: what is free and backed now is idle; at most `desired`.
  filler.MarkIdle();
  EXPECT_EQ(filler.SubReleaseIdle(1), 1u);
  EXPECT_EQ(filler.SubReleaseIdle(kPagesPerHugePage), kQ + kQ + 1 - 1) << "the rest of what was free at MarkIdle";
  EXPECT_EQ(filler.free_backed_pages(), 0u);
  EXPECT_TRUE(filler.Free(&t, first + kQ, kQ)) << "the last run: the hugepage leaves the filler";
}

TEST(HugeCacheTest, ReusesBackedFirstGrowsAndCoalesces) {
  testing::FakePageSource source;
  g_now = 0;
  HugeCache cache(&source, FakeClock, 8, kSec, true);
  HugePageId a, b;
  size_t backed;
  ASSERT_TRUE(cache.Get(3, &a, &backed));
  EXPECT_EQ(backed, 0u) << "fresh address space";
  EXPECT_EQ(cache.Stats().mapped_hugepages, 8u);
  ASSERT_TRUE(cache.Get(2, &b, &backed));
  cache.Put(a, 3, true);
  HugePageId c;
  ASSERT_TRUE(cache.Get(2, &c, &backed));
  EXPECT_EQ(backed, 2u) << "a backed range is preferred";
  EXPECT_EQ(c, a);
  cache.Put(c, 2, true);
  cache.Put(b, 2, true);
  HugeCacheStats s = cache.Stats();
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.backed_free, 5u);
  EXPECT_EQ(s.unbacked_free, 3u);
  EXPECT_EQ(s.free_ranges, 2u) << "backed 5 coalesced, unbacked 3 apart";
  ASSERT_TRUE(cache.Get(20, &c, &backed)) << "grows for a request larger than any range";
  EXPECT_GE(cache.Stats().mapped_hugepages, 28u);
  cache.Put(c, 20, false);
}

// Address space only (the cache never touches its memory): maps at the hint
// when it is the end of the last mapping, else a hugepage further on.
class FakeAddressSpace final : public PageSource {
 public:
  void* Map(size_t bytes, size_t align, void* hint, bool) override {
    uintptr_t at = reinterpret_cast<uintptr_t>(hint) == next_ ? next_ : next_ + kHugePageSize;
    at = (at + align - 1) & ~(uintptr_t{align} - 1);
    next_ = at + bytes;
    return reinterpret_cast<void*>(at);
  }
  bool Release(void*, size_t bytes) override {
    released += bytes;
    return true;
  }
  size_t released = 0;

 private:
  uintptr_t next_ = uintptr_t{0x5500} << 32;
};

// A request no backed range holds takes the window with the most backed
// hugepages across adjacent backed and unbacked ranges, and growth extends
// the free stretch at the top of the address space.
TEST(HugeCacheTest, TakesTheWindowWithMostBackedAndExtendsTheTop) {
  FakeAddressSpace space;
  g_now = 0;
  HugeCache cache(&space, FakeClock, 4, kSec, true);
  HugePageId a, b, c;
  size_t backed;
  ASSERT_TRUE(cache.Get(8, &a, &backed));
  EXPECT_EQ(backed, 0u);
  cache.Put(a, 2, false);
  cache.Put(a + 2, 3, true);
  cache.Put(a + 5, 3, false);
  ASSERT_TRUE(cache.Get(5, &b, &backed));
  EXPECT_EQ(backed, 3u) << "the 3 backed hugepages and 2 next to them";
  EXPECT_EQ(b, a) << "lowest of the windows holding all 3";
  HugeCacheStats s = cache.Stats();
  EXPECT_EQ(s.mapped_hugepages, 8u) << "no growth";
  EXPECT_EQ(s.backed_free, 0u);
  EXPECT_EQ(s.unbacked_free, 3u);
  EXPECT_EQ(s.free_ranges, 1u);
  EXPECT_EQ(s.misses, 2u);
  // Free now: a..a+4 backed, a+5..a+7 unbacked, at the top of the address
  // space. 10 hugepages: 2 more mapped right after (the minimum growth of 4)
  // make the stretch long enough.
  cache.Put(b, 5, true);
  ASSERT_TRUE(cache.Get(10, &c, &backed));
  EXPECT_EQ(c, a);
  EXPECT_EQ(backed, 5u);
  s = cache.Stats();
  EXPECT_EQ(s.mapped_hugepages, 12u) << "grown by 4 at the top, not by 10 elsewhere";
  EXPECT_EQ(s.unbacked_free, 2u);
  EXPECT_EQ(s.backed_free, 0u);
  // A backed range that holds a request is taken whole, as before.
  cache.Put(c, 10, true);
  HugePageId d;
  ASSERT_TRUE(cache.Get(3, &d, &backed));
  EXPECT_EQ(backed, 3u);
  EXPECT_EQ(d, a);
  cache.Put(d, 3, true);
  EXPECT_EQ(cache.Stats().in_use, 0u);
  EXPECT_EQ(space.released, 0u);
}

// Fresh hugepages handed out while backed ones stay free (too short for the
// request) release as many of those: the highest first.
TEST(HugeCacheTest, FreshHugepagesReleaseAsManyStrandedBackedOnes) {
  FakeAddressSpace space;
  g_now = 0;
  HugeCache cache(&space, FakeClock, 4, kSec, true);
  HugePageId a, c;
  size_t backed;
  ASSERT_TRUE(cache.Get(8, &a, &backed));
  cache.Put(a, 2, true);      // a, a+1 backed
  cache.Put(a + 3, 2, true);  // a+3, a+4 backed; a+2 and a+5.. stay in use
  ASSERT_TRUE(cache.Get(3, &c, &backed));
  EXPECT_EQ(backed, 0u);
  EXPECT_EQ(c, a + 8) << "grown (the free stretch at the top is in use)";
  EXPECT_EQ(space.released, 3 * kHugePageSize);
  HugeCacheStats s = cache.Stats();
  EXPECT_EQ(s.backed_free, 1u) << "a stays backed; a+1, a+3, a+4 released";
  EXPECT_EQ(s.unbacked_free, 4u);
  EXPECT_EQ(s.released_hugepages, 3u);
  HugePageId d;
  ASSERT_TRUE(cache.Get(1, &d, &backed));
  EXPECT_EQ(d, a);
  EXPECT_EQ(backed, 1u);
}

TEST(HugeCacheTest, DemandPolicyKeepsRecentPeakAndReleasesTheRest) {
  testing::FakePageSource source;
  g_now = 100 * kSec;
  HugeCache cache(&source, FakeClock, 64, kSec, true);
  std::vector<HugePageId> got;
  size_t backed;
  for (int i = 0; i < 40; ++i) {
    HugePageId h;
    ASSERT_TRUE(cache.Get(1, &h, &backed));
    got.push_back(h);
  }
  for (int i = 0; i < 30; ++i) cache.Put(got[static_cast<size_t>(i)], 1, true);
  // Within the window, the peak (40) is remembered: nothing is released.
  g_now += kSec;
  EXPECT_EQ(cache.ReleaseExcess(), 0u);
  EXPECT_EQ(cache.Stats().backed_free, 30u);
  // After the window passes with demand at 10, the 30 spare ones go.
  g_now += (HugeCache::kEpochs + 1) * kSec;
  EXPECT_EQ(cache.ReleaseExcess(), 30u);
  EXPECT_EQ(cache.Stats().backed_free, 0u);
  EXPECT_EQ(source.released_bytes.load(), 30 * kHugePageSize);
  EXPECT_EQ(cache.ReleaseExcess(), 0u) << "at most once per epoch";
  for (int i = 30; i < 40; ++i) cache.Put(got[static_cast<size_t>(i)], 1, true);
}

TEST(HugeRegionTest, PacksAndReleasesHugepagesUnusedForASweep) {
  testing::FakePageSource source;
  HugePageId base = MapHugePages(16);
  HugeRegion* r = new HugeRegion();
  r->Init(base, 16, &source);
  const Length big = kPagesPerHugePage + kPagesPerHugePage / 2;  // 1.5 hugepages
  PageId a, b;
  size_t nb;
  ASSERT_TRUE(r->Alloc(big, &a, &nb));
  EXPECT_EQ(nb, 2u);
  ASSERT_TRUE(r->Alloc(big, &b, &nb));
  EXPECT_EQ(b, a + big) << "packed back to back";
  EXPECT_EQ(nb, 1u) << "shares the second hugepage";
  RegionStats s = r->Stats();
  EXPECT_EQ(s.backed_hugepages, 3u);
  EXPECT_EQ(s.used_pages, 2 * big);
  r->Free(a, big);
  EXPECT_EQ(source.released_bytes.load(), 0u) << "unused hugepages stay backed for reuse";
  EXPECT_EQ(r->ReleaseIdle(false), 0u) << "the first sweep only marks the unused hugepage";
  EXPECT_EQ(r->ReleaseIdle(false), 1u) << "only the first hugepage is wholly unused";
  EXPECT_EQ(source.released_bytes.load(), kHugePageSize);
  // Reused before the next sweep: not released.
  ASSERT_TRUE(r->Alloc(big, &a, &nb));
  EXPECT_EQ(nb, 1u) << "the released hugepage is backed again";
  r->Free(a, big);
  r->Free(b, big);
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(r->ReleaseIdle(true), 3u) << "all unused hugepages when memory must go back";
  EXPECT_EQ(r->Stats().backed_hugepages, 0u);
  delete r;
}

class HugePageAwareTest : public ::testing::Test {
 protected:
  HugePageAwareTest() : pagemap_(testing::NewPageMap()) { Make([](HugePageAwareOptions*) {}); }
  // Rebuilds the allocator with the test's options changed by `f`.
  template <typename F>
  void Make(F f) {
    g_now = 1000 * kSec;
    HugePageAwareOptions o;
    o.clock = FakeClock;
    o.region_hugepages = 32;
    o.cache_grow_hugepages = 16;
    f(&o);
    hpaa_ = std::make_unique<HugePageAwareAllocator>(pagemap_.get(), &source_, GlobalArena(), o);
  }
  testing::FakePageSource source_;
  std::unique_ptr<PageMap> pagemap_;
  std::unique_ptr<HugePageAwareAllocator> hpaa_;
};

// Large allocations on base pages (the default): whole hugepages of their
// own, rounded up, from address space mapped for base pages; spans of small
// objects from address space mapped for transparent hugepages.
TEST_F(HugePageAwareTest, RoutesBySizeWithLargeAllocationsOnBasePages) {
  Span* small = hpaa_->New(3);
  Span* whole = hpaa_->New(2 * kPagesPerHugePage);
  Span* odd = hpaa_->New(kPagesPerHugePage + 1);
  Span* big = hpaa_->New(32 * kPagesPerHugePage / 4 + kPagesPerHugePage + 1);
  ASSERT_TRUE(small && whole && odd && big);
  EXPECT_EQ(small->origin, Span::kFromFiller);
  EXPECT_EQ(source_.DenseAt(small->start()), 1);
  for (Span* s : {whole, odd, big}) {
    EXPECT_EQ(s->origin, Span::kFromCache);
    EXPECT_EQ(s->first_page % kPagesPerHugePage, 0u);
    EXPECT_EQ(source_.DenseAt(s->start()), 0) << "large allocation from base-page memory";
  }
  EXPECT_EQ(odd->num_pages, kPagesPerHugePage + 1) << "the span is what was asked; the rest is slack";
  const Length large = HugePageAwareAllocator::kMaxObjectSpanPages + 1;
  Span* under = large < kPagesPerHugePage ? hpaa_->New(large) : nullptr;
  if (under != nullptr) EXPECT_EQ(source_.DenseAt(under->start()), 0) << "the large-allocation filler too";
  HugePageStats h = hpaa_->HugeStats();
  EXPECT_EQ(h.filler.donated, 0u);
  EXPECT_EQ(h.region_count, 0u);
  EXPECT_EQ(h.large_hugepages, 2u + 2u + HugePagesFor(big->num_pages));
  BackendStats b = hpaa_->Stats();
  EXPECT_EQ(b.free_bytes + b.unmapped_bytes + b.in_use_bytes, b.system_bytes) << "slack counted as not backed";
  for (Span* s : {small, whole, odd, big, under}) {
    if (s != nullptr) hpaa_->Delete(s);
  }
  b = hpaa_->Stats();
  EXPECT_EQ(b.in_use_bytes, 0u);
  EXPECT_EQ(b.free_bytes + b.unmapped_bytes, b.system_bytes) << "every byte accounted";
  EXPECT_EQ(hpaa_->HugeStats().cache.in_use, 0u);
}

// With large_pages=huge: everything on hugepages from the start, regions and
// donated tails for sizes that are not whole hugepages.
TEST_F(HugePageAwareTest, RoutesBySize) {
  Make([](HugePageAwareOptions* o) { o->sparse_large = false; });
  Span* small = hpaa_->New(3);
  Span* whole = hpaa_->New(2 * kPagesPerHugePage);
  Span* region = hpaa_->New(kPagesPerHugePage + 1);
  Span* donate = hpaa_->New(32 * kPagesPerHugePage / 4 + kPagesPerHugePage + 1);  // > region/4
  ASSERT_TRUE(small && whole && region && donate);
  EXPECT_EQ(small->origin, Span::kFromFiller);
  EXPECT_EQ(whole->origin, Span::kFromCache);
  EXPECT_EQ(whole->first_page % kPagesPerHugePage, 0u);
  EXPECT_EQ(region->origin, Span::kFromRegion);
  EXPECT_EQ(donate->origin, Span::kFromCacheDonated);
  HugePageStats h = hpaa_->HugeStats();
  EXPECT_EQ(h.filler.donated, 1u) << "the tail of the donating allocation";
  EXPECT_EQ(h.region_count, 1u);
  // A small allocation may land in the donated tail.
  for (Span* s : {small, whole, region, donate}) {
    // Spans of small objects map every page; a large allocation's span only
    // its first and last (it is looked up by its start), interior pages null.
    Length last = s->first_page + s->num_pages - 1;
    EXPECT_EQ(pagemap_->Get(s->first_page), s);
    EXPECT_EQ(pagemap_->Get(last), s);
    bool all_pages = s->num_pages <= HugePageAwareAllocator::kMaxObjectSpanPages;
    for (Length i = 1; i + 1 < s->num_pages; i += 17) {
      EXPECT_EQ(pagemap_->Get(s->first_page + i), all_pages ? s : nullptr);
    }
    memset(s->start(), 1, s->bytes());
  }
  for (Span* s : {small, whole, region, donate}) hpaa_->Delete(s);
  BackendStats b = hpaa_->Stats();
  EXPECT_EQ(b.in_use_bytes, 0u);
  EXPECT_EQ(b.free_bytes + b.unmapped_bytes, b.system_bytes) << "every byte accounted";
  h = hpaa_->HugeStats();
  EXPECT_EQ(h.filler.hugepages, 0u);
  EXPECT_EQ(h.region_count, 0u);
  EXPECT_EQ(h.cache.in_use, 0u);
}

// Large allocations under a hugepage and spans of small objects never share
// a hugepage (HugePageAwareAllocator::NewLocked says why).
TEST_F(HugePageAwareTest, LargeAllocationsAndSmallSpansUseSeparateHugepages) {
  const Length large = HugePageAwareAllocator::kMaxObjectSpanPages + 1;
  if (large >= kPagesPerHugePage) GTEST_SKIP() << "no large allocation fits in a hugepage in this build";
  std::vector<Span*> spans;
  std::set<HugePageId> small_hps, large_hps;
  for (int i = 0; i < 40; ++i) {
    Span* s = hpaa_->New(i % 2 == 0 ? 1 + i % 3 : large);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->origin, Span::kFromFiller);
    auto& set = i % 2 == 0 ? small_hps : large_hps;
    for (PageId p = s->first_page; p <= s->last_page(); ++p) set.insert(HugePageOf(p));
    spans.push_back(s);
  }
  Span* aligned = hpaa_->NewAligned(large, 4);
  ASSERT_NE(aligned, nullptr);
  EXPECT_EQ(aligned->first_page % 4, 0u);
  large_hps.insert(HugePageOf(aligned->first_page));
  spans.push_back(aligned);
  for (HugePageId h : small_hps) EXPECT_EQ(large_hps.count(h), 0u) << "hugepage " << h << " is shared";
  HugePageStats st = hpaa_->HugeStats();
  EXPECT_EQ(st.sparse_filler.hugepages, large_hps.size());
  EXPECT_EQ(st.filler.hugepages, large_hps.size() + small_hps.size()) << "filler stats are both fillers";
  for (Span* s : spans) hpaa_->Delete(s);
  EXPECT_EQ(hpaa_->Stats().in_use_bytes, 0u);
  EXPECT_EQ(hpaa_->HugeStats().filler.hugepages, 0u);
}

TEST_F(HugePageAwareTest, AlignedAllocations) {
  for (Length align : {Length{2}, Length{16}, kPagesPerHugePage, 4 * kPagesPerHugePage}) {
    if (align < 2) continue;
    for (Length n : {Length{1}, Length{5}, kPagesPerHugePage + 3}) {
      Span* s = hpaa_->NewAligned(n, align);
      ASSERT_NE(s, nullptr);
      EXPECT_EQ(s->first_page % align, 0u) << "n=" << n << " align=" << align;
      EXPECT_GE(s->num_pages, n);
      hpaa_->Delete(s);
    }
  }
  EXPECT_EQ(hpaa_->Stats().in_use_bytes, 0u);
}

TEST_F(HugePageAwareTest, ReleaseReturnsCacheFirstThenSubreleases) {
  // Large frees stay backed here (LargeFreesAboveTheLargestYetAreReleasedAtOnce).
  Make([](HugePageAwareOptions* o) { o->release_growing_large = false; });
  std::vector<Span*> smalls;
  for (int i = 0; i < 4 * static_cast<int>(kPagesPerHugePage); ++i) smalls.push_back(hpaa_->New(1));
  Span* big = hpaa_->New(4 * kPagesPerHugePage);
  hpaa_->Delete(big);
  // Free every other small span: hugepages stay partly used.
  for (size_t i = 0; i < smalls.size(); i += 2) hpaa_->Delete(smalls[i]);
  size_t free_before = hpaa_->Stats().free_bytes;
  size_t got = hpaa_->ReleaseAtLeast(4 * kHugePageSize);
  EXPECT_GE(got, 4 * kHugePageSize);
  EXPECT_EQ(hpaa_->HugeStats().filler.broken, 0u) << "whole free hugepages were enough";
  got = hpaa_->ReleaseAtLeast(free_before);
  HugePageStats h = hpaa_->HugeStats();
  if (kPagesPerHugePage > 1) EXPECT_GT(h.filler.broken, 0u) << "then subrelease";
  EXPECT_EQ(hpaa_->Stats().free_bytes, 0u);
  for (size_t i = 1; i < smalls.size(); i += 2) hpaa_->Delete(smalls[i]);
  EXPECT_EQ(hpaa_->Stats().in_use_bytes, 0u);
}

// release_growing_large: a freed large allocation larger than any freed
// before goes back to the OS at once (a buffer growing by doubling leaves
// nothing backed behind it); one no larger stays backed for reuse.
TEST_F(HugePageAwareTest, LargeFreesAboveTheLargestYetAreReleasedAtOnce) {
  const Length large = HugePageAwareAllocator::kMaxObjectSpanPages + 1;
  size_t expect_releases = 0;
  Span* keep = nullptr;
  size_t before;
  // In the large-allocation filler, beside a live one: only its own pages
  // go (where two such allocations fit in a hugepage: not with 256 KiB pages).
  if (large * 2 < kPagesPerHugePage) {
    keep = hpaa_->New(large);
    Span* a = hpaa_->New(large);
    ASSERT_EQ(a->origin, Span::kFromFiller);
    before = source_.released_bytes.load();
    hpaa_->Delete(a);
    EXPECT_EQ(source_.released_bytes.load() - before, large << kPageShift) << "its pages, and only those";
    HugePageStats h = hpaa_->HugeStats();
    EXPECT_EQ(h.growth_releases, 1u);
    EXPECT_EQ(h.growth_threshold_bytes, large << kPageShift);
    EXPECT_EQ(h.sparse_filler.released_pages, large);
    // As large again: kept backed (the churn of similar buffers pays nothing).
    Span* b = hpaa_->New(large);
    before = source_.released_bytes.load();
    hpaa_->Delete(b);
    EXPECT_EQ(source_.released_bytes.load(), before) << "no larger than the largest freed: kept";
    EXPECT_EQ(hpaa_->HugeStats().sparse_filler.free_pages, kPagesPerHugePage - large);
    expect_releases = 1;
  }
  // Whole hugepages: the growth goes on, each new largest is released.
  for (Length n : {2 * kPagesPerHugePage, 4 * kPagesPerHugePage, 3 * kPagesPerHugePage}) {
    Span* s = hpaa_->New(n);
    ASSERT_EQ(s->origin, Span::kFromCache);
    before = source_.released_bytes.load();
    hpaa_->Delete(s);
    const size_t released = source_.released_bytes.load() - before;
    if (n == 3 * kPagesPerHugePage) {
      EXPECT_EQ(released, 0u) << "smaller than 4 hugepages: kept";
    } else {
      EXPECT_EQ(released, n << kPageShift);
      ++expect_releases;
    }
  }
  HugePageStats h = hpaa_->HugeStats();
  EXPECT_EQ(h.growth_releases, expect_releases);
  EXPECT_EQ(h.growth_threshold_bytes, 4 * kHugePageSize);
  // Spans of small objects never are.
  Span* small = hpaa_->New(1);
  before = source_.released_bytes.load();
  hpaa_->Delete(small);
  EXPECT_EQ(source_.released_bytes.load(), before);
  if (keep != nullptr) hpaa_->Delete(keep);
  BackendStats st = hpaa_->Stats();
  EXPECT_EQ(st.in_use_bytes, 0u);
  EXPECT_EQ(st.free_bytes + st.unmapped_bytes, st.system_bytes) << "every byte accounted";
}

// Two buffers grown by doubling in turn (allocate twice the size, copy,
// free the old one), as a program's std::vector and std::string do, while
// the program keeps other large blocks (a hash table's buckets, a read
// buffer) allocated between the steps: those pin the holes apart, so the
// freed sizes never coalesce into the next one. What the heap keeps free
// and backed must not grow with the sizes the buffers went through.
TEST_F(HugePageAwareTest, BuffersGrownByDoublingLeaveNothingBackedBehind) {
  size_t max_free[2] = {0, 0};
  for (bool on : {true, false}) {
    Make([&](HugePageAwareOptions* o) { o->release_growing_large = on; });
    const Length pin_pages = HugePageAwareAllocator::kMaxObjectSpanPages + 1;
    Length n = pin_pages;
    Span* cur[2] = {hpaa_->New(n), hpaa_->New(n)};
    std::vector<Span*> pins;
    while (n < 8 * kPagesPerHugePage) {
      for (Span*& c : cur) {
        Span* next = hpaa_->New(2 * n);
        ASSERT_NE(next, nullptr);
        hpaa_->Delete(c);
        c = next;
        pins.push_back(hpaa_->New(pin_pages));
        const size_t free_backed = hpaa_->Stats().free_bytes;
        if (free_backed > max_free[on]) max_free[on] = free_backed;
      }
      n *= 2;
    }
    for (Span* c : cur) hpaa_->Delete(c);
    for (Span* p : pins) hpaa_->Delete(p);
  }
  // What stays is the rest of the hugepage the pinned blocks share (the
  // filler counts its untouched pages as backed).
  EXPECT_LE(max_free[1], kHugePageSize) << "freed sizes kept backed while growing";
  EXPECT_GE(max_free[0], 4 * kHugePageSize) << "control: with the release off, the freed sizes stay backed";
  printf("most free and backed while two buffers double past 16 MiB: %.1f MiB, %.1f MiB without the release\n",
         static_cast<double>(max_free[1]) / 1048576, static_cast<double>(max_free[0]) / 1048576);
}

TEST_F(HugePageAwareTest, DoubleDeleteAborts) {
  Span* s = hpaa_->New(2);
  Span copy = *s;
  hpaa_->Delete(s);
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  copy.location = Span::kOnNormalFreelist;
  EXPECT_DEATH(hpaa_->Delete(&copy), "jsmalloc: double free");
}

// PromoteDense: a large allocation whose base pages are all resident has its
// hugepages collapsed, once; one found sparse is looked at again less and
// less often.
TEST_F(HugePageAwareTest, PromoteDenseCollapsesDenseLargeAllocationsOnce) {
  Span* dense = hpaa_->New(3 * kPagesPerHugePage);
  Span* odd = hpaa_->New(2 * kPagesPerHugePage + 5);  // its last hugepage is not whole
  ASSERT_TRUE(dense && odd);
  source_.resident_all = true;
  EXPECT_EQ(hpaa_->PromoteDense(1024), 0u) << "not before a whole cycle has passed";
  size_t collapsed = hpaa_->PromoteDense(1024);
  EXPECT_EQ(collapsed, 3u + 2u) << "every whole hugepage of both";
  EXPECT_EQ(source_.collapse_calls.load(), 5u);
  EXPECT_EQ(dense->promote, Span::kDense);
  for (int i = 0; i < 10; ++i) hpaa_->PromoteDense(1024);
  EXPECT_EQ(source_.collapse_calls.load(), 5u) << "a dense allocation is done";
  HugePageStats h = hpaa_->HugeStats();
  EXPECT_EQ(h.promoted_hugepages, 5u);
  EXPECT_EQ(h.promote_failures, 0u);
  hpaa_->Delete(dense);
  hpaa_->Delete(odd);
  EXPECT_EQ(hpaa_->Stats().in_use_bytes, 0u);
}

// The dense and the sparse caches share one RSS: fresh hugepages faulted in
// for one are matched by releasing backed free ones held by the other.
TEST_F(HugePageAwareTest, FreshHugepagesInOneCacheReleaseBackedOnesOfTheOther) {
  // Large frees stay backed here (LargeFreesAboveTheLargestYetAreReleasedAtOnce).
  Make([](HugePageAwareOptions* o) { o->release_growing_large = false; });
  Span* big = hpaa_->New(2 * kPagesPerHugePage);
  ASSERT_NE(big, nullptr);
  hpaa_->Delete(big);
  ASSERT_EQ(hpaa_->HugeStats().sparse_cache.backed_free, 2u);
  Span* small = hpaa_->New(3);  // the dense cache has nothing backed yet
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(hpaa_->HugeStats().dense_cache.in_use, 1u);
  EXPECT_EQ(hpaa_->HugeStats().sparse_cache.backed_free, 1u) << "one fresh dense hugepage, one sparse released";
  hpaa_->Delete(small);  // its hugepage goes back to the dense cache, backed
  ASSERT_EQ(hpaa_->HugeStats().dense_cache.backed_free, 1u);
  // Two hugepages: the sparse cache's one backed and a fresh one, matched by
  // the dense cache's backed one.
  big = hpaa_->New(2 * kPagesPerHugePage);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(hpaa_->HugeStats().sparse_cache.backed_free, 0u);
  EXPECT_EQ(hpaa_->HugeStats().dense_cache.backed_free, 0u) << "the dense cache gave back what the sparse one faulted";
  hpaa_->Delete(big);
}

TEST_F(HugePageAwareTest, PromoteDenseBacksOffFromSparseAllocations) {
  Span* sparse = hpaa_->New(4 * kPagesPerHugePage);
  ASSERT_NE(sparse, nullptr);
  source_.resident_none = true;
  for (int i = 0; i < 200; ++i) hpaa_->PromoteDense(1024);
  size_t checks = hpaa_->HugeStats().sparse_checks;
  // Back-off 1, 2, 4, ..., 64 cycles, then every 64: about 7 + 2 checks in 200.
  EXPECT_GE(checks, 5u);
  EXPECT_LE(checks, 12u);
  EXPECT_EQ(source_.collapse_calls.load(), 0u);
  // It fills up later: found at its next check.
  source_.resident_none = false;
  source_.resident_all = true;
  for (int i = 0; i < 65; ++i) hpaa_->PromoteDense(1024);
  EXPECT_EQ(source_.collapse_calls.load(), 4u);
  EXPECT_EQ(sparse->promote, Span::kDense);
  hpaa_->Delete(sparse);
}

TEST_F(HugePageAwareTest, FreeDuringPromotionIsParkedUntilTheCollapseEnds) {
  Span* s = hpaa_->New(2 * kPagesPerHugePage);
  Span* other = hpaa_->New(1);
  ASSERT_TRUE(s && other);
  void* start = s->start();
  source_.resident_all = true;
  hpaa_->PromoteDense(1024);  // the first cycle only ages it
  int frees = 0;
  source_.on_collapse = [&](void*) {
    // A free by another thread while the collapse runs outside the lock.
    if (frees++ == 0) hpaa_->Delete(s);
    EXPECT_EQ(pagemap_->Get(PageIdOf(start)), nullptr) << "freed at once for the program";
    EXPECT_EQ(hpaa_->HugeStats().cache.in_use, 3u) << "its hugepages not back in the cache yet";
  };
  EXPECT_EQ(hpaa_->PromoteDense(1024), 2u);
  source_.on_collapse = nullptr;
  HugePageStats h = hpaa_->HugeStats();
  EXPECT_EQ(h.cache.in_use, 1u) << "back once the collapse ended (the filler keeps one)";
  EXPECT_EQ(h.large_hugepages, 0u);
  BackendStats b = hpaa_->Stats();
  EXPECT_EQ(b.in_use_bytes, other->bytes());
  EXPECT_EQ(b.free_bytes + b.unmapped_bytes + b.in_use_bytes, b.system_bytes);
  // The hugepages are reused as any others.
  Span* again = hpaa_->New(2 * kPagesPerHugePage);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->start(), start);
  hpaa_->Delete(again);
  hpaa_->Delete(other);
}

TEST_F(HugePageAwareTest, PromoteDenseUnderThpAlwaysAllowsHugepagesFirst) {
  // Large frees stay backed here (LargeFreesAboveTheLargestYetAreReleasedAtOnce).
  Make([](HugePageAwareOptions* o) {
    o->sparse_nohugepage = true;
    o->release_growing_large = false;
  });
  Span* s = hpaa_->New(kPagesPerHugePage);
  ASSERT_NE(s, nullptr);
  source_.resident_all = true;
  source_.logging = true;
  void* start = s->start();
  hpaa_->PromoteDense(1024);
  hpaa_->PromoteDense(1024);
  hpaa_->Delete(s);
  source_.logging = false;
  std::string order;
  for (auto& e : source_.events) {
    if (e.ptr == start) order += e.what;
  }
  EXPECT_EQ(order, "HCN") << "MADV_HUGEPAGE, collapse, then MADV_NOHUGEPAGE when it goes back";
}

// Under THP "always" a span promoted only in part (a later hugepage still
// sparse) has the advice of its collapsed hugepages taken back when freed,
// and a hugepage the kernel refused to collapse is not left advised.
TEST_F(HugePageAwareTest, PartlyPromotedSpanGivesBackItsAdviceWhenFreed) {
  // Large frees stay backed here (LargeFreesAboveTheLargestYetAreReleasedAtOnce).
  Make([](HugePageAwareOptions* o) {
    o->sparse_nohugepage = true;
    o->release_growing_large = false;
  });
  Span* s = hpaa_->New(3 * kPagesPerHugePage);
  ASSERT_NE(s, nullptr);
  char* start = static_cast<char*>(s->start());
  source_.resident_all = true;
  source_.logging = true;
  hpaa_->PromoteDense(1024);  // ages it
  // The first hugepage is dense; the second is found sparse.
  source_.on_collapse = [&](void*) { source_.resident_all = false, source_.resident_none = true; };
  EXPECT_EQ(hpaa_->PromoteDense(1024), 1u);
  source_.on_collapse = nullptr;
  EXPECT_EQ(s->promote, Span::kUnchecked);
  hpaa_->Delete(s);
  std::string first, second, refused;
  for (auto& e : source_.events) {
    if (e.ptr == start) first += e.what;
    if (e.ptr == start + kHugePageSize) second += e.what;
  }
  EXPECT_EQ(first, "HCN") << "advised, collapsed, advice taken back with the free";
  EXPECT_EQ(second, "") << "never advised";
  source_.events.clear();
  // A hugepage the kernel refuses to collapse is advised back at once.
  Span* t = hpaa_->New(kPagesPerHugePage);
  ASSERT_NE(t, nullptr);
  char* t_start = static_cast<char*>(t->start());
  source_.resident_none = false;
  source_.resident_all = true;
  source_.collapse_ok = false;
  for (int i = 0; i < 3; ++i) hpaa_->PromoteDense(1024);
  source_.logging = false;
  for (auto& e : source_.events) {
    if (e.ptr == t_start) refused += e.what;
  }
  ASSERT_GE(refused.size(), 3u);
  EXPECT_EQ(refused.substr(0, 3), "HCN") << "a refused collapse leaves no advice behind";
  EXPECT_EQ(hpaa_->HugeStats().promote_failures, refused.size() / 3);
  hpaa_->Delete(t);
}

// Large allocations under a hugepage share hugepages in their own filler:
// kFit of kLarge pages each fit in one; kParts of kPart pages fill one
// exactly, where the build's page size allows it (0 otherwise).
constexpr Length kLarge = HugePageAwareAllocator::kMaxObjectSpanPages + 1;
constexpr int kFit = static_cast<int>(kPagesPerHugePage / kLarge);
constexpr int kParts = kPagesPerHugePage % 4 == 0 && kPagesPerHugePage / 4 >= kLarge   ? 4
                       : kPagesPerHugePage % 2 == 0 && kPagesPerHugePage / 2 >= kLarge ? 2
                                                                                       : 0;
constexpr Length kPart = kParts > 0 ? kPagesPerHugePage / kParts : 0;

// A hugepage of the large-allocation filler whose 2 MiB are all resident is
// collapsed, once; after a subrelease split it, again once it is whole.
TEST_F(HugePageAwareTest, PromoteDenseCollapsesResidentHugepagesOfTheLargeAllocationFiller) {
  if (kParts == 0) GTEST_SKIP() << "large allocations cannot fill a hugepage exactly with this page size";
  std::vector<Span*> spans;
  for (int i = 0; i < kParts; ++i) spans.push_back(hpaa_->New(kPart));
  Span* small = hpaa_->New(1);  // a span of small objects: its hugepage is not looked at
  ASSERT_TRUE(small && spans.back());
  ASSERT_EQ(hpaa_->HugeStats().sparse_filler.hugepages, 1u);
  ASSERT_EQ(HugePageOf(spans[0]->first_page), HugePageOf(spans.back()->first_page));
  char* hp = static_cast<char*>(HugePageStart(HugePageOf(spans[0]->first_page)));
  source_.resident_all = true;
  source_.logging = true;
  EXPECT_EQ(hpaa_->PromoteDense(1024), 0u) << "not before a whole cycle has passed";
  EXPECT_EQ(hpaa_->PromoteDense(1024), 1u);
  for (int i = 0; i < 10; ++i) hpaa_->PromoteDense(1024);
  EXPECT_EQ(source_.collapse_calls.load(), 1u) << "collapsed once";
  ASSERT_EQ(source_.events.size(), 1u);
  EXPECT_EQ(source_.events[0].what, 'C');
  EXPECT_EQ(source_.events[0].ptr, hp);
  // A subrelease splits it; not collapsed while pages of it are released.
  void* freed_at = spans.back()->start();
  hpaa_->Delete(spans.back());
  EXPECT_GE(hpaa_->SubRelease(~size_t{0}), kPart << kPageShift);
  for (int i = 0; i < 70; ++i) hpaa_->PromoteDense(1024);
  EXPECT_EQ(source_.collapse_calls.load(), 1u);
  // The released pages are in use again: whole, resident, collapsed again.
  spans.back() = hpaa_->New(kPart);
  ASSERT_EQ(spans.back()->start(), freed_at);
  EXPECT_EQ(hpaa_->HugeStats().sparse_filler.released_pages, 0u);
  for (int i = 0; i < 70; ++i) hpaa_->PromoteDense(1024);
  EXPECT_EQ(source_.collapse_calls.load(), 2u);
  EXPECT_EQ(hpaa_->HugeStats().promoted_hugepages, 2u);
  source_.logging = false;
  for (Span* s : spans) hpaa_->Delete(s);
  hpaa_->Delete(small);
  EXPECT_EQ(hpaa_->Stats().in_use_bytes, 0u);
}

// One found sparse is looked at less and less often; one that empties while
// it is collapsed outside the lock keeps its pages (no subrelease) and goes
// back to the cache when the collapse ends.
TEST_F(HugePageAwareTest, FillerHugepageEmptiedDuringItsCollapseGoesBackAfter) {
  if (kFit == 0) GTEST_SKIP() << "no large allocation fits in a hugepage in this build";
  std::vector<Span*> spans;
  for (int i = 0; i < kFit; ++i) spans.push_back(hpaa_->New(kLarge));
  ASSERT_NE(spans.back(), nullptr);
  void* start = spans[0]->start();
  source_.resident_none = true;
  for (int i = 0; i < 200; ++i) hpaa_->PromoteDense(1024);
  const size_t checks = hpaa_->HugeStats().sparse_checks;
  EXPECT_GE(checks, 5u);
  EXPECT_LE(checks, 12u) << "back-off 1, 2, 4, ..., 64 cycles";
  EXPECT_EQ(source_.collapse_calls.load(), 0u);
  source_.resident_none = false;
  source_.resident_all = true;
  size_t released_meanwhile = ~size_t{0};
  int calls = 0;
  source_.on_collapse = [&](void*) {
    if (calls++ != 0) return;
    // Frees by other threads, and a malloc_trim, while the collapse runs.
    hpaa_->Delete(spans[0]);
    released_meanwhile = hpaa_->SubRelease(~size_t{0});
    for (int i = 1; i < kFit; ++i) hpaa_->Delete(spans[i]);
    EXPECT_EQ(hpaa_->Stats().in_use_bytes, 0u) << "freed at once for the program";
    EXPECT_EQ(hpaa_->HugeStats().sparse_cache.in_use, 1u) << "its hugepage not back in the cache yet";
  };
  for (int i = 0; i < 65 && calls == 0; ++i) hpaa_->PromoteDense(1024);
  source_.on_collapse = nullptr;
  ASSERT_EQ(calls, 1);
  EXPECT_EQ(released_meanwhile, 0u) << "nothing of it released during the collapse";
  HugePageStats h = hpaa_->HugeStats();
  EXPECT_EQ(h.sparse_cache.in_use, 0u);
  EXPECT_EQ(h.sparse_cache.backed_free, 1u) << "back, backed, once the collapse ended";
  EXPECT_EQ(h.sparse_filler.hugepages, 0u);
  BackendStats b = hpaa_->Stats();
  EXPECT_EQ(b.free_bytes + b.unmapped_bytes, b.system_bytes) << "every byte accounted";
  Span* again = hpaa_->New(kLarge);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->start(), start) << "reused as any other";
  hpaa_->Delete(again);
}

// The khugepaged guard is for the hugepages of small objects: the large
// allocations' address space is never advised MADV_HUGEPAGE, not even after
// a subrelease (the guard would advise it when the hugepage is whole again).
TEST_F(HugePageAwareTest, LargeAllocationFillerIsNeverAdvisedForHugepages) {
  if (kFit == 0) GTEST_SKIP() << "no large allocation fits in a hugepage in this build";
  Make([](HugePageAwareOptions* o) {
    o->guard_khugepaged = true;
    o->promote_dense = false;
    o->release_growing_large = false;  // the subrelease below releases the freed one
  });
  std::vector<Span*> spans;
  for (int i = 0; i < kFit; ++i) spans.push_back(hpaa_->New(kLarge));
  ASSERT_NE(spans.back(), nullptr);
  // Free pages (one allocation's, and what no allocation fits in) released.
  hpaa_->Delete(spans.back());
  EXPECT_GT(hpaa_->SubRelease(~size_t{0}), 0u);
  spans.back() = hpaa_->New(kLarge);  // in use again
  for (Span* s : spans) hpaa_->Delete(s);
  EXPECT_EQ(source_.allow_calls.load(), 0u);
  EXPECT_EQ(source_.disallow_calls.load(), 0u);
  // The guard still protects the small objects' hugepages.
  Span* a = hpaa_->New(kPagesPerHugePage / 2);
  Span* b = hpaa_->New(1);
  ASSERT_TRUE(a && b);
  if (a->origin == Span::kFromFiller && HugePageOf(a->first_page) == HugePageOf(b->first_page)) {
    hpaa_->Delete(a);
    EXPECT_GT(hpaa_->SubRelease(~size_t{0}), 0u);
    EXPECT_EQ(source_.disallow_calls.load(), 1u);
  } else {
    hpaa_->Delete(a);
  }
  hpaa_->Delete(b);
}

TEST_F(HugePageAwareTest, NoPromotionWhenTurnedOffOrWithLargeHugepages) {
  for (int mode = 0; mode < 2; ++mode) {
    Make([&](HugePageAwareOptions* o) {
      if (mode == 0) o->promote_dense = false;
      else o->sparse_large = false;
    });
    Span* s = hpaa_->New(2 * kPagesPerHugePage);
    ASSERT_NE(s, nullptr);
    source_.resident_all = true;
    for (int i = 0; i < 5; ++i) EXPECT_EQ(hpaa_->PromoteDense(1024), 0u);
    hpaa_->Delete(s);
  }
  EXPECT_EQ(source_.collapse_calls.load(), 0u);
}

// Random operations against a model: no page handed out twice, all memory
// accounted, pagemap right, at the end everything back in the cache.
TEST_F(HugePageAwareTest, RandomOperationsAgainstModel) {
  std::mt19937_64 rng(99);
  std::map<PageId, Span*> live;
  std::vector<Span*> order;
  for (int step = 0; step < 6000; ++step) {
    uint64_t op = rng() % 16;
    if (op < 8 || order.empty()) {
      Length n;
      switch (rng() % 4) {
        case 0: n = 1 + rng() % 4; break;
        case 1: n = 1 + rng() % kPagesPerHugePage; break;
        case 2: n = kPagesPerHugePage * (1 + rng() % 3); break;
        default: n = 1 + rng() % (kPagesPerHugePage * 12); break;
      }
      Span* s = rng() % 10 == 0 ? hpaa_->NewAligned(n, Length{1} << (rng() % 4)) : hpaa_->New(n);
      ASSERT_NE(s, nullptr);
      auto next = live.lower_bound(s->first_page);
      if (next != live.end()) ASSERT_GT(next->first, s->last_page()) << "overlap at step " << step;
      if (next != live.begin()) ASSERT_LT(std::prev(next)->second->last_page(), s->first_page) << step;
      static_cast<char*>(s->start())[0] = 7;
      static_cast<char*>(s->start())[s->bytes() - 1] = 7;
      live[s->first_page] = s;
      order.push_back(s);
    } else if (op < 15) {
      size_t i = rng() % order.size();
      Span* s = order[i];
      order[i] = order.back();
      order.pop_back();
      live.erase(s->first_page);
      hpaa_->Delete(s);
    } else {
      if (rng() % 2) hpaa_->ReleaseAtLeast((rng() % 8) * kHugePageSize);
      else g_now += kSec * (1 + rng() % 20), hpaa_->ReleaseExcess();
    }
    if (step % 500 == 0) {
      BackendStats b = hpaa_->Stats();
      size_t in_use = 0;
      for (auto& [p, s] : live) in_use += s->bytes();
      ASSERT_EQ(b.in_use_bytes, in_use);
      ASSERT_EQ(b.free_bytes + b.unmapped_bytes + b.in_use_bytes, b.system_bytes)
          << "accounting at step " << step;
    }
  }
  for (Span* s : order) hpaa_->Delete(s);
  BackendStats b = hpaa_->Stats();
  EXPECT_EQ(b.in_use_bytes, 0u);
  EXPECT_EQ(b.free_bytes + b.unmapped_bytes, b.system_bytes);
}

}  // namespace
}  // namespace jsmalloc
