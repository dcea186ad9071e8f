/* SPDX-License-Identifier: Apache-2.0 */
/* Incremental Server-Sent Events parser (pure, no I/O). Bytes are fed as they
 * arrive, split anywhere; complete events are handed to a callback. Follows
 * the WHATWG event-stream rules: CRLF, LF or CR line ends, "field: value"
 * with one optional space after the colon, multi-line data joined with \n,
 * comment lines (':') ignored, an event dispatched on a blank line. */
#ifndef EDGE_SSE_H
#define EDGE_SSE_H

#include <stddef.h>

#include "gw_buf.h"
#include "gw_err.h"

/* One complete event. `event` is the event field ("" with event_len 0 when
 * absent: the default "message"), `data` the joined data lines. Both are
 * NUL-terminated and valid only during the call. Events whose data field
 * never appeared are not dispatched (as in the spec). */
typedef void (*edge_sse_event_cb)(void *arg, const char *event, size_t event_len,
                                  const char *data, size_t data_len);

/* Embed it; fields are private. */
struct edge_sse {
    struct gw_buf line;  /* current incomplete line */
    struct gw_buf event; /* event field of the pending event */
    struct gw_buf data;  /* joined data of the pending event */
    size_t max_event_bytes;
    int have_data;        /* a data field was seen for the pending event */
    int last_cr;          /* previous chunk ended in CR: skip a leading LF */
    int failed;           /* limit exceeded: every later feed fails */
};

/* Prepares an empty parser. `max_event_bytes` bounds the bytes held at any
 * time: the pending event's event name and joined data plus the line being
 * read; 0 means 1 MiB. */
void edge_sse_init(struct edge_sse *p, size_t max_event_bytes);

/* Feeds `len` bytes (borrowed). Calls cb synchronously for each event
 * completed by these bytes, in order. GW_EMSGSIZE when one event exceeds the
 * limit: the parser then stops and fails every later call. Events completed
 * before the oversize one in the same call are still delivered. */
gw_err edge_sse_feed(struct edge_sse *p, const char *data, size_t len, edge_sse_event_cb cb,
                     void *arg) GW_WARN_UNUSED;

/* Releases buffers; a pending incomplete event is dropped. The parser may
 * be initialised again afterwards. */
void edge_sse_fini(struct edge_sse *p);

#endif
