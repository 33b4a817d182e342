#!/usr/bin/env bash
# scripts/jsmalloc-run against a build tree: the program's exit status and
# output pass through, the summary or full report and hugepage coverage come
# out, and each option takes effect.
#   jsmalloc_run.sh SCRIPT LIBDIR
set -euo pipefail
RUN=${1:?usage: $0 jsmalloc-run build-dir}
BUILD=$(readlink -f "${2:?}")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jsmalloc-run-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
PY=/usr/bin/python3

out=$("$RUN" --lib "$BUILD/libjsmalloc.so" -- $PY -c 'print(sum(range(10)))' 2> "$WORK/err")
[ "$out" = 45 ] || fail "program output '$out'"
grep -q '^jsmalloc-run: /usr/bin/python3 exited with status 0' "$WORK/err" || fail "no exit line: $(cat "$WORK/err")"
grep -q '^JSMalloc .*page size: 8 KiB' "$WORK/err" || fail "no summary banner"
grep -q '^Hugepage coverage: ' "$WORK/err" || fail "no hugepage coverage"
grep -q 'Size classes' "$WORK/err" && fail "summary printed the full report"
echo "ok: summary and coverage, output passes through"

set +e
"$RUN" --lib "$BUILD/libjsmalloc.so" -- $PY -c 'import sys; sys.exit(7)' 2> "$WORK/err"; rc=$?
set -e
[ "$rc" -eq 7 ] || fail "exit status $rc, want 7"
echo "ok: exit status passes through"

JSMALLOC_LIB="$BUILD/libjsmalloc.so" "$RUN" --stats -- $PY -c 'x = [bytes(100) for _ in range(1000)]' 2> "$WORK/err"
grep -q 'Size classes' "$WORK/err" || fail "--stats did not print the full report"
echo "ok: --stats"

"$RUN" --lib "$BUILD/libjsmalloc.so" --numa --check -- $PY -c 'pass' 2> "$WORK/err"
grep -q '^NUMA: aware, 1 partition' "$WORK/err" || fail "--numa: $(grep NUMA "$WORK/err")"
grep -q '^Heap checks: .*check mode on' "$WORK/err" || fail "--check not in effect"
echo "ok: --numa, --check"

"$RUN" --lib "$BUILD/libjsmalloc.so" --profile "$WORK/p.heap" -- $PY -c 'x = [bytes(50000) for _ in range(400)]' 2> "$WORK/err"
head -1 "$WORK/p.heap" | grep -q '^heap profile: ' || fail "--profile wrote no heap profile"
echo "ok: --profile"

if [ -f "$BUILD/libjsmalloc_32k.so" ]; then
  # Found beside a source tree's scripts/ (no --lib): ../build.
  JSMALLOC_LIB="$BUILD/libjsmalloc_32k.so" "$RUN" -- $PY -c 'pass' 2> "$WORK/err"
  grep -q 'page size: 32 KiB' "$WORK/err" || fail "32k library not used"
  echo "ok: 32k library"
fi

out=$("$RUN" --lib "$BUILD/libjsmalloc.so" --quiet -- $PY -c 'print(1)' 2>&1)
[ "$out" = 1 ] || fail "--quiet printed: $out"
set +e
"$RUN" --variant 3k -- true 2> /dev/null; rc=$?
"$RUN" --lib /nonexistent/libjsmalloc.so -- true 2> /dev/null; rc2=$?
set -e
[ "$rc" -eq 2 ] && [ "$rc2" -eq 127 ] || fail "bad variant gave $rc (want 2), missing library $rc2 (want 127)"
echo "ok: --quiet, bad input"
