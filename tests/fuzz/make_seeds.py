#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_ops (tests/fuzz/corpus/) from the
scenarios below, in the input format described at the top of fuzz_ops.c.

    python3 tests/fuzz/make_seeds.py [OUTDIR]

The op codes and argument counts are read from op_table and op_args in
fuzz_ops.c.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def read_ops():
    """op name -> (first opcode byte of op_table that maps to it, argument
    bytes), read from fuzz_ops.c so that the two cannot drift apart."""
    src = open(os.path.join(HERE, "fuzz_ops.c")).read()
    table = re.search(r"op_table\[64\] = \{(.*?)\};", src, re.S).group(1)
    names = [x.strip()[3:] for x in table.split(",") if x.strip()]
    assert len(names) == 64, len(names)
    args = dict((m.group(1), int(m.group(2)))
                for m in re.finditer(r"\[OP_(\w+)\] = (\d+)", src))
    ops = {}
    for i, n in enumerate(names):
        ops.setdefault(n, (i, args[n]))
    return ops


OPS = read_ops()

KIB = 1024
MIB = 1024 * KIB
RUN_MAX = 32 * MIB


def size(n):
    """Three size bytes that decode_size() turns into exactly n (where the
    tier allows it) or a close size of the same tier."""
    def enc(tier, v):
        return bytes([tier | ((v >> 16) & 31) << 3, v & 255, (v >> 8) & 255])
    if 1 <= n <= 1024:
        return enc(0, n - 1)
    if n <= 16 * KIB:
        return enc(2, n - 1)
    if n <= 256 * KIB:
        return enc(3, n - 1025)
    if n <= RUN_MAX:
        pages = (n + 4095) // 4096                 # pages * 4096 - (v & 31) * 128
        v = (pages - 65) << 5 | ((pages * 4096 - n) // 128)
        return enc(4, v)
    v = ((n - RUN_MAX - 1) // 32) % (48 * MIB // 32)
    return enc(5, v & 0x1FFFFF)


def edge(i):
    return bytes([6, i & 255, (i >> 8) & 255])


def align(a):
    """The align byte for 2^k; a non-power of two gives odd_aligns[a]."""
    if a & (a - 1) == 0 and a != 0:
        return bytes([a.bit_length() - 1])
    return bytes([232 + a])


def op(name, thread=0, *args):
    code, nargs = OPS[name]
    body = b"".join(x if isinstance(x, bytes) else bytes([x & 255]) for x in args)
    assert len(body) == nargs, (name, len(body), nargs)
    return bytes([code | (thread & 3) << 6]) + body


def seed(nthreads, concurrent, ops):
    return bytes([(nthreads - 1) | (4 if concurrent else 0)]) + b"".join(ops)


def tiny_mix():
    ops = []
    for i in range(40):
        ops.append(op("MALLOC", 0, i, size(1 + (i * 37) % 1024)))
    for i in range(0, 40, 3):
        ops.append(op("FREE", 0, i))
    for i in range(40):
        ops.append(op("MALLOC", 0, 100 + i, size(16 * (i % 16) + 1)))
    ops.append(op("FREE_RANGE", 0, 0, 31))
    ops.append(op("HAK_CHECK"))
    return seed(1, False, ops)


def all_tiers():
    ops = [
        op("MALLOC", 0, 1, size(24)),
        op("MALLOC", 0, 2, size(3000)),
        op("MALLOC", 0, 3, size(200 * KIB)),
        op("MALLOC", 0, 4, size(300 * KIB)),
        op("MALLOC", 0, 5, size(5 * MIB + 123)),
        op("MALLOC", 0, 6, size(RUN_MAX + 4096)),
        op("REALLOC", 0, 1, size(2000)),           # tiny -> mid
        op("REALLOC", 0, 2, size(100)),            # mid -> tiny
        op("REALLOC", 0, 3, size(400 * KIB)),      # mid -> run
        op("REALLOC", 0, 4, size(280 * KIB)),      # run shrinks in place
        op("REALLOC", 0, 4, size(600 * KIB)),      # run grows
        op("REALLOC", 0, 5, size(40 * MIB)),       # run -> huge
        op("REALLOC", 0, 6, size(1000)),           # huge -> tiny
        op("REALLOC_REL", 0, 3, 0, 0x86),
        op("REALLOC_REL", 0, 5, 0, 0x82),
        op("REALLOC", 0, 7, size(50)),             # from NULL
        op("REALLOC", 0, 7, edge(0)),              # to size 0
        op("USABLE", 0, 1), op("USABLE", 0, 3), op("USABLE", 0, 5),
        op("REALLOC", 0, 1, size(9000)),
        op("CHECK", 0, 5),
        op("FREE", 0, 1), op("FREE_SIZED", 0, 2), op("FREE", 0, 3),
        op("FREE_SIZED", 0, 4), op("FREE", 0, 5), op("FREE", 0, 6),
    ]
    return seed(1, False, ops)


def aligned():
    ops = []
    slot = 0
    for kind in ("POSIX_MEMALIGN", "ALIGNED_ALLOC", "MEMALIGN"):
        for k in (4, 5, 6, 8, 12, 13, 16, 17, 20, 22):
            for n in (1, 100, 5000, 70 * KIB, 300 * KIB):
                ops.append(op(kind, 0, slot, bytes([k]), size(n)))
                slot = (slot + 1) % 256
        for odd in range(12):
            ops.append(op(kind, 0, slot, align(odd), size(64)))
            slot = (slot + 1) % 256
    ops.append(op("VALLOC", 0, 250, size(10), 0))
    ops.append(op("VALLOC", 0, 251, size(5000), 1))
    ops.append(op("VALLOC", 0, 252, edge(0), 1))
    ops.append(op("HAK_CHECK"))
    return seed(1, False, ops)


def calloc_and_sized():
    ops = []
    for i, n in enumerate((0, 1, 48, 1024, 4096, 70 * KIB, 256 * KIB, 1 * MIB, 33 * MIB)):
        ops.append(op("CALLOC", 0, i, size(n) if n else edge(0), i + 1))
        ops.append(op("USABLE", 0, i))
        ops.append(op("REALLOCARRAY", 0, i, size(2 * n + 1), 3))
    for i in range(9):
        ops.append(op("FREE_SIZED", 0, i))
    ops.append(op("CALLOC", 0, 20, size(5000), 0))      # nmemb 0
    ops.append(op("BURST", 0, 100, size(96), 4))        # calloc burst
    return seed(1, False, ops)


def two_threads_remote():
    ops = []
    for i in range(32):
        ops.append(op("MALLOC", 0, i, size(64 + 32 * (i % 8))))
    ops.append(op("GIVE_RANGE", 0, 0, 31, 1))
    ops.append(op("FREE_RANGE", 1, 0, 31))
    ops.append(op("BURST", 0, 200, size(48), 8 | 1 << 4))
    ops.append(op("BURST", 1, 150, size(3000), 8 | 2))
    ops.append(op("FILL", 1, 40, 20, size(700 * KIB)))
    ops.append(op("GIVE_RANGE", 1, 40, 20, 0))
    ops.append(op("FREE_RANGE", 0, 40, 20))
    ops.append(op("HAK_CHECK", 1))
    return seed(2, False, ops)


def four_concurrent():
    ops = []
    for t in range(4):
        ops.append(op("FILL", t, 0, 31, size(32 + 100 * t)))
        ops.append(op("BURST", t, 255, size(16 + 16 * t), 8 | (t + 1) << 4 | t))
        ops.append(op("GIVE_RANGE", t, 0, 15, t + 1))
        ops.append(op("MALLOC", t, 100, size(300 * KIB)))
        ops.append(op("GIVE", t, 100, t + 2, 7))
    ops.append(op("EXIT", 2))
    ops.append(op("FILL", 2, 50, 10, size(1500)))
    return seed(4, True, ops)


def exit_respawn():
    ops = [
        op("FILL", 1, 0, 31, size(200)),
        op("MALLOC", 1, 40, size(2 * MIB)),
        op("EXIT", 1),
        op("FREE_RANGE", 1, 0, 15),
        op("GIVE_RANGE", 1, 16, 15, 0),
        op("FREE_RANGE", 0, 16, 15),
        op("EXIT", 1),
        op("FILL", 2, 0, 31, size(200)),
        op("HAK_CHECK", 2),
    ]
    return seed(3, False, ops)


def errors():
    ops = [op("MALLOC", 0, 0, size(100)), op("MALLOC", 0, 1, size(500 * KIB)),
           op("MALLOC", 0, 2, size(40 * MIB))]
    for k in range(14):
        ops.append(op("ERRORS", 0, k))
    for k in (11, 12, 13):
        ops.append(op("ERRORS", 0, k + 14 + 1))   # another block for the realloc cases
    for k in (0, 1, 2, 51):
        ops.append(op("STATS", 0, k))                # buffers of 0, 97, 194, 4947 bytes
    return seed(1, False, ops)


def bursts():
    ops = []
    for n in (16, 128, 1024, 4096, 16 * KIB, 64 * KIB):
        for mode in range(4):
            ops.append(op("BURST", 0, 255, size(n), mode))
    return seed(1, False, ops)


def edges():
    ops = []
    for i in range(70):
        ops.append(op("MALLOC", 0, i, edge(i)))
    for i in range(70):
        ops.append(op("REALLOC_REL", 0, i, i & 3, (i * 29) & 255))
    ops.append(op("HAK_CHECK"))
    return seed(1, False, ops)


def huge_table():
    """Hundreds of small blocks aligned to 64 MiB, each a mapping of its own,
    live at once on four threads: the huge tier's table grows past 768
    entries and its probe sequences collide; then freed in another order."""
    ops = []
    for t in range(4):
        for base in range(0, 224, 32):
            ops.append(op("FILL_ALIGNED", t, base, 31, align(1 << 26), size(100 + base)))
    for t in range(4):
        for base in range(0, 224, 64):
            ops.append(op("FREE_RANGE", t, base + 16, 31))
    for t in range(4):
        ops.append(op("GIVE_RANGE", t, 0, 15, t + 1))
    ops.append(op("HAK_CHECK"))
    return seed(4, False, ops)


def page_runs():
    """Neighbouring page runs: free one, grow the one before it into the gap
    exactly, by a page too many, shrink, and grow again."""
    ops = []
    for rnd, pages in enumerate((65, 100, 300)):
        base = 10 * rnd
        ops.append(op("FILL", 0, base, 5, size(pages * 4096)))
        ops.append(op("FREE", 0, base + 1))
        ops.append(op("REALLOC_REL", 0, base, 7, 0))          # x2: exactly into the gap
        ops.append(op("FREE", 0, base + 3))
        ops.append(op("REALLOC_REL", 0, base + 2, 7, 1))      # x2 + 1 page: one too many
        ops.append(op("REALLOC_REL", 0, base + 4, 2, 256 - 5))  # shrink by 5 pages
        ops.append(op("REALLOC_REL", 0, base + 4, 2, 5))      # and grow back in place
        ops.append(op("REALLOC_REL", 0, base + 5, 1, 3))      # a few bytes more
        ops.append(op("CHECK", 0, base))
    ops.append(op("HAK_CHECK"))
    return seed(1, False, ops)


SEEDS = {
    "huge_table": huge_table,
    "page_runs": page_runs,
    "tiny_mix": tiny_mix, "all_tiers": all_tiers, "aligned": aligned,
    "calloc_sized": calloc_and_sized, "two_threads_remote": two_threads_remote,
    "four_concurrent": four_concurrent, "exit_respawn": exit_respawn,
    "errors": errors, "bursts": bursts, "edges": edges,
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    for name, fn in SEEDS.items():
        data = fn()
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
