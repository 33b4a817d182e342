// Huge region (hugepage/huge_region.h) against a model of its pages (used or
// not) and hugepages (backed or not, unused at the last sweep or not).
// Operations: Alloc of runs up to the region's size (mostly one to four
// hugepages), Free of any live run, ReleaseIdle (sweep or all), with the OS
// refusing releases when the fuzzer says so. Checked:
//   - Alloc fails only when no free run is long enough, else takes the best
//     fit (shortest run that holds it, lowest address among equals) and
//     reports as newly backed exactly the hugepages that were not backed;
//   - ReleaseIdle releases exactly the hugepages the documented sweep rule
//     names (all unused backed ones, or those already unused at the previous
//     sweep), whole, never one in use, and marks the others;
//   - Stats(), longest_free(), used_pages(), empty(), UsedBytesIn() and
//     Contains() agree with the model.
#include <algorithm>
#include <memory>
#include <vector>

#include "hugepage/huge_region.h"
#include "tests/fuzz/fuzz_common.h"

namespace jsmalloc {
namespace {

constexpr Length kHP = kPagesPerHugePage;
constexpr HugePageId kFirst = (uintptr_t{0x3200} << 32) >> kHugePageShift;

struct Model {
  size_t hugepages;
  fuzz::BitVec used;            // per page
  std::vector<size_t> used_in;  // per hugepage
  std::vector<bool> backed;     // per hugepage
  std::vector<bool> idle;       // per hugepage: unused at the last sweep
  size_t used_total = 0;
  size_t released_total = 0;

  Length Limit() const { return hugepages * kHP; }
  size_t UsedIn(size_t h) const { return used_in[h]; }
  size_t Used() const { return used_total; }
  void SetRun(Length start, Length n, bool v) {
    for (Length i = start; i < start + n;) {
      size_t h = i / kHP;
      Length end = std::min<Length>(start + n, (h + 1) * kHP);
      if (v) used_in[h] += end - i;
      else used_in[h] -= end - i;
      i = end;
    }
    if (v) used_total += n;
    else used_total -= n;
    used.SetRange(start, n, v);
  }
  Length Longest() const { return used.LongestClearRun(); }
  Length BestFit(Length n) const { return used.BestFit(n); }
};

struct Run {
  Length index, n;
};

}  // namespace
}  // namespace jsmalloc

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jsmalloc;
  fuzz::Input in(data, size);
  fuzz::FakeSpace space(0, 0);  // the region never maps; it releases
  space.AddForeign(reinterpret_cast<uintptr_t>(HugePageStart(kFirst)), HugeRegion::kMaxHugePages * kHugePageSize);
  // Mostly small regions (fast), sometimes the largest.
  size_t hugepages = in.ConsumeIntegral<uint8_t>() >= 16
                         ? in.ConsumeIntegralInRange<size_t>(1, 24)
                         : in.ConsumeIntegralInRange<size_t>(1, HugeRegion::kMaxHugePages);
  auto region = std::make_unique<HugeRegion>();
  region->Init(kFirst, hugepages, &space);
  Model m{hugepages, fuzz::BitVec(hugepages * kHP), std::vector<size_t>(hugepages), std::vector<bool>(hugepages),
          std::vector<bool>(hugepages)};
  std::vector<Run> runs;
  std::vector<size_t> released_now;  // hugepage indexes released during the current call

  space.on_release = [&](uintptr_t a, size_t bytes) {
    FUZZ_CHECK(a % kHugePageSize == 0 && bytes == kHugePageSize, "region release of %#lx + %zu: not one hugepage",
               (unsigned long)a, bytes);
    HugePageId hp = a >> kHugePageShift;
    FUZZ_CHECK(hp >= kFirst && hp < kFirst + hugepages, "release outside the region");
    size_t h = hp - kFirst;
    FUZZ_CHECK(m.UsedIn(h) == 0, "released hugepage %zu with %zu pages in use", h, m.UsedIn(h));
    released_now.push_back(h);
  };

  auto check_all = [&](const char* after) {
    RegionStats s = region->Stats();
    size_t backed = 0;
    for (bool b : m.backed) backed += b ? 1 : 0;
    size_t used = m.Used();
    FUZZ_CHECK(s.hugepages == hugepages && s.backed_hugepages == backed && s.used_pages == used &&
                   s.free_backed_pages == backed * kHP - used && s.released_hugepages_total == m.released_total,
               "after %s: stats hugepages %zu backed %zu used %zu free-backed %zu released %zu; model %zu %zu %zu %zu",
               after, s.hugepages, s.backed_hugepages, s.used_pages, s.free_backed_pages, s.released_hugepages_total,
               hugepages, backed, used, m.released_total);
    FUZZ_CHECK(region->used_pages() == used && region->empty() == (used == 0) && region->hugepages() == hugepages &&
                   region->first_hugepage() == kFirst,
               "after %s: accessors disagree", after);
    FUZZ_CHECK(region->longest_free() == m.Longest(), "after %s: longest_free %zu, model %lu", after,
               region->longest_free(), (unsigned long)m.Longest());
    for (size_t h = 0; h < hugepages; ++h)
      FUZZ_CHECK(region->UsedBytesIn(h) == (m.UsedIn(h) << kPageShift), "after %s: UsedBytesIn(%zu)", after, h);
    PageId lo = FirstPageOf(kFirst), hi = FirstPageOf(kFirst + hugepages);
    FUZZ_CHECK(region->Contains(lo) && region->Contains(hi - 1) && !region->Contains(hi) && !region->Contains(lo - 1),
               "after %s: Contains at the edges", after);
  };

  int ops = 0;
  while (in.remaining_bytes() > 0 && ops++ < 200) {
    uint8_t op = in.ConsumeIntegral<uint8_t>();
    switch (op % 7) {
      case 0:
      case 1:
      case 2: {  // Alloc
        Length n;
        uint8_t k = in.ConsumeIntegral<uint8_t>();
        if (k < 200) n = in.ConsumeIntegralInRange<Length>(kHP / 2, 4 * kHP);
        else n = in.ConsumeIntegralInRange<Length>(1, m.Limit() + 1);
        Length want = m.Longest() >= n ? m.BestFit(n) : m.Limit();
        PageId page = 0;
        size_t newly = ~size_t{0};
        bool ok = region->Alloc(n, &page, &newly);
        FUZZ_CHECK(ok == (want < m.Limit()), "Alloc(%lu) = %d, longest free run %lu", (unsigned long)n, ok,
                   (unsigned long)m.Longest());
        if (!ok) break;
        Length idx = page - FirstPageOf(kFirst);
        FUZZ_CHECK(idx == want, "Alloc(%lu) at %lu, best fit %lu", (unsigned long)n, (unsigned long)idx,
                   (unsigned long)want);
        size_t want_newly = 0;
        for (size_t h = idx / kHP; h <= (idx + n - 1) / kHP; ++h) {
          if (!m.backed[h]) ++want_newly;
          m.backed[h] = true;
          m.idle[h] = false;
        }
        FUZZ_CHECK(newly == want_newly, "Alloc(%lu): %zu newly backed, model %zu", (unsigned long)n, newly, want_newly);
        FUZZ_CHECK(m.used.Count(idx, n) == 0, "Alloc(%lu) took used pages", (unsigned long)n);
        m.SetRun(idx, n, true);
        runs.push_back({idx, n});
        check_all("Alloc");
        break;
      }
      case 3:
      case 4: {  // Free
        if (runs.empty()) break;
        size_t k = in.ConsumeIntegralInRange<size_t>(0, runs.size() - 1);
        Run r = runs[k];
        runs[k] = runs.back();
        runs.pop_back();
        region->Free(FirstPageOf(kFirst) + r.index, r.n);
        m.SetRun(r.index, r.n, false);
        check_all("Free");
        break;
      }
      case 5: {  // ReleaseIdle
        bool all = in.ConsumeBool();
        released_now.clear();
        size_t refused_before = space.refused_releases;
        size_t got = region->ReleaseIdle(all);
        // The rule: unused backed hugepages go if `all` or already idle;
        // the other unused backed ones become idle. A refused release leaves
        // the hugepage as it was.
        std::vector<size_t> want;
        for (size_t h = 0; h < hugepages; ++h) {
          if (m.UsedIn(h) != 0 || !m.backed[h]) continue;
          if (!all && !m.idle[h]) {
            m.idle[h] = true;
            continue;
          }
          want.push_back(h);
        }
        size_t refused = space.refused_releases - refused_before;
        FUZZ_CHECK(released_now.size() + refused == want.size() && got == released_now.size(),
                   "ReleaseIdle(%d) = %zu, released %zu, refused %zu, model expects %zu candidates", all, got,
                   released_now.size(), refused, want.size());
        for (size_t h : released_now) {
          FUZZ_CHECK(std::find(want.begin(), want.end(), h) != want.end(), "ReleaseIdle released hugepage %zu", h);
          m.backed[h] = false;
          m.idle[h] = false;
        }
        // A refused release leaves the hugepage backed and its idle mark as it was.
        m.released_total += released_now.size();
        check_all("ReleaseIdle");
        break;
      }
      default:  // the OS refuses the next release(s)
        space.fail_releases = in.ConsumeIntegralInRange<int>(1, 2);
        break;
    }
  }
  space.fail_releases = 0;
  for (Run r : runs) {
    region->Free(FirstPageOf(kFirst) + r.index, r.n);
    m.SetRun(r.index, r.n, false);
  }
  check_all("freeing everything");
  FUZZ_CHECK(region->empty() && region->longest_free() == m.Limit(), "region not empty at the end");
  released_now.clear();
  size_t got = region->ReleaseIdle(true);
  size_t backed = 0;
  for (bool b : m.backed) backed += b ? 1 : 0;
  FUZZ_CHECK(got == backed && region->Stats().backed_hugepages == 0, "ReleaseIdle(all) on an empty region: %zu of %zu",
             got, backed);
  return 0;
}
