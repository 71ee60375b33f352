/* See store_checkpoint.h. */
#include "store_checkpoint.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"

#define WORKER_BUSY_TIMEOUT_MS 1000

/* Opens the checkpointer's connection, reading once: a connection learns that the file is in
 * WAL mode on its first read (until then a checkpoint is a silent no-op), and that read also
 * opens the -wal and -shm files, so the process's descriptors do not change later. */
static int open_db(struct store_checkpointer *c)
{
    int rc = sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(c->db, WORKER_BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->db, "PRAGMA schema_version", NULL, NULL, NULL);
    return rc;
}

/* Worker thread: only c->db, c->rc, c->error and the frame counts are touched here. */
static void run_checkpoint(uv_work_t *w)
{
    struct store_checkpointer *c = w->data;
    int rc = c->db != NULL ? SQLITE_OK : open_db(c);

    c->error[0] = '\0';
    if (rc == SQLITE_OK)
        rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &c->wal_frames,
                                       &c->checkpointed);
    c->rc = rc;
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        snprintf(c->error, sizeof c->error, "%s",
                 c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        /* Reopened on the next run. */
        sqlite3_close(c->db);
        c->db = NULL;
    }
}

static void close_db(struct store_checkpointer *c)
{
    sqlite3_close(c->db);
    c->db = NULL;
    free(c->path);
    c->path = NULL;
}

/* Loop thread. SQLITE_BUSY is PASSIVE's way of saying another checkpoint ran: not a failure. */
static void after_checkpoint(uv_work_t *w, int status)
{
    struct store_checkpointer *c = w->data;
    bool failed = status != 0 || (c->rc != SQLITE_OK && c->rc != SQLITE_BUSY);

    c->running = false;
    c->runs++;
    if (failed) {
        c->failures++;
        if (!c->failing)
            log_warn(c->log, "WAL checkpoint failed (retried; the relay is unaffected)",
                     "error=\"%s\"", status != 0 ? uv_strerror(status) : c->error);
    } else if (c->failing) {
        log_info(c->log, "WAL checkpoints work again", NULL);
    }
    c->failing = failed;
    if (c->closing)
        close_db(c);
}

static void on_tick(uv_timer_t *t)
{
    struct store_checkpointer *c = t->data;

    if (c->running || c->closing)
        return;
    c->running = true;
    if (uv_queue_work(c->loop, &c->work, run_checkpoint, after_checkpoint) != 0)
        c->running = false;
}

int store_checkpointer_start(struct store_checkpointer *c, uv_loop_t *loop, struct store *st,
                             const struct dmsgd_log *log, uint32_t interval_ms)
{
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->log = log;
    c->path = strdup(store_path(st));
    if (c->path == NULL)
        return DMSG_ENOMEM;
    if (store_disable_autocheckpoint(st) != 0) {
        free(c->path);
        c->path = NULL;
        return DMSG_EIO;
    }
    if (open_db(c) != SQLITE_OK) { /* the worker retries: the first run logs why */
        sqlite3_close(c->db);
        c->db = NULL;
    }
    c->work.data = c;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_tick, interval_ms, interval_ms);
    c->started = true;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
}

void store_checkpointer_close(struct store_checkpointer *c)
{
    if (!c->started || c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    if (!c->running)
        close_db(c);
}
