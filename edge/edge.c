/* SPDX-License-Identifier: Apache-2.0 */
/* The edge's lifecycle: N worker threads, each with its own libuv loop,
 * HTTP(S) server on the shared port (SO_REUSEPORT), upstream client (curl
 * multi) and metrics shard, around the shared router, quota and hub link;
 * the snapshot handoff from the hub link thread to every worker; the
 * lifecycle endpoints (/healthz, /readyz, /metrics); start, graceful drain
 * and stop. Every API request goes to the request pipeline (edge_req.c)
 * with its worker's edge_req_env. */
#include "edge.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "edge_req.h"
#include "gw_crypto.h"
#include "gw_http.h"
#include "gw_log.h"
#include "gw_tls.h"
#include "hublink.h"
#include "metrics.h"
#include "quota.h"
#include "route.h"
#include "snapshot.h"
#include "upstream.h"

#define EDGE_MAX_AUTO_WORKERS 16
/* While draining, how often a worker checks for requests still in progress. */
#define EDGE_DRAIN_POLL_MS 20

struct edge;

struct edge_worker {
    struct edge *e;
    unsigned index;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t async;       /* snapshot handoff, drain and stop, from other threads */
    uv_timer_t drain_timer; /* drain progress and deadline */
    struct gw_http_server *srv;
    struct edge_upstream *up;
    struct edge_req_env env;        /* this worker's pipeline environment */
    struct edge_req_counters stats; /* this worker's counters (summed by edge_get_stats) */
    struct edge_metrics_shard *shard;
    struct edge_snapshot *snap; /* current snapshot; loop thread only */
    char rid_prefix[24];
    int loop_inited, thread_started;
    int draining, shutting_down; /* loop thread only */
    uint64_t drain_deadline;     /* loop time */
    /* Version of snap, published for /readyz and stats on any worker. */
    atomic_uint_fast64_t snap_version;

    uv_mutex_t mu; /* guards the handoff fields below */
    struct edge_snapshot *incoming;
    int drain_requested;
    int stop_requested;
    int async_closed; /* uv_async_send is no longer allowed */
};

struct edge {
    const struct edge_config *cfg; /* borrowed */
    struct edge_route *route;      /* shared by the workers (thread-safe) */
    struct edge_quota *quota;      /* per-key limits, shared (thread-safe) */
    struct edge_hublink *link;
    struct edge_metrics *metrics;
    struct gw_tls_ctx *tls; /* NULL: plain HTTP */
    struct edge_worker *workers;
    size_t n_workers;
    char rid_prefix[12];
    int started, stopped;
    int bound_port;
};

static uint64_t
edge_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The snapshot version every worker has (0 while one has none). */
static uint64_t
edge_common_version(const struct edge *e)
{
    uint64_t min = UINT64_MAX;

    for (size_t i = 0; i < e->n_workers; i++) {
        uint64_t v = atomic_load_explicit(&e->workers[i].snap_version, memory_order_relaxed);
        if (v < min)
            min = v;
    }
    return e->n_workers > 0 ? min : 0;
}

/* ------------------------------------------------------------ lifecycle endpoints */

static void
edge_respond_json(struct gw_http_req *hreq, int status, const char *json)
{
    gw_http_respond(hreq, status, "application/json", json, strlen(json));
}

static void
edge_serve_metrics(struct edge_worker *w, struct gw_http_req *hreq)
{
    struct edge *e = w->e;
    struct edge_metrics_gauges g;
    struct edge_hublink_stats hs;
    struct edge_route_stats rs;
    struct gw_buf out = GW_BUF_INIT;

    memset(&g, 0, sizeof(g));
    edge_hublink_get_stats(e->link, &hs);
    edge_route_get_stats(e->route, edge_wall_ms(), &rs);
    g.snapshot_version = edge_common_version(e);
    g.usage_queue_depth = hs.queued;
    g.usage_records_dropped = hs.records_dropped;
    g.cooldowns_active = rs.cooling;
    g.failing_accounts = rs.failing;
    g.upstream_in_flight = rs.in_flight;
    for (size_t i = 0; i < e->n_workers; i++)
        g.in_flight_requests +=
            atomic_load_explicit(&e->workers[i].stats.active, memory_order_relaxed);
    g.workers = e->n_workers;
    gw_buf_reserve(&out, 16384);
    edge_metrics_render(e->metrics, &g, &out);
    gw_http_respond(hreq, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    gw_buf_fini(&out);
}

static void
edge_on_request(struct gw_http_req *hreq, void *arg)
{
    struct edge_worker *w = arg;

    if (gw_str_eq(hreq->path, "/healthz")) {
        edge_respond_json(hreq, 200, "{\"status\":\"ok\"}");
        return;
    }
    if (gw_str_eq(hreq->path, "/readyz")) {
        uint64_t v = edge_common_version(w->e);
        struct edge_hublink_stats hs;
        char body[128];
        /* Ready = every worker has a snapshot, and none is draining: a
         * load balancer should stop sending new requests here. */
        if (w->draining) {
            edge_respond_json(hreq, 503, "{\"ready\":false,\"draining\":true}");
            return;
        }
        if (v == 0 || w->snap == NULL) {
            edge_respond_json(hreq, 503, "{\"ready\":false}");
            return;
        }
        /* "disk": served from the local copy until the hub answers. */
        edge_hublink_get_stats(w->e->link, &hs);
        snprintf(body, sizeof(body),
                 "{\"ready\":true,\"snapshot_version\":%" PRIu64 ",\"snapshot_source\":\"%s\"}", v,
                 hs.snapshot_source == EDGE_SNAPSHOT_DISK ? "disk" : "hub");
        edge_respond_json(hreq, 200, body);
        return;
    }
    if (gw_str_eq(hreq->path, "/metrics") &&
        (strcmp(hreq->method, "GET") == 0 || strcmp(hreq->method, "HEAD") == 0)) {
        edge_serve_metrics(w, hreq);
        return;
    }
    edge_req_handle(&w->env, hreq);
}

/* ------------------------------------------------------------ worker loop: handoff, drain, stop */

static void
edge_handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* Last step of a worker's shutdown on its loop thread: nothing may use
 * the handles after this; uv_run returns once they are closed. */
static void
edge_worker_close_handles(struct edge_worker *w)
{
    edge_req_env_close(&w->env);
    edge_upstream_close(w->up);
    w->env.up = NULL;
    w->up = NULL;
    uv_mutex_lock(&w->mu);
    w->async_closed = 1;
    uv_mutex_unlock(&w->mu);
    uv_close((uv_handle_t *)&w->async, edge_handle_closed);
    uv_close((uv_handle_t *)&w->drain_timer, edge_handle_closed);
    edge_snapshot_unref(w->snap);
    w->snap = NULL;
    w->env.snap = NULL;
}

static void
edge_worker_server_closed(void *arg)
{
    struct edge_worker *w = arg;

    w->srv = NULL;
    edge_worker_close_handles(w);
}

/* Closes the server: requests still in progress are aborted (their usage
 * is billed as partial), then every handle of the loop. */
static void
edge_worker_shutdown(struct edge_worker *w)
{
    if (w->shutting_down)
        return;
    w->shutting_down = 1;
    w->env.shutting_down = 1;
    uv_timer_stop(&w->drain_timer);
    if (w->srv)
        gw_http_server_close(w->srv, edge_worker_server_closed, w);
    else
        edge_worker_close_handles(w);
}

static void
edge_worker_drain_tick(uv_timer_t *t)
{
    struct edge_worker *w = t->data;
    size_t active = w->srv ? gw_http_server_active_requests(w->srv) : 0;

    if (active == 0) {
        edge_worker_shutdown(w);
        return;
    }
    if (uv_now(&w->loop) >= w->drain_deadline) {
        gw_log(GW_LOG_WARN, "EDGE-DRAIN",
               "worker %u: %zu requests still in progress after %" PRId64
               " ms; aborting them (billed as partial)",
               w->index, active, w->e->cfg->drain_timeout_ms);
        edge_worker_shutdown(w);
    }
}

/* Stops accepting and lets requests in progress finish, up to the drain
 * timeout; then shuts the worker down. */
static void
edge_worker_drain(struct edge_worker *w)
{
    int64_t timeout = w->e->cfg->drain_timeout_ms;

    if (w->draining || w->shutting_down)
        return;
    w->draining = 1;
    if (w->srv == NULL || timeout <= 0) {
        edge_worker_shutdown(w);
        return;
    }
    gw_http_server_stop_accepting(w->srv);
    w->drain_deadline = uv_now(&w->loop) + (uint64_t)timeout;
    if (gw_http_server_active_requests(w->srv) > 0)
        gw_log(GW_LOG_INFO, "EDGE-DRAIN", "worker %u: draining %zu requests in progress", w->index,
               gw_http_server_active_requests(w->srv));
    edge_worker_drain_tick(&w->drain_timer);
    if (!w->shutting_down)
        uv_timer_start(&w->drain_timer, edge_worker_drain_tick, EDGE_DRAIN_POLL_MS,
                       EDGE_DRAIN_POLL_MS);
}

static void
edge_worker_async_cb(uv_async_t *async)
{
    struct edge_worker *w = async->data;
    struct edge_snapshot *snap;
    int drain, stop;

    /* libuv coalesces sends: take everything that is waiting. */
    uv_mutex_lock(&w->mu);
    snap = w->incoming;
    w->incoming = NULL;
    drain = w->drain_requested;
    stop = w->stop_requested;
    uv_mutex_unlock(&w->mu);
    if (snap && !w->shutting_down) {
        struct edge_snapshot *old = w->snap;

        w->snap = snap;
        w->env.snap = snap;
        atomic_store_explicit(&w->snap_version, edge_snapshot_version(snap), memory_order_relaxed);
        edge_snapshot_unref(old);
        snap = NULL;
    }
    edge_snapshot_unref(snap);
    if (stop)
        edge_worker_shutdown(w);
    else if (drain)
        edge_worker_drain(w);
}

/* Hub link thread: give every worker its own reference and wake it; then
 * let the shared router and quota forget what the snapshot dropped. */
static void
edge_on_snapshot(void *arg, struct edge_snapshot *snap)
{
    struct edge *e = arg;

    for (size_t i = 0; i < e->n_workers; i++) {
        struct edge_worker *w = &e->workers[i];
        struct edge_snapshot *old;

        uv_mutex_lock(&w->mu);
        if (w->async_closed || w->stop_requested) {
            old = NULL;
        } else {
            old = w->incoming;
            w->incoming = edge_snapshot_ref(snap);
            uv_async_send(&w->async);
        }
        uv_mutex_unlock(&w->mu);
        edge_snapshot_unref(old);
    }
    edge_route_prune(e->route, snap);
    edge_quota_prune(e->quota, snap);
    edge_snapshot_unref(snap);
}

static void
edge_worker_thread(void *arg)
{
    struct edge_worker *w = arg;
    int rc;

    uv_run(&w->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&w->loop);
    if (rc != 0)
        gw_log(GW_LOG_ERROR, "EDGE-LOOP", "worker %u: loop closed with handles left: %s", w->index,
               uv_strerror(rc));
}

/* ------------------------------------------------------------ public API */

/* Heartbeat counters: requests handled, and upstream attempts that failed
 * over plus clients that left early as the error count. */
static void
edge_link_counters(void *arg, uint64_t *requests_total, uint64_t *errors_total)
{
    struct edge_stats st;

    edge_get_stats(arg, &st);
    *requests_total = st.requests;
    *errors_total = st.upstream_retries + st.client_aborts;
}

gw_err
edge_new(const struct edge_config *cfg, struct edge **out)
{
    struct edge *e;
    uint8_t rnd[4];
    gw_err rv;

    *out = NULL;
    if (cfg == NULL || cfg->listen == NULL || cfg->listen[0] == '\0')
        return GW_EINVAL;
    e = gw_xcalloc(1, sizeof(*e));
    e->cfg = cfg;
    e->route = edge_route_new();
    e->quota = edge_quota_new();
    rv = edge_hublink_new(cfg, edge_on_snapshot, e, &e->link);
    if (rv != GW_OK) {
        edge_route_free(e->route);
        edge_quota_free(e->quota);
        free(e);
        return rv;
    }
    edge_hublink_set_counters(e->link, edge_link_counters, e);
    /* Request ids: a random per-process prefix, the worker and a counter,
     * so ids from restarts and from other edges do not collide in the
     * usage log. */
    if (gw_random_bytes(rnd, sizeof(rnd)) != GW_OK)
        memset(rnd, 0, sizeof(rnd));
    gw_hex_encode(rnd, sizeof(rnd), e->rid_prefix);
    *out = e;
    return GW_OK;
}

static void edge_errf(struct gw_buf *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
edge_errf(struct gw_buf *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    gw_buf_vappendf(err, fmt, ap);
    va_end(ap);
}

static size_t
edge_worker_count(const struct edge_config *cfg)
{
    unsigned n;

    if (cfg->workers > 0)
        return (size_t)cfg->workers;
    n = uv_available_parallelism();
    if (n > EDGE_MAX_AUTO_WORKERS)
        n = EDGE_MAX_AUTO_WORKERS;
    return n > 0 ? n : 1;
}

/* Sets up worker i on the calling thread: loop, handles, upstream, HTTP
 * server bound to `listen`. The loop does not run yet. */
static gw_err
edge_worker_init(struct edge *e, struct edge_worker *w, const char *listen, int reuseport,
                 struct gw_buf *err)
{
    const struct edge_config *cfg = e->cfg;
    struct gw_http_limits limits;
    int port = 0;
    gw_err rv;
    int rc;

    rc = uv_loop_init(&w->loop);
    if (rc != 0) {
        edge_errf(err, "cannot create the event loop: %s", uv_strerror(rc));
        return GW_EINTERNAL;
    }
    w->loop_inited = 1;
    uv_async_init(&w->loop, &w->async, edge_worker_async_cb);
    w->async.data = w;
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;

    w->env.loop = &w->loop;
    w->env.cfg = cfg;
    w->env.route = e->route;
    w->env.quota = e->quota;
    w->env.link = e->link;
    w->env.stats = &w->stats;
    w->env.metrics = w->shard;
    snprintf(w->rid_prefix, sizeof(w->rid_prefix), "%s-%u", e->rid_prefix, w->index);
    edge_req_env_init(&w->env, &w->loop, w->rid_prefix);
    rv = edge_upstream_new(&w->loop, &w->up);
    if (rv != GW_OK) {
        edge_errf(err, "cannot create the upstream client: %s", gw_strerror(rv));
        return rv;
    }
    w->env.up = w->up;
    gw_http_limits_default(&limits);
    limits.max_header_bytes = (size_t)cfg->max_header_bytes;
    limits.max_headers = (size_t)cfg->max_headers;
    limits.max_body_bytes = (size_t)cfg->max_body_bytes;
    /* The connection limit is per edge: split it over the workers. */
    limits.max_connections = (size_t)cfg->max_connections / e->n_workers;
    if (limits.max_connections == 0)
        limits.max_connections = 1;
    limits.read_timeout_ms = (uint64_t)cfg->read_timeout_ms;
    limits.idle_timeout_ms = (uint64_t)cfg->idle_timeout_ms;
    limits.write_timeout_ms = (uint64_t)cfg->client_write_timeout_ms;
    if (cfg->write_high_water > 0)
        limits.write_high_water = (size_t)cfg->write_high_water;
    rv = gw_http_server_new(&w->loop, &limits, edge_on_request, w, &w->srv);
    if (rv != GW_OK) {
        edge_errf(err, "cannot create the HTTP server: %s", gw_strerror(rv));
        return rv;
    }
    gw_http_server_set_error_body(w->srv, edge_req_server_error_body, NULL);
    gw_http_server_set_conn_gauge(w->srv, edge_metrics_conn_gauge(w->shard));
    rv = gw_http_server_listen_tls(w->srv, listen, reuseport, e->tls, &port);
    if (rv != GW_OK) {
        edge_errf(err, "cannot listen on %s: %s", listen, gw_strerror(rv));
        return rv;
    }
    if (e->bound_port == 0)
        e->bound_port = port;
    return GW_OK;
}

/* Closes a worker whose loop never ran, on the calling thread. */
static void
edge_worker_abandon(struct edge_worker *w)
{
    if (!w->loop_inited)
        return;
    edge_worker_shutdown(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&w->loop);
    w->loop_inited = 0;
}

gw_err
edge_start(struct edge *e, struct gw_buf *err)
{
    const struct edge_config *cfg = e->cfg;
    const char *colon;
    size_t host_len;
    char listen[300];
    gw_err rv = GW_OK;
    size_t i;
    int rc;

    if (e->started)
        return GW_EINVAL;
    e->started = 1;
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        edge_errf(err, "tls-cert and tls-key must be set together");
        e->stopped = 1;
        return GW_EINVAL;
    }
    if (cfg->tls_cert != NULL) {
        rv = gw_tls_ctx_new(cfg->tls_cert, cfg->tls_key, &e->tls, err);
        if (rv != GW_OK) {
            e->stopped = 1;
            return rv;
        }
    }
    e->n_workers = edge_worker_count(cfg);
    e->metrics = edge_metrics_new(e->n_workers);
    e->workers = gw_xcalloc(e->n_workers, sizeof(*e->workers));
    for (i = 0; i < e->n_workers; i++) {
        struct edge_worker *w = &e->workers[i];
        w->e = e;
        w->index = (unsigned)i;
        w->shard = edge_metrics_shard(e->metrics, i);
        atomic_init(&w->snap_version, 0);
        uv_mutex_init(&w->mu);
    }

    /* The first worker binds (port 0: the OS picks one); the others bind
     * the same port, which SO_REUSEPORT lets them share. SO_REUSEPORT
     * would also share a port another process holds with it: a fixed port
     * must be free first. */
    if (e->n_workers > 1) {
        rv = gw_http_listen_probe(cfg->listen);
        if (rv != GW_OK) {
            edge_errf(err, "cannot listen on %s: %s", cfg->listen, gw_strerror(rv));
            goto fail;
        }
    }
    colon = strrchr(cfg->listen, ':');
    host_len = colon ? (size_t)(colon - cfg->listen) : strlen(cfg->listen);
    for (i = 0; i < e->n_workers; i++) {
        const char *addr = cfg->listen;
        if (i > 0) {
            snprintf(listen, sizeof(listen), "%.*s:%d", (int)host_len, cfg->listen, e->bound_port);
            addr = listen;
        }
        rv = edge_worker_init(e, &e->workers[i], addr, e->n_workers > 1, err);
        if (rv != GW_OK)
            goto fail;
    }
    for (i = 0; i < e->n_workers; i++) {
        struct edge_worker *w = &e->workers[i];
        rc = uv_thread_create(&w->thread, edge_worker_thread, w);
        if (rc != 0) {
            edge_errf(err, "cannot start worker thread %zu: %s", i, uv_strerror(rc));
            edge_stop(e);
            return GW_EINTERNAL;
        }
        w->thread_started = 1;
    }
    gw_log(GW_LOG_INFO, "EDGE-LISTEN", "edge listening on %.*s:%d (%s, %zu worker%s)",
           (int)host_len, cfg->listen, e->bound_port, e->tls ? "HTTPS" : "HTTP", e->n_workers,
           e->n_workers == 1 ? "" : "s");
    rv = edge_hublink_start(e->link);
    if (rv != GW_OK) {
        edge_errf(err, "cannot start the hub link to %s: %s", cfg->hub, gw_strerror(rv));
        edge_stop(e);
        return rv;
    }
    return GW_OK;

fail:
    /* No loop runs yet: close everything on this thread. */
    e->bound_port = 0;
    for (i = 0; i < e->n_workers; i++)
        edge_worker_abandon(&e->workers[i]);
    e->stopped = 1;
    return rv;
}

int
edge_bound_port(const struct edge *e)
{
    return e->bound_port;
}

void
edge_get_stats(const struct edge *e, struct edge_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < e->n_workers; i++) {
        /* Loads only; the atomics are logically const here. */
        struct edge_req_counters *s = (struct edge_req_counters *)(uintptr_t)&e->workers[i].stats;

        out->requests += atomic_load_explicit(&s->requests, memory_order_relaxed);
        out->upstream_started += atomic_load_explicit(&s->upstream_started, memory_order_relaxed);
        out->upstream_retries += atomic_load_explicit(&s->upstream_retries, memory_order_relaxed);
        out->upstream_pauses += atomic_load_explicit(&s->upstream_pauses, memory_order_relaxed);
        out->client_aborts += atomic_load_explicit(&s->client_aborts, memory_order_relaxed);
        out->usage_records += atomic_load_explicit(&s->usage_records, memory_order_relaxed);
        out->active += atomic_load_explicit(&s->active, memory_order_relaxed);
    }
    out->snapshot_version = edge_common_version(e);
}

void
edge_stop(struct edge *e)
{
    size_t i;

    if (e->stopped)
        return;
    e->stopped = 1;
    /* Every worker stops accepting at once, then finishes what it has. */
    for (i = 0; i < e->n_workers; i++) {
        struct edge_worker *w = &e->workers[i];
        if (!w->thread_started)
            continue;
        uv_mutex_lock(&w->mu);
        w->drain_requested = 1;
        if (!w->async_closed)
            uv_async_send(&w->async);
        uv_mutex_unlock(&w->mu);
    }
    for (i = 0; i < e->n_workers; i++) {
        struct edge_worker *w = &e->workers[i];
        if (w->thread_started) {
            uv_thread_join(&w->thread);
            w->thread_started = 0;
        } else {
            edge_worker_abandon(w);
        }
    }
    /* The loops are gone, so every usage record is queued: flush and join. */
    edge_hublink_stop(e->link);
    gw_log(GW_LOG_INFO, "EDGE-STOP", "edge stopped");
}

void
edge_free(struct edge *e)
{
    if (e == NULL)
        return;
    edge_stop(e);
    /* The link thread is joined: no snapshot handoff can start now. */
    edge_hublink_free(e->link);
    for (size_t i = 0; i < e->n_workers; i++) {
        struct edge_worker *w = &e->workers[i];
        edge_snapshot_unref(w->incoming);
        edge_snapshot_unref(w->snap);
        uv_mutex_destroy(&w->mu);
    }
    free(e->workers);
    edge_route_free(e->route);
    edge_quota_free(e->quota);
    edge_metrics_free(e->metrics);
    gw_tls_ctx_unref(e->tls);
    free(e);
}
