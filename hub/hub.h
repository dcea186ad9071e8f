/* SPDX-License-Identifier: Apache-2.0 */
/* The hub process minus main(): prepares the data directory and master key,
 * opens the store, creates the first admin and the quickstart demo, starts
 * the edge link (always inproc://aicarpool-link, plus an optional URL) and
 * the admin API on a uv loop, and shuts them down in order. main.c adds the
 * in-process edge, signals and the printed lines (hub_core does not depend
 * on the edge). */
#ifndef HUB_HUB_H
#define HUB_HUB_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "gw_buf.h"
#include "gw_err.h"
#include "hub_config.h"
#include "keys.h"
#include "store.h"

struct hub;

enum hub_demo_state {
    HUB_DEMO_NONE = 0,    /* no demo-upstream configured */
    HUB_DEMO_CREATED = 1, /* created now; hub_demo_key() has the key */
    HUB_DEMO_EXISTED = 2, /* the store already had groups; key not shown again */
};

/* Creates dir (and missing parents) with mode 0700; an existing directory is
 * kept as it is. Reason to err on failure (GW_EIO). Blocking. */
gw_err hub_data_dir_prepare(const char *dir, struct gw_buf *err) GW_WARN_UNUSED;

/* Writes the DSN with any password replaced by "***" to out (NUL-terminated,
 * truncated to out_size), for messages. */
void hub_dsn_redact(const char *dsn, char *out, size_t out_size);

/* When the store has no admin: creates `user` with `password`, or with a
 * generated 24-char password and must_change_password set when password is
 * NULL, and prints a banner to out (the generated password appears there
 * once, and nowhere else). No-op when an admin exists. Blocking (scrypt and
 * store calls): not on a loop thread. */
gw_err hub_bootstrap_admin(struct hub_store *st, const char *user, const char *password, FILE *out,
                           struct gw_buf *err) GW_WARN_UNUSED;

/* Quickstart demo: when the store has no group yet, creates group "demo",
 * account "demo-fake-provider" (kind mock, base_url upstream, credential
 * "demo-upstream-key" sealed with master), binds them and creates a gateway
 * key named "demo", written to key_out (the caller shows it once and wipes
 * it). *state says what happened. Blocking. */
gw_err hub_demo_setup(struct hub_store *st, const uint8_t master[HUB_MASTER_KEY_LEN],
                      const char *upstream, char key_out[HUB_KEY_MAX], enum hub_demo_state *state,
                      struct gw_buf *err) GW_WARN_UNUSED;

/* Writes <data_dir>/ports.json {"admin":P,"edge":P,"link":P,"push":P}
 * (edge, link and push null when < 0) via a temporary file and rename, so a
 * reader never sees a partial file. Blocking. */
gw_err hub_write_ports(const char *data_dir, int admin_port, int edge_port, int link_port,
                       int push_port, struct gw_buf *err) GW_WARN_UNUSED;

/* Starts the hub on loop: data dir, master key, store, first admin (banner
 * to out), demo (when cfg->demo_upstream), link on inproc://aicarpool-link
 * and cfg->link (mutual TLS with cfg->link_cert / link_ca), pushes on
 * inproc://aicarpool-push and cfg->push, admin API on cfg->listen. Borrows cfg for the call only.
 * On failure everything started is undone and a reason without secrets is
 * in err. Runs the blocking steps on the calling thread: call it before the
 * loop runs. */
gw_err hub_new(const struct hub_config *cfg, uv_loop_t *loop, FILE *out, struct hub **out_hub,
               struct gw_buf *err) GW_WARN_UNUSED;

/* The admin API's bound port. */
int hub_admin_port(const struct hub *h);
/* The bound TCP ports of cfg->link and cfg->push; -1 when not listening on
 * a TCP transport. */
int hub_link_port(const struct hub *h);
int hub_push_port(const struct hub *h);
/* What the demo setup did, and the key when it was created now (NULL
 * otherwise). The key is wiped by hub_demo_key_wipe() or at close. */
enum hub_demo_state hub_demo_state(const struct hub *h);
const char *hub_demo_key(const struct hub *h);
void hub_demo_key_wipe(struct hub *h);
/* The master key (HUB_MASTER_KEY_LEN bytes), borrowed. */
const uint8_t *hub_master_key(const struct hub *h);
struct hub_store *hub_get_store(const struct hub *h);

/* Closes the admin API (asynchronously: run the loop until done_cb), then
 * frees the link, closes the store and frees the hub, and calls done_cb(arg)
 * (may be NULL) on the loop thread. Any in-process edge must already be
 * stopped, since its usage flush goes through the link. Loop thread. */
void hub_close(struct hub *h, void (*done_cb)(void *arg), void *arg);

#endif
