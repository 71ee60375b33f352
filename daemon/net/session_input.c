/* Reading: each read gets a buffer that lives only for the read callback, and every byte is
 * processed before it returns (handshake, then the yamux feed loop), so an idle session holds no
 * read buffer. DATA events point into that buffer; receivers copy what they keep. */
#include <stddef.h>
#include <stdlib.h>

#include "dmsg/error.h"
#include "session_internal.h"

/* One read's replies (pongs, RSTs) are at most as long as the read: with reads of a quarter of
 * max_write_queue, pausing at half of it keeps a flood of pings under the limit. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    const dmsg_session *s = h->data;
    size_t len = s->cfg.max_write_queue / 4;
    if (len > SESSION_READ_CHUNK)
        len = SESSION_READ_CHUNK;
    buf->base = malloc(len);
    buf->len = buf->base ? len : 0;
}

static int queue_reply(dmsg_session *s, const dmsg_yamux_event *ev)
{
    return ev->reply_len ? session_queue_bytes(s, ev->reply, ev->reply_len) : 0;
}

static void deliver_data(dmsg_stream *st, const dmsg_yamux_event *ev)
{
    if (st->cb.on_data)
        st->cb.on_data(st, ev->data, ev->len, st->ctx);
    else /* nobody reads it: never let the window close on a stream without a reader */
        dmsg_stream_consume(st, ev->len);
}

static void deliver_fin(dmsg_stream *st, bool closed)
{
    st->flags |= ST_FIN_RECV;
    if (st->cb.on_fin)
        st->cb.on_fin(st, st->ctx);
    if (closed)
        session_stream_kill(st, 0, true);
}

static void deliver_window(dmsg_stream *st)
{
    session_stream_sendable(st);
    if (st->cb.on_writable)
        st->cb.on_writable(st, st->ctx);
}

static void stream_acked(dmsg_stream *st)
{
    if (st->flags & ST_AWAIT_ACK) {
        session_list_remove(&st->sess->ack_wait, st, offsetof(dmsg_stream, timer));
        st->flags &= ~(uint32_t)ST_AWAIT_ACK;
    }
}

/* Keepalives come seconds apart; pings closer than this are a flood (threats.md Y7), each
 * answered but counted. */
#define PING_MIN_INTERVAL_MS 1000

static void ping_glitch(dmsg_session *s)
{
    uint64_t now = session_now(s);
    bool flood = s->last_ping_ms != 0 && now - s->last_ping_ms < PING_MIN_INTERVAL_MS;

    s->last_ping_ms = now;
    if (flood)
        dmsg_session_glitch(s, DMSG_GLITCH_PING);
}

static int handle_event(dmsg_session *s, const dmsg_yamux_event *ev)
{
    dmsg_stream *st = ev->user;
    bool stream_event = ev->type != DMSG_YAMUX_EV_OPENED && ev->type != DMSG_YAMUX_EV_PING &&
                        ev->type != DMSG_YAMUX_EV_PONG && ev->type != DMSG_YAMUX_EV_GOAWAY &&
                        ev->type != DMSG_YAMUX_EV_REFUSED;
    if (stream_event && (!st || (st->flags & ST_DEAD)))
        return 0; /* cannot happen: yamux forgets a stream before we call it dead */
    switch (ev->type) {
    case DMSG_YAMUX_EV_OPENED:
        session_stream_incoming(s, ev->stream_id);
        return 0;
    case DMSG_YAMUX_EV_ACCEPTED:
        stream_acked(st);
        return 0;
    case DMSG_YAMUX_EV_DATA:
        deliver_data(st, ev);
        return 0;
    case DMSG_YAMUX_EV_FIN:
        deliver_fin(st, ev->closed);
        return 0;
    case DMSG_YAMUX_EV_RESET:
        session_stream_kill(st, DMSG_ERESET, false);
        return 0;
    case DMSG_YAMUX_EV_WINDOW:
        deliver_window(st);
        return 0;
    case DMSG_YAMUX_EV_PONG:
        s->stats.last_rtt_ms = ev->rtt_ms;
        return 0;
    case DMSG_YAMUX_EV_PING:    /* answered at the end of this read: promptly */
        ping_glitch(s);
        return queue_reply(s, ev);
    case DMSG_YAMUX_EV_REFUSED: /* the RST for a SYN over the caps */
        return queue_reply(s, ev);
    default: /* GOAWAY(0): yamux now fails our opens; existing streams go on */
        return 0;
    }
}

static void yamux_input(dmsg_session *s, const uint8_t *p, size_t n)
{
    uint64_t now = session_now(s);
    /* Past the glitch budget the rest of the read is dropped: only the GoAway is still due. */
    while (!s->closing && s->glitch_close_at == 0) {
        size_t used;
        dmsg_yamux_event ev;
        int err = dmsg_yamux_feed(&s->ymx, p, n, now, &used, &ev);
        if (err < 0) {
            session_try_goaway(s, DMSG_YAMUX_GOAWAY_PROTO_ERROR);
            session_fail(s, err);
            return;
        }
        p += used;
        n -= used;
        if (ev.type == DMSG_YAMUX_EV_NONE)
            return;
        err = handle_event(s, &ev);
        if (err < 0) {
            session_fail(s, err);
            return;
        }
    }
}

static void process(dmsg_session *s, uint8_t *p, size_t n)
{
    s->stats.bytes_in += n;
    s->stats.last_rx_ms = session_now(s);
    while (n > 0 && !s->closing) {
        session_settle_end(s);
        if (s->closing)
            return;
        if (s->state == DMSG_SESSION_OPEN) {
            yamux_input(s, p, n);
            return;
        }
        size_t used;
        int err = session_hs_input(s, p, n, &used);
        if (err < 0) {
            session_fail(s, err);
            return;
        }
        if (used == 0 && s->state == DMSG_SESSION_HANDSHAKE) { /* never: input is consumed */
            session_fail(s, DMSG_ESTATE);
            return;
        }
        p += used;
        n -= used;
    }
}

static int read_error(dmsg_session *s, ssize_t nread)
{
    if (nread == UV_EOF)
        return s->state == DMSG_SESSION_HANDSHAKE && session_hs_truncated(s) ? DMSG_ESHORT
                                                                             : DMSG_ECLOSED;
    return nread == UV_ENOBUFS ? DMSG_ENOMEM : DMSG_EIO;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    dmsg_session *s = stream->data;
    if (!s->closing && nread > 0) {
        s->hold++;
        process(s, (uint8_t *)buf->base, (size_t)nread);
        s->hold--;
    } else if (!s->closing && nread < 0) {
        session_fail(s, read_error(s, nread));
    }
    free(buf->base);
    if (!s->closing)
        session_flush(s);
}

int session_read_start(dmsg_session *s)
{
    if (s->reading || s->closing)
        return 0;
    if (uv_read_start((uv_stream_t *)s->tcp, on_alloc, on_read) < 0)
        return DMSG_EIO;
    s->reading = true;
    return 0;
}

void session_read_stop(dmsg_session *s)
{
    if (!s->reading)
        return;
    uv_read_stop((uv_stream_t *)s->tcp);
    s->reading = false;
}
