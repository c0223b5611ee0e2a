#!/bin/sh
# preload.sh DIR [LIBNAME]
#
# LD_PRELOAD DIR/LIBNAME (default libhakmem.so) into real Debian programs.
# With the hardened library (libhakmem-hardened.so) also: its usable size and
# its overflow check in a preloaded program (check_hardened).
# Each workload runs once without and once with the preload; stdout, stderr
# and the exit status must be identical byte for byte.  Programs started by
# the workload (git's helpers, cc1, as, ld, awk, ...) inherit the preload.
#
# Multi-threaded programs (xz -T2, zstd -T2, sort --parallel=2) are compared
# the same way on generated files; a Redis server is started under the preload
# and fed a benchmark and a deterministic dataset (see check_redis).
#
# Prints one line per check and last "preload: N passed, N failed, N skipped";
# exits non-zero if any check failed.  A check whose program is not installed
# is skipped (with the reason) for xz, zstd and redis, failed for the others.
#
# Needs: python3 perl sqlite3 git gcc xz-utils zstd redis-server redis-tools
# (Debian packages, see tests/DEPENDENCIES).
#
# Environment:
#   HAKMEM_PRELOAD_TIMEOUT  seconds before a workload run is killed (default 300)
#   HAKMEM_PRELOAD_ONLY     "BIN:NAME ..." instead of the five single-threaded
#                           workloads (python3:python perl:perl sqlite3:sqlite
#                           git:git gcc:gcc); the other checks always run

set -u

if [ $# -lt 1 ]; then
    echo "usage: $0 DIR [LIBNAME]" >&2
    exit 2
fi

LIBNAME=${2:-libhakmem.so}
DIR=$(cd "$1" 2>/dev/null && pwd) || DIR=$1
LIB=$DIR/$LIBNAME
HERE=$(cd "$(dirname "$0")" && pwd)
TIMEOUT=${HAKMEM_PRELOAD_TIMEOUT:-300}
ONLY=${HAKMEM_PRELOAD_ONLY:-}
TAG=${LIBNAME%.so}

# The knobs of this script and of run_tests.sh (HAKMEM_PRELOAD_*,
# HAKMEM_TEST_*) are not hakmem options: hakmem warns on stderr about every
# HAKMEM_ variable it does not know, which would make each preloaded run's
# stderr differ from the plain run's.  The programs do not get them.
for v in $(env | sed -n 's/^\(HAKMEM_\(PRELOAD\|TEST\)_[A-Za-z0-9_]*\)=.*/\1/p'); do
    unset "$v"
done

pass=0
fail=0
skipped=0

ok() {
    pass=$((pass + 1))
    echo "ok   preload[$TAG] $1"
}

bad() {
    fail=$((fail + 1))
    echo "FAIL preload[$TAG] $1: $2"
}

skip() {
    skipped=$((skipped + 1))
    echo "skip preload[$TAG] $1: $2"
}

finish() {
    echo "preload: $pass passed, $fail failed, $skipped skipped"
    [ "$fail" -eq 0 ]
    exit $?
}

if [ ! -f "$LIB" ]; then
    bad library "$LIB not found"
    finish
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-preload.XXXXXX") || exit 1
# A server started by a check (REDIS_PID) dies with the script, however it ends.
REDIS_PID=
cleanup() {
    if [ -n "$REDIS_PID" ]; then
        kill -9 "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

have() { command -v "$1" >/dev/null 2>&1; }

# watchdog PID SECONDS: kill -9 PID after SECONDS, from the background (its
# pid in $dog); stop_watchdog ends it.  It sleeps one second at a time and is
# ended with SIGKILL: nothing of it outlives the script by more than a second,
# and no signal of ours can be lost (a TERM sent while the subshell was being
# set up, still under the script's own trap, was, and stop_watchdog then
# waited out the whole sleep).
watchdog() {
    (
        n=0
        while [ $n -lt "$2" ]; do
            sleep 1
            n=$((n + 1))
        done
        kill -9 "$1" 2>/dev/null
    ) < /dev/null > /dev/null 2>&1 &
    dog=$!
}

stop_watchdog() {
    kill -9 "$dog" 2>/dev/null
    wait "$dog" 2>/dev/null
}

# Show the first differing lines of two files (indented).
show_diff() {
    if have diff; then
        diff "$1" "$2" | head -n 10 | sed 's/^/        /'
    else
        echo "        (files differ; diff not installed)"
    fi
}

# --------------------------------------------------------------- workloads
# Each wl_NAME runs in a fresh empty working directory (the current one),
# with LD_PRELOAD already exported for the "with" run.

wl_python() {
    PYTHONHASHSEED=0 python3 "$HERE/scripts/alloc_heavy.py"
}

wl_perl() {
    cat > script.pl <<'PERL'
use strict;
use warnings;
my %h;
for my $i (1 .. 150000) {
    my $k = "key$i" . ("x" x ($i % 23));
    $h{$k} = join(",", map { $_ * $i } 1 .. ($i % 7));
}
my ($n, $acc) = (0, 0);
for my $k (sort keys %h) {
    if ($k =~ /^key(\d+)(x*)$/) {
        $acc = ($acc * 31 + $1 + length($2) + length($h{$k})) % 4294967291;
    }
    $n++;
}
my @parts;
for my $i (1 .. 60000) {
    push @parts, sprintf("%05d:%s", $i, scalar reverse("abc$i" x ($i % 5 + 1)));
}
my $big = join("|", @parts);
(my $t = $big) =~ s/(\d+):/<$1>/g;
my @w = split /\|/, $t;
my %count;
$count{substr($_, 0, 3)}++ for @w;
delete $h{$_} for grep { /7/ } keys %h;
my @srt = sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count;
print "n=$n acc=$acc len=", length($big), " tlen=", length($t),
      " words=", scalar(@w), " sum=", unpack("%32C*", $t), "\n";
print "left=", scalar(keys %h), " top=@srt[0..4]\n";
PERL
    perl script.pl
}

wl_sqlite() {
    sqlite3 test.db <<'SQL'
CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL);
WITH RECURSIVE cnt(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM cnt WHERE x < 100000)
INSERT INTO t(a, b, c)
  SELECT (x * 7919) % 1000,
         printf('row-%d-%s', x, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26)),
         x / 7.0
  FROM cnt;
CREATE INDEX t_a ON t(a);
CREATE INDEX t_b ON t(b);
SELECT count(*), sum(a), printf('%.3f', total(c)) FROM t;
SELECT a, count(*), sum(length(b)) FROM t GROUP BY a ORDER BY a LIMIT 5;
SELECT b FROM t WHERE a = 77 ORDER BY b LIMIT 5;
SELECT count(DISTINCT b), max(b), min(b) FROM t;
SELECT sum(length(g)) FROM (SELECT a, group_concat(b, ',') AS g FROM t GROUP BY a);
UPDATE t SET b = b || b WHERE a % 3 = 0;
DELETE FROM t WHERE a % 5 = 0;
SELECT count(*), sum(length(b)) FROM t;
SELECT x.a, count(*) FROM t AS x JOIN t AS y ON x.a = y.a AND y.id < 2000
  WHERE x.id < 2000 GROUP BY x.a ORDER BY 2 DESC, 1 LIMIT 5;
VACUUM;
PRAGMA integrity_check;
SQL
}

wl_git() {
    export HOME="$PWD" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    export GIT_AUTHOR_NAME="Hak Mem" GIT_AUTHOR_EMAIL="hakmem@example.org"
    export GIT_COMMITTER_NAME="Hak Mem" GIT_COMMITTER_EMAIL="hakmem@example.org"
    export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
    export LC_ALL=C TZ=UTC
    git init -q -b main repo || return 1
    cd repo || return 1
    git config gc.auto 0
    git config pack.threads 2
    mkdir -p dir0 dir1 dir2
    i=1
    while [ $i -le 25 ]; do
        awk -v n=$i 'BEGIN { for (f = 0; f < 8; f++) {
                file = sprintf("dir%d/file%d.txt", f % 3, f)
                for (l = 0; l < 200 + n * 10; l++)
                    printf "file %d line %d rev %d %s\n", f, l, (l % (n + 1) == 0 ? n : 0), \
                        substr("the quick brown fox jumps over the lazy dog", 1, (l * 7 + f) % 44) > file
                close(file) } }' || return 1
        git add -A || return 1
        git commit -q -m "commit $i" -m "body of commit $i" || return 1
        i=$((i + 1))
    done
    git log --stat
    git rev-parse HEAD HEAD~10 HEAD~24
    git diff --stat HEAD~20 HEAD
    git blame -s dir1/file1.txt | tail -n 3
    git gc --quiet || return 1
    git fsck --no-progress --full || return 1
    git count-objects -v | grep -E '^(count|in-pack|packs|garbage):'
    git log --oneline | wc -l
}

wl_gcc() {
    # A program with heap use, plus generated code so that cc1 works hard.
    cat > prog.c <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct node { struct node *next; unsigned long v; char name[24]; };
static int cmp(const void *a, const void *b) {
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}
extern unsigned long gen_sum(unsigned long);
int main(void) {
    struct node *head = NULL;
    unsigned long x = 12345, sum = 0, i;
    for (i = 0; i < 200000; i++) {
        struct node *n = malloc(sizeof *n);
        if (!n) return 1;
        x = x * 6364136223846793005ul + 1442695040888963407ul;
        n->v = x >> 20;
        snprintf(n->name, sizeof n->name, "n%lu", i);
        n->next = head;
        head = n;
    }
    unsigned long *arr = malloc(200000 * sizeof *arr);
    if (!arr) return 1;
    i = 0;
    while (head) {
        struct node *n = head;
        head = n->next;
        arr[i++] = n->v + strlen(n->name);
        free(n);
    }
    qsort(arr, i, sizeof *arr, cmp);
    for (i = 0; i < 200000; i += 1000) sum = sum * 31 + arr[i];
    char *s = NULL;
    size_t len = 0;
    for (i = 0; i < 1000; i++) {
        s = realloc(s, len + 64);
        if (!s) return 1;
        len += (size_t)snprintf(s + len, 64, "%lu,", arr[i * 37 % 200000] % 1000);
    }
    printf("sum=%lu len=%zu gen=%lu tail=%s\n", sum, len, gen_sum(7), s + len - 20);
    free(s);
    free(arr);
    return 0;
}
EOF
    awk 'BEGIN {
        print "unsigned long gen_sum(unsigned long);"
        for (i = 0; i < 600; i++) {
            printf "static unsigned long f%d(unsigned long x) { unsigned long a[%d]; int i;\n", i, i % 13 + 2
            printf "  for (i = 0; i < %d; i++) a[i] = x * %d + i;\n", i % 13 + 2, i + 1
            printf "  x ^= a[%d] << %d; return x %s %d; }\n", i % 13 + 1, i % 7, (i % 2 ? "+" : "^"), i
        }
        print "unsigned long gen_sum(unsigned long x) {"
        for (i = 0; i < 600; i++) printf "  x = f%d(x);\n", i
        print "  return x; }"
    }' > gen.c
    gcc -O2 -S -o - gen.c | cksum || return 1
    gcc -O2 -Wall -o prog prog.c gen.c || return 1
    ./prog
}

# Multi-threaded programs.  Their inputs are generated once per run of this
# script, without the preload, into $INPUT (make_inputs).  Each round trip must
# give back the input, and the compressed or sorted bytes must be the same
# with and without hakmem (both runs use the same thread count, so the
# programs' output is deterministic).

INPUT=$TMP/input

wl_xz() {
    # 512 KiB blocks: 24 of them, compressed and decompressed two at a time
    # (the decoder's two threads allocate nothing themselves; the encoder's do)
    xz -T2 -1 --block-size=512KiB -c "$INPUT/mixed12.bin" > mixed.xz || return 1
    xz --robot --list mixed.xz | grep '^totals' || return 1
    sha256sum < mixed.xz
    xz -T2 -d -c mixed.xz > back || return 1
    cmp back "$INPUT/mixed12.bin" || return 1
    rm -f back
    echo "round trip ok"
}

wl_zstd() {
    # 1 MiB jobs, so that both worker threads get work
    zstd -q -T2 -5 -B1MiB -c "$INPUT/mixed.bin" > mixed.zst || return 1
    sha256sum < mixed.zst
    zstd -q -T2 -d -c mixed.zst > back || return 1
    cmp back "$INPUT/mixed.bin" || return 1
    rm -f back
    echo "round trip ok"
}

wl_sort() {
    export LC_ALL=C
    sort --parallel=2 -S 64M "$INPUT/lines.txt" > s1 || return 1
    sort -c s1 || return 1
    # stable numeric sort on the third field (ties keep the input order)
    sort --parallel=2 -S 64M -s -t ' ' -k3,3n "$INPUT/lines.txt" > s2 || return 1
    # a 1 MiB buffer: sorted runs go to temporary files, then are merged
    sort --parallel=2 -S 1M -T . -u "$INPUT/lines.txt" > s3 || return 1
    wc -l s1 s2 s3
    sha256sum s1 s2 s3
}

# make_inputs: 24 MiB of mixed data (text, random bytes, zeros, patterns) for
# zstd, its first 12 MiB for xz (whose compression is ten times slower), and
# 16 MiB of text lines for sort.  Returns non-zero if they cannot be made.
make_inputs() {
    [ -f "$INPUT/done" ] && return 0
    [ -d "$INPUT" ] && return 1       # an earlier attempt failed
    mkdir -p "$INPUT" || return 1
    have python3 || return 1
    python3 "$HERE/scripts/mt_input.py" 1 mixed 24 > "$INPUT/mixed.bin" || return 1
    head -c 12582912 "$INPUT/mixed.bin" > "$INPUT/mixed12.bin" || return 1
    python3 "$HERE/scripts/mt_input.py" 2 lines 16 > "$INPUT/lines.txt" || return 1
    touch "$INPUT/done"
}

# -------------------------------------------------------------------- redis
# check_redis: a Redis server (Debian 12's redis-server 7.0) runs once without
# and once with the preload, on 127.0.0.1 at a free port, with no persistence
# (--save '' --appendonly no), its directory in $TMP.  Its clients
# (redis-benchmark, redis-cli) run without the preload: the server is under
# test.  Against each server:
#   1. redis-benchmark on db 1 (random keys: SET GET LPUSH LPOP SADD HSET ZADD
#      MSET with 100-byte values, then SET GET LPUSH LPOP with 16 KiB values)
#      while redis-cli --pipe writes a deterministic dataset into db 0
#      (tests/scripts/redis_dataset.py: strings of 1 byte to 4 MiB, lists,
#      hashes, sets, sorted sets in each of their encodings, then overwrites,
#      deletes, renames, copies);
#   2. FLUSHDB of db 1, whose contents are random;
#   3. reads of the dataset, DEBUG DIGEST-VALUE of every key, DEBUG DIGEST;
#   4. DEBUG RELOAD (saves an RDB file in its directory, empties the dataset,
#      loads it back), then DBSIZE and DEBUG DIGEST again;
#   5. SHUTDOWN NOSAVE.
# Checks: the replies of 1-4 are the same as without the preload; the
# benchmark completes every test; the server exits with status 0 and without
# a crash report; hakmem served the server (below).  Redis's lazy-free thread
# frees what DEL of big keys and FLUSHDB drop (lazyfree-lazy-user-del and
# -flush are on), so blocks the main thread allocated are freed by another.
# DEBUG is refused by default since Redis 7 (enable-debug-command no): the
# servers run with --enable-debug-command local.
#
# Debian's redis-server is linked with libjemalloc.so.2 and calls malloc,
# calloc, realloc, free and malloc_usable_size by their plain names, so under
# LD_PRELOAD those bind to hakmem and jemalloc serves none of Redis's data.
# Its statistics calls (mallctl, malloc_stats_print, and nallocx, which
# sdsResize only compares with malloc_usable_size to skip a realloc), which
# hakmem does not export, still go to jemalloc.  So INFO memory still says
# mem_allocator:jemalloc-5.3.0 (a string fixed at build time) and its
# allocator_* fields describe jemalloc's own almost empty heap (allocated
# 28 KiB) while used_memory (Redis's own count, from malloc_usable_size, hence
# hakmem's sizes) holds the dataset (about 95 MiB).  The check "served by
# hakmem" asserts exactly that: with the preload allocator_allocated is under
# a tenth of used_memory (without it they are about equal, which is checked
# too), and HAKMEM_STATS=2 at the server's exit counts at least one heap.

RTIMEOUT=60
RDATA=$TMP/redis-data
# the benchmark: 8 tests of BENCH1 requests, then 4 tests of BENCH2 (16 KiB)
BENCH1=20000
BENCH2=2000

# rcli ARGS...: redis-cli to the current server ($port), bounded in time
rcli() { timeout -k 5 "$RTIMEOUT" redis-cli -h 127.0.0.1 -p "$port" "$@"; }

# redis_run MODE: one server's life; files in $TMP/redis-MODE: out (the
# replies compared), bench (its output) and bench.ok (if it completed), info
# (INFO memory), log (the server's stdout), err (its stderr), rc (its exit
# status), problems (what went wrong, empty if nothing did).
redis_run() {
    mode=$1
    d=$TMP/redis-$mode
    mkdir -p "$d/data" || return 1
    : > "$d/out"
    : > "$d/problems"
    date +%s.%N > "$d/t0"
    ready=
    tries=0
    while [ -z "$ready" ] && [ $tries -lt 5 ]; do
        tries=$((tries + 1))
        # a port free a moment ago; if someone takes it first, the server
        # fails to bind (or another server answers with another process id)
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || return 1
        (
            if [ $mode = preload ]; then
                LD_PRELOAD=$LIB HAKMEM_STATS=2
                export LD_PRELOAD HAKMEM_STATS
            fi
            exec redis-server --bind 127.0.0.1 --port "$port" --dir "$d/data" \
                --daemonize no --save '' --appendonly no \
                --enable-debug-command local \
                --lazyfree-lazy-user-del yes --lazyfree-lazy-user-flush yes
        ) > "$d/log" 2> "$d/err" &
        REDIS_PID=$!
        n=0
        while [ $n -lt 100 ] && kill -0 "$REDIS_PID" 2>/dev/null; do
            id=$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" INFO server 2>/dev/null |
                 sed -n 's/^process_id:\([0-9]*\).*/\1/p')
            if [ "$id" = "$REDIS_PID" ]; then
                ready=1
                break
            fi
            sleep 0.1
            n=$((n + 1))
        done
        if [ -z "$ready" ]; then
            kill -9 "$REDIS_PID" 2>/dev/null
            wait "$REDIS_PID" 2>/dev/null
            REDIS_PID=
            grep -q 'Address already in use' "$d/log" || break
        fi
    done
    if [ -z "$ready" ]; then
        echo "the server did not start: $(tail -n 3 "$d/log" | tr '\n' ' ') $(head -c 300 "$d/err")" > "$d/problems"
        return 1
    fi

    # 1. the benchmark on db 1 alongside the dataset on db 0
    (
        b="timeout -k 5 $RTIMEOUT redis-benchmark -h 127.0.0.1 -p $port --dbnum 1 -q"
        $b -n $BENCH1 -r 10000 -c 16 -P 8 -d 100 -t set,get,lpush,lpop,sadd,hset,zadd,mset &&
            $b -n $BENCH2 -r 500 -c 8 -P 4 -d 16384 -t set,get,lpush,lpop
    ) > "$d/bench" 2>&1 &
    bpid=$!
    rcli --pipe < "$RDATA/load.resp" >> "$d/out" 2> "$d/pipe.err" ||
        echo "redis-cli --pipe failed: $(head -c 300 "$d/pipe.err")" >> "$d/problems"
    cat "$d/pipe.err" >> "$d/out"
    # one "requests per second" line per test (progress lines end in \r)
    wait $bpid
    brc=$?
    if [ $brc -ne 0 ]; then
        echo "redis-benchmark failed (exit $brc)" >> "$d/problems"
    elif [ "$(tr '\r' '\n' < "$d/bench" | grep -c 'requests per second')" -ne 12 ]; then
        echo "redis-benchmark completed $(tr '\r' '\n' < "$d/bench" | grep -c 'requests per second') of 12 tests" >> "$d/problems"
    else
        touch "$d/bench.ok"
    fi
    # 2. the benchmark's random keys go
    { rcli -n 1 FLUSHDB && rcli -n 1 DBSIZE; } >> "$d/out" 2>&1 ||
        echo "FLUSHDB failed" >> "$d/problems"
    # 3. reads and digests
    rcli < "$RDATA/reads.txt" >> "$d/out" 2>&1 || echo "the reads failed" >> "$d/problems"
    rcli INFO memory > "$d/info" 2>&1 || echo "INFO memory failed" >> "$d/problems"
    # 4. save, empty, load
    { rcli DEBUG RELOAD && rcli DBSIZE && rcli DEBUG DIGEST; } >> "$d/out" 2>&1 ||
        echo "DEBUG RELOAD failed" >> "$d/problems"
    # 5. the end
    rcli SHUTDOWN NOSAVE >> "$d/shutdown" 2>&1
    watchdog "$REDIS_PID" 30
    wait "$REDIS_PID"
    echo $? > "$d/rc"
    REDIS_PID=
    stop_watchdog
    date +%s.%N > "$d/t1"
    return 0
}

# seconds DIR: how long redis_run took
seconds() { cat "$1/t0" "$1/t1" 2>/dev/null | awk 'NR == 1 { a = $1 } NR == 2 { printf "%.1f", $1 - a }'; }

# info_field FILE NAME: a number from INFO output
info_field() { sed -n "s/^$2:\\([0-9]*\\).*/\\1/p" "$1" 2>/dev/null | head -n 1; }

check_redis() {
    for bin in redis-server redis-cli redis-benchmark; do
        if ! have $bin; then
            skip redis "$bin not installed (Debian packages redis-server, redis-tools)"
            return
        fi
    done
    if ! have python3 || ! mkdir -p "$RDATA" ||
       ! python3 "$HERE/scripts/redis_dataset.py" 1 "$RDATA"; then
        bad redis "could not generate the dataset (python3 $HERE/scripts/redis_dataset.py)"
        return
    fi
    redis_run plain
    redis_run preload
    p=$TMP/redis-plain
    q=$TMP/redis-preload
    if [ -s "$p/problems" ] || [ "$(cat "$p/rc" 2>/dev/null)" != 0 ]; then
        bad redis "reference run without preload failed (exit $(cat "$p/rc" 2>/dev/null)): $(head -c 300 "$p/problems")"
        return
    fi

    # the replies
    if [ -s "$q/problems" ]; then
        bad "redis replies" "$(head -c 600 "$q/problems")"
    elif ! cmp -s "$p/out" "$q/out"; then
        bad "redis replies" "differ with preload"
        show_diff "$p/out" "$q/out"
    else
        ok "redis replies, DBSIZE and DEBUG DIGEST identical ($(wc -l < "$q/out" | tr -d ' ') lines, digest $(tail -n 1 "$q/out" | cut -c 1-12); $(seconds "$p") s without preload, $(seconds "$q") s with)"
    fi

    # the benchmark
    if [ ! -f "$q/bench.ok" ]; then
        bad "redis-benchmark" "$(head -n 2 "$q/problems" | tr '\n' ' ') $(tr '\r' '\n' < "$q/bench" 2>/dev/null | grep -v '^ *$' | tail -n 2)"
    else
        ok "redis-benchmark (12 tests, $((8 * BENCH1 + 4 * BENCH2)) requests)"
    fi

    # the exit
    rc=$(cat "$q/rc" 2>/dev/null)
    if [ "$rc" != 0 ]; then
        bad "redis exit" "exit status ${rc:-none} after SHUTDOWN NOSAVE: $(tail -n 5 "$q/log" | tr '\n' ' ') $(grep -v '^{"build":' "$q/err" | head -c 300)"
    elif grep -v '^{"build":' "$q/err" | grep -q .; then
        bad "redis exit" "status 0, but its stderr holds more than hakmem's statistics: $(grep -v '^{"build":' "$q/err" | head -c 300)"
    elif grep -q -i -E 'crashed|bug report|assertion' "$q/log"; then
        bad "redis exit" "crash report in its log: $(grep -i -E -m 3 'crashed|bug report|assertion' "$q/log" | tr '\n' ' ')"
    elif ! grep -q 'ready to exit, bye bye' "$q/log"; then
        bad "redis exit" "exit status 0 but no 'ready to exit' in its log: $(tail -n 3 "$q/log" | tr '\n' ' ')"
    else
        ok "redis exit (SHUTDOWN NOSAVE, status 0)"
    fi

    # who served the allocations
    pu=$(info_field "$p/info" used_memory)
    pa=$(info_field "$p/info" allocator_allocated)
    qu=$(info_field "$q/info" used_memory)
    qa=$(info_field "$q/info" allocator_allocated)
    alloc=$(sed -n 's/^mem_allocator:\([^[:space:]]*\).*/\1/p' "$q/info")
    heaps=$(sed -n 's/.*"heaps":\([0-9]*\).*/\1/p' "$q/err" | tail -n 1)
    if [ -z "$pu" ] || [ -z "$pa" ] || [ -z "$qu" ] || [ -z "$qa" ]; then
        bad "redis served by hakmem" "no used_memory / allocator_allocated in INFO memory"
    elif [ $((pa * 2)) -lt "$pu" ]; then
        bad "redis served by hakmem" "without preload jemalloc reports $pa bytes for used_memory $pu: the check cannot tell"
    elif [ $((qa * 10)) -ge "$qu" ]; then
        bad "redis served by hakmem" "jemalloc still holds $qa bytes of used_memory $qu with preload"
    elif [ "${heaps:-0}" -lt 1 ]; then
        bad "redis served by hakmem" "no heap in hakmem's statistics at the server's exit: $(head -c 200 "$q/err")"
    else
        ok "redis served by hakmem (used_memory $qu, jemalloc's allocator_allocated $qa, $pa without preload; mem_allocator still says $alloc; $heaps heap)"
    fi
}

# ------------------------------------------------------------------ driver

# compare NAME FUNC [MINHEAPS]: run FUNC twice (plain / preloaded) in fresh
# directories.  With MINHEAPS, the preloaded run also prints hakmem's
# statistics at exit (HAKMEM_STATS=2, lines taken out of its stderr before the
# comparison) and one of its processes must have had at least MINHEAPS thread
# heaps: that many threads allocated from hakmem.
compare() {
    name=$1
    func=$2
    minheaps=${3:-}
    for mode in plain preload; do
        d=$TMP/$name-$mode
        mkdir -p "$d/work"
        (
            cd "$d/work" || exit 99
            if [ $mode = preload ]; then
                LD_PRELOAD=$LIB
                export LD_PRELOAD
                if [ -n "$minheaps" ]; then
                    HAKMEM_STATS=2
                    export HAKMEM_STATS
                fi
            fi
            $func
        ) > "$d/out" 2> "$d/err" &
        pid=$!
        # watchdog: a hang must become a failure, not block CI
        watchdog $pid "$TIMEOUT"
        wait $pid
        echo $? > "$d/rc"
        stop_watchdog
    done
    p=$TMP/$name-plain
    q=$TMP/$name-preload
    heaps=
    if [ -n "$minheaps" ]; then
        grep '^{"build":' "$q/err" > "$q/stats"
        grep -v '^{"build":' "$q/err" > "$q/err.program"
        mv "$q/err.program" "$q/err"
        heaps=$(sed -n 's/.*"heaps":\([0-9]*\).*/\1/p' "$q/stats" | sort -n | tail -n 1)
    fi
    if [ "$(cat "$p/rc")" != 0 ]; then
        bad "$name" "reference run without preload failed (exit $(cat "$p/rc")): $(head -c 300 "$p/err")"
        return
    fi
    if [ "$(cat "$q/rc")" != 0 ]; then
        bad "$name" "exit status $(cat "$q/rc") with preload (0 without): $(head -c 600 "$q/err")"
        return
    fi
    if ! cmp -s "$p/out" "$q/out"; then
        bad "$name" "stdout differs with preload"
        show_diff "$p/out" "$q/out"
        return
    fi
    if ! cmp -s "$p/err" "$q/err"; then
        bad "$name" "stderr differs with preload"
        show_diff "$p/err" "$q/err"
        return
    fi
    if [ -n "$minheaps" ] && [ "${heaps:-0}" -lt "$minheaps" ]; then
        bad "$name" "output identical, but at most ${heaps:-no} heaps in hakmem's statistics (want $minheaps): its threads did not allocate from hakmem"
        return
    fi
    ok "$name ($(wc -c < "$p/out" | tr -d ' ') bytes of output identical${heaps:+; up to $heaps thread heaps})"
}

# compare_mt NAME FUNC MINHEAPS PROGRAM: compare, skipped if PROGRAM is missing.
compare_mt() {
    if ! have "$4"; then
        skip "$1" "$4 not installed"
    elif ! make_inputs; then
        bad "$1" "could not generate the input files (python3 $HERE/scripts/mt_input.py)"
    else
        compare "$1" "$2" "$3"
    fi
}

# The preload is really active: libhakmem is mapped, malloc resolves to it,
# and a malloc'd block is a hakmem block.
check_active() {
    if ! have python3; then
        bad active "python3 not installed"
        return
    fi
    out=$(LD_PRELOAD=$LIB python3 - "$LIB" 2>&1 <<'PY'
import ctypes, sys
maps = open("/proc/self/maps").read()
if "libhakmem" not in maps:
    print("libhakmem is not mapped"); sys.exit(1)
libc = ctypes.CDLL(None)
hak = ctypes.CDLL(sys.argv[1])
class DlInfo(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]
for fn in ("malloc", "free", "calloc", "realloc", "posix_memalign", "malloc_usable_size"):
    info = DlInfo()
    where = ctypes.cast(getattr(libc, fn), ctypes.c_void_p)
    if not libc.dladdr(where, ctypes.byref(info)) or b"libhakmem" not in (info.fname or b""):
        print("%s resolves to %s, not libhakmem" % (fn, info.fname)); sys.exit(1)
libc.malloc.restype = ctypes.c_void_p
libc.malloc_usable_size.restype = ctypes.c_size_t
libc.malloc_usable_size.argtypes = [ctypes.c_void_p]
hak.hak_malloc_usable_size.restype = ctypes.c_size_t
hak.hak_malloc_usable_size.argtypes = [ctypes.c_void_p]
p = libc.malloc(1000)
a, b = libc.malloc_usable_size(p), hak.hak_malloc_usable_size(p)
if a != b or a < 1000:
    print("usable size mismatch: %d vs %d" % (a, b)); sys.exit(1)
print("active")
PY
)
    rc=$?
    if [ $rc -eq 0 ] && [ "$out" = active ]; then
        ok "active in python3 (mapped, malloc resolves to libhakmem)"
    else
        bad "active in python3" "exit $rc: $out"
    fi
    # a plain C program (cat) sees it too, and nothing complains on stderr
    maps=$(LD_PRELOAD=$LIB cat /proc/self/maps 2>"$TMP/cat.err")
    if echo "$maps" | grep -q libhakmem && [ ! -s "$TMP/cat.err" ]; then
        ok "active in cat"
    else
        bad "active in cat" "libhakmem not in /proc/self/maps or stderr: $(head -c 300 "$TMP/cat.err")"
    fi
    # The program's own calls (bound through its versioned references to
    # glibc's malloc, not looked up by name as above) reach hakmem: its heap
    # statistics at exit count at least one heap.
    for cmd in "python3 -c x=[bytes(1000+i%500)for(i)in(range(20000))]" "cat /proc/self/status"; do
        st=$(HAKMEM_STATS=2 LD_PRELOAD=$LIB $cmd 2>&1 >/dev/null)
        heaps=$(echo "$st" | sed -n 's/.*"heaps":\([0-9]*\).*/\1/p' | head -n 1)
        if [ "${heaps:-0}" -ge 1 ]; then
            ok "serves ${cmd%% *}'s own malloc calls (heaps: $heaps)"
        else
            bad "serves ${cmd%% *}'s own malloc calls" "no heap in its statistics: $(echo "$st" | head -c 200)"
        fi
    done
    # and it is not there without the preload (sanity of the check)
    if cat /proc/self/maps | grep -q libhakmem; then
        bad "inactive without preload" "libhakmem mapped although not preloaded (is it in /etc/ld.so.preload?)"
    else
        ok "inactive without preload"
    fi
}

# The hardened library (libhakmem-hardened.so) in a real program: the usable
# size is the size asked for, and a write one byte past the end of a block
# stops the program at its free with hakmem's message.
check_hardened() {
    case $LIBNAME in
        *-hardened.so*) ;;
        *) return ;;
    esac
    if ! have python3; then
        bad "hardened checks in python3" "python3 not installed"
        return
    fi
    # (in braces with stderr closed off: the shell's own "Aborted" line)
    { out=$(LD_PRELOAD=$LIB python3 - 2>&1 <<'PY'
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.malloc_usable_size.restype = ctypes.c_size_t
libc.malloc_usable_size.argtypes = [ctypes.c_void_p]
libc.free.argtypes = [ctypes.c_void_p]
p = libc.malloc(1000)
print("usable %d" % libc.malloc_usable_size(p), flush=True)
ctypes.memset(p + 1000, 0x41, 1)
libc.free(p)
print("not stopped", flush=True)
PY
); rc=$?; } 2>/dev/null
    case $out in
        *"usable 1000"*) ok "hardened: malloc_usable_size(malloc(1000)) = 1000 in python3" ;;
        *) bad "hardened: malloc_usable_size(malloc(1000)) in python3" "want 1000: $(echo "$out" | head -c 300)" ;;
    esac
    if [ $rc -eq 134 ] && echo "$out" | grep -q "^hakmem: free(): buffer overflow (a write past the end) of the 1000-byte block" &&
        ! echo "$out" | grep -q "not stopped"; then
        ok "hardened: a write past the end stops python3 at free (SIGABRT, hakmem's message)"
    else
        bad "hardened: a write past the end in python3" "exit $rc, want 134 (SIGABRT) and hakmem's message: $(echo "$out" | head -c 300)"
    fi
}

check_active
check_hardened
for prog in ${ONLY:-python3:python perl:perl sqlite3:sqlite git:git gcc:gcc}; do
    bin=${prog%%:*}
    name=${prog#*:}
    if have "$bin"; then
        compare "$name" "wl_$name"
    else
        bad "$name" "$bin not installed"
    fi
done
# xz's and zstd's worker threads allocate their own state (3 or 4 heaps: the
# main thread, the workers, zstd's I/O thread).  sort's threads mostly work in
# the buffer its main thread allocated (2 heaps on the 64 MiB-buffer sort of
# this input, 1 on the others), so only one heap is required of it.
compare_mt xz wl_xz 2 xz
compare_mt zstd wl_zstd 2 zstd
compare_mt sort wl_sort 1 sort
check_redis
finish
