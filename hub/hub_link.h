/* SPDX-License-Identifier: Apache-2.0 */
/* The hub end of the hub <-> edge link: one NNG REP socket, listening on
 * any number of URLs (inproc:// for the in-process edge, tcp:// or
 * tls+tcp:// for remote ones), served by a few worker threads that each
 * decode a request, run it against the store and send the reply. Requests:
 * Hello, FetchSnapshot, UsageBatch (see proto/carpool.proto). */
#ifndef HUB_LINK_H
#define HUB_LINK_H

#include <stdint.h>

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
 * ("inproc://aicarpool-link", "tcp://127.0.0.1:0", ...). Errors from NNG
 * (GW_EINVAL for a bad URL, an address in use, ...) are logged with the URL
 * and mapped by gw_err_from_nng. Any thread. */
gw_err hub_link_listen(struct hub_link *link, const char *url) GW_WARN_UNUSED;

/* hub_link_listen() that also reports the TCP port actually bound (useful
 * with port 0); *port_out is 0 for transports without a port (inproc://).
 * port_out may be NULL. */
gw_err hub_link_listen_port(struct hub_link *link, const char *url,
                            uint16_t *port_out) GW_WARN_UNUSED;

/* Stops the workers (a request being handled is finished but may get no
 * reply; REQ peers resend it later, which is safe because every request is
 * idempotent), joins them, closes the socket and frees the link, wiping its
 * copy of the master key. Blocks until a worker inside a store call
 * returns. NULL is a no-op. Never from a link worker. */
void hub_link_free(struct hub_link *link);

#endif
