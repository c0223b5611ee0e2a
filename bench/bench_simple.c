/* bench_simple: batches of n blocks of one size, freed in FIFO then LIFO
 * order (the shape of glibc's simple malloc benchmark), on 1 or N threads.
 *
 * usage: bench_simple [threads] [n] [milliseconds]
 *        defaults      1         100 250
 *
 * Shape: each thread, for each round, for each size in 16, 64, 256, 1024
 * and 4096 bytes: allocates n blocks of that size (writing each one's first
 * and last byte, bench_touch) and frees them in the order they were
 * allocated (FIFO); then allocates n blocks again and frees them newest
 * first (LIFO).  n = 25 stays inside any thread cache; n = 1600 (6.4 MB of
 * 4096-byte blocks) does not.  With several threads each runs the same loop
 * on its own blocks at once (no block changes thread), as glibc's benchmark
 * does from a second thread to leave the main arena.  With one thread the
 * loop runs on the main thread and the process never starts another (some
 * allocators skip their atomic operations until a second thread exists).
 *
 * Each thread runs whole rounds until `milliseconds` have passed since the
 * start (the clock is read once per round): the allocators compared here
 * differ by up to 60 times on this loop, and a fixed time keeps every run
 * short while the rate stays a rate.  ops = mallocs over all threads
 * (rounds done * 5 sizes * 2 * n, summed), each with its free; the time is
 * the wall time from the start barrier to the last thread finishing.
 */
#include "bench_common.h"

#include <pthread.h>

static const size_t sizes[] = { 16, 64, 256, 1024, 4096 };
#define NSIZES (sizeof sizes / sizeof sizes[0])

struct worker {
    pthread_t tid;
    uint64_t n, rounds;      /* rounds: done, when the thread returns */
    double seconds;
    void **blocks;
    pthread_barrier_t *barrier;
    double t_start, t_end;
    int failed;
    char pad[64];
};

static int fill(void **b, uint64_t n, size_t size)
{
    for (uint64_t i = 0; i < n; i++) {
        b[i] = malloc(size);
        if (!b[i])
            return 0;
        bench_touch(b[i], size, (char)i);
    }
    return 1;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    void **b = w->blocks;
    uint64_t n = w->n;
    pthread_barrier_wait(w->barrier);
    w->t_start = bench_now();
    for (w->rounds = 0; bench_now() - w->t_start < w->seconds; w->rounds++) {
        for (unsigned s = 0; s < NSIZES; s++) {
            if (!fill(b, n, sizes[s]))
                goto fail;
            for (uint64_t i = 0; i < n; i++) {          /* FIFO */
                if (bench_peek(b[i]) != (char)i)
                    goto fail;
                free(b[i]);
            }
            if (!fill(b, n, sizes[s]))
                goto fail;
            for (uint64_t i = n; i-- > 0;) {            /* LIFO */
                if (bench_peek(b[i]) != (char)i)
                    goto fail;
                free(b[i]);
            }
        }
    }
    w->t_end = bench_now();
    return NULL;
fail:
    w->failed = 1;
    w->t_end = bench_now();
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t nthreads = bench_arg_u64(argc, argv, 1, "threads", 1, 1, 1024);
    uint64_t n        = bench_arg_u64(argc, argv, 2, "n", 100, 1, (uint64_t)1 << 24);
    uint64_t ms       = bench_arg_u64(argc, argv, 3, "milliseconds", 250, 1, 3600000);
    if (argc > 4) {
        fprintf(stderr, "usage: %s [threads] [n] [milliseconds]\n", argv[0]);
        return 2;
    }
    struct worker *w = calloc(nthreads, sizeof *w);
    if (!w)
        return 1;
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    for (uint64_t t = 0; t < nthreads; t++) {
        w[t].n = n;
        w[t].seconds = (double)ms / 1000.0;
        w[t].barrier = &barrier;
        w[t].blocks = calloc(n, sizeof(void *));
        if (!w[t].blocks)
            return 1;
    }
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
    uint64_t rounds = 0;
    int failed = 0;
    for (uint64_t t = 0; t < nthreads; t++) {
        if (nthreads > 1)
            pthread_join(w[t].tid, NULL);
        if (t == 0 || w[t].t_start < start)
            start = w[t].t_start;
        if (w[t].t_end > end)
            end = w[t].t_end;
        failed |= w[t].failed;
        rounds += w[t].rounds;
        free(w[t].blocks);
    }
    free(w);
    if (failed) {
        fprintf(stderr, "%s: a block's byte was wrong or malloc failed\n", argv[0]);
        return 1;
    }
    bench_print_result(rounds * NSIZES * 2 * n, end - start);
    return 0;
}
