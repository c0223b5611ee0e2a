/* san_canary: deliberate faults, to prove that make test-sanitize would see
 * a real one (tests/run_sanitize.sh runs this and wants it to FAIL).
 *
 *   san_canary-tsan race   two threads write the same word of a hak_malloc'd
 *                          block with no synchronisation: TSan must report a
 *                          data race and end the process with status 66
 *   san_canary-ubsan ub    a signed overflow: UBSan must report it and stop
 *                          the process (-fno-sanitize-recover)
 *
 * Built like the tests (tests/hak_names.h forced in: malloc is hak_malloc). */
#include "test_util.h"

#include <limits.h>

static void *bump(void *arg)
{
    volatile long *w = arg;
    for (int i = 0; i < 1000; i++)
        *w = *w + 1;                    /* racy on purpose */
    return NULL;
}

static int race(void)
{
    long *w = malloc(64);
    pthread_t t[2];
    if (!w)
        return 2;
    *w = 0;
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, bump, w) != 0)
            return 2;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("race: %ld\n", *w);
    free(w);
    return 0;
}

static int ub(void)
{
    int *p = malloc(sizeof *p);
    if (!p)
        return 2;
    *p = INT_MAX;
    int x = *(volatile int *)p + (int)tu_launder_size(1);   /* signed overflow */
    printf("ub: %d\n", x);
    free(p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "race") == 0)
        return race();
    if (argc == 2 && strcmp(argv[1], "ub") == 0)
        return ub();
    fprintf(stderr, "usage: %s race|ub\n", argv[0]);
    return 2;
}
