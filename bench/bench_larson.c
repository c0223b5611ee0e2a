/* bench_larson: a server in the style of Larson and Krishnan's benchmark
 * (threads that allocate blocks of random sizes and pass them on to other
 * threads, which free them).
 *
 * usage: bench_larson [lanes] [ops_per_lane] [seed] [slots] [ops_per_thread]
 *                     [min_size] [max_size]
 *        defaults      2       2000000        42     1000    10000
 *                      8          1000
 *
 * Shape: L lanes run at once, each standing for one server thread.  A lane
 * owns an array of `slots` blocks of sizes uniform in [min_size, max_size],
 * filled before the clock starts.  One operation picks a slot at random,
 * checks and frees its block, allocates a new block of a random size and
 * writes it (bench_touch: first and last byte).  A lane's work is done by a
 * succession of threads: each thread does `ops_per_thread` operations on the
 * lane's array, then exits and a new thread takes the array over, so every
 * block is freed by a later thread than the one that allocated it (most by a
 * thread that has exited by then, as in the original, whose threads hand
 * their blocks to the threads they start).  A lane's starter thread only
 * creates and joins the lane's worker threads; it does not allocate.
 *
 * ops = lanes * ops_per_lane (rounded down to whole threads), each a free
 * and a malloc; the time is the wall time from the start barrier to the last
 * lane finishing; thread creation and exit are part of the work.
 */
#include "bench_common.h"

#include <pthread.h>
#include <sys/mman.h>

struct lane {
    pthread_t tid;
    unsigned index;
    uint64_t threads, ops_per_thread, slots, minsz, maxsz;
    bench_rng rng;
    char **slot;
    pthread_barrier_t *barrier;
    double t_start, t_end;
    int failed;
    char pad[64];
};

/* One of a lane's successive threads. */
static void *worker_main(void *arg)
{
    struct lane *l = arg;
    for (uint64_t i = 0; i < l->ops_per_thread; i++) {
        uint64_t k = bench_rng_below(&l->rng, l->slots);
        char *p = l->slot[k];
        if (bench_peek(p) != (char)k)
            l->failed = 1;
        free(p);
        size_t sz = (size_t)bench_rng_range(&l->rng, l->minsz, l->maxsz);
        p = malloc(sz);
        if (!p) {
            l->failed = 1;
            return NULL;
        }
        bench_touch(p, sz, (char)k);
        l->slot[k] = p;
    }
    return NULL;
}

static void *lane_main(void *arg)
{
    struct lane *l = arg;
    pthread_barrier_wait(l->barrier);
    l->t_start = bench_now();
    for (uint64_t g = 0; g < l->threads && !l->failed; g++) {
        pthread_t t;
        int rc = pthread_create(&t, NULL, worker_main, l);
        if (rc != 0) {
            fprintf(stderr, "bench_larson: pthread_create: %s\n", strerror(rc));
            l->failed = 1;
            break;
        }
        pthread_join(t, NULL);
    }
    l->t_end = bench_now();
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t lanes = bench_arg_u64(argc, argv, 1, "lanes", 2, 1, 1024);
    uint64_t ops   = bench_arg_u64(argc, argv, 2, "ops_per_lane", 2000000, 1, UINT64_MAX / 2048);
    uint64_t seed  = bench_arg_u64(argc, argv, 3, "seed", 42, 0, UINT64_MAX);
    uint64_t slots = bench_arg_u64(argc, argv, 4, "slots", 1000, 1, (uint64_t)1 << 28);
    uint64_t per   = bench_arg_u64(argc, argv, 5, "ops_per_thread", 10000, 1, UINT64_MAX / 2048);
    uint64_t minsz = bench_arg_u64(argc, argv, 6, "min_size", 8, 1, (uint64_t)1 << 30);
    uint64_t maxsz = bench_arg_u64(argc, argv, 7, "max_size", 1000, 1, (uint64_t)1 << 30);
    if (argc > 8 || minsz > maxsz) {
        fprintf(stderr, "usage: %s [lanes] [ops_per_lane] [seed] [slots] [ops_per_thread]"
                        " [min_size] [max_size]\n", argv[0]);
        return 2;
    }
    uint64_t threads = ops / per ? ops / per : 1;

    /* The lanes' records live outside the allocator under test. */
    struct lane *l = mmap(NULL, lanes * sizeof *l, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (l == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)lanes);
    for (uint64_t i = 0; i < lanes; i++) {
        l[i].index = (unsigned)i;
        l[i].threads = threads;
        l[i].ops_per_thread = per;
        l[i].slots = slots;
        l[i].minsz = minsz;
        l[i].maxsz = maxsz;
        l[i].barrier = &barrier;
        bench_rng_seed(&l[i].rng, seed + i);
        /* Filled by the main thread before the clock starts. */
        l[i].slot = malloc(slots * sizeof *l[i].slot);
        if (!l[i].slot)
            return 1;
        for (uint64_t k = 0; k < slots; k++) {
            size_t sz = (size_t)bench_rng_range(&l[i].rng, minsz, maxsz);
            l[i].slot[k] = malloc(sz);
            if (!l[i].slot[k])
                return 1;
            bench_touch(l[i].slot[k], sz, (char)k);
        }
    }
    for (uint64_t i = 0; i < lanes; i++) {
        int rc = pthread_create(&l[i].tid, NULL, lane_main, &l[i]);
        if (rc != 0) {
            fprintf(stderr, "%s: pthread_create: %s\n", argv[0], strerror(rc));
            return 1;
        }
    }
    double start = 0, end = 0;
    int failed = 0;
    for (uint64_t i = 0; i < lanes; i++) {
        pthread_join(l[i].tid, NULL);
        if (i == 0 || l[i].t_start < start)
            start = l[i].t_start;
        if (l[i].t_end > end)
            end = l[i].t_end;
        failed |= l[i].failed;
    }
    if (failed) {
        fprintf(stderr, "%s: a block's byte was wrong or malloc failed\n", argv[0]);
        return 1;
    }
    for (uint64_t i = 0; i < lanes; i++) {
        for (uint64_t k = 0; k < slots; k++)
            free(l[i].slot[k]);
        free(l[i].slot);
    }
    bench_print_result(lanes * threads * per, end - start);
    return 0;
}
