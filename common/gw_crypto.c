/* SPDX-License-Identifier: Apache-2.0 */
/* Crypto helpers over the OpenSSL 3 provider APIs (EVP_MD, EVP_MAC, EVP_KDF,
 * EVP_CIPHER). Algorithms used on hot paths are fetched once per process;
 * failures of primitives that cannot fail short of memory exhaustion abort,
 * the same policy as gw_xmalloc. */
#include "gw_crypto.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

/* Password hashing parameters written by gw_password_hash. */
#define PW_LOG2_N 15
#define PW_R 8
#define PW_P 1
#define PW_SALT_LEN 16
#define PW_HASH_LEN 32
/* Bounds accepted by gw_password_verify: a stored string must not be able to
 * make a login allocate gigabytes or burn minutes of CPU. 128 * r * N bytes
 * is scrypt's memory need; the cap allows 4x today's 32 MiB. */
#define PW_MIN_LOG2_N 10
#define PW_MAX_LOG2_N 20
#define PW_MAX_R 16
#define PW_MAX_P 4
#define PW_MAX_MEM ((uint64_t)128 << 20)
#define PW_MIN_SALT 8
#define PW_MAX_SALT 64
#define PW_MIN_HASH 16
#define PW_MAX_HASH 64

/* Update calls take int lengths; larger inputs are fed in chunks. */
#define CRYPTO_CHUNK ((size_t)1 << 30)

static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
static EVP_MD *crypto_sha256_md;
static EVP_MAC *crypto_hmac_mac;
static EVP_CIPHER *crypto_aes_gcm;

static void crypto_fatal(const char *what) __attribute__((noreturn));

static void
crypto_fatal(const char *what)
{
    fprintf(stderr, "aicarpool: OpenSSL failure in %s\n", what);
    abort();
}

static void
crypto_fetch(void)
{
    crypto_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    crypto_hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    crypto_aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (!crypto_sha256_md || !crypto_hmac_mac || !crypto_aes_gcm)
        crypto_fatal("algorithm fetch");
}

static void
crypto_init(void)
{
    pthread_once(&crypto_once, crypto_fetch);
}

void
gw_sha256(const void *data, size_t len, uint8_t out[GW_SHA256_LEN])
{
    static const uint8_t empty[1];

    crypto_init();
    if (EVP_Digest(data ? data : empty, len, out, NULL, crypto_sha256_md, NULL) != 1)
        crypto_fatal("EVP_Digest");
}

void
gw_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
               uint8_t out[GW_SHA256_LEN])
{
    static const uint8_t empty[1];
    EVP_MAC_CTX *ctx;
    OSSL_PARAM params[2];
    size_t out_len = 0;
    const uint8_t *p = data ? data : empty;

    crypto_init();
    ctx = EVP_MAC_CTX_new(crypto_hmac_mac);
    if (ctx == NULL)
        crypto_fatal("EVP_MAC_CTX_new");
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx, key ? key : empty, key ? key_len : 0, params) != 1)
        crypto_fatal("EVP_MAC_init");
    while (len > 0) {
        size_t n = len < CRYPTO_CHUNK ? len : CRYPTO_CHUNK;
        if (EVP_MAC_update(ctx, p, n) != 1)
            crypto_fatal("EVP_MAC_update");
        p += n;
        len -= n;
    }
    if (EVP_MAC_final(ctx, out, &out_len, GW_SHA256_LEN) != 1 || out_len != GW_SHA256_LEN)
        crypto_fatal("EVP_MAC_final");
    EVP_MAC_CTX_free(ctx);
}

gw_err
gw_random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;

    while (len > 0) {
        size_t n = len < CRYPTO_CHUNK ? len : CRYPTO_CHUNK;
        if (RAND_bytes(p, (int)n) != 1)
            return GW_EIO;
        p += n;
        len -= n;
    }
    return GW_OK;
}

int
gw_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

void
gw_hex_encode(const uint8_t *data, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

gw_err
gw_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    if (hex_len % 2 != 0 || hex_len / 2 > out_cap)
        return GW_EINVAL;
    for (size_t i = 0; i < hex_len; i += 2) {
        int hi = hex_value(hex[i]);
        int lo = hex_value(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return GW_EINVAL;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    if (out_len)
        *out_len = hex_len / 2;
    return GW_OK;
}

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void
gw_base64url_encode(const void *data, size_t len, struct gw_buf *out)
{
    const uint8_t *p = data;
    size_t full = len / 3;
    size_t rest = len % 3;
    char *w;

    gw_buf_reserve(out, full * 4 + (rest ? rest + 1 : 0));
    w = out->data + out->len;
    for (size_t i = 0; i < full; i++, p += 3) {
        uint32_t v = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
        *w++ = b64url_alphabet[v >> 18 & 63];
        *w++ = b64url_alphabet[v >> 12 & 63];
        *w++ = b64url_alphabet[v >> 6 & 63];
        *w++ = b64url_alphabet[v & 63];
    }
    if (rest == 1) {
        *w++ = b64url_alphabet[p[0] >> 2];
        *w++ = b64url_alphabet[(p[0] & 3) << 4];
    } else if (rest == 2) {
        uint32_t v = (uint32_t)p[0] << 8 | p[1];
        *w++ = b64url_alphabet[v >> 10 & 63];
        *w++ = b64url_alphabet[v >> 4 & 63];
        *w++ = b64url_alphabet[(v & 15) << 2];
    }
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
}

static int
b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict decoding: only the url-safe alphabet, padding only as the correct
 * number of trailing '=', and the unused low bits of the last character
 * must be zero, so every byte string has exactly one accepted encoding
 * (tokens and signatures must not be malleable). */
gw_err
gw_base64url_decode(const char *s, size_t len, struct gw_buf *out)
{
    size_t start = out->len;
    uint32_t acc = 0;
    int bits = 0;
    size_t pad = 0;

    while (len > 0 && s[len - 1] == '=' && pad < 2) {
        len--;
        pad++;
    }
    if (len % 4 == 1)
        return GW_EINVAL;
    if (pad > 0 && (len + pad) % 4 != 0)
        return GW_EINVAL;
    gw_buf_reserve(out, len / 4 * 3 + 2);
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(s[i]);
        if (v < 0)
            goto bad;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->data[out->len++] = (char)(acc >> bits & 0xff);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        goto bad;
    out->data[out->len] = '\0';
    return GW_OK;
bad:
    out->len = start;
    out->data[out->len] = '\0';
    return GW_EINVAL;
}

/* Feeds AAD or data through EVP_CipherUpdate in int-sized chunks. With
 * `dst` NULL the input is AAD. */
static int
aead_update(EVP_CIPHER_CTX *ctx, uint8_t *dst, const uint8_t *src, size_t len)
{
    while (len > 0) {
        size_t n = len < CRYPTO_CHUNK ? len : CRYPTO_CHUNK;
        int outl = 0;
        if (EVP_CipherUpdate(ctx, dst, &outl, src, (int)n) != 1)
            return -1;
        if (dst) {
            if ((size_t)outl != n)
                return -1;
            dst += n;
        }
        src += n;
        len -= n;
    }
    return 0;
}

gw_err
gw_aead_seal(const uint8_t key[GW_AES_KEY_LEN], const void *aad, size_t aad_len, const void *plain,
             size_t plain_len, struct gw_buf *out)
{
    EVP_CIPHER_CTX *ctx = NULL;
    size_t start = out->len;
    uint8_t *nonce, *ct, *tag;
    int outl = 0;
    gw_err rv = GW_EIO;

    crypto_init();
    if (plain_len > SIZE_MAX - GW_AES_NONCE_LEN - GW_AES_TAG_LEN - 1)
        return GW_EMSGSIZE;
    gw_buf_reserve(out, GW_AES_NONCE_LEN + plain_len + GW_AES_TAG_LEN);
    nonce = (uint8_t *)out->data + start;
    ct = nonce + GW_AES_NONCE_LEN;
    tag = ct + plain_len;

    /* Random 96-bit nonces: safe for well below 2^32 messages per key,
     * which keys derived per purpose never approach. */
    rv = gw_random_bytes(nonce, GW_AES_NONCE_LEN);
    if (rv != GW_OK)
        goto out;
    rv = GW_EIO;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        goto out;
    if (EVP_EncryptInit_ex2(ctx, crypto_aes_gcm, key, nonce, NULL) != 1)
        goto out;
    if (aad && aad_len && aead_update(ctx, NULL, aad, aad_len) != 0)
        goto out;
    if (plain_len && aead_update(ctx, ct, plain, plain_len) != 0)
        goto out;
    if (EVP_EncryptFinal_ex(ctx, ct + plain_len, &outl) != 1 || outl != 0)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, GW_AES_TAG_LEN, tag) != 1)
        goto out;
    out->len = start + GW_AES_NONCE_LEN + plain_len + GW_AES_TAG_LEN;
    rv = GW_OK;
out:
    if (rv != GW_OK)
        OPENSSL_cleanse(out->data + start, GW_AES_NONCE_LEN + plain_len + GW_AES_TAG_LEN);
    out->data[out->len] = '\0';
    EVP_CIPHER_CTX_free(ctx);
    return rv;
}

gw_err
gw_aead_open(const uint8_t key[GW_AES_KEY_LEN], const void *aad, size_t aad_len, const void *sealed,
             size_t sealed_len, struct gw_buf *out)
{
    EVP_CIPHER_CTX *ctx = NULL;
    const uint8_t *nonce = sealed;
    const uint8_t *ct, *tag;
    size_t ct_len;
    size_t start = out->len;
    uint8_t *pt;
    uint8_t tagbuf[GW_AES_TAG_LEN];
    int outl = 0;
    gw_err rv = GW_EIO;

    crypto_init();
    /* Shorter than nonce + tag cannot be anything we sealed. */
    if (sealed == NULL || sealed_len < GW_AES_NONCE_LEN + GW_AES_TAG_LEN)
        return GW_EINVAL;
    ct = nonce + GW_AES_NONCE_LEN;
    ct_len = sealed_len - GW_AES_NONCE_LEN - GW_AES_TAG_LEN;
    tag = ct + ct_len;
    /* The ctrl takes a non-const pointer. */
    memcpy(tagbuf, tag, GW_AES_TAG_LEN);
    gw_buf_reserve(out, ct_len);
    pt = (uint8_t *)out->data + start;

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        goto out;
    if (EVP_DecryptInit_ex2(ctx, crypto_aes_gcm, key, nonce, NULL) != 1)
        goto out;
    if (aad && aad_len && aead_update(ctx, NULL, aad, aad_len) != 0)
        goto out;
    if (ct_len && aead_update(ctx, pt, ct, ct_len) != 0)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, GW_AES_TAG_LEN, tagbuf) != 1)
        goto out;
    if (EVP_DecryptFinal_ex(ctx, pt + ct_len, &outl) != 1) {
        rv = GW_EAUTH;
        goto out;
    }
    out->len = start + ct_len;
    rv = GW_OK;
out:
    /* Unauthenticated plaintext must not linger in the caller's buffer. */
    if (rv != GW_OK)
        OPENSSL_cleanse(pt, ct_len);
    out->data[out->len] = '\0';
    EVP_CIPHER_CTX_free(ctx);
    return rv;
}

void
gw_derive_key(const void *master, size_t master_len, const char *purpose,
              uint8_t out[GW_AES_KEY_LEN])
{
    static const uint8_t empty[1];
    EVP_KDF *kdf;
    EVP_KDF_CTX *ctx;
    OSSL_PARAM params[4];
    OSSL_PARAM *p = params;

    kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (kdf == NULL)
        crypto_fatal("EVP_KDF_fetch(HKDF)");
    ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (ctx == NULL)
        crypto_fatal("EVP_KDF_CTX_new");
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(master ? master : empty),
                                             master_len);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(purpose ? purpose : ""),
                                             purpose ? strlen(purpose) : 0);
    *p = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(ctx, out, GW_AES_KEY_LEN, params) != 1)
        crypto_fatal("EVP_KDF_derive(HKDF)");
    EVP_KDF_CTX_free(ctx);
}

/* scrypt through EVP_KDF; maxmem is sized from the (already bounded)
 * parameters, since OpenSSL's 32 MiB default is just below what N=2^15,
 * r=8 needs. Returns 0 or -1. */
static int
pw_scrypt(const char *password, const uint8_t *salt, size_t salt_len, unsigned log2_n, unsigned r,
          unsigned p, uint8_t *out, size_t out_len)
{
    EVP_KDF *kdf;
    EVP_KDF_CTX *ctx;
    OSSL_PARAM params[7];
    OSSL_PARAM *pp = params;
    uint64_t n = (uint64_t)1 << log2_n;
    uint32_t r32 = r, p32 = p;
    uint64_t maxmem = 128 * (uint64_t)r * n + 128 * (uint64_t)r * p + ((uint64_t)1 << 20);
    int rc;

    kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    if (kdf == NULL)
        return -1;
    ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (ctx == NULL)
        return -1;
    *pp++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)password,
                                              strlen(password));
    *pp++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    *pp++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
    *pp++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r32);
    *pp++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p32);
    *pp++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
    *pp = OSSL_PARAM_construct_end();
    rc = EVP_KDF_derive(ctx, out, out_len, params) == 1 ? 0 : -1;
    EVP_KDF_CTX_free(ctx);
    return rc;
}

gw_err
gw_password_hash(const char *password, struct gw_buf *out)
{
    uint8_t salt[PW_SALT_LEN];
    uint8_t hash[PW_HASH_LEN];
    gw_err rv;

    if (password == NULL)
        return GW_EINVAL;
    rv = gw_random_bytes(salt, sizeof(salt));
    if (rv != GW_OK)
        return rv;
    if (pw_scrypt(password, salt, sizeof(salt), PW_LOG2_N, PW_R, PW_P, hash, sizeof(hash)) != 0)
        return GW_EIO;
    gw_buf_appendf(out, "scrypt$%d$%d$%d$", PW_LOG2_N, PW_R, PW_P);
    gw_base64url_encode(salt, sizeof(salt), out);
    gw_buf_append(out, "$", 1);
    gw_base64url_encode(hash, sizeof(hash), out);
    OPENSSL_cleanse(hash, sizeof(hash));
    return GW_OK;
}

/* Parses a small decimal field: 1-2 digits, no sign, no leading zero. */
static int
pw_parse_small(const char *s, size_t len, unsigned *out)
{
    unsigned v = 0;

    if (len == 0 || len > 2 || (len > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Decodes one base64url field into dst; length must be within [min, max]. */
static int
pw_decode_field(const char *s, size_t len, uint8_t *dst, size_t min, size_t max, size_t *out_len)
{
    struct gw_buf b = GW_BUF_INIT;
    int rc = -1;

    if (gw_base64url_decode(s, len, &b) == GW_OK && b.len >= min && b.len <= max) {
        memcpy(dst, b.data, b.len);
        *out_len = b.len;
        rc = 0;
    }
    gw_buf_fini(&b);
    return rc;
}

gw_err
gw_password_verify(const char *password, const char *stored)
{
    const char *field[6];
    size_t flen[6];
    size_t nf = 0;
    unsigned log2_n, r, p;
    uint8_t salt[PW_MAX_SALT], want[PW_MAX_HASH], got[PW_MAX_HASH];
    size_t salt_len = 0, hash_len = 0;
    const char *s;
    gw_err rv;

    if (password == NULL || stored == NULL)
        return GW_EINVAL;
    /* Split into exactly six '$'-separated fields. */
    s = stored;
    for (;;) {
        const char *d = strchr(s, '$');
        if (nf == 6)
            return GW_EINVAL;
        field[nf] = s;
        flen[nf] = d ? (size_t)(d - s) : strlen(s);
        nf++;
        if (d == NULL)
            break;
        s = d + 1;
    }
    if (nf != 6 || flen[0] != 6 || memcmp(field[0], "scrypt", 6) != 0)
        return GW_EINVAL;
    if (pw_parse_small(field[1], flen[1], &log2_n) != 0 ||
        pw_parse_small(field[2], flen[2], &r) != 0 || pw_parse_small(field[3], flen[3], &p) != 0)
        return GW_EINVAL;
    if (log2_n < PW_MIN_LOG2_N || log2_n > PW_MAX_LOG2_N || r < 1 || r > PW_MAX_R || p < 1 ||
        p > PW_MAX_P)
        return GW_EINVAL;
    if (128 * (uint64_t)r * ((uint64_t)1 << log2_n) > PW_MAX_MEM)
        return GW_EINVAL;
    if (pw_decode_field(field[4], flen[4], salt, PW_MIN_SALT, PW_MAX_SALT, &salt_len) != 0 ||
        pw_decode_field(field[5], flen[5], want, PW_MIN_HASH, PW_MAX_HASH, &hash_len) != 0)
        return GW_EINVAL;
    if (pw_scrypt(password, salt, salt_len, log2_n, r, p, got, hash_len) != 0)
        return GW_EIO;
    rv = CRYPTO_memcmp(got, want, hash_len) == 0 ? GW_OK : GW_EAUTH;
    OPENSSL_cleanse(got, sizeof(got));
    return rv;
}
