/* SPDX-License-Identifier: Apache-2.0 */
/* OpenSSL behind two memory BIOs: the read BIO holds ciphertext the socket
 * delivered, the write BIO collects what OpenSSL wants sent. Every call
 * clears the thread's OpenSSL error queue first, so an error left behind by
 * another connection on the same thread is never blamed on this one. */
#include "gw_tls.h"

#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_log.h"

/* Plaintext is read in pieces of this size (one TLS record at most). */
#define TLS_READ_STEP (16 * 1024)
/* Ciphertext goes through the memory BIOs in steps of this size. */
#define TLS_IO_STEP (16 * 1024)

struct gw_tls_ctx {
    SSL_CTX *ssl_ctx;
    atomic_uint refs;
};

struct gw_tls {
    SSL *ssl;
    BIO *rbio;         /* owned by ssl */
    BIO *wbio;         /* owned by ssl */
    const char *label; /* peer name for logs, borrowed */
    char *error;       /* last failure reason, owned; NULL when none */
    unsigned handshake_done : 1;
    unsigned failed : 1;
    unsigned peer_closed : 1;
    unsigned notify_sent : 1;
    unsigned spoke_http : 1;
};

/* One line of OpenSSL's error queue (the earliest entry is the cause),
 * with the queue cleared. */
static void
tls_error_string(char *out, size_t out_size)
{
    unsigned long e = ERR_get_error();

    if (e == 0)
        snprintf(out, out_size, "unknown TLS error");
    else
        ERR_error_string_n(e, out, out_size);
    ERR_clear_error();
}

/* ---- context ---- */

static int
tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                unsigned int inlen, void *arg)
{
    static const unsigned char http11[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;

    (void)ssl;
    (void)arg;
    /* Only HTTP/1.1 is spoken here; a client offering nothing we know
     * continues without ALPN rather than failing the handshake. */
    if (SSL_select_next_proto(&sel, &sel_len, http11, sizeof(http11) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

static gw_err
tls_check_readable(const char *what, const char *path, struct gw_buf *err)
{
    FILE *f;

    if (path == NULL || path[0] == '\0') {
        if (err != NULL)
            gw_buf_appendf(err, "TLS %s file not set", what);
        return GW_EINVAL;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        if (err != NULL)
            gw_buf_appendf(err, "cannot read TLS %s file %s: %s", what, path, strerror(errno));
        return GW_EIO;
    }
    fclose(f);
    return GW_OK;
}

gw_err
gw_tls_ctx_new(const char *cert_file, const char *key_file, struct gw_tls_ctx **out,
               struct gw_buf *err)
{
    struct gw_tls_ctx *ctx = NULL;
    SSL_CTX *sc = NULL;
    char why[256];
    const char *step = "create a context";
    gw_err rv;

    *out = NULL;
    rv = tls_check_readable("certificate", cert_file, err);
    if (rv != GW_OK)
        return rv;
    rv = tls_check_readable("key", key_file, err);
    if (rv != GW_OK)
        return rv;
    ERR_clear_error();
    rv = GW_EPROTO;
    sc = SSL_CTX_new(TLS_server_method());
    if (sc == NULL)
        goto fail;
    step = "set the minimum protocol version";
    if (SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION) != 1)
        goto fail;
    /* Renegotiation is a CPU lever for clients and nothing we need. */
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                SSL_OP_NO_COMPRESSION);
    /* Stateless tickets resume sessions without the context-wide session
     * cache, whose lock every worker's handshake would take. */
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
    /* Idle keep-alive connections give their record buffers back. */
    SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(sc, tls_alpn_select, NULL);
    step = "load the certificate chain";
    if (SSL_CTX_use_certificate_chain_file(sc, cert_file) != 1)
        goto fail;
    step = "load the private key";
    if (SSL_CTX_use_PrivateKey_file(sc, key_file, SSL_FILETYPE_PEM) != 1)
        goto fail;
    step = "match the private key with the certificate";
    if (SSL_CTX_check_private_key(sc) != 1)
        goto fail;
    ctx = gw_xcalloc(1, sizeof(*ctx));
    ctx->ssl_ctx = sc;
    atomic_init(&ctx->refs, 1);
    *out = ctx;
    return GW_OK;

fail:
    tls_error_string(why, sizeof(why));
    if (err != NULL)
        gw_buf_appendf(err, "cannot %s (certificate %s, key %s): %s", step, cert_file, key_file,
                       why);
    SSL_CTX_free(sc);
    return rv;
}

struct gw_tls_ctx *
gw_tls_ctx_ref(struct gw_tls_ctx *ctx)
{
    if (ctx != NULL)
        atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
    return ctx;
}

void
gw_tls_ctx_unref(struct gw_tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* SSL objects hold their own SSL_CTX reference: live connections keep
     * working after the last gw_tls_ctx reference is gone. */
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* ---- connection ---- */

gw_err
gw_tls_new(struct gw_tls_ctx *ctx, const char *label, struct gw_tls **out)
{
    struct gw_tls *t;
    BIO *rbio, *wbio;

    *out = NULL;
    if (ctx == NULL)
        return GW_EINVAL;
    t = gw_xcalloc(1, sizeof(*t));
    t->label = label != NULL ? label : "?";
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl_ctx);
    rbio = BIO_new(BIO_s_mem());
    wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || rbio == NULL || wbio == NULL) {
        BIO_free(rbio);
        BIO_free(wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return GW_ENOMEM;
    }
    /* An empty read BIO means "no data yet", not EOF: SSL_read then asks
     * for more (WANT_READ) instead of failing. */
    BIO_set_mem_eof_return(rbio, -1);
    BIO_set_mem_eof_return(wbio, -1);
    SSL_set_bio(t->ssl, rbio, wbio);
    t->rbio = rbio;
    t->wbio = wbio;
    SSL_set_accept_state(t->ssl);
    *out = t;
    return GW_OK;
}

void
gw_tls_free(struct gw_tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t->error);
    free(t);
}

/* Moves everything the write BIO holds to out. */
static void
tls_drain_out(struct gw_tls *t, struct gw_buf *out)
{
    size_t pending = BIO_ctrl_pending(t->wbio);

    while (pending > 0) {
        int n;

        gw_buf_reserve(out, pending);
        n = BIO_read(t->wbio, out->data + out->len, (int)(pending > INT_MAX ? INT_MAX : pending));
        if (n <= 0)
            break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        pending = BIO_ctrl_pending(t->wbio);
    }
}

static gw_err
tls_fail(struct gw_tls *t, const char *what)
{
    unsigned long e = ERR_peek_error();
    char why[256];
    struct gw_buf msg = GW_BUF_INIT;

    if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
        (ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST || ERR_GET_REASON(e) == SSL_R_HTTPS_PROXY_REQUEST))
        t->spoke_http = 1;
    tls_error_string(why, sizeof(why));
    gw_buf_appendf(&msg, "%s: %s", what, why);
    free(t->error);
    t->error = gw_buf_steal(&msg, NULL);
    t->failed = 1;
    gw_log(GW_LOG_DEBUG, "TLS-ERROR", "%s: %s", t->label, t->error);
    return GW_EPROTO;
}

/* Interprets a failed SSL_* I/O call: GW_OK when it only wants more input,
 * GW_ECLOSED for close_notify, GW_EPROTO otherwise. */
static gw_err
tls_io_result(struct gw_tls *t, int ret, const char *what)
{
    int e = SSL_get_error(t->ssl, ret);

    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: /* memory BIOs: the write side never fills */
        ERR_clear_error();
        return GW_OK;
    case SSL_ERROR_ZERO_RETURN:
        t->peer_closed = 1;
        ERR_clear_error();
        return GW_ECLOSED;
    case SSL_ERROR_SYSCALL:
        /* With memory BIOs this is an unexpected EOF or a bug; both end
         * the session. */
        if (ERR_peek_error() == 0) {
            free(t->error);
            t->error = gw_xstrdup("unexpected end of TLS input");
            t->failed = 1;
            gw_log(GW_LOG_DEBUG, "TLS-ERROR", "%s: %s: %s", t->label, what, t->error);
            return GW_EPROTO;
        }
        return tls_fail(t, what);
    default:
        return tls_fail(t, what);
    }
}

/* Runs the engine on what the read BIO holds: the handshake, then every
 * whole record into plain. GW_OK when it needs more input. */
static gw_err
tls_pump(struct gw_tls *t, struct gw_buf *plain)
{
    if (!t->handshake_done) {
        int ret = SSL_do_handshake(t->ssl);
        if (ret != 1)
            return tls_io_result(t, ret, "TLS handshake");
        t->handshake_done = 1;
    }
    for (;;) {
        size_t got = 0;
        int ret;

        gw_buf_reserve(plain, TLS_READ_STEP);
        ret = SSL_read_ex(t->ssl, plain->data + plain->len, plain->cap - plain->len - 1, &got);
        if (ret != 1)
            return tls_io_result(t, ret, "TLS read");
        plain->len += got;
        plain->data[plain->len] = '\0';
    }
}

gw_err
gw_tls_feed(struct gw_tls *t, const void *data, size_t len, struct gw_buf *plain,
            struct gw_buf *cipher_out)
{
    const char *p = data;
    gw_err rv = GW_OK;

    if (t->failed)
        return GW_EPROTO;
    if (t->peer_closed)
        return GW_ECLOSED;
    ERR_clear_error();
    /* In record-sized steps: a memory BIO keeps the largest size it ever
     * held for the connection's lifetime. */
    while (len > 0 && rv == GW_OK) {
        size_t step = len < TLS_IO_STEP ? len : TLS_IO_STEP;
        int n = BIO_write(t->rbio, p, (int)step);
        if (n <= 0) {
            rv = tls_fail(t, "buffering TLS input");
            break;
        }
        p += n;
        len -= (size_t)n;
        rv = tls_pump(t, plain);
    }
    /* Handshake replies, alerts and tickets go out whatever happened. */
    tls_drain_out(t, cipher_out);
    return rv;
}

gw_err
gw_tls_write(struct gw_tls *t, const void *data, size_t len, struct gw_buf *cipher_out)
{
    size_t done = 0;

    if (!t->handshake_done || t->failed || t->notify_sent)
        return GW_EINVAL;
    ERR_clear_error();
    /* Records add at most a few dozen bytes per 16 KiB. */
    gw_buf_reserve(cipher_out, len + (len / TLS_IO_STEP + 1) * 64);
    while (done < len) {
        size_t n = 0;
        size_t step = len - done < TLS_IO_STEP ? len - done : TLS_IO_STEP;
        int ret = SSL_write_ex(t->ssl, (const char *)data + done, step, &n);
        if (ret != 1) {
            gw_err rv = tls_io_result(t, ret, "TLS write");
            tls_drain_out(t, cipher_out);
            /* A write that "wants read" cannot make progress on its own. */
            return rv == GW_OK ? GW_EPROTO : rv;
        }
        done += n;
        /* Keep the write BIO at one record (see gw_tls_feed). */
        tls_drain_out(t, cipher_out);
    }
    return GW_OK;
}

void
gw_tls_close_notify(struct gw_tls *t, struct gw_buf *cipher_out)
{
    if (!t->handshake_done || t->failed || t->notify_sent)
        return;
    t->notify_sent = 1;
    ERR_clear_error();
    /* 0 = sent, waiting for the peer's: we do not wait for it. */
    (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
    tls_drain_out(t, cipher_out);
}

int
gw_tls_handshake_done(const struct gw_tls *t)
{
    return t->handshake_done;
}

int
gw_tls_peer_spoke_http(const struct gw_tls *t)
{
    return t->spoke_http;
}

const char *
gw_tls_error(const struct gw_tls *t)
{
    return t->error != NULL ? t->error : "";
}

const char *
gw_tls_version(const struct gw_tls *t)
{
    return SSL_get_version(t->ssl);
}

const char *
gw_tls_alpn(const struct gw_tls *t)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;

    SSL_get0_alpn_selected(t->ssl, &p, &n);
    if (n == 8 && memcmp(p, "http/1.1", 8) == 0)
        return "http/1.1";
    return "";
}
