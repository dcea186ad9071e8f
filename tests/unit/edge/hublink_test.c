/* SPDX-License-Identifier: Apache-2.0 */
/* Hub link against a real REP socket playing the hub (inproc and tcp on
 * loopback): Hello, snapshot delivery, usage batches numbered from the
 * hub's last seq, a lost ack answered by a resend with the same seq, an
 * Error reply followed by a new Hello, a hub that appears late, the flush on
 * stop, the bounded stop without a hub, and the queue limit. */
#include "gw_test.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "edge_config.h"
#include "gw_buf.h"
#include "gw_crypto.h"
#include "gw_wire.h"
#include "hublink.h"
#include "snapshot.h"

#define WAIT_MS 10000
#define MAX_SEQS 256
#define MAX_RECS 1024

/* One lock and condition for everything the tests wait on. */
static uv_mutex_t mu;
static uv_cond_t cv;

struct fake_hub {
    nng_socket sock;
    nng_listener listener;
    uv_thread_t thr;
    int running, stop;
    /* behaviour */
    uint64_t applied_seq; /* also the HelloReply.last_usage_seq */
    uint64_t snap_version;
    int drop_acks;     /* apply a batch but lose the reply, this many times */
    int error_batches; /* answer Error to this many batches */
    /* observations */
    int hellos, fetches;
    char hello_edge[64], hello_region[64], hello_version[32];
    uint64_t last_have;
    uint64_t seqs[MAX_SEQS];
    int dup[MAX_SEQS];
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
hub_fill_snapshot(struct fake_hub *h, struct gw_msg *out, uint64_t have)
{
    struct gw_wire_snapshot *w = &out->u.snapshot;

    out->type = GW_MSG_SNAPSHOT;
    w->version = h->snap_version;
    if (have >= h->snap_version) {
        w->unchanged = 1;
        return;
    }
    w->n_keys = 1;
    w->keys = gw_xcalloc(1, sizeof(*w->keys));
    w->keys[0].id = 5;
    gw_sha256("aicp_hubtest", strlen("aicp_hubtest"), w->keys[0].key_hash);
    w->keys[0].group_id = 1;
    w->keys[0].enabled = 1;
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

/* Handles one request under the lock; returns 0 when no reply is sent. */
static int
hub_handle(struct fake_hub *h, const struct gw_msg *in, struct gw_msg *out)
{
    switch (in->type) {
    case GW_MSG_HELLO:
        h->hellos++;
        snprintf(h->hello_edge, sizeof(h->hello_edge), "%s", in->u.hello.edge_id);
        snprintf(h->hello_region, sizeof(h->hello_region), "%s",
                 in->u.hello.region ? in->u.hello.region : "");
        snprintf(h->hello_version, sizeof(h->hello_version), "%s",
                 in->u.hello.version ? in->u.hello.version : "");
        out->type = GW_MSG_HELLO_REPLY;
        out->u.hello_reply.config_version = h->snap_version;
        out->u.hello_reply.last_usage_seq = h->applied_seq;
        return 1;
    case GW_MSG_FETCH_SNAPSHOT:
        h->fetches++;
        h->last_have = in->u.fetch_snapshot.have_version;
        hub_fill_snapshot(h, out, in->u.fetch_snapshot.have_version);
        return 1;
    case GW_MSG_USAGE_BATCH: {
        const struct gw_wire_usage_batch *b = &in->u.usage_batch;
        int dup = b->seq <= h->applied_seq;

        assert_string_equal(b->edge_id, "edge-a");
        if (h->n_seqs < MAX_SEQS) {
            h->seqs[h->n_seqs] = b->seq;
            h->dup[h->n_seqs] = dup;
            h->n_seqs++;
        }
        if (h->error_batches > 0) {
            h->error_batches--;
            gw_msg_set_error(out, GW_EINVAL, "say hello first");
            return 1;
        }
        if (!dup && b->seq != h->applied_seq + 1) {
            gw_msg_set_error(out, GW_EPROTO, "seq gap");
            return 1;
        }
        if (!dup) {
            for (size_t i = 0; i < b->n_records && h->n_recs < MAX_RECS; i++)
                h->recs[h->n_recs++] = b->records[i];
            h->applied_seq = b->seq;
        }
        if (h->drop_acks > 0) {
            h->drop_acks--;
            return 0;
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
    struct fake_hub *h = arg;

    for (;;) {
        char *buf = NULL;
        size_t len = 0;
        struct gw_msg in, out;
        struct gw_buf enc = GW_BUF_INIT;
        int rv, reply;

        uv_mutex_lock(&mu);
        int stop = h->stop;
        uv_mutex_unlock(&mu);
        if (stop)
            break;
        rv = nng_recv(h->sock, &buf, &len, NNG_FLAG_ALLOC);
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
        reply = hub_handle(h, &in, &out);
        uv_cond_broadcast(&cv);
        uv_mutex_unlock(&mu);
        if (reply) {
            assert_int_equal(gw_wire_encode(&out, &enc), GW_OK);
            (void)nng_send(h->sock, enc.data, enc.len, 0);
        }
        gw_buf_fini(&enc);
        gw_msg_fini(&in);
        gw_msg_fini(&out);
    }
}

/* Listens on url ("tcp://127.0.0.1:0" gets its real port back in url_out). */
static void
hub_start(struct fake_hub *h, const char *url, char *url_out, size_t url_out_len)
{
    assert_int_equal(nng_rep0_open(&h->sock), 0);
    nng_socket_set_ms(h->sock, NNG_OPT_RECVTIMEO, 50);
    assert_int_equal(nng_listen(h->sock, url, &h->listener, 0), 0);
    if (url_out) {
        int port = 0;
        if (strncmp(url, "tcp://", 6) == 0) {
            assert_int_equal(nng_listener_get_int(h->listener, NNG_OPT_TCP_BOUND_PORT, &port), 0);
            snprintf(url_out, url_out_len, "tcp://127.0.0.1:%d", port);
        } else {
            snprintf(url_out, url_out_len, "%s", url);
        }
    }
    assert_int_equal(uv_thread_create(&h->thr, hub_thread, h), 0);
    h->running = 1;
}

static void
hub_stop(struct fake_hub *h)
{
    if (!h->running)
        return;
    uv_mutex_lock(&mu);
    h->stop = 1;
    uv_mutex_unlock(&mu);
    uv_thread_join(&h->thr);
    nng_close(h->sock);
    h->running = 0;
}

typedef int (*pred_fn)(void *arg);

/* Waits (under mu) until pred holds or the deadline passes. */
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

/* The ack is counted on the link thread just after the hub replied, so
 * this waits in short slices of the shared condition, re-reading the
 * link's counters each time, until the deadline. */
static int
wait_acked(struct edge_hublink *link, uint64_t n)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_MS * 1000000u;
    struct edge_hublink_stats st;

    for (;;) {
        edge_hublink_get_stats(link, &st);
        if (st.batches_acked >= n)
            return 1;
        if (uv_hrtime() >= deadline)
            return 0;
        uv_mutex_lock(&mu);
        (void)uv_cond_timedwait(&cv, &mu, 10 * 1000000u);
        uv_mutex_unlock(&mu);
    }
}

struct count_wait {
    const int *counter;
    int want;
};

static int
pred_count(void *arg)
{
    struct count_wait *w = arg;
    return *w->counter >= w->want;
}

struct size_wait {
    const size_t *counter;
    size_t want;
};

static int
pred_size(void *arg)
{
    struct size_wait *w = arg;
    return *w->counter >= w->want;
}

static int
pred_fetch_have(void *arg)
{
    struct fake_hub *h = arg;
    return h->fetches >= 2 && h->last_have == h->snap_version;
}

static void
make_cfg(struct edge_config *cfg, const char *url)
{
    edge_config_defaults(cfg);
    free(cfg->hub);
    cfg->hub = gw_xstrdup(url);
    free(cfg->edge_id);
    cfg->edge_id = gw_xstrdup("edge-a");
    free(cfg->region);
    cfg->region = gw_xstrdup("eu-test");
    cfg->poll_interval_ms = 30;
    cfg->usage_flush_ms = 30;
    cfg->hub_timeout_ms = 300;
    cfg->stop_flush_ms = 3000;
}

static void
make_record(struct gw_usage_record *r, int i)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->request_id, sizeof(r->request_id), "req-%d", i);
    r->key_id = 5;
    r->account_id = 9;
    snprintf(r->model, sizeof(r->model), "claude-test");
    snprintf(r->dialect, sizeof(r->dialect), "anthropic");
    r->input_tokens = 100 + (uint64_t)i;
    r->output_tokens = 10 + (uint64_t)i;
    r->cache_read_tokens = 3;
    r->status = 200;
    r->latency_ms = 7;
    r->time_ms = 1700000000000 + i;
    r->partial = i % 2;
}

static void
test_hello_snapshot_usage_resend(void **state)
{
    struct fake_hub hub;
    struct snap_sink sink = {NULL, 0};
    struct edge_config cfg;
    struct edge_hublink *link = NULL;
    struct edge_hublink_stats st;
    struct gw_usage_record rec;
    const struct edge_key *k;

    (void)state;
    memset(&hub, 0, sizeof(hub));
    hub.applied_seq = 41;
    hub.snap_version = 7;
    hub_start(&hub, "inproc://hublink-test-1", NULL, 0);
    make_cfg(&cfg, "inproc://hublink-test-1");
    GW_PASS(edge_hublink_new(&cfg, snap_cb, &sink, &link));
    GW_PASS(edge_hublink_start(link));

    struct count_wait snaps = {&sink.count, 1};
    assert_true(wait_for(pred_count, &snaps, WAIT_MS));
    uv_mutex_lock(&mu);
    assert_int_equal(hub.hellos, 1);
    assert_string_equal(hub.hello_edge, "edge-a");
    assert_string_equal(hub.hello_region, "eu-test");
    assert_string_equal(hub.hello_version, EDGE_VERSION);
    assert_int_equal(edge_snapshot_version(sink.last), 7);
    assert_int_equal(edge_snapshot_lookup(sink.last, "aicp_hubtest", 12, 0, &k), EDGE_KEY_OK);
    assert_string_equal(edge_snapshot_account(sink.last, 9)->credential, "sk-account");
    uv_mutex_unlock(&mu);

    /* Later polls carry the version we have, and "unchanged" replies do not
     * produce new snapshots. */
    assert_true(wait_for(pred_fetch_have, &hub, WAIT_MS));
    uv_mutex_lock(&mu);
    assert_int_equal(sink.count, 1);
    uv_mutex_unlock(&mu);

    for (int i = 0; i < 3; i++) {
        make_record(&rec, i);
        GW_PASS(edge_hublink_push_usage(link, &rec));
    }
    struct size_wait recs3 = {&hub.n_recs, 3};
    assert_true(wait_for(pred_size, &recs3, WAIT_MS));
    uv_mutex_lock(&mu);
    /* The first batch continues from the hub's last applied seq. The three
     * records may have gone out in one or several batches. */
    assert_int_equal(hub.seqs[0], 42);
    uint64_t batches = hub.applied_seq - 41;
    for (size_t i = 0; i < hub.n_recs; i++) {
        struct gw_usage_record want;
        make_record(&want, (int)i);
        assert_string_equal(hub.recs[i].request_id, want.request_id);
        assert_int_equal(hub.recs[i].input_tokens, want.input_tokens);
        assert_int_equal(hub.recs[i].output_tokens, want.output_tokens);
        assert_int_equal(hub.recs[i].cache_read_tokens, 3);
        assert_int_equal(hub.recs[i].partial, want.partial);
        assert_int_equal(hub.recs[i].time_ms, want.time_ms);
        assert_string_equal(hub.recs[i].model, "claude-test");
    }
    uv_mutex_unlock(&mu);
    assert_true(wait_acked(link, batches));

    uv_mutex_lock(&mu);
    size_t seqs_before = hub.n_seqs;
    uint64_t next = hub.applied_seq + 1;
    /* The next ack is lost: the hub applies the batch but never answers. */
    hub.drop_acks = 1;
    uv_mutex_unlock(&mu);

    make_record(&rec, 3);
    GW_PASS(edge_hublink_push_usage(link, &rec));
    assert_true(wait_acked(link, batches + 1));
    uv_mutex_lock(&mu);
    assert_int_equal(hub.n_seqs, seqs_before + 2);
    assert_int_equal(hub.seqs[seqs_before], next);
    assert_int_equal(hub.dup[seqs_before], 0);
    assert_int_equal(hub.seqs[seqs_before + 1], next); /* same seq resent */
    assert_int_equal(hub.dup[seqs_before + 1], 1);
    assert_int_equal(hub.n_recs, 4); /* applied once */
    assert_string_equal(hub.recs[3].request_id, "req-3");
    uv_mutex_unlock(&mu);

    edge_hublink_get_stats(link, &st);
    assert_int_equal(st.records_acked, 4);
    assert_int_equal(st.batches_acked, batches + 1);
    assert_int_equal(st.next_seq, next + 1);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.snapshots, 1);
    assert_int_equal(st.snapshot_version, 7);

    edge_hublink_free(link);
    hub_stop(&hub);
    edge_snapshot_unref(sink.last);
    edge_config_free(&cfg);
}

static void
test_error_reply_rehello(void **state)
{
    struct fake_hub hub;
    struct snap_sink sink = {NULL, 0};
    struct edge_config cfg;
    struct edge_hublink *link = NULL;
    struct gw_usage_record rec;
    char url[64];

    (void)state;
    memset(&hub, 0, sizeof(hub));
    hub.applied_seq = 0;
    hub.snap_version = 1;
    hub.error_batches = 1;
    /* Over TCP on loopback this time. */
    hub_start(&hub, "tcp://127.0.0.1:0", url, sizeof(url));
    make_cfg(&cfg, url);
    GW_PASS(edge_hublink_new(&cfg, snap_cb, &sink, &link));
    GW_PASS(edge_hublink_start(link));
    make_record(&rec, 0);
    GW_PASS(edge_hublink_push_usage(link, &rec));

    struct size_wait recs1 = {&hub.n_recs, 1};
    assert_true(wait_for(pred_size, &recs1, WAIT_MS));
    uv_mutex_lock(&mu);
    /* Error -> new Hello -> same batch again, numbered from the hub's seq. */
    assert_true(hub.hellos >= 2);
    assert_true(hub.n_seqs >= 2);
    assert_int_equal(hub.seqs[0], 1);
    assert_int_equal(hub.seqs[hub.n_seqs - 1], 1);
    assert_int_equal(hub.applied_seq, 1);
    uv_mutex_unlock(&mu);
    assert_true(wait_acked(link, 1));

    edge_hublink_free(link);
    hub_stop(&hub);
    edge_snapshot_unref(sink.last);
    edge_config_free(&cfg);
}

static void
test_late_hub_and_stop_flush(void **state)
{
    struct fake_hub hub;
    struct snap_sink sink = {NULL, 0};
    struct edge_config cfg;
    struct edge_hublink *link = NULL;
    struct gw_usage_record rec;

    (void)state;
    memset(&hub, 0, sizeof(hub));
    hub.applied_seq = 100;
    hub.snap_version = 3;
    make_cfg(&cfg, "inproc://hublink-test-late");
    cfg.poll_interval_ms = 60000; /* only the first fetch */
    cfg.usage_flush_ms = 60000;   /* deliveries must come from wake-ups */
    cfg.usage_batch_max = 2;      /* a full batch wakes the link at once */
    GW_PASS(edge_hublink_new(&cfg, snap_cb, &sink, &link));
    /* The hub is not there yet: the dial keeps retrying in the background. */
    GW_PASS(edge_hublink_start(link));
    for (int i = 0; i < 2; i++) {
        make_record(&rec, i);
        GW_PASS(edge_hublink_push_usage(link, &rec));
    }
    hub_start(&hub, "inproc://hublink-test-late", NULL, 0);
    struct size_wait recs2 = {&hub.n_recs, 2};
    assert_true(wait_for(pred_size, &recs2, WAIT_MS));
    assert_true(wait_acked(link, 1));

    /* Records pushed right before stop are delivered by the stop itself. */
    for (int i = 2; i < 7; i++) {
        make_record(&rec, i);
        GW_PASS(edge_hublink_push_usage(link, &rec));
    }
    edge_hublink_stop(link);
    uv_mutex_lock(&mu);
    assert_int_equal(hub.n_recs, 7);
    assert_int_equal(hub.applied_seq > 100, 1);
    assert_string_equal(hub.recs[6].request_id, "req-6");
    uv_mutex_unlock(&mu);
    edge_hublink_stop(link); /* twice is fine */

    edge_hublink_free(link);
    hub_stop(&hub);
    edge_snapshot_unref(sink.last);
    edge_config_free(&cfg);
}

static void
test_queue_limit_and_bounded_stop(void **state)
{
    struct snap_sink sink = {NULL, 0};
    struct edge_config cfg;
    struct edge_hublink *link = NULL;
    struct edge_hublink_stats st;
    struct gw_usage_record rec;
    uint64_t t0;

    (void)state;
    make_cfg(&cfg, "inproc://hublink-test-nobody");
    cfg.usage_queue_max = 2;
    cfg.stop_flush_ms = 200;
    GW_PASS(edge_hublink_new(&cfg, snap_cb, &sink, &link));
    make_record(&rec, 0);
    GW_PASS(edge_hublink_push_usage(link, &rec));
    GW_PASS(edge_hublink_push_usage(link, &rec));
    GW_FAIL(edge_hublink_push_usage(link, &rec), GW_EQUOTA);
    edge_hublink_get_stats(link, &st);
    assert_int_equal(st.records_dropped, 1);
    assert_int_equal(st.queued, 2);

    GW_PASS(edge_hublink_start(link));
    t0 = uv_hrtime();
    edge_hublink_stop(link);
    /* stop_flush_ms plus the in-flight call's margin, not the hub timeout
     * times the retries. */
    assert_true(uv_hrtime() - t0 < 2000u * 1000000u);
    edge_hublink_get_stats(link, &st);
    assert_int_equal(st.hellos_ok, 0);
    assert_int_equal(st.batches_acked, 0);
    edge_hublink_free(link);
    assert_null(sink.last);
    edge_config_free(&cfg);
}

static void
test_new_rejects(void **state)
{
    struct edge_config cfg;
    struct snap_sink sink = {NULL, 0};
    struct edge_hublink *link = NULL;

    (void)state;
    make_cfg(&cfg, "");
    GW_FAIL(edge_hublink_new(&cfg, snap_cb, &sink, &link), GW_EINVAL);
    assert_null(link);
    free(cfg.hub);
    cfg.hub = gw_xstrdup("nosuchscheme://x");
    GW_PASS(edge_hublink_new(&cfg, snap_cb, &sink, &link));
    GW_FAIL(edge_hublink_start(link), GW_EINVAL);
    edge_hublink_free(link);
    edge_config_free(&cfg);
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
        cmocka_unit_test(test_hello_snapshot_usage_resend),
        cmocka_unit_test(test_error_reply_rehello),
        cmocka_unit_test(test_late_hub_and_stop_flush),
        cmocka_unit_test(test_queue_limit_and_bounded_stop),
        cmocka_unit_test(test_new_rejects),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
