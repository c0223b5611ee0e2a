/* bench_server: request buffers of a server.  N threads (default 2) each
 * handle requests: a request takes a buffer of a random size (uniform in
 * 64 KiB..4 MiB), fills a random part of it with memset (a prefix of 10% to
 * 100% of its size, as a request body read into a buffer sized for the
 * largest one), writes its last byte (a trailer), and keeps the buffer
 * while later requests are handled: each thread holds its last LIVE
 * buffers in a ring, and a new request frees the oldest one once the ring
 * is full.  Buffers are allocated and freed on the same thread; what counts
 * is how fast large blocks come back and how many of their pages must be
 * faulted in again.
 *
 * usage: bench_server [threads] [requests_per_thread] [seed]
 *        defaults     2         5000                  42
 *
 * Each thread has its own PRNG (seed + thread index).  All threads start
 * together from a barrier; the time is the wall time from the earliest
 * thread leaving the barrier to the last thread finishing its requests
 * (the buffers still held are freed after the clock stops).  Before a
 * buffer is freed its first byte is checked.  ops = threads *
 * requests_per_thread.
 */
#include "bench_common.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#define MIN_SIZE (64u << 10)
#define MAX_SIZE (4u << 20)
#define LIVE 4           /* buffers a thread holds at once */

struct worker {
    pthread_t tid;
    uint64_t index, requests, seed;
    pthread_barrier_t *barrier;
    double start, end;
    int failed, bad;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    bench_rng r;
    bench_rng_seed(&r, w->seed + w->index);
    unsigned char *ring[LIVE] = { 0 };
    unsigned char tag[LIVE] = { 0 };
    unsigned head = 0; /* the oldest buffer, and where the next one goes */

    pthread_barrier_wait(w->barrier);
    w->start = bench_now();
    for (uint64_t q = 0; q < w->requests; q++) {
        if (ring[head]) {
            if (ring[head][0] != tag[head])
                w->bad = 1;
            free(ring[head]);
            ring[head] = NULL;
        }
        size_t sz = (size_t)bench_rng_range(&r, MIN_SIZE, MAX_SIZE);
        size_t fill = (size_t)bench_rng_range(&r, sz / 10, sz);
        unsigned char *p = malloc(sz);
        if (!p) {
            w->failed = 1;
            break;
        }
        unsigned char t = (unsigned char)(q * 7 + 1);
        memset(p, t, fill);
        *(volatile unsigned char *)(p + sz - 1) = t;
        ring[head] = p;
        tag[head] = t;
        head = (head + 1) % LIVE;
    }
    w->end = bench_now();
    for (unsigned k = 0; k < LIVE; k++)
        free(ring[k]);
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t nthreads = bench_arg_u64(argc, argv, 1, "threads", 2, 1, 1024);
    uint64_t requests = bench_arg_u64(argc, argv, 2, "requests_per_thread", 5000, 1, UINT64_MAX / 2048);
    uint64_t seed     = bench_arg_u64(argc, argv, 3, "seed", 42, 0, UINT64_MAX);
    if (argc > 4) {
        fprintf(stderr, "usage: %s [threads] [requests_per_thread] [seed]\n", argv[0]);
        return 2;
    }

    /* Bookkeeping lives outside the allocator under test. */
    struct worker *w = mmap(NULL, nthreads * sizeof *w, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    for (uint64_t t = 0; t < nthreads; t++) {
        w[t].index = t;
        w[t].requests = requests;
        w[t].seed = seed;
        w[t].barrier = &barrier;
        int rc = pthread_create(&w[t].tid, NULL, worker_main, &w[t]);
        if (rc != 0) {
            /* The barrier would never open: give up outright. */
            fprintf(stderr, "%s: pthread_create: %s\n", argv[0], strerror(rc));
            return 1;
        }
    }

    int failed = 0, bad = 0;
    double start = 0.0, end = 0.0;
    for (uint64_t t = 0; t < nthreads; t++) {
        pthread_join(w[t].tid, NULL);
        failed |= w[t].failed;
        bad |= w[t].bad;
        if (t == 0 || w[t].start < start)
            start = w[t].start;
        if (t == 0 || w[t].end > end)
            end = w[t].end;
    }
    pthread_barrier_destroy(&barrier);
    if (failed) {
        fprintf(stderr, "%s: malloc failed\n", argv[0]);
        return 1;
    }
    if (bad) {
        fprintf(stderr, "%s: a buffer's first byte was wrong\n", argv[0]);
        return 1;
    }
    bench_print_result(nthreads * requests, end - start);
    return 0;
}
