/* Streams: the public stream API, the framing of queued data as the yamux window and the output
 * pacing allow, and the end of a stream (killed now, on_close and free later from the loop). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"
#include "session_internal.h"

#define LINK(st, off) ((slink *)((char *)(st) + (off)))
#define ALL_LINK offsetof(dmsg_stream, all)
#define ZOMBIE_LINK offsetof(dmsg_stream, zombie)
#define SEND_LINK offsetof(dmsg_stream, send)
#define TIMER_LINK offsetof(dmsg_stream, timer)

void session_list_push(slist *l, dmsg_stream *st, size_t off)
{
    slink *k = LINK(st, off);
    k->prev = l->tail;
    k->next = NULL;
    if (l->tail)
        LINK(l->tail, off)->next = st;
    else
        l->head = st;
    l->tail = st;
}

void session_list_remove(slist *l, dmsg_stream *st, size_t off)
{
    slink *k = LINK(st, off);
    if (k->prev)
        LINK(k->prev, off)->next = k->next;
    else
        l->head = k->next;
    if (k->next)
        LINK(k->next, off)->prev = k->prev;
    else
        l->tail = k->prev;
    k->prev = k->next = NULL;
}

static int queue_frame(dmsg_session *s, const uint8_t frame[DMSG_YAMUX_HDR_LEN])
{
    int err = session_queue_bytes(s, frame, DMSG_YAMUX_HDR_LEN);
    if (err < 0)
        session_fail(s, err);
    return err;
}

/* A yamux call on a stream we think alive failed: only a session error can cause that. */
static void yamux_refused(dmsg_session *s, int err)
{
    int sticky = dmsg_yamux_error(&s->ymx);
    session_fail(s, sticky ? sticky : err);
}

/* ---- timers: our SYN waiting for its ACK, our FIN waiting for the peer's ------------------ */

static void timer_track(dmsg_stream *st, slist *l, uint32_t flag, uint32_t timeout_ms)
{
    dmsg_session *s = st->sess;
    st->timer_since_ms = session_now(s);
    st->flags |= flag;
    session_list_push(l, st, TIMER_LINK);
    session_timer_want(s, st->timer_since_ms + timeout_ms);
}

static void timer_untrack(dmsg_stream *st)
{
    if (st->flags & ST_AWAIT_ACK)
        session_list_remove(&st->sess->ack_wait, st, TIMER_LINK);
    if (st->flags & ST_LINGER)
        session_list_remove(&st->sess->linger, st, TIMER_LINK);
    st->flags &= ~(uint32_t)(ST_AWAIT_ACK | ST_LINGER);
}

static void stream_timeout(dmsg_stream *st)
{
    uint8_t frame[DMSG_YAMUX_HDR_LEN];
    if (dmsg_yamux_reset(&st->sess->ymx, st->id, frame) == 0)
        queue_frame(st->sess, frame);
    session_stream_kill(st, DMSG_ETIMEOUT, false);
}

/* Both lists are in deadline order: every entry has the same timeout. */
static uint64_t expire(dmsg_session *s, slist *l, uint64_t timeout_ms, uint64_t now)
{
    dmsg_stream *st;
    while (!s->closing && (st = l->head) && now >= st->timer_since_ms + timeout_ms)
        stream_timeout(st);
    return !s->closing && l->head ? l->head->timer_since_ms + timeout_ms : UINT64_MAX;
}

uint64_t session_stream_timers(dmsg_session *s, uint64_t now)
{
    uint64_t a = expire(s, &s->ack_wait, s->cfg.yamux.stream_open_timeout_ms, now);
    uint64_t b = expire(s, &s->linger, s->cfg.yamux.stream_close_timeout_ms, now);
    return a < b ? a : b;
}

/* ---- life and death ----------------------------------------------------------------------- */

static dmsg_stream *stream_alloc(dmsg_session *s)
{
    dmsg_stream *st = calloc(1, sizeof *st);
    if (st)
        st->sess = s;
    return st;
}

static void stream_attach(dmsg_stream *st, uint32_t id)
{
    st->id = id;
    session_list_push(&st->sess->all, st, ALL_LINK);
    st->sess->nstreams++;
}

static void zombie_enqueue(dmsg_stream *st)
{
    if (st->flags & ST_IN_ZOMBIES)
        return;
    st->flags |= ST_IN_ZOMBIES;
    session_list_push(&st->sess->zombies, st, ZOMBIE_LINK);
    session_defer(st->sess);
}

void session_stream_kill(dmsg_stream *st, int err, bool graceful)
{
    dmsg_session *s = st->sess;
    if (st->flags & ST_DEAD)
        return;
    st->flags |= ST_DEAD | (graceful ? ST_GRACEFUL : 0);
    st->close_err = err;
    if (st->flags & ST_IN_SEND) {
        session_list_remove(&s->sendq, st, SEND_LINK);
        st->flags &= ~(uint32_t)ST_IN_SEND;
    }
    timer_untrack(st);
    for (wchunk *c = st->frame_chunk; c; c = c->next) /* never framed now */
        s->unframed_bytes -= c->len - c->framed;
    st->frame_chunk = NULL;
    if (--s->nstreams == 0) {
        s->idle_since_ms = session_now(s);
        if (s->cfg.idle_timeout_ms)
            session_timer_want(s, s->idle_since_ms + s->cfg.idle_timeout_ms);
    }
    /* A stream that ended well reports its last writes before its end. */
    if (!graceful || !st->chunk_head)
        zombie_enqueue(st);
}

void session_kill_all_streams(dmsg_session *s, int err)
{
    for (dmsg_stream *st = s->all.head; st; st = st->all.next) {
        if (!(st->flags & ST_DEAD)) {
            session_stream_kill(st, err, false);
        } else if (!(st->flags & ST_IN_ZOMBIES)) { /* ended well, its writes will not */
            st->close_err = err;
            zombie_enqueue(st);
        }
    }
}

static void fail_chunks(dmsg_stream *st)
{
    int err = st->close_err ? st->close_err : DMSG_ECLOSED;
    wchunk *c;
    while ((c = st->chunk_head)) {
        st->chunk_head = c->next;
        dmsg_write_cb cb = c->cb;
        void *arg = c->arg;
        size_t len = c->len;
        c->stream = NULL;
        if (c->refs == 0)
            free(c);
        if (cb)
            cb(st, len, err, arg);
    }
    st->chunk_tail = NULL;
}

void session_run_zombies(dmsg_session *s)
{
    dmsg_stream *st;
    while ((st = s->zombies.head)) {
        session_list_remove(&s->zombies, st, ZOMBIE_LINK);
        fail_chunks(st);
        if (st->cb.on_close)
            st->cb.on_close(st, st->close_err, st->ctx);
        session_list_remove(&s->all, st, ALL_LINK);
        free(st);
    }
}

void session_stream_incoming(dmsg_session *s, uint32_t id)
{
    uint8_t frame[DMSG_YAMUX_HDR_LEN];
    dmsg_stream *st = stream_alloc(s);
    if (!st) {
        if (dmsg_yamux_reset(&s->ymx, id, frame) == 0)
            queue_frame(s, frame);
        return;
    }
    int err = dmsg_yamux_accept(&s->ymx, id, frame);
    if (err == 0)
        err = dmsg_yamux_set_user(&s->ymx, id, st);
    if (err < 0) {
        free(st);
        yamux_refused(s, err);
        return;
    }
    stream_attach(st, id);
    if (queue_frame(s, frame) < 0)
        return;
    if (s->cb.on_stream)
        s->cb.on_stream(s, st, s->ctx);
    if (!(st->flags & (ST_CALLBACKS | ST_DEAD)))
        dmsg_stream_reset(st); /* nobody took it */
}

int dmsg_session_open_stream(dmsg_session *s, const dmsg_stream_callbacks *cb, void *ctx,
                             dmsg_stream **out)
{
    if (s->state != DMSG_SESSION_OPEN)
        return DMSG_ESTATE;
    dmsg_stream *st = stream_alloc(s);
    if (!st)
        return DMSG_ENOMEM;
    uint8_t frame[DMSG_YAMUX_HDR_LEN];
    uint32_t id;
    int err = dmsg_yamux_open(&s->ymx, st, &id, frame);
    if (err < 0) {
        free(st);
        return err;
    }
    err = session_queue_bytes(s, frame, sizeof frame);
    if (err < 0) { /* the SYN never left: forget the stream again */
        dmsg_yamux_reset(&s->ymx, id, frame);
        free(st);
        return err;
    }
    stream_attach(st, id);
    dmsg_stream_set_callbacks(st, cb, ctx);
    timer_track(st, &s->ack_wait, ST_AWAIT_ACK, s->cfg.yamux.stream_open_timeout_ms);
    *out = st;
    session_flush(s);
    return 0;
}

/* ---- sending ------------------------------------------------------------------------------ */

void session_stream_sendable(dmsg_stream *st)
{
    bool fin_due = (st->flags & ST_FIN_WANTED) && !(st->flags & ST_FIN_SENT);
    if (st->flags & (ST_DEAD | ST_IN_SEND) || (!st->frame_chunk && !fin_due))
        return;
    st->flags |= ST_IN_SEND;
    session_list_push(&st->sess->sendq, st, SEND_LINK);
}

static void send_fin(dmsg_stream *st)
{
    dmsg_session *s = st->sess;
    uint8_t frame[DMSG_YAMUX_HDR_LEN];
    int err = dmsg_yamux_close(&s->ymx, st->id, frame);
    if (err < 0) {
        yamux_refused(s, err);
        return;
    }
    if (queue_frame(s, frame) < 0)
        return;
    st->flags |= ST_FIN_SENT;
    timer_untrack(st);
    if (st->flags & ST_FIN_RECV) /* yamux forgot it: both FINs */
        session_stream_kill(st, 0, true);
    else
        timer_track(st, &s->linger, ST_LINGER, s->cfg.yamux.stream_close_timeout_ms);
}

/* One data frame from the oldest unframed chunk; then back in line, or the FIN. */
static void frame_one(dmsg_session *s, dmsg_stream *st)
{
    wchunk *c = st->frame_chunk;
    if (!c) {
        if ((st->flags & ST_FIN_WANTED) && !(st->flags & ST_FIN_SENT))
            send_fin(st);
        return;
    }
    /* Never more than the pacing mark per frame: data alone stays under half the queue limit. */
    size_t want = c->len - c->framed, pace = s->cfg.max_write_queue / 4;
    uint8_t hdr[DMSG_YAMUX_HDR_LEN];
    uint32_t granted;
    int err = dmsg_yamux_data_frame(&s->ymx, st->id, want < pace ? want : pace, hdr, &granted);
    if (err == DMSG_EAGAIN)
        return; /* window closed: EV_WINDOW puts it back in line */
    if (err < 0) {
        yamux_refused(s, err);
        return;
    }
    err = session_queue_data(s, hdr, c, c->framed, granted);
    if (err < 0) {
        session_fail(s, err);
        return;
    }
    c->framed += granted;
    s->unframed_bytes -= granted;
    if (c->framed == c->len)
        st->frame_chunk = c->next;
    session_stream_sendable(st);
}

void session_pump_streams(dmsg_session *s)
{
    size_t pace = s->cfg.max_write_queue / 4;
    dmsg_stream *st;
    while (!s->closing && s->out_bytes < pace && (st = s->sendq.head)) {
        session_list_remove(&s->sendq, st, SEND_LINK);
        st->flags &= ~(uint32_t)ST_IN_SEND;
        frame_one(s, st);
    }
}

void session_stream_written(dmsg_stream *st)
{
    wchunk *c;
    while ((c = st->chunk_head) && c->framed == c->len && c->refs == 0) {
        st->chunk_head = c->next;
        if (!st->chunk_head)
            st->chunk_tail = NULL;
        dmsg_write_cb cb = c->cb;
        void *arg = c->arg;
        size_t len = c->len;
        free(c);
        if (cb)
            cb(st, len, 0, arg);
    }
    if (st->flags & ST_DEAD) {
        if (!st->chunk_head) /* ended well and now all written: on_close may come */
            zombie_enqueue(st);
        return;
    }
    if (st->cb.on_writable)
        st->cb.on_writable(st, st->ctx);
}

/* ---- the stream API ----------------------------------------------------------------------- */

void dmsg_stream_set_callbacks(dmsg_stream *st, const dmsg_stream_callbacks *cb, void *ctx)
{
    if (cb)
        st->cb = *cb;
    else
        memset(&st->cb, 0, sizeof st->cb);
    st->ctx = ctx;
    st->flags |= ST_CALLBACKS;
}

void *dmsg_stream_ctx(const dmsg_stream *st)
{
    return st->ctx;
}

dmsg_session *dmsg_stream_session(const dmsg_stream *st)
{
    return st->sess;
}

uint32_t dmsg_stream_id(const dmsg_stream *st)
{
    return st->id;
}

size_t dmsg_stream_write_queued(const dmsg_stream *st)
{
    return st->queued;
}

int dmsg_stream_write(dmsg_stream *st, const uint8_t *data, size_t len, dmsg_write_cb cb,
                      void *arg)
{
    dmsg_session *s = st->sess;
    if (st->flags & (ST_DEAD | ST_FIN_WANTED))
        return DMSG_ECLOSED;
    if (len == 0 || !data)
        return DMSG_EINVAL;
    if (st->queued > s->cfg.max_write_queue || len > s->cfg.max_write_queue - st->queued)
        return DMSG_ELIMIT;
    wchunk *c = malloc(sizeof *c + len);
    if (!c)
        return DMSG_ENOMEM;
    *c = (wchunk){.stream = st, .cb = cb, .arg = arg, .len = len};
    memcpy(c->data, data, len);
    if (st->chunk_tail)
        st->chunk_tail->next = c;
    else
        st->chunk_head = c;
    st->chunk_tail = c;
    if (!st->frame_chunk)
        st->frame_chunk = c;
    st->queued += len;
    s->unframed_bytes += len;
    session_stream_sendable(st);
    session_flush(s);
    return 0;
}

void dmsg_stream_consume(dmsg_stream *st, size_t n)
{
    dmsg_session *s = st->sess;
    if (st->flags & ST_DEAD)
        return;
    while (n > 0) {
        uint32_t part = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
        uint8_t frame[DMSG_YAMUX_HDR_LEN];
        size_t frame_len;
        if (dmsg_yamux_consume(&s->ymx, st->id, part, frame, &frame_len) < 0)
            return;
        if (frame_len && queue_frame(s, frame) < 0)
            return;
        n -= part;
    }
    session_flush(s);
}

int dmsg_stream_close(dmsg_stream *st)
{
    if (st->flags & (ST_DEAD | ST_FIN_WANTED))
        return DMSG_ECLOSED;
    st->flags |= ST_FIN_WANTED;
    if (!st->frame_chunk)
        send_fin(st);
    session_flush(st->sess);
    return 0;
}

int dmsg_stream_reset(dmsg_stream *st)
{
    dmsg_session *s = st->sess;
    if (st->flags & ST_DEAD)
        return DMSG_ECLOSED;
    uint8_t frame[DMSG_YAMUX_HDR_LEN];
    if (dmsg_yamux_reset(&s->ymx, st->id, frame) == 0)
        queue_frame(s, frame);
    session_stream_kill(st, 0, false);
    session_flush(s);
    return 0;
}

void dmsg_session_foreach_stream(dmsg_session *s, void (*fn)(dmsg_stream *st, void *arg),
                                 void *arg)
{
    for (dmsg_stream *st = s->all.head; st;) {
        dmsg_stream *next = st->all.next; /* only the loop frees streams */
        if (!(st->flags & ST_DEAD))
            fn(st, arg);
        st = next;
    }
}

static void on_orphan_data(dmsg_stream *st, const uint8_t *data, size_t len, void *ctx)
{
    (void)data;
    (void)ctx;
    dmsg_stream_consume(st, len);
}

static void on_orphan_event(dmsg_stream *st, void *ctx)
{
    (void)st;
    (void)ctx;
}

static void on_orphan_close(dmsg_stream *st, int err, void *ctx)
{
    (void)st;
    (void)err;
    (void)ctx;
}

void dmsg_stream_orphan(dmsg_stream *st)
{
    static const dmsg_stream_callbacks orphan = {
        .on_data = on_orphan_data,
        .on_fin = on_orphan_event,
        .on_writable = on_orphan_event,
        .on_close = on_orphan_close,
    };
    dmsg_stream_set_callbacks(st, &orphan, NULL);
}
