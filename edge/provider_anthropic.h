/* SPDX-License-Identifier: Apache-2.0 */
/* The Anthropic Messages dialect (adapter edge_provider_anthropic in
 * provider.h): reads the few request fields the edge routes on, builds the
 * upstream header list with the account credential in place of the
 * client's, meters usage from the SSE events or the JSON body, and writes
 * Anthropic-style error bodies. Pure functions: no I/O, any thread.
 *
 * Adapter paths (any prefix): POST .../v1/messages, POST
 * .../v1/messages/count_tokens, GET .../v1/models when the request carries
 * x-api-key or anthropic-version. Client key: x-api-key, else
 * "Authorization: Bearer". Upstream credential: x-api-key, or
 * "Authorization: Bearer" for claude_oauth accounts. Session: metadata.
 * user_id, else x-claude-code-session-id, else the prompt prefix (system +
 * first message). Default model list: claude-opus-4-1-20250805,
 * claude-sonnet-4-5-20250929, claude-sonnet-4-20250514,
 * claude-3-5-haiku-20241022. */
#ifndef EDGE_PROVIDER_ANTHROPIC_H
#define EDGE_PROVIDER_ANTHROPIC_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_buf.h"
#include "gw_err.h"
#include "gw_http.h"
#include "provider.h"

/* Thinking tokens are part of output_tokens for Anthropic; reasoning_tokens
 * stays 0 (the API does not report them separately). have_start: a usage
 * report was seen (message_start or a non-stream body); have_final: the
 * stream completed (message_stop) or the non-stream body was metered. */

struct edge_anthropic_request {
    char model[EDGE_MODEL_MAX];     /* "model", NUL-terminated */
    int stream;                     /* "stream": true */
    int64_t max_tokens;             /* "max_tokens", -1 when absent (count_tokens) */
    char session[EDGE_SESSION_MAX]; /* from metadata.user_id (see below), "" when none */
};

/* Validates the body as JSON (strict, gw_json_parse) and reads top-level
 * fields into *out (fully overwritten). GW_EINVAL with a message in *why
 * (static string; `why` may be NULL) for malformed JSON, a non-object,
 * missing/empty/non-string or over-long (>= 128 bytes) "model", missing or
 * non-array "messages", non-boolean "stream" or non-integer "max_tokens".
 * The session comes from metadata.user_id: Claude Code's
 * "user_<h>_account_<a>_session_<uuid>" gives the part after "_session_",
 * a JSON-object user_id gives its "session_id", any other value is taken as
 * is; values that do not fit are replaced by their SHA-256 in hex. Borrows
 * body; the same rules apply to /v1/messages/count_tokens. */
gw_err edge_anthropic_scan_request(const char *body, size_t len, struct edge_anthropic_request *out,
                                   const char **why) GW_WARN_UNUSED;

/* Fills out->session from the client's x-claude-code-session-id header when
 * the body gave none (same length rule as above). Borrows both. */
void edge_anthropic_session_from_headers(struct edge_anthropic_request *out,
                                         const struct gw_http_req *client);

/* Upstream headers: every client header except hop-by-hop ones (connection,
 * keep-alive, proxy-*, te, trailer, transfer-encoding, upgrade), host,
 * content-length, accept-encoding (identity, so we can meter), expect, and
 * the client's credentials (authorization, x-api-key, x-goog-api-key); then
 * "x-api-key: <credential>" or, when `bearer` is set,
 * "authorization: Bearer <credential>". content-type is kept;
 * "anthropic-version: 2023-06-01" is added when the client sent none. A
 * NULL credential adds no credential header. Borrows the inputs; returns an
 * owned curl_slist (curl_slist_free_all, or hand it to edge_upstream_start). */
struct curl_slist *edge_anthropic_upstream_headers(const struct gw_http_req *client,
                                                   const char *credential, int bearer);

/* Usage metering from the stream: feed every SSE event (name and data JSON,
 * both borrowed). message_start -> message.usage (input_tokens,
 * cache_read_input_tokens, cache_creation_input_tokens split by
 * cache_creation.ephemeral_5m_input_tokens / ephemeral_1h_input_tokens; all
 * cache writes count as 5m when the split object is absent), output_tokens
 * so far; message_delta -> usage.output_tokens (cumulative: the max is kept)
 * and any input/cache fields it carries; message_stop -> have_final. When
 * the event name is empty the data's "type" is used. Unknown events and bad
 * JSON are ignored; never fails. */
void edge_anthropic_meter_event(struct edge_usage *u, const char *event, size_t event_len,
                                const char *data, size_t data_len);

/* Non-streaming: meters the response JSON body's "usage" object (same fields
 * as message_start) and sets have_start and have_final. GW_EINVAL if the
 * body is not JSON or has no usage object (u untouched then). */
gw_err edge_anthropic_meter_body(struct edge_usage *u, const char *body, size_t len) GW_WARN_UNUSED;

/* Appends {"type":"error","error":{"type":T,"message":M}} to out, with T
 * from gw_err_anthropic_type(err) and M JSON-escaped (NULL message: the
 * gw_strerror text). */
void edge_anthropic_error_body(gw_err err, const char *message, struct gw_buf *out);

#endif
