/* SPDX-License-Identifier: Apache-2.0 */
/* One API request through the edge, on one loop thread: dialect by path ->
 * gateway key check -> body scan -> per-key limits -> routing with failover
 * -> upstream transfer with the account's credential -> relay with
 * backpressure while metering -> usage record to the hub link. The
 * lifecycle code (edge.c) owns the loop, the server and the snapshot; it
 * hands each loop an edge_req_env and passes every API request here. */
#ifndef EDGE_EDGE_REQ_H
#define EDGE_EDGE_REQ_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "edge_config.h"
#include "gw_buf.h"
#include "gw_http.h"

struct edge_req;
struct edge_upstream;
struct edge_route;
struct edge_quota;
struct edge_hublink;
struct edge_snapshot;
struct edge_metrics_shard;

/* Counters of the request pipeline (atomics, so any thread may read them). */
struct edge_req_counters {
    atomic_uint_fast64_t requests;         /* API requests handled */
    atomic_uint_fast64_t upstream_started; /* transfers started to a provider (every attempt) */
    atomic_uint_fast64_t upstream_retries; /* attempts after the first (failover) */
    atomic_uint_fast64_t upstream_pauses;  /* transfers paused for a slow client */
    atomic_uint_fast64_t client_aborts;    /* clients that went away before the end */
    atomic_uint_fast64_t usage_records;    /* usage records handed to the hub link */
    atomic_uint_fast64_t active;           /* requests in progress (gauge) */
};

/* What one loop gives the pipeline. The lifecycle fills the public fields
 * and keeps them valid while the loop runs; the pipeline reads them on the
 * loop thread only. */
struct edge_req_env {
    uv_loop_t *loop;
    const struct edge_config *cfg;      /* borrowed */
    struct edge_upstream *up;           /* this loop's upstream (curl multi) */
    struct edge_route *route;           /* the router (shared, thread-safe) */
    struct edge_quota *quota;           /* shared per-key limits; NULL = no limits */
    struct edge_hublink *link;          /* shared; push_* are thread-safe */
    struct edge_snapshot *snap;         /* current snapshot; the lifecycle owns this
                                           reference and swaps it on this loop thread;
                                           NULL before the first one */
    struct edge_req_counters *stats;    /* counters (atomics; may be shared) */
    struct edge_metrics_shard *metrics; /* this loop's metrics shard; NULL = none */
    int shutting_down;                  /* set by the lifecycle when the loop stops */

    /* Private to edge_req.c. */
    uv_idle_t reaper; /* frees finished requests outside their callbacks */
    struct edge_req *reap_head;
    char rid_prefix[24];
    uint64_t rid_counter;
};

/* Initialises the private part of env (the public fields are left as the
 * caller set them) and the reaper handle on `loop`. `rid_prefix` (copied,
 * truncated to 23 bytes) starts every request id of this loop; give each
 * loop a distinct one. Loop thread (or before the loop runs). */
void edge_req_env_init(struct edge_req_env *env, uv_loop_t *loop, const char *rid_prefix);

/* Frees requests already finished and closes the reaper handle (the loop
 * must still run to complete the close). Call once, after the HTTP server
 * finished every request (gw_http_server_close's callback). Loop thread. */
void edge_req_env_close(struct edge_req_env *env);

/* Handles one API request (anything but the lifecycle's own endpoints such
 * as /healthz): finds the dialect and operation by path, answers 404/405 in
 * the client's dialect when none matches, else runs the pipeline. The
 * request is always finished, now or later. Loop thread. */
void edge_req_handle(struct edge_req_env *env, struct gw_http_req *hreq);

/* gw_http_error_body_cb for errors the server answers by itself (413, 431,
 * 408, 400): the body in the dialect the path suggests. `arg` unused. */
void edge_req_server_error_body(int status, const char *message, struct gw_str path,
                                struct gw_buf *out, void *arg);

#endif
