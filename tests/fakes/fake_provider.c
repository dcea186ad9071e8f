/* SPDX-License-Identifier: Apache-2.0 */
/* aicarpool-fakeprovider: a fake Anthropic Messages API on the common HTTP
 * server. Usage numbers are derived from the request so tests can compute
 * them exactly; the x-fake-scenario header injects errors, delays and cut
 * streams; /_fake/requests shows what reached the provider. See README.md. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

/* What the x-fake-scenario header asked for. */
struct fp_scenario {
    int status;          /* 0, 500, 429 or 529 */
    uint64_t first_ms;   /* delay before the first byte */
    uint64_t between_ms; /* delay between stream events */
    int64_t cut_after;   /* -1: never; else close after this many events */
};

struct fp_usage {
    int64_t input;
    int64_t cache_read;
    int64_t cache_creation;
    int64_t eph_5m;
    int64_t eph_1h;
    int64_t output;
};

/* A response that is not sent at once: delayed, streamed or both. */
struct fp_job {
    uv_timer_t timer;
    struct gw_http_req *req;
    int streaming;
    int status;
    const char *content_type;
    struct gw_buf body;    /* complete response (not streaming) */
    struct gw_buf *events; /* one "event: X\ndata: Y\n\n" per entry */
    size_t n_events, next;
    struct fp_scenario sc;
    int started;
    int waiting_drain;
    int finished;
};

struct fp_state {
    uv_loop_t *loop;
    struct gw_http_server *srv;
    uv_signal_t sigint, sigterm;
    char *records[FP_MAX_RECORDS]; /* ring of serialised JSON objects */
    size_t rec_head, rec_count;
    uint64_t rec_seq;
    uint64_t msg_seq;
};

static struct fp_state fp;

/* ---- helpers ---- */

static void
fp_record(const struct gw_http_req *req, int status, const struct fp_usage *usage, int stream)
{
    struct gw_buf b = GW_BUF_INIT;
    struct gw_buf hdrs = GW_BUF_INIT;
    size_t i, j;
    size_t slot;

    gw_buf_appendf(&b, "{\"seq\":%" PRIu64 ",\"method\":", ++fp.rec_seq);
    gw_json_append_string(&b, req->method, strlen(req->method));
    gw_buf_append_str(&b, ",\"target\":");
    gw_json_append_string(&b, req->target.p, req->target.len);
    gw_buf_append_str(&b, ",\"headers\":{");
    /* lower-case names; repeated headers joined with ", " */
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
        if (hdrs.len > 0)
            gw_buf_append(&hdrs, ",", 1);
        gw_json_append_string(&hdrs, name.data ? name.data : "", name.len);
        gw_buf_append(&hdrs, ":", 1);
        gw_json_append_string(&hdrs, value.data ? value.data : "", value.len);
        gw_buf_fini(&name);
        gw_buf_fini(&value);
    }
    if (hdrs.len > 0)
        gw_buf_append(&b, hdrs.data, hdrs.len);
    gw_buf_fini(&hdrs);
    gw_buf_appendf(&b,
                   "},\"body_len\":%zu,\"status\":%d,\"stream\":%s,\"scenario\":", req->body.len,
                   status, stream ? "true" : "false");
    {
        const struct gw_str *s = gw_http_req_header(req, "x-fake-scenario");
        if (s != NULL)
            gw_json_append_string(&b, s->p, s->len);
        else
            gw_buf_append_str(&b, "null");
    }
    gw_buf_append_str(&b, ",\"usage\":");
    if (usage != NULL)
        gw_buf_appendf(
            &b,
            "{\"input_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64
            ",\"cache_read_input_tokens\":%" PRId64 ",\"cache_creation_input_tokens\":%" PRId64
            ",\"ephemeral_5m_input_tokens\":%" PRId64 ",\"ephemeral_1h_input_tokens\":%" PRId64 "}",
            usage->input, usage->output, usage->cache_read, usage->cache_creation, usage->eph_5m,
            usage->eph_1h);
    else
        gw_buf_append_str(&b, "null");
    gw_buf_append_str(&b, "}");

    slot = (fp.rec_head + fp.rec_count) % FP_MAX_RECORDS;
    if (fp.rec_count == FP_MAX_RECORDS) {
        free(fp.records[fp.rec_head]);
        fp.records[fp.rec_head] = NULL;
        fp.rec_head = (fp.rec_head + 1) % FP_MAX_RECORDS;
        slot = (fp.rec_head + fp.rec_count - 1) % FP_MAX_RECORDS;
    } else {
        fp.rec_count++;
    }
    fp.records[slot] = gw_buf_steal(&b, NULL);
}

static void
fp_records_clear(void)
{
    size_t i;

    for (i = 0; i < FP_MAX_RECORDS; i++) {
        free(fp.records[i]);
        fp.records[i] = NULL;
    }
    fp.rec_head = 0;
    fp.rec_count = 0;
}

static void
fp_log(const struct gw_http_req *req, int status)
{
    /* The path only: query strings can carry keys (?key=...). */
    gw_log_req(GW_LOG_INFO, "FAKE-REQ", req->id_str, "%s %.*s -> %d", req->method,
               (int)req->path.len, req->path.p, status);
}

/* Anthropic's error body. */
static void
fp_error_body(struct gw_buf *b, const char *type, const char *message)
{
    gw_buf_append_str(b, "{\"type\":\"error\",\"error\":{\"type\":");
    gw_json_append_string(b, type, strlen(type));
    gw_buf_append_str(b, ",\"message\":");
    gw_json_append_string(b, message, strlen(message));
    gw_buf_append_str(b, "}}");
}

static void
fp_respond_error(struct gw_http_req *req, int status, const char *type, const char *message)
{
    struct gw_buf b = GW_BUF_INIT;

    fp_error_body(&b, type, message);
    fp_record(req, status, NULL, 0);
    fp_log(req, status);
    gw_http_respond(req, status, "application/json", b.data, b.len);
    gw_buf_fini(&b);
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

/* Parses "a,b=N,..." from x-fake-scenario; unknown items are errors so a
 * typo in a test does not silently run the happy path. */
static int
fp_parse_scenario(const struct gw_http_req *req, struct fp_scenario *sc, const char **why)
{
    const struct gw_str *h = gw_http_req_header(req, "x-fake-scenario");
    size_t i = 0;

    memset(sc, 0, sizeof(*sc));
    sc->cut_after = -1;
    if (h == NULL)
        return 0;
    while (i < h->len) {
        size_t end = i, klen;
        const char *item, *eq;
        uint64_t v = 0;
        while (end < h->len && h->p[end] != ',')
            end++;
        item = h->p + i;
        while (item < h->p + end && *item == ' ')
            item++;
        klen = (size_t)(h->p + end - item);
        while (klen > 0 && item[klen - 1] == ' ')
            klen--;
        eq = memchr(item, '=', klen);
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
            else
                goto bad;
        } else {
            struct gw_str key = {item, (size_t)(eq - item)};
            if (fp_parse_u64(eq + 1, klen - key.len - 1, FP_MAX_DELAY_MS, &v) != 0)
                goto bad;
            if (gw_str_eq(key, "slow-first-byte-ms"))
                sc->first_ms = v;
            else if (gw_str_eq(key, "delay-ms-between-events"))
                sc->between_ms = v;
            else if (gw_str_eq(key, "cut-after-events"))
                sc->cut_after = (int64_t)v;
            else
                goto bad;
        }
        i = end + 1;
    }
    return 0;
bad:
    *why = "unknown or malformed x-fake-scenario item";
    return -1;
}

static int
fp_authenticated(const struct gw_http_req *req)
{
    const struct gw_str *k = gw_http_req_header(req, "x-api-key");
    const struct gw_str *a = gw_http_req_header(req, "authorization");

    if (k != NULL && k->len > 0)
        return 1;
    if (a != NULL && a->len > 7 && strncasecmp(a->p, "Bearer ", 7) == 0)
        return 1;
    return 0;
}

/* ---- delayed and streamed responses ---- */

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
    job->req = NULL;
    uv_close((uv_handle_t *)&job->timer, fp_job_on_close);
}

static void fp_job_on_timer(uv_timer_t *t);

/* Writes events until done, cut, a delay or backpressure. */
static void
fp_job_pump(struct fp_job *job)
{
    while (!job->finished) {
        if (job->sc.cut_after >= 0 && job->next >= (size_t)job->sc.cut_after) {
            gw_log_req(GW_LOG_INFO, "FAKE-CUT", job->req->id_str,
                       "cutting the stream after %zu events", job->next);
            fp_job_finish(job, 1);
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
        if (job->sc.between_ms > 0 && job->next < job->n_events) {
            uv_timer_start(&job->timer, fp_job_on_timer, job->sc.between_ms, 0);
            return;
        }
    }
}

static void
fp_job_on_timer(uv_timer_t *t)
{
    struct fp_job *job = t->data;

    if (job->finished)
        return;
    if (!job->streaming) {
        fp_job_finish(job, 0);
        return;
    }
    if (!job->started) {
        /* first byte: the head goes out now */
        job->started = 1;
        if (gw_http_start(job->req, 200, "text/event-stream") != GW_OK) {
            fp_job_finish(job, 1);
            return;
        }
    }
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
fp_job_new(struct gw_http_req *req, const struct fp_scenario *sc)
{
    struct fp_job *job = gw_xcalloc(1, sizeof(*job));

    job->req = req;
    job->sc = *sc;
    gw_buf_init(&job->body);
    uv_timer_init(fp.loop, &job->timer);
    job->timer.data = job;
    gw_http_set_abort_cb(req, fp_job_on_abort, job);
    gw_http_set_drain_cb(req, fp_job_on_drain, job);
    return job;
}

/* Sends a complete response now or after slow-first-byte-ms. Takes body. */
static void
fp_send(struct gw_http_req *req, const struct fp_scenario *sc, int status, const char *content_type,
        struct gw_buf *body)
{
    struct fp_job *job;

    fp_log(req, status);
    if (sc->first_ms == 0) {
        gw_http_respond(req, status, content_type, body->data, body->len);
        gw_buf_fini(body);
        return;
    }
    job = fp_job_new(req, sc);
    job->status = status;
    job->content_type = content_type;
    job->body = *body;
    gw_buf_init(body);
    uv_timer_start(&job->timer, fp_job_on_timer, sc->first_ms, 0);
}

/* ---- the Messages API ---- */

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
fp_event(struct gw_buf *ev, const char *name, const char *data, size_t len)
{
    gw_buf_init(ev);
    gw_buf_appendf(ev, "event: %s\ndata: ", name);
    gw_buf_append(ev, data, len);
    gw_buf_append_str(ev, "\n\n");
}

static void
fp_messages(struct gw_http_req *req)
{
    struct fp_scenario sc;
    struct fp_usage u;
    const char *why = NULL;
    const char *model = NULL;
    cJSON *root;
    int64_t max_tokens = INT64_MAX;
    int stream = 0;
    const char *words[16];
    size_t word_len[16];
    size_t n_words = 0, n_used, i;
    const char *stop_reason = "end_turn";
    char msg_id[48];
    gw_err rv;

    if (strcmp(req->method, "POST") != 0) {
        fp_respond_error(req, 405, "invalid_request_error", "use POST");
        return;
    }
    if (!fp_authenticated(req)) {
        fp_respond_error(req, 401, "authentication_error",
                         "missing credential: send x-api-key or Authorization: Bearer");
        return;
    }
    if (fp_parse_scenario(req, &sc, &why) != 0) {
        fp_respond_error(req, 400, "invalid_request_error", why);
        return;
    }
    if (sc.status != 0) {
        struct gw_buf b = GW_BUF_INIT;
        const char *type = sc.status == 429   ? "rate_limit_error"
                           : sc.status == 529 ? "overloaded_error"
                                              : "api_error";
        fp_error_body(&b, type, "injected by x-fake-scenario");
        if (sc.status == 429)
            gw_http_add_header(req, "retry-after", "1");
        fp_record(req, sc.status, NULL, 0);
        fp_send(req, &sc, sc.status, "application/json", &b);
        return;
    }

    root = gw_json_parse(req->body.data, req->body.len, &why);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        fp_respond_error(req, 400, "invalid_request_error",
                         why ? why : "body must be a JSON object");
        return;
    }
    rv = gw_json_get_str(root, "model", &model);
    if (rv != GW_OK || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "messages"))) {
        cJSON_Delete(root);
        fp_respond_error(req, 400, "invalid_request_error",
                         "\"model\" (string) and \"messages\" (array) are required");
        return;
    }
    rv = gw_json_get_int(root, "max_tokens", &max_tokens);
    if (rv == GW_ENOTFOUND) {
        max_tokens = INT64_MAX;
    } else if (rv != GW_OK || max_tokens < 1) {
        cJSON_Delete(root);
        fp_respond_error(req, 400, "invalid_request_error",
                         "\"max_tokens\" must be a positive integer");
        return;
    }
    rv = gw_json_get_bool(root, "stream", &stream);
    if (rv != GW_OK && rv != GW_ENOTFOUND) {
        cJSON_Delete(root);
        fp_respond_error(req, 400, "invalid_request_error", "\"stream\" must be a boolean");
        return;
    }
    if (rv == GW_ENOTFOUND)
        stream = 0;

    /* Split the answer into words (each with its trailing space). */
    {
        const char *p = FP_ANSWER;
        while (*p != '\0' && n_words < 16) {
            const char *sp = strchr(p, ' ');
            size_t len = sp ? (size_t)(sp - p) + 1 : strlen(p);
            words[n_words] = p;
            word_len[n_words] = len;
            n_words++;
            p += len;
        }
    }
    /* The complete answer costs one token per word plus the end-of-turn
     * token (7); a max_tokens below that truncates to max_tokens words. */
    fp_usage_for(req->body.len, &u);
    u.output = (int64_t)n_words + 1;
    n_used = n_words;
    if (max_tokens < u.output) {
        n_used = (size_t)max_tokens < n_words ? (size_t)max_tokens : n_words;
        u.output = max_tokens;
        stop_reason = "max_tokens";
    }
    snprintf(msg_id, sizeof(msg_id), "msg_fake_%" PRIu64, ++fp.msg_seq);
    fp_record(req, 200, &u, stream);

    if (!stream) {
        struct gw_buf b = GW_BUF_INIT;
        size_t text_len = 0;
        for (i = 0; i < n_used; i++)
            text_len += word_len[i];
        /* a truncated answer does not end with the space of its last word */
        if (n_used < n_words && text_len > 0)
            text_len--;
        gw_buf_appendf(
            &b, "{\"id\":\"%s\",\"type\":\"message\",\"role\":\"assistant\",\"model\":", msg_id);
        gw_json_append_string(&b, model, strlen(model));
        gw_buf_append_str(&b, ",\"content\":[{\"type\":\"text\",\"text\":");
        gw_json_append_string(&b, FP_ANSWER, text_len);
        gw_buf_appendf(&b,
                       "}],\"stop_reason\":\"%s\",\"stop_sequence\":null,\"usage\":", stop_reason);
        fp_usage_json(&b, &u, u.output);
        gw_buf_append_str(&b, "}");
        gw_http_add_header(req, "request-id", msg_id);
        fp_send(req, &sc, 200, "application/json", &b);
        cJSON_Delete(root);
        return;
    }

    /* Streaming: build every event up front, then pace them. */
    {
        struct fp_job *job = fp_job_new(req, &sc);
        struct gw_buf d = GW_BUF_INIT;
        size_t k = 0;

        job->streaming = 1;
        job->n_events = n_used + 6;
        job->events = gw_xcalloc(job->n_events, sizeof(*job->events));

        gw_buf_appendf(
            &d,
            "{\"type\":\"message_start\",\"message\":{\"id\":\"%s\",\"type\":\"message\","
            "\"role\":\"assistant\",\"model\":",
            msg_id);
        gw_json_append_string(&d, model, strlen(model));
        gw_buf_append_str(&d, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                              "\"usage\":");
        fp_usage_json(&d, &u, 1);
        gw_buf_append_str(&d, "}}");
        fp_event(&job->events[k++], "message_start", d.data, d.len);
        gw_buf_reset(&d);

        gw_buf_append_str(&d, "{\"type\":\"content_block_start\",\"index\":0,"
                              "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}");
        fp_event(&job->events[k++], "content_block_start", d.data, d.len);
        gw_buf_reset(&d);

        gw_buf_append_str(&d, "{\"type\": \"ping\"}");
        fp_event(&job->events[k++], "ping", d.data, d.len);
        gw_buf_reset(&d);

        for (i = 0; i < n_used; i++) {
            size_t wl = word_len[i];
            if (i + 1 == n_used && n_used < n_words)
                wl--; /* truncated: no trailing space after the last word */
            gw_buf_append_str(&d, "{\"type\":\"content_block_delta\",\"index\":0,"
                                  "\"delta\":{\"type\":\"text_delta\",\"text\":");
            gw_json_append_string(&d, words[i], wl);
            gw_buf_append_str(&d, "}}");
            fp_event(&job->events[k++], "content_block_delta", d.data, d.len);
            gw_buf_reset(&d);
        }

        gw_buf_append_str(&d, "{\"type\":\"content_block_stop\",\"index\":0}");
        fp_event(&job->events[k++], "content_block_stop", d.data, d.len);
        gw_buf_reset(&d);

        gw_buf_appendf(&d,
                       "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\","
                       "\"stop_sequence\":null},\"usage\":{\"output_tokens\":%" PRId64 "}}",
                       stop_reason, u.output);
        fp_event(&job->events[k++], "message_delta", d.data, d.len);
        gw_buf_reset(&d);

        gw_buf_append_str(&d, "{\"type\":\"message_stop\"}");
        fp_event(&job->events[k++], "message_stop", d.data, d.len);
        gw_buf_fini(&d);

        gw_http_add_header(req, "request-id", msg_id);
        gw_http_add_header(req, "cache-control", "no-cache");
        fp_log(req, 200);
        cJSON_Delete(root);
        if (sc.first_ms > 0) {
            uv_timer_start(&job->timer, fp_job_on_timer, sc.first_ms, 0);
            return;
        }
        job->started = 1;
        if (gw_http_start(req, 200, "text/event-stream") != GW_OK) {
            fp_job_finish(job, 1);
            return;
        }
        fp_job_pump(job);
    }
}

static void
fp_count_tokens(struct gw_http_req *req)
{
    struct gw_buf b = GW_BUF_INIT;
    const char *why = NULL;
    cJSON *root;

    if (strcmp(req->method, "POST") != 0) {
        fp_respond_error(req, 405, "invalid_request_error", "use POST");
        return;
    }
    if (!fp_authenticated(req)) {
        fp_respond_error(req, 401, "authentication_error",
                         "missing credential: send x-api-key or Authorization: Bearer");
        return;
    }
    root = gw_json_parse(req->body.data, req->body.len, &why);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        fp_respond_error(req, 400, "invalid_request_error",
                         why ? why : "body must be a JSON object");
        return;
    }
    cJSON_Delete(root);
    gw_buf_appendf(&b, "{\"input_tokens\":%zu}", (req->body.len + 3) / 4);
    fp_record(req, 200, NULL, 0);
    fp_log(req, 200);
    gw_http_respond(req, 200, "application/json", b.data, b.len);
    gw_buf_fini(&b);
}

static void
fp_requests(struct gw_http_req *req)
{
    struct gw_buf b = GW_BUF_INIT;
    size_t i;

    if (strcmp(req->method, "DELETE") == 0) {
        fp_records_clear();
        fp_log(req, 204);
        gw_http_respond(req, 204, NULL, NULL, 0);
        return;
    }
    if (strcmp(req->method, "GET") != 0) {
        fp_log(req, 405);
        static const char msg[] = "{\"error\":{\"message\":\"use GET or DELETE\"}}";
        gw_http_respond(req, 405, "application/json", msg, sizeof(msg) - 1);
        return;
    }
    gw_buf_append(&b, "[", 1);
    for (i = 0; i < fp.rec_count; i++) {
        if (i > 0)
            gw_buf_append(&b, ",", 1);
        gw_buf_append_str(&b, fp.records[(fp.rec_head + i) % FP_MAX_RECORDS]);
    }
    gw_buf_append(&b, "]", 1);
    fp_log(req, 200);
    gw_http_respond(req, 200, "application/json", b.data, b.len);
    gw_buf_fini(&b);
}

/* "/v1/messages" or "/v1/messages/count_tokens" after any prefix. */
static int
fp_path_is(struct gw_str path, const char *suffix)
{
    size_t n = strlen(suffix);
    return path.len >= n && memcmp(path.p + path.len - n, suffix, n) == 0;
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
    } else if (fp_path_is(req->path, "/v1/messages/count_tokens")) {
        fp_count_tokens(req);
    } else if (fp_path_is(req->path, "/v1/messages")) {
        fp_messages(req);
    } else {
        fp_respond_error(req, 404, "not_found_error", "Not found");
    }
}

/* ---- process ---- */

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
    gw_log(GW_LOG_INFO, "FAKE-START", "fake Anthropic provider listening on port %d", port);
    uv_run(&loop, UV_RUN_DEFAULT);
    status = 0;
out_loop:
    uv_loop_close(&loop);
    fp_records_clear();
out_cfg:
    gw_buf_fini(&errors);
    gw_config_free(fp_table, &cfg);
    return status;
}
