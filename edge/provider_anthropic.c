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

/* Copies a session id into dst[cap]; values that do not fit become their
 * SHA-256 in hex, so distinct long ids stay distinct. */
static void
anthropic_set_session(char *dst, size_t cap, const char *s, size_t len)
{
    if (len < cap) {
        memcpy(dst, s, len);
        dst[len] = '\0';
        return;
    }
    uint8_t h[GW_SHA256_LEN];
    char hex[2 * GW_SHA256_LEN + 1];
    gw_sha256(s, len, h);
    gw_hex_encode(h, sizeof(h), hex);
    snprintf(dst, cap, "%s", hex);
}

/* metadata.user_id -> session (see the header for the formats). */
static void
anthropic_session_from_user_id(char *dst, size_t cap, const char *uid)
{
    size_t len = strlen(uid);
    if (len == 0)
        return;
    if (uid[0] == '{') {
        cJSON *obj = gw_json_parse(uid, len, NULL);
        const char *sid = NULL;
        if (obj && gw_json_get_str(obj, "session_id", &sid) == GW_OK && sid[0]) {
            anthropic_set_session(dst, cap, sid, strlen(sid));
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
        anthropic_set_session(dst, cap, sid, strlen(sid));
        return;
    }
    anthropic_set_session(dst, cap, uid, len);
}

gw_err
edge_anthropic_scan_request(const char *body, size_t len, struct edge_anthropic_request *out,
                            const char **why)
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
        anthropic_session_from_user_id(out->session, sizeof(out->session), uid);
    rv = GW_OK;
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

void
edge_anthropic_session_from_headers(struct edge_anthropic_request *out,
                                    const struct gw_http_req *client)
{
    if (out->session[0])
        return;
    for (size_t i = 0; i < client->n_headers; i++) {
        const struct gw_http_header *h = &client->headers[i];
        if (gw_str_case_eq(h->name, "x-claude-code-session-id") && h->value.len > 0) {
            anthropic_set_session(out->session, sizeof(out->session), h->value.p, h->value.len);
            return;
        }
    }
}

/* ---- upstream headers --------------------------------------------------- */

static int
anthropic_name_is(struct gw_str name, const char *lit)
{
    return gw_str_case_eq(name, lit);
}

/* 1 when `name` is listed in a Connection header value (RFC 9110 7.6.1:
 * such headers are hop-by-hop too). */
static int
anthropic_named_by_connection(const struct gw_http_req *client, struct gw_str name)
{
    for (size_t i = 0; i < client->n_headers; i++) {
        const struct gw_http_header *h = &client->headers[i];
        if (!anthropic_name_is(h->name, "connection"))
            continue;
        const char *p = h->value.p;
        const char *end = p + h->value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *tok = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            size_t tl = (size_t)(p - tok);
            if (tl > 0 && tl == name.len && strncasecmp(tok, name.p, tl) == 0)
                return 1;
        }
    }
    return 0;
}

static int
anthropic_drop_header(const struct gw_http_req *client, struct gw_str name)
{
    static const char *const drop[] = {
        "connection",    "keep-alive",      "te",     "trailer",        "transfer-encoding",
        "upgrade",       "host",            "content-length", "accept-encoding", "expect",
        "authorization", "x-api-key",       "x-goog-api-key",
    };
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        if (anthropic_name_is(name, drop[i]))
            return 1;
    }
    if (name.len >= 6 && strncasecmp(name.p, "proxy-", 6) == 0)
        return 1;
    return anthropic_named_by_connection(client, name);
}

static struct curl_slist *
anthropic_append(struct curl_slist *list, const char *line)
{
    struct curl_slist *n = curl_slist_append(list, line);
    if (!n) {
        /* curl's allocator failed: same policy as gw_xmalloc */
        gw_log(GW_LOG_ERROR, "EDGE-OOM", "curl_slist_append failed");
        abort();
    }
    return n;
}

struct curl_slist *
edge_anthropic_upstream_headers(const struct gw_http_req *client, const char *credential,
                                int bearer)
{
    struct curl_slist *list = NULL;
    struct gw_buf line = GW_BUF_INIT;
    int have_version = 0;

    for (size_t i = 0; i < client->n_headers; i++) {
        const struct gw_http_header *h = &client->headers[i];
        if (h->name.len == 0 || anthropic_drop_header(client, h->name))
            continue;
        if (anthropic_name_is(h->name, "anthropic-version"))
            have_version = 1;
        gw_buf_reset(&line);
        gw_buf_append(&line, h->name.p, h->name.len);
        if (h->value.len == 0) {
            /* curl: "Name:" would delete the header, "Name;" sends it empty */
            gw_buf_append(&line, ";", 1);
        } else {
            gw_buf_append(&line, ": ", 2);
            gw_buf_append(&line, h->value.p, h->value.len);
        }
        list = anthropic_append(list, line.data);
    }
    if (!have_version)
        list = anthropic_append(list, "anthropic-version: " ANTHROPIC_DEFAULT_VERSION);
    if (credential) {
        gw_buf_reset(&line);
        if (bearer)
            gw_buf_appendf(&line, "authorization: Bearer %s", credential);
        else
            gw_buf_appendf(&line, "x-api-key: %s", credential);
        list = anthropic_append(list, line.data);
        /* the credential must not linger in freed heap memory */
        explicit_bzero(line.data, line.len);
    }
    gw_buf_fini(&line);
    return list;
}

/* ---- usage metering ----------------------------------------------------- */

/* Reads a non-negative integer field; 1 when present and valid. */
static int
anthropic_get_count(const cJSON *obj, const char *name, uint64_t *out)
{
    int64_t v = 0;
    if (!cJSON_IsObject(obj) || gw_json_get_int(obj, name, &v) != GW_OK || v < 0)
        return 0;
    *out = (uint64_t)v;
    return 1;
}

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
    if (anthropic_get_count(usage, "input_tokens", &v))
        anthropic_max(&input, v);
    if (anthropic_get_count(usage, "output_tokens", &v))
        anthropic_max(&output, v);
    if (anthropic_get_count(usage, "cache_read_input_tokens", &v))
        anthropic_max(&cread, v);

    const cJSON *split = cJSON_GetObjectItemCaseSensitive(usage, "cache_creation");
    uint64_t s5 = 0, s1 = 0;
    int have5 = anthropic_get_count(split, "ephemeral_5m_input_tokens", &s5);
    int have1 = anthropic_get_count(split, "ephemeral_1h_input_tokens", &s1);
    uint64_t total = 0;
    int have_total = anthropic_get_count(usage, "cache_creation_input_tokens", &total);
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
