/* SPDX-License-Identifier: Apache-2.0 */
/* Incremental Server-Sent Events parser. Complete lines inside one fed chunk
 * are parsed in place; only a line split across chunks is copied into
 * p->line. Every byte an event holds is counted against max_event_bytes
 * before it is buffered, so a hostile stream cannot grow memory unbounded. */
#include "sse.h"

#include <string.h>

#define SSE_DEFAULT_MAX (1024 * 1024)

void
edge_sse_init(struct edge_sse *p, size_t max_event_bytes)
{
    memset(p, 0, sizeof(*p));
    gw_buf_init(&p->line);
    gw_buf_init(&p->event);
    gw_buf_init(&p->data);
    p->max_event_bytes = max_event_bytes ? max_event_bytes : SSE_DEFAULT_MAX;
}

void
edge_sse_fini(struct edge_sse *p)
{
    gw_buf_fini(&p->line);
    gw_buf_fini(&p->event);
    gw_buf_fini(&p->data);
    p->have_data = 0;
    p->last_cr = 0;
}

static void
sse_reset_event(struct edge_sse *p)
{
    gw_buf_reset(&p->event);
    gw_buf_reset(&p->data);
    p->have_data = 0;
}

static void
sse_dispatch(struct edge_sse *p, edge_sse_event_cb cb, void *arg)
{
    if (p->have_data) {
        const char *ev = p->event.data ? p->event.data : "";
        const char *data = p->data.data ? p->data.data : "";
        cb(arg, ev, p->event.len, data, p->data.len);
    }
    sse_reset_event(p);
}

/* Processes one complete line (without its terminator). */
static void
sse_line(struct edge_sse *p, const char *line, size_t len, edge_sse_event_cb cb, void *arg)
{
    if (len == 0) {
        sse_dispatch(p, cb, arg);
        return;
    }
    if (line[0] == ':')
        return; /* comment */
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t value_len = (size_t)(line + len - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        if (p->have_data)
            gw_buf_append(&p->data, "\n", 1);
        gw_buf_append(&p->data, value, value_len);
        p->have_data = 1;
    } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        gw_buf_reset(&p->event);
        gw_buf_append(&p->event, value, value_len);
    }
    /* id, retry and unknown fields carry nothing the edge needs. */
}

gw_err
edge_sse_feed(struct edge_sse *p, const char *data, size_t len, edge_sse_event_cb cb, void *arg)
{
    if (p->failed)
        return GW_EMSGSIZE;
    size_t i = 0;
    if (p->last_cr && len > 0) {
        p->last_cr = 0;
        if (data[0] == '\n')
            i = 1; /* second half of a CRLF split across feeds */
    }
    while (i < len) {
        /* Find the next line terminator. */
        size_t start = i;
        while (i < len && data[i] != '\n' && data[i] != '\r')
            i++;
        size_t seg = i - start;
        /* The pending event plus the line being read must fit the limit;
         * completed comment and ignored lines are not held, so they do not
         * count once done. */
        size_t held = p->event.len + p->data.len + p->line.len;
        if (seg > p->max_event_bytes || held > p->max_event_bytes - seg) {
            p->failed = 1;
            sse_reset_event(p);
            gw_buf_reset(&p->line);
            return GW_EMSGSIZE;
        }
        if (i == len) {
            /* Incomplete line: keep it for the next feed. */
            gw_buf_append(&p->line, data + start, seg);
            break;
        }
        /* Terminator: CR, LF or CRLF. */
        if (data[i] == '\r') {
            if (i + 1 < len) {
                if (data[i + 1] == '\n')
                    i++;
            } else {
                p->last_cr = 1;
            }
        }
        i++;
        if (p->line.len > 0) {
            gw_buf_append(&p->line, data + start, seg);
            sse_line(p, p->line.data, p->line.len, cb, arg);
            gw_buf_reset(&p->line);
        } else {
            sse_line(p, data + start, seg, cb, arg);
        }
    }
    return GW_OK;
}
