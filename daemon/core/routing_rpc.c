/* The route-setup RPC on the wire: gob schemas of its types and its methods (gob-and-rpc.md
 * A.11, B.1). Field order is the Go declaration order: it decides the field numbers. */
#include <stddef.h>

#include "dmsg/routing.h"
#include "dmsg/wire.h"

const dmsg_gob_type dmsg_gob_uuid = {
    .kind = DMSG_GOB_BINARY, .name = "UUID", .size = DMSG_TP_ID_LEN, .len = DMSG_TP_ID_LEN};

const dmsg_gob_type dmsg_gob_route_desc = {
    .kind = DMSG_GOB_ARRAY, .name = "RouteDescriptor", .size = DMSG_ROUTE_DESC_LEN,
    .elem = &dmsg_gob_type_uint8, .len = DMSG_ROUTE_DESC_LEN};

static const dmsg_gob_field hop_fields[] = {
    {"TpID", offsetof(dmsg_route_hop, tp_id), &dmsg_gob_uuid, 0},
    {"From", offsetof(dmsg_route_hop, from), &dmsg_gob_pubkey, 0},
    {"To", offsetof(dmsg_route_hop, to), &dmsg_gob_pubkey, 0},
};
const dmsg_gob_type dmsg_gob_route_hop = {
    .kind = DMSG_GOB_STRUCT, .name = "Hop", .size = sizeof(dmsg_route_hop), .fields = hop_fields,
    .nfields = 3};

const dmsg_gob_type dmsg_gob_route_hops = {
    .kind = DMSG_GOB_SLICE, .name = "[]routing.Hop", .size = sizeof(dmsg_gob_slice),
    .elem = &dmsg_gob_route_hop};

static const dmsg_gob_field bidi_route_fields[] = {
    {"Desc", offsetof(dmsg_bidi_route, desc), &dmsg_gob_route_desc, 0},
    {"KeepAlive", offsetof(dmsg_bidi_route, keep_alive), &dmsg_gob_type_int64, 0},
    {"Forward", offsetof(dmsg_bidi_route, forward), &dmsg_gob_route_hops, 0},
    {"Reverse", offsetof(dmsg_bidi_route, reverse), &dmsg_gob_route_hops, 0},
};
const dmsg_gob_type dmsg_gob_bidi_route = {
    .kind = DMSG_GOB_STRUCT, .name = "BidirectionalRoute", .size = sizeof(dmsg_bidi_route),
    .fields = bidi_route_fields, .nfields = 4};

static const dmsg_gob_field edge_rules_fields[] = {
    {"Desc", offsetof(dmsg_edge_rules, desc), &dmsg_gob_route_desc, 0},
    {"Forward", offsetof(dmsg_edge_rules, forward), &dmsg_gob_type_bytes, 0},
    {"Reverse", offsetof(dmsg_edge_rules, reverse), &dmsg_gob_type_bytes, 0},
};
const dmsg_gob_type dmsg_gob_edge_rules = {
    .kind = DMSG_GOB_STRUCT, .name = "EdgeRules", .size = sizeof(dmsg_edge_rules),
    .fields = edge_rules_fields, .nfields = 3};

/* top-level unnamed slices: Go sends no name for them */
const dmsg_gob_type dmsg_gob_route_ids = {
    .kind = DMSG_GOB_SLICE, .name = "", .size = sizeof(dmsg_gob_slice),
    .elem = &dmsg_gob_type_uint32};
const dmsg_gob_type dmsg_gob_rules = {
    .kind = DMSG_GOB_SLICE, .name = "", .size = sizeof(dmsg_gob_slice),
    .elem = &dmsg_gob_type_bytes};

/* ---- RPC methods (B.1) ---- */

const dmsg_rpc_method dmsg_setup_dial_route_group = {
    "SetupRPCGateway.DialRouteGroup", &dmsg_gob_bidi_route, &dmsg_gob_edge_rules};
const dmsg_rpc_method dmsg_visor_reserve_ids = {
    "RPCGateway.ReserveIDs", &dmsg_gob_type_uint8, &dmsg_gob_route_ids};
const dmsg_rpc_method dmsg_visor_add_intermediary_rules = {
    "RPCGateway.AddIntermediaryRules", &dmsg_gob_rules, &dmsg_gob_type_bool};
const dmsg_rpc_method dmsg_visor_add_edge_rules = {
    "RPCGateway.AddEdgeRules", &dmsg_gob_edge_rules, &dmsg_gob_type_bool};

const dmsg_rpc_method *const dmsg_setup_node_methods[DMSG_SETUP_NODE_NMETHODS] = {
    &dmsg_setup_dial_route_group};
const dmsg_rpc_method *const dmsg_visor_methods[DMSG_VISOR_NMETHODS] = {
    &dmsg_visor_reserve_ids, &dmsg_visor_add_intermediary_rules, &dmsg_visor_add_edge_rules};
