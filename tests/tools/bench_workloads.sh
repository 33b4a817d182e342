#!/usr/bin/env bash
# The latency and fork workloads of bench/run, briefly, under glibc and under
# JSMalloc (LD_PRELOAD): each must exit 0, print the same checksum under
# both, and print the `wl: latency` / `wl: fork` line bench/run parses with
# sane figures. Timings are printed, never asserted.
#   bench_workloads.sh WORKLOAD_DIR LIBJSMALLOC
set -euo pipefail
DIR=$(readlink -f "${1:?usage: bench_workloads.sh WORKLOAD_DIR LIBJSMALLOC}")
LIB=$(readlink -f "${2:?}")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jsmalloc-bench-wl.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

run() {  # run NAME ALLOC ARGS...: stdout/stderr in $WORK/NAME.ALLOC.{out,err}
  local name=$1 alloc=$2; shift 2
  local pre=""
  [ "$alloc" = jsmalloc ] && pre=$LIB
  LD_PRELOAD=$pre "$DIR/wl_$name" "$@" > "$WORK/$name.$alloc.out" 2> "$WORK/$name.$alloc.err" ||
    fail "$name under $alloc exited $?: $(tail -3 "$WORK/$name.$alloc.err")"
  grep -q "^wl: allocator-libs=$([ "$alloc" = jsmalloc ] && echo 'libjsmalloc' || echo none)" \
    "$WORK/$name.$alloc.err" || fail "$name under $alloc: $(grep allocator-libs "$WORK/$name.$alloc.err")"
}

check() {  # check NAME KIND ARGS...
  local name=$1 kind=$2; shift 2
  for alloc in glibc jsmalloc; do run "$name" "$alloc" "$@"; done
  local a b
  a=$(grep '^checksum ' "$WORK/$name.glibc.out") || fail "$name: no checksum under glibc"
  b=$(grep '^checksum ' "$WORK/$name.jsmalloc.out") || fail "$name: no checksum under jsmalloc"
  [ "$a" = "$b" ] || fail "$name: checksums differ: glibc $a, jsmalloc $b"
  for alloc in glibc jsmalloc; do
    local line
    line=$(grep "^wl: $kind " "$WORK/$name.$alloc.err") || fail "$name under $alloc: no 'wl: $kind' line"
    if [ "$kind" = latency ]; then
      # requests > 0 and p50 <= p99 <= p99.9 <= max.
      echo "$line" | awk '{
        for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        if (!(v["requests"] > 0 && v["seconds"] > 0 && v["p50_ns"] > 0 && v["p50_ns"] <= v["p99_ns"] &&
              v["p99_ns"] <= v["p999_ns"] && v["p999_ns"] <= v["max_ns"])) exit 1 }' ||
        fail "$name under $alloc: bad latency line: $line"
    else
      echo "$line" | awk '{
        for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        if (!(v["forks"] >= 5 && v["seconds"] > 0 && v["child_p50_ms"] > 0 && v["child_dirty_kib"] > 0 &&
              v["pause_p50_us"] > 0)) exit 1 }' || fail "$name under $alloc: bad fork line: $line"
    fi
    echo "ok: $name under $alloc: ${line#wl: }"
  done
}

check request_loop latency --scale 0.02
check larson latency --scale 0.02
check kv_cache latency --threads 2 --capacity-mib 32 --idle-seconds 0 --requests 20000 --wl-lines 1
check fork_server fork --scale 0.1
echo "ok: request_loop, larson, kv_cache and fork_server agree under glibc and JSMalloc"
