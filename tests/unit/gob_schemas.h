/* C mirrors of the Go types on the route-setup RPC wire (gob-and-rpc.md A.10, A.11), shared by
 * the gob unit test and the gob fuzz harness. Also the handshake objects. */
#ifndef DMSG_TEST_GOB_SCHEMAS_H
#define DMSG_TEST_GOB_SCHEMAS_H

#include <stddef.h>
#include <stdint.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/gob.h"
#include "dmsg/routing.h"
#include "dmsg/rpc.h"
#include "dmsg/wire.h"

/* The route-setup RPC types and schemas live in the rpc and routing cores; these are the names
 * the gob tests were written with. */
typedef dmsg_rpc_request rpc_request;
typedef dmsg_rpc_response rpc_response;
typedef dmsg_route_hop rpc_hop;
typedef dmsg_bidi_route rpc_route;
typedef dmsg_edge_rules rpc_edge_rules;

typedef struct rpc_empty {
    char unused;
} rpc_empty;

#define rpc_request_type dmsg_gob_rpc_request
#define rpc_response_type dmsg_gob_rpc_response
#define rpc_pubkey_type dmsg_gob_pubkey
#define rpc_route_type dmsg_gob_bidi_route
#define rpc_edge_rules_type dmsg_gob_edge_rules
#define rpc_route_ids_type dmsg_gob_route_ids
#define rpc_rules_type dmsg_gob_rules
#define rpc_empty_type dmsg_gob_rpc_empty

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
