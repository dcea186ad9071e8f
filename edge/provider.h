/* SPDX-License-Identifier: Apache-2.0 */
/* Provider adapters: one const table per client API dialect (Anthropic
 * Messages, OpenAI Chat Completions + Responses, Gemini generateContent).
 * An adapter recognises its paths, finds the client's gateway key, reads the
 * few request fields the edge routes on, builds the upstream URL and header
 * list with the account's credential, meters usage from the response, may
 * filter the bytes streamed to the client, and writes errors in its
 * dialect's format. Also the shared pieces the adapters are built from.
 *
 * Every slot is a pure function of its arguments (no I/O, no global state):
 * callable from any thread. */
#ifndef EDGE_PROVIDER_H
#define EDGE_PROVIDER_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "dialect.h"
#include "gw_buf.h"
#include "gw_err.h"
#include "gw_http.h"
#include "snapshot.h"

/* The operation a request path asks for. */
enum edge_op {
    EDGE_OP_NONE = 0,
    EDGE_OP_MESSAGES,                /* Anthropic POST .../v1/messages */
    EDGE_OP_COUNT_TOKENS,            /* Anthropic POST .../v1/messages/count_tokens */
    EDGE_OP_MODELS,                  /* Anthropic or OpenAI GET .../v1/models */
    EDGE_OP_CHAT_COMPLETIONS,        /* OpenAI POST .../v1/chat/completions */
    EDGE_OP_RESPONSES,               /* OpenAI POST .../v1/responses */
    EDGE_OP_GENERATE_CONTENT,        /* Gemini POST .../models/{m}:generateContent */
    EDGE_OP_STREAM_GENERATE_CONTENT, /* Gemini POST .../models/{m}:streamGenerateContent */
    EDGE_OP_COUNT_TOKENS_GEMINI,     /* Gemini POST .../models/{m}:countTokens */
    EDGE_OP_LIST_MODELS,             /* Gemini GET .../v1beta/models */
};

/* "messages", "count_tokens", ... for logs. */
const char *edge_op_name(enum edge_op op);

/* 1 for operations that produce a usage record (generation), 0 for
 * count_tokens and the model lists. */
int edge_op_billable(enum edge_op op);

/* 1 for the model lists, which the edge answers itself from the snapshot. */
int edge_op_local(enum edge_op op);

/* What a path matched. Views point into the request (borrowed). */
struct edge_match {
    enum edge_op op;
    const char *method;  /* the method the operation takes: "POST" or "GET" (static) */
    size_t api_off;      /* offset in hreq->path of the API part ("/v1/...",
                            "/v1beta/..."): what follows the account's base URL */
    struct gw_str model; /* Gemini: the model named by the path, else empty */
};

#define EDGE_MODEL_MAX 128
#define EDGE_SESSION_MAX 128

/* The request fields the pipeline routes and limits on. */
struct edge_request_info {
    char model[EDGE_MODEL_MAX];     /* NUL-terminated, never empty after a scan */
    int stream;                     /* the response will be an event stream */
    int64_t max_tokens;             /* -1 when absent */
    char session[EDGE_SESSION_MAX]; /* affinity key, "" when none */
    uint64_t est_input_tokens;      /* ceil(body_len / 4), for per-key TPM admission */
    int inject_usage;               /* OpenAI chat stream: the client did not ask for
                                       stream_options.include_usage; the adapter adds it
                                       upstream and strips the extra chunk */
};

/* Token counts of one request as reported by the provider, in the usage
 * record's terms: input excludes cache reads and writes, output includes
 * reasoning (reasoning_tokens is the part of output that was reasoning).
 * have_start: some usage report was seen; have_final: the response was
 * complete (final event or a metered body). */
struct edge_usage {
    uint64_t input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,
        cache_write_1h_tokens, reasoning_tokens;
    int have_start, have_final;
};

/* Per-request metering and stream-filter state. Embed it; edge_meter_init
 * before use, edge_meter_fini after. */
struct edge_meter {
    struct edge_usage usage;
    enum edge_op op;
    int strip_usage_chunk; /* OpenAI: drop the usage-only chunk from the client stream */
    /* Stream filter: raw bytes of the event being framed, and whether the
     * previous byte ended a line (and with CR). */
    struct gw_buf ev;
    int at_line_start, last_cr, end_cr, pass;
    size_t ev_max;           /* longest event held; longer ones pass unfiltered */
    uint64_t events_dropped; /* events the filter removed */
};

void edge_meter_init(struct edge_meter *m, enum edge_op op);
void edge_meter_fini(struct edge_meter *m);

struct edge_provider {
    const char *name; /* "anthropic", "openai", "gemini" */
    enum edge_dialect dialect;

    /* 1 when the request path (any prefix) names one of this dialect's
     * operations; fills *out. Also matches when the method is wrong (the
     * caller answers 405 with out->method). For the GET .../v1/models path
     * shared by Anthropic and OpenAI the auth headers decide. */
    int (*match)(const struct gw_http_req *hreq, struct edge_match *out);

    /* The gateway key the client presented (a view into the request, trimmed
     * of blanks); 0 when none. */
    int (*client_key)(const struct gw_http_req *hreq, struct gw_str *out);

    /* Validates the body (strict JSON) and fills *out (fully overwritten).
     * GW_EINVAL with a static reason in *why for a body the provider would
     * refuse. */
    gw_err (*scan_request)(const struct gw_http_req *hreq, const struct edge_match *m,
                           struct edge_request_info *out, const char **why);

    /* Appends the upstream URL to url: base_url (a trailing "/" and a
     * trailing copy of the API path's first segment such as "/v1" dropped)
     * + the API part of the path + the query (Gemini: without key=).
     * GW_EINVAL for an empty base URL, GW_EMSGSIZE over 4096 bytes. */
    gw_err (*upstream_url)(const char *base_url, const struct gw_http_req *hreq,
                           const struct edge_match *m, struct gw_buf *url);

    /* The upstream header list: the client's end-to-end headers (see
     * edge_provider_copy_headers) plus the account's credential in this
     * dialect's header. Returns an owned list (curl_slist_free_all). */
    struct curl_slist *(*upstream_headers)(const struct gw_http_req *hreq,
                                           const struct edge_account *a);

    /* Optional. The body to send upstream when it must differ from the
     * client's: appends it to out and returns 1; 0 when the client's body
     * goes as is (out untouched). */
    int (*rewrite_body)(const struct gw_http_req *hreq, const struct edge_match *m,
                        const struct edge_request_info *info, struct gw_buf *out);

    /* One SSE event of a streamed response (name and data borrowed; name
     * empty when absent). Never fails; unknown events are ignored. */
    void (*meter_event)(struct edge_meter *m, const char *event, size_t event_len, const char *data,
                        size_t data_len);

    /* A complete non-streamed (or JSON-array streamed) response body.
     * GW_EINVAL when it carries no usage (m untouched then). */
    gw_err (*meter_body)(struct edge_meter *m, const char *body, size_t len);

    /* Optional. The bytes the client gets for `len` upstream bytes: appends
     * them to out. Called only when m->strip_usage_chunk is set. */
    void (*filter_stream)(struct edge_meter *m, const char *data, size_t len, struct gw_buf *out);
    /* Optional. End of the stream: appends what the filter still holds. */
    void (*filter_flush)(struct edge_meter *m, struct gw_buf *out);

    /* Appends an error body in this dialect for HTTP status `status`. NULL
     * message: the gw_strerror text. */
    void (*error_body)(int status, gw_err err, const char *message, struct gw_buf *out);

    /* Appends the model list response for ids[0..n) (borrowed). */
    void (*models_body)(const char *const *ids, size_t n, struct gw_buf *out);

    /* Models listed for an account that names none. */
    const char *const *default_models;
    size_t n_default_models;
};

extern const struct edge_provider edge_provider_anthropic;
extern const struct edge_provider edge_provider_openai;
extern const struct edge_provider edge_provider_gemini;

/* The adapter of a dialect; NULL for an unknown one. */
const struct edge_provider *edge_provider_of(enum edge_dialect d);

/* Tries the adapters in the order Gemini, Anthropic, OpenAI (Gemini's
 * ":method" paths and Anthropic's auth headers take precedence over
 * OpenAI's GET /v1/models). Returns the adapter that matched with *out
 * filled, or NULL. */
const struct edge_provider *edge_provider_match(const struct gw_http_req *hreq,
                                                struct edge_match *out);

/* The dialect an unmatched request most likely speaks, for its error body:
 * Gemini for v1beta paths, ":method" paths, x-goog-api-key or a key=
 * parameter; Anthropic for x-api-key or anthropic-version; OpenAI for
 * chat/completions or responses paths or a Bearer key; else Anthropic.
 * hreq may be NULL (only the path is known). */
const struct edge_provider *edge_provider_guess(struct gw_str path, const struct gw_http_req *hreq);

/* ---- shared building blocks of the adapters ---- */

/* 1 when path ends with `suffix`; *pos gets the suffix's offset. */
int edge_provider_path_suffix(struct gw_str path, const char *suffix, size_t *pos);

/* s without leading and trailing blanks. */
struct gw_str edge_provider_trim(struct gw_str s);

/* The trimmed token of "Authorization: Bearer <token>"; 0 when absent. */
int edge_provider_bearer(const struct gw_http_req *hreq, struct gw_str *out);

/* Appends to list every client header except hop-by-hop ones (connection,
 * keep-alive, proxy-*, te, trailer, transfer-encoding, upgrade and those
 * named by Connection), host, content-length, accept-encoding (the upstream
 * answers identity, so the edge can meter), expect, and the client's
 * credentials (authorization, x-api-key, x-goog-api-key). Empty values are
 * kept. *saw_anthropic_version (may be NULL) is set when the client sent
 * anthropic-version. Returns the list (aborts on allocation failure). */
struct curl_slist *edge_provider_copy_headers(const struct gw_http_req *client,
                                              struct curl_slist *list, int *saw_anthropic_version);

/* Appends "<name>: <value>" (the value wiped from the scratch memory, as it
 * is usually a credential). */
struct curl_slist *edge_provider_add_header(struct curl_slist *list, const char *name,
                                            const char *value);

/* Appends base + api + ("?" query when query is not empty) to url (see the
 * upstream_url slot). */
gw_err edge_provider_join_url(const char *base, struct gw_str api, struct gw_str query,
                              struct gw_buf *url);

/* Session id from a value: copied when it fits EDGE_SESSION_MAX, else its
 * SHA-256 in hex. */
void edge_provider_set_session(char *dst, const char *s, size_t len);

/* Session from the stable prompt prefix: "p:" + the first 32 hex digits of
 * SHA-256 over the compact JSON of `a` and `b` (either may be NULL), e.g.
 * the system prompt and the first message. Nothing when both are NULL. */
struct cJSON;
void edge_provider_prefix_session(char *dst, const struct cJSON *a, const struct cJSON *b);

/* How long the provider asks the client to wait, from the response headers
 * at wall-clock now_ms (unix ms): retry-after in seconds or as an HTTP-date,
 * else the latest anthropic-ratelimit-*-reset (RFC 3339) that lies in the
 * future, else x-ratelimit-reset-requests / -tokens (OpenAI durations such
 * as "1s", "6m0s", "250ms"). -1 when none says anything. */
int64_t edge_provider_retry_after_ms(const struct gw_http_header *headers, size_t n,
                                     uint64_t now_ms);

/* ceil(len / 4). */
uint64_t edge_provider_estimate_tokens(size_t len);

/* Reads a non-negative integer field of obj into *out; 1 when present and
 * valid. */
int edge_provider_get_count(const struct cJSON *obj, const char *name, uint64_t *out);

#endif
