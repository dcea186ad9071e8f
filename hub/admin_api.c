/* SPDX-License-Identifier: Apache-2.0 */
/* Admin REST API. A request is routed and validated on the loop thread,
 * then one job carries it through uv_queue_work: `run` does the blocking
 * part (store calls, password hashing) on the threadpool, `finish` answers
 * on the loop. Nothing on the loop thread blocks. Provider credentials are
 * sealed before the store sees them and never appear in a response or log. */
#include "admin_api.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "gw_crypto.h"
#include "gw_http.h"
#include "gw_json.h"
#include "gw_log.h"
#include "hub_config.h"
#include "hub_link.h"

#define API_NAME_MAX 127    /* group, account and key names (store: char[128]) */
#define API_URL_MAX 511     /* store: char[512] */
#define API_SECRET_MAX 8192 /* provider credential */
#define API_USER_MAX 63
#define API_PASSWORD_MAX 1024
#define API_USAGE_LIMIT_DEFAULT 100
#define API_USAGE_LIMIT_MAX 1000
#define API_MAX_CONCURRENCY 100000
#define API_ID_MAX ((INT64_C(1) << 53) - 1)
#define API_EXPIRES_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

struct hub_admin_api {
    uv_loop_t *loop;
    struct hub_store *store;
    struct gw_http_server *http;
    struct hub_auth *auth;
    uint8_t master[HUB_MASTER_KEY_LEN];
    /* A real scrypt hash of a random password: a login for an unknown user
     * is checked against it so it costs as much as one for a known user. */
    pthread_mutex_t dummy_mu;
    char *dummy_hash;
    void (*closed_cb)(void *arg);
    void *closed_arg;
    struct hub_link *link; /* told about config changes; may be NULL */
};

struct api_job;
typedef void (*api_job_fn)(struct api_job *job);

struct api_job {
    uv_work_t work;
    struct hub_admin_api *api;
    struct gw_http_req *req;
    api_job_fn run;    /* threadpool: blocking work only, no loop state */
    api_job_fn finish; /* loop: responds exactly once */
    api_job_fn fini;   /* frees op-specific fields; may be NULL */
    gw_err rv;
    char admin[API_USER_MAX + 1]; /* caller, for logs */
};

/* ---- responses ---------------------------------------------------------- */

static void
api_respond_buf(struct gw_http_req *req, int status, struct gw_buf *body)
{
    gw_http_respond(req, status, "application/json", body->data != NULL ? body->data : "",
                    body->len);
}

static void
api_error(struct gw_http_req *req, int status, const char *code, const char *message)
{
    struct gw_buf b = GW_BUF_INIT;

    gw_buf_append_str(&b, "{\"error\":{\"code\":");
    gw_json_append_string(&b, code, strlen(code));
    gw_buf_append_str(&b, ",\"message\":");
    gw_json_append_string(&b, message, strlen(message));
    gw_buf_append_str(&b, "}}");
    api_respond_buf(req, status, &b);
    gw_buf_fini(&b);
}

static void
api_bad_request(struct gw_http_req *req, const char *message)
{
    api_error(req, 400, "invalid_request", message);
}

static void
api_internal(struct gw_http_req *req, const char *what, gw_err rv)
{
    gw_log_req(GW_LOG_ERROR, "HUB-ADMIN-STORE", req->id_str, "%s failed: %s", what,
               gw_strerror(rv));
    api_error(req, 500, "internal", "internal error");
}

/* Takes obj: serialises it, responds and deletes it. */
static void
api_respond_json(struct gw_http_req *req, int status, cJSON *obj)
{
    struct gw_buf b = GW_BUF_INIT;

    if (obj == NULL) {
        api_error(req, 500, "internal", "internal error");
        return;
    }
    gw_json_append(&b, obj);
    cJSON_Delete(obj);
    api_respond_buf(req, status, &b);
    gw_buf_fini(&b);
}

/* Adds an integer; cJSON_Delete(obj) and NULL when it cannot be exact. */
static cJSON *
api_add_int(cJSON *obj, const char *name, int64_t v)
{
    if (obj == NULL)
        return NULL;
    if (gw_json_add_int(obj, name, v) != GW_OK) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

static cJSON *
api_add_str(cJSON *obj, const char *name, const char *v)
{
    if (obj == NULL)
        return NULL;
    if (cJSON_AddStringToObject(obj, name, v) == NULL) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

static cJSON *
api_add_bool(cJSON *obj, const char *name, int v)
{
    if (obj == NULL)
        return NULL;
    if (cJSON_AddBoolToObject(obj, name, v ? 1 : 0) == NULL) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

/* ---- jobs --------------------------------------------------------------- */

static void
api_work_cb(uv_work_t *w)
{
    struct api_job *job = w->data;

    job->run(job);
}

static void
api_after_work_cb(uv_work_t *w, int status)
{
    struct api_job *job = w->data;

    if (status != 0) {
        api_error(job->req, 503, "unavailable", "the hub is shutting down");
    } else {
        /* A successful change: wake the link's publisher so edges get the
         * Deltas now (it compares config versions, so extra wake-ups are
         * harmless). */
        if (job->rv == GW_OK && strcmp(job->req->method, "GET") != 0)
            hub_link_notify(job->api->link);
        job->finish(job);
    }
    /* The response was the last use of the API: the server may free the API
     * right after its last request finished, so only job memory is left. */
    if (job->fini != NULL)
        job->fini(job);
    free(job);
}

/* Allocates a zeroed job of `size` bytes (a struct starting with struct
 * api_job) for req. */
static void *
api_job_new(struct hub_admin_api *api, struct gw_http_req *req, const char *admin, size_t size,
            api_job_fn run, api_job_fn finish, api_job_fn fini)
{
    struct api_job *job = gw_xcalloc(1, size);

    snprintf(job->admin, sizeof(job->admin), "%s", admin != NULL ? admin : "");
    job->api = api;
    job->req = req;
    job->run = run;
    job->finish = finish;
    job->fini = fini;
    job->work.data = job;
    return job;
}

static void
api_job_queue(struct api_job *job)
{
    int uv_rv = uv_queue_work(job->api->loop, &job->work, api_work_cb, api_after_work_cb);

    if (uv_rv != 0) {
        gw_log_req(GW_LOG_ERROR, "HUB-ADMIN-QUEUE", job->req->id_str, "uv_queue_work: %s",
                   uv_strerror(uv_rv));
        api_error(job->req, 500, "internal", "internal error");
        if (job->fini != NULL)
            job->fini(job);
        free(job);
    }
}

/* ---- input -------------------------------------------------------------- */

/* Parses the body as one JSON object; on failure responds 400 and returns
 * NULL. */
static cJSON *
api_body_object(struct gw_http_req *req)
{
    const char *why = NULL;
    cJSON *obj;
    char msg[128];

    if (req->body.len == 0) {
        api_bad_request(req, "request body must be a JSON object");
        return NULL;
    }
    obj = gw_json_parse(req->body.data, req->body.len, &why);
    if (obj == NULL) {
        snprintf(msg, sizeof(msg), "request body is not valid JSON: %s",
                 why != NULL ? why : "parse error");
        api_bad_request(req, msg);
        return NULL;
    }
    if (!cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        api_bad_request(req, "request body must be a JSON object");
        return NULL;
    }
    return obj;
}

static int
api_has_control(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    }
    return 0;
}

/* A required string field of 1..max bytes without control characters.
 * Writes the reason naming the field to msg on failure. */
static gw_err
api_field_str(const cJSON *obj, const char *field, size_t max, const char **out, char *msg,
              size_t msg_size)
{
    const char *v = NULL;
    gw_err rv = gw_json_get_str(obj, field, &v);

    if (rv == GW_ENOTFOUND || (rv == GW_OK && v[0] == '\0')) {
        snprintf(msg, msg_size, "%s is required", field);
        return GW_EINVAL;
    }
    if (rv != GW_OK) {
        snprintf(msg, msg_size, "%s must be a string", field);
        return GW_EINVAL;
    }
    if (strlen(v) > max) {
        snprintf(msg, msg_size, "%s must be at most %zu bytes", field, max);
        return GW_EINVAL;
    }
    if (api_has_control(v)) {
        snprintf(msg, msg_size, "%s must not contain control characters", field);
        return GW_EINVAL;
    }
    *out = v;
    return GW_OK;
}

/* An integer field within [min, max]; `def` when absent and not required. */
static gw_err
api_field_int(const cJSON *obj, const char *field, int required, int64_t def, int64_t min,
              int64_t max, int64_t *out, char *msg, size_t msg_size)
{
    int64_t v = def;
    gw_err rv = gw_json_get_int(obj, field, &v);

    if (rv == GW_ENOTFOUND && !required) {
        *out = def;
        return GW_OK;
    }
    if (rv == GW_ENOTFOUND) {
        snprintf(msg, msg_size, "%s is required", field);
        return GW_EINVAL;
    }
    if (rv != GW_OK || v < min || v > max) {
        snprintf(msg, msg_size, "%s must be an integer from %" PRId64 " to %" PRId64, field, min,
                 max);
        return GW_EINVAL;
    }
    *out = v;
    return GW_OK;
}

/* Parses a decimal id of 1..2^53-1 from s[0..len). */
static gw_err
api_parse_id(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 16 || s[0] == '0')
        return GW_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return GW_EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > (UINT64_C(1) << 53) - 1)
        return GW_EINVAL;
    *out = v;
    return GW_OK;
}

static int
api_valid_http_url(const char *url)
{
    const char *host;

    if (strncmp(url, "http://", 7) == 0)
        host = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        host = url + 8;
    else
        return 0;
    if (host[0] == '\0' || host[0] == '/' || host[0] == ':' || host[0] == '?' || host[0] == '#')
        return 0;
    for (const char *p = url; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return 0;
    }
    return 1;
}

/* Finds name=value in a query string; value view into it. 1 when found. */
static int
api_query_param(struct gw_str query, const char *name, struct gw_str *value)
{
    size_t nlen = strlen(name);
    const char *p = query.p;
    const char *end = query.p + query.len;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        if ((size_t)(stop - p) >= nlen + 1 && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            value->p = p + nlen + 1;
            value->len = (size_t)(stop - p) - nlen - 1;
            return 1;
        }
        p = stop + 1;
    }
    return 0;
}

/* Unsigned decimal of at most 15 digits within [min, max]. */
static gw_err
api_query_uint(struct gw_str v, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t n = 0;

    if (v.len == 0 || v.len > 15)
        return GW_EINVAL;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return GW_EINVAL;
        n = n * 10 + (uint64_t)(v.p[i] - '0');
    }
    if (n < min || n > max)
        return GW_EINVAL;
    *out = n;
    return GW_OK;
}

/* An owned list of model names from a request. */
struct api_models {
    char **v;
    size_t n;
    int set; /* the field was given */
};

static void
api_models_fini(struct api_models *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i]);
    free(m->v);
    memset(m, 0, sizeof(*m));
}

/* An optional array of 0..GW_WIRE_MODELS_MAX model names, each 1..
 * GW_WIRE_MODEL_LEN_MAX bytes without control characters. Absent (or null)
 * leaves out->set 0. */
static gw_err
api_field_models(const cJSON *obj, const char *field, struct api_models *out, char *msg,
                 size_t msg_size)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, field);
    const cJSON *it;
    size_t n = 0;

    memset(out, 0, sizeof(*out));
    if (arr == NULL || cJSON_IsNull(arr))
        return GW_OK;
    if (!cJSON_IsArray(arr)) {
        snprintf(msg, msg_size, "%s must be an array of model names", field);
        return GW_EINVAL;
    }
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0' ||
            strlen(it->valuestring) > GW_WIRE_MODEL_LEN_MAX || api_has_control(it->valuestring)) {
            snprintf(msg, msg_size,
                     "%s must hold model names of 1 to %d bytes without control characters", field,
                     GW_WIRE_MODEL_LEN_MAX);
            return GW_EINVAL;
        }
        if (++n > GW_WIRE_MODELS_MAX) {
            snprintf(msg, msg_size, "%s must hold at most %d model names", field,
                     GW_WIRE_MODELS_MAX);
            return GW_EINVAL;
        }
    }
    out->set = 1;
    if (n == 0)
        return GW_OK;
    out->v = gw_xcalloc(n, sizeof(*out->v));
    cJSON_ArrayForEach(it, arr)
    {
        out->v[out->n++] = gw_xstrdup(it->valuestring);
    }
    return GW_OK;
}

/* 1 when obj has `field` with a JSON null (which the getters treat as absent). */
static int
api_field_is_null(const cJSON *obj, const char *field)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, field));
}

static int
api_field_present(const cJSON *obj, const char *field)
{
    return cJSON_GetObjectItemCaseSensitive(obj, field) != NULL;
}

/* An optional boolean; *set says whether it was given. */
static gw_err
api_field_bool(const cJSON *obj, const char *field, int *out, int *set, char *msg, size_t msg_size)
{
    gw_err rv = gw_json_get_bool(obj, field, out);

    *set = 0;
    /* The getter takes null for absent; here null is a wrong value. */
    if (rv == GW_ENOTFOUND && !api_field_present(obj, field))
        return GW_OK;
    if (rv != GW_OK) {
        snprintf(msg, msg_size, "%s must be true or false", field);
        return GW_EINVAL;
    }
    *set = 1;
    return GW_OK;
}

/* A PATCH body may name only the fields that can change: anything else is
 * refused by name, so a typo is not silently ignored. */
static gw_err
api_only_fields(const cJSON *obj, const char *const *allowed, char *msg, size_t msg_size)
{
    const cJSON *it;

    cJSON_ArrayForEach(it, obj)
    {
        size_t i;

        for (i = 0; allowed[i] != NULL; i++) {
            if (strcmp(it->string, allowed[i]) == 0)
                break;
        }
        if (allowed[i] == NULL) {
            snprintf(msg, msg_size, "%.64s cannot be changed here", it->string);
            return GW_EINVAL;
        }
    }
    if (cJSON_GetArraySize(obj) == 0) {
        snprintf(msg, msg_size, "nothing to change: give at least one field");
        return GW_EINVAL;
    }
    return GW_OK;
}

/* A proxy URL libcurl understands: http, https, socks5 or socks5h, a host,
 * an optional port 1..65535 and user:password, no path beyond "/". */
static int
api_valid_proxy_url(const char *url)
{
    static const char *const schemes[] = {"http://", "https://", "socks5://", "socks5h://", NULL};
    const char *auth = NULL, *end, *at, *host, *port = NULL;

    for (size_t i = 0; schemes[i] != NULL; i++) {
        size_t n = strlen(schemes[i]);

        if (strncasecmp(url, schemes[i], n) == 0) {
            auth = url + n;
            break;
        }
    }
    if (auth == NULL)
        return 0;
    for (const char *p = url; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return 0;
    }
    end = auth + strcspn(auth, "/?#");
    if (*end != '\0' && strcmp(end, "/") != 0)
        return 0;
    at = NULL;
    for (const char *p = auth; p < end; p++) {
        if (*p == '@')
            at = p;
    }
    host = at != NULL ? at + 1 : auth;
    if (host >= end)
        return 0;
    if (*host == '[') {
        const char *rb = memchr(host, ']', (size_t)(end - host));

        if (rb == NULL || rb == host + 1)
            return 0;
        for (const char *p = host + 1; p < rb; p++) {
            if (!(isxdigit((unsigned char)*p) || *p == ':' || *p == '.'))
                return 0;
        }
        if (rb + 1 < end && rb[1] != ':')
            return 0;
        if (rb + 1 < end)
            port = rb + 2;
    } else {
        const char *p;

        for (p = host; p < end && *p != ':'; p++) {
            if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == '_'))
                return 0;
        }
        if (p == host)
            return 0;
        if (p < end)
            port = p + 1;
    }
    if (port != NULL) {
        unsigned long v = 0;

        if (port >= end)
            return 0;
        for (const char *p = port; p < end; p++) {
            if (*p < '0' || *p > '9' || v > 65535)
                return 0;
            v = v * 10 + (unsigned long)(*p - '0');
        }
        if (v == 0 || v > 65535)
            return 0;
    }
    return 1;
}

/* The proxy for display: a password in it becomes "****". */
static void
api_proxy_display(const char *proxy, char *out, size_t size)
{
    const char *auth = strstr(proxy, "://");
    const char *at = NULL, *colon, *end;

    if (auth == NULL) {
        snprintf(out, size, "%s", proxy);
        return;
    }
    auth += 3;
    end = auth + strcspn(auth, "/?#");
    for (const char *p = auth; p < end; p++) {
        if (*p == '@')
            at = p;
    }
    colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon == NULL) {
        snprintf(out, size, "%s", proxy);
        return;
    }
    snprintf(out, size, "%.*s****%s", (int)(colon + 1 - proxy), proxy, at);
}

/* Adds an array of strings; cJSON_Delete(obj) and NULL on failure. */
static cJSON *
api_add_strv(cJSON *obj, const char *name, char *const *v, size_t n)
{
    cJSON *arr;

    if (obj == NULL)
        return NULL;
    arr = cJSON_AddArrayToObject(obj, name);
    if (arr == NULL) {
        cJSON_Delete(obj);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        cJSON *s = cJSON_CreateString(v[i]);

        if (s == NULL) {
            cJSON_Delete(obj);
            return NULL;
        }
        cJSON_AddItemToArray(arr, s);
    }
    return obj;
}

static cJSON *
api_add_null(cJSON *obj, const char *name)
{
    if (obj == NULL)
        return NULL;
    if (cJSON_AddNullToObject(obj, name) == NULL) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

/* Answers {"items": [...]} with one object per element made by render(i);
 * render returns NULL when it cannot. */
static void
api_respond_items(struct gw_http_req *req, size_t n, cJSON *(*render)(const void *list, size_t i),
                  const void *list)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *items = o != NULL ? cJSON_AddArrayToObject(o, "items") : NULL;

    if (items == NULL) {
        cJSON_Delete(o);
        api_respond_json(req, 500, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        cJSON *it = render(list, i);

        if (it == NULL) {
            cJSON_Delete(o);
            api_respond_json(req, 500, NULL);
            return;
        }
        cJSON_AddItemToArray(items, it);
    }
    api_respond_json(req, 200, o);
}

static void
api_not_found(struct gw_http_req *req, const char *what, uint64_t id)
{
    char msg[96];

    snprintf(msg, sizeof(msg), "%s %" PRIu64 " not found", what, id);
    api_error(req, 404, "not_found", msg);
}

/* ---- login -------------------------------------------------------------- */

struct api_login {
    struct api_job base;
    cJSON *body;
    const char *username; /* in body */
    char *password;       /* in body; wiped in fini */
    uint64_t admin_id;
    int must_change;
};

static void
login_run(struct api_job *job)
{
    struct api_login *j = (struct api_login *)job;
    struct hub_admin_api *api = job->api;
    struct hub_admin admin;
    gw_err rv;

    memset(&admin, 0, sizeof(admin));
    rv = hub_store_admin_get(api->store, j->username, &admin);
    if (rv == GW_ENOTFOUND) {
        pthread_mutex_lock(&api->dummy_mu);
        if (api->dummy_hash == NULL) {
            uint8_t rnd[16];
            struct gw_buf h = GW_BUF_INIT;
            struct gw_buf pw = GW_BUF_INIT;
            if (gw_random_bytes(rnd, sizeof(rnd)) == GW_OK) {
                gw_base64url_encode(rnd, sizeof(rnd), &pw);
                if (gw_password_hash(pw.data, &h) == GW_OK)
                    api->dummy_hash = gw_buf_steal(&h, NULL);
            }
            gw_buf_fini(&pw);
            gw_buf_fini(&h);
        }
        pthread_mutex_unlock(&api->dummy_mu);
        if (api->dummy_hash != NULL) {
            gw_err ignored = gw_password_verify(j->password, api->dummy_hash);
            (void)ignored;
        }
        job->rv = GW_EAUTH;
        return;
    }
    if (rv != GW_OK) {
        job->rv = rv;
        return;
    }
    rv = gw_password_verify(j->password, admin.password_hash);
    if (rv == GW_OK) {
        j->admin_id = admin.id;
        j->must_change = admin.must_change_password;
    } else if (rv == GW_EINVAL) {
        /* A malformed stored hash is the hub's problem, not the caller's. */
        rv = GW_EINTERNAL;
    }
    job->rv = rv;
    hub_admin_fini(&admin);
}

static void
login_finish(struct api_job *job)
{
    struct api_login *j = (struct api_login *)job;
    struct hub_admin_api *api = job->api;
    struct gw_http_req *req = job->req;
    struct gw_buf access = GW_BUF_INIT, refresh = GW_BUF_INIT;
    int64_t now = (int64_t)time(NULL);
    cJSON *o;
    gw_err rv = job->rv;

    if (rv == GW_EAUTH) {
        gw_log_req(GW_LOG_WARN, "HUB-ADMIN-LOGIN-FAIL", req->id_str, "failed login from %s",
                   req->peer);
        api_error(req, 401, "unauthorized", "invalid user name or password");
        return;
    }
    if (rv != GW_OK) {
        api_internal(req, "login", rv);
        return;
    }
    rv = hub_auth_issue_access(api->auth, j->admin_id, j->username, now, &access);
    if (rv == GW_OK)
        rv = hub_auth_issue_refresh(api->auth, j->admin_id, now, &refresh);
    if (rv != GW_OK) {
        api_internal(req, "token issue", rv);
        goto out;
    }
    hub_auth_login_succeeded(api->auth, j->username, req->peer);
    gw_log_req(GW_LOG_INFO, "HUB-ADMIN-LOGIN", req->id_str, "admin %s logged in from %s",
               j->username, req->peer);
    o = cJSON_CreateObject();
    o = api_add_str(o, "access_token", access.data);
    o = api_add_str(o, "refresh_token", refresh.data);
    o = api_add_str(o, "token_type", "Bearer");
    o = api_add_int(o, "expires_in", hub_auth_access_ttl(api->auth));
    o = api_add_bool(o, "must_change_password", j->must_change);
    gw_http_add_header(req, "Cache-Control", "no-store");
    api_respond_json(req, 200, o);
out:
    memset(access.data != NULL ? access.data : (char *)"", 0, access.len);
    memset(refresh.data != NULL ? refresh.data : (char *)"", 0, refresh.len);
    gw_buf_fini(&access);
    gw_buf_fini(&refresh);
}

static void
login_fini(struct api_job *job)
{
    struct api_login *j = (struct api_login *)job;

    if (j->password != NULL)
        memset(j->password, 0, strlen(j->password));
    cJSON_Delete(j->body);
}

static void
api_login(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id, const char *admin)
{
    struct api_login *j;
    const char *user = NULL, *pass = NULL;
    char msg[160];
    cJSON *body;
    gw_err rv;

    (void)path_id;
    body = api_body_object(req);
    if (body == NULL)
        return;
    rv = api_field_str(body, "username", API_USER_MAX, &user, msg, sizeof(msg));
    if (rv == GW_OK) {
        rv = gw_json_get_str(body, "password", &pass);
        if (rv != GW_OK || pass[0] == '\0' || strlen(pass) > API_PASSWORD_MAX) {
            snprintf(msg, sizeof(msg), "password is required (a string of at most %d bytes)",
                     API_PASSWORD_MAX);
            rv = GW_EINVAL;
        }
    }
    if (rv != GW_OK) {
        cJSON_Delete(body);
        api_bad_request(req, msg);
        return;
    }
    rv = hub_auth_login_attempt(api->auth, user, req->peer, (int64_t)uv_now(api->loop));
    if (rv == GW_EQUOTA) {
        gw_log_req(GW_LOG_WARN, "HUB-ADMIN-LOGIN-LIMIT", req->id_str,
                   "login attempts limited for a user from %s", req->peer);
        cJSON_Delete(body);
        gw_http_add_header(req, "Retry-After", "60");
        api_error(req, 429, "rate_limited", "too many login attempts; try again later");
        return;
    }
    j = api_job_new(api, req, admin, sizeof(*j), login_run, login_finish, login_fini);
    j->body = body;
    j->username = user;
    j->password = cJSON_GetObjectItemCaseSensitive(body, "password")->valuestring;
    api_job_queue(&j->base);
}

/* ---- groups ------------------------------------------------------------- */

struct api_group {
    struct api_job base;
    char name[API_NAME_MAX + 1];
    struct hub_group out;
};

static void
group_run(struct api_job *job)
{
    struct api_group *j = (struct api_group *)job;

    job->rv = hub_store_group_create(job->api->store, j->name, &j->out);
}

static cJSON *
api_group_json(const struct hub_group *g)
{
    cJSON *o = cJSON_CreateObject();

    o = api_add_int(o, "id", (int64_t)g->id);
    o = api_add_str(o, "name", g->name);
    o = api_add_int(o, "created_at", g->created_at);
    o = api_add_str(o, "mode", g->mode[0] != '\0' ? g->mode : "dedicated");
    if (g->pool_id != 0)
        o = api_add_int(o, "pool_id", (int64_t)g->pool_id);
    else
        o = api_add_null(o, "pool_id");
    return o;
}

static void
group_finish(struct api_job *job)
{
    struct api_group *j = (struct api_group *)job;

    if (job->rv == GW_EEXIST) {
        api_error(job->req, 409, "conflict", "a group with this name already exists");
        return;
    }
    if (job->rv != GW_OK) {
        api_internal(job->req, "group create", job->rv);
        return;
    }
    gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str, "admin %s created group %" PRIu64,
               job->admin, j->out.id);
    api_respond_json(job->req, 201, api_group_json(&j->out));
}

static void
api_group_create(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
                 const char *admin)
{
    struct api_group *j;
    const char *name = NULL;
    char msg[160];
    cJSON *body;

    (void)path_id;
    body = api_body_object(req);
    if (body == NULL)
        return;
    if (api_field_str(body, "name", API_NAME_MAX, &name, msg, sizeof(msg)) != GW_OK) {
        cJSON_Delete(body);
        api_bad_request(req, msg);
        return;
    }
    j = api_job_new(api, req, admin, sizeof(*j), group_run, group_finish, NULL);
    memcpy(j->name, name, strlen(name) + 1);
    cJSON_Delete(body);
    api_job_queue(&j->base);
}

struct api_group_list {
    struct api_job base;
    struct hub_group *items;
    size_t n;
};

static void
group_list_run(struct api_job *job)
{
    struct api_group_list *j = (struct api_group_list *)job;

    job->rv = hub_store_group_list(job->api->store, &j->items, &j->n);
}

static cJSON *
api_group_item(const void *list, size_t i)
{
    return api_group_json(&((const struct hub_group *)list)[i]);
}

static void
group_list_finish(struct api_job *job)
{
    struct api_group_list *j = (struct api_group_list *)job;

    if (job->rv != GW_OK) {
        api_internal(job->req, "group list", job->rv);
        return;
    }
    api_respond_items(job->req, j->n, api_group_item, j->items);
}

static void
group_list_fini(struct api_job *job)
{
    free(((struct api_group_list *)job)->items);
}

static void
api_group_list(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
               const char *admin)
{
    struct api_group_list *j;

    (void)path_id;
    j = api_job_new(api, req, admin, sizeof(*j), group_list_run, group_list_finish,
                    group_list_fini);
    api_job_queue(&j->base);
}

struct api_group_update {
    struct api_job base;
    uint64_t id;
    char mode[16];
    struct hub_group_patch patch;
    const char *missing; /* "group" or "pool" on GW_ENOTFOUND */
    struct hub_group out;
};

static void
group_update_run(struct api_job *job)
{
    struct api_group_update *j = (struct api_group_update *)job;
    struct hub_group cur;
    gw_err rv;

    /* Looked up first so a 404 can say which one is missing. */
    rv = hub_store_group_get(job->api->store, j->id, &cur);
    if (rv == GW_ENOTFOUND)
        j->missing = "group";
    if (rv == GW_OK) {
        j->patch.mode = j->mode;
        rv = hub_store_group_update(job->api->store, j->id, &j->patch, &j->out);
        if (rv == GW_ENOTFOUND)
            j->missing = "pool";
    }
    job->rv = rv;
}

static void
group_update_finish(struct api_job *job)
{
    struct api_group_update *j = (struct api_group_update *)job;

    if (job->rv == GW_ENOTFOUND) {
        if (j->missing != NULL && strcmp(j->missing, "pool") == 0)
            api_not_found(job->req, "pool", j->patch.pool_id);
        else
            api_not_found(job->req, "group", j->id);
        return;
    }
    if (job->rv == GW_EINVAL) {
        api_bad_request(job->req, "pool_id is required when mode is pool or hybrid");
        return;
    }
    if (job->rv != GW_OK) {
        api_internal(job->req, "group update", job->rv);
        return;
    }
    gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str,
               "admin %s set group %" PRIu64 " to mode %s, pool %" PRIu64, job->admin, j->id,
               j->out.mode, j->out.pool_id);
    api_respond_json(job->req, 200, api_group_json(&j->out));
}

static void
api_group_update(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
                 const char *admin)
{
    static const char *const fields[] = {"mode", "pool_id", NULL};
    struct api_group_update *j;
    const char *mode = NULL;
    int64_t pool_id = 0;
    char msg[160];
    cJSON *body;
    gw_err rv;

    body = api_body_object(req);
    if (body == NULL)
        return;
    j = api_job_new(api, req, admin, sizeof(*j), group_update_run, group_update_finish, NULL);
    j->id = path_id;
    rv = api_only_fields(body, fields, msg, sizeof(msg));
    if (rv == GW_OK && api_field_present(body, "mode")) {
        rv = gw_json_get_str(body, "mode", &mode);
        if (rv != GW_OK || !hub_store_group_mode_ok(mode)) {
            snprintf(msg, sizeof(msg), "mode must be one of dedicated, pool, hybrid");
            rv = GW_EINVAL;
        } else {
            snprintf(j->mode, sizeof(j->mode), "%s", mode);
            j->patch.fields |= HUB_GROUP_SET_MODE;
        }
    }
    if (rv == GW_OK && api_field_present(body, "pool_id")) {
        /* null takes the group out of its pool. */
        if (!api_field_is_null(body, "pool_id"))
            rv = api_field_int(body, "pool_id", 1, 0, 1, API_ID_MAX, &pool_id, msg, sizeof(msg));
        j->patch.fields |= HUB_GROUP_SET_POOL;
        j->patch.pool_id = (uint64_t)pool_id;
    }
    cJSON_Delete(body);
    if (rv == GW_OK && j->patch.fields == 0) {
        snprintf(msg, sizeof(msg), "nothing to change: give at least one field");
        rv = GW_EINVAL;
    }
    if (rv != GW_OK) {
        api_bad_request(req, msg);
        free(j);
        return;
    }
    api_job_queue(&j->base);
}

/* ---- accounts ----------------------------------------------------------- */

/* The kinds an admin can create, with their default base URL (NULL: the
 * base URL is required). */
static const struct {
    const char *kind;
    const char *default_url;
} api_account_kinds[] = {
    {"anthropic", "https://api.anthropic.com"},
    {"anthropic_compatible", NULL},
    {"gemini", "https://generativelanguage.googleapis.com"},
    {"openai_compatible", NULL},
    {"mock", NULL},
};

/* Claude-compatible relays with a known base URL (kind anthropic_compatible). */
static const struct {
    const char *preset;
    const char *url;
} api_presets[] = {
    {"kimi", "https://api.moonshot.ai/anthropic"},
    {"qwen", "https://dashscope-intl.aliyuncs.com/api/v2/apps/claude-code-proxy"},
    {"glm", "https://api.z.ai/api/anthropic"},
    {"custom", NULL},
};

#define API_N(a) (sizeof(a) / sizeof((a)[0]))

struct api_account {
    struct api_job base;
    char name[API_NAME_MAX + 1];
    char kind[32];
    char base_url[API_URL_MAX + 1];
    struct gw_buf sealed;
    int32_t priority, weight;
    struct api_models models;
    uint32_t max_concurrency;
    char proxy[API_URL_MAX + 1];
    struct hub_account out;
};

static void
account_run(struct api_job *job)
{
    struct api_account *j = (struct api_account *)job;
    struct hub_account_new in = {
        .name = j->name,
        .kind = j->kind,
        .base_url = j->base_url,
        .credential_sealed = (const uint8_t *)j->sealed.data,
        .credential_sealed_len = j->sealed.len,
        .priority = j->priority,
        .weight = j->weight,
        .models = (const char *const *)j->models.v,
        .n_models = j->models.n,
        .max_concurrency = j->max_concurrency,
        .proxy = j->proxy,
    };

    job->rv = hub_store_account_create(job->api->store, &in, &j->out);
}

/* Never the credential: the store does not even hand it out here. */
static cJSON *
api_account_json(const struct hub_account *a)
{
    cJSON *o = cJSON_CreateObject();
    char proxy[sizeof(a->proxy) + 8];

    o = api_add_int(o, "id", (int64_t)a->id);
    o = api_add_str(o, "name", a->name);
    o = api_add_str(o, "kind", a->kind);
    o = api_add_str(o, "base_url", a->base_url);
    o = api_add_int(o, "priority", a->priority);
    o = api_add_int(o, "weight", a->weight);
    o = api_add_bool(o, "enabled", a->enabled);
    o = api_add_int(o, "created_at", a->created_at);
    o = api_add_strv(o, "models", a->models, a->n_models);
    o = api_add_int(o, "max_concurrency", a->max_concurrency);
    if (a->proxy[0] != '\0') {
        api_proxy_display(a->proxy, proxy, sizeof(proxy));
        o = api_add_str(o, "proxy", proxy);
    } else {
        o = api_add_null(o, "proxy");
    }
    if (a->disabled_reason[0] != '\0')
        o = api_add_str(o, "disabled_reason", a->disabled_reason);
    else
        o = api_add_null(o, "disabled_reason");
    o = api_add_int(o, "cooldown_until_ms", a->cooldown_until_ms);
    o = api_add_int(o, "auth_failures", a->auth_failures);
    return o;
}

static void
account_finish(struct api_job *job)
{
    struct api_account *j = (struct api_account *)job;

    if (job->rv == GW_EEXIST) {
        api_error(job->req, 409, "conflict", "an account with this name already exists");
        return;
    }
    if (job->rv != GW_OK) {
        api_internal(job->req, "account create", job->rv);
        return;
    }
    gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str,
               "admin %s created account %" PRIu64 " kind %s", job->admin, j->out.id, j->out.kind);
    api_respond_json(job->req, 201, api_account_json(&j->out));
}

static void
account_fini(struct api_job *job)
{
    struct api_account *j = (struct api_account *)job;

    gw_buf_fini(&j->sealed);
    api_models_fini(&j->models);
    hub_account_fini(&j->out);
}

/* The provider credential: any printable bytes (not api_field_str, and
 * never echoed in a message). */
static gw_err
api_field_secret(const cJSON *obj, const char **out, char *msg, size_t msg_size)
{
    const char *secret = NULL;
    gw_err rv = gw_json_get_str(obj, "api_key", &secret);

    if (rv != GW_OK || secret[0] == '\0' || strlen(secret) > API_SECRET_MAX) {
        snprintf(msg, msg_size, "api_key is required (a string of at most %d bytes)",
                 API_SECRET_MAX);
        return GW_EINVAL;
    }
    *out = secret;
    return GW_OK;
}

static gw_err
api_field_base_url(const cJSON *obj, const char **out, char *msg, size_t msg_size)
{
    gw_err rv = api_field_str(obj, "base_url", API_URL_MAX, out, msg, msg_size);

    if (rv == GW_OK && !api_valid_http_url(*out)) {
        snprintf(msg, msg_size, "base_url must be an http:// or https:// URL");
        rv = GW_EINVAL;
    }
    return rv;
}

/* proxy: absent leaves *set 0; null or "" clears (*out = ""); otherwise a
 * valid proxy URL. */
static gw_err
api_field_proxy(const cJSON *obj, const char **out, int *set, char *msg, size_t msg_size)
{
    const char *v = NULL;
    gw_err rv;

    *set = 0;
    if (!api_field_present(obj, "proxy"))
        return GW_OK;
    *set = 1;
    if (api_field_is_null(obj, "proxy")) {
        *out = "";
        return GW_OK;
    }
    rv = gw_json_get_str(obj, "proxy", &v);
    if (rv == GW_OK && v[0] == '\0') {
        *out = "";
        return GW_OK;
    }
    if (rv != GW_OK || strlen(v) > API_URL_MAX || !api_valid_proxy_url(v)) {
        snprintf(msg, msg_size,
                 "proxy must be an http://, https://, socks5:// or socks5h:// URL with a host "
                 "(at most %d bytes), or null",
                 API_URL_MAX);
        return GW_EINVAL;
    }
    *out = v;
    return GW_OK;
}

static void
api_account_create(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
                   const char *admin)
{
    struct api_account *j = NULL;
    struct api_models models = {0};
    const char *name = NULL, *kind = NULL, *url = NULL, *secret = NULL, *preset = NULL;
    const char *proxy = "", *default_url = NULL;
    int64_t priority = 0, weight = 1, max_conc = 0;
    char msg[200];
    size_t k = API_N(api_account_kinds);
    int proxy_set = 0;
    cJSON *body;
    gw_err rv;

    (void)path_id;
    body = api_body_object(req);
    if (body == NULL)
        return;
    rv = api_field_str(body, "name", API_NAME_MAX, &name, msg, sizeof(msg));
    if (rv == GW_OK)
        rv = api_field_str(body, "kind", 31, &kind, msg, sizeof(msg));
    if (rv == GW_OK) {
        for (k = 0; k < API_N(api_account_kinds); k++) {
            if (strcmp(kind, api_account_kinds[k].kind) == 0)
                break;
        }
        if (k == API_N(api_account_kinds)) {
            snprintf(msg, sizeof(msg),
                     "kind must be one of anthropic, anthropic_compatible, "
                     "gemini, openai_compatible, mock");
            rv = GW_EINVAL;
        } else {
            default_url = api_account_kinds[k].default_url;
        }
    }
    if (rv == GW_OK && api_field_present(body, "preset")) {
        size_t p;

        rv = gw_json_get_str(body, "preset", &preset);
        for (p = 0; rv == GW_OK && p < API_N(api_presets); p++) {
            if (strcmp(preset, api_presets[p].preset) == 0)
                break;
        }
        if (rv != GW_OK || p == API_N(api_presets)) {
            snprintf(msg, sizeof(msg), "preset must be one of kimi, qwen, glm, custom");
            rv = GW_EINVAL;
        } else if (strcmp(kind, "anthropic_compatible") != 0) {
            snprintf(msg, sizeof(msg), "preset applies only to kind anthropic_compatible");
            rv = GW_EINVAL;
        } else {
            default_url = api_presets[p].url;
        }
    }
    if (rv == GW_OK) {
        /* An explicit base_url wins over the kind's or preset's default. */
        if (default_url != NULL && !api_field_present(body, "base_url"))
            url = default_url;
        else
            rv = api_field_base_url(body, &url, msg, sizeof(msg));
    }
    if (rv == GW_OK)
        rv = api_field_secret(body, &secret, msg, sizeof(msg));
    if (rv == GW_OK)
        rv = api_field_int(body, "priority", 0, 0, 0, 1000, &priority, msg, sizeof(msg));
    if (rv == GW_OK)
        rv = api_field_int(body, "weight", 0, 1, 1, 1000, &weight, msg, sizeof(msg));
    if (rv == GW_OK)
        rv = api_field_models(body, "models", &models, msg, sizeof(msg));
    if (rv == GW_OK)
        rv = api_field_int(body, "max_concurrency", 0, 0, 0, API_MAX_CONCURRENCY, &max_conc, msg,
                           sizeof(msg));
    if (rv == GW_OK)
        rv = api_field_proxy(body, &proxy, &proxy_set, msg, sizeof(msg));
    if (rv != GW_OK) {
        api_models_fini(&models);
        cJSON_Delete(body);
        api_bad_request(req, msg);
        return;
    }

    j = api_job_new(api, req, admin, sizeof(*j), account_run, account_finish, account_fini);
    memcpy(j->name, name, strlen(name) + 1);
    memcpy(j->kind, kind, strlen(kind) + 1);
    memcpy(j->base_url, url, strlen(url) + 1);
    memcpy(j->proxy, proxy, strlen(proxy) + 1);
    j->priority = (int32_t)priority;
    j->weight = (int32_t)weight;
    j->max_concurrency = (uint32_t)max_conc;
    j->models = models;
    rv = hub_keys_seal_credential(api->master, secret, strlen(secret), &j->sealed);
    /* The parsed copy of the credential is wiped; the request body itself is
     * the server's and dies with the request. */
    memset((char *)secret, 0, strlen(secret));
    cJSON_Delete(body);
    if (rv != GW_OK) {
        api_internal(req, "credential seal", rv);
        account_fini(&j->base);
        free(j);
        return;
    }
    api_job_queue(&j->base);
}

/* GET /api/accounts/{id}, GET /api/accounts */

struct api_account_get {
    struct api_job base;
    uint64_t id; /* 0: the list */
    struct hub_account one;
    struct hub_account *items;
    size_t n;
};

static void
account_get_run(struct api_job *job)
{
    struct api_account_get *j = (struct api_account_get *)job;

    if (j->id != 0)
        job->rv = hub_store_account_get(job->api->store, j->id, &j->one);
    else
        job->rv = hub_store_account_list(job->api->store, &j->items, &j->n);
}

static cJSON *
api_account_item(const void *list, size_t i)
{
    return api_account_json(&((const struct hub_account *)list)[i]);
}

static void
account_get_finish(struct api_job *job)
{
    struct api_account_get *j = (struct api_account_get *)job;

    if (job->rv == GW_ENOTFOUND) {
        api_not_found(job->req, "account", j->id);
        return;
    }
    if (job->rv != GW_OK) {
        api_internal(job->req, "account read", job->rv);
        return;
    }
    if (j->id != 0)
        api_respond_json(job->req, 200, api_account_json(&j->one));
    else
        api_respond_items(job->req, j->n, api_account_item, j->items);
}

static void
account_get_fini(struct api_job *job)
{
    struct api_account_get *j = (struct api_account_get *)job;

    hub_account_fini(&j->one);
    hub_accounts_free(j->items, j->n);
}

static void
api_account_get(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
                const char *admin)
{
    struct api_account_get *j;

    j = api_job_new(api, req, admin, sizeof(*j), account_get_run, account_get_finish,
                    account_get_fini);
    j->id = path_id;
    api_job_queue(&j->base);
}

/* PATCH /api/accounts/{id} */

struct api_account_update {
    struct api_job base;
    uint64_t id;
    struct hub_account_patch patch; /* its pointers point into the fields below */
    char name[API_NAME_MAX + 1];
    char base_url[API_URL_MAX + 1];
    char proxy[API_URL_MAX + 1];
    struct api_models models;
    struct gw_buf sealed;
    struct hub_account out;
};

static void
account_update_run(struct api_job *job)
{
    struct api_account_update *j = (struct api_account_update *)job;

    j->patch.name = j->name;
    j->patch.base_url = j->base_url;
    j->patch.proxy = j->proxy;
    j->patch.models = (const char *const *)j->models.v;
    j->patch.n_models = j->models.n;
    j->patch.credential_sealed = (const uint8_t *)j->sealed.data;
    j->patch.credential_sealed_len = j->sealed.len;
    job->rv = hub_store_account_update(job->api->store, j->id, &j->patch, &j->out);
}

static void
account_update_finish(struct api_job *job)
{
    struct api_account_update *j = (struct api_account_update *)job;

    if (job->rv == GW_ENOTFOUND) {
        api_not_found(job->req, "account", j->id);
        return;
    }
    if (job->rv != GW_OK) {
        api_internal(job->req, "account update", job->rv);
        return;
    }
    gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str,
               "admin %s changed account %" PRIu64 "%s%s", job->admin, j->id,
               (j->patch.fields & HUB_ACCOUNT_SET_CREDENTIAL) ? " (new credential)" : "",
               (j->patch.fields & HUB_ACCOUNT_SET_ENABLED)
                   ? (j->patch.enabled ? " (enabled)" : " (disabled)")
                   : "");
    api_respond_json(job->req, 200, api_account_json(&j->out));
}

static void
account_update_fini(struct api_job *job)
{
    struct api_account_update *j = (struct api_account_update *)job;

    gw_buf_fini(&j->sealed);
    api_models_fini(&j->models);
    hub_account_fini(&j->out);
}

static void
api_account_update(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
                   const char *admin)
{
    static const char *const fields[] = {
        "name",  "enabled",  "priority", "weight", "models", "max_concurrency",
        "proxy", "base_url", "api_key",  NULL};
    struct api_account_update *j;
    const char *s = NULL, *secret = NULL;
    int64_t v = 0;
    int set = 0;
    char msg[200];
    cJSON *body;
    gw_err rv;

    body = api_body_object(req);
    if (body == NULL)
        return;
    j = api_job_new(api, req, admin, sizeof(*j), account_update_run, account_update_finish,
                    account_update_fini);
    j->id = path_id;
    rv = api_only_fields(body, fields, msg, sizeof(msg));
    if (rv == GW_OK && api_field_present(body, "name")) {
        rv = api_field_str(body, "name", API_NAME_MAX, &s, msg, sizeof(msg));
        if (rv == GW_OK) {
            memcpy(j->name, s, strlen(s) + 1);
            j->patch.fields |= HUB_ACCOUNT_SET_NAME;
        }
    }
    if (rv == GW_OK) {
        rv = api_field_bool(body, "enabled", &j->patch.enabled, &set, msg, sizeof(msg));
        if (set)
            j->patch.fields |= HUB_ACCOUNT_SET_ENABLED;
    }
    if (rv == GW_OK && api_field_present(body, "priority")) {
        rv = api_field_int(body, "priority", 1, 0, 0, 1000, &v, msg, sizeof(msg));
        j->patch.priority = (int32_t)v;
        j->patch.fields |= HUB_ACCOUNT_SET_PRIORITY;
    }
    if (rv == GW_OK && api_field_present(body, "weight")) {
        rv = api_field_int(body, "weight", 1, 1, 1, 1000, &v, msg, sizeof(msg));
        j->patch.weight = (int32_t)v;
        j->patch.fields |= HUB_ACCOUNT_SET_WEIGHT;
    }
    if (rv == GW_OK && api_field_present(body, "models")) {
        /* null clears like [] does: any model. */
        rv = api_field_models(body, "models", &j->models, msg, sizeof(msg));
        j->patch.fields |= HUB_ACCOUNT_SET_MODELS;
    }
    if (rv == GW_OK && api_field_present(body, "max_concurrency")) {
        rv = api_field_int(body, "max_concurrency", 1, 0, 0, API_MAX_CONCURRENCY, &v, msg,
                           sizeof(msg));
        j->patch.max_concurrency = (uint32_t)v;
        j->patch.fields |= HUB_ACCOUNT_SET_MAX_CONCURRENCY;
    }
    if (rv == GW_OK) {
        rv = api_field_proxy(body, &s, &set, msg, sizeof(msg));
        if (rv == GW_OK && set) {
            memcpy(j->proxy, s, strlen(s) + 1);
            j->patch.fields |= HUB_ACCOUNT_SET_PROXY;
        }
    }
    if (rv == GW_OK && api_field_present(body, "base_url")) {
        rv = api_field_base_url(body, &s, msg, sizeof(msg));
        if (rv == GW_OK) {
            memcpy(j->base_url, s, strlen(s) + 1);
            j->patch.fields |= HUB_ACCOUNT_SET_BASE_URL;
        }
    }
    if (rv == GW_OK && api_field_present(body, "api_key")) {
        rv = api_field_secret(body, &secret, msg, sizeof(msg));
        if (rv == GW_OK) {
            rv = hub_keys_seal_credential(api->master, secret, strlen(secret), &j->sealed);
            memset((char *)secret, 0, strlen(secret));
            if (rv != GW_OK) {
                cJSON_Delete(body);
                api_internal(req, "credential seal", rv);
                account_update_fini(&j->base);
                free(j);
                return;
            }
            j->patch.fields |= HUB_ACCOUNT_SET_CREDENTIAL;
        }
    }
    cJSON_Delete(body);
    if (rv == GW_OK && j->patch.fields == 0) {
        snprintf(msg, sizeof(msg), "nothing to change: give at least one field");
        rv = GW_EINVAL;
    }
    if (rv != GW_OK) {
        api_bad_request(req, msg);
        account_update_fini(&j->base);
        free(j);
        return;
    }
    api_job_queue(&j->base);
}

/* ---- bindings ----------------------------------------------------------- */

struct api_binding {
    struct api_job base;
    uint64_t group_id, account_id;
    const char *missing; /* "group" or "account" when not found */
};

static void
binding_run(struct api_job *job)
{
    struct api_binding *j = (struct api_binding *)job;
    struct hub_store *st = job->api->store;
    struct hub_group g;
    struct hub_account a;
    gw_err rv;

    /* Look both up first so a 404 can say which one is missing. */
    rv = hub_store_group_get(st, j->group_id, &g);
    if (rv == GW_ENOTFOUND)
        j->missing = "group";
    if (rv == GW_OK) {
        rv = hub_store_account_get(st, j->account_id, &a);
        if (rv == GW_ENOTFOUND)
            j->missing = "account";
        hub_account_fini(&a);
    }
    if (rv == GW_OK)
        rv = hub_store_binding_create(st, j->group_id, j->account_id);
    job->rv = rv;
}

static void
binding_finish(struct api_job *job)
{
    struct api_binding *j = (struct api_binding *)job;
    cJSON *o;

    if (job->rv == GW_ENOTFOUND) {
        if (j->missing != NULL && strcmp(j->missing, "group") == 0)
            api_not_found(job->req, "group", j->group_id);
        else if (j->missing != NULL)
            api_not_found(job->req, "account", j->account_id);
        else
            api_error(job->req, 404, "not_found", "group or account not found");
        return;
    }
    if (job->rv == GW_EEXIST) {
        api_error(job->req, 409, "conflict", "the account is already bound to this group");
        return;
    }
    if (job->rv != GW_OK) {
        api_internal(job->req, "binding create", job->rv);
        return;
    }
    gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str,
               "admin %s bound account %" PRIu64 " to group %" PRIu64, job->admin, j->account_id,
               j->group_id);
    o = cJSON_CreateObject();
    o = api_add_int(o, "group_id", (int64_t)j->group_id);
    o = api_add_int(o, "account_id", (int64_t)j->account_id);
    api_respond_json(job->req, 201, o);
}

static void
api_binding_create(struct hub_admin_api *api, struct gw_http_req *req, uint64_t group_id,
                   const char *admin)
{
    struct api_binding *j;
    int64_t account_id = 0;
    char msg[160];
    cJSON *body;
    gw_err rv;

    body = api_body_object(req);
    if (body == NULL)
        return;
    rv = api_field_int(body, "account_id", 1, 0, 1, API_ID_MAX, &account_id, msg, sizeof(msg));
    cJSON_Delete(body);
    if (rv != GW_OK) {
        api_bad_request(req, msg);
        return;
    }
    j = api_job_new(api, req, admin, sizeof(*j), binding_run, binding_finish, NULL);
    j->group_id = group_id;
    j->account_id = (uint64_t)account_id;
    api_job_queue(&j->base);
}

/* ---- pools -------------------------------------------------------------- */

static cJSON *
api_pool_json(const struct hub_pool *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *ids;

    o = api_add_int(o, "id", (int64_t)p->id);
    o = api_add_str(o, "name", p->name);
    o = api_add_int(o, "created_at", p->created_at);
    if (o == NULL)
        return NULL;
    ids = cJSON_AddArrayToObject(o, "account_ids");
    if (ids == NULL) {
        cJSON_Delete(o);
        return NULL;
    }
    for (size_t i = 0; i < p->n_account_ids; i++) {
        cJSON *n = cJSON_CreateNumber((double)p->account_ids[i]);

        if (n == NULL) {
            cJSON_Delete(o);
            return NULL;
        }
        cJSON_AddItemToArray(ids, n);
    }
    return o;
}

struct api_pool {
    struct api_job base;
    uint64_t id; /* GET one; 0 with name[0] == '\0': the list */
    char name[API_NAME_MAX + 1];
    struct hub_pool one;
    struct hub_pool *items;
    size_t n;
};

static void
pool_run(struct api_job *job)
{
    struct api_pool *j = (struct api_pool *)job;
    struct hub_store *st = job->api->store;

    if (j->name[0] != '\0')
        job->rv = hub_store_pool_create(st, j->name, &j->one);
    else if (j->id != 0)
        job->rv = hub_store_pool_get(st, j->id, &j->one);
    else
        job->rv = hub_store_pool_list(st, &j->items, &j->n);
}

static cJSON *
api_pool_item(const void *list, size_t i)
{
    return api_pool_json(&((const struct hub_pool *)list)[i]);
}

static void
pool_finish(struct api_job *job)
{
    struct api_pool *j = (struct api_pool *)job;

    if (job->rv == GW_EEXIST) {
        api_error(job->req, 409, "conflict", "a pool with this name already exists");
        return;
    }
    if (job->rv == GW_ENOTFOUND) {
        api_not_found(job->req, "pool", j->id);
        return;
    }
    if (job->rv != GW_OK) {
        api_internal(job->req, "pool", job->rv);
        return;
    }
    if (j->name[0] != '\0') {
        gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str,
                   "admin %s created pool %" PRIu64, job->admin, j->one.id);
        api_respond_json(job->req, 201, api_pool_json(&j->one));
    } else if (j->id != 0) {
        api_respond_json(job->req, 200, api_pool_json(&j->one));
    } else {
        api_respond_items(job->req, j->n, api_pool_item, j->items);
    }
}

static void
pool_fini(struct api_job *job)
{
    struct api_pool *j = (struct api_pool *)job;

    hub_pool_fini(&j->one);
    hub_pools_free(j->items, j->n);
}

static void
api_pool_create(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
                const char *admin)
{
    struct api_pool *j;
    const char *name = NULL;
    char msg[160];
    cJSON *body;

    (void)path_id;
    body = api_body_object(req);
    if (body == NULL)
        return;
    if (api_field_str(body, "name", API_NAME_MAX, &name, msg, sizeof(msg)) != GW_OK) {
        cJSON_Delete(body);
        api_bad_request(req, msg);
        return;
    }
    j = api_job_new(api, req, admin, sizeof(*j), pool_run, pool_finish, pool_fini);
    memcpy(j->name, name, strlen(name) + 1);
    cJSON_Delete(body);
    api_job_queue(&j->base);
}

/* GET /api/pools and GET /api/pools/{id} */
static void
api_pool_get(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
             const char *admin)
{
    struct api_pool *j;

    j = api_job_new(api, req, admin, sizeof(*j), pool_run, pool_finish, pool_fini);
    j->id = path_id;
    api_job_queue(&j->base);
}

struct api_pool_member {
    struct api_job base;
    uint64_t pool_id, account_id;
    const char *missing; /* "pool" or "account" when not found */
};

static void
pool_member_run(struct api_job *job)
{
    struct api_pool_member *j = (struct api_pool_member *)job;
    struct hub_store *st = job->api->store;
    struct hub_account a;
    struct hub_pool p;
    gw_err rv;

    /* Look both up first so a 404 can say which one is missing. */
    rv = hub_store_pool_get(st, j->pool_id, &p);
    if (rv == GW_ENOTFOUND)
        j->missing = "pool";
    if (rv == GW_OK) {
        hub_pool_fini(&p);
        rv = hub_store_account_get(st, j->account_id, &a);
        if (rv == GW_ENOTFOUND)
            j->missing = "account";
        hub_account_fini(&a);
    }
    if (rv == GW_OK)
        rv = hub_store_pool_add_account(st, j->pool_id, j->account_id);
    job->rv = rv;
}

static void
pool_member_finish(struct api_job *job)
{
    struct api_pool_member *j = (struct api_pool_member *)job;
    cJSON *o;

    if (job->rv == GW_ENOTFOUND) {
        if (j->missing != NULL && strcmp(j->missing, "account") == 0)
            api_not_found(job->req, "account", j->account_id);
        else
            api_not_found(job->req, "pool", j->pool_id);
        return;
    }
    if (job->rv == GW_EEXIST) {
        api_error(job->req, 409, "conflict", "the account is already in this pool");
        return;
    }
    if (job->rv != GW_OK) {
        api_internal(job->req, "pool account add", job->rv);
        return;
    }
    gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str,
               "admin %s added account %" PRIu64 " to pool %" PRIu64, job->admin, j->account_id,
               j->pool_id);
    o = cJSON_CreateObject();
    o = api_add_int(o, "pool_id", (int64_t)j->pool_id);
    o = api_add_int(o, "account_id", (int64_t)j->account_id);
    api_respond_json(job->req, 201, o);
}

static void
api_pool_add_account(struct hub_admin_api *api, struct gw_http_req *req, uint64_t pool_id,
                     const char *admin)
{
    struct api_pool_member *j;
    int64_t account_id = 0;
    char msg[160];
    cJSON *body;
    gw_err rv;

    body = api_body_object(req);
    if (body == NULL)
        return;
    rv = api_field_int(body, "account_id", 1, 0, 1, API_ID_MAX, &account_id, msg, sizeof(msg));
    cJSON_Delete(body);
    if (rv != GW_OK) {
        api_bad_request(req, msg);
        return;
    }
    j = api_job_new(api, req, admin, sizeof(*j), pool_member_run, pool_member_finish, NULL);
    j->pool_id = pool_id;
    j->account_id = (uint64_t)account_id;
    api_job_queue(&j->base);
}

/* ---- gateway keys ------------------------------------------------------- */

/* Never the key itself: the hub keeps only its hash and display prefix. */
static cJSON *
api_key_json(const struct hub_key *k)
{
    cJSON *o = cJSON_CreateObject();

    o = api_add_int(o, "id", (int64_t)k->id);
    o = api_add_str(o, "prefix", k->prefix);
    o = api_add_int(o, "group_id", (int64_t)k->group_id);
    o = api_add_str(o, "name", k->name);
    o = api_add_bool(o, "enabled", k->enabled);
    o = api_add_int(o, "expires_at", k->expires_at);
    o = api_add_int(o, "created_at", k->created_at);
    o = api_add_int(o, "rpm_limit", k->rpm_limit);
    o = api_add_int(o, "tpm_limit", k->tpm_limit);
    o = api_add_int(o, "concurrency_limit", k->concurrency_limit);
    o = api_add_strv(o, "allowed_models", k->allowed_models, k->n_allowed_models);
    return o;
}

/* The limits and expiry a key may be created or changed with; *fields gets
 * the HUB_KEY_SET_* bits of those present. expires_at null means never. */
static gw_err
api_key_limits(const cJSON *body, struct hub_key_patch *p, struct api_models *models, char *msg,
               size_t msg_size)
{
    int64_t v = 0;
    gw_err rv = GW_OK;

    if (api_field_present(body, "rpm_limit")) {
        rv = api_field_int(body, "rpm_limit", 1, 0, 0, UINT32_MAX, &v, msg, msg_size);
        p->rpm_limit = (uint32_t)v;
        p->fields |= HUB_KEY_SET_RPM;
    }
    if (rv == GW_OK && api_field_present(body, "tpm_limit")) {
        rv = api_field_int(body, "tpm_limit", 1, 0, 0, UINT32_MAX, &v, msg, msg_size);
        p->tpm_limit = (uint32_t)v;
        p->fields |= HUB_KEY_SET_TPM;
    }
    if (rv == GW_OK && api_field_present(body, "concurrency_limit")) {
        rv = api_field_int(body, "concurrency_limit", 1, 0, 0, API_MAX_CONCURRENCY, &v, msg,
                           msg_size);
        p->concurrency_limit = (uint32_t)v;
        p->fields |= HUB_KEY_SET_CONCURRENCY;
    }
    if (rv == GW_OK && api_field_present(body, "allowed_models")) {
        rv = api_field_models(body, "allowed_models", models, msg, msg_size);
        p->fields |= HUB_KEY_SET_ALLOWED_MODELS;
    }
    if (rv == GW_OK && api_field_present(body, "expires_at")) {
        v = 0;
        if (!api_field_is_null(body, "expires_at"))
            rv = api_field_int(body, "expires_at", 1, 0, 0, API_EXPIRES_MAX, &v, msg, msg_size);
        p->expires_at = v;
        p->fields |= HUB_KEY_SET_EXPIRES_AT;
    }
    return rv;
}

struct api_key {
    struct api_job base;
    uint64_t group_id;
    char name[API_NAME_MAX + 1];
    char key[HUB_KEY_MAX]; /* wiped in fini */
    char prefix[HUB_KEY_DISPLAY_LEN + 1];
    struct hub_key_patch limits;
    struct api_models models;
    struct hub_key out;
};

static void
key_run(struct api_job *job)
{
    struct api_key *j = (struct api_key *)job;
    struct hub_key_new in;
    gw_err rv;

    memset(&in, 0, sizeof(in));
    /* Keys are not per user yet: user public id 0 until users exist. */
    rv = hub_keys_generate(j->group_id, 0, j->key);
    if (rv != GW_OK) {
        job->rv = rv;
        return;
    }
    hub_keys_display_prefix(j->key, j->prefix);
    in.group_id = j->group_id;
    in.name = j->name;
    gw_sha256(j->key, strlen(j->key), in.key_hash);
    in.prefix = j->prefix;
    in.rpm_limit = j->limits.rpm_limit;
    in.tpm_limit = j->limits.tpm_limit;
    in.concurrency_limit = j->limits.concurrency_limit;
    in.expires_at = j->limits.expires_at;
    in.allowed_models = (const char *const *)j->models.v;
    in.n_allowed_models = j->models.n;
    job->rv = hub_store_key_create(job->api->store, &in, &j->out);
}

static void
key_finish(struct api_job *job)
{
    struct api_key *j = (struct api_key *)job;
    cJSON *o;

    if (job->rv == GW_ENOTFOUND) {
        api_not_found(job->req, "group", j->group_id);
        return;
    }
    if (job->rv == GW_EEXIST) {
        api_error(job->req, 409, "conflict", "a key with this name already exists");
        return;
    }
    if (job->rv != GW_OK) {
        api_internal(job->req, "key create", job->rv);
        return;
    }
    gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str,
               "admin %s created key %" PRIu64 " (%s...) in group %" PRIu64, job->admin, j->out.id,
               j->prefix, j->group_id);
    o = api_key_json(&j->out);
    o = api_add_str(o, "key", j->key);
    gw_http_add_header(job->req, "Cache-Control", "no-store");
    api_respond_json(job->req, 201, o);
}

static void
key_fini(struct api_job *job)
{
    struct api_key *j = (struct api_key *)job;

    memset(j->key, 0, sizeof(j->key));
    api_models_fini(&j->models);
    hub_key_fini(&j->out);
}

static void
api_key_create(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
               const char *admin)
{
    struct hub_key_patch limits;
    struct api_models models = {0};
    struct api_key *j;
    const char *name = NULL;
    int64_t group_id = 0;
    char msg[160];
    cJSON *body;
    gw_err rv;

    (void)path_id;
    body = api_body_object(req);
    if (body == NULL)
        return;
    memset(&limits, 0, sizeof(limits));
    rv = api_field_int(body, "group_id", 1, 0, 1, API_ID_MAX, &group_id, msg, sizeof(msg));
    if (rv == GW_OK)
        rv = api_field_str(body, "name", API_NAME_MAX, &name, msg, sizeof(msg));
    if (rv == GW_OK)
        rv = api_key_limits(body, &limits, &models, msg, sizeof(msg));
    if (rv != GW_OK) {
        api_models_fini(&models);
        cJSON_Delete(body);
        api_bad_request(req, msg);
        return;
    }
    j = api_job_new(api, req, admin, sizeof(*j), key_run, key_finish, key_fini);
    j->group_id = (uint64_t)group_id;
    memcpy(j->name, name, strlen(name) + 1);
    j->limits = limits;
    j->models = models;
    cJSON_Delete(body);
    api_job_queue(&j->base);
}

/* GET /api/keys[?group_id=], GET /api/keys/{id}, PATCH and DELETE
 * /api/keys/{id}: one job, `op` says which. */
enum api_key_op { API_KEY_LIST, API_KEY_GET, API_KEY_UPDATE, API_KEY_REVOKE };

struct api_key_job {
    struct api_job base;
    enum api_key_op op;
    uint64_t id;                /* the key, or for the list the group (0 = all) */
    struct hub_key_patch patch; /* name and models point into the fields below */
    char name[API_NAME_MAX + 1];
    struct api_models models;
    struct hub_key one;
    struct hub_key *items;
    size_t n;
};

static void
key_job_run(struct api_job *job)
{
    struct api_key_job *j = (struct api_key_job *)job;
    struct hub_store *st = job->api->store;

    switch (j->op) {
    case API_KEY_LIST:
        job->rv = hub_store_key_list(st, j->id, &j->items, &j->n);
        break;
    case API_KEY_GET:
        job->rv = hub_store_key_get(st, j->id, &j->one);
        break;
    case API_KEY_UPDATE:
        j->patch.name = j->name;
        j->patch.allowed_models = (const char *const *)j->models.v;
        j->patch.n_allowed_models = j->models.n;
        job->rv = hub_store_key_update(st, j->id, &j->patch, &j->one);
        break;
    case API_KEY_REVOKE:
        job->rv = hub_store_key_revoke(st, j->id);
        break;
    }
}

static cJSON *
api_key_item(const void *list, size_t i)
{
    return api_key_json(&((const struct hub_key *)list)[i]);
}

static void
key_job_finish(struct api_job *job)
{
    struct api_key_job *j = (struct api_key_job *)job;

    if (job->rv == GW_ENOTFOUND) {
        api_not_found(job->req, "key", j->id);
        return;
    }
    if (job->rv != GW_OK) {
        api_internal(job->req, "key", job->rv);
        return;
    }
    switch (j->op) {
    case API_KEY_LIST:
        api_respond_items(job->req, j->n, api_key_item, j->items);
        break;
    case API_KEY_GET:
        api_respond_json(job->req, 200, api_key_json(&j->one));
        break;
    case API_KEY_UPDATE:
        gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str,
                   "admin %s changed key %" PRIu64, job->admin, j->id);
        api_respond_json(job->req, 200, api_key_json(&j->one));
        break;
    case API_KEY_REVOKE:
        gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str,
                   "admin %s revoked key %" PRIu64, job->admin, j->id);
        gw_http_respond(job->req, 204, NULL, "", 0);
        break;
    }
}

static void
key_job_fini(struct api_job *job)
{
    struct api_key_job *j = (struct api_key_job *)job;

    api_models_fini(&j->models);
    hub_key_fini(&j->one);
    hub_keys_free(j->items, j->n);
}

static struct api_key_job *
api_key_job_new(struct hub_admin_api *api, struct gw_http_req *req, const char *admin,
                enum api_key_op op, uint64_t id)
{
    struct api_key_job *j =
        api_job_new(api, req, admin, sizeof(*j), key_job_run, key_job_finish, key_job_fini);

    j->op = op;
    j->id = id;
    return j;
}

static void
api_key_list(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
             const char *admin)
{
    struct gw_str v;
    uint64_t group_id = 0;

    (void)path_id;
    if (api_query_param(req->query, "group_id", &v) &&
        api_query_uint(v, 1, (UINT64_C(1) << 53) - 1, &group_id) != GW_OK) {
        api_bad_request(req, "group_id must be a positive integer");
        return;
    }
    api_job_queue(&api_key_job_new(api, req, admin, API_KEY_LIST, group_id)->base);
}

static void
api_key_get(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id, const char *admin)
{
    api_job_queue(&api_key_job_new(api, req, admin, API_KEY_GET, path_id)->base);
}

static void
api_key_revoke(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
               const char *admin)
{
    api_job_queue(&api_key_job_new(api, req, admin, API_KEY_REVOKE, path_id)->base);
}

static void
api_key_update(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
               const char *admin)
{
    static const char *const fields[] = {
        "name",           "enabled",    "rpm_limit", "tpm_limit", "concurrency_limit",
        "allowed_models", "expires_at", NULL};
    struct api_key_job *j;
    const char *name = NULL;
    int set = 0;
    char msg[160];
    cJSON *body;
    gw_err rv;

    body = api_body_object(req);
    if (body == NULL)
        return;
    j = api_key_job_new(api, req, admin, API_KEY_UPDATE, path_id);
    rv = api_only_fields(body, fields, msg, sizeof(msg));
    if (rv == GW_OK && api_field_present(body, "name")) {
        rv = api_field_str(body, "name", API_NAME_MAX, &name, msg, sizeof(msg));
        if (rv == GW_OK) {
            memcpy(j->name, name, strlen(name) + 1);
            j->patch.fields |= HUB_KEY_SET_NAME;
        }
    }
    if (rv == GW_OK) {
        rv = api_field_bool(body, "enabled", &j->patch.enabled, &set, msg, sizeof(msg));
        if (set)
            j->patch.fields |= HUB_KEY_SET_ENABLED;
    }
    if (rv == GW_OK)
        rv = api_key_limits(body, &j->patch, &j->models, msg, sizeof(msg));
    cJSON_Delete(body);
    if (rv == GW_OK && j->patch.fields == 0) {
        snprintf(msg, sizeof(msg), "nothing to change: give at least one field");
        rv = GW_EINVAL;
    }
    if (rv != GW_OK) {
        api_bad_request(req, msg);
        key_job_fini(&j->base);
        free(j);
        return;
    }
    api_job_queue(&j->base);
}

/* ---- usage -------------------------------------------------------------- */

struct api_usage {
    struct api_job base;
    struct hub_usage_filter filter;
    struct hub_usage_row *rows;
    size_t n_rows;
};

static void
usage_run(struct api_job *job)
{
    struct api_usage *j = (struct api_usage *)job;

    job->rv = hub_store_usage_list(job->api->store, &j->filter, &j->rows, &j->n_rows);
}

static cJSON *
api_usage_row_json(const struct hub_usage_row *row)
{
    const struct gw_usage_record *r = &row->rec;
    cJSON *o = cJSON_CreateObject();
    char cost[48];

    o = api_add_str(o, "request_id", r->request_id);
    o = api_add_str(o, "edge_id", row->edge_id);
    o = api_add_int(o, "key_id", (int64_t)r->key_id);
    o = api_add_int(o, "account_id", (int64_t)r->account_id);
    o = api_add_str(o, "model", r->model);
    o = api_add_str(o, "dialect", r->dialect);
    o = api_add_int(o, "input_tokens", (int64_t)r->input_tokens);
    o = api_add_int(o, "output_tokens", (int64_t)r->output_tokens);
    o = api_add_int(o, "cache_read_tokens", (int64_t)r->cache_read_tokens);
    o = api_add_int(o, "cache_write_5m_tokens", (int64_t)r->cache_write_5m_tokens);
    o = api_add_int(o, "cache_write_1h_tokens", (int64_t)r->cache_write_1h_tokens);
    o = api_add_int(o, "cache_write_tokens",
                    (int64_t)(r->cache_write_5m_tokens + r->cache_write_1h_tokens));
    o = api_add_int(o, "reasoning_tokens", (int64_t)r->reasoning_tokens);
    if (o != NULL && row->cost_micros >= 0) {
        snprintf(cost, sizeof(cost), "%" PRId64 ".%06" PRId64, row->cost_micros / 1000000,
                 row->cost_micros % 1000000);
        o = api_add_str(o, "cost", cost);
        o = api_add_int(o, "cost_micros", row->cost_micros);
    } else if (o != NULL) {
        cJSON_AddNullToObject(o, "cost");
        cJSON_AddNullToObject(o, "cost_micros");
    }
    o = api_add_bool(o, "priced", row->cost_micros >= 0);
    o = api_add_int(o, "status", r->status);
    o = api_add_int(o, "latency_ms", r->latency_ms);
    o = api_add_int(o, "time_ms", r->time_ms);
    o = api_add_bool(o, "partial", r->partial);
    return o;
}

static void
usage_finish(struct api_job *job)
{
    struct api_usage *j = (struct api_usage *)job;
    cJSON *o, *items;

    if (job->rv != GW_OK) {
        api_internal(job->req, "usage list", job->rv);
        return;
    }
    o = cJSON_CreateObject();
    items = o != NULL ? cJSON_AddArrayToObject(o, "items") : NULL;
    if (items == NULL) {
        cJSON_Delete(o);
        api_respond_json(job->req, 500, NULL);
        return;
    }
    for (size_t i = 0; i < j->n_rows; i++) {
        cJSON *row = api_usage_row_json(&j->rows[i]);
        if (row == NULL) {
            cJSON_Delete(o);
            api_respond_json(job->req, 500, NULL);
            return;
        }
        cJSON_AddItemToArray(items, row);
    }
    api_respond_json(job->req, 200, o);
}

static void
usage_fini(struct api_job *job)
{
    struct api_usage *j = (struct api_usage *)job;

    free(j->rows);
}

static void
api_usage_list(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
               const char *admin)
{
    struct hub_usage_filter f = {.key_id = 0, .limit = API_USAGE_LIMIT_DEFAULT, .offset = 0};
    struct api_usage *j;
    struct gw_str v;
    uint64_t n;
    char msg[96];

    (void)path_id;
    if (api_query_param(req->query, "key_id", &v)) {
        if (api_query_uint(v, 1, (UINT64_C(1) << 53) - 1, &n) != GW_OK) {
            api_bad_request(req, "key_id must be a positive integer");
            return;
        }
        f.key_id = n;
    }
    if (api_query_param(req->query, "limit", &v)) {
        if (api_query_uint(v, 1, API_USAGE_LIMIT_MAX, &n) != GW_OK) {
            snprintf(msg, sizeof(msg), "limit must be an integer from 1 to %d",
                     API_USAGE_LIMIT_MAX);
            api_bad_request(req, msg);
            return;
        }
        f.limit = (uint32_t)n;
    }
    if (api_query_param(req->query, "offset", &v)) {
        if (api_query_uint(v, 0, INT32_MAX, &n) != GW_OK) {
            api_bad_request(req, "offset must be a non-negative integer");
            return;
        }
        f.offset = (uint32_t)n;
    }
    j = api_job_new(api, req, admin, sizeof(*j), usage_run, usage_finish, usage_fini);
    j->filter = f;
    api_job_queue(&j->base);
}

/* ---- status and health -------------------------------------------------- */

struct api_status {
    struct api_job base;
    uint64_t version;
};

static void
status_run(struct api_job *job)
{
    struct api_status *j = (struct api_status *)job;

    job->rv = hub_store_config_version(job->api->store, &j->version);
}

static void
status_finish(struct api_job *job)
{
    struct api_status *j = (struct api_status *)job;
    cJSON *o;

    if (job->rv != GW_OK) {
        api_internal(job->req, "config version", job->rv);
        return;
    }
    o = cJSON_CreateObject();
    o = api_add_int(o, "config_version", (int64_t)j->version);
    o = api_add_str(o, "store", hub_store_scheme(job->api->store));
    o = api_add_str(o, "version", HUB_VERSION_STRING);
    api_respond_json(job->req, 200, o);
}

static void
api_status(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id, const char *admin)
{
    struct api_status *j;

    (void)path_id;
    j = api_job_new(api, req, admin, sizeof(*j), status_run, status_finish, NULL);
    api_job_queue(&j->base);
}

static void
api_healthz(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id, const char *admin)
{
    static const char body[] = "{\"status\":\"ok\"}";

    (void)api;
    (void)path_id;
    (void)admin;
    gw_http_respond(req, 200, "application/json", body, sizeof(body) - 1);
}

/* ---- edges -------------------------------------------------------------- */

#define API_EDGE_SECRET_BYTES 32
#define API_EDGE_ID_RANDOM_BYTES 8
#define API_EDGE_REGION_MAX 63
/* Heartbeat age (ms) below which an edge is online, then stale. */
#define API_EDGE_ONLINE_MS 15000
#define API_EDGE_STALE_MS 60000

struct api_edge_job {
    struct api_job base;
    cJSON *body;
    const char *name;   /* in body */
    const char *region; /* in body */
    char id[HUB_EDGE_ID_MAX + 1];
    char *secret; /* base64url, shown once; wiped in fini */
    struct hub_edge *items;
    size_t n;
    uint64_t version;
};

static void
edge_job_fini(struct api_job *job)
{
    struct api_edge_job *j = (struct api_edge_job *)job;

    cJSON_Delete(j->body);
    if (j->secret != NULL)
        explicit_bzero(j->secret, strlen(j->secret));
    free(j->secret);
    hub_edges_free(j->items, j->n);
}

static void
edge_create_run(struct api_job *job)
{
    struct api_edge_job *j = (struct api_edge_job *)job;
    uint8_t raw[API_EDGE_SECRET_BYTES], idr[API_EDGE_ID_RANDOM_BYTES];
    char hex[2 * API_EDGE_ID_RANDOM_BYTES + 1];
    struct gw_buf text = GW_BUF_INIT, sealed = GW_BUF_INIT;
    struct hub_edge e;
    size_t len;

    job->rv = gw_random_bytes(raw, sizeof(raw));
    if (job->rv == GW_OK)
        job->rv = gw_random_bytes(idr, sizeof(idr));
    if (job->rv != GW_OK)
        return;
    gw_hex_encode(idr, sizeof(idr), hex);
    snprintf(j->id, sizeof(j->id), "edge-%s", hex);
    gw_base64url_encode(raw, sizeof(raw), &text);
    explicit_bzero(raw, sizeof(raw));
    job->rv = hub_link_seal_edge_secret(job->api->master, text.data, text.len, &sealed);
    if (job->rv == GW_OK) {
        memset(&e, 0, sizeof(e));
        snprintf(e.id, sizeof(e.id), "%s", j->id);
        snprintf(e.name, sizeof(e.name), "%s", j->name);
        snprintf(e.region, sizeof(e.region), "%s", j->region != NULL ? j->region : "");
        e.secret_sealed = (uint8_t *)sealed.data;
        e.secret_sealed_len = sealed.len;
        e.created_at = (int64_t)time(NULL);
        job->rv = hub_store_edge_create(job->api->store, &e);
    }
    gw_buf_fini(&sealed);
    if (job->rv == GW_OK) {
        j->secret = gw_buf_steal(&text, &len);
    } else if (text.data != NULL) {
        explicit_bzero(text.data, text.cap);
    }
    gw_buf_fini(&text);
}

static void
edge_create_finish(struct api_job *job)
{
    struct api_edge_job *j = (struct api_edge_job *)job;
    cJSON *o;

    if (job->rv != GW_OK) {
        api_internal(job->req, "edge create", job->rv);
        return;
    }
    gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str, "admin %s registered edge %s",
               job->admin, j->id);
    o = cJSON_CreateObject();
    o = api_add_str(o, "id", j->id);
    o = api_add_str(o, "name", j->name);
    o = api_add_str(o, "region", j->region != NULL ? j->region : "");
    o = api_add_str(o, "secret", j->secret);
    api_respond_json(job->req, 201, o);
}

static void
api_edge_create(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
                const char *admin)
{
    static const char *const fields[] = {"name", "region", NULL};
    struct api_edge_job *j;
    cJSON *body;
    char msg[160];

    (void)path_id;
    body = api_body_object(req);
    if (body == NULL)
        return;
    j = api_job_new(api, req, admin, sizeof(*j), edge_create_run, edge_create_finish,
                    edge_job_fini);
    j->body = body;
    if (api_only_fields(body, fields, msg, sizeof(msg)) != GW_OK ||
        api_field_str(body, "name", API_NAME_MAX, &j->name, msg, sizeof(msg)) != GW_OK ||
        (api_field_present(body, "region") &&
         api_field_str(body, "region", API_EDGE_REGION_MAX, &j->region, msg, sizeof(msg)) !=
             GW_OK)) {
        api_bad_request(req, msg);
        edge_job_fini(&j->base);
        free(j);
        return;
    }
    api_job_queue(&j->base);
}

static void
edge_list_run(struct api_job *job)
{
    struct api_edge_job *j = (struct api_edge_job *)job;

    job->rv = hub_store_config_version(job->api->store, &j->version);
    if (job->rv == GW_OK)
        job->rv = hub_store_edge_list(job->api->store, &j->items, &j->n);
}

static int64_t
api_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Adds a number with up to 3 decimals (rates). */
static cJSON *
api_add_rate(cJSON *obj, const char *name, double v)
{
    if (obj == NULL)
        return NULL;
    if (cJSON_AddNumberToObject(obj, name, (double)(int64_t)(v * 1000.0 + 0.5) / 1000.0) == NULL) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

static cJSON *
api_edge_json(const struct hub_edge *e, uint64_t config_version, int64_t now_ms)
{
    const char *status = "offline";
    double rps = 0, err_rate = 0;
    int64_t age = now_ms - e->last_seen_ms;
    uint64_t lag = 0;
    cJSON *o;

    if (e->last_seen_ms > 0 && age <= API_EDGE_ONLINE_MS)
        status = "online";
    else if (e->last_seen_ms > 0 && age <= API_EDGE_STALE_MS)
        status = "stale";
    if (e->snapshot_version < config_version)
        lag = config_version - e->snapshot_version;
    /* Rates over the last two heartbeats; a counter that went down means the
     * edge restarted, and tells nothing. */
    if (e->prev_heartbeat_ms > 0 && e->heartbeat_ms > e->prev_heartbeat_ms &&
        e->requests_total >= e->prev_requests_total && e->errors_total >= e->prev_errors_total) {
        uint64_t dreq = e->requests_total - e->prev_requests_total;
        uint64_t derr = e->errors_total - e->prev_errors_total;
        rps = (double)dreq * 1000.0 / (double)(e->heartbeat_ms - e->prev_heartbeat_ms);
        if (dreq > 0)
            err_rate = (double)derr / (double)dreq;
    }
    o = cJSON_CreateObject();
    o = api_add_str(o, "id", e->id);
    o = api_add_str(o, "name", e->name);
    o = api_add_str(o, "region", e->region);
    o = api_add_str(o, "version", e->version);
    o = api_add_bool(o, "trusted", e->trusted);
    o = api_add_bool(o, "revoked", e->revoked_at != 0);
    o = api_add_int(o, "created_at", e->created_at);
    o = api_add_int(o, "snapshot_version", (int64_t)e->snapshot_version);
    o = api_add_str(o, "snapshot_source", e->snapshot_source);
    o = api_add_int(o, "lag", (int64_t)lag);
    o = api_add_int(o, "last_seen_ms", e->last_seen_ms);
    o = api_add_str(o, "status", status);
    o = api_add_int(o, "requests_total", (int64_t)e->requests_total);
    o = api_add_int(o, "errors_total", (int64_t)e->errors_total);
    o = api_add_int(o, "usage_pending", (int64_t)e->usage_pending);
    o = api_add_rate(o, "requests_per_s", rps);
    o = api_add_rate(o, "error_rate", err_rate);
    return o;
}

static void
edge_list_finish(struct api_job *job)
{
    struct api_edge_job *j = (struct api_edge_job *)job;
    int64_t now = api_unix_ms();
    cJSON *o, *items;

    if (job->rv != GW_OK) {
        api_internal(job->req, "edge list", job->rv);
        return;
    }
    o = cJSON_CreateObject();
    items = o != NULL ? cJSON_AddArrayToObject(o, "items") : NULL;
    if (items == NULL) {
        cJSON_Delete(o);
        api_respond_json(job->req, 500, NULL);
        return;
    }
    for (size_t i = 0; i < j->n; i++) {
        cJSON *it = api_edge_json(&j->items[i], j->version, now);
        if (it == NULL) {
            cJSON_Delete(o);
            api_respond_json(job->req, 500, NULL);
            return;
        }
        cJSON_AddItemToArray(items, it);
    }
    o = api_add_int(o, "config_version", (int64_t)j->version);
    api_respond_json(job->req, 200, o);
}

static void
api_edge_list(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
              const char *admin)
{
    struct api_edge_job *j;

    (void)path_id;
    j = api_job_new(api, req, admin, sizeof(*j), edge_list_run, edge_list_finish, edge_job_fini);
    api_job_queue(&j->base);
}

static void
edge_revoke_run(struct api_job *job)
{
    struct api_edge_job *j = (struct api_edge_job *)job;

    job->rv = hub_store_edge_revoke(job->api->store, j->id);
}

static void
edge_revoke_finish(struct api_job *job)
{
    struct api_edge_job *j = (struct api_edge_job *)job;
    char msg[128];

    if (job->rv == GW_ENOTFOUND) {
        snprintf(msg, sizeof(msg), "edge %s not found", j->id);
        api_error(job->req, 404, "not_found", msg);
        return;
    }
    if (job->rv != GW_OK) {
        api_internal(job->req, "edge revoke", job->rv);
        return;
    }
    gw_log_req(GW_LOG_INFO, "HUB-ADMIN-CHANGE", job->req->id_str, "admin %s revoked edge %s",
               job->admin, j->id);
    gw_http_respond(job->req, 204, NULL, "", 0);
}

static void
api_edge_revoke(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
                const char *admin)
{
    static const char prefix[] = "/api/edges/";
    struct api_edge_job *j;
    size_t n;

    (void)path_id;
    /* The route matched "{name}": one segment of edge-id characters. */
    n = req->path.len - (sizeof(prefix) - 1);
    j = api_job_new(api, req, admin, sizeof(*j), edge_revoke_run, edge_revoke_finish,
                    edge_job_fini);
    memcpy(j->id, req->path.p + sizeof(prefix) - 1, n);
    j->id[n] = '\0';
    api_job_queue(&j->base);
}

/* ---- routing ------------------------------------------------------------ */

/* path_id: the "{id}" of the route (0 when none); admin: the caller's name
 * from the access token ("" on open routes), borrowed for the call. */
typedef void (*api_handler_fn)(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
                               const char *admin);

struct api_route {
    const char *method;
    const char *pattern; /* "{id}" matches one decimal id segment */
    int needs_auth;
    api_handler_fn fn;
};

static const struct api_route api_routes[] = {
    {"GET", "/healthz", 0, api_healthz},
    {"POST", "/api/auth/login", 0, api_login},
    {"GET", "/api/groups", 1, api_group_list},
    {"POST", "/api/groups", 1, api_group_create},
    {"PATCH", "/api/groups/{id}", 1, api_group_update},
    {"POST", "/api/groups/{id}/bindings", 1, api_binding_create},
    {"GET", "/api/accounts", 1, api_account_get},
    {"POST", "/api/accounts", 1, api_account_create},
    {"GET", "/api/accounts/{id}", 1, api_account_get},
    {"PATCH", "/api/accounts/{id}", 1, api_account_update},
    {"GET", "/api/pools", 1, api_pool_get},
    {"POST", "/api/pools", 1, api_pool_create},
    {"GET", "/api/pools/{id}", 1, api_pool_get},
    {"POST", "/api/pools/{id}/accounts", 1, api_pool_add_account},
    {"GET", "/api/keys", 1, api_key_list},
    {"POST", "/api/keys", 1, api_key_create},
    {"GET", "/api/keys/{id}", 1, api_key_get},
    {"PATCH", "/api/keys/{id}", 1, api_key_update},
    {"DELETE", "/api/keys/{id}", 1, api_key_revoke},
    {"GET", "/api/usage", 1, api_usage_list},
    {"GET", "/api/status", 1, api_status},
    {"GET", "/api/edges", 1, api_edge_list},
    {"POST", "/api/edges", 1, api_edge_create},
    {"DELETE", "/api/edges/{name}", 1, api_edge_revoke},
    {NULL, NULL, 0, NULL},
};

/* 1 when path matches pattern; *id gets the "{id}" segment's value. */
static int
api_route_match(const char *pattern, struct gw_str path, uint64_t *id)
{
    const char *p = path.p;
    const char *end = path.p + path.len;

    while (*pattern != '\0') {
        if (strncmp(pattern, "{name}", 6) == 0) {
            /* An edge id: 1..HUB_EDGE_ID_MAX of [A-Za-z0-9._-]. */
            const char *seg = p;
            while (p < end && *p != '/') {
                if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
                    return 0;
                p++;
            }
            if (p == seg || (size_t)(p - seg) > HUB_EDGE_ID_MAX)
                return 0;
            pattern += 6;
            continue;
        }
        if (strncmp(pattern, "{id}", 4) == 0) {
            const char *seg = p;
            while (p < end && *p != '/')
                p++;
            if (api_parse_id(seg, (size_t)(p - seg), id) != GW_OK)
                return 0;
            pattern += 4;
            continue;
        }
        if (p >= end || *p != *pattern)
            return 0;
        p++;
        pattern++;
    }
    return p == end;
}

/* Checks "Authorization: Bearer <access token>"; fills claims. */
static gw_err
api_authenticate(struct hub_admin_api *api, struct gw_http_req *req, struct hub_auth_claims *claims)
{
    const struct gw_str *h = gw_http_req_header(req, "authorization");
    const char *p, *end;

    if (h == NULL || h->len < 7 || strncasecmp(h->p, "Bearer ", 7) != 0)
        return GW_EAUTH;
    p = h->p + 7;
    end = h->p + h->len;
    while (p < end && *p == ' ')
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return hub_auth_verify_access(api->auth, p, (size_t)(end - p), (int64_t)time(NULL), claims);
}

static void
api_on_request(struct gw_http_req *req, void *arg)
{
    struct hub_admin_api *api = arg;
    const struct api_route *found = NULL;
    struct gw_buf allow = GW_BUF_INIT;
    struct hub_auth_claims claims;
    int path_known = 0;
    uint64_t id = 0;

    for (const struct api_route *r = api_routes; r->method != NULL; r++) {
        uint64_t rid = 0;
        if (!api_route_match(r->pattern, req->path, &rid))
            continue;
        path_known = 1;
        if (allow.len > 0)
            gw_buf_append_str(&allow, ", ");
        gw_buf_append_str(&allow, r->method);
        if (strcmp(r->method, req->method) == 0) {
            found = r;
            id = rid;
        }
    }
    if (found == NULL) {
        if (path_known) {
            gw_http_add_header(req, "Allow", allow.data);
            api_error(req, 405, "method_not_allowed", "method not allowed for this path");
        } else {
            api_error(req, 404, "not_found", "no such endpoint");
        }
        gw_buf_fini(&allow);
        return;
    }
    gw_buf_fini(&allow);

    memset(&claims, 0, sizeof(claims));
    if (found->needs_auth && api_authenticate(api, req, &claims) != GW_OK) {
        gw_http_add_header(req, "WWW-Authenticate", "Bearer");
        api_error(req, 401, "unauthorized", "missing or invalid access token");
        return;
    }
    found->fn(api, req, id, claims.name);
}

/* ---- lifecycle ---------------------------------------------------------- */

gw_err
hub_admin_api_new(uv_loop_t *loop, struct hub_store *store,
                  const uint8_t master[HUB_MASTER_KEY_LEN], int64_t access_ttl_s,
                  struct hub_admin_api **out)
{
    struct gw_http_limits limits;
    struct hub_admin_api *api;
    gw_err rv;

    api = gw_xcalloc(1, sizeof(*api));
    api->loop = loop;
    api->store = store;
    memcpy(api->master, master, HUB_MASTER_KEY_LEN);
    if (pthread_mutex_init(&api->dummy_mu, NULL) != 0) {
        free(api);
        return GW_EINTERNAL;
    }
    rv = hub_auth_new(master, access_ttl_s, &api->auth);
    if (rv != GW_OK)
        goto fail;
    gw_http_limits_default(&limits);
    limits.max_body_bytes = HUB_ADMIN_API_MAX_BODY;
    limits.max_connections = 1024;
    rv = gw_http_server_new(loop, &limits, api_on_request, api, &api->http);
    if (rv != GW_OK)
        goto fail;
    *out = api;
    return GW_OK;
fail:
    hub_auth_free(api->auth);
    pthread_mutex_destroy(&api->dummy_mu);
    memset(api->master, 0, sizeof(api->master));
    free(api);
    return rv;
}

gw_err
hub_admin_api_listen(struct hub_admin_api *api, const char *host_port, int *bound_port)
{
    return gw_http_server_listen(api->http, host_port, 0, bound_port);
}

static void
api_closed_cb(void *arg)
{
    struct hub_admin_api *api = arg;
    void (*cb)(void *) = api->closed_cb;
    void *cb_arg = api->closed_arg;

    hub_auth_free(api->auth);
    pthread_mutex_destroy(&api->dummy_mu);
    free(api->dummy_hash);
    memset(api->master, 0, sizeof(api->master));
    free(api);
    if (cb != NULL)
        cb(cb_arg);
}

void
hub_admin_api_set_link(struct hub_admin_api *api, struct hub_link *link)
{
    api->link = link;
}

void
hub_admin_api_close(struct hub_admin_api *api, void (*closed_cb)(void *arg), void *arg)
{
    api->closed_cb = closed_cb;
    api->closed_arg = arg;
    gw_http_server_close(api->http, api_closed_cb, api);
}
