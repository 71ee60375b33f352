/* A handshake side fed an arbitrary peer message: never crashes, refuses with a handshake error
 * code and a wiped, failed state, or completes and yields working transport keys.
 *
 * Input: [mode] message...
 *   mode % 5 == 0  XK responder reads message 1
 *              1  XK responder reads session A's message 1, answers, then reads message 3
 *              2  KK responder reads message 1
 *              3  XK initiator writes message 1, then reads message 2
 *              4  KK initiator writes message 1, then reads message 2
 * Keys and ephemerals are those of noise_xk.json session A and stream.json kk, so the vectors'
 * messages (the seeds) complete the handshake. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/noise.h"

#define CLIENT_A_SK "a82e0783edc273a26797cadb76bd2cfecfcb7f073eec6337f213f3d384647b6b"
#define CLIENT_A_PK "039366d11f49d387207971fca013c625f02bb7bc17adb48976810d61a3467d3084"
#define CLIENT_B_SK "4b8de993f2d71d2fc8eabebf465e15e774837fcc5662b995ffd330915f5d9fc4"
#define CLIENT_B_PK "0287625ba4d266f71f39109b1477623c9e7163bd7d6c154431f5a2ad2b2ef257b7"
#define SERVER_SK "081f6a4e76f9915caf0e87b35aee4886bd4ee5d166ac19a99c715553d7385c96"
#define SERVER_PK "026f4f524720230f86b3047e69fad7b48e09da1119588b051d6055a83d83a31ea9"
#define XK_EPH_CLIENT "5db64cdf869c1ea49e183bde767838cd51518223fc796170929c68860b969136"
#define XK_EPH_SERVER "4fcce65a3c60be8757753622343859168c349d3e50172b7600d7aa2ac394752e"
#define KK_EPH_A "bde549ca9711a4ff4897f71e9d578f19aba33b2a79edd650f24422159ef70896"
#define KK_EPH_B "9625b4ef6797e5d23682798c31259460891c12df2c1e1b3e346ad3eb7fb2207b"
#define XK_MSG1                                                                                 \
    "02695c5603d466951511799ce0bf7751c4eba7fcd61074d7a5c00427beb64c0afb162ed10a6dea5923a18cf9" \
    "ba6a28ceed"

static void fill_fixed(void *ctx, uint8_t *out, size_t len)
{
    if (dmsg_hex_decode(ctx, 2 * len, out, len) != (long)len)
        abort();
}

static dmsg_sk sk_of(const char *hex)
{
    dmsg_sk sk;
    if (dmsg_sk_from_hex(&sk, hex, strlen(hex)) != 0)
        abort();
    return sk;
}

static dmsg_pk pk_of(const char *hex)
{
    dmsg_pk pk;
    if (dmsg_pk_from_hex(&pk, hex, strlen(hex)) != 0)
        abort();
    return pk;
}

static void init(dmsg_noise_hs *hs, dmsg_noise_pattern pattern, dmsg_noise_role role,
                 const char *sk, const char *remote, const char *eph)
{
    dmsg_sk s = sk_of(sk);
    dmsg_pk r = remote ? pk_of(remote) : (dmsg_pk){ { 0 } };
    dmsg_rng rng = { fill_fixed, (void *)eph };
    if (dmsg_noise_hs_init(hs, pattern, role, &s, remote ? &r : NULL, &rng) != 0)
        abort();
}

static void write_next(dmsg_noise_hs *hs)
{
    uint8_t out[DMSG_NOISE_HS_MSG_MAX + DMSG_NOISE_LEN_PREFIX];
    size_t len;
    if (dmsg_noise_hs_write_framed(hs, out, sizeof out, &len) != 0)
        abort();
}

/* A refused message leaves a failed handshake with nothing secret in it. */
static void check_refusal(const dmsg_noise_hs *hs, int rc)
{
    if (rc != DMSG_ESHORT && rc != DMSG_ETOOBIG && rc != DMSG_EKEY && rc != DMSG_EMAC)
        abort();
    static const uint8_t zero[32];
    if (dmsg_noise_hs_next(hs) != DMSG_NOISE_STEP_FAILED || memcmp(hs->s_sk.b, zero, 32) != 0 ||
        memcmp(hs->e_sk.b, zero, 32) != 0 || memcmp(hs->k, zero, 32) != 0)
        abort();
}

/* Completes the handshake if the fuzzer got there: our own transport must round-trip. */
static void finish(dmsg_noise_hs *hs)
{
    if (dmsg_noise_hs_next(hs) == DMSG_NOISE_STEP_WRITE)
        write_next(hs);
    if (dmsg_noise_hs_next(hs) != DMSG_NOISE_STEP_SPLIT)
        return;
    dmsg_noise_tx tx;
    dmsg_noise_rx rx, self;
    if (dmsg_noise_hs_split(hs, &tx, &rx) != 0)
        abort();
    dmsg_noise_rx_init(&self, tx.key, rx.order);
    uint8_t frame[64], *pt;
    size_t len, pt_len;
    if (dmsg_noise_seal(&tx, (const uint8_t *)"ping", 4, frame, sizeof frame, &len) != 0 ||
        dmsg_noise_open(&self, frame, len, &pt, &pt_len) != 0 || pt_len != 4 ||
        memcmp(pt, "ping", 4) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        if (dmsg_cipher_init() != 0)
            abort();
        ready = true;
    }
    if (size < 1)
        return 0;
    const uint8_t *msg = data + 1;
    size_t len = size - 1;
    dmsg_noise_hs hs;
    switch (data[0] % 5) {
    case 0:
        init(&hs, DMSG_NOISE_XK, DMSG_NOISE_RESPONDER, SERVER_SK, NULL, XK_EPH_SERVER);
        break;
    case 1: {
        uint8_t m1[49];
        init(&hs, DMSG_NOISE_XK, DMSG_NOISE_RESPONDER, SERVER_SK, NULL, XK_EPH_SERVER);
        if (dmsg_hex_decode(XK_MSG1, strlen(XK_MSG1), m1, sizeof m1) != 49 ||
            dmsg_noise_hs_read(&hs, m1, sizeof m1) != 0)
            abort();
        write_next(&hs);
        break;
    }
    case 2:
        init(&hs, DMSG_NOISE_KK, DMSG_NOISE_RESPONDER, CLIENT_B_SK, CLIENT_A_PK, KK_EPH_B);
        break;
    case 3:
        init(&hs, DMSG_NOISE_XK, DMSG_NOISE_INITIATOR, CLIENT_A_SK, SERVER_PK, XK_EPH_CLIENT);
        write_next(&hs);
        break;
    default:
        init(&hs, DMSG_NOISE_KK, DMSG_NOISE_INITIATOR, CLIENT_A_SK, CLIENT_B_PK, KK_EPH_A);
        write_next(&hs);
        break;
    }
    int rc = dmsg_noise_hs_read(&hs, msg, len);
    if (rc == 0) {
        dmsg_pk remote;
        if (dmsg_noise_hs_remote_static(&hs, &remote) != 0 && data[0] % 5 == 1)
            abort();
        finish(&hs);
    } else {
        check_refusal(&hs, rc);
    }
    dmsg_noise_hs_wipe(&hs);
    return 0;
}
