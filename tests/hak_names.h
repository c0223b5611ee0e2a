/* hak_names.h: forced in front of a test source (-include tests/hak_names.h)
 * when the test is linked against a hak_-only library (HAKMEM_OVERRIDE=0,
 * e.g. build/libhakmem-ubsan.so and build/libhakmem-tsan.so of
 * make test-sanitize).  Such a library exports only the hak_ names, so the
 * program keeps its own malloc: here the sanitizer runtime's, which cmocka,
 * libc and the sanitizer itself go on using.
 *
 * What it does, for the test source only:
 *   - the standard allocation names become the hak_ ones (malloc ->
 *     hak_malloc, ...), so every block the test allocates, frees, reallocs or
 *     measures is hakmem's;
 *   - malloc_stats becomes hak_stats_print (the same table); malloc_trim,
 *     mallopt and mallinfo have no hak_ name and stay the C library's, which
 *     do nothing to hakmem: a workload that calls malloc_trim now and then
 *     runs without those trims, and the cases that check what hakmem's
 *     malloc_trim does skip;
 *   - HAKMEM_TEST_HAK_NAMES is defined, for the few cases that test the
 *     interposition itself (hakmem's malloc_trim, libc's own allocations
 *     going to hakmem): they skip, with TU_SKIP_IF_HAK_NAMES (test_util.h);
 *   - TU_TEST_FILTER=pattern (cmocka's glob: * and ?) runs only the
 *     cases whose name matches, e.g. one threaded case of a binary under TSan;
 *   - the sanitizers' defaults: a report ends the process with a non-zero
 *     status, also in the children a test starts with an environment of its
 *     own (tu_run_self passes exactly PATH and the case's HAKMEM_ variables,
 *     so TSAN_OPTIONS/UBSAN_OPTIONS would not reach them).
 *
 * The system headers are included first, so their prototypes keep the real
 * names; only the test's own calls are renamed. */
#ifndef HAKMEM_HAK_NAMES_H
#define HAKMEM_HAK_NAMES_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <malloc.h>
#include <stdlib.h>

#include "hakmem.h"

#define HAKMEM_TEST_HAK_NAMES 1

#define malloc             hak_malloc
#define free               hak_free
#define calloc             hak_calloc
#define realloc            hak_realloc
#define reallocarray       hak_reallocarray
#define posix_memalign     hak_posix_memalign
#define aligned_alloc      hak_aligned_alloc
#define memalign           hak_memalign
#define valloc             hak_valloc
#define pvalloc            hak_pvalloc
#define malloc_usable_size hak_malloc_usable_size
#define free_sized         hak_free_sized
#define free_aligned_sized hak_free_aligned_sized
#define malloc_stats       hak_stats_print

/* cmocka's (declared again, identically, by cmocka.h). */
void cmocka_set_test_filter(const char *pattern);

__attribute__((constructor)) static void hak_names_filter(void)
{
    const char *f = getenv("TU_TEST_FILTER");
    if (f && *f)
        cmocka_set_test_filter(f);
}

/* The runtimes' defaults; TSAN_OPTIONS / UBSAN_OPTIONS still override them.
 * TSan: stop at the first report with status 66 (the default exitcode), and
 * the second stack of a lock-order report. */
#if defined(__SANITIZE_THREAD__)
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "halt_on_error=1:exitcode=66:second_deadlock_stack=1";
}
#endif
#if defined(HAKMEM_TEST_UBSAN)        /* gcc has no macro for -fsanitize=undefined */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "print_stacktrace=1:halt_on_error=1";
}
#endif

#endif /* HAKMEM_HAK_NAMES_H */
