/* SPDX-License-Identifier: Apache-2.0 */
/* Snapshot: build from a wire snapshot, key lookup by raw key (hit, miss,
 * disabled, expired), hash collisions in the table, group account order,
 * copies that outlive the wire message, and reference counting. */
#include "gw_test.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_buf.h"
#include "gw_crypto.h"
#include "dialect.h"
#include "snapshot.h"

#define NOW 1700000000

static void
hash_of(const char *key, uint8_t out[GW_SHA256_LEN])
{
    gw_sha256(key, strlen(key), out);
}

/* Builds an owned wire snapshot (freed with gw_msg_fini on a wrapper). */
static void
fill_wire(struct gw_msg *m)
{
    struct gw_wire_snapshot *w;
    static const struct {
        uint64_t id;
        const char *raw;
        uint64_t group;
        int enabled;
        int64_t expires;
    } keys[] = {
        {1, "aicp_good", 1, 1, 0},          {2, "aicp_disabled", 1, 0, 0},
        {3, "aicp_expired", 1, 1, NOW - 1}, {4, "aicp_future", 1, 1, NOW + 3600},
        {5, "aicp_nogroup", 77, 1, 0},      {6, "aicp_good", 2, 1, 0}, /* duplicate hash */
    };

    memset(m, 0, sizeof(*m));
    m->type = GW_MSG_SNAPSHOT;
    w = &m->u.snapshot;
    w->version = 42;
    w->n_keys = sizeof(keys) / sizeof(keys[0]);
    w->keys = gw_xcalloc(w->n_keys, sizeof(*w->keys));
    for (size_t i = 0; i < w->n_keys; i++) {
        w->keys[i].id = keys[i].id;
        hash_of(keys[i].raw, w->keys[i].key_hash);
        w->keys[i].group_id = keys[i].group;
        w->keys[i].enabled = keys[i].enabled;
        w->keys[i].expires_at = keys[i].expires;
    }
    w->n_groups = 3;
    w->groups = gw_xcalloc(3, sizeof(*w->groups));
    w->groups[0].id = 2;
    w->groups[0].name = gw_xstrdup("empty");
    w->groups[1].id = 1;
    w->groups[1].name = gw_xstrdup("team");
    w->groups[2].id = 1; /* duplicate id: ignored */
    w->groups[2].name = gw_xstrdup("dup");

    w->n_accounts = 3;
    w->accounts = gw_xcalloc(3, sizeof(*w->accounts));
    for (size_t i = 0; i < 3; i++) {
        struct gw_wire_account *a = &w->accounts[i];
        char cred[32];

        a->id = 10 + i;
        a->name = gw_xstrdup("acct");
        a->kind = gw_xstrdup("anthropic");
        a->base_url = gw_xstrdup("http://127.0.0.1:1");
        snprintf(cred, sizeof(cred), "sk-secret-%zu", i);
        a->credential_len = strlen(cred);
        a->credential = gw_xmalloc(a->credential_len);
        memcpy(a->credential, cred, a->credential_len); /* not NUL-terminated on the wire */
        a->weight = 1;
        a->enabled = 1;
    }
    w->accounts[0].priority = 5; /* id 10 */
    w->accounts[1].priority = 0; /* id 11 */
    w->accounts[2].priority = 5; /* id 12 */
    w->accounts[2].enabled = 0;

    w->n_bindings = 6;
    w->bindings = gw_xcalloc(6, sizeof(*w->bindings));
    w->bindings[0] = (struct gw_wire_binding){1, 12};
    w->bindings[1] = (struct gw_wire_binding){1, 10};
    w->bindings[2] = (struct gw_wire_binding){1, 11};
    w->bindings[3] = (struct gw_wire_binding){1, 10};  /* duplicate */
    w->bindings[4] = (struct gw_wire_binding){99, 10}; /* unknown group */
    w->bindings[5] = (struct gw_wire_binding){1, 404}; /* unknown account */
}

static void
test_lookup(void **state)
{
    struct gw_msg m;
    struct edge_snapshot *s = NULL;
    const struct edge_key *k = NULL;

    (void)state;
    fill_wire(&m);
    GW_PASS(edge_snapshot_build(&m.u.snapshot, &s));
    gw_msg_fini(&m); /* the snapshot must not depend on the wire message */

    assert_int_equal(edge_snapshot_version(s), 42);
    assert_int_equal(edge_snapshot_key_count(s), 5);

    assert_int_equal(edge_snapshot_lookup(s, "aicp_good", 9, NOW, &k), EDGE_KEY_OK);
    assert_non_null(k);
    assert_int_equal(k->id, 1); /* first of the duplicate hashes wins */
    assert_non_null(k->group);
    assert_int_equal(k->group->id, 1);
    assert_string_equal(k->group->name, "team");

    assert_int_equal(edge_snapshot_lookup(s, "aicp_goo", 8, NOW, &k), EDGE_KEY_UNKNOWN);
    assert_null(k);
    assert_int_equal(edge_snapshot_lookup(s, "", 0, NOW, &k), EDGE_KEY_UNKNOWN);

    assert_int_equal(edge_snapshot_lookup(s, "aicp_disabled", 13, NOW, &k), EDGE_KEY_DISABLED);
    assert_int_equal(k->id, 2);
    assert_int_equal(edge_snapshot_lookup(s, "aicp_expired", 12, NOW, &k), EDGE_KEY_EXPIRED);
    assert_int_equal(k->id, 3);
    /* Valid until its expiry second. */
    assert_int_equal(edge_snapshot_lookup(s, "aicp_expired", 12, NOW - 2, &k), EDGE_KEY_OK);
    assert_int_equal(edge_snapshot_lookup(s, "aicp_future", 11, NOW, &k), EDGE_KEY_OK);
    assert_int_equal(k->id, 4);

    /* A key whose group is missing is found but has no group. */
    assert_int_equal(edge_snapshot_lookup(s, "aicp_nogroup", 12, NOW, &k), EDGE_KEY_OK);
    assert_null(k->group);

    edge_snapshot_unref(s);
}

static void
test_groups_accounts(void **state)
{
    struct gw_msg m;
    struct edge_snapshot *s = NULL;
    const struct edge_group *g;
    const struct edge_account *a;

    (void)state;
    fill_wire(&m);
    GW_PASS(edge_snapshot_build(&m.u.snapshot, &s));
    gw_msg_fini(&m);

    g = edge_snapshot_group(s, 1);
    assert_non_null(g);
    /* Priority ascending, then id; duplicates and unknown bindings dropped;
     * disabled accounts stay listed (the router filters). */
    assert_int_equal(g->n_accounts, 3);
    assert_int_equal(g->accounts[0]->id, 11);
    assert_int_equal(g->accounts[1]->id, 10);
    assert_int_equal(g->accounts[2]->id, 12);
    assert_false(g->accounts[2]->enabled);

    g = edge_snapshot_group(s, 2);
    assert_non_null(g);
    assert_int_equal(g->n_accounts, 0);
    assert_null(edge_snapshot_group(s, 99));

    a = edge_snapshot_account(s, 11);
    assert_non_null(a);
    assert_string_equal(a->credential, "sk-secret-1");
    assert_int_equal(a->credential_len, strlen("sk-secret-1"));
    assert_string_equal(a->kind, "anthropic");
    assert_string_equal(a->base_url, "http://127.0.0.1:1");
    assert_ptr_equal(a, edge_snapshot_group(s, 1)->accounts[0]);
    assert_null(edge_snapshot_account(s, 404));
    edge_snapshot_unref(s);
}

static void
test_refcount(void **state)
{
    struct gw_msg m;
    struct edge_snapshot *s = NULL;
    const struct edge_key *k;

    (void)state;
    fill_wire(&m);
    GW_PASS(edge_snapshot_build(&m.u.snapshot, &s));
    gw_msg_fini(&m);
    assert_ptr_equal(edge_snapshot_ref(s), s);
    assert_ptr_equal(edge_snapshot_ref(s), s);
    edge_snapshot_unref(s);
    edge_snapshot_unref(s);
    /* One reference left: still fully usable (ASan flags a premature free). */
    assert_int_equal(edge_snapshot_lookup(s, "aicp_good", 9, NOW, &k), EDGE_KEY_OK);
    assert_string_equal(edge_snapshot_account(s, 10)->credential, "sk-secret-0");
    edge_snapshot_unref(s);
    edge_snapshot_unref(NULL);
}

static void
test_unchanged_and_empty(void **state)
{
    struct gw_wire_snapshot w;
    struct edge_snapshot *s = NULL;
    const struct edge_key *k;

    (void)state;
    memset(&w, 0, sizeof(w));
    w.version = 3;
    w.unchanged = 1;
    GW_FAIL(edge_snapshot_build(&w, &s), GW_EINVAL);
    assert_null(s);
    w.unchanged = 0;
    GW_PASS(edge_snapshot_build(&w, &s));
    assert_int_equal(edge_snapshot_key_count(s), 0);
    assert_int_equal(edge_snapshot_lookup(s, "x", 1, NOW, &k), EDGE_KEY_UNKNOWN);
    assert_null(edge_snapshot_group(s, 1));
    assert_null(edge_snapshot_account(s, 1));
    edge_snapshot_unref(s);
}

/* Many keys, plus hashes crafted to share their first 8 bytes (the table
 * hash) so that probing must compare whole hashes. */
static void
test_many_keys_and_collisions(void **state)
{
    enum { N = 20000, NCOL = 50 };
    struct gw_wire_snapshot w;
    struct edge_snapshot *s = NULL;
    char raw[32];

    (void)state;
    memset(&w, 0, sizeof(w));
    w.version = 1;
    w.n_keys = N + NCOL;
    w.keys = gw_xcalloc(w.n_keys, sizeof(*w.keys));
    for (size_t i = 0; i < N; i++) {
        snprintf(raw, sizeof(raw), "aicp_key_%zu", i);
        hash_of(raw, w.keys[i].key_hash);
        w.keys[i].id = i + 1;
        w.keys[i].enabled = 1;
    }
    for (size_t i = 0; i < NCOL; i++) {
        struct gw_wire_key *k = &w.keys[N + i];
        memset(k->key_hash, 0xAB, 8);
        memset(k->key_hash + 8, (int)i, GW_SHA256_LEN - 8);
        k->id = 100000 + i;
        k->enabled = 1;
    }
    GW_PASS(edge_snapshot_build(&w, &s));
    assert_int_equal(edge_snapshot_key_count(s), N + NCOL);
    for (size_t i = 0; i < N; i++) {
        const struct edge_key *k = NULL;
        snprintf(raw, sizeof(raw), "aicp_key_%zu", i);
        assert_int_equal(edge_snapshot_lookup(s, raw, strlen(raw), NOW, &k), EDGE_KEY_OK);
        assert_int_equal(k->id, i + 1);
    }
    for (size_t i = 0; i < NCOL; i++) {
        uint8_t h[GW_SHA256_LEN];
        memset(h, 0xAB, 8);
        memset(h + 8, (int)i, GW_SHA256_LEN - 8);
        const struct edge_key *k = edge_snapshot_find_hash(s, h);
        assert_non_null(k);
        assert_int_equal(k->id, 100000 + i);
    }
    {
        uint8_t h[GW_SHA256_LEN];
        memset(h, 0xAB, 8);
        memset(h + 8, 0xEE, GW_SHA256_LEN - 8);
        assert_null(edge_snapshot_find_hash(s, h));
    }
    edge_snapshot_unref(s);
    free(w.keys);
}

static char **
strv(size_t n, ...)
{
    char **v = gw_xcalloc(n, sizeof(*v));
    va_list ap;

    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        v[i] = gw_xstrdup(va_arg(ap, const char *));
    va_end(ap);
    return v;
}

static void
add_account(struct gw_wire_snapshot *w, uint64_t id, const char *kind, int32_t priority)
{
    struct gw_wire_account *a = &w->accounts[w->n_accounts++];

    memset(a, 0, sizeof(*a));
    a->id = id;
    a->name = gw_xstrdup("acct");
    a->kind = gw_xstrdup(kind);
    a->base_url = gw_xstrdup("http://127.0.0.1:1");
    a->priority = priority;
    a->weight = 1;
    a->enabled = 1;
}

static void
add_group(struct gw_wire_snapshot *w, uint64_t id, const char *mode, uint64_t pool_id)
{
    struct gw_wire_group *g = &w->groups[w->n_groups++];

    g->id = id;
    g->name = gw_xstrdup("g");
    g->mode = mode != NULL ? gw_xstrdup(mode) : NULL;
    g->pool_id = pool_id;
}

/* Account routing fields, group modes with their pools, key limits. */
static void
test_routing_fields(void **state)
{
    struct gw_msg m;
    struct gw_wire_snapshot *w;
    struct edge_snapshot *s = NULL;
    const struct edge_account *a;
    const struct edge_group *g;
    const struct edge_key *k = NULL;

    (void)state;
    memset(&m, 0, sizeof(m));
    m.type = GW_MSG_SNAPSHOT;
    w = &m.u.snapshot;
    w->version = 7;
    w->accounts = gw_xcalloc(8, sizeof(*w->accounts));
    add_account(w, 30, "gemini", 2);
    add_account(w, 10, "anthropic_compatible", 1);
    add_account(w, 20, "openai_compatible", 1);
    add_account(w, 40, "mock", 0);
    add_account(w, 50, "no-such-kind", 0);
    add_account(w, 60, "anthropic", 9);
    w->accounts[1].models = strv(2, "kimi-k2", "claude-sonnet-4-5");
    w->accounts[1].n_models = 2;
    w->accounts[1].max_concurrency = 12;
    w->accounts[1].proxy = gw_xstrdup("socks5h://127.0.0.1:1080");
    w->accounts[1].cooldown_until_ms = 1760000000000;
    w->accounts[2].proxy = gw_xstrdup(""); /* same as none */

    w->groups = gw_xcalloc(6, sizeof(*w->groups));
    add_group(w, 1, NULL, 0);          /* default: dedicated */
    add_group(w, 2, "pool", 100);      /* pool */
    add_group(w, 3, "hybrid", 100);    /* hybrid, same pool: shares the list */
    add_group(w, 4, "dedicated", 100); /* dedicated with a pool: none resolved */
    add_group(w, 5, "mystery", 100);   /* unknown mode: dedicated */
    add_group(w, 6, "pool", 404);      /* pool not in the snapshot */

    w->pools = gw_xcalloc(3, sizeof(*w->pools));
    w->n_pools = 3;
    w->pools[0].id = 100;
    w->pools[0].name = gw_xstrdup("shared");
    w->pools[0].n_account_ids = 6;
    w->pools[0].account_ids = gw_xcalloc(6, sizeof(uint64_t));
    w->pools[0].account_ids[0] = 60;
    w->pools[0].account_ids[1] = 30;
    w->pools[0].account_ids[2] = 999; /* unknown account: skipped */
    w->pools[0].account_ids[3] = 20;
    w->pools[0].account_ids[4] = 10;
    w->pools[0].account_ids[5] = 30; /* twice: once */
    w->pools[1].id = 100;            /* a duplicate pool id: the first wins */
    w->pools[1].n_account_ids = 1;
    w->pools[1].account_ids = gw_xcalloc(1, sizeof(uint64_t));
    w->pools[1].account_ids[0] = 40;
    w->pools[2].id = 200;

    w->bindings = gw_xcalloc(1, sizeof(*w->bindings));
    w->n_bindings = 1;
    w->bindings[0] = (struct gw_wire_binding){3, 40};

    w->keys = gw_xcalloc(2, sizeof(*w->keys));
    w->n_keys = 2;
    w->keys[0].id = 1;
    hash_of("aicp_limited", w->keys[0].key_hash);
    w->keys[0].group_id = 3;
    w->keys[0].enabled = 1;
    w->keys[0].rpm_limit = 60;
    w->keys[0].tpm_limit = 100000;
    w->keys[0].concurrency_limit = 2;
    w->keys[0].allowed_models = strv(2, "claude-haiku-4-5", "gemini-2.5-flash");
    w->keys[0].n_allowed_models = 2;
    w->keys[1].id = 2;
    hash_of("aicp_free", w->keys[1].key_hash);
    w->keys[1].group_id = 1;
    w->keys[1].enabled = 1;

    GW_PASS(edge_snapshot_build(w, &s));
    gw_msg_fini(&m); /* everything was copied */

    /* Accounts: sorted by id, index is the position, dialects from the kind. */
    for (uint32_t i = 0; i < 6; i++) {
        a = edge_snapshot_account(s, 10 * (i + 1));
        assert_non_null(a);
        assert_int_equal(a->index, i);
    }
    a = edge_snapshot_account(s, 10);
    assert_int_equal(a->dialects, EDGE_DIALECT_BIT(EDGE_DIALECT_ANTHROPIC));
    assert_int_equal(a->n_models, 2);
    assert_string_equal(a->models[0], "kimi-k2");
    assert_string_equal(a->models[1], "claude-sonnet-4-5");
    assert_int_equal(a->max_concurrency, 12);
    assert_string_equal(a->proxy, "socks5h://127.0.0.1:1080");
    assert_int_equal(a->cooldown_until_ms, 1760000000000);
    a = edge_snapshot_account(s, 20);
    assert_int_equal(a->dialects, EDGE_DIALECT_BIT(EDGE_DIALECT_OPENAI));
    assert_null(a->proxy);
    assert_int_equal(a->n_models, 0);
    assert_null(a->models);
    assert_int_equal(a->max_concurrency, 0);
    assert_int_equal(a->cooldown_until_ms, 0);
    assert_int_equal(edge_snapshot_account(s, 30)->dialects, EDGE_DIALECT_BIT(EDGE_DIALECT_GEMINI));
    assert_int_equal(edge_snapshot_account(s, 40)->dialects,
                     EDGE_DIALECT_BIT(EDGE_DIALECT_ANTHROPIC) |
                         EDGE_DIALECT_BIT(EDGE_DIALECT_OPENAI) |
                         EDGE_DIALECT_BIT(EDGE_DIALECT_GEMINI));
    assert_int_equal(edge_snapshot_account(s, 50)->dialects, 0);

    /* Groups. */
    g = edge_snapshot_group(s, 1);
    assert_int_equal(g->mode, EDGE_GROUP_DEDICATED);
    assert_int_equal(g->n_pool_accounts, 0);
    g = edge_snapshot_group(s, 2);
    assert_int_equal(g->mode, EDGE_GROUP_POOL);
    assert_int_equal(g->n_accounts, 0);
    /* Priority, then id; unknown and repeated members dropped. */
    assert_int_equal(g->n_pool_accounts, 4);
    assert_int_equal(g->pool_accounts[0]->id, 10);
    assert_int_equal(g->pool_accounts[1]->id, 20);
    assert_int_equal(g->pool_accounts[2]->id, 30);
    assert_int_equal(g->pool_accounts[3]->id, 60);
    assert_ptr_equal(g->pool_accounts[0], edge_snapshot_account(s, 10));
    g = edge_snapshot_group(s, 3);
    assert_int_equal(g->mode, EDGE_GROUP_HYBRID);
    assert_int_equal(g->n_accounts, 1);
    assert_int_equal(g->accounts[0]->id, 40);
    assert_int_equal(g->n_pool_accounts, 4);
    assert_int_equal(g->pool_accounts[3]->id, 60);
    g = edge_snapshot_group(s, 4);
    assert_int_equal(g->mode, EDGE_GROUP_DEDICATED);
    assert_int_equal(g->n_pool_accounts, 0);
    g = edge_snapshot_group(s, 5);
    assert_int_equal(g->mode, EDGE_GROUP_DEDICATED);
    assert_int_equal(g->n_pool_accounts, 0);
    g = edge_snapshot_group(s, 6);
    assert_int_equal(g->mode, EDGE_GROUP_POOL);
    assert_int_equal(g->n_pool_accounts, 0);

    /* Keys. */
    assert_int_equal(edge_snapshot_lookup(s, "aicp_limited", 12, NOW, &k), EDGE_KEY_OK);
    assert_int_equal(k->rpm_limit, 60);
    assert_int_equal(k->tpm_limit, 100000);
    assert_int_equal(k->concurrency_limit, 2);
    assert_int_equal(k->n_allowed_models, 2);
    assert_string_equal(k->allowed_models[0], "claude-haiku-4-5");
    assert_string_equal(k->allowed_models[1], "gemini-2.5-flash");
    assert_int_equal(k->group->mode, EDGE_GROUP_HYBRID);
    assert_int_equal(edge_snapshot_lookup(s, "aicp_free", 9, NOW, &k), EDGE_KEY_OK);
    assert_int_equal(k->rpm_limit + k->tpm_limit + k->concurrency_limit, 0);
    assert_int_equal(k->n_allowed_models, 0);
    assert_null(k->allowed_models);
    edge_snapshot_unref(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_groups_accounts),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_unchanged_and_empty),
        cmocka_unit_test(test_many_keys_and_collisions),
        cmocka_unit_test(test_routing_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
