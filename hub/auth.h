/* SPDX-License-Identifier: Apache-2.0 */
/* Admin authentication: HS256 access tokens (JWT) signed with a key derived
 * from the master secret, opaque refresh tokens of which only the SHA-256 is
 * kept, and a limiter for login attempts per user name and peer address.
 * Passwords themselves are checked with gw_password_verify by the caller.
 *
 * Threading: every function may be called from any thread; the mutable
 * parts (refresh tokens, login limiter) are behind one mutex. */
#ifndef HUB_AUTH_H
#define HUB_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "gw_buf.h"
#include "gw_err.h"

struct hub_auth;

#define HUB_AUTH_MASTER_LEN 32
#define HUB_AUTH_TOKEN_MAX 4096   /* longest access token accepted */
#define HUB_AUTH_REFRESH_BYTES 32 /* random bytes in a refresh token */
#define HUB_AUTH_REFRESH_TTL_S (14 * 86400)
#define HUB_AUTH_REFRESH_MAX 10000     /* refresh tokens kept in memory */
#define HUB_AUTH_LOGIN_MAX_ATTEMPTS 10 /* per user name + peer and window */
#define HUB_AUTH_LOGIN_WINDOW_MS 60000
#define HUB_AUTH_LOGIN_TRACKED 4096 /* (user, peer) pairs tracked */

struct hub_auth_claims {
    uint64_t sub;  /* admin id */
    char name[64]; /* admin user name */
    int64_t iat;   /* unix seconds */
    int64_t exp;   /* unix seconds */
};

/* Creates the authenticator. Borrows master (HUB_AUTH_MASTER_LEN bytes) only
 * during the call: it keeps the derived signing key (purpose "jwt-hs256").
 * access_ttl_s > 0 is the lifetime of access tokens. */
gw_err hub_auth_new(const uint8_t *master, int64_t access_ttl_s,
                    struct hub_auth **out) GW_WARN_UNUSED;
void hub_auth_free(struct hub_auth *a);

int64_t hub_auth_access_ttl(const struct hub_auth *a);

/* Appends a signed access token for (admin_id, name) issued at now_s to out:
 * header {"alg":"HS256","typ":"JWT"}, claims sub (decimal string), name,
 * iat, exp, typ "access". GW_EINVAL when name is longer than 63 bytes. */
gw_err hub_auth_issue_access(const struct hub_auth *a, uint64_t admin_id, const char *name,
                             int64_t now_s, struct gw_buf *out) GW_WARN_UNUSED;

/* Verifies token[0..len): three base64url parts, header alg exactly "HS256",
 * a signature that matches (constant-time), claims typ "access", a sub and
 * exp > now_s. Fills *out on success; GW_EAUTH for every failure, so callers
 * cannot leak which check failed. */
gw_err hub_auth_verify_access(const struct hub_auth *a, const char *token, size_t len,
                              int64_t now_s, struct hub_auth_claims *out) GW_WARN_UNUSED;

/* Appends a new refresh token (HUB_AUTH_REFRESH_BYTES random bytes,
 * base64url) for admin_id to out and remembers only its SHA-256, valid for
 * HUB_AUTH_REFRESH_TTL_S. When HUB_AUTH_REFRESH_MAX are held, expired ones
 * and then the oldest are dropped. GW_EIO when the CSPRNG fails. */
gw_err hub_auth_issue_refresh(struct hub_auth *a, uint64_t admin_id, int64_t now_s,
                              struct gw_buf *out) GW_WARN_UNUSED;

/* Looks a refresh token up: GW_OK with *admin_id when it is known and not
 * expired, GW_EAUTH otherwise. Does not consume it. */
gw_err hub_auth_check_refresh(struct hub_auth *a, const char *token, size_t len, int64_t now_s,
                              uint64_t *admin_id) GW_WARN_UNUSED;

/* Counts one login attempt of username from peer ("HOST:PORT"; the port is
 * ignored) at now_ms. GW_EQUOTA (and the attempt is not counted) when
 * HUB_AUTH_LOGIN_MAX_ATTEMPTS were already made in the current window of
 * HUB_AUTH_LOGIN_WINDOW_MS, else GW_OK. */
gw_err hub_auth_login_attempt(struct hub_auth *a, const char *username, const char *peer,
                              int64_t now_ms) GW_WARN_UNUSED;
/* Forgets the attempts of (username, peer) after a successful login. */
void hub_auth_login_succeeded(struct hub_auth *a, const char *username, const char *peer);

#endif
