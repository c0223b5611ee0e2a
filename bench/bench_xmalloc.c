/* bench_xmalloc: one thread allocates, the others free (the shape of the
 * xmalloc test: a producer whose blocks are all freed by other threads).
 *
 * usage: bench_xmalloc [freeing_threads] [blocks] [seed] [min_size] [max_size]
 *        defaults      2                 2000000  42     16         512
 *
 * Shape: one producer thread allocates blocks of sizes uniform in
 * [min_size, max_size], writes each one's first and last byte (bench_touch)
 * and queues them in batches of BATCH; F consumer threads take whole
 * batches from the one shared queue, check each block's first byte and free
 * it.  So every free is a free of the producer's memory by another thread,
 * and the producer keeps needing fresh memory while its old blocks come back
 * from elsewhere.  The queue is a ring of DEPTH batches behind a mutex and
 * two condition variables (waiting threads sleep, they do not spin: with 3
 * threads on 2 cores this measures the allocator, not the scheduler).
 *
 * ops = blocks (rounded down to whole batches), each one malloc and one free
 * by another thread; the time is the wall time from the start barrier to the
 * last consumer finishing.
 */
#include "bench_common.h"

#include <pthread.h>
#include <sys/mman.h>

#define BATCH 128
#define DEPTH 16

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t not_full, not_empty;
    unsigned head, count;
    int done;
    void *batch[DEPTH][BATCH];
};

struct thread {
    pthread_t tid;
    unsigned index;
    uint64_t batches, seed, minsz, maxsz;
    struct queue *q;
    pthread_barrier_t *barrier;
    double t_start, t_end;
    int failed;
    char pad[64];
};

static void *producer_main(void *arg)
{
    struct thread *t = arg;
    struct queue *q = t->q;
    bench_rng r;
    bench_rng_seed(&r, t->seed);
    void *out[BATCH];
    pthread_barrier_wait(t->barrier);
    t->t_start = bench_now();
    for (uint64_t b = 0; b < t->batches; b++) {
        for (unsigned k = 0; k < BATCH; k++) {
            size_t sz = (size_t)bench_rng_range(&r, t->minsz, t->maxsz);
            char *p = malloc(sz);
            if (!p) {
                t->failed = 1;
                b = t->batches;
                break;
            }
            bench_touch(p, sz, (char)k);
            out[k] = p;
        }
        if (t->failed)
            break;
        pthread_mutex_lock(&q->lock);
        while (q->count == DEPTH)
            pthread_cond_wait(&q->not_full, &q->lock);
        memcpy(q->batch[(q->head + q->count) % DEPTH], out, sizeof out);
        q->count++;
        pthread_cond_signal(&q->not_empty);
        pthread_mutex_unlock(&q->lock);
    }
    pthread_mutex_lock(&q->lock);
    q->done = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
    t->t_end = bench_now();
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct thread *t = arg;
    struct queue *q = t->q;
    void *in[BATCH];
    pthread_barrier_wait(t->barrier);
    t->t_start = bench_now();
    for (;;) {
        pthread_mutex_lock(&q->lock);
        while (q->count == 0 && !q->done)
            pthread_cond_wait(&q->not_empty, &q->lock);
        if (q->count == 0) {
            pthread_mutex_unlock(&q->lock);
            break;
        }
        memcpy(in, q->batch[q->head], sizeof in);
        q->head = (q->head + 1) % DEPTH;
        q->count--;
        pthread_cond_signal(&q->not_full);
        pthread_mutex_unlock(&q->lock);
        for (unsigned k = 0; k < BATCH; k++) {
            if (bench_peek(in[k]) != (char)k)
                t->failed = 1;
            free(in[k]);
        }
    }
    t->t_end = bench_now();
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t nfree  = bench_arg_u64(argc, argv, 1, "freeing_threads", 2, 1, 1024);
    uint64_t blocks = bench_arg_u64(argc, argv, 2, "blocks", 2000000, BATCH, UINT64_MAX / 2048);
    uint64_t seed   = bench_arg_u64(argc, argv, 3, "seed", 42, 0, UINT64_MAX);
    uint64_t minsz  = bench_arg_u64(argc, argv, 4, "min_size", 16, 1, (uint64_t)1 << 30);
    uint64_t maxsz  = bench_arg_u64(argc, argv, 5, "max_size", 512, 1, (uint64_t)1 << 30);
    if (argc > 6 || minsz > maxsz) {
        fprintf(stderr, "usage: %s [freeing_threads] [blocks] [seed] [min_size] [max_size]\n",
                argv[0]);
        return 2;
    }
    uint64_t n = nfree + 1;
    /* Queue and thread records live outside the allocator under test. */
    size_t bytes = sizeof(struct queue) + n * sizeof(struct thread);
    char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    struct queue *q = (struct queue *)mem;
    struct thread *t = (struct thread *)(q + 1);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_full, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)n);
    for (uint64_t i = 0; i < n; i++) {
        t[i] = (struct thread){ .index = (unsigned)i, .batches = blocks / BATCH, .seed = seed,
                                .minsz = minsz, .maxsz = maxsz, .q = q, .barrier = &barrier };
        int rc = pthread_create(&t[i].tid, NULL, i == 0 ? producer_main : consumer_main, &t[i]);
        if (rc != 0) {
            fprintf(stderr, "%s: pthread_create: %s\n", argv[0], strerror(rc));
            return 1;
        }
    }
    double start = 0, end = 0;
    int failed = 0;
    for (uint64_t i = 0; i < n; i++) {
        pthread_join(t[i].tid, NULL);
        if (i == 0 || t[i].t_start < start)
            start = t[i].t_start;
        if (t[i].t_end > end)
            end = t[i].t_end;
        failed |= t[i].failed;
    }
    if (failed) {
        fprintf(stderr, "%s: a block's byte was wrong or malloc failed\n", argv[0]);
        return 1;
    }
    bench_print_result(blocks / BATCH * BATCH, end - start);
    return 0;
}
