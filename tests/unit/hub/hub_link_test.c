/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the hub end of the edge link: a real sqlite::memory: store, the
 * real link listening on tcp://127.0.0.1:0 and inproc://, and real NNG REQ
 * and SUB sockets playing the edge. The fixture's own REQ socket is on the
 * trusted inproc:// listener; remote edges enrol over TCP with a registered
 * secret. Every receive has a deadline (RECVTIMEO). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

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

/* ------------------------------------------------ enrolment helpers */

/* Registers a remote edge with a fresh secret (base64url of 32 random
 * bytes, as the admin API makes them); the secret goes to secret_out. */
static void
register_edge(struct fx *f, const char *id, char *secret_out, size_t size)
{
    uint8_t raw[32];
    struct gw_buf text = GW_BUF_INIT, sealed = GW_BUF_INIT;
    struct hub_edge e;

    GW_PASS(gw_random_bytes(raw, sizeof(raw)));
    gw_base64url_encode(raw, sizeof(raw), &text);
    assert_true(text.len < size);
    memcpy(secret_out, text.data, text.len + 1);
    GW_PASS(hub_link_seal_edge_secret(f->master, text.data, text.len, &sealed));
    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "%s", id);
    snprintf(e.name, sizeof(e.name), "%s", "test edge");
    e.secret_sealed = (uint8_t *)sealed.data;
    e.secret_sealed_len = sealed.len;
    e.created_at = 1;
    GW_PASS(hub_store_edge_create(f->st, &e));
    gw_buf_fini(&text);
    gw_buf_fini(&sealed);
}

/* Hello with the proof for nonce under secret (no proof when secret is
 * NULL). */
static void
hello_proof(nng_socket s, const char *edge_id, const char *secret, const uint8_t *nonce,
            size_t nonce_len, struct gw_msg *reply)
{
    struct gw_msg m = {0};
    uint8_t proof[GW_SHA256_LEN];

    m.type = GW_MSG_HELLO;
    m.u.hello.edge_id = (char *)(uintptr_t)edge_id;
    m.u.hello.region = (char *)"test-region";
    m.u.hello.version = (char *)"0.1.0-test";
    if (secret != NULL) {
        gw_wire_hello_proof(secret, strlen(secret), nonce, nonce_len, edge_id, proof);
        m.u.hello.proof = proof;
        m.u.hello.proof_len = sizeof(proof);
    }
    rpc(s, &m, reply);
}

/* The full handshake; returns the final reply's authenticated flag (the
 * reply is left in *reply). */
static int
enrol(nng_socket s, const char *edge_id, const char *secret, struct gw_msg *reply)
{
    struct gw_msg r1;
    int ok;

    hello_proof(s, edge_id, NULL, NULL, 0, &r1);
    assert_int_equal(r1.type, GW_MSG_HELLO_REPLY);
    assert_int_equal(r1.u.hello_reply.authenticated, 0);
    assert_int_equal(r1.u.hello_reply.nonce_len, GW_WIRE_NONCE_LEN);
    hello_proof(s, edge_id, secret, r1.u.hello_reply.nonce, r1.u.hello_reply.nonce_len, reply);
    ok = reply->type == GW_MSG_HELLO_REPLY && reply->u.hello_reply.authenticated;
    gw_msg_fini(&r1);
    return ok;
}

static void
expect_eauth(struct gw_msg *r)
{
    assert_int_equal(r->type, GW_MSG_ERROR);
    assert_int_equal(r->u.error.code, GW_EAUTH);
    gw_msg_fini(r);
}

static void
fetch_as(nng_socket s, const char *edge_id, struct gw_msg *reply)
{
    struct gw_msg m = {0};
    m.type = GW_MSG_FETCH_SNAPSHOT;
    m.u.fetch_snapshot.edge_id = (char *)(uintptr_t)edge_id;
    rpc(s, &m, reply);
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
    req_open(&f->req, f->inproc_url);
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
    char secret[64]; /* "" on the trusted inproc:// link */
};

/* Thread-safe enrolment (no cmocka asserts): 1 when admitted. */
static int
conc_rpc(nng_socket s, const struct gw_msg *m, struct gw_msg *r)
{
    struct gw_buf b = GW_BUF_INIT;
    void *buf = NULL;
    size_t n = 0;
    int ok;

    ok = gw_wire_encode(m, &b) == GW_OK && nng_send(s, b.data, b.len, 0) == 0 &&
         nng_recv(s, &buf, &n, NNG_FLAG_ALLOC) == 0;
    gw_buf_fini(&b);
    if (ok) {
        ok = gw_wire_decode(buf, n, HUB_LINK_RECV_MAX, r) == GW_OK;
        nng_free(buf, n);
    }
    return ok;
}

static int
conc_enrol(nng_socket s, const char *edge, const char *secret)
{
    struct gw_msg m = {0}, r1, r2;
    uint8_t proof[GW_SHA256_LEN];
    int ok;

    m.type = GW_MSG_HELLO;
    m.u.hello.edge_id = (char *)(uintptr_t)edge;
    if (!conc_rpc(s, &m, &r1))
        return 0;
    ok = r1.type == GW_MSG_HELLO_REPLY && r1.u.hello_reply.nonce != NULL;
    if (ok) {
        gw_wire_hello_proof(secret, strlen(secret), r1.u.hello_reply.nonce,
                            r1.u.hello_reply.nonce_len, edge, proof);
        m.u.hello.proof = proof;
        m.u.hello.proof_len = sizeof(proof);
        ok = conc_rpc(s, &m, &r2);
        if (ok)
            ok = r2.type == GW_MSG_HELLO_REPLY && r2.u.hello_reply.authenticated;
        if (ok || r2.type != GW_MSG_NONE)
            gw_msg_fini(&r2);
    }
    gw_msg_fini(&r1);
    return ok;
}

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
    if (wa->secret[0] != '\0' && !conc_enrol(s, edge, wa->secret)) {
        wa->failures++;
        nng_close(s);
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
        wa[i].secret[0] = '\0';
        if (!(i % 2)) {
            char edge[32];
            snprintf(edge, sizeof(edge), "edge-c%d", i);
            register_edge(f, edge, wa[i].secret, sizeof(wa[i].secret));
        }
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

/* ------------------------------------------------ enrolment, deltas, push */

static void
test_enrolment(void **state)
{
    struct fx *f = *state;
    char secret[64], other[64];
    struct gw_msg r, r1, m;
    struct hub_edge e;
    nng_socket s, s2;

    register_edge(f, "edge-r1", secret, sizeof(secret));
    register_edge(f, "edge-r2", other, sizeof(other));
    req_open(&s, f->tcp_url);

    /* Nothing but Hello before enrolment. */
    fetch_as(s, "edge-r1", &r);
    expect_eauth(&r);
    memset(&m, 0, sizeof(m));
    m.type = GW_MSG_HEARTBEAT;
    m.u.heartbeat.edge_id = (char *)"edge-r1";
    rpc(s, &m, &r);
    expect_eauth(&r);

    /* Wrong secret (edge-r2's): refused, and the nonce is spent. */
    hello_proof(s, "edge-r1", NULL, NULL, 0, &r1);
    assert_int_equal(r1.u.hello_reply.authenticated, 0);
    assert_int_equal(r1.u.hello_reply.config_version, 0);
    hello_proof(s, "edge-r1", other, r1.u.hello_reply.nonce, r1.u.hello_reply.nonce_len, &r);
    expect_eauth(&r);
    /* Replaying the right proof for that nonce no longer works. */
    hello_proof(s, "edge-r1", secret, r1.u.hello_reply.nonce, r1.u.hello_reply.nonce_len, &r);
    expect_eauth(&r);
    gw_msg_fini(&r1);
    fetch_as(s, "edge-r1", &r);
    expect_eauth(&r);

    /* Unknown edge. */
    assert_false(enrol(s, "edge-unknown", secret, &r));
    expect_eauth(&r);

    /* The right secret. */
    assert_true(enrol(s, "edge-r1", secret, &r));
    assert_int_equal(r.u.hello_reply.config_version, store_version(f));
    gw_msg_fini(&r);
    fetch_as(s, "edge-r1", &r);
    assert_int_equal(r.type, GW_MSG_SNAPSHOT);
    gw_msg_fini(&r);
    /* Another edge's id on this pipe is refused. */
    fetch_as(s, "edge-r2", &r);
    expect_eauth(&r);
    GW_PASS(hub_store_edge_get(f->st, "edge-r1", &e));
    assert_true(e.last_seen_ms > 0);
    hub_edge_fini(&e);

    /* A second connection is not enrolled by the first. */
    req_open(&s2, f->tcp_url);
    fetch_as(s2, "edge-r1", &r);
    expect_eauth(&r);

    /* Revoked: refused from the next request on, and cannot enrol again. */
    GW_PASS(hub_store_edge_revoke(f->st, "edge-r1"));
    fetch_as(s, "edge-r1", &r);
    expect_eauth(&r);
    assert_false(enrol(s2, "edge-r1", secret, &r));
    expect_eauth(&r);
    nng_close(s2);
    nng_close(s);
}

static void
test_trusted_inproc(void **state)
{
    struct fx *f = *state;
    struct hub_edge e;
    struct gw_msg r;

    /* The in-process edge needs no proof and is registered as trusted. */
    hello(f->req, "local", &r);
    assert_int_equal(r.type, GW_MSG_HELLO_REPLY);
    assert_int_equal(r.u.hello_reply.authenticated, 1);
    assert_null(r.u.hello_reply.nonce);
    gw_msg_fini(&r);
    GW_PASS(hub_store_edge_get(f->st, "local", &e));
    assert_int_equal(e.trusted, 1);
    assert_null(e.secret_sealed);
    assert_true(e.last_seen_ms > 0);
    hub_edge_fini(&e);
}

static void
test_heartbeat(void **state)
{
    struct fx *f = *state;
    char secret[64];
    struct gw_msg r, m;
    struct hub_edge e;
    nng_socket s;

    register_edge(f, "edge-hb", secret, sizeof(secret));
    req_open(&s, f->tcp_url);
    assert_true(enrol(s, "edge-hb", secret, &r));
    gw_msg_fini(&r);
    memset(&m, 0, sizeof(m));
    m.type = GW_MSG_HEARTBEAT;
    m.u.heartbeat.edge_id = (char *)"edge-hb";
    m.u.heartbeat.snapshot_version = 3;
    m.u.heartbeat.snapshot_source = (char *)"disk";
    m.u.heartbeat.requests_total = 42;
    m.u.heartbeat.errors_total = 2;
    m.u.heartbeat.usage_pending = 7;
    m.u.heartbeat.version = (char *)"9.9.9";
    rpc(s, &m, &r);
    assert_int_equal(r.type, GW_MSG_HEARTBEAT_ACK);
    assert_int_equal(r.u.heartbeat_ack.config_version, store_version(f));
    gw_msg_fini(&r);
    GW_PASS(hub_store_edge_get(f->st, "edge-hb", &e));
    assert_int_equal(e.requests_total, 42);
    assert_int_equal(e.errors_total, 2);
    assert_int_equal(e.usage_pending, 7);
    assert_int_equal(e.snapshot_version, 3);
    assert_string_equal(e.snapshot_source, "disk");
    assert_string_equal(e.version, "9.9.9");
    assert_true(e.heartbeat_ms > 0);
    hub_edge_fini(&e);
    nng_close(s);
}

static void
test_fetch_deltas(void **state)
{
    struct fx *f = *state;
    struct gw_msg r, m;
    uint64_t v0 = store_version(f);
    const struct gw_wire_change *acct = NULL, *removed = NULL;

    GW_PASS(hub_store_key_revoke(f->st, f->key_id));
    {
        struct hub_account_patch ap = {.fields = HUB_ACCOUNT_SET_WEIGHT, .weight = 3};
        struct hub_account a;
        GW_PASS(hub_store_account_update(f->st, f->acct_ok, &ap, &a));
        hub_account_fini(&a);
    }
    memset(&m, 0, sizeof(m));
    m.type = GW_MSG_FETCH_DELTAS;
    m.u.fetch_deltas.edge_id = (char *)"edge-1";
    m.u.fetch_deltas.from_version = v0;
    rpc(f->req, &m, &r);
    assert_int_equal(r.type, GW_MSG_DELTAS);
    assert_int_equal(r.u.deltas.from_version, v0);
    assert_int_equal(r.u.deltas.to_version, v0 + 2);
    assert_int_equal(r.u.deltas.n_changes, 2);
    for (size_t i = 0; i < r.u.deltas.n_changes; i++) {
        if (r.u.deltas.changes[i].kind == GW_CHANGE_ACCOUNT)
            acct = &r.u.deltas.changes[i];
        if (r.u.deltas.changes[i].kind == GW_CHANGE_KEY_REMOVED)
            removed = &r.u.deltas.changes[i];
    }
    assert_non_null(acct);
    assert_non_null(removed);
    assert_int_equal(removed->u.removed_id, f->key_id);
    /* The credential travels opened, as in a snapshot. */
    assert_int_equal(acct->u.account.credential_len, strlen(SECRET));
    assert_memory_equal(acct->u.account.credential, SECRET, strlen(SECRET));
    assert_int_equal(acct->u.account.weight, 3);
    gw_msg_fini(&r);

    /* Far behind (from 0 with a pruned log): snapshot_required. */
    GW_PASS(hub_store_change_log_prune(f->st, 1));
    m.u.fetch_deltas.from_version = 0;
    rpc(f->req, &m, &r);
    assert_int_equal(r.type, GW_MSG_DELTAS);
    assert_int_equal(r.u.deltas.snapshot_required, 1);
    gw_msg_fini(&r);
}

/* Receives from a SUB socket until a Deltas with a change matching (kind,
 * id) arrives, poking the publisher between tries: the SUB side may join
 * after the first push (PUB drops messages nobody subscribes to yet). */
static int
push_wait(struct fx *f, nng_socket sub, enum gw_change_kind kind, uint64_t id, int64_t deadline_ms)
{
    struct timespec ts;

    for (;;) {
        void *buf = NULL;
        size_t n = 0;
        struct gw_msg m;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        if ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 > deadline_ms)
            return 0;
        hub_link_notify(f->link);
        if (nng_recv(sub, &buf, &n, NNG_FLAG_ALLOC) != 0)
            continue;
        GW_PASS(gw_wire_decode(buf, n, HUB_LINK_RECV_MAX, &m));
        nng_free(buf, n);
        assert_int_equal(m.type, GW_MSG_DELTAS);
        for (size_t i = 0; i < m.u.deltas.n_changes; i++) {
            const struct gw_wire_change *c = &m.u.deltas.changes[i];
            uint64_t cid = c->kind == GW_CHANGE_KEY ? c->u.key.id : c->u.removed_id;
            if (c->kind == kind && cid == id) {
                gw_msg_fini(&m);
                return 1;
            }
        }
        gw_msg_fini(&m);
    }
}

static void
test_push(void **state)
{
    struct fx *f = *state;
    char secret[64], url[64];
    struct gw_msg r;
    struct timespec ts;
    uint16_t port = 0;
    nng_socket req, sub;
    int64_t deadline;
    uint64_t kid;
    int round = 0;

    GW_PASS(hub_link_push_listen(f->link, "tcp://127.0.0.1:0", &port));
    assert_true(port != 0);
    register_edge(f, "edge-push", secret, sizeof(secret));
    req_open(&req, f->tcp_url);
    assert_true(enrol(req, "edge-push", secret, &r));
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", (unsigned)port);
    assert_non_null(r.u.hello_reply.push_url);
    assert_string_equal(r.u.hello_reply.push_url, url);
    gw_msg_fini(&r);

    assert_int_equal(nng_sub0_open(&sub), 0);
    assert_int_equal(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0), 0);
    assert_int_equal(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 200), 0);
    assert_int_equal(nng_dial(sub, url, NULL, 0), 0);

    clock_gettime(CLOCK_MONOTONIC, &ts);
    deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + DEADLINE_MS;
    /* Until the subscription is live, every try makes a new key. */
    for (;;) {
        struct hub_key_new kn;
        struct hub_key k;

        memset(&kn, 0, sizeof(kn));
        kn.group_id = f->group_id;
        kn.name = "pushed";
        kn.prefix = "aicp_push";
        gw_sha256(&round, sizeof(round), kn.key_hash);
        round++;
        GW_PASS(hub_store_key_create(f->st, &kn, &k));
        kid = k.id;
        hub_key_fini(&k);
        hub_link_notify(f->link);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (push_wait(f, sub, GW_CHANGE_KEY, kid,
                      (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 500))
            break;
        assert_true((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 < deadline);
    }
    /* Revocation is pushed as key_removed. */
    GW_PASS(hub_store_key_revoke(f->st, kid));
    hub_link_notify(f->link);
    assert_true(push_wait(f, sub, GW_CHANGE_KEY_REMOVED, kid, deadline));
    nng_close(sub);
    nng_close(req);
}

static void
test_transport_rules(void **state)
{
    struct fx *f = *state;

    /* Plain TCP only on loopback; TLS needs certificates. */
    GW_FAIL(hub_link_listen(f->link, "tcp://0.0.0.0:0"), GW_EINVAL);
    GW_FAIL(hub_link_listen(f->link, "tcp://10.1.2.3:0"), GW_EINVAL);
    GW_FAIL(hub_link_listen(f->link, "tcp://127.evil.example:0"), GW_EINVAL);
    GW_FAIL(hub_link_listen(f->link, "tls+tcp://127.0.0.1:0"), GW_EINVAL);
    GW_FAIL(hub_link_push_listen(f->link, "tcp://0.0.0.0:0", NULL), GW_EINVAL);
    GW_PASS(hub_link_listen(f->link, "tcp://localhost:0"));
    GW_PASS(hub_link_listen(f->link, "tcp://[::1]:0"));
    assert_int_not_equal(
        hub_link_set_tls(f->link, "/nonexistent/bundle.pem", "/nonexistent/ca.pem"), GW_OK);
}

/* Garbage and oversized frames from one peer do not disturb an enrolled
 * edge on another connection. */
static void
test_garbage_isolated(void **state)
{
    struct fx *f = *state;
    char secret[64];
    struct gw_msg r;
    nng_socket good, bad;
    size_t big = HUB_LINK_RECV_MAX + 1;

    register_edge(f, "edge-good", secret, sizeof(secret));
    req_open(&good, f->tcp_url);
    assert_true(enrol(good, "edge-good", secret, &r));
    gw_msg_fini(&r);
    req_open(&bad, f->tcp_url);
    for (int i = 0; i < 20; i++) {
        rpc_raw(bad, "\x0a\xff\xff\xff\xff\x0f", 6, &r);
        assert_int_equal(r.type, GW_MSG_ERROR);
        gw_msg_fini(&r);
    }
    /* Oversized: a raw SP/TCP peer announces a frame one byte over the
     * limit; the hub drops that connection without reading the body. */
    {
        struct sockaddr_in sa;
        struct timeval tv = {DEADLINE_MS / 1000, 0};
        uint8_t hs[8] = {0, 'S', 'P', 0, 0x00, 0x30, 0, 0}; /* REQ v0 */
        uint8_t reply[8], len[8];
        uint64_t n = (uint64_t)big;
        unsigned port = 0;
        ssize_t got;
        int fd;

        assert_int_equal(sscanf(f->tcp_url, "tcp://127.0.0.1:%u", &port), 1);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(send(fd, hs, sizeof(hs), MSG_NOSIGNAL), (ssize_t)sizeof(hs));
        assert_int_equal(recv(fd, reply, sizeof(reply), MSG_WAITALL), (ssize_t)sizeof(reply));
        assert_int_equal(reply[5], 0x31); /* REP */
        for (int i = 7; i >= 0; i--, n >>= 8)
            len[i] = (uint8_t)(n & 0xff);
        assert_int_equal(send(fd, len, sizeof(len), MSG_NOSIGNAL), (ssize_t)sizeof(len));
        got = recv(fd, reply, sizeof(reply), 0);
        assert_true(got <= 0); /* closed (0) or reset (-1), not a timeout */
        if (got < 0)
            assert_true(errno != EAGAIN && errno != EWOULDBLOCK);
        close(fd);
    }
    nng_close(bad);
    fetch_as(good, "edge-good", &r);
    assert_int_equal(r.type, GW_MSG_SNAPSHOT);
    gw_msg_fini(&r);
    nng_close(good);
}

/* tls+tcp:// with mutual TLS, certificates from scripts/make-certs: an edge
 * with a client certificate enrols and fetches; one without cannot talk. */
static void
test_tls_mutual(void **state)
{
    struct fx *f = *state;
    char root[512], dir[64], cmd[1200], hub_bundle[128], edge_bundle[128], ca[128], url[96];
    char secret[64];
    const char *tail = strstr(__FILE__, "/tests/unit/hub/");
    nng_tls_config *cfg = NULL;
    nng_dialer d;
    nng_socket s, anon;
    struct gw_msg r;
    uint16_t port = 0, pport = 0;

    assert_non_null(tail);
    snprintf(root, sizeof(root), "%.*s", (int)(tail - __FILE__), __FILE__);
    snprintf(dir, sizeof(dir), "/tmp/gw-link-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "'%s/scripts/make-certs' '%s/pki' >/dev/null 2>&1", root, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(hub_bundle, sizeof(hub_bundle), "%s/pki/hub-bundle.pem", dir);
    snprintf(edge_bundle, sizeof(edge_bundle), "%s/pki/edge-bundle.pem", dir);
    snprintf(ca, sizeof(ca), "%s/pki/ca.pem", dir);

    GW_PASS(hub_link_set_tls(f->link, hub_bundle, ca));
    GW_FAIL(hub_link_set_tls(f->link, hub_bundle, ca), GW_EINVAL); /* only once */
    GW_PASS(hub_link_listen_port(f->link, "tls+tcp://127.0.0.1:0", &port));
    GW_PASS(hub_link_push_listen(f->link, "tls+tcp://127.0.0.1:0", &pport));
    assert_true(port != 0 && pport != 0);
    snprintf(url, sizeof(url), "tls+tcp://127.0.0.1:%u", (unsigned)port);

    register_edge(f, "edge-tls", secret, sizeof(secret));
    assert_int_equal(nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT), 0);
    assert_int_equal(nng_tls_config_cert_key_file(cfg, edge_bundle, NULL), 0);
    assert_int_equal(nng_tls_config_ca_file(cfg, ca), 0);
    assert_int_equal(nng_tls_config_server_name(cfg, "localhost"), 0);
    assert_int_equal(nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED), 0);
    assert_int_equal(nng_req0_open(&s), 0);
    assert_int_equal(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, DEADLINE_MS), 0);
    assert_int_equal(nng_dialer_create(&d, s, url), 0);
    assert_int_equal(nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg), 0);
    assert_int_equal(nng_dialer_start(d, 0), 0);
    assert_true(enrol(s, "edge-tls", secret, &r));
    /* The push URL for remote edges is the TLS one, with its bound port. */
    {
        char want[96];
        snprintf(want, sizeof(want), "tls+tcp://127.0.0.1:%u", (unsigned)pport);
        assert_string_equal(r.u.hello_reply.push_url, want);
    }
    gw_msg_fini(&r);
    fetch_as(s, "edge-tls", &r);
    assert_int_equal(r.type, GW_MSG_SNAPSHOT);
    gw_msg_fini(&r);
    nng_close(s);

    /* No client certificate: the handshake fails, nothing is answered. */
    {
        nng_tls_config *bare = NULL;
        struct gw_buf b = GW_BUF_INIT;
        struct gw_msg m = {0};
        void *buf = NULL;
        size_t n = 0;

        assert_int_equal(nng_tls_config_alloc(&bare, NNG_TLS_MODE_CLIENT), 0);
        assert_int_equal(nng_tls_config_ca_file(bare, ca), 0);
        assert_int_equal(nng_tls_config_server_name(bare, "localhost"), 0);
        assert_int_equal(nng_req0_open(&anon), 0);
        assert_int_equal(nng_socket_set_ms(anon, NNG_OPT_RECVTIMEO, 1500), 0);
        assert_int_equal(nng_socket_set_ms(anon, NNG_OPT_SENDTIMEO, 1500), 0);
        assert_int_equal(nng_dialer_create(&d, anon, url), 0);
        assert_int_equal(nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, bare), 0);
        assert_int_equal(nng_dialer_start(d, NNG_FLAG_NONBLOCK), 0);
        m.type = GW_MSG_HELLO;
        m.u.hello.edge_id = (char *)"edge-tls";
        GW_PASS(gw_wire_encode(&m, &b));
        if (nng_send(anon, b.data, b.len, 0) == 0)
            assert_int_not_equal(nng_recv(anon, &buf, &n, NNG_FLAG_ALLOC), 0);
        gw_buf_fini(&b);
        nng_close(anon);
        nng_tls_config_free(bare);
    }
    nng_tls_config_free(cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
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
        cmocka_unit_test_setup_teardown(test_enrolment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trusted_inproc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_deltas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_isolated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_mutual, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
