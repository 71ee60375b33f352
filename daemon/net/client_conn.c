/* One end-to-end stream ("conn"): the handshake objects on a yamux stream, then KK-encrypted
 * data with backpressure (dmsg-wire.md §5.1, §6.1, §7).
 *
 * Backpressure: the stream's window credit goes back to the peer only for bytes the
 * application reported as taken. Every received stream byte is counted in wire_out and every
 * plaintext byte handed out in pt_out; taking n plaintext bytes releases n stream bytes, and
 * once the application has taken everything the rest (frame overhead, a frame's unfinished
 * tail) is released too. So at most one window is ever held on behalf of a slow reader. */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "dmsg/error.h"

static void conn_finish(dmsg_conn *conn, int err);
static const dmsg_stream_callbacks conn_stream_callbacks;

/* ---------------------------------------------------------------------------------------------
 * Lifetime */

dmsg_conn *conn_new(dmsg_client *c, const dmsg_pk *server_pk)
{
    if (c->n_conns >= c->cfg.max_conns)
        return NULL;
    dmsg_conn *conn = calloc(1, sizeof *conn);
    if (!conn)
        return NULL;
    conn->client = c;
    conn->server_pk = *server_pk;
    conn->next = c->conns;
    if (c->conns)
        c->conns->prev = conn;
    c->conns = conn;
    c->n_conns++;
    return conn;
}

static void conn_free(dmsg_conn *conn)
{
    dmsg_client *c = conn->client;
    client_undefer_conn(c, conn);
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        c->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    c->n_conns--;
    if (conn->owns_port)
        dmsg_porter_release(&c->porter, conn->local.port);
    if (conn->dialer) {
        dmsg_e2e_dialer_wipe(conn->dialer);
        free(conn->dialer);
    }
    if (conn->reader) {
        dmsg_e2e_reader_wipe(conn->reader);
        free(conn->reader);
    }
    dmsg_noise_tx_wipe(&conn->tx);
    free(conn->obj.buf);
    free(conn->raw);
    free(conn);
    client_maybe_finish_close(c);
}

/* Drops the conn's stream at once; on_close (ours, then the application's) follows from the
 * loop. err, when set, is what the application will be told. */
void conn_abort(dmsg_conn *conn, int err)
{
    if (err && !conn->err)
        conn->err = err;
    if (conn->st)
        dmsg_stream_reset(conn->st);
}

/* ---------------------------------------------------------------------------------------------
 * Session objects: u16 length, then the sealed object */

/* Takes bytes into the object; returns how many, and sets *done once it is complete. */
static int obj_feed(obj_reader *o, const uint8_t *data, size_t len, size_t *used, bool *done)
{
    size_t pos = 0;
    *done = false;
    while (o->hdr_have < 2 && pos < len)
        o->hdr[o->hdr_have++] = data[pos++];
    if (o->hdr_have < 2) {
        *used = pos;
        return 0;
    }
    if (!o->buf) {
        o->len = (size_t)o->hdr[0] << 8 | o->hdr[1];
        o->buf = malloc(o->len ? o->len : 1);
        if (!o->buf)
            return DMSG_ENOMEM;
    }
    size_t take = o->len - o->have;
    if (take > len - pos)
        take = len - pos;
    memcpy(o->buf + o->have, data + pos, take);
    o->have += take;
    pos += take;
    *used = pos;
    *done = o->have == o->len;
    return 0;
}

static void obj_reset(obj_reader *o)
{
    free(o->buf);
    memset(o, 0, sizeof *o);
}

/* Seals obj with the session's keys and queues it on the stream. */
static int write_object(dmsg_conn *conn, const uint8_t *obj, size_t len)
{
    uint8_t sealed[DMSG_E2E_OBJECT_MAX + DMSG_NOISE_FRAMED_OVERHEAD];
    size_t sealed_len = 0;
    int err = dmsg_session_seal_object(dmsg_stream_session(conn->st), obj, len, sealed,
                                       sizeof sealed, &sealed_len);
    if (err == 0)
        err = dmsg_stream_write(conn->st, sealed, sealed_len, NULL, NULL);
    return err;
}

/* ---------------------------------------------------------------------------------------------
 * Data path */

static bool conn_gone(const dmsg_conn *conn)
{
    return !conn->st || conn->stream_gone;
}

static void release_credit(dmsg_conn *conn)
{
    if (conn->pt_out == 0 && conn->wire_out > 0) {
        if (conn->st)
            dmsg_stream_consume(conn->st, conn->wire_out);
        conn->wire_out = 0;
    }
}

/* Decrypts and hands out data; the application may do anything in on_data. */
static void deliver(dmsg_conn *conn, const uint8_t *data, size_t len)
{
    dmsg_client *c = conn->client;
    uint8_t *out = c->scratch, *own = NULL;
    if (c->scratch_busy) { /* a nested delivery (not expected, but cheap to allow) */
        own = out = malloc(CLIENT_SCRATCH_LEN);
        if (!out) {
            conn_abort(conn, DMSG_ENOMEM);
            return;
        }
    } else {
        c->scratch_busy = true;
    }
    conn->wire_out += len;
    conn->busy++;
    while (len > 0 && !conn_gone(conn) && !conn->err) {
        size_t used = 0, got = 0;
        int err = dmsg_e2e_reader_feed(conn->reader, data, len, &used, out, CLIENT_SCRATCH_LEN,
                                       &got);
        if (err < 0) {
            conn_abort(conn, err);
            break;
        }
        data += used;
        len -= used;
        if (got > 0) {
            conn->pt_out += got;
            conn->cb.on_data(conn, out, got, conn->ctx);
        }
    }
    conn->busy--;
    if (own)
        free(own);
    else
        c->scratch_busy = false;
    release_credit(conn);
}

static void deliver_eof(dmsg_conn *conn)
{
    if (conn->eof_delivered || conn_gone(conn) || conn->err)
        return;
    conn->eof_delivered = true;
    if (conn->cb.on_eof) {
        conn->busy++;
        conn->cb.on_eof(conn, conn->ctx);
        conn->busy--;
    }
}

/* Keeps bytes for later (queued in a listener, or callbacks not set yet). */
static void hold_raw(dmsg_conn *conn, const uint8_t *data, size_t len)
{
    if (conn->raw_len + len > CLIENT_RAW_MAX) {
        conn_abort(conn, DMSG_EWINDOW); /* more than a window: the peer ignores flow control */
        return;
    }
    if (conn->raw_len + len > conn->raw_cap) {
        size_t cap = conn->raw_cap ? conn->raw_cap : 4096;
        while (cap < conn->raw_len + len)
            cap *= 2;
        uint8_t *p = realloc(conn->raw, cap);
        if (!p) {
            conn_abort(conn, DMSG_ENOMEM);
            return;
        }
        conn->raw = p;
        conn->raw_cap = cap;
    }
    memcpy(conn->raw + conn->raw_len, data, len);
    conn->raw_len += len;
}

static void conn_input(dmsg_conn *conn, const uint8_t *data, size_t len)
{
    if (len == 0)
        return;
    if (!conn->ready || conn->raw_len > 0 || conn->deferred)
        hold_raw(conn, data, len);
    else
        deliver(conn, data, len);
}

/* From the client's deferred list: hand out what was held while nobody could take it, or
 * finish a conn whose stream closed while we were calling the application. */
void conn_run_deferred(dmsg_conn *conn)
{
    if (conn->stream_gone) {
        conn_finish(conn, conn->stream_err);
        return;
    }
    if (!conn->ready || !conn->st)
        return;
    uint8_t *raw = conn->raw;
    size_t raw_len = conn->raw_len;
    conn->raw = NULL;
    conn->raw_len = conn->raw_cap = 0;
    if (raw_len)
        deliver(conn, raw, raw_len);
    free(raw);
    if (conn->peer_fin)
        deliver_eof(conn);
}

/* The handshake is over: from now on bytes are data. */
void conn_open_established(dmsg_conn *conn)
{
    conn->deadline = 0;
    obj_reset(&conn->obj);
}

/* ---------------------------------------------------------------------------------------------
 * Dialer side */

static void dial_failed(dmsg_conn *conn, int err, uint16_t code)
{
    dmsg_dial *d = conn->dial;
    conn->dial = NULL;
    conn_abort(conn, err);
    if (d)
        dial_try_failed(d, conn, err, code);
}

static void on_response(dmsg_conn *conn)
{
    dmsg_session *s = dmsg_stream_session(conn->st);
    uint8_t *obj = NULL;
    size_t obj_len = 0;
    uint16_t code = 0;
    int err = dmsg_session_open_object(s, conn->obj.buf, conn->obj.len, &obj, &obj_len);
    if (err < 0) {
        dial_failed(conn, err, 0);
        return;
    }
    dmsg_noise_rx rx;
    err = dmsg_e2e_dial_finish(conn->dialer, obj, obj_len, &conn->tx, &rx, &code);
    free(conn->dialer);
    conn->dialer = NULL;
    if (err == 0) {
        conn->reader = malloc(sizeof *conn->reader);
        err = conn->reader ? dmsg_e2e_reader_init(conn->reader, &rx) : DMSG_ENOMEM;
    }
    dmsg_noise_rx_wipe(&rx);
    if (err < 0) {
        dial_failed(conn, err, code);
        return;
    }
    conn->phase = CONN_OPEN;
    conn_open_established(conn);
    dmsg_dial *d = conn->dial;
    conn->owns_port = true; /* the dial's source port now belongs to the conn */
    d->src_port = 0;
    dial_try_succeeded(d, conn);
}

/* ---------------------------------------------------------------------------------------------
 * Listener side */

/* The two-byte ping of newer reference peers: an "object" of length 0. Echo it and close. */
static void answer_ping(dmsg_conn *conn)
{
    static const uint8_t marker[2] = {0, 0};
    conn->phase = CONN_REFUSING;
    if (dmsg_stream_write(conn->st, marker, sizeof marker, NULL, NULL) < 0 ||
        dmsg_stream_close(conn->st) < 0)
        conn_abort(conn, 0);
    conn->fin_sent = true;
}

static void refuse(dmsg_conn *conn, const dmsg_stream_request *req, uint16_t code)
{
    dmsg_client *c = conn->client;
    uint8_t resp[DMSG_E2E_OBJECT_MAX];
    size_t resp_len = 0;
    conn->phase = CONN_REFUSING;
    if (dmsg_e2e_refuse(req, &c->id.sk, code, resp, sizeof resp, &resp_len) < 0 ||
        write_object(conn, resp, resp_len) < 0 || dmsg_stream_close(conn->st) < 0) {
        conn_abort(conn, 0);
        return;
    }
    conn->fin_sent = true;
}

static void on_request(dmsg_conn *conn)
{
    dmsg_client *c = conn->client;
    dmsg_session *s = dmsg_stream_session(conn->st);
    if (conn->obj.len == 0) {
        answer_ping(conn);
        return;
    }
    uint8_t *obj = NULL;
    size_t obj_len = 0;
    uint16_t code = 0;
    dmsg_stream_request req;
    if (dmsg_session_open_object(s, conn->obj.buf, conn->obj.len, &obj, &obj_len) < 0 ||
        dmsg_e2e_request_check(&req, obj, obj_len, &c->id.pk, &code) < 0) {
        /* Nobody could verify an answer to a request that is not ours or not valid. */
        conn_abort(conn, 0);
        return;
    }
    dmsg_listener *l = listener_find(c, req.dst.port);
    if (!l) {
        refuse(conn, &req, DMSG_WIRE_REQ_NO_LISTENER);
        return;
    }
    uint8_t resp[DMSG_E2E_OBJECT_MAX];
    size_t resp_len = 0;
    dmsg_noise_rx rx;
    int err = dmsg_e2e_accept(&req, &c->id.sk, &c->id.rng, resp, sizeof resp, &resp_len,
                              &conn->tx, &rx);
    if (err == 0) {
        conn->reader = malloc(sizeof *conn->reader);
        err = conn->reader ? dmsg_e2e_reader_init(conn->reader, &rx) : DMSG_ENOMEM;
    }
    dmsg_noise_rx_wipe(&rx);
    if (err == 0)
        err = write_object(conn, resp, resp_len);
    if (err < 0) {
        conn_abort(conn, 0);
        return;
    }
    conn->local = req.dst;
    conn->remote = req.src;
    conn_open_established(conn);
    if (l->n_queued >= c->cfg.accept_backlog) {
        /* The reference accepts, finds its accept queue full, and closes. */
        conn->phase = CONN_REFUSING;
        conn->fin_sent = true;
        if (dmsg_stream_close(conn->st) < 0)
            conn_abort(conn, 0);
        return;
    }
    conn->phase = CONN_QUEUED;
    listener_enqueue(l, conn);
}

/* ---------------------------------------------------------------------------------------------
 * Stream callbacks */

static void on_stream_data(dmsg_stream *st, const uint8_t *data, size_t len, void *ctx)
{
    dmsg_conn *conn = ctx;
    if (conn->phase == CONN_DIALING || conn->phase == CONN_REQUESTED) {
        size_t used = 0;
        bool done = false;
        int err = obj_feed(&conn->obj, data, len, &used, &done);
        dmsg_stream_consume(st, used);
        if (err < 0) {
            conn_abort(conn, err);
            return;
        }
        if (!done)
            return;
        data += used;
        len -= used;
        if (conn->phase == CONN_DIALING)
            on_response(conn);
        else
            on_request(conn);
        if (conn->err || conn_gone(conn))
            return;
    }
    switch (conn->phase) {
    case CONN_QUEUED:
    case CONN_OPEN:
        conn_input(conn, data, len);
        break;
    default: /* refusing: whatever comes is dropped */
        dmsg_stream_consume(st, len);
        break;
    }
}

static void on_stream_fin(dmsg_stream *st, void *ctx)
{
    dmsg_conn *conn = ctx;
    (void)st;
    conn->peer_fin = true;
    switch (conn->phase) {
    case CONN_DIALING:
        dial_failed(conn, DMSG_ECLOSED, 0); /* the server gave up on the request */
        break;
    case CONN_REQUESTED:
        conn_abort(conn, 0);
        break;
    case CONN_REFUSING:
        break; /* both FINs: the stream closes by itself */
    case CONN_QUEUED:
    case CONN_OPEN:
        if (conn->ready && conn->raw_len == 0 && !conn->deferred)
            deliver_eof(conn);
        break;
    }
}

static void on_stream_writable(dmsg_stream *st, void *ctx)
{
    dmsg_conn *conn = ctx;
    (void)st;
    if (conn->phase == CONN_OPEN && conn->ready && conn->cb.on_writable && !conn->err) {
        conn->busy++;
        conn->cb.on_writable(conn, conn->ctx);
        conn->busy--;
    }
}

static void conn_finish(dmsg_conn *conn, int err)
{
    int reported = conn->err ? conn->err : err;
    switch (conn->phase) {
    case CONN_DIALING:
        if (conn->dial) {
            dmsg_dial *d = conn->dial;
            conn->dial = NULL;
            dial_try_failed(d, conn, err == 0 ? DMSG_ECLOSED : err, 0);
        }
        break;
    case CONN_QUEUED:
        listener_unlink_conn(conn);
        break;
    case CONN_OPEN:
        if (conn->dial) { /* the dial's callback has not run yet: it will report a failure */
            dial_conn_lost(conn->dial, conn, reported ? reported : DMSG_ECLOSED);
            conn->dial = NULL;
        } else if (conn->ready && conn->cb.on_close) {
            conn->cb.on_close(conn, reported, conn->ctx);
        }
        break;
    default:
        break;
    }
    conn_free(conn);
}

static void on_stream_close(dmsg_stream *st, int err, void *ctx)
{
    dmsg_conn *conn = ctx;
    (void)st;
    conn->st = NULL;
    if (conn->busy) { /* not expected (streams close from the loop), but never free under us */
        conn->stream_gone = true;
        conn->stream_err = err;
        client_defer_conn(conn->client, conn);
        return;
    }
    conn_finish(conn, err);
}

/* For a stream we refuse before any conn exists: nothing to do but let it go. */
static void on_dropped_data(dmsg_stream *st, const uint8_t *data, size_t len, void *ctx)
{
    (void)data;
    (void)ctx;
    dmsg_stream_consume(st, len);
}

static void on_dropped_close(dmsg_stream *st, int err, void *ctx)
{
    (void)st;
    (void)err;
    (void)ctx;
}

static const dmsg_stream_callbacks dropped_stream_callbacks = {
    .on_data = on_dropped_data,
    .on_close = on_dropped_close,
};

static const dmsg_stream_callbacks conn_stream_callbacks = {
    .on_data = on_stream_data,
    .on_fin = on_stream_fin,
    .on_writable = on_stream_writable,
    .on_close = on_stream_close,
};

int conn_start_dial(dmsg_conn *conn, dmsg_session *s, dmsg_dial *d, uint32_t timeout_ms)
{
    dmsg_client *c = conn->client;
    conn->phase = CONN_DIALING;
    conn->dial = d;
    conn->local.pk = c->id.pk;
    conn->local.port = d->src_port;
    conn->remote = d->dst;
    conn->dialer = malloc(sizeof *conn->dialer);
    if (!conn->dialer)
        return DMSG_ENOMEM;
    int err = dmsg_e2e_dial_begin(conn->dialer, &conn->local, &c->id.sk, &d->dst,
                                  client_wall_ns(), &c->id.rng);
    if (err == 0)
        err = dmsg_session_open_stream(s, &conn_stream_callbacks, conn, &conn->st);
    if (err == 0)
        err = write_object(conn, conn->dialer->obj, conn->dialer->obj_len);
    if (err < 0)
        return err; /* the caller frees the conn (and so resets a stream that was opened) */
    conn->deadline = client_now(c) + timeout_ms;
    client_arm(c, conn->deadline);
    return 0;
}

/* A server opened a stream to us: a request is coming. */
void conn_accept_stream(dmsg_client *c, dmsg_session *s, dmsg_stream *st, const dmsg_pk *server)
{
    (void)s;
    dmsg_conn *conn = c->closing ? NULL : conn_new(c, server);
    if (!conn) {
        dmsg_stream_set_callbacks(st, &dropped_stream_callbacks, NULL);
        dmsg_stream_reset(st);
        return;
    }
    conn->st = st;
    conn->phase = CONN_REQUESTED;
    dmsg_stream_set_callbacks(st, &conn_stream_callbacks, conn);
    conn->deadline = client_now(c) + c->cfg.dial_timeout_ms;
    client_arm(c, conn->deadline);
}

/* Frees a conn whose dial could not even start (no callback has seen it). */
void conn_discard(dmsg_conn *conn)
{
    conn->dial = NULL;
    if (conn->st) {
        conn_abort(conn, 0); /* freed when the stream's on_close comes */
        conn->phase = CONN_REFUSING;
        return;
    }
    conn_free(conn);
}

void conns_tick(dmsg_client *c, uint64_t now, uint64_t *next_due)
{
    for (dmsg_conn *conn = c->conns; conn; conn = conn->next) {
        if (conn->deadline == 0)
            continue;
        if (conn->deadline > now) {
            if (conn->deadline < *next_due)
                *next_due = conn->deadline;
            continue;
        }
        conn->deadline = 0;
        if (conn->phase == CONN_DIALING)
            dial_failed(conn, DMSG_ETIMEOUT, 0);
        else
            conn_abort(conn, DMSG_ETIMEOUT);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Public conn API */

typedef struct write_req {
    dmsg_conn *conn;
    dmsg_conn_write_cb cb;
    void *arg;
    size_t len;
} write_req;

static void on_written(dmsg_stream *st, size_t len, int err, void *arg)
{
    write_req *w = arg;
    (void)st;
    (void)len;
    w->cb(w->conn, w->len, err, w->arg);
    free(w);
}

int dmsg_conn_write(dmsg_conn *c, const uint8_t *data, size_t len, dmsg_conn_write_cb cb,
                    void *arg)
{
    if (conn_gone(c) || c->fin_sent || c->err || c->phase != CONN_OPEN)
        return DMSG_ECLOSED;
    if (len == 0)
        return 0;
    size_t sealed_len = dmsg_noise_stream_sealed_len(len);
    if (sealed_len == 0)
        return DMSG_ETOOBIG;
    uint8_t *sealed = malloc(sealed_len);
    write_req *w = cb ? malloc(sizeof *w) : NULL;
    if (!sealed || (cb && !w)) {
        free(sealed);
        free(w);
        return DMSG_ENOMEM;
    }
    size_t out_len = 0;
    int err = dmsg_noise_seal_stream(&c->tx, data, len, sealed, sealed_len, &out_len);
    if (err == 0) {
        if (w)
            *w = (write_req){.conn = c, .cb = cb, .arg = arg, .len = len};
        err = dmsg_stream_write(c->st, sealed, out_len, w ? on_written : NULL, w);
    }
    free(sealed);
    if (err < 0)
        free(w);
    return err;
}

size_t dmsg_conn_write_queued(const dmsg_conn *c)
{
    return c->st ? dmsg_stream_write_queued(c->st) : 0;
}

void dmsg_conn_consume(dmsg_conn *c, size_t n)
{
    if (n > c->pt_out)
        n = c->pt_out;
    c->pt_out -= n;
    size_t w = c->pt_out == 0 ? c->wire_out : n;
    if (w > c->wire_out)
        w = c->wire_out;
    c->wire_out -= w;
    if (w && c->st)
        dmsg_stream_consume(c->st, w);
}

int dmsg_conn_close(dmsg_conn *c)
{
    if (c->fin_sent)
        return 0;
    if (conn_gone(c))
        return DMSG_ECLOSED;
    c->fin_sent = true;
    return dmsg_stream_close(c->st);
}

int dmsg_conn_reset(dmsg_conn *c)
{
    if (conn_gone(c))
        return DMSG_ECLOSED;
    return dmsg_stream_reset(c->st);
}

void dmsg_conn_set_callbacks(dmsg_conn *c, const dmsg_conn_callbacks *cb, void *ctx)
{
    c->cb = *cb;
    c->ctx = ctx;
    if (c->phase != CONN_OPEN || c->ready || !cb->on_data)
        return;
    c->ready = true;
    if (c->raw_len > 0 || c->peer_fin)
        client_defer_conn(c->client, c);
}

void *dmsg_conn_ctx(const dmsg_conn *c)
{
    return c->ctx;
}

const dmsg_addr *dmsg_conn_local_addr(const dmsg_conn *c)
{
    return &c->local;
}

const dmsg_addr *dmsg_conn_remote_addr(const dmsg_conn *c)
{
    return &c->remote;
}

const dmsg_pk *dmsg_conn_server_pk(const dmsg_conn *c)
{
    return &c->server_pk;
}
