/* SPDX-License-Identifier: Apache-2.0 */
/* The edge's configuration: one struct and the gw_config table that fills it
 * from flags, AICARPOOL_* environment variables and the config file. The hub
 * embeds an edge and fills the same struct with edge_config_defaults() before
 * overriding what it wants. */
#ifndef EDGE_CONFIG_H
#define EDGE_CONFIG_H

#include <stdint.h>

#include "gw_config.h"

/* Version reported to the hub in Hello and by --version. */
#define EDGE_VERSION "0.1.0"

struct edge_config {
    char *listen;  /* "HOST:PORT" of the client-facing HTTP server */
    char *hub;     /* NNG URL of the hub's REP socket: inproc://, tcp://, tls+tcp:// */
    char *edge_id; /* this edge's id, sent in Hello and on every usage batch */
    char *region;
    int64_t poll_interval_ms; /* FetchSnapshot period */
    int64_t usage_batch_max;  /* records per UsageBatch */
    int64_t usage_flush_ms;   /* longest delay before queued usage is (re)sent */
    int64_t max_body_bytes;
    int64_t max_header_bytes;
    int64_t max_headers;
    int64_t max_connections;
    int64_t read_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t connect_timeout_ms;     /* upstream TCP + TLS connect */
    int64_t first_byte_timeout_ms;  /* upstream: until the response status line */
    int64_t stream_idle_timeout_ms; /* upstream: longest silence between chunks */
    int64_t total_timeout_ms;       /* upstream: whole transfer */
    char *log_level;
    int64_t usage_queue_max;         /* records held in memory while the hub is away */
    int64_t hub_timeout_ms;          /* send/receive timeout of one hub request */
    int64_t hub_max_msg_bytes;       /* largest hub reply accepted (snapshots) */
    int64_t stop_flush_ms;           /* on stop: longest wait to deliver pending usage */
    int64_t write_high_water;        /* queued response bytes before upstream reads pause */
    int64_t meter_body_max;          /* bytes of a JSON response kept to meter its usage */
    int64_t max_attempts;            /* upstream attempts per request (1 = no failover) */
    int64_t failover_budget_ms;      /* no new attempt after this long; 0 = no limit */
    char *tls_cert;                  /* PEM certificate chain; NULL = plain HTTP */
    char *tls_key;                   /* PEM private key; set with tls_cert or not at all */
    int64_t workers;                 /* worker threads; 0 = CPUs, at most 16 */
    int64_t drain_timeout_ms;        /* on stop: wait for in-flight requests this long */
    int64_t client_write_timeout_ms; /* drop a client that reads nothing this long; 0 = never */
    /* Distributed mode (remote edges). */
    char *enrol_secret;        /* enrolment secret from POST /api/edges; NULL = trusted inproc */
    char *data;                /* directory for snapshot.bin and usage.journal; NULL = none */
    char *link_cert;           /* PEM file with this edge's client certificate and key */
    char *link_ca;             /* PEM CA file that signs the hub's link certificate */
    char *push;                /* overrides HelloReply.push_url (the hub's PUB address) */
    char *journal_fsync;       /* "always", "batch" or "none" */
    int64_t heartbeat_ms;      /* Heartbeat period */
    int64_t deltas_poll_ms;    /* safety FetchDeltas period when pushes are flowing */
    int64_t journal_max_bytes; /* usage journal cap on disk */
};

/* The table (ends with a NULL key) for gw_config_load() and friends. Keys:
 * listen, hub, edge-id, region, poll-interval-ms, usage-batch-max,
 * usage-flush-ms, usage-queue-max, max-body-bytes, max-header-bytes,
 * max-headers, max-connections, read-timeout-ms, idle-timeout-ms,
 * connect-timeout-ms, first-byte-timeout-ms, stream-idle-timeout-ms,
 * total-timeout-ms, hub-timeout-ms, hub-max-msg-bytes, stop-flush-ms,
 * write-high-water, meter-body-max, max-attempts, failover-budget-ms,
 * tls-cert, tls-key, workers, drain-timeout-ms, client-write-timeout-ms,
 * log-level, enrol-secret (secret), data, link-cert, link-ca, push,
 * journal-fsync, heartbeat-ms, deltas-poll-ms, journal-max-bytes. */
extern const struct gw_cfg_entry edge_config_table[];

/* Fills every field of *cfg with its default from the table (previous
 * contents are overwritten, not freed). Strings become owned copies: release
 * with edge_config_free(). */
void edge_config_defaults(struct edge_config *cfg);

/* Frees the string fields (gw_config_free with edge_config_table). */
void edge_config_free(struct edge_config *cfg);

#endif
