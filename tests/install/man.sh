#!/usr/bin/env bash
# install.man: the man pages of docs/man (jsmalloc(3), jsmalloc-run(1),
# jsmalloc-trace(1), jsmalloc-hugepages(1)).
#   1. Each page renders with every groff warning on (groff -ww, and man-db's
#      `man --warnings -l`) without a single warning.
#   2. `cmake --install --prefix TMP` puts them, gzipped (gzip -9n: no name or
#      time stamp), in TMP/MANDIR/man1 and man3, identical to the sources once
#      uncompressed, and `man -M TMP/MANDIR NAME` finds and renders them.
#   3. They agree with what they describe: every option that the installed
#      jsmalloc-run, jsmalloc-trace and jsmalloc-hugepages print with --help
#      is in the tool's page (and every option a page lists is in the tool's
#      help); every jsmalloc_* function declared in jsmalloc.h and every
#      setting of base/env_options.cc (as JSMALLOC_NAME) is in jsmalloc(3).
# Needs man-db, groff-base and gzip (Debian).
#   man.sh BUILD_DIR SOURCE_DIR
. "$(dirname "$0")/common.sh"
for t in man groff gzip zcat; do
  command -v $t > /dev/null || fail "$t is not installed (Debian: man-db, groff-base, gzip)"
done
export LC_ALL=C.UTF-8 MANWIDTH=80 MANPAGER=cat PAGER=cat
unset MANPATH MANOPT

M=$SRC/docs/man
PAGES=(jsmalloc.3 jsmalloc-run.1 jsmalloc-trace.1 jsmalloc-hugepages.1)

# text FILE: the page as plain text, one paragraph per line as far as
# possible (a 300-column line, no hyphenation), so that names and options
# are found whole.
text() {
  local cat="cat"
  [[ $1 != *.gz ]] || cat="zcat"
  $cat "$1" | groff -man -Tascii -P-cbou -rLL=300n 2> /dev/null
}

# --- 1. Rendering without warnings ----------------------------------------------
for page in "${PAGES[@]}"; do
  f=$M/$page
  [ -f "$f" ] || fail "no $f"
  groff -man -Tutf8 -ww -z "$f" > /dev/null 2> "$WORK/groff.err" || fail "groff failed on $page"
  [ ! -s "$WORK/groff.err" ] || { cat "$WORK/groff.err" >&2; fail "groff -man -ww warns on $page"; }
  man --warnings=w -l "$f" > "$WORK/page.txt" 2> "$WORK/man.err" || { cat "$WORK/man.err" >&2; fail "man -l $page"; }
  [ ! -s "$WORK/man.err" ] || { cat "$WORK/man.err" >&2; fail "man --warnings -l warns on $page"; }
  name=${page%.*}
  grep -q "^NAME" "$WORK/page.txt" && grep -q "^ *$name - " "$WORK/page.txt" ||
    { head -20 "$WORK/page.txt" >&2; fail "$page: no NAME line '$name - ...'"; }
  for section in SYNOPSIS DESCRIPTION ENVIRONMENT EXAMPLES "SEE ALSO"; do
    grep -qx "$section" "$WORK/page.txt" || fail "$page: no $section section"
  done
  case $page in
    *.1) for section in OPTIONS "EXIT STATUS"; do grep -qx "$section" "$WORK/page.txt" || fail "$page: no $section section"; done ;;
    *.3) for section in "RETURN VALUE" ERRORS NOTES; do grep -qx "$section" "$WORK/page.txt" || fail "$page: no $section section"; done ;;
  esac
  ok "$page renders without warnings ($(wc -l < "$WORK/page.txt") lines at 80 columns)"
done

# --- 2. Installed, compressed, found by man -------------------------------------
P=$WORK/prefix
install_to "$P"
MANDIR=$(cache_var CMAKE_INSTALL_MANDIR)
[ -n "$MANDIR" ] || MANDIR=$(cache_var CMAKE_INSTALL_DATAROOTDIR)/man
[ "$MANDIR" != /man ] || MANDIR=share/man
gz=$(cache_var JSMALLOC_GZIP)
compressed=1
case $gz in ""|*NOTFOUND) compressed=0 ;; esac
[ "$compressed" -eq 1 ] || echo "install.man: gzip was not found at configure time: the pages are installed uncompressed"
for page in "${PAGES[@]}"; do
  name=${page%.*} sec=${page##*.}
  want=$P/$MANDIR/man$sec/$page
  if [ "$compressed" -eq 1 ]; then
    want=$want.gz
    [ -f "$want" ] || fail "not installed: $want (files there: $(ls "$P/$MANDIR/man$sec" 2> /dev/null | tr '\n' ' '))"
    gzip -t "$want" || fail "$want is not a valid gzip file"
    zcat "$want" | cmp -s - "$M/$page" || fail "$want differs from docs/man/$page (a stale build?)"
    # gzip -n: no file name (FLG bit 3) and no time stamp (MTIME 0), so
    # every build makes the same bytes.
    read -r -a head <<< "$(od -An -tu1 -N8 "$want")"
    [ $(( head[3] & 8 )) -eq 0 ] || fail "$want stores a file name (not gzip -n)"
    [ "${head[4]}${head[5]}${head[6]}${head[7]}" = 0000 ] || fail "$want stores a time stamp (not gzip -n)"
  else
    cmp -s "$want" "$M/$page" || fail "not installed, or differs from docs/man/$page: $want"
  fi
  found=$(man -M "$P/$MANDIR" -w "$sec" "$name" 2> "$WORK/man.err") || { cat "$WORK/man.err" >&2; fail "man -M $P/$MANDIR -w $sec $name found nothing"; }
  [ "$found" = "$want" ] || fail "man -M $P/$MANDIR -w $sec $name: $found, not $want"
  man --warnings=w -M "$P/$MANDIR" "$sec" "$name" > "$WORK/page.txt" 2> "$WORK/man.err" ||
    { cat "$WORK/man.err" >&2; fail "man -M $P/$MANDIR $sec $name"; }
  [ ! -s "$WORK/man.err" ] || { cat "$WORK/man.err" >&2; fail "man -M ... $sec $name warns"; }
  grep -q "^ *$name - " "$WORK/page.txt" || fail "man -M ... $sec $name: no NAME line"
  ok "installed: ${want#"$P"/}; man -M PREFIX/$MANDIR $sec $name renders it"
done

# --- 3. Agreement with the tools and the API ------------------------------------
# Options in a help text: --long ones, and -x ones after a space or an
# opening bracket.
help_options() {
  { grep -oE -- '(^|[^[:alnum:]_-])--[[:alpha:]][[:alnum:]-]*' "$1" || true; } | sed -E 's/^[^-]+//'
  { grep -oE -- '(^|[[:space:][(|,])-[[:alpha:]]([^[:alnum:]_-]|$)' "$1" || true; } |
    sed -E 's/^[^-]+//; s/[^[:alnum:]]$//'
}
has_word() {  # has_word WORD FILE: WORD in FILE, not as part of a longer name
  grep -qE -- "(^|[^[:alnum:]_-])$1([^[:alnum:]_-]|\$)" "$2"
}
declare -A min_options=([jsmalloc-run]=11 [jsmalloc-trace]=4 [jsmalloc-hugepages]=9)
for tool in jsmalloc-run jsmalloc-trace jsmalloc-hugepages; do
  exe=$P/bin/$tool
  [ -x "$exe" ] || fail "no $exe installed"
  # Every tool prints its whole usage on stdout and exits 0.
  "$exe" --help > "$WORK/help" 2> "$WORK/help.err" || fail "$tool --help exited with $?"
  [ ! -s "$WORK/help.err" ] || fail "$tool --help wrote to stderr: $(head -3 "$WORK/help.err")"
  help_options "$WORK/help" | sort -u > "$WORK/options"
  n=$(wc -l < "$WORK/options")
  [ "$n" -ge "${min_options[$tool]}" ] ||
    { cat "$WORK/help" >&2; fail "$tool --help: found $n options, expected at least ${min_options[$tool]}"; }
  page=$M/$tool.1
  text "$page" > "$WORK/page.txt"
  missing=""
  while read -r opt; do
    has_word "$opt" "$WORK/page.txt" || missing="$missing $opt"
  done < "$WORK/options"
  [ -z "$missing" ] || fail "docs/man/$tool.1 does not mention what $tool --help prints:$missing"
  # The other way: each option the page's OPTIONS section lists (the tags
  # starting with a dash) is in the help; -h/--help every tool has.
  sed -n '/^OPTIONS$/,/^[A-Z]/p' "$WORK/page.txt" | { grep -oE '^ {7}-[^ ,]*(, -[^ ,]*)?' || true; } |
    tr ',' '\n' | tr -d ' ' | sed 's/=.*//' | sort -u > "$WORK/page_options"
  [ -s "$WORK/page_options" ] || fail "docs/man/$tool.1: no options found in its OPTIONS section"
  extra=""
  while read -r opt; do
    case $opt in -h|--help|--) continue ;; esac
    has_word "$opt" "$WORK/help" || extra="$extra $opt"
  done < "$WORK/page_options"
  [ -z "$extra" ] || fail "docs/man/$tool.1 lists options that $tool --help does not:$extra"
  ok "$tool: the $n options of --help are in $tool.1, and its $(wc -l < "$WORK/page_options") OPTIONS entries in --help"
done

text "$M/jsmalloc.3" > "$WORK/jsmalloc3.txt"
{ grep -oE '\bjsmalloc_[a-z_0-9]+[[:space:]]*\(' "$SRC/include/jsmalloc/jsmalloc.h" || true; } |
  sed -E 's/[[:space:]]*\($//' | sort -u > "$WORK/functions"
n=$(wc -l < "$WORK/functions")
[ "$n" -ge 20 ] || fail "found only $n jsmalloc_* functions in include/jsmalloc/jsmalloc.h"
missing=""
while read -r f; do
  grep -qE "(^|[^[:alnum:]_])$f\(" "$WORK/jsmalloc3.txt" || missing="$missing $f"
done < "$WORK/functions"
[ -z "$missing" ] || fail "docs/man/jsmalloc.3 does not declare or describe:$missing"
ok "jsmalloc.3: all $n jsmalloc_* functions of jsmalloc.h"

sed -n '/kSettings\[\] = {/,/^};/p' "$SRC/base/env_options.cc" | { grep -oE '\{"[a-z_0-9]+",' || true; } |
  tr -d '{",' | tr '[:lower:]' '[:upper:]' | sed 's/^/JSMALLOC_/' > "$WORK/settings"
n=$(wc -l < "$WORK/settings")
[ "$n" -ge 20 ] || fail "found only $n settings in base/env_options.cc (kSettings)"
echo JSMALLOC_OPTIONS >> "$WORK/settings"
missing=""
while read -r v; do
  has_word "$v" "$WORK/jsmalloc3.txt" || missing="$missing $v"
done < "$WORK/settings"
[ -z "$missing" ] || fail "docs/man/jsmalloc.3 does not mention:$missing"
ok "jsmalloc.3: all $n settings of base/env_options.cc and JSMALLOC_OPTIONS"
echo "install.man passed"
