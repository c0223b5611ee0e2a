#!/usr/bin/env python3
"""Deterministic input files for the multi-threaded checks of tests/preload.sh.

    mt_input.py SEED mixed MIB > file   MIB MiB for compressors: runs of text
                                        lines, random bytes, zeros and short
                                        repeated patterns, 4 KiB to 1 MiB each
    mt_input.py SEED lines MIB > file   MIB MiB of text lines for sort: words,
                                        signed numbers, many duplicate lines
"""
import random
import sys

WORDS = ["alpha", "beta", "gamma", "delta", "malloc", "free", "slab", "heap",
         "page", "thread", "cache", "arena", "block", "chunk", "region", "Zeta"]


def mixed(rng, n, out):
    total = 0
    while total < n:
        size = min(rng.randint(1 << 12, 1 << 20), n - total)
        r = rng.random()
        if r < 0.25:
            chunk = rng.randbytes(size)
        elif r < 0.75:
            parts, length = [], 0
            while length < size:
                s = "%d %s %s %08x\n" % (rng.randint(0, 10**6), rng.choice(WORDS),
                                         rng.choice(WORDS), rng.getrandbits(32))
                parts.append(s)
                length += len(s)
            chunk = "".join(parts).encode()[:size]
        elif r < 0.85:
            chunk = bytes(size)
        else:
            pat = rng.randbytes(rng.randint(1, 300))
            chunk = (pat * (size // len(pat) + 1))[:size]
        out.write(chunk)
        total += size


def lines(rng, n, out):
    parts, total = [], 0
    while total < n:
        if rng.random() < 0.1:
            s = "dup-%d\n" % rng.randrange(1000)
        else:
            s = "%s %x %d %s\n" % (rng.choice(WORDS), rng.getrandbits(rng.randint(4, 48)),
                                   rng.randint(-10**6, 10**7), rng.choice(WORDS) * rng.randint(0, 3))
        parts.append(s)
        total += len(s)
    out.write("".join(parts).encode())


def main():
    rng = random.Random(int(sys.argv[1]))
    kind, n = sys.argv[2], int(sys.argv[3]) << 20
    {"mixed": mixed, "lines": lines}[kind](rng, n, sys.stdout.buffer)


if __name__ == "__main__":
    main()
