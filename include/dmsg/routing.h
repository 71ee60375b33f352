/* Skywire route setup: the data structures the setup RPC carries, the routing rules with their
 * exact byte layouts, and the rule generation of the reference setup node (gob-and-rpc.md B.2-B.4,
 * B.6; vectors: routing_rules.json, setup_rpc.json).
 *
 * Everything here is pure: no I/O, no clock, no allocation. A setup node uses it in three steps:
 *
 *   1. dmsg_route_check() (the reference's BidirectionalRoute.Check, with its error texts) and
 *      dmsg_route_check_policy() (our own limits: requester binding, hops per direction,
 *      degenerate shapes);
 *   2. dmsg_route_plan_init(): which visors take part, in which roles, and how many route ids
 *      each must reserve (the ReserveIDs argument); the caller stores each visor's answer with
 *      dmsg_route_plan_set_ids();
 *   3. dmsg_route_generate(): the forward, reverse and intermediary rules, handed out as the
 *      reference does (initiator's EdgeRules as the DialRouteGroup reply, responder's EdgeRules
 *      for AddEdgeRules, intermediary rules per visor for AddIntermediaryRules).
 *
 * The gob schemas at the end describe these types on the RPC wire (A.11). */
#ifndef DMSG_ROUTING_H
#define DMSG_ROUTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/cipher.h"
#include "dmsg/gob.h"
#include "dmsg/rpc.h"

#define DMSG_ROUTE_DESC_LEN 70   /* src pk, dst pk, src port, dst port (big-endian) */
#define DMSG_TP_ID_LEN 16        /* transport id: a UUID's 16 bytes */

/* Hops per direction a visor accepts (skywire router maxHops); our policy cap can only be lower. */
#define DMSG_ROUTE_MAX_HOPS 50
/* One id per path start plus one per hop, in both directions. */
#define DMSG_ROUTE_MAX_IDS (2 * (DMSG_ROUTE_MAX_HOPS + 1))
#define DMSG_ROUTE_MAX_VISORS DMSG_ROUTE_MAX_IDS
#define DMSG_ROUTE_MAX_INTER (2 * (DMSG_ROUTE_MAX_HOPS - 1))

/* The setup node's request deadline and the default keep-alive of the reference, in ns. */
#define DMSG_ROUTE_SETUP_TIMEOUT_NS 30000000000LL
#define DMSG_ROUTE_DEFAULT_KEEP_ALIVE_NS 30000000000LL

/* ---- route descriptor ---- */

typedef struct dmsg_route_addr {
    dmsg_pk pk;
    uint16_t port;
} dmsg_route_addr;

void dmsg_route_desc_pack(uint8_t desc[DMSG_ROUTE_DESC_LEN], const dmsg_route_addr *src,
                          const dmsg_route_addr *dst);
void dmsg_route_desc_unpack(const uint8_t desc[DMSG_ROUTE_DESC_LEN], dmsg_route_addr *src,
                            dmsg_route_addr *dst);
/* Go's Invert(): source and destination swapped (keys and ports). out may alias desc. */
void dmsg_route_desc_invert(const uint8_t desc[DMSG_ROUTE_DESC_LEN],
                            uint8_t out[DMSG_ROUTE_DESC_LEN]);
/* Go's String(): "rAddr:<dst pk>:<dst port>, lAddr:<src pk>:<src port>". NUL-terminated;
 * DMSG_ETOOBIG when cap is too small; *len (may be NULL) gets the length without the NUL. */
int dmsg_route_desc_string(const uint8_t desc[DMSG_ROUTE_DESC_LEN], char *out, size_t cap,
                           size_t *len);

/* ---- rules ---- */

typedef enum dmsg_rule_type {
    DMSG_RULE_CONSUME = 0,      /* "REV": the route ends at this visor */
    DMSG_RULE_FORWARD = 1,      /* "FWD": the route starts at this visor */
    DMSG_RULE_INTERMEDIARY = 2  /* "INTER": this visor relays */
} dmsg_rule_type;

#define DMSG_RULE_HEADER_LEN 13
#define DMSG_RULE_CONSUME_LEN 83
#define DMSG_RULE_FORWARD_LEN 120
#define DMSG_RULE_INTERMEDIARY_LEN 50
#define DMSG_RULE_MAX_LEN DMSG_RULE_FORWARD_LEN
#define DMSG_RULE_STRING_MAX 320  /* room for the longest String() and its NUL */
#define DMSG_RULE_SUMMARY_JSON_MAX 512

/* A rule as the bytes that travel (routing.Rule is a []byte in Go). */
typedef struct dmsg_rule {
    uint8_t len;
    uint8_t b[DMSG_RULE_MAX_LEN];
} dmsg_rule;

/* The reference's constructors. A negative keep-alive is stored as 0, as Go stores it. */
void dmsg_rule_consume(dmsg_rule *rule, int64_t keep_alive_ns, uint32_t key_route_id,
                       const uint8_t desc[DMSG_ROUTE_DESC_LEN]);
void dmsg_rule_forward(dmsg_rule *rule, int64_t keep_alive_ns, uint32_t key_route_id,
                       uint32_t next_route_id, const uint8_t next_tp_id[DMSG_TP_ID_LEN],
                       const uint8_t desc[DMSG_ROUTE_DESC_LEN]);
void dmsg_rule_intermediary(dmsg_rule *rule, int64_t keep_alive_ns, uint32_t key_route_id,
                            uint32_t next_route_id, const uint8_t next_tp_id[DMSG_TP_ID_LEN]);

/* Go's Rule.Summary(): the fields of a rule. desc is set for CONSUME and FORWARD, next_* for
 * FORWARD and INTERMEDIARY; the others are zero. */
typedef struct dmsg_rule_summary {
    int64_t keep_alive_ns;
    dmsg_rule_type type;
    uint32_t key_route_id;
    uint8_t desc[DMSG_ROUTE_DESC_LEN];
    uint32_t next_route_id;
    uint8_t next_tp_id[DMSG_TP_ID_LEN];
} dmsg_rule_summary;

/* Parses rule bytes. DMSG_ESHORT when shorter than the 13-byte header, DMSG_ETYPE for an unknown
 * type byte, DMSG_EPROTO when the length is not exactly the type's length (83/120/50) or the
 * padding is not zero: the reference's visors would misread (or panic on) such a rule. */
int dmsg_rule_parse(const uint8_t *rule, size_t len, dmsg_rule_summary *out);

/* Go's RuleType.String(): "Consume", "Forward", "IntermediaryForward"; "Unknown" otherwise. */
const char *dmsg_rule_type_name(dmsg_rule_type type);

/* Go's Rule.String(), e.g. "INTER(keyRtID:21, nxtRtID:11, nxtTpID:a1b2c3d4-...)".
 * Output conventions as dmsg_route_desc_string. */
int dmsg_rule_string(const dmsg_rule_summary *rule, char *out, size_t cap, size_t *len);

/* Summary() as Go's encoding/json writes it (keys in Go's field order), e.g.
 * {"keep_alive":30000000000,"rule_type":2,"key_route_id":21,
 *  "intermediary_forward_fields":{"next_rid":11,"next_tid":"a1b2c3d4-..."}}. */
int dmsg_rule_summary_json(const dmsg_rule_summary *rule, char *out, size_t cap, size_t *len);

/* A transport id as Go's uuid.String(): 8-4-4-4-12 lowercase hex. out holds 37 bytes. */
void dmsg_tp_id_string(const uint8_t id[DMSG_TP_ID_LEN], char out[37]);

/* ---- the route-setup RPC types (A.11) ---- */

typedef struct dmsg_route_hop {
    uint8_t tp_id[DMSG_TP_ID_LEN];
    dmsg_pk from;
    dmsg_pk to;
} dmsg_route_hop;

/* routing.BidirectionalRoute, the DialRouteGroup argument. forward and reverse hold
 * dmsg_route_hop items; desc is the forward (initiator -> responder) descriptor. */
typedef struct dmsg_bidi_route {
    uint8_t desc[DMSG_ROUTE_DESC_LEN];
    int64_t keep_alive; /* time.Duration, ns */
    dmsg_gob_slice forward;
    dmsg_gob_slice reverse;
} dmsg_bidi_route;

/* routing.EdgeRules: the DialRouteGroup reply and the AddEdgeRules argument. The rules are views
 * (into a dmsg_route_rules, or into the received bytes). */
typedef struct dmsg_edge_rules {
    uint8_t desc[DMSG_ROUTE_DESC_LEN];
    dmsg_gob_bytes forward;
    dmsg_gob_bytes reverse;
} dmsg_edge_rules;

/* ---- validation (B.2, B.6) ---- */

/* The reference's BidirectionalRoute.Check. 0, or DMSG_EPROTO with *why set to Go's text
 * ("bidirectional route does not have forward hops", "... reverse hops", "bidirectional route
 * has an invalid route description"). */
int dmsg_route_check(const dmsg_bidi_route *route, const char **why);

typedef struct dmsg_route_policy {
    const dmsg_pk *requester; /* the authenticated key of the requesting stream; NULL: unchecked */
    size_t max_hops;          /* per direction, 1..DMSG_ROUTE_MAX_HOPS; 0 means the maximum */
} dmsg_route_policy;

/* Limits beyond the reference, applied after dmsg_route_check and before any visor is dialed:
 *   DMSG_EPERM   the route's source is not the requester;
 *   DMSG_ELIMIT  more hops in one direction than policy->max_hops;
 *   DMSG_EPROTO  a degenerate shape the reference mishandles: source = destination, a hop
 *                without a key, a path whose hops do not join up, an edge visor that is also
 *                an intermediary.
 * *why gets a short text suitable for the net/rpc error reply. */
int dmsg_route_check_policy(const dmsg_bidi_route *route, const dmsg_route_policy *policy,
                            const char **why);

/* ---- route-id reservation (B.3) ---- */

enum dmsg_route_role {
    DMSG_ROUTE_ROLE_INITIATOR = 1,    /* Desc source: reserves ids; gets the DialRouteGroup reply */
    DMSG_ROUTE_ROLE_RESPONDER = 2,    /* Desc destination: AddEdgeRules */
    DMSG_ROUTE_ROLE_INTERMEDIARY = 4  /* AddIntermediaryRules */
};

typedef struct dmsg_route_visor {
    dmsg_pk pk;
    uint8_t roles;   /* dmsg_route_role bits */
    uint8_t need;    /* ids it must reserve: the ReserveIDs argument */
    uint8_t have;    /* ids stored with dmsg_route_plan_set_ids */
    uint16_t first;  /* its ids start here in ids[] */
} dmsg_route_visor;

/* The visors of one route setup, in order of first appearance (forward path, then reverse),
 * with the ids each reserved. About 4.5 KiB. */
typedef struct dmsg_route_plan {
    size_t nvisors;
    dmsg_route_visor visors[DMSG_ROUTE_MAX_VISORS];
    uint32_t ids[DMSG_ROUTE_MAX_IDS];
} dmsg_route_plan;

/* Counts the ids per visor. DMSG_EPROTO for an empty path, DMSG_ELIMIT for more than
 * DMSG_ROUTE_MAX_HOPS hops in a direction (run the checks first: they say why). */
int dmsg_route_plan_init(dmsg_route_plan *plan, const dmsg_bidi_route *route);
/* Index of pk in plan->visors, or -1. */
int dmsg_route_plan_find(const dmsg_route_plan *plan, const dmsg_pk *pk);
/* Stores the ids visor i returned for ReserveIDs(need). DMSG_EPROTO unless n == need (B.7 #4),
 * DMSG_EINVAL for a bad index, DMSG_ESTATE when already stored. */
int dmsg_route_plan_set_ids(dmsg_route_plan *plan, size_t i, const uint32_t *ids, size_t n);

/* ---- rule generation (B.4) ---- */

typedef struct dmsg_route_inter_rule {
    uint16_t visor; /* index into the plan */
    dmsg_rule rule;
} dmsg_route_inter_rule;

/* About 12.5 KiB. */
typedef struct dmsg_route_rules {
    uint8_t initiator_desc[DMSG_ROUTE_DESC_LEN]; /* the reverse descriptor */
    dmsg_rule initiator_forward;                 /* forward path's FWD */
    dmsg_rule initiator_reverse;                 /* reverse path's REV */
    uint8_t responder_desc[DMSG_ROUTE_DESC_LEN]; /* the forward descriptor */
    dmsg_rule responder_forward;                 /* reverse path's FWD */
    dmsg_rule responder_reverse;                 /* forward path's REV */
    size_t ninter;                               /* forward path's first, then reverse's */
    dmsg_route_inter_rule inter[DMSG_ROUTE_MAX_INTER];
} dmsg_route_rules;

/* Generates every rule of the route with the reserved ids, handing each visor's ids out in
 * order as the reference does. DMSG_ENOTFOUND with *why = "id reservoir has no key" (Go's text)
 * when a visor has no id left; DMSG_EPROTO/DMSG_ELIMIT as dmsg_route_plan_init. plan is not
 * changed. */
int dmsg_route_generate(const dmsg_route_plan *plan, const dmsg_bidi_route *route,
                        dmsg_route_rules *out, const char **why);

/* Views of the generated edge rules, ready for the gob encoder (they point into rules). */
void dmsg_route_rules_initiator(const dmsg_route_rules *rules, dmsg_edge_rules *out);
void dmsg_route_rules_responder(const dmsg_route_rules *rules, dmsg_edge_rules *out);
/* The intermediary rules of visor i, in generation order, as views into rules: the
 * AddIntermediaryRules argument. *n gets the count; DMSG_ETOOBIG when cap is too small. */
int dmsg_route_rules_for_visor(const dmsg_route_rules *rules, size_t i, dmsg_gob_bytes *views,
                               size_t cap, size_t *n);

/* ---- gob schemas and RPC methods ---- */

extern const dmsg_gob_type dmsg_gob_uuid;            /* uuid.UUID: BinaryMarshaler, 16 bytes */
extern const dmsg_gob_type dmsg_gob_route_desc;      /* routing.RouteDescriptor: [70]byte */
extern const dmsg_gob_type dmsg_gob_route_hop;       /* routing.Hop -> dmsg_route_hop */
extern const dmsg_gob_type dmsg_gob_route_hops;      /* []routing.Hop */
extern const dmsg_gob_type dmsg_gob_bidi_route;      /* -> dmsg_bidi_route */
extern const dmsg_gob_type dmsg_gob_edge_rules;      /* -> dmsg_edge_rules */
extern const dmsg_gob_type dmsg_gob_route_ids;       /* []routing.RouteID -> uint32_t items */
extern const dmsg_gob_type dmsg_gob_rules;           /* []routing.Rule -> dmsg_gob_bytes items */

#define DMSG_SETUP_NODE_PORT 36    /* the setup node's RPC (SetupRPCGateway) */
#define DMSG_VISOR_SETUP_PORT 136  /* every visor's router RPC (RPCGateway) */

/* SetupRPCGateway.DialRouteGroup(BidirectionalRoute) -> EdgeRules */
extern const dmsg_rpc_method dmsg_setup_dial_route_group;
/* RPCGateway.ReserveIDs(uint8) -> []RouteID; AddIntermediaryRules([]Rule) -> bool;
 * AddEdgeRules(EdgeRules) -> bool */
extern const dmsg_rpc_method dmsg_visor_reserve_ids;
extern const dmsg_rpc_method dmsg_visor_add_intermediary_rules;
extern const dmsg_rpc_method dmsg_visor_add_edge_rules;
/* The method tables a server conn serves: the setup node's (port 36) and a visor's (port 136). */
extern const dmsg_rpc_method *const dmsg_setup_node_methods[];
#define DMSG_SETUP_NODE_NMETHODS 1
extern const dmsg_rpc_method *const dmsg_visor_methods[];
#define DMSG_VISOR_NMETHODS 3

/* Decoder arena a DialRouteGroup argument needs at most when each direction has at most
 * max_hops hops (a larger route then fails to decode with DMSG_ELIMIT). */
#define DMSG_ROUTE_ARENA_SIZE(max_hops) (2 * (size_t)(max_hops) * sizeof(dmsg_route_hop) + 64)

#endif
