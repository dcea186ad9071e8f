/* SPDX-License-Identifier: Apache-2.0 */
/* The OpenAI dialect: Chat Completions and Responses. Besides the adapter
 * slots this holds the two places where bytes are changed: the
 * include_usage insertion into a streaming chat body (a small raw JSON
 * scanner, so every other byte stays as the client sent it) and the SSE
 * filter that removes the usage-only chunk the insertion produces. */
#include "provider_openai.h"

#include <string.h>

#include "gw_json.h"

#define OPENAI_INCLUDE_USAGE "{\"include_usage\":true}"

/* ---- request scan ---------------------------------------------------------- */

/* Session from a header value (Codex sends session_id). */
static int
openai_header_session(const struct gw_http_req *hreq, char *dst)
{
    static const char *const names[] = {"session_id", "session-id", "x-session-id"};

    if (hreq == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const struct gw_str *h = gw_http_req_header(hreq, names[i]);
        if (h != NULL) {
            struct gw_str v = edge_provider_trim(*h);
            if (v.len > 0) {
                edge_provider_set_session(dst, v.p, v.len);
                return 1;
            }
        }
    }
    return 0;
}

gw_err
edge_openai_scan_request(enum edge_op op, const char *body, size_t len,
                         const struct gw_http_req *hreq, struct edge_request_info *out,
                         const char **why)
{
    static const char *const max_names[] = {"max_tokens", "max_completion_tokens",
                                            "max_output_tokens"};
    const char *reason = NULL, *model = NULL, *pck = NULL;
    cJSON *root = NULL;
    gw_err rv = GW_EINVAL, frv;
    int chat = op == EDGE_OP_CHAT_COMPLETIONS;

    memset(out, 0, sizeof(*out));
    out->max_tokens = -1;
    root = gw_json_parse(body ? body : "", len, &reason);
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
    if (chat && (!messages || cJSON_IsNull(messages))) {
        reason = "messages: field required";
        goto out;
    }
    if (chat && !cJSON_IsArray(messages)) {
        reason = "messages: must be an array";
        goto out;
    }
    frv = gw_json_get_bool(root, "stream", &out->stream);
    if (frv != GW_OK && frv != GW_ENOTFOUND) {
        reason = "stream: must be a boolean";
        goto out;
    }
    for (size_t i = 0; i < sizeof(max_names) / sizeof(max_names[0]); i++) {
        int64_t v;
        frv = gw_json_get_int(root, max_names[i], &v);
        if (frv == GW_OK) {
            out->max_tokens = v;
        } else if (frv != GW_ENOTFOUND) {
            reason = "max_tokens: must be an integer";
            goto out;
        }
    }
    if (chat && out->stream) {
        const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
        if (so == NULL || cJSON_IsNull(so)) {
            out->inject_usage = 1;
        } else if (cJSON_IsObject(so)) {
            const cJSON *iu = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
            out->inject_usage = !cJSON_IsTrue(iu);
        }
    }
    memcpy(out->model, model, strlen(model) + 1);
    out->est_input_tokens = edge_provider_estimate_tokens(len);

    if (!openai_header_session(hreq, out->session)) {
        if (gw_json_get_str(root, "prompt_cache_key", &pck) == GW_OK && pck[0] != '\0') {
            edge_provider_set_session(out->session, pck, strlen(pck));
        } else if (chat) {
            edge_provider_prefix_session(out->session, cJSON_GetArrayItem(messages, 0),
                                         cJSON_GetArrayItem(messages, 1));
        } else {
            const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, "input");
            edge_provider_prefix_session(
                out->session, cJSON_GetObjectItemCaseSensitive(root, "instructions"),
                cJSON_IsArray(input) ? cJSON_GetArrayItem(input, 0) : input);
        }
    }
    rv = GW_OK;
out:
    cJSON_Delete(root);
    if (rv != GW_OK)
        memset(out, 0, sizeof(*out));
    if (why)
        *why = rv == GW_OK ? NULL : reason;
    return rv;
}

/* ---- include_usage insertion: a raw scanner over the client's bytes ------- */

struct openai_span {
    size_t start, end; /* [start, end) */
};

static size_t
openai_ws(const char *p, size_t i, size_t n)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* At '"': moves *i past the closing quote. 0 when unterminated. */
static int
openai_skip_string(const char *p, size_t *i, size_t n)
{
    size_t k = *i + 1;

    while (k < n) {
        if (p[k] == '\\') {
            k += 2;
            continue;
        }
        if (p[k] == '"') {
            *i = k + 1;
            return 1;
        }
        k++;
    }
    return 0;
}

/* Moves *i past one JSON value (not validated in depth: the body already
 * passed gw_json_parse). 0 when it runs off the end. */
static int
openai_skip_value(const char *p, size_t *i, size_t n)
{
    size_t k = *i;
    int depth = 0;

    if (k >= n)
        return 0;
    if (p[k] == '"')
        return openai_skip_string(p, i, n);
    if (p[k] != '{' && p[k] != '[') {
        while (k < n && p[k] != ',' && p[k] != '}' && p[k] != ']' && p[k] != ' ' && p[k] != '\t' &&
               p[k] != '\n' && p[k] != '\r')
            k++;
        if (k == *i)
            return 0;
        *i = k;
        return 1;
    }
    while (k < n) {
        char c = p[k];
        if (c == '"') {
            if (!openai_skip_string(p, &k, n))
                return 0;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
            if (depth == 0) {
                *i = k + 1;
                return 1;
            }
        }
        k++;
    }
    return 0;
}

/* Scans the object starting at p[*i] == '{' for member `key` (raw bytes,
 * quotes included in the comparison). Fills *val with the value's span of
 * the one occurrence and *count with the number of occurrences; *empty is
 * set for "{}". Moves *i past the object. 0 when malformed. */
static int
openai_scan_object(const char *p, size_t *i, size_t n, const char *key, struct openai_span *val,
                   int *count, int *empty)
{
    size_t k = *i, klen = strlen(key);

    *count = 0;
    *empty = 0;
    if (k >= n || p[k] != '{')
        return 0;
    k = openai_ws(p, k + 1, n);
    if (k < n && p[k] == '}') {
        *empty = 1;
        *i = k + 1;
        return 1;
    }
    for (;;) {
        size_t ks = k, ke;
        if (k >= n || p[k] != '"' || !openai_skip_string(p, &k, n))
            return 0;
        ke = k;
        k = openai_ws(p, k, n);
        if (k >= n || p[k] != ':')
            return 0;
        k = openai_ws(p, k + 1, n);
        size_t vs = k;
        if (!openai_skip_value(p, &k, n))
            return 0;
        if (ke - ks == klen + 2 && memcmp(p + ks + 1, key, klen) == 0) {
            (*count)++;
            val->start = vs;
            val->end = k;
        }
        k = openai_ws(p, k, n);
        if (k < n && p[k] == ',') {
            k = openai_ws(p, k + 1, n);
            continue;
        }
        if (k < n && p[k] == '}') {
            *i = k + 1;
            return 1;
        }
        return 0;
    }
}

/* out = body[0..at) + ins + body[skip_to..len). */
static void
openai_splice(const char *body, size_t len, size_t at, size_t skip_to, const char *ins,
              const char *ins2, struct gw_buf *out)
{
    gw_buf_append(out, body, at);
    gw_buf_append_str(out, ins);
    if (ins2)
        gw_buf_append_str(out, ins2);
    gw_buf_append(out, body + skip_to, len - skip_to);
}

int
edge_openai_inject_include_usage(const char *body, size_t len, struct gw_buf *out)
{
    struct openai_span so = {0, 0}, iu = {0, 0};
    size_t i, top;
    int count = 0, empty = 0, icount = 0, iempty = 0;

    if (body == NULL)
        return 0;
    i = openai_ws(body, 0, len);
    top = i;
    if (!openai_scan_object(body, &i, len, "stream_options", &so, &count, &empty))
        return 0;
    if (openai_ws(body, i, len) != len || count > 1)
        return 0;
    if (count == 0) {
        openai_splice(body, len, top + 1, top + 1, "\"stream_options\":" OPENAI_INCLUDE_USAGE,
                      empty ? NULL : ",", out);
        return 1;
    }
    if (so.end - so.start == 4 && memcmp(body + so.start, "null", 4) == 0) {
        openai_splice(body, len, so.start, so.end, OPENAI_INCLUDE_USAGE, NULL, out);
        return 1;
    }
    if (body[so.start] != '{')
        return 0;
    i = so.start;
    if (!openai_scan_object(body, &i, len, "include_usage", &iu, &icount, &iempty) || icount > 1)
        return 0;
    if (icount == 1) {
        openai_splice(body, len, iu.start, iu.end, "true", NULL, out);
        return 1;
    }
    openai_splice(body, len, so.start + 1, so.start + 1, "\"include_usage\":true",
                  iempty ? NULL : ",", out);
    return 1;
}

/* ---- stream filter --------------------------------------------------------- */

/* 1 when the complete raw event ev[0..len) is the usage-only chunk. */
static int
openai_is_usage_chunk(const char *ev, size_t len)
{
    struct gw_buf data = GW_BUF_INIT;
    size_t i = 0;
    int drop = 0;

    /* Cheap test first: almost every event is a content delta. */
    if (!memmem(ev, len, "\"usage\"", 7) || !memmem(ev, len, "\"choices\"", 9))
        return 0;
    /* Join the data lines (SSE rules: "data:" plus one optional space). */
    while (i < len) {
        size_t s = i;
        while (i < len && ev[i] != '\n' && ev[i] != '\r')
            i++;
        size_t e = i;
        if (i < len && ev[i] == '\r') {
            i++;
            if (i < len && ev[i] == '\n')
                i++;
        } else if (i < len) {
            i++;
        }
        if (e - s >= 5 && memcmp(ev + s, "data:", 5) == 0) {
            size_t v = s + 5;
            if (v < e && ev[v] == ' ')
                v++;
            if (data.len > 0)
                gw_buf_append(&data, "\n", 1);
            gw_buf_append(&data, ev + v, e - v);
        }
    }
    if (data.len > 0) {
        cJSON *root = gw_json_parse(data.data, data.len, NULL);
        const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
        const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
        drop = cJSON_IsObject(root) && cJSON_IsArray(choices) && cJSON_GetArraySize(choices) == 0 &&
               cJSON_IsObject(usage);
        cJSON_Delete(root);
    }
    gw_buf_fini(&data);
    return drop;
}

/* The event ev[start..end) is complete: forward or drop it. */
static void
openai_emit_event(struct edge_meter *m, size_t start, size_t end, struct gw_buf *out)
{
    if (!m->pass && openai_is_usage_chunk(m->ev.data + start, end - start)) {
        m->events_dropped++;
        return;
    }
    gw_buf_append(out, m->ev.data + start, end - start);
}

void
edge_openai_filter_stream(struct edge_meter *m, const char *data, size_t len, struct gw_buf *out)
{
    size_t i, start = 0;

    i = m->ev.len;
    gw_buf_append(&m->ev, data, len);
    while (i < m->ev.len) {
        char c = m->ev.data[i];

        if (m->end_cr) {
            /* The event ended with CR; a LF right after belongs to it. */
            m->end_cr = 0;
            if (c == '\n')
                i++;
            openai_emit_event(m, start, i, out);
            start = i;
            m->pass = 0;
            m->at_line_start = 1;
            m->last_cr = 0;
            continue;
        }
        i++;
        if (c != '\n' && c != '\r') {
            m->at_line_start = 0;
            m->last_cr = 0;
            continue;
        }
        if (c == '\n' && m->last_cr) {
            /* second half of a CRLF line end */
            m->last_cr = 0;
            continue;
        }
        if (!m->at_line_start) {
            m->at_line_start = 1;
            m->last_cr = c == '\r';
            continue;
        }
        /* An empty line: the event is complete. */
        if (c == '\r') {
            m->end_cr = 1;
            continue;
        }
        openai_emit_event(m, start, i, out);
        start = i;
        m->pass = 0;
        m->at_line_start = 1;
        m->last_cr = 0;
    }
    if (!m->pass && m->ev.len - start > m->ev_max)
        m->pass = 1; /* too long to hold: the rest of this event goes through */
    if (m->pass && m->ev.len > start) {
        gw_buf_append(out, m->ev.data + start, m->ev.len - start);
        start = m->ev.len;
    }
    gw_buf_consume(&m->ev, start);
}

void
edge_openai_filter_flush(struct edge_meter *m, struct gw_buf *out)
{
    /* An event cut short is forwarded as it came (the client sees the cut). */
    if (m->ev.len > 0 && m->end_cr)
        openai_emit_event(m, 0, m->ev.len, out);
    else if (m->ev.len > 0)
        gw_buf_append(out, m->ev.data, m->ev.len);
    gw_buf_reset(&m->ev);
    m->end_cr = 0;
    m->pass = 0;
    m->at_line_start = 1;
    m->last_cr = 0;
}

/* ---- metering -------------------------------------------------------------- */

/* Applies one usage object of either API (replacing what was there). */
static void
openai_apply_usage(struct edge_usage *u, const cJSON *usage)
{
    uint64_t in = 0, out = 0, cached = 0, reasoning = 0;
    const cJSON *d;

    if (!edge_provider_get_count(usage, "prompt_tokens", &in))
        (void)edge_provider_get_count(usage, "input_tokens", &in);
    if (!edge_provider_get_count(usage, "completion_tokens", &out))
        (void)edge_provider_get_count(usage, "output_tokens", &out);
    d = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens_details");
    if (!cJSON_IsObject(d))
        d = cJSON_GetObjectItemCaseSensitive(usage, "input_tokens_details");
    (void)edge_provider_get_count(d, "cached_tokens", &cached);
    d = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens_details");
    if (!cJSON_IsObject(d))
        d = cJSON_GetObjectItemCaseSensitive(usage, "output_tokens_details");
    (void)edge_provider_get_count(d, "reasoning_tokens", &reasoning);
    if (cached > in)
        cached = in;
    u->input_tokens = in - cached;
    u->cache_read_tokens = cached;
    u->output_tokens = out;
    u->reasoning_tokens = reasoning;
    u->cache_write_5m_tokens = 0;
    u->cache_write_1h_tokens = 0;
    u->have_start = 1;
}

static int
openai_name_is(const char *s, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

static void
openai_meter_event(struct edge_meter *m, const char *event, size_t event_len, const char *data,
                   size_t data_len)
{
    cJSON *root = NULL;
    const char *type = NULL;

    if (m->op == EDGE_OP_CHAT_COMPLETIONS) {
        if (openai_name_is(data, data_len, "[DONE]")) {
            m->usage.have_final = 1;
            return;
        }
        /* Content deltas carry no usage; skip them without parsing. */
        if (!memmem(data, data_len, "\"usage\"", 7))
            return;
        root = gw_json_parse(data, data_len, NULL);
        const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
        if (cJSON_IsObject(usage))
            openai_apply_usage(&m->usage, usage);
        cJSON_Delete(root);
        return;
    }
    /* Responses: only the terminal events carry the final usage. */
    if (event_len > 0 && !openai_name_is(event, event_len, "response.completed") &&
        !openai_name_is(event, event_len, "response.incomplete") &&
        !openai_name_is(event, event_len, "response.failed"))
        return;
    if (event_len == 0 && !memmem(data, data_len, "\"response.", 10))
        return;
    root = gw_json_parse(data, data_len, NULL);
    if (!cJSON_IsObject(root))
        goto out;
    if (event_len == 0) {
        if (gw_json_get_str(root, "type", &type) != GW_OK)
            goto out;
        if (strcmp(type, "response.completed") != 0 && strcmp(type, "response.incomplete") != 0 &&
            strcmp(type, "response.failed") != 0)
            goto out;
    }
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(root, "response");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(resp, "usage");
    if (cJSON_IsObject(usage))
        openai_apply_usage(&m->usage, usage);
    m->usage.have_final = 1;
out:
    cJSON_Delete(root);
}

static gw_err
openai_meter_body(struct edge_meter *m, const char *body, size_t len)
{
    gw_err rv = GW_EINVAL;
    cJSON *root = gw_json_parse(body, len, NULL);
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");

    if (cJSON_IsObject(root) && cJSON_IsObject(usage)) {
        openai_apply_usage(&m->usage, usage);
        m->usage.have_final = 1;
        rv = GW_OK;
    }
    cJSON_Delete(root);
    return rv;
}

/* ---- errors and models ----------------------------------------------------- */

void
edge_openai_error_body(int status, gw_err err, const char *message, struct gw_buf *out)
{
    const char *type, *code;

    switch (err) {
    case GW_EAUTH:
        type = "invalid_request_error";
        code = "invalid_api_key";
        break;
    case GW_EPERM:
        type = "invalid_request_error";
        code = "permission_denied";
        break;
    case GW_ENOTFOUND:
        type = "invalid_request_error";
        code = "not_found";
        break;
    case GW_EQUOTA:
        type = "requests";
        code = "rate_limit_exceeded";
        break;
    case GW_EMSGSIZE:
        type = "invalid_request_error";
        code = "request_too_large";
        break;
    case GW_ENOTSUP:
        type = "invalid_request_error";
        code = "not_supported";
        break;
    case GW_ETIMEDOUT:
        type = "server_error";
        code = "timeout";
        break;
    case GW_ENOACCOUNT:
        type = "server_error";
        code = "service_unavailable";
        break;
    case GW_EUPSTREAM:
        type = "server_error";
        code = "upstream_error";
        break;
    default:
        type = status >= 500 ? "server_error" : "invalid_request_error";
        code = NULL;
        break;
    }
    if (!message)
        message = gw_strerror(err);
    gw_buf_append_str(out, "{\"error\":{\"message\":");
    gw_json_append_string(out, message, strlen(message));
    gw_buf_append_str(out, ",\"type\":");
    gw_json_append_string(out, type, strlen(type));
    gw_buf_append_str(out, ",\"param\":null,\"code\":");
    if (code)
        gw_json_append_string(out, code, strlen(code));
    else
        gw_buf_append_str(out, "null");
    gw_buf_append_str(out, "}}");
}

static void
openai_models_body(const char *const *ids, size_t n, struct gw_buf *out)
{
    gw_buf_append_str(out, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            gw_buf_append(out, ",", 1);
        gw_buf_append_str(out, "{\"id\":");
        gw_json_append_string(out, ids[i], strlen(ids[i]));
        gw_buf_append_str(out, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"aicarpool\"}");
    }
    gw_buf_append_str(out, "]}");
}

/* ---- adapter ---------------------------------------------------------------- */

static int
openai_match(const struct gw_http_req *hreq, struct edge_match *out)
{
    size_t pos;

    if (edge_provider_path_suffix(hreq->path, "/v1/chat/completions", &pos)) {
        out->op = EDGE_OP_CHAT_COMPLETIONS;
        out->method = "POST";
    } else if (edge_provider_path_suffix(hreq->path, "/v1/responses", &pos)) {
        out->op = EDGE_OP_RESPONSES;
        out->method = "POST";
    } else if (edge_provider_path_suffix(hreq->path, "/v1/models", &pos)) {
        out->op = EDGE_OP_MODELS;
        out->method = "GET";
    } else {
        return 0;
    }
    out->api_off = pos;
    return 1;
}

static gw_err
openai_scan(const struct gw_http_req *hreq, const struct edge_match *m,
            struct edge_request_info *out, const char **why)
{
    return edge_openai_scan_request(m->op, hreq->body.data, hreq->body.len, hreq, out, why);
}

static gw_err
openai_upstream_url(const char *base_url, const struct gw_http_req *hreq,
                    const struct edge_match *m, struct gw_buf *url)
{
    struct gw_str api = {hreq->path.p + m->api_off, hreq->path.len - m->api_off};

    return edge_provider_join_url(base_url, api, hreq->query, url);
}

static struct curl_slist *
openai_upstream_headers(const struct gw_http_req *hreq, const struct edge_account *a)
{
    struct curl_slist *list = edge_provider_copy_headers(hreq, NULL, NULL);
    struct gw_buf v = GW_BUF_INIT;

    gw_buf_appendf(&v, "Bearer %s", a->credential);
    list = edge_provider_add_header(list, "authorization", v.data);
    explicit_bzero(v.data, v.len);
    gw_buf_fini(&v);
    return list;
}

static int
openai_rewrite_body(const struct gw_http_req *hreq, const struct edge_match *m,
                    const struct edge_request_info *info, struct gw_buf *out)
{
    if (m->op != EDGE_OP_CHAT_COMPLETIONS || !info->inject_usage)
        return 0;
    return edge_openai_inject_include_usage(hreq->body.data, hreq->body.len, out);
}

static const char *const openai_default_models[] = {
    "gpt-5", "gpt-5-mini", "gpt-5-codex", "gpt-4.1", "gpt-4o", "gpt-4o-mini",
};

const struct edge_provider edge_provider_openai = {
    .name = "openai",
    .dialect = EDGE_DIALECT_OPENAI,
    .match = openai_match,
    .client_key = edge_provider_bearer,
    .scan_request = openai_scan,
    .upstream_url = openai_upstream_url,
    .upstream_headers = openai_upstream_headers,
    .rewrite_body = openai_rewrite_body,
    .meter_event = openai_meter_event,
    .meter_body = openai_meter_body,
    .filter_stream = edge_openai_filter_stream,
    .filter_flush = edge_openai_filter_flush,
    .error_body = edge_openai_error_body,
    .models_body = openai_models_body,
    .default_models = openai_default_models,
    .n_default_models = sizeof(openai_default_models) / sizeof(openai_default_models[0]),
};
