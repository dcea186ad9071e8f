/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the Anthropic dialect adapter: request scan (valid and
 * malformed bodies, session extraction), upstream header filtering and
 * credential swap, usage metering from real event sequences and bodies, and
 * error bodies. */
#include "gw_test.h"

#include <stdio.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_json.h"
#include "provider.h"
#include "provider_anthropic.h"
#include "sse.h"

/* ---- scan_request -------------------------------------------------------- */

static gw_err
scan(const char *body, struct edge_anthropic_request *out, const char **why)
{
    return edge_anthropic_scan_request(body, strlen(body), out, why);
}

static void
test_scan_valid(void **state)
{
    (void)state;
    struct edge_anthropic_request r;
    const char *why = "unset";
    GW_PASS(scan("{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"stream\":true,"
                 "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                 &r, &why));
    assert_null(why);
    assert_string_equal(r.model, "claude-sonnet-4-5");
    assert_int_equal(r.stream, 1);
    assert_int_equal(r.max_tokens, 1024);
    assert_string_equal(r.session, "");

    /* count_tokens: no max_tokens, no stream */
    GW_PASS(scan("  {\"messages\":[],\"model\":\"claude-haiku-4-5\"}\n", &r, &why));
    assert_string_equal(r.model, "claude-haiku-4-5");
    assert_int_equal(r.stream, 0);
    assert_int_equal(r.max_tokens, -1);

    /* explicit nulls count as absent, stream false */
    GW_PASS(scan("{\"model\":\"m\",\"messages\":[],\"stream\":false,\"max_tokens\":null}", &r,
                 NULL));
    assert_int_equal(r.stream, 0);
    assert_int_equal(r.max_tokens, -1);
}

static void
test_scan_session(void **state)
{
    (void)state;
    struct edge_anthropic_request r;
    /* Claude Code's classic user_id */
    GW_PASS(scan("{\"model\":\"m\",\"messages\":[],\"metadata\":{\"user_id\":"
                 "\"user_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                 "_account_5f1b6a2e-1111-2222-3333-444455556666"
                 "_session_9a8b7c6d-aaaa-bbbb-cccc-ddddeeeeffff\"}}",
                 &r, NULL));
    assert_string_equal(r.session, "9a8b7c6d-aaaa-bbbb-cccc-ddddeeeeffff");
    /* no account part */
    GW_PASS(scan("{\"model\":\"m\",\"messages\":[],\"metadata\":{\"user_id\":"
                 "\"user_abc_account__session_s-1\"}}",
                 &r, NULL));
    assert_string_equal(r.session, "s-1");
    /* JSON-encoded user_id */
    GW_PASS(scan("{\"model\":\"m\",\"messages\":[],\"metadata\":{\"user_id\":"
                 "\"{\\\"device_id\\\":\\\"d\\\",\\\"session_id\\\":\\\"sess-json\\\"}\"}}",
                 &r, NULL));
    assert_string_equal(r.session, "sess-json");
    /* any other id as is */
    GW_PASS(scan("{\"model\":\"m\",\"messages\":[],\"metadata\":{\"user_id\":\"alice\"}}", &r,
                 NULL));
    assert_string_equal(r.session, "alice");

    /* too long: SHA-256 hex, stable and distinct */
    char body[1024], first[128];
    char id[300];
    memset(id, 'q', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[],\"metadata\":{\"user_id\":\"%s\"}}",
             id);
    GW_PASS(scan(body, &r, NULL));
    assert_int_equal(strlen(r.session), 64);
    memcpy(first, r.session, sizeof(first));
    GW_PASS(scan(body, &r, NULL));
    assert_string_equal(r.session, first);
    id[0] = 'z';
    snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[],\"metadata\":{\"user_id\":\"%s\"}}",
             id);
    GW_PASS(scan(body, &r, NULL));
    assert_string_not_equal(r.session, first);

    /* header fallback only when the body has none */
    struct gw_http_header hs[] = {
        {{"X-Claude-Code-Session-Id", 24}, {"hdr-session", 11}},
    };
    struct gw_http_req req;
    memset(&req, 0, sizeof(req));
    req.headers = hs;
    req.n_headers = 1;
    GW_PASS(scan("{\"model\":\"m\",\"messages\":[]}", &r, NULL));
    edge_anthropic_session_from_headers(&r, &req);
    assert_string_equal(r.session, "hdr-session");
    GW_PASS(scan("{\"model\":\"m\",\"messages\":[],\"metadata\":{\"user_id\":\"alice\"}}", &r,
                 NULL));
    edge_anthropic_session_from_headers(&r, &req);
    assert_string_equal(r.session, "alice");
}

static void
test_scan_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "{",
        "not json",
        "{\"model\":\"m\",\"messages\":[]} trailing",
        "[1,2]",
        "\"string\"",
        "{\"messages\":[]}",
        "{\"model\":\"\",\"messages\":[]}",
        "{\"model\":42,\"messages\":[]}",
        "{\"model\":null,\"messages\":[]}",
        "{\"model\":\"m\"}",
        "{\"model\":\"m\",\"messages\":null}",
        "{\"model\":\"m\",\"messages\":{}}",
        "{\"model\":\"m\",\"messages\":[],\"stream\":\"yes\"}",
        "{\"model\":\"m\",\"messages\":[],\"max_tokens\":1.5}",
        "{\"model\":\"m\",\"messages\":[],\"max_tokens\":\"100\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct edge_anthropic_request r;
        const char *why = NULL;
        gw_err rv = scan(bad[i], &r, &why);
        if (rv != GW_EINVAL)
            fail_msg("case %zu (%s): want EINVAL, got %s", i, bad[i], gw_err_name(rv));
        assert_non_null(why);
        assert_true(strlen(why) > 0);
        assert_string_equal(r.model, "");
    }
    /* over-long model name */
    char body[512], model[200];
    memset(model, 'm', sizeof(model) - 1);
    model[sizeof(model) - 1] = '\0';
    snprintf(body, sizeof(body), "{\"model\":\"%s\",\"messages\":[]}", model);
    struct edge_anthropic_request r;
    const char *why = NULL;
    GW_FAIL(scan(body, &r, &why), GW_EINVAL);
    assert_non_null(why);
    /* messages missing is named in the reason */
    GW_FAIL(scan("{\"model\":\"m\"}", &r, &why), GW_EINVAL);
    assert_non_null(strstr(why, "messages"));
    GW_FAIL(scan("{\"messages\":[]}", &r, &why), GW_EINVAL);
    assert_non_null(strstr(why, "model"));
}

/* ---- upstream headers ---------------------------------------------------- */

#define H(n, v)                                                                              \
    {                                                                                        \
        {n, sizeof(n) - 1}, { v, sizeof(v) - 1 }                                             \
    }

static size_t
slist_count(const struct curl_slist *l)
{
    size_t n = 0;
    for (; l; l = l->next)
        n++;
    return n;
}

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
test_headers(void **state)
{
    (void)state;
    struct gw_http_header hs[] = {
        H("Host", "gw.example:8080"),
        H("Content-Length", "1234"),
        H("Content-Type", "application/json"),
        H("Connection", "keep-alive, X-Hop"),
        H("X-Hop", "must go"),
        H("Keep-Alive", "timeout=5"),
        H("Authorization", "Bearer client-gateway-key"),
        H("x-api-key", "sk-client-gateway-key"),
        H("X-Goog-Api-Key", "goog"),
        H("Accept-Encoding", "gzip, br"),
        H("Expect", "100-continue"),
        H("TE", "trailers"),
        H("Trailer", "x"),
        H("Transfer-Encoding", "chunked"),
        H("Upgrade", "h2c"),
        H("Proxy-Authorization", "Basic abc"),
        H("Proxy-Connection", "keep-alive"),
        H("anthropic-version", "2023-06-01"),
        H("anthropic-beta", "prompt-caching-2024-07-31,oauth-2025-04-20"),
        H("X-Claude-Code-Session-Id", "abc-123"),
        H("User-Agent", "claude-cli/2.0.0 (external, cli)"),
        H("X-Empty", ""),
        H("accept", "application/json"),
    };
    struct gw_http_req req;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.headers = hs;
    req.n_headers = sizeof(hs) / sizeof(hs[0]);

    struct curl_slist *l = edge_anthropic_upstream_headers(&req, "sk-ant-account-secret", 0);
    assert_true(slist_has(l, "Content-Type: application/json"));
    assert_true(slist_has(l, "anthropic-version: 2023-06-01"));
    assert_true(slist_has(l, "anthropic-beta: prompt-caching-2024-07-31,oauth-2025-04-20"));
    assert_true(slist_has(l, "X-Claude-Code-Session-Id: abc-123"));
    assert_true(slist_has(l, "User-Agent: claude-cli/2.0.0 (external, cli)"));
    assert_true(slist_has(l, "accept: application/json"));
    assert_true(slist_has(l, "X-Empty;"));
    assert_true(slist_has(l, "x-api-key: sk-ant-account-secret"));
    static const char *const gone[] = {
        "host",    "content-length",    "connection", "x-hop",
        "keep-alive", "authorization",  "x-goog-api-key", "accept-encoding",
        "expect",  "te",                "trailer",    "transfer-encoding",
        "upgrade", "proxy-authorization", "proxy-connection",
    };
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        if (slist_has_name(l, gone[i]))
            fail_msg("header %s was forwarded", gone[i]);
    }
    /* the client's key never goes upstream, only the account's */
    for (const struct curl_slist *p = l; p; p = p->next)
        assert_null(strstr(p->data, "client-gateway-key"));
    assert_int_equal(slist_count(l), 8);
    curl_slist_free_all(l);

    /* bearer (OAuth) accounts */
    l = edge_anthropic_upstream_headers(&req, "oauth-access-token", 1);
    assert_true(slist_has(l, "authorization: Bearer oauth-access-token"));
    assert_false(slist_has_name(l, "x-api-key"));
    for (const struct curl_slist *p = l; p; p = p->next)
        assert_null(strstr(p->data, "client-gateway-key"));
    curl_slist_free_all(l);

    /* no anthropic-version from the client: the default is added */
    struct gw_http_header hs2[] = {
        H("content-type", "application/json"),
        H("X-API-KEY", "client"),
    };
    req.headers = hs2;
    req.n_headers = 2;
    l = edge_anthropic_upstream_headers(&req, "acct", 0);
    assert_true(slist_has(l, "anthropic-version: 2023-06-01"));
    assert_true(slist_has(l, "x-api-key: acct"));
    assert_false(slist_has(l, "X-API-KEY: client"));
    assert_int_equal(slist_count(l), 3);
    curl_slist_free_all(l);
}

/* ---- metering ------------------------------------------------------------ */

static void
meter(struct edge_usage *u, const char *event, const char *data)
{
    edge_anthropic_meter_event(u, event, strlen(event), data, strlen(data));
}

static void
test_meter_cache_split(void **state)
{
    (void)state;
    struct edge_usage u;
    memset(&u, 0, sizeof(u));
    meter(&u, "message_start",
          "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\","
          "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\","
          "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{"
          "\"input_tokens\":12,\"cache_creation_input_tokens\":2500,"
          "\"cache_read_input_tokens\":14000,\"cache_creation\":{"
          "\"ephemeral_5m_input_tokens\":500,\"ephemeral_1h_input_tokens\":2000},"
          "\"output_tokens\":1,\"service_tier\":\"standard\"}}}");
    assert_int_equal(u.have_start, 1);
    assert_int_equal(u.have_final, 0);
    assert_int_equal(u.input_tokens, 12);
    assert_int_equal(u.cache_read_tokens, 14000);
    assert_int_equal(u.cache_write_5m_tokens, 500);
    assert_int_equal(u.cache_write_1h_tokens, 2000);
    assert_int_equal(u.output_tokens, 1);
    meter(&u, "content_block_start",
          "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\","
          "\"thinking\":\"\"}}");
    meter(&u, "ping", "{\"type\": \"ping\"}");
    meter(&u, "content_block_delta",
          "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
          "\"text\":\"usage output_tokens 99999\"}}");
    meter(&u, "message_delta",
          "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
          "\"stop_sequence\":null},\"usage\":{\"output_tokens\":503}}");
    assert_int_equal(u.output_tokens, 503);
    assert_int_equal(u.have_final, 0);
    meter(&u, "message_stop", "{\"type\":\"message_stop\"}");
    assert_int_equal(u.have_final, 1);
    assert_int_equal(u.input_tokens, 12);
    assert_int_equal(u.cache_write_5m_tokens, 500);
    assert_int_equal(u.cache_write_1h_tokens, 2000);
    assert_int_equal(u.reasoning_tokens, 0);
}

static void
test_meter_no_split(void **state)
{
    (void)state;
    struct edge_usage u;
    memset(&u, 0, sizeof(u));
    meter(&u, "message_start",
          "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
          "\"role\":\"assistant\",\"content\":[],\"model\":\"claude-3-5-haiku-20241022\","
          "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":2095,"
          "\"cache_creation_input_tokens\":1800,\"cache_read_input_tokens\":0,"
          "\"output_tokens\":503}}}");
    assert_int_equal(u.input_tokens, 2095);
    assert_int_equal(u.cache_write_5m_tokens, 1800);
    assert_int_equal(u.cache_write_1h_tokens, 0);
    assert_int_equal(u.output_tokens, 503);
    /* a smaller cumulative count never lowers the total */
    meter(&u, "message_delta",
          "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},"
          "\"usage\":{\"output_tokens\":400}}");
    assert_int_equal(u.output_tokens, 503);
}

static void
test_meter_delta_repeats_input(void **state)
{
    (void)state;
    struct edge_usage u;
    memset(&u, 0, sizeof(u));
    meter(&u, "message_start",
          "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":0,"
          "\"output_tokens\":0}}}");
    /* newer API versions / compatible providers repeat input and cache
     * counts in message_delta */
    meter(&u, "message_delta",
          "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{"
          "\"input_tokens\":321,\"cache_creation_input_tokens\":64,"
          "\"cache_read_input_tokens\":4096,\"output_tokens\":77,"
          "\"server_tool_use\":{\"web_search_requests\":1}}}");
    assert_int_equal(u.input_tokens, 321);
    assert_int_equal(u.cache_write_5m_tokens, 64);
    assert_int_equal(u.cache_read_tokens, 4096);
    assert_int_equal(u.output_tokens, 77);

    /* a split arriving later redistributes the total */
    meter(&u, "message_delta",
          "{\"type\":\"message_delta\",\"usage\":{\"cache_creation_input_tokens\":64,"
          "\"cache_creation\":{\"ephemeral_5m_input_tokens\":4,"
          "\"ephemeral_1h_input_tokens\":60},\"output_tokens\":78}}");
    assert_int_equal(u.cache_write_5m_tokens, 4);
    assert_int_equal(u.cache_write_1h_tokens, 60);
    assert_int_equal(u.output_tokens, 78);

    /* message_delta alone (no message_start) still counts as a report */
    struct edge_usage v;
    memset(&v, 0, sizeof(v));
    meter(&v, "message_delta", "{\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}");
    assert_int_equal(v.have_start, 1);
    assert_int_equal(v.input_tokens, 5);
}

static void
test_meter_unnamed_and_bad(void **state)
{
    (void)state;
    struct edge_usage u;
    memset(&u, 0, sizeof(u));
    /* unnamed events: the payload type names them */
    meter(&u, "", "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7,"
                  "\"output_tokens\":1}}}");
    assert_int_equal(u.input_tokens, 7);
    meter(&u, "", "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}");
    assert_int_equal(u.output_tokens, 9);
    meter(&u, "", "{\"type\":\"message_stop\"}");
    assert_int_equal(u.have_final, 1);

    struct edge_usage before = u;
    meter(&u, "message_start", "{not json");
    meter(&u, "message_delta", "");
    meter(&u, "message_delta", "[1,2,3]");
    meter(&u, "message_delta", "{\"usage\":\"lots\"}");
    meter(&u, "message_delta", "{\"usage\":{\"output_tokens\":-5,\"input_tokens\":1.5}}");
    meter(&u, "message_delta", "{\"usage\":{\"output_tokens\":\"100000\"}}");
    meter(&u, "error", "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}");
    meter(&u, "weird_future_event", "{\"usage\":{\"output_tokens\":100000}}");
    meter(&u, "", "{\"type\":\"content_block_delta\"}");
    meter(&u, "", "garbage message_delta");
    assert_memory_equal(&u, &before, sizeof(u));
}

struct sse_meter {
    struct edge_usage u;
    int events;
};

static void
sse_meter_cb(void *arg, const char *event, size_t event_len, const char *data, size_t data_len)
{
    struct sse_meter *m = arg;
    m->events++;
    edge_anthropic_meter_event(&m->u, event, event_len, data, data_len);
}

static void
test_meter_through_sse(void **state)
{
    (void)state;
    static const char stream[] =
        "event: message_start\r\n"
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\","
        "\"role\":\"assistant\",\"content\":[],\"model\":\"claude-opus-4-1\",\"usage\":{"
        "\"input_tokens\":10,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":50,"
        "\"output_tokens\":2}}}\r\n\r\n"
        "event: content_block_start\r\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
        "\"text\":\"\"}}\r\n\r\n"
        "event: content_block_delta\r\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
        "\"text\":\"Hi\"}}\r\n\r\n"
        "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n"
        "event: message_delta\r\n"
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
        "\"stop_sequence\":null},\"usage\":{\"output_tokens\":12}}\r\n\r\n"
        "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";
    size_t len = strlen(stream);
    for (size_t step = 1; step <= len; step = step * 3 + 1) {
        struct sse_meter m;
        struct edge_sse p;
        memset(&m, 0, sizeof(m));
        edge_sse_init(&p, 0);
        for (size_t off = 0; off < len; off += step) {
            size_t n = len - off < step ? len - off : step;
            GW_PASS(edge_sse_feed(&p, stream + off, n, sse_meter_cb, &m));
        }
        edge_sse_fini(&p);
        assert_int_equal(m.events, 6);
        assert_int_equal(m.u.input_tokens, 10);
        assert_int_equal(m.u.cache_read_tokens, 50);
        assert_int_equal(m.u.cache_write_5m_tokens, 0);
        assert_int_equal(m.u.output_tokens, 12);
        assert_int_equal(m.u.have_start, 1);
        assert_int_equal(m.u.have_final, 1);
    }
}

static void
test_meter_body(void **state)
{
    (void)state;
    static const char body[] =
        "{\"id\":\"msg_013Zva2CMHLNnXjNJJKqJ2EF\",\"type\":\"message\",\"role\":\"assistant\","
        "\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"text\","
        "\"text\":\"Hi! My name is Claude.\"}],\"stop_reason\":\"end_turn\","
        "\"stop_sequence\":null,\"usage\":{\"input_tokens\":2095,"
        "\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":100,"
        "\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,"
        "\"ephemeral_1h_input_tokens\":300},\"output_tokens\":503,"
        "\"service_tier\":\"standard\"}}";
    struct edge_usage u;
    memset(&u, 0, sizeof(u));
    GW_PASS(edge_anthropic_meter_body(&u, body, strlen(body)));
    assert_int_equal(u.input_tokens, 2095);
    assert_int_equal(u.output_tokens, 503);
    assert_int_equal(u.cache_read_tokens, 100);
    assert_int_equal(u.cache_write_5m_tokens, 0);
    assert_int_equal(u.cache_write_1h_tokens, 300);
    assert_int_equal(u.have_start, 1);
    assert_int_equal(u.have_final, 1);

    static const char no_split[] = "{\"type\":\"message\",\"usage\":{\"input_tokens\":1,"
                                   "\"cache_creation_input_tokens\":33,\"output_tokens\":2}}";
    memset(&u, 0, sizeof(u));
    GW_PASS(edge_anthropic_meter_body(&u, no_split, strlen(no_split)));
    assert_int_equal(u.cache_write_5m_tokens, 33);
    assert_int_equal(u.cache_write_1h_tokens, 0);

    struct edge_usage before = u;
    static const char *const bad[] = {
        "{\"input_tokens\":12}", /* count_tokens answer: no usage */
        "{\"usage\":5}",
        "{\"usage\":{}",
        "[]",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        GW_FAIL(edge_anthropic_meter_body(&u, bad[i], strlen(bad[i])), GW_EINVAL);
    assert_memory_equal(&u, &before, sizeof(u));
}

/* ---- error bodies ------------------------------------------------------- */

static void
test_error_body(void **state)
{
    (void)state;
    struct gw_buf b = GW_BUF_INIT;
    edge_anthropic_error_body(GW_EQUOTA, "budget \"team\" exhausted\n", &b);
    assert_string_equal(b.data, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                                "\"message\":\"budget \\\"team\\\" exhausted\\n\"}}");
    const char *why = NULL;
    cJSON *j = gw_json_parse(b.data, b.len, &why);
    assert_non_null(j);
    cJSON_Delete(j);

    gw_buf_reset(&b);
    edge_anthropic_error_body(GW_EAUTH, NULL, &b);
    j = gw_json_parse(b.data, b.len, &why);
    assert_non_null(j);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    const char *type = NULL, *msg = NULL;
    GW_PASS(gw_json_get_str(err, "type", &type));
    GW_PASS(gw_json_get_str(err, "message", &msg));
    assert_string_equal(type, "authentication_error");
    assert_string_equal(msg, gw_strerror(GW_EAUTH));
    cJSON_Delete(j);

    /* appends, does not overwrite */
    gw_buf_reset(&b);
    gw_buf_append_str(&b, "X");
    edge_anthropic_error_body(GW_ENOACCOUNT, "none", &b);
    assert_int_equal(b.data[0], 'X');
    assert_non_null(strstr(b.data, "overloaded_error"));
    gw_buf_fini(&b);
}

/* ---- the adapter table ---------------------------------------------------- */

static void
mkreq(struct gw_http_req *r, const char *method, const char *path, struct gw_http_header *h,
      size_t nh, const char *body)
{
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->path.p = path;
    r->path.len = strlen(path);
    r->query.p = "";
    r->headers = h;
    r->n_headers = nh;
    if (body)
        gw_buf_append(&r->body, body, strlen(body));
}

static void
test_adapter(void **state)
{
    struct gw_http_header both[] = {H("authorization", "Bearer from-bearer"),
                                    H("x-api-key", " from-x-api-key ")};
    struct gw_http_header bearer[] = {H("authorization", "Bearer from-bearer"),
                                      H("x-claude-code-session-id", "cc-sess")};
    struct gw_http_req r;
    struct edge_match m;
    struct edge_request_info in, in2;
    struct edge_account acct;
    struct gw_str k;
    struct curl_slist *l;
    struct gw_buf b = GW_BUF_INIT;
    const char *ids[] = {"claude-a", "claude-b"};
    cJSON *root;
    const char *s;

    (void)state;
    mkreq(&r, "POST", "/api/v1/messages/count_tokens", both, 2, NULL);
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_anthropic);
    assert_int_equal(m.op, EDGE_OP_COUNT_TOKENS);
    assert_int_equal(m.api_off, 4);
    assert_true(edge_provider_anthropic.client_key(&r, &k));
    assert_int_equal(k.len, 14);
    assert_memory_equal(k.p, "from-x-api-key", 14);
    mkreq(&r, "POST", "/v1/messages", bearer, 2, NULL);
    assert_true(edge_provider_anthropic.client_key(&r, &k));
    assert_memory_equal(k.p, "from-bearer", 11);

    /* Session: metadata.user_id, else the header, else the prompt prefix. */
    mkreq(&r, "POST", "/v1/messages", bearer, 2,
          "{\"model\":\"m\",\"messages\":[],\"metadata\":{\"user_id\":\"u_session_abc\"}}");
    assert_ptr_equal(edge_provider_match(&r, &m), &edge_provider_anthropic);
    GW_PASS(edge_provider_anthropic.scan_request(&r, &m, &in, NULL));
    assert_string_equal(in.session, "abc");
    assert_int_equal(in.est_input_tokens, (r.body.len + 3) / 4);
    gw_buf_fini(&r.body);
    mkreq(&r, "POST", "/v1/messages", bearer, 2, "{\"model\":\"m\",\"messages\":[]}");
    GW_PASS(edge_provider_anthropic.scan_request(&r, &m, &in, NULL));
    assert_string_equal(in.session, "cc-sess");
    gw_buf_fini(&r.body);
    mkreq(&r, "POST", "/v1/messages", both, 2,
          "{\"model\":\"m\",\"system\":\"S\",\"stream\":true,\"messages\":[{\"role\":"
          "\"user\",\"content\":\"A\"},{\"role\":\"user\",\"content\":\"B\"}]}");
    GW_PASS(edge_provider_anthropic.scan_request(&r, &m, &in, NULL));
    assert_int_equal(in.stream, 1);
    assert_memory_equal(in.session, "p:", 2);
    gw_buf_fini(&r.body);
    mkreq(&r, "POST", "/v1/messages", both, 2,
          "{\"model\":\"m\",\"system\":\"S\",\"messages\":[{\"role\":\"user\","
          "\"content\":\"A\"},{\"role\":\"user\",\"content\":\"C\"}]}");
    GW_PASS(edge_provider_anthropic.scan_request(&r, &m, &in2, NULL));
    assert_string_equal(in.session, in2.session);
    gw_buf_fini(&r.body);

    /* Upstream credential: x-api-key, or Bearer for claude_oauth. */
    memset(&acct, 0, sizeof(acct));
    acct.credential = (char *)"sk-ant-up";
    acct.kind = (char *)"anthropic";
    l = edge_provider_anthropic.upstream_headers(&r, &acct);
    assert_true(slist_has(l, "x-api-key: sk-ant-up"));
    assert_false(slist_has_name(l, "authorization"));
    assert_true(slist_has(l, "anthropic-version: 2023-06-01"));
    curl_slist_free_all(l);
    acct.kind = (char *)"claude_oauth";
    l = edge_provider_anthropic.upstream_headers(&r, &acct);
    assert_true(slist_has(l, "authorization: Bearer sk-ant-up"));
    assert_false(slist_has_name(l, "x-api-key"));
    curl_slist_free_all(l);

    edge_provider_anthropic.models_body(ids, 2, &b);
    root = gw_json_parse(b.data, b.len, NULL);
    assert_non_null(root);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "data")), 2);
    GW_PASS(gw_json_get_str(root, "first_id", &s));
    assert_string_equal(s, "claude-a");
    GW_PASS(gw_json_get_str(root, "last_id", &s));
    assert_string_equal(s, "claude-b");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(root, "has_more")));
    GW_PASS(gw_json_get_str(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "data"), 0),
                            "type", &s));
    assert_string_equal(s, "model");
    cJSON_Delete(root);
    gw_buf_reset(&b);
    edge_provider_anthropic.models_body(NULL, 0, &b);
    gw_buf_append(&b, "", 1);
    assert_string_equal(b.data, "{\"data\":[],\"has_more\":false,\"first_id\":null,"
                                "\"last_id\":null}");
    gw_buf_reset(&b);
    edge_provider_anthropic.error_body(429, GW_EQUOTA, "slow down", &b);
    gw_buf_append(&b, "", 1);
    assert_string_equal(b.data, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                                "\"message\":\"slow down\"}}");
    gw_buf_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_valid),
        cmocka_unit_test(test_scan_session),
        cmocka_unit_test(test_scan_malformed),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_meter_cache_split),
        cmocka_unit_test(test_meter_no_split),
        cmocka_unit_test(test_meter_delta_repeats_input),
        cmocka_unit_test(test_meter_unnamed_and_bad),
        cmocka_unit_test(test_meter_through_sse),
        cmocka_unit_test(test_meter_body),
        cmocka_unit_test(test_error_body),
        cmocka_unit_test(test_adapter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
