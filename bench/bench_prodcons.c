/* bench_prodcons: producer/consumer remote-free benchmark.
 *
 * usage: bench_prodcons [threads] [blocks_per_producer] [seed]
 *        defaults        2         1000000               42
 *
 * threads must be even: threads/2 producer/consumer pairs.  A producer
 * mallocs blocks (uniform sizes 16..1024), writes the first byte and hands
 * the pointer to its consumer through a bounded single-producer /
 * single-consumer lock-free ring; the consumer checks the byte and frees the
 * block.  Every free therefore happens on a thread other than the one that
 * allocated the block.  When the ring is full (producer) or empty (consumer)
 * the thread calls sched_yield(), so oversubscribed runs (more threads than
 * cores) make progress.
 *
 * ops = blocks over all pairs (one malloc + one free each); the time is the
 * wall time from the earliest thread leaving the start barrier to the last
 * thread finishing.
 */
#include "bench_common.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#define MIN_SIZE 16
#define MAX_SIZE 1024
#define RING_SIZE 1024 /* entries, power of two */
#ifndef PUBLISH
#define PUBLISH 16 /* each side publishes its index every PUBLISH entries */
#endif
#ifndef REFILL
#define REFILL (RING_SIZE / 4) /* a blocked producer waits for this much room */
#endif
#define CACHE_LINE 64

/* The ring lives in its own mmap'd pages, independent of the allocator under
 * test.  head is written only by the producer, tail only by the consumer.
 *
 * Each side keeps a private copy of the other side's index and publishes its
 * own index only every PUBLISH entries (and whenever it is about to wait), so
 * the two threads do not bounce the index cache lines on every block.  A
 * producer that found the ring full waits until REFILL entries are free
 * rather than refilling one slot at a time in lock-step with the consumer.
 * This keeps the ring's own cache-line traffic small next to the allocator's.
 * (PUBLISH and REFILL can be overridden with -D for experiments.)
 */
struct ring {
    _Alignas(CACHE_LINE) _Atomic uint64_t head; /* next slot to fill */
    _Alignas(CACHE_LINE) _Atomic uint64_t tail; /* next slot to drain */
    _Alignas(CACHE_LINE) void *slot[RING_SIZE];
};

struct pair {
    struct ring *ring;
    uint64_t index;
    uint64_t blocks;
    uint64_t seed;
    pthread_barrier_t *barrier;
    pthread_t prod_tid, cons_tid;
    double prod_start, prod_end, cons_start, cons_end;
    int prod_failed;
    uint64_t bad_bytes;
};

static void *producer_main(void *arg)
{
    struct pair *pr = arg;
    struct ring *r = pr->ring;
    bench_rng rng;
    bench_rng_seed(&rng, pr->seed + pr->index);
    uint64_t head = 0, tail = 0; /* tail: last value seen */

    pthread_barrier_wait(pr->barrier);
    pr->prod_start = bench_now();
    for (uint64_t i = 0; i < pr->blocks; i++) {
        size_t sz = (size_t)bench_rng_range(&rng, MIN_SIZE, MAX_SIZE);
        char *p = malloc(sz);
        if (!p)
            pr->prod_failed = 1; /* pass NULL on: the consumer stops at it */
        else
            bench_touch(p, (char)i);
        if (head - tail >= RING_SIZE) {
            tail = atomic_load_explicit(&r->tail, memory_order_acquire);
            if (head - tail >= RING_SIZE) {
                /* Full: publish what we have, then wait for room. */
                atomic_store_explicit(&r->head, head, memory_order_release);
                while (head - tail > RING_SIZE - REFILL) {
                    sched_yield();
                    tail = atomic_load_explicit(&r->tail, memory_order_acquire);
                }
            }
        }
        r->slot[head & (RING_SIZE - 1)] = p;
        head++;
        if (head % PUBLISH == 0 || !p)
            atomic_store_explicit(&r->head, head, memory_order_release);
        if (!p)
            break;
    }
    atomic_store_explicit(&r->head, head, memory_order_release);
    pr->prod_end = bench_now();
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct pair *pr = arg;
    struct ring *r = pr->ring;
    uint64_t tail = 0, head = 0; /* head: last value seen */
    uint64_t bad = 0;

    pthread_barrier_wait(pr->barrier);
    pr->cons_start = bench_now();
    for (uint64_t i = 0; i < pr->blocks; i++) {
        if (tail == head) {
            head = atomic_load_explicit(&r->head, memory_order_acquire);
            if (tail == head) {
                /* Empty: publish our progress, then wait for entries. */
                atomic_store_explicit(&r->tail, tail, memory_order_release);
                do {
                    sched_yield();
                    head = atomic_load_explicit(&r->head, memory_order_acquire);
                } while (tail == head);
            }
        }
        char *p = r->slot[tail & (RING_SIZE - 1)];
        tail++;
        if (tail % PUBLISH == 0)
            atomic_store_explicit(&r->tail, tail, memory_order_release);
        if (!p)
            break; /* producer failed */
        if (bench_peek(p) != (char)i)
            bad++;
        free(p);
    }
    atomic_store_explicit(&r->tail, tail, memory_order_release);
    pr->cons_end = bench_now();
    pr->bad_bytes = bad;
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t nthreads = bench_arg_u64(argc, argv, 1, "threads", 2, 2, 1024);
    uint64_t blocks   = bench_arg_u64(argc, argv, 2, "blocks_per_producer", 1000000, 1, UINT64_MAX / 1024);
    uint64_t seed     = bench_arg_u64(argc, argv, 3, "seed", 42, 0, UINT64_MAX);
    if (argc > 4) {
        fprintf(stderr, "usage: %s [threads] [blocks_per_producer] [seed]\n", argv[0]);
        return 2;
    }
    if (nthreads % 2 != 0) {
        fprintf(stderr, "%s: threads must be even (got %" PRIu64 ")\n", argv[0], nthreads);
        return 2;
    }
    uint64_t npairs = nthreads / 2;

    struct pair *pairs = calloc(npairs, sizeof *pairs);
    if (!pairs) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        return 1;
    }
    size_t ring_bytes = npairs * sizeof(struct ring);
    struct ring *rings = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rings == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(rings, 0, ring_bytes); /* fault the pages in before timing */

    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);

    for (uint64_t k = 0; k < npairs; k++) {
        struct pair *pr = &pairs[k];
        pr->ring = &rings[k];
        pr->index = k;
        pr->blocks = blocks;
        pr->seed = seed;
        pr->barrier = &barrier;
        int rc = pthread_create(&pr->cons_tid, NULL, consumer_main, pr);
        if (rc == 0)
            rc = pthread_create(&pr->prod_tid, NULL, producer_main, pr);
        if (rc != 0) {
            fprintf(stderr, "%s: pthread_create: %s\n", argv[0], strerror(rc));
            return 1;
        }
    }

    int failed = 0;
    double start = 0.0, end = 0.0;
    for (uint64_t k = 0; k < npairs; k++) {
        struct pair *pr = &pairs[k];
        pthread_join(pr->prod_tid, NULL);
        pthread_join(pr->cons_tid, NULL);
        if (pr->prod_failed) {
            fprintf(stderr, "%s: pair %" PRIu64 ": malloc failed\n", argv[0], k);
            failed = 1;
        }
        if (pr->bad_bytes) {
            fprintf(stderr, "%s: pair %" PRIu64 ": %" PRIu64
                            " blocks arrived with a corrupted first byte\n",
                    argv[0], k, pr->bad_bytes);
            failed = 1;
        }
        double s = pr->prod_start < pr->cons_start ? pr->prod_start : pr->cons_start;
        double e = pr->prod_end > pr->cons_end ? pr->prod_end : pr->cons_end;
        if (k == 0 || s < start)
            start = s;
        if (k == 0 || e > end)
            end = e;
    }
    pthread_barrier_destroy(&barrier);
    munmap(rings, ring_bytes);
    free(pairs);
    if (failed)
        return 1;

    bench_print_result(npairs * blocks, end - start);
    return 0;
}
