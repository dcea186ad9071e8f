/* SPDX-License-Identifier: Apache-2.0 */
/* The hub's store: a table of domain operations (not SQL) with one backend
 * per DSN scheme, "sqlite:PATH" (default) and "mysql://user:pass@host:port/db".
 * Each backend owns its SQL and its versioned migrations, applied by
 * hub_store_open(). Every operation that changes configuration bumps the
 * global config version and appends to the change log in the same
 * transaction.
 *
 * Threading: calls are synchronous and may block on disk or network, so they
 * never run on a uv loop thread: use uv_queue_work or a link worker thread.
 * A store may be used from several threads; the wrappers serialise calls on
 * one connection with a mutex. */
#ifndef HUB_STORE_H
#define HUB_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "gw_buf.h"
#include "gw_err.h"
#include "gw_wire.h"

struct hub_store;

/* Largest sealed credential a store accepts (fits a MySQL BLOB). */
#define HUB_STORE_CREDENTIAL_MAX 65535
/* usage_list returns at most this many rows per call. */
#define HUB_STORE_USAGE_LIST_MAX 1000
/* Model lists (account models, key allow-lists): at most this many names,
 * each of 1..HUB_STORE_MODEL_LEN_MAX bytes. */
#define HUB_STORE_MODELS_MAX GW_WIRE_MODELS_MAX
#define HUB_STORE_MODEL_LEN_MAX GW_WIRE_MODEL_LEN_MAX

/* Account events (edge reports, see usage_apply): this many 401/403
 * answers within HUB_STORE_AUTH_FAIL_WINDOW_MS disable the account; a 429
 * whose retry-after is at least HUB_STORE_COOLDOWN_MIN_MS puts it in a
 * cooldown every edge sees (shorter ones stay local to the edge), capped at
 * HUB_STORE_COOLDOWN_MAX_MS. */
#define HUB_STORE_AUTH_FAIL_THRESHOLD 3
#define HUB_STORE_AUTH_FAIL_WINDOW_MS (10 * 60 * 1000)
#define HUB_STORE_COOLDOWN_MIN_MS (60 * 1000)
#define HUB_STORE_COOLDOWN_MAX_MS (24 * 60 * 60 * 1000)

struct hub_admin {
    uint64_t id;
    char username[64];
    char *password_hash; /* owned; free() */
    int must_change_password;
};

struct hub_group {
    uint64_t id;
    char name[128];
    int64_t created_at;
    char mode[16];    /* "dedicated", "pool" or "hybrid" */
    uint64_t pool_id; /* 0 = none */
};

/* Fields to change in group_update (HUB_GROUP_SET_* bits in `fields`). */
enum {
    HUB_GROUP_SET_MODE = 1u << 0,
    HUB_GROUP_SET_POOL = 1u << 1,
};

struct hub_group_patch {
    unsigned fields;
    const char *mode; /* "dedicated", "pool" or "hybrid" */
    uint64_t pool_id; /* 0 clears */
};

struct hub_pool {
    uint64_t id;
    char name[128];
    int64_t created_at;
    uint64_t *account_ids; /* owned (hub_pool_fini); ascending by when they joined */
    size_t n_account_ids;
};

struct hub_account_new {
    const char *name;
    const char *kind;
    const char *base_url;
    const uint8_t *credential_sealed; /* AES-GCM sealed by the caller */
    size_t credential_sealed_len;
    int32_t priority;
    int32_t weight;
    const char *const *models; /* borrowed; n_models == 0 means any model */
    size_t n_models;
    uint32_t max_concurrency; /* 0 = unlimited */
    const char *proxy;        /* NULL or "" = direct */
};

/* An account as the admin sees it: never its credential. models is owned:
 * release with hub_account_fini (a no-op when it has none). */
struct hub_account {
    uint64_t id;
    char name[128];
    char kind[32];
    char base_url[512];
    int32_t priority;
    int32_t weight;
    int enabled;
    int64_t created_at;
    char **models;
    size_t n_models;
    uint32_t max_concurrency;
    char proxy[512];           /* "" = direct */
    char disabled_reason[128]; /* why it is disabled; "" when enabled */
    int64_t cooldown_until_ms; /* hub-decided cooldown (unix ms), 0 = none */
    uint32_t auth_failures;    /* 401/403 reports since it was last enabled */
};

/* Fields to change in account_update (HUB_ACCOUNT_SET_* bits). */
enum {
    HUB_ACCOUNT_SET_NAME = 1u << 0,
    HUB_ACCOUNT_SET_ENABLED = 1u << 1,
    HUB_ACCOUNT_SET_PRIORITY = 1u << 2,
    HUB_ACCOUNT_SET_WEIGHT = 1u << 3,
    HUB_ACCOUNT_SET_MODELS = 1u << 4,
    HUB_ACCOUNT_SET_MAX_CONCURRENCY = 1u << 5,
    HUB_ACCOUNT_SET_PROXY = 1u << 6,
    HUB_ACCOUNT_SET_BASE_URL = 1u << 7,
    HUB_ACCOUNT_SET_CREDENTIAL = 1u << 8,
};

/* Enabling an account clears its disabled reason, failure count and
 * cooldown; disabling it records "disabled by an admin". */
struct hub_account_patch {
    unsigned fields;
    const char *name;
    int enabled;
    int32_t priority;
    int32_t weight;
    const char *const *models;
    size_t n_models;
    uint32_t max_concurrency;
    const char *proxy; /* NULL or "" clears */
    const char *base_url;
    const uint8_t *credential_sealed;
    size_t credential_sealed_len;
};

struct hub_key_new {
    uint64_t group_id;
    const char *name;
    uint8_t key_hash[GW_SHA256_LEN];
    const char *prefix; /* displayable start of the key, e.g. "aicp_g1_u1_AbCd" */
    int64_t expires_at; /* unix seconds, 0 = never */
    uint32_t rpm_limit; /* 0 = unlimited */
    uint32_t tpm_limit;
    uint32_t concurrency_limit;
    const char *const *allowed_models; /* borrowed; none = any model */
    size_t n_allowed_models;
};

/* allowed_models is owned: release with hub_key_fini. */
struct hub_key {
    uint64_t id;
    uint64_t group_id;
    char name[128];
    char prefix[64];
    int enabled;
    int64_t expires_at;
    int64_t created_at;
    uint32_t rpm_limit;
    uint32_t tpm_limit;
    uint32_t concurrency_limit;
    char **allowed_models;
    size_t n_allowed_models;
};

/* Fields to change in key_update (HUB_KEY_SET_* bits). */
enum {
    HUB_KEY_SET_NAME = 1u << 0,
    HUB_KEY_SET_ENABLED = 1u << 1,
    HUB_KEY_SET_RPM = 1u << 2,
    HUB_KEY_SET_TPM = 1u << 3,
    HUB_KEY_SET_CONCURRENCY = 1u << 4,
    HUB_KEY_SET_ALLOWED_MODELS = 1u << 5,
    HUB_KEY_SET_EXPIRES_AT = 1u << 6,
};

struct hub_key_patch {
    unsigned fields;
    const char *name;
    int enabled;
    uint32_t rpm_limit;
    uint32_t tpm_limit;
    uint32_t concurrency_limit;
    const char *const *allowed_models;
    size_t n_allowed_models;
    int64_t expires_at;
};

/* Prices in micro-USD per million tokens, matched by longest model prefix. */
struct hub_price {
    char model_prefix[128];
    int64_t input;
    int64_t output;
    int64_t cache_write_5m;
    int64_t cache_write_1h;
    int64_t cache_read;
};

struct hub_usage_filter {
    uint64_t key_id; /* 0 = any */
    uint32_t limit;  /* 1..1000 */
    uint32_t offset;
};

struct hub_usage_row {
    uint64_t id;
    struct gw_usage_record rec;
    char edge_id[64];
    int64_t cost_micros; /* -1 when the model has no price (flagged, not zero) */
};

/* Edge registry. The id is public (it names the edge in usage rows and
 * logs); the enrolment secret is stored sealed with the master key
 * (aad "edge-secret"). The heartbeat fields hold the latest report and the
 * one before it, from which the admin API computes rates. */
#define HUB_EDGE_ID_MAX 63
struct hub_edge {
    char id[HUB_EDGE_ID_MAX + 1];
    char name[128];
    char region[64];
    uint8_t *secret_sealed; /* owned (hub_edge_fini); NULL for trusted edges */
    size_t secret_sealed_len;
    int trusted;          /* the in-process edge: no secret, never enrolled */
    int64_t created_at;   /* unix seconds */
    int64_t revoked_at;   /* unix seconds, 0 = active */
    int64_t last_seen_ms; /* unix ms of the latest heartbeat or hello, 0 = never */
    int64_t heartbeat_ms; /* unix ms of the latest heartbeat, 0 = none */
    char version[64];
    uint64_t snapshot_version;
    char snapshot_source[16]; /* "hub", "disk" or "" */
    uint64_t requests_total;
    uint64_t errors_total;
    uint64_t usage_pending;
    int64_t uptime_s;
    uint64_t prev_requests_total; /* the heartbeat before the latest one */
    uint64_t prev_errors_total;
    int64_t prev_heartbeat_ms; /* 0 = no previous heartbeat */
};

/* One change-log row as the backends return it. For entity "binding" the
 * pair is resolved from the bindings row, for "pool_account" the pool. */
struct hub_change_ref {
    uint64_t version;
    char entity[16]; /* "group", "account", "binding", "pool", "pool_account", "key" */
    uint64_t entity_id;
    uint64_t group_id;   /* binding only */
    uint64_t account_id; /* binding only */
    uint64_t pool_id;    /* pool_account only */
};

/* The change log keeps at least this many newest rows (older ones are
 * pruned; an edge further behind gets snapshot_required). */
#define HUB_STORE_CHANGE_LOG_KEEP 100000

/* Backend table. priv is a zeroed block of priv_size bytes owned by the
 * store. Every slot may block; none is called concurrently for one store. */
struct hub_store_ops {
    const char *scheme; /* "sqlite", "mysql" */
    size_t priv_size;
    /* dsn_rest is what follows "scheme:" ("/var/lib/x.db", "//u:p@h:3306/db").
     * On failure writes a reason (no secrets) to err and releases what it
     * allocated: close is not called after a failed open. */
    gw_err (*open)(void *priv, const char *dsn_rest, struct gw_buf *err);
    void (*close)(void *priv);
    /* Applies pending migrations; idempotent. */
    gw_err (*migrate)(void *priv, struct gw_buf *err);

    gw_err (*config_version)(void *priv, uint64_t *out);

    gw_err (*admin_count)(void *priv, uint64_t *out);
    gw_err (*admin_create)(void *priv, const char *username, const char *password_hash,
                           int must_change, uint64_t *id_out);
    /* GW_ENOTFOUND when absent. */
    gw_err (*admin_get)(void *priv, const char *username, struct hub_admin *out);

    gw_err (*group_create)(void *priv, const char *name, struct hub_group *out);
    gw_err (*group_get)(void *priv, uint64_t id, struct hub_group *out);
    /* Ordered by id; *out owned by the caller (free()). */
    gw_err (*group_list)(void *priv, struct hub_group **out, size_t *n_out);
    /* GW_ENOTFOUND when the group or the named pool is missing; GW_EINVAL
     * when the result would be mode pool or hybrid without a pool. */
    gw_err (*group_update)(void *priv, uint64_t id, const struct hub_group_patch *p,
                           struct hub_group *out);

    gw_err (*account_create)(void *priv, const struct hub_account_new *in, struct hub_account *out);
    gw_err (*account_get)(void *priv, uint64_t id, struct hub_account *out);
    /* Ordered by id; every entry owned by the caller (hub_accounts_free). */
    gw_err (*account_list)(void *priv, struct hub_account **out, size_t *n_out);
    /* GW_ENOTFOUND when the account is missing. */
    gw_err (*account_update)(void *priv, uint64_t id, const struct hub_account_patch *p,
                             struct hub_account *out);

    /* GW_ENOTFOUND when the group or account is missing, GW_EEXIST when bound. */
    gw_err (*binding_create)(void *priv, uint64_t group_id, uint64_t account_id);

    /* GW_EEXIST when the name is taken. */
    gw_err (*pool_create)(void *priv, const char *name, struct hub_pool *out);
    /* GW_ENOTFOUND when absent; *out owns its member list. */
    gw_err (*pool_get)(void *priv, uint64_t id, struct hub_pool *out);
    /* Ordered by id, with members (hub_pools_free). */
    gw_err (*pool_list)(void *priv, struct hub_pool **out, size_t *n_out);
    /* GW_ENOTFOUND when the pool or account is missing, GW_EEXIST when it is
     * already a member. */
    gw_err (*pool_add_account)(void *priv, uint64_t pool_id, uint64_t account_id);

    /* GW_ENOTFOUND when the group is missing. */
    gw_err (*key_create)(void *priv, const struct hub_key_new *in, struct hub_key *out);
    /* Revoked keys are not found by get, list, update or revoke. */
    gw_err (*key_get)(void *priv, uint64_t id, struct hub_key *out);
    /* Keys of one group (group_id 0 = all groups), ordered by id
     * (hub_keys_free). */
    gw_err (*key_list)(void *priv, uint64_t group_id, struct hub_key **out, size_t *n_out);
    gw_err (*key_update)(void *priv, uint64_t id, const struct hub_key_patch *p,
                         struct hub_key *out);
    /* Revokes for good: the key leaves every snapshot. */
    gw_err (*key_revoke)(void *priv, uint64_t id);

    /* Everything an edge needs, at the current version. Account credentials
     * come out sealed, as stored. The caller frees with gw_msg_fini on a
     * message wrapping it, or hub_store_snapshot_fini. */
    gw_err (*snapshot_load)(void *priv, struct gw_wire_snapshot *out);

    gw_err (*prices_list)(void *priv, struct hub_price **out, size_t *n_out);

    /* Applies one usage batch and records (edge_id, seq) in the same
     * transaction. A batch whose seq is <= the edge's last applied seq changes
     * nothing and sets *duplicate. costs[i] is the cost of records[i] in
     * micro-USD or -1 when unpriced; costs == NULL means all unpriced.
     * The batch's account events are applied in the same transaction, so
     * exactly once: a 401 or 403 counts a credential failure, and the
     * HUB_STORE_AUTH_FAIL_THRESHOLD-th within HUB_STORE_AUTH_FAIL_WINDOW_MS
     * disables the account with the reason "upstream rejected the credential
     * (<status>)"; a 429 with retry_after_ms >= HUB_STORE_COOLDOWN_MIN_MS
     * extends the account's cooldown_until_ms to time_ms + retry_after_ms.
     * Either change bumps the config version. Events naming unknown accounts
     * are ignored. */
    gw_err (*usage_apply)(void *priv, const struct gw_wire_usage_batch *batch, const int64_t *costs,
                          int *duplicate);
    /* 0 when the edge never sent a batch. */
    gw_err (*edge_last_seq)(void *priv, const char *edge_id, uint64_t *out);
    /* Newest first. *rows is owned by the caller (free()). */
    gw_err (*usage_list)(void *priv, const struct hub_usage_filter *f, struct hub_usage_row **rows,
                         size_t *n_rows);

    /* Change-log rows with version > from, oldest first, at most limit;
     * *rows owned by the caller (free()). *oldest: the smallest retained
     * version (0 when the log is empty). */
    gw_err (*change_log_since)(void *priv, uint64_t from, size_t limit,
                               struct hub_change_ref **rows, size_t *n_rows, uint64_t *oldest);
    /* Deletes the rows with version < below. */
    gw_err (*change_log_prune)(void *priv, uint64_t below);

    /* GW_EEXIST when the id is taken. Copies every field of *e. */
    gw_err (*edge_create)(void *priv, const struct hub_edge *e);
    /* GW_ENOTFOUND when absent; *out owns its sealed secret. */
    gw_err (*edge_get)(void *priv, const char *id, struct hub_edge *out);
    /* Ordered by created_at, id (hub_edges_free). */
    gw_err (*edge_list)(void *priv, struct hub_edge **out, size_t *n_out);
    /* Writes every mutable field (all but id, secret, trusted, created_at);
     * GW_ENOTFOUND when absent. */
    gw_err (*edge_save)(void *priv, const struct hub_edge *e);
};

/* Opens the store named by dsn ("sqlite:PATH", "sqlite::memory:",
 * "mysql://user:pass@host:port/db") and migrates it. GW_EINVAL for an
 * unknown scheme or a malformed DSN, GW_ESTORE when the backend fails; a
 * reason without secrets goes to err. */
gw_err hub_store_open(const char *dsn, struct hub_store **out, struct gw_buf *err) GW_WARN_UNUSED;
void hub_store_close(struct hub_store *st);
/* "sqlite" or "mysql". */
const char *hub_store_scheme(const struct hub_store *st);

/* Thin wrappers: lock, call the backend slot, unlock. Same contracts as the
 * slots above. */
gw_err hub_store_config_version(struct hub_store *st, uint64_t *out) GW_WARN_UNUSED;
gw_err hub_store_admin_count(struct hub_store *st, uint64_t *out) GW_WARN_UNUSED;
gw_err hub_store_admin_create(struct hub_store *st, const char *username, const char *password_hash,
                              int must_change, uint64_t *id_out) GW_WARN_UNUSED;
gw_err hub_store_admin_get(struct hub_store *st, const char *username,
                           struct hub_admin *out) GW_WARN_UNUSED;
void hub_admin_fini(struct hub_admin *a);
gw_err hub_store_group_create(struct hub_store *st, const char *name,
                              struct hub_group *out) GW_WARN_UNUSED;
gw_err hub_store_group_get(struct hub_store *st, uint64_t id, struct hub_group *out) GW_WARN_UNUSED;
gw_err hub_store_account_create(struct hub_store *st, const struct hub_account_new *in,
                                struct hub_account *out) GW_WARN_UNUSED;
gw_err hub_store_account_get(struct hub_store *st, uint64_t id,
                             struct hub_account *out) GW_WARN_UNUSED;
gw_err hub_store_binding_create(struct hub_store *st, uint64_t group_id,
                                uint64_t account_id) GW_WARN_UNUSED;
gw_err hub_store_key_create(struct hub_store *st, const struct hub_key_new *in,
                            struct hub_key *out) GW_WARN_UNUSED;
gw_err hub_store_key_get(struct hub_store *st, uint64_t id, struct hub_key *out) GW_WARN_UNUSED;

/* The wrappers below check what both backends would check alike (GW_EINVAL):
 * text that does not fit its field, model lists over HUB_STORE_MODELS_MAX or
 * with an empty / too long name, an unknown group mode, a patch without
 * fields. *out of a failed call holds nothing to free. */
gw_err hub_store_group_list(struct hub_store *st, struct hub_group **out,
                            size_t *n_out) GW_WARN_UNUSED;
gw_err hub_store_group_update(struct hub_store *st, uint64_t id, const struct hub_group_patch *p,
                              struct hub_group *out) GW_WARN_UNUSED;
gw_err hub_store_account_list(struct hub_store *st, struct hub_account **out,
                              size_t *n_out) GW_WARN_UNUSED;
gw_err hub_store_account_update(struct hub_store *st, uint64_t id,
                                const struct hub_account_patch *p,
                                struct hub_account *out) GW_WARN_UNUSED;
gw_err hub_store_pool_create(struct hub_store *st, const char *name,
                             struct hub_pool *out) GW_WARN_UNUSED;
gw_err hub_store_pool_get(struct hub_store *st, uint64_t id, struct hub_pool *out) GW_WARN_UNUSED;
gw_err hub_store_pool_list(struct hub_store *st, struct hub_pool **out,
                           size_t *n_out) GW_WARN_UNUSED;
gw_err hub_store_pool_add_account(struct hub_store *st, uint64_t pool_id,
                                  uint64_t account_id) GW_WARN_UNUSED;
gw_err hub_store_key_list(struct hub_store *st, uint64_t group_id, struct hub_key **out,
                          size_t *n_out) GW_WARN_UNUSED;
gw_err hub_store_key_update(struct hub_store *st, uint64_t id, const struct hub_key_patch *p,
                            struct hub_key *out) GW_WARN_UNUSED;
gw_err hub_store_key_revoke(struct hub_store *st, uint64_t id) GW_WARN_UNUSED;

/* Release what the records above own and zero them; safe on zeroed ones. */
void hub_account_fini(struct hub_account *a);
void hub_key_fini(struct hub_key *k);
void hub_pool_fini(struct hub_pool *p);
/* Finish each of n records, then free the array. */
void hub_accounts_free(struct hub_account *a, size_t n);
void hub_keys_free(struct hub_key *k, size_t n);
void hub_pools_free(struct hub_pool *p, size_t n);

/* 1 for "dedicated", "pool" and "hybrid". */
int hub_store_group_mode_ok(const char *mode);
gw_err hub_store_snapshot_load(struct hub_store *st, struct gw_wire_snapshot *out) GW_WARN_UNUSED;
void hub_store_snapshot_fini(struct gw_wire_snapshot *snap);
gw_err hub_store_prices_list(struct hub_store *st, struct hub_price **out,
                             size_t *n_out) GW_WARN_UNUSED;
gw_err hub_store_usage_apply(struct hub_store *st, const struct gw_wire_usage_batch *batch,
                             const int64_t *costs, int *duplicate) GW_WARN_UNUSED;
gw_err hub_store_edge_last_seq(struct hub_store *st, const char *edge_id,
                               uint64_t *out) GW_WARN_UNUSED;
gw_err hub_store_usage_list(struct hub_store *st, const struct hub_usage_filter *f,
                            struct hub_usage_row **rows, size_t *n_rows) GW_WARN_UNUSED;

/* The changes after from_version, each entity materialised as its current
 * state (or its removal), several changes of one entity merged into the
 * latest; out->to_version is the current config version. When from_version
 * is older than the retained change log, newer than the current version, or
 * more than max_changes entries follow it, out->snapshot_required is set and
 * there are no changes. Account credentials come out sealed, as stored.
 * Release with hub_store_deltas_fini. Errors: GW_EINVAL, GW_ESTORE. */
gw_err hub_store_changes_since(struct hub_store *st, uint64_t from_version, size_t max_changes,
                               struct gw_wire_deltas *out) GW_WARN_UNUSED;
void hub_store_deltas_fini(struct gw_wire_deltas *d);
/* Keeps the newest `keep` change-log rows (at least 1) and deletes older
 * ones. */
gw_err hub_store_change_log_prune(struct hub_store *st, uint64_t keep) GW_WARN_UNUSED;

/* Edge registry wrappers (contracts of the slots above). create checks the
 * id (1..HUB_EDGE_ID_MAX printable, non-space ASCII) and that a non-trusted
 * edge has a secret (GW_EINVAL). */
gw_err hub_store_edge_create(struct hub_store *st, const struct hub_edge *e) GW_WARN_UNUSED;
gw_err hub_store_edge_get(struct hub_store *st, const char *id,
                          struct hub_edge *out) GW_WARN_UNUSED;
gw_err hub_store_edge_list(struct hub_store *st, struct hub_edge **out,
                           size_t *n_out) GW_WARN_UNUSED;
/* Marks the edge revoked at now (unix seconds). GW_ENOTFOUND when absent or
 * already revoked. */
gw_err hub_store_edge_revoke(struct hub_store *st, const char *id) GW_WARN_UNUSED;
/* Records a heartbeat at now_ms (unix ms): the latest stats move to prev_*,
 * hb's become the latest, last_seen_ms = now_ms; region and version are
 * taken from hb when set. GW_ENOTFOUND for an unknown edge. */
gw_err hub_store_edge_heartbeat(struct hub_store *st, const char *id,
                                const struct gw_wire_heartbeat *hb, int64_t now_ms) GW_WARN_UNUSED;
/* Sets last_seen_ms (a Hello). GW_ENOTFOUND for an unknown edge. */
gw_err hub_store_edge_touch(struct hub_store *st, const char *id, int64_t now_ms) GW_WARN_UNUSED;
void hub_edge_fini(struct hub_edge *e);
void hub_edges_free(struct hub_edge *e, size_t n);
/* 1 when id is a well-formed edge id. */
int hub_store_edge_id_ok(const char *id);

/* For the backends (both keep model lists as JSON arrays of strings in a
 * text column). to_json appends the array; from_json parses one, NULL or ""
 * being the empty list, into an owned array (free each, then the array).
 * GW_ESTORE for text that is not such an array. */
void hub_store_models_to_json(const char *const *models, size_t n, struct gw_buf *out);
gw_err hub_store_models_from_json(const char *text, size_t len, char ***out,
                                  size_t *n_out) GW_WARN_UNUSED;

/* What account events change on an account (the backends keep it in the
 * account's row). */
struct hub_store_account_health {
    int enabled;
    int64_t cooldown_until_ms;
    uint32_t auth_failures;
    int64_t auth_fail_last_ms; /* the latest counted 401/403, 0 = none */
    int64_t auth_fail_prev_ms; /* the one before it */
};

enum {
    HUB_STORE_EVENT_COUNTED = 1u << 0,  /* failure counters changed (not replicated) */
    HUB_STORE_EVENT_DISABLED = 1u << 1, /* enabled went 1 -> 0: bump the version */
    HUB_STORE_EVENT_COOLDOWN = 1u << 2, /* cooldown_until_ms grew: bump the version */
};

/* The rules of usage_apply for one event, shared by the backends: updates
 * *h for ev at hub time now_ms (unix ms) and returns HUB_STORE_EVENT_*
 * bits; on DISABLED, reason (reason_size bytes) gets the disabled reason.
 * An event time that is missing or more than 5 minutes ahead of now_ms is
 * taken as now_ms. Pure: any thread. */
unsigned hub_store_account_event_apply(struct hub_store_account_health *h,
                                       const struct gw_account_event *ev, int64_t now_ms,
                                       char *reason, size_t reason_size);

/* Backends, registered by scheme in store.c. */
extern const struct hub_store_ops hub_store_sqlite_ops;
#ifdef GW_WITH_MYSQL
extern const struct hub_store_ops hub_store_mysql_ops;
#endif

#endif
