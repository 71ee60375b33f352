/* SQLite-backed state; see store.h. */
#include "store.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"

extern const char *const dmsg_schema_migrations[];
extern const size_t dmsg_schema_migration_count;

/* The store runs on the loop thread, so a busy wait stalls the relay: keep it short. An outside
 * writer (a backup, sqlite3 by hand) holding the lock longer gets a clear "busy" error instead. */
#define DEFAULT_BUSY_TIMEOUT_MS 250

/* A row is "live" while it has no expiry or its expiry is still ahead. */
#define LIVE "(expires_at IS NULL OR expires_at > ?1)"

enum stmt_id {
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_DISC_HEAD,
    ST_DISC_UPSERT,
    ST_DISC_GET,
    ST_DISC_DELETE,
    ST_DISC_AVAILABLE,
    ST_DISC_SERVERS,
    ST_DISC_CLIENTS,
    ST_DISC_EXPIRE,
    ST_SETTING_GET,
    ST_SETTING_SET,
    ST_PEER_ADD,
    ST_PEER_REMOVE,
    ST_PEER_REMOVE_SOURCE,
    ST_PEER_LIST_ALL,
    ST_PEER_LIST_SOURCE,
    ST_SAMPLE_PUT,
    ST_SAMPLE_EXPIRE,
    ST_SAMPLE_LIST,
    ST_ROUTE_SETUP_LIST,
    ST_ROUTE_SETUP_GET,
    ST_ROUTE_SETUP_EVENTS,
    ST_ROUTE_SETUP_ADD,
    ST_ROUTE_SETUP_STATE,
    ST_ROUTE_SETUP_EVENT_ADD,
    ST_ROUTE_SETUP_EXPIRE_EVENTS,
    ST_ROUTE_SETUP_EXPIRE,
    ST_ROUTE_SETUP_ABANDON_EVENTS,
    ST_ROUTE_SETUP_ABANDON,
    ST_SYNC_FULL,
    ST_SYNC_NORMAL,
    ST_COUNT
};

/* Prepared once at open and kept for the store's life. */
static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_DISC_HEAD] = "SELECT sequence, timestamp FROM discovery_entries"
                     " WHERE public_key = ?2 AND " LIVE,
    [ST_DISC_UPSERT] =
        "INSERT INTO discovery_entries (public_key, entry_json, sequence, timestamp, is_client,"
        " is_server, available_sessions, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        " ON CONFLICT (public_key) DO UPDATE SET entry_json = excluded.entry_json,"
        " sequence = excluded.sequence, timestamp = excluded.timestamp,"
        " is_client = excluded.is_client, is_server = excluded.is_server,"
        " available_sessions = excluded.available_sessions, expires_at = excluded.expires_at",
    [ST_DISC_GET] = "SELECT entry_json, sequence, timestamp FROM discovery_entries"
                    " WHERE public_key = ?2 AND " LIVE,
    [ST_DISC_DELETE] = "DELETE FROM discovery_entries WHERE public_key = ?1",
    [ST_DISC_AVAILABLE] = "SELECT entry_json FROM discovery_entries"
                          " WHERE is_server = 1 AND available_sessions > 0 AND " LIVE
                          " ORDER BY available_sessions DESC, random() LIMIT ?2",
    [ST_DISC_SERVERS] = "SELECT entry_json FROM discovery_entries WHERE is_server = 1 AND " LIVE
                        " ORDER BY public_key",
    [ST_DISC_CLIENTS] = "SELECT public_key FROM discovery_entries WHERE is_client = 1 AND " LIVE
                        " ORDER BY public_key",
    [ST_DISC_EXPIRE] = "DELETE FROM discovery_entries"
                       " WHERE expires_at IS NOT NULL AND expires_at <= ?1",
    [ST_SETTING_GET] = "SELECT value FROM settings WHERE name = ?1",
    [ST_SETTING_SET] = "INSERT INTO settings (name, value, updated_at) VALUES (?1, ?2, ?3)"
                       " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                       " updated_at = excluded.updated_at",
    [ST_PEER_ADD] = "INSERT INTO peers (public_key, address, source, added_at, note)"
                    " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_PEER_REMOVE] = "DELETE FROM peers WHERE public_key = ?1",
    [ST_PEER_REMOVE_SOURCE] = "DELETE FROM peers WHERE source = ?1",
    [ST_PEER_LIST_ALL] = "SELECT public_key, address, source, added_at, note FROM peers"
                         " ORDER BY public_key",
    [ST_PEER_LIST_SOURCE] = "SELECT public_key, address, source, added_at, note FROM peers"
                            " WHERE source = ?1 ORDER BY public_key",
    [ST_SAMPLE_PUT] = "INSERT OR REPLACE INTO metric_samples (at, name, value) VALUES (?1, ?2, ?3)",
    [ST_SAMPLE_EXPIRE] = "DELETE FROM metric_samples WHERE at < ?1",
    [ST_SAMPLE_LIST] = "SELECT name, at, value FROM metric_samples WHERE at >= ?1"
                       " ORDER BY name, at",
    [ST_ROUTE_SETUP_LIST] =
        "SELECT id, requester, source, destination, hops_fwd, hops_rev, state, error,"
        " started_at, finished_at FROM route_setups WHERE (?1 = 0 OR id < ?1)"
        " AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR requester = ?3)"
        " ORDER BY id DESC LIMIT ?4",
    [ST_ROUTE_SETUP_GET] =
        "SELECT id, requester, source, destination, hops_fwd, hops_rev, state, error,"
        " started_at, finished_at FROM route_setups WHERE id = ?1",
    [ST_ROUTE_SETUP_EVENTS] = "SELECT state, at, detail FROM route_setup_events"
                              " WHERE setup_id = ?1 ORDER BY at, rowid",
    [ST_ROUTE_SETUP_ADD] =
        "INSERT INTO route_setups (requester, source, destination, hops_fwd, hops_rev, state,"
        " error, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', ?7)",
    [ST_ROUTE_SETUP_STATE] = "UPDATE route_setups SET state = ?2, error = ?3,"
                             " finished_at = ?4 WHERE id = ?1",
    [ST_ROUTE_SETUP_EVENT_ADD] =
        "INSERT INTO route_setup_events (setup_id, state, at, detail) VALUES (?1, ?2, ?3, ?4)",
    [ST_ROUTE_SETUP_EXPIRE_EVENTS] =
        "DELETE FROM route_setup_events WHERE setup_id IN (SELECT id FROM route_setups"
        " WHERE finished_at IS NOT NULL AND finished_at < ?1)",
    [ST_ROUTE_SETUP_EXPIRE] =
        "DELETE FROM route_setups WHERE finished_at IS NOT NULL AND finished_at < ?1",
    [ST_ROUTE_SETUP_ABANDON_EVENTS] =
        "INSERT INTO route_setup_events (setup_id, state, at, detail)"
        " SELECT id, 'failed', ?1, ?2 FROM route_setups WHERE finished_at IS NULL",
    [ST_ROUTE_SETUP_ABANDON] = "UPDATE route_setups SET state = 'failed', error = ?2,"
                               " finished_at = ?1 WHERE finished_at IS NULL",
    [ST_SYNC_FULL] = "PRAGMA synchronous = FULL",
    [ST_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
};

struct store {
    sqlite3 *db;
    char *path;
    int busy_timeout_ms;
    bool durable;          /* synchronous=FULL now (see set_durable) */
    int schema_version;
    sqlite3_stmt *stmt[ST_COUNT];
    struct store_error err;
    uint64_t fault_counts[STORE_FAULT_OTHER + 1];
};

/* ---- errors ---- */

static enum store_fault fault_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return STORE_FAULT_LOCKED;
    case SQLITE_READONLY:
    case SQLITE_PERM:
        return STORE_FAULT_READONLY;
    case SQLITE_FULL:
        return STORE_FAULT_FULL;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return STORE_FAULT_CORRUPT;
    case SQLITE_CANTOPEN:
        return STORE_FAULT_CANTOPEN;
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
        return STORE_FAULT_INVALID;
    default:
        return STORE_FAULT_OTHER;
    }
}

static void set_error(struct store_error *err, enum store_fault fault, int rc, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

static void set_error(struct store_error *err, enum store_fault fault, int rc, const char *fmt,
                      ...)
{
    err->fault = fault;
    err->sqlite_code = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* Records an SQLite failure with a message that tells the operator what to do. */
static void describe_failure(struct store_error *err, const char *path, int busy_timeout_ms,
                             int rc, const char *doing, const char *detail)
{
    enum store_fault fault = fault_of(rc);
    switch (fault) {
    case STORE_FAULT_LOCKED:
        set_error(err, fault, rc,
                  "database %s is locked by another process (still busy after %d ms while %s);"
                  " stop the other program using this file, or give this dmsgd its own"
                  " database, then retry", path, busy_timeout_ms, doing);
        break;
    case STORE_FAULT_READONLY:
        set_error(err, fault, rc,
                  "database %s is read-only (while %s); give dmsgd write access to the file"
                  " and to its directory, where the -wal and -shm files are created", path,
                  doing);
        break;
    case STORE_FAULT_FULL:
        set_error(err, fault, rc,
                  "database %s is full (while %s); free space on its filesystem or raise the"
                  " configured size limit", path, doing);
        break;
    case STORE_FAULT_CORRUPT:
        set_error(err, fault, rc,
                  "database %s is corrupt or is not an SQLite database (while %s: %s); move it"
                  " aside so that dmsgd starts with an empty state, or restore a backup", path,
                  doing, detail);
        break;
    case STORE_FAULT_CANTOPEN:
        set_error(err, fault, rc,
                  "cannot open database %s (%s); check that its directory exists and that"
                  " dmsgd may create files there", path, detail);
        break;
    case STORE_FAULT_INVALID:
        set_error(err, fault, rc, "database %s refused a value while %s: %s", path, doing,
                  detail);
        break;
    default:
        set_error(err, fault, rc, "database %s: %s failed: %s", path, doing, detail);
        break;
    }
}

static int map_rc(enum store_fault fault)
{
    return fault == STORE_FAULT_INVALID ? DMSG_EINVAL : DMSG_EIO;
}

/* Records rc as the store's last error and returns the DMSG_E* code for it. */
static int fail(struct store *st, int rc, const char *doing)
{
    describe_failure(&st->err, st->path, st->busy_timeout_ms, rc, doing,
                     sqlite3_errmsg(st->db));
    if ((unsigned)st->err.fault <= STORE_FAULT_OTHER)
        st->fault_counts[st->err.fault]++;
    return map_rc(st->err.fault);
}

static int fail_invalid(struct store *st, const char *what)
{
    set_error(&st->err, STORE_FAULT_INVALID, 0, "database %s: invalid %s", st->path, what);
    return DMSG_EINVAL;
}

const struct store_error *store_last_error(const struct store *st)
{
    return &st->err;
}

int store_schema_version(const struct store *st)
{
    return st->schema_version;
}

/* ---- opening and migrations ---- */

static int exec(struct store *st, const char *sql, const char *doing)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : fail(st, rc, doing);
}

/* Runs a one-row pragma query and copies its first column's text. */
static int pragma_text(struct store *st, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &q, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        int err = fail(st, rc, sql);
        sqlite3_finalize(q);
        return err;
    }
    const unsigned char *text = sqlite3_column_text(q, 0);
    snprintf(out, cap, "%s", text ? (const char *)text : "");
    sqlite3_finalize(q);
    return 0;
}

static int read_user_version(struct store *st, int *version)
{
    char text[32];
    int err = pragma_text(st, "PRAGMA user_version", text, sizeof text);
    if (err)
        return err;
    *version = atoi(text);
    return 0;
}

static int configure_connection(struct store *st, int64_t max_size_bytes)
{
    char mode[32];
    int err = exec(st, "PRAGMA foreign_keys = ON", "enabling foreign keys");
    if (!err) /* the first read of the file: a damaged header shows up here */
        err = read_user_version(st, &st->schema_version);
    if (!err)
        err = pragma_text(st, "PRAGMA journal_mode = WAL", mode, sizeof mode);
    if (err)
        return err;
    if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0) {
        set_error(&st->err, STORE_FAULT_OTHER, 0,
                  "database %s cannot use write-ahead logging (journal mode stays %s); put it"
                  " on a local filesystem", st->path, mode);
        return DMSG_EIO;
    }
    err = exec(st, "PRAGMA synchronous = FULL", "setting synchronous=FULL");
    st->durable = err == 0;
    if (err || max_size_bytes <= 0)
        return err;
    char page_size[32], sql[96];
    err = pragma_text(st, "PRAGMA page_size", page_size, sizeof page_size);
    if (err)
        return err;
    long long pages = max_size_bytes / atoll(page_size);
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", pages > 0 ? pages : 1);
    return pragma_text(st, sql, page_size, sizeof page_size);
}

static int refuse_newer(struct store *st, int version, size_t known)
{
    set_error(&st->err, STORE_FAULT_TOO_NEW, 0,
              "database %s has schema version %d but this dmsgd (" DMSGD_VERSION ") knows"
              " versions up to %zu: it was written by a newer dmsgd; run that version, or"
              " point this one at another database file", st->path, version, known);
    return DMSG_EVERSION;
}

/* Applies the next migration, if any, in one transaction. *done tells when none was left. */
static int migrate_one(struct store *st, const char *const *migrations, size_t count, bool *done)
{
    int version, err = exec(st, "BEGIN IMMEDIATE", "starting a schema migration");
    if (err)
        return err;
    /* Read inside the write lock: another process may have migrated in the meantime. */
    err = read_user_version(st, &version);
    if (!err && version < 0)
        err = refuse_newer(st, version, count);
    if (!err && (size_t)version > count)
        err = refuse_newer(st, version, count);
    *done = !err && (size_t)version == count;
    if (!err && !*done) {
        char doing[64], sql[48];
        snprintf(doing, sizeof doing, "applying schema migration %d", version + 1);
        err = exec(st, migrations[version], doing);
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", version + 1);
        if (!err)
            err = exec(st, sql, doing);
        if (!err)
            err = exec(st, "COMMIT", doing);
        if (!err)
            st->schema_version = version + 1;
    } else if (!err) {
        err = exec(st, "COMMIT", "finishing the schema check");
    }
    if (err && sqlite3_get_autocommit(st->db) == 0)
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return err;
}

static int migrate(struct store *st, const char *const *migrations, size_t count)
{
    if ((size_t)st->schema_version > count)
        return refuse_newer(st, st->schema_version, count);
    bool done = false;
    int err = 0;
    while (!err && !done)
        err = migrate_one(st, migrations, count, &done);
    return err;
}

static int prepare_all(struct store *st)
{
    for (int i = 0; i < ST_COUNT; i++) {
        int rc = sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                    &st->stmt[i], NULL);
        if (rc != SQLITE_OK)
            return fail(st, rc, "preparing statements");
    }
    return 0;
}

static int open_db(struct store *st, const struct store_options *opts)
{
    int rc = sqlite3_open_v2(st->path, &st->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        if (!st->db)
            return DMSG_ENOMEM;
        return fail(st, rc, "opening");
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, st->busy_timeout_ms);
    if (sqlite3_db_readonly(st->db, "main") == 1)
        return fail(st, SQLITE_READONLY, "opening");
    int err = configure_connection(st, opts->max_size_bytes);
    const char *const *migrations = opts->migrations ? opts->migrations : dmsg_schema_migrations;
    size_t count = opts->migrations ? opts->migration_count : dmsg_schema_migration_count;
    if (!err)
        err = migrate(st, migrations, count);
    if (!err)
        err = prepare_all(st);
    return err;
}

int store_open(struct store **out, const char *path, const struct store_options *opts,
               struct store_error *err)
{
    static const struct store_options defaults = {0};
    struct store_error scratch;
    if (!err)
        err = &scratch;
    memset(err, 0, sizeof *err);
    *out = NULL;
    if (!path || !*path) {
        set_error(err, STORE_FAULT_CANTOPEN, 0, "no database path given");
        return DMSG_EINVAL;
    }
    if (!opts)
        opts = &defaults;
    struct store *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        set_error(err, STORE_FAULT_OTHER, 0, "out of memory opening database %s", path);
        return DMSG_ENOMEM;
    }
    st->busy_timeout_ms = opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms
                                                     : DEFAULT_BUSY_TIMEOUT_MS;
    int rc = open_db(st, opts);
    if (rc) {
        *err = st->err;
        store_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

void store_close(struct store *st)
{
    if (!st)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    free(st->path);
    free(st);
}

/* ---- statement helpers ---- */

static sqlite3_stmt *stmt(struct store *st, enum stmt_id id)
{
    sqlite3_stmt *s = st->stmt[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Steps a statement that returns no rows. */
static int run(struct store *st, sqlite3_stmt *s, const char *doing)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail(st, rc, doing);
}

/* Operator changes (peers, settings) are acknowledged only once they are on disk
 * (synchronous=FULL: an fsync per commit). History and soft state (route setups, metric
 * samples, discovery entries) are written on the event loop, many per second: NORMAL spares
 * them the fsync; in WAL mode a power cut may then lose the newest rows, never the file. */
static int set_durable(struct store *st, bool durable)
{
    int err;

    if (st->durable == durable)
        return 0;
    err = run(st, stmt(st, durable ? ST_SYNC_FULL : ST_SYNC_NORMAL), "setting synchronous");
    if (!err)
        st->durable = durable;
    return err;
}

static int begin(struct store *st, const char *doing)
{
    return run(st, stmt(st, ST_BEGIN_IMMEDIATE), doing);
}

static int commit(struct store *st, const char *doing)
{
    return run(st, stmt(st, ST_COMMIT), doing);
}

/* Ends a transaction started by begin(): commits on success, else rolls back keeping err. */
static int finish(struct store *st, int err, const char *doing)
{
    if (!err)
        return commit(st, doing);
    if (sqlite3_get_autocommit(st->db) == 0)
        run(st, stmt(st, ST_ROLLBACK), "rolling back");
    return err;
}

static int bind_text(sqlite3_stmt *s, int idx, const char *text, size_t len)
{
    return sqlite3_bind_text(s, idx, text, (int)len, SQLITE_STATIC);
}

static int64_t u64_bits(uint64_t v)
{
    int64_t s;
    memcpy(&s, &v, sizeof s);
    return s;
}

static uint64_t u64_from_bits(int64_t s)
{
    uint64_t v;
    memcpy(&v, &s, sizeof v);
    return v;
}

static bool is_lower_hex_pk(const char *pk)
{
    if (!pk || strlen(pk) != STORE_PK_HEX_LEN)
        return false;
    for (const char *c = pk; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return false;
    return true;
}

/* Calls visit for each row's first column; returns 0, the visitor's value or an error. */
static int visit_rows(struct store *st, sqlite3_stmt *s, store_visit_text_fn visit, void *user,
                      const char *doing)
{
    int rc = SQLITE_DONE, stop = 0;
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW)
        stop = visit(user, (const char *)sqlite3_column_text(s, 0),
                     (size_t)sqlite3_column_bytes(s, 0));
    sqlite3_reset(s);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? 0 : fail(st, rc, doing);
}

/* ---- discovery entries ---- */

/* Compares e with the live stored entry of its key, if any. */
static int check_iteration(struct store *st, const struct store_disc_entry *e, int64_t now,
                           bool *created)
{
    sqlite3_stmt *s = stmt(st, ST_DISC_HEAD);
    sqlite3_bind_int64(s, 1, now);
    bind_text(s, 2, e->public_key, STORE_PK_HEX_LEN);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        *created = true;
        sqlite3_reset(s);
        return 0;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return fail(st, rc, "reading a discovery entry");
    }
    uint64_t old_sequence = u64_from_bits(sqlite3_column_int64(s, 0));
    int64_t old_timestamp = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    *created = false;
    if (e->sequence <= old_sequence)
        return DMSG_ENONCE;
    if (e->timestamp_ns < old_timestamp)
        return DMSG_EREPLAY;
    return 0;
}

static int upsert_entry(struct store *st, const struct store_disc_entry *e)
{
    sqlite3_stmt *s = stmt(st, ST_DISC_UPSERT);
    bind_text(s, 1, e->public_key, STORE_PK_HEX_LEN);
    bind_text(s, 2, e->entry_json, e->entry_json_len);
    sqlite3_bind_int64(s, 3, u64_bits(e->sequence));
    sqlite3_bind_int64(s, 4, e->timestamp_ns);
    sqlite3_bind_int(s, 5, e->is_client);
    sqlite3_bind_int(s, 6, e->is_server);
    sqlite3_bind_int64(s, 7, e->available_sessions);
    if (e->expires_at > 0)
        sqlite3_bind_int64(s, 8, e->expires_at);
    else
        sqlite3_bind_null(s, 8);
    return run(st, s, "writing a discovery entry");
}

int store_disc_put(struct store *st, const struct store_disc_entry *e, int64_t now,
                   bool *created)
{
    int sync_err = set_durable(st, false);
    if (sync_err)
        return sync_err;
    bool fresh = false;
    if (!e || !is_lower_hex_pk(e->public_key))
        return fail_invalid(st, "discovery entry public key");
    if (!e->entry_json || e->entry_json_len == 0 || e->entry_json_len > INT32_MAX)
        return fail_invalid(st, "discovery entry JSON");
    int err = begin(st, "writing a discovery entry");
    if (err)
        return err;
    err = check_iteration(st, e, now, &fresh);
    if (!err)
        err = upsert_entry(st, e);
    err = finish(st, err, "writing a discovery entry");
    if (!err && created)
        *created = fresh;
    return err;
}

static char *copy_text(const unsigned char *text, size_t len)
{
    char *out = malloc(len + 1);
    if (out) {
        memcpy(out, text, len);
        out[len] = '\0';
    }
    return out;
}

int store_disc_get(struct store *st, const char *public_key, int64_t now, char **json,
                   size_t *json_len, uint64_t *sequence, int64_t *timestamp_ns)
{
    if (!is_lower_hex_pk(public_key))
        return fail_invalid(st, "discovery entry public key");
    sqlite3_stmt *s = stmt(st, ST_DISC_GET);
    sqlite3_bind_int64(s, 1, now);
    bind_text(s, 2, public_key, STORE_PK_HEX_LEN);
    int rc = sqlite3_step(s), err = 0;
    if (rc == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        char *text = copy_text(sqlite3_column_text(s, 0), len);
        if (sequence)
            *sequence = u64_from_bits(sqlite3_column_int64(s, 1));
        if (timestamp_ns)
            *timestamp_ns = sqlite3_column_int64(s, 2);
        if (!text)
            err = DMSG_ENOMEM;
        if (json)
            *json = text;
        else
            free(text);
        if (json_len)
            *json_len = len;
    } else {
        err = rc == SQLITE_DONE ? DMSG_ENOTFOUND : fail(st, rc, "reading a discovery entry");
    }
    sqlite3_reset(s);
    return err;
}

int store_disc_delete(struct store *st, const char *public_key)
{
    int sync_err = set_durable(st, false);
    if (sync_err)
        return sync_err;
    if (!is_lower_hex_pk(public_key))
        return fail_invalid(st, "discovery entry public key");
    sqlite3_stmt *s = stmt(st, ST_DISC_DELETE);
    bind_text(s, 1, public_key, STORE_PK_HEX_LEN);
    int err = run(st, s, "deleting a discovery entry");
    if (!err && sqlite3_changes(st->db) == 0)
        err = DMSG_ENOTFOUND;
    return err;
}

int store_disc_list_available(struct store *st, int64_t now, size_t limit,
                              store_visit_text_fn visit, void *user)
{
    sqlite3_stmt *s = stmt(st, ST_DISC_AVAILABLE);
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int64(s, 2, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    return visit_rows(st, s, visit, user, "listing available servers");
}

int store_disc_list_servers(struct store *st, int64_t now, store_visit_text_fn visit, void *user)
{
    sqlite3_stmt *s = stmt(st, ST_DISC_SERVERS);
    sqlite3_bind_int64(s, 1, now);
    return visit_rows(st, s, visit, user, "listing servers");
}

int store_disc_list_clients(struct store *st, int64_t now, store_visit_text_fn visit, void *user)
{
    sqlite3_stmt *s = stmt(st, ST_DISC_CLIENTS);
    sqlite3_bind_int64(s, 1, now);
    return visit_rows(st, s, visit, user, "listing client entries");
}

int store_disc_expire(struct store *st, int64_t now, int64_t *removed)
{
    int sync_err = set_durable(st, false);
    if (sync_err)
        return sync_err;
    sqlite3_stmt *s = stmt(st, ST_DISC_EXPIRE);
    sqlite3_bind_int64(s, 1, now);
    int err = run(st, s, "expiring discovery entries");
    if (!err && removed)
        *removed = sqlite3_changes64(st->db);
    return err;
}

/* ---- settings ---- */

int store_setting_get(struct store *st, const char *name, char **json)
{
    if (!name || !*name)
        return fail_invalid(st, "setting name");
    sqlite3_stmt *s = stmt(st, ST_SETTING_GET);
    bind_text(s, 1, name, strlen(name));
    int rc = sqlite3_step(s), err = 0;
    if (rc == SQLITE_ROW) {
        *json = copy_text(sqlite3_column_text(s, 0), (size_t)sqlite3_column_bytes(s, 0));
        err = *json ? 0 : DMSG_ENOMEM;
    } else {
        err = rc == SQLITE_DONE ? DMSG_ENOTFOUND : fail(st, rc, "reading a setting");
    }
    sqlite3_reset(s);
    return err;
}

static bool is_one_json_value(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    json_decref(v);
    return v != NULL;
}

int store_setting_set(struct store *st, const char *name, const char *json_text, int64_t now)
{
    int sync_err = set_durable(st, true);
    if (sync_err)
        return sync_err;
    if (!name || !*name)
        return fail_invalid(st, "setting name");
    if (!json_text || !is_one_json_value(json_text))
        return fail_invalid(st, "setting value (not one JSON value)");
    sqlite3_stmt *s = stmt(st, ST_SETTING_SET);
    bind_text(s, 1, name, strlen(name));
    bind_text(s, 2, json_text, strlen(json_text));
    sqlite3_bind_int64(s, 3, now);
    return run(st, s, "writing a setting");
}

/* ---- peers ---- */

static const char *const peer_source_names[] = {
    [STORE_PEER_CONFIG] = "config",
    [STORE_PEER_ADMIN] = "admin",
    [STORE_PEER_DISCOVERED] = "discovered",
};

const char *store_peer_source_name(enum store_peer_source source)
{
    if ((unsigned)source >= sizeof peer_source_names / sizeof peer_source_names[0])
        return "unknown";
    return peer_source_names[source];
}

static bool source_from_name(const char *name, enum store_peer_source *out)
{
    for (size_t i = 0; i < sizeof peer_source_names / sizeof peer_source_names[0]; i++)
        if (name && strcmp(name, peer_source_names[i]) == 0) {
            *out = (enum store_peer_source)i;
            return true;
        }
    return false;
}

static bool is_printable(const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return false;
    return true;
}

static int check_peer(struct store *st, const struct store_peer *p)
{
    if (!p || !is_lower_hex_pk(p->public_key))
        return fail_invalid(st, "peer public key (want 66 lowercase hex characters)");
    size_t alen = p->address ? strlen(p->address) : 0;
    if (alen < 3 || alen > 261 || !is_printable(p->address))
        return fail_invalid(st, "peer address (want host:port, 3 to 261 characters)");
    if ((unsigned)p->source > STORE_PEER_DISCOVERED)
        return fail_invalid(st, "peer source");
    if (p->note && !is_printable(p->note))
        return fail_invalid(st, "peer note (control characters)");
    return 0;
}

int store_peer_add(struct store *st, const struct store_peer *peer)
{
    int sync_err = set_durable(st, true);
    if (sync_err)
        return sync_err;
    int err = check_peer(st, peer);
    if (err)
        return err;
    const char *source = store_peer_source_name(peer->source);
    const char *note = peer->note ? peer->note : "";
    sqlite3_stmt *s = stmt(st, ST_PEER_ADD);
    bind_text(s, 1, peer->public_key, STORE_PK_HEX_LEN);
    bind_text(s, 2, peer->address, strlen(peer->address));
    bind_text(s, 3, source, strlen(source));
    sqlite3_bind_int64(s, 4, peer->added_at);
    bind_text(s, 5, note, strlen(note));
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        set_error(&st->err, STORE_FAULT_INVALID, rc, "peer %s is already present",
                  peer->public_key);
        return DMSG_EEXIST;
    }
    return rc == SQLITE_DONE ? 0 : fail(st, rc, "adding a peer");
}

int store_peer_remove(struct store *st, const char *public_key)
{
    int sync_err = set_durable(st, true);
    if (sync_err)
        return sync_err;
    if (!is_lower_hex_pk(public_key))
        return fail_invalid(st, "peer public key");
    sqlite3_stmt *s = stmt(st, ST_PEER_REMOVE);
    bind_text(s, 1, public_key, STORE_PK_HEX_LEN);
    int err = run(st, s, "removing a peer");
    if (!err && sqlite3_changes(st->db) == 0)
        err = DMSG_ENOTFOUND;
    return err;
}

int store_peer_remove_source(struct store *st, enum store_peer_source source, int64_t *removed)
{
    int sync_err = set_durable(st, true);
    if (sync_err)
        return sync_err;
    if ((unsigned)source > STORE_PEER_DISCOVERED)
        return fail_invalid(st, "peer source");
    const char *name = store_peer_source_name(source);
    sqlite3_stmt *s = stmt(st, ST_PEER_REMOVE_SOURCE);
    bind_text(s, 1, name, strlen(name));
    int err = run(st, s, "removing peers");
    if (!err && removed)
        *removed = sqlite3_changes64(st->db);
    return err;
}

static int visit_peer_row(sqlite3_stmt *s, store_visit_peer_fn visit, void *user)
{
    struct store_peer p = {
        .public_key = (const char *)sqlite3_column_text(s, 0),
        .address = (const char *)sqlite3_column_text(s, 1),
        .added_at = sqlite3_column_int64(s, 3),
        .note = (const char *)sqlite3_column_text(s, 4),
    };
    if (!source_from_name((const char *)sqlite3_column_text(s, 2), &p.source))
        return DMSG_EIO; /* the CHECK constraint makes this unreachable */
    return visit(user, &p);
}

int store_peer_list(struct store *st, const enum store_peer_source *source,
                    store_visit_peer_fn visit, void *user)
{
    sqlite3_stmt *s;
    if (source) {
        if ((unsigned)*source > STORE_PEER_DISCOVERED)
            return fail_invalid(st, "peer source");
        const char *name = store_peer_source_name(*source);
        s = stmt(st, ST_PEER_LIST_SOURCE);
        bind_text(s, 1, name, strlen(name));
    } else {
        s = stmt(st, ST_PEER_LIST_ALL);
    }
    int rc = SQLITE_DONE, stop = 0;
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW)
        stop = visit_peer_row(s, visit, user);
    sqlite3_reset(s);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? 0 : fail(st, rc, "listing peers");
}

const char *store_path(const struct store *st)
{
    return st->path;
}

int store_disable_autocheckpoint(struct store *st)
{
    return exec(st, "PRAGMA wal_autocheckpoint = 0", "disabling automatic checkpoints");
}

int store_set_busy_timeout(struct store *st, int ms)
{
    int previous = st->busy_timeout_ms;
    st->busy_timeout_ms = ms > 0 ? ms : 0;
    sqlite3_busy_timeout(st->db, st->busy_timeout_ms);
    return previous;
}

/* ---- failure counts ---- */

void store_get_fault_counts(const struct store *st, uint64_t out[STORE_FAULT_OTHER + 1])
{
    memcpy(out, st->fault_counts, sizeof st->fault_counts);
}

/* ---- metric samples ---- */

int store_samples_put(struct store *st, int64_t at, const struct store_sample *samples, size_t n)
{
    int sync_err = set_durable(st, false);
    if (sync_err)
        return sync_err;
    for (size_t i = 0; i < n; i++)
        if (!samples[i].name || !*samples[i].name)
            return fail_invalid(st, "sample name");
    int err = begin(st, "writing metric samples");
    for (size_t i = 0; !err && i < n; i++) {
        sqlite3_stmt *s = stmt(st, ST_SAMPLE_PUT);
        sqlite3_bind_int64(s, 1, at);
        bind_text(s, 2, samples[i].name, strlen(samples[i].name));
        sqlite3_bind_double(s, 3, samples[i].value);
        err = run(st, s, "writing metric samples");
    }
    return err == 0 || sqlite3_get_autocommit(st->db) == 0
               ? finish(st, err, "writing metric samples")
               : err;
}

int store_samples_expire(struct store *st, int64_t before, int64_t *removed)
{
    int sync_err = set_durable(st, false);
    if (sync_err)
        return sync_err;
    sqlite3_stmt *s = stmt(st, ST_SAMPLE_EXPIRE);
    sqlite3_bind_int64(s, 1, before);
    int err = run(st, s, "expiring metric samples");
    if (!err && removed)
        *removed = sqlite3_changes64(st->db);
    return err;
}

int store_samples_list(struct store *st, int64_t since, store_visit_sample_fn visit, void *user)
{
    sqlite3_stmt *s = stmt(st, ST_SAMPLE_LIST);
    sqlite3_bind_int64(s, 1, since);
    int rc = SQLITE_DONE, stop = 0;
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW)
        stop = visit(user, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1),
                     sqlite3_column_double(s, 2));
    sqlite3_reset(s);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? 0 : fail(st, rc, "reading metric samples");
}

/* ---- route setups (read side; the setup node writes) ---- */

static void route_setup_of_row(sqlite3_stmt *s, struct store_route_setup *r)
{
    r->id = sqlite3_column_int64(s, 0);
    r->requester = (const char *)sqlite3_column_text(s, 1);
    r->source = (const char *)sqlite3_column_text(s, 2);
    r->destination = (const char *)sqlite3_column_text(s, 3);
    r->hops_forward = sqlite3_column_int64(s, 4);
    r->hops_reverse = sqlite3_column_int64(s, 5);
    r->state = (const char *)sqlite3_column_text(s, 6);
    r->error = (const char *)sqlite3_column_text(s, 7);
    r->started_at_ms = sqlite3_column_int64(s, 8);
    r->finished_at_ms = sqlite3_column_type(s, 9) == SQLITE_NULL ? 0 : sqlite3_column_int64(s, 9);
}

int store_route_setup_list(struct store *st, int64_t before, size_t limit, const char *state,
                           const char *requester, store_visit_route_setup_fn visit, void *user)
{
    sqlite3_stmt *s = stmt(st, ST_ROUTE_SETUP_LIST);
    sqlite3_bind_int64(s, 1, before);
    if (state)
        bind_text(s, 2, state, strlen(state));
    if (requester)
        bind_text(s, 3, requester, strlen(requester));
    sqlite3_bind_int64(s, 4, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    int rc = SQLITE_DONE, stop = 0;
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_route_setup r;
        route_setup_of_row(s, &r);
        stop = visit(user, &r);
    }
    sqlite3_reset(s);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? 0 : fail(st, rc, "listing route setups");
}

int store_route_setup_get(struct store *st, int64_t id, store_visit_route_setup_fn visit,
                          store_visit_route_setup_event_fn visit_event, void *user)
{
    sqlite3_stmt *s = stmt(st, ST_ROUTE_SETUP_GET);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s), err = 0;
    if (rc == SQLITE_ROW) {
        struct store_route_setup r;
        route_setup_of_row(s, &r);
        err = visit(user, &r);
    } else {
        err = rc == SQLITE_DONE ? DMSG_ENOTFOUND : fail(st, rc, "reading a route setup");
    }
    sqlite3_reset(s);
    if (err)
        return err;
    s = stmt(st, ST_ROUTE_SETUP_EVENTS);
    sqlite3_bind_int64(s, 1, id);
    int stop = 0;
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW)
        stop = visit_event(user, (const char *)sqlite3_column_text(s, 0),
                           sqlite3_column_int64(s, 1), (const char *)sqlite3_column_text(s, 2));
    sqlite3_reset(s);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? 0 : fail(st, rc, "reading route setup events");
}

/* ---- route setups (write side: the setup node) ---- */

int store_route_setup_add(struct store *st, const struct store_route_setup *r, int64_t *id)
{
    int sync_err = set_durable(st, false);
    if (sync_err)
        return sync_err;
    sqlite3_stmt *s = stmt(st, ST_ROUTE_SETUP_ADD);
    bind_text(s, 1, r->requester, strlen(r->requester));
    bind_text(s, 2, r->source, strlen(r->source));
    bind_text(s, 3, r->destination, strlen(r->destination));
    sqlite3_bind_int64(s, 4, r->hops_forward);
    sqlite3_bind_int64(s, 5, r->hops_reverse);
    bind_text(s, 6, r->state, strlen(r->state));
    sqlite3_bind_int64(s, 7, r->started_at_ms);
    int err = run(st, s, "adding a route setup");
    if (!err)
        *id = sqlite3_last_insert_rowid(st->db);
    if (!err)
        err = store_route_setup_event(st, *id, r->state, r->started_at_ms, "");
    return err;
}

int store_route_setup_event(struct store *st, int64_t id, const char *state, int64_t at_ms,
                            const char *detail)
{
    int sync_err = set_durable(st, false);
    if (sync_err)
        return sync_err;
    sqlite3_stmt *s = stmt(st, ST_ROUTE_SETUP_EVENT_ADD);
    sqlite3_bind_int64(s, 1, id);
    bind_text(s, 2, state, strlen(state));
    sqlite3_bind_int64(s, 3, at_ms);
    bind_text(s, 4, detail, strlen(detail));
    return run(st, s, "adding a route setup event");
}

int store_route_setup_set_state(struct store *st, int64_t id, const char *state,
                                const char *error, int64_t at_ms, bool finished)
{
    int sync_err = set_durable(st, false);
    if (sync_err)
        return sync_err;
    sqlite3_stmt *s = stmt(st, ST_ROUTE_SETUP_STATE);
    sqlite3_bind_int64(s, 1, id);
    bind_text(s, 2, state, strlen(state));
    bind_text(s, 3, error, strlen(error));
    if (finished)
        sqlite3_bind_int64(s, 4, at_ms);
    else
        sqlite3_bind_null(s, 4);
    int err = run(st, s, "updating a route setup");
    if (!err)
        err = store_route_setup_event(st, id, state, at_ms, error);
    return err;
}

int store_route_setup_expire(struct store *st, int64_t before_ms, int64_t *removed)
{
    int sync_err = set_durable(st, false);
    if (sync_err)
        return sync_err;
    sqlite3_stmt *s = stmt(st, ST_ROUTE_SETUP_EXPIRE_EVENTS);
    sqlite3_bind_int64(s, 1, before_ms);
    int err = run(st, s, "expiring route setup events");
    if (err)
        return err;
    s = stmt(st, ST_ROUTE_SETUP_EXPIRE);
    sqlite3_bind_int64(s, 1, before_ms);
    err = run(st, s, "expiring route setups");
    if (!err && removed)
        *removed = sqlite3_changes64(st->db);
    return err;
}

int store_route_setup_abandon(struct store *st, int64_t at_ms, const char *error,
                              int64_t *abandoned)
{
    int sync_err = set_durable(st, false);
    if (sync_err)
        return sync_err;
    int err = begin(st, "abandoning unfinished route setups");
    if (!err) {
        sqlite3_stmt *s = stmt(st, ST_ROUTE_SETUP_ABANDON_EVENTS);
        sqlite3_bind_int64(s, 1, at_ms);
        bind_text(s, 2, error, strlen(error));
        err = run(st, s, "abandoning unfinished route setups");
    }
    if (!err) {
        sqlite3_stmt *s = stmt(st, ST_ROUTE_SETUP_ABANDON);
        sqlite3_bind_int64(s, 1, at_ms);
        bind_text(s, 2, error, strlen(error));
        err = run(st, s, "abandoning unfinished route setups");
        if (!err && abandoned)
            *abandoned = sqlite3_changes64(st->db);
    }
    return finish(st, err, "abandoning unfinished route setups");
}
