/* SPDX-License-Identifier: Apache-2.0 */
/* The admin API over real HTTP: the API runs on a uv loop thread with a
 * real sqlite::memory: store and a random master key; the test talks to it
 * with libcurl on 127.0.0.1 and checks status codes, bodies and what ends up
 * in the store (sealed credentials, key hashes, usage rows). */
#include "gw_test.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin_api.h"
#include "gw_buf.h"
#include "gw_crypto.h"
#include "gw_json.h"
#include "hub_link.h"
#include "keys.h"
#include "store.h"

#define ADMIN_USER "admin"
#define ADMIN_PASS "correct horse battery staple"
#define SECRET_KEY "sk-ant-api03-THIS-IS-THE-PLAINTEXT-SECRET"

struct fixture {
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    struct hub_store *store;
    struct hub_admin_api *api;
    uint8_t master[HUB_MASTER_KEY_LEN];
    int port;
    int closed;
    char token[HUB_KEY_MAX * 40];
};

static struct fixture fx;

struct resp {
    long status;
    struct gw_buf body;
    struct gw_buf headers;
    cJSON *json;
};

static void
resp_fini(struct resp *r)
{
    gw_buf_fini(&r->body);
    gw_buf_fini(&r->headers);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof(*r));
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
    gw_buf_append(arg, p, size * n);
    return size * n;
}

/* One request; body may be NULL; token NULL = no Authorization header,
 * "" = use the fixture's token. Parses a JSON body into r->json. */
static void
http(const char *method, const char *path, const char *body, size_t body_len, const char *token,
     struct resp *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[512], auth[sizeof(fx.token) + 32];
    const char *why = NULL;
    CURLcode cc;

    memset(r, 0, sizeof(*r));
    assert_non_null(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", fx.port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        h = curl_slist_append(h, "Content-Type: application/json");
    }
    h = curl_slist_append(h, "Expect:");
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token[0] ? token : fx.token);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK)
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body.len > 0)
        r->json = gw_json_parse(r->body.data, r->body.len, &why);
}

static void
post(const char *path, const char *body, const char *token, struct resp *r)
{
    http("POST", path, body, strlen(body), token, r);
}

/* Asserts status and, for errors, the error code and a word of the message. */
static void
expect_error(struct resp *r, long status, const char *code, const char *needle)
{
    const cJSON *err, *c, *m;

    if (r->status != status)
        fail_msg("want %ld, got %ld: %s", status, r->status, r->body.data ? r->body.data : "");
    assert_non_null(r->json);
    err = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    assert_non_null(err);
    c = cJSON_GetObjectItemCaseSensitive(err, "code");
    m = cJSON_GetObjectItemCaseSensitive(err, "message");
    assert_true(cJSON_IsString(c) && cJSON_IsString(m));
    assert_string_equal(c->valuestring, code);
    if (needle != NULL && strstr(m->valuestring, needle) == NULL)
        fail_msg("message '%s' does not mention '%s'", m->valuestring, needle);
}

static int64_t
jint(const cJSON *o, const char *name)
{
    int64_t v = -999;

    if (gw_json_get_int(o, name, &v) != GW_OK)
        fail_msg("no integer %s in %s", name, cJSON_PrintUnformatted(o));
    return v;
}

static const char *
jstr(const cJSON *o, const char *name)
{
    const char *v = NULL;

    if (gw_json_get_str(o, name, &v) != GW_OK)
        fail_msg("no string %s", name);
    return v;
}

static int
jbool(const cJSON *o, const char *name)
{
    int v = -1;

    if (gw_json_get_bool(o, name, &v) != GW_OK)
        fail_msg("no bool %s", name);
    return v;
}

static void
expect_status(struct resp *r, long status)
{
    if (r->status != status)
        fail_msg("want %ld, got %ld: %s", status, r->status, r->body.data ? r->body.data : "");
}

/* ---- fixture ------------------------------------------------------------ */

static void
loop_thread(void *arg)
{
    (void)arg;
    uv_run(&fx.loop, UV_RUN_DEFAULT);
}

static void
api_closed(void *arg)
{
    (void)arg;
    fx.closed = 1;
}

static void
stop_cb(uv_async_t *a)
{
    hub_admin_api_close(fx.api, api_closed, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static void
login(const char *user, const char *pass, struct resp *r)
{
    struct gw_buf b = GW_BUF_INIT;

    gw_buf_append_str(&b, "{\"username\":");
    gw_json_append_string(&b, user, strlen(user));
    gw_buf_append_str(&b, ",\"password\":");
    gw_json_append_string(&b, pass, strlen(pass));
    gw_buf_append_str(&b, "}");
    post("/api/auth/login", b.data, NULL, r);
    gw_buf_fini(&b);
}

static int
group_setup(void **state)
{
    struct gw_buf err = GW_BUF_INIT, hash = GW_BUF_INIT;
    struct resp r;
    uint64_t id = 0;

    (void)state;
    memset(&fx, 0, sizeof(fx));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (gw_random_bytes(fx.master, sizeof(fx.master)) != GW_OK)
        return -1;
    if (hub_store_open("sqlite::memory:", &fx.store, &err) != GW_OK) {
        fprintf(stderr, "store: %s\n", err.data ? err.data : "?");
        return -1;
    }
    if (gw_password_hash(ADMIN_PASS, &hash) != GW_OK ||
        hub_store_admin_create(fx.store, ADMIN_USER, hash.data, 1, &id) != GW_OK)
        return -1;
    gw_buf_fini(&hash);
    gw_buf_fini(&err);
    if (uv_loop_init(&fx.loop) != 0 || uv_async_init(&fx.loop, &fx.stop, stop_cb) != 0)
        return -1;
    if (hub_admin_api_new(&fx.loop, fx.store, fx.master, 900, &fx.api) != GW_OK)
        return -1;
    if (hub_admin_api_listen(fx.api, "127.0.0.1:0", &fx.port) != GW_OK || fx.port <= 0)
        return -1;
    if (uv_thread_create(&fx.thread, loop_thread, NULL) != 0)
        return -1;

    login(ADMIN_USER, ADMIN_PASS, &r);
    if (r.status != 200 || r.json == NULL)
        return -1;
    snprintf(fx.token, sizeof(fx.token), "%s", jstr(r.json, "access_token"));
    resp_fini(&r);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    uv_async_send(&fx.stop);
    uv_thread_join(&fx.thread);
    if (!fx.closed)
        return -1;
    if (uv_loop_close(&fx.loop) != 0)
        return -1;
    hub_store_close(fx.store);
    curl_global_cleanup();
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void
test_healthz_and_routing(void **state)
{
    struct resp r;

    (void)state;
    http("GET", "/healthz", NULL, 0, NULL, &r);
    expect_status(&r, 200);
    assert_string_equal(jstr(r.json, "status"), "ok");
    resp_fini(&r);

    http("GET", "/nope", NULL, 0, "", &r);
    expect_error(&r, 404, "not_found", NULL);
    resp_fini(&r);
    http("GET", "/api/groups/1/bindings/x", NULL, 0, "", &r);
    expect_error(&r, 404, "not_found", NULL);
    resp_fini(&r);
    /* A non-numeric id matches no route. */
    post("/api/groups/abc/bindings", "{\"account_id\":1}", "", &r);
    expect_error(&r, 404, "not_found", NULL);
    resp_fini(&r);

    http("DELETE", "/api/groups", NULL, 0, "", &r);
    expect_error(&r, 405, "method_not_allowed", NULL);
    assert_non_null(strcasestr(r.headers.data, "allow: GET, POST"));
    resp_fini(&r);
    http("DELETE", "/api/accounts/1", NULL, 0, "", &r);
    expect_error(&r, 405, "method_not_allowed", NULL);
    assert_non_null(strcasestr(r.headers.data, "allow: GET, PATCH"));
    resp_fini(&r);
    http("DELETE", "/healthz", NULL, 0, NULL, &r);
    expect_error(&r, 405, "method_not_allowed", NULL);
    resp_fini(&r);
    post("/api/usage", "{}", "", &r);
    expect_error(&r, 405, "method_not_allowed", NULL);
    resp_fini(&r);
}

static void
test_auth_required(void **state)
{
    static const char *const paths[][2] = {
        {"POST", "/api/groups"},
        {"POST", "/api/accounts"},
        {"POST", "/api/keys"},
        {"POST", "/api/groups/1/bindings"},
        {"GET", "/api/usage"},
        {"GET", "/api/status"},
        {"GET", "/api/groups"},
        {"PATCH", "/api/groups/1"},
        {"GET", "/api/accounts"},
        {"GET", "/api/accounts/1"},
        {"PATCH", "/api/accounts/1"},
        {"GET", "/api/pools"},
        {"POST", "/api/pools"},
        {"GET", "/api/pools/1"},
        {"POST", "/api/pools/1/accounts"},
        {"GET", "/api/keys"},
        {"GET", "/api/keys/1"},
        {"PATCH", "/api/keys/1"},
        {"DELETE", "/api/keys/1"},
    };
    struct resp r;

    (void)state;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        http(paths[i][0], paths[i][1], "{\"name\":\"x\"}", 12, NULL, &r);
        expect_error(&r, 401, "unauthorized", NULL);
        assert_non_null(strcasestr(r.headers.data, "www-authenticate: Bearer"));
        resp_fini(&r);
        http(paths[i][0], paths[i][1], "{\"name\":\"x\"}", 12, "not.a.jwt", &r);
        expect_error(&r, 401, "unauthorized", NULL);
        resp_fini(&r);
    }
    /* A token signed with another master key. */
    {
        char forged[sizeof(fx.token)];
        snprintf(forged, sizeof(forged), "%s", fx.token);
        char *sig = strrchr(forged, '.') + 1;
        sig[0] = sig[0] == 'A' ? 'B' : 'A';
        http("GET", "/api/status", NULL, 0, forged, &r);
        expect_error(&r, 401, "unauthorized", NULL);
        resp_fini(&r);
    }
    /* The right token works, also with a lower-case scheme. */
    http("GET", "/api/status", NULL, 0, "", &r);
    expect_status(&r, 200);
    resp_fini(&r);
}

static void
test_login(void **state)
{
    struct resp r, r2;
    const char *msg1;

    (void)state;
    login(ADMIN_USER, "wrong password", &r);
    expect_error(&r, 401, "unauthorized", NULL);
    login("nobody", "wrong password", &r2);
    expect_error(&r2, 401, "unauthorized", NULL);
    /* Same answer for a wrong password and an unknown user. */
    msg1 = cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "error"), "message")->valuestring;
    assert_string_equal(
        msg1, cJSON_GetObjectItem(cJSON_GetObjectItem(r2.json, "error"), "message")->valuestring);
    resp_fini(&r);
    resp_fini(&r2);

    post("/api/auth/login", "{\"password\":\"x\"}", NULL, &r);
    expect_error(&r, 400, "invalid_request", "username");
    resp_fini(&r);
    post("/api/auth/login", "{\"username\":\"admin\"}", NULL, &r);
    expect_error(&r, 400, "invalid_request", "password");
    resp_fini(&r);
    post("/api/auth/login", "{\"username\":\"admin\",", NULL, &r);
    expect_error(&r, 400, "invalid_request", "JSON");
    resp_fini(&r);
    post("/api/auth/login", "[1,2]", NULL, &r);
    expect_error(&r, 400, "invalid_request", "object");
    resp_fini(&r);

    login(ADMIN_USER, ADMIN_PASS, &r);
    expect_status(&r, 200);
    assert_string_equal(jstr(r.json, "token_type"), "Bearer");
    assert_int_equal(jint(r.json, "expires_in"), 900);
    assert_int_equal(jbool(r.json, "must_change_password"), 1);
    assert_true(strlen(jstr(r.json, "refresh_token")) >= 43);
    assert_non_null(strcasestr(r.headers.data, "cache-control: no-store"));
    {
        char tok[sizeof(fx.token)];
        struct resp s;
        snprintf(tok, sizeof(tok), "%s", jstr(r.json, "access_token"));
        http("GET", "/api/status", NULL, 0, tok, &s);
        expect_status(&s, 200);
        resp_fini(&s);
        /* The refresh token is not an access token. */
        snprintf(tok, sizeof(tok), "%s", jstr(r.json, "refresh_token"));
        http("GET", "/api/status", NULL, 0, tok, &s);
        expect_error(&s, 401, "unauthorized", NULL);
        resp_fini(&s);
    }
    resp_fini(&r);
}

static void
test_login_rate_limit(void **state)
{
    struct resp r;

    (void)state;
    for (int i = 0; i < 10; i++) {
        login("ghost", "guess", &r);
        expect_error(&r, 401, "unauthorized", NULL);
        resp_fini(&r);
    }
    login("ghost", "guess", &r);
    expect_error(&r, 429, "rate_limited", NULL);
    assert_non_null(strcasestr(r.headers.data, "retry-after:"));
    resp_fini(&r);
    /* The limit is per user name: the real admin still gets in. */
    login(ADMIN_USER, ADMIN_PASS, &r);
    expect_status(&r, 200);
    resp_fini(&r);
}

static void
test_groups(void **state)
{
    struct resp r;

    (void)state;
    post("/api/groups", "{}", "", &r);
    expect_error(&r, 400, "invalid_request", "name");
    resp_fini(&r);
    post("/api/groups", "{\"name\":42}", "", &r);
    expect_error(&r, 400, "invalid_request", "name");
    resp_fini(&r);
    post("/api/groups", "{\"name\":\"\"}", "", &r);
    expect_error(&r, 400, "invalid_request", "name");
    resp_fini(&r);
    http("POST", "/api/groups", "", 0, "", &r);
    expect_error(&r, 400, "invalid_request", NULL);
    resp_fini(&r);

    post("/api/groups", "{\"name\":\"team-a\"}", "", &r);
    expect_status(&r, 201);
    assert_true(jint(r.json, "id") > 0);
    assert_string_equal(jstr(r.json, "name"), "team-a");
    assert_true(jint(r.json, "created_at") > 1600000000);
    resp_fini(&r);

    post("/api/groups", "{\"name\":\"team-a\"}", "", &r);
    expect_error(&r, 409, "conflict", NULL);
    resp_fini(&r);
}

static int64_t
create_group(const char *name)
{
    char body[256];
    struct resp r;
    int64_t id;

    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
    post("/api/groups", body, "", &r);
    expect_status(&r, 201);
    id = jint(r.json, "id");
    resp_fini(&r);
    return id;
}

static void
test_accounts(void **state)
{
    struct resp r;
    struct gw_wire_snapshot snap;
    struct gw_buf plain = GW_BUF_INIT;
    int64_t id;
    int found = 0;

    (void)state;
    post("/api/accounts",
         "{\"kind\":\"anthropic\",\"base_url\":\"https://api.anthropic.com\",\"api_key\":\"k\"}",
         "", &r);
    expect_error(&r, 400, "invalid_request", "name");
    resp_fini(&r);
    post("/api/accounts",
         "{\"name\":\"a\",\"kind\":\"openai\",\"base_url\":\"https://x\",\"api_key\":\"k\"}", "",
         &r);
    expect_error(&r, 400, "invalid_request", "kind");
    resp_fini(&r);
    post("/api/accounts",
         "{\"name\":\"a\",\"kind\":\"anthropic\",\"base_url\":\"ftp://x\",\"api_key\":\"k\"}", "",
         &r);
    expect_error(&r, 400, "invalid_request", "base_url");
    resp_fini(&r);
    post("/api/accounts",
         "{\"name\":\"a\",\"kind\":\"anthropic\",\"base_url\":\"http://\",\"api_key\":\"k\"}", "",
         &r);
    expect_error(&r, 400, "invalid_request", "base_url");
    resp_fini(&r);
    post("/api/accounts",
         "{\"name\":\"a\",\"kind\":\"anthropic\",\"base_url\":\"https://a b\",\"api_key\":\"k\"}",
         "", &r);
    expect_error(&r, 400, "invalid_request", "base_url");
    resp_fini(&r);
    post("/api/accounts", "{\"name\":\"a\",\"kind\":\"anthropic\",\"base_url\":\"https://x\"}", "",
         &r);
    expect_error(&r, 400, "invalid_request", "api_key");
    resp_fini(&r);
    post("/api/accounts",
         "{\"name\":\"a\",\"kind\":\"mock\",\"base_url\":\"https://x\",\"api_key\":\"k\","
         "\"priority\":-1}",
         "", &r);
    expect_error(&r, 400, "invalid_request", "priority");
    resp_fini(&r);
    post("/api/accounts",
         "{\"name\":\"a\",\"kind\":\"mock\",\"base_url\":\"https://x\",\"api_key\":\"k\","
         "\"weight\":1.5}",
         "", &r);
    expect_error(&r, 400, "invalid_request", "weight");
    resp_fini(&r);

    post("/api/accounts",
         "{\"name\":\"main\",\"kind\":\"anthropic_compatible\",\"base_url\":"
         "\"https://relay.example/v1\",\"api_key\":\"" SECRET_KEY "\",\"priority\":2,"
         "\"weight\":5}",
         "", &r);
    expect_status(&r, 201);
    id = jint(r.json, "id");
    assert_true(id > 0);
    assert_string_equal(jstr(r.json, "name"), "main");
    assert_string_equal(jstr(r.json, "kind"), "anthropic_compatible");
    assert_string_equal(jstr(r.json, "base_url"), "https://relay.example/v1");
    assert_int_equal(jint(r.json, "priority"), 2);
    assert_int_equal(jint(r.json, "weight"), 5);
    assert_int_equal(jbool(r.json, "enabled"), 1);
    /* No credential in any form in the response. */
    assert_null(cJSON_GetObjectItem(r.json, "api_key"));
    assert_null(cJSON_GetObjectItem(r.json, "credential"));
    assert_null(strstr(r.body.data, "THIS-IS-THE-PLAINTEXT"));
    resp_fini(&r);

    /* The store holds the sealed form, which opens to the plaintext. */
    memset(&snap, 0, sizeof(snap));
    GW_PASS(hub_store_snapshot_load(fx.store, &snap));
    for (size_t i = 0; i < snap.n_accounts; i++) {
        struct gw_wire_account *a = &snap.accounts[i];
        if (a->id != (uint64_t)id)
            continue;
        found = 1;
        assert_true(a->credential_len > 0);
        assert_null(memmem(a->credential, a->credential_len, SECRET_KEY, strlen(SECRET_KEY)));
        assert_null(memmem(a->credential, a->credential_len, "PLAINTEXT", 9));
        GW_PASS(hub_keys_open_credential(fx.master, a->credential, a->credential_len, &plain));
        assert_int_equal(plain.len, strlen(SECRET_KEY));
        assert_memory_equal(plain.data, SECRET_KEY, plain.len);
        assert_int_equal(a->priority, 2);
        assert_int_equal(a->weight, 5);
    }
    assert_true(found);
    hub_store_snapshot_fini(&snap);
    gw_buf_fini(&plain);
}

static int64_t
create_account(const char *name)
{
    char body[512];
    struct resp r;
    int64_t id;

    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"kind\":\"mock\",\"base_url\":\"http://127.0.0.1:9\","
             "\"api_key\":\"k\"}",
             name);
    post("/api/accounts", body, "", &r);
    expect_status(&r, 201);
    id = jint(r.json, "id");
    resp_fini(&r);
    return id;
}

static void
test_bindings(void **state)
{
    int64_t g = create_group("bind-g");
    int64_t a = create_account("bind-a");
    char path[96], body[96];
    struct resp r;

    (void)state;
    snprintf(path, sizeof(path), "/api/groups/%lld/bindings", (long long)(g + 1000));
    snprintf(body, sizeof(body), "{\"account_id\":%lld}", (long long)a);
    post(path, body, "", &r);
    expect_error(&r, 404, "not_found", "group");
    resp_fini(&r);

    snprintf(path, sizeof(path), "/api/groups/%lld/bindings", (long long)g);
    snprintf(body, sizeof(body), "{\"account_id\":%lld}", (long long)(a + 1000));
    post(path, body, "", &r);
    expect_error(&r, 404, "not_found", "account");
    resp_fini(&r);

    post(path, "{}", "", &r);
    expect_error(&r, 400, "invalid_request", "account_id");
    resp_fini(&r);
    post(path, "{\"account_id\":\"1\"}", "", &r);
    expect_error(&r, 400, "invalid_request", "account_id");
    resp_fini(&r);

    snprintf(body, sizeof(body), "{\"account_id\":%lld}", (long long)a);
    post(path, body, "", &r);
    expect_status(&r, 201);
    assert_int_equal(jint(r.json, "group_id"), g);
    assert_int_equal(jint(r.json, "account_id"), a);
    resp_fini(&r);

    post(path, body, "", &r);
    expect_error(&r, 409, "conflict", NULL);
    resp_fini(&r);
}

static int64_t created_key_id;

static void
test_keys(void **state)
{
    int64_t g = create_group("key-g");
    struct gw_wire_snapshot snap;
    uint8_t hash[GW_SHA256_LEN];
    char body[128], key[HUB_KEY_MAX];
    struct resp r;
    int found = 0;

    (void)state;
    post("/api/keys", "{\"name\":\"k\"}", "", &r);
    expect_error(&r, 400, "invalid_request", "group_id");
    resp_fini(&r);
    snprintf(body, sizeof(body), "{\"group_id\":%lld}", (long long)g);
    post("/api/keys", body, "", &r);
    expect_error(&r, 400, "invalid_request", "name");
    resp_fini(&r);
    snprintf(body, sizeof(body), "{\"group_id\":%lld,\"name\":\"k\"}", (long long)(g + 1000));
    post("/api/keys", body, "", &r);
    expect_error(&r, 404, "not_found", "group");
    resp_fini(&r);

    snprintf(body, sizeof(body), "{\"group_id\":%lld,\"name\":\"laptop\"}", (long long)g);
    post("/api/keys", body, "", &r);
    expect_status(&r, 201);
    created_key_id = jint(r.json, "id");
    assert_true(created_key_id > 0);
    assert_int_equal(jint(r.json, "group_id"), g);
    assert_string_equal(jstr(r.json, "name"), "laptop");
    snprintf(key, sizeof(key), "%s", jstr(r.json, "key"));
    assert_int_equal(hub_keys_checksum_ok(key, strlen(key)), 1);
    assert_int_equal(strlen(jstr(r.json, "prefix")), HUB_KEY_DISPLAY_LEN);
    assert_memory_equal(jstr(r.json, "prefix"), key, HUB_KEY_DISPLAY_LEN);
    assert_non_null(strcasestr(r.headers.data, "cache-control: no-store"));
    resp_fini(&r);

    /* The store keeps only the SHA-256 of the key. */
    gw_sha256(key, strlen(key), hash);
    memset(&snap, 0, sizeof(snap));
    GW_PASS(hub_store_snapshot_load(fx.store, &snap));
    for (size_t i = 0; i < snap.n_keys; i++) {
        if (snap.keys[i].id != (uint64_t)created_key_id)
            continue;
        found = 1;
        assert_memory_equal(snap.keys[i].key_hash, hash, sizeof(hash));
        assert_int_equal(snap.keys[i].group_id, g);
    }
    assert_true(found);
    hub_store_snapshot_fini(&snap);
}

/* ---- accounts: kinds, presets, routing fields, read and change ----------- */

static void
patch(const char *path, const char *body, struct resp *r)
{
    http("PATCH", path, body, strlen(body), "", r);
}

static uint64_t
config_version(void)
{
    uint64_t v = 0;

    GW_PASS(hub_store_config_version(fx.store, &v));
    return v;
}

/* Creates an account from a JSON body; returns the 201 response's id and
 * leaves the response in *r for more checks (caller finishes it). */
static int64_t
create_account_body(const char *body, struct resp *r)
{
    post("/api/accounts", body, "", r);
    expect_status(r, 201);
    return jint(r->json, "id");
}

/* The wire account of id in a fresh snapshot (credential still sealed). */
static void
with_store_account(int64_t id, void (*check)(const struct gw_wire_account *a))
{
    struct gw_wire_snapshot snap;
    int found = 0;

    memset(&snap, 0, sizeof(snap));
    GW_PASS(hub_store_snapshot_load(fx.store, &snap));
    for (size_t i = 0; i < snap.n_accounts; i++) {
        if (snap.accounts[i].id == (uint64_t)id) {
            found = 1;
            check(&snap.accounts[i]);
        }
    }
    assert_true(found);
    hub_store_snapshot_fini(&snap);
}

static void
check_proxy_stored(const struct gw_wire_account *a)
{
    assert_string_equal(a->proxy, "socks5h://alice:s3cr3t-pw@127.0.0.1:1080");
    assert_int_equal(a->n_models, 2);
    assert_string_equal(a->models[0], "kimi-k2-0905-preview");
    assert_int_equal(a->max_concurrency, 7);
}

static void
test_account_kinds(void **state)
{
    static const struct {
        const char *body;
        const char *base_url;
    } ok[] = {
        {"{\"name\":\"k\",\"kind\":\"anthropic_compatible\",\"preset\":\"kimi\",\"api_key\":\"x\"}",
         "https://api.moonshot.ai/anthropic"},
        {"{\"name\":\"q\",\"kind\":\"anthropic_compatible\",\"preset\":\"qwen\",\"api_key\":\"x\"}",
         "https://dashscope-intl.aliyuncs.com/api/v2/apps/claude-code-proxy"},
        {"{\"name\":\"g\",\"kind\":\"anthropic_compatible\",\"preset\":\"glm\",\"api_key\":\"x\"}",
         "https://api.z.ai/api/anthropic"},
        {"{\"name\":\"c\",\"kind\":\"anthropic_compatible\",\"preset\":\"custom\","
         "\"base_url\":\"https://relay.example/anthropic\",\"api_key\":\"x\"}",
         "https://relay.example/anthropic"},
        /* An explicit base_url wins over the preset's. */
        {"{\"name\":\"k2\",\"kind\":\"anthropic_compatible\",\"preset\":\"kimi\","
         "\"base_url\":\"https://api.moonshot.cn/anthropic\",\"api_key\":\"x\"}",
         "https://api.moonshot.cn/anthropic"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\"}", "https://api.anthropic.com"},
        {"{\"name\":\"gm\",\"kind\":\"gemini\",\"api_key\":\"x\"}",
         "https://generativelanguage.googleapis.com"},
        {"{\"name\":\"o\",\"kind\":\"openai_compatible\",\"base_url\":\"http://127.0.0.1:9/v1\","
         "\"api_key\":\"x\"}",
         "http://127.0.0.1:9/v1"},
    };
    static const struct {
        const char *body;
        const char *field;
    } bad[] = {
        {"{\"name\":\"c\",\"kind\":\"anthropic_compatible\",\"preset\":\"custom\","
         "\"api_key\":\"x\"}",
         "base_url"},
        {"{\"name\":\"c\",\"kind\":\"anthropic_compatible\",\"api_key\":\"x\"}", "base_url"},
        {"{\"name\":\"c\",\"kind\":\"anthropic_compatible\",\"preset\":\"deepseek\","
         "\"api_key\":\"x\"}",
         "preset"},
        {"{\"name\":\"c\",\"kind\":\"anthropic_compatible\",\"preset\":7,\"api_key\":\"x\"}",
         "preset"},
        {"{\"name\":\"c\",\"kind\":\"anthropic\",\"preset\":\"kimi\",\"api_key\":\"x\"}", "preset"},
        {"{\"name\":\"o\",\"kind\":\"openai_compatible\",\"api_key\":\"x\"}", "base_url"},
        {"{\"name\":\"m\",\"kind\":\"mock\",\"api_key\":\"x\"}", "base_url"},
        {"{\"name\":\"g\",\"kind\":\"gemini\",\"base_url\":\"\",\"api_key\":\"x\"}", "base_url"},
        {"{\"name\":\"g\",\"kind\":\"gemini\"}", "api_key"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"models\":\"claude\"}",
         "models"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"models\":[\"a\",3]}",
         "models"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"models\":[\"\"]}", "models"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"max_concurrency\":100001}",
         "max_concurrency"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"max_concurrency\":-1}",
         "max_concurrency"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"proxy\":\"ftp://p:21\"}",
         "proxy"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"proxy\":\"http://\"}",
         "proxy"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"proxy\":\"socks5://h:99999\"}",
         "proxy"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"proxy\":\"http://a b:1\"}",
         "proxy"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"proxy\":\"http://h:1/path\"}",
         "proxy"},
        {"{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"proxy\":42}", "proxy"},
        {"{\"name\":\"a\",\"kind\":\"claude_oauth\",\"api_key\":\"x\"}", "kind"},
    };
    struct resp r;
    uint64_t v = config_version();
    char body[4096];

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        create_account_body(ok[i].body, &r);
        assert_string_equal(jstr(r.json, "base_url"), ok[i].base_url);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "proxy")));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "models")), 0);
        assert_int_equal(jint(r.json, "max_concurrency"), 0);
        resp_fini(&r);
    }
    assert_int_equal(config_version(), v + sizeof(ok) / sizeof(ok[0]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        post("/api/accounts", bad[i].body, "", &r);
        expect_error(&r, 400, "invalid_request", bad[i].field);
        resp_fini(&r);
    }
    /* Too many models, and a model name one byte too long. */
    {
        struct gw_buf b = GW_BUF_INIT;

        gw_buf_append_str(&b, "{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\","
                              "\"models\":[");
        for (int i = 0; i <= GW_WIRE_MODELS_MAX; i++)
            gw_buf_appendf(&b, "%s\"m%d\"", i ? "," : "", i);
        gw_buf_append_str(&b, "]}");
        post("/api/accounts", b.data, "", &r);
        expect_error(&r, 400, "invalid_request", "models");
        resp_fini(&r);
        gw_buf_reset(&b);
        gw_buf_append_str(&b, "{\"name\":\"a\",\"kind\":\"anthropic\",\"api_key\":\"x\","
                              "\"models\":[\"");
        for (int i = 0; i <= GW_WIRE_MODEL_LEN_MAX; i++)
            gw_buf_append_str(&b, "m");
        gw_buf_append_str(&b, "\"]}");
        post("/api/accounts", b.data, "", &r);
        expect_error(&r, 400, "invalid_request", "models");
        resp_fini(&r);
        gw_buf_fini(&b);
    }
    assert_int_equal(config_version(), v + sizeof(ok) / sizeof(ok[0]));

    /* Models, concurrency and a proxy whose password never comes back. */
    snprintf(body, sizeof(body),
             "{\"name\":\"routed\",\"kind\":\"anthropic_compatible\",\"preset\":\"kimi\","
             "\"api_key\":\"x\",\"models\":[\"kimi-k2-0905-preview\",\"kimi-k2-turbo\"],"
             "\"max_concurrency\":7,\"proxy\":\"socks5h://alice:s3cr3t-pw@127.0.0.1:1080\","
             "\"priority\":4,\"weight\":9}");
    {
        int64_t id = create_account_body(body, &r);
        const cJSON *models = cJSON_GetObjectItem(r.json, "models");

        assert_int_equal(cJSON_GetArraySize(models), 2);
        assert_string_equal(cJSON_GetArrayItem(models, 1)->valuestring, "kimi-k2-turbo");
        assert_int_equal(jint(r.json, "max_concurrency"), 7);
        assert_string_equal(jstr(r.json, "proxy"), "socks5h://alice:****@127.0.0.1:1080");
        assert_null(strstr(r.body.data, "s3cr3t-pw"));
        assert_int_equal(jint(r.json, "priority"), 4);
        assert_int_equal(jint(r.json, "weight"), 9);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "disabled_reason")));
        resp_fini(&r);
        with_store_account(id, check_proxy_stored);
    }
    /* Other proxy forms that are fine. */
    {
        static const char *const proxies[] = {"http://proxy.corp:3128", "https://p.example",
                                              "socks5://[::1]:1080", "HTTP://P:8080/",
                                              "socks5h://user@h:1"};

        for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++) {
            snprintf(
                body, sizeof(body),
                "{\"name\":\"p%zu\",\"kind\":\"anthropic\",\"api_key\":\"x\",\"proxy\":\"%s\"}", i,
                proxies[i]);
            create_account_body(body, &r);
            assert_string_equal(jstr(r.json, "proxy"), proxies[i]);
            resp_fini(&r);
        }
    }
}

static void
check_new_secret(const struct gw_wire_account *a)
{
    struct gw_buf plain = GW_BUF_INIT;

    GW_PASS(hub_keys_open_credential(fx.master, a->credential, a->credential_len, &plain));
    assert_int_equal(plain.len, strlen("sk-rotated-secret"));
    assert_memory_equal(plain.data, "sk-rotated-secret", plain.len);
    assert_null(a->proxy);
    gw_buf_fini(&plain);
}

static void
test_account_read_and_change(void **state)
{
    char path[96], body[512];
    const cJSON *items, *it;
    struct resp r;
    int64_t id;
    uint64_t v;
    int found = 0;

    (void)state;
    snprintf(body, sizeof(body),
             "{\"name\":\"change-me\",\"kind\":\"mock\",\"base_url\":\"http://127.0.0.1:9\","
             "\"api_key\":\"" SECRET_KEY "\",\"proxy\":\"http://u:pw@proxy:8080\"}");
    id = create_account_body(body, &r);
    resp_fini(&r);

    http("GET", "/api/accounts", NULL, 0, "", &r);
    expect_status(&r, 200);
    items = cJSON_GetObjectItem(r.json, "items");
    assert_true(cJSON_GetArraySize(items) >= 2);
    cJSON_ArrayForEach(it, items)
    {
        assert_null(cJSON_GetObjectItem(it, "api_key"));
        assert_null(cJSON_GetObjectItem(it, "credential"));
        if (jint(it, "id") == id) {
            found = 1;
            assert_string_equal(jstr(it, "name"), "change-me");
            assert_string_equal(jstr(it, "proxy"), "http://u:****@proxy:8080");
        }
    }
    assert_true(found);
    assert_null(strstr(r.body.data, "THIS-IS-THE-PLAINTEXT"));
    resp_fini(&r);

    snprintf(path, sizeof(path), "/api/accounts/%lld", (long long)id);
    http("GET", path, NULL, 0, "", &r);
    expect_status(&r, 200);
    assert_int_equal(jint(r.json, "id"), id);
    assert_string_equal(jstr(r.json, "kind"), "mock");
    assert_int_equal(jbool(r.json, "enabled"), 1);
    assert_int_equal(jint(r.json, "auth_failures"), 0);
    assert_int_equal(jint(r.json, "cooldown_until_ms"), 0);
    assert_null(strstr(r.body.data, "THIS-IS-THE-PLAINTEXT"));
    resp_fini(&r);
    http("GET", "/api/accounts/999999", NULL, 0, "", &r);
    expect_error(&r, 404, "not_found", "account 999999");
    resp_fini(&r);

    /* Changes, one request each; every one bumps the version. */
    v = config_version();
    patch(path, "{\"enabled\":false}", &r);
    expect_status(&r, 200);
    assert_int_equal(jbool(r.json, "enabled"), 0);
    assert_string_equal(jstr(r.json, "disabled_reason"), "disabled by an admin");
    resp_fini(&r);
    patch(path, "{\"enabled\":true,\"priority\":12,\"weight\":3,\"max_concurrency\":50}", &r);
    expect_status(&r, 200);
    assert_int_equal(jbool(r.json, "enabled"), 1);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "disabled_reason")));
    assert_int_equal(jint(r.json, "priority"), 12);
    assert_int_equal(jint(r.json, "weight"), 3);
    assert_int_equal(jint(r.json, "max_concurrency"), 50);
    resp_fini(&r);
    patch(path, "{\"models\":[\"fake-model-a\",\"fake-model-b\"],\"name\":\"renamed\"}", &r);
    expect_status(&r, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "models")), 2);
    assert_string_equal(jstr(r.json, "name"), "renamed");
    assert_int_equal(jint(r.json, "priority"), 12); /* kept */
    resp_fini(&r);
    patch(path,
          "{\"proxy\":null,\"base_url\":\"http://127.0.0.1:10/x\","
          "\"api_key\":\"sk-rotated-secret\"}",
          &r);
    expect_status(&r, 200);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "proxy")));
    assert_string_equal(jstr(r.json, "base_url"), "http://127.0.0.1:10/x");
    assert_null(strstr(r.body.data, "sk-rotated-secret"));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "models")), 2);
    resp_fini(&r);
    with_store_account(id, check_new_secret);
    patch(path, "{\"models\":[]}", &r);
    expect_status(&r, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "models")), 0);
    resp_fini(&r);
    assert_int_equal(config_version(), v + 5);

    /* Refusals name the field and change nothing. */
    {
        static const struct {
            const char *body;
            const char *field;
        } bad[] = {
            {"{\"kind\":\"anthropic\"}", "kind"},
            {"{}", "nothing to change"},
            {"{\"enabled\":\"yes\"}", "enabled"},
            {"{\"enabled\":null}", "enabled"},
            {"{\"priority\":5000}", "priority"},
            {"{\"weight\":0}", "weight"},
            {"{\"max_concurrency\":1.5}", "max_concurrency"},
            {"{\"proxy\":\"nope\"}", "proxy"},
            {"{\"base_url\":\"ftp://x\"}", "base_url"},
            {"{\"base_url\":null}", "base_url"},
            {"{\"api_key\":\"\"}", "api_key"},
            {"{\"name\":\"\"}", "name"},
            {"{\"models\":[1]}", "models"},
            {"[]", "object"},
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            patch(path, bad[i].body, &r);
            expect_error(&r, 400, "invalid_request", bad[i].field);
            resp_fini(&r);
        }
    }
    patch("/api/accounts/999999", "{\"enabled\":true}", &r);
    expect_error(&r, 404, "not_found", "account");
    resp_fini(&r);
    assert_int_equal(config_version(), v + 5);
}

static void
test_pools(void **state)
{
    int64_t a1 = create_account("pool-a1"), a2 = create_account("pool-a2");
    char path[96], body[96];
    const cJSON *items, *ids;
    struct resp r;
    int64_t pid;

    (void)state;
    post("/api/pools", "{}", "", &r);
    expect_error(&r, 400, "invalid_request", "name");
    resp_fini(&r);
    post("/api/pools", "{\"name\":\"enterprise\"}", "", &r);
    expect_status(&r, 201);
    pid = jint(r.json, "id");
    assert_string_equal(jstr(r.json, "name"), "enterprise");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "account_ids")), 0);
    resp_fini(&r);
    post("/api/pools", "{\"name\":\"enterprise\"}", "", &r);
    expect_error(&r, 409, "conflict", NULL);
    resp_fini(&r);

    snprintf(path, sizeof(path), "/api/pools/%lld/accounts", (long long)pid);
    snprintf(body, sizeof(body), "{\"account_id\":%lld}", (long long)a2);
    post(path, body, "", &r);
    expect_status(&r, 201);
    assert_int_equal(jint(r.json, "pool_id"), pid);
    assert_int_equal(jint(r.json, "account_id"), a2);
    resp_fini(&r);
    snprintf(body, sizeof(body), "{\"account_id\":%lld}", (long long)a1);
    post(path, body, "", &r);
    expect_status(&r, 201);
    resp_fini(&r);
    post(path, body, "", &r);
    expect_error(&r, 409, "conflict", NULL);
    resp_fini(&r);
    post(path, "{\"account_id\":999999}", "", &r);
    expect_error(&r, 404, "not_found", "account 999999");
    resp_fini(&r);
    post(path, "{\"account_id\":\"1\"}", "", &r);
    expect_error(&r, 400, "invalid_request", "account_id");
    resp_fini(&r);
    post("/api/pools/999999/accounts", body, "", &r);
    expect_error(&r, 404, "not_found", "pool 999999");
    resp_fini(&r);

    snprintf(path, sizeof(path), "/api/pools/%lld", (long long)pid);
    http("GET", path, NULL, 0, "", &r);
    expect_status(&r, 200);
    ids = cJSON_GetObjectItem(r.json, "account_ids");
    assert_int_equal(cJSON_GetArraySize(ids), 2);
    assert_int_equal((int64_t)cJSON_GetArrayItem(ids, 0)->valuedouble, a2);
    assert_int_equal((int64_t)cJSON_GetArrayItem(ids, 1)->valuedouble, a1);
    resp_fini(&r);
    http("GET", "/api/pools/999999", NULL, 0, "", &r);
    expect_error(&r, 404, "not_found", "pool");
    resp_fini(&r);
    post("/api/pools", "{\"name\":\"second\"}", "", &r);
    expect_status(&r, 201);
    resp_fini(&r);
    http("GET", "/api/pools", NULL, 0, "", &r);
    expect_status(&r, 200);
    items = cJSON_GetObjectItem(r.json, "items");
    assert_int_equal(cJSON_GetArraySize(items), 2);
    assert_int_equal(jint(cJSON_GetArrayItem(items, 0), "id"), pid);
    assert_string_equal(jstr(cJSON_GetArrayItem(items, 1), "name"), "second");
    resp_fini(&r);
}

static void
test_group_modes(void **state)
{
    int64_t g = create_group("mode-g"), pid;
    char path[96], body[128];
    const cJSON *items, *it;
    struct resp r;
    int found = 0;
    uint64_t v;

    (void)state;
    post("/api/pools", "{\"name\":\"mode-pool\"}", "", &r);
    expect_status(&r, 201);
    pid = jint(r.json, "id");
    resp_fini(&r);

    http("GET", "/api/groups", NULL, 0, "", &r);
    expect_status(&r, 200);
    items = cJSON_GetObjectItem(r.json, "items");
    cJSON_ArrayForEach(it, items)
    {
        if (jint(it, "id") == g) {
            found = 1;
            assert_string_equal(jstr(it, "name"), "mode-g");
            assert_string_equal(jstr(it, "mode"), "dedicated");
            assert_true(cJSON_IsNull(cJSON_GetObjectItem(it, "pool_id")));
        }
    }
    assert_true(found);
    resp_fini(&r);

    v = config_version();
    snprintf(path, sizeof(path), "/api/groups/%lld", (long long)g);
    patch(path, "{\"mode\":\"pool\"}", &r);
    expect_error(&r, 400, "invalid_request", "pool_id");
    resp_fini(&r);
    patch(path, "{\"mode\":\"hybrid\",\"pool_id\":999999}", &r);
    expect_error(&r, 404, "not_found", "pool 999999");
    resp_fini(&r);
    patch("/api/groups/999999", "{\"mode\":\"dedicated\"}", &r);
    expect_error(&r, 404, "not_found", "group 999999");
    resp_fini(&r);
    patch(path, "{\"mode\":\"shared\"}", &r);
    expect_error(&r, 400, "invalid_request", "mode");
    resp_fini(&r);
    patch(path, "{\"pool_id\":\"1\"}", &r);
    expect_error(&r, 400, "invalid_request", "pool_id");
    resp_fini(&r);
    patch(path, "{\"name\":\"renamed\"}", &r);
    expect_error(&r, 400, "invalid_request", "name");
    resp_fini(&r);
    assert_int_equal(config_version(), v);

    snprintf(body, sizeof(body), "{\"mode\":\"hybrid\",\"pool_id\":%lld}", (long long)pid);
    patch(path, body, &r);
    expect_status(&r, 200);
    assert_string_equal(jstr(r.json, "mode"), "hybrid");
    assert_int_equal(jint(r.json, "pool_id"), pid);
    assert_string_equal(jstr(r.json, "name"), "mode-g");
    resp_fini(&r);
    patch(path, "{\"pool_id\":null}", &r);
    expect_error(&r, 400, "invalid_request", "pool_id");
    resp_fini(&r);
    patch(path, "{\"mode\":\"dedicated\",\"pool_id\":null}", &r);
    expect_status(&r, 200);
    assert_string_equal(jstr(r.json, "mode"), "dedicated");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "pool_id")));
    resp_fini(&r);
    assert_int_equal(config_version(), v + 2);
}

static void
test_key_limits(void **state)
{
    int64_t g = create_group("limits-g"), id, other;
    struct gw_wire_snapshot snap;
    char body[512], path[96];
    const cJSON *items, *models;
    struct resp r;
    int found = 0;

    (void)state;
    snprintf(body, sizeof(body),
             "{\"group_id\":%lld,\"name\":\"limited\",\"rpm_limit\":60,\"tpm_limit\":4294967295,"
             "\"concurrency_limit\":2,\"allowed_models\":[\"claude-haiku-4-5\"],"
             "\"expires_at\":4102444800}",
             (long long)g);
    post("/api/keys", body, "", &r);
    expect_status(&r, 201);
    id = jint(r.json, "id");
    assert_int_equal(jint(r.json, "rpm_limit"), 60);
    assert_int_equal(jint(r.json, "tpm_limit"), 4294967295LL);
    assert_int_equal(jint(r.json, "concurrency_limit"), 2);
    assert_int_equal(jint(r.json, "expires_at"), 4102444800LL);
    assert_int_equal(jbool(r.json, "enabled"), 1);
    models = cJSON_GetObjectItem(r.json, "allowed_models");
    assert_int_equal(cJSON_GetArraySize(models), 1);
    assert_string_equal(cJSON_GetArrayItem(models, 0)->valuestring, "claude-haiku-4-5");
    assert_true(strlen(jstr(r.json, "key")) > 20);
    resp_fini(&r);
    snprintf(body, sizeof(body), "{\"group_id\":%lld,\"name\":\"plain\"}", (long long)g);
    post("/api/keys", body, "", &r);
    expect_status(&r, 201);
    other = jint(r.json, "id");
    assert_int_equal(jint(r.json, "rpm_limit"), 0);
    assert_int_equal(jint(r.json, "expires_at"), 0);
    resp_fini(&r);

    {
        static const char *const bad[][2] = {
            {"\"rpm_limit\":-1", "rpm_limit"},
            {"\"tpm_limit\":4294967296", "tpm_limit"},
            {"\"concurrency_limit\":100001", "concurrency_limit"},
            {"\"allowed_models\":[\"\"]", "allowed_models"},
            {"\"allowed_models\":{}", "allowed_models"},
            {"\"expires_at\":-5", "expires_at"},
            {"\"expires_at\":\"tomorrow\"", "expires_at"},
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            snprintf(body, sizeof(body), "{\"group_id\":%lld,\"name\":\"x\",%s}", (long long)g,
                     bad[i][0]);
            post("/api/keys", body, "", &r);
            expect_error(&r, 400, "invalid_request", bad[i][1]);
            resp_fini(&r);
        }
    }

    /* The limits reach the snapshot. */
    memset(&snap, 0, sizeof(snap));
    GW_PASS(hub_store_snapshot_load(fx.store, &snap));
    for (size_t i = 0; i < snap.n_keys; i++) {
        if (snap.keys[i].id != (uint64_t)id)
            continue;
        found = 1;
        assert_int_equal(snap.keys[i].rpm_limit, 60);
        assert_int_equal(snap.keys[i].tpm_limit, UINT32_MAX);
        assert_int_equal(snap.keys[i].concurrency_limit, 2);
        assert_int_equal(snap.keys[i].n_allowed_models, 1);
        assert_int_equal(snap.keys[i].expires_at, 4102444800LL);
    }
    assert_true(found);
    hub_store_snapshot_fini(&snap);

    /* Listing by group: never the key itself. */
    snprintf(path, sizeof(path), "/api/keys?group_id=%lld", (long long)g);
    http("GET", path, NULL, 0, "", &r);
    expect_status(&r, 200);
    items = cJSON_GetObjectItem(r.json, "items");
    assert_int_equal(cJSON_GetArraySize(items), 2);
    assert_int_equal(jint(cJSON_GetArrayItem(items, 0), "id"), id);
    assert_int_equal(jint(cJSON_GetArrayItem(items, 1), "id"), other);
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(items, 0), "key"));
    assert_int_equal(strlen(jstr(cJSON_GetArrayItem(items, 0), "prefix")), HUB_KEY_DISPLAY_LEN);
    resp_fini(&r);
    http("GET", "/api/keys?group_id=abc", NULL, 0, "", &r);
    expect_error(&r, 400, "invalid_request", "group_id");
    resp_fini(&r);
    http("GET", "/api/keys", NULL, 0, "", &r);
    expect_status(&r, 200);
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")) >= 3);
    resp_fini(&r);

    /* Changes. */
    snprintf(path, sizeof(path), "/api/keys/%lld", (long long)id);
    patch(path,
          "{\"rpm_limit\":0,\"allowed_models\":[],\"name\":\"relaxed\",\"enabled\":false,"
          "\"expires_at\":null}",
          &r);
    expect_status(&r, 200);
    assert_int_equal(jint(r.json, "rpm_limit"), 0);
    assert_int_equal(jint(r.json, "tpm_limit"), 4294967295LL);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "allowed_models")), 0);
    assert_string_equal(jstr(r.json, "name"), "relaxed");
    assert_int_equal(jbool(r.json, "enabled"), 0);
    assert_int_equal(jint(r.json, "expires_at"), 0);
    resp_fini(&r);
    patch(path, "{\"group_id\":1}", &r);
    expect_error(&r, 400, "invalid_request", "group_id");
    resp_fini(&r);
    patch(path, "{\"concurrency_limit\":-2}", &r);
    expect_error(&r, 400, "invalid_request", "concurrency_limit");
    resp_fini(&r);
    patch(path, "{\"enabled\":null}", &r);
    expect_error(&r, 400, "invalid_request", "enabled");
    resp_fini(&r);
    patch(path, "{}", &r);
    expect_error(&r, 400, "invalid_request", "nothing to change");
    resp_fini(&r);
    http("GET", path, NULL, 0, "", &r);
    expect_status(&r, 200);
    assert_string_equal(jstr(r.json, "name"), "relaxed");
    resp_fini(&r);

    /* Revocation: 204, then gone everywhere. */
    http("DELETE", path, NULL, 0, "", &r);
    expect_status(&r, 204);
    assert_int_equal(r.body.len, 0);
    resp_fini(&r);
    http("DELETE", path, NULL, 0, "", &r);
    expect_error(&r, 404, "not_found", "key");
    resp_fini(&r);
    http("GET", path, NULL, 0, "", &r);
    expect_error(&r, 404, "not_found", "key");
    resp_fini(&r);
    patch(path, "{\"enabled\":true}", &r);
    expect_error(&r, 404, "not_found", "key");
    resp_fini(&r);
    snprintf(path, sizeof(path), "/api/keys?group_id=%lld", (long long)g);
    http("GET", path, NULL, 0, "", &r);
    expect_status(&r, 200);
    items = cJSON_GetObjectItem(r.json, "items");
    assert_int_equal(cJSON_GetArraySize(items), 1);
    assert_int_equal(jint(cJSON_GetArrayItem(items, 0), "id"), other);
    resp_fini(&r);
    memset(&snap, 0, sizeof(snap));
    GW_PASS(hub_store_snapshot_load(fx.store, &snap));
    for (size_t i = 0; i < snap.n_keys; i++)
        assert_true(snap.keys[i].id != (uint64_t)id);
    hub_store_snapshot_fini(&snap);
}

static void
fill_record(struct gw_usage_record *r, const char *rid, uint64_t key_id, const char *model,
            int64_t time_ms)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->request_id, sizeof(r->request_id), "%s", rid);
    snprintf(r->model, sizeof(r->model), "%s", model);
    snprintf(r->dialect, sizeof(r->dialect), "anthropic");
    r->key_id = key_id;
    r->account_id = 3;
    r->time_ms = time_ms;
}

static const cJSON *
find_item(const cJSON *items, const char *rid)
{
    const cJSON *it;

    cJSON_ArrayForEach(it, items)
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "request_id");
        if (cJSON_IsString(v) && strcmp(v->valuestring, rid) == 0)
            return it;
    }
    fail_msg("request %s not listed", rid);
    return NULL;
}

static void
test_usage(void **state)
{
    struct gw_usage_record recs[3];
    struct gw_wire_usage_batch batch;
    int64_t costs[3] = {123, 1234567, -1};
    char edge_id[] = "edge-test";
    uint64_t key_id = (uint64_t)created_key_id;
    const cJSON *items, *it;
    char path[128];
    int dup = -1;
    struct resp r;

    (void)state;
    assert_true(key_id > 0);
    fill_record(&recs[0], "req-priced", key_id, "claude-sonnet-4", 1700000000000);
    recs[0].input_tokens = 10;
    recs[0].output_tokens = 20;
    recs[0].cache_read_tokens = 30;
    recs[0].cache_write_5m_tokens = 40;
    recs[0].cache_write_1h_tokens = 50;
    recs[0].reasoning_tokens = 6;
    recs[0].status = 200;
    recs[0].latency_ms = 321;
    fill_record(&recs[1], "req-big", key_id, "claude-opus-4", 1700000001000);
    recs[1].status = 200;
    fill_record(&recs[2], "req-unpriced", key_id, "mystery-model", 1700000002000);
    recs[2].status = 502;
    recs[2].partial = 1;
    memset(&batch, 0, sizeof(batch));
    batch.edge_id = edge_id;
    batch.seq = 1;
    batch.records = recs;
    batch.n_records = 3;
    GW_PASS(hub_store_usage_apply(fx.store, &batch, costs, &dup));
    assert_int_equal(dup, 0);

    snprintf(path, sizeof(path), "/api/usage?key_id=%llu", (unsigned long long)key_id);
    http("GET", path, NULL, 0, "", &r);
    expect_status(&r, 200);
    items = cJSON_GetObjectItemCaseSensitive(r.json, "items");
    assert_true(cJSON_IsArray(items));
    assert_int_equal(cJSON_GetArraySize(items), 3);
    /* Newest first. */
    assert_string_equal(jstr(cJSON_GetArrayItem(items, 0), "request_id"), "req-unpriced");

    it = find_item(items, "req-priced");
    assert_string_equal(jstr(it, "edge_id"), "edge-test");
    assert_int_equal(jint(it, "key_id"), (int64_t)key_id);
    assert_int_equal(jint(it, "account_id"), 3);
    assert_string_equal(jstr(it, "model"), "claude-sonnet-4");
    assert_string_equal(jstr(it, "dialect"), "anthropic");
    assert_int_equal(jint(it, "input_tokens"), 10);
    assert_int_equal(jint(it, "output_tokens"), 20);
    assert_int_equal(jint(it, "cache_read_tokens"), 30);
    assert_int_equal(jint(it, "cache_write_5m_tokens"), 40);
    assert_int_equal(jint(it, "cache_write_1h_tokens"), 50);
    assert_int_equal(jint(it, "cache_write_tokens"), 90);
    assert_int_equal(jint(it, "reasoning_tokens"), 6);
    assert_string_equal(jstr(it, "cost"), "0.000123");
    assert_int_equal(jint(it, "cost_micros"), 123);
    assert_int_equal(jbool(it, "priced"), 1);
    assert_int_equal(jint(it, "status"), 200);
    assert_int_equal(jint(it, "latency_ms"), 321);
    assert_int_equal(jint(it, "time_ms"), 1700000000000);
    assert_int_equal(jbool(it, "partial"), 0);

    it = find_item(items, "req-big");
    assert_string_equal(jstr(it, "cost"), "1.234567");
    assert_int_equal(jint(it, "cost_micros"), 1234567);

    it = find_item(items, "req-unpriced");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(it, "cost")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(it, "cost_micros")));
    assert_int_equal(jbool(it, "priced"), 0);
    assert_int_equal(jbool(it, "partial"), 1);
    assert_int_equal(jint(it, "status"), 502);
    resp_fini(&r);

    /* Paging. */
    snprintf(path, sizeof(path), "/api/usage?key_id=%llu&limit=1&offset=1",
             (unsigned long long)key_id);
    http("GET", path, NULL, 0, "", &r);
    expect_status(&r, 200);
    items = cJSON_GetObjectItemCaseSensitive(r.json, "items");
    assert_int_equal(cJSON_GetArraySize(items), 1);
    assert_string_equal(jstr(cJSON_GetArrayItem(items, 0), "request_id"), "req-big");
    resp_fini(&r);

    /* Another key has no rows. */
    snprintf(path, sizeof(path), "/api/usage?key_id=%llu", (unsigned long long)key_id + 77);
    http("GET", path, NULL, 0, "", &r);
    expect_status(&r, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 0);
    resp_fini(&r);

    http("GET", "/api/usage?limit=0", NULL, 0, "", &r);
    expect_error(&r, 400, "invalid_request", "limit");
    resp_fini(&r);
    http("GET", "/api/usage?limit=1001", NULL, 0, "", &r);
    expect_error(&r, 400, "invalid_request", "limit");
    resp_fini(&r);
    http("GET", "/api/usage?key_id=abc", NULL, 0, "", &r);
    expect_error(&r, 400, "invalid_request", "key_id");
    resp_fini(&r);
    http("GET", "/api/usage?offset=-1", NULL, 0, "", &r);
    expect_error(&r, 400, "invalid_request", "offset");
    resp_fini(&r);
}

static void
test_status(void **state)
{
    struct resp r;
    uint64_t v = 0;

    (void)state;
    GW_PASS(hub_store_config_version(fx.store, &v));
    http("GET", "/api/status", NULL, 0, "", &r);
    expect_status(&r, 200);
    assert_int_equal(jint(r.json, "config_version"), (int64_t)v);
    assert_true(v > 0);
    assert_string_equal(jstr(r.json, "store"), "sqlite");
    assert_string_equal(jstr(r.json, "version"), "0.1.0");
    resp_fini(&r);
}

static void
test_body_limit(void **state)
{
    size_t n = HUB_ADMIN_API_MAX_BODY + 1024;
    char *big = malloc(n);
    struct resp r;

    (void)state;
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    http("POST", "/api/groups", big, n, "", &r);
    expect_status(&r, 413);
    resp_fini(&r);
    free(big);
    /* The API still answers afterwards. */
    http("GET", "/healthz", NULL, 0, NULL, &r);
    expect_status(&r, 200);
    resp_fini(&r);
}

/* ---- edges ---------------------------------------------------------------- */

static const cJSON *
edge_item(const cJSON *list, const char *id)
{
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(list, "items");
    const cJSON *it;

    cJSON_ArrayForEach(it, items)
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsString(v) && strcmp(v->valuestring, id) == 0)
            return it;
    }
    return NULL;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double
jnum(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (!cJSON_IsNumber(v))
        fail_msg("no number %s", name);
    return v->valuedouble;
}

static void
test_edges(void **state)
{
    struct resp r;
    char id[HUB_EDGE_ID_MAX + 1], id2[HUB_EDGE_ID_MAX + 1], secret[128], path[128];
    struct hub_edge e;
    struct gw_buf plain = GW_BUF_INIT, raw = GW_BUF_INIT;
    struct gw_wire_heartbeat hb = {.snapshot_source = (char *)"hub", .version = (char *)"t"};
    uint64_t v = 0;
    const cJSON *it;

    (void)state;
    post("/api/edges", "{\"region\":\"eu\"}", "", &r);
    expect_error(&r, 400, "invalid_request", "name");
    resp_fini(&r);
    post("/api/edges", "{\"name\":\"x\",\"colour\":1}", "", &r);
    expect_error(&r, 400, "invalid_request", "colour");
    resp_fini(&r);

    post("/api/edges", "{\"name\":\"paris\",\"region\":\"eu-west\"}", "", &r);
    expect_status(&r, 201);
    snprintf(id, sizeof(id), "%s", jstr(r.json, "id"));
    snprintf(secret, sizeof(secret), "%s", jstr(r.json, "secret"));
    assert_string_equal(jstr(r.json, "name"), "paris");
    assert_string_equal(jstr(r.json, "region"), "eu-west");
    resp_fini(&r);
    /* >= 32 random bytes, base64url. */
    GW_PASS(gw_base64url_decode(secret, strlen(secret), &raw));
    assert_true(raw.len >= 32);
    gw_buf_fini(&raw);
    assert_null(strpbrk(secret, "+/="));

    /* Stored sealed under "edge-secret", never in the clear. */
    GW_PASS(hub_store_edge_get(fx.store, id, &e));
    assert_int_equal(e.trusted, 0);
    assert_null(memmem(e.secret_sealed, e.secret_sealed_len, secret, strlen(secret)));
    GW_PASS(hub_link_open_edge_secret(fx.master, e.secret_sealed, e.secret_sealed_len, &plain));
    assert_int_equal(plain.len, strlen(secret));
    assert_memory_equal(plain.data, secret, plain.len);
    gw_buf_fini(&plain);
    hub_edge_fini(&e);

    post("/api/edges", "{\"name\":\"tokyo\"}", "", &r);
    expect_status(&r, 201);
    snprintf(id2, sizeof(id2), "%s", jstr(r.json, "id"));
    assert_string_not_equal(id, id2);
    resp_fini(&r);

    /* Never seen: offline. Then two heartbeats 5 s apart: online, with
     * rates; the other edge last heard 30 s ago: stale. */
    http("GET", "/api/edges", NULL, 0, "", &r);
    expect_status(&r, 200);
    it = edge_item(r.json, id);
    assert_non_null(it);
    assert_string_equal(jstr(it, "status"), "offline");
    assert_null(cJSON_GetObjectItemCaseSensitive(it, "secret"));
    resp_fini(&r);

    GW_PASS(hub_store_config_version(fx.store, &v));
    hb.snapshot_version = v - 1;
    hb.requests_total = 100;
    hb.errors_total = 1;
    GW_PASS(hub_store_edge_heartbeat(fx.store, id, &hb, now_ms() - 6000));
    hb.requests_total = 200;
    hb.errors_total = 11;
    GW_PASS(hub_store_edge_heartbeat(fx.store, id, &hb, now_ms() - 1000));
    GW_PASS(hub_store_edge_heartbeat(fx.store, id2, &hb, now_ms() - 30000));
    http("GET", "/api/edges", NULL, 0, "", &r);
    expect_status(&r, 200);
    it = edge_item(r.json, id);
    assert_non_null(it);
    assert_string_equal(jstr(it, "status"), "online");
    assert_string_equal(jstr(it, "region"), "eu-west");
    assert_int_equal(jint(it, "lag"), 1);
    assert_int_equal(jint(it, "snapshot_version"), (int64_t)v - 1);
    assert_true(jint(it, "last_seen_ms") > 0);
    assert_true(jnum(it, "requests_per_s") > 19.0 && jnum(it, "requests_per_s") < 21.0);
    assert_true(jnum(it, "error_rate") > 0.09 && jnum(it, "error_rate") < 0.11);
    assert_int_equal(jbool(it, "revoked"), 0);
    it = edge_item(r.json, id2);
    assert_non_null(it);
    assert_string_equal(jstr(it, "status"), "stale");
    resp_fini(&r);

    /* Revocation. */
    snprintf(path, sizeof(path), "/api/edges/%s", id);
    http("DELETE", path, NULL, 0, "", &r);
    expect_status(&r, 204);
    resp_fini(&r);
    http("DELETE", path, NULL, 0, "", &r);
    expect_error(&r, 404, "not_found", id);
    resp_fini(&r);
    http("DELETE", "/api/edges/no-such-edge", NULL, 0, "", &r);
    expect_error(&r, 404, "not_found", "no-such-edge");
    resp_fini(&r);
    http("DELETE", "/api/edges/bad%20id", NULL, 0, "", &r);
    expect_status(&r, 404);
    resp_fini(&r);
    http("GET", "/api/edges", NULL, 0, "", &r);
    it = edge_item(r.json, id);
    assert_non_null(it);
    assert_int_equal(jbool(it, "revoked"), 1);
    resp_fini(&r);
}

/* DELETE /api/keys/{id} shows up in the change log as key_removed. */
static void
test_key_revoke_replicated(void **state)
{
    int64_t g = create_group("repl-g");
    struct gw_wire_deltas d;
    char body[128], path[64];
    struct resp r;
    uint64_t v = 0;
    int64_t kid;
    int found = 0;

    (void)state;
    snprintf(body, sizeof(body), "{\"group_id\":%lld,\"name\":\"gone\"}", (long long)g);
    post("/api/keys", body, "", &r);
    expect_status(&r, 201);
    kid = jint(r.json, "id");
    resp_fini(&r);
    GW_PASS(hub_store_config_version(fx.store, &v));
    snprintf(path, sizeof(path), "/api/keys/%lld", (long long)kid);
    http("DELETE", path, NULL, 0, "", &r);
    expect_status(&r, 204);
    resp_fini(&r);
    GW_PASS(hub_store_changes_since(fx.store, v, 100, &d));
    assert_int_equal(d.to_version, v + 1);
    for (size_t i = 0; i < d.n_changes; i++) {
        if (d.changes[i].kind == GW_CHANGE_KEY_REMOVED &&
            d.changes[i].u.removed_id == (uint64_t)kid)
            found = 1;
    }
    assert_true(found);
    hub_store_deltas_fini(&d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz_and_routing),
        cmocka_unit_test(test_auth_required),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_login_rate_limit),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_accounts),
        cmocka_unit_test(test_bindings),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_account_kinds),
        cmocka_unit_test(test_account_read_and_change),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_group_modes),
        cmocka_unit_test(test_key_limits),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_key_revoke_replicated),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
