// The natural logarithm and e^x - 1 for the sampler, written here so that
// the library needs nothing from libm (a C program loading JSMalloc would
// otherwise map libm only for these two). Double precision to within a few
// units in the last place; inputs outside the sampler's ranges are handled
// but not tuned.
#ifndef JSMALLOC_BASE_LOG_EXP_H_
#define JSMALLOC_BASE_LOG_EXP_H_

namespace jsmalloc {

// ln(x) for x > 0; a large negative number for x <= 0.
double NaturalLog(double x);
// e^x - 1, accurate for small |x| too (where e^x - 1 would cancel).
double ExpMinusOne(double x);

}  // namespace jsmalloc

#endif  // JSMALLOC_BASE_LOG_EXP_H_
