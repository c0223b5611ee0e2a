#!/bin/sh
# check_release.sh BUILDDIR
#
# Proves that the release library carries no diagnostic code: the debug-only
# functions are neither defined nor called in libhakmem.a/.so, and the malloc
# and free entry points are short, make no call and use no locked instruction.
# The same symbol checks are run against the debug library, where they must
# find the diagnostics, so that a broken check cannot pass silently.
# Prints "release-check: N passed, N failed"; exits non-zero on failure.
set -u
B=${1:-build}
pass=0
fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

DIAG_SYMS="hak_debug_check_node hak_debug_on_alloc hak_debug_on_free hak_debug_report_block pagefault_telemetry_touch"

# count_diag LIB: how many of the diagnostic symbols appear (defined or used)
count_diag() {
    n=0
    for s in $DIAG_SYMS; do
        if nm "$1" 2>/dev/null | grep -q " [TtUu] $s\$"; then n=$((n + 1)); fi
    done
    echo $n
}

for lib in "$B/libhakmem.a" "$B/libhakmem.so"; do
    n=$(count_diag "$lib")
    if [ "$n" -eq 0 ]; then ok "$lib: no diagnostic symbols"; else bad "$lib: $n diagnostic symbols present"; fi
done
n=$(count_diag "$B/libhakmem-debug.a")
if [ "$n" -eq 5 ]; then ok "libhakmem-debug.a: all 5 diagnostic symbols present (the check can see them)"
else bad "libhakmem-debug.a: expected 5 diagnostic symbols, found $n"; fi

# body FN LIB: the instructions of FN (found by its dynamic symbol, less any
# version suffix, since the standard names are aliases) up to and including
# its first ret
body() {
    addr=$(nm -D --defined-only "$2" | awk -v f="$1" '{ sub(/@.*/, "", $3) } $3 == f { print $1 }')
    [ -n "$addr" ] || return 0
    start=$((0x$addr))
    objdump -d --no-show-raw-insn --start-address=$start --stop-address=$((start + 1024)) "$2" |
        awk '/^ *[0-9a-f]+:	/ { print; if ($0 ~ /	ret/) exit }'
}

check_entry() {   # FN MAXINSNS
    fn=$1 max=$2 lib="$B/libhakmem.so"
    code=$(body "$fn" "$lib")
    n=$(printf '%s\n' "$code" | grep -c '	')
    if [ "$n" -eq 0 ]; then bad "$fn: not found in $lib"; return; fi
    if printf '%s\n' "$code" | grep -q '	call'; then bad "$fn: hit path makes a call"; else ok "$fn: hit path makes no call"; fi
    if printf '%s\n' "$code" | grep -q '	lock'; then bad "$fn: hit path has a locked instruction"; else ok "$fn: hit path has no locked instruction"; fi
    if [ "$n" -le "$max" ]; then ok "$fn: $n instructions to the first ret (max $max)"
    else bad "$fn: $n instructions to the first ret (max $max)"; fi
}
check_entry malloc 18
check_entry free 32

echo "release-check: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
