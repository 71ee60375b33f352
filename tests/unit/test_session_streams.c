/* The session transport, part 2: streams over real TCP between a client and a server session
 * (or a raw peer playing yamux): data both ways, 64 MiB with a checksum, window backpressure,
 * FIN/RST/close propagation with every callback exactly once, 1000 streams, session objects,
 * keepalive, timeouts, limits, yamux violations, and the memory of an idle session. */
#include "session_harness.h"

#include <malloc.h>
#include <unistd.h>

#define WINDOW 262144u

static void put_frame(uint8_t *out, uint8_t type, uint16_t flags, uint32_t id, uint32_t len)
{
    dmsg_yamux_hdr h = {0, type, flags, id, len};
    dmsg_yamux_hdr_encode(&h, out);
}

/* ---- data both ways -------------------------------------------------------------------------- */

static const char client_msg[] = "ping from the client";
static const char server_msg[] = "ping from the server";

static int echo_on_ready(world *w, dmsg_session *s)
{
    probe *p = probe_open(w, s, PROBE_SINK);
    p->keep_on = true;
    p->on_close_hook = probe_count_close;
    const char *msg = side_of(s) == SIDE_CLIENT ? client_msg : server_msg;
    probe_write(p, msg, strlen(msg));
    cr_assert_eq(dmsg_stream_close(p->st), 0);
    cr_assert_eq(dmsg_stream_close(p->st), DMSG_ECLOSED, "FIN twice");
    cr_assert_eq(dmsg_stream_write(p->st, (const uint8_t *)"x", 1, NULL, NULL), DMSG_ECLOSED);
    return 0;
}

static void echo_on_stream(world *w, dmsg_session *s, dmsg_stream *st)
{
    probe *p = probe_new(w, side_of(s) == SIDE_SERVER, PROBE_ECHO);
    p->close_on_fin = true;
    p->on_close_hook = probe_count_close;
    probe_attach(p, st);
}

Test(streams, both_directions_echo)
{
    world w;
    world_init(&w);
    w.stop_at_probes = 4;
    w.on_ready_hook = echo_on_ready;
    w.on_stream_hook = echo_on_stream;
    world_connect(&w);
    world_run(&w);
    cr_assert_eq(w.probes_closed, 4);
    cr_assert_eq(w.nprobes, 4);
    for (size_t i = 0; i < w.nprobes; i++) {
        probe *p = w.probes[i];
        cr_assert_eq(p->closes, 1);
        cr_assert_eq(p->close_err, 0, "stream %u: %s", p->id, dmsg_strerror(p->close_err));
        cr_assert_eq(p->fins, 1);
        if (p->mode == PROBE_SINK) { /* the opener got its own message back */
            const char *msg = p->server_side ? server_msg : client_msg;
            cr_assert_eq(p->keep_len, strlen(msg));
            cr_assert(memcmp(p->keep, msg, p->keep_len) == 0);
            cr_assert_eq(p->writes_ok, 1);
            cr_assert_eq(p->id % 2, p->server_side ? 0u : 1u, "yamux id parity");
        }
    }
    world_fini(&w);
}

/* ---- 64 MiB through one stream --------------------------------------------------------------- */

#define BULK_TOTAL (64u << 20)
#define BULK_CHUNK (64u << 10)

typedef struct bulk {
    size_t sent;
    uint64_t chunk_no;
    crypto_hash_sha256_state hash;
    uint8_t buf[BULK_CHUNK];
    bool fin_sent;
    uint64_t t0, t1;
    probe *sender, *receiver;
} bulk;

/* The relay's rule: at most one window queued per stream. */
static void bulk_pump(probe *p)
{
    bulk *b = p->test;
    while (b->sent < BULK_TOTAL && dmsg_stream_write_queued(p->st) < WINDOW) {
        size_t n = BULK_TOTAL - b->sent < BULK_CHUNK ? BULK_TOTAL - b->sent : BULK_CHUNK;
        uint8_t seed[randombytes_SEEDBYTES] = {0};
        memcpy(seed, &b->chunk_no, sizeof b->chunk_no);
        randombytes_buf_deterministic(b->buf, n, seed);
        b->chunk_no++;
        crypto_hash_sha256_update(&b->hash, b->buf, n);
        probe_write(p, b->buf, n);
        b->sent += n;
        cr_assert_leq(dmsg_stream_write_queued(p->st), WINDOW + BULK_CHUNK);
    }
    if (b->sent == BULK_TOTAL && !b->fin_sent) {
        b->fin_sent = true;
        cr_assert_eq(dmsg_stream_close(p->st), 0);
    }
}

static int bulk_on_ready(world *w, dmsg_session *s)
{
    if (side_of(s) != SIDE_CLIENT)
        return 0;
    bulk *b = w->test;
    probe *p = probe_open(w, s, PROBE_SINK);
    p->test = b;
    p->on_writable_hook = bulk_pump;
    p->on_close_hook = probe_count_close;
    b->sender = p;
    b->t0 = uv_hrtime();
    bulk_pump(p);
    return 0;
}

static void bulk_receiver_fin(probe *p)
{
    bulk *b = p->w->test;
    b->t1 = uv_hrtime();
    uint8_t want[32], got[32];
    crypto_hash_sha256_final(&b->hash, want);
    crypto_hash_sha256_final(&p->hash, got);
    cr_assert_eq(p->rx, BULK_TOTAL);
    cr_assert(memcmp(want, got, 32) == 0, "checksum differs");
}

static void bulk_on_stream(world *w, dmsg_session *s, dmsg_stream *st)
{
    (void)s;
    bulk *b = w->test;
    probe *p = probe_new(w, true, PROBE_SINK);
    p->close_on_fin = true;
    p->on_fin_hook = bulk_receiver_fin;
    p->on_close_hook = probe_count_close;
    b->receiver = p;
    probe_attach(p, st);
}

Test(streams, bulk_64mib_with_checksum, .timeout = 120)
{
    world w;
    world_init(&w);
    bulk *b = calloc(1, sizeof *b);
    crypto_hash_sha256_init(&b->hash);
    w.test = b;
    w.stop_at_probes = 2;
    w.on_ready_hook = bulk_on_ready;
    w.on_stream_hook = bulk_on_stream;
    world_connect(&w);
    world_run(&w);
    cr_assert(b->fin_sent);
    cr_assert_eq(b->receiver->fins, 1);
    cr_assert_eq(b->sender->closes, 1);
    cr_assert_eq(b->sender->close_err, 0);
    cr_assert_eq(b->sender->written, BULK_TOTAL);
    cr_assert_eq(b->sender->writes_err, 0);
    double secs = (double)(b->t1 - b->t0) / 1e9;
    fprintf(stderr, "session throughput: 64 MiB through one stream in %.2f s = %.0f MiB/s\n",
            secs, 64.0 / secs);
    world_fini(&w);
    free(b);
}

/* ---- window backpressure --------------------------------------------------------------------- */

#define PRESSURE_TOTAL (1u << 20)

typedef struct pressure {
    probe *sender, *receiver;
    int phase;
    size_t settled_rx;
    bool fin_sent;
} pressure;

static void pressure_release(world *w);

static void pressure_check_stalled(world *w)
{
    pressure *t = w->test;
    /* a receiver that never consumes stopped the sender after exactly one window */
    cr_assert_eq(t->receiver->rx, WINDOW);
    cr_assert_eq(t->receiver->rx, t->settled_rx, "data kept arriving");
    cr_assert_eq(dmsg_stream_write_queued(t->sender->st), PRESSURE_TOTAL - WINDOW);
    dmsg_session_stats cs, ss;
    dmsg_session_get_stats(w->client, &cs);
    dmsg_session_get_stats(w->server, &ss);
    cr_assert_eq(cs.write_queued, PRESSURE_TOTAL - WINDOW); /* nothing framed beyond the window */
    cr_assert_eq(ss.write_queued, 0);
    cr_assert_eq(t->sender->writes_ok, (int)(WINDOW / (128u << 10)), "the window's writes");
    pressure_release(w);
}

static void pressure_settle(world *w)
{
    pressure *t = w->test;
    t->settled_rx = t->receiver->rx;
    world_later(w, 200, pressure_check_stalled);
}

static void pressure_data(probe *p, const uint8_t *d, size_t n)
{
    (void)d;
    (void)n;
    pressure *t = p->w->test;
    if (t->phase == 0 && p->rx >= WINDOW) {
        t->phase = 1;
        world_later(p->w, 300, pressure_settle);
    }
}

static void pressure_release(world *w)
{
    pressure *t = w->test;
    t->phase = 2;
    t->receiver->mode = PROBE_SINK;
    dmsg_stream_consume(t->receiver->st, t->receiver->rx);
}

static void pressure_written(probe *p)
{
    pressure *t = p->w->test;
    if (p->written == PRESSURE_TOTAL && !t->fin_sent) {
        t->fin_sent = true;
        cr_assert_eq(dmsg_stream_close(p->st), 0);
    }
}

static int pressure_on_ready(world *w, dmsg_session *s)
{
    if (side_of(s) != SIDE_CLIENT)
        return 0;
    pressure *t = w->test;
    probe *p = probe_open(w, s, PROBE_SINK);
    p->on_writable_hook = pressure_written;
    p->on_close_hook = probe_count_close;
    t->sender = p;
    uint8_t *buf = calloc(1, PRESSURE_TOTAL);
    for (size_t off = 0; off < PRESSURE_TOTAL; off += 128u << 10) /* ignores the window rule */
        probe_write(p, buf + off, 128u << 10);
    free(buf);
    return 0;
}

static void pressure_on_stream(world *w, dmsg_session *s, dmsg_stream *st)
{
    (void)s;
    pressure *t = w->test;
    probe *p = probe_new(w, true, PROBE_HOLD);
    p->on_data_hook = pressure_data;
    p->close_on_fin = true;
    p->on_close_hook = probe_count_close;
    t->receiver = p;
    probe_attach(p, st);
}

Test(streams, window_backpressure)
{
    world w;
    world_init(&w);
    pressure t = {0};
    w.test = &t;
    w.stop_at_probes = 2;
    w.on_ready_hook = pressure_on_ready;
    w.on_stream_hook = pressure_on_stream;
    world_connect(&w);
    world_run(&w);
    cr_assert_eq(t.phase, 2);
    cr_assert_eq(t.receiver->rx, PRESSURE_TOTAL);
    cr_assert_eq(t.sender->written, PRESSURE_TOTAL);
    cr_assert_eq(t.sender->close_err, 0);
    cr_assert_eq(t.receiver->close_err, 0);
    world_fini(&w);
}

/* ---- FIN, RST and close propagation ---------------------------------------------------------- */

static void fin_reply_later(world *w)
{
    probe *p = w->probes[1];
    cr_assert(p->server_side && p->st);
    probe_write(p, "xyz", 3);
    cr_assert_eq(dmsg_stream_close(p->st), 0);
}

static void fin_on_fin(probe *p)
{
    if (p->server_side) /* half-closed by the client: the server may still talk */
        world_later(p->w, 30, fin_reply_later);
}

static int fin_on_ready(world *w, dmsg_session *s)
{
    if (side_of(s) != SIDE_CLIENT)
        return 0;
    probe *p = probe_open(w, s, PROBE_SINK);
    p->keep_on = true;
    p->on_close_hook = probe_count_close;
    probe_write(p, "abc", 3);
    cr_assert_eq(dmsg_stream_close(p->st), 0);
    return 0;
}

static void fin_on_stream(world *w, dmsg_session *s, dmsg_stream *st)
{
    (void)s;
    probe *p = probe_new(w, true, PROBE_SINK);
    p->keep_on = true;
    p->on_fin_hook = fin_on_fin;
    p->on_close_hook = probe_count_close;
    probe_attach(p, st);
}

Test(close, half_close_both_ways)
{
    world w;
    world_init(&w);
    w.stop_at_probes = 2;
    w.on_ready_hook = fin_on_ready;
    w.on_stream_hook = fin_on_stream;
    world_connect(&w);
    world_run(&w);
    probe *c = w.probes[0], *s = w.probes[1];
    cr_assert(c->keep_len == 3 && memcmp(c->keep, "xyz", 3) == 0);
    cr_assert(s->keep_len == 3 && memcmp(s->keep, "abc", 3) == 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(w.probes[i]->fins, 1);
        cr_assert_eq(w.probes[i]->closes, 1);
        cr_assert_eq(w.probes[i]->close_err, 0);
        cr_assert_eq(w.probes[i]->writes_ok, 1);
    }
    world_fini(&w);
}

typedef struct reset_test {
    int variant;
} reset_test;

/* variant 0: reset at once with data still unwritten (inside on_ready nothing is flushed yet);
 * variant 1: the server resets from its on_data. */
static int reset_on_ready(world *w, dmsg_session *s)
{
    if (side_of(s) != SIDE_CLIENT)
        return 0;
    reset_test *t = w->test;
    probe *p = probe_open(w, s, PROBE_SINK);
    p->on_close_hook = probe_count_close;
    probe_write(p, "data", 4);
    if (t->variant == 0) {
        cr_assert_eq(dmsg_stream_reset(p->st), 0);
        cr_assert_eq(p->closes, 0, "on_close inside the reset call");
        cr_assert_eq(p->writes_err, 0, "write callback inside the reset call");
        cr_assert_eq(dmsg_stream_reset(p->st), DMSG_ECLOSED);
        cr_assert_eq(dmsg_stream_write(p->st, (const uint8_t *)"x", 1, NULL, NULL), DMSG_ECLOSED);
        cr_assert_eq(dmsg_stream_close(p->st), DMSG_ECLOSED);
        dmsg_stream_consume(p->st, 1); /* ignored */
    }
    return 0;
}

static void reset_in_data(probe *p, const uint8_t *d, size_t n)
{
    (void)d;
    (void)n;
    cr_assert_eq(dmsg_stream_reset(p->st), 0);
    cr_assert_eq(p->closes, 0);
}

static void reset_on_stream(world *w, dmsg_session *s, dmsg_stream *st)
{
    (void)s;
    reset_test *t = w->test;
    probe *p = probe_new(w, true, PROBE_SINK);
    p->on_close_hook = probe_count_close;
    if (t->variant == 1)
        p->on_data_hook = reset_in_data;
    probe_attach(p, st);
}

Test(close, reset_both_directions)
{
    for (int variant = 0; variant < 2; variant++) {
        world w;
        world_init(&w);
        reset_test t = {.variant = variant};
        w.test = &t;
        w.stop_at_probes = 2;
        w.on_ready_hook = reset_on_ready;
        w.on_stream_hook = reset_on_stream;
        world_connect(&w);
        world_run(&w);
        probe *c = w.probes[0], *s = w.probes[1];
        cr_assert_eq(c->closes, 1);
        cr_assert_eq(s->closes, 1);
        if (variant == 0) { /* client reset: its write never left */
            cr_assert_eq(c->close_err, 0);
            cr_assert_eq(c->writes_err, 1);
            cr_assert_eq(c->last_write_err, DMSG_ECLOSED);
            cr_assert_eq(s->close_err, DMSG_ERESET);
            cr_assert_eq(s->rx, 0);
        } else { /* server reset after the data arrived */
            cr_assert_eq(c->close_err, DMSG_ERESET);
            cr_assert_eq(c->writes_ok + c->writes_err, 1);
            cr_assert_eq(s->close_err, 0);
            cr_assert_eq(s->rx, 4);
        }
        world_fini(&w);
    }
}

/* No callbacks set in on_stream: the stream is reset at once. */
static void ignore_on_stream(world *w, dmsg_session *s, dmsg_stream *st)
{
    (void)w;
    (void)s;
    (void)st;
}

Test(close, unclaimed_stream_is_reset)
{
    world w;
    world_init(&w);
    w.stop_at_probes = 1;
    w.on_ready_hook = fin_on_ready;
    w.on_stream_hook = ignore_on_stream;
    world_connect(&w);
    world_run(&w);
    cr_assert_eq(w.probes[0]->close_err, DMSG_ERESET);
    world_fini(&w);
}

/* Closing the session from inside a stream callback: every stream's on_close (ECLOSED) runs
 * before the session's on_close, each exactly once; pending writes fail. */
typedef struct session_close_test {
    int opened;
    int stream_closes_before_session;
    bool session_closed;
} session_close_test;

static void sc_stream_closed(probe *p)
{
    session_close_test *t = p->w->test;
    if (!p->server_side) {
        cr_assert(!t->session_closed, "stream closed after its session");
        t->stream_closes_before_session++;
    }
}

static void sc_on_data(probe *p, const uint8_t *d, size_t n)
{
    (void)d;
    (void)n;
    session_close_test *t = p->w->test;
    if (!p->server_side && ++t->opened == 1) /* the first echo: close everything */
        dmsg_session_close(dmsg_stream_session(p->st), 0);
}

static int sc_on_ready(world *w, dmsg_session *s)
{
    if (side_of(s) != SIDE_CLIENT)
        return 0;
    static uint8_t big[512u << 10];
    for (int i = 0; i < 10; i++) {
        probe *p = probe_open(w, s, PROBE_SINK);
        p->on_close_hook = sc_stream_closed;
        p->on_data_hook = sc_on_data;
        probe_write(p, "hello", 5);
        probe_write(p, big, sizeof big); /* more than a window: cannot all be written */
    }
    return 0;
}

static void sc_session_closed(world *w, dmsg_session *s, int err)
{
    session_close_test *t = w->test;
    if (side_of(s) == SIDE_CLIENT) {
        cr_assert_eq(err, 0);
        cr_assert_eq(t->stream_closes_before_session, 10);
        t->session_closed = true;
    } else {
        cr_assert_eq(err, DMSG_ECLOSED);
    }
    if (w->closed[SIDE_CLIENT] && w->closed[SIDE_SERVER])
        world_stop(w);
}

Test(close, session_close_with_streams_open)
{
    world w;
    world_init(&w);
    session_close_test t = {0};
    w.test = &t;
    w.server_stream_mode = PROBE_ECHO;
    w.on_ready_hook = sc_on_ready;
    w.on_close_hook = sc_session_closed;
    world_connect(&w);
    world_run(&w);
    cr_assert(t.session_closed);
    int server_streams = 0;
    for (size_t i = 0; i < w.nprobes; i++) {
        probe *p = w.probes[i];
        cr_assert_eq(p->closes, 1);
        cr_assert_eq(p->close_err, DMSG_ECLOSED, "%s", dmsg_strerror(p->close_err));
        if (!p->server_side) {
            cr_assert_eq(p->writes_ok + p->writes_err, 2, "every write callback once");
            cr_assert_geq(p->writes_err, 1);
            cr_assert_eq(p->last_write_err, DMSG_ECLOSED);
        } else {
            server_streams++;
        }
    }
    cr_assert_leq(server_streams, 10);
    world_fini(&w);
}

/* ---- 1000 streams at once -------------------------------------------------------------------- */

#define MANY 1000

static int many_on_ready(world *w, dmsg_session *s)
{
    if (side_of(s) != SIDE_CLIENT)
        return 0;
    for (int i = 0; i < MANY; i++) {
        probe *p = probe_open(w, s, PROBE_SINK);
        p->keep_on = true;
        p->on_close_hook = probe_count_close;
        char msg[32];
        int n = snprintf(msg, sizeof msg, "stream %d", i);
        probe_write(p, msg, (size_t)n);
        cr_assert_eq(dmsg_stream_close(p->st), 0);
    }
    dmsg_session_stats st;
    dmsg_session_get_stats(s, &st);
    cr_assert_eq(st.streams, MANY);
    return 0;
}

static void many_on_stream(world *w, dmsg_session *s, dmsg_stream *st)
{
    (void)s;
    probe *p = probe_new(w, true, PROBE_ECHO);
    p->close_on_fin = true;
    p->on_close_hook = probe_count_close;
    probe_attach(p, st);
}

Test(streams, thousand_streams_at_once)
{
    world w;
    world_init(&w);
    w.ccfg.yamux.accept_backlog = MANY; /* our un-ACKed opens */
    w.stop_at_probes = 2 * MANY;
    w.on_ready_hook = many_on_ready;
    w.on_stream_hook = many_on_stream;
    world_connect(&w);
    world_run(&w);
    cr_assert_eq(w.probes_closed, 2 * MANY);
    int clients = 0;
    for (size_t i = 0; i < w.nprobes; i++) {
        probe *p = w.probes[i];
        cr_assert_eq(p->closes, 1);
        cr_assert_eq(p->close_err, 0);
        cr_assert_eq(p->fins, 1);
        if (!p->server_side) {
            char msg[32];
            int n = snprintf(msg, sizeof msg, "stream %d", clients++);
            cr_assert_eq(p->keep_len, (size_t)n);
            cr_assert(memcmp(p->keep, msg, (size_t)n) == 0);
        }
    }
    cr_assert_eq(clients, MANY);
    world_fini(&w);
}

/* ---- session objects ------------------------------------------------------------------------- */

static int objects_on_ready(world *w, dmsg_session *s)
{
    (void)s;
    if (w->ready[0] + w->ready[1] < 2)
        return 0;
    uint8_t f[3][64];
    size_t n[3];
    for (int i = 0; i < 3; i++) {
        uint8_t obj[8] = {'o', 'b', 'j', (uint8_t)('0' + i)};
        cr_assert_eq(dmsg_session_seal_object(w->client, obj, 4, f[i], sizeof f[i], &n[i]), 0);
        cr_assert_eq(n[i], 4 + DMSG_NOISE_FRAMED_OVERHEAD);
    }
    /* objects of concurrent streams may arrive in any nonce order */
    int order[3] = {2, 0, 1};
    for (int k = 0; k < 3; k++) {
        int i = order[k];
        uint8_t copy[64], *obj;
        size_t obj_len;
        memcpy(copy, f[i], n[i]);
        cr_assert_eq(dmsg_session_open_object(w->server, copy + 2, n[i] - 2, &obj, &obj_len), 0);
        cr_assert(obj_len == 4 && obj[3] == '0' + i);
    }
    uint8_t copy[64], *obj;
    size_t obj_len;
    memcpy(copy, f[0], n[0]);
    cr_assert_eq(dmsg_session_open_object(w->server, copy + 2, n[0] - 2, &obj, &obj_len),
                 DMSG_EREPLAY);
    uint8_t fresh[64];
    size_t fresh_len;
    cr_assert_eq(dmsg_session_seal_object(w->client, f[0], 4, fresh, sizeof fresh, &fresh_len), 0);
    memcpy(copy, fresh, fresh_len);
    copy[fresh_len - 1] ^= 1;
    cr_assert_eq(dmsg_session_open_object(w->server, copy + 2, fresh_len - 2, &obj, &obj_len),
                 DMSG_EMAC);
    cr_assert_eq(dmsg_session_open_object(w->server, copy + 2, 23, &obj, &obj_len), DMSG_ESHORT);
    memcpy(copy, fresh, fresh_len); /* a failed open changes nothing: the intact frame opens */
    cr_assert_eq(dmsg_session_open_object(w->server, copy + 2, fresh_len - 2, &obj, &obj_len), 0);
    /* the other direction uses the other key: a client frame does not open on the client */
    memcpy(copy, f[2], n[2]);
    cr_assert_eq(dmsg_session_open_object(w->client, copy + 2, n[2] - 2, &obj, &obj_len),
                 DMSG_EMAC);
    uint8_t small[8];
    size_t sn;
    cr_assert_eq(dmsg_session_seal_object(w->server, f[0], 4, small, sizeof small, &sn),
                 DMSG_EINVAL);
    world_stop(w);
    return 0;
}

Test(objects, seal_and_open_between_sessions)
{
    world w;
    world_init(&w);
    w.on_ready_hook = objects_on_ready;
    world_connect(&w);
    world_run(&w);
    cr_assert_eq(w.ready[0] + w.ready[1], 2);
    world_fini(&w);
}

/* ---- keepalive ------------------------------------------------------------------------------- */

typedef struct keepalive_test {
    size_t off;        /* rx offset of the session's yamux bytes */
    int pings_answered;
    uint32_t next_id;
    bool pong_seen;
    uint64_t stopped_at, closed_at;
} keepalive_test;

/* The raw client answers the server's keepalive pings three times, then goes silent. It also
 * pings the server once and expects the pong at once. */
static void keepalive_after_hs(raw *r)
{
    keepalive_test *t = r->w->test;
    if (t->off == 0) {
        t->off = r->hs->msg_len[1];
        uint8_t ping[12];
        put_frame(ping, DMSG_YAMUX_PING, DMSG_YAMUX_SYN, 0, 77);
        raw_send(r, ping, sizeof ping);
    }
    while (!r->eof && r->rx_len - t->off >= 12) {
        dmsg_yamux_hdr h;
        cr_assert_eq(dmsg_yamux_hdr_decode(r->rx + t->off, 12, &h), 0);
        t->off += 12;
        cr_assert_eq(h.type, DMSG_YAMUX_PING);
        if (h.flags == DMSG_YAMUX_ACK) {
            cr_assert_eq(h.length, 77);
            t->pong_seen = true;
            continue;
        }
        cr_assert_eq(h.flags, DMSG_YAMUX_SYN);
        cr_assert_eq(h.length, t->next_id++, "keepalive ids count from 0");
        if (t->pings_answered < 3) {
            uint8_t pong[12];
            put_frame(pong, DMSG_YAMUX_PING, DMSG_YAMUX_ACK, 0, h.length);
            raw_send(r, pong, sizeof pong);
            t->pings_answered++;
            if (t->pings_answered == 3)
                t->stopped_at = uv_now(&r->w->loop);
        }
    }
}

static void keepalive_closed(world *w, dmsg_session *s, int err)
{
    (void)s;
    (void)err;
    keepalive_test *t = w->test;
    t->closed_at = uv_now(&w->loop);
    world_stop(w);
}

Test(keepalive, pings_answered_then_dead_peer)
{
    xk_vec v;
    xk_vec_load(&v, 0);
    world w;
    world_init(&w);
    xk_vec_identities(&v, &w.sid, NULL);
    w.scfg.yamux.keepalive_interval_ms = 40;
    w.scfg.yamux.keepalive_timeout_ms = 200;
    keepalive_test t = {0};
    w.test = &t;
    w.on_close_hook = keepalive_closed;
    raw r = {.after_hs = keepalive_after_hs};
    raw_hs_connect(&w, &r, &v);
    world_run(&w);
    cr_assert(t.pong_seen, "the server did not answer our ping");
    cr_assert_eq(t.pings_answered, 3);
    cr_assert_eq(w.close_err[SIDE_SERVER], DMSG_ETIMEOUT);
    cr_assert_geq(t.closed_at - t.stopped_at, 190);
    raw_close(&r);
    world_fini(&w);
    free(r.rx);
    xk_vec_free(&v);
}

static void keepalive_pair_check(world *w)
{
    cr_assert_eq(w->closed[0] + w->closed[1], 0, "keepalive killed a healthy session");
    dmsg_session_stats st;
    dmsg_session_get_stats(w->client, &st);
    cr_assert_gt(st.bytes_in, 100, "no pongs arrived");
    world_stop(w);
}

Test(keepalive, healthy_pair_survives)
{
    world w;
    world_init(&w);
    w.scfg.yamux.keepalive_interval_ms = 20;
    w.scfg.yamux.keepalive_timeout_ms = 100;
    w.ccfg.yamux.keepalive_interval_ms = 20;
    w.ccfg.yamux.keepalive_timeout_ms = 100;
    world_connect(&w);
    world_later(&w, 500, keepalive_pair_check);
    world_run(&w);
    world_fini(&w);
}

/* ---- timeouts and limits --------------------------------------------------------------------- */

typedef struct idle_test {
    uint64_t stream_closed_at, session_closed_at;
    probe *p;
} idle_test;

static void idle_close_stream(world *w)
{
    idle_test *t = w->test;
    cr_assert_eq(w->closed[SIDE_SERVER], 0, "idle timeout despite a stream");
    cr_assert_eq(dmsg_stream_reset(t->p->st), 0);
    t->stream_closed_at = uv_now(&w->loop);
}

static int idle_on_ready(world *w, dmsg_session *s)
{
    idle_test *t = w->test;
    if (side_of(s) == SIDE_CLIENT) {
        t->p = probe_open(w, s, PROBE_SINK);
        world_later(w, 400, idle_close_stream);
    }
    return 0;
}

static void idle_closed(world *w, dmsg_session *s, int err)
{
    idle_test *t = w->test;
    if (side_of(s) == SIDE_SERVER) {
        cr_assert_eq(err, DMSG_ETIMEOUT);
        t->session_closed_at = uv_now(&w->loop);
    }
    if (w->closed[0] && w->closed[1])
        world_stop(w);
}

Test(limits, idle_timeout_counts_from_the_last_stream)
{
    world w;
    world_init(&w);
    w.scfg.idle_timeout_ms = 150;
    idle_test t = {0};
    w.test = &t;
    w.on_ready_hook = idle_on_ready;
    w.on_close_hook = idle_closed;
    world_connect(&w);
    world_run(&w);
    cr_assert_neq(t.stream_closed_at, 0);
    cr_assert_geq(t.session_closed_at - t.stream_closed_at, 140);
    world_fini(&w);
}

typedef struct goaway_test {
    probe *first;
    bool refused;
} goaway_test;

static void goaway_try_open(world *w)
{
    goaway_test *t = w->test;
    dmsg_stream *st;
    cr_assert_eq(dmsg_session_open_stream(w->client, &probe_callbacks, NULL, &st),
                 DMSG_EGOAWAY);
    t->refused = true;
    probe_write(t->first, "still here", 10); /* the existing stream goes on */
    cr_assert_eq(dmsg_stream_close(t->first->st), 0);
}

static int goaway_on_ready(world *w, dmsg_session *s)
{
    goaway_test *t = w->test;
    if (side_of(s) == SIDE_CLIENT) {
        t->first = probe_open(w, s, PROBE_SINK);
        t->first->keep_on = true;
        t->first->on_close_hook = probe_count_close;
    }
    return 0;
}

static void goaway_on_stream(world *w, dmsg_session *s, dmsg_stream *st)
{
    probe *p = probe_new(w, true, PROBE_ECHO);
    p->close_on_fin = true;
    p->on_close_hook = probe_count_close;
    probe_attach(p, st);
    cr_assert_eq(dmsg_session_goaway(s), 0);
    world_later(w, 100, goaway_try_open);
}

Test(limits, goaway_refuses_new_streams_keeps_old)
{
    world w;
    world_init(&w);
    goaway_test t = {0};
    w.test = &t;
    w.stop_at_probes = 2;
    w.on_ready_hook = goaway_on_ready;
    w.on_stream_hook = goaway_on_stream;
    world_connect(&w);
    world_run(&w);
    cr_assert(t.refused);
    cr_assert(t.first->keep_len == 10 && memcmp(t.first->keep, "still here", 10) == 0);
    cr_assert_eq(t.first->close_err, 0);
    world_fini(&w);
}

/* Opening 400 streams inside one callback queues 4800 bytes of SYNs: over a 4096-byte limit. */
static int overflow_on_ready(world *w, dmsg_session *s)
{
    if (side_of(s) != SIDE_CLIENT)
        return 0;
    for (int i = 0; i < 400; i++) {
        probe *p = probe_open(w, s, PROBE_SINK);
        (void)p;
    }
    probe *p = w->probes[0];
    cr_assert_eq(dmsg_stream_write(p->st, (const uint8_t *)"x", 4097, NULL, NULL), DMSG_ELIMIT);
    cr_assert_eq(dmsg_stream_write(p->st, (const uint8_t *)"x", 0, NULL, NULL), DMSG_EINVAL);
    return 0;
}

static void overflow_closed(world *w, dmsg_session *s, int err)
{
    (void)err;
    if (side_of(s) == SIDE_CLIENT)
        world_stop(w);
}

Test(limits, write_queue_overflow_closes)
{
    world w;
    world_init(&w);
    w.ccfg.max_write_queue = 4096;
    w.ccfg.yamux.accept_backlog = 1024;
    w.on_ready_hook = overflow_on_ready;
    w.on_close_hook = overflow_closed;
    world_connect(&w);
    world_run(&w);
    cr_assert_eq(w.close_err[SIDE_CLIENT], DMSG_ELIMIT);
    cr_assert_eq(w.nprobes, 400);
    for (size_t i = 0; i < w.nprobes; i++) {
        cr_assert_eq(w.probes[i]->closes, 1);
        cr_assert_eq(w.probes[i]->close_err, DMSG_ELIMIT);
    }
    world_fini(&w);
}

/* A peer that stops reading while flooding pings: the pongs back up, reading pauses, and the
 * write that makes no progress closes the session at write_timeout. */
static void flood_after_hs(raw *r)
{
    if (r->step != 1)
        return;
    r->step = 2;
    uv_read_stop((uv_stream_t *)&r->tcp);
    size_t n = 600000; /* 7.2 MB of pongs: far more than the kernel buffers take */
    uint8_t *pings = malloc(12 * n);
    for (size_t i = 0; i < n; i++)
        put_frame(pings + 12 * i, DMSG_YAMUX_PING, DMSG_YAMUX_SYN, 0, (uint32_t)i);
    raw_send(r, pings, 12 * n);
    free(pings);
}

static void stop_on_server_close(world *w, dmsg_session *s, int err)
{
    (void)err;
    if (side_of(s) == SIDE_SERVER)
        world_stop(w);
}

Test(limits, stalled_peer_hits_write_timeout)
{
    xk_vec v;
    xk_vec_load(&v, 0);
    world w;
    world_init(&w);
    xk_vec_identities(&v, &w.sid, NULL);
    w.scfg.max_write_queue = 512u << 10; /* > pause mark + the replies to one 64 KiB read */
    w.scfg.write_timeout_ms = 300;
    w.scfg.glitch_threshold = 0; /* else the ping flood ends as glitches first (next test) */
    w.on_close_hook = stop_on_server_close;
    raw r = {.after_hs = flood_after_hs, .hs = &v, .on_connected = raw_hs_connected,
             .on_rx = raw_hs_rx};
    cr_assert_eq(uv_tcp_init_ex(&w.loop, &r.tcp, AF_INET), 0);
    int rcvbuf = 4096;
    cr_assert_eq(uv_recv_buffer_size((uv_handle_t *)&r.tcp, &rcvbuf), 0);
    raw_connect(&w, &r, true);
    world_run(&w);
    cr_assert_eq(w.close_err[SIDE_SERVER], DMSG_ETIMEOUT, "%s",
                 dmsg_strerror(w.close_err[SIDE_SERVER]));
    raw_close(&r);
    world_fini(&w);
    free(r.rx);
    xk_vec_free(&v);
}

/* A peer that floods pings but reads (threats.md Y7): the pings count as glitches; at the
 * threshold the server sends GoAway(protocol error) and closes with DMSG_EGLITCH. */
typedef struct ping_flood_test {
    size_t off;
    uint32_t pongs;
    bool goaway;
    uint32_t goaway_code;
} ping_flood_test;

static void ping_flood_after_hs(raw *r)
{
    ping_flood_test *t = r->w->test;
    if (t->off == 0) {
        enum { N = 300 };
        uint8_t pings[12 * N];
        t->off = r->hs->msg_len[1];
        for (uint32_t i = 0; i < N; i++)
            put_frame(pings + 12 * i, DMSG_YAMUX_PING, DMSG_YAMUX_SYN, 0, i);
        raw_send(r, pings, sizeof pings);
    }
    while (r->rx_len - t->off >= 12) {
        dmsg_yamux_hdr h;
        cr_assert_eq(dmsg_yamux_hdr_decode(r->rx + t->off, 12, &h), 0);
        t->off += 12;
        if (h.type == DMSG_YAMUX_PING && h.flags == DMSG_YAMUX_ACK)
            t->pongs++;
        if (h.type == DMSG_YAMUX_GOAWAY) {
            t->goaway = true;
            t->goaway_code = h.length;
        }
    }
}

Test(limits, ping_flood_is_a_glitch)
{
    xk_vec v;
    xk_vec_load(&v, 0);
    world w;
    world_init(&w);
    xk_vec_identities(&v, &w.sid, NULL);
    ping_flood_test t = {0};
    w.test = &t;
    w.on_close_hook = stop_on_server_close;
    raw r = {.after_hs = ping_flood_after_hs};
    raw_hs_connect(&w, &r, &v);
    world_run(&w);
    cr_assert_eq(w.close_err[SIDE_SERVER], DMSG_EGLITCH, "%s",
                 dmsg_strerror(w.close_err[SIDE_SERVER]));
    /* Let the last bytes arrive, then look for the GoAway. */
    for (int i = 0; i < 50 && !t.goaway; i++)
        uv_run(&w.loop, UV_RUN_NOWAIT);
    cr_assert(t.goaway, "no GoAway before the close (%u pongs)", t.pongs);
    cr_assert_eq(t.goaway_code, DMSG_YAMUX_GOAWAY_PROTO_ERROR);
    /* The first ping is free; from the second on each costs one point. */
    cr_assert_leq(t.pongs, 101);
    raw_close(&r);
    world_fini(&w);
    free(r.rx);
    xk_vec_free(&v);
}

/* Stream timers: our SYN never ACKed (stream 4) and our FIN never answered (stream 2, ACKed):
 * both are reset with DMSG_ETIMEOUT. */
typedef struct stream_timer_test {
    size_t off;
    bool acked, rst2, rst4;
} stream_timer_test;

static void timers_after_hs(raw *r)
{
    stream_timer_test *t = r->w->test;
    if (t->off == 0)
        t->off = r->hs->msg_len[1];
    while (!r->eof && r->rx_len - t->off >= 12) {
        dmsg_yamux_hdr h;
        cr_assert_eq(dmsg_yamux_hdr_decode(r->rx + t->off, 12, &h), 0);
        t->off += 12;
        if (h.type == DMSG_YAMUX_DATA)
            t->off += h.length;
        if ((h.flags & DMSG_YAMUX_SYN) && h.stream_id == 2) {
            uint8_t ack[12];
            put_frame(ack, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_ACK, 2, 0);
            raw_send(r, ack, sizeof ack);
            t->acked = true;
        }
        if (h.flags & DMSG_YAMUX_RST) {
            if (h.stream_id == 2)
                t->rst2 = true;
            if (h.stream_id == 4)
                t->rst4 = true;
        }
    }
}

static int timers_on_ready(world *w, dmsg_session *s)
{
    probe *a = probe_open(w, s, PROBE_SINK);
    probe *b = probe_open(w, s, PROBE_SINK);
    a->on_close_hook = probe_count_close;
    b->on_close_hook = probe_count_close;
    cr_assert_eq(a->id, 2u);
    cr_assert_eq(b->id, 4u);
    cr_assert_eq(dmsg_stream_close(a->st), 0);
    return 0;
}

Test(limits, stream_open_and_close_timeouts)
{
    xk_vec v;
    xk_vec_load(&v, 0);
    world w;
    world_init(&w);
    xk_vec_identities(&v, &w.sid, NULL);
    w.scfg.yamux.stream_open_timeout_ms = 150;
    w.scfg.yamux.stream_close_timeout_ms = 250;
    stream_timer_test t = {0};
    w.test = &t;
    w.stop_at_probes = 2;
    w.on_ready_hook = timers_on_ready;
    raw r = {.after_hs = timers_after_hs};
    raw_hs_connect(&w, &r, &v);
    world_run(&w);
    cr_assert(t.acked);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(w.probes[i]->closes, 1);
        cr_assert_eq(w.probes[i]->close_err, DMSG_ETIMEOUT);
    }
    /* the RSTs may still be in flight when the world stops; what arrived must be complete */
    raw_close(&r);
    world_fini(&w);
    free(r.rx);
    xk_vec_free(&v);
}

/* ---- yamux violations close the session with their error ------------------------------------- */

typedef struct violation {
    const char *name;
    uint8_t *bytes;
    size_t len;
    int want;
} violation;

static void violation_idle(raw *r)
{
    (void)r;
}

Test(yamux, violations_close_the_session)
{
    uint8_t bad_version[12], bad_type[12], even_syn[12], fin_twice[36], goaway1[12];
    put_frame(bad_version, DMSG_YAMUX_PING, DMSG_YAMUX_SYN, 0, 1);
    bad_version[0] = 1;
    put_frame(bad_type, 4, 0, 0, 0);
    put_frame(even_syn, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 2, 0);
    put_frame(fin_twice, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 1, 0);
    put_frame(fin_twice + 12, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_FIN, 1, 0);
    put_frame(fin_twice + 24, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_FIN, 1, 0);
    put_frame(goaway1, DMSG_YAMUX_GOAWAY, 0, 0, 1);
    /* over the window: the server holds everything (PROBE_HOLD) */
    size_t over_len = 12 + 2 * 12 + 200000 + 100000;
    uint8_t *over = calloc(1, over_len);
    put_frame(over, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 1, 0);
    put_frame(over + 12, DMSG_YAMUX_DATA, 0, 1, 200000);
    put_frame(over + 24 + 200000, DMSG_YAMUX_DATA, 0, 1, 100000);
    uint8_t too_long[12];
    put_frame(too_long, DMSG_YAMUX_DATA, DMSG_YAMUX_SYN, 1, WINDOW + 1);
    violation cases[] = {
        {"version 1", bad_version, 12, DMSG_EVERSION},
        {"type 4", bad_type, 12, DMSG_ETYPE},
        {"SYN with our parity", even_syn, 12, DMSG_EPROTO},
        {"FIN twice", fin_twice, 36, DMSG_EPROTO},
        {"GoAway(1)", goaway1, 12, DMSG_EGOAWAY},
        {"over the window", over, over_len, DMSG_EWINDOW},
        {"frame over the limit", too_long, 12, DMSG_ETOOBIG},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        xk_vec v;
        xk_vec_load(&v, 0);
        world w;
        world_init(&w);
        xk_vec_identities(&v, &w.sid, NULL);
        w.server_stream_mode = PROBE_HOLD;
        w.on_close_hook = stop_on_server_close;
        raw r = {.after_hs = violation_idle, .with_msg3 = cases[i].bytes,
                 .with_msg3_len = cases[i].len};
        raw_hs_connect(&w, &r, &v);
        world_run(&w);
        cr_assert_eq(w.ready[SIDE_SERVER], 1, "%s", cases[i].name);
        cr_assert_eq(w.close_err[SIDE_SERVER], cases[i].want, "%s: %s", cases[i].name,
                     dmsg_strerror(w.close_err[SIDE_SERVER]));
        for (size_t k = 0; k < w.nprobes; k++) {
            cr_assert_eq(w.probes[k]->closes, 1, "%s", cases[i].name);
            cr_assert_eq(w.probes[k]->close_err, cases[i].want, "%s", cases[i].name);
        }
        raw_close(&r);
        world_fini(&w);
        free(r.rx);
        xk_vec_free(&v);
    }
    free(over);
}

/* ---- memory of an idle session --------------------------------------------------------------- */

#define IDLE_PAIRS 200

size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

static size_t heap_in_use(void)
{
    if (__sanitizer_get_current_allocated_bytes)
        return __sanitizer_get_current_allocated_bytes();
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks;
}

static size_t rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

typedef struct idle_mem {
    size_t heap0, rss0;
    int ready;
    dmsg_session *warmup;
    dmsg_session *clients[IDLE_PAIRS];
} idle_mem;

static void idle_mem_measure(world *w)
{
    idle_mem *t = w->test;
    if (!__sanitizer_get_current_allocated_bytes)
        malloc_trim(0); /* RSS of what is held, not of the handshakes' freed peak */
    size_t heap = heap_in_use() - t->heap0, rss = rss_bytes() - t->rss0;
    size_t sessions = 2 * IDLE_PAIRS;
    fprintf(stderr, "idle session: %zu bytes of heap each (%zu sessions, both roles), "
                    "RSS growth %zu bytes each\n", heap / sessions, sessions, rss / sessions);
    cr_assert_leq(heap / sessions, 4096, "an idle session holds %zu bytes", heap / sessions);
    for (int i = 0; i < IDLE_PAIRS; i++)
        dmsg_session_close(t->clients[i], 0);
    dmsg_session_close(t->warmup, 0);
    world_stop(w); /* the server sessions follow on EOF */
}

static void connect_one(world *w, dmsg_session **out)
{
    cr_assert_eq(dmsg_session_connect(&w->loop, (const struct sockaddr *)&w->addr, &w->cid,
                                      &w->sid.pk, &w->ccfg, &world_callbacks, w, out), 0);
}

static int idle_mem_ready(world *w, dmsg_session *s)
{
    (void)s;
    idle_mem *t = w->test;
    if (++t->ready == 2) { /* the first pair paid the one-time costs (loop, libraries) */
        if (!__sanitizer_get_current_allocated_bytes)
            malloc_trim(0);
        t->heap0 = heap_in_use();
        t->rss0 = rss_bytes();
        for (int i = 0; i < IDLE_PAIRS; i++)
            connect_one(w, &t->clients[i]);
    } else if (t->ready == 2 + 2 * IDLE_PAIRS) { /* let the last writes complete */
        world_later(w, 200, idle_mem_measure);
    }
    return 0;
}

Test(memory, idle_session_footprint, .timeout = 60)
{
    world w;
    world_init(&w);
    idle_mem *t = calloc(1, sizeof *t);
    w.test = t;
    w.on_ready_hook = idle_mem_ready;
    connect_one(&w, &t->warmup);
    world_run(&w);
    cr_assert_eq(w.closed[SIDE_CLIENT], IDLE_PAIRS + 1);
    cr_assert_eq(w.closed[SIDE_SERVER], IDLE_PAIRS + 1);
    world_fini(&w);
    free(t);
}
