/* SPDX-License-Identifier: Apache-2.0 */
/* The SQLite store backend ("sqlite:PATH", "sqlite::memory:"): WAL journal,
 * synchronous=NORMAL, foreign keys on. Every query is a prepared statement,
 * prepared once and cached in the private block; migrations are an ordered
 * array of scripts recorded in schema_migrations, each applied in its own
 * transaction. SQLite has one writer at a time, so writes are batched. */
#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_log.h"

#define SQ_BUSY_TIMEOUT_MS 5000

/* Every statement the backend runs, by id; the SQL is in sq_sql[]. */
enum sq_stmt {
    SQ_BEGIN,
    SQ_BEGIN_IMMEDIATE,
    SQ_COMMIT,
    SQ_ROLLBACK,
    SQ_MIGRATIONS_MAX,
    SQ_MIGRATIONS_ADD,
    SQ_CONFIG_VERSION,
    SQ_CONFIG_BUMP,
    SQ_CHANGE_LOG_ADD,
    SQ_ADMIN_COUNT,
    SQ_ADMIN_CREATE,
    SQ_ADMIN_GET,
    SQ_GROUP_CREATE,
    SQ_GROUP_GET,
    SQ_GROUP_LIST,
    SQ_GROUP_UPDATE,
    SQ_ACCOUNT_CREATE,
    SQ_ACCOUNT_GET,
    SQ_ACCOUNT_LIST,
    SQ_ACCOUNT_UPDATE,
    SQ_ACCOUNT_HEALTH_GET,
    SQ_ACCOUNT_HEALTH_SET,
    SQ_ACCOUNT_DISABLE,
    SQ_BINDING_CREATE,
    SQ_POOL_CREATE,
    SQ_POOL_GET,
    SQ_POOL_LIST,
    SQ_POOL_MEMBERS,
    SQ_POOL_MEMBERS_OF,
    SQ_POOL_ADD,
    SQ_KEY_CREATE,
    SQ_KEY_GET,
    SQ_KEY_LIST_ALL,
    SQ_KEY_LIST_GROUP,
    SQ_KEY_UPDATE,
    SQ_KEY_REVOKE,
    SQ_SNAP_KEYS,
    SQ_SNAP_GROUPS,
    SQ_SNAP_ACCOUNTS,
    SQ_SNAP_BINDINGS,
    SQ_SNAP_POOLS,
    SQ_PRICES_LIST,
    SQ_EDGE_SEQ_GET,
    SQ_EDGE_SEQ_SET,
    SQ_USAGE_INSERT,
    SQ_USAGE_LIST_ALL,
    SQ_USAGE_LIST_KEY,
    SQ_CHANGES_SINCE,
    SQ_CHANGES_OLDEST,
    SQ_CHANGES_PRUNE,
    SQ_EDGE_CREATE,
    SQ_EDGE_GET,
    SQ_EDGE_LIST,
    SQ_EDGE_SAVE,
    SQ_STMT_COUNT
};

#define SQ_USAGE_COLS                                                                              \
    "request_id, edge_id, key_id, account_id, model, dialect, input_tokens, output_tokens, "       \
    "cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens, "          \
    "status, latency_ms, time_ms, partial, cost_micros"

#define SQ_GROUP_COLS "id, name, created_at, mode, COALESCE(pool_id, 0)"
#define SQ_ACCOUNT_COLS                                                                            \
    "id, name, kind, base_url, priority, weight, enabled, created_at, models, max_concurrency, "   \
    "proxy, disabled_reason, cooldown_until_ms, auth_failures"
#define SQ_KEY_COLS                                                                                \
    "id, group_id, name, prefix, enabled, expires_at, created_at, rpm_limit, tpm_limit, "          \
    "concurrency_limit, allowed_models"

#define SQ_EDGE_COLS                                                                               \
    "id, name, region, secret, trusted, created_at, revoked_at, last_seen_ms, heartbeat_ms, "      \
    "version, snapshot_version, snapshot_source, requests_total, errors_total, usage_pending, "    \
    "uptime_s, prev_requests_total, prev_errors_total, prev_heartbeat_ms"

static const char *const sq_sql[SQ_STMT_COUNT] = {
    [SQ_BEGIN] = "BEGIN",
    [SQ_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [SQ_COMMIT] = "COMMIT",
    [SQ_ROLLBACK] = "ROLLBACK",
    [SQ_MIGRATIONS_MAX] = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
    [SQ_MIGRATIONS_ADD] = "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
    [SQ_CONFIG_VERSION] = "SELECT config_version FROM meta WHERE id = 1",
    [SQ_CONFIG_BUMP] = "UPDATE meta SET config_version = config_version + 1 WHERE id = 1 "
                       "RETURNING config_version",
    [SQ_CHANGE_LOG_ADD] = "INSERT INTO change_log (version, entity, entity_id, op, at) "
                          "VALUES (?1, ?2, ?3, ?4, ?5)",
    [SQ_ADMIN_COUNT] = "SELECT COUNT(*) FROM admins",
    [SQ_ADMIN_CREATE] = "INSERT INTO admins (username, password_hash, must_change_password, "
                        "created_at) VALUES (?1, ?2, ?3, ?4)",
    [SQ_ADMIN_GET] = "SELECT id, username, password_hash, must_change_password FROM admins "
                     "WHERE username = ?1",
    [SQ_GROUP_CREATE] = "INSERT INTO groups (name, created_at) VALUES (?1, ?2)",
    [SQ_GROUP_GET] = "SELECT " SQ_GROUP_COLS " FROM groups WHERE id = ?1",
    [SQ_GROUP_LIST] = "SELECT " SQ_GROUP_COLS " FROM groups ORDER BY id",
    [SQ_GROUP_UPDATE] = "UPDATE groups SET mode = ?2, pool_id = ?3 WHERE id = ?1",
    [SQ_ACCOUNT_CREATE] = "INSERT INTO accounts (name, kind, base_url, credential, priority, "
                          "weight, enabled, created_at, models, max_concurrency, proxy) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10)",
    [SQ_ACCOUNT_GET] = "SELECT " SQ_ACCOUNT_COLS " FROM accounts WHERE id = ?1",
    [SQ_ACCOUNT_LIST] = "SELECT " SQ_ACCOUNT_COLS " FROM accounts ORDER BY id",
    /* NULL keeps a column. Enabling clears what disabled or cooled it. */
    [SQ_ACCOUNT_UPDATE] =
        "UPDATE accounts SET name = COALESCE(?2, name), base_url = COALESCE(?3, base_url), "
        "credential = COALESCE(?4, credential), priority = COALESCE(?5, priority), "
        "weight = COALESCE(?6, weight), models = COALESCE(?7, models), "
        "max_concurrency = COALESCE(?8, max_concurrency), proxy = COALESCE(?9, proxy), "
        "enabled = COALESCE(?10, enabled), "
        "disabled_reason = CASE WHEN ?10 IS NULL THEN disabled_reason "
        "WHEN ?10 = 1 THEN '' ELSE 'disabled by an admin' END, "
        "auth_failures = CASE WHEN ?10 = 1 THEN 0 ELSE auth_failures END, "
        "auth_fail_last_ms = CASE WHEN ?10 = 1 THEN 0 ELSE auth_fail_last_ms END, "
        "auth_fail_prev_ms = CASE WHEN ?10 = 1 THEN 0 ELSE auth_fail_prev_ms END, "
        "cooldown_until_ms = CASE WHEN ?10 = 1 THEN 0 ELSE cooldown_until_ms END "
        "WHERE id = ?1",
    [SQ_ACCOUNT_HEALTH_GET] = "SELECT enabled, cooldown_until_ms, auth_failures, "
                              "auth_fail_last_ms, auth_fail_prev_ms FROM accounts WHERE id = ?1",
    [SQ_ACCOUNT_HEALTH_SET] = "UPDATE accounts SET cooldown_until_ms = ?2, auth_failures = ?3, "
                              "auth_fail_last_ms = ?4, auth_fail_prev_ms = ?5 WHERE id = ?1",
    [SQ_ACCOUNT_DISABLE] = "UPDATE accounts SET enabled = 0, disabled_reason = ?2 WHERE id = ?1",
    [SQ_BINDING_CREATE] = "INSERT INTO bindings (group_id, account_id, created_at) "
                          "VALUES (?1, ?2, ?3)",
    [SQ_POOL_CREATE] = "INSERT INTO pools (name, created_at) VALUES (?1, ?2)",
    [SQ_POOL_GET] = "SELECT id, name, created_at FROM pools WHERE id = ?1",
    [SQ_POOL_LIST] = "SELECT id, name, created_at FROM pools ORDER BY id",
    [SQ_POOL_MEMBERS] = "SELECT pool_id, account_id FROM pool_accounts ORDER BY pool_id, id",
    [SQ_POOL_MEMBERS_OF] = "SELECT account_id FROM pool_accounts WHERE pool_id = ?1 ORDER BY id",
    [SQ_POOL_ADD] = "INSERT INTO pool_accounts (pool_id, account_id, created_at) "
                    "VALUES (?1, ?2, ?3)",
    [SQ_KEY_CREATE] = "INSERT INTO api_keys (key_hash, prefix, name, group_id, enabled, "
                      "expires_at, created_at, rpm_limit, tpm_limit, concurrency_limit, "
                      "allowed_models) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?8, ?9, ?10)",
    [SQ_KEY_GET] = "SELECT " SQ_KEY_COLS " FROM api_keys WHERE id = ?1 AND revoked_at = 0",
    [SQ_KEY_LIST_ALL] = "SELECT " SQ_KEY_COLS " FROM api_keys WHERE revoked_at = 0 ORDER BY id",
    [SQ_KEY_LIST_GROUP] = "SELECT " SQ_KEY_COLS " FROM api_keys WHERE revoked_at = 0 "
                          "AND group_id = ?1 ORDER BY id",
    [SQ_KEY_UPDATE] = "UPDATE api_keys SET name = COALESCE(?2, name), "
                      "enabled = COALESCE(?3, enabled), rpm_limit = COALESCE(?4, rpm_limit), "
                      "tpm_limit = COALESCE(?5, tpm_limit), "
                      "concurrency_limit = COALESCE(?6, concurrency_limit), "
                      "allowed_models = COALESCE(?7, allowed_models), "
                      "expires_at = COALESCE(?8, expires_at) WHERE id = ?1 AND revoked_at = 0",
    [SQ_KEY_REVOKE] = "UPDATE api_keys SET revoked_at = ?2, enabled = 0 "
                      "WHERE id = ?1 AND revoked_at = 0",
    [SQ_SNAP_KEYS] = "SELECT id, key_hash, group_id, enabled, expires_at, rpm_limit, tpm_limit, "
                     "concurrency_limit, allowed_models FROM api_keys WHERE revoked_at = 0 "
                     "ORDER BY id",
    [SQ_SNAP_GROUPS] = "SELECT id, name, mode, COALESCE(pool_id, 0) FROM groups ORDER BY id",
    [SQ_SNAP_ACCOUNTS] = "SELECT id, name, kind, base_url, credential, priority, weight, "
                         "enabled, models, max_concurrency, proxy, cooldown_until_ms "
                         "FROM accounts ORDER BY id",
    [SQ_SNAP_BINDINGS] = "SELECT group_id, account_id FROM bindings ORDER BY id",
    [SQ_SNAP_POOLS] = "SELECT id, name FROM pools ORDER BY id",
    [SQ_PRICES_LIST] = "SELECT model_prefix, input, output, cache_write_5m, cache_write_1h, "
                       "cache_read FROM prices ORDER BY model_prefix",
    [SQ_EDGE_SEQ_GET] = "SELECT last_seq FROM edge_usage_seq WHERE edge_id = ?1",
    [SQ_EDGE_SEQ_SET] = "INSERT INTO edge_usage_seq (edge_id, last_seq) VALUES (?1, ?2) "
                        "ON CONFLICT (edge_id) DO UPDATE SET last_seq = excluded.last_seq",
    [SQ_USAGE_INSERT] = "INSERT INTO usage_log (" SQ_USAGE_COLS ") VALUES "
                        "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                        "?16, ?17)",
    [SQ_USAGE_LIST_ALL] = "SELECT id, " SQ_USAGE_COLS " FROM usage_log "
                          "ORDER BY time_ms DESC, id DESC LIMIT ?1 OFFSET ?2",
    [SQ_USAGE_LIST_KEY] = "SELECT id, " SQ_USAGE_COLS " FROM usage_log WHERE key_id = ?3 "
                          "ORDER BY time_ms DESC, id DESC LIMIT ?1 OFFSET ?2",
    [SQ_CHANGES_SINCE] = "SELECT c.version, c.entity, c.entity_id, COALESCE(b.group_id, 0), "
                         "COALESCE(b.account_id, 0), COALESCE(pa.pool_id, 0) FROM change_log c "
                         "LEFT JOIN bindings b ON c.entity = 'binding' AND b.id = c.entity_id "
                         "LEFT JOIN pool_accounts pa ON c.entity = 'pool_account' "
                         "AND pa.id = c.entity_id WHERE c.version > ?1 ORDER BY c.version "
                         "LIMIT ?2",
    [SQ_CHANGES_OLDEST] = "SELECT COALESCE(MIN(version), 0) FROM change_log",
    [SQ_CHANGES_PRUNE] = "DELETE FROM change_log WHERE version < ?1",
    [SQ_EDGE_CREATE] = "INSERT INTO edges (" SQ_EDGE_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                       "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    [SQ_EDGE_GET] = "SELECT " SQ_EDGE_COLS " FROM edges WHERE id = ?1",
    [SQ_EDGE_LIST] = "SELECT " SQ_EDGE_COLS " FROM edges ORDER BY created_at, id",
    [SQ_EDGE_SAVE] = "UPDATE edges SET name = ?2, region = ?3, revoked_at = ?7, "
                     "last_seen_ms = ?8, heartbeat_ms = ?9, version = ?10, "
                     "snapshot_version = ?11, snapshot_source = ?12, requests_total = ?13, "
                     "errors_total = ?14, usage_pending = ?15, uptime_s = ?16, "
                     "prev_requests_total = ?17, prev_errors_total = ?18, "
                     "prev_heartbeat_ms = ?19 WHERE id = ?1",
};

/* Migrations: append only, never edit a released one. Timestamps are unix
 * seconds, money is integer micro-USD per million tokens. */
static const char sq_migration_1[] =
    "CREATE TABLE meta ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  config_version INTEGER NOT NULL);"
    "INSERT INTO meta (id, config_version) VALUES (1, 0);"
    "CREATE TABLE change_log ("
    "  version INTEGER PRIMARY KEY,"
    "  entity TEXT NOT NULL,"
    "  entity_id INTEGER NOT NULL,"
    "  op TEXT NOT NULL,"
    "  at INTEGER NOT NULL);"
    "CREATE TABLE admins ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  username TEXT NOT NULL UNIQUE,"
    "  password_hash TEXT NOT NULL,"
    "  must_change_password INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE groups ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE accounts ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  base_url TEXT NOT NULL DEFAULT '',"
    "  credential BLOB NOT NULL,"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  weight INTEGER NOT NULL DEFAULT 1,"
    "  enabled INTEGER NOT NULL DEFAULT 1,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE bindings ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  group_id INTEGER NOT NULL REFERENCES groups (id),"
    "  account_id INTEGER NOT NULL REFERENCES accounts (id),"
    "  created_at INTEGER NOT NULL,"
    "  UNIQUE (group_id, account_id));"
    "CREATE INDEX bindings_account ON bindings (account_id);"
    "CREATE TABLE api_keys ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  key_hash BLOB NOT NULL UNIQUE CHECK (length(key_hash) = 32),"
    "  prefix TEXT NOT NULL,"
    "  name TEXT NOT NULL DEFAULT '',"
    "  group_id INTEGER NOT NULL REFERENCES groups (id),"
    "  enabled INTEGER NOT NULL DEFAULT 1,"
    "  expires_at INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX api_keys_group ON api_keys (group_id);"
    "CREATE TABLE prices ("
    "  model_prefix TEXT PRIMARY KEY,"
    "  input INTEGER NOT NULL,"
    "  output INTEGER NOT NULL,"
    "  cache_write_5m INTEGER NOT NULL,"
    "  cache_write_1h INTEGER NOT NULL,"
    "  cache_read INTEGER NOT NULL);"
    "CREATE TABLE usage_log ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  request_id TEXT NOT NULL,"
    "  edge_id TEXT NOT NULL,"
    "  key_id INTEGER NOT NULL,"
    "  account_id INTEGER NOT NULL,"
    "  model TEXT NOT NULL,"
    "  dialect TEXT NOT NULL,"
    "  input_tokens INTEGER NOT NULL,"
    "  output_tokens INTEGER NOT NULL,"
    "  cache_read_tokens INTEGER NOT NULL,"
    "  cache_write_5m_tokens INTEGER NOT NULL,"
    "  cache_write_1h_tokens INTEGER NOT NULL,"
    "  reasoning_tokens INTEGER NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  latency_ms INTEGER NOT NULL,"
    "  time_ms INTEGER NOT NULL,"
    "  partial INTEGER NOT NULL,"
    "  cost_micros INTEGER);"
    "CREATE INDEX usage_log_time ON usage_log (time_ms);"
    "CREATE INDEX usage_log_key_time ON usage_log (key_id, time_ms);"
    "CREATE TABLE edge_usage_seq ("
    "  edge_id TEXT PRIMARY KEY,"
    "  last_seq INTEGER NOT NULL);";

/* Public list prices (USD per million tokens x 1e6). Longest prefix wins,
 * so "claude-opus-4-5" overrides "claude-opus-4". */
static const char sq_migration_2[] =
    "INSERT INTO prices (model_prefix, input, output, cache_write_5m, cache_write_1h, "
    "cache_read) VALUES"
    " ('claude-opus-4',      15000000, 75000000, 18750000, 30000000, 1500000),"
    " ('claude-opus-4-5',     5000000, 25000000,  6250000, 10000000,  500000),"
    " ('claude-3-opus',      15000000, 75000000, 18750000, 30000000, 1500000),"
    " ('claude-sonnet-4',     3000000, 15000000,  3750000,  6000000,  300000),"
    " ('claude-sonnet-4-5',   3000000, 15000000,  3750000,  6000000,  300000),"
    " ('claude-3-7-sonnet',   3000000, 15000000,  3750000,  6000000,  300000),"
    " ('claude-3-5-sonnet',   3000000, 15000000,  3750000,  6000000,  300000),"
    " ('claude-haiku-4-5',    1000000,  5000000,  1250000,  2000000,  100000),"
    " ('claude-3-5-haiku',     800000,  4000000,  1000000,  1600000,   80000),"
    " ('claude-3-haiku',       250000,  1250000,   300000,   500000,   30000),"
    " ('fake-',               1000000,  2000000,  1250000,  2000000,  100000);";

/* Routing and limits: account pools, group binding modes, account models,
 * concurrency, proxy and health, key limits and revocation. Model lists are
 * JSON arrays of strings ("" = none). */
static const char sq_migration_3[] =
    "CREATE TABLE pools ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE pool_accounts ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  pool_id INTEGER NOT NULL REFERENCES pools (id),"
    "  account_id INTEGER NOT NULL REFERENCES accounts (id),"
    "  created_at INTEGER NOT NULL,"
    "  UNIQUE (pool_id, account_id));"
    "CREATE INDEX pool_accounts_account ON pool_accounts (account_id);"
    "ALTER TABLE groups ADD COLUMN mode TEXT NOT NULL DEFAULT 'dedicated'"
    "  CHECK (mode IN ('dedicated', 'pool', 'hybrid'));"
    "ALTER TABLE groups ADD COLUMN pool_id INTEGER REFERENCES pools (id);"
    "ALTER TABLE accounts ADD COLUMN models TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE accounts ADD COLUMN max_concurrency INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE accounts ADD COLUMN proxy TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE accounts ADD COLUMN disabled_reason TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE accounts ADD COLUMN cooldown_until_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE accounts ADD COLUMN auth_failures INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE accounts ADD COLUMN auth_fail_last_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE accounts ADD COLUMN auth_fail_prev_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE api_keys ADD COLUMN rpm_limit INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE api_keys ADD COLUMN tpm_limit INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE api_keys ADD COLUMN concurrency_limit INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE api_keys ADD COLUMN allowed_models TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE api_keys ADD COLUMN revoked_at INTEGER NOT NULL DEFAULT 0;";

/* Distributed mode: the edge registry (enrolment secrets sealed with the
 * master key, latest heartbeat and the one before it). */
static const char sq_migration_4[] = "CREATE TABLE edges ("
                                     "  id TEXT PRIMARY KEY,"
                                     "  name TEXT NOT NULL DEFAULT '',"
                                     "  region TEXT NOT NULL DEFAULT '',"
                                     "  secret BLOB,"
                                     "  trusted INTEGER NOT NULL DEFAULT 0,"
                                     "  created_at INTEGER NOT NULL,"
                                     "  revoked_at INTEGER NOT NULL DEFAULT 0,"
                                     "  last_seen_ms INTEGER NOT NULL DEFAULT 0,"
                                     "  heartbeat_ms INTEGER NOT NULL DEFAULT 0,"
                                     "  version TEXT NOT NULL DEFAULT '',"
                                     "  snapshot_version INTEGER NOT NULL DEFAULT 0,"
                                     "  snapshot_source TEXT NOT NULL DEFAULT '',"
                                     "  requests_total INTEGER NOT NULL DEFAULT 0,"
                                     "  errors_total INTEGER NOT NULL DEFAULT 0,"
                                     "  usage_pending INTEGER NOT NULL DEFAULT 0,"
                                     "  uptime_s INTEGER NOT NULL DEFAULT 0,"
                                     "  prev_requests_total INTEGER NOT NULL DEFAULT 0,"
                                     "  prev_errors_total INTEGER NOT NULL DEFAULT 0,"
                                     "  prev_heartbeat_ms INTEGER NOT NULL DEFAULT 0);";

static const char *const sq_migrations[] = {
    sq_migration_1,
    sq_migration_2,
    sq_migration_3,
    sq_migration_4,
};

#define SQ_N_MIGRATIONS (sizeof(sq_migrations) / sizeof(sq_migrations[0]))

struct sq_priv {
    sqlite3 *db;
    sqlite3_stmt *stmt[SQ_STMT_COUNT];
};

static int64_t
sq_now(void)
{
    return (int64_t)time(NULL);
}

/* Maps a failed call to our error enum. Constraint failures are expected
 * answers (a duplicate name, a missing parent) and are not logged. */
static gw_err
sq_fail(struct sq_priv *p, int rc, const char *what)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return GW_EEXIST;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return GW_ENOTFOUND;
    default:
        gw_log(GW_LOG_ERROR, "HUB-STORE-SQLITE", "%s: %s (%d)", what, sqlite3_errmsg(p->db), rc);
        return GW_ESTORE;
    }
}

/* Returns the cached statement, preparing it on first use. */
static gw_err
sq_stmt(struct sq_priv *p, enum sq_stmt id, sqlite3_stmt **out)
{
    int rc;

    if (p->stmt[id] == NULL) {
        rc = sqlite3_prepare_v3(p->db, sq_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &p->stmt[id],
                                NULL);
        if (rc != SQLITE_OK) {
            p->stmt[id] = NULL;
            return sq_fail(p, rc, "prepare");
        }
    }
    *out = p->stmt[id];
    return GW_OK;
}

/* Leaves a statement ready for its next use. */
static void
sq_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Runs a statement that returns no rows (or whose rows are ignored). */
static gw_err
sq_run(struct sq_priv *p, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    gw_err rv = GW_OK;

    while (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), what);
    sq_done(s);
    return rv;
}

static gw_err
sq_simple(struct sq_priv *p, enum sq_stmt id)
{
    sqlite3_stmt *s = NULL;
    gw_err rv = sq_stmt(p, id, &s);

    if (rv != GW_OK)
        return rv;
    return sq_run(p, s, sq_sql[id]);
}

static gw_err
sq_begin(struct sq_priv *p, int write)
{
    return sq_simple(p, write ? SQ_BEGIN_IMMEDIATE : SQ_BEGIN);
}

static gw_err
sq_commit(struct sq_priv *p)
{
    return sq_simple(p, SQ_COMMIT);
}

/* Safe to call when no transaction is open (SQLite may already have rolled
 * back on its own after some errors). */
static void
sq_rollback(struct sq_priv *p)
{
    if (!sqlite3_get_autocommit(p->db))
        (void)sq_simple(p, SQ_ROLLBACK);
}

static void
sq_bind_text(sqlite3_stmt *s, int i, const char *text)
{
    sqlite3_bind_text(s, i, text != NULL ? text : "", -1, SQLITE_STATIC);
}

/* Binds a fixed-size field that may fill its array without a NUL. */
static void
sq_bind_field(sqlite3_stmt *s, int i, const char *field, size_t size)
{
    sqlite3_bind_text(s, i, field, (int)strnlen(field, size), SQLITE_STATIC);
}

static void
sq_col_text(sqlite3_stmt *s, int i, char *buf, size_t size)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);

    if (t == NULL)
        n = 0;
    if (n >= size)
        n = size - 1;
    if (n > 0)
        memcpy(buf, t, n);
    buf[n] = '\0';
}

static char *
sq_col_strdup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);

    if (t == NULL)
        return gw_xstrdup("");
    return gw_xstrndup((const char *)t, (size_t)sqlite3_column_bytes(s, i));
}

/* Reads one integer from a single-row query with no parameters bound beyond
 * what the caller already bound. *found = 0 when there is no row. */
static gw_err
sq_one_int(struct sq_priv *p, sqlite3_stmt *s, int64_t *out, int *found, const char *what)
{
    int rc = sqlite3_step(s);
    gw_err rv = GW_OK;

    *found = 0;
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        *found = 1;
    } else if (rc != SQLITE_DONE) {
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), what);
    }
    sq_done(s);
    return rv;
}

static gw_err
sq_open(void *priv, const char *dsn_rest, struct gw_buf *err)
{
    struct sq_priv *p = priv;
    static const char pragmas[] = "PRAGMA journal_mode = WAL;"
                                  "PRAGMA synchronous = NORMAL;"
                                  "PRAGMA foreign_keys = ON;";
    char *msg = NULL;
    int rc;

    /* The wrappers serialise every call, so SQLite's own mutexes are not
     * needed on this connection. */
    rc = sqlite3_open_v2(dsn_rest, &p->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        gw_buf_appendf(err, "sqlite: cannot open \"%s\": %s", dsn_rest,
                       p->db != NULL ? sqlite3_errmsg(p->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(p->db, 1);
    sqlite3_busy_timeout(p->db, SQ_BUSY_TIMEOUT_MS);
    rc = sqlite3_exec(p->db, pragmas, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        gw_buf_appendf(err, "sqlite: setting up \"%s\": %s", dsn_rest, msg ? msg : "?");
        sqlite3_free(msg);
        goto fail;
    }
    return GW_OK;
fail:
    sqlite3_close(p->db);
    p->db = NULL;
    return GW_ESTORE;
}

static void
sq_close(void *priv)
{
    struct sq_priv *p = priv;

    for (int i = 0; i < SQ_STMT_COUNT; i++) {
        sqlite3_finalize(p->stmt[i]);
        p->stmt[i] = NULL;
    }
    sqlite3_close(p->db);
    p->db = NULL;
}

static gw_err
sq_migrate(void *priv, struct gw_buf *err)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    char *msg = NULL;
    int64_t have = 0;
    int found = 0;
    int reported = 0;
    gw_err rv;
    int rc;

    rc = sqlite3_exec(p->db,
                      "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      "  version INTEGER PRIMARY KEY,"
                      "  applied_at INTEGER NOT NULL)",
                      NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        gw_buf_appendf(err, "sqlite: creating schema_migrations: %s", msg ? msg : "?");
        sqlite3_free(msg);
        return GW_ESTORE;
    }
    for (size_t v = 1; v <= SQ_N_MIGRATIONS; v++) {
        /* The write lock is taken before reading the version, so two hubs
         * starting on one file apply each migration once. */
        rv = sq_begin(p, 1);
        if (rv != GW_OK)
            goto fail;
        rv = sq_stmt(p, SQ_MIGRATIONS_MAX, &s);
        if (rv != GW_OK)
            goto fail;
        rv = sq_one_int(p, s, &have, &found, "schema_migrations");
        if (rv != GW_OK)
            goto fail;
        if (have >= (int64_t)v) {
            rv = sq_commit(p);
            if (rv != GW_OK)
                goto fail;
            continue;
        }
        rc = sqlite3_exec(p->db, sq_migrations[v - 1], NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
            gw_buf_appendf(err, "sqlite: migration %zu: %s", v, msg ? msg : "?");
            sqlite3_free(msg);
            msg = NULL;
            reported = 1;
            rv = GW_ESTORE;
            goto fail;
        }
        rv = sq_stmt(p, SQ_MIGRATIONS_ADD, &s);
        if (rv != GW_OK)
            goto fail;
        sqlite3_bind_int64(s, 1, (sqlite3_int64)v);
        sqlite3_bind_int64(s, 2, sq_now());
        rv = sq_run(p, s, "schema_migrations insert");
        if (rv != GW_OK)
            goto fail;
        rv = sq_commit(p);
        if (rv != GW_OK)
            goto fail;
        gw_log(GW_LOG_INFO, "HUB-STORE-MIGRATE", "sqlite: applied migration %zu", v);
    }
    return GW_OK;
fail:
    if (!reported)
        gw_buf_appendf(err, "sqlite: migration failed: %s", sqlite3_errmsg(p->db));
    sq_rollback(p);
    return rv;
}

static gw_err
sq_config_version(void *priv, uint64_t *out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    int64_t v = 0;
    int found;
    gw_err rv;

    rv = sq_stmt(p, SQ_CONFIG_VERSION, &s);
    if (rv != GW_OK)
        return rv;
    rv = sq_one_int(p, s, &v, &found, "config_version");
    if (rv != GW_OK)
        return rv;
    if (!found)
        return GW_ESTORE;
    *out = (uint64_t)v;
    return GW_OK;
}

/* Inside the caller's write transaction: bumps the config version and logs
 * the change under the new version. */
static gw_err
sq_config_changed(struct sq_priv *p, const char *entity, uint64_t entity_id, const char *op)
{
    sqlite3_stmt *s = NULL;
    int64_t version = 0;
    int found;
    gw_err rv;

    rv = sq_stmt(p, SQ_CONFIG_BUMP, &s);
    if (rv != GW_OK)
        return rv;
    rv = sq_one_int(p, s, &version, &found, "config bump");
    if (rv != GW_OK)
        return rv;
    if (!found)
        return GW_ESTORE;
    rv = sq_stmt(p, SQ_CHANGE_LOG_ADD, &s);
    if (rv != GW_OK)
        return rv;
    sqlite3_bind_int64(s, 1, version);
    sq_bind_text(s, 2, entity);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)entity_id);
    sq_bind_text(s, 4, op);
    sqlite3_bind_int64(s, 5, sq_now());
    return sq_run(p, s, "change_log insert");
}

static gw_err
sq_admin_count(void *priv, uint64_t *out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    int64_t n = 0;
    int found;
    gw_err rv;

    rv = sq_stmt(p, SQ_ADMIN_COUNT, &s);
    if (rv != GW_OK)
        return rv;
    rv = sq_one_int(p, s, &n, &found, "admin count");
    if (rv == GW_OK)
        *out = (uint64_t)n;
    return rv;
}

static gw_err
sq_admin_create(void *priv, const char *username, const char *password_hash, int must_change,
                uint64_t *id_out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;

    rv = sq_stmt(p, SQ_ADMIN_CREATE, &s);
    if (rv != GW_OK)
        return rv;
    sq_bind_text(s, 1, username);
    sq_bind_text(s, 2, password_hash);
    sqlite3_bind_int(s, 3, must_change);
    sqlite3_bind_int64(s, 4, sq_now());
    rv = sq_run(p, s, "admin insert");
    if (rv == GW_OK && id_out != NULL)
        *id_out = (uint64_t)sqlite3_last_insert_rowid(p->db);
    return rv;
}

static gw_err
sq_admin_get(void *priv, const char *username, struct hub_admin *out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_ADMIN_GET, &s);
    if (rv != GW_OK)
        return rv;
    sq_bind_text(s, 1, username);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->id = (uint64_t)sqlite3_column_int64(s, 0);
        sq_col_text(s, 1, out->username, sizeof(out->username));
        out->password_hash = sq_col_strdup(s, 2);
        out->must_change_password = sqlite3_column_int(s, 3) != 0;
        rv = GW_OK;
    } else if (rc == SQLITE_DONE) {
        rv = GW_ENOTFOUND;
    } else {
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "admin get");
    }
    sq_done(s);
    return rv;
}

static int64_t
sq_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Binds a model list as its JSON text, "" for none. buf holds the text and
 * must outlive the statement's step. */
static void
sq_bind_models(sqlite3_stmt *s, int i, const char *const *models, size_t n, struct gw_buf *buf)
{
    gw_buf_reset(buf);
    if (n > 0)
        hub_store_models_to_json(models, n, buf);
    sqlite3_bind_text(s, i, buf->data != NULL ? buf->data : "", (int)buf->len, SQLITE_STATIC);
}

static gw_err
sq_col_models(sqlite3_stmt *s, int i, char ***out, size_t *n_out)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    gw_err rv;

    rv = hub_store_models_from_json((const char *)t,
                                    t != NULL ? (size_t)sqlite3_column_bytes(s, i) : 0, out, n_out);
    if (rv != GW_OK)
        gw_log(GW_LOG_ERROR, "HUB-STORE-SQLITE", "a model list column is not a JSON array");
    return rv;
}

/* Grows *arr (of elem_size items, *cap of them) to hold one more than n. */
static void *
sq_grow(void *arr, size_t n, size_t *cap, size_t elem_size)
{
    if (n < *cap)
        return arr;
    *cap = *cap ? *cap * 2 : 16;
    arr = gw_xrealloc(arr, *cap * elem_size);
    return arr;
}

/* ---- groups ------------------------------------------------------------- */

static gw_err
sq_group_create(void *priv, const char *name, struct hub_group *out)
{
    struct sq_priv *p = priv;
    int64_t now = sq_now();
    sqlite3_stmt *s = NULL;
    uint64_t id;
    gw_err rv;

    rv = sq_begin(p, 1);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_GROUP_CREATE, &s);
    if (rv != GW_OK)
        goto fail;
    sq_bind_text(s, 1, name);
    sqlite3_bind_int64(s, 2, now);
    rv = sq_run(p, s, "group insert");
    if (rv != GW_OK)
        goto fail;
    id = (uint64_t)sqlite3_last_insert_rowid(p->db);
    rv = sq_config_changed(p, "group", id, "create");
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    memset(out, 0, sizeof(*out));
    out->id = id;
    snprintf(out->name, sizeof(out->name), "%s", name);
    out->created_at = now;
    snprintf(out->mode, sizeof(out->mode), "dedicated");
    return GW_OK;
fail:
    sq_rollback(p);
    return rv;
}

static void
sq_group_row(sqlite3_stmt *s, struct hub_group *out)
{
    memset(out, 0, sizeof(*out));
    out->id = (uint64_t)sqlite3_column_int64(s, 0);
    sq_col_text(s, 1, out->name, sizeof(out->name));
    out->created_at = sqlite3_column_int64(s, 2);
    sq_col_text(s, 3, out->mode, sizeof(out->mode));
    out->pool_id = (uint64_t)sqlite3_column_int64(s, 4);
}

static gw_err
sq_group_get(void *priv, uint64_t id, struct hub_group *out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_GROUP_GET, &s);
    if (rv != GW_OK)
        return rv;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        sq_group_row(s, out);
    else if (rc == SQLITE_DONE)
        rv = GW_ENOTFOUND;
    else
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "group get");
    sq_done(s);
    return rv;
}

static gw_err
sq_group_list(void *priv, struct hub_group **out, size_t *n_out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_GROUP_LIST, &s);
    if (rv != GW_OK)
        return rv;
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        *out = sq_grow(*out, *n_out, &cap, sizeof(**out));
        sq_group_row(s, &(*out)[(*n_out)++]);
    }
    if (rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "group list");
    sq_done(s);
    return rv;
}

static gw_err
sq_pool_exists(struct sq_priv *p, uint64_t id)
{
    sqlite3_stmt *s = NULL;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_POOL_GET, &s);
    if (rv != GW_OK)
        return rv;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        rv = GW_ENOTFOUND;
    else if (rc != SQLITE_ROW)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "pool get");
    sq_done(s);
    return rv;
}

/* Read, merge, check, write: all under the write lock. */
static gw_err
sq_group_update(void *priv, uint64_t id, const struct hub_group_patch *patch, struct hub_group *out)
{
    struct sq_priv *p = priv;
    struct hub_group cur;
    sqlite3_stmt *s = NULL;
    gw_err rv;

    rv = sq_begin(p, 1);
    if (rv != GW_OK)
        return rv;
    rv = sq_group_get(p, id, &cur);
    if (rv != GW_OK)
        goto fail;
    if (patch->fields & HUB_GROUP_SET_MODE)
        snprintf(cur.mode, sizeof(cur.mode), "%s", patch->mode);
    if (patch->fields & HUB_GROUP_SET_POOL)
        cur.pool_id = patch->pool_id;
    if (strcmp(cur.mode, "dedicated") != 0 && cur.pool_id == 0) {
        rv = GW_EINVAL;
        goto fail;
    }
    if (cur.pool_id != 0) {
        rv = sq_pool_exists(p, cur.pool_id);
        if (rv != GW_OK)
            goto fail;
    }
    rv = sq_stmt(p, SQ_GROUP_UPDATE, &s);
    if (rv != GW_OK)
        goto fail;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    sq_bind_text(s, 2, cur.mode);
    if (cur.pool_id != 0)
        sqlite3_bind_int64(s, 3, (sqlite3_int64)cur.pool_id);
    rv = sq_run(p, s, "group update");
    if (rv != GW_OK)
        goto fail;
    rv = sq_config_changed(p, "group", id, "update");
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    *out = cur;
    return GW_OK;
fail:
    sq_rollback(p);
    return rv;
}

/* ---- accounts ----------------------------------------------------------- */

static gw_err
sq_account_row(sqlite3_stmt *s, struct hub_account *out)
{
    memset(out, 0, sizeof(*out));
    out->id = (uint64_t)sqlite3_column_int64(s, 0);
    sq_col_text(s, 1, out->name, sizeof(out->name));
    sq_col_text(s, 2, out->kind, sizeof(out->kind));
    sq_col_text(s, 3, out->base_url, sizeof(out->base_url));
    out->priority = sqlite3_column_int(s, 4);
    out->weight = sqlite3_column_int(s, 5);
    out->enabled = sqlite3_column_int(s, 6) != 0;
    out->created_at = sqlite3_column_int64(s, 7);
    out->max_concurrency = (uint32_t)sqlite3_column_int64(s, 9);
    sq_col_text(s, 10, out->proxy, sizeof(out->proxy));
    sq_col_text(s, 11, out->disabled_reason, sizeof(out->disabled_reason));
    out->cooldown_until_ms = sqlite3_column_int64(s, 12);
    out->auth_failures = (uint32_t)sqlite3_column_int64(s, 13);
    return sq_col_models(s, 8, &out->models, &out->n_models);
}

static gw_err
sq_account_get(void *priv, uint64_t id, struct hub_account *out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_ACCOUNT_GET, &s);
    if (rv != GW_OK)
        return rv;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rv = sq_account_row(s, out);
    else if (rc == SQLITE_DONE)
        rv = GW_ENOTFOUND;
    else
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "account get");
    sq_done(s);
    return rv;
}

static gw_err
sq_account_list(void *priv, struct hub_account **out, size_t *n_out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_ACCOUNT_LIST, &s);
    if (rv != GW_OK)
        return rv;
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        *out = sq_grow(*out, *n_out, &cap, sizeof(**out));
        /* Counted first: the wrapper frees what a failed row holds. */
        rv = sq_account_row(s, &(*out)[(*n_out)++]);
        if (rv != GW_OK)
            break;
    }
    if (rv == GW_OK && rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "account list");
    sq_done(s);
    return rv;
}

static gw_err
sq_account_create(void *priv, const struct hub_account_new *in, struct hub_account *out)
{
    struct sq_priv *p = priv;
    struct gw_buf models = GW_BUF_INIT;
    sqlite3_stmt *s = NULL;
    uint64_t id = 0;
    gw_err rv;

    rv = sq_begin(p, 1);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_ACCOUNT_CREATE, &s);
    if (rv != GW_OK)
        goto fail;
    sq_bind_text(s, 1, in->name);
    sq_bind_text(s, 2, in->kind);
    sq_bind_text(s, 3, in->base_url);
    /* A zero-length blob, not NULL, for an account without a credential. */
    sqlite3_bind_blob(s, 4,
                      in->credential_sealed != NULL ? (const void *)in->credential_sealed : "",
                      (int)in->credential_sealed_len, SQLITE_STATIC);
    sqlite3_bind_int(s, 5, in->priority);
    sqlite3_bind_int(s, 6, in->weight);
    sqlite3_bind_int64(s, 7, sq_now());
    sq_bind_models(s, 8, in->models, in->n_models, &models);
    sqlite3_bind_int64(s, 9, in->max_concurrency);
    sq_bind_text(s, 10, in->proxy);
    rv = sq_run(p, s, "account insert");
    if (rv != GW_OK)
        goto fail;
    id = (uint64_t)sqlite3_last_insert_rowid(p->db);
    rv = sq_config_changed(p, "account", id, "create");
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    gw_buf_fini(&models);
    return sq_account_get(p, id, out);
fail:
    sq_rollback(p);
    gw_buf_fini(&models);
    return rv;
}

static gw_err
sq_account_update(void *priv, uint64_t id, const struct hub_account_patch *patch,
                  struct hub_account *out)
{
    struct sq_priv *p = priv;
    struct gw_buf models = GW_BUF_INIT;
    sqlite3_stmt *s = NULL;
    unsigned f = patch->fields;
    gw_err rv;

    rv = sq_begin(p, 1);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_ACCOUNT_UPDATE, &s);
    if (rv != GW_OK)
        goto fail;
    /* Unbound parameters are NULL: the column keeps its value. */
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    if (f & HUB_ACCOUNT_SET_NAME)
        sq_bind_text(s, 2, patch->name);
    if (f & HUB_ACCOUNT_SET_BASE_URL)
        sq_bind_text(s, 3, patch->base_url);
    if (f & HUB_ACCOUNT_SET_CREDENTIAL)
        sqlite3_bind_blob(
            s, 4, patch->credential_sealed != NULL ? (const void *)patch->credential_sealed : "",
            (int)patch->credential_sealed_len, SQLITE_STATIC);
    if (f & HUB_ACCOUNT_SET_PRIORITY)
        sqlite3_bind_int(s, 5, patch->priority);
    if (f & HUB_ACCOUNT_SET_WEIGHT)
        sqlite3_bind_int(s, 6, patch->weight);
    if (f & HUB_ACCOUNT_SET_MODELS)
        sq_bind_models(s, 7, patch->models, patch->n_models, &models);
    if (f & HUB_ACCOUNT_SET_MAX_CONCURRENCY)
        sqlite3_bind_int64(s, 8, patch->max_concurrency);
    if (f & HUB_ACCOUNT_SET_PROXY)
        sq_bind_text(s, 9, patch->proxy);
    if (f & HUB_ACCOUNT_SET_ENABLED)
        sqlite3_bind_int(s, 10, patch->enabled ? 1 : 0);
    rv = sq_run(p, s, "account update");
    if (rv != GW_OK)
        goto fail;
    if (sqlite3_changes(p->db) == 0) {
        rv = GW_ENOTFOUND;
        goto fail;
    }
    rv = sq_config_changed(p, "account", id, "update");
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    gw_buf_fini(&models);
    return sq_account_get(p, id, out);
fail:
    sq_rollback(p);
    gw_buf_fini(&models);
    return rv;
}

/* Applies one account event inside the caller's write transaction. */
static gw_err
sq_account_event(struct sq_priv *p, const struct gw_account_event *ev, int64_t now_ms)
{
    struct hub_store_account_health h;
    sqlite3_stmt *s = NULL;
    char reason[128];
    unsigned changed;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_ACCOUNT_HEALTH_GET, &s);
    if (rv != GW_OK)
        return rv;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)ev->account_id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(&h, 0, sizeof(h));
        h.enabled = sqlite3_column_int(s, 0) != 0;
        h.cooldown_until_ms = sqlite3_column_int64(s, 1);
        h.auth_failures = (uint32_t)sqlite3_column_int64(s, 2);
        h.auth_fail_last_ms = sqlite3_column_int64(s, 3);
        h.auth_fail_prev_ms = sqlite3_column_int64(s, 4);
    } else if (rc != SQLITE_DONE) {
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "account health get");
    }
    sq_done(s);
    if (rv != GW_OK || rc == SQLITE_DONE)
        return rv; /* an unknown account: nothing to change */
    changed = hub_store_account_event_apply(&h, ev, now_ms, reason, sizeof(reason));
    if (changed == 0)
        return GW_OK;
    rv = sq_stmt(p, SQ_ACCOUNT_HEALTH_SET, &s);
    if (rv != GW_OK)
        return rv;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)ev->account_id);
    sqlite3_bind_int64(s, 2, h.cooldown_until_ms);
    sqlite3_bind_int64(s, 3, h.auth_failures);
    sqlite3_bind_int64(s, 4, h.auth_fail_last_ms);
    sqlite3_bind_int64(s, 5, h.auth_fail_prev_ms);
    rv = sq_run(p, s, "account health set");
    if (rv != GW_OK)
        return rv;
    if (changed & HUB_STORE_EVENT_DISABLED) {
        rv = sq_stmt(p, SQ_ACCOUNT_DISABLE, &s);
        if (rv != GW_OK)
            return rv;
        sqlite3_bind_int64(s, 1, (sqlite3_int64)ev->account_id);
        sq_bind_text(s, 2, reason);
        rv = sq_run(p, s, "account disable");
        if (rv == GW_OK)
            rv = sq_config_changed(p, "account", ev->account_id, "disable");
        if (rv == GW_OK)
            gw_log(GW_LOG_WARN, "HUB-ACCOUNT-DISABLED", "account %llu disabled: %s",
                   (unsigned long long)ev->account_id, reason);
    }
    if (rv == GW_OK && (changed & HUB_STORE_EVENT_COOLDOWN))
        rv = sq_config_changed(p, "account", ev->account_id, "cooldown");
    return rv;
}

static gw_err
sq_binding_create(void *priv, uint64_t group_id, uint64_t account_id)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;

    rv = sq_begin(p, 1);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_BINDING_CREATE, &s);
    if (rv != GW_OK)
        goto fail;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)group_id);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)account_id);
    sqlite3_bind_int64(s, 3, sq_now());
    rv = sq_run(p, s, "binding insert");
    if (rv != GW_OK)
        goto fail;
    rv = sq_config_changed(p, "binding", (uint64_t)sqlite3_last_insert_rowid(p->db), "create");
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    return GW_OK;
fail:
    sq_rollback(p);
    return rv;
}

/* ---- pools -------------------------------------------------------------- */

static gw_err
sq_pool_create(void *priv, const char *name, struct hub_pool *out)
{
    struct sq_priv *p = priv;
    int64_t now = sq_now();
    sqlite3_stmt *s = NULL;
    uint64_t id;
    gw_err rv;

    rv = sq_begin(p, 1);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_POOL_CREATE, &s);
    if (rv != GW_OK)
        goto fail;
    sq_bind_text(s, 1, name);
    sqlite3_bind_int64(s, 2, now);
    rv = sq_run(p, s, "pool insert");
    if (rv != GW_OK)
        goto fail;
    id = (uint64_t)sqlite3_last_insert_rowid(p->db);
    rv = sq_config_changed(p, "pool", id, "create");
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    out->id = id;
    snprintf(out->name, sizeof(out->name), "%s", name);
    out->created_at = now;
    return GW_OK;
fail:
    sq_rollback(p);
    return rv;
}

/* Every pool membership, ordered by pool then by when it was added. */
struct sq_member {
    uint64_t pool_id;
    uint64_t account_id;
};

static gw_err
sq_pool_members(struct sq_priv *p, struct sq_member **out, size_t *n_out)
{
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    gw_err rv;
    int rc;

    *out = NULL;
    *n_out = 0;
    rv = sq_stmt(p, SQ_POOL_MEMBERS, &s);
    if (rv != GW_OK)
        return rv;
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        *out = sq_grow(*out, *n_out, &cap, sizeof(**out));
        (*out)[*n_out].pool_id = (uint64_t)sqlite3_column_int64(s, 0);
        (*out)[*n_out].account_id = (uint64_t)sqlite3_column_int64(s, 1);
        (*n_out)++;
    }
    if (rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "pool members");
    sq_done(s);
    return rv;
}

/* Copies the members of pool `id` out of m (sorted by pool), starting the
 * scan at *pos; pools must be visited in ascending id order. */
static void
sq_take_members(const struct sq_member *m, size_t n, size_t *pos, uint64_t id, uint64_t **ids,
                size_t *n_ids)
{
    size_t start;

    while (*pos < n && m[*pos].pool_id < id)
        (*pos)++;
    start = *pos;
    while (*pos < n && m[*pos].pool_id == id)
        (*pos)++;
    *ids = NULL;
    *n_ids = *pos - start;
    if (*n_ids == 0)
        return;
    *ids = gw_xcalloc(*n_ids, sizeof(**ids));
    for (size_t i = 0; i < *n_ids; i++)
        (*ids)[i] = m[start + i].account_id;
}

static gw_err
sq_pool_get(void *priv, uint64_t id, struct hub_pool *out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_POOL_GET, &s);
    if (rv != GW_OK)
        return rv;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->id = (uint64_t)sqlite3_column_int64(s, 0);
        sq_col_text(s, 1, out->name, sizeof(out->name));
        out->created_at = sqlite3_column_int64(s, 2);
    } else if (rc == SQLITE_DONE) {
        rv = GW_ENOTFOUND;
    } else {
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "pool get");
    }
    sq_done(s);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_POOL_MEMBERS_OF, &s);
    if (rv != GW_OK)
        return rv;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        out->account_ids =
            sq_grow(out->account_ids, out->n_account_ids, &cap, sizeof(*out->account_ids));
        out->account_ids[out->n_account_ids++] = (uint64_t)sqlite3_column_int64(s, 0);
    }
    if (rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "pool members of");
    sq_done(s);
    return rv;
}

static gw_err
sq_pool_list(void *priv, struct hub_pool **out, size_t *n_out)
{
    struct sq_priv *p = priv;
    struct sq_member *m = NULL;
    sqlite3_stmt *s = NULL;
    size_t cap = 0, n_m = 0, pos = 0;
    gw_err rv;
    int rc;

    rv = sq_begin(p, 0);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_POOL_LIST, &s);
    if (rv != GW_OK)
        goto out;
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        struct hub_pool *pl;

        *out = sq_grow(*out, *n_out, &cap, sizeof(**out));
        pl = &(*out)[(*n_out)++];
        memset(pl, 0, sizeof(*pl));
        pl->id = (uint64_t)sqlite3_column_int64(s, 0);
        sq_col_text(s, 1, pl->name, sizeof(pl->name));
        pl->created_at = sqlite3_column_int64(s, 2);
    }
    if (rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "pool list");
    sq_done(s);
    if (rv == GW_OK)
        rv = sq_pool_members(p, &m, &n_m);
    for (size_t i = 0; rv == GW_OK && i < *n_out; i++)
        sq_take_members(m, n_m, &pos, (*out)[i].id, &(*out)[i].account_ids,
                        &(*out)[i].n_account_ids);
    free(m);
    if (rv == GW_OK)
        rv = sq_commit(p);
out:
    if (rv != GW_OK)
        sq_rollback(p);
    return rv;
}

static gw_err
sq_pool_add_account(void *priv, uint64_t pool_id, uint64_t account_id)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;

    rv = sq_begin(p, 1);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_POOL_ADD, &s);
    if (rv != GW_OK)
        goto fail;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)pool_id);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)account_id);
    sqlite3_bind_int64(s, 3, sq_now());
    rv = sq_run(p, s, "pool account insert");
    if (rv != GW_OK)
        goto fail;
    rv = sq_config_changed(p, "pool_account", (uint64_t)sqlite3_last_insert_rowid(p->db), "create");
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    return GW_OK;
fail:
    sq_rollback(p);
    return rv;
}

/* ---- keys --------------------------------------------------------------- */

static gw_err
sq_key_row(sqlite3_stmt *s, struct hub_key *out)
{
    memset(out, 0, sizeof(*out));
    out->id = (uint64_t)sqlite3_column_int64(s, 0);
    out->group_id = (uint64_t)sqlite3_column_int64(s, 1);
    sq_col_text(s, 2, out->name, sizeof(out->name));
    sq_col_text(s, 3, out->prefix, sizeof(out->prefix));
    out->enabled = sqlite3_column_int(s, 4) != 0;
    out->expires_at = sqlite3_column_int64(s, 5);
    out->created_at = sqlite3_column_int64(s, 6);
    out->rpm_limit = (uint32_t)sqlite3_column_int64(s, 7);
    out->tpm_limit = (uint32_t)sqlite3_column_int64(s, 8);
    out->concurrency_limit = (uint32_t)sqlite3_column_int64(s, 9);
    return sq_col_models(s, 10, &out->allowed_models, &out->n_allowed_models);
}

static gw_err
sq_key_get(void *priv, uint64_t id, struct hub_key *out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_KEY_GET, &s);
    if (rv != GW_OK)
        return rv;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rv = sq_key_row(s, out);
    else if (rc == SQLITE_DONE)
        rv = GW_ENOTFOUND;
    else
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "key get");
    sq_done(s);
    return rv;
}

static gw_err
sq_key_list(void *priv, uint64_t group_id, struct hub_key **out, size_t *n_out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, group_id != 0 ? SQ_KEY_LIST_GROUP : SQ_KEY_LIST_ALL, &s);
    if (rv != GW_OK)
        return rv;
    if (group_id != 0)
        sqlite3_bind_int64(s, 1, (sqlite3_int64)group_id);
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        *out = sq_grow(*out, *n_out, &cap, sizeof(**out));
        rv = sq_key_row(s, &(*out)[(*n_out)++]);
        if (rv != GW_OK)
            break;
    }
    if (rv == GW_OK && rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "key list");
    sq_done(s);
    return rv;
}

static gw_err
sq_key_create(void *priv, const struct hub_key_new *in, struct hub_key *out)
{
    struct sq_priv *p = priv;
    struct gw_buf models = GW_BUF_INIT;
    sqlite3_stmt *s = NULL;
    uint64_t id = 0;
    gw_err rv;

    rv = sq_begin(p, 1);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_KEY_CREATE, &s);
    if (rv != GW_OK)
        goto fail;
    sqlite3_bind_blob(s, 1, in->key_hash, GW_SHA256_LEN, SQLITE_STATIC);
    sq_bind_text(s, 2, in->prefix);
    sq_bind_text(s, 3, in->name);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)in->group_id);
    sqlite3_bind_int64(s, 5, in->expires_at);
    sqlite3_bind_int64(s, 6, sq_now());
    sqlite3_bind_int64(s, 7, in->rpm_limit);
    sqlite3_bind_int64(s, 8, in->tpm_limit);
    sqlite3_bind_int64(s, 9, in->concurrency_limit);
    sq_bind_models(s, 10, in->allowed_models, in->n_allowed_models, &models);
    rv = sq_run(p, s, "key insert");
    if (rv != GW_OK)
        goto fail;
    id = (uint64_t)sqlite3_last_insert_rowid(p->db);
    rv = sq_config_changed(p, "key", id, "create");
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    gw_buf_fini(&models);
    return sq_key_get(p, id, out);
fail:
    sq_rollback(p);
    gw_buf_fini(&models);
    return rv;
}

static gw_err
sq_key_update(void *priv, uint64_t id, const struct hub_key_patch *patch, struct hub_key *out)
{
    struct sq_priv *p = priv;
    struct gw_buf models = GW_BUF_INIT;
    sqlite3_stmt *s = NULL;
    unsigned f = patch->fields;
    gw_err rv;

    rv = sq_begin(p, 1);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_KEY_UPDATE, &s);
    if (rv != GW_OK)
        goto fail;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    if (f & HUB_KEY_SET_NAME)
        sq_bind_text(s, 2, patch->name);
    if (f & HUB_KEY_SET_ENABLED)
        sqlite3_bind_int(s, 3, patch->enabled ? 1 : 0);
    if (f & HUB_KEY_SET_RPM)
        sqlite3_bind_int64(s, 4, patch->rpm_limit);
    if (f & HUB_KEY_SET_TPM)
        sqlite3_bind_int64(s, 5, patch->tpm_limit);
    if (f & HUB_KEY_SET_CONCURRENCY)
        sqlite3_bind_int64(s, 6, patch->concurrency_limit);
    if (f & HUB_KEY_SET_ALLOWED_MODELS)
        sq_bind_models(s, 7, patch->allowed_models, patch->n_allowed_models, &models);
    if (f & HUB_KEY_SET_EXPIRES_AT)
        sqlite3_bind_int64(s, 8, patch->expires_at);
    rv = sq_run(p, s, "key update");
    if (rv != GW_OK)
        goto fail;
    if (sqlite3_changes(p->db) == 0) {
        rv = GW_ENOTFOUND;
        goto fail;
    }
    rv = sq_config_changed(p, "key", id, "update");
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    gw_buf_fini(&models);
    return sq_key_get(p, id, out);
fail:
    sq_rollback(p);
    gw_buf_fini(&models);
    return rv;
}

static gw_err
sq_key_revoke(void *priv, uint64_t id)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;

    rv = sq_begin(p, 1);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_KEY_REVOKE, &s);
    if (rv != GW_OK)
        goto fail;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(s, 2, sq_now());
    rv = sq_run(p, s, "key revoke");
    if (rv != GW_OK)
        goto fail;
    if (sqlite3_changes(p->db) == 0) {
        rv = GW_ENOTFOUND;
        goto fail;
    }
    rv = sq_config_changed(p, "key", id, "revoke");
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    return GW_OK;
fail:
    sq_rollback(p);
    return rv;
}

/* ---- snapshot ----------------------------------------------------------- */

static gw_err
sq_snap_keys(struct sq_priv *p, struct gw_wire_snapshot *out)
{
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_SNAP_KEYS, &s);
    if (rv != GW_OK)
        return rv;
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        struct gw_wire_key *k;

        if (sqlite3_column_bytes(s, 1) != GW_SHA256_LEN) {
            gw_log(GW_LOG_ERROR, "HUB-STORE-SQLITE", "api_keys row with a bad hash length");
            rv = GW_ESTORE;
            break;
        }
        out->keys = sq_grow(out->keys, out->n_keys, &cap, sizeof(*out->keys));
        k = &out->keys[out->n_keys++];
        memset(k, 0, sizeof(*k));
        k->id = (uint64_t)sqlite3_column_int64(s, 0);
        memcpy(k->key_hash, sqlite3_column_blob(s, 1), GW_SHA256_LEN);
        k->group_id = (uint64_t)sqlite3_column_int64(s, 2);
        k->enabled = sqlite3_column_int(s, 3) != 0;
        k->expires_at = sqlite3_column_int64(s, 4);
        k->rpm_limit = (uint32_t)sqlite3_column_int64(s, 5);
        k->tpm_limit = (uint32_t)sqlite3_column_int64(s, 6);
        k->concurrency_limit = (uint32_t)sqlite3_column_int64(s, 7);
        rv = sq_col_models(s, 8, &k->allowed_models, &k->n_allowed_models);
        if (rv != GW_OK)
            break;
    }
    if (rv == GW_OK && rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "snapshot keys");
    sq_done(s);
    return rv;
}

static gw_err
sq_snap_groups(struct sq_priv *p, struct gw_wire_snapshot *out)
{
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_SNAP_GROUPS, &s);
    if (rv != GW_OK)
        return rv;
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        struct gw_wire_group *g;

        out->groups = sq_grow(out->groups, out->n_groups, &cap, sizeof(*out->groups));
        g = &out->groups[out->n_groups++];
        memset(g, 0, sizeof(*g));
        g->id = (uint64_t)sqlite3_column_int64(s, 0);
        g->name = sq_col_strdup(s, 1);
        g->mode = sq_col_strdup(s, 2);
        g->pool_id = (uint64_t)sqlite3_column_int64(s, 3);
    }
    if (rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "snapshot groups");
    sq_done(s);
    return rv;
}

static gw_err
sq_snap_accounts(struct sq_priv *p, struct gw_wire_snapshot *out)
{
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_SNAP_ACCOUNTS, &s);
    if (rv != GW_OK)
        return rv;
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        struct gw_wire_account *a;
        size_t n;

        out->accounts = sq_grow(out->accounts, out->n_accounts, &cap, sizeof(*out->accounts));
        a = &out->accounts[out->n_accounts++];
        memset(a, 0, sizeof(*a));
        a->id = (uint64_t)sqlite3_column_int64(s, 0);
        a->name = sq_col_strdup(s, 1);
        a->kind = sq_col_strdup(s, 2);
        a->base_url = sq_col_strdup(s, 3);
        n = (size_t)sqlite3_column_bytes(s, 4);
        if (n > 0) {
            a->credential = gw_xmalloc(n);
            memcpy(a->credential, sqlite3_column_blob(s, 4), n);
            a->credential_len = n;
        }
        a->priority = sqlite3_column_int(s, 5);
        a->weight = sqlite3_column_int(s, 6);
        a->enabled = sqlite3_column_int(s, 7) != 0;
        a->max_concurrency = (uint32_t)sqlite3_column_int64(s, 9);
        if (sqlite3_column_bytes(s, 10) > 0)
            a->proxy = sq_col_strdup(s, 10);
        a->cooldown_until_ms = sqlite3_column_int64(s, 11);
        rv = sq_col_models(s, 8, &a->models, &a->n_models);
        if (rv != GW_OK)
            break;
    }
    if (rv == GW_OK && rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "snapshot accounts");
    sq_done(s);
    return rv;
}

static gw_err
sq_snap_bindings(struct sq_priv *p, struct gw_wire_snapshot *out)
{
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_SNAP_BINDINGS, &s);
    if (rv != GW_OK)
        return rv;
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        struct gw_wire_binding *b;

        out->bindings = sq_grow(out->bindings, out->n_bindings, &cap, sizeof(*out->bindings));
        b = &out->bindings[out->n_bindings++];
        b->group_id = (uint64_t)sqlite3_column_int64(s, 0);
        b->account_id = (uint64_t)sqlite3_column_int64(s, 1);
    }
    if (rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "snapshot bindings");
    sq_done(s);
    return rv;
}

static gw_err
sq_snap_pools(struct sq_priv *p, struct gw_wire_snapshot *out)
{
    struct sq_member *m = NULL;
    sqlite3_stmt *s = NULL;
    size_t cap = 0, n_m = 0, pos = 0;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_SNAP_POOLS, &s);
    if (rv != GW_OK)
        return rv;
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        struct gw_wire_pool *pl;

        out->pools = sq_grow(out->pools, out->n_pools, &cap, sizeof(*out->pools));
        pl = &out->pools[out->n_pools++];
        memset(pl, 0, sizeof(*pl));
        pl->id = (uint64_t)sqlite3_column_int64(s, 0);
        pl->name = sq_col_strdup(s, 1);
    }
    if (rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "snapshot pools");
    sq_done(s);
    if (rv == GW_OK)
        rv = sq_pool_members(p, &m, &n_m);
    for (size_t i = 0; rv == GW_OK && i < out->n_pools; i++)
        sq_take_members(m, n_m, &pos, out->pools[i].id, &out->pools[i].account_ids,
                        &out->pools[i].n_account_ids);
    free(m);
    return rv;
}

/* One read transaction, so the version and the rows agree. The wrapper
 * frees a partial result on failure. */
static gw_err
sq_snapshot_load(void *priv, struct gw_wire_snapshot *out)
{
    struct sq_priv *p = priv;
    gw_err rv;

    rv = sq_begin(p, 0);
    if (rv != GW_OK)
        return rv;
    rv = sq_config_version(p, &out->version);
    if (rv != GW_OK)
        goto fail;
    rv = sq_snap_keys(p, out);
    if (rv != GW_OK)
        goto fail;
    rv = sq_snap_groups(p, out);
    if (rv != GW_OK)
        goto fail;
    rv = sq_snap_accounts(p, out);
    if (rv != GW_OK)
        goto fail;
    rv = sq_snap_bindings(p, out);
    if (rv != GW_OK)
        goto fail;
    rv = sq_snap_pools(p, out);
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    return GW_OK;
fail:
    sq_rollback(p);
    return rv;
}

static gw_err
sq_prices_list(void *priv, struct hub_price **out, size_t *n_out)
{
    struct sq_priv *p = priv;
    struct hub_price *arr = NULL;
    sqlite3_stmt *s = NULL;
    size_t n = 0, cap = 0;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_PRICES_LIST, &s);
    if (rv != GW_OK)
        return rv;
    for (rc = sqlite3_step(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        struct hub_price *pr;

        arr = sq_grow(arr, n, &cap, sizeof(*arr));
        pr = &arr[n++];
        memset(pr, 0, sizeof(*pr));
        sq_col_text(s, 0, pr->model_prefix, sizeof(pr->model_prefix));
        pr->input = sqlite3_column_int64(s, 1);
        pr->output = sqlite3_column_int64(s, 2);
        pr->cache_write_5m = sqlite3_column_int64(s, 3);
        pr->cache_write_1h = sqlite3_column_int64(s, 4);
        pr->cache_read = sqlite3_column_int64(s, 5);
    }
    if (rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "prices list");
    sq_done(s);
    *out = arr;
    *n_out = n;
    return rv;
}

static gw_err
sq_edge_seq(struct sq_priv *p, const char *edge_id, uint64_t *out)
{
    sqlite3_stmt *s = NULL;
    int64_t v = 0;
    int found;
    gw_err rv;

    rv = sq_stmt(p, SQ_EDGE_SEQ_GET, &s);
    if (rv != GW_OK)
        return rv;
    sq_bind_text(s, 1, edge_id);
    rv = sq_one_int(p, s, &v, &found, "edge seq get");
    if (rv != GW_OK)
        return rv;
    *out = found ? (uint64_t)v : 0;
    return GW_OK;
}

static gw_err
sq_usage_insert(struct sq_priv *p, sqlite3_stmt *s, const char *edge_id,
                const struct gw_usage_record *r, int64_t cost)
{
    sq_bind_field(s, 1, r->request_id, sizeof(r->request_id));
    sq_bind_text(s, 2, edge_id);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)r->key_id);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)r->account_id);
    sq_bind_field(s, 5, r->model, sizeof(r->model));
    sq_bind_field(s, 6, r->dialect, sizeof(r->dialect));
    sqlite3_bind_int64(s, 7, (sqlite3_int64)r->input_tokens);
    sqlite3_bind_int64(s, 8, (sqlite3_int64)r->output_tokens);
    sqlite3_bind_int64(s, 9, (sqlite3_int64)r->cache_read_tokens);
    sqlite3_bind_int64(s, 10, (sqlite3_int64)r->cache_write_5m_tokens);
    sqlite3_bind_int64(s, 11, (sqlite3_int64)r->cache_write_1h_tokens);
    sqlite3_bind_int64(s, 12, (sqlite3_int64)r->reasoning_tokens);
    sqlite3_bind_int64(s, 13, r->status);
    sqlite3_bind_int64(s, 14, r->latency_ms);
    sqlite3_bind_int64(s, 15, r->time_ms);
    sqlite3_bind_int(s, 16, r->partial ? 1 : 0);
    if (cost < 0)
        sqlite3_bind_null(s, 17);
    else
        sqlite3_bind_int64(s, 17, cost);
    /* Every column is rebound for each row, so a reset is enough. */
    if (sqlite3_step(s) != SQLITE_DONE) {
        gw_err rv = sq_fail(p, sqlite3_extended_errcode(p->db), "usage insert");
        sqlite3_reset(s);
        return rv;
    }
    sqlite3_reset(s);
    return GW_OK;
}

static gw_err
sq_usage_apply(void *priv, const struct gw_wire_usage_batch *batch, const int64_t *costs,
               int *duplicate)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    uint64_t last = 0;
    gw_err rv;

    *duplicate = 0;
    rv = sq_begin(p, 1);
    if (rv != GW_OK)
        return rv;
    rv = sq_edge_seq(p, batch->edge_id, &last);
    if (rv != GW_OK)
        goto fail;
    if (batch->seq <= last) {
        *duplicate = 1;
        sq_rollback(p);
        return GW_OK;
    }
    rv = sq_stmt(p, SQ_USAGE_INSERT, &s);
    if (rv != GW_OK)
        goto fail;
    for (size_t i = 0; i < batch->n_records; i++) {
        rv = sq_usage_insert(p, s, batch->edge_id, &batch->records[i],
                             costs != NULL ? costs[i] : -1);
        if (rv != GW_OK)
            break;
    }
    sqlite3_clear_bindings(s);
    if (rv != GW_OK)
        goto fail;
    if (batch->n_account_events > 0) {
        int64_t now_ms = sq_now_ms();

        for (size_t i = 0; i < batch->n_account_events && rv == GW_OK; i++)
            rv = sq_account_event(p, &batch->account_events[i], now_ms);
        if (rv != GW_OK)
            goto fail;
    }
    rv = sq_stmt(p, SQ_EDGE_SEQ_SET, &s);
    if (rv != GW_OK)
        goto fail;
    sq_bind_text(s, 1, batch->edge_id);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)batch->seq);
    rv = sq_run(p, s, "edge seq set");
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    return GW_OK;
fail:
    sq_rollback(p);
    return rv;
}

static gw_err
sq_edge_last_seq(void *priv, const char *edge_id, uint64_t *out)
{
    return sq_edge_seq(priv, edge_id, out);
}

static gw_err
sq_usage_list(void *priv, const struct hub_usage_filter *f, struct hub_usage_row **rows,
              size_t *n_rows)
{
    struct sq_priv *p = priv;
    struct hub_usage_row *arr;
    sqlite3_stmt *s = NULL;
    size_t n = 0;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, f->key_id != 0 ? SQ_USAGE_LIST_KEY : SQ_USAGE_LIST_ALL, &s);
    if (rv != GW_OK)
        return rv;
    sqlite3_bind_int64(s, 1, f->limit);
    sqlite3_bind_int64(s, 2, f->offset);
    if (f->key_id != 0)
        sqlite3_bind_int64(s, 3, (sqlite3_int64)f->key_id);
    /* The wrapper clamped the limit, so this allocation is bounded. */
    arr = gw_xcalloc(f->limit, sizeof(*arr));
    for (rc = sqlite3_step(s); rc == SQLITE_ROW && n < f->limit; rc = sqlite3_step(s)) {
        struct hub_usage_row *u = &arr[n++];
        struct gw_usage_record *r = &u->rec;

        u->id = (uint64_t)sqlite3_column_int64(s, 0);
        sq_col_text(s, 1, r->request_id, sizeof(r->request_id));
        sq_col_text(s, 2, u->edge_id, sizeof(u->edge_id));
        r->key_id = (uint64_t)sqlite3_column_int64(s, 3);
        r->account_id = (uint64_t)sqlite3_column_int64(s, 4);
        sq_col_text(s, 5, r->model, sizeof(r->model));
        sq_col_text(s, 6, r->dialect, sizeof(r->dialect));
        r->input_tokens = (uint64_t)sqlite3_column_int64(s, 7);
        r->output_tokens = (uint64_t)sqlite3_column_int64(s, 8);
        r->cache_read_tokens = (uint64_t)sqlite3_column_int64(s, 9);
        r->cache_write_5m_tokens = (uint64_t)sqlite3_column_int64(s, 10);
        r->cache_write_1h_tokens = (uint64_t)sqlite3_column_int64(s, 11);
        r->reasoning_tokens = (uint64_t)sqlite3_column_int64(s, 12);
        r->status = (uint32_t)sqlite3_column_int64(s, 13);
        r->latency_ms = (uint32_t)sqlite3_column_int64(s, 14);
        r->time_ms = sqlite3_column_int64(s, 15);
        r->partial = sqlite3_column_int(s, 16) != 0;
        if (sqlite3_column_type(s, 17) == SQLITE_NULL)
            u->cost_micros = -1;
        else
            u->cost_micros = sqlite3_column_int64(s, 17);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "usage list");
    sq_done(s);
    if (rv != GW_OK || n == 0) {
        free(arr);
        arr = NULL;
    }
    *rows = arr;
    *n_rows = rv == GW_OK ? n : 0;
    return rv;
}

/* ---------------------------------------------------------------- replication */

static gw_err
sq_change_log_since(void *priv, uint64_t from, size_t limit, struct hub_change_ref **rows,
                    size_t *n_rows, uint64_t *oldest)
{
    struct sq_priv *p = priv;
    struct hub_change_ref *arr = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *s = NULL;
    int64_t v = 0;
    int found = 0, rc;
    gw_err rv;

    *rows = NULL;
    *n_rows = 0;
    *oldest = 0;
    rv = sq_begin(p, 0);
    if (rv != GW_OK)
        return rv;
    rv = sq_stmt(p, SQ_CHANGES_OLDEST, &s);
    if (rv != GW_OK)
        goto fail;
    rv = sq_one_int(p, s, &v, &found, "change_log oldest");
    if (rv != GW_OK)
        goto fail;
    *oldest = (uint64_t)v;
    rv = sq_stmt(p, SQ_CHANGES_SINCE, &s);
    if (rv != GW_OK)
        goto fail;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)from);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct hub_change_ref *r;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            arr = gw_xrealloc(arr, cap * sizeof(*arr));
        }
        r = &arr[n++];
        memset(r, 0, sizeof(*r));
        r->version = (uint64_t)sqlite3_column_int64(s, 0);
        sq_col_text(s, 1, r->entity, sizeof(r->entity));
        r->entity_id = (uint64_t)sqlite3_column_int64(s, 2);
        r->group_id = (uint64_t)sqlite3_column_int64(s, 3);
        r->account_id = (uint64_t)sqlite3_column_int64(s, 4);
        r->pool_id = (uint64_t)sqlite3_column_int64(s, 5);
    }
    if (rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "change_log since");
    sq_done(s);
    if (rv != GW_OK)
        goto fail;
    rv = sq_commit(p);
    if (rv != GW_OK)
        goto fail;
    *rows = arr;
    *n_rows = n;
    return GW_OK;
fail:
    sq_rollback(p);
    free(arr);
    return rv;
}

static gw_err
sq_change_log_prune(void *priv, uint64_t below)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;

    rv = sq_stmt(p, SQ_CHANGES_PRUNE, &s);
    if (rv != GW_OK)
        return rv;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)below);
    return sq_run(p, s, "change_log prune");
}

/* ---------------------------------------------------------------- edges */

/* Binds the 19 columns of SQ_EDGE_COLS in order. */
static void
sq_edge_bind(sqlite3_stmt *s, const struct hub_edge *e)
{
    sq_bind_field(s, 1, e->id, sizeof(e->id));
    sq_bind_field(s, 2, e->name, sizeof(e->name));
    sq_bind_field(s, 3, e->region, sizeof(e->region));
    if (e->secret_sealed != NULL)
        sqlite3_bind_blob(s, 4, e->secret_sealed, (int)e->secret_sealed_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 4);
    sqlite3_bind_int(s, 5, e->trusted ? 1 : 0);
    sqlite3_bind_int64(s, 6, e->created_at);
    sqlite3_bind_int64(s, 7, e->revoked_at);
    sqlite3_bind_int64(s, 8, e->last_seen_ms);
    sqlite3_bind_int64(s, 9, e->heartbeat_ms);
    sq_bind_field(s, 10, e->version, sizeof(e->version));
    sqlite3_bind_int64(s, 11, (sqlite3_int64)e->snapshot_version);
    sq_bind_field(s, 12, e->snapshot_source, sizeof(e->snapshot_source));
    sqlite3_bind_int64(s, 13, (sqlite3_int64)e->requests_total);
    sqlite3_bind_int64(s, 14, (sqlite3_int64)e->errors_total);
    sqlite3_bind_int64(s, 15, (sqlite3_int64)e->usage_pending);
    sqlite3_bind_int64(s, 16, e->uptime_s);
    sqlite3_bind_int64(s, 17, (sqlite3_int64)e->prev_requests_total);
    sqlite3_bind_int64(s, 18, (sqlite3_int64)e->prev_errors_total);
    sqlite3_bind_int64(s, 19, e->prev_heartbeat_ms);
}

static void
sq_edge_read(sqlite3_stmt *s, struct hub_edge *e)
{
    const void *blob;
    int len;

    memset(e, 0, sizeof(*e));
    sq_col_text(s, 0, e->id, sizeof(e->id));
    sq_col_text(s, 1, e->name, sizeof(e->name));
    sq_col_text(s, 2, e->region, sizeof(e->region));
    blob = sqlite3_column_blob(s, 3);
    len = sqlite3_column_bytes(s, 3);
    if (blob != NULL && len > 0) {
        e->secret_sealed = gw_xmalloc((size_t)len);
        memcpy(e->secret_sealed, blob, (size_t)len);
        e->secret_sealed_len = (size_t)len;
    }
    e->trusted = sqlite3_column_int(s, 4) != 0;
    e->created_at = sqlite3_column_int64(s, 5);
    e->revoked_at = sqlite3_column_int64(s, 6);
    e->last_seen_ms = sqlite3_column_int64(s, 7);
    e->heartbeat_ms = sqlite3_column_int64(s, 8);
    sq_col_text(s, 9, e->version, sizeof(e->version));
    e->snapshot_version = (uint64_t)sqlite3_column_int64(s, 10);
    sq_col_text(s, 11, e->snapshot_source, sizeof(e->snapshot_source));
    e->requests_total = (uint64_t)sqlite3_column_int64(s, 12);
    e->errors_total = (uint64_t)sqlite3_column_int64(s, 13);
    e->usage_pending = (uint64_t)sqlite3_column_int64(s, 14);
    e->uptime_s = sqlite3_column_int64(s, 15);
    e->prev_requests_total = (uint64_t)sqlite3_column_int64(s, 16);
    e->prev_errors_total = (uint64_t)sqlite3_column_int64(s, 17);
    e->prev_heartbeat_ms = sqlite3_column_int64(s, 18);
}

static gw_err
sq_edge_create(void *priv, const struct hub_edge *e)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;

    rv = sq_stmt(p, SQ_EDGE_CREATE, &s);
    if (rv != GW_OK)
        return rv;
    sq_edge_bind(s, e);
    return sq_run(p, s, "edge insert");
}

static gw_err
sq_edge_get(void *priv, const char *id, struct hub_edge *out)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_EDGE_GET, &s);
    if (rv != GW_OK)
        return rv;
    sq_bind_text(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        sq_edge_read(s, out);
        rv = GW_OK;
    } else if (rc == SQLITE_DONE) {
        rv = GW_ENOTFOUND;
    } else {
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "edge get");
    }
    sq_done(s);
    return rv;
}

static gw_err
sq_edge_list(void *priv, struct hub_edge **out, size_t *n_out)
{
    struct sq_priv *p = priv;
    struct hub_edge *arr = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *s = NULL;
    gw_err rv;
    int rc;

    rv = sq_stmt(p, SQ_EDGE_LIST, &s);
    if (rv != GW_OK)
        return rv;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            arr = gw_xrealloc(arr, cap * sizeof(*arr));
        }
        sq_edge_read(s, &arr[n++]);
    }
    if (rc != SQLITE_DONE)
        rv = sq_fail(p, sqlite3_extended_errcode(p->db), "edge list");
    sq_done(s);
    if (rv != GW_OK) {
        hub_edges_free(arr, n);
        return rv;
    }
    *out = arr;
    *n_out = n;
    return GW_OK;
}

static gw_err
sq_edge_save(void *priv, const struct hub_edge *e)
{
    struct sq_priv *p = priv;
    sqlite3_stmt *s = NULL;
    gw_err rv;

    rv = sq_stmt(p, SQ_EDGE_SAVE, &s);
    if (rv != GW_OK)
        return rv;
    sq_edge_bind(s, e);
    rv = sq_run(p, s, "edge save");
    if (rv == GW_OK && sqlite3_changes(p->db) == 0)
        rv = GW_ENOTFOUND;
    return rv;
}

const struct hub_store_ops hub_store_sqlite_ops = {
    .scheme = "sqlite",
    .priv_size = sizeof(struct sq_priv),
    .open = sq_open,
    .close = sq_close,
    .migrate = sq_migrate,
    .config_version = sq_config_version,
    .admin_count = sq_admin_count,
    .admin_create = sq_admin_create,
    .admin_get = sq_admin_get,
    .group_create = sq_group_create,
    .group_get = sq_group_get,
    .group_list = sq_group_list,
    .group_update = sq_group_update,
    .account_create = sq_account_create,
    .account_get = sq_account_get,
    .account_list = sq_account_list,
    .account_update = sq_account_update,
    .binding_create = sq_binding_create,
    .pool_create = sq_pool_create,
    .pool_get = sq_pool_get,
    .pool_list = sq_pool_list,
    .pool_add_account = sq_pool_add_account,
    .key_create = sq_key_create,
    .key_get = sq_key_get,
    .key_list = sq_key_list,
    .key_update = sq_key_update,
    .key_revoke = sq_key_revoke,
    .snapshot_load = sq_snapshot_load,
    .prices_list = sq_prices_list,
    .usage_apply = sq_usage_apply,
    .edge_last_seq = sq_edge_last_seq,
    .usage_list = sq_usage_list,
    .change_log_since = sq_change_log_since,
    .change_log_prune = sq_change_log_prune,
    .edge_create = sq_edge_create,
    .edge_get = sq_edge_get,
    .edge_list = sq_edge_list,
    .edge_save = sq_edge_save,
};
