#include "backend/memory_limiter.h"

namespace jsmalloc {

void MemoryLimiter::Print(Printer* out) {
  inner_->Print(out);
  size_t l = limit();
  if (l == 0) {
    out->Str("Memory limit: none\n");
    return;
  }
  out->Str("Memory limit: ").MiB(l).Str(" MiB (").Str(hard() ? "hard" : "soft").Str("), reached ")
      .U(limit_hits()).Str(" times, ").U(limit_failures()).Str(" allocations refused\n");
}

}  // namespace jsmalloc
