/* bench_mleak: a slowly growing live set (a leak) under churn; the figure
 * is the peak RSS (the shape of the mleak test).
 *
 * usage: bench_mleak [ops] [seed] [working_set] [leak_every]
 *        defaults    12000000 42  4096          240
 *
 * Shape: the random_mixed loop (working_set slots; each step picks a slot
 * at random and frees its block or puts a new one there), with sizes 90%
 * uniform in 16..512 bytes and 10% in 512..8192, each new block written
 * (bench_touch).  Every leak_every-th block that leaves a slot is not freed
 * but leaked: it stays allocated and is never used again.  So the leaked
 * bytes grow linearly over the run (about ops / (2 * leak_every) blocks:
 * 25,000 blocks, 16.7 MB, with the defaults), scattered among the blocks
 * that churn (about 2,000 live, 1.5 MB),
 * and the peak RSS shows how much memory the allocator keeps around them:
 * a leaked block pins the page, span or slab it is in.  The leaked and the
 * peak live bytes are printed on stderr.  Single-threaded, on the main
 * thread.
 *
 * ops = steps of the loop; the time is the loop's wall time.
 */
#include "bench_common.h"

static size_t ml_size(bench_rng *r)
{
    if (bench_rng_below(r, 10) < 9)
        return (size_t)bench_rng_range(r, 16, 512);
    return (size_t)bench_rng_range(r, 513, 8192);
}

int main(int argc, char **argv)
{
    uint64_t ops   = bench_arg_u64(argc, argv, 1, "ops", 12000000, 1, UINT64_MAX / 2);
    uint64_t seed  = bench_arg_u64(argc, argv, 2, "seed", 42, 0, UINT64_MAX);
    uint64_t ws    = bench_arg_u64(argc, argv, 3, "working_set", 4096, 1, (uint64_t)1 << 28);
    uint64_t every = bench_arg_u64(argc, argv, 4, "leak_every", 240, 1, UINT64_MAX);
    if (argc > 5) {
        fprintf(stderr, "usage: %s [ops] [seed] [working_set] [leak_every]\n", argv[0]);
        return 2;
    }
    char **slot = calloc(ws, sizeof *slot);
    size_t *size = calloc(ws, sizeof *size);
    if (!slot || !size)
        return 1;
    bench_rng r;
    bench_rng_seed(&r, seed);
    uint64_t released = 0, leaked_blocks = 0;
    size_t live = 0, peak_live = 0, leaked = 0;
    double start = bench_now();
    for (uint64_t i = 0; i < ops; i++) {
        uint64_t k = bench_rng_below(&r, ws);
        char *p = slot[k];
        if (p) {
            if (bench_peek(p) != (char)k) {
                fprintf(stderr, "%s: a block's byte was wrong\n", argv[0]);
                return 1;
            }
            if (++released % every == 0) {
                leaked += size[k];
                leaked_blocks++;
            } else {
                free(p);
                live -= size[k];
            }
            slot[k] = NULL;
        } else {
            size_t sz = ml_size(&r);
            p = malloc(sz);
            if (!p) {
                fprintf(stderr, "%s: malloc failed\n", argv[0]);
                return 1;
            }
            bench_touch(p, sz, (char)k);
            slot[k] = p;
            size[k] = sz;
            live += sz;
            if (live > peak_live)
                peak_live = live;
        }
    }
    double end = bench_now();
    for (uint64_t k = 0; k < ws; k++)
        free(slot[k]);
    free(slot);
    free(size);
    fprintf(stderr, "bench_mleak: leaked %" PRIu64 " blocks, %zu bytes; peak live %zu bytes"
                    " (leaks included)\n", leaked_blocks, leaked, peak_live);
    bench_print_result(ops, end - start);
    return 0;
}
