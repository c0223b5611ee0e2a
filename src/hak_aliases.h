/* The standard names, as aliases of the hak_ functions: included by the one
 * file that defines those (api.c, or harden.c in the hardened flavor), since
 * an alias must name a function of its own translation unit. */
#ifndef HAK_ALIASES_H
#define HAK_ALIASES_H
#define HAK_ALIAS(name, target) \
    extern __typeof(target) name __attribute__((alias(#target), visibility("default")))

HAK_ALIAS(malloc, hak_malloc);
HAK_ALIAS(free, hak_free);
HAK_ALIAS(calloc, hak_calloc);
HAK_ALIAS(realloc, hak_realloc);
HAK_ALIAS(reallocarray, hak_reallocarray);
HAK_ALIAS(posix_memalign, hak_posix_memalign);
HAK_ALIAS(aligned_alloc, hak_aligned_alloc);
HAK_ALIAS(memalign, hak_memalign);
HAK_ALIAS(valloc, hak_valloc);
HAK_ALIAS(pvalloc, hak_pvalloc);
HAK_ALIAS(malloc_usable_size, hak_malloc_usable_size);
HAK_ALIAS(free_sized, hak_free_sized);
HAK_ALIAS(free_aligned_sized, hak_free_aligned_sized);
/* glibc's internal names, which some programs and libraries call directly. */
HAK_ALIAS(__libc_malloc, hak_malloc);
HAK_ALIAS(__libc_free, hak_free);
HAK_ALIAS(__libc_calloc, hak_calloc);
HAK_ALIAS(__libc_realloc, hak_realloc);
HAK_ALIAS(__libc_memalign, hak_memalign);
HAK_ALIAS(__libc_valloc, hak_valloc);
HAK_ALIAS(__libc_pvalloc, hak_pvalloc);

#endif /* HAK_ALIASES_H */
