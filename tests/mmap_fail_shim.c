/* mmap_fail_shim: a library to preload (LD_PRELOAD) that makes anonymous
 * mmap, and mremap calls that grow a mapping, fail with ENOMEM on demand, so
 * that a test can watch an allocator run out of memory without exhausting the
 * machine.  hakmem asks the kernel for memory through libc's mmap and mremap
 * (src/os.c, src/huge.c), never with a raw system call, so a preloaded
 * definition of those names takes their place for it.
 *
 * Control:
 *   CHAOS_MMAP_FAIL_AFTER=N     environment, read when the library loads: the
 *                               next N calls succeed, every later one fails
 *   chaos_mmap_fail_after(n)    the same from the program (find it with
 *                               dlsym): n >= 0 arms, n < 0 disarms
 *   chaos_mmap_calls()          calls seen (anonymous mmap, growing mremap)
 *   chaos_mmap_failures()       calls made to fail
 *
 * File mappings (the dynamic loader, locale files) and shrinking mremaps are
 * passed through untouched.  Real mappings go straight to the system call:
 * looking up libc's mmap with dlsym could allocate, which would come back
 * here through the allocator under test.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static long fail_after = -1;            /* < 0: disarmed */
static unsigned long calls, failures;

EXPORT void chaos_mmap_fail_after(long n) { __atomic_store_n(&fail_after, n, __ATOMIC_SEQ_CST); }
EXPORT unsigned long chaos_mmap_calls(void) { return __atomic_load_n(&calls, __ATOMIC_SEQ_CST); }
EXPORT unsigned long chaos_mmap_failures(void) { return __atomic_load_n(&failures, __ATOMIC_SEQ_CST); }

/* One call that may fail: spend one of the remaining successes, or fail. */
static int should_fail(void)
{
    long n = __atomic_load_n(&fail_after, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
    for (;;) {
        if (n < 0)
            return 0;
        if (n == 0) {
            __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
            return 1;
        }
        if (__atomic_compare_exchange_n(&fail_after, &n, n - 1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            return 0;
    }
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if ((flags & MAP_ANONYMOUS) && should_fail()) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    /* syscall() returns -1 with errno set on failure: MAP_FAILED */
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
    void *new_addr = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        new_addr = va_arg(ap, void *);
        va_end(ap);
    }
    if (new_len > old_len && should_fail()) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
}

__attribute__((constructor)) static void shim_init(void)
{
    const char *s = getenv("CHAOS_MMAP_FAIL_AFTER");
    if (s && *s) {
        char *end;
        long n = strtol(s, &end, 10);
        if (*end == '\0')
            chaos_mmap_fail_after(n);
    }
}
