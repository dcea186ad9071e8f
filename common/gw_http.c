/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 server on libuv and http_parser. One connection handles one
 * request at a time: the parser pauses at the end of each message, the
 * handler owns the request until it finishes it, and pipelined bytes wait in
 * a bounded per-connection buffer. Memory is only released from uv_close
 * callbacks so no object disappears under one of its own callbacks. */
#include "gw_http.h"

#include <http_parser.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw_log.h"
#include "gw_tls.h"

/* One read slab per server (per loop): libuv calls read_cb right after
 * alloc_cb, so it can be shared, and idle connections then cost no buffer. */
#define HTTP_READ_SLAB (64 * 1024)
/* Bytes of pipelined input buffered beyond max_header_bytes while a request
 * is being handled; past it the connection stops reading. */
#define HTTP_READAHEAD_EXTRA (64 * 1024)
/* After the response of a closing connection is flushed, keep reading (and
 * discarding) this long so unread request bytes do not turn our FIN into a
 * RST that would destroy the response at the client. */
#define HTTP_LINGER_MS 2000
/* Flush bound for a closing connection when no idle timeout is configured. */
#define HTTP_FLUSH_DEFAULT_MS 60000
/* Initial body reservation when Content-Length is known. */
#define HTTP_BODY_PREALLOC (1024 * 1024)
/* Response bytes produced during one loop iteration are coalesced into one
 * socket write (head, body pieces, the final chunk), flushed from the
 * server's prepare/check handles; beyond this many they go out at once. */
#define HTTP_COALESCE_MAX (64 * 1024)

enum http_req_state {
    REQ_PARSING,   /* owned by the connection, being received */
    REQ_HANDLING,  /* handed to the handler, no response yet */
    REQ_STREAMING, /* gw_http_start() done */
};

struct http_hdr_off {
    size_t name_off, name_len;
    size_t value_off, value_len;
};

struct http_conn;

struct http_req {
    struct gw_http_req pub; /* first: the handler's pointer is this struct's */
    struct http_conn *conn;
    enum http_req_state state;
    struct gw_buf store; /* target and header bytes; views point here */
    struct http_hdr_off *offs;
    size_t n_offs, cap_offs;
    size_t target_len;
    struct gw_buf resp_headers;
    unsigned last_was_value : 1;
    unsigned headers_done : 1;
    unsigned aborted : 1;
    unsigned is_head : 1;
    unsigned no_body : 1; /* HEAD, or a status without a body: writes are dropped */
    unsigned chunked : 1;
    unsigned close_after : 1;
    unsigned drain_armed : 1;
    unsigned has_length : 1; /* gw_http_start_length(): Content-Length framing */
    unsigned first_sent : 1; /* streamed: the first body bytes went out at once */
    uint64_t length_left;    /* body bytes still owed under has_length */
    gw_http_abort_cb abort_cb;
    void *abort_arg;
    gw_http_drain_cb drain_cb;
    void *drain_arg;
};

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    http_parser parser;
    struct gw_http_server *srv;
    struct http_conn *prev, *next;             /* server's connection list */
    struct http_conn *defer_prev, *defer_next; /* server's deferred-work list */
    struct http_conn *flush_prev, *flush_next; /* server's pending-output list */
    struct gw_buf out;                         /* response bytes not yet handed to the socket */
    size_t out_accounted;                      /* their share of `queued` (plaintext size) */
    struct http_req *cur;                      /* request being received or handled */
    struct gw_buf pending;                     /* received, not yet parsed (pipelining) */
    size_t header_bytes;
    size_t queued; /* response bytes in `out` or handed to uv_write, not yet completed */
    uint64_t deadline;
    uint64_t write_progress; /* loop time of the last write completion (write timeout) */
    struct gw_tls *tls;      /* NULL on plaintext connections */
    int err_status;
    const char *err_msg;
    char peer[64];
    unsigned busy : 1;    /* cur is with the handler */
    unsigned in_head : 1; /* cur has not completed its headers */
    unsigned reading : 1;
    unsigned shutting : 1;  /* response final; flushing then lingering */
    unsigned lingering : 1; /* FIN sent, discarding input */
    unsigned eof : 1;
    unsigned closing : 1;
    unsigned tcp_closed : 1;
    unsigned timer_closing : 1;
    unsigned timer_closed : 1;
    unsigned deferred : 1;
    unsigned defer_close : 1;
    unsigned tls_dead : 1; /* the TLS session failed: no close_notify */
    unsigned flush_queued : 1;
};

struct http_listener {
    uv_tcp_t tcp;
    struct gw_http_server *srv;
    struct gw_tls_ctx *tls; /* reference; NULL for plaintext */
    struct http_listener *next;
};

struct http_wreq {
    uv_write_t w;
    struct http_conn *conn;
    char *data;
    size_t len; /* plaintext bytes this write accounts for in conn->queued */
};

struct gw_http_server {
    uv_loop_t *loop;
    struct gw_http_limits limits;
    gw_http_handler_cb handler;
    void *arg;
    struct http_listener *listeners;
    struct http_conn *conns;
    size_t n_conns;
    size_t n_handles; /* listeners, rejected sockets and the idle handle */
    uv_idle_t idle;
    uv_prepare_t flush_prepare; /* flushes output made before the poll */
    uv_check_t flush_check;     /* flushes output made by I/O callbacks */
    struct http_conn *flush_head, *flush_tail;
    size_t n_flush;
    struct http_conn *defer_head, *defer_tail;
    size_t n_deferred;
    int closing;
    void (*closed_cb)(void *arg);
    void *closed_arg;
    gw_http_error_body_cb error_body_cb;
    void *error_body_arg;
    time_t date_sec;
    char date[40];
    atomic_int_fast64_t *conn_gauge; /* borrowed; NULL = not counted */
    size_t n_busy;                   /* requests with the handler */
    int draining;                    /* listeners closed; finish what is open */
    struct gw_buf tls_plain;         /* decrypted input being handled (loop scratch) */
    char slab[HTTP_READ_SLAB];
};

static atomic_uint_fast64_t http_next_id = 1;

static void conn_close(struct http_conn *c);
static void conn_on_timer(uv_timer_t *t);
static void srv_on_idle(uv_idle_t *h);
static void srv_on_flush_prepare(uv_prepare_t *h);
static void srv_on_flush_check(uv_check_t *h);

/* ---- small helpers ---- */

void
gw_http_limits_default(struct gw_http_limits *limits)
{
    limits->max_header_bytes = 64 * 1024;
    limits->max_headers = 100;
    limits->max_body_bytes = 32 * 1024 * 1024;
    limits->max_connections = 10000;
    limits->read_timeout_ms = 60000;
    limits->idle_timeout_ms = 75000;
    limits->write_high_water = 256 * 1024;
    limits->write_timeout_ms = 60000;
}

static const struct {
    int status;
    const char *text;
} http_status_texts[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {422, "Unprocessable Entity"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {499, "Client Closed Request"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {529, "Overloaded"},
};

const char *
gw_http_status_text(int status)
{
    size_t i;

    for (i = 0; i < sizeof(http_status_texts) / sizeof(http_status_texts[0]); i++) {
        if (http_status_texts[i].status == status)
            return http_status_texts[i].text;
    }
    return "Unknown";
}

static const char *
srv_date(struct gw_http_server *srv)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    if (now == srv->date_sec && srv->date[0] != '\0')
        return srv->date;
    if (gmtime_r(&now, &tm) == NULL)
        return srv->date;
    snprintf(srv->date, sizeof(srv->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    srv->date_sec = now;
    return srv->date;
}

static int
status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

static int
has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static void
sockaddr_format(const struct sockaddr_storage *ss, char *out, size_t out_size)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, out_size, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, out_size, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else {
        snprintf(out, out_size, "unknown");
    }
}

/* ---- server lifetime ---- */

static void
srv_maybe_free(struct gw_http_server *srv)
{
    void (*cb)(void *);
    void *arg;

    if (!srv->closing || srv->n_conns > 0 || srv->n_handles > 0)
        return;
    cb = srv->closed_cb;
    arg = srv->closed_arg;
    gw_buf_fini(&srv->tls_plain);
    free(srv);
    if (cb != NULL)
        cb(arg);
}

static void
srv_on_handle_close(uv_handle_t *h)
{
    struct gw_http_server *srv = h->data;

    srv->n_handles--;
    srv_maybe_free(srv);
}

static void
srv_on_owned_handle_close(uv_handle_t *h)
{
    struct gw_http_server *srv = h->data;

    free(h);
    srv->n_handles--;
    srv_maybe_free(srv);
}

static void
listener_on_close(uv_handle_t *h)
{
    struct http_listener *l = h->data;
    struct gw_http_server *srv = l->srv;

    gw_tls_ctx_unref(l->tls);
    free(l);
    srv->n_handles--;
    srv_maybe_free(srv);
}

/* ---- deferred work (resume pipelined input, close after a failed write) ---- */

static void
conn_defer(struct http_conn *c)
{
    struct gw_http_server *srv = c->srv;

    if (c->deferred || c->closing || srv->closing)
        return;
    c->deferred = 1;
    c->defer_next = NULL;
    c->defer_prev = srv->defer_tail;
    if (srv->defer_tail != NULL)
        srv->defer_tail->defer_next = c;
    else
        srv->defer_head = c;
    srv->defer_tail = c;
    srv->n_deferred++;
    uv_idle_start(&srv->idle, srv_on_idle);
}

static void
conn_undefer(struct http_conn *c)
{
    struct gw_http_server *srv = c->srv;

    if (!c->deferred)
        return;
    if (c->defer_prev != NULL)
        c->defer_prev->defer_next = c->defer_next;
    else
        srv->defer_head = c->defer_next;
    if (c->defer_next != NULL)
        c->defer_next->defer_prev = c->defer_prev;
    else
        srv->defer_tail = c->defer_prev;
    c->defer_prev = c->defer_next = NULL;
    c->deferred = 0;
    srv->n_deferred--;
}

/* ---- pending output (one socket write per connection and loop turn) ---- */

static void
conn_flush_enqueue(struct http_conn *c)
{
    struct gw_http_server *srv = c->srv;

    if (c->flush_queued)
        return;
    c->flush_queued = 1;
    c->flush_next = NULL;
    c->flush_prev = srv->flush_tail;
    if (srv->flush_tail != NULL)
        srv->flush_tail->flush_next = c;
    else
        srv->flush_head = c;
    srv->flush_tail = c;
    if (srv->n_flush++ == 0 && !srv->closing) {
        uv_prepare_start(&srv->flush_prepare, srv_on_flush_prepare);
        uv_check_start(&srv->flush_check, srv_on_flush_check);
    }
}

static void
conn_flush_dequeue(struct http_conn *c)
{
    struct gw_http_server *srv = c->srv;

    if (!c->flush_queued)
        return;
    if (c->flush_prev != NULL)
        c->flush_prev->flush_next = c->flush_next;
    else
        srv->flush_head = c->flush_next;
    if (c->flush_next != NULL)
        c->flush_next->flush_prev = c->flush_prev;
    else
        srv->flush_tail = c->flush_prev;
    c->flush_prev = c->flush_next = NULL;
    c->flush_queued = 0;
    if (--srv->n_flush == 0) {
        uv_prepare_stop(&srv->flush_prepare);
        uv_check_stop(&srv->flush_check);
    }
}

/* ---- requests ---- */

static struct http_req *
req_new(struct http_conn *c)
{
    struct http_req *r = gw_xcalloc(1, sizeof(*r));
    uint64_t id = atomic_fetch_add(&http_next_id, 1);

    r->conn = c;
    r->state = REQ_PARSING;
    r->pub.method = "GET";
    r->pub.id = id;
    snprintf(r->pub.id_str, sizeof(r->pub.id_str), "r-%" PRIx64, id);
    memcpy(r->pub.peer, c->peer, sizeof(r->pub.peer));
    gw_buf_init(&r->store);
    gw_buf_init(&r->pub.body);
    gw_buf_init(&r->resp_headers);
    return r;
}

static void
req_free(struct http_req *r)
{
    gw_buf_fini(&r->store);
    gw_buf_fini(&r->pub.body);
    gw_buf_fini(&r->resp_headers);
    free(r->offs);
    free(r->pub.headers);
    free(r);
}

/* ---- connection I/O ---- */

static size_t
conn_readahead_limit(const struct http_conn *c)
{
    return c->srv->limits.max_header_bytes + HTTP_READAHEAD_EXTRA;
}

static void
conn_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *c = h->data;

    (void)suggested;
    buf->base = c->srv->slab;
    buf->len = sizeof(c->srv->slab);
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reads whenever something may arrive that we want: requests, read-ahead
 * while busy (bounded), or the client's EOF while lingering. */
static void
conn_update_reading(struct http_conn *c)
{
    int want;

    if (c->closing)
        return;
    if (c->shutting)
        want = !c->eof;
    else
        want = c->pending.len < conn_readahead_limit(c);
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, conn_on_alloc, conn_on_read) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void
conn_timer_start(struct http_conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, conn_on_timer, ms, 0);
}

/* Read timeout while a request is arriving, idle timeout between requests,
 * nothing while the handler owns the request. */
static void
conn_arm_timer(struct http_conn *c)
{
    const struct gw_http_limits *lim = &c->srv->limits;

    if (c->closing || c->shutting)
        return;
    if (c->busy) {
        /* The handler owns the pace; only a client that stops reading
         * while a response is queued is timed. */
        uint64_t now = uv_now(c->srv->loop);
        uint64_t end = c->write_progress + lim->write_timeout_ms;
        if (lim->write_timeout_ms > 0 && c->queued > 0)
            conn_timer_start(c, end > now ? end - now : 0);
        else
            uv_timer_stop(&c->timer);
    } else if (c->cur != NULL) {
        uint64_t now = uv_now(c->srv->loop);
        if (lim->read_timeout_ms == 0)
            uv_timer_stop(&c->timer);
        else
            conn_timer_start(c, c->deadline > now ? c->deadline - now : 0);
    } else if (lim->idle_timeout_ms > 0) {
        conn_timer_start(c, lim->idle_timeout_ms);
    } else {
        uv_timer_stop(&c->timer);
    }
}

static uint64_t
conn_flush_timeout(const struct http_conn *c)
{
    uint64_t ms = c->srv->limits.idle_timeout_ms;
    return ms > 0 ? ms : HTTP_FLUSH_DEFAULT_MS;
}

/* `accounted` queued bytes reached the socket. With `may_call_back` the
 * drain callback may run (never from inside a gw_http_* call). */
static void
conn_written(struct http_conn *c, size_t accounted, int may_call_back)
{
    struct http_req *r;
    size_t high = c->srv->limits.write_high_water;

    c->queued -= accounted;
    c->write_progress = uv_now(c->srv->loop);
    if (c->shutting) {
        if (!c->lingering)
            conn_timer_start(c, conn_flush_timeout(c));
        return;
    }
    r = c->cur;
    if (may_call_back && r != NULL && c->busy && r->drain_armed && c->queued < high / 2) {
        r->drain_armed = 0;
        /* The callback may finish (and free) the request: touch nothing after. */
        if (r->drain_cb != NULL)
            r->drain_cb(&r->pub, r->drain_arg);
    }
}

static void
conn_on_write(uv_write_t *w, int status)
{
    struct http_wreq *wr = (struct http_wreq *)w;
    struct http_conn *c = wr->conn;
    size_t accounted = wr->len;

    free(wr->data);
    free(wr);
    if (c->closing) {
        c->queued -= accounted;
        return;
    }
    if (status < 0) {
        c->queued -= accounted;
        gw_log(GW_LOG_DEBUG, "HTTP-WRITE", "write to %s failed: %s", c->peer, uv_strerror(status));
        conn_close(c);
        return;
    }
    conn_written(c, accounted, 1);
}

/* A synchronous write failure closes the connection from the idle
 * callback, never under the caller. */
static void
conn_write_failed(struct http_conn *c)
{
    c->defer_close = 1;
    conn_defer(c);
}

/* Hands the pending output to the socket: uv_try_write first (no request,
 * no callback when the kernel takes it all), uv_write for the rest. */
static int
conn_flush(struct http_conn *c, int may_call_back)
{
    struct http_wreq *wr;
    uv_buf_t ub;
    size_t len, accounted = c->out_accounted;
    char *data;
    int rv;

    conn_flush_dequeue(c);
    if (c->out.len == 0)
        return 0;
    c->out_accounted = 0;
    data = gw_buf_steal(&c->out, &len);
    if (c->closing || c->defer_close) {
        free(data);
        return -1;
    }
    if (len > UINT_MAX) {
        gw_log(GW_LOG_ERROR, "HTTP-WRITE", "refusing a %zu-byte write to %s", len, c->peer);
        free(data);
        conn_write_failed(c);
        return -1;
    }
    ub = uv_buf_init(data, (unsigned)len);
    rv = uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
    if (rv >= 0 && (size_t)rv == len) {
        free(data);
        conn_written(c, accounted, may_call_back);
        return 0;
    }
    if (rv > 0) {
        ub.base += rv;
        ub.len -= (unsigned)rv;
    } else if (rv < 0 && rv != UV_EAGAIN && rv != UV_ENOSYS) {
        gw_log(GW_LOG_DEBUG, "HTTP-WRITE", "write to %s failed: %s", c->peer, uv_strerror(rv));
        free(data);
        conn_write_failed(c);
        return -1;
    }
    wr = gw_xmalloc(sizeof(*wr));
    wr->conn = c;
    wr->data = data;
    wr->len = accounted;
    rv = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &ub, 1, conn_on_write);
    if (rv < 0) {
        gw_log(GW_LOG_DEBUG, "HTTP-WRITE", "write to %s refused: %s", c->peer, uv_strerror(rv));
        free(data);
        free(wr);
        conn_write_failed(c);
        return -1;
    }
    return 0;
}

static void
srv_flush_pending(struct gw_http_server *srv)
{
    size_t n = srv->n_flush;

    /* Only what is pending now: a drain callback that writes more queues
     * the connection again for the next flush point. */
    while (n-- > 0 && srv->flush_head != NULL)
        conn_flush(srv->flush_head, 1);
}

static void
srv_on_flush_prepare(uv_prepare_t *h)
{
    srv_flush_pending(h->data);
}

static void
srv_on_flush_check(uv_check_t *h)
{
    srv_flush_pending(h->data);
}

/* Takes the buffer's storage and adds it to the connection's pending
 * output, flushed at the end of this loop turn (or now past
 * HTTP_COALESCE_MAX); `accounted` is what it adds to the write queue (the
 * plaintext size; 0 for TLS's own records). */
static int conn_out_added(struct http_conn *c, size_t accounted);

static int
conn_write_raw(struct http_conn *c, struct gw_buf *b, size_t accounted)
{
    size_t len = b->len;

    if (len == 0 || c->closing || c->defer_close) {
        gw_buf_fini(b);
        return len == 0 ? 0 : -1;
    }
    if (c->out.len == 0) {
        /* Nothing pending: adopt the storage instead of copying it. */
        gw_buf_fini(&c->out);
        c->out = *b;
        gw_buf_init(b);
    } else {
        gw_buf_append(&c->out, b->data, len);
        gw_buf_fini(b);
    }
    return conn_out_added(c, accounted);
}

/* Bookkeeping after bytes were appended to c->out: write queue, write
 * timeout, and the flush (now when big, else at the end of the turn). */
static int
conn_out_added(struct http_conn *c, size_t accounted)
{
    c->out_accounted += accounted;
    if (c->queued == 0 && accounted > 0) {
        /* The write timeout counts from the moment bytes are waiting. */
        c->write_progress = uv_now(c->srv->loop);
        if (c->busy && c->srv->limits.write_timeout_ms > 0 &&
            !uv_is_active((uv_handle_t *)&c->timer))
            conn_timer_start(c, c->srv->limits.write_timeout_ms);
    }
    c->queued += accounted;
    if (c->out.len >= HTTP_COALESCE_MAX)
        return conn_flush(c, 0);
    conn_flush_enqueue(c);
    return 0;
}

/* Takes the buffer's storage and queues it, encrypted on a TLS connection.
 * The write queue accounts for the plaintext size either way. */
static int
conn_write_buf(struct http_conn *c, struct gw_buf *b)
{
    struct gw_buf cipher = GW_BUF_INIT;
    size_t len = b->len;
    gw_err rv;

    if (c->tls == NULL)
        return conn_write_raw(c, b, len);
    if (len == 0 || c->closing || c->defer_close) {
        gw_buf_fini(b);
        return len == 0 ? 0 : -1;
    }
    rv = gw_tls_write(c->tls, b->data, len, &cipher);
    gw_buf_fini(b);
    if (rv != GW_OK) {
        gw_log(GW_LOG_DEBUG, "HTTP-TLS", "cannot encrypt for %s: %s", c->peer, gw_strerror(rv));
        gw_buf_fini(&cipher);
        c->tls_dead = 1;
        c->defer_close = 1;
        conn_defer(c);
        return -1;
    }
    return conn_write_raw(c, &cipher, len);
}

/* ---- closing ---- */

static void
conn_maybe_free(struct http_conn *c)
{
    struct gw_http_server *srv = c->srv;

    if (!c->tcp_closed || !c->timer_closed)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    srv->n_conns--;
    if (srv->conn_gauge != NULL)
        atomic_fetch_sub_explicit(srv->conn_gauge, 1, memory_order_relaxed);
    gw_buf_fini(&c->pending);
    gw_buf_fini(&c->out);
    gw_tls_free(c->tls);
    free(c);
    srv_maybe_free(srv);
}

static void
conn_on_tcp_close(uv_handle_t *h)
{
    struct http_conn *c = h->data;

    c->tcp_closed = 1;
    conn_maybe_free(c);
}

static void
conn_on_timer_close(uv_handle_t *h)
{
    struct http_conn *c = h->data;

    c->timer_closed = 1;
    conn_maybe_free(c);
}

/* The timer handle stays open while the handler still owns a request, so
 * the connection is freed from a close callback once that request is done. */
static void
conn_maybe_close_timer(struct http_conn *c)
{
    if (!c->closing || c->busy || c->timer_closing)
        return;
    c->timer_closing = 1;
    uv_close((uv_handle_t *)&c->timer, conn_on_timer_close);
}

/* Idempotent. Requests being received are dropped; one with the handler is
 * marked aborted and its abort callback runs (it may finish the request). */
static void
conn_close(struct http_conn *c)
{
    struct http_req *r;

    if (c->closing)
        return;
    c->closing = 1;
    conn_undefer(c);
    conn_flush_dequeue(c);
    gw_buf_fini(&c->out);
    c->out_accounted = 0;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, conn_on_tcp_close);
    c->reading = 0;
    r = c->cur;
    if (r != NULL && !c->busy) {
        c->cur = NULL;
        req_free(r);
    } else if (r != NULL && !r->aborted) {
        r->aborted = 1;
        gw_log_req(GW_LOG_DEBUG, "HTTP-ABORT", r->pub.id_str, "client %s went away", c->peer);
        if (r->abort_cb != NULL)
            r->abort_cb(&r->pub, r->abort_arg);
    }
    conn_maybe_close_timer(c);
}

static void
conn_on_shutdown(uv_shutdown_t *req, int status)
{
    struct http_conn *c = req->data;

    if (c->closing)
        return;
    if (status < 0 || c->eof) {
        conn_close(c);
        return;
    }
    c->lingering = 1;
    conn_timer_start(c, HTTP_LINGER_MS);
}

/* Ends the connection gracefully: flush queued writes, send FIN, discard
 * input until the client closes or the linger time passes. */
static void
conn_shutdown(struct http_conn *c)
{
    int rv;

    if (c->shutting || c->closing)
        return;
    c->shutting = 1;
    conn_undefer(c);
    gw_buf_fini(&c->pending);
    if (c->cur != NULL && !c->busy) {
        req_free(c->cur);
        c->cur = NULL;
    }
    if (c->tls != NULL && !c->tls_dead && !c->defer_close) {
        struct gw_buf notify = GW_BUF_INIT;
        gw_tls_close_notify(c->tls, &notify);
        conn_write_raw(c, &notify, 0);
    }
    /* The FIN goes after everything pending. */
    conn_flush(c, 0);
    if (c->closing)
        return;
    c->shutdown.data = c;
    rv = uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, conn_on_shutdown);
    if (rv < 0) {
        conn_close(c);
        return;
    }
    conn_update_reading(c);
    conn_timer_start(c, conn_flush_timeout(c));
}

/* The complete response to an error the server answers itself. */
static void
conn_error_response(struct http_conn *c, int status, const char *msg, struct gw_buf *b)
{
    struct gw_buf body = GW_BUF_INIT;

    /* The program may answer in its clients' own error dialect. */
    if (c->srv->error_body_cb != NULL) {
        struct gw_str path = {"", 0};
        if (c->cur != NULL && c->cur->pub.path.len > 0)
            path = c->cur->pub.path;
        c->srv->error_body_cb(status, msg, path, &body, c->srv->error_body_arg);
    }
    if (body.len == 0)
        gw_buf_appendf(&body, "{\"error\":{\"message\":\"%s\"}}", msg);
    gw_buf_appendf(b,
                   "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   status, gw_http_status_text(status), srv_date(c->srv), body.len);
    gw_buf_append(b, body.data, body.len);
    gw_buf_fini(&body);
}

/* An error the server answers itself, while no handler owns a request. */
static void
conn_fail(struct http_conn *c, int status, const char *msg)
{
    struct gw_buf b = GW_BUF_INIT;

    if (c->closing || c->shutting)
        return;
    gw_log(GW_LOG_DEBUG, "HTTP-REJECT", "%s: %d %s", c->peer, status, msg);
    conn_error_response(c, status, msg, &b);
    conn_write_buf(c, &b);
    conn_shutdown(c);
}

static void
conn_on_timer(uv_timer_t *t)
{
    struct http_conn *c = t->data;

    if (c->closing)
        return;
    if (c->shutting) {
        conn_close(c);
    } else if (c->busy) {
        const struct gw_http_limits *lim = &c->srv->limits;
        uint64_t now = uv_now(c->srv->loop);
        if (lim->write_timeout_ms == 0 || c->queued == 0)
            return;
        if (now - c->write_progress < lim->write_timeout_ms) {
            conn_arm_timer(c); /* progress since the timer was set */
            return;
        }
        gw_log(GW_LOG_DEBUG, "HTTP-SEND-TIMEOUT",
               "%s read nothing of %zu queued response bytes for %" PRIu64 " ms; dropping", c->peer,
               c->queued, now - c->write_progress);
        conn_close(c);
    } else if (c->cur != NULL) {
        conn_fail(c, 408, "request not received in time");
    } else {
        conn_close(c);
    }
}

/* ---- parser callbacks ---- */

static int
parser_on_message_begin(http_parser *p)
{
    struct http_conn *c = p->data;

    if (c->cur != NULL)
        return -1;
    c->cur = req_new(c);
    c->in_head = 1;
    c->header_bytes = 0;
    c->deadline = uv_now(c->srv->loop) + c->srv->limits.read_timeout_ms;
    return 0;
}

static int
parser_on_url(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->cur;

    gw_buf_append(&r->store, at, len);
    r->target_len += len;
    return 0;
}

static int
parser_on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->cur;
    struct http_hdr_off *h;

    if (r->headers_done)
        return 0; /* trailers of a chunked body are not exposed */
    if (r->n_offs == 0 || r->last_was_value) {
        if (r->n_offs >= c->srv->limits.max_headers) {
            c->err_status = 431;
            c->err_msg = "too many request headers";
            return -1;
        }
        if (r->n_offs == r->cap_offs) {
            r->cap_offs = r->cap_offs ? r->cap_offs * 2 : 16;
            r->offs = gw_xrealloc(r->offs, r->cap_offs * sizeof(*r->offs));
        }
        h = &r->offs[r->n_offs++];
        h->name_off = r->store.len;
        h->name_len = 0;
        h->value_off = 0;
        h->value_len = 0;
        r->last_was_value = 0;
    }
    h = &r->offs[r->n_offs - 1];
    gw_buf_append(&r->store, at, len);
    h->name_len += len;
    return 0;
}

static int
parser_on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->cur;
    struct http_hdr_off *h;

    if (r->headers_done || r->n_offs == 0)
        return 0;
    h = &r->offs[r->n_offs - 1];
    if (!r->last_was_value) {
        h->value_off = r->store.len;
        h->value_len = 0;
        r->last_was_value = 1;
    }
    gw_buf_append(&r->store, at, len);
    h->value_len += len;
    return 0;
}

static void
req_split_target(struct http_req *r)
{
    const char *t = r->pub.target.p;
    size_t n = r->pub.target.len;
    size_t start = 0;
    const char *q;
    struct http_parser_url u;

    if (n > 0 && t[0] != '/' && t[0] != '*') {
        /* absolute-form: the path starts after the authority */
        http_parser_url_init(&u);
        if (http_parser_parse_url(t, n, 0, &u) == 0 && (u.field_set & (1 << UF_PATH)))
            start = u.field_data[UF_PATH].off;
        else
            start = n;
    }
    q = memchr(t + start, '?', n - start);
    r->pub.path.p = t + start;
    if (q != NULL) {
        r->pub.path.len = (size_t)(q - (t + start));
        r->pub.query.p = q + 1;
        r->pub.query.len = n - (size_t)(q + 1 - t);
    } else {
        r->pub.path.len = n - start;
        r->pub.query.p = t + n;
        r->pub.query.len = 0;
    }
}

static int
parser_on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->cur;
    const struct gw_http_limits *lim = &c->srv->limits;
    const struct gw_str *expect;
    int has_cl = (p->flags & F_CONTENTLENGTH) != 0;
    int chunked = (p->flags & F_CHUNKED) != 0;
    size_t i;

    c->in_head = 0;
    r->headers_done = 1;
    if (p->http_major != 1) {
        c->err_status = 505;
        c->err_msg = "only HTTP/1.x is supported";
        return -1;
    }
    /* The store no longer grows: views into it are stable from here on. */
    if (r->store.data == NULL)
        gw_buf_reserve(&r->store, 0);
    r->pub.headers = gw_xcalloc(r->n_offs ? r->n_offs : 1, sizeof(*r->pub.headers));
    for (i = 0; i < r->n_offs; i++) {
        const struct http_hdr_off *o = &r->offs[i];
        size_t vlen = o->value_len;
        const char *v = r->store.data + o->value_off;
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        r->pub.headers[i].name.p = r->store.data + o->name_off;
        r->pub.headers[i].name.len = o->name_len;
        r->pub.headers[i].value.p = o->value_len ? v : r->store.data + r->store.len;
        r->pub.headers[i].value.len = vlen;
    }
    r->pub.n_headers = r->n_offs;
    r->pub.target.p = r->store.data;
    r->pub.target.len = r->target_len;
    req_split_target(r);
    r->pub.method = http_method_str((enum http_method)p->method);
    r->pub.http_minor = p->http_minor;
    r->is_head = p->method == HTTP_HEAD;

    if (has_cl && p->content_length > lim->max_body_bytes) {
        c->err_status = 413;
        c->err_msg = "request body too large";
        return -1;
    }
    expect = gw_http_req_header(&r->pub, "expect");
    if (expect != NULL && gw_str_case_eq(*expect, "100-continue") && p->http_minor >= 1 &&
        (chunked || (has_cl && p->content_length > 0))) {
        struct gw_buf b = GW_BUF_INIT;
        gw_buf_append_str(&b, "HTTP/1.1 100 Continue\r\n\r\n");
        conn_write_buf(c, &b);
    }
    if (has_cl && p->content_length > 0)
        gw_buf_reserve(&r->pub.body, p->content_length < HTTP_BODY_PREALLOC
                                         ? (size_t)p->content_length
                                         : HTTP_BODY_PREALLOC);
    return 0;
}

static int
parser_on_body(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->cur;

    if (len > c->srv->limits.max_body_bytes - r->pub.body.len ||
        r->pub.body.len > c->srv->limits.max_body_bytes) {
        c->err_status = 413;
        c->err_msg = "request body too large";
        return -1;
    }
    gw_buf_append(&r->pub.body, at, len);
    return 0;
}

static int
parser_on_message_complete(http_parser *p)
{
    /* Stop here: the next pipelined request waits until this one is done. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings http_settings = {
    .on_message_begin = parser_on_message_begin,
    .on_url = parser_on_url,
    .on_header_field = parser_on_header_field,
    .on_header_value = parser_on_header_value,
    .on_headers_complete = parser_on_headers_complete,
    .on_body = parser_on_body,
    .on_message_complete = parser_on_message_complete,
};

/* ---- request flow ---- */

static void
conn_dispatch(struct http_conn *c)
{
    struct http_req *r = c->cur;
    struct gw_http_server *srv = c->srv;

    c->in_head = 0;
    r->close_after = !http_should_keep_alive(&c->parser) || c->parser.upgrade;
    r->state = REQ_HANDLING;
    if (r->pub.body.data == NULL)
        gw_buf_reserve(&r->pub.body, 0);
    c->busy = 1;
    srv->n_busy++;
    uv_timer_stop(&c->timer);
    conn_update_reading(c); /* keep reading to notice a client that goes away */
    srv->handler(&r->pub, srv->arg);
}

/* Parses input while no request is with the handler. Stops at a complete
 * request (dispatches it, keeping the rest in c->pending) or an error. */
static void
conn_feed(struct http_conn *c, const char *data, size_t len)
{
    const struct gw_http_limits *lim = &c->srv->limits;

    while (len > 0 && !c->closing && !c->shutting) {
        size_t n = len;
        size_t used;
        enum http_errno e;
        int head = c->cur == NULL || c->in_head;

        if (head) {
            /* Feed at most the remaining header budget, so the parser never
             * sees more header bytes than allowed. */
            size_t seen = c->cur != NULL ? c->header_bytes : 0;
            size_t budget = lim->max_header_bytes > seen ? lim->max_header_bytes - seen : 0;
            if (budget == 0) {
                conn_fail(c, 431, "request header too large");
                return;
            }
            if (n > budget)
                n = budget;
        }
        c->err_status = 0;
        c->err_msg = NULL;
        used = http_parser_execute(&c->parser, &http_settings, data, n);
        e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            data += used;
            len -= used;
            if (len > 0)
                gw_buf_append(&c->pending, data, len);
            conn_dispatch(c);
            return;
        }
        if (e != HPE_OK) {
            int status = c->err_status ? c->err_status : 400;
            const char *msg = c->err_msg ? c->err_msg : "malformed request";
            if (e == HPE_HEADER_OVERFLOW) {
                status = 431;
                msg = "request header too large";
            }
            gw_log(GW_LOG_DEBUG, "HTTP-PARSE", "%s: %s", c->peer, http_errno_name(e));
            conn_fail(c, status, msg);
            return;
        }
        if (c->cur != NULL && c->in_head)
            c->header_bytes += used;
        if (used == 0)
            break; /* cannot happen without an error; never spin */
        data += used;
        len -= used;
    }
}

/* Parses what arrived while the previous request was handled. */
static void
conn_resume(struct http_conn *c)
{
    struct gw_buf tmp = c->pending;

    gw_buf_init(&c->pending);
    conn_feed(c, tmp.data, tmp.len);
    gw_buf_fini(&tmp);
    if (c->closing || c->shutting || c->busy)
        return;
    conn_update_reading(c);
    conn_arm_timer(c);
}

static void
srv_on_idle(uv_idle_t *h)
{
    struct gw_http_server *srv = h->data;
    size_t n = srv->n_deferred;

    /* Only what was queued before this call: work queued meanwhile (a
     * handler that answered at once) waits for the next loop iteration. */
    while (n-- > 0 && srv->defer_head != NULL) {
        struct http_conn *c = srv->defer_head;
        conn_undefer(c);
        if (c->defer_close) {
            conn_close(c);
            continue;
        }
        if (!c->closing && !c->shutting && !c->busy)
            conn_resume(c);
    }
    if (srv->defer_head == NULL)
        uv_idle_stop(h);
}

static void
req_finish(struct http_req *r, int abandoned)
{
    struct http_conn *c = r->conn;
    int close_after = r->close_after || abandoned || r->aborted;

    if (abandoned && !r->aborted)
        gw_log_req(GW_LOG_DEBUG, "HTTP-ABANDON", r->pub.id_str, "response to %s abandoned",
                   c->peer);
    c->cur = NULL;
    c->busy = 0;
    c->srv->n_busy--;
    req_free(r);
    if (c->closing) {
        conn_maybe_close_timer(c);
        return;
    }
    if (close_after || c->srv->closing || c->srv->draining) {
        conn_shutdown(c);
        return;
    }
    if (c->pending.len > 0) {
        conn_defer(c);
        return;
    }
    conn_update_reading(c);
    conn_arm_timer(c);
}

/* ---- accepting ---- */

static void
srv_on_connection(uv_stream_t *server, int status)
{
    struct http_listener *l = server->data;
    struct gw_http_server *srv = l->srv;
    struct http_conn *c;
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);
    int rv;

    if (status < 0) {
        gw_log(GW_LOG_WARN, "HTTP-ACCEPT", "accept failed: %s", uv_strerror(status));
        return;
    }
    if (srv->closing || srv->draining)
        return;
    if (srv->n_conns >= srv->limits.max_connections) {
        uv_tcp_t *t = gw_xmalloc(sizeof(*t));
        uv_tcp_init(srv->loop, t);
        t->data = srv;
        srv->n_handles++;
        if (uv_accept(server, (uv_stream_t *)t) == 0)
            gw_log(GW_LOG_WARN, "HTTP-LIMIT", "connection limit %zu reached, closing new one",
                   srv->limits.max_connections);
        uv_close((uv_handle_t *)t, srv_on_owned_handle_close);
        return;
    }
    c = gw_xcalloc(1, sizeof(*c));
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    gw_buf_init(&c->pending);
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    if (srv->conn_gauge != NULL)
        atomic_fetch_add_explicit(srv->conn_gauge, 1, memory_order_relaxed);
    rv = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rv < 0) {
        gw_log(GW_LOG_WARN, "HTTP-ACCEPT", "accept failed: %s", uv_strerror(rv));
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    memset(&ss, 0, sizeof(ss));
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &namelen) == 0)
        sockaddr_format(&ss, c->peer, sizeof(c->peer));
    else
        snprintf(c->peer, sizeof(c->peer), "unknown");
    if (l->tls != NULL && gw_tls_new(l->tls, c->peer, &c->tls) != GW_OK) {
        gw_log(GW_LOG_WARN, "HTTP-TLS", "cannot set up TLS for %s", c->peer);
        conn_close(c);
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    conn_update_reading(c);
    conn_arm_timer(c);
}

/* Plaintext input: parsed now, or kept while a request is being handled. */
static void
conn_input(struct http_conn *c, const char *data, size_t len)
{
    if (c->busy || c->pending.len > 0) {
        gw_buf_append(&c->pending, data, len);
        conn_update_reading(c);
        return;
    }
    conn_feed(c, data, len);
    if (!c->busy && !c->closing && !c->shutting)
        conn_arm_timer(c);
}

/* Ciphertext input: the handshake, then decrypted requests. */
static void
conn_tls_input(struct http_conn *c, const char *data, size_t len)
{
    struct gw_http_server *srv = c->srv;
    struct gw_buf *plain = &srv->tls_plain;
    struct gw_buf out = GW_BUF_INIT;
    int was_done = gw_tls_handshake_done(c->tls);
    gw_err rv;

    /* The scratch buffer is free: input handling never re-enters here. */
    plain->len = 0;
    rv = gw_tls_feed(c->tls, data, len, plain, &out);
    conn_write_raw(c, &out, 0);
    if (!was_done && gw_tls_handshake_done(c->tls))
        gw_log(GW_LOG_DEBUG, "HTTP-TLS", "%s: %s handshake done, ALPN '%s'", c->peer,
               gw_tls_version(c->tls), gw_tls_alpn(c->tls));
    if (rv == GW_EPROTO) {
        c->tls_dead = 1;
        if (gw_tls_peer_spoke_http(c->tls) && !c->closing) {
            /* Tell a plain HTTP client what went wrong, in plain text. */
            struct gw_buf b = GW_BUF_INIT;
            conn_error_response(c, 400, "plain HTTP request sent to an HTTPS port", &b);
            conn_write_raw(c, &b, 0);
        }
        conn_shutdown(c);
        return;
    }
    if (plain->len > 0 && !c->closing)
        conn_input(c, plain->data, plain->len);
    plain->len = 0;
    /* close_notify: the client will send nothing more, like EOF. */
    if (rv == GW_ECLOSED && !c->closing && !c->shutting)
        conn_close(c);
}

static void
conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *c = s->data;

    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (c->shutting && nread == UV_EOF && !c->lingering) {
            /* Half-closed client: still flush the response, then close. */
            c->eof = 1;
            conn_update_reading(c);
            return;
        }
        if (nread != UV_EOF)
            gw_log(GW_LOG_DEBUG, "HTTP-READ", "read from %s failed: %s", c->peer,
                   uv_strerror((int)nread));
        conn_close(c);
        return;
    }
    if (c->shutting)
        return; /* lingering: discard */
    if (c->tls != NULL)
        conn_tls_input(c, buf->base, (size_t)nread);
    else
        conn_input(c, buf->base, (size_t)nread);
}

/* ---- public API ---- */

void
gw_http_server_set_error_body(struct gw_http_server *srv, gw_http_error_body_cb cb, void *arg)
{
    srv->error_body_cb = cb;
    srv->error_body_arg = arg;
}

gw_err
gw_http_server_new(uv_loop_t *loop, const struct gw_http_limits *limits, gw_http_handler_cb handler,
                   void *arg, struct gw_http_server **out)
{
    struct gw_http_server *srv;

    if (loop == NULL || handler == NULL || out == NULL)
        return GW_EINVAL;
    srv = gw_xcalloc(1, sizeof(*srv));
    srv->loop = loop;
    if (limits != NULL)
        srv->limits = *limits;
    else
        gw_http_limits_default(&srv->limits);
    if (srv->limits.write_high_water == 0)
        srv->limits.write_high_water = 1;
    srv->handler = handler;
    srv->arg = arg;
    uv_idle_init(loop, &srv->idle);
    srv->idle.data = srv;
    uv_prepare_init(loop, &srv->flush_prepare);
    srv->flush_prepare.data = srv;
    uv_check_init(loop, &srv->flush_check);
    srv->flush_check.data = srv;
    srv->n_handles = 3;
    *out = srv;
    return GW_OK;
}

static gw_err
parse_host_port(const char *host_port, struct sockaddr_storage *ss)
{
    char host[256];
    const char *port_str;
    size_t host_len;
    char *end;
    long port;
    struct addrinfo hints, *res = NULL;

    if (host_port == NULL)
        return GW_EINVAL;
    if (host_port[0] == '[') {
        const char *close = strchr(host_port, ']');
        if (close == NULL || close[1] != ':')
            return GW_EINVAL;
        host_len = (size_t)(close - host_port - 1);
        if (host_len == 0 || host_len >= sizeof(host))
            return GW_EINVAL;
        memcpy(host, host_port + 1, host_len);
        host[host_len] = '\0';
        port_str = close + 2;
    } else {
        const char *colon = strrchr(host_port, ':');
        if (colon == NULL)
            return GW_EINVAL;
        host_len = (size_t)(colon - host_port);
        if (host_len >= sizeof(host))
            return GW_EINVAL;
        memcpy(host, host_port, host_len);
        host[host_len] = '\0';
        if (host_len == 0 || strcmp(host, "*") == 0)
            snprintf(host, sizeof(host), "0.0.0.0");
        port_str = colon + 1;
    }
    if (*port_str == '\0')
        return GW_EINVAL;
    port = strtol(port_str, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        return GW_EINVAL;
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return GW_OK;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        return GW_OK;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
        return GW_EINVAL;
    if (res->ai_addrlen > sizeof(*ss)) {
        freeaddrinfo(res);
        return GW_EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        return GW_EINVAL;
    return GW_OK;
}

gw_err
gw_http_listen_probe(const char *host_port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, one = 1;
    gw_err rv;

    rv = parse_host_port(host_port, &ss);
    if (rv != GW_OK)
        return rv;
    if (ss.ss_family == AF_INET6) {
        len = sizeof(struct sockaddr_in6);
        if (((struct sockaddr_in6 *)&ss)->sin6_port == 0)
            return GW_OK;
    } else {
        len = sizeof(struct sockaddr_in);
        if (((struct sockaddr_in *)&ss)->sin_port == 0)
            return GW_OK;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return gw_err_from_errno(errno);
    /* As libuv does: TIME_WAIT leftovers do not count as "in use". */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    rv = bind(fd, (const struct sockaddr *)&ss, len) == 0 ? GW_OK : gw_err_from_errno(errno);
    if (rv != GW_OK)
        gw_log(GW_LOG_ERROR, "HTTP-LISTEN", "cannot listen on %s: %s", host_port, strerror(errno));
    close(fd);
    return rv;
}

gw_err
gw_http_server_listen(struct gw_http_server *srv, const char *host_port, int reuseport,
                      int *bound_port)
{
    return gw_http_server_listen_tls(srv, host_port, reuseport, NULL, bound_port);
}

gw_err
gw_http_server_listen_tls(struct gw_http_server *srv, const char *host_port, int reuseport,
                          struct gw_tls_ctx *tls, int *bound_port)
{
    struct sockaddr_storage ss, bound;
    struct http_listener *l;
    int namelen = sizeof(bound);
    int rv;
    gw_err err;

    if (srv == NULL || srv->closing || srv->draining)
        return GW_EINVAL;
    err = parse_host_port(host_port, &ss);
    if (err != GW_OK) {
        gw_log(GW_LOG_ERROR, "HTTP-LISTEN", "bad listen address '%s'",
               host_port ? host_port : "(null)");
        return err;
    }
    l = gw_xcalloc(1, sizeof(*l));
    l->srv = srv;
    rv = uv_tcp_init_ex(srv->loop, &l->tcp, ss.ss_family);
    if (rv < 0) {
        free(l);
        return gw_err_from_uv(rv);
    }
    l->tcp.data = l;
    srv->n_handles++;
    if (reuseport) {
        uv_os_fd_t fd;
        int one = 1;
        rv = uv_fileno((uv_handle_t *)&l->tcp, &fd);
        if (rv == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
            rv = uv_translate_sys_error(errno);
        if (rv < 0)
            goto fail;
    }
    rv = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
    if (rv < 0)
        goto fail;
    rv = uv_listen((uv_stream_t *)&l->tcp, 511, srv_on_connection);
    if (rv < 0)
        goto fail;
    memset(&bound, 0, sizeof(bound));
    rv = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &namelen);
    if (rv < 0)
        goto fail;
    if (bound_port != NULL) {
        if (bound.ss_family == AF_INET6)
            *bound_port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        else
            *bound_port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    }
    l->tls = gw_tls_ctx_ref(tls);
    l->next = srv->listeners;
    srv->listeners = l;
    return GW_OK;

fail:
    gw_log(GW_LOG_ERROR, "HTTP-LISTEN", "cannot listen on %s: %s (%s)", host_port, uv_strerror(rv),
           uv_err_name(rv));
    uv_close((uv_handle_t *)&l->tcp, listener_on_close);
    return gw_err_from_uv(rv);
}

void
gw_http_server_set_tls(struct gw_http_server *srv, struct gw_tls_ctx *tls)
{
    struct http_listener *l;

    if (srv == NULL || tls == NULL)
        return;
    for (l = srv->listeners; l != NULL; l = l->next) {
        if (l->tls == NULL)
            continue;
        gw_tls_ctx_unref(l->tls);
        l->tls = gw_tls_ctx_ref(tls);
    }
}

void
gw_http_server_set_conn_gauge(struct gw_http_server *srv, atomic_int_fast64_t *gauge)
{
    srv->conn_gauge = gauge;
}

void
gw_http_server_stop_accepting(struct gw_http_server *srv)
{
    struct http_listener *l;
    struct http_conn *c, *next;

    if (srv == NULL || srv->closing || srv->draining)
        return;
    srv->draining = 1;
    l = srv->listeners;
    srv->listeners = NULL;
    while (l != NULL) {
        struct http_listener *ln = l->next;
        uv_close((uv_handle_t *)&l->tcp, listener_on_close);
        l = ln;
    }
    /* Idle keep-alive connections have nothing to finish. One receiving a
     * request keeps going: its response will close it. */
    for (c = srv->conns; c != NULL; c = next) {
        next = c->next;
        if (!c->busy && c->cur == NULL && !c->shutting && !c->closing && c->pending.len == 0)
            conn_close(c);
    }
}

size_t
gw_http_server_active_requests(const struct gw_http_server *srv)
{
    return srv->n_busy;
}

void
gw_http_server_close(struct gw_http_server *srv, void (*closed_cb)(void *arg), void *arg)
{
    struct http_listener *l;
    struct http_conn *c, *next;

    if (srv == NULL || srv->closing)
        return;
    srv->closing = 1;
    srv->closed_cb = closed_cb;
    srv->closed_arg = arg;
    l = srv->listeners;
    srv->listeners = NULL;
    while (l != NULL) {
        struct http_listener *ln = l->next;
        uv_close((uv_handle_t *)&l->tcp, listener_on_close);
        l = ln;
    }
    while (srv->defer_head != NULL)
        conn_undefer(srv->defer_head);
    uv_idle_stop(&srv->idle);
    for (c = srv->conns; c != NULL; c = next) {
        next = c->next;
        conn_close(c);
    }
    uv_close((uv_handle_t *)&srv->idle, srv_on_handle_close);
    uv_close((uv_handle_t *)&srv->flush_prepare, srv_on_handle_close);
    uv_close((uv_handle_t *)&srv->flush_check, srv_on_handle_close);
}

const struct gw_str *
gw_http_req_header(const struct gw_http_req *req, const char *name)
{
    size_t i;

    for (i = 0; i < req->n_headers; i++) {
        if (gw_str_case_eq(req->headers[i].name, name))
            return &req->headers[i].value;
    }
    return NULL;
}

void
gw_http_add_header(struct gw_http_req *req, const char *name, const char *value)
{
    struct http_req *r = (struct http_req *)req;

    if (r->state != REQ_HANDLING)
        return;
    if (has_crlf(name) || has_crlf(value) || *name == '\0') {
        gw_log_req(GW_LOG_WARN, "HTTP-HEADER", req->id_str, "dropping invalid response header");
        return;
    }
    /* Framing headers come from the server only; a second copy would let
     * the client and the server disagree about where the response ends. */
    if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0 ||
        strcasecmp(name, "connection") == 0 || strcasecmp(name, "date") == 0) {
        gw_log_req(GW_LOG_WARN, "HTTP-HEADER", req->id_str, "dropping server-managed header %s",
                   name);
        return;
    }
    gw_buf_appendf(&r->resp_headers, "%s: %s\r\n", name, value);
}

static void
req_head(struct http_req *r, struct gw_buf *out, int status, const char *content_type, int streamed,
         size_t content_length)
{
    struct http_conn *c = r->conn;

    if (status < 100 || status > 999)
        status = 500;
    gw_buf_appendf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, gw_http_status_text(status),
                   srv_date(c->srv));
    if (content_type != NULL && !has_crlf(content_type))
        gw_buf_appendf(out, "Content-Type: %s\r\n", content_type);
    if (r->resp_headers.len > 0)
        gw_buf_append(out, r->resp_headers.data, r->resp_headers.len);
    if (streamed) {
        if (r->chunked)
            gw_buf_append_str(out, "Transfer-Encoding: chunked\r\n");
    } else if (status_has_body(status)) {
        gw_buf_appendf(out, "Content-Length: %zu\r\n", content_length);
    }
    if (r->close_after || c->srv->closing || c->srv->draining)
        gw_buf_append_str(out, "Connection: close\r\n");
    else if (r->pub.http_minor == 0)
        gw_buf_append_str(out, "Connection: keep-alive\r\n");
    gw_buf_append_str(out, "\r\n");
}

void
gw_http_respond(struct gw_http_req *req, int status, const char *content_type, const void *body,
                size_t len)
{
    struct http_req *r = (struct http_req *)req;
    struct http_conn *c = r->conn;

    if (r->state != REQ_HANDLING) {
        gw_log_req(GW_LOG_ERROR, "HTTP-MISUSE", req->id_str,
                   "gw_http_respond after gw_http_start; abandoning");
        req_finish(r, 1);
        return;
    }
    if (!r->aborted && !c->closing) {
        struct gw_buf b = GW_BUF_INIT;
        gw_buf_reserve(&b, 256 + r->resp_headers.len + len);
        req_head(r, &b, status, content_type, 0, len);
        if (!r->is_head && status_has_body(status) && len > 0)
            gw_buf_append(&b, body, len);
        if (conn_write_buf(c, &b) == 0 && !c->closing)
            conn_flush(c, 0); /* complete: out now, like gw_http_end() */
    }
    req_finish(r, 0);
}

gw_err
gw_http_start(struct gw_http_req *req, int status, const char *content_type)
{
    struct http_req *r = (struct http_req *)req;
    struct http_conn *c = r->conn;
    struct gw_buf b = GW_BUF_INIT;

    if (r->state != REQ_HANDLING)
        return GW_EINVAL;
    if (r->aborted || c->closing)
        return GW_ECLOSED;
    r->no_body = r->is_head || !status_has_body(status);
    r->chunked = status_has_body(status) && req->http_minor >= 1;
    if (!r->no_body && !r->chunked)
        r->close_after = 1; /* HTTP/1.0: the end of the body is the close */
    r->state = REQ_STREAMING;
    req_head(r, &b, status, content_type, 1, 0);
    if (conn_write_buf(c, &b) != 0)
        return GW_ECLOSED;
    return GW_OK;
}

/* After body bytes were queued. The first bytes of a streamed response
 * (with the head) leave at once: the client starts waking up while the
 * handler goes on, which is what its first-event latency is made of; later
 * pieces wait for the end of the loop turn. */
static gw_err
write_done(struct http_req *r)
{
    struct http_conn *c = r->conn;

    if (!r->has_length && !r->first_sent) {
        r->first_sent = 1;
        if (conn_flush(c, 0) != 0)
            return GW_ECLOSED;
    }
    if (c->queued >= c->srv->limits.write_high_water)
        r->drain_armed = 1;
    return GW_OK;
}

gw_err
gw_http_start_length(struct gw_http_req *req, int status, const char *content_type,
                     uint64_t content_length)
{
    struct http_req *r = (struct http_req *)req;
    struct http_conn *c = r->conn;
    struct gw_buf b = GW_BUF_INIT;

    if (r->state != REQ_HANDLING || content_length > SIZE_MAX)
        return GW_EINVAL;
    if (r->aborted || c->closing)
        return GW_ECLOSED;
    r->no_body = r->is_head || !status_has_body(status);
    r->chunked = 0;
    r->has_length = 1;
    r->length_left = r->no_body ? 0 : content_length;
    r->state = REQ_STREAMING;
    req_head(r, &b, status, content_type, 0, (size_t)content_length);
    if (conn_write_buf(c, &b) != 0)
        return GW_ECLOSED;
    return GW_OK;
}

gw_err
gw_http_write(struct gw_http_req *req, const void *data, size_t len)
{
    struct http_req *r = (struct http_req *)req;
    struct http_conn *c = r->conn;
    struct gw_buf b = GW_BUF_INIT;

    if (r->aborted || c->closing || c->defer_close)
        return GW_ECLOSED;
    if (r->state != REQ_STREAMING)
        return GW_EINVAL;
    if (len == 0 || r->no_body)
        return GW_OK;
    if (r->has_length) {
        /* More than announced would be read as the next response. */
        if (len > r->length_left)
            return GW_EINVAL;
        r->length_left -= len;
    }
    if (c->tls == NULL) {
        /* Plaintext: straight into the pending output, no extra buffer. */
        size_t total = len;
        if (r->chunked) {
            char size_line[24];
            int n = snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
            gw_buf_reserve(&c->out, (size_t)n + len + 2);
            gw_buf_append(&c->out, size_line, (size_t)n);
            gw_buf_append(&c->out, data, len);
            gw_buf_append(&c->out, "\r\n", 2);
        } else {
            gw_buf_append(&c->out, data, len);
        }
        if (conn_out_added(c, total) != 0)
            return GW_ECLOSED;
        return write_done(r);
    }
    if (r->chunked) {
        gw_buf_reserve(&b, len + 32);
        gw_buf_appendf(&b, "%zx\r\n", len);
        gw_buf_append(&b, data, len);
        gw_buf_append(&b, "\r\n", 2);
    } else {
        gw_buf_append(&b, data, len);
    }
    if (conn_write_buf(c, &b) != 0)
        return GW_ECLOSED;
    return write_done(r);
}

int
gw_http_writable(const struct gw_http_req *req)
{
    /* The request is never const inside the server: the view is. */
    struct http_req *r = (struct http_req *)(uintptr_t)req;
    const struct http_conn *c = r->conn;

    /* A dead connection is "writable" so the producer's next write learns
     * GW_ECLOSED instead of waiting for a drain that never comes. */
    if (r->aborted || c->closing)
        return 1;
    if (c->queued < c->srv->limits.write_high_water)
        return 1;
    /* The queue may be full of an earlier response on this connection:
     * whoever is told "no" must get the drain callback. */
    r->drain_armed = 1;
    return 0;
}

void
gw_http_end(struct gw_http_req *req)
{
    struct http_req *r = (struct http_req *)req;
    struct http_conn *c = r->conn;

    if (r->state == REQ_HANDLING && !r->aborted) {
        gw_log_req(GW_LOG_ERROR, "HTTP-MISUSE", req->id_str,
                   "gw_http_end without gw_http_start; abandoning");
        req_finish(r, 1);
        return;
    }
    if (r->state == REQ_STREAMING && r->has_length && r->length_left > 0 && !r->aborted) {
        /* Fewer bytes than announced: only a close tells the client. */
        gw_log_req(GW_LOG_WARN, "HTTP-SHORT", req->id_str,
                   "response ended %" PRIu64 " bytes short of its Content-Length; closing",
                   r->length_left);
        req_finish(r, 1);
        return;
    }
    if (r->state == REQ_STREAMING && r->chunked && !r->no_body && !r->aborted && !c->closing) {
        struct gw_buf b = GW_BUF_INIT;
        gw_buf_append_str(&b, "0\r\n\r\n");
        conn_write_buf(c, &b);
    }
    /* The response is complete: nothing more to coalesce with, and the
     * caller's bookkeeping after this should not delay it. */
    if (!c->closing && c->out.len > 0)
        conn_flush(c, 0);
    req_finish(r, 0);
}

void
gw_http_abandon(struct gw_http_req *req)
{
    req_finish((struct http_req *)req, 1);
}

void
gw_http_set_abort_cb(struct gw_http_req *req, gw_http_abort_cb cb, void *arg)
{
    struct http_req *r = (struct http_req *)req;

    r->abort_cb = cb;
    r->abort_arg = arg;
}

void
gw_http_set_drain_cb(struct gw_http_req *req, gw_http_drain_cb cb, void *arg)
{
    struct http_req *r = (struct http_req *)req;

    r->drain_cb = cb;
    r->drain_arg = arg;
}
