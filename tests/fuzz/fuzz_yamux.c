/* A server-role yamux session fed arbitrary bytes. The first input byte picks the limits and
 * seeds a small PRNG that picks the chunk sizes and the API calls made between chunks (accept,
 * consume, write, close, reset, ping, tick, open, go-away); the rest is the peer's bytes.
 * After every step the session's bookkeeping must stay consistent. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "dmsg/error.h"
#include "dmsg/yamux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t next_rand(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

static void check_consistency(const dmsg_yamux *y, const dmsg_yamux_config *cfg)
{
    dmsg_yamux_stats st;
    dmsg_yamux_get_stats(y, &st);
    if (st.streams > cfg->max_streams || st.pending_accept > cfg->accept_backlog ||
        st.awaiting_ack > cfg->accept_backlog || st.pending_accept + st.awaiting_ack > st.streams)
        abort();
    if ((st.streams == 0) != (st.table_slots == 0) ||
        (uint64_t)st.streams * 4 > (uint64_t)st.table_slots * 3)
        abort();
    size_t cursor = 0, count = 0;
    uint32_t id;
    while (dmsg_yamux_next_stream(y, &cursor, &id, NULL) == 0) {
        dmsg_yamux_stream_info info;
        if (dmsg_yamux_stream_info_get(y, id, &info) != 0)
            abort();
        /* The rest of the window is payload still arriving in the current frame. */
        if ((uint64_t)info.recv_window + info.buffered + info.uncredited > cfg->stream_window)
            abort();
        count++;
    }
    if (count != st.streams)
        abort();
}

/* Some live stream, picked by r, or 0. */
static uint32_t pick_stream(const dmsg_yamux *y, uint32_t r)
{
    size_t cursor = 0;
    uint32_t id, chosen = 0, n = 0;
    while (dmsg_yamux_next_stream(y, &cursor, &id, NULL) == 0)
        if (r % ++n == 0)
            chosen = id;
    return chosen;
}

static void on_event(dmsg_yamux *y, const dmsg_yamux_event *ev, const uint8_t *chunk, size_t len,
                     uint32_t *rng)
{
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    size_t flen;
    if (ev->reply_len != 0 && ev->reply_len != DMSG_YAMUX_HDR_LEN)
        abort();
    switch (ev->type) {
    case DMSG_YAMUX_EV_OPENED:
        if (next_rand(rng) % 4)
            (void)dmsg_yamux_accept(y, ev->stream_id, f);
        else
            (void)dmsg_yamux_reset(y, ev->stream_id, f);
        break;
    case DMSG_YAMUX_EV_DATA:
        if (ev->len == 0 || ev->data < chunk || ev->data + ev->len > chunk + len)
            abort();
        if (next_rand(rng) % 2 &&
            dmsg_yamux_consume(y, ev->stream_id, (uint32_t)ev->len, f, &flen) != 0)
            abort();
        break;
    case DMSG_YAMUX_EV_FIN:
    case DMSG_YAMUX_EV_RESET: {
        dmsg_yamux_stream_info info;
        if (ev->closed != (dmsg_yamux_stream_info_get(y, ev->stream_id, &info) == DMSG_ESTREAM))
            abort();
        break;
    }
    default:
        break;
    }
}

static void random_call(dmsg_yamux *y, uint32_t *rng, uint64_t *now)
{
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    size_t flen;
    uint32_t granted, id, r = next_rand(rng);
    uint32_t sid = pick_stream(y, next_rand(rng));
    dmsg_yamux_stream_info info;
    switch (r % 10) {
    case 0:
        (void)dmsg_yamux_open(y, NULL, &id, f);
        break;
    case 1:
        if (sid && dmsg_yamux_data_frame(y, sid, 1 + next_rand(rng) % 300000, f, &granted) == 0 &&
            granted == 0)
            abort();
        break;
    case 2:
        if (sid && dmsg_yamux_stream_info_get(y, sid, &info) == 0 && info.buffered &&
            dmsg_yamux_consume(y, sid, 1 + next_rand(rng) % info.buffered, f, &flen) != 0)
            abort();
        break;
    case 3:
        if (sid)
            (void)dmsg_yamux_close(y, sid, f);
        break;
    case 4:
        if (sid && next_rand(rng) % 4 == 0)
            (void)dmsg_yamux_reset(y, sid, f);
        break;
    case 5:
        (void)dmsg_yamux_ping(y, *now, f, &id);
        break;
    case 6:
        *now += next_rand(rng) % 20000;
        (void)dmsg_yamux_tick(y, *now, f, &flen);
        break;
    case 7:
        if (next_rand(rng) % 16 == 0)
            (void)dmsg_yamux_goaway(y, 0, f);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t rng = (uint32_t)data[0] * 2654435761u | 1;
    dmsg_yamux_config cfg;
    dmsg_yamux_config_default(&cfg);
    /* Small caps and windows, so that short inputs reach the limits and the credit paths. */
    cfg.max_streams = 4 + data[0] % 29;
    cfg.accept_backlog = 1 + data[0] % 11;
    cfg.stream_window = 512u << (data[0] % 10);
    cfg.max_frame_len = cfg.stream_window;
    dmsg_yamux y;
    if (dmsg_yamux_init(&y, DMSG_YAMUX_SERVER, &cfg, 0) != 0)
        abort();
    uint64_t now = 0;
    const uint8_t *p = data + 1;
    size_t left = size - 1;
    int err = 0;
    while (left > 0 && err == 0) {
        size_t chunk = 1 + next_rand(&rng) % 64;
        if (chunk > left)
            chunk = left;
        const uint8_t *q = p;
        size_t n = chunk;
        for (;;) {
            size_t used;
            dmsg_yamux_event ev;
            err = dmsg_yamux_feed(&y, q, n, now, &used, &ev);
            if (used > n)
                abort();
            if (err < 0)
                break;
            q += used;
            n -= used;
            if (ev.type == DMSG_YAMUX_EV_NONE) {
                if (n != 0)
                    abort();
                break;
            }
            on_event(&y, &ev, p, chunk, &rng);
        }
        p += chunk;
        left -= chunk;
        if (err == 0)
            random_call(&y, &rng, &now);
        check_consistency(&y, &cfg);
    }
    if (err < 0) {
        size_t used;
        dmsg_yamux_event ev;
        if (err > DMSG_OK || err <= DMSG_ELAST || dmsg_yamux_error(&y) != err ||
            dmsg_yamux_feed(&y, data, size, now, &used, &ev) != err)
            abort();
    }
    dmsg_yamux_destroy(&y);
    return 0;
}
