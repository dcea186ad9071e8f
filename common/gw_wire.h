/* SPDX-License-Identifier: Apache-2.0 */
/* The protobuf gate: our own structs for every message of the hub <-> edge
 * link (proto/carpool.proto) and their encoding. This is the only module
 * that includes the generated protobuf-c code; the rest of the program sees
 * only these structs. Decoding checks every size against a caller's limit
 * before allocating and rejects malformed frames with GW_EPROTO. */
#ifndef GW_WIRE_H
#define GW_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "gw_buf.h"
#include "gw_crypto.h"
#include "gw_err.h"

/* Limits on the list fields, checked on decode (a frame over them is
 * refused with GW_EPROTO) and enforced by the hub's admin API. */
#define GW_WIRE_MODELS_MAX 256              /* models of an account / allowed models of a key */
#define GW_WIRE_MODEL_LEN_MAX 128           /* bytes of one model name */
#define GW_WIRE_PROXY_LEN_MAX 2048          /* bytes of a proxy URL */
#define GW_WIRE_POOL_MEMBERS_MAX (1u << 20) /* accounts of one pool */
#define GW_WIRE_ACCOUNT_EVENTS_MAX 65536    /* account events in one usage batch */
#define GW_WIRE_CHANGES_MAX 65536           /* changes in one Deltas */
#define GW_WIRE_NONCE_LEN 32                /* enrolment nonce (HelloReply.nonce) */
#define GW_WIRE_NONCE_MAX 64                /* largest nonce / proof accepted on decode */

enum gw_msg_type {
    GW_MSG_NONE = 0,
    GW_MSG_HELLO,
    GW_MSG_HELLO_REPLY,
    GW_MSG_FETCH_SNAPSHOT,
    GW_MSG_SNAPSHOT,
    GW_MSG_USAGE_BATCH,
    GW_MSG_USAGE_ACK,
    GW_MSG_ERROR,
    GW_MSG_FETCH_DELTAS,
    GW_MSG_DELTAS,
    GW_MSG_HEARTBEAT,
    GW_MSG_HEARTBEAT_ACK,
};

/* All char * fields below are owned NUL-terminated strings (may be NULL
 * when absent) and all arrays are owned, in a decoded message or in one the
 * caller built with the gw_x* allocators; gw_msg_fini() frees them. */

struct gw_wire_hello {
    char *edge_id;
    char *region;
    char *version;
    uint8_t *proof;
    size_t proof_len;
    uint64_t snapshot_version;
};

struct gw_wire_hello_reply {
    uint64_t config_version;
    uint64_t last_usage_seq;
    uint8_t *nonce; /* owned; NULL when absent */
    size_t nonce_len;
    int authenticated;
    char *push_url;
};

struct gw_wire_fetch_snapshot {
    char *edge_id;
    uint64_t have_version;
};

struct gw_wire_key {
    uint64_t id;
    uint8_t key_hash[GW_SHA256_LEN];
    uint64_t group_id;
    int enabled;
    int64_t expires_at; /* unix seconds, 0 = never */
    uint32_t rpm_limit; /* 0 = unlimited */
    uint32_t tpm_limit;
    uint32_t concurrency_limit;
    char **allowed_models; /* owned array of owned strings; empty = any model */
    size_t n_allowed_models;
};

struct gw_wire_group {
    uint64_t id;
    char *name;
    char *mode;       /* "dedicated" (default when NULL), "pool", "hybrid" */
    uint64_t pool_id; /* 0 = none */
};

struct gw_wire_pool {
    uint64_t id;
    char *name;
    uint64_t *account_ids;
    size_t n_account_ids;
};

struct gw_wire_account {
    uint64_t id;
    char *name;
    char *kind; /* "anthropic", "mock", ... */
    char *base_url;
    uint8_t *credential; /* plaintext on the link; sealed when it comes out of the store */
    size_t credential_len;
    int32_t priority;
    int32_t weight;
    int enabled;
    char **models; /* owned; empty = any model */
    size_t n_models;
    uint32_t max_concurrency; /* 0 = unlimited */
    char *proxy;              /* NULL = direct */
    int64_t cooldown_until_ms;
};

struct gw_wire_binding {
    uint64_t group_id;
    uint64_t account_id;
};

struct gw_wire_snapshot {
    uint64_t version;
    int unchanged; /* nothing newer than the edge's version; arrays empty */
    struct gw_wire_key *keys;
    size_t n_keys;
    struct gw_wire_group *groups;
    size_t n_groups;
    struct gw_wire_account *accounts;
    size_t n_accounts;
    struct gw_wire_binding *bindings;
    size_t n_bindings;
    struct gw_wire_pool *pools;
    size_t n_pools;
};

/* One metered request. Fixed-size text fields so the edge can fill records
 * without allocating; longer values are truncated on decode. */
struct gw_usage_record {
    char request_id[48];
    uint64_t key_id;
    uint64_t account_id;
    char model[128];
    char dialect[16]; /* "anthropic", "openai", "gemini" */
    uint64_t input_tokens;
    uint64_t output_tokens;
    uint64_t cache_read_tokens;
    uint64_t cache_write_5m_tokens;
    uint64_t cache_write_1h_tokens;
    uint64_t reasoning_tokens;
    uint32_t status;
    uint32_t latency_ms;
    int64_t time_ms;
    int partial;
};

struct gw_account_event {
    uint64_t account_id;
    uint32_t status; /* upstream HTTP status, 0 = connect failure */
    int64_t time_ms;
    int64_t retry_after_ms;
    char message[128];
};

struct gw_wire_usage_batch {
    char *edge_id;
    uint64_t seq;
    struct gw_usage_record *records;
    size_t n_records;
    struct gw_account_event *account_events;
    size_t n_account_events;
};

struct gw_wire_usage_ack {
    uint64_t seq;
    int duplicate;
};

struct gw_wire_fetch_deltas {
    char *edge_id;
    uint64_t from_version;
};

enum gw_change_kind {
    GW_CHANGE_NONE = 0,
    GW_CHANGE_KEY,
    GW_CHANGE_GROUP,
    GW_CHANGE_ACCOUNT,
    GW_CHANGE_POOL,
    GW_CHANGE_BINDING,
    GW_CHANGE_KEY_REMOVED,
    GW_CHANGE_ACCOUNT_REMOVED,
    GW_CHANGE_GROUP_REMOVED,
    GW_CHANGE_BINDING_REMOVED,
    GW_CHANGE_POOL_REMOVED,
};

/* One change-log entry: the entity's full current state, or its removal. */
struct gw_wire_change {
    uint64_t version;
    enum gw_change_kind kind;
    union {
        struct gw_wire_key key;
        struct gw_wire_group group;
        struct gw_wire_account account;
        struct gw_wire_pool pool;
        struct gw_wire_binding binding; /* BINDING and BINDING_REMOVED */
        uint64_t removed_id;            /* KEY/ACCOUNT/GROUP/POOL_REMOVED */
    } u;
};

struct gw_wire_deltas {
    uint64_t from_version;
    uint64_t to_version;
    struct gw_wire_change *changes;
    size_t n_changes;
    int snapshot_required;
};

struct gw_wire_heartbeat {
    char *edge_id;
    uint64_t snapshot_version;
    char *snapshot_source; /* "hub" or "disk" */
    uint64_t requests_total;
    uint64_t errors_total;
    uint64_t usage_pending;
    int64_t uptime_s;
    char *region;
    char *version;
};

struct gw_wire_heartbeat_ack {
    uint64_t config_version;
};

struct gw_wire_error {
    gw_err code;
    char *message;
};

struct gw_msg {
    enum gw_msg_type type;
    union {
        struct gw_wire_hello hello;
        struct gw_wire_hello_reply hello_reply;
        struct gw_wire_fetch_snapshot fetch_snapshot;
        struct gw_wire_snapshot snapshot;
        struct gw_wire_usage_batch usage_batch;
        struct gw_wire_usage_ack usage_ack;
        struct gw_wire_error error;
        struct gw_wire_fetch_deltas fetch_deltas;
        struct gw_wire_deltas deltas;
        struct gw_wire_heartbeat heartbeat;
        struct gw_wire_heartbeat_ack heartbeat_ack;
    } u;
};

/* Serialises msg as one Envelope, appended to out. GW_EINVAL when a required
 * field is missing (e.g. a NULL edge_id). Borrows msg. */
gw_err gw_wire_encode(const struct gw_msg *msg, struct gw_buf *out) GW_WARN_UNUSED;

/* Parses one Envelope of `len` bytes. Frames larger than max_len are
 * refused with GW_EMSGSIZE before anything is allocated; malformed frames,
 * an empty oneof or wrong key-hash sizes give GW_EPROTO. On success *out
 * owns everything it points to (release with gw_msg_fini). */
gw_err gw_wire_decode(const void *data, size_t len, size_t max_len,
                      struct gw_msg *out) GW_WARN_UNUSED;

/* Frees everything a message owns and zeroes it; safe on a zeroed message. */
void gw_msg_fini(struct gw_msg *msg);

/* The enrolment proof of proto/carpool.proto: HMAC-SHA256 keyed with the
 * enrolment secret exactly as the admin API showed it (the base64url text,
 * secret_len bytes), over "aicarpool-hello\0" | nonce | edge_id (without its
 * NUL). Pure: any thread. */
void gw_wire_hello_proof(const void *secret, size_t secret_len, const uint8_t *nonce,
                         size_t nonce_len, const char *edge_id, uint8_t out[GW_SHA256_LEN]);

/* Builds an error message: msg->type = GW_MSG_ERROR, message copied. */
void gw_msg_set_error(struct gw_msg *msg, gw_err code, const char *message);

#endif
