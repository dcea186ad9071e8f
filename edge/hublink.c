/* SPDX-License-Identifier: Apache-2.0 */
/* Edge -> hub RPC over NNG REQ/REP on one dedicated thread, plus a SUB
 * socket whose receive completions (an NNG aio callback) only hand the
 * pushed Deltas to that thread. The thread owns the REQ socket and runs a
 * small schedule: enrol until it succeeds; then keep the configuration
 * current (FetchSnapshot when it has none, else apply pushes and
 * FetchDeltas on a gap or every safety-poll period), heartbeat, and send a
 * UsageBatch when a full batch waits or the oldest record waited
 * usage-flush-ms. One batch is in flight at a time; it keeps its seq and
 * records until the hub acknowledges that seq, so a lost reply only causes
 * an idempotent resend. The request path only ever touches the
 * mutex-protected queue (and the journal under the same mutex).
 *
 * A hub that says neither "authenticated" nor sends a nonce in HelloReply
 * speaks the older protocol: the link then polls FetchSnapshot and sends
 * no heartbeats. */
#include "hublink.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "gw_buf.h"
#include "gw_crypto.h"
#include "gw_log.h"
#include "journal.h"
#include "snapshot_file.h"

#define HUBLINK_FIRST_HELLO_MS 2000 /* serve from disk when the hub is silent this long */
#define HUBLINK_PERSIST_MS 1000     /* snapshot file written at most this often */
#define HUBLINK_FSYNC_MS 100        /* journal fsync period (journal-fsync=batch) */
#define HUBLINK_PUSH_QUEUE_MAX 64   /* pushed Deltas waiting for the thread */
#define HUBLINK_SUB_RECVBUF 128     /* messages NNG buffers on the SUB socket */

#define HUBLINK_BACKOFF_MIN_MS 100
#define HUBLINK_BACKOFF_MAX_MS 5000
#define HUBLINK_QUEUE_MIN_CAP 64
#define HUBLINK_EVENTS_MAX 1024 /* account events waiting; newer ones are dropped beyond */

struct edge_hublink {
    /* Copied configuration. */
    char *url, *edge_id, *region;
    char *secret; /* enrolment secret; NULL = trusted link */
    char *data_dir, *snap_path;
    char *link_cert, *link_ca, *push_override;
    uint64_t poll_ms, flush_ms, timeout_ms, stop_flush_ms, heartbeat_ms, deltas_poll_ms;
    uint64_t journal_max;
    enum edge_journal_fsync fsync_mode;
    size_t batch_max, queue_max, max_msg;
    uint8_t file_key[GW_AES_KEY_LEN];
    edge_hublink_snapshot_cb cb;
    void *cb_arg;
    edge_hublink_counters_fn counters;
    void *counters_arg;
    uint64_t started_ms;

    nng_socket sock;
    int sock_open;
    nng_tls_config *tls;
    nng_socket sub;
    int sub_open;
    nng_aio *sub_aio;
    char *sub_url; /* the push address the SUB socket dials */
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
    struct edge_journal *journal;           /* NULL without a data directory */
    uint64_t q_first_ms;                    /* when the oldest queued record arrived */
    nng_msg *pushq[HUBLINK_PUSH_QUEUE_MAX]; /* Deltas from the SUB socket */
    size_t push_head, push_len;
    int push_overflow; /* a push was dropped: FetchDeltas */
    int sub_stopping;

    /* Thread-only state. */
    struct gw_usage_record *batch; /* in-flight batch, batch_max records */
    size_t batch_n;
    struct gw_account_event *batch_ev; /* its account events */
    size_t batch_ev_n;
    uint64_t batch_seq;
    int hello_done;
    int modern;                  /* the hub speaks the distributed protocol (see the top) */
    int no_deltas, no_heartbeat; /* the hub refused them (not an auth error): do without */
    int need_deltas;             /* a gap was seen: FetchDeltas now */
    uint64_t have_version;
    struct gw_msg base; /* the wire snapshot the current edge snapshot was built from */
    int persist_dirty;
    uint64_t persist_at;
    int tried_disk;
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
    h->heartbeat_ms = cfg->heartbeat_ms > 0 ? (uint64_t)cfg->heartbeat_ms : 5000;
    h->deltas_poll_ms = cfg->deltas_poll_ms > 0 ? (uint64_t)cfg->deltas_poll_ms : 5000;
    h->journal_max = cfg->journal_max_bytes > 0 ? (uint64_t)cfg->journal_max_bytes : (1u << 30);
    if (edge_journal_fsync_parse(cfg->journal_fsync, &h->fsync_mode) != GW_OK) {
        gw_log(GW_LOG_ERROR, "EDGE-CONFIG", "journal-fsync must be always, batch or none");
        free(h->url);
        free(h->edge_id);
        free(h->region);
        free(h);
        return GW_EINVAL;
    }
    if (cfg->enrol_secret != NULL && cfg->enrol_secret[0] != '\0') {
        h->secret = gw_xstrdup(cfg->enrol_secret);
        edge_snapshot_file_key(h->secret, h->file_key);
    }
    if (cfg->data != NULL && cfg->data[0] != '\0') {
        struct gw_buf p = GW_BUF_INIT;

        h->data_dir = gw_xstrdup(cfg->data);
        gw_buf_appendf(&p, "%s/snapshot.bin", cfg->data);
        h->snap_path = gw_buf_steal(&p, NULL);
    }
    h->link_cert = cfg->link_cert ? gw_xstrdup(cfg->link_cert) : NULL;
    h->link_ca = cfg->link_ca ? gw_xstrdup(cfg->link_ca) : NULL;
    h->push_override = cfg->push && cfg->push[0] ? gw_xstrdup(cfg->push) : NULL;
    if (strncmp(h->url, "tls+tcp://", 10) == 0 && (h->link_ca == NULL || h->link_cert == NULL))
        gw_log(GW_LOG_WARN, "EDGE-CONFIG",
               "hub %s uses TLS: set link-ca (and link-cert when the hub asks for a client "
               "certificate)",
               h->url);
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
    if (h->journal != NULL && edge_journal_append(h->journal, slot) != GW_OK)
        h->stats.journal_full++;
    if (h->q_len == 0)
        h->q_first_ms = hublink_now_ms();
    h->q_len++;
    /* Wake the thread only when it has something new to do: arm the flush
     * timer for the first record, send when a batch is full. Every other
     * push just waits for one of those. */
    wake = h->thread_waiting && (h->q_len == 1 || h->q_len == h->batch_max);
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
 * only when none is in flight) and journals the batch boundary. Returns the
 * number of records and events moved. */
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
    /* The rest waited since at most now: restart its flush clock. */
    if (h->q_len > 0)
        h->q_first_ms = hublink_now_ms();
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
    if (h->journal != NULL && n > 0 && edge_journal_batch(h->journal, h->batch_seq, n) != GW_OK)
        gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "batch %" PRIu64 " boundary not journaled",
               h->batch_seq);
    uv_mutex_unlock(&h->mu);
    return n + ne;
}

/* The in-flight batch was applied by the hub: forget it (and journal the
 * acknowledgement, which may compact the journal). */
static void
hublink_commit_batch(struct edge_hublink *h, int count_ack)
{
    uv_mutex_lock(&h->mu);
    if (count_ack) {
        h->stats.batches_acked++;
        h->stats.records_acked += h->batch_n;
    }
    if (h->journal != NULL && h->batch_n > 0) {
        /* The queue as up to two runs of the ring, oldest first. */
        size_t first = h->q_cap ? h->q_cap - h->q_head : 0;
        size_t na = h->q_len < first ? h->q_len : first;

        if (edge_journal_ack(h->journal, h->batch_seq, h->q ? h->q + h->q_head : NULL, na, h->q,
                             h->q_len - na) != GW_OK)
            gw_log(GW_LOG_WARN, "EDGE-JOURNAL",
                   "ack of batch %" PRIu64 " not journaled: it may be resent after a restart "
                   "(the hub drops it as a duplicate)",
                   h->batch_seq);
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
 * start with a new Hello (the hub may have restarted or forgotten us);
 * EAUTH means the enrolment was refused or lost. */
static gw_err
hublink_expect(struct edge_hublink *h, const struct gw_msg *rep, enum gw_msg_type want,
               const char *what)
{
    if (rep->type == want)
        return GW_OK;
    if (rep->type == GW_MSG_ERROR) {
        if (rep->u.error.code == GW_EAUTH) {
            /* Never the secret: only what the hub said. */
            gw_log(GW_LOG_ERROR, "EDGE-HUBLINK-AUTH",
                   "hub refused %s for edge %s: %s; enrolling again", what, h->edge_id,
                   rep->u.error.message ? rep->u.error.message : "authentication failed");
            uv_mutex_lock(&h->mu);
            h->stats.auth_failures++;
            uv_mutex_unlock(&h->mu);
        } else {
            gw_log(GW_LOG_WARN, "EDGE-HUBLINK", "hub refused %s: %s (%s)", what,
                   rep->u.error.message ? rep->u.error.message : "",
                   gw_err_name(rep->u.error.code));
        }
        h->hello_done = 0;
        return rep->u.error.code != GW_OK ? rep->u.error.code : GW_EPROTO;
    }
    gw_log(GW_LOG_WARN, "EDGE-HUBLINK", "unexpected reply type %d to %s", (int)rep->type, what);
    return GW_EPROTO;
}

/* ------------------------------------------------------------ push (SUB) */

static void
hublink_on_sub(void *arg)
{
    struct edge_hublink *h = arg;
    nng_msg *m;
    int again;

    if (nng_aio_result(h->sub_aio) != 0)
        return; /* closed or stopped: do not re-arm */
    m = nng_aio_get_msg(h->sub_aio);
    uv_mutex_lock(&h->mu);
    if (h->push_len < HUBLINK_PUSH_QUEUE_MAX) {
        h->pushq[(h->push_head + h->push_len) % HUBLINK_PUSH_QUEUE_MAX] = m;
        h->push_len++;
        m = NULL;
    } else {
        /* The thread is far behind: fetch what was dropped. */
        h->push_overflow = 1;
    }
    again = !h->sub_stopping;
    uv_mutex_unlock(&h->mu);
    uv_cond_broadcast(&h->cv);
    if (m != NULL)
        nng_msg_free(m);
    if (again)
        nng_recv_aio(h->sub, h->sub_aio);
}

/* Server name for TLS: the host part of scheme://HOST:PORT. */
static char *
hublink_url_host(const char *url)
{
    const char *p = strstr(url, "://");
    const char *end;

    p = p ? p + 3 : url;
    if (*p == '[') {
        end = strchr(p, ']');
        return end ? gw_xstrndup(p + 1, (size_t)(end - p - 1)) : gw_xstrdup(p);
    }
    end = strrchr(p, ':');
    return end ? gw_xstrndup(p, (size_t)(end - p)) : gw_xstrdup(p);
}

/* Dials url on sock, with the link's TLS configuration for tls+tcp://. */
static int
hublink_dial(struct edge_hublink *h, nng_socket sock, const char *url)
{
    nng_dialer d;
    int nrv;

    nrv = nng_dialer_create(&d, sock, url);
    if (nrv != 0)
        return nrv;
    if (strncmp(url, "tls+tcp://", 10) == 0) {
        char *host = hublink_url_host(url);
        nng_tls_config *tls = NULL;

        nrv = nng_tls_config_alloc(&tls, NNG_TLS_MODE_CLIENT);
        if (nrv == 0)
            nrv = nng_tls_config_auth_mode(tls, NNG_TLS_AUTH_MODE_REQUIRED);
        if (nrv == 0)
            nrv = nng_tls_config_server_name(tls, host);
        if (nrv == 0 && h->link_ca != NULL)
            nrv = nng_tls_config_ca_file(tls, h->link_ca);
        if (nrv == 0 && h->link_cert != NULL)
            nrv = nng_tls_config_cert_key_file(tls, h->link_cert, NULL);
        if (nrv == 0)
            nrv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, tls);
        if (nrv != 0)
            gw_log(GW_LOG_ERROR, "EDGE-HUBLINK",
                   "TLS setup for %s failed (link-ca %s, link-cert %s): %s", url,
                   h->link_ca ? h->link_ca : "unset", h->link_cert ? h->link_cert : "unset",
                   nng_strerror(nrv));
        if (tls != NULL)
            nng_tls_config_free(tls); /* the dialer holds its own reference */
        free(host);
        if (nrv != 0) {
            nng_dialer_close(d);
            return nrv;
        }
    }
    nrv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
    if (nrv != 0)
        nng_dialer_close(d);
    return nrv;
}

static void
hublink_sub_close(struct edge_hublink *h)
{
    if (!h->sub_open)
        return;
    uv_mutex_lock(&h->mu);
    h->sub_stopping = 1;
    uv_mutex_unlock(&h->mu);
    nng_aio_stop(h->sub_aio);
    nng_close(h->sub);
    h->sub_open = 0;
    uv_mutex_lock(&h->mu);
    while (h->push_len > 0) {
        nng_msg_free(h->pushq[h->push_head]);
        h->push_head = (h->push_head + 1) % HUBLINK_PUSH_QUEUE_MAX;
        h->push_len--;
    }
    h->sub_stopping = 0;
    uv_mutex_unlock(&h->mu);
    free(h->sub_url);
    h->sub_url = NULL;
}

/* Subscribes to the hub's change push at url (no-op when already there). */
static void
hublink_sub_open(struct edge_hublink *h, const char *url)
{
    int nrv;

    if (url == NULL || url[0] == '\0')
        return;
    if (h->sub_open && h->sub_url != NULL && strcmp(h->sub_url, url) == 0)
        return;
    hublink_sub_close(h);
    nrv = nng_sub0_open(&h->sub);
    if (nrv != 0) {
        gw_log(GW_LOG_ERROR, "EDGE-HUBLINK", "cannot open SUB socket: %s", nng_strerror(nrv));
        return;
    }
    nng_socket_set(h->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    nng_socket_set_int(h->sub, NNG_OPT_RECVBUF, HUBLINK_SUB_RECVBUF);
    nng_socket_set_size(h->sub, NNG_OPT_RECVMAXSZ, h->max_msg);
    nng_socket_set_ms(h->sub, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(h->sub, NNG_OPT_RECONNMAXT, 2000);
    if (h->sub_aio == NULL && nng_aio_alloc(&h->sub_aio, hublink_on_sub, h) != 0) {
        nng_close(h->sub);
        return;
    }
    nrv = hublink_dial(h, h->sub, url);
    if (nrv != 0) {
        gw_log(GW_LOG_ERROR, "EDGE-HUBLINK", "cannot dial push address %s: %s", url,
               nng_strerror(nrv));
        nng_close(h->sub);
        return;
    }
    h->sub_open = 1;
    h->sub_url = gw_xstrdup(url);
    nng_recv_aio(h->sub, h->sub_aio);
    gw_log(GW_LOG_INFO, "EDGE-HUBLINK", "subscribed to configuration pushes at %s", url);
}

/* ------------------------------------------------------------ snapshots */

/* Builds the edge snapshot from h->base and hands it over. `full` is set
 * after a whole snapshot was decoded: the decode's many small transient
 * allocations (protobuf-c messages, one per key) are free by then but stay
 * in this thread's malloc arena, so the build is followed by malloc_trim,
 * which hands the free pages of every arena back to the kernel (about a
 * third of the resident size with a million keys). Done before the
 * callback so the memory is back by the time the edge reports ready. */
static gw_err
hublink_deliver(struct edge_hublink *h, enum edge_snapshot_source src, int full)
{
    struct edge_snapshot *snap = NULL;
    const struct gw_wire_snapshot *w = &h->base.u.snapshot;
    gw_err rv;

    rv = edge_snapshot_build(w, &snap);
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "EDGE-SNAPSHOT", "cannot build snapshot %" PRIu64 ": %s", w->version,
               gw_strerror(rv));
        return rv;
    }
    if (full)
        malloc_trim(0);
    h->have_version = w->version;
    uv_mutex_lock(&h->mu);
    h->stats.snapshots++;
    h->stats.snapshot_version = h->have_version;
    h->stats.snapshot_source = src;
    uv_mutex_unlock(&h->mu);
    if (src == EDGE_SNAPSHOT_HUB && h->snap_path != NULL && h->secret != NULL) {
        if (!h->persist_dirty)
            h->persist_at = hublink_now_ms() + HUBLINK_PERSIST_MS;
        h->persist_dirty = 1;
    }
    h->cb(h->cb_arg, snap);
    return GW_OK;
}

/* Writes the snapshot file when due (or now when force is set). */
static void
hublink_persist(struct edge_hublink *h, int force)
{
    if (!h->persist_dirty || (!force && hublink_now_ms() < h->persist_at))
        return;
    h->persist_dirty = 0;
    if (edge_snapshot_file_write(h->snap_path, h->file_key, &h->base) == GW_OK)
        gw_log(GW_LOG_DEBUG, "EDGE-SNAPSHOT-FILE", "snapshot %" PRIu64 " written to %s",
               h->have_version, h->snap_path);
    /* Encoding the whole snapshot left as many small freed blocks as the
     * decode did (see hublink_deliver): give their pages back. */
    malloc_trim(0);
}

/* Cold start with the hub silent: serve the last snapshot kept on disk. */
static void
hublink_load_disk(struct edge_hublink *h)
{
    struct gw_msg m;
    gw_err rv;

    if (h->tried_disk || h->snap_path == NULL || h->secret == NULL || h->have_version != 0)
        return;
    h->tried_disk = 1;
    rv = edge_snapshot_file_read(h->snap_path, h->file_key, h->max_msg, &m);
    if (rv == GW_ENOTFOUND)
        return;
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "EDGE-SNAPSHOT-FILE",
               "%s ignored (%s): wrong enrolment secret, damaged or another format", h->snap_path,
               gw_strerror(rv));
        return;
    }
    gw_msg_fini(&h->base);
    h->base = m;
    if (hublink_deliver(h, EDGE_SNAPSHOT_DISK, 1) == GW_OK)
        gw_log(GW_LOG_WARN, "EDGE-SNAPSHOT-FILE",
               "hub unreachable: serving snapshot version %" PRIu64 " from %s until it answers",
               h->have_version, h->snap_path);
}

/* Applies one Deltas (moved from): GW_OK when applied or stale, GW_EAGAIN-
 * like GW_ENOTFOUND when the edge must fetch (gap or snapshot_required). */
static gw_err
hublink_apply(struct edge_hublink *h, struct gw_wire_deltas *d, const char *how)
{
    gw_err rv;

    if (d->snapshot_required) {
        gw_log(GW_LOG_INFO, "EDGE-SNAPSHOT", "hub asks for a full snapshot (have %" PRIu64 ")",
               h->have_version);
        h->have_version = 0;
        return GW_ENOTFOUND;
    }
    if (h->have_version == 0 || h->base.type != GW_MSG_SNAPSHOT)
        return GW_ENOTFOUND;
    if (d->to_version <= h->have_version)
        return GW_OK; /* already have it */
    if (d->from_version != h->have_version) {
        gw_log(GW_LOG_INFO, "EDGE-SNAPSHOT",
               "%s deltas %" PRIu64 "->%" PRIu64 " do not follow version %" PRIu64 ": fetching",
               how, d->from_version, d->to_version, h->have_version);
        return GW_ENOTFOUND;
    }
    rv = edge_snapshot_apply_deltas(&h->base.u.snapshot, d);
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "EDGE-SNAPSHOT", "cannot apply deltas: %s; fetching a snapshot",
               gw_strerror(rv));
        h->have_version = 0;
        return GW_ENOTFOUND;
    }
    rv = hublink_deliver(h, EDGE_SNAPSHOT_HUB, 0);
    if (rv != GW_OK) {
        h->have_version = 0;
        return GW_ENOTFOUND;
    }
    uv_mutex_lock(&h->mu);
    h->stats.deltas_applied++;
    uv_mutex_unlock(&h->mu);
    gw_log(GW_LOG_DEBUG, "EDGE-SNAPSHOT", "%s deltas applied: version %" PRIu64 " (%zu changes)",
           how, h->have_version, d->n_changes);
    return GW_OK;
}

/* ------------------------------------------------------------ requests */

static gw_err
hublink_hello(struct edge_hublink *h, uint64_t timeout_ms)
{
    struct gw_msg req, rep;
    uint8_t proof[GW_SHA256_LEN];
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
    if (!rep.u.hello_reply.authenticated && rep.u.hello_reply.nonce != NULL) {
        /* Step 3 of the enrolment: prove we hold the secret. */
        if (h->secret == NULL) {
            gw_log(GW_LOG_ERROR, "EDGE-HUBLINK-AUTH",
                   "hub %s asks edge %s to prove its enrolment, but no enrol-secret is set", h->url,
                   h->edge_id);
            uv_mutex_lock(&h->mu);
            h->stats.auth_failures++;
            uv_mutex_unlock(&h->mu);
            rv = GW_EAUTH;
            goto out;
        }
        gw_wire_hello_proof(h->secret, strlen(h->secret), rep.u.hello_reply.nonce,
                            rep.u.hello_reply.nonce_len, h->edge_id, proof);
        req.u.hello.proof = proof;
        req.u.hello.proof_len = sizeof(proof);
        gw_msg_fini(&rep);
        rv = hublink_call(h, &req, &rep, timeout_ms);
        explicit_bzero(proof, sizeof(proof));
        if (rv != GW_OK)
            goto out;
        rv = hublink_expect(h, &rep, GW_MSG_HELLO_REPLY, "Hello with proof");
        if (rv != GW_OK)
            goto out;
        if (!rep.u.hello_reply.authenticated) {
            gw_log(GW_LOG_ERROR, "EDGE-HUBLINK-AUTH",
                   "hub did not accept the enrolment proof of edge %s", h->edge_id);
            uv_mutex_lock(&h->mu);
            h->stats.auth_failures++;
            uv_mutex_unlock(&h->mu);
            rv = GW_EAUTH;
            goto out;
        }
    }
    h->modern = rep.u.hello_reply.authenticated;
    h->no_deltas = 0;
    h->no_heartbeat = 0;

    uint64_t last = rep.u.hello_reply.last_usage_seq;
    if (h->batch_n + h->batch_ev_n > 0 && h->batch_seq <= last) {
        /* The hub applied our in-flight batch; only its ack was lost. */
        hublink_commit_batch(h, 1);
    } else if (h->batch_n + h->batch_ev_n > 0 && h->batch_seq != last + 1) {
        /* Not applied, and the hub expects another seq: renumber (and
         * journal the new boundary) so the hub sees no gap. */
        h->batch_seq = last + 1;
        uv_mutex_lock(&h->mu);
        if (h->journal != NULL && h->batch_n > 0 &&
            edge_journal_batch(h->journal, h->batch_seq, h->batch_n) != GW_OK)
            gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "renumbered batch not journaled");
        uv_mutex_unlock(&h->mu);
    }
    uv_mutex_lock(&h->mu);
    h->stats.next_seq = h->batch_n + h->batch_ev_n > 0 ? h->batch_seq : last + 1;
    h->stats.hellos_ok++;
    uv_mutex_unlock(&h->mu);
    h->hello_done = 1;
    if (h->modern)
        hublink_sub_open(h, h->push_override ? h->push_override : rep.u.hello_reply.push_url);
    gw_log(GW_LOG_INFO, "EDGE-HUBLINK",
           "hello to hub %s done%s: config version %" PRIu64 ", last usage seq %" PRIu64, h->url,
           h->secret && h->modern ? " (enrolled)" : "", rep.u.hello_reply.config_version, last);
out:
    gw_msg_fini(&rep);
    return rv;
}

static gw_err
hublink_fetch(struct edge_hublink *h, uint64_t timeout_ms)
{
    struct gw_msg req, rep;
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
    if (rep.u.snapshot.unchanged) {
        /* The hub confirmed what we serve: it is the hub's now. */
        uv_mutex_lock(&h->mu);
        if (h->stats.snapshot_source == EDGE_SNAPSHOT_DISK)
            h->stats.snapshot_source = EDGE_SNAPSHOT_HUB;
        uv_mutex_unlock(&h->mu);
        goto out;
    }
    gw_msg_fini(&h->base);
    h->base = rep;
    memset(&rep, 0, sizeof(rep));
    rv = hublink_deliver(h, EDGE_SNAPSHOT_HUB, 1);
    if (rv != GW_OK) {
        h->have_version = 0;
        goto out;
    }
    gw_log(GW_LOG_INFO, "EDGE-SNAPSHOT",
           "snapshot version %" PRIu64 " loaded: %zu keys, %zu groups, %zu accounts",
           h->have_version, h->base.u.snapshot.n_keys, h->base.u.snapshot.n_groups,
           h->base.u.snapshot.n_accounts);
out:
    gw_msg_fini(&rep);
    return rv;
}

/* FetchDeltas from the current version; falls back to FetchSnapshot when
 * the edge has none or the hub asks for it. */
static gw_err
hublink_sync_config(struct edge_hublink *h, uint64_t timeout_ms)
{
    struct gw_msg req, rep;
    gw_err rv;

    h->need_deltas = 0;
    if (!h->modern || h->no_deltas || h->have_version == 0)
        return hublink_fetch(h, timeout_ms);
    memset(&req, 0, sizeof(req));
    req.type = GW_MSG_FETCH_DELTAS;
    req.u.fetch_deltas.edge_id = h->edge_id;
    req.u.fetch_deltas.from_version = h->have_version;
    rv = hublink_call(h, &req, &rep, timeout_ms);
    if (rv != GW_OK)
        goto out;
    if (rep.type == GW_MSG_ERROR && rep.u.error.code != GW_EAUTH) {
        gw_log(GW_LOG_WARN, "EDGE-HUBLINK", "hub refused FetchDeltas (%s): polling snapshots",
               gw_err_name(rep.u.error.code));
        h->no_deltas = 1;
        gw_msg_fini(&rep);
        return hublink_fetch(h, timeout_ms);
    }
    rv = hublink_expect(h, &rep, GW_MSG_DELTAS, "FetchDeltas");
    if (rv != GW_OK)
        goto out;
    /* The hub answered from our version: what we serve is current. */
    uv_mutex_lock(&h->mu);
    if (h->stats.snapshot_source == EDGE_SNAPSHOT_DISK)
        h->stats.snapshot_source = EDGE_SNAPSHOT_HUB;
    uv_mutex_unlock(&h->mu);
    if (hublink_apply(h, &rep.u.deltas, "fetched") != GW_OK) {
        gw_msg_fini(&rep);
        h->have_version = 0;
        return hublink_fetch(h, timeout_ms);
    }
out:
    gw_msg_fini(&rep);
    return rv;
}

static gw_err
hublink_heartbeat(struct edge_hublink *h, uint64_t timeout_ms)
{
    struct gw_msg req, rep;
    struct edge_hublink_stats st;
    gw_err rv;

    edge_hublink_get_stats(h, &st);
    memset(&req, 0, sizeof(req));
    req.type = GW_MSG_HEARTBEAT;
    req.u.heartbeat.edge_id = h->edge_id;
    req.u.heartbeat.snapshot_version = st.snapshot_version;
    req.u.heartbeat.snapshot_source =
        (char *)(uintptr_t)(st.snapshot_source == EDGE_SNAPSHOT_DISK ? "disk" : "hub");
    if (h->counters != NULL)
        h->counters(h->counters_arg, &req.u.heartbeat.requests_total,
                    &req.u.heartbeat.errors_total);
    req.u.heartbeat.usage_pending = st.queued;
    req.u.heartbeat.uptime_s = (int64_t)((hublink_now_ms() - h->started_ms) / 1000);
    req.u.heartbeat.region = h->region;
    req.u.heartbeat.version = (char *)(uintptr_t)EDGE_VERSION;
    rv = hublink_call(h, &req, &rep, timeout_ms);
    if (rv != GW_OK)
        goto out;
    if (rep.type == GW_MSG_ERROR && rep.u.error.code != GW_EAUTH) {
        gw_log(GW_LOG_WARN, "EDGE-HUBLINK", "hub refused Heartbeat (%s): heartbeats off",
               gw_err_name(rep.u.error.code));
        h->no_heartbeat = 1;
        goto out;
    }
    rv = hublink_expect(h, &rep, GW_MSG_HEARTBEAT_ACK, "Heartbeat");
    if (rv != GW_OK)
        goto out;
    uv_mutex_lock(&h->mu);
    h->stats.heartbeats++;
    uv_mutex_unlock(&h->mu);
    if (rep.u.heartbeat_ack.config_version > h->have_version)
        h->need_deltas = 1; /* a push was lost */
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
    /* The batch boundary (and its records) reach the disk before the hub
     * can apply the batch. */
    if (h->journal != NULL && edge_journal_sync(h->journal) != GW_OK)
        gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "journal not synced before batch %" PRIu64,
               h->batch_seq);
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
               "stopping with %zu usage record(s) not delivered to the hub%s", left,
               h->journal ? " (kept in the journal: sent after the restart)" : "");
}

/* Takes one pushed Deltas off the queue and applies it; returns 1 when one
 * was handled. */
static int
hublink_take_push(struct edge_hublink *h)
{
    nng_msg *m = NULL;
    struct gw_msg in;

    uv_mutex_lock(&h->mu);
    if (h->push_overflow) {
        h->push_overflow = 0;
        h->need_deltas = 1;
    }
    if (h->push_len > 0) {
        m = h->pushq[h->push_head];
        h->push_head = (h->push_head + 1) % HUBLINK_PUSH_QUEUE_MAX;
        h->push_len--;
        h->stats.pushes++;
    }
    uv_mutex_unlock(&h->mu);
    if (m == NULL)
        return 0;
    memset(&in, 0, sizeof(in));
    if (gw_wire_decode(nng_msg_body(m), nng_msg_len(m), h->max_msg, &in) != GW_OK ||
        in.type != GW_MSG_DELTAS) {
        gw_log(GW_LOG_WARN, "EDGE-HUBLINK", "bad push from the hub (%zu bytes) ignored",
               nng_msg_len(m));
        nng_msg_free(m);
        gw_msg_fini(&in);
        return 1;
    }
    nng_msg_free(m);
    if (h->hello_done && hublink_apply(h, &in.u.deltas, "pushed") != GW_OK)
        h->need_deltas = 1;
    gw_msg_fini(&in);
    return 1;
}

static void
hublink_thread(void *arg)
{
    struct edge_hublink *h = arg;
    uint64_t next_hello = 0, next_poll = 0, next_flush = 0, next_hb = 0, next_sync = 0;
    uint64_t backoff = HUBLINK_BACKOFF_MIN_MS;
    int first_hello = 1;

    for (;;) {
        uint64_t now = hublink_now_ms(), wake_at, flush_at;
        size_t pending, queued, inflight;
        int stopping;
        gw_err rv;

        uv_mutex_lock(&h->mu);
        stopping = h->stopping;
        uv_mutex_unlock(&h->mu);
        if (stopping)
            break;

        if (!h->hello_done && now >= next_hello) {
            rv = hublink_hello(h, first_hello ? hublink_min(h->timeout_ms, HUBLINK_FIRST_HELLO_MS)
                                              : h->timeout_ms);
            first_hello = 0;
            if (rv != GW_OK) {
                hublink_count_error(h);
                hublink_load_disk(h);
                next_hello = hublink_now_ms() + backoff;
                backoff = hublink_min(backoff * 2, HUBLINK_BACKOFF_MAX_MS);
            } else {
                backoff = HUBLINK_BACKOFF_MIN_MS;
                next_poll = 0;
                next_flush = 0;
                next_hb = hublink_now_ms() + h->heartbeat_ms;
            }
            continue;
        }
        if (h->hello_done && hublink_take_push(h))
            continue;
        if (h->hello_done && (now >= next_poll || h->need_deltas)) {
            rv = hublink_sync_config(h, h->timeout_ms);
            if (rv != GW_OK) {
                hublink_count_error(h);
                if (h->have_version == 0)
                    hublink_load_disk(h);
            }
            /* With pushes flowing the poll is only a safety net. */
            next_poll = hublink_now_ms() + (h->sub_open ? h->deltas_poll_ms : h->poll_ms);
            continue;
        }
        if (h->hello_done && h->modern && !h->no_heartbeat && now >= next_hb) {
            if (hublink_heartbeat(h, h->timeout_ms) != GW_OK)
                hublink_count_error(h);
            next_hb = hublink_now_ms() + h->heartbeat_ms;
            continue;
        }
        uv_mutex_lock(&h->mu);
        queued = h->q_len + h->ev_len;
        inflight = h->batch_n + h->batch_ev_n;
        pending = queued + inflight;
        /* A new batch goes out when full or when its oldest record waited
         * usage-flush-ms; an unacknowledged one is resent at next_flush. */
        flush_at = inflight > 0             ? next_flush
                   : queued >= h->batch_max ? now
                   : h->q_len > 0           ? h->q_first_ms + h->flush_ms
                                            : now;
        if (flush_at < next_flush)
            flush_at = next_flush;
        uv_mutex_unlock(&h->mu);
        if (h->hello_done && pending > 0 && now >= flush_at) {
            rv = hublink_flush_once(h, h->timeout_ms);
            if (rv != GW_OK) {
                hublink_count_error(h);
                next_flush =
                    hublink_now_ms() +
                    (h->flush_ms > HUBLINK_BACKOFF_MIN_MS ? h->flush_ms : HUBLINK_BACKOFF_MIN_MS);
            }
            continue;
        }
        if (h->persist_dirty && now >= h->persist_at) {
            hublink_persist(h, 0);
            continue;
        }
        if (h->journal != NULL && h->fsync_mode == EDGE_JOURNAL_FSYNC_BATCH && now >= next_sync) {
            if (edge_journal_dirty(h->journal) && edge_journal_sync(h->journal) != GW_OK)
                hublink_count_error(h);
            next_sync = hublink_now_ms() + HUBLINK_FSYNC_MS;
        }

        /* Sleep until the next scheduled step, a push, or stop. */
        if (!h->hello_done) {
            wake_at = next_hello;
        } else {
            wake_at = next_poll;
            if (pending > 0)
                wake_at = hublink_min(wake_at, flush_at);
            if (h->modern && !h->no_heartbeat)
                wake_at = hublink_min(wake_at, next_hb);
        }
        if (h->persist_dirty)
            wake_at = hublink_min(wake_at, h->persist_at);
        if (h->journal != NULL && h->fsync_mode == EDGE_JOURNAL_FSYNC_BATCH)
            wake_at = hublink_min(wake_at, next_sync);
        uv_mutex_lock(&h->mu);
        h->thread_waiting = 1;
        while (!h->stopping && h->push_len == 0 && !h->push_overflow && !h->need_deltas) {
            now = hublink_now_ms();
            if (now >= wake_at)
                break;
            /* A first record arms the flush timer; a full batch goes now. */
            if (h->hello_done && h->batch_n + h->batch_ev_n == 0 && now >= next_flush) {
                if (h->q_len >= h->batch_max)
                    break;
                if (h->q_len > 0 && h->q_first_ms + h->flush_ms < wake_at)
                    wake_at = h->q_first_ms + h->flush_ms;
                if (h->ev_len > 0 && h->q_len == 0)
                    break;
            }
            if (now >= wake_at)
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

void
edge_hublink_set_counters(struct edge_hublink *h, edge_hublink_counters_fn fn, void *arg)
{
    h->counters = fn;
    h->counters_arg = arg;
}

/* Opens the journal and queues what it replays. */
static gw_err
hublink_open_journal(struct edge_hublink *h)
{
    struct edge_journal_replay r;
    gw_err rv;

    rv = edge_journal_open(h->data_dir, h->fsync_mode, h->journal_max, &h->journal, &r);
    if (rv != GW_OK)
        return rv;
    uv_mutex_lock(&h->mu);
    if (r.n_records > 0) {
        size_t keep =
            r.n_records > h->queue_max + r.batch_n ? h->queue_max + r.batch_n : r.n_records;
        size_t nb = r.batch_n;

        /* The unacknowledged batch goes out again with its seq and records
         * (whole, even if usage-batch-max shrank since: the hub may have
         * applied it, and only the same seq lets it tell). */
        if (nb > 0) {
            free(h->batch);
            h->batch = gw_xmalloc((nb > h->batch_max ? nb : h->batch_max) * sizeof(*h->batch));
            memcpy(h->batch, r.records, nb * sizeof(*h->batch));
            h->batch_n = nb;
            h->batch_seq = r.batch_seq;
            h->stats.next_seq = r.batch_seq;
        } else if (r.last_acked_seq > 0) {
            h->stats.next_seq = r.last_acked_seq + 1;
        }
        if (keep > nb) {
            /* Prepend: the replayed records are older than anything pushed
             * so far (start runs before the edge serves). */
            size_t n = keep - nb, cap = n + h->q_len;
            struct gw_usage_record *q = gw_xmalloc((cap > 0 ? cap : 1) * sizeof(*q));

            memcpy(q, r.records + nb, n * sizeof(*q));
            for (size_t i = 0; i < h->q_len; i++)
                q[n + i] = h->q[(h->q_head + i) % h->q_cap];
            free(h->q);
            h->q = q;
            h->q_cap = cap;
            h->q_head = 0;
            h->q_len = cap;
            h->q_first_ms = hublink_now_ms();
        }
        if (keep < r.n_records)
            gw_log(GW_LOG_ERROR, "EDGE-USAGE-DROP",
                   "journal holds %zu records, more than usage-queue-max: %zu not resent",
                   r.n_records, r.n_records - keep);
    } else if (r.last_acked_seq > 0) {
        h->stats.next_seq = r.last_acked_seq + 1;
    }
    uv_mutex_unlock(&h->mu);
    edge_journal_replay_fini(&r);
    return GW_OK;
}

gw_err
edge_hublink_start(struct edge_hublink *h)
{
    int nrv;
    gw_err rv;

    if (h->started)
        return GW_EINVAL;
    h->started_ms = hublink_now_ms();
    if (h->data_dir != NULL) {
        if (mkdir(h->data_dir, 0700) != 0 && errno != EEXIST) {
            gw_log(GW_LOG_ERROR, "EDGE-HUBLINK", "cannot create data directory %s: %s", h->data_dir,
                   strerror(errno));
            return GW_EIO;
        }
        rv = hublink_open_journal(h);
        if (rv != GW_OK)
            return rv;
    }
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
    nrv = hublink_dial(h, h->sock, h->url);
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
        hublink_sub_close(h);
        if (h->persist_dirty)
            hublink_persist(h, 1);
        uv_mutex_lock(&h->mu);
        edge_journal_close(h->journal);
        h->journal = NULL;
        uv_mutex_unlock(&h->mu);
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
    hublink_sub_close(h);
    if (h->sub_aio != NULL)
        nng_aio_free(h->sub_aio);
    edge_journal_close(h->journal);
    gw_msg_fini(&h->base);
    uv_cond_destroy(&h->cv);
    uv_mutex_destroy(&h->mu);
    free(h->q);
    free(h->batch);
    free(h->evq);
    free(h->batch_ev);
    free(h->url);
    free(h->edge_id);
    free(h->region);
    if (h->secret != NULL) {
        explicit_bzero(h->secret, strlen(h->secret));
        free(h->secret);
    }
    explicit_bzero(h->file_key, sizeof(h->file_key));
    free(h->data_dir);
    free(h->snap_path);
    free(h->link_cert);
    free(h->link_ca);
    free(h->push_override);
    free(h);
}
