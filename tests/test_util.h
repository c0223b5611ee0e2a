/* Shared helpers for the hakmem test programs.
 *
 * Include this header FIRST in every test source: it defines _GNU_SOURCE
 * before any system header is seen.  It does not depend on cmocka, so the
 * static test (which cannot use cmocka) can include it too.
 *
 *   tu_rng_*            deterministic PRNG (splitmix64 seeded xorshift64*)
 *   tu_fill/tu_check    fill a block with a pattern derived from a seed and
 *                       verify it later (detects overlap / corruption)
 *   run_in_child        run a function in a forked child with stderr captured
 *   tu_shared_page      a MAP_SHARED page a child can use to report to the parent
 *   tu_launder          hide a pointer's provenance from the compiler
 *   tu_hardened         the hardened flavor: TU_HARD_HDR, tu_quarantine_flush
 */
#ifndef HAKMEM_TEST_UTIL_H
#define HAKMEM_TEST_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"

/* hakmem exports these; glibc 2.36's <stdlib.h> does not declare them (C23). */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t alignment, size_t size);

/* A cmocka case that is about the interposition itself (glibc's malloc
 * extras, libc's own allocations reaching hakmem) cannot run when the test
 * calls a hak_-only library through tests/hak_names.h (make test-sanitize):
 * it says why and is reported as skipped.  Call at the start of the case, in
 * the main thread. */
#ifdef HAKMEM_TEST_HAK_NAMES
#define TU_SKIP_IF_HAK_NAMES(why)                                              \
    do {                                                                       \
        print_message("skipped against the hak_-only library: %s\n", why);    \
        skip();                                                                \
    } while (0)
#else
#define TU_SKIP_IF_HAK_NAMES(why) do { } while (0)
#endif

#define TU_KIB ((size_t)1024)
#define TU_MIB ((size_t)1024 * 1024)

#define TU_UNUSED __attribute__((unused))

/* ------------------------------------------------------ hardened flavor */

/* The hardened flavor (libhakmem-hardened, hak_build_is_hardened()): the
 * user's pointer is TU_HARD_HDR bytes past the block of the core, whose
 * first two words are the block's header; once a freed block is back in the
 * core they are its free-list link and free key, as at the user's pointer
 * in release and debug.  A freed block first waits in the thread's
 * quarantine (at most 256 blocks and HAKMEM_QUARANTINE_KIB, 1 MiB). */
#define TU_HARD_HDR 16

static inline int tu_hardened(void) { return hak_build_is_hardened() != 0; }

/* The calling thread takes its heap, if it has none yet: a thread's first
 * tiny blocks come from the starters without one (their frees go straight
 * back to their slabs), a mid block needs it.  For tests about the bins. */
static inline void tu_own_heap(void)
{
    free(malloc(2048));
}

/* Hardened: push every block of the calling thread's quarantine back to the
 * core, by freeing 300 blocks of 4 KiB (more blocks and bytes than the
 * default quarantine holds), which stay in it: slab blocks only, so the
 * large tier's counters see just the blocks pushed out.  Release and debug:
 * nothing. */
static inline void tu_quarantine_flush(void)
{
    enum { N = 300 };
    void *b[N];
    int i;
    if (!tu_hardened())
        return;
    for (i = 0; i < N; i++)
        b[i] = malloc(4096);
    for (i = 0; i < N; i++)
        free(b[i]);
}

/* ------------------------------------------------------------------ PRNG */

typedef struct { uint64_t s; } tu_rng;

static inline uint64_t tu_splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static inline void tu_rng_seed(tu_rng *r, uint64_t seed)
{
    r->s = tu_splitmix64(seed);
    if (r->s == 0)
        r->s = 0x2545F4914F6CDD1Dull;
}

static inline uint64_t tu_rng_next(tu_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform-ish value in [lo, hi] (inclusive). */
static inline size_t tu_rng_range(tu_rng *r, size_t lo, size_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + (size_t)(tu_rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* True with probability num/den. */
static inline int tu_rng_chance(tu_rng *r, unsigned num, unsigned den)
{
    return (tu_rng_next(r) % den) < num;
}

/* -------------------------------------------------------------- patterns */

/* Derive a pattern seed from two numbers (e.g. thread id and sequence no). */
static inline uint64_t tu_seed2(uint64_t a, uint64_t b)
{
    return tu_splitmix64(a * 0x100000001B3ull ^ tu_splitmix64(b));
}

static inline uint64_t tu_word(uint64_t seed, size_t i)
{
    /* Cheap, position dependent, never the same for two nearby words. */
    return (seed ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull)) + (uint64_t)i;
}

/* Fill n bytes at p with the pattern for seed. p may be unaligned. */
static inline void tu_fill(void *p, size_t n, uint64_t seed)
{
    unsigned char *c = p;
    size_t words = n / 8, i;
    for (i = 0; i < words; i++) {
        uint64_t w = tu_word(seed, i);
        memcpy(c + i * 8, &w, 8);
    }
    if (n % 8) {
        uint64_t w = tu_word(seed, words);
        memcpy(c + words * 8, &w, n % 8);
    }
}

/* Return the offset of the first byte that does not match, or -1. */
static inline long tu_check(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *c = p;
    size_t words = n / 8, i;
    for (i = 0; i < words; i++) {
        uint64_t w = tu_word(seed, i), got;
        memcpy(&got, c + i * 8, 8);
        if (got != w) {
            size_t b;
            for (b = 0; b < 8; b++)
                if (((const unsigned char *)&got)[b] != ((const unsigned char *)&w)[b])
                    return (long)(i * 8 + b);
        }
    }
    if (n % 8) {
        uint64_t w = tu_word(seed, words);
        size_t b;
        for (b = 0; b < n % 8; b++)
            if (c[words * 8 + b] != ((const unsigned char *)&w)[b])
                return (long)(words * 8 + b);
    }
    return -1;
}

/* Return 1 if all n bytes at p equal v. */
static inline int tu_all_bytes(const void *p, size_t n, unsigned char v)
{
    const unsigned char *c = p;
    size_t i;
    for (i = 0; i < n; i++)
        if (c[i] != v)
            return 0;
    return 1;
}

/* Hide where a pointer came from, so that the compiler neither warns about
 * deliberate misuse (free of a stack object, double free) nor optimizes it. */
static inline void *tu_launder(void *p)
{
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

static inline size_t tu_launder_size(size_t n)
{
    __asm__ volatile("" : "+r"(n));
    return n;
}

static inline int tu_is_aligned(const void *p, size_t a)
{
    return ((uintptr_t)p & (a - 1)) == 0;
}

static inline size_t tu_page_size(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (size_t)ps : 4096;
}

/* Monotonic time in seconds. */
static inline double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Scale factor for workload sizes: HAKMEM_TEST_SCALE (default 1.0). */
static inline double tu_scale(void)
{
    const char *s = getenv("HAKMEM_TEST_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

/* --------------------------------------------------------- shared memory */

/* A page shared between the parent and children forked afterwards.  It is
 * mapped with mmap (not the allocator under test).  Children write the
 * expected address string ("%p") here before they do something fatal. */
typedef struct {
    char addr[64];      /* "%p" of the pointer the child misuses          */
    volatile int stage; /* how far the child got (for diagnostics)        */
    char note[256];     /* free-form message from the child               */
} tu_shared;

static inline tu_shared *tu_shared_page(void)
{
    static tu_shared *page;
    if (!page) {
        void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            perror("mmap shared page");
            abort();
        }
        page = m;
    }
    return page;
}

static inline void tu_shared_reset(void)
{
    tu_shared *s = tu_shared_page();
    memset(s, 0, sizeof *s);
}

/* Record the %p form of ptr in the shared page (call in the child). */
static inline void tu_expect_addr(const void *ptr)
{
    tu_shared *s = tu_shared_page();
    snprintf(s->addr, sizeof s->addr, "%p", ptr);
}

/* ------------------------------------------------------------ statistics */

/* The last text hak_stats_json gave tu_stat (for messages). */
static char tu_stats_text[64 * 1024];

/* One number of hak_stats_json; *ok = 0 if the key is missing. */
static inline uint64_t tu_stat(const char *key, int *ok)
{
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    size_t need = hak_stats_json(tu_stats_text, sizeof tu_stats_text);
    const char *s = need < sizeof tu_stats_text ? strstr(tu_stats_text, pat) : NULL;
    *ok = s != NULL;
    return s ? strtoull(s + strlen(pat), NULL, 10) : 0;
}

/* One number of size class c's object in hak_stats_json ("flushes",
 * "refills"...); *ok = 0 if it is missing. */
static inline uint64_t tu_class_stat(unsigned c, const char *key, int *ok)
{
    char pat[80];
    size_t need = hak_stats_json(tu_stats_text, sizeof tu_stats_text);
    snprintf(pat, sizeof pat, "{\"class\":%u,", c);
    const char *o = need < sizeof tu_stats_text ? strstr(tu_stats_text, pat) : NULL;
    const char *end = o ? strchr(o, '}') : NULL;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *k = o ? strstr(o, pat) : NULL;
    *ok = k && k < end;
    return *ok ? strtoull(k + strlen(pat), NULL, 10) : 0;
}

/* --------------------------------------------------------- run_in_child */

/* Seconds a child may run before SIGALRM kills it (deadlock -> failure). */
#ifndef TU_CHILD_TIMEOUT
#define TU_CHILD_TIMEOUT 30
#endif

/* Fork; in the child, redirect stderr into a pipe, disable core dumps, arm an
 * alarm, call fn(arg) and _exit with its return value.  The parent collects
 * the child's stderr into errbuf (NUL terminated, truncated to errcap-1; may
 * be NULL) and its wait status into *status.
 * Returns 0 if the child was run and reaped, -1 on a fork/pipe error. */
static inline int run_in_child(int (*fn)(void *), void *arg, int *status,
                               char *errbuf, size_t errcap)
{
    int fds[2];
    pid_t pid;
    size_t len = 0;

    if (errbuf && errcap)
        errbuf[0] = '\0';
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        struct rlimit rl = { 0, 0 };
        setrlimit(RLIMIT_CORE, &rl);
        close(fds[0]);
        dup2(fds[1], 2);
        close(fds[1]);
        signal(SIGALRM, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        alarm(TU_CHILD_TIMEOUT);
        _exit(fn(arg));
    }
    close(fds[1]);
    for (;;) {
        char tmp[512];
        ssize_t n = read(fds[0], tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (errbuf && errcap > 1 && len < errcap - 1) {
            size_t take = (size_t)n;
            if (take > errcap - 1 - len)
                take = errcap - 1 - len;
            memcpy(errbuf + len, tmp, take);
            len += take;
            errbuf[len] = '\0';
        }
    }
    close(fds[0]);
    while (waitpid(pid, status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return 0;
}

/* Describe a wait status, for failure messages. */
static inline const char *tu_status_str(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, cap, "wait status 0x%x", status);
    return buf;
}

/* Wait for pid with a deadline in seconds; kill it with SIGKILL if it does
 * not finish.  Returns 0 and the status, or -1 if it had to be killed. */
static inline int tu_wait_timeout(pid_t pid, int *status, double seconds)
{
    double end = tu_now() + seconds;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
        if (tu_now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            return -1;
        }
        usleep(2000);
    }
}

/* ------------------------------------------------------ this binary again */

typedef struct {
    const char *self, *flag, *workload;
    const char *const *vars;
} tu_exec_req;

/* In the child: exec "self flag workload" with exactly PATH and vars (NULL
 * terminated, at most 14) as its environment. */
static inline int tu_exec_self(void *arg)
{
    const tu_exec_req *rq = arg;
    char *envp[16], path[4096];
    const char *p = getenv("PATH");
    int n = 0;

    snprintf(path, sizeof path, "PATH=%s", p ? p : "/usr/bin:/bin");
    envp[n++] = path;
    for (const char *const *v = rq->vars; v && *v && n < 15; v++)
        envp[n++] = (char *)*v;
    envp[n] = NULL;
    char *argv[] = { (char *)rq->self, (char *)rq->flag, (char *)rq->workload, NULL };
    execve(rq->self, argv, envp);
    return 127;
}

/* Run this binary (self) again as "self flag workload" in a child with
 * exactly PATH plus vars as its environment, its stderr into err.  Returns
 * 0 if it exited 0; otherwise -1 with what happened in why. */
static inline int tu_run_self(const char *self, const char *flag, const char *workload,
                              const char *const *vars, char *err, size_t errcap,
                              char *why, size_t whycap)
{
    tu_exec_req rq = { self, flag, workload, vars };
    char st[128];
    int status = 0;

    if (run_in_child(tu_exec_self, &rq, &status, err, errcap) != 0) {
        snprintf(why, whycap, "fork failed: %s", strerror(errno));
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(why, whycap, "child workload \"%s\" %s, want exit 0", workload,
                 tu_status_str(status, st, sizeof st));
        return -1;
    }
    return 0;
}

#endif /* HAKMEM_TEST_UTIL_H */
