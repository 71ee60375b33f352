/* Arbitrary bytes into the gob decoder, as every schema the daemon uses and as a discarded
 * stream. Whatever decodes must re-encode, and the re-encoding must decode to the same value
 * (checked as encode(decode(encode(v))) == encode(v)). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/gob_schemas.h"
#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/gob.h"

static uint8_t arena[1 << 16], arena2[1 << 16];
static uint8_t value[4096], value2[4096];
static uint8_t out[1 << 18], out2[1 << 18];

static int encode(const dmsg_gob_type *t, const void *v, uint8_t *buf, size_t cap, size_t *len)
{
    dmsg_gob_registry reg;
    dmsg_gob_encoder enc;
    dmsg_gob_registry_init(&reg);
    dmsg_gob_encoder_init(&enc, &reg);
    return dmsg_gob_encode(&enc, t, v, buf, cap, len);
}

static void round_trip(const dmsg_gob_type *t)
{
    size_t len, len2, consumed;
    int rc = encode(t, value, out, sizeof out, &len);
    if (rc == DMSG_ETOOBIG)
        return;
    if (rc)
        abort();
    dmsg_gob_decoder dec;
    dmsg_gob_decoder_init(&dec, sizeof out, arena2, sizeof arena2);
    if (dmsg_gob_decode(&dec, out, len, t, value2, &consumed) != 0 || consumed != len)
        abort();
    if (encode(t, value2, out2, sizeof out2, &len2) != 0 || len2 != len ||
        memcmp(out, out2, len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready)
        ready = dmsg_cipher_init() == 0;
    const dmsg_gob_type *types[] = {
        &req_type,           &resp_type,          &rpc_request_type, &rpc_response_type,
        &rpc_route_type,     &rpc_edge_rules_type, &rpc_route_ids_type, &rpc_rules_type,
        &dmsg_gob_type_uint8, &dmsg_gob_type_bool, &rpc_empty_type,
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (types[i]->size > sizeof value)
            abort();
        dmsg_gob_decoder dec;
        dmsg_gob_decoder_init(&dec, 1 << 20, arena, sizeof arena);
        size_t consumed;
        if (dmsg_gob_decode(&dec, data, size, types[i], value, &consumed) == 0) {
            if (consumed > size)
                abort();
            round_trip(types[i]);
        }
    }
    /* a stream of values of any type, read and discarded, on one decoder */
    dmsg_gob_decoder dec;
    dmsg_gob_decoder_init(&dec, 1 << 20, NULL, 0);
    size_t off = 0, consumed;
    while (off < size && dmsg_gob_decode(&dec, data + off, size - off, NULL, NULL, &consumed) == 0) {
        if (consumed == 0 || consumed > size - off)
            abort();
        off += consumed;
    }
    return 0;
}
