/* SPDX-License-Identifier: Apache-2.0 */
/* The edge as an embeddable object: worker threads, each a libuv loop
 * running the client-facing HTTP(S) server on the shared port and the
 * request pipeline (key check, body scan, routing, upstream relay with
 * metering), plus the hub link thread. The aicarpool-edge program and the
 * hub's in-process edge both use this API. */
#ifndef EDGE_EDGE_H
#define EDGE_EDGE_H

#include <stdint.h>

#include "edge_config.h"
#include "gw_buf.h"
#include "gw_err.h"

struct edge;

/* Counters of the request pipeline (monotonic unless noted). */
struct edge_stats {
    uint64_t requests;         /* API requests handled (not health checks) */
    uint64_t upstream_started; /* transfers started to a provider (every attempt) */
    uint64_t upstream_retries; /* attempts after the first one of a request (failover) */
    uint64_t upstream_pauses;  /* times a transfer was paused for a slow client */
    uint64_t client_aborts;    /* clients that went away before the end */
    uint64_t usage_records;    /* usage records handed to the hub link */
    uint64_t active;           /* requests in progress now (gauge) */
    uint64_t snapshot_version; /* version in use, 0 before the first (gauge) */
};

/* Creates an edge from cfg, which is borrowed and must outlive the edge.
 * Nothing runs yet. GW_EINVAL for a missing listen address, hub URL or edge
 * id. Returns an owned edge in *out. Any thread. */
gw_err edge_new(const struct edge_config *cfg, struct edge **out) GW_WARN_UNUSED;

/* Starts `workers` worker threads (0: one per CPU, at most 16), each with
 * its own loop, upstream client and HTTP server on the listen address
 * (shared with SO_REUSEPORT when there are several; with port 0 the first
 * one picks the port and the others join it), speaking HTTPS when
 * tls-cert/tls-key are set, then the hub link thread. Returns once every
 * listener is bound: GW_OK, or an error with a message appended to `err`
 * (may be NULL), e.g. GW_EINVAL for a bad listen address or only one of
 * tls-cert/tls-key, GW_EIO for an unreadable TLS file, GW_EPROTO for a bad
 * certificate or key. Call once, from the thread that will call
 * edge_stop(). */
gw_err edge_start(struct edge *e, struct gw_buf *err) GW_WARN_UNUSED;

/* The port the listener is bound to (useful with port 0); 0 before start. */
int edge_bound_port(const struct edge *e);

/* Copies the counters. Any thread (the counters are atomics). */
void edge_get_stats(const struct edge *e, struct edge_stats *out);

/* Blocking graceful stop: every worker stops accepting (idle keep-alive
 * connections are closed, /readyz answers 503), requests in progress may
 * finish for up to drain_timeout_ms, then the rest are aborted (their
 * usage billed as partial); the worker threads are joined, then the hub
 * link delivers pending usage (bounded by stop_flush_ms) and is joined.
 * Safe to call more than once, and without a successful start. */
void edge_stop(struct edge *e);

/* Stops if needed and frees everything. NULL is a no-op. */
void edge_free(struct edge *e);

#endif
