/* bench_rptest: random sizes and lifetimes, with blocks handed between
 * threads (the shape of rpmalloc's benchmark).
 *
 * usage: bench_rptest [threads] [ops_per_thread] [seed] [slots] [cross_pct]
 *        defaults      2         2000000          42     2048    10
 *
 * Shape: each thread keeps `slots` slots.  One operation picks a slot at
 * random; if it holds a block, the block leaves it: with probability
 * cross_pct % it is handed to the next thread (in a ring), which will free
 * it, otherwise the thread frees it itself; then a new block goes in the
 * slot.  So a block lives a random number of operations (geometric, mean
 * `slots`).  Sizes: 90% of blocks uniform in 16..256 bytes, 9% in
 * 256..4096, 1% in 4 KiB..64 KiB.  Each new block gets its first and last
 * byte and one byte per page written (bench_touch).
 *
 * Hand-off: blocks for the next thread are chained through their first word
 * into a local list; every HANDOFF blocks the list is spliced onto the next
 * thread's inbox under its mutex.  Every HANDOFF operations a thread takes
 * its whole inbox and frees those blocks.  Nobody waits for anybody, so
 * more threads than cores is fine.  After its loop a thread sends what it
 * holds for the next one; after all threads are done each frees its inbox
 * and its slots (not timed).
 *
 * ops = threads * ops_per_thread; the time is the wall time from the start
 * barrier to the last thread finishing its loop.
 */
#include "bench_common.h"

#include <pthread.h>
#include <sys/mman.h>

#define HANDOFF 64

struct inbox {
    pthread_mutex_t lock;
    void *head;
    char pad[64];
};

struct worker {
    pthread_t tid;
    uint64_t index, nthreads, ops, seed, slots, cross;
    struct inbox *boxes;
    pthread_barrier_t *barrier;
    double t_start, t_end;
    int failed;
    char pad[64];
};

static size_t rp_size(bench_rng *r)
{
    uint64_t c = bench_rng_below(r, 100);
    if (c < 90)
        return (size_t)bench_rng_range(r, 16, 256);
    if (c < 99)
        return (size_t)bench_rng_range(r, 257, 4096);
    return (size_t)bench_rng_range(r, 4097, 65536);
}

static void free_chain(void *p)
{
    while (p) {
        void *next = *(void **)p;
        free(p);
        p = next;
    }
}

static void send_chain(struct inbox *b, void *head, void *tail)
{
    pthread_mutex_lock(&b->lock);
    *(void **)tail = b->head;
    b->head = head;
    pthread_mutex_unlock(&b->lock);
}

static void *take_inbox(struct inbox *b)
{
    pthread_mutex_lock(&b->lock);
    void *p = b->head;
    b->head = NULL;
    pthread_mutex_unlock(&b->lock);
    return p;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    bench_rng r;
    bench_rng_seed(&r, w->seed + w->index);
    struct inbox *mine = &w->boxes[w->index];
    struct inbox *next = &w->boxes[(w->index + 1) % w->nthreads];
    char **slot = calloc(w->slots, sizeof *slot);
    if (!slot)
        w->failed = 1;
    void *out_head = NULL, *out_tail = NULL;
    unsigned out_n = 0;
    pthread_barrier_wait(w->barrier);
    w->t_start = bench_now();
    for (uint64_t i = 0; i < w->ops && slot; i++) {
        uint64_t k = bench_rng_below(&r, w->slots);
        char *p = slot[k];
        if (p) {
            if (bench_peek(p + sizeof(void *)) != (char)k)
                w->failed = 1;
            if (bench_rng_below(&r, 100) < w->cross) {
                *(void **)p = out_head;
                out_head = p;
                if (!out_tail)
                    out_tail = p;
                if (++out_n == HANDOFF) {
                    send_chain(next, out_head, out_tail);
                    out_head = out_tail = NULL;
                    out_n = 0;
                }
            } else {
                free(p);
            }
        }
        size_t sz = rp_size(&r);
        p = malloc(sz);
        if (!p) {
            w->failed = 1;
            break;
        }
        bench_touch(p, sz, (char)k);
        p[sizeof(void *)] = (char)k;
        slot[k] = p;
        if (i % HANDOFF == HANDOFF - 1)
            free_chain(take_inbox(mine));
    }
    if (out_head)
        send_chain(next, out_head, out_tail);
    w->t_end = bench_now();
    /* Every thread has sent all it will send: free what came in, then the
     * slots. */
    pthread_barrier_wait(w->barrier);
    free_chain(take_inbox(mine));
    if (slot) {
        for (uint64_t k = 0; k < w->slots; k++)
            free(slot[k]);
        free(slot);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t nthreads = bench_arg_u64(argc, argv, 1, "threads", 2, 2, 1024);
    uint64_t ops      = bench_arg_u64(argc, argv, 2, "ops_per_thread", 2000000, 1, UINT64_MAX / 2048);
    uint64_t seed     = bench_arg_u64(argc, argv, 3, "seed", 42, 0, UINT64_MAX);
    uint64_t slots    = bench_arg_u64(argc, argv, 4, "slots", 2048, 1, (uint64_t)1 << 28);
    uint64_t cross    = bench_arg_u64(argc, argv, 5, "cross_pct", 10, 0, 100);
    if (argc > 6) {
        fprintf(stderr, "usage: %s [threads] [ops_per_thread] [seed] [slots] [cross_pct]\n",
                argv[0]);
        return 2;
    }
    /* Inboxes and thread records live outside the allocator under test. */
    size_t bytes = nthreads * (sizeof(struct inbox) + sizeof(struct worker));
    char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    struct inbox *boxes = (struct inbox *)mem;
    struct worker *w = (struct worker *)(boxes + nthreads);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    for (uint64_t t = 0; t < nthreads; t++) {
        pthread_mutex_init(&boxes[t].lock, NULL);
        w[t] = (struct worker){ .index = t, .nthreads = nthreads, .ops = ops, .seed = seed,
                                .slots = slots, .cross = cross, .boxes = boxes,
                                .barrier = &barrier };
    }
    for (uint64_t t = 0; t < nthreads; t++) {
        int rc = pthread_create(&w[t].tid, NULL, worker_main, &w[t]);
        if (rc != 0) {
            fprintf(stderr, "%s: pthread_create: %s\n", argv[0], strerror(rc));
            return 1;
        }
    }
    double start = 0, end = 0;
    int failed = 0;
    for (uint64_t t = 0; t < nthreads; t++) {
        pthread_join(w[t].tid, NULL);
        if (t == 0 || w[t].t_start < start)
            start = w[t].t_start;
        if (w[t].t_end > end)
            end = w[t].t_end;
        failed |= w[t].failed;
    }
    if (failed) {
        fprintf(stderr, "%s: a block's byte was wrong or malloc failed\n", argv[0]);
        return 1;
    }
    bench_print_result(nthreads * ops, end - start);
    return 0;
}
