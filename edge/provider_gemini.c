/* SPDX-License-Identifier: Apache-2.0 */
/* The Gemini dialect: path parsing with the model in the path, the key=
 * query parameter (accepted from the client, never forwarded), usage from
 * usageMetadata in events, bodies and JSON arrays, and Google-style
 * errors. */
#include "provider_gemini.h"

#include <string.h>

#include "gw_json.h"

/* ---- query ----------------------------------------------------------------- */

/* 1 for the parameter "key" or "key=...". */
static int
gemini_param_is_key(const char *p, size_t len)
{
    return (len == 3 && memcmp(p, "key", 3) == 0) || (len > 3 && memcmp(p, "key=", 4) == 0);
}

void
edge_gemini_strip_key(struct gw_str q, struct gw_buf *out)
{
    const char *p = q.p, *end = q.p + q.len;
    int first = 1;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        size_t len = (size_t)(stop - p);
        if (len > 0 && !gemini_param_is_key(p, len)) {
            if (!first)
                gw_buf_append(out, "&", 1);
            gw_buf_append(out, p, len);
            first = 0;
        }
        p = amp ? amp + 1 : end;
    }
}

int
edge_gemini_query_key(struct gw_str q, struct gw_str *out)
{
    const char *p = q.p, *end = q.p + q.len;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        size_t len = (size_t)(stop - p);
        if (len > 4 && memcmp(p, "key=", 4) == 0) {
            out->p = p + 4;
            out->len = len - 4;
            return 1;
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}

/* ---- match ------------------------------------------------------------------ */

/* 1 when path[0..end) ends with "/v1beta" or "/v1"; *off gets where. */
static int
gemini_version_before(struct gw_str path, size_t end, size_t *off)
{
    static const char *const versions[] = {"/v1beta", "/v1"};

    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        size_t n = strlen(versions[i]);
        if (end >= n && memcmp(path.p + end - n, versions[i], n) == 0) {
            *off = end - n;
            return 1;
        }
    }
    return 0;
}

static int
gemini_has_key(const struct gw_http_req *hreq)
{
    struct gw_str k;

    return gw_http_req_header(hreq, "x-goog-api-key") != NULL ||
           edge_gemini_query_key(hreq->query, &k);
}

static int
gemini_match(const struct gw_http_req *hreq, struct edge_match *out)
{
    static const struct {
        const char *suffix;
        enum edge_op op;
    } methods[] = {
        {":generateContent", EDGE_OP_GENERATE_CONTENT},
        {":streamGenerateContent", EDGE_OP_STREAM_GENERATE_CONTENT},
        {":countTokens", EDGE_OP_COUNT_TOKENS_GEMINI},
    };
    struct gw_str path = hreq->path;
    size_t pos;

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (!edge_provider_path_suffix(path, methods[i].suffix, &pos))
            continue;
        /* .../{v1beta|v1}/models/{model}:method with a model without '/' */
        size_t m_end = pos, m_start = pos;
        while (m_start > 0 && path.p[m_start - 1] != '/')
            m_start--;
        if (m_start == m_end || m_start < 8 || memcmp(path.p + m_start - 8, "/models/", 8) != 0)
            return 0;
        if (!gemini_version_before(path, m_start - 8, &out->api_off))
            return 0;
        out->op = methods[i].op;
        out->method = "POST";
        out->model.p = path.p + m_start;
        out->model.len = m_end - m_start;
        return 1;
    }
    if (edge_provider_path_suffix(path, "/v1beta/models", &pos) ||
        (edge_provider_path_suffix(path, "/v1/models", &pos) && gemini_has_key(hreq))) {
        out->op = EDGE_OP_LIST_MODELS;
        out->method = "GET";
        out->api_off = pos;
        return 1;
    }
    return 0;
}

static int
gemini_client_key(const struct gw_http_req *hreq, struct gw_str *out)
{
    const struct gw_str *h = gw_http_req_header(hreq, "x-goog-api-key");

    if (h != NULL) {
        *out = edge_provider_trim(*h);
        if (out->len > 0)
            return 1;
    }
    return edge_gemini_query_key(hreq->query, out) && out->len > 0;
}

/* ---- scan ------------------------------------------------------------------- */

static gw_err
gemini_scan(const struct gw_http_req *hreq, const struct edge_match *m,
            struct edge_request_info *out, const char **why)
{
    const char *reason = NULL;
    cJSON *root = NULL;
    gw_err rv = GW_EINVAL;

    memset(out, 0, sizeof(*out));
    out->max_tokens = -1;
    if (m->model.len == 0) {
        reason = "model: missing in the path";
        goto out;
    }
    if (m->model.len >= sizeof(out->model)) {
        reason = "model: name too long";
        goto out;
    }
    root = gw_json_parse(hreq->body.data ? hreq->body.data : "", hreq->body.len, &reason);
    if (!root) {
        reason = "request body is not valid JSON";
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        reason = "request body must be a JSON object";
        goto out;
    }
    const cJSON *contents = cJSON_GetObjectItemCaseSensitive(root, "contents");
    if (m->op != EDGE_OP_COUNT_TOKENS_GEMINI && !cJSON_IsArray(contents)) {
        reason = contents ? "contents: must be an array" : "contents: field required";
        goto out;
    }
    const cJSON *gc = cJSON_GetObjectItemCaseSensitive(root, "generationConfig");
    if (cJSON_IsObject(gc)) {
        int64_t v;
        gw_err frv = gw_json_get_int(gc, "maxOutputTokens", &v);
        if (frv == GW_OK) {
            out->max_tokens = v;
        } else if (frv != GW_ENOTFOUND) {
            reason = "generationConfig.maxOutputTokens: must be an integer";
            goto out;
        }
    }
    memcpy(out->model, m->model.p, m->model.len);
    out->model[m->model.len] = '\0';
    out->stream = m->op == EDGE_OP_STREAM_GENERATE_CONTENT;
    out->est_input_tokens = edge_provider_estimate_tokens(hreq->body.len);
    edge_provider_prefix_session(out->session,
                                 cJSON_GetObjectItemCaseSensitive(root, "systemInstruction"),
                                 cJSON_IsArray(contents) ? cJSON_GetArrayItem(contents, 0) : NULL);
    rv = GW_OK;
out:
    cJSON_Delete(root);
    if (rv != GW_OK)
        memset(out, 0, sizeof(*out));
    if (why)
        *why = rv == GW_OK ? NULL : reason;
    return rv;
}

/* ---- upstream ----------------------------------------------------------------- */

static gw_err
gemini_upstream_url(const char *base_url, const struct gw_http_req *hreq,
                    const struct edge_match *m, struct gw_buf *url)
{
    struct gw_str api = {hreq->path.p + m->api_off, hreq->path.len - m->api_off};
    struct gw_buf q = GW_BUF_INIT;
    struct gw_str qs;
    gw_err rv;

    edge_gemini_strip_key(hreq->query, &q);
    qs.p = q.data ? q.data : "";
    qs.len = q.len;
    rv = edge_provider_join_url(base_url, api, qs, url);
    gw_buf_fini(&q);
    return rv;
}

static struct curl_slist *
gemini_upstream_headers(const struct gw_http_req *hreq, const struct edge_account *a)
{
    struct curl_slist *list = edge_provider_copy_headers(hreq, NULL, NULL);

    return edge_provider_add_header(list, "x-goog-api-key", a->credential);
}

/* ---- metering ------------------------------------------------------------------ */

/* Applies one usageMetadata object (replacing: the counts are cumulative). */
static void
gemini_apply_usage(struct edge_usage *u, const cJSON *um)
{
    uint64_t prompt = 0, cached = 0, cand = 0, thoughts = 0, tool = 0;

    (void)edge_provider_get_count(um, "promptTokenCount", &prompt);
    (void)edge_provider_get_count(um, "cachedContentTokenCount", &cached);
    (void)edge_provider_get_count(um, "candidatesTokenCount", &cand);
    (void)edge_provider_get_count(um, "thoughtsTokenCount", &thoughts);
    (void)edge_provider_get_count(um, "toolUsePromptTokenCount", &tool);
    prompt += tool;
    if (cached > prompt)
        cached = prompt;
    u->input_tokens = prompt - cached;
    u->cache_read_tokens = cached;
    u->output_tokens = cand + thoughts;
    u->reasoning_tokens = thoughts;
    u->cache_write_5m_tokens = 0;
    u->cache_write_1h_tokens = 0;
    u->have_start = 1;
}

/* One GenerateContentResponse: usage and whether a candidate finished. */
static int
gemini_apply_response(struct edge_usage *u, const cJSON *resp)
{
    const cJSON *um = cJSON_GetObjectItemCaseSensitive(resp, "usageMetadata");
    const cJSON *cands = cJSON_GetObjectItemCaseSensitive(resp, "candidates");
    const cJSON *c0 = cJSON_IsArray(cands) ? cJSON_GetArrayItem(cands, 0) : NULL;

    if (cJSON_IsObject(um))
        gemini_apply_usage(u, um);
    if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c0, "finishReason")))
        u->have_final = 1;
    return cJSON_IsObject(um);
}

static void
gemini_meter_event(struct edge_meter *m, const char *event, size_t event_len, const char *data,
                   size_t data_len)
{
    cJSON *root;

    (void)event;
    (void)event_len;
    if (!memmem(data, data_len, "\"usageMetadata\"", 15) &&
        !memmem(data, data_len, "\"finishReason\"", 14))
        return;
    root = gw_json_parse(data, data_len, NULL);
    if (cJSON_IsObject(root))
        (void)gemini_apply_response(&m->usage, root);
    cJSON_Delete(root);
}

static gw_err
gemini_meter_body(struct edge_meter *m, const char *body, size_t len)
{
    cJSON *root = gw_json_parse(body, len, NULL);
    gw_err rv = GW_EINVAL;

    if (cJSON_IsObject(root)) {
        if (gemini_apply_response(&m->usage, root))
            rv = GW_OK;
    } else if (cJSON_IsArray(root)) {
        /* streamGenerateContent without alt=sse: one array of responses. */
        const cJSON *el;
        cJSON_ArrayForEach(el, root)
        {
            if (cJSON_IsObject(el) && gemini_apply_response(&m->usage, el))
                rv = GW_OK;
        }
    }
    if (rv == GW_OK)
        m->usage.have_final = 1;
    cJSON_Delete(root);
    return rv;
}

/* ---- errors and models --------------------------------------------------------- */

const char *
edge_gemini_status_name(int status)
{
    switch (status) {
    case 400:
    case 413:
    case 431:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
    case 405:
        return "NOT_FOUND";
    case 408:
    case 504:
        return "DEADLINE_EXCEEDED";
    case 409:
        return "ABORTED";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 499:
        return "CANCELLED";
    case 501:
        return "UNIMPLEMENTED";
    case 502:
    case 503:
        return "UNAVAILABLE";
    default:
        return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
    }
}

void
edge_gemini_error_body(int status, gw_err err, const char *message, struct gw_buf *out)
{
    const char *name = edge_gemini_status_name(status);

    if (!message)
        message = gw_strerror(err);
    gw_buf_appendf(out, "{\"error\":{\"code\":%d,\"message\":", status);
    gw_json_append_string(out, message, strlen(message));
    gw_buf_append_str(out, ",\"status\":");
    gw_json_append_string(out, name, strlen(name));
    gw_buf_append_str(out, "}}");
}

static void
gemini_models_body(const char *const *ids, size_t n, struct gw_buf *out)
{
    gw_buf_append_str(out, "{\"models\":[");
    for (size_t i = 0; i < n; i++) {
        struct gw_buf name = GW_BUF_INIT;
        if (i > 0)
            gw_buf_append(out, ",", 1);
        gw_buf_appendf(&name, "models/%s", ids[i]);
        gw_buf_append_str(out, "{\"name\":");
        gw_json_append_string(out, name.data, name.len);
        gw_buf_append_str(out, ",\"displayName\":");
        gw_json_append_string(out, ids[i], strlen(ids[i]));
        gw_buf_append_str(out, ",\"supportedGenerationMethods\":[\"generateContent\","
                               "\"streamGenerateContent\",\"countTokens\"]}");
        gw_buf_fini(&name);
    }
    gw_buf_append_str(out, "]}");
}

/* ---- adapter -------------------------------------------------------------------- */

static const char *const gemini_default_models[] = {
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
};

const struct edge_provider edge_provider_gemini = {
    .name = "gemini",
    .dialect = EDGE_DIALECT_GEMINI,
    .match = gemini_match,
    .client_key = gemini_client_key,
    .scan_request = gemini_scan,
    .upstream_url = gemini_upstream_url,
    .upstream_headers = gemini_upstream_headers,
    .rewrite_body = NULL,
    .meter_event = gemini_meter_event,
    .meter_body = gemini_meter_body,
    .filter_stream = NULL,
    .filter_flush = NULL,
    .error_body = edge_gemini_error_body,
    .models_body = gemini_models_body,
    .default_models = gemini_default_models,
    .n_default_models = sizeof(gemini_default_models) / sizeof(gemini_default_models[0]),
};
