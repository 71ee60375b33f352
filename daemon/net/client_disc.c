/* The client's use of dmsg-discovery (discovery.md §1): our own client entry (delegated_servers
 * = the servers we hold sessions to), the destination's entry when dialing, a server's address,
 * and picking servers from available_servers for min_sessions. */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "dmsg/error.h"

/* A DELETE of our entry at close may not hold the close up longer than this. */
#define DISC_STOP_MAX_MS 3000u

static void on_reg_event(dmsg_disc_reg *reg, const dmsg_disc_reg_event *ev)
{
    dmsg_client *c = reg->data;
    switch (ev->kind) {
    case DMSG_DISC_REG_POSTED:
    case DMSG_DISC_REG_UPDATED:
        client_event(c, DMSG_CLIENT_ENTRY_POSTED, NULL, 0);
        break;
    case DMSG_DISC_REG_UNCHANGED:
        break;
    case DMSG_DISC_REG_FAILED:
        client_event(c, DMSG_CLIENT_ENTRY_FAILED, NULL, ev->reply ? ev->reply->err : DMSG_EIO);
        break;
    case DMSG_DISC_REG_DELETED:
        c->disc.reg_stopping = false;
        client_continue_close(c);
        break;
    }
}

int disc_init(dmsg_client *c, const char *url)
{
    client_disc *d = &c->disc;
    size_t len = strlen(url);
    if (len == 0 || len > DMSG_DISC_URL_MAX)
        return DMSG_EINVAL;
    d->reg = calloc(1, sizeof *d->reg);
    if (!d->reg)
        return DMSG_ENOMEM;
    if (dmsg_http_init(&d->http, c->loop) < 0) {
        free(d->reg);
        d->reg = NULL;
        return DMSG_EIO;
    }
    d->http_open = true;
    d->enabled = true;
    int err = dmsg_disc_client_init(&d->dc, &d->http, url);
    if (err == 0) {
        dmsg_disc_reg_config rc = {.pk = c->id.pk, .sk = c->id.sk, .client = true};
        err = dmsg_disc_reg_init(d->reg, &d->dc, &rc, on_reg_event);
        dmsg_wipe(&rc.sk, sizeof rc.sk);
        d->reg->data = c;
        d->reg_inited = err == 0;
    }
    return err; /* on error the caller closes the client, which closes the http */
}

/* ---------------------------------------------------------------------------------------------
 * Our entry */

void disc_sessions_changed(dmsg_client *c)
{
    client_disc *d = &c->disc;
    if (!d->reg_inited || c->closing)
        return;
    dmsg_pk up[DMSG_ENTRY_DELEGATED_MAX];
    size_t n = servers_up(c, up, DMSG_ENTRY_DELEGATED_MAX);
    if (n > DMSG_ENTRY_DELEGATED_MAX)
        n = DMSG_ENTRY_DELEGATED_MAX;
    dmsg_disc_reg_set_delegated(d->reg, up, n);
    /* Like the Go client, the entry is first posted once a session is up. */
    if (!d->reg_started && n > 0 && dmsg_disc_reg_start(d->reg) == 0)
        d->reg_started = true;
}

/* Starts deleting our entry at close; false when there is nothing to wait for. */
bool disc_stop_entry(dmsg_client *c)
{
    client_disc *d = &c->disc;
    if (!d->reg_started || !c->cfg.delete_entry_on_close)
        return false;
    if (dmsg_disc_reg_stop(d->reg) < 0)
        return false;
    d->reg_stopping = true;
    d->stop_deadline = client_now(c) + DISC_STOP_MAX_MS;
    client_arm(c, d->stop_deadline);
    return true;
}

static void on_reg_closed(dmsg_disc_reg *reg)
{
    dmsg_client *c = reg->data;
    c->pending_closes--;
    client_maybe_finish_close(c);
}

static void on_http_closed(dmsg_http *http)
{
    dmsg_client *c = http->data;
    c->pending_closes--;
    client_maybe_finish_close(c);
}

void disc_close(dmsg_client *c)
{
    client_disc *d = &c->disc;
    if (d->pick_req) {
        dmsg_disc_cancel(d->pick_req);
        d->pick_req = NULL;
    }
    if (d->reg_inited) {
        d->reg_inited = false;
        c->pending_closes++;
        dmsg_disc_reg_close(d->reg, on_reg_closed);
    }
    if (d->http_open) {
        dmsg_disc_client_cancel_all(&d->dc);
        d->http_open = false;
        d->http.data = c;
        c->pending_closes++;
        dmsg_http_close(&d->http, on_http_closed);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Picking servers for min_sessions */

void disc_want_pick(dmsg_client *c, uint32_t delay_ms)
{
    client_disc *d = &c->disc;
    if (!d->enabled || c->closing || c->cfg.n_servers > 0)
        return;
    uint64_t due = client_now(c) + delay_ms;
    if (d->pick_due == 0 || due < d->pick_due)
        d->pick_due = due;
    client_arm(c, d->pick_due);
}

void disc_server_failed(dmsg_client *c, const dmsg_pk *pk)
{
    client_disc *d = &c->disc;
    d->failed[d->failed_next] = *pk;
    d->failed_next = (d->failed_next + 1) % CLIENT_FAILED_MEMORY;
    if (d->n_failed < CLIENT_FAILED_MEMORY)
        d->n_failed++;
}

static bool failed_lately(const client_disc *d, const dmsg_pk *pk)
{
    for (unsigned i = 0; i < d->n_failed; i++)
        if (dmsg_pk_equal(&d->failed[i], pk))
            return true;
    return false;
}

static void pick_retry_later(dmsg_client *c)
{
    client_disc *d = &c->disc;
    uint32_t min = c->cfg.reconnect_min_ms, max = c->cfg.reconnect_max_ms;
    d->pick_backoff_ms = d->pick_backoff_ms == 0 ? min
                         : d->pick_backoff_ms > max / 2 ? max : d->pick_backoff_ms * 2;
    disc_want_pick(c, client_jitter(c, d->pick_backoff_ms));
}

static bool usable_server(dmsg_client *c, const dmsg_entry *e)
{
    return e->has_server && e->server.address[0] &&
           strlen(e->server.address) <= DMSG_CLIENT_ADDRESS_MAX &&
           dmsg_pk_validate(&e->static_pk) == 0 && !servers_find(c, &e->static_pk) &&
           !dmsg_pk_equal(&e->static_pk, &c->id.pk);
}

static void take_server(dmsg_client *c, const dmsg_entry *e)
{
    int err = 0;
    client_session *cs = servers_add(c, &e->static_pk, e->server.address, CS_PICKED, &err);
    if (cs)
        servers_start(c, cs);
}

static void on_available_servers(void *ctx, const dmsg_disc_reply *reply, dmsg_entry_iter *it)
{
    dmsg_client *c = ctx;
    client_disc *d = &c->disc;
    d->pick_req = NULL;
    if (reply->err < 0) {
        client_event(c, DMSG_CLIENT_DISCOVERY_FAILED, NULL, reply->err);
        pick_retry_later(c);
        return;
    }
    dmsg_entry *e = malloc(sizeof *e);
    if (!e) {
        pick_retry_later(c);
        return;
    }
    /* Two passes over the listing (highest availableSessions first): servers that did not fail
     * lately, then, if still short, those too. */
    dmsg_entry_iter first = *it;
    for (int pass = 0; pass < 2; pass++) {
        dmsg_entry_iter walk = first;
        while (servers_count_wanted(c) < c->cfg.min_sessions &&
               c->n_sessions < c->cfg.max_sessions && dmsg_entry_iter_next(&walk, e) == 1) {
            if (usable_server(c, e) && (pass == 1 || !failed_lately(d, &e->static_pk)))
                take_server(c, e);
        }
    }
    free(e);
    if (servers_count_wanted(c) < c->cfg.min_sessions)
        pick_retry_later(c);
    else
        d->pick_backoff_ms = 0;
}

static void pick_now(dmsg_client *c)
{
    client_disc *d = &c->disc;
    if (d->pick_req || servers_count_wanted(c) >= c->cfg.min_sessions)
        return;
    int err = 0;
    d->pick_req = dmsg_disc_available_servers(&d->dc, on_available_servers, c, &err);
    if (!d->pick_req)
        pick_retry_later(c);
}

void disc_tick(dmsg_client *c, uint64_t now, uint64_t *next_due)
{
    client_disc *d = &c->disc;
    if (d->reg_stopping) {
        if (d->stop_deadline <= now) {
            d->reg_stopping = false;
            client_continue_close(c);
        } else if (d->stop_deadline < *next_due) {
            *next_due = d->stop_deadline;
        }
    }
    if (d->pick_due == 0 || c->closing)
        return;
    if (d->pick_due <= now) {
        d->pick_due = 0;
        pick_now(c);
    } else if (d->pick_due < *next_due) {
        *next_due = d->pick_due;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Lookups */

static void on_dst_entry(void *ctx, const dmsg_disc_reply *reply, const dmsg_entry *e)
{
    dmsg_dial *dl = ctx;
    dl->lookup = NULL;
    if (reply->err == DMSG_ENOTFOUND) {
        dial_lookup_done(dl, NULL, reply->err, DMSG_WIRE_DISC_ENTRY_NOT_FOUND);
    } else if (reply->err < 0) {
        client_event(dl->client, DMSG_CLIENT_DISCOVERY_FAILED, NULL, reply->err);
        dial_lookup_done(dl, NULL, reply->err, 0);
    } else if (!e->has_client) {
        dial_lookup_done(dl, NULL, DMSG_ENOTFOUND, DMSG_WIRE_DISC_ENTRY_NOT_CLIENT);
    } else if (e->client.n_delegated == 0) {
        dial_lookup_done(dl, NULL, DMSG_ENOTFOUND, DMSG_WIRE_DISC_NO_DELEGATED);
    } else {
        dial_lookup_done(dl, e, 0, 0);
    }
}

int disc_lookup_dst(dmsg_client *c, dmsg_dial *dl)
{
    if (!c->disc.enabled)
        return DMSG_ENOTFOUND;
    int err = 0;
    dl->lookup = dmsg_disc_get_entry(&c->disc.dc, &dl->dst.pk, on_dst_entry, dl, &err);
    return dl->lookup ? 0 : err;
}

static void on_server_entry(void *ctx, const dmsg_disc_reply *reply, const dmsg_entry *e)
{
    client_session *cs = ctx;
    cs->lookup = NULL;
    if (reply->err < 0)
        servers_address_found(cs, NULL, reply->err);
    else if (!e->has_server || !e->server.address[0])
        servers_address_found(cs, NULL, DMSG_ENOTFOUND); /* wire code 101 */
    else
        servers_address_found(cs, e->server.address, 0);
}

int disc_lookup_server(dmsg_client *c, client_session *cs)
{
    if (!c->disc.enabled)
        return DMSG_ENOTFOUND;
    int err = 0;
    cs->lookup = dmsg_disc_get_entry(&c->disc.dc, &cs->pk, on_server_entry, cs, &err);
    return cs->lookup ? 0 : err;
}
