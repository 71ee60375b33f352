/* See route_setup_log.h. */
#include "route_setup_log.h"

#include <string.h>
#include <time.h>

#include "admin.h"
#include "dmsgd.h"
#include "log.h"
#include "store.h"

static int64_t unix_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void store_report(struct dmsgd *d, const struct setup_node_report *r, int64_t now)
{
    char requester[DMSG_PK_HEX_LEN + 1], src[DMSG_PK_HEX_LEN + 1], dst[DMSG_PK_HEX_LEN + 1];
    int rc;

    if (*r->tag == 0) {
        struct store_route_setup row = {0};
        dmsg_pk_to_hex(&r->requester, requester);
        dmsg_pk_to_hex(&r->src, src);
        dmsg_pk_to_hex(&r->dst, dst);
        row.requester = requester;
        row.source = src;
        row.destination = dst;
        row.hops_forward = (int64_t)r->hops_forward;
        row.hops_reverse = (int64_t)r->hops_reverse;
        row.state = "received";
        row.started_at_ms = now - (int64_t)r->elapsed_ms;
        rc = store_route_setup_add(d->store, &row, r->tag);
        if (rc != 0) {
            log_warn(&d->log, "route setup not recorded", "error=\"%s\"",
                     store_last_error(d->store)->message);
            *r->tag = -1;
            return;
        }
        if (strcmp(r->state, "received") == 0)
            return;
    }
    if (*r->tag < 0)
        return;
    rc = store_route_setup_set_state(d->store, *r->tag, r->state, r->error, now, r->finished);
    if (rc != 0)
        log_warn(&d->log, "route setup state not recorded", "error=\"%s\"",
                 store_last_error(d->store)->message);
}

void route_setup_log_recover(struct dmsgd *d)
{
    int64_t abandoned = 0;

    if (d->store == NULL)
        return;
    if (store_route_setup_abandon(d->store, unix_ms(), "dmsgd stopped before the setup finished",
                                  &abandoned) != 0)
        log_warn(&d->log, "unfinished route setups not closed", "error=\"%s\"",
                 store_last_error(d->store)->message);
    else if (abandoned > 0)
        log_info(&d->log, "route setups left unfinished by the last run marked failed",
                 "setups=%lld", (long long)abandoned);
}

void route_setup_log_expire(struct dmsgd *d)
{
    int64_t removed = 0;

    if (d->store == NULL)
        return;
    if (store_route_setup_expire(d->store,
                                 unix_ms() - (int64_t)d->cfg.limits.route_setup_retention_s * 1000,
                                 &removed) != 0)
        log_warn(&d->log, "route setup history not expired", "error=\"%s\"",
                 store_last_error(d->store)->message);
    else if (removed > 0)
        log_debug(&d->log, "route setup history expired", "setups=%lld", (long long)removed);
}

void route_setup_log_report(struct dmsgd *d, const struct setup_node_report *r)
{
    int64_t now = unix_ms();

    if (d->store != NULL)
        store_report(d, r, now);
    admin_route_setup_event(d->admin, r->id, &r->requester, &r->src, &r->dst, r->state,
                            r->error, r->finished ? (int64_t)r->elapsed_ms : -1);
    if (r->finished)
        log_info(&d->log, "route setup", "id=%llu state=%s hops=%zu/%zu ms=%llu error=\"%s\"",
                 (unsigned long long)r->id, r->state, r->hops_forward, r->hops_reverse,
                 (unsigned long long)r->elapsed_ms, r->error);
}
