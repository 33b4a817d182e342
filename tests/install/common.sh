# Shared by the install.* tests (tests/install/install.cmake). Each test gets
# the build directory and the source directory, works in a temp directory of
# its own (removed at exit), and touches nothing outside it.
set -euo pipefail
# (No `... | grep -q` below: under pipefail, grep quitting early can fail the
# writer with SIGPIPE.)

BUILD=$(readlink -f "${1:?usage: $0 BUILD_DIR SOURCE_DIR}")
SRC=$(readlink -f "${2:?usage: $0 BUILD_DIR SOURCE_DIR}")
HERE=$SRC/tests/install
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jsmalloc-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

cache_var() {  # cache_var NAME: its value in the build's CMakeCache.txt
  sed -n "s/^$1:[A-Z]*=//p" "$BUILD/CMakeCache.txt"
}
LIBDIR=$(cache_var CMAKE_INSTALL_LIBDIR)
[ -n "$LIBDIR" ] || fail "no CMAKE_INSTALL_LIBDIR in $BUILD/CMakeCache.txt"
VERSION=$(cache_var CMAKE_PROJECT_VERSION)
[ -n "$VERSION" ] || VERSION=$(sed -n 's/^project(JSMalloc VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
PAGE_SIZE=$((1 << $(cache_var JSMALLOC_PAGE_SHIFT)))
# Page-size variants built here: "" for the default, then _4k, _32k, ...
VARIANTS=$(cd "$BUILD" && { ls libjsmalloc_[0-9]*k.so 2> /dev/null || true; } | sed 's/^libjsmalloc\(_[0-9]*k\)\.so$/\1/' | sort -u | tr '\n' ' ')

variant_page() {  # variant_page SUFFIX: its allocator page size in bytes
  if [ -z "$1" ]; then echo "$PAGE_SIZE"; else echo $(( ${1//[^0-9]/} * 1024 )); fi
}

install_to() {  # install_to PREFIX: cmake --install of the build into PREFIX
  cmake --install "$BUILD" --prefix "$1" > "$WORK/install.log" 2>&1 ||
    { cat "$WORK/install.log" >&2; fail "cmake --install --prefix $1"; }
}

# run_consumer NAME PAGE_SIZE LINKAGE CMD...: runs a consumer binary, which
# must print "consumer ok"; LINKAGE "shared:DIR" also wants its libjsmalloc
# mapped from DIR, "static" wants none mapped.
run_consumer() {
  local name=$1 page=$2 linkage=$3
  shift 3
  local out="$WORK/$name.out"
  local rc=0
  "$@" "$page" > "$out" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { cat "$out" >&2; fail "$name exited with status $rc"; }
  grep -q '^consumer ok$' "$out" || { cat "$out" >&2; fail "$name: no 'consumer ok'"; }
  grep -q '^banner: JSMalloc ' "$out" || { cat "$out" >&2; fail "$name: no JSMalloc banner"; }
  local mapped
  mapped=$(sed -n 's/^mapped: //p' "$out")
  case $linkage in
    static)
      [ "$mapped" = none ] || [ -z "$mapped" ] || fail "$name: linked statically but maps $mapped"
      [[ $(ldd "$1") != *libjsmalloc* ]] || fail "$name: linked statically but ldd shows libjsmalloc" ;;
    shared:*)
      [ -n "$mapped" ] || mapped=$(ldd "$1" | awk '$1 ~ /^libjsmalloc/ { print $3 }')
      case $(readlink -f "$mapped") in
        "$(readlink -f "${linkage#shared:}")"/*) ;;
        *) fail "$name: uses $mapped, not the copy in ${linkage#shared:}" ;;
      esac ;;
  esac
  ok "$name: $(sed -n 's/^banner: //p' "$out" | cut -c1-60)...; page $page; libjsmalloc: ${mapped:-none}"
}
