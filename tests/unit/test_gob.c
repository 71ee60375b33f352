/* gob codec: the Go vectors of gob.json, stream.json and setup_rpc.json, plus hostile input. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/gob.h"
#include "gob_schemas.h"
#include "vectors.h"

#define MAX_HANDSHAKE_MESSAGE 65536

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

TestSuite(gob, .init = setup);

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

static void hex_into(json_t *s, uint8_t *out, size_t n)
{
    size_t got;
    uint8_t *b = hexdup(s, &got);
    cr_assert_eq(got, n, "hex length %zu, want %zu", got, n);
    memcpy(out, b, n);
    free(b);
}

static void assert_bytes(const uint8_t *got, size_t got_len, const uint8_t *want, size_t want_len,
                         const char *what)
{
    if (got_len == want_len && (got_len == 0 || memcmp(got, want, got_len) == 0))
        return;
    char *g = vec_to_hex(got, got_len), *w = vec_to_hex(want, want_len);
    cr_assert_fail("%s differs:\n got  %s\n want %s", what, g, w);
}

static void assert_view_hex(dmsg_gob_bytes v, json_t *hex, const char *what)
{
    size_t n;
    uint8_t *want = hexdup(hex, &n);
    assert_bytes(v.ptr, v.len, want, n, what);
    free(want);
}

static void assert_view_str(dmsg_gob_bytes v, const char *want, const char *what)
{
    assert_bytes(v.ptr, v.len, (const uint8_t *)want, strlen(want), what);
}

static int64_t json_i64(json_t *v)
{
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    cr_assert(json_is_string(v), "expected a number");
    return strtoll(json_string_value(v), NULL, 10);
}

static dmsg_gob_bytes view_of(json_t *hex, uint8_t *store, size_t cap)
{
    if (json_is_null(hex))
        return (dmsg_gob_bytes){NULL, 0};
    long n = vec_hex_decode(json_string_value(hex), store, cap);
    cr_assert(n >= 0);
    return (dmsg_gob_bytes){n ? store : NULL, (size_t)n};
}

/* gob.json value objects: timestamp, src_addr{pk,port}, dst_addr, noise_msg_hex */
static void req_from_json(json_t *v, t_req *req, uint8_t *noise, size_t cap)
{
    memset(req, 0, sizeof *req);
    req->timestamp = json_i64(json_object_get(v, "timestamp"));
    json_t *src = json_object_get(v, "src_addr"), *dst = json_object_get(v, "dst_addr");
    hex_into(json_object_get(src, "pk"), req->src.pk.b, DMSG_PK_LEN);
    req->src.port = (uint16_t)json_integer_value(json_object_get(src, "port"));
    hex_into(json_object_get(dst, "pk"), req->dst.pk.b, DMSG_PK_LEN);
    req->dst.port = (uint16_t)json_integer_value(json_object_get(dst, "port"));
    req->noise = view_of(json_object_get(v, "noise_msg_hex"), noise, cap);
}

static void assert_req(const t_req *got, json_t *v)
{
    t_req want;
    uint8_t noise[4096];
    req_from_json(v, &want, noise, sizeof noise);
    cr_assert_eq(got->timestamp, want.timestamp, "timestamp %" PRId64, got->timestamp);
    assert_bytes(got->src.pk.b, 33, want.src.pk.b, 33, "SrcAddr.PK");
    cr_assert_eq(got->src.port, want.src.port);
    assert_bytes(got->dst.pk.b, 33, want.dst.pk.b, 33, "DstAddr.PK");
    cr_assert_eq(got->dst.port, want.dst.port);
    assert_bytes(got->noise.ptr, got->noise.len, want.noise.ptr, want.noise.len, "NoiseMsg");
}

static void resp_from_json(json_t *v, t_resp *resp, uint8_t *noise, size_t cap)
{
    memset(resp, 0, sizeof *resp);
    hex_into(json_object_get(v, "req_hash_hex"), resp->hash, 32);
    resp->accepted = json_is_true(json_object_get(v, "accepted"));
    resp->err_code = (uint16_t)json_integer_value(json_object_get(v, "err_code"));
    resp->noise = view_of(json_object_get(v, "noise_msg_hex"), noise, cap);
}

static void assert_resp(const t_resp *got, json_t *v)
{
    t_resp want;
    uint8_t noise[4096];
    resp_from_json(v, &want, noise, sizeof noise);
    assert_bytes(got->hash, 32, want.hash, 32, "ReqHash");
    cr_assert_eq(got->accepted, want.accepted);
    cr_assert_eq(got->err_code, want.err_code);
    assert_bytes(got->noise.ptr, got->noise.len, want.noise.ptr, want.noise.len, "NoiseMsg");
}

static int decode_once(const uint8_t *in, size_t len, const dmsg_gob_type *type, void *out,
                       size_t *consumed)
{
    dmsg_gob_decoder dec;
    dmsg_gob_decoder_init(&dec, MAX_HANDSHAKE_MESSAGE, NULL, 0);
    size_t ignored;
    return dmsg_gob_decode(&dec, in, len, type, out, consumed ? consumed : &ignored);
}

/* A fresh Go process: fresh registry, fresh encoder. */
static void encode_fresh(const dmsg_gob_type *type, const void *value, uint8_t *out, size_t cap,
                         size_t *len)
{
    dmsg_gob_registry reg;
    dmsg_gob_encoder enc;
    dmsg_gob_registry_init(&reg);
    dmsg_gob_encoder_init(&enc, &reg);
    cr_assert_eq(dmsg_gob_encode(&enc, type, value, out, cap, len), 0);
}

/* ---- gob.json: primitives ---- */

Test(gob, primitives_encode_and_decode)
{
    json_t *root = vec_load("gob.json");
    size_t i;
    json_t *p;
    json_array_foreach(vec_get(root, "primitives"), i, p) {
        const char *kind = json_string_value(json_object_get(p, "kind"));
        const char *text = json_string_value(json_object_get(p, "value"));
        size_t want_len, value_len;
        uint8_t *want = hexdup(json_object_get(p, "full_gob_hex"), &want_len);
        uint8_t *value_hex = hexdup(json_object_get(p, "value_hex"), &value_len);
        cr_assert(want_len >= value_len &&
                  memcmp(want + want_len - value_len, value_hex, value_len) == 0);
        union {
            uint64_t u;
            int64_t i;
            bool b;
            dmsg_gob_bytes s;
        } v = {0}, got;
        uint8_t bytes[256];
        const dmsg_gob_type *t;
        if (strcmp(kind, "uint") == 0) {
            t = &dmsg_gob_type_uint64;
            v.u = strtoull(text, NULL, 10);
        } else if (strcmp(kind, "int") == 0) {
            t = &dmsg_gob_type_int64;
            v.i = strtoll(text, NULL, 10);
        } else if (strcmp(kind, "bool") == 0) {
            t = &dmsg_gob_type_bool;
            v.b = strcmp(text, "true") == 0;
        } else if (strcmp(kind, "string") == 0) {
            t = &dmsg_gob_type_string;
            v.s = (dmsg_gob_bytes){(const uint8_t *)text, strlen(text)};
        } else {
            cr_assert_str_eq(kind, "[]byte");
            t = &dmsg_gob_type_bytes;
            v.s = view_of(json_object_get(p, "value"), bytes, sizeof bytes);
        }
        uint8_t out[64];
        size_t len, consumed;
        encode_fresh(t, &v, out, sizeof out, &len);
        assert_bytes(out, len, want, want_len, kind);
        cr_assert_eq(decode_once(want, want_len, t, &got, &consumed), 0);
        cr_assert_eq(consumed, want_len);
        if (t == &dmsg_gob_type_uint64)
            cr_assert_eq(got.u, v.u);
        else if (t == &dmsg_gob_type_int64)
            cr_assert_eq(got.i, v.i);
        else if (t == &dmsg_gob_type_bool)
            cr_assert_eq(got.b, v.b);
        else
            assert_bytes(got.s.ptr, got.s.len, v.s.ptr, v.s.len, kind);
        free(want);
        free(value_hex);
    }
    json_decref(root);
}

Test(gob, float_encoding_is_byte_reversed)
{
    /* the gob documentation's example: 17.0 travels as fe 31 40 */
    double f = 17.0, back = 0;
    uint8_t out[16];
    size_t len;
    encode_fresh(&dmsg_gob_type_float64, &f, out, sizeof out, &len);
    const uint8_t want[] = {0x05, 0x08, 0x00, 0xfe, 0x31, 0x40};
    assert_bytes(out, len, want, sizeof want, "17.0");
    cr_assert_eq(decode_once(out, len, &dmsg_gob_type_float64, &back, NULL), 0);
    cr_assert_eq(back, 17.0);
}

/* ---- gob.json: StreamRequest / StreamResponse as Go writes them ---- */

Test(gob, handshake_cases_decode_and_reencode)
{
    json_t *root = vec_load("gob.json");
    size_t i;
    json_t *c;
    json_array_foreach(vec_get(root, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        bool is_req = strcmp(json_string_value(json_object_get(c, "type")), "StreamRequest") == 0;
        const dmsg_gob_type *t = is_req ? &req_type : &resp_type;
        size_t n, consumed;
        uint8_t *gob = hexdup(json_object_get(c, "gob_hex"), &n);
        cr_assert_eq(n, (size_t)json_integer_value(json_object_get(c, "gob_length")), "%s", name);

        union {
            t_req req;
            t_resp resp;
        } got, built;
        cr_assert_eq(decode_once(gob, n, t, &got, &consumed), 0, "%s", name);
        cr_assert_eq(consumed, n);
        json_t *value = json_object_get(c, "value");
        if (is_req)
            assert_req(&got.req, value);
        else
            assert_resp(&got.resp, value);

        /* the process's history decides the ids: replay it */
        dmsg_gob_registry reg;
        dmsg_gob_registry_init(&reg);
        json_t *before = json_object_get(c, "preceding_request_gob_hex");
        uint8_t out[1024];
        size_t len;
        if (before) {
            size_t bn;
            uint8_t *bgob = hexdup(before, &bn);
            t_req prev;
            cr_assert_eq(decode_once(bgob, bn, &req_type, &prev, NULL), 0);
            dmsg_gob_encoder enc;
            dmsg_gob_encoder_init(&enc, &reg);
            cr_assert_eq(dmsg_gob_encode(&enc, &req_type, &prev, out, sizeof out, &len), 0);
            assert_bytes(out, len, bgob, bn, "preceding request");
            free(bgob);
        }
        dmsg_gob_registry reg_copy = reg;
        dmsg_gob_encoder enc;
        dmsg_gob_encoder_init(&enc, &reg);
        cr_assert_eq(dmsg_gob_encode(&enc, t, &got, out, sizeof out, &len), 0);
        assert_bytes(out, len, gob, n, name);

        /* and from the vector's values rather than our own decode */
        uint8_t noise[4096];
        if (is_req)
            req_from_json(value, &built.req, noise, sizeof noise);
        else
            resp_from_json(value, &built.resp, noise, sizeof noise);
        dmsg_gob_encoder_init(&enc, &reg_copy);
        cr_assert_eq(dmsg_gob_encode(&enc, t, &built, out, sizeof out, &len), 0);
        assert_bytes(out, len, gob, n, name);
        free(gob);
    }
    json_decref(root);
}

/* The DMSG_E code we give for each input Go rejects. */
static const struct {
    const char *name;
    int code;
} rejected[] = {
    {"req_explicit_zero_pk", DMSG_EKEY},      {"req_pk_as_array", DMSG_EGOBTYPE},
    {"req_missing_typedefs", DMSG_EGOB},      {"req_truncated", DMSG_EAGAIN},
    {"req_invalid_pk_point", DMSG_EKEY},      {"req_short_pk", DMSG_EKEY},
    {"req_port_overflow", DMSG_EGOB},         {"req_timestamp_as_uint", DMSG_EGOBTYPE},
    {"req_duplicate_typedef", DMSG_EGOB},     {"req_length_prefix_too_big", DMSG_EAGAIN},
    {"req_bad_field_delta", DMSG_EGOB},       {"resp_hash_as_bytes", DMSG_EGOBTYPE},
    {"resp_hash_len31", DMSG_EGOBTYPE},       {"resp_hash_packed", DMSG_EGOB},
    {"resp_errcode_as_int", DMSG_EGOBTYPE},   {"resp_errcode_overflow", DMSG_EGOB},
};

static int rejected_code(const char *name)
{
    for (size_t i = 0; i < sizeof rejected / sizeof rejected[0]; i++)
        if (strcmp(rejected[i].name, name) == 0)
            return rejected[i].code;
    cr_assert_fail("no expected code for rejected variant %s", name);
    return 0;
}

static json_t *case_with_gob(json_t *root, const uint8_t *gob, size_t n)
{
    size_t i;
    json_t *c;
    json_array_foreach(vec_get(root, "cases"), i, c) {
        size_t cn;
        uint8_t *cg = hexdup(json_object_get(c, "gob_hex"), &cn);
        bool same = cn <= n && memcmp(cg, gob, cn) == 0;
        free(cg);
        if (same)
            return json_object_get(c, "value");
    }
    return NULL;
}

Test(gob, go_decoder_acceptance_table)
{
    json_t *root = vec_load("gob.json");
    size_t i;
    json_t *v;
    json_array_foreach(vec_get(root, "go_decoder_acceptance"), i, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        bool as_req =
            strcmp(json_string_value(json_object_get(v, "decode_as")), "StreamRequest") == 0;
        size_t n, consumed = 0;
        uint8_t *in = hexdup(json_object_get(v, "hex"), &n);
        union {
            t_req req;
            t_resp resp;
        } got;
        int rc = decode_once(in, n, as_req ? &req_type : &resp_type, &got, &consumed);
        if (!json_is_true(json_object_get(v, "go_accepts"))) {
            cr_assert_eq(rc, rejected_code(name), "%s: got %d (%s)", name, rc,
                         dmsg_strerror(rc));
            free(in);
            continue;
        }
        cr_assert_eq(rc, 0, "%s: Go accepts, we returned %d (%s)", name, rc, dmsg_strerror(rc));
        cr_assert(consumed <= n);
        json_t *want = json_object_get(v, "go_decoded");
        if (!want)
            want = case_with_gob(root, in, n);
        cr_assert(want, "%s: no expected value", name);
        if (as_req)
            assert_req(&got.req, want);
        else
            assert_resp(&got.resp, want);
        free(in);
    }
    json_decref(root);
}

Test(gob, trailing_bytes_after_the_value_are_left_unconsumed)
{
    json_t *root = vec_load("gob.json");
    size_t n, base_len, consumed;
    uint8_t *in = hexdup(vec_get(root, "go_decoder_acceptance.10.hex"), &n);
    uint8_t *base = hexdup(vec_get(root, "cases.0.gob_hex"), &base_len);
    cr_assert_str_eq(json_string_value(vec_get(root, "go_decoder_acceptance.10.name")),
                     "req_trailing_garbage");
    t_req req;
    cr_assert_eq(decode_once(in, n, &req_type, &req, &consumed), 0);
    cr_assert_eq(consumed, base_len);
    cr_assert(n > base_len);
    free(in);
    free(base);
    json_decref(root);
}

/* ---- stream.json ---- */

static void stream_req_from_fields(json_t *f, t_req *req, uint8_t *noise, size_t cap)
{
    memset(req, 0, sizeof *req);
    req->timestamp = json_i64(json_object_get(f, "Timestamp"));
    hex_into(vec_get(f, "SrcAddr.PK"), req->src.pk.b, 33);
    req->src.port = (uint16_t)json_integer_value(vec_get(f, "SrcAddr.Port"));
    hex_into(vec_get(f, "DstAddr.PK"), req->dst.pk.b, 33);
    req->dst.port = (uint16_t)json_integer_value(vec_get(f, "DstAddr.Port"));
    req->noise = view_of(json_object_get(f, "NoiseMsg"), noise, cap);
}

static void stream_resp_from_fields(json_t *f, t_resp *resp, uint8_t *noise, size_t cap)
{
    memset(resp, 0, sizeof *resp);
    hex_into(json_object_get(f, "ReqHash"), resp->hash, 32);
    resp->accepted = json_is_true(json_object_get(f, "Accepted"));
    resp->err_code = (uint16_t)json_integer_value(json_object_get(f, "ErrCode"));
    resp->noise = view_of(json_object_get(f, "NoiseMsg"), noise, cap);
}

static void assert_same_req(const t_req *a, const t_req *b)
{
    cr_assert_eq(a->timestamp, b->timestamp);
    cr_assert_eq(memcmp(&a->src.pk, &b->src.pk, 33), 0);
    cr_assert_eq(a->src.port, b->src.port);
    cr_assert_eq(memcmp(&a->dst.pk, &b->dst.pk, 33), 0);
    cr_assert_eq(a->dst.port, b->dst.port);
    assert_bytes(a->noise.ptr, a->noise.len, b->noise.ptr, b->noise.len, "NoiseMsg");
}

Test(gob, stream_objects_decode_and_reencode)
{
    json_t *root = vec_load("stream.json");
    const char *resps[] = {"stream_response", "rejected_response_example"};
    size_t req_len, len;
    uint8_t *req_gob = hexdup(vec_get(root, "stream_request.gob"), &req_len);
    uint8_t noise[256], out[1024];
    t_req want_req, got_req;
    stream_req_from_fields(vec_get(root, "stream_request.fields"), &want_req, noise, sizeof noise);
    cr_assert_eq(decode_once(req_gob, req_len, &req_type, &got_req, NULL), 0);
    assert_same_req(&got_req, &want_req);
    encode_fresh(&req_type, &want_req, out, sizeof out, &len);
    assert_bytes(out, len, req_gob, req_len, "stream_request.gob");

    for (size_t i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s.gob", resps[i]);
        size_t n;
        uint8_t *gob = hexdup(vec_get(root, path), &n);
        snprintf(path, sizeof path, "%s.fields", resps[i]);
        t_resp want, got;
        uint8_t rnoise[256];
        stream_resp_from_fields(vec_get(root, path), &want, rnoise, sizeof rnoise);
        cr_assert_eq(decode_once(gob, n, &resp_type, &got, NULL), 0);
        assert_bytes(got.hash, 32, want.hash, 32, "ReqHash");
        cr_assert_eq(got.accepted, want.accepted);
        cr_assert_eq(got.err_code, want.err_code);
        assert_bytes(got.noise.ptr, got.noise.len, want.noise.ptr, want.noise.len, "NoiseMsg");
        /* B's process had encoded a StreamRequest first: its ids start after those */
        dmsg_gob_registry reg;
        dmsg_gob_encoder enc;
        dmsg_gob_registry_init(&reg);
        dmsg_gob_encoder_init(&enc, &reg);
        cr_assert_eq(dmsg_gob_encode(&enc, &req_type, &want_req, out, sizeof out, &len), 0);
        dmsg_gob_encoder_init(&enc, &reg);
        cr_assert_eq(dmsg_gob_encode(&enc, &resp_type, &want, out, sizeof out, &len), 0);
        assert_bytes(out, len, gob, n, resps[i]);
        free(gob);
    }
    free(req_gob);
    json_decref(root);
}

typedef struct t_unrelated {
    int64_t x, y;
} t_unrelated;

static const dmsg_gob_field unrelated_fields[] = {
    {"X", offsetof(t_unrelated, x), &dmsg_gob_type_int64, 0},
    {"Y", offsetof(t_unrelated, y), &dmsg_gob_type_int64, 0},
};
static const dmsg_gob_type unrelated_type = {
    .kind = DMSG_GOB_STRUCT, .name = "Unrelated", .size = sizeof(t_unrelated),
    .fields = unrelated_fields, .nfields = 2};

Test(gob, type_id_variation)
{
    json_t *root = vec_load("stream.json");
    json_t *var = vec_get(root, "gob_type_id_variation");
    size_t first_len, after_len, unrel_len, len;
    uint8_t *first = hexdup(json_object_get(var, "first_gob_type_in_process"), &first_len);
    uint8_t *after = hexdup(json_object_get(var, "after_an_unrelated_gob_type"), &after_len);
    uint8_t *unrel = hexdup(json_object_get(var, "unrelated_first_gob"), &unrel_len);
    cr_assert(first_len == after_len && memcmp(first, after, first_len) != 0);

    t_req a, b;
    cr_assert_eq(decode_once(first, first_len, &req_type, &a, NULL), 0);
    cr_assert_eq(decode_once(after, after_len, &req_type, &b, NULL), 0);
    assert_same_req(&a, &b);
    const uint8_t noise[] = {1, 2, 3};
    assert_bytes(a.noise.ptr, a.noise.len, noise, 3, "shortened NoiseMsg");

    /* replay both processes */
    uint8_t out[1024];
    encode_fresh(&req_type, &a, out, sizeof out, &len);
    assert_bytes(out, len, first, first_len, "first_gob_type_in_process");
    t_unrelated u;
    cr_assert_eq(decode_once(unrel, unrel_len, &unrelated_type, &u, NULL), 0);
    dmsg_gob_registry reg;
    dmsg_gob_encoder enc;
    dmsg_gob_registry_init(&reg);
    dmsg_gob_encoder_init(&enc, &reg);
    cr_assert_eq(dmsg_gob_encode(&enc, &unrelated_type, &u, out, sizeof out, &len), 0);
    assert_bytes(out, len, unrel, unrel_len, "unrelated_first_gob");
    dmsg_gob_encoder_init(&enc, &reg);
    cr_assert_eq(dmsg_gob_encode(&enc, &req_type, &a, out, sizeof out, &len), 0);
    assert_bytes(out, len, after, after_len, "after_an_unrelated_gob_type");

    /* Go refuses to decode a struct into one that shares no field name with it */
    cr_assert_eq(decode_once(unrel, unrel_len, &req_type, &a, NULL), DMSG_EGOBTYPE);
    free(first);
    free(after);
    free(unrel);
    json_decref(root);
}

/* ---- setup_rpc.json: net/rpc streams ---- */

typedef union rpc_body {
    rpc_route route;
    rpc_edge_rules edge;
    uint8_t count;
    dmsg_gob_slice slice;
    bool ok;
    rpc_empty empty;
} rpc_body;

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* What net/rpc sends after a header, by method and direction. */
static const dmsg_gob_type *body_type(json_t *m, bool to_server)
{
    const char *method = json_string_value(json_object_get(m, "service_method"));
    if (!to_server && json_object_get(m, "error"))
        return &rpc_empty_type;
    if (ends_with(method, ".ReserveIDs"))
        return to_server ? &dmsg_gob_type_uint8 : &rpc_route_ids_type;
    if (ends_with(method, ".AddIntermediaryRules"))
        return to_server ? &rpc_rules_type : &dmsg_gob_type_bool;
    if (ends_with(method, ".AddEdgeRules"))
        return to_server ? &rpc_edge_rules_type : &dmsg_gob_type_bool;
    return to_server ? &rpc_route_type : &rpc_edge_rules_type; /* DialRouteGroup, unknown */
}

/* Storage the encoder's views point into while one body is built from JSON. */
typedef struct body_store {
    rpc_hop hops[2][8];
    uint32_t ids[32];
    dmsg_gob_bytes rules[8];
    uint8_t bytes[8][256];
} body_store;

static void hops_from_json(json_t *arr, rpc_hop *hops, dmsg_gob_slice *slice)
{
    size_t i;
    json_t *h;
    cr_assert(json_array_size(arr) <= 8);
    json_array_foreach(arr, i, h) {
        hex_into(json_object_get(h, "TpID"), hops[i].tp_id, 16);
        hex_into(json_object_get(h, "From"), hops[i].from.b, 33);
        hex_into(json_object_get(h, "To"), hops[i].to.b, 33);
    }
    *slice = (dmsg_gob_slice){json_array_size(arr) ? hops : NULL, json_array_size(arr)};
}

static void body_from_json(const dmsg_gob_type *t, json_t *b, rpc_body *body, body_store *s)
{
    memset(body, 0, sizeof *body);
    if (t == &rpc_route_type) {
        hex_into(json_object_get(b, "Desc"), body->route.desc, 70);
        body->route.keep_alive = json_i64(json_object_get(b, "KeepAlive"));
        hops_from_json(json_object_get(b, "Forward"), s->hops[0], &body->route.forward);
        hops_from_json(json_object_get(b, "Reverse"), s->hops[1], &body->route.reverse);
    } else if (t == &rpc_edge_rules_type) {
        hex_into(json_object_get(b, "Desc"), body->edge.desc, 70);
        body->edge.forward = view_of(json_object_get(b, "Forward"), s->bytes[0], 256);
        body->edge.reverse = view_of(json_object_get(b, "Reverse"), s->bytes[1], 256);
    } else if (t == &dmsg_gob_type_uint8) {
        body->count = (uint8_t)json_integer_value(b);
    } else if (t == &dmsg_gob_type_bool) {
        body->ok = json_is_true(b);
    } else if (t == &rpc_route_ids_type || t == &rpc_rules_type) {
        size_t i;
        json_t *e;
        cr_assert(json_array_size(b) <= 8);
        json_array_foreach(b, i, e) {
            if (t == &rpc_route_ids_type)
                s->ids[i] = (uint32_t)json_integer_value(e);
            else
                s->rules[i] = view_of(e, s->bytes[i], 256);
        }
        body->slice.items = t == &rpc_route_ids_type ? (void *)s->ids : (void *)s->rules;
        body->slice.len = json_array_size(b);
    } else {
        cr_assert_eq(t, &rpc_empty_type);
        cr_assert(json_is_object(b) && json_object_size(b) == 0);
    }
}

static void assert_hops(const dmsg_gob_slice *got, json_t *arr)
{
    cr_assert_eq(got->len, json_array_size(arr));
    const rpc_hop *hops = got->items;
    size_t i;
    json_t *h;
    json_array_foreach(arr, i, h) {
        rpc_hop want;
        hex_into(json_object_get(h, "TpID"), want.tp_id, 16);
        hex_into(json_object_get(h, "From"), want.from.b, 33);
        hex_into(json_object_get(h, "To"), want.to.b, 33);
        cr_assert_eq(memcmp(&hops[i], &want, sizeof want), 0, "hop %zu", i);
    }
}

static void assert_body(const dmsg_gob_type *t, const rpc_body *got, json_t *b)
{
    if (t == &rpc_route_type) {
        uint8_t desc[70];
        hex_into(json_object_get(b, "Desc"), desc, 70);
        cr_assert_eq(memcmp(got->route.desc, desc, 70), 0);
        cr_assert_eq(got->route.keep_alive, json_i64(json_object_get(b, "KeepAlive")));
        assert_hops(&got->route.forward, json_object_get(b, "Forward"));
        assert_hops(&got->route.reverse, json_object_get(b, "Reverse"));
    } else if (t == &rpc_edge_rules_type) {
        uint8_t desc[70];
        hex_into(json_object_get(b, "Desc"), desc, 70);
        cr_assert_eq(memcmp(got->edge.desc, desc, 70), 0);
        assert_view_hex(got->edge.forward, json_object_get(b, "Forward"), "EdgeRules.Forward");
        assert_view_hex(got->edge.reverse, json_object_get(b, "Reverse"), "EdgeRules.Reverse");
    } else if (t == &dmsg_gob_type_uint8) {
        cr_assert_eq(got->count, json_integer_value(b));
    } else if (t == &dmsg_gob_type_bool) {
        cr_assert_eq(got->ok, json_is_true(b));
    } else if (t == &rpc_route_ids_type || t == &rpc_rules_type) {
        cr_assert_eq(got->slice.len, json_array_size(b));
        size_t i;
        json_t *e;
        json_array_foreach(b, i, e) {
            if (t == &rpc_route_ids_type)
                cr_assert_eq(((const uint32_t *)got->slice.items)[i], json_integer_value(e));
            else
                assert_view_hex(((const dmsg_gob_bytes *)got->slice.items)[i], e, "Rule");
        }
    }
}

static void assert_header(bool to_server, const void *hdr, json_t *m)
{
    const char *method = json_string_value(json_object_get(m, "service_method"));
    uint64_t seq = (uint64_t)json_integer_value(json_object_get(m, "seq"));
    if (to_server) {
        const rpc_request *req = hdr;
        assert_view_str(req->service_method, method, "ServiceMethod");
        cr_assert_eq(req->seq, seq);
        return;
    }
    const rpc_response *resp = hdr;
    assert_view_str(resp->service_method, method, "ServiceMethod");
    cr_assert_eq(resp->seq, seq);
    json_t *err = json_object_get(m, "error");
    assert_view_str(resp->error, err ? json_string_value(err) : "", "Error");
}

/* Decodes a whole direction of an RPC stream with one decoder. step 0 feeds everything at once;
 * step 1 makes more bytes available one at a time, as a socket might. */
static void decode_rpc_stream(const uint8_t *in, size_t n, json_t *messages, bool to_server,
                              size_t step)
{
    static uint8_t arena[1 << 16];
    dmsg_gob_decoder dec;
    dmsg_gob_decoder_init(&dec, 1 << 20, arena, sizeof arena);
    size_t off = 0, avail = step ? 0 : n, i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        for (int part = 0; part < 2; part++) {
            union {
                rpc_request req;
                rpc_response resp;
                rpc_body body;
            } v;
            const dmsg_gob_type *t = part ? body_type(m, to_server)
                                          : to_server ? &rpc_request_type : &rpc_response_type;
            size_t consumed;
            int rc;
            while ((rc = dmsg_gob_decode(&dec, in + off, avail - off, t, &v, &consumed)) ==
                   DMSG_EAGAIN) {
                cr_assert(step && avail < n, "stream ends inside message %zu", i);
                avail += avail + step <= n ? step : n - avail;
            }
            cr_assert_eq(rc, 0, "message %zu part %d: %d (%s)", i, part, rc, dmsg_strerror(rc));
            off += consumed;
            if (avail < off)
                avail = off;
            if (part == 0)
                assert_header(to_server, &v, m);
            else
                assert_body(t, &v.body, json_object_get(m, "body"));
        }
    }
    cr_assert_eq(off, n, "bytes left after the last message");
}

Test(gob, canonical_rpc_streams_reencode_byte_for_byte)
{
    json_t *root = vec_load("setup_rpc.json");
    size_t i;
    json_t *s;
    json_array_foreach(vec_get(root, "canonical_fresh_process_streams"), i, s) {
        const char *name = json_string_value(json_object_get(s, "name"));
        bool to_server = strncmp(json_string_value(json_object_get(s, "direction")),
                                 "rpc client", 10) == 0;
        dmsg_gob_registry reg;
        dmsg_gob_encoder enc;
        dmsg_gob_registry_init(&reg);
        dmsg_gob_encoder_init(&enc, &reg);
        static uint8_t stream[8192];
        size_t total = 0, j;
        json_t *m;
        json_array_foreach(json_object_get(s, "messages"), j, m) {
            rpc_request req;
            rpc_response resp;
            memset(&req, 0, sizeof req);
            memset(&resp, 0, sizeof resp);
            const char *method = json_string_value(json_object_get(m, "service_method"));
            json_t *err = json_object_get(m, "error");
            req.service_method = resp.service_method =
                (dmsg_gob_bytes){(const uint8_t *)method, strlen(method)};
            req.seq = resp.seq = (uint64_t)json_integer_value(json_object_get(m, "seq"));
            if (err)
                resp.error = (dmsg_gob_bytes){(const uint8_t *)json_string_value(err),
                                              strlen(json_string_value(err))};
            size_t call_start = total, len;
            cr_assert_eq(dmsg_gob_encode(&enc, to_server ? &rpc_request_type : &rpc_response_type,
                                         to_server ? (const void *)&req : (const void *)&resp,
                                         stream + total, sizeof stream - total, &len),
                         0);
            total += len;
            const dmsg_gob_type *t = body_type(m, to_server);
            rpc_body body;
            static body_store store;
            body_from_json(t, json_object_get(m, "body"), &body, &store);
            cr_assert_eq(dmsg_gob_encode(&enc, t, &body, stream + total, sizeof stream - total,
                                         &len),
                         0);
            total += len;
            size_t call_len;
            uint8_t *call = hexdup(json_array_get(json_object_get(s, "per_call_hex"), j),
                                   &call_len);
            assert_bytes(stream + call_start, total - call_start, call, call_len, name);
            free(call);
        }
        size_t want_len;
        uint8_t *want = hexdup(json_object_get(s, "stream_hex"), &want_len);
        assert_bytes(stream, total, want, want_len, name);
        decode_rpc_stream(want, want_len, json_object_get(s, "messages"), to_server, 0);
        decode_rpc_stream(want, want_len, json_object_get(s, "messages"), to_server, 1);
        free(want);
    }
    json_decref(root);
}

Test(gob, scenario_rpc_streams_parse)
{
    json_t *root = vec_load("setup_rpc.json");
    size_t i, j, streams = 0;
    json_t *sc, *conn;
    json_array_foreach(vec_get(root, "scenarios"), i, sc) {
        json_array_foreach(json_object_get(sc, "connections"), j, conn) {
            for (int dir = 0; dir < 2; dir++) {
                size_t n;
                uint8_t *in = hexdup(json_object_get(conn, dir ? "response_stream_hex"
                                                               : "request_stream_hex"),
                                     &n);
                json_t *messages = json_object_get(conn, dir ? "response_stream_messages"
                                                             : "request_stream_messages");
                decode_rpc_stream(in, n, messages, dir == 0, 0);
                decode_rpc_stream(in, n, messages, dir == 0, 7);
                streams++;
                free(in);
            }
        }
    }
    cr_assert(streams > 0);
    json_decref(root);
}

Test(gob, rpc_bodies_can_be_discarded)
{
    /* net/rpc reads an error reply's body, or an unknown method's argument, with Decode(nil) */
    json_t *root = vec_load("setup_rpc.json");
    size_t i;
    json_t *s;
    json_array_foreach(vec_get(root, "canonical_fresh_process_streams"), i, s) {
        bool to_server = strncmp(json_string_value(json_object_get(s, "direction")),
                                 "rpc client", 10) == 0;
        size_t n, off = 0, consumed;
        uint8_t *in = hexdup(json_object_get(s, "stream_hex"), &n);
        dmsg_gob_decoder dec;
        dmsg_gob_decoder_init(&dec, 1 << 20, NULL, 0);
        while (off < n) {
            rpc_response hdr;
            cr_assert_eq(dmsg_gob_decode(&dec, in + off, n - off,
                                         to_server ? &rpc_request_type : &rpc_response_type, &hdr,
                                         &consumed),
                         0);
            off += consumed;
            cr_assert_eq(dmsg_gob_decode(&dec, in + off, n - off, NULL, NULL, &consumed), 0);
            off += consumed;
        }
        free(in);
    }
    json_decref(root);
}

/* ---- hostile input ---- */

/* A tiny gob writer for hand-built streams. */
typedef struct wbuf {
    uint8_t b[8192];
    size_t n;
} wbuf;

static void put_u(wbuf *w, uint64_t v)
{
    if (v <= 0x7f) {
        w->b[w->n++] = (uint8_t)v;
        return;
    }
    uint8_t tmp[8];
    size_t k = 0;
    for (; v; v >>= 8)
        tmp[k++] = (uint8_t)v;
    w->b[w->n++] = (uint8_t)(256 - k);
    while (k)
        w->b[w->n++] = tmp[--k];
}

static void put_i(wbuf *w, int64_t v)
{
    put_u(w, v < 0 ? ((uint64_t)(-(v + 1)) << 1) | 1 : (uint64_t)v << 1);
}

static void put_s(wbuf *w, const char *s)
{
    put_u(w, strlen(s));
    memcpy(w->b + w->n, s, strlen(s));
    w->n += strlen(s);
}

static void put_msg(wbuf *stream, const wbuf *body)
{
    put_u(stream, body->n);
    memcpy(stream->b + stream->n, body->b, body->n);
    stream->n += body->n;
}

/* struct definition: fields given as name/type-id pairs */
static void def_struct(wbuf *s, int id, int nfields, const char *const *names, const int *ids)
{
    wbuf d = {.n = 0};
    put_i(&d, -id);
    put_u(&d, 3);
    put_u(&d, 1);
    put_u(&d, 2);
    put_i(&d, id);
    put_u(&d, 0);
    if (nfields) {
        put_u(&d, 1);
        put_u(&d, (uint64_t)nfields);
        for (int i = 0; i < nfields; i++) {
            put_u(&d, 1);
            put_s(&d, names[i]);
            put_u(&d, 1);
            put_i(&d, ids[i]);
            put_u(&d, 0);
        }
    }
    put_u(&d, 0);
    put_u(&d, 0);
    put_msg(s, &d);
}

/* array (wire kind 1), slice (2), map (4) definitions */
static void def_container(wbuf *s, int id, int kind, int elem, int64_t len, int key)
{
    wbuf d = {.n = 0};
    put_i(&d, -id);
    put_u(&d, (uint64_t)kind);
    put_u(&d, 1);
    put_u(&d, 2);
    put_i(&d, id);
    put_u(&d, 0);
    if (kind == 4) {
        put_u(&d, 1);
        put_i(&d, key);
    }
    put_u(&d, 1);
    put_i(&d, elem);
    if (kind == 1) {
        put_u(&d, 1);
        put_i(&d, len);
    }
    put_u(&d, 0);
    put_u(&d, 0);
    put_msg(s, &d);
}

/* GobEncoder (5), BinaryMarshaler (6), TextMarshaler (7) definitions */
static void def_marshaler(wbuf *s, int id, int kind)
{
    wbuf d = {.n = 0};
    put_i(&d, -id);
    put_u(&d, (uint64_t)kind);
    put_u(&d, 1);
    put_u(&d, 2);
    put_i(&d, id);
    put_u(&d, 0);
    put_u(&d, 0);
    put_u(&d, 0);
    put_msg(s, &d);
}

typedef struct t_port {
    uint16_t port;
} t_port;
static const dmsg_gob_field port_fields[] = {
    {"Port", offsetof(t_port, port), &dmsg_gob_type_uint16, 0}};
static const dmsg_gob_type port_type = {
    .kind = DMSG_GOB_STRUCT, .name = "P", .size = sizeof(t_port), .fields = port_fields,
    .nfields = 1};

Test(gob, truncation_at_every_byte_needs_more_input)
{
    json_t *root = vec_load("gob.json");
    size_t i;
    json_t *c;
    json_array_foreach(vec_get(root, "cases"), i, c) {
        bool is_req = strcmp(json_string_value(json_object_get(c, "type")), "StreamRequest") == 0;
        size_t n, consumed;
        uint8_t *gob = hexdup(json_object_get(c, "gob_hex"), &n);
        /* one decoder sees every prefix: a prefix must leave it untouched, or the final full
         * input would redefine types */
        dmsg_gob_decoder dec;
        dmsg_gob_decoder_init(&dec, MAX_HANDSHAKE_MESSAGE, NULL, 0);
        union {
            t_req req;
            t_resp resp;
        } v;
        for (size_t cut = 0; cut < n; cut++)
            cr_assert_eq(dmsg_gob_decode(&dec, gob, cut, is_req ? &req_type : &resp_type, &v,
                                         &consumed),
                         DMSG_EAGAIN, "cut at %zu", cut);
        cr_assert_eq(dmsg_gob_decode(&dec, gob, n, is_req ? &req_type : &resp_type, &v, &consumed),
                     0);
        cr_assert_eq(consumed, n);
        free(gob);
    }
    json_decref(root);
}

Test(gob, hostile_message_lengths)
{
    t_req req;
    const uint8_t huge[] = {0xf8, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(decode_once(huge, sizeof huge, &req_type, &req, NULL), DMSG_ETOOBIG);
    const uint8_t nine_bytes[] = {0xf7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    cr_assert_eq(decode_once(nine_bytes, sizeof nine_bytes, &req_type, &req, NULL), DMSG_EGOB);
    const uint8_t bad_count[] = {0x80, 0};
    cr_assert_eq(decode_once(bad_count, sizeof bad_count, &req_type, &req, NULL), DMSG_EGOB);
    const uint8_t empty_message[] = {0x00, 0x03, 0x02, 0x00, 0x01};
    cr_assert_eq(decode_once(empty_message, sizeof empty_message, &req_type, &req, NULL),
                 DMSG_EGOB);

    /* a limit below the first message of a real object */
    json_t *root = vec_load("gob.json");
    size_t n, consumed;
    uint8_t *gob = hexdup(vec_get(root, "cases.0.gob_hex"), &n);
    dmsg_gob_decoder dec;
    dmsg_gob_decoder_init(&dec, 79, NULL, 0); /* the first message is 80 bytes */
    cr_assert_eq(dmsg_gob_decode(&dec, gob, n, &req_type, &req, &consumed), DMSG_ETOOBIG);
    free(gob);
    json_decref(root);
}

Test(gob, hostile_lengths_inside_values)
{
    bool b;
    dmsg_gob_bytes s;
    /* string length 5 in a 3-byte message that holds 2 */
    const uint8_t long_string[] = {0x05, 0x0c, 0x00, 0x05, 'a', 'b'};
    cr_assert_eq(decode_once(long_string, sizeof long_string, &dmsg_gob_type_string, &s, NULL),
                 DMSG_EGOB);
    /* the same, claiming 2^63 */
    const uint8_t huge_string[] = {0x0c, 0x0c, 0x00, 0xf8, 0x80, 0, 0, 0, 0, 0, 0, 0, 'a'};
    cr_assert_eq(decode_once(huge_string, sizeof huge_string, &dmsg_gob_type_string, &s, NULL),
                 DMSG_EGOB);
    /* singleton marker must be zero */
    const uint8_t marker[] = {0x03, 0x02, 0x01, 0x01};
    cr_assert_eq(decode_once(marker, sizeof marker, &dmsg_gob_type_bool, &b, NULL), DMSG_EGOB);

    /* a slice of 2^62 uint32 in a short message */
    static uint8_t arena[4096];
    wbuf w = {.n = 0}, v = {.n = 0};
    def_container(&w, 65, 2, DMSG_GOB_ID_UINT, 0, 0);
    put_i(&v, 65);
    put_u(&v, 0);
    put_u(&v, (uint64_t)1 << 62);
    put_u(&v, 1);
    put_msg(&w, &v);
    dmsg_gob_slice slice;
    dmsg_gob_decoder dec;
    size_t consumed;
    dmsg_gob_decoder_init(&dec, 1 << 20, arena, sizeof arena);
    cr_assert_eq(dmsg_gob_decode(&dec, w.b, w.n, &rpc_route_ids_type, &slice, &consumed),
                 DMSG_EGOB);

    /* a field delta of 2^63 */
    wbuf w2 = {.n = 0}, v2 = {.n = 0};
    const char *names[] = {"Port"};
    const int ids[] = {DMSG_GOB_ID_UINT};
    def_struct(&w2, 65, 1, names, ids);
    put_i(&v2, 65);
    put_u(&v2, (uint64_t)1 << 63);
    put_u(&v2, 5);
    put_u(&v2, 0);
    put_msg(&w2, &v2);
    t_port p;
    cr_assert_eq(decode_once(w2.b, w2.n, &port_type, &p, NULL), DMSG_EGOB);
}

Test(gob, array_length_must_match_the_definition)
{
    wbuf w = {.n = 0}, v = {.n = 0};
    const char *names[] = {"ReqHash"};
    const int ids[] = {66};
    def_struct(&w, 65, 1, names, ids);
    def_container(&w, 66, 1, DMSG_GOB_ID_UINT, 32, 0);
    put_i(&v, 65);
    put_u(&v, 1);
    put_u(&v, 31); /* count differs from Len */
    for (int i = 0; i < 31; i++)
        put_u(&v, 7);
    put_u(&v, 0);
    put_msg(&w, &v);
    t_resp resp;
    cr_assert_eq(decode_once(w.b, w.n, &resp_type, &resp, NULL), DMSG_EGOB);
}

/* struct S0 { F S1 } ... each level one more struct: a value nested `levels` deep */
static void nested_structs(wbuf *w, int levels)
{
    const char *names[] = {"F"};
    for (int i = 0; i < levels; i++) {
        int ids[] = {65 + i + 1};
        def_struct(w, 65 + i, i + 1 < levels ? 1 : 0, names, ids);
    }
    wbuf v = {.n = 0};
    put_i(&v, 65);
    for (int i = 0; i + 1 < levels; i++)
        put_u(&v, 1);
    for (int i = 0; i < levels; i++)
        put_u(&v, 0);
    put_msg(w, &v);
}

Test(gob, nesting_depth_is_bounded)
{
    size_t consumed;
    wbuf ok = {.n = 0}, deep = {.n = 0};
    nested_structs(&ok, 8);
    nested_structs(&deep, 24);
    dmsg_gob_decoder dec;
    dmsg_gob_decoder_init(&dec, 1 << 20, NULL, 0);
    cr_assert_eq(dmsg_gob_decode(&dec, ok.b, ok.n, NULL, NULL, &consumed), 0);
    cr_assert_eq(consumed, ok.n);
    dmsg_gob_decoder_init(&dec, 1 << 20, NULL, 0);
    cr_assert_eq(dmsg_gob_decode(&dec, deep.b, deep.n, NULL, NULL, &consumed), DMSG_EDEPTH);

    /* a recursive type (T { Kids []T }) with a deep value */
    wbuf w = {.n = 0}, v = {.n = 0};
    const char *names[] = {"Kids"};
    const int ids[] = {66};
    def_struct(&w, 65, 1, names, ids);
    def_container(&w, 66, 2, 65, 0, 0);
    put_i(&v, 65);
    for (int i = 0; i < 40; i++) {
        put_u(&v, 1); /* field Kids */
        put_u(&v, 1); /* one element */
    }
    for (int i = 0; i < 41; i++)
        put_u(&v, 0);
    put_msg(&w, &v);
    dmsg_gob_decoder_init(&dec, 1 << 20, NULL, 0);
    cr_assert_eq(dmsg_gob_decode(&dec, w.b, w.n, NULL, NULL, &consumed), DMSG_EDEPTH);
}

Test(gob, unknown_and_invalid_type_ids)
{
    t_port p;
    size_t consumed;
    /* a value of a type never defined */
    wbuf w = {.n = 0}, v = {.n = 0};
    put_i(&v, 99);
    put_u(&v, 0);
    put_msg(&w, &v);
    cr_assert_eq(decode_once(w.b, w.n, &port_type, &p, NULL), DMSG_EGOB);
    cr_assert_eq(decode_once(w.b, w.n, NULL, NULL, NULL), DMSG_EGOB);

    /* a field of an undefined type is refused even when the value leaves it out, as Go
     * compiles its decoder from the whole definition */
    wbuf w2 = {.n = 0}, v2 = {.n = 0};
    const char *names[] = {"Port", "Other"};
    const int ids[] = {DMSG_GOB_ID_UINT, 77};
    def_struct(&w2, 65, 2, names, ids);
    put_i(&v2, 65);
    put_u(&v2, 1);
    put_u(&v2, 5);
    put_u(&v2, 0);
    put_msg(&w2, &v2);
    cr_assert_eq(decode_once(w2.b, w2.n, &port_type, &p, NULL), DMSG_EGOB);

    /* definitions of predefined ids are refused */
    wbuf w3 = {.n = 0};
    def_struct(&w3, 10, 1, names, ids);
    put_msg(&w3, &v2);
    cr_assert_eq(decode_once(w3.b, w3.n, &port_type, &p, NULL), DMSG_EGOB);

    /* more definitions than the table holds */
    wbuf w4 = {.n = 0};
    for (int i = 0; i <= DMSG_GOB_MAX_TYPES; i++)
        def_struct(&w4, 65 + i, 1, names, ids);
    put_msg(&w4, &v2);
    dmsg_gob_decoder dec;
    dmsg_gob_decoder_init(&dec, 1 << 20, NULL, 0);
    cr_assert_eq(dmsg_gob_decode(&dec, w4.b, w4.n, &port_type, &p, &consumed), DMSG_ELIMIT);

    /* a definition with two kinds, with none, and with bytes after it */
    wbuf w5 = {.n = 0}, d5 = {.n = 0};
    put_i(&d5, -65);
    put_u(&d5, 1); /* ArrayT */
    put_u(&d5, 1);
    put_u(&d5, 2);
    put_i(&d5, 65);
    put_u(&d5, 0);
    put_u(&d5, 1);
    put_i(&d5, DMSG_GOB_ID_UINT);
    put_u(&d5, 0);
    put_u(&d5, 1); /* SliceT as well */
    put_u(&d5, 1);
    put_u(&d5, 2);
    put_i(&d5, 65);
    put_u(&d5, 0);
    put_u(&d5, 1);
    put_i(&d5, DMSG_GOB_ID_UINT);
    put_u(&d5, 0);
    put_u(&d5, 0);
    put_msg(&w5, &d5);
    put_msg(&w5, &v2);
    cr_assert_eq(decode_once(w5.b, w5.n, NULL, NULL, NULL), DMSG_EGOB);
    wbuf w6 = {.n = 0}, d6 = {.n = 0};
    put_i(&d6, -65);
    put_u(&d6, 0);
    put_msg(&w6, &d6);
    put_msg(&w6, &v2);
    cr_assert_eq(decode_once(w6.b, w6.n, NULL, NULL, NULL), DMSG_EGOB);
    wbuf w7 = {.n = 0}, d7 = {.n = 0};
    def_marshaler(&d7, 65, 6);
    d7.b[0]++; /* message one byte longer */
    d7.b[d7.n++] = 0x00;
    memcpy(w7.b, d7.b, d7.n);
    w7.n = d7.n;
    put_msg(&w7, &v2);
    cr_assert_eq(decode_once(w7.b, w7.n, NULL, NULL, NULL), DMSG_EGOB);
}

Test(gob, top_level_kinds_must_match)
{
    const uint8_t true_value[] = {0x03, 0x02, 0x00, 0x01};
    t_port p;
    uint8_t u;
    bool b;
    cr_assert_eq(decode_once(true_value, sizeof true_value, &port_type, &p, NULL), DMSG_EGOBTYPE);
    cr_assert_eq(decode_once(true_value, sizeof true_value, &dmsg_gob_type_uint8, &u, NULL),
                 DMSG_EGOBTYPE);
    cr_assert_eq(decode_once(true_value, sizeof true_value, &dmsg_gob_type_bool, &b, NULL), 0);
    cr_assert(b);
    wbuf w = {.n = 0}, v = {.n = 0};
    const char *names[] = {"Port"};
    const int ids[] = {DMSG_GOB_ID_UINT};
    def_struct(&w, 65, 1, names, ids);
    put_i(&v, 65);
    put_u(&v, 1);
    put_u(&v, 5);
    put_u(&v, 0);
    put_msg(&w, &v);
    cr_assert_eq(decode_once(w.b, w.n, &dmsg_gob_type_uint8, &u, NULL), DMSG_EGOBTYPE);
    cr_assert_eq(decode_once(w.b, w.n, &port_type, &p, NULL), 0);
    cr_assert_eq(p.port, 5);
}

/* A struct with one known field and one unknown field of every other kind. */
static size_t every_kind_stream(wbuf *w, bool non_nil_interface)
{
    const char *names[] = {"A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "Port", "L"};
    const int ids[] = {DMSG_GOB_ID_FLOAT, DMSG_GOB_ID_COMPLEX, 66, 67, 69, 70, 71, 72,
                       DMSG_GOB_ID_INTERFACE, DMSG_GOB_ID_STRING, DMSG_GOB_ID_UINT, 68};
    def_struct(w, 65, 12, names, ids);
    def_container(w, 66, 4, DMSG_GOB_ID_INT, 0, DMSG_GOB_ID_STRING); /* map[string]int */
    def_container(w, 67, 2, 68, 0, 0);                               /* []Inner */
    const char *inner_names[] = {"X"};
    const int inner_ids[] = {DMSG_GOB_ID_INT};
    def_struct(w, 68, 1, inner_names, inner_ids); /* Inner { X int } */
    def_container(w, 69, 1, DMSG_GOB_ID_UINT, 3, 0); /* [3]uint */
    def_marshaler(w, 70, 6);
    def_marshaler(w, 71, 7);
    def_marshaler(w, 72, 5);
    wbuf v = {.n = 0};
    put_i(&v, 65);
    put_u(&v, 1); /* A float 17.0 */
    put_u(&v, 0x3140);
    put_u(&v, 1); /* B complex */
    put_u(&v, 0x3140);
    put_u(&v, 0);
    put_u(&v, 1); /* C map {"k": 3} */
    put_u(&v, 1);
    put_s(&v, "k");
    put_i(&v, 3);
    put_u(&v, 1); /* D []Inner{{X:1},{}} */
    put_u(&v, 2);
    put_u(&v, 1);
    put_i(&v, 1);
    put_u(&v, 0);
    put_u(&v, 0);
    put_u(&v, 1); /* E [3]uint */
    put_u(&v, 3);
    put_u(&v, 200);
    put_u(&v, 0);
    put_u(&v, 1);
    put_u(&v, 1); /* F binary */
    put_s(&v, "bin");
    put_u(&v, 1); /* G text */
    put_s(&v, "10.0.0.1");
    put_u(&v, 1); /* H gob encoder */
    put_s(&v, "gob");
    put_u(&v, 1); /* I interface */
    put_s(&v, non_nil_interface ? "main.T" : "");
    put_u(&v, 1); /* J string */
    put_s(&v, "text");
    put_u(&v, 1); /* Port */
    put_u(&v, 4242);
    put_u(&v, 1); /* L Inner{X: -5} */
    put_u(&v, 1);
    put_i(&v, -5);
    put_u(&v, 0);
    put_u(&v, 0);
    put_msg(w, &v);
    return w->n;
}

Test(gob, unknown_fields_of_every_kind_are_skipped)
{
    wbuf w = {.n = 0};
    size_t n = every_kind_stream(&w, false), consumed;
    t_port p;
    dmsg_gob_decoder dec;
    dmsg_gob_decoder_init(&dec, 1 << 20, NULL, 0);
    cr_assert_eq(dmsg_gob_decode(&dec, w.b, n, &port_type, &p, &consumed), 0);
    cr_assert_eq(consumed, n);
    cr_assert_eq(p.port, 4242);
    cr_assert_eq(decode_once(w.b, n, NULL, NULL, NULL), 0);

    wbuf w2 = {.n = 0};
    n = every_kind_stream(&w2, true);
    cr_assert_eq(decode_once(w2.b, n, &port_type, &p, NULL), DMSG_EGOBTYPE);
}

typedef struct t_lenient {
    uint16_t port;
    dmsg_gob_bytes ip;
} t_lenient;

static const dmsg_gob_type ip_text_type = {
    .kind = DMSG_GOB_TEXT, .name = "IP", .size = sizeof(dmsg_gob_bytes)};

Test(gob, lenient_fields_skip_an_unexpected_wire_type)
{
    /* IP sent as a plain string where the schema expects a TextMarshaler */
    wbuf w = {.n = 0}, v = {.n = 0};
    const char *names[] = {"Port", "IP"};
    const int ids[] = {DMSG_GOB_ID_UINT, DMSG_GOB_ID_STRING};
    def_struct(&w, 65, 2, names, ids);
    put_i(&v, 65);
    put_u(&v, 1);
    put_u(&v, 9);
    put_u(&v, 1);
    put_s(&v, "1.2.3.4");
    put_u(&v, 0);
    put_msg(&w, &v);
    dmsg_gob_field fields[] = {
        {"Port", offsetof(t_lenient, port), &dmsg_gob_type_uint16, 0},
        {"IP", offsetof(t_lenient, ip), &ip_text_type, DMSG_GOB_FIELD_LENIENT},
    };
    dmsg_gob_type t = {.kind = DMSG_GOB_STRUCT, .name = "L", .size = sizeof(t_lenient),
                       .fields = fields, .nfields = 2};
    t_lenient got;
    cr_assert_eq(decode_once(w.b, w.n, &t, &got, NULL), 0);
    cr_assert_eq(got.port, 9);
    cr_assert_eq(got.ip.len, 0);
    fields[1].flags = 0;
    cr_assert_eq(decode_once(w.b, w.n, &t, &got, NULL), DMSG_EGOBTYPE);
    /* the right wire type is decoded */
    fields[1].flags = DMSG_GOB_FIELD_LENIENT;
    wbuf w2 = {.n = 0};
    const int ids2[] = {DMSG_GOB_ID_UINT, 66};
    def_struct(&w2, 65, 2, names, ids2);
    def_marshaler(&w2, 66, 7);
    put_msg(&w2, &v);
    cr_assert_eq(decode_once(w2.b, w2.n, &t, &got, NULL), 0);
    assert_view_str(got.ip, "1.2.3.4", "IP");
}

Test(gob, arena_bounds_decoded_slices)
{
    json_t *root = vec_load("setup_rpc.json");
    size_t n, consumed;
    uint8_t *in = hexdup(vec_get(root, "canonical_fresh_process_streams.0.stream_hex"), &n);
    static uint8_t arena[64];
    dmsg_gob_decoder dec;
    dmsg_gob_decoder_init(&dec, 1 << 20, arena, sizeof arena);
    rpc_request hdr;
    rpc_route route;
    cr_assert_eq(dmsg_gob_decode(&dec, in, n, &rpc_request_type, &hdr, &consumed), 0);
    cr_assert_eq(dmsg_gob_decode(&dec, in + consumed, n - consumed, &rpc_route_type, &route,
                                 &consumed),
                 DMSG_ELIMIT);
    free(in);
    json_decref(root);
}

Test(gob, encoder_refuses_small_buffers_without_losing_state)
{
    json_t *root = vec_load("gob.json");
    t_req req;
    uint8_t noise[256], out[512];
    req_from_json(vec_get(root, "cases.0.value"), &req, noise, sizeof noise);
    size_t n;
    uint8_t *want = hexdup(vec_get(root, "cases.0.gob_hex"), &n);
    dmsg_gob_registry reg;
    dmsg_gob_encoder enc;
    dmsg_gob_registry_init(&reg);
    dmsg_gob_encoder_init(&enc, &reg);
    size_t len;
    for (size_t cap = 0; cap < n; cap++)
        cr_assert_eq(dmsg_gob_encode(&enc, &req_type, &req, out, cap, &len), DMSG_ETOOBIG);
    cr_assert_eq(dmsg_gob_encode(&enc, &req_type, &req, out, n, &len), 0);
    assert_bytes(out, len, want, n, "exact buffer");
    /* the definitions are now sent on this stream: a second value comes alone */
    cr_assert_eq(dmsg_gob_encode(&enc, &req_type, &req, out, sizeof out, &len), 0);
    assert_bytes(out, len, want + 136, n - 136, "second value on the stream");
    free(want);
    json_decref(root);
}

Test(gob, encoder_refuses_invalid_keys_and_views)
{
    t_req req = {.timestamp = 1};
    uint8_t out[512];
    size_t len;
    dmsg_gob_registry reg;
    dmsg_gob_encoder enc;
    dmsg_gob_registry_init(&reg);
    dmsg_gob_encoder_init(&enc, &reg);
    memset(req.src.pk.b, 0xff, 33);
    req.src.pk.b[0] = 0x02;
    cr_assert_eq(dmsg_gob_encode(&enc, &req_type, &req, out, sizeof out, &len), DMSG_EKEY);
    memset(&req.src.pk, 0, sizeof req.src.pk);
    req.noise.len = 3;
    cr_assert_eq(dmsg_gob_encode(&enc, &req_type, &req, out, sizeof out, &len), DMSG_EINVAL);
    req.noise.len = 0;
    cr_assert_eq(dmsg_gob_encode(&enc, &req_type, &req, out, sizeof out, &len), 0);
}
