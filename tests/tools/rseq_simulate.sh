#!/usr/bin/env bash
# JSMALLOC_RSEQ_SIMULATE=1 (instruction counting of the per-CPU fast path)
# takes effect only in libjsmalloc_rseq_sim.so and only under valgrind, which
# refuses rseq: the production library has no such mode, and the simulation
# library ignores the variable outside valgrind.
set -euo pipefail
LIB=$(readlink -f "${1:?usage: $0 libjsmalloc.so libjsmalloc_rseq_sim.so}")
SIM=$(readlink -f "${2:?usage: $0 libjsmalloc.so libjsmalloc_rseq_sim.so}")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jsmalloc-sim.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
command -v valgrind > /dev/null || { echo "FAIL: valgrind not installed"; exit 1; }

# The production library holds no simulation code at all.
if grep -q vgpreload_core "$LIB"; then echo "FAIL: $LIB contains the simulation"; exit 1; fi

env LD_PRELOAD="$SIM" JSMALLOC_RSEQ_SIMULATE=1 JSMALLOC_STATS_ON_EXIT="$WORK/native" \
  sort -n <(seq 20000 -1 1) > "$WORK/native.out"
head -1 "$WORK/native"
grep -q '^JSMalloc .*SIMULATED' "$WORK/native" && { echo "FAIL: simulation enabled outside valgrind"; exit 1; }

env LD_PRELOAD="$LIB" JSMALLOC_RSEQ_SIMULATE=1 JSMALLOC_STATS_ON_EXIT="$WORK/prod" \
  valgrind --tool=none -q sort --parallel=1 -n "$WORK/native.out" > "$WORK/prod.out"
head -1 "$WORK/prod"
grep -q '^JSMalloc .*SIMULATED' "$WORK/prod" && { echo "FAIL: the production library simulated rseq"; exit 1; }
grep -q '^JSMalloc .*per-thread' "$WORK/prod" || { echo "FAIL: the production library under valgrind is not per-thread"; exit 1; }

env LD_PRELOAD="$SIM" JSMALLOC_RSEQ_SIMULATE=1 JSMALLOC_STATS_ON_EXIT="$WORK/vg" \
  valgrind --tool=none -q sort --parallel=1 -n "$WORK/native.out" > "$WORK/vg.out"
head -1 "$WORK/vg"
grep -q '^JSMalloc .*rseq: SIMULATED' "$WORK/vg" || { echo "FAIL: not simulated under valgrind"; exit 1; }
for f in prod vg; do
  cmp -s "$WORK/native.out" "$WORK/$f.out" || { echo "FAIL: output differs under valgrind ($f)"; exit 1; }
done
seq 1 20000 | cmp -s - "$WORK/vg.out" || { echo "FAIL: wrong sort output"; exit 1; }
echo "ok: simulated per-CPU only in the simulation library, and only under valgrind"
