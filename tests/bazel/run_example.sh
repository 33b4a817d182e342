#!/bin/bash
# run_example.sh SOURCE_DIR
#
# Builds and runs the Bazel consumer in SOURCE_DIR/examples/bazel, which pulls
# JSMalloc in with local_repository and links it with
# cc_binary(malloc = "@jsmalloc//:jsmalloc"), using Debian's bazel-bootstrap
# (Bazel 4.2.3) offline through tests/bazel/bazel-offline:
#   1. analysis of every target of @jsmalloc (all page-size variants);
#   2. build of //:hello and @jsmalloc//:libjsmalloc.so;
#   3. //:hello runs, and JSMalloc owns its malloc and new;
#   4. libjsmalloc.so preloaded into python3 owns python's malloc;
#   5. bazel test of //:hello_test (8 KiB pages) and //:hello_test_4k.
# Exits 77 (CTest: skipped) when bazel is not installed.
#
# Output root: $JSMALLOC_TEST_BAZEL_OUTPUT_ROOT, default /tmp/bazel-jsmalloc-$UID,
# kept across runs so that a second run only rebuilds what changed (a few
# MB on disk; Bazel's caches are keyed by content, so stale results cannot
# be picked up). The Bazel server is shut down at the end.
set -uo pipefail
src=$(cd "${1:?usage: $0 SOURCE_DIR}" && pwd)
example=$src/examples/bazel
offline=$src/tests/bazel/bazel-offline

if ! command -v "${BAZEL:-bazel}" > /dev/null; then
  echo "SKIP: bazel is not installed (apt-get install bazel-bootstrap)"
  exit 77
fi

root=${JSMALLOC_TEST_BAZEL_OUTPUT_ROOT:-/tmp/bazel-jsmalloc-$(id -u)}
log=${JSMALLOC_TEST_BAZEL_LOG:-$PWD/bazel_example.log}
: > "$log"
startup=(--output_user_root="$root" --nohome_rc --max_idle_secs=300)
common=(--symlink_prefix=/ --curses=no --color=no --show_progress_rate_limit=30)

cd "$example" || exit 1
bz() { nice "$offline" "${startup[@]}" "$@"; }
trap 'bz shutdown >> "$log" 2>&1' EXIT

failed=0
fail() {
  echo "FAILED: $*"
  echo "--- last lines of $log"
  tail -40 "$log"
  failed=1
}
step() {  # step NAME COMMAND...: runs it, logs it, prints its time
  local name=$1 t0=$SECONDS
  shift
  echo "=== $name" >> "$log"
  if "$@" >> "$log" 2>&1; then
    echo "ok   $name ($((SECONDS - t0)) s)"
    return 0
  fi
  fail "$name ($((SECONDS - t0)) s)"
  return 1
}

t_start=$SECONDS
# Debian's build of Bazel has no build label ("Version information not
# available"): name the package instead.
if command -v dpkg-query > /dev/null; then
  echo "bazel: $(dpkg-query -W -f='${Package} ${Version}' bazel-bootstrap 2>/dev/null || echo "not from Debian's bazel-bootstrap")"
fi

step "analysis of every @jsmalloc target" bz build "${common[@]}" --nobuild @jsmalloc//:all || exit 1
step "build //:hello @jsmalloc//:libjsmalloc.so" \
  bz build "${common[@]}" //:hello @jsmalloc//:libjsmalloc.so || exit 1

bin=$(bz info "${common[@]}" bazel-bin 2>> "$log")
hello=$bin/hello
lib=$bin/external/jsmalloc/libjsmalloc.so

out=$("$hello" 2>&1)
echo "$out"
if [[ $out == *"jsmalloc.page_size=8192"* ]]; then
  echo "ok   //:hello runs on JSMalloc"
else
  fail "//:hello: unexpected output"
fi

# The shared library for LD_PRELOAD, from the same BUILD.bazel.
if command -v python3 > /dev/null; then
  owned=$(LD_PRELOAD=$lib python3 -c '
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
p = libc.malloc(100)
print(libc.jsmalloc_get_ownership(ctypes.c_void_p(p)), len(bytearray(10**6)))
' 2>&1)
  if [[ $owned == "1 1000000" ]]; then
    echo "ok   @jsmalloc//:libjsmalloc.so preloaded into python3 owns its malloc"
  else
    fail "LD_PRELOAD of libjsmalloc.so into python3: $owned"
  fi
fi

step "bazel test //:hello_test //:hello_test_4k" \
  bz test "${common[@]}" --test_output=all --nocache_test_results //:hello_test //:hello_test_4k
grep -E '^hello_test: |PASSED|FAILED' "$log" | sed 's/^/     /'

echo "bazel example: $((SECONDS - t_start)) s in all (output root $root)"
exit $failed
