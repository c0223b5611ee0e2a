/* Error reports.  Nothing here may allocate: these run while the heap may be
 * inconsistent, so the message is assembled on the stack and written with
 * write(2). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hakmem_internal.h"

void hak_write_fd(int fd, const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

void hak_write_err(const char *s) { hak_write_fd(2, s); }

static char *put_str(char *o, char *end, const char *s) {
    while (*s && o < end) *o++ = *s++;
    return o;
}

/* Same form as printf's %p: 0x followed by lowercase hex, or (nil). */
static char *put_ptr(char *o, char *end, const void *p) {
    uintptr_t v = (uintptr_t)p;
    if (!v) return put_str(o, end, "(nil)");
    char tmp[2 * sizeof v];
    int n = 0;
    while (v) { tmp[n++] = "0123456789abcdef"[v & 15]; v >>= 4; }
    o = put_str(o, end, "0x");
    while (n > 0 && o < end) *o++ = tmp[--n];
    return o;
}

void hak_fatal_ptr(const char *fn, const char *what, const void *p) {
    char buf[256], *o = buf, *end = buf + sizeof buf - 2;
    o = put_str(o, end, "hakmem: ");
    o = put_str(o, end, fn);
    o = put_str(o, end, "(): ");
    o = put_str(o, end, what);
    o = put_str(o, end, " ");
    o = put_ptr(o, end, p);
    *o++ = '\n';
    *o = 0;
    hak_write_err(buf);
    abort();
}

static char *put_uint(char *o, char *end, unsigned long v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n > 0 && o < end) *o++ = tmp[--n];
    return o;
}

/* Safe-linking found a free block whose link word does not decode: something
 * wrote into the block after it was freed.  The link is not followed.  `fn`
 * says which path took the block: malloc (the bin), refill (a slab's free
 * list), flush (blocks leaving a bin), remote drain (another thread's frees). */
void hak_link_corrupt(const void *b, const char *fn) {
    char buf[320], *o = buf, *end = buf + sizeof buf - 2;
    o = put_str(o, end, "hakmem: ");
    o = put_str(o, end, fn);
    o = put_str(o, end, "(): corrupted free list: the link word of free block ");
    o = put_ptr(o, end, b);
    if (hak_super_lookup(b)) {
        const hak_slab_t *s = hak_block_slab((uintptr_t)b);
        o = put_str(o, end, " (class ");
        o = put_uint(o, end, s->cls);
        o = put_str(o, end, ", ");
        o = put_uint(o, end, s->bsize);
        o = put_str(o, end, "-byte blocks)");
    }
    o = put_str(o, end, " is ");
    uintptr_t w = *(const uintptr_t *)b;
    o = w ? put_ptr(o, end, (const void *)w) : put_str(o, end, "0x0");
    o = put_str(o, end, ", not a link (written after free?)\n");
    *o = 0;
    hak_write_err(buf);
    abort();
}

void hak_fatal_block(const char *fn, const char *what, const void *p, size_t n, const char *tail) {
    char buf[320], *o = buf, *end = buf + sizeof buf - 2;
    o = put_str(o, end, "hakmem: ");
    o = put_str(o, end, fn);
    o = put_str(o, end, "(): ");
    o = put_str(o, end, what);
    o = put_str(o, end, " ");
    o = put_uint(o, end, n);
    o = put_str(o, end, "-byte block ");
    o = put_ptr(o, end, p);
    o = put_str(o, end, tail);
    *o++ = '\n';
    *o = 0;
    hak_write_err(buf);
    abort();
}

void hak_fatal(const char *msg) {
    hak_write_err("hakmem: ");
    hak_write_err(msg);
    hak_write_err("\n");
    abort();
}
