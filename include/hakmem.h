/* hakmem: a drop-in malloc replacement.
 *
 * Loading libhakmem.so with LD_PRELOAD, or linking libhakmem.a, replaces the
 * standard allocation functions (malloc, free, calloc, realloc, ...).  The same
 * functions are also exported with a hak_ prefix so that a program can call
 * hakmem explicitly even when another allocator owns the standard names.
 */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAKMEM_VERSION_MAJOR 0
#define HAKMEM_VERSION_MINOR 1

void  *hak_malloc(size_t size);
void   hak_free(void *p);
void  *hak_calloc(size_t n, size_t size);
void  *hak_realloc(void *p, size_t size);
void  *hak_reallocarray(void *p, size_t n, size_t size);
int    hak_posix_memalign(void **out, size_t alignment, size_t size);
void  *hak_aligned_alloc(size_t alignment, size_t size);
void  *hak_memalign(size_t alignment, size_t size);
void  *hak_valloc(size_t size);
void  *hak_pvalloc(size_t size);
size_t hak_malloc_usable_size(void *p);
void   hak_free_sized(void *p, size_t size);
void   hak_free_aligned_sized(void *p, size_t alignment, size_t size);

/* Largest block size served from size-classed slabs; larger requests are
 * direct mappings. */
size_t hak_small_size_max(void);

/* Statistics: a table on stderr, or JSON into buf (returns the length the
 * whole text needs, like snprintf).  HAKMEM_STATS=1 (table) or 2 (JSON)
 * prints them at exit.  malloc_stats() prints the table too. */
void   hak_stats_print(void);
size_t hak_stats_json(char *buf, size_t size);

/* Heap consistency check of the calling thread's heap; returns the number of
 * problems found (each reported on stderr), 0 if none. */
unsigned hak_check(void);

/* Build facts, for tests and tools: 1 if the library is the debug flavor,
 * 1 if its counters (HAKMEM_DEBUG_COUNTERS) are compiled in. */
int hak_build_is_debug(void);
int hak_build_has_counters(void);

#ifdef __cplusplus
}
#endif

#endif /* HAKMEM_H */
