/* Noise XK/KK handshakes, dmsg transport sealing/opening and the frame parser, against the Go
 * reference's vectors (noise_xk.json, stream.json) and the rules of spec §3 and §7. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/noise.h"
#include "vectors.h"

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

TestSuite(noise, .init = setup);

/* ---- helpers ------------------------------------------------------------------------------ */

#define assert_bytes(got, want, n, what)                                                       \
    do {                                                                                       \
        if (memcmp((got), (want), (n)) != 0) {                                                 \
            char *g_ = vec_to_hex((got), (n)), *w_ = vec_to_hex((want), (n));                  \
            cr_assert_fail("%s differs:\n got  %s\n want %s", (what), g_, w_);                 \
        }                                                                                      \
    } while (0)

static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static const char *fmt(const char *f, ...)
{
    static char buf[4][256];
    static int slot;
    char *out = buf[slot++ % 4];
    va_list ap;
    va_start(ap, f);
    vsnprintf(out, sizeof buf[0], f, ap);
    va_end(ap);
    return out;
}

static const char *str_at(json_t *root, const char *path)
{
    json_t *v = vec_get(root, path);
    cr_assert(json_is_string(v), "no string at %s", path);
    return json_string_value(v);
}

/* A randomness source that hands out one fixed secret key: replays a vector's ephemeral. */
typedef struct fixed_rng {
    uint8_t bytes[DMSG_SK_LEN];
    int calls;
} fixed_rng;

static void fixed_fill(void *ctx, uint8_t *out, size_t len)
{
    fixed_rng *f = ctx;
    cr_assert_eq(len, sizeof f->bytes);
    memcpy(out, f->bytes, len);
    f->calls++;
}

static dmsg_rng rng_of(fixed_rng *f)
{
    return (dmsg_rng){ .fill = fixed_fill, .ctx = f };
}

static dmsg_rng sys_rng(void)
{
    return dmsg_rng_system();
}

static void random_keypair(dmsg_sk *sk, dmsg_pk *pk)
{
    dmsg_rng r = sys_rng();
    cr_assert_eq(dmsg_keypair_generate(pk, sk, &r), 0);
}

static void sk_at(json_t *root, const char *path, dmsg_sk *sk)
{
    vec_hex_exact(root, path, sk->b, DMSG_SK_LEN);
}

static void pk_at(json_t *root, const char *path, dmsg_pk *pk)
{
    vec_hex_exact(root, path, pk->b, DMSG_PK_LEN);
}

static void check_symmetric(const dmsg_noise_hs *hs, json_t *v, const char *path)
{
    uint8_t want[32], got[32];
    vec_hex_exact(v, fmt("%s.ck", path), want, 32);
    dmsg_noise_hs_chaining_key(hs, got);
    assert_bytes(got, want, 32, fmt("ck (%s)", path));
    vec_hex_exact(v, fmt("%s.h", path), want, 32);
    dmsg_noise_hs_hash(hs, got);
    assert_bytes(got, want, 32, fmt("h (%s)", path));
}

/* Pulls exactly one frame out of a whole buffer (used for framed handshake messages). */
static void unframe(uint8_t *in, size_t len, size_t max, uint8_t **body, size_t *body_len)
{
    static uint8_t buf[DMSG_NOISE_OBJECT_FRAME_MAX];
    dmsg_noise_framer fr;
    cr_assert_eq(dmsg_noise_framer_init(&fr, max, buf, sizeof buf), 0);
    size_t used;
    cr_assert_eq(dmsg_noise_framer_next(&fr, in, len, &used, body, body_len), 0);
    cr_assert_eq(used, len, "frame of %zu bytes used %zu", len, used);
    cr_assert(*body >= in && *body + *body_len <= in + len, "a whole frame must not be copied");
}

/* ---- replay of a vector handshake in one role --------------------------------------------- */

typedef struct replay_opts {
    dmsg_noise_pattern pattern;
    dmsg_noise_role role;
    bool framed;
} replay_opts;

static void replay_transport(json_t *hv, const replay_opts *o, dmsg_noise_tx *tx,
                             dmsg_noise_rx *rx)
{
    const char *out_dir = o->role == DMSG_NOISE_INITIATOR ? "initiator->responder"
                                                          : "responder->initiator";
    json_t *frames = vec_get(hv, "transport_frames");
    for (size_t i = 0; i < json_array_size(frames); i++) {
        json_t *f = json_array_get(frames, i);
        size_t pt_len, body_len, framed_len;
        uint8_t *pt = vec_hex(f, "plaintext", &pt_len);
        uint8_t *body = vec_hex(f, "nonce_and_ciphertext", &body_len);
        uint8_t *framed = vec_hex(f, "framed", &framed_len);
        uint64_t nonce = (uint64_t)json_integer_value(vec_get(f, "nonce"));
        if (strcmp(str_at(f, "direction"), out_dir) == 0) {
            uint8_t out[512];
            size_t out_len;
            if (o->framed) {
                cr_assert_eq(dmsg_noise_seal_framed(tx, pt, pt_len, out, sizeof out, &out_len), 0);
                cr_assert_eq(out_len, framed_len);
                assert_bytes(out, framed, framed_len, fmt("sealed frame %zu", i));
            } else {
                cr_assert_eq(dmsg_noise_seal(tx, pt, pt_len, out, sizeof out, &out_len), 0);
                cr_assert_eq(out_len, body_len);
                assert_bytes(out, body, body_len, fmt("sealed body %zu", i));
            }
            cr_assert_eq(tx->counter, nonce);
        } else {
            uint8_t *copy = malloc(body_len), *got;
            size_t got_len;
            memcpy(copy, body, body_len);
            cr_assert_eq(dmsg_noise_open(rx, copy, body_len, &got, &got_len), 0, "frame %zu", i);
            cr_assert_eq(got_len, pt_len);
            assert_bytes(got, pt, pt_len, fmt("opened frame %zu", i));
            /* Session objects refuse a repeated nonce, stream data any non-increasing one. */
            memcpy(copy, body, body_len);
            int again = dmsg_noise_open(rx, copy, body_len, &got, &got_len);
            cr_assert_eq(again, o->pattern == DMSG_NOISE_XK ? DMSG_EREPLAY : DMSG_ENONCE);
            free(copy);
        }
        free(pt);
        free(body);
        free(framed);
    }
}

static void replay_handshake(json_t *hv, const replay_opts *o)
{
    bool initiator = o->role == DMSG_NOISE_INITIATOR;
    const char *me = initiator ? "initiator" : "responder";
    const char *peer = initiator ? "responder" : "initiator";
    dmsg_sk s_sk;
    dmsg_pk rs;
    fixed_rng eph = { 0 };
    sk_at(hv, fmt("%s_static.secret_key", me), &s_sk);
    pk_at(hv, fmt("%s_static.public_key", peer), &rs);
    vec_hex_exact(hv, fmt("%s_ephemeral.secret_key", me), eph.bytes, DMSG_SK_LEN);
    dmsg_rng rng = rng_of(&eph);
    bool knows_rs = o->pattern == DMSG_NOISE_KK || initiator;

    dmsg_noise_hs hs;
    cr_assert_eq(dmsg_noise_hs_init(&hs, o->pattern, o->role, &s_sk, knows_rs ? &rs : NULL, &rng),
                 0);
    cr_assert_eq(eph.calls, 1);
    check_symmetric(&hs, hv, "symmetric_state_after_premessages");
    uint8_t h0[32], ck[32];
    vec_hex_exact(hv, "h0_sha256_protocol_name", h0, 32);
    dmsg_noise_hs_chaining_key(&hs, ck);
    assert_bytes(ck, h0, 32, "ck0 = SHA256(protocol name)");

    const char *my_label = str_at(hv, me);
    json_t *msgs = vec_get(hv, "messages");
    cr_assert(json_array_size(msgs) > 0);
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        size_t raw_len, framed_len;
        uint8_t *raw = vec_hex(m, "noise_message", &raw_len);
        uint8_t *framed = vec_hex(m, "tcp_framed", &framed_len);
        if (strcmp(str_at(m, "sender"), my_label) == 0) {
            cr_assert_eq(dmsg_noise_hs_next(&hs), DMSG_NOISE_STEP_WRITE, "message %zu", i + 1);
            uint8_t out[DMSG_NOISE_HS_MSG_MAX + DMSG_NOISE_LEN_PREFIX];
            size_t out_len;
            if (o->framed) {
                cr_assert_eq(dmsg_noise_hs_write_framed(&hs, out, sizeof out, &out_len), 0);
                cr_assert_eq(out_len, framed_len);
                assert_bytes(out, framed, framed_len, fmt("framed message %zu", i + 1));
            } else {
                cr_assert_eq(dmsg_noise_hs_write(&hs, out, sizeof out, &out_len), 0);
                cr_assert_eq(out_len, raw_len);
                assert_bytes(out, raw, raw_len, fmt("message %zu", i + 1));
            }
        } else {
            cr_assert_eq(dmsg_noise_hs_next(&hs), DMSG_NOISE_STEP_READ, "message %zu", i + 1);
            uint8_t *body = raw;
            size_t body_len = raw_len;
            if (o->framed)
                unframe(framed, framed_len, DMSG_NOISE_FRAME_MAX, &body, &body_len);
            cr_assert_eq(dmsg_noise_hs_read(&hs, body, body_len), 0, "message %zu", i + 1);
        }
        check_symmetric(&hs, m, "symmetric_state_after");
        free(raw);
        free(framed);
    }
    cr_assert_eq(dmsg_noise_hs_next(&hs), DMSG_NOISE_STEP_SPLIT);

    dmsg_pk got_rs;
    cr_assert_eq(dmsg_noise_hs_remote_static(&hs, &got_rs), 0);
    assert_bytes(got_rs.b, rs.b, DMSG_PK_LEN, "remote static");
    uint8_t want_hash[32], hash[32];
    vec_hex_exact(hv, "handshake_hash", want_hash, 32);

    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    cr_assert_eq(dmsg_noise_hs_split(&hs, &tx, &rx), 0);
    cr_assert_eq(dmsg_noise_hs_next(&hs), DMSG_NOISE_STEP_DONE);
    dmsg_noise_hs_hash(&hs, hash);
    assert_bytes(hash, want_hash, 32, "handshake hash after split");
    uint8_t want_tx[32], want_rx[32];
    vec_hex_exact(hv, fmt("%s_send_key", me), want_tx, 32);
    vec_hex_exact(hv, fmt("%s_send_key", peer), want_rx, 32);
    assert_bytes(tx.key, want_tx, 32, "send key");
    assert_bytes(rx.key, want_rx, 32, "receive key");
    /* The assignment itself (spec §3.4): XK swapped, KK standard. */
    uint8_t k1[32], k2[32];
    vec_hex_exact(hv, "split_k1", k1, 32);
    vec_hex_exact(hv, "split_k2", k2, 32);
    bool sends_k2 = (o->pattern == DMSG_NOISE_XK) == initiator;
    assert_bytes(tx.key, sends_k2 ? k2 : k1, 32, "send key is the right split half");
    assert_bytes(rx.key, sends_k2 ? k1 : k2, 32, "receive key is the right split half");
    cr_assert_eq(dmsg_noise_hs_remote_static(&hs, &got_rs), 0, "remote static kept after split");
    assert_bytes(got_rs.b, rs.b, DMSG_PK_LEN, "remote static after split");

    replay_transport(hv, o, &tx, &rx);
    dmsg_noise_tx_wipe(&tx);
    dmsg_noise_rx_wipe(&rx);
    dmsg_noise_hs_wipe(&hs);
}

static void replay_all_roles(json_t *hv, dmsg_noise_pattern pattern)
{
    for (int role = 0; role < 2; role++)
        for (int framed = 0; framed < 2; framed++) {
            replay_opts o = { pattern, (dmsg_noise_role)role, framed != 0 };
            replay_handshake(hv, &o);
        }
}

Test(noise, xk_vectors_every_session_both_roles)
{
    json_t *v = vec_load("noise_xk.json");
    json_t *sessions = vec_get(v, "sessions");
    cr_assert(json_array_size(sessions) >= 2);
    for (size_t i = 0; i < json_array_size(sessions); i++) {
        json_t *s = json_array_get(sessions, i);
        cr_assert_str_eq(str_at(s, "pattern"), "XK");
        replay_all_roles(s, DMSG_NOISE_XK);
    }
    json_decref(v);
}

Test(noise, kk_vector_both_roles)
{
    json_t *v = vec_load("stream.json");
    json_t *kk = vec_get(v, "kk");
    cr_assert_str_eq(str_at(kk, "pattern"), "KK");
    replay_all_roles(kk, DMSG_NOISE_KK);
    json_decref(v);
}

/* ---- stream.json: session objects and relayed end-to-end frames on the wire ---------------- */

static const char *const wire_sides[] = { "wire_session_a", "wire_session_b" };
static const char *const wire_dirs[] = { "client_to_server_yamux", "server_to_client_yamux" };

static void check_wire_frame(json_t *v, json_t *frame)
{
    json_t *dec = vec_get(frame, "decoded");
    const char *key_label = str_at(dec, "key_used");
    uint8_t key[32];
    vec_hex_exact(v, fmt("keys.%s", key_label), key, 32);
    bool stream_data = strncmp(key_label, "kk_", 3) == 0;
    size_t body_len, pt_len;
    uint8_t *body = vec_hex(frame, "body", &body_len);
    uint8_t *want = vec_hex(dec, "plaintext", &pt_len);
    uint64_t nonce = (uint64_t)json_integer_value(vec_get(dec, "nonce"));

    /* The yamux data body is exactly one length-prefixed frame. */
    uint8_t *inner;
    size_t inner_len;
    unframe(body, body_len, stream_data ? DMSG_NOISE_FRAME_MAX : DMSG_NOISE_OBJECT_FRAME_MAX,
            &inner, &inner_len);
    cr_assert_eq(inner_len, (size_t)json_integer_value(vec_get(dec, "length_prefix")));

    dmsg_noise_rx rx;
    dmsg_noise_rx_init(&rx, key, stream_data ? DMSG_NOISE_INCREASING : DMSG_NOISE_ANY_ORDER);
    uint8_t *pt = malloc(inner_len);
    size_t got_len;
    cr_assert_eq(dmsg_noise_open_to(&rx, inner, inner_len, pt, inner_len, &got_len), 0,
                 "%s frame", key_label);
    cr_assert_eq(got_len, pt_len);
    assert_bytes(pt, want, pt_len, fmt("%s plaintext", key_label));

    /* Sealing the plaintext again with the sender's key and counter gives the wire bytes. */
    dmsg_noise_tx tx;
    dmsg_noise_tx_init(&tx, key);
    uint8_t *out = malloc(body_len);
    size_t out_len;
    for (uint64_t n = 1; n < nonce; n++)
        cr_assert_eq(dmsg_noise_seal(&tx, NULL, 0, out, body_len, &out_len), 0);
    cr_assert_eq(dmsg_noise_seal_framed(&tx, want, pt_len, out, body_len, &out_len), 0);
    cr_assert_eq(out_len, body_len);
    assert_bytes(out, body, body_len, fmt("%s resealed", key_label));
    free(out);
    free(pt);
    free(body);
    free(want);
}

Test(noise, stream_wire_frames_open_and_reseal)
{
    json_t *v = vec_load("stream.json");
    int checked = 0;
    for (int s = 0; s < 2; s++)
        for (int d = 0; d < 2; d++) {
            json_t *frames = vec_get(v, fmt("%s.%s", wire_sides[s], wire_dirs[d]));
            cr_assert(json_is_array(frames));
            for (size_t i = 0; i < json_array_size(frames); i++) {
                json_t *f = json_array_get(frames, i);
                if (vec_get(f, "decoded")) {
                    check_wire_frame(v, f);
                    checked++;
                }
            }
        }
    cr_assert(checked >= 8, "only %d frames", checked);
    json_decref(v);
}

/* The session keys of stream.json are the ones our handshake derives from noise_xk.json. */
Test(noise, stream_session_keys_match_handshakes)
{
    json_t *xk = vec_load("noise_xk.json"), *st = vec_load("stream.json");
    const char *names[] = { "A", "B" };
    for (int i = 0; i < 2; i++) {
        json_t *s = vec_get(xk, fmt("sessions.%d", i));
        dmsg_sk c_sk, srv_sk;
        dmsg_pk srv_pk;
        fixed_rng ce = { 0 }, se = { 0 };
        sk_at(s, "initiator_static.secret_key", &c_sk);
        sk_at(s, "responder_static.secret_key", &srv_sk);
        pk_at(s, "responder_static.public_key", &srv_pk);
        vec_hex_exact(s, "initiator_ephemeral.secret_key", ce.bytes, 32);
        vec_hex_exact(s, "responder_ephemeral.secret_key", se.bytes, 32);
        dmsg_rng cr = rng_of(&ce), sr = rng_of(&se);
        dmsg_noise_hs c, srv;
        cr_assert_eq(dmsg_noise_hs_init(&c, DMSG_NOISE_XK, DMSG_NOISE_INITIATOR, &c_sk, &srv_pk,
                                        &cr), 0);
        cr_assert_eq(dmsg_noise_hs_init(&srv, DMSG_NOISE_XK, DMSG_NOISE_RESPONDER, &srv_sk, NULL,
                                        &sr), 0);
        uint8_t msg[DMSG_NOISE_HS_MSG_MAX];
        size_t len;
        for (int m = 0; m < 3; m++) {
            dmsg_noise_hs *w = m % 2 ? &srv : &c, *r = m % 2 ? &c : &srv;
            cr_assert_eq(dmsg_noise_hs_write(w, msg, sizeof msg, &len), 0);
            cr_assert_eq(dmsg_noise_hs_read(r, msg, len), 0);
        }
        dmsg_noise_tx ctx, stx;
        dmsg_noise_rx crx, srx;
        cr_assert_eq(dmsg_noise_hs_split(&c, &ctx, &crx), 0);
        cr_assert_eq(dmsg_noise_hs_split(&srv, &stx, &srx), 0);
        uint8_t want[32];
        vec_hex_exact(st, fmt("keys.session_%s_client_send_key", names[i]), want, 32);
        assert_bytes(ctx.key, want, 32, "client send key");
        assert_bytes(srx.key, want, 32, "server receive key");
        vec_hex_exact(st, fmt("keys.session_%s_server_send_key", names[i]), want, 32);
        assert_bytes(stx.key, want, 32, "server send key");
        assert_bytes(crx.key, want, 32, "client receive key");
    }
    json_decref(xk);
    json_decref(st);
}

/* Server side of session A: message 3 arrives in the same read as the first yamux bytes, split
 * at every byte. The framer must stop after message 3 and leave the yamux bytes (spec §3.7). */
Test(noise, surplus_after_message3_left_for_yamux)
{
    json_t *v = vec_load("stream.json"), *xk = vec_load("noise_xk.json");
    size_t m1_len, m3_len;
    uint8_t *m1 = vec_hex(v, "wire_session_a.client_to_server_handshake.0", &m1_len);
    uint8_t *m3 = vec_hex(v, "wire_session_a.client_to_server_handshake.1", &m3_len);
    uint8_t yamux[1024];
    size_t yamux_len = 0;
    json_t *frames = vec_get(v, "wire_session_a.client_to_server_yamux");
    for (size_t i = 0; i < json_array_size(frames); i++) {
        json_t *f = json_array_get(frames, i);
        yamux_len += (size_t)vec_hex_decode(str_at(f, "header"), yamux + yamux_len,
                                            sizeof yamux - yamux_len);
        if (vec_get(f, "body"))
            yamux_len += (size_t)vec_hex_decode(str_at(f, "body"), yamux + yamux_len,
                                                sizeof yamux - yamux_len);
    }
    uint8_t stream[1200];
    memcpy(stream, m3, m3_len);
    memcpy(stream + m3_len, yamux, yamux_len);
    size_t total = m3_len + yamux_len;

    dmsg_sk srv_sk;
    fixed_rng se = { 0 };
    sk_at(xk, "sessions.0.responder_static.secret_key", &srv_sk);
    vec_hex_exact(xk, "sessions.0.responder_ephemeral.secret_key", se.bytes, 32);
    for (size_t split = 0; split <= total; split++) {
        dmsg_rng r = rng_of(&se);
        dmsg_noise_hs hs;
        cr_assert_eq(dmsg_noise_hs_init(&hs, DMSG_NOISE_XK, DMSG_NOISE_RESPONDER, &srv_sk, NULL,
                                        &r), 0);
        uint8_t buf[DMSG_NOISE_FRAME_MAX], *body, out[80];
        size_t used, body_len, out_len;
        dmsg_noise_framer fr;
        cr_assert_eq(dmsg_noise_framer_init(&fr, DMSG_NOISE_FRAME_MAX, buf, sizeof buf), 0);
        cr_assert_eq(dmsg_noise_framer_next(&fr, m1, m1_len, &used, &body, &body_len), 0);
        cr_assert_eq(dmsg_noise_hs_read(&hs, body, body_len), 0);
        cr_assert_eq(dmsg_noise_hs_write_framed(&hs, out, sizeof out, &out_len), 0);

        uint8_t copy[1200];
        memcpy(copy, stream, total);
        size_t surplus_at = 0;
        int rc = dmsg_noise_framer_next(&fr, copy, split, &used, &body, &body_len);
        if (rc == DMSG_EAGAIN) {
            cr_assert_eq(used, split);
            rc = dmsg_noise_framer_next(&fr, copy + split, total - split, &used, &body, &body_len);
            surplus_at = split + used;
        } else {
            surplus_at = used;
        }
        cr_assert_eq(rc, 0, "split %zu", split);
        cr_assert_eq(surplus_at, m3_len, "split %zu", split);
        cr_assert_eq(dmsg_noise_hs_read(&hs, body, body_len), 0, "split %zu", split);
        cr_assert_eq(dmsg_noise_hs_next(&hs), DMSG_NOISE_STEP_SPLIT);
        assert_bytes(copy + surplus_at, yamux, yamux_len, "bytes left for yamux");
        dmsg_noise_hs_wipe(&hs);
    }
    free(m1);
    free(m3);
    json_decref(v);
    json_decref(xk);
}

/* ---- handshakes between our own two sides --------------------------------------------------- */

typedef struct peers {
    dmsg_noise_hs i, r;
    dmsg_noise_tx itx, rtx;
    dmsg_noise_rx irx, rrx;
} peers;

static void run_handshake(peers *p, dmsg_noise_pattern pattern, const dmsg_sk *i_sk,
                          const dmsg_pk *i_pk, const dmsg_sk *r_sk, const dmsg_pk *r_pk)
{
    dmsg_rng rng = sys_rng();
    cr_assert_eq(dmsg_noise_hs_init(&p->i, pattern, DMSG_NOISE_INITIATOR, i_sk, r_pk, &rng), 0);
    cr_assert_eq(dmsg_noise_hs_init(&p->r, pattern, DMSG_NOISE_RESPONDER, r_sk,
                                    pattern == DMSG_NOISE_KK ? i_pk : NULL, &rng), 0);
    int messages = 0;
    while (dmsg_noise_hs_next(&p->i) != DMSG_NOISE_STEP_SPLIT ||
           dmsg_noise_hs_next(&p->r) != DMSG_NOISE_STEP_SPLIT) {
        bool i_writes = dmsg_noise_hs_next(&p->i) == DMSG_NOISE_STEP_WRITE;
        dmsg_noise_hs *w = i_writes ? &p->i : &p->r, *r = i_writes ? &p->r : &p->i;
        cr_assert_eq(dmsg_noise_hs_next(r), DMSG_NOISE_STEP_READ);
        uint8_t msg[DMSG_NOISE_HS_MSG_MAX];
        size_t len;
        cr_assert_eq(dmsg_noise_hs_write(w, msg, sizeof msg, &len), 0);
        cr_assert_eq(dmsg_noise_hs_read(r, msg, len), 0);
        cr_assert(++messages <= 3);
    }
    cr_assert_eq(messages, pattern == DMSG_NOISE_XK ? 3 : 2);
    dmsg_pk got;
    cr_assert_eq(dmsg_noise_hs_remote_static(&p->r, &got), 0);
    cr_assert(dmsg_pk_equal(&got, i_pk));
    cr_assert_eq(dmsg_noise_hs_remote_static(&p->i, &got), 0);
    cr_assert(dmsg_pk_equal(&got, r_pk));
    uint8_t hi[32], hr[32];
    dmsg_noise_hs_hash(&p->i, hi);
    dmsg_noise_hs_hash(&p->r, hr);
    assert_bytes(hi, hr, 32, "both sides' handshake hash");
    cr_assert_eq(dmsg_noise_hs_split(&p->i, &p->itx, &p->irx), 0);
    cr_assert_eq(dmsg_noise_hs_split(&p->r, &p->rtx, &p->rrx), 0);
}

static void exchange(dmsg_noise_tx *tx, dmsg_noise_rx *rx, size_t len)
{
    uint8_t *pt = malloc(len + 1), *out = malloc(len + DMSG_NOISE_FRAMED_OVERHEAD), *got;
    randombytes_buf(pt, len);
    size_t out_len, got_len;
    cr_assert_eq(dmsg_noise_seal_framed(tx, pt, len, out, len + DMSG_NOISE_FRAMED_OVERHEAD,
                                        &out_len), 0);
    cr_assert_eq(out_len, len + DMSG_NOISE_FRAMED_OVERHEAD);
    cr_assert_eq((size_t)(out[0] << 8 | out[1]), len + DMSG_NOISE_OVERHEAD);
    cr_assert_eq(dmsg_noise_open(rx, out + 2, out_len - 2, &got, &got_len), 0);
    cr_assert_eq(got_len, len);
    assert_bytes(got, pt, len, "round trip");
    free(pt);
    free(out);
}

Test(noise, random_keys_both_patterns_interoperate)
{
    for (int round = 0; round < 8; round++) {
        dmsg_sk isk, rsk;
        dmsg_pk ipk, rpk;
        random_keypair(&isk, &ipk);
        random_keypair(&rsk, &rpk);
        for (int pat = 0; pat < 2; pat++) {
            peers p;
            run_handshake(&p, (dmsg_noise_pattern)pat, &isk, &ipk, &rsk, &rpk);
            for (size_t len = 0; len < 100; len += 33) {
                exchange(&p.itx, &p.rrx, len);
                exchange(&p.rtx, &p.irx, len);
            }
            cr_assert_neq(memcmp(p.itx.key, p.rtx.key, 32), 0, "directions use distinct keys");
        }
    }
}

/* ---- transport ---------------------------------------------------------------------------- */

static const uint8_t test_key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                      17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31 };

/* Independent construction of a frame body with any nonce (spec §3.5), straight from libsodium. */
static size_t make_body(uint64_t n, const uint8_t *pt, size_t len, uint8_t *out)
{
    uint8_t nonce[12] = { 0 };
    for (int i = 0; i < 8; i++) {
        nonce[4 + i] = (uint8_t)(n >> (8 * i));
        out[7 - i] = (uint8_t)(n >> (8 * i));
    }
    unsigned long long clen;
    crypto_aead_chacha20poly1305_ietf_encrypt(out + 8, &clen, pt, len, NULL, 0, NULL, nonce,
                                              test_key);
    return 8 + (size_t)clen;
}

static int open_nonce(dmsg_noise_rx *rx, uint64_t n)
{
    uint8_t body[64], *pt;
    size_t pt_len;
    size_t len = make_body(n, (const uint8_t *)"x", 1, body);
    int rc = dmsg_noise_open(rx, body, len, &pt, &pt_len);
    if (rc == 0)
        cr_assert(pt_len == 1 && pt[0] == 'x');
    return rc;
}

Test(noise, seal_matches_independent_construction)
{
    dmsg_noise_tx tx;
    dmsg_noise_tx_init(&tx, test_key);
    uint8_t pt[300], out[400], want[400];
    for (size_t i = 0; i < sizeof pt; i++)
        pt[i] = (uint8_t)(i * 7);
    for (uint64_t n = 1; n <= 5; n++) {
        size_t len = (size_t)n * 50, out_len;
        cr_assert_eq(dmsg_noise_seal(&tx, pt, len, out, sizeof out, &out_len), 0);
        size_t want_len = make_body(n, pt, len, want);
        cr_assert_eq(out_len, want_len);
        assert_bytes(out, want, want_len, "seal");
    }
}

Test(noise, seal_in_place_and_open_variants)
{
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    dmsg_noise_tx_init(&tx, test_key);
    dmsg_noise_rx_init(&rx, test_key, DMSG_NOISE_ANY_ORDER);
    uint8_t buf[DMSG_NOISE_FRAMED_OVERHEAD + 100], pt[100];
    randombytes_buf(pt, sizeof pt);
    size_t out_len;

    /* Framed, plaintext already where the ciphertext goes. */
    memcpy(buf + DMSG_NOISE_LEN_PREFIX + DMSG_NOISE_NONCE_LEN, pt, sizeof pt);
    cr_assert_eq(dmsg_noise_seal_framed(&tx, buf + DMSG_NOISE_LEN_PREFIX + DMSG_NOISE_NONCE_LEN,
                                        sizeof pt, buf, sizeof buf, &out_len), 0);
    cr_assert_eq(out_len, sizeof buf);
    uint8_t want[sizeof buf];
    cr_assert_eq(make_body(1, pt, sizeof pt, want), sizeof buf - 2);
    assert_bytes(buf + 2, want, sizeof buf - 2, "in-place framed seal");
    uint8_t out[sizeof pt];
    size_t got_len;
    cr_assert_eq(dmsg_noise_open_to(&rx, buf + 2, out_len - 2, out, sizeof out, &got_len), 0);
    assert_bytes(out, pt, sizeof pt, "open_to");
    assert_bytes(buf + 2, want, sizeof buf - 2, "open_to leaves the body alone");

    /* Unframed in place. */
    memcpy(buf + DMSG_NOISE_NONCE_LEN, pt, sizeof pt);
    cr_assert_eq(dmsg_noise_seal(&tx, buf + DMSG_NOISE_NONCE_LEN, sizeof pt, buf, sizeof buf,
                                 &out_len), 0);
    cr_assert_eq(make_body(2, pt, sizeof pt, want), out_len);
    assert_bytes(buf, want, out_len, "in-place seal");
    uint8_t *got;
    cr_assert_eq(dmsg_noise_open(&rx, buf, out_len, &got, &got_len), 0);
    cr_assert_eq(got, buf + DMSG_NOISE_NONCE_LEN);
    assert_bytes(got, pt, sizeof pt, "open in place");

    /* open_to with too small an output buffer is refused without consuming the nonce. */
    cr_assert_eq(make_body(3, pt, sizeof pt, want), out_len);
    cr_assert_eq(dmsg_noise_open_to(&rx, want, out_len, out, sizeof pt - 1, &got_len), DMSG_EINVAL);
    cr_assert_eq(dmsg_noise_open_to(&rx, want, out_len, out, sizeof pt, &got_len), 0);
}

Test(noise, seal_limits)
{
    dmsg_noise_tx tx;
    dmsg_noise_tx_init(&tx, test_key);
    static uint8_t pt[DMSG_NOISE_OBJECT_FRAME_MAX], out[DMSG_NOISE_OBJECT_FRAME_MAX + 2];
    size_t out_len;
    size_t max_pt = DMSG_NOISE_OBJECT_FRAME_MAX - DMSG_NOISE_OVERHEAD;
    cr_assert_eq(dmsg_noise_seal_framed(&tx, pt, max_pt, out, sizeof out, &out_len), 0);
    cr_assert_eq(out_len, DMSG_NOISE_OBJECT_FRAME_MAX + 2);
    cr_assert(out[0] == 0xff && out[1] == 0xff);
    cr_assert_eq(dmsg_noise_seal_framed(&tx, pt, max_pt + 1, out, sizeof out, &out_len),
                 DMSG_ETOOBIG);
    cr_assert_eq(dmsg_noise_seal_framed(&tx, pt, 10, out, 10 + 25, &out_len), DMSG_EINVAL);
    cr_assert_eq(dmsg_noise_seal(&tx, pt, 10, out, 10 + 23, &out_len), DMSG_EINVAL);
    cr_assert_eq(dmsg_noise_seal(&tx, pt, 0, out, 23, &out_len), DMSG_EINVAL);
    cr_assert_eq(tx.counter, 1, "refused seals use no nonce");
    tx.counter = UINT64_MAX;
    cr_assert_eq(dmsg_noise_seal(&tx, pt, 1, out, sizeof out, &out_len), DMSG_ELIMIT);
}

Test(noise, open_refuses_short_and_forged)
{
    dmsg_noise_rx rx;
    dmsg_noise_rx_init(&rx, test_key, DMSG_NOISE_ANY_ORDER);
    uint8_t body[64], *pt;
    size_t len = make_body(1, (const uint8_t *)"hello", 5, body), pt_len;
    for (size_t short_len = 0; short_len < DMSG_NOISE_OVERHEAD; short_len++)
        cr_assert_eq(dmsg_noise_open(&rx, body, short_len, &pt, &pt_len), DMSG_ESHORT);
    for (size_t i = 0; i < len; i++) {
        uint8_t bad[64];
        memcpy(bad, body, len);
        bad[i] ^= 0x40;
        int rc = dmsg_noise_open(&rx, bad, len, &pt, &pt_len);
        /* A flipped nonce byte gives another valid-looking nonce, so the tag fails too. */
        cr_assert_eq(rc, DMSG_EMAC, "byte %zu", i);
    }
    dmsg_noise_rx other;
    uint8_t wrong_key[32] = { 0 };
    dmsg_noise_rx_init(&other, wrong_key, DMSG_NOISE_ANY_ORDER);
    uint8_t copy[64];
    memcpy(copy, body, len);
    cr_assert_eq(dmsg_noise_open(&other, copy, len, &pt, &pt_len), DMSG_EMAC);
    cr_assert_eq(dmsg_noise_open(&rx, body, len, &pt, &pt_len), 0, "failures burn no nonce");
    cr_assert_eq(pt_len, 5);
    cr_assert(memcmp(pt, "hello", 5) == 0);
}

Test(noise, replay_window_rules)
{
    dmsg_noise_rx rx;
    dmsg_noise_rx_init(&rx, test_key, DMSG_NOISE_ANY_ORDER);
    cr_assert_eq(open_nonce(&rx, 0), DMSG_EREPLAY, "nonce 0 is never valid");
    cr_assert_eq(open_nonce(&rx, 5), 0);
    cr_assert_eq(open_nonce(&rx, 3), 0, "out of order accepted");
    cr_assert_eq(open_nonce(&rx, 3), DMSG_EREPLAY, "but only once");
    cr_assert_eq(open_nonce(&rx, 5), DMSG_EREPLAY);
    cr_assert_eq(open_nonce(&rx, 1), 0);
    cr_assert_eq(open_nonce(&rx, 4), 0);
    cr_assert_eq(open_nonce(&rx, 2000), 0, "gaps allowed");
    cr_assert_eq(open_nonce(&rx, 2000 - DMSG_NOISE_REPLAY_WINDOW), DMSG_EREPLAY, "too old");
    cr_assert_eq(open_nonce(&rx, 2000 - DMSG_NOISE_REPLAY_WINDOW + 1), 0, "oldest in window");
    cr_assert_eq(open_nonce(&rx, 2000 - DMSG_NOISE_REPLAY_WINDOW + 1), DMSG_EREPLAY);
    cr_assert_eq(open_nonce(&rx, 0), DMSG_EREPLAY);

    /* A forged frame far ahead must not slide the window. */
    uint8_t body[64], *pt;
    size_t len = make_body(1000000, (const uint8_t *)"x", 1, body), pt_len;
    body[len - 1] ^= 1;
    cr_assert_eq(dmsg_noise_open(&rx, body, len, &pt, &pt_len), DMSG_EMAC);
    cr_assert_eq(open_nonce(&rx, 1500), 0);
    cr_assert_eq(open_nonce(&rx, 1000000), 0, "big jump");
    cr_assert_eq(open_nonce(&rx, 1000000 - 1023), 0);
    cr_assert_eq(open_nonce(&rx, 1999), DMSG_EREPLAY);
    cr_assert_eq(open_nonce(&rx, UINT64_MAX), 0);
    cr_assert_eq(open_nonce(&rx, UINT64_MAX), DMSG_EREPLAY);
    cr_assert_eq(open_nonce(&rx, UINT64_MAX - 1023), 0);
    cr_assert_eq(open_nonce(&rx, UINT64_MAX - 1024), DMSG_EREPLAY);
}

/* The window against a plain model (a set of seen nonces) over a long random walk. */
Test(noise, replay_window_matches_model)
{
    enum { LIMIT = 60000 };
    static uint8_t seen[LIMIT];
    memset(seen, 0, sizeof seen);
    dmsg_noise_rx rx;
    dmsg_noise_rx_init(&rx, test_key, DMSG_NOISE_ANY_ORDER);
    uint64_t top = 0;
    uint32_t state = 12345;
    for (int i = 0; i < 20000; i++) {
        state = state * 1103515245u + 12345u;
        uint32_t r = state >> 8;
        uint64_t n;
        if (r % 10 == 0)
            n = top + 1 + r % 1500;           /* jump ahead, sometimes past a whole window */
        else
            n = top > 1100 ? top - 1100 + r % 1110 : r % 1110; /* around the window's edge */
        if (n >= LIMIT)
            break;
        bool ok = n != 0 && !seen[n] && (n > top || top - n < DMSG_NOISE_REPLAY_WINDOW);
        int rc = open_nonce(&rx, n);
        cr_assert_eq(rc, ok ? 0 : DMSG_EREPLAY, "step %d nonce %lu top %lu", i,
                     (unsigned long)n, (unsigned long)top);
        if (ok) {
            seen[n] = 1;
            if (n > top)
                top = n;
        }
    }
}

Test(noise, increasing_order_rules)
{
    dmsg_noise_rx rx;
    dmsg_noise_rx_init(&rx, test_key, DMSG_NOISE_INCREASING);
    cr_assert_eq(open_nonce(&rx, 0), DMSG_ENONCE);
    cr_assert_eq(open_nonce(&rx, 1), 0);
    cr_assert_eq(open_nonce(&rx, 1), DMSG_ENONCE, "duplicate");
    cr_assert_eq(open_nonce(&rx, 3), 0, "gap allowed");
    cr_assert_eq(open_nonce(&rx, 2), DMSG_ENONCE, "older than the last");
    uint8_t body[64], *pt;
    size_t len = make_body(10, (const uint8_t *)"x", 1, body), pt_len;
    body[10] ^= 1;
    cr_assert_eq(dmsg_noise_open(&rx, body, len, &pt, &pt_len), DMSG_EMAC);
    cr_assert_eq(open_nonce(&rx, 4), 0, "a forged frame does not advance the counter");
    cr_assert_eq(open_nonce(&rx, 10), 0);
}

/* ---- end-to-end writer -------------------------------------------------------------------- */

static void check_stream_write(size_t len)
{
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    dmsg_noise_tx_init(&tx, test_key);
    dmsg_noise_rx_init(&rx, test_key, DMSG_NOISE_INCREASING);
    uint8_t *pt = malloc(len + 1);
    randombytes_buf(pt, len);
    size_t frames = (len + DMSG_NOISE_CHUNK_MAX - 1) / DMSG_NOISE_CHUNK_MAX;
    size_t need = dmsg_noise_stream_sealed_len(len);
    cr_assert_eq(need, len + frames * DMSG_NOISE_FRAMED_OVERHEAD);
    uint8_t *out = malloc(need + 1), *back = malloc(len + 1);
    size_t out_len;
    if (need > 0)
        cr_assert_eq(dmsg_noise_seal_stream(&tx, pt, len, out, need - 1, &out_len), DMSG_EINVAL);
    cr_assert_eq(dmsg_noise_seal_stream(&tx, pt, len, out, need, &out_len), 0);
    cr_assert_eq(out_len, need);
    cr_assert_eq(tx.counter, frames);

    uint8_t buf[DMSG_NOISE_FRAME_MAX];
    dmsg_noise_framer fr;
    cr_assert_eq(dmsg_noise_framer_init(&fr, DMSG_NOISE_FRAME_MAX, buf, sizeof buf), 0);
    size_t pos = 0, back_len = 0, seen = 0;
    while (pos < out_len) {
        uint8_t *body, *p;
        size_t used, body_len, p_len;
        cr_assert_eq(dmsg_noise_framer_next(&fr, out + pos, out_len - pos, &used, &body,
                                            &body_len), 0);
        cr_assert(body_len <= DMSG_NOISE_FRAME_MAX);
        cr_assert_eq(dmsg_noise_open(&rx, body, body_len, &p, &p_len), 0);
        cr_assert(p_len == DMSG_NOISE_CHUNK_MAX || pos + used == out_len, "only the last is short");
        memcpy(back + back_len, p, p_len);
        back_len += p_len;
        pos += used;
        seen++;
    }
    cr_assert_eq(seen, frames);
    cr_assert_eq(back_len, len);
    assert_bytes(back, pt, len, "stream round trip");
    free(pt);
    free(out);
    free(back);
}

Test(noise, stream_writer_chunks_at_4070)
{
    size_t lens[] = { 0, 1, DMSG_NOISE_CHUNK_MAX - 1, DMSG_NOISE_CHUNK_MAX,
                      DMSG_NOISE_CHUNK_MAX + 1, 2 * DMSG_NOISE_CHUNK_MAX, 10000, 65536 };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        check_stream_write(lens[i]);
    cr_assert_eq(dmsg_noise_stream_sealed_len(DMSG_NOISE_CHUNK_MAX), DMSG_NOISE_FRAME_MAX + 2);
    cr_assert_eq(dmsg_noise_stream_sealed_len(SIZE_MAX - 10), 0, "overflow reported");
}

/* ---- frame parser ------------------------------------------------------------------------- */

static const size_t sample_sizes[] = { 0, 1, 24, 300, 255, 256, DMSG_NOISE_FRAME_MAX, 2 };
#define SAMPLE_COUNT (sizeof sample_sizes / sizeof sample_sizes[0])

static size_t build_sample(uint8_t *out)
{
    size_t pos = 0;
    for (size_t i = 0; i < SAMPLE_COUNT; i++) {
        out[pos++] = (uint8_t)(sample_sizes[i] >> 8);
        out[pos++] = (uint8_t)sample_sizes[i];
        for (size_t j = 0; j < sample_sizes[i]; j++)
            out[pos++] = (uint8_t)(i * 31 + j);
    }
    return pos;
}

static void check_sample_frame(size_t index, const uint8_t *body, size_t len)
{
    cr_assert(index < SAMPLE_COUNT, "too many frames");
    cr_assert_eq(len, sample_sizes[index], "frame %zu", index);
    for (size_t j = 0; j < len; j++)
        cr_assert_eq(body[j], (uint8_t)(index * 31 + j), "frame %zu byte %zu", index, j);
}

/* Feeds the sample in chunks cut at the given offsets (ascending, ending with total). */
static void feed_chunks(const size_t *cuts, size_t ncuts, bool expect_zero_copy_whole)
{
    static uint8_t data[8 * 4200];
    size_t total = build_sample(data);
    uint8_t buf[DMSG_NOISE_FRAME_MAX];
    dmsg_noise_framer fr;
    cr_assert_eq(dmsg_noise_framer_init(&fr, DMSG_NOISE_FRAME_MAX, buf, sizeof buf), 0);
    size_t frames = 0, start = 0;
    for (size_t c = 0; c < ncuts; c++) {
        size_t end = cuts[c];
        uint8_t *p = data + start;
        size_t left = end - start;
        while (left > 0) {
            uint8_t *body;
            size_t used, body_len;
            int rc = dmsg_noise_framer_next(&fr, p, left, &used, &body, &body_len);
            cr_assert(used <= left);
            if (rc == DMSG_EAGAIN) {
                cr_assert_eq(used, left, "EAGAIN takes all input");
                break;
            }
            cr_assert_eq(rc, 0);
            check_sample_frame(frames, body, body_len);
            if (expect_zero_copy_whole)
                cr_assert(body >= data && body <= data + total, "no copy when contiguous");
            frames++;
            p += used;
            left -= used;
        }
        start = end;
    }
    cr_assert_eq(frames, SAMPLE_COUNT);
    cr_assert_eq(dmsg_noise_framer_pending(&fr), 0);
}

Test(noise, framer_whole_input_is_zero_copy)
{
    uint8_t data[8 * 4200];
    size_t total = build_sample(data);
    feed_chunks(&total, 1, true);
}

Test(noise, framer_every_split_point)
{
    uint8_t data[8 * 4200];
    size_t total = build_sample(data);
    for (size_t split = 0; split <= total; split++) {
        size_t cuts[2] = { split, total };
        feed_chunks(cuts, 2, false);
    }
}

Test(noise, framer_byte_by_byte_and_random_chunks)
{
    uint8_t data[8 * 4200];
    size_t total = build_sample(data);
    size_t *cuts = malloc(total * sizeof *cuts);
    for (size_t i = 0; i < total; i++)
        cuts[i] = i + 1;
    feed_chunks(cuts, total, false);
    uint32_t state = 7;
    for (int round = 0; round < 50; round++) {
        size_t n = 0, pos = 0;
        while (pos < total) {
            state = state * 1103515245u + 12345u;
            pos += 1 + (state >> 8) % 700;
            cuts[n++] = pos < total ? pos : total;
        }
        feed_chunks(cuts, n, false);
    }
    free(cuts);
}

Test(noise, framer_split_header_whole_body_is_zero_copy)
{
    uint8_t data[8] = { 0x00, 0x05, 'a', 'b', 'c', 'd', 'e', 0x00 }, buf[16], *body;
    dmsg_noise_framer fr;
    size_t used, len;
    cr_assert_eq(dmsg_noise_framer_init(&fr, 16, buf, sizeof buf), 0);
    cr_assert_eq(dmsg_noise_framer_next(&fr, data, 1, &used, &body, &len), DMSG_EAGAIN);
    cr_assert_eq(dmsg_noise_framer_pending(&fr), 1);
    cr_assert_eq(dmsg_noise_framer_next(&fr, data + 1, 7, &used, &body, &len), 0);
    cr_assert_eq(used, 6, "stops at the end of the frame");
    cr_assert_eq(body, data + 2);
    cr_assert_eq(len, 5);
    cr_assert_eq(dmsg_noise_framer_next(&fr, data + 7, 1, &used, &body, &len), DMSG_EAGAIN);
    cr_assert_eq(dmsg_noise_framer_pending(&fr), 1);
    cr_assert_eq(dmsg_noise_framer_next(&fr, NULL, 0, &used, &body, &len), DMSG_EAGAIN);
    cr_assert_eq(used, 0);
}

Test(noise, framer_refuses_oversize_lengths)
{
    uint8_t buf[DMSG_NOISE_FRAME_MAX], *body;
    size_t used, len;
    dmsg_noise_framer fr;
    uint8_t just_over[] = { 0x0f, 0xff, 0 }; /* 4095 */
    cr_assert_eq(dmsg_noise_framer_init(&fr, DMSG_NOISE_FRAME_MAX, buf, sizeof buf), 0);
    cr_assert_eq(dmsg_noise_framer_next(&fr, just_over, 1, &used, &body, &len), DMSG_EAGAIN);
    cr_assert_eq(dmsg_noise_framer_next(&fr, just_over + 1, 2, &used, &body, &len), DMSG_ETOOBIG);
    cr_assert_eq(used, 1);
    cr_assert_eq(dmsg_noise_framer_next(&fr, just_over + 2, 1, &used, &body, &len), DMSG_ESTATE);

    uint8_t at_limit[2 + DMSG_NOISE_FRAME_MAX] = { 0x0f, 0xfe };
    cr_assert_eq(dmsg_noise_framer_init(&fr, DMSG_NOISE_FRAME_MAX, buf, sizeof buf), 0);
    cr_assert_eq(dmsg_noise_framer_next(&fr, at_limit, sizeof at_limit, &used, &body, &len), 0);
    cr_assert_eq(len, DMSG_NOISE_FRAME_MAX);

    /* Session objects take any u16 length. */
    static uint8_t big_buf[DMSG_NOISE_OBJECT_FRAME_MAX], big[2 + DMSG_NOISE_OBJECT_FRAME_MAX];
    big[0] = big[1] = 0xff;
    cr_assert_eq(dmsg_noise_framer_init(&fr, DMSG_NOISE_OBJECT_FRAME_MAX, big_buf,
                                        sizeof big_buf), 0);
    cr_assert_eq(dmsg_noise_framer_next(&fr, big, 3, &used, &body, &len), DMSG_EAGAIN);
    cr_assert_eq(dmsg_noise_framer_next(&fr, big + 3, sizeof big - 3, &used, &body, &len), 0);
    cr_assert_eq(len, DMSG_NOISE_OBJECT_FRAME_MAX);
    cr_assert_eq(body, big_buf, "a body split across inputs is reassembled in the buffer");

    cr_assert_eq(dmsg_noise_framer_init(&fr, DMSG_NOISE_OBJECT_FRAME_MAX + 1, big_buf,
                                        sizeof big_buf), DMSG_EINVAL);
    cr_assert_eq(dmsg_noise_framer_init(&fr, DMSG_NOISE_FRAME_MAX, buf, sizeof buf - 1),
                 DMSG_EINVAL);
    cr_assert_eq(dmsg_noise_framer_next(&fr, at_limit, 2, &used, &body, &len), DMSG_ESTATE);
}

/* ---- a reference XK initiator, written separately, to craft messages our writer never makes -- */

typedef struct ref {
    uint8_t ck[32], h[32], k[32];
    uint64_t n;
} ref;

static void ref_mix_hash(ref *s, const uint8_t *d, size_t len)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, s->h, 32);
    crypto_hash_sha256_update(&st, d, len);
    crypto_hash_sha256_final(&st, s->h);
}

static void ref_mix_key(ref *s, const dmsg_sk *sk, const dmsg_pk *pk)
{
    uint8_t dh[33], temp[32], in[33];
    cr_assert_eq(dmsg_noise_dh(dh, sk, pk), 0);
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, s->ck, 32);
    crypto_auth_hmacsha256_update(&st, dh, 33);
    crypto_auth_hmacsha256_final(&st, temp);
    in[0] = 1;
    crypto_auth_hmacsha256_init(&st, temp, 32);
    crypto_auth_hmacsha256_update(&st, in, 1);
    crypto_auth_hmacsha256_final(&st, s->ck);
    memcpy(in, s->ck, 32);
    in[32] = 2;
    crypto_auth_hmacsha256_init(&st, temp, 32);
    crypto_auth_hmacsha256_update(&st, in, 33);
    crypto_auth_hmacsha256_final(&st, s->k);
    s->n = 0;
}

static size_t ref_encrypt(ref *s, const uint8_t *pt, size_t len, uint8_t *out)
{
    uint8_t nonce[12] = { 0 };
    nonce[4] = (uint8_t)s->n++;
    unsigned long long clen;
    crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, pt, len, s->h, 32, NULL, nonce, s->k);
    ref_mix_hash(s, out, (size_t)clen);
    return (size_t)clen;
}

static int ref_decrypt(ref *s, const uint8_t *in, size_t len)
{
    uint8_t nonce[12] = { 0 };
    nonce[4] = (uint8_t)s->n++;
    int rc = crypto_aead_chacha20poly1305_ietf_decrypt(NULL, NULL, NULL, in, len, s->h, 32, nonce,
                                                       s->k);
    ref_mix_hash(s, in, len);
    return rc;
}

typedef struct xk_fixture {
    dmsg_sk c_sk, c_e, srv_sk;
    dmsg_pk c_pk, c_epk, srv_pk, srv_epk;
    ref s;
    dmsg_noise_hs srv;
} xk_fixture;

/* Session A of noise_xk.json: the reference initiator's state after its pre-messages, and our
 * responder ready for message 1. */
static void xk_fixture_init(xk_fixture *f)
{
    json_t *v = vec_load("noise_xk.json");
    sk_at(v, "sessions.0.initiator_static.secret_key", &f->c_sk);
    pk_at(v, "sessions.0.initiator_static.public_key", &f->c_pk);
    sk_at(v, "sessions.0.initiator_ephemeral.secret_key", &f->c_e);
    pk_at(v, "sessions.0.initiator_ephemeral.public_key", &f->c_epk);
    sk_at(v, "sessions.0.responder_static.secret_key", &f->srv_sk);
    pk_at(v, "sessions.0.responder_static.public_key", &f->srv_pk);
    static const char name[] = "Noise_XK_Secp256k1_ChaChaPoly_SHA256";
    crypto_hash_sha256(f->s.h, (const uint8_t *)name, strlen(name));
    memcpy(f->s.ck, f->s.h, 32);
    ref_mix_hash(&f->s, NULL, 0);
    ref_mix_hash(&f->s, f->srv_pk.b, 33);
    dmsg_rng rng = sys_rng();
    cr_assert_eq(dmsg_noise_hs_init(&f->srv, DMSG_NOISE_XK, DMSG_NOISE_RESPONDER, &f->srv_sk,
                                    NULL, &rng), 0);
    json_decref(v);
}

static size_t ref_msg1(xk_fixture *f, const uint8_t *payload, size_t len, uint8_t *out)
{
    memcpy(out, f->c_epk.b, 33);
    ref_mix_hash(&f->s, f->c_epk.b, 33);
    ref_mix_key(&f->s, &f->c_e, &f->srv_pk);
    return 33 + ref_encrypt(&f->s, payload, len, out + 33);
}

/* Runs messages 1 and 2 between the reference initiator and our responder. */
static void xk_fixture_to_msg3(xk_fixture *f)
{
    uint8_t m[100], m2[DMSG_NOISE_HS_MSG_MAX];
    size_t len = ref_msg1(f, NULL, 0, m), m2_len;
    cr_assert_eq(dmsg_noise_hs_read(&f->srv, m, len), 0);
    cr_assert_eq(dmsg_noise_hs_write(&f->srv, m2, sizeof m2, &m2_len), 0);
    cr_assert_eq(m2_len, 49);
    memcpy(f->srv_epk.b, m2, 33);
    ref_mix_hash(&f->s, f->srv_epk.b, 33);
    ref_mix_key(&f->s, &f->c_e, &f->srv_epk);
    cr_assert_eq(ref_decrypt(&f->s, m2 + 33, 16), 0, "reference reads our message 2");
}

static size_t ref_msg3(xk_fixture *f, const uint8_t static_bytes[33], uint8_t *out)
{
    size_t len = ref_encrypt(&f->s, static_bytes, 33, out);
    ref_mix_key(&f->s, &f->c_sk, &f->srv_epk);
    return len + ref_encrypt(&f->s, NULL, 0, out + len);
}

Test(noise, reference_initiator_agrees_with_vector_and_responder)
{
    xk_fixture f;
    xk_fixture_init(&f);
    json_t *v = vec_load("noise_xk.json");
    uint8_t m1[100], want[49];
    cr_assert_eq(ref_msg1(&f, NULL, 0, m1), 49);
    vec_hex_exact(v, "sessions.0.messages.0.noise_message", want, 49);
    assert_bytes(m1, want, 49, "reference message 1");
    json_decref(v);
    xk_fixture_init(&f);
    xk_fixture_to_msg3(&f);
    uint8_t m3[65];
    cr_assert_eq(ref_msg3(&f, f.c_pk.b, m3), 65);
    cr_assert_eq(dmsg_noise_hs_read(&f.srv, m3, 65), 0);
    dmsg_pk got;
    cr_assert_eq(dmsg_noise_hs_remote_static(&f.srv, &got), 0);
    cr_assert(dmsg_pk_equal(&got, &f.c_pk));
}

/* Newer initiators put a 1184-byte ML-KEM key in message 1: authenticated, hashed, ignored; our
 * message 2 is classical and bound to that transcript. */
Test(noise, pq_sized_payload_in_message1_accepted)
{
    xk_fixture f;
    xk_fixture_init(&f);
    uint8_t payload[1184], m1[33 + 1184 + 16], m2[DMSG_NOISE_HS_MSG_MAX];
    randombytes_buf(payload, sizeof payload);
    size_t len = ref_msg1(&f, payload, sizeof payload, m1), m2_len;
    cr_assert_eq(len, sizeof m1);
    cr_assert_eq(dmsg_noise_hs_read(&f.srv, m1, len), 0);
    uint8_t h[32];
    dmsg_noise_hs_hash(&f.srv, h);
    assert_bytes(h, f.s.h, 32, "payload ciphertext mixed into h");
    cr_assert_eq(dmsg_noise_hs_write(&f.srv, m2, sizeof m2, &m2_len), 0);
    cr_assert_eq(m2_len, 49, "our answer carries an empty payload");
    dmsg_pk re;
    memcpy(re.b, m2, 33);
    ref_mix_hash(&f.s, re.b, 33);
    ref_mix_key(&f.s, &f.c_e, &re);
    cr_assert_eq(ref_decrypt(&f.s, m2 + 33, 16), 0);
}

Test(noise, message1_at_and_over_the_frame_limit)
{
    xk_fixture f;
    xk_fixture_init(&f);
    uint8_t *payload = calloc(1, DMSG_NOISE_FRAME_MAX), *m1 = calloc(1, DMSG_NOISE_FRAME_MAX + 1);
    size_t plen = DMSG_NOISE_FRAME_MAX - 33 - 16;
    cr_assert_eq(ref_msg1(&f, payload, plen, m1), DMSG_NOISE_FRAME_MAX);
    cr_assert_eq(dmsg_noise_hs_read(&f.srv, m1, DMSG_NOISE_FRAME_MAX), 0);
    xk_fixture_init(&f);
    cr_assert_eq(dmsg_noise_hs_read(&f.srv, m1, DMSG_NOISE_FRAME_MAX + 1), DMSG_ETOOBIG);
    cr_assert_eq(dmsg_noise_hs_next(&f.srv), DMSG_NOISE_STEP_FAILED);
    free(payload);
    free(m1);
}

Test(noise, invalid_static_point_in_message3)
{
    json_t *v = vec_load("keys.json");
    json_t *invalid = vec_get(v, "invalid");
    int tried = 0;
    for (size_t i = 0; i < json_array_size(invalid); i++) {
        json_t *e = json_array_get(invalid, i);
        if (strcmp(str_at(e, "kind"), "public_key") != 0)
            continue;
        dmsg_pk bad;
        pk_at(e, "hex", &bad);
        xk_fixture f;
        xk_fixture_init(&f);
        xk_fixture_to_msg3(&f);
        uint8_t m3[65];
        cr_assert_eq(ref_msg3(&f, bad.b, m3), 65);
        cr_assert_eq(dmsg_noise_hs_read(&f.srv, m3, 65), DMSG_EKEY, "%s", str_at(e, "hex"));
        cr_assert_eq(dmsg_noise_hs_next(&f.srv), DMSG_NOISE_STEP_FAILED);
        tried++;
    }
    cr_assert(tried >= 4);
    json_decref(v);
}

/* ---- malformed handshake messages ----------------------------------------------------------- */

typedef struct xk_vec {
    dmsg_sk c_sk, srv_sk, c_e, srv_e;
    dmsg_pk c_pk, srv_pk;
    uint8_t m1[49], m2[49], m3[65];
} xk_vec;

static void load_xk(xk_vec *x)
{
    json_t *v = vec_load("noise_xk.json");
    sk_at(v, "sessions.0.initiator_static.secret_key", &x->c_sk);
    pk_at(v, "sessions.0.initiator_static.public_key", &x->c_pk);
    sk_at(v, "sessions.0.responder_static.secret_key", &x->srv_sk);
    pk_at(v, "sessions.0.responder_static.public_key", &x->srv_pk);
    sk_at(v, "sessions.0.initiator_ephemeral.secret_key", &x->c_e);
    sk_at(v, "sessions.0.responder_ephemeral.secret_key", &x->srv_e);
    vec_hex_exact(v, "sessions.0.messages.0.noise_message", x->m1, 49);
    vec_hex_exact(v, "sessions.0.messages.1.noise_message", x->m2, 49);
    vec_hex_exact(v, "sessions.0.messages.2.noise_message", x->m3, 65);
    json_decref(v);
}

static void xk_responder(const xk_vec *x, dmsg_noise_hs *hs)
{
    fixed_rng e = { 0 };
    memcpy(e.bytes, x->srv_e.b, 32);
    dmsg_rng r = rng_of(&e);
    cr_assert_eq(dmsg_noise_hs_init(hs, DMSG_NOISE_XK, DMSG_NOISE_RESPONDER, &x->srv_sk, NULL, &r),
                 0);
}

static void xk_initiator(const xk_vec *x, dmsg_noise_hs *hs, const dmsg_pk *server)
{
    fixed_rng e = { 0 };
    memcpy(e.bytes, x->c_e.b, 32);
    dmsg_rng r = rng_of(&e);
    cr_assert_eq(dmsg_noise_hs_init(hs, DMSG_NOISE_XK, DMSG_NOISE_INITIATOR, &x->c_sk, server, &r),
                 0);
}

static void expect_failed(dmsg_noise_hs *hs)
{
    uint8_t out[80];
    size_t len;
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    dmsg_pk pk;
    cr_assert_eq(dmsg_noise_hs_next(hs), DMSG_NOISE_STEP_FAILED);
    cr_assert_eq(dmsg_noise_hs_write(hs, out, sizeof out, &len), DMSG_ESTATE);
    cr_assert_eq(dmsg_noise_hs_read(hs, out, 49), DMSG_ESTATE);
    cr_assert_eq(dmsg_noise_hs_split(hs, &tx, &rx), DMSG_ESTATE);
    cr_assert_eq(dmsg_noise_hs_remote_static(hs, &pk), DMSG_ESTATE);
    cr_assert(sodium_is_zero(hs->s_sk.b, 32) && sodium_is_zero(hs->e_sk.b, 32) &&
              sodium_is_zero(hs->k, 32) && sodium_is_zero(hs->ck, 32), "secrets wiped");
}

Test(noise, truncated_messages)
{
    xk_vec x;
    load_xk(&x);
    for (size_t len = 0; len < 49; len++) {
        dmsg_noise_hs hs;
        xk_responder(&x, &hs);
        cr_assert_eq(dmsg_noise_hs_read(&hs, x.m1, len), DMSG_ESHORT, "message 1 of %zu", len);
        expect_failed(&hs);
        xk_initiator(&x, &hs, &x.srv_pk);
        uint8_t out[80];
        size_t out_len;
        cr_assert_eq(dmsg_noise_hs_write(&hs, out, sizeof out, &out_len), 0);
        cr_assert_eq(dmsg_noise_hs_read(&hs, x.m2, len), DMSG_ESHORT, "message 2 of %zu", len);
        expect_failed(&hs);
    }
    for (size_t len = 0; len < 65; len++) {
        dmsg_noise_hs hs;
        xk_responder(&x, &hs);
        uint8_t out[80];
        size_t out_len;
        cr_assert_eq(dmsg_noise_hs_read(&hs, x.m1, 49), 0);
        cr_assert_eq(dmsg_noise_hs_write(&hs, out, sizeof out, &out_len), 0);
        int rc = dmsg_noise_hs_read(&hs, x.m3, len);
        /* Cut inside the encrypted static the tag check cannot even start. */
        cr_assert_eq(rc, DMSG_ESHORT, "message 3 of %zu", len);
        expect_failed(&hs);
    }
}

Test(noise, flipped_bits_fail_authentication_or_point_check)
{
    xk_vec x;
    load_xk(&x);
    for (size_t i = 0; i < 49 * 8; i++) {
        dmsg_noise_hs hs;
        xk_responder(&x, &hs);
        uint8_t m[49];
        memcpy(m, x.m1, 49);
        m[i / 8] ^= (uint8_t)(1 << (i % 8));
        int rc = dmsg_noise_hs_read(&hs, m, 49);
        if (i / 8 < 33)
            cr_assert(rc == DMSG_EKEY || rc == DMSG_EMAC, "bit %zu: %d", i, rc);
        else
            cr_assert_eq(rc, DMSG_EMAC, "bit %zu", i);
        expect_failed(&hs);
    }
    for (size_t i = 0; i < 65 * 8; i += 3) {
        dmsg_noise_hs hs;
        xk_responder(&x, &hs);
        uint8_t m[65], out[80];
        size_t out_len;
        cr_assert_eq(dmsg_noise_hs_read(&hs, x.m1, 49), 0);
        cr_assert_eq(dmsg_noise_hs_write(&hs, out, sizeof out, &out_len), 0);
        memcpy(m, x.m3, 65);
        m[i / 8] ^= (uint8_t)(1 << (i % 8));
        cr_assert_eq(dmsg_noise_hs_read(&hs, m, 65), DMSG_EMAC, "message 3 bit %zu", i);
        expect_failed(&hs);
    }
}

Test(noise, invalid_ephemeral_points)
{
    xk_vec x;
    load_xk(&x);
    json_t *v = vec_load("keys.json");
    json_t *invalid = vec_get(v, "invalid");
    int tried = 0;
    for (size_t i = 0; i < json_array_size(invalid); i++) {
        json_t *e = json_array_get(invalid, i);
        if (strcmp(str_at(e, "kind"), "public_key") != 0)
            continue;
        uint8_t m[49], out[80];
        size_t out_len;
        dmsg_noise_hs hs;
        /* e of message 1 at the responder */
        memcpy(m, x.m1, 49);
        vec_hex_exact(e, "hex", m, 33);
        xk_responder(&x, &hs);
        cr_assert_eq(dmsg_noise_hs_read(&hs, m, 49), DMSG_EKEY, "message 1 e %zu", i);
        expect_failed(&hs);
        /* e of message 2 at the initiator */
        memcpy(m, x.m2, 49);
        vec_hex_exact(e, "hex", m, 33);
        xk_initiator(&x, &hs, &x.srv_pk);
        cr_assert_eq(dmsg_noise_hs_write(&hs, out, sizeof out, &out_len), 0);
        cr_assert_eq(dmsg_noise_hs_read(&hs, m, 49), DMSG_EKEY, "message 2 e %zu", i);
        expect_failed(&hs);
        /* e of KK message 1 */
        dmsg_rng r = sys_rng();
        cr_assert_eq(dmsg_noise_hs_init(&hs, DMSG_NOISE_KK, DMSG_NOISE_RESPONDER, &x.srv_sk,
                                        &x.c_pk, &r), 0);
        cr_assert_eq(dmsg_noise_hs_read(&hs, m, 49), DMSG_EKEY, "KK message 1 e %zu", i);
        tried++;
    }
    cr_assert(tried >= 4);
    json_decref(v);
}

/* A responder without the server's secret cannot answer: it fails on message 1's tag, and an
 * impostor that answers anyway (having read a message 1 addressed to its own key) is caught by
 * the initiator at message 2's tag. */
Test(noise, wrong_static_key)
{
    xk_vec x;
    load_xk(&x);
    dmsg_noise_hs impostor, client, fooled;
    fixed_rng e = { 0 };
    memcpy(e.bytes, x.srv_e.b, 32);
    dmsg_rng r = rng_of(&e);
    cr_assert_eq(dmsg_noise_hs_init(&impostor, DMSG_NOISE_XK, DMSG_NOISE_RESPONDER, &x.c_sk, NULL,
                                    &r), 0);
    cr_assert_eq(dmsg_noise_hs_read(&impostor, x.m1, 49), DMSG_EMAC);

    uint8_t m1[80], m2[80], ignored[80];
    size_t len, m2_len;
    xk_initiator(&x, &fooled, &x.c_pk); /* same ephemeral, but addressed to the impostor's key */
    cr_assert_eq(dmsg_noise_hs_write(&fooled, m1, sizeof m1, &len), 0);
    cr_assert_eq(dmsg_noise_hs_init(&impostor, DMSG_NOISE_XK, DMSG_NOISE_RESPONDER, &x.c_sk, NULL,
                                    &r), 0);
    cr_assert_eq(dmsg_noise_hs_read(&impostor, m1, len), 0);
    cr_assert_eq(dmsg_noise_hs_write(&impostor, m2, sizeof m2, &m2_len), 0);

    xk_initiator(&x, &client, &x.srv_pk);
    cr_assert_eq(dmsg_noise_hs_write(&client, ignored, sizeof ignored, &len), 0);
    cr_assert_eq(dmsg_noise_hs_read(&client, m2, m2_len), DMSG_EMAC);
    expect_failed(&client);

    /* KK: the responder expecting another initiator fails on message 1. */
    dmsg_pk other_pk;
    dmsg_sk other_sk;
    random_keypair(&other_sk, &other_pk);
    dmsg_noise_hs i, resp;
    dmsg_rng sr = sys_rng();
    cr_assert_eq(dmsg_noise_hs_init(&i, DMSG_NOISE_KK, DMSG_NOISE_INITIATOR, &x.c_sk, &x.srv_pk,
                                    &sr), 0);
    cr_assert_eq(dmsg_noise_hs_init(&resp, DMSG_NOISE_KK, DMSG_NOISE_RESPONDER, &x.srv_sk,
                                    &other_pk, &sr), 0);
    cr_assert_eq(dmsg_noise_hs_write(&i, m1, sizeof m1, &len), 0);
    cr_assert_eq(dmsg_noise_hs_read(&resp, m1, len), DMSG_EMAC);
}

Test(noise, out_of_order_calls)
{
    xk_vec x;
    load_xk(&x);
    dmsg_noise_hs hs;
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    uint8_t out[80];
    size_t len;
    dmsg_pk pk;

    xk_responder(&x, &hs);
    cr_assert_eq(dmsg_noise_hs_next(&hs), DMSG_NOISE_STEP_READ);
    cr_assert_eq(dmsg_noise_hs_write(&hs, out, sizeof out, &len), DMSG_ESTATE);
    cr_assert_eq(dmsg_noise_hs_write_framed(&hs, out, sizeof out, &len), DMSG_ESTATE);
    cr_assert_eq(dmsg_noise_hs_split(&hs, &tx, &rx), DMSG_ESTATE);
    cr_assert_eq(dmsg_noise_hs_remote_static(&hs, &pk), DMSG_ESTATE, "unknown before message 3");
    cr_assert_eq(dmsg_noise_hs_next(&hs), DMSG_NOISE_STEP_READ, "refusals keep the state");
    cr_assert_eq(dmsg_noise_hs_read(&hs, x.m1, 49), 0);
    cr_assert_eq(dmsg_noise_hs_read(&hs, x.m3, 65), DMSG_ESTATE);
    cr_assert_eq(dmsg_noise_hs_write(&hs, out, 48, &len), DMSG_EINVAL, "buffer too small");
    cr_assert_eq(dmsg_noise_hs_write_framed(&hs, out, 50, &len), DMSG_EINVAL);
    cr_assert_eq(dmsg_noise_hs_write_framed(&hs, out, 1, &len), DMSG_EINVAL);
    cr_assert_eq(dmsg_noise_hs_write(&hs, out, sizeof out, &len), 0);
    assert_bytes(out, x.m2, 49, "message 2 after refused calls");
    cr_assert_eq(dmsg_noise_hs_read(&hs, x.m3, 65), 0);
    cr_assert_eq(dmsg_noise_hs_read(&hs, x.m3, 65), DMSG_ESTATE);
    cr_assert_eq(dmsg_noise_hs_write(&hs, out, sizeof out, &len), DMSG_ESTATE);
    cr_assert_eq(dmsg_noise_hs_split(&hs, &tx, &rx), 0);
    cr_assert_eq(dmsg_noise_hs_split(&hs, &tx, &rx), DMSG_ESTATE);
    cr_assert_eq(dmsg_noise_hs_read(&hs, x.m3, 65), DMSG_ESTATE);
    cr_assert(sodium_is_zero(hs.s_sk.b, 32) && sodium_is_zero(hs.e_sk.b, 32) &&
              sodium_is_zero(hs.ck, 32), "split wipes the handshake secrets");
    cr_assert_eq(dmsg_noise_hs_remote_static(&hs, &pk), 0);
    cr_assert(dmsg_pk_equal(&pk, &x.c_pk));

    xk_initiator(&x, &hs, &x.srv_pk);
    cr_assert_eq(dmsg_noise_hs_next(&hs), DMSG_NOISE_STEP_WRITE);
    cr_assert_eq(dmsg_noise_hs_read(&hs, x.m2, 49), DMSG_ESTATE);
    dmsg_noise_hs_wipe(&hs);
    expect_failed(&hs);
}

Test(noise, init_argument_checks)
{
    xk_vec x;
    load_xk(&x);
    dmsg_noise_hs hs;
    dmsg_rng r = sys_rng();
    cr_assert_eq(dmsg_noise_hs_init(&hs, DMSG_NOISE_XK, DMSG_NOISE_RESPONDER, &x.srv_sk,
                                    &x.c_pk, &r), DMSG_EINVAL, "XK responder cannot know it");
    cr_assert_eq(dmsg_noise_hs_init(&hs, DMSG_NOISE_XK, DMSG_NOISE_INITIATOR, &x.c_sk, NULL, &r),
                 DMSG_EINVAL);
    cr_assert_eq(dmsg_noise_hs_init(&hs, DMSG_NOISE_KK, DMSG_NOISE_RESPONDER, &x.srv_sk, NULL,
                                    &r), DMSG_EINVAL);
    cr_assert_eq(dmsg_noise_hs_next(&hs), DMSG_NOISE_STEP_FAILED);
    cr_assert_eq(dmsg_noise_hs_init(&hs, (dmsg_noise_pattern)7, DMSG_NOISE_INITIATOR, &x.c_sk,
                                    &x.srv_pk, &r), DMSG_EINVAL);

    json_t *v = vec_load("keys.json");
    json_t *invalid = vec_get(v, "invalid");
    for (size_t i = 0; i < json_array_size(invalid); i++) {
        json_t *e = json_array_get(invalid, i);
        int rc;
        if (strcmp(str_at(e, "kind"), "public_key") == 0) {
            dmsg_pk bad;
            pk_at(e, "hex", &bad);
            rc = dmsg_noise_hs_init(&hs, DMSG_NOISE_XK, DMSG_NOISE_INITIATOR, &x.c_sk, &bad, &r);
        } else {
            dmsg_sk bad;
            sk_at(e, "hex", &bad);
            rc = dmsg_noise_hs_init(&hs, DMSG_NOISE_XK, DMSG_NOISE_INITIATOR, &bad, &x.srv_pk, &r);
        }
        cr_assert_eq(rc, DMSG_EKEY, "%s", str_at(e, "hex"));
        cr_assert_eq(dmsg_noise_hs_next(&hs), DMSG_NOISE_STEP_FAILED);
    }
    json_decref(v);
}
