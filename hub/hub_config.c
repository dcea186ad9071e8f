/* SPDX-License-Identifier: Apache-2.0 */
/* The hub's configuration table and the few derived values: the defaults of
 * db and master-key-file are written relative to "<data>" so the reference
 * shows where they end up and one --data flag moves everything. */
#include "hub_config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "gw_log.h"

#define HUB_CFG_STR(k, d, fl, field, h)                                                            \
    {                                                                                              \
        (k), GW_CFG_STR, (d), 0, 0, (fl), offsetof(struct hub_config, field), (h)                  \
    }

const struct gw_cfg_entry hub_config_table[] = {
    HUB_CFG_STR("listen", "127.0.0.1:8787", 0, listen,
                "Admin API listen address HOST:PORT (port 0 lets the OS choose)."),
    HUB_CFG_STR("data", "./aicarpool-data", 0, data,
                "Data directory (created with mode 0700): database, master key, ports.json."),
    HUB_CFG_STR("db", "sqlite:<data>/hub.db", 0, db,
                "Store DSN: sqlite:PATH, sqlite::memory: or mysql://user:pass@host:port/db."),
    HUB_CFG_STR("link", NULL, 0, link,
                "Extra NNG URL for remote edges (e.g. tls+tcp://0.0.0.0:7600); the in-process "
                "edge always uses inproc://aicarpool-link."),
    HUB_CFG_STR("link-cert", NULL, 0, link_cert,
                "tls+tcp:// link and push: PEM file with the hub's certificate followed by its "
                "private key (scripts/make-certs writes hub-bundle.pem)."),
    HUB_CFG_STR("link-ca", NULL, 0, link_ca,
                "tls+tcp:// link and push: PEM CA that edge client certificates must chain to "
                "(mutual TLS; edges without a valid certificate are refused)."),
    HUB_CFG_STR("push", NULL, 0, push,
                "NNG URL of the PUB socket that pushes config changes to remote edges; unset = "
                "the link URL with port + 1 (ipc:// links: the same path + \"-push\"). The in-process edge always uses "
                "inproc://aicarpool-push."),
    HUB_CFG_STR("push-advertise", NULL, 0, push_advertise,
                "Push URL told to remote edges in the enrolment reply (e.g. tls+tcp://hub.example"
                ":7601 when push listens on 0.0.0.0); unset = push as configured."),
    HUB_CFG_STR("edge-listen", NULL, 0, edge_listen,
                "Run an in-process edge listening on HOST:PORT; unset = no in-process edge."),
    HUB_CFG_STR("edge-tls-cert", NULL, 0, edge_tls_cert,
                "In-process edge: PEM certificate chain for HTTPS (with edge-tls-key); unset = "
                "plain HTTP."),
    HUB_CFG_STR("edge-tls-key", NULL, 0, edge_tls_key,
                "In-process edge: PEM private key of edge-tls-cert."),
    {"edge-workers", GW_CFG_INT, "0", 0, 256, 0, offsetof(struct hub_config, edge_workers),
     "In-process edge: worker threads sharing its port; 0 = one per CPU, at most 16."},
    HUB_CFG_STR("master-key-file", "<data>/master.key", 0, master_key_file,
                "Master secret (32 random bytes, mode 0600), generated on first start; the hub "
                "refuses to start when it has another size or is group/world-readable."),
    HUB_CFG_STR("admin-user", "admin", 0, admin_user,
                "User name of the first admin, created when there is no admin yet."),
    HUB_CFG_STR("admin-password", NULL, GW_CFG_F_SECRET, admin_password,
                "Password of the first admin (only used when creating it); unset = a random "
                "password is generated, printed once and must be changed."),
    HUB_CFG_STR("demo-upstream", NULL, 0, demo_upstream,
                "URL of the fake provider for the quickstart demo: on first start creates group, "
                "account, binding and a gateway key named demo."),
    {"jwt-ttl-s", GW_CFG_INT, "900", 60, 86400, 0, offsetof(struct hub_config, jwt_ttl_s),
     "Lifetime of admin access tokens in seconds."},
    HUB_CFG_STR("log-level", "info", 0, log_level,
                "Diagnostic log level: error, warn, info or debug."),
    {NULL, GW_CFG_STR, NULL, 0, 0, 0, 0, NULL},
};

/* Replaces every "<data>" in *field with data; leaves other text alone. */
static void
config_expand_data(char **field, const char *data)
{
    static const char token[] = "<data>";
    struct gw_buf out = GW_BUF_INIT;
    const char *p;
    const char *hit;

    if (*field == NULL || strstr(*field, token) == NULL)
        return;
    p = *field;
    hit = strstr(p, token);
    while (hit != NULL) {
        gw_buf_append(&out, p, (size_t)(hit - p));
        gw_buf_append_str(&out, data);
        p = hit + sizeof(token) - 1;
        hit = strstr(p, token);
    }
    gw_buf_append_str(&out, p);
    free(*field);
    *field = gw_buf_steal(&out, NULL);
}

static int
config_empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

static void
config_drop_empty(char **field)
{
    if (*field != NULL && (*field)[0] == '\0') {
        free(*field);
        *field = NULL;
    }
}

char *
hub_config_push_from_link(const char *url)
{
    const char *sep, *colon, *p;
    struct gw_buf out = GW_BUF_INIT;
    unsigned long port = 0;

    if (url == NULL)
        return NULL;
    /* Path-named transports have no port: the push socket is the same name
     * with "-push" appended. */
    if (strncmp(url, "ipc://", 6) == 0 || strncmp(url, "inproc://", 9) == 0) {
        if (strlen(url) <= 9)
            return NULL;
        gw_buf_appendf(&out, "%s-push", url);
        return gw_buf_steal(&out, NULL);
    }
    sep = strstr(url, "://");
    colon = strrchr(url, ':');
    if (sep == NULL || colon == NULL || colon <= sep + 2 || colon[1] == '\0')
        return NULL;
    for (p = colon + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || port > 65535)
            return NULL;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port >= 65535)
        return NULL;
    gw_buf_append(&out, url, (size_t)(colon - url));
    gw_buf_appendf(&out, ":%lu", port == 0 ? 0 : port + 1);
    return gw_buf_steal(&out, NULL);
}

gw_err
hub_config_resolve(struct hub_config *cfg, struct gw_buf *err)
{
    gw_err rv = GW_OK;

    if (config_empty(cfg->data)) {
        gw_buf_appendf(err, "data: must not be empty\n");
        rv = GW_EINVAL;
    }
    if (config_empty(cfg->listen)) {
        gw_buf_appendf(err, "listen: must not be empty\n");
        rv = GW_EINVAL;
    }
    if (config_empty(cfg->admin_user) || strlen(cfg->admin_user) >= 64) {
        gw_buf_appendf(err, "admin-user: must be 1 to 63 characters\n");
        rv = GW_EINVAL;
    }
    if (cfg->admin_password != NULL && strlen(cfg->admin_password) < 8) {
        gw_buf_appendf(err, "admin-password: must be at least 8 characters\n");
        rv = GW_EINVAL;
    }
    if (cfg->log_level != NULL && gw_log_set_level(cfg->log_level) != 0) {
        gw_buf_appendf(err, "log-level: unknown level '%s' (error, warn, info, debug)\n",
                       cfg->log_level);
        rv = GW_EINVAL;
    }
    if (cfg->edge_listen != NULL && cfg->edge_listen[0] == '\0') {
        free(cfg->edge_listen);
        cfg->edge_listen = NULL;
    }
    if (cfg->edge_tls_cert != NULL && cfg->edge_tls_cert[0] == '\0') {
        free(cfg->edge_tls_cert);
        cfg->edge_tls_cert = NULL;
    }
    if (cfg->edge_tls_key != NULL && cfg->edge_tls_key[0] == '\0') {
        free(cfg->edge_tls_key);
        cfg->edge_tls_key = NULL;
    }
    if ((cfg->edge_tls_cert == NULL) != (cfg->edge_tls_key == NULL)) {
        gw_buf_appendf(err, "edge-tls-cert and edge-tls-key: set both or neither\n");
        rv = GW_EINVAL;
    }
    config_drop_empty(&cfg->link);
    config_drop_empty(&cfg->link_cert);
    config_drop_empty(&cfg->link_ca);
    config_drop_empty(&cfg->push);
    config_drop_empty(&cfg->push_advertise);
    if (cfg->link != NULL && cfg->push == NULL) {
        cfg->push = hub_config_push_from_link(cfg->link);
        if (cfg->push == NULL) {
            gw_buf_appendf(err, "push: cannot derive it from link '%s' (no port); set push\n",
                           cfg->link);
            rv = GW_EINVAL;
        }
    }
    if ((cfg->link_cert == NULL) != (cfg->link_ca == NULL)) {
        gw_buf_appendf(err, "link-cert and link-ca: set both or neither\n");
        rv = GW_EINVAL;
    }
    if (cfg->link_cert == NULL && ((cfg->link != NULL && strncmp(cfg->link, "tls+", 4) == 0) ||
                                   (cfg->push != NULL && strncmp(cfg->push, "tls+", 4) == 0))) {
        gw_buf_appendf(err, "link: tls+tcp:// needs link-cert and link-ca\n");
        rv = GW_EINVAL;
    }
    if (cfg->demo_upstream != NULL && strncmp(cfg->demo_upstream, "http://", 7) != 0 &&
        strncmp(cfg->demo_upstream, "https://", 8) != 0) {
        gw_buf_appendf(err, "demo-upstream: must be an http:// or https:// URL\n");
        rv = GW_EINVAL;
    }
    if (rv != GW_OK)
        return rv;

    config_expand_data(&cfg->db, cfg->data);
    config_expand_data(&cfg->master_key_file, cfg->data);
    if (config_empty(cfg->db)) {
        gw_buf_appendf(err, "db: must not be empty\n");
        rv = GW_EINVAL;
    }
    if (config_empty(cfg->master_key_file)) {
        gw_buf_appendf(err, "master-key-file: must not be empty\n");
        rv = GW_EINVAL;
    }
    return rv;
}

void
hub_config_fini(struct hub_config *cfg)
{
    gw_config_free(hub_config_table, cfg);
}
