/* SPDX-License-Identifier: Apache-2.0 */
/* Router: group modes, model and dialect filters, priority tiers, nginx
 * smooth weighted round robin sequences, weighted rendezvous affinity
 * (deterministic, order-independent, moves and stays moved), cooldowns and
 * backoff from reports at explicit times, failing marks and what clears
 * them, concurrency slots, the hub's cooldown, pruning, and many threads at
 * once. Accounts are the real snapshot structs, filled by hand or built by
 * edge_snapshot_build. */
#include "gw_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "dialect.h"
#include "gw_buf.h"
#include "route.h"
#include "snapshot.h"

#define MAXA 8
#define T0 UINT64_C(1700000000000)
#define ALL_DIALECTS                                                                               \
    (EDGE_DIALECT_BIT(EDGE_DIALECT_ANTHROPIC) | EDGE_DIALECT_BIT(EDGE_DIALECT_OPENAI) |            \
     EDGE_DIALECT_BIT(EDGE_DIALECT_GEMINI))

struct fixture {
    struct edge_account acc[MAXA];
    char cred[MAXA][16];
    const struct edge_account *ptrs[MAXA];
    struct edge_group group;
};

/* n accounts with ids 100.., all bound (dedicated) in the given order, which
 * must be snapshot order: priority, then id. weight NULL = all 1. */
static void
fixture_init(struct fixture *f, uint64_t group_id, size_t n, const int32_t *prio,
             const int32_t *weight)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        struct edge_account *a = &f->acc[i];

        a->id = 100 + i;
        a->name = (char *)"";
        a->kind = (char *)"mock";
        a->base_url = (char *)"";
        snprintf(f->cred[i], sizeof(f->cred[i]), "key-%zu", 100 + i);
        a->credential = f->cred[i];
        a->credential_len = strlen(f->cred[i]);
        a->priority = prio ? prio[i] : 0;
        a->weight = weight ? weight[i] : 1;
        a->enabled = 1;
        a->dialects = ALL_DIALECTS;
        a->index = (uint32_t)i;
        f->ptrs[i] = a;
    }
    f->group.id = group_id;
    f->group.name = (char *)"g";
    f->group.accounts = f->ptrs;
    f->group.n_accounts = n;
    f->group.mode = EDGE_GROUP_DEDICATED;
}

static struct edge_route_query
query(const struct edge_group *g, uint64_t now_ms)
{
    struct edge_route_query q;

    memset(&q, 0, sizeof(q));
    q.group = g;
    q.dialect = EDGE_DIALECT_ANTHROPIC;
    q.now_ms = now_ms;
    return q;
}

/* First candidate as a letter ('a' = id 100), '-' when none. */
static char
first_of(struct edge_route *r, const struct edge_route_query *q)
{
    const struct edge_account *c[EDGE_ROUTE_MAX_CANDIDATES];
    size_t n = edge_route_candidates(r, q, c, EDGE_ROUTE_MAX_CANDIDATES);

    return n == 0 ? '-' : (char)('a' + (c[0]->id - 100));
}

/* All candidates as letters. */
static void
letters(struct edge_route *r, const struct edge_route_query *q, char *out)
{
    const struct edge_account *c[EDGE_ROUTE_MAX_CANDIDATES];
    size_t n = edge_route_candidates(r, q, c, EDGE_ROUTE_MAX_CANDIDATES);

    for (size_t i = 0; i < n; i++)
        out[i] = (char)('a' + (c[i]->id - 100));
    out[n] = '\0';
}

static void
sequence(struct edge_route *r, const struct edge_group *g, uint64_t now, size_t n, char *out)
{
    struct edge_route_query q = query(g, now);

    for (size_t i = 0; i < n; i++)
        out[i] = first_of(r, &q);
    out[n] = '\0';
}

static char
session_first(struct edge_route *r, const struct edge_group *g, const char *session, uint64_t now)
{
    struct edge_route_query q = query(g, now);

    q.session = session;
    q.session_len = strlen(session);
    return first_of(r, &q);
}

/* First candidate without a session at now (see first_of). */
static char
pick_at(struct edge_route *r, const struct fixture *f, uint64_t now)
{
    struct edge_route_query q = query(&f->group, now);

    return first_of(r, &q);
}

/* ---- round robin and tiers ------------------------------------------- */

static void
test_swrr_nginx_sequence(void **state)
{
    static const int32_t weight[] = {5, 1, 1};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    char seq[32];

    (void)state;
    fixture_init(&f, 1, 3, NULL, weight);
    /* nginx's documented sequence for weights 5,1,1, then it repeats. */
    sequence(r, &f.group, T0, 14, seq);
    assert_string_equal(seq, "aabacaaaabacaa");
    edge_route_free(r);
}

static void
test_swrr_distribution(void **state)
{
    static const int32_t weight[] = {3, 2, 0, -4}; /* <= 0 counts as 1 */
    struct fixture f;
    struct edge_route *r = edge_route_new();
    char seq[64];
    size_t count[4] = {0};

    (void)state;
    fixture_init(&f, 1, 4, NULL, weight);
    sequence(r, &f.group, T0, 56, seq);
    for (size_t i = 0; i < 56; i++)
        count[seq[i] - 'a']++;
    /* Total weight 7: every window of 7 picks is exact. */
    assert_int_equal(count[0], 24);
    assert_int_equal(count[1], 16);
    assert_int_equal(count[2], 8);
    assert_int_equal(count[3], 8);
    assert_null(strstr(seq, "aaa"));
    edge_route_free(r);
}

static void
test_priority_tiers(void **state)
{
    /* a,b: priority 0; c: 1 (weight 100); d: 7 (disabled); e: 7 */
    static const int32_t prio[] = {0, 0, 1, 7, 7};
    static const int32_t weight[] = {1, 1, 100, 1, 1};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    struct edge_route_query q;
    const struct edge_account *c[EDGE_ROUTE_MAX_CANDIDATES];
    char l[EDGE_ROUTE_MAX_CANDIDATES + 1];

    (void)state;
    fixture_init(&f, 1, 5, prio, weight);
    f.acc[3].enabled = 0;
    q = query(&f.group, T0);
    letters(r, &q, l);
    assert_string_equal(l, "abce"); /* pick, its tier, then lower tiers in order */
    letters(r, &q, l);
    assert_string_equal(l, "bace");
    /* cap limits the list; the pick stays first. */
    assert_int_equal(edge_route_candidates(r, &q, c, 2), 2);
    assert_int_equal(c[0]->id, 100);
    assert_int_equal(c[1]->id, 101);
    assert_int_equal(edge_route_candidates(r, &q, c, 0), 0);

    /* The best tier cooling: the next tier is the first, SWRR among its
     * usable accounts only. */
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_429, 10000, T0);
    edge_route_report(r, &f.acc[1], EDGE_ROUTE_429, 10000, T0);
    q.now_ms = T0 + 1;
    letters(r, &q, l);
    assert_string_equal(l, "ce");
    f.acc[2].enabled = 0;
    letters(r, &q, l);
    assert_string_equal(l, "e");
    f.acc[4].enabled = 0;
    assert_int_equal(edge_route_candidates(r, &q, c, EDGE_ROUTE_MAX_CANDIDATES), 0);
    /* Back after the cooldown. */
    q.now_ms = T0 + 10000;
    letters(r, &q, l);
    assert_int_equal(strlen(l), 2);

    q.group = NULL;
    assert_int_equal(edge_route_candidates(r, &q, c, EDGE_ROUTE_MAX_CANDIDATES), 0);
    edge_route_free(r);
}

static void
test_swrr_skips_busy(void **state)
{
    static const int32_t weight[] = {2, 1, 1};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    char seq[16];

    (void)state;
    fixture_init(&f, 1, 3, NULL, weight);
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_529, 0, T0);
    /* a out: b and c alternate; a gains no weight while out. */
    sequence(r, &f.group, T0 + 1, 4, seq);
    assert_string_equal(seq, "bcbc");
    sequence(r, &f.group, T0 + 1000, 8, seq);
    assert_string_equal(seq, "abcaabca");
    edge_route_free(r);
}

static void
test_state_per_group(void **state)
{
    struct fixture f1, f2;
    struct edge_route *r = edge_route_new();
    struct edge_route_stats st;
    char s1[8], s2[8];

    (void)state;
    fixture_init(&f1, 1, 2, NULL, NULL);
    fixture_init(&f2, 2, 2, NULL, NULL);
    sequence(r, &f1.group, T0, 3, s1);
    sequence(r, &f2.group, T0, 3, s2);
    assert_string_equal(s1, "aba");
    assert_string_equal(s2, "aba");
    edge_route_get_stats(r, T0, &st);
    assert_int_equal(st.groups, 2);
    assert_int_equal(st.rr_pairs, 4);
    edge_route_free(r);
}

/* ---- modes and filters ---------------------------------------------------- */

static void
test_group_modes(void **state)
{
    /* a, b dedicated (priority 0, 1); c, d the pool. */
    static const int32_t prio[] = {0, 1, 0, 0};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    struct edge_route_query q;
    char l[EDGE_ROUTE_MAX_CANDIDATES + 1];

    (void)state;
    fixture_init(&f, 1, 4, prio, NULL);
    f.group.n_accounts = 2;
    f.group.pool_accounts = &f.ptrs[2];
    f.group.n_pool_accounts = 2;
    q = query(&f.group, T0);

    f.group.mode = EDGE_GROUP_DEDICATED;
    letters(r, &q, l);
    assert_string_equal(l, "ab");
    f.group.mode = EDGE_GROUP_POOL;
    letters(r, &q, l);
    assert_string_equal(l, "cd");
    letters(r, &q, l);
    assert_string_equal(l, "dc");

    f.group.mode = EDGE_GROUP_HYBRID;
    letters(r, &q, l);
    assert_string_equal(l, "ab"); /* dedicated usable: no pool accounts at all */
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_5XX, 0, T0);
    q.now_ms = T0 + 1;
    letters(r, &q, l);
    assert_string_equal(l, "b"); /* one dedicated left is enough */
    f.acc[1].enabled = 0;
    letters(r, &q, l);
    assert_true(strcmp(l, "cd") == 0 || strcmp(l, "dc") == 0);
    /* A dedicated account that cannot serve the model counts as unusable. */
    q.now_ms = T0 + 1000;
    f.acc[1].enabled = 1;
    static char *only_gemini[] = {(char *)"gemini-2.5-pro"};
    f.acc[0].models = only_gemini;
    f.acc[0].n_models = 1;
    f.acc[1].models = only_gemini;
    f.acc[1].n_models = 1;
    q.model = "claude-sonnet-4-5";
    letters(r, &q, l);
    assert_true(strcmp(l, "cd") == 0 || strcmp(l, "dc") == 0);
    q.model = "gemini-2.5-pro";
    letters(r, &q, l);
    assert_string_equal(l, "ab");

    /* Empty pool: nothing when no dedicated account is usable. */
    f.group.n_pool_accounts = 0;
    q.model = "claude-sonnet-4-5";
    letters(r, &q, l);
    assert_string_equal(l, "");
    edge_route_free(r);
}

static void
test_model_filter(void **state)
{
    static char *a_models[] = {(char *)"claude-sonnet-4-5", (char *)"claude-opus-*"};
    static char *c_models[] = {(char *)"*"};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    struct edge_route_query q;
    char l[EDGE_ROUTE_MAX_CANDIDATES + 1];

    (void)state;
    /* a: listed models; b: any (no list); c: "*" */
    fixture_init(&f, 1, 3, (const int32_t[]){0, 1, 2}, NULL);
    f.acc[0].models = a_models;
    f.acc[0].n_models = 2;
    f.acc[2].models = c_models;
    f.acc[2].n_models = 1;
    q = query(&f.group, T0);

    q.model = "claude-sonnet-4-5";
    letters(r, &q, l);
    assert_string_equal(l, "abc");
    q.model = "claude-opus-4-1-20250805"; /* prefix match */
    letters(r, &q, l);
    assert_string_equal(l, "abc");
    q.model = "claude-opus-"; /* the prefix itself */
    letters(r, &q, l);
    assert_string_equal(l, "abc");
    q.model = "claude-sonnet-4-5-20250929"; /* no '*': exact only */
    letters(r, &q, l);
    assert_string_equal(l, "bc");
    q.model = "claude-opus"; /* shorter than the prefix */
    letters(r, &q, l);
    assert_string_equal(l, "bc");
    q.model = "";
    letters(r, &q, l);
    assert_string_equal(l, "bc");
    q.model = NULL; /* no filter */
    letters(r, &q, l);
    assert_string_equal(l, "abc");
    edge_route_free(r);
}

static void
test_dialect_filter(void **state)
{
    struct fixture f;
    struct edge_route *r = edge_route_new();
    struct edge_route_query q;
    char l[EDGE_ROUTE_MAX_CANDIDATES + 1];

    (void)state;
    fixture_init(&f, 1, 4, (const int32_t[]){0, 1, 2, 3}, NULL);
    f.acc[0].dialects = edge_dialect_mask_of_kind("anthropic");
    f.acc[1].dialects = edge_dialect_mask_of_kind("openai_compatible");
    f.acc[2].dialects = edge_dialect_mask_of_kind("gemini");
    f.acc[3].dialects = edge_dialect_mask_of_kind("mock");
    assert_int_not_equal(f.acc[0].dialects, 0);
    q = query(&f.group, T0);
    q.dialect = EDGE_DIALECT_ANTHROPIC;
    letters(r, &q, l);
    assert_string_equal(l, "ad");
    q.dialect = EDGE_DIALECT_OPENAI;
    letters(r, &q, l);
    assert_string_equal(l, "bd");
    q.dialect = EDGE_DIALECT_GEMINI;
    letters(r, &q, l);
    assert_string_equal(l, "cd");
    f.acc[3].dialects = 0; /* unknown kind speaks nothing */
    letters(r, &q, l);
    assert_string_equal(l, "c");
    edge_route_free(r);
}

/* ---- session affinity ------------------------------------------------------- */

static void
test_session_hash_vectors(void **state)
{
    uint8_t msg[15];

    (void)state;
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)i;
    /* SipHash-2-4 reference vectors, key 00..0f (Aumasson & Bernstein). */
    assert_true(edge_route_session_hash("", 0) == UINT64_C(0x726fdb47dd0e0e31));
    assert_true(edge_route_session_hash(msg, 15) == UINT64_C(0xa129ca6149be45e5));
}

static void
test_rendezvous_deterministic(void **state)
{
    static const int32_t weight[] = {1, 1, 2, 1};
    struct fixture f;
    const struct edge_account *rev[4];
    struct edge_group g2;
    struct edge_route *r1 = edge_route_new(), *r2 = edge_route_new();
    char seq[16], name[32];
    size_t count[4] = {0};

    (void)state;
    fixture_init(&f, 1, 4, NULL, weight);
    /* The same accounts listed in reverse: rendezvous ignores list order. */
    for (size_t i = 0; i < 4; i++)
        rev[i] = f.ptrs[3 - i];
    g2 = f.group;
    g2.id = 2;
    g2.accounts = rev;
    /* r2 has history that r1 has not: round-robin picks do not matter. */
    sequence(r2, &f.group, T0, 5, seq);

    for (int i = 0; i < 4000; i++) {
        struct edge_route_query q1 = query(&f.group, T0), q2 = query(&g2, T0);
        char l1[EDGE_ROUTE_MAX_CANDIDATES + 1], l2[EDGE_ROUTE_MAX_CANDIDATES + 1];

        snprintf(name, sizeof(name), "session-%d", i);
        q1.session = q2.session = name;
        q1.session_len = q2.session_len = strlen(name);
        letters(r1, &q1, l1);
        letters(r2, &q2, l2);
        /* The whole tier in score order: same on both, whatever the order. */
        assert_string_equal(l1, l2);
        assert_int_equal(strlen(l1), 4);
        /* Repeated: same answer; round robin does not interfere. */
        assert_int_equal(first_of(r1, &q1), l1[0]);
        count[l1[0] - 'a']++;
    }
    /* Weighted: shares 1:1:2:1 of 4000 = 800, 800, 1600, 800 (fixed hash:
     * the counts are the same on every run). */
    assert_in_range(count[0], 700, 900);
    assert_in_range(count[1], 700, 900);
    assert_in_range(count[2], 1450, 1750);
    assert_in_range(count[3], 700, 900);
    /* Another snapshot of the same accounts (other addresses, other
     * per-snapshot indexes, one more account elsewhere): same homes. */
    {
        struct fixture f3;

        fixture_init(&f3, 1, 4, NULL, weight);
        for (size_t i = 0; i < 4; i++)
            f3.acc[i].index = (uint32_t)(9 - i);
        for (int i = 0; i < 500; i++) {
            snprintf(name, sizeof(name), "session-%d", i);
            assert_int_equal(session_first(r1, &f3.group, name, T0),
                             session_first(r2, &f.group, name, T0));
        }
    }
    /* Sessions never touched the round-robin state of group 1. */
    sequence(r1, &f.group, T0, 5, seq);
    assert_string_equal(seq, "cabdc");
    edge_route_free(r1);
    edge_route_free(r2);
}

static void
test_rendezvous_minimal_disruption(void **state)
{
    struct fixture f;
    struct edge_route *r = edge_route_new();
    char before[300], name[32];
    struct edge_route_stats st;
    int moved = 0;

    (void)state;
    fixture_init(&f, 1, 4, NULL, NULL);
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        before[i] = session_first(r, &f.group, name, T0);
    }
    /* Disabling one account (the hub's decision, not a transient state)
     * moves only its own sessions, and creates no sticky entries. */
    f.acc[1].enabled = 0;
    for (int i = 0; i < 300; i++) {
        char now;

        snprintf(name, sizeof(name), "s%d", i);
        now = session_first(r, &f.group, name, T0);
        if (before[i] == 'b') {
            assert_int_not_equal(now, 'b');
            moved++;
        } else {
            assert_int_equal(now, before[i]);
        }
    }
    assert_true(moved > 40);
    edge_route_get_stats(r, T0, &st);
    assert_int_equal(st.sticky_sessions, 0);
    edge_route_free(r);
}

/* A session whose home in group f is `home`. */
static void
find_session(struct edge_route *r, const struct fixture *f, char home, char *name, size_t cap)
{
    for (int i = 0; i < 1000; i++) {
        snprintf(name, cap, "conversation-%d", i);
        if (session_first(r, &f->group, name, T0) == home)
            return;
    }
    fail_msg("no session with home %c", home);
}

static void
test_session_moves_and_stays(void **state)
{
    struct fixture f;
    struct edge_route *r = edge_route_new(), *ref = edge_route_new();
    struct edge_route_stats st;
    char name[40], l[EDGE_ROUTE_MAX_CANDIDATES + 1], moved_to, t2_pick;
    struct edge_route_query q;
    uint64_t t, t2;

    (void)state;
    fixture_init(&f, 1, 3, NULL, NULL);
    find_session(r, &f, 'a', name, sizeof(name));
    /* Where it must go without a: home among b and c (fresh router). */
    f.acc[0].enabled = 0;
    moved_to = session_first(ref, &f.group, name, T0);
    f.acc[0].enabled = 1;
    assert_true(moved_to == 'b' || moved_to == 'c');

    t = T0 + 1000;
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_429, 10000, t);
    assert_int_equal(session_first(r, &f.group, name, t + 1), moved_to);
    edge_route_get_stats(r, t + 1, &st);
    assert_int_equal(st.sticky_sessions, 1);

    /* a is back, the session stays; a is still its failover. */
    q = query(&f.group, t + 10000);
    q.session = name;
    q.session_len = strlen(name);
    letters(r, &q, l);
    assert_int_equal(strlen(l), 3);
    assert_int_equal(l[0], moved_to);
    assert_int_equal(l[1], 'a');

    /* The sticky account is out: home is usable, so home again. */
    t2 = t + 20000;
    edge_route_report(r, moved_to == 'b' ? &f.acc[1] : &f.acc[2], EDGE_ROUTE_529, 0, t2);
    assert_int_equal(session_first(r, &f.group, name, t2 + 1), 'a');
    edge_route_get_stats(r, t2 + 1, &st);
    assert_int_equal(st.sticky_sessions, 0);
    assert_int_equal(session_first(r, &f.group, name, t2 + 1001), 'a');

    /* TTL: one hour after the last use the entry is gone. */
    t2 = t + 30000;
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_529, 0, t2);
    t2_pick = session_first(r, &f.group, name, t2 + 1);
    assert_int_equal(t2_pick, moved_to);
    assert_int_equal(session_first(r, &f.group, name, t2 + 5000), moved_to); /* last use */
    assert_int_equal(session_first(r, &f.group, name, t2 + 5000 + 3599999), moved_to);
    assert_int_equal(session_first(r, &f.group, name, t2 + 5000 + 3599999 + 3600000), 'a');
    edge_route_free(r);
    edge_route_free(ref);
}

static void
test_session_priority_wins_over_sticky(void **state)
{
    static const int32_t prio[] = {0, 0, 5, 5};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    char name[40], low;

    (void)state;
    fixture_init(&f, 1, 4, prio, NULL);
    find_session(r, &f, 'a', name, sizeof(name));
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_429, 5000, T0);
    edge_route_report(r, &f.acc[1], EDGE_ROUTE_429, 5000, T0);
    low = session_first(r, &f.group, name, T0 + 1);
    assert_true(low == 'c' || low == 'd');
    assert_int_equal(session_first(r, &f.group, name, T0 + 2), low);
    /* The better tier is back: home there, not the lower-tier sticky. */
    assert_int_equal(session_first(r, &f.group, name, T0 + 5000), 'a');
    edge_route_free(r);
}

/* ---- health ------------------------------------------------------------------- */

static void
test_cooldown_429(void **state)
{
    struct fixture f;
    struct edge_route *r = edge_route_new();
    struct edge_route_account_state as;
    struct edge_route_stats st;
    uint64_t t = T0 + 500;

    (void)state;
    fixture_init(&f, 1, 1, NULL, NULL);
    assert_int_equal(edge_route_account_state(r, 100, &as), 0);

    edge_route_report(r, &f.acc[0], EDGE_ROUTE_429, 5000, t);
    assert_int_equal(edge_route_account_state(r, 100, &as), 1);
    assert_true(as.cooldown_until_ms == t + 5000);
    assert_int_equal(pick_at(r, &f, t + 4999), '-');
    assert_int_equal(pick_at(r, &f, t + 5000), 'a');
    edge_route_get_stats(r, t + 4999, &st);
    assert_int_equal(st.cooling, 1);
    assert_int_equal(st.cooldowns_started, 1);
    edge_route_get_stats(r, t + 5000, &st);
    assert_int_equal(st.cooling, 0);

    /* No retry-after: 30 s. */
    t += 10000;
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_429, 0, t);
    assert_int_equal(pick_at(r, &f, t + 29999), '-');
    assert_int_equal(pick_at(r, &f, t + 30000), 'a');
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_429, -7, t + 30000);
    edge_route_account_state(r, 100, &as);
    assert_true(as.cooldown_until_ms == t + 60000);

    /* Capped at one hour; a shorter report does not shorten it. */
    t += 100000;
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_429, INT64_C(10) * 3600 * 1000, t);
    edge_route_account_state(r, 100, &as);
    assert_true(as.cooldown_until_ms == t + 3600000);
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_529, 0, t + 1);
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_429, 1000, t + 1);
    edge_route_account_state(r, 100, &as);
    assert_true(as.cooldown_until_ms == t + 3600000);
    assert_int_equal(pick_at(r, &f, t + 3599999), '-');
    assert_int_equal(pick_at(r, &f, t + 3600000), 'a');
    edge_route_free(r);
}

static void
test_529_short(void **state)
{
    struct fixture f;
    struct edge_route *r = edge_route_new();
    struct edge_route_account_state as;

    (void)state;
    fixture_init(&f, 1, 1, NULL, NULL);
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_529, 60000, T0); /* retry-after ignored */
    assert_int_equal(pick_at(r, &f, T0 + 999), '-');
    assert_int_equal(pick_at(r, &f, T0 + 1000), 'a');
    /* Repeated 529s do not escalate. */
    for (uint64_t i = 1; i <= 5; i++)
        edge_route_report(r, &f.acc[0], EDGE_ROUTE_529, 0, T0 + i * 1000);
    edge_route_account_state(r, 100, &as);
    assert_true(as.cooldown_until_ms == T0 + 6000);
    assert_int_equal(as.consecutive_failures, 0);
    edge_route_free(r);
}

static void
test_backoff_growth_and_reset(void **state)
{
    static const uint64_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
    static const enum edge_route_outcome kinds[] = {EDGE_ROUTE_5XX, EDGE_ROUTE_CONNECT_FAIL,
                                                    EDGE_ROUTE_TIMEOUT};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    struct edge_route_account_state as;
    uint64_t t = T0;

    (void)state;
    fixture_init(&f, 1, 1, NULL, NULL);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        /* Each failure right when the previous cooldown ended. */
        edge_route_report(r, &f.acc[0], kinds[i % 3], 0, t);
        edge_route_account_state(r, 100, &as);
        assert_int_equal(as.consecutive_failures, i + 1);
        assert_true(as.cooldown_until_ms == t + want[i]);
        assert_int_equal(pick_at(r, &f, t + want[i] - 1), '-');
        assert_int_equal(pick_at(r, &f, t + want[i]), 'a');
        t += want[i];
    }
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_OK, 0, t);
    edge_route_account_state(r, 100, &as);
    assert_int_equal(as.consecutive_failures, 0);
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_5XX, 0, t);
    edge_route_account_state(r, 100, &as);
    assert_true(as.cooldown_until_ms == t + 1000);
    /* 429 and 529 neither count nor reset. */
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_429, 1, t);
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_529, 0, t);
    edge_route_account_state(r, 100, &as);
    assert_int_equal(as.consecutive_failures, 1);
    edge_route_free(r);
}

static void
test_hub_cooldown(void **state)
{
    struct fixture f;
    struct edge_route *r = edge_route_new();

    (void)state;
    fixture_init(&f, 1, 2, (const int32_t[]){0, 1}, NULL);
    f.acc[0].cooldown_until_ms = (int64_t)(T0 + 5000);
    assert_int_equal(pick_at(r, &f, T0), 'b');
    assert_int_equal(pick_at(r, &f, T0 + 4999), 'b');
    assert_int_equal(pick_at(r, &f, T0 + 5000), 'a');
    /* Local and hub cooldowns: whichever ends later. */
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_429, 2000, T0);
    assert_int_equal(pick_at(r, &f, T0 + 4999), 'b');
    assert_int_equal(pick_at(r, &f, T0 + 5000), 'a');
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_429, 9000, T0);
    assert_int_equal(pick_at(r, &f, T0 + 8999), 'b');
    assert_int_equal(pick_at(r, &f, T0 + 9000), 'a');
    edge_route_free(r);
}

static void
test_concurrency_slots(void **state)
{
    struct fixture f;
    struct edge_route *r = edge_route_new();
    struct edge_route_account_state as;
    struct edge_route_stats st;

    (void)state;
    fixture_init(&f, 1, 2, (const int32_t[]){0, 1}, NULL);
    f.acc[0].max_concurrency = 2;
    assert_int_equal(edge_route_acquire(r, &f.acc[0]), 0);
    assert_int_equal(pick_at(r, &f, T0), 'a');
    assert_int_equal(edge_route_acquire(r, &f.acc[0]), 0);
    assert_int_equal(edge_route_acquire(r, &f.acc[0]), -1); /* full: nothing taken */
    edge_route_account_state(r, 100, &as);
    assert_int_equal(as.in_flight, 2);
    assert_int_equal(pick_at(r, &f, T0), 'b'); /* no headroom */
    /* No limit: always taken, still counted. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(edge_route_acquire(r, &f.acc[1]), 0);
    edge_route_get_stats(r, T0, &st);
    assert_int_equal(st.in_flight, 7);
    edge_route_release(r, &f.acc[0]);
    assert_int_equal(pick_at(r, &f, T0), 'a');
    assert_int_equal(edge_route_acquire(r, &f.acc[0]), 0);
    edge_route_release(r, &f.acc[0]);
    edge_route_release(r, &f.acc[0]);
    edge_route_release(r, &f.acc[0]); /* one too many: stays at 0 */
    for (int i = 0; i < 5; i++)
        edge_route_release(r, &f.acc[1]);
    edge_route_get_stats(r, T0, &st);
    assert_int_equal(st.in_flight, 0);
    /* A limit lowered below the running count: no new slot. */
    assert_int_equal(edge_route_acquire(r, &f.acc[1]), 0);
    assert_int_equal(edge_route_acquire(r, &f.acc[1]), 0);
    f.acc[1].max_concurrency = 1;
    assert_int_equal(edge_route_acquire(r, &f.acc[1]), -1);
    edge_route_free(r);
}

/* ---- snapshots: failing marks and pruning ------------------------------------ */

/* A snapshot with accounts 100..100+n-1 (credential "key-<id>" unless
 * cred_of_100 is given), all bound to group 1 unless skip_group. */
static struct edge_snapshot *
build_snapshot(size_t n, const char *cred_of_100, int enabled_100, int with_group)
{
    struct gw_wire_snapshot w;
    struct gw_wire_group groups[1];
    struct gw_wire_account accounts[MAXA];
    struct gw_wire_binding bindings[MAXA];
    char creds[MAXA][16];
    struct edge_snapshot *s = NULL;

    memset(&w, 0, sizeof(w));
    memset(groups, 0, sizeof(groups));
    memset(accounts, 0, sizeof(accounts));
    groups[0].id = 1;
    groups[0].name = (char *)"g";
    for (size_t i = 0; i < n; i++) {
        snprintf(creds[i], sizeof(creds[i]), "key-%zu", 100 + i);
        accounts[i].id = 100 + i;
        accounts[i].name = (char *)"";
        accounts[i].kind = (char *)"mock";
        accounts[i].base_url = (char *)"";
        accounts[i].credential = (uint8_t *)creds[i];
        accounts[i].credential_len = strlen(creds[i]);
        accounts[i].enabled = 1;
        accounts[i].weight = 1;
        bindings[i].group_id = 1;
        bindings[i].account_id = 100 + i;
    }
    if (cred_of_100 != NULL) {
        accounts[0].credential = (uint8_t *)cred_of_100;
        accounts[0].credential_len = strlen(cred_of_100);
    }
    accounts[0].enabled = enabled_100;
    w.version = 7;
    w.groups = groups;
    w.n_groups = with_group ? 1 : 0;
    w.accounts = accounts;
    w.n_accounts = n;
    w.bindings = bindings;
    w.n_bindings = with_group ? n : 0;
    GW_PASS(edge_snapshot_build(&w, &s));
    return s;
}

static void
test_auth_failing(void **state)
{
    struct fixture f;
    struct edge_route *r = edge_route_new();
    struct edge_route_account_state as;
    struct edge_route_stats st;
    struct edge_snapshot *s;

    (void)state;
    fixture_init(&f, 1, 2, (const int32_t[]){0, 1}, NULL);
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_AUTH_FAIL, 0, T0);
    assert_int_equal(pick_at(r, &f, T0), 'b');
    /* OK from a request that was already running does not clear it. */
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_OK, 0, T0 + 1);
    assert_int_equal(pick_at(r, &f, T0 + 599999), 'b');
    edge_route_get_stats(r, T0 + 1, &st);
    assert_int_equal(st.failing, 1);
    assert_int_equal(st.failing_marks, 1);
    assert_int_equal(st.cooling, 0);
    /* Ten minutes, then it gets another chance. */
    assert_int_equal(pick_at(r, &f, T0 + 600000), 'a');

    /* A snapshot with the same credential keeps the mark. */
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_AUTH_FAIL, 0, T0 + 600000);
    s = build_snapshot(2, NULL, 1, 1);
    edge_route_prune(r, s);
    edge_snapshot_unref(s);
    edge_route_account_state(r, 100, &as);
    assert_true(as.failing_until_ms == T0 + 1200000);
    assert_int_equal(pick_at(r, &f, T0 + 600001), 'b');
    /* A new credential clears it. */
    s = build_snapshot(2, "key-rotated", 1, 1);
    edge_route_prune(r, s);
    edge_snapshot_unref(s);
    edge_route_account_state(r, 100, &as);
    assert_true(as.failing_until_ms == 0);
    assert_int_equal(pick_at(r, &f, T0 + 600001), 'a');
    /* So does the hub disabling the account. */
    edge_route_report(r, &f.acc[0], EDGE_ROUTE_AUTH_FAIL, 0, T0 + 600002);
    s = build_snapshot(2, NULL, 0, 1);
    edge_route_prune(r, s);
    edge_snapshot_unref(s);
    edge_route_account_state(r, 100, &as);
    assert_true(as.failing_until_ms == 0);
    edge_route_free(r);
}

static void
test_prune(void **state)
{
    static const int32_t weight[] = {5, 1, 1};
    struct fixture f;
    struct edge_route *r = edge_route_new();
    struct edge_route_account_state as;
    struct edge_route_stats st;
    struct edge_snapshot *s;
    char seq[16];

    (void)state;
    fixture_init(&f, 1, 3, NULL, weight);
    sequence(r, &f.group, T0, 2, seq);
    assert_string_equal(seq, "aa");
    for (uint64_t g = 10; g < 60; g++) { /* many groups: the index grows */
        f.group.id = g;
        sequence(r, &f.group, T0, 1, seq);
    }
    f.group.id = 1;
    for (size_t i = 0; i < 3; i++)
        edge_route_report(r, &f.acc[i], EDGE_ROUTE_5XX, 0, T0);
    edge_route_get_stats(r, T0, &st);
    assert_int_equal(st.groups, 51);
    assert_int_equal(st.rr_pairs, 51 * 3);
    assert_int_equal(st.accounts, 3);

    /* Snapshot: group 1 with accounts 100 and 101; 102 gone. */
    s = build_snapshot(2, NULL, 1, 1);
    edge_route_prune(r, s);
    edge_route_get_stats(r, T0, &st);
    assert_int_equal(st.groups, 1);
    assert_int_equal(st.rr_pairs, 2);
    assert_int_equal(st.accounts, 2);
    assert_int_equal(edge_route_account_state(r, 100, &as), 1);
    assert_int_equal(as.consecutive_failures, 1); /* health survives a swap */
    assert_int_equal(edge_route_account_state(r, 102, &as), 0);

    /* 100 and 101 kept their running weights (a -4, b +2 after "aa"), 102
     * starts again from 0: "baaca". A reset would give "aabac". */
    sequence(r, &f.group, T0 + 1000, 5, seq);
    assert_string_equal(seq, "baaca");

    /* A snapshot without the group drops its state; accounts stay. */
    edge_snapshot_unref(s);
    s = build_snapshot(3, NULL, 1, 0);
    edge_route_prune(r, s);
    edge_route_get_stats(r, T0, &st);
    assert_int_equal(st.groups, 0);
    assert_int_equal(st.accounts, 2); /* 100, 101: 102's was dropped above */
    edge_snapshot_unref(s);
    edge_route_free(r);
}

/* ---- through a real snapshot ---------------------------------------------------- */

static size_t
ids_of(struct edge_route *r, const struct edge_snapshot *s, uint64_t group_id, enum edge_dialect d,
       const char *model, uint64_t now, uint64_t *ids)
{
    struct edge_route_query q;
    const struct edge_account *c[EDGE_ROUTE_MAX_CANDIDATES];
    size_t n;

    q = query(edge_snapshot_group(s, group_id), now);
    q.dialect = d;
    q.model = model;
    n = edge_route_candidates(r, &q, c, EDGE_ROUTE_MAX_CANDIDATES);
    for (size_t i = 0; i < n; i++)
        ids[i] = c[i]->id;
    return n;
}

static void
test_snapshot_modes(void **state)
{
    static char *claude_models[] = {(char *)"claude-*"};
    static uint64_t pool_ids[] = {21, 20, 99}; /* 99: not in the snapshot */
    struct gw_wire_account acc[4];
    struct gw_wire_group groups[3];
    struct gw_wire_pool pools[1];
    struct gw_wire_binding bind[3] = {{1, 10}, {1, 11}, {3, 10}};
    struct gw_wire_snapshot w;
    struct edge_snapshot *s = NULL;
    struct edge_route *r = edge_route_new();
    struct edge_route_stats st;
    uint64_t ids[EDGE_ROUTE_MAX_CANDIDATES];
    static const struct {
        uint64_t id;
        const char *kind;
        int32_t prio;
    } spec[4] = {
        {10, "anthropic", 0}, {11, "openai_compatible", 0}, {20, "mock", 0}, {21, "mock", 1}};

    (void)state;
    memset(acc, 0, sizeof(acc));
    for (size_t i = 0; i < 4; i++) {
        acc[i].id = spec[i].id;
        acc[i].kind = (char *)spec[i].kind;
        acc[i].credential = (uint8_t *)"k";
        acc[i].credential_len = 1;
        acc[i].priority = spec[i].prio;
        acc[i].weight = 1;
        acc[i].enabled = 1;
    }
    acc[0].models = claude_models;
    acc[0].n_models = 1;
    acc[3].cooldown_until_ms = (int64_t)(T0 + 5000); /* the hub's */
    acc[3].max_concurrency = 1;
    memset(groups, 0, sizeof(groups));
    groups[0] = (struct gw_wire_group){1, (char *)"hyb", (char *)"hybrid", 5};
    groups[1] = (struct gw_wire_group){2, (char *)"pool", (char *)"pool", 5};
    groups[2] = (struct gw_wire_group){3, (char *)"ded", NULL, 0};
    pools[0] = (struct gw_wire_pool){5, (char *)"p", pool_ids, 3};
    memset(&w, 0, sizeof(w));
    w.version = 1;
    w.accounts = acc;
    w.n_accounts = 4;
    w.groups = groups;
    w.n_groups = 3;
    w.pools = pools;
    w.n_pools = 1;
    w.bindings = bind;
    w.n_bindings = 3;
    GW_PASS(edge_snapshot_build(&w, &s));

    /* Hybrid: a dedicated account that fits wins; the pool is not listed. */
    assert_int_equal(ids_of(r, s, 1, EDGE_DIALECT_ANTHROPIC, "claude-sonnet-4-5", T0, ids), 1);
    assert_int_equal(ids[0], 10);
    assert_int_equal(ids_of(r, s, 1, EDGE_DIALECT_OPENAI, "gpt-4o", T0, ids), 1);
    assert_int_equal(ids[0], 11);
    /* No dedicated account speaks Gemini: the pool (21 cools at the hub). */
    assert_int_equal(ids_of(r, s, 1, EDGE_DIALECT_GEMINI, "gemini-2.5-pro", T0, ids), 1);
    assert_int_equal(ids[0], 20);
    assert_int_equal(ids_of(r, s, 1, EDGE_DIALECT_GEMINI, "gemini-2.5-pro", T0 + 5000, ids), 2);
    assert_int_equal(ids[0], 20);
    assert_int_equal(ids[1], 21);
    /* A model the dedicated account does not list: the pool. */
    assert_int_equal(ids_of(r, s, 1, EDGE_DIALECT_ANTHROPIC, "glm-4.5", T0 + 5000, ids), 2);
    assert_int_equal(ids[0], 20);
    /* Pool mode never uses bound accounts; dedicated never the pool. */
    assert_int_equal(ids_of(r, s, 2, EDGE_DIALECT_ANTHROPIC, "claude-x", T0 + 5000, ids), 2);
    assert_int_equal(ids[0], 20);
    assert_int_equal(ids_of(r, s, 3, EDGE_DIALECT_GEMINI, "gemini-2.5-pro", T0, ids), 0);
    /* max_concurrency from the snapshot. */
    assert_int_equal(edge_route_acquire(r, edge_snapshot_account(s, 21)), 0);
    assert_int_equal(edge_route_acquire(r, edge_snapshot_account(s, 21)), -1);
    assert_int_equal(ids_of(r, s, 2, EDGE_DIALECT_ANTHROPIC, NULL, T0 + 5000, ids), 1);
    edge_route_release(r, edge_snapshot_account(s, 21));
    assert_int_equal(ids_of(r, s, 2, EDGE_DIALECT_ANTHROPIC, NULL, T0 + 5000, ids), 2);

    /* Running weights: group 1 has 10, 11 (bound) and 20 (its pool), group
     * 2 has 20; group 3 never picked. Pool accounts survive a prune. */
    edge_route_get_stats(r, T0, &st);
    assert_int_equal(st.groups, 2);
    assert_int_equal(st.rr_pairs, 4);
    edge_route_prune(r, s);
    edge_route_get_stats(r, T0, &st);
    assert_int_equal(st.groups, 2);
    assert_int_equal(st.rr_pairs, 4);
    edge_snapshot_unref(s);
    edge_route_free(r);
}

/* ---- threads -------------------------------------------------------------------- */

#define THREADS 4
#define ITERS 20000

struct hammer {
    struct edge_route *r;
    struct fixture *f;
    const struct edge_account *ghost; /* not in any group; pruned repeatedly */
    int id;
    atomic_int *over_limit;
    atomic_uint_fast64_t *clock; /* shared simulated time, 250 ms a step */
    atomic_int *done;
    size_t picked;
};

static void *
hammer_main(void *arg)
{
    struct hammer *h = arg;
    char name[32];

    for (int i = 0; i < ITERS; i++) {
        struct edge_route_query q = query(&h->f->group, atomic_fetch_add(h->clock, 250));
        const struct edge_account *c[EDGE_ROUTE_MAX_CANDIDATES];
        struct edge_route_account_state as;
        size_t n;

        if (i % 3 == 0) {
            snprintf(name, sizeof(name), "t%d-%d", h->id, i % 97);
            q.session = name;
            q.session_len = strlen(name);
        }
        n = edge_route_candidates(h->r, &q, c, EDGE_ROUTE_MAX_CANDIDATES);
        for (size_t k = 0; k < n; k++) {
            if (edge_route_acquire(h->r, c[k]) != 0)
                continue;
            edge_route_account_state(h->r, c[k]->id, &as);
            if (c[k]->max_concurrency && as.in_flight > c[k]->max_concurrency)
                atomic_fetch_add(h->over_limit, 1);
            edge_route_report(h->r, c[k],
                              (i % 10 == 7)   ? EDGE_ROUTE_5XX
                              : (i % 10 == 8) ? EDGE_ROUTE_529
                                              : EDGE_ROUTE_OK,
                              0, q.now_ms);
            edge_route_release(h->r, c[k]);
            h->picked++;
            break;
        }
        edge_route_report(h->r, h->ghost, EDGE_ROUTE_429, 5, q.now_ms);
    }
    atomic_fetch_add(h->done, 1);
    return NULL;
}

static void
test_threads(void **state)
{
    struct fixture f;
    struct edge_account ghost;
    struct edge_route *r = edge_route_new();
    struct edge_snapshot *with_group, *without_group;
    struct edge_route_stats st;
    struct hammer h[THREADS];
    pthread_t tid[THREADS];
    atomic_int over = 0, done = 0;
    atomic_uint_fast64_t clock = T0;
    size_t picked = 0, prunes = 0;

    (void)state;
    fixture_init(&f, 1, 4, (const int32_t[]){0, 0, 0, 1}, (const int32_t[]){3, 1, 1, 1});
    for (size_t i = 0; i < 4; i++)
        f.acc[i].max_concurrency = 2;
    ghost = f.acc[0];
    ghost.id = 150;
    with_group = build_snapshot(4, NULL, 1, 1);
    without_group = build_snapshot(4, NULL, 1, 0);
    for (int i = 0; i < THREADS; i++) {
        h[i] = (struct hammer){r, &f, &ghost, i, &over, &clock, &done, 0};
        assert_int_equal(pthread_create(&tid[i], NULL, hammer_main, &h[i]), 0);
    }
    /* Meanwhile: snapshot swaps that drop the group's and the ghost's
     * state, freed while the others run. */
    while (atomic_load(&done) < THREADS) {
        edge_route_prune(r, prunes % 2 ? with_group : without_group);
        prunes++;
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        picked += h[i].picked;
    }
    assert_int_equal(atomic_load(&over), 0);
    fprintf(stderr, "threads: %zu of %d requests got an account, %zu prunes\n", picked,
            THREADS * ITERS, prunes);
    assert_true(picked > THREADS * ITERS / 2);
    edge_route_get_stats(r, T0, &st);
    assert_int_equal(st.in_flight, 0);
    for (uint64_t id = 100; id < 104; id++) {
        struct edge_route_account_state as;

        edge_route_account_state(r, id, &as);
        assert_int_equal(as.in_flight, 0);
    }
    edge_snapshot_unref(with_group);
    edge_snapshot_unref(without_group);
    edge_route_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swrr_nginx_sequence),
        cmocka_unit_test(test_swrr_distribution),
        cmocka_unit_test(test_priority_tiers),
        cmocka_unit_test(test_swrr_skips_busy),
        cmocka_unit_test(test_state_per_group),
        cmocka_unit_test(test_group_modes),
        cmocka_unit_test(test_model_filter),
        cmocka_unit_test(test_dialect_filter),
        cmocka_unit_test(test_session_hash_vectors),
        cmocka_unit_test(test_rendezvous_deterministic),
        cmocka_unit_test(test_rendezvous_minimal_disruption),
        cmocka_unit_test(test_session_moves_and_stays),
        cmocka_unit_test(test_session_priority_wins_over_sticky),
        cmocka_unit_test(test_cooldown_429),
        cmocka_unit_test(test_529_short),
        cmocka_unit_test(test_backoff_growth_and_reset),
        cmocka_unit_test(test_hub_cooldown),
        cmocka_unit_test(test_concurrency_slots),
        cmocka_unit_test(test_auth_failing),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_snapshot_modes),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
