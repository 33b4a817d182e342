// Pagemap against a std::map model: Ensure / Set / SetRange / SetSizeClass
// in a few leaves (including the lowest, one crossing, and the top of the
// 48-bit space), then Get and SizeClassOf for pages set, pages never set, and
// addresses beyond the map. One PageMap serves every input (leaves are never
// freed); each input puts back every entry it changed.
#include <iterator>
#include <map>
#include <memory>
#include <set>

#include "base/pagemap.h"
#include "tests/fuzz/fuzz_common.h"

namespace jsmalloc {
namespace {

PageMap* Map() {
  static PageMap* pm = [] {
    auto* p = new PageMap();
    p->Init(GlobalArena());
    return p;
  }();
  return pm;
}

// Leaves whose keys the model knows exist (across inputs: leaves persist).
std::set<uintptr_t>& EnsuredLeaves() {
  static auto* s = new std::set<uintptr_t>();
  return *s;
}

Span g_spans[16];

// Leaves the fuzzer works in: low, two adjacent ones (ranges cross between
// them), a middle one, and the last one the root can hold.
constexpr uintptr_t kLeafKeys[] = {0, 5, 6, PageMap::kRootLength / 2, PageMap::kRootLength - 1};
constexpr size_t kNumKeys = sizeof(kLeafKeys) / sizeof(kLeafKeys[0]);

// A function of the page number that is constant between breakpoints: the
// model of one pagemap array, so that a range assignment costs O(log n).
template <typename T>
class Piecewise {
 public:
  T At(PageId x) const {
    auto it = m_.upper_bound(x);
    if (it == m_.begin()) return T{};
    return std::prev(it)->second;
  }
  void Assign(PageId start, Length n, T v) {
    PageId end = start + n;
    T after = At(end);
    m_.erase(m_.lower_bound(start), m_.upper_bound(end));
    m_[start] = v;
    m_[end] = after;
  }
  // Calls f(start, length, value) for every piece whose value is not T{}.
  template <typename F>
  void ForEachSet(F f) const {
    for (auto it = m_.begin(); it != m_.end(); ++it) {
      auto next = std::next(it);
      if (next == m_.end() || it->second == T{}) continue;
      f(it->first, next->first - it->first, it->second);
    }
  }
  // A breakpoint at or after x (or the first), for sampling; false if none.
  bool Near(PageId x, PageId* out) const {
    if (m_.empty()) return false;
    auto it = m_.lower_bound(x);
    if (it == m_.end()) it = m_.begin();
    *out = it->first;
    return true;
  }

 private:
  std::map<PageId, T> m_;
};

struct Entry {
  Span* span = nullptr;
  uint8_t cl = 0;
};

PageId PickPage(fuzz::Input& in) {
  uintptr_t key = kLeafKeys[in.ConsumeIntegralInRange<size_t>(0, kNumKeys - 1)];
  PageId base = key << PageMap::kLeafBits;
  // Mostly close to the leaf's ends, where ranges cross into the next leaf.
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: return base + in.ConsumeIntegralInRange<PageId>(0, 64);
    case 1: return base + PageMap::kLeafLength - 1 - in.ConsumeIntegralInRange<PageId>(0, 64);
    default: return base + in.ConsumeIntegralInRange<PageId>(0, PageMap::kLeafLength - 1);
  }
}

bool LeafKnown(PageId id) { return EnsuredLeaves().count(id >> PageMap::kLeafBits) != 0; }

}  // namespace
}  // namespace jsmalloc

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jsmalloc;
  PageMap* pm = Map();
  fuzz::Input in(data, size);
  // Entries this input changed (everything else is null / class 0).
  Piecewise<Span*> spans;
  Piecewise<uint8_t> classes;
  // The first page of the SetSizeClass call that last covered a page.
  Piecewise<PageId> class_starts;
  auto expect = [&](PageId id) -> Entry { return Entry{spans.At(id), classes.At(id)}; };
  auto check_page = [&](PageId id) {
    Entry e = expect(id);
    Span* got = pm->Get(id);
    FUZZ_CHECK(got == e.span, "Get(%#lx) = %p, model %p", (unsigned long)id, (void*)got, (void*)e.span);
    // SizeClassOf for the page's first byte, a middle byte and its last byte.
    uintptr_t addr = id << kPageShift;
    for (uintptr_t off : {uintptr_t{0}, uintptr_t{kPageSize / 2 + 8}, uintptr_t{kPageSize - 1}}) {
      uint8_t cl = pm->SizeClassOf(reinterpret_cast<void*>(addr + off));
      FUZZ_CHECK(cl == e.cl, "SizeClassOf(%#lx) = %u, model %u", (unsigned long)(addr + off), cl, e.cl);
      if (e.cl != 0) {
        const void* p = reinterpret_cast<void*>(addr + off);
        uintptr_t start = pm->SpanStartIfClass(p, e.cl);
        uintptr_t want = class_starts.At(id) << kPageShift;
        FUZZ_CHECK(start == want, "SpanStartIfClass(%#lx) = %#lx, model %#lx", (unsigned long)(addr + off),
                   (unsigned long)start, (unsigned long)want);
        FUZZ_CHECK(pm->SpanStartIfClass(p, e.cl ^ 1) == 0, "SpanStartIfClass(%#lx) for another class",
                   (unsigned long)(addr + off));
      }
    }
  };

  const size_t leaf_bytes_before = pm->metadata_bytes();
  FUZZ_CHECK(leaf_bytes_before == EnsuredLeaves().size() * sizeof(PageMap::Leaf),
             "metadata_bytes %zu, model %zu leaves", leaf_bytes_before, EnsuredLeaves().size());

  int ops = 0;
  while (in.remaining_bytes() > 0 && ops++ < 400) {
    uint8_t op = in.ConsumeIntegral<uint8_t>();
    switch (op % 7) {
      case 0: {  // Ensure a range (possibly crossing leaves)
        PageId start = PickPage(in);
        Length n = fuzz::PickLength(in, 256, 3 * PageMap::kLeafLength);
        bool ok = pm->Ensure(start, n);
        uintptr_t first_key = start >> PageMap::kLeafBits, last_key = (start + n - 1) >> PageMap::kLeafBits;
        bool expect_ok = last_key < PageMap::kRootLength;
        FUZZ_CHECK(ok == expect_ok, "Ensure(%#lx, %lu) = %d", (unsigned long)start, (unsigned long)n, ok);
        for (uintptr_t k = first_key; k <= last_key && k < PageMap::kRootLength; ++k) EnsuredLeaves().insert(k);
        FUZZ_CHECK(pm->metadata_bytes() == EnsuredLeaves().size() * sizeof(PageMap::Leaf),
                   "after Ensure: metadata_bytes %zu, model %zu leaves", pm->metadata_bytes(),
                   EnsuredLeaves().size());
        break;
      }
      case 1: {  // Set one page
        PageId id = PickPage(in);
        if (!LeafKnown(id)) break;  // Set requires Ensure first
        Span* s = in.ConsumeBool() ? nullptr : &g_spans[in.ConsumeIntegralInRange<int>(0, 15)];
        pm->Set(id, s);
        spans.Assign(id, 1, s);
        check_page(id);
        break;
      }
      case 2:    // SetRange
      case 3: {  // SetSizeClass
        PageId start = PickPage(in);
        Length n = fuzz::PickLength(in, 64, 2048);
        if (!pm->Ensure(start, n)) break;
        for (uintptr_t k = start >> PageMap::kLeafBits; k <= (start + n - 1) >> PageMap::kLeafBits; ++k)
          EnsuredLeaves().insert(k);
        if (op % 7 == 2) {
          Span* s = in.ConsumeBool() ? nullptr : &g_spans[in.ConsumeIntegralInRange<int>(0, 15)];
          pm->SetRange(start, n, s);
          spans.Assign(start, n, s);
        } else {
          uint8_t cl = in.ConsumeIntegral<uint8_t>();
          pm->SetSizeClass(start, n, cl);
          classes.Assign(start, n, cl);
          class_starts.Assign(start, n, start);
        }
        check_page(start);
        check_page(start + n - 1);
        if (start > 0) check_page(start - 1);
        check_page(start + n);
        break;
      }
      case 4: {  // look anywhere in the working leaves
        PageId id = PickPage(in);
        check_page(id);
        break;
      }
      case 5: {  // beyond the map: Get of an id with bits above kBits, SizeClassOf above 2^48
        PageId id = (PageId{1} << PageMap::kBits) + in.ConsumeIntegralInRange<PageId>(0, 1 << 20);
        FUZZ_CHECK(pm->Get(id) == nullptr, "Get(%#lx) beyond the map is not null", (unsigned long)id);
        uintptr_t addr = (uintptr_t{1} << kAddressBits) + in.ConsumeIntegral<uint32_t>();
        if (in.ConsumeBool()) addr = ~uintptr_t{0} - in.ConsumeIntegral<uint16_t>();
        FUZZ_CHECK(pm->SizeClassOf(reinterpret_cast<void*>(addr)) == 0, "SizeClassOf(%#lx) beyond 48 bits",
                   (unsigned long)addr);
        break;
      }
      default: {  // near the edges of what this input set
        PageId id;
        PageId at = PickPage(in);
        if (in.ConsumeBool() ? spans.Near(at, &id) : classes.Near(at, &id)) {
          check_page(id);
          if (id > 0) check_page(id - 1);
        }
        break;
      }
    }
  }
  // Every piece at its ends and middle, then put everything back for the next
  // input.
  auto check_piece = [&](PageId start, Length n) {
    check_page(start);
    check_page(start + n / 2);
    check_page(start + n - 1);
  };
  spans.ForEachSet([&](PageId start, Length n, Span*) { check_piece(start, n); });
  classes.ForEachSet([&](PageId start, Length n, uint8_t) { check_piece(start, n); });
  spans.ForEachSet([&](PageId start, Length n, Span*) {
    pm->SetRange(start, n, nullptr);
    FUZZ_CHECK(pm->Get(start) == nullptr && pm->Get(start + n - 1) == nullptr, "span entries at %#lx not cleared",
               (unsigned long)start);
  });
  classes.ForEachSet([&](PageId start, Length n, uint8_t) {
    pm->SetSizeClass(start, n, 0);
    FUZZ_CHECK(pm->SizeClassOf(reinterpret_cast<void*>(start << kPageShift)) == 0, "classes at %#lx not cleared",
               (unsigned long)start);
  });
  return 0;
}
