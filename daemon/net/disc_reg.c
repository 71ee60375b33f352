/* Keeping one discovery entry registered, as the Go dmsg server (updateServerEntry, its retrier
 * and its update loop) and client (updateClientEntry) do. */
#include <stdlib.h>
#include <string.h>

#include "dmsg/disc_client.h"
#include "dmsg/error.h"

enum reg_state { REG_IDLE, REG_STARTING, REG_RUNNING, REG_STOPPING, REG_STOPPED, REG_CLOSED };

#define DEFAULT_INTERVAL_MS 60000u
#define DEFAULT_BACKOFF_MS 1000u
#define DEFAULT_BACKOFF_MAX_MS 20000u
#define DEFAULT_BACKOFF_FACTOR 1.3

static uv_loop_t *loop_of(const dmsg_disc_reg *reg)
{
    return reg->client->http->loop;
}

static bool printable(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return false;
    return true;
}

int dmsg_disc_reg_init(dmsg_disc_reg *reg, dmsg_disc_client *client,
                       const dmsg_disc_reg_config *cfg, dmsg_disc_reg_event_cb on_event)
{
    memset(reg, 0, sizeof *reg);
    if (!cfg->server && !cfg->client)
        return DMSG_EINVAL;
    if (cfg->server && (!cfg->address || !cfg->address[0] || !printable(cfg->address) ||
                        dmsg_entry_set_text(reg->address, cfg->address) < 0))
        return DMSG_EINVAL;
    reg->client = client;
    reg->pk = cfg->pk;
    reg->sk = cfg->sk;
    reg->want_server = cfg->server;
    reg->want_client = cfg->client;
    reg->max_sessions = cfg->max_sessions;
    reg->interval_ms = cfg->update_interval_ms ? cfg->update_interval_ms : DEFAULT_INTERVAL_MS;
    reg->backoff_initial_ms =
        cfg->backoff_initial_ms ? cfg->backoff_initial_ms : DEFAULT_BACKOFF_MS;
    reg->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
    reg->backoff_factor = cfg->backoff_factor > 0 ? cfg->backoff_factor : DEFAULT_BACKOFF_FACTOR;
    reg->backoff_ms = reg->backoff_initial_ms;
    reg->on_event = on_event;
    reg->state = REG_IDLE;
    if (uv_timer_init(loop_of(reg), &reg->timer) < 0) {
        dmsg_wipe(&reg->sk, sizeof reg->sk);
        return DMSG_EIO;
    }
    reg->timer.data = reg;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The entry we publish */

static int64_t available_sessions(const dmsg_disc_reg *reg)
{
    int64_t n;
    if (__builtin_sub_overflow(reg->max_sessions, reg->sessions, &n))
        n = reg->sessions > 0 ? INT64_MIN : INT64_MAX;
    return n;
}

static void build(dmsg_disc_reg *reg, uint64_t sequence, int64_t timestamp)
{
    dmsg_entry *e = &reg->entry;
    dmsg_entry_init(e, &reg->pk, sequence, timestamp);
    if (reg->want_client)
        dmsg_entry_set_client(e, reg->delegated, reg->n_delegated);
    if (reg->want_server)
        dmsg_entry_set_server(e, reg->address, available_sessions(reg));
}

/* Whether the parts we manage differ from the stored entry (members we do not manage, such as
 * a serverType a newer discovery stamped, are not compared). */
static bool differs(const dmsg_entry *want, const dmsg_entry *stored)
{
    if (want->has_server &&
        (!stored->has_server || strcmp(want->server.address, stored->server.address) != 0 ||
         want->server.available_sessions != stored->server.available_sessions))
        return true;
    if (want->has_client &&
        (!stored->has_client || want->client.n_delegated != stored->client.n_delegated ||
         memcmp(want->client.delegated, stored->client.delegated,
                want->client.n_delegated * sizeof(dmsg_pk)) != 0))
        return true;
    return false;
}

/* Client entries are written on every change; server entries also when the interval passed. */
static bool refresh_due(const dmsg_disc_reg *reg)
{
    if (!reg->want_server || !reg->have_last)
        return true;
    return uv_now(loop_of(reg)) - reg->last_update_ms >= reg->interval_ms;
}

/* ---------------------------------------------------------------------------------------------
 * Outcomes */

static void emit(dmsg_disc_reg *reg, dmsg_disc_reg_event_kind kind, const dmsg_disc_reply *reply,
                 uint64_t retry_in_ms)
{
    dmsg_disc_reg_event ev = {
        .kind = kind, .reply = reply, .retry_in_ms = retry_in_ms,
        .entry = kind == DMSG_DISC_REG_POSTED || kind == DMSG_DISC_REG_UPDATED ? &reg->entry : NULL,
    };
    if (reg->on_event)
        reg->on_event(reg, &ev);
}

static void begin_update(dmsg_disc_reg *reg);
static void on_timer(uv_timer_t *timer);

static void arm(dmsg_disc_reg *reg, uint64_t ms)
{
    uv_timer_start(&reg->timer, on_timer, ms, 0);
}

/* After the owner heard of an outcome: run the update a change asked for meanwhile. */
static void run_pending_change(dmsg_disc_reg *reg)
{
    if (reg->state == REG_RUNNING && reg->dirty && !reg->inflight)
        begin_update(reg);
}

static void succeeded(dmsg_disc_reg *reg, dmsg_disc_reg_event_kind kind)
{
    reg->have_last = true;
    reg->last_update_ms = uv_now(loop_of(reg));
    if (reg->state == REG_STARTING) {
        reg->state = REG_RUNNING;
        if (reg->want_server)
            arm(reg, reg->interval_ms);
    }
    emit(reg, kind, NULL, 0);
    run_pending_change(reg);
}

/* Go's retrier: wait `backoff` from the start of the failed attempt, then grow it by the factor
 * as long as it stays within the maximum. */
static uint64_t next_retry(dmsg_disc_reg *reg)
{
    uint64_t wait = reg->backoff_ms;
    double grown = (double)reg->backoff_ms * reg->backoff_factor;
    if (grown <= (double)reg->backoff_max_ms)
        reg->backoff_ms = (uint64_t)grown;
    uint64_t spent = uv_now(loop_of(reg)) - reg->attempt_started_ms;
    return spent >= wait ? 0 : wait - spent;
}

static void failed(dmsg_disc_reg *reg, const dmsg_disc_reply *reply)
{
    uint64_t retry_in = 0;
    if (reg->state == REG_STARTING) {
        retry_in = next_retry(reg);
        arm(reg, retry_in);
    }
    emit(reg, DMSG_DISC_REG_FAILED, reply, retry_in);
    run_pending_change(reg);
}

/* A failure of ours (no answer to report). */
static dmsg_disc_reply local_failure(int err)
{
    dmsg_disc_reply r = {.err = err, .result = DMSG_DISC_UNEXPECTED, .message = "", .detail = ""};
    return r;
}

static void failed_with(dmsg_disc_reg *reg, int err)
{
    dmsg_disc_reply r = local_failure(err);
    failed(reg, &r);
}

/* ---------------------------------------------------------------------------------------------
 * One update: GET own entry, then POST a new one or PUT the next iteration. */

static void on_written(dmsg_disc_reg *reg, const dmsg_disc_reply *reply,
                       dmsg_disc_reg_event_kind kind)
{
    reg->inflight = NULL;
    if (reply->err < 0)
        failed(reg, reply);
    else
        succeeded(reg, kind);
}

static void on_posted(void *ctx, const dmsg_disc_reply *reply)
{
    on_written(ctx, reply, DMSG_DISC_REG_POSTED);
}

static void on_put(void *ctx, const dmsg_disc_reply *reply)
{
    on_written(ctx, reply, DMSG_DISC_REG_UPDATED);
}

static void post_new(dmsg_disc_reg *reg)
{
    int err;
    build(reg, 0, dmsg_disc_client_now(reg->client));
    if ((err = dmsg_entry_sign(&reg->entry, &reg->sk)) == 0)
        reg->inflight = dmsg_disc_post_entry(reg->client, &reg->entry, on_posted, reg, &err);
    if (!reg->inflight)
        failed_with(reg, err);
}

static void on_own_entry(void *ctx, const dmsg_disc_reply *reply, const dmsg_entry *stored)
{
    dmsg_disc_reg *reg = ctx;
    reg->inflight = NULL;
    if (reply->err < 0) {
        /* Whatever the reason (404 after expiry, or a transport failure), start over. */
        post_new(reg);
        return;
    }
    if (reg->want_server && !stored->has_server) {
        failed_with(reg, DMSG_EEXIST); /* "entry in discovery is not of a dmsg server" */
        return;
    }
    build(reg, stored->sequence, stored->timestamp);
    if (!differs(&reg->entry, stored) && !refresh_due(reg)) {
        succeeded(reg, DMSG_DISC_REG_UNCHANGED);
        return;
    }
    int err;
    reg->inflight = dmsg_disc_put_entry(reg->client, &reg->entry, &reg->sk, on_put, reg, &err);
    if (!reg->inflight)
        failed_with(reg, err);
}

static void begin_update(dmsg_disc_reg *reg)
{
    int err;
    reg->dirty = false;
    reg->attempt_started_ms = uv_now(loop_of(reg));
    reg->inflight = dmsg_disc_get_entry(reg->client, &reg->pk, on_own_entry, reg, &err);
    if (!reg->inflight)
        failed_with(reg, err);
}

static void on_timer(uv_timer_t *timer)
{
    dmsg_disc_reg *reg = timer->data;
    if (reg->state == REG_STARTING) {
        begin_update(reg);
        return;
    }
    if (reg->state != REG_RUNNING)
        return;
    uint64_t since = uv_now(loop_of(reg)) - reg->last_update_ms;
    if (reg->inflight) {
        reg->dirty = true;
        arm(reg, reg->interval_ms);
    } else if (since < reg->interval_ms) {
        arm(reg, reg->interval_ms - since); /* a change updated the entry meanwhile */
    } else {
        arm(reg, reg->interval_ms);
        begin_update(reg);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Public API */

int dmsg_disc_reg_start(dmsg_disc_reg *reg)
{
    if (reg->state != REG_IDLE)
        return DMSG_ESTATE;
    reg->state = REG_STARTING;
    begin_update(reg);
    return 0;
}

static void changed(dmsg_disc_reg *reg)
{
    if (reg->state != REG_STARTING && reg->state != REG_RUNNING)
        return;
    if (reg->inflight)
        reg->dirty = true;
    else if (reg->state == REG_RUNNING)
        begin_update(reg);
}

void dmsg_disc_reg_set_sessions(dmsg_disc_reg *reg, int64_t sessions)
{
    reg->sessions = sessions;
    changed(reg);
}

int dmsg_disc_reg_set_delegated(dmsg_disc_reg *reg, const dmsg_pk *servers, size_t n)
{
    if (n > DMSG_ENTRY_DELEGATED_MAX)
        return DMSG_ETOOBIG;
    if (n > 0)
        memcpy(reg->delegated, servers, n * sizeof *servers);
    reg->n_delegated = n;
    changed(reg);
    return 0;
}

static void stopped(dmsg_disc_reg *reg, const dmsg_disc_reply *reply)
{
    reg->inflight = NULL;
    reg->state = REG_STOPPED;
    emit(reg, DMSG_DISC_REG_DELETED, reply, 0);
}

static void on_deleted(void *ctx, const dmsg_disc_reply *reply)
{
    stopped(ctx, reply);
}

static void on_own_entry_to_delete(void *ctx, const dmsg_disc_reply *reply,
                                   const dmsg_entry *stored)
{
    dmsg_disc_reg *reg = ctx;
    reg->inflight = NULL;
    if (reply->err < 0) {
        stopped(reg, reply);
        return;
    }
    /* The discovery checks a DELETE like a POST, timestamp window included: sign afresh. */
    int err;
    build(reg, stored->sequence, dmsg_disc_client_now(reg->client));
    if ((err = dmsg_entry_sign(&reg->entry, &reg->sk)) == 0)
        reg->inflight = dmsg_disc_delete_entry(reg->client, &reg->entry, on_deleted, reg, &err);
    if (!reg->inflight) {
        dmsg_disc_reply r = local_failure(err);
        stopped(reg, &r);
    }
}

int dmsg_disc_reg_stop(dmsg_disc_reg *reg)
{
    if (reg->state == REG_STOPPING || reg->state == REG_STOPPED || reg->state == REG_CLOSED)
        return DMSG_ESTATE;
    uv_timer_stop(&reg->timer);
    dmsg_disc_cancel(reg->inflight);
    reg->inflight = NULL;
    reg->state = REG_STOPPING;
    int err;
    reg->inflight = dmsg_disc_get_entry(reg->client, &reg->pk, on_own_entry_to_delete, reg, &err);
    if (!reg->inflight) {
        dmsg_disc_reply r = local_failure(err);
        stopped(reg, &r);
    }
    return 0;
}

static void on_timer_closed(uv_handle_t *handle)
{
    dmsg_disc_reg *reg = handle->data;
    if (reg->on_close)
        reg->on_close(reg);
}

void dmsg_disc_reg_close(dmsg_disc_reg *reg, dmsg_disc_reg_close_cb close_cb)
{
    if (reg->state == REG_CLOSED)
        return;
    reg->state = REG_CLOSED;
    reg->on_close = close_cb;
    dmsg_disc_cancel(reg->inflight);
    reg->inflight = NULL;
    dmsg_wipe(&reg->sk, sizeof reg->sk);
    uv_close((uv_handle_t *)&reg->timer, on_timer_closed);
}
