#!/usr/bin/env python3
"""Deterministic Redis dataset for the redis check of tests/preload.sh.

    redis_dataset.py SEED OUTDIR

writes
    OUTDIR/load.resp   write commands in the Redis protocol, for
                       `redis-cli --pipe < load.resp`
    OUTDIR/reads.txt   read commands, one per line, for `redis-cli < reads.txt`

The same SEED gives the same files.  The load builds strings, lists, hashes,
sets and sorted sets of many sizes (a few bytes to 4 MiB), with each type in
more than one internal encoding (listpack, intset, quicklist, hash table,
skiplist), then changes them: pops, trims, removals, increments, appends,
overwrites with other types, deletes (large ones are freed by Redis's lazy-free
thread when lazyfree-lazy-user-del is on), renames, copies and set algebra.

The reads only ask for what does not depend on Redis's random hash seed (no
HGETALL, SMEMBERS, KEYS or SCAN, whose order does): DEBUG DIGEST of the whole
dataset, DEBUG DIGEST-VALUE of every key, and for every twentieth key its type,
encoding, size, ranges of ordered types and single members.
"""
import os
import random
import sys


def main():
    seed = int(sys.argv[1])
    outdir = sys.argv[2]
    rng = random.Random(seed)
    out = []

    def cmd(*args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        out.append(b"".join(parts))

    # Value bytes: slices of a printable pseudo-random pool, so that values
    # differ from key to key and no value holds a space or a newline.
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    pool = bytes(alphabet[rng.randrange(64)] for _ in range(1 << 16))
    wide = pool * 66  # a little over 4 MiB

    def val(n):
        off = rng.randrange(1 << 16)
        return wide[off:off + n]

    def size():
        r = rng.random()
        if r < 0.55:
            return rng.randint(1, 48)
        if r < 0.80:
            return rng.randint(49, 512)
        if r < 0.93:
            return rng.randint(513, 8192)
        if r < 0.99:
            return rng.randint(8193, 65536)
        return rng.randint(65537, 262144)

    def small():
        return rng.randint(1, 40) if rng.random() < 0.97 else rng.randint(41, 4096)

    keys = {}  # name -> type, for the reads

    # strings
    for i in range(2500):
        k = "s:%d" % i
        cmd("SET", k, val(size()))
        keys[k] = "string"
    for i, n in enumerate([16 << 10, (16 << 10) + 1, 64 << 10, 1 << 20,
                           (1 << 20) + 17, 2 << 20, 4 << 20]):
        k = "big:%d" % i
        cmd("SET", k, val(n))
        keys[k] = "string"
    for i in range(6):
        # zero-filled up to the offset, then the value
        k = "range:%d" % i
        cmd("SETRANGE", k, rng.randint(1000, 1 << 20), val(small()))
        keys[k] = "string"
    for i in range(20):
        # grows by appends from a few bytes to tens or hundreds of KiB
        k = "app:%d" % i
        for _ in range(rng.randint(10, 200)):
            cmd("APPEND", k, val(rng.randint(1, 2048)))
        keys[k] = "string"
    for _ in range(50):
        # four strings grow together to about 2 MiB each, each append a
        # realloc that the neighbours often keep from growing in place
        for i in range(4):
            cmd("APPEND", "grow:%d" % i, val(rng.randint(16 << 10, 64 << 10)))
    for i in range(4):
        keys["grow:%d" % i] = "string"
    for i in range(200):
        k = "num:%d" % i
        cmd("SET", k, rng.randint(-1000, 1000))
        for _ in range(rng.randint(1, 5)):
            cmd("INCRBY", k, rng.randint(-10**6, 10**6))
        keys[k] = "string"

    # lists: short ones stay listpacks, long ones become quicklists
    for i in range(300):
        k = "l:%d" % i
        n = rng.choice([1, 5, 20, 100, 130, 600, 2000])
        while n > 0:
            b = min(n, rng.randint(1, 64))
            cmd(rng.choice(["RPUSH", "LPUSH"]), k, *[val(small()) for _ in range(b)])
            n -= b
        r = rng.random()
        if r < 0.2:
            cmd("LPOP", k, rng.randint(1, 50))
        elif r < 0.4:
            cmd("RPOP", k)
        elif r < 0.55:
            cmd("LTRIM", k, rng.randint(0, 10), rng.randint(-300, -1))
        elif r < 0.7:
            cmd("LINSERT", k, "BEFORE", "nosuchpivot", "x")
            cmd("LSET", k, 0, val(size()))
        elif r < 0.8:
            cmd("LREM", k, 0, val(3))
        # a short list may have lost all its elements, hence its key
        keys[k] = "list" if n > 300 else "list?"

    # hashes: few small fields stay listpacks, many or big ones hash tables
    for i in range(400):
        k = "h:%d" % i
        n = rng.choice([1, 8, 64, 127, 129, 400, 1000])
        big = n <= 129 and rng.random() < 0.3
        f = 0
        while f < n:
            b = min(n - f, rng.randint(1, 50))
            args = []
            for j in range(f, f + b):
                args += ["f%d" % j, val(min(size(), 8192) if big else small())]
            cmd("HSET", k, *args)
            f += b
        for _ in range(rng.randint(0, 20)):
            cmd("HDEL", k, "f%d" % rng.randrange(n))
        for _ in range(rng.randint(0, 5)):
            cmd("HINCRBY", k, "cnt", rng.randint(1, 1000))
        keys[k] = "hash" if n > 20 else "hash?"

    # sets: integers (intset), strings (listpack, hash table), conversions
    for i in range(300):
        k = "S:%d" % i
        n = rng.choice([3, 50, 200, 600, 3000])
        ints = rng.random() < 0.5
        members = [str(rng.randint(-10**9, 10**9)) if ints else "m%d-%s" % (j, val(rng.randint(1, 30)).decode())
                   for j in range(n)]
        for j in range(0, n, 100):
            cmd("SADD", k, *members[j:j + 100])
        for _ in range(rng.randint(0, 30)):
            cmd("SREM", k, rng.choice(members))
        if ints and rng.random() < 0.3:
            cmd("SADD", k, "not-a-number")
        keys[k] = "set" if n > 30 else "set?"

    # sorted sets: listpacks and skiplists
    for i in range(300):
        k = "z:%d" % i
        n = rng.choice([2, 40, 127, 129, 400, 2500])
        for j in range(0, n, 80):
            args = []
            for m in range(j, min(n, j + 80)):
                args += [rng.randint(-10**6, 10**6) / 4, "zm%d-%s" % (m, val(rng.randint(1, 60)).decode())]
            cmd("ZADD", k, *args)
        for _ in range(rng.randint(0, 10)):
            cmd("ZINCRBY", k, rng.randint(1, 100), "zm%d" % rng.randrange(n))
        if rng.random() < 0.3:
            cmd("ZREMRANGEBYRANK", k, 0, rng.randint(0, n // 2))
        keys[k] = "zset"

    # set algebra and copies of whole collections
    for i in range(30):
        a, b = "S:%d" % rng.randrange(300), "S:%d" % rng.randrange(300)
        k = "su:%d" % i
        cmd(rng.choice(["SUNIONSTORE", "SINTERSTORE", "SDIFFSTORE"]), k, a, b)
        keys[k] = "set?"  # may be empty, hence absent
        a, b = "z:%d" % rng.randrange(300), "z:%d" % rng.randrange(300)
        k = "zu:%d" % i
        cmd("ZUNIONSTORE", k, 2, a, b, "WEIGHTS", 1, 2)
        keys[k] = "zset?"
    names = sorted(keys)
    for i in range(40):
        src = rng.choice(names)
        k = "copy:%d" % i
        cmd("COPY", src, k, "REPLACE")
        keys[k] = keys[src]  # uncertain ("?") if the source is

    # churn: overwrite with another type, delete, rename, recreate
    names = sorted(keys)
    for _ in range(1500):
        k = rng.choice(names)
        r = rng.random()
        if r < 0.35:
            cmd("SET", k, val(size()))
            keys[k] = "string"
        elif r < 0.7:
            cmd("DEL", k)
            keys[k] = "none"
        elif r < 0.8:
            dst = rng.choice(names)
            if dst == k:
                continue
            if keys[k] == "none" or keys[k].endswith("?"):
                continue  # k may be absent: RENAME would reply with an error
            cmd("RENAME", k, dst)
            keys[dst] = keys[k]
            keys[k] = "none"
        elif keys[k] in ("none", "list"):
            cmd("RPUSH", k, val(small()))
            keys[k] = "list"
    cmd("UNLINK", *[names[i] for i in range(0, len(names), 97)])
    for i in range(0, len(names), 97):
        keys[names[i]] = "none"

    with open(os.path.join(outdir, "load.resp"), "wb") as f:
        f.write(b"".join(out))

    # reads; keys whose type is uncertain ("?" or after a failed RENAME) get
    # the type-neutral ones only
    lines = ["DBSIZE", "DEBUG DIGEST"]
    live = sorted(k for k, t in keys.items() if t != "none")
    for k in live[::20]:
        t = keys[k]
        lines += ["TYPE " + k, "OBJECT ENCODING " + k]
        if t == "string":
            lines += ["STRLEN " + k, "GETRANGE %s 0 40" % k, "GETRANGE %s -40 -1" % k]
        elif t == "list":
            lines += ["LLEN " + k, "LRANGE %s 0 2" % k, "LRANGE %s -2 -1" % k]
        elif t == "hash":
            lines += ["HLEN " + k, "HMGET %s f0 f7 f100 f128 cnt" % k, "HSTRLEN %s f3" % k]
        elif t == "set":
            lines += ["SCARD " + k, "SISMEMBER %s not-a-number" % k]
        elif t == "zset":
            lines += ["ZCARD " + k, "ZRANGE %s 0 3 WITHSCORES" % k, "ZRANGE %s -2 -1 WITHSCORES" % k,
                      "ZCOUNT %s -1000 1000" % k]
    for i in range(0, len(live), 200):
        lines.append("DEBUG DIGEST-VALUE " + " ".join(live[i:i + 200]))
    with open(os.path.join(outdir, "reads.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
