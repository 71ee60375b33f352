/* Dialing pk:port: which of our sessions to try, in which order (upstream-mesh.md §5, issue 4
 * item 8), one try at a time.
 *
 *   1. the server that last reached the destination (route cache);
 *   2. our sessions to the destination's delegated servers, in the entry's order;
 *   3. DMSG_MESH_FIRST: our other sessions (a meshed server may deliver);
 *   4. new sessions to the first new_sessions_per_dial delegated servers we do not hold
 *      (discovery mode without a fixed server list);
 *   5. DMSG_MESH_LAST: our other sessions.
 * Without a usable client entry (no discovery, no entry, a server entry, no delegated servers)
 * every session is tried, the one to the destination's own key first.
 * When nothing is left to try but sessions are still coming up, the dial waits for them. */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "dmsg/error.h"

/* ---------------------------------------------------------------------------------------------
 * Route cache: destination -> the server through which a dial last succeeded */

void route_remember(dmsg_client *c, const dmsg_pk *dst, const dmsg_pk *server)
{
    for (unsigned i = 0; i < CLIENT_ROUTE_CACHE; i++) {
        if (c->routes[i].used && dmsg_pk_equal(&c->routes[i].dst, dst)) {
            c->routes[i].server = *server;
            return;
        }
    }
    unsigned i = c->route_next;
    c->route_next = (c->route_next + 1) % CLIENT_ROUTE_CACHE;
    c->routes[i].dst = *dst;
    c->routes[i].server = *server;
    c->routes[i].used = true;
}

const dmsg_pk *route_lookup(const dmsg_client *c, const dmsg_pk *dst)
{
    for (unsigned i = 0; i < CLIENT_ROUTE_CACHE; i++)
        if (c->routes[i].used && dmsg_pk_equal(&c->routes[i].dst, dst))
            return &c->routes[i].server;
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Outcome */

/* How telling a failure is: a signed refusal says most, then a silent destination, then a
 * closed stream, then anything else. */
static int failure_rank(int err)
{
    switch (err) {
    case DMSG_EWIRE:
        return 3;
    case DMSG_ETIMEOUT:
        return 2;
    case DMSG_ECLOSED:
        return 1;
    default:
        return 0;
    }
}

static void note_failure(dmsg_dial *d, int err, uint16_t code)
{
    if (d->best_err == 0 || failure_rank(err) > failure_rank(d->best_err)) {
        d->best_err = err;
        d->best_code = code;
    }
}

static void free_dial(dmsg_client *c, dmsg_dial *d)
{
    if (d->lookup)
        dmsg_disc_cancel(d->lookup);
    if (d->src_port)
        dmsg_porter_release(&c->porter, d->src_port);
    free(d->delegated);
    free(d);
}

/* Records the outcome; the callback runs from the loop (deferred work). */
static void dial_finish(dmsg_dial *d, dmsg_conn *conn, int err, uint16_t code)
{
    if (d->state == DIAL_DONE)
        return;
    if (d->lookup) {
        dmsg_disc_cancel(d->lookup);
        d->lookup = NULL;
    }
    d->state = DIAL_DONE;
    d->result = conn;
    d->result_err = err;
    d->result_code = code;
    client_defer_dials(d->client);
}

static void finish_failed(dmsg_dial *d)
{
    /* When discovery said why the destination cannot be found and the blind tries through our
     * sessions only met closed streams, the discovery's reason says more. */
    if (d->best_err && !(d->lookup_code && failure_rank(d->best_err) <= 1))
        dial_finish(d, NULL, d->best_err, d->best_code);
    else
        dial_finish(d, NULL, DMSG_ENOTFOUND, d->lookup_code);
}

/* Runs the callback of one finished dial and frees it. */
static void report(dmsg_client *c, dmsg_dial *d)
{
    dmsg_conn *conn = d->result;
    if (conn) {
        conn->dial = NULL;
        d->cb(c, conn, 0, 0, d->arg);
        if (!conn->ready)
            conn_abort(conn, 0); /* the caller did not set callbacks: not wanted */
    } else {
        d->cb(c, NULL, d->result_err, d->result_code, d->arg);
    }
    free_dial(c, d);
}

void dials_run_deferred(dmsg_client *c)
{
    /* Collect first: callbacks may start new dials or close the client. */
    dmsg_dial *done = NULL, **tail = &done;
    for (dmsg_dial **pp = &c->dials; *pp;) {
        dmsg_dial *d = *pp;
        if (d->state == DIAL_DONE) {
            *pp = d->next;
            d->next = NULL;
            *tail = d;
            tail = &d->next;
        } else {
            pp = &d->next;
        }
    }
    for (dmsg_dial *d = c->dials; d; d = d->next) {
        if (d->state == DIAL_STARTING && d->deferred_start) {
            d->deferred_start = false;
            dial_begin(d);
        }
    }
    while (done) {
        dmsg_dial *d = done;
        done = d->next;
        report(c, d);
    }
}

/* The conn of a successful dial died before the callback ran. */
void dial_conn_lost(dmsg_dial *d, dmsg_conn *conn, int err)
{
    if (d->result != conn)
        return;
    d->result = NULL;
    d->result_err = err;
    d->result_code = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Tries */

static bool tried(const dmsg_dial *d, const dmsg_pk *pk)
{
    for (size_t i = 0; i < d->n_tried; i++)
        if (dmsg_pk_equal(&d->tried[i], pk))
            return true;
    return false;
}

static bool is_delegated(const dmsg_dial *d, const dmsg_pk *pk)
{
    for (size_t i = 0; i < d->n_delegated; i++)
        if (dmsg_pk_equal(&d->delegated[i], pk))
            return true;
    return false;
}

/* A session we could try now. */
static bool triable(const dmsg_dial *d, const client_session *cs)
{
    return cs && cs->state == CS_UP && cs->s && !tried(d, &cs->pk) &&
           d->n_tried < CLIENT_DIAL_TRIED_MAX;
}

/* Starts a try through cs; false when it could not start (then the next one is taken). */
static bool try_session(dmsg_dial *d, client_session *cs, uint32_t timeout_ms)
{
    dmsg_client *c = d->client;
    d->tried[d->n_tried++] = cs->pk;
    dmsg_conn *conn = conn_new(c, &cs->pk);
    if (!conn) {
        note_failure(d, DMSG_ELIMIT, 0);
        return false;
    }
    int err = conn_start_dial(conn, cs->s, d, timeout_ms);
    if (err < 0) {
        conn_discard(conn);
        note_failure(d, err, 0);
        return false;
    }
    d->try_conn = conn;
    d->state = DIAL_TRYING;
    return true;
}

/* Our other sessions, up to mesh_tries_max of them. */
static bool try_mesh(dmsg_dial *d)
{
    dmsg_client *c = d->client;
    for (client_session *cs = c->sessions; cs; cs = cs->next) {
        if (d->mesh_tries >= c->cfg.mesh_tries_max)
            return false;
        if (!triable(d, cs) || is_delegated(d, &cs->pk))
            continue;
        d->mesh_tries++;
        if (try_session(d, cs, c->cfg.mesh_try_timeout_ms))
            return true;
    }
    return false;
}

static bool opened_for(const dmsg_dial *d, const dmsg_pk *pk)
{
    for (unsigned i = 0; i < d->n_opened; i++)
        if (dmsg_pk_equal(&d->opened[i], pk))
            return true;
    return false;
}

/* New sessions to the first delegated servers we do not hold; *waiting when one is coming up.
 * Each server gets one new session per dial: one that failed is not opened again. */
static bool try_new_delegated(dmsg_dial *d, bool *waiting)
{
    dmsg_client *c = d->client;
    if (!c->disc.enabled || c->cfg.n_servers > 0)
        return false; /* a fixed list means exactly those servers */
    unsigned considered = 0;
    for (size_t i = 0; i < d->n_delegated && considered < c->cfg.new_sessions_per_dial; i++) {
        const dmsg_pk *pk = &d->delegated[i];
        if (dmsg_pk_equal(pk, &c->id.pk))
            continue;
        client_session *cs = servers_find(c, pk);
        if (cs && cs->state == CS_UP) {
            /* held: tried in step 2, unless it came up for this very dial */
            if (triable(d, cs) && try_session(d, cs, c->cfg.dial_timeout_ms))
                return true;
            continue;
        }
        considered++;
        if (tried(d, pk) || opened_for(d, pk))
            continue;
        if (cs) {
            if (cs->state != CS_BACKOFF)
                *waiting = true;
            continue;
        }
        if (d->n_opened == CLIENT_DIAL_OPEN_MAX)
            continue;
        int err = 0;
        cs = servers_add(c, pk, NULL, CS_DIAL, &err);
        if (!cs) {
            note_failure(d, err, 0);
            continue;
        }
        d->opened[d->n_opened++] = *pk;
        servers_start(c, cs);
        if (servers_find(c, pk)) /* a start that failed at once has dropped it already */
            *waiting = true;
    }
    return false;
}

static bool try_with_entry(dmsg_dial *d, bool *waiting)
{
    dmsg_client *c = d->client;
    for (size_t i = 0; i < d->n_delegated; i++) {
        client_session *cs = servers_find(c, &d->delegated[i]);
        if (triable(d, cs) && try_session(d, cs, c->cfg.dial_timeout_ms))
            return true;
    }
    if (c->cfg.mesh == DMSG_MESH_FIRST && try_mesh(d))
        return true;
    if (try_new_delegated(d, waiting))
        return true;
    if (c->cfg.mesh == DMSG_MESH_LAST && try_mesh(d))
        return true;
    if (c->cfg.mesh != DMSG_MESH_OFF && servers_any_pending(c))
        *waiting = true;
    return false;
}

/* No usable entry: every session, the one to the destination's own key first. Without any
 * discovery (fixed servers, the reference's "direct" mode) each of them counts as delegated. */
static bool try_every_session(dmsg_dial *d, bool *waiting)
{
    dmsg_client *c = d->client;
    uint32_t timeout = c->disc.enabled ? c->cfg.mesh_try_timeout_ms : c->cfg.dial_timeout_ms;
    client_session *own = servers_find(c, &d->dst.pk);
    if (triable(d, own) && try_session(d, own, timeout))
        return true;
    for (client_session *cs = c->sessions; cs; cs = cs->next)
        if (triable(d, cs) && try_session(d, cs, timeout))
            return true;
    if (servers_any_pending(c))
        *waiting = true;
    return false;
}

/* Takes the next step of a dial whose previous try (if any) is over. */
void dial_next(dmsg_dial *d)
{
    dmsg_client *c = d->client;
    if (d->state == DIAL_DONE || d->try_conn)
        return;
    if (c->closing) {
        dial_finish(d, NULL, DMSG_ECLOSED, 0);
        return;
    }
    if (client_now(c) >= d->deadline) {
        note_failure(d, DMSG_ETIMEOUT, 0);
        finish_failed(d);
        return;
    }
    const dmsg_pk *route = route_lookup(c, &d->dst.pk);
    client_session *cached = route ? servers_find(c, route) : NULL;
    if (triable(d, cached) && try_session(d, cached, c->cfg.dial_timeout_ms))
        return;
    bool waiting = false;
    bool started = d->lookup_failed ? try_every_session(d, &waiting)
                                    : try_with_entry(d, &waiting);
    if (started)
        return;
    if (waiting) {
        d->state = DIAL_WAITING;
        client_arm(c, d->deadline);
        return;
    }
    finish_failed(d);
}

void dial_try_failed(dmsg_dial *d, dmsg_conn *conn, int err, uint16_t code)
{
    if (d->try_conn != conn || d->state == DIAL_DONE)
        return;
    d->try_conn = NULL;
    note_failure(d, err, code);
    dial_next(d);
}

void dial_try_succeeded(dmsg_dial *d, dmsg_conn *conn)
{
    d->try_conn = NULL;
    route_remember(d->client, &d->dst.pk, &conn->server_pk);
    dial_finish(d, conn, 0, 0);
}

void dial_lookup_done(dmsg_dial *d, const dmsg_entry *e, int err, uint16_t code)
{
    d->lookup = NULL;
    if (d->state == DIAL_DONE)
        return;
    if (e && err == 0) {
        d->delegated = malloc(e->client.n_delegated * sizeof *d->delegated);
        if (d->delegated) {
            memcpy(d->delegated, e->client.delegated,
                   e->client.n_delegated * sizeof *d->delegated);
            d->n_delegated = e->client.n_delegated;
        } else {
            d->lookup_failed = true;
        }
    } else {
        d->lookup_failed = true;
        d->lookup_code = code;
    }
    dial_next(d);
}

void dial_begin(dmsg_dial *d)
{
    dmsg_client *c = d->client;
    if (!c->disc.enabled) {
        d->lookup_failed = true; /* direct mode: every server may reach everybody */
        dial_next(d);
        return;
    }
    int err = disc_lookup_dst(c, d);
    if (err < 0)
        dial_lookup_done(d, NULL, err, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Events */

void dials_sessions_changed(dmsg_client *c)
{
    for (dmsg_dial *d = c->dials; d; d = d->next)
        if (d->state == DIAL_WAITING)
            dial_next(d);
}

void dials_tick(dmsg_client *c, uint64_t now, uint64_t *next_due)
{
    for (dmsg_dial *d = c->dials; d; d = d->next) {
        if (d->state != DIAL_WAITING && d->state != DIAL_STARTING)
            continue;
        if (d->deadline <= now) {
            note_failure(d, DMSG_ETIMEOUT, 0);
            finish_failed(d);
        } else if (d->deadline < *next_due) {
            *next_due = d->deadline;
        }
    }
}

/* Client closing: every dial ends now, with its callback (we run from deferred work). */
void dials_fail_all(dmsg_client *c, int err)
{
    for (dmsg_dial *d = c->dials; d; d = d->next) {
        if (d->state == DIAL_DONE)
            continue;
        if (d->try_conn) {
            d->try_conn->dial = NULL;
            conn_abort(d->try_conn, 0);
            d->try_conn = NULL;
        }
        dial_finish(d, NULL, err, 0);
    }
    for (dmsg_dial *d = c->dials; d; d = d->next) {
        if (d->result) { /* succeeded, callback pending: the conn goes with the client */
            d->result->dial = NULL;
            conn_abort(d->result, 0);
            d->result = NULL;
            d->result_err = err;
        }
    }
    dials_run_deferred(c);
}

/* ---------------------------------------------------------------------------------------------
 * API */

int dmsg_client_dial(dmsg_client *c, const dmsg_addr *dst, dmsg_dial_cb cb, void *arg)
{
    if (c->closing)
        return DMSG_ECLOSED;
    if (!cb || dst->port == 0 || dmsg_pk_validate(&dst->pk) < 0)
        return DMSG_EINVAL;
    dmsg_dial *d = calloc(1, sizeof *d);
    if (!d)
        return DMSG_ENOMEM;
    int err = dmsg_porter_reserve_ephemeral(&c->porter, &d->src_port);
    if (err < 0) {
        free(d);
        return err;
    }
    d->client = c;
    d->dst = *dst;
    d->cb = cb;
    d->arg = arg;
    d->state = DIAL_STARTING;
    d->deadline = client_now(c) + c->cfg.dial_total_timeout_ms;
    d->deferred_start = true;
    d->next = c->dials;
    c->dials = d;
    client_defer_dials(c);
    client_arm(c, d->deadline);
    return 0;
}
