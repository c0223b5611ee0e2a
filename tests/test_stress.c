/* test_stress: deterministic multi-threaded stress of hakmem.
 *
 *  - test_stress_mixed: 8 threads, random sizes (mostly 16..1024, some up to
 *    64 KiB, a few up to 2 MiB), malloc/calloc/realloc/aligned allocations,
 *    a share of the blocks handed to other threads through mutex-protected
 *    queues.  Every block carries a pattern derived from (thread id, sequence
 *    number) that is verified before every free, local or remote.
 *  - test_thread_churn: waves of short-lived threads (hundreds in total) that
 *    allocate, free some, hand some to a long-lived collector and exit with
 *    blocks still allocated; the main thread frees those later.
 *  - test_producer_consumer: producers allocate, consumers on other threads
 *    verify and free (remote frees only).
 *
 * The amount of work scales with HAKMEM_TEST_SCALE (default 1).  Worker
 * threads never call cmocka; they count errors, which the test checks. */
#include "test_util.h"

#include <setjmp.h>
#include <cmocka.h>

#define NTHREADS 8

/* ---------------------------------------------------------------- errors */

static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long err_count;
static char err_first[512];

static void report_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report_error(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&err_mu);
    if (err_count++ == 0) {
        va_start(ap, fmt);
        vsnprintf(err_first, sizeof err_first, fmt, ap);
        va_end(ap);
    }
    if (err_count <= 5) {
        fprintf(stderr, "stress error: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&err_mu);
}

static void reset_errors(void)
{
    pthread_mutex_lock(&err_mu);
    err_count = 0;
    err_first[0] = '\0';
    pthread_mutex_unlock(&err_mu);
}

static void assert_no_errors(void)
{
    pthread_mutex_lock(&err_mu);
    unsigned long n = err_count;
    pthread_mutex_unlock(&err_mu);
    if (n)
        fail_msg("%lu corruption/allocation errors; first: %s", n, err_first);
}

/* ---------------------------------------------------------------- blocks */

typedef struct {
    unsigned char *p;
    size_t n;
    uint64_t seed;
    unsigned owner; /* thread that allocated it */
} item;

/* Verify a block's pattern; report and return 0 on mismatch. */
static int verify(const item *it, const char *where)
{
    long off = tu_check(it->p, it->n, it->seed);
    if (off >= 0) {
        report_error("%s: block %p size %zu from thread %u corrupted at offset %ld",
                     where, (void *)it->p, it->n, it->owner, off);
        return 0;
    }
    return 1;
}

static size_t pick_size(tu_rng *r)
{
    unsigned k = (unsigned)(tu_rng_next(r) % 1000);
    if (k < 30)
        return tu_rng_range(r, 1, 15);
    if (k < 880)
        return tu_rng_range(r, 16, 1024);
    if (k < 995)
        return tu_rng_range(r, 1025, 64 * TU_KIB);
    return tu_rng_range(r, 64 * TU_KIB + 1, 2 * TU_MIB);
}

/* Allocate a block of n bytes using a random allocation function. */
static void *alloc_some_way(tu_rng *r, size_t n, int *zeroed)
{
    unsigned k = (unsigned)(tu_rng_next(r) % 100);
    void *p;
    *zeroed = 0;
    if (k < 84) {
        p = malloc(n);
    } else if (k < 90) {
        p = calloc(1, n);
        *zeroed = 1;
    } else if (k < 94) {
        size_t a = (size_t)16 << (tu_rng_next(r) % 9); /* 16 .. 4096 */
        if (posix_memalign(&p, a, n) != 0)
            p = NULL;
        else if (!tu_is_aligned(p, a))
            report_error("posix_memalign(%zu, %zu) = %p misaligned", a, n, p);
    } else if (k < 97) {
        size_t a = (size_t)32 << (tu_rng_next(r) % 6);
        p = aligned_alloc(a, n);
        if (p && !tu_is_aligned(p, a))
            report_error("aligned_alloc(%zu, %zu) = %p misaligned", a, n, p);
    } else {
        p = realloc(NULL, n);
    }
    if (p && !tu_is_aligned(p, 16))
        report_error("allocation of %zu bytes returned %p, not 16-byte aligned", n, p);
    return p;
}

static void new_block(tu_rng *r, item *it, unsigned tid, uint64_t seq)
{
    int zeroed;
    size_t n = pick_size(r);
    unsigned char *p = alloc_some_way(r, n, &zeroed);
    if (!p) {
        report_error("thread %u: allocation of %zu bytes failed", tid, n);
        it->p = NULL;
        return;
    }
    if (zeroed && !tu_all_bytes(p, n, 0))
        report_error("thread %u: calloc(1, %zu) = %p not zeroed", tid, n, (void *)p);
    if (malloc_usable_size(p) < n)
        report_error("thread %u: malloc_usable_size(%p) = %zu < %zu", tid,
                     (void *)p, malloc_usable_size(p), n);
    it->p = p;
    it->n = n;
    it->owner = tid;
    it->seed = tu_seed2(tid, seq);
    tu_fill(p, n, it->seed);
}

/* Verify and free, using one of the freeing functions. */
static void release(tu_rng *r, item *it, const char *where)
{
    verify(it, where);
    switch (tu_rng_next(r) % 8) {
    case 0:
        free_sized(it->p, it->n);
        break;
    default:
        free(it->p);
        break;
    }
    it->p = NULL;
}

/* Realloc a block to a new random size, verify the kept prefix, refill. */
static void resize(tu_rng *r, item *it, unsigned tid, uint64_t seq)
{
    size_t m = pick_size(r);
    size_t keep = it->n < m ? it->n : m;
    verify(it, "before realloc");
    unsigned char *q = realloc(it->p, m);
    if (!q) {
        report_error("thread %u: realloc(%p, %zu) failed", tid, (void *)it->p, m);
        return;
    }
    if (tu_check(q, keep, it->seed) >= 0)
        report_error("thread %u: realloc %zu -> %zu lost contents", tid, it->n, m);
    it->p = q;
    it->n = m;
    it->owner = tid;
    it->seed = tu_seed2(tid, seq);
    tu_fill(q, m, it->seed);
}

/* ---------------------------------------------------------------- queues */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv_nonempty, cv_nonfull;
    item *buf;
    size_t cap, head, count;
    int closed;
} queue;

static void q_init(queue *q, size_t cap)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv_nonempty, NULL);
    pthread_cond_init(&q->cv_nonfull, NULL);
    q->buf = malloc(cap * sizeof *q->buf);
    q->cap = cap;
    q->head = q->count = 0;
    q->closed = 0;
}

static void q_destroy(queue *q)
{
    free(q->buf);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv_nonempty);
    pthread_cond_destroy(&q->cv_nonfull);
}

/* Returns 1 if pushed; 0 if full and !block. */
static int q_push(queue *q, const item *it, int block)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == q->cap) {
        if (!block) {
            pthread_mutex_unlock(&q->mu);
            return 0;
        }
        pthread_cond_wait(&q->cv_nonfull, &q->mu);
    }
    q->buf[(q->head + q->count) % q->cap] = *it;
    q->count++;
    pthread_cond_signal(&q->cv_nonempty);
    pthread_mutex_unlock(&q->mu);
    return 1;
}

/* Returns 1 with an item; 0 if empty and (!block or closed). */
static int q_pop(queue *q, item *out, int block)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == 0) {
        if (!block || q->closed) {
            pthread_mutex_unlock(&q->mu);
            return 0;
        }
        pthread_cond_wait(&q->cv_nonempty, &q->mu);
    }
    *out = q->buf[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    pthread_cond_signal(&q->cv_nonfull);
    pthread_mutex_unlock(&q->mu);
    return 1;
}

static void q_close(queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->cv_nonempty);
    pthread_mutex_unlock(&q->mu);
}

/* ------------------------------------------------------ mixed stress test */

#define SLOTS 512

static queue mixed_q[NTHREADS];
static pthread_barrier_t mixed_barrier;
static unsigned long mixed_ops;

typedef struct {
    unsigned tid;
    unsigned long remote_frees, local_frees, reallocs, allocs;
} mixed_arg;

static void drain_own(mixed_arg *a, tu_rng *r, uint64_t *seq)
{
    item it;
    while (q_pop(&mixed_q[a->tid], &it, 0)) {
        if (tu_rng_chance(r, 1, 8)) {
            /* realloc a block that another thread allocated, then free it */
            resize(r, &it, a->tid, (*seq)++);
            a->reallocs++;
        }
        release(r, &it, "remote free");
        a->remote_frees++;
    }
}

static void *mixed_worker(void *v)
{
    mixed_arg *a = v;
    tu_rng r;
    uint64_t seq = 0;
    unsigned long op;
    item *slots = calloc(SLOTS, sizeof *slots);
    size_t i;

    if (!slots) {
        report_error("thread %u: calloc of slots failed", a->tid);
        return NULL;
    }
    tu_rng_seed(&r, 1000 + a->tid);
    for (op = 0; op < mixed_ops; op++) {
        if (op % 32 == 0)
            drain_own(a, &r, &seq);
        item *it = &slots[tu_rng_next(&r) % SLOTS];
        if (!it->p) {
            new_block(&r, it, a->tid, seq++);
            a->allocs++;
            continue;
        }
        unsigned k = (unsigned)(tu_rng_next(&r) % 100);
        if (k < 25) {
            unsigned to = (unsigned)(tu_rng_next(&r) % (NTHREADS - 1));
            if (to >= a->tid)
                to++;
            verify(it, "before hand-off");
            if (q_push(&mixed_q[to], it, 0)) {
                it->p = NULL;
                continue;
            }
            release(&r, it, "local free (queue full)");
            a->local_frees++;
        } else if (k < 33) {
            resize(&r, it, a->tid, seq++);
            a->reallocs++;
        } else {
            release(&r, it, "local free");
            a->local_frees++;
        }
    }
    for (i = 0; i < SLOTS; i++)
        if (slots[i].p) {
            release(&r, &slots[i], "final free");
            a->local_frees++;
        }
    free(slots);
    /* Everyone has stopped pushing after this barrier. */
    pthread_barrier_wait(&mixed_barrier);
    drain_own(a, &r, &seq);
    return NULL;
}

static void test_stress_mixed(void **state)
{
    (void)state;
    pthread_t t[NTHREADS];
    mixed_arg args[NTHREADS];
    unsigned i;
    unsigned long remote = 0, reallocs = 0;
    double t0 = tu_now();

    reset_errors();
    mixed_ops = (unsigned long)(100000 * tu_scale());
    for (i = 0; i < NTHREADS; i++)
        q_init(&mixed_q[i], 4096);
    pthread_barrier_init(&mixed_barrier, NULL, NTHREADS);
    for (i = 0; i < NTHREADS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].tid = i;
        assert_int_equal(pthread_create(&t[i], NULL, mixed_worker, &args[i]), 0);
    }
    for (i = 0; i < NTHREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        remote += args[i].remote_frees;
        reallocs += args[i].reallocs;
    }
    pthread_barrier_destroy(&mixed_barrier);
    for (i = 0; i < NTHREADS; i++) {
        assert_int_equal(mixed_q[i].count, 0);
        q_destroy(&mixed_q[i]);
    }
    printf("  mixed: %d threads x %lu ops, %lu remote frees, %lu reallocs, %.2f s\n",
           NTHREADS, mixed_ops, remote, reallocs, tu_now() - t0);
    assert_true(remote > 0);
    assert_no_errors();
}

/* -------------------------------------------------------- thread churn */

#define CHURN_BLOCKS 96

static queue churn_q;

typedef struct {
    unsigned tid;
    item left[CHURN_BLOCKS]; /* blocks still allocated when the thread exits */
    unsigned nleft;
} churn_arg;

static void *collector(void *v)
{
    unsigned long *freed = v;
    tu_rng r;
    item it;
    tu_rng_seed(&r, 4242);
    while (q_pop(&churn_q, &it, 1)) {
        release(&r, &it, "collector free");
        (*freed)++;
    }
    return NULL;
}

static void *short_lived(void *v)
{
    churn_arg *a = v;
    tu_rng r;
    item blocks[CHURN_BLOCKS];
    unsigned i;
    tu_rng_seed(&r, 77777 + a->tid);
    for (i = 0; i < CHURN_BLOCKS; i++)
        new_block(&r, &blocks[i], a->tid, i);
    a->nleft = 0;
    for (i = 0; i < CHURN_BLOCKS; i++) {
        if (!blocks[i].p)
            continue;
        unsigned k = (unsigned)(tu_rng_next(&r) % 4);
        if (k == 0 || k == 1)
            release(&r, &blocks[i], "churn local free");
        else if (k == 2)
            q_push(&churn_q, &blocks[i], 1);
        else
            a->left[a->nleft++] = blocks[i];
    }
    return NULL; /* exits with a->left still allocated */
}

static void free_leftovers(churn_arg *a, tu_rng *r)
{
    unsigned i;
    for (i = 0; i < a->nleft; i++)
        release(r, &a->left[i], "free of a dead thread's block");
    a->nleft = 0;
}

static void test_thread_churn(void **state)
{
    (void)state;
    enum { WAVE = 8 };
    unsigned waves = (unsigned)(60 * tu_scale());
    unsigned total = waves * WAVE, w, i;
    churn_arg *args = calloc(total, sizeof *args);
    pthread_t coll;
    unsigned long collected = 0;
    tu_rng r;
    double t0 = tu_now();

    assert_non_null(args);
    reset_errors();
    tu_rng_seed(&r, 5);
    q_init(&churn_q, 1024);
    assert_int_equal(pthread_create(&coll, NULL, collector, &collected), 0);
    for (w = 0; w < waves; w++) {
        pthread_t t[WAVE];
        for (i = 0; i < WAVE; i++) {
            churn_arg *a = &args[w * WAVE + i];
            a->tid = w * WAVE + i;
            if (pthread_create(&t[i], NULL, short_lived, a) != 0)
                fail_msg("pthread_create failed in wave %u", w);
        }
        for (i = 0; i < WAVE; i++)
            assert_int_equal(pthread_join(t[i], NULL), 0);
        /* Free the leftovers of the wave before last: the memory of threads
         * that have exited must be fully usable. */
        if (w >= 2)
            for (i = 0; i < WAVE; i++)
                free_leftovers(&args[(w - 2) * WAVE + i], &r);
    }
    for (i = 0; i < total; i++)
        free_leftovers(&args[i], &r);
    q_close(&churn_q);
    assert_int_equal(pthread_join(coll, NULL), 0);
    q_destroy(&churn_q);
    free(args);
    printf("  churn: %u short-lived threads, %lu blocks handed to the collector, %.2f s\n",
           total, collected, tu_now() - t0);
    assert_true(collected > 0);
    assert_no_errors();
}

/* Threads that exit without freeing anything, many times: the allocator must
 * not run out of per-thread resources. */
static void *alloc_nothing_freed(void *v)
{
    static unsigned long counter; /* threads run one at a time */
    item *out = v;
    tu_rng r;
    tu_rng_seed(&r, ++counter);
    new_block(&r, out, 999, counter);
    return NULL;
}

static void test_many_thread_exits(void **state)
{
    (void)state;
    unsigned n = (unsigned)(600 * tu_scale()), i;
    item *items = calloc(n, sizeof *items);
    tu_rng r;
    assert_non_null(items);
    reset_errors();
    tu_rng_seed(&r, 6);
    for (i = 0; i < n; i++) {
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, alloc_nothing_freed, &items[i]), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
    }
    for (i = 0; i < n; i++) {
        assert_non_null(items[i].p);
        release(&r, &items[i], "free after thread exit");
    }
    free(items);
    assert_no_errors();
}

/* ---------------------------------------------------- producer/consumer */

#define PRODUCERS 3
#define CONSUMERS 3

static queue pc_q;
static unsigned long pc_per_producer;

static void *producer(void *v)
{
    unsigned tid = (unsigned)(uintptr_t)v;
    tu_rng r;
    unsigned long i;
    tu_rng_seed(&r, 31337 + tid);
    for (i = 0; i < pc_per_producer; i++) {
        item it;
        new_block(&r, &it, tid, i);
        if (it.p)
            q_push(&pc_q, &it, 1);
    }
    return NULL;
}

static void *consumer(void *v)
{
    unsigned long *count = v;
    tu_rng r;
    item it;
    tu_rng_seed(&r, 555);
    while (q_pop(&pc_q, &it, 1)) {
        release(&r, &it, "consumer free");
        (*count)++;
    }
    return NULL;
}

static void test_producer_consumer(void **state)
{
    (void)state;
    pthread_t p[PRODUCERS], c[CONSUMERS];
    unsigned long counts[CONSUMERS] = { 0 }, total = 0;
    unsigned i;
    double t0 = tu_now();

    reset_errors();
    pc_per_producer = (unsigned long)(100000 * tu_scale());
    q_init(&pc_q, 256);
    for (i = 0; i < CONSUMERS; i++)
        assert_int_equal(pthread_create(&c[i], NULL, consumer, &counts[i]), 0);
    for (i = 0; i < PRODUCERS; i++)
        assert_int_equal(pthread_create(&p[i], NULL, producer, (void *)(uintptr_t)(100 + i)), 0);
    for (i = 0; i < PRODUCERS; i++)
        assert_int_equal(pthread_join(p[i], NULL), 0);
    q_close(&pc_q);
    for (i = 0; i < CONSUMERS; i++) {
        assert_int_equal(pthread_join(c[i], NULL), 0);
        total += counts[i];
    }
    q_destroy(&pc_q);
    printf("  producer/consumer: %lu blocks, %.2f s\n", total, tu_now() - t0);
    assert_int_equal(total, pc_per_producer * PRODUCERS);
    assert_no_errors();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress_mixed),
        cmocka_unit_test(test_thread_churn),
        cmocka_unit_test(test_many_thread_exits),
        cmocka_unit_test(test_producer_consumer),
    };
    /* A deadlock must show up as a failure, not hang CI forever. */
    alarm((unsigned)(300 * tu_scale()));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
