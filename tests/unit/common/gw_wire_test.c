/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the protobuf gate: round trips of every message type, limits,
 * malformed frames (hand-written protobuf bytes, since only gw_wire.c may
 * include the generated code) and encoder refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_test.h"
#include "gw_wire.h"

#define MAX_FRAME (64u * 1024 * 1024)

/* ------------------------------------------------ raw protobuf writer */

static void
pb_varint(struct gw_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    gw_buf_append(b, tmp, n);
}

static void
pb_uint(struct gw_buf *b, unsigned field, uint64_t v)
{
    pb_varint(b, (uint64_t)field << 3 | 0);
    pb_varint(b, v);
}

static void
pb_bytes(struct gw_buf *b, unsigned field, const void *data, size_t len)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, len);
    gw_buf_append(b, data, len);
}

static void
pb_sub(struct gw_buf *b, unsigned field, struct gw_buf *sub)
{
    pb_bytes(b, field, sub->data, sub->len);
    gw_buf_fini(sub);
}

/* A snapshot frame with one key whose hash is hash_len bytes long. */
static void
raw_snapshot_with_hash(struct gw_buf *out, size_t hash_len)
{
    struct gw_buf key = GW_BUF_INIT, snap = GW_BUF_INIT;
    uint8_t hash[64];

    memset(hash, 0xab, sizeof(hash));
    pb_uint(&key, 1, 7);
    pb_bytes(&key, 2, hash, hash_len);
    pb_uint(&key, 3, 9);
    pb_uint(&snap, 1, 42);
    pb_sub(&snap, 3, &key);
    pb_sub(out, 4, &snap);
}

/* ------------------------------------------------ helpers */

static void
round_trip(const struct gw_msg *in, struct gw_msg *out)
{
    struct gw_buf b = GW_BUF_INIT;
    GW_PASS(gw_wire_encode(in, &b));
    assert_true(b.len > 0);
    GW_PASS(gw_wire_decode(b.data, b.len, MAX_FRAME, out));
    assert_int_equal(out->type, in->type);
    gw_buf_fini(&b);
}

static void
fill_record(struct gw_usage_record *r, size_t i)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->request_id, sizeof(r->request_id), "req_%06zu_%s", i, "0123456789abcdef");
    r->key_id = 1000 + i;
    r->account_id = 2000 + i;
    snprintf(r->model, sizeof(r->model), "claude-sonnet-4-5-%zu", i % 7);
    snprintf(r->dialect, sizeof(r->dialect), "%s", (i % 3 == 0) ? "anthropic" : "openai");
    r->input_tokens = 1 + i * 3;
    r->output_tokens = 2 + i * 5;
    r->cache_read_tokens = i * 11;
    r->cache_write_5m_tokens = i * 13;
    r->cache_write_1h_tokens = i * 17;
    r->reasoning_tokens = i * 19;
    r->status = (i % 10 == 0) ? 529 : 200;
    r->latency_ms = (uint32_t)(i * 23);
    r->time_ms = 1700000000000 + (int64_t)i;
    r->partial = (i % 4 == 0);
}

static void
assert_record_equal(const struct gw_usage_record *a, const struct gw_usage_record *b)
{
    assert_string_equal(a->request_id, b->request_id);
    assert_int_equal(a->key_id, b->key_id);
    assert_int_equal(a->account_id, b->account_id);
    assert_string_equal(a->model, b->model);
    assert_string_equal(a->dialect, b->dialect);
    assert_int_equal(a->input_tokens, b->input_tokens);
    assert_int_equal(a->output_tokens, b->output_tokens);
    assert_int_equal(a->cache_read_tokens, b->cache_read_tokens);
    assert_int_equal(a->cache_write_5m_tokens, b->cache_write_5m_tokens);
    assert_int_equal(a->cache_write_1h_tokens, b->cache_write_1h_tokens);
    assert_int_equal(a->reasoning_tokens, b->reasoning_tokens);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->latency_ms, b->latency_ms);
    assert_int_equal(a->time_ms, b->time_ms);
    assert_int_equal(a->partial, b->partial);
}

/* ------------------------------------------------ round trips */

static void
test_hello(void **state)
{
    (void)state;
    struct gw_msg in = {0}, out;
    uint8_t proof[5] = {0, 1, 2, 0xfe, 0xff};

    in.type = GW_MSG_HELLO;
    in.u.hello.edge_id = gw_xstrdup("edge-eu-1");
    in.u.hello.region = gw_xstrdup("eu-west");
    in.u.hello.version = gw_xstrdup("0.1.0");
    in.u.hello.proof = gw_xmalloc(sizeof(proof));
    memcpy(in.u.hello.proof, proof, sizeof(proof));
    in.u.hello.proof_len = sizeof(proof);
    in.u.hello.snapshot_version = UINT64_MAX;
    round_trip(&in, &out);
    assert_string_equal(out.u.hello.edge_id, "edge-eu-1");
    assert_string_equal(out.u.hello.region, "eu-west");
    assert_string_equal(out.u.hello.version, "0.1.0");
    assert_int_equal(out.u.hello.proof_len, sizeof(proof));
    assert_memory_equal(out.u.hello.proof, proof, sizeof(proof));
    assert_true(out.u.hello.snapshot_version == UINT64_MAX);
    gw_msg_fini(&out);
    assert_int_equal(out.type, GW_MSG_NONE);

    /* Optional fields absent come back absent. */
    free(in.u.hello.region);
    free(in.u.hello.version);
    free(in.u.hello.proof);
    in.u.hello.region = NULL;
    in.u.hello.version = NULL;
    in.u.hello.proof = NULL;
    in.u.hello.proof_len = 0;
    round_trip(&in, &out);
    assert_null(out.u.hello.region);
    assert_null(out.u.hello.version);
    assert_null(out.u.hello.proof);
    assert_int_equal(out.u.hello.proof_len, 0);
    gw_msg_fini(&out);
    gw_msg_fini(&in);
}

static void
test_small_messages(void **state)
{
    (void)state;
    struct gw_msg in = {0}, out;

    in.type = GW_MSG_HELLO_REPLY;
    in.u.hello_reply.config_version = 123456789012ull;
    in.u.hello_reply.last_usage_seq = 77;
    round_trip(&in, &out);
    assert_true(out.u.hello_reply.config_version == 123456789012ull);
    assert_int_equal(out.u.hello_reply.last_usage_seq, 77);
    gw_msg_fini(&out);

    memset(&in, 0, sizeof(in));
    in.type = GW_MSG_FETCH_SNAPSHOT;
    in.u.fetch_snapshot.edge_id = gw_xstrdup("e1");
    in.u.fetch_snapshot.have_version = 41;
    round_trip(&in, &out);
    assert_string_equal(out.u.fetch_snapshot.edge_id, "e1");
    assert_int_equal(out.u.fetch_snapshot.have_version, 41);
    gw_msg_fini(&out);
    gw_msg_fini(&in);

    in.type = GW_MSG_USAGE_ACK;
    in.u.usage_ack.seq = 9;
    in.u.usage_ack.duplicate = 1;
    round_trip(&in, &out);
    assert_int_equal(out.u.usage_ack.seq, 9);
    assert_int_equal(out.u.usage_ack.duplicate, 1);
    gw_msg_fini(&out);

    memset(&in, 0, sizeof(in));
    gw_msg_set_error(&in, GW_ESTORE, "database is locked");
    assert_int_equal(in.type, GW_MSG_ERROR);
    round_trip(&in, &out);
    assert_int_equal(out.u.error.code, GW_ESTORE);
    assert_string_equal(out.u.error.message, "database is locked");
    gw_msg_fini(&out);
    /* set_error on a populated message replaces its content. */
    gw_msg_set_error(&in, GW_EPROTO, NULL);
    round_trip(&in, &out);
    assert_int_equal(out.u.error.code, GW_EPROTO);
    assert_null(out.u.error.message);
    gw_msg_fini(&out);
    gw_msg_fini(&in);
}

static void
test_snapshot(void **state)
{
    (void)state;
    struct gw_msg in = {0}, out;
    struct gw_wire_snapshot *s = &in.u.snapshot;
    const size_t nk = 5, ng = 3, na = 4, nb = 6;
    size_t i;

    in.type = GW_MSG_SNAPSHOT;
    s->version = 1234;
    s->keys = gw_xcalloc(nk, sizeof(*s->keys));
    s->n_keys = nk;
    for (i = 0; i < nk; i++) {
        s->keys[i].id = 10 + i;
        memset(s->keys[i].key_hash, (int)(0x10 + i), GW_SHA256_LEN);
        s->keys[i].key_hash[0] = 0; /* binary, with a NUL */
        s->keys[i].group_id = 1 + i % ng;
        s->keys[i].enabled = (i % 2 == 0);
        s->keys[i].expires_at = i == 3 ? -5 : (int64_t)(i * 1000);
        s->keys[i].rpm_limit = (uint32_t)(i * 60);
        s->keys[i].tpm_limit = i == 4 ? UINT32_MAX : (uint32_t)(i * 1000);
        s->keys[i].concurrency_limit = (uint32_t)i;
        if (i % 2 == 1) {
            s->keys[i].n_allowed_models = i;
            s->keys[i].allowed_models = gw_xcalloc(i, sizeof(char *));
            for (size_t j = 0; j < i; j++) {
                char m[32];
                snprintf(m, sizeof(m), "model-%zu-%zu", i, j);
                s->keys[i].allowed_models[j] = gw_xstrdup(m);
            }
        }
    }
    s->groups = gw_xcalloc(ng, sizeof(*s->groups));
    s->n_groups = ng;
    for (i = 0; i < ng; i++) {
        char name[32];
        snprintf(name, sizeof(name), "group-%zu", i);
        s->groups[i].id = 1 + i;
        s->groups[i].name = i == 2 ? NULL : gw_xstrdup(name);
        s->groups[i].mode = i == 0 ? NULL : gw_xstrdup(i == 1 ? "pool" : "hybrid");
        s->groups[i].pool_id = i == 0 ? 0 : 70 + i;
    }
    s->accounts = gw_xcalloc(na, sizeof(*s->accounts));
    s->n_accounts = na;
    for (i = 0; i < na; i++) {
        struct gw_wire_account *a = &s->accounts[i];
        char buf[64];
        a->id = 100 + i;
        snprintf(buf, sizeof(buf), "acct-%zu", i);
        a->name = gw_xstrdup(buf);
        a->kind = gw_xstrdup(i == 0 ? "mock" : "anthropic");
        snprintf(buf, sizeof(buf), "https://api%zu.example/v1", i);
        a->base_url = gw_xstrdup(buf);
        if (i != 1) {
            snprintf(buf, sizeof(buf), "sk-ant-secret-%zu", i);
            a->credential = (uint8_t *)gw_xstrdup(buf);
            a->credential_len = strlen(buf);
        }
        a->priority = (int32_t)i - 2; /* negative too */
        a->weight = (int32_t)(i * 10);
        a->enabled = (i != 3);
        a->max_concurrency = (uint32_t)(i * 7);
        a->cooldown_until_ms = i == 2 ? 1760000000123 : 0;
        if (i >= 2) {
            snprintf(buf, sizeof(buf), "socks5h://user:pw@proxy%zu:1080", i);
            a->proxy = gw_xstrdup(buf);
        }
        if (i != 0) {
            a->n_models = i + 1;
            a->models = gw_xcalloc(a->n_models, sizeof(char *));
            for (size_t j = 0; j < a->n_models; j++) {
                snprintf(buf, sizeof(buf), "claude-%zu-%zu", i, j);
                a->models[j] = gw_xstrdup(buf);
            }
        }
    }
    s->pools = gw_xcalloc(2, sizeof(*s->pools));
    s->n_pools = 2;
    s->pools[0].id = 71;
    s->pools[0].name = gw_xstrdup("shared");
    s->pools[0].n_account_ids = 3;
    s->pools[0].account_ids = gw_xcalloc(3, sizeof(uint64_t));
    s->pools[0].account_ids[0] = 101;
    s->pools[0].account_ids[1] = 103;
    s->pools[0].account_ids[2] = UINT64_MAX;
    s->pools[1].id = 72; /* empty, unnamed */
    s->bindings = gw_xcalloc(nb, sizeof(*s->bindings));
    s->n_bindings = nb;
    for (i = 0; i < nb; i++) {
        s->bindings[i].group_id = 1 + i % ng;
        s->bindings[i].account_id = 100 + i % na;
    }

    round_trip(&in, &out);
    const struct gw_wire_snapshot *o = &out.u.snapshot;
    assert_int_equal(o->version, 1234);
    assert_int_equal(o->unchanged, 0);
    assert_int_equal(o->n_keys, nk);
    for (i = 0; i < nk; i++) {
        assert_int_equal(o->keys[i].id, s->keys[i].id);
        assert_memory_equal(o->keys[i].key_hash, s->keys[i].key_hash, GW_SHA256_LEN);
        assert_int_equal(o->keys[i].group_id, s->keys[i].group_id);
        assert_int_equal(o->keys[i].enabled, s->keys[i].enabled);
        assert_int_equal(o->keys[i].expires_at, s->keys[i].expires_at);
        assert_int_equal(o->keys[i].rpm_limit, s->keys[i].rpm_limit);
        assert_int_equal(o->keys[i].tpm_limit, s->keys[i].tpm_limit);
        assert_int_equal(o->keys[i].concurrency_limit, s->keys[i].concurrency_limit);
        assert_int_equal(o->keys[i].n_allowed_models, s->keys[i].n_allowed_models);
        for (size_t j = 0; j < s->keys[i].n_allowed_models; j++)
            assert_string_equal(o->keys[i].allowed_models[j], s->keys[i].allowed_models[j]);
        if (s->keys[i].n_allowed_models == 0)
            assert_null(o->keys[i].allowed_models);
    }
    assert_int_equal(o->n_groups, ng);
    for (i = 0; i < ng; i++) {
        assert_int_equal(o->groups[i].id, s->groups[i].id);
        if (s->groups[i].name)
            assert_string_equal(o->groups[i].name, s->groups[i].name);
        else
            assert_null(o->groups[i].name);
        /* An absent mode decodes as the default. */
        assert_string_equal(o->groups[i].mode, s->groups[i].mode ? s->groups[i].mode : "dedicated");
        assert_int_equal(o->groups[i].pool_id, s->groups[i].pool_id);
    }
    assert_int_equal(o->n_accounts, na);
    for (i = 0; i < na; i++) {
        const struct gw_wire_account *a = &s->accounts[i], *b = &o->accounts[i];
        assert_int_equal(b->id, a->id);
        assert_string_equal(b->name, a->name);
        assert_string_equal(b->kind, a->kind);
        assert_string_equal(b->base_url, a->base_url);
        assert_int_equal(b->credential_len, a->credential_len);
        if (a->credential)
            assert_memory_equal(b->credential, a->credential, a->credential_len);
        else
            assert_null(b->credential);
        assert_int_equal(b->priority, a->priority);
        assert_int_equal(b->weight, a->weight);
        assert_int_equal(b->enabled, a->enabled);
        assert_int_equal(b->max_concurrency, a->max_concurrency);
        assert_int_equal(b->cooldown_until_ms, a->cooldown_until_ms);
        if (a->proxy)
            assert_string_equal(b->proxy, a->proxy);
        else
            assert_null(b->proxy);
        assert_int_equal(b->n_models, a->n_models);
        for (size_t j = 0; j < a->n_models; j++)
            assert_string_equal(b->models[j], a->models[j]);
    }
    assert_int_equal(o->n_pools, 2);
    assert_int_equal(o->pools[0].id, 71);
    assert_string_equal(o->pools[0].name, "shared");
    assert_int_equal(o->pools[0].n_account_ids, 3);
    assert_memory_equal(o->pools[0].account_ids, s->pools[0].account_ids, 3 * sizeof(uint64_t));
    assert_int_equal(o->pools[1].id, 72);
    assert_null(o->pools[1].name);
    assert_int_equal(o->pools[1].n_account_ids, 0);
    assert_null(o->pools[1].account_ids);
    assert_int_equal(o->n_bindings, nb);
    for (i = 0; i < nb; i++) {
        assert_int_equal(o->bindings[i].group_id, s->bindings[i].group_id);
        assert_int_equal(o->bindings[i].account_id, s->bindings[i].account_id);
    }
    gw_msg_fini(&out);
    gw_msg_fini(&in);

    /* The "unchanged" form. */
    in.type = GW_MSG_SNAPSHOT;
    in.u.snapshot.version = 8;
    in.u.snapshot.unchanged = 1;
    round_trip(&in, &out);
    assert_int_equal(out.u.snapshot.version, 8);
    assert_int_equal(out.u.snapshot.unchanged, 1);
    assert_int_equal(out.u.snapshot.n_keys, 0);
    assert_null(out.u.snapshot.keys);
    gw_msg_fini(&out);
}

static void
test_usage_batch_1000(void **state)
{
    (void)state;
    struct gw_msg in = {0}, out;
    const size_t n = 1000;
    size_t i;

    in.type = GW_MSG_USAGE_BATCH;
    in.u.usage_batch.edge_id = gw_xstrdup("edge-us-2");
    in.u.usage_batch.seq = 5000000000ull;
    in.u.usage_batch.records = gw_xcalloc(n, sizeof(struct gw_usage_record));
    in.u.usage_batch.n_records = n;
    for (i = 0; i < n; i++)
        fill_record(&in.u.usage_batch.records[i], i);
    /* Full-length text fields survive untouched. */
    memset(in.u.usage_batch.records[1].model, 'm', sizeof(in.u.usage_batch.records[1].model) - 1);
    in.u.usage_batch.records[1].model[127] = '\0';
    in.u.usage_batch.records[2].model[0] = '\0';
    in.u.usage_batch.records[2].dialect[0] = '\0';

    round_trip(&in, &out);
    assert_string_equal(out.u.usage_batch.edge_id, "edge-us-2");
    assert_true(out.u.usage_batch.seq == 5000000000ull);
    assert_int_equal(out.u.usage_batch.n_records, n);
    for (i = 0; i < n; i++)
        assert_record_equal(&out.u.usage_batch.records[i], &in.u.usage_batch.records[i]);
    gw_msg_fini(&out);
    gw_msg_fini(&in);

    /* An empty batch is legal (it still advances the sequence). */
    in.type = GW_MSG_USAGE_BATCH;
    in.u.usage_batch.edge_id = gw_xstrdup("e");
    in.u.usage_batch.seq = 1;
    round_trip(&in, &out);
    assert_int_equal(out.u.usage_batch.n_records, 0);
    assert_null(out.u.usage_batch.records);
    gw_msg_fini(&out);
    gw_msg_fini(&in);
}

/* A model name longer than the fixed field is cut, at a UTF-8 boundary. */
static void
test_usage_text_truncated(void **state)
{
    (void)state;
    struct gw_buf rec = GW_BUF_INIT, batch = GW_BUF_INIT, env = GW_BUF_INIT;
    char model[300], reqid[100];
    struct gw_msg out;

    /* 126 ASCII bytes then a 3-byte character straddling the 127-byte cap. */
    memset(model, 'a', 126);
    memcpy(model + 126, "\xe2\x82\xac", 3);
    memset(model + 129, 'b', 100);
    memset(reqid, 'r', sizeof(reqid));
    pb_bytes(&rec, 1, reqid, sizeof(reqid));
    pb_uint(&rec, 2, 5);
    pb_bytes(&rec, 4, model, 229);
    pb_bytes(&rec, 5, "a-very-long-dialect-name", 24);
    pb_bytes(&batch, 1, "e", 1);
    pb_uint(&batch, 2, 3);
    pb_sub(&batch, 3, &rec);
    pb_sub(&env, 5, &batch);

    GW_PASS(gw_wire_decode(env.data, env.len, MAX_FRAME, &out));
    assert_int_equal(out.type, GW_MSG_USAGE_BATCH);
    assert_int_equal(out.u.usage_batch.n_records, 1);
    const struct gw_usage_record *r = &out.u.usage_batch.records[0];
    assert_int_equal(strlen(r->model), 126);
    assert_memory_equal(r->model, model, 126);
    assert_int_equal(strlen(r->request_id), sizeof(r->request_id) - 1);
    assert_string_equal(r->dialect, "a-very-long-dia");
    assert_int_equal(r->key_id, 5);
    gw_msg_fini(&out);
    gw_buf_fini(&env);
}

/* Account events travel with a batch, also a batch with no records. */
static void
test_account_events(void **state)
{
    (void)state;
    struct gw_msg in = {0}, out;
    struct gw_wire_usage_batch *b = &in.u.usage_batch;
    struct gw_usage_record rec;

    in.type = GW_MSG_USAGE_BATCH;
    b->edge_id = (char *)"edge-ev";
    b->seq = 77;
    b->n_account_events = 3;
    b->account_events = gw_xcalloc(3, sizeof(*b->account_events));
    b->account_events[0].account_id = 5;
    b->account_events[0].status = 401;
    b->account_events[0].time_ms = 1760000000000;
    snprintf(b->account_events[0].message, sizeof(b->account_events[0].message),
             "invalid x-api-key");
    b->account_events[1].account_id = UINT64_MAX;
    b->account_events[1].status = 429;
    b->account_events[1].time_ms = -1;
    b->account_events[1].retry_after_ms = 120000;
    b->account_events[2].account_id = 6;
    b->account_events[2].status = 0; /* connect failure, empty message */
    round_trip(&in, &out);
    assert_string_equal(out.u.usage_batch.edge_id, "edge-ev");
    assert_int_equal(out.u.usage_batch.seq, 77);
    assert_int_equal(out.u.usage_batch.n_records, 0);
    assert_int_equal(out.u.usage_batch.n_account_events, 3);
    for (size_t i = 0; i < 3; i++) {
        const struct gw_account_event *w = &b->account_events[i];
        const struct gw_account_event *g = &out.u.usage_batch.account_events[i];
        assert_int_equal(g->account_id, w->account_id);
        assert_int_equal(g->status, w->status);
        assert_int_equal(g->time_ms, w->time_ms);
        assert_int_equal(g->retry_after_ms, w->retry_after_ms);
        assert_string_equal(g->message, w->message);
    }
    gw_msg_fini(&out);

    /* With records too. */
    fill_record(&rec, 3);
    b->records = &rec;
    b->n_records = 1;
    round_trip(&in, &out);
    assert_int_equal(out.u.usage_batch.n_records, 1);
    assert_record_equal(&out.u.usage_batch.records[0], &rec);
    assert_int_equal(out.u.usage_batch.n_account_events, 3);
    gw_msg_fini(&out);

    /* A message without a NUL in its array is refused; a count without an
     * array too. */
    memset(b->account_events[2].message, 'm', sizeof(b->account_events[2].message));
    {
        struct gw_buf enc = GW_BUF_INIT;
        GW_FAIL(gw_wire_encode(&in, &enc), GW_EINVAL);
        free(b->account_events);
        b->account_events = NULL;
        GW_FAIL(gw_wire_encode(&in, &enc), GW_EINVAL);
        assert_int_equal(enc.len, 0);
        gw_buf_fini(&enc);
    }
}

/* A long event message from a peer is cut at a UTF-8 boundary. */
static void
test_account_event_message_truncated(void **state)
{
    (void)state;
    struct gw_buf ev = GW_BUF_INIT, batch = GW_BUF_INIT, env = GW_BUF_INIT;
    char msg[400];
    struct gw_msg out;

    memset(msg, 'a', 126);
    memcpy(msg + 126, "\xc3\xa9", 2); /* straddles the 127-byte cap */
    memset(msg + 128, 'b', sizeof(msg) - 128);
    pb_uint(&ev, 1, 9);
    pb_uint(&ev, 2, 403);
    pb_bytes(&ev, 5, msg, sizeof(msg));
    pb_bytes(&batch, 1, "e", 1);
    pb_uint(&batch, 2, 1);
    pb_sub(&batch, 4, &ev);
    pb_sub(&env, 5, &batch);
    GW_PASS(gw_wire_decode(env.data, env.len, MAX_FRAME, &out));
    assert_int_equal(out.u.usage_batch.n_account_events, 1);
    assert_int_equal(out.u.usage_batch.account_events[0].account_id, 9);
    assert_int_equal(out.u.usage_batch.account_events[0].status, 403);
    assert_int_equal(strlen(out.u.usage_batch.account_events[0].message), 126);
    gw_msg_fini(&out);
    gw_buf_fini(&env);
}

/* Encodes m (which the encoder accepts) and expects the decoder to refuse
 * it with GW_EPROTO, leaving nothing allocated. */
static void
expect_decode_refused(const struct gw_msg *m)
{
    struct gw_buf b = GW_BUF_INIT;
    struct gw_msg out;

    GW_PASS(gw_wire_encode(m, &b));
    GW_FAIL(gw_wire_decode(b.data, b.len, MAX_FRAME, &out), GW_EPROTO);
    assert_int_equal(out.type, GW_MSG_NONE);
    gw_buf_fini(&b);
}

static void
test_list_limits(void **state)
{
    (void)state;
    struct gw_msg m = {0}, out;
    struct gw_wire_account acct = {0};
    struct gw_wire_key key = {0};
    struct gw_wire_pool pool = {0};
    char *models[GW_WIRE_MODELS_MAX + 1];
    char long_name[GW_WIRE_MODEL_LEN_MAX + 2];
    char *proxy = malloc(GW_WIRE_PROXY_LEN_MAX + 2);

    assert_non_null(proxy);
    for (size_t i = 0; i <= GW_WIRE_MODELS_MAX; i++)
        models[i] = (char *)"m";
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    m.type = GW_MSG_SNAPSHOT;
    m.u.snapshot.version = 1;

    /* Accounts: the maximum passes, one more model, a longer name or a
     * longer proxy is refused. */
    acct.id = 1;
    acct.kind = (char *)"mock";
    acct.base_url = (char *)"http://x";
    acct.models = models;
    acct.n_models = GW_WIRE_MODELS_MAX;
    m.u.snapshot.accounts = &acct;
    m.u.snapshot.n_accounts = 1;
    round_trip(&m, &out);
    assert_int_equal(out.u.snapshot.accounts[0].n_models, GW_WIRE_MODELS_MAX);
    gw_msg_fini(&out);
    acct.n_models = GW_WIRE_MODELS_MAX + 1;
    expect_decode_refused(&m);
    long_name[GW_WIRE_MODEL_LEN_MAX] = '\0'; /* exactly the maximum */
    models[3] = long_name;
    acct.n_models = 4;
    round_trip(&m, &out);
    assert_string_equal(out.u.snapshot.accounts[0].models[3], long_name);
    gw_msg_fini(&out);
    long_name[GW_WIRE_MODEL_LEN_MAX] = 'n';
    expect_decode_refused(&m);
    models[3] = (char *)"m";
    memset(proxy, 'p', GW_WIRE_PROXY_LEN_MAX + 1);
    proxy[GW_WIRE_PROXY_LEN_MAX + 1] = '\0';
    acct.proxy = proxy;
    expect_decode_refused(&m);
    proxy[GW_WIRE_PROXY_LEN_MAX] = '\0';
    round_trip(&m, &out);
    assert_int_equal(strlen(out.u.snapshot.accounts[0].proxy), GW_WIRE_PROXY_LEN_MAX);
    gw_msg_fini(&out);
    m.u.snapshot.n_accounts = 0;
    m.u.snapshot.accounts = NULL;

    /* Keys: the same limit on allowed models. */
    key.id = 1;
    key.group_id = 1;
    key.allowed_models = models;
    key.n_allowed_models = GW_WIRE_MODELS_MAX + 1;
    m.u.snapshot.keys = &key;
    m.u.snapshot.n_keys = 1;
    expect_decode_refused(&m);
    key.n_allowed_models = 0;

    /* Pools: up to GW_WIRE_POOL_MEMBERS_MAX members. */
    pool.id = 1;
    pool.account_ids = calloc(GW_WIRE_POOL_MEMBERS_MAX + 1, sizeof(uint64_t));
    assert_non_null(pool.account_ids);
    pool.n_account_ids = GW_WIRE_POOL_MEMBERS_MAX + 1;
    m.u.snapshot.pools = &pool;
    m.u.snapshot.n_pools = 1;
    expect_decode_refused(&m);
    pool.n_account_ids = GW_WIRE_POOL_MEMBERS_MAX;
    pool.account_ids[GW_WIRE_POOL_MEMBERS_MAX - 1] = 99;
    round_trip(&m, &out);
    assert_int_equal(out.u.snapshot.pools[0].n_account_ids, GW_WIRE_POOL_MEMBERS_MAX);
    assert_int_equal(out.u.snapshot.pools[0].account_ids[GW_WIRE_POOL_MEMBERS_MAX - 1], 99);
    gw_msg_fini(&out);
    free(pool.account_ids);

    /* Usage batches: up to GW_WIRE_ACCOUNT_EVENTS_MAX events. */
    memset(&m, 0, sizeof(m));
    m.type = GW_MSG_USAGE_BATCH;
    m.u.usage_batch.edge_id = (char *)"e";
    m.u.usage_batch.seq = 1;
    m.u.usage_batch.account_events =
        calloc(GW_WIRE_ACCOUNT_EVENTS_MAX + 1, sizeof(struct gw_account_event));
    assert_non_null(m.u.usage_batch.account_events);
    m.u.usage_batch.n_account_events = GW_WIRE_ACCOUNT_EVENTS_MAX + 1;
    expect_decode_refused(&m);
    m.u.usage_batch.n_account_events = GW_WIRE_ACCOUNT_EVENTS_MAX;
    round_trip(&m, &out);
    assert_int_equal(out.u.usage_batch.n_account_events, GW_WIRE_ACCOUNT_EVENTS_MAX);
    gw_msg_fini(&out);
    free(m.u.usage_batch.account_events);
    free(proxy);
}

/* A list entry that is NULL, or a list count without its array, cannot be
 * encoded. */
static void
test_encode_bad_lists(void **state)
{
    (void)state;
    struct gw_msg m = {0};
    struct gw_wire_account acct = {0};
    struct gw_wire_pool pool = {0};
    struct gw_buf b = GW_BUF_INIT;
    char *models[2] = {(char *)"a", NULL};

    m.type = GW_MSG_SNAPSHOT;
    acct.id = 1;
    acct.kind = (char *)"mock";
    acct.base_url = (char *)"http://x";
    acct.models = models;
    acct.n_models = 2;
    m.u.snapshot.accounts = &acct;
    m.u.snapshot.n_accounts = 1;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);
    acct.n_models = 1;
    GW_PASS(gw_wire_encode(&m, &b));
    b.len = 0;
    acct.models = NULL;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);
    acct.n_models = 0;
    pool.id = 3;
    pool.n_account_ids = 1;
    m.u.snapshot.pools = &pool;
    m.u.snapshot.n_pools = 1;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);
    m.u.snapshot.pools = NULL;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);
    assert_int_equal(b.len, 0);
    gw_buf_fini(&b);
}

/* ------------------------------------------------ refusals */

static void
test_max_len(void **state)
{
    (void)state;
    struct gw_msg in = {0}, out;
    struct gw_buf b = GW_BUF_INIT;

    in.type = GW_MSG_USAGE_ACK;
    in.u.usage_ack.seq = 1;
    GW_PASS(gw_wire_encode(&in, &b));
    GW_FAIL(gw_wire_decode(b.data, b.len, b.len - 1, &out), GW_EMSGSIZE);
    assert_int_equal(out.type, GW_MSG_NONE);
    GW_PASS(gw_wire_decode(b.data, b.len, b.len, &out));
    gw_msg_fini(&out);
    /* The size check comes before any parsing: a huge length with a tiny
     * limit is refused even though the bytes would not be read. */
    GW_FAIL(gw_wire_decode(b.data, (size_t)1 << 40, 1024, &out), GW_EMSGSIZE);
    gw_buf_fini(&b);
}

static void
test_garbage(void **state)
{
    (void)state;
#define FRAME(lit)                                                                                 \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }
    static const struct {
        const char *p;
        size_t n;
    } frames[] = {
        FRAME("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        FRAME("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
        FRAME("\x22\x7f\x08"),     /* snapshot field claiming 127 bytes, 1 present */
        FRAME("\x0a\x02\x0a"),     /* hello whose body overruns the frame */
        FRAME("\x0a\x00"),         /* hello missing its required edge_id */
        FRAME("\x3a\x02\x12\x00"), /* error missing its required code */
        FRAME("\x2a\x03\x0a\x01"), /* batch body shorter than announced */
    };
#undef FRAME
    struct gw_msg out;
    size_t i;

    for (i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        GW_FAIL(gw_wire_decode(frames[i].p, frames[i].n, MAX_FRAME, &out), GW_EPROTO);
        assert_int_equal(out.type, GW_MSG_NONE);
    }
}

static void
test_truncated(void **state)
{
    (void)state;
    struct gw_msg in = {0}, out;
    struct gw_buf b = GW_BUF_INIT;
    size_t cut;

    in.type = GW_MSG_USAGE_BATCH;
    in.u.usage_batch.edge_id = gw_xstrdup("edge-1");
    in.u.usage_batch.seq = 300;
    in.u.usage_batch.records = gw_xcalloc(3, sizeof(struct gw_usage_record));
    in.u.usage_batch.n_records = 3;
    for (cut = 0; cut < 3; cut++)
        fill_record(&in.u.usage_batch.records[cut], cut + 1);
    GW_PASS(gw_wire_encode(&in, &b));
    /* Every proper prefix of a frame is rejected, including the empty one. */
    for (cut = 0; cut < b.len; cut++) {
        gw_err rv = gw_wire_decode(b.data, cut, MAX_FRAME, &out);
        if (rv != GW_EPROTO)
            fail_msg("prefix of %zu/%zu bytes: got %s", cut, b.len, gw_err_name(rv));
    }
    GW_PASS(gw_wire_decode(b.data, b.len, MAX_FRAME, &out));
    gw_msg_fini(&out);
    gw_msg_fini(&in);
    gw_buf_fini(&b);
}

static void
test_empty_envelope(void **state)
{
    (void)state;
    struct gw_msg out;
    struct gw_buf b = GW_BUF_INIT;

    GW_FAIL(gw_wire_decode("", 0, MAX_FRAME, &out), GW_EPROTO);
    /* Only an unknown field: a valid Envelope with no body. */
    pb_uint(&b, 15, 1);
    GW_FAIL(gw_wire_decode(b.data, b.len, MAX_FRAME, &out), GW_EPROTO);
    gw_buf_fini(&b);
}

static void
test_key_hash_length(void **state)
{
    (void)state;
    struct gw_msg out;
    struct gw_buf b = GW_BUF_INIT;
    static const size_t bad[] = {0, 3, 31, 33, 64};
    size_t i;

    /* The hand-made frame is valid with the right length... */
    raw_snapshot_with_hash(&b, GW_SHA256_LEN);
    GW_PASS(gw_wire_decode(b.data, b.len, MAX_FRAME, &out));
    assert_int_equal(out.type, GW_MSG_SNAPSHOT);
    assert_int_equal(out.u.snapshot.version, 42);
    assert_int_equal(out.u.snapshot.n_keys, 1);
    assert_int_equal(out.u.snapshot.keys[0].id, 7);
    assert_int_equal(out.u.snapshot.keys[0].group_id, 9);
    assert_int_equal(out.u.snapshot.keys[0].enabled, 1); /* proto default */
    assert_int_equal(out.u.snapshot.keys[0].key_hash[31], 0xab);
    gw_msg_fini(&out);
    gw_buf_fini(&b);

    /* ...and refused with any other. */
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        raw_snapshot_with_hash(&b, bad[i]);
        GW_FAIL(gw_wire_decode(b.data, b.len, MAX_FRAME, &out), GW_EPROTO);
        assert_int_equal(out.type, GW_MSG_NONE);
        gw_buf_fini(&b);
    }
}

static void
test_unknown_error_code(void **state)
{
    (void)state;
    struct gw_buf err = GW_BUF_INIT, env = GW_BUF_INIT;
    struct gw_msg out;

    pb_uint(&err, 1, 100000);
    pb_bytes(&err, 2, "from the future", 15);
    pb_sub(&env, 7, &err);
    GW_PASS(gw_wire_decode(env.data, env.len, MAX_FRAME, &out));
    assert_int_equal(out.type, GW_MSG_ERROR);
    assert_int_equal(out.u.error.code, GW_EINTERNAL);
    assert_string_equal(out.u.error.message, "from the future");
    gw_msg_fini(&out);
    gw_buf_fini(&env);
}

static void
test_encode_missing_required(void **state)
{
    (void)state;
    struct gw_buf b = GW_BUF_INIT;
    struct gw_msg m = {0};

    /* Nothing is appended on failure. */
    gw_buf_append_str(&b, "keep");

    m.type = GW_MSG_NONE;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);

    m.type = GW_MSG_HELLO;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);

    m.type = GW_MSG_FETCH_SNAPSHOT;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);

    m.type = GW_MSG_USAGE_BATCH;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);

    /* A record whose text field has no NUL. */
    struct gw_usage_record rec;
    fill_record(&rec, 1);
    memset(rec.dialect, 'x', sizeof(rec.dialect));
    m.u.usage_batch.edge_id = gw_xstrdup("e");
    m.u.usage_batch.records = &rec;
    m.u.usage_batch.n_records = 1;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);
    fill_record(&rec, 1);
    GW_PASS(gw_wire_encode(&m, &b)); /* the same batch, fixed, is fine */
    b.len = 4;
    free(m.u.usage_batch.edge_id);
    memset(&m, 0, sizeof(m));

    /* A count without its array. */
    m.type = GW_MSG_USAGE_BATCH;
    m.u.usage_batch.edge_id = (char *)"e";
    m.u.usage_batch.n_records = 2;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);
    memset(&m, 0, sizeof(m));

    /* An account without its required kind/base_url inside a snapshot. */
    struct gw_wire_account acct = {0};
    acct.id = 1;
    acct.base_url = (char *)"http://x";
    m.type = GW_MSG_SNAPSHOT;
    m.u.snapshot.accounts = &acct;
    m.u.snapshot.n_accounts = 1;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);
    acct.kind = (char *)"mock";
    acct.base_url = NULL;
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);
    acct.base_url = (char *)"http://x";
    GW_PASS(gw_wire_encode(&m, &b));
    b.len = 4;
    m.u.snapshot.n_keys = 1; /* keys == NULL */
    GW_FAIL(gw_wire_encode(&m, &b), GW_EINVAL);

    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "keep", 4);
    gw_buf_fini(&b);
}

/* Encoding appends: two frames back to back decode separately. */
static void
test_encode_appends(void **state)
{
    (void)state;
    struct gw_buf b = GW_BUF_INIT;
    struct gw_msg m = {0}, out;
    size_t first;

    m.type = GW_MSG_USAGE_ACK;
    m.u.usage_ack.seq = 1;
    GW_PASS(gw_wire_encode(&m, &b));
    first = b.len;
    m.u.usage_ack.seq = 2;
    GW_PASS(gw_wire_encode(&m, &b));
    assert_true(b.len > first);
    GW_PASS(gw_wire_decode(b.data + first, b.len - first, MAX_FRAME, &out));
    assert_int_equal(out.u.usage_ack.seq, 2);
    gw_msg_fini(&out);
    gw_buf_fini(&b);
}

/* ---- distributed mode: enrolment, deltas, heartbeats ---------------------- */

static void
test_hello_reply_enrolment(void **state)
{
    (void)state;
    struct gw_msg in = {0}, out;
    struct gw_buf b = GW_BUF_INIT;

    in.type = GW_MSG_HELLO_REPLY;
    in.u.hello_reply.nonce = gw_xmalloc(GW_WIRE_NONCE_LEN);
    for (size_t i = 0; i < GW_WIRE_NONCE_LEN; i++)
        in.u.hello_reply.nonce[i] = (uint8_t)(i * 7);
    in.u.hello_reply.nonce_len = GW_WIRE_NONCE_LEN;
    round_trip(&in, &out);
    assert_int_equal(out.u.hello_reply.nonce_len, GW_WIRE_NONCE_LEN);
    assert_memory_equal(out.u.hello_reply.nonce, in.u.hello_reply.nonce, GW_WIRE_NONCE_LEN);
    assert_int_equal(out.u.hello_reply.authenticated, 0);
    assert_null(out.u.hello_reply.push_url);
    gw_msg_fini(&out);
    gw_msg_fini(&in);

    in.type = GW_MSG_HELLO_REPLY;
    in.u.hello_reply.config_version = 17;
    in.u.hello_reply.last_usage_seq = 9;
    in.u.hello_reply.authenticated = 1;
    in.u.hello_reply.push_url = gw_xstrdup("tls+tcp://hub.example:7601");
    round_trip(&in, &out);
    assert_int_equal(out.u.hello_reply.config_version, 17);
    assert_int_equal(out.u.hello_reply.last_usage_seq, 9);
    assert_int_equal(out.u.hello_reply.authenticated, 1);
    assert_string_equal(out.u.hello_reply.push_url, "tls+tcp://hub.example:7601");
    assert_null(out.u.hello_reply.nonce);
    gw_msg_fini(&out);
    gw_msg_fini(&in);

    /* A nonce (or proof) over GW_WIRE_NONCE_MAX bytes is refused. */
    in.type = GW_MSG_HELLO_REPLY;
    in.u.hello_reply.nonce = gw_xcalloc(1, GW_WIRE_NONCE_MAX + 1);
    in.u.hello_reply.nonce_len = GW_WIRE_NONCE_MAX + 1;
    expect_decode_refused(&in);
    gw_msg_fini(&in);
    in.type = GW_MSG_HELLO;
    in.u.hello.edge_id = gw_xstrdup("e");
    in.u.hello.proof = gw_xcalloc(1, GW_WIRE_NONCE_MAX + 1);
    in.u.hello.proof_len = GW_WIRE_NONCE_MAX + 1;
    expect_decode_refused(&in);
    gw_msg_fini(&in);
    gw_buf_fini(&b);
}

static void
test_hello_proof(void **state)
{
    (void)state;
    static const uint8_t nonce[4] = {1, 2, 3, 4};
    uint8_t a[GW_SHA256_LEN], b[GW_SHA256_LEN], want[GW_SHA256_LEN];
    struct gw_buf msg = GW_BUF_INIT;

    /* Exactly HMAC(secret, "aicarpool-hello\0" | nonce | edge_id). */
    gw_buf_append(&msg, "aicarpool-hello", 16);
    gw_buf_append(&msg, nonce, sizeof(nonce));
    gw_buf_append_str(&msg, "edge-1");
    gw_hmac_sha256("s3cret", 6, msg.data, msg.len, want);
    gw_wire_hello_proof("s3cret", 6, nonce, sizeof(nonce), "edge-1", a);
    assert_memory_equal(a, want, sizeof(want));
    gw_wire_hello_proof("s3cret", 6, nonce, sizeof(nonce), "edge-2", b);
    assert_memory_not_equal(a, b, sizeof(a));
    gw_wire_hello_proof("s3creT", 6, nonce, sizeof(nonce), "edge-1", b);
    assert_memory_not_equal(a, b, sizeof(a));
    gw_buf_fini(&msg);
}

static void
test_fetch_deltas_heartbeat(void **state)
{
    (void)state;
    struct gw_msg in = {0}, out;

    in.type = GW_MSG_FETCH_DELTAS;
    in.u.fetch_deltas.edge_id = gw_xstrdup("edge-7");
    in.u.fetch_deltas.from_version = 123456789012ULL;
    round_trip(&in, &out);
    assert_string_equal(out.u.fetch_deltas.edge_id, "edge-7");
    assert_int_equal(out.u.fetch_deltas.from_version, 123456789012ULL);
    gw_msg_fini(&out);
    gw_msg_fini(&in);

    in.type = GW_MSG_HEARTBEAT;
    in.u.heartbeat.edge_id = gw_xstrdup("edge-7");
    in.u.heartbeat.snapshot_version = 44;
    in.u.heartbeat.snapshot_source = gw_xstrdup("disk");
    in.u.heartbeat.requests_total = UINT64_MAX;
    in.u.heartbeat.errors_total = 3;
    in.u.heartbeat.usage_pending = 1000;
    in.u.heartbeat.uptime_s = -1;
    in.u.heartbeat.region = gw_xstrdup("ap-south");
    in.u.heartbeat.version = gw_xstrdup("0.2.0");
    round_trip(&in, &out);
    assert_string_equal(out.u.heartbeat.edge_id, "edge-7");
    assert_int_equal(out.u.heartbeat.snapshot_version, 44);
    assert_string_equal(out.u.heartbeat.snapshot_source, "disk");
    assert_true(out.u.heartbeat.requests_total == UINT64_MAX);
    assert_int_equal(out.u.heartbeat.errors_total, 3);
    assert_int_equal(out.u.heartbeat.usage_pending, 1000);
    assert_int_equal(out.u.heartbeat.uptime_s, -1);
    assert_string_equal(out.u.heartbeat.region, "ap-south");
    assert_string_equal(out.u.heartbeat.version, "0.2.0");
    gw_msg_fini(&out);
    gw_msg_fini(&in);

    in.type = GW_MSG_HEARTBEAT_ACK;
    in.u.heartbeat_ack.config_version = 99;
    round_trip(&in, &out);
    assert_int_equal(out.u.heartbeat_ack.config_version, 99);
    gw_msg_fini(&out);

    /* Required edge_id missing: not encodable. */
    struct gw_buf b = GW_BUF_INIT;
    memset(&in, 0, sizeof(in));
    in.type = GW_MSG_HEARTBEAT;
    GW_FAIL(gw_wire_encode(&in, &b), GW_EINVAL);
    in.type = GW_MSG_FETCH_DELTAS;
    GW_FAIL(gw_wire_encode(&in, &b), GW_EINVAL);
    gw_buf_fini(&b);
}

static void
test_deltas(void **state)
{
    (void)state;
    struct gw_msg in = {0}, out;
    struct gw_wire_change *c;
    static char *models[] = {(char *)"claude-x", (char *)"gpt-y"};
    static uint64_t members[] = {4, 5, 6};
    uint8_t cred[] = {'s', 'k', 0, 'z'};

    in.type = GW_MSG_DELTAS;
    in.u.deltas.from_version = 10;
    in.u.deltas.to_version = 20;
    in.u.deltas.n_changes = 10;
    c = in.u.deltas.changes = calloc(10, sizeof(*c));
    assert_non_null(c);
    for (int i = 0; i < 10; i++)
        c[i].version = 11 + (uint64_t)i;
    c[0].kind = GW_CHANGE_KEY;
    c[0].u.key.id = 1;
    memset(c[0].u.key.key_hash, 0xAB, GW_SHA256_LEN);
    c[0].u.key.group_id = 2;
    c[0].u.key.enabled = 1;
    c[0].u.key.rpm_limit = 60;
    c[0].u.key.allowed_models = models;
    c[0].u.key.n_allowed_models = 2;
    c[1].kind = GW_CHANGE_GROUP;
    c[1].u.group.id = 2;
    c[1].u.group.name = (char *)"team";
    c[1].u.group.mode = (char *)"pool";
    c[1].u.group.pool_id = 8;
    c[2].kind = GW_CHANGE_ACCOUNT;
    c[2].u.account.id = 3;
    c[2].u.account.name = (char *)"acct";
    c[2].u.account.kind = (char *)"mock";
    c[2].u.account.base_url = (char *)"http://x";
    c[2].u.account.credential = cred;
    c[2].u.account.credential_len = sizeof(cred);
    c[2].u.account.enabled = 1;
    c[2].u.account.cooldown_until_ms = 77;
    c[3].kind = GW_CHANGE_POOL;
    c[3].u.pool.id = 8;
    c[3].u.pool.name = (char *)"p";
    c[3].u.pool.account_ids = members;
    c[3].u.pool.n_account_ids = 3;
    c[4].kind = GW_CHANGE_BINDING;
    c[4].u.binding.group_id = 2;
    c[4].u.binding.account_id = 3;
    c[5].kind = GW_CHANGE_KEY_REMOVED;
    c[5].u.removed_id = 100;
    c[6].kind = GW_CHANGE_ACCOUNT_REMOVED;
    c[6].u.removed_id = 101;
    c[7].kind = GW_CHANGE_GROUP_REMOVED;
    c[7].u.removed_id = 102;
    c[8].kind = GW_CHANGE_BINDING_REMOVED;
    c[8].u.binding.group_id = 5;
    c[8].u.binding.account_id = 6;
    c[9].kind = GW_CHANGE_POOL_REMOVED;
    c[9].u.removed_id = 103;
    round_trip(&in, &out);
    assert_int_equal(out.u.deltas.from_version, 10);
    assert_int_equal(out.u.deltas.to_version, 20);
    assert_int_equal(out.u.deltas.snapshot_required, 0);
    assert_int_equal(out.u.deltas.n_changes, 10);
    c = out.u.deltas.changes;
    for (int i = 0; i < 10; i++)
        assert_int_equal(c[i].version, 11 + (uint64_t)i);
    assert_int_equal(c[0].kind, GW_CHANGE_KEY);
    assert_int_equal(c[0].u.key.rpm_limit, 60);
    assert_int_equal(c[0].u.key.n_allowed_models, 2);
    assert_string_equal(c[0].u.key.allowed_models[1], "gpt-y");
    assert_int_equal(c[0].u.key.key_hash[31], 0xAB);
    assert_int_equal(c[1].kind, GW_CHANGE_GROUP);
    assert_string_equal(c[1].u.group.mode, "pool");
    assert_int_equal(c[1].u.group.pool_id, 8);
    assert_int_equal(c[2].kind, GW_CHANGE_ACCOUNT);
    assert_int_equal(c[2].u.account.credential_len, sizeof(cred));
    assert_memory_equal(c[2].u.account.credential, cred, sizeof(cred));
    assert_int_equal(c[2].u.account.cooldown_until_ms, 77);
    assert_int_equal(c[3].kind, GW_CHANGE_POOL);
    assert_int_equal(c[3].u.pool.n_account_ids, 3);
    assert_int_equal(c[3].u.pool.account_ids[2], 6);
    assert_int_equal(c[4].kind, GW_CHANGE_BINDING);
    assert_int_equal(c[4].u.binding.account_id, 3);
    assert_int_equal(c[5].kind, GW_CHANGE_KEY_REMOVED);
    assert_int_equal(c[5].u.removed_id, 100);
    assert_int_equal(c[6].kind, GW_CHANGE_ACCOUNT_REMOVED);
    assert_int_equal(c[6].u.removed_id, 101);
    assert_int_equal(c[7].kind, GW_CHANGE_GROUP_REMOVED);
    assert_int_equal(c[8].kind, GW_CHANGE_BINDING_REMOVED);
    assert_int_equal(c[8].u.binding.group_id, 5);
    assert_int_equal(c[8].u.binding.account_id, 6);
    assert_int_equal(c[9].kind, GW_CHANGE_POOL_REMOVED);
    assert_int_equal(c[9].u.removed_id, 103);
    gw_msg_fini(&out);

    /* A model list over the limit inside a change is refused like in a
     * snapshot; an unknown kind cannot be encoded. */
    in.u.deltas.changes[0].u.key.n_allowed_models = GW_WIRE_MODELS_MAX + 1;
    {
        char *many[GW_WIRE_MODELS_MAX + 1];
        for (size_t i = 0; i <= GW_WIRE_MODELS_MAX; i++)
            many[i] = (char *)"m";
        in.u.deltas.changes[0].u.key.allowed_models = many;
        expect_decode_refused(&in);
    }
    in.u.deltas.changes[0].u.key.n_allowed_models = 0;
    in.u.deltas.changes[0].u.key.allowed_models = NULL;
    in.u.deltas.changes[1].kind = GW_CHANGE_NONE;
    {
        struct gw_buf b = GW_BUF_INIT;
        GW_FAIL(gw_wire_encode(&in, &b), GW_EINVAL);
        gw_buf_fini(&b);
    }
    free(in.u.deltas.changes);

    /* snapshot_required, no changes. */
    memset(&in, 0, sizeof(in));
    in.type = GW_MSG_DELTAS;
    in.u.deltas.from_version = 1;
    in.u.deltas.to_version = 500000;
    in.u.deltas.snapshot_required = 1;
    round_trip(&in, &out);
    assert_int_equal(out.u.deltas.snapshot_required, 1);
    assert_int_equal(out.u.deltas.n_changes, 0);
    gw_msg_fini(&out);
}

static void
put_varint(struct gw_buf *b, uint64_t v)
{
    uint8_t c;

    do {
        c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            c |= 0x80;
        gw_buf_append(b, &c, 1);
    } while (v);
}

/* A Deltas frame of n key_removed changes, built by hand so the count can
 * exceed what the encoder accepts. */
static void
deltas_frame(size_t n, struct gw_buf *out)
{
    struct gw_buf d = GW_BUF_INIT;
    static const uint8_t change[] = {0x1a, 0x04, 0x08, 0x01, 0x38, 0x02};

    gw_buf_append(&d, "\x08\x00\x10\x01", 4); /* from 0, to 1 */
    for (size_t i = 0; i < n; i++)
        gw_buf_append(&d, change, sizeof(change));
    gw_buf_append(out, "\x4a", 1); /* Envelope.deltas = 9, length-delimited */
    put_varint(out, d.len);
    gw_buf_append(out, d.data, d.len);
    gw_buf_fini(&d);
}

static void
test_deltas_count_limit(void **state)
{
    (void)state;
    struct gw_buf b = GW_BUF_INIT;
    struct gw_msg out;

    deltas_frame(GW_WIRE_CHANGES_MAX, &b);
    GW_PASS(gw_wire_decode(b.data, b.len, MAX_FRAME, &out));
    assert_int_equal(out.u.deltas.n_changes, GW_WIRE_CHANGES_MAX);
    assert_int_equal(out.u.deltas.changes[0].kind, GW_CHANGE_KEY_REMOVED);
    assert_int_equal(out.u.deltas.changes[0].u.removed_id, 2);
    gw_msg_fini(&out);
    gw_buf_reset(&b);
    deltas_frame(GW_WIRE_CHANGES_MAX + 1, &b);
    GW_FAIL(gw_wire_decode(b.data, b.len, MAX_FRAME, &out), GW_EPROTO);
    gw_buf_fini(&b);
}

/* A small frame announcing a huge number of (empty) sub-messages is refused
 * without allocating without bound. */
static void
test_decode_amplification(void **state)
{
    (void)state;
    struct gw_buf b = GW_BUF_INIT, s = GW_BUF_INIT;
    struct gw_msg out;
    size_t n = 1u << 20;

    gw_buf_append(&s, "\x08\x01", 2); /* version 1 */
    for (size_t i = 0; i < n; i++)
        gw_buf_append(&s, "\x2a\x00", 2); /* an empty Account */
    gw_buf_append(&b, "\x22", 1);         /* Envelope.snapshot = 4 */
    put_varint(&b, s.len);
    gw_buf_append(&b, s.data, s.len);
    GW_FAIL(gw_wire_decode(b.data, b.len, MAX_FRAME, &out), GW_EPROTO);
    assert_int_equal(out.type, GW_MSG_NONE);
    gw_buf_fini(&s);
    gw_buf_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_small_messages),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_usage_batch_1000),
        cmocka_unit_test(test_usage_text_truncated),
        cmocka_unit_test(test_account_events),
        cmocka_unit_test(test_account_event_message_truncated),
        cmocka_unit_test(test_list_limits),
        cmocka_unit_test(test_encode_bad_lists),
        cmocka_unit_test(test_max_len),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_empty_envelope),
        cmocka_unit_test(test_key_hash_length),
        cmocka_unit_test(test_unknown_error_code),
        cmocka_unit_test(test_encode_missing_required),
        cmocka_unit_test(test_encode_appends),
        cmocka_unit_test(test_hello_reply_enrolment),
        cmocka_unit_test(test_hello_proof),
        cmocka_unit_test(test_fetch_deltas_heartbeat),
        cmocka_unit_test(test_deltas),
        cmocka_unit_test(test_deltas_count_limit),
        cmocka_unit_test(test_decode_amplification),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
