/* bench_mstress: threads created and exited in waves, each leaving blocks
 * behind for threads of later waves to free (the shape of mimalloc's stress
 * test).
 *
 * usage: bench_mstress [threads] [waves] [ops_per_thread] [seed]
 *        defaults      4         50      25000            42
 *
 * Shape: W waves one after another; each wave starts T threads and waits
 * for them to exit.  A thread does ops_per_thread operations on a private
 * array of LOCAL slots and on a shared array of SHARED slots:
 *
 *   - 70%: replace a random private slot (free its block, allocate a new
 *     one);
 *   - 30%: allocate a block and swap it into a random shared slot with an
 *     atomic exchange, freeing the block that was there, which any thread
 *     of this wave or of an earlier one may have allocated.
 *
 * Sizes: 95% uniform in 8..512 bytes, 4.5% in 512..16 KiB, 0.5% in
 * 16 KiB..256 KiB.  Each new block gets its first and last byte and one
 * byte per page written (bench_touch).  When it is done a thread frees its
 * private blocks and exits; its blocks in the shared array stay, to be
 * freed by later threads (so the allocator must take back blocks of threads
 * that have exited).  The main thread frees what is left in the shared
 * array at the end (not timed).
 *
 * ops = waves * threads * ops_per_thread, each a malloc and a free; the time
 * is the wall time of all the waves, thread creation and exit included.
 */
#include "bench_common.h"

#include <pthread.h>
#include <stdatomic.h>

#define LOCAL 500
#define SHARED 4000

static _Atomic(char *) shared[SHARED];

struct worker {
    pthread_t tid;
    uint64_t ops, seed;
    int failed;
    char pad[64];
};

static size_t ms_size(bench_rng *r)
{
    uint64_t c = bench_rng_below(r, 1000);
    if (c < 950)
        return (size_t)bench_rng_range(r, 8, 512);
    if (c < 995)
        return (size_t)bench_rng_range(r, 513, 16384);
    return (size_t)bench_rng_range(r, 16385, 262144);
}

/* The first byte of a block is 0x5a; checked before it is freed. */
static char *new_block(bench_rng *r)
{
    size_t sz = ms_size(r);
    char *p = malloc(sz);
    if (p)
        bench_touch(p, sz, 0x5a);
    return p;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    bench_rng r;
    bench_rng_seed(&r, w->seed);
    char *local[LOCAL] = { 0 };
    for (uint64_t i = 0; i < w->ops; i++) {
        char *p = new_block(&r);
        if (!p) {
            w->failed = 1;
            break;
        }
        char *old;
        if (bench_rng_below(&r, 10) < 7) {
            uint64_t k = bench_rng_below(&r, LOCAL);
            old = local[k];
            local[k] = p;
        } else {
            old = atomic_exchange(&shared[bench_rng_below(&r, SHARED)], p);
        }
        if (old) {
            if (bench_peek(old) != 0x5a)
                w->failed = 1;
            free(old);
        }
    }
    for (unsigned k = 0; k < LOCAL; k++)
        free(local[k]);
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t nthreads = bench_arg_u64(argc, argv, 1, "threads", 4, 1, 1024);
    uint64_t waves    = bench_arg_u64(argc, argv, 2, "waves", 50, 1, UINT64_MAX >> 32);
    uint64_t ops      = bench_arg_u64(argc, argv, 3, "ops_per_thread", 25000, 1, UINT64_MAX >> 32);
    uint64_t seed     = bench_arg_u64(argc, argv, 4, "seed", 42, 0, UINT64_MAX);
    if (argc > 5) {
        fprintf(stderr, "usage: %s [threads] [waves] [ops_per_thread] [seed]\n", argv[0]);
        return 2;
    }
    struct worker *w = calloc(nthreads, sizeof *w);
    if (!w)
        return 1;
    int failed = 0;
    double start = bench_now();
    for (uint64_t v = 0; v < waves && !failed; v++) {
        for (uint64_t t = 0; t < nthreads; t++) {
            w[t] = (struct worker){ .ops = ops, .seed = seed + v * nthreads + t };
            int rc = pthread_create(&w[t].tid, NULL, worker_main, &w[t]);
            if (rc != 0) {
                fprintf(stderr, "%s: pthread_create: %s\n", argv[0], strerror(rc));
                return 1;
            }
        }
        for (uint64_t t = 0; t < nthreads; t++) {
            pthread_join(w[t].tid, NULL);
            failed |= w[t].failed;
        }
    }
    double end = bench_now();
    for (unsigned k = 0; k < SHARED; k++)
        free(atomic_load(&shared[k]));
    free(w);
    if (failed) {
        fprintf(stderr, "%s: a block's byte was wrong or malloc failed\n", argv[0]);
        return 1;
    }
    bench_print_result(waves * nthreads * ops, end - start);
    return 0;
}
