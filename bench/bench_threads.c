/* bench_threads: memory with many threads.  Starts N threads (default
 * 2000, 64 KiB stacks); each allocates 50 blocks of 16..996 bytes and writes
 * them, all wait until every thread holds its blocks, then all free and
 * exit.  Peak RSS is the figure of interest: the per-thread overhead of the
 * allocator's caches and slabs.  ops = threads; seconds = wall time.
 *
 *   usage: bench_threads [threads]
 */
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "bench_common.h"

#define BLOCKS 50

static pthread_barrier_t all_allocated;

static void *worker(void *arg) {
    char *v[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) {
        v[i] = malloc(16 + (size_t)i * 20);
        if (!v[i]) return (void *)1;
        memset(v[i], i, 16 + (size_t)i * 20);
    }
    pthread_barrier_wait(&all_allocated);
    for (int i = 0; i < BLOCKS; i++) free(v[i]);
    return arg;
}

int main(int argc, char **argv) {
    unsigned n = (unsigned)bench_arg_u64(argc, argv, 1, "threads", 2000, 1, 100000);
    pthread_t *t = mmap(NULL, n * sizeof *t, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED) { perror("mmap"); return 1; }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_barrier_init(&all_allocated, NULL, n + 1);
    double t0 = bench_now();
    for (unsigned i = 0; i < n; i++)
        if (pthread_create(&t[i], &attr, worker, NULL) != 0) { perror("pthread_create"); return 1; }
    pthread_barrier_wait(&all_allocated);
    int bad = 0;
    for (unsigned i = 0; i < n; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad |= r != NULL;
    }
    double t1 = bench_now();
    if (bad) { fprintf(stderr, "bench_threads: malloc failed\n"); return 1; }
    bench_print_result(n, t1 - t0);
    return 0;
}
