/* Session lifecycle: construction in either role, the one timer, deferred work, closing and the
 * small accessors. The handshake, input, output and streams live in their own files. */
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"
#include "session_internal.h"

void dmsg_session_config_default(dmsg_session_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    dmsg_yamux_config_default(&cfg->yamux);
    cfg->handshake_timeout_ms = 5000;
    cfg->idle_timeout_ms = 0;
    cfg->write_timeout_ms = 10000;
    cfg->max_write_queue = 4u << 20;
    cfg->accept_proxy_header = true;
    cfg->glitch_threshold = DMSG_GLITCH_THRESHOLD;
}

static bool config_valid(const dmsg_session_config *cfg)
{
    dmsg_yamux probe; /* init validates the yamux part and allocates nothing */
    if (dmsg_yamux_init(&probe, DMSG_YAMUX_SERVER, &cfg->yamux, 0) < 0)
        return false;
    dmsg_yamux_destroy(&probe);
    return cfg->handshake_timeout_ms > 0 && cfg->write_timeout_ms > 0 &&
           cfg->max_write_queue >= SESSION_MIN_WRITE_QUEUE &&
           cfg->yamux.stream_open_timeout_ms > 0 && cfg->yamux.stream_close_timeout_ms > 0;
}

uint64_t session_now(const dmsg_session *s)
{
    return uv_now(s->loop);
}

/* ---- closing ------------------------------------------------------------------------------ */

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* A handle we own but never turned into a session. */
static void abandon_tcp(uv_tcp_t *tcp)
{
    if (!tcp)
        return;
    tcp->data = NULL;
    if (!uv_is_closing((uv_handle_t *)tcp))
        uv_close((uv_handle_t *)tcp, free_handle);
}

static void session_finish(dmsg_session *s)
{
    if (s->ymx_live)
        dmsg_yamux_destroy(&s->ymx);
    dmsg_noise_tx_wipe(&s->tx);
    dmsg_noise_rx_wipe(&s->rx);
    if (!s->silent && s->cb.on_close)
        s->cb.on_close(s, s->close_err, s->ctx);
    free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
    dmsg_session *s = h->data;
    if (h == (uv_handle_t *)s->tcp) {
        free(s->tcp);
        s->tcp = NULL;
    }
    if (--s->handles_open == 0)
        session_finish(s);
}

static void session_close_handles(dmsg_session *s)
{
    s->closing = true;
    session_drop_output(s);
    session_hs_free(s);
    uv_close((uv_handle_t *)s->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->deferred, on_handle_closed);
}

/* Construction failed after the handles existed: free everything, tell nobody. */
static void session_abort(dmsg_session *s)
{
    s->silent = true;
    s->state = DMSG_SESSION_CLOSING;
    session_close_handles(s);
}

void dmsg_session_close(dmsg_session *s, int err)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    s->close_err = err;
    s->state = DMSG_SESSION_CLOSING;
    session_read_stop(s);
    uv_timer_stop(&s->timer);
    session_kill_all_streams(s, err ? err : DMSG_ECLOSED);
    session_defer(s);
}

void session_fail(dmsg_session *s, int err)
{
    dmsg_session_close(s, err);
}

/* ---- deferred work ------------------------------------------------------------------------ */

static void on_deferred(uv_idle_t *h)
{
    dmsg_session *s = h->data;
    if (uv_is_closing((uv_handle_t *)h))
        return;
    s->hold++;
    session_run_zombies(s);
    s->hold--;
    if (s->closing) {
        session_close_handles(s);
        return;
    }
    uv_idle_stop(h);
    session_flush(s);
}

void session_defer(dmsg_session *s)
{
    if (!uv_is_closing((uv_handle_t *)&s->deferred))
        uv_idle_start(&s->deferred, on_deferred);
}

/* ---- the timer ---------------------------------------------------------------------------- */

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void on_timer(uv_timer_t *t);

void session_timer_want(dmsg_session *s, uint64_t due_ms)
{
    if (s->closing || due_ms >= s->timer_due)
        return;
    s->timer_due = due_ms;
    uint64_t now = session_now(s);
    uv_timer_start(&s->timer, on_timer, due_ms > now ? due_ms - now : 0, 0);
}

static uint64_t handshake_deadline(dmsg_session *s, uint64_t now)
{
    uint64_t due = session_hs_deadline(s);
    if (now >= due)
        session_fail(s, DMSG_ETIMEOUT);
    return due;
}

/* A write counts as stalled when libuv's queue did not shrink for write_timeout_ms. */
static uint64_t write_deadline(dmsg_session *s, uint64_t now)
{
    if (!s->writing)
        return UINT64_MAX;
    size_t left = uv_stream_get_write_queue_size((uv_stream_t *)s->tcp);
    if (left < s->write_progress_mark) {
        s->write_progress_mark = left;
        s->write_progress_ms = now;
    }
    uint64_t due = s->write_progress_ms + s->cfg.write_timeout_ms;
    if (now >= due)
        session_fail(s, DMSG_ETIMEOUT);
    return due;
}

static uint64_t idle_deadline(dmsg_session *s, uint64_t now)
{
    if (s->cfg.idle_timeout_ms == 0 || s->nstreams > 0)
        return UINT64_MAX;
    uint64_t due = s->idle_since_ms + s->cfg.idle_timeout_ms;
    if (now >= due)
        session_fail(s, DMSG_ETIMEOUT);
    return due;
}

static uint64_t keepalive_deadline(dmsg_session *s, uint64_t now)
{
    uint8_t frame[DMSG_YAMUX_HDR_LEN];
    size_t frame_len;
    int err = dmsg_yamux_tick(&s->ymx, now, frame, &frame_len);
    if (err == 0 && frame_len)
        err = session_queue_bytes(s, frame, frame_len);
    if (err < 0)
        session_fail(s, err);
    return dmsg_yamux_next_timeout(&s->ymx);
}

void session_settle_end(dmsg_session *s)
{
    if (s->settle_until_ms == 0)
        return;
    s->settle_until_ms = 0;
    session_opened(s);
}

/* Acts on every deadline that passed; returns the next one. */
static uint64_t run_deadlines(dmsg_session *s, uint64_t now)
{
    if (s->settle_until_ms != 0) {
        if (now < s->settle_until_ms)
            return s->settle_until_ms;
        session_settle_end(s);
        if (s->closing)
            return UINT64_MAX;
    }
    if (s->state != DMSG_SESSION_OPEN)
        return handshake_deadline(s, now);
    uint64_t next = keepalive_deadline(s, now);
    if (!s->closing)
        next = min_u64(next, write_deadline(s, now));
    if (!s->closing)
        next = min_u64(next, idle_deadline(s, now));
    if (!s->closing)
        next = min_u64(next, session_stream_timers(s, now));
    return next;
}

static void on_timer(uv_timer_t *t)
{
    dmsg_session *s = t->data;
    s->timer_due = UINT64_MAX;
    if (s->closing)
        return;
    s->hold++;
    uint64_t next = run_deadlines(s, session_now(s));
    s->hold--;
    if (s->closing)
        return;
    session_timer_want(s, next);
    session_flush(s);
}

/* ---- opening ------------------------------------------------------------------------------ */

void session_opened(dmsg_session *s)
{
    uint64_t now = session_now(s);
    s->state = DMSG_SESSION_OPEN;
    dmsg_yamux_role role = s->role == DMSG_SESSION_CLIENT ? DMSG_YAMUX_CLIENT : DMSG_YAMUX_SERVER;
    if (dmsg_yamux_init(&s->ymx, role, &s->cfg.yamux, now) < 0) { /* validated at creation */
        session_fail(s, DMSG_EINVAL);
        return;
    }
    s->ymx_live = true;
    s->idle_since_ms = now;
    if (s->cb.on_ready) {
        int refuse = s->cb.on_ready(s, s->ctx);
        if (refuse != 0) {
            session_fail(s, refuse);
            return;
        }
    }
    uint64_t next = dmsg_yamux_next_timeout(&s->ymx);
    if (s->cfg.idle_timeout_ms && s->nstreams == 0)
        next = min_u64(next, now + s->cfg.idle_timeout_ms);
    session_timer_want(s, next);
}

static dmsg_session *session_new(uv_loop_t *loop, dmsg_session_role role,
                                 const dmsg_session_config *cfg,
                                 const dmsg_session_callbacks *cb, void *ctx)
{
    dmsg_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->loop = loop;
    s->role = role;
    s->cfg = *cfg;
    if (cb)
        s->cb = *cb;
    s->ctx = ctx;
    s->timer_due = UINT64_MAX;
    s->stats.started_ms = uv_now(loop);
    dmsg_glitch_init(&s->glitch, cfg->glitch_threshold, DMSG_GLITCH_WINDOW_MS, uv_now(loop));
    return s;
}

/* The handles every session has besides its TCP handle; from here on session_abort cleans up. */
static void session_init_handles(dmsg_session *s, uv_tcp_t *tcp)
{
    s->tcp = tcp;
    tcp->data = s;
    uv_timer_init(s->loop, &s->timer);
    s->timer.data = s;
    uv_idle_init(s->loop, &s->deferred);
    s->deferred.data = s;
    s->handles_open = 3;
    uv_tcp_nodelay(tcp, 1);
}

int dmsg_session_accept(uv_loop_t *loop, uv_tcp_t *client, const dmsg_identity *id,
                        const dmsg_session_config *cfg, const dmsg_session_callbacks *cb,
                        void *ctx, dmsg_session **out)
{
    dmsg_session_config defaults;
    if (!cfg) {
        dmsg_session_config_default(&defaults);
        cfg = &defaults;
    }
    if (!loop || !client || !id || !out || !config_valid(cfg)) {
        abandon_tcp(client);
        return DMSG_EINVAL;
    }
    dmsg_session *s = session_new(loop, DMSG_SESSION_SERVER, cfg, cb, ctx);
    if (!s) {
        abandon_tcp(client);
        return DMSG_ENOMEM;
    }
    session_init_handles(s, client);
    int len = (int)sizeof s->remote_addr;
    if (uv_tcp_getpeername(client, (struct sockaddr *)&s->remote_addr, &len) < 0)
        memset(&s->remote_addr, 0, sizeof s->remote_addr);
    int err = session_hs_start(s, id, NULL);
    if (err == 0) {
        s->state = DMSG_SESSION_HANDSHAKE;
        err = session_read_start(s);
    }
    if (err < 0) {
        session_abort(s);
        return err;
    }
    session_timer_want(s, session_hs_deadline(s));
    *out = s;
    return 0;
}

static size_t sockaddr_len(const struct sockaddr *addr)
{
    switch (addr->sa_family) {
    case AF_INET:
        return sizeof(struct sockaddr_in);
    case AF_INET6:
        return sizeof(struct sockaddr_in6);
    default:
        return 0;
    }
}

int dmsg_session_connect(uv_loop_t *loop, const struct sockaddr *addr, const dmsg_identity *id,
                         const dmsg_pk *remote_pk, const dmsg_session_config *cfg,
                         const dmsg_session_callbacks *cb, void *ctx, dmsg_session **out)
{
    dmsg_session_config defaults;
    if (!cfg) {
        dmsg_session_config_default(&defaults);
        cfg = &defaults;
    }
    if (!loop || !addr || !id || !remote_pk || !out || sockaddr_len(addr) == 0 ||
        !config_valid(cfg))
        return DMSG_EINVAL;
    dmsg_session *s = session_new(loop, DMSG_SESSION_CLIENT, cfg, cb, ctx);
    uv_tcp_t *tcp = malloc(sizeof *tcp);
    if (!s || !tcp || uv_tcp_init(loop, tcp) < 0) {
        free(s);
        free(tcp);
        return DMSG_ENOMEM;
    }
    session_init_handles(s, tcp);
    memcpy(&s->remote_addr, addr, sockaddr_len(addr));
    s->remote_pk = *remote_pk;
    s->state = DMSG_SESSION_CONNECTING;
    int err = session_hs_start(s, id, remote_pk);
    if (err == 0)
        err = session_hs_connect(s, addr);
    if (err < 0) {
        session_abort(s);
        return err;
    }
    session_timer_want(s, session_hs_deadline(s));
    *out = s;
    return 0;
}

/* ---- requests on an open session ---------------------------------------------------------- */

int dmsg_session_goaway(dmsg_session *s)
{
    if (s->state != DMSG_SESSION_OPEN)
        return DMSG_ESTATE;
    uint8_t frame[DMSG_YAMUX_HDR_LEN];
    int err = dmsg_yamux_goaway(&s->ymx, DMSG_YAMUX_GOAWAY_NORMAL, frame);
    if (err == 0)
        err = session_queue_bytes(s, frame, sizeof frame);
    if (err < 0)
        return err;
    session_flush(s);
    return 0;
}

/* The session ends only once its GOAWAY went out: a peer told why stops retrying at once, and a
 * close right away would drop the frame whenever a write is in flight. Reading stops meanwhile so
 * the abuser makes no more work; a peer that never reads meets the write timeout instead. */
static void glitch_close(dmsg_session *s)
{
    uint8_t frame[DMSG_YAMUX_HDR_LEN];

    dmsg_yamux_goaway(&s->ymx, DMSG_YAMUX_GOAWAY_PROTO_ERROR, frame);
    if (session_queue_bytes(s, frame, sizeof frame) != 0) {
        session_fail(s, DMSG_EGLITCH);
        return;
    }
    s->glitch_close_at = s->stats.bytes_out + s->out_bytes;
    session_read_stop(s);
    s->read_paused = false;
    session_flush(s);
}

bool dmsg_session_glitch(dmsg_session *s, dmsg_glitch_kind kind)
{
    if (s->state != DMSG_SESSION_OPEN || !s->ymx_live || s->closing)
        return false;
    if (!dmsg_glitch_add(&s->glitch, kind, session_now(s)))
        return false;
    glitch_close(s);
    return true;
}

uint32_t dmsg_session_glitch_kinds(const dmsg_session *s)
{
    return s->glitch.kinds_seen;
}

int dmsg_session_seal_object(dmsg_session *s, const uint8_t *obj, size_t len, uint8_t *out,
                             size_t cap, size_t *out_len)
{
    if (s->state != DMSG_SESSION_OPEN)
        return DMSG_ESTATE;
    return dmsg_noise_seal_framed(&s->tx, obj, len, out, cap, out_len);
}

int dmsg_session_open_object(dmsg_session *s, uint8_t *body, size_t len, uint8_t **obj,
                             size_t *obj_len)
{
    if (s->state != DMSG_SESSION_OPEN)
        return DMSG_ESTATE;
    return dmsg_noise_open(&s->rx, body, len, obj, obj_len);
}

/* ---- accessors ---------------------------------------------------------------------------- */

dmsg_session_state dmsg_session_get_state(const dmsg_session *s)
{
    return s->state;
}

dmsg_session_role dmsg_session_get_role(const dmsg_session *s)
{
    return s->role;
}

const dmsg_pk *dmsg_session_remote_pk(const dmsg_session *s)
{
    return &s->remote_pk;
}

const struct sockaddr_storage *dmsg_session_remote_addr(const dmsg_session *s)
{
    return &s->remote_addr;
}

void *dmsg_session_ctx(const dmsg_session *s)
{
    return s->ctx;
}

void dmsg_session_set_ctx(dmsg_session *s, void *ctx)
{
    s->ctx = ctx;
}

void dmsg_session_get_stats(const dmsg_session *s, dmsg_session_stats *out)
{
    *out = s->stats;
    out->streams = s->nstreams;
    out->write_queued = s->out_bytes + s->unframed_bytes;
}
