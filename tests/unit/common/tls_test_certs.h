/* SPDX-License-Identifier: Apache-2.0 */
/* Test-only PKI made with the OpenSSL API: a CA and a server certificate
 * for 127.0.0.1 / localhost (EC P-256, SHA-256), written as PEM files into
 * a fresh temporary directory. Shared by the TLS unit tests; header-only so
 * each test stays one source file. */
#ifndef TLS_TEST_CERTS_H
#define TLS_TEST_CERTS_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct test_certs {
    char dir[64];
    char ca[128];        /* CA certificate */
    char cert[128];      /* server certificate (leaf) */
    char key[128];       /* server private key */
    char other_key[128]; /* a key that matches nothing */
    char garbage[128];   /* a file that is not PEM */
};

static int
test_certs_ext(X509 *issuer, X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return 0;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* A certificate for `key`, signed by signer_key; issuer NULL: self-signed. */
static X509 *
test_certs_make(EVP_PKEY *key, EVP_PKEY *signer_key, X509 *issuer, const char *cn, int is_ca)
{
    X509 *x = X509_new();
    X509_NAME *name;
    unsigned char serial[8];
    BIGNUM *bn;

    if (x == NULL)
        return NULL;
    X509_set_version(x, 2);
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400);
    X509_set_pubkey(x, key);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"AiCarpool test", -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name);
    if (issuer == NULL)
        issuer = x;
    if (!test_certs_ext(issuer, x, NID_subject_key_identifier, "hash") ||
        !test_certs_ext(issuer, x, NID_authority_key_identifier, "keyid:always"))
        goto fail;
    if (is_ca) {
        if (!test_certs_ext(issuer, x, NID_basic_constraints, "critical,CA:TRUE") ||
            !test_certs_ext(issuer, x, NID_key_usage, "critical,keyCertSign,cRLSign"))
            goto fail;
    } else {
        if (!test_certs_ext(issuer, x, NID_basic_constraints, "critical,CA:FALSE") ||
            !test_certs_ext(issuer, x, NID_key_usage, "critical,digitalSignature") ||
            !test_certs_ext(issuer, x, NID_ext_key_usage, "serverAuth") ||
            !test_certs_ext(issuer, x, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost"))
            goto fail;
    }
    if (X509_sign(x, signer_key, EVP_sha256()) <= 0)
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

static int
test_certs_write_cert(const char *path, X509 *x)
{
    FILE *f = fopen(path, "w");
    int ok;

    if (f == NULL)
        return 0;
    ok = PEM_write_X509(f, x);
    return fclose(f) == 0 && ok;
}

static int
test_certs_write_key(const char *path, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    int ok;

    if (f == NULL)
        return 0;
    ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    return fclose(f) == 0 && ok;
}

/* Creates the files; returns 1 on success. */
static int
test_certs_create(struct test_certs *tc)
{
    EVP_PKEY *ca_key = NULL, *key = NULL, *other = NULL;
    X509 *ca = NULL, *leaf = NULL;
    FILE *f;
    int ok = 0;

    memset(tc, 0, sizeof(*tc));
    snprintf(tc->dir, sizeof(tc->dir), "/tmp/gw-tls-test-XXXXXX");
    if (mkdtemp(tc->dir) == NULL)
        return 0;
    snprintf(tc->ca, sizeof(tc->ca), "%s/ca.pem", tc->dir);
    snprintf(tc->cert, sizeof(tc->cert), "%s/server.pem", tc->dir);
    snprintf(tc->key, sizeof(tc->key), "%s/server.key", tc->dir);
    snprintf(tc->other_key, sizeof(tc->other_key), "%s/other.key", tc->dir);
    snprintf(tc->garbage, sizeof(tc->garbage), "%s/garbage.pem", tc->dir);
    ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (ca_key == NULL || key == NULL || other == NULL)
        goto out;
    ca = test_certs_make(ca_key, ca_key, NULL, "AiCarpool test CA", 1);
    if (ca == NULL)
        goto out;
    leaf = test_certs_make(key, ca_key, ca, "localhost", 0);
    if (leaf == NULL)
        goto out;
    if (!test_certs_write_cert(tc->ca, ca) || !test_certs_write_cert(tc->cert, leaf) ||
        !test_certs_write_key(tc->key, key) || !test_certs_write_key(tc->other_key, other))
        goto out;
    f = fopen(tc->garbage, "w");
    if (f == NULL)
        goto out;
    fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
    if (fclose(f) != 0)
        goto out;
    ok = 1;
out:
    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    return ok;
}

static void
test_certs_remove(struct test_certs *tc)
{
    unlink(tc->ca);
    unlink(tc->cert);
    unlink(tc->key);
    unlink(tc->other_key);
    unlink(tc->garbage);
    rmdir(tc->dir);
}

#endif
