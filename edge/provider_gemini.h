/* SPDX-License-Identifier: Apache-2.0 */
/* The Gemini dialect (adapter edge_provider_gemini in provider.h):
 * generateContent, streamGenerateContent, countTokens and the model list.
 * Pure functions: no I/O, any thread.
 *
 * Paths (any prefix): POST .../v1beta/models/{model}:generateContent,
 * :streamGenerateContent, :countTokens, and the same under .../v1/models/
 * (the @google/genai SDK); the ":method" suffix is what tells them from
 * OpenAI's GET /v1/models. GET .../v1beta/models, and GET .../v1/models
 * when the request carries x-goog-api-key or key=, list models. The model
 * comes from the path. Client key: x-goog-api-key, else the key= query
 * parameter, which is removed before the request goes upstream (alt=sse and
 * every other parameter stay, in order). Upstream credential:
 * x-goog-api-key. Session: the prompt prefix (systemInstruction + first
 * content).
 *
 * Usage from usageMetadata {promptTokenCount, cachedContentTokenCount,
 * candidatesTokenCount, thoughtsTokenCount, toolUsePromptTokenCount}:
 * input = prompt + toolUsePrompt - cached, cache_read = cached, output =
 * candidates + thoughts (Gemini reports thoughts separately; pricing
 * expects output to include them), reasoning = thoughts. Streams with
 * alt=sse carry cumulative usage in each event: the last one wins; without
 * alt=sse the body is one JSON array of responses, metered from the last
 * element with usageMetadata.
 *
 * Errors: {"error":{"code":N,"message":M,"status":S}} with S from the HTTP
 * status (400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
 * 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 499 CANCELLED, 500 INTERNAL, 501
 * UNIMPLEMENTED, 502/503 UNAVAILABLE, 504 DEADLINE_EXCEEDED).
 * Default model list: gemini-2.5-pro, gemini-2.5-flash,
 * gemini-2.5-flash-lite. */
#ifndef EDGE_PROVIDER_GEMINI_H
#define EDGE_PROVIDER_GEMINI_H

#include <stddef.h>

#include "gw_buf.h"
#include "gw_err.h"
#include "provider.h"

/* Appends to out the query string q (borrowed, without '?') minus every
 * parameter named "key"; the others keep their bytes and order. */
void edge_gemini_strip_key(struct gw_str q, struct gw_buf *out);

/* The raw value of the first key= query parameter (not percent-decoded;
 * API keys need no escaping); 0 when absent or empty. */
int edge_gemini_query_key(struct gw_str q, struct gw_str *out);

/* The Google RPC status name for an HTTP status ("NOT_FOUND"). */
const char *edge_gemini_status_name(int status);

/* Error body in Gemini's format. */
void edge_gemini_error_body(int status, gw_err err, const char *message, struct gw_buf *out);

#endif
