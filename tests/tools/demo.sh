#!/usr/bin/env bash
# scripts/demo as a user meets it, on a small cache so that it takes seconds:
# --help, every kind of bad argument (exit 2 before anything is built), and a
# whole run (2 rounds, glibc and JSMalloc) with the build under test, checking
# what it prints and keeps: the table with every figure, the verdict, the
# results file, JSMalloc's reports, and that both allocators did the same work.
# Timings are printed, never asserted.
#   demo.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
SRC=$(readlink -f "${1:?usage: demo.sh SOURCE_DIR BUILD_DIR}")
BUILD=$(readlink -f "${2:?}")
DEMO=$SRC/scripts/demo
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jsmalloc-demo-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$DEMO" --help > "$WORK/help" 2> "$WORK/help.err" || fail "--help exited with $?"
[ ! -s "$WORK/help.err" ] || fail "--help wrote to stderr"
for opt in --requests --threads --capacity-mib --idle-seconds --rounds --all --out --build-dir; do
  grep -q -- "$opt" "$WORK/help" || fail "--help does not describe $opt"
done
echo "ok: --help ($(wc -l < "$WORK/help") lines, exit 0)"

bad() {  # bad ARGS... : exit 2 with one message and the hint, nothing built
  local rc=0
  "$DEMO" "$@" > "$WORK/out" 2> "$WORK/err" || rc=$?
  [ "$rc" -eq 2 ] || fail "demo $*: exit $rc, want 2"
  [ "$(wc -l < "$WORK/err")" -eq 2 ] && grep -q '^scripts/demo: see scripts/demo --help$' "$WORK/err" ||
    fail "demo $*: stderr $(cat "$WORK/err")"
  [ ! -s "$WORK/out" ] || fail "demo $*: printed $(head -3 "$WORK/out")"
}
bad --requests abc
bad --requests 0
bad --threads -1
bad --capacity-mib 1.5
bad --rounds 0
bad --rounds
bad --idle-seconds 99999
bad --bogus
bad extra-argument
grep -q "'extra-argument'" "$WORK/err" || fail "the message does not name the argument"
bad --build-dir /nonexistent
echo "ok: bad arguments: exit 2, one line and the hint"

# The workload itself: --help, and a bad number named in one line.
KV=$BUILD/bench/kv_cache
"$KV" --help | grep -q -- '--capacity-mib' || fail "kv_cache --help"
for args in "--requests abc" "--threads 0" "--capacity-mib" "--nope 1"; do
  rc=0
  # shellcheck disable=SC2086
  "$KV" $args > /dev/null 2> "$WORK/err" || rc=$?
  [ "$rc" -eq 2 ] && grep -q '^kv_cache: ' "$WORK/err" || fail "kv_cache $args: exit $rc, $(cat "$WORK/err")"
done
echo "ok: kv_cache --help and bad arguments"

"$DEMO" --build-dir "$BUILD" --capacity-mib 32 --requests 30000 --rounds 2 --idle-seconds 0 \
  --out "$WORK/results" > "$WORK/out" 2> "$WORK/err" || { cat "$WORK/out" "$WORK/err"; fail "demo run exited $?"; }
for row in "throughput (requests/s)" "latency p50 (us)" "latency p99 (us)" "latency p99.9 (us)" \
           "latency max (us)" "peak RSS (MiB)" "RSS at the end (MiB)" "hugepage coverage"; do
  grep -qF "$row" "$WORK/out" || { cat "$WORK/out"; fail "no '$row' row"; }
done
grep -qE '^ +glibc +JSMalloc +JSMalloc/glibc$' "$WORK/out" || fail "no table header"
# A clean run writes nothing to stderr (the demo shows whatever one does).
! grep -q 'wrote to stderr' "$WORK/out" || fail "a run wrote to stderr: $(grep 'wrote to stderr' "$WORK/out" | head -2)"
verdict=$(grep '^Verdict: against glibc, JSMalloc had ' "$WORK/out") || fail "no verdict"
for figure in throughput "median latency" "p99 latency" "p99.9 latency" "max latency" "peak RSS" \
              "RSS at the end" "hugepage coverage"; do
  [[ $verdict == *"$figure"* ]] || fail "the verdict does not judge $figure: $verdict"
done
grep -qE '^\([0-9] figures better, [0-9] worse, [0-9] within noise\.\)$' "$WORK/out" || fail "no tally line"
grep -qF "medians of 2 rounds" "$WORK/out" || fail "no rounds note"
for f in summary.txt results.json glibc.round1.out glibc.round2.out jsmalloc.round1.out jsmalloc.round2.out \
         jsmalloc-report.round1.txt jsmalloc-report.round2.txt; do
  [ -s "$WORK/results/$f" ] || fail "results: no $f"
done
grep -qF "$WORK/results" "$WORK/out" || fail "the results' path is not printed"
grep -q '^JSMalloc .* pid [0-9]* (kv_cache) (' "$WORK/results/jsmalloc-report.round1.txt" || fail "no JSMalloc report"
python3 - "$WORK/results/results.json" <<'PY' || fail "results.json"
import json, sys
r = json.load(open(sys.argv[1]))
runs = r["runs"]
assert set(runs) == {"glibc", "jsmalloc"}, runs.keys()
sums = {x["checksum"] for rs in runs.values() for x in rs}
assert len(sums) == 1, sums
for name, rs in runs.items():
    assert len(rs) == 2 and all(x["allocator"] == name and x["bad"] == 0 and x["requests"] == 30000 for x in rs)
    m = r["medians"][name]
    assert m["throughput"] > 0 and 0 < m["p50_us"] <= m["p99_us"] <= m["p999_us"] <= m["max_us"], m
    assert m["peak_rss_mib"] >= m["end_rss_mib"] * 0.5 > 0, m
assert r["medians"]["glibc"]["coverage"] <= 1 and r["medians"]["jsmalloc"]["coverage"] <= 1
PY
echo "ok: a 2-round run: table, verdict ($(grep -o '([0-9] figures better.*' "$WORK/out")), results kept"
sed -n '/^ *glibc/,/^Verdict/p' "$WORK/out"
