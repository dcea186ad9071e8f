/* SPDX-License-Identifier: Apache-2.0 */
/* Immutable configuration snapshot of the edge. Built once from the wire
 * form into flat arrays (accounts and groups sorted by id for binary search,
 * keys in insertion order) plus an open-addressing table from the key hash
 * to the key's index. Nothing changes after the build, so readers on any
 * thread need no lock, only a reference. */
#include "snapshot.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_log.h"

#define SNAPSHOT_MAX_ITEMS ((size_t)1 << 31)

struct edge_snapshot {
    atomic_uint_fast64_t refs;
    uint64_t version;
    struct edge_key *keys; /* n_keys entries */
    size_t n_keys;
    uint32_t *table; /* key index + 1; 0 = empty slot */
    size_t table_mask;
    struct edge_account *accounts; /* sorted by id, unique */
    size_t n_accounts;
    struct edge_group *groups; /* sorted by id, unique */
    size_t n_groups;
    const struct edge_account **bound; /* storage for every group's account list */
};

static uint64_t
snapshot_hash_of(const uint8_t hash[GW_SHA256_LEN])
{
    uint64_t h;

    /* SHA-256 output is uniform: its first 8 bytes are a good table hash. */
    memcpy(&h, hash, sizeof(h));
    return h;
}

static int
snapshot_cmp_account_id(const void *a, const void *b)
{
    const struct edge_account *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

static int
snapshot_cmp_group_id(const void *a, const void *b)
{
    const struct edge_group *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

static int
snapshot_cmp_route_order(const void *a, const void *b)
{
    const struct edge_account *x = *(const struct edge_account *const *)a;
    const struct edge_account *y = *(const struct edge_account *const *)b;

    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static char *
snapshot_strdup(const char *s)
{
    return gw_xstrdup(s ? s : "");
}

static void
snapshot_account_fini(struct edge_account *a)
{
    free(a->name);
    free(a->kind);
    free(a->base_url);
    if (a->credential) {
        explicit_bzero(a->credential, a->credential_len);
        free(a->credential);
    }
    memset(a, 0, sizeof(*a));
}

static void
snapshot_free(struct edge_snapshot *s)
{
    for (size_t i = 0; i < s->n_accounts; i++)
        snapshot_account_fini(&s->accounts[i]);
    for (size_t i = 0; i < s->n_groups; i++)
        free(s->groups[i].name);
    free(s->accounts);
    free(s->groups);
    free(s->bound);
    free(s->keys);
    free(s->table);
    free(s);
}

/* Copies and sorts the accounts; drops duplicate ids (first after sort). */
static void
snapshot_build_accounts(struct edge_snapshot *s, const struct gw_wire_snapshot *w)
{
    size_t n = 0;

    s->accounts = gw_xcalloc(w->n_accounts ? w->n_accounts : 1, sizeof(*s->accounts));
    for (size_t i = 0; i < w->n_accounts; i++) {
        const struct gw_wire_account *wa = &w->accounts[i];
        struct edge_account *a = &s->accounts[i];

        a->id = wa->id;
        a->name = snapshot_strdup(wa->name);
        a->kind = snapshot_strdup(wa->kind);
        a->base_url = snapshot_strdup(wa->base_url);
        a->credential = gw_xmalloc(wa->credential_len + 1);
        if (wa->credential_len)
            memcpy(a->credential, wa->credential, wa->credential_len);
        a->credential[wa->credential_len] = '\0';
        a->credential_len = wa->credential_len;
        a->priority = wa->priority;
        a->weight = wa->weight;
        a->enabled = wa->enabled;
    }
    qsort(s->accounts, w->n_accounts, sizeof(*s->accounts), snapshot_cmp_account_id);
    for (size_t i = 0; i < w->n_accounts; i++) {
        if (n > 0 && s->accounts[n - 1].id == s->accounts[i].id) {
            gw_log(GW_LOG_WARN, "EDGE-SNAPSHOT", "duplicate account id %llu ignored",
                   (unsigned long long)s->accounts[i].id);
            snapshot_account_fini(&s->accounts[i]);
            continue;
        }
        if (n != i) {
            s->accounts[n] = s->accounts[i];
            memset(&s->accounts[i], 0, sizeof(s->accounts[i]));
        }
        n++;
    }
    s->n_accounts = n;
}

static void
snapshot_build_groups(struct edge_snapshot *s, const struct gw_wire_snapshot *w)
{
    size_t n = 0;

    s->groups = gw_xcalloc(w->n_groups ? w->n_groups : 1, sizeof(*s->groups));
    for (size_t i = 0; i < w->n_groups; i++) {
        s->groups[i].id = w->groups[i].id;
        s->groups[i].name = snapshot_strdup(w->groups[i].name);
    }
    qsort(s->groups, w->n_groups, sizeof(*s->groups), snapshot_cmp_group_id);
    for (size_t i = 0; i < w->n_groups; i++) {
        if (n > 0 && s->groups[n - 1].id == s->groups[i].id) {
            free(s->groups[i].name);
            s->groups[i].name = NULL;
            continue;
        }
        if (n != i) {
            s->groups[n] = s->groups[i];
            s->groups[i].name = NULL;
        }
        n++;
    }
    s->n_groups = n;
}

/* Resolves bindings into per-group account lists in one shared array:
 * count per group, hand out slices, fill, then sort and de-duplicate. */
static void
snapshot_build_bindings(struct edge_snapshot *s, const struct gw_wire_snapshot *w)
{
    size_t *count = gw_xcalloc(s->n_groups ? s->n_groups : 1, sizeof(*count));
    size_t total = 0, off = 0;

    for (size_t i = 0; i < w->n_bindings; i++) {
        const struct edge_group *g = edge_snapshot_group(s, w->bindings[i].group_id);
        const struct edge_account *a = edge_snapshot_account(s, w->bindings[i].account_id);

        if (g == NULL || a == NULL) {
            gw_log(GW_LOG_DEBUG, "EDGE-SNAPSHOT", "binding group %llu account %llu skipped",
                   (unsigned long long)w->bindings[i].group_id,
                   (unsigned long long)w->bindings[i].account_id);
            continue;
        }
        count[g - s->groups]++;
        total++;
    }
    s->bound = gw_xcalloc(total ? total : 1, sizeof(*s->bound));
    for (size_t i = 0; i < s->n_groups; i++) {
        s->groups[i].accounts = s->bound + off;
        off += count[i];
    }
    for (size_t i = 0; i < w->n_bindings; i++) {
        const struct edge_group *g = edge_snapshot_group(s, w->bindings[i].group_id);
        const struct edge_account *a = edge_snapshot_account(s, w->bindings[i].account_id);

        if (g == NULL || a == NULL)
            continue;
        struct edge_group *mg = &s->groups[g - s->groups];
        mg->accounts[mg->n_accounts++] = a;
    }
    for (size_t i = 0; i < s->n_groups; i++) {
        struct edge_group *g = &s->groups[i];
        size_t n = 0;

        qsort(g->accounts, g->n_accounts, sizeof(*g->accounts), snapshot_cmp_route_order);
        for (size_t j = 0; j < g->n_accounts; j++) {
            if (n > 0 && g->accounts[n - 1] == g->accounts[j])
                continue;
            g->accounts[n++] = g->accounts[j];
        }
        g->n_accounts = n;
    }
    free(count);
}

static void
snapshot_build_keys(struct edge_snapshot *s, const struct gw_wire_snapshot *w)
{
    size_t cap = 16;

    while (cap < w->n_keys * 2)
        cap <<= 1;
    s->table = gw_xcalloc(cap, sizeof(*s->table));
    s->table_mask = cap - 1;
    s->keys = gw_xcalloc(w->n_keys ? w->n_keys : 1, sizeof(*s->keys));
    for (size_t i = 0; i < w->n_keys; i++) {
        const struct gw_wire_key *wk = &w->keys[i];
        size_t slot = (size_t)snapshot_hash_of(wk->key_hash) & s->table_mask;
        int dup = 0;

        while (s->table[slot] != 0) {
            if (memcmp(s->keys[s->table[slot] - 1].key_hash, wk->key_hash, GW_SHA256_LEN) == 0) {
                dup = 1;
                break;
            }
            slot = (slot + 1) & s->table_mask;
        }
        if (dup) {
            gw_log(GW_LOG_WARN, "EDGE-SNAPSHOT", "key %llu has a duplicate hash; ignored",
                   (unsigned long long)wk->id);
            continue;
        }
        struct edge_key *k = &s->keys[s->n_keys];
        k->id = wk->id;
        memcpy(k->key_hash, wk->key_hash, GW_SHA256_LEN);
        k->group_id = wk->group_id;
        k->group = edge_snapshot_group(s, wk->group_id);
        k->enabled = wk->enabled;
        k->expires_at = wk->expires_at;
        s->n_keys++;
        s->table[slot] = (uint32_t)s->n_keys;
    }
}

gw_err
edge_snapshot_build(const struct gw_wire_snapshot *w, struct edge_snapshot **out)
{
    struct edge_snapshot *s;

    *out = NULL;
    if (w->unchanged)
        return GW_EINVAL;
    if (w->n_keys >= SNAPSHOT_MAX_ITEMS || w->n_accounts >= SNAPSHOT_MAX_ITEMS ||
        w->n_groups >= SNAPSHOT_MAX_ITEMS || w->n_bindings >= SNAPSHOT_MAX_ITEMS)
        return GW_EMSGSIZE;
    s = gw_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->version = w->version;
    /* Order matters: bindings resolve accounts and groups, keys resolve groups. */
    snapshot_build_accounts(s, w);
    snapshot_build_groups(s, w);
    snapshot_build_bindings(s, w);
    snapshot_build_keys(s, w);
    *out = s;
    return GW_OK;
}

struct edge_snapshot *
edge_snapshot_ref(struct edge_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void
edge_snapshot_unref(struct edge_snapshot *s)
{
    if (s == NULL)
        return;
    /* acq_rel: the thread that frees must see every other thread's reads done. */
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snapshot_free(s);
}

uint64_t
edge_snapshot_version(const struct edge_snapshot *s)
{
    return s->version;
}

size_t
edge_snapshot_key_count(const struct edge_snapshot *s)
{
    return s->n_keys;
}

const struct edge_key *
edge_snapshot_find_hash(const struct edge_snapshot *s, const uint8_t hash[GW_SHA256_LEN])
{
    size_t slot = (size_t)snapshot_hash_of(hash) & s->table_mask;

    /* The table is at most half full, so an empty slot always ends the probe. */
    while (s->table[slot] != 0) {
        const struct edge_key *k = &s->keys[s->table[slot] - 1];
        if (memcmp(k->key_hash, hash, GW_SHA256_LEN) == 0)
            return k;
        slot = (slot + 1) & s->table_mask;
    }
    return NULL;
}

enum edge_key_state
edge_snapshot_lookup(const struct edge_snapshot *s, const char *key, size_t len, int64_t now_s,
                     const struct edge_key **out)
{
    uint8_t hash[GW_SHA256_LEN];
    const struct edge_key *k;

    gw_sha256(key, len, hash);
    k = edge_snapshot_find_hash(s, hash);
    *out = k;
    if (k == NULL)
        return EDGE_KEY_UNKNOWN;
    if (!k->enabled)
        return EDGE_KEY_DISABLED;
    if (k->expires_at != 0 && k->expires_at <= now_s)
        return EDGE_KEY_EXPIRED;
    return EDGE_KEY_OK;
}

const struct edge_group *
edge_snapshot_group(const struct edge_snapshot *s, uint64_t id)
{
    struct edge_group probe = {.id = id};

    return bsearch(&probe, s->groups, s->n_groups, sizeof(*s->groups), snapshot_cmp_group_id);
}

const struct edge_account *
edge_snapshot_account(const struct edge_snapshot *s, uint64_t id)
{
    struct edge_account probe = {.id = id};

    return bsearch(&probe, s->accounts, s->n_accounts, sizeof(*s->accounts),
                   snapshot_cmp_account_id);
}
