/* The exported C API, start-up, fork handlers and thread exit.
 *
 * Call tree of the two hot paths:
 *
 *   malloc(n)                       n <= 1024 (tiny tier)
 *     malloc_tiny_fast              the bin from the heap's size table (one
 *                                   load), pop its head: the hit path
 *       -> malloc_bin_end           the head's link did not decode: the bin
 *                                   is empty (HAK_BIN_END), or a corrupted link
 *       -> unified_cache_refill     (refill.c) bin empty, or first use
 *     malloc_slow                   n > 1024: mid classes, then large.c
 *
 *   free(p)
 *     free_tiny_fast                registry says p is in a SuperSlab, its slab
 *                                   (found by masking) says p starts a block
 *                                   that was handed out, its free key is not
 *                                   set: push on this thread's bin, whichever
 *                                   thread's slab the block belongs to
 *       -> bin_push_slow            bin full (then unified_cache_flush sends
 *                                   half back, other heaps' blocks as remote
 *                                   frees), or the thread has no heap yet
 *       -> free_small_slow          later slot of a span, double free, bad
 *                                   pointer inside a SuperSlab
 *       -> free_gate_slow           not in a SuperSlab: NULL, large block,
 *                                   invalid pointer
 *
 * The hit paths take no lock, make no atomic operation and no system call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"
#include "hakmem_internal.h"

/* ----------------------------------------------------------- state */

/* HAK_BIN_END: read-only, so that no write can make it decode as a link.
 * Its link word's low nibble, 1, decodes to 1 ^ 0xA with the free key and to
 * 1 before hak_init has drawn the key (the key is 0 then, and a static
 * binary's libc calls malloc that early): never a 16-aligned link. */
_Alignas(16) const uintptr_t hak_bin_end_blk[2] = {1, 0};

/* A new thread starts on the empty heap (defined below, with the size
 * table): its bins are all empty, so the first malloc misses into the refill
 * path, which gives the thread a real heap.  free never needs a heap: a
 * block whose slab is not ours is a remote free. */
__thread hak_heap_t *hak_tl_heap __attribute__((tls_model("initial-exec"))) = &hak_heap_empty;
uintptr_t hak_free_key;
pthread_key_t hak_thread_key;

const uint8_t hak_tiny_class_tbl[HAK_TINY_MAX / 16 + 1] = {
    0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 11, 11,
    12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15,
    16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17, 17,
    18, 18, 18, 18, 18, 18, 18, 18, 19, 19, 19, 19, 19, 19, 19, 19,
};

/* Size above the tiny tier -> class, indexed by (size - 1) >> 7 (class
 * sizes are multiples of 128 there).  A slab is one 64 KiB slot, so what a
 * block costs is 64 KiB / (blocks per slab): each mid class is the largest
 * multiple of 128 that fits its number of blocks in a slab (5376, not 5120:
 * both hold 12), and a class sits just above 1, 2, 4 and 8 KiB, where
 * buffers with a small header land (sqlite3 asks for 1032, 4104 and 4368
 * bytes: 1152 holds 56 per slab where 1280 held 51, 4352 holds 15 where
 * 4608 held 14).  For any size the slab holds at least as many blocks as
 * with the classes of four per doubling before. */
const uint8_t hak_mid_class_tbl[HAK_SMALL_MAX >> 7] = {
    [8] = 20, [9] = 21, [10 ... 11] = 22, [12 ... 13] = 23, [14 ... 15] = 24,
    [16 ... 17] = 25, [18 ... 19] = 26, [20 ... 23] = 27, [24 ... 27] = 28, [28 ... 31] = 29,
    [32 ... 33] = 30, [34 ... 35] = 31, [36 ... 38] = 32, [39 ... 41] = 33, [42 ... 45] = 34,
    [46 ... 50] = 35, [51 ... 55] = 36, [56 ... 63] = 37, [64 ... 72] = 38, [73 ... 84] = 39,
    [85 ... 101] = 40, [102 ... 127] = 41, [128 ... 169] = 42, [170 ... 255] = 43,
#if HAKMEM_HARDENED
    [256 ... 319] = 44, [320 ... 383] = 45, [384 ... 447] = 46, [448 ... 511] = 47,
    [512 ... 639] = 48, [640 ... 767] = 49, [768 ... 895] = 50, [896 ... 1023] = 51,
    [1024 ... 1279] = 52, [1280 ... 1535] = 53, [1536 ... 1791] = 54, [1792 ... 2047] = 55,
#endif
};

/* Size -> the byte offset of its class's bin, indexed by the request size
 * itself (2 KiB), so that malloc's hit path does not round the size first
 * (2 instructions less than a table per 16 bytes).  Every heap holds a copy
 * (hak_heap_t.bin_off), which the hit path reads next to the heap pointer
 * it has loaded anyway.  GCC's range designators; each range ends at a
 * class size. */
#define BO(c) ((c) * sizeof(hak_bin_t))
#define TINY_BIN_OFF_INIT {                                                                       \
    [0 ... 16] = BO(0), [17 ... 32] = BO(1), [33 ... 48] = BO(2), [49 ... 64] = BO(3),           \
    [65 ... 80] = BO(4), [81 ... 96] = BO(5), [97 ... 112] = BO(6), [113 ... 128] = BO(7),       \
    [129 ... 160] = BO(8), [161 ... 192] = BO(9), [193 ... 224] = BO(10), [225 ... 256] = BO(11), \
    [257 ... 320] = BO(12), [321 ... 384] = BO(13), [385 ... 448] = BO(14), [449 ... 512] = BO(15), \
    [513 ... 640] = BO(16), [641 ... 768] = BO(17), [769 ... 896] = BO(18), [897 ... 1024] = BO(19), \
}
const uint16_t hak_tiny_bin_off[HAK_TINY_MAX + 1] = TINY_BIN_OFF_INIT;
/* The empty heap: every bin empty (cap 0), and the size table. */
hak_heap_t hak_heap_empty = {
    .bins = {[0 ... HAK_NUM_CLASSES - 1] = {.head = HAK_BIN_END}},
    .bin_off = TINY_BIN_OFF_INIT,
};
#undef TINY_BIN_OFF_INIT
#undef BO

const uint32_t hak_class_size[HAK_NUM_CLASSES] = {
    16, 32, 48, 64, 80, 96, 112, 128,               /* tiny: 16-byte steps */
    160, 192, 224, 256, 320, 384, 448, 512,         /* then 4 per doubling */
    640, 768, 896, 1024,
    1152, 1280, 1536, 1792, 2048, 2304, 2560, 3072,  /* above the tiny tier: */
    3584, 4096, 4352, 4608, 4992, 5376, 5888, 6528,  /* hak_mid_class_tbl */
    7168, 8192, 9344, 10880, 13056, 16384, 21760, 32768,
#if HAKMEM_HARDENED
    40960, 49152, 57344, 65536, 81920, 98304, 114688, 131072,
    163840, 196608, 229376, 262144,
#endif
};

/* ----------------------------------------------------------- start-up */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Lock order: the thread's heap (hak_heap_lock), the starters, the transfer
 * cache, hak_pool_lock, the large tier. */
static void fork_prepare(void) {
    if (hak_tl_heap != &hak_heap_empty) hak_heap_lock(hak_tl_heap);   /* no proxy drain in it */
    hak_starter_lock();
    hak_xfer_lock();
    pthread_mutex_lock(&hak_pool_lock);
    hak_large_fork_prepare();
}

static void fork_parent(void) {
    hak_large_fork_parent();
    pthread_mutex_unlock(&hak_pool_lock);
    hak_xfer_unlock();
    hak_starter_unlock();
    if (hak_tl_heap != &hak_heap_empty) hak_heap_unlock(hak_tl_heap);
}

/* The child's only thread is the one that took the locks in fork_prepare:
 * it releases them (initialising a locked mutex again is undefined). */
static void fork_child(void) {
    hak_large_fork_child();
    pthread_mutex_unlock(&hak_pool_lock);
    hak_xfer_unlock();
    hak_starter_unlock();
    if (hak_tl_heap != &hak_heap_empty) hak_heap_unlock(hak_tl_heap);
    hak_heap_fork_child(hak_tl_heap);
}

static void thread_exit(void *heap) {
    hak_heapless_exit();                    /* its stash, if it never took a heap */
    if (heap == &hak_heap_empty) return;
    hak_harden_thread_exit(heap);
    hak_heap_abandon(heap);
}

static void init_once_fn(void) {
    /* The free key: kernel-supplied random bytes mixed with the cycle
     * counter.  Its low nibble is 0xA, so a key word never equals 0 (what
     * malloc stores) for any 16-aligned block.  No clock_gettime here: its
     * page of libc text, and the 64 KiB the kernel maps around it, would be
     * resident in every process (measured: +10 to +17 pages). */
    uint64_t r = 0;
    const unsigned char *rnd = (const unsigned char *)getauxval(AT_RANDOM);
    if (rnd) memcpy(&r, rnd + 8, sizeof r);
    r ^= hak_ticks() * 0x9E3779B97F4A7C15ull;
    r ^= (uint64_t)(uintptr_t)&r;
    /* Bit 63 set: a link word decoded with the key (safe-linking) must come
     * out with its high bits clear, which a zero or a pointer written over
     * it never does. */
    hak_free_key = (uintptr_t)((r & ~(uint64_t)0xF) | 0xA | ((uint64_t)1 << 63));
    hak_options_init();
    if (hak_opt.verbose) hak_options_print();
    hak_harden_init();
    hak_stats_init();
    pthread_key_create(&hak_thread_key, thread_exit);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void hak_init(void) { pthread_once(&init_once, init_once_fn); }

__attribute__((constructor)) static void hak_ctor(void) { hak_init(); }

/* ----------------------------------------------------------- allocation */

HAK_INLINE void *bin_pop(hak_heap_t *h, unsigned cls) {
    if (HAK_UNLIKELY(h->bins[cls].head == HAK_BIN_END)) return unified_cache_refill(h, cls);
    return bin_take(h, cls);
}

static HAK_NOINLINE void *malloc_slow(size_t n) {
    if (n <= HAK_SMALL_MAX) return bin_pop(hak_tl_heap, hak_size_class(n));
    return hak_large_alloc(n, 0, 0);
}

/* The link check of malloc's hit path failed: the bin is empty (its head is
 * the end marker), or the head block's link was overwritten. */
static HAK_NOINLINE void *malloc_bin_end(hak_heap_t *h, hak_bin_t *bin) {
    if (HAK_LIKELY(bin->head == HAK_BIN_END)) return unified_cache_refill(h, (unsigned)(bin - h->bins));
    hak_link_corrupt(bin->head, "malloc");
}

/* malloc_tiny_fast: the hit path of the tiny tier.  The bin is found by
 * its byte offset (one table load indexed by the size, no scaling); an
 * empty bin is found by the link check (HAK_BIN_END), not by a test of its
 * own.  Then bin_take_from's work, with the check's decoded link. */
HAK_INLINE void *malloc_tiny_fast(size_t n) {
    if (HAK_UNLIKELY(n > HAK_TINY_MAX)) return malloc_slow(n);
    hak_heap_t *h = hak_tl_heap;
    hak_bin_t *bin = (hak_bin_t *)((char *)h->bins + heap_bin_off(h, n));
    void **b = bin->head;
    uintptr_t next = *(const uintptr_t *)b ^ hak_block_key((uintptr_t)b);
    if (HAK_UNLIKELY(next & HAK_LINK_BAD_BITS)) return malloc_bin_end(h, bin);
    unsigned cls = (unsigned)(bin - h->bins);
    (void)cls;
    if (HAKMEM_DEBUG_CHECKS && (void *)next != HAK_BIN_END) hak_debug_check_node(NULL, cls, (void *)next, "malloc");
    bin->head = (void *)next;
    bin->room++;
    b[1] = NULL;
    if (HAKMEM_DEBUG_COUNTERS) HAK_STAT_ADD(h->stats[cls].allocs, 1);
    if (HAKMEM_DEBUG_CHECKS) hak_debug_on_alloc(b);
    return b;
}

#if !HAKMEM_HARDENED
HAK_EXPORT void *hak_malloc(size_t n) { return malloc_tiny_fast(n); }
#endif

/* ----------------------------------------------------------- free */

/* The bin has room for this block only (then half of it goes back to the
 * slabs), or the thread has no heap yet (the empty heap's bins have no room):
 * such a thread hands the block straight back to its slab, one CAS each,
 * for its first HEAPLESS_FREES frees.  Then it takes a heap: a thread that
 * only frees what others allocate (a consumer) fills its bins, and their
 * overflow goes to the transfer cache, whose batches the allocating thread
 * takes whole at its refills.  bench_xmalloc 2 6000000 42 (two consumers):
 * 5.4 -> 14.3 M ops/s (mimalloc 6.3 M; 9 interleaved runs, medians), peak
 * RSS 2.63 -> 3.17 MB (mimalloc 2.98); callgrind bench_xmalloc 2 600000 42
 * 119.3 -> 82.6 M instructions.  A thread that frees a few blocks, or a
 * thousand, still makes no heap. */
#define HEAPLESS_FREES 1024u
static __thread uint32_t tl_heapless_frees __attribute__((tls_model("initial-exec")));

HAK_NOINLINE void hak_bin_push_slow(hak_heap_t *h, unsigned cls, void *p, const char *fn) {
    if (h == &hak_heap_empty &&
        (++tl_heapless_frees < HEAPLESS_FREES || (h = hak_heap_acquire()) == NULL)) {
        if (HAKMEM_DEBUG_CHECKS) hak_debug_on_free(p, fn);
        hak_free_remote(hak_block_slab((uintptr_t)p), (uintptr_t)p);
        return;
    }
    bin_put(h, cls, p, fn);
    unified_cache_flush(h, cls, h->bins[cls].cap / 2);
}

/* p is in a SuperSlab but did not pass the fast test: a block beyond the
 * first slot of a span, or a bad pointer. */
static HAK_COLD void free_small_slow(void *p, const char *fn) {
    uintptr_t a = (uintptr_t)p;
    hak_slab_t *s = hak_block_slab(a);     /* a later slot of a span: its first */
    const char *what = NULL;
    if (__atomic_load_n(&s->owner, __ATOMIC_ACQUIRE) == NULL)
        what = "invalid pointer (not an allocated block)";
    else if (!hak_slab_holds(s, a)) {
        /* a block start past the carve frontier was never handed out */
        uintptr_t off = a - hak_slab_base(s);
        what = off < s->cap_end && off % s->bsize == 0 ? "invalid pointer (a block not handed out)"
                                                       : "invalid pointer (inside or beyond a block)";
    }
    /* A carved block waiting in a bin or free list carries the same free key
     * as a freed one: the two cannot be told apart here, so both are named. */
    else if (((uintptr_t *)p)[1] == hak_block_key(a)) what = "double free (or free of a block not handed out) of";
    if (what) {
        /* debug: also say where the pointer belongs (class, slab, SuperSlab) */
        if (HAKMEM_DEBUG_CHECKS) hak_debug_report_block(fn, what, p);
        hak_fatal_ptr(fn, what, p);
    }
    bin_push(hak_tl_heap, s->cls, p, fn);
}

/* free's bin is full (or the thread has no heap): the class is found again
 * here, so that the hit path need not keep the slab's address. */
static HAK_NOINLINE void free_push_slow(void *p, const char *fn) {
    hak_bin_push_slow(hak_tl_heap, hak_slab_of((uintptr_t)p)->cls, p, fn);
}

static HAK_COLD void free_gate_slow(void *p, const char *fn) {
    if (p == NULL) return;
    hak_large_free(p, fn);
}

/* tiny_free_gate + free_tiny_fast: the registry says p is in a SuperSlab;
 * its slab (found by masking) says p starts a block that was handed out (a
 * free slab has carved nothing); the free key says the block is not free
 * already.  Then the block goes on this thread's bin, whichever thread's
 * slab it came from. */
HAK_INLINE void free_tiny_fast(void *p, const char *fn) {
    uintptr_t a = (uintptr_t)p;
    size_t ri = a >> HAK_SS_SHIFT;
    if (HAK_UNLIKELY(ri >= HAK_REGISTRY_SIZE || hak_registry[ri] != HAK_REG_SS)) {
        free_gate_slow(p, fn);
        return;
    }
    hak_slab_t *s = hak_slab_of(a);
    uintptr_t key = hak_block_key(a);    /* the double-free mark, and the link's key */
    size_t bin_off = s->bin_off;
    if (HAK_UNLIKELY(!hak_slab_is_block(s, (uint32_t)(a & (HAK_SLAB_SIZE - 1))) ||
                     ((uintptr_t *)p)[1] == key)) {
        free_small_slow(p, fn);
        return;
    }
    hak_heap_t *h = hak_tl_heap;
    hak_bin_t *bin = (hak_bin_t *)((char *)h->bins + bin_off);
    if (HAK_UNLIKELY(bin->room <= 1)) {
        free_push_slow(p, fn);
        return;
    }
    /* Empty asm with a memory clobber: room is decremented in memory (subl)
     * rather than kept in a register across the check (2 instructions less). */
    __asm__("" ::: "memory");
    bin_put_keyed(h, bin, s->cls, p, key, fn);
}

/* Aligned allocation.  A slab starts on a 64 KiB boundary, so a class whose
 * block size is a multiple of `align` gives aligned blocks; the power-of-two
 * classes guarantee such a class exists for every align <= 64 KiB. */
static void *alloc_aligned(size_t align, size_t n) {
    if (align <= HAK_MIN_ALIGN) return malloc_tiny_fast(n);
    if (align <= HAK_SLAB_SIZE && n <= HAK_SMALL_MAX) {
        size_t m = (n < align ? align : n + align - 1) & ~(align - 1);
        if (m <= HAK_SMALL_MAX) {
            unsigned cls = hak_size_class(m);
            while (hak_class_size[cls] & (align - 1)) cls++;
            return bin_pop(hak_tl_heap, cls);
        }
    }
    return hak_large_alloc(n, align, 0);
}

#if HAKMEM_HARDENED
/* The hardened flavor's API (harden.c) wraps these two: a block of the core,
 * aligned to `align`, and its return to the core. */
void *hak_core_alloc(size_t align, size_t n) { return alloc_aligned(align, n); }
void hak_core_free(void *b) { free_tiny_fast(b, "free"); }
#else
HAK_EXPORT void hak_free(void *p) { free_tiny_fast(p, "free"); }

/* Size of a live block, or abort with `fn` in the message if p is not one. */
static size_t block_usable(void *p, const char *fn) {
    uintptr_t a = (uintptr_t)p;
    if (hak_super_lookup(p)) {
        hak_slab_t *s = hak_block_slab(a);
        if (__atomic_load_n(&s->owner, __ATOMIC_ACQUIRE) == NULL || !hak_slab_holds(s, a))
            hak_fatal_ptr(fn, "invalid pointer", p);
        if (((uintptr_t *)p)[1] == hak_block_key(a)) hak_fatal_ptr(fn, "pointer to a freed block", p);
        return s->bsize;
    }
    size_t n = hak_large_usable(p);
    if (n == 0) hak_fatal_ptr(fn, "invalid pointer", p);
    return n;
}

/* ----------------------------------------------------------- the rest */

HAK_EXPORT void *hak_calloc(size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (total > HAK_SMALL_MAX) return hak_large_alloc(total, 0, 1);
    void *p = malloc_tiny_fast(total);
    if (p) __builtin_memset(p, 0, total);
    return p;
}

HAK_EXPORT void *hak_realloc(void *p, size_t n) {
    if (p == NULL) return hak_malloc(n);
    if (n == 0) {                        /* glibc: free and return NULL */
        free_tiny_fast(p, "realloc");
        return NULL;
    }
    size_t old;
    hak_slab_t *s = NULL;
    if (hak_super_lookup(p)) {
        /* block_usable's checks, keeping the slab: its class says whether n
         * needs the same one (then the block stays: no move, no waste), and
         * a moved block goes straight onto the bin, checked already. */
        uintptr_t a = (uintptr_t)p;
        s = hak_block_slab(a);
        if (__atomic_load_n(&s->owner, __ATOMIC_ACQUIRE) == NULL || !hak_slab_holds(s, a))
            hak_fatal_ptr("realloc", "invalid pointer", p);
        if (((uintptr_t *)p)[1] == hak_block_key(a)) hak_fatal_ptr("realloc", "pointer to a freed block", p);
        old = s->bsize;
        unsigned cls = s->cls;
        if (n <= old && (cls == 0 || n > hak_class_size[cls - 1])) return p;
    } else {
        int handled = 0;
        void *r = hak_large_realloc(p, n, &handled);
        if (handled) return r;
        hak_fatal_ptr("realloc", "invalid pointer", p);
    }
    void *np = hak_malloc(n);
    if (np == NULL) return NULL;
    __builtin_memcpy(np, p, n < old ? n : old);
    bin_push(hak_tl_heap, s->cls, p, "realloc");
    return np;
}

HAK_EXPORT void *hak_reallocarray(void *p, size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return hak_realloc(p, total);
}

static int is_pow2(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

HAK_EXPORT int hak_posix_memalign(void **out, size_t align, size_t n) {
    if (!is_pow2(align) || align % sizeof(void *) != 0) return EINVAL;
    int saved = errno;
    void *p = alloc_aligned(align, n);
    if (!p) {
        errno = saved;
        return ENOMEM;
    }
    *out = p;
    return 0;
}

HAK_EXPORT void *hak_aligned_alloc(size_t align, size_t n) {
    if (!is_pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return alloc_aligned(align, n);
}

HAK_EXPORT void *hak_memalign(size_t align, size_t n) {
    if (align > ((size_t)1 << 62)) {
        errno = EINVAL;
        return NULL;
    }
    if (!is_pow2(align)) {             /* glibc: round up to a power of two */
        size_t a = HAK_MIN_ALIGN;
        while (a < align) a <<= 1;
        align = a;
    }
    return alloc_aligned(align, n);
}

static size_t page_size(void) { return 4096; }

HAK_EXPORT void *hak_valloc(size_t n) { return alloc_aligned(page_size(), n); }

HAK_EXPORT void *hak_pvalloc(size_t n) {
    size_t ps = page_size();
    if (n > SIZE_MAX - ps) {
        errno = ENOMEM;
        return NULL;
    }
    n = n ? (n + ps - 1) & ~(ps - 1) : ps;
    return alloc_aligned(ps, n);
}

HAK_EXPORT size_t hak_malloc_usable_size(void *p) {
    return p ? block_usable(p, "malloc_usable_size") : 0;
}

HAK_EXPORT void hak_free_sized(void *p, size_t size) {
    (void)size;
    free_tiny_fast(p, "free_sized");
}

HAK_EXPORT void hak_free_aligned_sized(void *p, size_t align, size_t size) {
    (void)align;
    (void)size;
    free_tiny_fast(p, "free_aligned_sized");
}

#endif /* !HAKMEM_HARDENED */

HAK_EXPORT size_t hak_small_size_max(void) { return HAK_SMALL_MAX; }

/* ------------------------------------------- the standard names (aliases) */
#if HAKMEM_OVERRIDE
#if !HAKMEM_HARDENED
#include "hak_aliases.h"
#endif

/* glibc's malloc extras, so that a static link never pulls in glibc's own
 * malloc, and programs that call them keep working. */
/* Give back everything that can be: the calling thread's cached blocks,
 * empty slabs and SuperSlabs, the same of exited threads' heaps, the shared
 * pool, the large-mapping cache.  Live threads' heaps are theirs; they purge
 * by their own bound.  Returns 1 if memory was released, as glibc does. */
HAK_EXPORT int malloc_trim(size_t pad) {
    (void)pad;
    size_t n = hak_harden_trim();
    n += hak_heap_trim(hak_tl_heap);
    n += hak_heap_trim_orphans();
    n += shared_pool_trim();
    n += hak_large_trim();
    return n > 0;
}

HAK_EXPORT int mallopt(int param, int value) {
    (void)param;
    (void)value;
    return 1;
}

HAK_EXPORT struct mallinfo2 mallinfo2(void) {
    struct mallinfo2 mi;
    memset(&mi, 0, sizeof mi);
    return mi;
}

HAK_EXPORT struct mallinfo mallinfo(void) {
    struct mallinfo mi;
    memset(&mi, 0, sizeof mi);
    return mi;
}

HAK_EXPORT void malloc_stats(void) { hak_stats_print(); }
#endif /* HAKMEM_OVERRIDE */

HAK_EXPORT int hak_build_is_debug(void) { return HAKMEM_BUILD_DEBUG; }
HAK_EXPORT int hak_build_has_counters(void) { return HAKMEM_DEBUG_COUNTERS; }
HAK_EXPORT int hak_build_is_hardened(void) { return HAKMEM_HARDENED; }
HAK_EXPORT int hak_version(void) { return HAKMEM_VERSION; }

#if HAKMEM_OVERRIDE
HAK_EXPORT int malloc_info(int options, FILE *fp) {
    (void)options;
    fprintf(fp, "<malloc version=\"hakmem-%d.%d\"/>\n", HAKMEM_VERSION_MAJOR, HAKMEM_VERSION_MINOR);
    return 0;
}
#endif
