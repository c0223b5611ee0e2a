/* soak: a steady workload for minutes, with the resident set sampled.
 *
 *   build/tests/soak [SECONDS]        (default: HAKMEM_SOAK_SECONDS, else 600)
 *
 * Four worker threads each keep 1024 live blocks (tiny 80%, mid up to
 * 64 KiB 17%, up to 256 KiB 2.5%, page runs up to 2 MiB 0.5%) and replace
 * them at random: check the pattern, free, allocate with one of malloc,
 * calloc, aligned_alloc, posix_memalign, realloc in place of free; one
 * replacement in ten swaps the block with one another thread left in a
 * shared mailbox (remote frees); now and then a 33-40 MiB block (a mapping
 * of its own) comes and goes.  Each worker thread ends after 2 s and a new
 * one carries on with its blocks, so exited threads' heaps are adopted and
 * blocks are freed into them all the time.  Workers pause 1 ms every 2000
 * operations, so the soak takes about one core of a shared machine.
 *
 * Columns: RSS; live bytes the workers hold (asked for: page runs are
 * marked on 3 of their pages only); SuperSlabs mapped; page runs live and
 * freed pages the large tier keeps (both as mapped bytes); operations;
 * heaps; threads started.
 *
 * The live set is constant by construction, so once the caches and the
 * fragmentation have settled the resident set must stop growing.  The main
 * thread samples RSS (/proc/self/statm) every few seconds and prints the
 * series as a table; the first 20% of the run is the warm-up.  Checks, each
 * counted:
 *   1. no block was corrupted and no allocation failed;
 *   2. RSS after the warm-up never exceeds 1.25 x the warm-up's largest
 *      sample + 8 MiB.  The live bytes themselves move by several MiB (a
 *      few dozen page runs of up to 2 MiB are in the set at any time), and
 *      the caches that follow them are bounded by design: a thread keeps up
 *      to HAKMEM_PURGE_RETAIN_MIB (12) of empty slabs, the large tier up to
 *      twice its recent live peak; 25% covers those swings, while a leak or
 *      fragmentation that grows with time crosses it within minutes;
 *   3. the heap count stays bounded (exited threads' heaps are reused);
 *   4. hak_check() is clean at the end;
 *   5. once every block is freed and malloc_trim(0) ran, RSS is back within
 *      16 MiB of where it started.
 * The last line is "soak: N passed, N failed" (tests/run_long.sh counts it).
 */
#include "test_util.h"

#include <stdatomic.h>

#define WORKERS 4
#define SLOTS 1024
#define MAILBOX 256
#define GENERATION_S 2.0
#define MAX_SAMPLES 4096

typedef struct {
    unsigned char *p;
    size_t n;
    uint64_t seed;
} blk;

/* ------------------------------------------------------------- errors */

static atomic_ulong errors;
static char first_error[512];
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;

static void error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void error(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&err_mu);
    if (atomic_fetch_add(&errors, 1) == 0) {
        va_start(ap, fmt);
        vsnprintf(first_error, sizeof first_error, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&err_mu);
}

/* ------------------------------------------------------------- blocks */

/* tu_fill/tu_check with word stores: blocks are 16-byte aligned, and the
 * tests are built with -fno-builtin, where tu_fill's memcpy per word would
 * make the soak measure memcpy calls.  Same pattern as tu_fill. */
static void fill(unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t *w = (uint64_t *)(void *)p;
    size_t i, words = n / 8;
    for (i = 0; i < words; i++)
        w[i] = tu_word(seed, i);
    if (n % 8) {
        uint64_t last = tu_word(seed, words);
        __builtin_memcpy(p + words * 8, &last, n % 8);
    }
}

static int filled(const unsigned char *p, size_t n, uint64_t seed)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    size_t i, words = n / 8;
    for (i = 0; i < words; i++)
        if (w[i] != tu_word(seed, i))
            return 0;
    if (n % 8) {
        uint64_t last = tu_word(seed, words);
        return __builtin_memcmp(p + words * 8, &last, n % 8) == 0;
    }
    return 1;
}

/* The pattern everywhere up to 8 KiB; above, at the head, a piece of the
 * middle and the tail (every page of a 2 MiB block is not needed to see an
 * overlap, and writing them all would make the soak measure memset). */
static void mark(unsigned char *p, size_t n, uint64_t seed)
{
    if (n <= 8192) {
        fill(p, n, seed);
        return;
    }
    fill(p, 2048, seed);
    fill(p + ((n / 2) & ~(size_t)15), 256, seed ^ 0x55);
    fill(p + n - 2048, 2048, seed ^ 0xAA);
}

static int marked(const unsigned char *p, size_t n, uint64_t seed)
{
    if (n <= 8192)
        return filled(p, n, seed);
    return filled(p, 2048, seed) && filled(p + ((n / 2) & ~(size_t)15), 256, seed ^ 0x55) &&
           filled(p + n - 2048, 2048, seed ^ 0xAA);
}

static size_t soak_size(tu_rng *r)
{
    unsigned k = (unsigned)(tu_rng_next(r) % 1000);
    if (k < 800)
        return tu_rng_range(r, 1, 1024);
    if (k < 970)
        return tu_rng_range(r, 1025, 64 * TU_KIB);
    if (k < 995)
        return tu_rng_range(r, 64 * TU_KIB + 1, 256 * TU_KIB);
    return tu_rng_range(r, 256 * TU_KIB + 1, 2 * TU_MIB);
}

static atomic_size_t live_bytes;

static void *soak_alloc(tu_rng *r, size_t n)
{
    void *p = NULL;
    switch (tu_rng_next(r) % 8) {
    case 0:
        p = calloc(1, n);
        if (p && !tu_all_bytes(p, n < 4096 ? n : 4096, 0))
            error("calloc(1, %zu) = %p not zeroed", n, p);
        break;
    case 1:
        p = aligned_alloc(64, (n + 63) & ~(size_t)63);
        if (p && !tu_is_aligned(p, 64))
            error("aligned_alloc(64) = %p", p);
        break;
    case 2:
        if (posix_memalign(&p, 4096, n) != 0)
            p = NULL;
        else if (!tu_is_aligned(p, 4096))
            error("posix_memalign(4096) = %p", p);
        break;
    default:
        p = malloc(n);
    }
    if (!p)
        error("allocation of %zu bytes failed: %s", n, strerror(errno));
    return p;
}

static void blk_drop(blk *b, const char *who)
{
    if (!b->p)
        return;
    if (!marked(b->p, b->n, b->seed))
        error("%s: block %p (%zu bytes) corrupted", who, (void *)b->p, b->n);
    free(b->p);
    atomic_fetch_sub(&live_bytes, b->n);
    b->p = NULL;
}

/* ------------------------------------------------------------ mailbox */

static struct {
    pthread_mutex_t mu;
    blk b;
} mailbox[MAILBOX];

/* Put b in a random box and take what was there (made by any thread). */
static void mailbox_swap(tu_rng *r, blk *b)
{
    unsigned i = (unsigned)(tu_rng_next(r) % MAILBOX);
    pthread_mutex_lock(&mailbox[i].mu);
    blk old = mailbox[i].b;
    mailbox[i].b = *b;
    pthread_mutex_unlock(&mailbox[i].mu);
    *b = old;
}

/* ------------------------------------------------------------ workers */

typedef struct {
    unsigned id;
    blk slot[SLOTS];
    tu_rng r;
    uint64_t seq;
    atomic_ulong ops;
    atomic_int done;          /* this generation's thread has returned */
    pthread_t thread;
} worker;

static worker workers[WORKERS];
static atomic_int stop_all;

static void step(worker *w)
{
    tu_rng *r = &w->r;
    blk *b = &w->slot[tu_rng_next(r) % SLOTS];
    unsigned k = (unsigned)(tu_rng_next(r) % 100);
    uint64_t seed = ((uint64_t)w->id << 56) ^ w->seq++;

    if (b->p && k < 10) {             /* hand it to another thread */
        mailbox_swap(r, b);
        blk_drop(b, "block from the mailbox");
    } else if (b->p && k < 15) {      /* resize in place of free */
        size_t n = soak_size(r), keep = n < b->n ? n : b->n;
        if (!marked(b->p, b->n, b->seed))
            error("block %p (%zu bytes) corrupted before realloc", (void *)b->p, b->n);
        unsigned char *q = realloc(b->p, n);
        if (!q) {
            error("realloc(%zu -> %zu) failed", b->n, n);
            return;
        }
        if (!filled(q, keep < 2048 ? keep : 2048, b->seed))
            error("realloc(%zu -> %zu) lost the contents", b->n, n);
        atomic_fetch_add(&live_bytes, n);
        atomic_fetch_sub(&live_bytes, b->n);
        b->p = q;
        b->n = n;
        b->seed = seed;
        mark(q, n, seed);
        return;
    } else {
        blk_drop(b, "worker");
    }
    b->n = soak_size(r);
    b->seed = seed;
    b->p = soak_alloc(r, b->n);
    if (!b->p)
        return;
    atomic_fetch_add(&live_bytes, b->n);
    mark(b->p, b->n, seed);

    if (tu_rng_next(r) % 2000 == 0) { /* a huge block comes and goes */
        size_t n = tu_rng_range(r, 33 * TU_MIB, 40 * TU_MIB);
        unsigned char *h = malloc(n);
        if (!h) {
            error("malloc(%zu) failed", n);
            return;
        }
        h[0] = 1;
        h[n - 1] = 2;
        free(h);
    }
}

static void *worker_main(void *v)
{
    worker *w = v;
    struct timespec pause = { 0, 1000 * 1000 };
    double end = tu_now() + GENERATION_S;
    while (!atomic_load(&stop_all) && tu_now() < end) {
        for (unsigned i = 0; i < 2000; i++)
            step(w);
        atomic_fetch_add(&w->ops, 2000);
        nanosleep(&pause, NULL);
    }
    atomic_store(&w->done, 1);
    return NULL;
}

static unsigned long threads_started;

static void worker_start(worker *w)
{
    atomic_store(&w->done, 0);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        error("pthread_create: %s", strerror(rc));
        atomic_store(&w->done, 1);
        return;
    }
    threads_started++;
}

/* ------------------------------------------------------------- samples */

static size_t rss_now(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    unsigned long size = 0, res = 0;
    if (sscanf(buf, "%lu %lu", &size, &res) != 2)
        return 0;
    return (size_t)res * tu_page_size();
}

static uint64_t stat_u64(const char *key)
{
    int ok;
    uint64_t v = tu_stat(key, &ok);
    return ok ? v : 0;
}

static double mib(size_t b) { return (double)b / (double)TU_MIB; }

static unsigned passed, failed;

static void check(int ok, const char *what)
{
    printf("soak: %s: %s\n", ok ? "ok  " : "FAIL", what);
    if (ok)
        passed++;
    else
        failed++;
}

int main(int argc, char **argv)
{
    const char *env = getenv("HAKMEM_SOAK_SECONDS");
    double secs = argc > 1 ? atof(argv[1]) : env ? atof(env) : 600;
    if (secs < 5)
        secs = 5;
    double interval = secs / 60 < 1 ? 1 : secs / 60 > 5 ? 5 : secs / 60;
    double warmup = secs * 0.2;
    static size_t rss[MAX_SAMPLES];
    static double when[MAX_SAMPLES];
    unsigned ns = 0;
    char what[256];

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned i = 0; i < MAILBOX; i++)
        pthread_mutex_init(&mailbox[i].mu, NULL);
    size_t rss_start = rss_now();
    printf("soak: %d threads (each replaced every %.0f s), %d live blocks each, %.0f s, "
           "RSS every %.0f s, warm-up %.0f s\n",
           WORKERS, GENERATION_S, SLOTS, secs, interval, warmup);
    printf("%7s %9s %10s %9s %9s %9s %8s %6s %8s\n", "t(s)", "RSS(MiB)", "live(MiB)",
           "SS(MiB)", "runs(MiB)", "kept(MiB)", "Mops", "heaps", "threads");

    double t0 = tu_now(), next = t0 + interval, end = t0 + secs;
    for (unsigned i = 0; i < WORKERS; i++) {
        workers[i].id = i;
        tu_rng_seed(&workers[i].r, 0x50A4 + i);
        worker_start(&workers[i]);
    }
    for (;;) {
        double now = tu_now();
        if (now >= end)
            break;
        for (unsigned i = 0; i < WORKERS; i++)
            if (atomic_load(&workers[i].done)) {
                pthread_join(workers[i].thread, NULL);
                worker_start(&workers[i]);      /* a new thread, the same blocks */
            }
        if (now >= next && ns < MAX_SAMPLES) {
            unsigned long ops = 0;
            for (unsigned i = 0; i < WORKERS; i++)
                ops += atomic_load(&workers[i].ops);
            when[ns] = now - t0;
            rss[ns] = rss_now();
            printf("%7.0f %9.1f %10.1f %9llu %9.1f %9.1f %8.1f %6llu %8lu\n", when[ns],
                   mib(rss[ns]), mib(atomic_load(&live_bytes)),
                   (unsigned long long)stat_u64("superslabs_mapped") * 2,
                   mib(stat_u64("large_live_bytes")), mib(stat_u64("large_cached_bytes")),
                   (double)ops / 1e6, (unsigned long long)stat_u64("heaps"), threads_started);
            ns++;
            next += interval;
        }
        usleep(20000);
    }
    atomic_store(&stop_all, 1);
    for (unsigned i = 0; i < WORKERS; i++)
        pthread_join(workers[i].thread, NULL);

    /* 1 */
    snprintf(what, sizeof what, "%lu errors%s%s", atomic_load(&errors),
             atomic_load(&errors) ? "; first: " : "", first_error);
    check(atomic_load(&errors) == 0, what);

    /* 2 */
    size_t warm_max = 0, late_max = 0;
    unsigned nlate = 0;
    for (unsigned i = 0; i < ns; i++) {
        if (when[i] <= warmup) {
            if (rss[i] > warm_max)
                warm_max = rss[i];
        } else {
            nlate++;
            if (rss[i] > late_max)
                late_max = rss[i];
        }
    }
    size_t bound = warm_max + warm_max / 4 + 8 * TU_MIB;
    snprintf(what, sizeof what, "RSS after the warm-up at most %.1f MiB (%u samples), bound "
             "1.25 x %.1f MiB (warm-up max) + 8 MiB = %.1f MiB",
             mib(late_max), nlate, mib(warm_max), mib(bound));
    check(nlate > 0 && warm_max > 0 && late_max <= bound, what);

    /* 3: every worker thread is a new one every 2 s; their heaps are reused */
    uint64_t heaps = stat_u64("heaps");
    snprintf(what, sizeof what, "%llu heaps for %lu threads of which %d (+1) lived at once",
             (unsigned long long)heaps, threads_started, WORKERS);
    check(heaps <= 2 * WORKERS + 2, what);

    /* 4 */
    unsigned bad = hak_check();
    snprintf(what, sizeof what, "hak_check() found %u problems", bad);
    check(bad == 0, what);

    /* 5 */
    for (unsigned i = 0; i < WORKERS; i++)
        for (unsigned k = 0; k < SLOTS; k++)
            blk_drop(&workers[i].slot[k], "final free");
    for (unsigned i = 0; i < MAILBOX; i++)
        blk_drop(&mailbox[i].b, "final free of the mailbox");
    malloc_trim(0);
    size_t rss_end = rss_now();
    snprintf(what, sizeof what, "RSS %.1f MiB at the start, %.1f MiB after every block was "
             "freed and malloc_trim(0)", mib(rss_start), mib(rss_end));
    check(rss_end <= rss_start + 16 * TU_MIB && atomic_load(&errors) == 0, what);

    printf("soak: %u passed, %u failed\n", passed, failed);
    return failed ? 1 : 0;
}
