/* Test helper: a simulated Skywire visor on our client library. It holds a session to one
 * server, serves the router RPC on DMSG port 136 (ReserveIDs from a counter, AddIntermediaryRules
 * and AddEdgeRules recorded as received) and can misbehave on request; it can also dial a setup
 * node on port 36 and make one DialRouteGroup call. Everything runs on the caller's loop. */
#ifndef DMSG_TEST_SIMVISOR_H
#define DMSG_TEST_SIMVISOR_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/client.h"
#include "dmsg/error.h"
#include "dmsg/routing.h"
#include "dmsg/rpc.h"

enum simvisor_mode {
    SIMVISOR_NORMAL = 0,
    SIMVISOR_FAIL_RESERVE,   /* ReserveIDs answers "failure code 4 (no available routeIDs)" */
    SIMVISOR_FAIL_EDGE,      /* AddEdgeRules answers "failure code 1 (...)" */
    SIMVISOR_STALL,          /* accepts the stream and never answers */
    SIMVISOR_CLOSE           /* closes the stream at once (an untrusting visor) */
};

#define SIMVISOR_MAX_RULES 16

struct simvisor {
    dmsg_identity id;
    dmsg_client *client;
    dmsg_listener *listener;
    enum simvisor_mode mode;
    uint32_t next_id;              /* last id handed out */
    int conns;                     /* port-136 conns open now */
    int conns_total;
    int conns_reset;               /* port-136 conns that ended by a reset, not a FIN */
    int reserve_asks;              /* ReserveIDs calls received */
    int reserve_calls;             /* ... and answered with ids */
    uint8_t reserved_need;
    uint8_t rules[SIMVISOR_MAX_RULES][DMSG_RULE_MAX_LEN];  /* AddIntermediaryRules received */
    size_t rule_len[SIMVISOR_MAX_RULES];
    size_t nrules;
    bool got_edge;
    uint8_t edge_desc[DMSG_ROUTE_DESC_LEN];
    uint8_t edge_fwd[DMSG_RULE_MAX_LEN], edge_rev[DMSG_RULE_MAX_LEN];
    size_t edge_fwd_len, edge_rev_len;
    dmsg_pk src_seen;              /* who dialed port 136 */
    uint16_t src_port_seen;
    bool closed;
};

struct simvisor_conn {
    struct simvisor *v;
    dmsg_conn *conn;
    dmsg_rpc_conn rpc;
    uint8_t inbuf[16384];
    uint8_t arena[8192];
    uint8_t out[8192];
};

/* n is read after rc was computed (the encoder's length output). */
static inline void sv_send(struct simvisor_conn *sc, const size_t *n, int rc)
{
    cr_assert_eq(rc, 0, "simvisor encode: %s", dmsg_strerror(rc));
    cr_assert_eq(dmsg_conn_write(sc->conn, sc->out, *n, NULL, NULL), 0);
}

static inline void sv_call(struct simvisor_conn *sc, const dmsg_rpc_event *ev)
{
    struct simvisor *v = sc->v;
    size_t n = 0;
    bool yes = true;

    if (ev->kind != DMSG_RPC_EV_CALL)
        return;
    if (ev->method == &dmsg_visor_reserve_ids) {
        uint8_t need = *(const uint8_t *)ev->body;
        uint32_t ids[255];
        dmsg_gob_slice slice = {ids, need};
        v->reserve_asks++;
        v->reserved_need = need;
        if (v->mode == SIMVISOR_FAIL_RESERVE) {
            sv_send(sc, &n, dmsg_rpc_reply_error(&sc->rpc, ev->service_method, ev->seq,
                                                dmsg_rpc_str("failure code 4 (no available "
                                                             "routeIDs)"),
                                                sc->out, sizeof sc->out, &n));
            return;
        }
        for (uint8_t i = 0; i < need; i++)
            ids[i] = ++v->next_id;
        v->reserve_calls++;
        sv_send(sc, &n, dmsg_rpc_reply(&sc->rpc, ev->service_method, ev->seq, &dmsg_gob_route_ids,
                                      &slice, sc->out, sizeof sc->out, &n));
    } else if (ev->method == &dmsg_visor_add_intermediary_rules) {
        const dmsg_gob_slice *rules = ev->body;
        const dmsg_gob_bytes *items = rules->items;
        for (size_t i = 0; i < rules->len && v->nrules < SIMVISOR_MAX_RULES; i++) {
            cr_assert(items[i].len <= DMSG_RULE_MAX_LEN);
            memcpy(v->rules[v->nrules], items[i].ptr, items[i].len);
            v->rule_len[v->nrules++] = items[i].len;
        }
        sv_send(sc, &n, dmsg_rpc_reply(&sc->rpc, ev->service_method, ev->seq,
                                      dmsg_visor_add_intermediary_rules.reply, &yes, sc->out,
                                      sizeof sc->out, &n));
    } else {
        const dmsg_edge_rules *e = ev->body;
        if (v->mode == SIMVISOR_FAIL_EDGE) {
            sv_send(sc, &n, dmsg_rpc_reply_error(&sc->rpc, ev->service_method, ev->seq,
                                                dmsg_rpc_str("failure code 1 (io: read/write "
                                                             "on closed pipe)"),
                                                sc->out, sizeof sc->out, &n));
            return;
        }
        v->got_edge = true;
        memcpy(v->edge_desc, e->desc, DMSG_ROUTE_DESC_LEN);
        cr_assert(e->forward.len <= DMSG_RULE_MAX_LEN && e->reverse.len <= DMSG_RULE_MAX_LEN);
        memcpy(v->edge_fwd, e->forward.ptr, e->forward.len);
        v->edge_fwd_len = e->forward.len;
        memcpy(v->edge_rev, e->reverse.ptr, e->reverse.len);
        v->edge_rev_len = e->reverse.len;
        sv_send(sc, &n, dmsg_rpc_reply(&sc->rpc, ev->service_method, ev->seq,
                                      dmsg_visor_add_edge_rules.reply, &yes, sc->out,
                                      sizeof sc->out, &n));
    }
}

static inline void sv_on_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    struct simvisor_conn *sc = ctx;
    dmsg_rpc_event ev;
    size_t taken = 0;

    dmsg_conn_consume(c, len);
    if (sc->v->mode == SIMVISOR_STALL)
        return;
    cr_assert_eq(dmsg_rpc_feed(&sc->rpc, data, len, &taken), 0);
    cr_assert_eq(taken, len);
    while (dmsg_rpc_poll(&sc->rpc, &ev) == 0)
        sv_call(sc, &ev);
}

static inline void sv_on_eof(dmsg_conn *c, void *ctx)
{
    (void)ctx;
    dmsg_conn_close(c);
}

static inline void sv_on_close(dmsg_conn *c, int err, void *ctx)
{
    struct simvisor_conn *sc = ctx;

    (void)c;
    sc->v->conns--;
    if (err == DMSG_ERESET)
        sc->v->conns_reset++;
    free(sc);
}

static const dmsg_conn_callbacks sv_conn_cb = {sv_on_data, sv_on_eof, NULL, sv_on_close};

static inline void sv_on_listen(dmsg_listener *l, void *ctx)
{
    struct simvisor *v = ctx;
    dmsg_rpc_config cfg;

    for (;;) {
        struct simvisor_conn *sc = calloc(1, sizeof *sc);
        cr_assert_not_null(sc);
        sc->v = v;
        if (dmsg_listener_accept(l, &sv_conn_cb, sc, &sc->conn) != 0) {
            free(sc);
            return;
        }
        v->conns++;
        v->conns_total++;
        v->src_seen = dmsg_conn_remote_addr(sc->conn)->pk;
        v->src_port_seen = dmsg_conn_remote_addr(sc->conn)->port;
        memset(&cfg, 0, sizeof cfg);
        cfg.role = DMSG_RPC_SERVER;
        cfg.methods = dmsg_visor_methods;
        cfg.nmethods = DMSG_VISOR_NMETHODS;
        cfg.inbuf = sc->inbuf;
        cfg.inbuf_cap = sizeof sc->inbuf;
        cfg.arena = sc->arena;
        cfg.arena_cap = sizeof sc->arena;
        cr_assert_eq(dmsg_rpc_init(&sc->rpc, &cfg), 0);
        if (v->mode == SIMVISOR_CLOSE)
            dmsg_conn_close(sc->conn);
    }
}

static inline void sv_on_client_close(dmsg_client *c, void *ctx)
{
    struct simvisor *v = ctx;

    (void)c;
    v->closed = true;
}

/* Starts a visor with secret key sk (NULL: a fresh key) holding a session to server. */
static inline void simvisor_start(struct simvisor *v, uv_loop_t *loop, const dmsg_sk *sk,
                                  const dmsg_server_ref *server)
{
    dmsg_client_config cfg;
    dmsg_client_callbacks cb = {NULL, sv_on_client_close};

    memset(v, 0, sizeof *v);
    v->id.rng = dmsg_rng_system();
    if (sk != NULL) {
        v->id.sk = *sk;
        cr_assert_eq(dmsg_pk_from_sk(&v->id.pk, sk), 0);
    } else {
        cr_assert_eq(dmsg_keypair_generate(&v->id.pk, &v->id.sk, &v->id.rng), 0);
    }
    dmsg_client_config_default(&cfg);
    cfg.servers = server;
    cfg.n_servers = 1;
    cfg.delete_entry_on_close = false;
    cr_assert_eq(dmsg_client_start(loop, &v->id, &cfg, &cb, v, &v->client), 0);
    cr_assert_eq(dmsg_client_listen(v->client, DMSG_VISOR_SETUP_PORT, sv_on_listen, v,
                                    &v->listener), 0);
}

static inline void simvisor_stop(struct simvisor *v)
{
    if (v->client != NULL)
        dmsg_client_close(v->client);
}

/* ---- the initiator's side: one DialRouteGroup call on port 36 ---- */

struct sv_request {
    uv_loop_t *loop;
    dmsg_conn *conn;
    bool dial_done, replied, closed;
    int dial_err;
    uint16_t wire_code;
    const dmsg_rpc_method *method;
    const dmsg_bidi_route *route;
    const uint8_t *raw;            /* send these bytes instead of a call, when set */
    size_t raw_len;
    bool close_after_send;
    bool keep_raw_reply;           /* keep the plaintext answer instead of decoding RPC */
    char raw_reply[4096];
    size_t raw_reply_len;
    dmsg_rpc_conn rpc;
    uint8_t inbuf[16384];
    uint8_t arena[4096];
    uint8_t out[16384];
    char error[512];
    uint8_t desc[DMSG_ROUTE_DESC_LEN];
    uint8_t fwd[DMSG_RULE_MAX_LEN], rev[DMSG_RULE_MAX_LEN];
    size_t fwd_len, rev_len;
};

static inline void sr_on_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    struct sv_request *r = ctx;
    dmsg_rpc_event ev;
    size_t taken = 0;

    dmsg_conn_consume(c, len);
    if (r->keep_raw_reply) {
        size_t room = sizeof r->raw_reply - 1 - r->raw_reply_len;
        size_t take = len < room ? len : room;
        memcpy(r->raw_reply + r->raw_reply_len, data, take);
        r->raw_reply_len += take;
        return;
    }
    if (dmsg_rpc_feed(&r->rpc, data, len, &taken) != 0)
        return;
    while (dmsg_rpc_poll(&r->rpc, &ev) == 0) {
        r->replied = true;
        snprintf(r->error, sizeof r->error, "%.*s", (int)ev.error.len,
                 ev.error.len ? (const char *)ev.error.ptr : "");
        if (ev.error.len == 0 && ev.body != NULL && ev.method == &dmsg_setup_dial_route_group) {
            const dmsg_edge_rules *e = ev.body;
            memcpy(r->desc, e->desc, DMSG_ROUTE_DESC_LEN);
            memcpy(r->fwd, e->forward.ptr, e->forward.len);
            r->fwd_len = e->forward.len;
            memcpy(r->rev, e->reverse.ptr, e->reverse.len);
            r->rev_len = e->reverse.len;
        }
        dmsg_conn_close(c);
    }
}

static inline void sr_on_eof(dmsg_conn *c, void *ctx)
{
    (void)ctx;
    dmsg_conn_close(c);
}

static inline void sr_on_close(dmsg_conn *c, int err, void *ctx)
{
    struct sv_request *r = ctx;

    (void)c;
    (void)err;
    r->closed = true;
    r->conn = NULL;
}

static const dmsg_conn_callbacks sr_conn_cb = {sr_on_data, sr_on_eof, NULL, sr_on_close};

static inline void sr_on_dial(dmsg_client *c, dmsg_conn *conn, int err, uint16_t wire_code,
                              void *arg)
{
    struct sv_request *r = arg;
    dmsg_rpc_config cfg;
    size_t n = 0;

    (void)c;
    r->dial_done = true;
    r->dial_err = err;
    r->wire_code = wire_code;
    if (conn == NULL) {
        r->closed = true;
        return;
    }
    r->conn = conn;
    dmsg_conn_set_callbacks(conn, &sr_conn_cb, r);
    memset(&cfg, 0, sizeof cfg);
    cfg.role = DMSG_RPC_CLIENT;
    cfg.inbuf = r->inbuf;
    cfg.inbuf_cap = sizeof r->inbuf;
    cfg.arena = r->arena;
    cfg.arena_cap = sizeof r->arena;
    cr_assert_eq(dmsg_rpc_init(&r->rpc, &cfg), 0);
    if (r->raw != NULL) {
        cr_assert_eq(dmsg_conn_write(conn, r->raw, r->raw_len, NULL, NULL), 0);
    } else {
        cr_assert_eq(dmsg_rpc_call(&r->rpc, r->method, r->route, r->out, sizeof r->out, &n, NULL),
                     0);
        cr_assert_eq(dmsg_conn_write(conn, r->out, n, NULL, NULL), 0);
    }
    if (r->close_after_send)
        dmsg_conn_close(conn);
}

/* Dials server:port from visor v; the call (or raw bytes) go out once connected. */
static inline void simvisor_request(struct simvisor *v, const dmsg_pk *server, uint16_t port,
                                    struct sv_request *r)
{
    dmsg_addr dst = {.pk = *server, .port = port};

    if (r->method == NULL)
        r->method = &dmsg_setup_dial_route_group;
    cr_assert_eq(dmsg_client_dial(v->client, &dst, sr_on_dial, r), 0);
}

#endif
