/* The server's discovery entry; see registration.h. */
#include "registration.h"

#include <stddef.h>
#include <string.h>

#include "dmsg/error.h"

static struct registration *of_reg(dmsg_disc_reg *reg)
{
    return (struct registration *)((char *)reg - offsetof(struct registration, reg));
}

static void part_closed(struct registration *r)
{
    if (--r->open_parts == 0 && r->on_closed != NULL)
        r->on_closed(r->on_closed_arg);
}

static void finish(struct registration *r);

static void on_reg_event(dmsg_disc_reg *reg, const dmsg_disc_reg_event *ev)
{
    struct registration *r = of_reg(reg);
    const char *detail = "";

    if (ev->reply != NULL)
        detail = ev->reply->message[0] != '\0' ? ev->reply->message : ev->reply->detail;
    switch (ev->kind) {
    case DMSG_DISC_REG_POSTED:
        r->updates_ok++;
        log_info(r->log, "registered in discovery", "url=%s", r->client.base);
        break;
    case DMSG_DISC_REG_UPDATED:
        r->updates_ok++;
        log_debug(r->log, "discovery entry updated", "sequence=%llu available_sessions=%lld",
                  (unsigned long long)ev->entry->sequence,
                  (long long)ev->entry->server.available_sessions);
        break;
    case DMSG_DISC_REG_UNCHANGED:
        break;
    case DMSG_DISC_REG_FAILED: {
        char quoted[300];
        r->updates_failed++;
        log_warn(r->log, "discovery registration failed", "url=%s status=%ld err=\"%s\" detail=%s "
                 "retry_in_ms=%llu", r->client.base, ev->reply->status,
                 dmsg_strerror(ev->reply->err), log_quote(detail, quoted, sizeof quoted),
                 (unsigned long long)ev->retry_in_ms);
        break;
    }
    case DMSG_DISC_REG_DELETED:
        log_info(r->log, "discovery entry deleted", "err=\"%s\"",
                 ev->reply->err == 0 ? "none" : dmsg_strerror(ev->reply->err));
        if (r->stopping)
            finish(r);
        break;
    }
}

static void on_http_closed(dmsg_http *http)
{
    part_closed(http->data);
}

static void on_timer_closed(uv_handle_t *h)
{
    part_closed(h->data);
}

int registration_start(struct registration *r, uv_loop_t *loop,
                       const struct registration_config *cfg, const struct dmsgd_log *log)
{
    dmsg_disc_reg_config rc;
    int err;

    memset(r, 0, sizeof *r);
    r->log = log;
    err = dmsg_http_init(&r->http, loop);
    if (err != 0)
        return err;
    r->http.data = r;
    r->open_parts = 1;
    err = dmsg_disc_client_init(&r->client, &r->http, cfg->discovery_url);
    if (err == 0) {
        memset(&rc, 0, sizeof rc);
        rc.pk = cfg->pk;
        rc.sk = cfg->sk;
        rc.server = true;
        rc.address = cfg->address;
        rc.max_sessions = cfg->max_sessions;
        rc.update_interval_ms = cfg->update_interval_ms;
        rc.client = cfg->client_self;
        err = dmsg_disc_reg_init(&r->reg, &r->client, &rc, on_reg_event);
        dmsg_wipe(&rc.sk, sizeof rc.sk);
        if (err == 0 && cfg->client_self)
            err = dmsg_disc_reg_set_delegated(&r->reg, &cfg->pk, 1);
    }
    if (err != 0) {
        r->on_closed = NULL;
        dmsg_http_close(&r->http, NULL);
        return err;
    }
    r->open_parts++; /* the registration: closed through the DELETED path or close */
    uv_timer_init(loop, &r->stop_timer);
    r->stop_timer.data = r;
    r->open_parts++;
    err = dmsg_disc_reg_start(&r->reg);
    if (err != 0)
        log_warn(log, "discovery registration did not start", "err=\"%s\"", dmsg_strerror(err));
    return 0;
}

void registration_set_sessions(struct registration *r, int64_t sessions)
{
    if (!r->stopping)
        dmsg_disc_reg_set_sessions(&r->reg, sessions);
}

static void on_reg_closed(dmsg_disc_reg *reg)
{
    struct registration *r = of_reg(reg);

    dmsg_disc_client_cancel_all(&r->client);
    dmsg_http_close(&r->http, on_http_closed);
    part_closed(r);
}

/* The entry is deleted, or the deletion gave up: close every part. */
static void finish(struct registration *r)
{
    if (r->finished)
        return;
    r->finished = true;
    uv_timer_stop(&r->stop_timer);
    uv_close((uv_handle_t *)&r->stop_timer, on_timer_closed);
    dmsg_disc_reg_close(&r->reg, on_reg_closed);
}

static void on_stop_timeout(uv_timer_t *t)
{
    struct registration *r = t->data;

    log_warn(r->log, "discovery did not confirm the deletion in time", NULL);
    finish(r);
}

void registration_close(struct registration *r, uint64_t delete_timeout_ms,
                        void (*on_closed)(void *arg), void *arg)
{
    if (r->stopping)
        return;
    r->stopping = true;
    r->on_closed = on_closed;
    r->on_closed_arg = arg;
    if (delete_timeout_ms > 0 && dmsg_disc_reg_stop(&r->reg) == 0) {
        if (!r->finished)
            uv_timer_start(&r->stop_timer, on_stop_timeout, delete_timeout_ms, 0);
    } else {
        finish(r);
    }
}
