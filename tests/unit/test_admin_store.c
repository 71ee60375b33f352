/* What the admin side adds to the store: metric samples, the read side of route setups, fault
 * counts, the route setup toggle, and the upgrade of a version-1 database keeping its data. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmsg/error.h"
#include "route_setup_setting.h"
#include "store.h"

extern const char *const dmsg_schema_migrations[];
extern const size_t dmsg_schema_migration_count;

static char dir[64];
static char path[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_admin_store_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/dmsgd.db", dir);
}

static void teardown(void)
{
    char p[160];
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
        unlink(p);
    }
    rmdir(dir);
}

TestSuite(admin_store, .init = setup, .fini = teardown, .timeout = 30);

static struct store *open_store(const struct store_options *opts)
{
    struct store *st = NULL;
    struct store_error err;
    cr_assert_eq(store_open(&st, path, opts, &err), 0, "%s", err.message);
    return st;
}

struct collected {
    char names[16][96];
    int64_t at[16];
    double value[16];
    int n;
};

static int collect(void *user, const char *name, int64_t at, double value)
{
    struct collected *c = user;
    cr_assert_lt(c->n, 16);
    snprintf(c->names[c->n], sizeof c->names[0], "%s", name);
    c->at[c->n] = at;
    c->value[c->n] = value;
    c->n++;
    return 0;
}

Test(admin_store, samples_round_trip_ordered_and_expire)
{
    struct store *st = open_store(NULL);
    const struct store_sample first[] = {{"dmsgd_sessions{kind=\"peer\"}", 1},
                                         {"dmsgd_sessions{kind=\"client\"}", 10}};
    const struct store_sample second[] = {{"dmsgd_sessions{kind=\"client\"}", 12.5}};
    cr_assert_eq(store_samples_put(st, 1000, first, 2), 0);
    cr_assert_eq(store_samples_put(st, 1060, second, 1), 0);
    cr_assert_eq(store_samples_put(st, 1060, second, 1), 0, "the same second again replaces");
    struct collected c = {0};
    cr_assert_eq(store_samples_list(st, 0, collect, &c), 0);
    cr_assert_eq(c.n, 3);
    cr_assert_str_eq(c.names[0], "dmsgd_sessions{kind=\"client\"}");
    cr_assert_eq(c.at[0], 1000);
    cr_assert_eq(c.value[0], 10);
    cr_assert_eq(c.at[1], 1060);
    cr_assert_eq(c.value[1], 12.5);
    cr_assert_str_eq(c.names[2], "dmsgd_sessions{kind=\"peer\"}");
    memset(&c, 0, sizeof c);
    cr_assert_eq(store_samples_list(st, 1001, collect, &c), 0);
    cr_assert_eq(c.n, 1, "since is inclusive of later samples only");
    int64_t removed = 0;
    cr_assert_eq(store_samples_expire(st, 1060, &removed), 0);
    cr_assert_eq(removed, 2);
    const struct store_sample unnamed[] = {{"", 1}};
    cr_assert_eq(store_samples_put(st, 2000, unnamed, 1), DMSG_EINVAL);
    store_close(st);
}

static void exec_sql(const char *sql)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK, "%s", msg ? msg : "");
    sqlite3_close(db);
}

#define PK_A "02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define PK_B "03bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

struct setups {
    int64_t ids[8];
    int n;
    int events;
    char last_state[16];
};

static int on_setup(void *user, const struct store_route_setup *r)
{
    struct setups *s = user;
    s->ids[s->n++] = r->id;
    snprintf(s->last_state, sizeof s->last_state, "%s", r->state);
    return 0;
}

static int on_event(void *user, const char *state, int64_t at, const char *detail)
{
    struct setups *s = user;
    (void)state;
    (void)at;
    (void)detail;
    s->events++;
    return 0;
}

Test(admin_store, route_setups_newest_first_with_filters)
{
    store_close(open_store(NULL));
    exec_sql("INSERT INTO route_setups VALUES (1,'" PK_A "','" PK_A "','" PK_B "',2,2,'done','',"
             "1000,1500);"
             "INSERT INTO route_setups VALUES (2,'" PK_B "','" PK_B "','" PK_A "',1,1,'failed',"
             "'no route',2000,2100);"
             "INSERT INTO route_setups VALUES (3,'" PK_A "','" PK_A "','" PK_B "',1,1,"
             "'installing','',3000,NULL);"
             "INSERT INTO route_setup_events VALUES (2,'received',2000,'');"
             "INSERT INTO route_setup_events VALUES (2,'failed',2100,'no route');");
    struct store *st = open_store(NULL);
    struct setups s = {0};
    cr_assert_eq(store_route_setup_list(st, 0, 10, NULL, NULL, on_setup, &s), 0);
    cr_assert_eq(s.n, 3);
    cr_assert_eq(s.ids[0], 3);
    cr_assert_eq(s.ids[2], 1);
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_route_setup_list(st, 3, 1, NULL, NULL, on_setup, &s), 0);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(s.ids[0], 2, "before and limit page backwards");
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_route_setup_list(st, 0, 10, NULL, PK_A, on_setup, &s), 0);
    cr_assert_eq(s.n, 2);
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_route_setup_list(st, 0, 10, "failed", NULL, on_setup, &s), 0);
    cr_assert_eq(s.n, 1);
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_route_setup_get(st, 2, on_setup, on_event, &s), 0);
    cr_assert_eq(s.events, 2);
    cr_assert_str_eq(s.last_state, "failed");
    cr_assert_eq(store_route_setup_get(st, 9, on_setup, on_event, &s), DMSG_ENOTFOUND);
    store_close(st);
}

Test(admin_store, route_setup_toggle_persists)
{
    struct store *st = open_store(NULL);
    struct route_setup_setting s;
    cr_assert_eq(route_setup_setting_get(st, true, &s), 0);
    cr_assert(s.enabled && !s.runtime, "unset: the config's value");
    cr_assert_eq(route_setup_setting_set(st, false, 1775736000250LL), 0);
    store_close(st);
    st = open_store(NULL);
    cr_assert_eq(route_setup_setting_get(st, true, &s), 0);
    cr_assert(!s.enabled && s.runtime, "the runtime value wins over the config");
    cr_assert_eq(s.updated_at_ms, 1775736000250LL);
    cr_assert_eq(store_setting_set(st, ROUTE_SETUP_SETTING, "[1]", 0), 0);
    cr_assert_eq(route_setup_setting_get(st, true, &s), 0);
    cr_assert(s.enabled && !s.runtime, "a malformed value counts as unset");
    store_close(st);
}

static int count_peer(void *user, const struct store_peer *p)
{
    (void)p;
    (*(int *)user)++;
    return 0;
}

Test(admin_store, upgrade_from_version_1_keeps_data)
{
    cr_assert_geq(dmsg_schema_migration_count, 2);
    const struct store_options v1 = {.migrations = dmsg_schema_migrations, .migration_count = 1};
    struct store *st = open_store(&v1);
    cr_assert_eq(store_schema_version(st), 1);
    const struct store_peer p = {.public_key = PK_A, .address = "relay:8081",
                                 .source = STORE_PEER_ADMIN, .added_at = 5, .note = "o'brien"};
    cr_assert_eq(store_peer_add(st, &p), 0);
    cr_assert_eq(route_setup_setting_set(st, true, 1000), 0);
    const struct store_sample smp[] = {{"dmsgd_sessions{kind=\"client\"}", 3}};
    cr_assert_eq(store_samples_put(st, 100, smp, 1), 0);
    store_close(st);

    st = open_store(NULL);
    cr_assert_eq(store_schema_version(st), (int)dmsg_schema_migration_count);
    int peers = 0;
    cr_assert_eq(store_peer_list(st, NULL, count_peer, &peers), 0);
    cr_assert_eq(peers, 1);
    struct route_setup_setting s;
    cr_assert_eq(route_setup_setting_get(st, false, &s), 0);
    cr_assert(s.enabled && s.runtime);
    struct collected c = {0};
    cr_assert_eq(store_samples_list(st, 0, collect, &c), 0);
    cr_assert_eq(c.n, 1);
    store_close(st);
    exec_sql("SELECT 1 FROM sqlite_master WHERE name = 'metric_samples_by_name'");
}

Test(admin_store, full_database_is_counted_and_reported)
{
    const struct store_options small = {.max_size_bytes = 64 * 1024};
    struct store *st = open_store(&small);
    struct store_sample batch[64];
    char names[64][64];
    for (int i = 0; i < 64; i++) {
        snprintf(names[i], sizeof names[i], "series_with_a_long_name_%02d{label=\"value\"}", i);
        batch[i].name = names[i];
        batch[i].value = i;
    }
    int rc = 0;
    for (int64_t at = 0; at < 1000 && rc == 0; at++)
        rc = store_samples_put(st, at, batch, 64);
    cr_assert_eq(rc, DMSG_EIO);
    cr_assert_eq(store_last_error(st)->fault, STORE_FAULT_FULL);
    cr_assert(strstr(store_last_error(st)->message, "full") != NULL);
    uint64_t counts[STORE_FAULT_OTHER + 1];
    store_get_fault_counts(st, counts);
    cr_assert_geq(counts[STORE_FAULT_FULL], 1);
    /* The failed batch was rolled back: the store still answers and takes smaller writes
     * after expiring old samples. */
    cr_assert_eq(store_samples_expire(st, 1000000, NULL), 0);
    cr_assert_eq(store_samples_put(st, 5000, batch, 1), 0);
    store_close(st);
}
