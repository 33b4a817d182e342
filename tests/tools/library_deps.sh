#!/usr/bin/env bash
# libjsmalloc.so needs nothing of the C++ runtime or libm: a C program that
# preloads it maps neither (about 1.5 MiB of RSS), while a C++ program still
# gets std::bad_alloc from a failing operator new and its new-handler called.
#   library_deps.sh LIBJSMALLOC
set -euo pipefail
LIB=$(readlink -f "${1:?usage: library_deps.sh LIBJSMALLOC}")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jsmalloc-deps.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

needed=$(readelf -d "$LIB" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "NEEDED: $needed"
case " $needed " in *" libstdc++"*|*" libm.so"*) fail "$LIB depends on libstdc++ or libm: $needed" ;; esac
# Nor libgcc_s (the unwinder is referenced weakly) nor, when liburing's
# archive was there to link in, liburing.
case " $needed " in *" libgcc_s"*) fail "$LIB depends on libgcc_s: $needed" ;; esac
if [ -e /usr/lib/x86_64-linux-gnu/liburing.a ]; then
  case " $needed " in *" liburing"*) fail "$LIB depends on liburing although its archive exists: $needed" ;; esac
fi
strong=$(nm -D --undefined-only "$LIB" | awk '$1 == "U"' | grep -E 'GLIBCXX|CXXABI' || true)
[ -z "$strong" ] || fail "strong references to the C++ runtime: $strong"
echo "ok: no libstdc++ or libm in DT_NEEDED, C++ runtime referenced weakly"

cat > "$WORK/c.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
  char* p = malloc(100);
  strcpy(p, "x");
  FILE* f = fopen("/proc/self/maps", "r");
  char line[512];
  int cxx = 0, m = 0, js = 0, gcc = 0;
  while (fgets(line, sizeof line, f)) {
    if (strstr(line, "libstdc++")) cxx = 1;
    if (strstr(line, "/libm.so")) m = 1;
    if (strstr(line, "libjsmalloc")) js = 1;
    if (strstr(line, "libgcc_s")) gcc = 1;
  }
  printf("jsmalloc=%d libstdc++=%d libm=%d libgcc_s=%d\n", js, cxx, m, gcc);
  free(p);
  return 0;
}
C
cc -O1 -o "$WORK/c" "$WORK/c.c"
out=$(LD_PRELOAD=$LIB "$WORK/c")
[ "$out" = "jsmalloc=1 libstdc++=0 libm=0 libgcc_s=0" ] || fail "a C program under the library: $out"
echo "ok: a C program under LD_PRELOAD maps neither libstdc++, libm nor libgcc_s"

# Without libgcc_s the sampler still walks a C program's stacks (its own
# walker; libgcc is only the fallback): every sample of the heap profile
# names the program's two frames above malloc and main.
cat > "$WORK/sampled.c" <<'C'
#include <stdlib.h>
__attribute__((noinline)) void* leaf(size_t n) { return malloc(n); }
__attribute__((noinline)) void* mid(size_t n) {
  void* p = leaf(n);
  __asm__ volatile("" ::: "memory");
  return p;
}
int main(void) {
  static void* keep[2000];
  for (int i = 0; i < 2000; ++i) keep[i] = mid(1000 + (size_t)i);
  return keep[0] == NULL;
}
C
cc -O1 -o "$WORK/sampled" "$WORK/sampled.c"
JSMALLOC_SAMPLE_INTERVAL=4096 JSMALLOC_HEAP_PROFILE_ON_EXIT="$WORK/sampled.prof" LD_PRELOAD=$LIB "$WORK/sampled"
[ -s "$WORK/sampled.prof" ] || fail "no heap profile from the sampled C program"
samples=$(grep -c '@ 0x' "$WORK/sampled.prof" || true)
deep=$(awk '/@ 0x/ { n = 0; for (i = 1; i <= NF; ++i) if ($i ~ /^0x/) ++n; if (n >= 4) ++d } END { print d + 0 }' "$WORK/sampled.prof")
echo "sampled C program: $samples samples, $deep with 4 frames or more"
[ "$samples" -ge 50 ] && [ "$deep" -eq "$samples" ] || fail "stacks of a C program without libgcc_s: $samples samples, $deep deep"
echo "ok: a C program's samples have their whole stacks without libgcc_s"

cat > "$WORK/cxx.cc" <<'CXX'
#include <cstdio>
#include <new>
static int calls = 0;
static void handler() {
  if (++calls == 2) std::set_new_handler(nullptr);  // the second call gives up
}
int main() {
  size_t huge = size_t{1} << 62;
  try {
    void* p = ::operator new(huge);
    std::printf("no exception (%p)\n", p);
    return 1;
  } catch (const std::bad_alloc& e) {
    std::printf("bad_alloc: %s\n", e.what());
  }
  std::set_new_handler(handler);
  void* q = ::operator new(huge, std::nothrow);
  std::printf("nothrow: %s, handler called %d times\n", q == nullptr ? "null" : "memory", calls);
  std::set_new_handler([] { throw std::bad_alloc(); });
  void* r = ::operator new(huge, std::nothrow);
  std::printf("nothrow, throwing handler: %s\n", r == nullptr ? "null" : "memory");
  return 0;
}
CXX
c++ -O1 -o "$WORK/cxx" "$WORK/cxx.cc"
out=$(LD_PRELOAD=$LIB "$WORK/cxx")
echo "$out"
[ "$out" = "bad_alloc: std::bad_alloc
nothrow: null, handler called 2 times
nothrow, throwing handler: null" ] || fail "C++ program: $out"
echo "ok: C++ operator new: std::bad_alloc, the new-handler, nothrow forms"
