/* The WAL checkpointer: the store's own commits no longer checkpoint (the WAL only grows), and
 * the checkpointer's passive runs from a worker thread let the next writes reuse the WAL from
 * its start, with every row kept. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "store.h"
#include "store_checkpoint.h"

#define ROWS 1500
#define PK "02d9c9e5e1b3e0a4c4e6e5e7a0b0c0d0e0f00112233445566778899aabbccddee1"

static char dir[64];
static char path[128];
static char wal[136];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_store_ckpt_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/dmsgd.db", dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
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

TestSuite(store_checkpoint, .init = setup, .fini = teardown, .timeout = 60);

static struct store *open_store(void)
{
    struct store *st = NULL;
    struct store_error err;
    cr_assert_eq(store_open(&st, path, NULL, &err), 0, "%s", err.message);
    return st;
}

static void add_rows(struct store *st, int n)
{
    for (int i = 0; i < n; i++) {
        struct store_route_setup row = {.requester = PK, .source = PK, .destination = PK,
                                        .hops_forward = 1, .hops_reverse = 1, .state = "received",
                                        .started_at_ms = 1700000000000 + i};
        int64_t id = 0;
        cr_assert_eq(store_route_setup_add(st, &row, &id), 0, "%s",
                     store_last_error(st)->message);
    }
}

static off_t wal_size(void)
{
    struct stat sb;
    return stat(wal, &sb) == 0 ? sb.st_size : 0;
}

static int count_rows(void)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int n = -1;

    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM route_setups", -1, &q, NULL),
                 SQLITE_OK);
    if (sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

Test(store_checkpoint, without_it_commits_no_longer_checkpoint)
{
    struct store *st = open_store();
    off_t first;

    cr_assert_eq(store_disable_autocheckpoint(st), 0);
    add_rows(st, ROWS);
    first = wal_size();
    add_rows(st, ROWS);
    /* SQLite's default would have checkpointed after 1000 pages and started the WAL over. */
    cr_assert_gt(wal_size(), first + first / 2, "the WAL was reset: %lld then %lld",
                 (long long)first, (long long)wal_size());
    store_close(st);
}

static void run_until_checkpointed(uv_loop_t *loop, struct store_checkpointer *c)
{
    uint64_t runs = c->runs;

    for (int i = 0; i < 2000; i++) {
        uv_run(loop, UV_RUN_ONCE);
        if (c->runs > runs && c->rc == SQLITE_OK && c->wal_frames > 0 &&
            c->checkpointed == c->wal_frames)
            return;
    }
    cr_assert_fail("no complete checkpoint: rc %d, %d of %d frames", c->rc, c->checkpointed,
                   c->wal_frames);
}

Test(store_checkpoint, passive_runs_from_a_worker_let_the_wal_start_over)
{
    uv_loop_t loop;
    struct dmsgd_log log;
    struct store_checkpointer c;
    struct store *st = open_store();
    off_t first;

    log_init(&log);
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(store_checkpointer_start(&c, &loop, st, &log, 20), 0);
    add_rows(st, ROWS);
    first = wal_size();
    cr_assert_gt(first, 0);
    run_until_checkpointed(&loop, &c);
    add_rows(st, ROWS);
    cr_assert_leq(wal_size(), first + first / 10, "the WAL grew on: %lld then %lld",
                  (long long)first, (long long)wal_size());
    run_until_checkpointed(&loop, &c);
    cr_assert_eq(c.failures, 0);

    store_checkpointer_close(&c);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0, "the checkpointer left a handle or work behind");
    cr_assert_null(c.db);
    store_close(st);
    cr_assert_eq(count_rows(), 2 * ROWS);
}

Test(store_checkpoint, close_while_a_run_is_in_progress_waits_for_it)
{
    uv_loop_t loop;
    struct dmsgd_log log;
    struct store_checkpointer c;
    struct store *st = open_store();

    log_init(&log);
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(store_checkpointer_start(&c, &loop, st, &log, 1), 0);
    add_rows(st, ROWS);
    while (!c.running)
        uv_run(&loop, UV_RUN_ONCE);
    store_checkpointer_close(&c);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    cr_assert_null(c.db);
    store_close(st);
    cr_assert_eq(count_rows(), ROWS);
}
