#!/bin/sh
# preload.sh DIR [LIBNAME]
#
# LD_PRELOAD DIR/LIBNAME (default libhakmem.so) into real Debian programs.
# Each workload runs once without and once with the preload; stdout, stderr
# and the exit status must be identical byte for byte.  Programs started by
# the workload (git's helpers, cc1, as, ld, awk, ...) inherit the preload.
#
# Multi-threaded programs (xz -T2, zstd -T2, sort --parallel=2) are compared
# the same way on generated files.
#
# Prints one line per check and last "preload: N passed, N failed, N skipped";
# exits non-zero if any check failed.  A check whose program is not installed
# is skipped (with the reason) for xz and zstd, failed for the others.
#
# Needs: python3 perl sqlite3 git gcc xz-utils zstd
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
cleanup() {
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

check_active
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
finish
