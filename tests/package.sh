#!/bin/sh
# package.sh: hakmem installed like a system library, end to end.
#
#  1. man pages: mandoc -T lint finds nothing at warning level or above.
#  2. make install PREFIX=<temp> (both flavors): the files, the launcher
#     (--version, --help, exit status, 127 for a missing program, the library
#     really preloaded, --stats, --debug), a program built with pkg-config and
#     with CMake find_package(hakmem) (hakmem::hakmem and
#     hakmem::hakmem_static), the exported symbols against src/hakmem.map.
#  3. As root with dpkg-buildpackage, debhelper, lintian and apt-get: the
#     Debian packages built from a copy of the tree in a temp dir, lintian
#     with no error, installed with apt-get, the same checks against the
#     system paths, then purged and every installed file gone.
# A part whose tools are missing (or part 3 when not root, or when the
# hakmem packages are already installed here, or with HAKTEST_PACKAGE=0 as
# debian/rules sets it) is skipped, not failed.
#
# Prints one line per check and last "package: N passed, N failed, N skipped";
# exits non-zero if any check failed.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
pass=0
fail=0
skip=0

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1${2:+: $2}"; }
skipped() { skip=$((skip + 1)); echo "SKIP $1${2:+: $2}"; }
have() { command -v "$1" >/dev/null 2>&1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-package.XXXXXX") || exit 1
INSTALLED_PKGS=
cleanup() {
    if [ -n "$INSTALLED_PKGS" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get purge -y $INSTALLED_PKGS >/dev/null 2>&1
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

finish() {
    echo "package: $pass passed, $fail failed, $skip skipped"
    [ "$fail" -eq 0 ]
    exit $?
}

VERSION=$(sed -n 's/^#define HAKMEM_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' \
    "$ROOT/include/hakmem.h" | paste -sd. -)
MAJOR=${VERSION%%.*}

# The symbols the version script exports, sorted, one a line.
sed -e 's|/\*.*\*/||g' "$ROOT/src/hakmem.map" |
    awk '/global:/ { on = 1; next } /local:/ { on = 0 } on' |
    tr ';' '\n' | tr -d ' \t' | grep -v '^$' | sort > "$TMP/map.syms"

# check_syms LIB: the library exports exactly the version script's symbols,
# none of them versioned.
check_syms() {
    nm -D --defined-only "$1" | awk '{ print $3 }' > "$TMP/nm.raw"
    sed 's/@.*//' "$TMP/nm.raw" | sort > "$TMP/nm.syms"
    n=$(wc -l < "$TMP/nm.syms" | tr -d ' ')
    if cmp -s "$TMP/map.syms" "$TMP/nm.syms"; then
        ok "nm -D $(basename "$1"): exactly the $n symbols of src/hakmem.map"
    else
        bad "nm -D $(basename "$1"): not the symbols of src/hakmem.map" \
            "$(diff "$TMP/map.syms" "$TMP/nm.syms" | grep '^[<>]' | head -n 5 | tr '\n' ' ')"
    fi
    # A versioned malloc would not interpose glibc's (see src/hakmem.map).
    if grep -q "@" "$TMP/nm.raw"; then
        bad "nm -D $(basename "$1"): a symbol with a version" "$(grep "@" "$TMP/nm.raw" | head -n 3 | tr '\n' ' ')"
    else
        ok "nm -D $(basename "$1"): no symbol carries a version (LD_PRELOAD interposes glibc's)"
    fi
}

# The test program: calls the standard names and hakmem's own, and shows
# that malloc_info is hakmem's (so the standard names resolve to it).
cat > "$TMP/app.c" <<'EOF'
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hakmem.h>

int main(void) {
    char *p = malloc(1000);
    if (!p) return 1;
    strcpy(p, "hello");
    p = realloc(p, 100000);
    if (!p || strcmp(p, "hello") != 0) return 2;
    if (hak_version() != HAKMEM_VERSION) return 3;
    if (hak_malloc_usable_size(p) < 100000) return 4;
    free(p);
    fflush(stdout);
    malloc_info(0, stdout);
    printf("app ok %d\n", hak_version());
    return 0;
}
EOF
APP_OUT_RE="^<malloc version=\"hakmem-[0-9]*\.[0-9]*\"/>\$"

# check_app NAME BINARY [ENV...]: runs it, checks its output
check_app() {
    name=$1 bin=$2
    shift 2
    if out=$(env "$@" "$bin" 2>&1) && echo "$out" | grep -q "$APP_OUT_RE" &&
        echo "$out" | grep -q "^app ok "; then
        ok "$name: runs on hakmem ($(echo "$out" | tail -n 1))"
    else
        bad "$name" "$(echo "$out" | head -n 3 | tr '\n' ' ')"
    fi
}

# check_pkgconfig TAG [PKG_CONFIG_PATH] [LD_LIBRARY_PATH]
check_pkgconfig() {
    if ! have pkg-config; then skipped "$1 pkg-config" "pkg-config not installed"; return; fi
    v=$(PKG_CONFIG_PATH=${2:-} pkg-config --modversion hakmem 2>&1)
    if [ "$v" = "$VERSION" ]; then ok "$1 pkg-config --modversion hakmem: $v"
    else bad "$1 pkg-config --modversion hakmem" "$v (want $VERSION)"; return; fi
    flags=$(PKG_CONFIG_PATH=${2:-} pkg-config --cflags --libs hakmem)
    if cc -o "$TMP/app-pc" "$TMP/app.c" $flags > "$TMP/cc.log" 2>&1; then
        ok "$1 cc app.c \$(pkg-config --cflags --libs hakmem) [$flags]"
        check_app "$1 program built with pkg-config" "$TMP/app-pc" LD_LIBRARY_PATH="${3:-}"
    else
        bad "$1 cc with pkg-config" "$(head -n 3 "$TMP/cc.log" | tr '\n' ' ')"
    fi
}

# check_cmake TAG [CMAKE_PREFIX_PATH]
check_cmake() {
    if ! have cmake; then skipped "$1 CMake" "cmake not installed"; return; fi
    d=$TMP/cmake-$1
    rm -rf "$d"
    mkdir -p "$d"
    cp "$TMP/app.c" "$d/"
    cat > "$d/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.10)
project(app C)
find_package(hakmem $MAJOR REQUIRED)
add_executable(app_shared app.c)
target_link_libraries(app_shared PRIVATE hakmem::hakmem)
add_executable(app_static app.c)
target_link_libraries(app_static PRIVATE hakmem::hakmem_static)
EOF
    if cmake -S "$d" -B "$d/b" ${2:+-DCMAKE_PREFIX_PATH="$2"} > "$d/log" 2>&1 &&
        cmake --build "$d/b" >> "$d/log" 2>&1; then
        ok "$1 CMake find_package(hakmem $MAJOR): both targets build"
        check_app "$1 program linked with hakmem::hakmem" "$d/b/app_shared"
        if ldd "$d/b/app_shared" | grep -q "libhakmem.so.$MAJOR "; then
            ok "$1 hakmem::hakmem links libhakmem.so.$MAJOR"
        else bad "$1 hakmem::hakmem links libhakmem.so.$MAJOR" "$(ldd "$d/b/app_shared" | tr '\n' ' ')"; fi
        check_app "$1 program linked with hakmem::hakmem_static" "$d/b/app_static"
        if ldd "$d/b/app_static" | grep -q libhakmem; then
            bad "$1 hakmem::hakmem_static is static" "it loads libhakmem"
        else ok "$1 hakmem::hakmem_static is linked in (no libhakmem.so loaded)"; fi
    else
        bad "$1 CMake find_package(hakmem)" "$(grep -i -m 3 'error' "$d/log" | tr '\n' ' ')"
    fi
}

# check_launcher TAG PATH-OF-hakmem LIBDIR
check_launcher() {
    tag=$1 hk=$2 libdir=$3
    v=$("$hk" --version 2>&1)
    if [ "$v" = "hakmem $VERSION" ]; then ok "$tag hakmem --version: $v"
    else bad "$tag hakmem --version" "$v"; fi
    if "$hk" --help 2>&1 | grep -q '^usage: hakmem'; then ok "$tag hakmem --help"
    else bad "$tag hakmem --help"; fi
    if have python3; then
        out=$("$hk" python3 -c 'print(1)' 2>&1)
        if [ "$out" = 1 ]; then ok "$tag hakmem python3 -c 'print(1)': $out"
        else bad "$tag hakmem python3 -c 'print(1)'" "$(echo "$out" | head -n 3 | tr '\n' ' ')"; fi
    else
        skipped "$tag hakmem python3" "python3 not installed"
    fi
    maps=$("$hk" cat /proc/self/maps 2>&1)
    if echo "$maps" | grep -q "$libdir/libhakmem.so.$VERSION"; then
        ok "$tag hakmem cat: $libdir/libhakmem.so.$VERSION is mapped"
    else bad "$tag hakmem cat: library mapped" "$(echo "$maps" | grep -m 2 hakmem)"; fi
    maps=$("$hk" --debug cat /proc/self/maps 2>&1)
    if echo "$maps" | grep -q "$libdir/libhakmem-debug.so.$VERSION"; then
        ok "$tag hakmem --debug cat: the debug flavor is mapped"
    else bad "$tag hakmem --debug cat: debug flavor mapped" "$(echo "$maps" | grep -m 2 hakmem)"; fi
    err=$("$hk" --stats true 2>&1 >/dev/null)
    if echo "$err" | grep -q '^memory: mapped'; then ok "$tag hakmem --stats true: statistics at exit"
    else bad "$tag hakmem --stats" "$(echo "$err" | head -n 3 | tr '\n' ' ')"; fi
    err=$("$hk" --json true 2>&1 >/dev/null)
    if echo "$err" | grep -q '^{'; then ok "$tag hakmem --json true: JSON statistics at exit"
    else bad "$tag hakmem --json" "$(echo "$err" | head -n 3 | tr '\n' ' ')"; fi
    "$hk" sh -c 'exit 42' >/dev/null 2>&1
    rc=$?
    if [ $rc -eq 42 ]; then ok "$tag hakmem sh -c 'exit 42': exit status 42 passed through"
    else bad "$tag hakmem exit status" "got $rc, want 42"; fi
    err=$("$hk" /nonexistent/program 2>&1)
    rc=$?
    if [ $rc -eq 127 ] && echo "$err" | grep -q 'no such program'; then
        ok "$tag hakmem /nonexistent/program: 127 ($err)"
    else bad "$tag hakmem /nonexistent/program" "rc=$rc: $err"; fi
    err=$("$hk" no-such-command-hakmem 2>&1)
    rc=$?
    if [ $rc -eq 127 ]; then ok "$tag hakmem no-such-command: 127"
    else bad "$tag hakmem no-such-command" "rc=$rc: $err"; fi
}

# ------------------------------------------------------------ 1. man pages
if have mandoc; then
    if out=$(mandoc -T lint -W warning "$ROOT/man/hakmem.1" "$ROOT/man/hakmem.3" 2>&1); then
        ok "mandoc -T lint -W warning man/hakmem.1 man/hakmem.3: clean"
    else
        bad "mandoc -T lint man pages" "$(echo "$out" | head -n 5 | tr '\n' ' ')"
    fi
else
    skipped "man page lint" "mandoc not installed"
fi
if sh -n "$ROOT/tools/hakmem.in"; then ok "launcher: sh -n"; else bad "launcher: sh -n"; fi

# ----------------------------------------- 2. make install PREFIX=<temp>
P=$TMP/prefix
if make -C "$ROOT" install PREFIX="$P" > "$TMP/install.log" 2>&1 &&
    make -C "$ROOT" install BUILD_FLAVOR=debug PREFIX="$P" >> "$TMP/install.log" 2>&1; then
    ok "make install PREFIX=<temp> (release and debug)"
    missing=
    for f in bin/hakmem include/hakmem.h lib/libhakmem.so.$VERSION lib/libhakmem.so.$MAJOR \
        lib/libhakmem.so lib/libhakmem.a lib/libhakmem-debug.so.$VERSION \
        lib/libhakmem-debug.so.$MAJOR lib/libhakmem-debug.so lib/libhakmem-debug.a \
        lib/pkgconfig/hakmem.pc lib/pkgconfig/hakmem-debug.pc \
        lib/cmake/hakmem/hakmemConfig.cmake lib/cmake/hakmem/hakmemConfigVersion.cmake \
        share/man/man1/hakmem.1 share/man/man3/hakmem.3; do
        [ -e "$P/$f" ] || missing="$missing $f"
    done
    if [ -z "$missing" ]; then ok "make install: all 16 files"; else bad "make install: missing" "$missing"; fi
    check_syms "$P/lib/libhakmem.so.$VERSION"
    check_syms "$P/lib/libhakmem-debug.so.$VERSION"
    check_pkgconfig prefix "$P/lib/pkgconfig" "$P/lib"
    check_cmake prefix "$P"
    check_launcher prefix "$P/bin/hakmem" "$P/lib"
else
    bad "make install PREFIX=<temp>" "$(tail -n 3 "$TMP/install.log" | tr '\n' ' ')"
fi

# ------------------------------------------------- 3. the Debian packages
PKGS="libhakmem1 libhakmem-debug1 libhakmem-dev hakmem"
why=
if [ "${HAKTEST_PACKAGE:-1}" = 0 ]; then why="HAKTEST_PACKAGE=0 (inside the package build)"
elif [ "$(id -u)" != 0 ]; then why="not root (apt-get install needs it)"
else
    for t in dpkg-buildpackage dh lintian apt-get dpkg-query; do
        have $t || { why="$t not installed (see tests/DEPENDENCIES)"; break; }
    done
fi
if [ -z "$why" ]; then
    for p in $PKGS; do
        if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q ' installed$'; then
            why="$p is already installed here; the test would replace and remove it"
            break
        fi
    done
fi
if [ -n "$why" ]; then
    skipped "Debian packages" "$why"
    finish
fi

# Build from a copy: dpkg-buildpackage writes into the parent directory.
S=$TMP/deb/hakmem-$VERSION
mkdir -p "$S"
(cd "$ROOT" && tar --exclude=./build --exclude=./.git -cf - .) | (cd "$S" && tar -xf -)
cv=$(cd "$S" && dpkg-parsechangelog -SVersion)
if [ "${cv%%-*}" = "$VERSION" ]; then ok "debian/changelog version $cv matches include/hakmem.h $VERSION"
else bad "debian/changelog version" "$cv, include/hakmem.h says $VERSION"; fi
# nocheck: make test is what runs us.
if (cd "$S" && DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b -Pnocheck) > "$TMP/dpkg-build.log" 2>&1; then
    ok "dpkg-buildpackage -us -uc -b: $(cd "$TMP/deb" && ls *.deb | tr '\n' ' ')"
else
    bad "dpkg-buildpackage" "$(tail -n 5 "$TMP/dpkg-build.log" | tr '\n' ' ')"
    finish
fi
lintian --info --pedantic "$TMP"/deb/*.changes > "$TMP/lintian.log" 2>&1
nerr=$(grep -c '^E: ' "$TMP/lintian.log")
nwarn=$(grep -c '^W: ' "$TMP/lintian.log")
nother=$(grep -c '^[IPX]: ' "$TMP/lintian.log")
grep '^[EWIPX]: ' "$TMP/lintian.log" | sed 's/^/    /'
if [ "$nerr" -eq 0 ]; then ok "lintian: 0 errors, $nwarn warnings, $nother info/pedantic"
else bad "lintian: $nerr errors" "$(grep -m 3 '^E: ' "$TMP/lintian.log" | tr '\n' ' ')"; fi

debs=
for p in $PKGS; do debs="$debs $(ls "$TMP"/deb/${p}_*.deb)"; done
INSTALLED_PKGS=$PKGS
if DEBIAN_FRONTEND=noninteractive apt-get install -y $debs > "$TMP/apt.log" 2>&1; then
    ok "apt-get install ./libhakmem1_*.deb ./libhakmem-debug1_*.deb ./libhakmem-dev_*.deb ./hakmem_*.deb"
else
    bad "apt-get install" "$(tail -n 5 "$TMP/apt.log" | tr '\n' ' ')"
    finish
fi
# The files the packages put on this machine (dpkg's path-exclude, as in
# container images without man pages, may leave some out).
for p in $PKGS; do dpkg -L "$p"; done | sort -u | while read -r f; do
    [ -f "$f" ] || [ -L "$f" ] && echo "$f"
done > "$TMP/files"
echo "    $(wc -l < "$TMP/files" | tr -d ' ') files installed"
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
LIBDIR=/usr/lib/$MA
for f in "$LIBDIR/libhakmem.so.$MAJOR" "$LIBDIR/libhakmem-debug.so.$MAJOR" /usr/bin/hakmem \
    /usr/include/hakmem.h "$LIBDIR/cmake/hakmem/hakmemConfig.cmake"; do
    if [ -e "$f" ]; then ok "installed: $f"; else bad "installed: $f" "missing"; fi
done
if grep -q '/man3/hakmem.3' "$TMP/files"; then
    if have man && man -w 3 hakmem > /dev/null 2>&1 && man -w 1 hakmem > /dev/null 2>&1; then
        ok "man -w 3 hakmem and man -w 1 hakmem find the pages"
    elif have man; then bad "man -w hakmem" "$(man -w 3 hakmem 2>&1)"
    else ok "man pages installed: $(grep /man/ "$TMP/files" | tr '\n' ' ')"; fi
else
    skipped "installed man pages" "dpkg excludes /usr/share/man on this machine"
fi
check_syms "$LIBDIR/libhakmem.so.$MAJOR"
check_syms "$LIBDIR/libhakmem-debug.so.$MAJOR"
check_pkgconfig system
check_cmake system
check_launcher system /usr/bin/hakmem "$LIBDIR"

if DEBIAN_FRONTEND=noninteractive apt-get purge -y $PKGS > "$TMP/purge.log" 2>&1; then
    INSTALLED_PKGS=
    ok "apt-get purge $PKGS"
else
    bad "apt-get purge" "$(tail -n 5 "$TMP/purge.log" | tr '\n' ' ')"
fi
left=
for p in $PKGS; do
    st=$(dpkg-query -W -f '${Status}' "$p" 2>/dev/null)
    case $st in
        ''|*not-installed) ;;
        *) left="$left $p ($st)" ;;
    esac
done
if [ -z "$left" ]; then ok "dpkg knows none of the packages after the purge"
else bad "packages still known to dpkg after the purge" "$left"; fi
remaining=$(while read -r f; do [ -e "$f" ] || [ -L "$f" ] && echo "$f"; done < "$TMP/files")
if [ -z "$remaining" ]; then ok "all $(wc -l < "$TMP/files" | tr -d ' ') installed files are gone"
else bad "files left after the purge" "$(echo "$remaining" | head -n 5 | tr '\n' ' ')"; fi

finish
