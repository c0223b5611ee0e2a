/* Shared helpers for the hakmem benchmarks.
 *
 * The benchmarks are ordinary programs calling the standard malloc/free; the
 * allocator under test is chosen at run time with LD_PRELOAD (see
 * bench/run_bench.py), so every allocator pays the same call cost.
 *
 * Every benchmark prints exactly one result line on stdout:
 *
 *   ops/s: <integer> peak_rss_kb: <integer> ops: <integer> seconds: <float>
 *
 * Diagnostics go to stderr.  Exit status 0 on success, 1 on a runtime
 * failure (allocation failure, corrupted data), 2 on bad arguments.
 */
#ifndef HAKMEM_BENCH_COMMON_H
#define HAKMEM_BENCH_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ PRNG */

/* splitmix64: used to turn an arbitrary seed (including 0) into a
 * well-mixed, non-zero state for the main generator. */
static inline uint64_t bench_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* xorshift64*: small, fast, deterministic from the seed. */
typedef struct {
    uint64_t s;
} bench_rng;

static inline void bench_rng_seed(bench_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    r->s = bench_splitmix64(&x);
    if (r->s == 0)
        r->s = 0x2545F4914F6CDD1DULL;
}

static inline uint64_t bench_rng_next(bench_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform integer in [0, n) (n > 0), by multiply-shift (Lemire); the bias
 * is at most n / 2^64, negligible here. */
static inline uint64_t bench_rng_below(bench_rng *r, uint64_t n)
{
#ifdef __SIZEOF_INT128__
    return (uint64_t)(((unsigned __int128)bench_rng_next(r) * n) >> 64);
#else
    return bench_rng_next(r) % n;
#endif
}

/* Uniform integer in [lo, hi] (lo <= hi). */
static inline uint64_t bench_rng_range(bench_rng *r, uint64_t lo, uint64_t hi)
{
    return lo + bench_rng_below(r, hi - lo + 1);
}

/* ----------------------------------------------------------------- clock */

/* Monotonic time in seconds. */
static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------- RSS */

/* Peak resident set size of the whole process (all threads), in KiB.
 *
 * getrusage(RUSAGE_SELF).ru_maxrss is kept across execve(): a benchmark
 * started by a large parent through vfork/posix_spawn (Python's subprocess
 * does this) would report the parent's peak.  VmHWM in /proc/self/status
 * belongs to the current address space only, so prefer it and fall back to
 * ru_maxrss when /proc is unavailable. */
static inline long bench_peak_rss_kb(void)
{
    /* Plain open/read into a stack buffer: no allocation from the allocator
     * under test while measuring it. */
    char buf[8192];
    ssize_t n = -1;
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
    }
    if (n > 0) {
        buf[n] = '\0';
        const char *p = strstr(buf, "\nVmHWM:");
        long kb;
        if (p && sscanf(p + 1, "VmHWM: %ld", &kb) == 1)
            return kb;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ru.ru_maxrss; /* Linux: kilobytes */
}

/* ------------------------------------------------------------- arguments */

/* Parse argv[idx] as an unsigned integer in [min, max]; use def when the
 * argument is absent.  Exits with status 2 on a malformed value. */
static inline uint64_t bench_arg_u64(int argc, char **argv, int idx,
                                     const char *name, uint64_t def,
                                     uint64_t min, uint64_t max)
{
    if (idx >= argc)
        return def;
    const char *s = argv[idx];
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' ||
        v < min || v > max) {
        fprintf(stderr, "%s: bad %s '%s' (expected an integer in %" PRIu64
                        "..%" PRIu64 ")\n", argv[0], name, s, min, max);
        exit(2);
    }
    return (uint64_t)v;
}

/* ---------------------------------------------------------------- result */

/* Print the single result line (the only thing written to stdout). */
static inline void bench_print_result(uint64_t ops, double seconds)
{
    long rss = bench_peak_rss_kb();
    double rate = seconds > 0.0 ? (double)ops / seconds : 0.0;
    printf("ops/s: %" PRIu64 " peak_rss_kb: %ld ops: %" PRIu64
           " seconds: %.6f\n",
           (uint64_t)(rate + 0.5), rss, ops, seconds);
    fflush(stdout);
}

/* Write a block of `size` bytes the way a program that uses it would reach
 * every page of it: the first byte, one byte every BENCH_PAGE bytes after
 * it, and the last byte.  Stepping by a page from the first byte lands in
 * every page the block spans (whatever its alignment) and the last byte
 * covers the final one, so each page of the block is faulted in if it was
 * not resident.  A block under a page costs two stores, first and last byte.
 * The stores go through a volatile pointer, so the compiler can drop neither
 * them nor, with them, the allocation.  size 0 writes nothing. */
#define BENCH_PAGE 4096

static inline void bench_touch(void *p, size_t size, char v)
{
    volatile char *c = (volatile char *)p;
    if (size == 0)
        return;
    c[0] = v;
    if (size > BENCH_PAGE)
        for (size_t off = BENCH_PAGE; off < size - 1; off += BENCH_PAGE)
            c[off] = v;
    c[size - 1] = v;
}

/* Read back one byte the same way. */
static inline char bench_peek(const void *p)
{
    return *(const volatile char *)p;
}

#endif /* HAKMEM_BENCH_COMMON_H */
