/* End-to-end stream reader: frame reassembly plus KK transport decryption (see e2e.h). */
#include "dmsg/e2e.h"

#include <string.h>

#include "dmsg/error.h"

int dmsg_e2e_reader_init(dmsg_e2e_reader *r, const dmsg_noise_rx *rx)
{
    memset(r, 0, sizeof *r);
    if (rx->order != DMSG_NOISE_INCREASING) {
        r->err = DMSG_EINVAL;
        return DMSG_EINVAL;
    }
    r->rx = *rx;
    return dmsg_noise_framer_init(&r->framer, DMSG_NOISE_FRAME_MAX, r->partial,
                                  sizeof r->partial);
}

static int fail(dmsg_e2e_reader *r, int err)
{
    r->err = err;
    return err;
}

int dmsg_e2e_reader_feed(dmsg_e2e_reader *r, const uint8_t *in, size_t len, size_t *consumed,
                         uint8_t *out, size_t cap, size_t *out_len)
{
    *consumed = 0;
    *out_len = 0;
    if (r->err)
        return r->err;
    if (cap < DMSG_NOISE_CHUNK_MAX)
        return DMSG_EINVAL;
    size_t pos = 0, produced = 0;
    while (pos < len && cap - produced >= DMSG_NOISE_CHUNK_MAX) {
        size_t used = 0, body_len = 0;
        uint8_t *body = NULL;
        /* The framer hands out a pointer into its input but never writes through it; we only
         * read the body (open_to), so the caller's const input stays untouched. */
        int err = dmsg_noise_framer_next(&r->framer, (uint8_t *)(uintptr_t)(in + pos),
                                         len - pos, &used, &body, &body_len);
        pos += used;
        if (err == DMSG_EAGAIN)
            break;
        if (err < 0)
            return fail(r, err);
        size_t pt_len = 0;
        err = dmsg_noise_open_to(&r->rx, body, body_len, out + produced, cap - produced,
                                 &pt_len);
        if (err < 0)
            return fail(r, err);
        produced += pt_len; /* an empty frame adds nothing: skipped, as the reference does */
    }
    *consumed = pos;
    *out_len = produced;
    return 0;
}

size_t dmsg_e2e_reader_pending(const dmsg_e2e_reader *r)
{
    return dmsg_noise_framer_pending(&r->framer);
}

void dmsg_e2e_reader_wipe(dmsg_e2e_reader *r)
{
    dmsg_noise_rx_wipe(&r->rx);
    dmsg_wipe(r->partial, sizeof r->partial);
}
