/* secp256k1 keys, ECDH, the Noise DH, signatures and hex, against keys.json, ecdh.json and
 * sig.json (spec §2). */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "vectors.h"

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

TestSuite(cipher, .init = setup);

#define assert_bytes(got, want, n, what)                                                       \
    do {                                                                                       \
        if (memcmp((got), (want), (n)) != 0) {                                                 \
            char *g_ = vec_to_hex((got), (n)), *w_ = vec_to_hex((want), (n));                  \
            cr_assert_fail("%s differs:\n got  %s\n want %s", (what), g_, w_);                 \
        }                                                                                      \
    } while (0)

static const char *str_at(json_t *root, const char *path)
{
    json_t *v = vec_get(root, path);
    cr_assert(json_is_string(v), "no string at %s", path);
    return json_string_value(v);
}

static void pk_at(json_t *root, const char *path, dmsg_pk *pk)
{
    const char *hex = str_at(root, path);
    cr_assert_eq(dmsg_pk_from_hex(pk, hex, strlen(hex)), 0, "%s", hex);
}

static void sk_at(json_t *root, const char *path, dmsg_sk *sk)
{
    const char *hex = str_at(root, path);
    cr_assert_eq(dmsg_sk_from_hex(sk, hex, strlen(hex)), 0, "%s", hex);
}

static void sig_at(json_t *root, const char *path, dmsg_sig *sig)
{
    const char *hex = str_at(root, path);
    cr_assert_eq(dmsg_sig_from_hex(sig, hex, strlen(hex)), 0, "%s", hex);
}

static uint8_t *payload_at(json_t *root, size_t *len)
{
    return vec_hex(root, "payload", len);
}

/* ---- keys --------------------------------------------------------------------------------- */

Test(cipher, keypairs_secret_to_public)
{
    json_t *v = vec_load("keys.json");
    json_t *pairs = vec_get(v, "keypairs");
    cr_assert(json_array_size(pairs) >= 10);
    for (size_t i = 0; i < json_array_size(pairs); i++) {
        json_t *p = json_array_get(pairs, i);
        dmsg_sk sk;
        dmsg_pk want, got;
        sk_at(p, "secret_key", &sk);
        pk_at(p, "public_key", &want);
        cr_assert_eq(dmsg_sk_validate(&sk), 0, "%s", str_at(p, "label"));
        cr_assert_eq(dmsg_pk_validate(&want), 0, "%s", str_at(p, "label"));
        cr_assert_eq(dmsg_pk_from_sk(&got, &sk), 0);
        assert_bytes(got.b, want.b, DMSG_PK_LEN, str_at(p, "label"));
        cr_assert(dmsg_pk_equal(&got, &want));
        cr_assert(!dmsg_pk_is_null(&got));

        char pk_hex[DMSG_PK_HEX_LEN + 1], sk_hex[DMSG_SK_HEX_LEN + 1];
        dmsg_pk_to_hex(&got, pk_hex);
        dmsg_sk_to_hex(&sk, sk_hex);
        cr_assert_str_eq(pk_hex, str_at(p, "public_key"));
        cr_assert_str_eq(sk_hex, str_at(p, "secret_key"));

        /* The uncompressed form is never a valid dmsg key, even for a real point. */
        size_t ulen;
        uint8_t *u = vec_hex(p, "public_key_uncompressed", &ulen);
        cr_assert_eq(ulen, 65);
        dmsg_pk first33;
        memcpy(first33.b, u, DMSG_PK_LEN);
        cr_assert_eq(dmsg_pk_validate(&first33), DMSG_EKEY);
        assert_bytes(u + 1, want.b + 1, 32, "uncompressed X equals compressed X");
        free(u);
    }
    json_decref(v);
}

Test(cipher, invalid_keys_rejected)
{
    json_t *v = vec_load("keys.json");
    json_t *invalid = vec_get(v, "invalid");
    dmsg_sk good_sk;
    dmsg_pk good_pk;
    sk_at(v, "keypairs.0.secret_key", &good_sk);
    pk_at(v, "keypairs.0.public_key", &good_pk);
    int sks = 0, pks = 0;
    for (size_t i = 0; i < json_array_size(invalid); i++) {
        json_t *e = json_array_get(invalid, i);
        const char *hex = str_at(e, "hex");
        uint8_t out[DMSG_NOISE_DH_LEN];
        if (strcmp(str_at(e, "kind"), "secret_key") == 0) {
            dmsg_sk sk;
            dmsg_pk pk;
            dmsg_sig sig;
            sk_at(e, "hex", &sk);
            cr_assert_eq(dmsg_sk_validate(&sk), DMSG_EKEY, "%s", hex);
            cr_assert_eq(dmsg_pk_from_sk(&pk, &sk), DMSG_EKEY, "%s", hex);
            cr_assert_eq(dmsg_ecdh(out, &sk, &good_pk), DMSG_EKEY, "%s", hex);
            cr_assert_eq(dmsg_noise_dh(out, &sk, &good_pk), DMSG_EKEY, "%s", hex);
            cr_assert_eq(dmsg_sign(&sig, &sk, (const uint8_t *)"x", 1), DMSG_EKEY, "%s", hex);
            sks++;
        } else {
            cr_assert_str_eq(str_at(e, "kind"), "public_key");
            dmsg_pk pk;
            dmsg_sig sig = { { 0 } };
            pk_at(e, "hex", &pk);
            cr_assert_eq(dmsg_pk_validate(&pk), DMSG_EKEY, "%s", hex);
            cr_assert_eq(dmsg_ecdh(out, &good_sk, &pk), DMSG_EKEY, "%s", hex);
            cr_assert_eq(dmsg_noise_dh(out, &good_sk, &pk), DMSG_EKEY, "%s", hex);
            cr_assert_eq(dmsg_verify(&pk, &sig, (const uint8_t *)"x", 1), DMSG_EKEY, "%s", hex);
            pks++;
        }
    }
    cr_assert(sks >= 3 && pks >= 4);
    json_decref(v);
}

/* ---- ECDH --------------------------------------------------------------------------------- */

Test(cipher, ecdh_and_noise_dh_vectors)
{
    json_t *v = vec_load("ecdh.json");
    json_t *cases = vec_get(v, "cases");
    cr_assert(json_array_size(cases) >= 9);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *label = str_at(c, "label");
        dmsg_sk sk;
        dmsg_pk pk;
        sk_at(c, "secret_key", &sk);
        pk_at(c, "public_key", &pk);
        uint8_t want_ecdh[DMSG_ECDH_LEN], want_dh[DMSG_NOISE_DH_LEN];
        uint8_t got_ecdh[DMSG_ECDH_LEN], got_dh[DMSG_NOISE_DH_LEN];
        vec_hex_exact(c, "cipher_ecdh", want_ecdh, sizeof want_ecdh);
        vec_hex_exact(c, "noise_dh", want_dh, sizeof want_dh);
        cr_assert_eq(dmsg_ecdh(got_ecdh, &sk, &pk), 0, "%s", label);
        assert_bytes(got_ecdh, want_ecdh, sizeof want_ecdh, label);
        memset(got_dh, 0xaa, sizeof got_dh);
        cr_assert_eq(dmsg_noise_dh(got_dh, &sk, &pk), 0, "%s", label);
        assert_bytes(got_dh, want_dh, sizeof want_dh, label);

        /* cipher_ecdh is SHA256 of the compressed shared point. */
        uint8_t point[DMSG_PK_LEN], digest[DMSG_SHA256_LEN];
        vec_hex_exact(c, "shared_point_compressed", point, sizeof point);
        dmsg_sha256(digest, point, sizeof point);
        assert_bytes(digest, got_ecdh, sizeof digest, label);
    }
    json_decref(v);
}

/* ---- signatures --------------------------------------------------------------------------- */

Test(cipher, signatures_verify_and_recover)
{
    json_t *v = vec_load("sig.json");
    json_t *cases = vec_get(v, "cases");
    cr_assert(json_array_size(cases) >= 4);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *label = str_at(c, "label");
        dmsg_pk pk, recovered;
        dmsg_sig sig;
        size_t len;
        pk_at(c, "public_key", &pk);
        sig_at(c, "signature", &sig);
        uint8_t *payload = payload_at(c, &len);
        uint8_t digest[32], want_digest[32];
        dmsg_sha256(digest, payload, len);
        vec_hex_exact(c, "sha256_payload", want_digest, 32);
        assert_bytes(digest, want_digest, 32, label);
        cr_assert_eq(dmsg_verify(&pk, &sig, payload, len), 0, "%s", label);
        cr_assert_eq(dmsg_recover(&recovered, &sig, payload, len), 0, "%s", label);
        cr_assert(dmsg_pk_equal(&recovered, &pk), "%s", label);
        cr_assert_eq(sig.b[64], (uint8_t)json_integer_value(vec_get(c, "recid")));

        char hex[DMSG_SIG_HEX_LEN + 1];
        dmsg_sig_to_hex(&sig, hex);
        cr_assert_str_eq(hex, str_at(c, "signature"));
        free(payload);
    }
    json_decref(v);
}

Test(cipher, negative_signatures_rejected)
{
    json_t *v = vec_load("sig.json");
    json_t *cases = vec_get(v, "negative_cases");
    cr_assert(json_array_size(cases) >= 6);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        dmsg_pk pk;
        dmsg_sig sig;
        size_t len;
        pk_at(c, "public_key", &pk);
        sig_at(c, "signature", &sig);
        uint8_t *payload = payload_at(c, &len);
        cr_assert_eq(dmsg_verify(&pk, &sig, payload, len), DMSG_ESIG, "%s", str_at(c, "label"));
        free(payload);
    }
    json_decref(v);
}

/* libsecp256k1's RFC6979 signatures, which Go accepted, come out of dmsg_sign byte for byte. */
Test(cipher, rfc6979_signatures_reproduced)
{
    json_t *v = vec_load("sig.json"), *keys = vec_load("keys.json");
    json_t *cases = vec_get(v, "rfc6979_cases"), *pairs = vec_get(keys, "keypairs");
    cr_assert(json_array_size(cases) >= 3);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *pk_hex = str_at(c, "public_key");
        json_t *pair = NULL;
        for (size_t k = 0; k < json_array_size(pairs); k++)
            if (strcmp(str_at(json_array_get(pairs, k), "public_key"), pk_hex) == 0)
                pair = json_array_get(pairs, k);
        cr_assert(pair, "no secret key in keys.json for %s", pk_hex);
        dmsg_sk sk;
        dmsg_pk pk;
        dmsg_sig want, got, again;
        sk_at(pair, "secret_key", &sk);
        pk_at(c, "public_key", &pk);
        sig_at(c, "signature", &want);
        size_t len;
        uint8_t *payload = payload_at(c, &len);
        cr_assert_eq(dmsg_sign(&got, &sk, payload, len), 0);
        assert_bytes(got.b, want.b, DMSG_SIG_LEN, str_at(c, "payload"));
        cr_assert_eq(dmsg_sign(&again, &sk, payload, len), 0);
        assert_bytes(again.b, got.b, DMSG_SIG_LEN, "deterministic");
        cr_assert_eq(dmsg_verify(&pk, &got, payload, len), 0);
        free(payload);
    }
    json_decref(v);
    json_decref(keys);
}

Test(cipher, sign_verify_round_trip_and_tampering)
{
    dmsg_rng rng = dmsg_rng_system();
    for (int round = 0; round < 20; round++) {
        dmsg_sk sk;
        dmsg_pk pk, other_pk;
        dmsg_sk other_sk;
        cr_assert_eq(dmsg_keypair_generate(&pk, &sk, &rng), 0);
        cr_assert_eq(dmsg_keypair_generate(&other_pk, &other_sk, &rng), 0);
        uint8_t payload[64];
        randombytes_buf(payload, sizeof payload);
        size_t len = (size_t)round * 3;
        dmsg_sig sig;
        cr_assert_eq(dmsg_sign(&sig, &sk, payload, len), 0);
        cr_assert(sig.b[64] < 4);
        cr_assert_eq(sig.b[32] & 0x80, 0, "low-S");
        cr_assert_eq(dmsg_verify(&pk, &sig, payload, len), 0);
        cr_assert_eq(dmsg_verify(&other_pk, &sig, payload, len), DMSG_ESIG);
        payload[0] ^= 1;
        cr_assert_eq(dmsg_verify(&pk, &sig, payload, len + 1), DMSG_ESIG);
        payload[0] ^= 1;
        dmsg_sig bad = sig;
        bad.b[64] = 4;
        cr_assert_eq(dmsg_verify(&pk, &bad, payload, len), DMSG_ESIG);
        cr_assert_eq(dmsg_recover(&other_pk, &bad, payload, len), DMSG_ESIG);
        bad = sig;
        bad.b[32] |= 0x80;
        cr_assert_eq(dmsg_verify(&pk, &bad, payload, len), DMSG_ESIG);
        bad = sig;
        memset(bad.b, 0, 32); /* r = 0 is not a signature */
        cr_assert_eq(dmsg_verify(&pk, &bad, payload, len), DMSG_ESIG);
        cr_assert_eq(dmsg_recover(&other_pk, &bad, payload, len), DMSG_ESIG);
    }
}

/* ---- hex ---------------------------------------------------------------------------------- */

Test(cipher, hex_round_trips)
{
    uint8_t in[100], out[100];
    char hex[201];
    for (size_t len = 0; len <= sizeof in; len += 7) {
        randombytes_buf(in, len);
        dmsg_hex_encode(in, len, hex);
        cr_assert_eq(strlen(hex), 2 * len);
        for (size_t i = 0; i < 2 * len; i++)
            cr_assert(strchr("0123456789abcdef", hex[i]), "lowercase only");
        cr_assert_eq(dmsg_hex_decode(hex, 2 * len, out, sizeof out), (long)len);
        assert_bytes(out, in, len, "hex round trip");
        for (size_t i = 0; i < 2 * len; i++)
            if (hex[i] >= 'a')
                hex[i] = (char)(hex[i] - 'a' + 'A');
        cr_assert_eq(dmsg_hex_decode(hex, 2 * len, out, sizeof out), (long)len, "upper case");
        assert_bytes(out, in, len, "upper-case hex");
    }
}

Test(cipher, bad_hex_rejected)
{
    uint8_t out[40];
    cr_assert_eq(dmsg_hex_decode("abc", 3, out, sizeof out), DMSG_EHEX, "odd length");
    cr_assert_eq(dmsg_hex_decode("zz", 2, out, sizeof out), DMSG_EHEX);
    cr_assert_eq(dmsg_hex_decode("0g", 2, out, sizeof out), DMSG_EHEX);
    cr_assert_eq(dmsg_hex_decode(" 0", 2, out, sizeof out), DMSG_EHEX);
    cr_assert_eq(dmsg_hex_decode("0x", 2, out, sizeof out), DMSG_EHEX);
    cr_assert_eq(dmsg_hex_decode("000000", 6, out, 2), DMSG_EHEX, "does not fit");

    json_t *v = vec_load("keys.json");
    const char *pk_hex = str_at(v, "keypairs.0.public_key");
    const char *sk_hex = str_at(v, "keypairs.0.secret_key");
    dmsg_pk pk;
    dmsg_sk sk;
    dmsg_sig sig;
    cr_assert_eq(dmsg_pk_from_hex(&pk, pk_hex, DMSG_PK_HEX_LEN - 1), DMSG_EHEX);
    cr_assert_eq(dmsg_pk_from_hex(&pk, pk_hex, DMSG_PK_HEX_LEN - 2), DMSG_EHEX, "too short");
    cr_assert_eq(dmsg_sk_from_hex(&sk, sk_hex, DMSG_SK_HEX_LEN - 2), DMSG_EHEX);
    cr_assert_eq(dmsg_pk_from_hex(&pk, pk_hex, 0), DMSG_EHEX);
    char longer[DMSG_PK_HEX_LEN + 3];
    snprintf(longer, sizeof longer, "%s00", pk_hex);
    cr_assert_eq(dmsg_pk_from_hex(&pk, longer, strlen(longer)), DMSG_EHEX, "too long");
    char broken[DMSG_PK_HEX_LEN + 1];
    memcpy(broken, pk_hex, sizeof broken);
    broken[10] = 'x';
    cr_assert_eq(dmsg_pk_from_hex(&pk, broken, DMSG_PK_HEX_LEN), DMSG_EHEX);
    char sig_hex[DMSG_SIG_HEX_LEN + 1];
    memset(sig_hex, 'a', DMSG_SIG_HEX_LEN);
    sig_hex[DMSG_SIG_HEX_LEN] = 0;
    cr_assert_eq(dmsg_sig_from_hex(&sig, sig_hex, DMSG_SIG_HEX_LEN), 0);
    cr_assert_eq(dmsg_sig_from_hex(&sig, sig_hex, DMSG_SIG_HEX_LEN - 1), DMSG_EHEX);
    sig_hex[5] = 'G';
    cr_assert_eq(dmsg_sig_from_hex(&sig, sig_hex, DMSG_SIG_HEX_LEN), DMSG_EHEX);
    json_decref(v);
}

/* ---- the null key ------------------------------------------------------------------------- */

Test(cipher, null_key_handling)
{
    /* Exactly 66 '0' characters with nothing after them: the parser must stay inside len. */
    char *zeros = malloc(DMSG_PK_HEX_LEN);
    memset(zeros, '0', DMSG_PK_HEX_LEN);
    dmsg_pk pk;
    memset(pk.b, 0xee, sizeof pk.b);
    cr_assert_eq(dmsg_pk_from_hex(&pk, zeros, DMSG_PK_HEX_LEN), 0);
    cr_assert(dmsg_pk_is_null(&pk));
    cr_assert_eq(dmsg_pk_validate(&pk), DMSG_EKEY);
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(&pk, hex);
    cr_assert_eq(strspn(hex, "0"), DMSG_PK_HEX_LEN);
    free(zeros);

    /* A '0' string with another digit inside the length is a normal (invalid) key, not null. */
    char almost[DMSG_PK_HEX_LEN + 1];
    memset(almost, '0', DMSG_PK_HEX_LEN);
    almost[DMSG_PK_HEX_LEN - 1] = '1';
    almost[DMSG_PK_HEX_LEN] = 0;
    cr_assert_eq(dmsg_pk_from_hex(&pk, almost, DMSG_PK_HEX_LEN), 0);
    cr_assert(!dmsg_pk_is_null(&pk));
    cr_assert_eq(dmsg_pk_validate(&pk), DMSG_EKEY);

    dmsg_pk null_pk = { { 0 } };
    json_t *v = vec_load("keys.json");
    dmsg_sk sk;
    dmsg_sig sig;
    sk_at(v, "keypairs.0.secret_key", &sk);
    uint8_t out[DMSG_NOISE_DH_LEN];
    cr_assert_eq(dmsg_ecdh(out, &sk, &null_pk), DMSG_EKEY);
    cr_assert_eq(dmsg_noise_dh(out, &sk, &null_pk), DMSG_EKEY);
    cr_assert_eq(dmsg_sign(&sig, &sk, (const uint8_t *)"x", 1), 0);
    cr_assert_eq(dmsg_verify(&null_pk, &sig, (const uint8_t *)"x", 1), DMSG_EKEY);
    dmsg_pk recovered;
    cr_assert_eq(dmsg_recover(&recovered, &sig, (const uint8_t *)"x", 1), 0);
    cr_assert(!dmsg_pk_is_null(&recovered));
    json_decref(v);
}

/* ---- key generation from a caller's randomness -------------------------------------------- */

typedef struct script_rng {
    const uint8_t (*keys)[32];
    size_t count, next;
} script_rng;

static void script_fill(void *ctx, uint8_t *out, size_t len)
{
    script_rng *s = ctx;
    cr_assert_eq(len, 32);
    memcpy(out, s->keys[s->next < s->count ? s->next : s->count - 1], 32);
    s->next++;
}

Test(cipher, keypair_generate_retries_invalid_scalars)
{
    json_t *v = vec_load("keys.json");
    uint8_t keys[3][32];
    dmsg_pk want;
    vec_hex_exact(v, "invalid.0.hex", keys[0], 32); /* zero */
    vec_hex_exact(v, "invalid.1.hex", keys[1], 32); /* n */
    vec_hex_exact(v, "keypairs.1.secret_key", keys[2], 32);
    pk_at(v, "keypairs.1.public_key", &want);
    script_rng s = { keys, 3, 0 };
    dmsg_rng rng = { script_fill, &s };
    dmsg_pk pk;
    dmsg_sk sk;
    cr_assert_eq(dmsg_keypair_generate(&pk, &sk, &rng), 0);
    cr_assert_eq(s.next, 3, "two invalid draws skipped");
    cr_assert(dmsg_pk_equal(&pk, &want));
    assert_bytes(sk.b, keys[2], 32, "secret key");

    script_rng broken = { keys, 1, 0 }; /* only ever zero */
    rng.ctx = &broken;
    cr_assert_eq(dmsg_keypair_generate(&pk, &sk, &rng), DMSG_EINVAL);
    json_decref(v);
}

Test(cipher, constant_time_equal_and_wipe)
{
    uint8_t a[40], b[40];
    randombytes_buf(a, sizeof a);
    memcpy(b, a, sizeof b);
    cr_assert(dmsg_ct_equal(a, b, sizeof a));
    b[39] ^= 1;
    cr_assert(!dmsg_ct_equal(a, b, sizeof a));
    cr_assert(dmsg_ct_equal(a, b, 39));
    dmsg_wipe(a, sizeof a);
    cr_assert(sodium_is_zero(a, sizeof a));
}
