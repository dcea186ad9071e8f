/* SPDX-License-Identifier: Apache-2.0 */
/* The hub's configuration: one table (see gw_config.h) that drives flags,
 * AICARPOOL_* environment variables, the config file, --print-config and the
 * reference in docs/config.md, plus the derivation of the values that depend
 * on the data directory ("<data>" in a value is replaced by it). */
#ifndef HUB_CONFIG_H
#define HUB_CONFIG_H

#include <stdint.h>

#include "gw_buf.h"
#include "gw_config.h"
#include "gw_err.h"

#define HUB_VERSION_STRING "0.1.0"

struct hub_config {
    char *listen;          /* admin API "HOST:PORT" */
    char *data;            /* data directory */
    char *db;              /* store DSN */
    char *link;            /* extra NNG URL for remote edges, NULL = none */
    char *link_cert;       /* tls+tcp:// link: PEM with the hub's certificate and key */
    char *link_ca;         /* tls+tcp:// link: PEM CA that edge client certificates chain to */
    char *push;            /* PUB URL for remote edges; NULL = derived from link (port + 1) */
    char *push_advertise;  /* push URL told to remote edges; NULL = push as configured */
    char *edge_listen;     /* in-process edge "HOST:PORT", NULL = no edge */
    char *edge_tls_cert;   /* in-process edge: PEM certificate chain, NULL = plain HTTP */
    char *edge_tls_key;    /* in-process edge: PEM private key */
    int64_t edge_workers;  /* in-process edge: worker threads, 0 = one per CPU (max 16) */
    char *master_key_file; /* 32 random bytes, 0600 */
    char *admin_user;      /* first admin's user name */
    char *admin_password;  /* first admin's password (secret), NULL = generate */
    char *demo_upstream;   /* fake provider URL for the quickstart demo */
    int64_t jwt_ttl_s;     /* access token lifetime */
    char *log_level;       /* error|warn|info|debug */
};

/* The table; ends with an entry whose key is NULL. */
extern const struct gw_cfg_entry hub_config_table[];

/* After gw_config_load(): replaces "<data>" in db and master-key-file with
 * the data directory, derives push from link (same URL, port + 1; port 0
 * stays 0) when link is set and push is not, and checks the values the table
 * cannot check (log-level name, non-empty listen, data and admin-user,
 * link-cert and link-ca for a tls+tcp:// link or push). Problems are
 * appended to err, one per line; returns GW_EINVAL when there was any.
 * Strings stay owned by cfg. Any thread. */
gw_err hub_config_resolve(struct hub_config *cfg, struct gw_buf *err) GW_WARN_UNUSED;

/* The URL `url` with its port increased by one (port 0 stays 0), or NULL
 * when url has no numeric port after "scheme://host:". Owned (free()). */
char *hub_config_push_from_link(const char *url);

/* Frees the strings of cfg (gw_config_free on the table). */
void hub_config_fini(struct hub_config *cfg);

#endif
