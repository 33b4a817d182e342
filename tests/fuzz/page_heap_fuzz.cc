// Legacy page heap (backend/page_heap.h): sequences of New / NewAligned /
// Delete / ReleaseAtLeast, with the OS refusing memory or releases when the
// fuzzer says so, on a fake address space. Checked after every operation:
//   - a span has exactly the pages asked for, is aligned when asked, lies in
//     memory the heap mapped, and overlaps no other live span;
//   - the pagemap maps the span's pages to it;
//   - nothing in use is ever released to the OS;
//   - CheckInvariants() (free lists, coalescing, pagemap at run ends, counters);
//   - the stats agree with the model: bytes and spans in use, bytes mapped and
//     growths (from the page source), bytes released (cumulative), and
//     released free bytes <= bytes released and not handed out since;
//   - New fails only when the OS refused; ReleaseAtLeast releases what it
//     promises; after a Delete, free backed memory is within the documented
//     threshold max(keep_free_min_bytes, in_use / keep_free_divisor).
#include <map>
#include <memory>
#include <vector>

#include "backend/page_heap.h"
#include "tests/fuzz/fuzz_common.h"

namespace jsmalloc {
namespace {

constexpr uintptr_t kBase = uintptr_t{0x3000} << 32;  // far below 2^47

// unmapped_bytes must equal the released pages exactly. NewAligned once gave
// a trimmed head and tail carved from a released run back as backed (the
// input in regressions/page_heap/ shows it).
constexpr bool kExactUnmappedBytes = true;
constexpr size_t kWindow = size_t{16} << 30;

// One pagemap for every input (leaves are never freed; the fake space's
// addresses are the same each time, so the same few leaves are reused). Each
// input clears the entries of the ranges it mapped.
PageMap* Map() {
  static PageMap* pm = [] {
    auto* p = new PageMap();
    p->Init(GlobalArena());
    return p;
  }();
  return pm;
}

struct Live {
  Span* span;
  Length n;
};

}  // namespace
}  // namespace jsmalloc

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jsmalloc;
  fuzz::Input in(data, size);
  fuzz::FakeSpace space(kBase, kWindow);
  fuzz::ScopedArena arena;
  PageMap* pm = Map();

  PageHeapOptions opts;
  static constexpr size_t kKeep[] = {0, 64 << 10, 1 << 20, 4 << 20, 32 << 20};
  opts.keep_free_min_bytes = kKeep[in.ConsumeIntegralInRange<int>(0, 4)];
  opts.keep_free_divisor = in.ConsumeIntegralInRange<size_t>(1, 8);
  // A power of two of at least a page (Grow rounds with it as a mask).
  opts.min_grow_bytes = kPageSize << in.ConsumeIntegralInRange<int>(0, kHugePageShift + 1 - kPageShift);
  auto heap = std::make_unique<PageHeap>(pm, &space, arena.get(), opts);

  std::vector<Live> live;  // by index, for picking
  fuzz::IntervalSet in_use;  // pages of live spans
  // Pages released to the OS and not handed out since (a span handed out may
  // contain released pages; they are backed again once touched).
  fuzz::RangeSet released;
  size_t in_use_bytes = 0;
  size_t released_total = 0;

  space.on_release = [&](uintptr_t a, size_t bytes) {
    PageId first = a >> kPageShift;
    Length n = bytes >> kPageShift;
    FUZZ_CHECK(!in_use.Overlaps(first, n), "released pages %#lx+%lu of a span in use", (unsigned long)first,
               (unsigned long)n);
    released.Add(first, n);
    released_total += bytes;
  };

  auto check_stats = [&](const char* after) {
    FUZZ_CHECK(heap->CheckInvariants(), "CheckInvariants failed after %s", after);
    BackendStats s = heap->Stats();
    FUZZ_CHECK(s.in_use_bytes == in_use_bytes, "after %s: in_use_bytes %zu, model %zu", after, s.in_use_bytes,
               in_use_bytes);
    FUZZ_CHECK(s.spans_in_use == live.size(), "after %s: spans_in_use %zu, model %zu", after, s.spans_in_use,
               live.size());
    FUZZ_CHECK(s.system_bytes == space.mapped_bytes, "after %s: system_bytes %zu, mapped %zu", after, s.system_bytes,
               space.mapped_bytes);
    FUZZ_CHECK(s.grow_calls == space.mappings.size(), "after %s: grow_calls %zu, maps %zu", after, s.grow_calls,
               space.mappings.size());
    FUZZ_CHECK(s.released_total == released_total, "after %s: released_total %zu, source saw %zu", after,
               s.released_total, released_total);
    FUZZ_CHECK(s.free_bytes + s.unmapped_bytes + s.in_use_bytes == s.system_bytes,
               "after %s: free %zu + unmapped %zu + in use %zu != system %zu", after, s.free_bytes, s.unmapped_bytes,
               s.in_use_bytes, s.system_bytes);
    FUZZ_CHECK(s.unmapped_bytes <= (released.total() << kPageShift),
               "after %s: unmapped_bytes %zu but only %zu bytes are released and unused", after, s.unmapped_bytes,
               (size_t)(released.total() << kPageShift));
    if (kExactUnmappedBytes || std::getenv("JSMALLOC_TEST_FUZZ_EXACT_UNMAPPED") != nullptr) {
      FUZZ_CHECK(s.unmapped_bytes == (released.total() << kPageShift),
                 "after %s: unmapped_bytes %zu, but %zu bytes are released and unused", after, s.unmapped_bytes,
                 (size_t)(released.total() << kPageShift));
    }
    FUZZ_CHECK(heap->BackedBytes() == s.system_bytes - s.unmapped_bytes, "after %s: BackedBytes", after);
    return s;
  };

  auto take = [&](Span* s, Length n, Length align, size_t refused_before) {
    if (s == nullptr) {
      FUZZ_CHECK(space.refused_maps > refused_before, "New(%lu, align %lu) failed but the OS refused nothing",
                 (unsigned long)n, (unsigned long)align);
      return;
    }
    FUZZ_CHECK(s->num_pages == n, "New(%lu) gave %lu pages", (unsigned long)n, (unsigned long)s->num_pages);
    FUZZ_CHECK(s->location == Span::kInUse && s->sizeclass == 0, "New(%lu): span not in use (location %d)",
               (unsigned long)n, s->location);
    FUZZ_CHECK(s->first_page % align == 0, "NewAligned(%lu, %lu) at page %#lx", (unsigned long)n,
               (unsigned long)align, (unsigned long)s->first_page);
    FUZZ_CHECK(space.Covered(s->first_page << kPageShift, n << kPageShift), "span %#lx+%lu outside mapped memory",
               (unsigned long)s->first_page, (unsigned long)n);
    FUZZ_CHECK(in_use.Insert(s->first_page, n), "span %#lx+%lu overlaps a live span", (unsigned long)s->first_page,
               (unsigned long)n);
    for (PageId p : {s->first_page, s->last_page(), s->first_page + n / 2})
      FUZZ_CHECK(pm->Get(p) == s, "pagemap[%#lx] is not the new span", (unsigned long)p);
    released.Remove(s->first_page, n);
    live.push_back({s, n});
    in_use_bytes += n << kPageShift;
  };

  int ops = 0;
  while (in.remaining_bytes() > 0 && ops++ < 300) {
    uint8_t op = in.ConsumeIntegral<uint8_t>();
    switch (op % 8) {
      case 0:
      case 1:
      case 2: {  // New: mostly small runs, then list/set boundary, then several MiB
        Length n;
        uint8_t k = in.ConsumeIntegral<uint8_t>();
        if (k < 160) n = in.ConsumeIntegralInRange<Length>(1, 16);
        else if (k < 220) n = in.ConsumeIntegralInRange<Length>(PageHeap::kMaxListPages - 4, PageHeap::kMaxListPages + 4);
        else n = in.ConsumeIntegralInRange<Length>(1, 4 * (kHugePageSize >> kPageShift) + 3);
        size_t refused = space.refused_maps;
        take(heap->New(n), n, 1, refused);
        check_stats("New");
        break;
      }
      case 3: {  // NewAligned
        Length n = in.ConsumeIntegralInRange<Length>(1, 300);
        Length align = Length{1} << in.ConsumeIntegralInRange<int>(0, 9);
        size_t refused = space.refused_maps;
        take(heap->NewAligned(n, align), n, align, refused);
        check_stats("NewAligned");
        break;
      }
      case 4:
      case 5: {  // Delete
        if (live.empty()) break;
        size_t i = in.ConsumeIntegralInRange<size_t>(0, live.size() - 1);
        Live l = live[i];
        live[i] = live.back();
        live.pop_back();
        FUZZ_CHECK(in_use.Erase(l.span->first_page), "model lost span");
        FUZZ_CHECK(l.span->num_pages == l.n && l.span->location == Span::kInUse,
                   "live span %#lx changed while in use: %lu pages, location %d", (unsigned long)l.span->first_page,
                   (unsigned long)l.span->num_pages, l.span->location);
        in_use_bytes -= l.n << kPageShift;
        size_t refused = space.refused_releases;
        heap->Delete(l.span);
        BackendStats s = check_stats("Delete");
        if (space.refused_releases == refused) {
          size_t keep = s.in_use_bytes / opts.keep_free_divisor;
          if (keep < opts.keep_free_min_bytes) keep = opts.keep_free_min_bytes;
          FUZZ_CHECK(s.free_bytes <= keep, "after Delete: %zu free backed bytes above the threshold %zu",
                     s.free_bytes, keep);
        }
        break;
      }
      case 6: {  // ReleaseAtLeast
        size_t bytes = in.ConsumeBool() ? in.ConsumeIntegralInRange<size_t>(0, 64) << kPageShift : ~size_t{0};
        size_t free_before = heap->Stats().free_bytes;
        size_t refused = space.refused_releases;
        size_t got = heap->ReleaseAtLeast(bytes);
        BackendStats s = check_stats("ReleaseAtLeast");
        FUZZ_CHECK(got <= free_before && s.free_bytes == free_before - got,
                   "ReleaseAtLeast(%zu) = %zu with %zu free before, %zu after", bytes, got, free_before, s.free_bytes);
        if (space.refused_releases == refused) {
          FUZZ_CHECK(got >= (bytes < free_before ? bytes : free_before),
                     "ReleaseAtLeast(%zu) released only %zu of %zu free", bytes, got, free_before);
        }
        break;
      }
      default: {  // the OS: refuse the next map(s) or release(s), or break contiguity
        switch (in.ConsumeIntegralInRange<int>(0, 2)) {
          case 0: space.fail_maps = in.ConsumeIntegralInRange<int>(1, 2); break;
          case 1: space.fail_releases = in.ConsumeIntegralInRange<int>(1, 3); break;
          default: space.OpenGap(in.ConsumeIntegralInRange<size_t>(1, 4) * kHugePageSize); break;
        }
        break;
      }
    }
  }

  // Everything back: the heap must be all free, then all released.
  space.fail_maps = 0;
  space.fail_releases = 0;
  while (!live.empty()) {
    Live l = live.back();
    live.pop_back();
    in_use.Erase(l.span->first_page);
    in_use_bytes -= l.n << kPageShift;
    heap->Delete(l.span);
  }
  BackendStats s = check_stats("deleting everything");
  FUZZ_CHECK(s.in_use_bytes == 0 && s.spans_in_use == 0, "heap not empty at the end");
  heap->ReleaseAtLeast(~size_t{0});
  s = check_stats("final release");
  FUZZ_CHECK(s.free_bytes == 0 && s.unmapped_bytes == s.system_bytes,
             "after releasing everything: %zu free, %zu unmapped of %zu", s.free_bytes, s.unmapped_bytes,
             s.system_bytes);
  // With no span in use, each run of contiguous mappings is one free run.
  size_t pieces = 0;
  for (size_t i = 0; i < space.mappings.size(); ++i)
    if (i == 0 || space.mappings[i - 1].first + space.mappings[i - 1].second != space.mappings[i].first) ++pieces;
  FUZZ_CHECK(s.free_runs == pieces, "%zu free runs over %zu contiguous pieces of address space", s.free_runs, pieces);

  heap.reset();
  for (auto& [a, bytes] : space.mappings) {
    PageId first = a >> kPageShift;
    Length n = bytes >> kPageShift;
    pm->SetRange(first > 0 ? first - 1 : first, n + 2, nullptr);
  }
  return 0;
}
