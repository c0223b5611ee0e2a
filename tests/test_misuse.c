/* test_misuse: hakmem detects invalid frees and reallocs and aborts.
 *
 * Each case runs in a forked child with stderr redirected to a pipe.  Before
 * the misuse the child writes the "%p" form of the bad pointer into a shared
 * page.  The parent asserts that the child died of SIGABRT and that its
 * stderr mentions "hakmem" and that address. */
#include "test_util.h"

#include <setjmp.h>
#include <cmocka.h>

/* The same, and stderr must also contain `must` (if not NULL). */
static void expect_abort_msg(int (*fn)(void *), void *arg, const char *what, const char *must)
{
    tu_shared *sh = tu_shared_page();
    char err[4096], st[128];
    int status = 0;

    tu_shared_reset();
    if (run_in_child(fn, arg, &status, err, sizeof err) != 0)
        fail_msg("%s: fork failed: %s", what, strerror(errno));
    if (sh->addr[0] == '\0')
        fail_msg("%s: the child did not get as far as the misuse (%s); stderr: %s",
                 what, tu_status_str(status, st, sizeof st), err);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) {
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            fail_msg("%s on %s was not detected (the child carried on and exited 0); stderr: %s",
                     what, sh->addr, err);
        fail_msg("%s on %s: child %s, want SIGABRT; stderr: %s", what, sh->addr,
                 tu_status_str(status, st, sizeof st), err);
    }
    if (!strstr(err, "hakmem"))
        fail_msg("%s on %s: stderr does not mention \"hakmem\": \"%s\"", what, sh->addr, err);
    if (!strstr(err, sh->addr))
        fail_msg("%s: stderr does not contain the address %s: \"%s\"", what, sh->addr, err);
    if (must && !strstr(err, must))
        fail_msg("%s on %s: stderr does not say \"%s\": \"%s\"", what, sh->addr, must, err);
}

static void expect_abort(int (*fn)(void *), void *arg, const char *what)
{
    expect_abort_msg(fn, arg, what, NULL);
}

/* Keep a few live blocks around so that the heap is not trivially empty. */
static void warm_up(void)
{
    static void *keep[64];
    int i;
    for (i = 0; i < 64; i++) {
        keep[i] = malloc((size_t)(i * 61 % 3000 + 1));
        if (keep[i])
            memset(keep[i], 0x5C, (size_t)(i * 61 % 3000 + 1));
    }
}

/* ------------------------------------------------------------- free() */

static int do_free_stack(void *arg)
{
    (void)arg;
    char buf[256];
    memset(buf, 1, sizeof buf);
    warm_up();
    void *p = tu_launder(buf + 64);
    tu_expect_addr(p);
    free(p);
    return 0;
}

static void test_free_stack(void **state)
{
    (void)state;
    expect_abort(do_free_stack, NULL, "free of a stack address");
}

static int do_free_interior_small(void *arg)
{
    (void)arg;
    warm_up();
    unsigned char *p = malloc(100);
    if (!p)
        return 3;
    memset(p, 2, 100);
    void *q = tu_launder(p + 16);
    tu_expect_addr(q);
    free(q);
    return 0;
}

static void test_free_interior_small(void **state)
{
    (void)state;
    expect_abort(do_free_interior_small, NULL, "free of p+16, p = malloc(100)");
}

static int do_free_unaligned(void *arg)
{
    (void)arg;
    warm_up();
    unsigned char *p = malloc(100);
    if (!p)
        return 3;
    void *q = tu_launder(p + 1);
    tu_expect_addr(q);
    free(q);
    return 0;
}

static void test_free_unaligned(void **state)
{
    (void)state;
    expect_abort(do_free_unaligned, NULL, "free of p+1, p = malloc(100)");
}

static int do_free_interior_mid(void *arg)
{
    (void)arg;
    warm_up();
    unsigned char *p = malloc(20000);
    if (!p)
        return 3;
    void *q = tu_launder(p + 4096);
    tu_expect_addr(q);
    free(q);
    return 0;
}

static void test_free_interior_mid(void **state)
{
    (void)state;
    expect_abort(do_free_interior_mid, NULL, "free of p+4096, p = malloc(20000)");
}

static int do_free_interior_large(void *arg)
{
    (void)arg;
    warm_up();
    unsigned char *p = malloc(8 * TU_MIB);
    if (!p)
        return 3;
    memset(p, 0, 8 * TU_MIB);
    void *q = tu_launder(p + 4096);
    tu_expect_addr(q);
    free(q);
    return 0;
}

static void test_free_interior_large(void **state)
{
    (void)state;
    expect_abort(do_free_interior_large, NULL, "free of p+4096, p = malloc(8 MiB)");
}

static int do_free_wild(void *arg)
{
    (void)arg;
    warm_up();
    void *p = tu_launder((void *)0x123456789000);
    tu_expect_addr(p);
    free(p);
    return 0;
}

static void test_free_wild(void **state)
{
    (void)state;
    expect_abort(do_free_wild, NULL, "free of a wild address");
}

static int do_free_foreign_mmap(void *arg)
{
    size_t off = (size_t)(uintptr_t)arg;
    warm_up();
    unsigned char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 4;
    void *p = tu_launder(m + off);
    tu_expect_addr(p);
    free(p);
    return 0;
}

static void test_free_foreign_mmap(void **state)
{
    (void)state;
    expect_abort(do_free_foreign_mmap, (void *)(uintptr_t)0,
                 "free of a page hakmem never mapped");
    expect_abort(do_free_foreign_mmap, (void *)(uintptr_t)64,
                 "free of an address inside a page hakmem never mapped");
}

/* A foreign mapping that starts on a 2 MiB boundary, filled with zeros or
 * with garbage: an allocator that finds its metadata by rounding the pointer
 * down must not be fooled. */
static int do_free_foreign_aligned(void *arg)
{
    int garbage = (int)(uintptr_t)arg;
    const size_t two = 2 * TU_MIB;
    warm_up();
    unsigned char *m = mmap(NULL, 3 * two, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 4;
    unsigned char *a = (unsigned char *)(((uintptr_t)m + two - 1) & ~(uintptr_t)(two - 1));
    if (garbage)
        memset(a, 0xFF, two);
    void *p = tu_launder(a + 4096);
    tu_expect_addr(p);
    free(p);
    return 0;
}

static void test_free_foreign_aligned_mapping(void **state)
{
    (void)state;
    expect_abort(do_free_foreign_aligned, (void *)(uintptr_t)0,
                 "free inside a zeroed 2 MiB-aligned foreign mapping");
    expect_abort(do_free_foreign_aligned, (void *)(uintptr_t)1,
                 "free inside a 0xFF-filled 2 MiB-aligned foreign mapping");
}

/* ------------------------------------------------------- double free */

static int do_double_free(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    warm_up();
    unsigned char *a = malloc(n);
    if (!a)
        return 3;
    memset(a, 7, n);
    free(a);
    void *p = tu_launder(a);
    tu_expect_addr(p);
    free(p);
    return 0;
}

static void test_double_free_small(void **state)
{
    (void)state;
    expect_abort(do_double_free, (void *)(uintptr_t)32, "double free of malloc(32)");
    expect_abort(do_double_free, (void *)(uintptr_t)1000, "double free of malloc(1000)");
}

static void test_double_free_mid(void **state)
{
    (void)state;
    expect_abort(do_double_free, (void *)(uintptr_t)20000, "double free of malloc(20000)");
    /* release: a page run, in the thread's run cache after the first free */
    expect_abort(do_double_free, (void *)(uintptr_t)40000, "double free of malloc(40000)");
}

static void test_double_free_large(void **state)
{
    (void)state;
    expect_abort(do_double_free, (void *)(uintptr_t)(8 * TU_MIB), "double free of malloc(8 MiB)");
}

static int do_double_free_later(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    tu_rng r;
    int i;
    warm_up();
    unsigned char *a = malloc(n);
    if (!a)
        return 3;
    memset(a, 7, n);
    free(a);
    /* 100 other blocks of various sizes, allocated and freed */
    tu_rng_seed(&r, 3);
    void *others[100];
    for (i = 0; i < 100; i++) {
        size_t m = i % 10 == 9 ? tu_rng_range(&r, 1025, 100000) : tu_rng_range(&r, 1, 1024);
        others[i] = malloc(m);
        if (!others[i])
            return 3;
        memset(others[i], 9, m);
        if (i % 2)
            free(others[i]);
    }
    for (i = 0; i < 100; i += 2)
        free(others[i]);
    void *p = tu_launder(a);
    tu_expect_addr(p);
    free(p);
    return 0;
}

static void test_double_free_later(void **state)
{
    (void)state;
    expect_abort(do_double_free_later, (void *)(uintptr_t)48,
                 "double free of malloc(48) after 100 other mallocs/frees");
    expect_abort(do_double_free_later, (void *)(uintptr_t)20000,
                 "double free of malloc(20000) after 100 other mallocs/frees");
}

/* ------------------------------------------- writes after free (links) */

/* Safe-linking: the first word of a free block is its encoded free-list
 * link.  A write after free over it must stop the process, naming the
 * block, when the list reaches that block: never follow the written value. */
struct uaf_case { size_t size; int what; int core; };   /* what: 0 zeros, 1 a pointer, 2 text */

/* The hardened flavor keeps a freed block in the thread's quarantine, zeroed,
 * and hands it back to the core only later, and the core's link of a block
 * is TU_HARD_HDR bytes before the user's pointer.  So there a case either
 * writes at the user's pointer while the block waits (core 0: found when it
 * leaves the quarantine, "use after free"; zeros cannot be told apart from
 * the zeroed block), or waits until the block is back in the core and
 * writes over the core's link (core 1: "corrupted free list", as in release
 * and debug, naming the core's block). */
static void *uaf_target(void *p, const struct uaf_case *c)
{
    if (!c->core)
        return p;
    tu_quarantine_flush();
    return (char *)p - TU_HARD_HDR;
}

static void uaf_write(void *p, int what)
{
    static char target[64];
    uintptr_t v = what == 0 ? 0 : what == 1 ? (uintptr_t)target : 0x4141414141414141ull;
    memcpy(tu_launder(p), &v, sizeof v);
}

/* The block is the head of its bin: the next malloc of its size takes it. */
static int do_uaf_link_bin(void *arg)
{
    const struct uaf_case *c = arg;
    warm_up();
    char *p = malloc(c->size), *q = malloc(c->size);
    if (!p || !q)
        return 3;
    memset(p, 1, c->size);
    memset(q, 2, c->size);
    free(q);
    free(p);                 /* p is the head, its link leads to q */
    void *t = uaf_target(p, c);
    tu_expect_addr(t);       /* the message names the core's block */
    uaf_write(t, c->what);
    void *r = malloc(c->size);
    void *s = malloc(c->size);
    (void)tu_launder(r);
    (void)tu_launder(s);
    tu_quarantine_flush();   /* hardened: p leaves the quarantine */
    return 0;
}

static void test_uaf_write_link_bin(void **state)
{
    (void)state;
    static const struct uaf_case cases[] = {
        {48, 0, 0}, {48, 1, 0}, {48, 2, 0}, {1000, 0, 0}, {20000, 1, 0}, {30000, 2, 0},
        {40000, 2, 0},       /* a page run in the thread's run cache */
    };
    static const struct uaf_case hardened[] = {
        {48, 1, 0}, {48, 2, 0}, {1000, 1, 0}, {20000, 2, 0}, {30000, 1, 0},
        {48, 0, 1}, {48, 1, 1}, {48, 2, 1}, {1000, 0, 1}, {20000, 1, 1}, {30000, 2, 1},
    };
    static const char *what[] = {"zeros", "a pointer", "text"};
    const struct uaf_case *c = tu_hardened() ? hardened : cases;
    size_t n = tu_hardened() ? sizeof hardened / sizeof hardened[0] : sizeof cases / sizeof cases[0];
    char name[160];
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s written over the %s of a freed malloc(%zu)",
                 what[c[i].what], c[i].core ? "core's link (hardened)" : "link", c[i].size);
        expect_abort_msg(do_uaf_link_bin, (void *)&c[i], name,
                         tu_hardened() && !c[i].core ? "use after free" : "corrupted free list");
    }
}

/* The block went back to its slab's free list (the bin overflowed and
 * flushed its older half): the refill that takes it from the slab stops. */
static int do_uaf_link_slab(void *arg)
{
    (void)arg;
    enum { N = 2000 };
    static void *a[N];
    warm_up();
    for (int i = 0; i < N; i++) {
        a[i] = malloc(48);
        if (!a[i])
            return 3;
        memset(a[i], 3, 48);
    }
    /* every other block stays live, so that no slab empties (an empty slab
     * is released and its free list dropped) */
    for (int i = 1; i < N; i += 2)
        free(a[i]);
    /* freed early: flushed to its slab long ago; hardened: once out of the
     * quarantine, over the core's link (the message names the core's block).
     * Not a[1]: a heap's first 7 blocks of a class come from the starter
     * heap, whose slabs take them back as remote frees, read only when a
     * young thread next refills from there. */
    static const struct uaf_case c = {48, 0, 1};
    void *t = tu_hardened() ? uaf_target(a[N / 2 + 1], &c) : a[N / 2 + 1];
    tu_expect_addr(t);
    uaf_write(t, 0);
    for (int i = 1; i < N; i += 2)
        a[i] = tu_launder(malloc(48));
    return 0;
}

static void test_uaf_write_link_slab(void **state)
{
    (void)state;
    expect_abort_msg(do_uaf_link_slab, NULL,
                     "zeros written over the link of a block in its slab's free list",
                     "corrupted free list");
}

/* hak_check reports a corrupted link without stopping, and finds nothing
 * once the word is put back. */
static void test_uaf_link_hak_check(void **state)
{
    (void)state;
    tu_own_heap();                  /* the frees go to its bin */
    uintptr_t *p = malloc(64), *q = malloc(64);
    assert_non_null(p);
    assert_non_null(q);
    free(q);
    free(p);
    /* hardened: once out of the quarantine, the core's link */
    uintptr_t *w = p;
    if (tu_hardened()) {
        tu_quarantine_flush();
        w = p - TU_HARD_HDR / sizeof *p;
    }
    assert_int_equal(hak_check(), 0);
    uintptr_t saved = w[0];
    w[0] = 0;
    assert_true(hak_check() >= 1);
    w[0] = saved;
    assert_int_equal(hak_check(), 0);
    free(tu_launder(malloc(64)));
}

/* A block start that was never handed out: p + size for a fresh block p
 * is the next block of its slab (carved into a bin, or past the carve
 * frontier).  The message must not call it a plain double free. */
void *starter_blocks[8];    /* kept live (not static: no unused warning) */

static int do_free_next_block(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    warm_up();
    /* A heap's first 7 blocks of a tiny class come from the starter heap,
     * shared by all threads: the block after p may be another thread's (here
     * the parent's) live block there.  Past them, p comes from a slab of this
     * heap, and the block after it was carved and not handed out. */
    for (int k = 0; k < 8 && n <= 1024; k++)
        starter_blocks[k] = malloc(n);
    char *p = malloc(n);
    if (!p)
        return 3;
    memset(p, 4, n);
    void *q = tu_launder(p + n);
    tu_expect_addr(q);
    free(q);
    return 0;
}

/* Hardened: p + size is inside p's own core block (its canary), and the
 * next block of the slab is found from the distances between blocks of one
 * class (random carving order): 16 blocks, the class size is their gcd, and
 * a block start between the lowest and the highest that none of them has is
 * a block carved into the bin and never handed out (or, with no gap, the
 * one after the highest).  Small classes only: the 16 blocks must come from
 * one slab. */
static int do_free_next_block_hardened(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    enum { K = 16 };
    char *b[K], *lo, *hi, *q = NULL;
    uintptr_t g = 0;
    warm_up();
    for (int i = 0; i < K; i++) {
        if (!(b[i] = malloc(n)))
            return 3;
        memset(b[i], 4, n);
    }
    lo = hi = b[0];
    for (int i = 1; i < K; i++) {
        uintptr_t d = b[i] > b[0] ? (uintptr_t)(b[i] - b[0]) : (uintptr_t)(b[0] - b[i]);
        while (d) {
            uintptr_t t = g % d;
            g = d;
            d = t;
        }
        lo = b[i] < lo ? b[i] : lo;
        hi = b[i] > hi ? b[i] : hi;
    }
    if (g < n + TU_HARD_HDR) {
        fprintf(stderr, "test setup: %d blocks of malloc(%zu) give a class size of %lu\n", K, n,
                (unsigned long)g);
        return 5;
    }
    for (char *c = lo + g; c <= hi + g && !q; c += g) {
        int seen = 0;
        for (int i = 0; i < K; i++)
            seen |= b[i] == c;
        if (!seen)
            q = c;
    }
    tu_expect_addr(q);
    free(tu_launder(q));
    return 0;
}

static void test_free_block_not_handed_out(void **state)
{
    (void)state;
    static const size_t sizes[] = {64, 4096, 65536};
    char name[96];
    if (tu_hardened()) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            snprintf(name, sizeof name, "free of p+%zu, p = malloc(%zu) (hardened)", sizes[i],
                     sizes[i]);
            expect_abort_msg(do_free_next_block, (void *)(uintptr_t)sizes[i], name,
                             "invalid pointer (inside a block)");
        }
        /* a small class: 16 blocks come from one slab.  210 + 24 bytes of
         * header and canary make the 256-byte class, which warm_up() does
         * not use: its live blocks would be taken for blocks not handed out
         * (with 64, the 96-byte class, they were, once the first refills
         * carved fewer blocks) */
        expect_abort_msg(do_free_next_block_hardened, (void *)(uintptr_t)210,
                         "free of a malloc(210) block not handed out (hardened)", "not handed out");
        return;
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        snprintf(name, sizeof name, "free of p+%zu, p = malloc(%zu), a fresh heap", sizes[i], sizes[i]);
        expect_abort_msg(do_free_next_block, (void *)(uintptr_t)sizes[i], name, "not handed out");
    }
}

/* A thread's first tiny blocks come from a starter a cache line's worth at
 * a time (4 of 16 bytes), and the ones it did not ask for yet wait in its
 * stash, marked free: a free of one (a block never handed out) is a double
 * free.  On a thread of its own (no heap yet): p = malloc(8) at the start
 * of a line, then free(p + 16). */
static void *stash_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 8; i++) {
        char *p = malloc(8);
        if (!p)
            return (void *)3;
        if (((uintptr_t)p & 63) == 0) {
            tu_expect_addr(p + 16);
            free(tu_launder(p + 16));
            return NULL;
        }
    }
    return (void *)5;       /* no block at the start of a line: setup */
}

static int do_free_stashed(void *arg)
{
    (void)arg;
    pthread_t t;
    void *r = NULL;
    if (pthread_create(&t, NULL, stash_worker, NULL) != 0 || pthread_join(t, &r) != 0)
        return 4;
    return (int)(uintptr_t)r;
}

static void test_free_stashed_block(void **state)
{
    (void)state;
    if (tu_hardened())
        skip();             /* a thread takes its heap at its first block */
    expect_abort_msg(do_free_stashed, NULL, "free of a block a young thread holds unasked",
                     "double free");
}

/* ---------------------------------------------------------- realloc */

static int do_realloc_stack(void *arg)
{
    (void)arg;
    char buf[128];
    memset(buf, 1, sizeof buf);
    warm_up();
    void *p = tu_launder(buf + 32);
    tu_expect_addr(p);
    void *q = realloc(p, 1000);
    (void)tu_launder(q);
    return 0;
}

static void test_realloc_stack(void **state)
{
    (void)state;
    expect_abort(do_realloc_stack, NULL, "realloc of a stack address");
}

static int do_realloc_wild(void *arg)
{
    (void)arg;
    warm_up();
    void *p = tu_launder((void *)0x123456789000);
    tu_expect_addr(p);
    void *q = realloc(p, 10);
    (void)tu_launder(q);
    return 0;
}

static void test_realloc_wild(void **state)
{
    (void)state;
    expect_abort(do_realloc_wild, NULL, "realloc of a wild address");
}

static int do_realloc_freed(void *arg)
{
    (void)arg;
    warm_up();
    unsigned char *a = malloc(64);
    if (!a)
        return 3;
    free(a);
    void *p = tu_launder(a);
    tu_expect_addr(p);
    void *q = realloc(p, 200);
    (void)tu_launder(q);
    return 0;
}

static void test_realloc_freed(void **state)
{
    (void)state;
    expect_abort(do_realloc_freed, NULL, "realloc of a freed block");
}

/* ------------------------------------------- large blocks (page runs) */

/* Three adjacent 1 MiB page runs L, P, R, written.  The parent never
 * allocates a large block, so each child starts with an empty arena and a
 * fresh region, where consecutive blocks are adjacent. */
static int three_runs(unsigned char **l, unsigned char **p, unsigned char **r)
{
    const size_t mib = 1024 * 1024;
    *l = malloc(mib);
    *p = malloc(mib);
    *r = malloc(mib);
    if (!*l || !*p || !*r)
        return 3;
    memset(*l, 1, mib);
    memset(*p, 2, mib);
    memset(*r, 3, mib);
    /* hardened: each block's core block is TU_HARD_HDR bytes before it, and
     * holds the header, the canary and the guard page besides the 1 MiB */
    size_t d = (size_t)(*p - *l);
    int adj = tu_hardened()
                  ? (uintptr_t)*l % 4096 == TU_HARD_HDR && d > mib && d <= mib + 3 * 4096 &&
                        d % 4096 == 0 && *r == *p + d
                  : *p == *l + mib && *r == *p + mib;
    if (!adj) {
        fprintf(stderr, "test setup: 1 MiB blocks %p %p %p are not adjacent\n", (void *)*l,
                (void *)*p, (void *)*r);
        return 5;
    }
    return 0;
}

/* arg 0: L and R are freed, then P (which merges with both), then P again.
 * arg 1: P is freed, then L (which takes P's pages into its run), then R,
 * then P again. */
static int do_double_free_large_merged(void *arg)
{
    unsigned char *l, *p, *r;
    warm_up();
    int rc = three_runs(&l, &p, &r);
    if (rc)
        return rc;
    if (arg == NULL) {
        free(l);
        free(r);
        free(p);
    } else {
        free(p);
        free(l);
        free(r);
    }
    void *q = tu_launder(p);
    tu_expect_addr(q);
    free(q);
    return 0;
}

static void test_double_free_large_merged(void **state)
{
    (void)state;
    expect_abort_msg(do_double_free_large_merged, NULL,
                     "double free of a 1 MiB block freed after both neighbours (merged with them)",
                     "double free");
    /* hardened: the block left the quarantine when the later frees pushed it
     * out, and its pages are in L's free run: no block starts there */
    expect_abort_msg(do_double_free_large_merged, (void *)1,
                     "double free of a 1 MiB block freed before both neighbours (they merged "
                     "its pages into their run)",
                     tu_hardened() ? "a large block freed before" : "double free");
}

static int do_free_interior_large_run(void *arg)
{
    (void)arg;
    unsigned char *l, *p, *r;
    warm_up();
    int rc = three_runs(&l, &p, &r);
    if (rc)
        return rc;
    void *q = tu_launder(p + 4096);
    tu_expect_addr(q);
    free(q);
    return 0;
}

static void test_free_interior_large_run(void **state)
{
    (void)state;
    expect_abort_msg(do_free_interior_large_run, NULL, "free of p+4096, p = malloc(1 MiB)",
                     "invalid pointer");
}

/* A page inside the region header: the block's address rounded down to
 * 64 MiB (regions are aligned to at least that, and the first block of a
 * fresh region lies just past its header), plus 4096. */
static int do_free_region_header(void *arg)
{
    (void)arg;
    unsigned char *l, *p, *r;
    warm_up();
    int rc = three_runs(&l, &p, &r);
    if (rc)
        return rc;
    uintptr_t base = (uintptr_t)l & ~(uintptr_t)((64u << 20) - 1);
    if ((uintptr_t)l - base >= (4u << 20)) {
        fprintf(stderr, "test setup: the first block %p is %#lx past a 64 MiB boundary, not just "
                "past a region header\n", (void *)l, (unsigned long)((uintptr_t)l - base));
        return 5;
    }
    void *q = tu_launder((void *)(base + 4096));
    tu_expect_addr(q);
    free(q);
    return 0;
}

static void test_free_region_header(void **state)
{
    (void)state;
    expect_abort_msg(do_free_region_header, NULL,
                     "free of a page of a large-block region's header", "invalid pointer");
}

static int do_realloc_freed_large(void *arg)
{
    (void)arg;
    unsigned char *l, *p, *r;
    warm_up();
    int rc = three_runs(&l, &p, &r);
    if (rc)
        return rc;
    free(p);
    void *q = tu_launder(p);
    tu_expect_addr(q);
    void *n = realloc(q, 2 * 1024 * 1024);
    (void)tu_launder(n);
    return 0;
}

static void test_realloc_freed_large(void **state)
{
    (void)state;
    expect_abort_msg(do_realloc_freed_large, NULL, "realloc of a freed 1 MiB block", "realloc");
}

/* ------------------------------------------- the process survives misuse */

/* After all the aborting children, the parent's allocator still works
 * (the children's misuse cannot affect it, but the fork path can). */
static void test_parent_unaffected(void **state)
{
    (void)state;
    int i;
    for (i = 0; i < 1000; i++) {
        void *p = malloc((size_t)(i * 13 % 70000 + 1));
        assert_non_null(p);
        free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_stack),
        cmocka_unit_test(test_free_interior_small),
        cmocka_unit_test(test_free_unaligned),
        cmocka_unit_test(test_free_interior_mid),
        cmocka_unit_test(test_free_interior_large),
        cmocka_unit_test(test_free_wild),
        cmocka_unit_test(test_free_foreign_mmap),
        cmocka_unit_test(test_free_foreign_aligned_mapping),
        cmocka_unit_test(test_double_free_small),
        cmocka_unit_test(test_double_free_mid),
        cmocka_unit_test(test_double_free_large),
        cmocka_unit_test(test_double_free_later),
        cmocka_unit_test(test_realloc_stack),
        cmocka_unit_test(test_realloc_wild),
        cmocka_unit_test(test_realloc_freed),
        cmocka_unit_test(test_double_free_large_merged),
        cmocka_unit_test(test_free_interior_large_run),
        cmocka_unit_test(test_free_region_header),
        cmocka_unit_test(test_realloc_freed_large),
        cmocka_unit_test(test_free_block_not_handed_out),
        cmocka_unit_test(test_free_stashed_block),
        cmocka_unit_test(test_uaf_write_link_bin),
        cmocka_unit_test(test_uaf_write_link_slab),
        cmocka_unit_test(test_uaf_link_hak_check),
        cmocka_unit_test(test_parent_unaffected),
    };
    alarm(300);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
