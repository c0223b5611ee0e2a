/* bench_random_mixed: the reference single-thread benchmark.
 *
 * usage: bench_random_mixed [iterations] [working_set] [seed] [min_size] [max_size]
 *        defaults            1000000      256           42     16         1024
 *
 * working_set slots start empty.  Each iteration picks a slot uniformly at
 * random: a full slot is freed and emptied, an empty one receives
 * malloc(uniform size in [min_size, max_size]) and the block is written:
 * its first and last byte and one byte per 4096-byte page in between
 * (bench_touch).  Only the loop is timed; ops = iterations.  The remaining
 * blocks are freed after the clock stops.
 */
#include "bench_common.h"

int main(int argc, char **argv)
{
    uint64_t iters = bench_arg_u64(argc, argv, 1, "iterations", 1000000, 1, UINT64_MAX / 2);
    uint64_t ws    = bench_arg_u64(argc, argv, 2, "working_set", 256, 1, (uint64_t)1 << 32);
    uint64_t seed  = bench_arg_u64(argc, argv, 3, "seed", 42, 0, UINT64_MAX);
    uint64_t minsz = bench_arg_u64(argc, argv, 4, "min_size", 16, 1, (uint64_t)1 << 40);
    uint64_t maxsz = bench_arg_u64(argc, argv, 5, "max_size", 1024, 1, (uint64_t)1 << 40);
    if (argc > 6) {
        fprintf(stderr, "usage: %s [iterations] [working_set] [seed] [min_size] [max_size]\n",
                argv[0]);
        return 2;
    }
    if (minsz > maxsz) {
        fprintf(stderr, "%s: min_size %" PRIu64 " > max_size %" PRIu64 "\n",
                argv[0], minsz, maxsz);
        return 2;
    }

    char **slots = calloc(ws, sizeof *slots);
    if (!slots) {
        fprintf(stderr, "%s: cannot allocate %" PRIu64 " slots\n", argv[0], ws);
        return 1;
    }

    bench_rng rng;
    bench_rng_seed(&rng, seed);

    double t0 = bench_now();
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t k = bench_rng_below(&rng, ws);
        char *p = slots[k];
        if (p) {
            free(p);
            slots[k] = NULL;
        } else {
            size_t sz = (size_t)bench_rng_range(&rng, minsz, maxsz);
            p = malloc(sz);
            if (!p) {
                fprintf(stderr, "%s: malloc(%zu) failed at iteration %" PRIu64 "\n",
                        argv[0], sz, i);
                return 1;
            }
            bench_touch(p, sz, (char)i);
            slots[k] = p;
        }
    }
    double t1 = bench_now();

    for (uint64_t k = 0; k < ws; k++)
        free(slots[k]);
    free(slots);

    bench_print_result(iters, t1 - t0);
    return 0;
}
