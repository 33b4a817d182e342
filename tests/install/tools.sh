#!/usr/bin/env bash
# install.tools: the command-line tools as installed (bin/ of a temp prefix)
# find what they need in the install tree: jsmalloc-run its library (every
# variant), jsmalloc-hugepages on a child preloaded with the installed library,
# and jsmalloc-trace a bpftrace script by bare name in share/jsmalloc/probes
# and the library behind a jsmalloc-run command. The trace part needs root
# and bpftrace; without them it fails, or is skipped (exit 77) with
# JSMALLOC_TEST_PROBE_TESTS_ALLOW_SKIP=1, like the probes.* tests.
#   tools.sh BUILD_DIR SOURCE_DIR
. "$(dirname "$0")/common.sh"

P=$WORK/prefix
install_to "$P"
L=$P/$LIBDIR
B=$P/bin
PY='x = [bytes(i % 2000) for i in range(20000)]; print(len(x))'

# jsmalloc-run: the default library and each variant, found beside bin/.
[ -x "$B/jsmalloc-run" ] || fail "no bin/jsmalloc-run installed"
for v in "" $VARIANTS; do
  args=()
  [ -z "$v" ] || args=(--variant "${v#_}")
  out=$(env -u JSMALLOC_LIB "$B/jsmalloc-run" ${args[@]+"${args[@]}"} -- python3 -c "$PY" 2> "$WORK/run.err") ||
    { cat "$WORK/run.err" >&2; fail "jsmalloc-run ${args[*]}"; }
  [ "$out" = 20000 ] || fail "jsmalloc-run ${args[*]}: printed '$out'"
  grep -qF "($(readlink -f "$L/libjsmalloc$v.so"))" "$WORK/run.err" ||
    { cat "$WORK/run.err" >&2; fail "jsmalloc-run ${args[*]} did not use $L/libjsmalloc$v.so"; }
  grep -q '^jsmalloc-run: pid [0-9]* (.*): JSMalloc ' "$WORK/run.err" ||
    { cat "$WORK/run.err" >&2; fail "jsmalloc-run ${args[*]}: no per-process summary"; }
  ok "bin/jsmalloc-run ${args[*]}: $(head -1 "$WORK/run.err" | cut -c1-120)"
done

# jsmalloc-hugepages: its self-test on a child running on the installed library.
out=$(LD_PRELOAD=$L/libjsmalloc.so "$B/jsmalloc-hugepages" --self-test 2>&1) ||
  { echo "$out" >&2; fail "bin/jsmalloc-hugepages --self-test"; }
[[ $out == *"self-test ok"* && $out == *libjsmalloc* ]] || { echo "$out" >&2; fail "jsmalloc-hugepages self-test"; }
ok "bin/jsmalloc-hugepages --self-test: $(grep 'self-test ok' <<< "$out")"

# jsmalloc-trace's own answers: --help on stdout (exit 0), usage errors
# (exit 2), a process that does not exist (exit 1).
"$B/jsmalloc-trace" --help > "$WORK/help" 2> "$WORK/help.err" && [ ! -s "$WORK/help.err" ] &&
  grep -q 'exit 0' "$WORK/help" || fail "jsmalloc-trace --help: $(cat "$WORK/help.err")"
for args in "-p" "span_lifecycle -p abc" "span_lifecycle" "-x" "a.bt b.bt -p 1"; do
  rc=0
  # shellcheck disable=SC2086
  "$B/jsmalloc-trace" $args > /dev/null 2> "$WORK/err" || rc=$?
  [ "$rc" -eq 2 ] && grep -q '^jsmalloc-trace: see jsmalloc-trace --help' "$WORK/err" ||
    fail "jsmalloc-trace $args: exit $rc, $(cat "$WORK/err")"
done
rc=0
"$B/jsmalloc-trace" span_lifecycle -p 999999999 > /dev/null 2> "$WORK/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q 'no process 999999999' "$WORK/err" || fail "jsmalloc-trace -p 999999999: exit $rc"
ok "bin/jsmalloc-trace: --help, usage errors, a missing process"

# jsmalloc-trace SCRIPT-NAME -c 'jsmalloc-run -- CMD'.
reason=""
if [ "$(id -u)" -ne 0 ]; then reason="not root"
elif ! command -v bpftrace > /dev/null; then reason="bpftrace is not installed"
fi
if [ -n "$reason" ]; then
  echo "install.tools: cannot run jsmalloc-trace: $reason"
  if [ "${JSMALLOC_TEST_PROBE_TESTS_ALLOW_SKIP:-}" = 1 ]; then echo "skipped (JSMALLOC_TEST_PROBE_TESTS_ALLOW_SKIP=1)"; exit 77; fi
  fail "jsmalloc-trace needs root and bpftrace"
fi
# A page-size variant if the build has one (scripts/test's does), else the default.
tv=""
case " $VARIANTS " in *" _32k "*) tv="--variant 32k" ;; esac
(cd "$WORK" && env -u JSMALLOC_LIB timeout 120 "$B/jsmalloc-trace" span_lifecycle \
   -c "$B/jsmalloc-run $tv -- python3 -c '$PY'") > "$WORK/trace.out" 2> "$WORK/trace.err" ||
  { cat "$WORK/trace.out" "$WORK/trace.err" >&2; fail "bin/jsmalloc-trace span_lifecycle -c 'jsmalloc-run $tv -- ...'"; }
grep -q '=== jsmalloc span lifecycle' "$WORK/trace.out" || { cat "$WORK/trace.out" "$WORK/trace.err" >&2; fail "no span_lifecycle summary"; }
grep -qE '^@spans_allocated\[[0-9]+\]: [1-9]' "$WORK/trace.out" ||
  { cat "$WORK/trace.out" "$WORK/trace.err" >&2; fail "span_lifecycle saw no span allocations from the installed library"; }
ok "bin/jsmalloc-trace span_lifecycle -c 'bin/jsmalloc-run $tv -- python3 ...': $(grep -cE '^@' "$WORK/trace.out") map entries"
echo "install.tools passed"
