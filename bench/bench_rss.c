/* bench_rss: does memory go back?  Allocates about [total_mib] MiB (default
 * 1024) of mixed blocks (mostly 16 B..1 KiB, some up to 64 KiB, a few of
 * 1-4 MiB), writing each; frees 90% of them scattered; then frees the rest.
 * Prints the current RSS after each phase, again after a 1 s pause, and after
 * malloc_trim(0), then the usual result line (ops = blocks allocated).
 *
 *   usage: bench_rss [total_mib] [seed]
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench_common.h"

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static size_t pick_size(bench_rng *r) {
    uint64_t k = bench_rng_below(r, 1000);
    if (k < 900) return (size_t)bench_rng_range(r, 16, 1024);
    if (k < 999) return (size_t)bench_rng_range(r, 1025, 65536);
    return (size_t)bench_rng_range(r, 1 << 20, 4 << 20);
}

/* The pointer array lives outside the allocator under test. */
static void *mmap_or_die(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(1); }
    return p;
}

int main(int argc, char **argv) {
    uint64_t total = bench_arg_u64(argc, argv, 1, "total_mib", 1024, 1, 1 << 20) << 20;
    uint64_t seed = bench_arg_u64(argc, argv, 2, "seed", 42, 0, UINT64_MAX);
    bench_rng r;
    bench_rng_seed(&r, seed);

    long start = rss_kb();
    size_t cap = 1 << 20, n = 0;
    void **v = mmap_or_die(cap * sizeof *v);
    double t0 = bench_now();
    uint64_t bytes = 0;
    while (bytes < total && n < cap) {
        size_t sz = pick_size(&r);
        char *p = malloc(sz);
        if (!p) { fprintf(stderr, "bench_rss: malloc(%zu) failed\n", sz); return 1; }
        memset(p, (int)(n & 0xff), sz);
        v[n++] = p;
        bytes += sz;
    }
    long peak = rss_kb();
    /* free 90%, scattered: every block whose hash says so */
    for (size_t i = 0; i < n; i++) {
        if (bench_rng_below(&r, 10) != 0) { free(v[i]); v[i] = NULL; }
    }
    long after90 = rss_kb();
    for (size_t i = 0; i < n; i++) free(v[i]);
    long after_all = rss_kb();
    double t1 = bench_now();
    sleep(1);
    long after_pause = rss_kb();
    malloc_trim(0);
    long after_trim = rss_kb();
    printf("rss_kb: start %ld peak %ld after_free90 %ld after_free_all %ld after_pause %ld after_trim %ld\n",
           start, peak, after90, after_all, after_pause, after_trim);
    bench_print_result(n, t1 - t0);
    return 0;
}
