#!/bin/sh
# run_fuzz.sh BUILDDIR [SECONDS] [MAX_LEN]        (make fuzz)
#
# For each fuzz binary, BUILDDIR/fuzz/fuzz_ops-release and -debug:
#   1. every file of tests/fuzz/regressions/ runs once through it (one test
#      each: a crash the fuzzer found once, kept so that it stays fixed);
#   2. libFuzzer runs for SECONDS (default 60) with inputs of at most MAX_LEN
#      bytes (default 2048), from the seed corpus tests/fuzz/corpus/ and the
#      work corpus BUILDDIR/fuzz/corpus-<flavor>/ (which keeps what earlier
#      runs found); one test, failed by any crash, leak, timeout or memory
#      limit.  A crashing input is saved in BUILDDIR/fuzz/crashes-<flavor>/
#      and the log in BUILDDIR/fuzz/fuzz-<flavor>.log.
# Prints exec/s and coverage of each run, and at the end exactly one line
# "fuzz: N passed, N failed"; exits non-zero if anything failed.
#
# The debug binary runs with options that make hakmem's rare paths common
# (FUZZ_ENV_DEBUG): small front-cache bins (flushes, refills, slab release),
# purging at once (empty slabs, decayed page runs, region unmaps), with
# MADV_FREE (calloc must zero such pages itself), a shared pool of one
# SuperSlab, and the background purge thread racing the page-run arenas.  The release binary runs with the defaults
# (FUZZ_ENV_RELEASE, empty).  The regression inputs run under both.
#
# A crash: reproduce it with
#   env $FUZZ_ENV_<flavor> BUILDDIR/fuzz/fuzz_ops-<flavor> CRASHFILE
# (inputs whose first byte has bit 2 clear run their threads in lockstep and
# replay exactly; FUZZ_OPS_TRACE=1 prints every op), shrink it with
#   BUILDDIR/fuzz/fuzz_ops-<flavor> -minimize_crash=1 -runs=10000 CRASHFILE
# then copy it to tests/fuzz/regressions/<what-it-was> and commit it with the
# fix.
#
# Environment: FUZZ_TIMEOUT (seconds one input may take, default 60),
# FUZZ_RSS_MB (libFuzzer's memory limit, default 6144), FUZZ_ENV_RELEASE,
# FUZZ_ENV_DEBUG, FUZZ_FLAVORS (default "release debug").
#
# Why the memory limit is high: inputs keep at most 256 MiB live, but the
# process holds more.  With default options each of the 8 page-run arenas
# keeps the dirty pages of up to twice its recent live peak until it is next
# used (threads change arenas every input here): 1.6 GB resident after 10
# minutes of the release run.  Pages purged with MADV_FREE (the debug run)
# stay resident until the kernel wants them: 2.6 GB.
set -u

B=${1:-build}
SECS=${2:-60}
MAXLEN=${3:-2048}
HERE=$(cd "$(dirname "$0")" && pwd)
TIMEOUT=${FUZZ_TIMEOUT:-60}
RSS=${FUZZ_RSS_MB:-6144}
FLAVORS=${FUZZ_FLAVORS:-release debug}
ENV_release=${FUZZ_ENV_RELEASE:-}
ENV_debug=${FUZZ_ENV_DEBUG-HAKMEM_FRONT_BUDGET_KIB=8 HAKMEM_PURGE_RETAIN_MIB=1 HAKMEM_LARGE_DECAY_MS=20 HAKMEM_POOL_RETAIN=1 HAKMEM_PURGE_MODE=1 HAKMEM_BACKGROUND_PURGE=1}

pass=0
fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

# the value of "key: N" or "key N" on the last line of the log holding key
last_field() {
    grep "$2" "$1" | tail -n 1 | sed -n "s/.*$2 *\([0-9][0-9]*\).*/\1/p"
}

for flavor in $FLAVORS; do
    bin=$B/fuzz/fuzz_ops-$flavor
    eval "fenv=\$ENV_$flavor"
    if [ ! -x "$bin" ]; then
        bad "$bin: missing (make fuzz builds it)"
        continue
    fi
    echo "=== fuzz_ops-$flavor${fenv:+ ($fenv)}"

    # 1. regression inputs
    for f in "$HERE"/regressions/*; do
        [ -f "$f" ] || continue
        case "$f" in *.md|*.txt) continue ;; esac
        name=regressions/$(basename "$f")
        log=$B/fuzz/regression-$flavor.log
        if env $fenv timeout -k 10 $((TIMEOUT * 2)) "$bin" -timeout="$TIMEOUT" \
               -rss_limit_mb="$RSS" "$f" > "$log" 2>&1; then
            ok "$flavor: $name"
        else
            grep -E 'FAILED|hakmem|ERROR|SUMMARY' "$log" | head -n 5
            bad "$flavor: $name (log: $log)"
        fi
    done

    # 2. fuzzing
    work=$B/fuzz/corpus-$flavor
    crashes=$B/fuzz/crashes-$flavor
    log=$B/fuzz/fuzz-$flavor.log
    mkdir -p "$work" "$crashes"
    before=$(ls "$work" | wc -l | tr -d ' ')
    t0=$(date +%s)
    env $fenv timeout -k 10 $((SECS + TIMEOUT + 600)) "$bin" \
        -max_total_time="$SECS" -max_len="$MAXLEN" -timeout="$TIMEOUT" \
        -rss_limit_mb="$RSS" -print_final_stats=1 -artifact_prefix="$crashes/" \
        "$work" "$HERE/corpus" > "$log" 2>&1
    rc=$?
    t1=$(date +%s)
    runs=$(last_field "$log" 'stat::number_of_executed_units:')
    eps=$(last_field "$log" 'stat::average_exec_per_sec:')
    cov=$(last_field "$log" 'cov:')
    ft=$(last_field "$log" 'ft:')
    init_cov=$(grep 'INITED' "$log" | sed -n 's/.*cov: *\([0-9]*\).*/\1/p' | head -n 1)
    after=$(ls "$work" | wc -l | tr -d ' ')
    total=$(sed -n "s/.*(\([0-9][0-9]*\) inline 8-bit counters).*/\1/p" "$log" | head -n 1)
    echo "fuzz_ops-$flavor: $((t1 - t0)) s, ${runs:-?} runs, ${eps:-?} exec/s, coverage ${init_cov:-?} -> ${cov:-?} of ${total:-?} edges, ${ft:-?} features, work corpus $before -> $after inputs"
    if [ $rc -eq 0 ]; then
        ok "$flavor: fuzzing for $SECS s"
    else
        grep -E 'FAILED|hakmem:|ERROR|SUMMARY|Test unit written|out-of-memory|timeout' "$log" | head -n 20
        bad "$flavor: fuzzing (rc=$rc; log: $log; crash inputs: $crashes/)"
    fi
done

echo "fuzz: $pass passed, $fail failed"
[ $fail -eq 0 ]
