/* The frame parser fed in fuzzer-chosen chunks must agree with a one-shot parse of the same
 * bytes, and every frame is then opened with fixed keys under both receive orders.
 *
 * Input: [max selector][chunk seed] bytes... Frames sealed with the two keys below (session A's
 * client send key and KK A's send key from the vectors) open successfully, so seeds taken from
 * noise_xk.json / stream.json reach the decryption path. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/noise.h"

static const uint8_t session_key[32] = {
    0x2a, 0x4f, 0x18, 0x76, 0x96, 0x52, 0xee, 0x27, 0x2f, 0x3c, 0x71, 0xf6, 0x45, 0x2d, 0xa2, 0x28,
    0x26, 0xf7, 0x7f, 0x07, 0x81, 0x7e, 0x48, 0x78, 0x0d, 0xb1, 0xe3, 0xbe, 0x9b, 0x63, 0x26, 0xd2
};
static const uint8_t stream_key[32] = {
    0x98, 0x5b, 0x9a, 0x0a, 0xac, 0xee, 0x01, 0x83, 0xea, 0xa6, 0x3f, 0x60, 0x2a, 0xc7, 0x81, 0x26,
    0xe4, 0x9f, 0x82, 0xfe, 0x0a, 0x71, 0x55, 0xaa, 0x3f, 0xec, 0x65, 0x91, 0x69, 0x70, 0x24, 0x0d
};

#define MAX_FRAMES 4096

typedef struct parsed {
    size_t off[MAX_FRAMES], len[MAX_FRAMES];
    size_t count;
    int end;          /* DMSG_EAGAIN or DMSG_ETOOBIG */
    size_t pending;
} parsed;

static void parse_whole(uint8_t *in, size_t len, size_t max, uint8_t *buf, parsed *p)
{
    dmsg_noise_framer fr;
    if (dmsg_noise_framer_init(&fr, max, buf, max) != 0)
        abort();
    size_t pos = 0;
    p->count = 0;
    for (;;) {
        uint8_t *frame;
        size_t used, frame_len;
        int rc = dmsg_noise_framer_next(&fr, in + pos, len - pos, &used, &frame, &frame_len);
        if (used > len - pos)
            abort();
        pos += used;
        if (rc != 0) {
            p->end = rc;
            break;
        }
        /* Input given whole is never copied. */
        if (frame < in || frame + frame_len > in + len || p->count == MAX_FRAMES)
            abort();
        p->off[p->count] = (size_t)(frame - in);
        p->len[p->count++] = frame_len;
    }
    p->pending = dmsg_noise_framer_pending(&fr);
    if (p->end == DMSG_EAGAIN && pos != len)
        abort();
}

static void open_frame(dmsg_noise_rx *any, dmsg_noise_rx *inc, uint8_t *frame, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1), *pt;
    size_t pt_len;
    memcpy(copy, frame, len);
    int rc = dmsg_noise_open_to(any, frame, len, copy, len, &pt_len);
    if (rc == 0 && pt_len != len - DMSG_NOISE_OVERHEAD)
        abort();
    if (rc != 0 && rc != DMSG_ESHORT && rc != DMSG_EREPLAY && rc != DMSG_EMAC)
        abort();
    rc = dmsg_noise_open(inc, frame, len, &pt, &pt_len);
    if (rc == 0 && (pt != frame + DMSG_NOISE_NONCE_LEN || pt_len != len - DMSG_NOISE_OVERHEAD))
        abort();
    if (rc != 0 && rc != DMSG_ESHORT && rc != DMSG_ENONCE && rc != DMSG_EMAC)
        abort();
    free(copy);
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
    if (size < 2)
        return 0;
    size_t max = data[0] & 1 ? DMSG_NOISE_OBJECT_FRAME_MAX : DMSG_NOISE_FRAME_MAX;
    uint32_t seed = data[1] | 1u;
    size_t len = size - 2;
    uint8_t *whole = malloc(len + 1), *chunked = malloc(len + 1), *buf = malloc(max);
    memcpy(whole, data + 2, len);
    memcpy(chunked, data + 2, len);
    static parsed ref;
    parse_whole(whole, len, max, buf, &ref);

    dmsg_noise_framer fr;
    dmsg_noise_rx any, inc;
    dmsg_noise_rx_init(&any, session_key, DMSG_NOISE_ANY_ORDER);
    dmsg_noise_rx_init(&inc, stream_key, DMSG_NOISE_INCREASING);
    if (dmsg_noise_framer_init(&fr, max, buf, max) != 0)
        abort();
    size_t pos = 0, frames = 0;
    int end = DMSG_EAGAIN;
    while (pos < len && end == DMSG_EAGAIN) {
        seed ^= seed << 13, seed ^= seed >> 17, seed ^= seed << 5;
        size_t chunk = 1 + seed % (data[0] & 2 ? 7 : 300);
        if (chunk > len - pos)
            chunk = len - pos;
        uint8_t *p = chunked + pos;
        size_t left = chunk;
        while (left > 0) {
            uint8_t *frame;
            size_t used, frame_len;
            int rc = dmsg_noise_framer_next(&fr, p, left, &used, &frame, &frame_len);
            if (used > left)
                abort();
            p += used;
            left -= used;
            if (rc == DMSG_EAGAIN) {
                if (left != 0)
                    abort();
                break;
            }
            if (rc != 0) {
                end = rc;
                break;
            }
            /* Same frames as the one-shot parse, byte for byte. */
            if (frames >= ref.count || frame_len != ref.len[frames] ||
                memcmp(frame, whole + ref.off[frames], frame_len) != 0)
                abort();
            frames++;
            open_frame(&any, &inc, frame, frame_len);
        }
        pos += chunk - left;
    }
    if (frames != ref.count || end != ref.end)
        abort();
    if (end == DMSG_EAGAIN && dmsg_noise_framer_pending(&fr) != ref.pending)
        abort();
    free(whole);
    free(chunked);
    free(buf);
    return 0;
}
