/* SPDX-License-Identifier: Apache-2.0 */
/* JSON helpers over cJSON 1.7.15. Parsing checks the end position itself
 * because cJSON's require_null_terminated wants a NUL inside the length;
 * writing walks the tree itself so integers are printed exactly (cJSON would
 * print 1e+15) and strings share one escaper. */
#include "gw_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Input larger than this is refused before cJSON sees it; callers bound
 * bodies far lower, this only protects against a forgotten check. */
#define JSON_MAX_INPUT ((size_t)64 << 20)
/* 2^53 - 1: the largest integer n such that n and n+1 are both doubles, so
 * every accepted value reads back as exactly the integer written. */
#define JSON_MAX_SAFE_INT 9007199254740991LL

cJSON *
gw_json_parse(const char *data, size_t len, const char **why)
{
    const char *end = NULL;
    const char *stop;
    cJSON *root;

    if (why)
        *why = NULL;
    if (data == NULL || len == 0) {
        if (why)
            *why = "empty document";
        return NULL;
    }
    if (len > JSON_MAX_INPUT) {
        if (why)
            *why = "document too large";
        return NULL;
    }
    root = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (root == NULL) {
        if (why)
            *why = "syntax error";
        return NULL;
    }
    stop = data + len;
    if (end == NULL || end < data || end > stop)
        goto trailing;
    while (end < stop && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (end != stop)
        goto trailing;
    return root;
trailing:
    cJSON_Delete(root);
    if (why)
        *why = "unexpected data after the JSON value";
    return NULL;
}

/* Looks a field up; JSON null counts as absent (clients send null for
 * "not given"). */
static gw_err
json_field(const cJSON *obj, const char *name, const cJSON **item)
{
    const cJSON *it;

    if (!cJSON_IsObject(obj) || name == NULL)
        return GW_EINVAL;
    it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (it == NULL || cJSON_IsNull(it))
        return GW_ENOTFOUND;
    *item = it;
    return GW_OK;
}

gw_err
gw_json_get_str(const cJSON *obj, const char *name, const char **out)
{
    const cJSON *it = NULL;
    gw_err rv = json_field(obj, name, &it);

    if (rv != GW_OK)
        return rv;
    if (!cJSON_IsString(it) || it->valuestring == NULL)
        return GW_EINVAL;
    *out = it->valuestring;
    return GW_OK;
}

static int
json_double_is_safe_int(double d)
{
    /* Range first: the cast is only defined for values that fit. */
    return isfinite(d) && d >= -(double)JSON_MAX_SAFE_INT && d <= (double)JSON_MAX_SAFE_INT &&
           (double)(long long)d == d;
}

gw_err
gw_json_get_int(const cJSON *obj, const char *name, int64_t *out)
{
    const cJSON *it = NULL;
    gw_err rv = json_field(obj, name, &it);

    if (rv != GW_OK)
        return rv;
    if (!cJSON_IsNumber(it) || !json_double_is_safe_int(it->valuedouble))
        return GW_EINVAL;
    *out = (int64_t)it->valuedouble;
    return GW_OK;
}

gw_err
gw_json_get_bool(const cJSON *obj, const char *name, int *out)
{
    const cJSON *it = NULL;
    gw_err rv = json_field(obj, name, &it);

    if (rv != GW_OK)
        return rv;
    if (!cJSON_IsBool(it))
        return GW_EINVAL;
    *out = cJSON_IsTrue(it) ? 1 : 0;
    return GW_OK;
}

gw_err
gw_json_add_int(cJSON *obj, const char *name, int64_t v)
{
    if (!cJSON_IsObject(obj) || name == NULL)
        return GW_EINVAL;
    if (v > JSON_MAX_SAFE_INT || v < -JSON_MAX_SAFE_INT)
        return GW_EINVAL;
    if (cJSON_AddNumberToObject(obj, name, (double)v) == NULL)
        return GW_ENOMEM;
    return GW_OK;
}

void
gw_json_append_string(struct gw_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    gw_buf_reserve(out, len + 2);
    gw_buf_append(out, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[6];

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        /* Flush the run of bytes that need no escaping (UTF-8 included). */
        gw_buf_append(out, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            u[0] = '\\';
            u[1] = 'u';
            u[2] = '0';
            u[3] = '0';
            u[4] = hex[c >> 4];
            u[5] = hex[c & 15];
            gw_buf_append(out, u, sizeof(u));
            continue;
        }
        gw_buf_append(out, esc, 2);
    }
    gw_buf_append(out, s + run, len - run);
    gw_buf_append(out, "\"", 1);
}

static void
json_append_number(struct gw_buf *out, double d)
{
    char tmp[32];

    if (!isfinite(d)) {
        /* JSON has no NaN or infinity; cJSON prints null too. */
        gw_buf_append(out, "null", 4);
        return;
    }
    if (json_double_is_safe_int(d)) {
        gw_buf_appendf(out, "%lld", (long long)d);
        return;
    }
    /* Shortest of 15 or 17 significant digits that reads back exactly. */
    snprintf(tmp, sizeof(tmp), "%.15g", d);
    if (strtod(tmp, NULL) != d)
        snprintf(tmp, sizeof(tmp), "%.17g", d);
    gw_buf_append_str(out, tmp);
}

static void
json_append_value(struct gw_buf *out, const cJSON *v)
{
    const cJSON *child;

    if (v == NULL) {
        gw_buf_append(out, "null", 4);
        return;
    }
    switch (v->type & 0xff) {
    case cJSON_False:
        gw_buf_append(out, "false", 5);
        break;
    case cJSON_True:
        gw_buf_append(out, "true", 4);
        break;
    case cJSON_NULL:
    case cJSON_Invalid:
        gw_buf_append(out, "null", 4);
        break;
    case cJSON_Number:
        json_append_number(out, v->valuedouble);
        break;
    case cJSON_String:
        if (v->valuestring)
            gw_json_append_string(out, v->valuestring, strlen(v->valuestring));
        else
            gw_buf_append(out, "null", 4);
        break;
    case cJSON_Raw:
        if (v->valuestring)
            gw_buf_append_str(out, v->valuestring);
        else
            gw_buf_append(out, "null", 4);
        break;
    case cJSON_Array:
        gw_buf_append(out, "[", 1);
        for (child = v->child; child; child = child->next) {
            json_append_value(out, child);
            if (child->next)
                gw_buf_append(out, ",", 1);
        }
        gw_buf_append(out, "]", 1);
        break;
    case cJSON_Object:
        gw_buf_append(out, "{", 1);
        for (child = v->child; child; child = child->next) {
            const char *k = child->string ? child->string : "";
            gw_json_append_string(out, k, strlen(k));
            gw_buf_append(out, ":", 1);
            json_append_value(out, child);
            if (child->next)
                gw_buf_append(out, ",", 1);
        }
        gw_buf_append(out, "}", 1);
        break;
    default:
        gw_buf_append(out, "null", 4);
        break;
    }
}

void
gw_json_append(struct gw_buf *out, const cJSON *value)
{
    json_append_value(out, value);
}
