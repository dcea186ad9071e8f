/* SPDX-License-Identifier: Apache-2.0 */
/* Growable byte buffer, always NUL-terminated past `len` so text can be used
 * as a C string. Allocation failure aborts (gw_xmalloc policy). */
#ifndef GW_BUF_H
#define GW_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct gw_buf {
    char *data; /* owned; NULL until the first append */
    size_t len;
    size_t cap;
};

#define GW_BUF_INIT {NULL, 0, 0}

/* Aborting allocators: OOM is not a recoverable state for this program. */
void *gw_xmalloc(size_t size);
void *gw_xcalloc(size_t n, size_t size);
void *gw_xrealloc(void *ptr, size_t size);
char *gw_xstrdup(const char *s);
char *gw_xstrndup(const char *s, size_t n);

void gw_buf_init(struct gw_buf *b);
void gw_buf_fini(struct gw_buf *b);
/* Makes room for `extra` more bytes (plus the NUL). */
void gw_buf_reserve(struct gw_buf *b, size_t extra);
void gw_buf_append(struct gw_buf *b, const void *data, size_t len);
void gw_buf_append_str(struct gw_buf *b, const char *s);
void gw_buf_appendf(struct gw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_buf_vappendf(struct gw_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Drops the first n bytes, keeping the rest. */
void gw_buf_consume(struct gw_buf *b, size_t n);
void gw_buf_reset(struct gw_buf *b);
/* Hands the storage to the caller (who frees it); the buffer becomes empty.
 * Never returns NULL: an empty buffer yields an allocated "". */
char *gw_buf_steal(struct gw_buf *b, size_t *len_out);

/* A borrowed (pointer, length) view; not NUL-terminated. */
struct gw_str {
    const char *p;
    size_t len;
};

int gw_str_eq(struct gw_str s, const char *lit);
int gw_str_case_eq(struct gw_str s, const char *lit);

#endif
