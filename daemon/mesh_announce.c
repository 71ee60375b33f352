/* PeerAnnounce encoding, checking and answering; see mesh_announce.h. */
#include "mesh_announce.h"

#include <stddef.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/gob.h"
#include "dmsg/wire.h"

struct peer_announce {
    int64_t timestamp;
    dmsg_pk src_pk;
};

/* Field order is the Go declaration order; the decoder matches by name. */
static const dmsg_gob_field announce_fields[] = {
    {"Timestamp", offsetof(struct peer_announce, timestamp), &dmsg_gob_type_int64, 0},
    {"SrcPK", offsetof(struct peer_announce, src_pk), &dmsg_gob_pubkey, 0},
};

static const dmsg_gob_type announce_type = {
    .kind = DMSG_GOB_STRUCT,
    .name = "PeerAnnounce",
    .size = sizeof(struct peer_announce),
    .fields = announce_fields,
    .nfields = sizeof announce_fields / sizeof announce_fields[0],
};

int mesh_announce_make(const dmsg_pk *pk, const dmsg_sk *sk, int64_t now_ns, uint8_t *out,
                       size_t cap, size_t *out_len)
{
    struct peer_announce ann = {.timestamp = now_ns, .src_pk = *pk};
    dmsg_gob_registry reg;
    dmsg_gob_encoder enc;
    dmsg_sig sig;
    size_t gob_len = 0;
    int rc;

    if (cap < DMSG_SIGNED_OBJECT_MIN)
        return DMSG_ETOOBIG;
    dmsg_gob_registry_init(&reg);
    dmsg_gob_encoder_init(&enc, &reg);
    rc = dmsg_gob_encode(&enc, &announce_type, &ann, out + DMSG_SIG_LEN, cap - DMSG_SIG_LEN,
                         &gob_len);
    if (rc == 0)
        rc = dmsg_sign(&sig, sk, out + DMSG_SIG_LEN, gob_len);
    if (rc != 0)
        return rc;
    memcpy(out, sig.b, DMSG_SIG_LEN);
    *out_len = DMSG_SIG_LEN + gob_len;
    return 0;
}

int mesh_announce_parse(const uint8_t *obj, size_t len, const dmsg_pk *session_pk,
                        int64_t *timestamp_ns)
{
    struct peer_announce ann;
    dmsg_gob_decoder dec;
    dmsg_sig sig;
    size_t consumed = 0;
    int rc;

    if (len < DMSG_SIGNED_OBJECT_MIN)
        return DMSG_ESHORT;
    memset(&ann, 0, sizeof ann);
    dmsg_gob_decoder_init(&dec, DMSG_SIGNED_OBJECT_MAX, NULL, 0);
    rc = dmsg_gob_decode(&dec, obj + DMSG_SIG_LEN, len - DMSG_SIG_LEN, &announce_type, &ann,
                         &consumed);
    if (rc == DMSG_EAGAIN)
        return DMSG_ESHORT;
    if (rc != 0)
        return rc;
    /* Gob is lenient: a StreamRequest decodes too, without SrcPK. */
    if (dmsg_pk_is_null(&ann.src_pk) || !dmsg_pk_equal(&ann.src_pk, session_pk))
        return DMSG_EKEY;
    if (ann.timestamp <= 0)
        return DMSG_EINVAL;
    memcpy(sig.b, obj, DMSG_SIG_LEN);
    if (dmsg_verify(session_pk, &sig, obj + DMSG_SIG_LEN, len - DMSG_SIG_LEN) != 0)
        return DMSG_ESIG;
    if (timestamp_ns != NULL)
        *timestamp_ns = ann.timestamp;
    return 0;
}

int mesh_announce_answer(const uint8_t *obj, size_t len, bool accepted, const dmsg_sk *sk,
                         uint8_t *out, size_t cap, size_t *out_len)
{
    dmsg_stream_response resp;

    memset(&resp, 0, sizeof resp);
    dmsg_signed_object_hash(resp.req_hash, obj, len);
    resp.accepted = accepted;
    return dmsg_stream_response_make(&resp, sk, out, cap, out_len);
}

int mesh_announce_check_answer(const uint8_t *resp_obj, size_t resp_len, const uint8_t *ann,
                               size_t ann_len, const dmsg_pk *remote_pk, bool *accepted)
{
    dmsg_stream_response resp;
    uint8_t hash[DMSG_SHA256_LEN];
    dmsg_sig sig;
    uint16_t code = 0;
    int rc;

    rc = dmsg_stream_response_parse(&resp, resp_obj, resp_len, &code);
    if (rc == DMSG_EWIRE)
        return DMSG_ESHORT; /* 370: shorter than a signature */
    if (rc != 0)
        return rc;
    dmsg_signed_object_hash(hash, ann, ann_len);
    if (!dmsg_ct_equal(hash, resp.req_hash, sizeof hash))
        return DMSG_EMAC;
    memcpy(sig.b, resp_obj, DMSG_SIG_LEN);
    if (dmsg_verify(remote_pk, &sig, resp_obj + DMSG_SIG_LEN, resp_len - DMSG_SIG_LEN) != 0)
        return DMSG_ESIG;
    *accepted = resp.accepted;
    return 0;
}
