/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the Gemini dialect adapter: paths under v1beta and v1 with the
 * model in the path, keys from x-goog-api-key and ?key= (and key= removed
 * from the upstream query with every other parameter kept), request scans,
 * usage from SSE events, bodies and JSON arrays (thoughts counted as
 * output), upstream headers, error bodies with Google status names and the
 * model list. */
#include "gw_test.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gw_buf.h"
#include "gw_json.h"
#include "provider.h"
#include "provider_gemini.h"
#include "sse.h"

#define H(n, v)                                                                                    \
    {                                                                                              \
        {n, sizeof(n) - 1},                                                                        \
        {                                                                                          \
            v, sizeof(v) - 1                                                                       \
        }                                                                                          \
    }

static void
mkreq(struct gw_http_req *r, const char *method, const char *path, const char *query,
      struct gw_http_header *h, size_t nh, const char *body)
{
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->path.p = path;
    r->path.len = strlen(path);
    r->query.p = query ? query : "";
    r->query.len = query ? strlen(query) : 0;
    r->headers = h;
    r->n_headers = nh;
    if (body)
        gw_buf_append(&r->body, body, strlen(body));
}

static void
test_match(void **state)
{
    static const struct {
        const char *path;
        enum edge_op op;
        const char *model;
        size_t api_off;
    } ok[] = {
        {"/v1beta/models/gemini-2.5-flash:generateContent", EDGE_OP_GENERATE_CONTENT,
         "gemini-2.5-flash", 0},
        {"/v1beta/models/gemini-2.5-pro:streamGenerateContent", EDGE_OP_STREAM_GENERATE_CONTENT,
         "gemini-2.5-pro", 0},
        {"/v1beta/models/gemini-2.5-pro:countTokens", EDGE_OP_COUNT_TOKENS_GEMINI, "gemini-2.5-pro",
         0},
        {"/v1/models/gemini-2.5-flash:generateContent", EDGE_OP_GENERATE_CONTENT,
         "gemini-2.5-flash", 0},
        {"/google/v1beta/models/m:streamGenerateContent", EDGE_OP_STREAM_GENERATE_CONTENT, "m", 7},
        {"/v1beta/models", EDGE_OP_LIST_MODELS, "", 0},
        {"/x/v1beta/models", EDGE_OP_LIST_MODELS, "", 2},
    };
    static const char *const no[] = {
        "/v1beta/models/:generateContent",       "/v1beta/gemini:generateContent",
        "/v2/models/m:generateContent",          "/v1beta/models/m:embedContent",
        "/v1beta/tunedModels/m:generateContent", "/v1/models",
    };
    struct gw_http_req r;
    struct edge_match m;

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        mkreq(&r, "POST", ok[i].path, "alt=sse", NULL, 0, NULL);
        if (edge_provider_match(&r, &m) != &edge_provider_gemini)
            fail_msg("%s: not Gemini", ok[i].path);
        assert_int_equal(m.op, ok[i].op);
        assert_int_equal(m.model.len, strlen(ok[i].model));
        assert_memory_equal(m.model.p, ok[i].model, m.model.len);
        assert_int_equal(m.api_off, ok[i].api_off);
        assert_string_equal(m.method, ok[i].op == EDGE_OP_LIST_MODELS ? "GET" : "POST");
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        mkreq(&r, "POST", no[i], NULL, NULL, 0, NULL);
        if (edge_provider_gemini.match(&r, &m))
            fail_msg("%s matched Gemini", no[i]);
    }
}

static void
test_client_key(void **state)
{
    struct gw_http_header h1[] = {H("X-Goog-Api-Key", " AIzaGateway ")};
    struct gw_http_header h2[] = {H("authorization", "Bearer x")};
    struct gw_http_req r;
    struct gw_str k;

    (void)state;
    mkreq(&r, "POST", "/v1beta/models/m:generateContent", "key=fromquery", h1, 1, NULL);
    assert_true(edge_provider_gemini.client_key(&r, &k));
    assert_int_equal(k.len, 11);
    assert_memory_equal(k.p, "AIzaGateway", 11);
    mkreq(&r, "POST", "/v1beta/models/m:generateContent", "alt=sse&key=fromquery&x=1", h2, 1, NULL);
    assert_true(edge_provider_gemini.client_key(&r, &k));
    assert_int_equal(k.len, 9);
    assert_memory_equal(k.p, "fromquery", 9);
    mkreq(&r, "POST", "/v1beta/models/m:generateContent", "alt=sse&key=", h2, 1, NULL);
    assert_false(edge_provider_gemini.client_key(&r, &k));
    mkreq(&r, "POST", "/v1beta/models/m:generateContent", "akey=x&keys=y", NULL, 0, NULL);
    assert_false(edge_provider_gemini.client_key(&r, &k));
}

static void
strip(const char *q, const char *want)
{
    struct gw_buf out = GW_BUF_INIT;
    struct gw_str s = {q, strlen(q)};

    edge_gemini_strip_key(s, &out);
    gw_buf_append(&out, "", 1);
    if (strcmp(out.data, want) != 0)
        fail_msg("strip(%s) = %s, want %s", q, out.data, want);
    gw_buf_fini(&out);
}

static void
test_url_and_headers(void **state)
{
    struct gw_http_header hs[] = {
        H("x-goog-api-key", "AIzaGateway"),
        H("content-type", "application/json"),
        H("x-goog-api-client", "google-genai-sdk/1.0"),
        H("user-agent", "GeminiCLI/0.5"),
    };
    struct edge_account acct;
    struct gw_http_req r;
    struct edge_match m;
    struct gw_buf url = GW_BUF_INIT;
    struct curl_slist *l;
    int saw_cred = 0;

    (void)state;
    strip("key=abc", "");
    strip("alt=sse&key=abc", "alt=sse");
    strip("key=abc&alt=sse", "alt=sse");
    strip("a=1&key=abc&b=2&key=d", "a=1&b=2");
    strip("keyx=1&key&b=%20", "keyx=1&b=%20");
    strip("", "");

    memset(&acct, 0, sizeof(acct));
    acct.credential = (char *)"AIzaUpstreamSecret";
    acct.kind = (char *)"gemini";
    mkreq(&r, "POST", "/api/v1beta/models/gemini-2.5-flash:streamGenerateContent",
          "alt=sse&key=AIzaGateway", hs, sizeof(hs) / sizeof(hs[0]), "{}");
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_gemini);
    GW_PASS(edge_provider_gemini.upstream_url("https://generativelanguage.googleapis.com", &r, &m,
                                              &url));
    gw_buf_append(&url, "", 1);
    assert_string_equal(url.data, "https://generativelanguage.googleapis.com/v1beta/models/"
                                  "gemini-2.5-flash:streamGenerateContent?alt=sse");
    gw_buf_reset(&url);
    /* A base URL that already names the version is not doubled. */
    GW_PASS(edge_provider_gemini.upstream_url("http://127.0.0.1:9/x/v1beta/", &r, &m, &url));
    gw_buf_append(&url, "", 1);
    assert_string_equal(url.data,
                        "http://127.0.0.1:9/x/v1beta/models/gemini-2.5-flash:streamGenerateContent"
                        "?alt=sse");
    gw_buf_fini(&url);

    l = edge_provider_gemini.upstream_headers(&r, &acct);
    for (struct curl_slist *p = l; p; p = p->next) {
        assert_null(strstr(p->data, "AIzaGateway"));
        if (strcmp(p->data, "x-goog-api-key: AIzaUpstreamSecret") == 0)
            saw_cred++;
    }
    assert_int_equal(saw_cred, 1);
    {
        int have_client = 0;
        for (struct curl_slist *p = l; p; p = p->next)
            have_client += strcmp(p->data, "x-goog-api-client: google-genai-sdk/1.0") == 0;
        assert_int_equal(have_client, 1);
    }
    curl_slist_free_all(l);
    gw_buf_fini(&r.body);
}

static void
test_scan(void **state)
{
    struct gw_http_req r;
    struct edge_match m;
    struct edge_request_info in, in2;
    const char *why = NULL;
    static const char body[] =
        "{\"systemInstruction\":{\"parts\":[{\"text\":\"sys\"}]},\"contents\":[{\"role\":"
        "\"user\",\"parts\":[{\"text\":\"hi\"}]}],\"generationConfig\":{\"maxOutputTokens\":256}}";

    (void)state;
    mkreq(&r, "POST", "/v1beta/models/gemini-2.5-pro:streamGenerateContent", "alt=sse", NULL, 0,
          body);
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_gemini);
    GW_PASS(edge_provider_gemini.scan_request(&r, &m, &in, &why));
    assert_null(why);
    assert_string_equal(in.model, "gemini-2.5-pro");
    assert_int_equal(in.stream, 1);
    assert_int_equal(in.max_tokens, 256);
    assert_int_equal(in.est_input_tokens, (strlen(body) + 3) / 4);
    assert_memory_equal(in.session, "p:", 2);
    gw_buf_fini(&r.body);

    mkreq(&r, "POST", "/v1/models/gemini-2.5-pro:generateContent", NULL, NULL, 0, body);
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_gemini);
    GW_PASS(edge_provider_gemini.scan_request(&r, &m, &in2, NULL));
    assert_int_equal(in2.stream, 0);
    assert_string_equal(in.session, in2.session);
    gw_buf_fini(&r.body);

    /* countTokens may carry generateContentRequest instead of contents */
    mkreq(&r, "POST", "/v1beta/models/g:countTokens", NULL, NULL, 0,
          "{\"generateContentRequest\":{\"contents\":[]}}");
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_gemini);
    GW_PASS(edge_provider_gemini.scan_request(&r, &m, &in, NULL));
    assert_string_equal(in.model, "g");
    gw_buf_fini(&r.body);

    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"contents\":{}}",
        "{\"contents\":[]} x",
        "{\"contents\":[],\"generationConfig\":{\"maxOutputTokens\":\"9\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mkreq(&r, "POST", "/v1beta/models/g:generateContent", NULL, NULL, 0, bad[i]);
        assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_gemini);
        why = NULL;
        if (edge_provider_gemini.scan_request(&r, &m, &in, &why) != GW_EINVAL)
            fail_msg("case %zu (%s) accepted", i, bad[i]);
        assert_non_null(why);
        gw_buf_fini(&r.body);
    }
}

static void
meter_cb(void *arg, const char *event, size_t event_len, const char *data, size_t data_len)
{
    edge_provider_gemini.meter_event(arg, event, event_len, data, data_len);
}

static void
test_meter(void **state)
{
    static const char stream[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"}}],"
        "\"usageMetadata\":{\"promptTokenCount\":100,\"candidatesTokenCount\":2,"
        "\"totalTokenCount\":102}}\r\n\r\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"}],\"role\":\"model\"},"
        "\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":100,"
        "\"cachedContentTokenCount\":64,\"candidatesTokenCount\":9,\"thoughtsTokenCount\":30,"
        "\"totalTokenCount\":139}}\r\n\r\n";
    static const char array_body[] =
        "[{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}],\"usageMetadata\":"
        "{\"promptTokenCount\":7,\"candidatesTokenCount\":1}},\n"
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]},\"finishReason\":\"STOP\"}],"
        "\"usageMetadata\":{\"promptTokenCount\":7,\"candidatesTokenCount\":4,"
        "\"thoughtsTokenCount\":2}}]";
    static const char body[] =
        "{\"candidates\":[{\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":"
        "11,\"candidatesTokenCount\":3,\"toolUsePromptTokenCount\":4}}";
    struct edge_meter m;
    struct edge_sse sse;

    (void)state;
    edge_meter_init(&m, EDGE_OP_STREAM_GENERATE_CONTENT);
    edge_sse_init(&sse, 0);
    GW_PASS(edge_sse_feed(&sse, stream, strlen(stream), meter_cb, &m));
    edge_sse_fini(&sse);
    assert_int_equal(m.usage.input_tokens, 36);
    assert_int_equal(m.usage.cache_read_tokens, 64);
    assert_int_equal(m.usage.output_tokens, 39);
    assert_int_equal(m.usage.reasoning_tokens, 30);
    assert_int_equal(m.usage.have_final, 1);
    edge_meter_fini(&m);

    /* The first event alone: cumulative usage so far, not final. */
    edge_meter_init(&m, EDGE_OP_STREAM_GENERATE_CONTENT);
    edge_sse_init(&sse, 0);
    GW_PASS(edge_sse_feed(&sse, stream, strstr(stream, "\r\n\r\n") + 4 - stream, meter_cb, &m));
    edge_sse_fini(&sse);
    assert_int_equal(m.usage.input_tokens, 100);
    assert_int_equal(m.usage.output_tokens, 2);
    assert_int_equal(m.usage.have_final, 0);
    edge_meter_fini(&m);

    edge_meter_init(&m, EDGE_OP_STREAM_GENERATE_CONTENT);
    GW_PASS(edge_provider_gemini.meter_body(&m, array_body, strlen(array_body)));
    assert_int_equal(m.usage.input_tokens, 7);
    assert_int_equal(m.usage.output_tokens, 6);
    assert_int_equal(m.usage.reasoning_tokens, 2);
    assert_int_equal(m.usage.have_final, 1);
    edge_meter_fini(&m);

    edge_meter_init(&m, EDGE_OP_GENERATE_CONTENT);
    GW_PASS(edge_provider_gemini.meter_body(&m, body, strlen(body)));
    assert_int_equal(m.usage.input_tokens, 15);
    assert_int_equal(m.usage.output_tokens, 3);
    GW_FAIL(edge_provider_gemini.meter_body(&m, "{\"candidates\":[]}", 17), GW_EINVAL);
    GW_FAIL(edge_provider_gemini.meter_body(&m, "[]", 2), GW_EINVAL);
    GW_FAIL(edge_provider_gemini.meter_body(&m, "[", 1), GW_EINVAL);
    assert_int_equal(m.usage.input_tokens, 15);
    edge_meter_fini(&m);
}

static void
check_error(int status, gw_err err, const char *want_status)
{
    struct gw_buf b = GW_BUF_INIT;
    cJSON *root, *e;
    int64_t code;
    const char *s;

    edge_provider_gemini.error_body(status, err, "some \"message\"", &b);
    root = gw_json_parse(b.data, b.len, NULL);
    assert_non_null(root);
    e = cJSON_GetObjectItemCaseSensitive(root, "error");
    GW_PASS(gw_json_get_int(e, "code", &code));
    assert_int_equal(code, status);
    GW_PASS(gw_json_get_str(e, "message", &s));
    assert_string_equal(s, "some \"message\"");
    GW_PASS(gw_json_get_str(e, "status", &s));
    assert_string_equal(s, want_status);
    cJSON_Delete(root);
    gw_buf_fini(&b);
}

static void
test_errors_and_models(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    const char *ids[] = {"gemini-2.5-flash", "gemini-2.5-pro"};
    cJSON *root, *models;
    const char *s;

    (void)state;
    check_error(401, GW_EAUTH, "UNAUTHENTICATED");
    check_error(400, GW_EINVAL, "INVALID_ARGUMENT");
    check_error(429, GW_EQUOTA, "RESOURCE_EXHAUSTED");
    check_error(503, GW_ENOACCOUNT, "UNAVAILABLE");
    check_error(404, GW_ENOTFOUND, "NOT_FOUND");
    check_error(500, GW_EINTERNAL, "INTERNAL");
    check_error(403, GW_EPERM, "PERMISSION_DENIED");
    check_error(504, GW_ETIMEDOUT, "DEADLINE_EXCEEDED");

    edge_provider_gemini.models_body(ids, 2, &b);
    root = gw_json_parse(b.data, b.len, NULL);
    assert_non_null(root);
    models = cJSON_GetObjectItemCaseSensitive(root, "models");
    assert_int_equal(cJSON_GetArraySize(models), 2);
    GW_PASS(gw_json_get_str(cJSON_GetArrayItem(models, 1), "name", &s));
    assert_string_equal(s, "models/gemini-2.5-pro");
    cJSON_Delete(root);
    gw_buf_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),           cmocka_unit_test(test_client_key),
        cmocka_unit_test(test_url_and_headers), cmocka_unit_test(test_scan),
        cmocka_unit_test(test_meter),           cmocka_unit_test(test_errors_and_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
