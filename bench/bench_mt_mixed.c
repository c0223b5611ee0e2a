/* bench_mt_mixed: bench_random_mixed on N threads at once.
 *
 * usage: bench_mt_mixed [threads] [iterations_per_thread] [working_set] [seed]
 *                       [min_size] [max_size]
 *        defaults        2         1000000                 256           42
 *                        16         1024
 *
 * Every thread owns its slots and its PRNG (seeded from seed + thread index)
 * and runs the random_mixed loop with sizes uniform in [min_size, max_size],
 * writing each new block's first and last byte and one byte per 4096-byte
 * page in between (bench_touch).  With a large size band this is the
 * random_mixed band rows on N threads at once.  All threads start
 * together from a barrier; the time is the wall time from the earliest
 * thread leaving the barrier to the last thread finishing its loop.
 * ops = threads * iterations_per_thread.
 */
#include "bench_common.h"

#include <pthread.h>
#include <string.h>

struct worker {
    pthread_t tid;
    uint64_t index;
    uint64_t iters;
    uint64_t ws;
    uint64_t seed;
    uint64_t minsz, maxsz;
    pthread_barrier_t *barrier;
    double t_start, t_end;
    int failed;
    char pad[64];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    /* Allocated by this thread, before the clock starts. */
    char **slots = calloc(w->ws, sizeof *slots);
    bench_rng rng;
    bench_rng_seed(&rng, w->seed + w->index);

    pthread_barrier_wait(w->barrier);
    w->t_start = bench_now();
    if (!slots) {
        w->failed = 1;
        w->t_end = bench_now();
        return NULL;
    }
    for (uint64_t i = 0; i < w->iters; i++) {
        uint64_t k = bench_rng_below(&rng, w->ws);
        char *p = slots[k];
        if (p) {
            free(p);
            slots[k] = NULL;
        } else {
            size_t sz = (size_t)bench_rng_range(&rng, w->minsz, w->maxsz);
            p = malloc(sz);
            if (!p) {
                w->failed = 1;
                break;
            }
            bench_touch(p, sz, (char)i);
            slots[k] = p;
        }
    }
    w->t_end = bench_now();

    for (uint64_t k = 0; k < w->ws; k++)
        free(slots[k]);
    free(slots);
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t nthreads = bench_arg_u64(argc, argv, 1, "threads", 2, 1, 1024);
    uint64_t iters    = bench_arg_u64(argc, argv, 2, "iterations_per_thread", 1000000, 1, UINT64_MAX / 2048);
    uint64_t ws       = bench_arg_u64(argc, argv, 3, "working_set", 256, 1, (uint64_t)1 << 32);
    uint64_t seed     = bench_arg_u64(argc, argv, 4, "seed", 42, 0, UINT64_MAX);
    uint64_t minsz    = bench_arg_u64(argc, argv, 5, "min_size", 16, 1, (uint64_t)1 << 40);
    uint64_t maxsz    = bench_arg_u64(argc, argv, 6, "max_size", 1024, 1, (uint64_t)1 << 40);
    if (argc > 7) {
        fprintf(stderr, "usage: %s [threads] [iterations_per_thread] [working_set] [seed]"
                        " [min_size] [max_size]\n", argv[0]);
        return 2;
    }
    if (minsz > maxsz) {
        fprintf(stderr, "%s: min_size %" PRIu64 " > max_size %" PRIu64 "\n",
                argv[0], minsz, maxsz);
        return 2;
    }

    struct worker *w = calloc(nthreads, sizeof *w);
    if (!w) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        return 1;
    }
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);

    for (uint64_t t = 0; t < nthreads; t++) {
        w[t].index = t;
        w[t].iters = iters;
        w[t].ws = ws;
        w[t].seed = seed;
        w[t].minsz = minsz;
        w[t].maxsz = maxsz;
        w[t].barrier = &barrier;
        int rc = pthread_create(&w[t].tid, NULL, worker_main, &w[t]);
        if (rc != 0) {
            /* The barrier would never open: give up outright. */
            fprintf(stderr, "%s: pthread_create: %s\n", argv[0], strerror(rc));
            return 1;
        }
    }

    int failed = 0;
    double start = 0.0, end = 0.0;
    for (uint64_t t = 0; t < nthreads; t++) {
        pthread_join(w[t].tid, NULL);
        if (w[t].failed) {
            fprintf(stderr, "%s: thread %" PRIu64 ": allocation failed\n", argv[0], t);
            failed = 1;
        }
        if (t == 0 || w[t].t_start < start)
            start = w[t].t_start;
        if (t == 0 || w[t].t_end > end)
            end = w[t].t_end;
    }
    pthread_barrier_destroy(&barrier);
    free(w);
    if (failed)
        return 1;

    bench_print_result(nthreads * iters, end - start);
    return 0;
}
