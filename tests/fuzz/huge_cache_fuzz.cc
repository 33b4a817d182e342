// Hugepage cache (hugepage/huge_cache.h) against a model that knows, for
// every hugepage the cache mapped, whether it is handed out, free and backed,
// or free and unbacked, and the history of hugepages in use over time (fake
// clock). Operations: Get, Put of a whole range or a piece of one (backed or
// not), ReleaseExcess, ReleaseAtLeast, advancing the clock, the OS refusing
// maps or releases. Checked:
//   - Get takes the documented range: the best-fitting free backed range
//     (fewest hugepages that hold the request, lowest address among equals),
//     else the window across free ranges with the most backed hugepages
//     (then the shortest stretch of free ones, then the lowest address), else
//     it grows, by what the free stretch at the top lacks; *backed is right;
//     it fails only when the OS refused; when it hands out fresh hugepages
//     it releases as many free backed ones (the highest);
//   - free ranges are coalesced: free_ranges is the number of maximal runs of
//     free hugepages in the same state;
//   - releases touch only free backed hugepages, whole; ReleaseAtLeast(k)
//     releases the k highest-addressed free backed hugepages (or all of them);
//   - ReleaseExcess runs at most once per epoch and releases exactly down to
//     the demand limit: the peak of hugepages in use over the last kEpochs
//     epochs minus those in use now;
//   - every counter of Stats() agrees with the model.
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "hugepage/huge_cache.h"
#include "tests/fuzz/fuzz_common.h"

namespace jsmalloc {
namespace {

constexpr uint64_t kEpochNs = 1000000000;
constexpr uintptr_t kBase = uintptr_t{0x3300} << 32;
constexpr size_t kWindow = size_t{8} << 30;  // 4096 hugepages

uint64_t g_now = 0;
uint64_t FakeClock() { return g_now; }

enum State : uint8_t { kInUse, kFreeBacked, kFreeUnbacked };

struct Range {
  HugePageId first;
  size_t count;
};

}  // namespace
}  // namespace jsmalloc

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jsmalloc;
  fuzz::Input in(data, size);
  fuzz::FakeSpace space(kBase, kWindow);
  g_now = 1000 * kEpochNs + in.ConsumeIntegralInRange<uint64_t>(0, kEpochNs - 1);
  size_t grow = in.ConsumeIntegralInRange<size_t>(1, 64);
  auto cache = std::make_unique<HugeCache>(&space, FakeClock, grow, kEpochNs, /*dense=*/true);

  std::map<HugePageId, State> hp;  // every hugepage mapped
  std::vector<Range> out;          // handed out
  std::vector<std::pair<uint64_t, size_t>> history{{0, 0}};  // (time, in use from then on)
  size_t in_use = 0, hits = 0, misses = 0, released_total = 0;
  uint64_t last_release_epoch = ~uint64_t{0};
  std::vector<HugePageId> released_now;

  space.on_release = [&](uintptr_t a, size_t bytes) {
    FUZZ_CHECK(a % kHugePageSize == 0 && bytes % kHugePageSize == 0, "release of %#lx + %zu: not whole hugepages",
               (unsigned long)a, bytes);
    for (HugePageId h = a >> kHugePageShift; h < (a + bytes) >> kHugePageShift; ++h) {
      auto it = hp.find(h);
      FUZZ_CHECK(it != hp.end() && it->second == kFreeBacked, "released hugepage %#lx in state %d",
                 (unsigned long)h, it == hp.end() ? -1 : it->second);
      it->second = kFreeUnbacked;
      released_now.push_back(h);
    }
  };
  auto count = [&](State st) {
    size_t c = 0;
    for (auto& [h, s] : hp) c += s == st ? 1 : 0;
    return c;
  };
  // Maximal runs of free hugepages in one state, in address order.
  auto runs = [&](State st) {
    std::vector<Range> r;
    for (auto& [h, s] : hp) {
      if (s != st) continue;
      if (!r.empty() && r.back().first + r.back().count == h) ++r.back().count;
      else r.push_back({h, 1});
    }
    return r;
  };
  // Maximal runs of free hugepages, backed or not.
  auto stretches = [&] {
    std::vector<Range> r;
    for (auto& [h, s] : hp) {
      if (s == kInUse) continue;
      if (!r.empty() && r.back().first + r.back().count == h) ++r.back().count;
      else r.push_back({h, 1});
    }
    return r;
  };
  // The limit as the cache computes it at its last look at the clock (Get,
  // Put and ReleaseExcess look; Stats and ReleaseAtLeast do not).
  uint64_t last_note = g_now;
  auto demand_limit = [&](uint64_t at) -> size_t {
    uint64_t e = at / kEpochNs;
    uint64_t ws = (e >= HugeCache::kEpochs - 1 ? e - (HugeCache::kEpochs - 1) : 0) * kEpochNs;
    size_t peak = 0;
    for (size_t i = 0; i < history.size(); ++i) {
      bool before = history[i].first < ws;
      bool last_before = before && (i + 1 == history.size() || history[i + 1].first >= ws);
      if (!before || last_before) peak = std::max(peak, history[i].second);
    }
    return peak > in_use ? peak - in_use : 0;
  };
  auto note = [&]() {
    history.push_back({g_now, in_use});
    last_note = g_now;
  };
  auto check_all = [&](const char* after) {
    HugeCacheStats s = cache->Stats();
    size_t fb = count(kFreeBacked), fu = count(kFreeUnbacked);
    size_t ranges = runs(kFreeBacked).size() + runs(kFreeUnbacked).size();
    FUZZ_CHECK(s.mapped_hugepages == hp.size() && s.backed_free == fb && s.unbacked_free == fu && s.in_use == in_use &&
                   s.hits == hits && s.misses == misses && s.released_hugepages == released_total &&
                   s.free_ranges == ranges && s.demand_limit == demand_limit(last_note) && cache->backed_free() == fb,
               "after %s: stats mapped %zu backed %zu unbacked %zu in-use %zu hits %zu misses %zu released %zu "
               "ranges %zu limit %zu; model %zu %zu %zu %zu %zu %zu %zu %zu %zu",
               after, s.mapped_hugepages, s.backed_free, s.unbacked_free, s.in_use, s.hits, s.misses,
               s.released_hugepages, s.free_ranges, s.demand_limit, hp.size(), fb, fu, in_use, hits, misses,
               released_total, ranges, demand_limit(last_note));
    FUZZ_CHECK(space.mapped_bytes == hp.size() * kHugePageSize, "after %s: source mapped %zu bytes", after,
               space.mapped_bytes);
  };
  auto put = [&](HugePageId first, size_t n, bool backed) {
    for (HugePageId h = first; h < first + n; ++h) hp[h] = backed ? kFreeBacked : kFreeUnbacked;
    cache->Put(first, n, backed);
    in_use -= n;
    note();
  };

  int ops = 0;
  while (in.remaining_bytes() > 0 && ops++ < 300) {
    uint8_t op = in.ConsumeIntegral<uint8_t>();
    switch (op % 9) {
      case 0:
      case 1:
      case 2: {  // Get
        size_t n = fuzz::PickLength(in, 4, 80);
        // The documented choice: the best-fitting backed run (lowest address
        // among equals); else, among windows of n free hugepages inside a
        // stretch of free ones (backed or not), the most backed, then the
        // shortest stretch, then the lowest address; else growth.
        auto pick = [&]() -> std::optional<std::pair<HugePageId, size_t>> {
          std::optional<Range> best;
          for (const Range& x : runs(kFreeBacked))
            if (x.count >= n && (!best || x.count < best->count)) best = x;
          if (best) return std::make_pair(best->first, n);
          std::optional<std::pair<HugePageId, size_t>> w;
          size_t w_len = 0;
          for (const Range& st : stretches()) {
            if (st.count < n) continue;
            for (HugePageId s0 = st.first; s0 + n <= st.first + st.count; ++s0) {
              size_t k = 0;
              for (HugePageId h = s0; h < s0 + n; ++h) k += hp[h] == kFreeBacked ? 1 : 0;
              if (!w || k > w->second || (k == w->second && st.count < w_len)) {
                w = std::make_pair(s0, k);
                w_len = st.count;
              }
            }
          }
          return w;
        };
        auto want = pick();
        // Growth: by what the stretch ending at the last mapping's end lacks
        // (at least `grow`), placed right after it when the space allows.
        size_t tail = 0;
        if (!space.mappings.empty()) {
          uintptr_t end = space.mappings.back().first + space.mappings.back().second;
          HugePageId h = (end >> kHugePageShift) - 1;
          while (hp.count(h) && hp[h] != kInUse) {
            ++tail;
            if (h == 0) break;
            --h;
          }
        }
        size_t maps_before = space.mappings.size(), refused_before = space.refused_maps;
        size_t rel_refused_before = space.refused_releases;
        HugePageId first = 0;
        size_t backed = 0;
        released_now.clear();
        bool ok = cache->Get(n, &first, &backed);
        // What Get released is checked below; the choice is checked on the
        // state before it.
        std::vector<HugePageId> released_in_get = released_now;
        for (HugePageId h : released_in_get) hp[h] = kFreeBacked;
        // New address space joins the model as free unbacked hugepages.
        for (size_t i = maps_before; i < space.mappings.size(); ++i) {
          auto [a, bytes] = space.mappings[i];
          FUZZ_CHECK(a % kHugePageSize == 0 && bytes % kHugePageSize == 0, "cache mapped %#lx + %zu",
                     (unsigned long)a, bytes);
          for (HugePageId h = a >> kHugePageShift; h < (a + bytes) >> kHugePageShift; ++h) hp[h] = kFreeUnbacked;
        }
        if (!ok) {
          FUZZ_CHECK(!want && space.refused_maps > refused_before,
                     "Get(%zu) failed with a fitting range or without a refused map", n);
          FUZZ_CHECK(released_in_get.empty(), "a failed Get(%zu) released hugepages", n);
          break;
        }
        if (want) {
          FUZZ_CHECK(space.mappings.size() == maps_before, "Get(%zu) grew with a fitting free range", n);
          FUZZ_CHECK(first == want->first && backed == want->second,
                     "Get(%zu) = %#lx with %zu backed; model %#lx with %zu", n, (unsigned long)first, backed,
                     (unsigned long)want->first, want->second);
        } else {
          FUZZ_CHECK(space.mappings.size() > maps_before, "Get(%zu) found no range and did not grow", n);
          if (space.refused_maps == refused_before) {
            size_t need = tail < n ? n - tail : n;
            FUZZ_CHECK(space.mappings[maps_before].second == std::max(need, grow) * kHugePageSize,
                       "Get(%zu) grew by %zu bytes; the top stretch had %zu, minimum growth %zu", n,
                       space.mappings[maps_before].second, tail, grow);
          }
          // After growing, the same rule on the larger space.
          auto w = pick();
          FUZZ_CHECK(w && first == w->first && backed == w->second,
                     "Get(%zu) after growing = %#lx with %zu backed, model %#lx", n, (unsigned long)first, backed,
                     w ? (unsigned long)w->first : 0ul);
        }
        size_t seen_backed = 0;
        for (HugePageId h = first; h < first + n; ++h) {
          auto it = hp.find(h);
          FUZZ_CHECK(it != hp.end() && it->second != kInUse, "Get handed out hugepage %#lx in state %d",
                     (unsigned long)h, it == hp.end() ? -1 : it->second);
          seen_backed += it->second == kFreeBacked ? 1 : 0;
          it->second = kInUse;
        }
        FUZZ_CHECK(seen_backed == backed, "Get(%zu) said %zu backed, the range had %zu", n, backed, seen_backed);
        // Fresh hugepages taken while backed ones stayed free: that many of
        // those (the highest) were released.
        {
          std::vector<HugePageId> fb;
          for (auto& [h, st] : hp)
            if (st == kFreeBacked) fb.push_back(h);
          size_t owe = std::min(n - backed, fb.size());
          std::sort(released_in_get.begin(), released_in_get.end());
          if (space.refused_releases == rel_refused_before) {
            std::vector<HugePageId> top(fb.end() - static_cast<long>(owe), fb.end());
            FUZZ_CHECK(released_in_get == top, "Get(%zu) with %zu backed released %zu hugepages, model %zu (the highest "
                       "free backed)", n, backed, released_in_get.size(), owe);
          } else {
            FUZZ_CHECK(released_in_get.size() <= owe, "Get(%zu) released %zu > %zu", n, released_in_get.size(), owe);
          }
          for (HugePageId h : released_in_get) hp[h] = kFreeUnbacked;
          released_total += released_in_get.size();
        }
        (backed == n ? hits : misses)++;
        in_use += n;
        note();
        out.push_back({first, n});
        check_all("Get");
        break;
      }
      case 3:
      case 4: {  // Put a range, or its head or tail
        if (out.empty()) break;
        size_t k = in.ConsumeIntegralInRange<size_t>(0, out.size() - 1);
        Range r = out[k];
        bool backed = in.ConsumeIntegral<uint8_t>() < 200;
        size_t part = r.count > 1 && in.ConsumeBool() ? in.ConsumeIntegralInRange<size_t>(1, r.count - 1) : r.count;
        if (part == r.count) {
          out[k] = out.back();
          out.pop_back();
          put(r.first, r.count, backed);
        } else if (in.ConsumeBool()) {
          out[k] = {r.first + part, r.count - part};
          put(r.first, part, backed);
        } else {
          out[k] = {r.first, r.count - part};
          put(r.first + r.count - part, part, backed);
        }
        check_all("Put");
        break;
      }
      case 5: {  // ReleaseExcess
        uint64_t e = g_now / kEpochNs;
        size_t limit = demand_limit(g_now);
        size_t fb = count(kFreeBacked);
        size_t want = last_release_epoch == e ? 0 : (fb > limit ? fb - limit : 0);
        last_release_epoch = e;
        released_now.clear();
        size_t refused = space.refused_releases;
        size_t got = cache->ReleaseExcess();
        note();
        released_total += got;
        FUZZ_CHECK(got == released_now.size(), "ReleaseExcess returned %zu, released %zu", got, released_now.size());
        if (space.refused_releases == refused)
          FUZZ_CHECK(got == want, "ReleaseExcess released %zu, model %zu (free backed %zu, limit %zu)", got, want, fb,
                     limit);
        else FUZZ_CHECK(got <= want, "ReleaseExcess released %zu > %zu", got, want);
        check_all("ReleaseExcess");
        break;
      }
      case 6: {  // ReleaseAtLeast: the k highest free backed hugepages
        size_t k = fuzz::PickLength(in, 8, 200);
        std::vector<HugePageId> backed;
        for (auto& [h, s] : hp)
          if (s == kFreeBacked) backed.push_back(h);
        size_t want = std::min(k, backed.size());
        released_now.clear();
        size_t refused = space.refused_releases;
        size_t got = cache->ReleaseAtLeast(k);
        released_total += got;
        FUZZ_CHECK(got == released_now.size(), "ReleaseAtLeast returned %zu, released %zu", got, released_now.size());
        if (space.refused_releases == refused) {
          FUZZ_CHECK(got == want, "ReleaseAtLeast(%zu) released %zu of %zu free backed", k, got, backed.size());
          std::sort(released_now.begin(), released_now.end());
          std::vector<HugePageId> top(backed.end() - static_cast<long>(want), backed.end());
          FUZZ_CHECK(released_now == top, "ReleaseAtLeast(%zu) did not release the highest free backed hugepages", k);
        }
        check_all("ReleaseAtLeast");
        break;
      }
      case 7: {  // time passes
        uint8_t k = in.ConsumeIntegral<uint8_t>();
        uint64_t d = k < 128 ? k * (kEpochNs / 64) : k < 250 ? (k - 127) * kEpochNs / 4 : (k - 230) * kEpochNs;
        g_now += d;
        break;
      }
      default:  // the OS refuses
        if (in.ConsumeBool()) space.fail_maps = in.ConsumeIntegralInRange<int>(1, 2);
        else space.fail_releases = in.ConsumeIntegralInRange<int>(1, 2);
        break;
    }
  }
  space.fail_releases = 0;
  for (Range r : out) put(r.first, r.count, true);
  out.clear();
  check_all("putting everything back");
  released_now.clear();
  size_t got = cache->ReleaseAtLeast(~size_t{0});
  released_total += got;
  check_all("releasing everything");
  FUZZ_CHECK(cache->Stats().backed_free == 0 && cache->Stats().free_ranges == runs(kFreeUnbacked).size(),
             "cache not fully released at the end");
  return 0;
}
