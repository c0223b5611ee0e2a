#!/bin/sh
# run_sanitize.sh BUILDDIR        (make test-sanitize)
#
# The tests against the hak_-only libraries built with a sanitizer; the test
# programs (BUILDDIR/san/*-ubsan, *-tsan) are built with the same sanitizer
# and call the hak_ names (tests/hak_names.h), so the sanitizer's runtime
# keeps malloc for itself, libc and cmocka.
#
#   UBSan   every cmocka test, every case (-fno-sanitize-recover: the first
#           report ends the process, the binary fails)
#   TSan    the cases with threads, each alone (TU_TEST_FILTER), stress at
#           HAKMEM_TEST_SCALE=0.5 (TSan runs 5-15x slower)
#             test_stress     all four cases
#             test_api        test_thread_exit_blocks
#             test_large      test_thread_ring, test_no_early_decay_under_
#                             contention, test_decay_background
#             test_tiers      test_remote_free_threads(_retain1)
#             test_diag       test_check_clean_heap (hak_check of a new thread)
#           not under TSan:   test_fork and test_large's test_fork_with_threads
#                             (their children start threads after a fork of a
#                             multi-threaded process, which TSan cannot follow:
#                             "starting new threads after multi-threaded fork
#                             is not supported"); test_tiers'
#                             test_exited_thread_blocks_come_back (its RSS
#                             bound counts TSan's shadow memory).  UBSan runs
#                             all of them.
#   canaries  a deliberate data race and a deliberate signed overflow must
#           each be reported and fail (tests/san_canary.c): the runs above
#           would see a real one
#   exports   tests/check_hak_exports.sh: libhakmem-hak.so (and the sanitizer
#           builds) export exactly the names of src/hakmem-hak.map
#
# A sanitizer report fails its binary: TSAN_OPTIONS halt_on_error=1 with
# exitcode=66, UBSan built with -fno-sanitize-recover=all (the test programs
# also compile these in as defaults, for the children they start with an
# environment of their own).  No TSan report is suppressed.
#
# Ends with exactly one line "sanitize: N passed, N failed, N skipped";
# exits non-zero if anything failed or a binary is missing.
#
# Environment:
#   HAKMEM_TEST_TIMEOUT    seconds per binary before it is killed (default 300)
#   HAKMEM_SAN_TSAN_SCALE  HAKMEM_TEST_SCALE of the TSan runs (default 0.5)

set -u

B=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
TIMEOUT=${HAKMEM_TEST_TIMEOUT:-300}
TSAN_SCALE=${HAKMEM_SAN_TSAN_SCALE:-0.5}
S=$B/san

export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
unset TU_TEST_FILTER

total_pass=0
total_fail=0
total_skip=0
summary=""

LOG=$(mktemp "${TMPDIR:-/tmp}/hakmem-san.XXXXXX") || exit 1
trap 'rm -f "$LOG"' EXIT INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
t_start=$(now)

note() {
    summary="$summary$1
"
}

# run_timed CMD...: run with a timeout, output to $LOG and the terminal
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

# A sanitizer's report in $LOG (also when the binary's status hides it).
san_report() {
    grep -q 'WARNING: ThreadSanitizer\|ERROR: ThreadSanitizer\|FATAL: ThreadSanitizer\|runtime error:\|ERROR: AddressSanitizer' "$LOG"
}

# run_cmocka BIN [FILTER]: a cmocka binary, or with FILTER only the cases
# whose name matches it; each case counts
run_cmocka() {
    bin=$1
    filter=${2:-}
    name=$(basename "$bin")${filter:+ $filter}
    echo "=== $name"
    if [ ! -x "$bin" ]; then
        echo "missing: $bin"
        total_fail=$((total_fail + 1))
        note "$name: MISSING"
        return
    fi
    t0=$(now)
    if [ -n "$filter" ]; then
        TU_TEST_FILTER=$filter run_timed $WRAP "$bin"
    else
        run_timed $WRAP "$bin"
    fi
    rc=$?
    t1=$(now)
    n=$(sed -n 's/.*Running \([0-9][0-9]*\) test(s).*/\1/p' "$LOG" | head -n 1)
    okc=$(grep -o '\[       OK \]' "$LOG" | wc -l | tr -d ' ')
    skc=$(grep -o '\[  SKIPPED \] [A-Za-z_][A-Za-z0-9_]*' "$LOG" | sort -u | wc -l | tr -d ' ')
    if [ -z "$n" ] || [ "$n" -eq 0 ]; then
        # crashed before cmocka started, or the filter matched nothing
        p=0
        f=1
        skc=0
    else
        p=$okc
        f=$((n - okc - skc))
        [ $f -lt 0 ] && f=0
        # non-zero exit (a sanitizer report after the last case, a crash)
        # or a report whose binary still exited 0: one failure
        if { [ $rc -ne 0 ] || san_report; } && [ $f -eq 0 ]; then
            f=1
            [ $p -gt 0 ] && p=$((p - 1))
        fi
    fi
    total_skip=$((total_skip + skc))
    status="rc=$rc"
    san_report && status="$status (sanitizer report)"
    # gcc 12's TSan cannot map its shadow with 32 bits of mmap randomisation
    grep -q 'unexpected memory mapping' "$LOG" &&
        status="$status (TSan vs ASLR: try sysctl vm.mmap_rnd_bits=28)"
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="$status (timed out after ${TIMEOUT}s?)"
    [ $rc -gt 128 ] && [ $rc -ne 137 ] && status="$status (killed by signal $((rc - 128)))"
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    note "$(printf '%-52s %3d passed, %3d failed, %2d skipped %6ss  %s' "$name" $p $f $skc "$(elapsed "$t0" "$t1")" "$status")"
}

# canary BIN ARG WANT: BIN ARG must fail, with WANT in its output
canary() {
    bin=$1
    name="$(basename "$bin") $2"
    echo "=== $name (must be reported)"
    if [ ! -x "$bin" ]; then
        echo "missing: $bin"
        total_fail=$((total_fail + 1))
        note "$name: MISSING"
        return
    fi
    run_timed $WRAP "$bin" "$2"
    rc=$?
    if [ $rc -ne 0 ] && grep -q "$3" "$LOG"; then
        total_pass=$((total_pass + 1))
        note "$(printf '%-52s   1 passed,   0 failed  (reported: rc=%s)' "$name" $rc)"
    else
        total_fail=$((total_fail + 1))
        note "$(printf '%-52s   0 passed,   1 failed  (rc=%s, want non-zero and \"%s\")' "$name" $rc "$3")"
    fi
}

# run_counted NAME PREFIX CMD...: a program that prints "PREFIX: N passed, N failed"
run_counted() {
    name=$1
    prefix=$2
    shift 2
    echo "=== $name"
    t0=$(now)
    run_timed "$@"
    rc=$?
    t1=$(now)
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
    fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    note "$(printf '%-52s %3d passed, %3d failed %11s %6ss  rc=%s' "$name" "$p" "$f" "" "$(elapsed "$t0" "$t1")" "$rc")"
}

# ------------------------------------------------------------------ UBSan
WRAP=   # a command the programs run under (TSan below)
for t in test_api test_stress test_large test_tiers test_misuse test_fork test_diag; do
    run_cmocka "$S/$t-ubsan"
done

# ------------------------------------------------------------------- TSan
# gcc 12's TSan cannot place its shadow memory when the kernel randomises
# mmap with more than 28 bits: then the TSan programs run with address
# randomisation off (setarch -R), which changes nothing else they do.
WRAP=
bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)
if [ "$bits" -gt 28 ] && setarch "$(uname -m)" -R true 2>/dev/null; then
    WRAP="setarch $(uname -m) -R"
    echo "vm.mmap_rnd_bits=$bits: TSan programs run under $WRAP"
fi
export HAKMEM_TEST_SCALE="$TSAN_SCALE"
run_cmocka "$S/test_stress-tsan"
run_cmocka "$S/test_api-tsan" test_thread_exit_blocks
for c in test_thread_ring test_no_early_decay_under_contention test_decay_background; do
    run_cmocka "$S/test_large-tsan" "$c"
done
for c in test_remote_free_threads test_remote_free_threads_retain1; do
    run_cmocka "$S/test_tiers-tsan" "$c"
done
run_cmocka "$S/test_diag-tsan" test_check_clean_heap
unset HAKMEM_TEST_SCALE

# ------------------------------------------------- canaries and exports
canary "$S/san_canary-tsan" race "WARNING: ThreadSanitizer: data race"
WRAP=
canary "$S/san_canary-ubsan" ub "runtime error: signed integer overflow"
run_counted "hak-exports" hak-exports sh "$HERE/check_hak_exports.sh" "$B"

echo "=== summary"
printf '%s' "$summary"
echo "total $(elapsed "$t_start" "$(now)")s"
echo "sanitize: $total_pass passed, $total_fail failed, $total_skip skipped"
[ $total_fail -eq 0 ]
