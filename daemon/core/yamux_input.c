/* The yamux receive machine. Bytes arrive in arbitrary chunks; a header is collected in 12
 * bytes of session state, then acted on at once (every check and every state change implied
 * by its flags happens before any payload byte, as Go does), and what the caller must hear is
 * queued as "pending" bits and reported one event per dmsg_yamux_feed() call. Payload bytes
 * are reported in place. A FIN is reported, and takes effect, only after the frame's payload,
 * so the caller always sees a stream's data before its end. */
#include "dmsg/yamux.h"

#include <string.h>

#include "dmsg/error.h"
#include "yamux_internal.h"

/* Reported in this order: the order in which the caller needs to learn them. */
enum pending_event {
    PEND_REFUSED = 1 << 0,
    PEND_OPENED = 1 << 1,
    PEND_ACCEPTED = 1 << 2,
    PEND_RESET = 1 << 3,
    PEND_WINDOW = 1 << 4,
    PEND_PING = 1 << 5,
    PEND_PONG = 1 << 6,
    PEND_GOAWAY = 1 << 7
};

static bool is_peer_id(const dmsg_yamux *y, uint32_t id)
{
    bool odd = (id & 1) != 0;
    return id != 0 && (y->role == DMSG_YAMUX_SERVER ? odd : !odd);
}

/* A SYN: the stream is created, refused (RST, not a session error), or the session fails.
 * Returns 0 (created), 1 (refused) or a session error. */
static int incoming_syn(dmsg_yamux *y)
{
    uint32_t id = y->in.hdr.stream_id;
    if (!is_peer_id(y, id))
        return yamux_fail(y, DMSG_EPROTO);
    if (yamux_stream_find(y, id))
        return yamux_fail(y, DMSG_ESTREAM);
    int reason = 0;
    struct dmsg_yamux_stream *s = NULL;
    if (y->local_goaway)
        reason = DMSG_EGOAWAY;
    else if (y->st.streams >= y->cfg.max_streams || y->st.pending_accept >= y->cfg.accept_backlog)
        reason = DMSG_ELIMIT;
    else
        reason = yamux_stream_insert(y, id, &s);
    if (reason < 0) {
        y->in.refuse_reason = reason;
        y->in.pending |= PEND_REFUSED;
        y->st.syns_refused++;
        return 1;
    }
    s->flags = YS_AWAIT_ACCEPT;
    s->send_window = y->cfg.stream_window;
    s->recv_window = y->cfg.stream_window;
    y->st.pending_accept++;
    y->st.opened_by_peer++;
    y->in.pending |= PEND_OPENED;
    return 0;
}

static void incoming_rst(dmsg_yamux *y, struct dmsg_yamux_stream *s, bool created_now)
{
    y->st.resets_received++;
    /* A stream opened and reset by the same frame was never shown to the caller. */
    if (created_now)
        y->in.pending &= (uint16_t)~PEND_OPENED;
    else
        y->in.pending |= PEND_RESET;
    y->in.pending &= (uint16_t)~PEND_ACCEPTED;
    y->in.reset_user = s->user;
    y->in.fin_after = false;
    y->in.drain = true;
    yamux_stream_forget(y, s);
}

static int stream_flags(dmsg_yamux *y, struct dmsg_yamux_stream *s, bool created_now)
{
    uint16_t flags = y->in.hdr.flags;
    if ((flags & DMSG_YAMUX_ACK) && (s->flags & YS_AWAIT_ACK)) {
        s->flags &= ~(uint32_t)YS_AWAIT_ACK;
        y->st.awaiting_ack--;
        y->in.pending |= PEND_ACCEPTED;
    }
    if (flags & DMSG_YAMUX_FIN) {
        if (s->flags & YS_FIN_RECV)
            return yamux_fail(y, DMSG_EPROTO);
        y->in.fin_after = true;
    }
    if (flags & DMSG_YAMUX_RST) {
        incoming_rst(y, s, created_now);
        return 1;
    }
    return 0;
}

static int data_header(dmsg_yamux *y, struct dmsg_yamux_stream *s)
{
    uint32_t len = y->in.hdr.length;
    if (len == 0)
        return 0;
    /* Our FIN flag of this very frame is not yet set: data travelling with a FIN is fine. */
    if (s->flags & YS_FIN_RECV)
        return yamux_fail(y, DMSG_EPROTO);
    if (len > s->recv_window)
        return yamux_fail(y, DMSG_EWINDOW);
    s->recv_window -= len;
    return 0;
}

static int window_update_header(dmsg_yamux *y, struct dmsg_yamux_stream *s)
{
    uint32_t delta = y->in.hdr.length;
    if (delta == 0)
        return 0;
    if (delta > y->cfg.max_send_window - s->send_window)
        return yamux_fail(y, DMSG_EWINDOW);
    s->send_window += delta;
    y->in.pending |= PEND_WINDOW;
    return 0;
}

static int stream_frame(dmsg_yamux *y)
{
    const dmsg_yamux_hdr *h = &y->in.hdr;
    bool is_data = h->type == DMSG_YAMUX_DATA;
    if (is_data) {
        if (h->length > y->cfg.max_frame_len)
            return yamux_fail(y, DMSG_ETOOBIG);
        y->in.payload_left = h->length;
    }
    int syn = 0;
    if (h->flags & DMSG_YAMUX_SYN) {
        syn = incoming_syn(y);
        if (syn < 0)
            return syn;
    }
    struct dmsg_yamux_stream *s = yamux_stream_find(y, h->stream_id);
    if (!s) {
        if (syn == 0) /* a refused SYN is already counted */
            y->st.frames_unknown_stream++;
        y->in.drain = true;
        return 0;
    }
    bool created_now = (h->flags & DMSG_YAMUX_SYN) != 0;
    int r = stream_flags(y, s, created_now);
    if (r != 0)
        return r < 0 ? r : 0;
    return is_data ? data_header(y, s) : window_update_header(y, s);
}

static int ping_frame(dmsg_yamux *y, uint64_t now_ms)
{
    const dmsg_yamux_hdr *h = &y->in.hdr;
    if (h->flags & DMSG_YAMUX_SYN) {
        y->st.pings_received++;
        y->in.pending |= PEND_PING;
    } else if ((h->flags & DMSG_YAMUX_ACK) && y->ping_outstanding &&
               h->length == y->outstanding_ping_id) {
        y->ping_outstanding = false;
        y->st.pongs_received++;
        y->in.rtt_ms = now_ms > y->ping_sent_ms ? now_ms - y->ping_sent_ms : 0;
        y->in.pending |= PEND_PONG;
    }
    return 0; /* other pongs answer pings we gave up on: ignored, as Go does */
}

static int goaway_frame(dmsg_yamux *y)
{
    y->st.peer_goaway = true;
    y->st.peer_goaway_code = y->in.hdr.length;
    if (y->in.hdr.length != DMSG_YAMUX_GOAWAY_NORMAL)
        return yamux_fail(y, DMSG_EGOAWAY); /* Go ends the session on any other code */
    y->in.pending |= PEND_GOAWAY;
    return 0;
}

static int process_header(dmsg_yamux *y, uint64_t now_ms)
{
    y->in.drain = false;
    y->in.payload_left = 0;
    int r = dmsg_yamux_hdr_decode(y->in.hdr_bytes, DMSG_YAMUX_HDR_LEN, &y->in.hdr);
    if (r < 0)
        return yamux_fail(y, r);
    switch (y->in.hdr.type) {
    case DMSG_YAMUX_PING:
        return ping_frame(y, now_ms);
    case DMSG_YAMUX_GOAWAY:
        return goaway_frame(y);
    default:
        return stream_frame(y);
    }
}

static bool stream_event(dmsg_yamux *y, dmsg_yamux_event_type type, dmsg_yamux_event *ev)
{
    const struct dmsg_yamux_stream *s = yamux_stream_find(y, y->in.hdr.stream_id);
    if (!s) /* the caller reset it while handling an earlier event of this frame */
        return false;
    ev->type = type;
    ev->stream_id = s->id;
    ev->user = s->user;
    ev->send_window = s->send_window;
    return true;
}

static void reply_event(dmsg_yamux_event *ev, uint8_t type, uint16_t flags, uint32_t id,
                        uint32_t length)
{
    yamux_put_frame(ev->reply, type, flags, id, length);
    ev->reply_len = DMSG_YAMUX_HDR_LEN;
}

/* Reports the first pending event; false when it no longer applies. */
static bool emit_pending(dmsg_yamux *y, dmsg_yamux_event *ev)
{
    uint16_t bit = (uint16_t)(y->in.pending & -y->in.pending);
    y->in.pending &= (uint16_t)~bit;
    const dmsg_yamux_hdr *h = &y->in.hdr;
    switch (bit) {
    case PEND_REFUSED:
        ev->type = DMSG_YAMUX_EV_REFUSED;
        ev->stream_id = h->stream_id;
        ev->reason = y->in.refuse_reason;
        reply_event(ev, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_RST, h->stream_id, 0);
        return true;
    case PEND_OPENED:
        return stream_event(y, DMSG_YAMUX_EV_OPENED, ev);
    case PEND_ACCEPTED:
        return stream_event(y, DMSG_YAMUX_EV_ACCEPTED, ev);
    case PEND_RESET:
        ev->type = DMSG_YAMUX_EV_RESET;
        ev->stream_id = h->stream_id;
        ev->user = y->in.reset_user;
        ev->closed = true;
        return true;
    case PEND_WINDOW:
        return stream_event(y, DMSG_YAMUX_EV_WINDOW, ev);
    case PEND_PING:
        ev->type = DMSG_YAMUX_EV_PING;
        ev->ping_id = h->length;
        reply_event(ev, DMSG_YAMUX_PING, DMSG_YAMUX_ACK, 0, h->length);
        return true;
    case PEND_PONG:
        ev->type = DMSG_YAMUX_EV_PONG;
        ev->ping_id = h->length;
        ev->rtt_ms = y->in.rtt_ms;
        return true;
    default:
        ev->type = DMSG_YAMUX_EV_GOAWAY;
        ev->goaway_code = h->length;
        return true;
    }
}

/* Payload bytes: reported in place, or drained when nobody may have them. */
static bool take_payload(dmsg_yamux *y, const uint8_t *p, size_t n, dmsg_yamux_event *ev)
{
    y->in.payload_left -= (uint32_t)n;
    struct dmsg_yamux_stream *s = y->in.drain ? NULL : yamux_stream_find(y, y->in.hdr.stream_id);
    if (!s) {
        y->in.drain = true;
        y->st.bytes_drained += n;
        return false;
    }
    s->buffered += (uint32_t)n;
    y->st.data_bytes_received += n;
    ev->type = DMSG_YAMUX_EV_DATA;
    ev->stream_id = s->id;
    ev->user = s->user;
    ev->data = p;
    ev->len = n;
    return true;
}

static bool apply_fin(dmsg_yamux *y, dmsg_yamux_event *ev)
{
    y->in.fin_after = false;
    struct dmsg_yamux_stream *s = yamux_stream_find(y, y->in.hdr.stream_id);
    if (!s)
        return false;
    s->flags |= YS_FIN_RECV;
    ev->type = DMSG_YAMUX_EV_FIN;
    ev->stream_id = s->id;
    ev->user = s->user;
    if (s->flags & YS_FIN_SENT) {
        yamux_stream_forget(y, s);
        ev->closed = true;
    }
    return true;
}

int dmsg_yamux_feed(dmsg_yamux *y, const uint8_t *in, size_t len, uint64_t now_ms,
                    size_t *consumed, dmsg_yamux_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->type = DMSG_YAMUX_EV_NONE;
    *consumed = 0;
    if (y->err)
        return y->err;
    size_t off = 0;
    for (;;) {
        if (y->in.pending) {
            if (emit_pending(y, ev))
                break;
            continue;
        }
        if (y->in.payload_left) {
            if (off == len)
                break;
            size_t n = len - off < y->in.payload_left ? len - off : y->in.payload_left;
            bool reported = take_payload(y, in + off, n, ev);
            off += n;
            if (reported)
                break;
            continue;
        }
        if (y->in.fin_after) {
            if (apply_fin(y, ev))
                break;
            continue;
        }
        if (off == len)
            break;
        size_t take = DMSG_YAMUX_HDR_LEN - y->in.hdr_have;
        if (take > len - off)
            take = len - off;
        memcpy(y->in.hdr_bytes + y->in.hdr_have, in + off, take);
        y->in.hdr_have = (uint8_t)(y->in.hdr_have + take);
        off += take;
        if (y->in.hdr_have < DMSG_YAMUX_HDR_LEN)
            continue;
        y->in.hdr_have = 0;
        int r = process_header(y, now_ms);
        if (r < 0) {
            *consumed = off;
            return r;
        }
    }
    *consumed = off;
    return 0;
}
