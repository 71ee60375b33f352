/* End-to-end handshake: Noise KK carried in the signed StreamRequest / StreamResponse
 * (dmsg-wire.md §5.3, §5.4, §7.1). */
#include <string.h>

#include "dmsg/e2e.h"
#include "dmsg/error.h"

int dmsg_e2e_dial_begin(dmsg_e2e_dialer *d, const dmsg_addr *src, const dmsg_sk *sk,
                        const dmsg_addr *dst, int64_t now_ns, const dmsg_rng *rng)
{
    memset(d, 0, sizeof *d);
    if (src->port == 0 || dst->port == 0)
        return DMSG_EINVAL;
    int err = dmsg_noise_hs_init(&d->hs, DMSG_NOISE_KK, DMSG_NOISE_INITIATOR, sk, &dst->pk, rng);
    if (err < 0)
        return err;
    uint8_t msg1[DMSG_NOISE_HS_MSG_MAX];
    size_t msg1_len = 0;
    if ((err = dmsg_noise_hs_write(&d->hs, msg1, sizeof msg1, &msg1_len)) < 0)
        return err;
    d->req.src = *src;
    d->req.dst = *dst;
    d->req.noise_msg.ptr = msg1;
    d->req.noise_msg.len = msg1_len;
    err = dmsg_stream_request_make(&d->req, now_ns, sk, d->obj, sizeof d->obj, &d->obj_len);
    /* msg1 lives on this stack frame; the request keeps only its signed bytes. */
    d->req.noise_msg.ptr = NULL;
    d->req.noise_msg.len = 0;
    if (err < 0)
        dmsg_noise_hs_wipe(&d->hs);
    return err;
}

int dmsg_e2e_dial_finish(dmsg_e2e_dialer *d, const uint8_t *obj, size_t len, dmsg_noise_tx *tx,
                         dmsg_noise_rx *rx, uint16_t *wire_code)
{
    *wire_code = 0;
    dmsg_stream_response resp;
    int err = dmsg_stream_response_parse(&resp, obj, len, wire_code);
    if (err == 0)
        err = dmsg_stream_response_verify(&resp, &d->req, wire_code);
    if (err == 0)
        err = dmsg_noise_hs_read(&d->hs, resp.noise_msg.ptr, resp.noise_msg.len);
    if (err == 0)
        err = dmsg_noise_hs_split(&d->hs, tx, rx);
    dmsg_noise_hs_wipe(&d->hs);
    return err;
}

void dmsg_e2e_dialer_wipe(dmsg_e2e_dialer *d)
{
    dmsg_noise_hs_wipe(&d->hs);
}

int dmsg_e2e_request_check(dmsg_stream_request *req, const uint8_t *obj, size_t len,
                           const dmsg_pk *our_pk, uint16_t *wire_code)
{
    *wire_code = 0;
    int err = dmsg_stream_request_parse(req, obj, len, wire_code);
    if (err == 0)
        err = dmsg_stream_request_verify(req, NULL, our_pk, wire_code);
    return err;
}

int dmsg_e2e_accept(const dmsg_stream_request *req, const dmsg_sk *sk, const dmsg_rng *rng,
                    uint8_t *out, size_t cap, size_t *out_len, dmsg_noise_tx *tx,
                    dmsg_noise_rx *rx)
{
    dmsg_noise_hs hs;
    int err = dmsg_noise_hs_init(&hs, DMSG_NOISE_KK, DMSG_NOISE_RESPONDER, sk, &req->src.pk, rng);
    if (err < 0)
        return err;
    uint8_t msg2[DMSG_NOISE_HS_MSG_MAX];
    size_t msg2_len = 0;
    if ((err = dmsg_noise_hs_read(&hs, req->noise_msg.ptr, req->noise_msg.len)) == 0 &&
        (err = dmsg_noise_hs_write(&hs, msg2, sizeof msg2, &msg2_len)) == 0) {
        dmsg_stream_response resp = {.accepted = true,
                                     .noise_msg = {.ptr = msg2, .len = msg2_len}};
        dmsg_signed_object_hash(resp.req_hash, req->raw, req->raw_len);
        err = dmsg_stream_response_make(&resp, sk, out, cap, out_len);
    }
    if (err == 0)
        err = dmsg_noise_hs_split(&hs, tx, rx);
    dmsg_noise_hs_wipe(&hs);
    return err;
}

int dmsg_e2e_refuse(const dmsg_stream_request *req, const dmsg_sk *sk, uint16_t code,
                    uint8_t *out, size_t cap, size_t *out_len)
{
    if (code == 0)
        return DMSG_EINVAL;
    dmsg_stream_response resp = {.accepted = false, .err_code = code};
    dmsg_signed_object_hash(resp.req_hash, req->raw, req->raw_len);
    return dmsg_stream_response_make(&resp, sk, out, cap, out_len);
}
