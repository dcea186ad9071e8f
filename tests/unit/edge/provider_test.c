/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the shared adapter pieces: retry-after parsing (seconds,
 * HTTP-date, Anthropic RFC 3339 resets, OpenAI reset durations), URL
 * joining, dialect guessing for error bodies, session ids, the operation
 * table and the adapter registry. */
#include "gw_test.h"

#include <stdio.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_json.h"
#include "provider.h"

#define H(n, v)                                                                                    \
    {                                                                                              \
        {n, sizeof(n) - 1},                                                                        \
        {                                                                                          \
            v, sizeof(v) - 1                                                                       \
        }                                                                                          \
    }

/* 2025-06-01T12:00:00Z */
#define NOW_MS INT64_C(1748779200000)

static void
test_retry_after(void **state)
{
    struct gw_http_header secs[] = {H("content-type", "x"), H("Retry-After", " 7 ")};
    struct gw_http_header date[] = {H("retry-after", "Sun, 01 Jun 2025 12:00:30 GMT")};
    struct gw_http_header past[] = {H("retry-after", "Sun, 01 Jun 2025 11:00:00 GMT")};
    struct gw_http_header anth[] = {
        H("anthropic-ratelimit-requests-reset", "2025-06-01T12:00:05Z"),
        H("anthropic-ratelimit-tokens-reset", "2025-06-01T12:00:12.500Z"),
        H("anthropic-ratelimit-input-tokens-reset", "2025-06-01T11:59:00Z"),
        H("anthropic-ratelimit-requests-remaining", "0"),
    };
    struct gw_http_header anth_off[] = {
        H("anthropic-ratelimit-tokens-reset", "2025-06-01T14:00:20+02:00"),
    };
    struct gw_http_header both[] = {
        H("anthropic-ratelimit-tokens-reset", "2025-06-01T12:10:00Z"),
        H("retry-after", "3"),
    };
    struct gw_http_header oai[] = {
        H("x-ratelimit-reset-requests", "1s"),
        H("x-ratelimit-reset-tokens", "6m0s"),
    };
    struct gw_http_header oai_ms[] = {H("x-ratelimit-reset-tokens", "250ms")};
    struct gw_http_header junk[] = {
        H("retry-after", "soon"),
        H("anthropic-ratelimit-tokens-reset", "tomorrow"),
        H("x-ratelimit-reset-tokens", "5q"),
    };

    (void)state;
    assert_int_equal(edge_provider_retry_after_ms(secs, 2, NOW_MS), 7000);
    assert_int_equal(edge_provider_retry_after_ms(date, 1, NOW_MS), 30000);
    assert_int_equal(edge_provider_retry_after_ms(past, 1, NOW_MS), 0);
    /* the latest future reset wins */
    assert_int_equal(edge_provider_retry_after_ms(anth, 4, NOW_MS), 12500);
    assert_int_equal(edge_provider_retry_after_ms(anth_off, 1, NOW_MS), 20000);
    /* retry-after takes precedence over the reset headers */
    assert_int_equal(edge_provider_retry_after_ms(both, 2, NOW_MS), 3000);
    assert_int_equal(edge_provider_retry_after_ms(oai, 2, NOW_MS), 360000);
    assert_int_equal(edge_provider_retry_after_ms(oai_ms, 1, NOW_MS), 250);
    assert_int_equal(edge_provider_retry_after_ms(junk, 3, NOW_MS), -1);
    assert_int_equal(edge_provider_retry_after_ms(NULL, 0, NOW_MS), -1);
}

static void
join(const char *base, const char *api, const char *q, const char *want)
{
    struct gw_buf url = GW_BUF_INIT;
    struct gw_str a = {api, strlen(api)}, qs = {q, strlen(q)};

    GW_PASS(edge_provider_join_url(base, a, qs, &url));
    gw_buf_append(&url, "", 1);
    if (strcmp(url.data, want) != 0)
        fail_msg("join(%s, %s, %s) = %s, want %s", base, api, q, url.data, want);
    gw_buf_fini(&url);
}

static void
test_join_url(void **state)
{
    struct gw_buf url = GW_BUF_INIT;
    struct gw_str a = {"/v1/messages", 12}, q = {"", 0};
    char big[5000];

    (void)state;
    join("https://api.anthropic.com", "/v1/messages", "beta=true",
         "https://api.anthropic.com/v1/messages?beta=true");
    join("https://relay.example/api/", "/v1/messages", "", "https://relay.example/api/v1/messages");
    join("https://api.moonshot.cn/anthropic//", "/v1/messages", "",
         "https://api.moonshot.cn/anthropic/v1/messages");
    join("https://x/v1", "/v1/chat/completions", "", "https://x/v1/chat/completions");
    /* "/v1" only drops a whole segment: "/xv1" is not "/v1" */
    join("https://x/xv1", "/v1/chat/completions", "", "https://x/xv1/v1/chat/completions");
    join("https://g/v1beta", "/v1beta/models/m:generateContent", "alt=sse",
         "https://g/v1beta/models/m:generateContent?alt=sse");
    GW_FAIL(edge_provider_join_url("", a, q, &url), GW_EINVAL);
    GW_FAIL(edge_provider_join_url("///", a, q, &url), GW_EINVAL);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    q.p = big;
    q.len = strlen(big);
    GW_FAIL(edge_provider_join_url("http://h", a, q, &url), GW_EMSGSIZE);
    assert_int_equal(url.len, 0);
    gw_buf_fini(&url);
}

static void
test_guess(void **state)
{
    struct gw_http_header bearer[] = {H("authorization", "Bearer k")};
    struct gw_http_header xkey[] = {H("x-api-key", "k"), H("authorization", "Bearer k")};
    struct gw_http_header gkey[] = {H("x-goog-api-key", "k")};
    struct gw_http_req r;
    struct gw_str p;

    (void)state;
#define PATH(s) (p.p = (s), p.len = strlen(s), p)
    assert_ptr_equal(edge_provider_guess(PATH("/v1beta/anything"), NULL), &edge_provider_gemini);
    assert_ptr_equal(edge_provider_guess(PATH("/v1/models/x:streamGenerateContent"), NULL),
                     &edge_provider_gemini);
    assert_ptr_equal(edge_provider_guess(PATH("/v1/chat/completions"), NULL),
                     &edge_provider_openai);
    assert_ptr_equal(edge_provider_guess(PATH("/v1/responses"), NULL), &edge_provider_openai);
    assert_ptr_equal(edge_provider_guess(PATH("/v1/messages"), NULL), &edge_provider_anthropic);
    assert_ptr_equal(edge_provider_guess(PATH(""), NULL), &edge_provider_anthropic);

    memset(&r, 0, sizeof(r));
    r.path = PATH("/v1/unknown");
    r.headers = bearer;
    r.n_headers = 1;
    assert_ptr_equal(edge_provider_guess(r.path, &r), &edge_provider_openai);
    r.headers = xkey;
    r.n_headers = 2;
    assert_ptr_equal(edge_provider_guess(r.path, &r), &edge_provider_anthropic);
    r.headers = gkey;
    r.n_headers = 1;
    assert_ptr_equal(edge_provider_guess(r.path, &r), &edge_provider_gemini);
    r.headers = NULL;
    r.n_headers = 0;
    r.query.p = "alt=sse&key=k";
    r.query.len = strlen(r.query.p);
    assert_ptr_equal(edge_provider_guess(r.path, &r), &edge_provider_gemini);
#undef PATH
}

static void
test_sessions_and_ops(void **state)
{
    char a[EDGE_SESSION_MAX], b[EDGE_SESSION_MAX];
    char longv[300];
    cJSON *x, *y;

    (void)state;
    edge_provider_set_session(a, "short", 5);
    assert_string_equal(a, "short");
    memset(longv, 'z', sizeof(longv));
    edge_provider_set_session(a, longv, sizeof(longv));
    assert_int_equal(strlen(a), 64); /* SHA-256 hex */
    longv[299] = 'y';
    edge_provider_set_session(b, longv, sizeof(longv));
    assert_string_not_equal(a, b);

    x = gw_json_parse("{\"a\": [1, 2]}", 13, NULL);
    y = gw_json_parse("{\"a\":[1,2]}", 11, NULL);
    a[0] = b[0] = '\0';
    edge_provider_prefix_session(a, x, NULL);
    edge_provider_prefix_session(b, y, NULL);
    assert_string_equal(a, b); /* formatting does not matter */
    assert_int_equal(strlen(a), 34);
    edge_provider_prefix_session(b, NULL, y);
    assert_string_not_equal(a, b); /* position does */
    b[0] = '\0';
    edge_provider_prefix_session(b, NULL, NULL);
    assert_string_equal(b, "");
    cJSON_Delete(x);
    cJSON_Delete(y);

    assert_true(edge_op_billable(EDGE_OP_MESSAGES));
    assert_true(edge_op_billable(EDGE_OP_STREAM_GENERATE_CONTENT));
    assert_false(edge_op_billable(EDGE_OP_COUNT_TOKENS));
    assert_false(edge_op_billable(EDGE_OP_COUNT_TOKENS_GEMINI));
    assert_false(edge_op_billable(EDGE_OP_MODELS));
    assert_true(edge_op_local(EDGE_OP_LIST_MODELS));
    assert_false(edge_op_local(EDGE_OP_RESPONSES));
    assert_string_equal(edge_op_name(EDGE_OP_CHAT_COMPLETIONS), "chat_completions");

    assert_ptr_equal(edge_provider_of(EDGE_DIALECT_ANTHROPIC), &edge_provider_anthropic);
    assert_ptr_equal(edge_provider_of(EDGE_DIALECT_OPENAI), &edge_provider_openai);
    assert_ptr_equal(edge_provider_of(EDGE_DIALECT_GEMINI), &edge_provider_gemini);
    assert_null(edge_provider_of(EDGE_DIALECT_COUNT));
    for (int d = 0; d < EDGE_DIALECT_COUNT; d++) {
        const struct edge_provider *p = edge_provider_of((enum edge_dialect)d);
        assert_int_equal(p->dialect, d);
        assert_string_equal(p->name, edge_dialect_name((enum edge_dialect)d));
        assert_non_null(p->match);
        assert_non_null(p->client_key);
        assert_non_null(p->scan_request);
        assert_non_null(p->upstream_url);
        assert_non_null(p->upstream_headers);
        assert_non_null(p->meter_event);
        assert_non_null(p->meter_body);
        assert_non_null(p->error_body);
        assert_non_null(p->models_body);
        assert_true(p->n_default_models > 0);
    }
    assert_int_equal(edge_provider_estimate_tokens(0), 0);
    assert_int_equal(edge_provider_estimate_tokens(1), 1);
    assert_int_equal(edge_provider_estimate_tokens(8), 2);
    assert_int_equal(edge_provider_estimate_tokens(9), 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_join_url),
        cmocka_unit_test(test_guess),
        cmocka_unit_test(test_sessions_and_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
