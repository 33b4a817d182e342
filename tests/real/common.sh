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
  "$@" > "$WORK/$name.plain" 2> "$WORK/$name.plain.err" || fail "$name failed without JSMalloc"
  env LD_PRELOAD="$LIB" JSMALLOC_STATS_ON_EXIT="$report" "$@" \
    > "$WORK/$name.jsm" 2> "$WORK/$name.jsm.err" || { cat "$WORK/$name.jsm.err" >&2; fail "$name failed under JSMalloc"; }
  cmp -s "$WORK/$name.plain" "$WORK/$name.jsm" || { diff "$WORK/$name.plain" "$WORK/$name.jsm" | head -20 >&2; fail "$name: output differs"; }
  [ -s "$report" ] && grep -q '^JSMalloc ' "$report" || fail "$name: no JSMalloc report, so the library was not in use"
  grep -q 'jsmalloc:' "$WORK/$name.jsm.err" && { cat "$WORK/$name.jsm.err" >&2; fail "$name: JSMalloc complained"; }
  echo "ok: $name ($(grep -c '^JSMalloc ' "$report") processes reported, $(wc -c < "$WORK/$name.jsm") bytes of output identical)"
}
