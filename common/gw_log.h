/* SPDX-License-Identifier: Apache-2.0 */
/* Diagnostic logging: levels checked before formatting, a grep-able message
 * id on every line ("EDGE-UPSTREAM"), an optional request id, and the one
 * helper that masks secrets. Thread-safe: one write(2) per line. */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stddef.h>

enum gw_log_level {
    GW_LOG_ERROR = 0,
    GW_LOG_WARN = 1,
    GW_LOG_INFO = 2,
    GW_LOG_DEBUG = 3,
};

extern enum gw_log_level gw_log_threshold;

/* Sets the threshold from "error", "warn", "info" or "debug"; GW_EINVAL-like
 * failure is reported as -1 and the threshold is left alone. */
int gw_log_set_level(const char *name);
/* Names the process in every line ("hub", "edge"); borrows a static string. */
void gw_log_set_component(const char *component);

void gw_log_write(enum gw_log_level level, const char *msgid, const char *reqid, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

#define gw_log(level, msgid, ...)                                                             \
    do {                                                                                     \
        if ((level) <= gw_log_threshold)                                                     \
            gw_log_write((level), (msgid), NULL, __VA_ARGS__);                               \
    } while (0)

#define gw_log_req(level, msgid, reqid, ...)                                                 \
    do {                                                                                     \
        if ((level) <= gw_log_threshold)                                                     \
            gw_log_write((level), (msgid), (reqid), __VA_ARGS__);                            \
    } while (0)

/* Masks a secret for display: keeps at most the first 8 characters of a
 * string that is longer than 12 and replaces the rest with "...". Writes a
 * NUL-terminated result of at most out_size bytes. The only masking helper. */
void gw_log_mask(const char *secret, char *out, size_t out_size);

#endif
