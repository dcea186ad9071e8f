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
};

struct hub_account_new {
    const char *name;
    const char *kind;
    const char *base_url;
    const uint8_t *credential_sealed; /* AES-GCM sealed by the caller */
    size_t credential_sealed_len;
    int32_t priority;
    int32_t weight;
};

struct hub_account {
    uint64_t id;
    char name[128];
    char kind[32];
    char base_url[512];
    int32_t priority;
    int32_t weight;
    int enabled;
    int64_t created_at;
};

struct hub_key_new {
    uint64_t group_id;
    const char *name;
    uint8_t key_hash[GW_SHA256_LEN];
    const char *prefix; /* displayable start of the key, e.g. "aicp_g1_u1_AbCd" */
};

struct hub_key {
    uint64_t id;
    uint64_t group_id;
    char name[128];
    char prefix[64];
    int enabled;
    int64_t expires_at;
    int64_t created_at;
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
    uint64_t key_id;  /* 0 = any */
    uint32_t limit;   /* 1..1000 */
    uint32_t offset;
};

struct hub_usage_row {
    uint64_t id;
    struct gw_usage_record rec;
    char edge_id[64];
    int64_t cost_micros; /* -1 when the model has no price (flagged, not zero) */
};

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

    gw_err (*account_create)(void *priv, const struct hub_account_new *in, struct hub_account *out);
    gw_err (*account_get)(void *priv, uint64_t id, struct hub_account *out);

    /* GW_ENOTFOUND when the group or account is missing, GW_EEXIST when bound. */
    gw_err (*binding_create)(void *priv, uint64_t group_id, uint64_t account_id);

    /* GW_ENOTFOUND when the group is missing. */
    gw_err (*key_create)(void *priv, const struct hub_key_new *in, struct hub_key *out);
    gw_err (*key_get)(void *priv, uint64_t id, struct hub_key *out);

    /* Everything an edge needs, at the current version. Account credentials
     * come out sealed, as stored. The caller frees with gw_msg_fini on a
     * message wrapping it, or hub_store_snapshot_fini. */
    gw_err (*snapshot_load)(void *priv, struct gw_wire_snapshot *out);

    gw_err (*prices_list)(void *priv, struct hub_price **out, size_t *n_out);

    /* Applies one usage batch and records (edge_id, seq) in the same
     * transaction. A batch whose seq is <= the edge's last applied seq changes
     * nothing and sets *duplicate. costs[i] is the cost of records[i] in
     * micro-USD or -1 when unpriced; costs == NULL means all unpriced. */
    gw_err (*usage_apply)(void *priv, const struct gw_wire_usage_batch *batch,
                          const int64_t *costs, int *duplicate);
    /* 0 when the edge never sent a batch. */
    gw_err (*edge_last_seq)(void *priv, const char *edge_id, uint64_t *out);
    /* Newest first. *rows is owned by the caller (free()). */
    gw_err (*usage_list)(void *priv, const struct hub_usage_filter *f, struct hub_usage_row **rows,
                         size_t *n_rows);
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

/* Backends, registered by scheme in store.c. */
extern const struct hub_store_ops hub_store_sqlite_ops;
#ifdef GW_WITH_MYSQL
extern const struct hub_store_ops hub_store_mysql_ops;
#endif

#endif
