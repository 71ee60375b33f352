/* DMSG client: lifecycle, configuration, the shared timer and deferred work (see client.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_internal.h"
#include "dmsg/error.h"

void dmsg_client_config_default(dmsg_client_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    dmsg_session_config_default(&cfg->session);
    cfg->min_sessions = 1;
    cfg->max_sessions = 16;
    cfg->mesh = DMSG_MESH_FIRST;
    cfg->new_sessions_per_dial = 2;
    cfg->mesh_tries_max = 16;
    cfg->dial_timeout_ms = DMSG_CLIENT_DIAL_TIMEOUT_MS;
    cfg->mesh_try_timeout_ms = 5000;
    cfg->dial_total_timeout_ms = 60000;
    cfg->reconnect_min_ms = 1000;
    cfg->reconnect_max_ms = 30000;
    cfg->delete_entry_on_close = true;
    cfg->accept_backlog = DMSG_CLIENT_ACCEPT_BACKLOG;
    cfg->max_conns = 65536;
}

/* ---------------------------------------------------------------------------------------------
 * Text forms */

static int parse_port(const char *text, uint16_t *port)
{
    if (!*text || strlen(text) > 5)
        return DMSG_EINVAL;
    unsigned long v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return DMSG_EINVAL;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v == 0 || v > 65535)
        return DMSG_EINVAL;
    *port = (uint16_t)v;
    return 0;
}

static int parse_pk(dmsg_pk *pk, const char *hex, size_t len)
{
    int err = dmsg_pk_from_hex(pk, hex, len);
    if (err == 0)
        err = dmsg_pk_validate(pk);
    return err;
}

int dmsg_addr_parse(dmsg_addr *out, const char *text)
{
    const char *colon = strchr(text, ':');
    if (!colon)
        return DMSG_EINVAL;
    int err = parse_pk(&out->pk, text, (size_t)(colon - text));
    if (err == 0)
        err = parse_port(colon + 1, &out->port);
    return err;
}

int dmsg_server_ref_parse(dmsg_server_ref *out, const char *text)
{
    const char *at = strchr(text, '@');
    if (!at)
        return DMSG_EINVAL;
    int err = parse_pk(&out->pk, text, (size_t)(at - text));
    if (err < 0)
        return err;
    const char *addr = at + 1;
    const char *colon = strrchr(addr, ':');
    uint16_t port;
    if (!colon || colon == addr || parse_port(colon + 1, &port) < 0)
        return DMSG_EINVAL;
    if (strlen(addr) > DMSG_CLIENT_ADDRESS_MAX)
        return DMSG_EINVAL;
    memcpy(out->address, addr, strlen(addr) + 1);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Time */

uint64_t client_now(const dmsg_client *c)
{
    return uv_now(c->loop);
}

int64_t client_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Spreads retries of many clients (x0.8 .. x1.2). */
uint32_t client_jitter(dmsg_client *c, uint32_t ms)
{
    uint8_t r[2];
    dmsg_rng_fill(&c->id.rng, r, sizeof r);
    uint32_t permille = 800u + (((uint32_t)r[0] << 8 | r[1]) % 401u);
    return (uint32_t)((uint64_t)ms * permille / 1000u);
}

static void on_tick(uv_timer_t *t)
{
    dmsg_client *c = t->data;
    c->timer_armed = false;
    uint64_t now = client_now(c), next = UINT64_MAX;
    conns_tick(c, now, &next);
    dials_tick(c, now, &next);
    servers_tick(c, now, &next);
    disc_tick(c, now, &next);
    if (next != UINT64_MAX)
        client_arm(c, next);
}

/* One timer serves every deadline: it is armed for the earliest one, and each module reports
 * its next due time when the timer fires. */
void client_arm(dmsg_client *c, uint64_t due)
{
    if (c->close_reported || uv_is_closing((uv_handle_t *)&c->timer))
        return;
    if (c->timer_armed && c->timer_due <= due)
        return;
    uint64_t now = client_now(c);
    uv_timer_start(&c->timer, on_tick, due > now ? due - now : 0, 0);
    c->timer_due = due;
    c->timer_armed = true;
}

/* ---------------------------------------------------------------------------------------------
 * Deferred work: application callbacks that must not run inside the API call that caused them */

static void teardown(dmsg_client *c);

static void start_sessions(dmsg_client *c)
{
    client_session *cs = c->sessions;
    while (cs) {
        client_session *next = cs->next; /* a failed start may free cs */
        servers_start(c, cs);
        cs = next;
    }
    if (c->disc.enabled && c->cfg.n_servers == 0)
        disc_want_pick(c, 0);
}

static void on_deferred(uv_timer_t *t)
{
    dmsg_client *c = t->data;
    c->defer_armed = false;
    if (c->start_pending) {
        c->start_pending = false;
        if (!c->closing)
            start_sessions(c);
    }
    if (c->teardown_pending) {
        c->teardown_pending = false;
        teardown(c);
    }
    if (c->dials_deferred) {
        c->dials_deferred = false;
        dials_run_deferred(c);
    }
    /* Detach the list first: delivering may defer more conns, which then wait a round. */
    dmsg_conn *list = c->deferred_head;
    c->deferred_head = c->deferred_tail = NULL;
    while (list) {
        dmsg_conn *conn = list;
        list = conn->q_next;
        conn->q_next = NULL;
        conn->deferred = false;
        conn_run_deferred(conn);
    }
    client_maybe_finish_close(c);
}

void defer_arm(dmsg_client *c)
{
    if (c->defer_armed || uv_is_closing((uv_handle_t *)&c->defer_timer))
        return;
    uv_timer_start(&c->defer_timer, on_deferred, 0, 0);
    c->defer_armed = true;
}

void client_defer_conn(dmsg_client *c, dmsg_conn *conn)
{
    if (conn->deferred)
        return;
    conn->deferred = true;
    conn->q_next = NULL;
    if (c->deferred_tail)
        c->deferred_tail->q_next = conn;
    else
        c->deferred_head = conn;
    c->deferred_tail = conn;
    defer_arm(c);
}

void client_undefer_conn(dmsg_client *c, dmsg_conn *conn)
{
    if (!conn->deferred)
        return;
    dmsg_conn **pp = &c->deferred_head, *prev = NULL;
    while (*pp && *pp != conn) {
        prev = *pp;
        pp = &(*pp)->q_next;
    }
    if (*pp) {
        *pp = conn->q_next;
        if (c->deferred_tail == conn)
            c->deferred_tail = prev;
    }
    conn->q_next = NULL;
    conn->deferred = false;
}

void client_defer_dials(dmsg_client *c)
{
    c->dials_deferred = true;
    defer_arm(c);
}

void client_event(dmsg_client *c, dmsg_client_event ev, const dmsg_pk *server, int err)
{
    if (c->cb.on_event)
        c->cb.on_event(c, ev, server, err, c->ctx);
}

/* ---------------------------------------------------------------------------------------------
 * Start */

static int check_config(const dmsg_client_config *cfg)
{
    bool has_disc = cfg->discovery_url && cfg->discovery_url[0];
    if (!has_disc && cfg->n_servers == 0)
        return DMSG_EINVAL;
    if (cfg->n_servers > 0 && !cfg->servers)
        return DMSG_EINVAL;
    if (cfg->max_sessions == 0 || cfg->n_servers > cfg->max_sessions ||
        cfg->min_sessions > cfg->max_sessions)
        return DMSG_EINVAL;
    if (cfg->dial_timeout_ms == 0 || cfg->mesh_try_timeout_ms == 0 ||
        cfg->dial_total_timeout_ms == 0 ||
        cfg->reconnect_min_ms == 0 || cfg->reconnect_max_ms < cfg->reconnect_min_ms)
        return DMSG_EINVAL;
    if (cfg->accept_backlog == 0 || cfg->max_conns == 0 || cfg->mesh > DMSG_MESH_OFF)
        return DMSG_EINVAL;
    for (size_t i = 0; i < cfg->n_servers; i++)
        if (dmsg_pk_validate(&cfg->servers[i].pk) < 0 || !cfg->servers[i].address[0])
            return DMSG_EINVAL;
    return 0;
}

static void free_client(dmsg_client *c)
{
    client_session *cs = c->sessions;
    while (cs) { /* only before anything started: see dmsg_client_start */
        client_session *next = cs->next;
        free(cs);
        cs = next;
    }
    dmsg_wipe(&c->id.sk, sizeof c->id.sk);
    free(c->servers);
    free(c->scratch);
    free(c->disc.reg);
    free(c);
}

static int add_fixed_servers(dmsg_client *c)
{
    for (size_t i = 0; i < c->cfg.n_servers; i++) {
        int err = 0;
        if (servers_find(c, &c->servers[i].pk))
            continue; /* listed twice */
        if (!servers_add(c, &c->servers[i].pk, c->servers[i].address, CS_FIXED, &err))
            return err;
    }
    return 0;
}

static dmsg_client *alloc_client(uv_loop_t *loop, const dmsg_identity *id,
                                 const dmsg_client_config *cfg)
{
    dmsg_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->id = *id;
    c->cfg = *cfg;
    c->cfg.discovery_url = NULL; /* not kept: the discovery client copies it */
    dmsg_porter_init(&c->porter);
    c->scratch = malloc(CLIENT_SCRATCH_LEN);
    if (cfg->n_servers) {
        c->servers = calloc(cfg->n_servers, sizeof *c->servers);
        if (c->servers)
            memcpy(c->servers, cfg->servers, cfg->n_servers * sizeof *c->servers);
    }
    c->cfg.servers = c->servers;
    if (!c->scratch || (cfg->n_servers && !c->servers) || add_fixed_servers(c) < 0) {
        free_client(c);
        return NULL;
    }
    return c;
}

int dmsg_client_start(uv_loop_t *loop, const dmsg_identity *id, const dmsg_client_config *cfg,
                      const dmsg_client_callbacks *cb, void *ctx, dmsg_client **out)
{
    int err = check_config(cfg);
    if (err < 0)
        return err;
    if (dmsg_sk_validate(&id->sk) < 0 || dmsg_pk_validate(&id->pk) < 0 || !id->rng.fill)
        return DMSG_EINVAL;
    bool with_disc = cfg->discovery_url && cfg->discovery_url[0];
    if (with_disc && strlen(cfg->discovery_url) > DMSG_DISC_URL_MAX)
        return DMSG_EINVAL;
    dmsg_client *c = alloc_client(loop, id, cfg);
    if (!c)
        return DMSG_ENOMEM;
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->defer_timer);
    c->timer.data = c;
    c->defer_timer.data = c;
    if (with_disc && (err = disc_init(c, cfg->discovery_url)) < 0) {
        /* Handles exist now: close quietly through the normal path; nothing is reported. */
        c->closing = c->teardown_pending = true;
        defer_arm(c);
        return err;
    }
    if (cb)
        c->cb = *cb;
    c->ctx = ctx;
    /* Sessions start from the loop, so that no callback runs before *out is set. */
    c->start_pending = true;
    defer_arm(c);
    *out = c;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Close */

static void on_handle_closed(uv_handle_t *h)
{
    dmsg_client *c = h->data;
    c->pending_closes--;
    client_maybe_finish_close(c);
}

void client_maybe_finish_close(dmsg_client *c)
{
    if (!c->closing || !c->close_continued || c->close_reported)
        return;
    if (c->sessions || c->conns || c->dials)
        return;
    if (!c->handles_closing) {
        c->handles_closing = true;
        c->pending_closes += 2;
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        uv_close((uv_handle_t *)&c->defer_timer, on_handle_closed);
        disc_close(c);
    }
    if (c->pending_closes)
        return;
    c->close_reported = true;
    if (c->cb.on_close)
        c->cb.on_close(c, c->ctx);
    free_client(c);
}

/* Second half of closing, once our discovery entry is gone (or that was not wanted). */
void client_continue_close(dmsg_client *c)
{
    if (c->close_continued)
        return;
    c->close_continued = true;
    servers_close_all(c);
    client_maybe_finish_close(c);
}

static void teardown(dmsg_client *c)
{
    dials_fail_all(c, DMSG_ECLOSED);
    listeners_close_all(c);
    if (!disc_stop_entry(c))
        client_continue_close(c);
}

void dmsg_client_close(dmsg_client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->teardown_pending = true;
    defer_arm(c);
}

/* ---------------------------------------------------------------------------------------------
 * Accessors */

const dmsg_pk *dmsg_client_pk(const dmsg_client *c)
{
    return &c->id.pk;
}

void *dmsg_client_ctx(const dmsg_client *c)
{
    return c->ctx;
}

size_t dmsg_client_sessions(const dmsg_client *c, dmsg_pk *out, size_t cap)
{
    return servers_up(c, out, cap);
}

int dmsg_client_add_server(dmsg_client *c, const dmsg_server_ref *server)
{
    if (c->closing)
        return DMSG_ECLOSED;
    if (dmsg_pk_validate(&server->pk) < 0 || !server->address[0])
        return DMSG_EINVAL;
    client_session *cs = servers_find(c, &server->pk);
    if (cs) {
        if (cs->origin == CS_FIXED || cs->origin == CS_ADDED)
            return DMSG_EEXIST;
        cs->origin = CS_ADDED; /* a picked or dial-time session becomes a kept one */
        return 0;
    }
    int err = 0;
    cs = servers_add(c, &server->pk, server->address, CS_ADDED, &err);
    if (!cs)
        return err;
    /* Started from the timer, so that no event callback runs inside this call. */
    cs->state = CS_BACKOFF;
    cs->retry_at = client_now(c);
    client_arm(c, cs->retry_at);
    return 0;
}
