/* Huge blocks: above the page-run bound (pagerun.c, HAKMEM_LARGE_RUN_MAX_MIB)
 * every block is its own mapping.
 *
 * A table (open addressing, keyed by the user pointer) records every live
 * huge block, so free() can tell one from a bad pointer, and a block needs
 * no in-band header (any alignment up to the mapping's).  A few recently
 * freed mappings are kept for reuse so that a loop on one huge size does not
 * map and fault it in each time.  One lock guards both: these blocks are
 * rare, and every path here is dominated by system calls or page faults.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "hakmem.h"
#include "hakmem_internal.h"

#define PAGE            4096u
#define CACHE_SLOTS     64

typedef struct {
    uintptr_t ptr;          /* user pointer; 0 = empty slot */
    uintptr_t base;         /* start of the mapping */
    size_t    map_size;
} large_ent_t;

typedef struct { uintptr_t base; size_t size; } cached_map_t;

static pthread_mutex_t large_lock = PTHREAD_MUTEX_INITIALIZER;
static large_ent_t *tab;
static size_t tab_cap, tab_count;            /* tab_cap: power of two */
static cached_map_t cache[CACHE_SLOTS];      /* cache[0] is the oldest */
static unsigned cache_n;
static size_t cache_bytes;
static size_t live_bytes;                    /* mapped by live large blocks */

/* The cache may hold half of what live huge blocks map: a program cycling
 * through huge buffers reuses them without faulting their pages in again,
 * and once it frees them all the cache is empty (the page runs keep the
 * fixed HAKMEM_LARGE_CACHE_MIB reserve). */
static size_t cache_bound(void) { return live_bytes / 2; }

static size_t slot_of(uintptr_t ptr) {
    return (size_t)(((ptr >> 12) * 0x9E3779B97F4A7C15ull) >> 20) & (tab_cap - 1);
}

static large_ent_t *tab_find(uintptr_t ptr) {
    if (!tab_cap) return NULL;
    for (size_t i = slot_of(ptr);; i = (i + 1) & (tab_cap - 1)) {
        if (tab[i].ptr == ptr) return &tab[i];
        if (tab[i].ptr == 0) return NULL;
    }
}

static int tab_grow(void) {
    size_t ncap = tab_cap ? tab_cap * 2 : 1024;
    large_ent_t *nt = hak_os_map(ncap * sizeof *nt);
    if (!nt) return -1;
    large_ent_t *old = tab;
    size_t ocap = tab_cap;
    tab = nt;
    tab_cap = ncap;
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].ptr) continue;
        size_t j = slot_of(old[i].ptr);
        while (tab[j].ptr) j = (j + 1) & (tab_cap - 1);
        tab[j] = old[i];
    }
    if (old) hak_os_unmap(old, ocap * sizeof *old);
    return 0;
}

static int tab_insert(uintptr_t ptr, uintptr_t base, size_t map_size) {
    if ((tab_count + 1) * 4 > tab_cap * 3 && tab_grow() != 0) return -1;
    size_t i = slot_of(ptr);
    while (tab[i].ptr) i = (i + 1) & (tab_cap - 1);
    tab[i] = (large_ent_t){ ptr, base, map_size };
    tab_count++;
    return 0;
}

/* Linear-probing delete by shifting later entries back: no tombstones. */
static void tab_remove(large_ent_t *e) {
    size_t i = (size_t)(e - tab);
    for (size_t j = (i + 1) & (tab_cap - 1); tab[j].ptr; j = (j + 1) & (tab_cap - 1)) {
        size_t home = slot_of(tab[j].ptr);
        /* move j to i if its home is not in the cyclic range (i, j] */
        if (((j - home) & (tab_cap - 1)) >= ((j - i) & (tab_cap - 1))) {
            tab[i] = tab[j];
            i = j;
        }
    }
    tab[i].ptr = 0;
    tab_count--;
}

/* The smallest cached mapping of at least `need` bytes; caller holds the
 * lock.  A mapping much larger than needed has its tail cut off (*tail_*,
 * unmapped by the caller outside the lock) rather than being wasted. */
static uintptr_t cache_take(size_t need, size_t *size_out, uintptr_t *tail_base, size_t *tail_size) {
    unsigned best = CACHE_SLOTS, largest = CACHE_SLOTS;
    for (unsigned i = cache_n; i-- > 0;) {        /* newest first: warmest pages */
        if (cache[i].size == need) { best = i; break; }
        if (cache[i].size >= need && (best == CACHE_SLOTS || cache[i].size < cache[best].size)) best = i;
        if (largest == CACHE_SLOTS || cache[i].size > cache[largest].size) largest = i;
    }
    if (best == CACHE_SLOTS) {
        /* Nothing big enough: grow the largest with mremap, so only the
         * added pages are new (the kernel moves the old ones, no copy). */
        if (largest == CACHE_SLOTS || cache[largest].size < need / 2) return 0;
        void *np = mremap((void *)cache[largest].base, cache[largest].size, need, MREMAP_MAYMOVE);
        HAK_GSTAT_ADD(large_syscalls, 1);
        if (np == MAP_FAILED) return 0;
        cache_bytes += need - cache[largest].size;
        HAK_GSTAT_ADD(large_cached_bytes, need - cache[largest].size);
        cache[largest].base = (uintptr_t)np;
        cache[largest].size = need;
        best = largest;
    }
    uintptr_t base = cache[best].base;
    size_t sz = cache[best].size;
    cache_bytes -= sz;
    HAK_GSTAT_SUB(large_cached_bytes, sz);
    HAK_GSTAT_ADD(large_cache_hits, 1);
    memmove(&cache[best], &cache[best + 1], (cache_n - best - 1) * sizeof cache[0]);
    cache_n--;
    if (sz - need > need) {                    /* more than twice: cut the tail */
        *tail_base = base + need;
        *tail_size = sz - need;
        sz = need;
    }
    *size_out = sz;
    return base;
}

static int cache_holds(uintptr_t base) {
    for (unsigned i = 0; i < cache_n; i++)
        if (cache[i].base == base) return 1;
    return 0;
}

static size_t page_round(size_t n) { return (n + PAGE - 1) & ~(size_t)(PAGE - 1); }

/* Mapping size for a request: rounded up to four steps per doubling, so that
 * freed mappings come back in a few sizes that later requests fit exactly
 * (no trimming, no growing, no system call).  The rounding is address space:
 * pages past the request are never touched, so they cost no memory. */
static size_t large_round(size_t n) {
    n = page_round(n);
    unsigned k = 63u - (unsigned)__builtin_clzl(n - 1);
    size_t step = (size_t)1 << (k - 2);
    return step > PAGE ? (n + step - 1) & ~(step - 1) : n;
}

void *hak_huge_alloc(size_t size, size_t align, int zero) {
    if (size > PTRDIFF_MAX - (size_t)(8u << 20) || align > ((size_t)1 << 40)) {
        errno = ENOMEM;
        return NULL;
    }
    size_t need = large_round(size ? size : 1);
    uintptr_t base = 0, ptr;
    size_t map_size = 0;
    int reused = 0;

    uintptr_t tail_base = 0;
    size_t tail_size = 0;
    pthread_mutex_lock(&large_lock);
    if (align <= PAGE) {
        base = cache_take(need, &map_size, &tail_base, &tail_size);
        reused = base != 0;
    }
    pthread_mutex_unlock(&large_lock);
    if (tail_base) {
        hak_os_unmap((void *)tail_base, tail_size);
        HAK_GSTAT_ADD(large_syscalls, 1);
    }

    if (!base) {
        map_size = need;
        base = (uintptr_t)hak_os_map_aligned(need, align > PAGE ? align : PAGE);
        if (!base) { errno = ENOMEM; return NULL; }
        HAK_GSTAT_ADD(large_map_calls, 1);
        HAK_GSTAT_ADD(large_syscalls, 1);
    }
    ptr = base;

    pthread_mutex_lock(&large_lock);
    int bad = tab_insert(ptr, base, map_size);
    if (!bad) live_bytes += map_size;
    pthread_mutex_unlock(&large_lock);
    if (bad) {
        hak_os_unmap((void *)base, map_size);
        errno = ENOMEM;
        return NULL;
    }
    HAK_GSTAT_ADD(large_live, 1);
    HAK_GSTAT_ADD(large_live_bytes, map_size);
    if (zero && reused) memset((void *)ptr, 0, size);
    return (void *)ptr;
}

/* Returns 1 if p was a live large block (now freed), 0 if it is unknown,
 * -1 if it is a large block that was already freed (still cached). */
int hak_huge_free(void *p) {
    uintptr_t ptr = (uintptr_t)p;
    cached_map_t evict[CACHE_SLOTS + 1];
    unsigned nevict = 0;
    pthread_mutex_lock(&large_lock);
    large_ent_t *e = tab_find(ptr);
    if (!e) {
        int dbl = cache_holds(ptr);
        pthread_mutex_unlock(&large_lock);
        return dbl ? -1 : 0;
    }
    uintptr_t base = e->base;
    size_t size = e->map_size;
    tab_remove(e);
    live_bytes -= size;
    HAK_GSTAT_SUB(large_live, 1);
    HAK_GSTAT_SUB(large_live_bytes, size);
    size_t bound = cache_bound();
    if (ptr == base && size <= bound) {
        cache[cache_n++] = (cached_map_t){ base, size };   /* room: see the loop below */
        cache_bytes += size;
        HAK_GSTAT_ADD(large_cached_bytes, size);
        base = 0;
    }
    /* Evict the oldest until the cache fits its bound and keeps a free slot
     * for the next insertion. */
    while (cache_n > 0 && (cache_n > CACHE_SLOTS - 1 || cache_bytes > bound)) {
        evict[nevict++] = cache[0];
        cache_bytes -= cache[0].size;
        HAK_GSTAT_SUB(large_cached_bytes, cache[0].size);
        memmove(&cache[0], &cache[1], (cache_n - 1) * sizeof cache[0]);
        cache_n--;
    }
    pthread_mutex_unlock(&large_lock);
    for (unsigned i = 0; i < nevict; i++) hak_os_unmap((void *)evict[i].base, evict[i].size);
    if (base) hak_os_unmap((void *)base, size);
    HAK_GSTAT_ADD(large_syscalls, nevict + (base != 0));
    return 1;
}

size_t hak_huge_usable(const void *p) {
    pthread_mutex_lock(&large_lock);
    large_ent_t *e = tab_find((uintptr_t)p);
    size_t n = e ? e->base + e->map_size - e->ptr : 0;
    pthread_mutex_unlock(&large_lock);
    return n;
}

/* realloc of a huge block.  Stays a mapping above HAK_SMALL_MAX and is
 * resized with mremap (in place or moved by the kernel, never copied by us).
 * *handled = 0 if p is not a large block. */
void *hak_huge_realloc(void *p, size_t size, int *handled) {
    uintptr_t ptr = (uintptr_t)p;
    pthread_mutex_lock(&large_lock);
    large_ent_t *e = tab_find(ptr);
    if (!e) {
        pthread_mutex_unlock(&large_lock);
        *handled = 0;
        return NULL;
    }
    *handled = 1;
    size_t usable = e->base + e->map_size - ptr;
    if (size > HAK_SMALL_MAX && size <= PTRDIFF_MAX - (size_t)(8u << 20) && ptr == e->base) {
        size_t need = large_round(size);
        if (need <= e->map_size && need > e->map_size / 2) {   /* fits, not much smaller */
            pthread_mutex_unlock(&large_lock);
            return p;
        }
        void *np = mremap((void *)e->base, e->map_size, need, MREMAP_MAYMOVE);
        HAK_GSTAT_ADD(large_syscalls, 1);
        if (np != MAP_FAILED) {
            HAK_GSTAT_ADD(large_live_bytes, need);
            HAK_GSTAT_SUB(large_live_bytes, e->map_size);
            live_bytes += need - e->map_size;
            tab_remove(e);
            int bad = tab_insert((uintptr_t)np, (uintptr_t)np, need);
            pthread_mutex_unlock(&large_lock);
            if (bad) hak_fatal("large block table: out of memory during realloc");
            return np;
        }
    } else if (size <= usable && size > usable / 2 && size > HAK_SMALL_MAX) {
        pthread_mutex_unlock(&large_lock);
        return p;
    }
    pthread_mutex_unlock(&large_lock);
    /* Copy: to a small block, or an aligned block that mremap cannot keep. */
    void *np = hak_malloc(size);
    if (!np) return NULL;
    memcpy(np, p, size < usable ? size : usable);
    hak_free(p);
    return np;
}

/* malloc_trim: unmap every cached mapping; returns the bytes. */
size_t hak_huge_trim(void) {
    cached_map_t local[CACHE_SLOTS];
    pthread_mutex_lock(&large_lock);
    unsigned n = cache_n;
    memcpy(local, cache, n * sizeof cache[0]);
    cache_n = 0;
    HAK_GSTAT_SUB(large_cached_bytes, cache_bytes);
    size_t bytes = cache_bytes;
    cache_bytes = 0;
    pthread_mutex_unlock(&large_lock);
    for (unsigned i = 0; i < n; i++) hak_os_unmap((void *)local[i].base, local[i].size);
    HAK_GSTAT_ADD(large_syscalls, n);
    return bytes;
}

void hak_huge_fork_prepare(void) { pthread_mutex_lock(&large_lock); }
void hak_huge_fork_parent(void) { pthread_mutex_unlock(&large_lock); }
void hak_huge_fork_child(void) { pthread_mutex_unlock(&large_lock); }
