/* SPDX-License-Identifier: Apache-2.0 */
/* Per-key limits: concurrency, requests and tokens per minute with the
 * sliding two-window estimate, the order of the checks, exact retry-after
 * values, window rollover driven by now_ms, settle corrections, oversize
 * requests, unlimited keys, pruning by snapshot, and threads. */
#include "gw_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_crypto.h"
#include "quota.h"
#include "snapshot.h"

#define W UINT64_C(60000)
/* A window start: 1700000040000 is a multiple of 60000. */
#define T0 UINT64_C(1700000040000)

static struct edge_key
key_of(uint64_t id, uint32_t rpm, uint32_t tpm, uint32_t conc)
{
    struct edge_key k;
    char raw[32];

    memset(&k, 0, sizeof(k));
    k.id = id;
    snprintf(raw, sizeof(raw), "aicp_key_%llu", (unsigned long long)id);
    gw_sha256(raw, strlen(raw), k.key_hash);
    k.enabled = 1;
    k.rpm_limit = rpm;
    k.tpm_limit = tpm;
    k.concurrency_limit = conc;
    return k;
}

static void
admit_ok(struct edge_quota *q, const struct edge_key *k, uint64_t est, uint64_t now)
{
    struct edge_quota_verdict v = edge_quota_admit(q, k, est, now);

    GW_PASS(v.err);
    assert_null(v.limit);
    assert_int_equal(v.retry_after_ms, 0);
}

static void
admit_refused(struct edge_quota *q, const struct edge_key *k, uint64_t est, uint64_t now,
              const char *limit, int64_t retry_ms)
{
    struct edge_quota_verdict v = edge_quota_admit(q, k, est, now);

    GW_FAIL(v.err, GW_EQUOTA);
    assert_non_null(v.limit);
    assert_string_equal(v.limit, limit);
    assert_int_equal(v.retry_after_ms, retry_ms);
}

static void
test_unlimited(void **state)
{
    struct edge_quota *q = edge_quota_new();
    struct edge_key k = key_of(1, 0, 0, 0);

    (void)state;
    assert_true(T0 % W == 0);
    for (int i = 0; i < 1000; i++)
        admit_ok(q, &k, 1000000, T0);
    for (int i = 0; i < 1000; i++)
        edge_quota_settle(q, &k, 1000000, 2000000, T0);
    assert_int_equal(edge_quota_key_count(q), 0); /* no state at all */
    edge_quota_free(q);
}

static void
test_concurrency(void **state)
{
    struct edge_quota *q = edge_quota_new();
    struct edge_key k = key_of(1, 3, 0, 2);

    (void)state;
    admit_ok(q, &k, 10, T0);
    admit_ok(q, &k, 10, T0);
    assert_int_equal(edge_quota_in_flight(q, 1), 2);
    admit_refused(q, &k, 10, T0, "concurrent requests", 1000);
    admit_refused(q, &k, 10, T0, "concurrent requests", 1000);
    edge_quota_settle(q, &k, 10, 10, T0 + 5);
    assert_int_equal(edge_quota_in_flight(q, 1), 1);
    /* The refusals counted nothing: the third request of the minute fits. */
    admit_ok(q, &k, 10, T0 + 5);
    edge_quota_settle(q, &k, 10, 10, T0 + 6);
    edge_quota_settle(q, &k, 10, 10, T0 + 6);
    assert_int_equal(edge_quota_in_flight(q, 1), 0);
    /* Nothing in flight; three requests this minute: now RPM refuses. */
    admit_refused(q, &k, 10, T0 + 7, "requests per minute", 80000 - 7);
    admit_ok(q, &k, 10, T0 + W + 20000);
    admit_ok(q, &k, 10, T0 + W + 40000);
    admit_refused(q, &k, 10, T0 + W + 40000, "concurrent requests", 1000);
    edge_quota_settle(q, &k, 10, 10, T0 + W + 40001);
    edge_quota_settle(q, &k, 10, 10, T0 + W + 40001);
    edge_quota_settle(q, &k, 10, 10, T0 + W + 40001); /* extra: stays at 0 */
    assert_int_equal(edge_quota_in_flight(q, 1), 0);
    edge_quota_free(q);
}

static void
test_rpm_sliding(void **state)
{
    struct edge_quota *q = edge_quota_new();
    struct edge_key k = key_of(7, 3, 0, 0);

    (void)state;
    for (int i = 0; i < 3; i++) {
        admit_ok(q, &k, 0, T0 + (uint64_t)i);
        edge_quota_settle(q, &k, 0, 0, T0 + (uint64_t)i);
    }
    /* 3 in this window: the next fits when 3 * (W - e2) / W <= 2, i.e. 20 s
     * into the next window = 80 s from T0. */
    admit_refused(q, &k, 0, T0 + 10, "requests per minute", 80000 - 10);
    admit_refused(q, &k, 0, T0 + W, "requests per minute", 20000);
    admit_refused(q, &k, 0, T0 + 79999, "requests per minute", 1);
    admit_ok(q, &k, 0, T0 + 80000);
    /* Now prev = 3, cur = 1 at e = 20000: estimate 3 * 40000 / W + 1 = 3.
     * The next fits when 3 * (W - e) / W + 1 <= 2: e >= 40000. */
    admit_refused(q, &k, 0, T0 + 80000, "requests per minute", 20000);
    admit_ok(q, &k, 0, T0 + 100000);
    /* Two windows later everything is forgotten. */
    for (int i = 0; i < 3; i++)
        admit_ok(q, &k, 0, T0 + 3 * W);
    admit_refused(q, &k, 0, T0 + 3 * W, "requests per minute", 80000);
    /* A clock slightly behind the current window counts as its start. */
    admit_refused(q, &k, 0, T0 + 3 * W - 5, "requests per minute", 80000);
    edge_quota_free(q);
}

static void
test_tpm_windows(void **state)
{
    struct edge_quota *q = edge_quota_new();
    struct edge_key k = key_of(9, 0, 1000, 0);

    (void)state;
    admit_ok(q, &k, 600, T0);
    edge_quota_settle(q, &k, 600, 600, T0);
    /* 600 + 500 > 1000. Next window: 600 * (W - e2) / W + 500 <= 1000 from
     * e2 = 10000: 60000 - 10 + 10000. */
    admit_refused(q, &k, 500, T0 + 10, "tokens per minute", 69990);
    admit_ok(q, &k, 400, T0 + 10); /* 600 + 400 fits exactly */
    edge_quota_settle(q, &k, 400, 400, T0 + 10);

    /* Decay of the previous window: prev = 900 after the next rollover. */
    k = key_of(10, 0, 1000, 0);
    admit_ok(q, &k, 900, T0);
    edge_quota_settle(q, &k, 900, 900, T0);
    admit_refused(q, &k, 200, T0 + W, "tokens per minute", 6667);
    admit_refused(q, &k, 200, T0 + W + 6666, "tokens per minute", 1);
    admit_ok(q, &k, 200, T0 + W + 6667);
    edge_quota_free(q);
}

static void
test_tpm_settle_and_reservation(void **state)
{
    struct edge_quota *q = edge_quota_new();
    struct edge_key k = key_of(3, 0, 1000, 0);

    (void)state;
    admit_ok(q, &k, 400, T0);
    admit_ok(q, &k, 400, T0);
    /* 800 reserved by running requests: only a settle can make room. */
    admit_refused(q, &k, 400, T0 + 1, "tokens per minute", 1000);
    /* The first used far less than estimated. */
    edge_quota_settle(q, &k, 400, 100, T0 + 2);
    admit_ok(q, &k, 400, T0 + 3); /* 100 used + 800 reserved */
    /* 100 + 800 + 200: even with the reservations held, the windows make
     * room once the 100 has aged out, two windows on. */
    admit_refused(q, &k, 200, T0 + 3, "tokens per minute", 2 * W - 3);
    admit_ok(q, &k, 100, T0 + 3); /* exactly 1000 */
    /* One used more than estimated: 100 + 900 counted, 500 reserved. */
    edge_quota_settle(q, &k, 400, 900, T0 + 4);
    edge_quota_settle(q, &k, 400, 0, T0 + 4);
    edge_quota_settle(q, &k, 100, 0, T0 + 4);
    /* Only the window now: cur = 1000. Next window: 1000 * (W - e2) / W +
     * 1 <= 1000 from e2 = 60: W - 5 + 60. */
    admit_refused(q, &k, 1, T0 + 5, "tokens per minute", W - 5 + 60);
    admit_ok(q, &k, 1, T0 + W + 60);
    /* A long request settled in a later window counts there. */
    edge_quota_settle(q, &k, 1, 1000, T0 + 3 * W);
    admit_refused(q, &k, 1, T0 + 3 * W, "tokens per minute", W + 60);
    edge_quota_free(q);
}

static void
test_oversize_request(void **state)
{
    struct edge_quota *q = edge_quota_new();
    struct edge_key k = key_of(4, 0, 1000, 0);

    (void)state;
    /* Larger than the limit: runs when nothing else is counted. */
    admit_ok(q, &k, 5000, T0 + 100);
    /* Another one while it runs: only its settle can make room. */
    admit_refused(q, &k, 5000, T0 + 100, "tokens per minute", 1000);
    admit_refused(q, &k, 10, T0 + 100, "tokens per minute", 1000);
    edge_quota_settle(q, &k, 5000, 5000, T0 + 100);
    /* Counted in this window: the window after next is empty. */
    admit_refused(q, &k, 5000, T0 + 200, "tokens per minute", 2 * W - 200);
    admit_refused(q, &k, 5000, T0 + W, "tokens per minute", W);
    admit_ok(q, &k, 5000, T0 + 2 * W);
    edge_quota_free(q);
}

static void
test_check_order(void **state)
{
    struct edge_quota *q = edge_quota_new();
    struct edge_key k = key_of(5, 1, 100, 1);

    (void)state;
    admit_ok(q, &k, 100, T0);
    /* All three would refuse: concurrency is named first. */
    admit_refused(q, &k, 100, T0, "concurrent requests", 1000);
    edge_quota_settle(q, &k, 100, 100, T0);
    /* RPM and TPM would: RPM first. */
    admit_refused(q, &k, 100, T0, "requests per minute", 2 * W);
    k.rpm_limit = 0;
    admit_refused(q, &k, 100, T0, "tokens per minute", 2 * W);
    edge_quota_free(q);
}

static void
test_prune(void **state)
{
    struct edge_quota *q = edge_quota_new();
    struct edge_key keys[40];
    struct gw_wire_key wk[2];
    struct gw_wire_snapshot w;
    struct edge_snapshot *s = NULL;

    (void)state;
    for (size_t i = 0; i < 40; i++) {
        keys[i] = key_of(100 + i, 10, 0, 0);
        admit_ok(q, &keys[i], 1, T0);
    }
    assert_int_equal(edge_quota_key_count(q), 40);
    /* The snapshot keeps key 100 and has key 101's hash under another id. */
    memset(wk, 0, sizeof(wk));
    memset(&w, 0, sizeof(w));
    wk[0].id = 100;
    memcpy(wk[0].key_hash, keys[0].key_hash, GW_SHA256_LEN);
    wk[0].enabled = 1;
    wk[1].id = 9999;
    memcpy(wk[1].key_hash, keys[1].key_hash, GW_SHA256_LEN);
    wk[1].enabled = 1;
    w.version = 3;
    w.keys = wk;
    w.n_keys = 2;
    GW_PASS(edge_snapshot_build(&w, &s));
    edge_quota_prune(q, s);
    assert_int_equal(edge_quota_key_count(q), 1);
    assert_int_equal(edge_quota_in_flight(q, 100), 1);
    assert_int_equal(edge_quota_in_flight(q, 101), 0);
    /* Settling a pruned key's request is a no-op and creates nothing. */
    edge_quota_settle(q, &keys[5], 1, 1, T0);
    assert_int_equal(edge_quota_key_count(q), 1);
    /* The kept key kept its counts: 1 request, 9 more fit. */
    for (int i = 0; i < 9; i++)
        admit_ok(q, &keys[0], 1, T0 + 1);
    /* Next window: 10 * (W - e2) / W + 1 <= 10 from e2 = 6000. */
    admit_refused(q, &keys[0], 1, T0 + 1, "requests per minute", W - 1 + 6000);
    edge_quota_prune(q, s);
    assert_int_equal(edge_quota_key_count(q), 1);
    edge_snapshot_unref(s);
    edge_quota_free(q);
}

#define THREADS 4
#define ITERS 20000

struct hammer {
    struct edge_quota *q;
    const struct edge_key *k;
    atomic_int *over;
    size_t admitted;
};

static void *
hammer_main(void *arg)
{
    struct hammer *h = arg;

    for (int i = 0; i < ITERS; i++) {
        uint64_t now = T0 + (uint64_t)i;
        struct edge_quota_verdict v = edge_quota_admit(h->q, h->k, 3, now);

        if (v.err != GW_OK)
            continue;
        if (edge_quota_in_flight(h->q, h->k->id) > h->k->concurrency_limit)
            atomic_fetch_add(h->over, 1);
        h->admitted++;
        edge_quota_settle(h->q, h->k, 3, 2, now);
    }
    return NULL;
}

static void
test_threads(void **state)
{
    struct edge_quota *q = edge_quota_new();
    struct edge_key k = key_of(77, 1000000, 0, 3);
    struct edge_key others[THREADS];
    struct hammer h[THREADS];
    pthread_t tid[THREADS];
    atomic_int over = 0;
    size_t admitted = 0;

    (void)state;
    for (int i = 0; i < THREADS; i++) {
        others[i] = key_of(200 + (uint64_t)i, 0, 0, 3);
        h[i] = (struct hammer){q, i % 2 ? &k : &others[i], &over, 0};
        assert_int_equal(pthread_create(&tid[i], NULL, hammer_main, &h[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        admitted += h[i].admitted;
    }
    assert_int_equal(atomic_load(&over), 0);
    assert_true(admitted > 0);
    assert_int_equal(edge_quota_in_flight(q, 77), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(edge_quota_in_flight(q, 200 + (uint64_t)i), 0);
    edge_quota_free(q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_rpm_sliding),
        cmocka_unit_test(test_tpm_windows),
        cmocka_unit_test(test_tpm_settle_and_reservation),
        cmocka_unit_test(test_oversize_request),
        cmocka_unit_test(test_check_order),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
