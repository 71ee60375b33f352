/* Reassembly of u16-BE-length-prefixed frames (spec §3.6) from input split at any byte.
 *
 * A body that arrives whole in one input is handed out in place; only bodies that straddle
 * inputs are copied into the caller's buffer. The framer never reads past the frame it
 * completes, so the bytes after the last handshake message stay with the caller (for yamux). */
#include "dmsg/noise.h"

#include <string.h>

#include "dmsg/error.h"

int dmsg_noise_framer_init(dmsg_noise_framer *fr, size_t max, uint8_t *buf, size_t cap)
{
    memset(fr, 0, sizeof *fr);
    if (max > DMSG_NOISE_OBJECT_FRAME_MAX || cap < max || (max > 0 && !buf)) {
        fr->failed = true;
        return DMSG_EINVAL;
    }
    fr->buf = buf;
    fr->cap = cap;
    fr->max = max;
    return 0;
}

static void frame_done(dmsg_noise_framer *fr)
{
    fr->hdr_have = 0;
    fr->have = 0;
    fr->body_len = 0;
}

/* Takes header bytes from in; 0 once the header is complete, DMSG_EAGAIN when in ran out. */
static int take_header(dmsg_noise_framer *fr, const uint8_t *in, size_t len, size_t *pos)
{
    while (fr->hdr_have < DMSG_NOISE_LEN_PREFIX) {
        if (*pos == len)
            return DMSG_EAGAIN;
        fr->hdr[fr->hdr_have++] = in[(*pos)++];
        if (fr->hdr_have == DMSG_NOISE_LEN_PREFIX) {
            fr->body_len = (size_t)fr->hdr[0] << 8 | fr->hdr[1];
            if (fr->body_len > fr->max) {
                fr->failed = true;
                return DMSG_ETOOBIG;
            }
        }
    }
    return 0;
}

int dmsg_noise_framer_next(dmsg_noise_framer *fr, uint8_t *in, size_t len, size_t *consumed,
                           uint8_t **frame, size_t *frame_len)
{
    *consumed = 0;
    if (fr->failed)
        return DMSG_ESTATE;
    if (len == 0) /* a frame is always handed out as soon as its last byte arrives */
        return DMSG_EAGAIN;
    size_t pos = 0;
    int err = take_header(fr, in, len, &pos);
    *consumed = pos;
    if (err < 0)
        return err;
    size_t avail = len - pos;
    if (fr->have == 0 && avail >= fr->body_len) {
        *frame = in + pos;
        *frame_len = fr->body_len;
        *consumed = pos + fr->body_len;
        frame_done(fr);
        return 0;
    }
    size_t take = fr->body_len - fr->have;
    if (take > avail)
        take = avail;
    if (take > 0)
        memcpy(fr->buf + fr->have, in + pos, take);
    fr->have += take;
    *consumed = pos + take;
    if (fr->have < fr->body_len)
        return DMSG_EAGAIN;
    *frame = fr->buf;
    *frame_len = fr->body_len;
    frame_done(fr);
    return 0;
}

size_t dmsg_noise_framer_pending(const dmsg_noise_framer *fr)
{
    return fr->hdr_have + fr->have;
}
