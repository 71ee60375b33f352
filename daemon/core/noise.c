/* Noise XK and KK handshakes over secp256k1 as the dmsg reference runs them (§3.1–3.4, §7.1).
 *
 * Standard Noise symmetric state; the only dmsg-specific parts are the 33-byte DH output
 * (cipher.h) and the key assignment in split. The handshake is a small token interpreter so both
 * patterns and both roles share one code path. */
#include "dmsg/noise.h"

#include <sodium.h>
#include <string.h>

#include "dmsg/error.h"

enum token { T_END, T_E, T_S, T_EE, T_ES, T_SE, T_SS };

#define MAX_MESSAGES 3
#define MAX_TOKENS 4

typedef struct pattern_def {
    const char *name;
    uint8_t messages;
    uint8_t tokens[MAX_MESSAGES][MAX_TOKENS];
} pattern_def;

static const pattern_def patterns[] = {
    [DMSG_NOISE_XK] = { "Noise_XK_Secp256k1_ChaChaPoly_SHA256", 3,
                        { { T_E, T_ES, T_END }, { T_E, T_EE, T_END }, { T_S, T_SE, T_END } } },
    [DMSG_NOISE_KK] = { "Noise_KK_Secp256k1_ChaChaPoly_SHA256", 2,
                        { { T_E, T_ES, T_SS, T_END }, { T_E, T_EE, T_SE, T_END } } },
};

static const pattern_def *pattern_of(const dmsg_noise_hs *hs)
{
    return &patterns[hs->pattern];
}

/* Initiator writes the even-indexed messages. */
static bool we_write(const dmsg_noise_hs *hs, unsigned index)
{
    return (index % 2 == 0) == (hs->role == DMSG_NOISE_INITIATOR);
}

/* ---- symmetric state ---------------------------------------------------------------------- */

static void hmac2(uint8_t out[32], const uint8_t key[32], const uint8_t *a, size_t alen,
                  const uint8_t *b, size_t blen)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, 32);
    crypto_auth_hmacsha256_update(&st, a, alen);
    crypto_auth_hmacsha256_update(&st, b, blen);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

/* Noise HKDF with two outputs; o1/o2 may alias ck. */
static void hkdf(const uint8_t ck[32], const uint8_t *ikm, size_t ikm_len, uint8_t o1[32],
                 uint8_t o2[32])
{
    static const uint8_t one = 1, two = 2;
    uint8_t temp[32], t1[32], t2[32];
    hmac2(temp, ck, ikm, ikm_len, NULL, 0);
    hmac2(t1, temp, &one, 1, NULL, 0);
    hmac2(t2, temp, t1, 32, &two, 1);
    memcpy(o1, t1, 32);
    memcpy(o2, t2, 32);
    sodium_memzero(temp, sizeof temp);
    sodium_memzero(t1, sizeof t1);
    sodium_memzero(t2, sizeof t2);
}

static void mix_hash(dmsg_noise_hs *hs, const uint8_t *data, size_t len)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, hs->h, sizeof hs->h);
    crypto_hash_sha256_update(&st, data, len);
    crypto_hash_sha256_final(&st, hs->h);
}

static void mix_key(dmsg_noise_hs *hs, const uint8_t dh[DMSG_NOISE_DH_LEN])
{
    hkdf(hs->ck, dh, DMSG_NOISE_DH_LEN, hs->ck, hs->k);
    hs->n = 0;
    hs->has_k = true;
}

static void handshake_nonce(uint8_t out[12], uint64_t n)
{
    memset(out, 0, 4);
    for (int i = 0; i < 8; i++)
        out[4 + i] = (uint8_t)(n >> (8 * i));
}

/* out receives len (+16 with a key) bytes. */
static void encrypt_and_hash(dmsg_noise_hs *hs, const uint8_t *pt, size_t len, uint8_t *out)
{
    size_t out_len = len;
    if (hs->has_k) {
        uint8_t nonce[12];
        handshake_nonce(nonce, hs->n++);
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, out + len, NULL, pt, len, hs->h,
                                                           sizeof hs->h, NULL, nonce, hs->k);
        out_len += DMSG_NOISE_TAG_LEN;
    } else if (len > 0) {
        memmove(out, pt, len);
    }
    mix_hash(hs, out, out_len);
}

/* out may be NULL to authenticate only (handshake payloads we ignore). */
static int decrypt_and_hash(dmsg_noise_hs *hs, const uint8_t *in, size_t len, uint8_t *out)
{
    if (hs->has_k) {
        if (len < DMSG_NOISE_TAG_LEN)
            return DMSG_ESHORT;
        size_t pt_len = len - DMSG_NOISE_TAG_LEN;
        uint8_t nonce[12];
        handshake_nonce(nonce, hs->n++);
        if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, in, pt_len, in + pt_len,
                                                               hs->h, sizeof hs->h, nonce,
                                                               hs->k) != 0)
            return DMSG_EMAC;
    } else if (out && len > 0) {
        memcpy(out, in, len);
    }
    mix_hash(hs, in, len);
    return 0;
}

/* ---- tokens ------------------------------------------------------------------------------- */

static int dh_token(dmsg_noise_hs *hs, enum token t)
{
    bool initiator = hs->role == DMSG_NOISE_INITIATOR;
    const dmsg_sk *sk;
    const dmsg_pk *pk;
    switch (t) {
    case T_EE: sk = &hs->e_sk; pk = &hs->re; break;
    case T_ES: sk = initiator ? &hs->e_sk : &hs->s_sk; pk = initiator ? &hs->rs : &hs->re; break;
    case T_SE: sk = initiator ? &hs->s_sk : &hs->e_sk; pk = initiator ? &hs->re : &hs->rs; break;
    case T_SS: sk = &hs->s_sk; pk = &hs->rs; break;
    default: return DMSG_EINVAL;
    }
    uint8_t dh[DMSG_NOISE_DH_LEN];
    int err = dmsg_noise_dh(dh, sk, pk);
    if (err == 0)
        mix_key(hs, dh);
    sodium_memzero(dh, sizeof dh);
    return err;
}

static size_t sealed_len(bool has_k, size_t len)
{
    return len + (has_k ? DMSG_NOISE_TAG_LEN : 0);
}

/* Length of our next message, computed before any state changes so a short buffer is harmless. */
static size_t next_message_len(const dmsg_noise_hs *hs)
{
    const uint8_t *tokens = pattern_of(hs)->tokens[hs->msg_index];
    bool has_k = hs->has_k;
    size_t len = 0;
    for (int i = 0; tokens[i] != T_END; i++) {
        if (tokens[i] == T_E)
            len += DMSG_PK_LEN;
        else if (tokens[i] == T_S)
            len += sealed_len(has_k, DMSG_PK_LEN);
        else
            has_k = true;
    }
    return len + sealed_len(has_k, 0);
}

static void fail(dmsg_noise_hs *hs)
{
    dmsg_noise_hs_wipe(hs);
}

static void advance(dmsg_noise_hs *hs)
{
    hs->msg_index++;
    if (hs->msg_index == pattern_of(hs)->messages)
        hs->step = DMSG_NOISE_STEP_SPLIT;
    else
        hs->step = we_write(hs, hs->msg_index) ? DMSG_NOISE_STEP_WRITE : DMSG_NOISE_STEP_READ;
}

/* ---- initialisation ----------------------------------------------------------------------- */

static void initialize_symmetric(dmsg_noise_hs *hs)
{
    const char *name = pattern_of(hs)->name;
    /* Both names are longer than HASHLEN, so h = SHA256(name). */
    dmsg_sha256(hs->h, (const uint8_t *)name, strlen(name));
    memcpy(hs->ck, hs->h, sizeof hs->ck);
    mix_hash(hs, NULL, 0); /* empty prologue */
}

static void mix_premessages(dmsg_noise_hs *hs)
{
    bool initiator = hs->role == DMSG_NOISE_INITIATOR;
    const dmsg_pk *initiator_static = initiator ? &hs->s_pk : &hs->rs;
    const dmsg_pk *responder_static = initiator ? &hs->rs : &hs->s_pk;
    if (hs->pattern == DMSG_NOISE_KK)
        mix_hash(hs, initiator_static->b, DMSG_PK_LEN);
    mix_hash(hs, responder_static->b, DMSG_PK_LEN);
}

static int check_init_args(dmsg_noise_pattern pattern, dmsg_noise_role role,
                           const dmsg_sk *local_static, const dmsg_pk *remote_static,
                           const dmsg_rng *rng)
{
    if ((pattern != DMSG_NOISE_XK && pattern != DMSG_NOISE_KK) ||
        (role != DMSG_NOISE_INITIATOR && role != DMSG_NOISE_RESPONDER) || !local_static || !rng)
        return DMSG_EINVAL;
    bool remote_known = pattern == DMSG_NOISE_KK || role == DMSG_NOISE_INITIATOR;
    if (remote_known != (remote_static != NULL))
        return DMSG_EINVAL;
    if (remote_static && dmsg_pk_validate(remote_static) < 0)
        return DMSG_EKEY;
    return 0;
}

/* ---- public ------------------------------------------------------------------------------- */

int dmsg_noise_hs_init(dmsg_noise_hs *hs, dmsg_noise_pattern pattern, dmsg_noise_role role,
                       const dmsg_sk *local_static, const dmsg_pk *remote_static,
                       const dmsg_rng *rng)
{
    memset(hs, 0, sizeof *hs);
    hs->step = DMSG_NOISE_STEP_FAILED;
    int err = check_init_args(pattern, role, local_static, remote_static, rng);
    if (err < 0)
        return err;
    hs->pattern = (uint8_t)pattern;
    hs->role = (uint8_t)role;
    hs->s_sk = *local_static;
    if ((err = dmsg_pk_from_sk(&hs->s_pk, &hs->s_sk)) < 0 ||
        (err = dmsg_keypair_generate(&hs->e_pk, &hs->e_sk, rng)) < 0) {
        fail(hs);
        return err;
    }
    if (remote_static) {
        hs->rs = *remote_static;
        hs->has_rs = true;
    }
    initialize_symmetric(hs);
    mix_premessages(hs);
    hs->step = we_write(hs, 0) ? DMSG_NOISE_STEP_WRITE : DMSG_NOISE_STEP_READ;
    return 0;
}

dmsg_noise_step dmsg_noise_hs_next(const dmsg_noise_hs *hs)
{
    return (dmsg_noise_step)hs->step;
}

int dmsg_noise_hs_write(dmsg_noise_hs *hs, uint8_t *out, size_t cap, size_t *out_len)
{
    if (hs->step != DMSG_NOISE_STEP_WRITE)
        return DMSG_ESTATE;
    size_t need = next_message_len(hs);
    if (cap < need)
        return DMSG_EINVAL;
    const uint8_t *tokens = pattern_of(hs)->tokens[hs->msg_index];
    size_t pos = 0;
    for (int i = 0; tokens[i] != T_END; i++) {
        if (tokens[i] == T_E) {
            memcpy(out + pos, hs->e_pk.b, DMSG_PK_LEN);
            mix_hash(hs, hs->e_pk.b, DMSG_PK_LEN);
            pos += DMSG_PK_LEN;
        } else if (tokens[i] == T_S) {
            encrypt_and_hash(hs, hs->s_pk.b, DMSG_PK_LEN, out + pos);
            pos += sealed_len(hs->has_k, DMSG_PK_LEN);
        } else {
            int err = dh_token(hs, tokens[i]);
            if (err < 0) {
                fail(hs);
                return err;
            }
        }
    }
    encrypt_and_hash(hs, NULL, 0, out + pos);
    *out_len = need;
    advance(hs);
    return 0;
}

int dmsg_noise_hs_write_framed(dmsg_noise_hs *hs, uint8_t *out, size_t cap, size_t *out_len)
{
    if (cap < DMSG_NOISE_LEN_PREFIX)
        return hs->step == DMSG_NOISE_STEP_WRITE ? DMSG_EINVAL : DMSG_ESTATE;
    size_t len;
    int err = dmsg_noise_hs_write(hs, out + DMSG_NOISE_LEN_PREFIX, cap - DMSG_NOISE_LEN_PREFIX,
                                  &len);
    if (err < 0)
        return err;
    out[0] = (uint8_t)(len >> 8);
    out[1] = (uint8_t)len;
    *out_len = len + DMSG_NOISE_LEN_PREFIX;
    return 0;
}

static int read_ephemeral(dmsg_noise_hs *hs, const uint8_t *in)
{
    memcpy(hs->re.b, in, DMSG_PK_LEN);
    /* The reference panics on a point that is not on the curve; we refuse it. */
    if (dmsg_pk_validate(&hs->re) < 0)
        return DMSG_EKEY;
    mix_hash(hs, hs->re.b, DMSG_PK_LEN);
    return 0;
}

static int read_static(dmsg_noise_hs *hs, const uint8_t *in, size_t len)
{
    dmsg_pk rs;
    int err = decrypt_and_hash(hs, in, len, rs.b);
    if (err < 0)
        return err;
    if (dmsg_pk_validate(&rs) < 0)
        return DMSG_EKEY;
    hs->rs = rs;
    hs->has_rs = true;
    return 0;
}

static int read_tokens(dmsg_noise_hs *hs, const uint8_t *msg, size_t len)
{
    const uint8_t *tokens = pattern_of(hs)->tokens[hs->msg_index];
    size_t pos = 0;
    for (int i = 0; tokens[i] != T_END; i++) {
        int err;
        if (tokens[i] == T_E || tokens[i] == T_S) {
            size_t n = tokens[i] == T_E ? DMSG_PK_LEN : sealed_len(hs->has_k, DMSG_PK_LEN);
            if (len - pos < n)
                return DMSG_ESHORT;
            err = tokens[i] == T_E ? read_ephemeral(hs, msg + pos) : read_static(hs, msg + pos, n);
            pos += n;
        } else {
            err = dh_token(hs, tokens[i]);
        }
        if (err < 0)
            return err;
    }
    /* The payload: authenticated, then ignored (a PQ offer from newer peers, answered
     * classically by our empty payload). */
    return decrypt_and_hash(hs, msg + pos, len - pos, NULL);
}

int dmsg_noise_hs_read(dmsg_noise_hs *hs, const uint8_t *msg, size_t len)
{
    if (hs->step != DMSG_NOISE_STEP_READ)
        return DMSG_ESTATE;
    int err = len > DMSG_NOISE_FRAME_MAX ? DMSG_ETOOBIG : read_tokens(hs, msg, len);
    if (err < 0) {
        fail(hs);
        return err;
    }
    advance(hs);
    return 0;
}

int dmsg_noise_hs_split(dmsg_noise_hs *hs, dmsg_noise_tx *tx, dmsg_noise_rx *rx)
{
    if (hs->step != DMSG_NOISE_STEP_SPLIT)
        return DMSG_ESTATE;
    uint8_t k1[DMSG_NOISE_KEY_LEN], k2[DMSG_NOISE_KEY_LEN];
    hkdf(hs->ck, NULL, 0, k1, k2);
    /* dmsg's wrapper: whoever writes the final message sends with k2 (spec §3.4). */
    bool wrote_last = we_write(hs, pattern_of(hs)->messages - 1u);
    dmsg_noise_tx_init(tx, wrote_last ? k2 : k1);
    dmsg_noise_rx_init(rx, wrote_last ? k1 : k2,
                       hs->pattern == DMSG_NOISE_XK ? DMSG_NOISE_ANY_ORDER : DMSG_NOISE_INCREASING);
    sodium_memzero(k1, sizeof k1);
    sodium_memzero(k2, sizeof k2);
    sodium_memzero(hs->ck, sizeof hs->ck);
    sodium_memzero(hs->k, sizeof hs->k);
    sodium_memzero(&hs->s_sk, sizeof hs->s_sk);
    sodium_memzero(&hs->e_sk, sizeof hs->e_sk);
    hs->has_k = false;
    hs->step = DMSG_NOISE_STEP_DONE;
    return 0;
}

int dmsg_noise_hs_remote_static(const dmsg_noise_hs *hs, dmsg_pk *out)
{
    if (!hs->has_rs || hs->step == DMSG_NOISE_STEP_FAILED)
        return DMSG_ESTATE;
    *out = hs->rs;
    return 0;
}

void dmsg_noise_hs_hash(const dmsg_noise_hs *hs, uint8_t out[DMSG_NOISE_HASH_LEN])
{
    memcpy(out, hs->h, DMSG_NOISE_HASH_LEN);
}

void dmsg_noise_hs_chaining_key(const dmsg_noise_hs *hs, uint8_t out[DMSG_NOISE_HASH_LEN])
{
    memcpy(out, hs->ck, DMSG_NOISE_HASH_LEN);
}

void dmsg_noise_hs_wipe(dmsg_noise_hs *hs)
{
    sodium_memzero(hs, sizeof *hs);
    hs->step = DMSG_NOISE_STEP_FAILED;
}
