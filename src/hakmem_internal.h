/* hakmem internal types and inline helpers.
 *
 * Objects, from the top down:
 *
 *   heap (hak_heap_t)      one per thread, reached through one initial-exec
 *                          TLS pointer (hak_tl_heap).  Holds the front cache
 *                          ("unified cache": one LIFO bin per size class, of
 *                          blocks this thread freed, whoever allocated them),
 *                          the partial-slab list per class, the warm pool of
 *                          SuperSlabs with free slab slots, and the queue of
 *                          its slabs that other threads sent blocks back to.
 *   SuperSlab              a 2 MiB region aligned to 2 MiB.  Its first 64 KiB
 *   (hak_superslab_t)      hold the header and the 31 slab descriptors; the
 *                          other 31 x 64 KiB are slabs.  A SuperSlab belongs
 *                          to one heap while it has slabs in use.
 *   slab (hak_slab_t)      blocks of one size class, owned by one heap: one
 *                          64 KiB slot, or for the hardened flavor's classes
 *                          above 8 KiB a span of up to 8 contiguous slots
 *                          holding at least 8 blocks (2 of 256 KiB).  Its
 *                          descriptor lives in the SuperSlab header, at the
 *                          span's first slot, and is found from a block by
 *                          masking the address; the descriptors of the other
 *                          slots of a span say how far back the first is.
 *   registry               one byte per 2 MiB of address space: is this
 *                          region a SuperSlab of ours?  O(1), no hashing.
 *   shared pool            global list of empty SuperSlabs, under one lock.
 *   large blocks           > HAK_SMALL_MAX (32 KiB; hardened 256 KiB) up to hak_run_max() (32 MiB):
 *                          runs of pages in 256 MiB regions (pagerun.c); above
 *                          that, mappings of their own (huge.c).
 *
 * Memory layout of a SuperSlab:
 *
 *   +0       hak_superslab_t header, slab descriptors [0..31] (0 unused)
 *   +64K     slab 1 blocks
 *   ...
 *   +31*64K  slab 31 blocks            (2 MiB total, 2 MiB aligned)
 *
 * A free block holds two words: its free-list link, encoded (safe-linking,
 * hak_link_set/get below), and its free key (hak_free_key ^ block address).  malloc clears the key word; free finds the
 * key in place only if the block is already free, which is how double frees
 * are caught in O(1).  Every block is at least 16 bytes and 16-byte aligned.
 */
#ifndef HAKMEM_INTERNAL_H
#define HAKMEM_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <time.h>

#include "hakmem_build_flags.h"

#define HAK_LIKELY(x)   __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_INLINE      static inline __attribute__((always_inline))
#define HAK_NOINLINE    __attribute__((noinline))
#define HAK_COLD        __attribute__((noinline, cold))
#define HAK_EXPORT      __attribute__((visibility("default")))

/* HAK_RACY_LOAD(x): a read of a word that another thread may be writing
 * (with relaxed atomic stores), where the old and the new value give the
 * same answer: the caller says why.  Under ThreadSanitizer it is the relaxed
 * atomic load it stands for, so TSan checks everything around it; other
 * builds read plainly, because gcc folds a plain load into a compare and not
 * an atomic one (one instruction more on free's hit path), and an aligned
 * load of 32 or 64 bits is single-copy atomic on x86-64 and aarch64. */
#if defined(__SANITIZE_THREAD__)
#define HAK_RACY_LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#else
#define HAK_RACY_LOAD(x) (x)
#endif

/* ------------------------------------------------------------------ limits */
#define HAK_SS_SHIFT        21                      /* SuperSlab: 2 MiB */
#define HAK_SS_SIZE         ((uintptr_t)1 << HAK_SS_SHIFT)
#define HAK_SLAB_SHIFT      16                      /* slab: 64 KiB */
#define HAK_SLAB_SIZE       ((uintptr_t)1 << HAK_SLAB_SHIFT)
#define HAK_SLABS_PER_SS    32                      /* slot 0 holds the header */
#if defined(__aarch64__)
#define HAK_ADDR_BITS       48                      /* aarch64 user space */
#else
#define HAK_ADDR_BITS       47                      /* x86-64 user space */
#endif
#define HAK_REGISTRY_SIZE   ((size_t)1 << (HAK_ADDR_BITS - HAK_SS_SHIFT))

#define HAK_TINY_MAX        1024                    /* the report's tiny tier */
#define HAK_TINY_CLASSES    20
/* The largest slab class (the mid tier's top).  Above 32 KiB a block is a
 * page run: runs are shared by all threads and cut to the page, where a
 * slab class per heap kept up to 8 blocks' span resident per class and
 * thread (bench_mstress: 3x tcmalloc's peak RSS, 0.44x its speed).  The
 * hardened flavor keeps slab classes up to 256 KiB: its large blocks carry
 * a fence page each, its mid blocks a header and canary in a slab. */
#if HAKMEM_HARDENED
#define HAK_SMALL_MAX       262144
#define HAK_NUM_CLASSES     56
#define HAK_SPAN_MAX_SLOTS  8       /* a slab spans up to 8 slots (2 blocks of 256 KiB) */
#else
#define HAK_SMALL_MAX       32768
#define HAK_NUM_CLASSES     44
#define HAK_SPAN_MAX_SLOTS  1       /* a slab is one slot (2 blocks of 32 KiB) */
#endif
#define HAK_MIN_ALIGN       16
#define HAK_RUN_CACHE_MAX_PAGES 16  /* a heap keeps freed page runs of up to 64 KiB */
#define HAK_RUN_CACHE_PAGES 128     /* and 512 KiB of them at most */

#define HAK_FRONT_BUDGET    131072  /* bytes a bin may hold before it flushes */
#define HAK_FRONT_CAP_MAX   128
#define HAK_FRONT_CAP_MIN   2
#define HAK_FRONT_CAP_GROWN 2048    /* a bin that keeps overflowing may grow to */
#define HAK_FRONT_GROW_BUDGET (3u << 20) /* bytes all bins of a heap may grow by: a
                                     * burst of 400 blocks of each of 16, 64, 256,
                                     * 1024 and 4096 bytes (bench_simple n400) needs
                                     * 2.4 MiB; at 2 MiB its 4096-byte bin refilled
                                     * every 13 mallocs */
#define WARM_POOL_PREFILL_BUDGET 2  /* SuperSlabs taken per shared-pool visit */
#define HAK_CARVE_BYTES     4096    /* fresh blocks cut per refill (at least 8) */
#define HAK_IDLE_SLABS      16      /* a bin with no refill while its heap started */
#define HAK_IDLE_BIN_BYTES  (256u << 10) /* this many slabs, holding this many bytes,
                                     * gives them back (bins_release_idle) */
#define HAK_POOL_RETAIN_MAX 4       /* default of HAKMEM_POOL_RETAIN */
#define HAK_ORPHAN_DEBT_MAX (4u << 20) /* then a thread trims exited threads' heaps */
#define HAK_ORPHAN_RETAIN_HEAPS 4   /* exited threads' heaps keep this many heaps'
                                     * HAKMEM_PURGE_RETAIN_MIB resident in all */

#define HAK_SS_MAGIC        0x48414b4d53534c42ull   /* "HAKMSSLB" */
#define HAK_REG_SS          1
#define HAK_REG_RUN         2                       /* a page-run region (pagerun.c) */
#define HAK_ARENAS          8                       /* page-run arenas, each with a lock */

/* ------------------------------------------------------------------- types */
struct hak_heap;

typedef struct hak_slab {
    /* Line 0: read by the free gate; written only when the slab changes
     * state or is carved (by its owner). */
    struct hak_heap *owner;        /* NULL while the slab slot is free */
    uint64_t div_magic;            /* floor(2^64 / bsize) + 1: see hak_slab_is_block */
    uint64_t carved_lim;           /* (carved / bsize) * (bsize * div_magic mod 2^64):
                                    * the free gate's bound, see hak_slab_is_block;
                                    * read by any thread's free gate while the
                                    * owner carves: relaxed atomics */
    uint32_t carved;               /* offsets below this were handed out */
    uint32_t bsize;
    uint8_t  cls;
    uint8_t  in_partial;
    uint16_t index;                /* slot in its SuperSlab */
    uint16_t bin_off;              /* cls * sizeof(hak_bin_t): the free gate's bin */
    uint32_t cap_end;              /* (span bytes / bsize) * bsize */
    /* owner-only state */
    void    *free;                 /* local free list */
    uint32_t nfree;
    uint32_t used;                 /* blocks out of the slab (users + bins) */
    /* Line 1: written by other threads. */
    _Alignas(64) _Atomic uintptr_t xthread_free;  /* remote frees | QUEUED */
    struct hak_slab *next_remote;                 /* heap's remote queue */
    /* Read by slow paths only. */
    struct hak_slab *next, *prev;  /* heap's partial list of this class (owner only) */
    uint8_t  span_slots;           /* slots this slab covers (first slot) */
    uint8_t  span_back;            /* other slots of a span: distance to the first */
    uint8_t  resident;             /* its pages were resident when it was started */
} hak_slab_t;

#define HAK_XTHREAD_QUEUED ((uintptr_t)1)

typedef struct hak_superslab {
    uint64_t magic;
    struct hak_heap *heap;         /* owning heap; NULL in the shared pool */
    uint32_t free_mask;            /* bit i: slab slot i is free */
    uint32_t nused;                /* slabs in use */
    uint32_t tier;                 /* HAK_TIER_HOT / HAK_TIER_COLD */
    uint32_t in_warm;
    uint32_t dirty_mask;           /* bit i: free slot i still has resident pages */
    struct hak_superslab *next, *prev;  /* heap's warm/full list, or pool */
    _Alignas(64) hak_slab_t slabs[HAK_SLABS_PER_SS];
} hak_superslab_t;

enum { HAK_TIER_HOT = 0, HAK_TIER_COLD = 1 };

/* Front-cache bin: a LIFO of free blocks of one class.  It holds
 * cap - room blocks; free flushes half of them when room reaches 0. */
typedef struct hak_bin {
    void    *head;
    uint32_t room;
    uint32_t cap;
} hak_bin_t;

/* Per-class counters, merged over all heaps when read (stats.c).  The
 * slow-path ones are always counted (they cost nothing on the hit paths);
 * allocs/frees and page-fault telemetry only with HAKMEM_DEBUG_COUNTERS.
 * A heap keeps refills and remote_frees in its first page (hak_heap_t) and
 * the rest here. */
typedef struct hak_class_stats {
    uint64_t allocs, frees;           /* HAKMEM_DEBUG_COUNTERS only */
    uint64_t refills, flushes;        /* bin ran dry / overflowed */
    uint64_t warm_hits, warm_misses;  /* refill served by a partial slab / needed a new slab */
    uint64_t prefills;                /* SuperSlabs taken from the shared pool */
    uint64_t remote_frees;            /* blocks this thread's bins sent back to other heaps' slabs */
    uint64_t page_first_touch;        /* debug: pages first touched by carving */
    uint64_t xfer_puts, xfer_takes;   /* batches given to / taken from the transfer cache */
} hak_class_stats_t;

typedef struct hak_heap_class_stats {
    uint64_t allocs, frees, flushes, warm_hits, warm_misses, prefills, page_first_touch;
    uint64_t xfer_puts, xfer_takes;
} hak_heap_class_stats_t;

/* Counters are written only by their heap's thread and read by any: relaxed
 * atomic stores, which compile to a plain add on x86-64. */
#define HAK_STAT_ADD(field, n) \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)

/* Hardened flavor (harden.c): freed blocks wait here, zeroed, before they go
 * back to the core; a write into one is found when it leaves.  A ring of
 * block starts, oldest at `head`, bounded in count and bytes. */
#define HAK_QUARANTINE_SLOTS 256
typedef struct hak_quarantine {
    uint32_t head, count;
    size_t bytes;
    uintptr_t ring[HAK_QUARANTINE_SLOTS];
    uint8_t cls1[HAK_QUARANTINE_SLOTS];          /* its class + 1; 0: a large block */
} hak_quarantine_t;

/* A heap is page-aligned (heap_new), and what a short-lived thread's heap
 * reads and writes is in its first page: the bins, the size table, the
 * refill and remote-free counters and the lists' heads.  The rest (partial
 * slabs, bin growth, the run cache's lists, the other counters) is touched
 * only by a thread that took slabs or page runs of its own: 2000 threads
 * that each allocate a few blocks and wait wrote two pages of heap each
 * when the counters were at its end (bench_threads). */
typedef struct hak_heap {
    hak_bin_t bins[HAK_NUM_CLASSES];            /* the hot part */
    uint16_t bin_off[HAK_TINY_MAX + 1];         /* size -> its bin's offset in bins:
                                                 * a copy of hak_tiny_bin_off, read by
                                                 * malloc's hit path at an offset from
                                                 * the heap it holds anyway (no load of
                                                 * the table's address) */
    uint32_t front_fill[HAK_NUM_CLASSES];        /* hak_ticks() (low bits) at the last refill */
    uint64_t refills[HAK_NUM_CLASSES];           /* bin ran dry (sizes the next refill) */
    uint64_t remote_frees[HAK_NUM_CLASSES];      /* blocks its bins sent back to other heaps' slabs */
    hak_superslab_t *warm;                       /* SuperSlabs with free slots */
    hak_superslab_t *full;                       /* SuperSlabs without */
    uint32_t nwarm_empty;                        /* warm SuperSlabs with no slab in use */
    uint32_t front_denied;                       /* growths refused since the last reset */
    size_t dirty_bytes;                          /* free slabs not yet purged */
    size_t orphan_debt;                          /* bytes sent back to exited threads' heaps */
    size_t orphan_kept;                          /* exited: its share of the orphan budget */
    size_t front_grown;                          /* bytes the bins' caps grew by */
    uint32_t run_cache_pages;                    /* pages the run cache's lists hold */
    uint32_t run_cache_count;                    /* blocks the lists hold */
    uint64_t run_cache_hits;                     /* blocks served from them */
    uint32_t large_arena;                        /* its page-run arena: index + 1 */
    uint32_t active;                             /* a live thread uses it */
    uint32_t is_starter;                         /* one of the starters (refill.c) */
    struct hak_heap *next_all;                   /* every heap, for diagnostics */
    struct hak_heap *next_orphan;                /* heaps of exited threads */
    _Alignas(64) _Atomic(hak_slab_t *) remote_slabs;  /* slabs with remote frees */
    uint32_t slow_lock;                          /* its slabs' state: hak_heap_lock */
    uint32_t slow_tick;                          /* hak_ticks() >> 20 at its thread's last lock */
    /* Past the first page: threads with slabs or page runs of their own. */
    _Alignas(64) hak_slab_t *partial[HAK_NUM_CLASSES];  /* slabs with room */
    uint32_t front_mark[HAK_NUM_CLASSES];        /* refills (low bits) at the last overflow */
    uint8_t  front_streak[HAK_NUM_CLASSES];      /* overflows since the last refill */
    uint8_t  xfer_hint[HAK_NUM_CLASSES];         /* its last flush held other heaps' blocks */
    uint32_t slab_starts;                        /* slabs started on a warm miss */
    uint32_t idle_scan;                          /* slab_starts at the last look for idle bins */
    uint32_t refill_starts[HAK_NUM_CLASSES];     /* slab_starts at the class's last refill */
    uint8_t  thread_refills[HAK_NUM_CLASSES];    /* refills since its thread took it (to 255) */
    /* Freed page runs of up to HAK_RUN_CACHE_MAX_PAGES pages (pagerun.c),
     * one list per page count, kept for this heap's next block of that
     * size; live for their arena. */
    void    *run_cache[HAK_RUN_CACHE_MAX_PAGES + 1];
    hak_heap_class_stats_t stats[HAK_NUM_CLASSES];
#if HAKMEM_HARDENED
    uint64_t rng;                                /* random carving order */
    hak_quarantine_t quarantine;
#endif
} hak_heap_t;
#if !HAKMEM_HARDENED
_Static_assert(offsetof(hak_heap_t, partial) <= 4096, "a young heap's fields fit in one page");
#endif

/* Runtime options (options.c), read once by hak_init. */
typedef struct hak_options {
    long stats, verbose, front_budget_kib, pool_retain, large_cache_mib;
    long purge_retain_mib, purge_mode;
    long large_decay_ms, large_run_max_mib, background_purge;
    /* hardened flavor only */
    long canary, quarantine_kib, zero_on_free_kib, guard_pages, random_carve;
} hak_options_t;
extern hak_options_t hak_opt;

/* Global counters (superslab.c, large.c), updated with relaxed atomics on
 * the rare paths that map and unmap memory. */
typedef struct hak_global_stats {
    uint64_t ss_mapped;               /* SuperSlabs mapped now */
    uint64_t ss_map_calls, ss_unmap_calls;
    uint64_t ss_in_pool;              /* empty SuperSlabs kept by the shared pool */
    uint64_t large_live, large_live_bytes;
    uint64_t large_cached_bytes;
    uint64_t large_map_calls;                       /* regions and huge mappings */
    uint64_t large_cache_hits;                      /* served with resident pages: runs + huge cache */
    uint64_t purged_bytes;
    uint64_t large_regions;                         /* page-run regions mapped now */
    uint64_t large_runs_split, large_runs_coalesced;
    uint64_t large_runs_reused;                     /* served with resident (dirty) pages */
    uint64_t large_purged_decay_bytes, large_purged_bound_bytes;
    uint64_t large_syscalls;                        /* mmap/munmap/mremap/madvise of the large tier */
    uint64_t large_fences;                          /* hardened: guard pages between runs now */
    uint64_t large_fence_calls;                     /* hardened: mprotect calls setting up or removing them */
    uint64_t large_run_cached;                      /* freed runs in heaps' run caches now */
    uint64_t large_run_cache_hits;                  /* blocks served from a run cache */
    uint64_t xfer_blocks;                           /* blocks in the transfer cache now */
} hak_global_stats_t;
extern hak_global_stats_t hak_gstats;
#define HAK_GSTAT_ADD(field, n) __atomic_fetch_add(&hak_gstats.field, (n), __ATOMIC_RELAXED)
#define HAK_GSTAT_SUB(field, n) __atomic_fetch_sub(&hak_gstats.field, (n), __ATOMIC_RELAXED)

/* ----------------------------------------------------------------- globals */
extern __thread hak_heap_t *hak_tl_heap __attribute__((tls_model("initial-exec")));
extern hak_heap_t hak_heap_empty;
extern uintptr_t hak_free_key;
extern uint8_t hak_registry[HAK_REGISTRY_SIZE];
extern const uint8_t hak_tiny_class_tbl[HAK_TINY_MAX / 16 + 1];
extern const uint8_t hak_mid_class_tbl[HAK_SMALL_MAX >> 7];   /* (n - 1) >> 7 -> class, n > 1024 */
extern const uint32_t hak_class_size[HAK_NUM_CLASSES];
extern pthread_mutex_t hak_pool_lock;

/* ------------------------------------------------------- inline primitives */

/* tiny_alloc_gate: size (<= HAK_TINY_MAX) -> class, one table load. */
/* A cheap clock for rates on slow paths, and its ticks in about 400 ns:
 * the time-stamp counter on x86-64 (1-4 GHz: 1024 ticks are 250-1000 ns;
 * the rates it tells apart differ by far more), the virtual counter on
 * aarch64 (its frequency is in a register), else CLOCK_MONOTONIC's ns. */
HAK_INLINE uint64_t hak_ticks(void) {
#if defined(__x86_64__)
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
#elif defined(__aarch64__)
    uint64_t v;
    __asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(v));
    return v;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

HAK_INLINE uint32_t hak_ticks_400ns(void) {
#if defined(__x86_64__)
    return 1024;
#elif defined(__aarch64__)
    uint64_t f;
    __asm__ ("mrs %0, cntfrq_el0" : "=r"(f));
    return (uint32_t)(f / 2500000u) + 1;
#else
    return 400;
#endif
}

HAK_INLINE unsigned tiny_alloc_gate(size_t n) {
    return hak_tiny_class_tbl[(n + 15) >> 4];
}

/* The same, as the byte offset of the class's bin in hak_heap_t.bins (class
 * * sizeof(hak_bin_t)): malloc's hit path adds it to the heap pointer, with
 * no scaling of its own. */
extern const uint16_t hak_tiny_bin_off[HAK_TINY_MAX + 1];
HAK_INLINE size_t tiny_bin_off(size_t n) {
    return hak_tiny_bin_off[n];
}
HAK_INLINE size_t heap_bin_off(const hak_heap_t *h, size_t n) {
    return h->bin_off[n];
}

/* Any size in 1..HAK_SMALL_MAX -> class (the mid tier's classes: hak_mid_class_tbl). */
HAK_INLINE unsigned hak_size_class(size_t n) {
    if (n <= HAK_TINY_MAX) return tiny_alloc_gate(n);
    return hak_mid_class_tbl[(n - 1) >> 7];
}

/* hak_super_lookup: the SuperSlab holding p, or NULL if p is not in one. */
HAK_INLINE hak_superslab_t *hak_super_lookup(const void *p) {
    uintptr_t a = (uintptr_t)p;
    size_t ri = a >> HAK_SS_SHIFT;
    if (ri >= HAK_REGISTRY_SIZE || hak_registry[ri] != HAK_REG_SS) return NULL;
    return (hak_superslab_t *)(a & ~(HAK_SS_SIZE - 1));
}

HAK_INLINE hak_slab_t *hak_slab_of(uintptr_t a) {
    /* == &ss->slabs[(a >> HAK_SLAB_SHIFT) % HAK_SLABS_PER_SS], written so
     * that the slot index is scaled by the descriptor size in one mask. */
    _Static_assert(sizeof(hak_slab_t) == 128, "slab descriptor is 128 bytes");
    uintptr_t ss = a & ~(HAK_SS_SIZE - 1);
    uintptr_t scaled = (a >> (HAK_SLAB_SHIFT - 7)) & ((uintptr_t)(HAK_SLABS_PER_SS - 1) << 7);
    return (hak_slab_t *)(ss + offsetof(hak_superslab_t, slabs) + scaled);
}

HAK_INLINE uintptr_t hak_slab_base(const hak_slab_t *s) {
    return ((uintptr_t)s & ~(HAK_SS_SIZE - 1)) + ((uintptr_t)s->index << HAK_SLAB_SHIFT);
}

/* The slab holding address a (in a SuperSlab), following a span back to its
 * first slot.  The free gate's fast test uses hak_slab_of directly: a block
 * in the first slot is found there, the others fall to the slow path. */
HAK_INLINE hak_slab_t *hak_block_slab(uintptr_t a) {
    hak_slab_t *s = hak_slab_of(a);
    return s - s->span_back;
}


/* Is offset `off` (in the slab) the start of a block that was handed out?
 * One multiply and one compare answer both halves of the question.  With
 * d = bsize, M = div_magic = floor(2^64/d) + 1 and e = d*M - 2^64 (1 <= e <= d),
 * the product off*M mod 2^64 is k*e for a block start off = k*d, which grows
 * with k, and at least M (far above any bound here) for any other offset.  So
 * off is a carved block start iff off*M < carved_lim = (carved/d)*e.
 * The owner may be carving s meanwhile (free gates of other threads run
 * here): carved_lim only grows while s holds a block, so the old and the new
 * value give the same answer for any block that was handed out. */
HAK_INLINE int hak_slab_is_block(const hak_slab_t *s, uint32_t off) {
    return (uint64_t)off * s->div_magic < HAK_RACY_LOAD(s->carved_lim);
}

/* Set the carve frontier (and the free gate's bound with it). */
HAK_INLINE void hak_slab_set_carved(hak_slab_t *s, uint32_t carved) {
    uint64_t e = (uint64_t)s->bsize * s->div_magic;          /* mod 2^64 */
    __atomic_store_n(&s->carved, carved, __ATOMIC_RELAXED);
    __atomic_store_n(&s->carved_lim, carved ? (uint64_t)(carved / s->bsize) * e : 0, __ATOMIC_RELAXED);
}

/* Is a the start of a block of s that was handed out? */
HAK_INLINE int hak_slab_holds(const hak_slab_t *s, uintptr_t a) {
    uintptr_t off = a - hak_slab_base(s);
    return off < ((uintptr_t)HAK_SPAN_MAX_SLOTS << HAK_SLAB_SHIFT) && hak_slab_is_block(s, (uint32_t)off);
}

HAK_INLINE uint32_t bin_count(const hak_bin_t *b) { return b->cap - b->room; }

HAK_INLINE uintptr_t hak_block_key(uintptr_t a) { return hak_free_key ^ a; }

/* Safe-linking.  The link word of a free block b (word 0, in every list: bins,
 * slab free lists, remote chains) holds  next ^ hak_free_key ^ b,  never the
 * bare pointer.  Decoding gives back a 16-aligned user-space address (or
 * NULL) only if the word is intact: the free key's low nibble (0xA) and its
 * bits above HAK_ADDR_BITS (at least bit 63 is set) must come out as zero.
 * A write after free over the link (zeros, a pointer, text, a small integer)
 * fails that test and stops the process with the block's address, before
 * the bad pointer is followed; a random word passes with odds 2^-21, and a
 * forged one needs the per-process key. */
#define HAK_LINK_BAD_BITS (~(((uintptr_t)1 << HAK_ADDR_BITS) - 1) | (uintptr_t)(HAK_MIN_ALIGN - 1))

/* diag.c: stop with a message naming the block, its class and the word */
__attribute__((noreturn)) void hak_link_corrupt(const void *b, const char *fn);

/* The end of every bin's list (not NULL): a read-only pair of words whose
 * link word fails the safe-linking check with any key (api.c), so malloc's
 * hit path needs no test for an empty bin: the link check it makes anyway
 * sends an empty bin to the slow path, which refills.
 * Slab free lists and remote chains still end with NULL. */
extern const uintptr_t hak_bin_end_blk[2];
#define HAK_BIN_END ((void *)hak_bin_end_blk)

HAK_INLINE void hak_link_set(void *b, const void *next) {
    *(uintptr_t *)b = (uintptr_t)next ^ hak_block_key((uintptr_t)b);
}

HAK_INLINE void *hak_link_get(const void *b, const char *fn) {
    uintptr_t n = *(const uintptr_t *)b ^ hak_block_key((uintptr_t)b);
    if (HAK_UNLIKELY(n & HAK_LINK_BAD_BITS)) hak_link_corrupt(b, fn);
    return (void *)n;
}

/* debug.c: diagnostics of the debug flavor.  In release they are empty
 * inline functions, so the calls still type-check and no diagnostic code or
 * symbol reaches the library (tests/check_release.sh verifies this). */
#if HAKMEM_BUILD_DEBUG
void hak_debug_check_node(const hak_slab_t *slab, unsigned cls, const void *node, const char *where);
void hak_debug_on_alloc(void *p);
void hak_debug_on_free(void *p, const char *fn);
__attribute__((noreturn)) void hak_debug_report_block(const char *fn, const char *what, const void *p);
void pagefault_telemetry_touch(hak_heap_t *h, unsigned cls, uintptr_t start, size_t len);
#else
HAK_INLINE void hak_debug_check_node(const hak_slab_t *slab, unsigned cls, const void *node, const char *where) {
    (void)slab; (void)cls; (void)node; (void)where;
}
HAK_INLINE void hak_debug_on_alloc(void *p) { (void)p; }
HAK_INLINE void hak_debug_on_free(void *p, const char *fn) { (void)p; (void)fn; }
HAK_INLINE void hak_debug_report_block(const char *fn, const char *what, const void *p) {
    (void)fn; (void)what; (void)p;
}
HAK_INLINE void pagefault_telemetry_touch(hak_heap_t *h, unsigned cls, uintptr_t start, size_t len) {
    (void)h; (void)cls; (void)start; (void)len;
}
#endif

/* bin_take: pop the head of a non-empty bin; the block's free key is
 * cleared so that its next free is not taken for a double free. */
HAK_INLINE void *bin_take_from(hak_heap_t *h, hak_bin_t *bin, unsigned cls) {
    (void)h;
    void **b = bin->head;
    void *next = hak_link_get(b, "malloc");
    if (HAKMEM_DEBUG_CHECKS && next != HAK_BIN_END) hak_debug_check_node(NULL, cls, next, "malloc");
    bin->head = next;
    bin->room++;
    b[1] = NULL;
    if (HAKMEM_DEBUG_COUNTERS) HAK_STAT_ADD(h->stats[cls].allocs, 1);
    if (HAKMEM_DEBUG_CHECKS) hak_debug_on_alloc(b);
    return b;
}

HAK_INLINE void *bin_take(hak_heap_t *h, unsigned cls) {
    return bin_take_from(h, &h->bins[cls], cls);
}

/* Put a validated block on the thread's bin; its free key marks it free.
 * The block may belong to a slab of another thread's heap: it stays "out of
 * its slab" while it sits here, and goes back (as a remote free) only when
 * this bin overflows or the thread exits. */
HAK_INLINE void bin_put_keyed(hak_heap_t *h, hak_bin_t *bin, unsigned cls, void *p, uintptr_t key,
                              const char *fn) {
    (void)h; (void)cls;
    if (HAKMEM_DEBUG_CHECKS) hak_debug_on_free(p, fn);
    if (HAKMEM_DEBUG_COUNTERS) HAK_STAT_ADD(h->stats[cls].frees, 1);
    uintptr_t *b = p;
    b[1] = key;                             /* (this order compiles shortest in free) */
    b[0] = (uintptr_t)bin->head ^ key;      /* hak_link_set(b, head): key is hak_block_key(b) */
    bin->head = b;
    bin->room--;
}

HAK_INLINE void bin_put(hak_heap_t *h, unsigned cls, void *p, const char *fn) {
    bin_put_keyed(h, &h->bins[cls], cls, p, hak_block_key((uintptr_t)p), fn);
}

/* The bin's last free slot: the slow path (api.c) flushes half of the bin
 * to the slabs after putting the block, or the thread has no heap yet. */
void hak_bin_push_slow(hak_heap_t *h, unsigned cls, void *p, const char *fn);

HAK_INLINE void bin_push(hak_heap_t *h, unsigned cls, void *p, const char *fn) {
    if (HAK_UNLIKELY(h->bins[cls].room <= 1)) {
        hak_bin_push_slow(h, cls, p, fn);
        return;
    }
    bin_put(h, cls, p, fn);
}

/* ------------------------------------------------------- cross-module API */
/* diag.c */
__attribute__((noreturn)) void hak_fatal_ptr(const char *fn, const char *what, const void *p);
__attribute__((noreturn)) void hak_fatal(const char *msg);
void hak_write_err(const char *s);
void hak_write_fd(int fd, const char *s);

/* os.c: the only code that talks to the kernel about memory.
 *   hak_os_map(size)            fresh zeroed read/write pages, or NULL
 *   hak_os_map_aligned(sz, al)  same, start aligned to al (power of two)
 *   hak_os_unmap(p, size)       give the range back
 *   hak_os_purge(p, size)       keep the range mapped, drop its contents;
 *                               it reads as zero afterwards
 *   hak_os_protect(p, size, n)  n: PROT_NONE (a guard page); 0: read/write */
void *hak_os_map(size_t size);
void *hak_os_map_aligned(size_t size, size_t align);
void  hak_os_unmap(void *p, size_t size);
void  hak_os_purge(void *p, size_t size);      /* per HAKMEM_PURGE_MODE */
int   hak_os_protect(void *p, size_t size, int none);   /* PROT_NONE or read-write */

/* superslab.c: SuperSlabs, registry, shared pool */
unsigned shared_pool_acquire(hak_superslab_t **out, unsigned max);
void     shared_pool_release(hak_superslab_t *ss);
size_t   shared_pool_trim(void);
size_t   superslab_purge(hak_superslab_t *ss);
void    *hak_meta_alloc(size_t size);
int      ss_tier_is_hot(const hak_superslab_t *ss);

/* refill.c: slow paths of the front cache */
void *unified_cache_refill(hak_heap_t *h, unsigned cls);
void  unified_cache_flush(hak_heap_t *h, unsigned cls, uint32_t keep);
void  hak_heap_drain_remote(hak_heap_t *h);
void  hak_free_remote(hak_slab_t *s, uintptr_t a);
void  hak_free_remote_chain(hak_slab_t *s, void *first, void *last, int look);
void  hak_heap_lock(hak_heap_t *h);           /* its thread, around what changes its slabs */
void  hak_heap_unlock(hak_heap_t *h);
hak_heap_t *hak_heap_acquire(void);
void  hak_heap_abandon(hak_heap_t *h);
void  hak_heapless_exit(void);
void  hak_heap_fork_child(hak_heap_t *self);
void  hak_starter_lock(void);                  /* fork: taken before hak_pool_lock */
void  hak_starter_unlock(void);
void  hak_xfer_lock(void);                     /* fork: the transfer cache's locks, */
void  hak_xfer_unlock(void);                   /* after the starters' */
size_t hak_heap_trim(hak_heap_t *h);
size_t hak_heap_trim_orphans(void);

/* pagerun.c: every block above HAK_SMALL_MAX (runs, or huge.c beyond
 * hak_run_max()) */
size_t hak_run_max(void);
void  *hak_large_alloc(size_t size, size_t align, int zero);
void   hak_large_free(void *p, const char *fn);  /* aborts if p is not a live block */
void   hak_run_cache_flush(hak_heap_t *h);       /* its cached runs back to their arenas */
size_t hak_large_usable(const void *p);       /* 0 if p is not a live large block */
#if HAKMEM_HARDENED
void  *hak_large_alloc_fenced(size_t size);   /* a run with a guard page (fence) right after it */
int    hak_large_grow_fenced(void *p, size_t size);   /* 1 if grown in place, the fence moved */
#endif
void  *hak_large_realloc(void *p, size_t size, int *handled);
size_t hak_large_trim(void);
unsigned hak_large_check(void);               /* hak_check's walk of the page runs */
unsigned hak_xfer_check(void);                /* and of the transfer cache (refill.c) */
void   hak_large_stats(hak_global_stats_t *g);   /* add the arenas' counters */
void   hak_large_fork_prepare(void);
void   hak_large_fork_parent(void);
void   hak_large_fork_child(void);

/* huge.c: blocks above hak_run_max(), a mapping each */
void  *hak_huge_alloc(size_t size, size_t align, int zero);
int    hak_huge_free(void *p);                /* 1 freed, 0 unknown, -1 already freed */
size_t hak_huge_usable(const void *p);        /* 0 if p is not a huge block */
void  *hak_huge_realloc(void *p, size_t size, int *handled);
size_t hak_huge_trim(void);
void   hak_huge_fork_prepare(void);
void   hak_huge_fork_parent(void);
void   hak_huge_fork_child(void);

/* options.c, stats.c */
void hak_options_init(void);
void hak_options_print(void);
void hak_stats_init(void);
hak_heap_t *hak_heap_list(void);

/* api.c */
void hak_init(void);
void *hak_core_alloc(size_t align, size_t n);   /* hardened flavor: the core's block */
void  hak_core_free(void *b);

/* harden.c: the hardened flavor's start-up and malloc_trim's share (its
 * quarantine); nothing in the other flavors. */
#if HAKMEM_HARDENED
void   hak_harden_init(void);
size_t hak_harden_trim(void);
void   hak_harden_thread_exit(hak_heap_t *h);
unsigned hak_harden_check(void);
#else
HAK_INLINE void hak_harden_init(void) {}
HAK_INLINE size_t hak_harden_trim(void) { return 0; }
HAK_INLINE void hak_harden_thread_exit(hak_heap_t *h) { (void)h; }
HAK_INLINE unsigned hak_harden_check(void) { return 0; }
#endif

/* diag.c: "hakmem: fn(): what <n>-byte block p<tail>", then abort */
__attribute__((noreturn)) void hak_fatal_block(const char *fn, const char *what, const void *p, size_t n,
                                               const char *tail);

#endif /* HAKMEM_INTERNAL_H */
