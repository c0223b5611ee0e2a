"""bench_python.py: a dict-, string- and object-heavy Python workload, timed
as a real program under each allocator by bench/run_bench.py (through
build/bench_exec, with PYTHONHASHSEED=0; one row with Python's own small
object allocator as it ships, one with PYTHONMALLOC=malloc, where every
object comes from malloc).

usage: python3 bench/bench_python.py [records]     (default 30000)

Shape: `records` records go through a bounded cache, as in a server or a
build tool:
  - each record is an object with a __dict__ (key, name, tags list, fields
    dict with a nested list), named by an f-string, put in a dict by name
    and in a per-tag index (dict of lists);
  - the cache keeps the newest LIVE records: older ones are deleted from
    the dict and the index (so objects of every age die, at a steady rate);
  - every BATCH records, a report: the names of a slice of the cache are
    joined into one long string, split, re-cased, counted word by word into
    a dict, sorted, and the top entries kept as formatted strings;
  - every record also makes a short text by joining words and replaces a
    word in it (strings that die young).
Everything is derived from a fixed LCG, so the work is the same on every
run; the last line printed is a checksum of lengths and counts (no hash()
values, so it does not depend on the hash seed).
"""

import sys

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo "
         "lima mike november oscar papa quebec romeo sierra tango uniform "
         "victor whiskey xray yankee zulu").split()
LIVE = 20000
BATCH = 2000


class Record:
    def __init__(self, key, name, tags, fields):
        self.key = key
        self.name = name
        self.tags = tags
        self.fields = fields


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30000
    nw = len(WORDS)
    x = 12345
    cache = {}
    index = {}
    order = []
    reports = []
    check = 0
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        a, b, c = WORDS[x % nw], WORDS[(x >> 5) % nw], WORDS[(x >> 10) % nw]
        name = f"{a}-{b}-{i:06d}"
        tags = [a, b, c][: 1 + x % 3]
        fields = {"id": i, "score": (x % 1000) / 10.0, "label": c.upper(),
                  "vals": [x % 7, x % 11, x % 13, i]}
        rec = Record(i, name, tags, fields)
        cache[name] = rec
        order.append(name)
        for t in tags:
            index.setdefault(t, []).append(rec)
        text = " ".join((a, b, c, a, name)).replace(b, b.capitalize())
        check += len(text)
        if len(cache) > LIVE:
            old = cache.pop(order[i - LIVE])
            for t in old.tags:
                # records leave in the order they came: the oldest of a tag
                if index[t].pop(0) is not old:
                    raise SystemExit("bench_python: index out of order")
        if i % BATCH == BATCH - 1:
            names = order[max(0, i - LIVE + 1):i + 1:3]
            blob = ",".join(names)
            counts = {}
            for word in blob.replace("-", " ").replace(",", " ").split():
                w = word.title()
                counts[w] = counts.get(w, 0) + 1
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
            reports.append(["%s=%d" % kv for kv in top])
            check += len(blob) + len(counts)
    check += sum(len(r) for r in reports) + len(cache)
    check += sum(len(v) for v in index.values())
    print("records", n, "live", len(cache), "checksum", check)


if __name__ == "__main__":
    main()
