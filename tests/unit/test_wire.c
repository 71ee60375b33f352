/* StreamRequest / StreamResponse SignedObjects: the vectors of stream.json and gob.json, making,
 * every verification rule, the newer fields, the error table. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/wire.h"
#include "vectors.h"

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

TestSuite(wire, .init = setup);

/* ---- helpers ---- */

static uint8_t *hexdup(json_t *s, size_t *n)
{
    cr_assert(json_is_string(s), "expected a hex string");
    const char *h = json_string_value(s);
    size_t cap = strlen(h) / 2 + 1;
    uint8_t *out = malloc(cap);
    long got = vec_hex_decode(h, out, cap);
    cr_assert(got >= 0, "bad hex");
    *n = (size_t)got;
    return out;
}

static void assert_bytes(const uint8_t *got, size_t got_len, const uint8_t *want, size_t want_len,
                         const char *what)
{
    if (got_len == want_len && (got_len == 0 || memcmp(got, want, got_len) == 0))
        return;
    char *g = vec_to_hex(got, got_len), *w = vec_to_hex(want, want_len);
    cr_assert_fail("%s differs:\n got  %s\n want %s", what, g, w);
}

static bool contains(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return true;
    return false;
}

typedef struct key {
    dmsg_pk pk;
    dmsg_sk sk;
} key;

static key key_of(const char *label)
{
    json_t *root = vec_load("keys.json");
    size_t i;
    json_t *kp;
    key k;
    bool found = false;
    json_array_foreach(json_object_get(root, "keypairs"), i, kp) {
        if (strcmp(json_string_value(json_object_get(kp, "label")), label) == 0) {
            vec_hex_exact(kp, "public_key", k.pk.b, DMSG_PK_LEN);
            vec_hex_exact(kp, "secret_key", k.sk.b, DMSG_SK_LEN);
            found = true;
        }
    }
    json_decref(root);
    cr_assert(found, "no key %s", label);
    return k;
}

/* stream.json "fields" objects */
static void request_from_fields(json_t *f, dmsg_stream_request *req, uint8_t *noise, size_t cap)
{
    memset(req, 0, sizeof *req);
    req->timestamp = json_is_integer(json_object_get(f, "Timestamp"))
                         ? (int64_t)json_integer_value(json_object_get(f, "Timestamp"))
                         : (int64_t)json_real_value(json_object_get(f, "Timestamp"));
    vec_hex_exact(f, "SrcAddr.PK", req->src.pk.b, DMSG_PK_LEN);
    req->src.port = (uint16_t)json_integer_value(vec_get(f, "SrcAddr.Port"));
    vec_hex_exact(f, "DstAddr.PK", req->dst.pk.b, DMSG_PK_LEN);
    req->dst.port = (uint16_t)json_integer_value(vec_get(f, "DstAddr.Port"));
    long n = vec_hex_decode(json_string_value(json_object_get(f, "NoiseMsg")), noise, cap);
    cr_assert(n >= 0);
    req->noise_msg = (dmsg_gob_bytes){noise, (size_t)n};
}

static void response_from_fields(json_t *f, dmsg_stream_response *resp, uint8_t *noise,
                                 size_t cap)
{
    memset(resp, 0, sizeof *resp);
    vec_hex_exact(f, "ReqHash", resp->req_hash, DMSG_SHA256_LEN);
    resp->accepted = json_is_true(json_object_get(f, "Accepted"));
    resp->err_code = (uint16_t)json_integer_value(json_object_get(f, "ErrCode"));
    json_t *noise_hex = json_object_get(f, "NoiseMsg");
    long n = json_is_string(noise_hex) ? vec_hex_decode(json_string_value(noise_hex), noise, cap)
                                       : 0;
    cr_assert(n >= 0);
    resp->noise_msg = (dmsg_gob_bytes){n ? noise : NULL, (size_t)n};
}

static void assert_same_request(const dmsg_stream_request *a, const dmsg_stream_request *b)
{
    cr_assert_eq(a->timestamp, b->timestamp);
    cr_assert(dmsg_pk_equal(&a->src.pk, &b->src.pk));
    cr_assert_eq(a->src.port, b->src.port);
    cr_assert(dmsg_pk_equal(&a->dst.pk, &b->dst.pk));
    cr_assert_eq(a->dst.port, b->dst.port);
    cr_assert_eq(a->ip_info, b->ip_info);
    cr_assert_eq(a->geo_info, b->geo_info);
    assert_bytes(a->noise_msg.ptr, a->noise_msg.len, b->noise_msg.ptr, b->noise_msg.len,
                 "NoiseMsg");
}

static void assert_same_response(const dmsg_stream_response *a, const dmsg_stream_response *b)
{
    assert_bytes(a->req_hash, 32, b->req_hash, 32, "ReqHash");
    cr_assert_eq(a->accepted, b->accepted);
    cr_assert_eq(a->err_code, b->err_code);
    assert_bytes(a->noise_msg.ptr, a->noise_msg.len, b->noise_msg.ptr, b->noise_msg.len,
                 "NoiseMsg");
    assert_bytes(a->ip.ptr, a->ip.len, b->ip.ptr, b->ip.len, "IP");
    assert_bytes(a->geo_country.ptr, a->geo_country.len, b->geo_country.ptr, b->geo_country.len,
                 "GeoCountry");
    assert_bytes(a->geo_region.ptr, a->geo_region.len, b->geo_region.ptr, b->geo_region.len,
                 "GeoRegion");
    cr_assert_eq(a->geo_lat, b->geo_lat);
    cr_assert_eq(a->geo_lon, b->geo_lon);
}

/* The vector request of stream.json, parsed; *obj must be freed. */
static void vector_request(json_t *root, dmsg_stream_request *req, uint8_t **obj)
{
    size_t n;
    uint16_t code = 1;
    *obj = hexdup(vec_get(root, "stream_request.signed_object"), &n);
    cr_assert_eq(dmsg_stream_request_parse(req, *obj, n, &code), 0);
    cr_assert_eq(code, 0);
}

/* ---- the vectors ---- */

Test(wire, vector_request_and_response_parse_and_verify)
{
    json_t *root = vec_load("stream.json");
    key a = key_of("client_a"), b = key_of("client_b");
    dmsg_stream_request req, want_req;
    uint8_t *req_obj, noise[256];
    vector_request(root, &req, &req_obj);
    request_from_fields(vec_get(root, "stream_request.fields"), &want_req, noise, sizeof noise);
    assert_same_request(&req, &want_req);
    cr_assert_eq(req.raw, req_obj);
    cr_assert_eq(req.raw_len, (size_t)json_integer_value(vec_get(root, "stream_request.signed_object_len")));

    uint16_t code = 1;
    cr_assert_eq(dmsg_stream_request_verify(&req, NULL, NULL, &code), 0);
    cr_assert_eq(code, 0);
    cr_assert_eq(dmsg_stream_request_verify(&req, &a.pk, &b.pk, &code), 0);

    uint8_t hash[32], want_hash[32];
    dmsg_signed_object_hash(hash, req.raw, req.raw_len);
    vec_hex_exact(root, "stream_request.sha256_signed_object", want_hash, 32);
    assert_bytes(hash, 32, want_hash, 32, "ReqHash");

    size_t n;
    uint8_t *resp_obj = hexdup(vec_get(root, "stream_response.signed_object"), &n);
    dmsg_stream_response resp, want_resp;
    cr_assert_eq(dmsg_stream_response_parse(&resp, resp_obj, n, &code), 0);
    response_from_fields(vec_get(root, "stream_response.fields"), &want_resp, noise, sizeof noise);
    assert_same_response(&resp, &want_resp);
    assert_bytes(resp.req_hash, 32, want_hash, 32, "response ReqHash");
    cr_assert_eq(resp.raw, resp_obj);
    cr_assert_eq(dmsg_stream_response_verify(&resp, &req, &code), 0);
    cr_assert_eq(code, 0);
    free(req_obj);
    free(resp_obj);
    json_decref(root);
}

Test(wire, gob_json_signed_objects_verify)
{
    json_t *root = vec_load("gob.json");
    size_t qn, rn;
    uint8_t *qobj = hexdup(vec_get(root, "cases.0.signed_object_hex"), &qn);
    uint8_t *robj = hexdup(vec_get(root, "cases.5.signed_object_hex"), &rn);
    cr_assert_str_eq(json_string_value(vec_get(root, "cases.5.name")), "resp_accepted");
    dmsg_stream_request req;
    dmsg_stream_response resp;
    uint16_t code;
    cr_assert_eq(dmsg_stream_request_parse(&req, qobj, qn, &code), 0);
    cr_assert_eq(dmsg_stream_response_parse(&resp, robj, rn, &code), 0);
    uint8_t hash[32], want[32];
    dmsg_signed_object_hash(hash, qobj, qn);
    vec_hex_exact(root, "cases.0.signed_object_sha256", want, 32);
    assert_bytes(hash, 32, want, 32, "signed_object_sha256");
    cr_assert_eq(dmsg_stream_request_verify(&req, NULL, NULL, &code), 0);
    cr_assert_eq(dmsg_stream_response_verify(&resp, &req, &code), 0);
    /* the signed gob is the case's gob_hex */
    size_t gn;
    uint8_t *gob = hexdup(vec_get(root, "cases.0.gob_hex"), &gn);
    assert_bytes(qobj + DMSG_SIG_LEN, qn - DMSG_SIG_LEN, gob, gn, "gob part");
    free(gob);
    free(qobj);
    free(robj);
    json_decref(root);
}

Test(wire, remade_objects_reproduce_the_vector_gob)
{
    json_t *root = vec_load("stream.json");
    key a = key_of("client_a"), b = key_of("client_b");
    dmsg_stream_request req;
    dmsg_stream_response resp;
    uint8_t noise[256], rnoise[256], out[1024], obj[1024], robj[1024];
    size_t len, want_len;
    request_from_fields(vec_get(root, "stream_request.fields"), &req, noise, sizeof noise);
    response_from_fields(vec_get(root, "stream_response.fields"), &resp, rnoise, sizeof rnoise);

    uint8_t *want = hexdup(vec_get(root, "stream_request.gob"), &want_len);
    cr_assert_eq(dmsg_stream_request_encode(&req, NULL, out, sizeof out, &len), 0);
    assert_bytes(out, len, want, want_len, "stream_request.gob");
    free(want);

    /* B's process had encoded a request before its response */
    dmsg_gob_registry reg;
    dmsg_gob_registry_init(&reg);
    cr_assert_eq(dmsg_stream_request_encode(&req, &reg, out, sizeof out, &len), 0);
    cr_assert_eq(dmsg_stream_response_encode(&resp, &reg, out, sizeof out, &len), 0);
    want = hexdup(vec_get(root, "stream_response.gob"), &want_len);
    assert_bytes(out, len, want, want_len, "stream_response.gob");
    free(want);

    /* made and signed by us: different signatures, same gob for the request, and it verifies */
    size_t obj_len, robj_len;
    int64_t ts = req.timestamp;
    cr_assert_eq(dmsg_stream_request_make(&req, ts, &a.sk, obj, sizeof obj, &obj_len), 0);
    cr_assert_eq(req.raw, obj);
    cr_assert_eq(req.raw_len, obj_len);
    want = hexdup(vec_get(root, "stream_request.gob"), &want_len);
    assert_bytes(obj + DMSG_SIG_LEN, obj_len - DMSG_SIG_LEN, want, want_len, "made request");
    free(want);
    dmsg_stream_request parsed;
    uint16_t code;
    cr_assert_eq(dmsg_stream_request_parse(&parsed, obj, obj_len, &code), 0);
    cr_assert_eq(dmsg_stream_request_verify(&parsed, &a.pk, &b.pk, &code), 0, "code %u", code);

    dmsg_signed_object_hash(resp.req_hash, obj, obj_len);
    cr_assert_eq(dmsg_stream_response_make(&resp, &b.sk, robj, sizeof robj, &robj_len), 0);
    dmsg_stream_response rparsed;
    cr_assert_eq(dmsg_stream_response_parse(&rparsed, robj, robj_len, &code), 0);
    cr_assert_eq(dmsg_stream_response_verify(&rparsed, &parsed, &code), 0, "code %u", code);
    json_decref(root);
}

Test(wire, type_id_variation_verifies)
{
    json_t *root = vec_load("stream.json");
    key a = key_of("client_a");
    const char *variants[] = {"gob_type_id_variation.first_gob_type_in_process",
                              "gob_type_id_variation.after_an_unrelated_gob_type"};
    dmsg_stream_request first;
    uint8_t objs[2][1024];
    for (int i = 0; i < 2; i++) {
        size_t n;
        uint8_t *gob = hexdup(vec_get(root, variants[i]), &n);
        dmsg_sig sig;
        cr_assert_eq(dmsg_sign(&sig, &a.sk, gob, n), 0);
        memcpy(objs[i], sig.b, DMSG_SIG_LEN);
        memcpy(objs[i] + DMSG_SIG_LEN, gob, n);
        dmsg_stream_request req;
        uint16_t code;
        cr_assert_eq(dmsg_stream_request_parse(&req, objs[i], DMSG_SIG_LEN + n, &code), 0);
        cr_assert_eq(dmsg_stream_request_verify(&req, &a.pk, NULL, &code), 0);
        if (i == 0)
            first = req;
        else
            assert_same_request(&req, &first);
        free(gob);
    }
    json_decref(root);
}

Test(wire, acceptance_table_through_the_signed_object)
{
    /* the parse of a SignedObject gives the gob decoder's verdict on its gob part */
    json_t *root = vec_load("gob.json");
    size_t i;
    json_t *v;
    json_array_foreach(vec_get(root, "go_decoder_acceptance"), i, v) {
        size_t n;
        uint8_t *gob = hexdup(json_object_get(v, "hex"), &n);
        uint8_t *obj = calloc(1, DMSG_SIG_LEN + n);
        memcpy(obj + DMSG_SIG_LEN, gob, n);
        bool as_req =
            strcmp(json_string_value(json_object_get(v, "decode_as")), "StreamRequest") == 0;
        dmsg_stream_request req;
        dmsg_stream_response resp;
        uint16_t code = 1;
        int rc = as_req ? dmsg_stream_request_parse(&req, obj, DMSG_SIG_LEN + n, &code)
                        : dmsg_stream_response_parse(&resp, obj, DMSG_SIG_LEN + n, &code);
        const char *name = json_string_value(json_object_get(v, "name"));
        if (json_is_true(json_object_get(v, "go_accepts")))
            cr_assert_eq(rc, 0, "%s: %d", name, rc);
        else
            cr_assert(rc < 0 && rc != DMSG_EWIRE && rc != DMSG_EAGAIN, "%s: %d", name, rc);
        cr_assert_eq(code, 0);
        free(obj);
        free(gob);
    }
    json_decref(root);
}

Test(wire, signed_object_length_and_truncation)
{
    json_t *root = vec_load("stream.json");
    size_t n;
    uint8_t *obj = hexdup(vec_get(root, "stream_request.signed_object"), &n);
    dmsg_stream_request req;
    for (size_t cut = 0; cut < n; cut++) {
        uint16_t code = 1;
        int rc = dmsg_stream_request_parse(&req, obj, cut, &code);
        if (cut <= DMSG_SIG_LEN) {
            cr_assert_eq(rc, DMSG_EWIRE, "cut %zu", cut);
            cr_assert_eq(code, DMSG_WIRE_SIGNED_OBJECT_INVALID);
        } else {
            cr_assert_eq(rc, DMSG_ESHORT, "cut %zu", cut);
            cr_assert_eq(code, 0);
        }
    }
    dmsg_stream_response resp;
    uint16_t code;
    cr_assert_eq(dmsg_stream_response_parse(&resp, obj, DMSG_SIG_LEN, &code), DMSG_EWIRE);
    cr_assert_eq(code, DMSG_WIRE_SIGNED_OBJECT_INVALID);
    /* garbage after the signature is a gob error, for which the reference has no code */
    uint8_t junk[DMSG_SIG_LEN + 3] = {0};
    junk[DMSG_SIG_LEN] = 2;
    junk[DMSG_SIG_LEN + 1] = 0x80;
    cr_assert_eq(dmsg_stream_response_parse(&resp, junk, sizeof junk, &code), DMSG_EGOB);
    cr_assert_eq(code, 0);
    free(obj);
    json_decref(root);
}

/* ---- verification rules ---- */

typedef struct made {
    uint8_t obj[1024];
    size_t len;
    dmsg_stream_request req;
} made;

static const uint8_t kk_msg1[49] = {1, 2, 3};

static void base_request(dmsg_stream_request *req, const key *src, const key *dst)
{
    memset(req, 0, sizeof *req);
    req->src = (dmsg_addr){src->pk, 49153};
    req->dst = (dmsg_addr){dst->pk, 80};
    req->noise_msg = (dmsg_gob_bytes){kk_msg1, sizeof kk_msg1};
}

/* Signs req (as given, any field may be invalid) with signer, parses it back. */
static void make_request(made *m, dmsg_stream_request req, int64_t ts, const key *signer)
{
    cr_assert_eq(dmsg_stream_request_make(&req, ts, &signer->sk, m->obj, sizeof m->obj, &m->len),
                 0);
    uint16_t code;
    cr_assert_eq(dmsg_stream_request_parse(&m->req, m->obj, m->len, &code), 0);
}

static uint16_t request_code(const made *m, const dmsg_pk *expect_src, const dmsg_pk *expect_dst)
{
    uint16_t code = 0;
    int rc = dmsg_stream_request_verify(&m->req, expect_src, expect_dst, &code);
    cr_assert_eq(rc, code ? DMSG_EWIRE : 0);
    return code;
}

Test(wire, request_verification_rules_in_order)
{
    key a = key_of("client_a"), b = key_of("client_b");
    const int64_t now = 1700000000000000000;
    dmsg_stream_request base, r;
    made m;
    base_request(&base, &a, &b);

    make_request(&m, base, now, &a);
    cr_assert_eq(request_code(&m, &a.pk, &b.pk), 0);
    cr_assert_eq(request_code(&m, NULL, NULL), 0);
    cr_assert_eq(request_code(&m, &b.pk, NULL), DMSG_WIRE_REQ_INVALID_SRC_PK);
    cr_assert_eq(request_code(&m, NULL, &a.pk), DMSG_WIRE_REQ_INVALID_DST_PK);

    /* forged: signed by another key, or bytes changed after signing */
    make_request(&m, base, now, &b);
    cr_assert_eq(request_code(&m, NULL, NULL), DMSG_WIRE_REQ_INVALID_SIG);
    make_request(&m, base, now, &a);
    m.obj[10] ^= 1;
    cr_assert_eq(request_code(&m, NULL, NULL), DMSG_WIRE_REQ_INVALID_SIG);
    make_request(&m, base, now, &a);
    m.obj[m.len - 2] ^= 1; /* inside NoiseMsg: still a valid gob */
    uint16_t code;
    cr_assert_eq(dmsg_stream_request_parse(&m.req, m.obj, m.len, &code), 0);
    cr_assert_eq(request_code(&m, NULL, NULL), DMSG_WIRE_REQ_INVALID_SIG);

    /* each field check, and that earlier checks win */
    r = base;
    memset(&r.src.pk, 0, sizeof r.src.pk);
    r.src.port = 0;
    make_request(&m, r, 0, &a);
    cr_assert_eq(request_code(&m, NULL, NULL), DMSG_WIRE_REQ_INVALID_SRC_PK);
    r = base;
    r.src.port = 0;
    memset(&r.dst.pk, 0, sizeof r.dst.pk);
    make_request(&m, r, 0, &a);
    cr_assert_eq(request_code(&m, NULL, NULL), DMSG_WIRE_REQ_INVALID_SRC_PORT);
    r = base;
    memset(&r.dst.pk, 0, sizeof r.dst.pk);
    r.dst.port = 0;
    make_request(&m, r, 0, &a);
    cr_assert_eq(request_code(&m, NULL, NULL), DMSG_WIRE_REQ_INVALID_DST_PK);
    r = base;
    r.dst.port = 0;
    make_request(&m, r, 0, &b);
    cr_assert_eq(request_code(&m, NULL, NULL), DMSG_WIRE_REQ_INVALID_DST_PORT);
    make_request(&m, base, 0, &b);
    cr_assert_eq(request_code(&m, NULL, NULL), DMSG_WIRE_REQ_INVALID_TIMESTAMP);
    make_request(&m, base, -5, &a);
    cr_assert_eq(request_code(&m, NULL, NULL), DMSG_WIRE_REQ_INVALID_TIMESTAMP);
    make_request(&m, base, 1, &a);
    cr_assert_eq(request_code(&m, NULL, NULL), 0);

    /* a request that was never parsed or made has no bytes to check */
    dmsg_stream_request bare = base;
    bare.timestamp = now;
    cr_assert_eq(dmsg_stream_request_verify(&bare, NULL, NULL, &code), DMSG_EINVAL);
}

typedef struct made_response {
    uint8_t obj[1024];
    size_t len;
    dmsg_stream_response resp;
} made_response;

static uint16_t response_code(made_response *m, dmsg_stream_response resp, const key *signer,
                              const dmsg_stream_request *req)
{
    cr_assert_eq(dmsg_stream_response_make(&resp, &signer->sk, m->obj, sizeof m->obj, &m->len), 0);
    uint16_t code = 0;
    cr_assert_eq(dmsg_stream_response_parse(&m->resp, m->obj, m->len, &code), 0);
    int rc = dmsg_stream_response_verify(&m->resp, req, &code);
    cr_assert_eq(rc, code ? DMSG_EWIRE : 0);
    return code;
}

Test(wire, response_verification_rules)
{
    key a = key_of("client_a"), b = key_of("client_b");
    dmsg_stream_request base;
    made req;
    base_request(&base, &a, &b);
    make_request(&req, base, 1700000000000000000, &a);

    dmsg_stream_response resp = {.accepted = true};
    dmsg_signed_object_hash(resp.req_hash, req.obj, req.len);
    made_response m;
    cr_assert_eq(response_code(&m, resp, &b, &req.req), 0);
    cr_assert_eq(response_code(&m, resp, &a, &req.req), DMSG_WIRE_RESP_INVALID_SIG);

    dmsg_stream_response wrong_hash = resp;
    wrong_hash.req_hash[0] ^= 1;
    cr_assert_eq(response_code(&m, wrong_hash, &b, &req.req), DMSG_WIRE_RESP_INVALID_HASH);
    /* the hash check comes first */
    cr_assert_eq(response_code(&m, wrong_hash, &a, &req.req), DMSG_WIRE_RESP_INVALID_HASH);

    dmsg_stream_response refused = resp;
    refused.accepted = false;
    refused.err_code = DMSG_WIRE_REQ_NO_LISTENER;
    cr_assert_eq(response_code(&m, refused, &b, &req.req), DMSG_WIRE_REQ_NO_LISTENER);
    refused.err_code = 0;
    cr_assert_eq(response_code(&m, refused, &b, &req.req), DMSG_WIRE_RESP_NOT_ACCEPTED);
    refused.err_code = 999;
    cr_assert_eq(response_code(&m, refused, &b, &req.req), DMSG_WIRE_RESP_NOT_ACCEPTED);

    /* forged bytes after signing */
    cr_assert_eq(response_code(&m, resp, &b, &req.req), 0);
    m.obj[3] ^= 0x40;
    uint16_t code;
    cr_assert_eq(dmsg_stream_response_verify(&m.resp, &req.req, &code), DMSG_EWIRE);
    cr_assert_eq(code, DMSG_WIRE_RESP_INVALID_SIG);
}

Test(wire, rejected_response_example_reports_the_listener_error)
{
    json_t *root = vec_load("stream.json");
    dmsg_stream_request req;
    uint8_t *req_obj;
    vector_request(root, &req, &req_obj);
    size_t n;
    uint8_t *obj = hexdup(vec_get(root, "rejected_response_example.signed_object"), &n);
    dmsg_stream_response resp;
    uint16_t code;
    cr_assert_eq(dmsg_stream_response_parse(&resp, obj, n, &code), 0);
    cr_assert_not(resp.accepted);
    cr_assert_eq(dmsg_stream_response_verify(&resp, &req, &code), DMSG_EWIRE);
    cr_assert_eq(code, DMSG_WIRE_REQ_NO_LISTENER);
    char text[128];
    int len = dmsg_wire_error_format(text, sizeof text, code, NULL);
    cr_assert_str_eq(text,
                     json_string_value(vec_get(root,
                                               "rejected_response_example.go_verify_error_at_dialer")));
    cr_assert_eq((size_t)len, strlen(text));
    cr_assert(dmsg_wire_error_is_temporary(code));
    free(obj);
    free(req_obj);
    json_decref(root);
}

/* ---- newer fields ---- */

Test(wire, newer_request_fields_round_trip)
{
    key a = key_of("client_a"), s = key_of("server");
    dmsg_stream_request req;
    base_request(&req, &a, &s);
    req.dst.port = 1;
    req.ip_info = true;
    req.geo_info = true;
    made m;
    make_request(&m, req, 1700000000000000000, &a);
    req.timestamp = 1700000000000000000;
    assert_same_request(&m.req, &req);
    cr_assert_eq(request_code(&m, &a.pk, &s.pk), 0);
    cr_assert(contains(m.obj, m.len, "IPinfo", 6) && contains(m.obj, m.len, "GeoInfo", 7));

    /* without them the 2023 encoding is used: no definition of the newer fields */
    req.ip_info = req.geo_info = false;
    make_request(&m, req, 1700000000000000000, &a);
    cr_assert_not(contains(m.obj, m.len, "IPinfo", 6));
}

Test(wire, ipinfo_response_round_trip)
{
    key a = key_of("client_a"), s = key_of("server");
    dmsg_stream_request base;
    made req;
    base_request(&base, &a, &s);
    base.dst.port = 1;
    base.ip_info = base.geo_info = true;
    make_request(&req, base, 1700000000000000000, &a);

    const uint8_t ip[4] = {203, 0, 113, 7};
    char text[DMSG_IP_TEXT_MAX];
    int tlen = dmsg_ip_to_text(text, ip, sizeof ip);
    cr_assert_str_eq(text, "203.0.113.7");
    dmsg_stream_response resp = {.accepted = true, .geo_lat = 52.52, .geo_lon = -13.4};
    dmsg_signed_object_hash(resp.req_hash, req.obj, req.len);
    resp.ip = (dmsg_gob_bytes){(const uint8_t *)text, (size_t)tlen};
    resp.geo_country = (dmsg_gob_bytes){(const uint8_t *)"DE", 2};
    resp.geo_region = (dmsg_gob_bytes){(const uint8_t *)"Berlin", 6};
    made_response m;
    cr_assert_eq(response_code(&m, resp, &s, &req.req), 0);
    resp.raw = m.resp.raw;
    resp.raw_len = m.resp.raw_len;
    assert_same_response(&m.resp, &resp);
    uint8_t back[16];
    size_t back_len;
    cr_assert_eq(dmsg_ip_from_text(back, &back_len, m.resp.ip.ptr, m.resp.ip.len), 0);
    assert_bytes(back, back_len, ip, sizeof ip, "IP");

    /* the IP travels as Go's TextMarshaler type named IP */
    const uint8_t text_marshaler_ip[] = {0x07, 0x01, 0x01, 0x02, 'I', 'P'};
    cr_assert(contains(m.obj, m.len, text_marshaler_ip, sizeof text_marshaler_ip));
}

Test(wire, ip_text_matches_go)
{
    static const struct {
        uint8_t ip[16];
        size_t len;
        const char *text;
    } cases[] = {
        {{10, 1, 2, 3}, 4, "10.1.2.3"},
        {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1}, 16, "192.0.2.1"},
        {{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 16, "2001:db8::1"},
        {{0}, 16, "::"},
        {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 16, "::1"},
        {{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 16, "1::"},
        /* a single zero group is not shortened */
        {{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1}, 16, "2001:db8:0:1:1:1:1:1"},
        /* the first of two equally long runs */
        {{0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4}, 16, "1::2:0:0:3:4"},
        /* the longer run wins */
        {{0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 4}, 16, "1:0:0:2::4"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[DMSG_IP_TEXT_MAX];
        int n = dmsg_ip_to_text(text, cases[i].ip, cases[i].len);
        cr_assert_str_eq(text, cases[i].text);
        cr_assert_eq((size_t)n, strlen(text));
        uint8_t back[16];
        size_t back_len;
        cr_assert_eq(dmsg_ip_from_text(back, &back_len, (const uint8_t *)text, strlen(text)), 0);
        if (cases[i].len == 16 && back_len == 4)
            assert_bytes(back, 4, cases[i].ip + 12, 4, text);
        else
            assert_bytes(back, back_len, cases[i].ip, cases[i].len, text);
    }
    char text[DMSG_IP_TEXT_MAX];
    const uint8_t five[5] = {0};
    cr_assert_eq(dmsg_ip_to_text(text, five, 5), DMSG_EINVAL);
    uint8_t back[16];
    size_t back_len;
    cr_assert_eq(dmsg_ip_from_text(back, &back_len, (const uint8_t *)"1.2.3", 5), DMSG_EINVAL);
    cr_assert_eq(dmsg_ip_from_text(back, &back_len, (const uint8_t *)"1.2.3.4\0", 8), DMSG_EINVAL);
    cr_assert_eq(dmsg_ip_from_text(back, &back_len, (const uint8_t *)"", 0), DMSG_EINVAL);
}

/* ---- error table (dmsg-wire.md §5.5) ---- */

Test(wire, error_table)
{
    static const struct {
        uint16_t code;
        const char *text;
        bool temporary;
    } table[] = {
        {100, "entry is not found in discovery", false},
        {101, "entry is not of server in discovery", false},
        {102, "entry is not of client in discovery", false},
        {103, "client entry in discovery has no delegated servers", false},
        {200, "local entity closed", false},
        {201, "local session closed", false},
        {202, "cannot connect to delegated server", false},
        {203, "extra bytes received during session handshake", false},
        {300, "request has invalid signature", false},
        {301, "request timestamp should be higher than last", false},
        {302, "request has invalid source public key", false},
        {303, "request has invalid destination public key", false},
        {304, "request has invalid source port", false},
        {305, "request has invalid destination port", false},
        {306, "request has no associated listener", true},
        {307, "request cannot be forwarded because the next session is non-existent", false},
        {350, "response has invalid signature", false},
        {351, "response has invalid hash of associated request", false},
        {352, "response rejected associated request without reason", false},
        {370, "signed object is invalid", false},
        {400, "port already occupied", false},
        {401, "listener accept chan maxed", true},
    };
    size_t registered = 0;
    for (uint32_t code = 0; code <= UINT16_MAX; code++)
        registered += dmsg_wire_error_text((uint16_t)code) != NULL;
    cr_assert_eq(registered, sizeof table / sizeof table[0]);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        cr_assert_str_eq(dmsg_wire_error_text(table[i].code), table[i].text);
        cr_assert_eq(dmsg_wire_error_is_temporary(table[i].code), table[i].temporary);
        char want[160], got[160];
        snprintf(want, sizeof want, "dmsg error %u - %s", table[i].code, table[i].text);
        cr_assert_eq(dmsg_wire_error_format(got, sizeof got, table[i].code, NULL),
                     (int)strlen(want));
        cr_assert_str_eq(got, want);
    }
    char out[128];
    cr_assert_gt(dmsg_wire_error_format(out, sizeof out, 300, "Recovered pubkey does not match pubkey"), 0);
    cr_assert_str_eq(out, "dmsg error 300 - request has invalid signature: Recovered pubkey does not match pubkey");
    cr_assert_eq(dmsg_wire_error_format(out, sizeof out, 999, NULL), DMSG_ENOTFOUND);
    cr_assert_eq(dmsg_wire_error_format(out, 10, 306, NULL), DMSG_ETOOBIG);
    cr_assert_not(dmsg_wire_error_is_temporary(999));
}
