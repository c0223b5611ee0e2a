/* test_static: a statically linked program (libhakmem.a) really uses hakmem.
 *
 * Plain C, no cmocka (it is not static-friendly).  Every check runs in a
 * forked child so that a crash fails only that check.  Prints one line per
 * check and finally "static: N passed, N failed"; exits non-zero on failure. */
#include "test_util.h"

static int passed, failed;

typedef int (*check_fn)(char *why, size_t cap);

/* The child reports the reason for a failure through the shared page. */
static int run_check(const char *name, check_fn fn);

static int child_trampoline(void *arg)
{
    check_fn fn = (check_fn)(uintptr_t)arg;
    tu_shared *sh = tu_shared_page();
    int rc = fn(sh->note, sizeof sh->note);
    fflush(stdout);
    return rc;
}

static int run_check(const char *name, check_fn fn)
{
    tu_shared *sh = tu_shared_page();
    char err[2048], st[128];
    int status = 0;
    double t0 = tu_now();

    tu_shared_reset();
    if (run_in_child(child_trampoline, (void *)(uintptr_t)fn, &status, err, sizeof err) != 0) {
        printf("FAIL static %s: fork failed: %s\n", name, strerror(errno));
        failed++;
        return 1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("ok   static %s (%.2f s)\n", name, tu_now() - t0);
        passed++;
        return 0;
    }
    printf("FAIL static %s: child %s: %s%s%s\n", name, tu_status_str(status, st, sizeof st),
           sh->note[0] ? sh->note : "(no reason given)",
           err[0] ? "; stderr: " : "", err);
    failed++;
    return 1;
}

#define CHECK(cond, ...)                          \
    do {                                          \
        if (!(cond)) {                            \
            snprintf(why, cap, __VA_ARGS__);      \
            return 1;                             \
        }                                         \
    } while (0)

static const size_t sizes[] = {
    0, 1, 15, 16, 17, 100, 1000, 1024, 1025, 4096, 20000, 32768, 32769,
    65536, 65537, 200000, 1048576, 1048577, 3 * 1048576,
};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* malloc's blocks are hakmem blocks: hak_malloc_usable_size agrees with
 * malloc_usable_size (with glibc's malloc it would reject the pointer). */
static int check_usable_size_agrees(char *why, size_t cap)
{
    size_t i;
    for (i = 0; i < NSIZES; i++) {
        void *p = malloc(sizes[i]);
        CHECK(p, "malloc(%zu) returned NULL", sizes[i]);
        size_t u = malloc_usable_size(p), h = hak_malloc_usable_size(p);
        CHECK(u == h, "malloc(%zu): malloc_usable_size %zu != hak_malloc_usable_size %zu",
              sizes[i], u, h);
        CHECK(u >= sizes[i], "malloc(%zu): usable size %zu too small", sizes[i], u);
        memset(p, 0xAA, u);
        void *q = hak_malloc(sizes[i]);
        CHECK(q, "hak_malloc(%zu) returned NULL", sizes[i]);
        CHECK(malloc_usable_size(q) == hak_malloc_usable_size(q),
              "hak_malloc(%zu): usable sizes differ", sizes[i]);
        free(q);
        hak_free(p);
    }
    return 0;
}

/* Blocks cross freely between the standard and the hak_ names. */
static int check_cross_names(char *why, size_t cap)
{
    size_t i;
    for (i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        unsigned char *p = hak_malloc(n);
        CHECK(p, "hak_malloc(%zu) failed", n);
        tu_fill(p, n, n);
        p = realloc(p, n + 100);
        CHECK(p, "realloc of a hak_malloc block failed");
        CHECK(tu_check(p, n, n) == -1, "realloc(hak_malloc(%zu)) lost contents", n);
        p = hak_realloc(p, n / 2 + 1);
        CHECK(p, "hak_realloc failed");
        CHECK(tu_check(p, n / 2 < n ? n / 2 : n, n) == -1, "hak_realloc lost contents");
        free(p);
        p = calloc(1, n + 1);
        CHECK(p && tu_all_bytes(p, n + 1, 0), "calloc(1, %zu) not zeroed", n + 1);
        hak_free(p);
    }
    return 0;
}

/* Allocations made inside libc (strdup, asprintf, stdio, getline, qsort)
 * come from hakmem too: hak_free accepts them. */
static int check_libc_internal(char *why, size_t cap)
{
    char *s = strdup("hakmem static");
    CHECK(s, "strdup failed");
    CHECK(hak_malloc_usable_size(s) >= 14, "strdup result not a hakmem block");
    hak_free(s);

    char *a = NULL;
    CHECK(asprintf(&a, "%d-%s-%0200d", 42, "x", 7) > 0, "asprintf failed");
    CHECK(hak_malloc_usable_size(a) >= strlen(a) + 1, "asprintf result not a hakmem block");
    hak_free(a);

    char path[] = "/tmp/hakmem-static-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp failed");
    FILE *f = fdopen(fd, "w+");
    CHECK(f, "fdopen failed");
    for (int i = 0; i < 1000; i++)
        fprintf(f, "line %d %0*d\n", i, i % 300, i);
    rewind(f);
    char *line = NULL;
    size_t lcap = 0;
    int lines = 0;
    while (getline(&line, &lcap, f) > 0)
        lines++;
    CHECK(lines == 1000, "getline read %d lines", lines);
    CHECK(hak_malloc_usable_size(line) >= lcap, "getline buffer not a hakmem block");
    hak_free(line);
    fclose(f);
    unlink(path);
    return 0;
}

/* free of a bad pointer is caught by hakmem (glibc would say something else
 * or crash with SIGSEGV). */
static int bad_free_child(void *arg)
{
    int kind = (int)(uintptr_t)arg;
    char buf[64];
    void *p;
    memset(buf, 0, sizeof buf);
    if (kind == 0) {
        p = tu_launder(buf + 16);
    } else {
        unsigned char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return 4;
        p = tu_launder(m);
    }
    tu_expect_addr(p);
    free(p);
    return 0;
}

static int expect_hakmem_abort(int kind, char *why, size_t cap)
{
    tu_shared *sh = tu_shared_page();
    char err[2048], st[128];
    int status = 0;
    sh->addr[0] = '\0';
    CHECK(run_in_child(bad_free_child, (void *)(uintptr_t)kind, &status, err, sizeof err) == 0,
          "fork failed");
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
          "free of a bad pointer: child %s, want SIGABRT; stderr: %s",
          tu_status_str(status, st, sizeof st), err);
    CHECK(strstr(err, "hakmem") != NULL, "abort message does not mention hakmem: %s", err);
    CHECK(sh->addr[0] && strstr(err, sh->addr) != NULL,
          "abort message does not contain the address %s: %s", sh->addr, err);
    return 0;
}

static int check_bad_free_stack(char *why, size_t cap)
{
    return expect_hakmem_abort(0, why, cap);
}

static int check_bad_free_mmap(char *why, size_t cap)
{
    return expect_hakmem_abort(1, why, cap);
}

/* The promised semantics hold in the static binary. */
static int check_api_semantics(char *why, size_t cap)
{
    void *p = malloc(0);
    CHECK(p, "malloc(0) returned NULL");
    free(p);
    errno = 0;
    CHECK(malloc(tu_launder_size(SIZE_MAX)) == NULL && errno == ENOMEM,
          "malloc(SIZE_MAX) did not fail with ENOMEM");
    errno = 0;
    CHECK(calloc(tu_launder_size(SIZE_MAX), 2) == NULL && errno == ENOMEM,
          "calloc overflow did not fail with ENOMEM");
    errno = 0;
    CHECK(aligned_alloc(tu_launder_size(3), 16) == NULL && errno == EINVAL,
          "aligned_alloc(3, 16) did not fail with EINVAL");
    void *q = (void *)0x1;
    CHECK(posix_memalign(&q, 12, 16) == EINVAL && q == (void *)0x1,
          "posix_memalign(12) did not return EINVAL");
    CHECK(posix_memalign(&q, 65536, 100) == 0 && tu_is_aligned(q, 65536),
          "posix_memalign(65536, 100) failed or misaligned");
    free(q);
    p = malloc(100);
    CHECK(p, "malloc(100) failed");
    CHECK(realloc(p, tu_launder_size(0)) == NULL, "realloc(p, 0) did not return NULL");
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) != 0");
    p = pvalloc(0);
    CHECK(p && tu_is_aligned(p, tu_page_size()) && malloc_usable_size(p) >= tu_page_size(),
          "pvalloc(0) is not one page");
    free(p);
    p = memalign(24, 10);
    CHECK(p && tu_is_aligned(p, 32), "memalign(24, 10) not 32-aligned");
    free_sized(p, 10);
    p = aligned_alloc(128, 128);
    CHECK(p && tu_is_aligned(p, 128), "aligned_alloc(128, 128) failed");
    free_aligned_sized(p, 128, 128);
    /* calloc memory is zero even when reused */
    for (size_t n = 1; n <= 70000; n = n * 3 + 1) {
        unsigned char *d = malloc(n);
        CHECK(d, "malloc(%zu) failed", n);
        memset(d, 0xAB, n);
        free(d);
        unsigned char *z = calloc(n, 1);
        CHECK(z && tu_all_bytes(z, n, 0), "calloc(%zu, 1) not zero after reuse", n);
        free(z);
    }
    return 0;
}

/* A small threaded workload with blocks freed by other threads. */
#define ST_THREADS 4
#define ST_BLOCKS 4000

typedef struct {
    unsigned tid;
    unsigned char *p[ST_BLOCKS];
    size_t n[ST_BLOCKS];
    int errors;
} st_arg;

static st_arg st_args[ST_THREADS];
static pthread_barrier_t st_barrier;

static void *st_worker(void *v)
{
    st_arg *a = v;
    tu_rng r;
    int round, i;
    tu_rng_seed(&r, a->tid + 1);
    for (round = 0; round < 5; round++) {
        for (i = 0; i < ST_BLOCKS; i++) {
            size_t n = tu_rng_chance(&r, 95, 100) ? tu_rng_range(&r, 1, 1024)
                                                  : tu_rng_range(&r, 1025, 200000);
            a->p[i] = malloc(n);
            if (!a->p[i]) {
                a->errors++;
                continue;
            }
            a->n[i] = n;
            tu_fill(a->p[i], n, tu_seed2(a->tid, (uint64_t)(round * ST_BLOCKS + i)));
        }
        pthread_barrier_wait(&st_barrier);
        /* free the previous thread's blocks */
        unsigned other = (a->tid + ST_THREADS - 1) % ST_THREADS;
        st_arg *o = &st_args[other];
        for (i = 0; i < ST_BLOCKS; i++) {
            if (!o->p[i])
                continue;
            if (tu_check(o->p[i], o->n[i], tu_seed2(other, (uint64_t)(round * ST_BLOCKS + i))) != -1)
                a->errors++;
            free(o->p[i]);
        }
        pthread_barrier_wait(&st_barrier);
    }
    return NULL;
}

static int check_threads(char *why, size_t cap)
{
    pthread_t t[ST_THREADS];
    unsigned i;
    int errors = 0;
    pthread_barrier_init(&st_barrier, NULL, ST_THREADS);
    for (i = 0; i < ST_THREADS; i++) {
        st_args[i].tid = i;
        CHECK(pthread_create(&t[i], NULL, st_worker, &st_args[i]) == 0, "pthread_create failed");
    }
    for (i = 0; i < ST_THREADS; i++) {
        pthread_join(t[i], NULL);
        errors += st_args[i].errors;
    }
    CHECK(errors == 0, "%d corrupted or failed blocks in the threaded workload", errors);
    return 0;
}

/* fork in a static binary with a thread busy allocating. */
static volatile int fork_stop;

static void *fork_busy(void *v)
{
    (void)v;
    unsigned long i = 0;
    while (!fork_stop) {
        void *p = malloc(i % 5000 + 1);
        if (p) {
            memset(p, 1, i % 5000 + 1);
            free(p);
        }
        i++;
    }
    return NULL;
}

static void *fork_child_thread(void *v)
{
    int *ok = v;
    for (int i = 0; i < 1000; i++) {
        unsigned char *p = malloc((size_t)i * 7 + 1);
        if (!p)
            return NULL;
        tu_fill(p, (size_t)i * 7 + 1, (uint64_t)i);
        if (tu_check(p, (size_t)i * 7 + 1, (uint64_t)i) != -1)
            return NULL;
        free(p);
    }
    *ok = 1;
    return NULL;
}

static int fork_child(void *arg)
{
    (void)arg;
    pthread_t t;
    int ok = 0;
    void *big = malloc(4 * TU_MIB);
    if (!big)
        return 2;
    memset(big, 3, 4 * TU_MIB);
    free(big);
    if (pthread_create(&t, NULL, fork_child_thread, &ok) != 0)
        return 3;
    pthread_join(t, NULL);
    return ok ? 0 : 4;
}

static int check_fork(char *why, size_t cap)
{
    pthread_t t;
    char err[1024], st[128];
    int i;
    fork_stop = 0;
    CHECK(pthread_create(&t, NULL, fork_busy, NULL) == 0, "pthread_create failed");
    for (i = 0; i < 10; i++) {
        int status = 0;
        CHECK(run_in_child(fork_child, NULL, &status, err, sizeof err) == 0, "fork failed");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fork_stop = 1;
            pthread_join(t, NULL);
            CHECK(0, "fork #%d: child %s; stderr: %s", i,
                  tu_status_str(status, st, sizeof st), err);
        }
    }
    fork_stop = 1;
    pthread_join(t, NULL);
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    run_check("usable_size_agrees_with_hak", check_usable_size_agrees);
    run_check("cross_names", check_cross_names);
    run_check("libc_internal_allocations", check_libc_internal);
    run_check("bad_free_stack_aborts", check_bad_free_stack);
    run_check("bad_free_foreign_mmap_aborts", check_bad_free_mmap);
    run_check("api_semantics", check_api_semantics);
    run_check("threads", check_threads);
    run_check("fork", check_fork);
    printf("static: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
