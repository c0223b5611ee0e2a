/* Statistics: per-class counters of every heap merged when read, plus the
 * global counters of the backend.  hak_stats_print() writes a table on
 * stderr, hak_stats_json() the same as JSON; HAKMEM_STATS=1 (table) or 2
 * (JSON) prints them at exit.  Nothing here allocates. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hakmem.h"
#include "hakmem_internal.h"

typedef struct {
    hak_class_stats_t cls[HAK_NUM_CLASSES];
    hak_global_stats_t g;
    uint64_t heaps, heaps_active;
    uint64_t rss_bytes;
} snapshot_t;

static uint64_t rd(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static uint64_t read_rss(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    unsigned long long size = 0, res = 0;
    if (sscanf(buf, "%llu %llu", &size, &res) != 2) return 0;
    return (uint64_t)res * 4096;
}

static void snapshot(snapshot_t *s) {
    memset(s, 0, sizeof *s);
    for (hak_heap_t *h = hak_heap_list(); h; h = h->next_all) {
        int starter = h->is_starter != 0;   /* no thread's: not counted as a heap */
        s->heaps += !starter;
        s->heaps_active += !starter && __atomic_load_n(&h->active, __ATOMIC_RELAXED) != 0;
        for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
            const hak_heap_class_stats_t *x = &h->stats[c];
            hak_class_stats_t *y = &s->cls[c];
            y->allocs += rd(&x->allocs);
            y->frees += rd(&x->frees);
            y->refills += rd(&h->refills[c]);
            y->flushes += rd(&x->flushes);
            y->warm_hits += rd(&x->warm_hits);
            y->warm_misses += rd(&x->warm_misses);
            y->prefills += rd(&x->prefills);
            y->remote_frees += rd(&h->remote_frees[c]);
            y->page_first_touch += rd(&x->page_first_touch);
            y->xfer_puts += rd(&x->xfer_puts);
            y->xfer_takes += rd(&x->xfer_takes);
        }
    }
    const uint64_t *src = (const uint64_t *)&hak_gstats;
    uint64_t *dst = (uint64_t *)&s->g;
    for (size_t i = 0; i < sizeof s->g / sizeof(uint64_t); i++) dst[i] = rd(&src[i]);
    hak_large_stats(&s->g);
    s->rss_bytes = read_rss();
}

/* Appends to a fixed buffer; returns the length the whole text needs. */
typedef struct { char *buf; size_t cap, len; } out_t;

__attribute__((format(printf, 2, 3))) static void put(out_t *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n;
}

static unsigned pct10(uint64_t num, uint64_t den) {   /* percent x10 */
    return den ? (unsigned)((num * 1000 + den / 2) / den) : 0;
}

static void format_table(out_t *o, const snapshot_t *s) {
    put(o, "hakmem statistics (%s build, counters %s)\n",
        HAKMEM_BUILD_DEBUG ? "debug" : HAKMEM_HARDENED ? "hardened" : "release", HAKMEM_DEBUG_COUNTERS ? "on" : "off");
    put(o, "%5s %6s %12s %12s %7s %10s %10s %10s %10s %9s %10s %9s %9s %9s\n", "class", "size",
        "allocs", "frees", "front%", "refills", "flushes", "warm_hit", "warm_miss", "prefills",
        "remote_fr", "pg_touch", "xfer_put", "xfer_take");
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        const hak_class_stats_t *x = &s->cls[c];
        if (!x->allocs && !x->refills && !x->remote_frees && !x->xfer_takes) continue;
        unsigned hit = x->allocs >= x->refills ? pct10(x->allocs - x->refills, x->allocs) : 0;
        char hitbuf[16];
        if (HAKMEM_DEBUG_COUNTERS) snprintf(hitbuf, sizeof hitbuf, "%u.%u", hit / 10, hit % 10);
        else snprintf(hitbuf, sizeof hitbuf, "-");
        put(o, "%5u %6u %12llu %12llu %7s %10llu %10llu %10llu %10llu %9llu %10llu %9llu %9llu %9llu\n", c,
            hak_class_size[c], (unsigned long long)x->allocs, (unsigned long long)x->frees, hitbuf,
            (unsigned long long)x->refills, (unsigned long long)x->flushes,
            (unsigned long long)x->warm_hits, (unsigned long long)x->warm_misses,
            (unsigned long long)x->prefills, (unsigned long long)x->remote_frees,
            (unsigned long long)x->page_first_touch, (unsigned long long)x->xfer_puts,
            (unsigned long long)x->xfer_takes);
    }
    uint64_t wh = 0, wm = 0;
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) { wh += s->cls[c].warm_hits; wm += s->cls[c].warm_misses; }
    unsigned wr = pct10(wh, wh + wm);
    put(o, "warm pool hit rate: %u.%u%% (%llu hits, %llu misses)\n", wr / 10, wr % 10,
        (unsigned long long)wh, (unsigned long long)wm);
    put(o, "transfer cache: %llu blocks now (batches of a bin's overflow: xfer_put, taken by a refill: xfer_take)\n",
        (unsigned long long)s->g.xfer_blocks);
    put(o, "heaps: %llu (%llu active)\n", (unsigned long long)s->heaps, (unsigned long long)s->heaps_active);
    put(o, "superslabs: %llu mapped (%llu MiB), %llu in shared pool, %llu maps, %llu unmaps\n",
        (unsigned long long)s->g.ss_mapped, (unsigned long long)(s->g.ss_mapped * HAK_SS_SIZE >> 20),
        (unsigned long long)s->g.ss_in_pool, (unsigned long long)s->g.ss_map_calls,
        (unsigned long long)s->g.ss_unmap_calls);
    put(o, "large: %llu live (%llu KiB), %llu KiB cached, %llu maps, %llu cache hits\n",
        (unsigned long long)s->g.large_live, (unsigned long long)(s->g.large_live_bytes >> 10),
        (unsigned long long)(s->g.large_cached_bytes >> 10), (unsigned long long)s->g.large_map_calls,
        (unsigned long long)s->g.large_cache_hits);
    put(o, "large runs: %llu regions, %llu split, %llu coalesced, %llu reused warm, %llu in threads' "
        "run caches (%llu served from them), purged %llu KiB by decay and %llu KiB by bound, "
        "%llu system calls\n",
        (unsigned long long)s->g.large_regions, (unsigned long long)s->g.large_runs_split,
        (unsigned long long)s->g.large_runs_coalesced, (unsigned long long)s->g.large_runs_reused,
        (unsigned long long)s->g.large_run_cached, (unsigned long long)s->g.large_run_cache_hits,
        (unsigned long long)(s->g.large_purged_decay_bytes >> 10),
        (unsigned long long)(s->g.large_purged_bound_bytes >> 10), (unsigned long long)s->g.large_syscalls);
    put(o, "memory: mapped %llu KiB, resident (whole process) %llu KiB, purged %llu KiB\n",
        (unsigned long long)((s->g.ss_mapped * HAK_SS_SIZE + s->g.large_live_bytes + s->g.large_cached_bytes) >> 10),
        (unsigned long long)(s->rss_bytes >> 10), (unsigned long long)(s->g.purged_bytes >> 10));
}

static void format_json(out_t *o, const snapshot_t *s) {
    put(o, "{\"build\":\"%s\",\"counters\":%d,\"classes\":[",
        HAKMEM_BUILD_DEBUG ? "debug" : HAKMEM_HARDENED ? "hardened" : "release",
        HAKMEM_DEBUG_COUNTERS ? 1 : 0);
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        const hak_class_stats_t *x = &s->cls[c];
        put(o, "%s{\"class\":%u,\"size\":%u,\"allocs\":%llu,\"frees\":%llu,\"refills\":%llu,"
            "\"flushes\":%llu,\"warm_hits\":%llu,\"warm_misses\":%llu,\"prefills\":%llu,"
            "\"remote_frees\":%llu,\"page_first_touch\":%llu,\"xfer_puts\":%llu,\"xfer_takes\":%llu}",
            c ? "," : "", c, hak_class_size[c], (unsigned long long)x->allocs,
            (unsigned long long)x->frees, (unsigned long long)x->refills, (unsigned long long)x->flushes,
            (unsigned long long)x->warm_hits, (unsigned long long)x->warm_misses,
            (unsigned long long)x->prefills, (unsigned long long)x->remote_frees,
            (unsigned long long)x->page_first_touch, (unsigned long long)x->xfer_puts,
            (unsigned long long)x->xfer_takes);
    }
    put(o, "],\"heaps\":%llu,\"heaps_active\":%llu,\"superslabs_mapped\":%llu,\"superslabs_in_pool\":%llu,"
        "\"superslab_maps\":%llu,\"superslab_unmaps\":%llu,\"large_live\":%llu,\"large_live_bytes\":%llu,"
        "\"large_cached_bytes\":%llu,\"large_maps\":%llu,\"large_cache_hits\":%llu,\"purged_bytes\":%llu,"
        "\"large_regions\":%llu,\"large_runs_split\":%llu,\"large_runs_coalesced\":%llu,"
        "\"large_runs_reused\":%llu,\"large_purged_decay_bytes\":%llu,\"large_purged_bound_bytes\":%llu,"
        "\"large_syscalls\":%llu,\"large_fences\":%llu,\"large_fence_calls\":%llu,"
        "\"large_run_cached\":%llu,\"large_run_cache_hits\":%llu,\"xfer_blocks\":%llu,\"rss_bytes\":%llu}\n",
        (unsigned long long)s->heaps, (unsigned long long)s->heaps_active,
        (unsigned long long)s->g.ss_mapped, (unsigned long long)s->g.ss_in_pool,
        (unsigned long long)s->g.ss_map_calls, (unsigned long long)s->g.ss_unmap_calls,
        (unsigned long long)s->g.large_live, (unsigned long long)s->g.large_live_bytes,
        (unsigned long long)s->g.large_cached_bytes, (unsigned long long)s->g.large_map_calls,
        (unsigned long long)s->g.large_cache_hits, (unsigned long long)s->g.purged_bytes,
        (unsigned long long)s->g.large_regions, (unsigned long long)s->g.large_runs_split,
        (unsigned long long)s->g.large_runs_coalesced, (unsigned long long)s->g.large_runs_reused,
        (unsigned long long)s->g.large_purged_decay_bytes, (unsigned long long)s->g.large_purged_bound_bytes,
        (unsigned long long)s->g.large_syscalls, (unsigned long long)s->g.large_fences,
        (unsigned long long)s->g.large_fence_calls, (unsigned long long)s->g.large_run_cached,
        (unsigned long long)s->g.large_run_cache_hits, (unsigned long long)s->g.xfer_blocks,
        (unsigned long long)s->rss_bytes);
}

/* The JSON text into buf (NUL-terminated, truncated to size); returns the
 * length the whole text needs, like snprintf. */
HAK_EXPORT size_t hak_stats_json(char *buf, size_t size) {
    snapshot_t s;
    snapshot(&s);
    out_t o = { buf, size, 0 };
    format_json(&o, &s);
    if (size) buf[o.len < size ? o.len : size - 1] = 0;
    return o.len;
}

/* HAKMEM_STATS prints at exit on a copy of stderr taken at start-up: some
 * programs (GNU coreutils among them) close stderr before they exit. */
static int stats_fd = 2;

void hak_stats_init(void) {
    if (!hak_opt.stats) return;
    int fd = fcntl(2, F_DUPFD_CLOEXEC, 64);
    if (fd >= 0) stats_fd = fd;
}

/* On the caller's stack (about 20 KiB) and without a lock, so that a child
 * forked while another thread was printing can still print at its exit. */
static void print_with(int fd, void (*fmt)(out_t *, const snapshot_t *)) {
    char buf[16384];
    snapshot_t s;
    snapshot(&s);
    out_t o = { buf, sizeof buf, 0 };
    fmt(&o, &s);
    buf[o.len < sizeof buf ? o.len : sizeof buf - 1] = 0;
    hak_write_fd(fd, buf);
}

HAK_EXPORT void hak_stats_print(void) { print_with(2, format_table); }

__attribute__((destructor)) static void stats_at_exit(void) {
    if (hak_opt.stats == 1) print_with(stats_fd, format_table);
    else if (hak_opt.stats == 2) print_with(stats_fd, format_json);
}
