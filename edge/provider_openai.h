/* SPDX-License-Identifier: Apache-2.0 */
/* The OpenAI dialect (adapter edge_provider_openai in provider.h): Chat
 * Completions and the Responses API (Codex). Pure functions: no I/O, any
 * thread.
 *
 * Paths (any prefix): POST .../v1/chat/completions, POST .../v1/responses,
 * GET .../v1/models (when no Anthropic or Gemini auth header claims it).
 * Client key: "Authorization: Bearer". Upstream credential: "Authorization:
 * Bearer <credential>". Session: the session_id header (Codex), else the
 * body's prompt_cache_key, else the prompt prefix (chat: the first two
 * messages; responses: instructions + the first input item).
 *
 * Streaming chat without stream_options.include_usage: the upstream body
 * gets it (the one rewrite of a client body, see
 * edge_openai_inject_include_usage) and the extra usage-only chunk is
 * removed from what the client receives; "data: [DONE]" stays.
 *
 * Usage: chat "usage" {prompt_tokens (includes cached),
 * prompt_tokens_details.cached_tokens, completion_tokens (includes
 * reasoning), completion_tokens_details.reasoning_tokens}; responses
 * "usage" {input_tokens, input_tokens_details.cached_tokens, output_tokens,
 * output_tokens_details.reasoning_tokens}, streamed in response.completed
 * (or response.incomplete / response.failed). input = prompt - cached,
 * cache_read = cached, output = completion, reasoning = reasoning.
 *
 * Errors: {"error":{"message":M,"type":T,"param":null,"code":C}}.
 * Default model list: gpt-5, gpt-5-mini, gpt-5-codex, gpt-4.1, gpt-4o,
 * gpt-4o-mini. */
#ifndef EDGE_PROVIDER_OPENAI_H
#define EDGE_PROVIDER_OPENAI_H

#include <stddef.h>

#include "gw_buf.h"
#include "gw_err.h"
#include "gw_http.h"
#include "provider.h"

/* Scans a chat (op EDGE_OP_CHAT_COMPLETIONS) or responses body. Chat needs
 * a non-empty string "model" (< 128 bytes) and a "messages" array; both
 * take a boolean "stream", an integer max_tokens / max_completion_tokens /
 * max_output_tokens. Chat streams set out->inject_usage unless
 * stream_options.include_usage is true (or stream_options is neither an
 * object nor null: the provider refuses that anyway). hreq may be NULL
 * (no header session). GW_EINVAL with a static reason in *why. */
gw_err edge_openai_scan_request(enum edge_op op, const char *body, size_t len,
                                const struct gw_http_req *hreq, struct edge_request_info *out,
                                const char **why) GW_WARN_UNUSED;

/* Writes to out a copy of the JSON object `body` in which
 * stream_options.include_usage is true: the member
 * "stream_options":{"include_usage":true} is inserted first when absent, an
 * existing stream_options object gets "include_usage":true inserted first
 * or its include_usage value replaced by true, a null stream_options is
 * replaced by the object. Every other byte is kept. Returns 1 when out was
 * written, 0 when the body is not a well-formed object, stream_options has
 * another type, or either key appears more than once (out untouched). */
int edge_openai_inject_include_usage(const char *body, size_t len, struct gw_buf *out);

/* The stream filter of edge_provider_openai: forwards every SSE event
 * byte for byte except a chat chunk whose data is an object with an empty
 * "choices" array and a "usage" object. Holds an incomplete event until its
 * end (events over m->ev_max pass through unfiltered). */
void edge_openai_filter_stream(struct edge_meter *m, const char *data, size_t len,
                               struct gw_buf *out);
void edge_openai_filter_flush(struct edge_meter *m, struct gw_buf *out);

/* Error body in OpenAI's format; type/code from err (401: invalid_api_key,
 * 429: rate_limit_exceeded, ...). */
void edge_openai_error_body(int status, gw_err err, const char *message, struct gw_buf *out);

#endif
