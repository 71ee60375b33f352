#include "dmsg/cipher.h"

#include <secp256k1.h>
#include <secp256k1_ecdh.h>
#include <secp256k1_preallocated.h>
#include <secp256k1_recovery.h>
#include <sodium.h>
#include <string.h>

#include "dmsg/error.h"

/* Functions that take a secret key need a context other than the static one. One lives on
 * the caller's stack for the duration of the call, so this module keeps no state at all. */
#define SIGNING_CTX_MAX 1024
typedef struct signing_ctx {
    _Alignas(max_align_t) unsigned char mem[SIGNING_CTX_MAX];
    secp256k1_context *ctx;
} signing_ctx;

static int signing_ctx_open(signing_ctx *s)
{
    if (secp256k1_context_preallocated_size(SECP256K1_CONTEXT_NONE) > sizeof s->mem)
        return DMSG_ENOMEM;
    s->ctx = secp256k1_context_preallocated_create(s->mem, SECP256K1_CONTEXT_NONE);
    return s->ctx ? 0 : DMSG_ENOMEM;
}

static void signing_ctx_close(signing_ctx *s)
{
    secp256k1_context_preallocated_destroy(s->ctx);
    sodium_memzero(s->mem, sizeof s->mem);
}

int dmsg_cipher_init(void)
{
    if (sodium_init() < 0)
        return DMSG_EINVAL;
    secp256k1_selftest();
    return 0;
}

bool dmsg_pk_is_null(const dmsg_pk *pk)
{
    static const uint8_t zero[DMSG_PK_LEN];
    return memcmp(pk->b, zero, DMSG_PK_LEN) == 0;
}

bool dmsg_pk_equal(const dmsg_pk *a, const dmsg_pk *b)
{
    return memcmp(a->b, b->b, DMSG_PK_LEN) == 0;
}

static int pk_parse(secp256k1_pubkey *out, const dmsg_pk *pk)
{
    if (pk->b[0] != 0x02 && pk->b[0] != 0x03)
        return DMSG_EKEY;
    if (!secp256k1_ec_pubkey_parse(secp256k1_context_static, out, pk->b, DMSG_PK_LEN))
        return DMSG_EKEY;
    return 0;
}

static void pk_serialize(dmsg_pk *pk, const secp256k1_pubkey *in)
{
    size_t len = DMSG_PK_LEN;
    secp256k1_ec_pubkey_serialize(secp256k1_context_static, pk->b, &len, in,
                                  SECP256K1_EC_COMPRESSED);
}

int dmsg_pk_validate(const dmsg_pk *pk)
{
    secp256k1_pubkey parsed;
    if (pk_parse(&parsed, pk) < 0)
        return DMSG_EKEY;
    dmsg_pk again;
    pk_serialize(&again, &parsed);
    return dmsg_pk_equal(&again, pk) ? 0 : DMSG_EKEY;
}

int dmsg_sk_validate(const dmsg_sk *sk)
{
    return secp256k1_ec_seckey_verify(secp256k1_context_static, sk->b) ? 0 : DMSG_EKEY;
}

int dmsg_pk_from_sk(dmsg_pk *pk, const dmsg_sk *sk)
{
    if (dmsg_sk_validate(sk) < 0)
        return DMSG_EKEY;
    signing_ctx s;
    int err = signing_ctx_open(&s);
    if (err < 0)
        return err;
    secp256k1_pubkey pub;
    int ok = secp256k1_ec_pubkey_create(s.ctx, &pub, sk->b);
    signing_ctx_close(&s);
    if (!ok)
        return DMSG_EKEY;
    pk_serialize(pk, &pub);
    return 0;
}

int dmsg_keypair_generate(dmsg_pk *pk, dmsg_sk *sk, const dmsg_rng *rng)
{
    for (int tries = 0; tries < 64; tries++) {
        dmsg_rng_fill(rng, sk->b, DMSG_SK_LEN);
        if (dmsg_sk_validate(sk) == 0)
            return dmsg_pk_from_sk(pk, sk);
    }
    return DMSG_EINVAL; /* only a broken rng gets here */
}

void dmsg_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = 0;
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long dmsg_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t cap)
{
    if (hex_len % 2 || hex_len / 2 > cap)
        return DMSG_EHEX;
    for (size_t i = 0; i < hex_len / 2; i++) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return DMSG_EHEX;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(hex_len / 2);
}

static int hex_exact(uint8_t *out, size_t n, const char *hex, size_t len)
{
    if (len != 2 * n)
        return DMSG_EHEX;
    return dmsg_hex_decode(hex, len, out, n) == (long)n ? 0 : DMSG_EHEX;
}

void dmsg_pk_to_hex(const dmsg_pk *pk, char out[DMSG_PK_HEX_LEN + 1])
{
    dmsg_hex_encode(pk->b, DMSG_PK_LEN, out);
}

void dmsg_sk_to_hex(const dmsg_sk *sk, char out[DMSG_SK_HEX_LEN + 1])
{
    dmsg_hex_encode(sk->b, DMSG_SK_LEN, out);
}

void dmsg_sig_to_hex(const dmsg_sig *sig, char out[DMSG_SIG_HEX_LEN + 1])
{
    dmsg_hex_encode(sig->b, DMSG_SIG_LEN, out);
}

static bool all_zero_digits(const char *hex, size_t len)
{
    /* Bounded by len: hex need not be NUL-terminated. */
    for (size_t i = 0; i < len; i++)
        if (hex[i] != '0')
            return false;
    return true;
}

int dmsg_pk_from_hex(dmsg_pk *pk, const char *hex, size_t len)
{
    /* The reference reads any all-'0' string as the null key. */
    if (len > 0 && all_zero_digits(hex, len)) {
        memset(pk->b, 0, DMSG_PK_LEN);
        return 0;
    }
    return hex_exact(pk->b, DMSG_PK_LEN, hex, len);
}

int dmsg_sk_from_hex(dmsg_sk *sk, const char *hex, size_t len)
{
    return hex_exact(sk->b, DMSG_SK_LEN, hex, len);
}

int dmsg_sig_from_hex(dmsg_sig *sig, const char *hex, size_t len)
{
    return hex_exact(sig->b, DMSG_SIG_LEN, hex, len);
}

void dmsg_sha256(uint8_t out[DMSG_SHA256_LEN], const uint8_t *in, size_t len)
{
    crypto_hash_sha256(out, in, len);
}

int dmsg_ecdh(uint8_t out[DMSG_ECDH_LEN], const dmsg_sk *sk, const dmsg_pk *pk)
{
    secp256k1_pubkey pub;
    if (pk_parse(&pub, pk) < 0 || dmsg_sk_validate(sk) < 0)
        return DMSG_EKEY;
    /* The default hash is SHA256(0x02|parity || x): the compressed shared point, hashed. */
    if (!secp256k1_ecdh(secp256k1_context_static, out, &pub, sk->b, NULL, NULL))
        return DMSG_EKEY;
    return 0;
}

int dmsg_noise_dh(uint8_t out[DMSG_NOISE_DH_LEN], const dmsg_sk *sk, const dmsg_pk *pk)
{
    int err = dmsg_ecdh(out, sk, pk);
    out[DMSG_ECDH_LEN] = 0;
    return err;
}

int dmsg_sign(dmsg_sig *sig, const dmsg_sk *sk, const uint8_t *payload, size_t len)
{
    static const uint8_t zero[DMSG_SHA256_LEN];
    uint8_t digest[DMSG_SHA256_LEN];
    dmsg_sha256(digest, payload, len);
    if (memcmp(digest, zero, sizeof digest) == 0)
        return DMSG_EINVAL;
    if (dmsg_sk_validate(sk) < 0)
        return DMSG_EKEY;
    signing_ctx s;
    int err = signing_ctx_open(&s);
    if (err < 0)
        return err;
    secp256k1_ecdsa_recoverable_signature rs;
    int ok = secp256k1_ecdsa_sign_recoverable(s.ctx, &rs, digest, sk->b, NULL, NULL);
    signing_ctx_close(&s);
    if (!ok)
        return DMSG_EKEY;
    int recid;
    secp256k1_ecdsa_recoverable_signature_serialize_compact(secp256k1_context_static, sig->b,
                                                             &recid, &rs);
    sig->b[64] = (uint8_t)recid;
    return 0;
}

int dmsg_recover(dmsg_pk *pk, const dmsg_sig *sig, const uint8_t *payload, size_t len)
{
    if (sig->b[64] >= 4)
        return DMSG_ESIG;
    secp256k1_ecdsa_recoverable_signature rs;
    if (!secp256k1_ecdsa_recoverable_signature_parse_compact(secp256k1_context_static, &rs,
                                                             sig->b, sig->b[64]))
        return DMSG_ESIG;
    uint8_t digest[DMSG_SHA256_LEN];
    dmsg_sha256(digest, payload, len);
    secp256k1_pubkey pub;
    if (!secp256k1_ecdsa_recover(secp256k1_context_static, &pub, &rs, digest))
        return DMSG_ESIG;
    pk_serialize(pk, &pub);
    return 0;
}

int dmsg_verify(const dmsg_pk *pk, const dmsg_sig *sig, const uint8_t *payload, size_t len)
{
    if (dmsg_pk_validate(pk) < 0)
        return DMSG_EKEY;
    /* The reference's malleability check: only the top bit of s, weaker than strict low-S. */
    if (sig->b[64] >= 4 || (sig->b[32] & 0x80))
        return DMSG_ESIG;
    dmsg_pk recovered;
    if (dmsg_recover(&recovered, sig, payload, len) < 0)
        return DMSG_ESIG;
    return dmsg_pk_equal(&recovered, pk) ? 0 : DMSG_ESIG;
}

bool dmsg_ct_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    return sodium_memcmp(a, b, len) == 0;
}

void dmsg_wipe(void *p, size_t len)
{
    sodium_memzero(p, len);
}
