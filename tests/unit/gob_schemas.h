/* C mirrors of the Go types on the route-setup RPC wire (gob-and-rpc.md A.10, A.11), shared by
 * the gob unit test and the gob fuzz harness. Also the handshake objects. */
#ifndef DMSG_TEST_GOB_SCHEMAS_H
#define DMSG_TEST_GOB_SCHEMAS_H

#include <stddef.h>
#include <stdint.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/gob.h"

typedef struct rpc_request {
    dmsg_gob_bytes service_method;
    uint64_t seq;
} rpc_request;

typedef struct rpc_response {
    dmsg_gob_bytes service_method;
    uint64_t seq;
    dmsg_gob_bytes error;
} rpc_response;

typedef struct rpc_hop {
    uint8_t tp_id[16];
    dmsg_pk from;
    dmsg_pk to;
} rpc_hop;

typedef struct rpc_route {
    uint8_t desc[70];
    int64_t keep_alive;
    dmsg_gob_slice forward; /* rpc_hop */
    dmsg_gob_slice reverse;
} rpc_route;

typedef struct rpc_edge_rules {
    uint8_t desc[70];
    dmsg_gob_bytes forward;
    dmsg_gob_bytes reverse;
} rpc_edge_rules;

typedef struct rpc_empty {
    char unused;
} rpc_empty;

static inline int rpc_pk_check(const uint8_t *b, size_t len)
{
    if (len != DMSG_PK_LEN)
        return DMSG_EKEY;
    dmsg_pk pk;
    for (size_t i = 0; i < len; i++)
        pk.b[i] = b[i];
    return dmsg_pk_validate(&pk);
}

static const dmsg_gob_field rpc_request_fields[] = {
    {"ServiceMethod", offsetof(rpc_request, service_method), &dmsg_gob_type_string, 0},
    {"Seq", offsetof(rpc_request, seq), &dmsg_gob_type_uint64, 0},
};
static const dmsg_gob_type rpc_request_type = {
    .kind = DMSG_GOB_STRUCT, .name = "Request", .size = sizeof(rpc_request),
    .fields = rpc_request_fields, .nfields = 2};

static const dmsg_gob_field rpc_response_fields[] = {
    {"ServiceMethod", offsetof(rpc_response, service_method), &dmsg_gob_type_string, 0},
    {"Seq", offsetof(rpc_response, seq), &dmsg_gob_type_uint64, 0},
    {"Error", offsetof(rpc_response, error), &dmsg_gob_type_string, 0},
};
static const dmsg_gob_type rpc_response_type = {
    .kind = DMSG_GOB_STRUCT, .name = "Response", .size = sizeof(rpc_response),
    .fields = rpc_response_fields, .nfields = 3};

static const dmsg_gob_type rpc_pubkey_type = {
    .kind = DMSG_GOB_BINARY, .name = "PubKey", .size = sizeof(dmsg_pk), .len = DMSG_PK_LEN,
    .check = rpc_pk_check};
static const dmsg_gob_type rpc_uuid_type = {
    .kind = DMSG_GOB_BINARY, .name = "UUID", .size = 16, .len = 16};
static const dmsg_gob_type rpc_desc_type = {
    .kind = DMSG_GOB_ARRAY, .name = "RouteDescriptor", .size = 70, .elem = &dmsg_gob_type_uint8,
    .len = 70};

static const dmsg_gob_field rpc_hop_fields[] = {
    {"TpID", offsetof(rpc_hop, tp_id), &rpc_uuid_type, 0},
    {"From", offsetof(rpc_hop, from), &rpc_pubkey_type, 0},
    {"To", offsetof(rpc_hop, to), &rpc_pubkey_type, 0},
};
static const dmsg_gob_type rpc_hop_type = {
    .kind = DMSG_GOB_STRUCT, .name = "Hop", .size = sizeof(rpc_hop), .fields = rpc_hop_fields,
    .nfields = 3};
static const dmsg_gob_type rpc_hops_type = {
    .kind = DMSG_GOB_SLICE, .name = "[]routing.Hop", .size = sizeof(dmsg_gob_slice),
    .elem = &rpc_hop_type};

static const dmsg_gob_field rpc_route_fields[] = {
    {"Desc", offsetof(rpc_route, desc), &rpc_desc_type, 0},
    {"KeepAlive", offsetof(rpc_route, keep_alive), &dmsg_gob_type_int64, 0},
    {"Forward", offsetof(rpc_route, forward), &rpc_hops_type, 0},
    {"Reverse", offsetof(rpc_route, reverse), &rpc_hops_type, 0},
};
static const dmsg_gob_type rpc_route_type = {
    .kind = DMSG_GOB_STRUCT, .name = "BidirectionalRoute", .size = sizeof(rpc_route),
    .fields = rpc_route_fields, .nfields = 4};

static const dmsg_gob_field rpc_edge_rules_fields[] = {
    {"Desc", offsetof(rpc_edge_rules, desc), &rpc_desc_type, 0},
    {"Forward", offsetof(rpc_edge_rules, forward), &dmsg_gob_type_bytes, 0},
    {"Reverse", offsetof(rpc_edge_rules, reverse), &dmsg_gob_type_bytes, 0},
};
static const dmsg_gob_type rpc_edge_rules_type = {
    .kind = DMSG_GOB_STRUCT, .name = "EdgeRules", .size = sizeof(rpc_edge_rules),
    .fields = rpc_edge_rules_fields, .nfields = 3};

/* []routing.RouteID and []routing.Rule are sent as unnamed top-level types. */
static const dmsg_gob_type rpc_route_ids_type = {
    .kind = DMSG_GOB_SLICE, .name = "", .size = sizeof(dmsg_gob_slice),
    .elem = &dmsg_gob_type_uint32};
static const dmsg_gob_type rpc_rules_type = {
    .kind = DMSG_GOB_SLICE, .name = "", .size = sizeof(dmsg_gob_slice),
    .elem = &dmsg_gob_type_bytes};
/* struct{}{}: the reply body net/rpc sends with an error */
static const dmsg_gob_type rpc_empty_type = {
    .kind = DMSG_GOB_STRUCT, .name = "", .size = sizeof(rpc_empty)};

/* The dmsg handshake objects of the 2023 reference (the wire module has its own, with the
 * newer fields; these keep the gob tests independent of it). */

typedef struct t_addr {
    dmsg_pk pk;
    uint16_t port;
} t_addr;

typedef struct t_req {
    int64_t timestamp;
    t_addr src;
    t_addr dst;
    dmsg_gob_bytes noise;
} t_req;

typedef struct t_resp {
    uint8_t hash[32];
    bool accepted;
    uint16_t err_code;
    dmsg_gob_bytes noise;
} t_resp;

static const dmsg_gob_type sha256_type = {
    .kind = DMSG_GOB_ARRAY, .name = "SHA256", .size = 32, .elem = &dmsg_gob_type_uint8, .len = 32};
static const dmsg_gob_field addr_fields[] = {
    {"PK", offsetof(t_addr, pk), &rpc_pubkey_type, 0},
    {"Port", offsetof(t_addr, port), &dmsg_gob_type_uint16, 0},
};
static const dmsg_gob_type addr_type = {
    .kind = DMSG_GOB_STRUCT, .name = "Addr", .size = sizeof(t_addr), .fields = addr_fields,
    .nfields = 2};
static const dmsg_gob_field req_fields[] = {
    {"Timestamp", offsetof(t_req, timestamp), &dmsg_gob_type_int64, 0},
    {"SrcAddr", offsetof(t_req, src), &addr_type, 0},
    {"DstAddr", offsetof(t_req, dst), &addr_type, 0},
    {"NoiseMsg", offsetof(t_req, noise), &dmsg_gob_type_bytes, 0},
};
static const dmsg_gob_type req_type = {
    .kind = DMSG_GOB_STRUCT, .name = "StreamRequest", .size = sizeof(t_req),
    .fields = req_fields, .nfields = 4};
static const dmsg_gob_field resp_fields[] = {
    {"ReqHash", offsetof(t_resp, hash), &sha256_type, 0},
    {"Accepted", offsetof(t_resp, accepted), &dmsg_gob_type_bool, 0},
    {"ErrCode", offsetof(t_resp, err_code), &dmsg_gob_type_uint16, 0},
    {"NoiseMsg", offsetof(t_resp, noise), &dmsg_gob_type_bytes, 0},
};
static const dmsg_gob_type resp_type = {
    .kind = DMSG_GOB_STRUCT, .name = "StreamResponse", .size = sizeof(t_resp),
    .fields = resp_fields, .nfields = 4};

#endif
