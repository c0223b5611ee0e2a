/* bench_realloc: buffers that grow by appending.
 *   strings: 64 strings at a time, each grown from empty by appending 1..32
 *            bytes per realloc until it reaches a random 1..64 KiB, then
 *            freed and started again (realloc on every append);
 *   vectors: 8-byte elements pushed one at a time, capacity doubled by
 *            realloc when full, up to a random 1..4M elements (8..32 MiB).
 * Every appended byte/element is written, and every new vector capacity is
 * touched when realloc returns it (first and last byte and a byte per page,
 * bench_touch), so all memory allocated is written; the result is checked
 * at the end.
 * ops = number of realloc calls.
 *
 *   usage: bench_realloc [string_appends] [vectors] [seed]
 *          (defaults 2000000, 16, 42)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

#define NSTR 64

int main(int argc, char **argv) {
    uint64_t appends = bench_arg_u64(argc, argv, 1, "string_appends", 2000000, 1, UINT64_MAX);
    uint64_t nvec = bench_arg_u64(argc, argv, 2, "vectors", 16, 0, 1 << 20);
    uint64_t seed = bench_arg_u64(argc, argv, 3, "seed", 42, 0, UINT64_MAX);
    bench_rng r;
    bench_rng_seed(&r, seed);
    char *str[NSTR] = { 0 };
    size_t len[NSTR] = { 0 }, goal[NSTR];
    uint64_t ops = 0, check = 0;
    for (int i = 0; i < NSTR; i++) goal[i] = (size_t)bench_rng_range(&r, 1024, 65536);

    double t0 = bench_now();
    for (uint64_t n = 0; n < appends; n++) {
        unsigned i = (unsigned)bench_rng_below(&r, NSTR);
        size_t add = (size_t)bench_rng_range(&r, 1, 32);
        char *p = realloc(str[i], len[i] + add + 1);
        if (!p) { fprintf(stderr, "bench_realloc: realloc failed\n"); return 1; }
        ops++;
        memset(p + len[i], 'a' + (int)(len[i] % 26), add);
        len[i] += add;
        p[len[i]] = 0;
        str[i] = p;
        if (len[i] >= goal[i]) {
            check += (unsigned char)p[len[i] / 2];
            free(p);
            str[i] = NULL;
            len[i] = 0;
            goal[i] = (size_t)bench_rng_range(&r, 1024, 65536);
        }
    }
    for (uint64_t v = 0; v < nvec; v++) {
        size_t want = (size_t)bench_rng_range(&r, 1 << 20, 4 << 20), cap = 0, n = 0;
        uint64_t *vec = NULL;
        for (; n < want; n++) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                uint64_t *nv = realloc(vec, cap * sizeof *vec);
                if (!nv) { fprintf(stderr, "bench_realloc: realloc failed\n"); return 1; }
                vec = nv;
                ops++;
                /* the elements already there are kept; write the rest */
                bench_touch(vec + n, (cap - n) * sizeof *vec, (char)n);
            }
            vec[n] = n * 2654435761u;
        }
        for (size_t k = 0; k < n; k += 4099)
            if (vec[k] != k * 2654435761u) { fprintf(stderr, "bench_realloc: vector corrupted\n"); return 1; }
        free(vec);
    }
    double t1 = bench_now();
    for (int i = 0; i < NSTR; i++) free(str[i]);
    if (check == 0 && appends > 100000) { fprintf(stderr, "bench_realloc: no string completed\n"); return 1; }
    bench_print_result(ops, t1 - t0);
    return 0;
}
