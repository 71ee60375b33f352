/* The integrated route setup node: SetupRPCGateway.DialRouteGroup on the server's own DMSG port
 * 36 (gob-and-rpc.md part B, route-setup-interop.md), served in-process on streams the relay
 * hands over (relay_hooks.own_service).
 *
 * Per call: the reference's Check, then our policy (the route's source must be the requester,
 * hops per direction capped, setups in flight capped per requester and in total); one stream
 * per distinct visor to <visor>:136, dialed as the server's key from a non-zero source port
 * over the visor's own session on this server or a mesh peer's (hooks.route_to); ReserveIDs on
 * all of them at once; rule generation; AddIntermediaryRules to every intermediary; then
 * AddEdgeRules to the responder; the visor streams are closed and the initiator gets its
 * EdgeRules. The first failure ends the setup: every visor stream is reset and the initiator
 * gets a net/rpc error string. At the deadline the visor streams are reset and the initiator's
 * stream is closed, as the reference does. Nothing outlives a setup. */
#ifndef DMSGD_SETUP_NODE_H
#define DMSGD_SETUP_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dmsg/routing.h"
#include "relay.h"

struct setup_node;

struct setup_node_limits {
    uint32_t max_hops;            /* per direction, <= DMSG_ROUTE_MAX_HOPS (50) */
    uint32_t max_in_flight;       /* setups at once, all requesters (64) */
    uint32_t max_per_requester;   /* setups at once per requesting key (2) */
    uint32_t deadline_ms;         /* one DialRouteGroup call, all steps (30000) */
    uint32_t dial_timeout_ms;     /* one visor stream's handshake (20000) */
    uint32_t idle_ms;             /* a port-36 stream with no complete call for this long,
                                   * and no setup running, is reset (10000) */
};

void setup_node_limits_default(struct setup_node_limits *lim);

enum setup_node_result { SETUP_RESULT_OK = 0, SETUP_RESULT_ERROR, SETUP_RESULT_REFUSED,
                         SETUP_RESULT_TIMEOUT };

/* One state transition of one setup, for the store, metrics and events. */
struct setup_node_report {
    uint64_t id;                  /* unique for the node's lifetime, from 1 */
    dmsg_pk requester, src, dst;
    size_t hops_forward, hops_reverse;
    const char *state;            /* received, reserving, installing, done, failed */
    const char *error;            /* "" unless failed */
    bool finished;
    enum setup_node_result result;/* when finished */
    uint64_t elapsed_ms;          /* since received */
    int64_t *tag;                 /* the hook's own value for this setup (e.g. a row id);
                                   * 0 at "received", kept across its reports */
};

struct setup_node_hooks {
    void *ctx;
    /* The attempt-th session to reach a visor through (its own on this server first, then
     * mesh peers); NULL when none is left. A dial whose stream is closed unanswered tries the
     * next attempt. *timeout_ms may lower the dial timeout. */
    dmsg_session *(*route_to)(void *ctx, const dmsg_pk *visor, unsigned attempt,
                              uint32_t *timeout_ms);
    /* May be NULL. */
    void (*on_report)(void *ctx, const struct setup_node_report *r);
    /* Whether new calls are served (the route setup toggle); NULL: always. A call on a stream
     * opened before the toggle went off gets an error; setups in flight finish. */
    bool (*enabled)(void *ctx);
    /* The admin API's id for a stream the node dials (relay_next_link_id, so that ids are
     * unique across relayed and served streams); NULL: the node numbers them itself. */
    uint64_t (*next_link_id)(void *ctx);
};

struct setup_node_stats {
    uint64_t in_flight;
    uint64_t streams;             /* port-36 streams open */
    uint64_t visor_conns;         /* streams to visors open */
    uint64_t results[4];          /* by enum setup_node_result */
};

int setup_node_init(uv_loop_t *loop, const dmsg_identity *id, const struct setup_node_limits *lim,
                    const struct setup_node_hooks *hooks, struct setup_node **out);
void setup_node_set_limits(struct setup_node *n, const struct setup_node_limits *lim);

/* relay own_service for port 36: 0 when taken, else the wire code to refuse with (401 when
 * the requester already holds 4 x max_per_requester streams, or all hold 4 x max_in_flight). */
uint16_t setup_node_accept(struct setup_node *n, const struct relay_own_request *req);

void setup_node_get_stats(const struct setup_node *n, struct setup_node_stats *out);

/* Calls fn for every open stream of the node, in the shape the relay lists its streams (path
 * "service"): the requesters' port-36 streams (its id is the relay's, from the hand-over) and
 * the dials to visors' port 136 while their setup holds them (a failed dial the node let go
 * of, which only lingers until its FIN is answered, is not listed). fn must not close
 * streams. */
void setup_node_foreach_stream(const struct setup_node *n,
                               void (*fn)(const struct relay_link_info *info, void *arg),
                               void *arg);

/* Resets every stream; the node is freed once they are gone (on_done, may be NULL, then runs,
 * possibly from inside this call). */
void setup_node_close(struct setup_node *n, void (*on_done)(void *arg), void *arg);

#endif
