/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 server on libuv and Debian's http_parser, shared by the edge,
 * the hub's admin API and the fake provider. Keep-alive and pipelining (one
 * request handled at a time per connection, responses in order), chunked
 * request bodies, Expect: 100-continue, limits on header bytes, header
 * count, body size and connections, read and idle timeouts, complete or
 * streamed (chunked / SSE) responses with a bounded write queue, and TLS
 * termination per listener (gw_tls, OpenSSL on memory BIOs): everything
 * above the socket works the same on plaintext.
 *
 * Threading: a server belongs to one uv loop; every function here must be
 * called on that loop's thread. */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_buf.h"
#include "gw_err.h"

struct gw_http_server;
struct gw_tls_ctx;

struct gw_http_limits {
    size_t max_header_bytes;  /* request line + headers; over it: 431 and close */
    size_t max_headers;       /* header count; over it: 431 and close */
    size_t max_body_bytes;    /* Content-Length or chunked total; over it: 413 and close */
    size_t max_connections;   /* further accepts are closed at once */
    uint64_t read_timeout_ms; /* from the first byte of a request to its last */
    uint64_t idle_timeout_ms; /* keep-alive connection with no request in progress */
    size_t write_high_water;  /* queued response bytes before gw_http_writable() says 0 */
    /* While the handler owns a request and response bytes are queued, the
     * longest time without any of them reaching the socket: a client that
     * stops reading is dropped (the request gets its abort callback).
     * 0 = no limit. */
    uint64_t write_timeout_ms;
};

/* Sensible defaults: 64 KiB headers, 100 headers, 32 MiB body, 10000
 * connections, 60 s read, 75 s idle, 256 KiB high water, 60 s write. */
void gw_http_limits_default(struct gw_http_limits *limits);

struct gw_http_header {
    struct gw_str name;
    struct gw_str value;
};

/* One request. All fields are owned by the server and read-only for the
 * handler; views point into server-owned storage that lives as long as the
 * request. */
struct gw_http_req {
    const char *method;   /* "GET", "POST", ... (static) */
    struct gw_str target; /* request target as received, e.g. /v1/messages?beta=true */
    struct gw_str path;   /* target up to '?' */
    struct gw_str query;  /* after '?', without it; empty when none */
    struct gw_http_header *headers;
    size_t n_headers;
    struct gw_buf body; /* complete, de-chunked request body */
    uint64_t id;        /* unique within the process */
    char id_str[24];    /* printable request id for logs */
    char peer[64];      /* "127.0.0.1:5555" */
    int http_minor;     /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    void *data;         /* free for the handler */
};

/* Called once per complete request (head and body). The handler must finish
 * the request exactly once, now or later on the loop thread, with
 * gw_http_respond() or gw_http_start() ... gw_http_end(). The request stays
 * valid until then, even when the client disconnected. */
typedef void (*gw_http_handler_cb)(struct gw_http_req *req, void *arg);
/* The client went away before the response was finished. Writes fail with
 * GW_ECLOSED from now on; the handler must still finish the request. */
typedef void (*gw_http_abort_cb)(struct gw_http_req *req, void *arg);
/* The write queue dropped below half of the high-water mark. */
typedef void (*gw_http_drain_cb)(struct gw_http_req *req, void *arg);

/* Creates a server on `loop`. `limits` is copied; NULL means defaults. */
gw_err gw_http_server_new(uv_loop_t *loop, const struct gw_http_limits *limits,
                          gw_http_handler_cb handler, void *arg,
                          struct gw_http_server **out) GW_WARN_UNUSED;
/* Formats the body of an error the server answers by itself (400, 408, 413,
 * 431 ...), so clients get errors in their own API dialect. `path` is the
 * request path when it was already received (else empty). Append a JSON body
 * to out; leave it empty for the default {"error":{"message":...}}. Runs on
 * the loop thread. */
typedef void (*gw_http_error_body_cb)(int status, const char *message, struct gw_str path,
                                      struct gw_buf *out, void *arg);
void gw_http_server_set_error_body(struct gw_http_server *srv, gw_http_error_body_cb cb, void *arg);

/* Listens on "HOST:PORT" ("127.0.0.1:0", "[::1]:8080", "0.0.0.0:443"). With
 * port 0 the OS picks one; the bound port is written to *bound_port when not
 * NULL. `reuseport` sets SO_REUSEPORT so several loops can share the port. */
gw_err gw_http_server_listen(struct gw_http_server *srv, const char *host_port, int reuseport,
                             int *bound_port) GW_WARN_UNUSED;
/* Checks that "HOST:PORT" is free: binds a throwaway socket there without
 * SO_REUSEPORT and closes it. Use before several servers listen with
 * reuseport on a fixed port, which would otherwise silently share a port
 * that another process's SO_REUSEPORT socket holds. GW_OK when free (and
 * always for port 0), GW_EINVAL for a bad address, else the bind error
 * (e.g. address in use, mapped by gw_err_from_errno). Any thread. */
gw_err gw_http_listen_probe(const char *host_port) GW_WARN_UNUSED;
/* gw_http_server_listen() whose connections speak TLS with `tls` (borrowed;
 * the listener keeps its own reference). NULL tls: plaintext, exactly as
 * gw_http_server_listen(). A failed handshake closes the connection (logged
 * at debug); a plain HTTP request on the TLS port gets a plain-text 400 and
 * the connection is closed. */
gw_err gw_http_server_listen_tls(struct gw_http_server *srv, const char *host_port, int reuseport,
                                 struct gw_tls_ctx *tls, int *bound_port) GW_WARN_UNUSED;
/* Replaces the TLS context of every TLS listener of srv (certificate
 * reload): new connections use `tls` (borrowed, referenced), open ones keep
 * theirs. Plaintext listeners are left alone; NULL is ignored. */
void gw_http_server_set_tls(struct gw_http_server *srv, struct gw_tls_ctx *tls);
/* Counts open connections into *gauge (borrowed; must outlive the server):
 * +1 when one is accepted, -1 when it is freed, relaxed atomics, so any
 * thread may read it. Call before listening; NULL stops counting. */
void gw_http_server_set_conn_gauge(struct gw_http_server *srv, atomic_int_fast64_t *gauge);
/* Stops accepting new connections on every listener (the listening sockets
 * are closed) while open connections and requests in progress continue;
 * responses from now on carry "Connection: close", and idle keep-alive
 * connections are closed. For a graceful drain before
 * gw_http_server_close(). */
void gw_http_server_stop_accepting(struct gw_http_server *srv);
/* Requests the handler owns right now (received and not yet finished). */
size_t gw_http_server_active_requests(const struct gw_http_server *srv);
/* Stops accepting, closes every connection (requests in progress get their
 * abort callback) and frees the server once all handles are closed and all
 * requests finished; then calls closed_cb (may be NULL). */
void gw_http_server_close(struct gw_http_server *srv, void (*closed_cb)(void *arg), void *arg);

/* First header with this name (case-insensitive), or NULL. */
const struct gw_str *gw_http_req_header(const struct gw_http_req *req, const char *name);

/* Adds a response header before gw_http_respond() / gw_http_start(). Both
 * strings are copied. Content-Length, Transfer-Encoding, Connection and Date
 * are managed by the server and must not be added. */
void gw_http_add_header(struct gw_http_req *req, const char *name, const char *value);

/* Sends a complete response with Content-Length and finishes the request.
 * content_type may be NULL (no body type). */
void gw_http_respond(struct gw_http_req *req, int status, const char *content_type,
                     const void *body, size_t len);

/* Starts a streamed response (chunked on HTTP/1.1, close-delimited on 1.0).
 * Output is coalesced: the head goes out with the first body bytes (at
 * once, for the client's first-event latency); later pieces produced during
 * one loop iteration reach the socket in one write at the end of that
 * iteration (sooner past 64 KiB), so streamed events still leave promptly;
 * gw_http_end() and gw_http_respond() send what is pending at once. */
gw_err gw_http_start(struct gw_http_req *req, int status, const char *content_type) GW_WARN_UNUSED;
/* Starts a response whose body length is known in advance: the head carries
 * Content-Length: content_length (no chunking, keep-alive stays possible on
 * HTTP/1.0 too), and head and body leave together at the end of the loop
 * turn or at gw_http_end(), whichever comes first. Then exactly that many bytes with
 * gw_http_write() (more in total: GW_EINVAL, nothing written) and gw_http_end(); ending short
 * closes the connection so the client sees the truncation. Bodiless responses (HEAD, 1xx/204/304)
 * drop the writes as with gw_http_start(). Errors as gw_http_start(), plus GW_EINVAL for a length
 * over SIZE_MAX. */
gw_err gw_http_start_length(struct gw_http_req *req, int status, const char *content_type,
                            uint64_t content_length) GW_WARN_UNUSED;
/* Queues body bytes (copied). Never drops data: the caller keeps the queue
 * bounded by checking gw_http_writable() and waiting for the drain callback.
 * GW_ECLOSED after the client went away. */
gw_err gw_http_write(struct gw_http_req *req, const void *data, size_t len) GW_WARN_UNUSED;
/* 1 while the queued response bytes are below the high-water mark. */
int gw_http_writable(const struct gw_http_req *req);
/* Ends a streamed response and finishes the request. */
void gw_http_end(struct gw_http_req *req);
/* Finishes the request when the response cannot be completed (e.g. the
 * upstream broke mid-stream): the connection is closed without a proper end
 * so the client sees the truncation. */
void gw_http_abandon(struct gw_http_req *req);

void gw_http_set_abort_cb(struct gw_http_req *req, gw_http_abort_cb cb, void *arg);
void gw_http_set_drain_cb(struct gw_http_req *req, gw_http_drain_cb cb, void *arg);

/* Reason phrase for a status code ("Not Found"); "Unknown" when unknown. */
const char *gw_http_status_text(int status);

#endif
