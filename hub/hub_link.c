/* SPDX-License-Identifier: Apache-2.0 */
/* The hub end of the edge link: a REP socket with one context per worker
 * thread, each doing blocking recv -> handle -> send. Handlers only talk to
 * the store (which serialises itself) and to the cached price list (under
 * its own mutex). Account events that edges send with their usage batches
 * are applied by the store with the batch. Malformed input gets an Error
 * reply, never a crash, and is logged under a rate limit so a noisy peer
 * cannot flood the log. */
#include "hub_link.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "gw_log.h"
#include "gw_wire.h"
#include "keys.h"
#include "pricing.h"

/* Longest edge id accepted; hub_usage_row keeps it in char[64]. */
#define LINK_EDGE_ID_MAX 63
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

/* The single place where an edge is admitted. Enrolment proof checking
 * (HMAC over a hub nonce) belongs here; for now any well-formed edge id is
 * accepted. */
static void
link_on_hello(struct hub_link *link, const struct gw_wire_hello *h, struct gw_msg *reply)
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
    link_log_text(h->edge_id, id, sizeof(id));
    link_log_text(h->version, ver, sizeof(ver));
    link_log_text(h->region, region, sizeof(region));
    gw_log(GW_LOG_INFO, "HUB-LINK",
           "edge %s hello: version %s, region %s, snapshot %llu; hub config %llu, last usage "
           "seq %llu",
           id, ver, region, (unsigned long long)h->snapshot_version, (unsigned long long)version,
           (unsigned long long)last_seq);
    reply->type = GW_MSG_HELLO_REPLY;
    reply->u.hello_reply.config_version = version;
    reply->u.hello_reply.last_usage_seq = last_seq;
}

/* Replaces every sealed credential of snap by its plaintext. An account
 * whose credential cannot be opened (wrong master key, altered row) is sent
 * disabled and without a credential rather than failing the snapshot. */
static void
link_open_credentials(struct hub_link *link, struct gw_wire_snapshot *snap)
{
    size_t i;

    for (i = 0; i < snap->n_accounts; i++) {
        struct gw_wire_account *a = &snap->accounts[i];
        struct gw_buf plain = GW_BUF_INIT;
        gw_err rv;

        if (a->credential == NULL)
            continue;
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
            continue;
        }
        a->credential = (uint8_t *)gw_buf_steal(&plain, &a->credential_len);
    }
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

/* Handles one request frame and appends the encoded reply to out. */
static void
link_handle(struct hub_link *link, const void *data, size_t len, struct gw_buf *out)
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
    default:
        link_bad_frame(link, "unexpected message type", len, GW_EPROTO, &reply);
        goto encode;
    }
    if (!link_edge_id_ok(edge_id)) {
        link_bad_frame(link, "invalid edge id", len, GW_EINVAL, &reply);
        goto encode;
    }
    if (req.type == GW_MSG_HELLO)
        link_on_hello(link, &req.u.hello, &reply);
    else if (req.type == GW_MSG_FETCH_SNAPSHOT)
        link_on_fetch_snapshot(link, &req.u.fetch_snapshot, &reply);
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
        link_handle(link, nng_msg_body(req), nng_msg_len(req), &out);
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

/* ---------------------------------------------------------------- lifetime */

/* Order matters (see link_worker_start): stop the workers and wait for
 * them before the socket is closed, so nng_close() never runs while another
 * thread is inside an nng_ctx_* call. */
static void
link_destroy(struct hub_link *link)
{
    size_t i;

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
    free(link->prices);
    pthread_mutex_destroy(&link->run_mu);
    pthread_mutex_destroy(&link->price_mu);
    pthread_mutex_destroy(&link->rl_proto.mu);
    pthread_mutex_destroy(&link->rl_store.mu);
    pthread_mutex_destroy(&link->rl_price.mu);
    pthread_mutex_destroy(&link->rl_event.mu);
    explicit_bzero(link->master, sizeof(link->master));
    free(link);
}

gw_err
hub_link_new(struct hub_store *store, const uint8_t master_key[GW_AES_KEY_LEN],
             struct hub_link **out)
{
    struct hub_link *link;
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
    link_ratelimit_init(&link->rl_proto);
    link_ratelimit_init(&link->rl_store);
    link_ratelimit_init(&link->rl_price);
    link_ratelimit_init(&link->rl_event);

    rv = hub_store_config_version(store, &link->prices_version);
    if (rv == GW_OK)
        rv = hub_store_prices_list(store, &link->prices, &link->n_prices);
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "HUB-LINK", "cannot load the price list: %s", gw_strerror(rv));
        goto fail;
    }

    nrv = nng_rep0_open(&link->sock);
    if (nrv != 0)
        goto nng_fail;
    link->sock_open = 1;
    nrv = nng_socket_set_size(link->sock, NNG_OPT_RECVMAXSZ, HUB_LINK_RECV_MAX);
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
hub_link_listen_port(struct hub_link *link, const char *url, uint16_t *port_out)
{
    nng_listener listener;
    nng_sockaddr sa;
    uint16_t port = 0;
    int nrv;

    if (port_out != NULL)
        *port_out = 0;
    if (link == NULL || url == NULL)
        return GW_EINVAL;
    nrv = nng_listen(link->sock, url, &listener, 0);
    if (nrv != 0) {
        gw_log(GW_LOG_ERROR, "HUB-LINK", "cannot listen on %s: %s (nng %d)", url, nng_strerror(nrv),
               nrv);
        return gw_err_from_nng(nrv);
    }
    memset(&sa, 0, sizeof(sa));
    if (nng_listener_get_addr(listener, NNG_OPT_LOCADDR, &sa) == 0) {
        const uint8_t *p = NULL;
        /* Ports are in network byte order in nng_sockaddr. */
        if (sa.s_family == NNG_AF_INET)
            p = (const uint8_t *)&sa.s_in.sa_port;
        else if (sa.s_family == NNG_AF_INET6)
            p = (const uint8_t *)&sa.s_in6.sa_port;
        if (p != NULL)
            port = (uint16_t)(p[0] << 8 | p[1]);
    }
    if (port_out != NULL)
        *port_out = port;
    gw_log(GW_LOG_INFO, "HUB-LINK", "listening for edges on %s (port %u)", url, (unsigned)port);
    return GW_OK;
}

gw_err
hub_link_listen(struct hub_link *link, const char *url)
{
    return hub_link_listen_port(link, url, NULL);
}

void
hub_link_free(struct hub_link *link)
{
    if (link != NULL)
        link_destroy(link);
}
