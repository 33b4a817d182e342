#!/usr/bin/env bash
# The shared library's code layout (cmake/hot_layout.cmake): the entry points,
# then the functions of cmake/hot_functions.txt, at the start of the code; a
# small program (threads, realloc, fork, sampled allocations), at the
# defaults and with JSMALLOC_* variables set, maps no page of the rest.
#   hot_layout.sh LIBJSMALLOC HOT_FUNCTIONS_TXT
set -euo pipefail
LIB=$(readlink -f "${1:?usage: hot_layout.sh LIBJSMALLOC HOT_FUNCTIONS_TXT}")
LIST=${2:?usage: hot_layout.sh LIBJSMALLOC HOT_FUNCTIONS_TXT}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jsmalloc-hot.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Section addresses (hex, no 0x).
section() { readelf -SW "$LIB" | awk -v n="$1" '{ sub(/^ *\[ *[0-9]+\] /, "") } $1 == n { print $3, $5 }'; }
read -r entry_addr entry_size < <(section jsmalloc_entry) || fail "no jsmalloc_entry section"
read -r hot_addr hot_size < <(section .text.jsmalloc_hot) || fail "no .text.jsmalloc_hot section"
read -r text_addr text_size < <(section .text) || fail "no .text section"
entry_lo=$((16#$entry_addr)); entry_hi=$((entry_lo + 16#$entry_size))
hot_lo=$((16#$hot_addr)); hot_hi=$((hot_lo + 16#$hot_size))
text_lo=$((16#$text_addr)); text_hi=$((text_lo + 16#$text_size))
printf 'entry points %#x-%#x, hot code %#x-%#x (%d KiB), the rest %#x-%#x (%d KiB)\n' \
  $entry_lo $entry_hi $hot_lo $hot_hi $(((hot_hi - hot_lo) >> 10)) $text_lo $text_hi $(((text_hi - text_lo) >> 10))
[ $hot_lo -ge $entry_hi ] && [ $((hot_lo - entry_hi)) -lt 64 ] || fail "the hot code does not follow the entry points"
[ $text_lo -ge $hot_hi ] || fail "the hot code is not before the rest of .text"

# The sampler's bracket of the entry points still holds them.
nm "$LIB" > "$WORK/nm"
addr_of() { awk -v s="$1" '$3 == s { print $1; exit }' "$WORK/nm"; }
for s in __start_jsmalloc_entry __stop_jsmalloc_entry; do [ -n "$(addr_of $s)" ] || fail "no $s"; done
[ $((16#$(addr_of __start_jsmalloc_entry))) -eq $entry_lo ] || fail "__start_jsmalloc_entry is not the section's start"
[ $((16#$(addr_of __stop_jsmalloc_entry))) -eq $entry_hi ] || fail "__stop_jsmalloc_entry is not the section's end"
for s in malloc free realloc _Znwm _ZdlPv; do
  a=$((16#$(addr_of $s))); [ $a -ge $entry_lo ] && [ $a -lt $entry_hi ] || fail "$s is outside jsmalloc_entry"
done

# Every listed function exists and sits in the hot code: a renamed or removed
# one means the list is stale (regenerate it: scripts/profile-hot-functions).
nm -S "$LIB" | awk 'NF == 4 { print $4, $1 }' | sed 's/\.localalias / /' | sort -u -k1,1 > "$WORK/defined"
grep -v '^#' "$LIST" | sort -u > "$WORK/listed"
missing=$(join -v1 "$WORK/listed" "$WORK/defined" | head -20)
[ -z "$missing" ] || fail "listed in $LIST but not in the library (regenerate with scripts/profile-hot-functions):
$missing"
outside=$(join "$WORK/listed" "$WORK/defined" | while read -r name addr; do
  a=$((16#$addr)); if [ $a -lt $hot_lo ] || [ $a -ge $hot_hi ]; then echo "$name"; fi; done | head -20)
[ -z "$outside" ] || fail "listed functions linked outside the hot code:
$outside"
echo "ok: $(wc -l < "$WORK/listed") listed functions, all in the hot code"

# A small program maps none of the rest. The kernel maps up to 64 KiB around
# a first touch (fault-around), in windows aligned to 64 KiB of address: the
# rest is checked from the first window boundary past the hot code to the
# last one before the end of .text (.fini follows it and runs at exit).
cat > "$WORK/p.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static void* work(void* arg) {
  void** held = arg;
  for (int i = 0; i < 20000; ++i) {
    free(held[i % 4096]);  /* frees of the main thread's objects: cross-thread */
    held[i % 4096] = malloc(16 + (size_t)(i * 37) % 3000);
  }
  return NULL;
}
int main(int argc, char** argv) {
  static void* held[4096];
  for (int i = 0; i < 4096; ++i) held[i] = malloc(8 + (size_t)(i * 131) % 2048);
  char* s = NULL; size_t n = 0;
  for (int i = 0; i < 2000; ++i) { s = realloc(s, n + 100); memset(s + n, 'x', 100); n += 100; }
  /* 64 MiB allocated in all: the sampler (one sample per 2 MiB on average)
     takes some for certain, and unwinds their stacks. */
  for (int i = 0; i < 64; ++i) { char* big = malloc(1 << 20); big[0] = 1; free(big); }
  pthread_t t; pthread_create(&t, NULL, work, held); pthread_join(t, NULL);
  pid_t pid = fork();
  if (pid == 0) { free(malloc(100)); _exit(0); }
  waitpid(pid, NULL, 0);
  for (int i = 0; i < 4096; ++i) free(held[i]);
  free(s);
  Dl_info info;
  if (!dladdr((void*)&malloc, &info)) return 2;
  uintptr_t base = (uintptr_t)info.dli_fbase;
  uintptr_t lo = (base + strtoull(argv[1], 0, 0) + 0xffff) & ~(uintptr_t)0xffff;
  uintptr_t hi = (base + strtoull(argv[2], 0, 0)) & ~(uintptr_t)0xffff;
  int pm = open("/proc/self/pagemap", O_RDONLY);
  if (pm < 0) return 3;
  int present = 0, pages = 0;
  for (uintptr_t a = lo; a < hi; a += 4096, ++pages) {
    uint64_t e = 0;
    if (pread(pm, &e, 8, (off_t)(a / 4096 * 8)) != 8) return 4;
    if (e >> 63) { ++present; printf("mapped: +%#lx\n", (unsigned long)(a - base)); }
  }
  printf("rest: %d of %d pages mapped\n", present, pages);
  return present == 0 ? 0 : 1;
}
C
cc -O1 -pthread -o "$WORK/p" "$WORK/p.c" -ldl
# At the defaults (no JSMALLOC_* variable), and with the variables set that
# bench/run and users set most: the option parser's paths run at start-up.
# (The check is made in main(), before the exit report runs.)
clean_env=$(env | sed -n 's/^\(JSMALLOC_[A-Za-z0-9_]*\)=.*/-u \1/p')
run_probe() {
  local what=$1; shift
  set +e
  env $clean_env "$@" LD_PRELOAD="$LIB" "$WORK/p" $hot_hi $text_hi > "$WORK/out" 2>&1
  local rc=$?
  set -e
  echo "$what: $(tail -1 "$WORK/out")"
  if [ $rc -ne 0 ]; then
    cat "$WORK/out"
    for off in $(sed -n 's/^mapped: +//p' "$WORK/out" | head -5); do
      echo "  page $off: $(addr2line -f -C -e "$LIB" "$off" | head -1) ... (what runs there is not listed)"
    done
    fail "a small program ($what) mapped code outside the hot section (rc $rc): regenerate cmake/hot_functions.txt"
  fi
}
run_probe "defaults"
run_probe "JSMALLOC_STATS_ON_EXIT=FILE JSMALLOC_SAMPLE_INTERVAL=2097152 JSMALLOC_PER_CPU=1" \
  JSMALLOC_STATS_ON_EXIT="$WORK/report.txt" JSMALLOC_SAMPLE_INTERVAL=2097152 JSMALLOC_PER_CPU=1
[ -s "$WORK/report.txt" ] || fail "no exit report: the variables were not in effect"
echo "ok: a small program maps none of the code past the hot section"
