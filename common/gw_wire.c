/* SPDX-License-Identifier: Apache-2.0 */
/* The protobuf gate: converts between our gw_msg structs and the protobuf-c
 * structs generated from proto/carpool.proto. The only file that includes
 * the generated header. Encoding borrows our strings into short-lived
 * protobuf-c structs; decoding copies everything out of the unpacked message
 * and frees it, so no protobuf-c memory ever leaves this file. */
#include "gw_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "carpool.pb-c.h"

/* ---------------------------------------------------------------- encode */

/* protobuf-c declares string fields as char * but never writes through them
 * while packing, so borrowing our const strings is safe. */
static char *
wire_borrow(const char *s)
{
    return (char *)(uintptr_t)s;
}

/* A fixed-size text field of a usage record must hold a NUL inside its
 * array; otherwise the record is malformed and we refuse to send it. */
static gw_err
wire_fixed_text(const char *field, size_t size, char **out)
{
    if (memchr(field, '\0', size) == NULL)
        return GW_EINVAL;
    *out = wire_borrow(field);
    return GW_OK;
}

static gw_err
wire_record_to_pb(const struct gw_usage_record *r, Carpool__UsageRecord *pr)
{
    gw_err rv;

    carpool__usage_record__init(pr);
    rv = wire_fixed_text(r->request_id, sizeof(r->request_id), &pr->request_id);
    if (rv != GW_OK)
        return rv;
    rv = wire_fixed_text(r->model, sizeof(r->model), &pr->model);
    if (rv != GW_OK)
        return rv;
    rv = wire_fixed_text(r->dialect, sizeof(r->dialect), &pr->dialect);
    if (rv != GW_OK)
        return rv;
    /* Empty optional text is left out: it decodes back to "" either way. */
    if (pr->model[0] == '\0')
        pr->model = NULL;
    if (pr->dialect[0] == '\0')
        pr->dialect = NULL;
    pr->key_id = r->key_id;
    pr->has_account_id = 1;
    pr->account_id = r->account_id;
    pr->has_input_tokens = 1;
    pr->input_tokens = r->input_tokens;
    pr->has_output_tokens = 1;
    pr->output_tokens = r->output_tokens;
    pr->has_cache_read_tokens = 1;
    pr->cache_read_tokens = r->cache_read_tokens;
    pr->has_cache_write_5m_tokens = 1;
    pr->cache_write_5m_tokens = r->cache_write_5m_tokens;
    pr->has_cache_write_1h_tokens = 1;
    pr->cache_write_1h_tokens = r->cache_write_1h_tokens;
    pr->has_reasoning_tokens = 1;
    pr->reasoning_tokens = r->reasoning_tokens;
    pr->has_status = 1;
    pr->status = r->status;
    pr->has_latency_ms = 1;
    pr->latency_ms = r->latency_ms;
    pr->has_time_ms = 1;
    pr->time_ms = r->time_ms;
    pr->has_partial = 1;
    pr->partial = r->partial ? 1 : 0;
    return GW_OK;
}

/* Heap storage for the protobuf-c view of a message while it is packed.
 * Everything is borrowed from the gw_msg except these arrays. */
struct wire_enc {
    Carpool__Key *keys;
    Carpool__Key **key_ptrs;
    Carpool__Group *groups;
    Carpool__Group **group_ptrs;
    Carpool__Account *accounts;
    Carpool__Account **account_ptrs;
    Carpool__Binding *bindings;
    Carpool__Binding **binding_ptrs;
    Carpool__Pool *pools;
    Carpool__Pool **pool_ptrs;
    Carpool__UsageRecord *records;
    Carpool__UsageRecord **record_ptrs;
    Carpool__AccountEvent *events;
    Carpool__AccountEvent **event_ptrs;
    struct wire_change_enc *changes;
    Carpool__Change **change_ptrs;
};

/* The protobuf-c view of one change: the Change and whichever entity it
 * carries. */
struct wire_change_enc {
    Carpool__Change change;
    union {
        Carpool__Key key;
        Carpool__Group group;
        Carpool__Account account;
        Carpool__Pool pool;
        Carpool__Binding binding;
    } u;
};

static void
wire_enc_fini(struct wire_enc *e)
{
    free(e->keys);
    free(e->key_ptrs);
    free(e->groups);
    free(e->group_ptrs);
    free(e->accounts);
    free(e->account_ptrs);
    free(e->bindings);
    free(e->binding_ptrs);
    free(e->pools);
    free(e->pool_ptrs);
    free(e->records);
    free(e->record_ptrs);
    free(e->events);
    free(e->event_ptrs);
    free(e->changes);
    free(e->change_ptrs);
}

/* A list of strings to send: announced entries must exist. */
static int
wire_strv_ok(char *const *v, size_t n)
{
    if (n == 0)
        return 1;
    if (v == NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == NULL)
            return 0;
    }
    return 1;
}

static gw_err
wire_key_to_pb(const struct gw_wire_key *k, Carpool__Key *pk)
{
    carpool__key__init(pk);
    pk->id = k->id;
    pk->key_hash.data = (uint8_t *)(uintptr_t)k->key_hash;
    pk->key_hash.len = sizeof(k->key_hash);
    pk->group_id = k->group_id;
    pk->has_enabled = 1;
    pk->enabled = k->enabled ? 1 : 0;
    pk->has_expires_at = 1;
    pk->expires_at = k->expires_at;
    /* Limits are sent only when set: 0 (unlimited) is the default. */
    pk->has_rpm_limit = k->rpm_limit != 0;
    pk->rpm_limit = k->rpm_limit;
    pk->has_tpm_limit = k->tpm_limit != 0;
    pk->tpm_limit = k->tpm_limit;
    pk->has_concurrency_limit = k->concurrency_limit != 0;
    pk->concurrency_limit = k->concurrency_limit;
    if (!wire_strv_ok(k->allowed_models, k->n_allowed_models))
        return GW_EINVAL;
    pk->allowed_models = k->allowed_models;
    pk->n_allowed_models = k->n_allowed_models;
    return GW_OK;
}

static void
wire_group_to_pb(const struct gw_wire_group *g, Carpool__Group *pg)
{
    carpool__group__init(pg);
    pg->id = g->id;
    pg->name = wire_borrow(g->name);
    /* NULL keeps the descriptor's default ("dedicated"). */
    if (g->mode != NULL)
        pg->mode = wire_borrow(g->mode);
    pg->has_pool_id = g->pool_id != 0;
    pg->pool_id = g->pool_id;
}

static gw_err
wire_account_to_pb(const struct gw_wire_account *a, Carpool__Account *pa)
{
    carpool__account__init(pa);
    pa->id = a->id;
    pa->name = wire_borrow(a->name);
    pa->kind = wire_borrow(a->kind);
    pa->base_url = wire_borrow(a->base_url);
    if (a->credential != NULL) {
        pa->has_credential = 1;
        pa->credential.data = a->credential;
        pa->credential.len = a->credential_len;
    }
    pa->has_priority = 1;
    pa->priority = a->priority;
    pa->has_weight = 1;
    pa->weight = a->weight;
    pa->has_enabled = 1;
    pa->enabled = a->enabled ? 1 : 0;
    if (!wire_strv_ok(a->models, a->n_models))
        return GW_EINVAL;
    pa->models = a->models;
    pa->n_models = a->n_models;
    pa->has_max_concurrency = a->max_concurrency != 0;
    pa->max_concurrency = a->max_concurrency;
    pa->proxy = wire_borrow(a->proxy);
    pa->has_cooldown_until_ms = a->cooldown_until_ms != 0;
    pa->cooldown_until_ms = a->cooldown_until_ms;
    return GW_OK;
}

static gw_err
wire_pool_to_pb(const struct gw_wire_pool *p, Carpool__Pool *pp)
{
    carpool__pool__init(pp);
    if (p->n_account_ids > 0 && p->account_ids == NULL)
        return GW_EINVAL;
    pp->id = p->id;
    pp->name = wire_borrow(p->name);
    pp->account_ids = p->account_ids;
    pp->n_account_ids = p->n_account_ids;
    return GW_OK;
}

static gw_err
wire_snapshot_to_pb(const struct gw_wire_snapshot *s, Carpool__Snapshot *ps, struct wire_enc *e)
{
    size_t i;

    ps->version = s->version;
    ps->has_unchanged = 1;
    ps->unchanged = s->unchanged ? 1 : 0;

    if (s->n_keys > 0) {
        e->keys = gw_xcalloc(s->n_keys, sizeof(*e->keys));
        e->key_ptrs = gw_xcalloc(s->n_keys, sizeof(*e->key_ptrs));
        for (i = 0; i < s->n_keys; i++) {
            gw_err rv = wire_key_to_pb(&s->keys[i], &e->keys[i]);
            if (rv != GW_OK)
                return rv;
            e->key_ptrs[i] = &e->keys[i];
        }
        ps->keys = e->key_ptrs;
        ps->n_keys = s->n_keys;
    }
    if (s->n_groups > 0) {
        e->groups = gw_xcalloc(s->n_groups, sizeof(*e->groups));
        e->group_ptrs = gw_xcalloc(s->n_groups, sizeof(*e->group_ptrs));
        for (i = 0; i < s->n_groups; i++) {
            wire_group_to_pb(&s->groups[i], &e->groups[i]);
            e->group_ptrs[i] = &e->groups[i];
        }
        ps->groups = e->group_ptrs;
        ps->n_groups = s->n_groups;
    }
    if (s->n_accounts > 0) {
        e->accounts = gw_xcalloc(s->n_accounts, sizeof(*e->accounts));
        e->account_ptrs = gw_xcalloc(s->n_accounts, sizeof(*e->account_ptrs));
        for (i = 0; i < s->n_accounts; i++) {
            gw_err rv = wire_account_to_pb(&s->accounts[i], &e->accounts[i]);
            if (rv != GW_OK)
                return rv;
            e->account_ptrs[i] = &e->accounts[i];
        }
        ps->accounts = e->account_ptrs;
        ps->n_accounts = s->n_accounts;
    }
    if (s->n_bindings > 0) {
        e->bindings = gw_xcalloc(s->n_bindings, sizeof(*e->bindings));
        e->binding_ptrs = gw_xcalloc(s->n_bindings, sizeof(*e->binding_ptrs));
        for (i = 0; i < s->n_bindings; i++) {
            Carpool__Binding *pb = &e->bindings[i];
            carpool__binding__init(pb);
            pb->group_id = s->bindings[i].group_id;
            pb->account_id = s->bindings[i].account_id;
            e->binding_ptrs[i] = pb;
        }
        ps->bindings = e->binding_ptrs;
        ps->n_bindings = s->n_bindings;
    }
    if (s->n_pools > 0) {
        e->pools = gw_xcalloc(s->n_pools, sizeof(*e->pools));
        e->pool_ptrs = gw_xcalloc(s->n_pools, sizeof(*e->pool_ptrs));
        for (i = 0; i < s->n_pools; i++) {
            gw_err rv = wire_pool_to_pb(&s->pools[i], &e->pools[i]);
            if (rv != GW_OK)
                return rv;
            e->pool_ptrs[i] = &e->pools[i];
        }
        ps->pools = e->pool_ptrs;
        ps->n_pools = s->n_pools;
    }
    return GW_OK;
}

static gw_err
wire_change_to_pb(const struct gw_wire_change *c, struct wire_change_enc *ce)
{
    Carpool__Change *pc = &ce->change;

    carpool__change__init(pc);
    pc->version = c->version;
    switch (c->kind) {
    case GW_CHANGE_KEY:
        pc->entity_case = CARPOOL__CHANGE__ENTITY_KEY;
        pc->key = &ce->u.key;
        return wire_key_to_pb(&c->u.key, &ce->u.key);
    case GW_CHANGE_GROUP:
        pc->entity_case = CARPOOL__CHANGE__ENTITY_GROUP;
        pc->group = &ce->u.group;
        wire_group_to_pb(&c->u.group, &ce->u.group);
        return GW_OK;
    case GW_CHANGE_ACCOUNT:
        pc->entity_case = CARPOOL__CHANGE__ENTITY_ACCOUNT;
        pc->account = &ce->u.account;
        return wire_account_to_pb(&c->u.account, &ce->u.account);
    case GW_CHANGE_POOL:
        pc->entity_case = CARPOOL__CHANGE__ENTITY_POOL;
        pc->pool = &ce->u.pool;
        return wire_pool_to_pb(&c->u.pool, &ce->u.pool);
    case GW_CHANGE_BINDING:
    case GW_CHANGE_BINDING_REMOVED:
        carpool__binding__init(&ce->u.binding);
        ce->u.binding.group_id = c->u.binding.group_id;
        ce->u.binding.account_id = c->u.binding.account_id;
        if (c->kind == GW_CHANGE_BINDING) {
            pc->entity_case = CARPOOL__CHANGE__ENTITY_BINDING;
            pc->binding = &ce->u.binding;
        } else {
            pc->entity_case = CARPOOL__CHANGE__ENTITY_BINDING_REMOVED;
            pc->binding_removed = &ce->u.binding;
        }
        return GW_OK;
    case GW_CHANGE_KEY_REMOVED:
        pc->entity_case = CARPOOL__CHANGE__ENTITY_KEY_REMOVED;
        pc->key_removed = c->u.removed_id;
        return GW_OK;
    case GW_CHANGE_ACCOUNT_REMOVED:
        pc->entity_case = CARPOOL__CHANGE__ENTITY_ACCOUNT_REMOVED;
        pc->account_removed = c->u.removed_id;
        return GW_OK;
    case GW_CHANGE_GROUP_REMOVED:
        pc->entity_case = CARPOOL__CHANGE__ENTITY_GROUP_REMOVED;
        pc->group_removed = c->u.removed_id;
        return GW_OK;
    case GW_CHANGE_POOL_REMOVED:
        pc->entity_case = CARPOOL__CHANGE__ENTITY_POOL_REMOVED;
        pc->pool_removed = c->u.removed_id;
        return GW_OK;
    case GW_CHANGE_NONE:
    default:
        return GW_EINVAL;
    }
}

static gw_err
wire_deltas_to_pb(const struct gw_wire_deltas *d, Carpool__Deltas *pd, struct wire_enc *e)
{
    size_t i;
    gw_err rv;

    pd->from_version = d->from_version;
    pd->to_version = d->to_version;
    pd->has_snapshot_required = d->snapshot_required != 0;
    pd->snapshot_required = d->snapshot_required ? 1 : 0;
    if (d->n_changes == 0)
        return GW_OK;
    if (d->changes == NULL || d->n_changes > GW_WIRE_CHANGES_MAX)
        return GW_EINVAL;
    e->changes = gw_xcalloc(d->n_changes, sizeof(*e->changes));
    e->change_ptrs = gw_xcalloc(d->n_changes, sizeof(*e->change_ptrs));
    for (i = 0; i < d->n_changes; i++) {
        rv = wire_change_to_pb(&d->changes[i], &e->changes[i]);
        if (rv != GW_OK)
            return rv;
        e->change_ptrs[i] = &e->changes[i].change;
    }
    pd->changes = e->change_ptrs;
    pd->n_changes = d->n_changes;
    return GW_OK;
}

static gw_err
wire_batch_to_pb(const struct gw_wire_usage_batch *b, Carpool__UsageBatch *pb, struct wire_enc *e)
{
    size_t i;
    gw_err rv;

    pb->edge_id = wire_borrow(b->edge_id);
    pb->seq = b->seq;
    if ((b->n_records > 0 && b->records == NULL) ||
        (b->n_account_events > 0 && b->account_events == NULL))
        return GW_EINVAL;
    if (b->n_records > 0) {
        e->records = gw_xcalloc(b->n_records, sizeof(*e->records));
        e->record_ptrs = gw_xcalloc(b->n_records, sizeof(*e->record_ptrs));
        for (i = 0; i < b->n_records; i++) {
            rv = wire_record_to_pb(&b->records[i], &e->records[i]);
            if (rv != GW_OK)
                return rv;
            e->record_ptrs[i] = &e->records[i];
        }
        pb->records = e->record_ptrs;
        pb->n_records = b->n_records;
    }
    if (b->n_account_events > 0) {
        e->events = gw_xcalloc(b->n_account_events, sizeof(*e->events));
        e->event_ptrs = gw_xcalloc(b->n_account_events, sizeof(*e->event_ptrs));
        for (i = 0; i < b->n_account_events; i++) {
            const struct gw_account_event *ev = &b->account_events[i];
            Carpool__AccountEvent *pe = &e->events[i];

            carpool__account_event__init(pe);
            rv = wire_fixed_text(ev->message, sizeof(ev->message), &pe->message);
            if (rv != GW_OK)
                return rv;
            if (pe->message[0] == '\0')
                pe->message = NULL;
            pe->account_id = ev->account_id;
            pe->status = ev->status;
            pe->has_time_ms = 1;
            pe->time_ms = ev->time_ms;
            pe->has_retry_after_ms = ev->retry_after_ms != 0;
            pe->retry_after_ms = ev->retry_after_ms;
            e->event_ptrs[i] = pe;
        }
        pb->account_events = e->event_ptrs;
        pb->n_account_events = b->n_account_events;
    }
    return GW_OK;
}

/* Arrays announced with a count must exist. */
static int
wire_snapshot_arrays_ok(const struct gw_wire_snapshot *s)
{
    return (s->n_keys == 0 || s->keys != NULL) && (s->n_groups == 0 || s->groups != NULL) &&
           (s->n_accounts == 0 || s->accounts != NULL) &&
           (s->n_bindings == 0 || s->bindings != NULL) && (s->n_pools == 0 || s->pools != NULL);
}

gw_err
gw_wire_encode(const struct gw_msg *msg, struct gw_buf *out)
{
    Carpool__Envelope env = CARPOOL__ENVELOPE__INIT;
    Carpool__Hello hello = CARPOOL__HELLO__INIT;
    Carpool__HelloReply hello_reply = CARPOOL__HELLO_REPLY__INIT;
    Carpool__FetchSnapshot fetch = CARPOOL__FETCH_SNAPSHOT__INIT;
    Carpool__Snapshot snap = CARPOOL__SNAPSHOT__INIT;
    Carpool__UsageBatch batch = CARPOOL__USAGE_BATCH__INIT;
    Carpool__UsageAck ack = CARPOOL__USAGE_ACK__INIT;
    Carpool__Error error = CARPOOL__ERROR__INIT;
    Carpool__FetchDeltas fetch_deltas = CARPOOL__FETCH_DELTAS__INIT;
    Carpool__Deltas deltas = CARPOOL__DELTAS__INIT;
    Carpool__Heartbeat hb = CARPOOL__HEARTBEAT__INIT;
    Carpool__HeartbeatAck hb_ack = CARPOOL__HEARTBEAT_ACK__INIT;
    struct wire_enc enc;
    size_t size, packed;
    gw_err rv = GW_EINVAL;

    memset(&enc, 0, sizeof(enc));
    if (msg == NULL || out == NULL)
        return GW_EINVAL;

    switch (msg->type) {
    case GW_MSG_HELLO: {
        const struct gw_wire_hello *h = &msg->u.hello;
        hello.edge_id = wire_borrow(h->edge_id);
        hello.region = wire_borrow(h->region);
        hello.version = wire_borrow(h->version);
        if (h->proof != NULL) {
            hello.has_proof = 1;
            hello.proof.data = h->proof;
            hello.proof.len = h->proof_len;
        }
        hello.has_snapshot_version = 1;
        hello.snapshot_version = h->snapshot_version;
        env.body_case = CARPOOL__ENVELOPE__BODY_HELLO;
        env.hello = &hello;
        break;
    }
    case GW_MSG_HELLO_REPLY:
        hello_reply.has_config_version = 1;
        hello_reply.config_version = msg->u.hello_reply.config_version;
        hello_reply.has_last_usage_seq = 1;
        hello_reply.last_usage_seq = msg->u.hello_reply.last_usage_seq;
        if (msg->u.hello_reply.nonce != NULL) {
            hello_reply.has_nonce = 1;
            hello_reply.nonce.data = msg->u.hello_reply.nonce;
            hello_reply.nonce.len = msg->u.hello_reply.nonce_len;
        }
        hello_reply.has_authenticated = 1;
        hello_reply.authenticated = msg->u.hello_reply.authenticated ? 1 : 0;
        hello_reply.push_url = wire_borrow(msg->u.hello_reply.push_url);
        env.body_case = CARPOOL__ENVELOPE__BODY_HELLO_REPLY;
        env.hello_reply = &hello_reply;
        break;
    case GW_MSG_FETCH_SNAPSHOT:
        fetch.edge_id = wire_borrow(msg->u.fetch_snapshot.edge_id);
        fetch.has_have_version = 1;
        fetch.have_version = msg->u.fetch_snapshot.have_version;
        env.body_case = CARPOOL__ENVELOPE__BODY_FETCH_SNAPSHOT;
        env.fetch_snapshot = &fetch;
        break;
    case GW_MSG_SNAPSHOT:
        if (!wire_snapshot_arrays_ok(&msg->u.snapshot))
            goto out;
        rv = wire_snapshot_to_pb(&msg->u.snapshot, &snap, &enc);
        if (rv != GW_OK)
            goto out;
        env.body_case = CARPOOL__ENVELOPE__BODY_SNAPSHOT;
        env.snapshot = &snap;
        break;
    case GW_MSG_USAGE_BATCH:
        rv = wire_batch_to_pb(&msg->u.usage_batch, &batch, &enc);
        if (rv != GW_OK)
            goto out;
        env.body_case = CARPOOL__ENVELOPE__BODY_USAGE_BATCH;
        env.usage_batch = &batch;
        break;
    case GW_MSG_USAGE_ACK:
        ack.seq = msg->u.usage_ack.seq;
        ack.has_duplicate = 1;
        ack.duplicate = msg->u.usage_ack.duplicate ? 1 : 0;
        env.body_case = CARPOOL__ENVELOPE__BODY_USAGE_ACK;
        env.usage_ack = &ack;
        break;
    case GW_MSG_ERROR:
        error.code = (uint32_t)msg->u.error.code;
        error.message = wire_borrow(msg->u.error.message);
        env.body_case = CARPOOL__ENVELOPE__BODY_ERROR;
        env.error = &error;
        break;
    case GW_MSG_FETCH_DELTAS:
        fetch_deltas.edge_id = wire_borrow(msg->u.fetch_deltas.edge_id);
        fetch_deltas.from_version = msg->u.fetch_deltas.from_version;
        env.body_case = CARPOOL__ENVELOPE__BODY_FETCH_DELTAS;
        env.fetch_deltas = &fetch_deltas;
        break;
    case GW_MSG_DELTAS:
        rv = wire_deltas_to_pb(&msg->u.deltas, &deltas, &enc);
        if (rv != GW_OK)
            goto out;
        env.body_case = CARPOOL__ENVELOPE__BODY_DELTAS;
        env.deltas = &deltas;
        break;
    case GW_MSG_HEARTBEAT: {
        const struct gw_wire_heartbeat *h = &msg->u.heartbeat;
        hb.edge_id = wire_borrow(h->edge_id);
        hb.has_snapshot_version = 1;
        hb.snapshot_version = h->snapshot_version;
        hb.snapshot_source = wire_borrow(h->snapshot_source);
        hb.has_requests_total = 1;
        hb.requests_total = h->requests_total;
        hb.has_errors_total = 1;
        hb.errors_total = h->errors_total;
        hb.has_usage_pending = 1;
        hb.usage_pending = h->usage_pending;
        hb.has_uptime_s = 1;
        hb.uptime_s = h->uptime_s;
        hb.region = wire_borrow(h->region);
        hb.version = wire_borrow(h->version);
        env.body_case = CARPOOL__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        break;
    }
    case GW_MSG_HEARTBEAT_ACK:
        hb_ack.has_config_version = 1;
        hb_ack.config_version = msg->u.heartbeat_ack.config_version;
        env.body_case = CARPOOL__ENVELOPE__BODY_HEARTBEAT_ACK;
        env.heartbeat_ack = &hb_ack;
        break;
    case GW_MSG_NONE:
    default:
        rv = GW_EINVAL;
        goto out;
    }

    /* Required strings left NULL would crash the packer: check the whole
     * tree against the descriptors first. */
    if (!protobuf_c_message_check(&env.base)) {
        rv = GW_EINVAL;
        goto out;
    }
    size = carpool__envelope__get_packed_size(&env);
    gw_buf_reserve(out, size);
    packed = carpool__envelope__pack(&env, (uint8_t *)out->data + out->len);
    if (packed != size) {
        rv = GW_EINTERNAL;
        goto out;
    }
    out->len += packed;
    out->data[out->len] = '\0';
    rv = GW_OK;
out:
    wire_enc_fini(&enc);
    return rv;
}

/* ---------------------------------------------------------------- decode */

static char *
wire_dup(const char *s)
{
    return s != NULL ? gw_xstrdup(s) : NULL;
}

static uint8_t *
wire_dup_bytes(const ProtobufCBinaryData *b, size_t *len_out)
{
    uint8_t *p;

    *len_out = 0;
    if (b->data == NULL || b->len == 0)
        return NULL;
    p = gw_xmalloc(b->len);
    memcpy(p, b->data, b->len);
    *len_out = b->len;
    return p;
}

/* Copies s into a fixed array, truncating at a UTF-8 character boundary so a
 * cut never leaves half a character behind. */
static void
wire_copy_text(char *dst, size_t size, const char *s)
{
    size_t n;

    if (s == NULL) {
        dst[0] = '\0';
        return;
    }
    n = strnlen(s, size);
    if (n >= size) {
        n = size - 1;
        /* Step back over continuation bytes (10xxxxxx) to the lead byte of
         * the character that would be cut, and drop it too. */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static void
wire_record_from_pb(const Carpool__UsageRecord *pr, struct gw_usage_record *r)
{
    memset(r, 0, sizeof(*r));
    wire_copy_text(r->request_id, sizeof(r->request_id), pr->request_id);
    wire_copy_text(r->model, sizeof(r->model), pr->model);
    wire_copy_text(r->dialect, sizeof(r->dialect), pr->dialect);
    r->key_id = pr->key_id;
    r->account_id = pr->account_id;
    r->input_tokens = pr->input_tokens;
    r->output_tokens = pr->output_tokens;
    r->cache_read_tokens = pr->cache_read_tokens;
    r->cache_write_5m_tokens = pr->cache_write_5m_tokens;
    r->cache_write_1h_tokens = pr->cache_write_1h_tokens;
    r->reasoning_tokens = pr->reasoning_tokens;
    r->status = pr->status;
    r->latency_ms = pr->latency_ms;
    r->time_ms = pr->time_ms;
    r->partial = pr->partial ? 1 : 0;
}

/* Copies a list of strings after checking its size against the limits:
 * all or nothing, so a refused list leaves *out NULL. */
static gw_err
wire_dup_strv(char *const *in, size_t n, size_t max_n, size_t max_len, char ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (n == 0)
        return GW_OK;
    if (n > max_n)
        return GW_EPROTO;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == NULL || strnlen(in[i], max_len + 1) > max_len)
            return GW_EPROTO;
    }
    *out = gw_xcalloc(n, sizeof(**out));
    for (size_t i = 0; i < n; i++)
        (*out)[i] = gw_xstrdup(in[i]);
    *n_out = n;
    return GW_OK;
}

static void
wire_free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* An optional bounded string: NULL stays NULL, longer than max is refused. */
static gw_err
wire_dup_bounded(const char *in, size_t max_len, char **out)
{
    *out = NULL;
    if (in == NULL)
        return GW_OK;
    if (strnlen(in, max_len + 1) > max_len)
        return GW_EPROTO;
    *out = gw_xstrdup(in);
    return GW_OK;
}

#define WIRE_GROUP_MODE_MAX 32

static gw_err
wire_key_from_pb(const Carpool__Key *pk, struct gw_wire_key *k)
{
    if (pk->key_hash.len != GW_SHA256_LEN)
        return GW_EPROTO;
    k->id = pk->id;
    memcpy(k->key_hash, pk->key_hash.data, GW_SHA256_LEN);
    k->group_id = pk->group_id;
    k->enabled = pk->enabled ? 1 : 0;
    k->expires_at = pk->expires_at;
    k->rpm_limit = pk->rpm_limit;
    k->tpm_limit = pk->tpm_limit;
    k->concurrency_limit = pk->concurrency_limit;
    return wire_dup_strv(pk->allowed_models, pk->n_allowed_models, GW_WIRE_MODELS_MAX,
                         GW_WIRE_MODEL_LEN_MAX, &k->allowed_models, &k->n_allowed_models);
}

static gw_err
wire_group_from_pb(const Carpool__Group *pg, struct gw_wire_group *g)
{
    g->id = pg->id;
    g->name = wire_dup(pg->name);
    g->pool_id = pg->pool_id;
    return wire_dup_bounded(pg->mode, WIRE_GROUP_MODE_MAX, &g->mode);
}

static gw_err
wire_account_from_pb(const Carpool__Account *pa, struct gw_wire_account *a)
{
    gw_err rv;

    a->id = pa->id;
    a->name = wire_dup(pa->name);
    a->kind = wire_dup(pa->kind);
    a->base_url = wire_dup(pa->base_url);
    if (pa->has_credential)
        a->credential = wire_dup_bytes(&pa->credential, &a->credential_len);
    a->priority = pa->priority;
    a->weight = pa->weight;
    a->enabled = pa->enabled ? 1 : 0;
    a->max_concurrency = pa->max_concurrency;
    a->cooldown_until_ms = pa->cooldown_until_ms;
    rv = wire_dup_strv(pa->models, pa->n_models, GW_WIRE_MODELS_MAX, GW_WIRE_MODEL_LEN_MAX,
                       &a->models, &a->n_models);
    if (rv != GW_OK)
        return rv;
    return wire_dup_bounded(pa->proxy, GW_WIRE_PROXY_LEN_MAX, &a->proxy);
}

static gw_err
wire_pool_from_pb(const Carpool__Pool *pp, struct gw_wire_pool *p)
{
    if (pp->n_account_ids > GW_WIRE_POOL_MEMBERS_MAX)
        return GW_EPROTO;
    p->id = pp->id;
    p->name = wire_dup(pp->name);
    if (pp->n_account_ids > 0) {
        p->account_ids = gw_xcalloc(pp->n_account_ids, sizeof(*p->account_ids));
        memcpy(p->account_ids, pp->account_ids, pp->n_account_ids * sizeof(*p->account_ids));
        p->n_account_ids = pp->n_account_ids;
    }
    return GW_OK;
}

static gw_err
wire_snapshot_from_pb(const Carpool__Snapshot *ps, struct gw_wire_snapshot *s)
{
    size_t i;
    gw_err rv;

    s->version = ps->version;
    s->unchanged = ps->unchanged ? 1 : 0;
    if (ps->n_keys > 0) {
        s->keys = gw_xcalloc(ps->n_keys, sizeof(*s->keys));
        s->n_keys = ps->n_keys;
        for (i = 0; i < ps->n_keys; i++) {
            rv = wire_key_from_pb(ps->keys[i], &s->keys[i]);
            if (rv != GW_OK)
                return rv;
        }
    }
    if (ps->n_groups > 0) {
        s->groups = gw_xcalloc(ps->n_groups, sizeof(*s->groups));
        s->n_groups = ps->n_groups;
        for (i = 0; i < ps->n_groups; i++) {
            rv = wire_group_from_pb(ps->groups[i], &s->groups[i]);
            if (rv != GW_OK)
                return rv;
        }
    }
    if (ps->n_accounts > 0) {
        s->accounts = gw_xcalloc(ps->n_accounts, sizeof(*s->accounts));
        s->n_accounts = ps->n_accounts;
        for (i = 0; i < ps->n_accounts; i++) {
            rv = wire_account_from_pb(ps->accounts[i], &s->accounts[i]);
            if (rv != GW_OK)
                return rv;
        }
    }
    if (ps->n_bindings > 0) {
        s->bindings = gw_xcalloc(ps->n_bindings, sizeof(*s->bindings));
        s->n_bindings = ps->n_bindings;
        for (i = 0; i < ps->n_bindings; i++) {
            s->bindings[i].group_id = ps->bindings[i]->group_id;
            s->bindings[i].account_id = ps->bindings[i]->account_id;
        }
    }
    if (ps->n_pools > 0) {
        s->pools = gw_xcalloc(ps->n_pools, sizeof(*s->pools));
        s->n_pools = ps->n_pools;
        for (i = 0; i < ps->n_pools; i++) {
            rv = wire_pool_from_pb(ps->pools[i], &s->pools[i]);
            if (rv != GW_OK)
                return rv;
        }
    }
    return GW_OK;
}

/* Decodes one change. The kind is set before the entity is filled, so a
 * half-filled entity is still released by wire_change_fini. */
static gw_err
wire_change_from_pb(const Carpool__Change *pc, struct gw_wire_change *c)
{
    c->version = pc->version;
    switch (pc->entity_case) {
    case CARPOOL__CHANGE__ENTITY_KEY:
        c->kind = GW_CHANGE_KEY;
        return wire_key_from_pb(pc->key, &c->u.key);
    case CARPOOL__CHANGE__ENTITY_GROUP:
        c->kind = GW_CHANGE_GROUP;
        return wire_group_from_pb(pc->group, &c->u.group);
    case CARPOOL__CHANGE__ENTITY_ACCOUNT:
        c->kind = GW_CHANGE_ACCOUNT;
        return wire_account_from_pb(pc->account, &c->u.account);
    case CARPOOL__CHANGE__ENTITY_POOL:
        c->kind = GW_CHANGE_POOL;
        return wire_pool_from_pb(pc->pool, &c->u.pool);
    case CARPOOL__CHANGE__ENTITY_BINDING:
        c->kind = GW_CHANGE_BINDING;
        c->u.binding.group_id = pc->binding->group_id;
        c->u.binding.account_id = pc->binding->account_id;
        return GW_OK;
    case CARPOOL__CHANGE__ENTITY_BINDING_REMOVED:
        c->kind = GW_CHANGE_BINDING_REMOVED;
        c->u.binding.group_id = pc->binding_removed->group_id;
        c->u.binding.account_id = pc->binding_removed->account_id;
        return GW_OK;
    case CARPOOL__CHANGE__ENTITY_KEY_REMOVED:
        c->kind = GW_CHANGE_KEY_REMOVED;
        c->u.removed_id = pc->key_removed;
        return GW_OK;
    case CARPOOL__CHANGE__ENTITY_ACCOUNT_REMOVED:
        c->kind = GW_CHANGE_ACCOUNT_REMOVED;
        c->u.removed_id = pc->account_removed;
        return GW_OK;
    case CARPOOL__CHANGE__ENTITY_GROUP_REMOVED:
        c->kind = GW_CHANGE_GROUP_REMOVED;
        c->u.removed_id = pc->group_removed;
        return GW_OK;
    case CARPOOL__CHANGE__ENTITY_POOL_REMOVED:
        c->kind = GW_CHANGE_POOL_REMOVED;
        c->u.removed_id = pc->pool_removed;
        return GW_OK;
    case CARPOOL__CHANGE__ENTITY__NOT_SET:
    default:
        return GW_EPROTO;
    }
}

static gw_err
wire_deltas_from_pb(const Carpool__Deltas *pd, struct gw_wire_deltas *d)
{
    size_t i;
    gw_err rv;

    d->from_version = pd->from_version;
    d->to_version = pd->to_version;
    d->snapshot_required = pd->snapshot_required ? 1 : 0;
    if (pd->n_changes > GW_WIRE_CHANGES_MAX)
        return GW_EPROTO;
    if (pd->n_changes == 0)
        return GW_OK;
    d->changes = gw_xcalloc(pd->n_changes, sizeof(*d->changes));
    d->n_changes = pd->n_changes;
    for (i = 0; i < pd->n_changes; i++) {
        rv = wire_change_from_pb(pd->changes[i], &d->changes[i]);
        if (rv != GW_OK)
            return rv;
    }
    return GW_OK;
}

static gw_err
wire_batch_from_pb(const Carpool__UsageBatch *pb, struct gw_wire_usage_batch *b)
{
    size_t i;

    b->edge_id = wire_dup(pb->edge_id);
    b->seq = pb->seq;
    if (pb->n_account_events > GW_WIRE_ACCOUNT_EVENTS_MAX)
        return GW_EPROTO;
    if (pb->n_records > 0) {
        b->records = gw_xcalloc(pb->n_records, sizeof(*b->records));
        b->n_records = pb->n_records;
        for (i = 0; i < pb->n_records; i++)
            wire_record_from_pb(pb->records[i], &b->records[i]);
    }
    if (pb->n_account_events > 0) {
        b->account_events = gw_xcalloc(pb->n_account_events, sizeof(*b->account_events));
        b->n_account_events = pb->n_account_events;
        for (i = 0; i < pb->n_account_events; i++) {
            const Carpool__AccountEvent *pe = pb->account_events[i];
            struct gw_account_event *ev = &b->account_events[i];

            ev->account_id = pe->account_id;
            ev->status = pe->status;
            ev->time_ms = pe->time_ms;
            ev->retry_after_ms = pe->retry_after_ms;
            wire_copy_text(ev->message, sizeof(ev->message), pe->message);
        }
    }
    return GW_OK;
}

/* Error codes from a newer peer that we do not know become EINTERNAL rather
 * than an out-of-range enum value. */
static gw_err
wire_err_code(uint32_t code)
{
    return code < (uint32_t)GW_ERR_COUNT ? (gw_err)code : GW_EINTERNAL;
}

/* Unpacked credentials are secrets: scrub protobuf-c's copy before it goes
 * back to the allocator. */
static void
wire_scrub_pb(Carpool__Envelope *env)
{
    size_t i;

    if (env->body_case == CARPOOL__ENVELOPE__BODY_SNAPSHOT && env->snapshot != NULL) {
        for (i = 0; i < env->snapshot->n_accounts; i++) {
            ProtobufCBinaryData *c = &env->snapshot->accounts[i]->credential;
            if (c->data != NULL && c->len > 0)
                explicit_bzero(c->data, c->len);
        }
    }
    if (env->body_case == CARPOOL__ENVELOPE__BODY_DELTAS && env->deltas != NULL) {
        for (i = 0; i < env->deltas->n_changes; i++) {
            const Carpool__Change *pc = env->deltas->changes[i];
            if (pc->entity_case != CARPOOL__CHANGE__ENTITY_ACCOUNT || pc->account == NULL)
                continue;
            if (pc->account->credential.data != NULL && pc->account->credential.len > 0)
                explicit_bzero(pc->account->credential.data, pc->account->credential.len);
        }
    }
}

/* The decode allocator: protobuf-c allocates the whole unpacked tree before
 * we can look at any count, and a small frame can announce huge repeated
 * fields (every empty sub-message costs a full struct). Allocations past a
 * budget proportional to the frame fail, which makes unpack fail cleanly. */
#define WIRE_DECODE_BUDGET_FACTOR 64
#define WIRE_DECODE_BUDGET_BASE (1u << 20)

struct wire_budget {
    size_t used;
    size_t limit;
};

static void *
wire_budget_alloc(void *data, size_t size)
{
    struct wire_budget *b = data;

    if (size > b->limit - b->used)
        return NULL;
    b->used += size;
    return malloc(size);
}

static void
wire_budget_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

static gw_err
wire_nonce_from_pb(const ProtobufCBinaryData *b, int has, uint8_t **out, size_t *len_out)
{
    *out = NULL;
    *len_out = 0;
    if (!has)
        return GW_OK;
    if (b->len > GW_WIRE_NONCE_MAX)
        return GW_EPROTO;
    *out = wire_dup_bytes(b, len_out);
    return GW_OK;
}

gw_err
gw_wire_decode(const void *data, size_t len, size_t max_len, struct gw_msg *out)
{
    Carpool__Envelope *env = NULL;
    struct wire_budget budget;
    ProtobufCAllocator alloc;
    gw_err rv = GW_EPROTO;

    if (out == NULL)
        return GW_EINVAL;
    memset(out, 0, sizeof(*out));
    if (len > max_len)
        return GW_EMSGSIZE;
    if (data == NULL && len > 0)
        return GW_EINVAL;

    budget.used = 0;
    budget.limit = WIRE_DECODE_BUDGET_BASE;
    if (len < (SIZE_MAX - WIRE_DECODE_BUDGET_BASE) / WIRE_DECODE_BUDGET_FACTOR)
        budget.limit += len * WIRE_DECODE_BUDGET_FACTOR;
    else
        budget.limit = SIZE_MAX;
    alloc.alloc = wire_budget_alloc;
    alloc.free = wire_budget_free;
    alloc.allocator_data = &budget;
    env = carpool__envelope__unpack(&alloc, len, data);
    if (env == NULL)
        return GW_EPROTO;

    switch (env->body_case) {
    case CARPOOL__ENVELOPE__BODY_HELLO: {
        const Carpool__Hello *h = env->hello;
        out->type = GW_MSG_HELLO;
        out->u.hello.edge_id = wire_dup(h->edge_id);
        out->u.hello.region = wire_dup(h->region);
        out->u.hello.version = wire_dup(h->version);
        rv = wire_nonce_from_pb(&h->proof, h->has_proof, &out->u.hello.proof,
                                &out->u.hello.proof_len);
        if (rv != GW_OK)
            goto out;
        out->u.hello.snapshot_version = h->snapshot_version;
        break;
    }
    case CARPOOL__ENVELOPE__BODY_HELLO_REPLY:
        out->type = GW_MSG_HELLO_REPLY;
        out->u.hello_reply.config_version = env->hello_reply->config_version;
        out->u.hello_reply.last_usage_seq = env->hello_reply->last_usage_seq;
        out->u.hello_reply.authenticated = env->hello_reply->authenticated ? 1 : 0;
        out->u.hello_reply.push_url = wire_dup(env->hello_reply->push_url);
        rv = wire_nonce_from_pb(&env->hello_reply->nonce, env->hello_reply->has_nonce,
                                &out->u.hello_reply.nonce, &out->u.hello_reply.nonce_len);
        if (rv != GW_OK)
            goto out;
        break;
    case CARPOOL__ENVELOPE__BODY_FETCH_SNAPSHOT:
        out->type = GW_MSG_FETCH_SNAPSHOT;
        out->u.fetch_snapshot.edge_id = wire_dup(env->fetch_snapshot->edge_id);
        out->u.fetch_snapshot.have_version = env->fetch_snapshot->have_version;
        break;
    case CARPOOL__ENVELOPE__BODY_SNAPSHOT:
        out->type = GW_MSG_SNAPSHOT;
        rv = wire_snapshot_from_pb(env->snapshot, &out->u.snapshot);
        if (rv != GW_OK)
            goto out;
        break;
    case CARPOOL__ENVELOPE__BODY_USAGE_BATCH:
        out->type = GW_MSG_USAGE_BATCH;
        rv = wire_batch_from_pb(env->usage_batch, &out->u.usage_batch);
        if (rv != GW_OK)
            goto out;
        break;
    case CARPOOL__ENVELOPE__BODY_USAGE_ACK:
        out->type = GW_MSG_USAGE_ACK;
        out->u.usage_ack.seq = env->usage_ack->seq;
        out->u.usage_ack.duplicate = env->usage_ack->duplicate ? 1 : 0;
        break;
    case CARPOOL__ENVELOPE__BODY_ERROR:
        out->type = GW_MSG_ERROR;
        out->u.error.code = wire_err_code(env->error->code);
        out->u.error.message = wire_dup(env->error->message);
        break;
    case CARPOOL__ENVELOPE__BODY_FETCH_DELTAS:
        out->type = GW_MSG_FETCH_DELTAS;
        out->u.fetch_deltas.edge_id = wire_dup(env->fetch_deltas->edge_id);
        out->u.fetch_deltas.from_version = env->fetch_deltas->from_version;
        break;
    case CARPOOL__ENVELOPE__BODY_DELTAS:
        out->type = GW_MSG_DELTAS;
        rv = wire_deltas_from_pb(env->deltas, &out->u.deltas);
        if (rv != GW_OK)
            goto out;
        break;
    case CARPOOL__ENVELOPE__BODY_HEARTBEAT: {
        const Carpool__Heartbeat *h = env->heartbeat;
        struct gw_wire_heartbeat *o = &out->u.heartbeat;
        out->type = GW_MSG_HEARTBEAT;
        o->edge_id = wire_dup(h->edge_id);
        o->snapshot_version = h->snapshot_version;
        o->requests_total = h->requests_total;
        o->errors_total = h->errors_total;
        o->usage_pending = h->usage_pending;
        o->uptime_s = h->uptime_s;
        o->snapshot_source = wire_dup(h->snapshot_source);
        o->region = wire_dup(h->region);
        o->version = wire_dup(h->version);
        break;
    }
    case CARPOOL__ENVELOPE__BODY_HEARTBEAT_ACK:
        out->type = GW_MSG_HEARTBEAT_ACK;
        out->u.heartbeat_ack.config_version = env->heartbeat_ack->config_version;
        break;
    case CARPOOL__ENVELOPE__BODY__NOT_SET:
    default:
        rv = GW_EPROTO;
        goto out;
    }
    rv = GW_OK;
out:
    if (rv != GW_OK)
        gw_msg_fini(out);
    wire_scrub_pb(env);
    carpool__envelope__free_unpacked(env, &alloc);
    return rv;
}

/* ---------------------------------------------------------------- lifetime */

static void
wire_account_fini(struct gw_wire_account *a)
{
    free(a->name);
    free(a->kind);
    free(a->base_url);
    if (a->credential != NULL)
        explicit_bzero(a->credential, a->credential_len);
    free(a->credential);
    wire_free_strv(a->models, a->n_models);
    free(a->proxy);
}

static void
wire_change_fini(struct gw_wire_change *c)
{
    switch (c->kind) {
    case GW_CHANGE_KEY:
        wire_free_strv(c->u.key.allowed_models, c->u.key.n_allowed_models);
        break;
    case GW_CHANGE_GROUP:
        free(c->u.group.name);
        free(c->u.group.mode);
        break;
    case GW_CHANGE_ACCOUNT:
        wire_account_fini(&c->u.account);
        break;
    case GW_CHANGE_POOL:
        free(c->u.pool.name);
        free(c->u.pool.account_ids);
        break;
    default:
        break;
    }
}

static void
wire_snapshot_fini(struct gw_wire_snapshot *s)
{
    size_t i;

    for (i = 0; i < s->n_keys; i++)
        wire_free_strv(s->keys[i].allowed_models, s->keys[i].n_allowed_models);
    for (i = 0; i < s->n_groups; i++) {
        free(s->groups[i].name);
        free(s->groups[i].mode);
    }
    for (i = 0; i < s->n_accounts; i++)
        wire_account_fini(&s->accounts[i]);
    for (i = 0; i < s->n_pools; i++) {
        free(s->pools[i].name);
        free(s->pools[i].account_ids);
    }
    free(s->keys);
    free(s->groups);
    free(s->accounts);
    free(s->bindings);
    free(s->pools);
}

void
gw_msg_fini(struct gw_msg *msg)
{
    if (msg == NULL)
        return;
    switch (msg->type) {
    case GW_MSG_HELLO:
        free(msg->u.hello.edge_id);
        free(msg->u.hello.region);
        free(msg->u.hello.version);
        if (msg->u.hello.proof != NULL)
            explicit_bzero(msg->u.hello.proof, msg->u.hello.proof_len);
        free(msg->u.hello.proof);
        break;
    case GW_MSG_FETCH_SNAPSHOT:
        free(msg->u.fetch_snapshot.edge_id);
        break;
    case GW_MSG_SNAPSHOT:
        wire_snapshot_fini(&msg->u.snapshot);
        break;
    case GW_MSG_USAGE_BATCH:
        free(msg->u.usage_batch.edge_id);
        free(msg->u.usage_batch.records);
        free(msg->u.usage_batch.account_events);
        break;
    case GW_MSG_ERROR:
        free(msg->u.error.message);
        break;
    case GW_MSG_HELLO_REPLY:
        free(msg->u.hello_reply.nonce);
        free(msg->u.hello_reply.push_url);
        break;
    case GW_MSG_FETCH_DELTAS:
        free(msg->u.fetch_deltas.edge_id);
        break;
    case GW_MSG_DELTAS:
        for (size_t i = 0; i < msg->u.deltas.n_changes; i++)
            wire_change_fini(&msg->u.deltas.changes[i]);
        free(msg->u.deltas.changes);
        break;
    case GW_MSG_HEARTBEAT:
        free(msg->u.heartbeat.edge_id);
        free(msg->u.heartbeat.snapshot_source);
        free(msg->u.heartbeat.region);
        free(msg->u.heartbeat.version);
        break;
    case GW_MSG_NONE:
    case GW_MSG_USAGE_ACK:
    case GW_MSG_HEARTBEAT_ACK:
    default:
        break;
    }
    memset(msg, 0, sizeof(*msg));
}

/* Releases whatever msg held before (a zeroed message holds nothing), so a
 * decoded request can be turned into an error reply in place. */
void
gw_msg_set_error(struct gw_msg *msg, gw_err code, const char *message)
{
    gw_msg_fini(msg);
    msg->type = GW_MSG_ERROR;
    msg->u.error.code = code;
    msg->u.error.message = wire_dup(message);
}

void
gw_wire_hello_proof(const void *secret, size_t secret_len, const uint8_t *nonce, size_t nonce_len,
                    const char *edge_id, uint8_t out[GW_SHA256_LEN])
{
    static const char label[] = "aicarpool-hello"; /* sizeof includes the NUL */
    struct gw_buf msg = GW_BUF_INIT;

    gw_buf_append(&msg, label, sizeof(label));
    if (nonce_len > 0)
        gw_buf_append(&msg, nonce, nonce_len);
    if (edge_id != NULL)
        gw_buf_append(&msg, edge_id, strlen(edge_id));
    gw_hmac_sha256(secret, secret_len, msg.data, msg.len, out);
    gw_buf_fini(&msg);
}
