#!/bin/sh
# run_tests.sh BUILDDIR
#
# Runs every test of the three flavors (release, debug, hardened):
#   BUILDDIR/tests/{test_api,test_stress,test_fork,test_misuse,test_diag,
#   test_tiers}-{release,debug,hardened}
#   and any other BUILDDIR/tests/*-{release,debug,hardened} (cmocka: each
#   case counts)
#   BUILDDIR/tests/test_static-{release,debug,hardened}  (each check counts)
#   BUILDDIR/tests/misuse_matrix: 117 kinds of misuse under each flavor (the
#     hardened flavor's table, and every double/invalid free stopped by all),
#     and each HAKMEM_ option of the hardened flavor off and on
#   tests/check_release.sh (the release library carries no diagnostics)
#   tests/preload.sh against BUILDDIR/libhakmem.so, libhakmem-debug.so and
#   libhakmem-hardened.so                  (each check counts)
#   tests/package.sh: make install, the launcher, pkg-config and CMake, and
#     as root the Debian packages built, lintian'd, installed and purged
#                                          (each check counts; parts whose
#                                          tools are missing are skipped)
# and ends with exactly one line "N passed, N failed" (totals); exits non-zero
# if anything failed or a binary is missing.
#
# Environment:
#   HAKMEM_TEST_TIMEOUT   seconds per binary before it is killed (default 600)
#   HAKMEM_TEST_SCALE     workload scale for the stress/fork tests (default 1)
#   HAKMEM_PRELOAD_DEBUG  0 to skip the preload run with the debug library
#   HAKMEM_PRELOAD_HARDENED  0 to skip the preload run with the hardened library

set -u

B=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
TIMEOUT=${HAKMEM_TEST_TIMEOUT:-600}
PRELOAD_DEBUG=${HAKMEM_PRELOAD_DEBUG:-1}
PRELOAD_HARDENED=${HAKMEM_PRELOAD_HARDENED:-1}

total_pass=0
total_fail=0
total_skip=0
summary=""

LOG=$(mktemp "${TMPDIR:-/tmp}/hakmem-tests.XXXXXX") || exit 1
trap 'rm -f "$LOG"' EXIT INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

note() {
    summary="$summary$1
"
}

# run_timed BIN ARGS...: run with a timeout, output to $LOG and the terminal
run_timed() {
    if command -v timeout >/dev/null 2>&1; then
        timeout -k 10 "$TIMEOUT" "$@" > "$LOG" 2>&1
    else
        "$@" > "$LOG" 2>&1
    fi
    rc=$?
    cat "$LOG"
    echo
    return $rc
}

run_cmocka() {
    bin=$1
    name=$(basename "$bin")
    echo "=== $name"
    if [ ! -x "$bin" ]; then
        echo "missing: $bin"
        total_fail=$((total_fail + 1))
        note "$name: MISSING"
        return
    fi
    t0=$(now)
    run_timed "$bin"
    rc=$?
    t1=$(now)
    n=$(sed -n 's/.*Running \([0-9][0-9]*\) test(s).*/\1/p' "$LOG" | head -n 1)
    okc=$(grep -o '\[       OK \]' "$LOG" | wc -l | tr -d ' ')
    # skipped cases, by name: cmocka prints each skipped name twice (when it
    # runs and in the final list) plus a "[  SKIPPED ] N test(s)" line
    skc=$(grep -o '\[  SKIPPED \] [A-Za-z_][A-Za-z0-9_]*' "$LOG" | sort -u | wc -l | tr -d ' ')
    if [ -z "$n" ]; then
        # crashed before cmocka started: count as one failure
        p=0
        f=1
    else
        p=$okc
        f=$((n - okc - skc))
        total_skip=$((total_skip + skc))
        [ $f -lt 0 ] && f=0
        # non-zero exit without any failed case (e.g. crash after the last
        # test, or the summary lost): count one failure
        if [ $rc -ne 0 ] && [ $f -eq 0 ]; then
            f=1
        fi
    fi
    status="rc=$rc"
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="$status (timed out after ${TIMEOUT}s?)"
    [ $rc -gt 128 ] && [ $rc -ne 137 ] && status="$status (killed by signal $((rc - 128)))"
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    note "$(printf '%-22s %3d passed, %3d failed  %6ss  %s' "$name" $p $f "$(elapsed "$t0" "$t1")" "$status")"
}

# run_counted NAME PREFIX CMD...: a program that prints "PREFIX: N passed, N failed"
# (optionally followed by ", N skipped")
run_counted() {
    name=$1
    prefix=$2
    shift 2
    echo "=== $name"
    t0=$(now)
    run_timed "$@"
    rc=$?
    t1=$(now)
    s=
    line=$(grep "^$prefix: [0-9]* passed, [0-9]* failed" "$LOG" | tail -n 1)
    if [ -z "$line" ]; then
        p=0
        f=1
    else
        p=$(echo "$line" | sed 's/^[^:]*: \([0-9]*\) passed.*/\1/')
        f=$(echo "$line" | sed 's/.* \([0-9]*\) failed.*/\1/')
        if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
            f=1
        fi
        # optional ", N skipped"
        s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
        total_skip=$((total_skip + ${s:-0}))
    fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    note "$(printf '%-22s %3d passed, %3d failed  %6ss  rc=%s%s' "$name" "$p" "$f" "$(elapsed "$t0" "$t1")" "$rc" "${s:+, $s skipped}")"
}

# The expected cmocka binaries (reported as missing if absent) plus any other
# BUILDDIR/tests/*-FLAVOR that the Makefile builds.
CMOCKA_TESTS="test_api test_stress test_fork test_misuse test_diag test_tiers"

for flavor in release debug hardened; do
    for t in $CMOCKA_TESTS; do
        run_cmocka "$B/tests/$t-$flavor"
    done
    for bin in "$B"/tests/*-$flavor; do
        [ -x "$bin" ] || continue
        t=$(basename "$bin" "-$flavor")
        case " $CMOCKA_TESTS test_static " in
            *" $t "*) continue ;;
        esac
        run_cmocka "$bin"
    done
    bin=$B/tests/test_static-$flavor
    if [ -x "$bin" ]; then
        run_counted "test_static-$flavor" static "$bin"
    else
        echo "missing: $bin"
        total_fail=$((total_fail + 1))
        note "test_static-$flavor: MISSING"
    fi
done

run_counted "release-check" release-check sh "$HERE/check_release.sh" "$B"

run_counted "misuse-hardened" misuse "$B/tests/misuse_matrix" --expect hardened "$B/libhakmem-hardened.so"
run_counted "options-hardened" options "$B/tests/misuse_matrix" --options "$B/libhakmem-hardened.so"
run_counted "misuse-release" misuse "$B/tests/misuse_matrix" --expect release "$B/libhakmem.so"
run_counted "misuse-debug" misuse "$B/tests/misuse_matrix" --expect release "$B/libhakmem-debug.so"

run_counted "preload-release" preload sh "$HERE/preload.sh" "$B" libhakmem.so
if [ "$PRELOAD_DEBUG" != 0 ]; then
    run_counted "preload-debug" preload sh "$HERE/preload.sh" "$B" libhakmem-debug.so
fi
if [ "$PRELOAD_HARDENED" != 0 ]; then
    run_counted "preload-hardened" preload sh "$HERE/preload.sh" "$B" libhakmem-hardened.so
fi

run_counted "package" package sh "$HERE/package.sh"

echo "=== summary"
printf '%s' "$summary"
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ $total_fail -eq 0 ]
