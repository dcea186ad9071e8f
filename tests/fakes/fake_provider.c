/* SPDX-License-Identifier: Apache-2.0 */
/* aicarpool-fakeprovider: a fake Anthropic, OpenAI and Gemini provider on
 * the common HTTP server. Usage numbers are derived from the request so
 * tests can compute them exactly; the x-fake-scenario header and /fault/
 * path prefixes inject errors, delays, stalled and cut streams per request
 * or per account; /_fake/requests and /_fake/stats show what reached the
 * provider. See README.md. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "gw_buf.h"
#include "gw_config.h"
#include "gw_err.h"
#include "gw_http.h"
#include "gw_json.h"
#include "gw_log.h"

#define FP_MAX_RECORDS 1000
#define FP_MAX_DELAY_MS 600000
#define FP_MAX_RETRY_AFTER 86400
#define FP_MAX_LABEL 64
#define FP_MAX_LABELS 4096   /* distinct /acct/ labels in /_fake/stats */
#define FP_MAX_COUNTERS 4096 /* distinct fail-first counters */
#define FP_MAX_CODES 32      /* distinct statuses per label in /_fake/stats */
#define FP_MAX_WORDS 16
#define FP_OUTPUT_TOKENS 7 /* six words plus the end-of-turn token */
#define FP_ANSWER "Hello from the AiCarpool fake provider."

struct fp_config {
    char *listen;
    char *port_file;
    char *log_level;
};

static const struct gw_cfg_entry fp_table[] = {
    {"listen", GW_CFG_STR, "127.0.0.1:0", 0, 0, 0, offsetof(struct fp_config, listen),
     "HOST:PORT to listen on; port 0 lets the OS choose"},
    {"port-file", GW_CFG_STR, NULL, 0, 0, 0, offsetof(struct fp_config, port_file),
     "write the bound port and a newline to this file (atomically) once listening"},
    {"log-level", GW_CFG_STR, "info", 0, 0, 0, offsetof(struct fp_config, log_level),
     "error, warn, info or debug"},
    {NULL, GW_CFG_STR, NULL, 0, 0, 0, 0, NULL},
};

enum fp_dialect {
    FP_DIALECT_NONE,
    FP_DIALECT_ANTHROPIC,
    FP_DIALECT_OPENAI,
    FP_DIALECT_GEMINI,
};

static const char *const fp_dialect_names[] = {NULL, "anthropic", "openai", "gemini"};

enum fp_endpoint {
    FP_EP_NONE,
    FP_EP_MESSAGES,
    FP_EP_COUNT_TOKENS,
    FP_EP_MODELS,
    FP_EP_CHAT,
    FP_EP_RESPONSES,
    FP_EP_GENERATE,
    FP_EP_STREAM_GENERATE,
    FP_EP_GEMINI_COUNT,
};

static const char *const fp_endpoint_names[] = {
    NULL,
    "messages",
    "count_tokens",
    "models",
    "chat_completions",
    "responses",
    "generate_content",
    "stream_generate_content",
    "gemini_count_tokens",
};

/* What the scenario items asked for. */
struct fp_scenario {
    int status;           /* 0 or the error status to answer */
    uint64_t retry_after; /* seconds, for 429 */
    uint64_t first_ms;    /* delay before the first byte */
    uint64_t between_ms;  /* delay between stream events */
    int64_t cut_after;    /* -1: never; else close after this many events */
    int64_t stall_after;  /* -1: never; else go quiet after this many events */
    int64_t fail_first;   /* -1: always; else only the first N requests per counter */
    int echo;             /* append the received request to the answer text */
};

/* One request being answered: what routing and the scenario found out. */
struct fp_ctx {
    struct gw_http_req *req;
    enum fp_dialect dialect;
    enum fp_endpoint endpoint;
    struct gw_str rest;  /* path after the /acct/ and /fault/ prefixes */
    struct gw_str model; /* Gemini: the model named in the path */
    char label[FP_MAX_LABEL + 1];
    int has_label;
    const char *prefix_error;
    struct gw_buf faults;   /* the /fault/ lists joined with ',' */
    struct gw_buf scenario; /* requested items: faults, then the header */
    struct fp_scenario sc;  /* what applies to this request */
    int applied;            /* failure items applied */
    const char *key_source; /* Gemini: "header" or "query" */
    int stream;
    struct gw_buf echo; /* "\n" + JSON of the request when echo-request applies */
    uint64_t seq;       /* the record of this request */
    size_t stat;        /* index in fp.stats, or SIZE_MAX */
};

/* A response that is not sent at once: delayed, streamed, stalled or cut. */
struct fp_job {
    uv_timer_t timer;
    struct gw_http_req *req;
    int streaming;
    int status;
    const char *content_type;
    struct gw_buf body;    /* complete response (not streaming) */
    struct gw_buf *events; /* one write per entry */
    size_t n_events, next;
    struct fp_scenario sc;
    int started;
    int waiting_drain;
    int stalled;
    int finished;
    uint64_t seq;
    size_t stat;
    uint64_t gen;
};

/* A growing list of stream events, built before the response starts. */
struct fp_events {
    struct gw_buf *ev;
    size_t n, cap;
};

struct fp_rec {
    uint64_t seq;
    char *json; /* the record up to (not including) "completed" */
    int completed;
    uint64_t events;
};

struct fp_stat {
    char label[FP_MAX_LABEL + 1];
    uint64_t requests, completed, incomplete;
    uint64_t dialects[4];
    int codes[FP_MAX_CODES];
    uint64_t code_counts[FP_MAX_CODES];
    size_t n_codes;
};

struct fp_counter {
    char *key;
    uint64_t n;
};

struct fp_state {
    uv_loop_t *loop;
    struct gw_http_server *srv;
    uv_signal_t sigint, sigterm;
    struct fp_rec records[FP_MAX_RECORDS]; /* ring */
    size_t rec_head, rec_count;
    uint64_t rec_seq;
    uint64_t msg_seq;
    struct fp_stat *stats;
    size_t n_stats;
    uint64_t gen; /* bumped by DELETE /_fake/requests: stale stat indexes */
    struct fp_counter *counters;
    size_t n_counters;
    const char *words[FP_MAX_WORDS]; /* FP_ANSWER split after each space */
    size_t word_len[FP_MAX_WORDS];
    size_t n_words;
};

static struct fp_state fp;

/* ---- small helpers ---- */

static void
fp_jstr(struct gw_buf *b, const char *s)
{
    gw_json_append_string(b, s, strlen(s));
}

static int
fp_ends_with(struct gw_str s, const char *suffix)
{
    size_t n = strlen(suffix);
    return s.len >= n && memcmp(s.p + s.len - n, suffix, n) == 0;
}

static int
fp_starts_with(struct gw_str s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.len >= n && memcmp(s.p, prefix, n) == 0;
}

static int
fp_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    char tmp[24];
    char *end;
    unsigned long long v;

    if (len == 0 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (tmp[0] < '0' || tmp[0] > '9')
        return -1;
    v = strtoull(tmp, &end, 10);
    if (*end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Value of query parameter `name` (not decoded); 1 when present. */
static int
fp_query_get(struct gw_str query, const char *name, struct gw_str *value)
{
    size_t n = strlen(name);
    size_t i = 0;

    while (i < query.len) {
        size_t end = i;
        while (end < query.len && query.p[end] != '&')
            end++;
        if (end - i >= n && memcmp(query.p + i, name, n) == 0 &&
            (end - i == n || query.p[i + n] == '=')) {
            value->p = query.p + i + n + (end - i > n ? 1 : 0);
            value->len = end - i > n ? end - i - n - 1 : 0;
            return 1;
        }
        i = end + 1;
    }
    return 0;
}

/* Lower-cased header names; repeated headers joined with ", ". */
static void
fp_headers_json(const struct gw_http_req *req, struct gw_buf *b)
{
    size_t i, j;
    int first = 1;

    gw_buf_append(b, "{", 1);
    for (i = 0; i < req->n_headers; i++) {
        const struct gw_http_header *h = &req->headers[i];
        struct gw_buf name = GW_BUF_INIT;
        struct gw_buf value = GW_BUF_INIT;
        int seen = 0;
        for (j = 0; j < i; j++) {
            if (h->name.len == req->headers[j].name.len &&
                strncasecmp(h->name.p, req->headers[j].name.p, h->name.len) == 0)
                seen = 1;
        }
        if (seen)
            continue;
        for (j = 0; j < h->name.len; j++) {
            char ch = h->name.p[j];
            if (ch >= 'A' && ch <= 'Z')
                ch = (char)(ch - 'A' + 'a');
            gw_buf_append(&name, &ch, 1);
        }
        for (j = i; j < req->n_headers; j++) {
            const struct gw_http_header *o = &req->headers[j];
            if (o->name.len != h->name.len || strncasecmp(o->name.p, h->name.p, h->name.len) != 0)
                continue;
            if (value.len > 0)
                gw_buf_append(&value, ", ", 2);
            gw_buf_append(&value, o->value.p, o->value.len);
        }
        if (!first)
            gw_buf_append(b, ",", 1);
        first = 0;
        gw_json_append_string(b, name.data ? name.data : "", name.len);
        gw_buf_append(b, ":", 1);
        gw_json_append_string(b, value.data ? value.data : "", value.len);
        gw_buf_fini(&name);
        gw_buf_fini(&value);
    }
    gw_buf_append(b, "}", 1);
}

static void
fp_log(const struct gw_http_req *req, int status)
{
    /* The path only: query strings can carry keys (?key=...). */
    gw_log_req(GW_LOG_INFO, "FAKE-REQ", req->id_str, "%s %.*s -> %d", req->method,
               (int)req->path.len, req->path.p, status);
}

/* ---- records and stats ---- */

static struct fp_rec *
fp_rec_find(uint64_t seq)
{
    uint64_t oldest;

    if (fp.rec_count == 0)
        return NULL;
    oldest = fp.records[fp.rec_head].seq;
    if (seq < oldest || seq - oldest >= fp.rec_count)
        return NULL;
    return &fp.records[(fp.rec_head + (size_t)(seq - oldest)) % FP_MAX_RECORDS];
}

static size_t
fp_stat_for(const struct fp_ctx *ctx)
{
    const char *label = ctx->has_label ? ctx->label : "";
    size_t i;

    for (i = 0; i < fp.n_stats; i++) {
        if (strcmp(fp.stats[i].label, label) == 0)
            return i;
    }
    if (fp.n_stats == FP_MAX_LABELS)
        return SIZE_MAX;
    fp.stats = gw_xrealloc(fp.stats, (fp.n_stats + 1) * sizeof(*fp.stats));
    memset(&fp.stats[fp.n_stats], 0, sizeof(*fp.stats));
    snprintf(fp.stats[fp.n_stats].label, sizeof(fp.stats[fp.n_stats].label), "%s", label);
    return fp.n_stats++;
}

static void
fp_stat_count(size_t idx, enum fp_dialect dialect, int status)
{
    struct fp_stat *s;
    size_t i;

    if (idx == SIZE_MAX)
        return;
    s = &fp.stats[idx];
    s->requests++;
    s->dialects[dialect]++;
    for (i = 0; i < s->n_codes; i++) {
        if (s->codes[i] == status) {
            s->code_counts[i]++;
            return;
        }
    }
    if (s->n_codes < FP_MAX_CODES) {
        s->codes[s->n_codes] = status;
        s->code_counts[s->n_codes++] = 1;
    }
}

/* Records the request with the status chosen and the usage the answer
 * reports (a JSON object, or NULL). */
static void
fp_record(struct fp_ctx *ctx, int status, const char *usage)
{
    const struct gw_http_req *req = ctx->req;
    struct gw_buf b = GW_BUF_INIT;
    const char *dialect = fp_dialect_names[ctx->dialect];
    const char *endpoint = fp_endpoint_names[ctx->endpoint];
    size_t slot;

    ctx->seq = ++fp.rec_seq;
    gw_buf_appendf(&b, "{\"seq\":%" PRIu64 ",\"method\":", ctx->seq);
    fp_jstr(&b, req->method);
    gw_buf_append_str(&b, ",\"target\":");
    gw_json_append_string(&b, req->target.p, req->target.len);
    gw_buf_append_str(&b, ",\"account\":");
    if (ctx->has_label)
        fp_jstr(&b, ctx->label);
    else
        gw_buf_append_str(&b, "null");
    gw_buf_append_str(&b, ",\"dialect\":");
    if (dialect != NULL)
        fp_jstr(&b, dialect);
    else
        gw_buf_append_str(&b, "null");
    gw_buf_append_str(&b, ",\"endpoint\":");
    if (endpoint != NULL)
        fp_jstr(&b, endpoint);
    else
        gw_buf_append_str(&b, "null");
    gw_buf_append_str(&b, ",\"headers\":");
    fp_headers_json(req, &b);
    gw_buf_appendf(&b, ",\"body_len\":%zu,\"status\":%d,\"stream\":%s,\"scenario\":", req->body.len,
                   status, ctx->stream ? "true" : "false");
    if (ctx->scenario.len > 0)
        gw_json_append_string(&b, ctx->scenario.data, ctx->scenario.len);
    else
        gw_buf_append_str(&b, "null");
    gw_buf_appendf(&b, ",\"scenario_applied\":%s,\"key_source\":", ctx->applied ? "true" : "false");
    if (ctx->key_source != NULL)
        fp_jstr(&b, ctx->key_source);
    else
        gw_buf_append_str(&b, "null");
    gw_buf_append_str(&b, ",\"usage\":");
    gw_buf_append_str(&b, usage != NULL ? usage : "null");

    if (fp.rec_count == FP_MAX_RECORDS) {
        free(fp.records[fp.rec_head].json);
        fp.records[fp.rec_head].json = NULL;
        fp.rec_head = (fp.rec_head + 1) % FP_MAX_RECORDS;
        fp.rec_count--;
    }
    slot = (fp.rec_head + fp.rec_count) % FP_MAX_RECORDS;
    fp.rec_count++;
    fp.records[slot].seq = ctx->seq;
    fp.records[slot].json = gw_buf_steal(&b, NULL);
    fp.records[slot].completed = 0;
    fp.records[slot].events = 0;

    ctx->stat = fp_stat_for(ctx);
    fp_stat_count(ctx->stat, ctx->dialect, status);
}

static void
fp_progress(uint64_t seq, uint64_t events)
{
    struct fp_rec *r = fp_rec_find(seq);

    if (r != NULL)
        r->events = events;
}

/* The request is over: complete (the whole response handed over) or not. */
static void
fp_done(uint64_t seq, size_t stat, uint64_t gen, int completed, uint64_t events)
{
    struct fp_rec *r = fp_rec_find(seq);

    if (r != NULL) {
        r->completed = completed;
        r->events = events;
    }
    if (gen == fp.gen && stat != SIZE_MAX) {
        if (completed)
            fp.stats[stat].completed++;
        else
            fp.stats[stat].incomplete++;
    }
}

static void
fp_reset(void)
{
    size_t i;

    for (i = 0; i < FP_MAX_RECORDS; i++) {
        free(fp.records[i].json);
        fp.records[i].json = NULL;
    }
    fp.rec_head = 0;
    fp.rec_count = 0;
    free(fp.stats);
    fp.stats = NULL;
    fp.n_stats = 0;
    for (i = 0; i < fp.n_counters; i++)
        free(fp.counters[i].key);
    free(fp.counters);
    fp.counters = NULL;
    fp.n_counters = 0;
    fp.gen++;
}

/* ---- error bodies per dialect ---- */

static const char *
fp_anthropic_type(int status)
{
    switch (status) {
    case 400:
    case 405:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 529:
        return "overloaded_error";
    default:
        return "api_error";
    }
}

static const char *
fp_gemini_status(int status)
{
    switch (status) {
    case 400:
    case 405:
    case 413:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 500:
        return "INTERNAL";
    case 503:
    case 529:
        return "UNAVAILABLE";
    default:
        return "UNKNOWN";
    }
}

static void
fp_error_body(enum fp_dialect dialect, int status, const char *message, uint64_t retry_after,
              struct gw_buf *b)
{
    if (dialect == FP_DIALECT_OPENAI) {
        const char *type = "invalid_request_error";
        const char *code = NULL;
        if (status == 401) {
            code = "invalid_api_key";
        } else if (status == 403) {
            type = "permission_error";
            code = "unsupported_country_region_territory";
        } else if (status == 404) {
            code = "not_found";
        } else if (status == 429) {
            type = "requests";
            code = "rate_limit_exceeded";
        } else if (status == 529) {
            type = "server_error";
            code = "overloaded";
        } else if (status >= 500) {
            type = "server_error";
        }
        gw_buf_append_str(b, "{\"error\":{\"message\":");
        fp_jstr(b, message);
        gw_buf_append_str(b, ",\"type\":");
        fp_jstr(b, type);
        gw_buf_append_str(b, ",\"param\":null,\"code\":");
        if (code != NULL)
            fp_jstr(b, code);
        else
            gw_buf_append_str(b, "null");
        gw_buf_append_str(b, "}}");
    } else if (dialect == FP_DIALECT_GEMINI) {
        gw_buf_appendf(b, "{\"error\":{\"code\":%d,\"message\":", status);
        fp_jstr(b, message);
        gw_buf_append_str(b, ",\"status\":");
        fp_jstr(b, fp_gemini_status(status));
        if (status == 429)
            gw_buf_appendf(b,
                           ",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\","
                           "\"retryDelay\":\"%" PRIu64 "s\"}]",
                           retry_after);
        gw_buf_append_str(b, "}}");
    } else {
        gw_buf_append_str(b, "{\"type\":\"error\",\"error\":{\"type\":");
        fp_jstr(b, fp_anthropic_type(status));
        gw_buf_append_str(b, ",\"message\":");
        fp_jstr(b, message);
        gw_buf_append_str(b, "}}");
    }
}

/* Answers an error at once (no scenario), in the request's dialect. */
static void
fp_respond_error(struct fp_ctx *ctx, int status, const char *message)
{
    struct gw_buf b = GW_BUF_INIT;

    fp_error_body(ctx->dialect, status, message, 0, &b);
    fp_record(ctx, status, NULL);
    fp_log(ctx->req, status);
    gw_http_respond(ctx->req, status, "application/json", b.data, b.len);
    fp_done(ctx->seq, ctx->stat, fp.gen, 1, 0);
    gw_buf_fini(&b);
}

/* ---- scenarios ---- */

/* Parses "a,b=N,..."; unknown items are errors so a typo in a test does not
 * silently run the happy path. */
static int
fp_parse_items(struct gw_str list, struct fp_scenario *sc)
{
    size_t i = 0;

    while (i < list.len) {
        size_t end = i, klen;
        const char *item, *eq;
        uint64_t v = 0;
        while (end < list.len && list.p[end] != ',')
            end++;
        item = list.p + i;
        while (item < list.p + end && *item == ' ')
            item++;
        klen = (size_t)(list.p + end - item);
        while (klen > 0 && item[klen - 1] == ' ')
            klen--;
        eq = klen > 0 ? memchr(item, '=', klen) : NULL;
        if (klen == 0) {
            /* empty item */
        } else if (eq == NULL) {
            struct gw_str s = {item, klen};
            if (gw_str_eq(s, "status-500"))
                sc->status = 500;
            else if (gw_str_eq(s, "status-429"))
                sc->status = 429;
            else if (gw_str_eq(s, "status-529"))
                sc->status = 529;
            else if (gw_str_eq(s, "status-401"))
                sc->status = 401;
            else if (gw_str_eq(s, "status-403"))
                sc->status = 403;
            else if (gw_str_eq(s, "echo-request"))
                sc->echo = 1;
            else
                return -1;
        } else {
            struct gw_str key = {item, (size_t)(eq - item)};
            uint64_t max = gw_str_eq(key, "retry-after") ? FP_MAX_RETRY_AFTER : FP_MAX_DELAY_MS;
            if (fp_parse_u64(eq + 1, klen - key.len - 1, max, &v) != 0)
                return -1;
            if (gw_str_eq(key, "slow-first-byte-ms"))
                sc->first_ms = v;
            else if (gw_str_eq(key, "delay-ms-between-events"))
                sc->between_ms = v;
            else if (gw_str_eq(key, "cut-after-events"))
                sc->cut_after = (int64_t)v;
            else if (gw_str_eq(key, "stall-after-events"))
                sc->stall_after = (int64_t)v;
            else if (gw_str_eq(key, "fail-first"))
                sc->fail_first = (int64_t)v;
            else if (gw_str_eq(key, "retry-after"))
                sc->retry_after = v;
            else
                return -1;
        }
        i = end + 1;
    }
    return 0;
}

static int
fp_sc_has_failure(const struct fp_scenario *sc)
{
    return sc->status != 0 || sc->first_ms > 0 || sc->between_ms > 0 || sc->cut_after >= 0 ||
           sc->stall_after >= 0;
}

/* Counts the request against its fail-first counter; 1 while the failure
 * items still apply. */
static int
fp_fail_first_applies(const struct fp_ctx *ctx, const struct gw_str *header)
{
    struct gw_buf key = GW_BUF_INIT;
    char *k;
    size_t i;
    int applies = 1;

    gw_buf_append_str(&key, ctx->has_label ? ctx->label : "");
    gw_buf_append(&key, "\n", 1);
    if (ctx->faults.len > 0)
        gw_buf_append(&key, ctx->faults.data, ctx->faults.len);
    gw_buf_append(&key, "\n", 1);
    if (header != NULL)
        gw_buf_append(&key, header->p, header->len);
    gw_buf_append(&key, "", 1);
    k = key.data;
    for (i = 0; i < fp.n_counters; i++) {
        if (strcmp(fp.counters[i].key, k) == 0)
            break;
    }
    if (i == fp.n_counters) {
        if (fp.n_counters == FP_MAX_COUNTERS) {
            gw_buf_fini(&key);
            return 1;
        }
        fp.counters = gw_xrealloc(fp.counters, (fp.n_counters + 1) * sizeof(*fp.counters));
        fp.counters[i].key = gw_buf_steal(&key, NULL);
        fp.counters[i].n = 0;
        fp.n_counters++;
    }
    gw_buf_fini(&key);
    fp.counters[i].n++;
    if (fp.counters[i].n > (uint64_t)ctx->sc.fail_first)
        applies = 0;
    return applies;
}

/* Parses the /fault/ lists and the header into ctx->sc and decides whether
 * the failure items apply. -1 on a malformed item. */
static int
fp_scenario_setup(struct fp_ctx *ctx)
{
    const struct gw_str *h = gw_http_req_header(ctx->req, "x-fake-scenario");
    struct fp_scenario *sc = &ctx->sc;

    memset(sc, 0, sizeof(*sc));
    sc->retry_after = 1;
    sc->cut_after = -1;
    sc->stall_after = -1;
    sc->fail_first = -1;
    if (ctx->faults.len > 0) {
        struct gw_str f = {ctx->faults.data, ctx->faults.len};
        if (fp_parse_items(f, sc) != 0)
            return -1;
    }
    if (h != NULL && fp_parse_items(*h, sc) != 0)
        return -1;
    if (sc->fail_first >= 0 && !fp_fail_first_applies(ctx, h)) {
        int echo = sc->echo;
        memset(sc, 0, sizeof(*sc));
        sc->retry_after = 1;
        sc->cut_after = -1;
        sc->stall_after = -1;
        sc->fail_first = -1;
        sc->echo = echo;
    }
    ctx->applied = fp_sc_has_failure(sc);
    if (sc->echo) {
        const struct gw_http_req *req = ctx->req;
        gw_buf_append_str(&ctx->echo, "\n{\"method\":");
        fp_jstr(&ctx->echo, req->method);
        gw_buf_append_str(&ctx->echo, ",\"target\":");
        gw_json_append_string(&ctx->echo, req->target.p, req->target.len);
        gw_buf_append_str(&ctx->echo, ",\"headers\":");
        fp_headers_json(req, &ctx->echo);
        gw_buf_appendf(&ctx->echo, ",\"body_len\":%zu}", req->body.len);
    }
    return 0;
}

/* ---- delayed, streamed, stalled and cut responses ---- */

static void
fp_job_on_close(uv_handle_t *h)
{
    struct fp_job *job = h->data;
    size_t i;

    for (i = 0; i < job->n_events; i++)
        gw_buf_fini(&job->events[i]);
    free(job->events);
    gw_buf_fini(&job->body);
    free(job);
}

/* Finishes the request exactly once and releases the job. */
static void
fp_job_finish(struct fp_job *job, int cut)
{
    if (job->finished)
        return;
    job->finished = 1;
    uv_timer_stop(&job->timer);
    if (cut)
        gw_http_abandon(job->req);
    else if (job->streaming)
        gw_http_end(job->req);
    else
        gw_http_respond(job->req, job->status, job->content_type, job->body.data, job->body.len);
    fp_done(job->seq, job->stat, job->gen, !cut, job->next);
    job->req = NULL;
    uv_close((uv_handle_t *)&job->timer, fp_job_on_close);
}

/* 1: cut now, 2: stall now, 0: go on, with n events sent. For a
 * non-streaming answer any cut or stall applies before the first byte. */
static int
fp_job_break(const struct fp_job *job)
{
    const struct fp_scenario *sc = &job->sc;
    int64_t n = (int64_t)job->next;
    int cut = sc->cut_after >= 0 && (!job->streaming || n >= sc->cut_after);
    int stall = sc->stall_after >= 0 && (!job->streaming || n >= sc->stall_after);

    if (cut && (sc->stall_after < 0 || sc->cut_after <= sc->stall_after))
        return 1;
    if (stall)
        return 2;
    return cut ? 1 : 0;
}

static void fp_job_on_timer(uv_timer_t *t);

/* Writes events until done, cut, stalled, a delay or backpressure. */
static void
fp_job_pump(struct fp_job *job)
{
    while (!job->finished && !job->stalled) {
        int brk = fp_job_break(job);
        if (brk == 1) {
            gw_log_req(GW_LOG_INFO, "FAKE-CUT", job->req->id_str,
                       "cutting the stream after %zu events", job->next);
            fp_job_finish(job, 1);
            return;
        }
        if (brk == 2) {
            gw_log_req(GW_LOG_INFO, "FAKE-STALL", job->req->id_str,
                       "stalling the stream after %zu events", job->next);
            job->stalled = 1;
            return;
        }
        if (job->next == job->n_events) {
            fp_job_finish(job, 0);
            return;
        }
        if (!gw_http_writable(job->req)) {
            job->waiting_drain = 1;
            return;
        }
        if (gw_http_write(job->req, job->events[job->next].data, job->events[job->next].len) !=
            GW_OK) {
            fp_job_finish(job, 1);
            return;
        }
        job->next++;
        fp_progress(job->seq, job->next);
        if (job->sc.between_ms > 0 && job->next < job->n_events) {
            uv_timer_start(&job->timer, fp_job_on_timer, job->sc.between_ms, 0);
            return;
        }
    }
}

/* The first byte is due. */
static void
fp_job_first_byte(struct fp_job *job)
{
    job->started = 1;
    if (!job->streaming) {
        int brk = fp_job_break(job);
        if (brk == 1) {
            gw_log_req(GW_LOG_INFO, "FAKE-CUT", job->req->id_str, "closing without an answer");
            fp_job_finish(job, 1);
        } else if (brk == 2) {
            gw_log_req(GW_LOG_INFO, "FAKE-STALL", job->req->id_str, "never answering");
            job->stalled = 1;
        } else {
            fp_job_finish(job, 0);
        }
        return;
    }
    if (gw_http_start(job->req, job->status, job->content_type) != GW_OK) {
        fp_job_finish(job, 1);
        return;
    }
    fp_job_pump(job);
}

static void
fp_job_on_timer(uv_timer_t *t)
{
    struct fp_job *job = t->data;

    if (job->finished)
        return;
    if (!job->started)
        fp_job_first_byte(job);
    else
        fp_job_pump(job);
}

static void
fp_job_on_drain(struct gw_http_req *req, void *arg)
{
    struct fp_job *job = arg;

    (void)req;
    if (!job->waiting_drain)
        return;
    job->waiting_drain = 0;
    if (!uv_is_active((uv_handle_t *)&job->timer))
        fp_job_pump(job);
}

static void
fp_job_on_abort(struct gw_http_req *req, void *arg)
{
    struct fp_job *job = arg;

    (void)req;
    fp_job_finish(job, 1);
}

static struct fp_job *
fp_job_new(struct fp_ctx *ctx, int status, const char *content_type)
{
    struct fp_job *job = gw_xcalloc(1, sizeof(*job));

    job->req = ctx->req;
    job->sc = ctx->sc;
    job->status = status;
    job->content_type = content_type;
    job->seq = ctx->seq;
    job->stat = ctx->stat;
    job->gen = fp.gen;
    gw_buf_init(&job->body);
    uv_timer_init(fp.loop, &job->timer);
    job->timer.data = job;
    gw_http_set_abort_cb(ctx->req, fp_job_on_abort, job);
    gw_http_set_drain_cb(ctx->req, fp_job_on_drain, job);
    return job;
}

static void
fp_job_go(struct fp_job *job)
{
    if (job->sc.first_ms > 0)
        uv_timer_start(&job->timer, fp_job_on_timer, job->sc.first_ms, 0);
    else
        fp_job_first_byte(job);
}

/* Sends a complete response, applying the scenario (first-byte delay,
 * stall, cut). The request must be recorded already. Takes body. */
static void
fp_send(struct fp_ctx *ctx, int status, const char *content_type, struct gw_buf *body)
{
    struct fp_job *job;

    fp_log(ctx->req, status);
    if (ctx->sc.first_ms == 0 && ctx->sc.cut_after < 0 && ctx->sc.stall_after < 0) {
        gw_http_respond(ctx->req, status, content_type, body->data, body->len);
        fp_done(ctx->seq, ctx->stat, fp.gen, 1, 0);
        gw_buf_fini(body);
        return;
    }
    job = fp_job_new(ctx, status, content_type);
    job->body = *body;
    gw_buf_init(body);
    fp_job_go(job);
}

/* Streams the events with the scenario applied. Takes the events. */
static void
fp_stream(struct fp_ctx *ctx, const char *content_type, struct fp_events *evs)
{
    struct fp_job *job = fp_job_new(ctx, 200, content_type);

    job->streaming = 1;
    job->events = evs->ev;
    job->n_events = evs->n;
    evs->ev = NULL;
    evs->n = evs->cap = 0;
    gw_http_add_header(ctx->req, "cache-control", "no-cache");
    fp_log(ctx->req, 200);
    fp_job_go(job);
}

static struct gw_buf *
fp_ev_new(struct fp_events *evs)
{
    if (evs->n == evs->cap) {
        evs->cap = evs->cap ? evs->cap * 2 : 16;
        evs->ev = gw_xrealloc(evs->ev, evs->cap * sizeof(*evs->ev));
    }
    gw_buf_init(&evs->ev[evs->n]);
    return &evs->ev[evs->n++];
}

/* Adds "event: NAME\ndata: DATA\n\n" (no event line when name is NULL),
 * with `sep` after the data line. */
static void
fp_ev_sse(struct fp_events *evs, const char *name, const struct gw_buf *data, const char *sep)
{
    struct gw_buf *ev = fp_ev_new(evs);

    if (name != NULL)
        gw_buf_appendf(ev, "event: %s\n", name);
    gw_buf_append_str(ev, "data: ");
    gw_buf_append(ev, data->data, data->len);
    gw_buf_append_str(ev, sep);
}

/* Adds the answer text (TEXT plus the echo) as a JSON string. */
static void
fp_text_json(const struct fp_ctx *ctx, struct gw_buf *b, size_t text_len)
{
    struct gw_buf t = GW_BUF_INIT;

    gw_buf_append(&t, FP_ANSWER, text_len);
    if (ctx->echo.len > 0)
        gw_buf_append(&t, ctx->echo.data, ctx->echo.len);
    gw_json_append_string(b, t.data, t.len);
    gw_buf_fini(&t);
}

/* The pieces a stream sends: the words and then the echo, if any. */
static size_t
fp_n_pieces(const struct fp_ctx *ctx)
{
    return fp.n_words + (ctx->echo.len > 0 ? 1 : 0);
}

static void
fp_piece_json(const struct fp_ctx *ctx, size_t i, struct gw_buf *b)
{
    if (i < fp.n_words)
        gw_json_append_string(b, fp.words[i], fp.word_len[i]);
    else
        gw_json_append_string(b, ctx->echo.data, ctx->echo.len);
}

static cJSON *
fp_parse_body(struct fp_ctx *ctx)
{
    const char *why = NULL;
    cJSON *root = gw_json_parse(ctx->req->body.data, ctx->req->body.len, &why);

    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        fp_respond_error(ctx, 400, why ? why : "body must be a JSON object");
        return NULL;
    }
    return root;
}

/* Reads an optional boolean "stream"; -1 after answering 400. */
static int
fp_get_stream(struct fp_ctx *ctx, const cJSON *root)
{
    int stream = 0;
    gw_err rv = gw_json_get_bool(root, "stream", &stream);

    if (rv == GW_ENOTFOUND)
        return 0;
    if (rv != GW_OK) {
        fp_respond_error(ctx, 400, "\"stream\" must be a boolean");
        return -1;
    }
    return stream ? 1 : 0;
}

/* ---- Anthropic ---- */

struct fp_usage {
    int64_t input;
    int64_t cache_read;
    int64_t cache_creation;
    int64_t eph_5m;
    int64_t eph_1h;
    int64_t output;
};

static void
fp_usage_for(size_t body_len, struct fp_usage *u)
{
    u->input = (int64_t)((body_len + 3) / 4);
    u->cache_read = (int64_t)(body_len % 97);
    u->cache_creation = (int64_t)(body_len % 13);
    u->eph_1h = u->cache_creation / 2;
    u->eph_5m = u->cache_creation - u->eph_1h;
}

static void
fp_usage_json(struct gw_buf *b, const struct fp_usage *u, int64_t output)
{
    gw_buf_appendf(b,
                   "{\"input_tokens\":%" PRId64 ",\"cache_creation_input_tokens\":%" PRId64
                   ",\"cache_read_input_tokens\":%" PRId64
                   ",\"cache_creation\":{\"ephemeral_5m_input_tokens\":%" PRId64
                   ",\"ephemeral_1h_input_tokens\":%" PRId64 "},\"output_tokens\":%" PRId64 "}",
                   u->input, u->cache_creation, u->cache_read, u->eph_5m, u->eph_1h, output);
}

static void
fp_anthropic_messages(struct fp_ctx *ctx, cJSON *root)
{
    struct fp_usage u;
    struct gw_buf rec = GW_BUF_INIT;
    const char *model = NULL;
    int64_t max_tokens = INT64_MAX;
    size_t n_used, i;
    const char *stop_reason = "end_turn";
    char msg_id[48];
    gw_err rv;
    int stream;

    rv = gw_json_get_str(root, "model", &model);
    if (rv != GW_OK || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "messages"))) {
        fp_respond_error(ctx, 400, "\"model\" (string) and \"messages\" (array) are required");
        return;
    }
    rv = gw_json_get_int(root, "max_tokens", &max_tokens);
    if (rv == GW_ENOTFOUND) {
        max_tokens = INT64_MAX;
    } else if (rv != GW_OK || max_tokens < 1) {
        fp_respond_error(ctx, 400, "\"max_tokens\" must be a positive integer");
        return;
    }
    stream = fp_get_stream(ctx, root);
    if (stream < 0)
        return;
    ctx->stream = stream;

    /* The complete answer costs one token per word plus the end-of-turn
     * token (7); a max_tokens below that truncates to max_tokens words. */
    fp_usage_for(ctx->req->body.len, &u);
    u.output = (int64_t)fp.n_words + 1;
    n_used = fp.n_words;
    if (max_tokens < u.output) {
        n_used = (size_t)max_tokens < fp.n_words ? (size_t)max_tokens : fp.n_words;
        u.output = max_tokens;
        stop_reason = "max_tokens";
    }
    snprintf(msg_id, sizeof(msg_id), "msg_fake_%" PRIu64, ++fp.msg_seq);
    gw_buf_appendf(
        &rec,
        "{\"input_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64
        ",\"cache_read_input_tokens\":%" PRId64 ",\"cache_creation_input_tokens\":%" PRId64
        ",\"ephemeral_5m_input_tokens\":%" PRId64 ",\"ephemeral_1h_input_tokens\":%" PRId64 "}",
        u.input, u.output, u.cache_read, u.cache_creation, u.eph_5m, u.eph_1h);
    fp_record(ctx, 200, rec.data);
    gw_buf_fini(&rec);
    gw_http_add_header(ctx->req, "request-id", msg_id);

    if (!stream) {
        struct gw_buf b = GW_BUF_INIT;
        size_t text_len = 0;
        for (i = 0; i < n_used; i++)
            text_len += fp.word_len[i];
        /* a truncated answer does not end with the space of its last word */
        if (n_used < fp.n_words && text_len > 0)
            text_len--;
        gw_buf_appendf(
            &b, "{\"id\":\"%s\",\"type\":\"message\",\"role\":\"assistant\",\"model\":", msg_id);
        fp_jstr(&b, model);
        gw_buf_append_str(&b, ",\"content\":[{\"type\":\"text\",\"text\":");
        fp_text_json(ctx, &b, text_len);
        gw_buf_appendf(&b,
                       "}],\"stop_reason\":\"%s\",\"stop_sequence\":null,\"usage\":", stop_reason);
        fp_usage_json(&b, &u, u.output);
        gw_buf_append_str(&b, "}");
        fp_send(ctx, 200, "application/json", &b);
        return;
    }

    /* Streaming: build every event up front, then pace them. */
    {
        struct fp_events evs = {NULL, 0, 0};
        struct gw_buf d = GW_BUF_INIT;

        gw_buf_appendf(
            &d,
            "{\"type\":\"message_start\",\"message\":{\"id\":\"%s\",\"type\":\"message\","
            "\"role\":\"assistant\",\"model\":",
            msg_id);
        fp_jstr(&d, model);
        gw_buf_append_str(&d, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                              "\"usage\":");
        fp_usage_json(&d, &u, 1);
        gw_buf_append_str(&d, "}}");
        fp_ev_sse(&evs, "message_start", &d, "\n\n");
        gw_buf_reset(&d);

        gw_buf_append_str(&d, "{\"type\":\"content_block_start\",\"index\":0,"
                              "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}");
        fp_ev_sse(&evs, "content_block_start", &d, "\n\n");
        gw_buf_reset(&d);

        gw_buf_append_str(&d, "{\"type\": \"ping\"}");
        fp_ev_sse(&evs, "ping", &d, "\n\n");
        gw_buf_reset(&d);

        for (i = 0; i < n_used + (ctx->echo.len > 0 ? 1 : 0); i++) {
            gw_buf_append_str(&d, "{\"type\":\"content_block_delta\",\"index\":0,"
                                  "\"delta\":{\"type\":\"text_delta\",\"text\":");
            if (i < n_used) {
                size_t wl = fp.word_len[i];
                if (i + 1 == n_used && n_used < fp.n_words)
                    wl--; /* truncated: no trailing space after the last word */
                gw_json_append_string(&d, fp.words[i], wl);
            } else {
                gw_json_append_string(&d, ctx->echo.data, ctx->echo.len);
            }
            gw_buf_append_str(&d, "}}");
            fp_ev_sse(&evs, "content_block_delta", &d, "\n\n");
            gw_buf_reset(&d);
        }

        gw_buf_append_str(&d, "{\"type\":\"content_block_stop\",\"index\":0}");
        fp_ev_sse(&evs, "content_block_stop", &d, "\n\n");
        gw_buf_reset(&d);

        gw_buf_appendf(&d,
                       "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\","
                       "\"stop_sequence\":null},\"usage\":{\"output_tokens\":%" PRId64 "}}",
                       stop_reason, u.output);
        fp_ev_sse(&evs, "message_delta", &d, "\n\n");
        gw_buf_reset(&d);

        gw_buf_append_str(&d, "{\"type\":\"message_stop\"}");
        fp_ev_sse(&evs, "message_stop", &d, "\n\n");
        gw_buf_fini(&d);

        fp_stream(ctx, "text/event-stream", &evs);
    }
}

/* Anthropic count_tokens and Gemini countTokens. */
static void
fp_count(struct fp_ctx *ctx, cJSON *root)
{
    struct gw_buf b = GW_BUF_INIT;

    (void)root;
    if (ctx->dialect == FP_DIALECT_GEMINI)
        gw_buf_appendf(&b, "{\"totalTokens\":%zu}", (ctx->req->body.len + 3) / 4);
    else
        gw_buf_appendf(&b, "{\"input_tokens\":%zu}", (ctx->req->body.len + 3) / 4);
    fp_record(ctx, 200, NULL);
    fp_send(ctx, 200, "application/json", &b);
}

/* ---- OpenAI ---- */

struct fp_oa_usage {
    int64_t prompt; /* includes the cached tokens */
    int64_t cached;
    int64_t completion;
    int64_t total;
};

static void
fp_oa_usage_for(size_t body_len, struct fp_oa_usage *u)
{
    u->cached = (int64_t)(body_len % 97);
    u->prompt = (int64_t)((body_len + 3) / 4) + u->cached;
    u->completion = FP_OUTPUT_TOKENS;
    u->total = u->prompt + u->completion;
}

static void
fp_chat_chunk_head(struct gw_buf *b, const char *id, int64_t created, const char *model)
{
    gw_buf_appendf(
        b, "{\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%" PRId64 ",\"model\":",
        id, created);
    fp_jstr(b, model);
    gw_buf_append_str(b, ",\"system_fingerprint\":\"fp_fake\",\"choices\":");
}

static void
fp_openai_chat(struct fp_ctx *ctx, cJSON *root)
{
    struct fp_oa_usage u;
    struct gw_buf usage = GW_BUF_INIT;
    struct gw_buf rec = GW_BUF_INIT;
    const char *model = NULL;
    const cJSON *opts;
    int include_usage = 0;
    int64_t created = (int64_t)time(NULL);
    char id[48];
    int stream;

    if (gw_json_get_str(root, "model", &model) != GW_OK ||
        !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "messages"))) {
        fp_respond_error(ctx, 400, "\"model\" (string) and \"messages\" (array) are required");
        return;
    }
    stream = fp_get_stream(ctx, root);
    if (stream < 0)
        return;
    opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (opts != NULL && !cJSON_IsNull(opts)) {
        gw_err rv;
        if (!cJSON_IsObject(opts)) {
            fp_respond_error(ctx, 400, "\"stream_options\" must be an object");
            return;
        }
        rv = gw_json_get_bool(opts, "include_usage", &include_usage);
        if (rv != GW_OK && rv != GW_ENOTFOUND) {
            fp_respond_error(ctx, 400, "\"stream_options.include_usage\" must be a boolean");
            return;
        }
        if (rv == GW_ENOTFOUND)
            include_usage = 0;
    }
    ctx->stream = stream;
    fp_oa_usage_for(ctx->req->body.len, &u);
    snprintf(id, sizeof(id), "chatcmpl-fake-%" PRIu64, ++fp.msg_seq);
    gw_buf_appendf(&usage,
                   "{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
                   ",\"total_tokens\":%" PRId64
                   ",\"prompt_tokens_details\":{\"cached_tokens\":%" PRId64
                   ",\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,"
                   "\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"
                   "\"rejected_prediction_tokens\":0}}",
                   u.prompt, u.completion, u.total, u.cached);
    gw_buf_appendf(&rec,
                   "{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
                   ",\"total_tokens\":%" PRId64 ",\"cached_tokens\":%" PRId64
                   ",\"reasoning_tokens\":0}",
                   u.prompt, u.completion, u.total, u.cached);
    /* a stream without include_usage reports no usage at all */
    fp_record(ctx, 200, (!stream || include_usage) ? rec.data : NULL);
    gw_buf_fini(&rec);
    gw_http_add_header(ctx->req, "x-request-id", id);

    if (!stream) {
        struct gw_buf b = GW_BUF_INIT;
        gw_buf_appendf(
            &b,
            "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%" PRId64 ",\"model\":", id,
            created);
        fp_jstr(&b, model);
        gw_buf_append_str(&b, ",\"system_fingerprint\":\"fp_fake\",\"choices\":[{\"index\":0,"
                              "\"message\":{\"role\":\"assistant\",\"content\":");
        fp_text_json(ctx, &b, strlen(FP_ANSWER));
        gw_buf_append_str(&b, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                              "\"usage\":");
        gw_buf_append(&b, usage.data, usage.len);
        gw_buf_append_str(&b, "}");
        gw_buf_fini(&usage);
        fp_send(ctx, 200, "application/json", &b);
        return;
    }

    {
        struct fp_events evs = {NULL, 0, 0};
        struct gw_buf d = GW_BUF_INIT;
        const char *null_usage = include_usage ? ",\"usage\":null}" : "}";
        size_t i, n = fp_n_pieces(ctx);

        for (i = 0; i < n; i++) {
            fp_chat_chunk_head(&d, id, created, model);
            gw_buf_append_str(&d, "[{\"index\":0,\"delta\":{");
            if (i == 0)
                gw_buf_append_str(&d, "\"role\":\"assistant\",");
            gw_buf_append_str(&d, "\"content\":");
            fp_piece_json(ctx, i, &d);
            gw_buf_append_str(&d, "},\"logprobs\":null,\"finish_reason\":null}]");
            gw_buf_append_str(&d, null_usage);
            fp_ev_sse(&evs, NULL, &d, "\n\n");
            gw_buf_reset(&d);
        }
        fp_chat_chunk_head(&d, id, created, model);
        gw_buf_append_str(&d, "[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                              "\"finish_reason\":\"stop\"}]");
        gw_buf_append_str(&d, null_usage);
        fp_ev_sse(&evs, NULL, &d, "\n\n");
        gw_buf_reset(&d);
        if (include_usage) {
            fp_chat_chunk_head(&d, id, created, model);
            gw_buf_append_str(&d, "[],\"usage\":");
            gw_buf_append(&d, usage.data, usage.len);
            gw_buf_append_str(&d, "}");
            fp_ev_sse(&evs, NULL, &d, "\n\n");
            gw_buf_reset(&d);
        }
        gw_buf_append_str(&d, "[DONE]");
        fp_ev_sse(&evs, NULL, &d, "\n\n");
        gw_buf_fini(&d);
        gw_buf_fini(&usage);
        fp_stream(ctx, "text/event-stream", &evs);
    }
}

struct fp_resp {
    char id[48];
    char item_id[48];
    int64_t created;
    const char *model;
    const char *usage; /* JSON */
};

static void
fp_resp_part(const struct fp_ctx *ctx, struct gw_buf *b, int done)
{
    gw_buf_append_str(b, "{\"type\":\"output_text\",\"text\":");
    if (done)
        fp_text_json(ctx, b, strlen(FP_ANSWER));
    else
        gw_buf_append_str(b, "\"\"");
    gw_buf_append_str(b, ",\"annotations\":[]}");
}

static void
fp_resp_item(const struct fp_ctx *ctx, const struct fp_resp *r, struct gw_buf *b, int done)
{
    gw_buf_appendf(b,
                   "{\"type\":\"message\",\"id\":\"%s\",\"status\":\"%s\",\"role\":"
                   "\"assistant\",\"content\":[",
                   r->item_id, done ? "completed" : "in_progress");
    if (done)
        fp_resp_part(ctx, b, 1);
    gw_buf_append_str(b, "]}");
}

static void
fp_resp_object(const struct fp_ctx *ctx, const struct fp_resp *r, struct gw_buf *b, int done)
{
    gw_buf_appendf(b,
                   "{\"id\":\"%s\",\"object\":\"response\",\"created_at\":%" PRId64
                   ",\"status\":\"%s\",\"error\":null,\"incomplete_details\":null,\"model\":",
                   r->id, r->created, done ? "completed" : "in_progress");
    fp_jstr(b, r->model);
    gw_buf_append_str(b, ",\"output\":[");
    if (done)
        fp_resp_item(ctx, r, b, 1);
    gw_buf_append_str(b, "],\"parallel_tool_calls\":true,\"tools\":[],\"usage\":");
    gw_buf_append_str(b, done ? r->usage : "null");
    gw_buf_append_str(b, "}");
}

/* One Responses stream event: "type" and "sequence_number" first, then
 * the rest of the object (starting with ',' or empty). */
static void
fp_resp_event(struct fp_events *evs, const char *type, const struct gw_buf *rest)
{
    struct gw_buf d = GW_BUF_INIT;

    gw_buf_append_str(&d, "{\"type\":");
    fp_jstr(&d, type);
    gw_buf_appendf(&d, ",\"sequence_number\":%zu", evs->n);
    if (rest->len > 0)
        gw_buf_append(&d, rest->data, rest->len);
    gw_buf_append_str(&d, "}");
    fp_ev_sse(evs, type, &d, "\n\n");
    gw_buf_fini(&d);
}

static void
fp_openai_responses(struct fp_ctx *ctx, cJSON *root)
{
    struct fp_oa_usage u;
    struct fp_resp r;
    struct gw_buf usage = GW_BUF_INIT;
    struct gw_buf rec = GW_BUF_INIT;
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, "input");
    uint64_t n;
    int stream;

    memset(&r, 0, sizeof(r));
    if (gw_json_get_str(root, "model", &r.model) != GW_OK ||
        !(cJSON_IsString(input) || cJSON_IsArray(input))) {
        fp_respond_error(ctx, 400,
                         "\"model\" (string) and \"input\" (string or array) are required");
        return;
    }
    stream = fp_get_stream(ctx, root);
    if (stream < 0)
        return;
    ctx->stream = stream;
    fp_oa_usage_for(ctx->req->body.len, &u);
    n = ++fp.msg_seq;
    snprintf(r.id, sizeof(r.id), "resp_fake_%" PRIu64, n);
    snprintf(r.item_id, sizeof(r.item_id), "msg_fake_%" PRIu64, n);
    r.created = (int64_t)time(NULL);
    gw_buf_appendf(
        &usage,
        "{\"input_tokens\":%" PRId64 ",\"input_tokens_details\":{\"cached_tokens\":%" PRId64
        "},\"output_tokens\":%" PRId64
        ",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":%" PRId64 "}",
        u.prompt, u.cached, u.completion, u.total);
    r.usage = usage.data;
    gw_buf_appendf(&rec,
                   "{\"input_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64
                   ",\"total_tokens\":%" PRId64 ",\"cached_tokens\":%" PRId64
                   ",\"reasoning_tokens\":0}",
                   u.prompt, u.completion, u.total, u.cached);
    fp_record(ctx, 200, rec.data);
    gw_buf_fini(&rec);
    gw_http_add_header(ctx->req, "x-request-id", r.id);

    if (!stream) {
        struct gw_buf b = GW_BUF_INIT;
        fp_resp_object(ctx, &r, &b, 1);
        gw_buf_fini(&usage);
        fp_send(ctx, 200, "application/json", &b);
        return;
    }

    {
        struct fp_events evs = {NULL, 0, 0};
        struct gw_buf d = GW_BUF_INIT;
        size_t i, np = fp_n_pieces(ctx);

        gw_buf_append_str(&d, ",\"response\":");
        fp_resp_object(ctx, &r, &d, 0);
        fp_resp_event(&evs, "response.created", &d);
        fp_resp_event(&evs, "response.in_progress", &d);
        gw_buf_reset(&d);

        gw_buf_append_str(&d, ",\"output_index\":0,\"item\":");
        fp_resp_item(ctx, &r, &d, 0);
        fp_resp_event(&evs, "response.output_item.added", &d);
        gw_buf_reset(&d);

        gw_buf_appendf(
            &d, ",\"item_id\":\"%s\",\"output_index\":0,\"content_index\":0,\"part\":", r.item_id);
        fp_resp_part(ctx, &d, 0);
        fp_resp_event(&evs, "response.content_part.added", &d);
        gw_buf_reset(&d);

        for (i = 0; i < np; i++) {
            gw_buf_appendf(&d,
                           ",\"item_id\":\"%s\",\"output_index\":0,\"content_index\":0,"
                           "\"delta\":",
                           r.item_id);
            fp_piece_json(ctx, i, &d);
            fp_resp_event(&evs, "response.output_text.delta", &d);
            gw_buf_reset(&d);
        }

        gw_buf_appendf(
            &d, ",\"item_id\":\"%s\",\"output_index\":0,\"content_index\":0,\"text\":", r.item_id);
        fp_text_json(ctx, &d, strlen(FP_ANSWER));
        fp_resp_event(&evs, "response.output_text.done", &d);
        gw_buf_reset(&d);

        gw_buf_appendf(
            &d, ",\"item_id\":\"%s\",\"output_index\":0,\"content_index\":0,\"part\":", r.item_id);
        fp_resp_part(ctx, &d, 1);
        fp_resp_event(&evs, "response.content_part.done", &d);
        gw_buf_reset(&d);

        gw_buf_append_str(&d, ",\"output_index\":0,\"item\":");
        fp_resp_item(ctx, &r, &d, 1);
        fp_resp_event(&evs, "response.output_item.done", &d);
        gw_buf_reset(&d);

        gw_buf_append_str(&d, ",\"response\":");
        fp_resp_object(ctx, &r, &d, 1);
        fp_resp_event(&evs, "response.completed", &d);
        gw_buf_fini(&d);
        gw_buf_fini(&usage);
        fp_stream(ctx, "text/event-stream", &evs);
    }
}

/* ---- Gemini ---- */

static void
fp_gemini_usage(struct gw_buf *b, size_t body_len, int64_t candidates)
{
    int64_t cached = (int64_t)(body_len % 97);
    int64_t prompt = (int64_t)((body_len + 3) / 4) + cached;
    int64_t thoughts = (int64_t)(body_len % 5);

    gw_buf_appendf(b, "{\"promptTokenCount\":%" PRId64, prompt);
    if (cached > 0)
        gw_buf_appendf(b, ",\"cachedContentTokenCount\":%" PRId64, cached);
    gw_buf_appendf(b, ",\"candidatesTokenCount\":%" PRId64, candidates);
    if (thoughts > 0)
        gw_buf_appendf(b, ",\"thoughtsTokenCount\":%" PRId64, thoughts);
    gw_buf_appendf(b, ",\"totalTokenCount\":%" PRId64 "}", prompt + candidates + thoughts);
}

/* One GenerateContentResponse; `text` is a JSON string already. */
static void
fp_gemini_response(const struct fp_ctx *ctx, struct gw_buf *b, const struct gw_buf *text, int last,
                   int64_t candidates, uint64_t n)
{
    gw_buf_append_str(b, "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":");
    gw_buf_append(b, text->data, text->len);
    gw_buf_append_str(b, "}]}");
    if (last)
        gw_buf_append_str(b, ",\"finishReason\":\"STOP\"");
    gw_buf_append_str(b, ",\"index\":0}],\"usageMetadata\":");
    fp_gemini_usage(b, ctx->req->body.len, candidates);
    gw_buf_append_str(b, ",\"modelVersion\":");
    gw_json_append_string(b, ctx->model.p, ctx->model.len);
    gw_buf_appendf(b, ",\"responseId\":\"fake-%" PRIu64 "\"}", n);
}

static void
fp_gemini_generate(struct fp_ctx *ctx, cJSON *root)
{
    struct gw_buf rec = GW_BUF_INIT;
    struct gw_buf text = GW_BUF_INIT;
    struct gw_str alt = {NULL, 0};
    int sse = 0;
    uint64_t n;
    size_t body_len = ctx->req->body.len;
    int64_t cached = (int64_t)(body_len % 97);
    int64_t prompt = (int64_t)((body_len + 3) / 4) + cached;
    int64_t thoughts = (int64_t)(body_len % 5);

    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "contents"))) {
        fp_respond_error(ctx, 400, "\"contents\" (array) is required");
        return;
    }
    ctx->stream = ctx->endpoint == FP_EP_STREAM_GENERATE;
    if (fp_query_get(ctx->req->query, "alt", &alt) && gw_str_eq(alt, "sse"))
        sse = 1;
    n = ++fp.msg_seq;
    gw_buf_appendf(&rec,
                   "{\"promptTokenCount\":%" PRId64 ",\"cachedContentTokenCount\":%" PRId64
                   ",\"candidatesTokenCount\":%d,\"thoughtsTokenCount\":%" PRId64
                   ",\"totalTokenCount\":%" PRId64 "}",
                   prompt, cached, FP_OUTPUT_TOKENS, thoughts,
                   prompt + FP_OUTPUT_TOKENS + thoughts);
    fp_record(ctx, 200, rec.data);
    gw_buf_fini(&rec);

    if (!ctx->stream) {
        struct gw_buf b = GW_BUF_INIT;
        fp_text_json(ctx, &text, strlen(FP_ANSWER));
        fp_gemini_response(ctx, &b, &text, 1, FP_OUTPUT_TOKENS, n);
        gw_buf_fini(&text);
        fp_send(ctx, 200, "application/json", &b);
        return;
    }

    {
        struct fp_events evs = {NULL, 0, 0};
        struct gw_buf d = GW_BUF_INIT;
        size_t i, np = fp_n_pieces(ctx);

        for (i = 0; i < np; i++) {
            int last = i + 1 == np;
            /* cumulative; the last object carries the complete count */
            int64_t cand =
                last ? FP_OUTPUT_TOKENS : (int64_t)(i + 1 < fp.n_words ? i + 1 : fp.n_words);
            gw_buf_reset(&text);
            fp_piece_json(ctx, i, &text);
            fp_gemini_response(ctx, &d, &text, last, cand, n);
            if (sse) {
                fp_ev_sse(&evs, NULL, &d, "\r\n\r\n");
            } else {
                struct gw_buf *ev = fp_ev_new(&evs);
                gw_buf_append_str(ev, i == 0 ? "[" : ",\r\n");
                gw_buf_append(ev, d.data, d.len);
            }
            gw_buf_reset(&d);
        }
        if (!sse)
            gw_buf_append_str(fp_ev_new(&evs), "]");
        gw_buf_fini(&d);
        gw_buf_fini(&text);
        fp_stream(ctx, sse ? "text/event-stream" : "application/json", &evs);
    }
}

/* ---- model lists ---- */

static void
fp_models(struct fp_ctx *ctx)
{
    static const char openai[] =
        "{\"object\":\"list\",\"data\":["
        "{\"id\":\"gpt-fake-mini\",\"object\":\"model\",\"created\":1700000000,"
        "\"owned_by\":\"aicarpool-fake\"},"
        "{\"id\":\"gpt-fake-large\",\"object\":\"model\",\"created\":1700000000,"
        "\"owned_by\":\"aicarpool-fake\"},"
        "{\"id\":\"codex-fake\",\"object\":\"model\",\"created\":1700000000,"
        "\"owned_by\":\"aicarpool-fake\"}]}";
    static const char anthropic[] =
        "{\"data\":["
        "{\"type\":\"model\",\"id\":\"claude-fake-sonnet\",\"display_name\":\"Claude Fake Sonnet\","
        "\"created_at\":\"2025-01-01T00:00:00Z\"},"
        "{\"type\":\"model\",\"id\":\"claude-fake-haiku\",\"display_name\":\"Claude Fake Haiku\","
        "\"created_at\":\"2025-01-01T00:00:00Z\"}],"
        "\"has_more\":false,\"first_id\":\"claude-fake-sonnet\",\"last_id\":\"claude-fake-haiku\"}";
    static const char gemini[] =
        "{\"models\":["
        "{\"name\":\"models/gemini-fake-flash\",\"version\":\"001\",\"displayName\":"
        "\"Gemini Fake Flash\",\"inputTokenLimit\":1048576,\"outputTokenLimit\":65536,"
        "\"supportedGenerationMethods\":[\"generateContent\",\"countTokens\"]},"
        "{\"name\":\"models/gemini-fake-pro\",\"version\":\"001\",\"displayName\":"
        "\"Gemini Fake Pro\",\"inputTokenLimit\":1048576,\"outputTokenLimit\":65536,"
        "\"supportedGenerationMethods\":[\"generateContent\",\"countTokens\"]}]}";
    struct gw_buf b = GW_BUF_INIT;

    if (ctx->dialect == FP_DIALECT_GEMINI)
        gw_buf_append(&b, gemini, sizeof(gemini) - 1);
    else if (ctx->dialect == FP_DIALECT_ANTHROPIC)
        gw_buf_append(&b, anthropic, sizeof(anthropic) - 1);
    else
        gw_buf_append(&b, openai, sizeof(openai) - 1);
    fp_record(ctx, 200, NULL);
    fp_send(ctx, 200, "application/json", &b);
}

/* ---- routing ---- */

/* Strips /acct/<name> and /fault/<list> from the start of the path. */
static void
fp_parse_prefixes(struct fp_ctx *ctx)
{
    struct gw_str p = ctx->req->path;

    for (;;) {
        int acct = fp_starts_with(p, "/acct/");
        size_t skip, end;
        if (!acct && !fp_starts_with(p, "/fault/"))
            break;
        skip = acct ? 6 : 7;
        end = skip;
        while (end < p.len && p.p[end] != '/')
            end++;
        if (acct) {
            size_t i, n = end - skip;
            int ok = n >= 1 && n <= FP_MAX_LABEL;
            for (i = 0; ok && i < n; i++) {
                char ch = p.p[skip + i];
                ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
            }
            if (ok) {
                memcpy(ctx->label, p.p + skip, n);
                ctx->label[n] = '\0';
                ctx->has_label = 1;
            } else {
                ctx->prefix_error = "invalid /acct/ label: 1 to 64 of A-Z a-z 0-9 - _ .";
            }
        } else if (end > skip) {
            if (ctx->faults.len > 0)
                gw_buf_append(&ctx->faults, ",", 1);
            gw_buf_append(&ctx->faults, p.p + skip, end - skip);
        }
        p.p += end;
        p.len -= end;
    }
    ctx->rest = p;
}

/* Gemini: ".../models/{model}:{method}" with no '/' after "models/". */
static enum fp_endpoint
fp_gemini_endpoint(struct gw_str path, struct gw_str *model)
{
    const char *tail = NULL;
    const char *colon;
    size_t i, tail_len;
    struct gw_str method;

    for (i = path.len; i >= 8; i--) {
        if (memcmp(path.p + i - 8, "/models/", 8) == 0) {
            tail = path.p + i;
            break;
        }
    }
    if (tail == NULL)
        return FP_EP_NONE;
    tail_len = (size_t)(path.p + path.len - tail);
    if (memchr(tail, '/', tail_len) != NULL)
        return FP_EP_NONE;
    colon = memchr(tail, ':', tail_len);
    if (colon == NULL || colon == tail)
        return FP_EP_NONE;
    model->p = tail;
    model->len = (size_t)(colon - tail);
    method.p = colon + 1;
    method.len = tail_len - model->len - 1;
    if (gw_str_eq(method, "generateContent"))
        return FP_EP_GENERATE;
    if (gw_str_eq(method, "streamGenerateContent"))
        return FP_EP_STREAM_GENERATE;
    if (gw_str_eq(method, "countTokens"))
        return FP_EP_GEMINI_COUNT;
    return FP_EP_NONE;
}

static int
fp_has_header(const struct gw_http_req *req, const char *name)
{
    const struct gw_str *h = gw_http_req_header(req, name);
    return h != NULL && h->len > 0;
}

static void
fp_route(struct fp_ctx *ctx)
{
    struct gw_str rest = ctx->rest;
    struct gw_str key;

    if (fp_ends_with(rest, "/v1/messages/count_tokens")) {
        ctx->dialect = FP_DIALECT_ANTHROPIC;
        ctx->endpoint = FP_EP_COUNT_TOKENS;
    } else if (fp_ends_with(rest, "/v1/messages")) {
        ctx->dialect = FP_DIALECT_ANTHROPIC;
        ctx->endpoint = FP_EP_MESSAGES;
    } else if (fp_ends_with(rest, "/chat/completions")) {
        ctx->dialect = FP_DIALECT_OPENAI;
        ctx->endpoint = FP_EP_CHAT;
    } else if (fp_ends_with(rest, "/responses")) {
        ctx->dialect = FP_DIALECT_OPENAI;
        ctx->endpoint = FP_EP_RESPONSES;
    } else if (fp_ends_with(rest, "/v1beta/models")) {
        ctx->dialect = FP_DIALECT_GEMINI;
        ctx->endpoint = FP_EP_MODELS;
    } else if (fp_ends_with(rest, "/models")) {
        ctx->endpoint = FP_EP_MODELS;
        if (fp_has_header(ctx->req, "x-goog-api-key") || fp_query_get(ctx->req->query, "key", &key))
            ctx->dialect = FP_DIALECT_GEMINI;
        else if (fp_has_header(ctx->req, "x-api-key") ||
                 gw_http_req_header(ctx->req, "anthropic-version") != NULL)
            ctx->dialect = FP_DIALECT_ANTHROPIC;
        else
            ctx->dialect = FP_DIALECT_OPENAI;
    } else {
        ctx->endpoint = fp_gemini_endpoint(rest, &ctx->model);
        if (ctx->endpoint != FP_EP_NONE)
            ctx->dialect = FP_DIALECT_GEMINI;
    }
}

/* The credential check of each dialect; sets key_source for Gemini. */
static int
fp_authenticated(struct fp_ctx *ctx)
{
    const struct gw_http_req *req = ctx->req;
    const struct gw_str *a = gw_http_req_header(req, "authorization");
    int bearer = a != NULL && a->len > 7 && strncasecmp(a->p, "Bearer ", 7) == 0;
    struct gw_str key;

    switch (ctx->dialect) {
    case FP_DIALECT_ANTHROPIC:
        return fp_has_header(req, "x-api-key") || bearer;
    case FP_DIALECT_OPENAI:
        return bearer;
    case FP_DIALECT_GEMINI:
        if (fp_has_header(req, "x-goog-api-key")) {
            ctx->key_source = "header";
            return 1;
        }
        if (fp_query_get(req->query, "key", &key) && key.len > 0) {
            ctx->key_source = "query";
            return 1;
        }
        return 0;
    default:
        return 0;
    }
}

static const char *
fp_auth_message(enum fp_dialect dialect)
{
    switch (dialect) {
    case FP_DIALECT_OPENAI:
        return "missing credential: send Authorization: Bearer";
    case FP_DIALECT_GEMINI:
        return "Method doesn't allow unregistered callers: send x-goog-api-key or ?key=";
    default:
        return "missing credential: send x-api-key or Authorization: Bearer";
    }
}

/* An error the scenario asked for. */
static void
fp_injected_error(struct fp_ctx *ctx)
{
    struct gw_buf b = GW_BUF_INIT;
    int status = ctx->sc.status;
    char num[32];

    fp_error_body(ctx->dialect, status, "injected by the fake provider's scenario",
                  ctx->sc.retry_after, &b);
    if (status == 429) {
        snprintf(num, sizeof(num), "%" PRIu64, ctx->sc.retry_after);
        gw_http_add_header(ctx->req, "retry-after", num);
        if (ctx->dialect == FP_DIALECT_ANTHROPIC) {
            time_t reset = time(NULL) + (time_t)ctx->sc.retry_after;
            struct tm tm;
            char ts[32];
            gmtime_r(&reset, &tm);
            strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
            gw_http_add_header(ctx->req, "anthropic-ratelimit-requests-reset", ts);
        } else if (ctx->dialect == FP_DIALECT_OPENAI) {
            snprintf(num, sizeof(num), "%" PRIu64 "s", ctx->sc.retry_after);
            gw_http_add_header(ctx->req, "x-ratelimit-reset-requests", num);
        }
    }
    fp_record(ctx, status, NULL);
    fp_send(ctx, status, "application/json", &b);
}

static void
fp_api(struct gw_http_req *req)
{
    struct fp_ctx ctx;
    const struct gw_str *h;
    cJSON *root = NULL;
    int get = 0;

    memset(&ctx, 0, sizeof(ctx));
    ctx.req = req;
    ctx.stat = SIZE_MAX;
    gw_buf_init(&ctx.faults);
    gw_buf_init(&ctx.scenario);
    gw_buf_init(&ctx.echo);
    ctx.sc.cut_after = -1;
    ctx.sc.stall_after = -1;
    fp_parse_prefixes(&ctx);
    fp_route(&ctx);
    h = gw_http_req_header(req, "x-fake-scenario");
    if (ctx.faults.len > 0)
        gw_buf_append(&ctx.scenario, ctx.faults.data, ctx.faults.len);
    if (h != NULL && h->len > 0) {
        if (ctx.scenario.len > 0)
            gw_buf_append(&ctx.scenario, ",", 1);
        gw_buf_append(&ctx.scenario, h->p, h->len);
    }

    if (ctx.endpoint == FP_EP_NONE) {
        /* no dialect recorded; the body is Anthropic's, as it always was */
        fp_respond_error(&ctx, 404, "Not found");
        goto out;
    }
    get = ctx.endpoint == FP_EP_MODELS;
    if (strcmp(req->method, get ? "GET" : "POST") != 0) {
        fp_respond_error(&ctx, 405, get ? "use GET" : "use POST");
        goto out;
    }
    if (!fp_authenticated(&ctx)) {
        fp_respond_error(&ctx, 401, fp_auth_message(ctx.dialect));
        goto out;
    }
    if (ctx.prefix_error != NULL) {
        fp_respond_error(&ctx, 400, ctx.prefix_error);
        goto out;
    }
    if (fp_scenario_setup(&ctx) != 0) {
        fp_respond_error(&ctx, 400,
                         "unknown or malformed scenario item (x-fake-scenario or /fault/)");
        goto out;
    }
    if (ctx.sc.status != 0) {
        fp_injected_error(&ctx);
        goto out;
    }
    if (ctx.endpoint == FP_EP_MODELS) {
        fp_models(&ctx);
        goto out;
    }
    root = fp_parse_body(&ctx);
    if (root == NULL)
        goto out;
    switch (ctx.endpoint) {
    case FP_EP_MESSAGES:
        fp_anthropic_messages(&ctx, root);
        break;
    case FP_EP_COUNT_TOKENS:
    case FP_EP_GEMINI_COUNT:
        fp_count(&ctx, root);
        break;
    case FP_EP_CHAT:
        fp_openai_chat(&ctx, root);
        break;
    case FP_EP_RESPONSES:
        fp_openai_responses(&ctx, root);
        break;
    case FP_EP_GENERATE:
    case FP_EP_STREAM_GENERATE:
        fp_gemini_generate(&ctx, root);
        break;
    default:
        fp_respond_error(&ctx, 404, "Not found");
        break;
    }
out:
    cJSON_Delete(root);
    gw_buf_fini(&ctx.faults);
    gw_buf_fini(&ctx.scenario);
    gw_buf_fini(&ctx.echo);
}

/* ---- /_fake ---- */

static void
fp_plain_error(struct gw_http_req *req, int status, const char *message)
{
    struct gw_buf b = GW_BUF_INIT;

    gw_buf_append_str(&b, "{\"error\":{\"message\":");
    fp_jstr(&b, message);
    gw_buf_append_str(&b, "}}");
    fp_log(req, status);
    gw_http_respond(req, status, "application/json", b.data, b.len);
    gw_buf_fini(&b);
}

static void
fp_requests(struct gw_http_req *req)
{
    struct gw_buf b = GW_BUF_INIT;
    size_t i;

    if (strcmp(req->method, "DELETE") == 0) {
        fp_reset();
        fp_log(req, 204);
        gw_http_respond(req, 204, NULL, NULL, 0);
        return;
    }
    if (strcmp(req->method, "GET") != 0) {
        fp_plain_error(req, 405, "use GET or DELETE");
        return;
    }
    gw_buf_append(&b, "[", 1);
    for (i = 0; i < fp.rec_count; i++) {
        const struct fp_rec *r = &fp.records[(fp.rec_head + i) % FP_MAX_RECORDS];
        if (i > 0)
            gw_buf_append(&b, ",", 1);
        gw_buf_append_str(&b, r->json);
        gw_buf_appendf(&b, ",\"completed\":%s,\"events_sent\":%" PRIu64 "}",
                       r->completed ? "true" : "false", r->events);
    }
    gw_buf_append(&b, "]", 1);
    fp_log(req, 200);
    gw_http_respond(req, 200, "application/json", b.data, b.len);
    gw_buf_fini(&b);
}

static void
fp_stats(struct gw_http_req *req)
{
    struct gw_buf b = GW_BUF_INIT;
    size_t i, j;
    int d;

    if (strcmp(req->method, "GET") != 0) {
        fp_plain_error(req, 405, "use GET");
        return;
    }
    gw_buf_append_str(&b, "{\"accounts\":{");
    for (i = 0; i < fp.n_stats; i++) {
        const struct fp_stat *s = &fp.stats[i];
        int first = 1;
        if (i > 0)
            gw_buf_append(&b, ",", 1);
        fp_jstr(&b, s->label);
        gw_buf_appendf(&b,
                       ":{\"requests\":%" PRIu64 ",\"completed\":%" PRIu64
                       ",\"incomplete\":%" PRIu64 ",\"status\":{",
                       s->requests, s->completed, s->incomplete);
        for (j = 0; j < s->n_codes; j++)
            gw_buf_appendf(&b, "%s\"%d\":%" PRIu64, j > 0 ? "," : "", s->codes[j],
                           s->code_counts[j]);
        gw_buf_append_str(&b, "},\"dialects\":{");
        for (d = FP_DIALECT_ANTHROPIC; d <= FP_DIALECT_GEMINI; d++) {
            if (s->dialects[d] == 0)
                continue;
            gw_buf_appendf(&b, "%s\"%s\":%" PRIu64, first ? "" : ",", fp_dialect_names[d],
                           s->dialects[d]);
            first = 0;
        }
        gw_buf_append_str(&b, "}}");
    }
    gw_buf_append_str(&b, "}}");
    fp_log(req, 200);
    gw_http_respond(req, 200, "application/json", b.data, b.len);
    gw_buf_fini(&b);
}

static void
fp_handler(struct gw_http_req *req, void *arg)
{
    (void)arg;
    if (gw_str_eq(req->path, "/healthz")) {
        fp_log(req, 200);
        gw_http_respond(req, 200, "text/plain", "ok\n", 3);
    } else if (gw_str_eq(req->path, "/_fake/requests")) {
        fp_requests(req);
    } else if (gw_str_eq(req->path, "/_fake/stats")) {
        fp_stats(req);
    } else {
        fp_api(req);
    }
}

/* Errors the server answers by itself (413, 431 ...) in the dialect the
 * path suggests. */
static void
fp_server_error_body(int status, const char *message, struct gw_str path, struct gw_buf *out,
                     void *arg)
{
    struct fp_ctx ctx;
    struct gw_http_req fake_req;

    (void)arg;
    memset(&ctx, 0, sizeof(ctx));
    memset(&fake_req, 0, sizeof(fake_req));
    fake_req.path = path;
    ctx.req = &fake_req;
    gw_buf_init(&ctx.faults);
    fp_parse_prefixes(&ctx);
    fp_route(&ctx);
    gw_buf_fini(&ctx.faults);
    fp_error_body(ctx.dialect == FP_DIALECT_NONE ? FP_DIALECT_ANTHROPIC : ctx.dialect, status,
                  message, 1, out);
}

/* ---- process ---- */

static void
fp_split_words(void)
{
    const char *p = FP_ANSWER;

    while (*p != '\0' && fp.n_words < FP_MAX_WORDS) {
        const char *sp = strchr(p, ' ');
        size_t len = sp ? (size_t)(sp - p) + 1 : strlen(p);
        fp.words[fp.n_words] = p;
        fp.word_len[fp.n_words] = len;
        fp.n_words++;
        p += len;
    }
}

static int
fp_write_port_file(const char *path, int port)
{
    char tmp[4096];
    FILE *f;
    int ok;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return -1;
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    ok = fprintf(f, "%d\n", port) > 0;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void
fp_on_server_closed(void *arg)
{
    (void)arg;
    fp.srv = NULL;
    uv_close((uv_handle_t *)&fp.sigint, NULL);
    uv_close((uv_handle_t *)&fp.sigterm, NULL);
}

static void
fp_on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    gw_log(GW_LOG_INFO, "FAKE-STOP", "signal %d: shutting down", signum);
    uv_signal_stop(&fp.sigint);
    uv_signal_stop(&fp.sigterm);
    if (fp.srv != NULL)
        gw_http_server_close(fp.srv, fp_on_server_closed, NULL);
}

int
main(int argc, char **argv)
{
    struct fp_config cfg;
    struct gw_buf errors = GW_BUF_INIT;
    enum gw_cfg_action action = GW_CFG_RUN;
    uv_loop_t loop;
    int port = 0;
    int status = 1;
    gw_err rv;

    gw_log_set_component("fakeprovider");
    fp_split_words();
    memset(&cfg, 0, sizeof(cfg));
    /* The command line only: the environment of a test often carries
     * AICARPOOL_* settings meant for the edge or the hub. */
    rv = gw_config_load(fp_table, &cfg, argc, argv, NULL, stdout, &errors, &action);
    if (rv != GW_OK) {
        fprintf(stderr, "%s", errors.data ? errors.data : "invalid configuration\n");
        goto out_cfg;
    }
    if (action != GW_CFG_RUN) {
        status = 0;
        goto out_cfg;
    }
    if (cfg.log_level != NULL && gw_log_set_level(cfg.log_level) != 0) {
        fprintf(stderr, "invalid --log-level '%s'\n", cfg.log_level);
        goto out_cfg;
    }
    if (uv_loop_init(&loop) != 0)
        goto out_cfg;
    fp.loop = &loop;
    rv = gw_http_server_new(&loop, NULL, fp_handler, NULL, &fp.srv);
    if (rv != GW_OK)
        goto out_loop;
    gw_http_server_set_error_body(fp.srv, fp_server_error_body, NULL);
    rv = gw_http_server_listen(fp.srv, cfg.listen, 0, &port);
    if (rv != GW_OK) {
        fprintf(stderr, "cannot listen on %s: %s\n", cfg.listen, gw_strerror(rv));
        gw_http_server_close(fp.srv, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        goto out_loop;
    }
    uv_signal_init(&loop, &fp.sigint);
    uv_signal_init(&loop, &fp.sigterm);
    uv_signal_start(&fp.sigint, fp_on_signal, SIGINT);
    uv_signal_start(&fp.sigterm, fp_on_signal, SIGTERM);
    if (cfg.port_file != NULL && fp_write_port_file(cfg.port_file, port) != 0) {
        fprintf(stderr, "cannot write port file %s\n", cfg.port_file);
        fp_on_signal(&fp.sigterm, SIGTERM);
        uv_run(&loop, UV_RUN_DEFAULT);
        goto out_loop;
    }
    gw_log(GW_LOG_INFO, "FAKE-START", "fake provider listening on port %d", port);
    uv_run(&loop, UV_RUN_DEFAULT);
    status = 0;
out_loop:
    uv_loop_close(&loop);
    fp_reset();
out_cfg:
    gw_buf_fini(&errors);
    gw_config_free(fp_table, &cfg);
    return status;
}
