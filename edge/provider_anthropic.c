/* SPDX-License-Identifier: Apache-2.0 */
/* The Anthropic Messages dialect: request scan, upstream headers with the
 * account credential, usage metering from SSE events or a JSON body, and
 * error bodies. Only message_start/message_delta payloads are parsed while
 * metering; the bulk of a stream (content_block_delta) is skipped by name. */
#include "provider_anthropic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw_crypto.h"
#include "gw_json.h"
#include "gw_log.h"

#define ANTHROPIC_DEFAULT_VERSION "2023-06-01"

/* ---- request scan ------------------------------------------------------- */

/* metadata.user_id -> session (see the header for the formats). */
static void
anthropic_session_from_user_id(char *dst, const char *uid)
{
    size_t len = strlen(uid);
    if (len == 0)
        return;
    if (uid[0] == '{') {
        cJSON *obj = gw_json_parse(uid, len, NULL);
        const char *sid = NULL;
        if (obj && gw_json_get_str(obj, "session_id", &sid) == GW_OK && sid[0]) {
            edge_provider_set_session(dst, sid, strlen(sid));
            cJSON_Delete(obj);
            return;
        }
        cJSON_Delete(obj);
    }
    const char *mark = "_session_";
    const char *found = NULL;
    for (const char *p = strstr(uid, mark); p; p = strstr(p + 1, mark))
        found = p;
    if (found && found[strlen(mark)]) {
        const char *sid = found + strlen(mark);
        edge_provider_set_session(dst, sid, strlen(sid));
        return;
    }
    edge_provider_set_session(dst, uid, len);
}

/* The scan; on success *tree (may be NULL) takes the parsed body. */
static gw_err
anthropic_scan(const char *body, size_t len, struct edge_anthropic_request *out, const char **why,
               cJSON **tree)
{
    gw_err rv = GW_EINVAL;
    const char *reason = NULL;
    const char *model = NULL;
    cJSON *root = NULL;
    gw_err frv;

    memset(out, 0, sizeof(*out));
    out->max_tokens = -1;
    root = gw_json_parse(body, len, &reason);
    if (!root) {
        reason = "request body is not valid JSON";
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        reason = "request body must be a JSON object";
        goto out;
    }
    frv = gw_json_get_str(root, "model", &model);
    if (frv == GW_ENOTFOUND) {
        reason = "model: field required";
        goto out;
    }
    if (frv != GW_OK) {
        reason = "model: must be a string";
        goto out;
    }
    if (model[0] == '\0') {
        reason = "model: must not be empty";
        goto out;
    }
    if (strlen(model) >= sizeof(out->model)) {
        reason = "model: name too long";
        goto out;
    }
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!messages || cJSON_IsNull(messages)) {
        reason = "messages: field required";
        goto out;
    }
    if (!cJSON_IsArray(messages)) {
        reason = "messages: must be an array";
        goto out;
    }
    frv = gw_json_get_bool(root, "stream", &out->stream);
    if (frv != GW_OK && frv != GW_ENOTFOUND) {
        reason = "stream: must be a boolean";
        goto out;
    }
    frv = gw_json_get_int(root, "max_tokens", &out->max_tokens);
    if (frv != GW_OK && frv != GW_ENOTFOUND) {
        reason = "max_tokens: must be an integer";
        goto out;
    }
    memcpy(out->model, model, strlen(model) + 1);

    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    const char *uid = NULL;
    if (cJSON_IsObject(meta) && gw_json_get_str(meta, "user_id", &uid) == GW_OK)
        anthropic_session_from_user_id(out->session, uid);
    rv = GW_OK;
    if (tree) {
        *tree = root;
        root = NULL;
    }
out:
    cJSON_Delete(root);
    if (rv != GW_OK) {
        out->model[0] = '\0';
        out->session[0] = '\0';
    }
    if (why)
        *why = rv == GW_OK ? NULL : reason;
    return rv;
}

gw_err
edge_anthropic_scan_request(const char *body, size_t len, struct edge_anthropic_request *out,
                            const char **why)
{
    return anthropic_scan(body, len, out, why, NULL);
}

void
edge_anthropic_session_from_headers(struct edge_anthropic_request *out,
                                    const struct gw_http_req *client)
{
    if (out->session[0])
        return;
    for (size_t i = 0; i < client->n_headers; i++) {
        const struct gw_http_header *h = &client->headers[i];
        if (gw_str_case_eq(h->name, "x-claude-code-session-id") && h->value.len > 0) {
            edge_provider_set_session(out->session, h->value.p, h->value.len);
            return;
        }
    }
}

/* ---- upstream headers --------------------------------------------------- */

struct curl_slist *
edge_anthropic_upstream_headers(const struct gw_http_req *client, const char *credential,
                                int bearer)
{
    int have_version = 0;
    struct curl_slist *list = edge_provider_copy_headers(client, NULL, &have_version);

    if (!have_version)
        list = edge_provider_add_header(list, "anthropic-version", ANTHROPIC_DEFAULT_VERSION);
    if (credential) {
        if (bearer) {
            struct gw_buf v = GW_BUF_INIT;
            gw_buf_appendf(&v, "Bearer %s", credential);
            list = edge_provider_add_header(list, "authorization", v.data);
            explicit_bzero(v.data, v.len);
            gw_buf_fini(&v);
        } else {
            list = edge_provider_add_header(list, "x-api-key", credential);
        }
    }
    return list;
}

/* ---- usage metering ----------------------------------------------------- */

static void
anthropic_max(uint64_t *field, uint64_t v)
{
    if (v > *field)
        *field = v;
}

/* Applies one usage object. `merge` keeps the larger of the old and new
 * value per field (stream events: cumulative or repeated counts); without
 * it the report replaces what was there (a complete body). */
static void
anthropic_apply_usage(struct edge_usage *u, const cJSON *usage, int merge)
{
    uint64_t v;
    uint64_t input = u->input_tokens, output = u->output_tokens, cread = u->cache_read_tokens;
    uint64_t w5 = u->cache_write_5m_tokens, w1 = u->cache_write_1h_tokens;

    if (!merge)
        input = output = cread = w5 = w1 = 0;
    if (edge_provider_get_count(usage, "input_tokens", &v))
        anthropic_max(&input, v);
    if (edge_provider_get_count(usage, "output_tokens", &v))
        anthropic_max(&output, v);
    if (edge_provider_get_count(usage, "cache_read_input_tokens", &v))
        anthropic_max(&cread, v);

    const cJSON *split = cJSON_GetObjectItemCaseSensitive(usage, "cache_creation");
    uint64_t s5 = 0, s1 = 0;
    int have5 = edge_provider_get_count(split, "ephemeral_5m_input_tokens", &s5);
    int have1 = edge_provider_get_count(split, "ephemeral_1h_input_tokens", &s1);
    uint64_t total = 0;
    int have_total = edge_provider_get_count(usage, "cache_creation_input_tokens", &total);
    if ((have5 || have1) && (!merge || s5 + s1 >= w5 + w1)) {
        /* The split is authoritative; an earlier total without a split had
         * been booked as 5m and is redistributed here. */
        w5 = s5;
        w1 = s1;
    } else if (have5 || have1) {
        /* a smaller split than already seen: keep the larger report */
    } else if (have_total && total > w5 + w1) {
        /* No split reported: what is not yet known as 1h is 5m. */
        w5 = total - w1;
    }

    u->input_tokens = input;
    u->output_tokens = output;
    u->cache_read_tokens = cread;
    u->cache_write_5m_tokens = w5;
    u->cache_write_1h_tokens = w1;
}

static int
anthropic_event_is(const char *event, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len == n && memcmp(event, lit, n) == 0;
}

void
edge_anthropic_meter_event(struct edge_usage *u, const char *event, size_t event_len,
                           const char *data, size_t data_len)
{
    cJSON *root = NULL;
    const char *type = NULL;

    if (event_len == 0) {
        /* Unnamed event: the payload's "type" names it. Cheap pre-check so
         * content deltas are not parsed. */
        if (!memmem(data, data_len, "message_", 8))
            return;
        root = gw_json_parse(data, data_len, NULL);
        if (!root || gw_json_get_str(root, "type", &type) != GW_OK)
            goto out;
        event = type;
        event_len = strlen(type);
    }
    if (anthropic_event_is(event, event_len, "message_stop")) {
        u->have_final = 1;
        goto out;
    }
    int is_start = anthropic_event_is(event, event_len, "message_start");
    if (!is_start && !anthropic_event_is(event, event_len, "message_delta"))
        goto out;
    if (!root)
        root = gw_json_parse(data, data_len, NULL);
    if (!cJSON_IsObject(root))
        goto out;
    const cJSON *usage;
    if (is_start) {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "message");
        usage = cJSON_GetObjectItemCaseSensitive(msg, "usage");
    } else {
        usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    }
    if (!cJSON_IsObject(usage))
        goto out;
    anthropic_apply_usage(u, usage, 1);
    if (is_start || cJSON_GetObjectItemCaseSensitive(usage, "input_tokens"))
        u->have_start = 1;
out:
    cJSON_Delete(root);
}

gw_err
edge_anthropic_meter_body(struct edge_usage *u, const char *body, size_t len)
{
    gw_err rv = GW_EINVAL;
    cJSON *root = gw_json_parse(body, len, NULL);
    if (!cJSON_IsObject(root))
        goto out;
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    if (!cJSON_IsObject(usage))
        goto out;
    anthropic_apply_usage(u, usage, 0);
    u->have_start = 1;
    u->have_final = 1;
    rv = GW_OK;
out:
    cJSON_Delete(root);
    return rv;
}

/* ---- errors ------------------------------------------------------------- */

void
edge_anthropic_error_body(gw_err err, const char *message, struct gw_buf *out)
{
    const char *type = gw_err_anthropic_type(err);
    if (!message)
        message = gw_strerror(err);
    gw_buf_append_str(out, "{\"type\":\"error\",\"error\":{\"type\":");
    gw_json_append_string(out, type, strlen(type));
    gw_buf_append_str(out, ",\"message\":");
    gw_json_append_string(out, message, strlen(message));
    gw_buf_append_str(out, "}}");
}

/* ---- adapter -------------------------------------------------------------- */

static int
anthropic_match(const struct gw_http_req *hreq, struct edge_match *out)
{
    size_t pos;

    if (edge_provider_path_suffix(hreq->path, "/v1/messages", &pos)) {
        out->op = EDGE_OP_MESSAGES;
        out->method = "POST";
    } else if (edge_provider_path_suffix(hreq->path, "/v1/messages/count_tokens", &pos)) {
        out->op = EDGE_OP_COUNT_TOKENS;
        out->method = "POST";
    } else if (edge_provider_path_suffix(hreq->path, "/v1/models", &pos) &&
               (gw_http_req_header(hreq, "x-api-key") != NULL ||
                gw_http_req_header(hreq, "anthropic-version") != NULL)) {
        out->op = EDGE_OP_MODELS;
        out->method = "GET";
    } else {
        return 0;
    }
    out->api_off = pos;
    return 1;
}

static int
anthropic_client_key(const struct gw_http_req *hreq, struct gw_str *out)
{
    const struct gw_str *h = gw_http_req_header(hreq, "x-api-key");

    if (h != NULL) {
        *out = edge_provider_trim(*h);
        if (out->len > 0)
            return 1;
    }
    return edge_provider_bearer(hreq, out);
}

static gw_err
anthropic_adapter_scan(const struct gw_http_req *hreq, const struct edge_match *m,
                       struct edge_request_info *out, const char **why)
{
    struct edge_anthropic_request ar;
    cJSON *tree = NULL;
    gw_err rv;

    (void)m;
    memset(out, 0, sizeof(*out));
    rv = anthropic_scan(hreq->body.data ? hreq->body.data : "", hreq->body.len, &ar, why, &tree);
    if (rv != GW_OK)
        return rv;
    edge_anthropic_session_from_headers(&ar, hreq);
    memcpy(out->model, ar.model, sizeof(out->model));
    memcpy(out->session, ar.session, sizeof(out->session));
    out->stream = ar.stream;
    out->max_tokens = ar.max_tokens;
    out->est_input_tokens = edge_provider_estimate_tokens(hreq->body.len);
    if (out->session[0] == '\0') {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(tree, "messages");
        edge_provider_prefix_session(out->session, cJSON_GetObjectItemCaseSensitive(tree, "system"),
                                     cJSON_IsArray(msgs) ? cJSON_GetArrayItem(msgs, 0) : NULL);
    }
    cJSON_Delete(tree);
    return GW_OK;
}

static gw_err
anthropic_upstream_url(const char *base_url, const struct gw_http_req *hreq,
                       const struct edge_match *m, struct gw_buf *url)
{
    struct gw_str api = {hreq->path.p + m->api_off, hreq->path.len - m->api_off};

    return edge_provider_join_url(base_url, api, hreq->query, url);
}

static struct curl_slist *
anthropic_adapter_headers(const struct gw_http_req *hreq, const struct edge_account *a)
{
    return edge_anthropic_upstream_headers(hreq, a->credential,
                                           strcmp(a->kind, "claude_oauth") == 0);
}

static void
anthropic_adapter_meter_event(struct edge_meter *m, const char *event, size_t event_len,
                              const char *data, size_t data_len)
{
    edge_anthropic_meter_event(&m->usage, event, event_len, data, data_len);
}

static gw_err
anthropic_adapter_meter_body(struct edge_meter *m, const char *body, size_t len)
{
    return edge_anthropic_meter_body(&m->usage, body, len);
}

static void
anthropic_adapter_error(int status, gw_err err, const char *message, struct gw_buf *out)
{
    (void)status;
    edge_anthropic_error_body(err, message, out);
}

/* The Models API list: {"data":[{"type":"model","id":..,"display_name":..,
 * "created_at":..}],"has_more":false,"first_id":..,"last_id":..}. */
static void
anthropic_models_body(const char *const *ids, size_t n, struct gw_buf *out)
{
    gw_buf_append_str(out, "{\"data\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            gw_buf_append(out, ",", 1);
        gw_buf_append_str(out, "{\"type\":\"model\",\"id\":");
        gw_json_append_string(out, ids[i], strlen(ids[i]));
        gw_buf_append_str(out, ",\"display_name\":");
        gw_json_append_string(out, ids[i], strlen(ids[i]));
        gw_buf_append_str(out, ",\"created_at\":\"1970-01-01T00:00:00Z\"}");
    }
    gw_buf_append_str(out, "],\"has_more\":false,\"first_id\":");
    if (n > 0)
        gw_json_append_string(out, ids[0], strlen(ids[0]));
    else
        gw_buf_append_str(out, "null");
    gw_buf_append_str(out, ",\"last_id\":");
    if (n > 0)
        gw_json_append_string(out, ids[n - 1], strlen(ids[n - 1]));
    else
        gw_buf_append_str(out, "null");
    gw_buf_append_str(out, "}");
}

static const char *const anthropic_default_models[] = {
    "claude-opus-4-1-20250805",
    "claude-sonnet-4-5-20250929",
    "claude-sonnet-4-20250514",
    "claude-3-5-haiku-20241022",
};

const struct edge_provider edge_provider_anthropic = {
    .name = "anthropic",
    .dialect = EDGE_DIALECT_ANTHROPIC,
    .match = anthropic_match,
    .client_key = anthropic_client_key,
    .scan_request = anthropic_adapter_scan,
    .upstream_url = anthropic_upstream_url,
    .upstream_headers = anthropic_adapter_headers,
    .rewrite_body = NULL,
    .meter_event = anthropic_adapter_meter_event,
    .meter_body = anthropic_adapter_meter_body,
    .filter_stream = NULL,
    .filter_flush = NULL,
    .error_body = anthropic_adapter_error,
    .models_body = anthropic_models_body,
    .default_models = anthropic_default_models,
    .n_default_models = sizeof(anthropic_default_models) / sizeof(anthropic_default_models[0]),
};
