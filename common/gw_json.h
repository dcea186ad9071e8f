/* SPDX-License-Identifier: Apache-2.0 */
/* JSON helpers over cJSON: strict parsing (no trailing garbage, bounded
 * size), typed field access with clear errors, integer-safe numbers, and
 * writers that escape correctly. Money is never a JSON double inside the
 * program: integers only. */
#ifndef GW_JSON_H
#define GW_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_buf.h"
#include "gw_err.h"

/* Parses exactly `len` bytes as one JSON value (trailing whitespace allowed,
 * anything else rejected). Returns an owned tree (free with cJSON_Delete) or
 * NULL with a short reason in *why (static string). */
cJSON *gw_json_parse(const char *data, size_t len, const char **why);

/* Field getters for objects. Return GW_OK and set *out; GW_ENOTFOUND when
 * the field is absent (out untouched); GW_EINVAL when it has the wrong type
 * or, for integers, is not an integer within int64 range. A JSON null counts
 * as absent; integers are accepted only within +-(2^53 - 1), where a double
 * is exact; *out of get_str borrows from the tree. */
gw_err gw_json_get_str(const cJSON *obj, const char *name, const char **out) GW_WARN_UNUSED;
gw_err gw_json_get_int(const cJSON *obj, const char *name, int64_t *out) GW_WARN_UNUSED;
gw_err gw_json_get_bool(const cJSON *obj, const char *name, int *out) GW_WARN_UNUSED;

/* Adds an integer exactly (cJSON numbers are doubles: values beyond 2^53
 * would lose precision, so those are refused with GW_EINVAL). */
gw_err gw_json_add_int(cJSON *obj, const char *name, int64_t v) GW_WARN_UNUSED;

/* Appends `s` (len bytes) as a JSON string literal with quotes and escapes. */
void gw_json_append_string(struct gw_buf *out, const char *s, size_t len);

/* Serialises compactly and appends to out. */
void gw_json_append(struct gw_buf *out, const cJSON *value);

#endif
