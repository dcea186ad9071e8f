/* SPDX-License-Identifier: Apache-2.0 */
/* Admin REST API. A request is routed and validated on the loop thread,
 * then one job carries it through uv_queue_work: `run` does the blocking
 * part (store calls, password hashing) on the threadpool, `finish` answers
 * on the loop. Nothing on the loop thread blocks. Provider credentials are
 * sealed before the store sees them and never appear in a response or log. */
#include "admin_api.h"

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

#define API_NAME_MAX 127    /* group, account and key names (store: char[128]) */
#define API_URL_MAX 511     /* store: char[512] */
#define API_SECRET_MAX 8192 /* provider credential */
#define API_USER_MAX 63
#define API_PASSWORD_MAX 1024
#define API_USAGE_LIMIT_DEFAULT 100
#define API_USAGE_LIMIT_MAX 1000

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

    if (status != 0)
        api_error(job->req, 503, "unavailable", "the hub is shutting down");
    else
        job->finish(job);
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

/* ---- accounts ----------------------------------------------------------- */

static const char *const api_account_kinds[] = {"anthropic", "anthropic_compatible", "mock", NULL};

struct api_account {
    struct api_job base;
    char name[API_NAME_MAX + 1];
    char kind[32];
    char base_url[API_URL_MAX + 1];
    struct gw_buf sealed;
    int32_t priority, weight;
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
    };

    job->rv = hub_store_account_create(job->api->store, &in, &j->out);
}

static cJSON *
api_account_json(const struct hub_account *a)
{
    cJSON *o = cJSON_CreateObject();

    o = api_add_int(o, "id", (int64_t)a->id);
    o = api_add_str(o, "name", a->name);
    o = api_add_str(o, "kind", a->kind);
    o = api_add_str(o, "base_url", a->base_url);
    o = api_add_int(o, "priority", a->priority);
    o = api_add_int(o, "weight", a->weight);
    o = api_add_bool(o, "enabled", a->enabled);
    o = api_add_int(o, "created_at", a->created_at);
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
}

static void
api_account_create(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
                   const char *admin)
{
    struct api_account *j = NULL;
    const char *name = NULL, *kind = NULL, *url = NULL, *secret = NULL;
    int64_t priority = 0, weight = 1;
    char msg[160];
    int kind_ok = 0;
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
        for (size_t i = 0; api_account_kinds[i] != NULL; i++)
            kind_ok |= strcmp(kind, api_account_kinds[i]) == 0;
        if (!kind_ok) {
            snprintf(msg, sizeof(msg), "kind must be one of anthropic, anthropic_compatible, mock");
            rv = GW_EINVAL;
        }
    }
    if (rv == GW_OK)
        rv = api_field_str(body, "base_url", API_URL_MAX, &url, msg, sizeof(msg));
    if (rv == GW_OK && !api_valid_http_url(url)) {
        snprintf(msg, sizeof(msg), "base_url must be an http:// or https:// URL");
        rv = GW_EINVAL;
    }
    if (rv == GW_OK) {
        /* Not api_field_str: a key may legitimately contain any printable
         * byte, and its content is never echoed in a message. */
        rv = gw_json_get_str(body, "api_key", &secret);
        if (rv != GW_OK || secret[0] == '\0' || strlen(secret) > API_SECRET_MAX) {
            snprintf(msg, sizeof(msg), "api_key is required (a string of at most %d bytes)",
                     API_SECRET_MAX);
            rv = GW_EINVAL;
        }
    }
    if (rv == GW_OK)
        rv = api_field_int(body, "priority", 0, 0, 0, 1000, &priority, msg, sizeof(msg));
    if (rv == GW_OK)
        rv = api_field_int(body, "weight", 0, 1, 1, 1000, &weight, msg, sizeof(msg));
    if (rv != GW_OK) {
        cJSON_Delete(body);
        api_bad_request(req, msg);
        return;
    }

    j = api_job_new(api, req, admin, sizeof(*j), account_run, account_finish, account_fini);
    memcpy(j->name, name, strlen(name) + 1);
    memcpy(j->kind, kind, strlen(kind) + 1);
    memcpy(j->base_url, url, strlen(url) + 1);
    j->priority = (int32_t)priority;
    j->weight = (int32_t)weight;
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
    }
    if (rv == GW_OK)
        rv = hub_store_binding_create(st, j->group_id, j->account_id);
    job->rv = rv;
}

static void
binding_finish(struct api_job *job)
{
    struct api_binding *j = (struct api_binding *)job;
    char msg[96];
    cJSON *o;

    if (job->rv == GW_ENOTFOUND) {
        if (j->missing != NULL)
            snprintf(msg, sizeof(msg), "%s %" PRIu64 " not found", j->missing,
                     strcmp(j->missing, "group") == 0 ? j->group_id : j->account_id);
        else
            snprintf(msg, sizeof(msg), "group or account not found");
        api_error(job->req, 404, "not_found", msg);
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
    rv = api_field_int(body, "account_id", 1, 0, 1, (INT64_C(1) << 53) - 1, &account_id, msg,
                       sizeof(msg));
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

/* ---- gateway keys ------------------------------------------------------- */

struct api_key {
    struct api_job base;
    uint64_t group_id;
    char name[API_NAME_MAX + 1];
    char key[HUB_KEY_MAX]; /* wiped in fini */
    char prefix[HUB_KEY_DISPLAY_LEN + 1];
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
    job->rv = hub_store_key_create(job->api->store, &in, &j->out);
}

static void
key_finish(struct api_job *job)
{
    struct api_key *j = (struct api_key *)job;
    char msg[96];
    cJSON *o;

    if (job->rv == GW_ENOTFOUND) {
        snprintf(msg, sizeof(msg), "group %" PRIu64 " not found", j->group_id);
        api_error(job->req, 404, "not_found", msg);
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
    o = cJSON_CreateObject();
    o = api_add_int(o, "id", (int64_t)j->out.id);
    o = api_add_str(o, "key", j->key);
    o = api_add_str(o, "prefix", j->prefix);
    o = api_add_int(o, "group_id", (int64_t)j->out.group_id);
    o = api_add_str(o, "name", j->out.name);
    o = api_add_int(o, "created_at", j->out.created_at);
    gw_http_add_header(job->req, "Cache-Control", "no-store");
    api_respond_json(job->req, 201, o);
}

static void
key_fini(struct api_job *job)
{
    struct api_key *j = (struct api_key *)job;

    memset(j->key, 0, sizeof(j->key));
}

static void
api_key_create(struct hub_admin_api *api, struct gw_http_req *req, uint64_t path_id,
               const char *admin)
{
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
    rv = api_field_int(body, "group_id", 1, 0, 1, (INT64_C(1) << 53) - 1, &group_id, msg,
                       sizeof(msg));
    if (rv == GW_OK)
        rv = api_field_str(body, "name", API_NAME_MAX, &name, msg, sizeof(msg));
    if (rv != GW_OK) {
        cJSON_Delete(body);
        api_bad_request(req, msg);
        return;
    }
    j = api_job_new(api, req, admin, sizeof(*j), key_run, key_finish, key_fini);
    j->group_id = (uint64_t)group_id;
    memcpy(j->name, name, strlen(name) + 1);
    cJSON_Delete(body);
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
    {"POST", "/api/groups", 1, api_group_create},
    {"POST", "/api/groups/{id}/bindings", 1, api_binding_create},
    {"POST", "/api/accounts", 1, api_account_create},
    {"POST", "/api/keys", 1, api_key_create},
    {"GET", "/api/usage", 1, api_usage_list},
    {"GET", "/api/status", 1, api_status},
    {NULL, NULL, 0, NULL},
};

/* 1 when path matches pattern; *id gets the "{id}" segment's value. */
static int
api_route_match(const char *pattern, struct gw_str path, uint64_t *id)
{
    const char *p = path.p;
    const char *end = path.p + path.len;

    while (*pattern != '\0') {
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
hub_admin_api_close(struct hub_admin_api *api, void (*closed_cb)(void *arg), void *arg)
{
    api->closed_cb = closed_cb;
    api->closed_arg = arg;
    gw_http_server_close(api->http, api_closed_cb, api);
}
