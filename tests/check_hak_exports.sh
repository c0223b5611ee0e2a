#!/bin/sh
# check_hak_exports.sh BUILDDIR
#
# The hak_-only libraries (HAKMEM_OVERRIDE=0) export exactly the names of
# src/hakmem-hak.map's global list: no malloc, free, ... and nothing else.
#   - the map lists every hak_ function that include/hakmem.h declares
#   - BUILDDIR/libhakmem-hak.so, and the sanitizer builds libhakmem-ubsan.so
#     and libhakmem-tsan.so when they exist: nm -D --defined-only == the map
#   - the check can fail: BUILDDIR/libhakmem.so (the full library) differs
#     from the map, by the standard names at least
#   - the sanitizer builds are instrumented (they call __ubsan_ / __tsan_)
# Prints "hak-exports: N passed, N failed"; exits non-zero on failure.
set -u
B=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
MAP=$ROOT/src/hakmem-hak.map
pass=0
fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-exports.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT INT TERM

# The names of the map's global: list, one a line, sorted.
awk '/global:/ { on = 1; next } /local:/ { on = 0 } on' "$MAP" |
    tr ';' '\n' | tr -d ' \t' | grep -v '^$' | sort -u > "$TMP/map"
# The hak_ functions include/hakmem.h declares.
grep -o '\bhak_[a-z0-9_]*(' "$ROOT/include/hakmem.h" | tr -d '(' | sort -u > "$TMP/header"

nmap=$(wc -l < "$TMP/map" | tr -d ' ')
if [ "$nmap" -gt 0 ] && ! grep -qv '^hak_' "$TMP/map"; then
    ok "hakmem-hak.map: $nmap names, all hak_"
else
    bad "hakmem-hak.map: $nmap names, want some and only hak_ ones: $(grep -v '^hak_' "$TMP/map" | tr '\n' ' ')"
fi
missing=$(comm -23 "$TMP/header" "$TMP/map" | tr '\n' ' ')
if [ -z "$missing" ]; then ok "hakmem-hak.map lists every hak_ function of include/hakmem.h"
else bad "hakmem-hak.map lacks functions of include/hakmem.h: $missing"; fi

# exports LIB: its defined dynamic symbols, one a line, sorted
exports() { nm -D --defined-only "$1" | awk 'NF >= 3 { sub(/@.*/, "", $3); print $3 }' | sort -u; }

check_lib() {   # LIB REQUIRED
    lib=$B/$1
    if [ ! -e "$lib" ]; then
        [ "$2" = required ] && bad "$lib: missing"
        return
    fi
    exports "$lib" > "$TMP/lib"
    extra=$(comm -13 "$TMP/map" "$TMP/lib" | tr '\n' ' ')
    lack=$(comm -23 "$TMP/map" "$TMP/lib" | tr '\n' ' ')
    if [ -z "$extra" ] && [ -z "$lack" ]; then
        ok "$1 exports exactly the $nmap names of hakmem-hak.map"
    else
        bad "$1: exports beyond the map: [$extra]; map names not exported: [$lack]"
    fi
}
check_lib libhakmem-hak.so required
check_lib libhakmem-ubsan.so optional
check_lib libhakmem-tsan.so optional

# The comparison can see extra names: the full library has malloc & co.
if [ -e "$B/libhakmem.so" ]; then
    exports "$B/libhakmem.so" > "$TMP/full"
    extra=$(comm -13 "$TMP/map" "$TMP/full" | grep -c -x 'malloc\|free\|calloc\|realloc')
    if [ "$extra" -eq 4 ]; then ok "libhakmem.so differs from the map by malloc, free, calloc, realloc (the check sees extra names)"
    else bad "libhakmem.so: found $extra of malloc, free, calloc, realloc beyond the map, want 4"; fi
fi

# instrumented LIB PREFIX: the library calls the sanitizer's runtime
instrumented() {
    lib=$B/$1
    [ -e "$lib" ] || return 0
    n=$(nm -D --undefined-only "$lib" | grep -c " $2")
    if [ "$n" -gt 0 ]; then ok "$1 is instrumented ($n ${2}* functions)"
    else bad "$1 calls no ${2}* function: not built with the sanitizer"; fi
}
instrumented libhakmem-ubsan.so __ubsan_handle_
instrumented libhakmem-tsan.so __tsan_

echo "hak-exports: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
