/* SPDX-License-Identifier: Apache-2.0 */
/* gw_http against real sockets: the server runs on a uv loop in its own
 * thread on 127.0.0.1:0, the test drives plain POSIX clients with deadlines.
 * The module source is included (h2o-style) so the backpressure test can
 * read the server's real write-queue counter. The TLS cases use libcurl as
 * the client and certificates made by tls_test_certs.h. */
#include "gw_http.c"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw_test.h"
#include "tls_test_certs.h"

#define DEADLINE_MS 5000

static struct test_certs certs;

/* ---- server fixture (loop thread) ---- */

struct fx {
    uv_loop_t loop;
    uv_async_t stop;
    uv_async_t drain; /* gw_http_server_stop_accepting */
    pthread_t thread;
    struct gw_http_server *srv;
    int port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* guarded by mu */
    int n_requests;
    int n_aborts;
    int n_eclosed;
    int n_drains;
    int n_finished_after_abort;
    int n_closed_cb;
    int loop_errors;
    size_t max_queued;
};

static void
fx_bump(struct fx *fx, int *counter)
{
    pthread_mutex_lock(&fx->mu);
    (*counter)++;
    pthread_cond_broadcast(&fx->cv);
    pthread_mutex_unlock(&fx->mu);
}

static uint64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits until *counter >= want or the deadline passes; returns the value. */
static int
fx_wait(struct fx *fx, int *counter, int want, int ms)
{
    struct timespec ts;
    int v;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&fx->mu);
    while (*counter < want) {
        if (pthread_cond_timedwait(&fx->cv, &fx->mu, &ts) != 0)
            break;
    }
    v = *counter;
    pthread_mutex_unlock(&fx->mu);
    return v;
}

static int
query_int(const struct gw_http_req *req, const char *key, int def)
{
    size_t klen = strlen(key);
    const char *q = req->query.p;
    size_t n = req->query.len;
    size_t i = 0;

    while (i < n) {
        size_t end = i;
        while (end < n && q[end] != '&')
            end++;
        if (end - i > klen && memcmp(q + i, key, klen) == 0 && q[i + klen] == '=') {
            char tmp[32];
            size_t vl = end - i - klen - 1;
            if (vl >= sizeof(tmp))
                vl = sizeof(tmp) - 1;
            memcpy(tmp, q + i + klen + 1, vl);
            tmp[vl] = '\0';
            return (int)strtol(tmp, NULL, 10);
        }
        i = end + 1;
    }
    return def;
}

/* Deferred work on the loop: delayed responses and post-abort finishing. */
struct later {
    uv_timer_t timer;
    struct gw_http_req *req;
    struct fx *fx;
    int aborted;
};

static void
later_on_close(uv_handle_t *h)
{
    free(h->data);
}

static void
later_respond_cb(uv_timer_t *t)
{
    struct later *l = t->data;
    char body[64];
    int n = snprintf(body, sizeof(body), "delayed %d", query_int(l->req, "tag", 0));

    gw_http_respond(l->req, 200, "text/plain", body, (size_t)n);
    uv_close((uv_handle_t *)t, later_on_close);
}

static void
later_after_abort_cb(uv_timer_t *t)
{
    struct later *l = t->data;
    struct fx *fx = l->fx;

    /* The request must still be valid and writes must fail. */
    if (!gw_str_eq(l->req->path, "/hang") && !gw_str_eq(l->req->path, "/slow"))
        fx_bump(fx, &fx->loop_errors);
    if (gw_http_write(l->req, "x", 1) == GW_ECLOSED)
        fx_bump(fx, &fx->n_eclosed);
    if (gw_str_eq(l->req->path, "/hang"))
        gw_http_end(l->req);
    else
        gw_http_respond(l->req, 200, "text/plain", "late", 4);
    fx_bump(fx, &fx->n_finished_after_abort);
    uv_close((uv_handle_t *)t, later_on_close);
}

static void
later_start(struct fx *fx, struct gw_http_req *req, uint64_t ms, uv_timer_cb cb)
{
    struct later *l = gw_xcalloc(1, sizeof(*l));

    l->req = req;
    l->fx = fx;
    uv_timer_init(&fx->loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, cb, ms, 0);
}

static void
on_abort(struct gw_http_req *req, void *arg)
{
    struct fx *fx = arg;

    fx_bump(fx, &fx->n_aborts);
    /* Finish later, from another callback, to prove the request outlives the
     * connection. */
    later_start(fx, req, 20, later_after_abort_cb);
}

/* Backpressure producer: a position-dependent byte pattern so the client
 * can verify order. */
struct big {
    struct fx *fx;
    size_t sent, total;
};

static unsigned char
pattern_byte(size_t i)
{
    return (unsigned char)((i * 131u + (i >> 12)) & 0xff);
}

static void
big_pump(struct gw_http_req *req)
{
    struct big *b = req->data;
    struct fx *fx = b->fx;
    unsigned char piece[16 * 1024];

    while (b->sent < b->total && gw_http_writable(req)) {
        size_t n = b->total - b->sent < sizeof(piece) ? b->total - b->sent : sizeof(piece);
        size_t i;
        size_t q;
        for (i = 0; i < n; i++)
            piece[i] = pattern_byte(b->sent + i);
        if (gw_http_write(req, piece, n) != GW_OK) {
            fx_bump(fx, &fx->loop_errors);
            free(b);
            gw_http_abandon(req);
            return;
        }
        b->sent += n;
        q = ((struct http_req *)req)->conn->queued;
        pthread_mutex_lock(&fx->mu);
        if (q > fx->max_queued) {
            fx->max_queued = q;
            pthread_cond_broadcast(&fx->cv);
        }
        pthread_mutex_unlock(&fx->mu);
    }
    if (b->sent == b->total) {
        free(b);
        gw_http_end(req);
    }
}

static void
on_drain(struct gw_http_req *req, void *arg)
{
    struct fx *fx = arg;

    if (!gw_http_writable(req))
        fx_bump(fx, &fx->loop_errors);
    fx_bump(fx, &fx->n_drains);
    big_pump(req);
}

static void
on_big_abort(struct gw_http_req *req, void *arg)
{
    struct fx *fx = arg;

    fx_bump(fx, &fx->loop_errors);
    free(req->data);
    gw_http_abandon(req);
}

static void
on_expected_big_abort(struct gw_http_req *req, void *arg)
{
    struct fx *fx = arg;

    fx_bump(fx, &fx->n_aborts);
    free(req->data);
    gw_http_abandon(req);
}

/* Second half of /tick: one more event a while after the first, then the
 * end, from a timer callback (flushed before the loop blocks again). */
static void
later_tick_cb(uv_timer_t *t)
{
    struct later *l = t->data;

    if (gw_http_write(l->req, "data: second\n\n", 14) != GW_OK)
        fx_bump(l->fx, &l->fx->loop_errors);
    gw_http_end(l->req);
    uv_close((uv_handle_t *)t, later_on_close);
}

/* /sized?n=N[&short=K][&over=1]: a Content-Length response of N bytes
 * written in pieces; `short` leaves K of them out (the connection must be
 * cut), `over` also tries one byte too many (must be refused). */
static void
sized_respond(struct fx *fx, struct gw_http_req *req)
{
    size_t n = (size_t)query_int(req, "n", 10);
    size_t short_by = (size_t)query_int(req, "short", 0);
    size_t i, sent = 0;

    if (gw_http_start_length(req, 200, "text/plain", n) != GW_OK) {
        fx_bump(fx, &fx->loop_errors);
        gw_http_abandon(req);
        return;
    }
    while (sent + short_by < n) {
        char piece[7];
        size_t k = n - short_by - sent < sizeof(piece) ? n - short_by - sent : sizeof(piece);
        for (i = 0; i < k; i++)
            piece[i] = (char)('a' + (sent + i) % 26);
        if (gw_http_write(req, piece, k) != GW_OK)
            fx_bump(fx, &fx->loop_errors);
        sent += k;
    }
    if (query_int(req, "over", 0) && short_by == 0 && gw_http_write(req, "X", 1) != GW_EINVAL)
        fx_bump(fx, &fx->loop_errors);
    gw_http_end(req);
}

static void
handler(struct gw_http_req *req, void *arg)
{
    struct fx *fx = arg;

    fx_bump(fx, &fx->n_requests);
    if (gw_str_eq(req->path, "/hello")) {
        gw_http_add_header(req, "X-Req-Id", req->id_str);
        gw_http_respond(req, 200, "text/plain", "hello", 5);
    } else if (gw_str_eq(req->path, "/echo")) {
        char q[64];
        snprintf(q, sizeof(q), "%.*s", (int)req->query.len, req->query.p);
        gw_http_add_header(req, "X-Method", req->method);
        gw_http_add_header(req, "X-Query", q);
        gw_http_add_header(req, "X-Bad", "a\r\nInjected: yes");
        gw_http_add_header(req, "Content-Length", "1");
        gw_http_respond(req, 200, "application/octet-stream", req->body.data, req->body.len);
    } else if (gw_str_eq(req->path, "/delay")) {
        later_start(fx, req, (uint64_t)query_int(req, "ms", 10), later_respond_cb);
    } else if (gw_str_eq(req->path, "/stream")) {
        int n = query_int(req, "n", 3);
        int i;
        if (gw_http_start(req, query_int(req, "status", 200), "text/event-stream") != GW_OK) {
            gw_http_abandon(req);
            return;
        }
        for (i = 0; i < n; i++) {
            char ev[64];
            int len = snprintf(ev, sizeof(ev), "event: e%d\ndata: {\"i\":%d}\n\n", i, i);
            if (gw_http_write(req, ev, (size_t)len) != GW_OK)
                fx_bump(fx, &fx->loop_errors);
        }
        gw_http_end(req);
    } else if (gw_str_eq(req->path, "/big")) {
        struct big *b = gw_xcalloc(1, sizeof(*b));
        b->fx = fx;
        b->total = (size_t)query_int(req, "bytes", 1 << 20);
        req->data = b;
        gw_http_set_drain_cb(req, on_drain, fx);
        gw_http_set_abort_cb(req, on_big_abort, fx);
        if (gw_http_start(req, 200, "application/octet-stream") != GW_OK) {
            free(b);
            gw_http_abandon(req);
            return;
        }
        big_pump(req);
    } else if (gw_str_eq(req->path, "/bigabort")) {
        /* Like /big, but the abort is expected (write timeout, drain). */
        struct big *b = gw_xcalloc(1, sizeof(*b));
        b->fx = fx;
        b->total = (size_t)query_int(req, "bytes", 1 << 20);
        req->data = b;
        gw_http_set_drain_cb(req, on_drain, fx);
        gw_http_set_abort_cb(req, on_expected_big_abort, fx);
        if (gw_http_start(req, 200, "application/octet-stream") != GW_OK) {
            free(b);
            gw_http_abandon(req);
            return;
        }
        big_pump(req);
    } else if (gw_str_eq(req->path, "/blob")) {
        /* a complete response far above the high-water mark, queued at once */
        size_t n = (size_t)query_int(req, "bytes", 1 << 20), i;
        unsigned char *blob = gw_xmalloc(n);
        for (i = 0; i < n; i++)
            blob[i] = pattern_byte(i);
        gw_http_respond(req, 200, "application/octet-stream", blob, n);
        free(blob);
    } else if (gw_str_eq(req->path, "/hang")) {
        gw_http_set_abort_cb(req, on_abort, fx);
        if (gw_http_start(req, 200, "text/event-stream") != GW_OK ||
            gw_http_write(req, "data: first\n\n", 13) != GW_OK)
            fx_bump(fx, &fx->loop_errors);
    } else if (gw_str_eq(req->path, "/tick")) {
        if (gw_http_start(req, 200, "text/event-stream") != GW_OK ||
            gw_http_write(req, "data: first\n\n", 13) != GW_OK)
            fx_bump(fx, &fx->loop_errors);
        later_start(fx, req, (uint64_t)query_int(req, "ms", 300), later_tick_cb);
    } else if (gw_str_eq(req->path, "/sized")) {
        sized_respond(fx, req);
    } else if (gw_str_eq(req->path, "/slow")) {
        /* Never answers on its own: only the abort path finishes it. */
        gw_http_set_abort_cb(req, on_abort, fx);
    } else {
        gw_http_respond(req, 404, "text/plain", "nope", 4);
    }
}

static void
fx_on_closed(void *arg)
{
    struct fx *fx = arg;

    uv_close((uv_handle_t *)&fx->stop, NULL);
    uv_close((uv_handle_t *)&fx->drain, NULL);
    fx_bump(fx, &fx->n_closed_cb);
}

static void
fx_on_stop(uv_async_t *a)
{
    struct fx *fx = a->data;

    gw_http_server_close(fx->srv, fx_on_closed, fx);
}

static void
fx_on_drain(uv_async_t *a)
{
    struct fx *fx = a->data;

    gw_http_server_stop_accepting(fx->srv);
}

static void *
fx_thread(void *arg)
{
    struct fx *fx = arg;

    uv_run(&fx->loop, UV_RUN_DEFAULT);
    return NULL;
}

static struct gw_http_limits
test_limits(void)
{
    struct gw_http_limits lim;

    gw_http_limits_default(&lim);
    lim.max_header_bytes = 2048;
    lim.max_headers = 20;
    lim.max_body_bytes = 64 * 1024;
    lim.read_timeout_ms = 5000;
    lim.idle_timeout_ms = 10000;
    lim.write_high_water = 64 * 1024;
    return lim;
}

/* A server on its own loop thread; TLS on its listener when tls != NULL. */
static struct fx *
fx_start_tls(const struct gw_http_limits *lim, struct gw_tls_ctx *tls)
{
    struct fx *fx = gw_xcalloc(1, sizeof(*fx));

    pthread_mutex_init(&fx->mu, NULL);
    pthread_cond_init(&fx->cv, NULL);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    GW_PASS(gw_http_server_new(&fx->loop, lim, handler, fx, &fx->srv));
    GW_PASS(gw_http_server_listen_tls(fx->srv, "127.0.0.1:0", 0, tls, &fx->port));
    assert_true(fx->port > 0);
    assert_int_equal(uv_async_init(&fx->loop, &fx->stop, fx_on_stop), 0);
    fx->stop.data = fx;
    assert_int_equal(uv_async_init(&fx->loop, &fx->drain, fx_on_drain), 0);
    fx->drain.data = fx;
    assert_int_equal(pthread_create(&fx->thread, NULL, fx_thread, fx), 0);
    return fx;
}

static struct fx *
fx_start(const struct gw_http_limits *lim)
{
    return fx_start_tls(lim, NULL);
}

static void
fx_stop(struct fx *fx)
{
    uv_async_send(&fx->stop);
    assert_int_equal(fx_wait(fx, &fx->n_closed_cb, 1, DEADLINE_MS), 1);
    pthread_join(fx->thread, NULL);
    /* Every handle was closed: the loop has nothing left. */
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    assert_int_equal(fx->loop_errors, 0);
    pthread_mutex_destroy(&fx->mu);
    pthread_cond_destroy(&fx->cv);
    free(fx);
}

/* ---- client side ---- */

struct cli {
    int fd;
    char *buf;
    size_t start, len, cap; /* unconsumed bytes are buf[start, len) */
    int eof;
};

struct resp {
    int status;
    char *head; /* status line and headers, NUL-terminated */
    char *body;
    size_t body_len;
};

static char *
cli_data(const struct cli *c)
{
    return c->buf + c->start;
}

static size_t
cli_avail(const struct cli *c)
{
    return c->len - c->start;
}

static struct cli *
cli_connect(int port, int rcvbuf)
{
    struct cli *c = gw_xcalloc(1, sizeof(*c));
    struct sockaddr_in sa;
    int one = 1;

    c->cap = 4096;
    c->buf = gw_xmalloc(c->cap);
    c->buf[0] = '\0';
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return c;
}

static void
cli_free(struct cli *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c);
}

static void
cli_send(struct cli *c, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void
cli_sends(struct cli *c, const char *s)
{
    cli_send(c, s, strlen(s));
}

/* Reads at most `max` more bytes; 1 on data, 0 on EOF/reset, -1 on timeout. */
static int
cli_fill(struct cli *c, size_t max, uint64_t deadline)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    ssize_t n;
    uint64_t now = now_ms();

    if (c->eof)
        return 0;
    if (now >= deadline)
        return -1;
    if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
        return -1;
    if (c->cap - c->len < max + 1 && c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->len - c->start);
        c->len -= c->start;
        c->start = 0;
    }
    while (c->cap - c->len < max + 1) {
        c->cap *= 2;
        c->buf = gw_xrealloc(c->buf, c->cap);
    }
    n = recv(c->fd, c->buf + c->len, max, 0);
    if (n <= 0) {
        c->eof = 1;
        return 0;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    return 1;
}

static void
cli_consume(struct cli *c, size_t n)
{
    c->start += n;
}

/* Waits until `n` bytes are buffered. */
static int
cli_need(struct cli *c, size_t n, uint64_t deadline)
{
    while (cli_avail(c) < n) {
        if (cli_fill(c, 64 * 1024, deadline) <= 0)
            return 0;
    }
    return 1;
}

static int
cli_find(struct cli *c, const char *needle, uint64_t deadline, size_t *pos)
{
    for (;;) {
        char *p = memmem(cli_data(c), cli_avail(c), needle, strlen(needle));
        if (p != NULL) {
            *pos = (size_t)(p - cli_data(c));
            return 1;
        }
        if (cli_fill(c, 64 * 1024, deadline) <= 0)
            return 0;
    }
}

/* Value of a header in a response head, or NULL (static buffer per call). */
static const char *
resp_header(const struct resp *r, const char *name)
{
    static char val[512];
    const char *p = strstr(r->head, "\r\n");
    size_t nl = strlen(name);

    while (p != NULL && p[2] != '\0') {
        const char *line = p + 2;
        const char *end = strstr(line, "\r\n");
        if (end == NULL)
            break;
        if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            size_t vl;
            while (*v == ' ')
                v++;
            vl = (size_t)(end - v);
            if (vl >= sizeof(val))
                vl = sizeof(val) - 1;
            memcpy(val, v, vl);
            val[vl] = '\0';
            return val;
        }
        p = end;
    }
    return NULL;
}

static void
resp_fini(struct resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Reads one response; returns 1 or 0 when the connection ended first. A
 * chunked body is decoded here independently of the server. */
static int
cli_response(struct cli *c, struct resp *r, int head_only)
{
    uint64_t deadline = now_ms() + DEADLINE_MS;
    size_t pos = 0;
    const char *te, *cl;
    struct gw_buf body = GW_BUF_INIT;

    memset(r, 0, sizeof(*r));
    if (!cli_find(c, "\r\n\r\n", deadline, &pos))
        return 0;
    r->head = gw_xstrndup(cli_data(c), pos + 2);
    cli_consume(c, pos + 4);
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
        return 0;
    te = resp_header(r, "Transfer-Encoding");
    if (head_only || r->status < 200 || r->status == 204 || r->status == 304) {
        /* no body */
    } else if (te != NULL && strcasecmp(te, "chunked") == 0) {
        for (;;) {
            size_t size;
            char *end;
            if (!cli_find(c, "\r\n", deadline, &pos))
                goto trunc;
            size = strtoul(cli_data(c), &end, 16);
            if (end == cli_data(c))
                goto trunc;
            cli_consume(c, pos + 2);
            if (!cli_need(c, size + 2, deadline))
                goto trunc;
            if (memcmp(cli_data(c) + size, "\r\n", 2) != 0)
                goto trunc;
            gw_buf_append(&body, cli_data(c), size);
            cli_consume(c, size + 2);
            if (size == 0)
                break;
        }
    } else if ((cl = resp_header(r, "Content-Length")) != NULL) {
        size_t n = strtoul(cl, NULL, 10);
        if (!cli_need(c, n, deadline))
            goto trunc;
        gw_buf_append(&body, cli_data(c), n);
        cli_consume(c, n);
    } else {
        while (cli_fill(c, 64 * 1024, deadline) > 0)
            ;
        gw_buf_append(&body, cli_data(c), cli_avail(c));
        cli_consume(c, cli_avail(c));
    }
    r->body = gw_buf_steal(&body, &r->body_len);
    return 1;
trunc:
    gw_buf_fini(&body);
    return 0;
}

/* 1 when the server closed the connection before the deadline. */
static int
cli_wait_closed(struct cli *c, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    int rv;

    while ((rv = cli_fill(c, 64 * 1024, deadline)) > 0)
        cli_consume(c, cli_avail(c));
    return rv == 0;
}

/* ---- tests ---- */

static void
test_simple_get(void **state)
{
    struct fx *fx = fx_start(NULL);
    struct cli *c = cli_connect(fx->port, 0);
    struct resp r;

    (void)state;
    cli_sends(c, "GET /hello?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(resp_header(&r, "Content-Length"), "5");
    assert_string_equal(resp_header(&r, "Content-Type"), "text/plain");
    assert_non_null(resp_header(&r, "Date"));
    assert_true(strncmp(resp_header(&r, "X-Req-Id"), "r-", 2) == 0);
    assert_null(resp_header(&r, "Connection"));
    assert_int_equal(r.body_len, 5);
    assert_memory_equal(r.body, "hello", 5);
    resp_fini(&r);

    /* 404 from the handler, header injection refused. */
    cli_sends(c, "POST /echo?a=b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(resp_header(&r, "X-Method"), "POST");
    assert_string_equal(resp_header(&r, "X-Query"), "a=b");
    assert_null(resp_header(&r, "Injected"));
    assert_null(resp_header(&r, "X-Bad"));
    assert_memory_equal(r.body, "abc", 3);
    resp_fini(&r);
    cli_free(c);
    fx_stop(fx);
}

static void
test_keepalive_and_head(void **state)
{
    struct fx *fx = fx_start(NULL);
    struct cli *c = cli_connect(fx->port, 0);
    struct resp r;

    (void)state;
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 200);
    resp_fini(&r);
    /* HEAD: headers only, the connection stays usable */
    cli_sends(c, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 1), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(resp_header(&r, "Content-Length"), "5");
    resp_fini(&r);
    /* streamed HEAD and streamed 204: no body bytes, not even the last chunk */
    cli_sends(c, "HEAD /stream?n=2 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 1), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(resp_header(&r, "Transfer-Encoding"), "chunked");
    resp_fini(&r);
    cli_sends(c, "GET /stream?n=2&status=204 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 204);
    assert_null(resp_header(&r, "Transfer-Encoding"));
    resp_fini(&r);
    cli_sends(c, "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 404);
    assert_memory_equal(r.body, "nope", 4);
    resp_fini(&r);
    /* Connection: close is honoured */
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_string_equal(resp_header(&r, "Connection"), "close");
    resp_fini(&r);
    assert_true(cli_wait_closed(c, DEADLINE_MS));
    assert_int_equal(fx_wait(fx, &fx->n_requests, 6, 0), 6);
    cli_free(c);

    /* HTTP/1.0 without keep-alive closes, with keep-alive stays open */
    c = cli_connect(fx->port, 0);
    cli_sends(c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_string_equal(resp_header(&r, "Connection"), "keep-alive");
    resp_fini(&r);
    cli_sends(c, "GET /stream?n=2 HTTP/1.0\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_null(resp_header(&r, "Transfer-Encoding"));
    assert_string_equal(resp_header(&r, "Connection"), "close");
    assert_string_equal(r.body, "event: e0\ndata: {\"i\":0}\n\nevent: e1\ndata: {\"i\":1}\n\n");
    resp_fini(&r);
    assert_true(cli_wait_closed(c, DEADLINE_MS));
    cli_free(c);
    fx_stop(fx);
}

static void
test_pipelined(void **state)
{
    struct fx *fx = fx_start(NULL);
    struct cli *c = cli_connect(fx->port, 0);
    struct resp r;

    (void)state;
    /* The first answer comes late from a timer: order must still hold. */
    cli_sends(c, "GET /delay?ms=50&tag=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\ntwo"
                 "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "delayed 1");
    resp_fini(&r);
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_string_equal(r.body, "two");
    resp_fini(&r);
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_string_equal(r.body, "hello");
    resp_fini(&r);

    /* Pipelined requests split at awkward places across writes. */
    {
        const char *all = "GET /delay?ms=5&tag=2 HTTP/1.1\r\nHost: t\r\n\r\n"
                          "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3\r\nabc\r\n0\r\n\r\n"
                          "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
        size_t n = strlen(all), i;
        for (i = 0; i < n; i += 7)
            cli_send(c, all + i, n - i < 7 ? n - i : 7);
    }
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_string_equal(r.body, "delayed 2");
    resp_fini(&r);
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_string_equal(r.body, "abc");
    resp_fini(&r);
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_string_equal(r.body, "hello");
    resp_fini(&r);
    cli_free(c);
    fx_stop(fx);
}

static void
test_chunked_request(void **state)
{
    struct gw_http_limits lim = test_limits();
    struct fx *fx = fx_start(&lim);
    struct cli *c = cli_connect(fx->port, 0);
    struct resp r;

    (void)state;
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 11);
    assert_memory_equal(r.body, "hello world", 11);
    resp_fini(&r);
    /* chunked total over the body limit (64 KiB) -> 413 and close */
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    {
        char chunk[8200];
        int i;
        memset(chunk, 'a', sizeof(chunk));
        memcpy(chunk, "2000\r\n", 6);
        memcpy(chunk + 6 + 8192, "\r\n", 2);
        for (i = 0; i < 9; i++)
            cli_send(c, chunk, 6 + 8192 + 2);
    }
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 413);
    assert_string_equal(resp_header(&r, "Connection"), "close");
    resp_fini(&r);
    assert_true(cli_wait_closed(c, DEADLINE_MS));
    cli_free(c);
    fx_stop(fx);
}

static void
test_expect_continue(void **state)
{
    struct gw_http_limits lim = test_limits();
    struct fx *fx = fx_start(&lim);
    struct cli *c = cli_connect(fx->port, 0);
    struct resp r;
    size_t pos = 0;

    (void)state;
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n"
                 "Expect: 100-continue\r\n\r\n");
    /* 100 arrives before any body byte is sent */
    assert_int_equal(cli_find(c, "\r\n\r\n", now_ms() + DEADLINE_MS, &pos), 1);
    assert_true(strncmp(cli_data(c), "HTTP/1.1 100 Continue\r\n\r\n", pos + 4) == 0);
    cli_consume(c, pos + 4);
    cli_sends(c, "hello world");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "hello world", 11);
    resp_fini(&r);
    cli_free(c);

    /* too large for the limit: 413 and close, body never sent */
    c = cli_connect(fx->port, 0);
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n"
                 "Expect: 100-continue\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "\"error\":{\"message\":"));
    resp_fini(&r);
    assert_true(cli_wait_closed(c, DEADLINE_MS));
    cli_free(c);
    assert_int_equal(fx_wait(fx, &fx->n_requests, 1, 0), 1);
    fx_stop(fx);
}

static void
expect_rejected(struct fx *fx, const char *req, size_t len, int status)
{
    struct cli *c = cli_connect(fx->port, 0);
    struct resp r;

    cli_send(c, req, len);
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, status);
    assert_string_equal(resp_header(&r, "Connection"), "close");
    assert_string_equal(resp_header(&r, "Content-Type"), "application/json");
    assert_true(strncmp(r.body, "{\"error\":{\"message\":\"", 21) == 0);
    resp_fini(&r);
    assert_true(cli_wait_closed(c, DEADLINE_MS));
    cli_free(c);
}

static void
test_limits_and_malformed(void **state)
{
    struct gw_http_limits lim = test_limits();
    struct fx *fx = fx_start(&lim);
    struct gw_buf b = GW_BUF_INIT;
    int i;

    (void)state;
    /* header bytes over 2048 */
    gw_buf_append_str(&b, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: ");
    for (i = 0; i < 3000; i++)
        gw_buf_append(&b, "a", 1);
    gw_buf_append_str(&b, "\r\n\r\n");
    expect_rejected(fx, b.data, b.len, 431);
    gw_buf_reset(&b);

    /* more than 20 headers (each small) */
    gw_buf_append_str(&b, "GET /hello HTTP/1.1\r\n");
    for (i = 0; i < 25; i++)
        gw_buf_appendf(&b, "X-H%d: v\r\n", i);
    gw_buf_append_str(&b, "\r\n");
    expect_rejected(fx, b.data, b.len, 431);
    gw_buf_reset(&b);

    /* Content-Length over the body limit: rejected from the headers alone */
    gw_buf_append_str(&b, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n");
    expect_rejected(fx, b.data, b.len, 413);
    gw_buf_reset(&b);

    expect_rejected(fx, "GARBAGE\r\n\r\n", 11, 400);
    expect_rejected(fx, "GET / HTTP/1.1\r\nHost t\r\n\r\n", 26, 400);
    expect_rejected(fx, "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                    65, 400);
    gw_buf_fini(&b);
    /* Exactly at the limits is fine: 20 headers */
    {
        struct cli *c = cli_connect(fx->port, 0);
        struct resp r;
        struct gw_buf ok = GW_BUF_INIT;
        gw_buf_append_str(&ok, "GET /hello HTTP/1.1\r\n");
        for (i = 0; i < 20; i++)
            gw_buf_appendf(&ok, "X-H%d: %s\r\n", i, i == 5 ? "" : "v");
        gw_buf_append_str(&ok, "\r\n");
        cli_send(c, ok.data, ok.len);
        assert_int_equal(cli_response(c, &r, 0), 1);
        assert_int_equal(r.status, 200);
        resp_fini(&r);
        gw_buf_fini(&ok);
        cli_free(c);
    }
    assert_int_equal(fx_wait(fx, &fx->n_requests, 1, 0), 1);
    fx_stop(fx);
}

static void
test_streamed_response(void **state)
{
    struct fx *fx = fx_start(NULL);
    struct cli *c = cli_connect(fx->port, 0);
    struct resp r;
    struct gw_buf want = GW_BUF_INIT;
    int i;

    (void)state;
    cli_sends(c, "GET /stream?n=50 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(resp_header(&r, "Transfer-Encoding"), "chunked");
    assert_string_equal(resp_header(&r, "Content-Type"), "text/event-stream");
    assert_null(resp_header(&r, "Content-Length"));
    for (i = 0; i < 50; i++)
        gw_buf_appendf(&want, "event: e%d\ndata: {\"i\":%d}\n\n", i, i);
    assert_int_equal(r.body_len, want.len);
    assert_memory_equal(r.body, want.data, want.len);
    resp_fini(&r);
    gw_buf_fini(&want);
    /* the terminating chunk left the connection reusable */
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_string_equal(r.body, "hello");
    resp_fini(&r);
    cli_free(c);
    fx_stop(fx);
}

/* Output made in one loop turn leaves in few socket writes: a streamed
 * response as its head with the first event, then the rest with the final
 * chunk; a Content-Length one, or a complete one, as a single write (the
 * client's very first read holds all of it). */
static void
test_coalesced_response(void **state)
{
    struct fx *fx = fx_start(NULL);
    struct cli *c = cli_connect(fx->port, 0);
    struct resp r;
    const char *tail = "0\r\n\r\n";
    const char *first = "event: e0\ndata: {\"i\":0}\n\n\r\n";
    uint64_t deadline = now_ms() + DEADLINE_MS;

    (void)state;
    cli_sends(c, "GET /stream?n=5 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_fill(c, 64 * 1024, deadline), 1);
    assert_true(cli_avail(c) > strlen(first));
    /* the head came with (at least) the first event */
    assert_non_null(memmem(cli_data(c), cli_avail(c), first, strlen(first)));
    while (memmem(cli_data(c), cli_avail(c), "data: {\"i\":4}", 13) == NULL)
        assert_int_equal(cli_fill(c, 64 * 1024, deadline), 1);
    assert_memory_equal(cli_data(c) + cli_avail(c) - strlen(tail), tail, strlen(tail));
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 200);
    resp_fini(&r);
    cli_sends(c, "GET /sized?n=50 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_fill(c, 64 * 1024, now_ms() + DEADLINE_MS), 1);
    assert_true(cli_avail(c) > 50);
    assert_memory_equal(cli_data(c) + cli_avail(c) - 3, "vwx", 3);
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.body_len, 50);
    resp_fini(&r);
    /* a complete response too: head and body together */
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_fill(c, 64 * 1024, now_ms() + DEADLINE_MS), 1);
    assert_true(cli_avail(c) > 5);
    assert_memory_equal(cli_data(c) + cli_avail(c) - 5, "hello", 5);
    assert_int_equal(cli_response(c, &r, 0), 1);
    resp_fini(&r);
    assert_int_equal(fx->loop_errors, 0);
    cli_free(c);
    fx_stop(fx);
}

/* Coalescing must not hold a streamed event back: the first event arrives
 * while the handler still holds the request, long before the second. */
static void
test_stream_event_prompt(void **state)
{
    struct fx *fx = fx_start(NULL);
    struct cli *c = cli_connect(fx->port, 0);
    uint64_t deadline = now_ms() + DEADLINE_MS;
    size_t pos = 0;
    struct resp r;

    (void)state;
    cli_sends(c, "GET /tick?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_find(c, "data: first", deadline, &pos), 1);
    assert_null(memmem(cli_data(c), cli_avail(c), "data: second", 12));
    assert_int_equal(cli_find(c, "data: second\n\n\r\n0\r\n\r\n", deadline, &pos), 1);
    cli_consume(c, cli_avail(c));
    /* the end written from a timer callback left the connection usable */
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_string_equal(r.body, "hello");
    resp_fini(&r);
    assert_int_equal(fx->loop_errors, 0);
    cli_free(c);
    fx_stop(fx);
}

static void
test_start_length(void **state)
{
    struct fx *fx = fx_start(NULL);
    struct cli *c = cli_connect(fx->port, 0);
    struct resp r;
    size_t i;

    (void)state;
    cli_sends(c, "GET /sized?n=40&over=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(resp_header(&r, "Content-Length"), "40");
    assert_null(resp_header(&r, "Transfer-Encoding"));
    assert_int_equal(r.body_len, 40);
    for (i = 0; i < 40; i++)
        assert_int_equal(r.body[i], 'a' + (int)(i % 26));
    resp_fini(&r);
    /* keep-alive, also for HTTP/1.0 with Content-Length */
    cli_sends(c, "GET /sized?n=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_string_equal(resp_header(&r, "Content-Length"), "3");
    assert_string_equal(resp_header(&r, "Connection"), "keep-alive");
    assert_memory_equal(r.body, "abc", 3);
    resp_fini(&r);
    /* HEAD: the length of what GET would send, no body */
    cli_sends(c, "HEAD /sized?n=12 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 1), 1);
    assert_string_equal(resp_header(&r, "Content-Length"), "12");
    resp_fini(&r);
    cli_sends(c, "GET /sized?n=0 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_string_equal(resp_header(&r, "Content-Length"), "0");
    assert_int_equal(r.body_len, 0);
    resp_fini(&r);
    assert_int_equal(fx->loop_errors, 0);
    /* short: the client gets the head and what was written, then a close */
    cli_sends(c, "GET /sized?n=20&short=5 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 0);
    resp_fini(&r);
    assert_int_equal(cli_wait_closed(c, DEADLINE_MS), 1);
    assert_int_equal(fx->loop_errors, 0);
    cli_free(c);
    fx_stop(fx);
}

static void
test_backpressure(void **state)
{
    struct gw_http_limits lim = test_limits();
    struct fx *fx;
    struct cli *c;
    struct resp r;
    size_t total = 8u << 20;
    size_t i;
    char reqline[128];

    (void)state;
    lim.write_high_water = 64 * 1024;
    fx = fx_start(&lim);
    c = cli_connect(fx->port, 4096);
    snprintf(reqline, sizeof(reqline), "GET /big?bytes=%zu HTTP/1.1\r\nHost: t\r\n\r\n", total);
    cli_sends(c, reqline);
    /* Not reading at first: the socket buffers fill and the server's own
     * queue reaches the high-water mark (writes that the kernel takes at
     * once complete at once and would never need a drain). */
    {
        struct timespec ts;
        size_t reached;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += DEADLINE_MS / 1000;
        pthread_mutex_lock(&fx->mu);
        while (fx->max_queued < lim.write_high_water) {
            if (pthread_cond_timedwait(&fx->cv, &fx->mu, &ts) != 0)
                break;
        }
        reached = fx->max_queued;
        pthread_mutex_unlock(&fx->mu);
        assert_true(reached >= lim.write_high_water);
    }
    /* Slow reader: small receive buffer, small reads. */
    {
        uint64_t deadline = now_ms() + 60000;
        size_t pos;
        assert_int_equal(cli_find(c, "\r\n\r\n", deadline, &pos), 1);
        while (cli_avail(c) < total / 2 && cli_fill(c, 1024, deadline) > 0)
            ;
    }
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, total);
    for (i = 0; i < total; i++) {
        if ((unsigned char)r.body[i] != pattern_byte(i))
            fail_msg("byte %zu out of order", i);
    }
    resp_fini(&r);
    pthread_mutex_lock(&fx->mu);
    assert_true(fx->max_queued > 0);
    assert_true(fx->max_queued <= 2 * lim.write_high_water);
    assert_true(fx->n_drains > 0);
    pthread_mutex_unlock(&fx->mu);
    cli_free(c);
    fx_stop(fx);
}

/* The streamed response starts while a large complete one still fills the
 * queue: it must get its drain callback all the same. */
static void
test_backpressure_pipelined(void **state)
{
    struct gw_http_limits lim = test_limits();
    struct fx *fx;
    struct cli *c;
    struct resp r;
    size_t total = 16u << 20; /* beyond what the kernel buffers absorb */
    size_t i;
    int k;
    char reqs[256];

    (void)state;
    fx = fx_start(&lim);
    c = cli_connect(fx->port, 4096);
    snprintf(reqs, sizeof(reqs),
             "GET /blob?bytes=%zu HTTP/1.1\r\nHost: t\r\n\r\n"
             "GET /big?bytes=%zu HTTP/1.1\r\nHost: t\r\n\r\n",
             total, total);
    cli_sends(c, reqs);
    for (k = 0; k < 2; k++) {
        assert_int_equal(cli_response(c, &r, 0), 1);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, total);
        for (i = 0; i < total; i++) {
            if ((unsigned char)r.body[i] != pattern_byte(i))
                fail_msg("response %d: byte %zu out of order", k, i);
        }
        resp_fini(&r);
    }
    pthread_mutex_lock(&fx->mu);
    assert_true(fx->n_drains > 0);
    pthread_mutex_unlock(&fx->mu);
    cli_free(c);
    fx_stop(fx);
}

static void
test_client_disconnect(void **state)
{
    struct fx *fx = fx_start(NULL);
    struct cli *c = cli_connect(fx->port, 0);
    size_t pos = 0;

    (void)state;
    cli_sends(c, "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_find(c, "data: first", now_ms() + DEADLINE_MS, &pos), 1);
    cli_free(c);
    assert_int_equal(fx_wait(fx, &fx->n_aborts, 1, DEADLINE_MS), 1);
    assert_int_equal(fx_wait(fx, &fx->n_finished_after_abort, 1, DEADLINE_MS), 1);
    assert_int_equal(fx_wait(fx, &fx->n_eclosed, 1, 0), 1);
    fx_stop(fx);
}

static void
test_timeouts(void **state)
{
    struct gw_http_limits lim = test_limits();
    struct fx *fx;
    struct cli *c;
    struct resp r;
    uint64_t t0;

    (void)state;
    lim.read_timeout_ms = 200;
    lim.idle_timeout_ms = 300;
    fx = fx_start(&lim);

    /* a started request that never completes: 408 then close */
    c = cli_connect(fx->port, 0);
    t0 = now_ms();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 408);
    assert_true(now_ms() - t0 >= 150);
    resp_fini(&r);
    assert_true(cli_wait_closed(c, DEADLINE_MS));
    cli_free(c);

    /* idle keep-alive connection: closed without a response */
    c = cli_connect(fx->port, 0);
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    resp_fini(&r);
    t0 = now_ms();
    assert_true(cli_wait_closed(c, DEADLINE_MS));
    assert_true(now_ms() - t0 >= 200);
    assert_int_equal(cli_avail(c), 0);
    cli_free(c);
    fx_stop(fx);
}

static void
test_max_connections(void **state)
{
    struct gw_http_limits lim = test_limits();
    struct fx *fx;
    struct cli *a, *b, *c;
    struct resp r;

    (void)state;
    lim.max_connections = 2;
    fx = fx_start(&lim);
    a = cli_connect(fx->port, 0);
    b = cli_connect(fx->port, 0);
    cli_sends(a, "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(a, &r, 0), 1);
    resp_fini(&r);
    cli_sends(b, "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(b, &r, 0), 1);
    resp_fini(&r);
    c = cli_connect(fx->port, 0);
    assert_true(cli_wait_closed(c, DEADLINE_MS));
    cli_free(c);
    /* after one leaves, a new one is served */
    cli_free(a);
    {
        int served = 0;
        uint64_t deadline = now_ms() + DEADLINE_MS;
        while (!served && now_ms() < deadline) {
            c = cli_connect(fx->port, 0);
            send(c->fd, "GET /hello HTTP/1.1\r\n\r\n", 23, MSG_NOSIGNAL);
            if (cli_response(c, &r, 0) == 1) {
                served = r.status == 200;
                resp_fini(&r);
            }
            cli_free(c);
        }
        assert_true(served);
    }
    cli_free(b);
    fx_stop(fx);
}

static void
test_server_close_with_open_connections(void **state)
{
    struct fx *fx = fx_start(NULL);
    struct cli *idle = cli_connect(fx->port, 0);
    struct cli *busy = cli_connect(fx->port, 0);
    struct cli *partial = cli_connect(fx->port, 0);
    struct resp r;

    (void)state;
    cli_sends(idle, "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(idle, &r, 0), 1);
    resp_fini(&r);
    cli_sends(busy, "GET /slow HTTP/1.1\r\n\r\n");
    cli_sends(partial, "GET /hello HTTP/1.1\r\nHost:");
    assert_int_equal(fx_wait(fx, &fx->n_requests, 2, DEADLINE_MS), 2);
    uv_async_send(&fx->stop);
    assert_int_equal(fx_wait(fx, &fx->n_aborts, 1, DEADLINE_MS), 1);
    assert_true(cli_wait_closed(idle, DEADLINE_MS));
    assert_true(cli_wait_closed(busy, DEADLINE_MS));
    assert_true(cli_wait_closed(partial, DEADLINE_MS));
    /* closed_cb only after the aborted request was finished */
    assert_int_equal(fx_wait(fx, &fx->n_closed_cb, 1, DEADLINE_MS), 1);
    assert_int_equal(fx->n_finished_after_abort, 1);
    cli_free(idle);
    cli_free(busy);
    cli_free(partial);
    /* fx_stop's async is a no-op now that the handle is closed; join directly */
    pthread_join(fx->thread, NULL);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    assert_int_equal(fx->loop_errors, 0);
    pthread_mutex_destroy(&fx->mu);
    pthread_cond_destroy(&fx->cv);
    free(fx);
}

static void
closed_counter(void *arg)
{
    (*(int *)arg)++;
}

static void
test_listen_addresses(void **state)
{
    uv_loop_t loop;
    struct gw_http_server *a, *b;
    int port = 0, port2 = 0, closed = 0;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    GW_PASS(gw_http_server_new(&loop, NULL, handler, NULL, &a));
    GW_FAIL(gw_http_server_listen(a, "nonsense", 0, NULL), GW_EINVAL);
    GW_FAIL(gw_http_server_listen(a, "127.0.0.1:99999", 0, NULL), GW_EINVAL);
    GW_FAIL(gw_http_server_listen(a, "[::1]", 0, NULL), GW_EINVAL);
    GW_FAIL(gw_http_server_listen(a, "127.0.0.1:", 0, NULL), GW_EINVAL);
    GW_PASS(gw_http_server_listen(a, "127.0.0.1:0", 1, &port));
    assert_true(port > 0);
    /* SO_REUSEPORT: a second server shares the port */
    GW_PASS(gw_http_server_new(&loop, NULL, handler, NULL, &b));
    {
        char hp[64];
        snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
        GW_PASS(gw_http_server_listen(b, hp, 1, &port2));
        assert_int_equal(port2, port);
    }
    /* IPv6 literal, when the host has IPv6 loopback */
    {
        uv_tcp_t probe;
        struct sockaddr_in6 sa6;
        int have6;
        uv_ip6_addr("::1", 0, &sa6);
        uv_tcp_init(&loop, &probe);
        have6 = uv_tcp_bind(&probe, (const struct sockaddr *)&sa6, 0) == 0;
        uv_close((uv_handle_t *)&probe, NULL);
        if (have6) {
            int p6 = 0;
            GW_PASS(gw_http_server_listen(b, "[::1]:0", 0, &p6));
            assert_true(p6 > 0);
        }
    }
    gw_http_server_close(a, closed_counter, &closed);
    gw_http_server_close(b, closed_counter, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 2);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- TLS (libcurl client) and drain / send timeout ---- */

struct sink {
    struct gw_buf body;
    size_t pattern_errors; /* for /big: bytes not matching pattern_byte */
    int check_pattern;
};

static size_t
sink_write(char *data, size_t size, size_t n, void *arg)
{
    struct sink *k = arg;
    size_t len = size * n, i;

    if (k->check_pattern) {
        for (i = 0; i < len; i++) {
            if ((unsigned char)data[i] != pattern_byte(k->body.len + i))
                k->pattern_errors++;
        }
        k->body.len += len; /* count only: 8 MiB need not be kept */
        return len;
    }
    gw_buf_append(&k->body, data, len);
    return len;
}

static int
small_rcvbuf(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    int sz = 4096;

    (void)arg;
    (void)purpose;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    return CURL_SOCKOPT_OK;
}

static CURL *
tls_easy(const char *host, int port, const char *path, struct sink *k, int with_ca)
{
    CURL *h = curl_easy_init();
    char url[256];

    assert_non_null(h);
    snprintf(url, sizeof(url), "https://%s:%d%s", host, port, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, k);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (with_ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, certs.ca);
    else
        curl_easy_setopt(h, CURLOPT_CAINFO, certs.garbage); /* trusts nothing */
    return h;
}

static struct gw_tls_ctx *
test_tls_ctx(void)
{
    struct gw_tls_ctx *ctx = NULL;
    struct gw_buf err = GW_BUF_INIT;

    if (gw_tls_ctx_new(certs.cert, certs.key, &ctx, &err) != GW_OK)
        fail_msg("TLS context: %s", err.data ? err.data : "?");
    gw_buf_fini(&err);
    return ctx;
}

static void
test_tls_requests(void **state)
{
    struct gw_tls_ctx *ctx = test_tls_ctx();
    struct fx *fx = fx_start_tls(NULL, ctx);
    struct sink k;
    CURL *h;
    long status = 0, version = 0, connects = -1;
    size_t n = 300 * 1024, i;
    char *body = gw_xmalloc(n);

    (void)state;
    /* The listener holds its own reference. */
    gw_tls_ctx_unref(ctx);
    memset(&k, 0, sizeof(k));
    h = tls_easy("127.0.0.1", fx->port, "/hello", &k, 1);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &version);
    assert_int_equal(status, 200);
    /* curl offers h2 and http/1.1; ALPN picks HTTP/1.1. */
    assert_int_equal(version, CURL_HTTP_VERSION_1_1);
    assert_int_equal(k.body.len, 5);
    assert_memory_equal(k.body.data, "hello", 5);

    /* A 300 KB body each way on the same TLS connection. */
    for (i = 0; i < n; i++)
        body[i] = (char)pattern_byte(i);
    k.body.len = 0;
    {
        char url[128];
        snprintf(url, sizeof(url), "https://127.0.0.1:%d/echo?x=tls", fx->port);
        curl_easy_setopt(h, CURLOPT_URL, url);
    }
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
    assert_int_equal(status, 200);
    assert_int_equal(connects, 0); /* kept alive */
    assert_int_equal(k.body.len, n);
    assert_memory_equal(k.body.data, body, n);
    curl_easy_cleanup(h);
    gw_buf_fini(&k.body);

    /* The certificate names localhost too. */
    memset(&k, 0, sizeof(k));
    h = tls_easy("localhost", fx->port, "/hello", &k, 1);
    {
        struct curl_slist *res = NULL;
        char entry[64];
        snprintf(entry, sizeof(entry), "localhost:%d:127.0.0.1", fx->port);
        res = curl_slist_append(res, entry);
        curl_easy_setopt(h, CURLOPT_RESOLVE, res);
        assert_int_equal(curl_easy_perform(h), CURLE_OK);
        curl_slist_free_all(res);
    }
    assert_int_equal(k.body.len, 5);
    curl_easy_cleanup(h);
    gw_buf_fini(&k.body);

    /* Without the test CA the client refuses the server. */
    memset(&k, 0, sizeof(k));
    h = tls_easy("127.0.0.1", fx->port, "/hello", &k, 0);
    {
        CURLcode rc = curl_easy_perform(h);
        assert_true(rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
                    rc == CURLE_SSL_CONNECT_ERROR);
    }
    curl_easy_cleanup(h);
    gw_buf_fini(&k.body);
    /* Three requests reached the handler, nothing from the refused client. */
    assert_int_equal(fx_wait(fx, &fx->n_requests, 3, 0), 3);
    free(body);
    fx_stop(fx);
}

static void
test_tls_bad_clients(void **state)
{
    struct gw_tls_ctx *ctx = test_tls_ctx();
    struct fx *fx = fx_start_tls(NULL, ctx);
    struct cli *c;
    struct resp r;
    struct sink k;
    CURL *h;
    static const unsigned char junk[] = {0x16, 0x03, 0x01, 0x00, 0x08, 'n', 'o', 't',
                                         ' ',  't',  'l',  's',  '!',  '!', '!', '!'};

    (void)state;
    gw_tls_ctx_unref(ctx);

    /* Plain HTTP on the TLS port: a plain 400, then the close. */
    c = cli_connect(fx->port, 0);
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(c, &r, 0), 1);
    assert_int_equal(r.status, 400);
    assert_string_equal(resp_header(&r, "Connection"), "close");
    assert_non_null(strstr(r.body, "HTTPS"));
    resp_fini(&r);
    assert_true(cli_wait_closed(c, DEADLINE_MS));
    cli_free(c);

    /* Bytes that are neither: closed without an answer we could parse. */
    c = cli_connect(fx->port, 0);
    cli_send(c, junk, sizeof(junk));
    assert_true(cli_wait_closed(c, DEADLINE_MS));
    assert_null(memmem(cli_data(c), cli_avail(c), "HTTP/1.1", 8));
    cli_free(c);

    /* A client that goes away in the middle of a handshake. */
    c = cli_connect(fx->port, 0);
    cli_send(c, junk, 3);
    cli_free(c);

    /* The server is unharmed and nothing reached the handler before this. */
    memset(&k, 0, sizeof(k));
    h = tls_easy("127.0.0.1", fx->port, "/hello", &k, 1);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    assert_int_equal(k.body.len, 5);
    curl_easy_cleanup(h);
    gw_buf_fini(&k.body);
    assert_int_equal(fx_wait(fx, &fx->n_requests, 1, 0), 1);
    fx_stop(fx);
}

static void
test_tls_backpressure(void **state)
{
    struct gw_http_limits lim = test_limits();
    struct gw_tls_ctx *ctx = test_tls_ctx();
    struct fx *fx;
    struct sink k;
    CURL *h;
    size_t total = 8u << 20;
    long status = 0;
    char path[64];

    (void)state;
    lim.write_high_water = 64 * 1024;
    fx = fx_start_tls(&lim, ctx);
    gw_tls_ctx_unref(ctx);
    memset(&k, 0, sizeof(k));
    k.check_pattern = 1;
    snprintf(path, sizeof(path), "/big?bytes=%zu", total);
    h = tls_easy("127.0.0.1", fx->port, path, &k, 1);
    /* A slow reader: tiny receive buffer and a rate limit. */
    curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, small_rcvbuf);
    curl_easy_setopt(h, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)(16 << 20));
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 16384L);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 200);
    assert_int_equal(k.body.len, total);
    assert_int_equal(k.pattern_errors, 0);
    curl_easy_cleanup(h);
    k.body.len = 0;
    gw_buf_fini(&k.body);
    pthread_mutex_lock(&fx->mu);
    /* The queue is accounted in plaintext bytes and stayed bounded. */
    assert_true(fx->max_queued > 0);
    assert_true(fx->max_queued <= 2 * lim.write_high_water);
    assert_true(fx->n_drains > 0);
    pthread_mutex_unlock(&fx->mu);
    fx_stop(fx);
}

/* A client that stops reading while a response is queued is dropped after
 * write_timeout_ms, and the handler gets its abort callback. */
static void
test_write_timeout(void **state)
{
    struct gw_http_limits lim = test_limits();
    struct fx *fx;
    struct cli *c;
    uint64_t t0;
    size_t pos = 0;

    (void)state;
    lim.write_timeout_ms = 300;
    fx = fx_start(&lim);
    c = cli_connect(fx->port, 4096);
    t0 = now_ms();
    cli_sends(c, "GET /bigabort?bytes=268435456 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_find(c, "\r\n\r\n", now_ms() + DEADLINE_MS, &pos), 1);
    /* ... and never reads again. */
    assert_int_equal(fx_wait(fx, &fx->n_aborts, 1, DEADLINE_MS), 1);
    assert_true(now_ms() - t0 >= 250);
    assert_true(cli_wait_closed(c, DEADLINE_MS));
    cli_free(c);

    /* A client that keeps reading, slowly, is not dropped. */
    c = cli_connect(fx->port, 4096);
    cli_sends(c, "GET /big?bytes=2097152 HTTP/1.1\r\nHost: t\r\n\r\n");
    {
        struct resp r;
        assert_int_equal(cli_response(c, &r, 0), 1);
        assert_int_equal(r.body_len, 2097152);
        resp_fini(&r);
    }
    cli_free(c);
    assert_int_equal(fx->n_aborts, 1);
    fx_stop(fx);
}

static int
try_connect(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int rc;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    return rc == 0;
}

/* stop_accepting: the listener goes, idle connections close, a request in
 * progress finishes with "Connection: close". */
static void
test_stop_accepting(void **state)
{
    struct fx *fx = fx_start(NULL);
    struct cli *idle = cli_connect(fx->port, 0);
    struct cli *busy = cli_connect(fx->port, 0);
    struct resp r;

    (void)state;
    cli_sends(idle, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cli_response(idle, &r, 0), 1);
    assert_null(resp_header(&r, "Connection"));
    resp_fini(&r);
    cli_sends(busy, "GET /delay?ms=300&tag=7 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(fx_wait(fx, &fx->n_requests, 2, DEADLINE_MS), 2);
    uv_async_send(&fx->drain);
    assert_true(cli_wait_closed(idle, DEADLINE_MS));
    /* The listening socket is closed in the same loop callback. */
    assert_false(try_connect(fx->port));
    assert_int_equal(cli_response(busy, &r, 0), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "delayed 7");
    assert_string_equal(resp_header(&r, "Connection"), "close");
    resp_fini(&r);
    assert_true(cli_wait_closed(busy, DEADLINE_MS));
    assert_int_equal(fx->n_aborts, 0);
    cli_free(idle);
    cli_free(busy);
    fx_stop(fx);
}

static void
test_conn_gauge(void **state)
{
    uv_loop_t loop;
    struct gw_http_server *srv;
    atomic_int_fast64_t gauge;
    int port = 0, closed = 0;

    (void)state;
    atomic_init(&gauge, 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    GW_PASS(gw_http_server_new(&loop, NULL, handler, NULL, &srv));
    gw_http_server_set_conn_gauge(srv, &gauge);
    GW_PASS(gw_http_server_listen(srv, "127.0.0.1:0", 0, &port));
    {
        struct cli *a = cli_connect(port, 0);
        struct cli *b = cli_connect(port, 0);
        uint64_t deadline = now_ms() + DEADLINE_MS;
        while (atomic_load(&gauge) < 2 && now_ms() < deadline)
            uv_run(&loop, UV_RUN_ONCE);
        assert_int_equal(atomic_load(&gauge), 2);
        assert_int_equal(gw_http_server_active_requests(srv), 0);
        cli_free(a);
        deadline = now_ms() + DEADLINE_MS;
        while (atomic_load(&gauge) > 1 && now_ms() < deadline)
            uv_run(&loop, UV_RUN_ONCE);
        assert_int_equal(atomic_load(&gauge), 1);
        cli_free(b);
    }
    gw_http_server_close(srv, closed_counter, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(atomic_load(&gauge), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static int
suite_setup(void **state)
{
    (void)state;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    return test_certs_create(&certs) ? 0 : -1;
}

static int
suite_teardown(void **state)
{
    (void)state;
    test_certs_remove(&certs);
    curl_global_cleanup();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_keepalive_and_head),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_chunked_request),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_limits_and_malformed),
        cmocka_unit_test(test_streamed_response),
        cmocka_unit_test(test_coalesced_response),
        cmocka_unit_test(test_stream_event_prompt),
        cmocka_unit_test(test_start_length),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_backpressure_pipelined),
        cmocka_unit_test(test_client_disconnect),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_server_close_with_open_connections),
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_tls_requests),
        cmocka_unit_test(test_tls_bad_clients),
        cmocka_unit_test(test_tls_backpressure),
        cmocka_unit_test(test_write_timeout),
        cmocka_unit_test(test_stop_accepting),
        cmocka_unit_test(test_conn_gauge),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
