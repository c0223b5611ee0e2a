/* misuse_matrix: 117 kinds of heap misuse, each run in a child process under
 * an allocator given by LD_PRELOAD, and what became of it.
 *
 *   misuse_matrix [--expect hardened|release] LIB [LIB...]
 *       LIB: a path to preload, or "system" (glibc's malloc)
 *   misuse_matrix --options LIB   each HAKMEM_ option of the hardened flavor,
 *                                 off and on, against the misuse it is for
 *   misuse_matrix --case N        (internal: the child runs case N)
 *
 * The kinds: double frees, invalid frees (interior, unaligned, before the
 * block, past its end), overflows and underflows of 1 byte, 32 bytes and
 * 1 MiB (by a store loop and by memcpy), writes and reads after free,
 * writes through the old pointer of a moved realloc, free_sized with the
 * wrong size, immediate reuse of a freed block, each in four tiers (24 B,
 * 24 KiB, 1 MiB, 40 MiB), plus zero-size blocks and foreign pointers.
 *
 * Outcomes, as the parent classifies the child:
 *   STOP   killed by SIGABRT with a line "<name>: ..." from the allocator
 *          on stderr (for hakmem: "hakmem: ...")
 *   GUARD  SIGSEGV/SIGBUS at an address in a PROT_NONE mapping (a guard page,
 *          or a quarantined large block), found from the child's
 *          /proc/self/maps by its signal handler
 *   FAULT  SIGSEGV/SIGBUS elsewhere (an unmapped address: luck, not a check)
 *   KILL   another signal or a non-zero exit (a crash, an abort without a
 *          message)
 *   PREV   reuse cases: the freed block was not handed out again at once
 *          (the quarantine), so the stale pointer does not alias a new block
 *   ZERO   read cases: the read after free saw zeros, not the old bytes
 *   MISS   the program ran on as if nothing happened
 *
 * "caught" counts STOP, GUARD and PREV.  With --expect, the run fails unless
 * the first library's outcomes match the table below (hardened) or every
 * double and invalid free stops (release, debug), and prints one line
 * "misuse: N passed, N failed".  Built at -O0 with -fno-builtin, and every
 * pointer goes through a volatile, so that no misuse is optimised away.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024 * 1024)

static char *volatile sink;
static char global_buf[64] __attribute__((aligned(16)));

/* ------------------------------------------------------------ child side */

static void on_fault(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    uintptr_t a = (uintptr_t)si->si_addr;
    const char *kind = "FAULT";
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perm[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perm) == 3 && a >= lo && a < hi) {
            if (strncmp(perm, "---", 3) == 0) kind = "GUARD";
            break;
        }
    }
    fprintf(stderr, "misuse_matrix: %s at %p (signal %d)\n", kind, (void *)a, sig);
    fflush(stderr);
    _exit(kind[0] == 'G' ? 90 : 91);
}

static char *fill(size_t n) {
    char *p = malloc(n);
    if (!p) { fprintf(stderr, "misuse_matrix: malloc(%zu) failed\n", n); _exit(92); }
    memset(p, 'A', n);
    sink = p;
    return p;
}

static void churn(void) {
    /* other sizes than the tiers', freed again: quarantine traffic */
    for (int i = 0; i < 2000; i++) {
        char *q = malloc(48 + (i % 7) * 16);
        memset(q, 1, 48);
        free(q);
    }
}

typedef void (*case_fn)(size_t n);

static void c_double_free(size_t n) { char *p = fill(n); free(p); free(p); }
static void c_double_free_delayed(size_t n) {
    char *p = fill(n), *q = fill(n);
    free(p); free(q); free(p);
}
static void c_double_free_churn(size_t n) { char *p = fill(n); free(p); churn(); free(p); }
static void c_free_interior(size_t n) { char *p = fill(n); free(p + 16); }
static void c_free_unaligned(size_t n) { char *p = fill(n); free(p + 1); }
static void c_free_before(size_t n) { char *p = fill(n); free(p - 16); }
static void c_free_past_end(size_t n) { char *p = fill(n); free(p + ((n + 15) & ~(size_t)15)); }
static void c_realloc_freed(size_t n) { char *p = fill(n); free(p); sink = realloc(p, n * 2); }
static void c_usable_freed(size_t n) {
    char *p = fill(n); free(p);
    sink = (char *)(uintptr_t)malloc_usable_size(p);
}
static void c_overflow_1(size_t n) { char *volatile p = fill(n); p[n] = 'X'; free(p); }
static void c_overflow_1_memcpy(size_t n) {
    char *p = fill(n), *src = fill(n + 1); memcpy(p, src, n + 1); free(p);
}
static void c_overflow_32(size_t n) {
    char *volatile p = fill(n);
    for (size_t i = 0; i < 32; i++) p[n + i] = 'X';
    free(p);
}
static void c_overflow_32_memcpy(size_t n) {
    char *p = fill(n), *src = fill(n + 32); memcpy(p, src, n + 32); free(p);
}
static void c_overflow_1m(size_t n) {
    char *p = fill(n), *src = fill(n + MIB); memcpy(p, src, n + MIB); free(p);
}
static void c_underflow_1(size_t n) { char *volatile p = fill(n); p[-1] = 'X'; free(p); }
static void c_underflow_32(size_t n) {
    char *volatile p = fill(n);
    for (int i = 1; i <= 32; i++) p[-i] = 'X';
    free(p);
}
static void c_underflow_1m(size_t n) {
    char *p = fill(n), *src = fill(MIB); memcpy(p - MIB, src, MIB); free(p);
}
static void c_overflow_realloc(size_t n) { char *volatile p = fill(n); p[n] = 'X'; sink = realloc(p, n * 2); }
static void c_uaf_write_first(size_t n) { char *volatile p = fill(n); free(p); p[0] = 'X'; churn(); exit(0); }
static void c_uaf_write_mid(size_t n) { char *volatile p = fill(n); free(p); p[n / 2] = 'X'; churn(); exit(0); }
static void c_uaf_write_last(size_t n) { char *volatile p = fill(n); free(p); p[n - 1] = 'X'; churn(); exit(0); }
static void uaf_read(char *volatile p, size_t at) {
    char c = p[at];
    if (c == 0) { fprintf(stderr, "misuse_matrix: ZERO\n"); exit(0); }
}
static void c_uaf_read_first(size_t n) { char *p = fill(n); free(p); uaf_read(p, 0); }
static void c_uaf_read_mid(size_t n) { char *p = fill(n); free(p); uaf_read(p, n / 2); }
static void c_uaf_read_memcpy(size_t n) {
    char *p = fill(n), *dst = malloc(n);
    free(p);
    memcpy(dst, p, n);
    for (size_t i = 0; i < n; i++)
        if (dst[i] == 'A') return;                /* old bytes seen */
    fprintf(stderr, "misuse_matrix: ZERO\n");
    exit(0);
}
static void c_write_after_realloc(size_t n) {
    char *volatile p = fill(n);
    /* a block after p, so that a large block cannot grow in place */
    char *volatile after = fill(n);
    (void)after;
    char *q = realloc(p, n * 4 + 4096);
    if (q == p) { fprintf(stderr, "misuse_matrix: realloc did not move\n"); exit(0); }
    p[0] = 'X';
    free(q);
    churn();
    exit(0);
}
/* C23; glibc 2.36 has none: weak, so that a preloaded allocator's is used */
extern void free_sized(void *, size_t) __attribute__((weak));
static void c_free_sized_wrong(size_t n) {
    char *p = fill(n);
    if (free_sized) free_sized(p, n + 16);
    else free(p);
}
static void c_reuse(size_t n) {
    char *p = fill(n);
    free(p);
    char *q = malloc(n);
    if (q != p) { fprintf(stderr, "misuse_matrix: PREV\n"); exit(0); }
}

static void c_zero_write(size_t n) { (void)n; char *volatile p = malloc(0); p[0] = 'X'; free(p); }
static void c_zero_write_8(size_t n) { (void)n; char *volatile p = malloc(0); memset(p, 'X', 8); free(p); }
static void c_free_stack(size_t n) { (void)n; char buf[64] __attribute__((aligned(16))); sink = buf; free(sink); }
static void c_free_global(size_t n) { (void)n; free(global_buf); }
static void c_free_foreign_mmap(size_t n) {
    (void)n;
    char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    free(m + 4096);
}
static void c_free_superslab_base(size_t n) {
    (void)n;
    char *p = fill(24);
    free((char *)((uintptr_t)p & ~(uintptr_t)(2 * MIB - 1)));
}
static void c_realloc_stack(size_t n) { (void)n; char buf[64] __attribute__((aligned(16))); sink = buf; sink = realloc(sink, 128); }
static void c_usable_stack(size_t n) {
    (void)n; char buf[64] __attribute__((aligned(16))); sink = buf;
    sink = (char *)(uintptr_t)malloc_usable_size(sink);
}
/* Not a misuse: prints whether 56 fresh 48-byte blocks came in address
 * order (RANDOM_CARVE off) or not.  The first 7 of a class come from the
 * starter heap (shared by young threads), the rest from this heap's slab
 * (8 are skipped). */
static void carve_order(void) {
    char *b[64];
    int sequential = 1;
    for (int i = 0; i < 8; i++) sink = malloc(40);
    for (int i = 0; i < 56; i++) b[i] = malloc(40);
    for (int i = 1; i < 56; i++)
        if (b[i] != b[i - 1] + (b[1] - b[0])) sequential = 0;
    fprintf(stderr, "misuse_matrix: ORDER %s\n", sequential ? "sequential" : "shuffled");
    exit(0);
}

static void *thread_free(void *p) { free(p); return NULL; }
#include <pthread.h>
static void c_double_free_threads(size_t n) {
    (void)n;
    char *p = fill(64);
    pthread_t t;
    pthread_create(&t, NULL, thread_free, p);
    pthread_join(t, NULL);
    free(p);
}

/* Expected outcome in the hardened flavor, per tier (24 B, 24 KiB, 1 MiB,
 * 40 MiB); 'S' STOP, 'G' GUARD, 'P' PREV, 'Z' ZERO, 'M' MISS, 'F' FAULT;
 * '*' any of STOP, GUARD and FAULT: where the write lands depends on what is
 * mapped below the block (a huge block's mapping has nothing of ours below
 * it, so an underflow past its header faults on whatever is there).
 * Class: 'F' a double or invalid free (every flavor stops it), 'O' other. */
typedef struct {
    const char *name;
    case_fn fn;
    char cls;
    const char *hardened;       /* one letter per tier, or one for a tierless case */
} kind_t;

static const kind_t kinds[] = {
    { "double free",                     c_double_free,          'F', "SSSS" },
    { "double free, another in between", c_double_free_delayed,  'F', "SSSS" },
    { "double free after 2000 frees",    c_double_free_churn,    'F', "SSSS" },
    { "free of an interior pointer",     c_free_interior,        'F', "SSSS" },
    { "free of an unaligned pointer",    c_free_unaligned,       'F', "SSSS" },
    { "free 16 bytes before the block",  c_free_before,          'F', "SSSS" },
    { "free just past the block",        c_free_past_end,        'F', "SSSS" },
    { "realloc of a freed block",        c_realloc_freed,        'F', "SSSS" },
    { "usable size of a freed block",    c_usable_freed,         'O', "SSSS" },
    { "overflow 1 B (store)",            c_overflow_1,           'O', "SSSS" },
    { "overflow 1 B (memcpy)",           c_overflow_1_memcpy,    'O', "SSSS" },
    { "overflow 32 B (stores)",          c_overflow_32,          'O', "SSSS" },
    { "overflow 32 B (memcpy)",          c_overflow_32_memcpy,   'O', "SSSS" },
    { "overflow 1 MiB (memcpy)",         c_overflow_1m,          'O', "SSGG" },
    { "underflow 1 B (store)",           c_underflow_1,          'O', "SSSS" },
    { "underflow 32 B (stores)",         c_underflow_32,         'O', "SSSF" },
    { "underflow 1 MiB (memcpy)",        c_underflow_1m,         'O', "****" },
    { "overflow 1 B, then realloc",      c_overflow_realloc,     'O', "SSSS" },
    { "write after free, first byte",    c_uaf_write_first,      'O', "SSSS" },
    /* 24 KiB: the quarantine checks a block's first 192 and last 64 bytes;
     * 1 MiB: zeroed and checked in its first 64 KiB only, and not PROT_NONE
     * in quarantine (only huge blocks are, with HAKMEM_GUARD_PAGES=1) */
    { "write after free, middle byte",   c_uaf_write_mid,        'O', "SMMG" },
    { "write after free, last byte",     c_uaf_write_last,       'O', "SSMG" },
    { "read after free, first byte",     c_uaf_read_first,       'O', "ZZZZ" },
    { "read after free, middle byte",    c_uaf_read_mid,         'O', "ZZMG" },
    { "read after free (memcpy)",        c_uaf_read_memcpy,      'O', "ZZMG" },
    { "write through a moved realloc's old pointer", c_write_after_realloc, 'O', "SSSS" },
    { "free_sized with the wrong size",  c_free_sized_wrong,     'O', "SSSS" },
    { "freed block handed out again at once", c_reuse,           'O', "PPPP" },
    { "malloc(0), 1 byte written",       c_zero_write,           'O', "S" },
    { "malloc(0), 8 bytes written",      c_zero_write_8,         'O', "S" },
    { "free of a stack address",         c_free_stack,           'F', "S" },
    { "free of a global",                c_free_global,          'F', "S" },
    { "free inside a foreign mapping",   c_free_foreign_mmap,    'F', "S" },
    { "free of a SuperSlab's start",     c_free_superslab_base,  'F', "S" },
    { "realloc of a stack address",      c_realloc_stack,        'F', "S" },
    { "usable size of a stack address",  c_usable_stack,         'O', "S" },
    { "double free from two threads",    c_double_free_threads,  'F', "S" },
};
#define NKINDS (sizeof kinds / sizeof kinds[0])
static const size_t tier_size[4] = { 24, 24 * 1024, MIB, 40 * MIB };
static const char *tier_name[4] = { "24 B", "24 KiB", "1 MiB", "40 MiB" };

typedef struct { unsigned kind, tier; } case_t;
static case_t cases[NKINDS * 4];
static unsigned ncases;

static void build_cases(void) {
    for (unsigned k = 0; k < NKINDS; k++) {
        unsigned nt = strlen(kinds[k].hardened) == 4 ? 4 : 1;
        for (unsigned t = 0; t < nt; t++) cases[ncases++] = (case_t){ k, t };
    }
}

static int run_child_case(unsigned i) {
    stack_t ss = { .ss_sp = malloc(1 << 16), .ss_size = 1 << 16 };
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    const case_t *c = &cases[i];
    kinds[c->kind].fn(tier_size[c->tier]);
    exit(0);
}

/* ------------------------------------------------------------ parent side */

static char last_err[4096];

/* Run case i (or the carve-order probe for i == ~0u) under lib, with the
 * environment assignment `env` ("NAME=VALUE") if given. */
static char run_case_env(const char *self, const char *lib, unsigned i, const char *env) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return '?';
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        char num[16];
        snprintf(num, sizeof num, "%u", i);
        if (strcmp(lib, "system") != 0) setenv("LD_PRELOAD", lib, 1);
        else unsetenv("LD_PRELOAD");
        if (env) putenv((char *)env);
        if (i == ~0u) execl(self, self, "--carve", (char *)NULL);
        else execl(self, self, "--case", num, (char *)NULL);
        _exit(93);
    }
    close(pipefd[1]);
    char err[4096];
    size_t len = 0;
    ssize_t r;
    while ((r = read(pipefd[0], err + len, sizeof err - 1 - len)) > 0) len += (size_t)r;
    err[len] = 0;
    close(pipefd[0]);
    int st;
    waitpid(pid, &st, 0);
    memcpy(last_err, err, len + 1);
    int own = strstr(err, "misuse_matrix:") != NULL;
    if (WIFEXITED(st)) {
        if (WEXITSTATUS(st) == 90) return 'G';
        if (WEXITSTATUS(st) == 91) return 'F';
        if (WEXITSTATUS(st) == 0) {
            if (strstr(err, "misuse_matrix: PREV")) return 'P';
            if (strstr(err, "misuse_matrix: ZERO")) return 'Z';
            return 'M';
        }
        /* glibc and others print a message and abort; some exit(1) */
        return err[0] && !own ? 'S' : 'K';
    }
    if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        /* a message from the allocator: a line that is not ours */
        if ((sig == SIGABRT || sig == SIGTRAP || sig == SIGILL) && err[0] && !own) return 'S';
        return 'K';
    }
    return '?';
}

static char run_case(const char *self, const char *lib, unsigned i) { return run_case_env(self, lib, i, NULL); }

static const char *outcome_name(char o) {
    switch (o) {
    case 'S': return "STOP";
    case 'G': return "GUARD";
    case 'F': return "FAULT";
    case 'K': return "KILL";
    case 'P': return "PREV";
    case 'Z': return "ZERO";
    case 'M': return "MISS";
    default: return "?";
    }
}

/* --options LIB: each option of the hardened flavor, off and on, changes the
 * outcome of the misuse it is there for. */
static int find_case(const char *name, unsigned tier) {
    for (unsigned i = 0; i < ncases; i++)
        if (strcmp(kinds[cases[i].kind].name, name) == 0 && cases[i].tier == tier) return (int)i;
    fprintf(stderr, "misuse_matrix: no case %s/%u\n", name, tier);
    exit(2);
}

static int option_tests(const char *lib) {
    static const struct {
        const char *kind;
        unsigned tier;
        const char *env_off, *env_on;
        char off, on;
    } t[] = {
        { "overflow 1 B (store)", 0, "HAKMEM_CANARY=0", "HAKMEM_CANARY=1", 'M', 'S' },
        { "overflow 32 B (memcpy)", 1, "HAKMEM_CANARY=0", "HAKMEM_CANARY=1", 'M', 'S' },
        { "write after free, first byte", 0, "HAKMEM_QUARANTINE_KIB=0", "HAKMEM_QUARANTINE_KIB=1024", 'M', 'S' },
        { "freed block handed out again at once", 0, "HAKMEM_QUARANTINE_KIB=0", "HAKMEM_QUARANTINE_KIB=64", 'M', 'P' },
        { "read after free, first byte", 1, "HAKMEM_ZERO_ON_FREE_KIB=0", "HAKMEM_ZERO_ON_FREE_KIB=64", 'M', 'Z' },
        { "overflow 1 MiB (memcpy)", 2, "HAKMEM_GUARD_PAGES=0", "HAKMEM_GUARD_PAGES=1", 'S', 'G' },
        { "write after free, middle byte", 2, "HAKMEM_GUARD_PAGES=1", "HAKMEM_GUARD_PAGES=2", 'M', 'G' },
        { "read after free, middle byte", 3, "HAKMEM_GUARD_PAGES=0", "HAKMEM_GUARD_PAGES=1", 'M', 'G' },
    };
    int pass = 0, fail = 0;
    for (size_t j = 0; j < sizeof t / sizeof t[0]; j++) {
        int i = find_case(t[j].kind, t[j].tier);
        char o0 = run_case_env("/proc/self/exe", lib, (unsigned)i, t[j].env_off);
        char o1 = run_case_env("/proc/self/exe", lib, (unsigned)i, t[j].env_on);
        int ok = o0 == t[j].off && o1 == t[j].on;
        printf("%s %-40s %-7s %-26s %-6s %-27s %s\n", ok ? "ok  " : "FAIL", t[j].kind, tier_name[t[j].tier],
               t[j].env_off, outcome_name(o0), t[j].env_on, outcome_name(o1));
        ok ? pass++ : fail++;
    }
    static const char *carve[2] = { "HAKMEM_RANDOM_CARVE=0", "HAKMEM_RANDOM_CARVE=1" };
    int ok = 1;
    for (int v = 0; v < 2; v++) {
        run_case_env("/proc/self/exe", lib, ~0u, carve[v]);
        const char *want = v ? "ORDER shuffled" : "ORDER sequential";
        printf("     %s: %s\n", carve[v], strstr(last_err, "ORDER shuffled") ? "shuffled" : strstr(last_err, "ORDER sequential") ? "sequential" : "?");
        if (!strstr(last_err, want)) ok = 0;
    }
    printf("%s fresh 48-byte blocks in address order with RANDOM_CARVE=0, not with 1\n", ok ? "ok  " : "FAIL");
    ok ? pass++ : fail++;
    printf("options: %d passed, %d failed\n", pass, fail);
    return fail != 0;
}

int main(int argc, char **argv) {
    build_cases();
    if (argc == 3 && strcmp(argv[1], "--case") == 0) return run_child_case((unsigned)atoi(argv[2]));
    if (argc == 2 && strcmp(argv[1], "--carve") == 0) carve_order();
    if (argc == 3 && strcmp(argv[1], "--options") == 0) return option_tests(argv[2]);
    const char *expect = NULL;
    int a = 1;
    if (argc > 2 && strcmp(argv[1], "--expect") == 0) {
        expect = argv[2];
        a = 3;
    }
    if (a >= argc) {
        fprintf(stderr, "usage: %s [--expect hardened|release] LIB|system [LIB...]\n", argv[0]);
        return 2;
    }
    int nlib = argc - a;
    static char out[8][NKINDS * 4];
    for (int l = 0; l < nlib && l < 8; l++)
        for (unsigned i = 0; i < ncases; i++) out[l][i] = run_case("/proc/self/exe", argv[a + l], i);
    printf("%-46s %-7s", "misuse", "tier");
    for (int l = 0; l < nlib && l < 8; l++) {
        const char *s = strrchr(argv[a + l], '/');
        printf(" %-8.8s", s ? s + 1 : argv[a + l]);
    }
    printf("\n");
    int caught[8] = { 0 }, pass = 0, fail = 0;
    for (unsigned i = 0; i < ncases; i++) {
        const kind_t *k = &kinds[cases[i].kind];
        int tiered = strlen(k->hardened) == 4;
        printf("%-46s %-7s", k->name, tiered ? tier_name[cases[i].tier] : "-");
        for (int l = 0; l < nlib && l < 8; l++) {
            char o = out[l][i];
            printf(" %-8s", outcome_name(o));
            if (o == 'S' || o == 'G' || o == 'P') caught[l]++;
        }
        if (expect) {
            char o = out[0][i], want = k->hardened[tiered ? cases[i].tier : 0];
            int ok = strcmp(expect, "hardened") == 0
                         ? o == want || (want == '*' && (o == 'S' || o == 'G' || o == 'F'))
                         : (k->cls != 'F' || o == 'S');
            if (!ok)
                printf("   <- expected %s", strcmp(expect, "hardened") != 0 ? "STOP"
                                         : want == '*' ? "STOP, GUARD or FAULT" : outcome_name(want));
            ok ? pass++ : fail++;
        }
        printf("\n");
    }
    printf("%-54s", "caught (STOP, GUARD, PREV)");
    for (int l = 0; l < nlib && l < 8; l++) printf(" %3d/%-4u", caught[l], ncases);
    printf("\n");
    if (expect) {
        printf("misuse: %d passed, %d failed\n", pass, fail);
        return fail != 0;
    }
    return 0;
}
