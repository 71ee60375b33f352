/* StreamRequest / StreamResponse: gob schemas, SignedObject making, parsing and verification. */
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/wire.h"

_Static_assert(sizeof(dmsg_pk) == DMSG_PK_LEN, "PubKey is decoded straight into dmsg_pk");

/* ---- schemas ---- */

/* cipher.PubKey.UnmarshalBinary: exactly 33 bytes and a valid point (Go panics on some invalid
 * points; we refuse them). */
static int pubkey_check(const uint8_t *bytes, size_t len)
{
    if (len != DMSG_PK_LEN)
        return DMSG_EKEY;
    dmsg_pk pk;
    memcpy(pk.b, bytes, DMSG_PK_LEN);
    return dmsg_pk_validate(&pk);
}

const dmsg_gob_type dmsg_gob_pubkey = {
    .kind = DMSG_GOB_BINARY, .name = "PubKey", .size = sizeof(dmsg_pk), .len = DMSG_PK_LEN,
    .check = pubkey_check};

const dmsg_gob_type dmsg_gob_sha256 = {
    .kind = DMSG_GOB_ARRAY, .name = "SHA256", .size = DMSG_SHA256_LEN,
    .elem = &dmsg_gob_type_uint8, .len = DMSG_SHA256_LEN};

/* net.IP has MarshalText, so gob sends it as a TextMarshaler named "IP" */
static const dmsg_gob_type ip_type = {
    .kind = DMSG_GOB_TEXT, .name = "IP", .size = sizeof(dmsg_gob_bytes)};

static const dmsg_gob_field addr_fields[] = {
    {"PK", offsetof(dmsg_addr, pk), &dmsg_gob_pubkey, 0},
    {"Port", offsetof(dmsg_addr, port), &dmsg_gob_type_uint16, 0},
};
const dmsg_gob_type dmsg_gob_addr = {
    .kind = DMSG_GOB_STRUCT, .name = "Addr", .size = sizeof(dmsg_addr), .fields = addr_fields,
    .nfields = 2};

#define REQ_FIELD(name, member, type, flags) {name, offsetof(dmsg_stream_request, member), type, flags}
#define RESP_FIELD(name, member, type, flags) {name, offsetof(dmsg_stream_response, member), type, flags}

/* Field order is the Go declaration order: it decides the field numbers on the wire. */
static const dmsg_gob_field request_2023_fields[] = {
    REQ_FIELD("Timestamp", timestamp, &dmsg_gob_type_int64, 0),
    REQ_FIELD("SrcAddr", src, &dmsg_gob_addr, 0),
    REQ_FIELD("DstAddr", dst, &dmsg_gob_addr, 0),
    REQ_FIELD("NoiseMsg", noise_msg, &dmsg_gob_type_bytes, 0),
};
static const dmsg_gob_field request_fields[] = {
    REQ_FIELD("Timestamp", timestamp, &dmsg_gob_type_int64, 0),
    REQ_FIELD("SrcAddr", src, &dmsg_gob_addr, 0),
    REQ_FIELD("DstAddr", dst, &dmsg_gob_addr, 0),
    REQ_FIELD("IPinfo", ip_info, &dmsg_gob_type_bool, DMSG_GOB_FIELD_LENIENT),
    REQ_FIELD("GeoInfo", geo_info, &dmsg_gob_type_bool, DMSG_GOB_FIELD_LENIENT),
    REQ_FIELD("NoiseMsg", noise_msg, &dmsg_gob_type_bytes, 0),
};
static const dmsg_gob_field response_2023_fields[] = {
    RESP_FIELD("ReqHash", req_hash, &dmsg_gob_sha256, 0),
    RESP_FIELD("Accepted", accepted, &dmsg_gob_type_bool, 0),
    RESP_FIELD("ErrCode", err_code, &dmsg_gob_type_uint16, 0),
    RESP_FIELD("NoiseMsg", noise_msg, &dmsg_gob_type_bytes, 0),
};
static const dmsg_gob_field response_fields[] = {
    RESP_FIELD("ReqHash", req_hash, &dmsg_gob_sha256, 0),
    RESP_FIELD("Accepted", accepted, &dmsg_gob_type_bool, 0),
    RESP_FIELD("IP", ip, &ip_type, DMSG_GOB_FIELD_LENIENT),
    RESP_FIELD("GeoCountry", geo_country, &dmsg_gob_type_string, DMSG_GOB_FIELD_LENIENT),
    RESP_FIELD("GeoRegion", geo_region, &dmsg_gob_type_string, DMSG_GOB_FIELD_LENIENT),
    RESP_FIELD("GeoLat", geo_lat, &dmsg_gob_type_float64, DMSG_GOB_FIELD_LENIENT),
    RESP_FIELD("GeoLon", geo_lon, &dmsg_gob_type_float64, DMSG_GOB_FIELD_LENIENT),
    RESP_FIELD("ErrCode", err_code, &dmsg_gob_type_uint16, 0),
    RESP_FIELD("NoiseMsg", noise_msg, &dmsg_gob_type_bytes, 0),
};

#define STRUCT_TYPE(name_, ctype, fields_)                                                     \
    {.kind = DMSG_GOB_STRUCT, .name = (name_), .size = sizeof(ctype), .fields = (fields_),     \
     .nfields = sizeof(fields_) / sizeof((fields_)[0])}

static const dmsg_gob_type request_2023 =
    STRUCT_TYPE("StreamRequest", dmsg_stream_request, request_2023_fields);
const dmsg_gob_type dmsg_gob_stream_request =
    STRUCT_TYPE("StreamRequest", dmsg_stream_request, request_fields);
static const dmsg_gob_type response_2023 =
    STRUCT_TYPE("StreamResponse", dmsg_stream_response, response_2023_fields);
const dmsg_gob_type dmsg_gob_stream_response =
    STRUCT_TYPE("StreamResponse", dmsg_stream_response, response_fields);

/* ---- encoding and making ---- */

static int encode_object(const dmsg_gob_type *type, const void *value, dmsg_gob_registry *reg,
                         uint8_t *out, size_t cap, size_t *out_len)
{
    dmsg_gob_registry fresh;
    if (!reg) {
        dmsg_gob_registry_init(&fresh);
        reg = &fresh;
    }
    dmsg_gob_encoder enc;
    dmsg_gob_encoder_init(&enc, reg);
    return dmsg_gob_encode(&enc, type, value, out, cap, out_len);
}

int dmsg_stream_request_encode(const dmsg_stream_request *req, dmsg_gob_registry *reg,
                               uint8_t *out, size_t cap, size_t *out_len)
{
    bool newer = req->ip_info || req->geo_info;
    return encode_object(newer ? &dmsg_gob_stream_request : &request_2023, req, reg, out, cap,
                         out_len);
}

int dmsg_stream_response_encode(const dmsg_stream_response *resp, dmsg_gob_registry *reg,
                                uint8_t *out, size_t cap, size_t *out_len)
{
    bool newer = resp->ip.len || resp->geo_country.len || resp->geo_region.len ||
                 resp->geo_lat != 0 || resp->geo_lon != 0;
    return encode_object(newer ? &dmsg_gob_stream_response : &response_2023, resp, reg, out, cap,
                         out_len);
}

/* signature(65) || gob, the signature over SHA256(gob) */
static int sign_in_place(const dmsg_sk *sk, uint8_t *out, size_t gob_len)
{
    dmsg_sig sig;
    int rc = dmsg_sign(&sig, sk, out + DMSG_SIG_LEN, gob_len);
    if (rc == 0)
        memcpy(out, sig.b, DMSG_SIG_LEN);
    return rc;
}

int dmsg_stream_request_make(dmsg_stream_request *req, int64_t now_ns, const dmsg_sk *sk,
                             uint8_t *out, size_t cap, size_t *out_len)
{
    if (cap < DMSG_SIGNED_OBJECT_MIN)
        return DMSG_ETOOBIG;
    req->timestamp = now_ns;
    size_t gob_len;
    int rc = dmsg_stream_request_encode(req, NULL, out + DMSG_SIG_LEN, cap - DMSG_SIG_LEN,
                                        &gob_len);
    if (rc == 0)
        rc = sign_in_place(sk, out, gob_len);
    if (rc)
        return rc;
    req->raw = out;
    req->raw_len = *out_len = DMSG_SIG_LEN + gob_len;
    return 0;
}

int dmsg_stream_response_make(dmsg_stream_response *resp, const dmsg_sk *sk, uint8_t *out,
                              size_t cap, size_t *out_len)
{
    if (cap < DMSG_SIGNED_OBJECT_MIN)
        return DMSG_ETOOBIG;
    size_t gob_len;
    int rc = dmsg_stream_response_encode(resp, NULL, out + DMSG_SIG_LEN, cap - DMSG_SIG_LEN,
                                         &gob_len);
    if (rc == 0)
        rc = sign_in_place(sk, out, gob_len);
    if (rc)
        return rc;
    resp->raw = out;
    resp->raw_len = *out_len = DMSG_SIG_LEN + gob_len;
    return 0;
}

/* ---- parsing ---- */

static int fail(uint16_t code, uint16_t *wire_code)
{
    if (wire_code)
        *wire_code = code;
    return code ? DMSG_EWIRE : 0;
}

/* One fresh decoder per object, as the reference's decodeGob. Bytes after the value are never
 * read, as in Go. */
static int decode_object(const dmsg_gob_type *type, void *out, const uint8_t *obj, size_t len,
                         uint16_t *wire_code)
{
    fail(0, wire_code);
    if (len < DMSG_SIGNED_OBJECT_MIN)
        return fail(DMSG_WIRE_SIGNED_OBJECT_INVALID, wire_code);
    dmsg_gob_decoder dec;
    dmsg_gob_decoder_init(&dec, DMSG_SIGNED_OBJECT_MAX, NULL, 0);
    size_t consumed;
    int rc = dmsg_gob_decode(&dec, obj + DMSG_SIG_LEN, len - DMSG_SIG_LEN, type, out, &consumed);
    return rc == DMSG_EAGAIN ? DMSG_ESHORT : rc;
}

int dmsg_stream_request_parse(dmsg_stream_request *req, const uint8_t *obj, size_t len,
                              uint16_t *wire_code)
{
    int rc = decode_object(&dmsg_gob_stream_request, req, obj, len, wire_code);
    if (rc == 0) {
        req->raw = obj;
        req->raw_len = len;
    }
    return rc;
}

int dmsg_stream_response_parse(dmsg_stream_response *resp, const uint8_t *obj, size_t len,
                               uint16_t *wire_code)
{
    int rc = decode_object(&dmsg_gob_stream_response, resp, obj, len, wire_code);
    if (rc == 0) {
        resp->raw = obj;
        resp->raw_len = len;
    }
    return rc;
}

/* ---- verification ---- */

void dmsg_signed_object_hash(uint8_t out[DMSG_SHA256_LEN], const uint8_t *obj, size_t len)
{
    dmsg_sha256(out, obj, len);
}

static bool signed_by(const dmsg_pk *pk, const uint8_t *obj, size_t len)
{
    dmsg_sig sig;
    memcpy(sig.b, obj, DMSG_SIG_LEN);
    return dmsg_verify(pk, &sig, obj + DMSG_SIG_LEN, len - DMSG_SIG_LEN) == 0;
}

static uint16_t request_check(const dmsg_stream_request *req, const dmsg_pk *expect_src,
                              const dmsg_pk *expect_dst)
{
    if (dmsg_pk_is_null(&req->src.pk))
        return DMSG_WIRE_REQ_INVALID_SRC_PK;
    if (req->src.port == 0)
        return DMSG_WIRE_REQ_INVALID_SRC_PORT;
    if (dmsg_pk_is_null(&req->dst.pk))
        return DMSG_WIRE_REQ_INVALID_DST_PK;
    if (req->dst.port == 0)
        return DMSG_WIRE_REQ_INVALID_DST_PORT;
    if (req->timestamp <= 0) /* the reference compares with lastTimestamp, always 0 */
        return DMSG_WIRE_REQ_INVALID_TIMESTAMP;
    if (!signed_by(&req->src.pk, req->raw, req->raw_len))
        return DMSG_WIRE_REQ_INVALID_SIG;
    if (expect_src && !dmsg_pk_equal(&req->src.pk, expect_src))
        return DMSG_WIRE_REQ_INVALID_SRC_PK;
    if (expect_dst && !dmsg_pk_equal(&req->dst.pk, expect_dst))
        return DMSG_WIRE_REQ_INVALID_DST_PK;
    return 0;
}

int dmsg_stream_request_verify(const dmsg_stream_request *req, const dmsg_pk *expect_src,
                               const dmsg_pk *expect_dst, uint16_t *wire_code)
{
    fail(0, wire_code);
    if (!req->raw || req->raw_len < DMSG_SIGNED_OBJECT_MIN)
        return DMSG_EINVAL;
    return fail(request_check(req, expect_src, expect_dst), wire_code);
}

static uint16_t response_check(const dmsg_stream_response *resp, const dmsg_stream_request *req)
{
    uint8_t hash[DMSG_SHA256_LEN];
    dmsg_signed_object_hash(hash, req->raw, req->raw_len);
    if (!dmsg_ct_equal(hash, resp->req_hash, sizeof hash))
        return DMSG_WIRE_RESP_INVALID_HASH;
    if (!signed_by(&req->dst.pk, resp->raw, resp->raw_len))
        return DMSG_WIRE_RESP_INVALID_SIG;
    if (!resp->accepted)
        return dmsg_wire_error_text(resp->err_code) ? resp->err_code
                                                    : DMSG_WIRE_RESP_NOT_ACCEPTED;
    return 0;
}

int dmsg_stream_response_verify(const dmsg_stream_response *resp,
                                const dmsg_stream_request *req, uint16_t *wire_code)
{
    fail(0, wire_code);
    if (!req->raw || !resp->raw || resp->raw_len < DMSG_SIGNED_OBJECT_MIN)
        return DMSG_EINVAL;
    return fail(response_check(resp, req), wire_code);
}
