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
#include <time.h>
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

/* ---- routing configuration: accounts, pools, group modes, key limits ---- */

/* Switches a sqlite fixture to a file, so raw_scalar can read it. */
static void
use_file(struct fixture *fx)
{
    if (backend != BACKEND_SQLITE)
        return;
    hub_store_close(fx->st);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/gw_store_test.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof(fx->path), "%s/hub.db", fx->dir);
    snprintf(fx->dsn, sizeof(fx->dsn), "sqlite:%s", fx->path);
    fx->st = open_store(fx->dsn);
}

static void
assert_models(char **got, size_t n_got, const char *const *want, size_t n_want)
{
    assert_int_equal(n_got, n_want);
    for (size_t i = 0; i < n_want; i++)
        assert_string_equal(got[i], want[i]);
    if (n_want == 0)
        assert_null(got);
}

static void
test_account_fields(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st;
    static const char *const models[] = {"claude-sonnet-4-5", "kimi-k2-0905-preview",
                                         "\xe6\xa8\xa1\xe5\x9e\x8b \"quoted\" \\ back"};
    static const char *const models2[] = {"glm-4.5"};
    uint8_t cred[] = {7, 0, 7};
    uint8_t cred2[] = {1, 2, 3, 4, 0, 5};
    struct hub_account_new in = {
        .name = "kimi",
        .kind = "anthropic_compatible",
        .base_url = "https://api.moonshot.ai/anthropic",
        .credential_sealed = cred,
        .credential_sealed_len = sizeof(cred),
        .priority = 3,
        .weight = 2,
        .models = models,
        .n_models = 3,
        .max_concurrency = 100000,
        .proxy = "socks5h://user:pw@127.0.0.1:1080",
    };
    struct hub_account_patch patch;
    struct hub_account a, got, *list = NULL;
    struct gw_wire_snapshot snap;
    size_t n = 0;
    uint64_t v, plain_id;

    use_file(fx);
    st = fx->st;
    GW_PASS(hub_store_account_create(st, &in, &a));
    assert_string_equal(a.name, "kimi");
    assert_string_equal(a.kind, "anthropic_compatible");
    assert_models(a.models, a.n_models, models, 3);
    assert_int_equal(a.max_concurrency, 100000);
    assert_string_equal(a.proxy, "socks5h://user:pw@127.0.0.1:1080");
    assert_int_equal(a.enabled, 1);
    assert_string_equal(a.disabled_reason, "");
    assert_int_equal(a.cooldown_until_ms, 0);
    assert_int_equal(a.auth_failures, 0);
    GW_PASS(hub_store_account_get(st, a.id, &got));
    assert_models(got.models, got.n_models, models, 3);
    assert_int_equal(got.priority, 3);
    assert_int_equal(got.weight, 2);
    assert_string_equal(got.proxy, in.proxy);
    hub_account_fini(&got);
    assert_null(got.models);

    plain_id = make_account(st, "plain", NULL, 0);
    GW_PASS(hub_store_account_list(st, &list, &n));
    assert_int_equal(n, 2);
    assert_int_equal(list[0].id, a.id);
    assert_models(list[0].models, list[0].n_models, models, 3);
    assert_int_equal(list[1].id, plain_id);
    assert_int_equal(list[1].n_models, 0);
    assert_string_equal(list[1].proxy, "");
    assert_int_equal(list[1].max_concurrency, 0);
    hub_accounts_free(list, n);

    /* Each field on its own; the others stay. */
    v = version_of(st);
    memset(&patch, 0, sizeof(patch));
    patch.fields = HUB_ACCOUNT_SET_MODELS;
    patch.models = models2;
    patch.n_models = 1;
    GW_PASS(hub_store_account_update(st, a.id, &patch, &got));
    assert_models(got.models, got.n_models, models2, 1);
    assert_string_equal(got.proxy, in.proxy);
    assert_int_equal(got.max_concurrency, 100000);
    hub_account_fini(&got);
    assert_int_equal(version_of(st), v + 1);

    memset(&patch, 0, sizeof(patch));
    patch.fields = HUB_ACCOUNT_SET_PROXY | HUB_ACCOUNT_SET_MAX_CONCURRENCY |
                   HUB_ACCOUNT_SET_PRIORITY | HUB_ACCOUNT_SET_WEIGHT | HUB_ACCOUNT_SET_NAME |
                   HUB_ACCOUNT_SET_BASE_URL | HUB_ACCOUNT_SET_CREDENTIAL;
    patch.proxy = NULL; /* clears */
    patch.max_concurrency = 0;
    patch.priority = -7;
    patch.weight = 900;
    patch.name = "kimi-renamed";
    patch.base_url = "https://relay.example/anthropic";
    patch.credential_sealed = cred2;
    patch.credential_sealed_len = sizeof(cred2);
    GW_PASS(hub_store_account_update(st, a.id, &patch, &got));
    assert_string_equal(got.proxy, "");
    assert_int_equal(got.max_concurrency, 0);
    assert_int_equal(got.priority, -7);
    assert_int_equal(got.weight, 900);
    assert_string_equal(got.name, "kimi-renamed");
    assert_string_equal(got.base_url, "https://relay.example/anthropic");
    assert_models(got.models, got.n_models, models2, 1);
    assert_string_equal(got.kind, "anthropic_compatible");
    hub_account_fini(&got);
    assert_int_equal(version_of(st), v + 2);

    /* An empty model list means any model. */
    memset(&patch, 0, sizeof(patch));
    patch.fields = HUB_ACCOUNT_SET_MODELS;
    GW_PASS(hub_store_account_update(st, a.id, &patch, &got));
    assert_int_equal(got.n_models, 0);
    hub_account_fini(&got);

    /* Disabling by hand records why; enabling clears it. */
    memset(&patch, 0, sizeof(patch));
    patch.fields = HUB_ACCOUNT_SET_ENABLED;
    patch.enabled = 0;
    GW_PASS(hub_store_account_update(st, a.id, &patch, &got));
    assert_int_equal(got.enabled, 0);
    assert_string_equal(got.disabled_reason, "disabled by an admin");
    hub_account_fini(&got);
    patch.enabled = 1;
    GW_PASS(hub_store_account_update(st, a.id, &patch, &got));
    assert_int_equal(got.enabled, 1);
    assert_string_equal(got.disabled_reason, "");
    hub_account_fini(&got);
    assert_int_equal(version_of(st), v + 5);
    assert_int_equal(raw_scalar(fx, "SELECT COUNT(*) FROM change_log WHERE entity = 'account' "
                                    "AND op = 'update'"),
                     5);

    /* The new credential is what the snapshot carries. */
    GW_PASS(hub_store_snapshot_load(st, &snap));
    assert_int_equal(snap.n_accounts, 2);
    assert_int_equal(snap.accounts[0].credential_len, sizeof(cred2));
    assert_memory_equal(snap.accounts[0].credential, cred2, sizeof(cred2));
    assert_null(snap.accounts[0].proxy);
    hub_store_snapshot_fini(&snap);

    /* Refusals change nothing. */
    v = version_of(st);
    memset(&patch, 0, sizeof(patch));
    GW_FAIL(hub_store_account_update(st, a.id, &patch, &got), GW_EINVAL); /* no field */
    patch.fields = HUB_ACCOUNT_SET_ENABLED;
    GW_FAIL(hub_store_account_update(st, plain_id + 100, &patch, &got), GW_ENOTFOUND);
    patch.fields = HUB_ACCOUNT_SET_NAME;
    patch.name = "";
    GW_FAIL(hub_store_account_update(st, a.id, &patch, &got), GW_EINVAL);
    {
        const char *many[HUB_STORE_MODELS_MAX + 1];
        char long_model[HUB_STORE_MODEL_LEN_MAX + 2];

        for (size_t i = 0; i <= HUB_STORE_MODELS_MAX; i++)
            many[i] = "m";
        patch.fields = HUB_ACCOUNT_SET_MODELS;
        patch.models = many;
        patch.n_models = HUB_STORE_MODELS_MAX + 1;
        GW_FAIL(hub_store_account_update(st, a.id, &patch, &got), GW_EINVAL);
        in.models = many;
        in.n_models = HUB_STORE_MODELS_MAX + 1;
        GW_FAIL(hub_store_account_create(st, &in, &got), GW_EINVAL);
        many[5] = "";
        patch.n_models = 10;
        GW_FAIL(hub_store_account_update(st, a.id, &patch, &got), GW_EINVAL);
        memset(long_model, 'x', sizeof(long_model) - 1);
        long_model[sizeof(long_model) - 1] = '\0';
        many[5] = long_model;
        GW_FAIL(hub_store_account_update(st, a.id, &patch, &got), GW_EINVAL);
        /* The longest name and the most names that fit come back whole. */
        long_model[HUB_STORE_MODEL_LEN_MAX] = '\0';
        patch.n_models = HUB_STORE_MODELS_MAX;
        assert_int_equal(version_of(st), v);
        GW_PASS(hub_store_account_update(st, a.id, &patch, &got));
        assert_int_equal(got.n_models, HUB_STORE_MODELS_MAX);
        assert_string_equal(got.models[5], long_model);
        assert_string_equal(got.models[HUB_STORE_MODELS_MAX - 1], "m");
        hub_account_fini(&got);
    }
    hub_account_fini(&a);
}

static void
test_pools(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct hub_pool pool, other, got, *list = NULL;
    uint64_t a1 = make_account(st, "a1", NULL, 0), a2 = make_account(st, "a2", NULL, 0);
    uint64_t a3 = make_account(st, "a3", NULL, 0), v;
    size_t n = 0;

    v = version_of(st);
    GW_PASS(hub_store_pool_create(st, "enterprise", &pool));
    assert_true(pool.id > 0);
    assert_string_equal(pool.name, "enterprise");
    assert_true(pool.created_at > 1600000000);
    assert_int_equal(pool.n_account_ids, 0);
    assert_int_equal(version_of(st), v + 1);
    GW_FAIL(hub_store_pool_create(st, "enterprise", &other), GW_EEXIST);
    GW_FAIL(hub_store_pool_create(st, "", &other), GW_EINVAL);
    GW_PASS(hub_store_pool_create(st, "spare", &other));
    assert_true(other.id > pool.id);

    /* Members keep the order they joined in. */
    GW_PASS(hub_store_pool_add_account(st, pool.id, a3));
    GW_PASS(hub_store_pool_add_account(st, pool.id, a1));
    GW_PASS(hub_store_pool_add_account(st, other.id, a1));
    assert_int_equal(version_of(st), v + 5);
    GW_FAIL(hub_store_pool_add_account(st, pool.id, a3), GW_EEXIST);
    GW_FAIL(hub_store_pool_add_account(st, pool.id + 100, a2), GW_ENOTFOUND);
    GW_FAIL(hub_store_pool_add_account(st, pool.id, a3 + 100), GW_ENOTFOUND);
    assert_int_equal(version_of(st), v + 5);

    GW_PASS(hub_store_pool_get(st, pool.id, &got));
    assert_string_equal(got.name, "enterprise");
    assert_int_equal(got.n_account_ids, 2);
    assert_int_equal(got.account_ids[0], a3);
    assert_int_equal(got.account_ids[1], a1);
    hub_pool_fini(&got);
    GW_FAIL(hub_store_pool_get(st, other.id + 100, &got), GW_ENOTFOUND);

    GW_PASS(hub_store_pool_list(st, &list, &n));
    assert_int_equal(n, 2);
    assert_int_equal(list[0].id, pool.id);
    assert_int_equal(list[0].n_account_ids, 2);
    assert_int_equal(list[0].account_ids[1], a1);
    assert_int_equal(list[1].id, other.id);
    assert_string_equal(list[1].name, "spare");
    assert_int_equal(list[1].n_account_ids, 1);
    assert_int_equal(list[1].account_ids[0], a1);
    hub_pools_free(list, n);
}

static void
test_group_modes(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct hub_group_patch patch;
    struct hub_group g, got, *list = NULL;
    struct hub_pool pool;
    size_t n = 0;
    uint64_t v;

    GW_PASS(hub_store_group_create(st, "team", &g));
    assert_string_equal(g.mode, "dedicated");
    assert_int_equal(g.pool_id, 0);
    GW_PASS(hub_store_pool_create(st, "shared", &pool));
    v = version_of(st);

    memset(&patch, 0, sizeof(patch));
    patch.fields = HUB_GROUP_SET_MODE;
    patch.mode = "pool";
    GW_FAIL(hub_store_group_update(st, g.id, &patch, &got), GW_EINVAL); /* no pool */
    patch.fields |= HUB_GROUP_SET_POOL;
    patch.pool_id = pool.id + 50;
    GW_FAIL(hub_store_group_update(st, g.id, &patch, &got), GW_ENOTFOUND);
    patch.pool_id = pool.id;
    GW_FAIL(hub_store_group_update(st, g.id + 50, &patch, &got), GW_ENOTFOUND);
    patch.mode = "shared";
    GW_FAIL(hub_store_group_update(st, g.id, &patch, &got), GW_EINVAL);
    patch.fields = 0;
    GW_FAIL(hub_store_group_update(st, g.id, &patch, &got), GW_EINVAL);
    assert_int_equal(version_of(st), v);

    patch.fields = HUB_GROUP_SET_MODE | HUB_GROUP_SET_POOL;
    patch.mode = "hybrid";
    GW_PASS(hub_store_group_update(st, g.id, &patch, &got));
    assert_string_equal(got.mode, "hybrid");
    assert_int_equal(got.pool_id, pool.id);
    assert_string_equal(got.name, "team");
    assert_int_equal(version_of(st), v + 1);
    GW_PASS(hub_store_group_get(st, g.id, &got));
    assert_string_equal(got.mode, "hybrid");
    assert_int_equal(got.pool_id, pool.id);

    /* The pool cannot go while a pool mode needs it; dedicated keeps it. */
    patch.fields = HUB_GROUP_SET_POOL;
    patch.pool_id = 0;
    GW_FAIL(hub_store_group_update(st, g.id, &patch, &got), GW_EINVAL);
    patch.fields = HUB_GROUP_SET_MODE;
    patch.mode = "dedicated";
    GW_PASS(hub_store_group_update(st, g.id, &patch, &got));
    assert_string_equal(got.mode, "dedicated");
    assert_int_equal(got.pool_id, pool.id);
    patch.fields = HUB_GROUP_SET_POOL;
    patch.pool_id = 0;
    GW_PASS(hub_store_group_update(st, g.id, &patch, &got));
    assert_int_equal(got.pool_id, 0);
    assert_int_equal(version_of(st), v + 3);

    make_group(st, "second");
    GW_PASS(hub_store_group_list(st, &list, &n));
    assert_int_equal(n, 2);
    assert_int_equal(list[0].id, g.id);
    assert_string_equal(list[0].mode, "dedicated");
    assert_string_equal(list[1].name, "second");
    free(list);
}

static void
test_key_limits(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st;
    static const char *const allowed[] = {"claude-haiku-4-5", "claude-sonnet-4-5"};
    uint64_t g1, g2, v;
    struct hub_key_new in;
    struct hub_key_patch patch;
    struct hub_key k1, k2, k3, got, *list = NULL;
    struct gw_wire_snapshot snap;
    size_t n = 0;

    use_file(fx);
    st = fx->st;
    g1 = make_group(st, "g1");
    g2 = make_group(st, "g2");
    memset(&in, 0, sizeof(in));
    in.group_id = g1;
    in.name = "limited";
    in.prefix = "aicp_x";
    in.rpm_limit = 60;
    in.tpm_limit = UINT32_MAX;
    in.concurrency_limit = 4;
    in.allowed_models = allowed;
    in.n_allowed_models = 2;
    in.expires_at = 4102444800;
    hash_for(in.key_hash, 1);
    GW_PASS(hub_store_key_create(st, &in, &k1));
    assert_int_equal(k1.rpm_limit, 60);
    assert_int_equal(k1.tpm_limit, UINT32_MAX);
    assert_int_equal(k1.concurrency_limit, 4);
    assert_int_equal(k1.expires_at, 4102444800);
    assert_models(k1.allowed_models, k1.n_allowed_models, allowed, 2);
    GW_PASS(hub_store_key_get(st, k1.id, &got));
    assert_models(got.allowed_models, got.n_allowed_models, allowed, 2);
    assert_int_equal(got.tpm_limit, UINT32_MAX);
    hub_key_fini(&got);
    k2.id = make_key(st, g1, 2);
    k3.id = make_key(st, g2, 3);

    GW_PASS(hub_store_key_list(st, g1, &list, &n));
    assert_int_equal(n, 2);
    assert_int_equal(list[0].id, k1.id);
    assert_models(list[0].allowed_models, list[0].n_allowed_models, allowed, 2);
    assert_int_equal(list[1].id, k2.id);
    assert_int_equal(list[1].rpm_limit, 0);
    assert_int_equal(list[1].n_allowed_models, 0);
    hub_keys_free(list, n);
    GW_PASS(hub_store_key_list(st, 0, &list, &n));
    assert_int_equal(n, 3);
    assert_int_equal(list[2].id, k3.id);
    hub_keys_free(list, n);
    GW_PASS(hub_store_key_list(st, g2 + 100, &list, &n));
    assert_int_equal(n, 0);
    assert_null(list);

    /* Updates. */
    v = version_of(st);
    memset(&patch, 0, sizeof(patch));
    patch.fields = HUB_KEY_SET_RPM | HUB_KEY_SET_ALLOWED_MODELS | HUB_KEY_SET_NAME;
    patch.rpm_limit = 0;
    patch.name = "renamed";
    GW_PASS(hub_store_key_update(st, k1.id, &patch, &got));
    assert_int_equal(got.rpm_limit, 0);
    assert_int_equal(got.n_allowed_models, 0);
    assert_string_equal(got.name, "renamed");
    assert_int_equal(got.tpm_limit, UINT32_MAX);
    assert_int_equal(got.concurrency_limit, 4);
    hub_key_fini(&got);
    patch.fields =
        HUB_KEY_SET_ENABLED | HUB_KEY_SET_TPM | HUB_KEY_SET_CONCURRENCY | HUB_KEY_SET_EXPIRES_AT;
    patch.enabled = 0;
    patch.tpm_limit = 1000;
    patch.concurrency_limit = 0;
    patch.expires_at = 0;
    GW_PASS(hub_store_key_update(st, k1.id, &patch, &got));
    assert_int_equal(got.enabled, 0);
    assert_int_equal(got.tpm_limit, 1000);
    assert_int_equal(got.concurrency_limit, 0);
    assert_int_equal(got.expires_at, 0);
    assert_string_equal(got.name, "renamed");
    hub_key_fini(&got);
    assert_int_equal(version_of(st), v + 2);
    memset(&patch, 0, sizeof(patch));
    GW_FAIL(hub_store_key_update(st, k1.id, &patch, &got), GW_EINVAL);
    patch.fields = HUB_KEY_SET_ENABLED;
    GW_FAIL(hub_store_key_update(st, k3.id + 100, &patch, &got), GW_ENOTFOUND);

    /* Revoked keys are gone for good. */
    GW_PASS(hub_store_key_revoke(st, k2.id));
    assert_int_equal(version_of(st), v + 3);
    assert_int_equal(raw_scalar(fx, "SELECT COUNT(*) FROM change_log WHERE entity = 'key' "
                                    "AND op = 'revoke'"),
                     1);
    GW_FAIL(hub_store_key_get(st, k2.id, &got), GW_ENOTFOUND);
    GW_FAIL(hub_store_key_revoke(st, k2.id), GW_ENOTFOUND);
    GW_FAIL(hub_store_key_update(st, k2.id, &patch, &got), GW_ENOTFOUND);
    GW_FAIL(hub_store_key_revoke(st, k3.id + 100), GW_ENOTFOUND);
    assert_int_equal(version_of(st), v + 3);
    GW_PASS(hub_store_key_list(st, g1, &list, &n));
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, k1.id);
    hub_keys_free(list, n);
    GW_PASS(hub_store_snapshot_load(st, &snap));
    assert_int_equal(snap.n_keys, 2);
    assert_int_equal(snap.keys[0].id, k1.id);
    assert_int_equal(snap.keys[1].id, k3.id);
    hub_store_snapshot_fini(&snap);
    /* Its hash stays taken. */
    {
        struct hub_key_new again = {.group_id = g1, .name = "again", .prefix = "p"};

        hash_for(again.key_hash, 2);
        GW_FAIL(hub_store_key_create(st, &again, &got), GW_EEXIST);
    }
    hub_key_fini(&k1);
}

static void
test_snapshot_routing(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    static const char *const models[] = {"gemini-2.5-pro", "gemini-2.5-flash"};
    static const char *const allowed[] = {"gemini-2.5-flash"};
    struct hub_account_new an = {.name = "gem",
                                 .kind = "gemini",
                                 .base_url = "https://generativelanguage.googleapis.com",
                                 .priority = 1,
                                 .weight = 1,
                                 .models = models,
                                 .n_models = 2,
                                 .max_concurrency = 8,
                                 .proxy = "http://proxy.local:3128"};
    struct hub_key_new kn;
    struct hub_group_patch gp = {.fields = HUB_GROUP_SET_MODE | HUB_GROUP_SET_POOL, .mode = "pool"};
    struct hub_account a;
    struct hub_group g;
    struct hub_pool pool;
    struct hub_key k;
    struct gw_wire_snapshot snap;
    uint64_t gid = make_group(st, "team"), plain = make_account(st, "plain", NULL, 0);

    GW_PASS(hub_store_account_create(st, &an, &a));
    GW_PASS(hub_store_pool_create(st, "pool-a", &pool));
    GW_PASS(hub_store_pool_create(st, "pool-empty", &pool));
    GW_PASS(hub_store_pool_create(st, "pool-b", &pool));
    GW_PASS(hub_store_pool_add_account(st, pool.id, a.id));
    GW_PASS(hub_store_pool_add_account(st, pool.id, plain));
    gp.pool_id = pool.id;
    GW_PASS(hub_store_group_update(st, gid, &gp, &g));
    memset(&kn, 0, sizeof(kn));
    kn.group_id = gid;
    kn.prefix = "p";
    kn.rpm_limit = 10;
    kn.tpm_limit = 20;
    kn.concurrency_limit = 30;
    kn.allowed_models = allowed;
    kn.n_allowed_models = 1;
    hash_for(kn.key_hash, 9);
    GW_PASS(hub_store_key_create(st, &kn, &k));

    GW_PASS(hub_store_snapshot_load(st, &snap));
    assert_int_equal(snap.version, version_of(st));
    assert_int_equal(snap.n_groups, 1);
    assert_string_equal(snap.groups[0].mode, "pool");
    assert_int_equal(snap.groups[0].pool_id, pool.id);
    assert_int_equal(snap.n_pools, 3);
    assert_string_equal(snap.pools[0].name, "pool-a");
    assert_int_equal(snap.pools[0].n_account_ids, 0);
    assert_null(snap.pools[1].account_ids);
    assert_int_equal(snap.pools[2].id, pool.id);
    assert_string_equal(snap.pools[2].name, "pool-b");
    assert_int_equal(snap.pools[2].n_account_ids, 2);
    assert_int_equal(snap.pools[2].account_ids[0], a.id);
    assert_int_equal(snap.pools[2].account_ids[1], plain);
    assert_int_equal(snap.n_accounts, 2);
    assert_int_equal(snap.accounts[0].id, plain);
    assert_int_equal(snap.accounts[0].n_models, 0);
    assert_null(snap.accounts[0].proxy);
    assert_int_equal(snap.accounts[0].max_concurrency, 0);
    assert_int_equal(snap.accounts[1].id, a.id);
    assert_string_equal(snap.accounts[1].kind, "gemini");
    assert_models(snap.accounts[1].models, snap.accounts[1].n_models, models, 2);
    assert_int_equal(snap.accounts[1].max_concurrency, 8);
    assert_string_equal(snap.accounts[1].proxy, "http://proxy.local:3128");
    assert_int_equal(snap.accounts[1].cooldown_until_ms, 0);
    assert_int_equal(snap.n_keys, 1);
    assert_int_equal(snap.keys[0].rpm_limit, 10);
    assert_int_equal(snap.keys[0].tpm_limit, 20);
    assert_int_equal(snap.keys[0].concurrency_limit, 30);
    assert_models(snap.keys[0].allowed_models, snap.keys[0].n_allowed_models, allowed, 1);
    hub_store_snapshot_fini(&snap);
    hub_account_fini(&a);
    hub_key_fini(&k);
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One batch of account events (and no records) from edge "edge-ev". */
static void
send_events(struct hub_store *st, uint64_t seq, const struct gw_account_event *ev, size_t n,
            int want_duplicate)
{
    struct gw_wire_usage_batch b = {.edge_id = (char *)"edge-ev",
                                    .seq = seq,
                                    .account_events = (struct gw_account_event *)ev,
                                    .n_account_events = n};
    int dup = -1;

    GW_PASS(hub_store_usage_apply(st, &b, NULL, &dup));
    assert_int_equal(dup, want_duplicate);
}

static struct gw_account_event
event(uint64_t account_id, uint32_t status, int64_t time_ms, int64_t retry_after_ms)
{
    struct gw_account_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.account_id = account_id;
    ev.status = status;
    ev.time_ms = time_ms;
    ev.retry_after_ms = retry_after_ms;
    snprintf(ev.message, sizeof(ev.message), "status %u", status);
    return ev;
}

static struct hub_account
account_now(struct hub_store *st, uint64_t id)
{
    struct hub_account a, copy;

    GW_PASS(hub_store_account_get(st, id, &a));
    copy = a; /* only the fixed fields are used */
    copy.models = NULL;
    copy.n_models = 0;
    hub_account_fini(&a);
    return copy;
}

static void
test_account_events_auth(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st;
    uint64_t a, b, c, v, seq = 1;
    int64_t t = now_ms() - 3600 * 1000; /* an hour ago: the times are the edges' */
    struct gw_account_event ev[4];
    struct gw_wire_snapshot snap;
    struct hub_account_patch patch;
    struct hub_account got;

    use_file(fx);
    st = fx->st;
    a = make_account(st, "a", NULL, 0);
    b = make_account(st, "b", NULL, 0);
    c = make_account(st, "c", NULL, 0);
    v = version_of(st);

    /* Two rejections: counted, not yet disabled, no new version. */
    ev[0] = event(a, 401, t, 0);
    ev[1] = event(a, 401, t + 1000, 0);
    send_events(st, seq++, ev, 2, 0);
    assert_int_equal(account_now(st, a).auth_failures, 2);
    assert_int_equal(account_now(st, a).enabled, 1);
    assert_int_equal(version_of(st), v);
    /* The same batch again is not counted twice. */
    send_events(st, seq - 1, ev, 2, 1);
    assert_int_equal(account_now(st, a).auth_failures, 2);

    /* Non-credential statuses and unknown accounts change nothing. */
    ev[0] = event(a, 500, t + 2000, 0);
    ev[1] = event(a, 529, t + 2000, 0);
    ev[2] = event(a, 0, t + 2000, 0);
    ev[3] = event(c + 1000, 401, t + 2000, 0);
    send_events(st, seq++, ev, 4, 0);
    assert_int_equal(account_now(st, a).auth_failures, 2);
    assert_int_equal(version_of(st), v);

    /* The third within ten minutes disables it, once, for every edge. */
    ev[0] = event(a, 401, t + 9 * 60 * 1000, 0);
    send_events(st, seq++, ev, 1, 0);
    got = account_now(st, a);
    assert_int_equal(got.enabled, 0);
    assert_string_equal(got.disabled_reason, "upstream rejected the credential (401)");
    assert_int_equal(got.auth_failures, 3);
    assert_int_equal(version_of(st), v + 1);
    assert_int_equal(raw_scalar(fx, "SELECT COUNT(*) FROM change_log WHERE entity = 'account' "
                                    "AND op = 'disable'"),
                     1);
    GW_PASS(hub_store_snapshot_load(st, &snap));
    assert_int_equal(snap.accounts[0].id, a);
    assert_int_equal(snap.accounts[0].enabled, 0);
    assert_int_equal(snap.accounts[1].enabled, 1);
    hub_store_snapshot_fini(&snap);
    /* More rejections of a disabled account are counted, no new version. */
    send_events(st, seq++, ev, 1, 0);
    assert_int_equal(account_now(st, a).auth_failures, 4);
    assert_int_equal(version_of(st), v + 1);

    /* Spread over more than ten minutes: not disabled; out of order too. */
    ev[0] = event(b, 403, t + 12 * 60 * 1000, 0);
    ev[1] = event(b, 403, t, 0);
    ev[2] = event(b, 403, t + 6 * 60 * 1000, 0);
    send_events(st, seq++, ev, 3, 0);
    assert_int_equal(account_now(st, b).enabled, 1);
    assert_int_equal(account_now(st, b).auth_failures, 3);
    assert_int_equal(version_of(st), v + 1);
    /* The fourth makes three within ten minutes (6, 12, 13). */
    ev[0] = event(b, 403, t + 13 * 60 * 1000, 0);
    send_events(st, seq++, ev, 1, 0);
    got = account_now(st, b);
    assert_int_equal(got.enabled, 0);
    assert_string_equal(got.disabled_reason, "upstream rejected the credential (403)");
    assert_int_equal(version_of(st), v + 2);

    /* Three in one batch, with a usage record: both applied together. */
    {
        struct gw_usage_record r;
        struct gw_wire_usage_batch batch;
        int dup = -1;

        fill_record(&r, 1, 5, "fake-x", t);
        ev[0] = event(c, 401, 0, 0); /* no time: the hub's */
        ev[1] = event(c, 401, 0, 0);
        ev[2] = event(c, 401, 0, 0);
        memset(&batch, 0, sizeof(batch));
        batch.edge_id = (char *)"edge-ev";
        batch.seq = seq++;
        batch.records = &r;
        batch.n_records = 1;
        batch.account_events = ev;
        batch.n_account_events = 3;
        GW_PASS(hub_store_usage_apply(st, &batch, NULL, &dup));
        assert_int_equal(dup, 0);
        assert_int_equal(usage_count(st, 5), 1);
        assert_int_equal(account_now(st, c).enabled, 0);
        assert_int_equal(version_of(st), v + 3);
    }

    /* An admin re-enables it: reason and counters are cleared. */
    memset(&patch, 0, sizeof(patch));
    patch.fields = HUB_ACCOUNT_SET_ENABLED;
    patch.enabled = 1;
    GW_PASS(hub_store_account_update(st, a, &patch, &got));
    assert_int_equal(got.enabled, 1);
    assert_string_equal(got.disabled_reason, "");
    assert_int_equal(got.auth_failures, 0);
    hub_account_fini(&got);
    /* So two new rejections do not disable it again. */
    ev[0] = event(a, 401, t + 20 * 60 * 1000, 0);
    ev[1] = event(a, 401, t + 20 * 60 * 1000, 0);
    send_events(st, seq++, ev, 2, 0);
    assert_int_equal(account_now(st, a).enabled, 1);
}

static void
test_account_events_cooldown(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    uint64_t a = make_account(st, "a", NULL, 0), v, seq = 1;
    int64_t t = now_ms();
    struct gw_account_event ev[2];
    struct gw_wire_snapshot snap;
    struct hub_account_patch patch;
    struct hub_account got;

    v = version_of(st);
    /* Short ones stay with the edges. */
    ev[0] = event(a, 429, t, HUB_STORE_COOLDOWN_MIN_MS - 1);
    ev[1] = event(a, 429, t, 0);
    send_events(st, seq++, ev, 2, 0);
    assert_int_equal(account_now(st, a).cooldown_until_ms, 0);
    assert_int_equal(version_of(st), v);

    ev[0] = event(a, 429, t, 120000);
    send_events(st, seq++, ev, 1, 0);
    assert_int_equal(account_now(st, a).cooldown_until_ms, t + 120000);
    assert_int_equal(account_now(st, a).enabled, 1);
    assert_int_equal(version_of(st), v + 1);
    GW_PASS(hub_store_snapshot_load(st, &snap));
    assert_int_equal(snap.accounts[0].cooldown_until_ms, t + 120000);
    hub_store_snapshot_fini(&snap);
    send_events(st, seq - 1, ev, 1, 1); /* resent: nothing */
    assert_int_equal(version_of(st), v + 1);

    /* A shorter one does not cut it; a longer one extends it; the edge's
     * number is capped. */
    ev[0] = event(a, 429, t, 61000);
    send_events(st, seq++, ev, 1, 0);
    assert_int_equal(account_now(st, a).cooldown_until_ms, t + 120000);
    assert_int_equal(version_of(st), v + 1);
    ev[0] = event(a, 429, t + 1000, INT64_MAX / 2);
    send_events(st, seq++, ev, 1, 0);
    assert_int_equal(account_now(st, a).cooldown_until_ms, t + 1000 + HUB_STORE_COOLDOWN_MAX_MS);
    assert_int_equal(version_of(st), v + 2);

    /* One that is already over changes nothing; a time far in the future
     * is taken as the hub's now. */
    memset(&patch, 0, sizeof(patch));
    patch.fields = HUB_ACCOUNT_SET_ENABLED;
    patch.enabled = 1;
    GW_PASS(hub_store_account_update(st, a, &patch, &got));
    assert_int_equal(got.cooldown_until_ms, 0);
    hub_account_fini(&got);
    v = version_of(st);
    ev[0] = event(a, 429, t - 3 * 3600 * 1000, 3600 * 1000);
    send_events(st, seq++, ev, 1, 0);
    assert_int_equal(account_now(st, a).cooldown_until_ms, 0);
    assert_int_equal(version_of(st), v);
    ev[0] = event(a, 429, t + 365LL * 24 * 3600 * 1000, 60000);
    send_events(st, seq++, ev, 1, 0);
    {
        int64_t until = account_now(st, a).cooldown_until_ms;

        assert_true(until >= t + 60000);
        assert_true(until <= now_ms() + 60000);
    }
    assert_int_equal(version_of(st), v + 1);
}

#ifdef GW_WITH_MYSQL
/* DDL commits on its own in MySQL: a migration cut short must run again
 * cleanly. Forget that migration 3 ran and reopen. */
static void
test_mysql_migration_rerun(void **state)
{
    struct fixture *fx = fx_get(state);
    MYSQL *m;
    uint64_t gid;

    if (backend != BACKEND_MYSQL)
        skip();
    gid = make_group(fx->st, "kept");
    hub_store_close(fx->st);
    m = raw_mysql_connect(1);
    raw_mysql_exec(m, "DELETE FROM schema_migrations WHERE version >= 3");
    mysql_close(m);
    fx->st = open_store(fx->dsn);
    assert_true(raw_scalar(fx, "SELECT MAX(version) FROM schema_migrations") >= 3);
    assert_int_equal(raw_scalar(fx, "SELECT COUNT(*) FROM schema_migrations"),
                     raw_scalar(fx, "SELECT MAX(version) FROM schema_migrations"));
    {
        struct hub_group g;

        GW_PASS(hub_store_group_get(fx->st, gid, &g));
        assert_string_equal(g.name, "kept");
        assert_string_equal(g.mode, "dedicated");
    }
}
#endif

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

/* ---- replication and edges ---------------------------------------------- */

static const struct gw_wire_change *
find_change(const struct gw_wire_deltas *d, enum gw_change_kind kind, uint64_t id)
{
    for (size_t i = 0; i < d->n_changes; i++) {
        const struct gw_wire_change *c = &d->changes[i];
        uint64_t cid = 0;

        if (c->kind != kind)
            continue;
        switch (kind) {
        case GW_CHANGE_KEY:
            cid = c->u.key.id;
            break;
        case GW_CHANGE_GROUP:
            cid = c->u.group.id;
            break;
        case GW_CHANGE_ACCOUNT:
            cid = c->u.account.id;
            break;
        case GW_CHANGE_POOL:
            cid = c->u.pool.id;
            break;
        case GW_CHANGE_BINDING:
        case GW_CHANGE_BINDING_REMOVED:
            cid = c->u.binding.group_id << 32 | c->u.binding.account_id;
            break;
        default:
            cid = c->u.removed_id;
            break;
        }
        if (cid == id)
            return c;
    }
    return NULL;
}

static void
test_changes_since(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct gw_wire_deltas d;
    struct hub_key_patch kp = {.fields = HUB_KEY_SET_RPM, .rpm_limit = 77};
    struct hub_account_patch ap = {.fields = HUB_ACCOUNT_SET_PRIORITY, .priority = 9};
    struct hub_key k;
    struct hub_account a;
    struct hub_pool pool;
    const struct gw_wire_change *c;
    uint8_t cred[] = {7, 8, 9};
    uint64_t v0, v1, gid, aid, kid, kid2, pid;

    v0 = version_of(st);
    GW_PASS(hub_store_changes_since(st, v0, 100, &d));
    assert_int_equal(d.from_version, v0);
    assert_int_equal(d.to_version, v0);
    assert_int_equal(d.n_changes, 0);
    assert_int_equal(d.snapshot_required, 0);
    hub_store_deltas_fini(&d);

    gid = make_group(st, "rep");
    aid = make_account(st, "rep-a", cred, sizeof(cred));
    GW_PASS(hub_store_binding_create(st, gid, aid));
    kid = make_key(st, gid, 501);
    kid2 = make_key(st, gid, 502);
    GW_PASS(hub_store_pool_create(st, "rep-pool", &pool));
    pid = pool.id;
    GW_PASS(hub_store_pool_add_account(st, pid, aid));
    hub_pool_fini(&pool);
    v1 = version_of(st);

    /* Everything since v0: one change per entity, current state. */
    GW_PASS(hub_store_changes_since(st, v0, 100, &d));
    assert_int_equal(d.to_version, v1);
    assert_int_equal(d.snapshot_required, 0);
    assert_int_equal(d.n_changes, 6); /* group, account, binding, 2 keys, pool */
    assert_non_null(find_change(&d, GW_CHANGE_GROUP, gid));
    c = find_change(&d, GW_CHANGE_ACCOUNT, aid);
    assert_non_null(c);
    assert_int_equal(c->u.account.credential_len, sizeof(cred));
    assert_memory_equal(c->u.account.credential, cred, sizeof(cred));
    assert_non_null(find_change(&d, GW_CHANGE_BINDING, gid << 32 | aid));
    assert_non_null(find_change(&d, GW_CHANGE_KEY, kid));
    c = find_change(&d, GW_CHANGE_POOL, pid);
    assert_non_null(c);
    assert_int_equal(c->u.pool.n_account_ids, 1);
    assert_int_equal(c->u.pool.account_ids[0], aid);
    for (size_t i = 1; i < d.n_changes; i++)
        assert_true(d.changes[i - 1].version < d.changes[i].version);
    hub_store_deltas_fini(&d);

    /* Update then revoke one key, update the account twice: merged to the
     * latest state, revocation as key_removed. */
    GW_PASS(hub_store_key_update(st, kid, &kp, &k));
    hub_key_fini(&k);
    GW_PASS(hub_store_key_update(st, kid2, &kp, &k));
    hub_key_fini(&k);
    GW_PASS(hub_store_key_revoke(st, kid2));
    GW_PASS(hub_store_account_update(st, aid, &ap, &a));
    hub_account_fini(&a);
    ap.priority = 11;
    GW_PASS(hub_store_account_update(st, aid, &ap, &a));
    hub_account_fini(&a);
    GW_PASS(hub_store_changes_since(st, v1, 100, &d));
    assert_int_equal(d.from_version, v1);
    assert_int_equal(d.to_version, v1 + 5);
    assert_int_equal(d.n_changes, 3);
    c = find_change(&d, GW_CHANGE_KEY, kid);
    assert_non_null(c);
    assert_int_equal(c->u.key.rpm_limit, 77);
    assert_int_equal(c->version, v1 + 1);
    c = find_change(&d, GW_CHANGE_KEY_REMOVED, kid2);
    assert_non_null(c);
    assert_int_equal(c->version, v1 + 3);
    assert_null(find_change(&d, GW_CHANGE_KEY, kid2));
    c = find_change(&d, GW_CHANGE_ACCOUNT, aid);
    assert_non_null(c);
    assert_int_equal(c->u.account.priority, 11);
    assert_int_equal(c->version, v1 + 5);
    hub_store_deltas_fini(&d);

    /* More entries than max_changes, or a version from the future. */
    GW_PASS(hub_store_changes_since(st, v0, 3, &d));
    assert_int_equal(d.snapshot_required, 1);
    assert_int_equal(d.n_changes, 0);
    hub_store_deltas_fini(&d);
    GW_PASS(hub_store_changes_since(st, v1 + 99, 100, &d));
    assert_int_equal(d.snapshot_required, 1);
    hub_store_deltas_fini(&d);
    GW_FAIL(hub_store_changes_since(st, v0, 0, &d), GW_EINVAL);

    /* Pruned history: too far behind. */
    GW_PASS(hub_store_change_log_prune(st, 2));
    GW_PASS(hub_store_changes_since(st, v1, 100, &d));
    assert_int_equal(d.snapshot_required, 1);
    hub_store_deltas_fini(&d);
    GW_PASS(hub_store_changes_since(st, v1 + 3, 100, &d));
    assert_int_equal(d.snapshot_required, 0);
    assert_int_equal(d.n_changes, 1);
    hub_store_deltas_fini(&d);
}

static void
test_edges(void **state)
{
    struct fixture *fx = fx_get(state);
    struct hub_store *st = fx->st;
    struct hub_edge e, got, *list = NULL;
    struct gw_wire_heartbeat hb = {.snapshot_version = 5,
                                   .snapshot_source = (char *)"disk",
                                   .requests_total = 100,
                                   .errors_total = 4,
                                   .usage_pending = 3,
                                   .uptime_s = 60,
                                   .region = (char *)"eu",
                                   .version = (char *)"1.2.3"};
    uint8_t sealed[40];
    size_t n = 0;

    memset(sealed, 0xA5, sizeof(sealed));
    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "%s", "edge-abc");
    snprintf(e.name, sizeof(e.name), "%s", "paris");
    snprintf(e.region, sizeof(e.region), "%s", "eu-west");
    e.secret_sealed = sealed;
    e.secret_sealed_len = sizeof(sealed);
    e.created_at = 1000;
    GW_PASS(hub_store_edge_create(st, &e));
    GW_FAIL(hub_store_edge_create(st, &e), GW_EEXIST);
    e.secret_sealed = NULL;
    snprintf(e.id, sizeof(e.id), "%s", "edge-nosecret");
    GW_FAIL(hub_store_edge_create(st, &e), GW_EINVAL);
    snprintf(e.id, sizeof(e.id), "%s", "bad id");
    GW_FAIL(hub_store_edge_create(st, &e), GW_EINVAL);
    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "%s", "local");
    e.trusted = 1;
    e.created_at = 2000;
    GW_PASS(hub_store_edge_create(st, &e));

    GW_PASS(hub_store_edge_get(st, "edge-abc", &got));
    assert_string_equal(got.name, "paris");
    assert_string_equal(got.region, "eu-west");
    assert_int_equal(got.secret_sealed_len, sizeof(sealed));
    assert_memory_equal(got.secret_sealed, sealed, sizeof(sealed));
    assert_int_equal(got.trusted, 0);
    assert_int_equal(got.revoked_at, 0);
    assert_int_equal(got.last_seen_ms, 0);
    hub_edge_fini(&got);
    GW_FAIL(hub_store_edge_get(st, "nope", &got), GW_ENOTFOUND);

    /* Two heartbeats: the first becomes prev_*. */
    GW_PASS(hub_store_edge_heartbeat(st, "edge-abc", &hb, 50000));
    hb.requests_total = 160;
    hb.errors_total = 10;
    GW_PASS(hub_store_edge_heartbeat(st, "edge-abc", &hb, 60000));
    GW_FAIL(hub_store_edge_heartbeat(st, "nope", &hb, 60000), GW_ENOTFOUND);
    GW_PASS(hub_store_edge_get(st, "edge-abc", &got));
    assert_int_equal(got.requests_total, 160);
    assert_int_equal(got.errors_total, 10);
    assert_int_equal(got.prev_requests_total, 100);
    assert_int_equal(got.prev_errors_total, 4);
    assert_int_equal(got.prev_heartbeat_ms, 50000);
    assert_int_equal(got.heartbeat_ms, 60000);
    assert_int_equal(got.last_seen_ms, 60000);
    assert_int_equal(got.snapshot_version, 5);
    assert_string_equal(got.snapshot_source, "disk");
    assert_string_equal(got.version, "1.2.3");
    assert_int_equal(got.usage_pending, 3);
    assert_string_equal(got.region, "eu-west"); /* the registered region stays */
    hub_edge_fini(&got);

    GW_PASS(hub_store_edge_list(st, &list, &n));
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, "edge-abc");
    assert_string_equal(list[1].id, "local");
    assert_int_equal(list[1].trusted, 1);
    assert_null(list[1].secret_sealed);
    hub_edges_free(list, n);

    GW_PASS(hub_store_edge_revoke(st, "edge-abc"));
    GW_FAIL(hub_store_edge_revoke(st, "edge-abc"), GW_ENOTFOUND);
    GW_FAIL(hub_store_edge_revoke(st, "nope"), GW_ENOTFOUND);
    GW_PASS(hub_store_edge_get(st, "edge-abc", &got));
    assert_true(got.revoked_at > 0);
    hub_edge_fini(&got);
}

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
        cmocka_unit_test_setup_teardown(test_account_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_events_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_events_cooldown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edges, setup, teardown),
#ifdef GW_WITH_MYSQL
        cmocka_unit_test_setup_teardown(test_mysql_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mysql_migration_rerun, setup, teardown),
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
