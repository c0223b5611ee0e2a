/* Diagnostics of the debug flavor: exact allocation state per block,
 * free-list validation, page-fault telemetry, and the heap checker.
 *
 * Only hak_check is in release builds; the rest is compiled for the debug
 * flavor alone (release sees empty inline stand-ins, hakmem_internal.h).
 *
 * Allocation bitmap (debug): one bit per block of every slab, set while the
 * block belongs to the program, kept in the unused tail of the SuperSlab's
 * header slot:
 *
 *   +0      hak_superslab_t (header + 32 slab descriptors, < 8 KiB)
 *   +8K     bitmap of slab 0 (unused), slab 1, ... 512 bytes each (4096 bits,
 *           enough for 64 KiB of 16-byte blocks)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"
#include "hakmem_internal.h"

#if HAKMEM_BUILD_DEBUG
#define BITMAP_OFFSET 8192
#define BITMAP_BYTES  (HAK_SLAB_SIZE / 16 / 8)
_Static_assert(sizeof(hak_superslab_t) <= BITMAP_OFFSET, "SuperSlab header fits before the bitmaps");
_Static_assert(BITMAP_OFFSET + HAK_SLABS_PER_SS * BITMAP_BYTES <= HAK_SLAB_SIZE, "bitmaps fit in slot 0");

void hak_debug_report_block(const char *fn, const char *what, const void *p) {
    char buf[320];
    uintptr_t a = (uintptr_t)p;
    hak_superslab_t *ss = hak_super_lookup(p);
    if (ss) {
        hak_slab_t *s = hak_block_slab(a);
        snprintf(buf, sizeof buf,
                 "hakmem: %s(): %s %p (class %u, block size %u, slab %u of SuperSlab %p, owner heap %p)\n",
                 fn, what, p, (unsigned)s->cls, s->bsize, (unsigned)s->index, (void *)ss, (void *)s->owner);
    } else {
        snprintf(buf, sizeof buf, "hakmem: %s(): %s %p (not in any SuperSlab)\n", fn, what, p);
    }
    hak_write_err(buf);
    abort();
}

static uint8_t *bitmap_byte(uintptr_t a, uint8_t *mask) {
    hak_slab_t *s = hak_block_slab(a);
    uintptr_t ss = a & ~(HAK_SS_SIZE - 1);
    uint32_t idx = (uint32_t)((a - hak_slab_base(s)) / s->bsize);
    *mask = (uint8_t)(1u << (idx & 7));
    return (uint8_t *)(ss + BITMAP_OFFSET + (uintptr_t)s->index * BITMAP_BYTES + idx / 8);
}

void hak_debug_on_alloc(void *p) {
    uint8_t m;
    uint8_t *byte = bitmap_byte((uintptr_t)p, &m);
    if (__atomic_fetch_or(byte, m, __ATOMIC_RELAXED) & m)
        hak_debug_report_block("malloc", "free list corrupted: handed out a block already in use:", p);
}

void hak_debug_on_free(void *p, const char *fn) {
    uint8_t m;
    uint8_t *byte = bitmap_byte((uintptr_t)p, &m);
    if (!(__atomic_fetch_and(byte, (uint8_t)~m, __ATOMIC_RELAXED) & m))
        hak_debug_report_block(fn, "double free, or free of a block not handed out (block not in use)", p);
}

/* A free-list node must start a carved block of an in-use slab of class
 * cls: of exactly `slab` for a slab's own free list, of any heap's slab for
 * a bin (bins hold blocks freed by this thread whoever allocated them). */
void hak_debug_check_node(const hak_slab_t *slab, unsigned cls, const void *node, const char *where) {
    uintptr_t a = (uintptr_t)node;
    char buf[256];
    const char *why = NULL;
    hak_slab_t *s = NULL;
    if ((a & 15) || !hak_super_lookup(node)) {
        why = "not in a SuperSlab";
    } else {
        s = hak_block_slab(a);
        if (slab && s != slab) why = "in another slab";
        else if (s->owner == NULL) why = "in a free slab";
        else if (s->cls != cls) why = "in a slab of another class";
        else if (!hak_slab_holds(s, a)) why = "not a block start";
        else return;
    }
    snprintf(buf, sizeof buf,
             "hakmem: %s(): corrupted free list of class %u (block size %u): bad node %p, %s (SuperSlab %p)\n",
             where, cls, hak_class_size[cls], node, why, (void *)(a & ~(HAK_SS_SIZE - 1)));
    hak_write_err(buf);
    abort();
}

/* ------------------------------------------------ page-fault telemetry */

/* A Bloom filter of 4 KiB pages first touched by carving (two hashes over
 * 2^20 bits), shared by all threads.  A page not yet in the filter counts as
 * a first touch for the class that carved it: an estimate of the page faults
 * each class causes (false positives make it a slight undercount). */
#define BLOOM_BITS (1u << 20)
static uint64_t bloom[BLOOM_BITS / 64];

static int bloom_test_and_set(uint64_t page) {
    uint64_t h1 = page * 0x9E3779B97F4A7C15ull, h2 = page * 0xC2B2AE3D27D4EB4Full;
    uint32_t b1 = (uint32_t)(h1 >> 44), b2 = (uint32_t)(h2 >> 44);
    uint64_t m1 = 1ull << (b1 & 63), m2 = 1ull << (b2 & 63);
    uint64_t o1 = __atomic_fetch_or(&bloom[b1 >> 6], m1, __ATOMIC_RELAXED);
    uint64_t o2 = __atomic_fetch_or(&bloom[b2 >> 6], m2, __ATOMIC_RELAXED);
    return (o1 & m1) && (o2 & m2);
}

void pagefault_telemetry_touch(hak_heap_t *h, unsigned cls, uintptr_t start, size_t len) {
    for (uintptr_t pg = start >> 12, end = (start + len - 1) >> 12; pg <= end; pg++)
        if (!bloom_test_and_set(pg)) HAK_STAT_ADD(h->stats[cls].page_first_touch, 1);
}

#endif /* HAKMEM_BUILD_DEBUG */

/* ------------------------------------------------------ heap checker */

static unsigned check_fail(const char *what, const void *where) {
    char buf[320];
    snprintf(buf, sizeof buf, "hakmem: hak_check: %s at %p\n", what, where);
    hak_write_err(buf);
    return 1;
}

/* hak_check: walk the calling thread's heap (bins, partial slabs and their
 * free lists, warm SuperSlabs) and the registry entries of its SuperSlabs,
 * then the transfer cache and every page-run arena (under their locks).  Other threads' heaps change
 * under us and are not walked.  Returns the
 * number of problems found, each reported on stderr. */
/* The next node of a free list, decoded without stopping the process: a
 * link that does not decode (safe-linking) is reported and ends the walk. */
static void **walk_next(void **b, unsigned *bad) {
    uintptr_t n = (uintptr_t)b[0] ^ hak_block_key((uintptr_t)b);
    if (n & HAK_LINK_BAD_BITS) {
        char msg[128];
        snprintf(msg, sizeof msg, "corrupted free list: link word %p, not a link (written after free?), in block",
                 b[0]);
        *bad += check_fail(msg, b);
        return NULL;
    }
    return (void **)n;
}

HAK_EXPORT unsigned hak_check(void) {
    hak_heap_t *h = hak_tl_heap;
    unsigned bad = 0;
    if (h == &hak_heap_empty) return hak_large_check();
    hak_heap_lock(h);                      /* its slabs: a proxy drain may be at work */
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        hak_bin_t *bin = &h->bins[c];
        uint32_t n = 0;
        for (void **b = bin->head; b && b != HAK_BIN_END; b = walk_next(b, &bad)) {
            uintptr_t a = (uintptr_t)b;
            if (++n > bin->cap) { bad += check_fail("bin longer than its cap (cycle?)", bin); break; }
            if (!hak_super_lookup(b)) { bad += check_fail("bin node outside every SuperSlab", b); break; }
            hak_slab_t *s = hak_block_slab(a);
            if (s->owner == NULL || s->cls != c) { bad += check_fail("bin node in a free slab or of another class", b); break; }
            if (!hak_slab_holds(s, a))
                { bad += check_fail("bin node is not a block start", b); break; }
            if ((uintptr_t)b[1] != hak_block_key(a)) bad += check_fail("free block lost its free key", b);
        }
        if (n <= bin->cap && n != bin_count(bin)) bad += check_fail("bin count does not match its list", bin);
        for (hak_slab_t *s = h->partial[c]; s; s = s->next) {
            if (s->owner != h || s->cls != c) { bad += check_fail("partial slab of another heap/class", s); break; }
            uint32_t nf = 0, max = s->carved / s->bsize;
            for (void **b = s->free; b; b = walk_next(b, &bad)) {
                uintptr_t a = (uintptr_t)b;
                if (++nf > max) { bad += check_fail("slab free list too long (cycle?)", s); break; }
                if (hak_block_slab(a) != s || !hak_slab_holds(s, a))
                    { bad += check_fail("slab free list node outside its slab", b); break; }
            }
            if (nf <= max && nf != s->nfree) bad += check_fail("slab nfree does not match its list", s);
            if (s->used + s->nfree > max) bad += check_fail("slab counts exceed its carved blocks", s);
        }
    }
    for (hak_superslab_t *ss = h->warm; ss; ss = ss->next) {
        if (ss->magic != HAK_SS_MAGIC) bad += check_fail("warm SuperSlab without magic", ss);
        if (hak_super_lookup(ss) != ss) bad += check_fail("warm SuperSlab not in the registry", ss);
        if (ss->heap != h) bad += check_fail("warm SuperSlab of another heap", ss);
        if (ss->free_mask == 0) bad += check_fail("full SuperSlab on the warm list", ss);
    }
    hak_heap_unlock(h);
    return bad + hak_xfer_check() + hak_large_check() + hak_harden_check();
}
