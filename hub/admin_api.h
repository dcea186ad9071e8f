/* SPDX-License-Identifier: Apache-2.0 */
/* The admin REST API: JSON over a gw_http server on the hub's uv loop.
 * Handlers validate on the loop, run every store call (and password
 * hashing) on the libuv threadpool through uv_queue_work, and answer from
 * the after-work callback. Every route but login and /healthz requires an
 * access token; errors are {"error":{"code":..,"message":..}}. The routes
 * are described in docs/admin-api.md.
 *
 * Threading: every function must be called on the loop's thread. */
#ifndef HUB_ADMIN_API_H
#define HUB_ADMIN_API_H

#include <stdint.h>
#include <uv.h>

#include "gw_err.h"
#include "keys.h"
#include "store.h"

struct hub_admin_api;

#define HUB_ADMIN_API_MAX_BODY (1024 * 1024)

/* Creates the API on loop. Borrows store (must outlive the API); copies
 * master (used to seal provider credentials and to derive the JWT key).
 * access_ttl_s is the access token lifetime. */
gw_err hub_admin_api_new(uv_loop_t *loop, struct hub_store *store,
                         const uint8_t master[HUB_MASTER_KEY_LEN], int64_t access_ttl_s,
                         struct hub_admin_api **out) GW_WARN_UNUSED;

/* Listens on "HOST:PORT"; the bound port goes to *bound_port when not NULL
 * (useful with port 0). Errors as gw_http_server_listen. */
gw_err hub_admin_api_listen(struct hub_admin_api *api, const char *host_port,
                            int *bound_port) GW_WARN_UNUSED;

/* After every successful change (any non-GET request whose store call
 * succeeded) the API calls hub_link_notify(link), so the link pushes Deltas
 * to edges at once. link may be NULL (no pushes) and must outlive the API. */
struct hub_link;
void hub_admin_api_set_link(struct hub_admin_api *api, struct hub_link *link);

/* Stops accepting and frees the API once every connection is closed and
 * every queued store call has answered; then calls closed_cb(arg) (may be
 * NULL) on the loop thread. The store must stay open until then. */
void hub_admin_api_close(struct hub_admin_api *api, void (*closed_cb)(void *arg), void *arg);

#endif
