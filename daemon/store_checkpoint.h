/* WAL checkpoints off the event loop. The store's connection commits on the loop; left to
 * itself it would checkpoint inside a commit now and then, and a checkpoint fsyncs both files:
 * tens of milliseconds in which no session is served. The checkpointer turns that off and runs
 * a PASSIVE checkpoint (never waits for, nor blocks, the loop's writer) every interval from a
 * libuv worker thread, on a connection of its own. */
#ifndef DMSGD_STORE_CHECKPOINT_H
#define DMSGD_STORE_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "log.h"
#include "store.h"

struct sqlite3;

struct store_checkpointer {
    uv_loop_t *loop;
    const struct dmsgd_log *log;
    char *path;
    struct sqlite3 *db;           /* the worker's connection, opened on first use */
    uv_timer_t timer;
    uv_work_t work;
    bool started, running, closing, failing;
    int rc;                       /* the last run's SQLite result */
    char error[256];              /* its message, copied in the worker */
    uint64_t runs, failures;
    int wal_frames, checkpointed; /* of the last run */
};

/* Turns the store's own checkpoints off and checkpoints every interval_ms. */
int store_checkpointer_start(struct store_checkpointer *c, uv_loop_t *loop, struct store *st,
                             const struct dmsgd_log *log, uint32_t interval_ms);

/* Stops; a run in progress finishes on its worker, then its connection is closed. The loop must
 * run on until both are done (the timer's close and the work's end keep it alive). */
void store_checkpointer_close(struct store_checkpointer *c);

#endif
