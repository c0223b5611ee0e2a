/* signal_reentry: what happens when a signal handler allocates while the
 * thread it interrupted is inside malloc or free.  Not a test (this is not
 * supported: README "Signal handlers"); the evidence for that section.
 *
 *   make build/tests/signal_reentry && build/tests/signal_reentry [SECONDS]
 *
 * For each pair (what the thread does in a tight loop, what the handler
 * does) a child process runs the loop for SECONDS (default 1) while another
 * thread sends it SIGUSR1 in bursts; the child checks every block's pattern
 * and ends with hak_check().  One line per pair: ok, corrupted (a block
 * changed under its owner: handed out twice), heap check failed, deadlock
 * (no progress for 10 s), or the signal that killed it.  Outcomes change
 * from run to run: "ok" means only that nothing went wrong this time. */
#include "test_util.h"

static char hmode;                       /* what the handler does */
static volatile sig_atomic_t hbad;
static unsigned hk;
static unsigned char *hring[16];
static size_t hsize[16];

static size_t handler_size(char m, unsigned k)
{
    switch (m) {
    case 'p': case 'k': return 16 + (k * 37) % 1000;   /* tiny */
    case 'm': return 2000 + (k * 997) % 60000;          /* mid */
    default: return 300000 + (k * 4096) % 700000;       /* page runs */
    }
}

static void handler(int sig)
{
    int e = errno;
    unsigned k = hk++;
    (void)sig;
    if (hmode == 'k') {                  /* keeps 16 blocks, replaces one */
        unsigned i = k % 16;
        if (hring[i]) {
            if (!tu_all_bytes(hring[i], hsize[i], (unsigned char)(i + 1)))
                hbad = 1;
            free(hring[i]);
        }
        hsize[i] = handler_size('k', k);
        hring[i] = malloc(hsize[i]);
        if (hring[i])
            memset(hring[i], i + 1, hsize[i]);
    } else {                             /* frees what it allocated */
        size_t n = handler_size(hmode, k);
        unsigned char *p = malloc(n);
        if (p) {
            memset(p, 0x5A, n < 4096 ? n : 4096);
            free(p);
        }
    }
    errno = e;
}

static pthread_t target;
static volatile int stop;

static void *kicker(void *v)
{
    struct timespec ts = { 0, 100 * 1000 };
    (void)v;
    while (!stop) {
        for (int i = 0; i < 20; i++)
            pthread_kill(target, SIGUSR1);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

typedef struct { char main_mode, handler_mode; double secs; } pair;

static size_t main_size(tu_rng *r, char m)
{
    unsigned c = (unsigned)(tu_rng_next(r) % 100);
    if (m == 't' || (m == 'x' && c < 80))
        return tu_rng_range(r, 1, 1024);
    if (m == 'm' || (m == 'x' && c < 97))
        return tu_rng_range(r, 1025, 65536);
    return tu_rng_range(r, 262145, 1 << 20);
}

static int run_pair(void *v)
{
    const pair *pr = v;
    enum { N = 256 };
    static unsigned char *p[N];
    static size_t n[N];
    static uint64_t sd[N];
    struct sigaction sa;
    pthread_t k;
    tu_rng r;
    uint64_t seq = 0;

    alarm(10);
    hmode = pr->handler_mode;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    target = pthread_self();
    pthread_create(&k, NULL, kicker, NULL);
    tu_rng_seed(&r, 1);
    double end = tu_now() + pr->secs;
    while (tu_now() < end && !hbad) {
        for (int j = 0; j < 1000; j++) {
            unsigned i = (unsigned)(tu_rng_next(&r) % N);
            if (p[i]) {
                if (tu_check(p[i], n[i] < 64 ? n[i] : 64, sd[i]) >= 0)
                    return 3;
                free(p[i]);
                p[i] = NULL;
            } else {
                n[i] = main_size(&r, pr->main_mode);
                p[i] = malloc(n[i]);
                if (!p[i])
                    return 5;
                sd[i] = seq++;
                tu_fill(p[i], n[i] < 64 ? n[i] : 64, sd[i]);
            }
        }
    }
    stop = 1;
    pthread_join(k, NULL);
    if (hbad)
        return 3;
    return hak_check() ? 4 : 0;
}

int main(int argc, char **argv)
{
    static const char mains[] = "tmlx", handlers[] = "pkml";
    static const char *const mname[] = { "tiny", "mid", "large", "mixed" };
    static const char *const hname[] = { "tiny malloc+free", "tiny, keeps 16", "mid malloc+free",
                                         "large malloc+free" };
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    char err[1024], st[128];

    printf("%-8s %-18s %s\n", "thread", "handler", "outcome");
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            pair pr = { mains[a], handlers[b], secs };
            int status = 0;
            const char *what;
            run_in_child(run_pair, &pr, &status, err, sizeof err);
            if (WIFEXITED(status))
                switch (WEXITSTATUS(status)) {
                case 0: what = "ok"; break;
                case 3: what = "corrupted: a block changed under its owner"; break;
                case 4: what = "heap check failed (hak_check)"; break;
                case 5: what = "malloc returned NULL"; break;
                default: what = tu_status_str(status, st, sizeof st);
                }
            else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
                what = "deadlock (no end within 10 s)";
            else
                what = tu_status_str(status, st, sizeof st);
            printf("%-8s %-18s %s\n", mname[a], hname[b], what);
        }
    return 0;
}
