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

/* The version, in this one place: the Makefile reads it for the shared
 * object's name (libhakmem.so.MAJOR.MINOR.PATCH, soname libhakmem.so.MAJOR),
 * pkg-config and CMake files, and the launcher.  MAJOR changes when the ABI
 * does. */
#define HAKMEM_VERSION_MAJOR 1
#define HAKMEM_VERSION_MINOR 0
#define HAKMEM_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, as hak_version() returns it. */
#define HAKMEM_VERSION \
    (HAKMEM_VERSION_MAJOR * 10000 + HAKMEM_VERSION_MINOR * 100 + HAKMEM_VERSION_PATCH)

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
/* 1 in the hardened flavor (libhakmem-hardened): canaries, quarantine,
 * zero-on-free, guard pages, random carving; malloc_usable_size returns the
 * size asked for. */
int hak_build_is_hardened(void);

/* The version of the library that is running (HAKMEM_VERSION of the header
 * it was built with), to compare with the header a program was built with. */
int hak_version(void);

#ifdef __cplusplus
}
#endif

#endif /* HAKMEM_H */
