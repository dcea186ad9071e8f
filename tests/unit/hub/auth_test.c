/* SPDX-License-Identifier: Apache-2.0 */
/* Admin JWTs (round trip, tampering, alg confusion, expiry, garbage),
 * refresh tokens and the login attempt limiter. Forged tokens are built
 * here from the spec (base64url parts, HMAC-SHA256 with the key derived
 * from the master secret) so the checks are exercised one at a time. */
#include "gw_test.h"

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "gw_buf.h"
#include "gw_crypto.h"
#include "gw_json.h"

static uint8_t master[HUB_AUTH_MASTER_LEN];
static const int64_t NOW = 1700000000;

static int
setup(void **state)
{
    struct hub_auth *a = NULL;

    if (gw_random_bytes(master, sizeof(master)) != GW_OK)
        return -1;
    if (hub_auth_new(master, 900, &a) != GW_OK)
        return -1;
    *state = a;
    return 0;
}

static int
teardown(void **state)
{
    hub_auth_free(*state);
    return 0;
}

/* header_json.payload_json.signature, signed with key (NULL = empty sig). */
static void
forge(const char *header_json, const char *payload_json, const uint8_t *key, struct gw_buf *out)
{
    uint8_t mac[GW_SHA256_LEN];
    size_t signed_len;

    gw_buf_reset(out);
    gw_base64url_encode(header_json, strlen(header_json), out);
    gw_buf_append(out, ".", 1);
    gw_base64url_encode(payload_json, strlen(payload_json), out);
    signed_len = out->len;
    gw_buf_append(out, ".", 1);
    if (key != NULL) {
        gw_hmac_sha256(key, GW_AES_KEY_LEN, out->data, signed_len, mac);
        gw_base64url_encode(mac, sizeof(mac), out);
    }
}

static void
jwt_key(uint8_t key[GW_AES_KEY_LEN])
{
    gw_derive_key(master, sizeof(master), "jwt-hs256", key);
}

static const char good_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
static const char good_payload[] =
    "{\"sub\":\"7\",\"name\":\"root\",\"iat\":1700000000,\"exp\":1700000900,\"typ\":\"access\"}";

static void
test_round_trip(void **state)
{
    struct hub_auth *a = *state;
    struct gw_buf tok = GW_BUF_INIT, part = GW_BUF_INIT;
    struct hub_auth_claims c;
    const char *dot;
    cJSON *obj;
    const char *why = NULL;
    int64_t v;
    const char *s;

    GW_PASS(hub_auth_issue_access(a, 42, "admin", NOW, &tok));
    GW_PASS(hub_auth_verify_access(a, tok.data, tok.len, NOW, &c));
    assert_int_equal(c.sub, 42);
    assert_string_equal(c.name, "admin");
    assert_int_equal(c.iat, NOW);
    assert_int_equal(c.exp, NOW + 900);

    /* The header is exactly the documented one. */
    dot = strchr(tok.data, '.');
    GW_PASS(gw_base64url_decode(tok.data, (size_t)(dot - tok.data), &part));
    assert_string_equal(part.data, good_header);
    /* The claims carry sub as a string and typ "access". */
    gw_buf_reset(&part);
    GW_PASS(gw_base64url_decode(dot + 1, (size_t)(strchr(dot + 1, '.') - dot - 1), &part));
    obj = gw_json_parse(part.data, part.len, &why);
    assert_non_null(obj);
    GW_PASS(gw_json_get_str(obj, "sub", &s));
    assert_string_equal(s, "42");
    GW_PASS(gw_json_get_str(obj, "typ", &s));
    assert_string_equal(s, "access");
    GW_PASS(gw_json_get_int(obj, "exp", &v));
    assert_int_equal(v, NOW + 900);
    cJSON_Delete(obj);

    /* A token built by hand from the spec verifies too. */
    {
        uint8_t key[GW_AES_KEY_LEN];
        jwt_key(key);
        forge(good_header, good_payload, key, &tok);
        GW_PASS(hub_auth_verify_access(a, tok.data, tok.len, NOW, &c));
        assert_int_equal(c.sub, 7);
        assert_string_equal(c.name, "root");
    }
    gw_buf_fini(&tok);
    gw_buf_fini(&part);
}

static void
test_tampered(void **state)
{
    struct hub_auth *a = *state;
    struct gw_buf tok = GW_BUF_INIT, other = GW_BUF_INIT, mixed = GW_BUF_INIT;
    struct hub_auth_claims c;
    char *sig;

    GW_PASS(hub_auth_issue_access(a, 1, "alice", NOW, &tok));
    /* Flip one signature character. */
    sig = strrchr(tok.data, '.') + 1;
    {
        char saved = sig[5];
        sig[5] = saved == 'A' ? 'B' : 'A';
        GW_FAIL(hub_auth_verify_access(a, tok.data, tok.len, NOW, &c), GW_EAUTH);
        sig[5] = saved;
    }
    GW_PASS(hub_auth_verify_access(a, tok.data, tok.len, NOW, &c));
    /* One changed character in the claims. */
    {
        char *claims = strchr(tok.data, '.') + 1;
        char saved = claims[3];
        claims[3] = saved == 'A' ? 'B' : 'A';
        GW_FAIL(hub_auth_verify_access(a, tok.data, tok.len, NOW, &c), GW_EAUTH);
        claims[3] = saved;
    }

    /* Claims of one token with the signature of another. */
    GW_PASS(hub_auth_issue_access(a, 2, "mallory", NOW, &other));
    gw_buf_append(&mixed, other.data, (size_t)(strrchr(other.data, '.') - other.data));
    gw_buf_append_str(&mixed, strrchr(tok.data, '.'));
    GW_FAIL(hub_auth_verify_access(a, mixed.data, mixed.len, NOW, &c), GW_EAUTH);

    /* Truncated signature, extra characters, padding. */
    GW_FAIL(hub_auth_verify_access(a, tok.data, tok.len - 1, NOW, &c), GW_EAUTH);
    gw_buf_reset(&mixed);
    gw_buf_append(&mixed, tok.data, tok.len);
    gw_buf_append_str(&mixed, "A");
    GW_FAIL(hub_auth_verify_access(a, mixed.data, mixed.len, NOW, &c), GW_EAUTH);
    gw_buf_reset(&mixed);
    gw_buf_append(&mixed, tok.data, tok.len);
    gw_buf_append_str(&mixed, "=");
    GW_FAIL(hub_auth_verify_access(a, mixed.data, mixed.len, NOW, &c), GW_EAUTH);

    /* Another master key does not verify it. */
    {
        struct hub_auth *b = NULL;
        uint8_t m2[HUB_AUTH_MASTER_LEN];
        GW_PASS(gw_random_bytes(m2, sizeof(m2)));
        GW_PASS(hub_auth_new(m2, 900, &b));
        GW_FAIL(hub_auth_verify_access(b, tok.data, tok.len, NOW, &c), GW_EAUTH);
        hub_auth_free(b);
    }
    gw_buf_fini(&tok);
    gw_buf_fini(&other);
    gw_buf_fini(&mixed);
}

static void
test_wrong_alg(void **state)
{
    struct hub_auth *a = *state;
    struct gw_buf tok = GW_BUF_INIT;
    struct hub_auth_claims c;
    uint8_t key[GW_AES_KEY_LEN];
    static const char *const headers[] = {
        "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
        "{\"alg\":\"hs256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
        "{\"typ\":\"JWT\"}",
        "{\"alg\":256,\"typ\":\"JWT\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JWE\"}",
        "[\"HS256\"]",
    };

    jwt_key(key);
    /* alg "none" with an empty signature: the classic forgery. */
    forge(headers[0], good_payload, NULL, &tok);
    GW_FAIL(hub_auth_verify_access(a, tok.data, tok.len, NOW, &c), GW_EAUTH);
    /* Even correctly MACed, any header but HS256/JWT is refused. */
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        forge(headers[i], good_payload, key, &tok);
        if (hub_auth_verify_access(a, tok.data, tok.len, NOW, &c) != GW_EAUTH)
            fail_msg("header %s accepted", headers[i]);
    }
    /* Control: the same payload with the right header passes. */
    forge(good_header, good_payload, key, &tok);
    GW_PASS(hub_auth_verify_access(a, tok.data, tok.len, NOW, &c));
    gw_buf_fini(&tok);
}

static void
test_bad_claims(void **state)
{
    struct hub_auth *a = *state;
    struct gw_buf tok = GW_BUF_INIT;
    struct hub_auth_claims c;
    uint8_t key[GW_AES_KEY_LEN];
    static const char *const payloads[] = {
        /* typ must be "access" */
        "{\"sub\":\"7\",\"name\":\"root\",\"iat\":1700000000,\"exp\":1700000900,\"typ\":"
        "\"refresh\"}",
        "{\"sub\":\"7\",\"name\":\"root\",\"iat\":1700000000,\"exp\":1700000900}",
        /* sub must be a positive decimal string */
        "{\"sub\":7,\"name\":\"root\",\"iat\":1700000000,\"exp\":1700000900,\"typ\":\"access\"}",
        "{\"sub\":\"07\",\"name\":\"root\",\"iat\":1700000000,\"exp\":1700000900,\"typ\":"
        "\"access\"}",
        "{\"sub\":\"7x\",\"name\":\"root\",\"iat\":1700000000,\"exp\":1700000900,\"typ\":"
        "\"access\"}",
        "{\"name\":\"root\",\"iat\":1700000000,\"exp\":1700000900,\"typ\":\"access\"}",
        /* exp must be an integer */
        "{\"sub\":\"7\",\"name\":\"root\",\"iat\":1700000000,\"exp\":\"1700000900\",\"typ\":"
        "\"access\"}",
        "{\"sub\":\"7\",\"name\":\"root\",\"iat\":1700000000,\"typ\":\"access\"}",
        "{\"sub\":\"7\",\"name\":\"root\",\"iat\":1700000000,\"exp\":1.7e9,\"typ\":\"access\"}",
        "{\"sub\":\"7\",\"iat\":1700000000,\"exp\":1700000900,\"typ\":\"access\"}",
        "not json",
        "[]",
    };

    jwt_key(key);
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        forge(good_header, payloads[i], key, &tok);
        if (hub_auth_verify_access(a, tok.data, tok.len, NOW, &c) != GW_EAUTH)
            fail_msg("payload %s accepted", payloads[i]);
    }
    gw_buf_fini(&tok);
}

static void
test_expired(void **state)
{
    struct hub_auth *a = *state;
    struct gw_buf tok = GW_BUF_INIT;
    struct hub_auth_claims c;

    GW_PASS(hub_auth_issue_access(a, 3, "bob", NOW, &tok));
    GW_PASS(hub_auth_verify_access(a, tok.data, tok.len, NOW + 899, &c));
    GW_FAIL(hub_auth_verify_access(a, tok.data, tok.len, NOW + 900, &c), GW_EAUTH);
    GW_FAIL(hub_auth_verify_access(a, tok.data, tok.len, NOW + 86400, &c), GW_EAUTH);
    gw_buf_fini(&tok);
}

static void
test_garbage(void **state)
{
    struct hub_auth *a = *state;
    struct hub_auth_claims c;
    static const char *const junk[] = {
        "",
        ".",
        "..",
        "...",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "Bearer x.y.z",
        "eyJhbGciOiJIUzI1NiJ9..",
        "!!!.@@@.###",
        "e30.e30.",
        "e30.e30.e30",
    };
    char big[HUB_AUTH_TOKEN_MAX + 10];

    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        if (hub_auth_verify_access(a, junk[i], strlen(junk[i]), NOW, &c) != GW_EAUTH)
            fail_msg("junk %s accepted", junk[i]);
    }
    GW_FAIL(hub_auth_verify_access(a, NULL, 0, NOW, &c), GW_EAUTH);
    memset(big, 'A', sizeof(big));
    big[100] = '.';
    big[200] = '.';
    GW_FAIL(hub_auth_verify_access(a, big, sizeof(big), NOW, &c), GW_EAUTH);
    /* Names that do not fit the claims are refused at issue time. */
    {
        struct gw_buf tok = GW_BUF_INIT;
        char longname[80];
        memset(longname, 'n', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        GW_FAIL(hub_auth_issue_access(a, 1, longname, NOW, &tok), GW_EINVAL);
        gw_buf_fini(&tok);
    }
}

static void
test_refresh(void **state)
{
    struct hub_auth *a = *state;
    struct gw_buf r1 = GW_BUF_INIT, r2 = GW_BUF_INIT, raw = GW_BUF_INIT;
    uint64_t id = 0;

    GW_PASS(hub_auth_issue_refresh(a, 11, NOW, &r1));
    GW_PASS(hub_auth_issue_refresh(a, 12, NOW, &r2));
    GW_PASS(gw_base64url_decode(r1.data, r1.len, &raw));
    assert_int_equal(raw.len, HUB_AUTH_REFRESH_BYTES);
    assert_string_not_equal(r1.data, r2.data);
    GW_PASS(hub_auth_check_refresh(a, r1.data, r1.len, NOW + 60, &id));
    assert_int_equal(id, 11);
    GW_PASS(hub_auth_check_refresh(a, r2.data, r2.len, NOW + 60, &id));
    assert_int_equal(id, 12);
    r1.data[3] = r1.data[3] == 'x' ? 'y' : 'x';
    GW_FAIL(hub_auth_check_refresh(a, r1.data, r1.len, NOW + 60, &id), GW_EAUTH);
    GW_FAIL(hub_auth_check_refresh(a, r2.data, r2.len, NOW + HUB_AUTH_REFRESH_TTL_S, &id),
            GW_EAUTH);
    GW_FAIL(hub_auth_check_refresh(a, "", 0, NOW, &id), GW_EAUTH);
    gw_buf_fini(&r1);
    gw_buf_fini(&r2);
    gw_buf_fini(&raw);
}

static void
test_login_limit(void **state)
{
    struct hub_auth *a = *state;
    const int64_t t0 = 5000000;

    for (int i = 0; i < HUB_AUTH_LOGIN_MAX_ATTEMPTS; i++)
        GW_PASS(hub_auth_login_attempt(a, "admin", "10.0.0.1:4000", t0 + i));
    /* The peer's port does not matter: every connection has a new one. */
    GW_FAIL(hub_auth_login_attempt(a, "admin", "10.0.0.1:4001", t0 + 20), GW_EQUOTA);
    GW_FAIL(hub_auth_login_attempt(a, "admin", "10.0.0.1:4000", t0 + 30), GW_EQUOTA);
    /* Other user names and other peers are separate. */
    GW_PASS(hub_auth_login_attempt(a, "other", "10.0.0.1:4000", t0 + 30));
    GW_PASS(hub_auth_login_attempt(a, "admin", "10.0.0.2:4000", t0 + 30));
    GW_PASS(hub_auth_login_attempt(a, "admin", "[::1]:4000", t0 + 30));
    /* Still limited just before the window ends, free again after. */
    GW_FAIL(hub_auth_login_attempt(a, "admin", "10.0.0.1:1", t0 + HUB_AUTH_LOGIN_WINDOW_MS - 1),
            GW_EQUOTA);
    GW_PASS(hub_auth_login_attempt(a, "admin", "10.0.0.1:1", t0 + HUB_AUTH_LOGIN_WINDOW_MS));

    /* A successful login clears the count. */
    for (int i = 0; i < HUB_AUTH_LOGIN_MAX_ATTEMPTS; i++)
        GW_PASS(hub_auth_login_attempt(a, "carol", "10.0.0.3:1", t0));
    GW_FAIL(hub_auth_login_attempt(a, "carol", "10.0.0.3:1", t0), GW_EQUOTA);
    hub_auth_login_succeeded(a, "carol", "10.0.0.3:2");
    GW_PASS(hub_auth_login_attempt(a, "carol", "10.0.0.3:1", t0));
}

static void
test_login_limit_bounded(void **state)
{
    struct hub_auth *a = *state;
    char user[32];

    /* More distinct names than the table tracks: memory stays bounded and
     * every attempt is still answered. */
    for (int i = 0; i < HUB_AUTH_LOGIN_TRACKED + 100; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        GW_PASS(hub_auth_login_attempt(a, user, "10.9.9.9:1", 1000 + i));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_alg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_limit_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
