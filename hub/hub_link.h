/* SPDX-License-Identifier: Apache-2.0 */
/* The hub end of the hub <-> edge link: one NNG REP socket, listening on
 * any number of URLs (inproc:// for the in-process edge, tcp:// or
 * tls+tcp:// for remote ones), served by a few worker threads that each
 * decode a request, run it against the store and send the reply. Requests:
 * Hello (with enrolment for remote edges), FetchSnapshot, FetchDeltas,
 * UsageBatch, Heartbeat (see proto/carpool.proto). A PUB socket pushes
 * Deltas after every config change. */
#ifndef HUB_LINK_H
#define HUB_LINK_H

#include <stdint.h>

#include "gw_buf.h"
#include "gw_crypto.h"
#include "gw_err.h"
#include "store.h"

/* Largest frame accepted (NNG_OPT_RECVMAXSZ and the decode limit). NNG drops
 * bigger frames on TCP without a reply; the edge's REQ times out. */
#define HUB_LINK_RECV_MAX (64u * 1024 * 1024)
/* Worker threads, each with its own REP context: that many requests are
 * handled at once (store calls still serialise inside the store). */
#define HUB_LINK_WORKERS 4
/* The price list is cached. It is reloaded when the store's config version
 * changed since the last load, and in any case every this many usage
 * batches, so a price edit that does not bump the version still lands. */
#define HUB_LINK_PRICE_RELOAD_BATCHES 64
/* The URL of the in-process edge link in centralised and hybrid modes. */
#define HUB_LINK_INPROC_URL "inproc://aicarpool-link"
/* The PUB socket the in-process edge subscribes to. */
#define HUB_LINK_INPROC_PUSH_URL "inproc://aicarpool-push"
/* Associated data of a sealed edge enrolment secret. */
#define HUB_LINK_EDGE_SECRET_AAD "edge-secret"
/* Most changes in one Deltas (FetchDeltas reply or push); more and the edge
 * is told to fetch a snapshot. */
#define HUB_LINK_DELTAS_MAX 10000
/* PUB send buffer (messages): a slow subscriber loses pushes beyond it and
 * catches up with FetchDeltas on the next gap. */
#define HUB_LINK_PUSH_SENDBUF 1024
/* The publisher also checks the config version this often, so changes made
 * without hub_link_notify (account events) are pushed too. */
#define HUB_LINK_PUSH_POLL_MS 1000

struct hub_link;

/* Opens the REP socket, loads the price list and starts the workers.
 * Borrows store, which must outlive the link; copies master_key (used to
 * open the sealed account credentials before they are sent to edges).
 * Nothing is served until hub_link_listen(). Errors: GW_EINVAL (NULL
 * argument), GW_ESTORE (price list), NNG failures mapped by
 * gw_err_from_nng. On success *out is owned by the caller
 * (hub_link_free). Any thread. */
gw_err hub_link_new(struct hub_store *store, const uint8_t master_key[GW_AES_KEY_LEN],
                    struct hub_link **out) GW_WARN_UNUSED;

/* Starts listening on url; may be called several times with different URLs
 * ("inproc://aicarpool-link", "tcp://127.0.0.1:0", ...). Pipes from an
 * inproc:// listener are trusted (the in-process edge); every other pipe must
 * enrol (Hello with an HMAC proof over a hub nonce, see carpool.proto) before
 * anything else is answered. tcp:// is refused (GW_EINVAL) unless the host
 * is a loopback address (127.x.x.x, ::1, localhost); tls+tcp:// needs
 * hub_link_set_tls() first (GW_EINVAL otherwise). Errors from NNG (GW_EINVAL
 * for a bad URL, an address in use, ...) are logged with the URL and mapped
 * by gw_err_from_nng. Any thread. */
gw_err hub_link_listen(struct hub_link *link, const char *url) GW_WARN_UNUSED;

/* hub_link_listen() that also reports the TCP port actually bound (useful
 * with port 0); *port_out is 0 for transports without a port (inproc://).
 * port_out may be NULL. */
gw_err hub_link_listen_port(struct hub_link *link, const char *url,
                            uint16_t *port_out) GW_WARN_UNUSED;

/* Mutual TLS for tls+tcp:// listeners (link and push): cert_key_file holds
 * the hub's certificate followed by its key (PEM), ca_file the CA that edge
 * client certificates must chain to (required). Call before listening.
 * Errors: GW_EINVAL (NULL argument, called twice), NNG failures (unreadable
 * or invalid files) logged with the path. Any thread. */
gw_err hub_link_set_tls(struct hub_link *link, const char *cert_key_file,
                        const char *ca_file) GW_WARN_UNUSED;

/* Opens the PUB socket on first use (NNG_OPT_SENDBUF HUB_LINK_PUSH_SENDBUF)
 * and listens on url with the same transport rules as hub_link_listen; the
 * publisher thread starts with the first push listener. After every config
 * change it publishes one Envelope{Deltas} from the last published version to
 * the current one (snapshot_required when more than HUB_LINK_DELTAS_MAX
 * changes). *port_out as in hub_link_listen_port (may be NULL). The URL
 * becomes the push_url of HelloReply: inproc:// ones for trusted pipes,
 * others for remote edges (with the bound port when url asked for port 0),
 * unless hub_link_set_push_advertise() overrides it. Any thread. */
gw_err hub_link_push_listen(struct hub_link *link, const char *url,
                            uint16_t *port_out) GW_WARN_UNUSED;

/* The push URL told to remote edges (e.g. the public name when the hub
 * listens on 0.0.0.0). Copied. Any thread. */
void hub_link_set_push_advertise(struct hub_link *link, const char *url);

/* Wakes the publisher: call after a successful config change. Cheap and
 * non-blocking; NULL is a no-op. Any thread. */
void hub_link_notify(struct hub_link *link);

/* Seals / opens an edge enrolment secret with the master key (AES-256-GCM,
 * aad HUB_LINK_EDGE_SECRET_AAD), appending to out. Open gives GW_EAUTH for
 * altered bytes or another key. Any thread. */
gw_err hub_link_seal_edge_secret(const uint8_t master[GW_AES_KEY_LEN], const void *secret,
                                 size_t len, struct gw_buf *out) GW_WARN_UNUSED;
gw_err hub_link_open_edge_secret(const uint8_t master[GW_AES_KEY_LEN], const void *sealed,
                                 size_t len, struct gw_buf *out) GW_WARN_UNUSED;

/* Stops the workers (a request being handled is finished but may get no
 * reply; REQ peers resend it later, which is safe because every request is
 * idempotent), joins them, closes the socket and frees the link, wiping its
 * copy of the master key. Blocks until a worker inside a store call
 * returns. NULL is a no-op. Never from a link worker. */
void hub_link_free(struct hub_link *link);

#endif
