/* SPDX-License-Identifier: Apache-2.0 */
/* The edge's view of the configuration: an immutable, reference-counted
 * snapshot built from one gw_wire_snapshot. Gateway keys are found by the
 * SHA-256 of the raw key in an open-addressing hash table; groups carry
 * their bound accounts ordered for routing. A new version is built off the
 * loop thread and swapped in whole; readers keep a reference while they use
 * any pointer into it. */
#ifndef EDGE_SNAPSHOT_H
#define EDGE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "gw_crypto.h"
#include "gw_err.h"
#include "gw_wire.h"

struct edge_snapshot;

struct edge_account {
    uint64_t id;
    char *name;       /* never NULL ("" when absent) */
    char *kind;       /* "anthropic", "claude_oauth", "mock", ... never NULL */
    char *base_url;   /* never NULL */
    char *credential; /* NUL-terminated copy; memory only, wiped on free; never NULL */
    size_t credential_len;
    int32_t priority; /* lower number is preferred */
    int32_t weight;   /* <= 0 is treated as 1 by the router */
    int enabled;
    unsigned dialects; /* edge_dialect_mask_of_kind(kind) */
    char **models;     /* models it serves; n_models == 0 means any */
    size_t n_models;
    uint32_t max_concurrency;  /* 0 = unlimited */
    char *proxy;               /* NULL = direct */
    int64_t cooldown_until_ms; /* hub-decided cooldown (unix ms), 0 = none */
    uint32_t index;            /* 0..n_accounts-1 within this snapshot, for per-account arrays */
};

enum edge_group_mode {
    EDGE_GROUP_DEDICATED = 0, /* only accounts bound to the group */
    EDGE_GROUP_POOL,          /* only the accounts of its pool */
    EDGE_GROUP_HYBRID,        /* dedicated first; the pool when none of those is usable */
};

struct edge_group {
    uint64_t id;
    char *name; /* never NULL */
    /* Bound accounts (enabled or not), sorted by priority ascending, then id
     * ascending. Pointers into the snapshot's account array. */
    const struct edge_account **accounts;
    size_t n_accounts;
    enum edge_group_mode mode;
    /* The pool's accounts (for pool / hybrid), same order rules as accounts. */
    const struct edge_account **pool_accounts;
    size_t n_pool_accounts;
};

/* One per gateway key, a million of them at scale: fields are ordered so
 * the struct has no padding (96 bytes on LP64). */
struct edge_key {
    uint64_t id;
    uint8_t key_hash[GW_SHA256_LEN];
    uint64_t group_id;
    const struct edge_group *group; /* NULL when the group is not in the snapshot */
    int64_t expires_at;             /* unix seconds, 0 = never */
    char **allowed_models;          /* n_allowed_models == 0 means any (NULL then) */
    size_t n_allowed_models;
    uint32_t rpm_limit;         /* requests per minute, 0 = unlimited */
    uint32_t tpm_limit;         /* tokens per minute, 0 = unlimited */
    uint32_t concurrency_limit; /* 0 = unlimited */
    int enabled;
};

/* Result of checking a presented key. */
enum edge_key_state {
    EDGE_KEY_OK = 0,
    EDGE_KEY_UNKNOWN,  /* no key with this hash */
    EDGE_KEY_DISABLED, /* present but disabled */
    EDGE_KEY_EXPIRED,  /* present but expires_at <= now */
};

/* Builds a snapshot from a decoded wire snapshot (borrowed; everything is
 * copied). Keys with a duplicate hash keep the first occurrence; bindings
 * naming an unknown group or account, and duplicate bindings, are skipped.
 * Returns an owned snapshot with one reference in *out. GW_EINVAL for an
 * "unchanged" wire snapshot (it carries no content), GW_EMSGSIZE when there
 * are more than 2^31 keys, accounts or groups. Any thread. */
gw_err edge_snapshot_build(const struct gw_wire_snapshot *w,
                           struct edge_snapshot **out) GW_WARN_UNUSED;

/* Applies the changes of `d` in order to the wire snapshot `base` (owned
 * by the caller, modified in place) and sets base->version to
 * d->to_version: an entity change replaces the entity with the same id (or
 * the same group/account pair for a binding) or adds it; a removal drops it
 * (a removed key, account, group or pool also drops nothing else: bindings
 * naming it are skipped by edge_snapshot_build). The entity contents are
 * MOVED out of d (its changes are left empty; gw_msg_fini on the message
 * stays safe). GW_EINVAL when d->snapshot_required is set or
 * d->from_version != base->version (base is then untouched); GW_EMSGSIZE
 * when an array would exceed 2^31 entries. Any thread (the caller owns
 * both). */
gw_err edge_snapshot_apply_deltas(struct gw_wire_snapshot *base,
                                  struct gw_wire_deltas *d) GW_WARN_UNUSED;

/* Adds a reference (atomic; any thread) and returns s. */
struct edge_snapshot *edge_snapshot_ref(struct edge_snapshot *s);
/* Drops a reference; the last one frees the snapshot and wipes the
 * credentials. NULL is a no-op. Any thread. */
void edge_snapshot_unref(struct edge_snapshot *s);

uint64_t edge_snapshot_version(const struct edge_snapshot *s);
size_t edge_snapshot_key_count(const struct edge_snapshot *s);

/* Finds a key by its SHA-256; NULL when absent. Borrowed pointer, valid while
 * the caller holds a reference. */
const struct edge_key *edge_snapshot_find_hash(const struct edge_snapshot *s,
                                               const uint8_t hash[GW_SHA256_LEN]);

/* Hashes the raw gateway key (`len` bytes, borrowed) and checks it against
 * the snapshot at unix time now_s. *out gets the entry when one exists
 * (also for DISABLED/EXPIRED, so the caller can log its id), else NULL. */
enum edge_key_state edge_snapshot_lookup(const struct edge_snapshot *s, const char *key, size_t len,
                                         int64_t now_s, const struct edge_key **out);

/* Group / account by id; NULL when absent. Borrowed pointers. */
const struct edge_group *edge_snapshot_group(const struct edge_snapshot *s, uint64_t id);
const struct edge_account *edge_snapshot_account(const struct edge_snapshot *s, uint64_t id);

#endif
