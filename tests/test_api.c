/* test_api: every allocation function of hakmem and its edge cases.
 *
 * Linked against libhakmem, so malloc/free/... are hakmem's.  Where the C
 * standard leaves room, hakmem promises glibc's behaviour. */
#include "test_util.h"

#include <setjmp.h>
#include <cmocka.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Sizes that cross every threshold hakmem has (16, 1024, 32768, 64 KiB,
 * 1 MiB) plus a few in between. */
static const size_t threshold_sizes[] = {
    1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 100, 127, 128,
    129, 255, 256, 257, 511, 512, 513, 1000, 1023, 1024, 1025, 2047, 2048,
    2049, 4095, 4096, 4097, 8191, 8192, 8193, 16383, 16384, 16385, 20000,
    32767, 32768, 32769, 49152, 65535, 65536, 65537, 100000, 131072, 262145,
    524288, 1048575, 1048576, 1048577, 2 * 1048576 + 3, 4 * 1048576,
    8 * 1048576 - 1, 8 * 1048576,
};

static size_t huge(void)
{
    return tu_launder_size(SIZE_MAX);
}

/* Fill p[0..n) and check it right away (makes sure the memory is writable). */
static void fill_and_check(void *p, size_t n, uint64_t seed)
{
    tu_fill(p, n, seed);
    assert_int_equal(tu_check(p, n, seed), -1);
}

/* ------------------------------------------------------------- malloc */

static void test_malloc_basic(void **state)
{
    (void)state;
    size_t i;
    for (i = 0; i < N_ELEMS(threshold_sizes); i++) {
        size_t n = threshold_sizes[i];
        unsigned char *p = malloc(n);
        assert_non_null(p);
        assert_true(tu_is_aligned(p, 16));
        fill_and_check(p, n, n);
        free(p);
    }
}

static void test_malloc_zero(void **state)
{
    (void)state;
    enum { N = 200 };
    void *p[N];
    int i, j;
    for (i = 0; i < N; i++) {
        p[i] = malloc(tu_launder_size(0));
        assert_non_null(p[i]);
        assert_true(tu_is_aligned(p[i], 16));
    }
    for (i = 0; i < N; i++)
        for (j = i + 1; j < N; j++)
            assert_ptr_not_equal(p[i], p[j]);
    for (i = 0; i < N; i++)
        free(p[i]);
    /* and again after the frees */
    p[0] = malloc(0);
    assert_non_null(p[0]);
    free(p[0]);
}

static void test_free_null(void **state)
{
    (void)state;
    int i;
    for (i = 0; i < 10; i++)
        free(NULL);
    free_sized(NULL, 0);
    free_aligned_sized(NULL, 64, 0);
    hak_free(NULL);
    /* the allocator must still work afterwards */
    void *p = malloc(10);
    assert_non_null(p);
    free(p);
}

static void test_malloc_huge(void **state)
{
    (void)state;
    const size_t sizes[] = {
        SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, SIZE_MAX - (1u << 20),
        (size_t)PTRDIFF_MAX + 1ul, (size_t)PTRDIFF_MAX + 4096ul,
        SIZE_MAX / 2 + 17,
    };
    size_t i;
    for (i = 0; i < N_ELEMS(sizes); i++) {
        errno = 0;
        void *p = malloc(tu_launder_size(sizes[i]));
        assert_null(p);
        assert_int_equal(errno, ENOMEM);
    }
    /* Still usable after the failures. */
    void *p = malloc(100);
    assert_non_null(p);
    free(p);
}

struct blk { unsigned char *p; size_t n; };

static int blk_cmp(const void *x, const void *y)
{
    const struct blk *a = x, *b = y;
    return a->p < b->p ? -1 : a->p > b->p;
}

/* Many live blocks: no two overlap, all contents survive. */
static void test_malloc_no_overlap(void **state)
{
    (void)state;
    enum { N = 20000 };
    struct blk *b = calloc(N, sizeof *b);
    tu_rng r;
    size_t i;
    assert_non_null(b);
    tu_rng_seed(&r, 42);
    for (i = 0; i < N; i++) {
        size_t n;
        unsigned k = (unsigned)(tu_rng_next(&r) % 100);
        if (k < 85)
            n = tu_rng_range(&r, 1, 1024);
        else if (k < 98)
            n = tu_rng_range(&r, 1025, 64 * TU_KIB);
        else
            n = tu_rng_range(&r, 64 * TU_KIB + 1, 2 * TU_MIB);
        b[i].n = n;
        b[i].p = malloc(n);
        assert_non_null(b[i].p);
        tu_fill(b[i].p, n, i);
    }
    /* Free every third block and reallocate it, to mix in reused memory. */
    for (i = 0; i < N; i += 3) {
        assert_int_equal(tu_check(b[i].p, b[i].n, i), -1);
        free(b[i].p);
    }
    for (i = 0; i < N; i += 3) {
        b[i].p = malloc(b[i].n);
        assert_non_null(b[i].p);
        tu_fill(b[i].p, b[i].n, i);
    }
    for (i = 0; i < N; i++)
        assert_int_equal(tu_check(b[i].p, b[i].n, i), -1);
    /* Address ranges must be disjoint: sort by address and compare. */
    qsort(b, N, sizeof *b, blk_cmp);
    for (i = 1; i < N; i++) {
        if (b[i - 1].p + b[i - 1].n > b[i].p)
            fail_msg("blocks overlap: %p+%zu > %p", (void *)b[i - 1].p,
                     b[i - 1].n, (void *)b[i].p);
    }
    for (i = 0; i < N; i++)
        free(b[i].p);
    free(b);
}

/* Memory from free() is reused (the allocator is not just leaking). */
static void test_malloc_reuse(void **state)
{
    (void)state;
    size_t i;
    /* Allocate and free 1 GiB in total in 64 KiB and 1 MiB blocks: if nothing
     * were ever returned the process would balloon, but that is not an error
     * we can see directly; we check that it works and contents are right. */
    for (i = 0; i < 1024; i++) {
        size_t n = (i & 1) ? TU_MIB : 64 * TU_KIB;
        unsigned char *p = malloc(n);
        assert_non_null(p);
        p[0] = 1;
        p[n - 1] = 2;
        p[n / 2] = 3;
        assert_int_equal(p[0] + p[n - 1] + p[n / 2], 6);
        free(p);
    }
    for (i = 0; i < 200000; i++) {
        void *p = malloc(i % 512 + 1);
        assert_non_null(p);
        free(p);
    }
}

/* ------------------------------------------------------------- calloc */

static void calloc_zero_check(size_t n, int reps)
{
    unsigned char *p = malloc(n);
    void *q[16];
    int i;
    assert_non_null(p);
    memset(p, 0xAB, n);
    free(p);
    assert_true(reps <= 16);
    for (i = 0; i < reps; i++) {
        q[i] = calloc(1, n);
        assert_non_null(q[i]);
        assert_true(tu_is_aligned(q[i], 16));
        if (!tu_all_bytes(q[i], n, 0))
            fail_msg("calloc(1, %zu) returned non-zero memory", n);
        memset(q[i], 0xAB, n);
    }
    for (i = 0; i < reps; i++)
        free(q[i]);
    /* calloc(n, 1) as well, after the dirty frees above */
    for (i = 0; i < reps; i++) {
        q[i] = calloc(n, 1);
        assert_non_null(q[i]);
        if (!tu_all_bytes(q[i], n, 0))
            fail_msg("calloc(%zu, 1) returned non-zero memory after free", n);
    }
    for (i = 0; i < reps; i++)
        free(q[i]);
}

static void test_calloc_zeroed_small(void **state)
{
    (void)state;
    size_t n;
    for (n = 1; n <= 1024; n++)
        calloc_zero_check(n, 8);
}

static void test_calloc_zeroed_mid(void **state)
{
    (void)state;
    size_t n;
    for (n = 1025; n <= 64 * TU_KIB; n += 1021)
        calloc_zero_check(n, 6);
    calloc_zero_check(32767, 6);
    calloc_zero_check(32768, 6);
    calloc_zero_check(32769, 6);
    calloc_zero_check(64 * TU_KIB - 1, 6);
    calloc_zero_check(64 * TU_KIB, 6);
    calloc_zero_check(64 * TU_KIB + 1, 6);
}

static void test_calloc_zeroed_large(void **state)
{
    (void)state;
    const size_t sizes[] = {
        64 * TU_KIB + 1, 100000, 256 * TU_KIB, TU_MIB - 1, TU_MIB, TU_MIB + 1,
        3 * TU_MIB + 5, 8 * TU_MIB, 16 * TU_MIB,
    };
    size_t i;
    for (i = 0; i < N_ELEMS(sizes); i++)
        calloc_zero_check(sizes[i], 3);
    /* calloc of an array of structs */
    struct s { long a; double b; char c[40]; } *arr = calloc(100000, sizeof *arr);
    assert_non_null(arr);
    assert_true(tu_all_bytes(arr, 100000 * sizeof *arr, 0));
    free(arr);
}

static void test_calloc_overflow(void **state)
{
    (void)state;
    struct { size_t n, m; } cases[] = {
        { SIZE_MAX, 2 }, { 2, SIZE_MAX }, { SIZE_MAX / 2 + 1, 2 },
        { (size_t)1 << 32, (size_t)1 << 32 }, { SIZE_MAX, SIZE_MAX },
        { SIZE_MAX / 3 + 1, 3 }, { 65537, SIZE_MAX / 65536 },
        { 1, SIZE_MAX }, { (size_t)PTRDIFF_MAX + 1, 1 },
    };
    size_t i;
    for (i = 0; i < N_ELEMS(cases); i++) {
        errno = 0;
        void *p = calloc(tu_launder_size(cases[i].n), tu_launder_size(cases[i].m));
        if (p)
            fail_msg("calloc(%zu, %zu) did not fail", cases[i].n, cases[i].m);
        assert_int_equal(errno, ENOMEM);
    }
    /* zero sized callocs: unique, non-NULL, freeable */
    void *a = calloc(0, 10), *b = calloc(10, 0), *c = calloc(0, 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(b, c);
    assert_ptr_not_equal(a, c);
    free(a);
    free(b);
    free(c);
}

/* ------------------------------------------------------------ realloc */

static void test_realloc_null(void **state)
{
    (void)state;
    size_t i;
    for (i = 0; i < N_ELEMS(threshold_sizes); i++) {
        size_t n = threshold_sizes[i];
        unsigned char *p = realloc(NULL, n);
        assert_non_null(p);
        assert_true(tu_is_aligned(p, 16));
        assert_true(malloc_usable_size(p) >= n);
        fill_and_check(p, n, n + 7);
        free(p);
    }
    void *p = realloc(NULL, 0);
    assert_non_null(p);
    free(p);
}

static void test_realloc_zero(void **state)
{
    (void)state;
    size_t i;
    for (i = 0; i < N_ELEMS(threshold_sizes); i++) {
        void *p = malloc(threshold_sizes[i]);
        assert_non_null(p);
        /* glibc: realloc(p, 0) frees p and returns NULL */
        void *q = realloc(p, tu_launder_size(0));
        assert_null(q);
    }
    /* Many times over: if realloc(p, 0) leaked, 1 GiB would pile up. */
    for (i = 0; i < 1024; i++) {
        void *p = malloc(TU_MIB);
        assert_non_null(p);
        assert_null(realloc(p, tu_launder_size(0)));
    }
}

static void test_realloc_huge(void **state)
{
    (void)state;
    const size_t from[] = { 1, 100, 1024, 5000, 40000, 70000, 2 * TU_MIB };
    const size_t to[] = { SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1 };
    size_t i, j;
    for (i = 0; i < N_ELEMS(from); i++) {
        unsigned char *p = malloc(from[i]);
        assert_non_null(p);
        tu_fill(p, from[i], 99 + i);
        for (j = 0; j < N_ELEMS(to); j++) {
            errno = 0;
            void *q = realloc(tu_launder(p), tu_launder_size(to[j]));
            assert_null(q);
            assert_int_equal(errno, ENOMEM);
            assert_int_equal(tu_check(p, from[i], 99 + i), -1);
        }
        /* p is still a valid block: grow it for real, then free */
        p = realloc(p, from[i] + 100);
        assert_non_null(p);
        assert_int_equal(tu_check(p, from[i], 99 + i), -1);
        free(p);
    }
}

/* Grow a block through every size class boundary up to 8 MiB and shrink it
 * back down, checking that min(old, new) bytes survive each step. */
static void test_realloc_grow_shrink(void **state)
{
    (void)state;
    size_t i, cur = 0;
    unsigned char *p = NULL;
    uint64_t seed = 1;
    for (i = 0; i < N_ELEMS(threshold_sizes); i++) {
        size_t n = threshold_sizes[i];
        unsigned char *q = realloc(p, n);
        assert_non_null(q);
        assert_true(tu_is_aligned(q, 16));
        if (p && tu_check(q, cur < n ? cur : n, seed) != -1)
            fail_msg("realloc %zu -> %zu lost contents", cur, n);
        p = q;
        cur = n;
        seed++;
        tu_fill(p, cur, seed);
    }
    for (i = N_ELEMS(threshold_sizes); i-- > 0;) {
        size_t n = threshold_sizes[i];
        unsigned char *q = realloc(p, n);
        assert_non_null(q);
        assert_true(tu_is_aligned(q, 16));
        if (tu_check(q, cur < n ? cur : n, seed) != -1)
            fail_msg("realloc %zu -> %zu lost contents", cur, n);
        p = q;
        cur = n;
        seed++;
        tu_fill(p, cur, seed);
    }
    free(p);
}

/* Every pair of threshold sizes, both directions. */
static void test_realloc_all_pairs(void **state)
{
    (void)state;
    size_t i, j;
    for (i = 0; i < N_ELEMS(threshold_sizes); i++) {
        for (j = 0; j < N_ELEMS(threshold_sizes); j++) {
            size_t a = threshold_sizes[i], b = threshold_sizes[j];
            /* Keep the run time sane: skip large->large pairs except a few. */
            if (a > 2 * TU_MIB && b > 2 * TU_MIB && a != b)
                continue;
            unsigned char *p = malloc(a);
            assert_non_null(p);
            size_t keep = a < b ? a : b;
            /* Only the overlapping part matters; write just a little beyond
             * it to keep the run time low. */
            tu_fill(p, a, i * 1000 + j);
            /* a neighbour that must not be disturbed */
            unsigned char *nb = malloc(a);
            assert_non_null(nb);
            tu_fill(nb, a, 7777);
            unsigned char *q = realloc(p, b);
            assert_non_null(q);
            assert_true(tu_is_aligned(q, 16));
            if (tu_check(q, keep, i * 1000 + j) != -1)
                fail_msg("realloc %zu -> %zu lost contents", a, b);
            /* the new part is writable */
            memset(q, 0x5A, b);
            assert_true(malloc_usable_size(q) >= b);
            if (tu_check(nb, a, 7777) != -1)
                fail_msg("realloc %zu -> %zu clobbered a neighbour", a, b);
            free(q);
            free(nb);
        }
    }
}

/* A random walk of reallocs on several blocks at once. */
static void test_realloc_random_walk(void **state)
{
    (void)state;
    enum { NB = 32, STEPS = 20000 };
    unsigned char *p[NB] = { 0 };
    size_t n[NB] = { 0 };
    uint64_t seed[NB] = { 0 };
    tu_rng r;
    int s, k;
    tu_rng_seed(&r, 7);
    for (s = 0; s < STEPS; s++) {
        int i = (int)(tu_rng_next(&r) % NB);
        size_t m;
        unsigned k2 = (unsigned)(tu_rng_next(&r) % 1000);
        if (k2 < 800)
            m = tu_rng_range(&r, 1, 1024);
        else if (k2 < 980)
            m = tu_rng_range(&r, 1025, 70000);
        else
            m = tu_rng_range(&r, 70001, 3 * TU_MIB);
        unsigned char *q = realloc(p[i], m);
        assert_non_null(q);
        if (p[i]) {
            size_t keep = n[i] < m ? n[i] : m;
            if (tu_check(q, keep, seed[i]) != -1)
                fail_msg("step %d: realloc %zu -> %zu lost contents", s, n[i], m);
        }
        p[i] = q;
        n[i] = m;
        seed[i] = ((uint64_t)s << 8) | (uint64_t)i;
        tu_fill(q, m, seed[i]);
    }
    for (k = 0; k < NB; k++) {
        assert_int_equal(tu_check(p[k], n[k], seed[k]), -1);
        free(p[k]);
    }
}

static void test_reallocarray(void **state)
{
    (void)state;
    unsigned char *p = reallocarray(NULL, 10, 20);
    assert_non_null(p);
    assert_true(malloc_usable_size(p) >= 200);
    tu_fill(p, 200, 5);
    p = reallocarray(p, 1000, 100);
    assert_non_null(p);
    assert_int_equal(tu_check(p, 200, 5), -1);
    tu_fill(p, 100000, 6);
    struct { size_t n, m; } bad[] = {
        { SIZE_MAX, 2 }, { (size_t)1 << 32, (size_t)1 << 32 },
        { SIZE_MAX / 2 + 1, 2 }, { 3, SIZE_MAX / 3 + 1 },
    };
    size_t i;
    for (i = 0; i < N_ELEMS(bad); i++) {
        errno = 0;
        void *q = reallocarray(tu_launder(p), tu_launder_size(bad[i].n), tu_launder_size(bad[i].m));
        assert_null(q);
        assert_int_equal(errno, ENOMEM);
        assert_int_equal(tu_check(p, 100000, 6), -1);
    }
    /* too large without overflowing the product */
    errno = 0;
    assert_null(reallocarray(tu_launder(p), tu_launder_size(SIZE_MAX / 2), 2));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(tu_check(p, 100000, 6), -1);
    /* shrink */
    p = reallocarray(p, 10, 10);
    assert_non_null(p);
    assert_int_equal(tu_check(p, 100, 6), -1);
    free(p);
    /* overflow with NULL */
    errno = 0;
    assert_null(reallocarray(NULL, tu_launder_size(SIZE_MAX), 16));
    assert_int_equal(errno, ENOMEM);
}

/* ---------------------------------------------------------- alignment */

static void test_alignment_16(void **state)
{
    (void)state;
    enum { N = 64 };
    void *keep[N];
    size_t n;
    int k = 0, i;
    for (n = 0; n <= 4096; n++) {
        void *p = malloc(n);
        assert_non_null(p);
        if (!tu_is_aligned(p, 16))
            fail_msg("malloc(%zu) = %p is not 16-byte aligned", n, p);
        /* keep some blocks alive to get different positions in a slab */
        if (n % 7 == 0) {
            if (k == N) {
                for (i = 0; i < N; i++)
                    free(keep[i]);
                k = 0;
            }
            keep[k++] = p;
        } else {
            free(p);
        }
    }
    for (i = 0; i < k; i++)
        free(keep[i]);
    for (n = 4096; n <= 16 * TU_MIB; n = n * 5 / 4 + 3) {
        void *p = malloc(n), *c = calloc(1, n), *r = realloc(NULL, n);
        assert_non_null(p);
        assert_non_null(c);
        assert_non_null(r);
        if (!tu_is_aligned(p, 16) || !tu_is_aligned(c, 16) || !tu_is_aligned(r, 16))
            fail_msg("size %zu: %p %p %p not all 16-byte aligned", n, p, c, r);
        r = realloc(r, n / 3 + 1);
        assert_non_null(r);
        assert_true(tu_is_aligned(r, 16));
        free(p);
        free(c);
        free(r);
    }
}

/* -------------------------------------------------------- posix_memalign */

static void test_posix_memalign_invalid(void **state)
{
    (void)state;
    const size_t bad[] = {
        0, 1, 2, 3, 4, 5, 6, 7, 12, 24, 48, 100, 1000, 4097, 65535,
        (size_t)1 << 20 | 8, SIZE_MAX, SIZE_MAX / 2,
    };
    size_t i;
    void *sentinel = (void *)0x1234;
    for (i = 0; i < N_ELEMS(bad); i++) {
        void *out = sentinel;
        int rc = posix_memalign(&out, tu_launder_size(bad[i]), 64);
        if (rc != EINVAL)
            fail_msg("posix_memalign(alignment=%zu) returned %d, want EINVAL",
                     bad[i], rc);
        assert_ptr_equal(out, sentinel);
    }
}

static void test_posix_memalign_valid(void **state)
{
    (void)state;
    size_t a;
    for (a = sizeof(void *); a <= 4 * TU_MIB; a *= 2) {
        const size_t sizes[] = { 0, 1, a - 1, a, 3 * a };
        size_t i;
        void *ptrs[N_ELEMS(sizes)];
        for (i = 0; i < N_ELEMS(sizes); i++) {
            void *p = (void *)0x1;
            int rc = posix_memalign(&p, a, sizes[i]);
            if (rc != 0)
                fail_msg("posix_memalign(%zu, %zu) returned %d", a, sizes[i], rc);
            assert_non_null(p);
            if (!tu_is_aligned(p, a))
                fail_msg("posix_memalign(%zu, %zu) = %p misaligned", a, sizes[i], p);
            assert_true(malloc_usable_size(p) >= sizes[i]);
            tu_fill(p, sizes[i], a + i);
            ptrs[i] = p;
        }
        for (i = 0; i < N_ELEMS(sizes); i++) {
            if (tu_check(ptrs[i], sizes[i], a + i) != -1)
                fail_msg("posix_memalign(%zu, %zu) block corrupted", a, sizes[i]);
            free(ptrs[i]);
        }
    }
}

static void test_posix_memalign_huge(void **state)
{
    (void)state;
    const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1 };
    size_t i, a;
    for (i = 0; i < N_ELEMS(sizes); i++) {
        for (a = 8; a <= TU_MIB; a *= 16) {
            void *p = NULL;
            int rc = posix_memalign(&p, a, tu_launder_size(sizes[i]));
            if (rc != ENOMEM)
                fail_msg("posix_memalign(%zu, %zu) returned %d, want ENOMEM",
                         a, sizes[i], rc);
        }
    }
}

/* ------------------------------------------------------- aligned_alloc */

static void test_aligned_alloc(void **state)
{
    (void)state;
    size_t a;
    for (a = 1; a <= 4 * TU_MIB; a *= 2) {
        const size_t sizes[] = { 1, a, 3 * a, a + 1 };
        void *ptrs[N_ELEMS(sizes)];
        size_t i;
        for (i = 0; i < N_ELEMS(sizes); i++) {
            void *p = aligned_alloc(a, sizes[i]);
            if (!p)
                fail_msg("aligned_alloc(%zu, %zu) failed", a, sizes[i]);
            if (!tu_is_aligned(p, a) || !tu_is_aligned(p, 16 < a ? 16 : a))
                fail_msg("aligned_alloc(%zu, %zu) = %p misaligned", a, sizes[i], p);
            assert_true(malloc_usable_size(p) >= sizes[i]);
            tu_fill(p, sizes[i], a * 3 + i);
            ptrs[i] = p;
        }
        for (i = 0; i < N_ELEMS(sizes); i++) {
            assert_int_equal(tu_check(ptrs[i], sizes[i], a * 3 + i), -1);
            free(ptrs[i]);
        }
    }
}

static void test_aligned_alloc_invalid(void **state)
{
    (void)state;
    const size_t bad[] = { 0, 3, 5, 6, 12, 24, 100, 1000, 4097, SIZE_MAX };
    size_t i;
    for (i = 0; i < N_ELEMS(bad); i++) {
        errno = 0;
        void *p = aligned_alloc(tu_launder_size(bad[i]), 64);
        if (p)
            fail_msg("aligned_alloc(%zu, 64) = %p, want NULL", bad[i], p);
        assert_int_equal(errno, EINVAL);
    }
    /* huge size with a valid alignment: ENOMEM */
    errno = 0;
    assert_null(aligned_alloc(64, huge()));
    assert_int_equal(errno, ENOMEM);
}

/* ------------------------------------------------------------ memalign */

static void test_memalign(void **state)
{
    (void)state;
    size_t a;
    for (a = 1; a <= 4 * TU_MIB; a *= 2) {
        const size_t sizes[] = { 0, 1, a, 2 * a + 1 };
        size_t i;
        for (i = 0; i < N_ELEMS(sizes); i++) {
            void *p = memalign(a, sizes[i]);
            if (!p)
                fail_msg("memalign(%zu, %zu) failed", a, sizes[i]);
            if (!tu_is_aligned(p, a))
                fail_msg("memalign(%zu, %zu) = %p misaligned", a, sizes[i], p);
            assert_true(malloc_usable_size(p) >= sizes[i]);
            fill_and_check(p, sizes[i], a + i);
            free(p);
        }
    }
}

static void test_memalign_non_power_of_two(void **state)
{
    (void)state;
    /* glibc rounds a non power of two alignment up to the next power of two. */
    struct { size_t align, want; } cases[] = {
        { 3, 4 }, { 24, 32 }, { 48, 64 }, { 100, 128 }, { 1000, 1024 },
        { 5000, 8192 }, { 40000, 65536 }, { 3 * TU_MIB, 4 * TU_MIB },
    };
    size_t i;
    for (i = 0; i < N_ELEMS(cases); i++) {
        int rep;
        void *ptrs[8];
        for (rep = 0; rep < 8; rep++) {
            void *p = memalign(tu_launder_size(cases[i].align), 100);
            if (!p)
                fail_msg("memalign(%zu, 100) failed", cases[i].align);
            if (!tu_is_aligned(p, cases[i].want))
                fail_msg("memalign(%zu, 100) = %p not aligned to %zu",
                         cases[i].align, p, cases[i].want);
            memset(p, 1, 100);
            ptrs[rep] = p;
        }
        for (rep = 0; rep < 8; rep++)
            free(ptrs[rep]);
    }
    errno = 0;
    assert_null(memalign(64, huge()));
    assert_int_equal(errno, ENOMEM);
}

/* ------------------------------------------------------ valloc, pvalloc */

static void test_valloc(void **state)
{
    (void)state;
    size_t ps = tu_page_size();
    const size_t sizes[] = { 0, 1, 100, ps - 1, ps, ps + 1, 3 * ps, 100000, TU_MIB, 5 * TU_MIB };
    void *ptrs[N_ELEMS(sizes)];
    size_t i;
    for (i = 0; i < N_ELEMS(sizes); i++) {
        void *p = valloc(sizes[i]);
        assert_non_null(p);
        if (!tu_is_aligned(p, ps))
            fail_msg("valloc(%zu) = %p not page aligned", sizes[i], p);
        assert_true(malloc_usable_size(p) >= sizes[i]);
        tu_fill(p, sizes[i], i);
        ptrs[i] = p;
    }
    for (i = 0; i < N_ELEMS(sizes); i++) {
        assert_int_equal(tu_check(ptrs[i], sizes[i], i), -1);
        free(ptrs[i]);
    }
    errno = 0;
    assert_null(valloc(huge()));
    assert_int_equal(errno, ENOMEM);
}

static void test_pvalloc(void **state)
{
    (void)state;
    size_t ps = tu_page_size();
    const size_t sizes[] = { 0, 1, 100, ps - 1, ps, ps + 1, 3 * ps + 7, 100000, TU_MIB + 1 };
    size_t i;
    for (i = 0; i < N_ELEMS(sizes); i++) {
        size_t want = sizes[i] == 0 ? ps : (sizes[i] + ps - 1) / ps * ps;
        void *p = pvalloc(sizes[i]);
        assert_non_null(p);
        if (!tu_is_aligned(p, ps))
            fail_msg("pvalloc(%zu) = %p not page aligned", sizes[i], p);
        if (malloc_usable_size(p) < want)
            fail_msg("pvalloc(%zu): usable size %zu < %zu", sizes[i],
                     malloc_usable_size(p), want);
        /* the rounded up size is usable */
        fill_and_check(p, want, i);
        free(p);
    }
    errno = 0;
    assert_null(pvalloc(huge()));
    assert_int_equal(errno, ENOMEM);
}

/* ------------------------------------------------- malloc_usable_size */

static void test_malloc_usable_size(void **state)
{
    (void)state;
    size_t i;
    assert_int_equal(malloc_usable_size(NULL), 0);
    for (i = 0; i < N_ELEMS(threshold_sizes); i++) {
        enum { K = 4 };
        size_t n = threshold_sizes[i], k;
        unsigned char *p[K];
        size_t u[K];
        for (k = 0; k < K; k++) {
            p[k] = malloc(n);
            assert_non_null(p[k]);
            u[k] = malloc_usable_size(p[k]);
            if (u[k] < n)
                fail_msg("malloc_usable_size(malloc(%zu)) = %zu", n, u[k]);
            /* usable size is bounded by something sensible */
            if (u[k] > 2 * n + 64 * TU_KIB)
                fail_msg("malloc_usable_size(malloc(%zu)) = %zu is absurd", n, u[k]);
            tu_fill(p[k], u[k], n * 10 + k);
        }
        /* writing the full usable size did not clobber the neighbours */
        for (k = 0; k < K; k++) {
            if (tu_check(p[k], u[k], n * 10 + k) != -1)
                fail_msg("usable area of malloc(%zu) overlaps a neighbour", n);
            free(p[k]);
        }
    }
    /* calloc / realloc / aligned blocks */
    {
        unsigned char *c = calloc(3, 333);
        assert_non_null(c);
        assert_true(malloc_usable_size(c) >= 999);
        memset(c, 1, malloc_usable_size(c));
        c = realloc(c, 50000);
        assert_non_null(c);
        assert_true(malloc_usable_size(c) >= 50000);
        memset(c, 2, malloc_usable_size(c));
        free(c);
    }
    {
        size_t a;
        for (a = 16; a <= TU_MIB; a *= 4) {
            void *q[3];
            size_t uq[3], k;
            for (k = 0; k < 3; k++) {
                q[k] = aligned_alloc(a, a + 5);
                assert_non_null(q[k]);
                uq[k] = malloc_usable_size(q[k]);
                assert_true(uq[k] >= a + 5);
                tu_fill(q[k], uq[k], a + k);
            }
            for (k = 0; k < 3; k++) {
                assert_int_equal(tu_check(q[k], uq[k], a + k), -1);
                free(q[k]);
            }
        }
    }
}

/* ------------------------------------------------ free_sized & friends */

static void test_free_sized(void **state)
{
    (void)state;
    size_t i;
    for (i = 0; i < N_ELEMS(threshold_sizes); i++) {
        size_t n = threshold_sizes[i];
        void *p = malloc(n);
        assert_non_null(p);
        memset(p, 3, n);
        free_sized(p, n);
        void *c = calloc(1, n);
        assert_non_null(c);
        assert_true(tu_all_bytes(c, n, 0));
        free_sized(c, n);
    }
    /* many, so that a free_sized that did not free would be noticed by the
     * memory use (the allocation must at least keep working) */
    for (i = 0; i < 2000; i++) {
        void *p = malloc(TU_MIB);
        assert_non_null(p);
        free_sized(p, TU_MIB);
    }
}

static void test_free_aligned_sized(void **state)
{
    (void)state;
    size_t a;
    for (a = 1; a <= 4 * TU_MIB; a *= 2) {
        const size_t sizes[] = { 1, a, 3 * a };
        size_t i;
        for (i = 0; i < N_ELEMS(sizes); i++) {
            void *p = aligned_alloc(a, sizes[i]);
            assert_non_null(p);
            memset(p, 4, sizes[i]);
            free_aligned_sized(p, a, sizes[i]);
        }
    }
    for (a = 0; a < 2000; a++) {
        void *p = aligned_alloc(4096, TU_MIB);
        assert_non_null(p);
        free_aligned_sized(p, 4096, TU_MIB);
    }
}

/* ------------------------------------------------------ hak_ prefixed */

static void test_hak_prefixed(void **state)
{
    (void)state;
    size_t smax = hak_small_size_max();
    assert_true(smax >= 1024);
    assert_true(smax <= 16 * TU_MIB);

    /* hak_malloc / free and malloc / hak_free mix freely */
    unsigned char *p = hak_malloc(100);
    assert_non_null(p);
    assert_true(tu_is_aligned(p, 16));
    assert_true(hak_malloc_usable_size(p) >= 100);
    assert_int_equal(hak_malloc_usable_size(p), malloc_usable_size(p));
    tu_fill(p, 100, 1);
    p = hak_realloc(p, 5000);
    assert_non_null(p);
    assert_int_equal(tu_check(p, 100, 1), -1);
    p = realloc(p, 200000);
    assert_non_null(p);
    assert_int_equal(tu_check(p, 100, 1), -1);
    free(p);

    p = malloc(300);
    assert_non_null(p);
    assert_int_equal(hak_malloc_usable_size(p), malloc_usable_size(p));
    hak_free(p);

    /* around the small/large boundary */
    p = hak_malloc(smax);
    assert_non_null(p);
    assert_true(hak_malloc_usable_size(p) >= smax);
    fill_and_check(p, smax, 2);
    hak_free(p);
    p = hak_malloc(smax + 1);
    assert_non_null(p);
    assert_true(hak_malloc_usable_size(p) >= smax + 1);
    fill_and_check(p, smax + 1, 3);
    hak_free(p);

    assert_int_equal(hak_malloc_usable_size(NULL), 0);
    hak_free(NULL);

    p = hak_malloc(0);
    assert_non_null(p);
    hak_free(p);

    errno = 0;
    assert_null(hak_malloc(huge()));
    assert_int_equal(errno, ENOMEM);

    p = hak_calloc(100, 10);
    assert_non_null(p);
    assert_true(tu_all_bytes(p, 1000, 0));
    hak_free(p);
    errno = 0;
    assert_null(hak_calloc(huge(), 2));
    assert_int_equal(errno, ENOMEM);

    p = hak_reallocarray(NULL, 10, 10);
    assert_non_null(p);
    errno = 0;
    assert_null(hak_reallocarray(tu_launder(p), huge(), 2));
    assert_int_equal(errno, ENOMEM);
    assert_null(hak_realloc(p, 0));

    void *q = (void *)0x1;
    assert_int_equal(hak_posix_memalign(&q, 3, 10), EINVAL);
    assert_ptr_equal(q, (void *)0x1);
    assert_int_equal(hak_posix_memalign(&q, 4096, 10), 0);
    assert_true(tu_is_aligned(q, 4096));
    hak_free(q);

    q = hak_aligned_alloc(256, 1000);
    assert_non_null(q);
    assert_true(tu_is_aligned(q, 256));
    free(q);
    errno = 0;
    assert_null(hak_aligned_alloc(tu_launder_size(24), 10));
    assert_int_equal(errno, EINVAL);

    q = hak_memalign(24, 10);
    assert_non_null(q);
    assert_true(tu_is_aligned(q, 32));
    hak_free_sized(q, 10);

    q = hak_valloc(10);
    assert_non_null(q);
    assert_true(tu_is_aligned(q, tu_page_size()));
    hak_free(q);

    q = hak_pvalloc(10);
    assert_non_null(q);
    assert_true(tu_is_aligned(q, tu_page_size()));
    assert_true(hak_malloc_usable_size(q) >= tu_page_size());
    hak_free(q);

    q = hak_aligned_alloc(64, 128);
    assert_non_null(q);
    hak_free_aligned_sized(q, 64, 128);
}

/* ------------------------------------------------ threads (simple cases) */

struct thr_arg { void *ptrs[256]; size_t n[256]; };

static void *alloc_and_exit(void *v)
{
    struct thr_arg *a = v;
    int i;
    for (i = 0; i < 256; i++) {
        a->n[i] = (size_t)(i * 37 % 3000 + 1) * (i % 50 == 0 ? 300 : 1);
        a->ptrs[i] = malloc(a->n[i]);
        if (a->ptrs[i])
            tu_fill(a->ptrs[i], a->n[i], (uint64_t)i);
    }
    return NULL;
}

/* Blocks of a thread that has exited stay valid and can be freed later by
 * another thread; new threads can reuse the memory. */
static void test_thread_exit_blocks(void **state)
{
    (void)state;
    int round;
    for (round = 0; round < 20; round++) {
        struct thr_arg *a = calloc(1, sizeof *a);
        pthread_t t;
        int i;
        assert_non_null(a);
        assert_int_equal(pthread_create(&t, NULL, alloc_and_exit, a), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        for (i = 0; i < 256; i++) {
            assert_non_null(a->ptrs[i]);
            assert_int_equal(tu_check(a->ptrs[i], a->n[i], (uint64_t)i), -1);
            if (i % 2)
                free(a->ptrs[i]);
            else
                a->ptrs[i] = realloc(a->ptrs[i], a->n[i] * 2);
        }
        for (i = 0; i < 256; i += 2) {
            assert_non_null(a->ptrs[i]);
            assert_int_equal(tu_check(a->ptrs[i], a->n[i], (uint64_t)i), -1);
            free(a->ptrs[i]);
        }
        free(a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malloc_basic),
        cmocka_unit_test(test_malloc_zero),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_malloc_huge),
        cmocka_unit_test(test_malloc_no_overlap),
        cmocka_unit_test(test_malloc_reuse),
        cmocka_unit_test(test_calloc_zeroed_small),
        cmocka_unit_test(test_calloc_zeroed_mid),
        cmocka_unit_test(test_calloc_zeroed_large),
        cmocka_unit_test(test_calloc_overflow),
        cmocka_unit_test(test_realloc_null),
        cmocka_unit_test(test_realloc_zero),
        cmocka_unit_test(test_realloc_huge),
        cmocka_unit_test(test_realloc_grow_shrink),
        cmocka_unit_test(test_realloc_all_pairs),
        cmocka_unit_test(test_realloc_random_walk),
        cmocka_unit_test(test_reallocarray),
        cmocka_unit_test(test_alignment_16),
        cmocka_unit_test(test_posix_memalign_invalid),
        cmocka_unit_test(test_posix_memalign_valid),
        cmocka_unit_test(test_posix_memalign_huge),
        cmocka_unit_test(test_aligned_alloc),
        cmocka_unit_test(test_aligned_alloc_invalid),
        cmocka_unit_test(test_memalign),
        cmocka_unit_test(test_memalign_non_power_of_two),
        cmocka_unit_test(test_valloc),
        cmocka_unit_test(test_pvalloc),
        cmocka_unit_test(test_malloc_usable_size),
        cmocka_unit_test(test_free_sized),
        cmocka_unit_test(test_free_aligned_sized),
        cmocka_unit_test(test_hak_prefixed),
        cmocka_unit_test(test_thread_exit_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
