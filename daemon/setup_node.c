/* The integrated route setup node; see setup_node.h. */
#include "setup_node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/wire.h"
#include "own_conn.h"

#define STREAM_INBUF (24 * 1024)   /* a 50-hop route each way is under 10 KiB of gob */
#define VISOR_INBUF 4096           /* replies: at most 255 ids or a bool */
#define VISOR_ARENA (DMSG_ROUTE_MAX_IDS * 4 + 1024)
#define SCRATCH_CAP (64 * 1024)
#define ERROR_TEXT_MAX 512
#define FIRST_SRC_PORT 49153u
#define LINGER_MS 5000 /* visor streams' time to close in turn after the answer */
#define STREAMS_PER_SETUP 4        /* open port-36 streams allowed per setup in flight */

enum phase { PHASE_DIALING = 0, PHASE_RESERVING, PHASE_INTERMEDIARY, PHASE_EDGE, PHASE_DONE };

struct sn_stream;
struct sn_setup;

struct sn_visor {
    struct sn_setup *setup;
    size_t index;                        /* in the plan */
    struct own_conn *conn;               /* NULL once gone */
    uint64_t link_id;                    /* the admin API's id of conn */
    unsigned attempt;                    /* which route to it is being tried (route_to) */
    bool dialed;
    bool answered;                       /* the current phase's call came back */
    dmsg_rpc_conn rpc;
    uint8_t inbuf[VISOR_INBUF];
    uint8_t arena[VISOR_ARENA];
};

struct sn_setup {
    struct setup_node *node;
    struct sn_setup *next, *prev;        /* node->setups */
    struct sn_stream *stream;            /* the requester's stream, NULL once gone */
    uint64_t id;
    int64_t tag;                         /* the report hook's */
    dmsg_pk requester;
    dmsg_gob_bytes method;               /* reply's ServiceMethod */
    char method_buf[64];
    uint64_t seq;
    dmsg_bidi_route route;
    dmsg_route_hop *hops;                /* forward then reverse, owned */
    dmsg_route_plan plan;
    dmsg_route_rules rules;
    struct sn_visor *visors;             /* plan.nvisors */
    size_t live_conns;
    size_t waiting;                      /* calls of the current phase not yet answered */
    enum phase phase;
    bool finished;
    uint64_t started_ms;                 /* loop time, for the deadline */
    uint64_t started_ns;                 /* uv_hrtime: commits on the loop do not move uv_now */
    uv_timer_t timer;                    /* the deadline; after the end, the linger */
    bool timer_closing;
};

struct sn_stream {
    struct setup_node *node;
    struct sn_stream *next, *prev;
    struct own_conn *conn;
    struct sn_setup *setup;              /* the call being served */
    uint64_t link_id;                    /* the admin API's id (the relay's) */
    bool eof;
    bool closing;
    bool polling;                        /* inside stream_poll: answers do not re-enter it */
    uint64_t idle_since_ms;              /* last call completed or stream opened */
    dmsg_rpc_conn rpc;
    uint8_t inbuf[STREAM_INBUF];
    uint8_t *arena;
    size_t arena_cap;
};

struct setup_node {
    uv_loop_t *loop;
    const dmsg_identity *id;
    struct setup_node_limits lim;
    struct setup_node_hooks hooks;
    struct sn_stream *streams;
    struct sn_setup *setups;
    uint64_t next_id;
    uint64_t next_link_id;               /* without hooks.next_link_id */
    uint32_t next_port;
    struct setup_node_stats stats;
    bool closing;
    uv_timer_t sweep;                    /* resets idle port-36 streams */
    void (*on_done)(void *arg);
    void *on_done_arg;
    uint8_t scratch[SCRATCH_CAP];
};

static void stream_poll(struct sn_stream *s);
static void maybe_free_node(struct setup_node *n);
static int dial_visor(struct sn_visor *v);
static void not_found_text(const dmsg_pk *pk, char *text, size_t cap);

void setup_node_limits_default(struct setup_node_limits *lim)
{
    lim->max_hops = DMSG_ROUTE_MAX_HOPS;
    lim->max_in_flight = 64;
    lim->max_per_requester = 2;
    lim->deadline_ms = 30000;
    lim->dial_timeout_ms = 20000;
    lim->idle_ms = 10000;
}

static void sanitize_limits(struct setup_node_limits *lim)
{
    if (lim->max_hops == 0 || lim->max_hops > DMSG_ROUTE_MAX_HOPS)
        lim->max_hops = DMSG_ROUTE_MAX_HOPS;
    if (lim->max_in_flight == 0)
        lim->max_in_flight = 1;
    if (lim->max_per_requester == 0)
        lim->max_per_requester = 1;
    if (lim->deadline_ms == 0)
        lim->deadline_ms = 30000;
    if (lim->dial_timeout_ms == 0 || lim->dial_timeout_ms > lim->deadline_ms)
        lim->dial_timeout_ms = lim->deadline_ms;
    if (lim->idle_ms == 0)
        lim->idle_ms = 10000;
}

/* ---------------------------------------------------------------------------------------------
 * Reports */

static void report(struct sn_setup *su, const char *state, const char *error,
                   enum setup_node_result result)
{
    struct setup_node *n = su->node;
    struct setup_node_report r;
    dmsg_route_addr src, dst;

    if (n->hooks.on_report == NULL)
        return;
    memset(&r, 0, sizeof r);
    dmsg_route_desc_unpack(su->route.desc, &src, &dst);
    r.id = su->id;
    r.requester = su->requester;
    r.src = src.pk;
    r.dst = dst.pk;
    r.hops_forward = su->route.forward.len;
    r.hops_reverse = su->route.reverse.len;
    r.state = state;
    r.error = error != NULL ? error : "";
    r.finished = su->finished;
    r.result = result;
    r.elapsed_ms = (uv_hrtime() - su->started_ns) / 1000000u;
    r.tag = &su->tag;
    n->hooks.on_report(n->hooks.ctx, &r);
}

/* ---------------------------------------------------------------------------------------------
 * Answers on the requester's stream */

static void stream_write(struct sn_stream *s, size_t len, int rc)
{
    if (rc != 0 || own_conn_write(s->conn, s->node->scratch, len) != 0)
        own_conn_reset(s->conn);
}

static void stream_reply_error(struct sn_stream *s, dmsg_gob_bytes method, uint64_t seq,
                               const char *text)
{
    size_t len = 0;
    int rc = dmsg_rpc_reply_error(&s->rpc, method, seq, dmsg_rpc_str(text), s->node->scratch,
                                  SCRATCH_CAP, &len);
    stream_write(s, len, rc);
}

/* The requester's call ended: serve its next call, or close once it closed. */
static void stream_call_done(struct sn_stream *s)
{
    s->setup = NULL;
    s->idle_since_ms = uv_now(s->node->loop);
    if (s->eof && !s->closing) {
        s->closing = true;
        own_conn_close(s->conn);
        return;
    }
    if (!s->polling)
        stream_poll(s);
}

/* ---------------------------------------------------------------------------------------------
 * Setup lifetime */

static void on_setup_timer_closed(uv_handle_t *h)
{
    struct sn_setup *su = h->data;
    struct setup_node *n = su->node;

    if (su->prev != NULL)
        su->prev->next = su->next;
    else
        n->setups = su->next;
    if (su->next != NULL)
        su->next->prev = su->prev;
    free(su->visors);
    free(su->hops);
    free(su);
    maybe_free_node(n);
}

static void maybe_free_setup(struct sn_setup *su)
{
    if (!su->finished || su->live_conns > 0 || su->timer_closing)
        return;
    su->timer_closing = true;
    uv_timer_stop(&su->timer);
    uv_close((uv_handle_t *)&su->timer, on_setup_timer_closed);
}

/* FIN on every visor stream, dialed or still dialing: a reference visor ends its whole DMSG
 * session when a stream is reset while it accepts it, so only FINs go out here; the visor
 * closes in turn. */
static void close_visors(struct sn_setup *su)
{
    for (size_t i = 0; i < su->plan.nvisors; i++)
        if (su->visors != NULL && su->visors[i].conn != NULL)
            (void)own_conn_close(su->visors[i].conn);
}

/* The linger after the answer: dialed visor streams that never closed in turn are reset (the
 * visor's accept is long over); one still dialing ends with its dial (own_conn_dial). */
static void reset_dialed_visors(struct sn_setup *su)
{
    for (size_t i = 0; i < su->plan.nvisors; i++)
        if (su->visors != NULL && su->visors[i].conn != NULL && su->visors[i].dialed)
            own_conn_reset(su->visors[i].conn);
}

static void finish(struct sn_setup *su, enum setup_node_result result, const char *error)
{
    struct setup_node *n = su->node;

    su->finished = true;
    su->phase = PHASE_DONE;
    n->stats.in_flight--;
    n->stats.results[result]++;
    report(su, result == SETUP_RESULT_OK ? "done" : "failed", error, result);
}

static void on_linger(uv_timer_t *t)
{
    reset_dialed_visors(t->data);
}

/* The first failure ends the setup: visor streams closed, the requester gets the text. */
static void fail(struct sn_setup *su, enum setup_node_result result, const char *text)
{
    struct sn_stream *s = su->stream;

    if (su->finished)
        return;
    uv_timer_stop(&su->timer);
    close_visors(su);
    uv_timer_start(&su->timer, on_linger, LINGER_MS, 0);
    finish(su, result, text);
    if (s != NULL) {
        su->stream = NULL;
        stream_reply_error(s, su->method, su->seq, text);
        stream_call_done(s);
    }
    maybe_free_setup(su);
}

static void succeed(struct sn_setup *su)
{
    struct sn_stream *s = su->stream;
    dmsg_edge_rules edge;
    size_t len = 0;
    int rc;

    /* Visor streams are closed before the requester hears back, as the reference does; one
     * that does not close in turn is reset after a while. */
    for (size_t i = 0; i < su->plan.nvisors; i++)
        if (su->visors[i].conn != NULL && own_conn_close(su->visors[i].conn) != 0)
            own_conn_reset(su->visors[i].conn);
    uv_timer_stop(&su->timer);
    uv_timer_start(&su->timer, on_linger, LINGER_MS, 0);
    finish(su, SETUP_RESULT_OK, NULL);
    if (s != NULL) {
        su->stream = NULL;
        dmsg_route_rules_initiator(&su->rules, &edge);
        rc = dmsg_rpc_reply(&s->rpc, su->method, su->seq, &dmsg_gob_edge_rules, &edge,
                            su->node->scratch, SCRATCH_CAP, &len);
        stream_write(s, len, rc);
        stream_call_done(s);
    }
    maybe_free_setup(su);
}

static void on_deadline(uv_timer_t *t)
{
    struct sn_setup *su = t->data;
    struct sn_stream *s = su->stream;

    if (su->finished) {
        reset_dialed_visors(su);
        return;
    }
    /* As the reference: the requester's stream is closed, no error text. */
    su->stream = NULL;
    if (s != NULL) {
        s->setup = NULL;
        s->closing = true;
        if (own_conn_close(s->conn) != 0)
            own_conn_reset(s->conn);
    }
    fail(su, SETUP_RESULT_TIMEOUT, "context deadline exceeded");
}

/* ---------------------------------------------------------------------------------------------
 * Visor calls */

static int visor_call(struct sn_visor *v, const dmsg_rpc_method *m, const void *arg)
{
    size_t len = 0;
    int rc = dmsg_rpc_call(&v->rpc, m, arg, v->setup->node->scratch, SCRATCH_CAP, &len, NULL);

    if (rc == 0)
        rc = own_conn_write(v->conn, v->setup->node->scratch, len);
    v->answered = false;
    return rc;
}

static void send_edge_rules(struct sn_setup *su)
{
    char text[ERROR_TEXT_MAX];
    dmsg_edge_rules edge;

    su->phase = PHASE_EDGE;
    for (size_t i = 0; i < su->plan.nvisors; i++) {
        struct sn_visor *v = &su->visors[i];
        if (!(su->plan.visors[i].roles & DMSG_ROUTE_ROLE_RESPONDER))
            continue;
        dmsg_route_rules_responder(&su->rules, &edge);
        su->waiting = 1;
        if (visor_call(v, &dmsg_visor_add_edge_rules, &edge) != 0) {
            snprintf(text, sizeof text,
                     "failed to broadcast rules to destination router: connection is shut down");
            fail(su, SETUP_RESULT_ERROR, text);
        }
        return;
    }
    fail(su, SETUP_RESULT_ERROR, "route has no responder");
}

static void install(struct sn_setup *su)
{
    const char *why = NULL;
    dmsg_gob_bytes views[DMSG_ROUTE_MAX_INTER];

    if (dmsg_route_generate(&su->plan, &su->route, &su->rules, &why) != 0) {
        fail(su, SETUP_RESULT_ERROR, why != NULL ? why : "rule generation failed");
        return;
    }
    report(su, "installing", NULL, SETUP_RESULT_OK);
    su->phase = PHASE_INTERMEDIARY;
    su->waiting = 0;
    for (size_t i = 0; i < su->plan.nvisors && !su->finished; i++) {
        struct sn_visor *v = &su->visors[i];
        dmsg_gob_slice slice;
        size_t n = 0;
        if (!(su->plan.visors[i].roles & DMSG_ROUTE_ROLE_INTERMEDIARY))
            continue;
        if (dmsg_route_rules_for_visor(&su->rules, i, views, DMSG_ROUTE_MAX_INTER, &n) != 0) {
            fail(su, SETUP_RESULT_ERROR, "rule generation failed");
            return;
        }
        slice.items = views;
        slice.len = n;
        su->waiting++;
        if (visor_call(v, &dmsg_visor_add_intermediary_rules, &slice) != 0)
            fail(su, SETUP_RESULT_ERROR, "connection is shut down");
    }
    if (!su->finished && su->waiting == 0)
        send_edge_rules(su);
}

static void pk_hex(const dmsg_pk *pk, char out[DMSG_PK_HEX_LEN + 1])
{
    dmsg_pk_to_hex(pk, out);
}

static void on_reserved(struct sn_visor *v, const dmsg_rpc_event *ev)
{
    struct sn_setup *su = v->setup;
    char text[ERROR_TEXT_MAX], hex[DMSG_PK_HEX_LEN + 1];
    const dmsg_gob_slice *ids = ev->body;

    pk_hex(&su->plan.visors[v->index].pk, hex);
    if (ev->error.len > 0) {
        snprintf(text, sizeof text, "failed to reserve route ids: reserve routeID from %s "
                 "failed: %.*s", hex, (int)(ev->error.len > 300 ? 300 : ev->error.len),
                 (const char *)ev->error.ptr);
        fail(su, SETUP_RESULT_ERROR, text);
        return;
    }
    if (dmsg_route_plan_set_ids(&su->plan, v->index, ids->items, ids->len) != 0) {
        fail(su, SETUP_RESULT_ERROR, "id reservoir has no key");
        return;
    }
    if (--su->waiting == 0)
        install(su);
}

static void on_rules_added(struct sn_visor *v, const dmsg_rpc_event *ev)
{
    struct sn_setup *su = v->setup;
    char text[ERROR_TEXT_MAX];
    bool ok = ev->error.len == 0 && *(const bool *)ev->body;
    int elen = (int)(ev->error.len > 300 ? 300 : ev->error.len);

    if (su->phase == PHASE_EDGE) {
        if (!ok) {
            snprintf(text, sizeof text, "failed to broadcast rules to destination router: %.*s",
                     elen, elen > 0 ? (const char *)ev->error.ptr : "<nil>");
            fail(su, SETUP_RESULT_ERROR, text);
            return;
        }
        succeed(su);
        return;
    }
    if (!ok) {
        snprintf(text, sizeof text, "%.*s", elen,
                 elen > 0 ? (const char *)ev->error.ptr : "failure code 1 (rules not added)");
        fail(su, SETUP_RESULT_ERROR, text);
        return;
    }
    if (--su->waiting == 0)
        send_edge_rules(su);
}

static void on_visor_data(struct own_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    struct sn_visor *v = ctx;
    struct sn_setup *su = v->setup;
    dmsg_rpc_event ev;
    size_t taken = 0;
    int rc;

    (void)c;
    if (su->finished)
        return;
    rc = dmsg_rpc_feed(&v->rpc, data, len, &taken);
    while (rc == 0 && !su->finished) {
        rc = dmsg_rpc_poll(&v->rpc, &ev);
        if (rc != 0)
            break;
        if (ev.kind != DMSG_RPC_EV_REPLY || v->answered)
            continue;
        v->answered = true;
        if (ev.method == &dmsg_visor_reserve_ids)
            on_reserved(v, &ev);
        else
            on_rules_added(v, &ev);
    }
    if (!su->finished && ((rc != 0 && rc != DMSG_EAGAIN) || taken < len))
        fail(su, SETUP_RESULT_ERROR, "gob: malformed reply from a visor");
}

static void on_visor_eof(struct own_conn *c, void *ctx)
{
    struct sn_visor *v = ctx;
    struct sn_setup *su = v->setup;
    char text[ERROR_TEXT_MAX], hex[DMSG_PK_HEX_LEN + 1];

    (void)c;
    if (su->finished)
        return;
    pk_hex(&su->plan.visors[v->index].pk, hex);
    if (su->phase == PHASE_EDGE)
        snprintf(text, sizeof text, "failed to broadcast rules to destination router: EOF");
    else if (su->phase == PHASE_INTERMEDIARY)
        snprintf(text, sizeof text, "EOF");
    else
        snprintf(text, sizeof text,
                 "failed to reserve route ids: reserve routeID from %s failed: EOF", hex);
    fail(su, SETUP_RESULT_ERROR, text);
}

static void on_visor_close(struct own_conn *c, int err, void *ctx)
{
    struct sn_visor *v = ctx;
    struct sn_setup *su = v->setup;

    (void)c;
    (void)err;
    v->conn = NULL;
    su->live_conns--;
    su->node->stats.visor_conns--;
    if (!su->finished)
        fail(su, SETUP_RESULT_ERROR, "connection is shut down");
    maybe_free_setup(su);
}

static const struct own_conn_callbacks visor_cb = {on_visor_data, on_visor_eof, on_visor_close};

static void on_visor_dialed(struct own_conn *c, int err, uint16_t wire_code, void *ctx)
{
    struct sn_visor *v = ctx;
    struct sn_setup *su = v->setup;
    char text[ERROR_TEXT_MAX], hex[DMSG_PK_HEX_LEN + 1];
    uint8_t need = su->plan.visors[v->index].need;

    (void)c;
    if (err != 0) {
        const char *wt = wire_code != 0 ? dmsg_wire_error_text(wire_code) : NULL;
        v->conn = NULL;
        su->live_conns--;
        su->node->stats.visor_conns--;
        /* Closed without an answer: that server does not hold the visor; try the next route. */
        if (err == DMSG_ECLOSED && !su->finished) {
            int rc;
            v->attempt++;
            rc = dial_visor(v);
            if (rc == 0)
                return;
            if (rc == DMSG_ENOTFOUND) {
                not_found_text(&su->plan.visors[v->index].pk, text, sizeof text);
                fail(su, SETUP_RESULT_ERROR, text);
                maybe_free_setup(su);
                return;
            }
        }
        pk_hex(&su->plan.visors[v->index].pk, hex);
        if (wt != NULL)
            snprintf(text, sizeof text, "failed to instantiate route id reserver: a dial attempt "
                     "failed with: dial %s@%u: dmsg error %u - %s", hex, DMSG_VISOR_SETUP_PORT,
                     (unsigned)wire_code, wt);
        else
            snprintf(text, sizeof text, "failed to instantiate route id reserver: a dial attempt "
                     "failed with: dial %s@%u: %s", hex, DMSG_VISOR_SETUP_PORT,
                     err == DMSG_ETIMEOUT ? "i/o deadline reached" : dmsg_strerror(err));
        fail(su, SETUP_RESULT_ERROR, text);
        maybe_free_setup(su);
        return;
    }
    v->dialed = true;
    if (su->finished) {
        (void)own_conn_close(v->conn); /* FIN, if the failure did not send it yet */
        return;
    }
    if (--su->waiting > 0)
        return;
    /* All visors are dialed: reserve on all of them at once. */
    su->phase = PHASE_RESERVING;
    report(su, "reserving", NULL, SETUP_RESULT_OK);
    su->waiting = su->plan.nvisors;
    for (size_t i = 0; i < su->plan.nvisors && !su->finished; i++) {
        need = su->plan.visors[i].need;
        if (visor_call(&su->visors[i], &dmsg_visor_reserve_ids, &need) != 0)
            fail(su, SETUP_RESULT_ERROR, "connection is shut down");
    }
}

static uint16_t next_src_port(struct setup_node *n)
{
    uint16_t p = (uint16_t)n->next_port;

    n->next_port = n->next_port >= 65535u ? FIRST_SRC_PORT : n->next_port + 1;
    return p;
}

static void not_found_text(const dmsg_pk *pk, char *text, size_t cap)
{
    char hex[DMSG_PK_HEX_LEN + 1];
    const char *why = dmsg_wire_error_text(DMSG_WIRE_DISC_ENTRY_NOT_FOUND);

    /* No session reaches the visor: what the reference reports for a key it cannot find, so
     * visors log the familiar text. */
    pk_hex(pk, hex);
    snprintf(text, cap, "failed to instantiate route id reserver: a dial attempt failed with: "
             "dial %s@%u: dmsg error %u - %s", hex, DMSG_VISOR_SETUP_PORT,
             (unsigned)DMSG_WIRE_DISC_ENTRY_NOT_FOUND,
             why != NULL ? why : "entry is not found in discovery");
}

/* Dials visor v through the session its v->attempt-th route names. 0, or DMSG_ENOTFOUND when
 * no route is left, or the dial's error. */
static int dial_visor(struct sn_visor *v)
{
    struct sn_setup *su = v->setup;
    struct setup_node *n = su->node;
    dmsg_addr dst = {.pk = su->plan.visors[v->index].pk, .port = DMSG_VISOR_SETUP_PORT};
    uint32_t timeout_ms = n->lim.dial_timeout_ms;
    dmsg_session *via = n->hooks.route_to(n->hooks.ctx, &dst.pk, v->attempt, &timeout_ms);
    int rc;

    if (via == NULL)
        return DMSG_ENOTFOUND;
    if (timeout_ms > n->lim.dial_timeout_ms)
        timeout_ms = n->lim.dial_timeout_ms;
    v->link_id = n->hooks.next_link_id != NULL ? n->hooks.next_link_id(n->hooks.ctx)
                                               : ++n->next_link_id;
    rc = own_conn_dial(n->loop, n->id, via, &dst, next_src_port(n), timeout_ms, on_visor_dialed,
                       &visor_cb, v, &v->conn);
    if (rc == 0) {
        su->live_conns++;
        n->stats.visor_conns++;
    }
    return rc;
}

static void dial_visors(struct sn_setup *su)
{
    dmsg_rpc_config rc_cfg;
    char text[ERROR_TEXT_MAX];

    su->visors = calloc(su->plan.nvisors, sizeof *su->visors);
    if (su->visors == NULL) {
        fail(su, SETUP_RESULT_ERROR, "out of memory");
        return;
    }
    su->phase = PHASE_DIALING;
    su->waiting = su->plan.nvisors;
    for (size_t i = 0; i < su->plan.nvisors && !su->finished; i++) {
        struct sn_visor *v = &su->visors[i];

        v->setup = su;
        v->index = i;
        memset(&rc_cfg, 0, sizeof rc_cfg);
        rc_cfg.role = DMSG_RPC_CLIENT;
        rc_cfg.inbuf = v->inbuf;
        rc_cfg.inbuf_cap = sizeof v->inbuf;
        rc_cfg.arena = v->arena;
        rc_cfg.arena_cap = sizeof v->arena;
        if (dmsg_rpc_init(&v->rpc, &rc_cfg) != 0 || dial_visor(v) != 0) {
            not_found_text(&su->plan.visors[i].pk, text, sizeof text);
            fail(su, SETUP_RESULT_ERROR, text);
            return;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Calls on port 36 */

static size_t requester_in_flight(const struct setup_node *n, const dmsg_pk *pk)
{
    size_t count = 0;

    for (const struct sn_setup *su = n->setups; su != NULL; su = su->next)
        if (!su->finished && dmsg_pk_equal(&su->requester, pk))
            count++;
    return count;
}

/* Copies the call out of the rpc conn's buffers (they are reused by the next poll). */
static struct sn_setup *setup_new(struct sn_stream *s, const dmsg_rpc_event *ev)
{
    const dmsg_bidi_route *route = ev->body;
    struct sn_setup *su = calloc(1, sizeof *su);
    size_t nf = route->forward.len, nr = route->reverse.len;

    if (su == NULL)
        return NULL;
    su->hops = malloc((nf + nr + 1) * sizeof *su->hops);
    if (su->hops == NULL) {
        free(su);
        return NULL;
    }
    if (nf > 0)
        memcpy(su->hops, route->forward.items, nf * sizeof *su->hops);
    if (nr > 0)
        memcpy(su->hops + nf, route->reverse.items, nr * sizeof *su->hops);
    su->route = *route;
    su->route.forward.items = su->hops;
    su->route.reverse.items = su->hops + nf;
    su->node = s->node;
    su->stream = s;
    su->requester = *own_conn_remote_pk(s->conn);
    su->seq = ev->seq;
    snprintf(su->method_buf, sizeof su->method_buf, "%s", dmsg_setup_dial_route_group.name);
    su->method = dmsg_rpc_str(su->method_buf);
    su->id = ++s->node->next_id;
    su->started_ms = uv_now(s->node->loop);
    su->started_ns = uv_hrtime();
    uv_timer_init(s->node->loop, &su->timer);
    su->timer.data = su;
    su->next = s->node->setups;
    if (su->next != NULL)
        su->next->prev = su;
    s->node->setups = su;
    return su;
}

static void start_setup(struct sn_stream *s, const dmsg_rpc_event *ev)
{
    struct setup_node *n = s->node;
    const dmsg_bidi_route *route = ev->body;
    dmsg_route_policy policy = {.requester = own_conn_remote_pk(s->conn),
                                .max_hops = n->lim.max_hops};
    const char *why = NULL;
    struct sn_setup *su;
    bool over_cap;

    over_cap = n->stats.in_flight >= n->lim.max_in_flight ||
               requester_in_flight(n, own_conn_remote_pk(s->conn)) >= n->lim.max_per_requester;
    su = setup_new(s, ev);
    if (su == NULL) {
        stream_reply_error(s, ev->service_method, ev->seq, "out of memory");
        return;
    }
    s->setup = su;
    n->stats.in_flight++;
    report(su, "received", NULL, SETUP_RESULT_OK);
    uv_timer_start(&su->timer, on_deadline, n->lim.deadline_ms, 0);
    if (over_cap) {
        fail(su, SETUP_RESULT_REFUSED, "too many requests in flight");
        return;
    }
    if (n->hooks.enabled != NULL && !n->hooks.enabled(n->hooks.ctx)) {
        fail(su, SETUP_RESULT_REFUSED, "disabled on this server");
        return;
    }
    if (dmsg_route_check(route, &why) != 0 ||
        dmsg_route_check_policy(&su->route, &policy, &why) != 0 ||
        dmsg_route_plan_init(&su->plan, &su->route) != 0) {
        fail(su, SETUP_RESULT_REFUSED, why != NULL ? why : "invalid route");
        return;
    }
    dial_visors(su);
}

static void stream_poll_calls(struct sn_stream *s);

static void stream_poll(struct sn_stream *s)
{
    s->polling = true;
    stream_poll_calls(s);
    s->polling = false;
}

static void stream_poll_calls(struct sn_stream *s)
{
    dmsg_rpc_event ev;
    char text[ERROR_TEXT_MAX];
    int rc;

    while (s->setup == NULL && !s->closing) {
        rc = dmsg_rpc_poll(&s->rpc, &ev);
        if (rc == DMSG_EAGAIN) {
            if (s->eof) {
                s->closing = true;
                own_conn_close(s->conn);
            }
            return;
        }
        if (rc != 0) {
            s->closing = true;
            own_conn_reset(s->conn);
            return;
        }
        if (ev.kind == DMSG_RPC_EV_REJECT) {
            if (dmsg_rpc_reject_text(&ev, text, sizeof text, NULL) != 0)
                snprintf(text, sizeof text, "rpc: bad request");
            stream_reply_error(s, ev.service_method, ev.seq, text);
            continue; /* after BAD_ARG the next poll fails and closes */
        }
        if (ev.kind == DMSG_RPC_EV_CALL)
            start_setup(s, &ev);
    }
}

static void on_stream_data(struct own_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    struct sn_stream *s = ctx;
    size_t taken = 0;

    if (s->closing)
        return;
    if (dmsg_rpc_feed(&s->rpc, data, len, &taken) != 0 || taken < len) {
        /* More than one call's worth queued, or broken input: the stream is not served. */
        s->closing = true;
        own_conn_reset(c);
        return;
    }
    stream_poll(s);
}

static void on_stream_eof(struct own_conn *c, void *ctx)
{
    struct sn_stream *s = ctx;

    (void)c;
    s->eof = true;
    if (s->setup == NULL)
        stream_poll(s);
}

static void on_stream_close(struct own_conn *c, int err, void *ctx)
{
    struct sn_stream *s = ctx;
    struct setup_node *n = s->node;

    (void)c;
    (void)err;
    if (s->setup != NULL)
        s->setup->stream = NULL; /* the setup runs on; its answer has nowhere to go */
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        n->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    n->stats.streams--;
    free(s->arena);
    free(s);
    maybe_free_node(n);
}

static const struct own_conn_callbacks stream_cb = {on_stream_data, on_stream_eof,
                                                    on_stream_close};

/* Open port-36 streams hold buffers before any call: bounded per requester and in total
 * (a few per setup allowed in flight), like a listener's full accept queue. */
static bool over_stream_caps(const struct setup_node *n, const dmsg_pk *requester)
{
    size_t mine = 0;

    if (n->stats.streams >= (uint64_t)n->lim.max_in_flight * STREAMS_PER_SETUP)
        return true;
    for (const struct sn_stream *s = n->streams; s != NULL; s = s->next)
        if (dmsg_pk_equal(own_conn_remote_pk(s->conn), requester))
            mine++;
    return mine >= (size_t)n->lim.max_per_requester * STREAMS_PER_SETUP;
}

uint16_t setup_node_accept(struct setup_node *n, const struct relay_own_request *req)
{
    struct sn_stream *s;
    dmsg_rpc_config cfg;
    uint16_t code;

    if (n->closing)
        return DMSG_WIRE_REQ_NO_LISTENER;
    if (over_stream_caps(n, &req->src_pk))
        return DMSG_WIRE_ACCEPT_CHAN_MAXED;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return DMSG_WIRE_REQ_NO_LISTENER;
    s->node = n;
    s->arena_cap = DMSG_ROUTE_ARENA_SIZE(n->lim.max_hops);
    s->arena = malloc(s->arena_cap);
    memset(&cfg, 0, sizeof cfg);
    cfg.role = DMSG_RPC_SERVER;
    cfg.methods = dmsg_setup_node_methods;
    cfg.nmethods = DMSG_SETUP_NODE_NMETHODS;
    cfg.inbuf = s->inbuf;
    cfg.inbuf_cap = sizeof s->inbuf;
    cfg.arena = s->arena;
    cfg.arena_cap = s->arena_cap;
    if (s->arena == NULL || dmsg_rpc_init(&s->rpc, &cfg) != 0) {
        free(s->arena);
        free(s);
        return DMSG_WIRE_REQ_NO_LISTENER;
    }
    code = own_conn_accept(n->loop, n->id, req, &stream_cb, s, &s->conn);
    if (code != 0) {
        free(s->arena);
        free(s);
        return code;
    }
    s->idle_since_ms = uv_now(n->loop);
    s->link_id = req->link_id;
    s->next = n->streams;
    if (s->next != NULL)
        s->next->prev = s;
    n->streams = s;
    n->stats.streams++;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Node */

/* A stream that holds a partial call (or nothing) forever would pin its buffers. */
static void on_sweep(uv_timer_t *t)
{
    struct setup_node *n = t->data;
    uint64_t now = uv_now(n->loop);

    for (struct sn_stream *s = n->streams; s != NULL; s = s->next)
        if (s->setup == NULL && !s->closing && now - s->idle_since_ms >= n->lim.idle_ms) {
            s->closing = true;
            own_conn_reset(s->conn);
        }
}

static void on_sweep_closed(uv_handle_t *h)
{
    struct setup_node *n = h->data;

    n->sweep.data = NULL;
    maybe_free_node(n);
}

int setup_node_init(uv_loop_t *loop, const dmsg_identity *id, const struct setup_node_limits *lim,
                    const struct setup_node_hooks *hooks, struct setup_node **out)
{
    struct setup_node *n;

    if (hooks == NULL || hooks->route_to == NULL)
        return DMSG_EINVAL;
    n = calloc(1, sizeof *n);
    if (n == NULL)
        return DMSG_ENOMEM;
    n->loop = loop;
    n->id = id;
    n->hooks = *hooks;
    n->next_port = FIRST_SRC_PORT;
    setup_node_set_limits(n, lim);
    uv_timer_init(loop, &n->sweep);
    n->sweep.data = n;
    uv_timer_start(&n->sweep, on_sweep, 250, 250);
    uv_unref((uv_handle_t *)&n->sweep);
    *out = n;
    return 0;
}

void setup_node_set_limits(struct setup_node *n, const struct setup_node_limits *lim)
{
    if (lim != NULL)
        n->lim = *lim;
    else
        setup_node_limits_default(&n->lim);
    sanitize_limits(&n->lim);
}

void setup_node_get_stats(const struct setup_node *n, struct setup_node_stats *out)
{
    *out = n->stats;
}

void setup_node_foreach_stream(const struct setup_node *n,
                               void (*fn)(const struct relay_link_info *info, void *arg),
                               void *arg)
{
    struct relay_link_info info;

    for (const struct sn_stream *s = n->streams; s != NULL; s = s->next) {
        own_conn_link_info(s->conn, s->link_id, &n->id->pk, &info);
        fn(&info, arg);
    }
    for (const struct sn_setup *su = n->setups; su != NULL; su = su->next)
        for (size_t i = 0; su->visors != NULL && i < su->plan.nvisors; i++)
            if (su->visors[i].conn != NULL) {
                own_conn_link_info(su->visors[i].conn, su->visors[i].link_id, &n->id->pk,
                                   &info);
                fn(&info, arg);
            }
}

static void maybe_free_node(struct setup_node *n)
{
    if (!n->closing || n->streams != NULL || n->setups != NULL || n->sweep.data != NULL)
        return;
    void (*on_done)(void *) = n->on_done;
    void *arg = n->on_done_arg;
    free(n);
    if (on_done != NULL)
        on_done(arg);
}

void setup_node_close(struct setup_node *n, void (*on_done)(void *arg), void *arg)
{
    n->closing = true;
    n->on_done = on_done;
    n->on_done_arg = arg;
    uv_close((uv_handle_t *)&n->sweep, on_sweep_closed);
    /* Every session is gone by now (the daemon closes them first): resets cost no visor a
     * session. */
    for (struct sn_setup *su = n->setups; su != NULL; su = su->next) {
        for (size_t i = 0; su->visors != NULL && i < su->plan.nvisors; i++)
            if (su->visors[i].conn != NULL)
                own_conn_reset(su->visors[i].conn);
        if (!su->finished) {
            su->stream = NULL;
            uv_timer_stop(&su->timer);
            finish(su, SETUP_RESULT_ERROR, "server shutting down");
        }
    }
    for (struct sn_stream *s = n->streams; s != NULL; s = s->next) {
        s->setup = NULL;
        s->closing = true;
        own_conn_reset(s->conn);
    }
    /* Setups with no live conn can go now. */
    for (struct sn_setup *su = n->setups, *next; su != NULL; su = next) {
        next = su->next;
        maybe_free_setup(su);
    }
    maybe_free_node(n);
}
