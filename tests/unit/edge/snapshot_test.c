/* SPDX-License-Identifier: Apache-2.0 */
/* Snapshot: build from a wire snapshot, key lookup by raw key (hit, miss,
 * disabled, expired), hash collisions in the table, group account order,
 * copies that outlive the wire message, and reference counting. */
#include "gw_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_buf.h"
#include "gw_crypto.h"
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_groups_accounts),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_unchanged_and_empty),
        cmocka_unit_test(test_many_keys_and_collisions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
