/* Runtime options: every HAKMEM_* environment variable, in one table, read
 * once at start-up (hak_init).  An unknown HAKMEM_ variable or a bad value is
 * reported on stderr and otherwise ignored.  Nothing here allocates. */
#include <stdlib.h>
#include <string.h>

#include "hakmem_internal.h"

hak_options_t hak_opt = {
    .stats = 0,
    .verbose = 0,
    .front_budget_kib = HAK_FRONT_BUDGET / 1024,
    .pool_retain = HAK_POOL_RETAIN_MAX,
    .large_cache_mib = 4,
    .purge_retain_mib = 12,
    .purge_mode = 0,
    .large_decay_ms = 500,
    .large_run_max_mib = 32,
    .background_purge = 0,
    .canary = 1,
    .quarantine_kib = 1024,
    .zero_on_free_kib = 64,
    .guard_pages = 1,
    .random_carve = 1,
};

typedef struct {
    const char *name;      /* without the HAKMEM_ prefix */
    long *value;
    long min, max;
    const char *doc;
} option_desc_t;

static const option_desc_t options[] = {
    { "STATS", &hak_opt.stats, 0, 2,
      "1: print the statistics table on stderr at exit; 2: as JSON" },
    { "VERBOSE", &hak_opt.verbose, 0, 2,
      "1: report option values and warnings at start-up" },
    { "FRONT_BUDGET_KIB", &hak_opt.front_budget_kib, 1, 4096,
      "bytes (KiB) a front-cache bin holds before it flushes half to its slabs" },
    { "POOL_RETAIN", &hak_opt.pool_retain, 0, 1024,
      "empty 2 MiB SuperSlabs the shared pool keeps before unmapping" },
    { "LARGE_CACHE_MIB", &hak_opt.large_cache_mib, 0, 1 << 20,
      "MiB of freed large-block pages kept resident whatever the live set (all arenas)" },
    { "LARGE_DECAY_MS", &hak_opt.large_decay_ms, 0, 3600000,
      "ms a freed large-block page stays resident before it is purged" },
    { "LARGE_RUN_MAX_MIB", &hak_opt.large_run_max_mib, 1, 48,
      "blocks up to this (MiB) are page runs; larger ones get a mapping each" },
    { "BACKGROUND_PURGE", &hak_opt.background_purge, 0, 1,
      "1: a thread purges decayed large-block pages while the process is idle" },
    { "PURGE_RETAIN_MIB", &hak_opt.purge_retain_mib, 0, 1 << 20,
      "MiB of empty slabs a thread keeps resident before purging the coldest" },
    { "PURGE_MODE", &hak_opt.purge_mode, 0, 1,
      "0: purge with MADV_DONTNEED (RSS drops now); 1: MADV_FREE (lazy)" },
#if HAKMEM_HARDENED
    { "CANARY", &hak_opt.canary, 0, 1,
      "hardened: 1: canary bytes after every block (and before aligned ones), checked by free and realloc" },
    { "QUARANTINE_KIB", &hak_opt.quarantine_kib, 0, 1 << 20,
      "hardened: KiB of freed blocks a thread holds back (zeroed, checked when they leave); 0: none" },
    { "ZERO_ON_FREE_KIB", &hak_opt.zero_on_free_kib, 0, 1 << 20,
      "hardened: a freed block's first KiB zeroed (and checked when it leaves the quarantine); 0: off" },
    { "GUARD_PAGES", &hak_opt.guard_pages, 0, 2,
      "hardened: 1: a PROT_NONE page after every large block and before every SuperSlab's slabs;"
      " 2: also quarantined large blocks are PROT_NONE past their first page" },
    { "RANDOM_CARVE", &hak_opt.random_carve, 0, 1,
      "hardened: 1: fresh blocks of a slab are handed out in random order" },
#endif
};

#define NOPTIONS (sizeof options / sizeof options[0])

static void warn2(const char *a, const char *b, const char *c) {
    hak_write_err("hakmem: warning: ");
    hak_write_err(a);
    hak_write_err(b);
    hak_write_err(c);
    hak_write_err("\n");
}

static int parse_long(const char *s, long *out) {
    if (!s || !*s) return -1;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != 0) return -1;
    *out = v;
    return 0;
}

void hak_options_init(void) {
    extern char **environ;
    for (char **e = environ; e && *e; e++) {
        const char *kv = *e;
        if (strncmp(kv, "HAKMEM_", 7) != 0) continue;
        const char *name = kv + 7, *eq = strchr(name, '=');
        if (!eq) continue;
        size_t len = (size_t)(eq - name);
        const option_desc_t *o = NULL;
        for (size_t i = 0; i < NOPTIONS; i++)
            if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
                o = &options[i];
        if (!o) {
            char nm[64];
            size_t n = len < sizeof nm - 1 ? len : sizeof nm - 1;
            memcpy(nm, name, n);
            nm[n] = 0;
            warn2("unknown option HAKMEM_", nm, " (ignored)");
            continue;
        }
        long v;
        if (parse_long(eq + 1, &v) != 0 || v < o->min || v > o->max) {
            warn2("bad value for HAKMEM_", o->name, " (ignored, default kept)");
            continue;
        }
        *o->value = v;
    }
}

/* One line per option, for `HAKMEM_VERBOSE=1` and the statistics. */
void hak_options_print(void) {
    for (size_t i = 0; i < NOPTIONS; i++) {
        char num[24], *p = num + sizeof num;
        long v = *options[i].value;
        *--p = 0;
        do { *--p = (char)('0' + v % 10); v /= 10; } while (v);
        hak_write_err("hakmem: option HAKMEM_");
        hak_write_err(options[i].name);
        hak_write_err("=");
        hak_write_err(p);
        hak_write_err("  ");
        hak_write_err(options[i].doc);
        hak_write_err("\n");
    }
}
