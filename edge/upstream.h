/* SPDX-License-Identifier: Apache-2.0 */
/* Upstream HTTP transfers for the edge: one libcurl multi handle driven by a
 * libuv loop (curl sockets -> uv_poll, curl timer -> one uv_timer). A
 * transfer reports head -> body chunks (with pause/resume backpressure) ->
 * done, enforces per-phase timeouts (connect, first byte, idle between
 * chunks, total) and reuses keep-alive connections across requests, as well
 * as curl easy handles (reset, kept on a per-upstream free list) and each
 * connection socket's uv_poll handle (kept while curl holds the connection
 * idle in its pool, closed with the socket).
 *
 * Threading: an upstream belongs to one uv loop; every function here and
 * every callback runs on that loop's thread. */
#ifndef EDGE_UPSTREAM_H
#define EDGE_UPSTREAM_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_err.h"
#include "gw_http.h"

struct edge_upstream;     /* one per loop */
struct edge_upstream_req; /* one transfer */

/* on_chunk return values. */
#define EDGE_UPSTREAM_CONTINUE 0
#define EDGE_UPSTREAM_PAUSE 1

/* Bounds on the response head collected before on_head. */
#define EDGE_UPSTREAM_MAX_HEADERS 100
#define EDGE_UPSTREAM_MAX_HEADER_BYTES (64 * 1024)

/* Per-phase timeouts in milliseconds; 0 means no limit for that phase.
 * connect_ms: TCP (+ proxy + TLS) connect. first_byte_ms: from the start of
 * the transfer until the response status line. idle_ms: longest silence
 * between two body chunks (also between head and first chunk; not counted
 * while paused by on_chunk). total_ms: the
 * whole transfer. */
struct edge_upstream_timeouts {
    uint64_t connect_ms, first_byte_ms, idle_ms, total_ms;
};

struct edge_upstream_spec {
    const char *method;         /* "POST", "GET", ... (copied) */
    const char *url;            /* full URL incl. query (copied) */
    struct curl_slist *headers; /* taken: freed by upstream when the transfer ends
                                   (also when edge_upstream_start fails) */
    const void *body;           /* borrowed until on_done or cancel; NULL for none */
    size_t body_len;
    const char *proxy;          /* NULL or "http://h:p" / "socks5h://h:p" (copied) */
    struct edge_upstream_timeouts timeouts;
    const char *reqid;          /* NULL or the request id for log lines (copied) */
};

struct edge_upstream_cbs {
    /* Once, when the status line and all headers of the final (non-1xx)
     * response arrived, before any body. The header array and its views are
     * valid only during the call. May be NULL. */
    void (*on_head)(void *arg, int status, const struct gw_http_header *headers, size_t n);
    /* Body bytes, in order, without transfer encoding (content encoding is
     * left as the server sent it). All bytes passed are consumed. Return
     * EDGE_UPSTREAM_PAUSE to stop receiving until edge_upstream_resume(),
     * EDGE_UPSTREAM_CONTINUE to go on. May be NULL (body dropped). */
    int (*on_chunk)(void *arg, const char *data, size_t len);
    /* Exactly once at the end unless cancelled: GW_OK after a complete
     * response (any HTTP status), GW_ETIMEDOUT when a phase timed out (the
     * phase is logged), GW_EUPSTREAM for connect/transfer errors (also when
     * the response head was too large). May come while paused when every
     * body byte was already delivered. Never runs inside a curl callback, so
     * starting, resuming or cancelling other transfers or closing the
     * upstream is fine here. The req is freed by the upstream module after
     * on_done returns; do not touch it afterwards. Required. */
    void (*on_done)(void *arg, gw_err err);
};

/* Creates the upstream for `loop` (curl_global_init is done once per
 * process, on the first call). Returns an owned object in *out.
 * GW_EINTERNAL when curl or libuv cannot be initialised. */
gw_err edge_upstream_new(uv_loop_t *loop, struct edge_upstream **out) GW_WARN_UNUSED;

/* Cancels every transfer still running (no on_done for them; every req
 * handle becomes invalid), closes the handles and the cached connections,
 * and frees `up` once libuv has closed them: run the loop until it has no
 * more active handles to complete the free. Allowed from inside callbacks
 * (then done when they returned). NULL is a no-op. */
void edge_upstream_close(struct edge_upstream *up);

/* Starts one transfer. `spec` is read during the call (strings copied,
 * headers taken, body borrowed); `cbs` is copied; `arg` is passed to every
 * callback. On success *out (may be NULL) gets the transfer handle, valid
 * until on_done returns or edge_upstream_cancel(). Callbacks never run
 * inside this call. GW_EINVAL for a missing url/method/on_done,
 * GW_ECLOSED after edge_upstream_close(), GW_EINTERNAL when curl refuses the
 * options. The headers are freed on every error too. */
gw_err edge_upstream_start(struct edge_upstream *up, const struct edge_upstream_spec *spec,
                           const struct edge_upstream_cbs *cbs, void *arg,
                           struct edge_upstream_req **out) GW_WARN_UNUSED;

/* Resumes a transfer paused by on_chunk. Call from a loop callback only,
 * never from inside on_head/on_chunk/on_done. Buffered bytes may be
 * delivered to on_chunk before this returns (and on_chunk may pause again);
 * on_done is never called from inside this function. No-op when not paused. */
void edge_upstream_resume(struct edge_upstream_req *r);

/* 1 while the transfer is paused by on_chunk. */
int edge_upstream_paused(const struct edge_upstream_req *r);

/* Aborts the transfer at once (client went away). on_done is NOT called and
 * no other callback runs for it again; r is invalid after, and the body may
 * be freed once this returns. Also allowed from inside this transfer's
 * on_head/on_chunk (destruction is deferred), but not from its on_done (the
 * req is already finished there). Called from inside ANOTHER transfer's
 * callback, the body must stay valid until that callback returned, since
 * curl may still be sending it until then. */
void edge_upstream_cancel(struct edge_upstream_req *r);

/* Connection limits (defaults: 1024 per host, 256 idle kept for reuse).
 * max_host_conns <= 0: unlimited; max_cached_conns <= 0: the default.
 * Transfers beyond the per-host limit wait for a free connection (their
 * first-byte and total timeouts keep running). */
void edge_upstream_set_conn_limits(struct edge_upstream *up, long max_host_conns,
                                   long max_cached_conns);

/* Number of transfers started and not yet finished or cancelled. */
size_t edge_upstream_active(const struct edge_upstream *up);

#endif
