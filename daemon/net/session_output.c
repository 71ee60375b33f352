/* Writing: one queue of segments per session, written with one uv_write at a time that carries
 * every queued segment (up to SESSION_MAX_IOV buffers) as an iovec array. Segments hold control
 * frames inline; a data frame is its header inline plus a slice of the stream's chunk, which is
 * the only copy of the payload. */
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"
#include "session_internal.h"

static size_t seg_bytes(const out_seg *seg)
{
    return seg->inl_len + seg->len;
}

static out_seg *seg_new(const uint8_t *inl, size_t inl_len, size_t cap)
{
    out_seg *seg = malloc(sizeof *seg + cap);
    if (!seg)
        return NULL;
    seg->next = NULL;
    seg->chunk = NULL;
    seg->off = seg->len = 0;
    seg->inl_len = (uint16_t)inl_len;
    seg->inl_cap = (uint16_t)cap;
    memcpy(seg->inl, inl, inl_len);
    return seg;
}

static void seg_append(dmsg_session *s, out_seg *seg)
{
    if (s->out_tail)
        s->out_tail->next = seg;
    else
        s->out_head = seg;
    s->out_tail = seg;
    s->out_count++;
    s->out_bytes += seg_bytes(seg);
}

static out_seg *seg_pop(dmsg_session *s)
{
    out_seg *seg = s->out_head;
    s->out_head = seg->next;
    if (!s->out_head)
        s->out_tail = NULL;
    s->out_count--;
    s->out_bytes -= seg_bytes(seg);
    return seg;
}

/* Control frames and handshake messages share blocks: a flood of pings costs about the bytes of
 * its pongs, not an allocation each. The block being written is never appended to. */
int session_queue_bytes(dmsg_session *s, const uint8_t *bytes, size_t len)
{
    out_seg *t = s->out_tail;
    if (t && !t->chunk && s->inflight_segs < s->out_count &&
        (size_t)(t->inl_cap - t->inl_len) >= len) {
        memcpy(t->inl + t->inl_len, bytes, len);
        t->inl_len = (uint16_t)(t->inl_len + len);
        s->out_bytes += len;
        return 0;
    }
    if (len > SESSION_CTRL_BLOCK)
        return DMSG_EINVAL;
    out_seg *seg = seg_new(bytes, len, SESSION_CTRL_BLOCK);
    if (!seg)
        return DMSG_ENOMEM;
    seg_append(s, seg);
    return 0;
}

int session_queue_data(dmsg_session *s, const uint8_t hdr[DMSG_YAMUX_HDR_LEN], wchunk *c,
                       size_t off, size_t len)
{
    out_seg *seg = seg_new(hdr, DMSG_YAMUX_HDR_LEN, DMSG_YAMUX_HDR_LEN);
    if (!seg)
        return DMSG_ENOMEM;
    seg->chunk = c;
    seg->off = off;
    seg->len = len;
    c->refs++;
    seg_append(s, seg);
    return 0;
}

/* A chunk whose callback already ran is freed by the last segment that points into it. */
static void chunk_release(wchunk *c)
{
    if (--c->refs == 0 && !c->stream)
        free(c);
}

static void seg_free(out_seg *seg)
{
    if (seg->chunk)
        chunk_release(seg->chunk);
    free(seg);
}

void session_drop_output(dmsg_session *s)
{
    /* The write in flight still reads its segments; libuv cancels it when the handle closes. */
    out_seg *kept = NULL, *seg = s->out_head;
    for (unsigned i = 0; i < s->inflight_segs && seg; i++) {
        kept = seg;
        seg = seg->next;
    }
    if (kept)
        kept->next = NULL;
    else
        s->out_head = NULL;
    s->out_tail = kept;
    while (seg) {
        out_seg *next = seg->next;
        s->out_count--;
        s->out_bytes -= seg_bytes(seg);
        seg_free(seg);
        seg = next;
    }
}

/* ---- the write ---------------------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status);

static void start_write(dmsg_session *s)
{
    if (s->writing || !s->out_head)
        return;
    uv_buf_t bufs[SESSION_MAX_IOV];
    unsigned nbufs = 0, segs = 0;
    for (out_seg *seg = s->out_head; seg && nbufs + 2 <= SESSION_MAX_IOV; seg = seg->next) {
        if (seg->inl_len)
            bufs[nbufs++] = uv_buf_init((char *)seg->inl, seg->inl_len);
        if (seg->chunk)
            bufs[nbufs++] = uv_buf_init((char *)seg->chunk->data + seg->off, (unsigned)seg->len);
        segs++;
    }
    if (uv_write(&s->write_req, (uv_stream_t *)s->tcp, bufs, nbufs, on_write) < 0) {
        session_fail(s, DMSG_EIO);
        return;
    }
    uint64_t now = session_now(s);
    s->writing = true;
    s->inflight_segs = segs;
    s->write_progress_ms = now;
    s->write_progress_mark = uv_stream_get_write_queue_size((uv_stream_t *)s->tcp);
    session_timer_want(s, now + s->cfg.write_timeout_ms);
}

/* Releases the segments of the finished write; returns the streams whose data went out, linked
 * through notify_next. */
static dmsg_stream *release_written(dmsg_session *s, bool ok)
{
    dmsg_stream *notify = NULL;
    unsigned n = s->inflight_segs;
    s->inflight_segs = 0;
    for (unsigned i = 0; i < n && s->out_head; i++) {
        out_seg *seg = seg_pop(s);
        if (ok)
            s->stats.bytes_out += seg_bytes(seg);
        dmsg_stream *st = seg->chunk ? seg->chunk->stream : NULL;
        if (st) {
            st->queued -= seg->len;
            if (ok && !(st->flags & ST_NOTIFY)) {
                st->flags |= ST_NOTIFY;
                st->notify_next = notify;
                notify = st;
            }
        }
        seg_free(seg);
    }
    return notify;
}

static void on_write(uv_write_t *req, int status)
{
    dmsg_session *s = req->handle->data;
    s->writing = false;
    dmsg_stream *notify = release_written(s, status == 0 && !s->closing);
    if (s->closing)
        return; /* cancelled by the close, or the session is going anyway */
    if (status < 0) {
        session_fail(s, DMSG_EIO);
        return;
    }
    s->hold++;
    while (notify) {
        dmsg_stream *st = notify;
        notify = st->notify_next;
        st->flags &= ~(uint32_t)ST_NOTIFY;
        session_stream_written(st);
    }
    s->hold--;
    if (s->closing)
        return;
    if (s->glitch_close_at != 0 && s->stats.bytes_out >= s->glitch_close_at) {
        session_fail(s, DMSG_EGLITCH); /* the GOAWAY is out */
        return;
    }
    if (s->read_paused && s->out_bytes < s->cfg.max_write_queue / 4) {
        s->read_paused = false;
        if (session_read_start(s) < 0)
            session_fail(s, DMSG_EIO);
    }
    session_flush(s);
}

void session_flush(dmsg_session *s)
{
    if (s->hold || s->closing)
        return;
    if (s->state == DMSG_SESSION_OPEN)
        session_pump_streams(s);
    if (s->closing)
        return;
    if (s->out_bytes > s->cfg.max_write_queue) {
        session_fail(s, DMSG_ELIMIT);
        return;
    }
    if (s->state == DMSG_SESSION_OPEN && s->reading && s->out_bytes >= s->cfg.max_write_queue / 2) {
        session_read_stop(s); /* the peer does not read: stop making replies for it */
        s->read_paused = true;
    }
    start_write(s);
}

/* Best effort before closing on a protocol error: only when no write is half done. */
void session_try_goaway(dmsg_session *s, uint32_t code)
{
    if (!s->ymx_live || s->writing || s->closing)
        return;
    uint8_t frame[DMSG_YAMUX_HDR_LEN];
    dmsg_yamux_goaway(&s->ymx, code, frame);
    uv_buf_t buf = uv_buf_init((char *)frame, sizeof frame);
    if (uv_try_write((uv_stream_t *)s->tcp, &buf, 1) > 0)
        s->stats.bytes_out += sizeof frame;
}
