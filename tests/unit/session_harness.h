/* Test harness for the session transport (test_session*.c): one uv loop per test, a listener on
 * 127.0.0.1 port 0, sessions in both roles, "probes" that record what happens on a stream, and a
 * raw TCP peer that plays scripted bytes. Every test ends by itself: a watchdog timer fails it if
 * the expected events never come. world_fini() checks that every handle was closed. */
#ifndef DMSG_TEST_SESSION_HARNESS_H
#define DMSG_TEST_SESSION_HARNESS_H

#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "dmsg/error.h"
#include "dmsg/session.h"
#include "vectors.h"

#define WATCHDOG_MS 60000
#define MAX_KEEP (1u << 20)

typedef struct world world;
typedef struct probe probe;
typedef struct raw raw;

enum probe_mode {
    PROBE_SINK, /* consume at once */
    PROBE_ECHO, /* write back, consume once written */
    PROBE_HOLD  /* never consume */
};

struct probe {
    world *w;
    dmsg_stream *st;
    uint32_t id;
    bool server_side;
    int mode;
    bool close_on_fin;
    bool keep_on;
    size_t rx;
    uint8_t *keep;
    size_t keep_len;
    crypto_hash_sha256_state hash;
    int fins, closes, close_err, writable;
    int writes_ok, writes_err, last_write_err;
    size_t written;
    void *test;
    void (*on_data_hook)(probe *p, const uint8_t *d, size_t n);
    void (*on_fin_hook)(probe *p);
    void (*on_close_hook)(probe *p);
    void (*on_writable_hook)(probe *p);
};

struct raw {
    world *w;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uint8_t *rx;
    size_t rx_len, rx_cap;
    bool connected, eof, closed;
    void (*on_rx)(raw *r);
    void (*on_connected)(raw *r);
    void *test;
    int step;
    const struct xk_vec *hs;       /* raw_hs_*: plays the client side of a vector handshake */
    const uint8_t *before_msg1;    /* e.g. a PROXY header, sent in the same write as msg1 */
    size_t before_msg1_len;
    const uint8_t *with_msg3;      /* bytes sent in the same write as msg3 */
    size_t with_msg3_len;
    void (*after_hs)(raw *r);      /* then rx from offset msg2 length on is the session's */
};

enum { SIDE_CLIENT = 0, SIDE_SERVER = 1 };

struct world {
    uv_loop_t loop;
    uv_tcp_t listener;
    struct sockaddr_in addr;
    uv_timer_t watchdog;
    dmsg_identity sid, cid;
    dmsg_session_config scfg, ccfg;
    dmsg_session *server, *client;
    int ready[2], closed[2], close_err[2];
    int accepted;
    bool accept_raw;
    raw *raw_server;
    bool stopping;
    probe **probes;
    size_t nprobes, probes_cap;
    void *test;
    int (*on_ready_hook)(world *w, dmsg_session *s);
    void (*on_stream_hook)(world *w, dmsg_session *s, dmsg_stream *st);
    void (*on_close_hook)(world *w, dmsg_session *s, int err);
    int server_stream_mode;
    bool server_close_on_fin;
    int probes_closed, stop_at_probes; /* probe_count_close stops the world at this count */
};

static inline void world_stop(world *w);

/* ---- randomness ------------------------------------------------------------------------------ */

/* A source that always yields the same 32 bytes: fixes a handshake's ephemeral key. */
static inline void fixed_fill(void *ctx, uint8_t *out, size_t len)
{
    const uint8_t *key = ctx;
    for (size_t i = 0; i < len; i++)
        out[i] = key[i % 32];
}

static inline void identity_random(dmsg_identity *id)
{
    id->rng = dmsg_rng_system();
    cr_assert_eq(dmsg_keypair_generate(&id->pk, &id->sk, &id->rng), 0);
}

/* ---- probes ---------------------------------------------------------------------------------- */

static inline probe *probe_new(world *w, bool server_side, int mode)
{
    probe *p = calloc(1, sizeof *p);
    cr_assert_not_null(p);
    p->w = w;
    p->server_side = server_side;
    p->mode = mode;
    crypto_hash_sha256_init(&p->hash);
    if (w->nprobes == w->probes_cap) {
        w->probes_cap = w->probes_cap ? 2 * w->probes_cap : 16;
        w->probes = realloc(w->probes, w->probes_cap * sizeof *w->probes);
        cr_assert_not_null(w->probes);
    }
    w->probes[w->nprobes++] = p;
    return p;
}

static inline void probe_keep(probe *p, const uint8_t *d, size_t n)
{
    cr_assert_leq(p->keep_len + n, MAX_KEEP);
    if (!p->keep)
        p->keep = malloc(MAX_KEEP);
    memcpy(p->keep + p->keep_len, d, n);
    p->keep_len += n;
}

static inline void probe_echo_written(dmsg_stream *st, size_t len, int err, void *arg)
{
    (void)arg;
    if (err == 0)
        dmsg_stream_consume(st, len);
}

static inline void probe_on_data(dmsg_stream *st, const uint8_t *d, size_t n, void *ctx)
{
    probe *p = ctx;
    cr_assert_eq(p->st, st);
    cr_assert_gt(n, 0);
    p->rx += n;
    crypto_hash_sha256_update(&p->hash, d, n);
    if (p->keep_on)
        probe_keep(p, d, n);
    if (p->on_data_hook)
        p->on_data_hook(p, d, n);
    if (p->mode == PROBE_SINK)
        dmsg_stream_consume(st, n);
    else if (p->mode == PROBE_ECHO)
        cr_assert_eq(dmsg_stream_write(st, d, n, probe_echo_written, p), 0);
}

static inline void probe_on_fin(dmsg_stream *st, void *ctx)
{
    probe *p = ctx;
    cr_assert_eq(p->st, st);
    p->fins++;
    cr_assert_eq(p->fins, 1, "on_fin twice");
    if (p->on_fin_hook)
        p->on_fin_hook(p);
    if (p->close_on_fin && p->st)
        cr_assert_eq(dmsg_stream_close(st), 0);
}

static inline void probe_on_writable(dmsg_stream *st, void *ctx)
{
    probe *p = ctx;
    cr_assert_eq(p->st, st);
    p->writable++;
    if (p->on_writable_hook)
        p->on_writable_hook(p);
}

static inline void probe_on_close(dmsg_stream *st, int err, void *ctx)
{
    probe *p = ctx;
    cr_assert_eq(p->st, st);
    p->closes++;
    cr_assert_eq(p->closes, 1, "stream on_close twice");
    p->close_err = err;
    if (p->on_close_hook)
        p->on_close_hook(p);
    p->st = NULL;
}

/* An on_close_hook: stops the world once stop_at_probes probes have closed. */
static inline void probe_count_close(probe *p)
{
    world *w = p->w;
    if (++w->probes_closed == w->stop_at_probes)
        world_stop(w);
}

static const dmsg_stream_callbacks probe_callbacks = {
    .on_data = probe_on_data,
    .on_fin = probe_on_fin,
    .on_writable = probe_on_writable,
    .on_close = probe_on_close,
};

static inline void probe_attach(probe *p, dmsg_stream *st)
{
    p->st = st;
    p->id = dmsg_stream_id(st);
    dmsg_stream_set_callbacks(st, &probe_callbacks, p);
}

static inline probe *probe_open(world *w, dmsg_session *s, int mode)
{
    probe *p = probe_new(w, dmsg_session_get_role(s) == DMSG_SESSION_SERVER, mode);
    dmsg_stream *st;
    int err = dmsg_session_open_stream(s, &probe_callbacks, p, &st);
    cr_assert_eq(err, 0, "open_stream: %s", dmsg_strerror(err));
    p->st = st;
    p->id = dmsg_stream_id(st);
    return p;
}

static inline void probe_written(dmsg_stream *st, size_t len, int err, void *arg)
{
    probe *p = arg;
    (void)st;
    if (err == 0) {
        p->writes_ok++;
        p->written += len;
    } else {
        p->writes_err++;
        p->last_write_err = err;
    }
}

static inline void probe_write(probe *p, const void *d, size_t n)
{
    int err = dmsg_stream_write(p->st, d, n, probe_written, p);
    cr_assert_eq(err, 0, "write: %s", dmsg_strerror(err));
}

/* ---- sessions -------------------------------------------------------------------------------- */

static inline int side_of(dmsg_session *s)
{
    return dmsg_session_get_role(s) == DMSG_SESSION_SERVER ? SIDE_SERVER : SIDE_CLIENT;
}

static inline int world_on_ready(dmsg_session *s, void *ctx)
{
    world *w = ctx;
    w->ready[side_of(s)]++;
    cr_assert_eq(dmsg_session_get_state(s), DMSG_SESSION_OPEN);
    return w->on_ready_hook ? w->on_ready_hook(w, s) : 0;
}

static inline void world_on_stream(dmsg_session *s, dmsg_stream *st, void *ctx)
{
    world *w = ctx;
    if (w->on_stream_hook) {
        w->on_stream_hook(w, s, st);
        return;
    }
    probe *p = probe_new(w, side_of(s) == SIDE_SERVER, w->server_stream_mode);
    p->close_on_fin = w->server_close_on_fin;
    probe_attach(p, st);
}

static inline void world_on_close(dmsg_session *s, int err, void *ctx)
{
    world *w = ctx;
    int side = side_of(s);
    w->closed[side]++;
    w->close_err[side] = err;
    if (w->server == s)
        w->server = NULL;
    if (w->client == s)
        w->client = NULL;
    if (w->on_close_hook)
        w->on_close_hook(w, s, err);
}

static const dmsg_session_callbacks world_callbacks = {
    .on_ready = world_on_ready,
    .on_stream = world_on_stream,
    .on_close = world_on_close,
};

/* ---- raw peer -------------------------------------------------------------------------------- */

static inline void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    raw *r = h->data;
    if (r->rx_cap - r->rx_len < 65536) {
        r->rx_cap = r->rx_cap ? 2 * r->rx_cap : 1 << 17;
        r->rx = realloc(r->rx, r->rx_cap);
        cr_assert_not_null(r->rx);
    }
    *buf = uv_buf_init((char *)r->rx + r->rx_len, (unsigned)(r->rx_cap - r->rx_len));
}

static inline void raw_close(raw *r)
{
    if (!r->closed) {
        r->closed = true;
        uv_close((uv_handle_t *)&r->tcp, NULL);
    }
}

static inline void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    raw *r = s->data;
    if (n < 0) {
        r->eof = true;
        uv_read_stop(s);
        if (r->on_rx)
            r->on_rx(r);
        return;
    }
    r->rx_len += (size_t)n;
    if (n > 0 && r->on_rx)
        r->on_rx(r);
}

static inline void raw_sent(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static inline void raw_send(raw *r, const void *bytes, size_t len)
{
    if (r->closed || len == 0)
        return;
    uv_write_t *req = malloc(sizeof *req);
    void *copy = malloc(len);
    cr_assert(req && copy);
    memcpy(copy, bytes, len);
    req->data = copy;
    uv_buf_t buf = uv_buf_init(copy, (unsigned)len);
    cr_assert_eq(uv_write(req, (uv_stream_t *)&r->tcp, &buf, 1, raw_sent), 0);
}

static inline void raw_start(raw *r)
{
    r->connected = true;
    r->tcp.data = r;
    cr_assert_eq(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read), 0);
    if (r->on_connected)
        r->on_connected(r);
}

static inline void raw_on_connect(uv_connect_t *req, int status)
{
    raw *r = req->data;
    cr_assert_eq(status, 0, "raw connect: %s", uv_strerror(status));
    raw_start(r);
}

/* Connects r to the world's listener (init with uv_tcp_init before to set socket options). */
static inline void raw_connect(world *w, raw *r, bool initialised)
{
    r->w = w;
    if (!initialised)
        cr_assert_eq(uv_tcp_init(&w->loop, &r->tcp), 0);
    r->tcp.data = r;
    r->conn.data = r;
    cr_assert_eq(uv_tcp_connect(&r->conn, &r->tcp, (const struct sockaddr *)&w->addr,
                                raw_on_connect), 0);
}

/* ---- vector handshakes --------------------------------------------------------------------- */

/* One XK session of noise_xk.json: keys, fixed ephemerals and the TCP-framed messages. */
typedef struct xk_vec {
    json_t *root;
    dmsg_sk server_sk, client_sk;
    uint8_t server_eph[32], client_eph[32];
    dmsg_pk server_pk, client_pk;
    uint8_t *msg[3];
    size_t msg_len[3];
} xk_vec;

static inline void xk_vec_load(xk_vec *v, int session)
{
    char path[128];
    v->root = vec_load("noise_xk.json");
#define XK_PATH(fmt) (snprintf(path, sizeof path, "sessions.%d." fmt, session), path)
    vec_hex_exact(v->root, XK_PATH("responder_static.secret_key"), v->server_sk.b, 32);
    vec_hex_exact(v->root, XK_PATH("responder_static.public_key"), v->server_pk.b, 33);
    vec_hex_exact(v->root, XK_PATH("initiator_static.secret_key"), v->client_sk.b, 32);
    vec_hex_exact(v->root, XK_PATH("initiator_static.public_key"), v->client_pk.b, 33);
    vec_hex_exact(v->root, XK_PATH("responder_ephemeral.secret_key"), v->server_eph, 32);
    vec_hex_exact(v->root, XK_PATH("initiator_ephemeral.secret_key"), v->client_eph, 32);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "sessions.%d.messages.%d.tcp_framed", session, i);
        v->msg[i] = vec_hex(v->root, path, &v->msg_len[i]);
    }
#undef XK_PATH
}

static inline void xk_vec_free(xk_vec *v)
{
    for (int i = 0; i < 3; i++)
        free(v->msg[i]);
    json_decref(v->root);
}

/* The identities of the vector session, ephemerals fixed: the wire bytes are the vector's. */
static inline void xk_vec_identities(const xk_vec *v, dmsg_identity *server, dmsg_identity *client)
{
    if (server) {
        server->sk = v->server_sk;
        server->pk = v->server_pk;
        server->rng = (dmsg_rng){fixed_fill, (void *)v->server_eph};
    }
    if (client) {
        client->sk = v->client_sk;
        client->pk = v->client_pk;
        client->rng = (dmsg_rng){fixed_fill, (void *)v->client_eph};
    }
}

static inline void raw_hs_connected(raw *r)
{
    size_t n = r->before_msg1_len + r->hs->msg_len[0];
    uint8_t *b = malloc(n);
    cr_assert_not_null(b);
    if (r->before_msg1_len)
        memcpy(b, r->before_msg1, r->before_msg1_len);
    memcpy(b + r->before_msg1_len, r->hs->msg[0], r->hs->msg_len[0]);
    raw_send(r, b, n);
    free(b);
}

/* Client side of the vector handshake; the server must answer with exactly message 2. */
static inline void raw_hs_rx(raw *r)
{
    const xk_vec *v = r->hs;
    if (r->step == 0 && !r->eof && r->rx_len >= v->msg_len[1]) {
        cr_assert(memcmp(r->rx, v->msg[1], v->msg_len[1]) == 0, "message 2 differs");
        size_t n = v->msg_len[2] + r->with_msg3_len;
        uint8_t *b = malloc(n);
        cr_assert_not_null(b);
        memcpy(b, v->msg[2], v->msg_len[2]);
        if (r->with_msg3_len)
            memcpy(b + v->msg_len[2], r->with_msg3, r->with_msg3_len);
        raw_send(r, b, n);
        free(b);
        r->step = 1;
    }
    if ((r->step >= 1 || r->eof) && r->after_hs)
        r->after_hs(r);
}

static inline void raw_hs_connect(world *w, raw *r, const xk_vec *v)
{
    r->hs = v;
    r->on_connected = raw_hs_connected;
    r->on_rx = raw_hs_rx;
    raw_connect(w, r, false);
}

/* ---- the world ------------------------------------------------------------------------------- */

static inline void world_on_watchdog(uv_timer_t *t)
{
    world *w = t->data;
    cr_assert_fail("watchdog: ready %d/%d closed %d/%d errs %d/%d", w->ready[0], w->ready[1],
                   w->closed[0], w->closed[1], w->close_err[0], w->close_err[1]);
}

static inline void world_on_connection(uv_stream_t *listener, int status)
{
    world *w = listener->data;
    cr_assert_eq(status, 0);
    w->accepted++;
    if (w->accept_raw) {
        raw *r = w->raw_server;
        cr_assert_not_null(r);
        r->w = w;
        cr_assert_eq(uv_tcp_init(&w->loop, &r->tcp), 0);
        cr_assert_eq(uv_accept(listener, (uv_stream_t *)&r->tcp), 0);
        raw_start(r);
        return;
    }
    uv_tcp_t *c = malloc(sizeof *c);
    cr_assert_not_null(c);
    cr_assert_eq(uv_tcp_init(&w->loop, c), 0);
    cr_assert_eq(uv_accept(listener, (uv_stream_t *)c), 0);
    dmsg_session *s = NULL;
    int err = dmsg_session_accept(&w->loop, c, &w->sid, &w->scfg, &world_callbacks, w, &s);
    cr_assert_eq(err, 0, "accept: %s", dmsg_strerror(err));
    w->server = s;
}

static inline void world_init(world *w)
{
    memset(w, 0, sizeof *w);
    cr_assert_eq(dmsg_cipher_init(), 0);
    cr_assert_eq(uv_loop_init(&w->loop), 0);
    identity_random(&w->sid);
    identity_random(&w->cid);
    dmsg_session_config_default(&w->scfg);
    dmsg_session_config_default(&w->ccfg);
    w->ccfg.accept_proxy_header = false;
    w->server_stream_mode = PROBE_SINK;
    cr_assert_eq(uv_tcp_init(&w->loop, &w->listener), 0);
    w->listener.data = w;
    cr_assert_eq(uv_ip4_addr("127.0.0.1", 0, &w->addr), 0);
    cr_assert_eq(uv_tcp_bind(&w->listener, (const struct sockaddr *)&w->addr, 0), 0);
    int len = sizeof w->addr;
    cr_assert_eq(uv_tcp_getsockname(&w->listener, (struct sockaddr *)&w->addr, &len), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&w->listener, 128, world_on_connection), 0);
    cr_assert_eq(uv_timer_init(&w->loop, &w->watchdog), 0);
    w->watchdog.data = w;
    cr_assert_eq(uv_timer_start(&w->watchdog, world_on_watchdog, WATCHDOG_MS, 0), 0);
}

static inline dmsg_session *world_connect(world *w)
{
    dmsg_session *s = NULL;
    int err = dmsg_session_connect(&w->loop, (const struct sockaddr *)&w->addr, &w->cid,
                                   &w->sid.pk, &w->ccfg, &world_callbacks, w, &s);
    cr_assert_eq(err, 0, "connect: %s", dmsg_strerror(err));
    w->client = s;
    return s;
}

/* Ends the test's activity: the loop runs until every handle is closed. */
static inline void world_stop(world *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    uv_close((uv_handle_t *)&w->listener, NULL);
    uv_close((uv_handle_t *)&w->watchdog, NULL);
    if (w->server)
        dmsg_session_close(w->server, 0);
    if (w->client)
        dmsg_session_close(w->client, 0);
    if (w->raw_server)
        raw_close(w->raw_server);
}

static inline void world_run(world *w)
{
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static inline void world_fini(world *w)
{
    world_stop(w);
    world_run(w);
    cr_assert_eq(uv_loop_close(&w->loop), 0, "handles left open");
    for (size_t i = 0; i < w->nprobes; i++) {
        free(w->probes[i]->keep);
        free(w->probes[i]);
    }
    free(w->probes);
}

/* A one-shot timer that calls fn(w) after ms. */
typedef struct later {
    uv_timer_t t;
    world *w;
    void (*fn)(world *w);
} later;

static inline void later_closed(uv_handle_t *h)
{
    free(h->data);
}

static inline void later_fire(uv_timer_t *t)
{
    later *l = t->data;
    t->data = l;
    l->fn(l->w);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static inline void world_later(world *w, uint64_t ms, void (*fn)(world *w))
{
    later *l = calloc(1, sizeof *l);
    cr_assert_not_null(l);
    l->w = w;
    l->fn = fn;
    cr_assert_eq(uv_timer_init(&w->loop, &l->t), 0);
    l->t.data = l;
    cr_assert_eq(uv_timer_start(&l->t, later_fire, ms, 0), 0);
}

#endif
