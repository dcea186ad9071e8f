/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for hub_pricing_cost: exact micro-USD results, longest-prefix
 * choice, half-up rounding, unpriced models and overflow guards. */
#include <stdio.h>
#include <string.h>

#include "gw_test.h"
#include "pricing.h"

static struct hub_price
price(const char *prefix, int64_t in, int64_t out, int64_t cr, int64_t cw5, int64_t cw1)
{
    struct hub_price p;
    memset(&p, 0, sizeof(p));
    snprintf(p.model_prefix, sizeof(p.model_prefix), "%s", prefix);
    p.input = in;
    p.output = out;
    p.cache_read = cr;
    p.cache_write_5m = cw5;
    p.cache_write_1h = cw1;
    return p;
}

static struct gw_usage_record
record(const char *model)
{
    struct gw_usage_record r;
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "r1");
    snprintf(r.model, sizeof(r.model), "%s", model);
    return r;
}

/* Sonnet-like prices: $3 in, $15 out, $0.30 cache read, $3.75 / $6 writes. */
static void
test_exact_all_fields(void **state)
{
    (void)state;
    struct hub_price p[] = {price("claude-sonnet-4", 3000000, 15000000, 300000, 3750000, 6000000)};
    struct gw_usage_record r = record("claude-sonnet-4-5-20250929");
    int64_t cost = 0;

    r.input_tokens = 1000;          /* 3,000,000,000 */
    r.output_tokens = 500;          /* 7,500,000,000 */
    r.cache_read_tokens = 20000;    /* 6,000,000,000 */
    r.cache_write_5m_tokens = 4000; /* 15,000,000,000 */
    r.cache_write_1h_tokens = 1000; /* 6,000,000,000 */
    r.reasoning_tokens = 200;       /* inside output_tokens already: not added */
    GW_PASS(hub_pricing_cost(p, 1, &r, &cost));
    assert_int_equal(cost, 37500);

    /* Each field contributes with its own price. */
    struct gw_usage_record one = record("claude-sonnet-4");
    one.cache_write_1h_tokens = 1000000;
    GW_PASS(hub_pricing_cost(p, 1, &one, &cost));
    assert_int_equal(cost, 6000000);
    one.cache_write_1h_tokens = 0;
    one.cache_read_tokens = 3;
    GW_PASS(hub_pricing_cost(p, 1, &one, &cost)); /* 0.9 micro-USD -> 1 */
    assert_int_equal(cost, 1);

    /* No tokens at all is a real zero, not "unpriced". */
    struct gw_usage_record zero = record("claude-sonnet-4-5");
    GW_PASS(hub_pricing_cost(p, 1, &zero, &cost));
    assert_int_equal(cost, 0);
}

static void
test_rounding_half_up(void **state)
{
    (void)state;
    struct hub_price p[] = {price("m", 1, 3, 0, 0, 0)};
    struct gw_usage_record r = record("m");
    int64_t cost;

    r.input_tokens = 499999; /* 0.499999 */
    GW_PASS(hub_pricing_cost(p, 1, &r, &cost));
    assert_int_equal(cost, 0);
    r.input_tokens = 500000; /* 0.5 -> 1 */
    GW_PASS(hub_pricing_cost(p, 1, &r, &cost));
    assert_int_equal(cost, 1);
    r.input_tokens = 1500000; /* 1.5 -> 2 */
    GW_PASS(hub_pricing_cost(p, 1, &r, &cost));
    assert_int_equal(cost, 2);
    r.input_tokens = 2499999; /* 2.499999 -> 2 */
    GW_PASS(hub_pricing_cost(p, 1, &r, &cost));
    assert_int_equal(cost, 2);
    /* Rounding applies to the sum, not to each term: 0.4 + 0.3 = 0.7 -> 1. */
    r.input_tokens = 400000;
    r.output_tokens = 100000;
    GW_PASS(hub_pricing_cost(p, 1, &r, &cost));
    assert_int_equal(cost, 1);
}

static void
test_longest_prefix(void **state)
{
    (void)state;
    struct hub_price p[] = {
        price("claude-", 1000000, 0, 0, 0, 0),
        price("claude-opus-4-1", 15000000, 0, 0, 0, 0),
        price("claude-opus-4", 14000000, 0, 0, 0, 0),
        price("", 999000000, 0, 0, 0, 0),        /* empty prefix: never a match */
        price("claude-opus-4-1", 1, 0, 0, 0, 0), /* later duplicate loses */
    };
    struct gw_usage_record r;
    int64_t cost;

    r = record("claude-opus-4-1-20250805");
    r.input_tokens = 1000;
    GW_PASS(hub_pricing_cost(p, 5, &r, &cost));
    assert_int_equal(cost, 15000);
    assert_ptr_equal(hub_pricing_match(p, 5, r.model), &p[1]);

    r = record("claude-opus-4-20250514");
    r.input_tokens = 1000;
    GW_PASS(hub_pricing_cost(p, 5, &r, &cost));
    assert_int_equal(cost, 14000);

    r = record("claude-3-5-haiku");
    r.input_tokens = 1000;
    GW_PASS(hub_pricing_cost(p, 5, &r, &cost));
    assert_int_equal(cost, 1000);

    /* A prefix longer than the model does not match it. */
    r = record("claude-opus");
    r.input_tokens = 1000;
    GW_PASS(hub_pricing_cost(p, 5, &r, &cost));
    assert_int_equal(cost, 1000);
}

static void
test_unpriced(void **state)
{
    (void)state;
    struct hub_price p[] = {price("claude-", 1, 1, 1, 1, 1), price("", 5, 5, 5, 5, 5)};
    struct gw_usage_record r = record("gpt-4o-mini");
    int64_t cost = 123;

    r.input_tokens = 10;
    GW_FAIL(hub_pricing_cost(p, 2, &r, &cost), GW_ENOTFOUND);
    assert_int_equal(cost, -1);
    /* Case matters. */
    r = record("Claude-sonnet");
    cost = 5;
    GW_FAIL(hub_pricing_cost(p, 2, &r, &cost), GW_ENOTFOUND);
    assert_int_equal(cost, -1);
    /* No model at all. */
    r = record("");
    GW_FAIL(hub_pricing_cost(p, 2, &r, &cost), GW_ENOTFOUND);
    /* Empty price list. */
    r = record("claude-x");
    cost = 0;
    GW_FAIL(hub_pricing_cost(NULL, 0, &r, &cost), GW_ENOTFOUND);
    assert_int_equal(cost, -1);
}

static void
test_overflow_and_invalid(void **state)
{
    (void)state;
    struct hub_price p[] = {price("m", 1000000, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX)};
    struct gw_usage_record r = record("m");
    int64_t cost;

    /* Largest representable result: INT64_MAX tokens at $1/Mtok. */
    r.input_tokens = (uint64_t)INT64_MAX;
    GW_PASS(hub_pricing_cost(p, 1, &r, &cost));
    assert_true(cost == INT64_MAX);
    /* One token more does not fit. */
    r.input_tokens = (uint64_t)INT64_MAX + 1;
    GW_FAIL(hub_pricing_cost(p, 1, &r, &cost), GW_EINVAL);
    assert_int_equal(cost, -1);

    /* Every product near 2^127: the 128-bit sum itself overflows. */
    r.input_tokens = 0;
    r.output_tokens = UINT64_MAX;
    r.cache_read_tokens = UINT64_MAX;
    r.cache_write_5m_tokens = UINT64_MAX;
    r.cache_write_1h_tokens = UINT64_MAX;
    GW_FAIL(hub_pricing_cost(p, 1, &r, &cost), GW_EINVAL);
    assert_int_equal(cost, -1);

    /* Big but sane: 10^12 tokens at $1000/Mtok = 10^15 micro-USD, exact. */
    struct hub_price big[] = {price("m", 1000000000, 0, 0, 0, 0)};
    r = record("m");
    r.input_tokens = 1000000000000ull;
    GW_PASS(hub_pricing_cost(big, 1, &r, &cost));
    assert_true(cost == 1000000000000000ll);

    /* Negative prices are rejected, even when their token count is 0. */
    struct hub_price neg[] = {price("m", 1, 1, 1, -1, 1)};
    r = record("m");
    r.input_tokens = 5000000;
    GW_FAIL(hub_pricing_cost(neg, 1, &r, &cost), GW_EINVAL);
    assert_int_equal(cost, -1);

    GW_FAIL(hub_pricing_cost(p, 1, NULL, &cost), GW_EINVAL);
    GW_FAIL(hub_pricing_cost(p, 1, &r, NULL), GW_EINVAL);
    GW_FAIL(hub_pricing_cost(NULL, 3, &r, &cost), GW_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_all_fields),     cmocka_unit_test(test_rounding_half_up),
        cmocka_unit_test(test_longest_prefix),       cmocka_unit_test(test_unpriced),
        cmocka_unit_test(test_overflow_and_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
