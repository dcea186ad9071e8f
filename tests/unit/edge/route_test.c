/* SPDX-License-Identifier: Apache-2.0 */
/* Router: nginx smooth weighted round robin sequences, priority tiers
 * (lower number first), disabled accounts skipped, weight <= 0 as 1, the
 * ordered failover list, per-group state and pruning after a swap. */
#include "gw_test.h"

#include <string.h>

#include "gw_buf.h"
#include "route.h"
#include "snapshot.h"

#define MAXA 8

struct fixture {
    struct edge_account acc[MAXA];
    const struct edge_account *ptrs[MAXA];
    struct edge_group group;
};

/* Accounts must be given in snapshot order: priority, then id. */
static void
fixture_init(struct fixture *f, uint64_t group_id, size_t n, const int32_t *prio,
             const int32_t *weight, const int *enabled)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        f->acc[i].id = 100 + i;
        f->acc[i].priority = prio[i];
        f->acc[i].weight = weight[i];
        f->acc[i].enabled = enabled ? enabled[i] : 1;
        f->ptrs[i] = &f->acc[i];
    }
    f->group.id = group_id;
    f->group.accounts = f->ptrs;
    f->group.n_accounts = n;
}

/* The picked account ids as letters, 'a' = id 100. */
static void
pick_sequence(struct edge_route *r, const struct edge_group *g, size_t n, char *out)
{
    const struct edge_account *c[MAXA];

    for (size_t i = 0; i < n; i++) {
        size_t got = edge_route_pick(r, g, c, MAXA);
        assert_true(got > 0);
        out[i] = (char)('a' + (c[0]->id - 100));
    }
    out[n] = '\0';
}

static void
test_swrr_nginx_sequence(void **state)
{
    static const int32_t prio[] = {0, 0, 0};
    static const int32_t weight[] = {5, 1, 1};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    char seq[32];

    (void)state;
    fixture_init(&f, 1, 3, prio, weight, NULL);
    /* nginx's documented sequence for weights 5,1,1, then it repeats. */
    pick_sequence(r, &f.group, 14, seq);
    assert_string_equal(seq, "aabacaaaabacaa");
    edge_route_free(r);
}

static void
test_swrr_distribution(void **state)
{
    static const int32_t prio[] = {0, 0, 0, 0};
    static const int32_t weight[] = {3, 2, 0, -4}; /* <= 0 counts as 1 */
    struct fixture f;
    struct edge_route *r = edge_route_new();
    char seq[64];
    size_t count[4] = {0};

    (void)state;
    fixture_init(&f, 1, 4, prio, weight, NULL);
    /* Total weight 7: every window of 7 picks is exact. */
    pick_sequence(r, &f.group, 56, seq);
    for (size_t i = 0; i < 56; i++)
        count[seq[i] - 'a']++;
    assert_int_equal(count[0], 24);
    assert_int_equal(count[1], 16);
    assert_int_equal(count[2], 8);
    assert_int_equal(count[3], 8);
    /* Smooth: the heaviest never runs more than twice in a row here. */
    assert_null(strstr(seq, "aaa"));
    edge_route_free(r);
}

static void
test_priority_and_candidates(void **state)
{
    /* a,b: priority 0; c: priority 1; d: priority 7 (disabled); e: 7 */
    static const int32_t prio[] = {0, 0, 1, 7, 7};
    static const int32_t weight[] = {1, 1, 100, 1, 1};
    static const int enabled[] = {1, 1, 1, 0, 1};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    const struct edge_account *c[MAXA];
    size_t n;

    (void)state;
    fixture_init(&f, 1, 5, prio, weight, enabled);
    n = edge_route_pick(r, &f.group, c, MAXA);
    /* The weight 100 account of the worse tier never wins the first slot. */
    assert_int_equal(n, 4);
    assert_int_equal(c[0]->id, 100);
    assert_int_equal(c[1]->id, 101);
    assert_int_equal(c[2]->id, 102);
    assert_int_equal(c[3]->id, 104); /* disabled 103 skipped */
    n = edge_route_pick(r, &f.group, c, MAXA);
    assert_int_equal(n, 4);
    assert_int_equal(c[0]->id, 101);
    assert_int_equal(c[1]->id, 100);
    assert_int_equal(c[2]->id, 102);

    /* cap limits the list but the pick stays first. */
    n = edge_route_pick(r, &f.group, c, 2);
    assert_int_equal(n, 2);
    assert_int_equal(c[0]->id, 100);
    assert_int_equal(c[1]->id, 101);
    edge_route_free(r);
}

static void
test_disabled_tier_falls_through(void **state)
{
    static const int32_t prio[] = {0, 0, 3, 3};
    static const int32_t weight[] = {1, 1, 2, 1};
    static const int enabled[] = {0, 0, 1, 1};
    static const int none[] = {0, 0, 0, 0};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    const struct edge_account *c[MAXA];
    char seq[16];

    (void)state;
    fixture_init(&f, 1, 4, prio, weight, enabled);
    pick_sequence(r, &f.group, 6, seq);
    assert_string_equal(seq, "cdccdc");

    fixture_init(&f, 1, 4, prio, weight, none);
    assert_int_equal(edge_route_pick(r, &f.group, c, MAXA), 0);
    f.group.n_accounts = 0;
    assert_int_equal(edge_route_pick(r, &f.group, c, MAXA), 0);
    assert_int_equal(edge_route_pick(r, NULL, c, MAXA), 0);
    edge_route_free(r);
}

static void
test_state_per_group(void **state)
{
    static const int32_t prio[] = {0, 0};
    static const int32_t weight[] = {1, 1};
    struct fixture f1, f2;
    struct edge_route *r = edge_route_new();
    char s1[8], s2[8];

    (void)state;
    fixture_init(&f1, 1, 2, prio, weight, NULL);
    fixture_init(&f2, 2, 2, prio, weight, NULL);
    /* Picks in group 1 do not shift group 2's rotation. */
    pick_sequence(r, &f1.group, 3, s1);
    pick_sequence(r, &f2.group, 3, s2);
    assert_string_equal(s1, "aba");
    assert_string_equal(s2, "aba");
    assert_int_equal(edge_route_state_count(r), 4);
    edge_route_free(r);
}

static void
test_prune(void **state)
{
    static const int32_t prio[] = {0, 0, 0};
    static const int32_t weight[] = {5, 1, 1};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    struct gw_wire_snapshot w;
    struct gw_wire_group groups[1] = {{1, NULL}};
    struct gw_wire_account accounts[2];
    struct gw_wire_binding bindings[1] = {{1, 100}};
    struct edge_snapshot *s = NULL;
    char seq[8];

    (void)state;
    fixture_init(&f, 1, 3, prio, weight, NULL);
    pick_sequence(r, &f.group, 2, seq);
    assert_string_equal(seq, "aa");
    /* Plenty of other groups: the table grows and rehashes. */
    for (uint64_t g = 10; g < 60; g++) {
        f.group.id = g;
        pick_sequence(r, &f.group, 1, seq);
    }
    assert_int_equal(edge_route_state_count(r), 3 + 50 * 3);

    /* New snapshot: group 1 with only account 100 (101 unbound, 102 gone). */
    memset(&w, 0, sizeof(w));
    memset(accounts, 0, sizeof(accounts));
    accounts[0].id = 100;
    accounts[0].enabled = 1;
    accounts[1].id = 101;
    accounts[1].enabled = 1;
    w.version = 2;
    w.groups = groups;
    w.n_groups = 1;
    w.accounts = accounts;
    w.n_accounts = 2;
    w.bindings = bindings;
    w.n_bindings = 1;
    GW_PASS(edge_snapshot_build(&w, &s));
    edge_route_prune(r, s);
    assert_int_equal(edge_route_state_count(r), 1);

    /* Account 100 kept its running weight (-4 after "aa"), the others start
     * again from 0: "abaca". A full reset would give "aabac". */
    f.group.id = 1;
    pick_sequence(r, &f.group, 5, seq);
    assert_string_equal(seq, "abaca");
    edge_snapshot_unref(s);
    edge_route_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swrr_nginx_sequence),
        cmocka_unit_test(test_swrr_distribution),
        cmocka_unit_test(test_priority_and_candidates),
        cmocka_unit_test(test_disabled_tier_falls_through),
        cmocka_unit_test(test_state_per_group),
        cmocka_unit_test(test_prune),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
