/* SPDX-License-Identifier: Apache-2.0 */
/* The store front: picks a backend by DSN scheme (the way nng picks a
 * transport by URL scheme), owns its private block and a mutex, and wraps
 * every slot in lock / call / unlock after checking the arguments that both
 * backends would otherwise have to check alike. */
#include "store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct hub_store {
    const struct hub_store_ops *ops;
    void *priv;
    pthread_mutex_t mu;
};

static const struct hub_store_ops *const store_backends[] = {
    &hub_store_sqlite_ops,
#ifdef GW_WITH_MYSQL
    &hub_store_mysql_ops,
#endif
};

#define STORE_SCHEME_MAX 16

/* A scheme is what precedes the first ':' and looks like a URL scheme. The
 * DSN itself is never echoed into err: for a mysql DSN it holds a password. */
static gw_err
store_split_scheme(const char *dsn, char *scheme, size_t scheme_size, const char **rest)
{
    const char *colon = strchr(dsn, ':');
    size_t n;

    if (colon == NULL)
        return GW_EINVAL;
    n = (size_t)(colon - dsn);
    if (n == 0 || n >= scheme_size)
        return GW_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = dsn[i];
        int ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
        if (!ok)
            return GW_EINVAL;
    }
    memcpy(scheme, dsn, n);
    scheme[n] = '\0';
    *rest = colon + 1;
    return GW_OK;
}

gw_err
hub_store_open(const char *dsn, struct hub_store **out, struct gw_buf *err)
{
    struct gw_buf scratch = GW_BUF_INIT;
    struct gw_buf *eb = err != NULL ? err : &scratch;
    const struct hub_store_ops *ops = NULL;
    struct hub_store *st = NULL;
    char scheme[STORE_SCHEME_MAX];
    const char *rest = NULL;
    int opened = 0;
    gw_err rv = GW_EINVAL;

    if (out != NULL)
        *out = NULL;
    if (dsn == NULL || out == NULL) {
        gw_buf_append_str(eb, "store: no DSN given");
        goto out;
    }
    rv = store_split_scheme(dsn, scheme, sizeof(scheme), &rest);
    if (rv != GW_OK) {
        gw_buf_append_str(eb, "store: malformed DSN (expected sqlite:PATH or "
                              "mysql://user:pass@host:port/db)");
        goto out;
    }
    for (size_t i = 0; i < sizeof(store_backends) / sizeof(store_backends[0]); i++) {
        if (strcmp(store_backends[i]->scheme, scheme) == 0)
            ops = store_backends[i];
    }
    if (ops == NULL) {
        gw_buf_appendf(eb, "store: unknown or disabled DSN scheme \"%s\"", scheme);
        rv = GW_EINVAL;
        goto out;
    }
    if (*rest == '\0') {
        gw_buf_appendf(eb, "store: empty %s DSN", scheme);
        rv = GW_EINVAL;
        goto out;
    }

    st = gw_xcalloc(1, sizeof(*st));
    st->ops = ops;
    st->priv = gw_xcalloc(1, ops->priv_size);
    if (pthread_mutex_init(&st->mu, NULL) != 0) {
        gw_buf_append_str(eb, "store: mutex init failed");
        rv = GW_EINTERNAL;
        free(st->priv);
        free(st);
        st = NULL;
        goto out;
    }
    rv = ops->open(st->priv, rest, eb);
    if (rv != GW_OK)
        goto out;
    opened = 1;
    rv = ops->migrate(st->priv, eb);
    if (rv != GW_OK)
        goto out;
    *out = st;
    st = NULL;
out:
    if (st != NULL) {
        if (opened)
            st->ops->close(st->priv);
        pthread_mutex_destroy(&st->mu);
        free(st->priv);
        free(st);
    }
    gw_buf_fini(&scratch);
    return rv;
}

void
hub_store_close(struct hub_store *st)
{
    if (st == NULL)
        return;
    st->ops->close(st->priv);
    pthread_mutex_destroy(&st->mu);
    free(st->priv);
    free(st);
}

const char *
hub_store_scheme(const struct hub_store *st)
{
    return st->ops->scheme;
}

/* Lock, call, unlock: every wrapper has this one shape. */
#define STORE_CALL(st, slot, ...)                                                                  \
    do {                                                                                           \
        gw_err store_rv_;                                                                          \
        pthread_mutex_lock(&(st)->mu);                                                             \
        store_rv_ = (st)->ops->slot((st)->priv, __VA_ARGS__);                                      \
        pthread_mutex_unlock(&(st)->mu);                                                           \
        return store_rv_;                                                                          \
    } while (0)

/* Text that must fit a fixed-size field of the public structs (so what is
 * stored always comes back whole); NULL or empty is refused when required. */
static int
store_text_ok(const char *s, size_t field_size, int required)
{
    size_t n;

    if (s == NULL)
        return !required;
    n = strnlen(s, field_size);
    if (n >= field_size)
        return 0;
    return !required || n > 0;
}

gw_err
hub_store_config_version(struct hub_store *st, uint64_t *out)
{
    if (st == NULL || out == NULL)
        return GW_EINVAL;
    STORE_CALL(st, config_version, out);
}

gw_err
hub_store_admin_count(struct hub_store *st, uint64_t *out)
{
    if (st == NULL || out == NULL)
        return GW_EINVAL;
    STORE_CALL(st, admin_count, out);
}

gw_err
hub_store_admin_create(struct hub_store *st, const char *username, const char *password_hash,
                       int must_change, uint64_t *id_out)
{
    struct hub_admin probe;

    if (st == NULL || password_hash == NULL || *password_hash == '\0' ||
        !store_text_ok(username, sizeof(probe.username), 1))
        return GW_EINVAL;
    STORE_CALL(st, admin_create, username, password_hash, must_change ? 1 : 0, id_out);
}

gw_err
hub_store_admin_get(struct hub_store *st, const char *username, struct hub_admin *out)
{
    gw_err rv;

    if (st == NULL || out == NULL || username == NULL)
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!store_text_ok(username, sizeof(out->username), 1))
        return GW_ENOTFOUND;
    pthread_mutex_lock(&st->mu);
    rv = st->ops->admin_get(st->priv, username, out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK)
        hub_admin_fini(out);
    return rv;
}

void
hub_admin_fini(struct hub_admin *a)
{
    if (a == NULL)
        return;
    free(a->password_hash);
    memset(a, 0, sizeof(*a));
}

gw_err
hub_store_group_create(struct hub_store *st, const char *name, struct hub_group *out)
{
    struct hub_group probe;

    if (st == NULL || out == NULL || !store_text_ok(name, sizeof(probe.name), 1))
        return GW_EINVAL;
    STORE_CALL(st, group_create, name, out);
}

gw_err
hub_store_group_get(struct hub_store *st, uint64_t id, struct hub_group *out)
{
    if (st == NULL || out == NULL)
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    STORE_CALL(st, group_get, id, out);
}

gw_err
hub_store_account_create(struct hub_store *st, const struct hub_account_new *in,
                         struct hub_account *out)
{
    struct hub_account probe;

    if (st == NULL || in == NULL || out == NULL ||
        !store_text_ok(in->name, sizeof(probe.name), 1) ||
        !store_text_ok(in->kind, sizeof(probe.kind), 1) ||
        !store_text_ok(in->base_url, sizeof(probe.base_url), 0) ||
        (in->credential_sealed == NULL && in->credential_sealed_len > 0) ||
        in->credential_sealed_len > HUB_STORE_CREDENTIAL_MAX)
        return GW_EINVAL;
    STORE_CALL(st, account_create, in, out);
}

gw_err
hub_store_account_get(struct hub_store *st, uint64_t id, struct hub_account *out)
{
    if (st == NULL || out == NULL)
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    STORE_CALL(st, account_get, id, out);
}

gw_err
hub_store_binding_create(struct hub_store *st, uint64_t group_id, uint64_t account_id)
{
    if (st == NULL)
        return GW_EINVAL;
    STORE_CALL(st, binding_create, group_id, account_id);
}

gw_err
hub_store_key_create(struct hub_store *st, const struct hub_key_new *in, struct hub_key *out)
{
    struct hub_key probe;

    if (st == NULL || in == NULL || out == NULL ||
        !store_text_ok(in->name, sizeof(probe.name), 0) ||
        !store_text_ok(in->prefix, sizeof(probe.prefix), 1))
        return GW_EINVAL;
    STORE_CALL(st, key_create, in, out);
}

gw_err
hub_store_key_get(struct hub_store *st, uint64_t id, struct hub_key *out)
{
    if (st == NULL || out == NULL)
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    STORE_CALL(st, key_get, id, out);
}

gw_err
hub_store_snapshot_load(struct hub_store *st, struct gw_wire_snapshot *out)
{
    gw_err rv;

    if (st == NULL || out == NULL)
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    rv = st->ops->snapshot_load(st->priv, out);
    pthread_mutex_unlock(&st->mu);
    /* A backend that failed half way may have filled part of it. */
    if (rv != GW_OK)
        hub_store_snapshot_fini(out);
    return rv;
}

void
hub_store_snapshot_fini(struct gw_wire_snapshot *snap)
{
    if (snap == NULL)
        return;
    free(snap->keys);
    for (size_t i = 0; i < snap->n_groups; i++)
        free(snap->groups[i].name);
    free(snap->groups);
    for (size_t i = 0; i < snap->n_accounts; i++) {
        struct gw_wire_account *a = &snap->accounts[i];
        free(a->name);
        free(a->kind);
        free(a->base_url);
        if (a->credential != NULL) {
            /* Sealed, but wipe it anyway: it may have been opened in place. */
            explicit_bzero(a->credential, a->credential_len);
            free(a->credential);
        }
    }
    free(snap->accounts);
    free(snap->bindings);
    memset(snap, 0, sizeof(*snap));
}

gw_err
hub_store_prices_list(struct hub_store *st, struct hub_price **out, size_t *n_out)
{
    gw_err rv;

    if (st == NULL || out == NULL || n_out == NULL)
        return GW_EINVAL;
    *out = NULL;
    *n_out = 0;
    pthread_mutex_lock(&st->mu);
    rv = st->ops->prices_list(st->priv, out, n_out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK) {
        free(*out);
        *out = NULL;
        *n_out = 0;
    }
    return rv;
}

gw_err
hub_store_usage_apply(struct hub_store *st, const struct gw_wire_usage_batch *batch,
                      const int64_t *costs, int *duplicate)
{
    struct hub_usage_row probe;

    if (st == NULL || batch == NULL || duplicate == NULL ||
        !store_text_ok(batch->edge_id, sizeof(probe.edge_id), 1) ||
        (batch->records == NULL && batch->n_records > 0))
        return GW_EINVAL;
    *duplicate = 0;
    STORE_CALL(st, usage_apply, batch, costs, duplicate);
}

gw_err
hub_store_edge_last_seq(struct hub_store *st, const char *edge_id, uint64_t *out)
{
    struct hub_usage_row probe;

    if (st == NULL || out == NULL || edge_id == NULL)
        return GW_EINVAL;
    *out = 0;
    /* An id too long to have been stored has never sent a batch. */
    if (!store_text_ok(edge_id, sizeof(probe.edge_id), 1))
        return GW_OK;
    STORE_CALL(st, edge_last_seq, edge_id, out);
}

gw_err
hub_store_usage_list(struct hub_store *st, const struct hub_usage_filter *f,
                     struct hub_usage_row **rows, size_t *n_rows)
{
    struct hub_usage_filter clamped;
    gw_err rv;

    if (st == NULL || f == NULL || rows == NULL || n_rows == NULL)
        return GW_EINVAL;
    *rows = NULL;
    *n_rows = 0;
    clamped = *f;
    if (clamped.limit < 1)
        clamped.limit = 1;
    if (clamped.limit > HUB_STORE_USAGE_LIST_MAX)
        clamped.limit = HUB_STORE_USAGE_LIST_MAX;
    pthread_mutex_lock(&st->mu);
    rv = st->ops->usage_list(st->priv, &clamped, rows, n_rows);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK) {
        free(*rows);
        *rows = NULL;
        *n_rows = 0;
    }
    return rv;
}
