/* Large tier: blocks above the slab classes (HAK_SMALL_MAX) up to hak_run_max()
 * (HAKMEM_LARGE_RUN_MAX_MIB, 32 MiB) are runs of 4 KiB pages cut from 256 MiB
 * regions.  Bigger blocks are mappings of their own (huge.c).
 *
 * Objects:
 *
 *   arena (run_arena_t)    HAK_ARENAS of them, each with its own lock, its
 *                          regions, its free runs indexed by size and its
 *                          dirty list.  A thread takes an arena round robin at
 *                          its first large allocation; a block goes back to
 *                          the arena of its region, whichever thread frees it.
 *   region (run_region_t)  256 MiB aligned to 256 MiB.  The registry byte of
 *                          each of its 2 MiB says HAK_REG_RUN, so free finds
 *                          the region by masking the pointer: no table.  Its
 *                          header holds a bitmap of dirty pages and one
 *                          descriptor per page; the pages after the header
 *                          are cut into runs.
 *   run                    a span of pages of one region, a live block or
 *                          free.  Only the descriptors of its first and last
 *                          page describe it (length, free, dirty); inside a
 *                          run they are zero or PD_GHOST (a block started
 *                          here once), so a pointer inside a block is never
 *                          taken for the start of one.
 *   free run               in its arena's size bin (four bins per doubling of
 *                          pages, a bitmap of the non-empty ones), dirty runs
 *                          first; if some of its pages may be resident, also
 *                          on the arena's dirty list, oldest first.  Free
 *                          neighbours are merged at once; a run is split
 *                          exactly, to the page.
 *   fence                  hardened flavor only: a one-page live run,
 *                          PROT_NONE, right after a block of up to 4 MiB (its
 *                          guard page); it outlives the block, so the next
 *                          block that fits before it needs no mprotect call
 *                          (see "Fences" below).
 *
 * Layout of a region:
 *
 *   +0                  run_region_t: fields, dirty bitmap, pages[65536]
 *   +HDR_PAGES * 4 KiB  first page a run can use
 *   ...
 *   +256 MiB
 *
 * Dirty pages and purging.  A freed run's pages stay resident so that the
 * next block of that size reuses them with no system call and no page fault.
 * They are purged (hak_os_purge) when they have been free for
 * HAKMEM_LARGE_DECAY_MS, or, oldest first, past a byte bound: an arena keeps
 * at most twice the most its live blocks held within the decay time, and
 * none once its last block is freed, beyond HAKMEM_LARGE_CACHE_MIB for all
 * arenas together (arena_decay).  Both are checked on the allocation and
 * free paths; HAKMEM_BACKGROUND_PURGE=1 adds a thread that checks while the
 * process is idle.  A dirty bit per page says what was written since the
 * last purge, so purges and calloc's zeroing cover only those pages.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hakmem.h"
#include "hakmem_internal.h"

#define PAGE_SHIFT      12
#define PAGE            ((size_t)1 << PAGE_SHIFT)
#define REGION_SHIFT    28                          /* 256 MiB */
#define REGION_SIZE     ((uintptr_t)1 << REGION_SHIFT)
#define REGION_PAGES    ((uint32_t)(REGION_SIZE >> PAGE_SHIFT))
#define NBINS           64
#define LIVE_MULT       2       /* dirty pages an arena keeps: 2 x its recent live peak */

enum {
    PD_START = 1,       /* first page of a run */
    PD_END   = 2,       /* last page of a run (with PD_START for one page) */
    PD_FREE  = 4,       /* the run is free (both boundary descriptors) */
    PD_DIRTY = 8,       /* free run on the dirty list (first descriptor) */
    PD_GHOST = 16,      /* inside a free run: a block started here */
    PD_FENCE = 32,      /* hardened: a one-page live run, PROT_NONE: a guard page */
};

/* page_desc_t.bin of a live block's first page while the block waits in a
 * heap's run cache (free runs hold their bin there, below NBINS). */
#define RUN_CACHED 0xffffu

typedef struct page_desc {
    uint32_t npages;                    /* run length, at both ends */
    uint16_t flags;
    uint16_t bin;                       /* free run: its size bin; live: RUN_CACHED or not */
    uint32_t stamp;                     /* free run: ms when it went on the dirty list */
    uint32_t ndirty;                    /* free run: its pages written since their purge */
    struct page_desc *next, *prev;      /* size bin */
    struct page_desc *dnext, *dprev;    /* dirty list */
} page_desc_t;

struct run_arena;

typedef struct run_region {
    uint64_t magic;
    struct run_arena *arena;
    struct run_region *next;
    uint32_t free_pages;
    uint64_t dirty[REGION_PAGES / 64];  /* bit i: page i written since its last purge */
    page_desc_t pages[REGION_PAGES];
} run_region_t;

#define HDR_PAGES       ((uint32_t)((sizeof(run_region_t) + PAGE - 1) >> PAGE_SHIFT))
#define USABLE_PAGES    (REGION_PAGES - HDR_PAGES)
#define REGION_MAGIC    0x48414b4d52554e53ull       /* "HAKMRUNS" */

typedef struct run_arena {
    pthread_mutex_t lock;
    uint64_t nonempty;                  /* bit b: bin b has a run */
    page_desc_t *bin_head[NBINS], *bin_tail[NBINS];
    page_desc_t *dirty_head, *dirty_tail;
    size_t dirty_pages;
    size_t live_pages;                  /* pages of live blocks */
    size_t cached_pages;                /* of which in heaps' run caches (atomic: any thread) */
    size_t live_peak[2];                /* most live pages: last window, this window */
    size_t block_peak[2];               /* largest block served or freed: same */
    uint32_t peak_stamp;                /* ms when this window began (windows: decay time) */
    uint32_t zero_stamp;                /* ms when the live set last went to zero */
    int zero_seen;
    run_region_t *regions;
    unsigned nregions;
    /* Counters of the tier's every operation live here, under the lock,
     * not in hak_gstats: atomics on one shared line from every thread would
     * cost more than the rest of a large malloc (hak_large_stats sums them). */
    uint64_t nlive, nsplit, ncoalesced, nreused;
} __attribute__((aligned(64))) run_arena_t;

static run_arena_t arenas[HAK_ARENAS] = {
    [0 ... HAK_ARENAS - 1] = { .lock = PTHREAD_MUTEX_INITIALIZER },
};
static __thread uint32_t tl_arena __attribute__((tls_model("initial-exec")));  /* index + 1 */
static uint32_t arena_next;
static int bg_started;

_Static_assert(sizeof(page_desc_t) == 48, "page descriptor is 48 bytes");
_Static_assert(HDR_PAGES < REGION_PAGES / 64, "region header is small");
_Static_assert(4 * (REGION_SHIFT - PAGE_SHIFT - 2) + 3 < NBINS, "every run length has a bin");

/* ---------------------------------------------------------------- helpers */

size_t hak_run_max(void) {
    size_t m = (size_t)hak_opt.large_run_max_mib << 20;
    return m < (size_t)USABLE_PAGES << PAGE_SHIFT ? m : (size_t)USABLE_PAGES << PAGE_SHIFT;
}

static uint32_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

HAK_INLINE run_region_t *region_of(uintptr_t a) { return (run_region_t *)(a & ~(REGION_SIZE - 1)); }
HAK_INLINE uint32_t desc_index(const run_region_t *r, const page_desc_t *d) { return (uint32_t)(d - r->pages); }
HAK_INLINE uintptr_t page_addr(const run_region_t *r, uint32_t i) { return (uintptr_t)r + ((uintptr_t)i << PAGE_SHIFT); }

/* Page counts are read without the lock by statistics and by other arenas'
 * byte bound: relaxed stores. */
static void stat_dirty(run_arena_t *a, long pages) {
    __atomic_store_n(&a->dirty_pages, a->dirty_pages + (size_t)pages, __ATOMIC_RELAXED);
}

static void stat_live(run_arena_t *a, long pages) {
    __atomic_store_n(&a->live_pages, a->live_pages + (size_t)pages, __ATOMIC_RELAXED);
}

/* Dirty bytes of all arenas (read when an arena is over its own bound). */
static size_t dirty_bytes_all(void) {
    size_t n = 0;
    for (unsigned k = 0; k < HAK_ARENAS; k++) n += __atomic_load_n(&arenas[k].dirty_pages, __ATOMIC_RELAXED);
    return n << PAGE_SHIFT;
}

#define ARENA_STAT(a, field) __atomic_store_n(&(a)->field, (a)->field + 1, __ATOMIC_RELAXED)

/* Size bins: runs of 1..3 pages in bins 1..3, then four per doubling. */
static unsigned bin_of(uint32_t n) {
    if (n < 4) return n;
    unsigned k = 31u - (unsigned)__builtin_clz(n);
    return 4 * (k - 1) + ((n >> (k - 2)) & 3);
}

/* ----------------------------------------------------- dirty page bitmap */

/* Calls f on each 64-bit word of bitmap bm covering pages [i, i+n), with the
 * mask of the pages in range. */
#define BITS_FOR(bm, i, n, w, mask, body)                                        \
    for (uint32_t _p = (i), _e = (i) + (n); _p < _e;) {                           \
        uint32_t _o = _p & 63, _k = _e - _p < 64 - _o ? _e - _p : 64 - _o;         \
        uint64_t mask = (_k == 64 ? ~0ull : ((1ull << _k) - 1)) << _o;            \
        uint64_t *w = &(bm)[_p >> 6];                                             \
        body;                                                                     \
        _p += _k;                                                                 \
    }

static uint32_t bits_take(uint64_t *bm, uint32_t i, uint32_t n) {    /* count, clear */
    uint32_t c = 0;
    BITS_FOR(bm, i, n, w, m, { c += (uint32_t)__builtin_popcountll(*w & m); *w &= ~m; })
    return c;
}

static void bits_set(uint64_t *bm, uint32_t i, uint32_t n) {
    BITS_FOR(bm, i, n, w, m, { *w |= m; })
}

static uint32_t bits_count(const uint64_t *bm, uint32_t i, uint32_t n) {
    uint32_t c = 0;
    BITS_FOR((uint64_t *)bm, i, n, w, m, { c += (uint32_t)__builtin_popcountll(*w & m); })
    return c;
}

/* The first and last set bits of [i, i+n), which holds at least one. */
static void bits_span(const uint64_t *bm, uint32_t i, uint32_t n, uint32_t *lo, uint32_t *hi) {
    uint32_t p = i, e = i + n;
    while (!(bm[p >> 6] >> (p & 63))) p = (p | 63) + 1;
    p += (uint32_t)__builtin_ctzll(bm[p >> 6] >> (p & 63));
    uint32_t q = e - 1;
    while (!(bm[q >> 6] << (63 - (q & 63)))) q = (q & ~63u) - 1;
    q -= (uint32_t)__builtin_clzll(bm[q >> 6] << (63 - (q & 63)));
    *lo = p;
    *hi = q + 1;
}

/* ------------------------------------------------------ bins, dirty list */

static void bin_insert(run_arena_t *a, page_desc_t *d) {
    unsigned b = bin_of(d->npages);
    d->bin = b;
    if (d->flags & PD_DIRTY) {          /* warm pages first */
        d->prev = NULL;
        d->next = a->bin_head[b];
        if (d->next) d->next->prev = d; else a->bin_tail[b] = d;
        a->bin_head[b] = d;
    } else {
        d->next = NULL;
        d->prev = a->bin_tail[b];
        if (d->prev) d->prev->next = d; else a->bin_head[b] = d;
        a->bin_tail[b] = d;
    }
    a->nonempty |= 1ull << b;
}

static void bin_remove(run_arena_t *a, page_desc_t *d) {
    unsigned b = d->bin;
    if (d->prev) d->prev->next = d->next; else a->bin_head[b] = d->next;
    if (d->next) d->next->prev = d->prev; else a->bin_tail[b] = d->prev;
    if (!a->bin_head[b]) a->nonempty &= ~(1ull << b);
}

/* The background thread peeks at dirty_head without the lock (is there
 * anything to purge?): it is written with relaxed atomic stores. */
static void dirty_set_head(run_arena_t *a, page_desc_t *d) {
    __atomic_store_n(&a->dirty_head, d, __ATOMIC_RELAXED);
}

/* Insert d after pos (NULL: at the head, the oldest end). */
static void dirty_insert_after(run_arena_t *a, page_desc_t *pos, page_desc_t *d) {
    d->dprev = pos;
    d->dnext = pos ? pos->dnext : a->dirty_head;
    if (d->dnext) d->dnext->dprev = d; else a->dirty_tail = d;
    if (pos) pos->dnext = d; else dirty_set_head(a, d);
}

static void dirty_remove(run_arena_t *a, page_desc_t *d) {
    if (d->dprev) d->dprev->dnext = d->dnext; else dirty_set_head(a, d->dnext);
    if (d->dnext) d->dnext->dprev = d->dprev; else a->dirty_tail = d->dprev;
}

/* Write the boundary descriptors of run [i, i+n). */
static page_desc_t *run_set(run_region_t *r, uint32_t i, uint32_t n, uint32_t flags) {
    page_desc_t *f = &r->pages[i];
    f->npages = n;
    f->flags = flags | PD_START | (n == 1 ? PD_END : 0);
    if (n > 1) {
        page_desc_t *l = &r->pages[i + n - 1];
        l->npages = n;
        l->flags = (flags & PD_FREE) | PD_END;
    }
    return f;
}

/* Make [i, i+n) a free run in the bins, with ndirty dirty pages; a dirty
 * one goes on the dirty list after *dpos. */
static page_desc_t *free_run_add(run_arena_t *a, run_region_t *r, uint32_t i, uint32_t n,
                                 uint32_t ndirty, uint32_t stamp, page_desc_t **dpos) {
    page_desc_t *d = run_set(r, i, n, PD_FREE | (ndirty ? PD_DIRTY : 0));
    d->stamp = stamp;
    d->ndirty = ndirty;
    if (ndirty) {
        dirty_insert_after(a, *dpos, d);
        *dpos = d;
    }
    bin_insert(a, d);
    return d;
}

/* --------------------------------------------------------------- regions */

static void region_registry(run_region_t *r, uint8_t v) {
    uintptr_t ri = (uintptr_t)r >> HAK_SS_SHIFT;
    for (uintptr_t k = 0; k < (REGION_SIZE >> HAK_SS_SHIFT); k++)
        __atomic_store_n(&hak_registry[ri + k], v, __ATOMIC_RELEASE);
}

/* A new region of arena a (which it joins later, under a's lock); its
 * arena is set before the registry shows it to free. */
static run_region_t *region_map(run_arena_t *a) {
    run_region_t *r = hak_os_map_aligned(REGION_SIZE, REGION_SIZE);
    HAK_GSTAT_ADD(large_syscalls, 3);                 /* map, cut head and tail */
    if (!r) return NULL;
    if (((uintptr_t)r >> HAK_SS_SHIFT) + (REGION_SIZE >> HAK_SS_SHIFT) > HAK_REGISTRY_SIZE) {
        hak_os_unmap(r, REGION_SIZE);
        return NULL;
    }
    r->magic = REGION_MAGIC;
    r->arena = a;
    region_registry(r, HAK_REG_RUN);
    HAK_GSTAT_ADD(large_map_calls, 1);
    HAK_GSTAT_ADD(large_regions, 1);
    return r;
}

/* A new region's pages form one clean free run. */
static void region_add(run_arena_t *a, run_region_t *r) {
    r->next = a->regions;
    a->regions = r;
    a->nregions++;
    r->free_pages = USABLE_PAGES;
    page_desc_t *pos = NULL;
    free_run_add(a, r, HDR_PAGES, USABLE_PAGES, 0, 0, &pos);
}

/* Unmap a region whose pages are all free and purged.  Caller holds the
 * arena's lock; the registry entries go first, so no free can find it. */
static void region_unmap(run_arena_t *a, run_region_t *r) {
    bin_remove(a, &r->pages[HDR_PAGES]);
    run_region_t **pp = &a->regions;
    while (*pp != r) pp = &(*pp)->next;
    *pp = r->next;
    a->nregions--;
    region_registry(r, 0);
    hak_os_unmap(r, REGION_SIZE);
    HAK_GSTAT_ADD(large_syscalls, 1);
    HAK_GSTAT_SUB(large_regions, 1);
}

/* ------------------------------------------------------------------- runs */

/* Of the first FIT_SCAN runs of a bin, the one that fits n best: the
 * smallest, then a dirty one (its pages are resident), then the lowest
 * address (blocks stay packed at the start of their regions). */
#define FIT_SCAN 16
static page_desc_t *bin_best(page_desc_t *d, uint32_t n, int all) {
    page_desc_t *best = NULL;
    for (unsigned k = 0; d && (all || k < FIT_SCAN); d = d->next, k++) {
        if (d->npages < n) continue;
        if (!best || d->npages < best->npages ||
            (d->npages == best->npages && ((d->flags & PD_DIRTY) > (best->flags & PD_DIRTY) ||
                                           ((d->flags & PD_DIRTY) == (best->flags & PD_DIRTY) && d < best))))
            best = d;
    }
    return best;
}

/* A free run of at least n pages, or NULL: the best of the bin of n, else
 * of the smallest non-empty larger bin (where every run fits), else of the
 * whole bin of n. */
static page_desc_t *find_fit(run_arena_t *a, uint32_t n) {
    unsigned b = bin_of(n);
    page_desc_t *d = bin_best(a->bin_head[b], n, 0);
    if (d) return d;
    uint64_t m = b + 1 < NBINS ? a->nonempty & ~((2ull << b) - 1) : 0;
    if (m) return bin_best(a->bin_head[__builtin_ctzll(m)], n, 0);
    return bin_best(a->bin_head[b], n, 1);
}

/* Take pages [i+off, i+off+n) of free run d as a live block; what is left
 * before and after stays free, at d's place on the dirty list.  Returns the
 * number of dirty pages taken. */
static uint32_t run_take(run_arena_t *a, page_desc_t *d, uint32_t off, uint32_t n) {
    run_region_t *r = region_of((uintptr_t)d);
    uint32_t i = desc_index(r, d), total = d->npages, stamp = d->stamp, ndirty = d->ndirty;
    int was_dirty = ndirty != 0;
    page_desc_t *pos = NULL;
    bin_remove(a, d);
    if (was_dirty) {
        pos = d->dprev;
        dirty_remove(a, d);
    }
    uint32_t dirty = was_dirty ? bits_take(r->dirty, i + off, n) : 0;
    uint32_t head_dirty = was_dirty && off ? bits_count(r->dirty, i, off) : 0;
    if (off) {
        free_run_add(a, r, i, off, head_dirty, stamp, &pos);
        ARENA_STAT(a, nsplit);
    }
    uint32_t rest = total - off - n;
    if (rest) {
        free_run_add(a, r, i + off + n, rest, ndirty - dirty - head_dirty, stamp, &pos);
        ARENA_STAT(a, nsplit);
    }
    run_set(r, i + off, n, 0);
    r->free_pages -= n;
    if (dirty) {
        stat_dirty(a, -(long)dirty);
        ARENA_STAT(a, nreused);
    }
    stat_live(a, n);
    return dirty;
}

/* Pages [i, i+n) of r become free (dirty: written by their user) and merge
 * with free neighbours.  Returns the merged run. */
static page_desc_t *run_release(run_arena_t *a, run_region_t *r, uint32_t i, uint32_t n,
                                uint32_t now) {
    bits_set(r->dirty, i, n);
    stat_dirty(a, n);
    r->free_pages += n;
    uint32_t ndirty = n;
    page_desc_t *own = &r->pages[i], *own_end = &r->pages[i + n - 1];
    own_end->flags = 0;
    own->flags = 0;
    if (i > HDR_PAGES && (r->pages[i - 1].flags & PD_FREE)) {
        page_desc_t *le = &r->pages[i - 1];
        uint32_t ln = le->npages;
        page_desc_t *l = &r->pages[i - ln];
        bin_remove(a, l);
        if (l->flags & PD_DIRTY) dirty_remove(a, l);
        ndirty += l->ndirty;
        le->flags = 0;
        own->flags = PD_GHOST;          /* a later free of this pointer: double free */
        i -= ln;
        n += ln;
        ARENA_STAT(a, ncoalesced);
    }
    if (i + n < REGION_PAGES && (r->pages[i + n].flags & PD_FREE)) {
        page_desc_t *rs = &r->pages[i + n];
        bin_remove(a, rs);
        if (rs->flags & PD_DIRTY) dirty_remove(a, rs);
        ndirty += rs->ndirty;
        rs->flags = PD_GHOST;           /* it may have been a freed block's start */
        n += rs->npages;
        ARENA_STAT(a, ncoalesced);
    }
    page_desc_t *pos = a->dirty_tail;
    return free_run_add(a, r, i, n, ndirty, now, &pos);
}

#if HAKMEM_HARDENED
/* Fences (hardened flavor).  A large block of the hardened flavor has a
 * guard page right after it.  Set up and taken down with each block, that
 * page cost two mprotect calls per block, which on two threads also wait
 * for each other's TLB flushes (the 64 KiB-1 MiB band ran 49x slower than
 * release).  Here the guard page is a run of its own, a fence: it stays
 * PROT_NONE when the block before it is freed, and a free run that ends at
 * a fence gives its last pages to the next block of at most its size, which
 * needs no system call.  Fences do not merge with free runs, so the pages
 * between two fences stay a unit; a fence goes when the run before it is
 * purged (free for the decay time, or for the byte bound, or by
 * malloc_trim), and its neighbours merge. */
static void fence_remove(run_arena_t *a, run_region_t *r, uint32_t j) {
    hak_os_protect((void *)page_addr(r, j), PAGE, 0);   /* under the lock: then free */
    HAK_GSTAT_ADD(large_fence_calls, 1);
    HAK_GSTAT_SUB(large_fences, 1);
    run_release(a, r, j, 1, now_ms());
}

/* The free run that ends at a fence and fits n pages best, among the first
 * FIT_SCAN runs of the first few bins that can hold n; or NULL. */
static page_desc_t *find_fenced(run_arena_t *a, uint32_t n) {
    unsigned b = bin_of(n);
    uint64_t m = a->nonempty & ~((1ull << b) - 1);
    page_desc_t *best = NULL;
    for (unsigned bins = 0; m && bins < 4 && !best; bins++, m &= m - 1) {
        unsigned k = 0;
        for (page_desc_t *d = a->bin_head[__builtin_ctzll(m)]; d && k < FIT_SCAN; d = d->next, k++) {
            if (d->npages < n || (best && d->npages >= best->npages)) continue;
            run_region_t *r = region_of((uintptr_t)d);
            uint32_t e = desc_index(r, d) + d->npages;
            if (e < REGION_PAGES && (r->pages[e].flags & PD_FENCE)) best = d;
        }
    }
    return best;
}
#endif

/* Purge the dirty pages of free run d (one call over the span from its
 * first to its last dirty page).  A region that has had no live block for
 * the decay time is unmapped if the arena has another; purging for the
 * byte bound keeps it (its address space costs nothing, and a program that
 * frees everything now and then would otherwise map it again each time). */
static void run_purge(run_arena_t *a, page_desc_t *d, int by_bound) {
    run_region_t *r = region_of((uintptr_t)d);
    uint32_t i = desc_index(r, d), pages = d->ndirty, lo = i, hi = i;
    if (HAKMEM_DEBUG_CHECKS && bits_count(r->dirty, i, d->npages) != pages)
        hak_fatal("page runs: a free run's dirty count is out of step with its pages");
    if (pages) bits_span(r->dirty, i, d->npages, &lo, &hi);
    bits_take(r->dirty, lo, hi - lo);
    dirty_remove(a, d);
    bin_remove(a, d);
    d->flags &= (uint16_t)~PD_DIRTY;
    d->ndirty = 0;
    stat_dirty(a, -(long)pages);
    if (by_bound) HAK_GSTAT_ADD(large_purged_bound_bytes, (size_t)pages << PAGE_SHIFT);
    else HAK_GSTAT_ADD(large_purged_decay_bytes, (size_t)pages << PAGE_SHIFT);
    if (!by_bound && r->free_pages == USABLE_PAGES && a->nregions > 1) {
        bin_insert(a, d);
        region_unmap(a, r);
        return;
    }
    if (pages) {
        hak_os_purge((void *)page_addr(r, lo), (size_t)(hi - lo) << PAGE_SHIFT);
        HAK_GSTAT_ADD(large_syscalls, 1);
    }
    bin_insert(a, d);
#if HAKMEM_HARDENED
    /* a fence after a run that stayed free for the decay time (or is
     * purged for the bound) guards nothing: it goes, and the runs around
     * it merge */
    uint32_t e = i + d->npages;
    if (e < REGION_PAGES && (r->pages[e].flags & PD_FENCE)) fence_remove(a, r, e);
#endif
}

/* Purge what has been free for the decay time; then, oldest first, while
 * all arenas together hold more than HAKMEM_LARGE_CACHE_MIB of dirty pages
 * and this arena more than it may keep: LIVE_MULT times the most pages its
 * live blocks held within the last one or two decay times (a live set that
 * dips keeps its pages).  When its last block is freed it keeps only the
 * largest block it served or took back in that time: a program that frees
 * all it has gets its memory back at once, one that takes and frees one
 * buffer at a time keeps that buffer.  A live set that goes to zero again
 * within the decay time is a steady one that happens to touch zero, and
 * keeps its pages as before.  `block` is the size of the block just
 * allocated or freed.  Each arena answers for its own pages, so a busy arena
 * never purges for an idle one. */
static void arena_age(run_arena_t *a, uint32_t now, uint32_t decay) {
    while (a->dirty_head && (int32_t)(now - a->dirty_head->stamp) >= (int32_t)decay)
        run_purge(a, a->dirty_head, 0);
}

/* An arena nobody uses any more (its heap's thread exited and no thread
 * adopted the heap) would keep its dirty pages for good with no background
 * thread: every half decay time, the arena user who comes first purges
 * what has been free for the decay time in the other arenas it can lock
 * at once (it never waits for a busy one, which ages its own). */
static uint32_t idle_scan_stamp;

static HAK_COLD void arena_age_others(run_arena_t *a, uint32_t now, uint32_t decay) {
    for (unsigned k = 0; k < HAK_ARENAS; k++) {
        run_arena_t *b = &arenas[k];
        if (b == a || !__atomic_load_n(&b->dirty_head, __ATOMIC_RELAXED)) continue;
        if (pthread_mutex_trylock(&b->lock) != 0) continue;
        arena_age(b, now, decay);
        pthread_mutex_unlock(&b->lock);
    }
}

static void arena_decay(run_arena_t *a, uint32_t now, uint32_t block) {
    uint32_t decay = (uint32_t)hak_opt.large_decay_ms;
    arena_age(a, now, decay);
    uint32_t last = __atomic_load_n(&idle_scan_stamp, __ATOMIC_RELAXED);
    if (HAK_UNLIKELY(now - last > decay / 2) &&
        __atomic_compare_exchange_n(&idle_scan_stamp, &last, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        arena_age_others(a, now, decay);
    if (now - a->peak_stamp >= decay) {
        a->live_peak[0] = a->live_peak[1];
        a->block_peak[0] = a->block_peak[1];
        a->live_peak[1] = a->block_peak[1] = 0;
        a->peak_stamp = now;
    }
    /* blocks waiting in run caches are free ones to this count */
    size_t cached = __atomic_load_n(&a->cached_pages, __ATOMIC_RELAXED);
    size_t live = a->live_pages > cached ? a->live_pages - cached : 0;
    if (live > a->live_peak[1]) a->live_peak[1] = live;
    if (block > a->block_peak[1]) a->block_peak[1] = block;
    size_t peak = a->live_peak[0] > a->live_peak[1] ? a->live_peak[0] : a->live_peak[1];
    size_t keep = peak * LIVE_MULT;
    if (live == 0) {
        int again = a->zero_seen && now - a->zero_stamp < decay;
        a->zero_seen = 1;
        a->zero_stamp = now;
        if (!again) keep = a->block_peak[0] > a->block_peak[1] ? a->block_peak[0] : a->block_peak[1];
    }
    size_t fixed = (size_t)hak_opt.large_cache_mib << 20;
    while (a->dirty_head && a->dirty_pages > keep &&
           dirty_bytes_all() > fixed)
        run_purge(a, a->dirty_head, 1);
}

/* ------------------------------------------------------ background purge */

static void *bg_main(void *arg) {
    (void)arg;
    for (;;) {
        long ms = hak_opt.large_decay_ms / 2 > 10 ? hak_opt.large_decay_ms / 2 : 10;
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
        for (unsigned k = 0; k < HAK_ARENAS; k++) {
            run_arena_t *a = &arenas[k];
            if (!__atomic_load_n(&a->dirty_head, __ATOMIC_RELAXED)) continue;
            pthread_mutex_lock(&a->lock);
            arena_decay(a, now_ms(), 0);
            pthread_mutex_unlock(&a->lock);
        }
    }
    return NULL;
}

/* Started by the first large allocation (with no lock held: pthread_create
 * may allocate). */
static HAK_COLD void bg_start(void) {
    if (__atomic_exchange_n(&bg_started, 1, __ATOMIC_ACQ_REL)) return;
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 64 * 1024);
    if (pthread_create(&t, &at, bg_main, NULL) != 0) hak_write_err("hakmem: warning: no background purge thread\n");
    pthread_attr_destroy(&at);
}

/* ------------------------------------------------------------------- API */

/* The calling thread's arena, locked.  Heaps spread over the arenas round
 * robin and stay there: moving to another arena when this one is busy (a
 * remote free in progress) would leave pages dirty in each arena visited.
 * The arena belongs to the heap, not the thread, so a thread that adopts an
 * exited thread's heap also takes up its arena and the pages it left dirty
 * there (waves of short threads, bench_mstress: with an arena per thread
 * each wave moved on to the next arenas, and all eight kept pages).  A
 * thread without a heap keeps its own. */
static run_arena_t *arena_lock(void) {
    hak_heap_t *h = hak_tl_heap;
    uint32_t k = h != &hak_heap_empty ? h->large_arena : tl_arena;
    if (HAK_UNLIKELY(k == 0)) {
        /* the arena this thread used before it had a heap, if any */
        k = tl_arena ? tl_arena : __atomic_fetch_add(&arena_next, 1, __ATOMIC_RELAXED) % HAK_ARENAS + 1;
        tl_arena = k;
        if (h != &hak_heap_empty) h->large_arena = k;
    }
    run_arena_t *a = &arenas[k - 1];
    pthread_mutex_lock(&a->lock);
    return a;
}

static void large_free_arena(void *p, const char *fn);

/* ------------------------------------------------------------ run cache */

/* A freed block of up to HAK_RUN_CACHE_MAX_PAGES pages waits in the freeing
 * thread's heap, on the list of its page count, for that thread's next block
 * of the same page count: no lock, no split or merge, no decay check, and
 * its pages are warm.  For its arena it stays a live block; its first page
 * descriptor's bin field says RUN_CACHED (swapped in atomically, so a
 * second free of it is seen as one; the flags stay as they were, since the
 * arena's lock holders read them to merge neighbours), and its first word
 * the list link, encoded as a slab free list's is.  A heap holds HAK_RUN_CACHE_PAGES pages at most (beyond,
 * a free goes to the arena as before) and gives them all back when its
 * thread exits, on malloc_trim, and when exited threads' heaps are trimmed
 * (hak_run_cache_flush).  The hardened flavor has no cache: its large
 * blocks are fenced and quarantined. */
#if !HAKMEM_HARDENED
HAK_INLINE page_desc_t *run_first_desc(uintptr_t p) {
    run_region_t *r = region_of(p);
    return &r->pages[(p - (uintptr_t)r) >> PAGE_SHIFT];
}

static void run_cache_count(hak_heap_t *h, long pages, long blocks) {
    __atomic_store_n(&h->run_cache_pages, h->run_cache_pages + (uint32_t)pages, __ATOMIC_RELAXED);
    __atomic_store_n(&h->run_cache_count, h->run_cache_count + (uint32_t)blocks, __ATOMIC_RELAXED);
}

static void *run_cache_take(hak_heap_t *h, uint32_t n) {
    void *p = h->run_cache[n];
    if (!p) return NULL;
    h->run_cache[n] = hak_link_get(p, "malloc");
    __atomic_store_n(&run_first_desc((uintptr_t)p)->bin, (uint16_t)0, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&region_of((uintptr_t)p)->arena->cached_pages, (size_t)n, __ATOMIC_RELAXED);
    run_cache_count(h, -(long)n, -1);
    return p;
}

/* 1 if the block at p (a run's start, n pages per its descriptor d) went
 * into the calling thread's cache. */
static int run_cache_put(void *p, page_desc_t *d, uint32_t n, const char *fn) {
    hak_heap_t *h = hak_tl_heap;
    if (h == &hak_heap_empty || h->run_cache_pages + n > HAK_RUN_CACHE_PAGES) return 0;
    const uint16_t mask = PD_START | PD_FREE | PD_FENCE;
    if ((__atomic_load_n(&d->flags, __ATOMIC_RELAXED) & mask) != PD_START)
        return 0;                          /* not a live block: the locked path says why */
    if (HAK_UNLIKELY(__atomic_exchange_n(&d->bin, (uint16_t)RUN_CACHED, __ATOMIC_RELAXED) == RUN_CACHED))
        hak_fatal_ptr(fn, "double free of", p);
    hak_link_set(p, h->run_cache[n]);
    h->run_cache[n] = p;
    __atomic_fetch_add(&region_of((uintptr_t)p)->arena->cached_pages, (size_t)n, __ATOMIC_RELAXED);
    run_cache_count(h, n, 1);
    return 1;
}

void hak_run_cache_flush(hak_heap_t *h) {
    if (!h->run_cache_count) return;
    for (uint32_t n = 1; n <= HAK_RUN_CACHE_MAX_PAGES; n++) {
        void *p;
        while ((p = run_cache_take(h, n)) != NULL) large_free_arena(p, "free");
    }
}

/* Statistics: blocks in the heaps' run caches are freed blocks, not live. */
static void run_cache_stats(hak_global_stats_t *g) {
    for (hak_heap_t *h = hak_heap_list(); h; h = h->next_all) {
        uint64_t n = __atomic_load_n(&h->run_cache_count, __ATOMIC_RELAXED);
        uint64_t b = (uint64_t)__atomic_load_n(&h->run_cache_pages, __ATOMIC_RELAXED) << PAGE_SHIFT;
        g->large_live -= n;
        g->large_live_bytes -= b;
        g->large_cached_bytes += b;
        g->large_run_cached += n;
        g->large_run_cache_hits += __atomic_load_n(&h->run_cache_hits, __ATOMIC_RELAXED);
    }
}
#else
void hak_run_cache_flush(hak_heap_t *h) { (void)h; }
#endif

/* The caller's arena a (locked) has no free run of n pages with resident
 * pages, only fresh ones (d, or none): take a resident run of another arena
 * instead, if one has such a run and its lock is free at once (never
 * waiting, so no lock order).  A block goes back to the arena of its region
 * whoever frees it, so this only changes where it is cut.  Arenas belong to
 * heaps, and a heap whose thread has exited, or that has stopped using big
 * blocks, kept its warm pages in its arena while the busy heaps faulted in
 * fresh ones (bench_mstress: 20 MB of dirty free runs over five arenas, four
 * of them with no live block, at the peak).  On success *ap and *dp are the
 * other arena, locked (a is unlocked), and its run. */
static HAK_COLD void arena_take_warm(run_arena_t **ap, page_desc_t **dp, uint32_t n) {
    run_arena_t *a = *ap;
    for (unsigned k = 0; k < HAK_ARENAS; k++) {
        run_arena_t *b = &arenas[k];
        if (b == a || __atomic_load_n(&b->dirty_pages, __ATOMIC_RELAXED) < n) continue;
        if (pthread_mutex_trylock(&b->lock) != 0) continue;
        page_desc_t *d = find_fit(b, n);
        if (d && (d->flags & PD_DIRTY) && d->ndirty >= n / 2) {
            pthread_mutex_unlock(&a->lock);
            *ap = b;
            *dp = d;
            return;
        }
        pthread_mutex_unlock(&b->lock);
    }
}

void *hak_large_alloc(size_t size, size_t align, int zero) {
    hak_heap_t *h = hak_tl_heap;
    /* a thread's first block: its heap, which holds its arena and run cache */
    if (HAK_UNLIKELY(h == &hak_heap_empty) && (h = hak_heap_acquire()) == NULL) h = &hak_heap_empty;
#if !HAKMEM_HARDENED
    if (align <= PAGE && size <= (size_t)HAK_RUN_CACHE_MAX_PAGES << PAGE_SHIFT && h->run_cache_count) {
        /* its page count, or up to a quarter more (random sizes spread
         * over many page counts; the extra pages are the block's) */
        uint32_t cn = (uint32_t)((size + PAGE - 1) >> PAGE_SHIFT), top;
        if (cn == 0) cn = 1;
        top = cn + (cn >> 2);
        if (top > HAK_RUN_CACHE_MAX_PAGES) top = HAK_RUN_CACHE_MAX_PAGES;
        for (uint32_t m = cn; m <= top; m++) {
            void *p = run_cache_take(h, m);
            if (p) {
                __atomic_store_n(&h->run_cache_hits, h->run_cache_hits + 1, __ATOMIC_RELAXED);
                if (zero) memset(p, 0, (size_t)m << PAGE_SHIFT);
                return p;
            }
        }
    }
#endif
    if (align < PAGE) align = PAGE;
    size_t run_max = hak_run_max();
    if (size > run_max || size + align - PAGE > run_max) return hak_huge_alloc(size, align, zero);
    if (HAK_UNLIKELY(hak_opt.background_purge && !__atomic_load_n(&bg_started, __ATOMIC_RELAXED)))
        bg_start();
    uint32_t n = (uint32_t)((size + PAGE - 1) >> PAGE_SHIFT);
    if (n == 0) n = 1;
    uint32_t slack = (uint32_t)(align >> PAGE_SHIFT) - 1;
    run_arena_t *a = arena_lock();
    page_desc_t *d = find_fit(a, n + slack);
    if (!d || !(d->flags & PD_DIRTY)) arena_take_warm(&a, &d, n + slack);
    if (!d) {
        pthread_mutex_unlock(&a->lock);
        run_region_t *r = region_map(a);
        /* No room for a region (aligning one maps 512 MiB for a moment):
         * under an address-space limit (ulimit -v) the block still fits in
         * a mapping of its own.  hak_huge_alloc sets ENOMEM if not. */
        if (!r) return hak_huge_alloc(size, align, zero);
        pthread_mutex_lock(&a->lock);
        region_add(a, r);
        d = find_fit(a, n + slack);
    }
    run_region_t *r = region_of((uintptr_t)d);
    uint32_t i = desc_index(r, d);
    uint32_t off = (uint32_t)((-page_addr(r, i) & (align - 1)) >> PAGE_SHIFT);
    uint32_t dirty = run_take(a, d, off, n);
    arena_decay(a, now_ms(), n);          /* read under the lock: stamps only grow */
    ARENA_STAT(a, nlive);
    pthread_mutex_unlock(&a->lock);
    void *p = (void *)page_addr(r, i + off);
    /* Purged and fresh pages read as zero; MADV_FREE'd ones may not. */
    if (zero && (dirty || hak_opt.purge_mode == 1)) memset(p, 0, (size_t)n << PAGE_SHIFT);
    return p;
}

#if HAKMEM_HARDENED
/* Pages of a fenced run at most: a block of hak_run_max() bytes with the
 * hardened flavor's header and canary (one page more) is still a run, as
 * it is in the other flavors (else a vector grown to 32 MiB would leave
 * the runs and their warm pages). */
static uint32_t fenced_max_pages(void) { return (uint32_t)(hak_run_max() >> PAGE_SHIFT) + 1; }

/* A run of size bytes (align 4 KiB) followed by a fence; NULL if it is
 * beyond the runs (the caller maps it with its own guard page). */
void *hak_large_alloc_fenced(size_t size) {
    uint32_t n = (uint32_t)((size + PAGE - 1) >> PAGE_SHIFT);
    if (n == 0) n = 1;
    if (size > hak_run_max() + PAGE || n > fenced_max_pages()) return NULL;
    if (HAK_UNLIKELY(hak_opt.background_purge && !__atomic_load_n(&bg_started, __ATOMIC_RELAXED)))
        bg_start();
    run_arena_t *a = arena_lock();
    page_desc_t *d = find_fenced(a, n);
    run_region_t *r;
    uint32_t i, off = 0;
    int fence = 0;
    if (d && d->npages <= 8 * n) {           /* its last n pages: the fence is there */
        r = region_of((uintptr_t)d);
        i = desc_index(r, d);
        off = d->npages - n;
        run_take(a, d, off, n);
    } else {
        /* n pages and a new fence, from the start of a fence-ended run much
         * larger than n (its warm pages next to the block, for a vector
         * growing in place), else of the best fit */
        if (!d) d = find_fit(a, n + 1);
        if (!d) {
            pthread_mutex_unlock(&a->lock);
            run_region_t *nr = region_map(a);
            if (!nr) return NULL;
            pthread_mutex_lock(&a->lock);
            region_add(a, nr);
            d = find_fit(a, n + 1);
        }
        r = region_of((uintptr_t)d);
        i = desc_index(r, d);
        run_take(a, d, 0, n + 1);
        run_set(r, i, n, 0);
        run_set(r, i + n, 1, PD_FENCE);
        stat_live(a, -1);                    /* live pages are blocks' pages */
        fence = 1;
    }
    arena_decay(a, now_ms(), n);
    ARENA_STAT(a, nlive);
    pthread_mutex_unlock(&a->lock);
    if (fence) {
        /* the fence is live: no other thread takes it before it is set up */
        hak_os_protect((void *)page_addr(r, i + n), PAGE, 1);
        HAK_GSTAT_ADD(large_fence_calls, 1);
        HAK_GSTAT_ADD(large_fences, 1);
    }
    return (void *)page_addr(r, i + off);
}
#endif

/* The live block starting at p, with its arena locked; or NULL, with *what
 * saying why p is not one. */
static page_desc_t *block_lock(uintptr_t p, run_arena_t **ap, const char **what) {
    run_region_t *r = region_of(p);
    uint32_t i = (uint32_t)((p - (uintptr_t)r) >> PAGE_SHIFT);
    *what = "invalid pointer (inside or beyond a block)";
    if ((p & (PAGE - 1)) || i < HDR_PAGES) return NULL;
    run_arena_t *a = r->arena;
    pthread_mutex_lock(&a->lock);
    page_desc_t *d = &r->pages[i];
    uint32_t f = d->flags;
    int cached = (f & PD_START) && __atomic_load_n(&d->bin, __ATOMIC_RELAXED) == RUN_CACHED;
    if ((f & (PD_START | PD_FREE | PD_FENCE)) == PD_START && !cached) {
        *ap = a;
        return d;
    }
    pthread_mutex_unlock(&a->lock);
    if (f & PD_FENCE) *what = "invalid pointer (a guard page) at";
    /* a free run: freed before, or the rest of a split never handed out */
    if (f & PD_START) *what = "double free (or free of a block not handed out) of";
    else if (f & PD_GHOST) *what = "double free (or pointer inside a block) of";
    if (cached) *what = "double free of";              /* waiting in a run cache */
    return NULL;
}

static int is_run(uintptr_t p) {
    size_t ri = p >> HAK_SS_SHIFT;
    return ri < HAK_REGISTRY_SIZE && hak_registry[ri] == HAK_REG_RUN;
}

void hak_large_free(void *p, const char *fn) {
    uintptr_t a = (uintptr_t)p;
    if (!is_run(a)) {
        int h = (a & (HAK_MIN_ALIGN - 1)) ? 0 : hak_huge_free(p);
        if (h > 0) return;
        hak_fatal_ptr(fn, h < 0 ? "double free of" : "invalid pointer", p);
    }
#if !HAKMEM_HARDENED
    if (!(a & (PAGE - 1)) && ((a - (uintptr_t)region_of(a)) >> PAGE_SHIFT) >= HDR_PAGES) {
        page_desc_t *fd = run_first_desc(a);
        uint32_t cn = fd->npages;         /* read unlocked: checked by run_cache_put */
        if (cn <= HAK_RUN_CACHE_MAX_PAGES && cn && run_cache_put(p, fd, cn, fn)) return;
    }
#endif
    large_free_arena(p, fn);
}

/* free of a large block, to its arena (p is in a region). */
static void large_free_arena(void *p, const char *fn) {
    uintptr_t a = (uintptr_t)p;
    const char *what;
    run_arena_t *ar;
    page_desc_t *d = block_lock(a, &ar, &what);
    if (!d) hak_fatal_ptr(fn, what, p);
    run_region_t *r = region_of(a);
    uint32_t n = d->npages;
    uint32_t now = now_ms();
    stat_live(ar, -(long)n);
    run_release(ar, r, desc_index(r, d), n, now);
    arena_decay(ar, now, n);
    __atomic_store_n(&ar->nlive, ar->nlive - 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&ar->lock);
}

size_t hak_large_usable(const void *p) {
    uintptr_t a = (uintptr_t)p;
    if (!is_run(a)) return (a & (HAK_MIN_ALIGN - 1)) ? 0 : hak_huge_usable(p);
    run_arena_t *ar;
    const char *what;
    page_desc_t *d = block_lock(a, &ar, &what);
    if (!d) return 0;
    size_t n = (size_t)d->npages << PAGE_SHIFT;
    pthread_mutex_unlock(&ar->lock);
    return n;
}

#if HAKMEM_HARDENED
/* Grow the fenced run at p to size bytes in place, its fence moving to the
 * new end: possible when the run after its fence is free and long enough.
 * 1 if done.  (A vector doubling its capacity would otherwise copy and
 * fault in every page again at each step.) */
int hak_large_grow_fenced(void *p, size_t size) {
    uintptr_t a = (uintptr_t)p;
    if (!is_run(a) || (a & (PAGE - 1))) return 0;
    if (size > hak_run_max() + PAGE) return 0;
    uint32_t need = (uint32_t)((size + PAGE - 1) >> PAGE_SHIFT);
    if (need > fenced_max_pages()) return 0;
    run_region_t *r = region_of(a);
    uint32_t i = (uint32_t)((a - (uintptr_t)r) >> PAGE_SHIFT);
    if (i < HDR_PAGES) return 0;
    run_arena_t *ar = r->arena;
    pthread_mutex_lock(&ar->lock);
    page_desc_t *d = &r->pages[i];
    uint32_t n = d->npages, f = i + n;
    if ((d->flags & (PD_START | PD_FREE | PD_FENCE)) == PD_START && need > n && f + 1 < REGION_PAGES &&
        (r->pages[f].flags & PD_FENCE)) {
        /* free runs after the fence, split by the fences of blocks freed
         * since, become one run as far as the block needs */
        page_desc_t *fr = &r->pages[f + 1];
        while ((fr->flags & PD_FREE) && fr->npages < need - n) {
            uint32_t e = f + 1 + fr->npages;
            if (e + 1 >= REGION_PAGES || !(r->pages[e].flags & PD_FENCE) || !(r->pages[e + 1].flags & PD_FREE))
                break;
            fence_remove(ar, r, e);
        }
    }
    if ((d->flags & (PD_START | PD_FREE | PD_FENCE)) != PD_START || need <= n || f + 1 >= REGION_PAGES ||
        !(r->pages[f].flags & PD_FENCE) || !(r->pages[f + 1].flags & PD_FREE) ||
        r->pages[f + 1].npages < need - n) {
        pthread_mutex_unlock(&ar->lock);
        return 0;
    }
    run_take(ar, &r->pages[f + 1], 0, need - n);   /* pages f+1 .. i+need: the new fence last */
    r->pages[i + n - 1].flags = 0;
    r->pages[f].flags = 0;
    r->pages[f + 1].flags = 0;
    run_set(r, i, need, 0);
    run_set(r, i + need, 1, PD_FENCE);
    /* live pages: need - n more, counted by run_take (the old fence joins
     * the block, the new one was a free page) */
    arena_decay(ar, now_ms(), need);
    pthread_mutex_unlock(&ar->lock);
    /* both pages are the caller's: no other thread touches them */
    hak_os_protect((void *)page_addr(r, i + need), PAGE, 1);
    hak_os_protect((void *)page_addr(r, f), PAGE, 0);
    HAK_GSTAT_ADD(large_fence_calls, 2);
    return 1;
}
#endif

/* realloc of a large block: in place when it shrinks, or grows into a free
 * run right after it; moved (copied) otherwise, and across the bounds (to a
 * slab block, to a huge mapping).  *handled = 0 if p is not a large block. */
void *hak_large_realloc(void *p, size_t size, int *handled) {
    uintptr_t a = (uintptr_t)p;
    if (!is_run(a)) {
        if (a & (HAK_MIN_ALIGN - 1)) {
            *handled = 0;
            return NULL;
        }
        return hak_huge_realloc(p, size, handled);
    }
    run_arena_t *ar;
    const char *what;
    page_desc_t *d = block_lock(a, &ar, &what);
    if (!d) hak_fatal_ptr("realloc", what, p);
    *handled = 1;
    run_region_t *r = region_of(a);
    uint32_t i = desc_index(r, d), n = d->npages;
    size_t old = (size_t)n << PAGE_SHIFT;
    if (size > HAK_SMALL_MAX && size <= hak_run_max()) {
        uint32_t need = (uint32_t)((size + PAGE - 1) >> PAGE_SHIFT);
        if (need < n) {                       /* shrink: the tail goes back */
            run_set(r, i, need, 0);
            stat_live(ar, -(long)(n - need));
            run_release(ar, r, i + need, n - need, now_ms());
            pthread_mutex_unlock(&ar->lock);
            return p;
        }
        page_desc_t *next = i + n < REGION_PAGES ? &r->pages[i + n] : NULL;
        if (need == n) {
            pthread_mutex_unlock(&ar->lock);
            return p;
        }
        if (next && (next->flags & PD_FREE) && next->npages >= need - n) {
            run_take(ar, next, 0, need - n);  /* grow into the free run after it */
            r->pages[i + n - 1].flags = 0;
            r->pages[i + n].flags = 0;
            run_set(r, i, need, 0);
            /* The block is served at its new size: it counts in the live
             * and block peaks the byte bound keeps, as a block allocated at
             * that size would.  Without this, a vector doubled in place to
             * 32 MiB and freed left the arena keeping only the last block
             * it moved (bench_realloc: each vector's 32 MiB purged at its
             * free and faulted back by the next, 122k faults, 1.4 s). */
            arena_decay(ar, now_ms(), need);
            pthread_mutex_unlock(&ar->lock);
            return p;
        }
    }
    pthread_mutex_unlock(&ar->lock);
    void *np = hak_malloc(size);
    if (!np) return NULL;
    memcpy(np, p, size < old ? size : old);
    hak_large_free(p, "realloc");
    return np;
}

/* malloc_trim: purge every dirty page, unmap every empty region, and empty
 * the huge cache.  Returns the bytes released. */
size_t hak_large_trim(void) {
    size_t bytes = 0;
    for (unsigned k = 0; k < HAK_ARENAS; k++) {
        run_arena_t *a = &arenas[k];
        pthread_mutex_lock(&a->lock);
        bytes += a->dirty_pages << PAGE_SHIFT;
        while (a->dirty_head) run_purge(a, a->dirty_head, 1);
        for (run_region_t *r = a->regions, *next; r; r = next) {
            next = r->next;
            if (r->free_pages == USABLE_PAGES) region_unmap(a, r);
        }
        pthread_mutex_unlock(&a->lock);
    }
    return bytes + hak_huge_trim();
}

void hak_large_fork_prepare(void) {
    for (unsigned k = 0; k < HAK_ARENAS; k++) pthread_mutex_lock(&arenas[k].lock);
    hak_huge_fork_prepare();
}

void hak_large_fork_parent(void) {
    hak_huge_fork_parent();
    for (unsigned k = 0; k < HAK_ARENAS; k++) pthread_mutex_unlock(&arenas[k].lock);
}

/* The child has one thread: every arena is consistent (the parent's fork
 * held all their locks) and the background thread is gone. */
void hak_large_fork_child(void) {
    hak_huge_fork_child();
    for (unsigned k = 0; k < HAK_ARENAS; k++) pthread_mutex_unlock(&arenas[k].lock);
    bg_started = 0;
}

/* Add the arenas' counters to a statistics snapshot (read without the
 * locks: each is a relaxed load of a value its arena's lock owner stores). */
void hak_large_stats(hak_global_stats_t *g) {
    for (unsigned k = 0; k < HAK_ARENAS; k++) {
        const run_arena_t *a = &arenas[k];
        g->large_live += __atomic_load_n(&a->nlive, __ATOMIC_RELAXED);
        g->large_live_bytes += (uint64_t)__atomic_load_n(&a->live_pages, __ATOMIC_RELAXED) << PAGE_SHIFT;
        g->large_cached_bytes += (uint64_t)__atomic_load_n(&a->dirty_pages, __ATOMIC_RELAXED) << PAGE_SHIFT;
        g->large_runs_split += __atomic_load_n(&a->nsplit, __ATOMIC_RELAXED);
        g->large_runs_coalesced += __atomic_load_n(&a->ncoalesced, __ATOMIC_RELAXED);
        uint64_t reused = __atomic_load_n(&a->nreused, __ATOMIC_RELAXED);
        g->large_runs_reused += reused;
        g->large_cache_hits += reused;
    }
#if !HAKMEM_HARDENED
    run_cache_stats(g);
#endif
}

/* ------------------------------------------------------------- checker */

static unsigned run_check_fail(const char *what, const void *where) {
    char buf[200];
    snprintf(buf, sizeof buf, "hakmem: hak_check: page runs: %s at %p\n", what, where);
    hak_write_err(buf);
    return 1;
}

/* Walk every arena's regions run by run: boundary descriptors agree, free
 * neighbours were merged, live runs hold no dirty bit, each free run's dirty
 * count matches its bits, and the arena's bins, dirty list and counters
 * match what the walk found.  Returns the number of problems (hak_check). */
unsigned hak_large_check(void) {
    unsigned bad = 0;
    for (unsigned k = 0; k < HAK_ARENAS; k++) {
        run_arena_t *a = &arenas[k];
        pthread_mutex_lock(&a->lock);
        size_t live = 0, dirty = 0, nfree = 0, ndirty_runs = 0, nbin = 0, nlist = 0;
        for (run_region_t *r = a->regions; r; r = r->next) {
            if (r->magic != REGION_MAGIC || r->arena != a) { bad += run_check_fail("region of another arena or without magic", r); continue; }
            uint32_t free_pages = 0, prev_free = 0;
            for (uint32_t i = HDR_PAGES; i < REGION_PAGES;) {
                page_desc_t *d = &r->pages[i], *e;
                uint32_t n = d->npages;
                if (!(d->flags & PD_START) || n == 0 || i + n > REGION_PAGES) { bad += run_check_fail("run without a valid first descriptor", d); break; }
                e = &r->pages[i + n - 1];
                uint32_t fr = d->flags & PD_FREE;
                if (!(e->flags & PD_END) || e->npages != n || (e->flags & PD_FREE) != fr)
                    bad += run_check_fail("run whose last descriptor disagrees with its first", d);
                if (fr) {
                    if (prev_free) bad += run_check_fail("two free runs side by side (not merged)", d);
                    if (bits_count(r->dirty, i, n) != d->ndirty) bad += run_check_fail("free run's dirty count is wrong", d);
                    if (!!(d->flags & PD_DIRTY) != !!d->ndirty) bad += run_check_fail("free run's dirty flag is wrong", d);
                    free_pages += n;
                    dirty += d->ndirty;
                    nfree++;
                    ndirty_runs += d->ndirty != 0;
                } else {
                    if (bits_count(r->dirty, i, n)) bad += run_check_fail("live block with dirty bits", d);
                    if (!(d->flags & PD_FENCE)) live += n;
                    else if (n != 1 || !HAKMEM_HARDENED) bad += run_check_fail("fence of more than a page", d);
                }
                prev_free = fr;
                i += n;
            }
            if (free_pages != r->free_pages) bad += run_check_fail("region's free page count is wrong", r);
        }
        for (unsigned b = 0; b < NBINS; b++) {
            if (!!a->bin_head[b] != !!(a->nonempty & (1ull << b))) bad += run_check_fail("bin bitmap disagrees with the bin", a);
            for (page_desc_t *d = a->bin_head[b]; d && nbin <= nfree; d = d->next, nbin++)
                if (!(d->flags & PD_FREE) || d->bin != b || bin_of(d->npages) != b) { bad += run_check_fail("bin holds a run that is not free or of another size", d); break; }
        }
        for (page_desc_t *d = a->dirty_head; d && nlist <= ndirty_runs; d = d->dnext, nlist++) {
            if (!(d->flags & PD_DIRTY)) { bad += run_check_fail("dirty list holds a clean run", d); break; }
            if (d->dnext && (int32_t)(d->dnext->stamp - d->stamp) < 0) bad += run_check_fail("dirty list out of age order", d);
        }
        if (nbin != nfree) bad += run_check_fail("bins do not hold every free run", a);
        if (nlist != ndirty_runs) bad += run_check_fail("dirty list does not hold every dirty run", a);
        if (live != a->live_pages) bad += run_check_fail("arena's live page count is wrong", a);
        if (dirty != a->dirty_pages) bad += run_check_fail("arena's dirty page count is wrong", a);
        pthread_mutex_unlock(&a->lock);
    }
    return bad;
}
