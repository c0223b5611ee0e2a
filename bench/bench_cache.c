/* bench_cache: false sharing between threads through the allocator (the
 * shapes of the cache-thrash and cache-scratch tests).
 *
 * usage: bench_cache mode [threads] [objects_per_thread] [size] [writes]
 *        mode: thrash | scratch
 *        defaults     2         200000               8      50
 *
 * Each thread runs the same loop: allocate an object of `size` bytes, write
 * every byte of it `writes` times (volatile increments, each a load and a
 * store), free it.  The writes are most of the work, so the time shows
 * whether objects that different threads write share cache lines.
 *
 * thrash (active false sharing): the threads allocate their own objects;
 *   an allocator that hands small objects of different threads out of one
 *   cache line makes every write a coherence miss.
 * scratch (passive false sharing): the main thread allocates one object per
 *   worker back to back (so they likely share a cache line) and hands object
 *   i to thread i, which writes it like one of its own and frees it before
 *   its loop.  An allocator that gives a freed block back to the thread
 *   that freed it puts that thread's loop on the main thread's line, next to
 *   the other workers' objects.
 *
 * ops = threads * objects_per_thread (objects allocated, written and freed);
 * the time is the wall time from the start barrier to the last thread.
 */
#include "bench_common.h"

#include <pthread.h>

struct worker {
    pthread_t tid;
    uint64_t objects, size, writes;
    char *given;             /* scratch: the object from the main thread */
    pthread_barrier_t *barrier;
    double t_start, t_end;
    int failed;
    char pad[64];
};

static void write_object(char *obj, uint64_t size, uint64_t writes)
{
    volatile char *c = obj;
    for (uint64_t w = 0; w < writes; w++)
        for (uint64_t k = 0; k < size; k++)
            c[k]++;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(w->barrier);
    w->t_start = bench_now();
    if (w->given) {
        write_object(w->given, w->size, w->writes);
        free(w->given);
    }
    for (uint64_t i = 0; i < w->objects; i++) {
        char *p = malloc(w->size);
        if (!p) {
            w->failed = 1;
            break;
        }
        write_object(p, w->size, w->writes);
        free(p);
    }
    w->t_end = bench_now();
    return NULL;
}

int main(int argc, char **argv)
{
    int scratch;
    if (argc >= 2 && strcmp(argv[1], "thrash") == 0)
        scratch = 0;
    else if (argc >= 2 && strcmp(argv[1], "scratch") == 0)
        scratch = 1;
    else {
        fprintf(stderr, "usage: %s thrash|scratch [threads] [objects_per_thread] [size]"
                        " [writes]\n", argv[0]);
        return 2;
    }
    uint64_t nthreads = bench_arg_u64(argc, argv, 2, "threads", 2, 1, 1024);
    uint64_t objects  = bench_arg_u64(argc, argv, 3, "objects_per_thread", 200000, 1, UINT64_MAX / 2);
    uint64_t size     = bench_arg_u64(argc, argv, 4, "size", 8, 1, 1 << 20);
    uint64_t writes   = bench_arg_u64(argc, argv, 5, "writes", 50, 1, 1 << 30);
    if (argc > 6) {
        fprintf(stderr, "%s: too many arguments\n", argv[0]);
        return 2;
    }
    struct worker *w = calloc(nthreads, sizeof *w);
    if (!w)
        return 1;
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    for (uint64_t t = 0; t < nthreads; t++) {
        w[t].objects = objects;
        w[t].size = size;
        w[t].writes = writes;
        w[t].barrier = &barrier;
        if (scratch) {
            w[t].given = malloc(size);
            if (!w[t].given)
                return 1;
            memset(w[t].given, 0, size);
        }
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
    free(w);
    if (failed) {
        fprintf(stderr, "%s: malloc failed\n", argv[0]);
        return 1;
    }
    bench_print_result(nthreads * objects, end - start);
    return 0;
}
