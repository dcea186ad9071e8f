/* SPDX-License-Identifier: Apache-2.0 */
/* gw_tls on its own: an OpenSSL client on memory BIOs talks to the server
 * object byte by byte through the test, so handshake, data in both
 * directions, close_notify, protocol floor and failure paths are checked
 * without sockets. Certificates come from tls_test_certs.h. */
#include "gw_tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "gw_test.h"
#include "tls_test_certs.h"

static struct test_certs certs;

struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;
};

static void
client_init(struct client *c, int verify, int max_version, const char *alpn, size_t alpn_len)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(c->ctx);
    if (verify) {
        assert_int_equal(SSL_CTX_load_verify_locations(c->ctx, certs.ca, NULL), 1);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    }
    if (max_version != 0) {
        /* Old protocols need the lowest security level to be offered. */
        SSL_CTX_set_security_level(c->ctx, 0);
        assert_int_equal(SSL_CTX_set_min_proto_version(c->ctx, TLS1_VERSION), 1);
        assert_int_equal(SSL_CTX_set_max_proto_version(c->ctx, max_version), 1);
        SSL_CTX_set_cipher_list(c->ctx, "DEFAULT:@SECLEVEL=0");
    }
    if (alpn != NULL)
        assert_int_equal(
            SSL_CTX_set_alpn_protos(c->ctx, (const unsigned char *)alpn, (unsigned)alpn_len), 0);
    c->ssl = SSL_new(c->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->rbio, -1);
    BIO_set_mem_eof_return(c->wbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    if (verify)
        SSL_set1_host(c->ssl, "localhost");
}

static void
client_fini(struct client *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
}

/* Client -> server: everything the client has queued. */
static gw_err
pump_to_server(struct client *c, struct gw_tls *t, struct gw_buf *plain, struct gw_buf *back)
{
    char buf[16384];
    gw_err rv = GW_OK;
    int n;

    while ((n = BIO_read(c->wbio, buf, sizeof(buf))) > 0) {
        rv = gw_tls_feed(t, buf, (size_t)n, plain, back);
        if (rv != GW_OK)
            break;
    }
    return rv;
}

/* Server -> client: hands `cipher` to the client's read BIO. */
static void
pump_to_client(struct client *c, struct gw_buf *cipher)
{
    if (cipher->len > 0)
        assert_int_equal(BIO_write(c->rbio, cipher->data, (int)cipher->len), (int)cipher->len);
    cipher->len = 0;
}

/* Runs the handshake to completion; returns the last server result. */
static gw_err
handshake(struct client *c, struct gw_tls *t)
{
    struct gw_buf plain = GW_BUF_INIT, back = GW_BUF_INIT;
    gw_err rv = GW_OK;
    int i;

    for (i = 0; i < 10; i++) {
        int ret = SSL_do_handshake(c->ssl);
        /* SSL_get_error must come before any other BIO call. */
        int cerr = ret == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, ret);

        rv = pump_to_server(c, t, &plain, &back);
        pump_to_client(c, &back);
        if (rv != GW_OK)
            break;
        if (ret == 1 && gw_tls_handshake_done(t))
            break;
        if (ret != 1 && cerr != SSL_ERROR_WANT_READ)
            break;
    }
    assert_int_equal(plain.len, 0);
    gw_buf_fini(&plain);
    gw_buf_fini(&back);
    return rv;
}

static void
test_ctx_errors(void **state)
{
    struct gw_tls_ctx *ctx = NULL;
    struct gw_buf err = GW_BUF_INIT;

    (void)state;
    GW_FAIL(gw_tls_ctx_new("", certs.key, &ctx, &err), GW_EINVAL);
    assert_null(ctx);
    gw_buf_reset(&err);
    GW_FAIL(gw_tls_ctx_new("/nonexistent/cert.pem", certs.key, &ctx, &err), GW_EIO);
    assert_non_null(strstr(err.data, "/nonexistent/cert.pem"));
    gw_buf_reset(&err);
    GW_FAIL(gw_tls_ctx_new(certs.cert, "/nonexistent/key.pem", &ctx, &err), GW_EIO);
    assert_non_null(strstr(err.data, "key"));
    gw_buf_reset(&err);
    /* The key of another certificate. */
    GW_FAIL(gw_tls_ctx_new(certs.cert, certs.other_key, &ctx, &err), GW_EPROTO);
    assert_non_null(strstr(err.data, "match"));
    gw_buf_reset(&err);
    GW_FAIL(gw_tls_ctx_new(certs.garbage, certs.key, &ctx, &err), GW_EPROTO);
    assert_non_null(strstr(err.data, "certificate"));
    assert_null(ctx);
    /* A NULL err is allowed. */
    GW_FAIL(gw_tls_ctx_new(certs.garbage, certs.key, &ctx, NULL), GW_EPROTO);
    gw_buf_fini(&err);
    /* The thread's error queue is left clean. */
    assert_int_equal(ERR_peek_error(), 0);
}

static void
test_handshake_and_data(void **state)
{
    static const char alpn[] = "\x02h2\x08http/1.1";
    struct gw_tls_ctx *ctx;
    struct gw_tls *t;
    struct client c;
    struct gw_buf plain = GW_BUF_INIT, back = GW_BUF_INIT;
    size_t total = 1u << 20, i, got = 0;
    char *big = gw_xmalloc(total);
    char *rbuf = gw_xmalloc(total);
    const unsigned char *sel;
    unsigned sel_len;

    (void)state;
    GW_PASS(gw_tls_ctx_new(certs.cert, certs.key, &ctx, NULL));
    GW_PASS(gw_tls_new(ctx, "test-peer", &t));
    /* The connection keeps working without the caller's context reference. */
    gw_tls_ctx_unref(ctx);
    GW_FAIL(gw_tls_write(t, "x", 1, &back), GW_EINVAL); /* before the handshake */
    client_init(&c, 1, 0, alpn, sizeof(alpn) - 1);
    GW_PASS(handshake(&c, t));
    assert_int_equal(SSL_is_init_finished(c.ssl), 1);
    assert_int_equal(gw_tls_handshake_done(t), 1);
    assert_int_equal(SSL_get_verify_result(c.ssl), X509_V_OK);
    assert_true(SSL_version(c.ssl) >= TLS1_2_VERSION);
    assert_string_equal(gw_tls_alpn(t), "http/1.1");
    SSL_get0_alpn_selected(c.ssl, &sel, &sel_len);
    assert_int_equal(sel_len, 8);
    assert_memory_equal(sel, "http/1.1", 8);
    assert_string_equal(gw_tls_version(t), SSL_get_version(c.ssl));

    /* Client -> server: 1 MiB in one write arrives intact. */
    for (i = 0; i < total; i++)
        big[i] = (char)(i * 7 + (i >> 10));
    assert_int_equal(SSL_write(c.ssl, big, (int)total), (int)total);
    GW_PASS(pump_to_server(&c, t, &plain, &back));
    pump_to_client(&c, &back);
    assert_int_equal(plain.len, total);
    assert_memory_equal(plain.data, big, total);

    /* Server -> client, the same. */
    GW_PASS(gw_tls_write(t, big, total, &back));
    assert_true(back.len > total); /* records add framing */
    pump_to_client(&c, &back);
    while (got < total) {
        int n = SSL_read(c.ssl, rbuf + got, (int)(total - got));
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(rbuf, big, total);

    /* Our close_notify reaches the client; the client's ends our input. */
    gw_tls_close_notify(t, &back);
    assert_true(back.len > 0);
    pump_to_client(&c, &back);
    assert_int_equal(SSL_read(c.ssl, rbuf, 16), 0);
    assert_int_equal(SSL_get_error(c.ssl, 0), SSL_ERROR_ZERO_RETURN);
    gw_tls_close_notify(t, &back); /* once only */
    assert_int_equal(back.len, 0);
    GW_FAIL(gw_tls_write(t, "x", 1, &back), GW_EINVAL);
    assert_true(SSL_shutdown(c.ssl) >= 0);
    plain.len = 0;
    GW_FAIL(pump_to_server(&c, t, &plain, &back), GW_ECLOSED);
    assert_int_equal(plain.len, 0);
    GW_FAIL(gw_tls_feed(t, "x", 1, &plain, &back), GW_ECLOSED);

    client_fini(&c);
    gw_tls_free(t);
    gw_buf_fini(&plain);
    gw_buf_fini(&back);
    free(big);
    free(rbuf);
}

/* Input delivered one byte at a time (the socket may split anywhere). */
static void
test_byte_by_byte(void **state)
{
    struct gw_tls_ctx *ctx;
    struct gw_tls *t;
    struct client c;
    struct gw_buf plain = GW_BUF_INIT, back = GW_BUF_INIT;
    char buf[65536];
    int n, i, ret = 0;

    (void)state;
    GW_PASS(gw_tls_ctx_new(certs.cert, certs.key, &ctx, NULL));
    GW_PASS(gw_tls_new(ctx, NULL, &t));
    client_init(&c, 1, 0, NULL, 0);
    for (i = 0; i < 10 && !(ret == 1 && gw_tls_handshake_done(t)); i++) {
        ret = SSL_do_handshake(c.ssl);
        while ((n = BIO_read(c.wbio, buf, sizeof(buf))) > 0) {
            for (int k = 0; k < n; k++)
                GW_PASS(gw_tls_feed(t, buf + k, 1, &plain, &back));
        }
        pump_to_client(&c, &back);
    }
    assert_int_equal(gw_tls_handshake_done(t), 1);
    assert_string_equal(gw_tls_alpn(t), ""); /* the client offered none */
    assert_int_equal(SSL_write(c.ssl, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    n = BIO_read(c.wbio, buf, sizeof(buf));
    assert_true(n > 18);
    for (int k = 0; k < n; k++)
        GW_PASS(gw_tls_feed(t, buf + k, 1, &plain, &back));
    assert_int_equal(plain.len, 18);
    assert_memory_equal(plain.data, "GET / HTTP/1.1\r\n\r\n", 18);
    client_fini(&c);
    gw_tls_free(t);
    gw_tls_ctx_unref(ctx);
    gw_buf_fini(&plain);
    gw_buf_fini(&back);
}

static void
test_old_protocol_refused(void **state)
{
    struct gw_tls_ctx *ctx;
    struct gw_tls *t;
    struct client c;

    (void)state;
    GW_PASS(gw_tls_ctx_new(certs.cert, certs.key, &ctx, NULL));
    GW_PASS(gw_tls_new(ctx, "old-client", &t));
    client_init(&c, 0, TLS1_1_VERSION, NULL, 0);
    GW_FAIL(handshake(&c, t), GW_EPROTO);
    assert_int_equal(gw_tls_handshake_done(t), 0);
    assert_non_null(strstr(gw_tls_error(t), "protocol"));
    assert_int_equal(gw_tls_peer_spoke_http(t), 0);
    /* The client got an alert, not a session. */
    assert_int_equal(SSL_is_init_finished(c.ssl), 0);
    client_fini(&c);
    gw_tls_free(t);
    gw_tls_ctx_unref(ctx);
    assert_int_equal(ERR_peek_error(), 0);
}

static void
test_garbage_and_plain_http(void **state)
{
    struct gw_tls_ctx *ctx;
    struct gw_tls *t;
    struct gw_buf plain = GW_BUF_INIT, back = GW_BUF_INIT;
    static const char junk[] = "\x16\x03\x01\x00\x05hello-not-a-client-hello-at-all";

    (void)state;
    GW_PASS(gw_tls_ctx_new(certs.cert, certs.key, &ctx, NULL));

    GW_PASS(gw_tls_new(ctx, "junk", &t));
    assert_string_equal(gw_tls_error(t), "");
    GW_FAIL(gw_tls_feed(t, junk, sizeof(junk) - 1, &plain, &back), GW_EPROTO);
    assert_true(strlen(gw_tls_error(t)) > 0);
    assert_int_equal(gw_tls_peer_spoke_http(t), 0);
    assert_int_equal(plain.len, 0);
    /* Failed for good. */
    GW_FAIL(gw_tls_feed(t, "x", 1, &plain, &back), GW_EPROTO);
    back.len = 0;
    gw_tls_close_notify(t, &back);
    assert_int_equal(back.len, 0);
    gw_tls_free(t);

    GW_PASS(gw_tls_new(ctx, "plain", &t));
    GW_FAIL(gw_tls_feed(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, &plain, &back), GW_EPROTO);
    assert_int_equal(gw_tls_peer_spoke_http(t), 1);
    gw_tls_free(t);

    GW_PASS(gw_tls_new(ctx, "plain-post", &t));
    GW_FAIL(gw_tls_feed(t, "POST /v1/messages HTTP/1.1\r\n", 28, &plain, &back), GW_EPROTO);
    assert_int_equal(gw_tls_peer_spoke_http(t), 1);
    gw_tls_free(t);

    gw_tls_ctx_unref(ctx);
    gw_buf_fini(&plain);
    gw_buf_fini(&back);
    assert_int_equal(ERR_peek_error(), 0);
}

static void
test_ctx_refcount(void **state)
{
    struct gw_tls_ctx *ctx;
    struct gw_tls *t1, *t2, *t3 = NULL;
    struct client c;

    (void)state;
    GW_PASS(gw_tls_ctx_new(certs.cert, certs.key, &ctx, NULL));
    assert_ptr_equal(gw_tls_ctx_ref(ctx), ctx);
    GW_PASS(gw_tls_new(ctx, NULL, &t1));
    gw_tls_ctx_unref(ctx);
    GW_PASS(gw_tls_new(ctx, NULL, &t2)); /* still one reference left */
    gw_tls_ctx_unref(ctx);
    gw_tls_ctx_unref(NULL);
    assert_null(gw_tls_ctx_ref(NULL));
    GW_FAIL(gw_tls_new(NULL, NULL, &t3), GW_EINVAL);
    assert_null(t3);
    client_init(&c, 1, 0, NULL, 0);
    GW_PASS(handshake(&c, t2));
    assert_int_equal(gw_tls_handshake_done(t2), 1);
    client_fini(&c);
    gw_tls_free(t1);
    gw_tls_free(t2);
    gw_tls_free(NULL);
}

static int
setup(void **state)
{
    (void)state;
    return test_certs_create(&certs) ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    test_certs_remove(&certs);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_old_protocol_refused),
        cmocka_unit_test(test_garbage_and_plain_http),
        cmocka_unit_test(test_ctx_refcount),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
