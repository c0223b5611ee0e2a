/* Refill: the slow paths behind the front cache.
 *
 *   unified_cache_refill(h, cls)      a bin ran dry (malloc miss)
 *     hak_heap_drain_remote(h)        first take back frees from other threads
 *     slab_take_free / slab_carve     then fill the bin from a partial slab
 *     slab_alloc                      or from a new slab:
 *       warm_pool_take                  a SuperSlab of this heap with room,
 *         shared_pool_acquire           else up to WARM_POOL_PREFILL_BUDGET
 *                                       empty SuperSlabs from the shared pool
 *   unified_cache_flush(h, cls, keep) a bin overflowed (free), or the thread
 *                                     exits: blocks go back to their slabs
 *   hak_free_remote_chain(s, ...)     blocks of another heap's slab leave a
 *                                     bin: lock-free push to the slab
 *
 * Everything here touches only the calling thread's heap, except
 * hak_free_remote_chain (atomics on another heap's slab and remote queue),
 * the shared pool and the orphan list (one lock), and hak_heap_trim_orphans,
 * which acts for heaps whose threads exited while they are off that list.
 */
#define _GNU_SOURCE                /* sched_getcpu */
#include <errno.h>
#include <stdio.h>
#include <sched.h>
#include <string.h>

#include "hakmem_internal.h"

extern pthread_key_t hak_thread_key;

/* ------------------------------------------------------ lists of the heap */

static void partial_push(hak_heap_t *h, hak_slab_t *s) {
    hak_slab_t **head = &h->partial[s->cls];
    s->prev = NULL;
    s->next = *head;
    if (*head) (*head)->prev = s;
    *head = s;
    s->in_partial = 1;
}

static void partial_remove(hak_heap_t *h, hak_slab_t *s) {
    if (s->prev) s->prev->next = s->next;
    else h->partial[s->cls] = s->next;
    if (s->next) s->next->prev = s->prev;
    s->next = s->prev = NULL;
    s->in_partial = 0;
}

static void warm_push(hak_heap_t *h, hak_superslab_t *ss) {
    ss->prev = NULL;
    ss->next = h->warm;
    if (h->warm) h->warm->prev = ss;
    h->warm = ss;
    ss->in_warm = 1;
}

static void warm_remove(hak_heap_t *h, hak_superslab_t *ss) {
    if (ss->prev) ss->prev->next = ss->next;
    else h->warm = ss->next;
    if (ss->next) ss->next->prev = ss->prev;
    ss->next = ss->prev = NULL;
    ss->in_warm = 0;
}

/* --------------------------------------------------------------- slabs */

/* Slots a slab of class cls covers: the fewest that hold HAK_SPAN_BLOCKS
 * blocks, at most HAK_SPAN_MAX_SLOTS.  In release that is one 64 KiB slot
 * for every class (2 blocks of 32 KiB).  Spans of 8 blocks (16 KiB blocks
 * on 2 slots, 32 KiB on 4) needed runs of free slots, which a SuperSlab
 * whose single slots come and go seldom has, so fresh slots were faulted in
 * beside free resident ones, and each class's partial slab kept more blocks
 * carved: bench_mstress 4 40 25000 42 38.8 -> 30.1 MB peak RSS (38.4 ->
 * 33.2 MB with ORPHAN_PIN_SLOTS below, 7 interleaved runs, medians),
 * bench_random_mixed 2000000 256 42 1024 65536 12.1 -> 11.3 MB, speed
 * within spreads (3 interleaved runs of 36 rows, medians).  The hardened
 * flavor keeps spans of 8 blocks for its classes up to 256 KiB: with spans
 * of one (and before ORPHAN_PIN_SLOTS), test_chaos's thread waves left 9-43
 * SuperSlabs mapped (11-13 with 8). */
#if HAKMEM_HARDENED
#define HAK_SPAN_BLOCKS 8
#else
#define HAK_SPAN_BLOCKS 1
#endif
static unsigned class_span_slots(unsigned cls) {
    uint32_t bsize = hak_class_size[cls];
    unsigned k = (unsigned)(((uint64_t)bsize * HAK_SPAN_BLOCKS + HAK_SLAB_SIZE - 1) >> HAK_SLAB_SHIFT);
    return k < 1 ? 1 : k > HAK_SPAN_MAX_SLOTS ? HAK_SPAN_MAX_SLOTS : k;
}

static uint32_t run_mask(unsigned k) { return (uint32_t)(((uint64_t)1 << k) - 1); }

/* First slot of k contiguous free slots of ss, or 0 if there is none.  A
 * single slot is taken from the still-resident ones first (no page faults). */
static unsigned superslab_find_run(const hak_superslab_t *ss, unsigned k) {
    uint32_t m = ss->free_mask, run = run_mask(k);
    if (k == 1) {
        uint32_t warm = m & ss->dirty_mask;
        return warm ? (unsigned)__builtin_ctz(warm) : m ? (unsigned)__builtin_ctz(m) : 0;
    }
    for (unsigned i = 1; i + k <= HAK_SLABS_PER_SS; i++)
        if (((m >> i) & run) == run) return i;
    return 0;
}

/* warm_pool_take: a SuperSlab of h with k contiguous free slots (*slot set
 * to the first); prefill the warm pool from the shared pool if none has. */
static hak_superslab_t *warm_pool_take(hak_heap_t *h, unsigned cls, unsigned k, unsigned *slot) {
    for (hak_superslab_t *ss = h->warm; ss; ss = ss->next)
        if ((*slot = superslab_find_run(ss, k)) != 0) return ss;
    hak_superslab_t *got[WARM_POOL_PREFILL_BUDGET];
    unsigned n = shared_pool_acquire(got, WARM_POOL_PREFILL_BUDGET);
    HAK_STAT_ADD(h->stats[cls].prefills, n);
    for (unsigned i = 0; i < n; i++) {
        got[i]->heap = h;
        warm_push(h, got[i]);
        h->nwarm_empty++;
    }
    if (!h->warm || !n) return NULL;
    *slot = superslab_find_run(h->warm, k);
    return h->warm;
}

static hak_slab_t *slab_alloc(hak_heap_t *h, unsigned cls) {
    unsigned k = class_span_slots(cls), i = 0;
    hak_superslab_t *ss = warm_pool_take(h, cls, k, &i);
    if (!ss) return NULL;
    uint32_t run = run_mask(k) << i;
    ss->free_mask &= ~run;
    uint8_t resident = (ss->dirty_mask & run) == run;
    if (ss->dirty_mask & run) {            /* resident pages: reused without faults */
        h->dirty_bytes -= (size_t)__builtin_popcount(ss->dirty_mask & run) * HAK_SLAB_SIZE;
        ss->dirty_mask &= ~run;
    }
    ss->tier = HAK_TIER_HOT;
    if (ss->nused++ == 0) h->nwarm_empty--;
    if (ss->free_mask == 0) warm_remove(h, ss);

    hak_slab_t *s = &ss->slabs[i];
    for (unsigned j = 1; j < k; j++) {     /* the span's other slots point back */
        s[j].span_back = (uint8_t)j;
        __atomic_store_n(&s[j].carved_lim, 0, __ATOMIC_RELAXED);
        s[j].carved = 0;
    }
    uint32_t bsize = hak_class_size[cls];
    s->span_slots = (uint8_t)k;
    s->span_back = 0;
    s->resident = resident;
    s->bsize = bsize;
    s->cls = (uint8_t)cls;
    s->bin_off = (uint16_t)(cls * sizeof(hak_bin_t));
    s->div_magic = UINT64_MAX / bsize + 1 + ((bsize & (bsize - 1)) == 0);  /* floor(2^64/d) + 1 */
    s->cap_end = (uint32_t)(((uint32_t)k << HAK_SLAB_SHIFT) / bsize) * bsize;
    hak_slab_set_carved(s, 0);
    s->free = NULL;
    s->nfree = 0;
    s->used = 0;
    s->in_partial = 0;
    /* Publish the owner last: the free gate trusts a slab whose owner is set. */
    __atomic_store_n(&s->owner, h, __ATOMIC_RELEASE);
    return s;
}

/* Give an empty SuperSlab back to the shared pool (which purges what is
 * still resident of it, or unmaps it). */
static void superslab_to_pool(hak_heap_t *h, hak_superslab_t *ss) {
    warm_remove(h, ss);
    h->dirty_bytes -= (size_t)__builtin_popcount(ss->dirty_mask) * HAK_SLAB_SIZE;
    shared_pool_release(ss);
}

/* A SuperSlab with no slab in use: the heap keeps empty SuperSlabs as its
 * warm reserve, as many as HAKMEM_PURGE_RETAIN_MIB covers (at least one),
 * and gives the others back to the shared pool, which purges them.  Their
 * resident pages count in dirty_bytes either way, so the bound on what a
 * heap keeps resident is unchanged; a reserve of one made a burst of a few
 * MiB allocated and freed in a loop purge and fault its pages every time
 * (bench_simple 1 1600: 245 madvise calls in 0.3 s). */
static void superslab_on_empty(hak_heap_t *h, hak_superslab_t *ss, int force) {
    size_t keep = ((size_t)hak_opt.purge_retain_mib << 20) / HAK_SS_SIZE;
    if (keep < 1) keep = 1;
    if (force || h->nwarm_empty >= keep) superslab_to_pool(h, ss);
    else h->nwarm_empty++;
}

/* Purge free slabs until at most `target` bytes of them stay resident.
 * The tier decides the order: SuperSlabs that had no slab taken or given
 * back since the last purge (cold) go first, then the hot ones, each pass
 * from the warm list's tail (longest unused).  Then everything turns cold,
 * so a SuperSlab stays hot only while it is used between two purges. */
static size_t heap_purge(hak_heap_t *h, size_t target) {
    size_t purged = 0;
    hak_superslab_t *tail = h->warm;
    while (tail && tail->next) tail = tail->next;
    for (int pass = 0; pass < 2; pass++) {
        for (hak_superslab_t *ss = tail; ss && h->dirty_bytes > target; ss = ss->prev) {
            if (pass == 0 && ss_tier_is_hot(ss)) continue;
            size_t n = superslab_purge(ss);
            h->dirty_bytes -= n;
            purged += n;
        }
    }
    for (hak_superslab_t *ss = h->warm; ss; ss = ss->next) ss->tier = HAK_TIER_COLD;
    return purged;
}

static void slab_release(hak_heap_t *h, hak_slab_t *s, int force) {
    if (s->in_partial) partial_remove(h, s);
    __atomic_store_n(&s->owner, NULL, __ATOMIC_RELEASE);
    hak_slab_set_carved(s, 0);
    s->free = NULL;
    s->nfree = 0;
    hak_superslab_t *ss = (hak_superslab_t *)((uintptr_t)s & ~(HAK_SS_SIZE - 1));
    unsigned k = s->span_slots;
    uint32_t run = run_mask(k) << s->index;
    for (unsigned j = 1; j < k; j++) s[j].span_back = 0;
    if (ss->free_mask == 0) warm_push(h, ss);
    ss->free_mask |= run;
    ss->dirty_mask |= run;
    ss->tier = HAK_TIER_HOT;
    h->dirty_bytes += (size_t)k << HAK_SLAB_SHIFT;
    if (--ss->nused == 0) superslab_on_empty(h, ss, force);
    size_t bound = (size_t)hak_opt.purge_retain_mib << 20;
    if (h->dirty_bytes > bound) heap_purge(h, bound / 2);
}

/* Blocks came back to s: make it findable, and release it once empty unless
 * it is the last slab this heap has for its class (so that a malloc/free
 * loop on a fresh class does not map and release a slab each time). */
static void slab_after_return(hak_heap_t *h, hak_slab_t *s, int force) {
    if (!s->in_partial) partial_push(h, s);
    if (s->used != 0) return;
    if (atomic_load_explicit(&s->xthread_free, memory_order_acquire) != 0) return;
    if (!force && h->partial[s->cls] == s && s->next == NULL) return;
    slab_release(h, s, force);
}

/* Debug: every node of a slab's free list must be a carved block of it. */
static void slab_check_node(const hak_slab_t *s, const void *b) {
    hak_debug_check_node(s, s->cls, b, "refill");   /* aborts if b is not a block of s */
}

/* Move up to `want` blocks from the head of the slab's free list onto the
 * bin: the run keeps its links (each decoded once, which checks it), only
 * the last one is written. */
static void slab_take_free(hak_slab_t *s, hak_bin_t *bin, uint32_t want) {
    void *first = s->free, *last = first, *b;
    uint32_t n = 1;
    if (HAKMEM_DEBUG_CHECKS) slab_check_node(s, first);
    while ((b = hak_link_get(last, "refill")) != NULL && n < want) {
        if (HAKMEM_DEBUG_CHECKS) slab_check_node(s, b);
        last = b;
        n++;
    }
    hak_link_set(last, bin->head);
    bin->head = first;
    bin->room -= n;
    s->free = b;
    s->nfree -= n;
    s->used += n;
}

#if HAKMEM_HARDENED
/* Hardened: the n fresh blocks from base go on the bin in random order
 * (Fisher-Yates with the heap's xorshift generator), so the address of the
 * next block cannot be guessed from the last one. */
static void *carve_shuffled(hak_heap_t *h, uintptr_t base, uint32_t bsize, uint32_t n, void *head) {
    uint16_t idx[HAK_CARVE_BYTES / HAK_MIN_ALIGN];
    uint64_t x = h->rng ? h->rng : (hak_free_key ^ (uintptr_t)h) | 1;
    for (uint32_t i = 0; i < n; i++) idx[i] = (uint16_t)i;
    for (uint32_t i = n - 1; i > 0; i--) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint32_t j = (uint32_t)((x >> 32) % (i + 1));
        uint16_t t = idx[i]; idx[i] = idx[j]; idx[j] = t;
    }
    h->rng = x;
    for (uint32_t i = 0; i < n; i++) {
        uintptr_t blk = base + (uintptr_t)idx[i] * bsize;
        hak_link_set((void *)blk, head);
        ((uintptr_t *)blk)[1] = hak_block_key(blk);
        head = (void *)blk;
    }
    return head;
}
#endif

/* slab_carve: cut up to `want` never-used blocks off the slab's frontier,
 * but no more than about HAK_CARVE_BYTES at a time (at least 8 blocks):
 * carving writes every block it cuts, so a thread that needs three 1 KiB
 * blocks touches 16 KiB, not the 64 KiB a full refill would.  A slab whose
 * pages were resident when it was started (a slot another class gave back)
 * costs no new pages, so it is carved `want` at a time (up to 256 blocks). */
static void slab_carve(hak_heap_t *h, hak_slab_t *s, hak_bin_t *bin, uint32_t want) {
    uint32_t bsize = s->bsize;
    uint32_t n = want, step = HAK_CARVE_BYTES / bsize;
    if (step < 8) step = 8;
    if (s->resident) step = HAK_CARVE_BYTES / HAK_MIN_ALIGN;
    if (n > step) n = step;
    if (s->carved + (uint64_t)n * bsize > s->cap_end) n = (s->cap_end - s->carved) / bsize;
    uintptr_t base = hak_slab_base(s) + s->carved;
    void *head = bin->head;
#if HAKMEM_HARDENED
    if (hak_opt.random_carve && n > 1) {
        head = carve_shuffled(h, base, bsize, n, head);
    } else
#endif
    for (uint32_t i = n; i-- > 0;) {
        uintptr_t blk = base + (uintptr_t)i * bsize;
        hak_link_set((void *)blk, head);
        ((uintptr_t *)blk)[1] = hak_block_key(blk);
        head = (void *)blk;
    }
    bin->head = head;
    bin->room -= n;
    if (HAKMEM_BUILD_DEBUG) pagefault_telemetry_touch(h, s->cls, base, (size_t)n * bsize);
    hak_slab_set_carved(s, s->carved + n * bsize);   /* free gates read it */
    s->used += n;
}

/* -------------------------------------------------------- front cache */


/* The starter heaps.  A young heap (one that has no SuperSlab yet) takes
 * its first three refills of a tiny class from one of these, under that
 * starter's lock, rather than from a slab of its own: a thread that
 * allocates a few blocks of many classes and exits (bench_threads: 2000
 * threads of 50 blocks in 20 classes) touches the pages of blocks that
 * other threads used before it, not one fresh page per class in a
 * SuperSlab of its own.  The refills take 1, 2 and 4 blocks (at least a
 * cache line's worth: starter_want): a block fetched and never used is
 * written for nothing (with two refills of 4, each of bench_threads'
 * threads fetched 11 KB it never used).  A heap that needed a slab of its
 * own (a fourth refill of a class, or a mid class) has its SuperSlab from
 * then on and takes nothing more from here.  No thread owns a starter:
 * every operation on it as an owner (its refills, which also take back the
 * remote frees that threads' flushes sent to its slabs) runs under its
 * lock.  A refill goes to the starter of the CPU it runs on (CPU number
 * modulo HAK_STARTERS): with one starter, its lock and lines kept two
 * cores' young threads waiting on each other (bench_threads ran as fast on
 * 2 cores as on one), and dealing heaps to 8 starters in turn made them
 * keep 8 sets of slabs on a 2-core machine.
 * Lock order: the starters' locks in index order (fork takes them all),
 * then hak_pool_lock (a refill may take SuperSlabs from the shared pool). */
#define STARTER_REFILLS 3    /* a heap's first refills of a class served here */
#define STARTER_BLOCKS  4    /* blocks per such refill at most: 1 << (refill - 1) */
/* A starter's bins hold at most STARTER_CAP blocks (its refills take 16):
 * it hands out at most STARTER_BLOCKS at a time, and with a thread's caps
 * (128 blocks of the small classes, refills of 64) each starter kept
 * 126-164 KB of blocks in its bins and 530 KB of its slabs carved, where
 * threads replace one another all the time (bench_larson 2 10000000 42,
 * peak 6.7 MB in all).  9 interleaved runs, medians: a cap of 8, 16, 32
 * blocks: larson 2 lanes 6724 -> 6264, 6424, 6416 KB peak RSS (8: 5% slower,
 * its refills four times as many), 4 lanes 7864 -> 7744 (16), 7400 (32);
 * bench_mstress, bench_threads, bench_xmalloc, bench_prodcons, bench_cache
 * within spreads in time and RSS. */
#define STARTER_CAP     32u
#ifndef HAK_STARTERS
#define HAK_STARTERS    8
#endif
static struct {
    _Alignas(64) pthread_mutex_t lock;
    hak_heap_t *heap;                /* made at the first refill, under lock */
} starters[HAK_STARTERS] = {
    [0 ... HAK_STARTERS - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER},
};
static hak_heap_t *heap_new(int starter);

void hak_starter_lock(void) {
    for (unsigned i = 0; i < HAK_STARTERS; i++) pthread_mutex_lock(&starters[i].lock);
}
void hak_starter_unlock(void) {
    for (unsigned i = HAK_STARTERS; i-- > 0;) pthread_mutex_unlock(&starters[i].lock);
}

/* Blocks of a heap's refill number r (1..STARTER_REFILLS) of class cls from
 * a starter: 1, 2, 4, but never less than a whole number of cache
 * lines' worth (4 blocks of 16 or 48 bytes, 2 of 32 or 96...): the starter
 * carves in address order, so a thread's blocks share no line with another
 * thread's (with single 16-byte blocks, two threads writing their own
 * objects shared a line: bench_cache thrash 4x slower). */
static uint32_t starter_want(unsigned cls, uint32_t r) {
    uint32_t s = hak_class_size[cls], low = s & (0u - s);
    uint32_t line = 64 / (low < 64 ? low : 64);
    uint32_t n = 1u << (r - 1);
    return n > line ? n : line;
}

/* Up to `want` (<= STARTER_BLOCKS) blocks of class cls from the starter of
 * this CPU into got[], in the order the starter's bin gave them (address
 * order with unshuffled carving); 0 if none could be had. */
static uint32_t starter_take(unsigned cls, uint32_t want, void **got) {
    uint32_t n = 0;
    if (want > STARTER_BLOCKS) want = STARTER_BLOCKS;
    int cpu = sched_getcpu();
    unsigned i = cpu > 0 ? (unsigned)cpu % HAK_STARTERS : 0;
    pthread_mutex_lock(&starters[i].lock);
    hak_heap_t *sh = starters[i].heap;
    if (!sh) {
        pthread_mutex_lock(&hak_pool_lock);
        sh = starters[i].heap = heap_new(1);
        if (sh) __atomic_store_n(&sh->active, 1, __ATOMIC_RELAXED);   /* never an orphan */
        pthread_mutex_unlock(&hak_pool_lock);
    }
    for (; sh && n < want; n++) {
        hak_bin_t *sb = &sh->bins[cls];
        void *b = sb->head != HAK_BIN_END ? bin_take(sh, cls) : unified_cache_refill(sh, cls);
        if (!b) break;
        got[n] = b;
    }
    pthread_mutex_unlock(&starters[i].lock);
    return n;
}

/* The same onto h's bin (h is not a starter). */
static uint32_t starter_refill(hak_heap_t *h, unsigned cls, uint32_t want) {
    void *got[STARTER_BLOCKS];
    uint32_t n = starter_take(cls, want, got);
    for (uint32_t k = n; k-- > 0;) bin_put(h, cls, got[k], "malloc");
    return n;
}

/* A thread's first HEAPLESS_ALLOCS tiny blocks come from the starters with
 * no heap of its own: one block per malloc, or for a class whose blocks
 * are smaller than a cache line, a line's worth (starter_want), of which
 * the rest wait in the thread's stash (a list per class in its TLS, no
 * page of its own) for its next mallocs of that class.  A thread that
 * allocates more, or a mid or large block, takes a heap, and the stash
 * goes into its bins.  A heap's first page is 4 KiB per thread, and the
 * starters' refills of 1, 2 and 4 blocks left blocks unused in its bins:
 * bench_threads 2000 (threads of 50 blocks each, all alive at once) kept
 * 87 MB resident against glibc's 70.  A thread that exits with blocks in
 * its stash gives them back (the key's destructor, hak_heapless_exit).
 * The hardened flavor's frees need a heap (its quarantine): not there. */
#if !HAKMEM_HARDENED
#define HEAPLESS_ALLOCS 64u
static __thread uint32_t tl_heapless_allocs __attribute__((tls_model("initial-exec")));
static __thread uint32_t tl_heapless_key __attribute__((tls_model("initial-exec")));
static __thread void *tl_stash[HAK_TINY_CLASSES] __attribute__((tls_model("initial-exec")));

/* A stashed block is kept as in a bin: its link safe-linked, its free key
 * set (a free of it is a double free: it was never handed out). */
static void stash_push(unsigned cls, void *b) {
    hak_link_set(b, tl_stash[cls]);
    ((uintptr_t *)b)[1] = hak_block_key((uintptr_t)b);
    tl_stash[cls] = b;
}
static void *stash_pop(unsigned cls) {
    void **b = tl_stash[cls];
    if (b) {
        tl_stash[cls] = hak_link_get(b, "malloc");
        b[1] = NULL;
    }
    return b;
}

static void *heapless_alloc(unsigned cls) {
    void **b = stash_pop(cls);
    if (!b) {
        void *got[STARTER_BLOCKS];
        hak_init();
        uint32_t n = starter_take(cls, starter_want(cls, 1), got);
        if (!n) return NULL;
        for (uint32_t k = n; k-- > 1;) stash_push(cls, got[k]);   /* handed out in address order */
        b = got[0];
        if (n > 1 && !tl_heapless_key) {
            tl_heapless_key = 1;                  /* pthread_setspecific may allocate */
            pthread_setspecific(hak_thread_key, &hak_heap_empty);
        }
    }
    tl_heapless_allocs++;
    return b;
}

/* The stash's blocks onto h's bins (h is the thread's new heap). */
static void stash_to_bins(hak_heap_t *h) {
    for (unsigned c = 0; c < HAK_TINY_CLASSES; c++)
        for (void **b; (b = stash_pop(c)) != NULL;) {
            if (h->bins[c].room) bin_put(h, c, b, "malloc");
            else hak_free_remote(hak_block_slab((uintptr_t)b), (uintptr_t)b);
        }
}

void hak_heapless_exit(void) {
    for (unsigned c = 0; c < HAK_TINY_CLASSES; c++)
        for (void **b; (b = stash_pop(c)) != NULL;) {
            if (HAKMEM_DEBUG_CHECKS) hak_debug_on_free(b, "thread exit");
            hak_free_remote(hak_block_slab((uintptr_t)b), (uintptr_t)b);
        }
}
#else
void hak_heapless_exit(void) {}
#endif

static int xfer_take(hak_bin_t *bin, unsigned cls, uint32_t most);

static void *refill_locked(hak_heap_t *h, unsigned cls);

void *unified_cache_refill(hak_heap_t *h, unsigned cls) {
    if (HAK_UNLIKELY(h == &hak_heap_empty)) {
#if !HAKMEM_HARDENED
        if (cls < HAK_TINY_CLASSES && tl_heapless_allocs < HEAPLESS_ALLOCS) {
            void *b = heapless_alloc(cls);
            if (b) return b;
        }
#endif
        h = hak_heap_acquire();
        if (!h) { errno = ENOMEM; return NULL; }
    }
    hak_heap_lock(h);
    void *p = refill_locked(h, cls);
    hak_heap_unlock(h);
    return p;
}

static void bin_flush(hak_heap_t *h, unsigned cls, uint32_t keep);

/* The heap is about to start a slab for class cls: bins of other classes
 * that had no refill while the heap started HAK_IDLE_SLABS slabs, and hold
 * HAK_IDLE_BIN_BYTES or more, give all their blocks back (their caps stay).
 * A bin grown to hold one burst of frees otherwise keeps those blocks' slabs
 * while the thread moves on to other sizes: bench_simple n1600 (1600 blocks
 * of 16 .. 4096 bytes in turn) kept the 1024-byte round's 1.6 MB in its bin
 * while the 4096-byte round mapped 6.4 MB more.  Their slabs, wholly free,
 * go back to the SuperSlab, whose resident slots the next slab takes. */
static void bins_release_idle(hak_heap_t *h, unsigned cls) {
    h->idle_scan = h->slab_starts;
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        hak_bin_t *bin = &h->bins[c];
        if (c == cls || h->slab_starts - h->refill_starts[c] < HAK_IDLE_SLABS) continue;
        if ((size_t)bin_count(bin) * hak_class_size[c] < HAK_IDLE_BIN_BYTES) continue;
        bin_flush(h, c, 0);
    }
}

/* The slow start of refills (refill_locked): blocks of a heap's first four. */
static const uint8_t first_want[5] = { 0, 8, 16, 32, 32 };

static void *refill_locked(hak_heap_t *h, unsigned cls) {
    hak_bin_t *bin = &h->bins[cls];
    if (bin->head != HAK_BIN_END) goto pop;   /* the heap we just adopted may have blocks */
    /* A heap with slabs of its own takes a batch of the transfer cache
     * first (a young heap takes a few blocks at a time from a starter, and
     * does not write past its first page); for a class's first refill since
     * its thread took the heap, only a batch no bigger than that refill (8
     * blocks).  A bin that takes a few blocks now and then would otherwise
     * keep a batch of blocks other threads freed, from as many exited
     * threads' slabs, and never empty it: in test_chaos's waves, 41 blocks
     * of 448 bytes in the main thread's bin (its calloc of each new
     * thread's DTV) kept 25 SuperSlabs of exited threads' heaps mapped, with
     * the pages those heaps keep resident for reuse.  (Bounding the first
     * four refills so raised bench_mstress's peak RSS, 30.6 -> 33.8 MB.)  A
     * starter takes none: its bin hands young threads a few blocks each,
     * and kept up to 64 foreign blocks the same way (25-34 SuperSlabs). */
    if (h->warm || h->full) {
        h->refill_starts[cls] = h->slab_starts;
        uint8_t t = h->thread_refills[cls];
        if (!h->is_starter && xfer_take(bin, cls, t ? bin->room : first_want[1])) {
            HAK_STAT_ADD(h->stats[cls].xfer_takes, 1);
            goto pop;
        }
    }
    hak_heap_class_stats_t *st = &h->stats[cls];
    HAK_STAT_ADD(h->refills[cls], 1);
    h->front_fill[cls] = (uint32_t)hak_ticks();
    if (atomic_load_explicit(&h->remote_slabs, memory_order_relaxed))
        hak_heap_drain_remote(h);

    uint32_t want = bin->cap > 1 ? bin->cap / 2 : 1;
    /* The first refills of a class in a heap take 8, 16, 32 blocks (the
     * fourth, 32 too: a young heap's first three were the starter's), then
     * half the cap: a short-lived thread that needs a few blocks of each
     * class does not carve (write) 64 of each, nor walk them all back at
     * its exit (bench_threads, 2000 threads of 50 blocks: half of the
     * library's cache misses were carving and flushing unused blocks).  A
     * heap with slabs counts them again from its thread's start: a thread
     * that adopts an exited thread's heap starts small too (bench_larson,
     * whose threads replace one another every 10000 operations: 4 lanes
     * 71.7 -> 79.4 M ops/s, as the exiting threads flush smaller bins). */
    uint64_t r = h->refills[cls];
    if (h->warm || h->full) {
        if (h->thread_refills[cls] < 255) h->thread_refills[cls]++;
        r = h->thread_refills[cls];
    }
    if (r <= 4 && want > first_want[r]) want = first_want[r];
    if (r <= STARTER_REFILLS && cls < HAK_TINY_CLASSES && !h->warm && !h->full &&
        !h->is_starter && starter_refill(h, cls, starter_want(cls, (uint32_t)r)))
        goto pop;
    hak_slab_t *s;
    while ((s = h->partial[cls]) != NULL) {
        if (s->free) slab_take_free(s, bin, want);
        if (bin_count(bin) < want && s->carved < s->cap_end)
            slab_carve(h, s, bin, want - bin_count(bin));
        if (!s->free && s->carved >= s->cap_end) partial_remove(h, s);
        if (bin->head != HAK_BIN_END) {
            HAK_STAT_ADD(st->warm_hits, 1);
            goto pop;
        }
    }
    HAK_STAT_ADD(st->warm_misses, 1);
    if (++h->slab_starts - h->idle_scan >= HAK_IDLE_SLABS) bins_release_idle(h, cls);
    s = slab_alloc(h, cls);
    if (!s) { errno = ENOMEM; return NULL; }
    partial_push(h, s);
    slab_carve(h, s, bin, want);

pop:
    return bin_take(h, cls);
}

/* Heaps of exited threads, for reuse: a queue, oldest first, under
 * hak_pool_lock.  A new thread adopts the heap that has waited longest.
 * Taken newest first, as before, the heaps at the back of a list of a few
 * waited on while others were taken and retaken, with the blocks other
 * threads freed into their slabs queued there (bench_larson 4 lanes of
 * threads that replace one another: 13.6 -> 10.9 MB peak RSS, 7 interleaved
 * runs, medians). */
static hak_heap_t *heap_orphans, *heap_orphans_tail;

/* Caller holds hak_pool_lock. */
static void orphan_push(hak_heap_t *h) {
    __atomic_store_n(&h->next_orphan, NULL, __ATOMIC_RELAXED);
    if (heap_orphans_tail) __atomic_store_n(&heap_orphans_tail->next_orphan, h, __ATOMIC_RELAXED);
    else __atomic_store_n(&heap_orphans, h, __ATOMIC_RELEASE);
    heap_orphans_tail = h;
}
static size_t heap_trim_orphans(int full);
static void orphan_unreserve(hak_heap_t *h);
/* Orphans that hak_heap_trim_orphans has still to trim: a new thread may
 * adopt one from here too (only the heap being trimmed is out of reach). */
static hak_heap_t *heap_trim_queue;

/* What n blocks sent to slab s of an exited thread's heap hold until a
 * thread adopts or trims that heap: their bytes, and the whole slab if they
 * are the first to arrive (a slab with queued remote frees is not released,
 * so its pages stay resident however small the blocks), counted as at least
 * ORPHAN_PIN_SLOTS slots: such a slab also keeps its 2 MiB SuperSlab mapped,
 * and the debt bounds those too.  Once every slab was one slot, a charge of
 * one slot let test_chaos's thread waves (HAKMEM_TEST_SCALE=4) end with up to
 * 36 SuperSlabs mapped (bound 34; 8 runs: 9-26, median 15); with 4: 7-17,
 * median 13 in 16 runs (spans of 8 blocks and a charge of the span: 8-17,
 * median 14 in 8).  0 if the owner is alive: it takes them back itself. */
#define ORPHAN_PIN_SLOTS 4u
static size_t orphan_cost(const hak_slab_t *s, size_t n) {
    if (__atomic_load_n(&s->owner->active, __ATOMIC_RELAXED)) return 0;
    size_t c = n * s->bsize;
    if (atomic_load_explicit(&s->xthread_free, memory_order_relaxed) == 0)
        c += (size_t)(s->span_slots > ORPHAN_PIN_SLOTS ? s->span_slots : ORPHAN_PIN_SLOTS)
             << HAK_SLAB_SHIFT;
    return c;
}

/* Blocks leaving a bin go back to their slabs, a run of blocks of the same
 * slab at a time (a bin flushed after a burst of frees mostly holds runs of
 * a few slabs): ours onto the slab's free list, other heaps' (freed here
 * after another thread allocated them) onto the slab's remote list with one
 * CAS.  The run keeps its links (a link's encoding depends on its block
 * only): only the last one is written. */
static uint32_t blocks_return(hak_heap_t *h, void *list) {
    uint32_t remote = 0;
    while (list != NULL && list != HAK_BIN_END) {   /* a bin's list ends with HAK_BIN_END */
        void **b = list, **last = b;
        hak_slab_t *s = hak_block_slab((uintptr_t)b);
        uintptr_t base = hak_slab_base(s), span = (uintptr_t)s->span_slots << HAK_SLAB_SHIFT;
        uint32_t n = 1;
        list = hak_link_get(b, "flush");
        while (list && (uintptr_t)list - base < span) {
            last = list;
            list = hak_link_get(last, "flush");
            n++;
        }
        if (s->owner != h) {
            hak_link_set(last, NULL);
            /* A heap whose thread exited has nobody to take its blocks back
             * (until a new thread adopts it): count what they hold, and past
             * a bound this thread trims the orphans itself. */
            if (h) {
                HAK_STAT_ADD(h->remote_frees[s->cls], n);
                h->orphan_debt += orphan_cost(s, n);
            }
            hak_free_remote_chain(s, b, last, 1);
            remote += n;
            continue;
        }
        hak_link_set(last, s->free);
        s->free = b;
        s->nfree += n;
        s->used -= n;
        slab_after_return(h, s, 0);
    }
    return remote;
}

/* ------------------------------------------------------ transfer cache */

/* The transfer cache: per class, a few batches of free blocks that a heap's
 * overflowing bin gave up and that any heap's empty bin may take whole.  Used
 * by heaps that free other heaps' blocks (a consumer thread, a ring of
 * threads handing work on): without it, such a bin's overflow went back to
 * the blocks' slabs, half of it to other heaps' remote queues, and each
 * (heap, class) kept its own pool of free blocks on its slabs' free lists,
 * each pool as large as its own high-water mark (bench_prodcons 4T: 2.2 MB
 * of free blocks on the owners' slab lists at the peak).  Through the cache
 * the blocks go straight to the next bin that runs dry, whoever owns them.
 * A heap whose flushes hold only its own blocks returns them to its slabs as
 * before (xfer_hint): two threads that each work alone gained nothing and
 * passed their cache lines to each other (bench_simple 2T n25: 0.6x).
 * A batch keeps its links and the blocks their free keys (a double free of
 * one is still found); the blocks stay out of their slabs while here, at
 * most XFER_SLOTS batches of XFER_MAX blocks per class.  Every thread exit
 * and malloc_trim send them home (xfer_drain). */
#define XFER_SLOTS 4
#define XFER_MAX   (HAK_FRONT_CAP_MAX / 2)     /* blocks in a batch at most */
typedef struct {
    void    *head, *tail;
    uint32_t n;
} xfer_batch_t;
static struct {
    _Alignas(64) pthread_mutex_t lock;
    uint32_t count;                            /* batches held; read unlocked as a hint */
    xfer_batch_t b[XFER_SLOTS];
} xfer[HAK_NUM_CLASSES] = {
    [0 ... HAK_NUM_CLASSES - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER},
};

void hak_xfer_lock(void) {
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) pthread_mutex_lock(&xfer[c].lock);
}
void hak_xfer_unlock(void) {
    for (unsigned c = HAK_NUM_CLASSES; c-- > 0;) pthread_mutex_unlock(&xfer[c].lock);
}

/* Offer the n blocks head..tail (linked) of class cls; 0 if the cache is full. */
static int xfer_put(unsigned cls, void *head, void *tail, uint32_t n) {
    if (__atomic_load_n(&xfer[cls].count, __ATOMIC_RELAXED) >= XFER_SLOTS) return 0;
    pthread_mutex_lock(&xfer[cls].lock);
    uint32_t k = xfer[cls].count;
    if (k < XFER_SLOTS) {
        xfer[cls].b[k] = (xfer_batch_t){head, tail, n};
        __atomic_store_n(&xfer[cls].count, k + 1, __ATOMIC_RELAXED);
        HAK_GSTAT_ADD(xfer_blocks, n);
    }
    pthread_mutex_unlock(&xfer[cls].lock);
    return k < XFER_SLOTS;
}

/* Fill an empty bin with the newest batch of its class if it holds at most
 * `most` blocks and the bin has room for it; 0 if there was none. */
static int xfer_take(hak_bin_t *bin, unsigned cls, uint32_t most) {
    if (__atomic_load_n(&xfer[cls].count, __ATOMIC_RELAXED) == 0) return 0;
    xfer_batch_t got = {NULL, NULL, 0};
    pthread_mutex_lock(&xfer[cls].lock);
    uint32_t k = xfer[cls].count;
    if (k > 0 && xfer[cls].b[k - 1].n <= bin->room && xfer[cls].b[k - 1].n <= most) {
        got = xfer[cls].b[k - 1];
        __atomic_store_n(&xfer[cls].count, k - 1, __ATOMIC_RELAXED);
        HAK_GSTAT_SUB(xfer_blocks, got.n);
    }
    pthread_mutex_unlock(&xfer[cls].lock);
    if (!got.n) return 0;
    hak_link_set(got.tail, bin->head);
    bin->head = got.head;
    bin->room -= got.n;
    return 1;
}

/* An overflow's n blocks (rest, ending with HAK_BIN_END) into the cache if
 * the heap's last flush of this class held other heaps' blocks and this one
 * does too (the walk that finds the tail says). */
static int xfer_flush(hak_heap_t *h, unsigned cls, void *rest, uint32_t n) {
    if (!h->xfer_hint[cls] || n > XFER_MAX) return 0;
    void *tail = rest;
    int foreign = 0;
    for (uint32_t i = 1;; i++) {
        foreign |= hak_block_slab((uintptr_t)tail)->owner != h;
        if (i == n) break;
        tail = hak_link_get(tail, "flush");
    }
    h->xfer_hint[cls] = (uint8_t)foreign;
    if (!foreign || !xfer_put(cls, rest, tail, n)) return 0;
    HAK_STAT_ADD(h->stats[cls].xfer_puts, 1);
    return 1;
}

/* hak_check's walk of the cache: every node a block start of its class with
 * its free key, each batch as long as it says.  Returns the problems found,
 * each reported on stderr. */
unsigned hak_xfer_check(void) {
    unsigned bad = 0;
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        pthread_mutex_lock(&xfer[c].lock);
        for (uint32_t k = 0; k < xfer[c].count && k < XFER_SLOTS; k++) {
            const char *what = NULL;
            const void *where = xfer[c].b[k].head;
            uint32_t n = 0;
            for (void **b = xfer[c].b[k].head; b != HAK_BIN_END; n++) {
                uintptr_t a = (uintptr_t)b;
                where = b;
                if (n == xfer[c].b[k].n) { what = "transfer cache batch longer than its count"; break; }
                hak_slab_t *s = hak_super_lookup(b) ? hak_block_slab(a) : NULL;
                if (!s || s->owner == NULL || s->cls != c || !hak_slab_holds(s, a))
                    { what = "transfer cache node is not a block of its class"; break; }
                if ((uintptr_t)b[1] != hak_block_key(a)) { what = "transfer cache block lost its free key"; break; }
                uintptr_t next = (uintptr_t)b[0] ^ hak_block_key(a);
                if (next & HAK_LINK_BAD_BITS) { what = "transfer cache link corrupted (written after free?)"; break; }
                if (b == xfer[c].b[k].tail && (void *)next != HAK_BIN_END)
                    { what = "transfer cache batch goes on past its tail"; break; }
                b = (void **)next;
            }
            if (!what && n != xfer[c].b[k].n) what = "transfer cache batch shorter than its count";
            if (what) {
                char buf[160];
                snprintf(buf, sizeof buf, "hakmem: hak_check: %s at %p\n", what, where);
                hak_write_err(buf);
                bad++;
            }
        }
        pthread_mutex_unlock(&xfer[c].lock);
    }
    return bad;
}

/* Thread exit and malloc_trim (heap_release): every batch back to its
 * blocks' slabs (h's to h's, the others' to their heaps' remote queues; all
 * of them there for malloc_trim in a thread without a heap, h NULL), so
 * that blocks passed on by threads that are gone do not keep their slabs
 * from being released (test_chaos's waves: 70 SuperSlabs still mapped after
 * every block was freed, with the cache emptied only by malloc_trim). */
static void xfer_drain(hak_heap_t *h) {
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        while (__atomic_load_n(&xfer[c].count, __ATOMIC_RELAXED) != 0) {
            xfer_batch_t got = {NULL, NULL, 0};
            pthread_mutex_lock(&xfer[c].lock);
            if (xfer[c].count > 0) {
                got = xfer[c].b[xfer[c].count - 1];
                __atomic_store_n(&xfer[c].count, xfer[c].count - 1, __ATOMIC_RELAXED);
                HAK_GSTAT_SUB(xfer_blocks, got.n);
            }
            pthread_mutex_unlock(&xfer[c].lock);
            if (!got.n) break;
            hak_link_set(got.tail, NULL);
            blocks_return(h, got.head);
        }
    }
}

/* A bin's cap to start with: HAKMEM_FRONT_BUDGET_KIB of blocks for a mid
 * class, half of it for a tiny one, between HAK_FRONT_CAP_MIN and
 * HAK_FRONT_CAP_MAX.  Only the tiny classes of 640 bytes and up reach the
 * half budget before the block cap: their bins hold 64 KiB, not 128, which
 * costs no refill a thread would notice (callgrind: bench_larson,
 * bench_xmalloc, bench_alloc_test equal) and lets threads that free each
 * other's blocks keep fewer of them (bench_prodcons 4 threads: 4636 ->
 * 4192 KB peak RSS, bench_larson 4 lanes 8316 -> 7868).  A mid class keeps
 * the whole budget: a bin of 32 KiB blocks holds 4 of them, and with 2 the
 * band of 1-64 KiB blocks refilled and flushed 9% more instructions. */
static uint32_t bin_base_cap(unsigned cls) {
    size_t budget = (size_t)hak_opt.front_budget_kib * 1024;
    if (cls < HAK_TINY_CLASSES) budget /= 2;
    uint32_t cap = (uint32_t)(budget / hak_class_size[cls]);
    if (cap > HAK_FRONT_CAP_MAX) cap = HAK_FRONT_CAP_MAX;
    if (cap < HAK_FRONT_CAP_MIN) cap = HAK_FRONT_CAP_MIN;
    return cap;
}

static void bin_set_cap(hak_bin_t *bin, uint32_t cap) {
    bin->room = cap - bin_count(bin);
    bin->cap = cap;
}

/* Every bin of h back to its first cap (its blocks beyond half of it go back
 * to their slabs). */
static void bins_reset_caps(hak_heap_t *h) {
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        hak_bin_t *bin = &h->bins[c];
        uint32_t base = bin_base_cap(c);
        if (bin->cap == base) continue;
        if (bin_count(bin) >= base) bin_flush(h, c, base / 2);
        bin_set_cap(bin, base);
    }
    h->front_grown = 0;
    h->front_denied = 0;
}

/* A bin overflowed: double its cap instead of flushing, if it also ran dry
 * since its last overflow (the thread allocates this class, not only frees
 * it: a thread that frees what others allocated gives their blocks back at
 * the same pace as before) and filled up from its last refill within about
 * 400 ns a block (a burst of frees; a bin whose level wanders up and down
 * between empty and full, where a thread allocates and frees a class at the
 * same pace, bench_prodcons, gains little from a bigger cap and kept up to
 * HAK_FRONT_GROW_BUDGET of blocks, in each heap: 5.3 -> 3.8 MB peak RSS
 * on 2 threads), while all bins of the heap have grown by at most
 * HAK_FRONT_GROW_BUDGET bytes.  A burst of frees larger than the cap (n
 * blocks allocated, then all freed) otherwise flushes half the bin every
 * cap/2 frees and refills as often after (bench_simple n400: 2 of 5
 * instructions of malloc/free were there).  The caps fall back to their
 * start once growth was refused 64 times, so a heap's growth follows the
 * classes it uses now; a bin falls back alone after 32 overflows with no
 * refill between (a long run of frees: a big bin of blocks scattered over
 * many slabs keeps all those slabs from being released; bench_rss: 16 MiB
 * more resident after everything was freed). */
static int bin_grow(hak_heap_t *h, unsigned cls, hak_bin_t *bin) {
    uint32_t cap = bin->cap, size = hak_class_size[cls];
    uint32_t refills = (uint32_t)h->refills[cls];
    if (refills == h->front_mark[cls]) {
        uint32_t base = bin_base_cap(cls);
        if (++h->front_streak[cls] >= 32 && cap > base) {
            h->front_streak[cls] = 0;
            bin_flush(h, cls, base / 2);
            bin_set_cap(bin, base);
            h->front_grown -= (size_t)(cap - base) * size;
        }
        return 0;
    }
    h->front_mark[cls] = refills;
    h->front_streak[cls] = 0;
    if ((uint32_t)hak_ticks() - h->front_fill[cls] > cap * hak_ticks_400ns()) return 0;
    if (cap < HAK_FRONT_CAP_GROWN &&
        h->front_grown + (size_t)cap * size <= HAK_FRONT_GROW_BUDGET) {
        h->front_grown += (size_t)cap * size;
        bin_set_cap(bin, cap * 2);
        return 1;
    }
    if (++h->front_denied >= 64) bins_reset_caps(h);
    return 0;
}

/* unified_cache_flush: keep the `keep` most recently freed blocks of the bin
 * (they are the cache-hot ones) and return the rest to their slabs.  On an
 * overflow (a full bin, keep != 0) the bin may grow instead. */
static void cache_flush(hak_heap_t *h, unsigned cls, uint32_t keep) {
    if (keep && h->bins[cls].room == 0 && bin_grow(h, cls, &h->bins[cls])) return;
    bin_flush(h, cls, keep);
}

void unified_cache_flush(hak_heap_t *h, unsigned cls, uint32_t keep) {
    hak_heap_lock(h);
    cache_flush(h, cls, keep);
    hak_heap_unlock(h);
}

static void bin_flush(hak_heap_t *h, unsigned cls, uint32_t keep) {
    hak_bin_t *bin = &h->bins[cls];
    void *rest;
    if (keep == 0 || bin_count(bin) <= keep) {
        if (keep) return;
        rest = bin->head;
        bin->head = HAK_BIN_END;
        bin->room = bin->cap;
    } else {
        void **cut = bin->head;
        for (uint32_t i = 1; i < keep; i++) cut = hak_link_get(cut, "flush");
        rest = hak_link_get(cut, "flush");
        hak_link_set(cut, HAK_BIN_END);
        uint32_t n = bin_count(bin) - keep;
        bin->room = bin->cap - keep;
        HAK_STAT_ADD(h->stats[cls].flushes, 1);
        if (xfer_flush(h, cls, rest, n)) return;
    }
    uint32_t remote = blocks_return(h, rest);
    if (keep) h->xfer_hint[cls] = remote != 0 && !h->is_starter;
    if (HAK_UNLIKELY(h->orphan_debt > HAK_ORPHAN_DEBT_MAX)) {
        h->orphan_debt = 0;
        heap_trim_orphans(0);
    }
}

/* ------------------------------------------------------- remote frees */

/* A heap's slabs (their free lists and counts, the partial and warm lists,
 * its purge state) are its thread's; the thread holds slow_lock around every
 * change to them (refills, flushes, trims, its exit), never on the hit paths
 * (bins are the thread's alone).  The lock lets another thread take back the
 * remote frees of a heap whose thread is alive but idle (proxy_drain). */
void hak_heap_lock(hak_heap_t *h) {
    while (__atomic_exchange_n(&h->slow_lock, 1, __ATOMIC_ACQUIRE))
        sched_yield();                     /* a proxy drain: rare, short */
    __atomic_store_n(&h->slow_tick, (uint32_t)(hak_ticks() >> 20), __ATOMIC_RELAXED);   /* read by proxies */
}

void hak_heap_unlock(hak_heap_t *h) { __atomic_store_n(&h->slow_lock, 0, __ATOMIC_RELEASE); }

static void heap_drain_remote_forced(hak_heap_t *h, int force);
static size_t heap_purge(hak_heap_t *h, size_t keep);

/* A thread that freed blocks into a slab of a live heap whose
 * thread has not refilled or flushed for about 10 ms (2^20 ticks a unit, 24
 * units) drains that queue itself, if it gets the heap's lock at once: a
 * thread that allocated blocks and then waits (a main thread that built the
 * data and joins its workers) would otherwise keep every block its workers
 * freed queued on its slabs, and those slabs resident, until it allocates
 * again (bench_larson: the main thread's slabs held 2.2 MB of such blocks at
 * the peak, out of 11 MB).  The look at the owner's idle time reads the
 * cycle counter and the owner's slow_tick, on the line that its thread
 * writes at every refill and flush: a thread without a heap, which frees
 * one block at a time, looks on one free in PROXY_LOOK_FREES (on every free
 * of bench_xmalloc's consumers it cost 24 instructions of about 110 and
 * the line's transfer between cores); a run of blocks leaving a bin looks
 * each time (one look in 64 blocks let bench_larson 4 5000000 42 peak at
 * 10.2 MB instead of 8.8, 11 interleaved runs, medians). */
#define PROXY_LOOK_FREES 64
static __thread uint32_t tl_proxy_frees __attribute__((tls_model("initial-exec")));

static void proxy_drain(hak_heap_t *o) {
    if (!__atomic_load_n(&o->active, __ATOMIC_RELAXED) || o->is_starter) return;
    uint32_t now = (uint32_t)(hak_ticks() >> 20);
    if (now - __atomic_load_n(&o->slow_tick, __ATOMIC_RELAXED) < 24) return;
    if (__atomic_exchange_n(&o->slow_lock, 1, __ATOMIC_ACQUIRE)) return;
    /* its thread may have exited (the heap is an orphan now) or refilled
     * meanwhile: both under the lock.  Acquire: if a new thread adopted the
     * heap, a trim of it while it was an orphan (heap_trim_orphans, without
     * its lock) happened before the adopter's release store of active, so
     * before the drain below (TSan saw the two race, test_thread_churn) */
    if (__atomic_load_n(&o->active, __ATOMIC_ACQUIRE) &&
        now - __atomic_load_n(&o->slow_tick, __ATOMIC_RELAXED) >= 24) {
        heap_drain_remote_forced(o, 0);
        if (o->dirty_bytes) heap_purge(o, 0);
    }
    hak_heap_unlock(o);
}

/* Blocks (first..last, linked, free keys set) go back to a slab of another
 * heap: onto the slab's atomic list; the first push after the owner took the
 * list also queues the slab on its owner's remote queue (the QUEUED bit says
 * it is there, or about to be, so the owner will not release the slab
 * meanwhile).  That push writes s->next_remote, which the owner read before
 * it took the list: the owner's exchange releases and this CAS acquires, so
 * the owner's read happens before this write (acquire alone on the owner's
 * side would let its read move after the exchange and see this write). */
void hak_free_remote_chain(hak_slab_t *s, void *first, void *last, int look) {
    /* read before the push: once our blocks are on the list, the owner may
     * take them, find the slab empty and release it */
    hak_heap_t *owner = __atomic_load_n(&s->owner, __ATOMIC_ACQUIRE);
    uintptr_t old = atomic_load_explicit(&s->xthread_free, memory_order_relaxed);
    do {
        hak_link_set(last, (void *)(old & ~HAK_XTHREAD_QUEUED));
    } while (!atomic_compare_exchange_weak_explicit(&s->xthread_free, &old,
                                                    (uintptr_t)first | HAK_XTHREAD_QUEUED,
                                                    memory_order_acq_rel, memory_order_relaxed));
    if (old & HAK_XTHREAD_QUEUED) {        /* queued already: its owner will see them */
        if (look) proxy_drain(owner);
        return;
    }
    hak_slab_t *head = atomic_load_explicit(&owner->remote_slabs, memory_order_relaxed);
    do {
        s->next_remote = head;
    } while (!atomic_compare_exchange_weak_explicit(&owner->remote_slabs, &head, s,
                                                    memory_order_release, memory_order_relaxed));
    if (look) proxy_drain(owner);
}

/* A thread that never allocated has no heap, so no orphan debt of its own
 * (a consumer that only frees what others made): what such threads send to
 * exited threads' heaps is counted here, for all of them together. */
static size_t heapless_orphan_debt;

void hak_free_remote(hak_slab_t *s, uintptr_t a) {
    size_t cost = orphan_cost(s, 1);
    ((void **)a)[1] = (void *)hak_block_key(a);
    hak_free_remote_chain(s, (void *)a, (void *)a, ++tl_proxy_frees % PROXY_LOOK_FREES == 0);
    if (cost && __atomic_add_fetch(&heapless_orphan_debt, cost, __ATOMIC_RELAXED) > HAK_ORPHAN_DEBT_MAX) {
        __atomic_store_n(&heapless_orphan_debt, 0, __ATOMIC_RELAXED);
        heap_trim_orphans(0);
    }
}

static void heap_drain_remote_forced(hak_heap_t *h, int force) {
    hak_slab_t *s = atomic_exchange_explicit(&h->remote_slabs, NULL, memory_order_acquire);
    while (s) {
        hak_slab_t *next = s->next_remote;   /* read before the slab can be queued again */
        uintptr_t list = atomic_exchange_explicit(&s->xthread_free, 0, memory_order_acq_rel);
        list &= ~HAK_XTHREAD_QUEUED;
        if (list) {
            void **tail = (void **)list;
            uint32_t n = 1;
            void **next;
            while ((next = hak_link_get(tail, "remote drain")) != NULL) {
                if (HAKMEM_DEBUG_CHECKS) slab_check_node(s, next);
                tail = next;
                n++;
            }
            hak_link_set(tail, s->free);
            s->free = (void *)list;
            s->nfree += n;
            s->used -= n;
        }
        slab_after_return(h, s, force);
        s = next;
    }
}

void hak_heap_drain_remote(hak_heap_t *h) { heap_drain_remote_forced(h, 0); }

/* ------------------------------------------------------- heap life cycle */

static hak_heap_t *heap_all;

hak_heap_t *hak_heap_list(void) { return __atomic_load_n(&heap_all, __ATOMIC_ACQUIRE); }

/* A new heap (starter: one of the starters), on the list of all heaps.
 * Caller holds hak_pool_lock. */
static hak_heap_t *heap_new(int starter) {
    hak_heap_t *h = hak_meta_alloc(sizeof *h);      /* fresh pages: zeroed */
    if (!h) return NULL;
    memcpy(h->bin_off, hak_tiny_bin_off, sizeof h->bin_off);
    h->is_starter = starter;
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        h->bins[c].head = HAK_BIN_END;
        h->bins[c].cap = bin_base_cap(c);
        if (starter && h->bins[c].cap > STARTER_CAP) h->bins[c].cap = STARTER_CAP;
        h->bins[c].room = h->bins[c].cap;
    }
    h->next_all = heap_all;
    __atomic_store_n(&heap_all, h, __ATOMIC_RELEASE);
    return h;
}

hak_heap_t *hak_heap_acquire(void) {
    hak_init();
    pthread_mutex_lock(&hak_pool_lock);
    hak_heap_t *h = heap_orphans;
    if (h) {
        __atomic_store_n(&heap_orphans, h->next_orphan, __ATOMIC_RELEASE);
        if (!h->next_orphan) heap_orphans_tail = NULL;
    } else if ((h = heap_trim_queue) != NULL) {
        heap_trim_queue = h->next_orphan;
    } else {
        h = heap_new(0);
    }
    if (h) orphan_unreserve(h);            /* its resident pages are ours now */
    if (h && (h->warm || h->full)) memset(h->thread_refills, 0, sizeof h->thread_refills);
    if (h) __atomic_store_n(&h->active, 1, __ATOMIC_RELEASE);   /* read unlocked: blocks_return, stats, proxy_drain */
    pthread_mutex_unlock(&hak_pool_lock);
    if (!h) return NULL;
    /* Set the TLS pointer before pthread_setspecific, which may allocate. */
    hak_tl_heap = h;
    pthread_setspecific(hak_thread_key, h);
#if !HAKMEM_HARDENED
    stash_to_bins(h);
#endif
    return h;
}

/* Every cached block back to its slab, every remote free taken back, every
 * empty slab released and every empty SuperSlab given to the shared pool.
 * Returns the bytes pooled. */
static size_t heap_release(hak_heap_t *h) {
    size_t pooled = 0;
    xfer_drain(h);
    hak_run_cache_flush(h);
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) cache_flush(h, c, 0);
    bins_reset_caps(h);
    heap_drain_remote_forced(h, 1);
    /* partial slabs are in its own SuperSlabs: a heap without any (a young
     * thread's) does not read the lists' page */
    for (unsigned c = 0; (h->warm || h->full) && c < HAK_NUM_CLASSES; c++) {
        hak_slab_t *s = h->partial[c];
        while (s) {
            hak_slab_t *next = s->next;
            if (s->used == 0) slab_after_return(h, s, 1);
            s = next;
        }
    }
    for (hak_superslab_t *ss = h->warm, *next; ss; ss = next) {
        next = ss->next;
        if (ss->nused == 0) {
            superslab_to_pool(h, ss);
            pooled += HAK_SS_SIZE;
        }
    }
    h->nwarm_empty = 0;
    return pooled;
}

/* heap_release, and every free slab purged: for malloc_trim.  Returns the
 * bytes given back. */
size_t hak_heap_trim(hak_heap_t *h) {
    if (h == &hak_heap_empty) {          /* a thread that never allocated */
        xfer_drain(NULL);
        return 0;
    }
    hak_heap_lock(h);
    size_t pooled = heap_release(h);
    size_t n = heap_purge(h, 0) + pooled;
    hak_heap_unlock(h);
    return n;
}

/* An exited thread's heap keeps free slabs resident (in SuperSlabs that
 * still hold live blocks) for the thread that adopts it next: a thread that
 * exits and a new one that starts (waves of workers, thread pools) would
 * otherwise purge and fault the same pages back each time (bench_mstress:
 * 150k page faults, 4x the time).  All orphans together keep at most
 * HAK_ORPHAN_RETAIN_HEAPS times HAKMEM_PURGE_RETAIN_MIB (a live heap's
 * bound), 48 MiB by default, first come first served:
 * each heap's share is its orphan_kept, summed in orphan_kept_all under
 * hak_pool_lock and given back when the heap is adopted or trimmed. */
static size_t orphan_kept_all;

/* Caller holds hak_pool_lock. */
static void orphan_unreserve(hak_heap_t *h) {
    orphan_kept_all -= h->orphan_kept;
    h->orphan_kept = 0;
}

/* Purge h (no thread uses it) down to its share of the orphan budget: at
 * most what is resident, and what the other orphans left of the budget. */
static size_t orphan_purge(hak_heap_t *h) {
    size_t budget = ((size_t)hak_opt.purge_retain_mib << 20) * HAK_ORPHAN_RETAIN_HEAPS;
    pthread_mutex_lock(&hak_pool_lock);
    orphan_unreserve(h);
    size_t room = budget > orphan_kept_all ? budget - orphan_kept_all : 0;
    size_t keep = h->dirty_bytes < room ? h->dirty_bytes : room;
    orphan_kept_all += keep;
    h->orphan_kept = keep;
    pthread_mutex_unlock(&hak_pool_lock);
    size_t n = heap_purge(h, keep);
    if (h->dirty_bytes < keep) {           /* purged by whole SuperSlabs: below */
        pthread_mutex_lock(&hak_pool_lock);
        orphan_kept_all -= keep - h->dirty_bytes;
        h->orphan_kept = h->dirty_bytes;
        pthread_mutex_unlock(&hak_pool_lock);
    }
    return n;
}

/* malloc_trim for the heaps of exited threads: no thread uses them, so the
 * trimming thread may act as the owner of each while it is off the lists
 * (other threads' frees into their slabs still arrive through the atomic
 * remote queues, which hak_heap_trim drains).  They wait on the trim queue,
 * where new threads can still adopt them, and are taken one at a time:
 * taking the whole list at once made every thread that started meanwhile
 * map a new heap, so thread churn grew the heap count without bound. */
static size_t heap_trim_orphans(int full) {
    pthread_mutex_lock(&hak_pool_lock);
    hak_heap_t *list = heap_orphans;
    if (list) {
        hak_heap_t *last = list;
        while (last->next_orphan) last = last->next_orphan;
        last->next_orphan = heap_trim_queue;
        heap_trim_queue = list;
        __atomic_store_n(&heap_orphans, NULL, __ATOMIC_RELEASE);
        heap_orphans_tail = NULL;
    }
    pthread_mutex_unlock(&hak_pool_lock);
    size_t n = 0;
    for (;;) {
        pthread_mutex_lock(&hak_pool_lock);
        hak_heap_t *h = heap_trim_queue;
        if (h) heap_trim_queue = h->next_orphan;
        pthread_mutex_unlock(&hak_pool_lock);
        if (!h) break;
        n += full ? hak_heap_trim(h) : heap_release(h) + orphan_purge(h);
        pthread_mutex_lock(&hak_pool_lock);
        if (full) orphan_unreserve(h);
        orphan_push(h);
        pthread_mutex_unlock(&hak_pool_lock);
    }
    return n;
}

/* malloc_trim: the orphans trimmed in full. */
size_t hak_heap_trim_orphans(void) { return heap_trim_orphans(1); }

/* Thread exit: the heap gives back what it can but its share of the orphan
 * budget and, with the slabs that still hold live blocks, waits on the
 * orphan list for the next thread.  A thread that sent blocks to exited
 * threads' heaps (its orphan debt, below the bound that trims them) trims
 * them before it goes: nobody else would count those blocks, and each one
 * pins its slab and SuperSlab until a thread adopts that heap.  Without
 * this, test_chaos's thread waves (4 collectors that exit owing up to 4 MiB
 * each) ended with 7-18 SuperSlabs mapped and 4-10 MiB resident (12 runs),
 * with it 7 and 4-5 MiB. */
void hak_heap_abandon(hak_heap_t *h) {
    if (h == NULL || h == &hak_heap_empty) return;
    hak_tl_heap = &hak_heap_empty;
    hak_heap_lock(h);
    heap_release(h);
    orphan_purge(h);
    __atomic_store_n(&h->active, 0, __ATOMIC_RELAXED);   /* no proxy drain from here on */
    size_t debt = h->orphan_debt;
    h->orphan_debt = 0;
    hak_heap_unlock(h);
    if (debt) heap_trim_orphans(0);
    pthread_mutex_lock(&hak_pool_lock);
    orphan_push(h);
    pthread_mutex_unlock(&hak_pool_lock);
}

/* In the child of fork() only the forking thread exists.  Heaps of the other
 * threads may have been mid-update at the fork, so they are left alone (their
 * memory is lost to the child) rather than recycled. */
void hak_heap_fork_child(hak_heap_t *self) {
    for (hak_heap_t *h = heap_all; h; h = h->next_all)
        if (h != self && !h->is_starter && h->active) h->active = 0;
}
