/* SPDX-License-Identifier: Apache-2.0 */
/* The edge's configuration table: every key, its default, bounds and help
 * text in one place, so flags, environment, --print-config and the docs
 * reference cannot drift apart. */
#include "edge_config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "gw_log.h"

#define CFG_STR(k, d, field, h)                                                                    \
    {                                                                                              \
        (k), GW_CFG_STR, (d), 0, 0, 0, offsetof(struct edge_config, field), (h)                    \
    }
#define CFG_INT(k, d, lo, hi, fl, field, h)                                                        \
    {                                                                                              \
        (k), GW_CFG_INT, (d), (lo), (hi), (fl), offsetof(struct edge_config, field), (h)           \
    }

#define RELOAD GW_CFG_F_RELOADABLE
#define HOUR_MS INT64_C(3600000)
#define DAY_MS (24 * HOUR_MS)

const struct gw_cfg_entry edge_config_table[] = {
    CFG_STR("listen", "127.0.0.1:8080", listen,
            "HOST:PORT of the client-facing HTTP server (port 0: any free port)"),
    CFG_STR("hub", "inproc://aicarpool-link", hub,
            "NNG URL of the hub link (inproc://, tcp://, tls+tcp://)"),
    CFG_STR("edge-id", "local", edge_id, "Id of this edge, unique per hub"),
    CFG_STR("region", "", region, "Region label sent to the hub"),
    CFG_INT("poll-interval-ms", "1000", 10, HOUR_MS, RELOAD, poll_interval_ms,
            "How often the edge asks the hub for a newer configuration snapshot"),
    CFG_INT("usage-batch-max", "1000", 1, 100000, RELOAD, usage_batch_max,
            "Most usage records in one batch sent to the hub"),
    CFG_INT("usage-flush-ms", "50", 1, HOUR_MS, RELOAD, usage_flush_ms,
            "Longest delay before a pending usage record is sent (and before an unacknowledged "
            "batch is resent)"),
    CFG_INT("usage-queue-max", "100000", 1, 100000000, 0, usage_queue_max,
            "Usage records held in memory while the hub is unreachable"),
    CFG_INT("max-body-bytes", "33554432", 1024, INT64_C(1) << 31, 0, max_body_bytes,
            "Largest request body accepted (413 above)"),
    CFG_INT("max-header-bytes", "65536", 1024, 1048576, 0, max_header_bytes,
            "Largest request line plus headers accepted (431 above)"),
    CFG_INT("max-headers", "100", 8, 10000, 0, max_headers, "Most request headers accepted"),
    CFG_INT("max-connections", "10000", 1, 10000000, 0, max_connections,
            "Most client connections open at once"),
    CFG_INT("read-timeout-ms", "60000", 100, DAY_MS, 0, read_timeout_ms,
            "Longest time a client may take to send one request"),
    CFG_INT("idle-timeout-ms", "75000", 100, DAY_MS, 0, idle_timeout_ms,
            "Idle keep-alive connections are closed after this"),
    CFG_INT("connect-timeout-ms", "10000", 0, HOUR_MS, RELOAD, connect_timeout_ms,
            "Upstream connect (TCP + TLS) timeout; 0 = none"),
    CFG_INT("first-byte-timeout-ms", "300000", 0, DAY_MS, RELOAD, first_byte_timeout_ms,
            "Upstream: longest wait for the response status line; 0 = none"),
    CFG_INT("stream-idle-timeout-ms", "300000", 0, DAY_MS, RELOAD, stream_idle_timeout_ms,
            "Upstream: longest silence between two response chunks; 0 = none"),
    CFG_INT("total-timeout-ms", "3600000", 0, DAY_MS, RELOAD, total_timeout_ms,
            "Upstream: longest whole transfer; 0 = none"),
    CFG_INT("hub-timeout-ms", "10000", 50, HOUR_MS, 0, hub_timeout_ms,
            "Send and receive timeout of one request to the hub"),
    CFG_INT("hub-max-msg-bytes", "67108864", 65536, INT64_C(1) << 31, 0, hub_max_msg_bytes,
            "Largest message accepted from the hub (configuration snapshots)"),
    CFG_INT("stop-flush-ms", "3000", 0, 600000, 0, stop_flush_ms,
            "On shutdown, longest wait to deliver pending usage to the hub"),
    CFG_INT("write-high-water", "262144", 4096, INT64_C(1) << 30, 0, write_high_water,
            "Queued response bytes per client before upstream reading pauses"),
    CFG_INT("meter-body-max", "4194304", 0, INT64_C(1) << 30, 0, meter_body_max,
            "Bytes of a non-streamed response kept to read its usage"),
    CFG_INT("max-attempts", "3", 1, 16, RELOAD, max_attempts,
            "Upstream attempts per request (failover to the next account before any byte is sent)"),
    CFG_INT("failover-budget-ms", "30000", 0, HOUR_MS, RELOAD, failover_budget_ms,
            "No new failover attempt starts this long after the request arrived; 0 = no limit"),
    CFG_STR("tls-cert", NULL, tls_cert,
            "PEM certificate chain (leaf first) for HTTPS on listen; needs tls-key; unset = "
            "plain HTTP"),
    CFG_STR("tls-key", NULL, tls_key, "PEM private key of tls-cert"),
    CFG_INT("workers", "0", 0, 256, 0, workers,
            "Worker threads, each with its own loop sharing the port (SO_REUSEPORT); 0 = one per "
            "CPU, at most 16"),
    CFG_INT("drain-timeout-ms", "30000", 0, HOUR_MS, 0, drain_timeout_ms,
            "On stop: how long requests in progress may finish before they are aborted (billed "
            "as partial)"),
    CFG_INT("client-write-timeout-ms", "60000", 0, DAY_MS, 0, client_write_timeout_ms,
            "A client that reads nothing of a pending response for this long is dropped; 0 = "
            "never"),
    CFG_STR("log-level", "info", log_level, "error, warn, info or debug"),
    {"enrol-secret", GW_CFG_STR, NULL, 0, 0, GW_CFG_F_SECRET,
     offsetof(struct edge_config, enrol_secret),
     "Enrolment secret POST /api/edges returned (also AICARPOOL_ENROL_SECRET); keys the "
     "Hello proof and the on-disk snapshot; unset = trusted in-process edge"},
    CFG_STR("data", NULL, data,
            "Directory for the encrypted snapshot copy and the usage journal; unset = none"),
    CFG_STR("link-cert", NULL, link_cert,
            "PEM file holding this edge's client certificate and its key (tls+tcp:// hub)"),
    CFG_STR("link-ca", NULL, link_ca, "PEM CA file that verifies the hub (tls+tcp:// hub)"),
    CFG_STR("push", NULL, push,
            "NNG URL of the hub's change push (PUB); unset = the address the hub announces"),
    CFG_STR("journal-fsync", "batch", journal_fsync,
            "Usage journal fsync: always (every record), batch (before each batch is sent and at "
            "most every 100 ms) or none"),
    CFG_INT("heartbeat-ms", "5000", 100, HOUR_MS, 0, heartbeat_ms,
            "How often the edge sends a heartbeat with its stats to the hub"),
    CFG_INT("deltas-poll-ms", "5000", 100, HOUR_MS, 0, deltas_poll_ms,
            "Safety poll for configuration changes in case a push was lost"),
    CFG_INT("journal-max-bytes", "1073741824", 1048576, INT64_C(1) << 40, 0, journal_max_bytes,
            "Usage journal cap on disk; beyond it new records are logged and kept in memory only"),
    {NULL, GW_CFG_STR, NULL, 0, 0, 0, 0, NULL},
};

void
edge_config_defaults(struct edge_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (const struct gw_cfg_entry *e = edge_config_table; e->key; e++) {
        struct gw_buf errors = GW_BUF_INIT;
        gw_err rv;

        if (e->def == NULL)
            continue;
        rv = gw_config_set(edge_config_table, cfg, e->key, e->def, &errors);
        if (rv != GW_OK)
            gw_log(GW_LOG_ERROR, "EDGE-CONFIG", "bad default for %s: %s", e->key,
                   errors.data ? errors.data : gw_strerror(rv));
        gw_buf_fini(&errors);
    }
}

void
edge_config_free(struct edge_config *cfg)
{
    gw_config_free(edge_config_table, cfg);
}
