#include "base/log_exp.h"

#include <cstdint>
#include <cstring>

namespace jsmalloc {

namespace {

constexpr double kLn2 = 0.69314718055994530942;
constexpr double kSqrt2 = 1.41421356237309504880;

uint64_t Bits(double x) {
  uint64_t b;
  memcpy(&b, &x, sizeof(b));
  return b;
}

double FromBits(uint64_t b) {
  double x;
  memcpy(&x, &b, sizeof(x));
  return x;
}

}  // namespace

double NaturalLog(double x) {
  if (!(x > 0)) return -1e300;
  int e = 0;
  // Subnormals: scale into the normal range first.
  if (x < 2.2250738585072014e-308) {
    x *= 18014398509481984.0;  // 2^54
    e -= 54;
  }
  uint64_t b = Bits(x);
  e += static_cast<int>((b >> 52) & 0x7ff) - 1023;
  double m = FromBits((b & ((uint64_t{1} << 52) - 1)) | (uint64_t{1023} << 52));  // [1, 2)
  if (m > kSqrt2) {
    m *= 0.5;
    ++e;
  }
  // ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716: the series
  // s + s^3/3 + s^5/5 + ... reaches double precision in 12 terms.
  const double s = (m - 1) / (m + 1);
  const double s2 = s * s;
  double term = s, sum = 0;
  for (int k = 1; k <= 25; k += 2) {
    sum += term / k;
    term *= s2;
  }
  return 2 * sum + e * kLn2;
}

double ExpMinusOne(double x) {
  if (x > -0.5 && x < 0.5) {
    // Taylor series: no cancellation near 0.
    double term = x, sum = 0;
    for (int k = 1; k <= 24; ++k) {
      sum += term;
      term *= x / (k + 1);
    }
    return sum;
  }
  if (x < -745) return -1;
  if (x > 709) return 1e308;
  // e^x = 2^k e^r, |r| <= ln2 / 2.
  double kf = x / kLn2;
  int k = static_cast<int>(kf < 0 ? kf - 0.5 : kf + 0.5);
  // ln 2 in two parts (the high one exact in few bits), so that k * ln2
  // loses nothing for large k.
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  double r = (x - k * kLn2Hi) - k * kLn2Lo;
  double term = 1, er = 0;
  for (int i = 1; i <= 24; ++i) {
    er += term;
    term *= r / i;
  }
  // 2^k in two steps so that k below -1022 stays in range.
  int k1 = k / 2, k2 = k - k1;
  double p1 = FromBits(static_cast<uint64_t>(k1 + 1023) << 52);
  double p2 = FromBits(static_cast<uint64_t>(k2 + 1023) << 52);
  return er * p1 * p2 - 1;
}

}  // namespace jsmalloc
