/* Backend: SuperSlabs, the registry that says which 2 MiB regions are ours,
 * the shared pool of empty SuperSlabs, and the arena for heap structs. */
#include <string.h>

#include <sys/mman.h>

#include "hakmem_internal.h"

/* One byte per 2 MiB of the 47-bit address space: 64 MiB of zero pages in
 * .bss, of which only the pages covering our SuperSlabs are ever written. */
uint8_t hak_registry[HAK_REGISTRY_SIZE];

pthread_mutex_t hak_pool_lock = PTHREAD_MUTEX_INITIALIZER;
hak_global_stats_t hak_gstats;

/* Shared pool: empty SuperSlabs, most recently released first (hot).  The
 * pool keeps at most HAKMEM_POOL_RETAIN; the rest go back to the OS. */
static hak_superslab_t *pool_head;
static unsigned pool_count;

int ss_tier_is_hot(const hak_superslab_t *ss) { return ss->tier == HAK_TIER_HOT; }

static hak_superslab_t *superslab_map(void) {
    void *mem = hak_os_map_aligned(HAK_SS_SIZE, HAK_SS_SIZE);
    if (!mem) return NULL;
    uintptr_t ri = (uintptr_t)mem >> HAK_SS_SHIFT;
    if (ri >= HAK_REGISTRY_SIZE) {          /* outside what the registry covers */
        hak_os_unmap(mem, HAK_SS_SIZE);
        return NULL;
    }
    hak_superslab_t *ss = mem;
    /* Hardened: the header slot's last page is a guard page, between the
     * slab descriptors and slab 1 (and the SuperSlab mapped below). */
    _Static_assert(sizeof(hak_superslab_t) <= HAK_SLAB_SIZE - 4096, "header below the guard page");
    if (HAKMEM_HARDENED && hak_opt.guard_pages)
        mprotect((char *)mem + HAK_SLAB_SIZE - 4096, 4096, PROT_NONE);   /* if it fails: no guard */
    ss->magic = HAK_SS_MAGIC;
    ss->free_mask = ~(uint32_t)1;           /* slot 0 is the header */
    for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++) ss->slabs[i].index = (uint16_t)i;
    __atomic_store_n(&hak_registry[ri], HAK_REG_SS, __ATOMIC_RELEASE);
    HAK_GSTAT_ADD(ss_mapped, 1);
    HAK_GSTAT_ADD(ss_map_calls, 1);
    return ss;
}

static void superslab_unmap(hak_superslab_t *ss) {
    uintptr_t ri = (uintptr_t)ss >> HAK_SS_SHIFT;
    __atomic_store_n(&hak_registry[ri], 0, __ATOMIC_RELEASE);
    hak_os_unmap(ss, HAK_SS_SIZE);
    HAK_GSTAT_SUB(ss_mapped, 1);
    HAK_GSTAT_ADD(ss_unmap_calls, 1);
}

/* shared_pool_acquire: up to `max` empty SuperSlabs under one lock; new ones
 * are mapped when the pool runs dry.  Returns how many were stored. */
unsigned shared_pool_acquire(hak_superslab_t **out, unsigned max) {
    unsigned n = 0;
    pthread_mutex_lock(&hak_pool_lock);
    while (n < max && pool_head) {
        hak_superslab_t *ss = pool_head;
        pool_head = ss->next;
        pool_count--;
        HAK_GSTAT_SUB(ss_in_pool, 1);
        out[n++] = ss;
    }
    pthread_mutex_unlock(&hak_pool_lock);
    /* Map outside the lock; one fresh SuperSlab is enough to go on with. */
    if (n == 0) {
        hak_superslab_t *ss = superslab_map();
        if (ss) out[n++] = ss;
    }
    for (unsigned i = 0; i < n; i++) {
        out[i]->next = out[i]->prev = NULL;
        out[i]->tier = HAK_TIER_HOT;
    }
    return n;
}

/* Purge the free slots of ss that are still resident (dirty_mask), a run of
 * adjacent slots per call, and mark it cold.  Returns the bytes purged. */
size_t superslab_purge(hak_superslab_t *ss) {
    size_t purged = 0;
    uint32_t m = ss->dirty_mask;
    while (m) {
        unsigned lo = (unsigned)__builtin_ctz(m), hi = lo;
        while (hi + 1 < HAK_SLABS_PER_SS && (m & (1u << (hi + 1)))) hi++;
        size_t len = (size_t)(hi - lo + 1) << HAK_SLAB_SHIFT;
        hak_os_purge((char *)ss + ((uintptr_t)lo << HAK_SLAB_SHIFT), len);
        m &= ~(uint32_t)(((uint64_t)2 << hi) - (1u << lo));
        purged += len;
    }
    ss->dirty_mask = 0;
    ss->tier = HAK_TIER_COLD;
    return purged;
}

/* An empty SuperSlab enters the pool purged (its slabs, not the header), so
 * the pool holds address space, not memory; the heap that gave it up keeps
 * its own warm reserve unpurged.  A slot is reserved under the lock before
 * purging, so a SuperSlab about to be unmapped is never purged first. */
void shared_pool_release(hak_superslab_t *ss) {
    ss->heap = NULL;
    ss->in_warm = 0;
    pthread_mutex_lock(&hak_pool_lock);
    int keep = pool_count < (unsigned long)hak_opt.pool_retain;
    if (keep) pool_count++;
    pthread_mutex_unlock(&hak_pool_lock);
    if (!keep) {
        ss->dirty_mask = 0;
        superslab_unmap(ss);
        return;
    }
    superslab_purge(ss);
    pthread_mutex_lock(&hak_pool_lock);
    ss->next = pool_head;
    pool_head = ss;
    HAK_GSTAT_ADD(ss_in_pool, 1);
    pthread_mutex_unlock(&hak_pool_lock);
}

/* malloc_trim: unmap every SuperSlab the pool holds; returns the bytes. */
size_t shared_pool_trim(void) {
    pthread_mutex_lock(&hak_pool_lock);
    hak_superslab_t *list = pool_head;
    pool_head = NULL;
    unsigned taken = 0;                  /* not pool_count: a release may be */
    for (hak_superslab_t *ss = list; ss; ss = ss->next) taken++;   /* in flight */
    pool_count -= taken;
    HAK_GSTAT_SUB(ss_in_pool, taken);
    pthread_mutex_unlock(&hak_pool_lock);
    size_t n = 0;
    while (list) {
        hak_superslab_t *next = list->next;
        superslab_unmap(list);
        n += HAK_SS_SIZE;
        list = next;
    }
    return n;
}

/* Metadata arena for heap structs: bump allocation of whole pages in 64 KiB
 * chunks, never freed (heaps are recycled, not released).  Every heap starts
 * a page, so that a heap whose thread touches only its first page has no
 * other page resident (hak_heap_t).  Caller holds hak_pool_lock. */
void *hak_meta_alloc(size_t size) {
    static uintptr_t cur, end;
    size = (size + 4095) & ~(size_t)4095;
    if (cur + size > end) {
        size_t chunk = size > 65536 ? size : 65536;
        void *m = hak_os_map(chunk);
        if (!m) return NULL;
        cur = (uintptr_t)m;
        end = cur + chunk;
    }
    void *p = (void *)cur;
    cur += size;
    return p;
}
