/* OS primitives: the only place that maps, unmaps or purges memory. */
#include <sys/mman.h>
#include <errno.h>

#include "hakmem_internal.h"

void *hak_os_map(size_t size) {
    int saved = errno;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    errno = saved;
    return p == MAP_FAILED ? NULL : p;
}

/* Over-map by `align`, then cut off the unaligned head and the tail so that
 * nothing beyond `size` stays mapped. */
void *hak_os_map_aligned(size_t size, size_t align) {
    if (align <= 4096) return hak_os_map(size);
    if (size + align < size) return NULL;
    uintptr_t raw = (uintptr_t)hak_os_map(size + align);
    if (!raw) return NULL;
    uintptr_t start = (raw + align - 1) & ~(uintptr_t)(align - 1);
    if (start > raw) hak_os_unmap((void *)raw, start - raw);
    uintptr_t end = start + size, raw_end = raw + size + align;
    if (raw_end > end) hak_os_unmap((void *)end, raw_end - end);
    return (void *)start;
}

void hak_os_unmap(void *p, size_t size) {
    int saved = errno;
    munmap(p, size);
    errno = saved;
}

/* PROT_NONE (a guard page) or back to read and write; errno kept. */
int hak_os_protect(void *p, size_t size, int none) {
    int saved = errno;
    int rc = mprotect(p, size, none ? PROT_NONE : PROT_READ | PROT_WRITE);
    errno = saved;
    return rc;
}

/* MADV_DONTNEED (default): the pages leave RSS now and read as zero.
 * MADV_FREE (HAKMEM_PURGE_MODE=1): the kernel takes them only under memory
 * pressure, which is cheaper to reuse but keeps RSS high until then. */
void hak_os_purge(void *p, size_t size) {
    int saved = errno;
    if (hak_opt.purge_mode == 1 && madvise(p, size, MADV_FREE) == 0) {
        errno = saved;
        return;
    }
    madvise(p, size, MADV_DONTNEED);
    errno = saved;
    HAK_GSTAT_ADD(purged_bytes, size);
}
