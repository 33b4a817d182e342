// Size-class map against brute force: for request sizes and alignments the
// fuzzer picks, ClassFor / ClassForAligned / ClassSize must give what a linear
// scan of the class table gives, within the documented waste bound, and every
// object of an aligned class must be aligned.
#include "base/size_map.h"
#include "tests/fuzz/fuzz_common.h"

namespace jsmalloc {
namespace {

// Smallest class whose size holds `size` (class 1 for 0).
int BruteClassFor(size_t size) {
  for (int cl = 1; cl < kNumClasses; ++cl)
    if (SizeMap::ClassSize(cl) >= size) return cl;
  return 0;
}

// ClassForAligned as documented: 0 beyond kMaxSize or for align > kPageSize,
// else the smallest class of at least max(size, align) bytes whose size is a
// multiple of align.
int BruteClassForAligned(size_t size, size_t align) {
  if (size > kMaxSize || align > kPageSize) return 0;
  size_t need = size < align ? align : size;
  for (int cl = 1; cl < kNumClasses; ++cl) {
    size_t s = SizeMap::ClassSize(cl);
    if (s >= need && s % align == 0) return cl;
  }
  return 0;
}

void CheckClass(int cl) {
  FUZZ_CHECK(cl >= 1 && cl < kNumClasses, "class %d out of range", cl);
  size_t size = SizeMap::ClassSize(cl);
  size_t span = SizeMap::ClassPages(cl) * kPageSize;
  FUZZ_CHECK(size > 0 && span >= size, "class %d: size %zu, span %zu", cl, size, span);
  FUZZ_CHECK(SizeMap::ObjectsPerSpan(cl) == span / size, "class %d: %zu objects per span, expected %zu", cl,
             SizeMap::ObjectsPerSpan(cl), span / size);
  FUZZ_CHECK((span % size) * 8 <= span, "class %d: span tail waste above 1/8", cl);
  FUZZ_CHECK(SizeMap::BatchSize(cl) >= 2 && SizeMap::BatchSize(cl) <= 32, "class %d: batch %d", cl,
             SizeMap::BatchSize(cl));
  if (size >= 16) FUZZ_CHECK(size % kMinAlign == 0, "class %d: size %zu not 16-byte aligned", cl, size);
  if (cl > 1) FUZZ_CHECK(SizeMap::ClassSize(cl - 1) < size, "classes not increasing at %d", cl);
}

void CheckSize(size_t s) {
  int cl = SizeMap::ClassFor(s);
  int want = BruteClassFor(s);
  FUZZ_CHECK(cl == want, "ClassFor(%zu) = %d (size %zu), brute force %d (size %zu)", s, cl,
             (size_t)SizeMap::ClassSize(cl), want, (size_t)SizeMap::ClassSize(want));
  CheckClass(cl);
  size_t size = SizeMap::ClassSize(cl);
  if (s > 0) FUZZ_CHECK(size - s <= MaxInternalWaste(s), "ClassFor(%zu): waste %zu above bound %zu", s, size - s,
                        MaxInternalWaste(s));
  // The lookup index is monotone: a larger request never maps to a smaller class.
  if (s < kMaxSize) {
    FUZZ_CHECK(ClassIndex(s) <= ClassIndex(s + 1), "ClassIndex not monotone at %zu", s);
    FUZZ_CHECK(SizeMap::ClassFor(s + 1) >= cl, "ClassFor not monotone at %zu", s);
  }
}

void CheckAligned(size_t s, size_t align) {
  int cl = SizeMap::ClassForAligned(s, align);
  int want = BruteClassForAligned(s, align);
  FUZZ_CHECK(cl == want, "ClassForAligned(%zu, %zu) = %d (size %zu), brute force %d (size %zu)", s, align, cl,
             cl ? (size_t)SizeMap::ClassSize(cl) : 0, want, want ? (size_t)SizeMap::ClassSize(want) : 0);
  if (cl == 0) return;
  CheckClass(cl);
  size_t size = SizeMap::ClassSize(cl);
  FUZZ_CHECK(size >= s, "ClassForAligned(%zu, %zu): class size %zu too small", s, align, size);
  // Spans start on page boundaries: every object of the class must be aligned.
  for (size_t i = 0; i < SizeMap::ObjectsPerSpan(cl); ++i) {
    FUZZ_CHECK((i * size) % align == 0, "ClassForAligned(%zu, %zu): object %zu of class %d at offset %zu", s,
               align, i, cl, i * size);
  }
}

}  // namespace
}  // namespace jsmalloc

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jsmalloc;
  fuzz::Input in(data, size);
  while (in.remaining_bytes() > 0) {
    uint8_t op = in.ConsumeIntegral<uint8_t>();
    size_t s;
    switch (op % 4) {
      case 0:  // anywhere in [0, kMaxSize]
        s = in.ConsumeIntegralInRange<size_t>(0, kMaxSize);
        break;
      case 1:  // near a class boundary
      {
        int cl = in.ConsumeIntegralInRange<int>(1, kNumClasses - 1);
        int delta = in.ConsumeIntegralInRange<int>(-2, 2);
        long v = static_cast<long>(SizeMap::ClassSize(cl)) + delta;
        s = v < 0 ? 0 : (v > static_cast<long>(kMaxSize) ? kMaxSize : static_cast<size_t>(v));
        break;
      }
      case 2:  // near the lookup's switch from 8- to 128-byte granularity
        s = in.ConsumeIntegralInRange<size_t>(1000, 1200);
        break;
      default:  // small
        s = in.ConsumeIntegralInRange<size_t>(0, 300);
        break;
    }
    CheckSize(s);
    // Alignments 1 .. 2 * kPageSize, and sizes beyond kMaxSize for the aligned form.
    size_t align = size_t{1} << in.ConsumeIntegralInRange<int>(0, kPageShift + 1);
    size_t as = (op & 0x80) ? s + in.ConsumeIntegralInRange<size_t>(0, 64) : s;
    CheckAligned(as, align);
  }
  return 0;
}
