/* SPDX-License-Identifier: Apache-2.0 */
/* Start-up and shutdown of the hub: everything that must exist before the
 * first request (data directory, master key, store, first admin, demo data,
 * edge link, admin API), in that order, and the reverse on close. */
#include "hub.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin_api.h"
#include "gw_crypto.h"
#include "gw_log.h"
#include "hub_link.h"

struct hub {
    uv_loop_t *loop;
    uint8_t master[HUB_MASTER_KEY_LEN];
    struct hub_store *store;
    struct hub_link *link;
    struct hub_admin_api *api;
    int admin_port;
    int link_port;
    int push_port;
    enum hub_demo_state demo_state;
    char demo_key[HUB_KEY_MAX];
    void (*done_cb)(void *arg);
    void *done_arg;
};

gw_err
hub_data_dir_prepare(const char *dir, struct gw_buf *err)
{
    char path[4096];
    size_t len = strlen(dir);
    struct stat st;

    if (len == 0 || len >= sizeof(path)) {
        gw_buf_appendf(err, "data directory: bad path");
        return GW_EINVAL;
    }
    memcpy(path, dir, len + 1);
    /* mkdir -p: each missing parent gets 0700 as well. */
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            gw_buf_appendf(err, "data directory %s: mkdir %s: %s", dir, path, strerror(errno));
            return GW_EIO;
        }
        path[i] = saved;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        gw_buf_appendf(err, "data directory %s: not a directory", dir);
        return GW_EIO;
    }
    return GW_OK;
}

void
hub_dsn_redact(const char *dsn, char *out, size_t out_size)
{
    const char *scheme_end = strstr(dsn, "://");
    const char *at, *colon;

    if (out_size == 0)
        return;
    if (scheme_end == NULL) {
        snprintf(out, out_size, "%s", dsn);
        return;
    }
    /* userinfo ends at the last '@' before the path. */
    const char *auth = scheme_end + 3;
    const char *slash = strchr(auth, '/');
    at = NULL;
    for (const char *p = auth; *p != '\0' && (slash == NULL || p < slash); p++) {
        if (*p == '@')
            at = p;
    }
    if (at == NULL) {
        snprintf(out, out_size, "%s", dsn);
        return;
    }
    colon = memchr(auth, ':', (size_t)(at - auth));
    if (colon == NULL) {
        snprintf(out, out_size, "%s", dsn);
        return;
    }
    snprintf(out, out_size, "%.*s:***%s", (int)(colon - dsn), dsn, at);
}

gw_err
hub_bootstrap_admin(struct hub_store *st, const char *user, const char *password, FILE *out,
                    struct gw_buf *err)
{
    struct gw_buf generated = GW_BUF_INIT;
    struct gw_buf hash = GW_BUF_INIT;
    uint8_t rnd[18];
    uint64_t count = 0, id = 0;
    gw_err rv;

    rv = hub_store_admin_count(st, &count);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "admin count: %s", gw_strerror(rv));
        return rv;
    }
    if (count > 0)
        return GW_OK;
    if (password == NULL) {
        rv = gw_random_bytes(rnd, sizeof(rnd));
        if (rv != GW_OK) {
            gw_buf_appendf(err, "random generator failed");
            return rv;
        }
        gw_base64url_encode(rnd, sizeof(rnd), &generated); /* 24 chars, 144 bits */
        memset(rnd, 0, sizeof(rnd));
    }
    rv = gw_password_hash(password != NULL ? password : generated.data, &hash);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "password hash: %s", gw_strerror(rv));
        goto out;
    }
    rv = hub_store_admin_create(st, user, hash.data, password == NULL, &id);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "create first admin: %s", gw_strerror(rv));
        goto out;
    }
    gw_log(GW_LOG_INFO, "HUB-ADMIN-FIRST", "first admin %s created (id %" PRIu64 ")", user, id);
    fprintf(out, "\n");
    fprintf(out, "==================================================================\n");
    fprintf(out, "  First start: admin account created\n");
    fprintf(out, "    user:     %s\n", user);
    if (password == NULL) {
        fprintf(out, "    password: %s\n", generated.data);
        fprintf(out, "  This password is shown only once. Change it after logging in.\n");
    } else {
        fprintf(out, "    password: (the one you configured)\n");
    }
    fprintf(out, "==================================================================\n\n");
    fflush(out);
out:
    if (generated.data != NULL)
        memset(generated.data, 0, generated.len);
    gw_buf_fini(&generated);
    gw_buf_fini(&hash);
    return rv;
}

gw_err
hub_demo_setup(struct hub_store *st, const uint8_t master[HUB_MASTER_KEY_LEN], const char *upstream,
               char key_out[HUB_KEY_MAX], enum hub_demo_state *state, struct gw_buf *err)
{
    static const char demo_credential[] = "demo-upstream-key";
    struct gw_wire_snapshot snap;
    struct gw_buf sealed = GW_BUF_INIT;
    struct hub_group group;
    struct hub_account account;
    struct hub_account_new anew;
    struct hub_key key;
    struct hub_key_new knew;
    char prefix[HUB_KEY_DISPLAY_LEN + 1];
    size_t n_groups;
    gw_err rv;

    *state = HUB_DEMO_NONE;
    memset(&snap, 0, sizeof(snap));
    rv = hub_store_snapshot_load(st, &snap);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "demo: snapshot load: %s", gw_strerror(rv));
        return rv;
    }
    n_groups = snap.n_groups;
    hub_store_snapshot_fini(&snap);
    if (n_groups > 0) {
        *state = HUB_DEMO_EXISTED;
        return GW_OK;
    }

    rv = hub_store_group_create(st, "demo", &group);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "demo: create group: %s", gw_strerror(rv));
        goto out;
    }
    rv = hub_keys_seal_credential(master, demo_credential, sizeof(demo_credential) - 1, &sealed);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "demo: seal credential: %s", gw_strerror(rv));
        goto out;
    }
    memset(&anew, 0, sizeof(anew));
    anew.name = "demo-fake-provider";
    anew.kind = "mock";
    anew.base_url = upstream;
    anew.credential_sealed = (const uint8_t *)sealed.data;
    anew.credential_sealed_len = sealed.len;
    anew.priority = 0;
    anew.weight = 1;
    rv = hub_store_account_create(st, &anew, &account);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "demo: create account: %s", gw_strerror(rv));
        goto out;
    }
    rv = hub_store_binding_create(st, group.id, account.id);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "demo: bind account: %s", gw_strerror(rv));
        goto out;
    }
    rv = hub_keys_generate(group.id, 0, key_out);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "demo: generate key: %s", gw_strerror(rv));
        goto out;
    }
    memset(&knew, 0, sizeof(knew));
    hub_keys_display_prefix(key_out, prefix);
    knew.group_id = group.id;
    knew.name = "demo";
    gw_sha256(key_out, strlen(key_out), knew.key_hash);
    knew.prefix = prefix;
    rv = hub_store_key_create(st, &knew, &key);
    if (rv != GW_OK) {
        memset(key_out, 0, HUB_KEY_MAX);
        gw_buf_appendf(err, "demo: create key: %s", gw_strerror(rv));
        goto out;
    }
    gw_log(GW_LOG_INFO, "HUB-DEMO",
           "demo created: group %" PRIu64 ", account %" PRIu64 ", key %" PRIu64 " (%s...)",
           group.id, account.id, key.id, prefix);
    *state = HUB_DEMO_CREATED;
out:
    gw_buf_fini(&sealed);
    return rv;
}

gw_err
hub_write_ports(const char *data_dir, int admin_port, int edge_port, int link_port, int push_port,
                struct gw_buf *err)
{
    char path[4096], tmp[4200], body[160], ep[16], lp[16], pp[16];
    size_t done = 0, len;
    int fd, n;
    gw_err rv = GW_EIO;

    n = snprintf(path, sizeof(path), "%s/ports.json", data_dir);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        gw_buf_appendf(err, "ports.json: path too long");
        return GW_EINVAL;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    snprintf(ep, sizeof(ep), edge_port >= 0 ? "%d" : "null", edge_port);
    snprintf(lp, sizeof(lp), link_port >= 0 ? "%d" : "null", link_port);
    snprintf(pp, sizeof(pp), push_port >= 0 ? "%d" : "null", push_port);
    n = snprintf(body, sizeof(body), "{\"admin\":%d,\"edge\":%s,\"link\":%s,\"push\":%s}\n",
                 admin_port, ep, lp, pp);
    len = (size_t)n;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        gw_buf_appendf(err, "%s: %s", tmp, strerror(errno));
        return GW_EIO;
    }
    while (done < len) {
        ssize_t w = write(fd, body + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            gw_buf_appendf(err, "%s: write: %s", tmp, strerror(errno));
            goto out;
        }
        done += (size_t)w;
    }
    if (close(fd) != 0) {
        fd = -1;
        gw_buf_appendf(err, "%s: close: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        gw_buf_appendf(err, "%s: rename: %s", path, strerror(errno));
        goto out;
    }
    rv = GW_OK;
out:
    if (fd >= 0)
        close(fd);
    if (rv != GW_OK)
        (void)unlink(tmp);
    return rv;
}

static void
hub_free_parts(struct hub *h)
{
    hub_link_free(h->link);
    h->link = NULL;
    if (h->store != NULL)
        hub_store_close(h->store);
    h->store = NULL;
    memset(h->master, 0, sizeof(h->master));
    memset(h->demo_key, 0, sizeof(h->demo_key));
}

static void
hub_flag_cb(void *arg)
{
    *(int *)arg = 1;
}

gw_err
hub_new(const struct hub_config *cfg, uv_loop_t *loop, FILE *out, struct hub **out_hub,
        struct gw_buf *err)
{
    struct gw_buf why = GW_BUF_INIT;
    char dsn_shown[512];
    struct hub *h;
    int created = 0;
    gw_err rv;

    h = gw_xcalloc(1, sizeof(*h));
    h->loop = loop;

    rv = hub_data_dir_prepare(cfg->data, err);
    if (rv != GW_OK)
        goto fail;
    rv = hub_keys_master_load(cfg->master_key_file, h->master, &created, err);
    if (rv != GW_OK)
        goto fail;
    if (created)
        gw_log(GW_LOG_INFO, "HUB-MASTER-KEY", "generated a new master key in %s",
               cfg->master_key_file);

    hub_dsn_redact(cfg->db, dsn_shown, sizeof(dsn_shown));
    rv = hub_store_open(cfg->db, &h->store, &why);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "cannot open store %s: %s (%s)", dsn_shown,
                       why.len > 0 ? why.data : "no details", gw_strerror(rv));
        goto fail;
    }
    gw_log(GW_LOG_INFO, "HUB-STORE", "store %s open", dsn_shown);

    rv = hub_bootstrap_admin(h->store, cfg->admin_user, cfg->admin_password, out, err);
    if (rv != GW_OK)
        goto fail;
    if (cfg->demo_upstream != NULL) {
        rv = hub_demo_setup(h->store, h->master, cfg->demo_upstream, h->demo_key, &h->demo_state,
                            err);
        if (rv != GW_OK)
            goto fail;
    }

    rv = hub_link_new(h->store, h->master, &h->link);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "edge link: %s", gw_strerror(rv));
        goto fail;
    }
    rv = hub_link_listen(h->link, HUB_LINK_INPROC_URL);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "edge link %s: %s", HUB_LINK_INPROC_URL, gw_strerror(rv));
        goto fail;
    }
    h->link_port = -1;
    h->push_port = -1;
    if (cfg->link_cert != NULL) {
        rv = hub_link_set_tls(h->link, cfg->link_cert, cfg->link_ca);
        if (rv != GW_OK) {
            gw_buf_appendf(err, "edge link TLS (link-cert %s, link-ca %s): %s", cfg->link_cert,
                           cfg->link_ca, gw_strerror(rv));
            goto fail;
        }
    }
    rv = hub_link_push_listen(h->link, HUB_LINK_INPROC_PUSH_URL, NULL);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "edge push %s: %s", HUB_LINK_INPROC_PUSH_URL, gw_strerror(rv));
        goto fail;
    }
    if (cfg->link != NULL) {
        uint16_t port = 0;

        rv = hub_link_listen_port(h->link, cfg->link, &port);
        if (rv != GW_OK) {
            gw_buf_appendf(err, "edge link %s: %s%s", cfg->link, gw_strerror(rv),
                           strncmp(cfg->link, "tcp://", 6) == 0
                               ? " (plain tcp:// is only allowed on loopback addresses; use "
                                 "tls+tcp:// with link-cert and link-ca)"
                               : "");
            goto fail;
        }
        h->link_port = port != 0 ? port : -1;
        gw_log(GW_LOG_INFO, "HUB-LINK", "edge link listening on %s", cfg->link);
    }
    if (cfg->push != NULL) {
        uint16_t port = 0;

        rv = hub_link_push_listen(h->link, cfg->push, &port);
        if (rv != GW_OK) {
            gw_buf_appendf(err, "edge push %s: %s", cfg->push, gw_strerror(rv));
            goto fail;
        }
        h->push_port = port != 0 ? port : -1;
    }
    if (cfg->push_advertise != NULL)
        hub_link_set_push_advertise(h->link, cfg->push_advertise);

    rv = hub_admin_api_new(loop, h->store, h->master, cfg->jwt_ttl_s, &h->api);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "admin API: %s", gw_strerror(rv));
        goto fail;
    }
    hub_admin_api_set_link(h->api, h->link);
    rv = hub_admin_api_listen(h->api, cfg->listen, &h->admin_port);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "admin API: cannot listen on %s: %s", cfg->listen, gw_strerror(rv));
        /* Nothing was accepted: the close completes within a few loop turns. */
        int closed = 0;
        hub_admin_api_close(h->api, hub_flag_cb, &closed);
        h->api = NULL;
        while (!closed)
            (void)uv_run(loop, UV_RUN_ONCE);
        goto fail;
    }
    gw_buf_fini(&why);
    *out_hub = h;
    return GW_OK;
fail:
    gw_buf_fini(&why);
    hub_free_parts(h);
    free(h);
    return rv;
}

int
hub_admin_port(const struct hub *h)
{
    return h->admin_port;
}

int
hub_link_port(const struct hub *h)
{
    return h->link_port;
}

int
hub_push_port(const struct hub *h)
{
    return h->push_port;
}

enum hub_demo_state
hub_demo_state(const struct hub *h)
{
    return h->demo_state;
}

const char *
hub_demo_key(const struct hub *h)
{
    return h->demo_state == HUB_DEMO_CREATED && h->demo_key[0] != '\0' ? h->demo_key : NULL;
}

void
hub_demo_key_wipe(struct hub *h)
{
    memset(h->demo_key, 0, sizeof(h->demo_key));
}

const uint8_t *
hub_master_key(const struct hub *h)
{
    return h->master;
}

struct hub_store *
hub_get_store(const struct hub *h)
{
    return h->store;
}

static void
hub_api_closed_cb(void *arg)
{
    struct hub *h = arg;
    void (*cb)(void *) = h->done_cb;
    void *cb_arg = h->done_arg;

    h->api = NULL;
    hub_free_parts(h);
    free(h);
    gw_log(GW_LOG_INFO, "HUB-STOP", "hub stopped");
    if (cb != NULL)
        cb(cb_arg);
}

void
hub_close(struct hub *h, void (*done_cb)(void *arg), void *arg)
{
    h->done_cb = done_cb;
    h->done_arg = arg;
    if (h->api != NULL)
        hub_admin_api_close(h->api, hub_api_closed_cb, h);
    else
        hub_api_closed_cb(h);
}
