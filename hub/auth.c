/* SPDX-License-Identifier: Apache-2.0 */
/* HS256 JWTs for admin sessions, refresh tokens known only by their hash,
 * and a fixed-window limiter of login attempts. The signature is compared
 * as its canonical base64url text, so no second encoding of the same MAC is
 * ever accepted. */
#include "auth.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_crypto.h"
#include "gw_json.h"

#define AUTH_SIG_B64_LEN 43 /* base64url of 32 bytes, no padding */

struct auth_refresh {
    uint8_t hash[GW_SHA256_LEN];
    uint64_t admin_id;
    int64_t issued_s;
    int64_t exp_s;
};

struct auth_login {
    uint8_t who[GW_SHA256_LEN]; /* SHA-256 of user name, NUL, peer host */
    int64_t window_start_ms;
    uint32_t count;
    int used;
};

struct hub_auth {
    uint8_t jwt_key[GW_AES_KEY_LEN];
    int64_t access_ttl_s;
    pthread_mutex_t mu;
    struct auth_refresh *refresh; /* unordered */
    size_t n_refresh;
    struct auth_login login[HUB_AUTH_LOGIN_TRACKED];
};

static const char auth_header_json[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

gw_err
hub_auth_new(const uint8_t *master, int64_t access_ttl_s, struct hub_auth **out)
{
    struct hub_auth *a;

    if (master == NULL || access_ttl_s <= 0)
        return GW_EINVAL;
    a = gw_xcalloc(1, sizeof(*a));
    gw_derive_key(master, HUB_AUTH_MASTER_LEN, "jwt-hs256", a->jwt_key);
    a->access_ttl_s = access_ttl_s;
    if (pthread_mutex_init(&a->mu, NULL) != 0) {
        free(a);
        return GW_EINTERNAL;
    }
    a->refresh = gw_xcalloc(HUB_AUTH_REFRESH_MAX, sizeof(*a->refresh));
    *out = a;
    return GW_OK;
}

void
hub_auth_free(struct hub_auth *a)
{
    if (a == NULL)
        return;
    pthread_mutex_destroy(&a->mu);
    memset(a->jwt_key, 0, sizeof(a->jwt_key));
    free(a->refresh);
    free(a);
}

int64_t
hub_auth_access_ttl(const struct hub_auth *a)
{
    return a->access_ttl_s;
}

/* Appends base64url(HMAC-SHA256(jwt_key, signing_input)). */
static void
auth_sign(const struct hub_auth *a, const char *input, size_t len, struct gw_buf *out)
{
    uint8_t mac[GW_SHA256_LEN];

    gw_hmac_sha256(a->jwt_key, sizeof(a->jwt_key), input, len, mac);
    gw_base64url_encode(mac, sizeof(mac), out);
}

gw_err
hub_auth_issue_access(const struct hub_auth *a, uint64_t admin_id, const char *name, int64_t now_s,
                      struct gw_buf *out)
{
    struct gw_buf tok = GW_BUF_INIT;
    struct gw_buf payload = GW_BUF_INIT;
    char sub[24];
    cJSON *claims = NULL;
    gw_err rv;

    if (name == NULL || strlen(name) >= sizeof(((struct hub_auth_claims *)0)->name))
        return GW_EINVAL;
    snprintf(sub, sizeof(sub), "%" PRIu64, admin_id);
    claims = cJSON_CreateObject();
    if (claims == NULL) {
        rv = GW_ENOMEM;
        goto out;
    }
    if (cJSON_AddStringToObject(claims, "sub", sub) == NULL ||
        cJSON_AddStringToObject(claims, "name", name) == NULL) {
        rv = GW_ENOMEM;
        goto out;
    }
    rv = gw_json_add_int(claims, "iat", now_s);
    if (rv != GW_OK)
        goto out;
    rv = gw_json_add_int(claims, "exp", now_s + a->access_ttl_s);
    if (rv != GW_OK)
        goto out;
    if (cJSON_AddStringToObject(claims, "typ", "access") == NULL) {
        rv = GW_ENOMEM;
        goto out;
    }
    gw_json_append(&payload, claims);

    gw_base64url_encode(auth_header_json, sizeof(auth_header_json) - 1, &tok);
    gw_buf_append(&tok, ".", 1);
    gw_base64url_encode(payload.data, payload.len, &tok);
    {
        size_t signed_len = tok.len;
        gw_buf_append(&tok, ".", 1);
        auth_sign(a, tok.data, signed_len, &tok);
    }
    gw_buf_append(out, tok.data, tok.len);
    rv = GW_OK;
out:
    cJSON_Delete(claims);
    gw_buf_fini(&payload);
    gw_buf_fini(&tok);
    return rv;
}

/* Decodes one base64url part into a JSON object; NULL on any problem.
 * Padding is refused: a JWT part never has it. */
static cJSON *
auth_decode_part(const char *p, size_t len)
{
    struct gw_buf raw = GW_BUF_INIT;
    const char *why = NULL;
    cJSON *obj = NULL;

    if (len == 0 || memchr(p, '=', len) != NULL)
        return NULL;
    if (gw_base64url_decode(p, len, &raw) != GW_OK)
        goto out;
    obj = gw_json_parse(raw.data, raw.len, &why);
    if (obj != NULL && !cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        obj = NULL;
    }
out:
    gw_buf_fini(&raw);
    return obj;
}

static gw_err
auth_parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (s == NULL || s[0] < '1' || s[0] > '9')
        return GW_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == NULL || *end != '\0')
        return GW_EINVAL;
    *out = (uint64_t)v;
    return GW_OK;
}

gw_err
hub_auth_verify_access(const struct hub_auth *a, const char *token, size_t len, int64_t now_s,
                       struct hub_auth_claims *out)
{
    struct gw_buf sig = GW_BUF_INIT;
    const char *dot1, *dot2;
    const char *alg = NULL, *typ = NULL, *sub = NULL, *name = NULL;
    cJSON *header = NULL, *claims = NULL;
    struct hub_auth_claims c;
    gw_err rv = GW_EAUTH;

    memset(&c, 0, sizeof(c));
    if (token == NULL || len == 0 || len > HUB_AUTH_TOKEN_MAX)
        goto out;
    dot1 = memchr(token, '.', len);
    if (dot1 == NULL)
        goto out;
    dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        goto out;

    /* The algorithm is fixed: "none", RS256 or any other value is refused
     * before the signature is even looked at. */
    header = auth_decode_part(token, (size_t)(dot1 - token));
    if (header == NULL)
        goto out;
    if (gw_json_get_str(header, "alg", &alg) != GW_OK || strcmp(alg, "HS256") != 0)
        goto out;
    if (gw_json_get_str(header, "typ", &typ) == GW_OK && strcmp(typ, "JWT") != 0)
        goto out;

    if (len - (size_t)(dot2 + 1 - token) != AUTH_SIG_B64_LEN)
        goto out;
    auth_sign(a, token, (size_t)(dot2 - token), &sig);
    if (sig.len != AUTH_SIG_B64_LEN || !gw_ct_equal(sig.data, dot2 + 1, AUTH_SIG_B64_LEN))
        goto out;

    claims = auth_decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (claims == NULL)
        goto out;
    typ = NULL;
    if (gw_json_get_str(claims, "typ", &typ) != GW_OK || strcmp(typ, "access") != 0)
        goto out;
    if (gw_json_get_str(claims, "sub", &sub) != GW_OK || auth_parse_u64(sub, &c.sub) != GW_OK)
        goto out;
    if (gw_json_get_str(claims, "name", &name) != GW_OK || strlen(name) >= sizeof(c.name))
        goto out;
    memcpy(c.name, name, strlen(name) + 1);
    if (gw_json_get_int(claims, "iat", &c.iat) != GW_OK)
        goto out;
    if (gw_json_get_int(claims, "exp", &c.exp) != GW_OK || c.exp <= now_s)
        goto out;
    *out = c;
    rv = GW_OK;
out:
    cJSON_Delete(header);
    cJSON_Delete(claims);
    gw_buf_fini(&sig);
    return rv;
}

gw_err
hub_auth_issue_refresh(struct hub_auth *a, uint64_t admin_id, int64_t now_s, struct gw_buf *out)
{
    uint8_t raw[HUB_AUTH_REFRESH_BYTES];
    struct gw_buf text = GW_BUF_INIT;
    struct auth_refresh *slot = NULL;
    gw_err rv;

    rv = gw_random_bytes(raw, sizeof(raw));
    if (rv != GW_OK)
        return rv;
    gw_base64url_encode(raw, sizeof(raw), &text);
    memset(raw, 0, sizeof(raw));

    pthread_mutex_lock(&a->mu);
    /* Drop expired tokens first; when still full, replace the oldest. */
    for (size_t i = 0; i < a->n_refresh;) {
        if (a->refresh[i].exp_s <= now_s)
            a->refresh[i] = a->refresh[--a->n_refresh];
        else
            i++;
    }
    if (a->n_refresh < HUB_AUTH_REFRESH_MAX) {
        slot = &a->refresh[a->n_refresh++];
    } else {
        slot = &a->refresh[0];
        for (size_t i = 1; i < a->n_refresh; i++) {
            if (a->refresh[i].issued_s < slot->issued_s)
                slot = &a->refresh[i];
        }
    }
    gw_sha256(text.data, text.len, slot->hash);
    slot->admin_id = admin_id;
    slot->issued_s = now_s;
    slot->exp_s = now_s + HUB_AUTH_REFRESH_TTL_S;
    pthread_mutex_unlock(&a->mu);

    gw_buf_append(out, text.data, text.len);
    memset(text.data, 0, text.len);
    gw_buf_fini(&text);
    return GW_OK;
}

gw_err
hub_auth_check_refresh(struct hub_auth *a, const char *token, size_t len, int64_t now_s,
                       uint64_t *admin_id)
{
    uint8_t hash[GW_SHA256_LEN];
    gw_err rv = GW_EAUTH;

    if (token == NULL || len == 0 || len > HUB_AUTH_TOKEN_MAX)
        return GW_EAUTH;
    gw_sha256(token, len, hash);
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n_refresh; i++) {
        if (gw_ct_equal(a->refresh[i].hash, hash, sizeof(hash)) && a->refresh[i].exp_s > now_s) {
            *admin_id = a->refresh[i].admin_id;
            rv = GW_OK;
            break;
        }
    }
    pthread_mutex_unlock(&a->mu);
    return rv;
}

/* SHA-256(username NUL host): the limiter keys on the peer's address, not
 * its port, since every new connection gets a new port. */
static void
auth_login_who(const char *username, const char *peer, uint8_t out[GW_SHA256_LEN])
{
    struct gw_buf b = GW_BUF_INIT;
    const char *colon = peer != NULL ? strrchr(peer, ':') : NULL;
    size_t host_len = peer == NULL ? 0 : colon != NULL ? (size_t)(colon - peer) : strlen(peer);

    gw_buf_append_str(&b, username != NULL ? username : "");
    gw_buf_append(&b, "", 1);
    if (host_len > 0)
        gw_buf_append(&b, peer, host_len);
    gw_sha256(b.data, b.len, out);
    gw_buf_fini(&b);
}

gw_err
hub_auth_login_attempt(struct hub_auth *a, const char *username, const char *peer, int64_t now_ms)
{
    uint8_t who[GW_SHA256_LEN];
    struct auth_login *hit = NULL, *free_slot = NULL, *oldest = NULL;
    gw_err rv = GW_OK;

    auth_login_who(username, peer, who);
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < HUB_AUTH_LOGIN_TRACKED; i++) {
        struct auth_login *e = &a->login[i];
        if (e->used && now_ms - e->window_start_ms >= HUB_AUTH_LOGIN_WINDOW_MS)
            e->used = 0;
        if (!e->used) {
            if (free_slot == NULL)
                free_slot = e;
            continue;
        }
        if (memcmp(e->who, who, sizeof(who)) == 0) {
            hit = e;
            break;
        }
        if (oldest == NULL || e->window_start_ms < oldest->window_start_ms)
            oldest = e;
    }
    if (hit == NULL) {
        /* A full table recycles the oldest window: memory stays bounded
         * under a flood of distinct names. */
        hit = free_slot != NULL ? free_slot : oldest;
        memcpy(hit->who, who, sizeof(who));
        hit->window_start_ms = now_ms;
        hit->count = 0;
        hit->used = 1;
    }
    if (hit->count >= HUB_AUTH_LOGIN_MAX_ATTEMPTS)
        rv = GW_EQUOTA;
    else
        hit->count++;
    pthread_mutex_unlock(&a->mu);
    return rv;
}

void
hub_auth_login_succeeded(struct hub_auth *a, const char *username, const char *peer)
{
    uint8_t who[GW_SHA256_LEN];

    auth_login_who(username, peer, who);
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < HUB_AUTH_LOGIN_TRACKED; i++) {
        if (a->login[i].used && memcmp(a->login[i].who, who, sizeof(who)) == 0) {
            a->login[i].used = 0;
            break;
        }
    }
    pthread_mutex_unlock(&a->mu);
}
