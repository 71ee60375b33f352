/* dmsg's transport encryption after the Noise handshake (spec §3.5, §3.6, §7.2).
 *
 * Not Noise CipherState: the nonce travels on the wire (BE64) and also forms the AEAD nonce
 * (00000000 || LE64), the AD is empty, and the receiver checks the nonce itself: a replay window
 * for session objects (they may arrive out of order), strictly increasing for stream data. */
#include "dmsg/noise.h"

#include <sodium.h>
#include <string.h>

#include "dmsg/error.h"

#define AEAD_NONCE_LEN 12

static void put_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

static void aead_nonce(uint8_t out[AEAD_NONCE_LEN], uint64_t n)
{
    memset(out, 0, 4);
    for (int i = 0; i < 8; i++)
        out[4 + i] = (uint8_t)(n >> (8 * i));
}

void dmsg_noise_tx_init(dmsg_noise_tx *tx, const uint8_t key[DMSG_NOISE_KEY_LEN])
{
    memcpy(tx->key, key, DMSG_NOISE_KEY_LEN);
    tx->counter = 0;
}

void dmsg_noise_rx_init(dmsg_noise_rx *rx, const uint8_t key[DMSG_NOISE_KEY_LEN],
                        dmsg_noise_order order)
{
    memset(rx, 0, sizeof *rx);
    memcpy(rx->key, key, DMSG_NOISE_KEY_LEN);
    rx->order = (uint8_t)order;
}

void dmsg_noise_tx_wipe(dmsg_noise_tx *tx)
{
    sodium_memzero(tx, sizeof *tx);
}

void dmsg_noise_rx_wipe(dmsg_noise_rx *rx)
{
    sodium_memzero(rx, sizeof *rx);
}

/* ---- sealing ------------------------------------------------------------------------------ */

/* out has room for len + 24 bytes; pt is out + 8 or disjoint from out. */
static int seal_body(dmsg_noise_tx *tx, const uint8_t *pt, size_t len, uint8_t *out)
{
    if (tx->counter == UINT64_MAX)
        return DMSG_ELIMIT;
    uint64_t n = ++tx->counter;
    uint8_t nonce[AEAD_NONCE_LEN];
    aead_nonce(nonce, n);
    uint8_t *ct = out + DMSG_NOISE_NONCE_LEN;
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(ct, ct + len, NULL, pt, len, NULL, 0,
                                                       NULL, nonce, tx->key);
    put_be64(out, n);
    return 0;
}

int dmsg_noise_seal(dmsg_noise_tx *tx, const uint8_t *pt, size_t len, uint8_t *out, size_t cap,
                    size_t *out_len)
{
    if (cap < DMSG_NOISE_OVERHEAD || len > cap - DMSG_NOISE_OVERHEAD)
        return DMSG_EINVAL;
    int err = seal_body(tx, pt, len, out);
    if (err == 0)
        *out_len = len + DMSG_NOISE_OVERHEAD;
    return err;
}

int dmsg_noise_seal_framed(dmsg_noise_tx *tx, const uint8_t *pt, size_t len, uint8_t *out,
                           size_t cap, size_t *out_len)
{
    if (len > DMSG_NOISE_OBJECT_FRAME_MAX - DMSG_NOISE_OVERHEAD)
        return DMSG_ETOOBIG;
    if (cap < len + DMSG_NOISE_FRAMED_OVERHEAD)
        return DMSG_EINVAL;
    int err = seal_body(tx, pt, len, out + DMSG_NOISE_LEN_PREFIX);
    if (err < 0)
        return err;
    size_t body = len + DMSG_NOISE_OVERHEAD;
    out[0] = (uint8_t)(body >> 8);
    out[1] = (uint8_t)body;
    *out_len = body + DMSG_NOISE_LEN_PREFIX;
    return 0;
}

size_t dmsg_noise_stream_sealed_len(size_t len)
{
    size_t frames = len / DMSG_NOISE_CHUNK_MAX + (len % DMSG_NOISE_CHUNK_MAX != 0);
    if (frames > (SIZE_MAX - len) / DMSG_NOISE_FRAMED_OVERHEAD)
        return 0;
    return len + frames * DMSG_NOISE_FRAMED_OVERHEAD;
}

int dmsg_noise_seal_stream(dmsg_noise_tx *tx, const uint8_t *pt, size_t len, uint8_t *out,
                           size_t cap, size_t *out_len)
{
    size_t need = dmsg_noise_stream_sealed_len(len);
    if (len > 0 && need == 0)
        return DMSG_ETOOBIG;
    if (cap < need)
        return DMSG_EINVAL;
    size_t pos = 0;
    for (size_t off = 0; off < len;) {
        size_t chunk = len - off < DMSG_NOISE_CHUNK_MAX ? len - off : DMSG_NOISE_CHUNK_MAX;
        size_t written;
        int err = dmsg_noise_seal_framed(tx, pt + off, chunk, out + pos, cap - pos, &written);
        if (err < 0)
            return err;
        off += chunk;
        pos += written;
    }
    *out_len = pos;
    return 0;
}

/* ---- opening ------------------------------------------------------------------------------ */

#define WINDOW_BITS (DMSG_NOISE_WINDOW_WORDS * 64)

static bool window_has(const dmsg_noise_rx *rx, uint64_t n)
{
    uint64_t bit = n % WINDOW_BITS;
    return rx->seen[bit / 64] >> (bit % 64) & 1;
}

static int check_nonce(const dmsg_noise_rx *rx, uint64_t n)
{
    if (rx->order == DMSG_NOISE_INCREASING)
        return n > rx->top ? 0 : DMSG_ENONCE;
    if (n == 0)
        return DMSG_EREPLAY;
    if (n > rx->top)
        return 0;
    if (rx->top - n >= DMSG_NOISE_REPLAY_WINDOW || window_has(rx, n))
        return DMSG_EREPLAY;
    return 0;
}

/* The bitmap is one word longer than the window so that sliding can clear whole words while
 * every nonce within DMSG_NOISE_REPLAY_WINDOW of the top keeps its bit. */
static void window_slide(dmsg_noise_rx *rx, uint64_t n)
{
    uint64_t from = rx->top / 64, to = n / 64;
    uint64_t words = to - from < DMSG_NOISE_WINDOW_WORDS ? to - from : DMSG_NOISE_WINDOW_WORDS;
    for (uint64_t i = 1; i <= words; i++)
        rx->seen[(from + i) % DMSG_NOISE_WINDOW_WORDS] = 0;
    rx->top = n;
}

static void accept_nonce(dmsg_noise_rx *rx, uint64_t n)
{
    if (rx->order == DMSG_NOISE_INCREASING) {
        rx->top = n;
        return;
    }
    if (n > rx->top)
        window_slide(rx, n);
    uint64_t bit = n % WINDOW_BITS;
    rx->seen[bit / 64] |= (uint64_t)1 << (bit % 64);
}

/* Checks the frame and its nonce; on success *n and *ct_len describe it. */
static int open_prepare(const dmsg_noise_rx *rx, const uint8_t *body, size_t len, uint64_t *n,
                        size_t *ct_len)
{
    if (len < DMSG_NOISE_OVERHEAD)
        return DMSG_ESHORT;
    *n = get_be64(body);
    *ct_len = len - DMSG_NOISE_OVERHEAD;
    return check_nonce(rx, *n);
}

static int open_into(dmsg_noise_rx *rx, const uint8_t *body, uint64_t n, size_t ct_len,
                     uint8_t *out)
{
    uint8_t nonce[AEAD_NONCE_LEN];
    aead_nonce(nonce, n);
    const uint8_t *ct = body + DMSG_NOISE_NONCE_LEN;
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, ct, ct_len, ct + ct_len,
                                                           NULL, 0, nonce, rx->key) != 0)
        return DMSG_EMAC;
    /* Only an authentic frame may move the window, or forgeries could burn nonces. */
    accept_nonce(rx, n);
    return 0;
}

int dmsg_noise_open(dmsg_noise_rx *rx, uint8_t *body, size_t len, uint8_t **pt, size_t *pt_len)
{
    uint64_t n;
    size_t ct_len;
    int err = open_prepare(rx, body, len, &n, &ct_len);
    if (err == 0)
        err = open_into(rx, body, n, ct_len, body + DMSG_NOISE_NONCE_LEN);
    if (err < 0)
        return err;
    *pt = body + DMSG_NOISE_NONCE_LEN;
    *pt_len = ct_len;
    return 0;
}

int dmsg_noise_open_to(dmsg_noise_rx *rx, const uint8_t *body, size_t len, uint8_t *out,
                       size_t cap, size_t *pt_len)
{
    uint64_t n;
    size_t ct_len;
    int err = open_prepare(rx, body, len, &n, &ct_len);
    if (err == 0 && cap < ct_len)
        err = DMSG_EINVAL;
    if (err == 0)
        err = open_into(rx, body, n, ct_len, out);
    if (err < 0)
        return err;
    *pt_len = ct_len;
    return 0;
}
