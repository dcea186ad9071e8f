/* SPDX-License-Identifier: Apache-2.0 */
/* Hub link in distributed mode against a real REP + PUB pair playing the
 * hub: the enrolment handshake (the proof is checked here with HMAC-SHA256
 * computed independently of gw_wire), a wrong secret refused, EAUTH later
 * on answered by a new enrolment, Deltas pushed and applied in order (a
 * revoked key gone within a second), a gap answered by FetchDeltas,
 * snapshot_required by FetchSnapshot, heartbeats, the encrypted snapshot
 * copy written and used at a start without hub, and the usage journal
 * resending an unacknowledged batch with the same seq after a restart or
 * dropping it when the hub already applied it. */
#include "gw_test.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "edge_config.h"
#include "gw_buf.h"
#include "gw_crypto.h"
#include "gw_wire.h"
#include "hublink.h"
#include "journal.h"
#include "snapshot.h"
#include "snapshot_file.h"

#define WAIT_MS 10000
#define SECRET "enrol-secret-for-tests-0123456789"
#define MAX_STEPS 32
#define MAX_SEQS 64
#define MAX_RECS 256

static uv_mutex_t mu;
static uv_cond_t cv;

struct dist_hub {
    nng_socket rep, pub;
    uv_thread_t thr;
    int running, stop;
    char rep_url[96], pub_url[96];
    /* config */
    struct gw_msg full;             /* what FetchSnapshot returns */
    struct gw_buf steps[MAX_STEPS]; /* encoded Deltas from version i to i+1 */
    uint64_t cur;                   /* newest version */
    uint64_t floor;                 /* FetchDeltas below this: snapshot_required */
    uint64_t applied_seq;
    int fail_auth_once; /* next non-Hello request: Error(EAUTH) */
    /* enrolment state of the (single) edge pipe */
    uint8_t nonce[32];
    int authed;
    /* observations */
    int hellos, proofs_ok, proofs_bad, fetch_snaps, fetch_deltas, heartbeats, pub_pipes;
    char hb_source[16], hb_region[32], hb_edge[32];
    uint64_t seqs[MAX_SEQS];
    size_t n_seqs;
    struct gw_usage_record recs[MAX_RECS];
    size_t n_recs;
};

struct snap_sink {
    struct edge_snapshot *last;
    int count;
};

static void
snap_cb(void *arg, struct edge_snapshot *snap)
{
    struct snap_sink *s = arg;

    uv_mutex_lock(&mu);
    edge_snapshot_unref(s->last);
    s->last = snap;
    s->count++;
    uv_cond_broadcast(&cv);
    uv_mutex_unlock(&mu);
}

static void
fill_key(struct gw_wire_key *k, uint64_t id, const char *raw)
{
    memset(k, 0, sizeof(*k));
    k->id = id;
    gw_sha256(raw, strlen(raw), k->key_hash);
    k->group_id = 1;
    k->enabled = 1;
}

/* A full snapshot at `version` with the keys named. */
static void
make_full(struct gw_msg *m, uint64_t version, const char *const *keys, size_t n)
{
    struct gw_wire_snapshot *w = &m->u.snapshot;

    memset(m, 0, sizeof(*m));
    m->type = GW_MSG_SNAPSHOT;
    w->version = version;
    w->n_keys = n;
    w->keys = gw_xcalloc(n ? n : 1, sizeof(*w->keys));
    for (size_t i = 0; i < n; i++)
        fill_key(&w->keys[i], i + 1, keys[i]);
    w->n_groups = 1;
    w->groups = gw_xcalloc(1, sizeof(*w->groups));
    w->groups[0].id = 1;
    w->groups[0].name = gw_xstrdup("g");
    w->n_accounts = 1;
    w->accounts = gw_xcalloc(1, sizeof(*w->accounts));
    w->accounts[0].id = 9;
    w->accounts[0].kind = gw_xstrdup("anthropic");
    w->accounts[0].base_url = gw_xstrdup("http://127.0.0.1:9");
    w->accounts[0].credential = (uint8_t *)gw_xstrdup("sk-account");
    w->accounts[0].credential_len = strlen("sk-account");
    w->accounts[0].enabled = 1;
    w->n_bindings = 1;
    w->bindings = gw_xcalloc(1, sizeof(*w->bindings));
    w->bindings[0].group_id = 1;
    w->bindings[0].account_id = 9;
}

/* The proof as the protocol defines it, computed here without gw_wire. */
static void
expected_proof(const uint8_t nonce[32], const char *edge_id, uint8_t out[GW_SHA256_LEN])
{
    struct gw_buf d = GW_BUF_INIT;

    gw_buf_append(&d, "aicarpool-hello", 16); /* with its NUL */
    gw_buf_append(&d, nonce, 32);
    gw_buf_append(&d, edge_id, strlen(edge_id));
    gw_hmac_sha256(SECRET, strlen(SECRET), d.data, d.len, out);
    gw_buf_fini(&d);
}

/* Deltas from `from` to the newest version, merged from the stored steps. */
static void
hub_deltas(struct dist_hub *h, uint64_t from, struct gw_msg *out)
{
    struct gw_wire_deltas *d = &out->u.deltas;

    out->type = GW_MSG_DELTAS;
    d->from_version = from;
    d->to_version = h->cur;
    if (from < h->floor || from > h->cur) {
        d->snapshot_required = 1;
        d->to_version = h->cur;
        return;
    }
    for (uint64_t v = from; v < h->cur; v++) {
        struct gw_msg step;

        assert_true(v < MAX_STEPS && h->steps[v].len > 0);
        assert_int_equal(gw_wire_decode(h->steps[v].data, h->steps[v].len, 1 << 20, &step), GW_OK);
        d->changes =
            gw_xrealloc(d->changes, (d->n_changes + step.u.deltas.n_changes) * sizeof(*d->changes));
        memcpy(d->changes + d->n_changes, step.u.deltas.changes,
               step.u.deltas.n_changes * sizeof(*d->changes));
        d->n_changes += step.u.deltas.n_changes;
        /* The contents moved into out: free only the array. */
        free(step.u.deltas.changes);
        step.u.deltas.changes = NULL;
        step.u.deltas.n_changes = 0;
        gw_msg_fini(&step);
    }
}

static int
hub_handle(struct dist_hub *h, const struct gw_msg *in, struct gw_msg *out)
{
    if (in->type != GW_MSG_HELLO && (!h->authed || h->fail_auth_once)) {
        h->fail_auth_once = 0;
        h->authed = 0;
        gw_msg_set_error(out, GW_EAUTH, "say hello first");
        return 1;
    }
    switch (in->type) {
    case GW_MSG_HELLO: {
        uint8_t want[GW_SHA256_LEN];

        h->hellos++;
        out->type = GW_MSG_HELLO_REPLY;
        if (in->u.hello.proof == NULL) {
            h->authed = 0;
            assert_int_equal(gw_random_bytes(h->nonce, sizeof(h->nonce)), GW_OK);
            out->u.hello_reply.nonce = gw_xmalloc(32);
            memcpy(out->u.hello_reply.nonce, h->nonce, 32);
            out->u.hello_reply.nonce_len = 32;
            return 1;
        }
        expected_proof(h->nonce, in->u.hello.edge_id, want);
        if (in->u.hello.proof_len != sizeof(want) ||
            memcmp(in->u.hello.proof, want, sizeof(want)) != 0) {
            h->proofs_bad++;
            memset(&out->type, 0, sizeof(out->type));
            gw_msg_set_error(out, GW_EAUTH, "bad proof");
            return 1;
        }
        h->proofs_ok++;
        h->authed = 1;
        out->u.hello_reply.authenticated = 1;
        out->u.hello_reply.config_version = h->cur;
        out->u.hello_reply.last_usage_seq = h->applied_seq;
        out->u.hello_reply.push_url = gw_xstrdup(h->pub_url);
        return 1;
    }
    case GW_MSG_FETCH_SNAPSHOT: {
        struct gw_buf enc = GW_BUF_INIT;

        h->fetch_snaps++;
        if (in->u.fetch_snapshot.have_version >= h->full.u.snapshot.version) {
            out->type = GW_MSG_SNAPSHOT;
            out->u.snapshot.version = h->full.u.snapshot.version;
            out->u.snapshot.unchanged = 1;
            return 1;
        }
        /* A deep copy through the wire. */
        assert_int_equal(gw_wire_encode(&h->full, &enc), GW_OK);
        assert_int_equal(gw_wire_decode(enc.data, enc.len, 1 << 20, out), GW_OK);
        gw_buf_fini(&enc);
        return 1;
    }
    case GW_MSG_FETCH_DELTAS:
        h->fetch_deltas++;
        hub_deltas(h, in->u.fetch_deltas.from_version, out);
        return 1;
    case GW_MSG_HEARTBEAT:
        h->heartbeats++;
        snprintf(h->hb_source, sizeof(h->hb_source), "%s",
                 in->u.heartbeat.snapshot_source ? in->u.heartbeat.snapshot_source : "");
        snprintf(h->hb_region, sizeof(h->hb_region), "%s",
                 in->u.heartbeat.region ? in->u.heartbeat.region : "");
        snprintf(h->hb_edge, sizeof(h->hb_edge), "%s", in->u.heartbeat.edge_id);
        out->type = GW_MSG_HEARTBEAT_ACK;
        out->u.heartbeat_ack.config_version = h->cur;
        return 1;
    case GW_MSG_USAGE_BATCH: {
        const struct gw_wire_usage_batch *b = &in->u.usage_batch;
        int dup = b->seq <= h->applied_seq;

        if (h->n_seqs < MAX_SEQS)
            h->seqs[h->n_seqs++] = b->seq;
        if (!dup && b->seq != h->applied_seq + 1) {
            gw_msg_set_error(out, GW_EPROTO, "seq gap");
            return 1;
        }
        if (!dup) {
            for (size_t i = 0; i < b->n_records && h->n_recs < MAX_RECS; i++)
                h->recs[h->n_recs++] = b->records[i];
            h->applied_seq = b->seq;
        }
        out->type = GW_MSG_USAGE_ACK;
        out->u.usage_ack.seq = b->seq;
        out->u.usage_ack.duplicate = dup;
        return 1;
    }
    default:
        gw_msg_set_error(out, GW_EPROTO, "unexpected");
        return 1;
    }
}

static void
hub_thread(void *arg)
{
    struct dist_hub *h = arg;

    for (;;) {
        char *buf = NULL;
        size_t len = 0;
        struct gw_msg in, out;
        struct gw_buf enc = GW_BUF_INIT;
        int rv;

        uv_mutex_lock(&mu);
        int stop = h->stop;
        uv_mutex_unlock(&mu);
        if (stop)
            break;
        rv = nng_recv(h->rep, &buf, &len, NNG_FLAG_ALLOC);
        if (rv == NNG_ETIMEDOUT)
            continue;
        if (rv != 0)
            break;
        memset(&out, 0, sizeof(out));
        if (gw_wire_decode(buf, len, 1 << 20, &in) != GW_OK) {
            nng_free(buf, len);
            continue;
        }
        nng_free(buf, len);
        uv_mutex_lock(&mu);
        hub_handle(h, &in, &out);
        uv_cond_broadcast(&cv);
        uv_mutex_unlock(&mu);
        assert_int_equal(gw_wire_encode(&out, &enc), GW_OK);
        (void)nng_send(h->rep, enc.data, enc.len, 0);
        gw_buf_fini(&enc);
        gw_msg_fini(&in);
        gw_msg_fini(&out);
    }
}

static void
hub_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct dist_hub *h = arg;

    (void)p;
    (void)ev;
    uv_mutex_lock(&mu);
    h->pub_pipes++;
    uv_cond_broadcast(&cv);
    uv_mutex_unlock(&mu);
}

static void
hub_start(struct dist_hub *h, const char *name)
{
    snprintf(h->rep_url, sizeof(h->rep_url), "inproc://%s-rep", name);
    snprintf(h->pub_url, sizeof(h->pub_url), "inproc://%s-pub", name);
    assert_int_equal(nng_rep0_open(&h->rep), 0);
    nng_socket_set_ms(h->rep, NNG_OPT_RECVTIMEO, 50);
    assert_int_equal(nng_listen(h->rep, h->rep_url, NULL, 0), 0);
    assert_int_equal(nng_pub0_open(&h->pub), 0);
    assert_int_equal(nng_pipe_notify(h->pub, NNG_PIPE_EV_ADD_POST, hub_pipe_cb, h), 0);
    assert_int_equal(nng_listen(h->pub, h->pub_url, NULL, 0), 0);
    assert_int_equal(uv_thread_create(&h->thr, hub_thread, h), 0);
    h->running = 1;
}

static void
hub_stop(struct dist_hub *h)
{
    if (h->running) {
        uv_mutex_lock(&mu);
        h->stop = 1;
        uv_mutex_unlock(&mu);
        uv_thread_join(&h->thr);
        nng_close(h->rep);
        nng_close(h->pub);
        h->running = 0;
    }
    gw_msg_fini(&h->full);
    for (int i = 0; i < MAX_STEPS; i++)
        gw_buf_fini(&h->steps[i]);
}

/* Stores step cur -> cur+1 with one change; pushes it unless `lose`. */
static void
hub_change(struct dist_hub *h, enum gw_change_kind kind, uint64_t id, const char *raw, int lose)
{
    struct gw_msg m;
    struct gw_wire_deltas *d = &m.u.deltas;

    memset(&m, 0, sizeof(m));
    m.type = GW_MSG_DELTAS;
    uv_mutex_lock(&mu);
    d->from_version = h->cur;
    d->to_version = h->cur + 1;
    d->n_changes = 1;
    d->changes = gw_xcalloc(1, sizeof(*d->changes));
    d->changes[0].version = h->cur + 1;
    d->changes[0].kind = kind;
    if (kind == GW_CHANGE_KEY)
        fill_key(&d->changes[0].u.key, id, raw);
    else
        d->changes[0].u.removed_id = id;
    assert_int_equal(gw_wire_encode(&m, &h->steps[h->cur]), GW_OK);
    h->cur++;
    struct gw_buf *enc = &h->steps[h->cur - 1];
    uv_mutex_unlock(&mu);
    if (!lose)
        assert_int_equal(nng_send(h->pub, enc->data, enc->len, 0), 0);
    gw_msg_fini(&m);
}

typedef int (*pred_fn)(void *arg);

static int
wait_for(pred_fn pred, void *arg, uint64_t ms)
{
    uint64_t deadline = uv_hrtime() + ms * 1000000u;
    int ok;

    uv_mutex_lock(&mu);
    while (!(ok = pred(arg))) {
        uint64_t now = uv_hrtime();
        if (now >= deadline)
            break;
        (void)uv_cond_timedwait(&cv, &mu, deadline - now);
    }
    uv_mutex_unlock(&mu);
    return ok;
}

struct int_wait {
    int *v;
    int want;
};

static int
pred_int(void *arg)
{
    struct int_wait *w = arg;
    return *w->v >= w->want;
}

struct ver_wait {
    struct snap_sink *s;
    uint64_t want;
};

static int
pred_version(void *arg)
{
    struct ver_wait *w = arg;
    return w->s->last != NULL && edge_snapshot_version(w->s->last) >= w->want;
}

struct size_wait {
    size_t *v;
    size_t want;
};

static int
pred_size(void *arg)
{
    struct size_wait *w = arg;
    return *w->v >= w->want;
}

/* Polls the link's stats (they are not under the test's lock) until pred
 * holds, waking on the shared condition or every 10 ms. */
typedef int (*stats_pred)(const struct edge_hublink_stats *st, uint64_t want);

static int
wait_stats(struct edge_hublink *link, stats_pred pred, uint64_t want, uint64_t ms)
{
    uint64_t deadline = uv_hrtime() + ms * 1000000u;
    struct edge_hublink_stats st;

    for (;;) {
        edge_hublink_get_stats(link, &st);
        if (pred(&st, want))
            return 1;
        if (uv_hrtime() >= deadline)
            return 0;
        uv_mutex_lock(&mu);
        (void)uv_cond_timedwait(&cv, &mu, 10 * 1000000u);
        uv_mutex_unlock(&mu);
    }
}

static int
st_auth_failures(const struct edge_hublink_stats *st, uint64_t want)
{
    return st->auth_failures >= want;
}

static int
st_source_hub(const struct edge_hublink_stats *st, uint64_t want)
{
    return st->snapshot_source == EDGE_SNAPSHOT_HUB && st->snapshot_version >= want;
}

static int
st_errors(const struct edge_hublink_stats *st, uint64_t want)
{
    return st->errors >= want;
}

static int
st_acked(const struct edge_hublink_stats *st, uint64_t want)
{
    return st->records_acked >= want && st->queued == 0;
}

static int
has_key(struct snap_sink *s, const char *raw)
{
    const struct edge_key *k = NULL;
    int ok;

    uv_mutex_lock(&mu);
    ok = s->last && edge_snapshot_lookup(s->last, raw, strlen(raw), 0, &k) == EDGE_KEY_OK;
    uv_mutex_unlock(&mu);
    return ok;
}

static void
make_cfg(struct edge_config *cfg, const char *url, const char *secret, const char *data)
{
    edge_config_defaults(cfg);
    free(cfg->hub);
    cfg->hub = gw_xstrdup(url);
    free(cfg->edge_id);
    cfg->edge_id = gw_xstrdup("edge-remote-1");
    free(cfg->region);
    cfg->region = gw_xstrdup("eu-west");
    cfg->enrol_secret = secret ? gw_xstrdup(secret) : NULL;
    cfg->data = data ? gw_xstrdup(data) : NULL;
    cfg->hub_timeout_ms = 300;
    cfg->heartbeat_ms = 100;
    cfg->deltas_poll_ms = 60000; /* changes must come from pushes and gaps */
    cfg->usage_flush_ms = 20;
    cfg->stop_flush_ms = 2000;
}

static void
make_data_dir(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/gw-hublink-dist-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void
remove_data_dir(const char *dir)
{
    char p[320];

    snprintf(p, sizeof(p), "%s/snapshot.bin", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/usage.journal", dir);
    unlink(p);
    rmdir(dir);
}

static void
test_enrol_push_gap_revoke(void **state)
{
    static const char *const keys[] = {"k-one", "k-two"};
    static const char *const keys9[] = {"k-nine"};
    struct dist_hub hub;
    struct snap_sink sink = {NULL, 0};
    struct edge_config cfg;
    struct edge_hublink *link = NULL;
    struct edge_hublink_stats st;
    char dir[64];

    (void)state;
    memset(&hub, 0, sizeof(hub));
    make_full(&hub.full, 4, keys, 2);
    hub.cur = 4;
    hub.floor = 4;
    hub_start(&hub, "dist-1");
    make_data_dir(dir, sizeof(dir));
    make_cfg(&cfg, hub.rep_url, SECRET, dir);
    GW_PASS(edge_hublink_new(&cfg, snap_cb, &sink, &link));
    GW_PASS(edge_hublink_start(link));

    /* Enrolled with a valid proof, snapshot 4 from the hub, subscribed. */
    struct ver_wait v4 = {&sink, 4};
    assert_true(wait_for(pred_version, &v4, WAIT_MS));
    struct int_wait sub = {&hub.pub_pipes, 1};
    assert_true(wait_for(pred_int, &sub, WAIT_MS));
    uv_mutex_lock(&mu);
    assert_int_equal(hub.proofs_ok, 1);
    assert_int_equal(hub.proofs_bad, 0);
    assert_int_equal(hub.hellos, 2);
    uv_mutex_unlock(&mu);
    assert_true(has_key(&sink, "k-two"));

    /* Revocation pushed: gone within a second. */
    uint64_t t0 = uv_hrtime();
    hub_change(&hub, GW_CHANGE_KEY_REMOVED, 2, NULL, 0);
    struct ver_wait v5 = {&sink, 5};
    assert_true(wait_for(pred_version, &v5, 1000));
    assert_true((uv_hrtime() - t0) / 1000000u < 1000);
    assert_false(has_key(&sink, "k-two"));
    assert_true(has_key(&sink, "k-one"));

    /* A lost push (5->6) and the next one (6->7): the gap is fetched. */
    uv_mutex_lock(&mu);
    int fd_before = hub.fetch_deltas;
    uv_mutex_unlock(&mu);
    hub_change(&hub, GW_CHANGE_KEY, 3, "k-three", 1);
    hub_change(&hub, GW_CHANGE_KEY, 4, "k-four", 0);
    struct ver_wait v7 = {&sink, 7};
    assert_true(wait_for(pred_version, &v7, WAIT_MS));
    assert_true(has_key(&sink, "k-three"));
    assert_true(has_key(&sink, "k-four"));
    uv_mutex_lock(&mu);
    assert_true(hub.fetch_deltas > fd_before);
    int fs_before = hub.fetch_snaps;
    /* Too far behind for the change log: the hub wants a full snapshot. */
    hub.floor = 100;
    gw_msg_fini(&hub.full);
    make_full(&hub.full, 9, keys9, 1);
    uv_mutex_unlock(&mu);
    hub_change(&hub, GW_CHANGE_KEY, 5, "k-five", 1);
    hub_change(&hub, GW_CHANGE_KEY, 6, "k-six", 0);
    struct ver_wait v9 = {&sink, 9};
    assert_true(wait_for(pred_version, &v9, WAIT_MS));
    assert_true(has_key(&sink, "k-nine"));
    assert_false(has_key(&sink, "k-one"));
    uv_mutex_lock(&mu);
    assert_true(hub.fetch_snaps > fs_before);
    uv_mutex_unlock(&mu);

    /* Heartbeats carry the edge's identity and snapshot source. */
    struct int_wait hb = {&hub.heartbeats, 2};
    assert_true(wait_for(pred_int, &hb, WAIT_MS));
    uv_mutex_lock(&mu);
    assert_string_equal(hub.hb_edge, "edge-remote-1");
    assert_string_equal(hub.hb_region, "eu-west");
    assert_string_equal(hub.hb_source, "hub");
    /* The hub forgets the enrolment: EAUTH, then a new handshake. */
    hub.fail_auth_once = 1;
    uv_mutex_unlock(&mu);
    assert_true(wait_stats(link, st_auth_failures, 1, WAIT_MS));
    struct int_wait re = {&hub.proofs_ok, 2};
    assert_true(wait_for(pred_int, &re, WAIT_MS));

    edge_hublink_get_stats(link, &st);
    assert_true(st.deltas_applied >= 2);
    assert_true(st.pushes >= 2);
    edge_hublink_stop(link);
    edge_hublink_free(link);
    link = NULL;

    /* The copy on disk is the last version, readable with the secret only. */
    {
        char p[320];
        uint8_t key[GW_AES_KEY_LEN];
        struct gw_msg m;

        snprintf(p, sizeof(p), "%s/snapshot.bin", dir);
        edge_snapshot_file_key(SECRET, key);
        GW_PASS(edge_snapshot_file_read(p, key, 1 << 20, &m));
        assert_int_equal(m.u.snapshot.version, 9);
        gw_msg_fini(&m);
    }

    hub_stop(&hub);
    edge_snapshot_unref(sink.last);
    edge_config_free(&cfg);
    remove_data_dir(dir);
}

static void
test_wrong_secret_refused(void **state)
{
    static const char *const keys[] = {"k-one"};
    struct dist_hub hub;
    struct snap_sink sink = {NULL, 0};
    struct edge_config cfg;
    struct edge_hublink *link = NULL;

    (void)state;
    memset(&hub, 0, sizeof(hub));
    make_full(&hub.full, 4, keys, 1);
    hub.cur = 4;
    hub_start(&hub, "dist-2");
    make_cfg(&cfg, hub.rep_url, "not-the-secret", NULL);
    GW_PASS(edge_hublink_new(&cfg, snap_cb, &sink, &link));
    GW_PASS(edge_hublink_start(link));
    struct int_wait bad = {&hub.proofs_bad, 2};
    assert_true(wait_for(pred_int, &bad, WAIT_MS));
    assert_true(wait_stats(link, st_auth_failures, 2, WAIT_MS));
    edge_hublink_stop(link);
    uv_mutex_lock(&mu);
    assert_int_equal(sink.count, 0);
    assert_int_equal(hub.proofs_ok, 0);
    assert_int_equal(hub.fetch_snaps, 0);
    uv_mutex_unlock(&mu);
    edge_hublink_free(link);
    hub_stop(&hub);
    edge_config_free(&cfg);
}

static void
test_start_from_disk(void **state)
{
    static const char *const keys[] = {"k-disk"};
    struct dist_hub hub;
    struct snap_sink sink = {NULL, 0};
    struct edge_config cfg;
    struct edge_hublink *link = NULL;
    struct edge_hublink_stats st;
    uint8_t key[GW_AES_KEY_LEN];
    char dir[64], p[320];

    (void)state;
    memset(&hub, 0, sizeof(hub));
    make_data_dir(dir, sizeof(dir));
    snprintf(p, sizeof(p), "%s/snapshot.bin", dir);

    /* A damaged copy is ignored: no snapshot while the hub is away. */
    {
        FILE *f = fopen(p, "wb");
        assert_non_null(f);
        fputs("AICPSNP1 this is not sealed", f);
        fclose(f);
    }
    make_cfg(&cfg, "inproc://dist-3-rep", SECRET, dir);
    GW_PASS(edge_hublink_new(&cfg, snap_cb, &sink, &link));
    GW_PASS(edge_hublink_start(link));
    assert_true(wait_stats(link, st_errors, 2, WAIT_MS));
    edge_hublink_stop(link);
    edge_hublink_free(link);
    uv_mutex_lock(&mu);
    assert_int_equal(sink.count, 0);
    uv_mutex_unlock(&mu);

    /* A good copy is served at once, marked as from disk. */
    make_full(&hub.full, 12, keys, 1);
    edge_snapshot_file_key(SECRET, key);
    GW_PASS(edge_snapshot_file_write(p, key, &hub.full));
    GW_PASS(edge_hublink_new(&cfg, snap_cb, &sink, &link));
    GW_PASS(edge_hublink_start(link));
    struct ver_wait v12 = {&sink, 12};
    assert_true(wait_for(pred_version, &v12, WAIT_MS));
    assert_true(has_key(&sink, "k-disk"));
    edge_hublink_get_stats(link, &st);
    assert_int_equal(st.snapshot_source, EDGE_SNAPSHOT_DISK);

    /* The hub comes back at version 12 with a change to 13. */
    hub.cur = 12;
    hub.floor = 12;
    hub_start(&hub, "dist-3");
    hub_change(&hub, GW_CHANGE_KEY, 2, "k-after", 1);
    assert_true(wait_stats(link, st_source_hub, 13, WAIT_MS));
    assert_true(has_key(&sink, "k-after"));
    assert_true(has_key(&sink, "k-disk"));
    edge_hublink_stop(link);
    edge_hublink_free(link);
    hub_stop(&hub);
    edge_snapshot_unref(sink.last);
    edge_config_free(&cfg);
    remove_data_dir(dir);
}

static void
put_record(struct gw_usage_record *r, int i)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->request_id, sizeof(r->request_id), "jr-%d", i);
    r->key_id = 1;
    r->input_tokens = 500 + (uint64_t)i;
}

/* A journal as a crashed edge left it: 5 records, batch `seq` = 3 oldest. */
static void
crashed_journal(const char *dir, uint64_t seq)
{
    struct edge_journal *j;
    struct edge_journal_replay r;

    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_BATCH, 1 << 20, &j, &r));
    edge_journal_replay_fini(&r);
    for (int i = 0; i < 5; i++) {
        struct gw_usage_record x;

        put_record(&x, i);
        GW_PASS(edge_journal_append(j, &x));
    }
    GW_PASS(edge_journal_batch(j, seq, 3));
    edge_journal_close(j);
}

static void
test_journal_resend_and_duplicates(void **state)
{
    static const char *const keys[] = {"k-one"};
    struct dist_hub hub;
    struct snap_sink sink = {NULL, 0};
    struct edge_config cfg;
    struct edge_hublink *link = NULL;
    struct edge_journal *j;
    struct edge_journal_replay r;
    char dir[64];

    (void)state;
    /* 1. The hub never saw batch 8: it comes again as seq 8, same records. */
    memset(&hub, 0, sizeof(hub));
    make_full(&hub.full, 4, keys, 1);
    hub.cur = 4;
    hub.applied_seq = 7;
    hub_start(&hub, "dist-4");
    make_data_dir(dir, sizeof(dir));
    crashed_journal(dir, 8);
    make_cfg(&cfg, hub.rep_url, SECRET, dir);
    GW_PASS(edge_hublink_new(&cfg, snap_cb, &sink, &link));
    GW_PASS(edge_hublink_start(link));
    struct size_wait five = {&hub.n_recs, 5};
    assert_true(wait_for(pred_size, &five, WAIT_MS));
    assert_true(wait_stats(link, st_acked, 5, WAIT_MS));
    edge_hublink_stop(link);
    edge_hublink_free(link);
    uv_mutex_lock(&mu);
    assert_int_equal(hub.seqs[0], 8);
    assert_int_equal(hub.seqs[1], 9);
    for (int i = 0; i < 5; i++) {
        char want[16];
        snprintf(want, sizeof(want), "jr-%d", i);
        assert_string_equal(hub.recs[i].request_id, want);
    }
    uv_mutex_unlock(&mu);
    /* Everything acknowledged: the journal is empty again. */
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_BATCH, 1 << 20, &j, &r));
    assert_int_equal(r.n_records, 0);
    edge_journal_replay_fini(&r);
    edge_journal_close(j);
    hub_stop(&hub);

    /* 2. The hub applied batch 8 before the crash: it is not sent again. */
    memset(&hub, 0, sizeof(hub));
    make_full(&hub.full, 4, keys, 1);
    hub.cur = 4;
    hub.applied_seq = 8;
    hub_start(&hub, "dist-5");
    crashed_journal(dir, 8);
    free(cfg.hub);
    cfg.hub = gw_xstrdup(hub.rep_url);
    GW_PASS(edge_hublink_new(&cfg, snap_cb, &sink, &link));
    GW_PASS(edge_hublink_start(link));
    struct size_wait two = {&hub.n_recs, 2};
    assert_true(wait_for(pred_size, &two, WAIT_MS));
    assert_true(wait_stats(link, st_acked, 2, WAIT_MS));
    edge_hublink_stop(link);
    edge_hublink_free(link);
    uv_mutex_lock(&mu);
    assert_int_equal(hub.n_recs, 2);
    assert_int_equal(hub.seqs[0], 9);
    assert_string_equal(hub.recs[0].request_id, "jr-3");
    assert_string_equal(hub.recs[1].request_id, "jr-4");
    for (size_t i = 0; i < hub.n_seqs; i++)
        assert_true(hub.seqs[i] != 8);
    uv_mutex_unlock(&mu);
    hub_stop(&hub);
    edge_snapshot_unref(sink.last);
    edge_config_free(&cfg);
    remove_data_dir(dir);
}

static int
group_setup(void **state)
{
    (void)state;
    uv_mutex_init(&mu);
    uv_cond_init(&cv);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enrol_push_gap_revoke),
        cmocka_unit_test(test_wrong_secret_refused),
        cmocka_unit_test(test_start_from_disk),
        cmocka_unit_test(test_journal_resend_and_duplicates),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
