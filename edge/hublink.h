/* SPDX-License-Identifier: Apache-2.0 */
/* The edge side of the hub link: an NNG REQ socket dialing the hub and one
 * dedicated thread that enrols (Hello, and the HMAC proof over the hub's
 * nonce when the hub asks for one), keeps the configuration current
 * (Deltas pushed on a SUB socket, FetchDeltas on a gap and as a slow safety
 * poll, FetchSnapshot on a cold start or when the hub says so), sends
 * heartbeats, and delivers the usage records and account events the
 * request path queues here as numbered UsageBatch messages, resending the
 * same (seq, contents) until the hub acknowledges it, so the hub can apply
 * each batch exactly once. With a data directory, usage records are
 * journaled (journal.h) before they are queued and the last snapshot is
 * kept encrypted on disk (snapshot_file.h) to serve from when the hub is
 * unreachable at start-up.
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

enum edge_snapshot_source {
    EDGE_SNAPSHOT_NONE = 0,
    EDGE_SNAPSHOT_HUB,  /* received from the hub */
    EDGE_SNAPSHOT_DISK, /* loaded from DATA/snapshot.bin; the hub has not answered yet */
};

/* Fills the request counters for heartbeats; any thread may be the caller
 * (the link thread calls it). */
typedef void (*edge_hublink_counters_fn)(void *arg, uint64_t *requests_total,
                                         uint64_t *errors_total);

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
    enum edge_snapshot_source snapshot_source;
    uint64_t deltas_applied; /* Deltas messages applied (pushed or fetched) */
    uint64_t pushes;         /* Deltas received on the SUB socket */
    uint64_t heartbeats;     /* heartbeats acknowledged */
    uint64_t auth_failures;  /* EAUTH answers (enrolment refused or lost) */
    uint64_t journal_full;   /* records not journaled because the journal hit its cap */
};

/* Creates a link from cfg (borrowed; the fields used are copied: hub,
 * edge_id, region, poll_interval_ms, usage_batch_max, usage_flush_ms,
 * usage_queue_max, hub_timeout_ms, hub_max_msg_bytes, stop_flush_ms,
 * enrol_secret, data, link_cert, link_ca, push, journal_fsync,
 * heartbeat_ms, deltas_poll_ms, journal_max_bytes). `cb` receives
 * snapshots (required). Returns an owned link; nothing runs until
 * edge_hublink_start(). GW_EINVAL for a missing hub URL or edge id, a bad
 * journal-fsync value, or a tls+tcp:// hub without link-ca. */
gw_err edge_hublink_new(const struct edge_config *cfg, edge_hublink_snapshot_cb cb, void *arg,
                        struct edge_hublink **out) GW_WARN_UNUSED;

/* Sets the source of the heartbeat's request counters (optional; call
 * before start). */
void edge_hublink_set_counters(struct edge_hublink *h, edge_hublink_counters_fn fn, void *arg);

/* Opens the usage journal (when a data directory is set; its unacknowledged
 * records are queued again, the in-flight batch keeping its seq), opens the
 * REQ socket, starts dialing the hub in the background (an absent hub is
 * retried, not an error) and starts the link thread. GW_EINVAL for a URL
 * NNG does not accept or unusable TLS files, GW_EIO when the journal cannot
 * be opened, GW_EINTERNAL when the socket or thread cannot be created. Call
 * once. */
gw_err edge_hublink_start(struct edge_hublink *h) GW_WARN_UNUSED;

/* Journals (write(2) only; fsync too with journal-fsync=always) and
 * queues one usage record (copied) for delivery; wakes the link thread only
 * when a full batch is ready or the flush timer must be armed. Never blocks
 * on the network. GW_EQUOTA when usage_queue_max records are already
 * waiting: the record is dropped and logged. Any thread, after start when a
 * data directory is set (before, records are queued but not journaled). */
gw_err edge_hublink_push_usage(struct edge_hublink *h, const struct gw_usage_record *rec);

/* Queues one account event (copied; the router's 401/403/429 verdicts for
 * the hub) to go out with the next usage batch, which is also sent when it
 * holds only events. Never blocks on the network. GW_EQUOTA when 1024
 * events are already waiting (dropped and counted). Any thread. */
gw_err edge_hublink_push_account_event(struct edge_hublink *h, const struct gw_account_event *ev);

/* Copies the counters into *out. Any thread. */
void edge_hublink_get_stats(struct edge_hublink *h, struct edge_hublink_stats *out);

/* Blocking: asks the thread to deliver what is pending within stop_flush_ms,
 * then closes the sockets (interrupting a call still in progress), joins
 * the thread, writes the snapshot file if a write is pending and closes the
 * journal. Records still undelivered are logged (they stay in the journal
 * when there is one, else they are lost). Safe to call more than once and
 * without start. */
void edge_hublink_stop(struct edge_hublink *h);

/* Stops (if needed) and frees. NULL is a no-op. */
void edge_hublink_free(struct edge_hublink *h);

#endif
