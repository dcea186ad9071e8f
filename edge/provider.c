/* SPDX-License-Identifier: Apache-2.0 */
/* The adapter registry (match by path, guess a dialect for errors) and the
 * pieces every adapter is built from: header filtering, URL joining,
 * session ids, retry-after parsing and the meter state. */
#include "provider.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gw_crypto.h"
#include "gw_json.h"
#include "gw_log.h"

#define PROVIDER_URL_MAX 4096
#define PROVIDER_EVENT_MAX (1u << 20)

/* ---- operations ---------------------------------------------------------- */

const char *
edge_op_name(enum edge_op op)
{
    switch (op) {
    case EDGE_OP_MESSAGES:
        return "messages";
    case EDGE_OP_COUNT_TOKENS:
        return "count_tokens";
    case EDGE_OP_MODELS:
        return "models";
    case EDGE_OP_CHAT_COMPLETIONS:
        return "chat_completions";
    case EDGE_OP_RESPONSES:
        return "responses";
    case EDGE_OP_GENERATE_CONTENT:
        return "generate_content";
    case EDGE_OP_STREAM_GENERATE_CONTENT:
        return "stream_generate_content";
    case EDGE_OP_COUNT_TOKENS_GEMINI:
        return "count_tokens_gemini";
    case EDGE_OP_LIST_MODELS:
        return "list_models";
    case EDGE_OP_NONE:
        break;
    }
    return "none";
}

int
edge_op_billable(enum edge_op op)
{
    return op == EDGE_OP_MESSAGES || op == EDGE_OP_CHAT_COMPLETIONS || op == EDGE_OP_RESPONSES ||
           op == EDGE_OP_GENERATE_CONTENT || op == EDGE_OP_STREAM_GENERATE_CONTENT;
}

int
edge_op_local(enum edge_op op)
{
    return op == EDGE_OP_MODELS || op == EDGE_OP_LIST_MODELS;
}

/* ---- registry ------------------------------------------------------------ */

const struct edge_provider *
edge_provider_of(enum edge_dialect d)
{
    switch (d) {
    case EDGE_DIALECT_ANTHROPIC:
        return &edge_provider_anthropic;
    case EDGE_DIALECT_OPENAI:
        return &edge_provider_openai;
    case EDGE_DIALECT_GEMINI:
        return &edge_provider_gemini;
    case EDGE_DIALECT_COUNT:
        break;
    }
    return NULL;
}

const struct edge_provider *
edge_provider_match(const struct gw_http_req *hreq, struct edge_match *out)
{
    static const struct edge_provider *const order[] = {
        &edge_provider_gemini,
        &edge_provider_anthropic,
        &edge_provider_openai,
    };

    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        memset(out, 0, sizeof(*out));
        if (order[i]->match(hreq, out))
            return order[i];
    }
    memset(out, 0, sizeof(*out));
    return NULL;
}

static int
provider_contains(struct gw_str s, const char *needle)
{
    return memmem(s.p, s.len, needle, strlen(needle)) != NULL;
}

/* 1 when the query string has a parameter named `name`. */
static int
provider_query_has(struct gw_str q, const char *name)
{
    size_t n = strlen(name);
    const char *p = q.p, *end = q.p + q.len;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) >= n && memcmp(p, name, n) == 0 && (p + n == stop || p[n] == '='))
            return 1;
        p = amp ? amp + 1 : end;
    }
    return 0;
}

const struct edge_provider *
edge_provider_guess(struct gw_str path, const struct gw_http_req *hreq)
{
    struct gw_str dummy;

    if (provider_contains(path, "/v1beta/") || provider_contains(path, ":generateContent") ||
        provider_contains(path, ":streamGenerateContent") ||
        provider_contains(path, ":countTokens") ||
        (path.len >= 7 && memcmp(path.p + path.len - 7, "/v1beta", 7) == 0))
        return &edge_provider_gemini;
    if (hreq != NULL) {
        if (gw_http_req_header(hreq, "x-goog-api-key") != NULL ||
            provider_query_has(hreq->query, "key"))
            return &edge_provider_gemini;
        if (gw_http_req_header(hreq, "x-api-key") != NULL ||
            gw_http_req_header(hreq, "anthropic-version") != NULL)
            return &edge_provider_anthropic;
    }
    if (provider_contains(path, "/chat/completions") || provider_contains(path, "/responses"))
        return &edge_provider_openai;
    if (hreq != NULL && edge_provider_bearer(hreq, &dummy))
        return &edge_provider_openai;
    return &edge_provider_anthropic;
}

/* ---- small helpers -------------------------------------------------------- */

int
edge_provider_path_suffix(struct gw_str path, const char *suffix, size_t *pos)
{
    size_t n = strlen(suffix);

    if (path.len < n || memcmp(path.p + path.len - n, suffix, n) != 0)
        return 0;
    *pos = path.len - n;
    return 1;
}

struct gw_str
edge_provider_trim(struct gw_str s)
{
    while (s.len > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

int
edge_provider_bearer(const struct gw_http_req *hreq, struct gw_str *out)
{
    const struct gw_str *h = gw_http_req_header(hreq, "authorization");

    if (h == NULL || h->len < 7 || strncasecmp(h->p, "Bearer ", 7) != 0)
        return 0;
    struct gw_str rest = {h->p + 7, h->len - 7};
    *out = edge_provider_trim(rest);
    return out->len > 0;
}

uint64_t
edge_provider_estimate_tokens(size_t len)
{
    return ((uint64_t)len + 3u) / 4u;
}

int
edge_provider_get_count(const struct cJSON *obj, const char *name, uint64_t *out)
{
    int64_t v = 0;

    if (!cJSON_IsObject(obj) || gw_json_get_int(obj, name, &v) != GW_OK || v < 0)
        return 0;
    *out = (uint64_t)v;
    return 1;
}

/* ---- upstream headers ----------------------------------------------------- */

/* 1 when `name` is listed in a Connection header value (RFC 9110 7.6.1:
 * such headers are hop-by-hop too). */
static int
provider_named_by_connection(const struct gw_http_req *client, struct gw_str name)
{
    for (size_t i = 0; i < client->n_headers; i++) {
        const struct gw_http_header *h = &client->headers[i];
        if (!gw_str_case_eq(h->name, "connection"))
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
provider_drop_header(const struct gw_http_req *client, struct gw_str name)
{
    static const char *const drop[] = {
        "connection",     "keep-alive",        "te",
        "trailer",        "transfer-encoding", "upgrade",
        "host",           "content-length",    "accept-encoding",
        "expect",         "authorization",     "x-api-key",
        "x-goog-api-key",
    };
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        if (gw_str_case_eq(name, drop[i]))
            return 1;
    }
    if (name.len >= 6 && strncasecmp(name.p, "proxy-", 6) == 0)
        return 1;
    return provider_named_by_connection(client, name);
}

static struct curl_slist *
provider_append(struct curl_slist *list, const char *line)
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
edge_provider_copy_headers(const struct gw_http_req *client, struct curl_slist *list,
                           int *saw_anthropic_version)
{
    struct gw_buf line = GW_BUF_INIT;

    if (saw_anthropic_version)
        *saw_anthropic_version = 0;
    for (size_t i = 0; i < client->n_headers; i++) {
        const struct gw_http_header *h = &client->headers[i];
        if (h->name.len == 0 || provider_drop_header(client, h->name))
            continue;
        if (saw_anthropic_version && gw_str_case_eq(h->name, "anthropic-version"))
            *saw_anthropic_version = 1;
        gw_buf_reset(&line);
        gw_buf_append(&line, h->name.p, h->name.len);
        if (h->value.len == 0) {
            /* curl: "Name:" would delete the header, "Name;" sends it empty */
            gw_buf_append(&line, ";", 1);
        } else {
            gw_buf_append(&line, ": ", 2);
            gw_buf_append(&line, h->value.p, h->value.len);
        }
        list = provider_append(list, line.data);
    }
    gw_buf_fini(&line);
    return list;
}

struct curl_slist *
edge_provider_add_header(struct curl_slist *list, const char *name, const char *value)
{
    struct gw_buf line = GW_BUF_INIT;

    gw_buf_appendf(&line, "%s: %s", name, value);
    list = provider_append(list, line.data);
    /* the value is usually a credential: it must not linger in freed heap */
    explicit_bzero(line.data, line.len);
    gw_buf_fini(&line);
    return list;
}

/* ---- URL ------------------------------------------------------------------- */

gw_err
edge_provider_join_url(const char *base, struct gw_str api, struct gw_str query, struct gw_buf *url)
{
    size_t base_len = strlen(base);

    while (base_len > 0 && base[base_len - 1] == '/')
        base_len--;
    if (base_len == 0)
        return GW_EINVAL;
    /* A base URL that already ends in the API's first segment ("https://
     * api.example.com/v1" for "/v1/chat/completions") must not double it. */
    if (api.len > 1 && api.p[0] == '/') {
        const char *slash = memchr(api.p + 1, '/', api.len - 1);
        size_t seg = slash ? (size_t)(slash - api.p) : api.len;
        if (base_len >= seg && memcmp(base + base_len - seg, api.p, seg) == 0) {
            api.p += seg;
            api.len -= seg;
        }
    }
    if (base_len + api.len + 1 + query.len > PROVIDER_URL_MAX)
        return GW_EMSGSIZE;
    gw_buf_append(url, base, base_len);
    gw_buf_append(url, api.p, api.len);
    if (query.len > 0) {
        gw_buf_append(url, "?", 1);
        gw_buf_append(url, query.p, query.len);
    }
    return GW_OK;
}

/* ---- sessions -------------------------------------------------------------- */

void
edge_provider_set_session(char *dst, const char *s, size_t len)
{
    uint8_t h[GW_SHA256_LEN];
    char hex[2 * GW_SHA256_LEN + 1];

    if (len < EDGE_SESSION_MAX) {
        memcpy(dst, s, len);
        dst[len] = '\0';
        return;
    }
    gw_sha256(s, len, h);
    gw_hex_encode(h, sizeof(h), hex);
    snprintf(dst, EDGE_SESSION_MAX, "%s", hex);
}

void
edge_provider_prefix_session(char *dst, const struct cJSON *a, const struct cJSON *b)
{
    struct gw_buf buf = GW_BUF_INIT;
    uint8_t h[GW_SHA256_LEN];
    char hex[2 * GW_SHA256_LEN + 1];

    if (a == NULL && b == NULL)
        return;
    if (a != NULL)
        gw_json_append(&buf, a);
    gw_buf_append(&buf, "\n", 1);
    if (b != NULL)
        gw_json_append(&buf, b);
    gw_sha256(buf.data, buf.len, h);
    gw_buf_fini(&buf);
    gw_hex_encode(h, sizeof(h), hex);
    snprintf(dst, EDGE_SESSION_MAX, "p:%.32s", hex);
}

/* ---- retry-after ------------------------------------------------------------ */

/* Parses a base-10 non-negative integer of exactly the bytes given. */
static int
provider_parse_uint(const char *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 18)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 1;
}

/* RFC 3339 "2025-06-01T12:00:30Z", "...30.250Z", "...30+02:00" -> unix ms. */
static int
provider_parse_rfc3339(const char *s, size_t len, int64_t *out_ms)
{
    char buf[64];
    struct tm tm;
    const char *p;
    int64_t ms = 0, off = 0;

    if (len == 0 || len >= sizeof(buf))
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(&tm, 0, sizeof(tm));
    p = strptime(buf, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return 0;
    if (*p == '.') {
        int digits = 0;
        p++;
        while (isdigit((unsigned char)*p)) {
            if (digits < 3) {
                ms = ms * 10 + (*p - '0');
                digits++;
            }
            p++;
        }
        while (digits++ < 3)
            ms *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && isdigit((unsigned char)p[1]) &&
               isdigit((unsigned char)p[2]) && p[3] == ':' && isdigit((unsigned char)p[4]) &&
               isdigit((unsigned char)p[5])) {
        off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
        if (*p == '+')
            off = -off;
        p += 6;
    } else {
        return 0;
    }
    if (*p != '\0')
        return 0;
    *out_ms = ((int64_t)timegm(&tm) + off) * 1000 + ms;
    return 1;
}

/* OpenAI's reset durations: "1s", "6m0s", "250ms", "1h2m3.5s". */
static int
provider_parse_duration(const char *p, size_t len, int64_t *out_ms)
{
    double total = 0;
    size_t i = 0;

    if (len == 0)
        return 0;
    while (i < len) {
        double v = 0, scale = 1;
        int digits = 0, frac = 0;
        while (i < len && (isdigit((unsigned char)p[i]) || p[i] == '.')) {
            if (p[i] == '.') {
                if (frac)
                    return 0;
                frac = 1;
            } else if (frac) {
                scale /= 10;
                v += (p[i] - '0') * scale;
            } else {
                v = v * 10 + (p[i] - '0');
            }
            digits++;
            i++;
        }
        if (digits == 0 || i >= len)
            return 0;
        if (p[i] == 'h') {
            total += v * 3600000.0;
            i++;
        } else if (p[i] == 'm' && i + 1 < len && p[i + 1] == 's') {
            total += v;
            i += 2;
        } else if (p[i] == 'm') {
            total += v * 60000.0;
            i++;
        } else if (p[i] == 's') {
            total += v * 1000.0;
            i++;
        } else {
            return 0;
        }
    }
    if (total > 86400000.0)
        total = 86400000.0;
    *out_ms = (int64_t)(total + 0.999);
    return 1;
}

int64_t
edge_provider_retry_after_ms(const struct gw_http_header *headers, size_t n, uint64_t now_ms)
{
    int64_t best = -1;

    for (size_t i = 0; i < n; i++) {
        struct gw_str v = edge_provider_trim(headers[i].value);
        if (gw_str_case_eq(headers[i].name, "retry-after")) {
            uint64_t secs;
            char buf[64];
            struct tm tm;
            if (provider_parse_uint(v.p, v.len, &secs))
                return secs > 86400 ? 86400000 : (int64_t)secs * 1000;
            if (v.len > 0 && v.len < sizeof(buf)) {
                const char *end;
                memcpy(buf, v.p, v.len);
                buf[v.len] = '\0';
                memset(&tm, 0, sizeof(tm));
                end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
                if (end != NULL && *end == '\0') {
                    int64_t at = (int64_t)timegm(&tm) * 1000;
                    return at > (int64_t)now_ms ? at - (int64_t)now_ms : 0;
                }
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct gw_str name = headers[i].name;
        struct gw_str v = edge_provider_trim(headers[i].value);
        int64_t ms;
        static const char pfx[] = "anthropic-ratelimit-";
        static const char sfx[] = "-reset";

        if (name.len > sizeof(pfx) - 1 + sizeof(sfx) - 1 &&
            strncasecmp(name.p, pfx, sizeof(pfx) - 1) == 0 &&
            strncasecmp(name.p + name.len - (sizeof(sfx) - 1), sfx, sizeof(sfx) - 1) == 0 &&
            provider_parse_rfc3339(v.p, v.len, &ms) && ms > (int64_t)now_ms) {
            if (ms - (int64_t)now_ms > best)
                best = ms - (int64_t)now_ms;
        } else if ((gw_str_case_eq(name, "x-ratelimit-reset-requests") ||
                    gw_str_case_eq(name, "x-ratelimit-reset-tokens")) &&
                   provider_parse_duration(v.p, v.len, &ms)) {
            if (ms > best)
                best = ms;
        }
    }
    return best;
}

/* ---- meter ------------------------------------------------------------------ */

void
edge_meter_init(struct edge_meter *m, enum edge_op op)
{
    memset(m, 0, sizeof(*m));
    m->op = op;
    m->at_line_start = 1;
    m->ev_max = PROVIDER_EVENT_MAX;
}

void
edge_meter_fini(struct edge_meter *m)
{
    gw_buf_fini(&m->ev);
}
