/* The SQLite store: migrations, the clear error for each kind of broken database, and the
 * CRUD functions for discovery entries, settings and peers. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pwd.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmsg/error.h"
#include "store.h"

extern const char *const dmsg_schema_migrations[];
extern const size_t dmsg_schema_migration_count;

static char tmpdir[256];
static char dbpath[300];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dmsg-store-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(dbpath, sizeof dbpath, "%s/state.db", tmpdir);
}

static void remove_tmpdir(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(store, .init = make_tmpdir, .fini = remove_tmpdir);

static struct store *open_ok(const struct store_options *opts)
{
    struct store *st = NULL;
    struct store_error err;
    int rc = store_open(&st, dbpath, opts, &err);
    cr_assert_eq(rc, 0, "store_open: %d %s", rc, err.message);
    cr_assert_not_null(st);
    return st;
}

static const char PK_A[] = "026f4f524720230f86b3047e69fad7b48e09da1119588b051d6055a83d83a31ea9";
static const char PK_B[] = "02894828eceacb460bfb8369aa3468b33fe24f748bf870763c3c201b66fdc115be";
static const char PK_C[] = "039366d11f49d387207971fca013c625f02bb7bc17adb48976810d61a3467d3084";

/* Reads a single integer or text with a separate raw connection, as another tool would. */
static void raw_query_text(const char *sql, char *out, size_t cap)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    snprintf(out, cap, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* ---- migrations ---- */

Test(store, fresh_database_gets_every_migration_and_wal)
{
    struct store *st = open_ok(NULL);
    cr_assert_eq(store_schema_version(st), (int)dmsg_schema_migration_count);
    cr_assert_geq(dmsg_schema_migration_count, 1);
    store_close(st);

    char text[64];
    raw_query_text("PRAGMA user_version", text, sizeof text);
    cr_assert_eq(atoi(text), (int)dmsg_schema_migration_count);
    raw_query_text("PRAGMA journal_mode", text, sizeof text);
    cr_assert_str_eq(text, "wal");
    raw_query_text("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN"
                   " ('peers', 'settings', 'discovery_entries')", text, sizeof text);
    cr_assert_str_eq(text, "3");
}

Test(store, reopening_keeps_version_and_data)
{
    struct store *st = open_ok(NULL);
    cr_assert_eq(store_setting_set(st, "enable_route_setup", "true", 100), 0);
    store_close(st);
    st = open_ok(NULL);
    char *value = NULL;
    cr_assert_eq(store_setting_get(st, "enable_route_setup", &value), 0);
    cr_assert_str_eq(value, "true");
    free(value);
    cr_assert_eq(store_schema_version(st), (int)dmsg_schema_migration_count);
    store_close(st);
}

static int count_peers(void *user, const struct store_peer *peer)
{
    (void)peer;
    ++*(int *)user;
    return 0;
}

/* The embedded migrations followed by one more, as a future release would ship. */
static const char *migrations_plus_one[16];

static struct store_options options_with_extra(const char *extra)
{
    cr_assert_lt(dmsg_schema_migration_count, 15);
    for (size_t i = 0; i < dmsg_schema_migration_count; i++)
        migrations_plus_one[i] = dmsg_schema_migrations[i];
    migrations_plus_one[dmsg_schema_migration_count] = extra;
    return (struct store_options){.migrations = migrations_plus_one,
                                  .migration_count = dmsg_schema_migration_count + 1};
}

Test(store, upgrade_from_older_version_keeps_data)
{
    struct store *st = open_ok(NULL);
    struct store_peer peer = {.public_key = PK_A, .address = "198.51.100.1:8081",
                              .source = STORE_PEER_CONFIG, .added_at = 1};
    cr_assert_eq(store_peer_add(st, &peer), 0);
    cr_assert_eq(store_setting_set(st, "mode", "{\"a\":1}", 1), 0);
    store_close(st);

    struct store_options next = options_with_extra(
        "ALTER TABLE peers ADD COLUMN weight INTEGER NOT NULL DEFAULT 7;"
        "CREATE TABLE extra (x INTEGER) STRICT;");
    st = open_ok(&next);
    cr_assert_eq(store_schema_version(st), (int)dmsg_schema_migration_count + 1);
    int peers = 0;
    cr_assert_eq(store_peer_list(st, NULL, count_peers, &peers), 0);
    cr_assert_eq(peers, 1);
    char *value = NULL;
    cr_assert_eq(store_setting_get(st, "mode", &value), 0);
    cr_assert_str_eq(value, "{\"a\":1}");
    free(value);
    store_close(st);

    char text[32];
    raw_query_text("SELECT weight FROM peers", text, sizeof text);
    cr_assert_str_eq(text, "7");
}

Test(store, failing_migration_is_rolled_back)
{
    store_close(open_ok(NULL));
    struct store_options next = options_with_extra(
        "CREATE TABLE half_done (x INTEGER); THIS IS NOT SQL;");
    struct store *st = NULL;
    struct store_error err;
    cr_assert_eq(store_open(&st, dbpath, &next, &err), DMSG_EIO);
    cr_assert_null(st);
    cr_assert_str_neq(err.message, "");
    cr_assert_not_null(strstr(err.message, "migration"), "%s", err.message);

    char text[32];
    raw_query_text("PRAGMA user_version", text, sizeof text);
    cr_assert_eq(atoi(text), (int)dmsg_schema_migration_count);
    raw_query_text("SELECT count(*) FROM sqlite_schema WHERE name = 'half_done'", text,
                   sizeof text);
    cr_assert_str_eq(text, "0");
}

Test(store, newer_schema_is_refused)
{
    struct store_options next = options_with_extra("CREATE TABLE extra (x INTEGER) STRICT;");
    store_close(open_ok(&next));

    struct store *st = NULL;
    struct store_error err;
    cr_assert_eq(store_open(&st, dbpath, NULL, &err), DMSG_EVERSION);
    cr_assert_null(st);
    cr_assert_eq(err.fault, STORE_FAULT_TOO_NEW);
    char expect[64];
    snprintf(expect, sizeof expect, "schema version %zu", dmsg_schema_migration_count + 1);
    cr_assert_not_null(strstr(err.message, expect), "%s", err.message);
    cr_assert_not_null(strstr(err.message, "newer dmsgd"), "%s", err.message);
}

/* ---- broken databases ---- */

/* Runs store_open as an unprivileged user in a child (root ignores file modes); returns the
 * fault it reported and copies its message. */
static enum store_fault open_fault_unprivileged(char *message, size_t cap)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(fds[0]);
        if (geteuid() == 0) {
            struct passwd *nobody = getpwnam("nobody");
            if (!nobody || setgid(nobody->pw_gid) || setuid(nobody->pw_uid))
                _exit(100);
            prctl(PR_SET_DUMPABLE, 1); /* lets the leak checker attach after setuid */
        }
        struct store *st = NULL;
        struct store_error err;
        int rc = store_open(&st, dbpath, NULL, &err);
        if (rc == 0)
            _exit(101);
        if (write(fds[1], err.message, strlen(err.message)) < 0)
            _exit(103);
        _exit(rc == DMSG_EIO ? (int)err.fault : 102);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], message, cap - 1);
    close(fds[0]);
    message[n > 0 ? n : 0] = '\0';
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    return (enum store_fault)WEXITSTATUS(status);
}

Test(store, read_only_file_gives_readonly_error)
{
    store_close(open_ok(NULL));
    cr_assert_eq(chmod(tmpdir, 0755), 0);
    cr_assert_eq(chmod(dbpath, 0444), 0);
    char message[400];
    cr_assert_eq(open_fault_unprivileged(message, sizeof message), STORE_FAULT_READONLY,
                 "%s", message);
    cr_assert_not_null(strstr(message, "read-only"), "%s", message);
    cr_assert_not_null(strstr(message, "write access"), "%s", message);
    cr_assert_not_null(strstr(message, dbpath), "%s", message);
}

static void write_file(const char *path, const void *data, size_t len, off_t at)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, data, len, at), (ssize_t)len);
    close(fd);
}

Test(store, file_that_is_not_a_database_gives_corrupt_error)
{
    char garbage[4096];
    memset(garbage, 'x', sizeof garbage);
    write_file(dbpath, garbage, sizeof garbage, 0);
    struct store *st = NULL;
    struct store_error err;
    cr_assert_eq(store_open(&st, dbpath, NULL, &err), DMSG_EIO);
    cr_assert_eq(err.fault, STORE_FAULT_CORRUPT, "%d %s", err.fault, err.message);
    cr_assert_not_null(strstr(err.message, "corrupt"), "%s", err.message);
    cr_assert_not_null(strstr(err.message, "move it aside"), "%s", err.message);
}

static int noop_peer(void *user, const struct store_peer *peer)
{
    (void)user;
    (void)peer;
    return 0;
}

Test(store, damaged_pages_give_corrupt_error)
{
    struct store *st = open_ok(NULL);
    char pk[67], addr[64];
    for (int i = 0; i < 400; i++) {
        snprintf(pk, sizeof pk, "02%064x", i);
        snprintf(addr, sizeof addr, "198.51.100.%d:%d", i % 250, 1000 + i);
        struct store_peer p = {.public_key = pk, .address = addr, .source = STORE_PEER_ADMIN,
                               .note = "padding padding padding padding padding padding"};
        cr_assert_eq(store_peer_add(st, &p), 0);
    }
    store_close(st);

    struct stat sb;
    cr_assert_eq(stat(dbpath, &sb), 0);
    cr_assert_gt(sb.st_size, 8 * 4096);
    char garbage[4096];
    memset(garbage, 0xa5, sizeof garbage);
    for (off_t page = 1; page * 4096 < sb.st_size; page++)
        write_file(dbpath, garbage, sizeof garbage, page * 4096);

    struct store_error err;
    int rc = store_open(&st, dbpath, NULL, &err);
    if (rc == 0) {
        cr_assert_eq(store_peer_list(st, NULL, noop_peer, NULL), DMSG_EIO);
        err = *store_last_error(st);
        store_close(st);
    }
    cr_assert_eq(err.fault, STORE_FAULT_CORRUPT, "%d %s", err.fault, err.message);
}

Test(store, locked_database_gives_locked_error)
{
    struct store_options opts = {.busy_timeout_ms = 50};
    struct store *st = open_ok(&opts);
    sqlite3 *other;
    cr_assert_eq(sqlite3_open(dbpath, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);

    struct store_peer p = {.public_key = PK_A, .address = "198.51.100.1:1",
                           .source = STORE_PEER_ADMIN};
    cr_assert_eq(store_peer_add(st, &p), DMSG_EIO);
    const struct store_error *err = store_last_error(st);
    cr_assert_eq(err->fault, STORE_FAULT_LOCKED, "%d %s", err->fault, err->message);
    cr_assert_not_null(strstr(err->message, "locked"), "%s", err->message);

    /* Opening while another writer holds the lock is refused the same way. */
    struct store *second = NULL;
    struct store_error open_err;
    cr_assert_eq(store_open(&second, dbpath, &opts, &open_err), DMSG_EIO);
    cr_assert_eq(open_err.fault, STORE_FAULT_LOCKED, "%s", open_err.message);

    cr_assert_eq(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    cr_assert_eq(store_peer_add(st, &p), 0);
    store_close(st);
}

Test(store, size_cap_gives_full_error)
{
    struct store_options opts = {.max_size_bytes = 256 * 1024};
    struct store *st = open_ok(&opts);
    char pk[67], note[1024];
    memset(note, 'n', sizeof note - 1);
    note[sizeof note - 1] = '\0';
    int rc = 0, i;
    for (i = 0; i < 1000 && rc == 0; i++) {
        snprintf(pk, sizeof pk, "03%064x", i);
        struct store_peer p = {.public_key = pk, .address = "198.51.100.1:1",
                               .source = STORE_PEER_ADMIN, .note = note};
        rc = store_peer_add(st, &p);
    }
    cr_assert_eq(rc, DMSG_EIO);
    cr_assert_gt(i, 10);
    const struct store_error *err = store_last_error(st);
    cr_assert_eq(err->fault, STORE_FAULT_FULL, "%d %s", err->fault, err->message);
    cr_assert_not_null(strstr(err->message, "full"), "%s", err->message);
    store_close(st);
}

Test(store, missing_directory_gives_cantopen_error)
{
    char path[400];
    snprintf(path, sizeof path, "%s/no/such/dir/state.db", tmpdir);
    struct store *st = NULL;
    struct store_error err;
    cr_assert_eq(store_open(&st, path, NULL, &err), DMSG_EIO);
    cr_assert_eq(err.fault, STORE_FAULT_CANTOPEN);
    cr_assert_not_null(strstr(err.message, path), "%s", err.message);
}

/* ---- discovery entries ---- */

struct collected {
    int count;
    char text[8][512];
};

static int collect(void *user, const char *text, size_t len)
{
    struct collected *c = user;
    cr_assert_lt(c->count, 8);
    cr_assert_lt(len, sizeof c->text[0]);
    memcpy(c->text[c->count], text, len);
    c->text[c->count][len] = '\0';
    c->count++;
    return 0;
}

static struct store_disc_entry server_entry(const char *pk, const char *json, uint64_t seq,
                                            int64_t ts, int64_t available, int64_t expires)
{
    return (struct store_disc_entry){
        .public_key = pk, .entry_json = json, .entry_json_len = strlen(json),
        .sequence = seq, .timestamp_ns = ts, .is_server = true,
        .available_sessions = available, .expires_at = expires};
}

Test(store, disc_put_get_and_iteration_checks)
{
    struct store *st = open_ok(NULL);
    bool created = false;
    struct store_disc_entry e = server_entry(PK_A, "{\"v\":0}", 0, 1000, 5, 0);
    cr_assert_eq(store_disc_put(st, &e, 10, &created), 0);
    cr_assert(created);

    char *json = NULL;
    size_t len = 0;
    uint64_t seq = 99;
    int64_t ts = 0;
    cr_assert_eq(store_disc_get(st, PK_A, 10, &json, &len, &seq, &ts), 0);
    cr_assert_str_eq(json, "{\"v\":0}");
    cr_assert_eq(len, 7);
    cr_assert_eq(seq, 0);
    cr_assert_eq(ts, 1000);
    free(json);

    /* Same sequence: refused; lower timestamp: refused; both leave the stored entry as is. */
    e = server_entry(PK_A, "{\"v\":1}", 0, 2000, 5, 0);
    cr_assert_eq(store_disc_put(st, &e, 10, &created), DMSG_ENONCE);
    e = server_entry(PK_A, "{\"v\":1}", 1, 999, 5, 0);
    cr_assert_eq(store_disc_put(st, &e, 10, &created), DMSG_EREPLAY);
    /* A sequence jump and an equal timestamp are accepted. */
    e = server_entry(PK_A, "{\"v\":5}", 5, 1000, 5, 0);
    cr_assert_eq(store_disc_put(st, &e, 10, &created), 0);
    cr_assert_not(created);
    cr_assert_eq(store_disc_get(st, PK_A, 10, &json, NULL, &seq, NULL), 0);
    cr_assert_str_eq(json, "{\"v\":5}");
    cr_assert_eq(seq, 5);
    free(json);

    /* The full uint64 range survives the round trip and still compares unsigned. */
    e = server_entry(PK_A, "{\"v\":\"max\"}", UINT64_MAX, 1000, 5, 0);
    cr_assert_eq(store_disc_put(st, &e, 10, &created), 0);
    cr_assert_eq(store_disc_get(st, PK_A, 10, NULL, NULL, &seq, NULL), 0);
    cr_assert_eq(seq, UINT64_MAX);
    e = server_entry(PK_A, "{\"v\":6}", 6, 1000, 5, 0);
    cr_assert_eq(store_disc_put(st, &e, 10, &created), DMSG_ENONCE);

    cr_assert_eq(store_disc_get(st, PK_B, 10, &json, NULL, NULL, NULL), DMSG_ENOTFOUND);
    cr_assert_eq(store_disc_get(st, "nothex", 10, &json, NULL, NULL, NULL), DMSG_EINVAL);
    e = server_entry("02AB", "{}", 0, 0, 0, 0);
    cr_assert_eq(store_disc_put(st, &e, 10, &created), DMSG_EINVAL);
    store_close(st);
}

Test(store, disc_delete)
{
    struct store *st = open_ok(NULL);
    struct store_disc_entry e = server_entry(PK_A, "{}", 3, 1, 1, 0);
    cr_assert_eq(store_disc_put(st, &e, 0, NULL), 0);
    cr_assert_eq(store_disc_delete(st, PK_A), 0);
    cr_assert_eq(store_disc_get(st, PK_A, 0, NULL, NULL, NULL, NULL), DMSG_ENOTFOUND);
    cr_assert_eq(store_disc_delete(st, PK_A), DMSG_ENOTFOUND);
    /* After a delete any sequence is a first registration again. */
    bool created = false;
    e.sequence = 0;
    cr_assert_eq(store_disc_put(st, &e, 0, &created), 0);
    cr_assert(created);
    store_close(st);
}

Test(store, disc_expiry_hides_then_removes)
{
    struct store *st = open_ok(NULL);
    struct store_disc_entry server = server_entry(PK_A, "{\"s\":1}", 4, 1, 3, 120);
    struct store_disc_entry client = {.public_key = PK_C, .entry_json = "{\"c\":1}",
                                      .entry_json_len = 7, .is_client = true};
    cr_assert_eq(store_disc_put(st, &server, 0, NULL), 0);
    cr_assert_eq(store_disc_put(st, &client, 0, NULL), 0);

    cr_assert_eq(store_disc_get(st, PK_A, 119, NULL, NULL, NULL, NULL), 0);
    /* At its expiry the entry is gone for readers even before the sweep... */
    cr_assert_eq(store_disc_get(st, PK_A, 120, NULL, NULL, NULL, NULL), DMSG_ENOTFOUND);
    struct collected c = {0};
    cr_assert_eq(store_disc_list_servers(st, 120, collect, &c), 0);
    cr_assert_eq(c.count, 0);
    /* ...and a new registration then starts over at any sequence. */
    bool created = false;
    struct store_disc_entry again = server_entry(PK_A, "{\"s\":2}", 0, 1, 3, 130);
    cr_assert_eq(store_disc_put(st, &again, 121, &created), 0);
    cr_assert(created);

    int64_t removed = -1;
    cr_assert_eq(store_disc_expire(st, 129, &removed), 0);
    cr_assert_eq(removed, 0);
    cr_assert_eq(store_disc_expire(st, 130, &removed), 0);
    cr_assert_eq(removed, 1);
    /* Client entries never expire. */
    cr_assert_eq(store_disc_expire(st, INT64_MAX, &removed), 0);
    cr_assert_eq(removed, 0);
    cr_assert_eq(store_disc_get(st, PK_C, INT64_MAX, NULL, NULL, NULL, NULL), 0);
    store_close(st);
}

Test(store, disc_listings)
{
    struct store *st = open_ok(NULL);
    struct store_disc_entry a = server_entry(PK_A, "{\"a\":10}", 0, 0, 10, 100);
    struct store_disc_entry b = server_entry(PK_B, "{\"b\":0}", 0, 0, 0, 100);
    struct store_disc_entry c = server_entry(PK_C, "{\"c\":50}", 0, 0, 50, 100);
    c.is_client = true;
    char pk_d[67];
    snprintf(pk_d, sizeof pk_d, "03%064x", 7);
    struct store_disc_entry d = server_entry(pk_d, "{\"d\":-3}", 0, 0, -3, 100);
    struct store_disc_entry client = {.public_key = "02" "1111111111111111111111111111111111111111111111111111111111111111",
                                      .entry_json = "{\"cl\":1}", .entry_json_len = 8,
                                      .is_client = true};
    struct store_disc_entry *all[] = {&a, &b, &c, &d, &client};
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(store_disc_put(st, all[i], 0, NULL), 0);

    struct collected got = {0};
    cr_assert_eq(store_disc_list_available(st, 0, 512, collect, &got), 0);
    cr_assert_eq(got.count, 2);
    cr_assert_str_eq(got.text[0], "{\"c\":50}");
    cr_assert_str_eq(got.text[1], "{\"a\":10}");

    memset(&got, 0, sizeof got);
    cr_assert_eq(store_disc_list_available(st, 0, 1, collect, &got), 0);
    cr_assert_eq(got.count, 1);
    cr_assert_str_eq(got.text[0], "{\"c\":50}");

    memset(&got, 0, sizeof got);
    cr_assert_eq(store_disc_list_servers(st, 0, collect, &got), 0);
    cr_assert_eq(got.count, 4);

    memset(&got, 0, sizeof got);
    cr_assert_eq(store_disc_list_clients(st, 0, collect, &got), 0);
    cr_assert_eq(got.count, 2);
    cr_assert_str_eq(got.text[0], client.public_key);
    cr_assert_str_eq(got.text[1], PK_C);

    /* Expired servers disappear from both server listings. */
    memset(&got, 0, sizeof got);
    cr_assert_eq(store_disc_list_servers(st, 100, collect, &got), 0);
    cr_assert_eq(got.count, 0);
    memset(&got, 0, sizeof got);
    cr_assert_eq(store_disc_list_available(st, 100, 512, collect, &got), 0);
    cr_assert_eq(got.count, 0);
    store_close(st);
}

static int stop_after_first(void *user, const char *text, size_t len)
{
    (void)text;
    (void)len;
    ++*(int *)user;
    return 42;
}

Test(store, visitor_can_stop_a_listing)
{
    struct store *st = open_ok(NULL);
    struct store_disc_entry a = server_entry(PK_A, "{}", 0, 0, 1, 0);
    struct store_disc_entry b = server_entry(PK_B, "{}", 0, 0, 1, 0);
    cr_assert_eq(store_disc_put(st, &a, 0, NULL), 0);
    cr_assert_eq(store_disc_put(st, &b, 0, NULL), 0);
    int calls = 0;
    cr_assert_eq(store_disc_list_servers(st, 0, stop_after_first, &calls), 42);
    cr_assert_eq(calls, 1);
    /* The statement was reset: the next listing sees everything again. */
    struct collected got = {0};
    cr_assert_eq(store_disc_list_servers(st, 0, collect, &got), 0);
    cr_assert_eq(got.count, 2);
    store_close(st);
}

/* ---- settings ---- */

Test(store, settings_round_trip_and_validation)
{
    struct store *st = open_ok(NULL);
    char *value = NULL;
    cr_assert_eq(store_setting_get(st, "missing", &value), DMSG_ENOTFOUND);
    cr_assert_eq(store_setting_set(st, "limit", "10", 1), 0);
    cr_assert_eq(store_setting_set(st, "limit", "[1,2]", 2), 0);
    cr_assert_eq(store_setting_get(st, "limit", &value), 0);
    cr_assert_str_eq(value, "[1,2]");
    free(value);
    cr_assert_eq(store_setting_set(st, "limit", "{not json", 3), DMSG_EINVAL);
    cr_assert_eq(store_last_error(st)->fault, STORE_FAULT_INVALID);
    cr_assert_eq(store_setting_set(st, "limit", "1 2", 3), DMSG_EINVAL);
    cr_assert_eq(store_setting_set(st, "", "1", 3), DMSG_EINVAL);
    cr_assert_eq(store_setting_get(st, "limit", &value), 0);
    cr_assert_str_eq(value, "[1,2]");
    free(value);
    store_close(st);
}

/* ---- peers ---- */

struct peer_rows {
    int count;
    char pk[4][67];
    char address[4][64];
    enum store_peer_source source[4];
    int64_t added_at[4];
    char note[4][64];
};

static int collect_peer(void *user, const struct store_peer *p)
{
    struct peer_rows *r = user;
    cr_assert_lt(r->count, 4);
    snprintf(r->pk[r->count], sizeof r->pk[0], "%s", p->public_key);
    snprintf(r->address[r->count], sizeof r->address[0], "%s", p->address);
    snprintf(r->note[r->count], sizeof r->note[0], "%s", p->note);
    r->source[r->count] = p->source;
    r->added_at[r->count] = p->added_at;
    r->count++;
    return 0;
}

Test(store, peers_add_list_remove)
{
    struct store *st = open_ok(NULL);
    struct store_peer a = {.public_key = PK_A, .address = "198.51.100.1:8081",
                           .source = STORE_PEER_CONFIG, .added_at = 11};
    struct store_peer b = {.public_key = PK_B, .address = "[2001:db8::1]:8081",
                           .source = STORE_PEER_ADMIN, .added_at = 12, .note = "eu-west"};
    struct store_peer c = {.public_key = PK_C, .address = "relay.example:30080",
                           .source = STORE_PEER_CONFIG, .added_at = 13};
    cr_assert_eq(store_peer_add(st, &a), 0);
    cr_assert_eq(store_peer_add(st, &b), 0);
    cr_assert_eq(store_peer_add(st, &c), 0);
    cr_assert_eq(store_peer_add(st, &b), DMSG_EEXIST);

    struct peer_rows rows = {0};
    cr_assert_eq(store_peer_list(st, NULL, collect_peer, &rows), 0);
    cr_assert_eq(rows.count, 3);
    cr_assert_str_eq(rows.pk[0], PK_A);
    cr_assert_str_eq(rows.pk[1], PK_B);
    cr_assert_str_eq(rows.address[1], "[2001:db8::1]:8081");
    cr_assert_eq(rows.source[1], STORE_PEER_ADMIN);
    cr_assert_eq(rows.added_at[1], 12);
    cr_assert_str_eq(rows.note[1], "eu-west");
    cr_assert_str_eq(rows.note[0], "");

    enum store_peer_source config = STORE_PEER_CONFIG;
    memset(&rows, 0, sizeof rows);
    cr_assert_eq(store_peer_list(st, &config, collect_peer, &rows), 0);
    cr_assert_eq(rows.count, 2);

    cr_assert_eq(store_peer_remove(st, PK_B), 0);
    cr_assert_eq(store_peer_remove(st, PK_B), DMSG_ENOTFOUND);
    int64_t removed = 0;
    cr_assert_eq(store_peer_remove_source(st, STORE_PEER_CONFIG, &removed), 0);
    cr_assert_eq(removed, 2);
    memset(&rows, 0, sizeof rows);
    cr_assert_eq(store_peer_list(st, NULL, collect_peer, &rows), 0);
    cr_assert_eq(rows.count, 0);
    store_close(st);
}

Test(store, peers_reject_malformed_values)
{
    struct store *st = open_ok(NULL);
    struct store_peer p = {.public_key = PK_A, .address = "198.51.100.1:8081",
                           .source = STORE_PEER_ADMIN};
    p.public_key = "026F4F524720230F86B3047E69FAD7B48E09DA1119588B051D6055A83D83A31EA9";
    cr_assert_eq(store_peer_add(st, &p), DMSG_EINVAL);
    p.public_key = "026f4f";
    cr_assert_eq(store_peer_add(st, &p), DMSG_EINVAL);
    p.public_key = PK_A;
    p.address = "ab";
    cr_assert_eq(store_peer_add(st, &p), DMSG_EINVAL);
    p.address = "198.51.100.1:80\n81";
    cr_assert_eq(store_peer_add(st, &p), DMSG_EINVAL);
    char longaddr[300];
    memset(longaddr, 'a', 262);
    longaddr[262] = '\0';
    p.address = longaddr;
    cr_assert_eq(store_peer_add(st, &p), DMSG_EINVAL);
    p.address = "198.51.100.1:8081";
    p.source = (enum store_peer_source)7;
    cr_assert_eq(store_peer_add(st, &p), DMSG_EINVAL);
    cr_assert_eq(store_last_error(st)->fault, STORE_FAULT_INVALID);
    cr_assert_str_eq(store_peer_source_name(STORE_PEER_DISCOVERED), "discovered");
    store_close(st);
}
