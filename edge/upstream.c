/* SPDX-License-Identifier: Apache-2.0 */
/* libcurl multi driven by a libuv loop. curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION -> one uv_poll per socket) and when to wake it
 * (CURLMOPT_TIMERFUNCTION -> one uv_timer); we hand readiness back with
 * curl_multi_socket_action and drain curl_multi_info_read afterwards.
 *
 * Re-entrancy: curl forbids most multi calls from inside its callbacks, and
 * user callbacks may start, resume, cancel or close anything. So every entry
 * point raises up->busy, turns requests into queued work (add, resume, reap)
 * and the outermost leave runs upstream_settle(), which performs the queued
 * work, reports finished transfers and frees only from there or from uv_close
 * callbacks, never inside a curl callback. */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw_buf.h"
#include "gw_log.h"

/* Connections per upstream host: generous, since one streamed answer holds
 * an HTTP/1.1 connection for minutes; more transfers wait for a slot. */
#define UPSTREAM_MAX_HOST_CONNS 1024L
/* Idle keep-alive connections kept for reuse across requests. */
#define UPSTREAM_MAX_CACHED_CONNS 256L
/* Reset easy handles kept for the next transfers: curl_easy_reset plus the
 * options again is much cheaper than curl_easy_init/cleanup. */
#define UPSTREAM_FREE_EASY_MAX 64

enum upstream_req_flags {
    UPSTREAM_REQ_F_ADD = 1 << 0,       /* queued: curl_multi_add_handle pending */
    UPSTREAM_REQ_F_RESUME = 1 << 1,    /* queued: curl_easy_pause(CONT) pending */
    UPSTREAM_REQ_F_REAP = 1 << 2,      /* queued: remove from multi and free */
    UPSTREAM_REQ_F_QUEUED = 1 << 3,    /* on the work queue */
    UPSTREAM_REQ_F_IN_MULTI = 1 << 4,  /* added to the multi handle */
    UPSTREAM_REQ_F_HEAD = 1 << 5,      /* on_head delivered */
    UPSTREAM_REQ_F_PAUSED = 1 << 6,    /* on_chunk asked for a pause */
    UPSTREAM_REQ_F_CANCELLED = 1 << 7, /* cancelled: no more callbacks */
    UPSTREAM_REQ_F_FINISHED = 1 << 8,  /* on_done called or about to be */
    UPSTREAM_REQ_F_HEAD_BIG = 1 << 9,  /* response head over the limits */
    UPSTREAM_REQ_F_GOT_BYTE = 1 << 10, /* first response byte arrived */
};

struct upstream_hdr {
    size_t name_off, name_len, value_off, value_len;
};

struct edge_upstream_req {
    struct edge_upstream *up;
    CURL *easy;
    struct curl_slist *headers; /* owned; must outlive easy */
    struct edge_upstream_cbs cbs;
    void *arg;
    struct edge_upstream_timeouts timeouts;
    uv_timer_t timer; /* first-byte / idle phase timer; req freed in its close cb */
    unsigned flags;
    int status;
    struct gw_buf head; /* raw header bytes of the current response */
    struct upstream_hdr hdrs[EDGE_UPSTREAM_MAX_HEADERS];
    size_t n_hdrs;
    char reqid[32];
    char host[128]; /* scheme://host:port of the url, for logs (no query) */
    char errbuf[CURL_ERROR_SIZE];
    struct edge_upstream_req *prev, *next; /* up->reqs */
    struct edge_upstream_req *work_next;   /* up->work queue */
};

/* One watched socket. Connection sockets are opened and closed through
 * our CURLOPT_OPENSOCKETFUNCTION / CLOSESOCKETFUNCTION, so their poll
 * handle lives exactly as long as the socket: while curl keeps the
 * connection idle in its pool (CURL_POLL_REMOVE) the handle stays open
 * and a reused connection needs no new handle. Other sockets curl reports
 * (the resolver's wakeup pipe) are closed by curl itself, so their handle
 * is closed on CURL_POLL_REMOVE as before. */
struct upstream_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct edge_upstream *up;
    struct upstream_sock *prev, *next;
    int events;  /* what the poll watches now (0: stopped) */
    int owned;   /* opened by upstream_opensocket_cb, closed by ..._closesocket_cb */
    int removed; /* curl does not watch it now (CURL_POLL_REMOVE) */
};

struct edge_upstream {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    unsigned busy;   /* nesting depth of entry points */
    int closing;     /* edge_upstream_close() was called */
    int torn_down;   /* multi cleaned up, handles closing */
    size_t handles;  /* open uv handles (timer, polls, req timers) */
    size_t active;   /* started, not finished or cancelled */
    struct edge_upstream_req *reqs;
    struct upstream_sock *socks;
    struct upstream_sock **by_fd; /* socket -> its watcher; NULL when none */
    size_t n_by_fd;
    struct edge_upstream_req *work_head, *work_tail;
    CURL *free_easy[UPSTREAM_FREE_EASY_MAX]; /* reset, ready for reuse */
    size_t n_free_easy;
};

static uv_once_t upstream_global_once = UV_ONCE_INIT;
static CURLcode upstream_global_rc = CURLE_FAILED_INIT;

static void
upstream_global_init(void)
{
    upstream_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void upstream_settle(struct edge_upstream *up);

static void
upstream_enter(struct edge_upstream *up)
{
    up->busy++;
}

static void
upstream_leave(struct edge_upstream *up)
{
    if (up->busy == 1)
        upstream_settle(up); /* runs with busy still 1 */
    up->busy--;
    if (up->busy == 0 && up->torn_down && up->handles == 0)
        free(up);
}

static void
upstream_handle_closed(struct edge_upstream *up)
{
    up->handles--;
    if (up->handles == 0 && up->torn_down && up->busy == 0)
        free(up);
}

static void
upstream_queue(struct edge_upstream_req *r, unsigned what)
{
    struct edge_upstream *up = r->up;
    r->flags |= what;
    if (r->flags & UPSTREAM_REQ_F_QUEUED)
        return;
    r->flags |= UPSTREAM_REQ_F_QUEUED;
    r->work_next = NULL;
    if (up->work_tail)
        up->work_tail->work_next = r;
    else
        up->work_head = r;
    up->work_tail = r;
}

/* ---- sockets and the curl timer ---------------------------------------- */

static void
upstream_sock_close_cb(uv_handle_t *h)
{
    struct upstream_sock *s = h->data;
    struct edge_upstream *up = s->up;
    free(s);
    upstream_handle_closed(up);
}

static struct upstream_sock *
upstream_sock_find(const struct edge_upstream *up, curl_socket_t fd)
{
    if (fd < 0 || (size_t)fd >= up->n_by_fd)
        return NULL;
    return up->by_fd[fd];
}

/* Creates and registers the watcher of fd; NULL when libuv refuses. */
static struct upstream_sock *
upstream_sock_new(struct edge_upstream *up, curl_socket_t fd, int owned)
{
    struct upstream_sock *s;
    int rc;

    if (fd < 0)
        return NULL;
    if ((size_t)fd >= up->n_by_fd) {
        size_t n = up->n_by_fd ? up->n_by_fd : 64;
        while (n <= (size_t)fd)
            n *= 2;
        up->by_fd = gw_xrealloc(up->by_fd, n * sizeof(*up->by_fd));
        memset(up->by_fd + up->n_by_fd, 0, (n - up->n_by_fd) * sizeof(*up->by_fd));
        up->n_by_fd = n;
    }
    s = gw_xcalloc(1, sizeof(*s));
    s->fd = fd;
    s->up = up;
    s->owned = owned;
    rc = uv_poll_init_socket(up->loop, &s->poll, fd);
    if (rc != 0) {
        gw_log(GW_LOG_ERROR, "EDGE-UPSTREAM", "uv_poll_init fd=%d: %s", (int)fd, uv_strerror(rc));
        free(s);
        return NULL;
    }
    s->poll.data = s;
    up->handles++;
    s->next = up->socks;
    if (up->socks)
        up->socks->prev = s;
    up->socks = s;
    up->by_fd[fd] = s;
    return s;
}

/* Closes the watcher; call while fd is still open (uv_close deregisters
 * it from epoll by number). */
static void
upstream_sock_close(struct upstream_sock *s)
{
    struct edge_upstream *up = s->up;
    if ((size_t)s->fd < up->n_by_fd && up->by_fd[s->fd] == s)
        up->by_fd[s->fd] = NULL;
    if (s->prev)
        s->prev->next = s->next;
    else
        up->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, upstream_sock_close_cb);
}

static void
upstream_poll_cb(uv_poll_t *h, int status, int events)
{
    struct upstream_sock *s = h->data;
    struct edge_upstream *up = s->up;
    int flags = 0;
    int running = 0;

    if (s->removed) {
        /* An idle pooled connection became readable (the server closed it
         * or sent junk): curl finds out when it tries to reuse it. */
        uv_poll_stop(&s->poll);
        s->events = 0;
        return;
    }
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    upstream_enter(up);
    curl_multi_socket_action(up->multi, s->fd, flags, &running);
    upstream_leave(up);
}

static int
upstream_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct edge_upstream *up = userp;
    struct upstream_sock *s = upstream_sock_find(up, fd);
    (void)easy;
    (void)socketp;

    if (what == CURL_POLL_REMOVE || up->torn_down) {
        /* During curl_multi_cleanup the multi is half gone: only close. */
        if (!s)
            return 0;
        if (!s->owned || up->torn_down) {
            upstream_sock_close(s);
            return 0;
        }
        /* A connection going back to curl's pool. Keep watching it for
         * reading (no epoll change now, none when it is reused for the
         * next request), just stop telling curl; anything else stops. */
        s->removed = 1;
        /* An idle pooled connection must not keep the loop alive. */
        uv_unref((uv_handle_t *)&s->poll);
        if (s->events != UV_READABLE) {
            uv_poll_stop(&s->poll);
            s->events = 0;
        }
        return 0;
    }
    if (!s) {
        s = upstream_sock_new(up, fd, 0);
        if (!s)
            return -1; /* curl fails the transfers on this socket */
    }
    if (s->removed) {
        s->removed = 0;
        uv_ref((uv_handle_t *)&s->poll);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    int rc = uv_poll_start(&s->poll, events, upstream_poll_cb);
    if (rc != 0) {
        gw_log(GW_LOG_ERROR, "EDGE-UPSTREAM", "uv_poll_start fd=%d: %s", (int)fd,
               uv_strerror(rc));
        uv_poll_stop(&s->poll);
        s->events = 0;
        return -1;
    }
    s->events = events;
    return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: connection sockets get their watcher here,
 * so it lives until upstream_closesocket_cb. */
static curl_socket_t
upstream_opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct edge_upstream *up = clientp;
    curl_socket_t fd;
    struct upstream_sock *stale;

    (void)purpose;
    fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    stale = upstream_sock_find(up, fd);
    if (stale) {
        /* Closed behind our back (cannot happen with curl's own paths):
         * the number is this new, still unregistered socket now. */
        gw_log(GW_LOG_WARN, "EDGE-UPSTREAM", "fd %d reused without a close callback", (int)fd);
        upstream_sock_close(stale);
    }
    if (!upstream_sock_new(up, fd, 1)) {
        close(fd);
        return CURL_SOCKET_BAD;
    }
    return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the watcher goes first (uv_close
 * deregisters the still-open number), then the socket. */
static int
upstream_closesocket_cb(void *clientp, curl_socket_t fd)
{
    struct edge_upstream *up = clientp;
    struct upstream_sock *s = upstream_sock_find(up, fd);

    if (s)
        upstream_sock_close(s);
    return close(fd);
}

static void
upstream_timer_cb(uv_timer_t *t)
{
    struct edge_upstream *up = t->data;
    int running = 0;
    upstream_enter(up);
    curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    upstream_leave(up);
}

static int
upstream_multi_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct edge_upstream *up = userp;
    (void)multi;
    if (up->torn_down)
        return 0;
    if (timeout_ms < 0) {
        uv_timer_stop(&up->timer);
        return 0;
    }
    /* 0 means "as soon as possible": a 0 ms uv timer runs on the next loop
     * iteration, outside this curl call, which curl requires. */
    uv_timer_start(&up->timer, upstream_timer_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- per-request phase timer ------------------------------------------- */

static void upstream_finish(struct edge_upstream_req *r, gw_err err);

static void
upstream_phase_timer_cb(uv_timer_t *t)
{
    struct edge_upstream_req *r = t->data;
    struct edge_upstream *up = r->up;
    const char *phase = (r->flags & UPSTREAM_REQ_F_GOT_BYTE) ? "idle" : "first_byte";
    if (r->flags & (UPSTREAM_REQ_F_CANCELLED | UPSTREAM_REQ_F_FINISHED))
        return;
    gw_log_req(GW_LOG_WARN, "EDGE-UPSTREAM", r->reqid[0] ? r->reqid : NULL,
               "timeout phase=%s host=%s", phase, r->host);
    upstream_enter(up);
    upstream_finish(r, GW_ETIMEDOUT);
    upstream_leave(up);
}

/* (Re)arms the first-byte or idle timer, whichever applies now. */
static void
upstream_arm_phase(struct edge_upstream_req *r)
{
    uint64_t ms = (r->flags & UPSTREAM_REQ_F_GOT_BYTE) ? r->timeouts.idle_ms
                                                       : r->timeouts.first_byte_ms;
    if (r->flags & (UPSTREAM_REQ_F_PAUSED | UPSTREAM_REQ_F_CANCELLED | UPSTREAM_REQ_F_FINISHED))
        return;
    if (ms == 0) {
        uv_timer_stop(&r->timer);
        return;
    }
    uv_timer_start(&r->timer, upstream_phase_timer_cb, ms, 0);
}

static void
upstream_got_bytes(struct edge_upstream_req *r)
{
    r->flags |= UPSTREAM_REQ_F_GOT_BYTE;
    upstream_arm_phase(r);
}

/* ---- curl header and body callbacks ------------------------------------ */

static int
upstream_dead(const struct edge_upstream_req *r)
{
    return (r->flags & (UPSTREAM_REQ_F_CANCELLED | UPSTREAM_REQ_F_FINISHED)) != 0;
}

static int
upstream_parse_status(const char *line, size_t len)
{
    /* "HTTP/1.1 200 OK" or "HTTP/2 200" */
    if (len < 5 || memcmp(line, "HTTP/", 5) != 0)
        return -1;
    size_t i = 5;
    while (i < len && line[i] != ' ')
        i++;
    while (i < len && line[i] == ' ')
        i++;
    if (i + 3 > len)
        return -1;
    int status = 0;
    for (size_t k = 0; k < 3; k++) {
        char c = line[i + k];
        if (c < '0' || c > '9')
            return -1;
        status = status * 10 + (c - '0');
    }
    return status;
}

static void
upstream_deliver_head(struct edge_upstream_req *r)
{
    struct gw_http_header hv[EDGE_UPSTREAM_MAX_HEADERS];
    for (size_t i = 0; i < r->n_hdrs; i++) {
        hv[i].name.p = r->head.data + r->hdrs[i].name_off;
        hv[i].name.len = r->hdrs[i].name_len;
        hv[i].value.p = r->head.data + r->hdrs[i].value_off;
        hv[i].value.len = r->hdrs[i].value_len;
    }
    r->flags |= UPSTREAM_REQ_F_HEAD;
    if (r->cbs.on_head)
        r->cbs.on_head(r->arg, r->status, hv, r->n_hdrs);
    gw_buf_fini(&r->head);
    r->n_hdrs = 0;
}

static size_t
upstream_header_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct edge_upstream_req *r = userp;
    size_t len = size * nmemb;

    if (upstream_dead(r))
        return 0; /* abort: nobody wants this transfer any more */
    upstream_got_bytes(r);
    if (r->flags & UPSTREAM_REQ_F_HEAD)
        return len; /* trailers: not forwarded */

    size_t n = len;
    while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r'))
        n--;
    if (n == 0) {
        /* End of one response head. 1xx heads are interim: wait for the
         * final one. */
        if (r->status < 0) {
            r->flags |= UPSTREAM_REQ_F_HEAD_BIG; /* no status line at all */
            return 0;
        }
        if (r->status >= 100 && r->status < 200) {
            r->status = -1;
            gw_buf_reset(&r->head);
            r->n_hdrs = 0;
            return len;
        }
        upstream_deliver_head(r);
        return upstream_dead(r) ? 0 : len;
    }
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        r->status = upstream_parse_status(data, n);
        gw_buf_reset(&r->head);
        r->n_hdrs = 0;
        if (r->status < 0) {
            r->flags |= UPSTREAM_REQ_F_HEAD_BIG;
            return 0;
        }
        return len;
    }
    if (r->head.len + n > EDGE_UPSTREAM_MAX_HEADER_BYTES) {
        r->flags |= UPSTREAM_REQ_F_HEAD_BIG;
        return 0;
    }
    if (data[0] == ' ' || data[0] == '\t') {
        /* obs-fold continuation: join to the previous value */
        if (r->n_hdrs == 0)
            return len;
        struct upstream_hdr *h = &r->hdrs[r->n_hdrs - 1];
        if (h->value_off + h->value_len == r->head.len) {
            size_t k = 0;
            while (k < n && (data[k] == ' ' || data[k] == '\t'))
                k++;
            gw_buf_append(&r->head, " ", 1);
            gw_buf_append(&r->head, data + k, n - k);
            h->value_len += 1 + (n - k);
        }
        return len;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon)
        return len; /* not a header line: ignore */
    if (r->n_hdrs == EDGE_UPSTREAM_MAX_HEADERS) {
        r->flags |= UPSTREAM_REQ_F_HEAD_BIG;
        return 0;
    }
    size_t name_len = (size_t)(colon - data);
    size_t v = name_len + 1;
    while (v < n && (data[v] == ' ' || data[v] == '\t'))
        v++;
    size_t vend = n;
    while (vend > v && (data[vend - 1] == ' ' || data[vend - 1] == '\t'))
        vend--;
    struct upstream_hdr *h = &r->hdrs[r->n_hdrs++];
    h->name_off = r->head.len;
    h->name_len = name_len;
    gw_buf_append(&r->head, data, name_len);
    h->value_off = r->head.len;
    h->value_len = vend - v;
    gw_buf_append(&r->head, data + v, vend - v);
    return len;
}

static size_t
upstream_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct edge_upstream_req *r = userp;
    size_t len = size * nmemb;

    if (upstream_dead(r))
        return 0;
    if (!(r->flags & UPSTREAM_REQ_F_HEAD))
        return 0; /* body before a head: not HTTP we can relay */
    if (r->flags & UPSTREAM_REQ_F_PAUSED)
        return CURL_WRITEFUNC_PAUSE; /* curl keeps these bytes for later */
    upstream_got_bytes(r);
    if (len == 0 || !r->cbs.on_chunk)
        return len;
    int rv = r->cbs.on_chunk(r->arg, data, len);
    if (upstream_dead(r))
        return 0;
    if (rv == EDGE_UPSTREAM_PAUSE) {
        r->flags |= UPSTREAM_REQ_F_PAUSED;
        uv_timer_stop(&r->timer); /* we, not the upstream, are the slow side */
    }
    return len;
}

/* ---- finishing and freeing --------------------------------------------- */

static void
upstream_req_close_cb(uv_handle_t *h)
{
    struct edge_upstream_req *r = h->data;
    struct edge_upstream *up = r->up;
    gw_buf_fini(&r->head);
    free(r);
    upstream_handle_closed(up);
}

/* Frees r now; only from upstream_settle (never inside a curl callback). */
static void
upstream_req_destroy(struct edge_upstream_req *r)
{
    struct edge_upstream *up = r->up;
    if (r->flags & UPSTREAM_REQ_F_IN_MULTI)
        curl_multi_remove_handle(up->multi, r->easy);
    r->flags &= ~(unsigned)UPSTREAM_REQ_F_IN_MULTI;
    if (!up->closing && !up->torn_down && up->n_free_easy < UPSTREAM_FREE_EASY_MAX) {
        /* Forgets every option (and our pointers into r) but keeps the
         * handle's allocations for the next transfer. */
        curl_easy_reset(r->easy);
        up->free_easy[up->n_free_easy++] = r->easy;
    } else {
        curl_easy_cleanup(r->easy);
    }
    r->easy = NULL;
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    if (r->prev)
        r->prev->next = r->next;
    else
        up->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, upstream_req_close_cb);
}

/* Marks r finished, reports err and queues the free. */
static void
upstream_finish(struct edge_upstream_req *r, gw_err err)
{
    if (upstream_dead(r))
        return;
    r->flags |= UPSTREAM_REQ_F_FINISHED;
    r->up->active--;
    uv_timer_stop(&r->timer);
    r->cbs.on_done(r->arg, err);
    upstream_queue(r, UPSTREAM_REQ_F_REAP);
}

static gw_err
upstream_map_result(struct edge_upstream_req *r, CURLcode res)
{
    const char *rid = r->reqid[0] ? r->reqid : NULL;
    if (res == CURLE_OK) {
        if (r->flags & UPSTREAM_REQ_F_HEAD)
            return GW_OK;
        gw_log_req(GW_LOG_WARN, "EDGE-UPSTREAM", rid, "no response head host=%s", r->host);
        return GW_EUPSTREAM;
    }
    if (res == CURLE_OPERATION_TIMEDOUT) {
        curl_off_t connect_us = 0;
        curl_easy_getinfo(r->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
        gw_log_req(GW_LOG_WARN, "EDGE-UPSTREAM", rid, "timeout phase=%s host=%s",
                   connect_us == 0 ? "connect" : "total", r->host);
        return GW_ETIMEDOUT;
    }
    if (r->flags & UPSTREAM_REQ_F_HEAD_BIG) {
        gw_log_req(GW_LOG_WARN, "EDGE-UPSTREAM", rid,
                   "bad or oversized response head host=%s (limits %d headers, %d bytes)",
                   r->host, EDGE_UPSTREAM_MAX_HEADERS, EDGE_UPSTREAM_MAX_HEADER_BYTES);
        return GW_EUPSTREAM;
    }
    gw_log_req(GW_LOG_WARN, "EDGE-UPSTREAM", rid, "transfer failed host=%s curl=%d %s%s%s",
               r->host, (int)res, curl_easy_strerror(res), r->errbuf[0] ? ": " : "", r->errbuf);
    return GW_EUPSTREAM;
}

static void upstream_teardown(struct edge_upstream *up);

/* The outermost leave: queued work, finished transfers, deferred close.
 * Loops because user callbacks run here may queue more work. */
static void
upstream_settle(struct edge_upstream *up)
{
    for (;;) {
        int progress = 0;
        while (up->work_head) {
            struct edge_upstream_req *r = up->work_head;
            up->work_head = r->work_next;
            if (!up->work_head)
                up->work_tail = NULL;
            r->work_next = NULL;
            unsigned what = r->flags;
            r->flags &= ~(unsigned)(UPSTREAM_REQ_F_QUEUED | UPSTREAM_REQ_F_ADD |
                                    UPSTREAM_REQ_F_RESUME);
            progress = 1;
            if (what & UPSTREAM_REQ_F_REAP) {
                upstream_req_destroy(r);
                continue;
            }
            if (what & UPSTREAM_REQ_F_ADD) {
                CURLMcode mc = curl_multi_add_handle(up->multi, r->easy);
                if (mc != CURLM_OK) {
                    gw_log_req(GW_LOG_ERROR, "EDGE-UPSTREAM", r->reqid[0] ? r->reqid : NULL,
                               "curl_multi_add_handle: %s", curl_multi_strerror(mc));
                    upstream_finish(r, GW_EUPSTREAM);
                    continue;
                }
                r->flags |= UPSTREAM_REQ_F_IN_MULTI;
            }
            if ((what & UPSTREAM_REQ_F_RESUME) && !upstream_dead(r) &&
                !(r->flags & UPSTREAM_REQ_F_PAUSED)) {
                /* May call upstream_write_cb synchronously with the bytes
                 * curl kept; on_chunk may pause again. */
                curl_easy_pause(r->easy, CURLPAUSE_CONT);
            }
        }
        if (up->multi && !up->torn_down) {
            int left = 0;
            CURLMsg *msg;
            while ((msg = curl_multi_info_read(up->multi, &left)) != NULL) {
                if (msg->msg != CURLMSG_DONE)
                    continue;
                char *priv = NULL;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
                struct edge_upstream_req *r = (struct edge_upstream_req *)(void *)priv;
                CURLcode res = msg->data.result;
                progress = 1;
                if (!r)
                    continue;
                if (upstream_dead(r)) {
                    upstream_queue(r, UPSTREAM_REQ_F_REAP);
                    continue;
                }
                upstream_finish(r, upstream_map_result(r, res));
                /* on_done may have queued work: run it before reading more
                 * messages so cancelled handles leave the multi first. */
                break;
            }
        }
        if (up->closing && !up->torn_down && !up->work_head) {
            upstream_teardown(up);
            progress = 1;
        }
        if (!progress)
            break;
    }
}

static void
upstream_timer_close_cb(uv_handle_t *h)
{
    upstream_handle_closed(h->data);
}

/* Cancels everything left and closes the handles; `up` is freed when the
 * last handle closed and no entry point is on the stack. */
static void
upstream_teardown(struct edge_upstream *up)
{
    while (up->reqs) {
        struct edge_upstream_req *r = up->reqs;
        if (!upstream_dead(r)) {
            r->flags |= UPSTREAM_REQ_F_CANCELLED;
            up->active--;
        }
        upstream_req_destroy(r); /* unlinks r from up->reqs */
    }
    up->work_head = up->work_tail = NULL;
    while (up->n_free_easy > 0)
        curl_easy_cleanup(up->free_easy[--up->n_free_easy]);
    up->torn_down = 1;
    /* Closes the cached keep-alive connections; curl reports them through
     * the socket callback, which closes their polls. */
    curl_multi_cleanup(up->multi);
    up->multi = NULL;
    while (up->socks)
        upstream_sock_close(up->socks);
    free(up->by_fd);
    up->by_fd = NULL;
    up->n_by_fd = 0;
    uv_timer_stop(&up->timer);
    uv_close((uv_handle_t *)&up->timer, upstream_timer_close_cb);
}

/* ---- public API --------------------------------------------------------- */

gw_err
edge_upstream_new(uv_loop_t *loop, struct edge_upstream **out)
{
    gw_err rv = GW_EINTERNAL;
    struct edge_upstream *up = NULL;

    *out = NULL;
    uv_once(&upstream_global_once, upstream_global_init);
    if (upstream_global_rc != CURLE_OK) {
        gw_log(GW_LOG_ERROR, "EDGE-UPSTREAM", "curl_global_init: %s",
               curl_easy_strerror(upstream_global_rc));
        goto out;
    }
    up = gw_xcalloc(1, sizeof(*up));
    up->loop = loop;
    up->multi = curl_multi_init();
    if (!up->multi)
        goto out;
    if (uv_timer_init(loop, &up->timer) != 0)
        goto out;
    up->timer.data = up;
    up->handles = 1;
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, upstream_socket_cb);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, upstream_multi_timer_cb);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS, UPSTREAM_MAX_HOST_CONNS);
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, UPSTREAM_MAX_CACHED_CONNS);
    *out = up;
    up = NULL;
    rv = GW_OK;
out:
    if (up) {
        if (up->multi)
            curl_multi_cleanup(up->multi);
        free(up);
    }
    return rv;
}

void
edge_upstream_close(struct edge_upstream *up)
{
    if (!up || up->closing)
        return;
    up->closing = 1;
    upstream_enter(up);
    upstream_leave(up); /* teardown runs in settle, or later when nested */
}

static void
upstream_copy_host(char *dst, size_t cap, const char *url)
{
    /* scheme://authority only: paths and queries may carry keys */
    const char *p = strstr(url, "://");
    size_t n = 0;
    if (p) {
        p += 3;
        n = (size_t)(p - url);
        while (p[0] && p[0] != '/' && p[0] != '?' && p[0] != '#') {
            p++;
            n++;
        }
    }
    const char *at = memchr(url, '@', n); /* never log userinfo */
    if (at) {
        size_t scheme = (size_t)(strstr(url, "://") + 3 - url);
        size_t skip = (size_t)(at + 1 - url);
        snprintf(dst, cap, "%.*s%.*s", (int)scheme, url, (int)(n - skip), at + 1);
        return;
    }
    snprintf(dst, cap, "%.*s", (int)n, url);
}

static int
upstream_has_header(const struct curl_slist *h, const char *name)
{
    size_t n = strlen(name);
    for (; h; h = h->next) {
        if (strncasecmp(h->data, name, n) == 0 && (h->data[n] == ':' || h->data[n] == ';'))
            return 1;
    }
    return 0;
}

gw_err
edge_upstream_start(struct edge_upstream *up, const struct edge_upstream_spec *spec,
                    const struct edge_upstream_cbs *cbs, void *arg,
                    struct edge_upstream_req **out)
{
    gw_err rv = GW_EINVAL;
    struct edge_upstream_req *r = NULL;
    struct curl_slist *headers = spec->headers;
    CURL *easy = NULL;
    CURLcode cc = CURLE_OK;

    if (out)
        *out = NULL;
    if (!spec->url || !spec->method || !cbs || !cbs->on_done)
        goto out;
    rv = GW_ECLOSED;
    if (up->closing)
        goto out;
    rv = GW_EINTERNAL;
    if (up->n_free_easy > 0)
        easy = up->free_easy[--up->n_free_easy];
    else
        easy = curl_easy_init();
    if (!easy)
        goto out;
    /* Never "Expect: 100-continue" (a wasted round trip); no default form
     * content type when the client sent none. */
    struct curl_slist *tmp = curl_slist_append(headers, "Expect:");
    if (!tmp)
        goto out;
    headers = tmp;
    if (!upstream_has_header(headers, "content-type")) {
        tmp = curl_slist_append(headers, "Content-Type:");
        if (!tmp)
            goto out;
        headers = tmp;
    }

    r = gw_xcalloc(1, sizeof(*r));
    r->up = up;
    r->easy = easy;
    r->cbs = *cbs;
    r->arg = arg;
    r->timeouts = spec->timeouts;
    r->status = -1;
    gw_buf_init(&r->head);
    if (spec->reqid)
        snprintf(r->reqid, sizeof(r->reqid), "%s", spec->reqid);
    upstream_copy_host(r->host, sizeof(r->host), spec->url);

    int is_post = strcmp(spec->method, "POST") == 0;
    int is_get = strcmp(spec->method, "GET") == 0;
    int is_head = strcmp(spec->method, "HEAD") == 0;

#define UPSTREAM_SET(opt, val)                                                                \
    do {                                                                                     \
        cc = curl_easy_setopt(easy, opt, val);                                               \
        if (cc != CURLE_OK)                                                                  \
            goto curl_fail;                                                                  \
    } while (0)

    UPSTREAM_SET(CURLOPT_PRIVATE, (char *)r);
    UPSTREAM_SET(CURLOPT_URL, spec->url);
    UPSTREAM_SET(CURLOPT_PROTOCOLS_STR, "http,https");
    UPSTREAM_SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    UPSTREAM_SET(CURLOPT_NOSIGNAL, 1L);
    UPSTREAM_SET(CURLOPT_TCP_NODELAY, 1L);
    UPSTREAM_SET(CURLOPT_TCP_KEEPALIVE, 1L);
    UPSTREAM_SET(CURLOPT_HTTP_CONTENT_DECODING, 0L);
    UPSTREAM_SET(CURLOPT_FOLLOWLOCATION, 0L);
    UPSTREAM_SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    UPSTREAM_SET(CURLOPT_ERRORBUFFER, r->errbuf);
    UPSTREAM_SET(CURLOPT_HEADERFUNCTION, upstream_header_cb);
    UPSTREAM_SET(CURLOPT_HEADERDATA, r);
    UPSTREAM_SET(CURLOPT_WRITEFUNCTION, upstream_write_cb);
    UPSTREAM_SET(CURLOPT_WRITEDATA, r);
    UPSTREAM_SET(CURLOPT_OPENSOCKETFUNCTION, upstream_opensocket_cb);
    UPSTREAM_SET(CURLOPT_OPENSOCKETDATA, up);
    UPSTREAM_SET(CURLOPT_CLOSESOCKETFUNCTION, upstream_closesocket_cb);
    UPSTREAM_SET(CURLOPT_CLOSESOCKETDATA, up);
    /* "" disables proxies from the environment: only configured ones apply */
    UPSTREAM_SET(CURLOPT_PROXY, spec->proxy ? spec->proxy : "");
    if (spec->timeouts.connect_ms)
        UPSTREAM_SET(CURLOPT_CONNECTTIMEOUT_MS, (long)spec->timeouts.connect_ms);
    if (spec->timeouts.total_ms)
        UPSTREAM_SET(CURLOPT_TIMEOUT_MS, (long)spec->timeouts.total_ms);
    if (spec->body || is_post) {
        /* POSTFIELDS borrows the body: byte-exact, no copy, no read callback */
        UPSTREAM_SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)spec->body_len);
        UPSTREAM_SET(CURLOPT_POSTFIELDS, spec->body ? (const char *)spec->body : "");
        if (!is_post)
            UPSTREAM_SET(CURLOPT_CUSTOMREQUEST, spec->method);
    } else if (is_get) {
        UPSTREAM_SET(CURLOPT_HTTPGET, 1L);
    } else if (is_head) {
        UPSTREAM_SET(CURLOPT_NOBODY, 1L);
    } else {
        UPSTREAM_SET(CURLOPT_CUSTOMREQUEST, spec->method);
    }
    UPSTREAM_SET(CURLOPT_HTTPHEADER, headers);
#undef UPSTREAM_SET

    if (uv_timer_init(up->loop, &r->timer) != 0)
        goto out;
    r->timer.data = r;
    up->handles++;
    r->headers = headers;
    headers = NULL;
    r->next = up->reqs;
    if (up->reqs)
        up->reqs->prev = r;
    up->reqs = r;
    up->active++;
    upstream_arm_phase(r);

    upstream_enter(up);
    upstream_queue(r, UPSTREAM_REQ_F_ADD);
    if (out)
        *out = r;
    r = NULL;
    easy = NULL;
    rv = GW_OK;
    upstream_leave(up);
    return rv;

curl_fail:
    gw_log(GW_LOG_ERROR, "EDGE-UPSTREAM", "curl_easy_setopt: %s", curl_easy_strerror(cc));
out:
    if (easy)
        curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    if (r) {
        gw_buf_fini(&r->head);
        free(r);
    }
    return rv;
}

void
edge_upstream_resume(struct edge_upstream_req *r)
{
    if (!(r->flags & UPSTREAM_REQ_F_PAUSED) || upstream_dead(r))
        return;
    struct edge_upstream *up = r->up;
    r->flags &= ~(unsigned)UPSTREAM_REQ_F_PAUSED;
    upstream_arm_phase(r);
    upstream_enter(up);
    upstream_queue(r, UPSTREAM_REQ_F_RESUME);
    upstream_leave(up);
}

int
edge_upstream_paused(const struct edge_upstream_req *r)
{
    return (r->flags & UPSTREAM_REQ_F_PAUSED) != 0;
}

void
edge_upstream_cancel(struct edge_upstream_req *r)
{
    struct edge_upstream *up = r->up;
    if (upstream_dead(r))
        return;
    r->flags |= UPSTREAM_REQ_F_CANCELLED;
    up->active--;
    uv_timer_stop(&r->timer);
    upstream_enter(up);
    upstream_queue(r, UPSTREAM_REQ_F_REAP);
    upstream_leave(up);
}

void
edge_upstream_set_conn_limits(struct edge_upstream *up, long max_host_conns,
                              long max_cached_conns)
{
    if (up->torn_down)
        return;
    curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      max_host_conns > 0 ? max_host_conns : 0L);
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS,
                      max_cached_conns > 0 ? max_cached_conns : UPSTREAM_MAX_CACHED_CONNS);
}

size_t
edge_upstream_active(const struct edge_upstream *up)
{
    return up->active;
}
