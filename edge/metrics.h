/* SPDX-License-Identifier: Apache-2.0 */
/* The edge's Prometheus metrics (text exposition format 0.0.4). Counters
 * and histograms live in one shard per worker thread: the worker is the
 * only writer of its shard (plain relaxed loads and stores, no lock, no
 * read-modify-write on a line another thread writes), and a scrape adds the
 * shards up. Label values are bounded: dialects and statuses come from
 * fixed tables, accounts get one of EDGE_METRICS_MAX_ACCOUNTS slots on first
 * sight (a slot is assigned under a mutex, once per account id per edge);
 * later ones are counted as account="other".
 *
 * Families (prefix aicarpool_edge_):
 *   requests_total{dialect,status,account}     counter
 *   errors_total{dialect,reason}               counter (reason: gw_err name)
 *   request_duration_seconds{dialect}          histogram, 5 ms .. 120 s
 *   upstream_attempts_total{account,outcome}   counter
 *   tokens_total{dialect,kind}                 counter (input, output,
 *                                              cache_read, cache_write)
 *   open_connections, in_flight_requests, snapshot_version,
 *   usage_queue_depth, cooldowns_active, failing_accounts,
 *   upstream_in_flight, workers                gauges (see edge_metrics_gauges)
 *   usage_records_dropped_total                counter (from the hub link) */
#ifndef EDGE_METRICS_H
#define EDGE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "dialect.h"
#include "gw_buf.h"
#include "gw_err.h"
#include "route.h"

/* Distinct account ids with their own label value; more are "other". */
#define EDGE_METRICS_MAX_ACCOUNTS 128

/* "No dialect" (a path no API matched): dialect="none". */
#define EDGE_METRICS_DIALECT_NONE EDGE_DIALECT_COUNT

struct edge_metrics;
struct edge_metrics_shard;

/* Token counts of one request, as billed. */
struct edge_metrics_tokens {
    uint64_t input, output, cache_read, cache_write;
};

/* Values sampled at scrape time by the caller. */
struct edge_metrics_gauges {
    uint64_t snapshot_version;      /* 0 before the first snapshot */
    uint64_t usage_queue_depth;     /* usage records waiting for the hub */
    uint64_t usage_records_dropped; /* counter: refused because the queue was full */
    uint64_t cooldowns_active;      /* accounts cooling down now (router) */
    uint64_t failing_accounts;      /* accounts marked failing now (router) */
    uint64_t upstream_in_flight;    /* upstream slots taken (router) */
    uint64_t in_flight_requests;    /* API requests in progress */
    uint64_t workers;               /* worker threads */
};

/* A registry with n_shards shards (n_shards >= 1; each shard is its own
 * cache-line aligned allocation). Returns an owned object (allocation
 * aborts). Any thread. */
struct edge_metrics *edge_metrics_new(size_t n_shards);
/* Frees the registry and its shards; no record or render call may run.
 * NULL is a no-op. */
void edge_metrics_free(struct edge_metrics *m);
/* Shard i (i < n_shards), borrowed for the registry's lifetime. Give each
 * worker thread its own: a shard must only be written by one thread. */
struct edge_metrics_shard *edge_metrics_shard(struct edge_metrics *m, size_t i);
size_t edge_metrics_shard_count(const struct edge_metrics *m);

/* The open-connection gauge of a shard, for gw_http_server_set_conn_gauge
 * (the worker's HTTP server adds and removes its connections there). */
atomic_int_fast64_t *edge_metrics_conn_gauge(struct edge_metrics_shard *s);

/* One finished API request: requests_total{dialect, status, account},
 * the duration histogram and tokens_total. dialect: an edge_dialect or
 * EDGE_METRICS_DIALECT_NONE (out of range counts as none). status: the
 * HTTP status the client got (499 when it left first). account_id: 0 when
 * no account was chosen. tokens may be NULL (none). The shard's thread. */
void edge_metrics_request(struct edge_metrics_shard *s, unsigned dialect, int status,
                          uint64_t account_id, uint64_t duration_us,
                          const struct edge_metrics_tokens *tokens);

/* One request the edge failed itself (auth, limits, no account, upstream
 * failure, timeout, client gone ...): errors_total{dialect, reason} with
 * reason = the lower-case gw_err name without its E ("auth", "quota",
 * "noaccount", "upstream", "timedout", "closed", ...). The shard's thread. */
void edge_metrics_error(struct edge_metrics_shard *s, unsigned dialect, gw_err reason);

/* One upstream attempt and how it ended (the router's outcome):
 * upstream_attempts_total{account, outcome}. The shard's thread. */
void edge_metrics_upstream_attempt(struct edge_metrics_shard *s, uint64_t account_id,
                                   enum edge_route_outcome outcome);

/* Appends the text exposition of every family to out: the shards summed
 * (relaxed loads; a scrape concurrent with recording sees each counter at
 * some recent value), series with a zero value left out except the
 * histogram's, then the gauges from g (may be NULL: gauges other than
 * open_connections omitted). Serve it as "text/plain; version=0.0.4". Any
 * thread. */
void edge_metrics_render(struct edge_metrics *m, const struct edge_metrics_gauges *g,
                         struct gw_buf *out);

#endif
