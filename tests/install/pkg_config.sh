#!/usr/bin/env bash
# install.pkg_config: `cmake --install` into a temp prefix, then the consumer
# (tests/install/consumer/main.c and main.cc) compiled and linked by plain
# gcc/g++ with the flags `pkg-config` gives (PKG_CONFIG_PATH to the prefix):
# jsmalloc (shared), jsmalloc-static, and every variant; each run proves its
# allocations came from JSMalloc, from the installed copy.
#   pkg_config.sh BUILD_DIR SOURCE_DIR
. "$(dirname "$0")/common.sh"
command -v pkg-config > /dev/null || fail "pkg-config is not installed (Debian: pkgconf)"

P=$WORK/prefix
install_to "$P"
L=$P/$LIBDIR
export PKG_CONFIG_PATH=$L/pkgconfig
# Only the prefix's .pc files, not a jsmalloc.pc the machine may have.
export PKG_CONFIG_LIBDIR=$L/pkgconfig
CONSUMER=$HERE/consumer

[ "$(pkg-config --modversion jsmalloc)" = "$VERSION" ] || fail "pkg-config --modversion jsmalloc: $(pkg-config --modversion jsmalloc)"
cflags=$(echo $(pkg-config --cflags jsmalloc))  # (pkgconf ends with a space)
libs=$(pkg-config --libs jsmalloc)
static_libs=$(pkg-config --static --libs jsmalloc)
echo "pkg-config --cflags --libs jsmalloc: $cflags $libs"
echo "pkg-config --static --libs jsmalloc: $static_libs"
echo "pkg-config --libs jsmalloc-static: $(pkg-config --libs jsmalloc-static)"
[ "$cflags" = "-I$P/include" ] || fail "Cflags: $cflags"
[[ " $libs " == *" -L$L -ljsmalloc "* ]] || fail "Libs: $libs"
[[ $libs != *uring* ]] || fail "Libs of the shared library need not name liburing: $libs"
[[ $static_libs == *-luring* && $static_libs == *-lpthread* ]] || fail "--static Libs: $static_libs"

for v in "" $VARIANTS; do
  page=$(variant_page "$v")
  # Shared, from C and C++; the RPATH points at the prefix.
  gcc -O1 -o "$WORK/c$v" "$CONSUMER/main.c" $(pkg-config --cflags --libs "jsmalloc$v") -Wl,-rpath,"$L" ||
    fail "gcc with pkg-config jsmalloc$v"
  run_consumer "pkg-config.jsmalloc$v(gcc)" "$page" "shared:$L" "$WORK/c$v"
  g++ -O1 -std=c++17 -o "$WORK/cxx$v" "$CONSUMER/main.cc" $(pkg-config --cflags --libs "jsmalloc$v") -Wl,-rpath,"$L" ||
    fail "g++ with pkg-config jsmalloc$v"
  run_consumer "pkg-config.jsmalloc$v(g++)" "$page" "shared:$L" "$WORK/cxx$v"
  # Static: jsmalloc-static.pc links libjsmalloc.a and its dependencies.
  gcc -O1 -o "$WORK/cs$v" "$CONSUMER/main.c" $(pkg-config --cflags --libs "jsmalloc$v-static") ||
    fail "gcc with pkg-config jsmalloc$v-static"
  run_consumer "pkg-config.jsmalloc$v-static(gcc)" "$page" static "$WORK/cs$v"
  g++ -O1 -std=c++17 -o "$WORK/cxxs$v" "$CONSUMER/main.cc" $(pkg-config --cflags --libs "jsmalloc$v-static") ||
    fail "g++ with pkg-config jsmalloc$v-static"
  run_consumer "pkg-config.jsmalloc$v-static(g++)" "$page" static "$WORK/cxxs$v"
done

# Without an RPATH, LD_LIBRARY_PATH finds the installed library.
gcc -O1 -o "$WORK/c_norpath" "$CONSUMER/main.c" $(pkg-config --cflags --libs jsmalloc)
LD_LIBRARY_PATH=$L run_consumer "pkg-config.jsmalloc(LD_LIBRARY_PATH)" "$PAGE_SIZE" "shared:$L" "$WORK/c_norpath"
echo "install.pkg_config passed"
