/* The server's entry in a dmsg-discovery (embedded or external): registered at start, updated
 * when the session count changes and every update interval, deleted at shutdown (spec
 * dmsg-wire.md §8.2). A thin owner of the discovery client's registration helper, so the
 * daemon sees three calls: start, set_sessions, close.
 *
 * Discovery I/O is asynchronous and never blocks the relay (threats.md F5/X7). */
#ifndef DMSGD_REGISTRATION_H
#define DMSGD_REGISTRATION_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "dmsg/disc_client.h"
#include "dmsg/http_client.h"
#include "log.h"

struct registration_config {
    const char *discovery_url;
    dmsg_pk pk;
    dmsg_sk sk;
    const char *address;            /* advertised host:port */
    int64_t max_sessions;           /* availableSessions = max_sessions - sessions */
    uint64_t update_interval_ms;
    /* Also publish a client part delegating to ourselves, in the same entry, so that older
     * clients that look up a client entry reach our own services (port 36, 80). */
    bool client_self;
};

struct registration {
    dmsg_http http;
    dmsg_disc_client client;
    dmsg_disc_reg reg;
    uv_timer_t stop_timer;
    const struct dmsgd_log *log;
    unsigned open_parts;            /* http, reg, timer not yet closed */
    bool stopping;
    bool finished;
    uint64_t updates_ok;            /* entries written (POSTED, UPDATED), for metrics */
    uint64_t updates_failed;        /* FAILED events */
    void (*on_closed)(void *arg);
    void *on_closed_arg;
};

/* Starts registering (retried with backoff until the discovery answers). 0 or a DMSG_E code;
 * on error nothing needs closing. */
int registration_start(struct registration *r, uv_loop_t *loop,
                       const struct registration_config *cfg, const struct dmsgd_log *log);

void registration_set_sessions(struct registration *r, int64_t sessions);

/* Deletes the entry (waiting at most delete_timeout_ms), then closes everything; on_closed
 * runs from the loop once all is closed. */
void registration_close(struct registration *r, uint64_t delete_timeout_ms,
                        void (*on_closed)(void *arg), void *arg);

#endif
