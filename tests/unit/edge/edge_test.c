/* SPDX-License-Identifier: Apache-2.0 */
/* The whole edge in-process: a REP socket thread plays the hub (Hello,
 * snapshot with keys, groups and accounts, usage batches with account
 * events), a gw_http server on its own loop thread plays the provider (its
 * behaviour chosen by the first path segment of each account's base URL),
 * and real HTTP clients (libcurl easy, raw sockets) talk to the edge on
 * loopback. Checks relayed bytes, credential swap, query strings, usage
 * records, every error status, client aborts, first-byte timeouts,
 * backpressure on a large response, failover (5xx, 429 with cooldown, 529,
 * 401, connect refused, all failing, max attempts, full accounts, no
 * failover after the first byte), per-key limits and model allow-lists,
 * the OpenAI include_usage insertion and strip, Gemini's key= removal and
 * the local model lists. */
#include "gw_test.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <curl/curl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "edge.h"
#include "edge_config.h"
#include "gw_buf.h"
#include "gw_crypto.h"
#include "gw_http.h"
#include "gw_wire.h"

#define WAIT_MS 15000
#define HUB_URL "inproc://edge-test-hub"
#define CREDENTIAL "sk-ant-upstream-secret-0123456789"
#define GOOD_KEY "aicp_grp_alice_0123456789abcdef"
#define BIG_BYTES ((size_t)48 << 20)
#define MAX_RECS 2048
#define MAX_EVENTS 64
#define MAX_TARGETS 2048

static uv_mutex_t mu; /* guards the hub and upstream observations */
static uv_cond_t cv;

/* ------------------------------------------------------------ fake hub */

static struct {
    nng_socket sock;
    uv_thread_t thr;
    int stop;
    int upstream_port, dead_port;
    uint64_t applied_seq;
    int fetches;
    struct gw_usage_record recs[MAX_RECS];
    size_t n_recs;
    struct gw_account_event events[MAX_EVENTS];
    size_t n_events;
} hub;

static void
wire_key(struct gw_wire_key *k, uint64_t id, const char *raw, uint64_t group, int enabled,
         int64_t expires)
{
    k->id = id;
    gw_sha256(raw, strlen(raw), k->key_hash);
    k->group_id = group;
    k->enabled = enabled;
    k->expires_at = expires;
}

static char **
wire_strs(const char *const *v, size_t n)
{
    char **out = gw_xcalloc(n, sizeof(*out));

    for (size_t i = 0; i < n; i++)
        out[i] = gw_xstrdup(v[i]);
    return out;
}

/* An account on the fake upstream: base URL path `seg` ("/up/", "/s500/",
 * ...; "dead" for a port where nothing listens). */
static void
wire_account(struct gw_wire_account *a, uint64_t id, const char *kind, const char *seg,
             int32_t priority)
{
    char url[128];

    if (strcmp(seg, "dead") == 0)
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", hub.dead_port);
    else
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", hub.upstream_port, seg);
    a->id = id;
    a->name = gw_xstrdup("acct");
    a->kind = gw_xstrdup(kind);
    a->base_url = gw_xstrdup(url);
    a->credential = (uint8_t *)gw_xstrdup(CREDENTIAL);
    a->credential_len = strlen(CREDENTIAL);
    a->priority = priority;
    a->weight = 1;
    a->enabled = 1;
}

/* Groups: 1 main (10 anthropic "/up/", 11 mock "/mock/" at a lower
 * priority with a model list), 2 empty, 3 dead upstream, 4 a 429 to relay,
 * 5 a provider that never answers, 6..14 failover scenarios, one group per
 * scenario so cooldowns of one test do not leak into another. */
static const struct {
    uint64_t id, group;
    const char *kind, *seg;
    int32_t priority;
    uint32_t max_concurrency;
} ACCOUNTS[] = {
    {10, 1, "anthropic", "/up/", 0, 0},  {11, 1, "mock", "/mock/", 5, 0},
    {30, 3, "anthropic", "dead", 0, 0},  {40, 4, "anthropic", "/up/", 0, 0},
    {50, 5, "anthropic", "/up/", 0, 0},  {60, 6, "anthropic", "/s500/", 0, 0},
    {61, 6, "anthropic", "/up/", 1, 0},  {70, 7, "anthropic", "/s429/", 0, 0},
    {71, 7, "anthropic", "/up/", 1, 0},  {80, 8, "anthropic", "dead", 0, 0},
    {81, 8, "anthropic", "/up/", 1, 0},  {90, 9, "anthropic", "/s429/", 0, 0},
    {91, 9, "anthropic", "/s500b/", 1, 0}, {100, 10, "anthropic", "/s503/", 0, 0},
    {101, 10, "anthropic", "/s503/", 1, 0}, {102, 10, "anthropic", "/s503/", 2, 0},
    {110, 11, "anthropic", "/cut/", 0, 0}, {111, 11, "anthropic", "/up/", 1, 0},
    {120, 12, "anthropic", "/s401/", 0, 0}, {121, 12, "anthropic", "/up/", 1, 0},
    {130, 13, "anthropic", "/s529/", 0, 0}, {131, 13, "anthropic", "/up/", 1, 0},
    {140, 14, "anthropic", "/up/", 0, 1}, {141, 14, "anthropic", "/up/", 1, 0},
};
#define N_ACCOUNTS (sizeof(ACCOUNTS) / sizeof(ACCOUNTS[0]))
#define N_GROUPS 15

static const struct {
    uint64_t id, group;
    const char *raw;
    int enabled;
    int64_t expires;
    uint32_t rpm, tpm, conc;
    const char *allowed; /* one allowed model pattern, or NULL */
} KEYS[] = {
    {1, 1, GOOD_KEY, 1, 0, 0, 0, 0, NULL},
    {2, 1, "aicp_disabled", 0, 0, 0, 0, 0, NULL},
    {3, 2, "aicp_empty_group", 1, 0, 0, 0, 0, NULL},
    {4, 3, "aicp_dead_upstream", 1, 0, 0, 0, 0, NULL},
    {5, 1, "aicp_expired", 1, 1000, 0, 0, 0, NULL},
    {6, 4, "aicp_g429", 1, 0, 0, 0, 0, NULL},
    {7, 5, "aicp_gslow", 1, 0, 0, 0, 0, NULL},
    {8, 6, "aicp_fo500", 1, 0, 0, 0, 0, NULL},
    {9, 7, "aicp_fo429", 1, 0, 0, 0, 0, NULL},
    {10, 8, "aicp_foconn", 1, 0, 0, 0, 0, NULL},
    {11, 9, "aicp_foall", 1, 0, 0, 0, 0, NULL},
    {12, 10, "aicp_fomax", 1, 0, 0, 0, 0, NULL},
    {13, 11, "aicp_focut", 1, 0, 0, 0, 0, NULL},
    {14, 12, "aicp_fo401", 1, 0, 0, 0, 0, NULL},
    {15, 13, "aicp_fo529", 1, 0, 0, 0, 0, NULL},
    {16, 14, "aicp_fobusy", 1, 0, 0, 0, 0, NULL},
    {17, 1, "aicp_rpm2", 1, 0, 2, 0, 0, NULL},
    {18, 1, "aicp_conc1", 1, 0, 0, 0, 1, NULL},
    {19, 1, "aicp_tpm", 1, 0, 0, 30, 0, NULL},
    {20, 1, "aicp_only_ok", 1, 0, 0, 0, 0, "claude-ok*"},
};
#define N_KEYS (sizeof(KEYS) / sizeof(KEYS[0]))

static void
hub_fill_snapshot(struct gw_msg *out, uint64_t have)
{
    struct gw_wire_snapshot *w = &out->u.snapshot;
    static const char *const mock_models[] = {"gpt-test", "gemini-test", "claude-test"};
    size_t nb = 0;

    out->type = GW_MSG_SNAPSHOT;
    w->version = 5;
    if (have >= 5) {
        w->unchanged = 1;
        return;
    }
    w->n_keys = N_KEYS;
    w->keys = gw_xcalloc(N_KEYS, sizeof(*w->keys));
    for (size_t i = 0; i < N_KEYS; i++) {
        wire_key(&w->keys[i], KEYS[i].id, KEYS[i].raw, KEYS[i].group, KEYS[i].enabled,
                 KEYS[i].expires);
        w->keys[i].rpm_limit = KEYS[i].rpm;
        w->keys[i].tpm_limit = KEYS[i].tpm;
        w->keys[i].concurrency_limit = KEYS[i].conc;
        if (KEYS[i].allowed) {
            w->keys[i].allowed_models = wire_strs(&KEYS[i].allowed, 1);
            w->keys[i].n_allowed_models = 1;
        }
    }
    w->n_groups = N_GROUPS;
    w->groups = gw_xcalloc(N_GROUPS, sizeof(*w->groups));
    for (size_t i = 0; i < N_GROUPS; i++)
        w->groups[i].id = i + 1;
    w->n_accounts = N_ACCOUNTS;
    w->accounts = gw_xcalloc(N_ACCOUNTS, sizeof(*w->accounts));
    w->bindings = gw_xcalloc(N_ACCOUNTS, sizeof(*w->bindings));
    for (size_t i = 0; i < N_ACCOUNTS; i++) {
        wire_account(&w->accounts[i], ACCOUNTS[i].id, ACCOUNTS[i].kind, ACCOUNTS[i].seg,
                     ACCOUNTS[i].priority);
        w->accounts[i].max_concurrency = ACCOUNTS[i].max_concurrency;
        if (ACCOUNTS[i].id == 11) {
            w->accounts[i].models = wire_strs(mock_models, 3);
            w->accounts[i].n_models = 3;
        }
        w->bindings[nb++] = (struct gw_wire_binding){ACCOUNTS[i].group, ACCOUNTS[i].id};
    }
    w->n_bindings = nb;
}

static void
hub_thread(void *arg)
{
    (void)arg;
    for (;;) {
        char *buf = NULL;
        size_t len = 0;
        struct gw_msg in, out;
        struct gw_buf enc = GW_BUF_INIT;
        int rv, stop;

        uv_mutex_lock(&mu);
        stop = hub.stop;
        uv_mutex_unlock(&mu);
        if (stop)
            break;
        rv = nng_recv(hub.sock, &buf, &len, NNG_FLAG_ALLOC);
        if (rv == NNG_ETIMEDOUT)
            continue;
        if (rv != 0)
            break;
        memset(&out, 0, sizeof(out));
        rv = gw_wire_decode(buf, len, 1 << 20, &in);
        nng_free(buf, len);
        if (rv != GW_OK)
            continue;
        uv_mutex_lock(&mu);
        switch (in.type) {
        case GW_MSG_HELLO:
            assert_string_equal(in.u.hello.edge_id, "edge-t");
            out.type = GW_MSG_HELLO_REPLY;
            out.u.hello_reply.last_usage_seq = hub.applied_seq;
            break;
        case GW_MSG_FETCH_SNAPSHOT:
            hub.fetches++;
            hub_fill_snapshot(&out, in.u.fetch_snapshot.have_version);
            break;
        case GW_MSG_USAGE_BATCH: {
            const struct gw_wire_usage_batch *b = &in.u.usage_batch;
            if (b->seq == hub.applied_seq + 1) {
                for (size_t i = 0; i < b->n_records && hub.n_recs < MAX_RECS; i++)
                    hub.recs[hub.n_recs++] = b->records[i];
                for (size_t i = 0; i < b->n_account_events && hub.n_events < MAX_EVENTS; i++)
                    hub.events[hub.n_events++] = b->account_events[i];
                hub.applied_seq = b->seq;
            }
            out.type = GW_MSG_USAGE_ACK;
            out.u.usage_ack.seq = b->seq;
            break;
        }
        default:
            gw_msg_set_error(&out, GW_EPROTO, "unexpected");
            break;
        }
        uv_cond_broadcast(&cv);
        uv_mutex_unlock(&mu);
        assert_int_equal(gw_wire_encode(&out, &enc), GW_OK);
        (void)nng_send(hub.sock, enc.data, enc.len, 0);
        gw_buf_fini(&enc);
        gw_msg_fini(&in);
        gw_msg_fini(&out);
    }
}

/* ------------------------------------------------------------ fake provider */

static const char *const SSE_SCRIPT[] = {
    "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
    "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-test\",\"content\":[],"
    "\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":3,"
    "\"cache_creation_input_tokens\":0,\"output_tokens\":1}}}\r\n\r\n",
    "event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,"
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\nevent: content_bl",
    "ock_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
    "\"text_delta\",\"text\":\"Hello\"}}\r\n\r\n",
    "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n"
    "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"end_turn\"},\"usage\":{\"output_tokens\":7}}\r\n\r\n",
    "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n",
};

static const char JSON_REPLY[] =
    "{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-test\","
    "\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}],\"stop_reason\":\"end_turn\","
    "\"usage\":{\"input_tokens\":12,\"output_tokens\":5,\"cache_read_input_tokens\":2,"
    "\"cache_creation_input_tokens\":4,\"cache_creation\":{\"ephemeral_5m_input_tokens\":1,"
    "\"ephemeral_1h_input_tokens\":3}}}";

static struct {
    uv_loop_t loop;
    uv_thread_t thr;
    uv_async_t stop_async;
    struct gw_http_server *srv;
    int port;
    /* observations, under mu */
    int n_reqs;
    char target[512];
    char method[16];
    struct gw_buf headers; /* "name: value\n" of the last request */
    struct gw_buf body;    /* of the last request */
    int aborts;
    int blocked; /* big response had to wait for the edge to drain */
    int big_done;
    char targets[MAX_TARGETS][96]; /* every request target, in order */
    int n_targets;
} up;

/* OpenAI chat stream of the fake: two chunks, then (when asked for) the
 * usage-only chunk, then [DONE]. */
static const char OAI_CHUNKS[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
static const char OAI_USAGE[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":"
    "{\"prompt_tokens\":40,\"completion_tokens\":9,\"total_tokens\":49,"
    "\"prompt_tokens_details\":{\"cached_tokens\":8},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":3}}}\n\n";
static const char OAI_DONE[] = "data: [DONE]\n\n";
static const char GEMINI_REPLY[] =
    "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hi\"}]},"
    "\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":21,"
    "\"cachedContentTokenCount\":5,\"candidatesTokenCount\":4,\"thoughtsTokenCount\":6}}";

/* Requests whose target starts with `prefix`. */
static int
targets_with(const char *prefix)
{
    int n = 0;

    uv_mutex_lock(&mu);
    for (int i = 0; i < up.n_targets && i < MAX_TARGETS; i++)
        n += strncmp(up.targets[i], prefix, strlen(prefix)) == 0;
    uv_mutex_unlock(&mu);
    return n;
}

static int
path_starts(const struct gw_http_req *req, const char *prefix)
{
    size_t n = strlen(prefix);

    return req->path.len >= n && memcmp(req->path.p, prefix, n) == 0;
}

/* The failure segments: an error status in Anthropic's format naming the
 * segment, so a test can tell which account's answer was relayed. */
static int
up_fail_segment(struct gw_http_req *req)
{
    static const struct {
        const char *seg;
        int status;
    } fails[] = {
        {"/s500/", 500}, {"/s500b/", 500}, {"/s503/", 503},
        {"/s429/", 429}, {"/s401/", 401},  {"/s529/", 529},
    };
    char body[160];

    for (size_t i = 0; i < sizeof(fails) / sizeof(fails[0]); i++) {
        if (!path_starts(req, fails[i].seg))
            continue;
        snprintf(body, sizeof(body),
                 "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"boom %s\"}}",
                 fails[i].seg);
        if (fails[i].status == 429)
            gw_http_add_header(req, "retry-after", "30");
        gw_http_add_header(req, "request-id", fails[i].seg);
        gw_http_respond(req, fails[i].status, "application/json", body, strlen(body));
        return 1;
    }
    return 0;
}

/* The "/mock/" account: OpenAI chat and Gemini generateContent. */
static int
up_mock(struct gw_http_req *req, const char *body)
{
    if (!path_starts(req, "/mock/"))
        return 0;
    if (req->path.len > 17 && memcmp(req->path.p + req->path.len - 17, "/chat/completions", 17) == 0) {
        if (!strstr(body, "\"stream\":true")) {
            static const char j[] = "{\"id\":\"c2\",\"object\":\"chat.completion\",\"choices\":[],"
                                    "\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2}}";
            gw_http_respond(req, 200, "application/json", j, strlen(j));
            return 1;
        }
        assert_int_equal(gw_http_start(req, 200, "text/event-stream"), GW_OK);
        assert_int_equal(gw_http_write(req, OAI_CHUNKS, strlen(OAI_CHUNKS)), GW_OK);
        if (strstr(body, "\"include_usage\":true"))
            assert_int_equal(gw_http_write(req, OAI_USAGE, strlen(OAI_USAGE)), GW_OK);
        assert_int_equal(gw_http_write(req, OAI_DONE, strlen(OAI_DONE)), GW_OK);
        gw_http_end(req);
        return 1;
    }
    gw_http_respond(req, 200, "application/json", GEMINI_REPLY, strlen(GEMINI_REPLY));
    return 1;
}

struct big_state {
    size_t sent;
};

static char
big_byte(size_t i)
{
    return (char)('A' + (i % 23) + ((i >> 16) & 1));
}

static void up_big_pump(struct gw_http_req *req, void *arg);

static void
up_on_abort(struct gw_http_req *req, void *arg)
{
    uv_mutex_lock(&mu);
    up.aborts++;
    uv_cond_broadcast(&cv);
    uv_mutex_unlock(&mu);
    free(arg);
    gw_http_abandon(req);
}

static void
up_big_pump(struct gw_http_req *req, void *arg)
{
    struct big_state *st = arg;
    char chunk[65536];

    while (st->sent < BIG_BYTES) {
        size_t n = BIG_BYTES - st->sent < sizeof(chunk) ? BIG_BYTES - st->sent : sizeof(chunk);
        if (!gw_http_writable(req)) {
            uv_mutex_lock(&mu);
            up.blocked++;
            uv_cond_broadcast(&cv);
            uv_mutex_unlock(&mu);
            return; /* the drain callback calls us again */
        }
        for (size_t i = 0; i < n; i++)
            chunk[i] = big_byte(st->sent + i);
        if (gw_http_write(req, chunk, n) != GW_OK)
            return; /* aborted: the abort callback finishes */
        st->sent += n;
    }
    gw_http_set_abort_cb(req, NULL, NULL);
    free(st);
    gw_http_end(req);
    uv_mutex_lock(&mu);
    up.big_done++;
    uv_cond_broadcast(&cv);
    uv_mutex_unlock(&mu);
}

static void
up_on_request(struct gw_http_req *req, void *arg)
{
    const char *body = req->body.data ? req->body.data : "";
    size_t i;

    (void)arg;
    uv_mutex_lock(&mu);
    up.n_reqs++;
    snprintf(up.target, sizeof(up.target), "%.*s", (int)req->target.len, req->target.p);
    snprintf(up.method, sizeof(up.method), "%s", req->method);
    gw_buf_reset(&up.headers);
    for (i = 0; i < req->n_headers; i++)
        gw_buf_appendf(&up.headers, "%.*s: %.*s\n", (int)req->headers[i].name.len,
                       req->headers[i].name.p, (int)req->headers[i].value.len,
                       req->headers[i].value.p);
    gw_buf_reset(&up.body);
    gw_buf_append(&up.body, body, req->body.len);
    if (up.n_targets < MAX_TARGETS)
        snprintf(up.targets[up.n_targets++], sizeof(up.targets[0]), "%.*s",
                 (int)req->target.len, req->target.p);
    uv_cond_broadcast(&cv);
    uv_mutex_unlock(&mu);

    if (up_fail_segment(req) || up_mock(req, body))
        return;
    if (path_starts(req, "/cut/")) {
        /* One event, then the connection drops without the last chunk. */
        assert_int_equal(gw_http_start(req, 200, "text/event-stream"), GW_OK);
        assert_int_equal(gw_http_write(req, SSE_SCRIPT[0], strlen(SSE_SCRIPT[0])), GW_OK);
        gw_http_abandon(req);
        return;
    }

    if (strstr(body, "\"nohead\"")) {
        /* Never answers: the edge's first-byte timeout must fire. */
        gw_http_set_abort_cb(req, up_on_abort, NULL);
        return;
    }
    gw_http_add_header(req, "request-id", "req_upstream_1");
    gw_http_add_header(req, "anthropic-ratelimit-requests-remaining", "99");
    gw_http_add_header(req, "x-internal-upstream", "do-not-relay");
    if (req->path.len >= 13 && memcmp(req->path.p + req->path.len - 13, "/count_tokens", 13) == 0) {
        static const char ct[] = "{\"input_tokens\":42}";
        gw_http_respond(req, 200, "application/json", ct, strlen(ct));
        return;
    }
    if (strstr(body, "\"big\"")) {
        struct big_state *st = gw_xcalloc(1, sizeof(*st));
        gw_http_set_abort_cb(req, up_on_abort, st);
        gw_http_set_drain_cb(req, up_big_pump, st);
        assert_int_equal(gw_http_start(req, 200, "application/octet-stream"), GW_OK);
        up_big_pump(req, st);
        return;
    }
    if (strstr(body, "\"stream\":true")) {
        assert_int_equal(gw_http_start(req, 200, "text/event-stream; charset=utf-8"), GW_OK);
        if (strstr(body, "\"hang\"")) {
            /* One event, then silence until the edge goes away. */
            gw_http_set_abort_cb(req, up_on_abort, NULL);
            assert_int_equal(gw_http_write(req, SSE_SCRIPT[0], strlen(SSE_SCRIPT[0])), GW_OK);
            return;
        }
        for (i = 0; i < sizeof(SSE_SCRIPT) / sizeof(SSE_SCRIPT[0]); i++)
            assert_int_equal(gw_http_write(req, SSE_SCRIPT[i], strlen(SSE_SCRIPT[i])), GW_OK);
        gw_http_end(req);
        return;
    }
    if (strstr(body, "\"fail429\"")) {
        static const char e429[] =
            "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow\"}}";
        gw_http_add_header(req, "retry-after", "7");
        gw_http_respond(req, 429, "application/json", e429, strlen(e429));
        return;
    }
    gw_http_respond(req, 200, "application/json", JSON_REPLY, strlen(JSON_REPLY));
}

static void
up_closed(void *arg)
{
    (void)arg;
    uv_close((uv_handle_t *)&up.stop_async, NULL);
}

static void
up_stop_cb(uv_async_t *a)
{
    (void)a;
    gw_http_server_close(up.srv, up_closed, NULL);
}

static void
up_thread(void *arg)
{
    (void)arg;
    uv_run(&up.loop, UV_RUN_DEFAULT);
}

static void
up_start(void)
{
    struct gw_http_limits lim;

    assert_int_equal(uv_loop_init(&up.loop), 0);
    assert_int_equal(uv_async_init(&up.loop, &up.stop_async, up_stop_cb), 0);
    gw_http_limits_default(&lim);
    GW_PASS(gw_http_server_new(&up.loop, &lim, up_on_request, NULL, &up.srv));
    GW_PASS(gw_http_server_listen(up.srv, "127.0.0.1:0", 0, &up.port));
    assert_int_equal(uv_thread_create(&up.thr, up_thread, NULL), 0);
}

static void
up_stop(void)
{
    uv_async_send(&up.stop_async);
    uv_thread_join(&up.thr);
    assert_int_equal(uv_loop_close(&up.loop), 0);
    gw_buf_fini(&up.headers);
    gw_buf_fini(&up.body);
}

/* ------------------------------------------------------------ clients */

struct resp {
    long status;
    struct gw_buf body;
    struct gw_buf headers;
};

static size_t
resp_write(char *p, size_t size, size_t n, void *arg)
{
    gw_buf_append(arg, p, size * n);
    return size * n;
}

static void
resp_fini(struct resp *r)
{
    gw_buf_fini(&r->body);
    gw_buf_fini(&r->headers);
}

/* Value of a response header (case-insensitive name) into out; 1 if found. */
static int
resp_header(const struct resp *r, const char *name, char *out, size_t cap)
{
    const char *p = r->headers.data;
    size_t n = strlen(name);

    while (p && *p) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(len - (size_t)(v - p)), v);
            return 1;
        }
        p = eol ? eol + 2 : p + len;
    }
    return 0;
}

static int edge_port;

static void
http_post(const char *path, const char *const *headers, const char *body, size_t body_len,
          struct resp *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    char url[512];

    memset(r, 0, sizeof(*r));
    assert_non_null(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", edge_port, path);
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)WAIT_MS);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, resp_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, resp_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
}

static void
http_get(const char *path, struct resp *r)
{
    CURL *c = curl_easy_init();
    char url[512];

    memset(r, 0, sizeof(*r));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", edge_port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)WAIT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, resp_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, resp_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
}

static int
raw_connect(int rcvbuf)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)edge_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void
raw_send_post(int fd, const char *path, const char *key, const char *body)
{
    struct gw_buf b = GW_BUF_INIT;
    size_t off = 0;

    gw_buf_appendf(&b,
                   "POST %s HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\nContent-Type: "
                   "application/json\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                   path, key, strlen(body), body);
    while (off < b.len) {
        ssize_t n = write(fd, b.data + off, b.len - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    gw_buf_fini(&b);
}

/* Reads until `needle` shows up in what was received (or EOF / deadline). */
static int
raw_read_until(int fd, struct gw_buf *got, const char *needle)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_MS * 1000000u;
    char buf[65536];

    while (got->data == NULL || strstr(got->data, needle) == NULL) {
        struct pollfd p = {fd, POLLIN, 0};
        uint64_t now = uv_hrtime();
        if (now >= deadline)
            return 0;
        if (poll(&p, 1, (int)((deadline - now) / 1000000u) + 1) <= 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            return 0;
        gw_buf_append(got, buf, (size_t)n);
    }
    return 1;
}

/* Decodes a chunked body in place; returns 0 on a malformed one. */
static int
dechunk(const char *p, size_t len, struct gw_buf *out)
{
    const char *end = p + len;

    for (;;) {
        char *e;
        unsigned long n = strtoul(p, &e, 16);
        if (e == p || e + 2 > end || e[0] != '\r' || e[1] != '\n')
            return 0;
        p = e + 2;
        if (n == 0)
            return 1;
        if ((size_t)(end - p) < n + 2)
            return 0;
        gw_buf_append(out, p, n);
        p += n + 2;
    }
}

/* ------------------------------------------------------------ waits */

static const struct gw_usage_record *
find_record(const char *rid)
{
    for (size_t i = 0; i < hub.n_recs; i++)
        if (strcmp(hub.recs[i].request_id, rid) == 0)
            return &hub.recs[i];
    return NULL;
}

/* Waits for the usage record of request `rid` and copies it out. */
static void
wait_record(const char *rid, struct gw_usage_record *out)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_MS * 1000000u;
    const struct gw_usage_record *r;

    uv_mutex_lock(&mu);
    while ((r = find_record(rid)) == NULL) {
        uint64_t now = uv_hrtime();
        if (now >= deadline)
            break;
        (void)uv_cond_timedwait(&cv, &mu, deadline - now);
    }
    if (r)
        *out = *r;
    uv_mutex_unlock(&mu);
    if (r == NULL)
        fail_msg("no usage record for %s", rid);
}

static size_t
record_count(void)
{
    size_t n;

    uv_mutex_lock(&mu);
    n = hub.n_recs;
    uv_mutex_unlock(&mu);
    return n;
}

static int
wait_int_at_least(const int *v, int want)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_MS * 1000000u;
    int ok;

    uv_mutex_lock(&mu);
    while (!(ok = *v >= want)) {
        uint64_t now = uv_hrtime();
        if (now >= deadline)
            break;
        (void)uv_cond_timedwait(&cv, &mu, deadline - now);
    }
    uv_mutex_unlock(&mu);
    return ok;
}

/* ------------------------------------------------------------ fixture */

static struct edge_config cfg;
static struct edge *edge;

/* Waits until the edge counter at `offset` in struct edge_stats reaches
 * `want`, re-reading it in short slices until the deadline. */
static int
wait_edge_stat(size_t offset, uint64_t want)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_MS * 1000000u;
    struct edge_stats st;

    for (;;) {
        edge_get_stats(edge, &st);
        if (*(const uint64_t *)(const void *)((const char *)&st + offset) >= want)
            return 1;
        if (uv_hrtime() >= deadline)
            return 0;
        uv_mutex_lock(&mu);
        (void)uv_cond_timedwait(&cv, &mu, 5 * 1000000u);
        uv_mutex_unlock(&mu);
    }
}

static int
free_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd); /* nothing listens there now: connections are refused */
    return ntohs(sa.sin_port);
}

static void
set_str(char **field, const char *v)
{
    free(*field);
    *field = gw_xstrdup(v);
}

static int
group_setup(void **state)
{
    struct gw_buf err = GW_BUF_INIT;
    uint64_t deadline;
    struct resp r;

    (void)state;
    uv_mutex_init(&mu);
    uv_cond_init(&cv);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    up_start();
    hub.upstream_port = up.port;
    hub.dead_port = free_port();
    hub.applied_seq = 0;
    assert_int_equal(nng_rep0_open(&hub.sock), 0);
    nng_socket_set_ms(hub.sock, NNG_OPT_RECVTIMEO, 50);
    assert_int_equal(nng_listen(hub.sock, HUB_URL, NULL, 0), 0);
    assert_int_equal(uv_thread_create(&hub.thr, hub_thread, NULL), 0);

    edge_config_defaults(&cfg);
    set_str(&cfg.listen, "127.0.0.1:0");
    set_str(&cfg.hub, HUB_URL);
    set_str(&cfg.edge_id, "edge-t");
    cfg.poll_interval_ms = 50;
    cfg.usage_flush_ms = 20;
    cfg.hub_timeout_ms = 1000;
    cfg.max_body_bytes = 8192;
    cfg.first_byte_timeout_ms = 800;
    cfg.max_attempts = 2;
    /* The last test stops the edge with a stream that never ends: do not
     * wait the default 30 s for it to drain. */
    cfg.drain_timeout_ms = 200;
    GW_PASS(edge_new(&cfg, &edge));
    GW_PASS(edge_start(edge, &err));
    gw_buf_fini(&err);
    edge_port = edge_bound_port(edge);
    assert_true(edge_port > 0);

    /* Ready once the snapshot reached the loop: poll /readyz to a deadline. */
    deadline = uv_hrtime() + (uint64_t)WAIT_MS * 1000000u;
    for (;;) {
        http_get("/readyz", &r);
        long st = r.status;
        resp_fini(&r);
        if (st == 200)
            break;
        assert_int_equal(st, 503);
        assert_true(uv_hrtime() < deadline);
        uv_mutex_lock(&mu);
        (void)uv_cond_timedwait(&cv, &mu, 5 * 1000000u);
        uv_mutex_unlock(&mu);
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    edge_stop(edge);
    edge_free(edge);
    edge_config_free(&cfg);
    uv_mutex_lock(&mu);
    hub.stop = 1;
    uv_mutex_unlock(&mu);
    uv_thread_join(&hub.thr);
    nng_close(hub.sock);
    up_stop();
    curl_global_cleanup();
    return 0;
}

/* ------------------------------------------------------------ tests */

static const char MSG_BODY[] =
    "{\"model\":\"claude-test\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\","
    "\"content\":\"hi\"}]}";

static void
test_health_ready_notfound(void **state)
{
    struct resp r;
    const char *const hdr[] = {"x-api-key: " GOOD_KEY, NULL};

    (void)state;
    http_get("/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "{\"status\":\"ok\"}");
    resp_fini(&r);
    http_get("/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data,
                        "{\"ready\":true,\"snapshot_version\":5,\"snapshot_source\":\"hub\"}");
    resp_fini(&r);
    {
        struct edge_stats st;
        edge_get_stats(edge, &st);
        assert_int_equal(st.snapshot_version, 5);
        assert_int_equal(st.requests, 0); /* health checks are not API requests */
    }
    http_post("/v1/nothing", hdr, MSG_BODY, strlen(MSG_BODY), &r);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body.data, "\"type\":\"error\""));
    assert_non_null(strstr(r.body.data, "not_found_error"));
    resp_fini(&r);
    http_get("/v1/messages", &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.body.data, "invalid_request_error"));
    resp_fini(&r);
}

static void
test_non_stream(void **state)
{
    const char *const hdr[] = {"x-api-key: " GOOD_KEY, "content-type: application/json",
                               "anthropic-version: 2023-06-01", NULL};
    struct gw_usage_record rec;
    struct resp r;
    char rid[64], v[128];

    (void)state;
    http_post("/v1/messages?beta=true", hdr, MSG_BODY, strlen(MSG_BODY), &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, strlen(JSON_REPLY));
    assert_memory_equal(r.body.data, JSON_REPLY, r.body.len);
    assert_true(resp_header(&r, "content-type", v, sizeof(v)));
    assert_string_equal(v, "application/json");
    assert_true(resp_header(&r, "request-id", v, sizeof(v)));
    assert_string_equal(v, "req_upstream_1");
    assert_true(resp_header(&r, "anthropic-ratelimit-requests-remaining", v, sizeof(v)));
    assert_string_equal(v, "99");
    assert_false(resp_header(&r, "x-internal-upstream", v, sizeof(v)));
    assert_true(resp_header(&r, "x-aicarpool-request-id", rid, sizeof(rid)));

    uv_mutex_lock(&mu);
    /* Base URL prefix kept, trailing slash dropped, query preserved. */
    assert_string_equal(up.target, "/up/v1/messages?beta=true");
    assert_string_equal(up.method, "POST");
    assert_non_null(strstr(up.headers.data, "x-api-key: " CREDENTIAL "\n"));
    assert_null(strstr(up.headers.data, GOOD_KEY));
    assert_non_null(strstr(up.headers.data, "anthropic-version: 2023-06-01"));
    /* Body forwarded byte for byte. */
    assert_int_equal(up.body.len, strlen(MSG_BODY));
    assert_memory_equal(up.body.data, MSG_BODY, up.body.len);
    uv_mutex_unlock(&mu);

    wait_record(rid, &rec);
    assert_int_equal(rec.key_id, 1);
    assert_int_equal(rec.account_id, 10);
    assert_string_equal(rec.model, "claude-test");
    assert_string_equal(rec.dialect, "anthropic");
    assert_int_equal(rec.input_tokens, 12);
    assert_int_equal(rec.output_tokens, 5);
    assert_int_equal(rec.cache_read_tokens, 2);
    assert_int_equal(rec.cache_write_5m_tokens, 1);
    assert_int_equal(rec.cache_write_1h_tokens, 3);
    assert_int_equal(rec.status, 200);
    assert_int_equal(rec.partial, 0);
    assert_true(rec.time_ms > 1600000000000);
    resp_fini(&r);
}

static void
test_stream_bearer_prefix(void **state)
{
    static const char body[] = "{\"model\":\"claude-test\",\"max_tokens\":64,\"stream\":true,"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const char *const hdr[] = {"Authorization: Bearer " GOOD_KEY, NULL};
    struct gw_usage_record rec;
    struct gw_buf want = GW_BUF_INIT;
    struct resp r;
    char rid[64], v[128];

    (void)state;
    for (size_t i = 0; i < sizeof(SSE_SCRIPT) / sizeof(SSE_SCRIPT[0]); i++)
        gw_buf_append_str(&want, SSE_SCRIPT[i]);
    /* Any prefix before /v1/messages is accepted. */
    http_post("/api/claude/v1/messages", hdr, body, strlen(body), &r);
    assert_int_equal(r.status, 200);
    assert_true(resp_header(&r, "content-type", v, sizeof(v)));
    assert_string_equal(v, "text/event-stream; charset=utf-8");
    assert_int_equal(r.body.len, want.len);
    assert_memory_equal(r.body.data, want.data, want.len);
    assert_true(resp_header(&r, "x-aicarpool-request-id", rid, sizeof(rid)));
    uv_mutex_lock(&mu);
    assert_string_equal(up.target, "/up/v1/messages");
    assert_non_null(strstr(up.headers.data, "x-api-key: " CREDENTIAL "\n"));
    assert_null(strstr(up.headers.data, GOOD_KEY));
    assert_null(strcasestr(up.headers.data, "authorization:"));
    uv_mutex_unlock(&mu);

    wait_record(rid, &rec);
    assert_int_equal(rec.input_tokens, 10);
    assert_int_equal(rec.cache_read_tokens, 3);
    assert_int_equal(rec.output_tokens, 7);
    assert_int_equal(rec.status, 200);
    assert_int_equal(rec.partial, 0);
    gw_buf_fini(&want);
    resp_fini(&r);
}

static void
test_upstream_error_status_relayed(void **state)
{
    static const char body[] = "{\"model\":\"claude-test\",\"max_tokens\":1,\"messages\":[],"
                               "\"metadata\":{\"user_id\":\"fail429\"}}";
    const char *const hdr[] = {"x-api-key: aicp_g429", NULL};
    struct gw_usage_record rec;
    struct resp r;
    char rid[64], v[32];

    (void)state;
    http_post("/v1/messages", hdr, body, strlen(body), &r);
    assert_int_equal(r.status, 429);
    assert_non_null(strstr(r.body.data, "rate_limit_error"));
    assert_true(resp_header(&r, "retry-after", v, sizeof(v)));
    assert_string_equal(v, "7");
    assert_true(resp_header(&r, "x-aicarpool-request-id", rid, sizeof(rid)));
    /* The provider answered: the request is recorded with its status. */
    wait_record(rid, &rec);
    assert_int_equal(rec.status, 429);
    assert_int_equal(rec.account_id, 40);
    assert_int_equal(rec.input_tokens, 0);
    resp_fini(&r);
}

static void
test_count_tokens_not_billed(void **state)
{
    static const char body[] = "{\"model\":\"claude-test\",\"messages\":[]}";
    const char *const hdr[] = {"x-api-key: " GOOD_KEY, NULL};
    size_t before = record_count();
    struct gw_usage_record rec;
    struct resp r;
    char rid[64];

    (void)state;
    http_post("/v1/messages/count_tokens?beta=true", hdr, body, strlen(body), &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "{\"input_tokens\":42}");
    uv_mutex_lock(&mu);
    assert_string_equal(up.target, "/up/v1/messages/count_tokens?beta=true");
    uv_mutex_unlock(&mu);
    resp_fini(&r);

    /* Usage is delivered in order: once a later billable request's record
     * is in, a record for count_tokens would have arrived before it. */
    http_post("/v1/messages", hdr, MSG_BODY, strlen(MSG_BODY), &r);
    assert_int_equal(r.status, 200);
    assert_true(resp_header(&r, "x-aicarpool-request-id", rid, sizeof(rid)));
    wait_record(rid, &rec);
    assert_int_equal(record_count(), before + 1);
    resp_fini(&r);
}

static void
expect_error(const char *key_header, const char *body, size_t body_len, long status,
             const char *type, const char *message)
{
    const char *const hdr[] = {key_header, NULL};
    struct resp r;

    http_post("/v1/messages", key_header ? hdr : NULL, body, body_len, &r);
    assert_int_equal(r.status, status);
    assert_non_null(r.body.data);
    if (type) {
        assert_non_null(strstr(r.body.data, "{\"type\":\"error\",\"error\":{"));
        assert_non_null(strstr(r.body.data, type));
    }
    if (message)
        assert_non_null(strstr(r.body.data, message));
    resp_fini(&r);
}

static void
test_errors(void **state)
{
    const char *const hdr[] = {"x-api-key: " GOOD_KEY, NULL};
    size_t before = record_count();
    int up_before;
    struct gw_usage_record rec;
    struct resp r;
    char rid[64];
    char *big;

    (void)state;
    uv_mutex_lock(&mu);
    up_before = up.n_reqs;
    uv_mutex_unlock(&mu);

    expect_error(NULL, MSG_BODY, strlen(MSG_BODY), 401, "authentication_error", "missing API key");
    expect_error("Authorization: Basic abc", MSG_BODY, strlen(MSG_BODY), 401,
                 "authentication_error", "missing API key");
    expect_error("x-api-key: aicp_nobody", MSG_BODY, strlen(MSG_BODY), 401, "authentication_error",
                 "invalid API key");
    expect_error("x-api-key: aicp_disabled", MSG_BODY, strlen(MSG_BODY), 401,
                 "authentication_error", "invalid API key");
    expect_error("x-api-key: aicp_expired", MSG_BODY, strlen(MSG_BODY), 401, "authentication_error",
                 "invalid API key");
    expect_error("x-api-key: " GOOD_KEY, "{\"model\":", 9, 400, "invalid_request_error", NULL);
    expect_error("x-api-key: " GOOD_KEY, "{\"messages\":[]}", 15, 400, "invalid_request_error",
                 NULL);
    expect_error("x-api-key: aicp_empty_group", MSG_BODY, strlen(MSG_BODY), 503, "overloaded_error",
                 "no upstream account of this key serves the anthropic API");
    expect_error("x-api-key: aicp_dead_upstream", MSG_BODY, strlen(MSG_BODY), 502, "api_error",
                 "upstream failure");

    /* Over max_body_bytes: the HTTP server answers 413 itself. */
    big = gw_xmalloc(9000);
    memset(big, ' ', 9000);
    memcpy(big, MSG_BODY, strlen(MSG_BODY));
    expect_error("x-api-key: " GOOD_KEY, big, 9000, 413, NULL, NULL);
    free(big);

    /* None of these reached the provider, and none was billed. */
    uv_mutex_lock(&mu);
    assert_int_equal(up.n_reqs, up_before);
    uv_mutex_unlock(&mu);
    http_post("/v1/messages", hdr, MSG_BODY, strlen(MSG_BODY), &r);
    assert_int_equal(r.status, 200);
    assert_true(resp_header(&r, "x-aicarpool-request-id", rid, sizeof(rid)));
    wait_record(rid, &rec);
    assert_int_equal(record_count(), before + 1);
    resp_fini(&r);
}

static void
test_first_byte_timeout(void **state)
{
    static const char body[] = "{\"model\":\"claude-test\",\"max_tokens\":1,\"messages\":[],"
                               "\"metadata\":{\"user_id\":\"nohead\"}}";
    int aborts;

    (void)state;
    uv_mutex_lock(&mu);
    aborts = up.aborts;
    uv_mutex_unlock(&mu);
    expect_error("x-api-key: aicp_gslow", body, strlen(body), 504, NULL, "upstream timed out");
    /* The edge dropped the upstream transfer. */
    assert_true(wait_int_at_least(&up.aborts, aborts + 1));
}

static void
test_client_abort_mid_stream(void **state)
{
    static const char body[] = "{\"model\":\"claude-test\",\"max_tokens\":64,\"stream\":true,"
                               "\"messages\":[],\"metadata\":{\"user_id\":\"hang\"}}";
    struct gw_buf got = GW_BUF_INIT;
    struct gw_usage_record rec;
    char rid[64];
    const char *p;
    int aborts, fd;

    (void)state;
    uv_mutex_lock(&mu);
    aborts = up.aborts;
    uv_mutex_unlock(&mu);
    fd = raw_connect(0);
    raw_send_post(fd, "/v1/messages", GOOD_KEY, body);
    assert_true(raw_read_until(fd, &got, "message_start"));
    p = strcasestr(got.data, "x-aicarpool-request-id: ");
    assert_non_null(p);
    snprintf(rid, sizeof(rid), "%.*s", (int)strcspn(p + 24, "\r\n"), p + 24);
    close(fd);

    /* The edge cancels the upstream transfer and bills what it saw. */
    assert_true(wait_int_at_least(&up.aborts, aborts + 1));
    assert_true(wait_edge_stat(offsetof(struct edge_stats, client_aborts), 1));
    wait_record(rid, &rec);
    assert_int_equal(rec.partial, 1);
    assert_int_equal(rec.status, 200);
    assert_int_equal(rec.input_tokens, 10);
    assert_int_equal(rec.cache_read_tokens, 3);
    gw_buf_fini(&got);
}

static void
test_backpressure_large_body(void **state)
{
    static const char body[] = "{\"model\":\"claude-test\",\"max_tokens\":64,\"messages\":[],"
                               "\"metadata\":{\"user_id\":\"big\"}}";
    struct gw_buf got = GW_BUF_INIT, plain = GW_BUF_INIT;
    struct edge_stats st0, st;
    const char *head_end;
    int blocked, fd;

    (void)state;
    uv_mutex_lock(&mu);
    blocked = up.blocked;
    up.big_done = 0;
    uv_mutex_unlock(&mu);
    edge_get_stats(edge, &st0);
    fd = raw_connect(4096);
    raw_send_post(fd, "/v1/messages", GOOD_KEY, body);
    /* The client reads nothing yet: the edge must pause the upstream
     * transfer instead of buffering 48 MiB, and the provider then has to
     * wait for its own queue to drain. */
    assert_true(
        wait_edge_stat(offsetof(struct edge_stats, upstream_pauses), st0.upstream_pauses + 1));
    assert_true(wait_int_at_least(&up.blocked, blocked + 1));
    uv_mutex_lock(&mu);
    assert_int_equal(up.big_done, 0);
    uv_mutex_unlock(&mu);

    /* Now read everything (Connection: close ends it). */
    for (;;) {
        char buf[65536];
        struct pollfd pfd = {fd, POLLIN, 0};
        assert_true(poll(&pfd, 1, WAIT_MS) > 0);
        ssize_t n = read(fd, buf, sizeof(buf));
        assert_true(n >= 0);
        if (n == 0)
            break;
        gw_buf_append(&got, buf, (size_t)n);
    }
    close(fd);
    assert_true(strncmp(got.data, "HTTP/1.1 200", 12) == 0);
    head_end = strstr(got.data, "\r\n\r\n");
    assert_non_null(head_end);
    head_end += 4;
    assert_true(dechunk(head_end, got.len - (size_t)(head_end - got.data), &plain));
    assert_int_equal(plain.len, BIG_BYTES);
    for (size_t i = 0; i < BIG_BYTES; i++) {
        if (plain.data[i] != big_byte(i))
            fail_msg("byte %zu differs", i);
    }
    /* Paused and resumed more than once on the way. */
    edge_get_stats(edge, &st);
    assert_true(st.upstream_pauses > st0.upstream_pauses + 1);
    gw_buf_fini(&got);
    gw_buf_fini(&plain);
}

static void
test_no_snapshot_and_listen_failure(void **state)
{
    struct edge_config c2;
    struct edge *e2 = NULL;
    struct gw_buf err = GW_BUF_INIT;
    struct resp r;
    const char *const hdr[] = {"x-api-key: " GOOD_KEY, NULL};
    char listen_addr[64];
    int saved_port = edge_port;

    (void)state;
    /* A second edge whose hub never answers: not ready, requests get 503. */
    edge_config_defaults(&c2);
    set_str(&c2.listen, "127.0.0.1:0");
    set_str(&c2.hub, "inproc://edge-test-nobody");
    c2.stop_flush_ms = 100;
    GW_PASS(edge_new(&c2, &e2));
    GW_PASS(edge_start(e2, &err));
    edge_port = edge_bound_port(e2);
    http_get("/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body.data, "{\"ready\":false}");
    resp_fini(&r);
    http_post("/v1/messages", hdr, MSG_BODY, strlen(MSG_BODY), &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body.data, "overloaded_error"));
    resp_fini(&r);
    edge_port = saved_port;
    edge_stop(e2);
    edge_stop(e2);
    edge_free(e2);

    /* Listening on a port another socket holds (without SO_REUSEPORT)
     * fails with a message. */
    {
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 8), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
        snprintf(listen_addr, sizeof(listen_addr), "127.0.0.1:%d", ntohs(sa.sin_port));
        set_str(&c2.listen, listen_addr);
        GW_PASS(edge_new(&c2, &e2));
        assert_int_not_equal(edge_start(e2, &err), GW_OK);
        assert_non_null(err.data);
        assert_non_null(strstr(err.data, listen_addr));
        edge_free(e2);
        close(fd);
    }
    gw_buf_fini(&err);

    /* Missing listen address. */
    free(c2.listen);
    c2.listen = NULL;
    GW_FAIL(edge_new(&c2, &e2), GW_EINVAL);
    edge_config_free(&c2);
}

/* ------------------------------------------------------------ failover */

/* Waits for an account event of `account` with `status` at the hub. */
static void
wait_event(uint64_t account, uint32_t status, struct gw_account_event *out)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_MS * 1000000u;
    int found = 0;

    uv_mutex_lock(&mu);
    for (;;) {
        for (size_t i = 0; i < hub.n_events && !found; i++) {
            if (hub.events[i].account_id == account && hub.events[i].status == status) {
                *out = hub.events[i];
                found = 1;
            }
        }
        uint64_t now = uv_hrtime();
        if (found || now >= deadline)
            break;
        (void)uv_cond_timedwait(&cv, &mu, deadline - now);
    }
    uv_mutex_unlock(&mu);
    if (!found)
        fail_msg("no account event %u for account %" PRIu64, status, account);
}

/* Lets `ms` of wall time pass: for cooldowns, which are about time itself. */
static void
let_time_pass(unsigned ms)
{
    uint64_t until = uv_hrtime() + (uint64_t)ms * 1000000u;

    uv_mutex_lock(&mu);
    for (;;) {
        uint64_t now = uv_hrtime();
        if (now >= until)
            break;
        (void)uv_cond_timedwait(&cv, &mu, until - now);
    }
    uv_mutex_unlock(&mu);
}

/* POSTs MSG_BODY with `key` and returns the status; *rec gets the usage
 * record when want_record. */
static long
post_msg(const char *key, const char *body, struct resp *r, struct gw_usage_record *rec)
{
    char hk[128], rid[64];
    const char *const hdr[] = {hk, NULL};

    snprintf(hk, sizeof(hk), "x-api-key: %s", key);
    http_post("/v1/messages", hdr, body, strlen(body), r);
    if (rec != NULL) {
        assert_true(resp_header(r, "x-aicarpool-request-id", rid, sizeof(rid)));
        wait_record(rid, rec);
    }
    return r->status;
}

static void
test_failover_5xx(void **state)
{
    struct gw_usage_record rec;
    struct edge_stats st0, st;
    struct resp r;

    (void)state;
    edge_get_stats(edge, &st0);
    assert_int_equal(post_msg("aicp_fo500", MSG_BODY, &r, &rec), 200);
    assert_int_equal(r.body.len, strlen(JSON_REPLY));
    assert_memory_equal(r.body.data, JSON_REPLY, r.body.len);
    assert_int_equal(targets_with("/s500/"), 1);
    assert_int_equal(rec.account_id, 61);
    assert_int_equal(rec.status, 200);
    assert_int_equal(rec.input_tokens, 12); /* billed once, from the answer relayed */
    edge_get_stats(edge, &st);
    assert_int_equal(st.upstream_started, st0.upstream_started + 2);
    assert_int_equal(st.upstream_retries, st0.upstream_retries + 1);
    resp_fini(&r);
}

static void
test_failover_429_cooldown(void **state)
{
    struct gw_usage_record rec;
    struct gw_account_event ev;
    struct resp r;

    (void)state;
    assert_int_equal(post_msg("aicp_fo429", MSG_BODY, &r, &rec), 200);
    assert_int_equal(rec.account_id, 71);
    resp_fini(&r);
    assert_int_equal(targets_with("/s429/"), 1);
    /* The router was told, and the hub gets the event with the wait. */
    wait_event(70, 429, &ev);
    assert_int_equal(ev.retry_after_ms, 30000);
    assert_true(ev.time_ms > 1600000000000);
    /* Cooling down for 30 s: the next request goes straight to 71. */
    assert_int_equal(post_msg("aicp_fo429", MSG_BODY, &r, &rec), 200);
    assert_int_equal(rec.account_id, 71);
    assert_int_equal(targets_with("/s429/"), 1);
    resp_fini(&r);
}

static void
test_failover_connect_and_401(void **state)
{
    struct gw_usage_record rec;
    struct gw_account_event ev;
    struct resp r;

    (void)state;
    assert_int_equal(post_msg("aicp_foconn", MSG_BODY, &r, &rec), 200);
    assert_int_equal(rec.account_id, 81);
    resp_fini(&r);

    assert_int_equal(post_msg("aicp_fo401", MSG_BODY, &r, &rec), 200);
    assert_int_equal(rec.account_id, 121);
    assert_int_equal(targets_with("/s401/"), 1);
    resp_fini(&r);
    wait_event(120, 401, &ev);
}

static void
test_failover_all_fail_relays_last(void **state)
{
    struct gw_usage_record rec;
    struct resp r;
    char v[64];

    (void)state;
    /* 90 answers 429, 91 answers 500: the client gets 91's answer. */
    assert_int_equal(post_msg("aicp_foall", MSG_BODY, &r, &rec), 500);
    assert_non_null(strstr(r.body.data, "boom /s500b/"));
    assert_true(resp_header(&r, "request-id", v, sizeof(v)));
    assert_string_equal(v, "/s500b/");
    assert_false(resp_header(&r, "retry-after", v, sizeof(v))); /* 90's header is not mixed in */
    assert_int_equal(rec.account_id, 91);
    assert_int_equal(rec.status, 500);
    assert_int_equal(rec.input_tokens, 0);
    resp_fini(&r);

    /* max_attempts is 2: the third 503 account is never tried. */
    assert_int_equal(post_msg("aicp_fomax", MSG_BODY, &r, &rec), 503);
    assert_non_null(strstr(r.body.data, "boom /s503/"));
    assert_int_equal(targets_with("/s503/"), 2);
    assert_int_equal(rec.account_id, 101);
    resp_fini(&r);
}

static void
test_failover_529_short(void **state)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)5000 * 1000000u;
    struct gw_usage_record rec;
    struct resp r;

    (void)state;
    assert_int_equal(post_msg("aicp_fo529", MSG_BODY, &r, &rec), 200);
    assert_int_equal(rec.account_id, 131);
    resp_fini(&r);
    assert_int_equal(targets_with("/s529/"), 1);
    /* Overloaded is transient: 130 is tried again within seconds (a 429
     * without retry-after would cool it down for 30 s). */
    while (targets_with("/s529/") < 2) {
        assert_true(uv_hrtime() < deadline);
        assert_int_equal(post_msg("aicp_fo529", MSG_BODY, &r, NULL), 200);
        resp_fini(&r);
        let_time_pass(200);
    }
}

/* Reads the request id from a raw response head. */
static void
raw_rid(const struct gw_buf *got, char *rid, size_t cap)
{
    const char *p = strcasestr(got->data, "x-aicarpool-request-id: ");

    assert_non_null(p);
    snprintf(rid, cap, "%.*s", (int)strcspn(p + 24, "\r\n"), p + 24);
}

static void
test_no_failover_after_first_byte(void **state)
{
    static const char body[] = "{\"model\":\"claude-test\",\"max_tokens\":64,\"stream\":true,"
                               "\"messages\":[]}";
    struct gw_buf got = GW_BUF_INIT;
    struct gw_usage_record rec;
    char rid[64], buf[4096];
    int up_before = targets_with("/up/"), fd;
    ssize_t n;

    (void)state;
    fd = raw_connect(0);
    raw_send_post(fd, "/v1/messages", "aicp_focut", body);
    assert_true(raw_read_until(fd, &got, "message_start"));
    raw_rid(&got, rid, sizeof(rid));
    do {
        n = read(fd, buf, sizeof(buf));
        if (n > 0)
            gw_buf_append(&got, buf, (size_t)n);
    } while (n > 0);
    close(fd);
    gw_buf_append(&got, "", 1);
    /* Truncated: no terminating chunk, and no second account's answer. */
    assert_null(strstr(got.data, "\r\n0\r\n\r\n"));
    assert_null(strstr(got.data, "message_stop"));
    wait_record(rid, &rec);
    assert_int_equal(rec.account_id, 110);
    assert_int_equal(rec.partial, 1);
    assert_int_equal(rec.input_tokens, 10);
    assert_int_equal(rec.cache_read_tokens, 3);
    assert_int_equal(targets_with("/up/"), up_before);
    gw_buf_fini(&got);
}

static void
test_full_account_skipped(void **state)
{
    static const char hang[] = "{\"model\":\"claude-test\",\"max_tokens\":64,\"stream\":true,"
                               "\"messages\":[],\"metadata\":{\"user_id\":\"hang\"}}";
    struct gw_buf got = GW_BUF_INIT;
    struct gw_usage_record rec;
    struct resp r;
    char rid[64];
    int fd;

    (void)state;
    /* 140 has max_concurrency 1: while a stream holds it, 141 serves. */
    fd = raw_connect(0);
    raw_send_post(fd, "/v1/messages", "aicp_fobusy", hang);
    assert_true(raw_read_until(fd, &got, "message_start"));
    raw_rid(&got, rid, sizeof(rid));
    assert_int_equal(post_msg("aicp_fobusy", MSG_BODY, &r, &rec), 200);
    assert_int_equal(rec.account_id, 141);
    resp_fini(&r);
    close(fd);
    wait_record(rid, &rec);
    assert_int_equal(rec.account_id, 140);
    assert_int_equal(rec.partial, 1);
    gw_buf_fini(&got);
}

/* ------------------------------------------------------------ key limits */

static void
test_key_limits(void **state)
{
    static const char hang[] = "{\"model\":\"claude-test\",\"max_tokens\":64,\"stream\":true,"
                               "\"messages\":[],\"metadata\":{\"user_id\":\"hang\"}}";
    uint64_t deadline;
    struct gw_buf got = GW_BUF_INIT;
    struct resp r;
    char v[64];
    int fd;

    (void)state;
    /* Requests per minute. */
    assert_int_equal(post_msg("aicp_rpm2", MSG_BODY, &r, NULL), 200);
    resp_fini(&r);
    assert_int_equal(post_msg("aicp_rpm2", MSG_BODY, &r, NULL), 200);
    resp_fini(&r);
    assert_int_equal(post_msg("aicp_rpm2", MSG_BODY, &r, NULL), 429);
    assert_non_null(strstr(r.body.data, "rate_limit_error"));
    assert_non_null(strstr(r.body.data, "requests per minute"));
    assert_true(resp_header(&r, "retry-after", v, sizeof(v)));
    /* the sliding-window estimate frees room within two windows */
    assert_true(strtol(v, NULL, 10) >= 1 && strtol(v, NULL, 10) <= 120);
    resp_fini(&r);

    /* Tokens per minute: the first answer's 23 tokens leave no room. */
    assert_int_equal(post_msg("aicp_tpm", MSG_BODY, &r, NULL), 200);
    resp_fini(&r);
    assert_int_equal(post_msg("aicp_tpm", MSG_BODY, &r, NULL), 429);
    assert_non_null(strstr(r.body.data, "tokens per minute"));
    resp_fini(&r);

    /* Concurrent requests: one stream held open, then released. */
    fd = raw_connect(0);
    raw_send_post(fd, "/v1/messages", "aicp_conc1", hang);
    assert_true(raw_read_until(fd, &got, "message_start"));
    assert_int_equal(post_msg("aicp_conc1", MSG_BODY, &r, NULL), 429);
    assert_non_null(strstr(r.body.data, "concurrent requests"));
    resp_fini(&r);
    close(fd);
    deadline = uv_hrtime() + (uint64_t)WAIT_MS * 1000000u;
    for (;;) {
        long st = post_msg("aicp_conc1", MSG_BODY, &r, NULL);
        resp_fini(&r);
        if (st == 200)
            break;
        assert_int_equal(st, 429);
        assert_true(uv_hrtime() < deadline);
        uv_mutex_lock(&mu);
        (void)uv_cond_timedwait(&cv, &mu, 5 * 1000000u);
        uv_mutex_unlock(&mu);
    }
    gw_buf_fini(&got);
}

static void
test_model_allow_list(void **state)
{
    static const char ok[] = "{\"model\":\"claude-ok-1\",\"max_tokens\":64,\"messages\":[]}";
    struct resp r;

    (void)state;
    assert_int_equal(post_msg("aicp_only_ok", MSG_BODY, &r, NULL), 403);
    assert_non_null(strstr(r.body.data, "permission_error"));
    assert_non_null(strstr(r.body.data, "claude-test"));
    resp_fini(&r);
    assert_int_equal(post_msg("aicp_only_ok", ok, &r, NULL), 200);
    resp_fini(&r);
}

/* ------------------------------------------------------------ other dialects */

static void
test_openai_usage_injection(void **state)
{
    static const char body[] = "{\"model\":\"gpt-test\",\"stream\":true,\"messages\":[{\"role\":"
                               "\"user\",\"content\":\"hi\"}]}";
    static const char asked[] = "{\"model\":\"gpt-test\",\"stream\":true,\"stream_options\":"
                                "{\"include_usage\":true},\"messages\":[]}";
    const char *const hdr[] = {"Authorization: Bearer " GOOD_KEY, "content-type: application/json",
                               NULL};
    struct gw_buf want = GW_BUF_INIT;
    struct gw_usage_record rec;
    struct resp r;
    char rid[64];

    (void)state;
    http_post("/v1/chat/completions", hdr, body, strlen(body), &r);
    assert_int_equal(r.status, 200);
    /* The client sees the stream without the usage chunk it did not ask for. */
    gw_buf_append_str(&want, OAI_CHUNKS);
    gw_buf_append_str(&want, OAI_DONE);
    assert_int_equal(r.body.len, want.len);
    assert_memory_equal(r.body.data, want.data, want.len);
    uv_mutex_lock(&mu);
    assert_string_equal(up.target, "/mock/v1/chat/completions");
    assert_non_null(strstr(up.headers.data, "authorization: Bearer " CREDENTIAL "\n"));
    assert_null(strstr(up.headers.data, GOOD_KEY));
    gw_buf_append(&up.body, "", 1);
    assert_string_equal(up.body.data, "{\"stream_options\":{\"include_usage\":true},"
                                      "\"model\":\"gpt-test\",\"stream\":true,\"messages\":"
                                      "[{\"role\":\"user\",\"content\":\"hi\"}]}");
    uv_mutex_unlock(&mu);
    assert_true(resp_header(&r, "x-aicarpool-request-id", rid, sizeof(rid)));
    wait_record(rid, &rec);
    assert_string_equal(rec.dialect, "openai");
    assert_string_equal(rec.model, "gpt-test");
    assert_int_equal(rec.account_id, 11);
    assert_int_equal(rec.input_tokens, 32);
    assert_int_equal(rec.cache_read_tokens, 8);
    assert_int_equal(rec.output_tokens, 9);
    assert_int_equal(rec.reasoning_tokens, 3);
    assert_int_equal(rec.partial, 0);
    resp_fini(&r);

    /* A client that asked for usage gets it, and its body goes as sent. */
    http_post("/v1/chat/completions", hdr, asked, strlen(asked), &r);
    assert_int_equal(r.status, 200);
    gw_buf_reset(&want);
    gw_buf_append_str(&want, OAI_CHUNKS);
    gw_buf_append_str(&want, OAI_USAGE);
    gw_buf_append_str(&want, OAI_DONE);
    assert_int_equal(r.body.len, want.len);
    assert_memory_equal(r.body.data, want.data, want.len);
    uv_mutex_lock(&mu);
    assert_int_equal(up.body.len, strlen(asked));
    assert_memory_equal(up.body.data, asked, up.body.len);
    uv_mutex_unlock(&mu);
    resp_fini(&r);
    gw_buf_fini(&want);
}

static void
test_gemini_query_key(void **state)
{
    static const char body[] = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]}]}";
    struct gw_usage_record rec;
    struct resp r;
    char rid[64];

    (void)state;
    http_post("/v1beta/models/gemini-test:generateContent?alt=json&key=" GOOD_KEY, NULL, body,
              strlen(body), &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, GEMINI_REPLY);
    uv_mutex_lock(&mu);
    assert_string_equal(up.target, "/mock/v1beta/models/gemini-test:generateContent?alt=json");
    assert_non_null(strstr(up.headers.data, "x-goog-api-key: " CREDENTIAL "\n"));
    assert_null(strstr(up.headers.data, GOOD_KEY));
    uv_mutex_unlock(&mu);
    assert_true(resp_header(&r, "x-aicarpool-request-id", rid, sizeof(rid)));
    wait_record(rid, &rec);
    assert_string_equal(rec.dialect, "gemini");
    assert_string_equal(rec.model, "gemini-test");
    assert_int_equal(rec.input_tokens, 16);
    assert_int_equal(rec.cache_read_tokens, 5);
    assert_int_equal(rec.output_tokens, 10);
    assert_int_equal(rec.reasoning_tokens, 6);
    resp_fini(&r);
}

static void
test_dialect_errors(void **state)
{
    const char *const oai_g429[] = {"Authorization: Bearer aicp_g429", NULL};
    const char *const oai_good[] = {"Authorization: Bearer " GOOD_KEY, NULL};
    const char *const gem_bad[] = {"x-goog-api-key: aicp_nobody", NULL};
    static const char chat[] = "{\"model\":\"gpt-test\",\"messages\":[]}";
    static const char chat_other[] = "{\"model\":\"gpt-other\",\"messages\":[]}";
    int up_before = targets_with("/");
    struct resp r;

    (void)state;
    /* A group whose accounts do not speak OpenAI. */
    http_post("/v1/chat/completions", oai_g429, chat, strlen(chat), &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body.data, "{\"error\":{\"message\":"));
    assert_non_null(strstr(r.body.data, "serves the openai API"));
    resp_fini(&r);
    /* A model no account of the key serves. */
    http_post("/v1/chat/completions", oai_good, chat_other, strlen(chat_other), &r);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body.data, "\"code\":\"not_found\""));
    resp_fini(&r);
    /* Errors in each dialect's format. */
    http_post("/v1beta/models/gemini-test:streamGenerateContent?alt=sse", gem_bad, "{}", 2, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body.data, "\"status\":\"UNAUTHENTICATED\""));
    resp_fini(&r);
    http_post("/v1/chat/completions", NULL, chat, strlen(chat), &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body.data, "\"code\":\"invalid_api_key\""));
    resp_fini(&r);
    http_post("/v1/chat/completions", oai_good, "{\"model\":", 9, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body.data, "\"type\":\"invalid_request_error\""));
    resp_fini(&r);
    http_post("/v1/embeddings", oai_good, chat, strlen(chat), &r);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body.data, "{\"error\":{\"message\":"));
    resp_fini(&r);
    http_post("/v1beta/models/gemini-test:embedContent", gem_bad, "{}", 2, &r);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body.data, "\"status\":\"NOT_FOUND\""));
    resp_fini(&r);
    /* count_tokens of a dialect with none: the provider's own 404 comes
     * back; Gemini's countTokens goes to an account that speaks Gemini. */
    assert_int_equal(targets_with("/"), up_before);
}

static void
http_get_hdr(const char *path, const char *header, struct resp *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    char url[512];

    memset(r, 0, sizeof(*r));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", edge_port, path);
    if (header)
        hl = curl_slist_append(hl, header);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)WAIT_MS);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, resp_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, resp_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    gw_buf_append(&r->body, "", 1);
}

static void
test_model_lists(void **state)
{
    int up_before = targets_with("/");
    struct resp r;

    (void)state;
    /* Anthropic: account 10 names no models (the default list), the mock
     * account names three. */
    http_get_hdr("/v1/models", "x-api-key: " GOOD_KEY, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "{\"data\":[{\"type\":\"model\",\"id\":\"claude-"));
    assert_non_null(strstr(r.body.data, "\"id\":\"claude-sonnet-4-5-20250929\""));
    assert_non_null(strstr(r.body.data, "\"id\":\"gpt-test\""));
    assert_non_null(strstr(r.body.data, "\"has_more\":false"));
    resp_fini(&r);
    /* OpenAI: only the mock account speaks it. */
    http_get_hdr("/v1/models", "Authorization: Bearer " GOOD_KEY, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(
        r.body.data,
        "{\"object\":\"list\",\"data\":[{\"id\":\"gpt-test\",\"object\":\"model\",\"created\":0,"
        "\"owned_by\":\"aicarpool\"},{\"id\":\"gemini-test\",\"object\":\"model\",\"created\":0,"
        "\"owned_by\":\"aicarpool\"},{\"id\":\"claude-test\",\"object\":\"model\",\"created\":0,"
        "\"owned_by\":\"aicarpool\"}]}");
    resp_fini(&r);
    http_get_hdr("/v1beta/models?key=" GOOD_KEY, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "{\"models\":[{\"name\":\"models/gpt-test\""));
    resp_fini(&r);
    /* The key's allow-list filters the list. */
    http_get_hdr("/v1/models", "x-api-key: aicp_only_ok", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data,
                        "{\"data\":[],\"has_more\":false,\"first_id\":null,\"last_id\":null}");
    resp_fini(&r);
    http_get_hdr("/v1/models", "x-api-key: aicp_nobody", &r);
    assert_int_equal(r.status, 401);
    resp_fini(&r);
    http_post("/v1/models", (const char *const[]){"x-api-key: " GOOD_KEY, NULL}, "{}", 2, &r);
    assert_int_equal(r.status, 405);
    resp_fini(&r);
    assert_int_equal(targets_with("/"), up_before); /* answered by the edge */
}

/* Last: stopping the edge with a stream in flight truncates it, cancels
 * the upstream transfer and delivers its partial usage before edge_stop()
 * returns. */
static void
test_stop_with_stream_in_flight(void **state)
{
    static const char body[] = "{\"model\":\"claude-test\",\"max_tokens\":64,\"stream\":true,"
                               "\"messages\":[],\"metadata\":{\"user_id\":\"hang\"}}";
    struct gw_buf got = GW_BUF_INIT;
    const struct gw_usage_record *rec;
    char rid[64], buf[4096];
    const char *p;
    int aborts, fd;
    ssize_t n;

    (void)state;
    uv_mutex_lock(&mu);
    aborts = up.aborts;
    uv_mutex_unlock(&mu);
    fd = raw_connect(0);
    raw_send_post(fd, "/v1/messages", GOOD_KEY, body);
    assert_true(raw_read_until(fd, &got, "message_start"));
    p = strcasestr(got.data, "x-aicarpool-request-id: ");
    assert_non_null(p);
    snprintf(rid, sizeof(rid), "%.*s", (int)strcspn(p + 24, "\r\n"), p + 24);

    edge_stop(edge);
    uv_mutex_lock(&mu);
    rec = find_record(rid);
    assert_non_null(rec);
    assert_int_equal(rec->partial, 1);
    assert_int_equal(rec->input_tokens, 10);
    uv_mutex_unlock(&mu);
    assert_true(wait_int_at_least(&up.aborts, aborts + 1));
    /* The client sees the connection end without the final chunk. */
    do {
        n = read(fd, buf, sizeof(buf));
        if (n > 0)
            gw_buf_append(&got, buf, (size_t)n);
    } while (n > 0);
    assert_null(strstr(got.data, "\r\n0\r\n\r\n"));
    close(fd);
    gw_buf_fini(&got);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_ready_notfound),
        cmocka_unit_test(test_non_stream),
        cmocka_unit_test(test_stream_bearer_prefix),
        cmocka_unit_test(test_upstream_error_status_relayed),
        cmocka_unit_test(test_count_tokens_not_billed),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_first_byte_timeout),
        cmocka_unit_test(test_client_abort_mid_stream),
        cmocka_unit_test(test_backpressure_large_body),
        cmocka_unit_test(test_failover_5xx),
        cmocka_unit_test(test_failover_429_cooldown),
        cmocka_unit_test(test_failover_connect_and_401),
        cmocka_unit_test(test_failover_all_fail_relays_last),
        cmocka_unit_test(test_failover_529_short),
        cmocka_unit_test(test_no_failover_after_first_byte),
        cmocka_unit_test(test_full_account_skipped),
        cmocka_unit_test(test_key_limits),
        cmocka_unit_test(test_model_allow_list),
        cmocka_unit_test(test_openai_usage_injection),
        cmocka_unit_test(test_gemini_query_key),
        cmocka_unit_test(test_dialect_errors),
        cmocka_unit_test(test_model_lists),
        cmocka_unit_test(test_no_snapshot_and_listen_failure),
        cmocka_unit_test(test_stop_with_stream_in_flight),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
