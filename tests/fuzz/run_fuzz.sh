#!/usr/bin/env bash
# Runs one libFuzzer target for ctest (tests/fuzz/fuzz.cmake).
#
#   run_fuzz.sh fuzz   BINARY NAME SEED_DIR WORK_DIR [libFuzzer flags...]
#       Fuzzes for JSMALLOC_TEST_FUZZ_SECONDS seconds (default 20), starting from
#       the seeds (read only) and the corpus grown by earlier runs in
#       WORK_DIR/corpus. Crash inputs land in WORK_DIR/artifacts/.
#   run_fuzz.sh replay BINARY NAME REGRESSION_DIR WORK_DIR
#       Runs every input of REGRESSION_DIR (but its README) once.
#
# Both print "fuzz-executions: NAME MODE N" and write N to
# WORK_DIR/executions.MODE, so scripts/test can add them up.
set -uo pipefail
mode=$1 bin=$2 name=$3 dir=$4 work=$5
shift 5
secs=${JSMALLOC_TEST_FUZZ_SECONDS:-20}
mkdir -p "$work/corpus" "$work/artifacts"
log="$work/$mode.log"

# Sanitizer reports must end the run with a stack; leaks are reported too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

record() {  # record N
  echo "fuzz-executions: $name $mode $1"
  echo "$1" > "$work/executions.$mode"
}

case "$mode" in
  fuzz)
    echo "fuzzing $name for $secs s (seeds: $dir, corpus: $work/corpus)"
    # -timeout: one input running that long is a hang. `timeout` bounds the
    # whole run in case libFuzzer itself does not stop.
    timeout -k 10 $((secs + 300)) "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=60 \
      -rss_limit_mb=4096 -max_len=4096 -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" "$dir" \
      > "$log" 2>&1
    rc=$?
    ;;
  replay)
    inputs=()
    if [ -d "$dir" ]; then
      while IFS= read -r -d '' f; do inputs+=("$f"); done \
        < <(find "$dir" -maxdepth 1 -type f ! -name 'README*' -print0 | sort -z)
    fi
    echo "replaying ${#inputs[@]} regression inputs of $name from $dir"
    if [ ${#inputs[@]} -eq 0 ]; then
      record 0
      echo "SKIP: no regression inputs in $dir yet (nothing to replay)"
      exit 77  # ctest: skipped (SKIP_RETURN_CODE in fuzz.cmake)
    fi
    timeout -k 10 600 "$bin" -print_final_stats=1 -timeout=60 -rss_limit_mb=4096 "$@" "${inputs[@]}" > "$log" 2>&1
    rc=$?
    ;;
  *)
    echo "usage: $0 fuzz|replay BINARY NAME DIR WORK_DIR" >&2
    exit 2
    ;;
esac

# libFuzzer's final stats (fuzz mode); a replay executes each input once.
grep -E '^stat::|^Done [0-9]+ runs|^INFO: seed corpus|^allocator configuration:' "$log" || true
execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
if [ "$mode" = replay ]; then
  execs=$(grep -c '^Executed ' "$log" || true)
fi
record "${execs:-0}"

if [ $rc -ne 0 ]; then
  echo "=== $name: libFuzzer exited with $rc; the end of its log ($log):"
  tail -60 "$log"
  crashes=$(ls "$work/artifacts/" 2>/dev/null)
  if [ -n "$crashes" ]; then
    echo "=== crash inputs in $work/artifacts/: $crashes"
    echo "    reproduce: $bin $work/artifacts/<file>"
    echo "    keep as a regression test: copy it to tests/fuzz/regressions/<target>/"
  fi
fi
# libFuzzer exits 77 when it finds a bug, and 77 is this script's skip code
# for ctest: report a bug as a plain failure.
[ "$rc" -ne 77 ] || rc=1
exit $rc
