#!/usr/bin/env bash
# install.cmake_package: `cmake --install` into a temp prefix, the installed
# tree checked file by file, then tests/install/consumer built against it with
# find_package(JSMalloc) (CMAKE_PREFIX_PATH) and run: shared and static, C and
# C++, and every page-size variant; each run proves its allocations (and
# libc's) came from JSMalloc, from the installed copy.
#   cmake_package.sh BUILD_DIR SOURCE_DIR
. "$(dirname "$0")/common.sh"

P=$WORK/prefix
install_to "$P"
L=$P/$LIBDIR

# The installed tree.
expect=(include/jsmalloc/jsmalloc.h include/jsmalloc/malloc_extension.h
  "$LIBDIR/cmake/JSMalloc/JSMallocConfig.cmake" "$LIBDIR/cmake/JSMalloc/JSMallocConfigVersion.cmake"
  "$LIBDIR/cmake/JSMalloc/JSMallocTargets.cmake"
  bin/jsmalloc-trace bin/jsmalloc-hugepages
  share/doc/jsmalloc/README.md share/doc/jsmalloc/tuning.md share/doc/jsmalloc/design.md)
[ ! -e "$SRC/scripts/jsmalloc-run" ] || expect+=(bin/jsmalloc-run)
for f in "$SRC"/probes/*.bt; do expect+=("share/jsmalloc/probes/$(basename "$f")"); done
for f in "$SRC"/docs/*.md; do expect+=("share/doc/jsmalloc/$(basename "$f")"); done
for v in "" $VARIANTS; do
  expect+=("$LIBDIR/libjsmalloc$v.so" "$LIBDIR/libjsmalloc$v.so.${VERSION%%.*}" "$LIBDIR/libjsmalloc$v.so.$VERSION"
    "$LIBDIR/libjsmalloc$v.a" "$LIBDIR/pkgconfig/jsmalloc$v.pc" "$LIBDIR/pkgconfig/jsmalloc$v-static.pc")
done
for f in "${expect[@]}"; do
  [ -e "$P/$f" ] || fail "not installed: $f"
done
for t in jsmalloc-trace jsmalloc-hugepages jsmalloc-run; do
  [ ! -e "$P/bin/$t" ] || [ -x "$P/bin/$t" ] || fail "bin/$t is not executable"
done
# LD_PRELOAD by the plain name still finds a library that carries the probes.
[[ $(readelf -d "$L/libjsmalloc.so") == *"Library soname: [libjsmalloc.so.${VERSION%%.*}]"* ]] || fail "libjsmalloc.so: soname"
[[ $(readelf -n "$L/libjsmalloc.so") == *"Provider: jsmalloc"* ]] || fail "libjsmalloc.so: no USDT notes"
! grep -rq "$BUILD\|$SRC" "$L/cmake" "$L/pkgconfig" || fail "installed CMake/pkg-config files name the build or source tree"
ok "installed tree: ${#expect[@]} files checked ($(find "$P" -type f -o -type l | wc -l) in all), variants: ${VARIANTS:-none}"

# The consumer project, against the installed copy only.
C=$WORK/consumer
cmake -S "$HERE/consumer" -B "$C" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$P" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF > "$WORK/consumer.configure.log" 2>&1 ||
  { cat "$WORK/consumer.configure.log" >&2; fail "consumer: cmake configure"; }
grep "JSMalloc $VERSION from" "$WORK/consumer.configure.log" || fail "consumer: no find_package message"
[ "$(sed -n 's/^dir=//p' "$C/jsmalloc-package.txt")" = "$L/cmake/JSMalloc" ] ||
  fail "consumer found JSMalloc in $(sed -n 's/^dir=//p' "$C/jsmalloc-package.txt"), not $L/cmake/JSMalloc"
cmake --build "$C" -j2 > "$WORK/consumer.build.log" 2>&1 ||
  { cat "$WORK/consumer.build.log" >&2; fail "consumer: build"; }
ok "consumer configured and built with find_package(JSMalloc) from $P"

# Run them (the build-tree RPATH of each points at $L).
run_consumer cmake.shared "$PAGE_SIZE" "shared:$L" "$C/consumer_shared"
run_consumer cmake.static "$PAGE_SIZE" static "$C/consumer_static"
run_consumer cmake.cxx "$PAGE_SIZE" "shared:$L" "$C/consumer_cxx"
run_consumer cmake.cxx_static "$PAGE_SIZE" static "$C/consumer_cxx_static"
for v in $VARIANTS; do
  run_consumer "cmake.shared$v" "$(variant_page "$v")" "shared:$L" "$C/consumer_shared$v"
  run_consumer "cmake.static$v" "$(variant_page "$v")" static "$C/consumer_static$v"
done

# find_package with a version: 0.1 (same minor) is found, 99.0 is not.
mkdir -p "$WORK/ver"
cat > "$WORK/ver/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(v NONE)
find_package(JSMalloc ${WANT} QUIET)
message(STATUS "found=${JSMalloc_FOUND}")
CM
[[ $(cmake -S "$WORK/ver" -B "$WORK/ver/b1" -DWANT="${VERSION%.*}" -DCMAKE_PREFIX_PATH="$P") == *found=1* ]] ||
  fail "find_package(JSMalloc ${VERSION%.*}) not found"
[[ $(cmake -S "$WORK/ver" -B "$WORK/ver/b2" -DWANT=99.0 -DCMAKE_PREFIX_PATH="$P") == *found=0* ]] ||
  fail "find_package(JSMalloc 99.0) found"
ok "version file: ${VERSION%.*} accepted, 99.0 refused"
echo "install.cmake_package passed"
