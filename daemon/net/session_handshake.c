/* The session's first bytes: an optional PROXY header (server role), then the three Noise XK
 * messages, each u16-length framed (spec §3.3, §3.6, §3.7, §4.1).
 *
 * Everything here lives in one heap block that exists only until the handshake ends, so an
 * established session carries none of it. Bytes that follow message 3 in the same read are left
 * to the caller for yamux (the reference fails such sessions; a lenient server stays compatible,
 * spec §9 item 13). */
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/proxy.h"
#include "session_internal.h"

#define PROXY_HEADER_TIME_MS 1000 /* threats.md T4: a PROXY header must not trickle in */

/* Handshake frames are read here rather than with dmsg_noise_framer, whose caller buffer must
 * hold the largest frame: a 4 KiB block per pending handshake leaves holes in the heap between
 * long-lived sessions. A body is copied only when it arrives in pieces, into a buffer of its
 * exact size. */
typedef struct hs_reader {
    uint8_t hdr[DMSG_NOISE_LEN_PREFIX];
    uint8_t hdr_have;
    size_t len;    /* body length, once the header is complete */
    uint8_t *body; /* a body that arrives in pieces */
    size_t have;
} hs_reader;

struct session_hs {
    dmsg_noise_hs hs;
    hs_reader rd;
    bool proxy_pending;  /* still deciding whether a PROXY header comes first */
    uint8_t *proxy_buf;  /* a header that arrives in pieces (DMSG_PROXY_MAX_LEN bytes) */
    size_t proxy_have;
};

int session_hs_start(dmsg_session *s, const dmsg_identity *id, const dmsg_pk *remote_pk)
{
    session_hs *hs = calloc(1, sizeof *hs);
    if (!hs)
        return DMSG_ENOMEM;
    dmsg_noise_role role = remote_pk ? DMSG_NOISE_INITIATOR : DMSG_NOISE_RESPONDER;
    int err = dmsg_noise_hs_init(&hs->hs, DMSG_NOISE_XK, role, &id->sk, remote_pk, &id->rng);
    if (err < 0) {
        dmsg_noise_hs_wipe(&hs->hs);
        free(hs);
        return err;
    }
    hs->proxy_pending = s->role == DMSG_SESSION_SERVER && s->cfg.accept_proxy_header;
    s->hs = hs;
    return 0;
}

void session_hs_free(dmsg_session *s)
{
    session_hs *hs = s->hs;
    if (!hs)
        return;
    s->hs = NULL;
    dmsg_noise_hs_wipe(&hs->hs);
    if (hs->rd.body)
        dmsg_wipe(hs->rd.body, hs->rd.len);
    free(hs->rd.body);
    free(hs->proxy_buf);
    free(hs);
}

bool session_hs_truncated(const dmsg_session *s)
{
    return s->hs && (s->hs->proxy_have > 0 || s->hs->rd.hdr_have > 0);
}

uint64_t session_hs_deadline(const dmsg_session *s)
{
    uint64_t due = s->stats.started_ms + s->cfg.handshake_timeout_ms;
    uint64_t proxy_due = s->stats.started_ms + PROXY_HEADER_TIME_MS;
    if (s->hs && s->hs->proxy_buf && proxy_due < due)
        due = proxy_due;
    return due;
}

/* ---- PROXY header ------------------------------------------------------------------------- */

static void take_proxy_address(dmsg_session *s, const dmsg_proxy_info *info)
{
    if (!info->has_addr)
        return;
    memset(&s->remote_addr, 0, sizeof s->remote_addr);
    if (info->family == 4) {
        struct sockaddr_in *a = (struct sockaddr_in *)&s->remote_addr;
        a->sin_family = AF_INET;
        memcpy(&a->sin_addr, info->src, 4);
        a->sin_port = htons(info->src_port);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->remote_addr;
        a->sin6_family = AF_INET6;
        memcpy(&a->sin6_addr, info->src, 16);
        a->sin6_port = htons(info->src_port);
    }
}

static void proxy_done(dmsg_session *s, const dmsg_proxy_info *info)
{
    session_hs *hs = s->hs;
    if (info)
        take_proxy_address(s, info);
    hs->proxy_pending = false;
    free(hs->proxy_buf);
    hs->proxy_buf = NULL;
    hs->proxy_have = 0;
}

/* The first bytes decide: a signature means a header we must parse whole, anything else is the
 * handshake. A header that arrives in pieces is collected; its end always lies in the newest
 * piece, so what follows it is still in the caller's input. */
static int proxy_input(dmsg_session *s, const uint8_t *p, size_t n, size_t *used)
{
    session_hs *hs = s->hs;
    dmsg_proxy_info info;
    size_t hdr_len;
    *used = 0;
    if (!hs->proxy_buf) {
        int r = dmsg_proxy_parse(p, n, &info, &hdr_len);
        if (r == DMSG_ENOTFOUND) {
            proxy_done(s, NULL);
            return 0;
        }
        if (r == DMSG_EAGAIN) {
            hs->proxy_buf = malloc(DMSG_PROXY_MAX_LEN);
            if (!hs->proxy_buf)
                return DMSG_ENOMEM;
            memcpy(hs->proxy_buf, p, n); /* a prefix is shorter than the longest header */
            hs->proxy_have = n;
            *used = n;
            session_timer_want(s, session_hs_deadline(s));
            return 0;
        }
        if (r < 0)
            return r;
        proxy_done(s, &info);
        *used = hdr_len;
        return 0;
    }
    size_t take = DMSG_PROXY_MAX_LEN - hs->proxy_have;
    if (take > n)
        take = n;
    memcpy(hs->proxy_buf + hs->proxy_have, p, take);
    int r = dmsg_proxy_parse(hs->proxy_buf, hs->proxy_have + take, &info, &hdr_len);
    if (r == DMSG_EAGAIN && hs->proxy_have + take < DMSG_PROXY_MAX_LEN) {
        hs->proxy_have += take;
        *used = take;
        return 0;
    }
    if (r == DMSG_EAGAIN)
        return DMSG_ETOOBIG;
    if (r == DMSG_ENOTFOUND) /* it began like a signature: not a DMSG client either */
        return DMSG_EPROTO;
    if (r < 0)
        return r;
    *used = hdr_len - hs->proxy_have;
    proxy_done(s, &info);
    return 0;
}

/* ---- frames ------------------------------------------------------------------------------ */

/* Consumes input up to the end of the next frame: 0 with *frame set (valid until the next call;
 * in place when the body was contiguous), DMSG_EAGAIN when the input ran out first. */
static int reader_next(hs_reader *rd, uint8_t *in, size_t n, size_t *used, uint8_t **frame,
                       size_t *frame_len)
{
    size_t pos = 0;
    while (rd->hdr_have < DMSG_NOISE_LEN_PREFIX && pos < n)
        rd->hdr[rd->hdr_have++] = in[pos++];
    *used = pos;
    if (rd->hdr_have < DMSG_NOISE_LEN_PREFIX)
        return DMSG_EAGAIN;
    rd->len = (size_t)rd->hdr[0] << 8 | rd->hdr[1];
    if (rd->len > DMSG_NOISE_FRAME_MAX) /* spec §3.6: closed before reading any body */
        return DMSG_ETOOBIG;
    size_t avail = n - pos;
    if (!rd->body && avail >= rd->len) {
        *frame = in + pos;
        *frame_len = rd->len;
        *used = pos + rd->len;
        rd->hdr_have = 0;
        return 0;
    }
    if (!rd->body && !(rd->body = malloc(rd->len ? rd->len : 1)))
        return DMSG_ENOMEM;
    size_t take = rd->len - rd->have < avail ? rd->len - rd->have : avail;
    memcpy(rd->body + rd->have, in + pos, take);
    rd->have += take;
    *used = pos + take;
    if (rd->have < rd->len)
        return DMSG_EAGAIN;
    *frame = rd->body;
    *frame_len = rd->len;
    rd->hdr_have = 0;
    return 0;
}

/* The buffer of a frame that came in pieces, once it was read. */
static void reader_release(hs_reader *rd)
{
    if (!rd->body)
        return;
    dmsg_wipe(rd->body, rd->len);
    free(rd->body);
    rd->body = NULL;
    rd->have = 0;
}

/* ---- Noise XK ----------------------------------------------------------------------------- */

static int write_message(dmsg_session *s)
{
    uint8_t msg[DMSG_NOISE_LEN_PREFIX + DMSG_NOISE_HS_MSG_MAX];
    size_t len;
    int err = dmsg_noise_hs_write_framed(&s->hs->hs, msg, sizeof msg, &len);
    if (err == 0)
        err = session_queue_bytes(s, msg, len);
    if (s->hs_sent_ms == 0)
        s->hs_sent_ms = session_now(s);
    return err;
}

/* The reference server fails a session when bytes beyond message 3 are already in its read
 * buffer as it finishes the handshake (ErrSessionHandshakeExtraBytes), and real Go clients
 * stay quiet that long. So the client role holds all yamux output until the server has had
 * time to read message 3 alone: twice the handshake round trip plus a margin, within bounds. */
#define SETTLE_MIN_MS 20
#define SETTLE_MAX_MS 1000

static uint64_t settle_delay_ms(const dmsg_session *s)
{
    uint64_t d = 2 * s->hs_rtt_ms + SETTLE_MIN_MS;
    return d > SETTLE_MAX_MS ? SETTLE_MAX_MS : d;
}

/* Split, learn the peer, drop the handshake state and open. */
static int finish(dmsg_session *s)
{
    session_hs *hs = s->hs;
    int err = dmsg_noise_hs_split(&hs->hs, &s->tx, &s->rx);
    if (err == 0 && s->role == DMSG_SESSION_SERVER)
        err = dmsg_noise_hs_remote_static(&hs->hs, &s->remote_pk);
    if (err < 0)
        return err;
    session_hs_free(s);
    if (s->role == DMSG_SESSION_CLIENT) {
        s->settle_until_ms = session_now(s) + settle_delay_ms(s);
        session_timer_want(s, s->settle_until_ms);
        return 1;
    }
    session_opened(s);
    return 1;
}

/* After a message was read: answer it and/or finish. 1 when the handshake is over. */
static int advance(dmsg_session *s)
{
    if (dmsg_noise_hs_next(&s->hs->hs) == DMSG_NOISE_STEP_WRITE) {
        int err = write_message(s);
        if (err < 0)
            return err;
    }
    switch (dmsg_noise_hs_next(&s->hs->hs)) {
    case DMSG_NOISE_STEP_SPLIT:
        return finish(s);
    case DMSG_NOISE_STEP_READ:
        return 0;
    default:
        return DMSG_ESTATE;
    }
}

int session_hs_input(dmsg_session *s, uint8_t *p, size_t n, size_t *used)
{
    *used = 0;
    if (s->hs->proxy_pending) {
        size_t u;
        int err = proxy_input(s, p, n, &u);
        if (err < 0)
            return err;
        *used = u;
        if (s->hs->proxy_pending)
            return 0;
        p += u;
        n -= u;
    }
    while (n > 0) {
        size_t u;
        uint8_t *frame;
        size_t frame_len;
        int r = reader_next(&s->hs->rd, p, n, &u, &frame, &frame_len);
        p += u;
        n -= u;
        *used += u;
        if (r == DMSG_EAGAIN)
            return 0;
        if (r < 0)
            return r;
        r = dmsg_noise_hs_read(&s->hs->hs, frame, frame_len);
        reader_release(&s->hs->rd);
        if (r == 0 && s->role == DMSG_SESSION_CLIENT && s->hs_rtt_ms == 0)
            s->hs_rtt_ms = session_now(s) - s->hs_sent_ms;
        if (r == 0)
            r = advance(s);
        if (r != 0)
            return r < 0 ? r : 0; /* 1: open now, the rest is yamux */
    }
    return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
    dmsg_session *s = req->data;
    free(req); /* its own allocation: a cancelled connect reports after the handshake state went */
    if (s->closing)
        return;
    s->hold++;
    int err = status < 0 ? DMSG_EIO : 0;
    if (err == 0) {
        s->state = DMSG_SESSION_HANDSHAKE;
        err = write_message(s);
    }
    if (err == 0)
        err = session_read_start(s);
    s->hold--;
    if (err < 0) {
        session_fail(s, err);
        return;
    }
    session_flush(s);
}

int session_hs_connect(dmsg_session *s, const struct sockaddr *addr)
{
    uv_connect_t *req = malloc(sizeof *req);
    if (!req)
        return DMSG_ENOMEM;
    req->data = s;
    if (uv_tcp_connect(req, s->tcp, addr, on_connect) < 0) {
        free(req);
        return DMSG_EIO;
    }
    return 0;
}
