/* Arbitrary bytes as a received SignedObject: parsed and verified as a StreamRequest and as a
 * StreamResponse (against a request of our own and against the input itself). Whatever parses
 * must re-encode, and every DMSG_EWIRE must carry a wire code. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/wire.h"

static dmsg_pk ref_pk;
static dmsg_stream_request ref_req;
static uint8_t ref_obj[512];
static uint8_t out[DMSG_SIGNED_OBJECT_MAX];

static bool make_reference(void)
{
    if (dmsg_cipher_init() != 0)
        return false;
    dmsg_sk sk;
    dmsg_sha256(sk.b, (const uint8_t *)"fuzz_signed_object", 18);
    if (dmsg_pk_from_sk(&ref_pk, &sk) != 0)
        return false;
    static const uint8_t noise[49] = {7};
    ref_req = (dmsg_stream_request){
        .src = {ref_pk, 49153}, .dst = {ref_pk, 80}, .noise_msg = {noise, sizeof noise}};
    size_t len;
    return dmsg_stream_request_make(&ref_req, 1700000000000000000, &sk, ref_obj, sizeof ref_obj,
                                    &len) == 0;
}

static void check(int rc, uint16_t code)
{
    if ((rc == DMSG_EWIRE) != (code != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready && !(ready = make_reference()))
        abort();
    uint16_t code;
    size_t len;
    int rc;

    dmsg_stream_request req;
    rc = dmsg_stream_request_parse(&req, data, size, &code);
    check(rc, code);
    bool have_req = rc == 0;
    if (have_req) {
        if (req.raw != data || req.raw_len != size)
            abort();
        check(dmsg_stream_request_verify(&req, NULL, NULL, &code), code);
        check(dmsg_stream_request_verify(&req, &ref_pk, &ref_pk, &code), code);
        rc = dmsg_stream_request_encode(&req, NULL, out, sizeof out, &len);
        if (rc != 0 && rc != DMSG_ETOOBIG)
            abort();
    }

    dmsg_stream_response resp;
    rc = dmsg_stream_response_parse(&resp, data, size, &code);
    check(rc, code);
    if (rc == 0) {
        check(dmsg_stream_response_verify(&resp, &ref_req, &code), code);
        if (have_req)
            check(dmsg_stream_response_verify(&resp, &req, &code), code);
        rc = dmsg_stream_response_encode(&resp, NULL, out, sizeof out, &len);
        if (rc != 0 && rc != DMSG_ETOOBIG)
            abort();
    }
    return 0;
}
