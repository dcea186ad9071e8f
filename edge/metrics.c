/* SPDX-License-Identifier: Apache-2.0 */
/* Per-worker metric shards and their Prometheus rendering. A counter is an
 * atomic written only by its shard's thread with a relaxed load + store
 * (a plain add on x86, no lock prefix) and read by the scraper with a
 * relaxed load; shards are separate cache-line aligned allocations, so
 * workers never write a line another worker writes. */
#include "metrics.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "gw_buf.h"

#define METRICS_PREFIX "aicarpool_edge_"

#define N_DIALECTS (EDGE_DIALECT_COUNT + 1)
/* Account slots: 0 = none (no account), 1 = other (over the cap), then the
 * registry's slots. */
#define ACCT_NONE 0
#define ACCT_OTHER 1
#define N_ACCTS (EDGE_METRICS_MAX_ACCOUNTS + 2)
#define N_OUTCOMES 8
#define N_TOKEN_KINDS 4
/* Direct-mapped per-shard cache of account id -> slot (power of two). */
#define ACCT_CACHE 64

typedef atomic_uint_fast64_t metrics_ctr;

/* Statuses with their own label value; the others count by class. */
static const int metrics_statuses[] = {200, 201, 204, 400, 401, 403, 404, 405, 408, 409, 413,
                                       422, 429, 431, 499, 500, 501, 502, 503, 504, 529};
#define N_KNOWN_STATUS (sizeof(metrics_statuses) / sizeof(metrics_statuses[0]))
/* + 1xx..5xx classes + one for anything outside 100..599 */
#define N_STATUS (N_KNOWN_STATUS + 6)

/* Upper bounds in microseconds (request_duration_seconds). */
static const uint64_t metrics_buckets_us[] = {5000,     10000,    25000,    50000,    100000,
                                              250000,   500000,   1000000,  2500000,  5000000,
                                              10000000, 30000000, 60000000, 120000000};
static const char *const metrics_buckets_le[] = {"0.005", "0.01", "0.025", "0.05", "0.1",
                                                 "0.25",  "0.5",  "1",     "2.5",  "5",
                                                 "10",    "30",   "60",    "120"};
#define N_BUCKETS (sizeof(metrics_buckets_us) / sizeof(metrics_buckets_us[0]))

static const char *const metrics_token_kinds[N_TOKEN_KINDS] = {"input", "output", "cache_read",
                                                               "cache_write"};

struct edge_metrics_shard {
    struct edge_metrics *m;
    /* Worker-private: read and written by the shard's thread only. */
    uint64_t cache_id[ACCT_CACHE];
    uint16_t cache_slot[ACCT_CACHE];
    unsigned char cache_used[ACCT_CACHE];

    atomic_int_fast64_t open_connections;
    metrics_ctr requests[N_DIALECTS][N_STATUS][N_ACCTS];
    metrics_ctr errors[N_DIALECTS][GW_ERR_COUNT];
    metrics_ctr dur_bucket[N_DIALECTS][N_BUCKETS]; /* not cumulative */
    metrics_ctr dur_count[N_DIALECTS];
    metrics_ctr dur_sum_us[N_DIALECTS];
    metrics_ctr attempts[N_ACCTS][N_OUTCOMES];
    metrics_ctr tokens[N_DIALECTS][N_TOKEN_KINDS];
};

struct edge_metrics {
    size_t n_shards;
    struct edge_metrics_shard **shards;
    /* Account registry: slot i holds account_ids[i] (0 = free). Readers
     * load n_accounts (acquire) and scan; a writer fills the next slot
     * under mu and then publishes the count (release). */
    atomic_uint_fast64_t account_ids[EDGE_METRICS_MAX_ACCOUNTS];
    atomic_size_t n_accounts;
    uv_mutex_t mu;
};

static inline void
ctr_add(metrics_ctr *c, uint64_t v)
{
    /* Single writer: a load and a store, no atomic read-modify-write. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline uint64_t
ctr_get(metrics_ctr *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- registry ---- */

struct edge_metrics *
edge_metrics_new(size_t n_shards)
{
    struct edge_metrics *m = gw_xcalloc(1, sizeof(*m));

    if (n_shards == 0)
        n_shards = 1;
    m->n_shards = n_shards;
    m->shards = gw_xcalloc(n_shards, sizeof(*m->shards));
    for (size_t i = 0; i < n_shards; i++) {
        size_t size = (sizeof(struct edge_metrics_shard) + 63) & ~(size_t)63;
        struct edge_metrics_shard *s = aligned_alloc(64, size);
        if (s == NULL)
            abort();
        /* All-zero bytes are valid zero atomics on every target we build. */
        memset(s, 0, size);
        s->m = m;
        atomic_init(&s->open_connections, 0);
        m->shards[i] = s;
    }
    for (size_t i = 0; i < EDGE_METRICS_MAX_ACCOUNTS; i++)
        atomic_init(&m->account_ids[i], 0);
    atomic_init(&m->n_accounts, 0);
    uv_mutex_init(&m->mu);
    return m;
}

void
edge_metrics_free(struct edge_metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_shards; i++)
        free(m->shards[i]);
    free(m->shards);
    uv_mutex_destroy(&m->mu);
    free(m);
}

struct edge_metrics_shard *
edge_metrics_shard(struct edge_metrics *m, size_t i)
{
    return i < m->n_shards ? m->shards[i] : NULL;
}

size_t
edge_metrics_shard_count(const struct edge_metrics *m)
{
    return m->n_shards;
}

atomic_int_fast64_t *
edge_metrics_conn_gauge(struct edge_metrics_shard *s)
{
    return &s->open_connections;
}

/* ---- label slots ---- */

static unsigned
metrics_dialect(unsigned d)
{
    return d < N_DIALECTS ? d : EDGE_METRICS_DIALECT_NONE;
}

static const char *
metrics_dialect_name(unsigned d)
{
    return d < EDGE_DIALECT_COUNT ? edge_dialect_name((enum edge_dialect)d) : "none";
}

static unsigned
metrics_status_slot(int status)
{
    for (unsigned i = 0; i < N_KNOWN_STATUS; i++) {
        if (metrics_statuses[i] == status)
            return i;
    }
    if (status >= 100 && status <= 599)
        return (unsigned)(N_KNOWN_STATUS + (unsigned)(status / 100 - 1));
    return N_STATUS - 1;
}

static void
metrics_status_label(unsigned slot, char *out, size_t out_size)
{
    if (slot < N_KNOWN_STATUS)
        snprintf(out, out_size, "%d", metrics_statuses[slot]);
    else if (slot < N_STATUS - 1)
        snprintf(out, out_size, "%uxx", slot - (unsigned)N_KNOWN_STATUS + 1);
    else
        snprintf(out, out_size, "other");
}

static uint64_t
metrics_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    return x;
}

/* The registry slot of id, assigning one when there is room; -1 when full. */
static int
metrics_registry_slot(struct edge_metrics *m, uint64_t id)
{
    size_t n = atomic_load_explicit(&m->n_accounts, memory_order_acquire);
    int slot = -1;

    for (size_t i = 0; i < n; i++) {
        if (atomic_load_explicit(&m->account_ids[i], memory_order_relaxed) == id)
            return (int)i;
    }
    uv_mutex_lock(&m->mu);
    n = atomic_load_explicit(&m->n_accounts, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        if (atomic_load_explicit(&m->account_ids[i], memory_order_relaxed) == id) {
            slot = (int)i;
            break;
        }
    }
    if (slot < 0 && n < EDGE_METRICS_MAX_ACCOUNTS) {
        atomic_store_explicit(&m->account_ids[n], id, memory_order_relaxed);
        atomic_store_explicit(&m->n_accounts, n + 1, memory_order_release);
        slot = (int)n;
    }
    uv_mutex_unlock(&m->mu);
    return slot;
}

/* The account slot for id: worker-local cache first; the shared registry
 * only on a miss (once per account per cache line). */
static unsigned
metrics_account_slot(struct edge_metrics_shard *s, uint64_t id)
{
    unsigned h;
    int r;

    if (id == 0)
        return ACCT_NONE;
    h = (unsigned)(metrics_mix(id) & (ACCT_CACHE - 1));
    if (s->cache_used[h] && s->cache_id[h] == id)
        return s->cache_slot[h];
    r = metrics_registry_slot(s->m, id);
    s->cache_used[h] = 1;
    s->cache_id[h] = id;
    s->cache_slot[h] = (uint16_t)(r < 0 ? ACCT_OTHER : (unsigned)r + 2);
    return s->cache_slot[h];
}

static const char *
metrics_outcome_name(unsigned o)
{
    switch (o) {
    case EDGE_ROUTE_OK:
        return "ok";
    case EDGE_ROUTE_CONNECT_FAIL:
        return "connect_fail";
    case EDGE_ROUTE_TIMEOUT:
        return "timeout";
    case EDGE_ROUTE_5XX:
        return "5xx";
    case EDGE_ROUTE_429:
        return "429";
    case EDGE_ROUTE_529:
        return "529";
    case EDGE_ROUTE_AUTH_FAIL:
        return "auth_fail";
    default:
        return "other";
    }
}

/* ---- recording (the shard's thread) ---- */

void
edge_metrics_request(struct edge_metrics_shard *s, unsigned dialect, int status,
                     uint64_t account_id, uint64_t duration_us,
                     const struct edge_metrics_tokens *tokens)
{
    unsigned d = metrics_dialect(dialect);
    unsigned b;

    ctr_add(&s->requests[d][metrics_status_slot(status)][metrics_account_slot(s, account_id)], 1);
    for (b = 0; b < N_BUCKETS && duration_us > metrics_buckets_us[b]; b++)
        ;
    if (b < N_BUCKETS)
        ctr_add(&s->dur_bucket[d][b], 1);
    ctr_add(&s->dur_count[d], 1);
    ctr_add(&s->dur_sum_us[d], duration_us);
    if (tokens != NULL) {
        if (tokens->input)
            ctr_add(&s->tokens[d][0], tokens->input);
        if (tokens->output)
            ctr_add(&s->tokens[d][1], tokens->output);
        if (tokens->cache_read)
            ctr_add(&s->tokens[d][2], tokens->cache_read);
        if (tokens->cache_write)
            ctr_add(&s->tokens[d][3], tokens->cache_write);
    }
}

void
edge_metrics_error(struct edge_metrics_shard *s, unsigned dialect, gw_err reason)
{
    unsigned r = (unsigned)reason < GW_ERR_COUNT ? (unsigned)reason : GW_EINTERNAL;

    ctr_add(&s->errors[metrics_dialect(dialect)][r], 1);
}

void
edge_metrics_upstream_attempt(struct edge_metrics_shard *s, uint64_t account_id,
                              enum edge_route_outcome outcome)
{
    unsigned o = (unsigned)outcome < N_OUTCOMES ? (unsigned)outcome : N_OUTCOMES - 1;

    ctr_add(&s->attempts[metrics_account_slot(s, account_id)][o], 1);
}

/* ---- rendering (any thread) ---- */

/* Label value of an account slot; ids are snapshot ids (decimal). */
static void
metrics_account_label(struct edge_metrics *m, unsigned slot, char *out, size_t out_size)
{
    if (slot == ACCT_NONE)
        snprintf(out, out_size, "none");
    else if (slot == ACCT_OTHER)
        snprintf(out, out_size, "other");
    else
        snprintf(out, out_size, "%" PRIu64,
                 (uint64_t)atomic_load_explicit(&m->account_ids[slot - 2], memory_order_relaxed));
}

static void
metrics_reason_label(unsigned r, char *out, size_t out_size)
{
    const char *name = gw_err_name((gw_err)r);
    size_t i = 0;

    if (name[0] == 'E' && name[1] != '\0')
        name++;
    for (; name[i] != '\0' && i + 1 < out_size; i++)
        out[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    out[i] = '\0';
}

static void
metrics_head(struct gw_buf *out, const char *name, const char *type, const char *help)
{
    gw_buf_appendf(out, "# HELP " METRICS_PREFIX "%s %s\n# TYPE " METRICS_PREFIX "%s %s\n", name,
                   help, name, type);
}

static void
metrics_gauge(struct gw_buf *out, const char *name, const char *help, uint64_t v)
{
    metrics_head(out, name, "gauge", help);
    gw_buf_appendf(out, METRICS_PREFIX "%s %" PRIu64 "\n", name, v);
}

void
edge_metrics_render(struct edge_metrics *m, const struct edge_metrics_gauges *g, struct gw_buf *out)
{
    size_t n_accts = atomic_load_explicit(&m->n_accounts, memory_order_acquire) + 2;
    char acct[32], status[16], reason[32];
    int64_t conns = 0;

    /* requests_total */
    metrics_head(out, "requests_total", "counter",
                 "API requests finished, by client dialect, HTTP status and upstream account.");
    for (unsigned d = 0; d < N_DIALECTS; d++) {
        for (unsigned st = 0; st < N_STATUS; st++) {
            for (unsigned a = 0; a < n_accts; a++) {
                uint64_t v = 0;
                for (size_t i = 0; i < m->n_shards; i++)
                    v += ctr_get(&m->shards[i]->requests[d][st][a]);
                if (v == 0)
                    continue;
                metrics_status_label(st, status, sizeof(status));
                metrics_account_label(m, a, acct, sizeof(acct));
                gw_buf_appendf(
                    out,
                    METRICS_PREFIX
                    "requests_total{dialect=\"%s\",status=\"%s\",account=\"%s\"} %" PRIu64 "\n",
                    metrics_dialect_name(d), status, acct, v);
            }
        }
    }

    /* errors_total */
    metrics_head(out, "errors_total", "counter",
                 "Requests the edge failed itself, by client dialect and reason.");
    for (unsigned d = 0; d < N_DIALECTS; d++) {
        for (unsigned r = 0; r < GW_ERR_COUNT; r++) {
            uint64_t v = 0;
            for (size_t i = 0; i < m->n_shards; i++)
                v += ctr_get(&m->shards[i]->errors[d][r]);
            if (v == 0)
                continue;
            metrics_reason_label(r, reason, sizeof(reason));
            gw_buf_appendf(
                out, METRICS_PREFIX "errors_total{dialect=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
                metrics_dialect_name(d), reason, v);
        }
    }

    /* request_duration_seconds */
    metrics_head(out, "request_duration_seconds", "histogram",
                 "Time from the complete request to the end of the response, by client dialect.");
    for (unsigned d = 0; d < N_DIALECTS; d++) {
        uint64_t cum = 0, count = 0, sum_us = 0;
        for (size_t i = 0; i < m->n_shards; i++) {
            count += ctr_get(&m->shards[i]->dur_count[d]);
            sum_us += ctr_get(&m->shards[i]->dur_sum_us[d]);
        }
        if (count == 0 && d == EDGE_METRICS_DIALECT_NONE)
            continue;
        for (unsigned b = 0; b < N_BUCKETS; b++) {
            for (size_t i = 0; i < m->n_shards; i++)
                cum += ctr_get(&m->shards[i]->dur_bucket[d][b]);
            /* Shards are read one after the other: keep the series
             * monotonic even when a request lands mid-scrape. */
            if (cum > count)
                count = cum;
            gw_buf_appendf(out,
                           METRICS_PREFIX
                           "request_duration_seconds_bucket{dialect=\"%s\",le=\"%s\"} %" PRIu64
                           "\n",
                           metrics_dialect_name(d), metrics_buckets_le[b], cum);
        }
        gw_buf_appendf(out,
                       METRICS_PREFIX
                       "request_duration_seconds_bucket{dialect=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
                       metrics_dialect_name(d), count);
        gw_buf_appendf(out,
                       METRICS_PREFIX "request_duration_seconds_sum{dialect=\"%s\"} %" PRIu64
                                      ".%06" PRIu64 "\n",
                       metrics_dialect_name(d), sum_us / 1000000, sum_us % 1000000);
        gw_buf_appendf(
            out, METRICS_PREFIX "request_duration_seconds_count{dialect=\"%s\"} %" PRIu64 "\n",
            metrics_dialect_name(d), count);
    }

    /* upstream_attempts_total */
    metrics_head(out, "upstream_attempts_total", "counter",
                 "Upstream attempts (failovers included), by account and outcome.");
    for (unsigned a = 0; a < n_accts; a++) {
        for (unsigned o = 0; o < N_OUTCOMES; o++) {
            uint64_t v = 0;
            for (size_t i = 0; i < m->n_shards; i++)
                v += ctr_get(&m->shards[i]->attempts[a][o]);
            if (v == 0)
                continue;
            metrics_account_label(m, a, acct, sizeof(acct));
            gw_buf_appendf(out,
                           METRICS_PREFIX
                           "upstream_attempts_total{account=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
                           acct, metrics_outcome_name(o), v);
        }
    }

    /* tokens_total */
    metrics_head(out, "tokens_total", "counter",
                 "Tokens billed, by client dialect and kind (cache_write: 5 m and 1 h).");
    for (unsigned d = 0; d < N_DIALECTS; d++) {
        for (unsigned k = 0; k < N_TOKEN_KINDS; k++) {
            uint64_t v = 0;
            for (size_t i = 0; i < m->n_shards; i++)
                v += ctr_get(&m->shards[i]->tokens[d][k]);
            if (v == 0)
                continue;
            gw_buf_appendf(out,
                           METRICS_PREFIX "tokens_total{dialect=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
                           metrics_dialect_name(d), metrics_token_kinds[k], v);
        }
    }

    for (size_t i = 0; i < m->n_shards; i++)
        conns += atomic_load_explicit(&m->shards[i]->open_connections, memory_order_relaxed);
    metrics_gauge(out, "open_connections", "Client connections open now.",
                  conns > 0 ? (uint64_t)conns : 0);
    if (g == NULL)
        return;
    metrics_gauge(out, "in_flight_requests", "API requests in progress.", g->in_flight_requests);
    metrics_gauge(out, "snapshot_version", "Configuration snapshot version in use (0: none yet).",
                  g->snapshot_version);
    metrics_gauge(out, "usage_queue_depth", "Usage records waiting to be acknowledged by the hub.",
                  g->usage_queue_depth);
    metrics_head(out, "usage_records_dropped_total", "counter",
                 "Usage records dropped because the queue to the hub was full.");
    gw_buf_appendf(out, METRICS_PREFIX "usage_records_dropped_total %" PRIu64 "\n",
                   g->usage_records_dropped);
    metrics_gauge(out, "cooldowns_active", "Accounts in a local cooldown now.",
                  g->cooldowns_active);
    metrics_gauge(out, "failing_accounts", "Accounts marked failing (401/403) now.",
                  g->failing_accounts);
    metrics_gauge(out, "upstream_in_flight", "Upstream requests in flight.", g->upstream_in_flight);
    metrics_gauge(out, "workers", "Worker threads.", g->workers);
}
