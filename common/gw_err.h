/* SPDX-License-Identifier: Apache-2.0 */
/* The one error enum of AiCarpool. GW_OK is 0. A single X-macro list gives
 * each error its text, the HTTP status it maps to and the error type names
 * of the client dialects, so the tables can never drift apart. */
#ifndef GW_ERR_H
#define GW_ERR_H

#define GW_WARN_UNUSED __attribute__((warn_unused_result))

/*  XX(name, text, http status, anthropic error type, openai error type) */
#define GW_ERR_MAP(XX)                                                                   \
    XX(OK, "success", 200, "ok", "ok")                                                   \
    XX(ENOMEM, "out of memory", 500, "api_error", "server_error")                        \
    XX(EINVAL, "invalid argument", 400, "invalid_request_error", "invalid_request_error") \
    XX(ETIMEDOUT, "timed out", 504, "timeout_error", "timeout")                          \
    XX(ECLOSED, "connection closed", 499, "api_error", "server_error")                   \
    XX(EPROTO, "protocol error", 400, "invalid_request_error", "invalid_request_error")  \
    XX(EMSGSIZE, "message too large", 413, "request_too_large", "invalid_request_error") \
    XX(EUPSTREAM, "upstream failure", 502, "api_error", "server_error")                  \
    XX(EAUTH, "authentication failed", 401, "authentication_error", "invalid_api_key")   \
    XX(EPERM, "permission denied", 403, "permission_error", "permission_denied")         \
    XX(ENOTFOUND, "not found", 404, "not_found_error", "not_found")                      \
    XX(EEXIST, "already exists", 409, "invalid_request_error", "conflict")               \
    XX(EQUOTA, "rate or budget limit reached", 429, "rate_limit_error", "rate_limit_exceeded") \
    XX(ENOACCOUNT, "no usable upstream account", 503, "overloaded_error", "server_error") \
    XX(ESTORE, "storage error", 500, "api_error", "server_error")                        \
    XX(EIO, "input/output error", 500, "api_error", "server_error")                      \
    XX(ENOTSUP, "not supported", 501, "not_found_error", "not_implemented")              \
    XX(EINTERNAL, "internal error", 500, "api_error", "server_error")

typedef enum gw_err {
#define GW_ERR_ENUM(name, text, status, atype, otype) GW_##name,
    GW_ERR_MAP(GW_ERR_ENUM)
#undef GW_ERR_ENUM
        GW_ERR_COUNT
} gw_err;

/* Human-readable text; never NULL, also for out-of-range values. */
const char *gw_strerror(gw_err err);
/* Upper-case name without prefix ("ETIMEDOUT"), for logs and the wire. */
const char *gw_err_name(gw_err err);
/* HTTP status a client should receive for this error. */
int gw_err_http_status(gw_err err);
/* Error `type` in Anthropic's error body. */
const char *gw_err_anthropic_type(gw_err err);
/* Error `type` in OpenAI's error body. */
const char *gw_err_openai_type(gw_err err);

/* Conversions at library boundaries. The raw code belongs in the log line. */
gw_err gw_err_from_uv(int uv_status);
gw_err gw_err_from_nng(int nng_rv);
gw_err gw_err_from_errno(int errnum);

#endif
