#!/usr/bin/env python3
"""Benchmark runner: hakmem against glibc, mimalloc, jemalloc and tcmalloc.

The benchmark programs (build/bench_*) call the standard malloc/free; each
allocator is swapped in with LD_PRELOAD, so all of them pay the same call
cost.  Real programs (python3 running bench/bench_python.py, sqlite3 running
bench/bench_sqlite.sql) are timed whole through build/bench_exec, under each
allocator's LD_PRELOAD and without one (system).  Runs alternate between
allocators inside every repetition; the table reports, per (benchmark,
allocator), the median ops/s, the spread of the repetitions (slowest and
fastest run relative to the median), the ratio to mimalloc, hakmem's
standing against the best peer (first / tie / behind; a tie when the two
spreads overlap) and the median peak RSS.  After the timed repetitions every
(benchmark, allocator) runs once more under `strace -f -c` to count its
mmap-family system calls (mmap munmap mremap madvise brk mprotect, over the
whole process, dynamic loader included) per 1,000 operations; "n/a" where
strace is missing, cannot trace, or --no-strace is given.  A summary closes
the report: per allocator the geometric means over the rows of its time and
its peak RSS relative to mimalloc, and the count of rows where hakmem is
first, tied or behind.

--chart DIR writes the numbers to DIR/bench.dat and draws them with gnuplot
(bench/bench_chart.gp) into DIR/bench.svg and DIR/bench.png: time and peak
RSS relative to mimalloc, one group of bars per row.

stdout carries only the report (header line + markdown tables); progress and
diagnostics go to stderr.  Exit status: 0 if every run succeeded, 1 if any
run failed (shown as FAILED in the table) or gnuplot failed, 2 on a
usage/setup error.

usage: run_bench.py [--lib build/libhakmem.so] [--bindir build] [--reps N]
                    [--quick] [--out FILE] [--chart DIR] [--only a,b,...]
                    [--rows a,b,...] [--no-strace] [--timeout SEC]

--rows (default $BENCH_ROWS) keeps the rows whose name contains one of the
comma-separated substrings, e.g. --rows band,server or BENCH_ROWS=remote.
"""

import argparse
import datetime
import glob
import math
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

# bench_rss also prints "rss_kb: start N peak N after_free90 N ..."
PHASES_RE = re.compile(r"^rss_kb:((?: \w+ \d+)+)\s*$", re.M)
RESULT_RE = re.compile(
    r"^ops/s: (\d+) peak_rss_kb: (-?\d+) ops: (\d+) seconds: ([0-9.eE+-]+)\s*$",
    re.MULTILINE,
)

# The system calls counted by the strace pass: the ones an allocator uses to
# get memory from the kernel and give it back.
SYSCALLS = ["mmap", "munmap", "mremap", "madvise", "brk", "mprotect"]
# A line of strace -c's summary: % time, seconds, usecs/call, calls,
# [errors], syscall.
STRACE_LINE_RE = re.compile(r"^\s*[0-9.]+\s+[0-9.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")

# name -> (sonames to look for, in order of preference; Debian package)
THIRD_PARTY = [
    ("mimalloc", ["libmimalloc.so.2", "libmimalloc.so.2.0", "libmimalloc.so"], "libmimalloc2.0"),
    ("jemalloc", ["libjemalloc.so.2", "libjemalloc.so"], "libjemalloc2"),
    ("tcmalloc", ["libtcmalloc_minimal.so.4", "libtcmalloc_minimal.so"], "libtcmalloc-minimal4"),
    # LLVM's hardened allocator, the yardstick of hakmem's hardened flavor;
    # not a peer for the standings (see HARDENED_PEERS)
    ("scudo", ["libclang_rt.scudo_standalone-%s.so" % platform.machine()], "libclang-rt-14-dev"),
]
HARDENED_PEERS = {"scudo"}

MULTIARCH = {
    "x86_64": "x86_64-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "arm64": "aarch64-linux-gnu",
    "i686": "i386-linux-gnu",
    "i386": "i386-linux-gnu",
    "armv7l": "arm-linux-gnueabihf",
    "ppc64le": "powerpc64le-linux-gnu",
    "s390x": "s390x-linux-gnu",
    "riscv64": "riscv64-linux-gnu",
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------ benchmarks

def benchmarks(quick):
    """(row name, binary, argv tail).  The report's figure is random_mixed at
    1M iterations; runs that short last a few milliseconds here, so the longer
    rows are the ones to trust.  --quick divides the iterations by 5.

    Every benchmark writes the blocks it allocates: at least the first and
    last byte and one byte per 4096-byte page (bench_touch in
    bench_common.h), so large blocks cost their page faults.  The counts of
    the large-block rows are set so that glibc takes about 0.2-1.5 s each on
    a 2-core machine."""
    div = 5 if quick else 1
    def it(n):
        return max(n // div, 1)
    def tag(n):
        n = it(n)
        if n % 1_000_000 == 0:
            return "%dM" % (n // 1_000_000)
        if n % 1000 == 0:
            return "%dk" % (n // 1000)
        return "%d" % n
    KiB, MiB = 1024, 1024 * 1024
    rows = [
        ("random_mixed 1T %s ws256" % tag(1_000_000), "bench_random_mixed", [it(1_000_000), 256, 42]),
        ("random_mixed 1T %s ws256" % tag(20_000_000), "bench_random_mixed", [it(20_000_000), 256, 42]),
        ("mt_mixed 2T %s/thread" % tag(5_000_000), "bench_mt_mixed", [2, it(5_000_000), 256, 42]),
        ("mt_mixed 4T %s/thread" % tag(5_000_000), "bench_mt_mixed", [4, it(5_000_000), 256, 42]),
        ("prodcons 2T %s/thread" % tag(5_000_000), "bench_prodcons", [2, it(5_000_000), 42]),
        ("prodcons 4T %s/thread" % tag(5_000_000), "bench_prodcons", [4, it(5_000_000), 42]),
        # size bands: the random_mixed loop (ws slots, each step frees or
        # allocates) over larger sizes; every block written once per page
        ("band 1-64KiB ws256 %s" % tag(2_000_000), "bench_random_mixed",
         [it(2_000_000), 256, 42, 1 * KiB, 64 * KiB]),
        ("band 64KiB-1MiB ws64 %s" % tag(200_000), "bench_random_mixed",
         [it(200_000), 64, 42, 64 * KiB, 1 * MiB]),
        ("band 64KiB-1MiB ws256 %s" % tag(300_000), "bench_random_mixed",
         [it(300_000), 256, 42, 64 * KiB, 1 * MiB]),
        ("band 256KiB-1MiB ws64 %s" % tag(200_000), "bench_random_mixed",
         [it(200_000), 64, 42, 256 * KiB, 1 * MiB]),
        # about 8 (ws16) and 32 (ws64) live blocks of 1-32 MiB: peak RSS up
        # to about 1 GiB
        ("band 1-32MiB ws16 %s" % tag(2000), "bench_random_mixed",
         [it(2000), 16, 42, 1 * MiB, 32 * MiB]),
        ("band 1-32MiB ws64 %s" % tag(2000), "bench_random_mixed",
         [it(2000), 64, 42, 1 * MiB, 32 * MiB]),
        # the 64KiB-1MiB ws64 band on 2 threads at once
        ("mt_mixed 2T band 64KiB-1MiB ws64 %s/thread" % tag(150_000), "bench_mt_mixed",
         [2, it(150_000), 64, 42, 64 * KiB, 1 * MiB]),
        # one thread allocates 256KiB-4MiB blocks, another frees them
        ("large_remote 256KiB-4MiB %s" % tag(10_000), "bench_large_remote",
         [it(10_000), 42, 256 * KiB, 4 * MiB]),
        # 2 threads, requests with 64KiB-4MiB buffers partly filled, 4 held
        ("server 2T 64KiB-4MiB %s/thread" % tag(15_000), "bench_server", [2, it(15_000), 42]),
        # strings growing by appending, vectors growing by doubling
        ("realloc growth %s" % tag(2_000_000), "bench_realloc", [it(2_000_000), 16 // div, 42]),
        # 20 live buffers of 5-25 MiB, each new one written in full
        ("largebuf 20x5-25MiB %d" % it(300), "bench_largebuf", [it(300), 42]),
        # 2000 threads holding 50 small blocks each: peak RSS is the figure
        ("threads 2000x50 blocks", "bench_threads", [2000 // div]),
        # RSS over time: 1 GiB of mixed blocks, free 90%, free all, trim
        ("rss 1GiB", "bench_rss", [1024 // div, 42]),
        # The classic allocator workloads, in versions of our own (each
        # file's head comment gives the shape and its parameters).
        # larson: lanes of successive threads replacing random blocks of
        # 8..1000 bytes in 1000 slots; every 10k operations the lane's
        # thread exits and a new one takes over its blocks
        ("larson 2T %s/lane" % tag(10_000_000), "bench_larson", [2, it(10_000_000), 42]),
        ("larson 4T %s/lane" % tag(5_000_000), "bench_larson", [4, it(5_000_000), 42]),
        # xmalloc: one thread allocates 16..512 bytes, two threads free
        ("xmalloc 1+2T %s" % tag(6_000_000), "bench_xmalloc", [2, it(6_000_000), 42]),
        # false sharing: 8-byte objects written 50 times each
        ("cache-thrash 2T %s/thread" % tag(700_000), "bench_cache",
         ["thrash", 2, it(700_000), 8, 50]),
        ("cache-scratch 2T %s/thread" % tag(700_000), "bench_cache",
         ["scratch", 2, it(700_000), 8, 50]),
    ]
    # glibc's simple malloc benchmark's shape: n blocks of one size (16 ..
    # 4096), FIFO then LIFO free; a fixed time per run (glibc is up to 60
    # times slower than the others here)
    ms = max(250 // div, 1)
    for threads, n in ((1, 25), (1, 100), (1, 400), (1, 1600), (2, 25), (2, 1600)):
        rows.append(("simple %dT n%d %gs" % (threads, n, ms / 1000.0), "bench_simple",
                     [threads, n, ms]))
    rows += [
        # mixed sizes skewed small, lifetimes of ~20, ~6k and ~2M operations
        ("alloc_test 1T %s" % tag(15_000_000), "bench_alloc_test", [1, it(15_000_000), 42]),
        ("alloc_test 2T %s/thread" % tag(8_000_000), "bench_alloc_test", [2, it(8_000_000), 42]),
        # random sizes 16 B..64 KiB and lifetimes, 10% of blocks handed to
        # the next thread to free
        ("rptest 2T %s/thread" % tag(3_000_000), "bench_rptest", [2, it(3_000_000), 42]),
        ("rptest 4T %s/thread" % tag(1_500_000), "bench_rptest", [4, it(1_500_000), 42]),
        # 40 waves of 4 threads, each leaving blocks in a shared array for
        # later threads to free
        ("mstress 4T 40 waves %s/thread" % tag(25_000), "bench_mstress", [4, 40, it(25_000), 42]),
        # churn with 1 in 240 released blocks leaked: peak RSS is the figure
        ("mleak %s leak 1/240" % tag(12_000_000), "bench_mleak", [it(12_000_000), 42, 4096, 240]),
    ]
    return [(name, binary, [str(a) for a in args]) for name, binary, args in rows]


def program_rows(quick, here):
    """The real programs, timed whole by bench_exec: (rows, skipped, notes).
    ops is the work the program does (records, rows), so ops/s is that work
    over the whole run's wall time, start-up included.  A program that is
    missing skips its row (listed in the report)."""
    div = 5 if quick else 1
    rows, skipped, notes = [], [], []
    # The interpreter running this script: `python3` may be a shim (pyenv)
    # that starts other processes before the real interpreter.
    py = os.path.realpath(sys.executable) if sys.executable else None
    script = os.path.join(here, "bench_python.py")
    records = max(30_000 // div, 1)
    if py and os.path.isfile(script):
        notes.append("python3: %s (Python %s)" % (py, platform.python_version()))
        for label, env in (("", []), (" PYTHONMALLOC=malloc", ["PYTHONMALLOC=malloc"])):
            rows.append(("python3 script %dk records%s" % (records // 1000, label), "bench_exec",
                         [records, "PYTHONHASHSEED=0"] + env + [py, script, records]))
    else:
        skipped.append(("python3 script", "no interpreter or %s" % script))
    sqlite = shutil.which("sqlite3")
    sql = os.path.join(here, "bench_sqlite.sql")
    nrows = max(100_000 // div, 1)
    if sqlite and os.path.isfile(sql):
        try:
            version = subprocess.run([sqlite, "-version"], capture_output=True, text=True,
                                     timeout=20).stdout.split()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            version = "unknown version"
        notes.append("sqlite3: %s (%s)" % (os.path.realpath(sqlite), version))
        rows.append(("sqlite3 %dk rows indexed" % (nrows // 1000), "bench_exec",
                     [nrows, sqlite, "-batch", "-init", "/dev/null", ":memory:",
                      ".parameter set @n %d" % nrows, '.read "%s"' % sql]))
    else:
        skipped.append(("sqlite3", "sqlite3 is not installed (Debian package: sqlite3)"))
    return [(n, b, [str(a) for a in args]) for n, b, args in rows], skipped, notes


def select_rows(rows, spec):
    """The rows whose name contains one of the comma-separated substrings in
    spec (all rows if spec is empty); (rows, substrings that matched none)."""
    wanted = [w.strip() for w in (spec or "").split(",") if w.strip()]
    if not wanted:
        return rows, []
    kept = [r for r in rows if any(w in r[0] for w in wanted)]
    unmatched = [w for w in wanted if not any(w in r[0] for r in rows)]
    return kept, unmatched


# ------------------------------------------------------------ allocators

def elf_id(path):
    """(EI_CLASS, EI_DATA, e_machine) of an ELF file, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    endian = "<" if head[5] == 1 else ">"
    (machine,) = struct.unpack(endian + "H", head[18:20])
    return (head[4], head[5], machine)


def ldconfig_cache():
    """soname -> [paths] from `ldconfig -p` (empty if unavailable)."""
    exe = None
    for cand in ("/sbin/ldconfig", "/usr/sbin/ldconfig", shutil.which("ldconfig")):
        if cand and os.access(cand, os.X_OK):
            exe = cand
            break
    if not exe:
        return {}
    try:
        out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    cache = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s+\(.*\)\s+=>\s+(\S+)\s*$", line)
        if m:
            cache.setdefault(m.group(1), []).append(m.group(2))
    return cache


def search_dirs():
    dirs = []
    triple = MULTIARCH.get(platform.machine())
    for root in ("/usr/lib", "/lib", "/usr/local/lib"):
        if triple:
            dirs.append(os.path.join(root, triple))
    for pattern in ("/usr/lib/*-linux-gnu*", "/lib/*-linux-gnu*", "/usr/local/lib/*-linux-gnu*"):
        dirs.extend(sorted(glob.glob(pattern)))
    dirs += ["/usr/lib64", "/lib64", "/usr/lib", "/lib", "/usr/local/lib64", "/usr/local/lib"]
    seen, out = set(), []
    for d in dirs:
        if d not in seen and os.path.isdir(d):
            seen.add(d)
            out.append(d)
    return out


def find_library(sonames, want_elf, cache):
    """First existing library with one of the sonames whose ELF class and
    machine match the benchmark binaries (also where LLVM keeps its
    runtimes, /usr/lib/llvm-*/lib/clang/*/lib/linux)."""
    candidates = []
    for so in sonames:
        for d in search_dirs():
            candidates.append(os.path.join(d, so))
        candidates.extend(cache.get(so, []))
        candidates.extend(sorted(glob.glob("/usr/lib/llvm-*/lib/clang/*/lib/linux/" + so), reverse=True))
    for path in candidates:
        if os.path.isfile(path):
            ident = elf_id(path)
            if ident is not None and (want_elf is None or ident == want_elf):
                return os.path.realpath(path)
    return None


# ---------------------------------------------------------------- running

def run_cmd(argv, env, preload, timeout):
    """Run a benchmark command; return (stdout, None) or (None, error)."""
    try:
        p = subprocess.run(argv, env=env, capture_output=True,
                           text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return None, "timeout after %ss; %s" % (timeout, tail(err))
    except OSError as e:
        return None, str(e)
    # The dynamic loader only warns and falls back to glibc when a preload
    # library cannot be loaded: that must not count as a result.
    if preload and "cannot be preloaded" in p.stderr:
        return None, "preload failed: " + tail(p.stderr)
    if p.returncode != 0:
        how = ("signal %d" % -p.returncode) if p.returncode < 0 else ("exit %d" % p.returncode)
        return None, "%s; %s" % (how, tail(p.stderr))
    if not RESULT_RE.search(p.stdout):
        return None, "no result line; stdout: %s; stderr: %s" % (tail(p.stdout), tail(p.stderr))
    return p.stdout, None


def run_one(binary, args, preload, timeout):
    """Run one benchmark; return (ops_per_s, rss_kb, None, phases) or
    (None, None, error, None)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    out, err = run_cmd([binary] + args, env, preload, timeout)
    if err:
        return None, None, err, None
    m = RESULT_RE.search(out)
    phases = None
    pm = PHASES_RE.search(out)
    if pm:
        words = pm.group(1).split()
        phases = {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
    return int(m.group(1)), int(m.group(2)), None, phases


def strace_setup():
    """The strace command prefix for counting SYSCALLS, or (None, reason).
    --seccomp-bpf (strace >= 5.3) stops the tracee only on the traced calls,
    so futex-heavy benchmarks do not crawl; older strace works without it."""
    exe = shutil.which("strace")
    if not exe:
        return None, "strace is not installed (Debian package: strace)"
    base = [exe, "-f", "-qq", "-c", "-e", "trace=" + ",".join(SYSCALLS)]
    why = "unknown"
    for extra in (["--seccomp-bpf"], []):
        with tempfile.NamedTemporaryFile(prefix="run_bench-strace-", suffix=".txt") as f:
            try:
                p = subprocess.run(base + extra + ["-o", f.name, "--", "true"],
                                   capture_output=True, text=True, errors="replace", timeout=30)
            except (OSError, subprocess.SubprocessError) as e:
                why = str(e)
                continue
            if p.returncode == 0 and parse_strace_summary(f.name) is not None:
                return base + extra, None
            why = "exit %d; %s" % (p.returncode, tail(p.stderr))
    return None, "strace cannot trace here (%s)" % why


def parse_strace_summary(path):
    """{syscall: calls} from strace -c's summary file, or None if it is not
    one.  A run that made none of the traced calls has an empty table."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    if "syscall" not in text and text.strip():
        return None
    counts = {}
    for line in text.splitlines():
        m = STRACE_LINE_RE.match(line)
        if m and m.group(2) != "total":
            counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(1))
    return counts


def strace_one(prefix, binary, args, preload, timeout):
    """Run one benchmark under strace; return (calls per 1000 ops, counts,
    ops, None) or (None, None, None, error).  strace itself runs without
    LD_PRELOAD; -E hands it to the benchmark only."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    fd, path = tempfile.mkstemp(prefix="run_bench-strace-", suffix=".txt")
    os.close(fd)
    try:
        argv = prefix + ["-o", path]
        if preload:
            argv += ["-E", "LD_PRELOAD=" + preload]
        out, err = run_cmd(argv + ["--", binary] + args, env, preload, timeout)
        if err:
            return None, None, None, err
        counts = parse_strace_summary(path)
        if counts is None:
            return None, None, None, "unreadable strace summary"
    finally:
        os.unlink(path)
    ops = int(RESULT_RE.search(out).group(3))
    if ops <= 0:
        return None, None, None, "ops is 0"
    return sum(counts.values()) * 1000.0 / ops, counts, ops, None


def fmt_rate(v):
    """syscalls per 1,000 ops for the table."""
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    if v < 0.0005:
        return "<0.001"
    if v < 1:
        return "%.3f" % v
    if v < 100:
        return "%.1f" % v
    return "%.0f" % v


def tail(text, limit=200):
    text = " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    if len(text) > limit:
        text = "..." + text[-limit:]
    return text or "(empty)"


def md_escape(text):
    return text.replace("\\", "\\\\").replace("|", "\\|")


# ------------------------------------------------------------- reporting

# The allocators hakmem is compared with ("peers"): not hakmem, nor the
# variants of it given with --extra.
PEERS = {"system"} | {name for name, _, _ in THIRD_PARTY if name not in HARDENED_PEERS}
REFERENCE = "mimalloc"


def cell_stats(cell):
    """Median, slowest and fastest ops/s and median peak RSS of one
    (row, allocator), or None if it failed."""
    if cell["error"] or not cell["ops"]:
        return None
    return {"med": statistics.median(cell["ops"]), "lo": min(cell["ops"]),
            "hi": max(cell["ops"]), "rss": statistics.median(cell["rss"])}


def standing(stats, row, allocators):
    """How each non-peer allocator of a row stands against the best peer
    (the peer with the highest median): {name: (word, best peer)}, word
    first / tie / behind; a tie when their min..max spreads overlap.  None
    when no peer has a result."""
    peers = [(name, stats[(row, name)]) for name, _ in allocators
             if name in PEERS and stats[(row, name)]]
    if not peers:
        return None
    best_name, best = max(peers, key=lambda p: p[1]["med"])
    out = {}
    for name, _ in allocators:
        st = stats[(row, name)]
        if name in PEERS or st is None:
            continue
        if st["lo"] <= best["hi"] and best["lo"] <= st["hi"]:
            word = "tie"
        else:
            word = "first" if st["med"] > best["med"] else "behind"
        out[name] = (word, best_name, st["med"] / best["med"])
    return out


def rank_text(rank, name):
    if name not in rank:
        return ""
    word, best, ratio = rank[name]
    if word == "first":
        return "first (%.2fx %s)" % (ratio, best)
    if word == "tie":
        return "tie (%.2fx %s)" % (ratio, best)
    return "behind (%.2fx %s)" % (ratio, best)


def fmt_spread(st):
    """The slowest and fastest run relative to the median, e.g. -4%..+6%."""
    med = st["med"] or 1
    return "%+.0f%%..%+.0f%%" % (100.0 * (st["lo"] / med - 1), 100.0 * (st["hi"] / med - 1))


def geomean(values):
    values = [v for v in values if v and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summary_lines(stats, rank, rows, allocators):
    """The closing summary: geometric means relative to mimalloc and where
    hakmem stands."""
    names = [n for n, _ in allocators]
    out = ["", "Summary over the %d rows (geometric means of medians; time relative to %s = "
           "%s's ops/s / the allocator's ops/s, and peak RSS relative to %s: lower is "
           "better for both; each over the rows where the allocator and %s both ran):"
           % (len(rows), REFERENCE, REFERENCE, REFERENCE, REFERENCE), "",
           "| allocator | time relative to %s | peak RSS relative to %s | rows |"
           % (REFERENCE, REFERENCE),
           "|---|--:|--:|--:|"]
    for name in names:
        times, rsss = [], []
        for row, _, _ in rows:
            st, ref = stats[(row, name)], stats.get((row, REFERENCE))
            if st and ref:
                times.append(ref["med"] / st["med"] if st["med"] else None)
                rsss.append(st["rss"] / ref["rss"] if ref["rss"] > 0 else None)
        gt, gr = geomean(times), geomean(rsss)
        out.append("| %s | %s | %s | %d |" % (name, "%.3f" % gt if gt else "n/a",
                                              "%.3f" % gr if gr else "n/a", len(times)))
    for name in names:
        if name in PEERS:
            continue
        counts = {"first": [], "tie": [], "behind": []}
        for row, _, _ in rows:
            r = rank[row]
            if r and name in r:
                counts[r[name][0]].append((row, r[name]))
        n = sum(len(v) for v in counts.values())
        out += ["", "%s against the best peer of each row (a tie when the min..max spreads of "
                "the repetitions overlap): first in %d, tied in %d, behind in %d of %d rows."
                % (name, len(counts["first"]), len(counts["tie"]), len(counts["behind"]), n)]
        if counts["behind"]:
            out.append("Behind: " + "; ".join("%s (%.2fx %s)" % (row, ratio, best)
                                              for row, (_, best, ratio) in counts["behind"]) + ".")
    return out


def write_chart(outdir, header, rows, allocators, stats, rank):
    """Write outdir/bench.dat (the table's numbers) and render it with
    gnuplot (bench/bench_chart.gp) to outdir/bench.svg and bench.png.
    Returns False if gnuplot failed; a missing gnuplot only skips the
    pictures."""
    os.makedirs(outdir, exist_ok=True)
    dat = os.path.join(outdir, "bench.dat")
    names = [n for n, _ in allocators]
    with open(dat, "w") as f:
        f.write("# %s\n" % header)
        f.write("# allocators: %s\n" % " ".join(names))
        f.write("# reference: %s\n" % REFERENCE)
        f.write("# Block 0, one line per (row, allocator): row allocator time_rel time_fast "
                "time_slow rss_rel ops_median ops_min ops_max rss_kb \"row\" \"allocator\"\n"
                "#   row: 0-based, in table order; allocator: 1-based in the list above\n"
                "#   time_rel = %s's median ops/s / this median (lower is better);\n"
                "#   time_fast, time_slow: the same for this allocator's fastest and slowest "
                "run; rss_rel = median peak RSS / %s's; ? = no result\n" % (REFERENCE, REFERENCE))
        for i, (row, _, _) in enumerate(rows):
            ref = stats.get((row, REFERENCE))
            for j, name in enumerate(names, 1):
                st = stats[(row, name)]
                if st is None:
                    f.write('%d %d ? ? ? ? ? ? ? ? "%s" "%s"\n' % (i, j, row, name))
                    continue
                if ref and st["med"] and st["lo"] and ref["rss"] > 0:
                    rel = "%.6g %.6g %.6g %.6g" % (ref["med"] / st["med"], ref["med"] / st["hi"],
                                                   ref["med"] / st["lo"], st["rss"] / ref["rss"])
                else:
                    rel = "? ? ? ?"
                f.write('%d %d %s %d %d %d %d "%s" "%s"\n'
                        % (i, j, rel, round(st["med"]), st["lo"], st["hi"], round(st["rss"]),
                           row, name))
        f.write("\n\n# Block 1, one line per row: row \"label\" (the row's name and hakmem's "
                "standing)\n")
        for i, (row, _, _) in enumerate(rows):
            label = row
            r = rank[row]
            if r and "hakmem" in r:
                label += "  [%s]" % r["hakmem"][0]
            f.write('%d "%s"\n' % (i, label))
    log("run_bench: wrote %s" % dat)
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        log("run_bench: gnuplot is not installed (Debian package: gnuplot-nox): no chart")
        return True
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_chart.gp")
    svg, png = os.path.join(outdir, "bench.svg"), os.path.join(outdir, "bench.png")
    setting = "dat='%s'; svg='%s'; png='%s'" % (dat, svg, png)
    try:
        p = subprocess.run([gnuplot, "-e", setting, script], capture_output=True, text=True,
                           errors="replace", timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        log("run_bench: gnuplot failed: %s" % e)
        return False
    if p.returncode != 0:
        log("run_bench: gnuplot failed (exit %d): %s" % (p.returncode, tail(p.stderr, 600)))
        return False
    log("run_bench: wrote %s and %s" % (svg, png))
    return True


# ------------------------------------------------------------------- main

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model", "Processor"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", help="hakmem shared library (LD_PRELOADed as 'hakmem')")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                    help="another library to compare, e.g. hakmem+counters=build/libhakmem-counters.so")
    ap.add_argument("--bindir", default="build", help="directory holding bench_* (default: build)")
    ap.add_argument("--reps", type=int, default=None,
                    help="repetitions per (benchmark, allocator) (default: $BENCH_REPS or 7)")
    ap.add_argument("--quick", action="store_true", help="fewer iterations, no 5M row")
    ap.add_argument("--out", help="also write the report (markdown) to this file")
    ap.add_argument("--chart", metavar="DIR",
                    help="write DIR/bench.dat and, with gnuplot, the charts DIR/bench.svg "
                         "and DIR/bench.png (bench/bench_chart.gp)")
    ap.add_argument("--only", help="comma-separated allocators to run (default: all)")
    ap.add_argument("--rows", default=None,
                    help="comma-separated substrings: run only the rows whose name contains "
                         "one of them (default: $BENCH_ROWS, or all rows)")
    ap.add_argument("--no-strace", action="store_true",
                    help="skip the extra run under strace (syscalls/1k ops shows n/a)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds before a single run counts as hung (default: $BENCH_TIMEOUT "
                         "or 120; twice that for the run under strace)")
    opts = ap.parse_args()

    reps = opts.reps
    if reps is None:
        env_reps = os.environ.get("BENCH_REPS", "").strip()
        try:
            reps = int(env_reps) if env_reps else 7
        except ValueError:
            ap.error("BENCH_REPS must be an integer, got %r" % env_reps)
    if reps < 1:
        ap.error("reps must be >= 1")
    if opts.timeout is None:
        env_to = os.environ.get("BENCH_TIMEOUT", "").strip()
        try:
            opts.timeout = float(env_to) if env_to else 120.0
        except ValueError:
            ap.error("BENCH_TIMEOUT must be a number, got %r" % env_to)

    prog_rows, prog_skipped, prog_notes = program_rows(
        opts.quick, os.path.dirname(os.path.abspath(__file__)))
    all_rows = benchmarks(opts.quick) + prog_rows
    row_spec = opts.rows if opts.rows is not None else os.environ.get("BENCH_ROWS", "")
    rows, unmatched = select_rows(all_rows, row_spec)
    if unmatched or not rows:
        log("run_bench: --rows/BENCH_ROWS %r: no row matches %s; the rows are:\n  %s"
            % (row_spec, ", ".join(repr(u) for u in unmatched) or "anything",
               "\n  ".join(r[0] for r in all_rows)))
        return 2
    binaries = {}
    for _, binary, _ in rows:
        path = os.path.abspath(os.path.join(opts.bindir, binary))
        if not os.access(path, os.X_OK):
            log("run_bench: missing benchmark binary %s (build it with `make %s`)"
                % (path, os.path.join("build", binary)))
            return 2
        binaries[binary] = path
    want_elf = elf_id(binaries[rows[0][1]])

    # (name, LD_PRELOAD path or None); skipped: (name, reason)
    allocators, skipped = [], []
    if opts.lib:
        lib = os.path.abspath(opts.lib)
        if not os.path.isfile(lib):
            log("run_bench: --lib %s does not exist (build it with `make`)" % lib)
            return 2
        allocators.append(("hakmem", lib))
    else:
        skipped.append(("hakmem", "no --lib given"))
    for spec in opts.extra:
        name, _, path = spec.partition("=")
        if not name or not os.path.isfile(path):
            log("run_bench: --extra %r: expected NAME=PATH of an existing file" % spec)
            return 2
        allocators.append((name, os.path.abspath(path)))
    allocators.append(("system", None))
    cache = ldconfig_cache()
    for name, sonames, package in THIRD_PARTY:
        path = find_library(sonames, want_elf, cache)
        if path:
            allocators.append((name, path))
        else:
            skipped.append((name, "not found (Debian package: %s)" % package))
    if opts.only:
        wanted = [w.strip() for w in opts.only.split(",") if w.strip()]
        known = {n for n, _ in allocators} | {n for n, _ in skipped}
        for w in wanted:
            if w not in known:
                ap.error("--only: unknown allocator %r (known: %s)" % (w, ", ".join(sorted(known))))
        allocators = [a for a in allocators if a[0] in wanted]
        skipped = [s for s in skipped if s[0] in wanted]
    if not allocators:
        log("run_bench: no allocator to run")
        return 2

    strace_prefix, strace_why = None, "--no-strace given"
    if not opts.no_strace:
        strace_prefix, strace_why = strace_setup()
        if not strace_prefix:
            log("run_bench: %s: the syscalls/1k ops column will show n/a" % strace_why)

    started = time.monotonic()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    header = "hakmem benchmarks: %s, %s, CPU: %s, nproc: %d, reps: %d%s%s" % (
        date, platform.machine(), cpu_model(), nproc(), reps, ", quick" if opts.quick else "",
        (", rows: %s" % row_spec.strip()) if len(rows) < len(all_rows) else "")
    log(header)
    for name, path in allocators:
        log("  %-9s %s" % (name, path or "(glibc, no LD_PRELOAD)"))
    for name, why in skipped:
        log("  %-9s skipped: %s" % (name, why))

    # results[(row, alloc)] = {"ops": [...], "rss": [...], "error": str|None}
    results = {(r[0], a[0]): {"ops": [], "rss": [], "phases": [], "error": None,
                              "syscalls": None}
               for r in rows for a in allocators}
    width = max(len(r[0]) for r in rows)
    total = reps * len(rows) * len(allocators)
    done = 0
    for rep in range(reps):
        # Rotate the allocator order each repetition so none is always first.
        k = rep % len(allocators)
        order = allocators[k:] + allocators[:k]
        for row, binary, args in rows:
            for name, preload in order:
                done += 1
                cell = results[(row, name)]
                if cell["error"]:
                    continue  # failed before: do not wait on it again
                t0 = time.monotonic()
                ops, rss, err, phases = run_one(binaries[binary], args, preload, opts.timeout)
                wall = time.monotonic() - t0
                if phases:
                    cell["phases"].append(phases)
                if err:
                    cell["error"] = err
                    log("[%d/%d] rep %d %-*s %-9s FAILED: %s"
                        % (done, total, rep + 1, width, row, name, err))
                else:
                    cell["ops"].append(ops)
                    cell["rss"].append(rss)
                    log("[%d/%d] rep %d %-*s %-9s %12d ops/s %8d KiB %6.2f s"
                        % (done, total, rep + 1, width, row, name, ops, rss, wall))

    # One more run of each under strace, for the system call counts.  Its
    # ops/s is not used: tracing slows the traced calls down.
    if strace_prefix:
        todo = [(r, a) for r in rows for a in allocators if not results[(r[0], a[0])]["error"]]
        strace_started = time.monotonic()
        for i, ((row, binary, args), (name, preload)) in enumerate(todo):
            rate, counts, ops, err = strace_one(strace_prefix, binaries[binary], args, preload,
                                                2 * opts.timeout)
            if err:
                log("[strace %d/%d] %-*s %-9s n/a: %s" % (i + 1, len(todo), width, row, name, err))
                continue
            results[(row, name)]["syscalls"] = rate
            log("[strace %d/%d] %-*s %-9s %s per 1k ops (%s over %d ops)"
                % (i + 1, len(todo), width, row, name, fmt_rate(rate),
                   " ".join("%s %d" % (c, counts[c]) for c in SYSCALLS if counts.get(c))
                   or "no calls", ops))
        log("run_bench: strace pass: %d runs in %.1f s" % (len(todo), time.monotonic() - strace_started))

    stats = {key: cell_stats(cell) for key, cell in results.items()}
    # A run of hakmem that fails or hangs fails the benchmark; a peer that
    # fails (scudo takes minutes on the large-block rows) is shown as FAILED
    # in its row, and the run goes on.
    failed = any(v is None for (_, name), v in stats.items() if name.startswith("hakmem"))
    peer_failed = sorted({name for (_, name), v in stats.items() if v is None and not name.startswith("hakmem")})
    rank = {row: standing(stats, row, allocators) for row, _, _ in rows}

    lines = [header, ""]
    for name, path in allocators:
        lines.append("- %s: %s" % (name, path or "glibc (no LD_PRELOAD)"))
    for name, why in skipped:
        lines.append("- %s: skipped, %s" % (name, why))
    ran_binaries = {b for _, b, _ in rows}
    if "bench_exec" in ran_binaries:
        lines += ["- %s" % n for n in prog_notes]
    for name, why in prog_skipped:
        if not row_spec.strip() or any(w.strip() and w.strip() in name for w in row_spec.split(",")):
            lines.append("- row %s: skipped, %s" % (name, why))
    if strace_prefix:
        lines.append("- syscalls/1k ops: %s calls per 1,000 ops, whole process, one run under "
                     "`strace -f -c`" % " ".join(SYSCALLS))
    else:
        lines.append("- syscalls/1k ops: not counted, %s" % strace_why)
    lines.append("- spread: the slowest and the fastest of the %d repetitions, relative to "
                 "the median" % reps)
    lines.append("- standing (hakmem's lines): against the best peer, the fastest of %s in "
                 "the row: a tie when the two spreads overlap" % ", ".join(
                     n for n, _ in allocators if n in PEERS))
    lines += ["",
              "| benchmark | allocator | median ops/s | spread | ratio to mimalloc | standing "
              "| peak RSS (KiB) | syscalls/1k ops |",
              "|---|---|--:|--:|--:|---|--:|--:|"]
    for row, _, _ in rows:
        ref = stats.get((row, "mimalloc"))
        for name, _ in allocators:
            cell, st = results[(row, name)], stats[(row, name)]
            if st is None:
                msg = md_escape(cell["error"] or "no result")
                lines.append("| %s | %s | FAILED | n/a | n/a | | FAILED: %s | n/a |"
                             % (row, name, msg))
                continue
            ratio = "%.2f" % (st["med"] / ref["med"]) if ref else "n/a"
            stand = ""
            if name not in PEERS and rank[row] is not None:
                stand = rank_text(rank[row], name)
            lines.append("| %s | %s | %d | %s | %s | %s | %d | %s |"
                         % (row, name, round(st["med"]), fmt_spread(st), ratio, stand,
                            round(st["rss"]), fmt_rate(cell["syscalls"])))
    # RSS over time (bench_rss): the median of each phase.
    phase_rows = [(row, name) for row, _, _ in rows for name, _ in allocators
                  if results[(row, name)]["phases"] and not results[(row, name)]["error"]]
    if phase_rows:
        keys = list(results[phase_rows[0]]["phases"][0].keys())
        titles = {"start": "start", "peak": "peak", "after_free90": "after freeing 90%",
                  "after_free_all": "after freeing all", "after_pause": "after 1 s pause",
                  "after_trim": "after malloc_trim(0)"}
        lines += ["", "RSS over time (KiB, medians):", "",
                  "| benchmark | allocator | " + " | ".join(titles.get(k, k) for k in keys) + " |",
                  "|---|---|" + "--:|" * len(keys)]
        for row, name in phase_rows:
            ph = results[(row, name)]["phases"]
            lines.append("| %s | %s | %s |" % (row, name, " | ".join(
                str(round(statistics.median(p[k] for p in ph))) for k in keys)))
    lines += summary_lines(stats, rank, rows, allocators)
    report = "\n".join(lines) + "\n"

    sys.stdout.write(report)
    sys.stdout.flush()
    if opts.out:
        if os.path.dirname(opts.out):
            os.makedirs(os.path.dirname(opts.out), exist_ok=True)
        with open(opts.out, "w") as f:
            f.write(report)
    if opts.chart:
        if not write_chart(opts.chart, header, rows, allocators, stats, rank):
            failed = True
    traced = sum(1 for c in results.values() if c["syscalls"] is not None)
    log("run_bench: %d runs%s in %.1f s%s"
        % (total, (" + %d under strace" % traced) if strace_prefix else "",
           time.monotonic() - started, "; SOME RUNS FAILED" if failed else ""))
    if peer_failed:
        log("run_bench: every run of %s failed in some rows (FAILED in the table); not an error of hakmem"
            % ", ".join(peer_failed))
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
