/* SPDX-License-Identifier: Apache-2.0 */
/* The edge as an embeddable object: a libuv loop thread running the
 * client-facing HTTP server, the request pipeline (key check, body scan,
 * routing, upstream relay with metering) and the hub link thread. The
 * aicarpool-edge program and the hub's in-process edge both use this API. */
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
    uint64_t upstream_started; /* transfers started to a provider */
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

/* Binds the HTTP listener, starts the loop thread and then the hub link
 * thread. Returns once the listener is bound: GW_OK, or an error with a
 * message appended to `err` (may be NULL), e.g. GW_EINVAL for a bad listen
 * address, GW_EIO when the address is in use. Call once, from the thread
 * that will call edge_stop(). */
gw_err edge_start(struct edge *e, struct gw_buf *err) GW_WARN_UNUSED;

/* The port the listener is bound to (useful with port 0); 0 before start. */
int edge_bound_port(const struct edge *e);

/* Copies the counters. Any thread (the counters are atomics). */
void edge_get_stats(const struct edge *e, struct edge_stats *out);

/* Blocking: stops accepting, aborts requests in progress (their usage is
 * billed as partial), joins the loop thread, then lets the hub link deliver
 * pending usage (bounded by stop_flush_ms) and joins it. Safe to call more
 * than once, and without a successful start. */
void edge_stop(struct edge *e);

/* Stops if needed and frees everything. NULL is a no-op. */
void edge_free(struct edge *e);

#endif
