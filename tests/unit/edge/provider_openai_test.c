/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the OpenAI dialect adapter: path matching (and the shared GET
 * /v1/models), key extraction, request scans of chat and responses bodies,
 * the include_usage insertion (valid JSON, every other byte kept), the
 * stream filter that removes the extra usage chunk at every split of the
 * input, usage metering of both APIs, upstream URL and headers, error and
 * model list bodies. */
#include "gw_test.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gw_buf.h"
#include "gw_json.h"
#include "provider.h"
#include "provider_openai.h"
#include "sse.h"

#define H(n, v)                                                                                    \
    {                                                                                              \
        {n, sizeof(n) - 1},                                                                        \
        {                                                                                          \
            v, sizeof(v) - 1                                                                       \
        }                                                                                          \
    }

/* A request as the HTTP server would hand it over. */
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

/* ---- match and key ------------------------------------------------------- */

static void
test_match(void **state)
{
    struct gw_http_header bearer[] = {H("Authorization", "Bearer sk-gw-1")};
    struct gw_http_header xkey[] = {H("x-api-key", "sk-gw-1")};
    struct gw_http_header aver[] = {H("anthropic-version", "2023-06-01"),
                                    H("authorization", "Bearer k")};
    struct gw_http_header gkey[] = {H("x-goog-api-key", "g")};
    struct gw_http_req r;
    struct edge_match m;
    const struct edge_provider *p;

    (void)state;
    mkreq(&r, "POST", "/v1/chat/completions", NULL, bearer, 1, NULL);
    p = edge_provider_match(&r, &m);
    assert_ptr_equal(p, &edge_provider_openai);
    assert_int_equal(m.op, EDGE_OP_CHAT_COMPLETIONS);
    assert_string_equal(m.method, "POST");
    assert_int_equal(m.api_off, 0);
    gw_buf_fini(&r.body);

    mkreq(&r, "POST", "/openai/proxy/v1/responses", NULL, bearer, 1, NULL);
    p = edge_provider_match(&r, &m);
    assert_ptr_equal(p, &edge_provider_openai);
    assert_int_equal(m.op, EDGE_OP_RESPONSES);
    assert_int_equal(m.api_off, strlen("/openai/proxy"));

    /* GET /v1/models: the auth headers pick the dialect. */
    mkreq(&r, "GET", "/v1/models", NULL, bearer, 1, NULL);
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_openai);
    assert_int_equal(m.op, EDGE_OP_MODELS);
    assert_string_equal(m.method, "GET");
    mkreq(&r, "GET", "/v1/models", NULL, xkey, 1, NULL);
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_anthropic);
    assert_int_equal(m.op, EDGE_OP_MODELS);
    mkreq(&r, "GET", "/v1/models", NULL, aver, 2, NULL);
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_anthropic);
    mkreq(&r, "GET", "/v1/models", NULL, gkey, 1, NULL);
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_gemini);
    assert_int_equal(m.op, EDGE_OP_LIST_MODELS);
    mkreq(&r, "GET", "/v1/models", "key=abc", NULL, 0, NULL);
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_gemini);
    /* The genai SDK's /v1/models/{m}:generateContent is Gemini, not OpenAI. */
    mkreq(&r, "POST", "/v1/models/gemini-2.5-flash:generateContent", NULL, bearer, 1, NULL);
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_gemini);
    assert_int_equal(m.op, EDGE_OP_GENERATE_CONTENT);

    /* Unknown paths match nothing; wrong method still matches (405 later). */
    mkreq(&r, "POST", "/v1/chat/completion", NULL, bearer, 1, NULL);
    assert_null(edge_provider_match(&r, &m));
    mkreq(&r, "POST", "/v1/chat/completions/x", NULL, bearer, 1, NULL);
    assert_null(edge_provider_match(&r, &m));
    mkreq(&r, "GET", "/v1/chat/completions", NULL, bearer, 1, NULL);
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_openai);
    assert_string_equal(m.method, "POST");
}

static void
test_client_key(void **state)
{
    struct gw_http_header h1[] = {H("authorization", "bearer   sk-gw-1  ")};
    struct gw_http_header h2[] = {H("x-api-key", "sk-gw-1")};
    struct gw_http_header h3[] = {H("authorization", "Basic abc")};
    struct gw_http_header h4[] = {H("authorization", "Bearer ")};
    struct gw_http_req r;
    struct gw_str k;

    (void)state;
    mkreq(&r, "POST", "/v1/chat/completions", NULL, h1, 1, NULL);
    assert_true(edge_provider_openai.client_key(&r, &k));
    assert_int_equal(k.len, 7);
    assert_memory_equal(k.p, "sk-gw-1", 7);
    mkreq(&r, "POST", "/v1/chat/completions", NULL, h2, 1, NULL);
    assert_false(edge_provider_openai.client_key(&r, &k)); /* OpenAI: Bearer only */
    mkreq(&r, "POST", "/v1/chat/completions", NULL, h3, 1, NULL);
    assert_false(edge_provider_openai.client_key(&r, &k));
    mkreq(&r, "POST", "/v1/chat/completions", NULL, h4, 1, NULL);
    assert_false(edge_provider_openai.client_key(&r, &k));
}

/* ---- scan ---------------------------------------------------------------- */

static gw_err
scan(enum edge_op op, const char *body, struct edge_request_info *out, const char **why)
{
    return edge_openai_scan_request(op, body, strlen(body), NULL, out, why);
}

static void
test_scan_chat(void **state)
{
    struct edge_request_info in;
    const char *why = "unset";

    (void)state;
    GW_PASS(scan(EDGE_OP_CHAT_COMPLETIONS,
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                 "\"max_completion_tokens\":77}",
                 &in, &why));
    assert_null(why);
    assert_string_equal(in.model, "gpt-4o");
    assert_int_equal(in.stream, 0);
    assert_int_equal(in.max_tokens, 77);
    assert_int_equal(in.inject_usage, 0);
    assert_int_equal(in.est_input_tokens, (strlen("{\"model\":\"gpt-4o\",\"messages\":[{\"role\":"
                                                  "\"user\",\"content\":\"hi\"}],"
                                                  "\"max_completion_tokens\":77}") +
                                           3) /
                                              4);
    /* no session given: a prefix hash */
    assert_memory_equal(in.session, "p:", 2);
    assert_int_equal(strlen(in.session), 34);

    /* include_usage decisions for streams */
    GW_PASS(scan(EDGE_OP_CHAT_COMPLETIONS, "{\"model\":\"m\",\"messages\":[],\"stream\":true}", &in,
                 NULL));
    assert_int_equal(in.stream, 1);
    assert_int_equal(in.inject_usage, 1);
    GW_PASS(scan(EDGE_OP_CHAT_COMPLETIONS,
                 "{\"model\":\"m\",\"messages\":[],\"stream\":true,\"stream_options\":"
                 "{\"include_usage\":true}}",
                 &in, NULL));
    assert_int_equal(in.inject_usage, 0);
    GW_PASS(scan(EDGE_OP_CHAT_COMPLETIONS,
                 "{\"model\":\"m\",\"messages\":[],\"stream\":true,\"stream_options\":"
                 "{\"include_usage\":false}}",
                 &in, NULL));
    assert_int_equal(in.inject_usage, 1);
    GW_PASS(scan(EDGE_OP_CHAT_COMPLETIONS,
                 "{\"model\":\"m\",\"messages\":[],\"stream\":true,\"stream_options\":null}", &in,
                 NULL));
    assert_int_equal(in.inject_usage, 1);
    GW_PASS(scan(EDGE_OP_CHAT_COMPLETIONS,
                 "{\"model\":\"m\",\"messages\":[],\"stream\":true,\"stream_options\":7}", &in,
                 NULL));
    assert_int_equal(in.inject_usage, 0);
    GW_PASS(scan(EDGE_OP_CHAT_COMPLETIONS, "{\"model\":\"m\",\"messages\":[],\"stream\":false}",
                 &in, NULL));
    assert_int_equal(in.inject_usage, 0);

    /* prompt_cache_key is a session; the same prefix hashes the same */
    GW_PASS(scan(EDGE_OP_CHAT_COMPLETIONS,
                 "{\"model\":\"m\",\"messages\":[],\"prompt_cache_key\":\"conv-9\"}", &in, NULL));
    assert_string_equal(in.session, "conv-9");
    {
        struct edge_request_info a, b, c;
        GW_PASS(
            scan(EDGE_OP_CHAT_COMPLETIONS,
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                 "{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"user\",\"content\":\"1\"}]}",
                 &a, NULL));
        GW_PASS(scan(EDGE_OP_CHAT_COMPLETIONS,
                     "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                     "{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"user\",\"content\":\"2\"}],"
                     "\"model\":\"m\"}",
                     &b, NULL));
        GW_PASS(scan(EDGE_OP_CHAT_COMPLETIONS,
                     "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"T\"}]}", &c,
                     NULL));
        assert_string_equal(a.session, b.session);
        assert_string_not_equal(a.session, c.session);
    }

    static const char *const bad[] = {
        "",
        "[]",
        "{\"messages\":[]}",
        "{\"model\":\"\",\"messages\":[]}",
        "{\"model\":1,\"messages\":[]}",
        "{\"model\":\"m\"}",
        "{\"model\":\"m\",\"messages\":{}}",
        "{\"model\":\"m\",\"messages\":[],\"stream\":1}",
        "{\"model\":\"m\",\"messages\":[],\"max_tokens\":\"9\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (scan(EDGE_OP_CHAT_COMPLETIONS, bad[i], &in, &why) != GW_EINVAL)
            fail_msg("case %zu (%s) accepted", i, bad[i]);
        assert_non_null(why);
    }
}

static void
test_scan_responses(void **state)
{
    struct gw_http_header hs[] = {H("session_id", "0199-codex-session")};
    struct gw_http_req r;
    struct edge_request_info in, in2;

    (void)state;
    /* Responses needs no messages; input may be a string. */
    GW_PASS(scan(EDGE_OP_RESPONSES,
                 "{\"model\":\"gpt-5-codex\",\"instructions\":\"be brief\",\"input\":\"hi\","
                 "\"stream\":true,\"max_output_tokens\":500}",
                 &in, NULL));
    assert_string_equal(in.model, "gpt-5-codex");
    assert_int_equal(in.stream, 1);
    assert_int_equal(in.inject_usage, 0); /* only chat gets the insertion */
    assert_int_equal(in.max_tokens, 500);
    assert_memory_equal(in.session, "p:", 2);
    GW_PASS(scan(EDGE_OP_RESPONSES,
                 "{\"model\":\"gpt-5-codex\",\"instructions\":\"be brief\",\"input\":\"hi\"}", &in2,
                 NULL));
    assert_string_equal(in.session, in2.session);

    /* Codex's session_id header wins over everything in the body. */
    mkreq(&r, "POST", "/v1/responses", NULL, hs, 1,
          "{\"model\":\"gpt-5\",\"input\":[],\"prompt_cache_key\":\"pck\"}");
    struct edge_match m = {EDGE_OP_RESPONSES, "POST", 0, {NULL, 0}};
    GW_PASS(edge_provider_openai.scan_request(&r, &m, &in, NULL));
    assert_string_equal(in.session, "0199-codex-session");
    gw_buf_fini(&r.body);
    GW_FAIL(scan(EDGE_OP_RESPONSES, "{\"input\":\"x\"}", &in, NULL), GW_EINVAL);
}

/* ---- include_usage insertion ---------------------------------------------- */

static void
inject_ok(const char *in, const char *want)
{
    struct gw_buf out = GW_BUF_INIT;
    cJSON *root;

    if (!edge_openai_inject_include_usage(in, strlen(in), &out))
        fail_msg("not rewritten: %s", in);
    gw_buf_append(&out, "", 1);
    if (strcmp(out.data, want) != 0)
        fail_msg("rewrite of %s\n  got  %s\n  want %s", in, out.data, want);
    root = gw_json_parse(out.data, out.len - 1, NULL);
    assert_non_null(root);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "stream_options"), "include_usage")));
    cJSON_Delete(root);
    gw_buf_fini(&out);
}

static void
inject_refused(const char *in)
{
    struct gw_buf out = GW_BUF_INIT;

    if (edge_openai_inject_include_usage(in, strlen(in), &out))
        fail_msg("rewritten but should not be: %s", in);
    assert_int_equal(out.len, 0);
    gw_buf_fini(&out);
}

static void
test_inject(void **state)
{
    (void)state;
    inject_ok("{\"model\":\"m\",\"stream\":true,\"messages\":[]}",
              "{\"stream_options\":{\"include_usage\":true},\"model\":\"m\",\"stream\":true,"
              "\"messages\":[]}");
    /* whitespace and formatting elsewhere are kept as they were */
    inject_ok("  {\n  \"model\" : \"m\",\n  \"stream\" : true\n}\n",
              "  {\"stream_options\":{\"include_usage\":true},\n  \"model\" : \"m\",\n  "
              "\"stream\" : true\n}\n");
    inject_ok("{}", "{\"stream_options\":{\"include_usage\":true}}");
    inject_ok("{ }", "{\"stream_options\":{\"include_usage\":true} }");
    inject_ok("{\"stream_options\":{},\"model\":\"m\"}",
              "{\"stream_options\":{\"include_usage\":true},\"model\":\"m\"}");
    inject_ok("{\"model\":\"m\",\"stream_options\":{ \"x\" : [1,{\"include_usage\":false}] }}",
              "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true, \"x\" : "
              "[1,{\"include_usage\":false}] }}");
    inject_ok("{\"stream_options\": {\"include_usage\" : false , \"y\":2},\"stream\":true}",
              "{\"stream_options\": {\"include_usage\" : true , \"y\":2},\"stream\":true}");
    inject_ok("{\"stream_options\":{\"include_usage\":null}}",
              "{\"stream_options\":{\"include_usage\":true}}");
    inject_ok("{\"stream\":true,\"stream_options\":null,\"z\":0}",
              "{\"stream\":true,\"stream_options\":{\"include_usage\":true},\"z\":0}");
    /* the key inside strings, escapes and nested objects is not the member */
    inject_ok("{\"messages\":[{\"content\":\"\\\"stream_options\\\":{}\\\\\"}],"
              "\"meta\":{\"stream_options\":1},\"model\":\"m\\u00e9\"}",
              "{\"stream_options\":{\"include_usage\":true},\"messages\":[{\"content\":"
              "\"\\\"stream_options\\\":{}\\\\\"}],\"meta\":{\"stream_options\":1},"
              "\"model\":\"m\\u00e9\"}");

    inject_refused("[1]");
    inject_refused("{\"a\":1} x");
    inject_refused("{\"a\":");
    inject_refused("{\"stream_options\":\"yes\"}");
    inject_refused("{\"stream_options\":{},\"stream_options\":{}}");
    inject_refused("{\"stream_options\":{\"include_usage\":1,\"include_usage\":2}}");
    inject_refused("");
}

/* ---- stream filter -------------------------------------------------------- */

static const char CHAT_STREAM[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"Hello\"}}],\"usage\":null}\n\n"
    ": keep-alive comment\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
static const char USAGE_CHUNK[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{"
    "\"prompt_tokens\":100,\"completion_tokens\":50,\"total_tokens\":150,"
    "\"prompt_tokens_details\":{\"cached_tokens\":30},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":20}}}\n\n";
static const char DONE[] = "data: [DONE]\n\n";

/* Runs the filter over `in` cut at `split` (0: one piece; 1: byte by
 * byte) and returns what the client would get. */
static void
filter_all(const char *in, size_t len, size_t split, struct gw_buf *out, uint64_t *dropped)
{
    struct edge_meter m;
    size_t off = 0;

    edge_meter_init(&m, EDGE_OP_CHAT_COMPLETIONS);
    m.strip_usage_chunk = 1;
    while (off < len) {
        size_t n = split == 0 ? len : (split < len - off ? split : len - off);
        edge_openai_filter_stream(&m, in + off, n, out);
        off += n;
    }
    edge_openai_filter_flush(&m, out);
    *dropped = m.events_dropped;
    edge_meter_fini(&m);
}

static void
crlf(const char *in, struct gw_buf *out)
{
    for (; *in; in++) {
        if (*in == '\n')
            gw_buf_append(out, "\r\n", 2);
        else
            gw_buf_append(out, in, 1);
    }
}

static void
test_filter(void **state)
{
    struct gw_buf in = GW_BUF_INIT, want = GW_BUF_INIT, in_crlf = GW_BUF_INIT,
                  want_crlf = GW_BUF_INIT;
    uint64_t dropped;

    (void)state;
    gw_buf_append_str(&in, CHAT_STREAM);
    gw_buf_append_str(&in, USAGE_CHUNK);
    gw_buf_append_str(&in, DONE);
    gw_buf_append_str(&want, CHAT_STREAM);
    gw_buf_append_str(&want, DONE);
    crlf(in.data, &in_crlf);
    crlf(want.data, &want_crlf);

    /* Every split of the input (one piece, two pieces at every point). */
    for (size_t cut = 0; cut <= in.len; cut++) {
        struct gw_buf out = GW_BUF_INIT;
        struct edge_meter m;
        edge_meter_init(&m, EDGE_OP_CHAT_COMPLETIONS);
        edge_openai_filter_stream(&m, in.data, cut, &out);
        edge_openai_filter_stream(&m, in.data + cut, in.len - cut, &out);
        edge_openai_filter_flush(&m, &out);
        if (out.len != want.len || memcmp(out.data, want.data, want.len) != 0)
            fail_msg("split at %zu: output differs", cut);
        assert_int_equal(m.events_dropped, 1);
        edge_meter_fini(&m);
        gw_buf_fini(&out);
    }
    for (size_t cut = 0; cut <= in_crlf.len; cut++) {
        struct gw_buf out = GW_BUF_INIT;
        struct edge_meter m;
        edge_meter_init(&m, EDGE_OP_CHAT_COMPLETIONS);
        edge_openai_filter_stream(&m, in_crlf.data, cut, &out);
        edge_openai_filter_stream(&m, in_crlf.data + cut, in_crlf.len - cut, &out);
        edge_openai_filter_flush(&m, &out);
        if (out.len != want_crlf.len || memcmp(out.data, want_crlf.data, want_crlf.len) != 0)
            fail_msg("CRLF split at %zu: output differs", cut);
        edge_meter_fini(&m);
        gw_buf_fini(&out);
    }
    {
        struct gw_buf out = GW_BUF_INIT;
        filter_all(in.data, in.len, 1, &out, &dropped);
        assert_int_equal(out.len, want.len);
        assert_memory_equal(out.data, want.data, want.len);
        assert_int_equal(dropped, 1);
        gw_buf_fini(&out);
    }
    /* A usage object next to non-empty choices is content: kept. */
    {
        static const char keep[] =
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],"
            "\"usage\":{\"prompt_tokens\":1}}\n\ndata: {\"choices\":[],\"usage\":null}\n\n";
        struct gw_buf out = GW_BUF_INIT;
        filter_all(keep, strlen(keep), 0, &out, &dropped);
        assert_int_equal(out.len, strlen(keep));
        assert_memory_equal(out.data, keep, out.len);
        assert_int_equal(dropped, 0);
        gw_buf_fini(&out);
    }
    /* A stream cut inside an event: what came is forwarded at flush. */
    {
        static const char cut[] =
            "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: {\"cho";
        struct gw_buf out = GW_BUF_INIT;
        filter_all(cut, strlen(cut), 3, &out, &dropped);
        assert_int_equal(out.len, strlen(cut));
        assert_memory_equal(out.data, cut, out.len);
        gw_buf_fini(&out);
    }
    /* An event over ev_max passes through unfiltered, byte for byte. */
    {
        struct gw_buf big = GW_BUF_INIT, out = GW_BUF_INIT;
        struct edge_meter m;
        gw_buf_append_str(&big, "data: {\"choices\":[],\"usage\":{},\"pad\":\"");
        for (int i = 0; i < 300; i++)
            gw_buf_append_str(&big, "xxxxxxxxxx");
        gw_buf_append_str(&big, "\"}\n\n");
        gw_buf_append_str(&big, DONE);
        edge_meter_init(&m, EDGE_OP_CHAT_COMPLETIONS);
        m.ev_max = 1000;
        for (size_t off = 0; off < big.len; off += 700)
            edge_openai_filter_stream(&m, big.data + off, big.len - off < 700 ? big.len - off : 700,
                                      &out);
        edge_openai_filter_flush(&m, &out);
        assert_int_equal(out.len, big.len);
        assert_memory_equal(out.data, big.data, big.len);
        edge_meter_fini(&m);
        gw_buf_fini(&big);
        gw_buf_fini(&out);
    }
    gw_buf_fini(&in);
    gw_buf_fini(&want);
    gw_buf_fini(&in_crlf);
    gw_buf_fini(&want_crlf);
}

/* ---- metering --------------------------------------------------------------- */

static void
meter_cb(void *arg, const char *event, size_t event_len, const char *data, size_t data_len)
{
    edge_provider_openai.meter_event(arg, event, event_len, data, data_len);
}

static void
meter_stream(struct edge_meter *m, const char *s)
{
    struct edge_sse sse;

    edge_sse_init(&sse, 0);
    GW_PASS(edge_sse_feed(&sse, s, strlen(s), meter_cb, m));
    edge_sse_fini(&sse);
}

static void
test_meter_chat(void **state)
{
    struct edge_meter m;
    struct gw_buf all = GW_BUF_INIT;

    (void)state;
    gw_buf_append_str(&all, CHAT_STREAM);
    gw_buf_append_str(&all, USAGE_CHUNK);
    edge_meter_init(&m, EDGE_OP_CHAT_COMPLETIONS);
    meter_stream(&m, all.data);
    assert_int_equal(m.usage.have_final, 0);
    assert_int_equal(m.usage.input_tokens, 70);
    assert_int_equal(m.usage.cache_read_tokens, 30);
    assert_int_equal(m.usage.output_tokens, 50);
    assert_int_equal(m.usage.reasoning_tokens, 20);
    assert_int_equal(m.usage.cache_write_5m_tokens + m.usage.cache_write_1h_tokens, 0);
    meter_stream(&m, DONE);
    assert_int_equal(m.usage.have_final, 1);
    edge_meter_fini(&m);

    /* non-streamed body */
    edge_meter_init(&m, EDGE_OP_CHAT_COMPLETIONS);
    static const char body[] =
        "{\"id\":\"c\",\"object\":\"chat.completion\",\"choices\":[],\"usage\":{\"prompt_tokens\":"
        "12,\"completion_tokens\":5,\"total_tokens\":17}}";
    GW_PASS(edge_provider_openai.meter_body(&m, body, strlen(body)));
    assert_int_equal(m.usage.input_tokens, 12);
    assert_int_equal(m.usage.output_tokens, 5);
    assert_int_equal(m.usage.cache_read_tokens, 0);
    assert_int_equal(m.usage.reasoning_tokens, 0);
    assert_int_equal(m.usage.have_final, 1);
    GW_FAIL(edge_provider_openai.meter_body(&m, "{\"id\":1}", 8), GW_EINVAL);
    GW_FAIL(edge_provider_openai.meter_body(&m, "nope", 4), GW_EINVAL);
    assert_int_equal(m.usage.input_tokens, 12);
    edge_meter_fini(&m);
    gw_buf_fini(&all);
}

static void
test_meter_responses(void **state)
{
    struct edge_meter m;
    static const char stream[] =
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":"
        "\"resp_1\",\"status\":\"in_progress\",\"usage\":null}}\n\n"
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
        "\"delta\":\"Hi\",\"usage\":{\"input_tokens\":999}}\n\n"
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{"
        "\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":200,"
        "\"input_tokens_details\":{\"cached_tokens\":120},\"output_tokens\":40,"
        "\"output_tokens_details\":{\"reasoning_tokens\":16},\"total_tokens\":240}}}\n\n";

    (void)state;
    edge_meter_init(&m, EDGE_OP_RESPONSES);
    meter_stream(&m, stream);
    assert_int_equal(m.usage.input_tokens, 80);
    assert_int_equal(m.usage.cache_read_tokens, 120);
    assert_int_equal(m.usage.output_tokens, 40);
    assert_int_equal(m.usage.reasoning_tokens, 16);
    assert_int_equal(m.usage.have_final, 1);
    edge_meter_fini(&m);

    /* Without event names the data's type is used. */
    edge_meter_init(&m, EDGE_OP_RESPONSES);
    meter_stream(&m, "data: {\"type\":\"response.completed\",\"response\":{\"usage\":{"
                     "\"input_tokens\":5,\"output_tokens\":6}}}\n\n");
    assert_int_equal(m.usage.input_tokens, 5);
    assert_int_equal(m.usage.output_tokens, 6);
    assert_int_equal(m.usage.have_final, 1);
    edge_meter_fini(&m);

    edge_meter_init(&m, EDGE_OP_RESPONSES);
    static const char body[] = "{\"id\":\"resp_2\",\"object\":\"response\",\"output\":[],"
                               "\"usage\":{\"input_tokens\":30,\"input_tokens_details\":"
                               "{\"cached_tokens\":0},\"output_tokens\":9,"
                               "\"output_tokens_details\":{\"reasoning_tokens\":0}}}";
    GW_PASS(edge_provider_openai.meter_body(&m, body, strlen(body)));
    assert_int_equal(m.usage.input_tokens, 30);
    assert_int_equal(m.usage.output_tokens, 9);
    edge_meter_fini(&m);
}

/* ---- upstream ------------------------------------------------------------------ */

static int
slist_has(const struct curl_slist *l, const char *line)
{
    for (; l; l = l->next) {
        if (strcmp(l->data, line) == 0)
            return 1;
    }
    return 0;
}

static int
slist_has_name(const struct curl_slist *l, const char *name)
{
    size_t n = strlen(name);
    for (; l; l = l->next) {
        if (strncasecmp(l->data, name, n) == 0 && (l->data[n] == ':' || l->data[n] == ';'))
            return 1;
    }
    return 0;
}

static void
test_upstream(void **state)
{
    struct gw_http_header hs[] = {
        H("Authorization", "Bearer aicp_gateway_key"),
        H("Content-Type", "application/json"),
        H("OpenAI-Beta", "responses=v1"),
        H("Connection", "keep-alive"),
        H("Accept-Encoding", "gzip"),
        H("User-Agent", "codex_cli_rs/0.40"),
        H("session_id", "s1"),
    };
    struct edge_account acct;
    struct gw_http_req r;
    struct edge_match m;
    struct gw_buf url = GW_BUF_INIT;
    struct curl_slist *l;

    (void)state;
    memset(&acct, 0, sizeof(acct));
    acct.credential = (char *)"sk-upstream-openai";
    acct.kind = (char *)"openai_compatible";
    mkreq(&r, "POST", "/gw/v1/chat/completions", "x=1", hs, sizeof(hs) / sizeof(hs[0]), "{}");
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_openai);
    l = edge_provider_openai.upstream_headers(&r, &acct);
    assert_true(slist_has(l, "authorization: Bearer sk-upstream-openai"));
    assert_false(slist_has(l, "Authorization: Bearer aicp_gateway_key"));
    assert_true(slist_has(l, "OpenAI-Beta: responses=v1"));
    assert_true(slist_has(l, "session_id: s1"));
    assert_true(slist_has(l, "User-Agent: codex_cli_rs/0.40"));
    assert_false(slist_has_name(l, "connection"));
    assert_false(slist_has_name(l, "accept-encoding"));
    assert_false(slist_has_name(l, "anthropic-version"));
    curl_slist_free_all(l);

    /* Base URLs with and without their own /v1; the query survives. */
    GW_PASS(edge_provider_openai.upstream_url("https://api.example.com/", &r, &m, &url));
    gw_buf_append(&url, "", 1);
    assert_string_equal(url.data, "https://api.example.com/v1/chat/completions?x=1");
    gw_buf_reset(&url);
    GW_PASS(edge_provider_openai.upstream_url("https://api.deepseek.com/v1", &r, &m, &url));
    gw_buf_append(&url, "", 1);
    assert_string_equal(url.data, "https://api.deepseek.com/v1/chat/completions?x=1");
    gw_buf_reset(&url);
    GW_FAIL(edge_provider_openai.upstream_url("/", &r, &m, &url), GW_EINVAL);
    gw_buf_fini(&url);
    gw_buf_fini(&r.body);

    /* The rewrite slot only acts on a chat stream that asked for it. */
    {
        struct edge_request_info info;
        struct gw_buf out = GW_BUF_INIT;
        memset(&info, 0, sizeof(info));
        mkreq(&r, "POST", "/v1/chat/completions", NULL, hs, 1, "{\"model\":\"m\"}");
        assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_openai);
        assert_false(edge_provider_openai.rewrite_body(&r, &m, &info, &out));
        info.inject_usage = 1;
        assert_true(edge_provider_openai.rewrite_body(&r, &m, &info, &out));
        gw_buf_append(&out, "", 1);
        assert_string_equal(out.data,
                            "{\"stream_options\":{\"include_usage\":true},\"model\":\"m\"}");
        gw_buf_fini(&out);
        gw_buf_fini(&r.body);
    }
}

/* ---- errors and models --------------------------------------------------------- */

static void
check_error(int status, gw_err err, const char *msg, const char *type, const char *code)
{
    struct gw_buf b = GW_BUF_INIT;
    cJSON *root, *e;
    const char *s;

    edge_provider_openai.error_body(status, err, msg, &b);
    root = gw_json_parse(b.data, b.len, NULL);
    assert_non_null(root);
    assert_int_equal(cJSON_GetArraySize(root), 1);
    e = cJSON_GetObjectItemCaseSensitive(root, "error");
    assert_true(cJSON_IsObject(e));
    GW_PASS(gw_json_get_str(e, "message", &s));
    assert_string_equal(s, msg ? msg : gw_strerror(err));
    GW_PASS(gw_json_get_str(e, "type", &s));
    assert_string_equal(s, type);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "param")));
    if (code) {
        GW_PASS(gw_json_get_str(e, "code", &s));
        assert_string_equal(s, code);
    } else {
        assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "code")));
    }
    cJSON_Delete(root);
    gw_buf_fini(&b);
}

static void
test_errors_and_models(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    const char *ids[] = {"gpt-4o", "o\"dd"};
    cJSON *root;

    (void)state;
    check_error(401, GW_EAUTH, "invalid API key", "invalid_request_error", "invalid_api_key");
    check_error(400, GW_EINVAL, "model: field required", "invalid_request_error", NULL);
    check_error(404, GW_ENOTFOUND, NULL, "invalid_request_error", "not_found");
    check_error(429, GW_EQUOTA, "rate limit: requests per minute", "requests",
                "rate_limit_exceeded");
    check_error(403, GW_EPERM, "no", "invalid_request_error", "permission_denied");
    check_error(503, GW_ENOACCOUNT, "x", "server_error", "service_unavailable");
    check_error(504, GW_ETIMEDOUT, "t", "server_error", "timeout");

    edge_provider_openai.models_body(ids, 2, &b);
    root = gw_json_parse(b.data, b.len, NULL);
    assert_non_null(root);
    const char *s;
    GW_PASS(gw_json_get_str(root, "object", &s));
    assert_string_equal(s, "list");
    cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    assert_int_equal(cJSON_GetArraySize(data), 2);
    GW_PASS(gw_json_get_str(cJSON_GetArrayItem(data, 1), "id", &s));
    assert_string_equal(s, "o\"dd");
    GW_PASS(gw_json_get_str(cJSON_GetArrayItem(data, 0), "object", &s));
    assert_string_equal(s, "model");
    cJSON_Delete(root);
    gw_buf_fini(&b);
    assert_true(edge_provider_openai.n_default_models > 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),      cmocka_unit_test(test_client_key),
        cmocka_unit_test(test_scan_chat),  cmocka_unit_test(test_scan_responses),
        cmocka_unit_test(test_inject),     cmocka_unit_test(test_filter),
        cmocka_unit_test(test_meter_chat), cmocka_unit_test(test_meter_responses),
        cmocka_unit_test(test_upstream),   cmocka_unit_test(test_errors_and_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
