/* In-process end of a stream to our own key; see own_conn.h. */
#include "own_conn.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmsg/e2e.h"
#include "dmsg/error.h"
#include "dmsg/noise.h"

#define RESPONSE_FRAME_CAP (DMSG_E2E_OBJECT_MAX + 64)
#define FAILED_DIAL_LINGER_MS 5000

struct own_conn {
    dmsg_stream *st;                     /* NULL once gone */
    struct own_conn_callbacks cb;
    void *ctx;
    dmsg_pk remote_pk;
    uint16_t remote_port;
    uint16_t local_port;
    bool dialed;                         /* we are the initiator (own_conn_dial) */
    bool has_via_peer;                   /* the stream's session is a peer server's */
    dmsg_pk via_peer;
    /* For the admin API; bytes are those of the encrypted stream after the handshake, what a
     * relay would count for the same stream. */
    uint64_t opened_ms, last_active_ms;
    uint64_t bytes_in, bytes_out;
    dmsg_noise_tx tx;
    dmsg_e2e_reader reader;
    uint8_t *early;                      /* bytes the dialer sent with its request */
    size_t early_len;
    uv_timer_t kick;                     /* hands the early bytes out from the loop */
    bool closing;                        /* our FIN or reset went out */
    bool gone;                           /* on_close ran */
    /* Dialing (own_conn_dial) until the response is in. */
    dmsg_e2e_dialer *dialer;
    own_conn_dialed_fn on_dialed;
    uint8_t *resp;                       /* u16 length || sealed response, as it arrives */
    size_t resp_len;
    uint8_t plain[DMSG_NOISE_CHUNK_MAX];
};

static void on_kick_closed(uv_handle_t *h)
{
    struct own_conn *c = h->data;

    dmsg_e2e_reader_wipe(&c->reader);
    dmsg_wipe(&c->tx, sizeof c->tx);
    if (c->dialer != NULL) {
        dmsg_e2e_dialer_wipe(c->dialer);
        free(c->dialer);
    }
    free(c->resp);
    free(c->early);
    free(c);
}

/* Opens what frames are complete and hands the plaintext out. Returns 0, or the reader's error
 * (the stream is then reset). */
static int take_input(struct own_conn *c, const uint8_t *data, size_t len)
{
    if (len > 0) {
        c->bytes_in += len;
        c->last_active_ms = uv_now(c->kick.loop);
    }
    while (len > 0 && !c->gone && c->st != NULL) {
        size_t used = 0, out_len = 0;
        int rc = dmsg_e2e_reader_feed(&c->reader, data, len, &used, c->plain, sizeof c->plain,
                                      &out_len);
        if (rc != 0)
            return rc;
        data += used;
        len -= used;
        if (out_len > 0 && c->cb.on_data != NULL)
            c->cb.on_data(c, c->plain, out_len, c->ctx);
        if (used == 0 && out_len == 0)
            break;
    }
    return 0;
}

static void dial_done(struct own_conn *c, int err, uint16_t code);
static int take_response(struct own_conn *c, const uint8_t **data, size_t *len);

static void on_stream_data(dmsg_stream *st, const uint8_t *data, size_t len, void *ctx)
{
    struct own_conn *c = ctx;

    dmsg_stream_consume(st, len);
    if (c->dialer != NULL && take_response(c, &data, &len) != 0)
        return;
    if (c->closing && c->cb.on_data == NULL)
        return; /* a failed dial's late answer */
    if (take_input(c, data, len) != 0)
        own_conn_reset(c);
}

static void on_stream_fin(dmsg_stream *st, void *ctx)
{
    struct own_conn *c = ctx;

    (void)st;
    if (c->dialer != NULL) {
        dial_done(c, DMSG_ECLOSED, 0);
        return;
    }
    if (c->cb.on_eof != NULL)
        c->cb.on_eof(c, c->ctx);
}

static void on_stream_close(dmsg_stream *st, int err, void *ctx)
{
    struct own_conn *c = ctx;

    (void)st;
    c->st = NULL;
    c->gone = true;
    uv_timer_stop(&c->kick);
    if (c->on_dialed != NULL) {
        own_conn_dialed_fn fn = c->on_dialed;
        c->on_dialed = NULL;
        fn(c, err == DMSG_ETIMEOUT ? DMSG_ETIMEOUT : DMSG_ECLOSED, 0, c->ctx);
    } else if (c->cb.on_close != NULL)
        c->cb.on_close(c, err, c->ctx);
    uv_close((uv_handle_t *)&c->kick, on_kick_closed);
}

static const dmsg_stream_callbacks stream_cb = {on_stream_data, on_stream_fin, NULL,
                                                on_stream_close};

static void on_kick(uv_timer_t *t)
{
    struct own_conn *c = t->data;
    uint8_t *early = c->early;
    size_t early_len = c->early_len;
    int rc;

    c->early = NULL;
    c->early_len = 0;
    rc = take_input(c, early, early_len);
    free(early);
    /* The relay left these bytes unconsumed for the new owner. */
    if (c->st != NULL)
        dmsg_stream_consume(c->st, early_len);
    if (rc != 0)
        own_conn_reset(c);
}

static uint16_t answer(struct own_conn *c, const dmsg_identity *id,
                       const struct relay_own_request *req)
{
    dmsg_stream_request parsed;
    dmsg_noise_rx rx;
    uint8_t obj[DMSG_E2E_OBJECT_MAX];
    uint8_t frame[RESPONSE_FRAME_CAP];
    size_t obj_len = 0, frame_len = 0;
    uint16_t code = 0;
    int rc;

    rc = dmsg_e2e_request_check(&parsed, req->raw, req->raw_len, &id->pk, &code);
    if (rc != 0)
        return code != 0 ? code : DMSG_WIRE_SIGNED_OBJECT_INVALID;
    rc = dmsg_e2e_accept(&parsed, &id->sk, &id->rng, obj, sizeof obj, &obj_len, &c->tx, &rx);
    if (rc == 0)
        rc = dmsg_e2e_reader_init(&c->reader, &rx);
    dmsg_wipe(&rx, sizeof rx);
    if (rc == 0)
        rc = dmsg_session_seal_object(req->session, obj, obj_len, frame, sizeof frame,
                                      &frame_len);
    if (rc == 0)
        rc = dmsg_stream_write(req->stream, frame, frame_len, NULL, NULL);
    return rc == 0 ? 0 : DMSG_WIRE_REQ_NO_LISTENER;
}

/* A stream whose session is not the remote end's own came through a peer server (the relay
 * takes other sources' requests only from peers; the setup node dials through them). */
static void note_opened(struct own_conn *c, const dmsg_session *s, uv_loop_t *loop)
{
    const dmsg_pk *holder = dmsg_session_remote_pk(s);

    c->has_via_peer = holder != NULL && !dmsg_pk_equal(holder, &c->remote_pk);
    if (c->has_via_peer)
        c->via_peer = *holder;
    c->opened_ms = c->last_active_ms = uv_now(loop);
}

uint16_t own_conn_accept(uv_loop_t *loop, const dmsg_identity *id,
                         const struct relay_own_request *req,
                         const struct own_conn_callbacks *cb, void *ctx, struct own_conn **out)
{
    struct own_conn *c = calloc(1, sizeof *c);
    uint16_t code;

    *out = NULL;
    if (c == NULL)
        return DMSG_WIRE_REQ_NO_LISTENER;
    if (req->early_len > 0) {
        c->early = malloc(req->early_len);
        if (c->early == NULL) {
            free(c);
            return DMSG_WIRE_REQ_NO_LISTENER;
        }
        memcpy(c->early, req->early, req->early_len);
        c->early_len = req->early_len;
    }
    code = answer(c, id, req);
    if (code != 0) {
        dmsg_wipe(&c->tx, sizeof c->tx);
        dmsg_e2e_reader_wipe(&c->reader);
        free(c->early);
        free(c);
        return code;
    }
    c->st = req->stream;
    c->cb = *cb;
    c->ctx = ctx;
    c->remote_pk = req->src_pk;
    c->remote_port = req->src_port;
    c->local_port = req->dst_port;
    note_opened(c, req->session, loop);
    uv_timer_init(loop, &c->kick);
    c->kick.data = c;
    if (c->early_len > 0)
        uv_timer_start(&c->kick, on_kick, 0, 0);
    dmsg_stream_set_callbacks(c->st, &stream_cb, c);
    *out = c;
    return 0;
}

int own_conn_write(struct own_conn *c, const uint8_t *data, size_t len)
{
    size_t cap, out_len = 0;
    uint8_t *out;
    int rc;

    if (c->st == NULL || c->closing)
        return DMSG_ECLOSED;
    if (len == 0)
        return 0;
    cap = dmsg_noise_stream_sealed_len(len);
    if (cap == 0)
        return DMSG_ETOOBIG;
    out = malloc(cap);
    if (out == NULL)
        return DMSG_ENOMEM;
    rc = dmsg_noise_seal_stream(&c->tx, data, len, out, cap, &out_len);
    if (rc == 0)
        rc = dmsg_stream_write(c->st, out, out_len, NULL, NULL);
    free(out);
    if (rc == 0) {
        c->bytes_out += out_len;
        c->last_active_ms = uv_now(c->kick.loop);
    }
    return rc;
}

int own_conn_close(struct own_conn *c)
{
    if (c->st == NULL || c->closing)
        return DMSG_ECLOSED;
    c->closing = true;
    return dmsg_stream_close(c->st);
}

void own_conn_reset(struct own_conn *c)
{
    if (c->st == NULL)
        return;
    c->closing = true;
    dmsg_stream_reset(c->st);
}

size_t own_conn_write_queued(const struct own_conn *c)
{
    return c->st != NULL ? dmsg_stream_write_queued(c->st) : 0;
}

const dmsg_pk *own_conn_remote_pk(const struct own_conn *c)
{
    return &c->remote_pk;
}

uint16_t own_conn_remote_port(const struct own_conn *c)
{
    return c->remote_port;
}

static enum relay_link_phase phase_of(const struct own_conn *c)
{
    if (c->closing)
        return RELAY_LINK_CLOSING;
    return c->on_dialed != NULL ? RELAY_LINK_PENDING : RELAY_LINK_RELAYING;
}

void own_conn_link_info(const struct own_conn *c, uint64_t id, const dmsg_pk *local_pk,
                        struct relay_link_info *out)
{
    const dmsg_session *s = c->st != NULL ? dmsg_stream_session(c->st) : NULL;

    memset(out, 0, sizeof *out);
    out->id = id;
    out->path = RELAY_PATH_SERVICE;
    out->src_pk = c->dialed ? *local_pk : c->remote_pk;
    out->src_port = c->dialed ? c->local_port : c->remote_port;
    out->dst_pk = c->dialed ? c->remote_pk : *local_pk;
    out->dst_port = c->dialed ? c->remote_port : c->local_port;
    out->has_via_peer = c->has_via_peer;
    out->via_peer = c->via_peer;
    out->phase = phase_of(c);
    out->opened_ms = c->opened_ms;
    out->last_active_ms = c->last_active_ms;
    out->bytes_forward = c->dialed ? c->bytes_out : c->bytes_in;
    out->bytes_reverse = c->dialed ? c->bytes_in : c->bytes_out;
    out->ingress = c->dialed ? NULL : s;
    out->egress = c->dialed ? s : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Dialing */

static void on_dial_timeout(uv_timer_t *t)
{
    dial_done(t->data, DMSG_ETIMEOUT, 0);
}

static void on_failed_dial_lingered(uv_timer_t *t)
{
    struct own_conn *c = t->data;

    if (c->st != NULL)
        dmsg_stream_reset(c->st);
}

/* A dial that timed out may still be in the visor's accept, and the reference's clients end
 * their whole session when a stream is reset under their accept: a FIN lets the accept finish
 * and the visor close in turn; a reset follows only if the stream lingers. Every other failure
 * came with the remote's answer or close, so the stream is reset at once. */
static void end_failed_dial(struct own_conn *c, int err)
{
    if (c->st == NULL)
        return;
    if (err != DMSG_ETIMEOUT) {
        own_conn_reset(c);
        return;
    }
    if (!c->closing) {
        c->closing = true;
        dmsg_stream_close(c->st);
    }
    uv_timer_start(&c->kick, on_failed_dial_lingered, FAILED_DIAL_LINGER_MS, 0);
}

/* A failed dial reports at once and then only waits for its stream to go (on_close is not
 * called for it); a successful one becomes an ordinary conn. */
static void dial_done(struct own_conn *c, int err, uint16_t code)
{
    own_conn_dialed_fn fn = c->on_dialed;

    uv_timer_stop(&c->kick);
    if (c->dialer != NULL) {
        dmsg_e2e_dialer_wipe(c->dialer);
        free(c->dialer);
        c->dialer = NULL;
    }
    free(c->resp);
    c->resp = NULL;
    if (fn == NULL)
        return;
    if (err != 0) {
        c->on_dialed = NULL;
        c->cb.on_close = NULL;
        c->cb.on_data = NULL;
        c->cb.on_eof = NULL;
        end_failed_dial(c, err);
        fn(c, err, code, c->ctx);
        return;
    }
    c->on_dialed = NULL;
    fn(c, 0, 0, c->ctx);
}

/* Collects the response object; on success the bytes after it stay in *data for the reader.
 * Returns non-zero when the dial ended (or waits for more). */
static int take_response(struct own_conn *c, const uint8_t **data, size_t *len)
{
    size_t want, take;
    uint8_t *obj = NULL;
    size_t obj_len = 0;
    dmsg_noise_rx rx;
    uint16_t code = 0;
    int rc;

    want = c->resp_len < 2 ? 2 : 2 + (((size_t)c->resp[0] << 8) | c->resp[1]);
    while (c->resp_len < want && *len > 0) {
        take = want - c->resp_len < *len ? want - c->resp_len : *len;
        memcpy(c->resp + c->resp_len, *data, take);
        c->resp_len += take;
        *data += take;
        *len -= take;
        if (c->resp_len == 2)
            want = 2 + (((size_t)c->resp[0] << 8) | c->resp[1]);
    }
    if (c->resp_len < want || want == 2)
        return 1;
    rc = dmsg_session_open_object(dmsg_stream_session(c->st), c->resp + 2, c->resp_len - 2,
                                  &obj, &obj_len);
    if (rc == 0)
        rc = dmsg_e2e_dial_finish(c->dialer, obj, obj_len, &c->tx, &rx, &code);
    if (rc == 0) {
        rc = dmsg_e2e_reader_init(&c->reader, &rx);
        dmsg_wipe(&rx, sizeof rx);
    }
    dial_done(c, rc, code);
    return rc != 0 || c->gone || c->st == NULL;
}

static int64_t wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int own_conn_dial(uv_loop_t *loop, const dmsg_identity *id, dmsg_session *via,
                  const dmsg_addr *dst, uint16_t src_port, uint32_t timeout_ms,
                  own_conn_dialed_fn on_dialed, const struct own_conn_callbacks *cb, void *ctx,
                  struct own_conn **out)
{
    struct own_conn *c = calloc(1, sizeof *c);
    dmsg_addr src = {.pk = id->pk, .port = src_port};
    uint8_t frame[RESPONSE_FRAME_CAP];
    size_t frame_len = 0;
    int rc = DMSG_ENOMEM;

    *out = NULL;
    if (c == NULL)
        return DMSG_ENOMEM;
    c->dialer = calloc(1, sizeof *c->dialer);
    c->resp = malloc(2 + DMSG_NOISE_OBJECT_FRAME_MAX);
    if (c->dialer != NULL && c->resp != NULL)
        rc = dmsg_e2e_dial_begin(c->dialer, &src, &id->sk, dst, wall_ns(), &id->rng);
    if (rc == 0)
        rc = dmsg_session_seal_object(via, c->dialer->obj, c->dialer->obj_len, frame,
                                      sizeof frame, &frame_len);
    if (rc == 0)
        rc = dmsg_session_open_stream(via, &stream_cb, c, &c->st);
    if (rc == 0 && dmsg_stream_write(c->st, frame, frame_len, NULL, NULL) != 0) {
        dmsg_stream_reset(c->st);
        /* The stream's on_close still comes: let it free the conn quietly. */
        c->cb.on_close = NULL;
        c->st = NULL;
        rc = DMSG_ECLOSED;
        uv_timer_init(loop, &c->kick);
        c->kick.data = c;
        return rc;
    }
    if (rc != 0) {
        if (c->dialer != NULL) {
            dmsg_e2e_dialer_wipe(c->dialer);
            free(c->dialer);
        }
        free(c->resp);
        free(c);
        return rc;
    }
    c->remote_pk = dst->pk;
    c->remote_port = dst->port;
    c->local_port = src_port;
    c->dialed = true;
    note_opened(c, via, loop);
    c->cb = *cb;
    c->ctx = ctx;
    c->on_dialed = on_dialed;
    uv_timer_init(loop, &c->kick);
    c->kick.data = c;
    uv_timer_start(&c->kick, on_dial_timeout, timeout_ms, 0);
    *out = c;
    return 0;
}
