/* End-to-end stream core: the KK data frames of stream.json, reader round trips split at every
 * byte, output-capacity limits, and malformed frames. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/e2e.h"
#include "dmsg/error.h"
#include "vectors.h"

static uint8_t key_a[DMSG_NOISE_KEY_LEN]; /* A -> B (initiator sends with k1) */
static uint8_t key_b[DMSG_NOISE_KEY_LEN]; /* B -> A */

static void load_kk_keys(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
    json_t *v = vec_load("stream.json");
    vec_hex_exact(v, "kk.initiator_send_key", key_a, sizeof key_a);
    vec_hex_exact(v, "kk.responder_send_key", key_b, sizeof key_b);
    json_decref(v);
}

static void reader_for(dmsg_e2e_reader *r, const uint8_t key[DMSG_NOISE_KEY_LEN])
{
    dmsg_noise_rx rx;
    dmsg_noise_rx_init(&rx, key, DMSG_NOISE_INCREASING);
    cr_assert_eq(dmsg_e2e_reader_init(r, &rx), 0);
}

/* Feeds all of in (in pieces of at most step bytes), collecting plaintext into out. */
static int feed_all(dmsg_e2e_reader *r, const uint8_t *in, size_t len, size_t step, uint8_t *out,
                    size_t cap, size_t *out_len)
{
    static uint8_t chunk[3 * DMSG_NOISE_CHUNK_MAX];
    size_t total = 0;
    for (size_t pos = 0; pos < len;) {
        size_t piece = len - pos < step ? len - pos : step;
        size_t off = 0;
        while (off < piece) {
            size_t used = 0, got = 0;
            int err = dmsg_e2e_reader_feed(r, in + pos + off, piece - off, &used, chunk,
                                           sizeof chunk, &got);
            if (err)
                return err;
            cr_assert(total + got <= cap);
            memcpy(out + total, chunk, got);
            total += got;
            off += used;
            cr_assert(used > 0 || got > 0, "no progress");
        }
        pos += piece;
    }
    *out_len = total;
    return 0;
}

Test(e2e, vector_frames_open_in_both_directions, .init = load_kk_keys)
{
    json_t *v = vec_load("stream.json");
    json_t *frames = vec_get(v, "kk.transport_frames");
    cr_assert(json_array_size(frames) > 0);
    size_t i;
    json_t *f;
    json_array_foreach(frames, i, f) {
        const char *dir = json_string_value(json_object_get(f, "direction"));
        dmsg_e2e_reader r;
        reader_for(&r, strcmp(dir, "initiator->responder") == 0 ? key_a : key_b);
        size_t flen = 0, plen = 0;
        uint8_t *framed = vec_hex(f, "framed", &flen);
        uint8_t *pt = vec_hex(f, "plaintext", &plen);
        for (size_t step = 1; step <= flen; step++) {
            reader_for(&r, strcmp(dir, "initiator->responder") == 0 ? key_a : key_b);
            uint8_t out[64];
            size_t got = 0;
            cr_assert_eq(feed_all(&r, framed, flen, step, out, sizeof out, &got), 0);
            cr_assert_eq(got, plen);
            cr_assert_arr_eq(out, pt, plen);
            cr_assert_eq(dmsg_e2e_reader_pending(&r), 0);
        }
        /* The writer side reproduces the frame byte for byte. */
        dmsg_noise_tx tx;
        dmsg_noise_tx_init(&tx, strcmp(dir, "initiator->responder") == 0 ? key_a : key_b);
        uint8_t sealed[64];
        size_t slen = 0;
        cr_assert_eq(dmsg_noise_seal_stream(&tx, pt, plen, sealed, sizeof sealed, &slen), 0);
        cr_assert_eq(slen, flen);
        cr_assert_arr_eq(sealed, framed, flen);
        dmsg_e2e_reader_wipe(&r);
        free(framed);
        free(pt);
    }
    json_decref(v);
}

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31u + seed + (i >> 8));
}

static void round_trip(size_t len, size_t step)
{
    uint8_t *pt = malloc(len ? len : 1);
    fill_pattern(pt, len, (unsigned)len);
    size_t cap = dmsg_noise_stream_sealed_len(len);
    uint8_t *sealed = malloc(cap ? cap : 1);
    uint8_t *out = malloc(len ? len : 1);
    dmsg_noise_tx tx;
    dmsg_noise_tx_init(&tx, key_a);
    size_t slen = 0;
    cr_assert_eq(dmsg_noise_seal_stream(&tx, pt, len, sealed, cap, &slen), 0);
    cr_assert_eq(slen, cap);
    dmsg_e2e_reader r;
    reader_for(&r, key_a);
    size_t got = 0;
    cr_assert_eq(feed_all(&r, sealed, slen, step, out, len ? len : 1, &got), 0);
    cr_assert_eq(got, len, "len %zu step %zu", len, step);
    cr_assert(len == 0 || memcmp(out, pt, len) == 0);
    free(pt);
    free(sealed);
    free(out);
}

Test(e2e, round_trip_at_chunk_boundaries, .init = load_kk_keys)
{
    const size_t lens[] = {1, 4069, 4070, 4071, 8140, 8141, 65536, 1 << 20};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        round_trip(lens[i], 1 << 16);
}

Test(e2e, round_trip_split_at_every_byte, .init = load_kk_keys)
{
    /* Two full frames and a short one: every split position of every frame boundary. */
    for (size_t step = 1; step <= 64; step++)
        round_trip(2 * 4070 + 100, step);
    round_trip(2 * 4070 + 100, 4095);
    round_trip(2 * 4070 + 100, 4097);
}

Test(e2e, output_capacity_stops_between_frames, .init = load_kk_keys)
{
    enum { LEN = 5 * 4070 };
    static uint8_t pt[LEN], sealed[LEN + 5 * 26], out[DMSG_NOISE_CHUNK_MAX];
    fill_pattern(pt, LEN, 7);
    dmsg_noise_tx tx;
    dmsg_noise_tx_init(&tx, key_a);
    size_t slen = 0;
    cr_assert_eq(dmsg_noise_seal_stream(&tx, pt, LEN, sealed, sizeof sealed, &slen), 0);
    dmsg_e2e_reader r;
    reader_for(&r, key_a);
    size_t pos = 0, total = 0;
    for (int call = 0; call < 5; call++) {
        size_t used = 0, got = 0;
        cr_assert_eq(dmsg_e2e_reader_feed(&r, sealed + pos, slen - pos, &used, out, sizeof out,
                                          &got), 0);
        cr_assert_eq(got, 4070, "one whole frame per call with a one-chunk buffer");
        cr_assert_eq(used, 4096);
        cr_assert_arr_eq(out, pt + total, got);
        pos += used;
        total += got;
    }
    cr_assert_eq(pos, slen);
    size_t used = 0, got = 0;
    cr_assert_eq(dmsg_e2e_reader_feed(&r, sealed, 10, &used, out, DMSG_NOISE_CHUNK_MAX - 1, &got),
                 DMSG_EINVAL, "a buffer smaller than one chunk is refused");
}

Test(e2e, empty_frames_are_skipped_and_gaps_allowed, .init = load_kk_keys)
{
    dmsg_noise_tx tx;
    dmsg_noise_tx_init(&tx, key_a);
    uint8_t buf[256];
    size_t n = 0, len = 0;
    cr_assert_eq(dmsg_noise_seal_framed(&tx, (const uint8_t *)"", 0, buf, sizeof buf, &len), 0);
    n += len;
    tx.counter += 5; /* nonces 2..6 never sent */
    cr_assert_eq(dmsg_noise_seal_framed(&tx, (const uint8_t *)"abc", 3, buf + n, sizeof buf - n,
                                        &len), 0);
    n += len;
    dmsg_e2e_reader r;
    reader_for(&r, key_a);
    uint8_t out[DMSG_NOISE_CHUNK_MAX];
    size_t used = 0, got = 0;
    cr_assert_eq(dmsg_e2e_reader_feed(&r, buf, n, &used, out, sizeof out, &got), 0);
    cr_assert_eq(used, n);
    cr_assert_eq(got, 3);
    cr_assert_arr_eq(out, "abc", 3);
}

static int feed_once(dmsg_e2e_reader *r, const uint8_t *in, size_t len)
{
    uint8_t out[DMSG_NOISE_CHUNK_MAX];
    size_t used = 0, got = 0;
    return dmsg_e2e_reader_feed(r, in, len, &used, out, sizeof out, &got);
}

Test(e2e, oversized_frame_is_refused_for_good, .init = load_kk_keys)
{
    uint8_t hdr[2] = {0x0f, 0xff}; /* 4095 > 4094 */
    dmsg_e2e_reader r;
    reader_for(&r, key_a);
    cr_assert_eq(feed_once(&r, hdr, 2), DMSG_ETOOBIG);
    cr_assert_eq(feed_once(&r, hdr, 2), DMSG_ETOOBIG, "errors are sticky");
    /* 4094 is the largest body accepted: the header alone is fine. */
    reader_for(&r, key_a);
    uint8_t max_hdr[2] = {0x0f, 0xfe};
    cr_assert_eq(feed_once(&r, max_hdr, 2), 0);
    cr_assert_eq(dmsg_e2e_reader_pending(&r), 2);
}

Test(e2e, short_body_is_refused, .init = load_kk_keys)
{
    uint8_t frame[2 + 23] = {0x00, 23};
    dmsg_e2e_reader r;
    reader_for(&r, key_a);
    cr_assert_eq(feed_once(&r, frame, sizeof frame), DMSG_ESHORT);
    uint8_t empty[2] = {0, 0};
    reader_for(&r, key_a);
    cr_assert_eq(feed_once(&r, empty, 2), DMSG_ESHORT);
}

Test(e2e, replayed_or_older_nonce_is_refused, .init = load_kk_keys)
{
    dmsg_noise_tx tx;
    dmsg_noise_tx_init(&tx, key_a);
    uint8_t f1[64], f2[64];
    size_t l1 = 0, l2 = 0;
    cr_assert_eq(dmsg_noise_seal_framed(&tx, (const uint8_t *)"one", 3, f1, sizeof f1, &l1), 0);
    cr_assert_eq(dmsg_noise_seal_framed(&tx, (const uint8_t *)"two", 3, f2, sizeof f2, &l2), 0);
    dmsg_e2e_reader r;
    reader_for(&r, key_a);
    cr_assert_eq(feed_once(&r, f2, l2), 0);
    cr_assert_eq(feed_once(&r, f1, l1), DMSG_ENONCE, "nonce 1 after nonce 2");
    reader_for(&r, key_a);
    cr_assert_eq(feed_once(&r, f1, l1), 0);
    cr_assert_eq(feed_once(&r, f1, l1), DMSG_ENONCE, "replay");
}

Test(e2e, tampered_frame_or_wrong_key_fails_the_mac, .init = load_kk_keys)
{
    json_t *v = vec_load("stream.json");
    size_t flen = 0;
    uint8_t *framed = vec_hex(v, "kk.transport_frames.0.framed", &flen);
    for (size_t i = 2 + 8; i < flen; i++) { /* every ciphertext and tag byte */
        framed[i] ^= 0x01;
        dmsg_e2e_reader r;
        reader_for(&r, key_a);
        cr_assert_eq(feed_once(&r, framed, flen), DMSG_EMAC, "byte %zu", i);
        framed[i] ^= 0x01;
    }
    dmsg_e2e_reader r;
    reader_for(&r, key_b); /* the other direction's key */
    cr_assert_eq(feed_once(&r, framed, flen), DMSG_EMAC);
    /* Errors are permanent, as the reference's read fails for good. */
    cr_assert_eq(feed_once(&r, framed, flen), DMSG_EMAC);
    free(framed);
    json_decref(v);
}

Test(e2e, reader_requires_increasing_order, .init = load_kk_keys)
{
    dmsg_noise_rx rx;
    dmsg_noise_rx_init(&rx, key_a, DMSG_NOISE_ANY_ORDER);
    dmsg_e2e_reader r;
    cr_assert_eq(dmsg_e2e_reader_init(&r, &rx), DMSG_EINVAL);
}

/* ---------------------------------------------------------------------------------------------
 * Handshake inside the signed objects */

typedef struct fixed_rng {
    uint8_t bytes[32];
} fixed_rng;

static void fill_fixed(void *ctx, uint8_t *out, size_t len)
{
    fixed_rng *f = ctx;
    cr_assert(len <= sizeof f->bytes, "an ephemeral key is one 32-byte draw");
    memcpy(out, f->bytes, len);
}

typedef struct party {
    dmsg_pk pk;
    dmsg_sk sk;
} party;

static party load_party(json_t *v, const char *prefix)
{
    party p;
    char path[128];
    snprintf(path, sizeof path, "%s.public_key", prefix);
    vec_hex_exact(v, path, p.pk.b, sizeof p.pk.b);
    snprintf(path, sizeof path, "%s.secret_key", prefix);
    vec_hex_exact(v, path, p.sk.b, sizeof p.sk.b);
    return p;
}

static dmsg_rng rng_from(json_t *v, const char *path, fixed_rng *f)
{
    vec_hex_exact(v, path, f->bytes, sizeof f->bytes);
    return (dmsg_rng){.fill = fill_fixed, .ctx = f};
}

/* The request of stream.json, built by us: identical gob, our own (RFC6979) signature. */
Test(e2e_handshake, dialer_request_matches_the_vector, .init = load_kk_keys)
{
    json_t *v = vec_load("stream.json");
    party a = load_party(v, "kk.initiator_static"), b = load_party(v, "kk.responder_static");
    fixed_rng f;
    dmsg_rng rng = rng_from(v, "kk.initiator_ephemeral.secret_key", &f);
    json_t *fields = vec_get(v, "stream_request.fields");
    dmsg_addr src = {.pk = a.pk,
                     .port = (uint16_t)json_integer_value(vec_get(fields, "SrcAddr.Port"))};
    dmsg_addr dst = {.pk = b.pk,
                     .port = (uint16_t)json_integer_value(vec_get(fields, "DstAddr.Port"))};
    cr_assert_eq(src.port, 49153);
    static dmsg_e2e_dialer d;
    cr_assert_eq(dmsg_e2e_dial_begin(&d, &src, &a.sk, &dst, 1700000000000000000LL, &rng), 0);
    size_t gob_len = 0;
    uint8_t *gob = vec_hex(v, "stream_request.gob", &gob_len);
    cr_assert_eq(d.obj_len, DMSG_SIG_LEN + gob_len);
    cr_assert_arr_eq(d.obj + DMSG_SIG_LEN, gob, gob_len, "gob bytes differ from Go's");
    dmsg_sig sig;
    memcpy(sig.b, d.obj, DMSG_SIG_LEN);
    cr_assert_eq(dmsg_verify(&a.pk, &sig, gob, gob_len), 0);
    /* The listener's check accepts it and sees the vector's noise message 1. */
    dmsg_stream_request req;
    uint16_t code = 0;
    cr_assert_eq(dmsg_e2e_request_check(&req, d.obj, d.obj_len, &b.pk, &code), 0);
    size_t m1_len = 0;
    uint8_t *m1 = vec_hex(v, "kk.messages.0.noise_message", &m1_len);
    cr_assert_eq(req.noise_msg.len, m1_len);
    cr_assert_arr_eq(req.noise_msg.ptr, m1, m1_len);
    dmsg_e2e_dialer_wipe(&d);
    free(gob);
    free(m1);
    json_decref(v);
}

/* The listener answers the vector's request with the vector's response (same gob), and the KK
 * keys are the vector's. */
Test(e2e_handshake, listener_response_matches_the_vector, .init = load_kk_keys)
{
    json_t *v = vec_load("stream.json");
    party a = load_party(v, "kk.initiator_static"), b = load_party(v, "kk.responder_static");
    fixed_rng f;
    dmsg_rng rng = rng_from(v, "kk.responder_ephemeral.secret_key", &f);
    size_t obj_len = 0;
    uint8_t *obj = vec_hex(v, "stream_request.signed_object", &obj_len);
    dmsg_stream_request req;
    uint16_t code = 0;
    cr_assert_eq(dmsg_e2e_request_check(&req, obj, obj_len, &b.pk, &code), 0);
    cr_assert(dmsg_pk_equal(&req.src.pk, &a.pk));
    uint8_t resp[DMSG_E2E_OBJECT_MAX];
    size_t resp_len = 0;
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    cr_assert_eq(dmsg_e2e_accept(&req, &b.sk, &rng, resp, sizeof resp, &resp_len, &tx, &rx), 0);
    /* Gob type ids depend on what the encoding process sent before (the vector's process had
     * encoded the request first), so compare the decoded fields, not the bytes. */
    dmsg_stream_response got;
    cr_assert_eq(dmsg_stream_response_parse(&got, resp, resp_len, &code), 0);
    cr_assert_eq(dmsg_stream_response_verify(&got, &req, &code), 0, "code %u", code);
    size_t hash_len = 0, m2_len = 0;
    uint8_t *hash = vec_hex(v, "stream_response.fields.ReqHash", &hash_len);
    uint8_t *m2 = vec_hex(v, "stream_response.fields.NoiseMsg", &m2_len);
    cr_assert_arr_eq(got.req_hash, hash, hash_len);
    cr_assert(got.accepted);
    cr_assert_eq(got.err_code, 0);
    cr_assert_eq(got.noise_msg.len, m2_len);
    cr_assert_arr_eq(got.noise_msg.ptr, m2, m2_len, "KK message 2 differs from the vector");
    cr_assert_arr_eq(tx.key, key_b, sizeof key_b, "the listener sends with k2");
    cr_assert_arr_eq(rx.key, key_a, sizeof key_a);
    cr_assert_eq(rx.order, DMSG_NOISE_INCREASING);
    free(hash);
    free(m2);
    free(obj);
    json_decref(v);
}

/* Our dialer state for the vector's exact request (Go's signature), so that the vector's
 * response (whose ReqHash covers that signature) applies to it. */
static void dialer_for_vector(dmsg_e2e_dialer *d, json_t *v)
{
    party a = load_party(v, "kk.initiator_static"), b = load_party(v, "kk.responder_static");
    fixed_rng f;
    dmsg_rng rng = rng_from(v, "kk.initiator_ephemeral.secret_key", &f);
    memset(d, 0, sizeof *d);
    cr_assert_eq(dmsg_noise_hs_init(&d->hs, DMSG_NOISE_KK, DMSG_NOISE_INITIATOR, &a.sk, &b.pk,
                                    &rng), 0);
    uint8_t m1[DMSG_NOISE_HS_MSG_MAX];
    size_t m1_len = 0;
    cr_assert_eq(dmsg_noise_hs_write(&d->hs, m1, sizeof m1, &m1_len), 0);
    size_t len = 0;
    uint8_t *obj = vec_hex(v, "stream_request.signed_object", &len);
    cr_assert(len <= sizeof d->obj);
    memcpy(d->obj, obj, len);
    d->obj_len = len;
    uint16_t code = 0;
    cr_assert_eq(dmsg_stream_request_parse(&d->req, d->obj, d->obj_len, &code), 0);
    free(obj);
}

Test(e2e_handshake, dialer_accepts_the_vector_response, .init = load_kk_keys)
{
    json_t *v = vec_load("stream.json");
    static dmsg_e2e_dialer d;
    dialer_for_vector(&d, v);
    size_t len = 0;
    uint8_t *resp = vec_hex(v, "stream_response.signed_object", &len);
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    uint16_t code = 1;
    cr_assert_eq(dmsg_e2e_dial_finish(&d, resp, len, &tx, &rx, &code), 0);
    cr_assert_eq(code, 0);
    cr_assert_arr_eq(tx.key, key_a, sizeof key_a, "the dialer sends with k1");
    cr_assert_arr_eq(rx.key, key_b, sizeof key_b);
    /* The first data frame of each direction, through the keys we derived. */
    size_t flen = 0;
    uint8_t *frame = vec_hex(v, "kk.transport_frames.1.framed", &flen);
    dmsg_e2e_reader r;
    cr_assert_eq(dmsg_e2e_reader_init(&r, &rx), 0);
    cr_assert_eq(feed_once(&r, frame, flen), 0);
    free(frame);
    free(resp);
    json_decref(v);
}

Test(e2e_handshake, refusal_is_reported_with_its_code, .init = load_kk_keys)
{
    json_t *v = vec_load("stream.json");
    party b = load_party(v, "kk.responder_static");
    static dmsg_e2e_dialer d;
    dialer_for_vector(&d, v);
    uint8_t resp[DMSG_E2E_OBJECT_MAX];
    size_t resp_len = 0;
    cr_assert_eq(dmsg_e2e_refuse(&d.req, &b.sk, DMSG_WIRE_REQ_NO_LISTENER, resp, sizeof resp,
                                 &resp_len), 0);
    /* The fields of the reference's rejected_response_example (made for this very request). */
    dmsg_stream_response got;
    uint16_t pcode = 0;
    cr_assert_eq(dmsg_stream_response_parse(&got, resp, resp_len, &pcode), 0);
    size_t hash_len = 0;
    uint8_t *hash = vec_hex(v, "rejected_response_example.fields.ReqHash", &hash_len);
    cr_assert_arr_eq(got.req_hash, hash, hash_len);
    cr_assert_not(got.accepted);
    cr_assert_eq(got.err_code,
                 json_integer_value(vec_get(v, "rejected_response_example.fields.ErrCode")));
    cr_assert_eq(got.noise_msg.len, 0);
    free(hash);
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    uint16_t code = 0;
    cr_assert_eq(dmsg_e2e_dial_finish(&d, resp, resp_len, &tx, &rx, &code), DMSG_EWIRE);
    cr_assert_eq(code, 306);
    /* And the reference's own refusal object. */
    dialer_for_vector(&d, v);
    size_t len = 0;
    uint8_t *go_resp = vec_hex(v, "rejected_response_example.signed_object", &len);
    code = 0;
    cr_assert_eq(dmsg_e2e_dial_finish(&d, go_resp, len, &tx, &rx, &code), DMSG_EWIRE);
    cr_assert_eq(code, 306);
    /* A code the reference does not register reads as 352. */
    dialer_for_vector(&d, v);
    cr_assert_eq(dmsg_e2e_refuse(&d.req, &b.sk, 999, resp, sizeof resp, &resp_len), 0);
    cr_assert_eq(dmsg_e2e_dial_finish(&d, resp, resp_len, &tx, &rx, &code), DMSG_EWIRE);
    cr_assert_eq(code, 352);
    cr_assert_eq(dmsg_e2e_refuse(&d.req, &b.sk, 0, resp, sizeof resp, &resp_len), DMSG_EINVAL);
    free(go_resp);
    json_decref(v);
}

Test(e2e_handshake, bad_responses_are_refused, .init = load_kk_keys)
{
    json_t *v = vec_load("stream.json");
    party a = load_party(v, "kk.initiator_static"), b = load_party(v, "kk.responder_static");
    static dmsg_e2e_dialer d;
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    uint16_t code = 0;
    size_t len = 0;
    uint8_t *good = vec_hex(v, "stream_response.signed_object", &len);

    /* Signed by somebody other than the destination: 350. */
    dialer_for_vector(&d, v);
    dmsg_stream_response resp;
    cr_assert_eq(dmsg_stream_response_parse(&resp, good, len, &code), 0);
    uint8_t out[DMSG_E2E_OBJECT_MAX];
    size_t out_len = 0;
    cr_assert_eq(dmsg_stream_response_make(&resp, &a.sk, out, sizeof out, &out_len), 0);
    cr_assert_eq(dmsg_e2e_dial_finish(&d, out, out_len, &tx, &rx, &code), DMSG_EWIRE);
    cr_assert_eq(code, 350);

    /* ReqHash of another request: 351. */
    dialer_for_vector(&d, v);
    cr_assert_eq(dmsg_stream_response_parse(&resp, good, len, &code), 0);
    resp.req_hash[0] ^= 1;
    cr_assert_eq(dmsg_stream_response_make(&resp, &b.sk, out, sizeof out, &out_len), 0);
    cr_assert_eq(dmsg_e2e_dial_finish(&d, out, out_len, &tx, &rx, &code), DMSG_EWIRE);
    cr_assert_eq(code, 351);

    /* Not longer than a signature: 370. */
    dialer_for_vector(&d, v);
    cr_assert_eq(dmsg_e2e_dial_finish(&d, good, DMSG_SIG_LEN, &tx, &rx, &code), DMSG_EWIRE);
    cr_assert_eq(code, 370);

    /* Properly signed but carrying a corrupt KK message 2: a noise error, no wire code. */
    dialer_for_vector(&d, v);
    cr_assert_eq(dmsg_stream_response_parse(&resp, good, len, &code), 0);
    uint8_t m2[64];
    cr_assert(resp.noise_msg.len <= sizeof m2);
    memcpy(m2, resp.noise_msg.ptr, resp.noise_msg.len);
    m2[resp.noise_msg.len - 1] ^= 1; /* the tag */
    resp.noise_msg.ptr = m2;
    cr_assert_eq(dmsg_stream_response_make(&resp, &b.sk, out, sizeof out, &out_len), 0);
    cr_assert_eq(dmsg_e2e_dial_finish(&d, out, out_len, &tx, &rx, &code), DMSG_EMAC);
    cr_assert_eq(code, 0);
    free(good);
    json_decref(v);
}

Test(e2e_handshake, listener_refuses_requests_not_for_it, .init = load_kk_keys)
{
    json_t *v = vec_load("stream.json");
    party a = load_party(v, "kk.initiator_static");
    size_t len = 0;
    uint8_t *obj = vec_hex(v, "stream_request.signed_object", &len);
    dmsg_stream_request req;
    uint16_t code = 0;
    cr_assert_eq(dmsg_e2e_request_check(&req, obj, len, &a.pk, &code), DMSG_EWIRE);
    cr_assert_eq(code, 303, "DstAddr.PK is not ours");
    obj[3] ^= 1; /* inside the signature's r */
    party b = load_party(v, "kk.responder_static");
    cr_assert_eq(dmsg_e2e_request_check(&req, obj, len, &b.pk, &code), DMSG_EWIRE);
    cr_assert_eq(code, 300);
    free(obj);
    json_decref(v);
}

/* Our dialer and our listener agree on keys and carry data both ways. */
Test(e2e_handshake, our_dialer_and_listener_round_trip, .init = load_kk_keys)
{
    dmsg_rng rng = dmsg_rng_system();
    party a, b;
    cr_assert_eq(dmsg_keypair_generate(&a.pk, &a.sk, &rng), 0);
    cr_assert_eq(dmsg_keypair_generate(&b.pk, &b.sk, &rng), 0);
    dmsg_addr src = {.pk = a.pk, .port = 49153}, dst = {.pk = b.pk, .port = 22};
    static dmsg_e2e_dialer d;
    cr_assert_eq(dmsg_e2e_dial_begin(&d, &src, &a.sk, &dst, 1, &rng), 0);
    dmsg_stream_request req;
    uint16_t code = 0;
    cr_assert_eq(dmsg_e2e_request_check(&req, d.obj, d.obj_len, &b.pk, &code), 0);
    uint8_t resp[DMSG_E2E_OBJECT_MAX];
    size_t resp_len = 0;
    dmsg_noise_tx btx, atx;
    dmsg_noise_rx brx, arx;
    cr_assert_eq(dmsg_e2e_accept(&req, &b.sk, &rng, resp, sizeof resp, &resp_len, &btx, &brx),
                 0);
    cr_assert_eq(dmsg_e2e_dial_finish(&d, resp, resp_len, &atx, &arx, &code), 0);
    cr_assert_arr_eq(atx.key, brx.key, DMSG_NOISE_KEY_LEN);
    cr_assert_arr_eq(btx.key, arx.key, DMSG_NOISE_KEY_LEN);
    cr_assert_eq(dmsg_e2e_dial_begin(&d, &src, &a.sk, &(dmsg_addr){.pk = b.pk}, 1, &rng),
                 DMSG_EINVAL, "port 0 is never sent");
}
