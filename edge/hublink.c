/* SPDX-License-Identifier: Apache-2.0 */
/* Edge -> hub RPC over NNG REQ/REP on one dedicated thread. The thread owns
 * the socket and runs a small schedule: Hello until it succeeds, then
 * FetchSnapshot every poll interval and UsageBatch whenever records wait.
 * One batch is in flight at a time; it keeps its seq and records until the
 * hub acknowledges that seq, so a lost reply only causes an idempotent
 * resend. The request path only ever touches the mutex-protected queue. */
#include "hublink.h"

#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "gw_buf.h"
#include "gw_log.h"

#define HUBLINK_BACKOFF_MIN_MS 100
#define HUBLINK_BACKOFF_MAX_MS 5000
#define HUBLINK_QUEUE_MIN_CAP 64
#define HUBLINK_EVENTS_MAX 1024 /* account events waiting; newer ones are dropped beyond */

struct edge_hublink {
    /* Copied configuration. */
    char *url, *edge_id, *region;
    uint64_t poll_ms, flush_ms, timeout_ms, stop_flush_ms;
    size_t batch_max, queue_max, max_msg;
    edge_hublink_snapshot_cb cb;
    void *cb_arg;

    nng_socket sock;
    int sock_open;
    uv_thread_t thread;
    int started, joined;

    uv_mutex_t mu; /* guards everything below up to the thread-only part */
    uv_cond_t cv;
    struct gw_usage_record *q; /* ring buffer, grown on demand up to queue_max */
    size_t q_cap, q_head, q_len;
    struct gw_account_event *evq; /* account events: ring of HUBLINK_EVENTS_MAX */
    size_t ev_head, ev_len;
    int stopping;
    int thread_waiting; /* the thread sleeps on cv: pushes must signal */
    int thread_done;
    int sock_closing; /* stop() is closing the socket under the thread */
    struct edge_hublink_stats stats;

    /* Thread-only state. */
    struct gw_usage_record *batch; /* in-flight batch, batch_max records */
    size_t batch_n;
    struct gw_account_event *batch_ev; /* its account events */
    size_t batch_ev_n;
    uint64_t batch_seq;
    int hello_done;
    uint64_t have_version;
};

static uint64_t
hublink_now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

gw_err
edge_hublink_new(const struct edge_config *cfg, edge_hublink_snapshot_cb cb, void *arg,
                 struct edge_hublink **out)
{
    struct edge_hublink *h;

    *out = NULL;
    if (cfg->hub == NULL || cfg->hub[0] == '\0' || cfg->edge_id == NULL ||
        cfg->edge_id[0] == '\0' || cb == NULL)
        return GW_EINVAL;
    h = gw_xcalloc(1, sizeof(*h));
    h->url = gw_xstrdup(cfg->hub);
    h->edge_id = gw_xstrdup(cfg->edge_id);
    h->region = gw_xstrdup(cfg->region ? cfg->region : "");
    h->poll_ms = cfg->poll_interval_ms > 0 ? (uint64_t)cfg->poll_interval_ms : 1000;
    h->flush_ms = cfg->usage_flush_ms > 0 ? (uint64_t)cfg->usage_flush_ms : 1000;
    h->timeout_ms = cfg->hub_timeout_ms > 0 ? (uint64_t)cfg->hub_timeout_ms : 10000;
    h->stop_flush_ms = cfg->stop_flush_ms > 0 ? (uint64_t)cfg->stop_flush_ms : 0;
    h->batch_max = cfg->usage_batch_max > 0 ? (size_t)cfg->usage_batch_max : 1000;
    h->queue_max = cfg->usage_queue_max > 0 ? (size_t)cfg->usage_queue_max : 100000;
    h->max_msg = cfg->hub_max_msg_bytes > 0 ? (size_t)cfg->hub_max_msg_bytes : (64u << 20);
    h->cb = cb;
    h->cb_arg = arg;
    h->stats.next_seq = 1;
    uv_mutex_init(&h->mu);
    uv_cond_init(&h->cv);
    *out = h;
    return GW_OK;
}

/* ------------------------------------------------------------ the queue */

gw_err
edge_hublink_push_usage(struct edge_hublink *h, const struct gw_usage_record *rec)
{
    uint64_t dropped = 0;
    int wake;

    uv_mutex_lock(&h->mu);
    if (h->q_len >= h->queue_max) {
        dropped = ++h->stats.records_dropped;
        uv_mutex_unlock(&h->mu);
        /* Loud, but not one line per request during a long outage. */
        if (dropped == 1 || dropped % 1000 == 0)
            gw_log(GW_LOG_ERROR, "EDGE-USAGE-DROP",
                   "usage queue full (%zu records): %" PRIu64 " record(s) dropped so far",
                   h->queue_max, dropped);
        return GW_EQUOTA;
    }
    if (h->q_len == h->q_cap) {
        size_t cap = h->q_cap ? h->q_cap * 2 : HUBLINK_QUEUE_MIN_CAP;
        struct gw_usage_record *q;

        if (cap > h->queue_max)
            cap = h->queue_max;
        q = gw_xmalloc(cap * sizeof(*q));
        /* Unwrap the ring into the new array. */
        for (size_t i = 0; i < h->q_len; i++)
            q[i] = h->q[(h->q_head + i) % h->q_cap];
        free(h->q);
        h->q = q;
        h->q_cap = cap;
        h->q_head = 0;
    }
    struct gw_usage_record *slot = &h->q[(h->q_head + h->q_len) % h->q_cap];
    *slot = *rec;
    /* The wire refuses text fields without a NUL; one bad record must not
     * block every later batch. */
    slot->request_id[sizeof(slot->request_id) - 1] = '\0';
    slot->model[sizeof(slot->model) - 1] = '\0';
    slot->dialect[sizeof(slot->dialect) - 1] = '\0';
    h->q_len++;
    wake = h->thread_waiting;
    uv_mutex_unlock(&h->mu);
    if (wake)
        uv_cond_broadcast(&h->cv);
    return GW_OK;
}

gw_err
edge_hublink_push_account_event(struct edge_hublink *h, const struct gw_account_event *ev)
{
    int wake;

    uv_mutex_lock(&h->mu);
    if (h->ev_len >= HUBLINK_EVENTS_MAX) {
        h->stats.events_dropped++;
        uv_mutex_unlock(&h->mu);
        return GW_EQUOTA;
    }
    if (h->evq == NULL)
        h->evq = gw_xcalloc(HUBLINK_EVENTS_MAX, sizeof(*h->evq));
    struct gw_account_event *slot = &h->evq[(h->ev_head + h->ev_len) % HUBLINK_EVENTS_MAX];
    *slot = *ev;
    slot->message[sizeof(slot->message) - 1] = '\0';
    h->ev_len++;
    wake = h->thread_waiting;
    uv_mutex_unlock(&h->mu);
    if (wake)
        uv_cond_broadcast(&h->cv);
    return GW_OK;
}

void
edge_hublink_get_stats(struct edge_hublink *h, struct edge_hublink_stats *out)
{
    uv_mutex_lock(&h->mu);
    *out = h->stats;
    out->queued = h->q_len + h->batch_n;
    out->events_queued = h->ev_len + h->batch_ev_n;
    uv_mutex_unlock(&h->mu);
}

/* Moves up to batch_max queued records into the in-flight batch (called
 * only when none is in flight). Returns the number moved. */
static size_t
hublink_fill_batch(struct edge_hublink *h)
{
    size_t n;

    if (h->batch == NULL)
        h->batch = gw_xmalloc(h->batch_max * sizeof(*h->batch));
    uv_mutex_lock(&h->mu);
    n = h->q_len < h->batch_max ? h->q_len : h->batch_max;
    for (size_t i = 0; i < n; i++)
        h->batch[i] = h->q[(h->q_head + i) % h->q_cap];
    h->q_head = h->q_cap ? (h->q_head + n) % h->q_cap : 0;
    h->q_len -= n;
    h->batch_n = n;
    size_t ne = h->ev_len < h->batch_max ? h->ev_len : h->batch_max;
    if (ne > 0 && h->batch_ev == NULL)
        h->batch_ev = gw_xmalloc(h->batch_max * sizeof(*h->batch_ev));
    for (size_t i = 0; i < ne; i++)
        h->batch_ev[i] = h->evq[(h->ev_head + i) % HUBLINK_EVENTS_MAX];
    h->ev_head = (h->ev_head + ne) % HUBLINK_EVENTS_MAX;
    h->ev_len -= ne;
    h->batch_ev_n = ne;
    h->batch_seq = h->stats.next_seq;
    uv_mutex_unlock(&h->mu);
    return n + ne;
}

/* The in-flight batch was applied by the hub: forget it. */
static void
hublink_commit_batch(struct edge_hublink *h, int count_ack)
{
    uv_mutex_lock(&h->mu);
    if (count_ack) {
        h->stats.batches_acked++;
        h->stats.records_acked += h->batch_n;
    }
    h->stats.next_seq = h->batch_seq + 1;
    h->batch_n = 0;
    h->batch_ev_n = 0;
    uv_mutex_unlock(&h->mu);
}

static void
hublink_count_error(struct edge_hublink *h)
{
    uv_mutex_lock(&h->mu);
    h->stats.errors++;
    uv_mutex_unlock(&h->mu);
}

/* ------------------------------------------------------------ RPC */

/* One request/reply round trip with a bounded wait. *rep is owned by the
 * caller on GW_OK (gw_msg_fini). A hub Error reply is returned as GW_OK with
 * rep->type == GW_MSG_ERROR. */
static gw_err
hublink_call(struct edge_hublink *h, const struct gw_msg *req, struct gw_msg *rep,
             uint64_t timeout_ms)
{
    struct gw_buf enc = GW_BUF_INIT;
    char *buf = NULL;
    size_t len = 0;
    gw_err rv;
    int nrv;

    memset(rep, 0, sizeof(*rep));
    rv = gw_wire_encode(req, &enc);
    if (rv != GW_OK)
        goto out;
    if (timeout_ms == 0)
        timeout_ms = 1;
    nng_socket_set_ms(h->sock, NNG_OPT_SENDTIMEO, (nng_duration)timeout_ms);
    nng_socket_set_ms(h->sock, NNG_OPT_RECVTIMEO, (nng_duration)timeout_ms);
    nrv = nng_send(h->sock, enc.data, enc.len, 0);
    if (nrv != 0) {
        rv = gw_err_from_nng(nrv);
        gw_log(GW_LOG_DEBUG, "EDGE-HUBLINK", "send failed: %s", nng_strerror(nrv));
        goto out;
    }
    nrv = nng_recv(h->sock, &buf, &len, NNG_FLAG_ALLOC);
    if (nrv != 0) {
        rv = gw_err_from_nng(nrv);
        gw_log(GW_LOG_DEBUG, "EDGE-HUBLINK", "receive failed: %s", nng_strerror(nrv));
        buf = NULL;
        goto out;
    }
    rv = gw_wire_decode(buf, len, h->max_msg, rep);
    if (rv != GW_OK)
        gw_log(GW_LOG_WARN, "EDGE-HUBLINK", "bad reply from hub (%zu bytes): %s", len,
               gw_strerror(rv));
out:
    if (buf)
        nng_free(buf, len);
    gw_buf_fini(&enc);
    return rv;
}

/* Checks the reply type; logs hub errors. A hub Error makes the next round
 * start with a new Hello (the hub may have restarted or forgotten us). */
static gw_err
hublink_expect(struct edge_hublink *h, const struct gw_msg *rep, enum gw_msg_type want,
               const char *what)
{
    if (rep->type == want)
        return GW_OK;
    if (rep->type == GW_MSG_ERROR) {
        gw_log(GW_LOG_WARN, "EDGE-HUBLINK", "hub refused %s: %s (%s)", what,
               rep->u.error.message ? rep->u.error.message : "", gw_err_name(rep->u.error.code));
        h->hello_done = 0;
        return rep->u.error.code != GW_OK ? rep->u.error.code : GW_EPROTO;
    }
    gw_log(GW_LOG_WARN, "EDGE-HUBLINK", "unexpected reply type %d to %s", (int)rep->type, what);
    return GW_EPROTO;
}

static gw_err
hublink_hello(struct edge_hublink *h, uint64_t timeout_ms)
{
    struct gw_msg req, rep;
    gw_err rv;

    memset(&req, 0, sizeof(req));
    req.type = GW_MSG_HELLO;
    req.u.hello.edge_id = h->edge_id;
    req.u.hello.region = h->region;
    req.u.hello.version = (char *)(uintptr_t)EDGE_VERSION;
    req.u.hello.snapshot_version = h->have_version;
    rv = hublink_call(h, &req, &rep, timeout_ms);
    if (rv != GW_OK)
        goto out;
    rv = hublink_expect(h, &rep, GW_MSG_HELLO_REPLY, "Hello");
    if (rv != GW_OK)
        goto out;

    uint64_t last = rep.u.hello_reply.last_usage_seq;
    if (h->batch_n + h->batch_ev_n > 0 && h->batch_seq <= last) {
        /* The hub applied our in-flight batch; only its ack was lost. */
        hublink_commit_batch(h, 1);
    } else if (h->batch_n + h->batch_ev_n > 0) {
        /* Not applied: renumber so the hub sees no gap. */
        h->batch_seq = last + 1;
    }
    uv_mutex_lock(&h->mu);
    h->stats.next_seq = h->batch_n + h->batch_ev_n > 0 ? h->batch_seq : last + 1;
    h->stats.hellos_ok++;
    uv_mutex_unlock(&h->mu);
    h->hello_done = 1;
    gw_log(GW_LOG_INFO, "EDGE-HUBLINK",
           "hello to hub %s done: config version %" PRIu64 ", last usage seq %" PRIu64, h->url,
           rep.u.hello_reply.config_version, last);
out:
    gw_msg_fini(&rep);
    return rv;
}

static gw_err
hublink_fetch(struct edge_hublink *h, uint64_t timeout_ms)
{
    struct gw_msg req, rep;
    struct edge_snapshot *snap = NULL;
    gw_err rv;

    memset(&req, 0, sizeof(req));
    req.type = GW_MSG_FETCH_SNAPSHOT;
    req.u.fetch_snapshot.edge_id = h->edge_id;
    req.u.fetch_snapshot.have_version = h->have_version;
    rv = hublink_call(h, &req, &rep, timeout_ms);
    if (rv != GW_OK)
        goto out;
    rv = hublink_expect(h, &rep, GW_MSG_SNAPSHOT, "FetchSnapshot");
    if (rv != GW_OK)
        goto out;
    if (rep.u.snapshot.unchanged)
        goto out;
    rv = edge_snapshot_build(&rep.u.snapshot, &snap);
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "EDGE-SNAPSHOT", "cannot build snapshot %" PRIu64 ": %s",
               rep.u.snapshot.version, gw_strerror(rv));
        goto out;
    }
    h->have_version = rep.u.snapshot.version;
    uv_mutex_lock(&h->mu);
    h->stats.snapshots++;
    h->stats.snapshot_version = h->have_version;
    uv_mutex_unlock(&h->mu);
    gw_log(GW_LOG_INFO, "EDGE-SNAPSHOT",
           "snapshot version %" PRIu64 " loaded: %zu keys, %zu groups, %zu accounts",
           rep.u.snapshot.version, edge_snapshot_key_count(snap), rep.u.snapshot.n_groups,
           rep.u.snapshot.n_accounts);
    h->cb(h->cb_arg, snap);
out:
    gw_msg_fini(&rep);
    return rv;
}

/* Sends the in-flight batch (filling it first when none is in flight). */
static gw_err
hublink_flush_once(struct edge_hublink *h, uint64_t timeout_ms)
{
    struct gw_msg req, rep;
    gw_err rv;

    if (h->batch_n + h->batch_ev_n == 0 && hublink_fill_batch(h) == 0)
        return GW_OK;
    memset(&req, 0, sizeof(req));
    req.type = GW_MSG_USAGE_BATCH;
    req.u.usage_batch.edge_id = h->edge_id;
    req.u.usage_batch.seq = h->batch_seq;
    req.u.usage_batch.records = h->batch;
    req.u.usage_batch.n_records = h->batch_n;
    req.u.usage_batch.account_events = h->batch_ev;
    req.u.usage_batch.n_account_events = h->batch_ev_n;
    uv_mutex_lock(&h->mu);
    h->stats.batches_sent++;
    uv_mutex_unlock(&h->mu);
    rv = hublink_call(h, &req, &rep, timeout_ms);
    if (rv != GW_OK)
        goto out;
    rv = hublink_expect(h, &rep, GW_MSG_USAGE_ACK, "UsageBatch");
    if (rv != GW_OK)
        goto out;
    if (rep.u.usage_ack.seq != h->batch_seq) {
        gw_log(GW_LOG_WARN, "EDGE-HUBLINK", "usage ack for seq %" PRIu64 ", expected %" PRIu64,
               rep.u.usage_ack.seq, h->batch_seq);
        rv = GW_EPROTO;
        goto out;
    }
    gw_log(GW_LOG_DEBUG, "EDGE-HUBLINK", "usage batch %" PRIu64 " (%zu records) acknowledged%s",
           h->batch_seq, h->batch_n, rep.u.usage_ack.duplicate ? " (duplicate)" : "");
    hublink_commit_batch(h, 1);
out:
    gw_msg_fini(&rep);
    return rv;
}

/* ------------------------------------------------------------ thread */

static uint64_t
hublink_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Delivers what is pending before the deadline; called once stopping. */
static void
hublink_final_flush(struct edge_hublink *h)
{
    uint64_t deadline = hublink_now_ms() + h->stop_flush_ms;
    size_t left;

    for (;;) {
        uint64_t now = hublink_now_ms();
        gw_err rv;

        uv_mutex_lock(&h->mu);
        left = h->q_len + h->batch_n + h->ev_len + h->batch_ev_n;
        uv_mutex_unlock(&h->mu);
        if (left == 0 || now >= deadline)
            break;
        if (!h->hello_done)
            rv = hublink_hello(h, hublink_min(h->timeout_ms, deadline - now));
        else
            rv = hublink_flush_once(h, hublink_min(h->timeout_ms, deadline - now));
        if (rv == GW_OK)
            continue;
        hublink_count_error(h);
        /* Pause a little so a hub that answers errors at once is not
         * hammered; give up once stop() has closed the socket. */
        uv_mutex_lock(&h->mu);
        if (!h->sock_closing) {
            now = hublink_now_ms();
            if (now < deadline)
                (void)uv_cond_timedwait(&h->cv, &h->mu,
                                        hublink_min(deadline - now, 100) * 1000000u);
        }
        int closing = h->sock_closing;
        uv_mutex_unlock(&h->mu);
        if (closing)
            break;
    }
    if (left > 0)
        gw_log(GW_LOG_ERROR, "EDGE-USAGE-DROP",
               "stopping with %zu usage record(s) not delivered to the hub", left);
}

static void
hublink_thread(void *arg)
{
    struct edge_hublink *h = arg;
    uint64_t next_hello = 0, next_poll = 0, next_flush = 0;
    uint64_t backoff = HUBLINK_BACKOFF_MIN_MS;

    for (;;) {
        uint64_t now = hublink_now_ms(), wake_at;
        size_t pending;
        int stopping;
        gw_err rv;

        uv_mutex_lock(&h->mu);
        stopping = h->stopping;
        uv_mutex_unlock(&h->mu);
        if (stopping)
            break;

        if (!h->hello_done && now >= next_hello) {
            rv = hublink_hello(h, h->timeout_ms);
            if (rv != GW_OK) {
                hublink_count_error(h);
                next_hello = hublink_now_ms() + backoff;
                backoff = hublink_min(backoff * 2, HUBLINK_BACKOFF_MAX_MS);
            } else {
                backoff = HUBLINK_BACKOFF_MIN_MS;
                next_poll = 0;
                next_flush = 0;
            }
            continue;
        }
        if (h->hello_done && now >= next_poll) {
            rv = hublink_fetch(h, h->timeout_ms);
            if (rv != GW_OK)
                hublink_count_error(h);
            next_poll = hublink_now_ms() + h->poll_ms;
            continue;
        }
        uv_mutex_lock(&h->mu);
        pending = h->q_len + h->batch_n + h->ev_len + h->batch_ev_n;
        uv_mutex_unlock(&h->mu);
        if (h->hello_done && pending > 0 && now >= next_flush) {
            rv = hublink_flush_once(h, h->timeout_ms);
            if (rv != GW_OK) {
                hublink_count_error(h);
                next_flush = hublink_now_ms() + h->flush_ms;
            }
            continue;
        }

        /* Sleep until the next scheduled step, a push, or stop. */
        if (!h->hello_done)
            wake_at = next_hello;
        else if (pending > 0)
            wake_at = hublink_min(next_poll, next_flush);
        else
            wake_at = next_poll;
        uv_mutex_lock(&h->mu);
        h->thread_waiting = 1;
        while (!h->stopping) {
            now = hublink_now_ms();
            if (now >= wake_at)
                break;
            /* New records matter only when a flush could go out now. */
            if (h->hello_done && h->q_len + h->ev_len > 0 && h->batch_n + h->batch_ev_n == 0 &&
                now >= next_flush)
                break;
            (void)uv_cond_timedwait(&h->cv, &h->mu, (wake_at - now) * 1000000u);
        }
        h->thread_waiting = 0;
        uv_mutex_unlock(&h->mu);
    }

    hublink_final_flush(h);
    uv_mutex_lock(&h->mu);
    h->thread_done = 1;
    uv_mutex_unlock(&h->mu);
    uv_cond_broadcast(&h->cv);
}

gw_err
edge_hublink_start(struct edge_hublink *h)
{
    int nrv;

    if (h->started)
        return GW_EINVAL;
    nrv = nng_req0_open(&h->sock);
    if (nrv != 0) {
        gw_log(GW_LOG_ERROR, "EDGE-HUBLINK", "cannot open REQ socket: %s", nng_strerror(nrv));
        return GW_EINTERNAL;
    }
    h->sock_open = 1;
    nng_socket_set_size(h->sock, NNG_OPT_RECVMAXSZ, h->max_msg);
    /* REQ resends on its own when no reply came; every request is idempotent. */
    nng_socket_set_ms(h->sock, NNG_OPT_REQ_RESENDTIME,
                      (nng_duration)(h->timeout_ms > 1 ? h->timeout_ms / 2 : 1));
    nng_socket_set_ms(h->sock, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(h->sock, NNG_OPT_RECONNMAXT, 2000);
    /* Non-blocking: an absent hub is retried in the background. */
    nrv = nng_dial(h->sock, h->url, NULL, NNG_FLAG_NONBLOCK);
    if (nrv != 0) {
        gw_log(GW_LOG_ERROR, "EDGE-HUBLINK", "cannot dial hub %s: %s", h->url, nng_strerror(nrv));
        nng_close(h->sock);
        h->sock_open = 0;
        return nrv == NNG_ENOMEM ? GW_ENOMEM : GW_EINVAL;
    }
    if (uv_thread_create(&h->thread, hublink_thread, h) != 0) {
        nng_close(h->sock);
        h->sock_open = 0;
        return GW_EINTERNAL;
    }
    h->started = 1;
    gw_log(GW_LOG_INFO, "EDGE-HUBLINK", "dialing hub %s as edge %s", h->url, h->edge_id);
    return GW_OK;
}

void
edge_hublink_stop(struct edge_hublink *h)
{
    if (h->started && !h->joined) {
        uint64_t deadline;

        uv_mutex_lock(&h->mu);
        h->stopping = 1;
        uv_cond_broadcast(&h->cv);
        /* Give the final flush its time (plus a margin for a call already in
         * progress to notice), then cut the socket to end any blocked call.
         * The thread signals cv when it is done. */
        deadline = hublink_now_ms() + h->stop_flush_ms + 200;
        while (!h->thread_done) {
            uint64_t now = hublink_now_ms();
            /* Nothing left to deliver: interrupt whatever call is running. */
            if (now >= deadline || h->q_len + h->batch_n + h->ev_len + h->batch_ev_n == 0)
                break;
            (void)uv_cond_timedwait(&h->cv, &h->mu, (deadline - now) * 1000000u);
        }
        h->sock_closing = 1;
        uv_mutex_unlock(&h->mu);
        nng_close(h->sock);
        h->sock_open = 0;
        uv_thread_join(&h->thread);
        h->joined = 1;
    }
    if (h->sock_open) {
        nng_close(h->sock);
        h->sock_open = 0;
    }
}

void
edge_hublink_free(struct edge_hublink *h)
{
    if (h == NULL)
        return;
    edge_hublink_stop(h);
    uv_cond_destroy(&h->cv);
    uv_mutex_destroy(&h->mu);
    free(h->q);
    free(h->batch);
    free(h->evq);
    free(h->batch_ev);
    free(h->url);
    free(h->edge_id);
    free(h->region);
    free(h);
}
