#!/usr/bin/env python3
"""Allocation-heavy, deterministic workload for the LD_PRELOAD test.

Builds big dicts, lists and strings, does json round trips and sorting, on
the main thread and on several threads at once, and prints checksums.  The
output must be byte for byte the same with and without hakmem preloaded.
"""
import hashlib
import json
import random
import sys
import threading
import zlib


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def workload(seed, scale):
    rng = random.Random(seed)
    out = []

    # big dict of strings -> lists, rebuilt and shrunk several times
    d = {}
    for i in range(20000 * scale):
        key = "k%d_%s" % (i, "x" * rng.randint(0, 40))
        d[key] = [rng.randint(0, 10**9) for _ in range(rng.randint(0, 12))]
    for i, k in enumerate(list(d)):
        if i % 3 == 0:
            del d[k]
    out.append(("dict", len(d), digest(sorted(d.items())[:500])))

    # list of tuples, sorted several ways
    rows = [(rng.random(), rng.randint(0, 1000), "s%d" % rng.randint(0, 99999))
            for _ in range(20000 * scale)]
    rows.sort()
    a = digest(rows[::97])
    rows.sort(key=lambda r: (r[1], r[2]))
    b = digest(rows[::89])
    out.append(("sort", a, b))

    # string building: join, replace, split, bytes
    parts = []
    for i in range(20000 * scale):
        parts.append("%08x:%s" % (rng.getrandbits(32), "abc" * (i % 17)))
    s = "|".join(parts)
    s2 = s.replace("abc", "XYZW").upper()
    words = s2.split("|")
    out.append(("str", len(s), len(s2), zlib.crc32(s2.encode()), len(words)))

    # json round trips of nested structures
    doc = {"items": [{"id": i, "name": "n%d" % i, "tags": ["t%d" % (i % 7)] * (i % 5),
                      "val": rng.random(), "nested": {"a": [i] * (i % 9)}}
                     for i in range(8000 * scale)]}
    for _ in range(3):
        text = json.dumps(doc, sort_keys=True)
        doc = json.loads(text)
    out.append(("json", len(text), zlib.crc32(text.encode())))

    # many small objects with churn
    live = []
    total = 0
    for i in range(100000 * scale):
        live.append(bytearray(rng.randint(1, 300)))
        if len(live) > 5000:
            total += len(live.pop(rng.randrange(len(live))))
    out.append(("churn", total, len(live)))

    # a few large buffers
    big = [bytes([i % 256]) * (rng.randint(1, 4) << 20) for i in range(8)]
    out.append(("big", sum(len(x) for x in big), zlib.crc32(b"".join(big))))
    return out


def main():
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    for item in workload(1, scale):
        print("main", *item)

    results = [None] * 4

    def run(i):
        results[i] = workload(100 + i, scale)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, res in enumerate(results):
        for item in res:
            print("thread%d" % i, *item)
    print("done")


if __name__ == "__main__":
    main()
