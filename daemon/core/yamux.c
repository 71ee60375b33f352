/* The yamux session API: opening, accepting, writing, crediting, closing, keepalive, queries.
 * The receive side is in yamux_input.c. */
#include "dmsg/yamux.h"

#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"
#include "yamux_internal.h"

#define GO_STREAM_WINDOW 262144u
#define MAX_STREAMS_LIMIT (1u << 24) /* keeps stream-table sizes far inside 32-bit arithmetic */
#define LAST_STREAM_ID (UINT32_MAX - 1) /* Go refuses to open at or beyond it */

void dmsg_yamux_config_default(dmsg_yamux_config *cfg)
{
    *cfg = (dmsg_yamux_config){
        .accept_backlog = 256,
        .max_streams = 2048,
        .stream_window = GO_STREAM_WINDOW,
        .max_frame_len = GO_STREAM_WINDOW,
        .max_send_window = UINT32_MAX,
        .enable_keepalive = true,
        .keepalive_interval_ms = 30000,
        .keepalive_timeout_ms = 10000,
        .stream_open_timeout_ms = 75000,
        .stream_close_timeout_ms = 300000,
    };
}

static bool config_valid(const dmsg_yamux_config *c)
{
    if (c->accept_backlog == 0 || c->max_streams == 0 || c->max_streams > MAX_STREAMS_LIMIT)
        return false;
    if (c->stream_window == 0 || c->max_frame_len == 0 || c->max_send_window < c->stream_window)
        return false;
    if (c->keepalive_timeout_ms == 0) /* also bounds explicit pings */
        return false;
    return !c->enable_keepalive || c->keepalive_interval_ms != 0;
}

int dmsg_yamux_init(dmsg_yamux *y, dmsg_yamux_role role, const dmsg_yamux_config *cfg,
                    uint64_t now_ms)
{
    dmsg_yamux_config defaults;
    if (!cfg) {
        dmsg_yamux_config_default(&defaults);
        cfg = &defaults;
    }
    if ((role != DMSG_YAMUX_CLIENT && role != DMSG_YAMUX_SERVER) || !config_valid(cfg))
        return DMSG_EINVAL;
    memset(y, 0, sizeof *y);
    y->cfg = *cfg;
    y->role = (uint8_t)role;
    y->next_id = role == DMSG_YAMUX_CLIENT ? 1 : 2;
    y->next_keepalive_ms = now_ms + cfg->keepalive_interval_ms;
    return 0;
}

void dmsg_yamux_destroy(dmsg_yamux *y)
{
    free(y->slots);
    memset(y, 0, sizeof *y);
}

void yamux_put_frame(uint8_t frame[DMSG_YAMUX_HDR_LEN], uint8_t type, uint16_t flags,
                     uint32_t id, uint32_t length)
{
    dmsg_yamux_hdr hdr = {DMSG_YAMUX_VERSION, type, flags, id, length};
    dmsg_yamux_hdr_encode(&hdr, frame);
}

int yamux_fail(dmsg_yamux *y, int err)
{
    y->err = err;
    return err;
}

uint16_t yamux_take_ack_flag(dmsg_yamux *y, struct dmsg_yamux_stream *s)
{
    if (!(s->flags & YS_AWAIT_ACCEPT))
        return 0;
    s->flags &= ~(uint32_t)YS_AWAIT_ACCEPT;
    y->st.pending_accept--;
    return DMSG_YAMUX_ACK;
}

/* The stream a caller names, or why there is none to act on. */
static int live_stream(dmsg_yamux *y, uint32_t id, struct dmsg_yamux_stream **out)
{
    *out = NULL;
    if (y->err)
        return y->err;
    *out = yamux_stream_find(y, id);
    return *out ? 0 : DMSG_ESTREAM;
}

int dmsg_yamux_open(dmsg_yamux *y, void *user, uint32_t *id, uint8_t frame[DMSG_YAMUX_HDR_LEN])
{
    if (y->err)
        return y->err;
    if (y->st.peer_goaway)
        return DMSG_EGOAWAY;
    if (y->next_id >= LAST_STREAM_ID || y->st.streams >= y->cfg.max_streams ||
        y->st.awaiting_ack >= y->cfg.accept_backlog)
        return DMSG_ELIMIT;
    struct dmsg_yamux_stream *s;
    int r = yamux_stream_insert(y, y->next_id, &s);
    if (r < 0)
        return r;
    s->flags = YS_LOCAL | YS_AWAIT_ACK;
    s->send_window = y->cfg.stream_window;
    s->recv_window = y->cfg.stream_window;
    s->user = user;
    y->st.awaiting_ack++;
    y->st.opened_locally++;
    *id = y->next_id;
    y->next_id += 2;
    yamux_put_frame(frame, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, *id, 0);
    return 0;
}

int dmsg_yamux_accept(dmsg_yamux *y, uint32_t id, uint8_t frame[DMSG_YAMUX_HDR_LEN])
{
    struct dmsg_yamux_stream *s;
    int r = live_stream(y, id, &s);
    if (r < 0)
        return r;
    if (!(s->flags & YS_AWAIT_ACCEPT))
        return DMSG_ESTATE;
    yamux_put_frame(frame, DMSG_YAMUX_WINDOW_UPDATE, yamux_take_ack_flag(y, s), id, 0);
    return 0;
}

int dmsg_yamux_data_frame(dmsg_yamux *y, uint32_t id, size_t want,
                          uint8_t frame[DMSG_YAMUX_HDR_LEN], uint32_t *granted)
{
    struct dmsg_yamux_stream *s;
    int r = live_stream(y, id, &s);
    if (r < 0)
        return r;
    if (want == 0)
        return DMSG_EINVAL;
    if (s->flags & YS_FIN_SENT)
        return DMSG_ECLOSED;
    if (s->send_window == 0)
        return DMSG_EAGAIN;
    uint32_t n = s->send_window < y->cfg.max_frame_len ? s->send_window : y->cfg.max_frame_len;
    if (want < n)
        n = (uint32_t)want;
    s->send_window -= n;
    y->st.data_bytes_sent += n;
    yamux_put_frame(frame, DMSG_YAMUX_DATA, yamux_take_ack_flag(y, s), id, n);
    *granted = n;
    return 0;
}

int dmsg_yamux_consume(dmsg_yamux *y, uint32_t id, uint32_t n, uint8_t frame[DMSG_YAMUX_HDR_LEN],
                       size_t *frame_len)
{
    *frame_len = 0;
    struct dmsg_yamux_stream *s;
    int r = live_stream(y, id, &s);
    if (r < 0)
        return r;
    if (n > s->buffered)
        return DMSG_EINVAL;
    s->buffered -= n;
    s->uncredited += n;
    /* Credit after the peer's FIN would only be noise: it sends nothing more. */
    if (s->flags & YS_FIN_RECV || s->uncredited == 0 || s->uncredited < y->cfg.stream_window / 2)
        return 0;
    yamux_put_frame(frame, DMSG_YAMUX_WINDOW_UPDATE, yamux_take_ack_flag(y, s), id, s->uncredited);
    s->recv_window += s->uncredited;
    s->uncredited = 0;
    *frame_len = DMSG_YAMUX_HDR_LEN;
    return 0;
}

int dmsg_yamux_close(dmsg_yamux *y, uint32_t id, uint8_t frame[DMSG_YAMUX_HDR_LEN])
{
    struct dmsg_yamux_stream *s;
    int r = live_stream(y, id, &s);
    if (r < 0)
        return r;
    if (s->flags & YS_FIN_SENT)
        return DMSG_ECLOSED;
    uint16_t flags = (uint16_t)(yamux_take_ack_flag(y, s) | DMSG_YAMUX_FIN);
    yamux_put_frame(frame, DMSG_YAMUX_WINDOW_UPDATE, flags, id, 0);
    s->flags |= YS_FIN_SENT;
    if (s->flags & YS_FIN_RECV)
        yamux_stream_forget(y, s);
    return 0;
}

int dmsg_yamux_reset(dmsg_yamux *y, uint32_t id, uint8_t frame[DMSG_YAMUX_HDR_LEN])
{
    struct dmsg_yamux_stream *s;
    int r = live_stream(y, id, &s);
    if (r < 0)
        return r;
    yamux_put_frame(frame, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_RST, id, 0);
    y->st.resets_sent++;
    yamux_stream_forget(y, s);
    return 0;
}

static void start_ping(dmsg_yamux *y, uint64_t now_ms, uint8_t frame[DMSG_YAMUX_HDR_LEN])
{
    y->outstanding_ping_id = y->next_ping_id++;
    y->ping_outstanding = true;
    y->ping_sent_ms = now_ms;
    yamux_put_frame(frame, DMSG_YAMUX_PING, DMSG_YAMUX_SYN, 0, y->outstanding_ping_id);
}

int dmsg_yamux_ping(dmsg_yamux *y, uint64_t now_ms, uint8_t frame[DMSG_YAMUX_HDR_LEN],
                    uint32_t *ping_id)
{
    if (y->err)
        return y->err;
    if (y->ping_outstanding)
        return DMSG_ESTATE;
    start_ping(y, now_ms, frame);
    *ping_id = y->outstanding_ping_id;
    return 0;
}

int dmsg_yamux_tick(dmsg_yamux *y, uint64_t now_ms, uint8_t frame[DMSG_YAMUX_HDR_LEN],
                    size_t *frame_len)
{
    *frame_len = 0;
    if (y->err)
        return y->err;
    if (y->ping_outstanding) {
        if (now_ms >= y->ping_sent_ms + y->cfg.keepalive_timeout_ms)
            return yamux_fail(y, DMSG_ETIMEOUT);
        return 0;
    }
    if (y->cfg.enable_keepalive && now_ms >= y->next_keepalive_ms) {
        start_ping(y, now_ms, frame);
        y->next_keepalive_ms = now_ms + y->cfg.keepalive_interval_ms;
        *frame_len = DMSG_YAMUX_HDR_LEN;
    }
    return 0;
}

uint64_t dmsg_yamux_next_timeout(const dmsg_yamux *y)
{
    if (y->err)
        return UINT64_MAX;
    if (y->ping_outstanding)
        return y->ping_sent_ms + y->cfg.keepalive_timeout_ms;
    return y->cfg.enable_keepalive ? y->next_keepalive_ms : UINT64_MAX;
}

int dmsg_yamux_goaway(dmsg_yamux *y, uint32_t code, uint8_t frame[DMSG_YAMUX_HDR_LEN])
{
    y->local_goaway = true;
    yamux_put_frame(frame, DMSG_YAMUX_GOAWAY, 0, 0, code);
    return 0;
}

int dmsg_yamux_error(const dmsg_yamux *y)
{
    return y->err;
}

static dmsg_yamux_stream_state state_of(const struct dmsg_yamux_stream *s)
{
    if (s->flags & YS_FIN_SENT)
        return DMSG_YAMUX_LOCAL_CLOSE;
    if (s->flags & YS_FIN_RECV)
        return DMSG_YAMUX_REMOTE_CLOSE;
    if (s->flags & YS_AWAIT_ACK)
        return DMSG_YAMUX_SYN_SENT;
    if (s->flags & YS_AWAIT_ACCEPT)
        return DMSG_YAMUX_SYN_RECEIVED;
    return DMSG_YAMUX_ESTABLISHED;
}

int dmsg_yamux_stream_info_get(const dmsg_yamux *y, uint32_t id, dmsg_yamux_stream_info *info)
{
    const struct dmsg_yamux_stream *s = yamux_stream_find(y, id);
    if (!s)
        return DMSG_ESTREAM;
    *info = (dmsg_yamux_stream_info){
        .state = state_of(s),
        .opened_locally = (s->flags & YS_LOCAL) != 0,
        .send_window = s->send_window,
        .recv_window = s->recv_window,
        .buffered = s->buffered,
        .uncredited = s->uncredited,
        .user = s->user,
    };
    return 0;
}

int dmsg_yamux_set_user(dmsg_yamux *y, uint32_t id, void *user)
{
    struct dmsg_yamux_stream *s = yamux_stream_find(y, id);
    if (!s)
        return DMSG_ESTREAM;
    s->user = user;
    return 0;
}

int dmsg_yamux_next_stream(const dmsg_yamux *y, size_t *cursor, uint32_t *id, void **user)
{
    const struct dmsg_yamux_stream *s = yamux_stream_scan(y, cursor);
    if (!s)
        return DMSG_ENOTFOUND;
    if (id)
        *id = s->id;
    if (user)
        *user = s->user;
    return 0;
}

void dmsg_yamux_get_stats(const dmsg_yamux *y, dmsg_yamux_stats *out)
{
    *out = y->st;
    out->table_slots = yamux_slot_capacity(y);
}
