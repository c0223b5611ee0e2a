/* bench_alloc_test: mixed sizes with a spread of lifetimes (the shape of
 * the alloc-test benchmark), on 1 or N threads.
 *
 * usage: bench_alloc_test [threads] [ops_per_thread] [seed]
 *        defaults          1         20000000         42
 *
 * Shape: each thread keeps three pools of slots, one per kind of lifetime:
 *
 *   pool     slots   picked   mean lifetime of a block (operations)
 *   short       16      80%       20
 *   medium    1024      17%       about 6,000
 *   long     65536       3%       about 2,200,000
 *
 * One operation picks a pool with those odds and a slot of it at random,
 * frees the slot's block if it has one (checking its first byte) and puts a
 * new block there.  Sizes are skewed to small ones: a power of two 2^e is
 * chosen with e in 3..13 and each e half as likely as the one below it, then
 * a size uniform in [2^e, 2^(e+1)): half the blocks are 8..15 bytes, a
 * quarter 16..31, ..., up to 16 KiB.  Each new block gets its first and last
 * byte written (bench_touch).  The pools start empty, so the live set grows
 * over the run as the long pool fills (about 66,000 blocks per thread, of
 * 72 bytes on average, once a few million operations have run).
 * Threads share nothing; with one thread the loop runs on the main thread
 * and no other thread is started.
 *
 * ops = threads * ops_per_thread; the time is the wall time from the start
 * barrier to the last thread finishing (the final frees are not timed).
 */
#include "bench_common.h"

#include <pthread.h>

static const struct {
    uint64_t slots;
    uint64_t odds;           /* out of 100 */
} pools[3] = { { 16, 80 }, { 1024, 17 }, { 65536, 3 } };

struct worker {
    pthread_t tid;
    uint64_t index, ops, seed;
    pthread_barrier_t *barrier;
    double t_start, t_end;
    int failed;
    char pad[64];
};

static size_t skewed_size(bench_rng *r)
{
    /* e = 3 + number of trailing zero bits of a random word, capped. */
    uint64_t x = bench_rng_next(r) | ((uint64_t)1 << 10);
    unsigned e = 3 + (unsigned)__builtin_ctzll(x);
    return (size_t)bench_rng_range(r, (uint64_t)1 << e, ((uint64_t)2 << e) - 1);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    bench_rng r;
    bench_rng_seed(&r, w->seed + w->index);
    char **slot[3];
    for (int k = 0; k < 3; k++) {
        slot[k] = calloc(pools[k].slots, sizeof(char *));
        if (!slot[k]) {
            w->failed = 1;
            return NULL;
        }
    }
    pthread_barrier_wait(w->barrier);
    w->t_start = bench_now();
    for (uint64_t i = 0; i < w->ops; i++) {
        uint64_t c = bench_rng_below(&r, 100);
        int k = c < pools[0].odds ? 0 : c < pools[0].odds + pools[1].odds ? 1 : 2;
        uint64_t s = bench_rng_below(&r, pools[k].slots);
        char *p = slot[k][s];
        if (p) {
            if (bench_peek(p) != (char)s)
                w->failed = 1;
            free(p);
        }
        size_t sz = skewed_size(&r);
        p = malloc(sz);
        if (!p) {
            w->failed = 1;
            break;
        }
        bench_touch(p, sz, (char)s);
        slot[k][s] = p;
    }
    w->t_end = bench_now();
    for (int k = 0; k < 3; k++) {
        for (uint64_t s = 0; s < pools[k].slots; s++)
            free(slot[k][s]);
        free(slot[k]);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t nthreads = bench_arg_u64(argc, argv, 1, "threads", 1, 1, 1024);
    uint64_t ops      = bench_arg_u64(argc, argv, 2, "ops_per_thread", 20000000, 1, UINT64_MAX / 2048);
    uint64_t seed     = bench_arg_u64(argc, argv, 3, "seed", 42, 0, UINT64_MAX);
    if (argc > 4) {
        fprintf(stderr, "usage: %s [threads] [ops_per_thread] [seed]\n", argv[0]);
        return 2;
    }
    struct worker *w = calloc(nthreads, sizeof *w);
    if (!w)
        return 1;
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    for (uint64_t t = 0; t < nthreads; t++)
        w[t] = (struct worker){ .index = t, .ops = ops, .seed = seed, .barrier = &barrier };
    if (nthreads == 1)
        worker_main(&w[0]);
    for (uint64_t t = 0; t < nthreads && nthreads > 1; t++) {
        int rc = pthread_create(&w[t].tid, NULL, worker_main, &w[t]);
        if (rc != 0) {
            fprintf(stderr, "%s: pthread_create: %s\n", argv[0], strerror(rc));
            return 1;
        }
    }
    double start = 0, end = 0;
    int failed = 0;
    for (uint64_t t = 0; t < nthreads; t++) {
        if (nthreads > 1)
            pthread_join(w[t].tid, NULL);
        if (t == 0 || w[t].t_start < start)
            start = w[t].t_start;
        if (w[t].t_end > end)
            end = w[t].t_end;
        failed |= w[t].failed;
    }
    free(w);
    if (failed) {
        fprintf(stderr, "%s: a block's byte was wrong or malloc failed\n", argv[0]);
        return 1;
    }
    bench_print_result(nthreads * ops, end - start);
    return 0;
}
