/* SPDX-License-Identifier: Apache-2.0 */
/* The edge side of the hub link: an NNG REQ socket dialing the hub and one
 * dedicated thread that says Hello, polls FetchSnapshot, and delivers the
 * usage records and account events the request path queues here as
 * numbered UsageBatch messages, resending the same (seq, contents) until
 * the hub acknowledges it, so the hub can apply each batch exactly once.
 *
 * Threading: new/start/stop/free from one controlling thread;
 * edge_hublink_push_usage(), edge_hublink_push_account_event() and
 * edge_hublink_get_stats() from any thread.
 * The snapshot callback runs on the link thread. */
#ifndef EDGE_HUBLINK_H
#define EDGE_HUBLINK_H

#include <stddef.h>
#include <stdint.h>

#include "edge_config.h"
#include "gw_err.h"
#include "gw_wire.h"
#include "snapshot.h"

struct edge_hublink;

/* A new full snapshot arrived. Runs on the link thread; takes ownership of
 * one reference to `snap` (the callee must unref it eventually). Must not
 * block for long: hand the snapshot to its consumer and return. */
typedef void (*edge_hublink_snapshot_cb)(void *arg, struct edge_snapshot *snap);

struct edge_hublink_stats {
    uint64_t hellos_ok;        /* Hello round trips completed */
    uint64_t snapshots;        /* full snapshots delivered to the callback */
    uint64_t snapshot_version; /* version of the last one (0: none yet) */
    uint64_t batches_sent;     /* UsageBatch sends, resends included */
    uint64_t batches_acked;
    uint64_t records_acked;
    uint64_t records_dropped; /* refused by push_usage because the queue was full */
    uint64_t errors;          /* failed round trips (timeouts, error replies, bad frames) */
    uint64_t next_seq;        /* seq the next new batch will carry */
    size_t queued;            /* records waiting, the in-flight batch included */
    size_t events_queued;     /* account events waiting, the in-flight batch included */
    uint64_t events_dropped;  /* refused by push_account_event because its queue was full */
};

/* Creates a link from cfg (borrowed; the fields used are copied: hub,
 * edge_id, region, poll_interval_ms, usage_batch_max, usage_flush_ms,
 * usage_queue_max, hub_timeout_ms, hub_max_msg_bytes, stop_flush_ms). `cb`
 * receives snapshots (required). Returns an owned link; nothing runs until
 * edge_hublink_start(). GW_EINVAL for a missing hub URL or edge id. */
gw_err edge_hublink_new(const struct edge_config *cfg, edge_hublink_snapshot_cb cb, void *arg,
                        struct edge_hublink **out) GW_WARN_UNUSED;

/* Opens the REQ socket, starts dialing the hub in the background (an absent
 * hub is retried, not an error) and starts the link thread. GW_EINVAL for a
 * URL NNG does not accept, GW_EINTERNAL when the socket or thread cannot be
 * created. Call once. */
gw_err edge_hublink_start(struct edge_hublink *h) GW_WARN_UNUSED;

/* Queues one usage record (copied) for delivery and wakes the link thread.
 * Never blocks on the network. GW_EQUOTA when usage_queue_max records are
 * already waiting: the record is dropped and logged. Any thread, also before
 * start (records wait for it). */
gw_err edge_hublink_push_usage(struct edge_hublink *h, const struct gw_usage_record *rec);

/* Queues one account event (copied; the router's 401/403/429 verdicts for
 * the hub) to go out with the next usage batch, which is also sent when it
 * holds only events. Never blocks on the network. GW_EQUOTA when 1024
 * events are already waiting (dropped and counted). Any thread. */
gw_err edge_hublink_push_account_event(struct edge_hublink *h, const struct gw_account_event *ev);

/* Copies the counters into *out. Any thread. */
void edge_hublink_get_stats(struct edge_hublink *h, struct edge_hublink_stats *out);

/* Blocking: asks the thread to deliver what is pending within stop_flush_ms,
 * then closes the socket (interrupting a call still in progress) and joins
 * the thread. Records still undelivered are logged and dropped. Safe to call
 * more than once and without start. */
void edge_hublink_stop(struct edge_hublink *h);

/* Stops (if needed) and frees. NULL is a no-op. */
void edge_hublink_free(struct edge_hublink *h);

#endif
