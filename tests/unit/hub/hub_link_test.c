/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the hub end of the edge link: a real sqlite::memory: store, the
 * real link listening on tcp://127.0.0.1:0 and inproc://, and real NNG REQ
 * sockets playing the edge. Every receive has a deadline (RECVTIMEO). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "gw_crypto.h"
#include "gw_test.h"
#include "gw_wire.h"
#include "hub_link.h"
#include "store.h"

#define DEADLINE_MS 10000
#define SECRET "sk-ant-api03-test-secret-0123456789"

struct fx {
    struct hub_store *st;
    struct hub_link *link;
    uint8_t master[GW_AES_KEY_LEN];
    char tcp_url[64];
    char inproc_url[64];
    nng_socket req;
    uint64_t group_id;
    uint64_t acct_ok;
    uint64_t acct_bad;
    uint64_t key_id;
    uint8_t key_hash[GW_SHA256_LEN];
};

/* ------------------------------------------------ helpers */

static void
req_open(nng_socket *s, const char *url)
{
    assert_int_equal(nng_req0_open(s), 0);
    assert_int_equal(nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, DEADLINE_MS), 0);
    assert_int_equal(nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, DEADLINE_MS), 0);
    int rv = nng_dial(*s, url, NULL, 0);
    if (rv != 0)
        fail_msg("dial %s: %s", url, nng_strerror(rv));
}

/* Sends raw bytes and decodes the reply. */
static void
rpc_raw(nng_socket s, const void *data, size_t len, struct gw_msg *reply)
{
    void *buf = NULL;
    size_t n = 0;
    int rv;

    /* nng_send copies from a plain buffer; a zero-length frame is fine. */
    rv = nng_send(s, (void *)(uintptr_t)(len ? data : ""), len, 0);
    if (rv != 0)
        fail_msg("send: %s", nng_strerror(rv));
    rv = nng_recv(s, &buf, &n, NNG_FLAG_ALLOC);
    if (rv != 0)
        fail_msg("recv: %s", nng_strerror(rv));
    GW_PASS(gw_wire_decode(buf, n, HUB_LINK_RECV_MAX, reply));
    nng_free(buf, n);
}

static void
rpc(nng_socket s, const struct gw_msg *req, struct gw_msg *reply)
{
    struct gw_buf b = GW_BUF_INIT;
    GW_PASS(gw_wire_encode(req, &b));
    rpc_raw(s, b.data, b.len, reply);
    gw_buf_fini(&b);
}

static void
hello(nng_socket s, const char *edge_id, struct gw_msg *reply)
{
    struct gw_msg m = {0};
    m.type = GW_MSG_HELLO;
    m.u.hello.edge_id = (char *)(uintptr_t)edge_id;
    m.u.hello.region = (char *)"test-region";
    m.u.hello.version = (char *)"0.1.0-test";
    m.u.hello.snapshot_version = 0;
    rpc(s, &m, reply);
}

static void
fetch(nng_socket s, uint64_t have, struct gw_msg *reply)
{
    struct gw_msg m = {0};
    m.type = GW_MSG_FETCH_SNAPSHOT;
    m.u.fetch_snapshot.edge_id = (char *)"edge-1";
    m.u.fetch_snapshot.have_version = have;
    rpc(s, &m, reply);
    assert_int_equal(reply->type, GW_MSG_SNAPSHOT);
}

static uint64_t
store_version(struct fx *f)
{
    uint64_t v = 0;
    GW_PASS(hub_store_config_version(f->st, &v));
    return v;
}

static size_t
usage_rows(struct fx *f, struct hub_usage_row **rows)
{
    struct hub_usage_filter filt = {0, 1000, 0};
    size_t n = 0;
    *rows = NULL;
    GW_PASS(hub_store_usage_list(f->st, &filt, rows, &n));
    return n;
}

static void
seal(const uint8_t key[GW_AES_KEY_LEN], const char *plain, struct gw_buf *out)
{
    GW_PASS(gw_aead_seal(key, "account-credential", strlen("account-credential"), plain,
                         strlen(plain), out));
}

/* ------------------------------------------------ fixture */

static int
setup(void **state)
{
    static int instance;
    struct fx *f = calloc(1, sizeof(*f));
    struct gw_buf err = GW_BUF_INIT, sealed = GW_BUF_INIT, sealed_bad = GW_BUF_INIT;
    uint8_t other[GW_AES_KEY_LEN];
    struct hub_group g;
    struct hub_account a;
    struct hub_key k;
    uint16_t port = 0;
    gw_err rv;

    rv = hub_store_open("sqlite::memory:", &f->st, &err);
    if (rv != GW_OK)
        fail_msg("store open: %s: %s", gw_strerror(rv), err.data ? err.data : "");
    gw_buf_fini(&err);

    GW_PASS(gw_random_bytes(f->master, sizeof(f->master)));
    GW_PASS(gw_random_bytes(other, sizeof(other)));
    GW_PASS(hub_store_group_create(f->st, "team-a", &g));
    f->group_id = g.id;

    seal(f->master, SECRET, &sealed);
    struct hub_account_new an = {.name = "primary",
                                 .kind = "anthropic",
                                 .base_url = "https://api.anthropic.com",
                                 .credential_sealed = (const uint8_t *)sealed.data,
                                 .credential_sealed_len = sealed.len,
                                 .priority = 1,
                                 .weight = 10};
    GW_PASS(hub_store_account_create(f->st, &an, &a));
    f->acct_ok = a.id;
    /* Sealed under another master key: the hub cannot open it. */
    seal(other, "sk-ant-unreadable", &sealed_bad);
    struct hub_account_new bad = {.name = "broken",
                                  .kind = "anthropic",
                                  .base_url = "https://api.anthropic.com",
                                  .credential_sealed = (const uint8_t *)sealed_bad.data,
                                  .credential_sealed_len = sealed_bad.len,
                                  .priority = 2,
                                  .weight = 5};
    GW_PASS(hub_store_account_create(f->st, &bad, &a));
    f->acct_bad = a.id;
    gw_buf_fini(&sealed);
    gw_buf_fini(&sealed_bad);
    GW_PASS(hub_store_binding_create(f->st, f->group_id, f->acct_ok));

    struct hub_key_new kn;
    memset(&kn, 0, sizeof(kn));
    kn.group_id = f->group_id;
    kn.name = "alice";
    gw_sha256("aicp_test_key", strlen("aicp_test_key"), kn.key_hash);
    memcpy(f->key_hash, kn.key_hash, sizeof(f->key_hash));
    kn.prefix = "aicp_test";
    GW_PASS(hub_store_key_create(f->st, &kn, &k));
    f->key_id = k.id;

    GW_PASS(hub_link_new(f->st, f->master, &f->link));
    GW_PASS(hub_link_listen_port(f->link, "tcp://127.0.0.1:0", &port));
    assert_true(port != 0);
    snprintf(f->tcp_url, sizeof(f->tcp_url), "tcp://127.0.0.1:%u", (unsigned)port);
    snprintf(f->inproc_url, sizeof(f->inproc_url), "inproc://aicarpool-link-test-%d", instance++);
    GW_PASS(hub_link_listen(f->link, f->inproc_url));
    req_open(&f->req, f->tcp_url);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    nng_close(f->req);
    hub_link_free(f->link);
    hub_store_close(f->st);
    free(f);
    return 0;
}

/* ------------------------------------------------ tests */

static void
test_hello(void **state)
{
    struct fx *f = *state;
    struct gw_msg r;
    nng_socket in;

    hello(f->req, "edge-1", &r);
    assert_int_equal(r.type, GW_MSG_HELLO_REPLY);
    assert_true(r.u.hello_reply.config_version == store_version(f));
    assert_true(r.u.hello_reply.config_version > 0);
    assert_int_equal(r.u.hello_reply.last_usage_seq, 0);
    gw_msg_fini(&r);

    /* The in-process edge speaks the same protocol over inproc://. */
    req_open(&in, f->inproc_url);
    hello(in, "hub-local", &r);
    assert_int_equal(r.type, GW_MSG_HELLO_REPLY);
    assert_true(r.u.hello_reply.config_version == store_version(f));
    gw_msg_fini(&r);
    nng_close(in);
}

static void
test_snapshot(void **state)
{
    struct fx *f = *state;
    struct gw_msg r;
    const struct gw_wire_snapshot *s;
    uint64_t version = store_version(f);
    size_t i;
    int seen_ok = 0, seen_bad = 0;

    fetch(f->req, 0, &r);
    s = &r.u.snapshot;
    assert_int_equal(s->unchanged, 0);
    assert_true(s->version == version);
    assert_int_equal(s->n_keys, 1);
    assert_int_equal(s->keys[0].id, f->key_id);
    assert_memory_equal(s->keys[0].key_hash, f->key_hash, GW_SHA256_LEN);
    assert_int_equal(s->keys[0].group_id, f->group_id);
    assert_int_equal(s->keys[0].enabled, 1);
    assert_int_equal(s->n_groups, 1);
    assert_string_equal(s->groups[0].name, "team-a");
    assert_int_equal(s->n_bindings, 1);
    assert_int_equal(s->bindings[0].group_id, f->group_id);
    assert_int_equal(s->bindings[0].account_id, f->acct_ok);
    assert_int_equal(s->n_accounts, 2);
    for (i = 0; i < s->n_accounts; i++) {
        const struct gw_wire_account *a = &s->accounts[i];
        if (a->id == f->acct_ok) {
            seen_ok = 1;
            /* Opened with the master key: the edge gets the plaintext. */
            assert_int_equal(a->credential_len, strlen(SECRET));
            assert_memory_equal(a->credential, SECRET, strlen(SECRET));
            assert_int_equal(a->enabled, 1);
            assert_string_equal(a->kind, "anthropic");
            assert_string_equal(a->base_url, "https://api.anthropic.com");
            assert_int_equal(a->priority, 1);
            assert_int_equal(a->weight, 10);
        } else if (a->id == f->acct_bad) {
            seen_bad = 1;
            assert_null(a->credential);
            assert_int_equal(a->credential_len, 0);
            assert_int_equal(a->enabled, 0);
        }
    }
    assert_true(seen_ok && seen_bad);
    gw_msg_fini(&r);

    /* Up to date: "unchanged", nothing else. */
    fetch(f->req, version, &r);
    assert_int_equal(r.u.snapshot.unchanged, 1);
    assert_true(r.u.snapshot.version == version);
    assert_int_equal(r.u.snapshot.n_keys, 0);
    assert_int_equal(r.u.snapshot.n_accounts, 0);
    gw_msg_fini(&r);

    /* A change makes the edge's version stale again. */
    struct hub_group g;
    GW_PASS(hub_store_group_create(f->st, "team-b", &g));
    assert_true(store_version(f) > version);
    fetch(f->req, version, &r);
    assert_int_equal(r.u.snapshot.unchanged, 0);
    assert_true(r.u.snapshot.version == store_version(f));
    assert_int_equal(r.u.snapshot.n_groups, 2);
    gw_msg_fini(&r);
}

static void
fill_batch(struct gw_msg *m, const char *edge_id, uint64_t seq, struct gw_usage_record *recs,
           size_t n)
{
    memset(m, 0, sizeof(*m));
    m->type = GW_MSG_USAGE_BATCH;
    m->u.usage_batch.edge_id = (char *)(uintptr_t)edge_id;
    m->u.usage_batch.seq = seq;
    m->u.usage_batch.records = recs;
    m->u.usage_batch.n_records = n;
}

static void
make_record(struct gw_usage_record *r, const char *reqid, uint64_t key_id, uint64_t acct,
            const char *model)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->request_id, sizeof(r->request_id), "%s", reqid);
    snprintf(r->model, sizeof(r->model), "%s", model);
    snprintf(r->dialect, sizeof(r->dialect), "anthropic");
    r->key_id = key_id;
    r->account_id = acct;
    r->status = 200;
    r->latency_ms = 321;
    r->time_ms = 1760000000000;
}

static const struct hub_usage_row *
find_row(const struct hub_usage_row *rows, size_t n, const char *reqid)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].rec.request_id, reqid) == 0)
            return &rows[i];
    fail_msg("no usage row %s", reqid);
    return NULL;
}

static void
test_usage_batch(void **state)
{
    struct fx *f = *state;
    struct gw_usage_record recs[3];
    struct hub_usage_row *rows;
    struct gw_msg m, r;
    size_t n;

    /* Seeded prices: claude-sonnet-4-5 = 3 / 15 / 0.30 / 3.75 / 6 USD per
     * Mtok, fake- = 1 USD per Mtok input. */
    make_record(&recs[0], "req-a", f->key_id, f->acct_ok, "claude-sonnet-4-5-20250929");
    recs[0].input_tokens = 1000;
    recs[0].output_tokens = 500;
    recs[0].cache_read_tokens = 20000;
    recs[0].cache_write_5m_tokens = 4000;
    recs[0].cache_write_1h_tokens = 1000;
    recs[0].reasoning_tokens = 200;
    make_record(&recs[1], "req-b", f->key_id, f->acct_ok, "fake-model-1");
    recs[1].input_tokens = 1000000;
    make_record(&recs[2], "req-c", f->key_id, f->acct_ok, "mystery-model");
    recs[2].input_tokens = 42;
    fill_batch(&m, "edge-1", 1, recs, 3);

    rpc(f->req, &m, &r);
    assert_int_equal(r.type, GW_MSG_USAGE_ACK);
    assert_int_equal(r.u.usage_ack.seq, 1);
    assert_int_equal(r.u.usage_ack.duplicate, 0);
    gw_msg_fini(&r);

    n = usage_rows(f, &rows);
    assert_int_equal(n, 3);
    assert_int_equal(find_row(rows, n, "req-a")->cost_micros, 37500);
    assert_int_equal(find_row(rows, n, "req-b")->cost_micros, 1000000);
    assert_int_equal(find_row(rows, n, "req-c")->cost_micros, -1); /* flagged */
    assert_string_equal(find_row(rows, n, "req-a")->edge_id, "edge-1");
    assert_int_equal(find_row(rows, n, "req-a")->rec.cache_write_1h_tokens, 1000);
    free(rows);

    /* NNG REQ may resend: the same batch again changes nothing. */
    rpc(f->req, &m, &r);
    assert_int_equal(r.type, GW_MSG_USAGE_ACK);
    assert_int_equal(r.u.usage_ack.seq, 1);
    assert_int_equal(r.u.usage_ack.duplicate, 1);
    gw_msg_fini(&r);
    n = usage_rows(f, &rows);
    assert_int_equal(n, 3);
    free(rows);

    /* The edge learns where to resume from Hello. */
    hello(f->req, "edge-1", &r);
    assert_int_equal(r.u.hello_reply.last_usage_seq, 1);
    gw_msg_fini(&r);
    hello(f->req, "edge-2", &r);
    assert_int_equal(r.u.hello_reply.last_usage_seq, 0);
    gw_msg_fini(&r);

    /* The next batch is applied. */
    make_record(&recs[0], "req-d", f->key_id, f->acct_ok, "claude-haiku-4-5");
    recs[0].output_tokens = 3; /* 3 * 5 USD/Mtok = 15 micro-USD */
    fill_batch(&m, "edge-1", 2, recs, 1);
    rpc(f->req, &m, &r);
    assert_int_equal(r.type, GW_MSG_USAGE_ACK);
    assert_int_equal(r.u.usage_ack.duplicate, 0);
    gw_msg_fini(&r);
    n = usage_rows(f, &rows);
    assert_int_equal(n, 4);
    assert_int_equal(find_row(rows, n, "req-d")->cost_micros, 15);
    free(rows);
}

/* The routing fields travel in the snapshot, and account events sent with
 * a usage batch are applied once: three 401s disable the account for every
 * edge, a long 429 cools it down. */
static void
test_account_events(void **state)
{
    struct fx *f = *state;
    static const char *const models[] = {"claude-sonnet-4-5", "claude-haiku-4-5"};
    static const char *const allowed[] = {"claude-haiku-4-5"};
    struct hub_account_patch ap;
    struct hub_group_patch gp;
    struct hub_key_patch kp;
    struct hub_account acct;
    struct hub_group grp;
    struct hub_pool pool;
    struct hub_key key;
    struct gw_account_event ev[3];
    struct gw_msg m, r;
    const struct gw_wire_snapshot *s;
    uint64_t version;
    int64_t t;

    memset(&ap, 0, sizeof(ap));
    ap.fields = HUB_ACCOUNT_SET_MODELS | HUB_ACCOUNT_SET_MAX_CONCURRENCY | HUB_ACCOUNT_SET_PROXY;
    ap.models = models;
    ap.n_models = 2;
    ap.max_concurrency = 3;
    ap.proxy = "http://proxy.test:3128";
    GW_PASS(hub_store_account_update(f->st, f->acct_ok, &ap, &acct));
    hub_account_fini(&acct);
    GW_PASS(hub_store_pool_create(f->st, "shared", &pool));
    GW_PASS(hub_store_pool_add_account(f->st, pool.id, f->acct_ok));
    memset(&gp, 0, sizeof(gp));
    gp.fields = HUB_GROUP_SET_MODE | HUB_GROUP_SET_POOL;
    gp.mode = "hybrid";
    gp.pool_id = pool.id;
    GW_PASS(hub_store_group_update(f->st, f->group_id, &gp, &grp));
    memset(&kp, 0, sizeof(kp));
    kp.fields = HUB_KEY_SET_RPM | HUB_KEY_SET_ALLOWED_MODELS;
    kp.rpm_limit = 30;
    kp.allowed_models = allowed;
    kp.n_allowed_models = 1;
    GW_PASS(hub_store_key_update(f->st, f->key_id, &kp, &key));
    hub_key_fini(&key);

    fetch(f->req, 0, &r);
    s = &r.u.snapshot;
    version = s->version;
    assert_int_equal(s->n_groups, 1);
    assert_string_equal(s->groups[0].mode, "hybrid");
    assert_int_equal(s->groups[0].pool_id, pool.id);
    assert_int_equal(s->n_pools, 1);
    assert_int_equal(s->pools[0].n_account_ids, 1);
    assert_int_equal(s->pools[0].account_ids[0], f->acct_ok);
    assert_int_equal(s->keys[0].rpm_limit, 30);
    assert_int_equal(s->keys[0].n_allowed_models, 1);
    assert_string_equal(s->keys[0].allowed_models[0], "claude-haiku-4-5");
    for (size_t i = 0; i < s->n_accounts; i++) {
        if (s->accounts[i].id != f->acct_ok)
            continue;
        assert_int_equal(s->accounts[i].enabled, 1);
        assert_int_equal(s->accounts[i].n_models, 2);
        assert_string_equal(s->accounts[i].models[1], "claude-haiku-4-5");
        assert_int_equal(s->accounts[i].max_concurrency, 3);
        assert_string_equal(s->accounts[i].proxy, "http://proxy.test:3128");
        assert_memory_equal(s->accounts[i].credential, SECRET, strlen(SECRET));
    }
    gw_msg_fini(&r);

    t = (int64_t)time(NULL) * 1000;
    for (int i = 0; i < 3; i++) {
        memset(&ev[i], 0, sizeof(ev[i]));
        ev[i].account_id = f->acct_ok;
        ev[i].status = 401;
        ev[i].time_ms = t + i;
        snprintf(ev[i].message, sizeof(ev[i].message), "invalid x-api-key");
    }
    fill_batch(&m, "edge-ev", 1, NULL, 0);
    m.u.usage_batch.account_events = ev;
    m.u.usage_batch.n_account_events = 3;
    rpc(f->req, &m, &r);
    assert_int_equal(r.type, GW_MSG_USAGE_ACK);
    assert_int_equal(r.u.usage_ack.duplicate, 0);
    gw_msg_fini(&r);
    /* Resent (REQ retry): not counted twice. */
    rpc(f->req, &m, &r);
    assert_int_equal(r.u.usage_ack.duplicate, 1);
    gw_msg_fini(&r);
    GW_PASS(hub_store_account_get(f->st, f->acct_ok, &acct));
    assert_int_equal(acct.enabled, 0);
    assert_int_equal(acct.auth_failures, 3);
    assert_string_equal(acct.disabled_reason, "upstream rejected the credential (401)");
    hub_account_fini(&acct);

    /* The edge's version is stale: the new snapshot has it disabled. */
    fetch(f->req, version, &r);
    assert_int_equal(r.u.snapshot.unchanged, 0);
    assert_true(r.u.snapshot.version == version + 1);
    for (size_t i = 0; i < r.u.snapshot.n_accounts; i++) {
        if (r.u.snapshot.accounts[i].id == f->acct_ok)
            assert_int_equal(r.u.snapshot.accounts[i].enabled, 0);
    }
    version = r.u.snapshot.version;
    gw_msg_fini(&r);

    /* A long 429 on the other account: a cooldown every edge sees. */
    memset(&ev[0], 0, sizeof(ev[0]));
    ev[0].account_id = f->acct_bad;
    ev[0].status = 429;
    ev[0].time_ms = t;
    ev[0].retry_after_ms = 300000;
    fill_batch(&m, "edge-ev", 2, NULL, 0);
    m.u.usage_batch.account_events = ev;
    m.u.usage_batch.n_account_events = 1;
    rpc(f->req, &m, &r);
    assert_int_equal(r.type, GW_MSG_USAGE_ACK);
    gw_msg_fini(&r);
    fetch(f->req, version, &r);
    assert_int_equal(r.u.snapshot.unchanged, 0);
    for (size_t i = 0; i < r.u.snapshot.n_accounts; i++) {
        if (r.u.snapshot.accounts[i].id == f->acct_bad)
            assert_int_equal(r.u.snapshot.accounts[i].cooldown_until_ms, t + 300000);
    }
    gw_msg_fini(&r);
}

static void
test_bad_frames(void **state)
{
    struct fx *f = *state;
    struct gw_msg r, m;
    struct gw_buf b = GW_BUF_INIT;

    rpc_raw(f->req, "GET / HTTP/1.1\r\n\r\n", 18, &r);
    assert_int_equal(r.type, GW_MSG_ERROR);
    assert_int_equal(r.u.error.code, GW_EPROTO);
    gw_msg_fini(&r);

    rpc_raw(f->req, "", 0, &r); /* an Envelope with no body */
    assert_int_equal(r.type, GW_MSG_ERROR);
    assert_int_equal(r.u.error.code, GW_EPROTO);
    gw_msg_fini(&r);

    /* A reply type sent as a request. */
    memset(&m, 0, sizeof(m));
    m.type = GW_MSG_USAGE_ACK;
    m.u.usage_ack.seq = 3;
    rpc(f->req, &m, &r);
    assert_int_equal(r.type, GW_MSG_ERROR);
    assert_int_equal(r.u.error.code, GW_EPROTO);
    gw_msg_fini(&r);

    /* Edge ids that could not be stored or logged safely. */
    hello(f->req, "edge with spaces", &r);
    assert_int_equal(r.type, GW_MSG_ERROR);
    assert_int_equal(r.u.error.code, GW_EINVAL);
    gw_msg_fini(&r);
    hello(f->req, "", &r);
    assert_int_equal(r.type, GW_MSG_ERROR);
    gw_msg_fini(&r);

    /* Many garbage frames in a row (the log is rate limited, the link keeps
     * answering), then the link still serves valid requests. */
    for (int i = 0; i < 50; i++) {
        gw_buf_reset(&b);
        gw_buf_appendf(&b, "\xff\xfe garbage %d", i);
        rpc_raw(f->req, b.data, b.len, &r);
        assert_int_equal(r.type, GW_MSG_ERROR);
        gw_msg_fini(&r);
    }
    gw_buf_fini(&b);
    hello(f->req, "edge-1", &r);
    assert_int_equal(r.type, GW_MSG_HELLO_REPLY);
    gw_msg_fini(&r);
}

struct worker_arg {
    const char *url;
    int index;
    uint64_t key_id;
    int failures;
};

#define CONC_EDGES 4
#define CONC_BATCHES 10
#define CONC_RECORDS 5

/* One edge sending its batches in order on its own REQ socket. Failures are
 * counted (cmocka asserts are not thread-safe) and checked by the caller. */
static void *
conc_edge(void *p)
{
    struct worker_arg *wa = p;
    struct gw_usage_record recs[CONC_RECORDS];
    char edge[32], reqid[48];
    nng_socket s;
    int rv;

    snprintf(edge, sizeof(edge), "edge-c%d", wa->index);
    rv = nng_req0_open(&s);
    if (rv == 0)
        rv = nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, DEADLINE_MS);
    if (rv == 0)
        rv = nng_dial(s, wa->url, NULL, 0);
    if (rv != 0) {
        wa->failures++;
        return NULL;
    }
    for (uint64_t seq = 1; seq <= CONC_BATCHES; seq++) {
        struct gw_msg m, r;
        struct gw_buf b = GW_BUF_INIT;
        void *buf = NULL;
        size_t n = 0;

        for (int i = 0; i < CONC_RECORDS; i++) {
            snprintf(reqid, sizeof(reqid), "%s-%llu-%d", edge, (unsigned long long)seq, i);
            make_record(&recs[i], reqid, wa->key_id, 1, "claude-sonnet-4-5");
            recs[i].input_tokens = 1000000; /* 3 USD */
        }
        fill_batch(&m, edge, seq, recs, CONC_RECORDS);
        if (gw_wire_encode(&m, &b) != GW_OK || nng_send(s, b.data, b.len, 0) != 0 ||
            nng_recv(s, &buf, &n, NNG_FLAG_ALLOC) != 0) {
            wa->failures++;
            gw_buf_fini(&b);
            break;
        }
        gw_buf_fini(&b);
        if (gw_wire_decode(buf, n, HUB_LINK_RECV_MAX, &r) != GW_OK || r.type != GW_MSG_USAGE_ACK ||
            r.u.usage_ack.seq != seq || r.u.usage_ack.duplicate)
            wa->failures++;
        gw_msg_fini(&r);
        nng_free(buf, n);
    }
    nng_close(s);
    return NULL;
}

static void
test_concurrent_edges(void **state)
{
    struct fx *f = *state;
    pthread_t th[CONC_EDGES];
    struct worker_arg wa[CONC_EDGES];
    struct hub_usage_row *rows;
    size_t n;
    int i;

    for (i = 0; i < CONC_EDGES; i++) {
        wa[i].url = (i % 2) ? f->inproc_url : f->tcp_url;
        wa[i].index = i;
        wa[i].key_id = f->key_id;
        wa[i].failures = 0;
        assert_int_equal(pthread_create(&th[i], NULL, conc_edge, &wa[i]), 0);
    }
    for (i = 0; i < CONC_EDGES; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(wa[i].failures, 0);
    }
    for (i = 0; i < CONC_EDGES; i++) {
        char edge[32];
        uint64_t last = 0;
        snprintf(edge, sizeof(edge), "edge-c%d", i);
        GW_PASS(hub_store_edge_last_seq(f->st, edge, &last));
        assert_int_equal(last, CONC_BATCHES);
    }
    n = usage_rows(f, &rows);
    assert_int_equal(n, CONC_EDGES * CONC_BATCHES * CONC_RECORDS);
    for (size_t j = 0; j < n; j++)
        assert_int_equal(rows[j].cost_micros, 3000000);
    free(rows);
}

static void
test_listen_errors(void **state)
{
    struct fx *f = *state;
    struct gw_msg r;

    assert_int_not_equal(hub_link_listen(f->link, "bogus://nowhere"), GW_OK);
    /* The port the fixture already holds. */
    assert_int_not_equal(hub_link_listen(f->link, f->tcp_url), GW_OK);
    /* A second TCP listener on the same link works alongside the first. */
    uint16_t port2 = 0;
    GW_PASS(hub_link_listen_port(f->link, "tcp://127.0.0.1:0", &port2));
    assert_true(port2 != 0);
    char url[64];
    nng_socket s;
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", (unsigned)port2);
    req_open(&s, url);
    hello(s, "edge-9", &r);
    assert_int_equal(r.type, GW_MSG_HELLO_REPLY);
    gw_msg_fini(&r);
    nng_close(s);

    struct hub_link *other = (struct hub_link *)f;
    GW_FAIL(hub_link_new(NULL, f->master, &other), GW_EINVAL);
    assert_null(other);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
