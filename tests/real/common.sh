# Shared by the LD_PRELOAD tests: run a command with and without JSMalloc,
# compare its output byte for byte, and prove JSMalloc was in use from its
# own exit report (one per process that loaded it).
set -euo pipefail

LIB=${1:?usage: $0 /path/to/libjsmalloc.so}
LIB=$(readlink -f "$LIB")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jsmalloc-real.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# run_compare NAME CMD...: stdout of CMD with and without the preload must
# match; with it, the report file must hold at least one "JSMalloc " line.
run_compare() {
  local name=$1; shift
  local report="$WORK/$name.report"
  "$@" > "$WORK/$name.plain" 2> "$WORK/$name.plain.err" || { tail -5 "$WORK/$name.plain.err" >&2; fail "$name failed without JSMalloc"; }
  env LD_PRELOAD="$LIB" JSMALLOC_STATS_ON_EXIT="$report" "$@" \
    > "$WORK/$name.jsm" 2> "$WORK/$name.jsm.err" || { cat "$WORK/$name.jsm.err" >&2; fail "$name failed under JSMalloc"; }
  cmp -s "$WORK/$name.plain" "$WORK/$name.jsm" || { diff "$WORK/$name.plain" "$WORK/$name.jsm" | head -20 >&2; fail "$name: output differs"; }
  [ -s "$report" ] && grep -q '^JSMalloc ' "$report" || fail "$name: no JSMalloc report, so the library was not in use"
  grep -q 'jsmalloc:' "$WORK/$name.jsm.err" && { cat "$WORK/$name.jsm.err" >&2; fail "$name: JSMalloc complained"; }
  echo "ok: $name ($(grep -c '^JSMalloc ' "$report") processes reported, $(wc -c < "$WORK/$name.jsm") bytes of output identical)"
}

# --- Helpers for the issue 8 suites (cpython_tests, redis, sqlite_schema, git) ---

# require_jsmalloc NAME REPORT [ERRFILE...]: REPORT (a JSMALLOC_STATS_ON_EXIT
# file) must hold at least one "JSMalloc " line, so the library was in use, and
# no ERRFILE may hold a "jsmalloc:" complaint. Sets JSM_REPORTS to the number
# of processes that reported.
require_jsmalloc() {
  local name=$1 report=$2 f; shift 2
  [ -s "$report" ] && grep -q '^JSMalloc ' "$report" || fail "$name: no JSMalloc report in $report, so the library was not in use"
  for f in "$@"; do
    if [ -f "$f" ] && grep -q 'jsmalloc:' "$f"; then
      grep 'jsmalloc:' "$f" | head -20 >&2
      fail "$name: JSMalloc complained (in $f)"
    fi
  done
  JSM_REPORTS=$(grep -c '^JSMalloc ' "$report")
}

# same_files NAME PLAIN JSM: the two files must be identical (shows a diff if not).
same_files() {
  cmp -s "$2" "$3" && return 0
  diff "$2" "$3" | head -40 >&2
  fail "$1: differs with and without JSMalloc"
}
