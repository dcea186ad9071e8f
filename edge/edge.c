/* SPDX-License-Identifier: Apache-2.0 */
/* The edge's request pipeline on one libuv loop thread: HTTP server ->
 * API by path suffix -> gateway key check against the snapshot -> body scan
 * -> route -> upstream transfer with the account's credential -> relay with
 * backpressure while metering usage -> usage record to the hub link. Each
 * request is a struct edge_req with an explicit state; every failure goes
 * through one idempotent path, and the struct is freed from a loop-level
 * reap step once both the HTTP side and the upstream side are finished. */
#include "edge.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "gw_crypto.h"
#include "gw_http.h"
#include "gw_log.h"
#include "hublink.h"
#include "provider_anthropic.h"
#include "route.h"
#include "snapshot.h"
#include "sse.h"
#include "upstream.h"

#define EDGE_MAX_CANDIDATES 8
#define EDGE_URL_MAX 4096
#define EDGE_RELAY_NAME_MAX 128
#define EDGE_RELAY_VALUE_MAX 1024

struct edge {
    const struct edge_config *cfg; /* borrowed */
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t async; /* snapshot handoff and stop, from other threads */
    uv_idle_t reaper; /* frees finished requests outside their callbacks */
    struct gw_http_server *srv;
    struct edge_upstream *up;
    struct edge_route *route;
    struct edge_hublink *link;
    struct edge_snapshot *snap; /* current snapshot; loop thread only */
    struct edge_req *reap_head;
    int shutting_down; /* loop thread only */
    char rid_prefix[12];
    uint64_t rid_counter;
    int loop_inited, thread_started, stopped;
    int bound_port;

    /* Counters read by edge_get_stats() from any thread. */
    atomic_uint_fast64_t n_requests, n_upstream, n_pauses, n_aborts, n_usage, n_active,
        snap_version;

    uv_mutex_t mu; /* guards the handoff fields below */
    struct edge_snapshot *incoming;
    int stop_requested;
    int async_closed; /* uv_async_send is no longer allowed */
};

enum edge_api {
    EDGE_API_MESSAGES,
    EDGE_API_COUNT_TOKENS,
};

enum edge_req_state {
    EDGE_REQ_AUTH,             /* key, body, route: synchronous checks */
    EDGE_REQ_UPSTREAM_CONNECT, /* transfer started, no response head yet */
    EDGE_REQ_STREAMING,        /* head relayed to the client, body flowing */
    EDGE_REQ_DONE,             /* both sides finished, waiting to be reaped */
};

enum edge_req_flags {
    EDGE_REQ_F_HTTP_DONE = 1 << 0,   /* the gw_http request was finished */
    EDGE_REQ_F_HEAD_SENT = 1 << 1,   /* gw_http_start succeeded */
    EDGE_REQ_F_PAUSED = 1 << 2,      /* upstream paused until the client drains */
    EDGE_REQ_F_PARTIAL = 1 << 3,     /* response cut short: billed from what was seen */
    EDGE_REQ_F_SSE = 1 << 4,         /* upstream answered text/event-stream */
    EDGE_REQ_F_METER_OFF = 1 << 5,   /* metering gave up (oversize event or body) */
    EDGE_REQ_F_BILLABLE = 1 << 6,    /* produces a usage record (not count_tokens) */
    EDGE_REQ_F_REACHED = 1 << 7,     /* the provider answered with a status */
    EDGE_REQ_F_CLIENT_GONE = 1 << 8, /* the client disconnected */
};

struct edge_req {
    struct edge *e;
    struct edge_req *reap_next;
    struct gw_http_req *hreq;       /* NULL once the HTTP side is finished */
    struct edge_upstream_req *ureq; /* NULL once done or cancelled */
    struct edge_snapshot *snap;     /* reference held for key/account pointers */
    const struct edge_key *key;
    const struct edge_account *account;
    enum edge_req_state state;
    unsigned flags;
    enum edge_api api;
    int upstream_status;
    int client_status;
    struct edge_anthropic_request areq;
    struct edge_usage usage;
    struct edge_sse sse;
    struct gw_buf body_copy; /* bounded copy of a JSON response, for metering */
    uint64_t start_ns;
    int64_t time_ms;
    uint64_t bytes_out;
    const char *method;
    const char *note; /* short reason for the access log, static */
    char path[256];
    char rid[48];
};

/* ------------------------------------------------------------ helpers */

static uint64_t
edge_now_ms_wall(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int
edge_str_ends_with(struct gw_str s, const char *suffix, size_t *pos)
{
    size_t n = strlen(suffix);

    if (s.len < n || memcmp(s.p + s.len - n, suffix, n) != 0)
        return 0;
    *pos = s.len - n;
    return 1;
}

static int
edge_str_starts_case(struct gw_str s, const char *prefix)
{
    size_t n = strlen(prefix);

    return s.len >= n && strncasecmp(s.p, prefix, n) == 0;
}

static struct gw_str
edge_str_trim(struct gw_str s)
{
    while (s.len > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

/* Sends an Anthropic-format error and finishes the HTTP request. */
static void
edge_respond_error(struct gw_http_req *hreq, const char *rid, int status, gw_err err,
                   const char *message)
{
    struct gw_buf body = GW_BUF_INIT;

    edge_anthropic_error_body(err, message, &body);
    if (rid)
        gw_http_add_header(hreq, "x-aicarpool-request-id", rid);
    gw_http_respond(hreq, status, "application/json", body.data, body.len);
    gw_buf_fini(&body);
}

/* Errors the HTTP server answers by itself (oversized body or headers,
 * malformed request, read timeout) in the client's dialect. */
static void
edge_server_error_body(int status, const char *message, struct gw_str path, struct gw_buf *out,
                       void *arg)
{
    gw_err err;

    (void)path;
    (void)arg;
    switch (status) {
    case 413:
    case 431:
        err = GW_EMSGSIZE;
        break;
    case 408:
        err = GW_ETIMEDOUT;
        break;
    case 503:
        err = GW_ENOACCOUNT;
        break;
    default:
        err = GW_EINVAL;
        break;
    }
    edge_anthropic_error_body(err, message, out);
}

static void
edge_respond_json(struct gw_http_req *hreq, int status, const char *json)
{
    gw_http_respond(hreq, status, "application/json", json, strlen(json));
}

/* ------------------------------------------------------------ lifecycle of a request */

static void
edge_reaper_cb(uv_idle_t *idle)
{
    struct edge *e = idle->data;
    struct edge_req *list = e->reap_head;

    e->reap_head = NULL;
    uv_idle_stop(idle);
    while (list) {
        struct edge_req *next = list->reap_next;

        edge_snapshot_unref(list->snap);
        edge_sse_fini(&list->sse);
        gw_buf_fini(&list->body_copy);
        free(list);
        atomic_fetch_sub_explicit(&e->n_active, 1, memory_order_relaxed);
        list = next;
    }
}

static void
edge_req_log_access(const struct edge_req *req, uint32_t latency_ms)
{
    const struct edge_usage *u = &req->usage;

    gw_log_req(
        GW_LOG_INFO, "EDGE-ACCESS", req->rid,
        "%s %s %d model=%s account=%" PRIu64 " key=%" PRIu64 " in=%" PRIu64 " out=%" PRIu64
        " cache_read=%" PRIu64 " cache_write=%" PRIu64 " latency_ms=%u bytes=%" PRIu64 "%s%s%s",
        req->method, req->path, req->client_status, req->areq.model[0] ? req->areq.model : "-",
        req->account ? req->account->id : 0, req->key ? req->key->id : 0, u->input_tokens,
        u->output_tokens, u->cache_read_tokens, u->cache_write_5m_tokens + u->cache_write_1h_tokens,
        latency_ms, req->bytes_out, (req->flags & EDGE_REQ_F_PARTIAL) ? " partial" : "",
        req->note ? " note=" : "", req->note ? req->note : "");
}

static void
edge_req_push_usage(struct edge_req *req, uint32_t latency_ms)
{
    struct gw_usage_record rec;
    const struct edge_usage *u = &req->usage;
    gw_err rv;

    memset(&rec, 0, sizeof(rec));
    snprintf(rec.request_id, sizeof(rec.request_id), "%s", req->rid);
    rec.key_id = req->key ? req->key->id : 0;
    rec.account_id = req->account ? req->account->id : 0;
    snprintf(rec.model, sizeof(rec.model), "%s", req->areq.model);
    snprintf(rec.dialect, sizeof(rec.dialect), "anthropic");
    rec.input_tokens = u->input_tokens;
    rec.output_tokens = u->output_tokens;
    rec.cache_read_tokens = u->cache_read_tokens;
    rec.cache_write_5m_tokens = u->cache_write_5m_tokens;
    rec.cache_write_1h_tokens = u->cache_write_1h_tokens;
    rec.reasoning_tokens = u->reasoning_tokens;
    rec.status = (uint32_t)req->upstream_status;
    rec.latency_ms = latency_ms;
    rec.time_ms = req->time_ms;
    rec.partial = (req->flags & EDGE_REQ_F_PARTIAL) ? 1 : 0;
    rv = edge_hublink_push_usage(req->e->link, &rec);
    if (rv == GW_OK)
        atomic_fetch_add_explicit(&req->e->n_usage, 1, memory_order_relaxed);
    if (rv != GW_OK)
        gw_log_req(GW_LOG_ERROR, "EDGE-USAGE-DROP", req->rid, "usage record not queued: %s",
                   gw_strerror(rv));
}

/* Runs once when both sides are finished: settle, log, schedule the free. */
static void
edge_req_maybe_complete(struct edge_req *req)
{
    struct edge *e = req->e;
    uint32_t latency_ms;

    if (req->state == EDGE_REQ_DONE || !(req->flags & EDGE_REQ_F_HTTP_DONE) || req->ureq != NULL)
        return;
    req->state = EDGE_REQ_DONE;
    latency_ms = (uint32_t)((uv_hrtime() - req->start_ns) / 1000000u);
    /* Only requests a provider answered are metered; count_tokens is free. */
    if ((req->flags & EDGE_REQ_F_REACHED) && (req->flags & EDGE_REQ_F_BILLABLE))
        edge_req_push_usage(req, latency_ms);
    edge_req_log_access(req, latency_ms);
    req->reap_next = e->reap_head;
    e->reap_head = req;
    uv_idle_start(&e->reaper, edge_reaper_cb);
}

/* The single failure path; idempotent. Cancels the upstream transfer if it
 * is still running, then finishes the HTTP side: an error response when
 * nothing was sent yet and the client is still there, else a truncation. */
static void
edge_req_fail(struct edge_req *req, int status, gw_err err, const char *message)
{
    if (req->state == EDGE_REQ_DONE)
        return;
    if (req->ureq) {
        edge_upstream_cancel(req->ureq);
        req->ureq = NULL;
        if (req->flags & EDGE_REQ_F_REACHED)
            req->flags |= EDGE_REQ_F_PARTIAL;
    }
    if (!(req->flags & EDGE_REQ_F_HTTP_DONE)) {
        if (req->flags & (EDGE_REQ_F_HEAD_SENT | EDGE_REQ_F_CLIENT_GONE)) {
            if (req->flags & EDGE_REQ_F_HEAD_SENT)
                req->flags |= EDGE_REQ_F_PARTIAL;
            else
                req->client_status = 499; /* nginx: client closed request */
            gw_http_abandon(req->hreq);
        } else {
            req->client_status = status;
            edge_respond_error(req->hreq, req->rid, status, err, message);
        }
        req->flags |= EDGE_REQ_F_HTTP_DONE;
        req->hreq = NULL;
    }
    if (req->note == NULL)
        req->note = gw_err_name(err);
    edge_req_maybe_complete(req);
}

/* ------------------------------------------------------------ upstream callbacks */

static void
edge_req_sse_event(void *arg, const char *event, size_t event_len, const char *data,
                   size_t data_len)
{
    struct edge_req *req = arg;

    edge_anthropic_meter_event(&req->usage, event, event_len, data, data_len);
}

/* Relays the response headers a client may act on. */
static void
edge_req_relay_headers(struct edge_req *req, const struct gw_http_header *headers, size_t n)
{
    char name[EDGE_RELAY_NAME_MAX], value[EDGE_RELAY_VALUE_MAX];

    for (size_t i = 0; i < n; i++) {
        const struct gw_http_header *h = &headers[i];

        if (!(gw_str_case_eq(h->name, "request-id") || gw_str_case_eq(h->name, "retry-after") ||
              gw_str_case_eq(h->name, "x-should-retry") ||
              gw_str_case_eq(h->name, "content-encoding") ||
              edge_str_starts_case(h->name, "anthropic-ratelimit-")))
            continue;
        if (h->name.len >= sizeof(name) || h->value.len >= sizeof(value))
            continue;
        memcpy(name, h->name.p, h->name.len);
        name[h->name.len] = '\0';
        memcpy(value, h->value.p, h->value.len);
        value[h->value.len] = '\0';
        gw_http_add_header(req->hreq, name, value);
    }
}

static void
edge_req_on_head(void *arg, int status, const struct gw_http_header *headers, size_t n)
{
    struct edge_req *req = arg;
    char ctype[256] = "";
    gw_err rv;

    req->flags |= EDGE_REQ_F_REACHED;
    req->upstream_status = status;
    req->client_status = status;
    for (size_t i = 0; i < n; i++) {
        if (gw_str_case_eq(headers[i].name, "content-type") &&
            headers[i].value.len < sizeof(ctype)) {
            memcpy(ctype, headers[i].value.p, headers[i].value.len);
            ctype[headers[i].value.len] = '\0';
            break;
        }
    }
    if (strncasecmp(ctype, "text/event-stream", strlen("text/event-stream")) == 0)
        req->flags |= EDGE_REQ_F_SSE;
    edge_req_relay_headers(req, headers, n);
    gw_http_add_header(req->hreq, "x-aicarpool-request-id", req->rid);
    rv = gw_http_start(req->hreq, status, ctype[0] ? ctype : NULL);
    if (rv != GW_OK) {
        /* The client is gone; cancelling from on_head is allowed. */
        req->flags |= EDGE_REQ_F_CLIENT_GONE;
        edge_req_fail(req, 499, GW_ECLOSED, NULL);
        return;
    }
    req->flags |= EDGE_REQ_F_HEAD_SENT;
    req->state = EDGE_REQ_STREAMING;
}

static void
edge_req_meter_chunk(struct edge_req *req, const char *data, size_t len)
{
    size_t max = (size_t)req->e->cfg->meter_body_max;

    if (!(req->flags & EDGE_REQ_F_BILLABLE) || (req->flags & EDGE_REQ_F_METER_OFF))
        return;
    if (req->flags & EDGE_REQ_F_SSE) {
        gw_err rv = edge_sse_feed(&req->sse, data, len, edge_req_sse_event, req);
        if (rv != GW_OK) {
            gw_log_req(GW_LOG_WARN, "EDGE-METER", req->rid,
                       "SSE event too large to meter (%s); usage from earlier events only",
                       gw_strerror(rv));
            req->flags |= EDGE_REQ_F_METER_OFF;
        }
        return;
    }
    if (req->body_copy.len + len > max) {
        gw_log_req(GW_LOG_WARN, "EDGE-METER", req->rid, "response body over %zu bytes; not metered",
                   max);
        req->flags |= EDGE_REQ_F_METER_OFF;
        gw_buf_fini(&req->body_copy);
        return;
    }
    gw_buf_append(&req->body_copy, data, len);
}

static int
edge_req_on_chunk(void *arg, const char *data, size_t len)
{
    struct edge_req *req = arg;
    gw_err rv;

    if (req->state == EDGE_REQ_DONE || req->hreq == NULL)
        return EDGE_UPSTREAM_CONTINUE;
    edge_req_meter_chunk(req, data, len);
    rv = gw_http_write(req->hreq, data, len);
    if (rv != GW_OK) {
        req->flags |= EDGE_REQ_F_CLIENT_GONE;
        edge_req_fail(req, 499, GW_ECLOSED, NULL);
        return EDGE_UPSTREAM_CONTINUE;
    }
    req->bytes_out += len;
    if (!gw_http_writable(req->hreq)) {
        req->flags |= EDGE_REQ_F_PAUSED;
        atomic_fetch_add_explicit(&req->e->n_pauses, 1, memory_order_relaxed);
        return EDGE_UPSTREAM_PAUSE;
    }
    return EDGE_UPSTREAM_CONTINUE;
}

static void
edge_req_on_done(void *arg, gw_err err)
{
    struct edge_req *req = arg;

    /* The upstream frees its side after we return; never touch it again. */
    req->ureq = NULL;
    req->flags &= ~(unsigned)EDGE_REQ_F_PAUSED;
    if (req->state == EDGE_REQ_DONE)
        return;
    if (err != GW_OK || !(req->flags & EDGE_REQ_F_HEAD_SENT)) {
        if (err == GW_OK)
            err = GW_EUPSTREAM;
        gw_log_req(GW_LOG_WARN, "EDGE-UPSTREAM", req->rid, "account %" PRIu64 ": %s%s",
                   req->account ? req->account->id : 0, gw_strerror(err),
                   (req->flags & EDGE_REQ_F_HEAD_SENT) ? " after the response started" : "");
        if (err == GW_ETIMEDOUT)
            edge_req_fail(req, 504, GW_ETIMEDOUT, "upstream timed out");
        else
            edge_req_fail(req, 502, GW_EUPSTREAM, "upstream failure");
        return;
    }
    if ((req->flags & EDGE_REQ_F_BILLABLE) && !(req->flags & EDGE_REQ_F_SSE) &&
        !(req->flags & EDGE_REQ_F_METER_OFF) && req->body_copy.len > 0) {
        gw_err rv = edge_anthropic_meter_body(&req->usage, req->body_copy.data, req->body_copy.len);
        if (rv != GW_OK && req->upstream_status / 100 == 2)
            gw_log_req(GW_LOG_WARN, "EDGE-METER", req->rid, "no usage in response body: %s",
                       gw_strerror(rv));
    }
    gw_http_end(req->hreq);
    req->hreq = NULL;
    req->flags |= EDGE_REQ_F_HTTP_DONE;
    edge_req_maybe_complete(req);
}

/* ------------------------------------------------------------ HTTP callbacks */

static void
edge_req_on_abort(struct gw_http_req *hreq, void *arg)
{
    struct edge_req *req = arg;

    (void)hreq;
    /* Also reached when the edge stops and the server drops connections. */
    if (req->e->shutting_down) {
        req->note = "edge stopping";
    } else {
        atomic_fetch_add_explicit(&req->e->n_aborts, 1, memory_order_relaxed);
        req->note = "client closed";
    }
    req->flags |= EDGE_REQ_F_CLIENT_GONE;
    edge_req_fail(req, 499, GW_ECLOSED, NULL);
}

static void
edge_req_on_drain(struct gw_http_req *hreq, void *arg)
{
    struct edge_req *req = arg;

    (void)hreq;
    if (!(req->flags & EDGE_REQ_F_PAUSED) || req->ureq == NULL)
        return;
    req->flags &= ~(unsigned)EDGE_REQ_F_PAUSED;
    /* May re-enter on_chunk, which may pause again or fail the request;
     * the req itself is only freed by the reaper, so it stays valid here. */
    edge_upstream_resume(req->ureq);
}

/* ------------------------------------------------------------ the pipeline */

/* The gateway key: x-api-key, else "Authorization: Bearer <key>". */
static int
edge_req_client_key(const struct gw_http_req *hreq, struct gw_str *out)
{
    const struct gw_str *h = gw_http_req_header(hreq, "x-api-key");

    if (h != NULL) {
        *out = edge_str_trim(*h);
        if (out->len > 0)
            return 1;
    }
    h = gw_http_req_header(hreq, "authorization");
    if (h != NULL && edge_str_starts_case(*h, "Bearer ")) {
        struct gw_str rest = {h->p + 7, h->len - 7};
        *out = edge_str_trim(rest);
        if (out->len > 0)
            return 1;
    }
    return 0;
}

/* base_url without a trailing '/' + path from "/v1/" on + "?" + query. */
static gw_err
edge_req_build_url(const struct edge_req *req, const struct gw_http_req *hreq, size_t v1_off,
                   struct gw_buf *url)
{
    const char *base = req->account->base_url;
    size_t base_len = strlen(base);

    while (base_len > 0 && base[base_len - 1] == '/')
        base_len--;
    if (base_len == 0)
        return GW_EINVAL;
    gw_buf_append(url, base, base_len);
    gw_buf_append(url, hreq->path.p + v1_off, hreq->path.len - v1_off);
    if (hreq->query.len > 0) {
        gw_buf_append(url, "?", 1);
        gw_buf_append(url, hreq->query.p, hreq->query.len);
    }
    return url->len <= EDGE_URL_MAX ? GW_OK : GW_EMSGSIZE;
}

static void
edge_req_run(struct edge_req *req, size_t v1_off)
{
    struct edge *e = req->e;
    struct gw_http_req *hreq = req->hreq;
    const struct edge_account *cands[EDGE_MAX_CANDIDATES];
    struct edge_upstream_spec spec;
    struct edge_upstream_cbs cbs;
    struct gw_buf url = GW_BUF_INIT;
    struct gw_str key;
    enum edge_key_state ks;
    const char *why = NULL;
    size_t n;
    gw_err rv;

    if (e->snap == NULL) {
        req->note = "no snapshot";
        edge_req_fail(req, 503, GW_ENOACCOUNT, "the gateway has no configuration yet");
        return;
    }
    req->snap = edge_snapshot_ref(e->snap);

    if (!edge_req_client_key(hreq, &key)) {
        req->note = "missing key";
        edge_req_fail(req, 401, GW_EAUTH, "missing API key");
        return;
    }
    ks = edge_snapshot_lookup(req->snap, key.p, key.len, (int64_t)time(NULL), &req->key);
    if (ks != EDGE_KEY_OK) {
        req->note = ks == EDGE_KEY_DISABLED  ? "key disabled"
                    : ks == EDGE_KEY_EXPIRED ? "key expired"
                                             : "key unknown";
        req->key = ks == EDGE_KEY_UNKNOWN ? NULL : req->key;
        edge_req_fail(req, 401, GW_EAUTH, "invalid API key");
        return;
    }

    rv = edge_anthropic_scan_request(hreq->body.data ? hreq->body.data : "", hreq->body.len,
                                     &req->areq, &why);
    if (rv != GW_OK) {
        req->note = "bad body";
        edge_req_fail(req, 400, GW_EINVAL, why ? why : "invalid request body");
        return;
    }
    edge_anthropic_session_from_headers(&req->areq, hreq);

    n = edge_route_pick(e->route, req->key->group, cands, EDGE_MAX_CANDIDATES);
    if (n == 0) {
        req->note = "no account";
        edge_req_fail(req, 503, GW_ENOACCOUNT, "no usable upstream account");
        return;
    }
    /* Failover to cands[1..n) comes with health tracking; one try for now. */
    req->account = cands[0];

    rv = edge_req_build_url(req, hreq, v1_off, &url);
    if (rv != GW_OK) {
        gw_buf_fini(&url);
        req->note = "bad upstream url";
        edge_req_fail(req, 502, GW_EUPSTREAM, "upstream failure");
        return;
    }
    memset(&spec, 0, sizeof(spec));
    spec.method = "POST";
    spec.url = url.data;
    spec.headers = edge_anthropic_upstream_headers(hreq, req->account->credential,
                                                   strcmp(req->account->kind, "claude_oauth") == 0);
    spec.body = hreq->body.data;
    spec.body_len = hreq->body.len;
    spec.timeouts.connect_ms = (uint64_t)e->cfg->connect_timeout_ms;
    spec.timeouts.first_byte_ms = (uint64_t)e->cfg->first_byte_timeout_ms;
    spec.timeouts.idle_ms = (uint64_t)e->cfg->stream_idle_timeout_ms;
    spec.timeouts.total_ms = (uint64_t)e->cfg->total_timeout_ms;
    memset(&cbs, 0, sizeof(cbs));
    cbs.on_head = edge_req_on_head;
    cbs.on_chunk = edge_req_on_chunk;
    cbs.on_done = edge_req_on_done;
    req->state = EDGE_REQ_UPSTREAM_CONNECT;
    rv = edge_upstream_start(e->up, &spec, &cbs, req, &req->ureq);
    gw_buf_fini(&url);
    if (rv != GW_OK) {
        req->ureq = NULL;
        req->note = "upstream start";
        edge_req_fail(req, 502, GW_EUPSTREAM, "upstream failure");
        return;
    }
    atomic_fetch_add_explicit(&e->n_upstream, 1, memory_order_relaxed);
    gw_log_req(GW_LOG_DEBUG, "EDGE-ROUTE", req->rid,
               "key %" PRIu64 " -> account %" PRIu64 " (%s) model %s stream %d", req->key->id,
               req->account->id, req->account->kind, req->areq.model, req->areq.stream);
}

static void
edge_on_request(struct gw_http_req *hreq, void *arg)
{
    struct edge *e = arg;
    struct edge_req *req;
    enum edge_api api;
    size_t pos = 0, v1_off;

    if (gw_str_eq(hreq->path, "/healthz")) {
        edge_respond_json(hreq, 200, "{\"status\":\"ok\"}");
        return;
    }
    if (gw_str_eq(hreq->path, "/readyz")) {
        char body[96];
        if (e->snap == NULL) {
            edge_respond_json(hreq, 503, "{\"ready\":false}");
            return;
        }
        snprintf(body, sizeof(body), "{\"ready\":true,\"snapshot_version\":%" PRIu64 "}",
                 edge_snapshot_version(e->snap));
        edge_respond_json(hreq, 200, body);
        return;
    }
    /* Any prefix before the API path is accepted (/api/v1/messages, ...). */
    if (edge_str_ends_with(hreq->path, "/v1/messages", &pos)) {
        api = EDGE_API_MESSAGES;
    } else if (edge_str_ends_with(hreq->path, "/v1/messages/count_tokens", &pos)) {
        api = EDGE_API_COUNT_TOKENS;
    } else {
        gw_log_req(GW_LOG_INFO, "EDGE-ACCESS", hreq->id_str, "%s %.*s 404", hreq->method,
                   (int)(hreq->path.len > 200 ? 200 : hreq->path.len), hreq->path.p);
        edge_respond_error(hreq, NULL, 404, GW_ENOTFOUND, "not found");
        return;
    }
    v1_off = pos;
    if (strcmp(hreq->method, "POST") != 0) {
        gw_log_req(GW_LOG_INFO, "EDGE-ACCESS", hreq->id_str, "%s %.*s 405", hreq->method,
                   (int)(hreq->path.len > 200 ? 200 : hreq->path.len), hreq->path.p);
        gw_http_add_header(hreq, "allow", "POST");
        edge_respond_error(hreq, NULL, 405, GW_EINVAL, "method not allowed");
        return;
    }

    req = gw_xcalloc(1, sizeof(*req));
    req->e = e;
    req->hreq = hreq;
    req->api = api;
    req->state = EDGE_REQ_AUTH;
    req->start_ns = uv_hrtime();
    req->time_ms = (int64_t)edge_now_ms_wall();
    req->method = hreq->method;
    req->areq.max_tokens = -1;
    edge_sse_init(&req->sse, 0);
    if (api == EDGE_API_MESSAGES)
        req->flags |= EDGE_REQ_F_BILLABLE;
    snprintf(req->path, sizeof(req->path), "%.*s",
             (int)(hreq->path.len < sizeof(req->path) ? hreq->path.len : sizeof(req->path) - 1),
             hreq->path.p);
    snprintf(req->rid, sizeof(req->rid), "%s-%" PRIu64, e->rid_prefix, ++e->rid_counter);
    atomic_fetch_add_explicit(&e->n_requests, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->n_active, 1, memory_order_relaxed);
    hreq->data = req;
    gw_http_set_abort_cb(hreq, edge_req_on_abort, req);
    gw_http_set_drain_cb(hreq, edge_req_on_drain, req);
    edge_req_run(req, v1_off);
}

/* ------------------------------------------------------------ loop, snapshot handoff, stop */

static void
edge_handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* Last step of shutdown on the loop thread: nothing may use the handles
 * after this; uv_run returns once they are closed. */
static void
edge_close_loop_handles(struct edge *e)
{
    /* Requests finished during the server close are freed now. */
    if (e->reap_head)
        edge_reaper_cb(&e->reaper);
    edge_upstream_close(e->up);
    e->up = NULL;
    uv_mutex_lock(&e->mu);
    e->async_closed = 1;
    uv_mutex_unlock(&e->mu);
    uv_close((uv_handle_t *)&e->async, edge_handle_closed);
    uv_close((uv_handle_t *)&e->reaper, edge_handle_closed);
    edge_snapshot_unref(e->snap);
    e->snap = NULL;
}

static void
edge_server_closed(void *arg)
{
    struct edge *e = arg;

    e->srv = NULL;
    edge_close_loop_handles(e);
}

static void
edge_begin_shutdown(struct edge *e)
{
    if (e->shutting_down)
        return;
    e->shutting_down = 1;
    if (e->srv)
        gw_http_server_close(e->srv, edge_server_closed, e);
    else
        edge_close_loop_handles(e);
}

static void
edge_async_cb(uv_async_t *async)
{
    struct edge *e = async->data;
    struct edge_snapshot *snap;
    int stop;

    /* libuv coalesces sends: take everything that is waiting. */
    uv_mutex_lock(&e->mu);
    snap = e->incoming;
    e->incoming = NULL;
    stop = e->stop_requested;
    uv_mutex_unlock(&e->mu);
    if (snap && !e->shutting_down) {
        struct edge_snapshot *old = e->snap;

        e->snap = snap;
        atomic_store_explicit(&e->snap_version, edge_snapshot_version(snap), memory_order_relaxed);
        edge_route_prune(e->route, snap);
        edge_snapshot_unref(old);
        snap = NULL;
    }
    edge_snapshot_unref(snap);
    if (stop)
        edge_begin_shutdown(e);
}

/* Hub link thread: park the new snapshot and wake the loop. */
static void
edge_on_snapshot(void *arg, struct edge_snapshot *snap)
{
    struct edge *e = arg;
    struct edge_snapshot *old = NULL;

    uv_mutex_lock(&e->mu);
    if (e->async_closed || e->stop_requested) {
        old = snap;
    } else {
        old = e->incoming;
        e->incoming = snap;
        uv_async_send(&e->async);
    }
    uv_mutex_unlock(&e->mu);
    edge_snapshot_unref(old);
}

static void
edge_loop_thread(void *arg)
{
    struct edge *e = arg;
    int rc;

    uv_run(&e->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&e->loop);
    if (rc != 0)
        gw_log(GW_LOG_ERROR, "EDGE-LOOP", "loop closed with handles left: %s", uv_strerror(rc));
}

/* ------------------------------------------------------------ public API */

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
    uv_mutex_init(&e->mu);
    e->route = edge_route_new();
    rv = edge_hublink_new(cfg, edge_on_snapshot, e, &e->link);
    if (rv != GW_OK) {
        edge_route_free(e->route);
        uv_mutex_destroy(&e->mu);
        free(e);
        return rv;
    }
    /* Request ids: a random per-process prefix and a counter, so ids from
     * restarts and from other edges do not collide in the usage log. */
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

gw_err
edge_start(struct edge *e, struct gw_buf *err)
{
    const struct edge_config *cfg = e->cfg;
    struct gw_http_limits limits;
    const char *colon;
    gw_err rv;
    int rc;

    if (e->loop_inited)
        return GW_EINVAL;
    rc = uv_loop_init(&e->loop);
    if (rc != 0) {
        edge_errf(err, "cannot create the event loop: %s", uv_strerror(rc));
        return GW_EINTERNAL;
    }
    e->loop_inited = 1;
    uv_async_init(&e->loop, &e->async, edge_async_cb);
    e->async.data = e;
    uv_idle_init(&e->loop, &e->reaper);
    e->reaper.data = e;

    rv = edge_upstream_new(&e->loop, &e->up);
    if (rv != GW_OK) {
        edge_errf(err, "cannot create the upstream client: %s", gw_strerror(rv));
        goto fail;
    }
    gw_http_limits_default(&limits);
    limits.max_header_bytes = (size_t)cfg->max_header_bytes;
    limits.max_headers = (size_t)cfg->max_headers;
    limits.max_body_bytes = (size_t)cfg->max_body_bytes;
    limits.max_connections = (size_t)cfg->max_connections;
    limits.read_timeout_ms = (uint64_t)cfg->read_timeout_ms;
    limits.idle_timeout_ms = (uint64_t)cfg->idle_timeout_ms;
    if (cfg->write_high_water > 0)
        limits.write_high_water = (size_t)cfg->write_high_water;
    rv = gw_http_server_new(&e->loop, &limits, edge_on_request, e, &e->srv);
    if (rv != GW_OK) {
        edge_errf(err, "cannot create the HTTP server: %s", gw_strerror(rv));
        goto fail;
    }
    gw_http_server_set_error_body(e->srv, edge_server_error_body, e);
    rv = gw_http_server_listen(e->srv, cfg->listen, 0, &e->bound_port);
    if (rv != GW_OK) {
        edge_errf(err, "cannot listen on %s: %s", cfg->listen, gw_strerror(rv));
        goto fail;
    }
    rc = uv_thread_create(&e->thread, edge_loop_thread, e);
    if (rc != 0) {
        rv = GW_EINTERNAL;
        edge_errf(err, "cannot start the loop thread: %s", uv_strerror(rc));
        goto fail;
    }
    e->thread_started = 1;
    colon = strrchr(cfg->listen, ':');
    gw_log(GW_LOG_INFO, "EDGE-LISTEN", "edge listening on %.*s:%d",
           (int)(colon ? (size_t)(colon - cfg->listen) : strlen(cfg->listen)), cfg->listen,
           e->bound_port);
    rv = edge_hublink_start(e->link);
    if (rv != GW_OK) {
        edge_errf(err, "cannot start the hub link to %s: %s", cfg->hub, gw_strerror(rv));
        edge_stop(e);
        return rv;
    }
    return GW_OK;

fail:
    /* Nothing runs yet: close on this thread and drain the loop here. */
    e->bound_port = 0;
    edge_begin_shutdown(e);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&e->loop);
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
    /* The atomics are logically const here; C11 atomics need a mutable
     * pointer for loads only on some compilers, so cast once. */
    struct edge *m = (struct edge *)(uintptr_t)e;

    out->requests = atomic_load_explicit(&m->n_requests, memory_order_relaxed);
    out->upstream_started = atomic_load_explicit(&m->n_upstream, memory_order_relaxed);
    out->upstream_pauses = atomic_load_explicit(&m->n_pauses, memory_order_relaxed);
    out->client_aborts = atomic_load_explicit(&m->n_aborts, memory_order_relaxed);
    out->usage_records = atomic_load_explicit(&m->n_usage, memory_order_relaxed);
    out->active = atomic_load_explicit(&m->n_active, memory_order_relaxed);
    out->snapshot_version = atomic_load_explicit(&m->snap_version, memory_order_relaxed);
}

void
edge_stop(struct edge *e)
{
    if (e->stopped)
        return;
    e->stopped = 1;
    if (e->thread_started) {
        uv_mutex_lock(&e->mu);
        e->stop_requested = 1;
        if (!e->async_closed)
            uv_async_send(&e->async);
        uv_mutex_unlock(&e->mu);
        uv_thread_join(&e->thread);
        e->thread_started = 0;
    }
    /* The loop is gone, so every usage record is queued: flush and join. */
    edge_hublink_stop(e->link);
    gw_log(GW_LOG_INFO, "EDGE-STOP", "edge stopped");
}

void
edge_free(struct edge *e)
{
    if (e == NULL)
        return;
    edge_stop(e);
    edge_hublink_free(e->link);
    edge_route_free(e->route);
    edge_snapshot_unref(e->incoming);
    edge_snapshot_unref(e->snap);
    uv_mutex_destroy(&e->mu);
    free(e);
}
