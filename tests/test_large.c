/* test_large: the large tier.  src/pagerun.c: blocks above
 * hak_small_size_max() up to 32 MiB are runs of 4 KiB pages cut from regions
 * aligned to their size (256 MiB); src/huge.c: bigger blocks, a mapping each.
 *
 *   split/coalesce    in a fresh process (this binary run again, so that the
 *                     main thread's arena has no history): five consecutive
 *                     blocks A..E are adjacent; a free with no free
 *                     neighbour, a free right one, a free left one and both
 *                     moves "large_runs_coalesced" by 0, 1, 1 and 2; a
 *                     merged run is reused whole (smallest fit, no split) and
 *                     cut again to the page; usable sizes are the size
 *                     rounded up to 4096 exactly (malloc(300000) -> 303104)
 *   alignment         posix_memalign / aligned_alloc, every power of two from
 *                     8 KiB to 64 MiB, sizes 300 KiB, 5 MiB, 40 MiB
 *   realloc           in a fresh process: grow into the free run after the
 *                     block (same pointer, the rest of that run reused
 *                     exactly), grow past a live neighbour (moves), shrink in
 *                     place (the freed tail is the next block of its size;
 *                     next to a free run it merges with it); in-process: a
 *                     chain 8 MiB -> 40 MiB (huge) -> 8 MiB -> 200 KiB (slab)
 *                     -> 1 MiB keeping the contents at every step
 *   decay             HAKMEM_LARGE_DECAY_MS=50 (+ HAKMEM_PURGE_MODE=1): pages
 *                     free for longer are purged by the next large free
 *                     ("large_purged_decay_bytes"), calloc on them reads zero,
 *                     malloc never shows the old contents (MADV_DONTNEED);
 *                     HAKMEM_BACKGROUND_PURGE=1: purged with no allocator call
 *   steady state      random malloc/free loops (300 KiB..1 MiB x 32 slots,
 *                     1..8 MiB x 8 slots) make no system call after a warm-up
 *   byte bound        HAKMEM_LARGE_CACHE_MIB=16, 64 x 4 MiB freed: at most
 *                     16 MiB stays cached ("large_purged_bound_bytes");
 *                     malloc_trim -> 0
 *   threads           8 threads in a ring free each other's blocks;
 *                     "large_live" comes back; with a decay time of an hour,
 *                     the ring and 16 threads churning on 8 arenas purge
 *                     nothing by decay (no stale time stamp under contention)
 *   run cache         a freed run of up to 16 pages is the freeing thread's
 *                     next block of that page count or of up to a quarter
 *                     fewer pages (calloc zeroes it);
 *                     other page counts miss; 512 KiB at most; 80 KiB never;
 *                     all of it back to the arenas when the thread exits
 *   arena             a thread that adopts an exited thread's heap takes
 *                     its blocks from that heap's arena (same region);
 *                     blocks in run caches do not keep an arena's pages
 *                     when every other block is freed; an arena nobody uses
 *                     gives its pages back once another arena is used after
 *                     the decay time; a thread whose arena has no warm pages
 *                     takes another arena's (same region, no page faults)
 *   fork              50 forks while 2 threads churn large blocks: every
 *                     child can allocate, realloc and free large blocks
 *   ENOMEM            under RLIMIT_AS: NULL + ENOMEM once no region has room,
 *                     nothing counted live, a failed realloc keeps its block,
 *                     and allocation works again once the limit is raised
 *   fences            hardened: a freed block's guard page stays for the next
 *                     block of at most its size (no system call), which is
 *                     checked like any other; malloc_trim removes them
 *
 * The hardened flavor (libhakmem-hardened) puts a header before each block
 * and a canary and a guard page behind it, and holds freed blocks in a
 * quarantine: the cases about the page runs' exact layout (split/coalesce,
 * in-place realloc of runs, decay of adjacent runs) are skipped there, the
 * hardened realloc's own rule is checked instead of the runs', and the
 * quarantine is flushed (tu_quarantine_flush) before "large_live" and the
 * cache counters are read.
 *
 * The workloads that need a process of their own run this binary again
 * ("--child-workload NAME") with exactly the environment the case names;
 * they print what went wrong on stderr and exit non-zero.
 */
#include "test_util.h"

#include <limits.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <cmocka.h>

#define CHILD_ARG   "--child-workload"
#define ERR_CAP     (64 * 1024)
#define PAGE        ((size_t)4096)
#define REGION      ((uintptr_t)64 << 20)    /* regions are aligned to at least this */

static char g_err[ERR_CAP];
static char g_self[PATH_MAX];

/* ------------------------------------------------------------- helpers */

static size_t round_page(size_t n)
{
    return (n + PAGE - 1) & ~(PAGE - 1);
}

/* The hardened flavor: skip a case about the page runs' layout, saying why. */
static void skip_if_hardened(const char *why)
{
    if (tu_hardened()) {
        print_message("skipped in the hardened flavor: %s\n", why);
        skip();
    }
}

/* One number of hak_stats_json; a missing key fails the test. */
static uint64_t stat_u64(const char *key)
{
    int ok;
    uint64_t v = tu_stat(key, &ok);
    if (!ok)
        fail_msg("hak_stats_json lacks \"%s\": %s", key, tu_stats_text);
    return v;
}

/* Inside a child workload: a missing key ends the child. */
static uint64_t stat_c(const char *key)
{
    int ok;
    uint64_t v = tu_stat(key, &ok);
    if (!ok) {
        fprintf(stderr, "hak_stats_json lacks \"%s\": %s\n", key, tu_stats_text);
        exit(10);
    }
    return v;
}

#define ULL(x) ((unsigned long long)(x))

/* Child workloads: report on stderr and return 1 from the workload. */
#define CK(cond, ...)                                                       \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s (line %d): ", __func__, __LINE__);          \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            return 1;                                                       \
        }                                                                   \
    } while (0)

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A pattern on every page of a big block: the whole first and last page and
 * the first 64 bytes of every other page.  Cheaper than tu_fill on tens of
 * MiB, and a page that is lost, swapped with another or zeroed shows. */
static void fill_pages(void *p, size_t n, uint64_t seed)
{
    unsigned char *c = p;
    size_t np = (n + PAGE - 1) / PAGE;
    for (size_t j = 0; j < np; j++) {
        size_t off = j * PAGE, len = n - off < PAGE ? n - off : PAGE;
        if (j != 0 && j != np - 1 && len > 64)
            len = 64;
        tu_fill(c + off, len, tu_seed2(seed, j));
    }
}

/* The offset of the first byte that differs from fill_pages' pattern, or -1. */
static long check_pages(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *c = p;
    size_t np = (n + PAGE - 1) / PAGE;
    for (size_t j = 0; j < np; j++) {
        size_t off = j * PAGE, len = n - off < PAGE ? n - off : PAGE;
        if (j != 0 && j != np - 1 && len > 64)
            len = 64;
        long bad = tu_check(c + off, len, tu_seed2(seed, j));
        if (bad != -1)
            return (long)off + bad;
    }
    return -1;
}

/* How many 8-byte words of p[0..n) still hold tu_fill's pattern for seed. */
static size_t pattern_words_left(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *c = p;
    size_t hits = 0;
    for (size_t i = 0; i < n / 8; i++) {
        uint64_t w;
        memcpy(&w, c + i * 8, 8);
        hits += w == tu_word(seed, i);
    }
    return hits;
}

/* ----------------------------------------------------- child processes */

/* Run this binary again with argv = CHILD_ARG workload and exactly PATH plus
 * vars (NULL terminated) as its environment; it must exit 0 and print no
 * hakmem warning (an option that was not accepted). */
static void run_self(const char *const *vars, const char *workload, const char *what)
{
    char why[256];
    assert_true(g_self[0] != '\0');
    if (tu_run_self(g_self, CHILD_ARG, workload, vars, g_err, sizeof g_err, why, sizeof why) != 0)
        fail_msg("%s: %s; stderr:\n%s", what, why, g_err);
    if (strstr(g_err, "hakmem: warning"))
        fail_msg("%s: the options were not accepted: %s", what, g_err);
    if (g_err[0])
        print_message("%s", g_err);
}

/* ================================================ 1. split and coalesce */

/* free(p) of a block of usable size u: "large_runs_coalesced" must grow by
 * want (the free neighbours it merged with), its pages must stay resident
 * ("large_cached_bytes" + u: the default decay time is 500 ms and all of
 * this, about 5 MiB, is below the byte bound, HAKMEM_LARGE_CACHE_MIB=16 in
 * test_split_coalesce) and "large_live" must drop by one. */
static int free_expect(void *p, size_t u, const char *name, uint64_t want, const char *why)
{
    uint64_t c0 = stat_c("large_runs_coalesced"), d0 = stat_c("large_cached_bytes");
    uint64_t l0 = stat_c("large_live");
    free(p);
    uint64_t c1 = stat_c("large_runs_coalesced"), d1 = stat_c("large_cached_bytes");
    uint64_t l1 = stat_c("large_live");
    CK(c1 - c0 == want, "free(%s = %p): large_runs_coalesced grew by %llu, want %llu (%s)", name,
       p, ULL(c1 - c0), ULL(want), why);
    CK(d1 == d0 + u, "free(%s = %p, usable %zu): large_cached_bytes %llu -> %llu, want +%zu "
       "(freed pages stay resident)", name, p, u, ULL(d0), ULL(d1), u);
    CK(l1 + 1 == l0, "free(%s): large_live %llu -> %llu, want one less", name, ULL(l0), ULL(l1));
    return 0;
}

/* Each block of mask still holds its pattern. */
static int check_blocks(char *const *p, const size_t *u, const uint64_t *seed, unsigned mask,
                        const char *when)
{
    for (unsigned k = 0; k < 5; k++) {
        if (!(mask & (1u << k)))
            continue;
        long bad = tu_check(p[k], u[k], seed[k]);
        CK(bad == -1, "%s: block %c (%p, %zu B) lost its contents at offset %ld", when, 'A' + k,
           (void *)p[k], u[k], bad);
    }
    return 0;
}

static int wl_split(void)
{
    static const size_t sz[5] = { 300000, 1024 * 1024, 512 * 1024 + 1, 700 * 1024, 2048 * 1024 };
    char *p[5];
    size_t u[5];
    uint64_t seed[5];
    uint64_t live0 = stat_c("large_live"), split0 = stat_c("large_runs_split");
    uint64_t coal0 = stat_c("large_runs_coalesced");

    for (unsigned k = 0; k < 5; k++) {
        p[k] = malloc(sz[k]);
        CK(p[k] != NULL, "malloc(%zu) returned NULL", sz[k]);
        u[k] = malloc_usable_size(p[k]);
        CK(u[k] == round_page(sz[k]), "malloc(%zu): usable %zu, want exactly %zu (the size "
           "rounded up to 4096)", sz[k], u[k], round_page(sz[k]));
        seed[k] = tu_seed2(1, k);
        tu_fill(p[k], u[k], seed[k]);
    }
    CK(u[0] == 303104, "malloc(300000): usable %zu, want 303104 (74 pages)", u[0]);

    /* A fresh region: the first block follows the region header (a region
     * is aligned to its size, at least 64 MiB; its header holds a
     * descriptor per page, less than 1/64 of the region). */
    uintptr_t hdr = (uintptr_t)p[0] & (REGION - 1);
    CK(hdr % PAGE == 0 && hdr >= PAGE && hdr < REGION / 16,
       "first block of a fresh process at %p: offset %#lx past a 64 MiB boundary, want a page "
       "boundary just past the region header", (void *)p[0], (unsigned long)hdr);
    fprintf(stderr, "first block of a fresh region: %lu pages past its start\n",
            (unsigned long)(hdr / PAGE));
    for (unsigned k = 1; k < 5; k++)
        CK(p[k] == p[k - 1] + u[k - 1],
           "%c = %p, want %c + usable(%c) = %p (consecutive blocks from a fresh region are "
           "adjacent)", 'A' + k, (void *)p[k], 'A' + k - 1, 'A' + k - 1,
           (void *)(p[k - 1] + u[k - 1]));
    CK(stat_c("large_runs_split") - split0 == 5,
       "five blocks cut from the region's free run: large_runs_split grew by %llu, want 5",
       ULL(stat_c("large_runs_split") - split0));
    CK(stat_c("large_runs_coalesced") == coal0, "allocation coalesced runs");
    CK(stat_c("large_live") == live0 + 5, "large_live %llu, want %llu",
       ULL(stat_c("large_live")), ULL(live0 + 5));

    /* Neither neighbour free. */
    if (free_expect(p[1], u[1], "B", 0, "A and C are live"))
        return 1;
    if (check_blocks(p, u, seed, 0x1d, "after free(B)"))
        return 1;
    /* A: its left is the region header, its right B is free. */
    if (free_expect(p[0], u[0], "A", 1, "merges with B on its right; left of A is the header"))
        return 1;

    /* The merged run A+B is the smallest that fits A+B exactly: reused
     * whole (no split), with its resident pages. */
    uint64_t s0 = stat_c("large_runs_split"), r0 = stat_c("large_runs_reused");
    uint64_t d0 = stat_c("large_cached_bytes");
    char *m = malloc(u[0] + u[1]);
    CK(m == p[0], "malloc(usable(A) + usable(B) = %zu) = %p, want A = %p (the merged free run, "
       "smallest fit)", u[0] + u[1], (void *)m, (void *)p[0]);
    CK(malloc_usable_size(m) == u[0] + u[1], "usable %zu, want %zu", malloc_usable_size(m),
       u[0] + u[1]);
    CK(stat_c("large_runs_split") == s0, "an exact fit split a run (large_runs_split %llu -> %llu)",
       ULL(s0), ULL(stat_c("large_runs_split")));
    CK(stat_c("large_runs_reused") == r0 + 1,
       "the merged run's pages were resident: large_runs_reused %llu -> %llu, want +1", ULL(r0),
       ULL(stat_c("large_runs_reused")));
    CK(stat_c("large_cached_bytes") + u[0] + u[1] == d0,
       "large_cached_bytes %llu -> %llu, want -%zu", ULL(d0), ULL(stat_c("large_cached_bytes")),
       u[0] + u[1]);
    tu_fill(m, u[0] + u[1], 99);
    CK(tu_check(m, u[0] + u[1], 99) == -1, "merged block does not keep its contents");
    if (check_blocks(p, u, seed, 0x1c, "after writing A+B"))
        return 1;
    if (free_expect(m, u[0] + u[1], "A+B", 0, "header on the left, C live on the right"))
        return 1;

    /* Cut again to the page: A's size takes the front, B's the rest. */
    s0 = stat_c("large_runs_split");
    char *x = malloc(sz[0]);
    CK(x == p[0], "malloc(%zu) = %p, want A = %p", sz[0], (void *)x, (void *)p[0]);
    CK(stat_c("large_runs_split") == s0 + 1, "cutting A off the A+B run: large_runs_split +%llu, "
       "want +1", ULL(stat_c("large_runs_split") - s0));
    char *y = malloc(sz[1]);
    CK(y == p[1], "malloc(%zu) = %p, want B = %p (the rest of the run, exactly B's pages)", sz[1],
       (void *)y, (void *)p[1]);
    CK(stat_c("large_runs_split") == s0 + 1, "B took the rest exactly, yet a run was split");
    tu_fill(x, u[0], seed[0]);
    tu_fill(y, u[1], seed[1]);
    if (check_blocks(p, u, seed, 0x1f, "after A and B were allocated again"))
        return 1;

    if (free_expect(x, u[0], "A", 0, "B is live, the header is on its left"))
        return 1;
    if (free_expect(y, u[1], "B", 1, "A on the left is free, C on the right live"))
        return 1;
    if (free_expect(p[2], u[2], "C", 1, "A+B on the left is free, D on the right live"))
        return 1;
    if (check_blocks(p, u, seed, 0x18, "after freeing A, B, C"))
        return 1;
    if (free_expect(p[4], u[4], "E", 1, "D on the left live, the rest of the region on the right "
                    "free"))
        return 1;
    if (free_expect(p[3], u[3], "D", 2, "free runs on both sides"))
        return 1;

    /* One free run again: the sum of A..E starts at A, cut from the rest. */
    size_t all = u[0] + u[1] + u[2] + u[3] + u[4];
    s0 = stat_c("large_runs_split");
    char *z = malloc(all);
    CK(z == p[0], "malloc(%zu) after freeing A..E = %p, want A = %p (they merged into one run)",
       all, (void *)z, (void *)p[0]);
    CK(stat_c("large_runs_split") == s0 + 1, "large_runs_split +%llu, want +1",
       ULL(stat_c("large_runs_split") - s0));
    tu_fill(z, all, 5);
    CK(tu_check(z, all, 5) == -1, "the merged block does not keep its contents");
    if (free_expect(z, all, "A..E", 1, "merges with the rest of the region"))
        return 1;
    CK(stat_c("large_live") == live0, "large_live %llu at the end, want %llu",
       ULL(stat_c("large_live")), ULL(live0));
    CK(stat_c("large_runs_coalesced") - coal0 == 7,
       "large_runs_coalesced grew by %llu in all, want 7", ULL(stat_c("large_runs_coalesced") - coal0));
    return 0;
}

static void test_split_coalesce(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_LARGE_CACHE_MIB=16", NULL };
    skip_if_hardened("blocks are not adjacent runs of the size rounded to pages (header, canary "
                     "and guard page), and a free coalesces only when the quarantine lets go");
    run_self(env, "split", "split and coalesce (fresh process, HAKMEM_LARGE_CACHE_MIB=16)");
}

/* ======================================================== 2. alignment */

static void test_aligned_large(void **state)
{
    (void)state;
    static const size_t sizes[3] = { 300 * 1024, 5 * 1024 * 1024, 40 * 1024 * 1024 };
    tu_quarantine_flush();
    uint64_t live0 = stat_u64("large_live");

    for (size_t a = 8 * TU_KIB; a <= 64 * TU_MIB; a *= 2) {
        void *p[6];
        for (unsigned i = 0; i < 6; i++) {
            size_t n = sizes[i % 3];
            const char *fn = i < 3 ? "posix_memalign" : "aligned_alloc";
            if (i < 3) {
                int rc = posix_memalign(&p[i], a, n);
                if (rc != 0)
                    fail_msg("posix_memalign(%zu, %zu) = %d (%s)", a, n, rc, strerror(rc));
            } else {
                p[i] = aligned_alloc(a, n);
                if (!p[i])
                    fail_msg("aligned_alloc(%zu, %zu) returned NULL: %s", a, n, strerror(errno));
            }
            if (!tu_is_aligned(p[i], a))
                fail_msg("%s(%zu, %zu) = %p is not aligned to %zu", fn, a, n, p[i], a);
            size_t u = malloc_usable_size(p[i]);
            if (u < n)
                fail_msg("%s(%zu, %zu) = %p: malloc_usable_size %zu < size", fn, a, n, p[i], u);
            fill_pages(p[i], u, tu_seed2(a, i));
        }
        if (stat_u64("large_live") != live0 + 6)
            fail_msg("align %zu: large_live %llu, want %llu (six large blocks)", a,
                     ULL(stat_u64("large_live")), ULL(live0 + 6));
        for (unsigned i = 0; i < 6; i++) {
            long bad = check_pages(p[i], malloc_usable_size(p[i]), tu_seed2(a, i));
            if (bad != -1)
                fail_msg("align %zu: block %p of %zu B lost its contents at offset %ld (overlap?)",
                         a, p[i], sizes[i % 3], bad);
        }
        for (unsigned i = 0; i < 6; i++)
            free(p[i]);
        tu_quarantine_flush();
        if (stat_u64("large_live") != live0)
            fail_msg("align %zu: large_live %llu after freeing, want %llu", a,
                     ULL(stat_u64("large_live")), ULL(live0));
    }
    /* The aligned frees left the tier usable. */
    void *q = malloc(3 * TU_MIB);
    assert_non_null(q);
    fill_pages(q, 3 * TU_MIB, 7);
    assert_int_equal(check_pages(q, 3 * TU_MIB, 7), -1);
    free(q);
}

/* ========================================================== 3. realloc */

static int wl_inplace(void)
{
    const size_t mib = 1024 * 1024;
    uint64_t live0 = stat_c("large_live");
    char *a = malloc(mib), *b = malloc(mib), *c = malloc(mib);
    CK(a && b && c, "malloc(1 MiB) returned NULL");
    size_t ua = malloc_usable_size(a), ub = malloc_usable_size(b), uc = malloc_usable_size(c);
    CK(ua == mib && ub == mib && uc == mib, "usable sizes %zu %zu %zu, want 1 MiB", ua, ub, uc);
    CK(b == a + ua && c == b + ub, "A %p, B %p, C %p are not adjacent (fresh process)",
       (void *)a, (void *)b, (void *)c);
    tu_fill(a, ua, 11);
    tu_fill(b, ub, 12);
    tu_fill(c, uc, 13);
    free(b);

    /* Grow into half of the free run B left. */
    size_t g1 = ua + ub / 2;
    char *r = realloc(a, g1);
    CK(r == a, "realloc(A, %zu) = %p, want A = %p in place (the run after A is free)", g1,
       (void *)r, (void *)a);
    CK(malloc_usable_size(a) == round_page(g1), "grown A: usable %zu, want %zu",
       malloc_usable_size(a), round_page(g1));
    long bad = tu_check(a, ua, 11);
    CK(bad == -1, "grown in place, A lost its old contents at offset %ld", bad);
    tu_fill(a, g1, 14);
    CK(tu_check(c, uc, 13) == -1, "growing A overwrote C");
    /* The other half of B is exactly the next block of its size. */
    char *rest = malloc(ub - ub / 2);
    CK(rest == a + g1, "malloc(%zu) = %p, want the rest of B's run at %p", ub - ub / 2,
       (void *)rest, (void *)(a + g1));
    tu_fill(rest, ub - ub / 2, 15);
    CK(tu_check(a, g1, 14) == -1, "the block after A overwrote A");
    free(rest);

    /* Grow to take the whole of B's pages (no run left over). */
    uint64_t s0 = stat_c("large_runs_split");
    r = realloc(a, ua + ub);
    CK(r == a, "realloc(A, %zu) = %p, want A = %p in place", ua + ub, (void *)r, (void *)a);
    CK(malloc_usable_size(a) == ua + ub, "usable %zu, want %zu", malloc_usable_size(a), ua + ub);
    CK(stat_c("large_runs_split") == s0, "growing into a run of exactly the missing pages split it");
    bad = tu_check(a, g1, 14);
    CK(bad == -1, "grown in place, A lost its contents at offset %ld", bad);
    tu_fill(a, ua + ub, 16);

    /* C is live right after A now: growing must move, keeping everything. */
    r = realloc(a, ua + ub + PAGE);
    CK(r != NULL, "realloc(A, %zu) returned NULL", ua + ub + PAGE);
    CK(r != a, "realloc(A, %zu) = A in place, yet the block after it (C) is live", ua + ub + PAGE);
    bad = tu_check(r, ua + ub, 16);
    CK(bad == -1, "moved by realloc, A lost its contents at offset %ld", bad);
    CK(tu_check(c, uc, 13) == -1, "C changed when A moved");
    char *moved = r;

    /* Shrink in place: same pointer, the tail is the next block of its size. */
    char *s = malloc(2 * mib);
    CK(s != NULL, "malloc(2 MiB) failed");
    tu_fill(s, 2 * mib, 17);
    r = realloc(s, mib);
    CK(r == s, "realloc(S, 1 MiB) of a 2 MiB block = %p, want S = %p (shrinks in place)",
       (void *)r, (void *)s);
    CK(malloc_usable_size(s) == mib, "shrunk block: usable %zu, want 1 MiB", malloc_usable_size(s));
    bad = tu_check(s, mib, 17);
    CK(bad == -1, "shrunk in place, S lost its contents at offset %ld", bad);
    char *tail = malloc(mib);
    CK(tail == s + mib, "malloc(1 MiB) = %p, want the tail S shrank off at %p", (void *)tail,
       (void *)(s + mib));
    tu_fill(tail, mib, 18);
    CK(tu_check(s, mib, 17) == -1, "the tail block overwrote S");
    free(tail);

    /* Shrink next to a free run: the freed tail merges with it. */
    uint64_t c0 = stat_c("large_runs_coalesced");
    r = realloc(s, 300 * 1024);
    CK(r == s, "realloc(S, 300 KiB) = %p, want S = %p", (void *)r, (void *)s);
    size_t us = malloc_usable_size(s);
    CK(us == round_page(300 * 1024), "usable %zu, want %zu", us, round_page(300 * 1024));
    CK(stat_c("large_runs_coalesced") == c0 + 1,
       "the tail freed by the shrink did not merge with the free run after it "
       "(large_runs_coalesced +%llu, want +1)", ULL(stat_c("large_runs_coalesced") - c0));
    char *t2 = malloc(2 * mib - us);
    CK(t2 == s + us, "malloc(%zu) = %p, want %p: the merged tail", 2 * mib - us, (void *)t2,
       (void *)(s + us));
    tu_fill(t2, 2 * mib - us, 19);
    bad = tu_check(s, us, 17);
    CK(bad == -1, "S lost its contents at offset %ld", bad);

    free(t2);
    free(s);
    free(moved);
    free(c);
    CK(stat_c("large_live") == live0, "large_live %llu at the end, want %llu",
       ULL(stat_c("large_live")), ULL(live0));
    return 0;
}

static void test_realloc_in_place(void **state)
{
    (void)state;
    static const char *const env[] = { NULL };
    if (tu_hardened()) {
        /* The hardened realloc's own rule: in place at least while the
         * block's pages (with the canary byte) stay the same, else a new
         * block; the contents are kept either way. */
        const size_t mib = TU_MIB;
        char *a = malloc(mib - 1000);            /* header + size + canary: 1 MiB */
        assert_non_null(a);
        tu_fill(a, mib - 1000, 11);
        char *b = realloc(a, mib - 500);         /* the same pages, grown */
        assert_ptr_equal(b, a);
        assert_int_equal(malloc_usable_size(b), mib - 500);
        assert_int_equal(tu_check(b, mib - 1000, 11), -1);
        b = realloc(a, mib - 3000);              /* the same pages, shrunk */
        assert_ptr_equal(b, a);
        assert_int_equal(malloc_usable_size(b), mib - 3000);
        assert_int_equal(tu_check(b, mib - 3000, 11), -1);
        char *c = realloc(b, 400 * TU_KIB);      /* in place or moved */
        assert_non_null(c);
        assert_int_equal(malloc_usable_size(c), 400 * TU_KIB);
        assert_int_equal(tu_check(c, 400 * TU_KIB, 11), -1);
        /* beyond the block: moves, or grows in place where the pages after
         * its guard page are free (the fences case checks that) */
        char *d = realloc(c, 3 * mib);
        assert_non_null(d);
        assert_int_equal(malloc_usable_size(d), 3 * mib);
        assert_int_equal(tu_check(d, 400 * TU_KIB, 11), -1);
        free(d);
        return;
    }
    run_self(env, "inplace", "realloc in place (fresh process)");
}

/* run -> huge -> smaller huge -> slab -> run, contents kept at each step. */
static void test_realloc_across_tiers(void **state)
{
    (void)state;
    static const size_t steps[] = { 8 * TU_MIB, 40 * TU_MIB, 8 * TU_MIB, 200 * TU_KIB, TU_MIB };
    static const char *const tier[] = { "run", "huge", "huge (mremap)", "slab", "run" };
    const size_t smax = hak_small_size_max();
    tu_quarantine_flush();
    uint64_t live0 = stat_u64("large_live");
    size_t cur = steps[0];
    char *p = malloc(cur);
    assert_non_null(p);
    tu_fill(p, cur, 100);
    for (unsigned i = 1; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = steps[i], keep = n < cur ? n : cur;
        char *q = realloc(p, n);
        if (!q)
            fail_msg("realloc(%zu -> %zu) returned NULL", cur, n);
        if (malloc_usable_size(q) < n)
            fail_msg("realloc(%zu -> %zu): usable %zu", cur, n, malloc_usable_size(q));
        long bad = tu_check(q, keep, 100 + i - 1);
        if (bad != -1)
            fail_msg("realloc(%zu -> %zu, %s -> %s) = %p lost the contents at offset %ld", cur, n,
                     tier[i - 1], tier[i], (void *)q, bad);
        tu_quarantine_flush();
        uint64_t live = stat_u64("large_live");
        if (live != live0 + (n > smax))
            fail_msg("after realloc to %zu (%s): large_live %llu, want %llu", n, tier[i],
                     ULL(live), ULL(live0 + (n > smax)));
        tu_fill(q, n, 100 + i);
        p = q;
        cur = n;
    }
    assert_int_equal(tu_check(p, cur, 100 + 4), -1);
    free(p);
    tu_quarantine_flush();
    assert_int_equal(stat_u64("large_live"), live0);
}

/* ============================================================ 4. decay */

static int purge_mode_1(void)
{
    const char *m = getenv("HAKMEM_PURGE_MODE");
    return m && strcmp(m, "1") == 0;
}

/* HAKMEM_LARGE_DECAY_MS=50 in a fresh process.  P (8 MiB) is kept apart
 * from the block whose free triggers the decay (S, live, between them):
 * a free that merges with P's run would give it a new time stamp. */
static int wl_decay(void)
{
    const size_t big = 8 * 1024 * 1024;
    int mode1 = purge_mode_1();
    char *p = malloc(big), *s = malloc(300 * 1024), *g = malloc(300 * 1024);
    CK(p && s && g, "malloc failed");
    size_t ug = malloc_usable_size(g);
    CK(s == p + big && g == s + malloc_usable_size(s), "P %p, S %p, G %p not adjacent "
       "(fresh process)", (void *)p, (void *)s, (void *)g);
    tu_fill(p, big, 21);
    tu_fill(s, malloc_usable_size(s), 22);
    tu_fill(g, ug, 23);

    free(p);
    uint64_t cached0 = stat_c("large_cached_bytes"), decay0 = stat_c("large_purged_decay_bytes");
    CK(cached0 >= big, "after free(8 MiB) large_cached_bytes = %llu < 8 MiB", ULL(cached0));
    sleep_ms(200);
    /* Nothing has run: no purge yet (no background thread). */
    CK(stat_c("large_purged_decay_bytes") == decay0, "pages purged with no allocator call");
    free(g);                        /* a large free: the decay runs */
    uint64_t decay1 = stat_c("large_purged_decay_bytes"), cached1 = stat_c("large_cached_bytes");
    CK(decay1 - decay0 == big, "200 ms after free(8 MiB) with HAKMEM_LARGE_DECAY_MS=50, the next "
       "large free purged %llu bytes by decay, want %zu", ULL(decay1 - decay0), big);
    CK(cached1 == cached0 - big + ug, "large_cached_bytes %llu -> %llu, want %llu (P purged, G "
       "freed just now stays)", ULL(cached0), ULL(cached1), ULL(cached0 - big + ug));

    /* calloc on P's pages: zero, and not counted as resident reuse. */
    uint64_t reused0 = stat_c("large_runs_reused");
    char *q = calloc(1, big);
    CK(q == p, "calloc(8 MiB) = %p, want P's pages %p (the exact free run)", (void *)q, (void *)p);
    CK(stat_c("large_runs_reused") == reused0, "the purged pages counted as resident reuse");
    CK(tu_all_bytes(q, big, 0), "calloc(8 MiB) on purged pages: %zu words still hold the old "
       "pattern, not all zero", pattern_words_left(q, big, 21));
    tu_fill(q, big, 24);

    /* Again with malloc: never the old contents (MADV_DONTNEED: zero; with
     * MADV_FREE the kernel may not have taken them yet, which malloc may
     * show), and what is written reads back. */
    char *g2 = malloc(300 * 1024);
    CK(g2 == g, "malloc(300 KiB) = %p, want G's pages %p", (void *)g2, (void *)g);
    free(q);
    sleep_ms(200);
    decay0 = stat_c("large_purged_decay_bytes");
    free(g2);
    decay1 = stat_c("large_purged_decay_bytes");
    CK(decay1 - decay0 == big, "second round: purged %llu bytes by decay, want %zu",
       ULL(decay1 - decay0), big);
    char *m = malloc(big);
    CK(m == p, "malloc(8 MiB) = %p, want P's pages %p", (void *)m, (void *)p);
    if (!mode1)
        CK(pattern_words_left(m, big, 24) == 0 && tu_all_bytes(m, big, 0),
           "malloc(8 MiB) on pages purged with MADV_DONTNEED shows old contents (%zu words of the "
           "freed block's pattern)", pattern_words_left(m, big, 24));
    tu_fill(m, big, 25);
    long bad = tu_check(m, big, 25);
    CK(bad == -1, "malloc(8 MiB) on purged pages does not keep what was written (offset %ld)", bad);
    bad = tu_check(s, malloc_usable_size(s), 22);
    CK(bad == -1, "the live block S lost its contents at offset %ld (purged?)", bad);
    free(m);
    free(s);
    return 0;
}

/* HAKMEM_BACKGROUND_PURGE=1 HAKMEM_LARGE_DECAY_MS=50: purged while the
 * process makes no allocator call at all. */
static int wl_decay_bg(void)
{
    const size_t big = 8 * 1024 * 1024;
    char *p = malloc(big);
    CK(p != NULL, "malloc(8 MiB) failed");
    tu_fill(p, big, 31);
    free(p);
    tu_quarantine_flush();          /* hardened: p's block back in the core */
    uint64_t cached0 = stat_c("large_cached_bytes"), decay0 = stat_c("large_purged_decay_bytes");
    CK(cached0 >= big, "after free(8 MiB) large_cached_bytes = %llu < 8 MiB", ULL(cached0));
    sleep_ms(500);
    uint64_t cached1 = stat_c("large_cached_bytes"), decay1 = stat_c("large_purged_decay_bytes");
    CK(decay1 >= decay0 + big, "500 ms idle with HAKMEM_BACKGROUND_PURGE=1: "
       "large_purged_decay_bytes %llu -> %llu, want +8 MiB", ULL(decay0), ULL(decay1));
    CK(cached1 + big <= cached0, "500 ms idle with HAKMEM_BACKGROUND_PURGE=1: large_cached_bytes "
       "%llu -> %llu, want 8 MiB less", ULL(cached0), ULL(cached1));
    char *q = calloc(1, big);
    CK(q != NULL, "calloc(8 MiB) failed");
    CK(tu_all_bytes(q, big, 0), "calloc(8 MiB) after the background purge is not zero");
    free(q);
    return 0;
}

static void test_decay(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_LARGE_DECAY_MS=50", NULL };
    skip_if_hardened("needs three adjacent runs of exactly the sizes asked for");
    run_self(env, "decay", "HAKMEM_LARGE_DECAY_MS=50");
}

static void test_decay_madv_free(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_LARGE_DECAY_MS=50", "HAKMEM_PURGE_MODE=1", NULL };
    skip_if_hardened("needs three adjacent runs of exactly the sizes asked for");
    run_self(env, "decay", "HAKMEM_LARGE_DECAY_MS=50 HAKMEM_PURGE_MODE=1");
}

static void test_decay_background(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_BACKGROUND_PURGE=1", "HAKMEM_LARGE_DECAY_MS=50",
                                       NULL };
    run_self(env, "decay_bg", "HAKMEM_BACKGROUND_PURGE=1 HAKMEM_LARGE_DECAY_MS=50");
}

/* ===================================================== 5. steady state */

#define STEADY_SLOTS 32

typedef struct {
    char *p[STEADY_SLOTS];
    size_t n[STEADY_SLOTS];
    uint64_t seed[STEADY_SLOTS];
} slots_t;

/* steps of: a random slot; free its block (checked), or fill it with a new
 * one whose every page is written. */
static int steady_run(slots_t *t, tu_rng *r, unsigned nslots, size_t lo, size_t hi,
                      unsigned steps, uint64_t tag)
{
    for (unsigned i = 0; i < steps; i++) {
        unsigned k = (unsigned)tu_rng_range(r, 0, nslots - 1);
        if (t->p[k]) {
            long bad = check_pages(t->p[k], t->n[k], t->seed[k]);
            CK(bad == -1, "block %p (%zu B) lost its contents at offset %ld", (void *)t->p[k],
               t->n[k], bad);
            free(t->p[k]);
            t->p[k] = NULL;
            continue;
        }
        t->n[k] = tu_rng_range(r, lo, hi);
        t->p[k] = malloc(t->n[k]);
        CK(t->p[k] != NULL, "malloc(%zu) failed", t->n[k]);
        t->seed[k] = tu_seed2(tag, i);
        fill_pages(t->p[k], t->n[k], t->seed[k]);
    }
    return 0;
}

static int steady_case(size_t lo, size_t hi, unsigned nslots, uint64_t tag)
{
    static slots_t t;
    tu_rng r;
    memset(&t, 0, sizeof t);
    tu_rng_seed(&r, tag);
    /* hardened: large_syscalls counts the core's maps, unmaps and purges;
     * large_fence_calls the mprotect calls of its guard pages (fences), which
     * a block reuses where one fits: a few new ones are allowed, where no
     * freed run between fences is as large as the block */
    tu_quarantine_flush();
    uint64_t live0 = stat_c("large_live");
    double t0 = tu_now();
    if (steady_run(&t, &r, nslots, lo, hi, 5000, tag))
        return 1;
    double t1 = tu_now();
    uint64_t sys0 = stat_c("large_syscalls"), maps0 = stat_c("large_maps"), fc0 = stat_c("large_fence_calls");
    uint64_t dec0 = stat_c("large_purged_decay_bytes"), bnd0 = stat_c("large_purged_bound_bytes");
    if (steady_run(&t, &r, nslots, lo, hi, 20000, tag + 1))
        return 1;
    double t2 = tu_now();
    uint64_t sys1 = stat_c("large_syscalls"), maps1 = stat_c("large_maps"), fc1 = stat_c("large_fence_calls");
    uint64_t dec1 = stat_c("large_purged_decay_bytes"), bnd1 = stat_c("large_purged_bound_bytes");
    fprintf(stderr, "steady %zu..%zu KiB x %u slots: warm-up %.0f ms, 20000 steps %.0f ms, "
            "%llu system calls, %llu maps, %llu fence calls, purged %llu KiB by decay, %llu KiB by the bound\n",
            lo >> 10, hi >> 10, nslots, (t1 - t0) * 1e3, (t2 - t1) * 1e3, ULL(sys1 - sys0),
            ULL(maps1 - maps0), ULL(fc1 - fc0), ULL((dec1 - dec0) >> 10), ULL((bnd1 - bnd0) >> 10));
    CK(sys1 == sys0, "%zu..%zu B over %u slots: large_syscalls %llu -> %llu in 20000 steps after "
       "the warm-up, want none (maps +%llu, purged %llu B by decay, %llu B by the bound)", lo, hi,
       nslots, ULL(sys0), ULL(sys1), ULL(maps1 - maps0), ULL(dec1 - dec0), ULL(bnd1 - bnd0));
    /* hardened: a guard page set up and taken down per block would be
     * 40000 calls here */
    CK(fc1 - fc0 <= 100, "%zu..%zu B over %u slots: %llu fence calls in 20000 steps, want at most 100",
       lo, hi, nslots, ULL(fc1 - fc0));
    for (unsigned k = 0; k < nslots; k++) {
        if (!t.p[k])
            continue;
        CK(check_pages(t.p[k], t.n[k], t.seed[k]) == -1, "block %p lost its contents",
           (void *)t.p[k]);
        free(t.p[k]);
    }
    tu_quarantine_flush();
    CK(stat_c("large_live") == live0, "large_live %llu, want %llu", ULL(stat_c("large_live")),
       ULL(live0));
    return 0;
}

static int wl_steady(void)
{
    if (steady_case(300 * 1024, 1024 * 1024, 32, 51))
        return 1;
    return steady_case(1024 * 1024, 8 * 1024 * 1024, 8, 52);
}

static void test_steady_state_no_syscalls(void **state)
{
    (void)state;
    static const char *const env[] = { NULL };
    run_self(env, "steady", "steady state (fresh process, default options)");
}

/* ======================================================= 6. byte bound */

/* HAKMEM_LARGE_CACHE_MIB=16 in a fresh process: 64 blocks of 4 MiB, written
 * in full, freed: the last free leaves at most 16 MiB resident with no
 * further call; malloc_trim(0) purges the rest. */
static int wl_bound(void)
{
    enum { N = 64 };
    static char *p[N];
    const size_t sz = 4 * TU_MIB;
    const uint64_t floor = 16 * TU_MIB;

    uint64_t bound0 = stat_c("large_purged_bound_bytes"), live0 = stat_c("large_live");
    for (unsigned i = 0; i < N; i++) {
        p[i] = malloc(sz);
        CK(p[i] != NULL, "malloc(4 MiB) #%u returned NULL", i);
        tu_fill(p[i], sz, tu_seed2(60, i));       /* every page resident */
    }
    for (unsigned i = 0; i < N; i++) {
        long bad = tu_check(p[i], sz, tu_seed2(60, i));
        CK(bad == -1, "block %u (%p) lost its contents at offset %ld", i, (void *)p[i], bad);
    }
    for (unsigned i = 0; i < N; i++)
        free(p[i]);
    tu_quarantine_flush();          /* hardened: the last block back in the core */
    uint64_t cached = stat_c("large_cached_bytes"), bound1 = stat_c("large_purged_bound_bytes");
    fprintf(stderr, "64 x 4 MiB freed: %llu KiB stay cached, %llu MiB purged for the bound\n",
            ULL(cached >> 10), ULL((bound1 - bound0) >> 20));
    CK(stat_c("large_live") == live0, "large_live %llu, want %llu", ULL(stat_c("large_live")),
       ULL(live0));
    CK(cached <= floor, "right after freeing 64 x 4 MiB: large_cached_bytes = %llu, want <= "
       "16 MiB (HAKMEM_LARGE_CACHE_MIB=16, no live block)", ULL(cached));
    CK(bound1 - bound0 >= (uint64_t)N * sz - floor, "large_purged_bound_bytes grew by %llu, want "
       ">= %llu (256 MiB freed, at most 16 MiB kept)", ULL(bound1 - bound0),
       ULL((uint64_t)N * sz - floor));
    CK(malloc_trim(0) == 1 || cached == 0, "malloc_trim(0) with %llu B cached returned 0",
       ULL(cached));
    CK(stat_c("large_cached_bytes") == 0, "after malloc_trim(0): large_cached_bytes = %llu, "
       "want 0", ULL(stat_c("large_cached_bytes")));
    /* The tier still works, on purged pages. */
    char *q = calloc(1, sz);
    CK(q != NULL && tu_all_bytes(q, sz, 0), "calloc(4 MiB) after malloc_trim is not zero");
    free(q);
    return 0;
}

static void test_byte_bound(void **state)
{
    (void)state;
    TU_SKIP_IF_HAK_NAMES("ends with malloc_trim emptying the cache; the hak_-only library has "
                         "no malloc_trim");
    static const char *const env[] = { "HAKMEM_LARGE_CACHE_MIB=16", NULL };
    run_self(env, "bound", "byte bound, HAKMEM_LARGE_CACHE_MIB=16");
}

/* =================================================== 7. thread ring */

#define RING_THREADS 8
#define RING_MAX     256

typedef struct {
    void *p;
    size_t n;
    uint64_t seed;
} ritem_t;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned head, count;
    ritem_t it[RING_MAX];
} rqueue_t;

static rqueue_t g_q[RING_THREADS];
static unsigned g_ring_blocks;
static _Atomic int g_ring_errors;
static char g_ring_msg[512];

static void ring_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ring_error(const char *fmt, ...)
{
    if (atomic_fetch_add(&g_ring_errors, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_ring_msg, sizeof g_ring_msg, fmt, ap);
        va_end(ap);
    }
}

static void q_push(rqueue_t *q, ritem_t it)
{
    pthread_mutex_lock(&q->mu);
    q->it[(q->head + q->count) % RING_MAX] = it;   /* never full: RING_MAX >= blocks */
    q->count++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static int q_pop(rqueue_t *q, ritem_t *out, int wait)
{
    pthread_mutex_lock(&q->mu);
    while (wait && q->count == 0)
        pthread_cond_wait(&q->cv, &q->mu);
    int got = q->count > 0;
    if (got) {
        *out = q->it[q->head];
        q->head = (q->head + 1) % RING_MAX;
        q->count--;
    }
    pthread_mutex_unlock(&q->mu);
    return got;
}

static void ring_take(unsigned id, ritem_t it)
{
    long bad = tu_check(it.p, it.n, it.seed);
    if (bad != -1)
        ring_error("thread %u: block %p (%zu B) from thread %u lost its contents at offset %ld",
                   id, it.p, it.n, (id + RING_THREADS - 1) % RING_THREADS, bad);
    free(it.p);
}

static void *ring_main(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg, got = 0;
    rqueue_t *next = &g_q[(id + 1) % RING_THREADS], *mine = &g_q[id];
    tu_rng r;
    ritem_t it;

    tu_rng_seed(&r, 700 + id);
    for (unsigned k = 0; k < g_ring_blocks; k++) {
        it.n = tu_rng_range(&r, 300 * TU_KIB, 4 * TU_MIB);
        it.p = malloc(it.n);
        if (!it.p) {
            ring_error("thread %u: malloc(%zu) returned NULL", id, it.n);
            it.n = 0;               /* still passed on: the receiver counts it */
        }
        it.seed = tu_seed2(id, k);
        tu_fill(it.p, it.n, it.seed);
        q_push(next, it);
        while (q_pop(mine, &it, 0)) {
            ring_take(id, it);
            got++;
        }
    }
    while (got < g_ring_blocks) {
        q_pop(mine, &it, 1);
        ring_take(id, it);
        got++;
    }
    return NULL;
}

/* 0, or -1 with the first error in g_ring_msg. */
static int ring_workload(unsigned blocks)
{
    pthread_t t[RING_THREADS];
    g_ring_blocks = blocks < RING_MAX ? blocks : RING_MAX;
    atomic_store(&g_ring_errors, 0);
    g_ring_msg[0] = '\0';
    for (unsigned i = 0; i < RING_THREADS; i++) {
        pthread_mutex_init(&g_q[i].mu, NULL);
        pthread_cond_init(&g_q[i].cv, NULL);
        g_q[i].head = g_q[i].count = 0;
    }
    for (unsigned i = 0; i < RING_THREADS; i++)
        if (pthread_create(&t[i], NULL, ring_main, (void *)(uintptr_t)i) != 0) {
            snprintf(g_ring_msg, sizeof g_ring_msg, "pthread_create failed");
            for (unsigned j = 0; j < i; j++)
                pthread_cancel(t[j]);
            return -1;
        }
    for (unsigned i = 0; i < RING_THREADS; i++)
        pthread_join(t[i], NULL);
    return atomic_load(&g_ring_errors) ? -1 : 0;
}

static void test_thread_ring(void **state)
{
    (void)state;
    uint64_t live0 = stat_u64("large_live"), bytes0 = stat_u64("large_live_bytes");
    double t0 = tu_now();
    if (ring_workload(64) != 0)
        fail_msg("%s", g_ring_msg);
    print_message("8-thread ring, 512 blocks of 300 KiB..4 MiB: %.0f ms\n", (tu_now() - t0) * 1e3);
    if (stat_u64("large_live") != live0 || stat_u64("large_live_bytes") != bytes0)
        fail_msg("after the ring: large_live %llu (%llu B), want %llu (%llu B) as at the start",
                 ULL(stat_u64("large_live")), ULL(stat_u64("large_live_bytes")), ULL(live0),
                 ULL(bytes0));
    assert_int_equal(hak_check(), 0);
}

/* With a decay time of an hour nothing may be purged by decay, however the
 * threads contend for the arenas' locks.  In a fresh process: the 8-thread
 * ring, then 16 threads (two per arena) that each churn 3 slots of
 * 300 KiB..2.3 MiB for 400 ms.  A time stamp taken before waiting for an
 * arena's lock would be older than the runs freed meanwhile, and
 * "now - stamp" would wrap to a huge age. */
#define CHURN_THREADS 16

static atomic_int g_churn_stop;

static void *churn_main(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    char *slot[3] = { 0 };
    size_t len[3] = { 0 };
    uint64_t seed[3] = { 0 };
    tu_rng r;
    tu_rng_seed(&r, 900 + id);
    for (unsigned i = 0; !atomic_load(&g_churn_stop); i++) {
        unsigned k = (unsigned)tu_rng_range(&r, 0, 2);
        if (slot[k]) {
            /* Only the first and last 64 bytes: the point is many calls. */
            if (tu_check(slot[k], 64, seed[k]) != -1 ||
                tu_check(slot[k] + len[k] - 64, 64, seed[k] + 1) != -1)
                ring_error("churn thread %u: block %p (%zu B) lost its contents", id,
                           (void *)slot[k], len[k]);
            free(slot[k]);
            slot[k] = NULL;
            continue;
        }
        len[k] = tu_rng_range(&r, 300 * TU_KIB, 2300 * TU_KIB);
        slot[k] = malloc(len[k]);
        if (!slot[k]) {
            ring_error("churn thread %u: malloc(%zu) returned NULL", id, len[k]);
            break;
        }
        seed[k] = tu_seed2(id, i);
        tu_fill(slot[k], 64, seed[k]);
        tu_fill(slot[k] + len[k] - 64, 64, seed[k] + 1);
    }
    for (unsigned k = 0; k < 3; k++)
        free(slot[k]);
    return NULL;
}

static int wl_no_early_decay(void)
{
    uint64_t dec0 = stat_c("large_purged_decay_bytes"), live0 = stat_c("large_live");
    CK(ring_workload(64) == 0, "%s", g_ring_msg);
    uint64_t dec = stat_c("large_purged_decay_bytes");
    CK(dec == dec0, "8-thread ring: %llu KiB purged by decay with HAKMEM_LARGE_DECAY_MS=3600000, "
       "though no page has been free for more than a second", ULL((dec - dec0) >> 10));

    pthread_t t[CHURN_THREADS];
    atomic_store(&g_churn_stop, 0);
    atomic_store(&g_ring_errors, 0);
    for (unsigned i = 0; i < CHURN_THREADS; i++)
        CK(pthread_create(&t[i], NULL, churn_main, (void *)(uintptr_t)i) == 0, "pthread_create");
    sleep_ms(400);
    atomic_store(&g_churn_stop, 1);
    for (unsigned i = 0; i < CHURN_THREADS; i++)
        pthread_join(t[i], NULL);
    CK(atomic_load(&g_ring_errors) == 0, "%s", g_ring_msg);
    uint64_t dec2 = stat_c("large_purged_decay_bytes");
    CK(dec2 == dec, "16 threads on 8 arenas for 400 ms: %llu KiB purged by decay with "
       "HAKMEM_LARGE_DECAY_MS=3600000, though no page has been free for more than a second "
       "(a stale time stamp?)", ULL((dec2 - dec) >> 10));
    CK(stat_c("large_live") == live0, "large_live %llu, want %llu", ULL(stat_c("large_live")),
       ULL(live0));
    return 0;
}

static void test_no_early_decay_under_contention(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_LARGE_DECAY_MS=3600000", NULL };
    run_self(env, "no_early_decay", "threads contending, HAKMEM_LARGE_DECAY_MS=3600000");
}

/* ======================================================= 7b. run cache */

/* A freed run of up to 16 pages (64 KiB) waits in the freeing thread's run
 * cache for that thread's next block of the same page count; the cache
 * holds 512 KiB at most, and goes back to the arenas when the thread exits.
 * Runs in a thread of its own, so that its cache starts empty. */
struct rc_result {
    char msg[256];
};

#define RC_FAIL(res, ...)                                                   \
    do {                                                                    \
        snprintf((res)->msg, sizeof (res)->msg, __VA_ARGS__);               \
        return res;                                                         \
    } while (0)

static void *run_cache_thread(void *arg)
{
    struct rc_result *res = arg;
    const size_t n = 40000;                       /* 10 pages */
    uint64_t c0 = stat_c("large_run_cached"), h0 = stat_c("large_run_cache_hits");
    uint64_t live0 = stat_c("large_live");
    char *p = malloc(n);
    if (!p)
        RC_FAIL(res, "malloc(%zu) returned NULL", n);
    fill_pages(p, n, 11);
    if (stat_c("large_live") != live0 + 1)
        RC_FAIL(res, "malloc(%zu): large_live %llu, want %llu", n, ULL(stat_c("large_live")), ULL(live0 + 1));
    free(p);
    if (stat_c("large_run_cached") != c0 + 1 || stat_c("large_live") != live0)
        RC_FAIL(res, "free(malloc(%zu)): large_run_cached %llu, large_live %llu; want %llu and %llu",
                n, ULL(stat_c("large_run_cached")), ULL(stat_c("large_live")), ULL(c0 + 1), ULL(live0));
    /* the same page count: the cached block, zeroed by calloc */
    char *q = calloc(1, n - 1000);            /* 39000: 10 pages too */
    if (q != p)
        RC_FAIL(res, "calloc(1, %zu) = %p, want the cached block %p", n - 1000, (void *)q, (void *)p);
    if (!tu_all_bytes(q, round_page(n), 0))
        RC_FAIL(res, "calloc(1, %zu) on a cached block is not zeroed", n - 1000);
    if (stat_c("large_run_cache_hits") != h0 + 1 || stat_c("large_run_cached") != c0)
        RC_FAIL(res, "after the hit: large_run_cache_hits %llu, large_run_cached %llu; want %llu, %llu",
                ULL(stat_c("large_run_cache_hits")), ULL(stat_c("large_run_cached")), ULL(h0 + 1), ULL(c0));
    /* another page count misses: a block of its own, not the cached one */
    free(q);
    char *r = malloc(n + PAGE);
    if (!r || r == q)
        RC_FAIL(res, "malloc(%zu) = %p: want a new block, not the cached %zu-byte one %p", n + PAGE,
                (void *)r, n, (void *)q);
    fill_pages(r, n + PAGE, 12);
    free(r);
    /* a larger cached block, of up to a quarter more pages, serves a
     * request: 16 pages for 13 (all of it zeroed by calloc, all of it the
     * block's); not for 12 */
    char *y = malloc(16 * PAGE);
    if (!y)
        RC_FAIL(res, "malloc(64 KiB) returned NULL");
    fill_pages(y, 16 * PAGE, 13);
    free(y);
    char *z = malloc(12 * PAGE);
    if (!z || z == y)
        RC_FAIL(res, "malloc(12 pages) = %p: want a new block, not the cached 16-page one %p",
                (void *)z, (void *)y);
    char *w = calloc(1, 13 * PAGE - 100);
    if (w != y)
        RC_FAIL(res, "calloc(1, 13 pages - 100) = %p, want the cached 16-page block %p", (void *)w,
                (void *)y);
    if (!tu_all_bytes(w, 16 * PAGE, 0) || malloc_usable_size(w) != 16 * PAGE)
        RC_FAIL(res, "the cached 16-page block served for 13 pages: not all zero, or usable size "
                "%zu (want %zu)", malloc_usable_size(w), 16 * PAGE);
    fill_pages(z, 12 * PAGE, 14);
    free(z);
    free(w);
    /* at most 512 KiB: sixteen 64 KiB blocks freed, at most eight cached
     * (the two blocks above may hold 21 pages of it); 80 KiB (beyond 16
     * pages) never */
    char *big[16];
    for (int i = 0; i < 16; i++) {
        big[i] = malloc(64 * 1024);
        if (!big[i])
            RC_FAIL(res, "malloc(64 KiB) returned NULL");
        fill_pages(big[i], 64 * 1024, 20 + (uint64_t)i);
    }
    uint64_t c1 = stat_c("large_run_cached");
    for (int i = 0; i < 16; i++)
        free(big[i]);
    uint64_t c2 = stat_c("large_run_cached");
    if (c2 > c1 + 8 || c2 <= c1)
        RC_FAIL(res, "sixteen 64 KiB blocks freed: large_run_cached %llu -> %llu (want some, 512 KiB at "
                "most)", ULL(c1), ULL(c2));
    char *x = malloc(80 * 1024);
    if (!x)
        RC_FAIL(res, "malloc(80 KiB) returned NULL");
    free(x);
    if (stat_c("large_run_cached") != c2)
        RC_FAIL(res, "free of an 80 KiB block changed large_run_cached (%llu -> %llu)", ULL(c2),
                ULL(stat_c("large_run_cached")));
    if (stat_c("large_live") != live0)
        RC_FAIL(res, "large_live %llu after every block was freed, want %llu", ULL(stat_c("large_live")),
                ULL(live0));
    return NULL;
}

static void test_run_cache(void **state)
{
    (void)state;
    skip_if_hardened("no run cache: large blocks are fenced and quarantined");
    uint64_t c0 = stat_u64("large_run_cached"), live0 = stat_u64("large_live");
    struct rc_result res = { "" };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_cache_thread, &res), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    if (res.msg[0])
        fail_msg("%s", res.msg);
    /* the thread exited: its cache went back to the arenas */
    if (stat_u64("large_run_cached") != c0 || stat_u64("large_live") != live0)
        fail_msg("after the thread exited: large_run_cached %llu, large_live %llu; want %llu, %llu",
                 ULL(stat_u64("large_run_cached")), ULL(stat_u64("large_live")), ULL(c0), ULL(live0));
    unsigned bad = hak_check();
    if (bad)
        fail_msg("hak_check found %u problems after the run cache went back", bad);
}

/* A heap keeps its arena: a thread that adopts the heap of a thread that
 * exited takes its blocks from the same arena (its regions, its dirty
 * pages), not the next arena round robin. */
static void *arena_thread(void *arg)
{
    void **out = arg;
    char *p = malloc(200 * 1024);
    if (p) {
        fill_pages(p, 200 * 1024, 31);
        free(p);
    }
    *out = p;
    return NULL;
}

/* In a fresh process, so that the exited thread's heap is the only one
 * waiting (the heap that has waited longest is adopted first). */
static int wl_arena_follows(void)
{
    void *first[4], *second[4];
    /* each pair: a thread allocates and exits; the next one adopts its heap */
    for (int i = 0; i < 4; i++) {
        pthread_t t;
        CK(pthread_create(&t, NULL, arena_thread, &first[i]) == 0, "pthread_create failed");
        pthread_join(t, NULL);
        CK(pthread_create(&t, NULL, arena_thread, &second[i]) == 0, "pthread_create failed");
        pthread_join(t, NULL);
        CK(first[i] && second[i], "malloc(200 KiB) returned NULL in a thread");
    }
    /* 256 MiB regions, one arena each: the same region means the same arena */
    int same = 0;
    for (int i = 0; i < 4; i++)
        same += ((uintptr_t)first[i] >> 28) == ((uintptr_t)second[i] >> 28);
    CK(same == 4, "%d of 4 threads that adopted an exited thread's heap took its blocks from the same "
       "region (want all: the arena belongs to the heap)", same);
    return 0;
}

static void test_arena_follows_heap(void **state)
{
    (void)state;
    static const char *const env[] = { NULL };
    run_self(env, "arena_follows", "a thread that adopts an exited thread's heap uses its arena (fresh process)");
}

/* A program frees every large block it has, the last few into its run
 * cache: the arena's other pages go back at once (the cached blocks are
 * free ones to the arena's live count).  Fresh process, default options:
 * 2048 blocks of 40 KiB (80 MiB) written and freed; what stays cached (the
 * byte bound, HAKMEM_LARGE_CACHE_MIB=4, the run cache's 512 KiB, one
 * block) is far below 16 MiB.  Counting cached blocks as live kept 80 MiB. */
static int wl_last_free(void)
{
    enum { N = 2048 };
    const size_t n = 40 * 1024;
    static char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(n);
        CK(p[i] != NULL, "malloc(40 KiB) #%d returned NULL", i);
        fill_pages(p[i], n, (uint64_t)i);
    }
    for (int i = 0; i < N; i++)
        free(p[i]);
    tu_quarantine_flush();
    uint64_t kept = stat_c("large_cached_bytes");
    CK(kept <= 16 * TU_MIB, "80 MiB of 40 KiB blocks written and all freed: %llu MiB of their "
       "pages still kept (want at most 16)", ULL(kept >> 20));
    return 0;
}

static void test_run_cache_last_free_purges(void **state)
{
    (void)state;
    static const char *const env[] = { NULL };
    run_self(env, "last_free", "all freed, the last blocks into the run cache (fresh process)");
}

/* An arena nobody uses any more gives its pages back: thread A allocates
 * and frees 64 blocks of 256 KiB three times (a steady live set, whose
 * arena keeps twice its peak for the decay time) and exits; nobody adopts
 * its heap.  After the decay time, one large malloc/free by the main
 * thread, in its own arena, purges A's arena's pages.
 * HAKMEM_LARGE_DECAY_MS=200. */
static void *idle_arena_thread(void *arg)
{
    int *bad = arg;
    enum { N = 64 };
    char *p[N];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            p[i] = malloc(256 * 1024);
            if (!p[i]) {
                *bad = 1;
                return NULL;
            }
            fill_pages(p[i], 256 * 1024, (uint64_t)(round * N + i));
        }
        for (int i = 0; i < N; i++)
            free(p[i]);
    }
    tu_quarantine_flush();
    return NULL;
}

static int wl_idle_arena(void)
{
    char *m = malloc(300 * 1024);                /* the main thread's heap and arena */
    CK(m != NULL, "malloc(300 KiB) returned NULL");
    fill_pages(m, 300 * 1024, 1);
    free(m);
    int bad = 0;
    pthread_t t;
    CK(pthread_create(&t, NULL, idle_arena_thread, &bad) == 0, "pthread_create failed");
    CK(pthread_join(t, NULL) == 0 && !bad, "thread A: malloc(256 KiB) returned NULL");
    uint64_t kept0 = stat_c("large_cached_bytes");
    CK(kept0 >= 16 * TU_MIB, "thread A's arena kept %llu MiB after its three rounds; the case "
       "needs its steady 16 MiB kept (was the decay time exceeded?)", ULL(kept0 >> 20));
    sleep_ms(500);
    m = malloc(300 * 1024);
    CK(m != NULL, "malloc(300 KiB) returned NULL");
    fill_pages(m, 300 * 1024, 2);
    free(m);
    tu_quarantine_flush();
    uint64_t kept1 = stat_c("large_cached_bytes");
    CK(kept1 <= 2 * TU_MIB, "500 ms after thread A exited (decay time 200 ms), a large "
       "malloc/free in another arena: %llu MiB still kept (%llu MiB before)", ULL(kept1 >> 20),
       ULL(kept0 >> 20));
    return 0;
}

static void test_idle_arena_purged(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_LARGE_DECAY_MS=200", NULL };
    skip_if_hardened("freed blocks wait in the quarantine and fences split the runs");
    run_self(env, "idle_arena", "HAKMEM_LARGE_DECAY_MS=200 (fresh process)");
}

/* A thread whose arena has no resident free pages takes another arena's
 * instead of fresh ones: thread A writes and frees 16 blocks of 256 KiB
 * (4 MiB its arena keeps: twice its peak) and waits; thread B, with a heap
 * and an arena of its own, then allocates and writes 16 blocks of 256 KiB.
 * They must lie in A's region and cost B no page faults for their 1024
 * pages (RUSAGE_THREAD; a few for B's stack and heap are allowed).  Each
 * arena using only its own pages mapped a new region for B and faulted all
 * of them (bench_mstress: 20 MB of free pages in idle arenas at the peak). */
enum { WARM_N = 16, WARM_SIZE = 256 * 1024 };
static pthread_barrier_t g_warm_barrier;
static char *g_warm_a[WARM_N];

static void *warm_a_thread(void *arg)
{
    int *bad = arg;
    for (int i = 0; i < WARM_N; i++) {
        g_warm_a[i] = malloc(WARM_SIZE);
        if (!g_warm_a[i]) {
            *bad = 1;
            break;
        }
        fill_pages(g_warm_a[i], WARM_SIZE, (uint64_t)i);
    }
    for (int i = 0; i < WARM_N; i++)
        free(g_warm_a[i]);
    pthread_barrier_wait(&g_warm_barrier);   /* A's pages are free */
    pthread_barrier_wait(&g_warm_barrier);   /* B is done: A may exit */
    return NULL;
}

static long thread_minflt(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_minflt : -1;
}

static int wl_warm_other_arena(void)
{
    int bad = 0;
    pthread_t t;
    CK(pthread_barrier_init(&g_warm_barrier, NULL, 2) == 0, "pthread_barrier_init failed");
    CK(pthread_create(&t, NULL, warm_a_thread, &bad) == 0, "pthread_create failed");
    pthread_barrier_wait(&g_warm_barrier);
    CK(!bad, "thread A: malloc(256 KiB) returned NULL");
    /* B is this (main) thread: it has not allocated a large block yet, so
     * its heap takes the next arena */
    char *b[WARM_N];
    long f0 = thread_minflt();
    for (int i = 0; i < WARM_N; i++) {
        b[i] = malloc(WARM_SIZE);
        CK(b[i] != NULL, "thread B: malloc(256 KiB) #%d returned NULL", i);
        fill_pages(b[i], WARM_SIZE, (uint64_t)(100 + i));
    }
    long faults = thread_minflt() - f0;
    int same = 0;
    for (int i = 0; i < WARM_N; i++)
        same += ((uintptr_t)b[i] >> 28) == ((uintptr_t)g_warm_a[0] >> 28);
    for (int i = 0; i < WARM_N; i++)
        free(b[i]);
    pthread_barrier_wait(&g_warm_barrier);
    CK(pthread_join(t, NULL) == 0, "pthread_join failed");
    CK(same == WARM_N, "%d of %d blocks of thread B lie in the region of thread A's freed "
       "pages (want all: B's arena had no warm pages, A's had 4 MiB)", same, WARM_N);
    CK(faults >= 0 && faults < 256, "thread B faulted %ld pages writing 1024 pages of blocks "
       "(want under 256: they should be A's resident pages)", faults);
    return 0;
}

static void test_warm_pages_of_other_arena(void **state)
{
    (void)state;
    static const char *const env[] = { NULL };
    skip_if_hardened("freed blocks wait in the quarantine and fences split the runs");
    run_self(env, "warm_other_arena", "thread B takes thread A's warm pages (fresh process)");
}

/* ============================================================ 8. fork */

static atomic_int g_fork_stop;

static void *fork_churn(void *arg)
{
    tu_rng r;
    char *slot[4] = { 0 };
    size_t len[4] = { 0 };
    tu_rng_seed(&r, 800 + (uintptr_t)arg);
    while (!atomic_load(&g_fork_stop)) {
        unsigned k = (unsigned)tu_rng_range(&r, 0, 3);
        if (slot[k]) {
            if (slot[k][0] != (char)k || slot[k][len[k] - 1] != (char)k)
                ring_error("churn thread: block %p lost its contents", (void *)slot[k]);
            if (tu_rng_chance(&r, 1, 3)) {
                size_t n = tu_rng_range(&r, 300 * TU_KIB, 4 * TU_MIB);
                char *q = realloc(slot[k], n);
                if (q) {
                    slot[k] = q;
                    len[k] = n;
                    q[0] = q[n - 1] = (char)k;
                }
                continue;
            }
            free(slot[k]);
            slot[k] = NULL;
        } else {
            len[k] = tu_rng_range(&r, 300 * TU_KIB, 4 * TU_MIB);
            slot[k] = malloc(len[k]);
            if (slot[k])
                slot[k][0] = slot[k][len[k] - 1] = (char)k;
        }
    }
    for (unsigned k = 0; k < 4; k++)
        free(slot[k]);
    return NULL;
}

static void *fork_child_thread(void *arg)
{
    char *p = malloc(2 * TU_MIB);
    if (p) {
        tu_fill(p, 2 * TU_MIB, 3);
        if (tu_check(p, 2 * TU_MIB, 3) != -1) {
            free(p);
            return NULL;
        }
        free(p);
    }
    return p ? arg : NULL;
}

/* In the child: large malloc, realloc (in the runs, to huge and back), free,
 * and the same from a new thread (another arena). */
static int fork_child_work(unsigned i)
{
    alarm(5);
    char *p = malloc(TU_MIB);
    if (!p)
        return 2;
    tu_fill(p, TU_MIB, i);
    char *q = realloc(p, 3 * TU_MIB);
    if (!q || tu_check(q, TU_MIB, i) != -1)
        return 3;
    char *h = realloc(q, 40 * TU_MIB);
    if (!h || tu_check(h, TU_MIB, i) != -1)
        return 4;
    char *s = realloc(h, 500 * TU_KIB);
    if (!s || tu_check(s, 500 * TU_KIB, i) != -1)
        return 5;
    free(s);
    char *z = calloc(1, 2 * TU_MIB);
    if (!z || !tu_all_bytes(z, 2 * TU_MIB, 0))
        return 6;
    free(z);
    pthread_t t;
    void *ret = NULL;
    if (pthread_create(&t, NULL, fork_child_thread, (void *)1) != 0 || pthread_join(t, &ret) != 0)
        return 7;
    if (ret != (void *)1)
        return 8;
    return 0;
}

static void test_fork_with_threads(void **state)
{
    (void)state;
    pthread_t t[2];
    char st[128];
    atomic_store(&g_fork_stop, 0);
    atomic_store(&g_ring_errors, 0);
    g_ring_msg[0] = '\0';
    for (unsigned i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, fork_churn, (void *)(uintptr_t)i), 0);
    int failed = 0;
    for (unsigned i = 0; i < 50 && !failed; i++) {
        sleep_ms(2);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            failed = 1;
            snprintf(g_err, sizeof g_err, "fork #%u failed: %s", i, strerror(errno));
            break;
        }
        if (pid == 0)
            _exit(fork_child_work(i));
        int status = 0;
        if (tu_wait_timeout(pid, &status, 10.0) != 0) {
            failed = 1;
            snprintf(g_err, sizeof g_err, "child #%u did not finish in 10 s (deadlock?)", i);
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failed = 1;
            snprintf(g_err, sizeof g_err, "child #%u %s, want exit 0 (2 malloc, 3/4/5 realloc "
                     "to 3 MiB/40 MiB/500 KiB, 6 calloc, 7/8 thread; SIGALRM: hung)", i,
                     tu_status_str(status, st, sizeof st));
        }
    }
    atomic_store(&g_fork_stop, 1);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    if (failed)
        fail_msg("fork while 2 threads allocate large blocks: %s", g_err);
    if (atomic_load(&g_ring_errors))
        fail_msg("%s", g_ring_msg);
}

/* =========================================================== 9. ENOMEM */

/* Address space of this process, from /proc/self/statm (first field). */
static size_t vm_size(void)
{
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return (size_t)strtoull(buf, NULL, 10) * tu_page_size();
}

#define ENOMEM_TRIES 1024        /* blocks of 1 MiB: more than a region holds */

static int enomem_child(void *arg)
{
    (void)arg;
    static char *blk[ENOMEM_TRIES];
    struct rlimit old, lim;

    malloc_trim(0);                 /* no empty region or cached mapping left */
    char *keep = malloc(TU_MIB);    /* a region with room (mapped now, before the limit) */
    CK(keep != NULL, "malloc(1 MiB) failed before the limit");
    tu_fill(keep, TU_MIB, 90);
    CK(getrlimit(RLIMIT_AS, &old) == 0, "getrlimit: %s", strerror(errno));
    size_t vm = vm_size();
    CK(vm > 0, "cannot read /proc/self/statm");
    lim = old;
    lim.rlim_cur = vm + 16 * TU_MIB;  /* no new 64 MiB region, no 40 MiB mapping */
    CK(setrlimit(RLIMIT_AS, &lim) == 0, "setrlimit(RLIMIT_AS, %zu): %s", (size_t)lim.rlim_cur,
       strerror(errno));

    uint64_t live0 = stat_c("large_live"), regions0 = stat_c("large_regions");
    errno = 0;
    void *h = malloc(40 * TU_MIB);
    CK(h == NULL, "malloc(40 MiB) = %p with RLIMIT_AS 16 MiB above the address space", h);
    CK(errno == ENOMEM, "malloc(40 MiB) failed with errno %d (%s), want ENOMEM", errno,
       strerror(errno));

    unsigned k = 0;
    for (;;) {
        CK(k < ENOMEM_TRIES, "%u blocks of 1 MiB allocated under RLIMIT_AS without a failure",
           k);
        errno = 0;
        blk[k] = malloc(TU_MIB);
        if (!blk[k])
            break;
        tu_fill(blk[k], TU_MIB, tu_seed2(91, k));
        k++;
    }
    CK(errno == ENOMEM, "malloc(1 MiB) #%u returned NULL with errno %d (%s), want ENOMEM", k,
       errno, strerror(errno));
    CK(k > 0, "the region of the block allocated before the limit had no room for 1 MiB");
    uint64_t live = stat_c("large_live");
    CK(live == live0 + k, "%u blocks allocated, then NULL: large_live %llu -> %llu, want +%u "
       "(a failed allocation counted live?)", k, ULL(live0), ULL(live), k);
    CK(stat_c("large_regions") == regions0, "large_regions %llu -> %llu though every new region "
       "failed", ULL(regions0), ULL(stat_c("large_regions")));

    /* Failing reallocs keep their block. */
    errno = 0;
    char *r = realloc(keep, 40 * TU_MIB);
    CK(r == NULL && errno == ENOMEM, "realloc(1 MiB -> 40 MiB) under the limit = %p, errno %d",
       (void *)r, errno);
    r = realloc(keep, 2 * TU_MIB);
    CK(r == NULL || r == keep, "realloc(1 MiB -> 2 MiB) with no room moved to %p", (void *)r);
    if (r == keep)                  /* grew in place: fine, the pages after it were free */
        keep = r;
    CK(tu_check(keep, TU_MIB, 90) == -1, "a failed realloc changed the block");
    CK(stat_c("large_live") == live, "failed reallocs changed large_live");

    for (unsigned i = 0; i < k; i++) {
        CK(tu_check(blk[i], TU_MIB, tu_seed2(91, i)) == -1, "block %u lost its contents", i);
        free(blk[i]);
    }
    /* hardened: the last block back in the core (malloc_trim empties the
     * quarantine; tu_quarantine_flush's slab blocks may not fit the limit) */
    if (tu_hardened())
        malloc_trim(0);
    CK(stat_c("large_live") == live0, "large_live %llu after freeing, want %llu",
       ULL(stat_c("large_live")), ULL(live0));
    CK(setrlimit(RLIMIT_AS, &old) == 0, "setrlimit back: %s", strerror(errno));

    char *a = malloc(TU_MIB), *b = malloc(40 * TU_MIB);
    CK(a != NULL, "malloc(1 MiB) after raising the limit returned NULL");
    CK(b != NULL, "malloc(40 MiB) after raising the limit returned NULL");
    fill_pages(a, TU_MIB, 92);
    fill_pages(b, 40 * TU_MIB, 93);
    CK(check_pages(a, TU_MIB, 92) == -1 && check_pages(b, 40 * TU_MIB, 93) == -1,
       "blocks after raising the limit do not keep their contents");
    free(a);
    free(b);
    free(keep);
    fprintf(stderr, "ENOMEM after %u blocks of 1 MiB\n", k);
    return 0;
}

static void test_enomem(void **state)
{
    (void)state;
    char st[128];
    int status = 0;
    if (run_in_child(enomem_child, NULL, &status, g_err, sizeof g_err) != 0)
        fail_msg("fork failed: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("ENOMEM child %s, want exit 0; stderr:\n%s", tu_status_str(status, st, sizeof st),
                 g_err);
    print_message("%s", g_err);
}

/* ============================================ hardened: fences */

/* The hardened flavor's large blocks end less than a page before a fence, a
 * page the core keeps PROT_NONE while the block before it is live or free, and
 * which a later block of at most the freed run's size reuses with no system
 * call.  In a fresh process: one block makes one fence; after its free
 * (and the quarantine's), a smaller block ends at the same fence, with no
 * large-tier system call; that block is checked as any other (overflow by 1
 * byte and underflow by 1 byte stop free, a write on the fence faults, a
 * double free is named, realloc keeps the bytes); malloc_trim removes the
 * fences of free runs. */
struct fence_misuse { char *q; size_t n; int what; };

static int fence_misuse_child(void *arg)
{
    struct fence_misuse *m = arg;
    volatile char *q = m->q;
    switch (m->what) {
    case 0: q[m->n] = 'x'; free(m->q); break;                   /* overflow 1 B */
    case 1: q[-1] = 'x'; free(m->q); break;                     /* underflow 1 B */
    case 2: free(m->q); free(tu_launder(m->q)); break;           /* double free */
    case 3: q[round_page((uintptr_t)m->q + m->n + 1) - (uintptr_t)m->q] = 'x'; break;  /* the fence */
    }
    return 0;
}

static int fence_expect(char *q, size_t n, int what, int sig, const char *must)
{
    static const char *const names[] = { "overflow by 1 byte", "underflow by 1 byte", "double free",
                                         "a write on the fence" };
    struct fence_misuse m = { q, n, what };
    int status;
    char err[4096];
    CK(run_in_child(fence_misuse_child, &m, &status, err, sizeof err) == 0, "fork failed");
    CK(WIFSIGNALED(status) && WTERMSIG(status) == sig && (!must || strstr(err, must)),
       "%s of a block before a reused fence: status %#x, want signal %d%s%s; stderr: %s", names[what],
       status, sig, must ? " and a message with " : "", must ? must : "", err);
    return 0;
}

static int wl_fences(void)
{
    const size_t n1 = 600 * 1024, n2 = 500 * 1024;
    uint64_t f0 = stat_c("large_fences");
    char *p = malloc(n1);
    CK(p != NULL, "malloc(600 KiB) returned NULL");
    memset(p, 0x5a, n1);
    uint64_t f1 = stat_c("large_fences");
    uintptr_t fence = round_page((uintptr_t)p + n1 + 1);      /* after the canary's first byte */
    CK(f1 == f0 + 1, "malloc(600 KiB) made %llu fences, want 1", ULL(f1 - f0));
    free(p);
    tu_quarantine_flush();                          /* p's run back in the core */
    CK(stat_c("large_fences") == f1, "freeing the block took its fence down");
    uint64_t sys0 = stat_c("large_syscalls") + stat_c("large_fence_calls");
    char *q = malloc(n2);
    uint64_t sys1 = stat_c("large_syscalls") + stat_c("large_fence_calls");
    CK(q != NULL, "malloc(500 KiB) returned NULL");
    CK(round_page((uintptr_t)q + n2 + 1) == fence, "malloc(500 KiB) = %p does not end at the fence "
       "%#lx left by the freed 600 KiB block %p", (void *)q, (unsigned long)fence, (void *)p);
    CK(sys1 == sys0, "reusing a fence took %llu large-tier system calls, want 0", ULL(sys1 - sys0));
    CK(stat_c("large_fences") == f1, "reusing a fence made a new one");
    CK(malloc_usable_size(q) == n2, "malloc_usable_size = %zu, want %zu", malloc_usable_size(q), n2);
    memset(q, 0x33, n2);
    CK(hak_check() == 0, "hak_check found problems with a block before a reused fence");
    if (fence_expect(q, n2, 0, SIGABRT, "buffer overflow") || fence_expect(q, n2, 1, SIGABRT, "buffer underflow") ||
        fence_expect(q, n2, 2, SIGABRT, "double free") || fence_expect(q, n2, 3, SIGSEGV, NULL))
        return 1;
    char *r = realloc(q, n1 + PAGE);
    CK(r != NULL && tu_all_bytes(r, n2, 0x33), "realloc(500 KiB -> 604 KiB) lost the contents");
    free(r);
    CK(malloc_trim(0) == 1, "malloc_trim(0) with freed runs returned 0");
    CK(stat_c("large_fences") == f0, "after malloc_trim: %llu fences, want %llu (every run free)",
       ULL(stat_c("large_fences")), ULL(f0));
    CK(hak_check() == 0, "hak_check found problems after the fences went");
    /* A block whose fence has free pages after it grows in place: the
     * fence moves (two calls), the bytes stay, the new end is guarded. */
    char *g = malloc(300 * 1024);
    CK(g != NULL, "malloc(300 KiB) returned NULL");
    memset(g, 0x44, 300 * 1024);
    uint64_t fc0 = stat_c("large_fence_calls"), nf = stat_c("large_fences");
    char *g2 = realloc(g, 2 * 1024 * 1024);
    CK(g2 == g, "realloc(300 KiB -> 2 MiB) moved the block (%p -> %p) with free pages after its fence",
       (void *)g, (void *)g2);
    CK(stat_c("large_fence_calls") == fc0 + 2 && stat_c("large_fences") == nf,
       "growing in place: %llu fence calls and %llu -> %llu fences, want 2 calls and the same count",
       ULL(stat_c("large_fence_calls") - fc0), ULL(nf), ULL(stat_c("large_fences")));
    CK(tu_all_bytes(g2, 300 * 1024, 0x44), "realloc in place lost the contents");
    memset(g2, 0x55, 2 * 1024 * 1024);             /* every new page is writable */
    if (fence_expect(g2, 2 * 1024 * 1024, 3, SIGSEGV, NULL) || fence_expect(g2, 2 * 1024 * 1024, 0, SIGABRT, "buffer overflow"))
        return 1;
    CK(hak_check() == 0, "hak_check found problems after a block grew in place");
    free(g2);
    return 0;
}

static void test_hardened_fences(void **state)
{
    (void)state;
    static const char *const env[] = { NULL };
    if (!tu_hardened()) {
        print_message("skipped: the hardened flavor's guard pages\n");
        skip();
    }
    TU_SKIP_IF_HAK_NAMES("ends with malloc_trim; the hak_-only library has no malloc_trim");
    run_self(env, "fences", "fences (hardened, fresh process)");
}

/* ---------------------------------------------------------------- main */

static int child_main(const char *name)
{
    if (strcmp(name, "split") == 0)
        return wl_split();
    if (strcmp(name, "inplace") == 0)
        return wl_inplace();
    if (strcmp(name, "decay") == 0)
        return wl_decay();
    if (strcmp(name, "decay_bg") == 0)
        return wl_decay_bg();
    if (strcmp(name, "steady") == 0)
        return wl_steady();
    if (strcmp(name, "bound") == 0)
        return wl_bound();
    if (strcmp(name, "no_early_decay") == 0)
        return wl_no_early_decay();
    if (strcmp(name, "fences") == 0)
        return wl_fences();
    if (strcmp(name, "last_free") == 0)
        return wl_last_free();
    if (strcmp(name, "arena_follows") == 0)
        return wl_arena_follows();
    if (strcmp(name, "idle_arena") == 0)
        return wl_idle_arena();
    if (strcmp(name, "warm_other_arena") == 0)
        return wl_warm_other_arena();
    fprintf(stderr, "unknown child workload %s\n", name);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], CHILD_ARG) == 0)
        return child_main(argv[2]);

    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    g_self[n > 0 ? n : 0] = '\0';

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_coalesce),
        cmocka_unit_test(test_aligned_large),
        cmocka_unit_test(test_realloc_in_place),
        cmocka_unit_test(test_realloc_across_tiers),
        cmocka_unit_test(test_decay),
        cmocka_unit_test(test_decay_madv_free),
        cmocka_unit_test(test_decay_background),
        cmocka_unit_test(test_steady_state_no_syscalls),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_thread_ring),
        cmocka_unit_test(test_run_cache),
        cmocka_unit_test(test_arena_follows_heap),
        cmocka_unit_test(test_run_cache_last_free_purges),
        cmocka_unit_test(test_idle_arena_purged),
        cmocka_unit_test(test_warm_pages_of_other_arena),
        cmocka_unit_test(test_no_early_decay_under_contention),
        cmocka_unit_test(test_fork_with_threads),
        cmocka_unit_test(test_enomem),
        cmocka_unit_test(test_hardened_fences),
    };
    alarm(300);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
