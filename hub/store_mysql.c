/* SPDX-License-Identifier: Apache-2.0 */
/* The MySQL / MariaDB store backend ("mysql://user:pass@host:port/db",
 * "mysql://user:pass@unix(/path/sock)/db" or "...?socket=/path") on the MySQL
 * C API (MariaDB Connector/C). Every query is a server-side prepared
 * statement with bound parameters, cached per connection; tables are InnoDB
 * in utf8mb4; usage batches go in as multi-row INSERTs inside one
 * transaction. A lost connection is reopened on the next call. */
#include "store.h"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_log.h"

#define MY_DEFAULT_PORT 3306
#define MY_CONNECT_TIMEOUT_S 10
#define MY_IO_TIMEOUT_S 120
#define MY_MIGRATE_LOCK_TIMEOUT_S 60
/* A connection idle this long is pinged before use: the server may have
 * dropped it (wait_timeout) while the hub had nothing to store. */
#define MY_IDLE_PING_S 30
/* Rows per multi-row usage INSERT: 500 x 17 placeholders stays far below
 * the 65535-placeholder limit and the packet size limit. */
#define MY_USAGE_CHUNK 500
#define MY_USAGE_NCOLS 17
#define MY_MAX_BIND 20

enum my_stmt {
    MY_MIGRATIONS_MAX,
    MY_MIGRATIONS_ADD,
    MY_LOCK_GET,
    MY_LOCK_RELEASE,
    MY_CONFIG_VERSION,
    MY_CONFIG_BUMP,
    MY_CHANGE_LOG_ADD,
    MY_ADMIN_COUNT,
    MY_ADMIN_CREATE,
    MY_ADMIN_GET,
    MY_GROUP_CREATE,
    MY_GROUP_GET,
    MY_GROUP_LOCK,
    MY_GROUP_LIST,
    MY_GROUP_UPDATE,
    MY_ACCOUNT_CREATE,
    MY_ACCOUNT_GET,
    MY_ACCOUNT_LOCK,
    MY_ACCOUNT_LIST,
    MY_ACCOUNT_UPDATE,
    MY_ACCOUNT_HEALTH_GET,
    MY_ACCOUNT_HEALTH_SET,
    MY_ACCOUNT_DISABLE,
    MY_BINDING_CREATE,
    MY_POOL_CREATE,
    MY_POOL_GET,
    MY_POOL_LOCK,
    MY_POOL_LIST,
    MY_POOL_MEMBERS,
    MY_POOL_MEMBERS_OF,
    MY_POOL_ADD,
    MY_KEY_CREATE,
    MY_KEY_GET,
    MY_KEY_LOCK,
    MY_KEY_LIST_ALL,
    MY_KEY_LIST_GROUP,
    MY_KEY_UPDATE,
    MY_KEY_REVOKE,
    MY_SNAP_KEYS,
    MY_SNAP_GROUPS,
    MY_SNAP_ACCOUNTS,
    MY_SNAP_BINDINGS,
    MY_SNAP_POOLS,
    MY_PRICES_LIST,
    MY_EDGE_SEQ_GET,
    MY_EDGE_SEQ_ENSURE,
    MY_EDGE_SEQ_LOCK,
    MY_EDGE_SEQ_SET,
    MY_USAGE_LIST_ALL,
    MY_USAGE_LIST_KEY,
    MY_CHANGES_SINCE,
    MY_CHANGES_OLDEST,
    MY_CHANGES_PRUNE,
    MY_EDGE_CREATE,
    MY_EDGE_GET,
    MY_EDGE_LIST,
    MY_EDGE_SAVE,
    MY_STMT_COUNT
};

#define MY_USAGE_COLS                                                                              \
    "request_id, edge_id, key_id, account_id, model, dialect, input_tokens, output_tokens, "       \
    "cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens, "          \
    "status, latency_ms, time_ms, `partial`, cost_micros"

#define MY_GROUP_COLS "id, name, created_at, mode, COALESCE(pool_id, 0)"
#define MY_ACCOUNT_COLS                                                                            \
    "id, name, kind, base_url, priority, weight, enabled, created_at, models, max_concurrency, "   \
    "proxy, disabled_reason, cooldown_until_ms, auth_failures"
#define MY_KEY_COLS                                                                                \
    "id, group_id, name, prefix, enabled, expires_at, created_at, rpm_limit, tpm_limit, "          \
    "concurrency_limit, allowed_models"

#define MY_EDGE_COLS                                                                               \
    "id, name, region, secret, trusted, created_at, revoked_at, last_seen_ms, heartbeat_ms, "      \
    "version, snapshot_version, snapshot_source, requests_total, errors_total, usage_pending, "    \
    "uptime_s, prev_requests_total, prev_errors_total, prev_heartbeat_ms"

/* `groups` is a reserved word in MySQL 8, so it is always quoted. */
static const char *const my_sql[MY_STMT_COUNT] = {
    [MY_MIGRATIONS_MAX] = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
    [MY_MIGRATIONS_ADD] = "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
    [MY_LOCK_GET] = "SELECT GET_LOCK(CONCAT('aicarpool.migrate.', DATABASE()), ?)",
    [MY_LOCK_RELEASE] = "SELECT RELEASE_LOCK(CONCAT('aicarpool.migrate.', DATABASE()))",
    [MY_CONFIG_VERSION] = "SELECT config_version FROM meta WHERE id = 1",
    [MY_CONFIG_BUMP] = "UPDATE meta SET config_version = config_version + 1 WHERE id = 1",
    [MY_CHANGE_LOG_ADD] = "INSERT INTO change_log (version, entity, entity_id, op, at) "
                          "VALUES (?, ?, ?, ?, ?)",
    [MY_ADMIN_COUNT] = "SELECT COUNT(*) FROM admins",
    [MY_ADMIN_CREATE] = "INSERT INTO admins (username, password_hash, must_change_password, "
                        "created_at) VALUES (?, ?, ?, ?)",
    [MY_ADMIN_GET] = "SELECT id, username, password_hash, must_change_password FROM admins "
                     "WHERE username = ?",
    [MY_GROUP_CREATE] = "INSERT INTO `groups` (name, created_at) VALUES (?, ?)",
    [MY_GROUP_GET] = "SELECT " MY_GROUP_COLS " FROM `groups` WHERE id = ?",
    [MY_GROUP_LOCK] = "SELECT " MY_GROUP_COLS " FROM `groups` WHERE id = ? FOR UPDATE",
    [MY_GROUP_LIST] = "SELECT " MY_GROUP_COLS " FROM `groups` ORDER BY id",
    [MY_GROUP_UPDATE] = "UPDATE `groups` SET mode = ?, pool_id = ? WHERE id = ?",
    [MY_ACCOUNT_CREATE] = "INSERT INTO accounts (name, kind, base_url, credential, priority, "
                          "weight, enabled, created_at, models, max_concurrency, proxy) "
                          "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
    [MY_ACCOUNT_GET] = "SELECT " MY_ACCOUNT_COLS " FROM accounts WHERE id = ?",
    [MY_ACCOUNT_LOCK] = "SELECT id FROM accounts WHERE id = ? FOR UPDATE",
    [MY_ACCOUNT_LIST] = "SELECT " MY_ACCOUNT_COLS " FROM accounts ORDER BY id",
    /* NULL keeps a column; the seven trailing `enabled` parameters carry the
     * same value. Enabling clears what disabled or cooled the account. No
     * assignment reads a column an earlier one changed (MySQL evaluates them
     * left to right). */
    [MY_ACCOUNT_UPDATE] =
        "UPDATE accounts SET name = COALESCE(?, name), base_url = COALESCE(?, base_url), "
        "credential = COALESCE(?, credential), priority = COALESCE(?, priority), "
        "weight = COALESCE(?, weight), models = COALESCE(?, models), "
        "max_concurrency = COALESCE(?, max_concurrency), proxy = COALESCE(?, proxy), "
        "enabled = COALESCE(?, enabled), "
        "disabled_reason = CASE WHEN ? IS NULL THEN disabled_reason "
        "WHEN ? = 1 THEN '' ELSE 'disabled by an admin' END, "
        "auth_failures = CASE WHEN ? = 1 THEN 0 ELSE auth_failures END, "
        "auth_fail_last_ms = CASE WHEN ? = 1 THEN 0 ELSE auth_fail_last_ms END, "
        "auth_fail_prev_ms = CASE WHEN ? = 1 THEN 0 ELSE auth_fail_prev_ms END, "
        "cooldown_until_ms = CASE WHEN ? = 1 THEN 0 ELSE cooldown_until_ms END "
        "WHERE id = ?",
    [MY_ACCOUNT_HEALTH_GET] = "SELECT enabled, cooldown_until_ms, auth_failures, "
                              "auth_fail_last_ms, auth_fail_prev_ms FROM accounts WHERE id = ? "
                              "FOR UPDATE",
    [MY_ACCOUNT_HEALTH_SET] = "UPDATE accounts SET cooldown_until_ms = ?, auth_failures = ?, "
                              "auth_fail_last_ms = ?, auth_fail_prev_ms = ? WHERE id = ?",
    [MY_ACCOUNT_DISABLE] = "UPDATE accounts SET enabled = 0, disabled_reason = ? WHERE id = ?",
    [MY_BINDING_CREATE] = "INSERT INTO bindings (group_id, account_id, created_at) "
                          "VALUES (?, ?, ?)",
    [MY_POOL_CREATE] = "INSERT INTO pools (name, created_at) VALUES (?, ?)",
    [MY_POOL_GET] = "SELECT id, name, created_at FROM pools WHERE id = ?",
    [MY_POOL_LOCK] = "SELECT id FROM pools WHERE id = ? LOCK IN SHARE MODE",
    [MY_POOL_LIST] = "SELECT id, name, created_at FROM pools ORDER BY id",
    [MY_POOL_MEMBERS] = "SELECT pool_id, account_id FROM pool_accounts ORDER BY pool_id, id",
    [MY_POOL_MEMBERS_OF] = "SELECT pool_id, account_id FROM pool_accounts WHERE pool_id = ? "
                           "ORDER BY id",
    [MY_POOL_ADD] = "INSERT INTO pool_accounts (pool_id, account_id, created_at) "
                    "VALUES (?, ?, ?)",
    [MY_KEY_CREATE] = "INSERT INTO api_keys (key_hash, prefix, name, group_id, enabled, "
                      "expires_at, created_at, rpm_limit, tpm_limit, concurrency_limit, "
                      "allowed_models) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
    [MY_KEY_GET] = "SELECT " MY_KEY_COLS " FROM api_keys WHERE id = ? AND revoked_at = 0",
    [MY_KEY_LOCK] = "SELECT id FROM api_keys WHERE id = ? AND revoked_at = 0 FOR UPDATE",
    [MY_KEY_LIST_ALL] = "SELECT " MY_KEY_COLS " FROM api_keys WHERE revoked_at = 0 ORDER BY id",
    [MY_KEY_LIST_GROUP] = "SELECT " MY_KEY_COLS " FROM api_keys WHERE revoked_at = 0 "
                          "AND group_id = ? ORDER BY id",
    [MY_KEY_UPDATE] = "UPDATE api_keys SET name = COALESCE(?, name), "
                      "enabled = COALESCE(?, enabled), rpm_limit = COALESCE(?, rpm_limit), "
                      "tpm_limit = COALESCE(?, tpm_limit), "
                      "concurrency_limit = COALESCE(?, concurrency_limit), "
                      "allowed_models = COALESCE(?, allowed_models), "
                      "expires_at = COALESCE(?, expires_at) WHERE id = ?",
    [MY_KEY_REVOKE] = "UPDATE api_keys SET revoked_at = ?, enabled = 0 WHERE id = ?",
    [MY_SNAP_KEYS] = "SELECT id, key_hash, group_id, enabled, expires_at, rpm_limit, tpm_limit, "
                     "concurrency_limit, allowed_models FROM api_keys WHERE revoked_at = 0 "
                     "ORDER BY id",
    [MY_SNAP_GROUPS] = "SELECT id, name, mode, COALESCE(pool_id, 0) FROM `groups` ORDER BY id",
    [MY_SNAP_ACCOUNTS] = "SELECT id, name, kind, base_url, credential, priority, weight, "
                         "enabled, models, max_concurrency, proxy, cooldown_until_ms "
                         "FROM accounts ORDER BY id",
    [MY_SNAP_BINDINGS] = "SELECT group_id, account_id FROM bindings ORDER BY id",
    [MY_SNAP_POOLS] = "SELECT id, name FROM pools ORDER BY id",
    [MY_PRICES_LIST] = "SELECT model_prefix, input, output, cache_write_5m, cache_write_1h, "
                       "cache_read FROM prices ORDER BY model_prefix",
    [MY_EDGE_SEQ_GET] = "SELECT last_seq FROM edge_usage_seq WHERE edge_id = ?",
    [MY_EDGE_SEQ_ENSURE] = "INSERT INTO edge_usage_seq (edge_id, last_seq) VALUES (?, 0) "
                           "ON DUPLICATE KEY UPDATE last_seq = last_seq",
    [MY_EDGE_SEQ_LOCK] = "SELECT last_seq FROM edge_usage_seq WHERE edge_id = ? FOR UPDATE",
    [MY_EDGE_SEQ_SET] = "UPDATE edge_usage_seq SET last_seq = ? WHERE edge_id = ?",
    [MY_USAGE_LIST_ALL] = "SELECT id, " MY_USAGE_COLS " FROM usage_log "
                          "ORDER BY time_ms DESC, id DESC LIMIT ? OFFSET ?",
    [MY_USAGE_LIST_KEY] = "SELECT id, " MY_USAGE_COLS " FROM usage_log WHERE key_id = ? "
                          "ORDER BY time_ms DESC, id DESC LIMIT ? OFFSET ?",
    [MY_CHANGES_SINCE] = "SELECT c.version, c.entity, c.entity_id, COALESCE(b.group_id, 0), "
                         "COALESCE(b.account_id, 0), COALESCE(pa.pool_id, 0) FROM change_log c "
                         "LEFT JOIN bindings b ON c.entity = 'binding' AND b.id = c.entity_id "
                         "LEFT JOIN pool_accounts pa ON c.entity = 'pool_account' "
                         "AND pa.id = c.entity_id WHERE c.version > ? ORDER BY c.version "
                         "LIMIT ?",
    [MY_CHANGES_OLDEST] = "SELECT COALESCE(MIN(version), 0) FROM change_log",
    [MY_CHANGES_PRUNE] = "DELETE FROM change_log WHERE version < ?",
    [MY_EDGE_CREATE] = "INSERT INTO edges (" MY_EDGE_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                       "?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [MY_EDGE_GET] = "SELECT " MY_EDGE_COLS " FROM edges WHERE id = ?",
    [MY_EDGE_LIST] = "SELECT " MY_EDGE_COLS " FROM edges ORDER BY created_at, id",
    [MY_EDGE_SAVE] = "UPDATE edges SET name = ?, region = ?, revoked_at = ?, last_seen_ms = ?, "
                     "heartbeat_ms = ?, version = ?, snapshot_version = ?, snapshot_source = ?, "
                     "requests_total = ?, errors_total = ?, usage_pending = ?, uptime_s = ?, "
                     "prev_requests_total = ?, prev_errors_total = ?, prev_heartbeat_ms = ? "
                     "WHERE id = ?",
};

#define MY_TABLE_OPTS " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

/* Migrations: append only. Each is a list of single statements (the C API
 * runs one statement per call). DDL commits implicitly in MySQL, so every
 * CREATE is IF NOT EXISTS and every seed INSERT IGNORE: a migration cut
 * short can be run again. Usage text columns are VARBINARY so a model name
 * that is not valid UTF-8 can never wedge a batch. */
static const char *const my_migration_1[] = {
    "CREATE TABLE IF NOT EXISTS meta ("
    "  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,"
    "  config_version BIGINT UNSIGNED NOT NULL)" MY_TABLE_OPTS,
    "INSERT IGNORE INTO meta (id, config_version) VALUES (1, 0)",
    "CREATE TABLE IF NOT EXISTS change_log ("
    "  version BIGINT UNSIGNED NOT NULL PRIMARY KEY,"
    "  entity VARCHAR(32) NOT NULL,"
    "  entity_id BIGINT UNSIGNED NOT NULL,"
    "  op VARCHAR(16) NOT NULL,"
    "  at BIGINT NOT NULL)" MY_TABLE_OPTS,
    "CREATE TABLE IF NOT EXISTS admins ("
    "  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  username VARCHAR(63) NOT NULL,"
    "  password_hash VARCHAR(1024) NOT NULL,"
    "  must_change_password TINYINT NOT NULL DEFAULT 0,"
    "  created_at BIGINT NOT NULL,"
    "  UNIQUE KEY admins_username (username))" MY_TABLE_OPTS,
    "CREATE TABLE IF NOT EXISTS `groups` ("
    "  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  name VARCHAR(127) NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  UNIQUE KEY groups_name (name))" MY_TABLE_OPTS,
    "CREATE TABLE IF NOT EXISTS accounts ("
    "  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  name VARCHAR(127) NOT NULL,"
    "  kind VARCHAR(31) NOT NULL,"
    "  base_url VARCHAR(511) NOT NULL DEFAULT '',"
    "  credential BLOB NOT NULL,"
    "  priority INT NOT NULL DEFAULT 0,"
    "  weight INT NOT NULL DEFAULT 1,"
    "  enabled TINYINT NOT NULL DEFAULT 1,"
    "  created_at BIGINT NOT NULL)" MY_TABLE_OPTS,
    "CREATE TABLE IF NOT EXISTS bindings ("
    "  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  group_id BIGINT UNSIGNED NOT NULL,"
    "  account_id BIGINT UNSIGNED NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  UNIQUE KEY bindings_pair (group_id, account_id),"
    "  KEY bindings_account (account_id),"
    "  CONSTRAINT bindings_group_fk FOREIGN KEY (group_id) REFERENCES `groups` (id),"
    "  CONSTRAINT bindings_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id)"
    ")" MY_TABLE_OPTS,
    "CREATE TABLE IF NOT EXISTS api_keys ("
    "  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  key_hash BINARY(32) NOT NULL,"
    "  prefix VARCHAR(63) NOT NULL,"
    "  name VARCHAR(127) NOT NULL DEFAULT '',"
    "  group_id BIGINT UNSIGNED NOT NULL,"
    "  enabled TINYINT NOT NULL DEFAULT 1,"
    "  expires_at BIGINT NOT NULL DEFAULT 0,"
    "  created_at BIGINT NOT NULL,"
    "  UNIQUE KEY api_keys_hash (key_hash),"
    "  KEY api_keys_group (group_id),"
    "  CONSTRAINT api_keys_group_fk FOREIGN KEY (group_id) REFERENCES `groups` (id)"
    ")" MY_TABLE_OPTS,
    "CREATE TABLE IF NOT EXISTS prices ("
    "  model_prefix VARCHAR(127) NOT NULL PRIMARY KEY,"
    "  input BIGINT NOT NULL,"
    "  output BIGINT NOT NULL,"
    "  cache_write_5m BIGINT NOT NULL,"
    "  cache_write_1h BIGINT NOT NULL,"
    "  cache_read BIGINT NOT NULL)" MY_TABLE_OPTS,
    "CREATE TABLE IF NOT EXISTS usage_log ("
    "  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  request_id VARBINARY(48) NOT NULL,"
    "  edge_id VARBINARY(64) NOT NULL,"
    "  key_id BIGINT UNSIGNED NOT NULL,"
    "  account_id BIGINT UNSIGNED NOT NULL,"
    "  model VARBINARY(128) NOT NULL,"
    "  dialect VARBINARY(16) NOT NULL,"
    "  input_tokens BIGINT UNSIGNED NOT NULL,"
    "  output_tokens BIGINT UNSIGNED NOT NULL,"
    "  cache_read_tokens BIGINT UNSIGNED NOT NULL,"
    "  cache_write_5m_tokens BIGINT UNSIGNED NOT NULL,"
    "  cache_write_1h_tokens BIGINT UNSIGNED NOT NULL,"
    "  reasoning_tokens BIGINT UNSIGNED NOT NULL,"
    "  status INT UNSIGNED NOT NULL,"
    "  latency_ms INT UNSIGNED NOT NULL,"
    "  time_ms BIGINT NOT NULL,"
    "  `partial` TINYINT NOT NULL,"
    "  cost_micros BIGINT NULL,"
    "  KEY usage_log_time (time_ms),"
    "  KEY usage_log_key_time (key_id, time_ms))" MY_TABLE_OPTS,
    "CREATE TABLE IF NOT EXISTS edge_usage_seq ("
    "  edge_id VARBINARY(64) NOT NULL PRIMARY KEY,"
    "  last_seq BIGINT UNSIGNED NOT NULL)" MY_TABLE_OPTS,
    NULL,
};

/* Same seed as the SQLite backend: USD per million tokens x 1e6. */
static const char *const my_migration_2[] = {
    "INSERT IGNORE INTO prices (model_prefix, input, output, cache_write_5m, cache_write_1h, "
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
    " ('fake-',               1000000,  2000000,  1250000,  2000000,  100000)",
    NULL,
};

/* Routing and limits: account pools, group binding modes, account models,
 * concurrency, proxy and health, key limits and revocation. Each ALTER adds
 * all of its table's columns at once, so a migration cut short and run
 * again finds each ALTER either fully applied (ER_DUP_FIELDNAME, skipped)
 * or not at all. groups.pool_id has no foreign key: the store checks it
 * (pools are never deleted). Model lists are JSON text (NULL = none). */
static const char *const my_migration_3[] = {
    "CREATE TABLE IF NOT EXISTS pools ("
    "  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  name VARCHAR(127) NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  UNIQUE KEY pools_name (name))" MY_TABLE_OPTS,
    "CREATE TABLE IF NOT EXISTS pool_accounts ("
    "  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    "  pool_id BIGINT UNSIGNED NOT NULL,"
    "  account_id BIGINT UNSIGNED NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  UNIQUE KEY pool_accounts_pair (pool_id, account_id),"
    "  KEY pool_accounts_account (account_id),"
    "  CONSTRAINT pool_accounts_pool_fk FOREIGN KEY (pool_id) REFERENCES pools (id),"
    "  CONSTRAINT pool_accounts_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id)"
    ")" MY_TABLE_OPTS,
    "ALTER TABLE `groups`"
    "  ADD COLUMN mode VARCHAR(15) NOT NULL DEFAULT 'dedicated',"
    "  ADD COLUMN pool_id BIGINT UNSIGNED NULL",
    "ALTER TABLE accounts"
    "  ADD COLUMN models MEDIUMTEXT NULL,"
    "  ADD COLUMN max_concurrency INT UNSIGNED NOT NULL DEFAULT 0,"
    "  ADD COLUMN proxy VARCHAR(511) NOT NULL DEFAULT '',"
    "  ADD COLUMN disabled_reason VARCHAR(127) NOT NULL DEFAULT '',"
    "  ADD COLUMN cooldown_until_ms BIGINT NOT NULL DEFAULT 0,"
    "  ADD COLUMN auth_failures INT UNSIGNED NOT NULL DEFAULT 0,"
    "  ADD COLUMN auth_fail_last_ms BIGINT NOT NULL DEFAULT 0,"
    "  ADD COLUMN auth_fail_prev_ms BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE api_keys"
    "  ADD COLUMN rpm_limit INT UNSIGNED NOT NULL DEFAULT 0,"
    "  ADD COLUMN tpm_limit INT UNSIGNED NOT NULL DEFAULT 0,"
    "  ADD COLUMN concurrency_limit INT UNSIGNED NOT NULL DEFAULT 0,"
    "  ADD COLUMN allowed_models MEDIUMTEXT NULL,"
    "  ADD COLUMN revoked_at BIGINT NOT NULL DEFAULT 0",
    NULL,
};

/* Distributed mode: the edge registry. */
static const char *const my_migration_4[] = {
    "CREATE TABLE IF NOT EXISTS edges ("
    "  id VARCHAR(63) NOT NULL PRIMARY KEY,"
    "  name VARCHAR(127) NOT NULL DEFAULT '',"
    "  region VARCHAR(63) NOT NULL DEFAULT '',"
    "  secret BLOB NULL,"
    "  trusted TINYINT NOT NULL DEFAULT 0,"
    "  created_at BIGINT NOT NULL,"
    "  revoked_at BIGINT NOT NULL DEFAULT 0,"
    "  last_seen_ms BIGINT NOT NULL DEFAULT 0,"
    "  heartbeat_ms BIGINT NOT NULL DEFAULT 0,"
    "  version VARCHAR(63) NOT NULL DEFAULT '',"
    "  snapshot_version BIGINT UNSIGNED NOT NULL DEFAULT 0,"
    "  snapshot_source VARCHAR(15) NOT NULL DEFAULT '',"
    "  requests_total BIGINT UNSIGNED NOT NULL DEFAULT 0,"
    "  errors_total BIGINT UNSIGNED NOT NULL DEFAULT 0,"
    "  usage_pending BIGINT UNSIGNED NOT NULL DEFAULT 0,"
    "  uptime_s BIGINT NOT NULL DEFAULT 0,"
    "  prev_requests_total BIGINT UNSIGNED NOT NULL DEFAULT 0,"
    "  prev_errors_total BIGINT UNSIGNED NOT NULL DEFAULT 0,"
    "  prev_heartbeat_ms BIGINT NOT NULL DEFAULT 0)" MY_TABLE_OPTS,
    NULL,
};

static const char *const *const my_migrations[] = {
    my_migration_1,
    my_migration_2,
    my_migration_3,
    my_migration_4,
};

#define MY_N_MIGRATIONS (sizeof(my_migrations) / sizeof(my_migrations[0]))

struct my_priv {
    MYSQL *conn;
    int broken;        /* the connection died: reopen before the next call */
    int64_t last_used; /* monotonic seconds of the last call */
    MYSQL_STMT *stmt[MY_STMT_COUNT];
    MYSQL_STMT *usage_chunk; /* MY_USAGE_CHUNK-row INSERT, prepared on first use */
    MYSQL_BIND *ubind;       /* MY_USAGE_CHUNK * MY_USAGE_NCOLS */
    unsigned long *ulen;
    /* From the DSN; kept to reconnect. pass is wiped on close. */
    char *user;
    char *pass;
    char *host;
    char *sock;
    char *db;
    unsigned int port;
};

/* Parameters or result columns of one statement. */
enum my_kind {
    MY_K_PLAIN, /* fixed-size value written in place */
    MY_K_STR,   /* into a fixed char array, NUL-terminated after fetch */
    MY_K_VAR,   /* any length, allocated after fetch */
    MY_K_COST,  /* int64 that reads -1 for NULL */
};

struct my_binds {
    MYSQL_BIND b[MY_MAX_BIND];
    unsigned long len[MY_MAX_BIND];
    my_bool null[MY_MAX_BIND];
    my_bool error[MY_MAX_BIND];
    struct {
        enum my_kind kind;
        void *dst;
        size_t size;
        size_t *len_out;
        int text;
    } x[MY_MAX_BIND];
    unsigned n;
};

static pthread_once_t my_lib_once = PTHREAD_ONCE_INIT;
static int my_lib_rc;

static void
my_lib_init(void)
{
    /* mysql_init() would do this lazily, but not thread-safely. */
    my_lib_rc = mysql_library_init(0, NULL, NULL);
}

static int64_t
my_now(void)
{
    return (int64_t)time(NULL);
}

static int64_t
my_monotonic(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

/* ---- DSN ---------------------------------------------------------------- */

static int
my_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copies s[0..n) decoding %XX escapes (anything else is taken literally). */
static char *
my_unescape(const char *s, size_t n)
{
    char *out = gw_xmalloc(n + 1);
    size_t j = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && my_hexval(s[i + 1]) >= 0 && my_hexval(s[i + 2]) >= 0) {
            out[j++] = (char)(my_hexval(s[i + 1]) * 16 + my_hexval(s[i + 2]));
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return out;
}

/* Parses "//[user[:pass]@](host[:port]|unix(/path))/db[?socket=/path]".
 * The last '@' ends the credentials, so an unescaped '@' or '/' in the
 * password still works. Errors name the part at fault, never its value. */
static gw_err
my_parse_dsn(struct my_priv *p, const char *rest, struct gw_buf *err)
{
    const char *s, *at, *hp, *slash, *q, *end;

    if (strncmp(rest, "//", 2) != 0) {
        gw_buf_append_str(err, "mysql: malformed DSN: expected mysql://");
        return GW_EINVAL;
    }
    s = rest + 2;
    end = s + strlen(s);
    at = strrchr(s, '@');
    hp = s;
    if (at != NULL) {
        const char *colon = memchr(s, ':', (size_t)(at - s));

        if (colon != NULL) {
            p->user = my_unescape(s, (size_t)(colon - s));
            p->pass = my_unescape(colon + 1, (size_t)(at - colon - 1));
        } else {
            p->user = my_unescape(s, (size_t)(at - s));
        }
        hp = at + 1;
    }

    if (strncmp(hp, "unix(", 5) == 0) {
        const char *close = strchr(hp + 5, ')');

        if (close == NULL || close == hp + 5) {
            gw_buf_append_str(err, "mysql: malformed DSN: bad unix(/path) socket");
            return GW_EINVAL;
        }
        p->sock = my_unescape(hp + 5, (size_t)(close - hp - 5));
        slash = close + 1;
        if (*slash != '/') {
            gw_buf_append_str(err, "mysql: malformed DSN: missing /database");
            return GW_EINVAL;
        }
    } else {
        const char *host_end, *port_start = NULL;

        if (*hp == '[') {
            /* IPv6 literal. */
            const char *rb = strchr(hp, ']');

            if (rb == NULL) {
                gw_buf_append_str(err, "mysql: malformed DSN: unterminated [IPv6] host");
                return GW_EINVAL;
            }
            p->host = gw_xstrndup(hp + 1, (size_t)(rb - hp - 1));
            host_end = rb + 1;
            if (*host_end == ':')
                port_start = host_end + 1;
            else if (*host_end != '/' && *host_end != '\0') {
                gw_buf_append_str(err, "mysql: malformed DSN: junk after [IPv6] host");
                return GW_EINVAL;
            }
        } else {
            host_end = hp + strcspn(hp, ":/?");
            p->host = gw_xstrndup(hp, (size_t)(host_end - hp));
            if (*host_end == ':')
                port_start = host_end + 1;
        }
        slash = port_start != NULL ? port_start + strcspn(port_start, "/?") : host_end;
        if (port_start != NULL) {
            unsigned long port = 0;

            if (slash == port_start) {
                gw_buf_append_str(err, "mysql: malformed DSN: empty port");
                return GW_EINVAL;
            }
            for (const char *c = port_start; c < slash; c++) {
                if (*c < '0' || *c > '9' || port > 65535) {
                    gw_buf_append_str(err, "mysql: malformed DSN: bad port");
                    return GW_EINVAL;
                }
                port = port * 10 + (unsigned long)(*c - '0');
            }
            if (port == 0 || port > 65535) {
                gw_buf_append_str(err, "mysql: malformed DSN: bad port");
                return GW_EINVAL;
            }
            p->port = (unsigned int)port;
        }
        if (*slash != '/') {
            gw_buf_append_str(err, "mysql: malformed DSN: missing /database");
            return GW_EINVAL;
        }
    }

    q = strchr(slash + 1, '?');
    if (q == NULL)
        q = end;
    if (q == slash + 1) {
        gw_buf_append_str(err, "mysql: malformed DSN: empty database name");
        return GW_EINVAL;
    }
    p->db = my_unescape(slash + 1, (size_t)(q - slash - 1));
    if (strchr(p->db, '/') != NULL) {
        gw_buf_append_str(err, "mysql: malformed DSN: bad database name");
        return GW_EINVAL;
    }

    /* Query: only socket= is known. */
    while (*q == '?' || *q == '&') {
        const char *kv = q + 1;
        const char *kv_end = kv + strcspn(kv, "&");

        if (kv_end - kv > 7 && strncmp(kv, "socket=", 7) == 0) {
            free(p->sock);
            p->sock = my_unescape(kv + 7, (size_t)(kv_end - kv - 7));
        } else if (kv_end != kv) {
            gw_buf_append_str(err, "mysql: malformed DSN: unknown query parameter "
                                   "(only socket= is supported)");
            return GW_EINVAL;
        }
        q = kv_end;
    }

    if (p->sock == NULL && (p->host == NULL || p->host[0] == '\0')) {
        gw_buf_append_str(err, "mysql: malformed DSN: missing host");
        return GW_EINVAL;
    }
    if (p->port == 0)
        p->port = MY_DEFAULT_PORT;
    return GW_OK;
}

/* ---- errors ------------------------------------------------------------- */

/* Maps a server or client error code. Lost connections are remembered so
 * the next call reconnects; expected answers (duplicates, missing parents)
 * are not logged. */
static gw_err
my_map(struct my_priv *p, unsigned int code, const char *msg, const char *what)
{
    switch (code) {
    case ER_DUP_ENTRY:
    case ER_DUP_ENTRY_WITH_KEY_NAME:
        return GW_EEXIST;
    case ER_NO_REFERENCED_ROW:
    case ER_NO_REFERENCED_ROW_2:
        return GW_ENOTFOUND;
    case ER_DATA_TOO_LONG:
    case ER_TRUNCATED_WRONG_VALUE_FOR_FIELD:
    case ER_WARN_DATA_OUT_OF_RANGE:
        gw_log(GW_LOG_WARN, "HUB-STORE-MYSQL", "%s: value refused: %s (%u)", what, msg, code);
        return GW_EINVAL;
    case ER_CONNECTION_KILLED:
    case ER_SERVER_SHUTDOWN:
    case ER_UNKNOWN_STMT_HANDLER:
        p->broken = 1;
        break;
    default:
        /* Client-side errors (server gone, lost, out of sync...) all leave
         * the connection unusable. */
        if (code >= CR_MIN_ERROR && code <= CR_MAX_ERROR)
            p->broken = 1;
        break;
    }
    gw_log(GW_LOG_ERROR, "HUB-STORE-MYSQL", "%s: %s (%u)", what, msg, code);
    return GW_ESTORE;
}

static gw_err
my_conn_fail(struct my_priv *p, const char *what)
{
    return my_map(p, mysql_errno(p->conn), mysql_error(p->conn), what);
}

static gw_err
my_stmt_fail(struct my_priv *p, MYSQL_STMT *st, const char *what)
{
    return my_map(p, mysql_stmt_errno(st), mysql_stmt_error(st), what);
}

/* ---- connection --------------------------------------------------------- */

static void
my_disconnect(struct my_priv *p)
{
    for (int i = 0; i < MY_STMT_COUNT; i++) {
        if (p->stmt[i] != NULL)
            mysql_stmt_close(p->stmt[i]);
        p->stmt[i] = NULL;
    }
    if (p->usage_chunk != NULL)
        mysql_stmt_close(p->usage_chunk);
    p->usage_chunk = NULL;
    if (p->conn != NULL)
        mysql_close(p->conn);
    p->conn = NULL;
}

static gw_err
my_connect(struct my_priv *p, struct gw_buf *err)
{
    unsigned int connect_timeout = MY_CONNECT_TIMEOUT_S;
    unsigned int io_timeout = MY_IO_TIMEOUT_S;
    /* A socket when asked for one, else TCP: "localhost" must not silently
     * turn into the default socket and ignore the port. */
    unsigned int protocol = p->sock != NULL ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;

    p->broken = 0;
    p->last_used = my_monotonic();
    p->conn = mysql_init(NULL);
    if (p->conn == NULL) {
        gw_buf_append_str(err, "mysql: mysql_init failed");
        return GW_ESTORE;
    }
    mysql_options(p->conn, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
    mysql_options(p->conn, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
    mysql_options(p->conn, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
    mysql_options(p->conn, MYSQL_OPT_PROTOCOL, &protocol);
    mysql_options(p->conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    /* Also run after every reconnect. */
    mysql_options(p->conn, MYSQL_INIT_COMMAND,
                  "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', "
                  "SESSION time_zone = '+00:00'");
    if (mysql_real_connect(p->conn, p->sock != NULL ? NULL : p->host, p->user, p->pass, p->db,
                           p->port, p->sock, 0) == NULL) {
        /* The server's text names the user and host, never the password. */
        if (p->sock != NULL)
            gw_buf_appendf(err, "mysql: cannot connect to socket %s: %s (%u)", p->sock,
                           mysql_error(p->conn), mysql_errno(p->conn));
        else
            gw_buf_appendf(err, "mysql: cannot connect to %s:%u: %s (%u)", p->host, p->port,
                           mysql_error(p->conn), mysql_errno(p->conn));
        mysql_close(p->conn);
        p->conn = NULL;
        return GW_ESTORE;
    }
    return GW_OK;
}

/* Every slot starts here: reopens a connection that died, and checks one
 * that sat idle, so a call fails only when the server really is away. */
static gw_err
my_ready(struct my_priv *p)
{
    struct gw_buf err = GW_BUF_INIT;
    int64_t now = my_monotonic();
    gw_err rv;

    if (p->conn != NULL && !p->broken && now - p->last_used >= MY_IDLE_PING_S &&
        mysql_ping(p->conn) != 0) {
        gw_log(GW_LOG_WARN, "HUB-STORE-MYSQL", "idle connection lost: %s (%u)",
               mysql_error(p->conn), mysql_errno(p->conn));
        p->broken = 1;
    }
    p->last_used = now;
    if (p->conn != NULL && !p->broken)
        return GW_OK;
    my_disconnect(p);
    rv = my_connect(p, &err);
    if (rv != GW_OK)
        gw_log(GW_LOG_ERROR, "HUB-STORE-MYSQL", "reconnect failed: %s", err.data ? err.data : "");
    else
        gw_log(GW_LOG_WARN, "HUB-STORE-MYSQL", "reconnected to the database");
    gw_buf_fini(&err);
    return rv;
}

static void
my_close(void *priv)
{
    struct my_priv *p = priv;

    my_disconnect(p);
    free(p->ubind);
    free(p->ulen);
    free(p->user);
    if (p->pass != NULL) {
        explicit_bzero(p->pass, strlen(p->pass));
        free(p->pass);
    }
    free(p->host);
    free(p->sock);
    free(p->db);
    memset(p, 0, sizeof(*p));
}

static gw_err
my_open(void *priv, const char *dsn_rest, struct gw_buf *err)
{
    struct my_priv *p = priv;
    gw_err rv;

    pthread_once(&my_lib_once, my_lib_init);
    if (my_lib_rc != 0) {
        gw_buf_append_str(err, "mysql: mysql_library_init failed");
        return GW_ESTORE;
    }
    rv = my_parse_dsn(p, dsn_rest, err);
    if (rv == GW_OK)
        rv = my_connect(p, err);
    if (rv != GW_OK) {
        /* close() is not called after a failed open. */
        my_close(p);
        return rv;
    }
    p->ubind = gw_xcalloc((size_t)MY_USAGE_CHUNK * MY_USAGE_NCOLS, sizeof(*p->ubind));
    p->ulen = gw_xcalloc((size_t)MY_USAGE_CHUNK * MY_USAGE_NCOLS, sizeof(*p->ulen));
    return GW_OK;
}

/* ---- statements --------------------------------------------------------- */

static gw_err
my_prepare_sql(struct my_priv *p, const char *sql, size_t len, MYSQL_STMT **out)
{
    MYSQL_STMT *st = mysql_stmt_init(p->conn);
    gw_err rv;

    if (st == NULL)
        return my_conn_fail(p, "stmt init");
    if (mysql_stmt_prepare(st, sql, (unsigned long)len) != 0) {
        rv = my_stmt_fail(p, st, "prepare");
        mysql_stmt_close(st);
        return rv;
    }
    *out = st;
    return GW_OK;
}

/* The cached statement, prepared on first use. */
static gw_err
my_stmt(struct my_priv *p, enum my_stmt id, MYSQL_STMT **out)
{
    gw_err rv;

    if (p->stmt[id] == NULL) {
        rv = my_prepare_sql(p, my_sql[id], strlen(my_sql[id]), &p->stmt[id]);
        if (rv != GW_OK)
            return rv;
    }
    *out = p->stmt[id];
    return GW_OK;
}

static MYSQL_BIND *
my_add(struct my_binds *c, enum enum_field_types type, void *buf, unsigned long buflen,
       enum my_kind kind)
{
    unsigned i = c->n++;
    MYSQL_BIND *b = &c->b[i];

    memset(b, 0, sizeof(*b));
    b->buffer_type = type;
    b->buffer = buf;
    b->buffer_length = buflen;
    c->len[i] = buflen;
    c->null[i] = 0;
    c->error[i] = 0;
    b->length = &c->len[i];
    b->is_null = &c->null[i];
    b->error = &c->error[i];
    memset(&c->x[i], 0, sizeof(c->x[i]));
    c->x[i].kind = kind;
    return b;
}

/* Parameters. The caller's values must outlive the execute. */
static void
my_p_u64(struct my_binds *c, const uint64_t *v)
{
    my_add(c, MYSQL_TYPE_LONGLONG, (void *)v, 0, MY_K_PLAIN)->is_unsigned = 1;
}

static void
my_p_i64(struct my_binds *c, const int64_t *v)
{
    my_add(c, MYSQL_TYPE_LONGLONG, (void *)v, 0, MY_K_PLAIN);
}

static void
my_p_i32(struct my_binds *c, const int32_t *v)
{
    my_add(c, MYSQL_TYPE_LONG, (void *)v, 0, MY_K_PLAIN);
}

static void
my_p_u32(struct my_binds *c, const uint32_t *v)
{
    my_add(c, MYSQL_TYPE_LONG, (void *)v, 0, MY_K_PLAIN)->is_unsigned = 1;
}

static void
my_p_null(struct my_binds *c)
{
    my_add(c, MYSQL_TYPE_NULL, NULL, 0, MY_K_PLAIN);
}

static void
my_p_str(struct my_binds *c, const char *s)
{
    if (s == NULL)
        s = "";
    my_add(c, MYSQL_TYPE_STRING, (void *)s, (unsigned long)strlen(s), MY_K_PLAIN);
}

static void
my_p_blob(struct my_binds *c, const void *data, size_t len)
{
    my_add(c, MYSQL_TYPE_BLOB, (void *)(data != NULL ? data : ""), (unsigned long)len, MY_K_PLAIN);
}

/* Result columns. */
static void
my_r_u64(struct my_binds *c, uint64_t *v)
{
    my_add(c, MYSQL_TYPE_LONGLONG, v, sizeof(*v), MY_K_PLAIN)->is_unsigned = 1;
}

static void
my_r_i64(struct my_binds *c, int64_t *v)
{
    my_add(c, MYSQL_TYPE_LONGLONG, v, sizeof(*v), MY_K_PLAIN);
}

static void
my_r_i32(struct my_binds *c, int32_t *v)
{
    my_add(c, MYSQL_TYPE_LONG, v, sizeof(*v), MY_K_PLAIN);
}

static void
my_r_u32(struct my_binds *c, uint32_t *v)
{
    my_add(c, MYSQL_TYPE_LONG, v, sizeof(*v), MY_K_PLAIN)->is_unsigned = 1;
}

static void
my_r_cost(struct my_binds *c, int64_t *v)
{
    unsigned i = c->n;

    my_add(c, MYSQL_TYPE_LONGLONG, v, sizeof(*v), MY_K_COST);
    c->x[i].dst = v;
}

static void
my_r_str(struct my_binds *c, char *buf, size_t size)
{
    unsigned i = c->n;

    my_add(c, MYSQL_TYPE_STRING, buf, (unsigned long)size, MY_K_STR);
    c->x[i].dst = buf;
    c->x[i].size = size;
}

/* Any length: *out is allocated after the fetch (NUL-terminated for text,
 * NULL for an empty blob). */
static void
my_r_var(struct my_binds *c, void *out_ptr, size_t *len_out, int text)
{
    unsigned i = c->n;

    my_add(c, text ? MYSQL_TYPE_STRING : MYSQL_TYPE_BLOB, NULL, 0, MY_K_VAR);
    c->x[i].dst = out_ptr;
    c->x[i].len_out = len_out;
    c->x[i].text = text;
}

static gw_err
my_exec(struct my_priv *p, MYSQL_STMT *st, struct my_binds *params, const char *what)
{
    if (params != NULL && params->n > 0 && mysql_stmt_bind_param(st, params->b) != 0)
        return my_stmt_fail(p, st, what);
    if (mysql_stmt_execute(st) != 0)
        return my_stmt_fail(p, st, what);
    return GW_OK;
}

/* Executes a row-returning statement and binds its result columns. */
static gw_err
my_query(struct my_priv *p, MYSQL_STMT *st, struct my_binds *params, struct my_binds *cols,
         const char *what)
{
    gw_err rv = my_exec(p, st, params, what);

    if (rv != GW_OK)
        return rv;
    if (mysql_stmt_bind_result(st, cols->b) != 0) {
        rv = my_stmt_fail(p, st, what);
        mysql_stmt_free_result(st);
        return rv;
    }
    return GW_OK;
}

/* Fetches the next row into the bound columns; *have = 0 at the end. */
static gw_err
my_fetch(struct my_priv *p, MYSQL_STMT *st, struct my_binds *c, int *have)
{
    int rc = mysql_stmt_fetch(st);

    *have = 0;
    if (rc == MYSQL_NO_DATA)
        return GW_OK;
    if (rc == 1)
        return my_stmt_fail(p, st, "fetch");
    /* rc is 0 or MYSQL_DATA_TRUNCATED, which the variable columns cause. */
    for (unsigned i = 0; i < c->n; i++) {
        unsigned long len = c->null[i] ? 0 : c->len[i];

        switch (c->x[i].kind) {
        case MY_K_PLAIN:
            break;
        case MY_K_COST:
            if (c->null[i])
                *(int64_t *)c->x[i].dst = -1;
            break;
        case MY_K_STR: {
            char *buf = c->x[i].dst;
            size_t n = len < c->x[i].size ? len : c->x[i].size - 1;
            buf[n] = '\0';
            break;
        }
        case MY_K_VAR: {
            char *buf = NULL;

            if (len > 0 || c->x[i].text) {
                MYSQL_BIND tmp;
                unsigned long got = 0;

                buf = gw_xmalloc(len + 1);
                buf[len] = '\0';
                if (len > 0) {
                    memset(&tmp, 0, sizeof(tmp));
                    tmp.buffer_type = c->b[i].buffer_type;
                    tmp.buffer = buf;
                    tmp.buffer_length = len;
                    tmp.length = &got;
                    if (mysql_stmt_fetch_column(st, &tmp, i, 0) != 0) {
                        free(buf);
                        return my_stmt_fail(p, st, "fetch column");
                    }
                }
            }
            *(char **)c->x[i].dst = buf;
            if (c->x[i].len_out != NULL)
                *c->x[i].len_out = len;
            break;
        }
        }
    }
    *have = 1;
    return GW_OK;
}

/* Reads what is left of a result and frees it, so the statement (and the
 * connection) are ready for the next command. */
static void
my_end(MYSQL_STMT *st)
{
    while (mysql_stmt_fetch(st) == 0)
        ;
    mysql_stmt_free_result(st);
}

/* Runs a statement that returns at most one row; *found says if it did. */
static gw_err
my_one(struct my_priv *p, enum my_stmt id, struct my_binds *params, struct my_binds *cols,
       int *found)
{
    MYSQL_STMT *st;
    gw_err rv;

    *found = 0;
    rv = my_stmt(p, id, &st);
    if (rv != GW_OK)
        return rv;
    rv = my_query(p, st, params, cols, my_sql[id]);
    if (rv != GW_OK)
        return rv;
    rv = my_fetch(p, st, cols, found);
    my_end(st);
    return rv;
}

/* Runs a statement without a result set. */
static gw_err
my_run(struct my_priv *p, enum my_stmt id, struct my_binds *params, MYSQL_STMT **st_out)
{
    MYSQL_STMT *st;
    gw_err rv;

    rv = my_stmt(p, id, &st);
    if (rv != GW_OK)
        return rv;
    rv = my_exec(p, st, params, my_sql[id]);
    if (rv == GW_OK && st_out != NULL)
        *st_out = st;
    return rv;
}

static gw_err
my_sql_plain(struct my_priv *p, const char *sql)
{
    if (mysql_real_query(p->conn, sql, (unsigned long)strlen(sql)) != 0)
        return my_conn_fail(p, sql);
    return GW_OK;
}

static gw_err
my_begin(struct my_priv *p)
{
    return my_sql_plain(p, "START TRANSACTION");
}

static gw_err
my_commit(struct my_priv *p)
{
    if (mysql_commit(p->conn) != 0)
        return my_conn_fail(p, "commit");
    return GW_OK;
}

static void
my_rollback(struct my_priv *p)
{
    if (p->conn != NULL && !p->broken && mysql_rollback(p->conn) != 0)
        (void)my_conn_fail(p, "rollback");
}

/* ---- migrations --------------------------------------------------------- */

static gw_err
my_migrate_locked(struct my_priv *p, struct gw_buf *err)
{
    uint64_t have = 0;
    int found = 0;
    gw_err rv;

    for (size_t v = 1; v <= MY_N_MIGRATIONS; v++) {
        struct my_binds par = {0}, col = {0};
        uint64_t version = v;
        int64_t now = my_now();

        my_r_u64(&col, &have);
        rv = my_one(p, MY_MIGRATIONS_MAX, NULL, &col, &found);
        if (rv != GW_OK)
            return rv;
        if (have >= v)
            continue;
        rv = my_begin(p);
        if (rv != GW_OK)
            return rv;
        for (const char *const *sql = my_migrations[v - 1]; *sql != NULL; sql++) {
            if (mysql_real_query(p->conn, *sql, (unsigned long)strlen(*sql)) != 0 &&
                !(mysql_errno(p->conn) == ER_DUP_FIELDNAME && strncmp(*sql, "ALTER", 5) == 0)) {
                gw_buf_appendf(err, "mysql: migration %zu: %s (%u)", v, mysql_error(p->conn),
                               mysql_errno(p->conn));
                rv = my_conn_fail(p, "migration");
                my_rollback(p);
                return rv;
            }
        }
        my_p_u64(&par, &version);
        my_p_i64(&par, &now);
        rv = my_run(p, MY_MIGRATIONS_ADD, &par, NULL);
        if (rv == GW_OK)
            rv = my_commit(p);
        if (rv != GW_OK) {
            my_rollback(p);
            return rv;
        }
        gw_log(GW_LOG_INFO, "HUB-STORE-MIGRATE", "mysql: applied migration %zu", v);
    }
    return GW_OK;
}

static gw_err
my_migrate(void *priv, struct gw_buf *err)
{
    struct my_priv *p = priv;
    struct my_binds par = {0}, col = {0};
    int64_t lock_timeout = MY_MIGRATE_LOCK_TIMEOUT_S;
    int64_t locked = 0;
    int found = 0;
    gw_err rv;

    rv = my_sql_plain(p, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         "  version INT UNSIGNED NOT NULL PRIMARY KEY,"
                         "  applied_at BIGINT NOT NULL)" MY_TABLE_OPTS);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "mysql: creating schema_migrations: %s", mysql_error(p->conn));
        return rv;
    }
    /* DDL cannot run inside a transaction here, so hubs starting together
     * take turns through a named lock. */
    my_p_i64(&par, &lock_timeout);
    my_r_i64(&col, &locked);
    rv = my_one(p, MY_LOCK_GET, &par, &col, &found);
    if (rv == GW_OK && (!found || locked != 1))
        rv = GW_ETIMEDOUT;
    if (rv != GW_OK) {
        gw_buf_append_str(err, "mysql: cannot take the migration lock");
        return rv;
    }
    rv = my_migrate_locked(p, err);
    if (rv != GW_OK && err->len == 0)
        gw_buf_appendf(err, "mysql: migration failed: %s", gw_strerror(rv));
    col.n = 0;
    my_r_i64(&col, &locked);
    (void)my_one(p, MY_LOCK_RELEASE, NULL, &col, &found);
    return rv;
}

/* ---- configuration ------------------------------------------------------ */

static gw_err
my_config_version(void *priv, uint64_t *out)
{
    struct my_priv *p = priv;
    struct my_binds col = {0};
    int found = 0;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    my_r_u64(&col, out);
    rv = my_one(p, MY_CONFIG_VERSION, NULL, &col, &found);
    if (rv == GW_OK && !found)
        rv = GW_ESTORE;
    return rv;
}

/* Inside the caller's transaction: the UPDATE locks the meta row until the
 * commit, so versions are handed out one at a time. */
static gw_err
my_config_changed(struct my_priv *p, const char *entity, uint64_t entity_id, const char *op)
{
    struct my_binds par = {0}, col = {0};
    uint64_t version = 0;
    int64_t now = my_now();
    int found = 0;
    gw_err rv;

    rv = my_run(p, MY_CONFIG_BUMP, NULL, NULL);
    if (rv != GW_OK)
        return rv;
    my_r_u64(&col, &version);
    rv = my_one(p, MY_CONFIG_VERSION, NULL, &col, &found);
    if (rv != GW_OK)
        return rv;
    if (!found)
        return GW_ESTORE;
    my_p_u64(&par, &version);
    my_p_str(&par, entity);
    my_p_u64(&par, &entity_id);
    my_p_str(&par, op);
    my_p_i64(&par, &now);
    return my_run(p, MY_CHANGE_LOG_ADD, &par, NULL);
}

static gw_err
my_admin_count(void *priv, uint64_t *out)
{
    struct my_priv *p = priv;
    struct my_binds col = {0};
    int found = 0;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    my_r_u64(&col, out);
    return my_one(p, MY_ADMIN_COUNT, NULL, &col, &found);
}

static gw_err
my_admin_create(void *priv, const char *username, const char *password_hash, int must_change,
                uint64_t *id_out)
{
    struct my_priv *p = priv;
    struct my_binds par = {0};
    int32_t must = must_change ? 1 : 0;
    int64_t now = my_now();
    MYSQL_STMT *st = NULL;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    my_p_str(&par, username);
    my_p_str(&par, password_hash);
    my_p_i32(&par, &must);
    my_p_i64(&par, &now);
    rv = my_run(p, MY_ADMIN_CREATE, &par, &st);
    if (rv == GW_OK && id_out != NULL)
        *id_out = (uint64_t)mysql_stmt_insert_id(st);
    return rv;
}

static gw_err
my_admin_get(void *priv, const char *username, struct hub_admin *out)
{
    struct my_priv *p = priv;
    struct my_binds par = {0}, col = {0};
    int32_t must = 0;
    int found = 0;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    my_p_str(&par, username);
    my_r_u64(&col, &out->id);
    my_r_str(&col, out->username, sizeof(out->username));
    my_r_var(&col, &out->password_hash, NULL, 1);
    my_r_i32(&col, &must);
    rv = my_one(p, MY_ADMIN_GET, &par, &col, &found);
    if (rv != GW_OK)
        return rv;
    if (!found)
        return GW_ENOTFOUND;
    out->must_change_password = must != 0;
    return GW_OK;
}

static int64_t
my_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Model lists are stored as JSON text; buf holds it until the execute. */
static void
my_p_models(struct my_binds *c, const char *const *models, size_t n, struct gw_buf *buf)
{
    gw_buf_reset(buf);
    if (n > 0)
        hub_store_models_to_json(models, n, buf);
    my_add(c, MYSQL_TYPE_STRING, buf->data != NULL ? buf->data : (char *)"",
           (unsigned long)buf->len, MY_K_PLAIN);
}

/* Takes the JSON text a var column fetched (and frees it). */
static gw_err
my_take_models(char **text, char ***out, size_t *n_out)
{
    gw_err rv = hub_store_models_from_json(*text, *text != NULL ? strlen(*text) : 0, out, n_out);

    if (rv != GW_OK)
        gw_log(GW_LOG_ERROR, "HUB-STORE-MYSQL", "a model list column is not a JSON array");
    free(*text);
    *text = NULL;
    return rv;
}

/* Runs a query of the "SELECT id ... FOR UPDATE" kind: GW_ENOTFOUND when
 * it returns no row. */
static gw_err
my_exists(struct my_priv *p, enum my_stmt id, uint64_t key)
{
    struct my_binds par = {0}, col = {0};
    uint64_t got = 0;
    int found = 0;
    gw_err rv;

    my_p_u64(&par, &key);
    my_r_u64(&col, &got);
    rv = my_one(p, id, &par, &col, &found);
    if (rv == GW_OK && !found)
        rv = GW_ENOTFOUND;
    return rv;
}

static void *
my_grow(void *arr, size_t n, size_t *cap, size_t elem_size)
{
    if (n < *cap)
        return arr;
    *cap = *cap ? *cap * 2 : 16;
    return gw_xrealloc(arr, *cap * elem_size);
}

/* Runs a multi-row query, calling row() after each fetch. */
static gw_err
my_each(struct my_priv *p, enum my_stmt id, struct my_binds *par, struct my_binds *col,
        gw_err (*row)(void *ctx), void *ctx)
{
    MYSQL_STMT *st;
    int have = 0;
    gw_err rv;

    rv = my_stmt(p, id, &st);
    if (rv != GW_OK)
        return rv;
    rv = my_query(p, st, par, col, my_sql[id]);
    if (rv != GW_OK)
        return rv;
    for (;;) {
        rv = my_fetch(p, st, col, &have);
        if (rv != GW_OK || !have)
            break;
        rv = row(ctx);
        if (rv != GW_OK)
            break;
    }
    my_end(st);
    return rv;
}

/* ---- groups ------------------------------------------------------------- */

static gw_err
my_group_create(void *priv, const char *name, struct hub_group *out)
{
    struct my_priv *p = priv;
    struct my_binds par = {0};
    int64_t now = my_now();
    MYSQL_STMT *st = NULL;
    uint64_t id;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    my_p_str(&par, name);
    my_p_i64(&par, &now);
    rv = my_run(p, MY_GROUP_CREATE, &par, &st);
    if (rv != GW_OK)
        goto fail;
    id = (uint64_t)mysql_stmt_insert_id(st);
    rv = my_config_changed(p, "group", id, "create");
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    memset(out, 0, sizeof(*out));
    out->id = id;
    snprintf(out->name, sizeof(out->name), "%s", name);
    out->created_at = now;
    snprintf(out->mode, sizeof(out->mode), "dedicated");
    return GW_OK;
fail:
    my_rollback(p);
    return rv;
}

static void
my_group_cols(struct my_binds *col, struct hub_group *g)
{
    my_r_u64(col, &g->id);
    my_r_str(col, g->name, sizeof(g->name));
    my_r_i64(col, &g->created_at);
    my_r_str(col, g->mode, sizeof(g->mode));
    my_r_u64(col, &g->pool_id);
}

/* id = MY_GROUP_GET, or MY_GROUP_LOCK inside a transaction. */
static gw_err
my_group_read(struct my_priv *p, enum my_stmt id, uint64_t group_id, struct hub_group *out)
{
    struct my_binds par = {0}, col = {0};
    int found = 0;
    gw_err rv;

    my_p_u64(&par, &group_id);
    my_group_cols(&col, out);
    rv = my_one(p, id, &par, &col, &found);
    if (rv == GW_OK && !found)
        rv = GW_ENOTFOUND;
    return rv;
}

static gw_err
my_group_get(void *priv, uint64_t id, struct hub_group *out)
{
    struct my_priv *p = priv;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    return my_group_read(p, MY_GROUP_GET, id, out);
}

struct my_group_list_ctx {
    struct hub_group cur;
    struct hub_group *arr;
    size_t n, cap;
};

static gw_err
my_group_list_row(void *arg)
{
    struct my_group_list_ctx *c = arg;

    c->arr = my_grow(c->arr, c->n, &c->cap, sizeof(*c->arr));
    c->arr[c->n++] = c->cur;
    return GW_OK;
}

static gw_err
my_group_list(void *priv, struct hub_group **out, size_t *n_out)
{
    struct my_priv *p = priv;
    struct my_group_list_ctx c;
    struct my_binds col = {0};
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    memset(&c, 0, sizeof(c));
    my_group_cols(&col, &c.cur);
    rv = my_each(p, MY_GROUP_LIST, NULL, &col, my_group_list_row, &c);
    *out = c.arr;
    *n_out = c.n;
    return rv;
}

/* Read (locked), merge, check, write in one transaction. */
static gw_err
my_group_update(void *priv, uint64_t id, const struct hub_group_patch *patch, struct hub_group *out)
{
    struct my_priv *p = priv;
    struct my_binds par = {0};
    struct hub_group cur;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    memset(&cur, 0, sizeof(cur));
    rv = my_group_read(p, MY_GROUP_LOCK, id, &cur);
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
        /* Pools are never deleted, so a shared lock is all it takes. */
        rv = my_exists(p, MY_POOL_LOCK, cur.pool_id);
        if (rv != GW_OK)
            goto fail;
    }
    my_p_str(&par, cur.mode);
    if (cur.pool_id != 0)
        my_p_u64(&par, &cur.pool_id);
    else
        my_add(&par, MYSQL_TYPE_NULL, NULL, 0, MY_K_PLAIN);
    my_p_u64(&par, &id);
    rv = my_run(p, MY_GROUP_UPDATE, &par, NULL);
    if (rv != GW_OK)
        goto fail;
    rv = my_config_changed(p, "group", id, "update");
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    *out = cur;
    return GW_OK;
fail:
    my_rollback(p);
    return rv;
}

/* ---- accounts ----------------------------------------------------------- */

/* One account row being fetched: the fixed fields land in `a`, the rest
 * in the scratch fields until my_account_finish. */
struct my_account_row {
    struct hub_account a;
    int32_t enabled;
    char *models;
};

static void
my_account_cols(struct my_binds *col, struct my_account_row *r)
{
    my_r_u64(col, &r->a.id);
    my_r_str(col, r->a.name, sizeof(r->a.name));
    my_r_str(col, r->a.kind, sizeof(r->a.kind));
    my_r_str(col, r->a.base_url, sizeof(r->a.base_url));
    my_r_i32(col, &r->a.priority);
    my_r_i32(col, &r->a.weight);
    my_r_i32(col, &r->enabled);
    my_r_i64(col, &r->a.created_at);
    my_r_var(col, &r->models, NULL, 1);
    my_r_u32(col, &r->a.max_concurrency);
    my_r_str(col, r->a.proxy, sizeof(r->a.proxy));
    my_r_str(col, r->a.disabled_reason, sizeof(r->a.disabled_reason));
    my_r_i64(col, &r->a.cooldown_until_ms);
    my_r_u32(col, &r->a.auth_failures);
}

/* Moves the fetched row into out (which then owns its model list). */
static gw_err
my_account_finish(struct my_account_row *r, struct hub_account *out)
{
    *out = r->a;
    out->enabled = r->enabled != 0;
    out->models = NULL;
    out->n_models = 0;
    return my_take_models(&r->models, &out->models, &out->n_models);
}

static gw_err
my_account_read(struct my_priv *p, uint64_t id, struct hub_account *out)
{
    struct my_binds par = {0}, col = {0};
    struct my_account_row r;
    int found = 0;
    gw_err rv;

    memset(&r, 0, sizeof(r));
    my_p_u64(&par, &id);
    my_account_cols(&col, &r);
    rv = my_one(p, MY_ACCOUNT_GET, &par, &col, &found);
    if (rv == GW_OK && !found)
        rv = GW_ENOTFOUND;
    if (rv == GW_OK)
        return my_account_finish(&r, out);
    free(r.models);
    return rv;
}

static gw_err
my_account_get(void *priv, uint64_t id, struct hub_account *out)
{
    struct my_priv *p = priv;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    return my_account_read(p, id, out);
}

struct my_account_list_ctx {
    struct my_account_row cur;
    struct hub_account *arr;
    size_t n, cap;
};

static gw_err
my_account_list_row(void *arg)
{
    struct my_account_list_ctx *c = arg;

    c->arr = my_grow(c->arr, c->n, &c->cap, sizeof(*c->arr));
    /* Counted first: the wrapper frees what a failed row holds. */
    return my_account_finish(&c->cur, &c->arr[c->n++]);
}

static gw_err
my_account_list(void *priv, struct hub_account **out, size_t *n_out)
{
    struct my_priv *p = priv;
    struct my_account_list_ctx c;
    struct my_binds col = {0};
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    memset(&c, 0, sizeof(c));
    my_account_cols(&col, &c.cur);
    rv = my_each(p, MY_ACCOUNT_LIST, NULL, &col, my_account_list_row, &c);
    free(c.cur.models);
    *out = c.arr;
    *n_out = c.n;
    return rv;
}

static gw_err
my_account_create(void *priv, const struct hub_account_new *in, struct hub_account *out)
{
    struct my_priv *p = priv;
    struct gw_buf models = GW_BUF_INIT;
    struct my_binds par = {0};
    int64_t now = my_now();
    MYSQL_STMT *st = NULL;
    uint64_t id = 0;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    my_p_str(&par, in->name);
    my_p_str(&par, in->kind);
    my_p_str(&par, in->base_url);
    my_p_blob(&par, in->credential_sealed, in->credential_sealed_len);
    my_p_i32(&par, &in->priority);
    my_p_i32(&par, &in->weight);
    my_p_i64(&par, &now);
    my_p_models(&par, in->models, in->n_models, &models);
    my_p_u32(&par, &in->max_concurrency);
    my_p_str(&par, in->proxy);
    rv = my_run(p, MY_ACCOUNT_CREATE, &par, &st);
    if (rv != GW_OK)
        goto fail;
    id = (uint64_t)mysql_stmt_insert_id(st);
    rv = my_config_changed(p, "account", id, "create");
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    gw_buf_fini(&models);
    return my_account_read(p, id, out);
fail:
    my_rollback(p);
    gw_buf_fini(&models);
    return rv;
}

static gw_err
my_account_update(void *priv, uint64_t id, const struct hub_account_patch *patch,
                  struct hub_account *out)
{
    struct my_priv *p = priv;
    struct gw_buf models = GW_BUF_INIT;
    struct my_binds par = {0};
    unsigned f = patch->fields;
    int32_t enabled = patch->enabled ? 1 : 0;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    /* Affected rows count only changed rows: look the row up (and lock it). */
    rv = my_exists(p, MY_ACCOUNT_LOCK, id);
    if (rv != GW_OK)
        goto fail;
    /* A NULL parameter keeps the column (COALESCE). */
    if (f & HUB_ACCOUNT_SET_NAME)
        my_p_str(&par, patch->name);
    else
        my_p_null(&par);
    if (f & HUB_ACCOUNT_SET_BASE_URL)
        my_p_str(&par, patch->base_url);
    else
        my_p_null(&par);
    if (f & HUB_ACCOUNT_SET_CREDENTIAL)
        my_p_blob(&par, patch->credential_sealed, patch->credential_sealed_len);
    else
        my_p_null(&par);
    if (f & HUB_ACCOUNT_SET_PRIORITY)
        my_p_i32(&par, &patch->priority);
    else
        my_p_null(&par);
    if (f & HUB_ACCOUNT_SET_WEIGHT)
        my_p_i32(&par, &patch->weight);
    else
        my_p_null(&par);
    if (f & HUB_ACCOUNT_SET_MODELS)
        my_p_models(&par, patch->models, patch->n_models, &models);
    else
        my_p_null(&par);
    if (f & HUB_ACCOUNT_SET_MAX_CONCURRENCY)
        my_p_u32(&par, &patch->max_concurrency);
    else
        my_p_null(&par);
    if (f & HUB_ACCOUNT_SET_PROXY)
        my_p_str(&par, patch->proxy);
    else
        my_p_null(&par);
    /* `enabled` appears in seven places of the statement. */
    for (int i = 0; i < 7; i++) {
        if (f & HUB_ACCOUNT_SET_ENABLED)
            my_p_i32(&par, &enabled);
        else
            my_p_null(&par);
    }
    my_p_u64(&par, &id);
    rv = my_run(p, MY_ACCOUNT_UPDATE, &par, NULL);
    if (rv != GW_OK)
        goto fail;
    rv = my_config_changed(p, "account", id, "update");
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    gw_buf_fini(&models);
    return my_account_read(p, id, out);
fail:
    my_rollback(p);
    gw_buf_fini(&models);
    return rv;
}

/* Applies one account event inside the caller's transaction (the row is
 * locked while it is read and written). */
static gw_err
my_account_event(struct my_priv *p, const struct gw_account_event *ev, int64_t now_ms)
{
    struct hub_store_account_health h;
    struct my_binds par = {0}, col = {0};
    uint64_t account_id = ev->account_id;
    int32_t enabled = 0;
    char reason[128];
    unsigned changed;
    int found = 0;
    gw_err rv;

    memset(&h, 0, sizeof(h));
    my_p_u64(&par, &account_id);
    my_r_i32(&col, &enabled);
    my_r_i64(&col, &h.cooldown_until_ms);
    my_r_u32(&col, &h.auth_failures);
    my_r_i64(&col, &h.auth_fail_last_ms);
    my_r_i64(&col, &h.auth_fail_prev_ms);
    rv = my_one(p, MY_ACCOUNT_HEALTH_GET, &par, &col, &found);
    if (rv != GW_OK || !found)
        return rv; /* an unknown account: nothing to change */
    h.enabled = enabled != 0;
    changed = hub_store_account_event_apply(&h, ev, now_ms, reason, sizeof(reason));
    if (changed == 0)
        return GW_OK;
    par.n = 0;
    my_p_i64(&par, &h.cooldown_until_ms);
    my_p_u32(&par, &h.auth_failures);
    my_p_i64(&par, &h.auth_fail_last_ms);
    my_p_i64(&par, &h.auth_fail_prev_ms);
    my_p_u64(&par, &account_id);
    rv = my_run(p, MY_ACCOUNT_HEALTH_SET, &par, NULL);
    if (rv != GW_OK)
        return rv;
    if (changed & HUB_STORE_EVENT_DISABLED) {
        par.n = 0;
        my_p_str(&par, reason);
        my_p_u64(&par, &account_id);
        rv = my_run(p, MY_ACCOUNT_DISABLE, &par, NULL);
        if (rv == GW_OK)
            rv = my_config_changed(p, "account", account_id, "disable");
        if (rv == GW_OK)
            gw_log(GW_LOG_WARN, "HUB-ACCOUNT-DISABLED", "account %llu disabled: %s",
                   (unsigned long long)account_id, reason);
    }
    if (rv == GW_OK && (changed & HUB_STORE_EVENT_COOLDOWN))
        rv = my_config_changed(p, "account", account_id, "cooldown");
    return rv;
}

static gw_err
my_binding_create(void *priv, uint64_t group_id, uint64_t account_id)
{
    struct my_priv *p = priv;
    struct my_binds par = {0};
    int64_t now = my_now();
    MYSQL_STMT *st = NULL;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    my_p_u64(&par, &group_id);
    my_p_u64(&par, &account_id);
    my_p_i64(&par, &now);
    rv = my_run(p, MY_BINDING_CREATE, &par, &st);
    if (rv != GW_OK)
        goto fail;
    rv = my_config_changed(p, "binding", (uint64_t)mysql_stmt_insert_id(st), "create");
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    return GW_OK;
fail:
    my_rollback(p);
    return rv;
}

/* ---- pools -------------------------------------------------------------- */

static gw_err
my_pool_create(void *priv, const char *name, struct hub_pool *out)
{
    struct my_priv *p = priv;
    struct my_binds par = {0};
    int64_t now = my_now();
    MYSQL_STMT *st = NULL;
    uint64_t id;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    my_p_str(&par, name);
    my_p_i64(&par, &now);
    rv = my_run(p, MY_POOL_CREATE, &par, &st);
    if (rv != GW_OK)
        goto fail;
    id = (uint64_t)mysql_stmt_insert_id(st);
    rv = my_config_changed(p, "pool", id, "create");
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    out->id = id;
    snprintf(out->name, sizeof(out->name), "%s", name);
    out->created_at = now;
    return GW_OK;
fail:
    my_rollback(p);
    return rv;
}

/* Every pool membership, ordered by pool then by when it was added. */
struct my_member {
    uint64_t pool_id;
    uint64_t account_id;
};

struct my_members_ctx {
    struct my_member cur;
    struct my_member *arr;
    size_t n, cap;
};

static gw_err
my_member_row(void *arg)
{
    struct my_members_ctx *c = arg;

    c->arr = my_grow(c->arr, c->n, &c->cap, sizeof(*c->arr));
    c->arr[c->n++] = c->cur;
    return GW_OK;
}

/* id = MY_POOL_MEMBERS (all), or MY_POOL_MEMBERS_OF with pool_id. */
static gw_err
my_pool_members(struct my_priv *p, enum my_stmt id, uint64_t pool_id, struct my_members_ctx *c)
{
    struct my_binds par = {0}, col = {0};

    memset(c, 0, sizeof(*c));
    if (id == MY_POOL_MEMBERS_OF)
        my_p_u64(&par, &pool_id);
    my_r_u64(&col, &c->cur.pool_id);
    my_r_u64(&col, &c->cur.account_id);
    return my_each(p, id, &par, &col, my_member_row, c);
}

/* Copies the members of pool `id` out of m (sorted by pool), starting the
 * scan at *pos; pools must be visited in ascending id order. */
static void
my_take_members(const struct my_member *m, size_t n, size_t *pos, uint64_t id, uint64_t **ids,
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
my_pool_get(void *priv, uint64_t id, struct hub_pool *out)
{
    struct my_priv *p = priv;
    struct my_binds par = {0}, col = {0};
    struct my_members_ctx m;
    size_t pos = 0;
    int found = 0;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    my_p_u64(&par, &id);
    my_r_u64(&col, &out->id);
    my_r_str(&col, out->name, sizeof(out->name));
    my_r_i64(&col, &out->created_at);
    rv = my_one(p, MY_POOL_GET, &par, &col, &found);
    if (rv == GW_OK && !found)
        rv = GW_ENOTFOUND;
    if (rv != GW_OK)
        return rv;
    rv = my_pool_members(p, MY_POOL_MEMBERS_OF, id, &m);
    if (rv == GW_OK)
        my_take_members(m.arr, m.n, &pos, id, &out->account_ids, &out->n_account_ids);
    free(m.arr);
    return rv;
}

struct my_pool_list_ctx {
    struct hub_pool cur;
    struct hub_pool *arr;
    size_t n, cap;
};

static gw_err
my_pool_list_row(void *arg)
{
    struct my_pool_list_ctx *c = arg;

    c->arr = my_grow(c->arr, c->n, &c->cap, sizeof(*c->arr));
    c->arr[c->n++] = c->cur;
    return GW_OK;
}

static gw_err
my_pool_list(void *priv, struct hub_pool **out, size_t *n_out)
{
    struct my_priv *p = priv;
    struct my_pool_list_ctx c;
    struct my_members_ctx m;
    struct my_binds col = {0};
    size_t pos = 0;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    memset(&c, 0, sizeof(c));
    memset(&m, 0, sizeof(m));
    rv = my_sql_plain(p, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
    if (rv != GW_OK)
        return rv;
    my_r_u64(&col, &c.cur.id);
    my_r_str(&col, c.cur.name, sizeof(c.cur.name));
    my_r_i64(&col, &c.cur.created_at);
    rv = my_each(p, MY_POOL_LIST, NULL, &col, my_pool_list_row, &c);
    if (rv == GW_OK)
        rv = my_pool_members(p, MY_POOL_MEMBERS, 0, &m);
    for (size_t i = 0; rv == GW_OK && i < c.n; i++)
        my_take_members(m.arr, m.n, &pos, c.arr[i].id, &c.arr[i].account_ids,
                        &c.arr[i].n_account_ids);
    free(m.arr);
    if (rv == GW_OK)
        rv = my_commit(p);
    if (rv != GW_OK)
        my_rollback(p);
    *out = c.arr;
    *n_out = c.n;
    return rv;
}

static gw_err
my_pool_add_account(void *priv, uint64_t pool_id, uint64_t account_id)
{
    struct my_priv *p = priv;
    struct my_binds par = {0};
    int64_t now = my_now();
    MYSQL_STMT *st = NULL;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    my_p_u64(&par, &pool_id);
    my_p_u64(&par, &account_id);
    my_p_i64(&par, &now);
    rv = my_run(p, MY_POOL_ADD, &par, &st);
    if (rv != GW_OK)
        goto fail;
    rv = my_config_changed(p, "pool_account", (uint64_t)mysql_stmt_insert_id(st), "create");
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    return GW_OK;
fail:
    my_rollback(p);
    return rv;
}

/* ---- keys --------------------------------------------------------------- */

struct my_key_row {
    struct hub_key k;
    int32_t enabled;
    char *models;
};

static void
my_key_cols(struct my_binds *col, struct my_key_row *r)
{
    my_r_u64(col, &r->k.id);
    my_r_u64(col, &r->k.group_id);
    my_r_str(col, r->k.name, sizeof(r->k.name));
    my_r_str(col, r->k.prefix, sizeof(r->k.prefix));
    my_r_i32(col, &r->enabled);
    my_r_i64(col, &r->k.expires_at);
    my_r_i64(col, &r->k.created_at);
    my_r_u32(col, &r->k.rpm_limit);
    my_r_u32(col, &r->k.tpm_limit);
    my_r_u32(col, &r->k.concurrency_limit);
    my_r_var(col, &r->models, NULL, 1);
}

static gw_err
my_key_finish(struct my_key_row *r, struct hub_key *out)
{
    *out = r->k;
    out->enabled = r->enabled != 0;
    out->allowed_models = NULL;
    out->n_allowed_models = 0;
    return my_take_models(&r->models, &out->allowed_models, &out->n_allowed_models);
}

static gw_err
my_key_read(struct my_priv *p, uint64_t id, struct hub_key *out)
{
    struct my_binds par = {0}, col = {0};
    struct my_key_row r;
    int found = 0;
    gw_err rv;

    memset(&r, 0, sizeof(r));
    my_p_u64(&par, &id);
    my_key_cols(&col, &r);
    rv = my_one(p, MY_KEY_GET, &par, &col, &found);
    if (rv == GW_OK && !found)
        rv = GW_ENOTFOUND;
    if (rv == GW_OK)
        return my_key_finish(&r, out);
    free(r.models);
    return rv;
}

static gw_err
my_key_get(void *priv, uint64_t id, struct hub_key *out)
{
    struct my_priv *p = priv;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    return my_key_read(p, id, out);
}

struct my_key_list_ctx {
    struct my_key_row cur;
    struct hub_key *arr;
    size_t n, cap;
};

static gw_err
my_key_list_row(void *arg)
{
    struct my_key_list_ctx *c = arg;

    c->arr = my_grow(c->arr, c->n, &c->cap, sizeof(*c->arr));
    return my_key_finish(&c->cur, &c->arr[c->n++]);
}

static gw_err
my_key_list(void *priv, uint64_t group_id, struct hub_key **out, size_t *n_out)
{
    struct my_priv *p = priv;
    struct my_key_list_ctx c;
    struct my_binds par = {0}, col = {0};
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    memset(&c, 0, sizeof(c));
    if (group_id != 0)
        my_p_u64(&par, &group_id);
    my_key_cols(&col, &c.cur);
    rv = my_each(p, group_id != 0 ? MY_KEY_LIST_GROUP : MY_KEY_LIST_ALL, &par, &col,
                 my_key_list_row, &c);
    free(c.cur.models);
    *out = c.arr;
    *n_out = c.n;
    return rv;
}

static gw_err
my_key_create(void *priv, const struct hub_key_new *in, struct hub_key *out)
{
    struct my_priv *p = priv;
    struct gw_buf models = GW_BUF_INIT;
    struct my_binds par = {0};
    int64_t now = my_now();
    MYSQL_STMT *st = NULL;
    uint64_t id = 0;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    my_p_blob(&par, in->key_hash, GW_SHA256_LEN);
    my_p_str(&par, in->prefix);
    my_p_str(&par, in->name);
    my_p_u64(&par, &in->group_id);
    my_p_i64(&par, &in->expires_at);
    my_p_i64(&par, &now);
    my_p_u32(&par, &in->rpm_limit);
    my_p_u32(&par, &in->tpm_limit);
    my_p_u32(&par, &in->concurrency_limit);
    my_p_models(&par, in->allowed_models, in->n_allowed_models, &models);
    rv = my_run(p, MY_KEY_CREATE, &par, &st);
    if (rv != GW_OK)
        goto fail;
    id = (uint64_t)mysql_stmt_insert_id(st);
    rv = my_config_changed(p, "key", id, "create");
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    gw_buf_fini(&models);
    return my_key_read(p, id, out);
fail:
    my_rollback(p);
    gw_buf_fini(&models);
    return rv;
}

static gw_err
my_key_update(void *priv, uint64_t id, const struct hub_key_patch *patch, struct hub_key *out)
{
    struct my_priv *p = priv;
    struct gw_buf models = GW_BUF_INIT;
    struct my_binds par = {0};
    unsigned f = patch->fields;
    int32_t enabled = patch->enabled ? 1 : 0;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    rv = my_exists(p, MY_KEY_LOCK, id);
    if (rv != GW_OK)
        goto fail;
    if (f & HUB_KEY_SET_NAME)
        my_p_str(&par, patch->name);
    else
        my_p_null(&par);
    if (f & HUB_KEY_SET_ENABLED)
        my_p_i32(&par, &enabled);
    else
        my_p_null(&par);
    if (f & HUB_KEY_SET_RPM)
        my_p_u32(&par, &patch->rpm_limit);
    else
        my_p_null(&par);
    if (f & HUB_KEY_SET_TPM)
        my_p_u32(&par, &patch->tpm_limit);
    else
        my_p_null(&par);
    if (f & HUB_KEY_SET_CONCURRENCY)
        my_p_u32(&par, &patch->concurrency_limit);
    else
        my_p_null(&par);
    if (f & HUB_KEY_SET_ALLOWED_MODELS)
        my_p_models(&par, patch->allowed_models, patch->n_allowed_models, &models);
    else
        my_p_null(&par);
    if (f & HUB_KEY_SET_EXPIRES_AT)
        my_p_i64(&par, &patch->expires_at);
    else
        my_p_null(&par);
    my_p_u64(&par, &id);
    rv = my_run(p, MY_KEY_UPDATE, &par, NULL);
    if (rv != GW_OK)
        goto fail;
    rv = my_config_changed(p, "key", id, "update");
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    gw_buf_fini(&models);
    return my_key_read(p, id, out);
fail:
    my_rollback(p);
    gw_buf_fini(&models);
    return rv;
}

static gw_err
my_key_revoke(void *priv, uint64_t id)
{
    struct my_priv *p = priv;
    struct my_binds par = {0};
    int64_t now = my_now();
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    rv = my_exists(p, MY_KEY_LOCK, id);
    if (rv != GW_OK)
        goto fail;
    my_p_i64(&par, &now);
    my_p_u64(&par, &id);
    rv = my_run(p, MY_KEY_REVOKE, &par, NULL);
    if (rv != GW_OK)
        goto fail;
    rv = my_config_changed(p, "key", id, "revoke");
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    return GW_OK;
fail:
    my_rollback(p);
    return rv;
}

/* ---- snapshot ----------------------------------------------------------- */

struct my_snap_ctx {
    struct gw_wire_snapshot *out;
    size_t cap;
    uint64_t id, group_id, account_id, pool_id;
    int64_t expires_at, cooldown_until_ms;
    int32_t enabled, priority, weight;
    uint32_t rpm, tpm, concurrency, max_concurrency;
    uint8_t hash[GW_SHA256_LEN];
    char *name, *kind, *base_url, *credential, *models, *proxy, *mode;
    size_t credential_len;
};

static gw_err
my_snap_key_row(void *arg)
{
    struct my_snap_ctx *c = arg;
    struct gw_wire_key *k;

    c->out->keys = my_grow(c->out->keys, c->out->n_keys, &c->cap, sizeof(*c->out->keys));
    k = &c->out->keys[c->out->n_keys++];
    memset(k, 0, sizeof(*k));
    k->id = c->id;
    memcpy(k->key_hash, c->hash, GW_SHA256_LEN);
    k->group_id = c->group_id;
    k->enabled = c->enabled != 0;
    k->expires_at = c->expires_at;
    k->rpm_limit = c->rpm;
    k->tpm_limit = c->tpm;
    k->concurrency_limit = c->concurrency;
    return my_take_models(&c->models, &k->allowed_models, &k->n_allowed_models);
}

static gw_err
my_snap_group_row(void *arg)
{
    struct my_snap_ctx *c = arg;
    struct gw_wire_group *g;

    c->out->groups = my_grow(c->out->groups, c->out->n_groups, &c->cap, sizeof(*c->out->groups));
    g = &c->out->groups[c->out->n_groups++];
    memset(g, 0, sizeof(*g));
    g->id = c->id;
    g->name = c->name;
    g->mode = c->mode;
    g->pool_id = c->pool_id;
    c->name = c->mode = NULL;
    return GW_OK;
}

static gw_err
my_snap_account_row(void *arg)
{
    struct my_snap_ctx *c = arg;
    struct gw_wire_account *a;

    c->out->accounts =
        my_grow(c->out->accounts, c->out->n_accounts, &c->cap, sizeof(*c->out->accounts));
    a = &c->out->accounts[c->out->n_accounts++];
    memset(a, 0, sizeof(*a));
    a->id = c->id;
    a->name = c->name;
    a->kind = c->kind;
    a->base_url = c->base_url;
    a->credential = (uint8_t *)c->credential;
    a->credential_len = c->credential_len;
    a->priority = c->priority;
    a->weight = c->weight;
    a->enabled = c->enabled != 0;
    a->max_concurrency = c->max_concurrency;
    a->cooldown_until_ms = c->cooldown_until_ms;
    if (c->proxy != NULL && c->proxy[0] != '\0') {
        a->proxy = c->proxy;
        c->proxy = NULL;
    }
    c->name = c->kind = c->base_url = c->credential = NULL;
    free(c->proxy);
    c->proxy = NULL;
    return my_take_models(&c->models, &a->models, &a->n_models);
}

static gw_err
my_snap_binding_row(void *arg)
{
    struct my_snap_ctx *c = arg;
    struct gw_wire_binding *b;

    c->out->bindings =
        my_grow(c->out->bindings, c->out->n_bindings, &c->cap, sizeof(*c->out->bindings));
    b = &c->out->bindings[c->out->n_bindings++];
    b->group_id = c->group_id;
    b->account_id = c->account_id;
    return GW_OK;
}

static gw_err
my_snap_pool_row(void *arg)
{
    struct my_snap_ctx *c = arg;
    struct gw_wire_pool *pl;

    c->out->pools = my_grow(c->out->pools, c->out->n_pools, &c->cap, sizeof(*c->out->pools));
    pl = &c->out->pools[c->out->n_pools++];
    memset(pl, 0, sizeof(*pl));
    pl->id = c->id;
    pl->name = c->name;
    c->name = NULL;
    return GW_OK;
}

/* Frees what a failed row left in the scratch fields. */
static void
my_snap_ctx_fini(struct my_snap_ctx *c)
{
    free(c->name);
    free(c->kind);
    free(c->base_url);
    if (c->credential != NULL)
        explicit_bzero(c->credential, c->credential_len);
    free(c->credential);
    free(c->models);
    free(c->proxy);
    free(c->mode);
    c->name = c->kind = c->base_url = c->credential = c->models = c->proxy = c->mode = NULL;
}

static gw_err
my_snapshot_rows(struct my_priv *p, struct gw_wire_snapshot *out)
{
    struct my_members_ctx m;
    struct my_snap_ctx c;
    struct my_binds col;
    size_t pos = 0;
    gw_err rv;

    memset(&c, 0, sizeof(c));
    c.out = out;
    memset(&col, 0, sizeof(col));
    my_r_u64(&col, &c.id);
    /* BINARY(32) always returns exactly 32 bytes. */
    my_add(&col, MYSQL_TYPE_BLOB, c.hash, sizeof(c.hash), MY_K_PLAIN);
    my_r_u64(&col, &c.group_id);
    my_r_i32(&col, &c.enabled);
    my_r_i64(&col, &c.expires_at);
    my_r_u32(&col, &c.rpm);
    my_r_u32(&col, &c.tpm);
    my_r_u32(&col, &c.concurrency);
    my_r_var(&col, &c.models, NULL, 1);
    rv = my_each(p, MY_SNAP_KEYS, NULL, &col, my_snap_key_row, &c);
    my_snap_ctx_fini(&c);
    if (rv != GW_OK)
        return rv;

    c.cap = 0;
    memset(&col, 0, sizeof(col));
    my_r_u64(&col, &c.id);
    my_r_var(&col, &c.name, NULL, 1);
    my_r_var(&col, &c.mode, NULL, 1);
    my_r_u64(&col, &c.pool_id);
    rv = my_each(p, MY_SNAP_GROUPS, NULL, &col, my_snap_group_row, &c);
    my_snap_ctx_fini(&c);
    if (rv != GW_OK)
        return rv;

    c.cap = 0;
    memset(&col, 0, sizeof(col));
    my_r_u64(&col, &c.id);
    my_r_var(&col, &c.name, NULL, 1);
    my_r_var(&col, &c.kind, NULL, 1);
    my_r_var(&col, &c.base_url, NULL, 1);
    my_r_var(&col, &c.credential, &c.credential_len, 0);
    my_r_i32(&col, &c.priority);
    my_r_i32(&col, &c.weight);
    my_r_i32(&col, &c.enabled);
    my_r_var(&col, &c.models, NULL, 1);
    my_r_u32(&col, &c.max_concurrency);
    my_r_var(&col, &c.proxy, NULL, 1);
    my_r_i64(&col, &c.cooldown_until_ms);
    rv = my_each(p, MY_SNAP_ACCOUNTS, NULL, &col, my_snap_account_row, &c);
    my_snap_ctx_fini(&c);
    if (rv != GW_OK)
        return rv;

    c.cap = 0;
    memset(&col, 0, sizeof(col));
    my_r_u64(&col, &c.group_id);
    my_r_u64(&col, &c.account_id);
    rv = my_each(p, MY_SNAP_BINDINGS, NULL, &col, my_snap_binding_row, &c);
    if (rv != GW_OK)
        return rv;

    c.cap = 0;
    memset(&col, 0, sizeof(col));
    my_r_u64(&col, &c.id);
    my_r_var(&col, &c.name, NULL, 1);
    rv = my_each(p, MY_SNAP_POOLS, NULL, &col, my_snap_pool_row, &c);
    my_snap_ctx_fini(&c);
    if (rv != GW_OK)
        return rv;
    rv = my_pool_members(p, MY_POOL_MEMBERS, 0, &m);
    for (size_t i = 0; rv == GW_OK && i < out->n_pools; i++)
        my_take_members(m.arr, m.n, &pos, out->pools[i].id, &out->pools[i].account_ids,
                        &out->pools[i].n_account_ids);
    free(m.arr);
    return rv;
}

/* One consistent read view, so the version and the rows agree. The wrapper
 * frees a partial result on failure. */
static gw_err
my_snapshot_load(void *priv, struct gw_wire_snapshot *out)
{
    struct my_priv *p = priv;
    struct my_binds col = {0};
    int found = 0;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_sql_plain(p, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
    if (rv != GW_OK)
        return rv;
    my_r_u64(&col, &out->version);
    rv = my_one(p, MY_CONFIG_VERSION, NULL, &col, &found);
    if (rv == GW_OK && !found)
        rv = GW_ESTORE;
    if (rv == GW_OK)
        rv = my_snapshot_rows(p, out);
    if (rv == GW_OK)
        rv = my_commit(p);
    if (rv != GW_OK)
        my_rollback(p);
    return rv;
}

/* ---- prices ------------------------------------------------------------- */

struct my_price_ctx {
    struct hub_price cur;
    struct hub_price *arr;
    size_t n, cap;
};

static gw_err
my_price_row(void *arg)
{
    struct my_price_ctx *c = arg;

    c->arr = my_grow(c->arr, c->n, &c->cap, sizeof(*c->arr));
    c->arr[c->n++] = c->cur;
    return GW_OK;
}

static gw_err
my_prices_list(void *priv, struct hub_price **out, size_t *n_out)
{
    struct my_priv *p = priv;
    struct my_price_ctx c;
    struct my_binds col = {0};
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    memset(&c, 0, sizeof(c));
    my_r_str(&col, c.cur.model_prefix, sizeof(c.cur.model_prefix));
    my_r_i64(&col, &c.cur.input);
    my_r_i64(&col, &c.cur.output);
    my_r_i64(&col, &c.cur.cache_write_5m);
    my_r_i64(&col, &c.cur.cache_write_1h);
    my_r_i64(&col, &c.cur.cache_read);
    rv = my_each(p, MY_PRICES_LIST, NULL, &col, my_price_row, &c);
    *out = c.arr;
    *n_out = c.n;
    return rv;
}

/* ---- usage -------------------------------------------------------------- */

static gw_err
my_edge_seq(struct my_priv *p, enum my_stmt id, const char *edge_id, uint64_t *out)
{
    struct my_binds par = {0}, col = {0};
    uint64_t v = 0;
    int found = 0;
    gw_err rv;

    my_p_str(&par, edge_id);
    my_r_u64(&col, &v);
    rv = my_one(p, id, &par, &col, &found);
    *out = found ? v : 0;
    return rv;
}

/* "INSERT INTO usage_log (...) VALUES (?,...),(?,...)..." for n rows. */
static char *
my_usage_insert_sql(size_t n, size_t *len_out)
{
    struct gw_buf b = GW_BUF_INIT;

    gw_buf_append_str(&b, "INSERT INTO usage_log (" MY_USAGE_COLS ") VALUES ");
    for (size_t i = 0; i < n; i++)
        gw_buf_append_str(&b, i == 0 ? "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                                     : ",(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    return gw_buf_steal(&b, len_out);
}

static void
my_ubind(MYSQL_BIND *b, unsigned long *len, enum enum_field_types type, const void *buf,
         unsigned long n, int is_unsigned)
{
    memset(b, 0, sizeof(*b));
    b->buffer_type = type;
    b->buffer = (void *)buf;
    b->buffer_length = n;
    *len = n;
    b->length = len;
    b->is_unsigned = (my_bool)is_unsigned;
}

/* Binds rows [0, n) of recs into p->ubind. Points at the caller's memory:
 * nothing is copied until the execute. */
static void
my_usage_bind(struct my_priv *p, const char *edge_id, const struct gw_usage_record *recs,
              const int64_t *costs, size_t n)
{
    static const int32_t flag_on = 1, flag_off = 0;
    unsigned long edge_len = (unsigned long)strlen(edge_id);

    for (size_t i = 0; i < n; i++) {
        const struct gw_usage_record *r = &recs[i];
        MYSQL_BIND *b = &p->ubind[i * MY_USAGE_NCOLS];
        unsigned long *l = &p->ulen[i * MY_USAGE_NCOLS];
        const int64_t *cost = costs != NULL && costs[i] >= 0 ? &costs[i] : NULL;

        my_ubind(&b[0], &l[0], MYSQL_TYPE_STRING, r->request_id,
                 (unsigned long)strnlen(r->request_id, sizeof(r->request_id)), 0);
        my_ubind(&b[1], &l[1], MYSQL_TYPE_STRING, edge_id, edge_len, 0);
        my_ubind(&b[2], &l[2], MYSQL_TYPE_LONGLONG, &r->key_id, 0, 1);
        my_ubind(&b[3], &l[3], MYSQL_TYPE_LONGLONG, &r->account_id, 0, 1);
        my_ubind(&b[4], &l[4], MYSQL_TYPE_STRING, r->model,
                 (unsigned long)strnlen(r->model, sizeof(r->model)), 0);
        my_ubind(&b[5], &l[5], MYSQL_TYPE_STRING, r->dialect,
                 (unsigned long)strnlen(r->dialect, sizeof(r->dialect)), 0);
        my_ubind(&b[6], &l[6], MYSQL_TYPE_LONGLONG, &r->input_tokens, 0, 1);
        my_ubind(&b[7], &l[7], MYSQL_TYPE_LONGLONG, &r->output_tokens, 0, 1);
        my_ubind(&b[8], &l[8], MYSQL_TYPE_LONGLONG, &r->cache_read_tokens, 0, 1);
        my_ubind(&b[9], &l[9], MYSQL_TYPE_LONGLONG, &r->cache_write_5m_tokens, 0, 1);
        my_ubind(&b[10], &l[10], MYSQL_TYPE_LONGLONG, &r->cache_write_1h_tokens, 0, 1);
        my_ubind(&b[11], &l[11], MYSQL_TYPE_LONGLONG, &r->reasoning_tokens, 0, 1);
        my_ubind(&b[12], &l[12], MYSQL_TYPE_LONG, &r->status, 0, 1);
        my_ubind(&b[13], &l[13], MYSQL_TYPE_LONG, &r->latency_ms, 0, 1);
        my_ubind(&b[14], &l[14], MYSQL_TYPE_LONGLONG, &r->time_ms, 0, 0);
        my_ubind(&b[15], &l[15], MYSQL_TYPE_LONG, r->partial ? &flag_on : &flag_off, 0, 0);
        if (cost != NULL)
            my_ubind(&b[16], &l[16], MYSQL_TYPE_LONGLONG, cost, 0, 0);
        else
            my_ubind(&b[16], &l[16], MYSQL_TYPE_NULL, NULL, 0, 0);
    }
}

static gw_err
my_usage_insert(struct my_priv *p, MYSQL_STMT *st, const struct gw_wire_usage_batch *batch,
                size_t from, size_t n, const int64_t *costs)
{
    my_usage_bind(p, batch->edge_id, &batch->records[from], costs != NULL ? &costs[from] : NULL, n);
    if (mysql_stmt_bind_param(st, p->ubind) != 0)
        return my_stmt_fail(p, st, "usage bind");
    if (mysql_stmt_execute(st) != 0)
        return my_stmt_fail(p, st, "usage insert");
    return GW_OK;
}

static gw_err
my_usage_rows(struct my_priv *p, const struct gw_wire_usage_batch *batch, const int64_t *costs)
{
    size_t full = batch->n_records / MY_USAGE_CHUNK;
    size_t tail = batch->n_records % MY_USAGE_CHUNK;
    MYSQL_STMT *st = NULL;
    char *sql;
    size_t len = 0;
    gw_err rv = GW_OK;

    if (full > 0 && p->usage_chunk == NULL) {
        sql = my_usage_insert_sql(MY_USAGE_CHUNK, &len);
        rv = my_prepare_sql(p, sql, len, &p->usage_chunk);
        free(sql);
        if (rv != GW_OK)
            return rv;
    }
    for (size_t c = 0; c < full; c++) {
        rv = my_usage_insert(p, p->usage_chunk, batch, c * MY_USAGE_CHUNK, MY_USAGE_CHUNK, costs);
        if (rv != GW_OK)
            return rv;
    }
    if (tail == 0)
        return GW_OK;
    /* The odd-sized rest gets a statement of its own size, used once. */
    sql = my_usage_insert_sql(tail, &len);
    rv = my_prepare_sql(p, sql, len, &st);
    free(sql);
    if (rv != GW_OK)
        return rv;
    rv = my_usage_insert(p, st, batch, full * MY_USAGE_CHUNK, tail, costs);
    mysql_stmt_close(st);
    return rv;
}

static gw_err
my_usage_apply(void *priv, const struct gw_wire_usage_batch *batch, const int64_t *costs,
               int *duplicate)
{
    struct my_priv *p = priv;
    struct my_binds par = {0};
    uint64_t last = 0;
    uint64_t seq = batch->seq;
    gw_err rv;

    *duplicate = 0;
    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    /* Make sure the row exists, then hold its lock until the commit, so one
     * batch of an edge is applied at a time even across hubs. */
    my_p_str(&par, batch->edge_id);
    rv = my_run(p, MY_EDGE_SEQ_ENSURE, &par, NULL);
    if (rv != GW_OK)
        goto fail;
    rv = my_edge_seq(p, MY_EDGE_SEQ_LOCK, batch->edge_id, &last);
    if (rv != GW_OK)
        goto fail;
    if (seq <= last) {
        *duplicate = 1;
        my_rollback(p);
        return GW_OK;
    }
    rv = my_usage_rows(p, batch, costs);
    if (rv != GW_OK)
        goto fail;
    if (batch->n_account_events > 0) {
        int64_t now_ms = my_now_ms();

        for (size_t i = 0; i < batch->n_account_events && rv == GW_OK; i++)
            rv = my_account_event(p, &batch->account_events[i], now_ms);
        if (rv != GW_OK)
            goto fail;
    }
    par.n = 0;
    my_p_u64(&par, &seq);
    my_p_str(&par, batch->edge_id);
    rv = my_run(p, MY_EDGE_SEQ_SET, &par, NULL);
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    return GW_OK;
fail:
    my_rollback(p);
    return rv;
}

static gw_err
my_edge_last_seq(void *priv, const char *edge_id, uint64_t *out)
{
    struct my_priv *p = priv;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    return my_edge_seq(p, MY_EDGE_SEQ_GET, edge_id, out);
}

struct my_usage_ctx {
    struct hub_usage_row cur;
    int32_t partial;
    struct hub_usage_row *arr;
    size_t n, max;
};

static gw_err
my_usage_row(void *arg)
{
    struct my_usage_ctx *c = arg;

    if (c->n >= c->max)
        return GW_OK;
    c->cur.rec.partial = c->partial != 0;
    c->arr[c->n++] = c->cur;
    return GW_OK;
}

static gw_err
my_usage_list(void *priv, const struct hub_usage_filter *f, struct hub_usage_row **rows,
              size_t *n_rows)
{
    struct my_priv *p = priv;
    struct my_usage_ctx c;
    struct my_binds par = {0}, col = {0};
    struct gw_usage_record *r;
    uint64_t key_id = f->key_id, limit = f->limit, offset = f->offset;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    memset(&c, 0, sizeof(c));
    r = &c.cur.rec;
    if (key_id != 0)
        my_p_u64(&par, &key_id);
    my_p_u64(&par, &limit);
    my_p_u64(&par, &offset);
    my_r_u64(&col, &c.cur.id);
    my_r_str(&col, r->request_id, sizeof(r->request_id));
    my_r_str(&col, c.cur.edge_id, sizeof(c.cur.edge_id));
    my_r_u64(&col, &r->key_id);
    my_r_u64(&col, &r->account_id);
    my_r_str(&col, r->model, sizeof(r->model));
    my_r_str(&col, r->dialect, sizeof(r->dialect));
    my_r_u64(&col, &r->input_tokens);
    my_r_u64(&col, &r->output_tokens);
    my_r_u64(&col, &r->cache_read_tokens);
    my_r_u64(&col, &r->cache_write_5m_tokens);
    my_r_u64(&col, &r->cache_write_1h_tokens);
    my_r_u64(&col, &r->reasoning_tokens);
    my_r_u32(&col, &r->status);
    my_r_u32(&col, &r->latency_ms);
    my_r_i64(&col, &r->time_ms);
    my_r_i32(&col, &c.partial);
    my_r_cost(&col, &c.cur.cost_micros);
    /* The wrapper clamped the limit, so this allocation is bounded. */
    c.max = f->limit;
    c.arr = gw_xcalloc(c.max, sizeof(*c.arr));
    rv = my_each(p, key_id != 0 ? MY_USAGE_LIST_KEY : MY_USAGE_LIST_ALL, &par, &col, my_usage_row,
                 &c);
    if (rv != GW_OK || c.n == 0) {
        free(c.arr);
        c.arr = NULL;
        c.n = 0;
    }
    *rows = c.arr;
    *n_rows = c.n;
    return rv;
}

/* ---- replication -------------------------------------------------------- */

struct my_change_ctx {
    struct hub_change_ref cur;
    struct hub_change_ref *arr;
    size_t n, cap;
};

static gw_err
my_change_row(void *arg)
{
    struct my_change_ctx *c = arg;

    c->arr = my_grow(c->arr, c->n, &c->cap, sizeof(*c->arr));
    c->arr[c->n++] = c->cur;
    return GW_OK;
}

static gw_err
my_change_log_since(void *priv, uint64_t from, size_t limit, struct hub_change_ref **rows,
                    size_t *n_rows, uint64_t *oldest)
{
    struct my_priv *p = priv;
    struct my_binds par = {0}, col = {0};
    struct my_change_ctx c;
    uint64_t lim = limit;
    int found = 0;
    gw_err rv;

    memset(&c, 0, sizeof(c));
    *rows = NULL;
    *n_rows = 0;
    *oldest = 0;
    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    /* One consistent read view for both queries. */
    rv = my_begin(p);
    if (rv != GW_OK)
        return rv;
    my_r_u64(&col, oldest);
    rv = my_one(p, MY_CHANGES_OLDEST, NULL, &col, &found);
    if (rv != GW_OK)
        goto fail;
    col.n = 0;
    my_p_u64(&par, &from);
    my_p_u64(&par, &lim);
    my_r_u64(&col, &c.cur.version);
    my_r_str(&col, c.cur.entity, sizeof(c.cur.entity));
    my_r_u64(&col, &c.cur.entity_id);
    my_r_u64(&col, &c.cur.group_id);
    my_r_u64(&col, &c.cur.account_id);
    my_r_u64(&col, &c.cur.pool_id);
    rv = my_each(p, MY_CHANGES_SINCE, &par, &col, my_change_row, &c);
    if (rv != GW_OK)
        goto fail;
    rv = my_commit(p);
    if (rv != GW_OK)
        goto fail;
    *rows = c.arr;
    *n_rows = c.n;
    return GW_OK;
fail:
    my_rollback(p);
    free(c.arr);
    return rv;
}

static gw_err
my_change_log_prune(void *priv, uint64_t below)
{
    struct my_priv *p = priv;
    struct my_binds par = {0};
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    my_p_u64(&par, &below);
    return my_run(p, MY_CHANGES_PRUNE, &par, NULL);
}

/* ---- edges -------------------------------------------------------------- */

struct my_edge_row {
    struct hub_edge e;
    int32_t trusted;
    char *secret;
    size_t secret_len;
};

static void
my_edge_cols(struct my_binds *col, struct my_edge_row *r)
{
    my_r_str(col, r->e.id, sizeof(r->e.id));
    my_r_str(col, r->e.name, sizeof(r->e.name));
    my_r_str(col, r->e.region, sizeof(r->e.region));
    my_r_var(col, &r->secret, &r->secret_len, 0);
    my_r_i32(col, &r->trusted);
    my_r_i64(col, &r->e.created_at);
    my_r_i64(col, &r->e.revoked_at);
    my_r_i64(col, &r->e.last_seen_ms);
    my_r_i64(col, &r->e.heartbeat_ms);
    my_r_str(col, r->e.version, sizeof(r->e.version));
    my_r_u64(col, &r->e.snapshot_version);
    my_r_str(col, r->e.snapshot_source, sizeof(r->e.snapshot_source));
    my_r_u64(col, &r->e.requests_total);
    my_r_u64(col, &r->e.errors_total);
    my_r_u64(col, &r->e.usage_pending);
    my_r_i64(col, &r->e.uptime_s);
    my_r_u64(col, &r->e.prev_requests_total);
    my_r_u64(col, &r->e.prev_errors_total);
    my_r_i64(col, &r->e.prev_heartbeat_ms);
}

/* Moves a fetched row into out and readies r for the next fetch. */
static void
my_edge_take(struct my_edge_row *r, struct hub_edge *out)
{
    *out = r->e;
    out->trusted = r->trusted != 0;
    out->secret_sealed = (uint8_t *)r->secret;
    out->secret_sealed_len = r->secret != NULL ? r->secret_len : 0;
    r->secret = NULL;
    r->secret_len = 0;
}

static gw_err
my_edge_create(void *priv, const struct hub_edge *e)
{
    struct my_priv *p = priv;
    struct my_binds par = {0};
    int32_t trusted = e->trusted ? 1 : 0;
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    my_p_str(&par, e->id);
    my_p_str(&par, e->name);
    my_p_str(&par, e->region);
    if (e->secret_sealed != NULL)
        my_p_blob(&par, e->secret_sealed, e->secret_sealed_len);
    else
        my_p_null(&par);
    my_p_i32(&par, &trusted);
    my_p_i64(&par, &e->created_at);
    my_p_i64(&par, &e->revoked_at);
    my_p_i64(&par, &e->last_seen_ms);
    my_p_i64(&par, &e->heartbeat_ms);
    my_p_str(&par, e->version);
    my_p_u64(&par, &e->snapshot_version);
    my_p_str(&par, e->snapshot_source);
    my_p_u64(&par, &e->requests_total);
    my_p_u64(&par, &e->errors_total);
    my_p_u64(&par, &e->usage_pending);
    my_p_i64(&par, &e->uptime_s);
    my_p_u64(&par, &e->prev_requests_total);
    my_p_u64(&par, &e->prev_errors_total);
    my_p_i64(&par, &e->prev_heartbeat_ms);
    return my_run(p, MY_EDGE_CREATE, &par, NULL);
}

static gw_err
my_edge_get(void *priv, const char *id, struct hub_edge *out)
{
    struct my_priv *p = priv;
    struct my_binds par = {0}, col = {0};
    struct my_edge_row r;
    int found = 0;
    gw_err rv;

    memset(&r, 0, sizeof(r));
    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    my_p_str(&par, id);
    my_edge_cols(&col, &r);
    rv = my_one(p, MY_EDGE_GET, &par, &col, &found);
    if (rv == GW_OK && !found)
        rv = GW_ENOTFOUND;
    if (rv != GW_OK) {
        free(r.secret);
        return rv;
    }
    my_edge_take(&r, out);
    return GW_OK;
}

struct my_edge_list_ctx {
    struct my_edge_row r;
    struct hub_edge *arr;
    size_t n, cap;
};

static gw_err
my_edge_list_row(void *arg)
{
    struct my_edge_list_ctx *c = arg;

    c->arr = my_grow(c->arr, c->n, &c->cap, sizeof(*c->arr));
    my_edge_take(&c->r, &c->arr[c->n++]);
    return GW_OK;
}

static gw_err
my_edge_list(void *priv, struct hub_edge **out, size_t *n_out)
{
    struct my_priv *p = priv;
    struct my_binds col = {0};
    struct my_edge_list_ctx c;
    gw_err rv;

    memset(&c, 0, sizeof(c));
    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    my_edge_cols(&col, &c.r);
    rv = my_each(p, MY_EDGE_LIST, NULL, &col, my_edge_list_row, &c);
    free(c.r.secret);
    if (rv != GW_OK) {
        hub_edges_free(c.arr, c.n);
        return rv;
    }
    *out = c.arr;
    *n_out = c.n;
    return GW_OK;
}

/* The wrapper read the row just before under the store lock, so an UPDATE
 * that matches nothing only means nothing changed. */
static gw_err
my_edge_save(void *priv, const struct hub_edge *e)
{
    struct my_priv *p = priv;
    struct my_binds par = {0};
    gw_err rv;

    rv = my_ready(p);
    if (rv != GW_OK)
        return rv;
    my_p_str(&par, e->name);
    my_p_str(&par, e->region);
    my_p_i64(&par, &e->revoked_at);
    my_p_i64(&par, &e->last_seen_ms);
    my_p_i64(&par, &e->heartbeat_ms);
    my_p_str(&par, e->version);
    my_p_u64(&par, &e->snapshot_version);
    my_p_str(&par, e->snapshot_source);
    my_p_u64(&par, &e->requests_total);
    my_p_u64(&par, &e->errors_total);
    my_p_u64(&par, &e->usage_pending);
    my_p_i64(&par, &e->uptime_s);
    my_p_u64(&par, &e->prev_requests_total);
    my_p_u64(&par, &e->prev_errors_total);
    my_p_i64(&par, &e->prev_heartbeat_ms);
    my_p_str(&par, e->id);
    return my_run(p, MY_EDGE_SAVE, &par, NULL);
}

const struct hub_store_ops hub_store_mysql_ops = {
    .scheme = "mysql",
    .priv_size = sizeof(struct my_priv),
    .open = my_open,
    .close = my_close,
    .migrate = my_migrate,
    .config_version = my_config_version,
    .admin_count = my_admin_count,
    .admin_create = my_admin_create,
    .admin_get = my_admin_get,
    .group_create = my_group_create,
    .group_get = my_group_get,
    .group_list = my_group_list,
    .group_update = my_group_update,
    .account_create = my_account_create,
    .account_get = my_account_get,
    .account_list = my_account_list,
    .account_update = my_account_update,
    .binding_create = my_binding_create,
    .pool_create = my_pool_create,
    .pool_get = my_pool_get,
    .pool_list = my_pool_list,
    .pool_add_account = my_pool_add_account,
    .key_create = my_key_create,
    .key_get = my_key_get,
    .key_list = my_key_list,
    .key_update = my_key_update,
    .key_revoke = my_key_revoke,
    .snapshot_load = my_snapshot_load,
    .prices_list = my_prices_list,
    .usage_apply = my_usage_apply,
    .edge_last_seq = my_edge_last_seq,
    .usage_list = my_usage_list,
    .change_log_since = my_change_log_since,
    .change_log_prune = my_change_log_prune,
    .edge_create = my_edge_create,
    .edge_get = my_edge_get,
    .edge_list = my_edge_list,
    .edge_save = my_edge_save,
};
