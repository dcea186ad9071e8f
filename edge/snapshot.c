/* SPDX-License-Identifier: Apache-2.0 */
/* Immutable configuration snapshot of the edge. Built once from the wire
 * form into flat arrays (accounts and groups sorted by id for binary search,
 * keys in insertion order) plus an open-addressing table from the key hash
 * to the key's index; each group's bound accounts and, for pool / hybrid
 * groups, its pool's accounts are resolved to pointers in routing order.
 * Nothing changes after the build, so readers on any thread need no lock,
 * only a reference. */
#include "snapshot.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dialect.h"
#include "gw_buf.h"
#include "gw_log.h"

#define SNAPSHOT_MAX_ITEMS ((size_t)1 << 31)

/* The key array dominates the edge's memory at scale: keep the layout tight. */
_Static_assert(sizeof(void *) != 8 || sizeof(struct edge_key) == 96, "struct edge_key has padding");

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
    const struct edge_account **bound;  /* storage for every group's account list */
    const struct edge_account **pooled; /* storage for every group's pool list */
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

/* Owned copies of a list of strings; NULL for an empty list. */
static char **
snapshot_strv_dup(char *const *v, size_t n)
{
    char **out;

    if (n == 0)
        return NULL;
    out = gw_xcalloc(n, sizeof(*out));
    for (size_t i = 0; i < n; i++)
        out[i] = snapshot_strdup(v[i]);
    return out;
}

static void
snapshot_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
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
    snapshot_strv_free(a->models, a->n_models);
    free(a->proxy);
    memset(a, 0, sizeof(*a));
}

static void
snapshot_free(struct edge_snapshot *s)
{
    for (size_t i = 0; i < s->n_accounts; i++)
        snapshot_account_fini(&s->accounts[i]);
    for (size_t i = 0; i < s->n_groups; i++)
        free(s->groups[i].name);
    for (size_t i = 0; i < s->n_keys; i++)
        snapshot_strv_free(s->keys[i].allowed_models, s->keys[i].n_allowed_models);
    free(s->accounts);
    free(s->groups);
    free(s->bound);
    free(s->pooled);
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
        a->dialects = edge_dialect_mask_of_kind(a->kind);
        a->models = snapshot_strv_dup(wa->models, wa->n_models);
        a->n_models = a->models != NULL ? wa->n_models : 0;
        a->max_concurrency = wa->max_concurrency;
        /* "" and NULL both mean a direct connection. */
        a->proxy = wa->proxy != NULL && wa->proxy[0] != '\0' ? gw_xstrdup(wa->proxy) : NULL;
        a->cooldown_until_ms = wa->cooldown_until_ms;
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
    for (size_t i = 0; i < n; i++)
        s->accounts[i].index = (uint32_t)i;
}

/* Copies text from the wire into a log line: printable ASCII, bounded. */
static void
snapshot_log_text(const char *in, char *out, size_t size)
{
    size_t i = 0;

    for (; in != NULL && *in != '\0' && i + 1 < size; in++)
        out[i++] = (*in >= 0x20 && *in < 0x7f) ? *in : '?';
    out[i] = '\0';
}

static enum edge_group_mode
snapshot_group_mode(const struct gw_wire_group *wg)
{
    char shown[40];

    if (wg->mode == NULL || strcmp(wg->mode, "dedicated") == 0)
        return EDGE_GROUP_DEDICATED;
    if (strcmp(wg->mode, "pool") == 0)
        return EDGE_GROUP_POOL;
    if (strcmp(wg->mode, "hybrid") == 0)
        return EDGE_GROUP_HYBRID;
    snapshot_log_text(wg->mode, shown, sizeof(shown));
    gw_log(GW_LOG_WARN, "EDGE-SNAPSHOT", "group %llu: unknown mode \"%s\"; treated as dedicated",
           (unsigned long long)wg->id, shown);
    return EDGE_GROUP_DEDICATED;
}

static void
snapshot_build_groups(struct edge_snapshot *s, const struct gw_wire_snapshot *w)
{
    size_t n = 0;

    s->groups = gw_xcalloc(w->n_groups ? w->n_groups : 1, sizeof(*s->groups));
    for (size_t i = 0; i < w->n_groups; i++) {
        s->groups[i].id = w->groups[i].id;
        s->groups[i].name = snapshot_strdup(w->groups[i].name);
        s->groups[i].mode = snapshot_group_mode(&w->groups[i]);
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

/* The wire pool a pool / hybrid group draws from; NULL when the group
 * names none or the pool is not in the snapshot. The first of duplicate
 * pool ids wins. */
static const struct gw_wire_pool *
snapshot_wire_pool(const struct gw_wire_snapshot *w, const struct gw_wire_group *wg)
{
    if (wg->pool_id == 0)
        return NULL;
    for (size_t i = 0; i < w->n_pools; i++) {
        if (w->pools[i].id == wg->pool_id)
            return &w->pools[i];
    }
    gw_log(GW_LOG_DEBUG, "EDGE-SNAPSHOT", "group %llu: pool %llu not in the snapshot",
           (unsigned long long)wg->id, (unsigned long long)wg->pool_id);
    return NULL;
}

/* Resolves each pool / hybrid group's pool into pool_accounts: only
 * accounts in the snapshot, sorted for routing, each once. Every distinct
 * pool is resolved once into the shared array and the groups using it share
 * the slice, so the storage never exceeds the pools' size on the wire.
 * Dedicated groups get none. */
static void
snapshot_build_pools(struct edge_snapshot *s, const struct gw_wire_snapshot *w)
{
    const struct gw_wire_pool **src = gw_xcalloc(s->n_groups ? s->n_groups : 1, sizeof(*src));
    size_t *slot = gw_xcalloc(s->n_groups ? s->n_groups : 1, sizeof(*slot)); /* used index */
    /* Distinct pools in use: the wire pool and its resolved slice. */
    const struct gw_wire_pool **used = gw_xcalloc(s->n_groups ? s->n_groups : 1, sizeof(*used));
    size_t *used_off = gw_xcalloc(s->n_groups ? s->n_groups : 1, sizeof(*used_off));
    size_t *used_n = gw_xcalloc(s->n_groups ? s->n_groups : 1, sizeof(*used_n));
    size_t n_used = 0, total = 0;

    /* The groups were de-duplicated; the first wire group of an id names
     * the pool. */
    for (size_t i = 0; i < w->n_groups; i++) {
        const struct edge_group *g = edge_snapshot_group(s, w->groups[i].id);
        size_t gi, u;

        if (g == NULL)
            continue;
        gi = (size_t)(g - s->groups);
        if (src[gi] != NULL || g->mode == EDGE_GROUP_DEDICATED)
            continue;
        src[gi] = snapshot_wire_pool(w, &w->groups[i]);
        if (src[gi] == NULL)
            continue;
        for (u = 0; u < n_used && used[u] != src[gi]; u++)
            ;
        if (u == n_used) {
            used[n_used++] = src[gi];
            total += src[gi]->n_account_ids;
        }
        slot[gi] = u;
    }
    s->pooled = gw_xcalloc(total ? total : 1, sizeof(*s->pooled));
    for (size_t u = 0, off = 0; u < n_used; u++) {
        const struct edge_account **list = s->pooled + off;
        size_t n = 0, m = 0;

        for (size_t j = 0; j < used[u]->n_account_ids; j++) {
            const struct edge_account *a = edge_snapshot_account(s, used[u]->account_ids[j]);

            if (a != NULL)
                list[n++] = a;
        }
        qsort(list, n, sizeof(*list), snapshot_cmp_route_order);
        for (size_t j = 0; j < n; j++) {
            if (m > 0 && list[m - 1] == list[j])
                continue;
            list[m++] = list[j];
        }
        used_off[u] = off;
        used_n[u] = m;
        off += used[u]->n_account_ids;
    }
    for (size_t i = 0; i < s->n_groups; i++) {
        struct edge_group *g = &s->groups[i];

        g->pool_accounts = s->pooled;
        g->n_pool_accounts = 0;
        if (src[i] != NULL) {
            g->pool_accounts = s->pooled + used_off[slot[i]];
            g->n_pool_accounts = used_n[slot[i]];
        }
    }
    free(src);
    free(slot);
    free(used);
    free(used_off);
    free(used_n);
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
        k->rpm_limit = wk->rpm_limit;
        k->tpm_limit = wk->tpm_limit;
        k->concurrency_limit = wk->concurrency_limit;
        k->allowed_models = snapshot_strv_dup(wk->allowed_models, wk->n_allowed_models);
        k->n_allowed_models = k->allowed_models != NULL ? wk->n_allowed_models : 0;
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
        w->n_groups >= SNAPSHOT_MAX_ITEMS || w->n_bindings >= SNAPSHOT_MAX_ITEMS ||
        w->n_pools >= SNAPSHOT_MAX_ITEMS)
        return GW_EMSGSIZE;
    s = gw_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->version = w->version;
    /* Order matters: bindings resolve accounts and groups, keys resolve groups. */
    snapshot_build_accounts(s, w);
    snapshot_build_groups(s, w);
    snapshot_build_bindings(s, w);
    snapshot_build_pools(s, w);
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

/* ------------------------------------------------------------ deltas */

static void
snapshot_free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void
snapshot_wire_key_fini(struct gw_wire_key *k)
{
    snapshot_free_strv(k->allowed_models, k->n_allowed_models);
    memset(k, 0, sizeof(*k));
}

static void
snapshot_wire_group_fini(struct gw_wire_group *g)
{
    free(g->name);
    free(g->mode);
    memset(g, 0, sizeof(*g));
}

static void
snapshot_wire_account_fini(struct gw_wire_account *a)
{
    free(a->name);
    free(a->kind);
    free(a->base_url);
    if (a->credential)
        explicit_bzero(a->credential, a->credential_len);
    free(a->credential);
    snapshot_free_strv(a->models, a->n_models);
    free(a->proxy);
    memset(a, 0, sizeof(*a));
}

static void
snapshot_wire_pool_fini(struct gw_wire_pool *p)
{
    free(p->name);
    free(p->account_ids);
    memset(p, 0, sizeof(*p));
}

/* Finds the index of the element whose uint64_t id (at offset 0) is `id`
 * in an array of n elements of `size` bytes; n when absent. Linear: a delta
 * carries few changes, and the build that follows is linear anyway. */
static size_t
snapshot_find_id(const void *arr, size_t n, size_t size, uint64_t id)
{
    const char *p = arr;

    for (size_t i = 0; i < n; i++) {
        uint64_t v;

        memcpy(&v, p + i * size, sizeof(v));
        if (v == id)
            return i;
    }
    return n;
}

/* Makes room for one more element at the end of *arr (n elements). */
static gw_err
snapshot_grow(void **arr, size_t n, size_t size)
{
    if (n + 1 >= SNAPSHOT_MAX_ITEMS)
        return GW_EMSGSIZE;
    *arr = gw_xrealloc(*arr, (n + 1) * size);
    return GW_OK;
}

/* Removes element i by moving the last one into its place (order does not
 * matter: the build sorts). */
static void
snapshot_remove_at(void *arr, size_t *n, size_t size, size_t i)
{
    char *p = arr;

    if (i + 1 < *n)
        memcpy(p + i * size, p + (*n - 1) * size, size);
    (*n)--;
}

#define SNAPSHOT_UPSERT(arr, n, item, fini)                                                        \
    do {                                                                                           \
        size_t i_ = snapshot_find_id((arr), (n), sizeof(*(arr)), (item).id);                       \
        if (i_ < (n)) {                                                                            \
            fini(&(arr)[i_]);                                                                      \
        } else {                                                                                   \
            void *p_ = (arr);                                                                      \
            rv = snapshot_grow(&p_, (n), sizeof(*(arr)));                                          \
            if (rv != GW_OK)                                                                       \
                return rv;                                                                         \
            (arr) = p_;                                                                            \
            i_ = (n)++;                                                                            \
        }                                                                                          \
        (arr)[i_] = (item);                                                                        \
        memset(&(item), 0, sizeof(item));                                                          \
    } while (0)

#define SNAPSHOT_REMOVE(arr, n, rid, fini)                                                         \
    do {                                                                                           \
        size_t i_ = snapshot_find_id((arr), (n), sizeof(*(arr)), (rid));                           \
        if (i_ < (n)) {                                                                            \
            fini(&(arr)[i_]);                                                                      \
            snapshot_remove_at((arr), &(n), sizeof(*(arr)), i_);                                   \
        }                                                                                          \
    } while (0)

static size_t
snapshot_find_binding(const struct gw_wire_snapshot *b, const struct gw_wire_binding *x)
{
    for (size_t i = 0; i < b->n_bindings; i++)
        if (b->bindings[i].group_id == x->group_id && b->bindings[i].account_id == x->account_id)
            return i;
    return b->n_bindings;
}

static gw_err
snapshot_apply_change(struct gw_wire_snapshot *b, struct gw_wire_change *c)
{
    gw_err rv = GW_OK;
    size_t i;

    switch (c->kind) {
    case GW_CHANGE_KEY:
        SNAPSHOT_UPSERT(b->keys, b->n_keys, c->u.key, snapshot_wire_key_fini);
        break;
    case GW_CHANGE_GROUP:
        SNAPSHOT_UPSERT(b->groups, b->n_groups, c->u.group, snapshot_wire_group_fini);
        break;
    case GW_CHANGE_ACCOUNT:
        SNAPSHOT_UPSERT(b->accounts, b->n_accounts, c->u.account, snapshot_wire_account_fini);
        break;
    case GW_CHANGE_POOL:
        SNAPSHOT_UPSERT(b->pools, b->n_pools, c->u.pool, snapshot_wire_pool_fini);
        break;
    case GW_CHANGE_BINDING:
        if (snapshot_find_binding(b, &c->u.binding) < b->n_bindings)
            break;
        {
            void *p = b->bindings;

            rv = snapshot_grow(&p, b->n_bindings, sizeof(*b->bindings));
            if (rv != GW_OK)
                return rv;
            b->bindings = p;
        }
        b->bindings[b->n_bindings++] = c->u.binding;
        break;
    case GW_CHANGE_BINDING_REMOVED:
        i = snapshot_find_binding(b, &c->u.binding);
        if (i < b->n_bindings)
            snapshot_remove_at(b->bindings, &b->n_bindings, sizeof(*b->bindings), i);
        break;
    case GW_CHANGE_KEY_REMOVED:
        SNAPSHOT_REMOVE(b->keys, b->n_keys, c->u.removed_id, snapshot_wire_key_fini);
        break;
    case GW_CHANGE_ACCOUNT_REMOVED:
        SNAPSHOT_REMOVE(b->accounts, b->n_accounts, c->u.removed_id, snapshot_wire_account_fini);
        break;
    case GW_CHANGE_GROUP_REMOVED:
        SNAPSHOT_REMOVE(b->groups, b->n_groups, c->u.removed_id, snapshot_wire_group_fini);
        break;
    case GW_CHANGE_POOL_REMOVED:
        SNAPSHOT_REMOVE(b->pools, b->n_pools, c->u.removed_id, snapshot_wire_pool_fini);
        break;
    case GW_CHANGE_NONE:
    default:
        /* An entity kind this edge does not know: newer hub. Skip it. */
        gw_log(GW_LOG_WARN, "EDGE-SNAPSHOT", "unknown change kind %d skipped", (int)c->kind);
        break;
    }
    return rv;
}

gw_err
edge_snapshot_apply_deltas(struct gw_wire_snapshot *base, struct gw_wire_deltas *d)
{
    gw_err rv;

    if (d->snapshot_required || d->from_version != base->version || d->to_version < d->from_version)
        return GW_EINVAL;
    for (size_t i = 0; i < d->n_changes; i++) {
        rv = snapshot_apply_change(base, &d->changes[i]);
        if (rv != GW_OK)
            return rv;
        /* Moved or consumed: nothing left for gw_msg_fini to free. */
        d->changes[i].kind = GW_CHANGE_NONE;
    }
    base->version = d->to_version;
    base->unchanged = 0;
    return GW_OK;
}
