#!/usr/bin/env bash
# JSMALLOC_RSEQ_SIMULATE=1 (instruction counting of the per-CPU fast path)
# must take effect under valgrind, which refuses rseq, and nowhere else.
set -euo pipefail
LIB=$(readlink -f "${1:?usage: $0 libjsmalloc.so}")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jsmalloc-sim.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
command -v valgrind > /dev/null || { echo "FAIL: valgrind not installed"; exit 1; }

env LD_PRELOAD="$LIB" JSMALLOC_RSEQ_SIMULATE=1 JSMALLOC_STATS_ON_EXIT="$WORK/native" \
  sort -n <(seq 20000 -1 1) > "$WORK/native.out"
head -1 "$WORK/native"
grep -q '^JSMalloc .*SIMULATED' "$WORK/native" && { echo "FAIL: simulation enabled outside valgrind"; exit 1; }

env LD_PRELOAD="$LIB" JSMALLOC_RSEQ_SIMULATE=1 JSMALLOC_STATS_ON_EXIT="$WORK/vg" \
  valgrind --tool=none -q sort --parallel=1 -n "$WORK/native.out" > "$WORK/vg.out"
head -1 "$WORK/vg"
grep -q '^JSMalloc .*rseq: SIMULATED' "$WORK/vg" || { echo "FAIL: not simulated under valgrind"; exit 1; }
cmp -s "$WORK/native.out" "$WORK/vg.out" || { echo "FAIL: output differs under simulation"; exit 1; }
seq 1 20000 | cmp -s - "$WORK/vg.out" || { echo "FAIL: wrong sort output"; exit 1; }
echo "ok: simulated per-CPU under valgrind only"
