/* SPDX-License-Identifier: Apache-2.0 */
/* Per-key local limits of one edge: concurrent requests, requests per
 * minute and tokens per minute. One object is shared by every worker
 * thread; all functions are thread-safe and never block on I/O.
 *
 * Rates use a sliding two-window estimate over fixed 60 s windows aligned
 * to multiples of 60000 ms of now_ms: with `prev` and `cur` the counts of
 * the previous and the current window and `e` the ms elapsed in the current
 * one, the rate is prev * (60000 - e) / 60000 + cur. Tokens of requests
 * still running count as a reservation: est_tokens is reserved on admit and,
 * on settle, released while actual_tokens are added to the window of the
 * settle time (so a long stream never corrects a window that has already
 * rolled away). A request is admitted when rate (+ reserved tokens) + need
 * <= limit, need = 1 request or est_tokens tokens. A need that alone
 * exceeds the limit is admitted only while rate and reservation are 0, so
 * an oversize request can still run, alone. A refusal counts nothing.
 * retry_after_ms is the exact time until the windows let the same request
 * in if nothing else changes (rounded up to whole ms); when only running
 * requests can free enough (concurrency, or reserved tokens), the time is
 * unknown and 1000 ms is given (or the window time, when that is longer).
 *
 * State per key id lives in 64 stripes, each a mutex and an open-addressing
 * table; keys without any limit take no lock and keep no state. Memory is
 * bounded by the keys of the snapshot: edge_quota_prune drops the others. */
#ifndef EDGE_QUOTA_H
#define EDGE_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "gw_err.h"
#include "snapshot.h"

struct edge_quota;

/* Returns an owned, empty quota object (allocation aborts). */
struct edge_quota *edge_quota_new(void);
/* Frees it; NULL is a no-op. No other call may be running. */
void edge_quota_free(struct edge_quota *q);

struct edge_quota_verdict {
    gw_err err;             /* GW_OK, or GW_EQUOTA when refused */
    const char *limit;      /* static: "concurrent requests", "requests per minute",
                               "tokens per minute"; NULL when admitted */
    int64_t retry_after_ms; /* > 0 when refused, 0 when admitted */
};

/* Checks key k (borrowed) at now_ms (unix ms) in this order: concurrency,
 * requests per minute, tokens per minute (limits of 0 are unlimited). When
 * all pass, counts one in-flight request, one request and est_tokens tokens
 * and returns err GW_OK; the caller must then call edge_quota_settle exactly
 * once with the same k and est_tokens when the request ends (also when it
 * fails). When one refuses, nothing is counted. Any thread. */
struct edge_quota_verdict edge_quota_admit(struct edge_quota *q, const struct edge_key *k,
                                           uint64_t est_tokens, uint64_t now_ms);

/* Ends a request admitted with edge_quota_admit: releases its in-flight
 * slot and its est_tokens reservation, and counts actual_tokens in the
 * window of now_ms. Any thread. */
void edge_quota_settle(struct edge_quota *q, const struct edge_key *k, uint64_t est_tokens,
                       uint64_t actual_tokens, uint64_t now_ms);

/* Drops the state of keys that are not in snapshot s (borrowed; matched by
 * key hash and id). Settling a request of a pruned key is a no-op. Any
 * thread. */
void edge_quota_prune(struct edge_quota *q, const struct edge_snapshot *s);

/* Keys with state (for tests and metrics). Any thread. */
size_t edge_quota_key_count(struct edge_quota *q);

/* In-flight requests counted for key `key_id`; 0 when it has no state. */
uint32_t edge_quota_in_flight(struct edge_quota *q, uint64_t key_id);

#endif
