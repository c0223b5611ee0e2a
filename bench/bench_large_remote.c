/* bench_large_remote: large blocks freed by another thread.  A producer
 * thread allocates large blocks (sizes uniform in [min_size, max_size],
 * default 256 KiB..4 MiB), writes each one (first and last byte and one byte
 * per 4096-byte page, bench_touch) and hands them in batches of BATCH to a
 * consumer thread, which checks each block's first and last byte and frees
 * it.  So every large block is allocated on one thread and freed on the
 * other: an allocator that keeps freed large blocks per thread, or returns
 * them to the kernel on a remote free, shows it here.
 *
 * usage: bench_large_remote [iterations] [seed] [min_size] [max_size]
 *        defaults            20000        42     262144     4194304
 *
 * Hand-off is by one mailbox (mutex + condition variable, DEPTH batches
 * deep), one lock round-trip per batch, and a thread that must wait sleeps
 * instead of spinning, as in bench_prodcons.  At most (DEPTH + 2) * BATCH
 * blocks are live at once (about 100 MiB at the default sizes).  A last,
 * shorter batch carries the remainder when iterations is not a multiple of
 * BATCH.  ops = iterations (each one malloc + touch + one remote free); the
 * time is wall time from the start barrier to the consumer's last free.
 */
#include "bench_common.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#define BATCH 8
#define DEPTH 4          /* batches the mailbox holds */

struct batch {
    unsigned n;
    void *p[BATCH];
    size_t size[BATCH];
};

struct mailbox {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned head, count;
    struct batch slot[DEPTH];
};

struct shared {
    struct mailbox box;
    pthread_barrier_t barrier;
    uint64_t iters, seed, minsz, maxsz;
    double start, end;
    int alloc_failed, bad;
};

static void send_batch(struct mailbox *m, const struct batch *b)
{
    pthread_mutex_lock(&m->lock);
    while (m->count == DEPTH)
        pthread_cond_wait(&m->changed, &m->lock);
    m->slot[(m->head + m->count) % DEPTH] = *b;
    m->count++;
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
}

static void receive_batch(struct mailbox *m, struct batch *b)
{
    pthread_mutex_lock(&m->lock);
    while (m->count == 0)
        pthread_cond_wait(&m->changed, &m->lock);
    *b = m->slot[m->head];
    m->head = (m->head + 1) % DEPTH;
    m->count--;
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
}

static void *producer_main(void *arg)
{
    struct shared *s = arg;
    bench_rng r;
    bench_rng_seed(&r, s->seed);
    struct batch b;
    pthread_barrier_wait(&s->barrier);
    s->start = bench_now();
    for (uint64_t i = 0; i < s->iters; ) {
        b.n = 0;
        while (b.n < BATCH && i < s->iters) {
            size_t sz = (size_t)bench_rng_range(&r, s->minsz, s->maxsz);
            char *p = malloc(sz);
            if (!p) {
                /* Tell the consumer to stop: an empty batch. */
                s->alloc_failed = 1;
                break;
            }
            bench_touch(p, sz, (char)i);
            b.p[b.n] = p;
            b.size[b.n] = sz;
            b.n++;
            i++;
        }
        send_batch(&s->box, &b);
        if (s->alloc_failed) {
            b.n = 0;
            send_batch(&s->box, &b);
            break;
        }
    }
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct shared *s = arg;
    struct batch b;
    uint64_t seen = 0;
    pthread_barrier_wait(&s->barrier);
    while (seen < s->iters) {
        receive_batch(&s->box, &b);
        if (b.n == 0)
            break; /* the producer failed */
        for (unsigned k = 0; k < b.n; k++) {
            const char *p = b.p[k];
            char want = (char)(seen + k);
            if (bench_peek(p) != want || bench_peek(p + b.size[k] - 1) != want)
                s->bad = 1;
            free(b.p[k]);
        }
        seen += b.n;
    }
    s->end = bench_now();
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t iters = bench_arg_u64(argc, argv, 1, "iterations", 20000, 1, UINT64_MAX / 2);
    uint64_t seed  = bench_arg_u64(argc, argv, 2, "seed", 42, 0, UINT64_MAX);
    uint64_t minsz = bench_arg_u64(argc, argv, 3, "min_size", 256 << 10, 1, (uint64_t)1 << 40);
    uint64_t maxsz = bench_arg_u64(argc, argv, 4, "max_size", 4 << 20, 1, (uint64_t)1 << 40);
    if (argc > 5) {
        fprintf(stderr, "usage: %s [iterations] [seed] [min_size] [max_size]\n", argv[0]);
        return 2;
    }
    if (minsz > maxsz) {
        fprintf(stderr, "%s: min_size %" PRIu64 " > max_size %" PRIu64 "\n",
                argv[0], minsz, maxsz);
        return 2;
    }

    /* The mailbox lives outside the allocator under test. */
    struct shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    pthread_mutex_init(&s->box.lock, NULL);
    pthread_cond_init(&s->box.changed, NULL);
    pthread_barrier_init(&s->barrier, NULL, 2);
    s->iters = iters;
    s->seed = seed;
    s->minsz = minsz;
    s->maxsz = maxsz;

    pthread_t prod, cons;
    int rc = pthread_create(&cons, NULL, consumer_main, s);
    if (rc == 0)
        rc = pthread_create(&prod, NULL, producer_main, s);
    if (rc != 0) {
        fprintf(stderr, "%s: pthread_create: %s\n", argv[0], strerror(rc));
        return 1;
    }
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    if (s->alloc_failed) {
        fprintf(stderr, "%s: malloc failed\n", argv[0]);
        return 1;
    }
    if (s->bad) {
        fprintf(stderr, "%s: a block's first or last byte was wrong\n", argv[0]);
        return 1;
    }
    bench_print_result(iters, s->end - s->start);
    return 0;
}
