/* Arbitrary bytes into net/rpc conns, fed in chunks whose size the input picks: the setup node's
 * server side (every call answered: routes checked, ids counted, rules generated and encoded),
 * a visor's server side, and a client side waiting for replies. Nothing may crash, leak, or
 * hand out a view outside the conn's buffers. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/routing.h"
#include "dmsg/rpc.h"

static uint8_t inbuf[8192];
static uint8_t arena[DMSG_ROUTE_ARENA_SIZE(DMSG_ROUTE_MAX_HOPS)];
static uint8_t out[16384];
static dmsg_rpc_conn conn;
static dmsg_route_plan plan;
static dmsg_route_rules rules;

static void within(const void *p, size_t n, const void *base, size_t cap)
{
    const uint8_t *b = base;
    if (n && ((const uint8_t *)p < b || (const uint8_t *)p + n > b + cap))
        abort();
}

static void answer_route(const dmsg_rpc_event *ev)
{
    const dmsg_bidi_route *route = ev->body;
    within(route->forward.items, route->forward.len * sizeof(dmsg_route_hop), arena, sizeof arena);
    within(route->reverse.items, route->reverse.len * sizeof(dmsg_route_hop), arena, sizeof arena);
    const char *why = NULL;
    dmsg_route_policy policy = {.max_hops = DMSG_ROUTE_MAX_HOPS};
    size_t n;
    int rc = dmsg_route_check(route, &why);
    if (rc == 0)
        rc = dmsg_route_check_policy(route, &policy, &why);
    if (rc == 0 && dmsg_route_plan_init(&plan, route) != 0)
        abort(); /* the checks admit only routes a plan can hold */
    for (size_t v = 0; rc == 0 && v < plan.nvisors; v++) {
        uint32_t ids[DMSG_ROUTE_MAX_IDS];
        for (size_t k = 0; k < plan.visors[v].need; k++)
            ids[k] = (uint32_t)(v * 256 + k + 1);
        if (dmsg_route_plan_set_ids(&plan, v, ids, plan.visors[v].need) != 0)
            abort();
    }
    if (rc == 0 && dmsg_route_generate(&plan, route, &rules, &why) != 0)
        abort();
    if (rc) {
        if (!why || dmsg_rpc_reply_error(&conn, ev->service_method, ev->seq, dmsg_rpc_str(why),
                                         out, sizeof out, &n) != 0)
            abort();
        return;
    }
    dmsg_edge_rules edge;
    dmsg_route_rules_initiator(&rules, &edge);
    if (dmsg_rpc_reply(&conn, ev->service_method, ev->seq, &dmsg_gob_edge_rules, &edge, out,
                       sizeof out, &n) != 0)
        abort();
}

static void on_event(const dmsg_rpc_event *ev)
{
    within(ev->service_method.ptr, ev->service_method.len, inbuf, sizeof inbuf);
    within(ev->error.ptr, ev->error.len, inbuf, sizeof inbuf);
    size_t n;
    bool yes = true;
    switch (ev->kind) {
    case DMSG_RPC_EV_REJECT: {
        char text[sizeof inbuf + 64];
        if (dmsg_rpc_reject_text(ev, text, sizeof text, NULL) != 0 ||
            dmsg_rpc_reply_error(&conn, ev->service_method, ev->seq, dmsg_rpc_str(text), out,
                                 sizeof out, &n) != 0)
            abort();
        break;
    }
    case DMSG_RPC_EV_CALL:
        if (ev->method == &dmsg_setup_dial_route_group)
            answer_route(ev);
        else if (dmsg_rpc_reply(&conn, ev->service_method, ev->seq, &dmsg_gob_type_bool, &yes,
                                out, sizeof out, &n) != 0)
            abort();
        break;
    case DMSG_RPC_EV_REPLY:
        if (!ev->method || (ev->error.len && ev->body))
            abort();
        break;
    default:
        abort();
    }
}

static void start(uint8_t mode)
{
    dmsg_rpc_config cfg = {.inbuf = inbuf, .inbuf_cap = sizeof inbuf, .arena = arena,
                           .arena_cap = sizeof arena};
    switch (mode % 3) {
    case 0:
        cfg.role = DMSG_RPC_SERVER;
        cfg.methods = dmsg_setup_node_methods;
        cfg.nmethods = DMSG_SETUP_NODE_NMETHODS;
        break;
    case 1:
        cfg.role = DMSG_RPC_SERVER;
        cfg.methods = dmsg_visor_methods;
        cfg.nmethods = DMSG_VISOR_NMETHODS;
        break;
    default:
        cfg.role = DMSG_RPC_CLIENT;
        break;
    }
    if (dmsg_rpc_init(&conn, &cfg) != 0)
        abort();
    if (cfg.role != DMSG_RPC_CLIENT)
        return;
    /* Seq 0..3: one call of each kind the setup node and a visor make */
    uint8_t two = 2;
    dmsg_gob_slice none = {NULL, 0};
    static dmsg_bidi_route route;
    static dmsg_edge_rules edge;
    const struct {
        const dmsg_rpc_method *m;
        const void *arg;
    } calls[] = {{&dmsg_visor_reserve_ids, &two},
                 {&dmsg_visor_add_intermediary_rules, &none},
                 {&dmsg_visor_add_edge_rules, &edge},
                 {&dmsg_setup_dial_route_group, &route}};
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        size_t n;
        if (dmsg_rpc_call(&conn, calls[i].m, calls[i].arg, out, sizeof out, &n, NULL) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready)
        ready = dmsg_cipher_init() == 0;
    if (size < 2)
        return 0;
    start(data[0]);
    size_t chunk = data[1] ? data[1] : size;
    data += 2;
    size -= 2;
    size_t off = 0;
    while (off < size) {
        size_t piece = size - off < chunk ? size - off : chunk, taken;
        if (dmsg_rpc_feed(&conn, data + off, piece, &taken) != 0)
            break;
        off += taken;
        dmsg_rpc_event ev;
        int rc;
        while ((rc = dmsg_rpc_poll(&conn, &ev)) == 0)
            on_event(&ev);
        if (rc != DMSG_EAGAIN)
            break;
        if (taken == 0)
            abort(); /* a full buffer with nothing to parse must have been an error */
    }
    return 0;
}
