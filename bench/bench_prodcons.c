/* bench_prodcons: remote frees.  T threads in a ring: each allocates blocks
 * (uniform sizes 16..1024) in batches, writes each one's first and last byte
 * (bench_touch), and hands every batch to the next thread, which checks the
 * first bytes and frees the blocks.  So every block is freed by a thread
 * other than the one that allocated it, and every thread is both producer
 * and consumer.
 *
 * usage: bench_prodcons [threads] [blocks_per_thread] [seed]
 *        defaults        2         1000000             42
 *
 * Hand-off is by mailbox (mutex + condition variable, a few batches deep),
 * one lock round-trip per batch of BATCH blocks: a thread that must wait
 * sleeps instead of spinning, so runs with more threads than cores measure
 * the allocator rather than the scheduler.  Each thread alternates one send
 * and one receive; with mailboxes at least two batches deep this cannot
 * deadlock.  ops = blocks over all threads (one malloc + one remote free
 * each); the time is wall time from the start barrier to the last thread.
 */
#include "bench_common.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#define MIN_SIZE 16
#define MAX_SIZE 1024
#define BATCH 256
#define DEPTH 4          /* batches a mailbox holds */

struct mailbox {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned head, count;
    void *slot[DEPTH][BATCH];
};

struct worker {
    unsigned index, nthreads;
    uint64_t batches, seed;
    struct mailbox *boxes;
    pthread_barrier_t *barrier;
    double start, end;
    int bad;
};

static void send_batch(struct mailbox *m, void **batch) {
    pthread_mutex_lock(&m->lock);
    while (m->count == DEPTH) pthread_cond_wait(&m->changed, &m->lock);
    memcpy(m->slot[(m->head + m->count) % DEPTH], batch, sizeof m->slot[0]);
    m->count++;
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
}

static void receive_batch(struct mailbox *m, void **batch) {
    pthread_mutex_lock(&m->lock);
    while (m->count == 0) pthread_cond_wait(&m->changed, &m->lock);
    memcpy(batch, m->slot[m->head], sizeof m->slot[0]);
    m->head = (m->head + 1) % DEPTH;
    m->count--;
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    bench_rng r;
    bench_rng_seed(&r, w->seed + w->index);
    void *out[BATCH], *in[BATCH];
    struct mailbox *next = &w->boxes[(w->index + 1) % w->nthreads];
    struct mailbox *own = &w->boxes[w->index];
    char mine = (char)w->index, theirs = (char)((w->index + w->nthreads - 1) % w->nthreads);
    pthread_barrier_wait(w->barrier);
    w->start = bench_now();
    for (uint64_t b = 0; b < w->batches; b++) {
        for (unsigned k = 0; k < BATCH; k++) {
            size_t sz = (size_t)bench_rng_range(&r, MIN_SIZE, MAX_SIZE);
            char *p = malloc(sz);
            if (!p) { w->bad = 1; return NULL; }
            bench_touch(p, sz, mine);
            out[k] = p;
        }
        send_batch(next, out);
        receive_batch(own, in);
        for (unsigned k = 0; k < BATCH; k++) {
            if (bench_peek(in[k]) != theirs) w->bad = 1;
            free(in[k]);
        }
    }
    w->end = bench_now();
    return NULL;
}

int main(int argc, char **argv) {
    unsigned nthreads = (unsigned)bench_arg_u64(argc, argv, 1, "threads", 2, 2, 1024);
    uint64_t blocks = bench_arg_u64(argc, argv, 2, "blocks_per_thread", 1000000, BATCH, UINT64_MAX / 1024);
    uint64_t seed = bench_arg_u64(argc, argv, 3, "seed", 42, 0, UINT64_MAX);
    uint64_t batches = blocks / BATCH;

    /* Mailboxes and bookkeeping live outside the allocator under test. */
    size_t bytes = nthreads * (sizeof(struct mailbox) + sizeof(struct worker) + sizeof(pthread_t));
    char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); return 1; }
    struct mailbox *boxes = (struct mailbox *)mem;
    struct worker *ws = (struct worker *)(boxes + nthreads);
    pthread_t *tids = (pthread_t *)(ws + nthreads);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, nthreads);
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_mutex_init(&boxes[i].lock, NULL);
        pthread_cond_init(&boxes[i].changed, NULL);
        ws[i] = (struct worker){ .index = i, .nthreads = nthreads, .batches = batches, .seed = seed,
                                 .boxes = boxes, .barrier = &barrier };
    }
    for (unsigned i = 0; i < nthreads; i++)
        if (pthread_create(&tids[i], NULL, worker_main, &ws[i]) != 0) { perror("pthread_create"); return 1; }
    double start = 0, end = 0;
    int bad = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(tids[i], NULL);
        if (i == 0 || ws[i].start < start) start = ws[i].start;
        if (ws[i].end > end) end = ws[i].end;
        bad |= ws[i].bad;
    }
    if (bad) { fprintf(stderr, "bench_prodcons: a block's byte was wrong or malloc failed\n"); return 1; }
    bench_print_result(batches * BATCH * nthreads, end - start);
    return 0;
}
