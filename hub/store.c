/* SPDX-License-Identifier: Apache-2.0 */
/* The store front: picks a backend by DSN scheme (the way nng picks a
 * transport by URL scheme), owns its private block and a mutex, and wraps
 * every slot in lock / call / unlock after checking the arguments that both
 * backends would otherwise have to check alike. */
#include "store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_json.h"

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

/* A model list both backends can store and give back whole. */
static int
store_models_ok(const char *const *models, size_t n)
{
    if (n == 0)
        return 1;
    if (models == NULL || n > HUB_STORE_MODELS_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!store_text_ok(models[i], HUB_STORE_MODEL_LEN_MAX + 1, 1))
            return 0;
    }
    return 1;
}

int
hub_store_group_mode_ok(const char *mode)
{
    return mode != NULL && (strcmp(mode, "dedicated") == 0 || strcmp(mode, "pool") == 0 ||
                            strcmp(mode, "hybrid") == 0);
}

void
hub_store_models_to_json(const char *const *models, size_t n, struct gw_buf *out)
{
    gw_buf_append_str(out, "[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            gw_buf_append_str(out, ",");
        gw_json_append_string(out, models[i], strlen(models[i]));
    }
    gw_buf_append_str(out, "]");
}

gw_err
hub_store_models_from_json(const char *text, size_t len, char ***out, size_t *n_out)
{
    const char *why = NULL;
    const cJSON *it;
    cJSON *arr;
    char **v;
    size_t n = 0;

    *out = NULL;
    *n_out = 0;
    if (text == NULL || len == 0)
        return GW_OK;
    arr = gw_json_parse(text, len, &why);
    if (arr == NULL || !cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return GW_ESTORE;
    }
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it)) {
            cJSON_Delete(arr);
            return GW_ESTORE;
        }
        n++;
    }
    if (n == 0) {
        cJSON_Delete(arr);
        return GW_OK;
    }
    v = gw_xcalloc(n, sizeof(*v));
    n = 0;
    cJSON_ArrayForEach(it, arr)
    {
        v[n++] = gw_xstrdup(it->valuestring);
    }
    cJSON_Delete(arr);
    *out = v;
    *n_out = n;
    return GW_OK;
}

/* Two timestamps per account hold the failures before the latest one, so
 * the rule is exact for a threshold of three. */
_Static_assert(HUB_STORE_AUTH_FAIL_THRESHOLD == 3, "the account row keeps two failure times");

#define STORE_EVENT_FUTURE_MS (5 * 60 * 1000)

unsigned
hub_store_account_event_apply(struct hub_store_account_health *h, const struct gw_account_event *ev,
                              int64_t now_ms, char *reason, size_t reason_size)
{
    int64_t t = ev->time_ms;
    unsigned changed = 0;

    /* Edge clocks are trusted to the minute, not beyond. */
    if (t <= 0 || t > now_ms + STORE_EVENT_FUTURE_MS)
        t = now_ms;
    if (ev->status == 401 || ev->status == 403) {
        int64_t a = t, b = h->auth_fail_last_ms, c = h->auth_fail_prev_ms, x;

        /* Sort the three newest failure times: a >= b >= c. */
        if (b > a) {
            x = a;
            a = b;
            b = x;
        }
        if (c > b) {
            x = b;
            b = c;
            c = x;
        }
        if (b > a) {
            x = a;
            a = b;
            b = x;
        }
        h->auth_fail_last_ms = a;
        h->auth_fail_prev_ms = b;
        if (h->auth_failures < UINT32_MAX)
            h->auth_failures++;
        changed |= HUB_STORE_EVENT_COUNTED;
        if (h->enabled && c > 0 && a - c <= HUB_STORE_AUTH_FAIL_WINDOW_MS) {
            h->enabled = 0;
            snprintf(reason, reason_size, "upstream rejected the credential (%u)", ev->status);
            changed |= HUB_STORE_EVENT_DISABLED;
        }
    } else if (ev->status == 429 && ev->retry_after_ms >= HUB_STORE_COOLDOWN_MIN_MS) {
        int64_t wait = ev->retry_after_ms < HUB_STORE_COOLDOWN_MAX_MS ? ev->retry_after_ms
                                                                      : HUB_STORE_COOLDOWN_MAX_MS;
        int64_t until = t + wait;

        /* A cooldown that is already over, or shorter than the current one,
         * changes nothing. */
        if (until > now_ms && until > h->cooldown_until_ms) {
            h->cooldown_until_ms = until;
            changed |= HUB_STORE_EVENT_COOLDOWN;
        }
    }
    return changed;
}

static void
store_free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void
hub_account_fini(struct hub_account *a)
{
    if (a == NULL)
        return;
    store_free_strv(a->models, a->n_models);
    memset(a, 0, sizeof(*a));
}

void
hub_key_fini(struct hub_key *k)
{
    if (k == NULL)
        return;
    store_free_strv(k->allowed_models, k->n_allowed_models);
    memset(k, 0, sizeof(*k));
}

void
hub_pool_fini(struct hub_pool *p)
{
    if (p == NULL)
        return;
    free(p->account_ids);
    memset(p, 0, sizeof(*p));
}

void
hub_accounts_free(struct hub_account *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hub_account_fini(&a[i]);
    free(a);
}

void
hub_keys_free(struct hub_key *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hub_key_fini(&k[i]);
    free(k);
}

void
hub_pools_free(struct hub_pool *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hub_pool_fini(&p[i]);
    free(p);
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
hub_store_group_list(struct hub_store *st, struct hub_group **out, size_t *n_out)
{
    gw_err rv;

    if (st == NULL || out == NULL || n_out == NULL)
        return GW_EINVAL;
    *out = NULL;
    *n_out = 0;
    pthread_mutex_lock(&st->mu);
    rv = st->ops->group_list(st->priv, out, n_out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK) {
        free(*out);
        *out = NULL;
        *n_out = 0;
    }
    return rv;
}

gw_err
hub_store_group_update(struct hub_store *st, uint64_t id, const struct hub_group_patch *p,
                       struct hub_group *out)
{
    if (st == NULL || p == NULL || out == NULL || p->fields == 0 ||
        (p->fields & ~(unsigned)(HUB_GROUP_SET_MODE | HUB_GROUP_SET_POOL)) != 0 ||
        ((p->fields & HUB_GROUP_SET_MODE) && !hub_store_group_mode_ok(p->mode)))
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    STORE_CALL(st, group_update, id, p, out);
}

gw_err
hub_store_account_create(struct hub_store *st, const struct hub_account_new *in,
                         struct hub_account *out)
{
    struct hub_account probe;
    gw_err rv;

    if (st == NULL || in == NULL || out == NULL ||
        !store_text_ok(in->name, sizeof(probe.name), 1) ||
        !store_text_ok(in->kind, sizeof(probe.kind), 1) ||
        !store_text_ok(in->base_url, sizeof(probe.base_url), 0) ||
        !store_text_ok(in->proxy, sizeof(probe.proxy), 0) ||
        !store_models_ok(in->models, in->n_models) ||
        (in->credential_sealed == NULL && in->credential_sealed_len > 0) ||
        in->credential_sealed_len > HUB_STORE_CREDENTIAL_MAX)
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    rv = st->ops->account_create(st->priv, in, out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK)
        hub_account_fini(out);
    return rv;
}

gw_err
hub_store_account_get(struct hub_store *st, uint64_t id, struct hub_account *out)
{
    gw_err rv;

    if (st == NULL || out == NULL)
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    rv = st->ops->account_get(st->priv, id, out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK)
        hub_account_fini(out);
    return rv;
}

gw_err
hub_store_account_list(struct hub_store *st, struct hub_account **out, size_t *n_out)
{
    gw_err rv;

    if (st == NULL || out == NULL || n_out == NULL)
        return GW_EINVAL;
    *out = NULL;
    *n_out = 0;
    pthread_mutex_lock(&st->mu);
    rv = st->ops->account_list(st->priv, out, n_out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK) {
        hub_accounts_free(*out, *n_out);
        *out = NULL;
        *n_out = 0;
    }
    return rv;
}

gw_err
hub_store_account_update(struct hub_store *st, uint64_t id, const struct hub_account_patch *p,
                         struct hub_account *out)
{
    struct hub_account probe;
    unsigned known = HUB_ACCOUNT_SET_NAME | HUB_ACCOUNT_SET_ENABLED | HUB_ACCOUNT_SET_PRIORITY |
                     HUB_ACCOUNT_SET_WEIGHT | HUB_ACCOUNT_SET_MODELS |
                     HUB_ACCOUNT_SET_MAX_CONCURRENCY | HUB_ACCOUNT_SET_PROXY |
                     HUB_ACCOUNT_SET_BASE_URL | HUB_ACCOUNT_SET_CREDENTIAL;
    gw_err rv;

    if (st == NULL || p == NULL || out == NULL || p->fields == 0 || (p->fields & ~known) != 0)
        return GW_EINVAL;
    if (((p->fields & HUB_ACCOUNT_SET_NAME) && !store_text_ok(p->name, sizeof(probe.name), 1)) ||
        ((p->fields & HUB_ACCOUNT_SET_MODELS) && !store_models_ok(p->models, p->n_models)) ||
        ((p->fields & HUB_ACCOUNT_SET_PROXY) && !store_text_ok(p->proxy, sizeof(probe.proxy), 0)) ||
        ((p->fields & HUB_ACCOUNT_SET_BASE_URL) &&
         !store_text_ok(p->base_url, sizeof(probe.base_url), 0)) ||
        ((p->fields & HUB_ACCOUNT_SET_CREDENTIAL) &&
         ((p->credential_sealed == NULL && p->credential_sealed_len > 0) ||
          p->credential_sealed_len > HUB_STORE_CREDENTIAL_MAX)))
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    rv = st->ops->account_update(st->priv, id, p, out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK)
        hub_account_fini(out);
    return rv;
}

gw_err
hub_store_pool_create(struct hub_store *st, const char *name, struct hub_pool *out)
{
    struct hub_pool probe;

    if (st == NULL || out == NULL || !store_text_ok(name, sizeof(probe.name), 1))
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    STORE_CALL(st, pool_create, name, out);
}

gw_err
hub_store_pool_get(struct hub_store *st, uint64_t id, struct hub_pool *out)
{
    gw_err rv;

    if (st == NULL || out == NULL)
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    rv = st->ops->pool_get(st->priv, id, out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK)
        hub_pool_fini(out);
    return rv;
}

gw_err
hub_store_pool_list(struct hub_store *st, struct hub_pool **out, size_t *n_out)
{
    gw_err rv;

    if (st == NULL || out == NULL || n_out == NULL)
        return GW_EINVAL;
    *out = NULL;
    *n_out = 0;
    pthread_mutex_lock(&st->mu);
    rv = st->ops->pool_list(st->priv, out, n_out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK) {
        hub_pools_free(*out, *n_out);
        *out = NULL;
        *n_out = 0;
    }
    return rv;
}

gw_err
hub_store_pool_add_account(struct hub_store *st, uint64_t pool_id, uint64_t account_id)
{
    if (st == NULL)
        return GW_EINVAL;
    STORE_CALL(st, pool_add_account, pool_id, account_id);
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
    gw_err rv;

    if (st == NULL || in == NULL || out == NULL ||
        !store_text_ok(in->name, sizeof(probe.name), 0) ||
        !store_text_ok(in->prefix, sizeof(probe.prefix), 1) ||
        !store_models_ok(in->allowed_models, in->n_allowed_models))
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    rv = st->ops->key_create(st->priv, in, out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK)
        hub_key_fini(out);
    return rv;
}

gw_err
hub_store_key_get(struct hub_store *st, uint64_t id, struct hub_key *out)
{
    gw_err rv;

    if (st == NULL || out == NULL)
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    rv = st->ops->key_get(st->priv, id, out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK)
        hub_key_fini(out);
    return rv;
}

gw_err
hub_store_key_list(struct hub_store *st, uint64_t group_id, struct hub_key **out, size_t *n_out)
{
    gw_err rv;

    if (st == NULL || out == NULL || n_out == NULL)
        return GW_EINVAL;
    *out = NULL;
    *n_out = 0;
    pthread_mutex_lock(&st->mu);
    rv = st->ops->key_list(st->priv, group_id, out, n_out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK) {
        hub_keys_free(*out, *n_out);
        *out = NULL;
        *n_out = 0;
    }
    return rv;
}

gw_err
hub_store_key_update(struct hub_store *st, uint64_t id, const struct hub_key_patch *p,
                     struct hub_key *out)
{
    struct hub_key probe;
    unsigned known = HUB_KEY_SET_NAME | HUB_KEY_SET_ENABLED | HUB_KEY_SET_RPM | HUB_KEY_SET_TPM |
                     HUB_KEY_SET_CONCURRENCY | HUB_KEY_SET_ALLOWED_MODELS | HUB_KEY_SET_EXPIRES_AT;
    gw_err rv;

    if (st == NULL || p == NULL || out == NULL || p->fields == 0 || (p->fields & ~known) != 0 ||
        ((p->fields & HUB_KEY_SET_NAME) && !store_text_ok(p->name, sizeof(probe.name), 0)) ||
        ((p->fields & HUB_KEY_SET_ALLOWED_MODELS) &&
         !store_models_ok(p->allowed_models, p->n_allowed_models)))
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    rv = st->ops->key_update(st->priv, id, p, out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK)
        hub_key_fini(out);
    return rv;
}

gw_err
hub_store_key_revoke(struct hub_store *st, uint64_t id)
{
    if (st == NULL)
        return GW_EINVAL;
    STORE_CALL(st, key_revoke, id);
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

/* The snapshot is made of the same owned fields as a decoded one, so the
 * wire module frees it (and wipes the credentials, sealed or opened). */
void
hub_store_snapshot_fini(struct gw_wire_snapshot *snap)
{
    struct gw_msg m;

    if (snap == NULL)
        return;
    memset(&m, 0, sizeof(m));
    m.type = GW_MSG_SNAPSHOT;
    m.u.snapshot = *snap;
    gw_msg_fini(&m);
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
        (batch->records == NULL && batch->n_records > 0) ||
        (batch->account_events == NULL && batch->n_account_events > 0))
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

/* ---------------------------------------------------------------- replication */

/* What one change-log row names, for merging: a class and one or two ids. */
enum store_class {
    STORE_C_KEY,
    STORE_C_GROUP,
    STORE_C_ACCOUNT,
    STORE_C_POOL,
    STORE_C_BINDING,
};

struct store_ref {
    enum store_class cls;
    uint64_t a, b; /* id, or (group_id, account_id) for bindings */
    uint64_t version;
};

static int
store_ref_from_row(const struct hub_change_ref *r, struct store_ref *out)
{
    memset(out, 0, sizeof(*out));
    out->version = r->version;
    if (strcmp(r->entity, "key") == 0) {
        out->cls = STORE_C_KEY;
        out->a = r->entity_id;
    } else if (strcmp(r->entity, "group") == 0) {
        out->cls = STORE_C_GROUP;
        out->a = r->entity_id;
    } else if (strcmp(r->entity, "account") == 0) {
        out->cls = STORE_C_ACCOUNT;
        out->a = r->entity_id;
    } else if (strcmp(r->entity, "pool") == 0) {
        out->cls = STORE_C_POOL;
        out->a = r->entity_id;
    } else if (strcmp(r->entity, "pool_account") == 0) {
        /* A membership row names its pool: the pool's member list changed. */
        if (r->pool_id == 0)
            return 0;
        out->cls = STORE_C_POOL;
        out->a = r->pool_id;
    } else if (strcmp(r->entity, "binding") == 0) {
        if (r->group_id == 0 || r->account_id == 0)
            return 0;
        out->cls = STORE_C_BINDING;
        out->a = r->group_id;
        out->b = r->account_id;
    } else {
        return 0;
    }
    return 1;
}

static int
store_ref_cmp_entity(const void *x, const void *y)
{
    const struct store_ref *a = x, *b = y;

    if (a->cls != b->cls)
        return a->cls < b->cls ? -1 : 1;
    if (a->a != b->a)
        return a->a < b->a ? -1 : 1;
    if (a->b != b->b)
        return a->b < b->b ? -1 : 1;
    if (a->version != b->version)
        return a->version < b->version ? -1 : 1;
    return 0;
}

static int
store_ref_cmp_version(const void *x, const void *y)
{
    const struct store_ref *a = x, *b = y;

    if (a->version != b->version)
        return a->version < b->version ? -1 : 1;
    return 0;
}

/* Binary search over an array sorted by a leading uint64_t id. */
static void *
store_find_id(void *base, size_t n, size_t size, uint64_t id)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t got = *(const uint64_t *)(const void *)((char *)base + mid * size);
        if (got == id)
            return (char *)base + mid * size;
        if (got < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Moves one entity's current state out of snap into c (the snapshot keeps
 * an emptied husk that snapshot_fini frees harmlessly). */
static void
store_materialise(const struct store_ref *r, struct gw_wire_snapshot *snap,
                  struct gw_wire_change *c)
{
    memset(c, 0, sizeof(*c));
    c->version = r->version;
    switch (r->cls) {
    case STORE_C_KEY: {
        struct gw_wire_key *k = store_find_id(snap->keys, snap->n_keys, sizeof(*k), r->a);
        if (k == NULL) {
            c->kind = GW_CHANGE_KEY_REMOVED;
            c->u.removed_id = r->a;
            return;
        }
        c->kind = GW_CHANGE_KEY;
        c->u.key = *k;
        k->allowed_models = NULL;
        k->n_allowed_models = 0;
        return;
    }
    case STORE_C_GROUP: {
        struct gw_wire_group *g = store_find_id(snap->groups, snap->n_groups, sizeof(*g), r->a);
        if (g == NULL) {
            c->kind = GW_CHANGE_GROUP_REMOVED;
            c->u.removed_id = r->a;
            return;
        }
        c->kind = GW_CHANGE_GROUP;
        c->u.group = *g;
        g->name = NULL;
        g->mode = NULL;
        return;
    }
    case STORE_C_ACCOUNT: {
        struct gw_wire_account *a =
            store_find_id(snap->accounts, snap->n_accounts, sizeof(*a), r->a);
        if (a == NULL) {
            c->kind = GW_CHANGE_ACCOUNT_REMOVED;
            c->u.removed_id = r->a;
            return;
        }
        c->kind = GW_CHANGE_ACCOUNT;
        c->u.account = *a;
        memset(a, 0, sizeof(*a));
        return;
    }
    case STORE_C_POOL: {
        struct gw_wire_pool *p = store_find_id(snap->pools, snap->n_pools, sizeof(*p), r->a);
        if (p == NULL) {
            c->kind = GW_CHANGE_POOL_REMOVED;
            c->u.removed_id = r->a;
            return;
        }
        c->kind = GW_CHANGE_POOL;
        c->u.pool = *p;
        memset(p, 0, sizeof(*p));
        return;
    }
    case STORE_C_BINDING:
        c->kind = GW_CHANGE_BINDING_REMOVED;
        for (size_t i = 0; i < snap->n_bindings; i++) {
            if (snap->bindings[i].group_id == r->a && snap->bindings[i].account_id == r->b) {
                c->kind = GW_CHANGE_BINDING;
                break;
            }
        }
        c->u.binding.group_id = r->a;
        c->u.binding.account_id = r->b;
        return;
    }
}

/* Under st->mu. */
static gw_err
store_changes_locked(struct hub_store *st, uint64_t from, size_t max_changes,
                     struct gw_wire_deltas *out)
{
    struct hub_change_ref *rows = NULL;
    struct store_ref *refs = NULL;
    struct gw_wire_snapshot snap;
    size_t n_rows = 0, n_refs = 0, i;
    uint64_t current = 0, oldest = 0;
    gw_err rv;

    memset(&snap, 0, sizeof(snap));
    rv = st->ops->config_version(st->priv, &current);
    if (rv != GW_OK)
        return rv;
    out->from_version = from;
    out->to_version = current;
    if (from == current)
        return GW_OK;
    if (from > current) {
        out->snapshot_required = 1;
        return GW_OK;
    }
    rv = st->ops->change_log_since(st->priv, from, max_changes + 1, &rows, &n_rows, &oldest);
    if (rv != GW_OK)
        return rv;
    /* Every version from from+1 to current must still be in the log. */
    if (n_rows > max_changes || oldest == 0 || oldest > from + 1 || n_rows == 0 ||
        rows[0].version != from + 1) {
        out->snapshot_required = 1;
        goto out;
    }
    refs = gw_xcalloc(n_rows, sizeof(*refs));
    for (i = 0; i < n_rows; i++) {
        if (store_ref_from_row(&rows[i], &refs[n_refs]))
            n_refs++;
    }
    /* Merge: keep the newest entry of each entity. */
    qsort(refs, n_refs, sizeof(*refs), store_ref_cmp_entity);
    {
        size_t w = 0;
        for (i = 0; i < n_refs; i++) {
            if (i + 1 < n_refs && refs[i + 1].cls == refs[i].cls && refs[i + 1].a == refs[i].a &&
                refs[i + 1].b == refs[i].b)
                continue;
            refs[w++] = refs[i];
        }
        n_refs = w;
    }
    qsort(refs, n_refs, sizeof(*refs), store_ref_cmp_version);
    if (n_refs == 0)
        goto out;
    rv = st->ops->snapshot_load(st->priv, &snap);
    if (rv != GW_OK)
        goto out;
    out->changes = gw_xcalloc(n_refs, sizeof(*out->changes));
    for (i = 0; i < n_refs; i++)
        store_materialise(&refs[i], &snap, &out->changes[i]);
    out->n_changes = n_refs;
out:
    hub_store_snapshot_fini(&snap);
    free(refs);
    free(rows);
    return rv;
}

gw_err
hub_store_changes_since(struct hub_store *st, uint64_t from_version, size_t max_changes,
                        struct gw_wire_deltas *out)
{
    gw_err rv;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (st == NULL || out == NULL || max_changes == 0 || max_changes > GW_WIRE_CHANGES_MAX)
        return GW_EINVAL;
    pthread_mutex_lock(&st->mu);
    rv = store_changes_locked(st, from_version, max_changes, out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK)
        hub_store_deltas_fini(out);
    return rv;
}

void
hub_store_deltas_fini(struct gw_wire_deltas *d)
{
    struct gw_msg m;

    if (d == NULL)
        return;
    memset(&m, 0, sizeof(m));
    m.type = GW_MSG_DELTAS;
    m.u.deltas = *d;
    gw_msg_fini(&m);
    memset(d, 0, sizeof(*d));
}

gw_err
hub_store_change_log_prune(struct hub_store *st, uint64_t keep)
{
    uint64_t current = 0;
    gw_err rv;

    if (st == NULL || keep == 0)
        return GW_EINVAL;
    pthread_mutex_lock(&st->mu);
    rv = st->ops->config_version(st->priv, &current);
    if (rv == GW_OK && current > keep)
        rv = st->ops->change_log_prune(st->priv, current - keep + 1);
    pthread_mutex_unlock(&st->mu);
    return rv;
}

/* ---------------------------------------------------------------- edges */

int
hub_store_edge_id_ok(const char *id)
{
    size_t n;

    if (id == NULL)
        return 0;
    for (n = 0; id[n] != '\0'; n++) {
        if (n >= HUB_EDGE_ID_MAX || id[n] <= 0x20 || id[n] >= 0x7f)
            return 0;
    }
    return n > 0;
}

gw_err
hub_store_edge_create(struct hub_store *st, const struct hub_edge *e)
{
    if (st == NULL || e == NULL || !hub_store_edge_id_ok(e->id) ||
        memchr(e->name, '\0', sizeof(e->name)) == NULL ||
        memchr(e->region, '\0', sizeof(e->region)) == NULL)
        return GW_EINVAL;
    if (!e->trusted && (e->secret_sealed == NULL || e->secret_sealed_len == 0 ||
                        e->secret_sealed_len > HUB_STORE_CREDENTIAL_MAX))
        return GW_EINVAL;
    STORE_CALL(st, edge_create, e);
}

gw_err
hub_store_edge_get(struct hub_store *st, const char *id, struct hub_edge *out)
{
    gw_err rv;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (st == NULL || out == NULL || !hub_store_edge_id_ok(id))
        return id != NULL && st != NULL && out != NULL ? GW_ENOTFOUND : GW_EINVAL;
    pthread_mutex_lock(&st->mu);
    rv = st->ops->edge_get(st->priv, id, out);
    pthread_mutex_unlock(&st->mu);
    if (rv != GW_OK)
        hub_edge_fini(out);
    return rv;
}

gw_err
hub_store_edge_list(struct hub_store *st, struct hub_edge **out, size_t *n_out)
{
    if (out != NULL)
        *out = NULL;
    if (n_out != NULL)
        *n_out = 0;
    if (st == NULL || out == NULL || n_out == NULL)
        return GW_EINVAL;
    STORE_CALL(st, edge_list, out, n_out);
}

/* Read, change, write under one lock hold: the store serialises every call,
 * so nothing else changes the row in between. */
static gw_err
store_edge_modify(struct hub_store *st, const char *id,
                  gw_err (*fn)(struct hub_edge *e, const void *arg), const void *arg)
{
    struct hub_edge e;
    gw_err rv;

    memset(&e, 0, sizeof(e));
    if (st == NULL)
        return GW_EINVAL;
    if (!hub_store_edge_id_ok(id))
        return GW_ENOTFOUND;
    pthread_mutex_lock(&st->mu);
    rv = st->ops->edge_get(st->priv, id, &e);
    if (rv == GW_OK)
        rv = fn(&e, arg);
    if (rv == GW_OK)
        rv = st->ops->edge_save(st->priv, &e);
    pthread_mutex_unlock(&st->mu);
    hub_edge_fini(&e);
    return rv;
}

static int64_t
store_unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

static gw_err
store_edge_do_revoke(struct hub_edge *e, const void *arg)
{
    (void)arg;
    if (e->revoked_at != 0)
        return GW_ENOTFOUND;
    e->revoked_at = store_unix_now();
    if (e->revoked_at == 0)
        e->revoked_at = 1;
    return GW_OK;
}

gw_err
hub_store_edge_revoke(struct hub_store *st, const char *id)
{
    return store_edge_modify(st, id, store_edge_do_revoke, NULL);
}

struct store_hb_arg {
    const struct gw_wire_heartbeat *hb;
    int64_t now_ms;
};

static void
store_copy_field(char *dst, size_t size, const char *src)
{
    size_t n = 0;

    if (src == NULL)
        return;
    /* Peer text: printable ASCII only. */
    for (; src[n] != '\0' && n + 1 < size; n++)
        dst[n] = (src[n] >= 0x20 && src[n] < 0x7f) ? src[n] : '?';
    dst[n] = '\0';
}

static gw_err
store_edge_do_heartbeat(struct hub_edge *e, const void *arg)
{
    const struct store_hb_arg *a = arg;
    const struct gw_wire_heartbeat *hb = a->hb;

    if (e->heartbeat_ms != 0) {
        e->prev_requests_total = e->requests_total;
        e->prev_errors_total = e->errors_total;
        e->prev_heartbeat_ms = e->heartbeat_ms;
    }
    e->requests_total = hb->requests_total;
    e->errors_total = hb->errors_total;
    e->usage_pending = hb->usage_pending;
    e->uptime_s = hb->uptime_s;
    e->snapshot_version = hb->snapshot_version;
    store_copy_field(e->snapshot_source, sizeof(e->snapshot_source),
                     hb->snapshot_source != NULL ? hb->snapshot_source : "hub");
    if (hb->region != NULL && hb->region[0] != '\0' && e->region[0] == '\0')
        store_copy_field(e->region, sizeof(e->region), hb->region);
    store_copy_field(e->version, sizeof(e->version), hb->version);
    e->last_seen_ms = a->now_ms;
    e->heartbeat_ms = a->now_ms;
    return GW_OK;
}

gw_err
hub_store_edge_heartbeat(struct hub_store *st, const char *id, const struct gw_wire_heartbeat *hb,
                         int64_t now_ms)
{
    struct store_hb_arg a = {hb, now_ms};

    if (hb == NULL)
        return GW_EINVAL;
    return store_edge_modify(st, id, store_edge_do_heartbeat, &a);
}

static gw_err
store_edge_do_touch(struct hub_edge *e, const void *arg)
{
    /* A Hello: seen now; the heartbeat history stays as it is. */
    e->last_seen_ms = *(const int64_t *)arg;
    return GW_OK;
}

gw_err
hub_store_edge_touch(struct hub_store *st, const char *id, int64_t now_ms)
{
    return store_edge_modify(st, id, store_edge_do_touch, &now_ms);
}

void
hub_edge_fini(struct hub_edge *e)
{
    if (e == NULL)
        return;
    if (e->secret_sealed != NULL)
        explicit_bzero(e->secret_sealed, e->secret_sealed_len);
    free(e->secret_sealed);
    memset(e, 0, sizeof(*e));
}

void
hub_edges_free(struct hub_edge *e, size_t n)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        hub_edge_fini(&e[i]);
    free(e);
}
