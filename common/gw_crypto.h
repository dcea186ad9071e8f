/* SPDX-License-Identifier: Apache-2.0 */
/* Crypto helpers over OpenSSL 3: hashes, MACs, randomness, base64url,
 * authenticated encryption and password hashing. The only module that
 * includes OpenSSL headers for these purposes. Thread-safe. */
#ifndef GW_CRYPTO_H
#define GW_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "gw_buf.h"
#include "gw_err.h"

#define GW_SHA256_LEN 32
#define GW_AES_KEY_LEN 32
#define GW_AES_NONCE_LEN 12
#define GW_AES_TAG_LEN 16

void gw_sha256(const void *data, size_t len, uint8_t out[GW_SHA256_LEN]);
void gw_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                    uint8_t out[GW_SHA256_LEN]);
/* Fills buf from the CSPRNG; GW_EIO if the generator fails. */
gw_err gw_random_bytes(void *buf, size_t len) GW_WARN_UNUSED;
/* Constant-time comparison; 1 when equal. */
int gw_ct_equal(const void *a, const void *b, size_t len);

/* Lower-case hex. out must hold 2*len+1 bytes. */
void gw_hex_encode(const uint8_t *data, size_t len, char *out);
/* Returns GW_EINVAL on odd length, non-hex characters or out too small. */
gw_err gw_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t out_cap,
                     size_t *out_len) GW_WARN_UNUSED;

/* base64url without padding (RFC 4648 §5), appended to out. */
void gw_base64url_encode(const void *data, size_t len, struct gw_buf *out);
/* Decodes base64url (padding optional) appended to out; GW_EINVAL on bad input. */
gw_err gw_base64url_decode(const char *s, size_t len, struct gw_buf *out) GW_WARN_UNUSED;

/* AES-256-GCM. Sealed format: nonce(12) | ciphertext | tag(16), appended to
 * out. `aad` may be NULL. Open returns GW_EAUTH when the tag does not match. */
gw_err gw_aead_seal(const uint8_t key[GW_AES_KEY_LEN], const void *aad, size_t aad_len,
                    const void *plain, size_t plain_len, struct gw_buf *out) GW_WARN_UNUSED;
gw_err gw_aead_open(const uint8_t key[GW_AES_KEY_LEN], const void *aad, size_t aad_len,
                    const void *sealed, size_t sealed_len, struct gw_buf *out) GW_WARN_UNUSED;

/* Derives a 32-byte subkey from a master secret for one purpose (HKDF-SHA256,
 * info = purpose), so the same master never keys two algorithms. */
void gw_derive_key(const void *master, size_t master_len, const char *purpose,
                   uint8_t out[GW_AES_KEY_LEN]);

/* Password hashing with scrypt (N=2^15, r=8, p=1, 16-byte salt). The result
 * is a self-describing string "scrypt$15$8$1$<salt b64url>$<hash b64url>",
 * appended to out. Verify returns GW_OK on match, GW_EAUTH on mismatch,
 * GW_EINVAL on a malformed stored hash; comparison is constant-time. */
gw_err gw_password_hash(const char *password, struct gw_buf *out) GW_WARN_UNUSED;
gw_err gw_password_verify(const char *password, const char *stored) GW_WARN_UNUSED;

#endif
