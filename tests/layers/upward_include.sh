#!/bin/sh
# upward_include.sh CXX VIEWS_DIR SOURCE_DIR: the build refuses an include
# that reaches up. For each layer but the top, a file that includes a header
# of the layer above must fail to compile against that layer's view (the
# include path its object library gets), while one that includes a header of
# its own layer compiles. Layers and headers: JSMALLOC_LAYERS and the first
# header found in each folder.
set -u
CXX=$1 VIEWS=$2 SRC=$3
layers=$(sed -n 's/^set(JSMALLOC_LAYERS \(.*\))$/\1/p' "$SRC/CMakeLists.txt")
[ -n "$layers" ] || { echo "FAIL no JSMALLOC_LAYERS in $SRC/CMakeLists.txt"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
first_header() {  # a header of folder $1 (os: its interface)
  if [ "$1" = os ]; then
    [ -f "$SRC/os/os.h" ] && { echo os/os.h; return; }
    (cd "$SRC" && ls os/linux/*.h | head -1); return
  fi
  (cd "$SRC" && ls "$1"/*.h 2>/dev/null | head -1)
}
compiles() {  # compiles LAYER HEADER
  printf '#include "%s"\nint main() { return 0; }\n' "$2" > "$tmp/t.cc"
  "$CXX" -std=c++20 -fsyntax-only -DJSMALLOC_PAGE_SHIFT=13 -I "$VIEWS/$1" "$tmp/t.cc" 2>"$tmp/err"
}
passed=0 failed=0 prev=""
for l in $layers; do
  own=$(first_header "$l")
  if [ -n "$own" ]; then
    if compiles "$l" "$own"; then echo "ok   $l: its own $own compiles"; passed=$((passed+1))
    else echo "FAIL $l: its own $own does not compile:"; head -3 "$tmp/err"; failed=$((failed+1)); fi
  fi
  if [ -n "$prev" ]; then
    up=$own
    if [ -n "$up" ]; then
      if compiles "$prev" "$up"; then echo "FAIL $prev: including $up (layer $l, above) compiled"; failed=$((failed+1))
      else echo "ok   $prev: including $up (layer $l, above) fails to build"; passed=$((passed+1)); fi
    fi
  fi
  prev=$l
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
