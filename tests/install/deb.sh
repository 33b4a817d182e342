#!/usr/bin/env bash
# install.deb: `cpack -G DEB` on the build (package written to a temp
# directory), its control fields and contents checked with dpkg-deb, the
# package installed into a scratch root with dpkg, and
# `<root>/usr/bin/jsmalloc-run -- python3 -c ...` run from it; the consumer
# is then built against the scratch root's CMake package and pkg-config file.
#
# How it is installed: as root, `dpkg --root=R -i` with R's dpkg database
# holding the status of the packages the .deb depends on (copied from this
# machine's, so dpkg checks Depends for real) and a /bin/sh and ldconfig in
# R, because dpkg runs the postinst (ldconfig, added by CPack for shared
# libraries) chrooted into R. Not root: `dpkg -x` (files only).
#   deb.sh BUILD_DIR SOURCE_DIR
. "$(dirname "$0")/common.sh"
for t in cpack dpkg dpkg-deb; do command -v $t > /dev/null || fail "$t is not installed"; done

# The package. -B keeps CPack's staging (_CPack_Packages) out of the build.
cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$WORK/pkg" > "$WORK/cpack.log" 2>&1 ||
  { cat "$WORK/cpack.log" >&2; fail "cpack -G DEB"; }
debs=("$WORK"/pkg/*.deb)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || fail "cpack wrote ${#debs[@]} .deb files"
DEB=${debs[0]}
ok "cpack -G DEB: $(basename "$DEB") ($(stat -c %s "$DEB") bytes)"

# Control fields.
dpkg-deb -I "$DEB" > "$WORK/info"
field() { dpkg-deb -f "$DEB" "$1"; }
[ "$(field Package)" = jsmalloc ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$VERSION" ] || fail "Version: $(field Version) (project: $VERSION)"
[ "$(field Section)" = libs ] || fail "Section: $(field Section)"
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] || fail "Architecture: $(field Architecture)"
[ -n "$(field Maintainer)" ] && [ -n "$(field Description)" ] || fail "no Maintainer or Description"
depends=$(field Depends)
[[ $depends == *libc6* ]] || fail "Depends: $depends"
# liburing2 exactly when the packaged library needs it (it is linked in from
# liburing's archive when the build machine has one).
dpkg-deb -x "$DEB" "$WORK/x"
lib=$(find "$WORK/x" -name 'libjsmalloc.so.*.*' | head -1)
if readelf -d "$lib" | grep -q 'NEEDED.*liburing'; then
  [[ $depends == *liburing2* ]] || fail "the library needs liburing but Depends has no liburing2: $depends"
else
  [[ $depends != *liburing2* ]] || fail "Depends names liburing2, which the library does not need: $depends"
fi
# (CPack writes shlibs only where `file` is installed; see CMakeLists.txt.)
! command -v file > /dev/null || [[ $(cat "$WORK/info") == *shlibs* ]] || fail "no shlibs control file"
ok "control: Package jsmalloc, Version $VERSION, Section libs, Depends: $depends"

# Contents.
dpkg-deb -c "$DEB" | awk '{ print $6 }' | sed 's#^\./#/#' > "$WORK/contents"
want=(/usr/include/jsmalloc/jsmalloc.h /usr/include/jsmalloc/malloc_extension.h
  "/usr/$LIBDIR/cmake/JSMalloc/JSMallocConfig.cmake" "/usr/$LIBDIR/cmake/JSMalloc/JSMallocConfigVersion.cmake"
  "/usr/$LIBDIR/cmake/JSMalloc/JSMallocTargets.cmake"
  /usr/bin/jsmalloc-trace /usr/bin/jsmalloc-hugepages /usr/share/doc/jsmalloc/README.md)
[ ! -e "$SRC/scripts/jsmalloc-run" ] || want+=(/usr/bin/jsmalloc-run)
for f in "$SRC"/probes/*.bt; do want+=("/usr/share/jsmalloc/probes/$(basename "$f")"); done
for v in "" $VARIANTS; do
  want+=("/usr/$LIBDIR/libjsmalloc$v.so" "/usr/$LIBDIR/libjsmalloc$v.so.$VERSION" "/usr/$LIBDIR/libjsmalloc$v.a"
    "/usr/$LIBDIR/pkgconfig/jsmalloc$v.pc" "/usr/$LIBDIR/pkgconfig/jsmalloc$v-static.pc")
done
for f in "${want[@]}"; do
  grep -qxF "$f" "$WORK/contents" || fail "not in the .deb: $f"
done
# The man pages, gzipped (Debian policy). Checked in the package only: a
# machine whose dpkg excludes /usr/share/man would not install them.
for f in /usr/share/man/man3/jsmalloc.3.gz /usr/share/man/man1/jsmalloc-{run,trace,hugepages}.1.gz; do
  grep -qxF "$f" "$WORK/contents" || fail "not in the .deb: $f"
done
ok "contents: ${#want[@]} paths checked ($(grep -vc '/$' "$WORK/contents") files in all)"

# Install into a scratch root.
R=$WORK/root
mkdir -p "$R"
if [ "$(id -u)" -eq 0 ]; then
  A=$R/var/lib/dpkg
  mkdir -p "$A/info" "$A/updates" "$R/var/log" "$R/bin" "$R/sbin" "$R/etc"
  : > "$A/available"
  : > "$A/status"
  for p in $(echo "$depends" | sed 's/([^)]*)//g; s/[,|]/ /g'); do
    dpkg-query -s "$p" >> "$A/status" 2> /dev/null || fail "dependency $p is not installed on this machine"
    echo >> "$A/status"
    : > "$A/info/$(dpkg-query -W -f='${Package}:${Architecture}' "$p" | sed 's/:all$//').list"
  done
  # What the maintainer scripts need inside R: sh (dash) and ldconfig (static).
  cp "$(readlink -f /bin/sh)" "$R/bin/sh"
  cp /sbin/ldconfig "$R/sbin/ldconfig"
  for lib in $(ldd "$(readlink -f /bin/sh)" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$R$(dirname "$lib")"
    cp "$lib" "$R$lib"
  done
  dpkg --root="$R" --log="$R/var/log/dpkg.log" -i "$DEB" > "$WORK/dpkg.log" 2>&1 ||
    { cat "$WORK/dpkg.log" >&2; fail "dpkg --root -i"; }
  [[ $(dpkg --root="$R" -s jsmalloc) == *"Status: install ok installed"* ]] || fail "jsmalloc not installed in $R"
  [ -s "$R/etc/ld.so.cache" ] || fail "postinst's ldconfig did not run in $R"
  how="dpkg --root=$R -i (postinst ran chrooted)"
else
  dpkg -x "$DEB" "$R"
  how="dpkg -x (not root: no dpkg --root install)"
fi
for f in "${want[@]}"; do [ -e "$R$f" ] || fail "not installed: $R$f"; done
ok "installed with $how"

# jsmalloc-run from the scratch root: it finds the library beside itself.
RUN=$R/usr/bin/jsmalloc-run
if [ -x "$RUN" ]; then
  out=$("$RUN" -- python3 -c 'print(sum(range(10)))' 2> "$WORK/run.err") || { cat "$WORK/run.err" >&2; fail "jsmalloc-run failed"; }
  [ "$out" = 45 ] || { cat "$WORK/run.err" >&2; fail "jsmalloc-run: python3 printed '$out'"; }
  grep -q '^jsmalloc-run: pid [0-9]* (.*): JSMalloc ' "$WORK/run.err" ||
    { cat "$WORK/run.err" >&2; fail "jsmalloc-run: no per-process summary"; }
  grep -qF "$R/usr/$LIBDIR/libjsmalloc" "$WORK/run.err" || { cat "$WORK/run.err" >&2; fail "jsmalloc-run did not use $R's library"; }
  ok "$R/usr/bin/jsmalloc-run -- python3 -c 'print(sum(range(10)))': $out; $(grep '^jsmalloc-run: pid ' "$WORK/run.err" | head -1 | cut -c1-60)..."
else
  fail "no usr/bin/jsmalloc-run in the package"
fi

# The scratch root's CMake package and pkg-config file (prefix /usr, read
# through a sysroot) build the consumer.
C=$WORK/consumer
cmake -S "$HERE/consumer" -B "$C" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$R/usr" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF > "$WORK/consumer.log" 2>&1 &&
  cmake --build "$C" --target consumer_shared consumer_static >> "$WORK/consumer.log" 2>&1 ||
  { cat "$WORK/consumer.log" >&2; fail "consumer against $R/usr"; }
run_consumer deb.cmake.shared "$PAGE_SIZE" "shared:$R/usr/$LIBDIR" "$C/consumer_shared"
run_consumer deb.cmake.static "$PAGE_SIZE" static "$C/consumer_static"
if command -v pkg-config > /dev/null; then
  pc=$R/usr/$LIBDIR/pkgconfig/jsmalloc.pc
  grep -qx 'prefix=/usr' "$pc" || fail "$pc: $(grep '^prefix=' "$pc")"
  flags=$(PKG_CONFIG_SYSROOT_DIR=$R PKG_CONFIG_LIBDIR=$R/usr/$LIBDIR/pkgconfig pkg-config --cflags --libs jsmalloc)
  gcc -O1 -o "$WORK/c" "$HERE/consumer/main.c" $flags -Wl,-rpath,"$R/usr/$LIBDIR" || fail "gcc $flags"
  run_consumer deb.pkg-config "$PAGE_SIZE" "shared:$R/usr/$LIBDIR" "$WORK/c"
fi

if [ "$(id -u)" -eq 0 ]; then
  dpkg --root="$R" --log="$R/var/log/dpkg.log" -r jsmalloc > "$WORK/dpkg-r.log" 2>&1 ||
    { cat "$WORK/dpkg-r.log" >&2; fail "dpkg --root -r jsmalloc"; }
  left=$([ ! -d "$R/usr" ] || find "$R/usr" -type f -o -type l)
  [ -z "$left" ] || fail "left after dpkg -r: $left"
  ok "dpkg --root=$R -r jsmalloc: removed cleanly"
fi
echo "install.deb passed"
