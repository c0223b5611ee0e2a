/* test_fork: hakmem across fork().
 *
 * While other threads allocate and free, the main thread (or another thread)
 * forks repeatedly.  The child allocates and frees small, mid and large blocks,
 * also from new threads, checks contents, and exits with a status the parent
 * checks.  Every child runs under alarm(), so a deadlock inherited from a lock
 * held at fork time shows up as a failure (SIGALRM), not as a hang. */
#define TU_CHILD_TIMEOUT 20
#include "test_util.h"

#include <setjmp.h>
#include <cmocka.h>
#include <stdatomic.h>

/* ---------------------------------------------------------------- errors */

static atomic_ulong parent_errors;

/* ------------------------------------------------------- work in a child */

/* Child exit codes (0 = success). */
enum {
    CE_OK = 0,
    CE_ALLOC = 10,      /* an allocation failed                    */
    CE_CORRUPT = 11,    /* a pattern did not survive               */
    CE_ALIGN = 12,      /* misaligned result                       */
    CE_CALLOC = 13,     /* calloc not zeroed                       */
    CE_THREAD = 14,     /* pthread_create / join failed            */
    CE_PREFORK = 15,    /* a block allocated before fork corrupted */
    CE_GRANDCHILD = 16, /* a nested child failed                   */
};

static size_t child_size(tu_rng *r)
{
    unsigned k = (unsigned)(tu_rng_next(r) % 100);
    if (k < 75)
        return tu_rng_range(r, 1, 1024);
    if (k < 97)
        return tu_rng_range(r, 1025, 64 * TU_KIB);
    return tu_rng_range(r, 64 * TU_KIB + 1, 2 * TU_MIB);
}

/* Allocate, fill, realloc, verify and free a batch of blocks. */
static int alloc_cycle(uint64_t seed, int nblocks)
{
    enum { MAXB = 256 };
    unsigned char *p[MAXB];
    size_t n[MAXB];
    tu_rng r;
    int i, rc = CE_OK;

    if (nblocks > MAXB)
        nblocks = MAXB;
    tu_rng_seed(&r, seed);
    for (i = 0; i < nblocks; i++) {
        n[i] = child_size(&r);
        if (i % 5 == 0) {
            p[i] = calloc(1, n[i]);
            if (p[i] && !tu_all_bytes(p[i], n[i], 0))
                rc = CE_CALLOC;
        } else {
            p[i] = malloc(n[i]);
        }
        if (!p[i])
            return CE_ALLOC;
        if (!tu_is_aligned(p[i], 16))
            rc = CE_ALIGN;
        tu_fill(p[i], n[i], seed + (uint64_t)i);
    }
    for (i = 0; i < nblocks; i += 3) {
        size_t m = child_size(&r), keep = m < n[i] ? m : n[i];
        unsigned char *q = realloc(p[i], m);
        if (!q)
            return CE_ALLOC;
        if (tu_check(q, keep, seed + (uint64_t)i) != -1)
            rc = CE_CORRUPT;
        p[i] = q;
        n[i] = m;
        tu_fill(q, m, seed + (uint64_t)i);
    }
    for (i = 0; i < nblocks; i++) {
        if (tu_check(p[i], n[i], seed + (uint64_t)i) != -1)
            rc = CE_CORRUPT;
        free(p[i]);
    }
    /* aligned allocations too */
    for (i = 0; i < 8; i++) {
        void *a = NULL;
        size_t al = (size_t)64 << i;
        if (posix_memalign(&a, al, al * 2 + 1) != 0)
            return CE_ALLOC;
        if (!tu_is_aligned(a, al))
            rc = CE_ALIGN;
        memset(a, 0x11, al * 2 + 1);
        free(a);
    }
    return rc;
}

typedef struct {
    uint64_t seed;
    int rc;
} cycle_arg;

static void *cycle_thread(void *v)
{
    cycle_arg *a = v;
    int k;
    a->rc = CE_OK;
    for (k = 0; k < 2 && a->rc == CE_OK; k++)
        a->rc = alloc_cycle(a->seed + (uint64_t)k * 1000, 60);
    return NULL;
}

/* Blocks allocated before fork that the child must find intact. */
#define PREFORK_N 64
static struct {
    unsigned char *p[PREFORK_N];
    size_t n[PREFORK_N];
    uint64_t seed[PREFORK_N];
    int count;
} prefork;

static void prefork_make(uint64_t seed)
{
    tu_rng r;
    int i;
    tu_rng_seed(&r, seed);
    for (i = 0; i < PREFORK_N; i++) {
        prefork.n[i] = child_size(&r);
        prefork.p[i] = malloc(prefork.n[i]);
        assert_non_null(prefork.p[i]);
        prefork.seed[i] = seed * 100 + (uint64_t)i;
        tu_fill(prefork.p[i], prefork.n[i], prefork.seed[i]);
    }
    prefork.count = PREFORK_N;
}

static int prefork_check(void)
{
    int i;
    for (i = 0; i < prefork.count; i++)
        if (tu_check(prefork.p[i], prefork.n[i], prefork.seed[i]) != -1)
            return CE_PREFORK;
    return CE_OK;
}

static void prefork_free(void)
{
    int i;
    for (i = 0; i < prefork.count; i++)
        free(prefork.p[i]);
    prefork.count = 0;
}

/* The standard child: check the pre-fork blocks, free half of them, work on
 * the main thread and on two new threads, free the rest. */
static int child_main(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    pthread_t t[2];
    cycle_arg ca[2];
    int i, rc;

    if ((rc = prefork_check()) != CE_OK)
        return rc;
    for (i = 0; i < prefork.count; i += 2)
        free(prefork.p[i]);
    if ((rc = alloc_cycle(seed, 100)) != CE_OK)
        return rc;
    for (i = 0; i < 2; i++) {
        ca[i].seed = seed * 7 + (uint64_t)i;
        if (pthread_create(&t[i], NULL, cycle_thread, &ca[i]) != 0)
            return CE_THREAD;
    }
    for (i = 0; i < 2; i++) {
        if (pthread_join(t[i], NULL) != 0)
            return CE_THREAD;
        if (ca[i].rc != CE_OK)
            return ca[i].rc;
    }
    for (i = 1; i < prefork.count; i += 2)
        if (tu_check(prefork.p[i], prefork.n[i], prefork.seed[i]) != -1)
            return CE_PREFORK;
    for (i = 1; i < prefork.count; i += 2)
        free(prefork.p[i]);
    return CE_OK;
}

static void fork_and_check(int (*fn)(void *), void *arg, int iter)
{
    int status = 0;
    char err[2048], st[128];
    if (run_in_child(fn, arg, &status, err, sizeof err) != 0)
        fail_msg("fork failed: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        const char *hint = "";
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
            hint = " (timed out: deadlock in the child?)";
        fail_msg("fork #%d: child %s%s; child stderr: %s", iter,
                 tu_status_str(status, st, sizeof st), hint, err);
    }
}

/* ------------------------------------------------------ busy parent threads */

static atomic_int stop_workers;

typedef struct {
    unsigned tid;
    size_t max_size;
    unsigned long loops;
} worker_arg;

static void *busy_worker(void *v)
{
    worker_arg *a = v;
    enum { SLOTS = 64 };
    unsigned char *p[SLOTS] = { 0 };
    size_t n[SLOTS] = { 0 };
    uint64_t s[SLOTS] = { 0 };
    tu_rng r;
    uint64_t seq = 0;
    int i;

    tu_rng_seed(&r, 900 + a->tid);
    while (!atomic_load(&stop_workers)) {
        i = (int)(tu_rng_next(&r) % SLOTS);
        if (p[i]) {
            if (tu_check(p[i], n[i], s[i]) != -1)
                atomic_fetch_add(&parent_errors, 1);
            if (tu_rng_chance(&r, 1, 4)) {
                size_t m = tu_rng_range(&r, 1, a->max_size);
                size_t keep = m < n[i] ? m : n[i];
                unsigned char *q = realloc(p[i], m);
                if (!q) {
                    atomic_fetch_add(&parent_errors, 1);
                    continue;
                }
                if (tu_check(q, keep, s[i]) != -1)
                    atomic_fetch_add(&parent_errors, 1);
                p[i] = q;
                n[i] = m;
                s[i] = tu_seed2(a->tid, seq++);
                tu_fill(q, m, s[i]);
            } else {
                free(p[i]);
                p[i] = NULL;
            }
        } else {
            size_t m = tu_rng_chance(&r, 9, 10) ? tu_rng_range(&r, 1, 2048)
                                                : tu_rng_range(&r, 1, a->max_size);
            p[i] = malloc(m);
            if (!p[i]) {
                atomic_fetch_add(&parent_errors, 1);
                continue;
            }
            n[i] = m;
            s[i] = tu_seed2(a->tid, seq++);
            tu_fill(p[i], m, s[i]);
        }
        a->loops++;
    }
    for (i = 0; i < SLOTS; i++) {
        if (p[i] && tu_check(p[i], n[i], s[i]) != -1)
            atomic_fetch_add(&parent_errors, 1);
        free(p[i]);
    }
    return NULL;
}

/* Workers of a given maximum block size: start, run, stop. */
typedef struct {
    pthread_t t[8];
    worker_arg a[8];
    int n;
} workers;

static workers g_workers;     /* running busy workers (n == 0: none) */

static void workers_start(workers *w, int n, size_t max_size)
{
    int i;
    atomic_store(&stop_workers, 0);
    w->n = 0;
    for (i = 0; i < n; i++) {
        w->a[i].tid = (unsigned)i;
        w->a[i].max_size = max_size;
        w->a[i].loops = 0;
        assert_int_equal(pthread_create(&w->t[i], NULL, busy_worker, &w->a[i]), 0);
        w->n = i + 1;
    }
}

static unsigned long workers_stop(workers *w)
{
    unsigned long loops = 0;
    int i;
    atomic_store(&stop_workers, 1);
    for (i = 0; i < w->n; i++) {
        pthread_join(w->t[i], NULL);
        loops += w->a[i].loops;
    }
    w->n = 0;
    return loops;
}

/* ------------------------------------------------------------------ tests */

static int forks(void)
{
    int n = (int)(30 * tu_scale());
    return n < 4 ? 4 : n;
}

static void test_fork_with_busy_threads(void **state)
{
    (void)state;
    int i;
    atomic_store(&parent_errors, 0);
    prefork_make(1);
    workers_start(&g_workers, 4, 128 * TU_KIB);
    usleep(20000);
    for (i = 0; i < forks(); i++) {
        fork_and_check(child_main, (void *)(uintptr_t)(i + 10), i);
        usleep(1000 * (unsigned)(i % 5));
    }
    unsigned long loops = workers_stop(&g_workers);
    /* the parent's blocks were not disturbed by the children */
    assert_int_equal(prefork_check(), CE_OK);
    prefork_free();
    assert_true(loops > 0);
    assert_int_equal(atomic_load(&parent_errors), 0);
}

/* A thread busy with large (mmap-backed) allocations while forking. */
static atomic_int stop_large;
static atomic_ulong large_loops;

static void *large_worker(void *v)
{
    tu_rng r;
    tu_rng_seed(&r, (uint64_t)(uintptr_t)v);
    while (!atomic_load(&stop_large)) {
        size_t n = tu_rng_range(&r, 64 * TU_KIB, 8 * TU_MIB);
        unsigned char *p = malloc(n);
        if (!p) {
            atomic_fetch_add(&parent_errors, 1);
            continue;
        }
        /* touch every page */
        for (size_t off = 0; off < n; off += 4096)
            p[off] = (unsigned char)off;
        p[n - 1] = 0x77;
        size_t m = tu_rng_range(&r, 1, 8 * TU_MIB);
        unsigned char *q = realloc(p, m);
        if (!q) {
            atomic_fetch_add(&parent_errors, 1);
            free(p);
            continue;
        }
        if (q[0] != 0)
            atomic_fetch_add(&parent_errors, 1);
        free(q);
        void *a = NULL;
        if (posix_memalign(&a, 2 * TU_MIB, 3 * TU_MIB) == 0) {
            memset(a, 1, 4096);
            free(a);
        } else {
            atomic_fetch_add(&parent_errors, 1);
        }
        a = calloc(1, n);
        if (!a || ((unsigned char *)a)[n - 1] != 0)
            atomic_fetch_add(&parent_errors, 1);
        free(a);
        atomic_fetch_add(&large_loops, 1);
    }
    return NULL;
}

static int child_large(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    tu_rng r;
    int i, rc;
    tu_rng_seed(&r, seed);
    for (i = 0; i < 4; i++) {
        size_t n = tu_rng_range(&r, 64 * TU_KIB, 8 * TU_MIB);
        unsigned char *p = malloc(n);
        if (!p)
            return CE_ALLOC;
        tu_fill(p, n, seed + (uint64_t)i);
        unsigned char *q = realloc(p, n * 2);
        if (!q)
            return CE_ALLOC;
        if (tu_check(q, n, seed + (uint64_t)i) != -1)
            return CE_CORRUPT;
        free(q);
    }
    if ((rc = alloc_cycle(seed, 60)) != CE_OK)
        return rc;
    return child_main(arg);
}

static pthread_t large_t[2];
static int large_n;

static void large_stop(void)
{
    int i;
    atomic_store(&stop_large, 1);
    for (i = 0; i < large_n; i++)
        pthread_join(large_t[i], NULL);
    large_n = 0;
}

static void test_fork_during_large_allocs(void **state)
{
    (void)state;
    int i;
    atomic_store(&parent_errors, 0);
    atomic_store(&stop_large, 0);
    atomic_store(&large_loops, 0);
    prefork_make(2);
    for (i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&large_t[i], NULL, large_worker, (void *)(uintptr_t)(i + 1)), 0);
        large_n = i + 1;
    }
    usleep(20000);
    for (i = 0; i < forks(); i++)
        fork_and_check(child_large, (void *)(uintptr_t)(i + 500), i);
    large_stop();
    assert_int_equal(prefork_check(), CE_OK);
    prefork_free();
    assert_true(atomic_load(&large_loops) > 0);
    assert_int_equal(atomic_load(&parent_errors), 0);
}

/* Blocks allocated by a thread that does not exist in the child (it exists in
 * the parent) are freed by the child. */
typedef struct {
    unsigned char *p[100];
    size_t n[100];
} thread_blocks;

static void *make_thread_blocks(void *v)
{
    thread_blocks *b = v;
    int i;
    for (i = 0; i < 100; i++) {
        b->n[i] = (size_t)(i * 97 % 5000 + 1) * (i % 10 == 0 ? 100 : 1);
        b->p[i] = malloc(b->n[i]);
        if (b->p[i])
            tu_fill(b->p[i], b->n[i], 31 + (uint64_t)i);
    }
    return NULL;
}

static int child_frees_thread_blocks(void *arg)
{
    thread_blocks *b = arg;
    int i, rc;
    for (i = 0; i < 100; i++) {
        if (!b->p[i])
            return CE_ALLOC;
        if (tu_check(b->p[i], b->n[i], 31 + (uint64_t)i) != -1)
            return CE_PREFORK;
        if (i % 3 == 0) {
            unsigned char *q = realloc(b->p[i], b->n[i] + 1000);
            if (!q)
                return CE_ALLOC;
            if (tu_check(q, b->n[i], 31 + (uint64_t)i) != -1)
                return CE_CORRUPT;
            free(q);
        } else {
            free(b->p[i]);
        }
    }
    if ((rc = alloc_cycle(99, 200)) != CE_OK)
        return rc;
    return CE_OK;
}

static void test_fork_child_frees_foreign_blocks(void **state)
{
    (void)state;
    thread_blocks *b = calloc(1, sizeof *b);
    pthread_t t;
    int i;
    assert_non_null(b);
    assert_int_equal(pthread_create(&t, NULL, make_thread_blocks, b), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    for (i = 0; i < 10; i++)
        fork_and_check(child_frees_thread_blocks, b, i);
    /* still intact in the parent */
    for (i = 0; i < 100; i++) {
        assert_int_equal(tu_check(b->p[i], b->n[i], 31 + (uint64_t)i), -1);
        free(b->p[i]);
    }
    free(b);
}

/* Nested: the child forks a grandchild, which forks again. */
static int nested_child(void *arg)
{
    int depth = (int)(uintptr_t)arg;
    int rc = alloc_cycle(1000 + (uint64_t)depth, 80);
    if (rc != CE_OK)
        return rc;
    if (depth < 3) {
        /* keep a thread busy while forking the next level */
        pthread_t t;
        cycle_arg ca = { 4000 + (uint64_t)depth, 0 };
        if (pthread_create(&t, NULL, cycle_thread, &ca) != 0)
            return CE_THREAD;
        int status = 0;
        if (run_in_child(nested_child, (void *)(uintptr_t)(depth + 1), &status, NULL, 0) != 0)
            return CE_GRANDCHILD;
        if (pthread_join(t, NULL) != 0)
            return CE_THREAD;
        if (ca.rc != CE_OK)
            return ca.rc;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return CE_GRANDCHILD;
    }
    return alloc_cycle(2000 + (uint64_t)depth, 80);
}

static void test_fork_nested(void **state)
{
    (void)state;
    int i;
    atomic_store(&parent_errors, 0);
    workers_start(&g_workers, 2, 64 * TU_KIB);
    for (i = 0; i < 5; i++)
        fork_and_check(nested_child, (void *)(uintptr_t)1, i);
    workers_stop(&g_workers);
    assert_int_equal(atomic_load(&parent_errors), 0);
}

/* fork() called from a thread other than the main one, while the main
 * thread and others allocate. */
typedef struct {
    int iterations;
    int failures;
    char msg[512];
} forker_arg;

static void *forker_thread(void *v)
{
    forker_arg *fa = v;
    int i;
    for (i = 0; i < fa->iterations && fa->failures == 0; i++) {
        int status = 0;
        char err[256], st[128];
        if (run_in_child(child_main, (void *)(uintptr_t)(7000 + i), &status, err, sizeof err) != 0 ||
            !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (fa->failures++ == 0)
                snprintf(fa->msg, sizeof fa->msg, "fork #%d from a thread: child %s; stderr: %s",
                         i, tu_status_str(status, st, sizeof st), err);
        }
    }
    return NULL;
}

static forker_arg fa;
static pthread_t forker_t;
static int forker_running;

static void test_fork_from_thread(void **state)
{
    (void)state;
    tu_rng r;
    memset(&fa, 0, sizeof fa);
    fa.iterations = forks() / 2;
    atomic_store(&parent_errors, 0);
    prefork_make(3);
    workers_start(&g_workers, 2, 32 * TU_KIB);
    assert_int_equal(pthread_create(&forker_t, NULL, forker_thread, &fa), 0);
    forker_running = 1;
    /* the main thread allocates too */
    tu_rng_seed(&r, 8);
    for (int k = 0; k < 20000; k++) {
        size_t n = tu_rng_range(&r, 1, 4096);
        void *p = malloc(n);
        assert_non_null(p);
        memset(p, 0x33, n);
        free(p);
    }
    pthread_join(forker_t, NULL);
    forker_running = 0;
    workers_stop(&g_workers);
    assert_int_equal(prefork_check(), CE_OK);
    prefork_free();
    if (fa.failures)
        fail_msg("%d of %d forks failed; first: %s", fa.failures, fa.iterations, fa.msg);
    assert_int_equal(atomic_load(&parent_errors), 0);
}

/* After all that forking the parent is fully functional. */
static void test_parent_after_forks(void **state)
{
    (void)state;
    assert_int_equal(alloc_cycle(12345, 256), CE_OK);
    pthread_t t[4];
    cycle_arg ca[4];
    int i;
    for (i = 0; i < 4; i++) {
        ca[i].seed = 600 + (uint64_t)i;
        assert_int_equal(pthread_create(&t[i], NULL, cycle_thread, &ca[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(ca[i].rc, CE_OK);
    }
}

/* Runs after every test, also after a failed one: stop any thread the test
 * left running (they point into test state) and release pre-fork blocks. */
static int teardown(void **state)
{
    (void)state;
    if (forker_running) {
        pthread_join(forker_t, NULL);
        forker_running = 0;
    }
    workers_stop(&g_workers);
    large_stop();
    prefork_free();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_fork_with_busy_threads, teardown),
        cmocka_unit_test_teardown(test_fork_during_large_allocs, teardown),
        cmocka_unit_test_teardown(test_fork_child_frees_foreign_blocks, teardown),
        cmocka_unit_test_teardown(test_fork_nested, teardown),
        cmocka_unit_test_teardown(test_fork_from_thread, teardown),
        cmocka_unit_test_teardown(test_parent_after_forks, teardown),
    };
    /* The parent too: a deadlock must become a failure. */
    alarm(600);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
