/* fuzz_ops: a libFuzzer harness that drives hakmem's hak_ API with an
 * operation sequence read from its input, and checks every answer.
 *
 * INPUT FORMAT
 *
 *   byte 0      configuration
 *                 bits 0-1  number of threads - 1 (1..4 logical threads)
 *                 bit  2    0: lockstep, 1: concurrent (see THREADS)
 *                 bits 3-7  unused
 *   then ops, until the input ends (at most MAX_OPS).  Each op is one byte
 *                 bits 0-5  opcode: index into op_table (64 entries)
 *                 bits 6-7  logical thread that runs it (mod thread count)
 *   followed by the op's argument bytes (op_args[]; an input that ends in
 *   the middle of an op reads the missing bytes as 0).  Argument kinds:
 *     slot    1 byte: index into the thread's table of 256 slots
 *     size    3 bytes c, lo, hi: decode_size(); c & 7 picks a tier
 *               0,1 tiny 1..1024     2 small 1..16 KiB    3 mid 1 KiB..256 KiB
 *               4 page runs 256 KiB..32 MiB, a whole number of pages minus 0..31 x 128
 *               5 huge 32..160 MiB
 *               6 a boundary size from edge_sizes[]   7 2^k plus or minus a little
 *             with v = lo | hi << 8 | (c >> 3) << 16 choosing within the tier
 *     align   1 byte: 1 << (a % 27) (1 byte..64 MiB; at 64 MiB even a small
 *             block is a mapping of its own); a >= 232: a value that is not a
 *             power of two (odd_aligns[])
 *     k, n    1 byte each, meaning per op
 *
 *   op            arguments           what it does
 *   MALLOC        slot size           hak_malloc (an occupied slot is freed first, as by FREE)
 *   CALLOC        slot size k         hak_calloc(k % 8, size / (k % 8)) (k % 8 == 0: nmemb 0)
 *   REALLOC       slot size           hak_realloc (empty slot: from NULL; size 0: frees)
 *   REALLOC_REL   slot m d            hak_realloc relative to the block's size `old`, with
 *                                     d as a signed byte in the last three: m & 3 =
 *                                       0: old * (d & 7) / 4 + (d >> 3) - 16
 *                                       1: old + d * 16      2: old + d * 4096
 *                                       3: old * (1 + (m >> 2) % 4) + d * 4096
 *                                     (page steps: grow into the free run after a
 *                                     page run, exactly or by one page too many)
 *   REALLOCARRAY  slot size k         hak_reallocarray(p, k % 8, size / (k % 8))
 *   FREE          slot                hak_free
 *   FREE_SIZED    slot                hak_free_sized / hak_free_aligned_sized where the
 *                                     block's origin allows (C23), else hak_free
 *   POSIX_MEMALIGN slot align size    (bad alignments must give EINVAL)
 *   ALIGNED_ALLOC slot align size     (bad alignments must give NULL, EINVAL)
 *   MEMALIGN      slot align size     (any alignment: rounded up to a power of two)
 *   VALLOC        slot size k         hak_valloc (k even) or hak_pvalloc (k odd)
 *   USABLE        slot                hak_malloc_usable_size >= requested; from then on
 *                                     the harness owns (fills, checks) the usable bytes
 *   CHECK         slot                verify the block's pattern now
 *   GIVE          slot n k            hand the block to logical thread n (another
 *                                     thread), which checks it and keeps it in slot k,
 *                                     or frees it if that slot is taken: remote frees
 *   GIVE_RANGE    slot k n            GIVE slots slot..slot+k%32 to thread n
 *   FILL          slot k size         MALLOC size into slots slot..slot+k%32
 *   FILL_ALIGNED  slot k align size   the same with MEMALIGN (many huge mappings at once:
 *                                     the huge tier's table grows and probes)
 *   FREE_RANGE    slot k              FREE slots slot..slot+k%32
 *   BURST         k size n            1 + k allocations of one size (n & 4: calloc),
 *                                     all checked, then freed in order n & 3 (0 FIFO,
 *                                     1 LIFO, 2 odd then even, 3 every 7th from the
 *                                     middle); n & 8: the odd ones go to thread n >> 4
 *   ERRORS        k                   one error path (k % 14): impossible sizes,
 *                                     overflow, bad alignments must fail with the
 *                                     documented errno and leave blocks intact
 *   HAK_CHECK                         hak_check() on this thread's heap
 *   STATS         k                   hak_stats_json into a buffer of k * 97 % 5000
 *                                     bytes (0: NULL): returns the whole length,
 *                                     truncates and terminates like snprintf
 *   EXIT                              this thread's OS thread exits (its heap goes to
 *                                     the orphan list); a new thread runs its later ops
 *                                     with the same slot table (blocks now owned by an
 *                                     exited heap).  Thread 0 in lockstep mode is
 *                                     libFuzzer's thread and ignores it.
 *
 * THREADS
 *   Every logical thread has its own slot table and a mailbox that other
 *   threads GIVE blocks to; it takes its mailbox in before each of its ops.
 *   Lockstep: thread 0 is libFuzzer's own thread, threads 1..3 are started
 *   when first needed; the ops run one at a time in input order, each on its
 *   thread (runs of consecutive ops of one thread are one hand-over), so the
 *   allocator sees a deterministic interleaving of several heaps: a crash
 *   input replays the same way.  Concurrent: every logical thread is a new
 *   OS thread running its own ops as fast as it can, all at once (races
 *   between remote frees, flushes and slab reuse; not reproducible exactly).
 *   At the end every thread frees its table, takes its mailbox in, frees
 *   that and runs hak_check(); then libFuzzer's thread frees what is left
 *   (tables of exited threads, late mailboxes) and runs hak_check().
 *
 * FUZZ_OPS_TRACE=1 in the environment prints every op as it runs.
 *
 * CHECKS (any failure prints a message and calls abort())
 *   - every block: not NULL (the live total is bounded by LIVE_LIMIT, so
 *     hakmem has no excuse), aligned to 16 and to the requested alignment,
 *     hak_malloc_usable_size >= the requested size;
 *   - every block is filled with a pattern derived from its own seed (a
 *     per-allocation id) and offset: all of it up to FULL_MAX bytes, else the
 *     first and last 256 bytes and 64 bytes of at most ~8 pages spread over
 *     it (page faults, not the checks, would dominate otherwise); the
 *     pattern is verified before every free, realloc and hand-over and by
 *     CHECK, so overlapping blocks, blocks handed out twice and free-list
 *     writes into live blocks are caught;
 *   - calloc'd memory reads as zero (the same sampled bytes for big blocks);
 *   - realloc keeps min(old, new) bytes (old: requested, or usable after
 *     USABLE), also when it moves the block, grows in place or shrinks;
 *   - error paths return NULL / the error code with the right errno and do
 *     not touch the block;
 *   - hak_check() == 0 after every input, on every thread, and for HAK_CHECK.
 *
 * The harness is built with -fsanitize=fuzzer,address: ASan checks the
 * harness's own accesses (its tables, its pattern loops).  hakmem's memory
 * comes from mmap, which ASan does not poison, so ASan cannot see overflows
 * between hakmem blocks; the patterns and hak_check() are what catch those.
 * The allocator objects are built with -fsanitize=fuzzer-no-link (their
 * coverage guides the fuzzer) and -fsanitize=undefined, without ASan: see the
 * Makefile's fuzz flavors.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

#define MAX_THREADS   4
#define NSLOTS        256
#define MAX_OPS       4096
#define MAILBOX_CAP   1024
#define FULL_MAX      16384                       /* blocks checked in full */
#define LIVE_LIMIT    ((size_t)256 << 20)         /* live bytes of all threads */
#define KIB           ((size_t)1 << 10)
#define MIB           ((size_t)1 << 20)
#define RUN_MAX       (32 * MIB)                  /* hakmem's default page-run bound */

/* ------------------------------------------------------------ failures */

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz_ops: FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* ------------------------------------------------------------ patterns */

/* The pattern loops run over every byte of hakmem's blocks: without
 * coverage instrumentation (their branches say nothing about the allocator
 * and comparison tracing made them most of the run time) nor ASan checks
 * (the bytes are in mmap'd memory, which ASan does not watch anyway). */
#if defined(__clang__)
#define PATTERN_FN static __attribute__((no_sanitize("coverage", "address")))
#else
#define PATTERN_FN static
#endif
#define PATTERN_INLINE PATTERN_FN inline __attribute__((always_inline))

static inline uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The pattern word at byte offset `off` (a multiple of 8) of a block. */
PATTERN_INLINE uint64_t pat_word(uint64_t seed, size_t off)
{
    uint64_t x = seed ^ ((uint64_t)off * 0xD6E8FEB86659FD93ull);
    x ^= x >> 32;
    x *= 0x9FB21C651E98DF25ull;
    return x ^ (x >> 29);
}

PATTERN_INLINE unsigned char pat_byte(uint64_t seed, size_t off)
{
    return (unsigned char)(pat_word(seed, off & ~(size_t)7) >> ((off & 7) * 8));
}

PATTERN_FN void fill_range(unsigned char *p, uint64_t seed, size_t a, size_t b)
{
    for (; a < b && (a & 7); a++) p[a] = pat_byte(seed, a);
    for (; a + 8 <= b; a += 8) {
        uint64_t w = pat_word(seed, a);
        memcpy(p + a, &w, 8);
    }
    for (; a < b; a++) p[a] = pat_byte(seed, a);
}

/* Offset of the first byte of [a, b) that is not the pattern, or SIZE_MAX. */
PATTERN_FN size_t check_range(const unsigned char *p, uint64_t seed, size_t a, size_t b)
{
    for (; a < b && (a & 7); a++)
        if (p[a] != pat_byte(seed, a)) return a;
    for (; a + 8 <= b; a += 8) {
        uint64_t w;
        memcpy(&w, p + a, 8);
        if (w != pat_word(seed, a)) break;
    }
    for (; a < b; a++)
        if (p[a] != pat_byte(seed, a)) return a;
    return SIZE_MAX;
}

PATTERN_FN size_t check_zero(const unsigned char *p, size_t a, size_t b)
{
    for (; a < b; a++)
        if (p[a] != 0) return a;
    return SIZE_MAX;
}

/* The bytes of a block of `len` bytes that carry the pattern: all of it up
 * to FULL_MAX, else the first and last 256 bytes and 64 bytes at the start
 * of every `stride`-th page (at most ~8 of them, where they fall depends on
 * the seed).  Returns the number of ranges (at most MAX_RANGES). */
#define MAX_RANGES 40
typedef struct { size_t a, b; } range_t;

static unsigned layout(size_t len, uint64_t seed, range_t *r)
{
    if (len <= FULL_MAX) {
        r[0] = (range_t){ 0, len };
        return 1;
    }
    unsigned n = 0;
    r[n++] = (range_t){ 0, 256 };
    size_t pages = (len + 4095) >> 12, stride = 1;
    while (pages / stride > 8) stride <<= 1;
    size_t k = (seed >> 17) & (stride - 1);
    if (k == 0) k = stride;
    for (; k < pages; k += stride) {
        size_t a = k << 12, b = a + 64 < len ? a + 64 : len;
        r[n++] = (range_t){ a, b };
    }
    r[n++] = (range_t){ len - 256, len };
    return n;
}

/* ------------------------------------------------------------ blocks */

enum { K_MALLOC, K_ALIGNED, K_OTHER };   /* which sized free C23 allows */

typedef struct {
    unsigned char *p;       /* NULL: empty */
    uint64_t seed;
    size_t len;             /* bytes that carry the pattern */
    size_t req;             /* size the block was requested with */
    size_t align;           /* requested alignment (aligned_alloc: for free_aligned_sized) */
    uint8_t kind;
    uint8_t hint;           /* in a mailbox: the slot the receiver should use */
} block_t;

static _Atomic size_t live_bytes;

/* Reserve n bytes of the live budget; 0 if that would pass LIVE_LIMIT. */
static int budget_take(size_t n)
{
    if (n > LIVE_LIMIT) return 0;
    size_t old = atomic_fetch_add(&live_bytes, n);
    if (old + n > LIVE_LIMIT) {
        atomic_fetch_sub(&live_bytes, n);
        return 0;
    }
    return 1;
}

static void budget_give(size_t n) { atomic_fetch_sub(&live_bytes, n); }

static void block_fill(const block_t *b)
{
    range_t r[MAX_RANGES];
    unsigned n = layout(b->len, b->seed, r);
    for (unsigned i = 0; i < n; i++) fill_range(b->p, b->seed, r[i].a, r[i].b);
}

/* Verify the pattern of b's layout, limited to the first `limit` bytes,
 * reading it at q (b->p, or where realloc moved it). */
static void block_verify_at(const block_t *b, const unsigned char *q, size_t limit, const char *when)
{
    range_t r[MAX_RANGES];
    unsigned n = layout(b->len, b->seed, r);
    for (unsigned i = 0; i < n; i++) {
        size_t hi = r[i].b < limit ? r[i].b : limit;
        if (r[i].a >= hi) continue;
        size_t bad = check_range(q, b->seed, r[i].a, hi);
        if (bad != SIZE_MAX)
            fail("%s: block %p (now at %p) of %zu bytes (requested %zu): byte %zu is 0x%02x, "
                 "expected 0x%02x (corrupted or overlapping another block)",
                 when, (void *)b->p, (const void *)q, b->len, b->req, bad, q[bad],
                 pat_byte(b->seed, bad));
    }
}

static void block_verify(const block_t *b, const char *when) { block_verify_at(b, b->p, SIZE_MAX, when); }

static void check_zeroed(const block_t *b, const char *fn)
{
    range_t r[MAX_RANGES];
    unsigned n = layout(b->len, b->seed, r);
    for (unsigned i = 0; i < n; i++) {
        size_t bad = check_zero(b->p, r[i].a, r[i].b);
        if (bad != SIZE_MAX)
            fail("%s(%zu) = %p: byte %zu is 0x%02x, not zero", fn, b->req, (void *)b->p, bad, b->p[bad]);
    }
}

/* A new block from the allocator: check it, then pattern it. */
static void block_new(block_t *b, void *p, uint64_t seed, size_t req, size_t align, int kind,
                      int zeroed, const char *fn)
{
    if (p == NULL) fail("%s(%zu, align %zu) returned NULL (errno %d) within the live budget", fn, req, align, errno);
    size_t want = align > 16 ? align : 16;
    if ((uintptr_t)p & (want - 1)) fail("%s(%zu) = %p: not aligned to %zu", fn, req, p, want);
    size_t u = hak_malloc_usable_size(p);
    if (u < req) fail("%s(%zu) = %p: usable size %zu is less than requested", fn, req, p, u);
    b->p = p;
    b->seed = seed;
    b->len = req;
    b->req = req;
    b->align = align;
    b->kind = (uint8_t)kind;
    if (zeroed) check_zeroed(b, fn);
    block_fill(b);
}

/* ------------------------------------------------------------ threads and ops */

enum {
    OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_REALLOC_REL, OP_REALLOCARRAY, OP_FREE, OP_FREE_SIZED,
    OP_POSIX_MEMALIGN, OP_ALIGNED_ALLOC, OP_MEMALIGN, OP_VALLOC, OP_USABLE, OP_CHECK, OP_GIVE,
    OP_GIVE_RANGE, OP_FILL, OP_FREE_RANGE, OP_BURST, OP_ERRORS, OP_HAK_CHECK, OP_EXIT, OP_STATS, OP_FILL_ALIGNED, NUM_OPS
};

/* Argument bytes per op. */
static const uint8_t op_args[NUM_OPS] = {
    [OP_MALLOC] = 4, [OP_CALLOC] = 5, [OP_REALLOC] = 4, [OP_REALLOC_REL] = 3,
    [OP_REALLOCARRAY] = 5, [OP_FREE] = 1, [OP_FREE_SIZED] = 1, [OP_POSIX_MEMALIGN] = 5,
    [OP_ALIGNED_ALLOC] = 5, [OP_MEMALIGN] = 5, [OP_VALLOC] = 5, [OP_USABLE] = 1, [OP_CHECK] = 1,
    [OP_GIVE] = 3, [OP_GIVE_RANGE] = 3, [OP_FILL] = 5, [OP_FREE_RANGE] = 2, [OP_BURST] = 5,
    [OP_ERRORS] = 1, [OP_HAK_CHECK] = 0, [OP_EXIT] = 0, [OP_STATS] = 1,
    [OP_FILL_ALIGNED] = 6,
};

/* Opcode byte (low 6 bits) -> op: the common ones get more codes. */
static const uint8_t op_table[64] = {
    OP_MALLOC, OP_MALLOC, OP_MALLOC, OP_MALLOC, OP_MALLOC, OP_MALLOC, OP_MALLOC, OP_MALLOC,
    OP_FREE, OP_FREE, OP_FREE, OP_FREE, OP_FREE, OP_FREE, OP_FREE_SIZED, OP_FREE_SIZED,
    OP_CALLOC, OP_CALLOC, OP_CALLOC, OP_REALLOC, OP_REALLOC, OP_REALLOC, OP_REALLOC, OP_REALLOC_REL,
    OP_REALLOC_REL, OP_REALLOC_REL, OP_REALLOCARRAY, OP_POSIX_MEMALIGN, OP_POSIX_MEMALIGN,
    OP_ALIGNED_ALLOC, OP_ALIGNED_ALLOC, OP_MEMALIGN, OP_MEMALIGN, OP_VALLOC, OP_USABLE, OP_USABLE,
    OP_CHECK, OP_GIVE, OP_GIVE, OP_GIVE, OP_GIVE, OP_GIVE_RANGE, OP_GIVE_RANGE, OP_FILL, OP_FILL,
    OP_FILL, OP_FREE_RANGE, OP_FREE_RANGE, OP_BURST, OP_BURST, OP_BURST, OP_BURST, OP_ERRORS,
    OP_ERRORS, OP_HAK_CHECK, OP_EXIT, OP_EXIT, OP_MALLOC, OP_FILL_ALIGNED, OP_FREE, OP_FREE,
    OP_REALLOC, OP_GIVE, OP_STATS,
};

static const char *const op_names[NUM_OPS] = {
    "MALLOC", "CALLOC", "REALLOC", "REALLOC_REL", "REALLOCARRAY", "FREE", "FREE_SIZED",
    "POSIX_MEMALIGN", "ALIGNED_ALLOC", "MEMALIGN", "VALLOC", "USABLE", "CHECK", "GIVE",
    "GIVE_RANGE", "FILL", "FREE_RANGE", "BURST", "ERRORS", "HAK_CHECK", "EXIT", "STATS",
    "FILL_ALIGNED",
};

typedef struct {
    uint8_t op, thread;
    uint8_t a[6];
} op_t;

static int trace;                   /* FUZZ_OPS_TRACE set: print every op */

typedef struct thread_ctx {
    unsigned id;
    block_t slots[NSLOTS];
    uint64_t nalloc;                /* seeds: per logical thread, per allocation */
    /* mailbox: blocks other threads gave us */
    pthread_mutex_t mu;
    block_t box[MAILBOX_CAP];
    unsigned nbox;
    _Atomic unsigned pending;
    /* the OS thread running this logical thread */
    pthread_t th;
    int alive;
    /* lockstep: the command from the driver; concurrent: where to go on */
    int cmd;                        /* CMD_* */
    size_t from, to;                /* ops [from, to) to run */
    int state;                      /* concurrent: ST_* */
} thread_ctx_t;

enum { CMD_NONE, CMD_RUN, CMD_EXIT, CMD_FINISH };
enum { ST_RUNNING, ST_EXITED, ST_DONE };

static struct {
    unsigned nthreads;
    int concurrent;
    op_t ops[MAX_OPS];
    size_t nops;
    thread_ctx_t t[MAX_THREADS];
    pthread_mutex_t mu;             /* lockstep commands, concurrent states */
    pthread_cond_t cv;
} G = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static uint64_t next_seed(thread_ctx_t *c)
{
    return mix64(((uint64_t)c->id << 56) ^ ++c->nalloc ^ 0x5EEDull << 40);
}

/* ------------------------------------------------------------ decoding */

static const size_t edge_sizes[] = {
    0, 1, 8, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 127, 128, 129, 255, 256, 257,
    511, 512, 513, 1023, 1024, 1025, 1280, 2047, 2048, 2049, 4095, 4096, 4097,
    8191, 8192, 8193, 16383, 16384, 16385, 32767, 32768, 32769, 65535, 65536, 65537,
    131071, 131072, 131073, 196608, 229376, 229377, 262143, 262144, 262145, 266240,
    266241, 524288, 1048576, 1048577, 2097152 - 4096, 2097152, 2097153,
    16 * MIB, RUN_MAX - 4096, RUN_MAX - 1, RUN_MAX, RUN_MAX + 1, RUN_MAX + 4096,
    40 * MIB, 64 * MIB,
};
#define NEDGE (sizeof edge_sizes / sizeof edge_sizes[0])

static size_t decode_size(const uint8_t *a)
{
    uint32_t v = a[1] | (uint32_t)a[2] << 8 | (uint32_t)(a[0] >> 3) << 16;
    switch (a[0] & 7) {
    case 0:
    case 1: return 1 + v % 1024;
    case 2: return 1 + v % (16 * KIB);
    case 3: return 1025 + v % (256 * KIB - 1024);
    case 4: return (65 + (size_t)(v >> 5) % 8127) * 4096 - (v & 31) * 128;
    case 5: return RUN_MAX + 1 + ((size_t)v * 64) % (128 * MIB);
    case 6: return edge_sizes[v % NEDGE];
    default: {
        size_t s = (size_t)1 << (v % 27);
        long d = (long)((v >> 5) & 15) - 8;
        return d < 0 && (size_t)-d > s ? 0 : s + (size_t)d;
    }
    }
}

static const size_t odd_aligns[] = { 3, 24, 48, 100, 4095, 4097, 12288, 65535, 65537, 196608, 3 * MIB, 0 };

static size_t decode_align(uint8_t a)
{
    if (a >= 232) return odd_aligns[(a - 232) % (sizeof odd_aligns / sizeof odd_aligns[0])];
    return (size_t)1 << (a % 27);
}

static int is_pow2(size_t a) { return a && !(a & (a - 1)); }

/* ------------------------------------------------------------ block ops */

/* Free b, checking its pattern first; `how` 1 uses the sized frees C23
 * allows for the block's origin. */
static void block_free(block_t *b, int how)
{
    if (!b->p) return;
    block_verify(b, "before free");
    if (how && b->kind == K_MALLOC) hak_free_sized(b->p, b->req);
    else if (how && b->kind == K_ALIGNED) hak_free_aligned_sized(b->p, b->align, b->req);
    else hak_free(b->p);
    budget_give(b->len);
    b->p = NULL;
}

static void op_malloc(thread_ctx_t *c, block_t *b, size_t n)
{
    block_free(b, 0);
    if (!budget_take(n)) return;
    block_new(b, hak_malloc(n), next_seed(c), n, 0, K_MALLOC, 0, "malloc");
}

static void op_calloc(thread_ctx_t *c, block_t *b, size_t total, uint8_t k)
{
    size_t nmemb = k % 8, m = nmemb ? total / nmemb : total;
    size_t n = nmemb * m;
    block_free(b, 0);
    if (!budget_take(n)) return;
    block_new(b, hak_calloc(nmemb, m), next_seed(c), n, 0, K_MALLOC, 1, "calloc");
}

/* realloc (array: reallocarray of nmemb x m) of b to n = nmemb * m bytes. */
static void op_realloc(thread_ctx_t *c, block_t *b, size_t nmemb, size_t m, int array)
{
    size_t n = nmemb * m;
    const char *fn = array ? "reallocarray" : "realloc";
    if (!b->p) {
        if (!budget_take(n)) return;
        void *p = array ? hak_reallocarray(NULL, nmemb, m) : hak_realloc(NULL, n);
        block_new(b, p, next_seed(c), n, 0, K_MALLOC, 0, fn);
        return;
    }
    block_verify(b, "before realloc");
    if (n > b->len && !budget_take(n - b->len)) return;
    void *p = array ? hak_reallocarray(b->p, nmemb, m) : hak_realloc(b->p, n);
    if (n == 0) {
        /* glibc's realloc(p, 0): frees p, returns NULL */
        if (p != NULL) fail("%s(%p, 0) = %p, expected NULL (the block freed)", fn, (void *)b->p, p);
        budget_give(b->len);
        b->p = NULL;
        return;
    }
    if (p == NULL) fail("%s(%p, %zu) returned NULL within the live budget", fn, (void *)b->p, n);
    if ((uintptr_t)p & 15) fail("%s(%zu) = %p: not aligned to 16", fn, n, p);
    size_t u = hak_malloc_usable_size(p);
    if (u < n) fail("%s(%p, %zu) = %p: usable size %zu is less than requested", fn, (void *)b->p, n, p, u);
    /* the old contents, up to the smaller size, moved along */
    block_verify_at(b, p, n, "after realloc");
    if (n < b->len) budget_give(b->len - n);
    b->p = p;
    b->len = n;
    b->req = n;
    b->align = 0;
    b->kind = K_MALLOC;
    block_fill(b);
}

/* The aligned allocations: which = 0 posix_memalign, 1 aligned_alloc, 2 memalign. */
static void op_aligned(thread_ctx_t *c, block_t *b, int which, size_t align, size_t n)
{
    static const char *const names[] = { "posix_memalign", "aligned_alloc", "memalign" };
    block_free(b, 0);
    int valid = which == 0 ? is_pow2(align) && align % sizeof(void *) == 0
              : which == 1 ? is_pow2(align) : 1;
    size_t eff = align;
    if (which == 2 && !is_pow2(align)) {        /* glibc: the next power of two */
        eff = 16;
        while (eff < align) eff <<= 1;
    }
    if (valid && !budget_take(n)) return;
    void *p = (void *)&p;                        /* must stay untouched on EINVAL */
    errno = 0;
    if (which == 0) {
        int rc = hak_posix_memalign(&p, align, n);
        if (!valid) {
            if (rc != EINVAL || p != (void *)&p)
                fail("posix_memalign(align %zu) = %d (out %s), expected EINVAL and out untouched", align, rc,
                     p != (void *)&p ? "written" : "untouched");
            return;
        }
        if (rc != 0) fail("posix_memalign(align %zu, %zu) = %d", align, n, rc);
    } else {
        p = which == 1 ? hak_aligned_alloc(align, n) : hak_memalign(align, n);
        if (!valid) {
            if (p != NULL || errno != EINVAL)
                fail("aligned_alloc(align %zu, %zu) = %p errno %d, expected NULL and EINVAL", align, n, p, errno);
            return;
        }
    }
    block_new(b, p, next_seed(c), n, eff, which == 1 ? K_ALIGNED : K_OTHER, 0, names[which]);
}

static void op_valloc(thread_ctx_t *c, block_t *b, size_t n, int pv)
{
    size_t req = n;
    block_free(b, 0);
    if (pv) req = n ? (n + 4095) & ~(size_t)4095 : 4096;   /* pvalloc rounds up */
    if (!budget_take(req)) return;
    block_new(b, pv ? hak_pvalloc(n) : hak_valloc(n), next_seed(c), req, 4096, K_OTHER, 0,
              pv ? "pvalloc" : "valloc");
}

static void op_usable(block_t *b)
{
    if (!b->p) {
        if (hak_malloc_usable_size(NULL) != 0) fail("malloc_usable_size(NULL) != 0");
        return;
    }
    size_t u = hak_malloc_usable_size(b->p);
    if (u < b->len) fail("malloc_usable_size(%p) = %zu, less than %zu", (void *)b->p, u, b->len);
    block_verify(b, "malloc_usable_size");
    if (u > b->len && budget_take(u - b->len)) {
        b->len = u;                 /* the usable bytes are ours to use */
        block_fill(b);
    }
}

/* Hand b over to thread `to`'s mailbox (or free it here if that is full). */
static void give(thread_ctx_t *c, block_t *b, unsigned to, uint8_t hint)
{
    if (!b->p) return;
    thread_ctx_t *d = &G.t[to];
    if (d == c) {
        block_free(b, 1);
        return;
    }
    block_verify(b, "before hand-over");
    pthread_mutex_lock(&d->mu);
    if (d->nbox < MAILBOX_CAP) {
        b->hint = hint;
        d->box[d->nbox++] = *b;
        atomic_store(&d->pending, d->nbox);
        b->p = NULL;
    }
    pthread_mutex_unlock(&d->mu);
    block_free(b, 0);              /* mailbox full: no-op if it went */
}

/* Take the mailbox in: check each block, keep it in its hinted slot if that
 * is free, else free it (a remote free when another thread allocated it). */
static void take_mail(thread_ctx_t *c)
{
    if (atomic_load_explicit(&c->pending, memory_order_relaxed) == 0) return;
    block_t got[MAILBOX_CAP];
    pthread_mutex_lock(&c->mu);
    unsigned n = c->nbox;
    memcpy(got, c->box, n * sizeof got[0]);
    c->nbox = 0;
    atomic_store(&c->pending, 0);
    pthread_mutex_unlock(&c->mu);
    for (unsigned i = 0; i < n; i++) {
        block_verify(&got[i], "handed over");
        block_t *s = &c->slots[got[i].hint];
        if (s->p) block_free(&got[i], got[i].hint & 1);
        else *s = got[i];
    }
}

static unsigned other_thread(thread_ctx_t *c, uint8_t n)
{
    unsigned to = n % G.nthreads;
    if (to == c->id) to = (to + 1) % G.nthreads;
    return to;
}

/* BURST: 1 + k blocks of one size, all live at once, checked, then freed in
 * the order mode & 3 (n & 8: odd ones handed to another thread). */
static void op_burst(thread_ctx_t *c, uint8_t k, size_t n, uint8_t mode)
{
    block_t tmp[256];
    unsigned count = 1u + k, got = 0;
    for (; got < count && budget_take(n); got++) {
        if (mode & 4) block_new(&tmp[got], hak_calloc(1, n), next_seed(c), n, 0, K_MALLOC, 1, "calloc");
        else block_new(&tmp[got], hak_malloc(n), next_seed(c), n, 0, K_MALLOC, 0, "malloc");
    }
    for (unsigned i = 0; i < got; i++) block_verify(&tmp[i], "burst");
    unsigned to = (mode & 8) && G.nthreads > 1 ? other_thread(c, (uint8_t)(mode >> 4)) : c->id;
    for (unsigned j = 0; j < got; j++) {
        unsigned i;
        switch (mode & 3) {
        case 0: i = j; break;
        case 1: i = got - 1 - j; break;
        case 2: i = j < got / 2 ? 2 * j + 1 : 2 * (j - got / 2); break;
        default: i = (got / 2 + 7 * j) % got; break;
        }
        if (!tmp[i].p) {                /* case 3 may repeat when 7 divides got */
            for (i = 0; !tmp[i].p; i++) {}
        }
        if ((i & 1) && to != c->id) give(c, &tmp[i], to, (uint8_t)(mode + i));
        else block_free(&tmp[i], i & 2);
    }
}

static void hak_check_or_die(const char *when)
{
    unsigned bad = hak_check();
    if (bad) fail("hak_check() found %u problem(s) %s", bad, when);
}

/* ERRORS: an error path; a live block of the thread, if any, must be intact
 * after a failed realloc. */
static void op_errors(thread_ctx_t *c, uint8_t k)
{
    block_t *b = NULL;
    for (unsigned i = 0; i < NSLOTS && !b; i++)
        if (c->slots[(k + i) % NSLOTS].p) b = &c->slots[(k + i) % NSLOTS];
    void *p, *out = (void *)&out;
    int rc;
    errno = 0;
    switch (k % 14) {
    case 0:
        p = hak_malloc(SIZE_MAX);
        if (p || errno != ENOMEM) fail("malloc(SIZE_MAX) = %p errno %d", p, errno);
        break;
    case 1:
        p = hak_malloc((size_t)PTRDIFF_MAX + 1);
        if (p || errno != ENOMEM) fail("malloc(PTRDIFF_MAX + 1) = %p errno %d", p, errno);
        break;
    case 2:
        p = hak_calloc(SIZE_MAX / 2 + 1, 2);
        if (p || errno != ENOMEM) fail("calloc overflow = %p errno %d", p, errno);
        break;
    case 3:
        p = hak_calloc((size_t)1 << 32, (size_t)1 << 32);
        if (p || errno != ENOMEM) fail("calloc(2^32, 2^32) = %p errno %d", p, errno);
        break;
    case 4:
        p = hak_aligned_alloc(0, 16);
        if (p || errno != EINVAL) fail("aligned_alloc(0, 16) = %p errno %d", p, errno);
        break;
    case 5:
        rc = hak_posix_memalign(&out, 4, 16);
        if (rc != EINVAL || out != (void *)&out) fail("posix_memalign(4) = %d", rc);
        break;
    case 6:
        rc = hak_posix_memalign(&out, 64, SIZE_MAX - 4096);
        if (rc != ENOMEM || out != (void *)&out) fail("posix_memalign(64, huge) = %d", rc);
        break;
    case 7:
        p = hak_memalign((size_t)1 << 63, 16);
        if (p || errno != EINVAL) fail("memalign(2^63, 16) = %p errno %d", p, errno);
        break;
    case 8:
        p = hak_pvalloc(SIZE_MAX);
        if (p || errno != ENOMEM) fail("pvalloc(SIZE_MAX) = %p errno %d", p, errno);
        break;
    case 9:
        p = hak_aligned_alloc((size_t)1 << 41, 100);
        if (p || errno != ENOMEM) fail("aligned_alloc(2^41, 100) = %p errno %d", p, errno);
        break;
    case 10:
        hak_free(NULL);
        hak_free_sized(NULL, 0);
        hak_free_aligned_sized(NULL, 64, 0);
        if (hak_malloc_usable_size(NULL) != 0) fail("malloc_usable_size(NULL) != 0");
        break;
    case 11:
    case 12:
        if (!b) break;
        p = k % 14 == 11 ? hak_realloc(b->p, SIZE_MAX) : hak_reallocarray(b->p, SIZE_MAX / 4, 8);
        if (p || errno != ENOMEM) fail("realloc(%p, impossible) = %p errno %d", (void *)b->p, p, errno);
        block_verify(b, "after a failed realloc");
        break;
    default:
        if (!b) break;
        p = hak_realloc(b->p, (size_t)PTRDIFF_MAX);
        if (p || errno != ENOMEM) fail("realloc(%p, PTRDIFF_MAX) = %p errno %d", (void *)b->p, p, errno);
        block_verify(b, "after a failed realloc");
        break;
    }
}

/* hak_stats_json into a buffer of `size` bytes: snprintf's contract. */
static size_t stats_json(char *buf, size_t size)
{
    if (size) memset(buf, 0x55, size);
    size_t n = hak_stats_json(size ? buf : NULL, size);
    if (n < 64) fail("hak_stats_json returned %zu", n);
    if (size == 0) return n;
    size_t len = strnlen(buf, size);
    if (len == size) fail("hak_stats_json(%zu bytes) did not terminate the text", size);
    if (len != (n < size ? n : size - 1))
        fail("hak_stats_json(%zu bytes) wrote %zu characters, returned %zu", size, len, n);
    if (strncmp(buf, "{\"build\":", len < 9 ? len : 9) != 0) fail("hak_stats_json: not JSON: %.40s", buf);
    if (n < size && strcmp(buf + n - 2, "}\n") != 0) fail("hak_stats_json: text does not end in }");
    return n;
}

/* The value of "key":N in JSON text, or -1. */
static long long json_value(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static void run_op(thread_ctx_t *c, const op_t *o)
{
    const uint8_t *a = o->a;
    block_t *b = &c->slots[a[0]];
    take_mail(c);
    if (trace)
        fprintf(stderr, "fuzz_ops: [thread %u] %-14s %3u %3u %3u %3u %3u  (slot %p, %zu bytes)\n",
                c->id, op_names[o->op], a[0], a[1], a[2], a[3], a[4], (void *)b->p, b->p ? b->len : 0);
    switch (o->op) {
    case OP_MALLOC: op_malloc(c, b, decode_size(a + 1)); break;
    case OP_CALLOC: op_calloc(c, b, decode_size(a + 1), a[4]); break;
    case OP_REALLOC: op_realloc(c, b, 1, decode_size(a + 1), 0); break;
    case OP_REALLOC_REL: {
        long old = b->p ? (long)b->len : 0, d = (int8_t)a[2], n;
        switch (a[1] & 3) {
        case 0: n = old * (a[2] & 7) / 4 + (a[2] >> 3) - 16; break;
        case 1: n = old + d * 16; break;
        case 2: n = old + d * 4096; break;
        default: n = old * (1 + (a[1] >> 2) % 4) + d * 4096; break;
        }
        op_realloc(c, b, 1, n < 0 ? 0 : (size_t)n, 0);
        break;
    }
    case OP_REALLOCARRAY: {
        size_t total = decode_size(a + 1), k = a[4] % 8;
        op_realloc(c, b, k, k ? total / k : total, 1);
        break;
    }
    case OP_FREE: block_free(b, 0); break;
    case OP_FREE_SIZED: block_free(b, 1); break;
    case OP_POSIX_MEMALIGN: op_aligned(c, b, 0, decode_align(a[1]), decode_size(a + 2)); break;
    case OP_ALIGNED_ALLOC: op_aligned(c, b, 1, decode_align(a[1]), decode_size(a + 2)); break;
    case OP_MEMALIGN: op_aligned(c, b, 2, decode_align(a[1]), decode_size(a + 2)); break;
    case OP_VALLOC: op_valloc(c, b, decode_size(a + 1), a[4] & 1); break;
    case OP_USABLE: op_usable(b); break;
    case OP_CHECK: if (b->p) block_verify(b, "check"); break;
    case OP_GIVE: give(c, b, other_thread(c, a[1]), a[2]); break;
    case OP_GIVE_RANGE: {
        unsigned to = other_thread(c, a[2]);
        for (unsigned i = 0; i <= a[1] % 32u; i++)
            give(c, &c->slots[(a[0] + i) % NSLOTS], to, (uint8_t)(a[0] + i));
        break;
    }
    case OP_FILL: {
        size_t n = decode_size(a + 2);
        for (unsigned i = 0; i <= a[1] % 32u; i++) op_malloc(c, &c->slots[(a[0] + i) % NSLOTS], n);
        break;
    }
    case OP_FILL_ALIGNED: {
        size_t al = decode_align(a[2]), n = decode_size(a + 3);
        for (unsigned i = 0; i <= a[1] % 32u; i++) op_aligned(c, &c->slots[(a[0] + i) % NSLOTS], 2, al, n);
        break;
    }
    case OP_FREE_RANGE:
        for (unsigned i = 0; i <= a[1] % 32u; i++) block_free(&c->slots[(a[0] + i) % NSLOTS], i & 1);
        break;
    case OP_BURST: op_burst(c, a[0], decode_size(a + 1), a[4]); break;
    case OP_ERRORS: op_errors(c, a[0]); break;
    case OP_HAK_CHECK: hak_check_or_die("(HAK_CHECK op)"); break;
    case OP_STATS: {
        static __thread char buf[5000];
        stats_json(buf, (size_t)a[0] * 97 % sizeof buf);
        break;
    }
    default: break;                 /* OP_EXIT: handled by the drivers */
    }
}

/* Everything of logical thread c freed (table, then mailbox), and its heap
 * checked: run on c's OS thread at its end. */
static void finish(thread_ctx_t *c, int check)
{
    take_mail(c);
    for (unsigned i = 0; i < NSLOTS; i++) block_free(&c->slots[i], i & 1);
    take_mail(c);
    for (unsigned i = 0; i < NSLOTS; i++) block_free(&c->slots[i], 0);
    if (check) hak_check_or_die("at the end of a thread");
}

/* ------------------------------------------------------------ drivers */

static void *worker_main(void *arg);

static void spawn(thread_ctx_t *c)
{
    if (pthread_create(&c->th, NULL, worker_main, c) != 0) fail("pthread_create failed");
    c->alive = 1;
}

static void reap(thread_ctx_t *c)
{
    pthread_join(c->th, NULL);
    c->alive = 0;
}

/* Lockstep: wait for the driver's commands. */
static void *lockstep_worker(thread_ctx_t *c)
{
    for (;;) {
        pthread_mutex_lock(&G.mu);
        while (c->cmd == CMD_NONE) pthread_cond_wait(&G.cv, &G.mu);
        int cmd = c->cmd;
        size_t from = c->from, to = c->to;
        pthread_mutex_unlock(&G.mu);
        if (cmd == CMD_RUN)
            for (size_t i = from; i < to; i++) run_op(c, &G.ops[i]);
        else if (cmd == CMD_FINISH)
            finish(c, 1);
        pthread_mutex_lock(&G.mu);
        c->cmd = CMD_NONE;
        pthread_cond_broadcast(&G.cv);
        pthread_mutex_unlock(&G.mu);
        if (cmd != CMD_RUN) return NULL;
    }
}

static void lockstep_command(thread_ctx_t *c, int cmd, size_t from, size_t to)
{
    if (!c->alive) spawn(c);
    pthread_mutex_lock(&G.mu);
    c->cmd = cmd;
    c->from = from;
    c->to = to;
    pthread_cond_broadcast(&G.cv);
    while (c->cmd != CMD_NONE) pthread_cond_wait(&G.cv, &G.mu);
    pthread_mutex_unlock(&G.mu);
    if (cmd != CMD_RUN) reap(c);
}

static void run_lockstep(void)
{
    size_t i = 0;
    while (i < G.nops) {
        unsigned t = G.ops[i].thread;
        thread_ctx_t *c = &G.t[t];
        size_t j = i;
        while (j < G.nops && G.ops[j].thread == t && G.ops[j].op != OP_EXIT) j++;
        if (j > i) {
            if (t == 0)
                for (size_t k = i; k < j; k++) run_op(c, &G.ops[k]);
            else
                lockstep_command(c, CMD_RUN, i, j);
        }
        if (j < G.nops && G.ops[j].op == OP_EXIT && G.ops[j].thread == t) {
            if (t != 0 && c->alive) lockstep_command(c, CMD_EXIT, 0, 0);
            j++;
        }
        i = j;
    }
    for (unsigned t = 1; t < G.nthreads; t++)
        if (G.t[t].alive) lockstep_command(&G.t[t], CMD_FINISH, 0, 0);
}

/* Concurrent: run this thread's ops from c->from; at an EXIT op stop, and
 * the driver starts a new thread that goes on after it. */
static void *concurrent_worker(thread_ctx_t *c)
{
    size_t i = c->from;
    int exited = 0;
    for (; i < G.nops; i++) {
        const op_t *o = &G.ops[i];
        if (o->thread != c->id) continue;
        if (o->op == OP_EXIT) {
            exited = 1;
            i++;
            break;
        }
        run_op(c, o);
    }
    if (!exited) finish(c, 1);
    pthread_mutex_lock(&G.mu);
    c->from = i;
    c->state = exited ? ST_EXITED : ST_DONE;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
    return NULL;
}

static void run_concurrent(void)
{
    unsigned running = G.nthreads;
    for (unsigned t = 0; t < G.nthreads; t++) {
        G.t[t].from = 0;
        G.t[t].state = ST_RUNNING;
        spawn(&G.t[t]);
    }
    pthread_mutex_lock(&G.mu);
    while (running) {
        int any = 0;
        for (unsigned t = 0; t < G.nthreads; t++) {
            thread_ctx_t *c = &G.t[t];
            if (!c->alive || c->state == ST_RUNNING) continue;
            any = 1;
            pthread_mutex_unlock(&G.mu);
            reap(c);
            pthread_mutex_lock(&G.mu);
            if (c->state == ST_EXITED) {
                c->state = ST_RUNNING;
                spawn(c);
            } else {
                running--;
            }
        }
        if (!any) pthread_cond_wait(&G.cv, &G.mu);
    }
    pthread_mutex_unlock(&G.mu);
}

static void *worker_main(void *arg)
{
    thread_ctx_t *c = arg;
    return G.concurrent ? concurrent_worker(c) : lockstep_worker(c);
}

/* ------------------------------------------------------------ entry */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    trace = getenv("FUZZ_OPS_TRACE") != NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    G.nthreads = 1u + (data[0] & 3);
    G.concurrent = (data[0] >> 2) & 1;
    G.nops = 0;
    for (size_t pos = 1; pos < size && G.nops < MAX_OPS;) {
        uint8_t b = data[pos++];
        op_t *o = &G.ops[G.nops++];
        o->op = op_table[b & 63];
        o->thread = (uint8_t)((b >> 6) % G.nthreads);
        memset(o->a, 0, sizeof o->a);
        for (unsigned k = 0; k < op_args[o->op]; k++)
            o->a[k] = pos < size ? data[pos++] : 0;
    }
    for (unsigned t = 0; t < MAX_THREADS; t++) {
        thread_ctx_t *c = &G.t[t];
        c->id = t;
        c->nbox = 0;
        c->pending = 0;
        c->alive = 0;
        c->cmd = CMD_NONE;
        pthread_mutex_init(&c->mu, NULL);
    }

    if (G.concurrent) run_concurrent();
    else run_lockstep();

    /* Only this thread is left: what the others left behind (tables of
     * threads that exited, blocks handed to threads that had finished). */
    for (unsigned t = 0; t < G.nthreads; t++) finish(&G.t[t], 0);
    hak_check_or_die("at the end of the input");
    /* Nothing is live: the large tier's own counts must say so. */
    static char text[16384];
    if (stats_json(text, sizeof text) >= sizeof text) fail("statistics longer than %zu bytes", sizeof text);
    long long nlive = json_value(text, "large_live"), blive = json_value(text, "large_live_bytes");
    if (nlive != 0 || blive != 0)
        fail("everything was freed, but the statistics count %lld large blocks (%lld bytes) live", nlive, blive);
    if (atomic_load(&live_bytes) != 0) fail("live byte count is %zu after freeing everything", atomic_load(&live_bytes));
    return 0;
}
