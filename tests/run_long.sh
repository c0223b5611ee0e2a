#!/bin/sh
# run_long.sh BUILDDIR: the long tests (make test-long, the last part of make test).
#
#   BUILDDIR/tests/soak             a steady multi-threaded workload for
#                                   HAKMEM_SOAK_SECONDS (default 600) with RSS
#                                   sampled; counted from its last line
#                                   "soak: N passed, N failed"
#   BUILDDIR/tests/test_chaos-{release,debug,hardened}
#                                   the chaos tests at HAKMEM_TEST_SCALE
#                                   (default 4 here: 4000 threads in waves,
#                                   16 rounds of forks, 6 s of signals)
#
# Ends with one line "N passed, N failed" (totals); exits non-zero if
# anything failed.  Takes about HAKMEM_SOAK_SECONDS + 40 s.

set -u

B=${1:-build}
SECS=${HAKMEM_SOAK_SECONDS:-600}
SCALE=${HAKMEM_TEST_SCALE:-4}
# The soak gets its time as an argument: the library warns about HAKMEM_
# variables it does not know.
unset HAKMEM_SOAK_SECONDS

total_pass=0
total_fail=0
summary=""

LOG=$(mktemp "${TMPDIR:-/tmp}/hakmem-long.XXXXXX") || exit 1
trap 'rm -f "$LOG"' EXIT INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# run LIMIT CMD...: run with a time limit; output to $LOG and the terminal
run() {
    limit=$1
    shift
    if command -v timeout >/dev/null 2>&1; then
        timeout -k 10 "$limit" "$@" > "$LOG" 2>&1
    else
        "$@" > "$LOG" 2>&1
    fi
    rc=$?
    cat "$LOG"
    return $rc
}

echo "=== soak ($SECS s)"
t0=$(now)
run $(awk -v s="$SECS" 'BEGIN { printf "%d", s + 120 }') "$B/tests/soak" "$SECS"
rc=$?
t1=$(now)
line=$(grep '^soak: [0-9]* passed, [0-9]* failed' "$LOG" | tail -n 1)
if [ -z "$line" ]; then
    p=0
    f=1
else
    p=$(echo "$line" | sed 's/^soak: \([0-9]*\) passed.*/\1/')
    f=$(echo "$line" | sed 's/.* \([0-9]*\) failed.*/\1/')
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
fi
total_pass=$((total_pass + p))
total_fail=$((total_fail + f))
summary="$summary$(printf '%-22s %3d passed, %3d failed  %7ss  rc=%s' soak "$p" "$f" "$(elapsed "$t0" "$t1")" "$rc")
"

for flavor in release debug hardened; do
    bin=$B/tests/test_chaos-$flavor
    echo "=== test_chaos-$flavor (HAKMEM_TEST_SCALE=$SCALE)"
    t0=$(now)
    HAKMEM_TEST_SCALE=$SCALE run 900 "$bin"
    rc=$?
    t1=$(now)
    n=$(sed -n 's/.*Running \([0-9][0-9]*\) test(s).*/\1/p' "$LOG" | head -n 1)
    okc=$(grep -c '^\[       OK \]' "$LOG")
    if [ -z "$n" ]; then
        p=0
        f=1
    else
        p=$okc
        f=$((n - okc))
        [ $rc -ne 0 ] && [ $f -eq 0 ] && f=1
    fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    summary="$summary$(printf '%-22s %3d passed, %3d failed  %7ss  rc=%s' "test_chaos-$flavor" "$p" "$f" "$(elapsed "$t0" "$t1")" "$rc")
"
done

echo "=== summary"
printf '%s' "$summary"
echo "$total_pass passed, $total_fail failed"
[ $total_fail -eq 0 ]
