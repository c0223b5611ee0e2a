/* test_diag: hakmem's diagnostics, statistics and runtime options.
 *
 *   build facts     hak_build_is_debug / hak_build_has_counters /
 *                   hak_build_is_hardened agree with the library file the
 *                   test was linked against
 *   detectors       corrupted free lists caught on malloc and on refill (both
 *                   flavors: safe-linking), and in the debug flavor a double
 *                   free whose free key was overwritten, an interior free
 *                   that names its class and SuperSlab
 *   hak_check       0 on a clean heap, > 0 (with a report) on a corrupted one
 *   statistics      hak_stats_json (syntax, contents, snprintf-like return),
 *                   hak_stats_print and malloc_stats (the table)
 *   options         HAKMEM_* variables read at start-up: the test binary runs
 *                   itself again (fork + execve of its own executable with
 *                   argv[1] = "--child-workload") in a controlled environment
 *
 * Every case that aborts or corrupts the heap runs in a forked child whose
 * stderr is captured through a pipe (run_in_child, test_util.h). */
#include "test_util.h"

#include <ctype.h>
#include <dlfcn.h>
#include <limits.h>
#include <setjmp.h>
#include <cmocka.h>

#define CHILD_ARG "--child-workload"
#define BOGUS_ADDR ((uintptr_t)0x123456780ull)   /* 16-aligned, never mapped by us */
#define ERR_CAP (256 * 1024)
#define JSON_CAP (256 * 1024)

/* Static buffers: neither the captured text nor the JSON should come from
 * the allocator under test (that would perturb the counters being read). */
static char g_err[ERR_CAP];
static char g_json[JSON_CAP];
static char g_json2[JSON_CAP];
static char g_self[PATH_MAX];

/* ------------------------------------------------------------- helpers */

static int is_debug(void) { return hak_build_is_debug() != 0; }

/* Does some line of text start with prefix? */
static const char *line_starting(const char *text, const char *prefix)
{
    const char *l = text;
    size_t n = strlen(prefix);
    while (l && *l) {
        if (strncmp(l, prefix, n) == 0)
            return l;
        l = strchr(l, '\n');
        if (l)
            l++;
    }
    return NULL;
}

/* Copy the line starting at l (without its newline) into out. */
static void copy_line(const char *l, char *out, size_t cap)
{
    size_t n = strcspn(l, "\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, l, n);
    out[n] = '\0';
}

static void assert_contains(const char *text, const char *needle, const char *what)
{
    if (!strstr(text, needle))
        fail_msg("%s: output lacks \"%s\"; output was:\n%s", what, needle, text);
}

/* Run fn in a child that is expected to die of SIGABRT; stderr must mention
 * "hakmem", the %p address the child recorded in the shared page (if any),
 * and every string of needles (NULL terminated). */
static void expect_abort(int (*fn)(void *), void *arg, const char *what,
                         const char *const *needles)
{
    tu_shared *sh = tu_shared_page();
    char st[128];
    int status = 0;

    tu_shared_reset();
    if (run_in_child(fn, arg, &status, g_err, sizeof g_err) != 0)
        fail_msg("%s: fork failed: %s", what, strerror(errno));
    if (sh->stage == 0)
        fail_msg("%s: the child did not reach the corruption (%s); note: %s; stderr: %s", what,
                 tu_status_str(status, st, sizeof st), sh->note, g_err);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        fail_msg("%s: child %s, want SIGABRT (stage %d, note: %s); stderr: \"%s\"", what,
                 tu_status_str(status, st, sizeof st), sh->stage, sh->note, g_err);
    assert_contains(g_err, "hakmem", what);
    if (sh->addr[0])
        assert_contains(g_err, sh->addr, what);
    for (; needles && *needles; needles++)
        assert_contains(g_err, *needles, what);
}

/* Run fn in a child that must exit with status 0; its stderr is in g_err. */
static void expect_exit0(int (*fn)(void *), void *arg, const char *what)
{
    tu_shared *sh = tu_shared_page();
    char st[128];
    int status = 0;

    tu_shared_reset();
    if (run_in_child(fn, arg, &status, g_err, sizeof g_err) != 0)
        fail_msg("%s: fork failed: %s", what, strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: child %s, want exit 0 (note: %s); stderr: \"%s\"", what,
                 tu_status_str(status, st, sizeof st), sh->note, g_err);
}

/* ------------------------------------------------- a minimal JSON parser */

static const char *js_value(const char *s, int depth);

static const char *js_ws(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    return s;
}

static const char *js_string(const char *s)
{
    if (*s != '"')
        return NULL;
    for (s++; *s != '"'; s++) {
        if (*s == '\0' || (unsigned char)*s < 0x20)
            return NULL;
        if (*s == '\\') {
            s++;
            if (!strchr("\"\\/bfnrtu", *s) || *s == '\0')
                return NULL;
        }
    }
    return s + 1;
}

static const char *js_digits(const char *s)
{
    if (!isdigit((unsigned char)*s))
        return NULL;
    while (isdigit((unsigned char)*s))
        s++;
    return s;
}

static const char *js_number(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (!(s = js_digits(s)))
        return NULL;
    if (*s == '.' && !(s = js_digits(s + 1)))
        return NULL;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!(s = js_digits(s)))
            return NULL;
    }
    return s;
}

static const char *js_value(const char *s, int depth)
{
    if (depth > 32)
        return NULL;
    s = js_ws(s);
    if (*s == '{' || *s == '[') {
        char close = *s == '{' ? '}' : ']';
        s = js_ws(s + 1);
        if (*s == close)
            return s + 1;
        for (;;) {
            if (close == '}') {
                if (!(s = js_string(s)))
                    return NULL;
                s = js_ws(s);
                if (*s++ != ':')
                    return NULL;
            }
            if (!(s = js_value(s, depth + 1)))
                return NULL;
            s = js_ws(s);
            if (*s == close)
                return s + 1;
            if (*s++ != ',')
                return NULL;
            s = js_ws(s);
        }
    }
    if (*s == '"')
        return js_string(s);
    if (strncmp(s, "true", 4) == 0 || strncmp(s, "null", 4) == 0)
        return s + 4;
    if (strncmp(s, "false", 5) == 0)
        return s + 5;
    return js_number(s);
}

/* 1 if text is exactly one JSON value (surrounding white space allowed). */
static int json_valid(const char *text)
{
    const char *end = js_value(text, 0);
    return end && *js_ws(end) == '\0';
}

/* The unsigned number after "key": in [from, to) (to may be NULL). */
static int json_u64(const char *from, const char *to, const char *key, unsigned long long *out)
{
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *k = strstr(from, pat);
    if (!k || (to && k >= to))
        return -1;
    k += strlen(pat);
    if (!isdigit((unsigned char)*k))
        return -1;
    *out = strtoull(k, NULL, 10);
    return 0;
}

/* The object of class c in the "classes" array: start and end ('}'). */
static const char *json_class(const char *json, unsigned c, const char **end)
{
    char pat[40];
    snprintf(pat, sizeof pat, "{\"class\":%u,", c);
    const char *o = strstr(json, pat);
    if (o)
        *end = strchr(o, '}');
    return o && *end ? o : NULL;
}

static unsigned long long class_field(const char *json, unsigned c, const char *key)
{
    const char *end = NULL, *o = json_class(json, c, &end);
    unsigned long long v = 0;
    if (!o)
        fail_msg("JSON has no object for class %u: %s", c, json);
    if (json_u64(o, end, key, &v) != 0)
        fail_msg("JSON object of class %u lacks \"%s\": %.*s", c, key, (int)(end - o + 1), o);
    return v;
}

static size_t stats_json(char *buf)
{
    size_t n = hak_stats_json(buf, JSON_CAP);
    assert_true(n < JSON_CAP);
    return n;
}

/* ------------------------------------------------ the re-executed child */

/* argv[1] == CHILD_ARG: a small checked workload, then exit.  Exit codes:
 * 0 fine, 2 allocation failure, 3 data corruption, 4 hak_check complained. */
static int child_workload(void)
{
    enum { SLOTS = 256, ROUNDS = 20000 };
    static void *slot[SLOTS];
    static size_t len[SLOTS];
    tu_rng r;
    int i;

    tu_rng_seed(&r, 4242);
    for (i = 0; i < ROUNDS; i++) {
        size_t k = tu_rng_range(&r, 0, SLOTS - 1);
        if (slot[k]) {
            if (tu_check(slot[k], len[k], tu_seed2(k, len[k])) != -1)
                return 3;
            free(slot[k]);
            slot[k] = NULL;
            continue;
        }
        len[k] = tu_rng_chance(&r, 1, 200) ? tu_rng_range(&r, 40000, 300000)
                                            : tu_rng_range(&r, 1, 2048);
        slot[k] = malloc(len[k]);
        if (!slot[k])
            return 2;
        tu_fill(slot[k], len[k], tu_seed2(k, len[k]));
    }
    if (hak_check() != 0)
        return 4;
    for (i = 0; i < SLOTS; i++) {
        if (slot[i] && tu_check(slot[i], len[i], tu_seed2((size_t)i, len[i])) != -1)
            return 3;
        free(slot[i]);
    }
    if (hak_check() != 0)
        return 4;
    /* Like GNU coreutils, which close stderr before exiting. */
    if (getenv("TEST_CLOSE_STDERR"))
        close(2);
    return 0;
}

static int do_exec_self(void *arg)
{
    char *const *envp = arg;
    char *argv[] = { g_self, CHILD_ARG, NULL };
    execve(g_self, argv, envp);
    return 127;
}

/* Run this binary again with argv[1] = CHILD_ARG and exactly PATH plus the
 * given NAME=value strings (NULL terminated) as its environment; stderr is
 * left in g_err.  The child must exit 0. */
static void run_self(const char *const *vars, const char *what)
{
    char *envp[16], path[4096];
    const char *p = getenv("PATH");
    int n = 0;

    snprintf(path, sizeof path, "PATH=%s", p ? p : "/usr/bin:/bin");
    envp[n++] = path;
    for (; vars && *vars && n < 15; vars++)
        envp[n++] = (char *)*vars;
    envp[n] = NULL;
    assert_true(g_self[0] != '\0');
    expect_exit0(do_exec_self, envp, what);
}

/* ------------------------------------------------------- 1. build facts */

static void test_build_flags(void **state)
{
    (void)state;
    int dbg = hak_build_is_debug(), cnt = hak_build_has_counters(), hard = hak_build_is_hardened();
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "hak_build_is_debug");

    /* Which library file did we get?  That decides what the answers must be. */
    assert_non_null(sym);
    assert_true(dladdr(sym, &info) != 0 && info.dli_fname != NULL);
    const char *base = strrchr(info.dli_fname, '/');
    base = base ? base + 1 : info.dli_fname;
    if (strncmp(base, "libhakmem-debug.so", 18) == 0) {
        assert_int_equal(dbg, 1);
        assert_int_equal(cnt, 1);
        assert_int_equal(hard, 0);
    } else if (strncmp(base, "libhakmem-hardened.so", 21) == 0) {
        /* release code with the hardened API in front (its statistics say
         * "release") */
        assert_int_equal(dbg, 0);
        assert_int_equal(cnt, 0);
        assert_int_equal(hard, 1);
    } else if (strncmp(base, "libhakmem.so", 12) == 0 ||
               /* release code exporting only the hak_ names, with or
                * without a sanitizer (make test-sanitize) */
               strncmp(base, "libhakmem-hak.so", 16) == 0 ||
               strncmp(base, "libhakmem-ubsan.so", 18) == 0 ||
               strncmp(base, "libhakmem-tsan.so", 17) == 0) {
        assert_int_equal(dbg, 0);
        assert_int_equal(cnt, 0);
        assert_int_equal(hard, 0);
    } else {
        fail_msg("hak_build_is_debug comes from an unexpected object: %s", info.dli_fname);
    }

    /* The statistics say the same. */
    stats_json(g_json);
    assert_non_null(strstr(g_json, dbg ? "\"build\":\"debug\""
                                   : hard ? "\"build\":\"hardened\"" : "\"build\":\"release\""));
    assert_non_null(strstr(g_json, cnt ? "\"counters\":1" : "\"counters\":0"));
}

/* ------------------------------------------------ 2. debug detectors */

static void skip_unless_debug(void)
{
    if (!is_debug())
        skip();
}

/* 2a: the free-list link of the bin's head block points nowhere. */
static int do_corrupt_bin_link(void *arg)
{
    (void)arg;
    tu_shared *sh = tu_shared_page();
    tu_own_heap();                  /* the frees go to its bin */
    void **p = malloc(64), **q = malloc(64);
    if (!p || !q)
        return 2;
    free(q);
    free(p);
    p = tu_launder(p);
    if (tu_hardened()) {            /* once out of the quarantine: the core's link */
        tu_quarantine_flush();
        p -= TU_HARD_HDR / sizeof *p;
    }
    p[0] = (void *)BOGUS_ADDR;                    /* use after free */
    tu_expect_addr((void *)BOGUS_ADDR);
    sh->stage = 1;
    void *r = malloc(64);
    snprintf(sh->note, sizeof sh->note, "malloc(64) returned %p", r);
    return 0;
}

static void test_corrupt_freelist_on_malloc(void **state)
{
    (void)state;
    /* both flavors: safe-linking catches it in release too */
    static const char *const needles[] = { "corrupted free list", "class", "malloc", NULL };
    expect_abort(do_corrupt_bin_link, NULL, "corrupted bin link, then malloc(64)", needles);
}

/* 2b: a block flushed back to its slab's free list gets a bogus link; the
 * refill that takes it validates the list. */
static int do_corrupt_slab_link(void *arg)
{
    (void)arg;
    enum { N = 300, M = 400 };
    tu_shared *sh = tu_shared_page();
    static void *a[N];
    int i;

    tu_own_heap();                  /* with a SuperSlab: its blocks come from its slabs */
    for (i = 0; i < N; i++)
        if (!(a[i] = malloc(64)))
            return 2;
    for (i = 0; i < N; i++)
        free(a[i]);
    /* a[8]: from this heap's slab (a heap with a SuperSlab takes nothing
     * from the starters), flushed to its free list by the frees after it. */
    void **p = tu_launder(a[8]);
    if (tu_hardened()) {            /* once out of the quarantine: the core's link */
        tu_quarantine_flush();
        p -= TU_HARD_HDR / sizeof *p;
    }
    p[0] = (void *)BOGUS_ADDR;
    tu_expect_addr((void *)BOGUS_ADDR);
    sh->stage = 1;
    for (i = 0; i < M; i++) {
        void *r = malloc(64);
        sh->stage = 2 + i;
        snprintf(sh->note, sizeof sh->note, "%d mallocs of 64 succeeded, last %p", i + 1, r);
    }
    return 0;
}

static void test_corrupt_freelist_on_refill(void **state)
{
    (void)state;
    /* both flavors: safe-linking catches it in release too */
    static const char *const needles[] = { "corrupted free list", "class", "refill", NULL };
    expect_abort(do_corrupt_slab_link, NULL, "corrupted slab free list, then 400 x malloc(64)",
                 needles);
}

/* 2c: double free after a use-after-free write destroyed the free key; only
 * the debug allocation bitmap can tell. */
static int do_double_free_key_destroyed(void *arg)
{
    (void)arg;
    tu_shared *sh = tu_shared_page();
    long *p = malloc(64);
    if (!p)
        return 2;
    memset(p, 1, 64);
    free(p);
    p = tu_launder(p);
    p[1] = 5;
    tu_expect_addr(p);
    sh->stage = 1;
    free(p);
    return 0;
}

static void test_debug_double_free_key_destroyed(void **state)
{
    (void)state;
    skip_unless_debug();
    static const char *const needles[] = { "double free", "class", "SuperSlab", NULL };
    expect_abort(do_double_free_key_destroyed, NULL, "double free with the free key overwritten",
                 needles);
}

/* 2d: an interior pointer; debug says which class and SuperSlab it is in. */
static int do_free_interior(void *arg)
{
    (void)arg;
    tu_shared *sh = tu_shared_page();
    char *p = malloc(100);
    if (!p)
        return 2;
    memset(p, 3, 100);
    void *q = tu_launder(p + 16);
    tu_expect_addr(q);
    sh->stage = 1;
    free(q);
    return 0;
}

static void test_debug_invalid_free_names_class(void **state)
{
    (void)state;
    skip_unless_debug();
    static const char *const needles[] = { "invalid pointer", "class", "SuperSlab", NULL };
    expect_abort(do_free_interior, NULL, "free(p + 16), p = malloc(100)", needles);
}

/* ------------------------------------------------------- 3. hak_check */

static void *check_fresh_thread(void *arg)
{
    unsigned *res = arg;
    res[0] = hak_check();           /* no heap yet */
    void *p = malloc(200), *q = malloc(40000);
    free(p);
    res[1] = hak_check();
    free(q);
    res[2] = hak_check();
    return NULL;
}

static void test_check_clean_heap(void **state)
{
    (void)state;
    enum { SLOTS = 512, ROUNDS = 30000 };
    static void *slot[SLOTS];
    static size_t len[SLOTS];
    tu_rng r;
    int i;

    assert_int_equal(hak_check(), 0);
    tu_rng_seed(&r, 77);
    for (i = 0; i < ROUNDS; i++) {
        size_t k = tu_rng_range(&r, 0, SLOTS - 1);
        unsigned op = (unsigned)tu_rng_range(&r, 0, 9);
        if (slot[k] && op < 5) {
            assert_int_equal(tu_check(slot[k], len[k], tu_seed2(k, len[k])), -1);
            free(slot[k]);
            slot[k] = NULL;
        } else if (slot[k]) {                       /* realloc */
            size_t nl = tu_rng_range(&r, 1, 5000);
            size_t keep = nl < len[k] ? nl : len[k];
            assert_int_equal(tu_check(slot[k], keep, tu_seed2(k, len[k])), -1);
            void *np = realloc(slot[k], nl);
            assert_non_null(np);
            assert_int_equal(tu_check(np, keep, tu_seed2(k, len[k])), -1);
            slot[k] = np;
            len[k] = nl;
            tu_fill(np, nl, tu_seed2(k, nl));
        } else {
            size_t n = op == 0 ? tu_rng_range(&r, 33000, 200000)
                     : op < 4  ? tu_rng_range(&r, 1024, 32768)
                               : tu_rng_range(&r, 1, 512);
            slot[k] = op == 9 ? calloc(1, n) : malloc(n);
            assert_non_null(slot[k]);
            if (op == 9)
                assert_true(tu_all_bytes(slot[k], n, 0));
            len[k] = n;
            tu_fill(slot[k], n, tu_seed2(k, n));
        }
        if (i % 5000 == 0)
            assert_int_equal(hak_check(), 0);
    }
    assert_int_equal(hak_check(), 0);
    for (i = 0; i < SLOTS; i++) {
        free(slot[i]);
        slot[i] = NULL;
    }
    assert_int_equal(hak_check(), 0);

    unsigned res[3] = { 99, 99, 99 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, check_fresh_thread, res), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(res[0], 0);
    assert_int_equal(res[1], 0);
    assert_int_equal(res[2], 0);
}

/* arg 0: overwrite the free key (second word) of a block in the front
 * cache; arg 1: overwrite its free-list link (first word). */
static int do_check_corrupt(void *arg)
{
    tu_shared *sh = tu_shared_page();
    long *p = malloc(48);
    if (!p)
        return 2;
    free(p);
    p = tu_launder(p);
    if (tu_hardened()) {            /* once out of the quarantine: the core's words */
        tu_quarantine_flush();
        p -= TU_HARD_HDR / sizeof *p;
    }
    if (arg)
        p[0] = (long)BOGUS_ADDR;
    else
        p[1] = 7;
    tu_expect_addr(arg ? (void *)BOGUS_ADDR : (void *)p);
    sh->stage = 1;
    unsigned bad = hak_check();
    snprintf(sh->note, sizeof sh->note, "hak_check() returned %u", bad);
    sh->stage = 2;
    return bad > 0 ? 0 : 1;           /* _exit: the corrupted block is never touched again */
}

static void test_check_corrupt_heap(void **state)
{
    (void)state;
    tu_shared *sh = tu_shared_page();

    expect_exit0(do_check_corrupt, (void *)0, "hak_check after the free key was overwritten");
    assert_int_equal(sh->stage, 2);
    assert_contains(g_err, "hak_check", sh->note);
    assert_contains(g_err, "free key", sh->note);
    assert_contains(g_err, sh->addr, sh->note);

    expect_exit0(do_check_corrupt, (void *)1, "hak_check after the free-list link was overwritten");
    assert_int_equal(sh->stage, 2);
    assert_contains(g_err, "hak_check", sh->note);
    assert_contains(g_err, sh->addr, sh->note);
}

/* ------------------------------------------------------ 4. statistics */

static void test_stats_json(void **state)
{
    (void)state;
    int counters = hak_build_has_counters();
    unsigned c;
    size_t n;

    n = stats_json(g_json);
    unsigned long long allocs0 = class_field(g_json, 3, "allocs");
    unsigned long long frees0 = class_field(g_json, 3, "frees");

    for (int i = 0; i < 10000; i++) {
        void *p = malloc(64);
        assert_non_null(p);
        *(volatile char *)p = 1;
        free(tu_launder(p));
    }

    n = stats_json(g_json);
    assert_int_equal(n, strlen(g_json));
    if (!json_valid(g_json))
        fail_msg("hak_stats_json output is not valid JSON: %s", g_json);
    assert_int_equal(g_json[0], '{');
    assert_true(n >= 2 && strcmp(g_json + n - 2, "}\n") == 0);
    assert_non_null(strstr(g_json, "\"classes\":["));

    /* One object per class, in order, sizes increasing up to the largest
     * slab class (hak_small_size_max). */
    const char *arr = strstr(g_json, "\"classes\":["), *arr_end = strchr(arr, ']');
    assert_non_null(arr_end);
    unsigned objs = 0;
    for (const char *o = arr; (o = strstr(o, "{\"class\":")) && o < arr_end; o++)
        objs++;
    assert_true(objs >= 20);
    unsigned long long prev_sz = 0;
    for (c = 0; c < objs; c++) {
        const char *end = NULL, *o = json_class(g_json, c, &end);
        if (!o || o > arr_end)
            fail_msg("no object for class %u in the classes array", c);
        unsigned long long sz = class_field(g_json, c, "size");
        assert_true(sz >= 16 && sz <= hak_small_size_max() && sz % 16 == 0);
        assert_true(sz > prev_sz);
        prev_sz = sz;
    }
    assert_int_equal(class_field(g_json, 3, "size"), 64);
    assert_int_equal(class_field(g_json, objs - 1, "size"), hak_small_size_max());

    /* Top-level keys, after the array. */
    unsigned long long heaps = 0, ssm = 0, rss = 0;
    assert_int_equal(json_u64(arr_end, NULL, "heaps", &heaps), 0);
    assert_int_equal(json_u64(arr_end, NULL, "superslabs_mapped", &ssm), 0);
    assert_int_equal(json_u64(arr_end, NULL, "rss_bytes", &rss), 0);
    assert_true(heaps >= 1);
    assert_true(ssm >= 1);
    assert_true(rss > 0);

    /* Class 3 (64 bytes) after 10000 malloc/free pairs. */
    unsigned long long allocs = class_field(g_json, 3, "allocs");
    unsigned long long frees = class_field(g_json, 3, "frees");
    assert_true(class_field(g_json, 3, "refills") >= 1);
    if (counters) {
        assert_true(allocs >= 10000 && allocs - allocs0 >= 10000);
        assert_true(frees >= 10000 && frees - frees0 >= 10000);
    } else {
        assert_int_equal(allocs, 0);
        assert_int_equal(frees, 0);
    }

    /* snprintf-like return: the length needed, text truncated and terminated. */
    char small[16];
    memset(small, 'x', sizeof small);
    size_t need = hak_stats_json(small, sizeof small);
    assert_true(need > sizeof small);
    assert_int_equal(small[sizeof small - 1], '\0');
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, g_json, sizeof small - 1);

    char one[1] = { 'x' };
    assert_true(hak_stats_json(one, 1) > 1);
    assert_int_equal(one[0], '\0');
    assert_true(hak_stats_json(NULL, 0) > 100);

    /* Another full call: again the exact length of what it wrote. */
    n = hak_stats_json(g_json2, JSON_CAP);
    assert_int_equal(n, strlen(g_json2));
    if (!json_valid(g_json2))
        fail_msg("second hak_stats_json output is not valid JSON: %s", g_json2);
}

/* The table: title, header, a row for class 3, and the summary lines. */
static void check_table(const char *err, int allocs_min, const char *what)
{
    int counters = hak_build_has_counters();
    char line[512], title[160];
    const char *l = line_starting(err, "hakmem statistics");

    if (!l)
        fail_msg("%s: no line starting \"hakmem statistics\": %s", what, err);
    copy_line(l, title, sizeof title);
    snprintf(line, sizeof line, "(%s build, counters %s)",
             is_debug() ? "debug" : hak_build_is_hardened() ? "hardened" : "release",
             counters ? "on" : "off");
    assert_contains(title, line, what);

    const char *h = strchr(l, '\n');
    assert_non_null(h);
    copy_line(h + 1, line, sizeof line);
    static const char *const cols[] = { "class", "size", "allocs", "refills", "warm_hit", NULL };
    for (const char *const *c = cols; *c; c++)
        assert_contains(line, *c, "table header");

    int found = 0;
    for (const char *r = strchr(h + 1, '\n'); r && r[1]; r = strchr(r + 1, '\n')) {
        unsigned cls, size;
        unsigned long long allocs;
        if (sscanf(r + 1, "%u %u %llu", &cls, &size, &allocs) == 3 && cls == 3) {
            assert_int_equal(size, 64);
            if (counters)
                assert_true(allocs >= (unsigned long long)allocs_min);
            else
                assert_int_equal(allocs, 0);
            found = 1;
        }
    }
    if (!found)
        fail_msg("%s: no row for class 3 (size 64): %s", what, err);
    if (!line_starting(err, "warm pool hit rate:"))
        fail_msg("%s: no line \"warm pool hit rate:\": %s", what, err);
}

static int do_print_table(void *arg)
{
    for (int i = 0; i < 200; i++) {
        void *p = malloc(64);
        if (!p)
            return 2;
        free(tu_launder(p));
    }
    if (arg)
        malloc_stats();
    else
        hak_stats_print();
    return 0;
}

static void test_stats_table(void **state)
{
    (void)state;
    expect_exit0(do_print_table, (void *)0, "hak_stats_print");
    check_table(g_err, 200, "hak_stats_print");
    expect_exit0(do_print_table, (void *)1, "malloc_stats");
    check_table(g_err, 200, "malloc_stats");
}

/* ------------------------------------------------- 5. start-up options */

static void test_opt_none(void **state)
{
    (void)state;
    run_self(NULL, "no HAKMEM_ variables");
    if (strstr(g_err, "hakmem"))
        fail_msg("a plain run printed something: %s", g_err);
}

static void test_opt_stats_table(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_STATS=1", NULL };
    run_self(env, "HAKMEM_STATS=1");
    assert_contains(g_err, "hakmem statistics", "HAKMEM_STATS=1");
    assert_contains(g_err, "warm pool hit rate:", "HAKMEM_STATS=1");
    assert_null(line_starting(g_err, "{\"build\""));
}

/* The table printed at exit still arrives when the program closed stderr. */
static void test_opt_stats_after_stderr_closed(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_STATS=1", "TEST_CLOSE_STDERR=1", NULL };
    run_self(env, "HAKMEM_STATS=1 with stderr closed by the program");
    assert_contains(g_err, "hakmem statistics", "HAKMEM_STATS=1, stderr closed");
    assert_contains(g_err, "warm pool hit rate:", "HAKMEM_STATS=1, stderr closed");
}

static void test_opt_stats_json(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_STATS=2", NULL };
    run_self(env, "HAKMEM_STATS=2");
    const char *l = line_starting(g_err, "{\"build\"");
    if (!l)
        fail_msg("HAKMEM_STATS=2: no JSON line: %s", g_err);
    copy_line(l, g_json2, sizeof g_json2);
    if (!json_valid(g_json2))
        fail_msg("HAKMEM_STATS=2: not valid JSON: %s", g_json2);
    assert_non_null(strstr(g_json2, "\"classes\":["));
    assert_null(strstr(g_err, "hakmem statistics"));
}

static void test_opt_unknown(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_BOGUS_OPTION=1", NULL };
    run_self(env, "HAKMEM_BOGUS_OPTION=1");
    assert_contains(g_err, "unknown option HAKMEM_BOGUS_OPTION", "HAKMEM_BOGUS_OPTION=1");
}

static void test_opt_bad_values(void **state)
{
    (void)state;
    static const char *const env1[] = { "HAKMEM_STATS=abc", NULL };
    run_self(env1, "HAKMEM_STATS=abc");
    assert_contains(g_err, "bad value for HAKMEM_STATS", "HAKMEM_STATS=abc");
    if (strstr(g_err, "hakmem statistics") || strstr(g_err, "{\"build\""))
        fail_msg("HAKMEM_STATS=abc printed statistics: %s", g_err);

    static const char *const env2[] = { "HAKMEM_POOL_RETAIN=-5", NULL };
    run_self(env2, "HAKMEM_POOL_RETAIN=-5");
    assert_contains(g_err, "bad value for HAKMEM_POOL_RETAIN", "HAKMEM_POOL_RETAIN=-5");

    static const char *const env3[] = { "HAKMEM_FRONT_BUDGET_KIB=0", "HAKMEM_STATS=3", NULL };
    run_self(env3, "HAKMEM_FRONT_BUDGET_KIB=0 HAKMEM_STATS=3");
    assert_contains(g_err, "bad value for HAKMEM_FRONT_BUDGET_KIB", "HAKMEM_FRONT_BUDGET_KIB=0");
    assert_contains(g_err, "bad value for HAKMEM_STATS", "HAKMEM_STATS=3");
    assert_null(strstr(g_err, "hakmem statistics"));
}

static void test_opt_verbose(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_VERBOSE=1", NULL };
    run_self(env, "HAKMEM_VERBOSE=1");
    assert_contains(g_err, "HAKMEM_FRONT_BUDGET_KIB=128", "HAKMEM_VERBOSE=1");
    assert_contains(g_err, "HAKMEM_STATS=0", "HAKMEM_VERBOSE=1");
    assert_contains(g_err, "HAKMEM_VERBOSE=1", "HAKMEM_VERBOSE=1");
}

static void test_opt_front_budget(void **state)
{
    (void)state;
    static const char *const env[] = { "HAKMEM_FRONT_BUDGET_KIB=1", NULL };
    run_self(env, "HAKMEM_FRONT_BUDGET_KIB=1");

    /* The value is taken (and shown with VERBOSE), and the workload still runs. */
    static const char *const env2[] = { "HAKMEM_FRONT_BUDGET_KIB=1", "HAKMEM_VERBOSE=1", NULL };
    run_self(env2, "HAKMEM_FRONT_BUDGET_KIB=1 HAKMEM_VERBOSE=1");
    assert_contains(g_err, "HAKMEM_FRONT_BUDGET_KIB=1 ", "HAKMEM_FRONT_BUDGET_KIB=1");
    assert_null(strstr(g_err, "hakmem: warning"));
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], CHILD_ARG) == 0)
        return child_workload();

    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (n > 0)
        g_self[n] = '\0';
    else
        g_self[0] = '\0';

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_flags),
        cmocka_unit_test(test_corrupt_freelist_on_malloc),
        cmocka_unit_test(test_corrupt_freelist_on_refill),
        cmocka_unit_test(test_debug_double_free_key_destroyed),
        cmocka_unit_test(test_debug_invalid_free_names_class),
        cmocka_unit_test(test_check_clean_heap),
        cmocka_unit_test(test_check_corrupt_heap),
        cmocka_unit_test(test_stats_json),
        cmocka_unit_test(test_stats_table),
        cmocka_unit_test(test_opt_none),
        cmocka_unit_test(test_opt_stats_table),
        cmocka_unit_test(test_opt_stats_after_stderr_closed),
        cmocka_unit_test(test_opt_stats_json),
        cmocka_unit_test(test_opt_unknown),
        cmocka_unit_test(test_opt_bad_values),
        cmocka_unit_test(test_opt_verbose),
        cmocka_unit_test(test_opt_front_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
