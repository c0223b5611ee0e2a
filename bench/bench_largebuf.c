/* bench_largebuf: big buffers reused.  Keeps up to 20 buffers of 5..25 MiB
 * live; each step frees one slot's buffer and allocates a new one of a
 * random size there, writing it in full.  An allocator that faults the pages
 * of every new buffer in again spends most of its time in the kernel.
 *
 *   usage: bench_largebuf [steps] [seed]        (defaults 300, 42)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

#define SLOTS 20

int main(int argc, char **argv) {
    uint64_t steps = bench_arg_u64(argc, argv, 1, "steps", 300, 1, UINT64_MAX);
    uint64_t seed = bench_arg_u64(argc, argv, 2, "seed", 42, 0, UINT64_MAX);
    bench_rng r;
    bench_rng_seed(&r, seed);
    char *buf[SLOTS] = { 0 };
    double t0 = bench_now();
    for (uint64_t i = 0; i < steps; i++) {
        unsigned k = (unsigned)bench_rng_below(&r, SLOTS);
        free(buf[k]);
        size_t sz = (size_t)bench_rng_range(&r, 5u << 20, 25u << 20);
        buf[k] = malloc(sz);
        if (!buf[k]) { fprintf(stderr, "bench_largebuf: malloc(%zu) failed\n", sz); return 1; }
        memset(buf[k], (int)(i & 0xff), sz);
    }
    double t1 = bench_now();
    for (unsigned k = 0; k < SLOTS; k++) free(buf[k]);
    bench_print_result(steps, t1 - t0);
    return 0;
}
