#!/usr/bin/env python3
"""Benchmark runner: hakmem against glibc, mimalloc, jemalloc and tcmalloc.

The benchmark programs (build/bench_*) call the standard malloc/free; each
allocator is swapped in with LD_PRELOAD, so all of them pay the same call
cost.  Runs alternate between allocators inside every repetition; the table
reports, per (benchmark, allocator), the median ops/s and the median peak RSS
over the repetitions.

stdout carries only the report (header line + markdown table); progress and
diagnostics go to stderr.  Exit status: 0 if every run succeeded, 1 if any
run failed (shown as FAILED in the table), 2 on a usage/setup error.

usage: run_bench.py [--lib build/libhakmem.so] [--bindir build] [--reps N]
                    [--quick] [--out FILE] [--only a,b,...] [--timeout SEC]
"""

import argparse
import datetime
import glob
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time

# bench_rss also prints "rss_kb: start N peak N after_free90 N ..."
PHASES_RE = re.compile(r"^rss_kb:((?: \w+ \d+)+)\s*$", re.M)
RESULT_RE = re.compile(
    r"^ops/s: (\d+) peak_rss_kb: (-?\d+) ops: (\d+) seconds: ([0-9.eE+-]+)\s*$",
    re.MULTILINE,
)

# name -> (sonames to look for, in order of preference; Debian package)
THIRD_PARTY = [
    ("mimalloc", ["libmimalloc.so.2", "libmimalloc.so.2.0", "libmimalloc.so"], "libmimalloc2.0"),
    ("jemalloc", ["libjemalloc.so.2", "libjemalloc.so"], "libjemalloc2"),
    ("tcmalloc", ["libtcmalloc_minimal.so.4", "libtcmalloc_minimal.so"], "libtcmalloc-minimal4"),
]

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
    rows are the ones to trust.  --quick divides the iterations by 5."""
    div = 5 if quick else 1
    def it(n):
        return n // div
    def tag(n):
        n = it(n)
        return "%dM" % (n // 1_000_000) if n % 1_000_000 == 0 else "%dk" % (n // 1000)
    rows = [
        ("random_mixed 1T %s ws256" % tag(1_000_000), "bench_random_mixed", [it(1_000_000), 256, 42]),
        ("random_mixed 1T %s ws256" % tag(20_000_000), "bench_random_mixed", [it(20_000_000), 256, 42]),
        ("mt_mixed 2T %s/thread" % tag(5_000_000), "bench_mt_mixed", [2, it(5_000_000), 256, 42]),
        ("mt_mixed 4T %s/thread" % tag(5_000_000), "bench_mt_mixed", [4, it(5_000_000), 256, 42]),
        ("prodcons 2T %s/thread" % tag(5_000_000), "bench_prodcons", [2, it(5_000_000), 42]),
        ("prodcons 4T %s/thread" % tag(5_000_000), "bench_prodcons", [4, it(5_000_000), 42]),
        # size bands: the same random_mixed loop over larger sizes
        ("band 1-64KiB %s" % tag(2_000_000), "bench_random_mixed",
         [it(2_000_000), 256, 42, 1024, 65536]),
        ("band 64KiB-1MiB %s" % tag(500_000), "bench_random_mixed",
         [it(500_000), 256, 42, 65536, 1048576]),
        ("band 1-32MiB %s" % tag(50_000), "bench_random_mixed",
         [it(50_000), 256, 42, 1048576, 33554432]),
        # strings growing by appending, vectors growing by doubling
        ("realloc growth %s" % tag(2_000_000), "bench_realloc", [it(2_000_000), 16 // div, 42]),
        # 20 live buffers of 5-25 MiB, each new one written in full
        ("largebuf 20x5-25MiB %d" % it(300), "bench_largebuf", [it(300), 42]),
        # 2000 threads holding 50 small blocks each: peak RSS is the figure
        ("threads 2000x50 blocks", "bench_threads", [2000 // div]),
        # RSS over time: 1 GiB of mixed blocks, free 90%, free all, trim
        ("rss 1GiB", "bench_rss", [1024 // div, 42]),
    ]
    return [(name, binary, [str(a) for a in args]) for name, binary, args in rows]


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
    machine match the benchmark binaries."""
    candidates = []
    for so in sonames:
        for d in search_dirs():
            candidates.append(os.path.join(d, so))
        candidates.extend(cache.get(so, []))
    for path in candidates:
        if os.path.isfile(path):
            ident = elf_id(path)
            if ident is not None and (want_elf is None or ident == want_elf):
                return os.path.realpath(path)
    return None


# ---------------------------------------------------------------- running

def run_one(binary, args, preload, timeout):
    """Run one benchmark; return (ops_per_s, rss_kb, None) or (None, None, error)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    try:
        p = subprocess.run([binary] + args, env=env, capture_output=True,
                           text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return None, None, "timeout after %ss; %s" % (timeout, tail(err)), None
    except OSError as e:
        return None, None, str(e), None
    # The dynamic loader only warns and falls back to glibc when a preload
    # library cannot be loaded: that must not count as a result.
    if preload and "cannot be preloaded" in p.stderr:
        return None, None, "preload failed: " + tail(p.stderr), None
    if p.returncode != 0:
        how = ("signal %d" % -p.returncode) if p.returncode < 0 else ("exit %d" % p.returncode)
        return None, None, "%s; %s" % (how, tail(p.stderr)), None
    m = RESULT_RE.search(p.stdout)
    if not m:
        return None, None, "no result line; stdout: %s; stderr: %s" % (tail(p.stdout), tail(p.stderr)), None
    phases = None
    pm = PHASES_RE.search(p.stdout)
    if pm:
        words = pm.group(1).split()
        phases = {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
    return int(m.group(1)), int(m.group(2)), None, phases


def tail(text, limit=200):
    text = " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    if len(text) > limit:
        text = "..." + text[-limit:]
    return text or "(empty)"


def md_escape(text):
    return text.replace("\\", "\\\\").replace("|", "\\|")


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
    ap.add_argument("--only", help="comma-separated allocators to run (default: all)")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds before a single run counts as hung (default: 120)")
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

    rows = benchmarks(opts.quick)
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

    started = time.monotonic()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    header = "hakmem benchmarks: %s, %s, CPU: %s, nproc: %d, reps: %d%s" % (
        date, platform.machine(), cpu_model(), nproc(), reps, ", quick" if opts.quick else "")
    log(header)
    for name, path in allocators:
        log("  %-9s %s" % (name, path or "(glibc, no LD_PRELOAD)"))
    for name, why in skipped:
        log("  %-9s skipped: %s" % (name, why))

    # results[(row, alloc)] = {"ops": [...], "rss": [...], "error": str|None}
    results = {(r[0], a[0]): {"ops": [], "rss": [], "phases": [], "error": None}
               for r in rows for a in allocators}
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
                ops, rss, err, phases = run_one(binaries[binary], args, preload, opts.timeout)
                if phases:
                    cell["phases"].append(phases)
                if err:
                    cell["error"] = err
                    log("[%d/%d] rep %d %-28s %-9s FAILED: %s" % (done, total, rep + 1, row, name, err))
                else:
                    cell["ops"].append(ops)
                    cell["rss"].append(rss)
                    log("[%d/%d] rep %d %-28s %-9s %12d ops/s %8d KiB"
                        % (done, total, rep + 1, row, name, ops, rss))

    lines = [header, ""]
    for name, path in allocators:
        lines.append("- %s: %s" % (name, path or "glibc (no LD_PRELOAD)"))
    for name, why in skipped:
        lines.append("- %s: skipped, %s" % (name, why))
    lines += ["",
              "| benchmark | allocator | median ops/s | ratio to mimalloc | peak RSS (KiB) |",
              "|---|---|--:|--:|--:|"]
    failed = False
    for row, _, _ in rows:
        ref = results.get((row, "mimalloc"))
        ref_ops = statistics.median(ref["ops"]) if ref and not ref["error"] and ref["ops"] else None
        for name, _ in allocators:
            cell = results[(row, name)]
            if cell["error"] or not cell["ops"]:
                failed = True
                msg = md_escape(cell["error"] or "no result")
                lines.append("| %s | %s | FAILED | n/a | FAILED: %s |" % (row, name, msg))
                continue
            med = statistics.median(cell["ops"])
            rss = statistics.median(cell["rss"])
            ratio = "%.2f" % (med / ref_ops) if ref_ops else "n/a"
            lines.append("| %s | %s | %d | %s | %d |" % (row, name, round(med), ratio, round(rss)))
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
    report = "\n".join(lines) + "\n"

    # Spread of the repetitions, for judging the noise (stderr only).
    log("spread (min..max ops/s over the repetitions):")
    for row, _, _ in rows:
        for name, _ in allocators:
            cell = results[(row, name)]
            if cell["ops"] and not cell["error"]:
                lo, hi = min(cell["ops"]), max(cell["ops"])
                log("  %-28s %-9s %12d .. %-12d (%.0f%%)"
                    % (row, name, lo, hi, 100.0 * (hi - lo) / max(hi, 1)))

    sys.stdout.write(report)
    sys.stdout.flush()
    if opts.out:
        with open(opts.out, "w") as f:
            f.write(report)
    log("run_bench: %d runs in %.1f s%s" % (total, time.monotonic() - started,
                                             "; SOME RUNS FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
