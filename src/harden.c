/* The hardened flavor's API (make BUILD_FLAVOR=hardened).
 *
 * Every block the user gets is a block of the core (api.c's hak_core_alloc)
 * with a header in front and canary bytes behind:
 *
 *   b              header word 0:  plain ^ hk0 ^ b
 *   b + 8          header word 1:  ~plain ^ hk1 ^ b   (the core's free-key word)
 *   b + 16 .. p    aligned blocks only: canary bytes
 *   p = b + off    the user's n bytes            plain = n | (off / 16) << 40
 *   p + n          canary bytes, at least 8, up to 16 checked
 *   ...            large blocks: then a guard page (PROT_NONE); of a page
 *                  run, the core's fence right after the run (pagerun.c)
 *
 * The two header words must agree, so any write before the block that
 * reaches the header (an underflow of 1 byte or more) is found by free;
 * they also give back n and off, so free and realloc check the canary
 * right behind the n bytes (an overflow of 1 byte or more).  A freed block
 * has the core's free key in word 1 (its header's word 0 stays), which is
 * how a double free is told apart from a corrupted header.
 *
 * Freed blocks are zeroed (the first HAKMEM_ZERO_ON_FREE_KIB) and wait in
 * the thread's quarantine (HAKMEM_QUARANTINE_KIB) before they go back to
 * the core; when one leaves, its zeroed bytes must still be zero, or some
 * code wrote into it after free.  Large blocks in quarantine are PROT_NONE
 * past their first page, so a use after free there faults at once.
 *
 * Messages name the function, what happened, the block's size and address:
 *   hakmem: free(): buffer overflow (a write past the end) of the 40-byte block 0x...
 * Nothing here allocates; the checks cost a division per free (the block's
 * start) and a few loads and compares besides the zeroing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "hakmem.h"
#include "hakmem_internal.h"

#if HAKMEM_HARDENED

#define PAGE        ((uintptr_t)4096)
#define HDR         16u                          /* header bytes */
#define N_BITS      40
#define N_MASK      (((uint64_t)1 << N_BITS) - 1)
#define N_MAX       (N_MASK - 1)                 /* plain is never all ones */
#define OFF_MAX     ((size_t)1 << 27)            /* off / 16 < 2^24 */
#define CANARY_SPAN 16u                          /* canary bytes checked behind a block */
#define CANARY_MIN  8u                           /* canary bytes a new block has at least */
/* Large blocks up to this have their guard page as a fence of the core
 * (pagerun.c), kept from one block to the next; larger ones set theirs up
 * and take it down (two mprotect calls, little next to their page faults):
 * fences between blocks of several MiB kept their pages from merging, and
 * the 1-32 MiB band took 30% more memory and time. */
#define FENCED_MAX  ((size_t)4 << 20)

static uint64_t hk0, hk1, canary_word;
static uint64_t canary_rot[8];                  /* canary_word rotated by 0..7 bytes */

void hak_harden_init(void) {
    /* Derived from the free key (random per process).  hk1 = key ^ ~x with
     * x below 2^40, so that word 1 of a live block never equals the free
     * key: ~plain ^ hk1 == key only for plain == x, whose off field is 0,
     * and off is at least 16. */
    uint64_t k = hak_free_key;
    hk0 = (k ^ (k >> 29)) * 0xbf58476d1ce4e5b9ull;
    hk1 = k ^ ~(((k ^ (k >> 23)) * 0x9e3779b97f4a7c15ull) & N_MASK);
    /* Canary bytes in 0x80..0xfe: never NUL (an off-by-one string copy),
     * never ASCII text, never 0xff. */
    uint64_t c = (k ^ (k >> 31)) * 0x94d049bb133111ebull;
    canary_word = (c & 0x7e7e7e7e7e7e7e7eull) | 0x8080808080808080ull;
    canary_rot[0] = canary_word;
    for (unsigned r = 1; r < 8; r++) canary_rot[r] = (canary_word >> (8 * r)) | (canary_word << (64 - 8 * r));
}

/* ------------------------------------------------------------ header */

HAK_INLINE void hdr_set(uintptr_t b, size_t n, size_t off) {
    uint64_t plain = (uint64_t)n | ((uint64_t)(off >> 4) << N_BITS);
    ((uint64_t *)b)[0] = plain ^ hk0 ^ b;
    ((uint64_t *)b)[1] = ~plain ^ hk1 ^ b;
}

/* 1 and n, off if the header at b is intact and says the block is live. */
HAK_INLINE int hdr_get(uintptr_t b, size_t *n, size_t *off) {
    uint64_t p0 = ((const uint64_t *)b)[0] ^ hk0 ^ b;
    uint64_t p1 = ~(((const uint64_t *)b)[1] ^ hk1 ^ b);
    if (HAK_UNLIKELY(p0 != p1)) return 0;
    *n = (size_t)(p0 & N_MASK);
    *off = (size_t)(p0 >> N_BITS) << 4;
    return 1;
}

/* The off recorded in word 0 of a freed block (its word 1 is the free key):
 * valid while the block is in quarantine, noise after the core took it. */
HAK_INLINE size_t hdr_freed_off(uintptr_t b) {
    uint64_t p0 = ((const uint64_t *)b)[0] ^ hk0 ^ b;
    return (size_t)(p0 >> N_BITS) << 4;
}

/* ------------------------------------------------------------ canaries */

/* The canary byte of address x is byte x % 8 of canary_word, so the bytes
 * from any x on read as canary_word rotated by x % 8 bytes. */
HAK_INLINE uint64_t canary_at(uintptr_t x) { return canary_rot[x & 7]; }

static void canary_fill(uintptr_t x, size_t k) {
    uint64_t w = canary_at(x);
    if (k >= 8) {
        __builtin_memcpy((void *)x, &w, 8);
        uint64_t w2 = canary_at(x + k - 8);
        __builtin_memcpy((void *)(x + k - 8), &w2, 8);
        return;
    }
    for (size_t i = 0; i < k; i++) ((uint8_t *)x)[i] = (uint8_t)(w >> (8 * i));
}

/* 1 if the k canary bytes from x are intact (k <= 16). */
static int canary_ok(uintptr_t x, size_t k) {
    uint64_t w = canary_at(x), v;
    if (k >= 8) {
        __builtin_memcpy(&v, (const void *)x, 8);
        if (v != w) return 0;
        uint64_t w2 = canary_at(x + k - 8);
        __builtin_memcpy(&v, (const void *)(x + k - 8), 8);
        return v == w2;
    }
    for (size_t i = 0; i < k; i++)
        if (((const uint8_t *)x)[i] != (uint8_t)(w >> (8 * i))) return 0;
    return 1;
}

/* ------------------------------------------------------------ blocks */

/* What free and realloc know about a user's pointer once it is checked. */
typedef struct {
    uintptr_t b;        /* the core's block */
    size_t total;       /* its bytes */
    size_t usable;      /* its bytes up to the guard page (large), where the canary ends */
    size_t n, off;      /* from the header */
    int large;
    unsigned cls;       /* small: the block's class */
} blk_t;

/* Bytes of a core block the user may have, and its end for the canary. */
HAK_INLINE size_t blk_end(const blk_t *k) { return k->b + k->usable; }

/* A large block's guard page: the first page after the user's bytes and
 * one canary byte, so that an overflow of a page or more faults at once. */
HAK_INLINE size_t guard_off(size_t off, size_t n) { return (off + n + 1 + PAGE - 1) & ~(PAGE - 1); }

/* A large block's bytes as the core sees them: the run or mapping. */
static size_t large_usable(uintptr_t b) { return hak_large_usable((const void *)b); }

/* The core block of a large user pointer a: b = a - off for the off its
 * header names (16, or the alignment asked for).  0 if none is found. */
static uintptr_t large_find(uintptr_t a, size_t *usable) {
    for (size_t k = HDR; k <= OFF_MAX && k < a; k <<= 1) {
        uintptr_t b = a - k;
        if (b & (PAGE - 1)) continue;            /* large blocks start on a page */
        size_t u = large_usable(b);
        if (u == 0) continue;
        size_t n, off;
        uint64_t w1 = ((const uint64_t *)b)[1];
        if (w1 == hak_block_key(b) ? hdr_freed_off(b) == k : (hdr_get(b, &n, &off) && off == k)) {
            *usable = u;
            return b;
        }
        if (k == HDR) {                          /* a's own block, header broken */
            *usable = u;
            return b;
        }
    }
    return 0;
}

/* Check the user's pointer a, as `fn` got it; stop the process with a
 * message if it is not a live block or its header or canaries were written. */
HAK_INLINE void blk_check(uintptr_t a, const char *fn, blk_t *k) {
    hak_superslab_t *ss = hak_super_lookup((const void *)a);
    k->large = 0;
    k->cls = 0;
    if (HAK_LIKELY(ss != NULL) && HAK_LIKELY((a & (HAK_SLAB_SIZE - 1)) >= HDR)) {
        /* The common case without a division: a plain block's header is the
         * 16 bytes before a, at a block start of a's slab (the span's first
         * slot: later slots take the general path), and says off = 16. */
        uintptr_t b = a - HDR;
        hak_slab_t *s = hak_slab_of(b);
        uint64_t p0 = ((const uint64_t *)b)[0] ^ hk0 ^ b, p1 = ~(((const uint64_t *)b)[1] ^ hk1 ^ b);
        if (HAK_LIKELY(s->span_back == 0 && hak_slab_is_block(s, (uint32_t)(b & (HAK_SLAB_SIZE - 1))) &&
                       p0 == p1 && (p0 >> N_BITS) == HDR >> 4)) {
            k->b = b;
            k->cls = s->cls;
            k->total = k->usable = s->bsize;
            k->n = (size_t)(p0 & N_MASK);
            k->off = HDR;
            goto checked;
        }
    }
    if (ss) {
        hak_slab_t *s = hak_block_slab(a);
        if (__atomic_load_n(&s->owner, __ATOMIC_ACQUIRE) == NULL)
            hak_fatal_ptr(fn, "invalid pointer (not an allocated block)", (void *)a);
        uintptr_t base = hak_slab_base(s), off = a - base;
        uint32_t bs = s->bsize;
        if (off >= s->cap_end) hak_fatal_ptr(fn, "invalid pointer (beyond the last block of its slab)", (void *)a);
        uintptr_t bo = off - off % bs;
        if (bo >= HAK_RACY_LOAD(s->carved) || off - bo < HDR || (a & (HAK_MIN_ALIGN - 1)))
            hak_fatal_ptr(fn, bo >= s->carved ? "invalid pointer (a block not handed out)"
                                              : "invalid pointer (inside a block)", (void *)a);
        k->b = base + bo;
        k->cls = s->cls;
        k->total = k->usable = bs;
    } else {
        if ((a & (HAK_MIN_ALIGN - 1)) || a < PAGE + HDR) hak_fatal_ptr(fn, "invalid pointer", (void *)a);
        size_t u = 0;
        k->b = large_find(a, &u);
        if (!k->b) hak_fatal_ptr(fn, "invalid pointer (not an allocated block, or a large block freed before)", (void *)a);
        k->total = k->usable = u;
        k->large = 1;
    }
    uintptr_t b = k->b;
    if (((const uint64_t *)b)[1] == hak_block_key(b)) {
        /* Freed, or carved and never handed out (the core's carving sets the
         * free key too).  Word 0 of a block in the quarantine still names
         * its offset: that is surely a double free.  A block back in the
         * core holds a link there, as does one carved and never handed out:
         * both are named. */
        int fr = strncmp(fn, "free", 4) == 0;
        if (hdr_freed_off(b) == a - b)
            hak_fatal_ptr(fn, fr ? "double free of" : "use after free: a freed block", (void *)a);
        if (a - b == HDR)
            hak_fatal_ptr(fn, fr ? "double free (or free of a block not handed out) of"
                                 : "use after free: a freed block (or a block not handed out)", (void *)a);
        hak_fatal_ptr(fn, "invalid pointer (inside a freed block)", (void *)a);
    }
    if (!hdr_get(b, &k->n, &k->off)) {
        if (a - b == HDR)
            hak_fatal_ptr(fn, "buffer underflow (a write before the start of the block: its header is corrupted) at",
                          (void *)a);
        hak_fatal_ptr(fn, "invalid pointer (inside a block), or a block whose header was overwritten:", (void *)a);
    }
    if (b + k->off != a) hak_fatal_ptr(fn, "invalid pointer (inside a block)", (void *)a);
    if (k->large && hak_opt.guard_pages) k->usable = guard_off(k->off, k->n);
checked:
    if (k->off + k->n >= k->usable || k->usable > k->total)
        hak_fatal_block(fn, "corrupted header (size beyond the block) of the", (void *)a, k->n, "");
    if (hak_opt.canary) {
        uintptr_t e = a + k->n;
        size_t span = blk_end(k) - e;
        if (!canary_ok(e, span < CANARY_SPAN ? span : CANARY_SPAN))
            hak_fatal_block(fn, "buffer overflow (a write past the end) of the", (void *)a, k->n, "");
        if (k->off > HDR) {
            size_t pad = k->off - HDR;
            if (pad > CANARY_SPAN) pad = CANARY_SPAN;
            if (!canary_ok(a - pad, pad))
                hak_fatal_block(fn, "buffer underflow (a write before the start) of the", (void *)a, k->n, "");
        }
    }
}

/* ------------------------------------------------------------ allocation */

static void *blk_alloc(size_t align, size_t n) {
    if (HAK_UNLIKELY(n > N_MAX || align > OFF_MAX)) {
        errno = ENOMEM;
        return NULL;
    }
    size_t off = align > HDR ? align : HDR;
    /* at least 8 canary bytes (checked as one word), or 1 with canaries off */
    size_t m = off + n + (hak_opt.canary ? CANARY_MIN : 1);
    /* Room for the guard page wherever the core may answer with a large
     * block: above the slab classes, or where aligning takes it there. */
    if (hak_opt.guard_pages &&
        (m > HAK_SMALL_MAX || align > HAK_SLAB_SIZE || (align > HDR && m + align > HAK_SMALL_MAX)))
        m += PAGE;
    void *bp;
    size_t usable;
    if (HAK_LIKELY(align <= HDR && m <= HAK_SMALL_MAX)) {
        /* the core's malloc hit path, inline: the bin of m's class */
        hak_heap_t *h = hak_tl_heap;
        unsigned cls = hak_size_class(m);
        hak_bin_t *bin = &h->bins[cls];
        bp = HAK_LIKELY(bin->head != HAK_BIN_END) ? bin_take_from(h, bin, cls) : unified_cache_refill(h, cls);
        if (!bp) return NULL;
        usable = hak_class_size[cls];
        goto small;
    }
    if (align <= HDR && hak_opt.guard_pages && m - PAGE > HAK_SMALL_MAX && m <= FENCED_MAX) {
        /* a page run whose guard page is the core's: a fence right after
         * it, kept when the block is freed for the next block that fits */
        bp = hak_large_alloc_fenced(guard_off(HDR, n));
        if (bp) {
            usable = guard_off(HDR, n);
            goto small;
        }
    }
    bp = hak_core_alloc(align > HDR ? align : 0, m);
    if (!bp) return NULL;
    if (hak_super_lookup(bp)) {
        /* the core gave a block of the smallest fitting class (or a larger
         * one, for alignment): its slab says which */
        usable = hak_block_slab((uintptr_t)bp)->bsize;
    } else {
        usable = large_usable((uintptr_t)bp);
        if (hak_opt.guard_pages) {                 /* m has room for it */
            usable = guard_off(off, n);
            mprotect((char *)bp + usable, PAGE, PROT_NONE);   /* if it fails: no guard */
        }
    }
small:;
    uintptr_t b = (uintptr_t)bp;
    hdr_set(b, n, off);
    uintptr_t p = b + off;
    if (hak_opt.canary) {
        size_t span = b + usable - (p + n);
        canary_fill(p + n, span < CANARY_SPAN ? span : CANARY_SPAN);
        if (off > HDR) {
            size_t pad = off - HDR;
            if (pad > CANARY_SPAN) pad = CANARY_SPAN;
            canary_fill(p - pad, pad);
        }
    }
    return (void *)p;
}

/* ------------------------------------------------------------ quarantine */

/* Is a large block of `total` bytes PROT_NONE past its first page while it
 * waits in the quarantine?  Huge blocks (a mapping each) with guard pages
 * on, every large block with HAKMEM_GUARD_PAGES=2: protecting a run of a
 * few hundred KiB made the 64 KiB-1 MiB band 7x slower, a mapping of tens
 * of MiB costs little next to its page faults. */
HAK_INLINE int quarantine_protects(size_t total) {
    return hak_opt.guard_pages >= 2 || (hak_opt.guard_pages && total > hak_run_max());
}

/* Bytes of a freed block that are zeroed (and checked when it leaves the
 * quarantine): the first HAKMEM_ZERO_ON_FREE_KIB of its n; of a block
 * protected in quarantine, only those in its first page. */
HAK_INLINE size_t zero_len(size_t n, size_t off, int prot) {
    size_t z = (size_t)hak_opt.zero_on_free_kib << 10;
    if (prot) z = off < PAGE ? PAGE - off : 0;
    return n < z ? n : z;
}

/* 1 if the z bytes from p are all zero: compared with a page of zeros by
 * the C library's memcmp (vectorised), a page at a time. */
static const uint8_t zero_page[4096];
#define CHECK_ALL  256
#define CHECK_HEAD 192
#define CHECK_TAIL 64

HAK_INLINE int is_zero(uintptr_t p, size_t z) {
#ifdef __SSE2__
    if (z >= 16 && z <= CHECK_ALL) {
        /* 16 bytes at a time, the last 16 overlapping: no call (memcmp cost
         * 43 instructions a block in bench_random_mixed) */
        __m128i acc = _mm_loadu_si128((const __m128i *)(p + z - 16));
        for (size_t i = 0; i + 16 <= z; i += 16) acc = _mm_or_si128(acc, _mm_loadu_si128((const __m128i *)(p + i)));
        return _mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128())) == 0xffff;
    }
#endif
    if (z <= 64) {                               /* inline: no call for small spans */
        uint64_t acc = 0, v;
        size_t i = 0;
        for (; i + 8 <= z; i += 8) { __builtin_memcpy(&v, (const void *)(p + i), 8); acc |= v; }
        for (; i < z; i++) acc |= ((const uint8_t *)p)[i];
        return acc == 0;
    }
    while (z > 0) {
        size_t k = z < sizeof zero_page ? z : sizeof zero_page;
        if (memcmp((const void *)p, zero_page, k) != 0) return 0;
        p += k;
        z -= k;
    }
    return 1;
}

/* Zero z bytes from p (zero-on-free). */
static inline void zero_fill(uintptr_t p, size_t z) {
#ifdef __SSE2__
    if (z >= 16 && z <= CHECK_ALL) {             /* no call for what is checked whole */
        _mm_storeu_si128((__m128i *)(p + z - 16), _mm_setzero_si128());
        for (size_t i = 0; i + 16 <= z; i += 16) _mm_storeu_si128((__m128i *)(p + i), _mm_setzero_si128());
        return;
    }
#endif
    memset((void *)p, 0, z);
}

/* Give a quarantined (or not quarantined) block back to the core: cls1 is
 * its class + 1, or 0 for a large block. */
HAK_INLINE void blk_release(uintptr_t b, unsigned cls1, const char *fn, int check) {
    uint64_t p0 = ((const uint64_t *)b)[0] ^ hk0 ^ b;
    size_t n = (size_t)(p0 & N_MASK), off = (size_t)(p0 >> N_BITS) << 4;
    uintptr_t p = b + off;
    int large = cls1 == 0, prot = 0;
    size_t u = large ? large_usable(b) : 0;
    if (large && quarantine_protects(u)) {
        prot = 1;
        mprotect((void *)(b + PAGE), u - PAGE, PROT_READ | PROT_WRITE);
    } else if (large && hak_opt.guard_pages && guard_off(off, n) < u) {
        /* its own guard page (a fenced run's guard page is the core's) */
        mprotect((void *)(b + guard_off(off, n)), PAGE, PROT_READ | PROT_WRITE);
    }
    if (check) {
        /* the whole zeroed span of a block up to 256 bytes; of a larger one
         * its first 192 and last 64 bytes, where object headers, links and
         * lengths live (checking all of it doubled the cost of free) */
        size_t z = zero_len(n, off, prot);
        int ok = z <= CHECK_ALL ? is_zero(p, z) : is_zero(p, CHECK_HEAD) && is_zero(p + z - CHECK_TAIL, CHECK_TAIL);
        if (!ok) hak_fatal_block(fn, "use after free: a write into the", (void *)p, n, ", after it was freed");
    }
    if (!large) {
        /* checked when it was freed: straight onto this thread's bin, as
         * the core's free does after its own checks */
        hak_heap_t *h = hak_tl_heap;
        bin_push(h, cls1 - 1, (void *)b, fn);
        return;
    }
    ((uint64_t *)b)[1] = 0;                      /* the core's "not free" */
    hak_core_free((void *)b);
}

/* Bytes a quarantined block holds. */
static size_t qcost(uintptr_t b, unsigned cls1) {
    return cls1 ? hak_class_size[cls1 - 1] : large_usable(b);
}

HAK_INLINE void quarantine_put(hak_heap_t *h, const blk_t *k, const char *fn) {
    hak_quarantine_t *q = &h->quarantine;
    size_t limit = (size_t)hak_opt.quarantine_kib << 10;
    size_t cost = k->total;
    while (q->count && (q->count == HAK_QUARANTINE_SLOTS || q->bytes + cost > limit)) {
        uintptr_t old = q->ring[q->head];
        unsigned c1 = q->cls1[q->head];
        q->head = (q->head + 1) % HAK_QUARANTINE_SLOTS;
        q->count--;
        size_t u = qcost(old, c1);
        q->bytes -= u < q->bytes ? u : q->bytes;
        blk_release(old, c1, fn, 1);
    }
    uint32_t t = (q->head + q->count) % HAK_QUARANTINE_SLOTS;
    q->ring[t] = k->b;
    q->cls1[t] = (uint8_t)(k->large ? 0 : k->cls + 1);
    q->count++;
    q->bytes += cost;
}

static size_t quarantine_flush(hak_heap_t *h, const char *fn) {
    hak_quarantine_t *q = &h->quarantine;
    size_t n = q->count;
    while (q->count) {
        uintptr_t old = q->ring[q->head];
        unsigned c1 = q->cls1[q->head];
        q->head = (q->head + 1) % HAK_QUARANTINE_SLOTS;
        q->count--;
        blk_release(old, c1, fn, 1);
    }
    q->bytes = 0;
    return n;
}

/* A thread's quarantine is checked and emptied when it exits. */
void hak_harden_thread_exit(hak_heap_t *h) {
    if (h != &hak_heap_empty) quarantine_flush(h, "thread exit");
}

size_t hak_harden_trim(void) {
    hak_heap_t *h = hak_tl_heap;
    return h == &hak_heap_empty ? 0 : quarantine_flush(h, "malloc_trim");
}

/* hak_check's part: the calling thread's quarantined blocks, each with its
 * free key, header word 0 and zeroed bytes intact; reported, not fatal. */
unsigned hak_harden_check(void) {
    hak_heap_t *h = hak_tl_heap;
    if (h == &hak_heap_empty) return 0;
    hak_quarantine_t *q = &h->quarantine;
    unsigned bad = 0;
    for (uint32_t i = 0; i < q->count; i++) {
        uintptr_t b = q->ring[(q->head + i) % HAK_QUARANTINE_SLOTS];
        uint64_t p0 = ((const uint64_t *)b)[0] ^ hk0 ^ b;
        size_t n = (size_t)(p0 & N_MASK), off = (size_t)(p0 >> N_BITS) << 4;
        int large = !hak_super_lookup((void *)b);
        size_t u = large ? large_usable(b) : hak_block_slab(b)->bsize;
        const char *what = NULL;
        if (((const uint64_t *)b)[1] != hak_block_key(b)) what = "quarantined block lost its free key (written before its start?)";
        else if (off < HDR || off + n >= u) what = "quarantined block's header word 0 was overwritten";
        else if (!(large && quarantine_protects(u))) {
            size_t z = zero_len(n, off, 0);
            if (!is_zero(b + off, z)) what = "use after free: a write into a quarantined block";
        }
        if (what) {
            char msg[160];
            size_t k = strlen(what);
            memcpy(msg, "hakmem: hak_check: ", 19);
            memcpy(msg + 19, what, k);
            memcpy(msg + 19 + k, " at ", 5);
            hak_write_err(msg);
            char hex[24], *o = hex + sizeof hex;
            uintptr_t v = b + (off >= HDR ? off : HDR);
            *--o = 0;
            *--o = '\n';
            do { *--o = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
            *--o = 'x';
            *--o = '0';
            hak_write_err(o);
            bad++;
        }
    }
    return bad;
}

/* At exit, the main thread's quarantine is checked: a write after free that
 * no later free brought to light still stops the process.  The program's
 * buffered output is written first, since abort() would drop it. */
__attribute__((destructor)) static void harden_fini(void) {
    hak_heap_t *h = hak_tl_heap;
    if (h == &hak_heap_empty) return;
    if (hak_harden_check()) fflush(NULL);
    quarantine_flush(h, "exit");
}

/* Free a checked block: zero it, mark it freed, quarantine it. */
HAK_INLINE void blk_free(const blk_t *k, const char *fn) {
    uintptr_t b = k->b, p = b + k->off;
    int prot = k->large && quarantine_protects(k->total);
    size_t z = zero_len(k->n, k->off, prot);
    zero_fill(p, z);
    ((uint64_t *)b)[1] = hak_block_key(b);       /* freed; word 0 keeps n and off */
    hak_heap_t *h = hak_tl_heap;
    /* a thread that never had a small block has no heap yet: it gets one
     * for its quarantine */
    if (h == &hak_heap_empty && hak_opt.quarantine_kib) h = hak_heap_acquire();
    if (hak_opt.quarantine_kib == 0 || h == NULL) {
        blk_release(b, k->large ? 0 : k->cls + 1, fn, 0);
        return;
    }
    if (prot) mprotect((void *)(b + PAGE), k->total - PAGE, PROT_NONE);   /* the guard page too */
    quarantine_put(h, k, fn);
}

/* ------------------------------------------------------------ the API */

HAK_EXPORT void *hak_malloc(size_t n) { return blk_alloc(0, n); }

HAK_EXPORT void hak_free(void *p) {
    if (!p) return;
    blk_t k;
    blk_check((uintptr_t)p, "free", &k);
    blk_free(&k, "free");
}

HAK_EXPORT void hak_free_sized(void *p, size_t size) {
    if (!p) return;
    blk_t k;
    blk_check((uintptr_t)p, "free_sized", &k);
    if (size != k.n) hak_fatal_block("free_sized", "size does not match: free_sized() was given another size for the", p, k.n, "");
    blk_free(&k, "free_sized");
}

HAK_EXPORT void hak_free_aligned_sized(void *p, size_t align, size_t size) {
    (void)align;
    if (!p) return;
    blk_t k;
    blk_check((uintptr_t)p, "free_aligned_sized", &k);
    if (size != k.n)
        hak_fatal_block("free_aligned_sized", "size does not match: free_aligned_sized() was given another size for the",
                        p, k.n, "");
    blk_free(&k, "free_aligned_sized");
}

HAK_EXPORT void *hak_calloc(size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = blk_alloc(0, total);
    if (p) memset(p, 0, total);
    return p;
}

HAK_EXPORT void *hak_realloc(void *p, size_t n) {
    if (p == NULL) return hak_malloc(n);
    if (n == 0) {                                /* glibc: free and return NULL */
        blk_t k;
        blk_check((uintptr_t)p, "realloc", &k);
        blk_free(&k, "realloc");
        return NULL;
    }
    blk_t k;
    blk_check((uintptr_t)p, "realloc", &k);
    /* In place while the block holds n and a canary byte, and is not more
     * than twice what n needs. */
    if (n <= N_MAX && k.off + n + (hak_opt.canary ? CANARY_MIN : 1) <= k.usable && (k.off + n + 1) * 2 > k.usable &&
        (!k.large || !hak_opt.guard_pages || guard_off(k.off, n) == k.usable)) {
        hdr_set(k.b, n, k.off);
        if (hak_opt.canary) {
            size_t span = blk_end(&k) - ((uintptr_t)p + n);
            canary_fill((uintptr_t)p + n, span < CANARY_SPAN ? span : CANARY_SPAN);
        }
        return p;
    }
    /* A page run with its fence (its guard page is the page after it) grows
     * in place when the pages after the fence are free: the fence moves. */
    if (k.large && hak_opt.guard_pages && n > k.n && n <= N_MAX && k.off == HDR && k.usable == k.total &&
        hak_large_grow_fenced((void *)k.b, guard_off(HDR, n))) {
        hdr_set(k.b, n, HDR);
        if (hak_opt.canary) {
            size_t span = k.b + guard_off(HDR, n) - ((uintptr_t)p + n);
            canary_fill((uintptr_t)p + n, span < CANARY_SPAN ? span : CANARY_SPAN);
        }
        return p;
    }
    void *np = blk_alloc(k.off > HDR ? k.off : 0, n);
    if (!np) return NULL;
    memcpy(np, p, n < k.n ? n : k.n);
    blk_free(&k, "realloc");
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

static void *aligned(size_t align, size_t n) { return blk_alloc(align > HAK_MIN_ALIGN ? align : 0, n); }

HAK_EXPORT int hak_posix_memalign(void **out, size_t align, size_t n) {
    if (!is_pow2(align) || align % sizeof(void *) != 0) return EINVAL;
    int saved = errno;
    void *p = aligned(align, n);
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
    return aligned(align, n);
}

HAK_EXPORT void *hak_memalign(size_t align, size_t n) {
    if (align > ((size_t)1 << 62)) {
        errno = EINVAL;
        return NULL;
    }
    if (!is_pow2(align)) {                       /* glibc: round up to a power of two */
        size_t a = HAK_MIN_ALIGN;
        while (a < align) a <<= 1;
        align = a;
    }
    return aligned(align, n);
}

HAK_EXPORT void *hak_valloc(size_t n) { return aligned(PAGE, n); }

HAK_EXPORT void *hak_pvalloc(size_t n) {
    if (n > SIZE_MAX - PAGE) {
        errno = ENOMEM;
        return NULL;
    }
    n = n ? (n + PAGE - 1) & ~(PAGE - 1) : PAGE;
    return aligned(PAGE, n);
}

/* The size asked for: the bytes behind it are the canary. */
HAK_EXPORT size_t hak_malloc_usable_size(void *p) {
    if (!p) return 0;
    blk_t k;
    blk_check((uintptr_t)p, "malloc_usable_size", &k);
    return k.n;
}

#if HAKMEM_OVERRIDE
#include "hak_aliases.h"
#endif

#endif /* HAKMEM_HARDENED */
