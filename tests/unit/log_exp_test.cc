// The sampler's own ln and e^x - 1 (base/log_exp.h) against libm, and the
// back-ends' sorted array (base/sorted_array.h) against std::set.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "base/log_exp.h"
#include "base/sorted_array.h"

namespace jsmalloc {
namespace {

TEST(LogExpTest, NaturalLogMatchesLibm) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200000; ++i) {
    // u in (0, 1] as the sampler draws it, and a wide range besides.
    double x = i % 2 == 0 ? (static_cast<double>(rng() >> 11) + 1) / 9007199254740992.0
                          : std::ldexp(1.0 + static_cast<double>(rng() % 1000000) / 1e6, static_cast<int>(rng() % 2000) - 1000);
    double want = std::log(x), got = NaturalLog(x);
    ASSERT_NEAR(got, want, std::fabs(want) * 1e-15 + 1e-16) << x;  // a few units in the last place
  }
  EXPECT_EQ(NaturalLog(1.0), 0.0);
  EXPECT_NEAR(NaturalLog(4.9406564584124654e-324), std::log(4.9406564584124654e-324), 1e-12) << "subnormal";
  EXPECT_LT(NaturalLog(0.0), -1e299);
  EXPECT_LT(NaturalLog(-1.0), -1e299);
}

TEST(LogExpTest, ExpMinusOneMatchesLibm) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200000; ++i) {
    double x = (static_cast<double>(rng() % 2000001) - 1000000) / 1e6 * (i % 3 == 0 ? 1e-6 : (i % 3 == 1 ? 1 : 700));
    double want = std::expm1(x), got = ExpMinusOne(x);
    ASSERT_NEAR(got, want, std::fabs(want) * 2e-15) << x;
  }
  EXPECT_EQ(ExpMinusOne(0.0), 0.0);
  EXPECT_EQ(ExpMinusOne(-1000.0), -1.0);
  // The sampler's use: 1 - e^(-size/interval) for tiny sizes.
  EXPECT_NEAR(-ExpMinusOne(-8.0 / 2097152.0), -std::expm1(-8.0 / 2097152.0), 1e-21);
}

struct Less {
  bool operator()(long a, long b) const { return a < b; }
};

TEST(SortedArrayTest, BehavesLikeAnOrderedSet) {
  SortedArray<long, Less> a;
  std::set<long> model;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 20000; ++i) {
    long v = static_cast<long>(rng() % 3000);
    if (rng() % 3 != 0) {
      if (model.insert(v).second) a.insert(v);
    } else {
      EXPECT_EQ(a.erase_value(v), model.erase(v) == 1);
    }
    if (i % 1000 == 0) {
      ASSERT_EQ(a.size(), model.size());
      auto it = model.begin();
      for (long* p = a.begin(); p != a.end(); ++p, ++it) ASSERT_EQ(*p, *it);
      long key = static_cast<long>(rng() % 3000);
      long* lb = a.lower_bound(key);
      auto mlb = model.lower_bound(key);
      ASSERT_EQ(lb == a.end(), mlb == model.end());
      if (mlb != model.end()) ASSERT_EQ(*lb, *mlb);
    }
  }
}

}  // namespace
}  // namespace jsmalloc
