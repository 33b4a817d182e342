#!/usr/bin/env bash
# CPython's own regression tests (Debian's libpython3.11-testsuite) with
# PYTHONMALLOC=malloc, so every Python object goes through malloc: the same
# set of tests run with and without JSMalloc preloaded (into the regrtest
# driver and every worker process it starts) must give the same per-test
# results. Compared: regrtest's exit status, its summary (which test files
# passed, failed, were skipped) and the outcome of every single test case
# from its JUnit XML (passed / failure / error / skipped / expected failure).
# Timing lines are not compared.
source "$(dirname "$0")/common.sh"

PY=/usr/bin/python3   # Debian's 3.11; PATH may have another python first
[ -x "$PY" ] || fail "$PY not found (apt-get install python3)"
"$PY" -c 'import test.libregrtest' 2>/dev/null \
  || fail "CPython's test suite is missing (apt-get install libpython3.11-testsuite)"

TESTS=(test_dict test_list test_unicode test_json test_threading test_gc
       test_set test_re test_collections test_bytes test_itertools
       test_deque test_sort test_heapq test_array test_weakref test_pickle
       test_tuple test_struct test_functools test_long test_zlib test_hashlib
       test_decimal test_memoryview test_ordered_dict test_descr test_marshal
       test_copy test_ast)
JOBS=${JSMALLOC_TEST_REAL_JOBS:-2}

# run_suite NAME [VAR=VALUE...]: regrtest in its own temporary directory.
run_suite() {
  local name=$1; shift
  local tmp="$WORK/$name.tmp" rc=0
  mkdir -p "$tmp"
  (cd "$tmp" && env "$@" TMPDIR="$tmp" PYTHONMALLOC=malloc \
     "$PY" -m test -j"$JOBS" --timeout 900 --junit-xml "$WORK/$name.xml" "${TESTS[@]}") \
    > "$WORK/$name.out" 2>&1 || rc=$?
  echo "$rc" > "$WORK/$name.rc"
  # regrtest's summary, from "== Tests result" up to the timing line.
  sed -n '/^== Tests result/,/^Total duration/p' "$WORK/$name.out" | grep -v '^Total duration' > "$WORK/$name.summary"
  [ -s "$WORK/$name.summary" ] || { tail -40 "$WORK/$name.out" >&2; fail "$name: regrtest printed no summary"; }
  # One line per test case: "<id> <outcome>", sorted.
  "$PY" - "$WORK/$name.xml" > "$WORK/$name.cases" <<'PYX'
import sys, xml.etree.ElementTree as ET
out = []
for case in ET.parse(sys.argv[1]).iter('testcase'):
    name = case.get('name')
    if name is None:           # a test whose subtests failed gets no result
        name, outcome = '<unnamed>', 'subtest-failure'
    else:
        outcome = 'passed'
        for tag, what in (('error', 'error'), ('failure', 'failure'), ('skipped', 'skipped'),
                          ('output', 'expected-failure'), ('outcome', 'unexpected-success')):
            if case.find(tag) is not None:
                outcome = what
                break
    out.append(f'{name} {outcome}')
print('\n'.join(sorted(out)))
PYX
}

SECONDS=0
run_suite plain
t_plain=$SECONDS
SECONDS=0
report="$WORK/cpython.report"
run_suite jsm LD_PRELOAD="$LIB" JSMALLOC_STATS_ON_EXIT="$report"
t_jsm=$SECONDS

same_files "cpython exit status" "$WORK/plain.rc" "$WORK/jsm.rc"
same_files "cpython regrtest summary" "$WORK/plain.summary" "$WORK/jsm.summary"
same_files "cpython per-test-case results" "$WORK/plain.cases" "$WORK/jsm.cases"
require_jsmalloc cpython "$report" "$WORK/jsm.out"
# The driver plus one worker process per test file at least.
[ "$JSM_REPORTS" -gt "${#TESTS[@]}" ] \
  || fail "cpython: only $JSM_REPORTS processes reported, expected more than ${#TESTS[@]} (driver + workers)"

cases=$(wc -l < "$WORK/jsm.cases")
counts=$(awk '{ n[$2]++ } END { for (k in n) printf "%s%s %d", (s++ ? ", " : ""), k, n[k] }' "$WORK/jsm.cases")
[ "$(cat "$WORK/plain.rc")" = 0 ] || echo "note: regrtest failed in both runs (same way): $(tr '\n' ' ' < "$WORK/plain.summary")"
echo "ok: cpython_tests (${#TESTS[@]} test files, $cases test cases identical: $counts;" \
     "regrtest rc $(cat "$WORK/jsm.rc"); $JSM_REPORTS processes reported; ${t_plain}s without, ${t_jsm}s with JSMalloc)"
