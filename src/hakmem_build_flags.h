/* Every compile-time knob of hakmem, with its default, and the flags derived
 * from them.  Set by the Makefile's BUILD_FLAVOR (release | debug) and by
 * EXTRA_CFLAGS, e.g. EXTRA_CFLAGS=-DHAKMEM_DEBUG_COUNTERS=1 on a release
 * build turns the counters on.
 *
 * Diagnostics are written as `if (HAKMEM_DEBUG_CHECKS) ...` rather than #if
 * blocks where possible, so they are type-checked in every build and removed
 * by the optimiser when the flag is 0.
 */
#ifndef HAKMEM_BUILD_FLAGS_H
#define HAKMEM_BUILD_FLAGS_H

#ifndef HAKMEM_BUILD_DEBUG
#  define HAKMEM_BUILD_DEBUG 0
#endif

#ifndef HAKMEM_BUILD_RELEASE
#  define HAKMEM_BUILD_RELEASE (!HAKMEM_BUILD_DEBUG)
#endif

#if HAKMEM_BUILD_RELEASE && HAKMEM_BUILD_DEBUG
#  error "HAKMEM_BUILD_RELEASE and HAKMEM_BUILD_DEBUG are exclusive"
#endif

/* Counters: 0 by default under NDEBUG, as in the report. */
#ifndef HAKMEM_DEBUG_COUNTERS
#  ifdef NDEBUG
#    define HAKMEM_DEBUG_COUNTERS 0
#  else
#    define HAKMEM_DEBUG_COUNTERS 1
#  endif
#endif

/* Override: 1 (default) defines the standard names (malloc, free, ...,
 * glibc's __libc_* and malloc extras) as aliases of the hak_ functions, so
 * that the library replaces the C library's allocator.  0 defines only the
 * hak_ names (src/hakmem-hak.map), for programs that keep their own malloc:
 * sanitizer runtimes (ASan, TSan) and fuzzers (make test-sanitize, make fuzz). */
#ifndef HAKMEM_OVERRIDE
#  define HAKMEM_OVERRIDE 1
#endif

/* Hardened: 1 in the hardened flavor (make BUILD_FLAVOR=hardened): the API
 * of src/harden.c wraps every block with a header and canaries, keeps freed
 * blocks in a quarantine, zeroes them, guards large blocks and SuperSlab
 * headers with PROT_NONE pages and carves slabs in random order.  The
 * release hit paths are not compiled into the exported functions then. */
#ifndef HAKMEM_HARDENED
#  define HAKMEM_HARDENED 0
#endif

/* Derived: expensive consistency checks (freelist validation on refill,
 * every free checked against the slab's state) only in the debug flavor. */
#define HAKMEM_DEBUG_CHECKS HAKMEM_BUILD_DEBUG

#endif /* HAKMEM_BUILD_FLAGS_H */
