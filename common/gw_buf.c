/* SPDX-License-Identifier: Apache-2.0 */
/* Growable buffers and the aborting allocators. */
#include "gw_buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void
oom(size_t size)
{
    fprintf(stderr, "aicarpool: out of memory allocating %zu bytes\n", size);
    abort();
}

void *
gw_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

void *
gw_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *
gw_xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

char *
gw_xstrdup(const char *s)
{
    return gw_xstrndup(s, strlen(s));
}

char *
gw_xstrndup(const char *s, size_t n)
{
    char *p = gw_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void
gw_buf_init(struct gw_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void
gw_buf_fini(struct gw_buf *b)
{
    free(b->data);
    gw_buf_init(b);
}

void
gw_buf_reserve(struct gw_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need < b->len)
        oom(SIZE_MAX);
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap * 2 > cap ? cap * 2 : need;
    b->data = gw_xrealloc(b->data, cap);
    b->cap = cap;
}

void
gw_buf_append(struct gw_buf *b, const void *data, size_t len)
{
    gw_buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void
gw_buf_append_str(struct gw_buf *b, const char *s)
{
    gw_buf_append(b, s, strlen(s));
}

void
gw_buf_vappendf(struct gw_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    gw_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void
gw_buf_appendf(struct gw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_buf_vappendf(b, fmt, ap);
    va_end(ap);
}

void
gw_buf_consume(struct gw_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

void
gw_buf_reset(struct gw_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *
gw_buf_steal(struct gw_buf *b, size_t *len_out)
{
    char *p;
    if (b->data == NULL)
        gw_buf_reserve(b, 0), b->data[0] = '\0';
    p = b->data;
    if (len_out)
        *len_out = b->len;
    gw_buf_init(b);
    return p;
}

int
gw_str_eq(struct gw_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

int
gw_str_case_eq(struct gw_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.p, lit, n) == 0;
}
