/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the curl-multi-on-libuv upstream: a plain POSIX socket HTTP
 * server on 127.0.0.1:0 (one thread per connection) plays scripted
 * responses; the client side runs on a fresh uv loop per test and waits for
 * events with deadlines. Covers complete and streamed responses, pause and
 * resume, byte-exact request bodies, request headers, connect errors, the
 * first-byte / idle / total timeouts, cancel, close and connection reuse. */
#include "gw_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw_buf.h"
#include "upstream.h"

#define DEADLINE_MS 10000
#define BURST_CHUNKS 64
#define BURST_CHUNK 4096

/* ---- the scripted server --------------------------------------------------- */

struct srv;

struct srv_conn {
    struct srv *srv;
    int fd;
    pthread_t thr;
};

struct srv {
    int lfd;
    int port;
    pthread_t thr;
    atomic_int stop;
    uv_async_t *notify; /* wakes the test loop on every recorded event */
    pthread_mutex_t mu;
    int accepted;
    int requests;
    int peer_closed; /* connections the client closed while we streamed/waited */
    int srv_closed;  /* connections this server closed (any reason) */
    struct gw_buf last_head;
    struct gw_buf last_body;
    struct srv_conn *conns[64];
    int n_conns;
};

static void
srv_event(struct srv *s)
{
    if (s->notify)
        uv_async_send(s->notify);
}

static int
srv_send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Waits up to ms for the peer to close; 1 when it did (or on error). */
static int
srv_wait_closed(struct srv *s, int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int waited = 0;
    while (waited < ms && !atomic_load(&s->stop)) {
        int slice = ms - waited < 20 ? ms - waited : 20;
        int rc = poll(&pfd, 1, slice);
        waited += slice;
        if (rc > 0) {
            char tmp[256];
            ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
            if (n <= 0)
                return 1;
        }
    }
    return 0;
}

static void
srv_peer_closed(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    s->peer_closed++;
    pthread_mutex_unlock(&s->mu);
    srv_event(s);
}

static void
srv_pattern(char *buf, size_t len, size_t offset)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + (offset + i) % 26);
}

static int
srv_send_chunk(int fd, const char *data, size_t len)
{
    char hdr[32];
    int n = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
    if (srv_send_all(fd, hdr, (size_t)n) != 0 || srv_send_all(fd, data, len) != 0 ||
        srv_send_all(fd, "\r\n", 2) != 0)
        return -1;
    return 0;
}

/* Reads one request into head/body; 0 ok, -1 on EOF/error. `pending` keeps
 * bytes read past the request (pipelining is not used by curl, but keep
 * them anyway). */
static int
srv_read_request(struct srv *s, int fd, struct gw_buf *pending, struct gw_buf *head,
                 struct gw_buf *body)
{
    char tmp[65536];
    for (;;) {
        char *end = pending->data ? memmem(pending->data, pending->len, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t hl = (size_t)(end - pending->data) + 4;
            gw_buf_reset(head);
            gw_buf_append(head, pending->data, hl);
            gw_buf_consume(pending, hl);
            break;
        }
        if (pending->len > 1 << 20)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int rc = poll(&pfd, 1, 50);
        if (atomic_load(&s->stop))
            return -1;
        if (rc <= 0)
            continue;
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0)
            return -1;
        gw_buf_append(pending, tmp, (size_t)n);
    }
    size_t clen = 0;
    const char *cl = strcasestr(head->data, "\r\ncontent-length:");
    if (cl)
        clen = (size_t)strtoull(cl + 17, NULL, 10);
    while (pending->len < clen) {
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0)
            return -1;
        gw_buf_append(pending, tmp, (size_t)n);
    }
    gw_buf_reset(body);
    gw_buf_append(body, pending->data ? pending->data : "", clen);
    gw_buf_consume(pending, clen);
    return 0;
}

static const char json_body[] = "{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":3}}";

/* Plays the scenario named by the request path; 0 keeps the connection. */
static int
srv_respond(struct srv *s, int fd, const char *path, const struct gw_buf *body)
{
    char hdr[512];
    int n;
    if (strncmp(path, "/json", 5) == 0 || strncmp(path, "/continue", 9) == 0) {
        if (path[1] == 'c' &&
            srv_send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0)
            return -1;
        n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "X-Test: yes\r\nX-Folded: one\r\n two\r\nContent-Length: %zu\r\n\r\n",
                     strlen(json_body));
        if (srv_send_all(fd, hdr, (size_t)n) != 0 ||
            srv_send_all(fd, json_body, strlen(json_body)) != 0)
            return -1;
        return 0;
    }
    if (strncmp(path, "/closeafter", 11) == 0) {
        /* a keep-alive answer, then the server drops the idle connection */
        n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     strlen(json_body));
        srv_send_all(fd, hdr, (size_t)n);
        srv_send_all(fd, json_body, strlen(json_body));
        return -1;
    }
    if (strncmp(path, "/echo", 5) == 0) {
        n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 201 Created\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     body->len);
        if (srv_send_all(fd, hdr, (size_t)n) != 0 ||
            srv_send_all(fd, body->data ? body->data : "", body->len) != 0)
            return -1;
        return 0;
    }
    if (strncmp(path, "/burst", 6) == 0) {
        static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n";
        char chunk[BURST_CHUNK];
        if (srv_send_all(fd, h, sizeof(h) - 1) != 0)
            return -1;
        for (size_t i = 0; i < BURST_CHUNKS; i++) {
            srv_pattern(chunk, sizeof(chunk), i * BURST_CHUNK);
            if (srv_send_chunk(fd, chunk, sizeof(chunk)) != 0)
                return -1;
        }
        return srv_send_all(fd, "0\r\n\r\n", 5);
    }
    if (strncmp(path, "/slow", 5) == 0 || strncmp(path, "/idle", 5) == 0) {
        /* a chunk every 20 ms (/slow, up to 10 s) or one chunk then silence
         * (/idle), until the client goes away */
        static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n";
        char chunk[64];
        int max = path[1] == 's' ? 500 : 1;
        if (srv_send_all(fd, h, sizeof(h) - 1) != 0)
            return -1;
        for (int i = 0; i < max; i++) {
            srv_pattern(chunk, sizeof(chunk), (size_t)i * sizeof(chunk));
            if (srv_send_chunk(fd, chunk, sizeof(chunk)) != 0) {
                srv_peer_closed(s);
                return -1;
            }
            if (srv_wait_closed(s, fd, 20)) {
                srv_peer_closed(s);
                return -1;
            }
        }
        if (srv_wait_closed(s, fd, DEADLINE_MS))
            srv_peer_closed(s);
        return -1;
    }
    if (strncmp(path, "/truncate", 9) == 0) {
        /* announces 1000 bytes, sends 64, then closes */
        static const char h[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        char part[64];
        srv_pattern(part, sizeof(part), 0);
        srv_send_all(fd, h, sizeof(h) - 1);
        srv_send_all(fd, part, sizeof(part));
        return -1;
    }
    if (strncmp(path, "/nohead", 7) == 0) {
        if (srv_wait_closed(s, fd, DEADLINE_MS))
            srv_peer_closed(s);
        return -1;
    }
    if (strncmp(path, "/bighead", 8) == 0) {
        struct gw_buf b = GW_BUF_INIT;
        gw_buf_append_str(&b, "HTTP/1.1 200 OK\r\n");
        for (int i = 0; i < 150; i++)
            gw_buf_appendf(&b, "X-H%d: v\r\n", i);
        gw_buf_append_str(&b, "Content-Length: 0\r\n\r\n");
        int rc = srv_send_all(fd, b.data, b.len);
        gw_buf_fini(&b);
        return rc;
    }
    static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    return srv_send_all(fd, nf, sizeof(nf) - 1);
}

static void *
srv_conn_main(void *arg)
{
    struct srv_conn *c = arg;
    struct srv *s = c->srv;
    struct gw_buf pending = GW_BUF_INIT, head = GW_BUF_INIT, body = GW_BUF_INIT;
    while (!atomic_load(&s->stop)) {
        if (srv_read_request(s, c->fd, &pending, &head, &body) != 0)
            break;
        char path[128] = "";
        const char *sp = memchr(head.data, ' ', head.len);
        if (sp) {
            const char *e = strchr(sp + 1, ' ');
            if (e && (size_t)(e - sp - 1) < sizeof(path)) {
                memcpy(path, sp + 1, (size_t)(e - sp - 1));
                path[e - sp - 1] = '\0';
            }
        }
        pthread_mutex_lock(&s->mu);
        s->requests++;
        gw_buf_reset(&s->last_head);
        gw_buf_append(&s->last_head, head.data, head.len);
        gw_buf_reset(&s->last_body);
        gw_buf_append(&s->last_body, body.data ? body.data : "", body.len);
        pthread_mutex_unlock(&s->mu);
        srv_event(s);
        if (srv_respond(s, c->fd, path, &body) != 0)
            break;
    }
    close(c->fd);
    pthread_mutex_lock(&s->mu);
    s->srv_closed++;
    pthread_mutex_unlock(&s->mu);
    srv_event(s);
    gw_buf_fini(&pending);
    gw_buf_fini(&head);
    gw_buf_fini(&body);
    return NULL;
}

static void *
srv_main(void *arg)
{
    struct srv *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        struct srv_conn *c = calloc(1, sizeof(*c));
        c->srv = s;
        c->fd = fd;
        pthread_mutex_lock(&s->mu);
        s->accepted++;
        if (s->n_conns < 64)
            s->conns[s->n_conns++] = c;
        pthread_mutex_unlock(&s->mu);
        pthread_create(&c->thr, NULL, srv_conn_main, c);
    }
    return NULL;
}

static void
srv_start(struct srv *s, uv_async_t *notify)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->notify = notify;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 64), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thr, NULL, srv_main, s), 0);
}

static void
srv_stop(struct srv *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->thr, NULL);
    for (int i = 0; i < s->n_conns; i++) {
        pthread_join(s->conns[i]->thr, NULL);
        free(s->conns[i]);
    }
    close(s->lfd);
    gw_buf_fini(&s->last_head);
    gw_buf_fini(&s->last_body);
    pthread_mutex_destroy(&s->mu);
}

static int
srv_get(struct srv *s, const int *field)
{
    pthread_mutex_lock(&s->mu);
    int v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* ---- the client side ------------------------------------------------------ */

struct fixture {
    uv_loop_t loop;
    uv_async_t notify;
    struct srv srv;
    struct edge_upstream *up;
    char url[256];
};

struct client {
    struct fixture *fx;
    struct edge_upstream_req *req;
    int head_calls;
    int status;
    struct gw_buf headers; /* "name: value\n" lines as received */
    int done_calls;
    gw_err err;
    struct gw_buf body;
    int chunks;
    int chunks_at_done;
    /* pause/resume */
    int pause_first_n; /* pause after each of the first n chunks */
    int pauses;
    int paused;
    int chunk_while_paused;
    uv_timer_t resume_timer;
    /* cancel */
    int cancel_at_chunk; /* cancel from inside on_chunk at this chunk (1-based) */
    int cancelled;
    /* chained start from on_done */
    struct client *chain;
    const char *chain_path;
};

static void
notify_cb(uv_async_t *a)
{
    (void)a; /* only wakes uv_run */
}

static void
fx_init(struct fixture *fx)
{
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(uv_async_init(&fx->loop, &fx->notify, notify_cb), 0);
    srv_start(&fx->srv, &fx->notify);
    GW_PASS(edge_upstream_new(&fx->loop, &fx->up));
}

static void
fx_fini(struct fixture *fx)
{
    edge_upstream_close(fx->up);
    uv_close((uv_handle_t *)&fx->notify, NULL);
    assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    srv_stop(&fx->srv);
    /* every handle closed: nothing of the upstream is left on the loop */
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static const char *
fx_url(struct fixture *fx, const char *path)
{
    snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d%s", fx->srv.port, path);
    return fx->url;
}

static void
deadline_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs the loop until cond(arg) holds; fails the test after ms. */
static void
run_until(struct fixture *fx, int (*cond)(void *), void *arg, uint64_t ms)
{
    uv_timer_t t;
    int expired = 0;
    uv_timer_init(&fx->loop, &t);
    t.data = &expired;
    uv_timer_start(&t, deadline_cb, ms, 0);
    while (!cond(arg) && !expired)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    if (!cond(arg))
        fail_msg("condition not reached within %llu ms", (unsigned long long)ms);
}

static int
cond_done(void *arg)
{
    return ((struct client *)arg)->done_calls > 0;
}

static int
cond_peer_closed(void *arg)
{
    struct fixture *fx = arg;
    return srv_get(&fx->srv, &fx->srv.peer_closed) > 0;
}

static void
client_init(struct client *c, struct fixture *fx)
{
    memset(c, 0, sizeof(*c));
    c->fx = fx;
    c->status = -1;
    c->err = GW_EINTERNAL;
    uv_timer_init(&fx->loop, &c->resume_timer);
    c->resume_timer.data = c;
}

static void
client_fini(struct client *c)
{
    uv_close((uv_handle_t *)&c->resume_timer, NULL);
    gw_buf_fini(&c->headers);
    gw_buf_fini(&c->body);
}

static void
on_head(void *arg, int status, const struct gw_http_header *h, size_t n)
{
    struct client *c = arg;
    c->head_calls++;
    c->status = status;
    assert_int_equal(c->chunks, 0); /* head before any body */
    for (size_t i = 0; i < n; i++) {
        gw_buf_append(&c->headers, h[i].name.p, h[i].name.len);
        gw_buf_append_str(&c->headers, ": ");
        gw_buf_append(&c->headers, h[i].value.p, h[i].value.len);
        gw_buf_append_str(&c->headers, "\n");
    }
}

static void
resume_cb(uv_timer_t *t)
{
    struct client *c = t->data;
    assert_true(edge_upstream_paused(c->req));
    c->paused = 0;
    /* may deliver buffered bytes (and pause again) before it returns */
    edge_upstream_resume(c->req);
}

static int
on_chunk(void *arg, const char *data, size_t len)
{
    struct client *c = arg;
    assert_int_equal(c->head_calls, 1);
    assert_int_equal(c->cancelled, 0);
    if (c->paused)
        c->chunk_while_paused++;
    c->chunks++;
    gw_buf_append(&c->body, data, len);
    if (c->cancel_at_chunk && c->chunks == c->cancel_at_chunk) {
        c->cancelled = 1;
        edge_upstream_cancel(c->req);
        return EDGE_UPSTREAM_CONTINUE;
    }
    if (c->pauses < c->pause_first_n) {
        c->pauses++;
        c->paused = 1;
        /* resume from a loop callback, 0 ms: the next loop iteration */
        uv_timer_start(&c->resume_timer, resume_cb, c->pauses % 2 ? 0 : 30, 0);
        return EDGE_UPSTREAM_PAUSE;
    }
    return EDGE_UPSTREAM_CONTINUE;
}

static const struct edge_upstream_cbs client_cbs;

static void
on_done(void *arg, gw_err err)
{
    struct client *c = arg;
    assert_int_equal(c->cancelled, 0);
    c->done_calls++;
    c->err = err;
    c->chunks_at_done = c->chunks;
    if (c->chain) {
        /* start the next attempt from inside on_done (failover) */
        struct edge_upstream_spec spec = {.method = "GET",
                                          .url = fx_url(c->fx, c->chain_path)};
        GW_PASS(edge_upstream_start(c->fx->up, &spec, &client_cbs, c->chain, &c->chain->req));
    }
}

static const struct edge_upstream_cbs client_cbs = {
    .on_head = on_head,
    .on_chunk = on_chunk,
    .on_done = on_done,
};

static void
start(struct fixture *fx, struct client *c, const char *method, const char *path,
      struct curl_slist *headers, const void *body, size_t len,
      struct edge_upstream_timeouts to)
{
    struct edge_upstream_spec spec = {
        .method = method,
        .url = fx_url(fx, path),
        .headers = headers,
        .body = body,
        .body_len = len,
        .timeouts = to,
        .reqid = "test-req",
    };
    GW_PASS(edge_upstream_start(fx->up, &spec, &client_cbs, c, &c->req));
}

static const struct edge_upstream_timeouts no_timeouts = {0, 0, 0, 0};

static void
check_pattern(const struct gw_buf *b, size_t want_len)
{
    assert_int_equal(b->len, want_len);
    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] != (char)('a' + i % 26))
            fail_msg("byte %zu out of order", i);
    }
}

/* ---- tests ----------------------------------------------------------------- */

static void
test_json(void **state)
{
    (void)state;
    struct fixture fx;
    struct client c;
    fx_init(&fx);
    client_init(&c, &fx);
    start(&fx, &c, "POST", "/json", NULL, "{}", 2, no_timeouts);
    assert_int_equal(edge_upstream_active(fx.up), 1);
    assert_int_equal(c.done_calls, 0); /* never from inside start */
    run_until(&fx, cond_done, &c, DEADLINE_MS);
    GW_PASS(c.err);
    assert_int_equal(c.done_calls, 1);
    assert_int_equal(c.head_calls, 1);
    assert_int_equal(c.status, 200);
    assert_non_null(strstr(c.headers.data, "X-Test: yes\n"));
    assert_non_null(strstr(c.headers.data, "Content-Type: application/json\n"));
    assert_non_null(strstr(c.headers.data, "X-Folded: one two\n"));
    assert_int_equal(c.body.len, strlen(json_body));
    assert_memory_equal(c.body.data, json_body, c.body.len);
    assert_int_equal(edge_upstream_active(fx.up), 0);

    /* a second request reuses the keep-alive connection */
    struct client c2;
    client_init(&c2, &fx);
    start(&fx, &c2, "POST", "/continue", NULL, "{}", 2, no_timeouts);
    run_until(&fx, cond_done, &c2, DEADLINE_MS);
    GW_PASS(c2.err);
    /* the interim 100 response is not reported */
    assert_int_equal(c2.head_calls, 1);
    assert_int_equal(c2.status, 200);
    assert_int_equal(srv_get(&fx.srv, &fx.srv.requests), 2);
    assert_int_equal(srv_get(&fx.srv, &fx.srv.accepted), 1);

    client_fini(&c);
    client_fini(&c2);
    fx_fini(&fx);
}

static void
test_body_and_headers(void **state)
{
    (void)state;
    struct fixture fx;
    struct client c;
    fx_init(&fx);
    client_init(&c, &fx);

    size_t len = 1 << 20;
    unsigned char *body = malloc(len);
    for (size_t i = 0; i < len; i++)
        body[i] = (unsigned char)((i * 7919u) >> 3); /* includes NULs and high bytes */
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/octet-stream");
    h = curl_slist_append(h, "anthropic-version: 2023-06-01");
    h = curl_slist_append(h, "X-Empty;");
    start(&fx, &c, "POST", "/echo?beta=true", h, body, len, no_timeouts);
    run_until(&fx, cond_done, &c, DEADLINE_MS);
    GW_PASS(c.err);
    assert_int_equal(c.status, 201);
    assert_int_equal(c.body.len, len);
    assert_memory_equal(c.body.data, body, len);

    pthread_mutex_lock(&fx.srv.mu);
    const char *head = fx.srv.last_head.data;
    assert_int_equal(fx.srv.last_body.len, len);
    assert_memory_equal(fx.srv.last_body.data, body, len);
    assert_non_null(strstr(head, "POST /echo?beta=true HTTP/1.1\r\n"));
    assert_non_null(strstr(head, "\r\nContent-Type: application/octet-stream\r\n"));
    assert_non_null(strstr(head, "\r\nanthropic-version: 2023-06-01\r\n"));
    assert_non_null(strstr(head, "\r\nX-Empty:"));
    assert_non_null(strstr(head, "\r\nContent-Length: 1048576\r\n"));
    assert_null(strcasestr(head, "\r\nExpect:"));
    assert_null(strcasestr(head, "\r\nAccept-Encoding:"));
    pthread_mutex_unlock(&fx.srv.mu);

    /* empty POST without a content type: curl must not invent one */
    struct client c2;
    client_init(&c2, &fx);
    start(&fx, &c2, "POST", "/echo", NULL, NULL, 0, no_timeouts);
    run_until(&fx, cond_done, &c2, DEADLINE_MS);
    GW_PASS(c2.err);
    assert_int_equal(c2.body.len, 0);
    pthread_mutex_lock(&fx.srv.mu);
    head = fx.srv.last_head.data;
    assert_non_null(strstr(head, "POST /echo HTTP/1.1\r\n"));
    assert_null(strcasestr(head, "\r\nContent-Type:"));
    assert_non_null(strstr(head, "\r\nContent-Length: 0\r\n"));
    pthread_mutex_unlock(&fx.srv.mu);

    free(body);
    client_fini(&c);
    client_fini(&c2);
    fx_fini(&fx);
}

static void
test_stream_pause_resume(void **state)
{
    (void)state;
    struct fixture fx;
    struct client c;
    fx_init(&fx);
    client_init(&c, &fx);
    c.pause_first_n = 6;
    start(&fx, &c, "POST", "/burst", NULL, "{}", 2, no_timeouts);
    run_until(&fx, cond_done, &c, DEADLINE_MS);
    GW_PASS(c.err);
    assert_int_equal(c.pauses, 6);
    assert_int_equal(c.chunk_while_paused, 0);
    check_pattern(&c.body, BURST_CHUNKS * BURST_CHUNK);
    client_fini(&c);
    fx_fini(&fx);
}

static int
cond_all_done(void *arg)
{
    struct client *cs = arg;
    for (int i = 0; i < 5; i++) {
        if (cs[i].done_calls == 0)
            return 0;
    }
    return 1;
}

static void
test_parallel_streams(void **state)
{
    (void)state;
    struct fixture fx;
    struct client cs[5];
    fx_init(&fx);
    for (int i = 0; i < 5; i++) {
        client_init(&cs[i], &fx);
        cs[i].pause_first_n = i; /* mix paused and free-running transfers */
        start(&fx, &cs[i], "POST", "/burst", NULL, "{}", 2, no_timeouts);
    }
    assert_int_equal(edge_upstream_active(fx.up), 5);
    run_until(&fx, cond_all_done, cs, DEADLINE_MS);
    for (int i = 0; i < 5; i++) {
        GW_PASS(cs[i].err);
        assert_int_equal(cs[i].done_calls, 1);
        check_pattern(&cs[i].body, BURST_CHUNKS * BURST_CHUNK);
        client_fini(&cs[i]);
    }
    assert_int_equal(srv_get(&fx.srv, &fx.srv.accepted), 5);
    fx_fini(&fx);
}

static void
test_connect_refused(void **state)
{
    (void)state;
    struct fixture fx;
    struct client c, next;
    fx_init(&fx);
    client_init(&c, &fx);
    client_init(&next, &fx);

    /* a port nobody listens on: bind, read it back, close */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/json", ntohs(a.sin_port));

    c.chain = &next; /* on_done starts the next candidate */
    c.chain_path = "/json";
    struct edge_upstream_spec spec = {.method = "POST", .url = url, .body = "{}", .body_len = 2};
    spec.timeouts.connect_ms = 2000;
    GW_PASS(edge_upstream_start(fx.up, &spec, &client_cbs, &c, &c.req));
    run_until(&fx, cond_done, &c, DEADLINE_MS);
    GW_FAIL(c.err, GW_EUPSTREAM);
    assert_int_equal(c.head_calls, 0);
    run_until(&fx, cond_done, &next, DEADLINE_MS);
    GW_PASS(next.err);
    assert_int_equal(next.status, 200);

    /* argument errors */
    struct edge_upstream_spec bad = {.method = "POST", .url = NULL};
    struct edge_upstream_req *r = (struct edge_upstream_req *)&bad;
    bad.headers = curl_slist_append(NULL, "X-Taken: yes"); /* freed even on error */
    GW_FAIL(edge_upstream_start(fx.up, &bad, &client_cbs, &c, &r), GW_EINVAL);
    assert_null(r);
    client_fini(&c);
    client_fini(&next);
    fx_fini(&fx);
}

static void
test_first_byte_timeout(void **state)
{
    (void)state;
    struct fixture fx;
    struct client c;
    fx_init(&fx);
    client_init(&c, &fx);
    struct edge_upstream_timeouts to = {.connect_ms = 2000, .first_byte_ms = 150};
    uint64_t t0 = uv_hrtime();
    start(&fx, &c, "POST", "/nohead", NULL, "{}", 2, to);
    run_until(&fx, cond_done, &c, DEADLINE_MS);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    GW_FAIL(c.err, GW_ETIMEDOUT);
    assert_int_equal(c.head_calls, 0);
    assert_true(ms >= 140);
    assert_true(ms < 5000);
    /* the server saw the connection go away */
    run_until(&fx, cond_peer_closed, &fx, DEADLINE_MS);
    client_fini(&c);
    fx_fini(&fx);
}

static void
test_idle_timeout(void **state)
{
    (void)state;
    struct fixture fx;
    struct client c;
    fx_init(&fx);
    client_init(&c, &fx);
    struct edge_upstream_timeouts to = {.first_byte_ms = 5000, .idle_ms = 200};
    uint64_t t0 = uv_hrtime();
    start(&fx, &c, "POST", "/idle", NULL, "{}", 2, to);
    run_until(&fx, cond_done, &c, DEADLINE_MS);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    GW_FAIL(c.err, GW_ETIMEDOUT);
    assert_int_equal(c.head_calls, 1);
    assert_int_equal(c.chunks, 1);
    check_pattern(&c.body, 64);
    assert_true(ms >= 190);
    assert_true(ms < 5000);
    client_fini(&c);
    fx_fini(&fx);
}

static void
test_total_timeout(void **state)
{
    (void)state;
    struct fixture fx;
    struct client c;
    fx_init(&fx);
    client_init(&c, &fx);
    /* chunks keep coming every 20 ms, so neither first-byte nor idle fires */
    struct edge_upstream_timeouts to = {.first_byte_ms = 5000, .idle_ms = 5000, .total_ms = 300};
    start(&fx, &c, "POST", "/slow", NULL, "{}", 2, to);
    run_until(&fx, cond_done, &c, DEADLINE_MS);
    GW_FAIL(c.err, GW_ETIMEDOUT);
    assert_true(c.chunks > 1);
    client_fini(&c);
    fx_fini(&fx);
}

static int
cond_chunks(void *arg)
{
    return ((struct client *)arg)->chunks >= 2;
}

static void
test_cancel(void **state)
{
    (void)state;
    struct fixture fx;
    struct client c;

    /* from inside on_chunk */
    fx_init(&fx);
    client_init(&c, &fx);
    c.cancel_at_chunk = 3;
    start(&fx, &c, "POST", "/slow", NULL, "{}", 2, no_timeouts);
    run_until(&fx, cond_peer_closed, &fx, DEADLINE_MS);
    assert_int_equal(c.chunks, 3);
    assert_int_equal(c.done_calls, 0);
    assert_int_equal(edge_upstream_active(fx.up), 0);
    client_fini(&c);
    fx_fini(&fx);

    /* from a loop callback, mid-stream, also while paused */
    fx_init(&fx);
    client_init(&c, &fx);
    start(&fx, &c, "POST", "/slow", NULL, "{}", 2, no_timeouts);
    run_until(&fx, cond_chunks, &c, DEADLINE_MS);
    c.cancelled = 1;
    edge_upstream_cancel(c.req);
    assert_int_equal(edge_upstream_active(fx.up), 0);
    run_until(&fx, cond_peer_closed, &fx, DEADLINE_MS);
    assert_int_equal(c.done_calls, 0);
    client_fini(&c);
    fx_fini(&fx);

    /* before the transfer even started */
    fx_init(&fx);
    client_init(&c, &fx);
    start(&fx, &c, "POST", "/json", NULL, "{}", 2, no_timeouts);
    c.cancelled = 1;
    edge_upstream_cancel(c.req);
    uv_run(&fx.loop, UV_RUN_NOWAIT);
    assert_int_equal(c.done_calls, 0);
    client_fini(&c);
    fx_fini(&fx);
}

static void
test_close_with_active(void **state)
{
    (void)state;
    struct fixture fx;
    struct client c, c2;
    fx_init(&fx);
    client_init(&c, &fx);
    client_init(&c2, &fx);
    start(&fx, &c, "POST", "/slow", NULL, "{}", 2, no_timeouts);
    start(&fx, &c2, "POST", "/nohead", NULL, "{}", 2, no_timeouts);
    run_until(&fx, cond_chunks, &c, DEADLINE_MS);
    c.cancelled = 1; /* no callbacks after close */
    c2.cancelled = 1;
    /* fx_fini closes the upstream with both transfers running; the loop
     * must drain and uv_loop_close must succeed */
    client_fini(&c);
    client_fini(&c2);
    fx_fini(&fx);
    assert_int_equal(c.done_calls, 0);
    assert_int_equal(c2.done_calls, 0);
}

static void
test_truncated(void **state)
{
    (void)state;
    struct fixture fx;
    struct client c;
    fx_init(&fx);
    client_init(&c, &fx);
    start(&fx, &c, "POST", "/truncate", NULL, "{}", 2, no_timeouts);
    run_until(&fx, cond_done, &c, DEADLINE_MS);
    GW_FAIL(c.err, GW_EUPSTREAM);
    assert_int_equal(c.head_calls, 1);
    check_pattern(&c.body, 64);
    client_fini(&c);
    fx_fini(&fx);
}

static void
test_oversized_head(void **state)
{
    (void)state;
    struct fixture fx;
    struct client c;
    fx_init(&fx);
    client_init(&c, &fx);
    start(&fx, &c, "GET", "/bighead", NULL, NULL, 0, no_timeouts);
    run_until(&fx, cond_done, &c, DEADLINE_MS);
    GW_FAIL(c.err, GW_EUPSTREAM);
    assert_int_equal(c.head_calls, 0);
    client_fini(&c);
    fx_fini(&fx);
}

struct closed_wait {
    struct fixture *fx;
    int want;
};

static int
cond_srv_closed(void *arg)
{
    struct closed_wait *w = arg;
    return srv_get(&w->fx->srv, &w->fx->srv.srv_closed) >= w->want;
}

/* Many transfers in a row share one connection (reused easy handles and
 * socket watchers); a pooled connection the server drops while idle is
 * noticed and replaced, with no stray events for curl. */
static void
test_reuse_and_idle_close(void **state)
{
    (void)state;
    struct fixture fx;
    fx_init(&fx);
    for (int i = 0; i < 20; i++) {
        struct client c;
        client_init(&c, &fx);
        start(&fx, &c, "POST", "/json", NULL, "{}", 2, no_timeouts);
        run_until(&fx, cond_done, &c, DEADLINE_MS);
        GW_PASS(c.err);
        assert_int_equal(c.status, 200);
        assert_int_equal(c.body.len, strlen(json_body));
        client_fini(&c);
        uv_run(&fx.loop, UV_RUN_NOWAIT); /* c's timer closes before c is reused */
    }
    assert_int_equal(srv_get(&fx.srv, &fx.srv.requests), 20);
    assert_int_equal(srv_get(&fx.srv, &fx.srv.accepted), 1);

    for (int round = 0; round < 5; round++) {
        struct client c, c2;
        struct closed_wait w = {&fx, round + 1};
        client_init(&c, &fx);
        start(&fx, &c, "POST", "/closeafter", NULL, "{}", 2, no_timeouts);
        run_until(&fx, cond_done, &c, DEADLINE_MS);
        GW_PASS(c.err);
        assert_int_equal(c.status, 200);
        run_until(&fx, cond_srv_closed, &w, DEADLINE_MS);
        /* let the FIN on the idle pooled socket be seen (odd rounds start
         * the next transfer at once instead: both orders must work) */
        if (round % 2 == 0) {
            for (int k = 0; k < 3; k++)
                uv_run(&fx.loop, UV_RUN_NOWAIT);
        }
        client_init(&c2, &fx);
        start(&fx, &c2, "POST", "/json", NULL, "{}", 2, no_timeouts);
        run_until(&fx, cond_done, &c2, DEADLINE_MS);
        GW_PASS(c2.err);
        assert_int_equal(c2.status, 200);
        assert_int_equal(c2.body.len, strlen(json_body));
        assert_int_equal(srv_get(&fx.srv, &fx.srv.accepted), 2 + round);
        client_fini(&c);
        client_fini(&c2);
        uv_run(&fx.loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(edge_upstream_active(fx.up), 0);
    fx_fini(&fx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_body_and_headers),
        cmocka_unit_test(test_stream_pause_resume),
        cmocka_unit_test(test_parallel_streams),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_first_byte_timeout),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_total_timeout),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_close_with_active),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_oversized_head),
        cmocka_unit_test(test_reuse_and_idle_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
