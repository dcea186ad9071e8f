/* SPDX-License-Identifier: Apache-2.0 */
/* The store conformance suite: one set of cases for every backend.
 * GW_TEST_STORE_BACKEND unset or "sqlite" runs on sqlite::memory: (and a
 * temporary file for the reopen case); "mysql" runs on GW_TEST_MYSQL_DSN,
 * dropping and recreating that database before each case, and skips when
 * the DSN is not set (scripts/test-mysql start DIR prints one). */
#include "gw_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef GW_WITH_MYSQL
#include <mysql.h>
#endif

#include "store.h"

enum backend { BACKEND_SQLITE, BACKEND_MYSQL };

static enum backend backend = BACKEND_SQLITE;
static const char *mysql_dsn; /* NULL: the mysql cases skip */

struct fixture {
    struct hub_store *st;
    char dsn[512]; /* what st was opened with */
    char dir[64];  /* sqlite temp dir, when one was made */
    char path[128];
};

/* ---- backend plumbing (raw access, outside the store under test) -------- */

#ifdef GW_WITH_MYSQL
struct raw_dsn {
    char user[128], pass[128], host[128], sock[256], db[128];
    unsigned int port;
};

/* Enough of the DSN grammar for the test harness: user:pass@host:port/db,
 * unix(/sock) and ?socket=. */
static void
raw_parse(const char *dsn, struct raw_dsn *d)
{
    const char *s, *at, *hp, *slash, *q;

    memset(d, 0, sizeof(*d));
    d->port = 3306;
    assert_int_equal(strncmp(dsn, "mysql://", 8), 0);
    s = dsn + 8;
    at = strrchr(s, '@');
    assert_non_null(at);
    {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        if (colon != NULL) {
            snprintf(d->user, sizeof(d->user), "%.*s", (int)(colon - s), s);
            snprintf(d->pass, sizeof(d->pass), "%.*s", (int)(at - colon - 1), colon + 1);
        } else {
            snprintf(d->user, sizeof(d->user), "%.*s", (int)(at - s), s);
        }
    }
    hp = at + 1;
    if (strncmp(hp, "unix(", 5) == 0) {
        const char *close = strchr(hp, ')');
        assert_non_null(close);
        snprintf(d->sock, sizeof(d->sock), "%.*s", (int)(close - hp - 5), hp + 5);
        slash = close + 1;
    } else {
        size_t hl = strcspn(hp, ":/");
        snprintf(d->host, sizeof(d->host), "%.*s", (int)hl, hp);
        slash = hp + hl;
        if (*slash == ':') {
            d->port = (unsigned int)strtoul(slash + 1, NULL, 10);
            slash = strchr(slash, '/');
        }
    }
    assert_non_null(slash);
    assert_int_equal(*slash, '/');
    q = strchr(slash, '?');
    snprintf(d->db, sizeof(d->db), "%.*s",
             (int)(q != NULL ? (size_t)(q - slash - 1) : strlen(slash + 1)), slash + 1);
    if (q != NULL && strncmp(q, "?socket=", 8) == 0)
        snprintf(d->sock, sizeof(d->sock), "%s", q + 8);
}

static MYSQL *
raw_mysql_connect(int with_db)
{
    struct raw_dsn d;
    unsigned int proto;
    MYSQL *m;

    raw_parse(mysql_dsn, &d);
    m = mysql_init(NULL);
    assert_non_null(m);
    proto = d.sock[0] ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
    mysql_options(m, MYSQL_OPT_PROTOCOL, &proto);
    if (mysql_real_connect(m, d.sock[0] ? NULL : d.host, d.user, d.pass, with_db ? d.db : NULL,
                           d.port, d.sock[0] ? d.sock : NULL, 0) == NULL)
        fail_msg("raw mysql connect: %s", mysql_error(m));
    return m;
}

static void
raw_mysql_exec(MYSQL *m, const char *sql)
{
    if (mysql_query(m, sql) != 0)
        fail_msg("%s: %s", sql, mysql_error(m));
}

/* A fresh, empty database for every case. */
static void
raw_mysql_reset(void)
{
    struct raw_dsn d;
    char sql[512];
    MYSQL *m;

    raw_parse(mysql_dsn, &d);
    m = raw_mysql_connect(0);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS `%s`", d.db);
    raw_mysql_exec(m, sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
             d.db);
    raw_mysql_exec(m, sql);
    mysql_close(m);
}
#endif

/* One integer from a raw query on the database behind fx. */
static long long
raw_scalar(struct fixture *fx, const char *sql)
{
    long long v = -1;

    if (backend == BACKEND_SQLITE) {
        sqlite3 *db = NULL;
        sqlite3_stmt *s = NULL;

        assert_int_equal(sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        sqlite3_close(db);
        return v;
    }
#ifdef GW_WITH_MYSQL
    {
        MYSQL *m = raw_mysql_connect(1);
        MYSQL_RES *res;
        MYSQL_ROW row;

        raw_mysql_exec(m, sql);
        res = mysql_store_result(m);
        assert_non_null(res);
        row = mysql_fetch_row(res);
        assert_non_null(row);
        assert_non_null(row[0]);
        v = strtoll(row[0], NULL, 10);
        mysql_free_result(res);
        mysql_close(m);
    }
#endif
    return v;
}

static struct hub_store *
open_store(const char *dsn)
{
    struct gw_buf err = GW_BUF_INIT;
    struct hub_store *st = NULL;
    gw_err rv = hub_store_open(dsn, &st, &err);

    if (rv != GW_OK)
        fail_msg("hub_store_open: %s: %s", gw_err_name(rv), err.data ? err.data : "");
    gw_buf_fini(&err);
    return st;
}

static int
setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    if (fx == NULL)
        return -1;
    *state = fx;
    if (backend == BACKEND_SQLITE) {
        snprintf(fx->dsn, sizeof(fx->dsn), "sqlite::memory:");
    } else {
#ifdef GW_WITH_MYSQL
        if (mysql_dsn == NULL)
            return 0; /* the case skips */
        raw_mysql_reset();
        snprintf(fx->dsn, sizeof(fx->dsn), "%s", mysql_dsn);
#endif
    }
    fx->st = open_store(fx->dsn);
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *fx = *state;

    hub_store_close(fx->st);
    if (fx->path[0] != '\0') {
        char f[160];

        unlink(fx->path);
        snprintf(f, sizeof(f), "%s-wal", fx->path);
        unlink(f);
        snprintf(f, sizeof(f), "%s-shm", fx->path);
        unlink(f);
    }
    if (fx->dir[0] != '\0')
        rmdir(fx->dir);
    free(fx);
    return 0;
}

static struct fixture *
fx_get(void **state)
{
    struct fixture *fx = *state;

    if (backend == BACKEND_MYSQL && mysql_dsn == NULL)
        skip();
    return fx;
}

/* ---- helpers ------------------------------------------------------------- */

static uint64_t
version_of(struct hub_store *st)
{
    uint64_t v = 0;

    GW_PASS(hub_store_config_version(st, &v));
    return v;
}

static void
hash_for(uint8_t out[GW_SHA256_LEN], unsigned seed)
{
    for (unsigned i = 0; i < GW_SHA256_LEN; i++)
        out[i] = (uint8_t)(seed * 31u + i * 7u);
    out[0] = 0; /* a NUL inside must survive */
}

static uint64_t
make_group(struct hub_store *st, const char *name)
{
    struct hub_group g;

    GW_PASS(hub_store_group_create(st, name, &g));
    return g.id;
}

static uint64_t
make_account(struct hub_store *st, const char *name, const uint8_t *cred, size_t cred_len)
{
    struct hub_account_new in = {
        .name = name,
        .kind = "mock",
        .base_url = "http://127.0.0.1:1",
        .credential_sealed = cred,
        .credential_sealed_len = cred_len,
        .priority = 5,
        .weight = 3,
    };
    struct hub_account a;

    GW_PASS(hub_store_account_create(st, &in, &a));
    return a.id;
}

static uint64_t
make_key(struct hub_store *st, uint64_t group_id, unsigned seed)
{
    struct hub_key_new in = {.group_id = group_id, .name = "k", .prefix = "aicp_g_u_Ab"};
    struct hub_key k;

    hash_for(in.key_hash, seed);
    GW_PASS(hub_store_key_create(st, &in, &k));
    return k.id;
}

static void
fill_record(struct gw_usage_record *r, unsigned i, uint64_t key_id, const char *model,
            int64_t time_ms)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->request_id, sizeof(r->request_id), "req_%08u", i);
    r->key_id = key_id;
    r->account_id = 100 + i % 3;
    snprintf(r->model, sizeof(r->model), "%s", model);
    snprintf(r->dialect, sizeof(r->dialect), "%s", i % 2 ? "openai" : "anthropic");
    r->input_tokens = 1000 + i;
    r->output_tokens = 2000 + i;
    r->cache_read_tokens = 30 + i;
    r->cache_write_5m_tokens = 40 + i;
    r->cache_write_1h_tokens = 50 + i;
    r->reasoning_tokens = 60 + i;
    r->status = i % 5 == 0 ? 429 : 200;
    r->latency_ms = 7 + i;
    r->time_ms = time_ms;
    r->partial = i % 4 == 1;
}

static void
apply(struct hub_store *st, const char *edge, uint64_t seq, struct gw_usage_record *recs, size_t n,
      const int64_t *costs, int want_duplicate)
{
    struct gw_wire_usage_batch b = {
        .edge_id = (char *)edge, .seq = seq, .records = recs, .n_records = n};
    int dup = -1;

    GW_PASS(hub_store_usage_apply(st, &b, costs, &dup));
    assert_int_equal(dup, want_duplicate);
}

/* Rows matching key_id (0 = all), counted through the public API. */
static size_t
usage_count(struct hub_store *st, uint64_t key_id)
{
    struct hub_usage_filter f = {.key_id = key_id, .limit = 1000, .offset = 0};
    size_t total = 0;

    for (;;) {
        struct hub_usage_row *rows = NULL;
        size_t n = 0;

        GW_PASS(hub_store_usage_list(st, &f, &rows, &n));
        free(rows);
        total += n;
        if (n < f.limit)
            return total;
        f.offset += (uint32_t)n;
    }
}

static void
assert_record_eq(const struct gw_usage_record *want, const struct hub_usage_row *got)
{
    assert_string_equal(got->rec.request_id, want->request_id);
    assert_int_equal(got->rec.key_id, want->key_id);
    assert_int_equal(got->rec.account_id, want->account_id);
    assert_string_equal(got->rec.model, want->model);
    assert_string_equal(got->rec.dialect, want->dialect);
    assert_int_equal(got->rec.input_tokens, want->input_tokens);
    assert_int_equal(got->rec.output_tokens, want->output_tokens);
    assert_int_equal(got->rec.cache_read_tokens, want->cache_read_tokens);
    assert_int_equal(got->rec.cache_write_5m_tokens, want->cache_write_5m_tokens);
    assert_int_equal(got->rec.cache_write_1h_tokens, want->cache_write_1h_tokens);
    assert_int_equal(got->rec.reasoning_tokens, want->reasoning_tokens);
    assert_int_equal(got->rec.status, want->status);
    assert_int_equal(got->rec.latency_ms, want->latency_ms);
    assert_int_equal(got->rec.time_ms, want->time_ms);
    assert_int_equal(got->rec.partial, want->partial);
}

/* ---- cases --------------------------------------------------------------- */

static void
test_dsn_errors(void **state)
{
    static const char *const bad[] = {
        "",
        "nocolon",
        "sqlite:",
        "postgres://u:p@h/db",
        "Bad Scheme:x",
        "mysql:",
        "mysql:nope",
        "mysql://u:Sup3rS3cretPw@/db",
        "mysql://u:Sup3rS3cretPw@h:99999/db",
        "mysql://u:Sup3rS3cretPw@h:33x/db",
        "mysql://u:Sup3rS3cretPw@h:3306",
        "mysql://u:Sup3rS3cretPw@h:3306/",
        "mysql://u:Sup3rS3cretPw@h/db?bogus=1",
        "mysql://u:Sup3rS3cretPw@unix()/db",
    };
    struct hub_store *st = NULL;

    (void)state;
    GW_FAIL(hub_store_open(NULL, &st, NULL), GW_EINVAL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct gw_buf err = GW_BUF_INIT;
        gw_err rv = hub_store_open(bad[i], &st, &err);

        if (rv != GW_EINVAL)
            fail_msg("%s: want EINVAL, got %s", bad[i], gw_err_name(rv));
        assert_null(st);
        assert_non_null(err.data);
        assert_true(err.len > 0);
        assert_null(strstr(err.data, "Sup3rS3cretPw"));
        gw_buf_fini(&err);
    }
    {
        /* A path SQLite cannot create fails in the backend. */
        struct gw_buf err = GW_BUF_INIT;

        GW_FAIL(hub_store_open("sqlite:/nonexistent-gw-dir/sub/hub.db", &st, &err), GW_ESTORE);
        assert_null(st);
        assert_non_null(strstr(err.data, "/nonexistent-gw-dir/sub/hub.db"));
        gw_buf_fini(&err);
    }
#ifdef GW_WITH_MYSQL
    {
        /* Well-formed, but nothing listens there: the backend fails and its
         * reason names where it tried (TCP, unix(...), ?socket=), never the
         * password. */
        char tcp_dsn[128], tcp_where[64];
        const char *unreachable[][2] = {
            {tcp_dsn, tcp_where},
            {"mysql://someone:Sup3rS3cretPw@unix(/nonexistent-gw/a.sock)/db",
             "/nonexistent-gw/a.sock"},
            {"mysql://someone:Sup3rS3cretPw@127.0.0.1/db?socket=/nonexistent-gw/b.sock",
             "/nonexistent-gw/b.sock"},
        };
        /* A port that is ours but not listening refuses at once. */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sa);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
        snprintf(tcp_dsn, sizeof(tcp_dsn), "mysql://some%%40one:Sup3rS3cretPw@127.0.0.1:%u/db",
                 ntohs(sa.sin_port));
        snprintf(tcp_where, sizeof(tcp_where), "127.0.0.1:%u", ntohs(sa.sin_port));

        for (size_t i = 0; i < sizeof(unreachable) / sizeof(unreachable[0]); i++) {
            struct gw_buf err = GW_BUF_INIT;

            GW_FAIL(hub_store_open(unreachable[i][0], &st, &err), GW_ESTORE);
            assert_null(st);
            assert_non_null(err.data);
            if (strstr(err.data, unreachable[i][1]) == NULL)
                fail_msg("%s: reason \"%s\" does not name %s", unreachable[i][0], err.data,
                         unreachable[i][1]);
            assert_null(strstr(err.data, "Sup3rS3cretPw"));
            gw_buf_fini(&err);
        }
        close(fd);
    }
#endif
}

static void
test_migrations_and_reopen(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_price *prices = NULL;
    struct hub_group g;
    size_t n_prices = 0, n_prices2 = 0;
    long long migrations, migrations2;
    uint64_t gid, aid, kid;
    uint8_t cred[] = {1, 0, 2, 0, 3};

    /* The sqlite case needs a file to reopen; mysql reopens the DSN. */
    if (backend == BACKEND_SQLITE) {
        hub_store_close(fx->st);
        snprintf(fx->dir, sizeof(fx->dir), "/tmp/gw_store_test.XXXXXX");
        assert_non_null(mkdtemp(fx->dir));
        snprintf(fx->path, sizeof(fx->path), "%s/hub.db", fx->dir);
        snprintf(fx->dsn, sizeof(fx->dsn), "sqlite:%s", fx->path);
        fx->st = open_store(fx->dsn);
    }
    assert_string_equal(hub_store_scheme(fx->st), backend == BACKEND_SQLITE ? "sqlite" : "mysql");
    assert_int_equal(version_of(fx->st), 0);
    migrations = raw_scalar(fx, "SELECT COUNT(*) FROM schema_migrations");
    assert_true(migrations >= 2);
    assert_int_equal(raw_scalar(fx, "SELECT MAX(version) FROM schema_migrations"), migrations);
    if (backend == BACKEND_SQLITE) {
        sqlite3 *db = NULL;
        sqlite3_stmt *s = NULL;

        /* WAL is a property of the file: anyone opening it sees it. */
        assert_int_equal(sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
        sqlite3_finalize(s);
        sqlite3_close(db);
    }
    GW_PASS(hub_store_prices_list(fx->st, &prices, &n_prices));
    free(prices);

    gid = make_group(fx->st, "reopen");
    aid = make_account(fx->st, "acct", cred, sizeof(cred));
    GW_PASS(hub_store_binding_create(fx->st, gid, aid));
    kid = make_key(fx->st, gid, 1);
    assert_int_equal(version_of(fx->st), 4);
    /* One change-log row per bump, numbered by the version it produced. */
    assert_int_equal(raw_scalar(fx, "SELECT COUNT(*) FROM change_log"), 4);
    assert_int_equal(raw_scalar(fx, "SELECT MAX(version) FROM change_log"), 4);
    assert_int_equal(raw_scalar(fx, "SELECT COUNT(*) FROM change_log WHERE entity = 'key' "
                                    "AND op = 'create'"),
                     1);

    /* Close and open again: same data, no migration applied twice. */
    hub_store_close(fx->st);
    fx->st = open_store(fx->dsn);
    hub_store_close(fx->st);
    fx->st = open_store(fx->dsn);
    migrations2 = raw_scalar(fx, "SELECT COUNT(*) FROM schema_migrations");
    assert_int_equal(migrations2, migrations);
    assert_int_equal(version_of(fx->st), 4);
    GW_PASS(hub_store_group_get(fx->st, gid, &g));
    assert_string_equal(g.name, "reopen");
    {
        struct hub_key k;

        GW_PASS(hub_store_key_get(fx->st, kid, &k));
        assert_int_equal(k.group_id, gid);
    }
    GW_PASS(hub_store_prices_list(fx->st, &prices, &n_prices2));
    free(prices);
    assert_int_equal(n_prices2, n_prices);
    GW_FAIL(hub_store_group_create(fx->st, "reopen", &g), GW_EEXIST);
}

static void
test_config_version(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct gw_wire_snapshot snap;
    struct hub_price *prices = NULL;
    struct hub_group g;
    struct hub_account a;
    struct hub_key k;
    size_t n = 0;
    uint64_t gid, aid, kid, count;
    uint8_t cred[] = {9, 9};

    assert_int_equal(version_of(st), 0);
    gid = make_group(st, "g1");
    assert_int_equal(version_of(st), 1);
    aid = make_account(st, "a1", cred, sizeof(cred));
    assert_int_equal(version_of(st), 2);
    GW_PASS(hub_store_binding_create(st, gid, aid));
    assert_int_equal(version_of(st), 3);
    kid = make_key(st, gid, 7);
    assert_int_equal(version_of(st), 4);

    /* Reads and failed writes leave it alone. */
    GW_PASS(hub_store_group_get(st, gid, &g));
    GW_PASS(hub_store_account_get(st, aid, &a));
    GW_PASS(hub_store_key_get(st, kid, &k));
    GW_PASS(hub_store_snapshot_load(st, &snap));
    assert_int_equal(snap.version, 4);
    hub_store_snapshot_fini(&snap);
    GW_PASS(hub_store_prices_list(st, &prices, &n));
    free(prices);
    GW_PASS(hub_store_admin_count(st, &count));
    GW_FAIL(hub_store_group_create(st, "g1", &g), GW_EEXIST);
    GW_FAIL(hub_store_binding_create(st, gid, aid), GW_EEXIST);
    GW_FAIL(hub_store_binding_create(st, gid + 100, aid), GW_ENOTFOUND);
    {
        struct hub_key_new in = {.group_id = gid + 100, .prefix = "p"};
        GW_FAIL(hub_store_key_create(st, &in, &k), GW_ENOTFOUND);
    }
    assert_int_equal(version_of(st), 4);

    /* Admins and usage are not replicated configuration. */
    GW_PASS(hub_store_admin_create(st, "root", "hash", 1, NULL));
    {
        struct gw_usage_record r;

        fill_record(&r, 1, kid, "claude-sonnet-4", 1000);
        apply(st, "edge-1", 1, &r, 1, NULL, 0);
    }
    assert_int_equal(version_of(st), 4);
}

static void
test_admins(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct hub_admin a;
    uint64_t n = 99, id1 = 0, id2 = 0;
    char long_hash[700];

    GW_PASS(hub_store_admin_count(st, &n));
    assert_int_equal(n, 0);
    memset(long_hash, 'h', sizeof(long_hash) - 1);
    long_hash[sizeof(long_hash) - 1] = '\0';
    memcpy(long_hash, "$scrypt$", 8);
    GW_PASS(hub_store_admin_create(st, "alice", long_hash, 1, &id1));
    GW_PASS(hub_store_admin_create(st, "bob", "$scrypt$bob", 0, &id2));
    assert_true(id1 > 0);
    assert_true(id2 > id1);
    GW_PASS(hub_store_admin_count(st, &n));
    assert_int_equal(n, 2);

    GW_PASS(hub_store_admin_get(st, "alice", &a));
    assert_int_equal(a.id, id1);
    assert_string_equal(a.username, "alice");
    assert_string_equal(a.password_hash, long_hash);
    assert_int_equal(a.must_change_password, 1);
    hub_admin_fini(&a);
    assert_null(a.password_hash);
    GW_PASS(hub_store_admin_get(st, "bob", &a));
    assert_int_equal(a.id, id2);
    assert_string_equal(a.password_hash, "$scrypt$bob");
    assert_int_equal(a.must_change_password, 0);
    hub_admin_fini(&a);

    GW_FAIL(hub_store_admin_get(st, "carol", &a), GW_ENOTFOUND);
    GW_FAIL(hub_store_admin_get(st, "ALICE", &a), GW_ENOTFOUND);
    GW_FAIL(hub_store_admin_create(st, "alice", "x", 0, NULL), GW_EEXIST);
    GW_FAIL(hub_store_admin_create(st, "", "x", 0, NULL), GW_EINVAL);
    GW_FAIL(hub_store_admin_create(st, "dave", NULL, 0, NULL), GW_EINVAL);
    GW_PASS(hub_store_admin_count(st, &n));
    assert_int_equal(n, 2);
}

static void
test_groups(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct hub_group g1, g2, got;
    char too_long[200];

    GW_PASS(hub_store_group_create(st, "engineering", &g1));
    assert_true(g1.id > 0);
    assert_string_equal(g1.name, "engineering");
    assert_true(g1.created_at > 1600000000);
    GW_PASS(hub_store_group_create(st, "Engineering", &g2)); /* names are case-sensitive */
    assert_true(g2.id != g1.id);
    GW_FAIL(hub_store_group_create(st, "engineering", &got), GW_EEXIST);

    GW_PASS(hub_store_group_get(st, g1.id, &got));
    assert_int_equal(got.id, g1.id);
    assert_string_equal(got.name, "engineering");
    assert_int_equal(got.created_at, g1.created_at);
    GW_FAIL(hub_store_group_get(st, g2.id + 1000, &got), GW_ENOTFOUND);

    memset(too_long, 'x', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';
    GW_FAIL(hub_store_group_create(st, too_long, &got), GW_EINVAL);
    GW_FAIL(hub_store_group_create(st, "", &got), GW_EINVAL);
    /* The longest name that fits comes back whole. */
    too_long[sizeof(got.name) - 1] = '\0';
    GW_PASS(hub_store_group_create(st, too_long, &got));
    GW_PASS(hub_store_group_get(st, got.id, &g2));
    assert_string_equal(g2.name, too_long);
}

static void
test_accounts(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    uint8_t cred[] = {0, 1, 2, 0xff, 0, 0x80};
    struct hub_account_new in = {
        .name = "anthropic-main",
        .kind = "anthropic",
        .base_url = "https://api.anthropic.com",
        .credential_sealed = cred,
        .credential_sealed_len = sizeof(cred),
        .priority = -2,
        .weight = 40,
    };
    struct hub_account a, got;

    GW_PASS(hub_store_account_create(st, &in, &a));
    assert_true(a.id > 0);
    GW_PASS(hub_store_account_get(st, a.id, &got));
    assert_int_equal(got.id, a.id);
    assert_string_equal(got.name, "anthropic-main");
    assert_string_equal(got.kind, "anthropic");
    assert_string_equal(got.base_url, "https://api.anthropic.com");
    assert_int_equal(got.priority, -2);
    assert_int_equal(got.weight, 40);
    assert_int_equal(got.enabled, 1);
    assert_int_equal(got.created_at, a.created_at);
    GW_FAIL(hub_store_account_get(st, a.id + 1, &got), GW_ENOTFOUND);

    /* Names need not be unique; a missing credential is stored empty. */
    in.credential_sealed = NULL;
    in.credential_sealed_len = 0;
    in.base_url = NULL;
    GW_PASS(hub_store_account_create(st, &in, &got));
    assert_true(got.id != a.id);
    GW_PASS(hub_store_account_get(st, got.id, &got));
    assert_string_equal(got.base_url, "");

    in.kind = NULL;
    GW_FAIL(hub_store_account_create(st, &in, &got), GW_EINVAL);
    in.kind = "mock";
    in.credential_sealed_len = 3; /* length without data */
    GW_FAIL(hub_store_account_create(st, &in, &got), GW_EINVAL);
}

static void
test_bindings(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    uint8_t cred[] = {1};
    uint64_t g1 = make_group(st, "g1"), g2 = make_group(st, "g2");
    uint64_t a1 = make_account(st, "a1", cred, 1), a2 = make_account(st, "a2", cred, 1);

    GW_PASS(hub_store_binding_create(st, g1, a1));
    GW_PASS(hub_store_binding_create(st, g1, a2));
    GW_PASS(hub_store_binding_create(st, g2, a1));
    GW_FAIL(hub_store_binding_create(st, g1, a1), GW_EEXIST);
    GW_FAIL(hub_store_binding_create(st, g2 + 50, a1), GW_ENOTFOUND);
    GW_FAIL(hub_store_binding_create(st, g1, a2 + 50), GW_ENOTFOUND);
    GW_FAIL(hub_store_binding_create(st, 0, 0), GW_ENOTFOUND);
}

static void
test_keys(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    uint64_t gid = make_group(st, "team");
    struct hub_key_new in = {.group_id = gid, .name = "laptop", .prefix = "aicp_g1_u1_AbCd"};
    struct hub_key k, got;

    hash_for(in.key_hash, 42);
    GW_PASS(hub_store_key_create(st, &in, &k));
    assert_true(k.id > 0);
    assert_int_equal(k.group_id, gid);
    assert_int_equal(k.enabled, 1);
    GW_PASS(hub_store_key_get(st, k.id, &got));
    assert_int_equal(got.id, k.id);
    assert_int_equal(got.group_id, gid);
    assert_string_equal(got.name, "laptop");
    assert_string_equal(got.prefix, "aicp_g1_u1_AbCd");
    assert_int_equal(got.enabled, 1);
    assert_int_equal(got.expires_at, 0);
    assert_int_equal(got.created_at, k.created_at);
    GW_FAIL(hub_store_key_get(st, k.id + 1, &got), GW_ENOTFOUND);

    /* The same hash twice is refused; a missing group is not found. */
    GW_FAIL(hub_store_key_create(st, &in, &got), GW_EEXIST);
    hash_for(in.key_hash, 43);
    in.group_id = gid + 9;
    GW_FAIL(hub_store_key_create(st, &in, &got), GW_ENOTFOUND);
    in.group_id = gid;
    in.prefix = NULL;
    GW_FAIL(hub_store_key_create(st, &in, &got), GW_EINVAL);
}

static void
test_snapshot(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct gw_wire_snapshot snap;
    uint8_t cred_a[] = {0xde, 0xad, 0, 0xbe, 0xef, 0};
    uint8_t cred_b[300];
    uint64_t g[2], a[3], k[3];

    /* Empty store: version 0, nothing in it. */
    GW_PASS(hub_store_snapshot_load(st, &snap));
    assert_int_equal(snap.version, 0);
    assert_int_equal(snap.unchanged, 0);
    assert_int_equal(snap.n_keys + snap.n_groups + snap.n_accounts + snap.n_bindings, 0);
    hub_store_snapshot_fini(&snap);

    for (size_t i = 0; i < sizeof(cred_b); i++)
        cred_b[i] = (uint8_t)(i * 13);
    g[0] = make_group(st, "alpha");
    g[1] = make_group(st, "beta");
    a[0] = make_account(st, "acc-a", cred_a, sizeof(cred_a));
    a[1] = make_account(st, "acc-b", cred_b, sizeof(cred_b));
    a[2] = make_account(st, "acc-c", NULL, 0);
    GW_PASS(hub_store_binding_create(st, g[0], a[0]));
    GW_PASS(hub_store_binding_create(st, g[0], a[1]));
    GW_PASS(hub_store_binding_create(st, g[1], a[2]));
    k[0] = make_key(st, g[0], 1);
    k[1] = make_key(st, g[0], 2);
    k[2] = make_key(st, g[1], 3);

    GW_PASS(hub_store_snapshot_load(st, &snap));
    assert_int_equal(snap.version, version_of(st));
    assert_int_equal(snap.version, 11);

    assert_int_equal(snap.n_groups, 2);
    assert_int_equal(snap.groups[0].id, g[0]);
    assert_string_equal(snap.groups[0].name, "alpha");
    assert_int_equal(snap.groups[1].id, g[1]);
    assert_string_equal(snap.groups[1].name, "beta");

    assert_int_equal(snap.n_accounts, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(snap.accounts[i].id, a[i]);
        assert_string_equal(snap.accounts[i].kind, "mock");
        assert_string_equal(snap.accounts[i].base_url, "http://127.0.0.1:1");
        assert_int_equal(snap.accounts[i].priority, 5);
        assert_int_equal(snap.accounts[i].weight, 3);
        assert_int_equal(snap.accounts[i].enabled, 1);
    }
    assert_string_equal(snap.accounts[0].name, "acc-a");
    assert_int_equal(snap.accounts[0].credential_len, sizeof(cred_a));
    assert_memory_equal(snap.accounts[0].credential, cred_a, sizeof(cred_a));
    assert_int_equal(snap.accounts[1].credential_len, sizeof(cred_b));
    assert_memory_equal(snap.accounts[1].credential, cred_b, sizeof(cred_b));
    assert_int_equal(snap.accounts[2].credential_len, 0);

    assert_int_equal(snap.n_bindings, 3);
    assert_int_equal(snap.bindings[0].group_id, g[0]);
    assert_int_equal(snap.bindings[0].account_id, a[0]);
    assert_int_equal(snap.bindings[1].group_id, g[0]);
    assert_int_equal(snap.bindings[1].account_id, a[1]);
    assert_int_equal(snap.bindings[2].group_id, g[1]);
    assert_int_equal(snap.bindings[2].account_id, a[2]);

    assert_int_equal(snap.n_keys, 3);
    for (unsigned i = 0; i < 3; i++) {
        uint8_t want[GW_SHA256_LEN];

        hash_for(want, i + 1);
        assert_int_equal(snap.keys[i].id, k[i]);
        assert_memory_equal(snap.keys[i].key_hash, want, GW_SHA256_LEN);
        assert_int_equal(snap.keys[i].group_id, i < 2 ? g[0] : g[1]);
        assert_int_equal(snap.keys[i].enabled, 1);
        assert_int_equal(snap.keys[i].expires_at, 0);
    }
    hub_store_snapshot_fini(&snap);
    assert_null(snap.keys);
    assert_int_equal(snap.n_accounts, 0);
}

static const struct hub_price *
find_price(const struct hub_price *p, size_t n, const char *prefix)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(p[i].model_prefix, prefix) == 0)
            return &p[i];
    }
    fail_msg("no price row for %s", prefix);
    return NULL;
}

static void
check_price(const struct hub_price *p, int64_t in, int64_t out, int64_t w5, int64_t w1h, int64_t rd)
{
    assert_int_equal(p->input, in);
    assert_int_equal(p->output, out);
    assert_int_equal(p->cache_write_5m, w5);
    assert_int_equal(p->cache_write_1h, w1h);
    assert_int_equal(p->cache_read, rd);
}

static void
test_prices(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_price *p = NULL;
    size_t n = 0;

    GW_PASS(hub_store_prices_list(fx->st, &p, &n));
    assert_true(n >= 7);
    check_price(find_price(p, n, "claude-opus-4"), 15000000, 75000000, 18750000, 30000000, 1500000);
    check_price(find_price(p, n, "claude-sonnet-4"), 3000000, 15000000, 3750000, 6000000, 300000);
    check_price(find_price(p, n, "claude-sonnet-4-5"), 3000000, 15000000, 3750000, 6000000, 300000);
    check_price(find_price(p, n, "claude-3-7-sonnet"), 3000000, 15000000, 3750000, 6000000, 300000);
    check_price(find_price(p, n, "claude-haiku-4-5"), 1000000, 5000000, 1250000, 2000000, 100000);
    check_price(find_price(p, n, "claude-3-5-haiku"), 800000, 4000000, 1000000, 1600000, 80000);
    check_price(find_price(p, n, "fake-"), 1000000, 2000000, 1250000, 2000000, 100000);
    /* Sorted by prefix, so a longest-prefix matcher can scan it. */
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(p[i - 1].model_prefix, p[i].model_prefix) < 0);
    free(p);
}

static void
test_usage_apply(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct gw_usage_record recs[3];
    int64_t costs[3] = {123456789, -1, 0};
    struct hub_usage_filter f = {.limit = 10};
    struct hub_usage_row *rows = NULL;
    size_t n = 0;
    uint64_t seq = 99;

    GW_PASS(hub_store_edge_last_seq(st, "edge-a", &seq));
    assert_int_equal(seq, 0);

    fill_record(&recs[0], 0, 11, "claude-opus-4-1-20250805", 3000);
    fill_record(&recs[1], 1, 12, "unpriced-model", 2000);
    fill_record(&recs[2], 2, 11, "fake-model", 1000);
    /* Extreme values must come back exactly. */
    recs[0].input_tokens = UINT64_C(0xFFFFFFFFFFFFFFF0);
    recs[0].status = 599;
    recs[0].latency_ms = UINT32_MAX;
    recs[2].time_ms = -5;
    /* A request id that fills its array has no NUL. */
    memset(recs[2].request_id, 'r', sizeof(recs[2].request_id));
    apply(st, "edge-a", 1, recs, 3, costs, 0);

    GW_PASS(hub_store_edge_last_seq(st, "edge-a", &seq));
    assert_int_equal(seq, 1);
    GW_PASS(hub_store_usage_list(st, &f, &rows, &n));
    assert_int_equal(n, 3);
    /* Newest first. */
    assert_record_eq(&recs[0], &rows[0]);
    assert_int_equal(rows[0].cost_micros, 123456789);
    assert_string_equal(rows[0].edge_id, "edge-a");
    assert_record_eq(&recs[1], &rows[1]);
    assert_int_equal(rows[1].cost_micros, -1);
    assert_int_equal(rows[2].cost_micros, 0);
    assert_int_equal(strlen(rows[2].rec.request_id), sizeof(recs[2].request_id) - 1);
    assert_int_equal(rows[2].rec.time_ms, -5);
    assert_true(rows[0].id != rows[1].id && rows[1].id != rows[2].id);
    free(rows);

    /* The same seq again, and a lower one, change nothing. */
    apply(st, "edge-a", 1, recs, 3, costs, 1);
    assert_int_equal(usage_count(st, 0), 3);
    apply(st, "edge-a", 5, recs, 1, NULL, 0);
    assert_int_equal(usage_count(st, 0), 4);
    apply(st, "edge-a", 4, recs, 3, costs, 1);
    apply(st, "edge-a", 0, recs, 3, costs, 1);
    assert_int_equal(usage_count(st, 0), 4);
    GW_PASS(hub_store_edge_last_seq(st, "edge-a", &seq));
    assert_int_equal(seq, 5);

    /* Sequences are per edge. */
    apply(st, "edge-b", 1, recs, 2, costs, 0);
    assert_int_equal(usage_count(st, 0), 6);
    GW_PASS(hub_store_edge_last_seq(st, "edge-b", &seq));
    assert_int_equal(seq, 1);
    GW_PASS(hub_store_edge_last_seq(st, "edge-a", &seq));
    assert_int_equal(seq, 5);

    /* An empty batch still advances the seq. */
    apply(st, "edge-b", 2, NULL, 0, NULL, 0);
    GW_PASS(hub_store_edge_last_seq(st, "edge-b", &seq));
    assert_int_equal(seq, 2);
    assert_int_equal(usage_count(st, 0), 6);

    {
        struct gw_wire_usage_batch b = {.edge_id = NULL, .seq = 9};
        int dup;

        GW_FAIL(hub_store_usage_apply(st, &b, NULL, &dup), GW_EINVAL);
        b.edge_id = (char *)"edge-c";
        b.n_records = 2;
        GW_FAIL(hub_store_usage_apply(st, &b, NULL, &dup), GW_EINVAL);
    }
}

static void
test_usage_list(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct gw_usage_record recs[30];
    int64_t costs[30];
    struct hub_usage_filter f = {0};
    struct hub_usage_row *rows = NULL;
    size_t n = 0;

    /* Key 7 gets the even records, key 8 the odd ones; times ascend. */
    for (unsigned i = 0; i < 30; i++) {
        fill_record(&recs[i], i, i % 2 ? 8 : 7, i % 3 ? "claude-sonnet-4" : "mystery", 10000 + i);
        costs[i] = i % 3 ? (int64_t)i * 1000 : -1;
    }
    apply(st, "edge-x", 1, recs, 20, costs, 0);
    apply(st, "edge-x", 2, &recs[20], 10, &costs[20], 0);

    f.key_id = 7;
    f.limit = 100;
    GW_PASS(hub_store_usage_list(st, &f, &rows, &n));
    assert_int_equal(n, 15);
    for (size_t j = 0; j < n; j++) {
        unsigned i = 28 - 2 * (unsigned)j; /* newest first */
        assert_record_eq(&recs[i], &rows[j]);
        assert_int_equal(rows[j].cost_micros, costs[i]);
    }
    free(rows);

    f.limit = 4;
    f.offset = 3;
    GW_PASS(hub_store_usage_list(st, &f, &rows, &n));
    assert_int_equal(n, 4);
    assert_int_equal(rows[0].rec.time_ms, 10000 + 22);
    assert_int_equal(rows[3].rec.time_ms, 10000 + 16);
    free(rows);

    f.key_id = 0;
    f.offset = 0;
    f.limit = 0; /* clamped up to 1 */
    GW_PASS(hub_store_usage_list(st, &f, &rows, &n));
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].rec.time_ms, 10029);
    free(rows);

    f.limit = 100000; /* clamped down to the maximum */
    GW_PASS(hub_store_usage_list(st, &f, &rows, &n));
    assert_int_equal(n, 30);
    for (size_t j = 1; j < n; j++)
        assert_true(rows[j - 1].rec.time_ms > rows[j].rec.time_ms);
    free(rows);

    f.offset = 30;
    GW_PASS(hub_store_usage_list(st, &f, &rows, &n));
    assert_int_equal(n, 0);
    assert_null(rows);

    f.key_id = 999;
    f.offset = 0;
    GW_PASS(hub_store_usage_list(st, &f, &rows, &n));
    assert_int_equal(n, 0);
    assert_int_equal(usage_count(st, 8), 15);
}

static void
test_usage_big_batch(void **state)
{
    enum { N = 10000 };
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct gw_usage_record *recs = calloc(N, sizeof(*recs));
    int64_t *costs = calloc(N, sizeof(*costs));
    struct hub_usage_filter f = {.limit = 1000, .offset = N - 1};
    struct hub_usage_row *rows = NULL;
    size_t n = 0;
    uint64_t seq = 0;

    assert_non_null(recs);
    assert_non_null(costs);
    for (unsigned i = 0; i < N; i++) {
        fill_record(&recs[i], i, 1 + i % 10, "claude-haiku-4-5", 1700000000000LL + i);
        costs[i] = i % 7 ? (int64_t)i : -1;
    }
    apply(st, "edge-big", 1, recs, N, costs, 0);
    assert_int_equal(usage_count(st, 0), N);
    assert_int_equal(usage_count(st, 3), N / 10);
    GW_PASS(hub_store_edge_last_seq(st, "edge-big", &seq));
    assert_int_equal(seq, 1);

    /* The oldest row is the first record, intact. */
    GW_PASS(hub_store_usage_list(st, &f, &rows, &n));
    assert_int_equal(n, 1);
    assert_record_eq(&recs[0], &rows[0]);
    assert_int_equal(rows[0].cost_micros, -1);
    free(rows);

    /* Resending the whole batch is a no-op. */
    apply(st, "edge-big", 1, recs, N, costs, 1);
    assert_int_equal(usage_count(st, 0), N);
    free(recs);
    free(costs);
}

struct thread_arg {
    struct hub_store *st;
    char edge[16];
    gw_err rv;
};

static void *
usage_thread(void *arg)
{
    struct thread_arg *t = arg;
    struct gw_usage_record recs[40];

    t->rv = GW_OK;
    for (uint64_t seq = 1; seq <= 25 && t->rv == GW_OK; seq++) {
        struct gw_wire_usage_batch b = {
            .edge_id = t->edge, .seq = seq, .records = recs, .n_records = 40};
        int dup = 0;

        for (unsigned i = 0; i < 40; i++)
            fill_record(&recs[i], i, 5, "fake-x", (int64_t)seq * 100 + i);
        t->rv = hub_store_usage_apply(t->st, &b, NULL, &dup);
        if (t->rv == GW_OK && dup)
            t->rv = GW_EINTERNAL;
    }
    return NULL;
}

/* The wrappers serialise callers: four threads on one store. */
static void
test_usage_threads(void **state)
{
    struct fixture *fx = fx_get(state);
    struct thread_arg args[4];
    pthread_t th[4];

    for (int i = 0; i < 4; i++) {
        args[i].st = fx->st;
        snprintf(args[i].edge, sizeof(args[i].edge), "edge-t%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, usage_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        uint64_t seq = 0;

        assert_int_equal(pthread_join(th[i], NULL), 0);
        GW_PASS(args[i].rv);
        GW_PASS(hub_store_edge_last_seq(fx->st, args[i].edge, &seq));
        assert_int_equal(seq, 25);
    }
    assert_int_equal(usage_count(fx->st, 5), 4 * 25 * 40);
}

#ifdef GW_WITH_MYSQL
/* The server drops the store's connection (wait_timeout, restart, KILL):
 * at most one call fails, then the store reconnects and re-prepares. */
static void
test_mysql_reconnect(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct gw_usage_record r;
    struct hub_group g;
    MYSQL_RES *res;
    MYSQL_ROW row;
    MYSQL *m;
    uint64_t v = 0;
    int killed = 0;
    gw_err rv;

    if (backend != BACKEND_MYSQL)
        skip();
    fill_record(&r, 1, 3, "fake-a", 5);
    apply(st, "edge-r", 1, &r, 1, NULL, 0);
    make_group(st, "before");

    m = raw_mysql_connect(1);
    raw_mysql_exec(m, "SELECT ID FROM information_schema.PROCESSLIST "
                      "WHERE USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1) "
                      "AND ID <> CONNECTION_ID()");
    res = mysql_store_result(m);
    assert_non_null(res);
    for (row = mysql_fetch_row(res); row != NULL; row = mysql_fetch_row(res)) {
        char sql[64];

        snprintf(sql, sizeof(sql), "KILL CONNECTION %s", row[0]);
        if (mysql_query(m, sql) == 0)
            killed++;
    }
    mysql_free_result(res);
    mysql_close(m);
    assert_true(killed >= 1);

    rv = hub_store_config_version(st, &v);
    if (rv != GW_OK)
        GW_PASS(hub_store_config_version(st, &v));
    assert_int_equal(v, 1);
    fill_record(&r, 2, 3, "fake-a", 6);
    apply(st, "edge-r", 2, &r, 1, NULL, 0);
    GW_PASS(hub_store_group_create(st, "after", &g));
    assert_int_equal(version_of(st), 2);
    assert_int_equal(usage_count(st, 3), 2);
}
#endif

int
main(void)
{
    const char *b = getenv("GW_TEST_STORE_BACKEND");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dsn_errors),
        cmocka_unit_test_setup_teardown(test_migrations_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accounts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bindings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_big_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_threads, setup, teardown),
#ifdef GW_WITH_MYSQL
        cmocka_unit_test_setup_teardown(test_mysql_reconnect, setup, teardown),
#endif
    };

    if (b != NULL && strcmp(b, "mysql") == 0) {
#ifdef GW_WITH_MYSQL
        backend = BACKEND_MYSQL;
        mysql_dsn = getenv("GW_TEST_MYSQL_DSN");
        if (mysql_dsn == NULL || *mysql_dsn == '\0') {
            mysql_dsn = NULL;
            fprintf(stderr, "hub_store_test: GW_TEST_MYSQL_DSN is not set: skipping the mysql "
                            "backend (start a server with scripts/test-mysql start DIR)\n");
        }
#else
        fprintf(stderr, "hub_store_test: built without GW_WITH_MYSQL: nothing to test\n");
        return 0;
#endif
    } else if (b != NULL && *b != '\0' && strcmp(b, "sqlite") != 0) {
        fprintf(stderr, "hub_store_test: unknown GW_TEST_STORE_BACKEND \"%s\"\n", b);
        return 1;
    }
    return cmocka_run_group_tests_name(backend == BACKEND_MYSQL ? "store[mysql]" : "store[sqlite]",
                                       tests, NULL, NULL);
}
