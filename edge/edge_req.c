/* SPDX-License-Identifier: Apache-2.0 */
/* The request pipeline on one loop thread: provider adapter by path ->
 * gateway key -> body scan -> model allow-list -> per-key limits -> routing
 * candidates -> upstream attempts with failover while nothing has reached
 * the client -> relay with backpressure while metering (and, for OpenAI
 * chat streams, filtering) -> usage record and account events to the hub
 * link. Each request is a struct edge_req with an explicit state; every
 * failure goes through one idempotent path, and the struct is freed from a
 * loop-level reap step once both the HTTP side and the upstream side are
 * finished. */
#include "edge_req.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "gw_http.h"
#include "gw_log.h"
#include "hublink.h"
#include "metrics.h"
#include "provider.h"
#include "quota.h"
#include "route.h"
#include "snapshot.h"
#include "sse.h"
#include "upstream.h"

#define EDGE_RELAY_NAME_MAX 128
#define EDGE_RELAY_VALUE_MAX 1024
#define EDGE_LAST_BODY_MAX (64 * 1024) /* kept of a failed attempt's body, to relay */
#define EDGE_MODELS_MAX 512            /* entries of a local model list */

enum edge_req_state {
    EDGE_REQ_AUTH,             /* key, body, limits, route: synchronous checks */
    EDGE_REQ_UPSTREAM_CONNECT, /* an attempt runs, no response relayed yet */
    EDGE_REQ_STREAMING,        /* head relayed to the client, body flowing */
    EDGE_REQ_DONE,             /* both sides finished, waiting to be reaped */
};

enum edge_req_flags {
    EDGE_REQ_F_HTTP_DONE = 1 << 0,   /* the gw_http request was finished */
    EDGE_REQ_F_HEAD_SENT = 1 << 1,   /* gw_http_start succeeded */
    EDGE_REQ_F_PAUSED = 1 << 2,      /* upstream paused until the client drains */
    EDGE_REQ_F_PARTIAL = 1 << 3,     /* response cut short: billed from what was seen */
    EDGE_REQ_F_SSE = 1 << 4,         /* the relayed response is text/event-stream */
    EDGE_REQ_F_METER_OFF = 1 << 5,   /* metering gave up (oversize event or body) */
    EDGE_REQ_F_BILLABLE = 1 << 6,    /* produces a usage record (not count_tokens) */
    EDGE_REQ_F_REACHED = 1 << 7,     /* the relayed response came from a provider */
    EDGE_REQ_F_CLIENT_GONE = 1 << 8, /* the client disconnected */
    EDGE_REQ_F_ADMITTED = 1 << 9,    /* counted by the quota: settle once */
    EDGE_REQ_F_SLOT = 1 << 10,       /* holds a router slot on `account` */
    EDGE_REQ_F_ABSORB = 1 << 11,     /* this attempt's response is kept, not relayed */
    EDGE_REQ_F_FILTER = 1 << 12,     /* the client stream goes through the adapter filter */
};

struct edge_req {
    struct edge_req_env *e;
    struct edge_req *reap_next;
    struct gw_http_req *hreq;       /* NULL once the HTTP side is finished */
    struct edge_upstream_req *ureq; /* NULL once done or cancelled */
    struct edge_snapshot *snap;     /* reference held for key/account pointers */
    const struct edge_key *key;
    const struct edge_provider *prov;
    struct edge_match match;
    struct edge_request_info info;
    enum edge_req_state state;
    unsigned flags;
    int upstream_status; /* status of the relayed response */
    int client_status;

    /* Routing and attempts. */
    const struct edge_account *cands[EDGE_ROUTE_MAX_CANDIDATES];
    size_t n_cands, next_cand;
    const struct edge_account *account; /* the current (then the relayed) attempt's */
    unsigned attempts;
    int attempt_status;       /* status of the current attempt, 0 before its head */
    int64_t attempt_retry_ms; /* what the current attempt's provider asked for */
    gw_err last_err;          /* why the last attempt without any answer failed */
    uint64_t deadline_ns;     /* no new attempt after it (0: none) */

    /* The last failed attempt's response, relayed when no later one works. */
    int last_status;
    const struct edge_account *last_account;
    struct gw_buf last_headers; /* "name\0value\0" pairs to relay */
    struct gw_buf last_body;
    char last_ctype[128];

    /* Upstream body and response processing. */
    struct gw_buf up_body; /* rewritten body (adapter rewrite_body) */
    int body_rewritten;
    struct edge_meter meter;
    struct edge_sse sse;
    struct gw_buf body_copy; /* bounded copy of a JSON response, for metering */
    struct gw_buf filt;      /* scratch: filtered bytes for the client */

    uint64_t start_ns;
    int64_t time_ms;
    uint64_t bytes_out;
    const char *method;
    const char *note; /* short reason for the access log, static */
    char path[256];
    char rid[48];
};

static void edge_req_attempt_next(struct edge_req *req);

/* ------------------------------------------------------------ helpers */

static uint64_t
edge_now_ms_wall(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int
edge_str_starts_case(struct gw_str s, const char *prefix)
{
    size_t n = strlen(prefix);

    return s.len >= n && strncasecmp(s.p, prefix, n) == 0;
}

/* Sends an error in the adapter's dialect and finishes the HTTP request. */
static void
edge_respond_error(const struct edge_provider *prov, struct gw_http_req *hreq, const char *rid,
                   int status, gw_err err, const char *message)
{
    struct gw_buf body = GW_BUF_INIT;

    prov->error_body(status, err, message, &body);
    if (rid)
        gw_http_add_header(hreq, "x-aicarpool-request-id", rid);
    /* The official SDKs (and so Claude Code and Codex) retry with backoff
     * unless told otherwise; a wrong key or a malformed body will not get
     * better by retrying, so say so. */
    if (status >= 400 && status < 500 && status != 408 && status != 409 && status != 429)
        gw_http_add_header(hreq, "x-should-retry", "false");
    gw_http_respond(hreq, status, "application/json", body.data, body.len);
    gw_buf_fini(&body);
}

void
edge_req_server_error_body(int status, const char *message, struct gw_str path, struct gw_buf *out,
                           void *arg)
{
    gw_err err;

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
    edge_provider_guess(path, NULL)->error_body(status, err, message, out);
}

/* Pattern match of a model name against an allow-list entry: exact, or a
 * prefix when the entry ends in '*'. */
static int
edge_model_matches(const char *pattern, const char *model)
{
    size_t n = strlen(pattern);

    if (n > 0 && pattern[n - 1] == '*')
        return strncmp(pattern, model, n - 1) == 0;
    return strcmp(pattern, model) == 0;
}

static int
edge_list_allows(char *const *list, size_t n, const char *model)
{
    if (n == 0)
        return 1;
    for (size_t i = 0; i < n; i++) {
        if (edge_model_matches(list[i], model))
            return 1;
    }
    return 0;
}

/* The accounts a group can reach: the bound ones (dedicated, hybrid) and
 * the pool's (pool, hybrid). */
static size_t
edge_group_sets(const struct edge_group *g, const struct edge_account *const **sets, size_t *lens)
{
    size_t n = 0;

    if (g == NULL)
        return 0;
    if (g->mode != EDGE_GROUP_POOL) {
        sets[n] = g->accounts;
        lens[n++] = g->n_accounts;
    }
    if (g->mode != EDGE_GROUP_DEDICATED) {
        sets[n] = g->pool_accounts;
        lens[n++] = g->n_pool_accounts;
    }
    return n;
}

static uint64_t
edge_usage_total(const struct edge_usage *u)
{
    return u->input_tokens + u->output_tokens + u->cache_read_tokens + u->cache_write_5m_tokens +
           u->cache_write_1h_tokens;
}

static enum edge_route_outcome
edge_outcome_of_status(int status)
{
    if (status == 429)
        return EDGE_ROUTE_429;
    if (status == 529)
        return EDGE_ROUTE_529;
    if (status == 401 || status == 403)
        return EDGE_ROUTE_AUTH_FAIL;
    if (status >= 500)
        return EDGE_ROUTE_5XX;
    return EDGE_ROUTE_OK;
}

/* Statuses after which another account may do better. */
static int
edge_status_retryable(int status)
{
    return status >= 500 || status == 429 || status == 401 || status == 403;
}

/* ------------------------------------------------------------ lifecycle of a request */

static void
edge_reaper_cb(uv_idle_t *idle)
{
    struct edge_req_env *e = idle->data;
    struct edge_req *list = e->reap_head;

    e->reap_head = NULL;
    uv_idle_stop(idle);
    while (list) {
        struct edge_req *next = list->reap_next;

        edge_snapshot_unref(list->snap);
        edge_sse_fini(&list->sse);
        edge_meter_fini(&list->meter);
        gw_buf_fini(&list->body_copy);
        gw_buf_fini(&list->filt);
        gw_buf_fini(&list->up_body);
        gw_buf_fini(&list->last_headers);
        gw_buf_fini(&list->last_body);
        free(list);
        atomic_fetch_sub_explicit(&e->stats->active, 1, memory_order_relaxed);
        list = next;
    }
}

static void
edge_req_log_access(const struct edge_req *req, uint32_t latency_ms)
{
    const struct edge_usage *u = &req->meter.usage;

    gw_log_req(GW_LOG_INFO, "EDGE-ACCESS", req->rid,
               "%s %s %d dialect=%s model=%s account=%" PRIu64 " key=%" PRIu64
               " attempts=%u in=%" PRIu64 " out=%" PRIu64 " cache_read=%" PRIu64
               " cache_write=%" PRIu64 " reasoning=%" PRIu64 " latency_ms=%u bytes=%" PRIu64
               "%s%s%s",
               req->method, req->path, req->client_status, req->prov ? req->prov->name : "-",
               req->info.model[0] ? req->info.model : "-", req->account ? req->account->id : 0,
               req->key ? req->key->id : 0, req->attempts, u->input_tokens, u->output_tokens,
               u->cache_read_tokens, u->cache_write_5m_tokens + u->cache_write_1h_tokens,
               u->reasoning_tokens, latency_ms, req->bytes_out,
               (req->flags & EDGE_REQ_F_PARTIAL) ? " partial" : "", req->note ? " note=" : "",
               req->note ? req->note : "");
}

static void
edge_req_push_usage(struct edge_req *req, uint32_t latency_ms)
{
    struct gw_usage_record rec;
    const struct edge_usage *u = &req->meter.usage;
    gw_err rv;

    memset(&rec, 0, sizeof(rec));
    snprintf(rec.request_id, sizeof(rec.request_id), "%s", req->rid);
    rec.key_id = req->key ? req->key->id : 0;
    rec.account_id = req->account ? req->account->id : 0;
    snprintf(rec.model, sizeof(rec.model), "%s", req->info.model);
    snprintf(rec.dialect, sizeof(rec.dialect), "%s", edge_dialect_name(req->prov->dialect));
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
        atomic_fetch_add_explicit(&req->e->stats->usage_records, 1, memory_order_relaxed);
    else
        gw_log_req(GW_LOG_ERROR, "EDGE-USAGE-DROP", req->rid, "usage record not queued: %s",
                   gw_strerror(rv));
}

/* Gives the router slot of the current attempt back (idempotent). */
static void
edge_req_release_slot(struct edge_req *req)
{
    if (!(req->flags & EDGE_REQ_F_SLOT))
        return;
    req->flags &= ~(unsigned)EDGE_REQ_F_SLOT;
    edge_route_release(req->e->route, req->account);
}

/* Reports one attempt's outcome to the router and, for 401/403/429, to the
 * hub as an account event. */
static void
edge_req_report(struct edge_req *req, enum edge_route_outcome o, int status, int64_t retry_ms)
{
    uint64_t now = edge_now_ms_wall();

    if (req->e->metrics != NULL)
        edge_metrics_upstream_attempt(req->e->metrics, req->account->id, o);
    edge_route_report(req->e->route, req->account, o, retry_ms, now);
    if (o == EDGE_ROUTE_429 || o == EDGE_ROUTE_AUTH_FAIL) {
        struct gw_account_event ev;

        memset(&ev, 0, sizeof(ev));
        ev.account_id = req->account->id;
        ev.status = (uint32_t)status;
        ev.time_ms = (int64_t)now;
        ev.retry_after_ms = retry_ms;
        snprintf(ev.message, sizeof(ev.message), "%s",
                 o == EDGE_ROUTE_429 ? "rate limited by the provider"
                                     : "the provider refused the credential");
        if (edge_hublink_push_account_event(req->e->link, &ev) != GW_OK)
            gw_log_req(GW_LOG_WARN, "EDGE-EVENT-DROP", req->rid,
                       "account %" PRIu64 " event not queued", req->account->id);
    }
}

/* Runs once when both sides are finished: settle, log, schedule the free. */
static void
edge_req_maybe_complete(struct edge_req *req)
{
    struct edge_req_env *e = req->e;
    uint32_t latency_ms;

    if (req->state == EDGE_REQ_DONE || !(req->flags & EDGE_REQ_F_HTTP_DONE) || req->ureq != NULL)
        return;
    req->state = EDGE_REQ_DONE;
    edge_req_release_slot(req);
    latency_ms = (uint32_t)((uv_hrtime() - req->start_ns) / 1000000u);
    /* Only responses a provider gave are metered; count_tokens is free. */
    if ((req->flags & EDGE_REQ_F_REACHED) && (req->flags & EDGE_REQ_F_BILLABLE))
        edge_req_push_usage(req, latency_ms);
    if (req->flags & EDGE_REQ_F_ADMITTED) {
        req->flags &= ~(unsigned)EDGE_REQ_F_ADMITTED;
        edge_quota_settle(e->quota, req->key, req->info.est_input_tokens,
                          (req->flags & EDGE_REQ_F_REACHED) ? edge_usage_total(&req->meter.usage)
                                                            : 0,
                          edge_now_ms_wall());
    }
    edge_req_log_access(req, latency_ms);
    if (e->metrics != NULL) {
        const struct edge_usage *u = &req->meter.usage;
        struct edge_metrics_tokens t = {u->input_tokens, u->output_tokens, u->cache_read_tokens,
                                        u->cache_write_5m_tokens + u->cache_write_1h_tokens};
        int billed = (req->flags & EDGE_REQ_F_REACHED) && (req->flags & EDGE_REQ_F_BILLABLE);
        edge_metrics_request(e->metrics, req->prov->dialect, req->client_status,
                             req->account ? req->account->id : 0,
                             (uv_hrtime() - req->start_ns) / 1000u, billed ? &t : NULL);
    }
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
    if (req->e->metrics != NULL)
        edge_metrics_error(req->e->metrics, req->prov->dialect, err);
    if (req->ureq) {
        edge_upstream_cancel(req->ureq);
        req->ureq = NULL;
        if (req->flags & EDGE_REQ_F_HEAD_SENT)
            req->flags |= EDGE_REQ_F_PARTIAL;
        /* An attempt cut by the client says nothing bad about the account;
         * one that answered reports what it answered. */
        if (req->attempt_status > 0 && (req->flags & EDGE_REQ_F_SLOT))
            edge_req_report(req, edge_outcome_of_status(req->attempt_status), req->attempt_status,
                            req->attempt_retry_ms);
    }
    edge_req_release_slot(req);
    if (!(req->flags & EDGE_REQ_F_HTTP_DONE)) {
        if (req->flags & (EDGE_REQ_F_HEAD_SENT | EDGE_REQ_F_CLIENT_GONE)) {
            if (req->flags & EDGE_REQ_F_HEAD_SENT)
                req->flags |= EDGE_REQ_F_PARTIAL;
            else
                req->client_status = 499; /* nginx: client closed request */
            gw_http_abandon(req->hreq);
        } else {
            req->client_status = status;
            if (status == 429 && err == GW_EQUOTA && req->attempt_retry_ms > 0) {
                char v[32];
                snprintf(v, sizeof(v), "%" PRId64, (req->attempt_retry_ms + 999) / 1000);
                gw_http_add_header(req->hreq, "retry-after", v);
            }
            edge_respond_error(req->prov, req->hreq, req->rid, status, err, message);
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

    req->prov->meter_event(&req->meter, event, event_len, data, data_len);
}

/* Response headers a client may act on. */
static int
edge_relay_header(struct gw_str name)
{
    return gw_str_case_eq(name, "request-id") || gw_str_case_eq(name, "x-request-id") ||
           gw_str_case_eq(name, "retry-after") || gw_str_case_eq(name, "x-should-retry") ||
           gw_str_case_eq(name, "content-encoding") ||
           gw_str_case_eq(name, "openai-processing-ms") ||
           edge_str_starts_case(name, "anthropic-ratelimit-") ||
           edge_str_starts_case(name, "x-ratelimit-");
}

static void
edge_req_relay_headers(struct edge_req *req, const struct gw_http_header *headers, size_t n)
{
    char name[EDGE_RELAY_NAME_MAX], value[EDGE_RELAY_VALUE_MAX];

    for (size_t i = 0; i < n; i++) {
        const struct gw_http_header *h = &headers[i];

        if (!edge_relay_header(h->name))
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

/* Keeps a failed attempt's head (relayable headers, content type) so it can
 * be relayed if no later attempt answers better. */
static void
edge_req_keep_head(struct edge_req *req, int status, const struct gw_http_header *headers, size_t n,
                   const char *ctype)
{
    req->last_status = status;
    req->last_account = req->account;
    gw_buf_reset(&req->last_headers);
    gw_buf_reset(&req->last_body);
    snprintf(req->last_ctype, sizeof(req->last_ctype), "%s", ctype);
    for (size_t i = 0; i < n; i++) {
        const struct gw_http_header *h = &headers[i];

        if (!edge_relay_header(h->name) || h->name.len >= EDGE_RELAY_NAME_MAX ||
            h->value.len >= EDGE_RELAY_VALUE_MAX)
            continue;
        gw_buf_append(&req->last_headers, h->name.p, h->name.len);
        gw_buf_append(&req->last_headers, "", 1);
        gw_buf_append(&req->last_headers, h->value.p, h->value.len);
        gw_buf_append(&req->last_headers, "", 1);
    }
}

/* Relays the kept response of a failed attempt as the final answer. */
static void
edge_req_relay_kept(struct edge_req *req)
{
    const char *p = req->last_headers.data;
    const char *end = p ? p + req->last_headers.len : NULL;

    req->account = req->last_account;
    req->upstream_status = req->last_status;
    req->client_status = req->last_status;
    req->flags |= EDGE_REQ_F_REACHED;
    while (p && p < end) {
        const char *v = p + strlen(p) + 1;
        gw_http_add_header(req->hreq, p, v);
        p = v + strlen(v) + 1;
    }
    gw_http_add_header(req->hreq, "x-aicarpool-request-id", req->rid);
    gw_http_respond(req->hreq, req->last_status, req->last_ctype[0] ? req->last_ctype : NULL,
                    req->last_body.data, req->last_body.len);
    req->hreq = NULL;
    req->flags |= EDGE_REQ_F_HTTP_DONE;
    req->note = "failover exhausted";
    edge_req_maybe_complete(req);
}

/* 1 while another attempt may still start. */
static int
edge_req_can_failover(const struct edge_req *req)
{
    if (req->next_cand >= req->n_cands || (int64_t)req->attempts >= req->e->cfg->max_attempts)
        return 0;
    if (req->deadline_ns != 0 && uv_hrtime() >= req->deadline_ns)
        return 0;
    return !req->e->shutting_down && !(req->flags & EDGE_REQ_F_CLIENT_GONE);
}

/* The upstream's Content-Length when it framed the body with one (and not
 * with Transfer-Encoding), else -1. Only plain digits are accepted. */
static int64_t
edge_upstream_content_length(const struct gw_http_header *headers, size_t n)
{
    int64_t len = -1;

    for (size_t i = 0; i < n; i++) {
        const struct gw_http_header *h = &headers[i];

        if (gw_str_case_eq(h->name, "transfer-encoding"))
            return -1;
        if (!gw_str_case_eq(h->name, "content-length"))
            continue;
        if (len >= 0 || h->value.len == 0 || h->value.len > 15)
            return -1; /* repeated or absurd: let chunking frame it */
        len = 0;
        for (size_t k = 0; k < h->value.len; k++) {
            char c = h->value.p[k];
            if (c < '0' || c > '9')
                return -1;
            len = len * 10 + (c - '0');
        }
    }
    return len;
}

static void
edge_req_on_head(void *arg, int status, const struct gw_http_header *headers, size_t n)
{
    struct edge_req *req = arg;
    char ctype[128] = "";
    gw_err rv;

    req->attempt_status = status;
    for (size_t i = 0; i < n; i++) {
        if (gw_str_case_eq(headers[i].name, "content-type") &&
            headers[i].value.len < sizeof(ctype)) {
            memcpy(ctype, headers[i].value.p, headers[i].value.len);
            ctype[headers[i].value.len] = '\0';
            break;
        }
    }
    if (status == 429)
        req->attempt_retry_ms = edge_provider_retry_after_ms(headers, n, edge_now_ms_wall());
    if (edge_status_retryable(status) && edge_req_can_failover(req)) {
        /* Nothing reaches the client: keep the answer in case it is the
         * last one, read its (small) body, then try the next account. */
        req->flags |= EDGE_REQ_F_ABSORB;
        edge_req_keep_head(req, status, headers, n, ctype);
        return;
    }
    req->flags |= EDGE_REQ_F_REACHED;
    req->upstream_status = status;
    req->client_status = status;
    if (strncasecmp(ctype, "text/event-stream", strlen("text/event-stream")) == 0)
        req->flags |= EDGE_REQ_F_SSE;
    /* The filter only ever removes the usage chunk it made the provider
     * add: only for a streamed success. */
    if (req->body_rewritten && (req->flags & EDGE_REQ_F_SSE) && status / 100 == 2 &&
        req->prov->filter_stream != NULL) {
        req->flags |= EDGE_REQ_F_FILTER;
        req->meter.strip_usage_chunk = 1;
    }
    edge_req_relay_headers(req, headers, n);
    gw_http_add_header(req->hreq, "x-aicarpool-request-id", req->rid);
    /* A plain (unfiltered, not event-stream) body is relayed byte for
     * byte, so the upstream's Content-Length frames it for the client too:
     * no chunk framing, and curl guarantees the count or fails the
     * transfer (then the connection is cut). */
    int64_t clen = -1;
    if (!(req->flags & (EDGE_REQ_F_SSE | EDGE_REQ_F_FILTER)))
        clen = edge_upstream_content_length(headers, n);
    if (clen >= 0)
        rv = gw_http_start_length(req->hreq, status, ctype[0] ? ctype : NULL, (uint64_t)clen);
    else
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

/* Writes bytes to the client; 0 when the client is gone (request failed). */
static int
edge_req_write(struct edge_req *req, const char *data, size_t len)
{
    gw_err rv;

    if (len == 0)
        return 1;
    rv = gw_http_write(req->hreq, data, len);
    if (rv != GW_OK) {
        req->flags |= EDGE_REQ_F_CLIENT_GONE;
        edge_req_fail(req, 499, GW_ECLOSED, NULL);
        return 0;
    }
    req->bytes_out += len;
    return 1;
}

static int
edge_req_on_chunk(void *arg, const char *data, size_t len)
{
    struct edge_req *req = arg;

    if (req->flags & EDGE_REQ_F_ABSORB) {
        size_t room = EDGE_LAST_BODY_MAX - req->last_body.len;
        gw_buf_append(&req->last_body, data, len < room ? len : room);
        return EDGE_UPSTREAM_CONTINUE;
    }
    if (req->state == EDGE_REQ_DONE || req->hreq == NULL)
        return EDGE_UPSTREAM_CONTINUE;
    edge_req_meter_chunk(req, data, len);
    if (req->flags & EDGE_REQ_F_FILTER) {
        gw_buf_reset(&req->filt);
        req->prov->filter_stream(&req->meter, data, len, &req->filt);
        if (!edge_req_write(req, req->filt.data, req->filt.len))
            return EDGE_UPSTREAM_CONTINUE;
    } else if (!edge_req_write(req, data, len)) {
        return EDGE_UPSTREAM_CONTINUE;
    }
    if (!gw_http_writable(req->hreq)) {
        req->flags |= EDGE_REQ_F_PAUSED;
        atomic_fetch_add_explicit(&req->e->stats->upstream_pauses, 1, memory_order_relaxed);
        return EDGE_UPSTREAM_PAUSE;
    }
    return EDGE_UPSTREAM_CONTINUE;
}

/* The attempt failed before anything reached the client: next account, or
 * the last kept answer, or an error of our own. */
static void
edge_req_failover(struct edge_req *req, int status, gw_err err, const char *message)
{
    edge_req_release_slot(req);
    if (edge_req_can_failover(req)) {
        edge_req_attempt_next(req);
        return;
    }
    if (req->last_status != 0 && req->hreq != NULL && !(req->flags & EDGE_REQ_F_CLIENT_GONE)) {
        edge_req_relay_kept(req);
        return;
    }
    edge_req_fail(req, status, err, message);
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

    if (req->flags & EDGE_REQ_F_ABSORB) {
        req->flags &= ~(unsigned)EDGE_REQ_F_ABSORB;
        gw_log_req(GW_LOG_INFO, "EDGE-FAILOVER", req->rid,
                   "account %" PRIu64 " answered %d%s; trying the next one", req->account->id,
                   req->attempt_status, err != GW_OK ? " (body cut)" : "");
        edge_req_report(req, edge_outcome_of_status(req->attempt_status), req->attempt_status,
                        req->attempt_retry_ms);
        edge_req_failover(req, 502, GW_EUPSTREAM, "upstream failure");
        return;
    }
    if (!(req->flags & EDGE_REQ_F_HEAD_SENT)) {
        /* No response at all: connect error or a timeout before the head. */
        if (err == GW_OK)
            err = GW_EUPSTREAM;
        gw_log_req(GW_LOG_WARN, "EDGE-UPSTREAM", req->rid, "account %" PRIu64 ": %s",
                   req->account->id, gw_strerror(err));
        edge_req_report(req, err == GW_ETIMEDOUT ? EDGE_ROUTE_TIMEOUT : EDGE_ROUTE_CONNECT_FAIL, 0,
                        -1);
        req->last_err = err;
        if (err == GW_ETIMEDOUT)
            edge_req_failover(req, 504, GW_ETIMEDOUT, "upstream timed out");
        else
            edge_req_failover(req, 502, GW_EUPSTREAM, "upstream failure");
        return;
    }
    if (err != GW_OK) {
        /* Cut after the response started: no failover, bill what was seen. */
        gw_log_req(GW_LOG_WARN, "EDGE-UPSTREAM", req->rid,
                   "account %" PRIu64 ": %s after the response started", req->account->id,
                   gw_strerror(err));
        edge_req_report(req, err == GW_ETIMEDOUT ? EDGE_ROUTE_TIMEOUT : EDGE_ROUTE_5XX,
                        req->attempt_status, -1);
        if (err == GW_ETIMEDOUT)
            edge_req_fail(req, 504, GW_ETIMEDOUT, "upstream timed out");
        else
            edge_req_fail(req, 502, GW_EUPSTREAM, "upstream failure");
        return;
    }
    edge_req_report(req, edge_outcome_of_status(req->upstream_status), req->upstream_status,
                    req->attempt_retry_ms);
    edge_req_release_slot(req);
    if (req->flags & EDGE_REQ_F_FILTER) {
        gw_buf_reset(&req->filt);
        if (req->prov->filter_flush)
            req->prov->filter_flush(&req->meter, &req->filt);
        if (!edge_req_write(req, req->filt.data, req->filt.len))
            return;
    }
    /* The client's answer first (gw_http_end sends what is pending at
     * once), metering and the usage record after it. */
    gw_http_end(req->hreq);
    req->hreq = NULL;
    req->flags |= EDGE_REQ_F_HTTP_DONE;
    if ((req->flags & EDGE_REQ_F_BILLABLE) && !(req->flags & EDGE_REQ_F_SSE) &&
        !(req->flags & EDGE_REQ_F_METER_OFF) && req->body_copy.len > 0) {
        gw_err rv = req->prov->meter_body(&req->meter, req->body_copy.data, req->body_copy.len);
        if (rv != GW_OK && req->upstream_status / 100 == 2)
            gw_log_req(GW_LOG_WARN, "EDGE-METER", req->rid, "no usage in response body: %s",
                       gw_strerror(rv));
    }
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
        atomic_fetch_add_explicit(&req->e->stats->client_aborts, 1, memory_order_relaxed);
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

/* ------------------------------------------------------------ attempts */

/* Starts the transfer to account a; GW_OK when it runs. */
static gw_err
edge_req_start_on(struct edge_req *req, const struct edge_account *a)
{
    struct edge_req_env *e = req->e;
    struct gw_http_req *hreq = req->hreq;
    struct edge_upstream_spec spec;
    struct edge_upstream_cbs cbs;
    struct gw_buf url = GW_BUF_INIT;
    gw_err rv;

    rv = req->prov->upstream_url(a->base_url, hreq, &req->match, &url);
    if (rv != GW_OK) {
        gw_log_req(GW_LOG_ERROR, "EDGE-ROUTE", req->rid,
                   "account %" PRIu64 ": cannot build the upstream URL: %s", a->id,
                   gw_strerror(rv));
        gw_buf_fini(&url);
        return rv;
    }
    memset(&spec, 0, sizeof(spec));
    spec.method = "POST";
    spec.url = url.data;
    spec.headers = req->prov->upstream_headers(hreq, a);
    if (req->body_rewritten) {
        spec.body = req->up_body.data;
        spec.body_len = req->up_body.len;
    } else {
        spec.body = hreq->body.data;
        spec.body_len = hreq->body.len;
    }
    spec.proxy = a->proxy;
    spec.reqid = req->rid;
    spec.timeouts.connect_ms = (uint64_t)e->cfg->connect_timeout_ms;
    spec.timeouts.first_byte_ms = (uint64_t)e->cfg->first_byte_timeout_ms;
    spec.timeouts.idle_ms = (uint64_t)e->cfg->stream_idle_timeout_ms;
    spec.timeouts.total_ms = (uint64_t)e->cfg->total_timeout_ms;
    memset(&cbs, 0, sizeof(cbs));
    cbs.on_head = edge_req_on_head;
    cbs.on_chunk = edge_req_on_chunk;
    cbs.on_done = edge_req_on_done;
    rv = edge_upstream_start(e->up, &spec, &cbs, req, &req->ureq);
    gw_buf_fini(&url);
    if (rv != GW_OK)
        req->ureq = NULL;
    return rv;
}

/* Starts the next candidate that has room; when none can start, finishes
 * the request with the last kept answer or an error. */
static void
edge_req_attempt_next(struct edge_req *req)
{
    int busy = 0;

    while (req->next_cand < req->n_cands && (int64_t)req->attempts < req->e->cfg->max_attempts) {
        const struct edge_account *a = req->cands[req->next_cand++];

        if (req->attempts > 0 && req->deadline_ns != 0 && uv_hrtime() >= req->deadline_ns)
            break;
        if (edge_route_acquire(req->e->route, a) != 0) {
            busy = 1;
            continue;
        }
        req->account = a;
        req->flags |= EDGE_REQ_F_SLOT;
        req->attempt_status = 0;
        req->attempt_retry_ms = -1;
        if (edge_req_start_on(req, a) != GW_OK) {
            edge_req_release_slot(req);
            if (req->e->shutting_down)
                break;
            continue;
        }
        req->attempts++;
        req->state = EDGE_REQ_UPSTREAM_CONNECT;
        atomic_fetch_add_explicit(&req->e->stats->upstream_started, 1, memory_order_relaxed);
        if (req->attempts > 1)
            atomic_fetch_add_explicit(&req->e->stats->upstream_retries, 1, memory_order_relaxed);
        gw_log_req(GW_LOG_DEBUG, "EDGE-ROUTE", req->rid,
                   "key %" PRIu64 " -> account %" PRIu64 " (%s) %s model %s stream %d attempt %u",
                   req->key->id, a->id, a->kind, edge_op_name(req->match.op), req->info.model,
                   req->info.stream, req->attempts);
        return;
    }
    if (req->last_status != 0 && req->hreq != NULL && !(req->flags & EDGE_REQ_F_CLIENT_GONE)) {
        edge_req_relay_kept(req);
        return;
    }
    if (req->attempts == 0 && busy) {
        req->note = "accounts busy";
        edge_req_fail(req, 503, GW_ENOACCOUNT,
                      "every upstream account is at its concurrency limit");
        return;
    }
    if (req->attempts == 0)
        req->note = "upstream start";
    if (req->last_err == GW_ETIMEDOUT)
        edge_req_fail(req, 504, GW_ETIMEDOUT, "upstream timed out");
    else
        edge_req_fail(req, 502, GW_EUPSTREAM, "upstream failure");
}

/* ------------------------------------------------------------ the pipeline */

/* Why a group has no candidate for this request, as a client error. */
static void
edge_req_fail_no_candidate(struct edge_req *req)
{
    const struct edge_account *const *sets[2];
    size_t lens[2], ns = edge_group_sets(req->key->group, sets, lens);
    unsigned bit = EDGE_DIALECT_BIT(req->prov->dialect);
    int speaks = 0, serves = 0;
    char msg[256];

    for (size_t s = 0; s < ns; s++) {
        for (size_t i = 0; i < lens[s]; i++) {
            const struct edge_account *a = sets[s][i];
            if (!a->enabled || !(a->dialects & bit))
                continue;
            speaks = 1;
            if (edge_list_allows(a->models, a->n_models, req->info.model))
                serves = 1;
        }
    }
    if (!speaks) {
        snprintf(msg, sizeof(msg), "no upstream account of this key serves the %s API",
                 req->prov->name);
        req->note = "no account for dialect";
        edge_req_fail(req, 503, GW_ENOACCOUNT, msg);
    } else if (!serves) {
        snprintf(msg, sizeof(msg), "model: %s is not served by any upstream account of this key",
                 req->info.model);
        req->note = "model not served";
        edge_req_fail(req, 404, GW_ENOTFOUND, msg);
    } else {
        req->note = "no usable account";
        edge_req_fail(req, 503, GW_ENOACCOUNT, "no usable upstream account");
    }
}

/* GET models: the models of the accounts this key reaches in the dialect
 * (an account naming none contributes the dialect's default list), within
 * the key's allow-list, first-seen order, no duplicates. */
static void
edge_req_models(struct edge_req *req)
{
    const struct edge_account *const *sets[2];
    size_t lens[2], ns = edge_group_sets(req->key->group, sets, lens);
    unsigned bit = EDGE_DIALECT_BIT(req->prov->dialect);
    const char **ids = gw_xcalloc(EDGE_MODELS_MAX, sizeof(*ids));
    struct gw_buf body = GW_BUF_INIT;
    size_t n = 0;

    for (size_t s = 0; s < ns; s++) {
        for (size_t i = 0; i < lens[s]; i++) {
            const struct edge_account *a = sets[s][i];
            const char *const *list = (const char *const *)a->models;
            size_t nl = a->n_models;

            if (!a->enabled || !(a->dialects & bit))
                continue;
            if (nl == 0) {
                list = req->prov->default_models;
                nl = req->prov->n_default_models;
            }
            for (size_t k = 0; k < nl && n < EDGE_MODELS_MAX; k++) {
                size_t j;
                if (!edge_list_allows(req->key->allowed_models, req->key->n_allowed_models,
                                      list[k]))
                    continue;
                for (j = 0; j < n && strcmp(ids[j], list[k]) != 0; j++)
                    ;
                if (j == n)
                    ids[n++] = list[k];
            }
        }
    }
    req->prov->models_body(ids, n, &body);
    req->client_status = 200;
    gw_http_add_header(req->hreq, "x-aicarpool-request-id", req->rid);
    gw_http_respond(req->hreq, 200, "application/json", body.data, body.len);
    gw_buf_fini(&body);
    free(ids);
    req->hreq = NULL;
    req->flags |= EDGE_REQ_F_HTTP_DONE;
    edge_req_maybe_complete(req);
}

static void
edge_req_run(struct edge_req *req)
{
    struct edge_req_env *e = req->e;
    struct gw_http_req *hreq = req->hreq;
    struct edge_route_query q;
    struct gw_str key;
    enum edge_key_state ks;
    const char *why = NULL;
    gw_err rv;

    if (e->snap == NULL) {
        req->note = "no snapshot";
        edge_req_fail(req, 503, GW_ENOACCOUNT, "the gateway has no configuration yet");
        return;
    }
    req->snap = edge_snapshot_ref(e->snap);

    if (!req->prov->client_key(hreq, &key)) {
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
    if (edge_op_local(req->match.op)) {
        edge_req_models(req);
        return;
    }

    rv = req->prov->scan_request(hreq, &req->match, &req->info, &why);
    if (rv != GW_OK) {
        req->note = "bad body";
        edge_req_fail(req, 400, GW_EINVAL, why ? why : "invalid request body");
        return;
    }
    if (!edge_list_allows(req->key->allowed_models, req->key->n_allowed_models, req->info.model)) {
        char msg[256];
        snprintf(msg, sizeof(msg), "this API key may not use the model %s", req->info.model);
        req->note = "model not allowed";
        edge_req_fail(req, 403, GW_EPERM, msg);
        return;
    }
    if (e->quota != NULL) {
        struct edge_quota_verdict v =
            edge_quota_admit(e->quota, req->key, req->info.est_input_tokens, edge_now_ms_wall());
        if (v.err != GW_OK) {
            char msg[160];
            snprintf(msg, sizeof(msg), "rate limit of this API key reached: %s",
                     v.limit ? v.limit : "limit");
            req->attempt_retry_ms = v.retry_after_ms > 0 ? v.retry_after_ms : 1000;
            req->note = "key limit";
            edge_req_fail(req, 429, GW_EQUOTA, msg);
            return;
        }
        req->flags |= EDGE_REQ_F_ADMITTED;
    }

    memset(&q, 0, sizeof(q));
    q.group = req->key->group;
    q.model = req->info.model;
    q.dialect = req->prov->dialect;
    q.session = req->info.session[0] ? req->info.session : NULL;
    q.session_len = strlen(req->info.session);
    q.now_ms = edge_now_ms_wall();
    req->n_cands = edge_route_candidates(e->route, &q, req->cands, EDGE_ROUTE_MAX_CANDIDATES);
    if (req->n_cands == 0) {
        edge_req_fail_no_candidate(req);
        return;
    }
    if (req->prov->rewrite_body != NULL &&
        req->prov->rewrite_body(hreq, &req->match, &req->info, &req->up_body))
        req->body_rewritten = 1;
    if (e->cfg->failover_budget_ms > 0)
        req->deadline_ns = req->start_ns + (uint64_t)e->cfg->failover_budget_ms * 1000000u;
    edge_req_attempt_next(req);
}

void
edge_req_handle(struct edge_req_env *e, struct gw_http_req *hreq)
{
    const struct edge_provider *prov;
    struct edge_match match;
    struct edge_req *req;

    prov = edge_provider_match(hreq, &match);
    if (prov == NULL) {
        gw_log_req(GW_LOG_INFO, "EDGE-ACCESS", hreq->id_str, "%s %.*s 404", hreq->method,
                   (int)(hreq->path.len > 200 ? 200 : hreq->path.len), hreq->path.p);
        edge_respond_error(edge_provider_guess(hreq->path, hreq), hreq, NULL, 404, GW_ENOTFOUND,
                           "not found");
        if (e->metrics != NULL)
            edge_metrics_request(e->metrics, EDGE_METRICS_DIALECT_NONE, 404, 0, 0, NULL);
        return;
    }
    if (strcmp(hreq->method, match.method) != 0) {
        gw_log_req(GW_LOG_INFO, "EDGE-ACCESS", hreq->id_str, "%s %.*s 405", hreq->method,
                   (int)(hreq->path.len > 200 ? 200 : hreq->path.len), hreq->path.p);
        gw_http_add_header(hreq, "allow", match.method);
        edge_respond_error(prov, hreq, NULL, 405, GW_EINVAL, "method not allowed");
        if (e->metrics != NULL)
            edge_metrics_request(e->metrics, prov->dialect, 405, 0, 0, NULL);
        return;
    }

    req = gw_xcalloc(1, sizeof(*req));
    req->e = e;
    req->hreq = hreq;
    req->prov = prov;
    req->match = match;
    req->state = EDGE_REQ_AUTH;
    req->start_ns = uv_hrtime();
    req->time_ms = (int64_t)edge_now_ms_wall();
    req->method = hreq->method;
    req->info.max_tokens = -1;
    req->attempt_retry_ms = -1;
    edge_sse_init(&req->sse, 0);
    edge_meter_init(&req->meter, match.op);
    if (edge_op_billable(match.op))
        req->flags |= EDGE_REQ_F_BILLABLE;
    snprintf(req->path, sizeof(req->path), "%.*s",
             (int)(hreq->path.len < sizeof(req->path) ? hreq->path.len : sizeof(req->path) - 1),
             hreq->path.p);
    snprintf(req->rid, sizeof(req->rid), "%s-%" PRIu64, e->rid_prefix, ++e->rid_counter);
    atomic_fetch_add_explicit(&e->stats->requests, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->stats->active, 1, memory_order_relaxed);
    hreq->data = req;
    gw_http_set_abort_cb(hreq, edge_req_on_abort, req);
    gw_http_set_drain_cb(hreq, edge_req_on_drain, req);
    edge_req_run(req);
}

/* ------------------------------------------------------------ env */

void
edge_req_env_init(struct edge_req_env *env, uv_loop_t *loop, const char *rid_prefix)
{
    env->reap_head = NULL;
    env->rid_counter = 0;
    snprintf(env->rid_prefix, sizeof(env->rid_prefix), "%s", rid_prefix ? rid_prefix : "");
    uv_idle_init(loop, &env->reaper);
    env->reaper.data = env;
}

static void
edge_req_env_closed(uv_handle_t *h)
{
    (void)h;
}

void
edge_req_env_close(struct edge_req_env *env)
{
    /* Requests finished during the server close are freed now. */
    if (env->reap_head)
        edge_reaper_cb(&env->reaper);
    uv_close((uv_handle_t *)&env->reaper, edge_req_env_closed);
}
