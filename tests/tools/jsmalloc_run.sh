#!/usr/bin/env bash
# scripts/jsmalloc-run against a build tree: the program's exit status and
# output pass through; --help and the usage errors; a missing command or
# library, or one that is not JSMalloc's, caught before anything runs; one
# summary per process, headed by its pid and name, folded past 8 processes;
# --summary-to; the elapsed time without bc; a program killed by a signal;
# and each option taking effect.
#   jsmalloc_run.sh SCRIPT LIBDIR
set -euo pipefail
RUN=$(readlink -f "${1:?usage: $0 jsmalloc-run build-dir}")
BUILD=$(readlink -f "${2:?}")
LIB=$BUILD/libjsmalloc.so
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jsmalloc-run-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; [ ! -s "$WORK/err" ] || sed 's/^/  stderr: /' "$WORK/err" >&2; exit 1; }
PY=/usr/bin/python3
unset JSMALLOC_LIB
# run ARGS...: runs jsmalloc-run ARGS with stdout in $WORK/out, stderr in
# $WORK/err, its exit status in $rc.
run() {
  set +e
  "$RUN" "$@" > "$WORK/out" 2> "$WORK/err"
  rc=$?
  set -e
}
# The summary headers: "jsmalloc-run: pid PID (NAME): JSMalloc ...".
HEAD_RE='^jsmalloc-run: pid [0-9]+ \([^)]*\): JSMalloc '
heads() { grep -E "$HEAD_RE" "$WORK/err" || true; }

# The library's banner must carry the pid and name ("JSMalloc V pid N (NAME)
# (..."): the summary headers, the grouping and folding checks below need it.
LD_PRELOAD=$LIB JSMALLOC_STATS_ON_EXIT=$WORK/banner $PY -c pass
grep -qE '^JSMalloc [^ ]+ pid [0-9]+ \(python3\) \(front-end: ' "$WORK/banner" ||
  fail "$LIB prints no 'JSMalloc V pid N (NAME) (' banner: $(grep '^JSMalloc ' "$WORK/banner" | cut -c1-80)"
echo "ok: the library's banner has the pid and name"

# --- Summary of one process ------------------------------------------------------
run --lib "$LIB" -- $PY -c 'print(sum(range(10)))'
[ "$rc" -eq 0 ] || fail "exit status $rc"
[ "$(cat "$WORK/out")" = 45 ] || fail "program output '$(cat "$WORK/out")'"
grep -q '^jsmalloc-run: /usr/bin/python3 exited with status 0 after [0-9]*\.[0-9][0-9] s; 1 process(es) reported (/' "$WORK/err" ||
  fail "no exit line"
# Needs the library's banner with the pid (JSMalloc V pid N (NAME) (...)).
grep -qE '^jsmalloc-run: pid [0-9]+ \(python3\): JSMalloc [^ ]+, per-(CPU|thread) caches, .* back-end, 8 KiB pages$' "$WORK/err" ||
  fail "no 'jsmalloc-run: pid N (python3): JSMalloc ...' summary header"
grep -q '^  Hugepage coverage: ' "$WORK/err" || fail "no hugepage coverage"
grep -q '^  MALLOC: .*Bytes in use by application' "$WORK/err" || fail "no bytes in use"
grep -q 'Size classes' "$WORK/err" && fail "summary printed the full report"
grep -qv -e '^jsmalloc-run: ' -e '^  ' "$WORK/err" && fail "summary line neither a header nor indented"
echo "ok: summary headed 'jsmalloc-run: pid N (python3)', coverage, output passes through"

run --lib "$LIB" -- $PY -c 'import sys; sys.exit(7)'
[ "$rc" -eq 7 ] || fail "exit status $rc, want 7"
grep -q '^jsmalloc-run: /usr/bin/python3 exited with status 7 ' "$WORK/err" || fail "exit line for status 7"
echo "ok: exit status passes through"

# --- --help and usage errors -------------------------------------------------------
comment_lines=$(awk 'NR == 1 { next } !/^#/ { exit } { n++ } END { print n }' "$RUN")
for h in --help -h; do
  run "$h"
  [ "$rc" -eq 0 ] || fail "$h: exit status $rc, want 0"
  [ ! -s "$WORK/err" ] || fail "$h wrote to stderr"
  [ "$(wc -l < "$WORK/out")" -eq "$comment_lines" ] ||
    fail "$h printed $(wc -l < "$WORK/out") lines of the $comment_lines of the usage comment"
  grep -q '^Usage: jsmalloc-run \[OPTIONS\] \[--\] CMD' "$WORK/out" || fail "$h: no usage line"
  grep -qE '^  -h, --help +print this help on stdout, and exit$' "$WORK/out" || fail "$h: no -h/--help line"
  grep -qE '^  --print-lib +print the path of the library it would preload, and exit$' "$WORK/out" ||
    fail "$h: no --print-lib line"
  grep -qE '^  --summary-to FILE +write the summaries' "$WORK/out" || fail "$h: no --summary-to line"
  [ "$(tail -1 "$WORK/out")" = "or a --summary-to FILE that cannot be written. See docs/tuning.md (Tools)." ] ||
    fail "$h: does not end with the end of the usage text: '$(tail -1 "$WORK/out")'"
done
echo "ok: --help and -h print the whole usage ($comment_lines lines) on stdout, exit 0"

usage_error() {  # WANTED-MESSAGE ARGS...
  local want=$1; shift
  run "$@"
  [ "$rc" -eq 2 ] || fail "jsmalloc-run $*: exit status $rc, want 2"
  [ ! -s "$WORK/out" ] || fail "jsmalloc-run $*: wrote to stdout"
  [ "$(head -1 "$WORK/err")" = "jsmalloc-run: $want" ] || fail "jsmalloc-run $*: error '$(head -1 "$WORK/err")'"
  [ "$(sed -n 2p "$WORK/err")" = "jsmalloc-run: see jsmalloc-run --help" ] || fail "jsmalloc-run $*: no --help hint"
  [ "$(wc -l < "$WORK/err")" -eq 2 ] || fail "jsmalloc-run $*: more than an error and a hint"
}
usage_error "unknown option: --bogus" --bogus -- true
usage_error "option --lib needs an argument" --lib
usage_error "option --summary-to needs a non-empty argument" --summary-to= -- true
usage_error "option --profile needs an argument" --profile
usage_error "no command to run" --lib "$LIB"
usage_error "no command to run" --lib "$LIB" --
usage_error "--variant must be 4k, 8k, 32k or 256k (got '3k')" --variant 3k -- true
echo "ok: usage errors: one line, a hint, exit 2"

# --- Missing command ---------------------------------------------------------------
run --lib "$LIB" -- no-such-command-jsmalloc-run-test arg
[ "$rc" -eq 127 ] || fail "missing command: exit status $rc, want 127"
[ "$(cat "$WORK/err")" = "jsmalloc-run: command not found: no-such-command-jsmalloc-run-test" ] ||
  fail "missing command: stderr"
printf 'echo hi\n' > "$WORK/not-executable"
run --lib "$LIB" -- "$WORK/not-executable"
[ "$rc" -eq 127 ] && [ "$(cat "$WORK/err")" = "jsmalloc-run: command not found: $WORK/not-executable" ] ||
  fail "non-executable path: exit status $rc"
run --lib "$LIB" -- "$WORK"
[ "$rc" -eq 127 ] && grep -qF "command not found: $WORK" "$WORK/err" || fail "directory as command: exit status $rc"
echo "ok: command not found: exit 127 before running"

# --- Library checks ------------------------------------------------------------------
run --lib /nonexistent/libjsmalloc.so -- true
[ "$rc" -eq 127 ] && [ "$(cat "$WORK/err")" = "jsmalloc-run: --lib /nonexistent/libjsmalloc.so: no such file" ] ||
  fail "--lib missing: exit status $rc"
JSMALLOC_LIB=/nonexistent/libjsmalloc.so run -- true
[ "$rc" -eq 127 ] && [ "$(cat "$WORK/err")" = "jsmalloc-run: JSMALLOC_LIB=/nonexistent/libjsmalloc.so: no such file" ] ||
  fail "JSMALLOC_LIB missing: exit status $rc"
other=""
for f in /lib/$(uname -m)-linux-gnu/libz.so.1 /lib/$(uname -m)-linux-gnu/libm.so.6 /usr/lib64/libm.so.6 /lib64/libm.so.6; do
  if [ -f "$f" ]; then other=$f; break; fi
done
[ -n "$other" ] || fail "no libz or libm to try as a non-JSMalloc library"
run --lib "$other" -- true
[ "$rc" -eq 2 ] && [ "$(cat "$WORK/err")" = "jsmalloc-run: --lib $other: not a JSMalloc library (no jsmalloc_get_stats symbol)" ] ||
  fail "--lib $other: exit status $rc"
JSMALLOC_LIB=$other run -- true
[ "$rc" -eq 2 ] && [ "$(cat "$WORK/err")" = "jsmalloc-run: JSMALLOC_LIB=$other: not a JSMalloc library (no jsmalloc_get_stats symbol)" ] ||
  fail "JSMALLOC_LIB=$other: exit status $rc"
run --lib "$WORK/not-executable" -- true
[ "$rc" -eq 2 ] && grep -qF "jsmalloc-run: --lib $WORK/not-executable: not a JSMalloc library" "$WORK/err" ||
  fail "--lib on a text file: exit status $rc"
# A copy of the script with no library beside it: where it looked.
mkdir -p "$WORK/alone/bin"
cp "$RUN" "$WORK/alone/bin/jsmalloc-run"
set +e
"$WORK/alone/bin/jsmalloc-run" -- true 2> "$WORK/err"; rc=$?
set -e
[ "$rc" -eq 127 ] || fail "no library anywhere: exit status $rc"
grep -qF "jsmalloc-run: cannot find libjsmalloc.so (looked in $WORK/alone/lib/$(uname -m)-linux-gnu, $WORK/alone/lib, $WORK/alone/lib64, $WORK/alone/build; set --lib or JSMALLOC_LIB)" "$WORK/err" ||
  fail "no library anywhere: message"
run --lib "$LIB" --print-lib
[ "$rc" -eq 0 ] && [ "$(cat "$WORK/out")" = "$(readlink -f "$LIB")" ] || fail "--print-lib"
echo "ok: library missing (127), not JSMalloc's (2), not found anywhere (127, where it looked); --print-lib"

# --- Several processes ----------------------------------------------------------------
printf '#!/bin/sh\n/bin/true\n/bin/echo three > /dev/null\n%s -c pass\n' "$PY" > "$WORK/three.sh"
chmod +x "$WORK/three.sh"
run --lib "$LIB" -- "$WORK/three.sh"
[ "$rc" -eq 0 ] || fail "three.sh: exit status $rc"
grep -qF "three.sh exited with status 0 after " "$WORK/err" && grep -qF "; 3 process(es) reported" "$WORK/err" ||
  fail "three.sh: exit line"
[ "$(heads | wc -l)" -eq 3 ] || fail "three.sh: $(heads | wc -l) summary headers, want 3"
[ "$(heads | sed -E 's/^jsmalloc-run: pid [0-9]+ \(([^)]*)\).*/\1/' | sort | tr '\n' ' ')" = "echo python3 true " ] ||
  fail "three.sh: summaries of $(heads | sed -E 's/^jsmalloc-run: pid [0-9]+ \(([^)]*)\).*/\1/' | tr '\n' ' ')"
[ "$(heads | awk '{ print $3 }' | sort -u | wc -l)" -eq 3 ] || fail "three.sh: the pids are not distinct"
# Grouped: under each header its own lines, one "Bytes in use" and one
# coverage line each.
HEAD_RE=$HEAD_RE awk '
  $0 ~ ENVIRON["HEAD_RE"] { n++; next }
  /^jsmalloc-run: / { next }
  /Bytes in use by application/ { use[n]++ }
  /^  Hugepage coverage: / { cov[n]++ }
  END { for (i = 1; i <= n; i++) if (use[i] != 1 || cov[i] != 1) exit 1; exit n != 3 }
' "$WORK/err" || fail "three.sh: the summaries are not grouped per process"
echo "ok: a shell script running 3 processes: 3 summaries, each with its own pid and lines"

# More than 8: the process jsmalloc-run started (the script execs python3)
# is shown, the rest counted by name.
{
  echo '#!/bin/sh'
  echo 'i=0; while [ $i -lt 30 ]; do /bin/true; i=$((i + 1)); done'
  echo 'for i in 1 2 3 4 5 6 7; do sed -n 1p /dev/null; done'
  echo "exec $PY -c pass"
} > "$WORK/many.sh"
chmod +x "$WORK/many.sh"
run --lib "$LIB" -- "$WORK/many.sh"
[ "$rc" -eq 0 ] && grep -qF "; 38 process(es) reported" "$WORK/err" || fail "many.sh: exit status $rc or count"
[ "$(heads | wc -l)" -eq 1 ] && heads | grep -qF '(python3)' || fail "many.sh: shown $(heads | wc -l) summaries, want python3's"
[ "$(grep -c '^jsmalloc-run: ' "$WORK/err")" -eq 3 ] || fail "many.sh: more than the exit, header and fold lines"
grep -qx 'jsmalloc-run: 37 other processes reported (true x30, sed x7); --stats or --summary-to FILE for all' "$WORK/err" ||
  fail "many.sh: no fold line"
# The same by name: python3 running 9 /bin/true and another python3.
run --lib "$LIB" -- $PY -c 'import subprocess, sys
for _ in range(9): subprocess.run(["/bin/true"])
subprocess.run([sys.executable, "-c", "pass"])'
[ "$rc" -eq 0 ] && grep -qF "; 11 process(es) reported" "$WORK/err" || fail "python3 x2 + true x9: exit status $rc or count"
[ "$(heads | grep -c '(python3)')" -eq 2 ] && [ "$(heads | wc -l)" -eq 2 ] || fail "python3 x2 + true x9: summaries shown"
grep -qx 'jsmalloc-run: 9 other processes reported (true x9); --stats or --summary-to FILE for all' "$WORK/err" ||
  fail "python3 x2 + true x9: no fold line"
# Neither the started process nor one of its name reported (dash runs the
# commands and exits without exit handlers): the 3 that used the most memory.
run --lib "$LIB" -- sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done; '"$PY"' -c "x = bytes(30 << 20)"; sort /dev/null'
[ "$rc" -eq 0 ] && [ "$(heads | wc -l)" -eq 3 ] && heads | grep -qF '(python3)' ||
  fail "sh -c with 12 processes: want 3 summaries, python3's (the largest) among them: $(heads)"
grep -qx 'jsmalloc-run: 9 other processes reported (true x9); --stats or --summary-to FILE for all' "$WORK/err" ||
  fail "sh -c with 12 processes: no fold line"
echo "ok: more than 8 processes: the program's summaries and one line for the rest"

# --- --summary-to ------------------------------------------------------------------------
mkdir -p "$WORK/cwd/sub"
echo STALE > "$WORK/cwd/sub/summary.txt"
set +e
(cd "$WORK/cwd" && "$RUN" --lib "$LIB" --summary-to sub/summary.txt -- "$WORK/many.sh" > "$WORK/out" 2> "$WORK/err")
rc=$?
set -e
S=$WORK/cwd/sub/summary.txt
[ "$rc" -eq 0 ] && [ -f "$S" ] || fail "--summary-to: exit status $rc, no file"
grep -q STALE "$S" && fail "--summary-to: the file was not overwritten"
head -1 "$S" | grep -qF "many.sh exited with status 0 after " || fail "--summary-to: no exit line first in the file"
[ "$(grep -cE "$HEAD_RE" "$S")" -eq 38 ] || fail "--summary-to: $(grep -cE "$HEAD_RE" "$S") summaries in the file, want all 38"
grep -q 'other processes reported' "$S" && fail "--summary-to: folded the file"
[ "$(grep -c '^  Hugepage coverage: ' "$S")" -eq 38 ] || fail "--summary-to: coverage lines in the file"
[ "$(wc -l < "$WORK/err")" -eq 2 ] || fail "--summary-to: stderr has more than 2 lines"
grep -qF "many.sh exited with status 0 after" "$WORK/err" || fail "--summary-to: no exit line on stderr"
grep -qx 'jsmalloc-run: summary of 38 process(es) written to sub/summary.txt' "$WORK/err" ||
  fail "--summary-to: no 'written to' line"
heads | grep -q . && fail "--summary-to: summaries also on stderr"
grep -q 'Hugepage coverage' "$WORK/err" && fail "--summary-to: report lines on stderr"
run --lib "$LIB" --stats --summary-to="$WORK/full.txt" -- $PY -c pass
[ "$rc" -eq 0 ] && grep -q 'Size classes' "$WORK/full.txt" || fail "--stats --summary-to: no full report in the file"
grep -q 'Size classes' "$WORK/err" && fail "--stats --summary-to: full report on stderr"
grep -qx "jsmalloc-run: full report of 1 process(es) written to $WORK/full.txt" "$WORK/err" ||
  fail "--stats --summary-to: no 'written to' line"
run --lib "$LIB" --quiet --summary-to "$WORK/quiet.txt" -- $PY -c pass
[ "$rc" -eq 0 ] && [ ! -s "$WORK/err" ] && grep -qE "$HEAD_RE" "$WORK/quiet.txt" || fail "--quiet --summary-to"
for bad in "$WORK/no-such-dir/summary.txt" "$WORK/cwd"; do
  run --lib "$LIB" --summary-to "$bad" -- /bin/touch "$WORK/ran"
  [ "$rc" -eq 2 ] || fail "--summary-to $bad: exit status $rc, want 2"
  [ ! -e "$WORK/ran" ] || fail "--summary-to $bad: the program ran"
  grep -qF "jsmalloc-run: --summary-to $bad: " "$WORK/err" || fail "--summary-to $bad: message does not name it"
done
echo "ok: --summary-to FILE (relative, overwritten, all summaries; --stats; --quiet; unwritable: 2 before running)"

# --- Elapsed time without bc -----------------------------------------------------------
grep -qw bc "$RUN" && fail "the script mentions bc"
mkdir "$WORK/nobc"
cp -s /usr/bin/* "$WORK/nobc/" 2> /dev/null || true
rm -f "$WORK/nobc/bc"
[ -e "$WORK/nobc/bash" ] && ! PATH=$WORK/nobc command -v bc > /dev/null || fail "could not make a PATH without bc"
PATH=$WORK/nobc run --lib "$LIB" -- sleep 0.2
[ "$rc" -eq 0 ] || fail "sleep 0.2 without bc: exit status $rc"
t=$(sed -n 's/^jsmalloc-run: sleep exited with status 0 after \([0-9]*\.[0-9][0-9]\) s; .*/\1/p' "$WORK/err")
[ -n "$t" ] && awk -v t="$t" 'BEGIN { exit !(t >= 0.18 && t < 30) }' || fail "sleep 0.2 took '$t' s"
echo "ok: elapsed time $t s for sleep 0.2 with no bc on PATH"

# --- Killed by a signal ----------------------------------------------------------------------
run --lib "$LIB" -- /bin/sh -c '/bin/true; kill -9 $$'
[ "$rc" -eq 137 ] || fail "SIGKILL: exit status $rc, want 137"
grep -q '^jsmalloc-run: /bin/sh killed by signal 9 (SIGKILL) after [0-9.]* s; 1 process(es) reported' "$WORK/err" ||
  fail "SIGKILL: exit line"
grep -q 'Killed' "$WORK/err" && fail "SIGKILL: the shell's 'Killed' notice leaked"
run --lib "$LIB" -- $PY -c 'import os, signal; os.kill(os.getpid(), signal.SIGTERM)'
[ "$rc" -eq 143 ] && grep -q '^jsmalloc-run: /usr/bin/python3 killed by signal 15 (SIGTERM) after ' "$WORK/err" ||
  fail "SIGTERM: exit status $rc"
grep -q '^jsmalloc-run: no JSMalloc report: the signal ended the program' "$WORK/err" || fail "SIGTERM: no-report line"
echo "ok: killed by a signal: said so, exit 128+N"

# --- Options -----------------------------------------------------------------------------------
JSMALLOC_LIB="$LIB" run --stats -- $PY -c 'x = [bytes(100) for _ in range(1000)]'
grep -q 'Size classes' "$WORK/err" || fail "--stats did not print the full report"
grep -qE '^JSMalloc [^ ]+ pid [0-9]+ \(python3\) \(front-end: ' "$WORK/err" || fail "--stats: no banner with the pid"
echo "ok: --stats (JSMALLOC_LIB)"

run --lib "$LIB" --numa --check -- $PY -c 'pass'
grep -q '^  NUMA: aware, 1 partition' "$WORK/err" || fail "--numa: $(grep NUMA "$WORK/err")"
grep -q '^  Heap checks: .*check mode on' "$WORK/err" || fail "--check not in effect"
echo "ok: --numa, --check"

run --lib "$LIB" --profile "$WORK/p.heap" -- $PY -c 'x = [bytes(50000) for _ in range(400)]'
head -1 "$WORK/p.heap" | grep -q '^heap profile: ' || fail "--profile wrote no heap profile"
echo "ok: --profile"

if [ -f "$BUILD/libjsmalloc_32k.so" ]; then
  JSMALLOC_LIB="$BUILD/libjsmalloc_32k.so" run -- $PY -c 'pass'
  grep -qE "$HEAD_RE.*, 32 KiB pages$" "$WORK/err" || fail "32k library not used"
  # Found beside a source tree's scripts/ in ../build (no --lib): a tree of
  # links whose build/ is the build under test, wherever that is.
  mkdir -p "$WORK/tree/scripts"
  cp "$RUN" "$WORK/tree/scripts/jsmalloc-run"  # a copy: the script finds itself with readlink -f
  ln -s "$BUILD" "$WORK/tree/build"
  RUN_SAVED=$RUN RUN=$WORK/tree/scripts/jsmalloc-run
  run --variant 32k --print-lib
  RUN=$RUN_SAVED
  [ "$(cat "$WORK/out")" = "$(readlink -f "$BUILD/libjsmalloc_32k.so")" ] || fail "--variant 32k --print-lib: $(cat "$WORK/out" "$WORK/err")"
  echo "ok: 32k library"
fi

run --lib "$LIB" --quiet -- $PY -c 'print(1)'
[ "$(cat "$WORK/out")" = 1 ] && [ ! -s "$WORK/err" ] || fail "--quiet printed: $(cat "$WORK/err")"
echo "ok: --quiet"

# --- A library with the old banner (no pid) ------------------------------------------------
if command -v cc > /dev/null 2>&1; then
  cat > "$WORK/old.c" << 'EOF'
#include <stdio.h>
#include <stdlib.h>
void jsmalloc_get_stats(void) {}
__attribute__((destructor)) static void Report(void) {
  const char* path = getenv("JSMALLOC_STATS_ON_EXIT");
  FILE* f = path ? fopen(path, "a") : NULL;
  if (f == NULL) return;
  fputs("JSMalloc 0.0.9 (front-end: per-thread caches, back-end: legacy page heap, page size: 32 KiB, size classes: 60)\n"
        "MALLOC:            1000 (0.0 MiB) Bytes in use by application\n"
        "Size classes (KiB held at each level)\n"
        "Hugepage coverage: 1.00% of the 0.1 MiB in use is on hugepages now\n", f);
  fclose(f);
}
EOF
  cc -shared -fPIC -o "$WORK/libold.so" "$WORK/old.c"
  run --lib "$WORK/libold.so" -- /bin/true
  [ "$rc" -eq 0 ] || fail "old banner: exit status $rc"
  grep -qx 'jsmalloc-run: report 1 (no pid: older library): JSMalloc 0.0.9, per-thread caches, legacy page heap back-end, 32 KiB pages' "$WORK/err" ||
    fail "old banner: no header"
  grep -qx '  Hugepage coverage: 1.00% of the 0.1 MiB in use is on hugepages now' "$WORK/err" || fail "old banner: no coverage"
  grep -q 'Size classes' "$WORK/err" && fail "old banner: the summary printed the full report"
  echo "ok: a report with the old banner (no pid)"
fi
