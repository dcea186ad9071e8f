/* SPDX-License-Identifier: Apache-2.0 */
/* Server-side TLS for the libuv HTTP server: OpenSSL driven through two
 * memory BIOs, so the socket I/O stays libuv's. The caller feeds what the
 * socket delivered and gets plaintext back plus ciphertext to send (the
 * handshake, alerts, tickets); it encrypts response bytes the same way.
 * A context (certificate, key, TLS 1.2+, ALPN http/1.1) is reference
 * counted and shared by every worker thread; a connection object belongs to
 * one loop thread. */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stddef.h>

#include "gw_buf.h"
#include "gw_err.h"

struct gw_tls_ctx;
struct gw_tls;

/* Loads a PEM certificate chain (leaf first, then intermediates) and its
 * PEM private key into a new server context: TLS 1.2 minimum, OpenSSL's
 * default cipher suites, no renegotiation, stateless session tickets (no
 * shared session cache), ALPN "http/1.1". Borrows the paths. Errors:
 * GW_EINVAL for a NULL/empty path, GW_EIO for a file that cannot be read,
 * GW_EPROTO when OpenSSL rejects the certificate or key or they do not
 * match; a one-line reason (path, errno text or OpenSSL error string) is
 * appended to err (may be NULL). On success *out holds one reference. Any
 * thread. */
gw_err gw_tls_ctx_new(const char *cert_file, const char *key_file, struct gw_tls_ctx **out,
                      struct gw_buf *err) GW_WARN_UNUSED;
/* Adds a reference and returns ctx. Any thread (atomic). */
struct gw_tls_ctx *gw_tls_ctx_ref(struct gw_tls_ctx *ctx);
/* Drops a reference; the last one frees the context. Connections made from
 * it keep what they need, so a reload can drop the old context at once.
 * NULL is a no-op. Any thread. */
void gw_tls_ctx_unref(struct gw_tls_ctx *ctx);

/* A server-side connection from ctx (borrowed: the connection holds its own
 * reference through OpenSSL). `label` names the peer in log lines
 * ("127.0.0.1:5555"); borrowed, it must outlive the connection (NULL: "?").
 * GW_EINVAL for a NULL ctx, GW_ENOMEM when OpenSSL cannot allocate. The
 * returned object is owned by the caller (gw_tls_free). Any thread; the
 * connection is then used by one thread at a time. */
gw_err gw_tls_new(struct gw_tls_ctx *ctx, const char *label, struct gw_tls **out) GW_WARN_UNUSED;
/* Frees a connection; NULL is a no-op. */
void gw_tls_free(struct gw_tls *t);

/* Hands `len` bytes received from the peer (borrowed) to the engine and
 * runs it: drives the handshake, then decrypts. Plaintext is appended to
 * `plain`; bytes that must go to the peer (handshake messages, alerts,
 * session tickets) are appended to `cipher_out`, which the caller sends
 * whatever the result. Returns GW_OK (possibly with no plaintext yet: more
 * input is needed), GW_ECLOSED when the peer sent close_notify (plaintext
 * before it was still appended; nothing more will come), or GW_EPROTO when
 * the TLS session failed (bad handshake, bad record, a plain HTTP request
 * on the TLS port: see gw_tls_peer_spoke_http); the reason is logged at
 * debug level with the OpenSSL error string and kept for gw_tls_error().
 * After GW_ECLOSED or GW_EPROTO the connection must not be fed again. */
gw_err gw_tls_feed(struct gw_tls *t, const void *data, size_t len, struct gw_buf *plain,
                   struct gw_buf *cipher_out) GW_WARN_UNUSED;

/* Encrypts `len` bytes (borrowed) and appends the records to cipher_out.
 * GW_EINVAL before the handshake completed or after a failure or
 * close_notify, GW_EPROTO when OpenSSL fails (logged at debug). */
gw_err gw_tls_write(struct gw_tls *t, const void *data, size_t len,
                    struct gw_buf *cipher_out) GW_WARN_UNUSED;

/* Appends our close_notify alert to cipher_out, once; a no-op before the
 * handshake completed or after a failure. */
void gw_tls_close_notify(struct gw_tls *t, struct gw_buf *cipher_out);

/* 1 once the handshake completed. */
int gw_tls_handshake_done(const struct gw_tls *t);
/* 1 when the session failed because the peer sent a plain HTTP request
 * (the caller may answer it in plain text before closing). */
int gw_tls_peer_spoke_http(const struct gw_tls *t);
/* The reason of the last GW_EPROTO ("" when none). Borrowed; valid until
 * the next call on t. */
const char *gw_tls_error(const struct gw_tls *t);
/* Negotiated protocol version ("TLSv1.3") and ALPN protocol ("http/1.1",
 * "" when none); static strings, meaningful after the handshake. */
const char *gw_tls_version(const struct gw_tls *t);
const char *gw_tls_alpn(const struct gw_tls *t);

#endif
