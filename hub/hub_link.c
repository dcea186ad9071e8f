/* SPDX-License-Identifier: Apache-2.0 */
/* The hub end of the edge link: a REP socket with one context per worker
 * thread, each doing blocking recv -> handle -> send. Handlers only talk to
 * the store (which serialises itself) and to the cached price list (under
 * its own mutex). Account events that edges send with their usage batches
 * are applied by the store with the batch. Malformed input gets an Error
 * reply, never a crash, and is logged under a rate limit so a noisy peer
 * cannot flood the log.
 *
 * Enrolment state lives per NNG pipe (one connection of one edge) in a small
 * table kept by pipe notifications; a publisher thread pushes Deltas on a PUB
 * socket after every config change. */
#include "hub_link.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>
#include <stdio.h>

#include "gw_log.h"
#include "gw_wire.h"
#include "keys.h"
#include "pricing.h"

/* Longest edge id accepted; hub_usage_row keeps it in char[64]. */
#define LINK_EDGE_ID_MAX 63
/* Trusted (inproc://) listeners tracked; more are refused. */
#define LINK_TRUSTED_MAX 16
/* Edge heartbeat freshness for the admin API lives there; here: how often
 * the change log is pruned (in versions). */
#define LINK_PRUNE_EVERY 1024

/* Enrolment state of one pipe. */
struct link_pipe {
    uint32_t id;
    int trusted;       /* from an inproc:// listener */
    int authenticated; /* enrolled as edge_id */
    char edge_id[LINK_EDGE_ID_MAX + 1];
    uint8_t nonce[GW_WIRE_NONCE_LEN];
    int has_nonce;
    struct link_pipe *next;
};
/* At most this many rate-limited lines per window, per kind of event. */
#define LINK_LOG_BURST 10
#define LINK_LOG_WINDOW_MS 10000

struct link_ratelimit {
    pthread_mutex_t mu;
    int64_t window_start_ms;
    unsigned count;
    unsigned suppressed;
};

struct link_worker {
    struct hub_link *link;
    nng_ctx ctx;
    nng_aio *aio;
    pthread_t thread;
    int started;
};

struct hub_link {
    struct hub_store *store;
    uint8_t master[GW_AES_KEY_LEN];
    nng_socket sock;
    int sock_open;
    struct link_worker workers[HUB_LINK_WORKERS];
    pthread_mutex_t run_mu; /* guards stopping; see link_worker_start */
    int stopping;

    pthread_mutex_t price_mu; /* guards the four fields below */
    struct hub_price *prices;
    size_t n_prices;
    uint64_t prices_version;
    unsigned batches_since_load;

    struct link_ratelimit rl_proto; /* undecodable or unexpected frames */
    struct link_ratelimit rl_store; /* store failures */
    struct link_ratelimit rl_price; /* unpriced records */
    struct link_ratelimit rl_event; /* account events worth a line */
    struct link_ratelimit rl_auth;  /* refused enrolments and requests */

    pthread_mutex_t pipes_mu; /* guards the pipe table and the listener lists */
    struct link_pipe *pipes;
    uint32_t trusted_listeners[LINK_TRUSTED_MAX];
    size_t n_trusted;
    nng_tls_config *tls; /* server config for tls+tcp:// (NULL = none) */

    /* Push: PUB socket and its publisher thread. */
    pthread_mutex_t push_mu; /* guards everything below */
    pthread_cond_t push_cv;
    nng_socket pub;
    int pub_open;
    pthread_t push_thread;
    int push_started;
    int push_stop;
    int push_kick;
    uint64_t last_published;
    uint64_t last_pruned;
    char *push_url_inproc;    /* told to trusted pipes */
    char *push_url_remote;    /* told to enrolled edges */
    char *push_url_advertise; /* overrides push_url_remote */
};

/* ---------------------------------------------------------------- logging */

static int64_t
link_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
link_ratelimit_init(struct link_ratelimit *rl)
{
    pthread_mutex_init(&rl->mu, NULL);
    rl->window_start_ms = 0;
    rl->count = 0;
    rl->suppressed = 0;
}

/* 1 when a line may be written now. *suppressed_out receives how many lines
 * of the previous window were dropped, so the next line can say so. */
static int
link_ratelimit_ok(struct link_ratelimit *rl, unsigned *suppressed_out)
{
    int64_t now = link_now_ms();
    int ok;

    pthread_mutex_lock(&rl->mu);
    *suppressed_out = 0;
    if (rl->count == 0 || now - rl->window_start_ms >= LINK_LOG_WINDOW_MS) {
        *suppressed_out = rl->suppressed;
        rl->window_start_ms = now;
        rl->count = 0;
        rl->suppressed = 0;
    }
    ok = rl->count < LINK_LOG_BURST;
    if (ok)
        rl->count++;
    else
        rl->suppressed++;
    pthread_mutex_unlock(&rl->mu);
    return ok;
}

/* Copies peer-supplied text for a log line: printable ASCII only, bounded,
 * so an edge cannot forge or break log lines. */
static void
link_log_text(const char *s, char *out, size_t size)
{
    size_t i = 0;

    if (s == NULL)
        s = "-";
    for (; *s != '\0' && i + 1 < size; s++)
        out[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[i] = '\0';
}

/* ---------------------------------------------------------------- prices */

/* Reloads the cached price list when the config version moved or after
 * HUB_LINK_PRICE_RELOAD_BATCHES batches. On failure the old list stays.
 * Called with price_mu held. */
static void
link_prices_refresh(struct hub_link *link)
{
    struct hub_price *prices = NULL;
    size_t n = 0;
    uint64_t version = 0;
    unsigned suppressed;
    gw_err rv;

    rv = hub_store_config_version(link->store, &version);
    if (rv == GW_OK && version == link->prices_version &&
        link->batches_since_load < HUB_LINK_PRICE_RELOAD_BATCHES)
        return;
    rv = hub_store_prices_list(link->store, &prices, &n);
    if (rv != GW_OK) {
        if (link_ratelimit_ok(&link->rl_store, &suppressed))
            gw_log(GW_LOG_WARN, "HUB-LINK",
                   "price list reload failed: %s; keeping %zu cached prices (%u similar "
                   "suppressed)",
                   gw_strerror(rv), link->n_prices, suppressed);
        return;
    }
    free(link->prices);
    link->prices = prices;
    link->n_prices = n;
    link->prices_version = version;
    link->batches_since_load = 0;
}

/* ---------------------------------------------------------------- handlers */

/* Edge ids end up in usage rows and log lines: 1..63 printable, non-space
 * ASCII characters. */
static int
link_edge_id_ok(const char *id)
{
    size_t n;

    if (id == NULL)
        return 0;
    for (n = 0; id[n] != '\0'; n++) {
        if (n >= LINK_EDGE_ID_MAX || id[n] <= 0x20 || id[n] >= 0x7f)
            return 0;
    }
    return n > 0;
}

static void
link_store_error(struct hub_link *link, const char *what, const char *edge_id, gw_err rv,
                 struct gw_msg *reply)
{
    unsigned suppressed;
    char id[LINK_EDGE_ID_MAX + 1];

    if (link_ratelimit_ok(&link->rl_store, &suppressed)) {
        link_log_text(edge_id, id, sizeof(id));
        gw_log(GW_LOG_ERROR, "HUB-LINK", "edge %s: %s failed: %s (%u similar suppressed)", id, what,
               gw_strerror(rv), suppressed);
    }
    gw_msg_set_error(reply, GW_ESTORE, "hub storage unavailable, retry later");
}

/* ---------------------------------------------------------------- pipes */

static void
link_pipe_free_all(struct hub_link *link)
{
    while (link->pipes != NULL) {
        struct link_pipe *p = link->pipes;
        link->pipes = p->next;
        explicit_bzero(p, sizeof(*p));
        free(p);
    }
}

/* Called with pipes_mu held. */
static int
link_listener_trusted(struct hub_link *link, nng_pipe pipe)
{
    nng_listener l = nng_pipe_listener(pipe);
    int id = nng_listener_id(l);

    if (id <= 0)
        return 0;
    for (size_t i = 0; i < link->n_trusted; i++) {
        if (link->trusted_listeners[i] == (uint32_t)id)
            return 1;
    }
    return 0;
}

/* Finds or creates the entry of a pipe. Called with pipes_mu held. */
static struct link_pipe *
link_pipe_get(struct hub_link *link, nng_pipe pipe)
{
    uint32_t id = (uint32_t)nng_pipe_id(pipe);
    struct link_pipe *p;

    for (p = link->pipes; p != NULL; p = p->next) {
        if (p->id == id)
            return p;
    }
    p = gw_xcalloc(1, sizeof(*p));
    p->id = id;
    p->trusted = link_listener_trusted(link, pipe);
    p->next = link->pipes;
    link->pipes = p;
    return p;
}

static void
link_on_pipe_event(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    struct hub_link *link = arg;
    uint32_t id = (uint32_t)nng_pipe_id(pipe);

    pthread_mutex_lock(&link->pipes_mu);
    if (ev == NNG_PIPE_EV_ADD_POST) {
        (void)link_pipe_get(link, pipe);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        struct link_pipe **pp = &link->pipes;
        while (*pp != NULL) {
            if ((*pp)->id == id) {
                struct link_pipe *gone = *pp;
                *pp = gone->next;
                explicit_bzero(gone, sizeof(*gone));
                free(gone);
                break;
            }
            pp = &(*pp)->next;
        }
    }
    pthread_mutex_unlock(&link->pipes_mu);
}

/* The peer's address for log lines ("-" when the transport has none). */
static void
link_peer_addr(nng_pipe pipe, char *out, size_t size)
{
    nng_sockaddr sa;

    snprintf(out, size, "-");
    if (nng_pipe_id(pipe) <= 0 || nng_pipe_get_addr(pipe, NNG_OPT_REMADDR, &sa) != 0)
        return;
    if (sa.s_family == NNG_AF_INET) {
        const uint8_t *a = (const uint8_t *)&sa.s_in.sa_addr;
        const uint8_t *pt = (const uint8_t *)&sa.s_in.sa_port;
        snprintf(out, size, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3],
                 (unsigned)(pt[0] << 8 | pt[1]));
    } else if (sa.s_family == NNG_AF_INET6) {
        const uint8_t *a = sa.s_in6.sa_addr;
        const uint8_t *pt = (const uint8_t *)&sa.s_in6.sa_port;
        size_t n = 0;
        n += (size_t)snprintf(out + n, size - n, "[");
        for (int i = 0; i < 16 && n < size; i += 2)
            n += (size_t)snprintf(out + n, size - n, "%s%x", i ? ":" : "",
                                  (unsigned)(a[i] << 8 | a[i + 1]));
        if (n < size)
            snprintf(out + n, size - n, "]:%u", (unsigned)(pt[0] << 8 | pt[1]));
    }
}

/* A refused request: Error(EAUTH) and a rate-limited line without secrets. */
static void
link_auth_refuse(struct hub_link *link, nng_pipe pipe, const char *edge_id, const char *why,
                 struct gw_msg *reply)
{
    char id[LINK_EDGE_ID_MAX + 1], addr[96];
    unsigned suppressed;

    if (link_ratelimit_ok(&link->rl_auth, &suppressed)) {
        link_log_text(edge_id, id, sizeof(id));
        link_peer_addr(pipe, addr, sizeof(addr));
        gw_log(GW_LOG_WARN, "HUB-LINK-AUTH",
               "edge %s pipe %d peer %s refused: %s (%u similar suppressed)", id, nng_pipe_id(pipe),
               addr, why, suppressed);
    }
    gw_msg_set_error(reply, GW_EAUTH, "edge not authenticated");
}

static int64_t
link_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copies the push URL for a pipe into reply (NULL when there is none). */
static void
link_push_url_for(struct hub_link *link, int trusted, struct gw_msg *reply)
{
    const char *url;

    pthread_mutex_lock(&link->push_mu);
    if (trusted)
        url = link->push_url_inproc;
    else if (link->push_url_advertise != NULL)
        url = link->push_url_advertise;
    else
        url = link->push_url_remote;
    reply->u.hello_reply.push_url = url != NULL ? gw_xstrdup(url) : NULL;
    pthread_mutex_unlock(&link->push_mu);
}

/* The full HelloReply of an admitted edge. */
static void
link_hello_admit(struct hub_link *link, const struct gw_wire_hello *h, int trusted,
                 struct gw_msg *reply)
{
    uint64_t version = 0, last_seq = 0;
    char id[LINK_EDGE_ID_MAX + 1], ver[64], region[64];
    gw_err rv;

    rv = hub_store_config_version(link->store, &version);
    if (rv == GW_OK)
        rv = hub_store_edge_last_seq(link->store, h->edge_id, &last_seq);
    if (rv != GW_OK) {
        link_store_error(link, "hello", h->edge_id, rv, reply);
        return;
    }
    /* Unregistered ids (trusted pipes before registration) are not an
     * error: the registry is informational for them. */
    rv = hub_store_edge_touch(link->store, h->edge_id, link_unix_ms());
    if (rv != GW_OK && rv != GW_ENOTFOUND)
        gw_log(GW_LOG_WARN, "HUB-LINK", "edge %s: last-seen update failed: %s", h->edge_id,
               gw_strerror(rv));
    link_log_text(h->edge_id, id, sizeof(id));
    link_log_text(h->version, ver, sizeof(ver));
    link_log_text(h->region, region, sizeof(region));
    gw_log(GW_LOG_INFO, "HUB-LINK",
           "edge %s hello (%s): version %s, region %s, snapshot %llu; hub config %llu, last "
           "usage seq %llu",
           id, trusted ? "in-process" : "enrolled", ver, region,
           (unsigned long long)h->snapshot_version, (unsigned long long)version,
           (unsigned long long)last_seq);
    reply->type = GW_MSG_HELLO_REPLY;
    reply->u.hello_reply.config_version = version;
    reply->u.hello_reply.last_usage_seq = last_seq;
    reply->u.hello_reply.authenticated = 1;
    link_push_url_for(link, trusted, reply);
}

/* The in-process edge is registered on its first Hello, as trusted. */
static void
link_register_trusted(struct hub_link *link, const struct gw_wire_hello *h)
{
    struct hub_edge e;
    gw_err rv;

    rv = hub_store_edge_get(link->store, h->edge_id, &e);
    hub_edge_fini(&e);
    if (rv != GW_ENOTFOUND)
        return;
    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "%s", h->edge_id);
    snprintf(e.name, sizeof(e.name), "%s", "in-process edge");
    link_log_text(h->region, e.region, sizeof(e.region));
    e.trusted = 1;
    e.created_at = link_unix_ms() / 1000;
    rv = hub_store_edge_create(link->store, &e);
    if (rv != GW_OK && rv != GW_EEXIST)
        gw_log(GW_LOG_WARN, "HUB-LINK", "cannot register the in-process edge: %s", gw_strerror(rv));
}

/* Checks a proof against the registered edge's secret. Returns NULL when it
 * is valid, else why not (for the log). */
static const char *
link_check_proof(struct hub_link *link, const struct gw_wire_hello *h, const uint8_t *nonce)
{
    struct hub_edge e;
    struct gw_buf secret = GW_BUF_INIT;
    uint8_t want[GW_SHA256_LEN];
    const char *why = NULL;
    gw_err rv;

    rv = hub_store_edge_get(link->store, h->edge_id, &e);
    if (rv == GW_ENOTFOUND)
        return "unknown edge";
    if (rv != GW_OK)
        return "edge registry unavailable";
    if (e.revoked_at != 0) {
        why = "edge revoked";
        goto out;
    }
    if (e.trusted || e.secret_sealed == NULL) {
        why = "edge has no enrolment secret";
        goto out;
    }
    rv = hub_link_open_edge_secret(link->master, e.secret_sealed, e.secret_sealed_len, &secret);
    if (rv != GW_OK) {
        why = "stored enrolment secret cannot be opened";
        goto out;
    }
    gw_wire_hello_proof(secret.data, secret.len, nonce, GW_WIRE_NONCE_LEN, h->edge_id, want);
    if (h->proof_len != GW_SHA256_LEN || !gw_ct_equal(want, h->proof, GW_SHA256_LEN))
        why = "wrong proof";
    explicit_bzero(want, sizeof(want));
out:
    if (secret.data != NULL)
        explicit_bzero(secret.data, secret.cap);
    gw_buf_fini(&secret);
    hub_edge_fini(&e);
    return why;
}

/* The single place where an edge is admitted: trusted pipes at once,
 * others through the nonce / proof handshake. */
static void
link_on_hello(struct hub_link *link, nng_pipe pipe, const struct gw_wire_hello *h,
              struct gw_msg *reply)
{
    uint8_t nonce[GW_WIRE_NONCE_LEN];
    struct link_pipe *p;
    const char *why;
    int trusted, had_nonce;

    pthread_mutex_lock(&link->pipes_mu);
    p = link_pipe_get(link, pipe);
    trusted = p->trusted;
    if (trusted) {
        p->authenticated = 1;
        snprintf(p->edge_id, sizeof(p->edge_id), "%s", h->edge_id);
    }
    pthread_mutex_unlock(&link->pipes_mu);
    if (trusted) {
        link_register_trusted(link, h);
        link_hello_admit(link, h, 1, reply);
        return;
    }

    if (h->proof == NULL) {
        /* Step 1: a fresh challenge; a new Hello drops an earlier enrolment. */
        if (gw_random_bytes(nonce, sizeof(nonce)) != GW_OK) {
            gw_msg_set_error(reply, GW_EINTERNAL, "no randomness");
            return;
        }
        pthread_mutex_lock(&link->pipes_mu);
        p = link_pipe_get(link, pipe);
        memcpy(p->nonce, nonce, sizeof(nonce));
        p->has_nonce = 1;
        p->authenticated = 0;
        p->edge_id[0] = '\0';
        pthread_mutex_unlock(&link->pipes_mu);
        reply->type = GW_MSG_HELLO_REPLY;
        reply->u.hello_reply.nonce = gw_xmalloc(sizeof(nonce));
        memcpy(reply->u.hello_reply.nonce, nonce, sizeof(nonce));
        reply->u.hello_reply.nonce_len = sizeof(nonce);
        reply->u.hello_reply.authenticated = 0;
        return;
    }

    /* Step 3: the nonce is single use, whatever the outcome. */
    pthread_mutex_lock(&link->pipes_mu);
    p = link_pipe_get(link, pipe);
    had_nonce = p->has_nonce;
    memcpy(nonce, p->nonce, sizeof(nonce));
    explicit_bzero(p->nonce, sizeof(p->nonce));
    p->has_nonce = 0;
    p->authenticated = 0;
    pthread_mutex_unlock(&link->pipes_mu);
    if (!had_nonce) {
        link_auth_refuse(link, pipe, h->edge_id, "proof without a nonce", reply);
        return;
    }
    why = link_check_proof(link, h, nonce);
    explicit_bzero(nonce, sizeof(nonce));
    if (why != NULL) {
        link_auth_refuse(link, pipe, h->edge_id, why, reply);
        return;
    }
    pthread_mutex_lock(&link->pipes_mu);
    p = link_pipe_get(link, pipe);
    p->authenticated = 1;
    snprintf(p->edge_id, sizeof(p->edge_id), "%s", h->edge_id);
    pthread_mutex_unlock(&link->pipes_mu);
    {
        char id[LINK_EDGE_ID_MAX + 1], addr[96];
        link_log_text(h->edge_id, id, sizeof(id));
        link_peer_addr(pipe, addr, sizeof(addr));
        gw_log(GW_LOG_INFO, "HUB-LINK-AUTH", "edge %s enrolled on pipe %d from %s", id,
               nng_pipe_id(pipe), addr);
    }
    link_hello_admit(link, h, 0, reply);
}

/* Requests other than Hello: trusted pipes pass; others must be enrolled as
 * the edge the request names, and that edge must not be revoked since.
 * Returns 1 when the request may proceed, else fills reply. */
static int
link_authorise(struct hub_link *link, nng_pipe pipe, const char *edge_id, struct gw_msg *reply)
{
    struct link_pipe *p;
    struct hub_edge e;
    int trusted, authed;
    gw_err rv;

    pthread_mutex_lock(&link->pipes_mu);
    p = link_pipe_get(link, pipe);
    trusted = p->trusted;
    authed = p->authenticated && strcmp(p->edge_id, edge_id) == 0;
    pthread_mutex_unlock(&link->pipes_mu);
    if (trusted)
        return 1;
    if (!authed) {
        link_auth_refuse(link, pipe, edge_id, "request before enrolment or for another edge",
                         reply);
        return 0;
    }
    rv = hub_store_edge_get(link->store, edge_id, &e);
    if (rv == GW_OK && e.revoked_at == 0) {
        hub_edge_fini(&e);
        return 1;
    }
    hub_edge_fini(&e);
    if (rv != GW_OK && rv != GW_ENOTFOUND) {
        link_store_error(link, "edge lookup", edge_id, rv, reply);
        return 0;
    }
    pthread_mutex_lock(&link->pipes_mu);
    p = link_pipe_get(link, pipe);
    p->authenticated = 0;
    pthread_mutex_unlock(&link->pipes_mu);
    link_auth_refuse(link, pipe, edge_id, "edge revoked", reply);
    return 0;
}

/* Replaces a sealed credential by its plaintext. An account whose
 * credential cannot be opened (wrong master key, altered row) is sent
 * disabled and without a credential rather than failing the reply. */
static void
link_open_account(struct hub_link *link, struct gw_wire_account *a)
{
    struct gw_buf plain = GW_BUF_INIT;
    gw_err rv;

    if (a->credential == NULL)
        return;
    rv = hub_keys_open_credential(link->master, a->credential, a->credential_len, &plain);
    explicit_bzero(a->credential, a->credential_len);
    free(a->credential);
    a->credential = NULL;
    a->credential_len = 0;
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "HUB-LINK",
               "account %llu: stored credential cannot be opened (%s); sent to edges "
               "disabled",
               (unsigned long long)a->id, gw_strerror(rv));
        a->enabled = 0;
        if (plain.data != NULL)
            explicit_bzero(plain.data, plain.cap);
        gw_buf_fini(&plain);
        return;
    }
    a->credential = (uint8_t *)gw_buf_steal(&plain, &a->credential_len);
}

static void
link_open_credentials(struct hub_link *link, struct gw_wire_snapshot *snap)
{
    for (size_t i = 0; i < snap->n_accounts; i++)
        link_open_account(link, &snap->accounts[i]);
}

static void
link_open_delta_credentials(struct hub_link *link, struct gw_wire_deltas *d)
{
    for (size_t i = 0; i < d->n_changes; i++) {
        if (d->changes[i].kind == GW_CHANGE_ACCOUNT)
            link_open_account(link, &d->changes[i].u.account);
    }
}

static void
link_on_fetch_deltas(struct hub_link *link, const struct gw_wire_fetch_deltas *f,
                     struct gw_msg *reply)
{
    gw_err rv;

    reply->type = GW_MSG_DELTAS;
    rv = hub_store_changes_since(link->store, f->from_version, HUB_LINK_DELTAS_MAX,
                                 &reply->u.deltas);
    if (rv != GW_OK) {
        link_store_error(link, "deltas", f->edge_id, rv, reply);
        return;
    }
    link_open_delta_credentials(link, &reply->u.deltas);
}

static void
link_on_heartbeat(struct hub_link *link, const struct gw_wire_heartbeat *hb, struct gw_msg *reply)
{
    uint64_t version = 0;
    gw_err rv;

    rv = hub_store_edge_heartbeat(link->store, hb->edge_id, hb, link_unix_ms());
    if (rv == GW_ENOTFOUND) {
        /* A trusted edge that never said Hello: register it now. */
        struct gw_wire_hello h = {.edge_id = hb->edge_id, .region = hb->region};
        link_register_trusted(link, &h);
        rv = hub_store_edge_heartbeat(link->store, hb->edge_id, hb, link_unix_ms());
    }
    if (rv == GW_OK)
        rv = hub_store_config_version(link->store, &version);
    if (rv != GW_OK) {
        link_store_error(link, "heartbeat", hb->edge_id, rv, reply);
        return;
    }
    reply->type = GW_MSG_HEARTBEAT_ACK;
    reply->u.heartbeat_ack.config_version = version;
}

static void
link_on_fetch_snapshot(struct hub_link *link, const struct gw_wire_fetch_snapshot *f,
                       struct gw_msg *reply)
{
    uint64_t version = 0;
    gw_err rv;

    rv = hub_store_config_version(link->store, &version);
    if (rv != GW_OK) {
        link_store_error(link, "config version", f->edge_id, rv, reply);
        return;
    }
    /* A cold edge (version 0) always gets the full snapshot. */
    if (f->have_version != 0 && f->have_version == version) {
        reply->type = GW_MSG_SNAPSHOT;
        reply->u.snapshot.version = version;
        reply->u.snapshot.unchanged = 1;
        return;
    }
    reply->type = GW_MSG_SNAPSHOT;
    rv = hub_store_snapshot_load(link->store, &reply->u.snapshot);
    if (rv != GW_OK) {
        link_store_error(link, "snapshot load", f->edge_id, rv, reply);
        return;
    }
    link_open_credentials(link, &reply->u.snapshot);
}

/* Credential rejections are worth a line each (rate-limited); the store
 * has already applied them: counted, and the account disabled at the
 * threshold. Other events (429 cooldowns) are routine. */
static void
link_log_account_events(struct hub_link *link, const struct gw_wire_usage_batch *b)
{
    char id[LINK_EDGE_ID_MAX + 1], msg[sizeof(b->account_events[0].message)];
    unsigned suppressed;

    for (size_t i = 0; i < b->n_account_events; i++) {
        const struct gw_account_event *ev = &b->account_events[i];

        if (ev->status != 401 && ev->status != 403)
            continue;
        if (!link_ratelimit_ok(&link->rl_event, &suppressed))
            continue;
        link_log_text(b->edge_id, id, sizeof(id));
        link_log_text(ev->message, msg, sizeof(msg));
        gw_log(GW_LOG_WARN, "HUB-LINK-ACCOUNT",
               "edge %s: account %llu answered %u (\"%s\") (%u similar suppressed)", id,
               (unsigned long long)ev->account_id, ev->status, msg, suppressed);
    }
}

static void
link_on_usage_batch(struct hub_link *link, const struct gw_wire_usage_batch *b,
                    struct gw_msg *reply)
{
    int64_t *costs = gw_xcalloc(b->n_records ? b->n_records : 1, sizeof(*costs));
    size_t i, unpriced = 0, first_unpriced = 0;
    unsigned suppressed;
    int duplicate = 0;
    gw_err rv;

    pthread_mutex_lock(&link->price_mu);
    link_prices_refresh(link);
    link->batches_since_load++;
    for (i = 0; i < b->n_records; i++) {
        /* Unknown model or absurd numbers: -1 flags the row for review. */
        rv = hub_pricing_cost(link->prices, link->n_prices, &b->records[i], &costs[i]);
        if (rv != GW_OK) {
            costs[i] = -1;
            if (unpriced++ == 0)
                first_unpriced = i;
        }
    }
    pthread_mutex_unlock(&link->price_mu);

    rv = hub_store_usage_apply(link->store, b, costs, &duplicate);
    free(costs);
    if (rv != GW_OK) {
        link_store_error(link, "usage batch", b->edge_id, rv, reply);
        return;
    }
    if (!duplicate)
        link_log_account_events(link, b);
    /* Account events may have changed the config (disable, cooldown). */
    if (!duplicate && b->n_account_events > 0)
        hub_link_notify(link);
    if (unpriced > 0 && !duplicate && link_ratelimit_ok(&link->rl_price, &suppressed)) {
        char id[LINK_EDGE_ID_MAX + 1], model[64];
        link_log_text(b->edge_id, id, sizeof(id));
        link_log_text(b->records[first_unpriced].model, model, sizeof(model));
        gw_log(GW_LOG_WARN, "HUB-LINK",
               "edge %s batch %llu: %zu of %zu records have no price (first model \"%s\"); "
               "stored with cost -1 (%u similar suppressed)",
               id, (unsigned long long)b->seq, unpriced, b->n_records, model, suppressed);
    }
    reply->type = GW_MSG_USAGE_ACK;
    reply->u.usage_ack.seq = b->seq;
    reply->u.usage_ack.duplicate = duplicate;
}

static void
link_bad_frame(struct hub_link *link, const char *what, size_t len, gw_err code,
               struct gw_msg *reply)
{
    unsigned suppressed;

    if (link_ratelimit_ok(&link->rl_proto, &suppressed))
        gw_log(GW_LOG_WARN, "HUB-LINK", "%s (%zu bytes): %s (%u similar suppressed)", what, len,
               gw_strerror(code), suppressed);
    gw_msg_set_error(reply, code, what);
}

/* Handles one request frame from pipe and appends the encoded reply to
 * out. */
static void
link_handle(struct hub_link *link, nng_pipe pipe, const void *data, size_t len, struct gw_buf *out)
{
    struct gw_msg req, reply;
    const char *edge_id = NULL;
    gw_err rv;

    memset(&reply, 0, sizeof(reply));
    rv = gw_wire_decode(data, len, HUB_LINK_RECV_MAX, &req);
    if (rv != GW_OK) {
        link_bad_frame(link, "undecodable frame", len, rv, &reply);
        goto encode;
    }
    switch (req.type) {
    case GW_MSG_HELLO:
        edge_id = req.u.hello.edge_id;
        break;
    case GW_MSG_FETCH_SNAPSHOT:
        edge_id = req.u.fetch_snapshot.edge_id;
        break;
    case GW_MSG_USAGE_BATCH:
        edge_id = req.u.usage_batch.edge_id;
        break;
    case GW_MSG_FETCH_DELTAS:
        edge_id = req.u.fetch_deltas.edge_id;
        break;
    case GW_MSG_HEARTBEAT:
        edge_id = req.u.heartbeat.edge_id;
        break;
    default:
        link_bad_frame(link, "unexpected message type", len, GW_EPROTO, &reply);
        goto encode;
    }
    if (!link_edge_id_ok(edge_id)) {
        link_bad_frame(link, "invalid edge id", len, GW_EINVAL, &reply);
        goto encode;
    }
    if (req.type == GW_MSG_HELLO) {
        link_on_hello(link, pipe, &req.u.hello, &reply);
        goto encode;
    }
    if (!link_authorise(link, pipe, edge_id, &reply))
        goto encode;
    if (req.type == GW_MSG_FETCH_SNAPSHOT)
        link_on_fetch_snapshot(link, &req.u.fetch_snapshot, &reply);
    else if (req.type == GW_MSG_FETCH_DELTAS)
        link_on_fetch_deltas(link, &req.u.fetch_deltas, &reply);
    else if (req.type == GW_MSG_HEARTBEAT)
        link_on_heartbeat(link, &req.u.heartbeat, &reply);
    else
        link_on_usage_batch(link, &req.u.usage_batch, &reply);

encode:
    rv = gw_wire_encode(&reply, out);
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "HUB-LINK", "reply of type %d cannot be encoded: %s", (int)reply.type,
               gw_strerror(rv));
        gw_buf_reset(out);
        gw_msg_set_error(&reply, GW_EINTERNAL, "reply encoding failed");
        rv = gw_wire_encode(&reply, out);
        if (rv != GW_OK)
            gw_buf_reset(out);
    }
    gw_msg_fini(&reply);
    gw_msg_fini(&req);
}

/* ---------------------------------------------------------------- workers */

/* Starts the worker's next receive (rep == NULL) or the send of rep, unless
 * the link is stopping. Returns 0 when stopping; rep then stays the
 * caller's. Starting under run_mu is what lets link_destroy() know that no
 * worker is inside an nng_ctx_* call once it has set `stopping` and
 * cancelled the aios: NNG 1.5.2 can touch freed socket state when
 * nng_close() races with nng_ctx_send/recv in another thread. */
static int
link_worker_start(struct link_worker *w, nng_msg *rep)
{
    struct hub_link *link = w->link;
    int go;

    pthread_mutex_lock(&link->run_mu);
    go = !link->stopping;
    if (go && rep == NULL) {
        nng_ctx_recv(w->ctx, w->aio);
    } else if (go) {
        nng_aio_set_msg(w->aio, rep);
        nng_ctx_send(w->ctx, w->aio);
    }
    pthread_mutex_unlock(&link->run_mu);
    return go;
}

static void *
link_worker_main(void *arg)
{
    struct link_worker *w = arg;
    struct hub_link *link = w->link;
    struct gw_buf out = GW_BUF_INIT;

    for (;;) {
        nng_msg *req, *rep;
        int rv;

        if (!link_worker_start(w, NULL))
            break;
        nng_aio_wait(w->aio);
        rv = nng_aio_result(w->aio);
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
            break;
        if (rv != 0) {
            gw_log(GW_LOG_WARN, "HUB-LINK", "receive failed: %s", nng_strerror(rv));
            continue;
        }
        req = nng_aio_get_msg(w->aio);
        nng_aio_set_msg(w->aio, NULL);
        gw_buf_reset(&out);
        link_handle(link, nng_msg_get_pipe(req), nng_msg_body(req), nng_msg_len(req), &out);
        nng_msg_free(req);
        if (out.len == 0)
            continue; /* nothing encodable; the REQ side will time out */

        rv = nng_msg_alloc(&rep, out.len);
        /* The reply may hold plaintext credentials: wipe our copy. */
        if (rv == 0)
            memcpy(nng_msg_body(rep), out.data, out.len);
        explicit_bzero(out.data, out.len);
        if (rv != 0) {
            gw_log(GW_LOG_ERROR, "HUB-LINK", "reply allocation failed: %s", nng_strerror(rv));
            continue;
        }
        if (!link_worker_start(w, rep)) {
            nng_msg_free(rep);
            break;
        }
        nng_aio_wait(w->aio);
        rv = nng_aio_result(w->aio);
        if (rv != 0) {
            /* On failure the message is still ours. */
            nng_aio_set_msg(w->aio, NULL);
            nng_msg_free(rep);
            if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
                break;
        }
    }
    if (out.data != NULL)
        explicit_bzero(out.data, out.cap);
    gw_buf_fini(&out);
    return NULL;
}

/* ---------------------------------------------------------------- push */

/* Publishes the changes since last_published, if any. Publisher thread. */
static void
link_publish(struct hub_link *link)
{
    struct gw_msg m;
    struct gw_buf b = GW_BUF_INIT;
    uint64_t from, current = 0;
    unsigned suppressed;
    gw_err rv;
    int nrv;

    rv = hub_store_config_version(link->store, &current);
    pthread_mutex_lock(&link->push_mu);
    from = link->last_published;
    pthread_mutex_unlock(&link->push_mu);
    if (rv != GW_OK || current == from)
        return;
    memset(&m, 0, sizeof(m));
    m.type = GW_MSG_DELTAS;
    rv = hub_store_changes_since(link->store, from, HUB_LINK_DELTAS_MAX, &m.u.deltas);
    if (rv != GW_OK) {
        if (link_ratelimit_ok(&link->rl_store, &suppressed))
            gw_log(GW_LOG_WARN, "HUB-LINK", "push: loading changes after %llu failed: %s",
                   (unsigned long long)from, gw_strerror(rv));
        return;
    }
    link_open_delta_credentials(link, &m.u.deltas);
    rv = gw_wire_encode(&m, &b);
    if (rv == GW_OK) {
        /* Non-blocking: a full send buffer drops the push for slow
         * subscribers, who notice the gap and fetch. */
        nrv = nng_send(link->pub, b.data, b.len, NNG_FLAG_NONBLOCK);
        if (nrv != 0 && nrv != NNG_EAGAIN && link_ratelimit_ok(&link->rl_proto, &suppressed))
            gw_log(GW_LOG_WARN, "HUB-LINK", "push send failed: %s", nng_strerror(nrv));
        pthread_mutex_lock(&link->push_mu);
        link->last_published = m.u.deltas.to_version;
        pthread_mutex_unlock(&link->push_mu);
    } else {
        gw_log(GW_LOG_ERROR, "HUB-LINK", "push: deltas %llu..%llu cannot be encoded: %s",
               (unsigned long long)from, (unsigned long long)m.u.deltas.to_version,
               gw_strerror(rv));
    }
    if (b.data != NULL)
        explicit_bzero(b.data, b.cap);
    gw_buf_fini(&b);
    gw_msg_fini(&m);

    /* Keep the change log bounded. */
    if (current - link->last_pruned >= LINK_PRUNE_EVERY) {
        link->last_pruned = current;
        rv = hub_store_change_log_prune(link->store, HUB_STORE_CHANGE_LOG_KEEP);
        if (rv != GW_OK)
            gw_log(GW_LOG_WARN, "HUB-LINK", "change log pruning failed: %s", gw_strerror(rv));
    }
}

static void *
link_push_main(void *arg)
{
    struct hub_link *link = arg;

    for (;;) {
        struct timespec until;

        pthread_mutex_lock(&link->push_mu);
        if (!link->push_kick && !link->push_stop) {
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += HUB_LINK_PUSH_POLL_MS / 1000;
            until.tv_nsec += (long)(HUB_LINK_PUSH_POLL_MS % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            (void)pthread_cond_timedwait(&link->push_cv, &link->push_mu, &until);
        }
        if (link->push_stop) {
            pthread_mutex_unlock(&link->push_mu);
            break;
        }
        link->push_kick = 0;
        pthread_mutex_unlock(&link->push_mu);
        link_publish(link);
    }
    return NULL;
}

void
hub_link_notify(struct hub_link *link)
{
    if (link == NULL)
        return;
    pthread_mutex_lock(&link->push_mu);
    link->push_kick = 1;
    pthread_cond_signal(&link->push_cv);
    pthread_mutex_unlock(&link->push_mu);
}

void
hub_link_set_push_advertise(struct hub_link *link, const char *url)
{
    if (link == NULL)
        return;
    pthread_mutex_lock(&link->push_mu);
    free(link->push_url_advertise);
    link->push_url_advertise = url != NULL ? gw_xstrdup(url) : NULL;
    pthread_mutex_unlock(&link->push_mu);
}

/* ---------------------------------------------------------------- secrets */

gw_err
hub_link_seal_edge_secret(const uint8_t master[GW_AES_KEY_LEN], const void *secret, size_t len,
                          struct gw_buf *out)
{
    if (master == NULL || secret == NULL || out == NULL || len == 0)
        return GW_EINVAL;
    return gw_aead_seal(master, HUB_LINK_EDGE_SECRET_AAD, strlen(HUB_LINK_EDGE_SECRET_AAD), secret,
                        len, out);
}

gw_err
hub_link_open_edge_secret(const uint8_t master[GW_AES_KEY_LEN], const void *sealed, size_t len,
                          struct gw_buf *out)
{
    if (master == NULL || sealed == NULL || out == NULL)
        return GW_EINVAL;
    return gw_aead_open(master, HUB_LINK_EDGE_SECRET_AAD, strlen(HUB_LINK_EDGE_SECRET_AAD), sealed,
                        len, out);
}

/* ---------------------------------------------------------------- lifetime */

/* Order matters (see link_worker_start): stop the workers and wait for
 * them before the socket is closed, so nng_close() never runs while another
 * thread is inside an nng_ctx_* call. The publisher stops first. */
static void
link_destroy(struct hub_link *link)
{
    size_t i;

    pthread_mutex_lock(&link->push_mu);
    link->push_stop = 1;
    pthread_cond_signal(&link->push_cv);
    pthread_mutex_unlock(&link->push_mu);
    if (link->push_started)
        pthread_join(link->push_thread, NULL);
    if (link->pub_open)
        nng_close(link->pub);

    pthread_mutex_lock(&link->run_mu);
    link->stopping = 1;
    pthread_mutex_unlock(&link->run_mu);
    for (i = 0; i < HUB_LINK_WORKERS; i++) {
        struct link_worker *w = &link->workers[i];
        if (w->aio != NULL)
            nng_aio_cancel(w->aio);
    }
    for (i = 0; i < HUB_LINK_WORKERS; i++) {
        struct link_worker *w = &link->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        if (w->aio != NULL)
            nng_aio_free(w->aio);
    }
    if (link->sock_open)
        nng_close(link->sock); /* also closes the workers' contexts */
    if (link->tls != NULL)
        nng_tls_config_free(link->tls);
    link_pipe_free_all(link);
    free(link->prices);
    free(link->push_url_inproc);
    free(link->push_url_remote);
    free(link->push_url_advertise);
    pthread_mutex_destroy(&link->run_mu);
    pthread_mutex_destroy(&link->price_mu);
    pthread_mutex_destroy(&link->pipes_mu);
    pthread_mutex_destroy(&link->push_mu);
    pthread_cond_destroy(&link->push_cv);
    pthread_mutex_destroy(&link->rl_proto.mu);
    pthread_mutex_destroy(&link->rl_store.mu);
    pthread_mutex_destroy(&link->rl_price.mu);
    pthread_mutex_destroy(&link->rl_event.mu);
    pthread_mutex_destroy(&link->rl_auth.mu);
    explicit_bzero(link->master, sizeof(link->master));
    free(link);
}

gw_err
hub_link_new(struct hub_store *store, const uint8_t master_key[GW_AES_KEY_LEN],
             struct hub_link **out)
{
    struct hub_link *link;
    pthread_condattr_t ca;
    size_t i;
    int nrv;
    gw_err rv;

    if (out == NULL)
        return GW_EINVAL;
    *out = NULL;
    if (store == NULL || master_key == NULL)
        return GW_EINVAL;

    link = gw_xcalloc(1, sizeof(*link));
    link->store = store;
    memcpy(link->master, master_key, GW_AES_KEY_LEN);
    pthread_mutex_init(&link->run_mu, NULL);
    pthread_mutex_init(&link->price_mu, NULL);
    pthread_mutex_init(&link->pipes_mu, NULL);
    pthread_mutex_init(&link->push_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&link->push_cv, &ca);
    pthread_condattr_destroy(&ca);
    link_ratelimit_init(&link->rl_proto);
    link_ratelimit_init(&link->rl_store);
    link_ratelimit_init(&link->rl_price);
    link_ratelimit_init(&link->rl_event);
    link_ratelimit_init(&link->rl_auth);

    rv = hub_store_config_version(store, &link->prices_version);
    if (rv == GW_OK)
        rv = hub_store_prices_list(store, &link->prices, &link->n_prices);
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "HUB-LINK", "cannot load the price list: %s", gw_strerror(rv));
        goto fail;
    }
    link->last_published = link->prices_version;
    link->last_pruned = link->prices_version;

    nrv = nng_rep0_open(&link->sock);
    if (nrv != 0)
        goto nng_fail;
    link->sock_open = 1;
    nrv = nng_socket_set_size(link->sock, NNG_OPT_RECVMAXSZ, HUB_LINK_RECV_MAX);
    if (nrv == 0)
        nrv = nng_pipe_notify(link->sock, NNG_PIPE_EV_ADD_POST, link_on_pipe_event, link);
    if (nrv == 0)
        nrv = nng_pipe_notify(link->sock, NNG_PIPE_EV_REM_POST, link_on_pipe_event, link);
    if (nrv != 0)
        goto nng_fail;

    for (i = 0; i < HUB_LINK_WORKERS; i++) {
        struct link_worker *w = &link->workers[i];
        w->link = link;
        nrv = nng_ctx_open(&w->ctx, link->sock);
        if (nrv != 0)
            goto nng_fail;
        nrv = nng_aio_alloc(&w->aio, NULL, NULL);
        if (nrv != 0)
            goto nng_fail;
    }
    for (i = 0; i < HUB_LINK_WORKERS; i++) {
        struct link_worker *w = &link->workers[i];
        if (pthread_create(&w->thread, NULL, link_worker_main, w) != 0) {
            gw_log(GW_LOG_ERROR, "HUB-LINK", "cannot start link worker %zu", i);
            rv = GW_EINTERNAL;
            goto fail;
        }
        w->started = 1;
    }
    *out = link;
    return GW_OK;

nng_fail:
    gw_log(GW_LOG_ERROR, "HUB-LINK", "cannot set up the link socket: %s (nng %d)",
           nng_strerror(nrv), nrv);
    rv = gw_err_from_nng(nrv);
fail:
    link_destroy(link);
    return rv;
}

gw_err
hub_link_set_tls(struct hub_link *link, const char *cert_key_file, const char *ca_file)
{
    nng_tls_config *cfg = NULL;
    const char *what = "allocation";
    int nrv;

    if (link == NULL || cert_key_file == NULL || ca_file == NULL || link->tls != NULL)
        return GW_EINVAL;
    nrv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER);
    if (nrv == 0) {
        what = cert_key_file;
        nrv = nng_tls_config_cert_key_file(cfg, cert_key_file, NULL);
    }
    if (nrv == 0) {
        what = ca_file;
        nrv = nng_tls_config_ca_file(cfg, ca_file);
    }
    if (nrv == 0) {
        what = "client authentication mode";
        nrv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED);
    }
    if (nrv != 0) {
        gw_log(GW_LOG_ERROR, "HUB-LINK", "link TLS setup failed at %s: %s (nng %d)", what,
               nng_strerror(nrv), nrv);
        if (cfg != NULL)
            nng_tls_config_free(cfg);
        return gw_err_from_nng(nrv);
    }
    link->tls = cfg;
    return GW_OK;
}

/* 1 when the host part of a tcp:// URL is a loopback address. */
static int
link_tcp_loopback(const char *url)
{
    const char *h = url + strlen("tcp://");
    const char *end;
    char host[64];
    size_t n;

    if (*h == '[') {
        end = strchr(h, ']');
        if (end == NULL)
            return 0;
        h++;
    } else {
        end = strrchr(h, ':');
        if (end == NULL)
            end = h + strlen(h);
    }
    n = (size_t)(end - h);
    if (n == 0 || n >= sizeof(host))
        return 0;
    memcpy(host, h, n);
    host[n] = '\0';
    if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
        return 1;
    /* 127.0.0.0/8, digits and dots only. */
    if (strncmp(host, "127.", 4) != 0)
        return 0;
    for (size_t i = 4; i < n; i++) {
        if ((host[i] < '0' || host[i] > '9') && host[i] != '.')
            return 0;
    }
    return 1;
}

/* Creates and starts a listener on sock with the transport rules of
 * hub_link_listen. *trusted_out: the URL is inproc://. */
static gw_err
link_listen_on(struct hub_link *link, nng_socket sock, const char *url, nng_listener *out,
               int *trusted_out)
{
    nng_listener listener;
    int nrv;

    *trusted_out = strncmp(url, "inproc://", 9) == 0;
    if (strncmp(url, "tcp://", 6) == 0 && !link_tcp_loopback(url)) {
        gw_log(GW_LOG_ERROR, "HUB-LINK",
               "refusing to listen on %s: plain tcp:// is only allowed on loopback addresses; "
               "use tls+tcp:// with --link-cert and --link-ca for remote edges",
               url);
        return GW_EINVAL;
    }
    if (strncmp(url, "tls+tcp", 7) == 0 && link->tls == NULL) {
        gw_log(GW_LOG_ERROR, "HUB-LINK",
               "cannot listen on %s: --link-cert and --link-ca are "
               "required for tls+tcp://",
               url);
        return GW_EINVAL;
    }
    nrv = nng_listener_create(&listener, sock, url);
    if (nrv == 0 && strncmp(url, "tls+tcp", 7) == 0)
        nrv = nng_listener_set_ptr(listener, NNG_OPT_TLS_CONFIG, link->tls);
    if (nrv == 0 && *trusted_out) {
        pthread_mutex_lock(&link->pipes_mu);
        if (link->n_trusted < LINK_TRUSTED_MAX)
            link->trusted_listeners[link->n_trusted++] = (uint32_t)nng_listener_id(listener);
        else
            nrv = NNG_ENOSPC;
        pthread_mutex_unlock(&link->pipes_mu);
    }
    if (nrv == 0)
        nrv = nng_listener_start(listener, 0);
    if (nrv != 0) {
        gw_log(GW_LOG_ERROR, "HUB-LINK", "cannot listen on %s: %s (nng %d)", url, nng_strerror(nrv),
               nrv);
        return gw_err_from_nng(nrv);
    }
    *out = listener;
    return GW_OK;
}

static uint16_t
link_bound_port(nng_listener listener)
{
    nng_sockaddr sa;
    const uint8_t *p = NULL;

    memset(&sa, 0, sizeof(sa));
    if (nng_listener_get_addr(listener, NNG_OPT_LOCADDR, &sa) != 0)
        return 0;
    /* Ports are in network byte order in nng_sockaddr. */
    if (sa.s_family == NNG_AF_INET)
        p = (const uint8_t *)&sa.s_in.sa_port;
    else if (sa.s_family == NNG_AF_INET6)
        p = (const uint8_t *)&sa.s_in6.sa_port;
    return p != NULL ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

gw_err
hub_link_listen_port(struct hub_link *link, const char *url, uint16_t *port_out)
{
    nng_listener listener;
    uint16_t port;
    int trusted;
    gw_err rv;

    if (port_out != NULL)
        *port_out = 0;
    if (link == NULL || url == NULL)
        return GW_EINVAL;
    rv = link_listen_on(link, link->sock, url, &listener, &trusted);
    if (rv != GW_OK)
        return rv;
    port = link_bound_port(listener);
    if (port_out != NULL)
        *port_out = port;
    gw_log(GW_LOG_INFO, "HUB-LINK", "listening for edges on %s (port %u)%s", url, (unsigned)port,
           trusted ? ", trusted in-process" : ", enrolment required");
    return GW_OK;
}

gw_err
hub_link_listen(struct hub_link *link, const char *url)
{
    return hub_link_listen_port(link, url, NULL);
}

/* url with its port replaced by port (when it asked for port 0). */
static char *
link_url_with_port(const char *url, uint16_t port)
{
    const char *colon = strrchr(url, ':');
    struct gw_buf b = GW_BUF_INIT;
    size_t len;

    if (port == 0 || colon == NULL || strcmp(colon, ":0") != 0)
        return gw_xstrdup(url);
    gw_buf_append(&b, url, (size_t)(colon - url));
    gw_buf_appendf(&b, ":%u", (unsigned)port);
    return gw_buf_steal(&b, &len);
}

gw_err
hub_link_push_listen(struct hub_link *link, const char *url, uint16_t *port_out)
{
    nng_listener listener;
    uint16_t port;
    int trusted, nrv;
    gw_err rv;

    if (port_out != NULL)
        *port_out = 0;
    if (link == NULL || url == NULL)
        return GW_EINVAL;
    pthread_mutex_lock(&link->push_mu);
    if (!link->pub_open) {
        nrv = nng_pub0_open(&link->pub);
        if (nrv == 0) {
            link->pub_open = 1;
            nrv = nng_socket_set_int(link->pub, NNG_OPT_SENDBUF, HUB_LINK_PUSH_SENDBUF);
        }
        if (nrv != 0) {
            pthread_mutex_unlock(&link->push_mu);
            gw_log(GW_LOG_ERROR, "HUB-LINK", "cannot open the push socket: %s", nng_strerror(nrv));
            return gw_err_from_nng(nrv);
        }
    }
    pthread_mutex_unlock(&link->push_mu);

    rv = link_listen_on(link, link->pub, url, &listener, &trusted);
    if (rv != GW_OK)
        return rv;
    port = link_bound_port(listener);
    if (port_out != NULL)
        *port_out = port;

    pthread_mutex_lock(&link->push_mu);
    if (trusted) {
        free(link->push_url_inproc);
        link->push_url_inproc = gw_xstrdup(url);
    } else {
        free(link->push_url_remote);
        link->push_url_remote = link_url_with_port(url, port);
    }
    if (!link->push_started) {
        if (pthread_create(&link->push_thread, NULL, link_push_main, link) != 0) {
            pthread_mutex_unlock(&link->push_mu);
            gw_log(GW_LOG_ERROR, "HUB-LINK", "cannot start the push thread");
            return GW_EINTERNAL;
        }
        link->push_started = 1;
    }
    pthread_mutex_unlock(&link->push_mu);
    gw_log(GW_LOG_INFO, "HUB-LINK", "pushing config changes on %s (port %u)", url, (unsigned)port);
    return GW_OK;
}

void
hub_link_free(struct hub_link *link)
{
    if (link != NULL)
        link_destroy(link);
}
