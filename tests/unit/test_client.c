/* The DMSG client library end to end, in one process: our server and relay (daemon/server.c,
 * daemon/relay.c) on a loopback port, and two clients holding sessions to it.
 *
 * Each test drives the loop until its condition holds or a deadline passes, then closes
 * everything and checks that the loop ends with no handle left (so nothing leaked). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/client.h"
#include "dmsg/error.h"
#include "log.h"
#include "relay.h"
#include "server.h"

/* ---------------------------------------------------------------------------------------------
 * Fixture: a server and two clients */

typedef struct world {
    uv_loop_t loop;
    struct dmsgd_log log;
    dmsg_identity server_id;
    struct relay *relay;
    struct server *server;
    bool server_idle;
    dmsg_client *a, *b;
    bool a_closed, b_closed;
} world;

static world W;

static dmsg_session *find_local(void *ctx, const dmsg_pk *pk)
{
    world *w = ctx;
    return w->server ? server_find_session(w->server, pk) : NULL;
}

static void on_server_idle(void *ctx)
{
    ((world *)ctx)->server_idle = true;
}

static void make_identity(dmsg_identity *id)
{
    id->rng = dmsg_rng_system();
    cr_assert_eq(dmsg_keypair_generate(&id->pk, &id->sk, &id->rng), 0);
}

static void start_server(world *w)
{
    make_identity(&w->server_id);
    log_init(&w->log);
    w->log.level = getenv("TEST_LOG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR;
    struct relay_limits rlim;
    relay_limits_default(&rlim);
    struct relay_hooks rh = {.ctx = w, .find_local = find_local};
    cr_assert_eq(relay_init(&w->loop, &w->server_id, &rlim, &rh, &w->log, &w->relay), 0);
    struct server_limits slim = {
        .max_sessions = 256,
        .max_pending_handshakes = 256,
        .max_pending_per_ip = 256,
        .max_sessions_per_ip = 256,
        .eviction_interval_ms = 0,
    };
    dmsg_session_config_default(&slim.session);
    struct server_hooks sh = {.ctx = w, .on_idle = on_server_idle};
    cr_assert_eq(server_init(&w->loop, &w->server_id, &slim, w->relay, &sh, &w->log,
                             &w->server), 0);
    char err[128] = "";
    cr_assert_eq(server_listen(w->server, "127.0.0.1:0", err, sizeof err), 0, "%s", err);
}

static void on_client_closed(dmsg_client *c, void *ctx)
{
    world *w = ctx;
    if (c == w->a)
        w->a_closed = true;
    if (c == w->b)
        w->b_closed = true;
}

static void client_config(world *w, dmsg_client_config *cfg, dmsg_server_ref *srv)
{
    dmsg_client_config_default(cfg);
    srv->pk = w->server_id.pk;
    snprintf(srv->address, sizeof srv->address, "127.0.0.1:%u",
             (unsigned)server_port(w->server));
    cfg->servers = srv;
    cfg->n_servers = 1;
    cfg->dial_timeout_ms = 5000;
}

static dmsg_client *start_client(world *w, const dmsg_client_config *cfg)
{
    static const dmsg_client_callbacks cb = {.on_close = on_client_closed};
    dmsg_identity id;
    make_identity(&id);
    dmsg_client *c = NULL;
    cr_assert_eq(dmsg_client_start(&w->loop, &id, cfg, &cb, w, &c), 0);
    return c;
}

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
    memset(&W, 0, sizeof W);
    cr_assert_eq(uv_loop_init(&W.loop), 0);
    start_server(&W);
    dmsg_client_config cfg;
    dmsg_server_ref srv;
    client_config(&W, &cfg, &srv);
    W.a = start_client(&W, &cfg);
    W.b = start_client(&W, &cfg);
}

/* Runs the loop until *flag is true; false when timeout_ms passed first. */
static bool run_until(const bool *flag, uint64_t timeout_ms)
{
    uint64_t end = uv_now(&W.loop) + timeout_ms;
    while (!*flag) {
        if (uv_now(&W.loop) >= end)
            return false;
        uv_run(&W.loop, UV_RUN_ONCE);
        uv_update_time(&W.loop);
    }
    return true;
}

/* Runs the loop for a while (to let things that must not happen have their chance). */
static void run_for(uint64_t ms)
{
    bool never = false;
    (void)run_until(&never, ms);
}

static void on_server_closed(void *arg)
{
    *(bool *)arg = true;
}

static void teardown(void)
{
    if (!W.a_closed)
        dmsg_client_close(W.a);
    if (!W.b_closed)
        dmsg_client_close(W.b);
    cr_assert(run_until(&W.a_closed, 5000), "client A did not close");
    cr_assert(run_until(&W.b_closed, 5000), "client B did not close");
    server_close_sessions(W.server);
    cr_assert(run_until(&W.server_idle, 5000));
    bool server_done = false, relay_done = false;
    cr_assert_eq(server_close(W.server, on_server_closed, &server_done), 0);
    relay_close(W.relay, on_server_closed, &relay_done);
    cr_assert(run_until(&server_done, 5000));
    cr_assert(run_until(&relay_done, 5000));
    uv_run(&W.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&W.loop), 0, "a handle was left open");
    dmsg_wipe(&W.server_id.sk, sizeof W.server_id.sk);
}

TestSuite(client, .init = setup, .fini = teardown, .timeout = 60);

/* ---------------------------------------------------------------------------------------------
 * A peer that collects, checks and optionally answers data */

#define PATTERN(i, seed) ((uint8_t)((i) * 131u + (seed) + ((i) >> 11)))

typedef struct peer {
    dmsg_conn *conn;
    bool dialed, accepted;
    int dial_err;
    uint16_t dial_code;
    size_t received;
    bool data_ok;
    unsigned seed;            /* pattern expected from the other side */
    bool hold;                /* do not consume (backpressure test) */
    size_t held;
    bool eof, closed;
    int close_err;
    size_t reply_after;       /* once this many bytes arrived, send reply_len bytes */
    size_t reply_len;
    unsigned reply_seed;
    bool close_after_reply_received;
    size_t expect;            /* close our side after this many bytes */
    size_t send_len, sent;    /* paced sending (pace) */
    unsigned send_seed;
} peer;

static void peer_on_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx);
static void peer_on_eof(dmsg_conn *c, void *ctx);
static void peer_on_close(dmsg_conn *c, int err, void *ctx);
static void peer_on_writable(dmsg_conn *c, void *ctx);

static const dmsg_conn_callbacks peer_callbacks = {
    .on_data = peer_on_data,
    .on_eof = peer_on_eof,
    .on_writable = peer_on_writable,
    .on_close = peer_on_close,
};

/* Writes len pattern bytes in pieces, respecting the write queue only loosely (tests of the
 * write path itself use send_paced). */
static void send_pattern(dmsg_conn *c, size_t len, unsigned seed)
{
    uint8_t buf[10000];
    for (size_t off = 0; off < len;) {
        size_t n = len - off < sizeof buf ? len - off : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = PATTERN(off + i, seed);
        cr_assert_eq(dmsg_conn_write(c, buf, n, NULL, NULL), 0);
        off += n;
    }
}

/* Sends p->send_len pattern bytes keeping at most one window queued; goes on from
 * on_writable. */
static void pace(dmsg_conn *c, peer *p)
{
    uint8_t buf[16384];
    while (p->sent < p->send_len && dmsg_conn_write_queued(c) < DMSG_CLIENT_WINDOW) {
        size_t n = p->send_len - p->sent < sizeof buf ? p->send_len - p->sent : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = PATTERN(p->sent + i, p->send_seed);
        cr_assert_eq(dmsg_conn_write(c, buf, n, NULL, NULL), 0);
        p->sent += n;
    }
}

static void peer_on_writable(dmsg_conn *c, void *ctx)
{
    pace(c, ctx);
}

static void peer_on_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    peer *p = ctx;
    for (size_t i = 0; i < len; i++)
        if (data[i] != PATTERN(p->received + i, p->seed))
            p->data_ok = false;
    p->received += len;
    if (p->hold)
        p->held += len;
    else
        dmsg_conn_consume(c, len);
    if (p->reply_len && p->received >= p->reply_after) {
        size_t n = p->reply_len;
        p->reply_len = 0;
        send_pattern(c, n, p->reply_seed);
    }
    if (p->expect && p->received >= p->expect)
        dmsg_conn_close(c);
}

static void peer_on_eof(dmsg_conn *c, void *ctx)
{
    peer *p = ctx;
    p->eof = true;
    dmsg_conn_close(c);
}

static void peer_on_close(dmsg_conn *c, int err, void *ctx)
{
    peer *p = ctx;
    (void)c;
    p->closed = true;
    p->close_err = err;
    p->conn = NULL;
}

static void on_dialed(dmsg_client *c, dmsg_conn *conn, int err, uint16_t code, void *arg)
{
    peer *p = arg;
    (void)c;
    p->dialed = true;
    p->dial_err = err;
    p->dial_code = code;
    p->conn = conn;
    if (conn)
        dmsg_conn_set_callbacks(conn, &peer_callbacks, p);
}

/* A listener that accepts into peers[] in order. */
typedef struct acceptor {
    peer *peers;
    size_t n, cap;
    bool take;                /* accept at once (else leave them queued) */
} acceptor;

static void on_listen(dmsg_listener *l, void *ctx)
{
    acceptor *acc = ctx;
    while (acc->take && acc->n < acc->cap) {
        peer *p = &acc->peers[acc->n];
        dmsg_conn *conn = NULL;
        if (dmsg_listener_accept(l, &peer_callbacks, p, &conn) < 0)
            break;
        p->conn = conn;
        p->accepted = true;
        acc->n++;
    }
}

/* Both clients' sessions are up, and the server has registered them (a client's session is up
 * once it wrote handshake message 3, a little before the server has read it). */
static void wait_sessions(void)
{
    dmsg_pk pk;
    uint64_t end = uv_now(&W.loop) + 5000;
    while (dmsg_client_sessions(W.a, &pk, 1) == 0 || dmsg_client_sessions(W.b, &pk, 1) == 0 ||
           server_session_count(W.server) < 2) {
        cr_assert(uv_now(&W.loop) < end, "sessions did not come up");
        uv_run(&W.loop, UV_RUN_ONCE);
        uv_update_time(&W.loop);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Tests */

Test(client, dial_before_sessions_are_up_waits_for_them)
{
    static peer pb;
    pb = (peer){.data_ok = true, .seed = 1};
    static acceptor acc;
    acc = (acceptor){.peers = &pb, .cap = 1, .take = true};
    dmsg_listener *l = NULL;
    cr_assert_eq(dmsg_client_listen(W.b, 80, on_listen, &acc, &l), 0);
    static peer pa;
    pa = (peer){.data_ok = true};
    dmsg_addr dst = {.pk = *dmsg_client_pk(W.b), .port = 80};
    /* Right after start: A's session is still connecting. B's might be too, so the first
     * try may find nobody; the dial goes on until B is there or its budget is spent. */
    wait_sessions();
    cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pa), 0);
    cr_assert_not(pa.dialed, "the outcome never arrives from inside the call");
    cr_assert(run_until(&pa.dialed, 5000));
    cr_assert_eq(pa.dial_err, 0, "%s", dmsg_strerror(pa.dial_err));
    cr_assert(run_until(&pb.accepted, 5000));
    const dmsg_addr *la = dmsg_conn_local_addr(pa.conn), *ra = dmsg_conn_remote_addr(pb.conn);
    cr_assert_eq(la->port, 49153, "first ephemeral port");
    cr_assert(dmsg_pk_equal(&la->pk, dmsg_client_pk(W.a)));
    cr_assert_eq(ra->port, 49153);
    cr_assert(dmsg_pk_equal(&ra->pk, dmsg_client_pk(W.a)));
    cr_assert_eq(dmsg_conn_local_addr(pb.conn)->port, 80);
    cr_assert(dmsg_pk_equal(dmsg_conn_server_pk(pa.conn), &W.server_id.pk));
}

Test(client, data_flows_both_ways_and_close_ends_both_sides)
{
    static peer pb;
    pb = (peer){.data_ok = true, .seed = 1, .reply_after = 3u << 20, .reply_len = 2u << 20,
               .reply_seed = 2};
    static acceptor acc;
    acc = (acceptor){.peers = &pb, .cap = 1, .take = true};
    dmsg_listener *l = NULL;
    cr_assert_eq(dmsg_client_listen(W.b, 80, on_listen, &acc, &l), 0);
    wait_sessions();
    static peer pa;
    pa = (peer){.data_ok = true, .seed = 2, .expect = 2u << 20};
    dmsg_addr dst = {.pk = *dmsg_client_pk(W.b), .port = 80};
    cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pa), 0);
    cr_assert(run_until(&pa.dialed, 5000));
    cr_assert_eq(pa.dial_err, 0);
    send_pattern(pa.conn, 3u << 20, 1); /* B answers with 2 MiB once it has all 3 */
    cr_assert(run_until(&pa.closed, 20000), "A got %zu bytes", pa.received);
    cr_assert(run_until(&pb.closed, 5000));
    cr_assert_eq(pb.received, 3u << 20);
    cr_assert_eq(pa.received, 2u << 20);
    cr_assert(pa.data_ok && pb.data_ok, "corrupted data");
    cr_assert(pb.eof, "A's close reaches B as EOF");
    cr_assert_eq(pa.close_err, 0, "%s", dmsg_strerror(pa.close_err));
    cr_assert_eq(pb.close_err, 0, "%s", dmsg_strerror(pb.close_err));
}

Test(client, dial_to_a_port_nobody_listens_on_fails_fast)
{
    wait_sessions();
    static peer pa;
    pa = (peer){.data_ok = true};
    dmsg_addr dst = {.pk = *dmsg_client_pk(W.b), .port = 81};
    uint64_t start = uv_now(&W.loop);
    cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pa), 0);
    cr_assert(run_until(&pa.dialed, 5000));
    cr_assert_null(pa.conn);
    /* B answers with a signed 306; a relay either forwards it or closes the stream. */
    cr_assert(pa.dial_err == DMSG_EWIRE || pa.dial_err == DMSG_ECLOSED, "%s",
              dmsg_strerror(pa.dial_err));
    if (pa.dial_err == DMSG_EWIRE)
        cr_assert_eq(pa.dial_code, 306);
    cr_assert_lt(uv_now(&W.loop) - start, 2000, "no 20 s wait");
}

Test(client, dial_to_an_unknown_key_fails_fast)
{
    wait_sessions();
    dmsg_identity nobody;
    make_identity(&nobody);
    static peer pa;
    pa = (peer){.data_ok = true};
    dmsg_addr dst = {.pk = nobody.pk, .port = 80};
    uint64_t start = uv_now(&W.loop);
    cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pa), 0);
    cr_assert(run_until(&pa.dialed, 10000));
    cr_assert_null(pa.conn);
    cr_assert_neq(pa.dial_err, 0);
    cr_assert_lt(uv_now(&W.loop) - start, 3000);
    /* The port was given back: the next dial takes the next one in the rotation. */
    static peer pb;
    pb = (peer){.data_ok = true};
    static acceptor acc;
    acc = (acceptor){.peers = &pb, .cap = 1, .take = true};
    dmsg_listener *l = NULL;
    cr_assert_eq(dmsg_client_listen(W.b, 80, on_listen, &acc, &l), 0);
    static peer pa2;
    pa2 = (peer){.data_ok = true};
    dst.pk = *dmsg_client_pk(W.b);
    cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pa2), 0);
    cr_assert(run_until(&pa2.dialed, 5000));
    cr_assert_eq(pa2.dial_err, 0);
    cr_assert_eq(dmsg_conn_local_addr(pa2.conn)->port, 49154);
}

Test(client, invalid_dial_arguments_are_refused_at_once)
{
    dmsg_addr dst = {.pk = *dmsg_client_pk(W.b), .port = 0};
    static peer pa;
    pa = (peer){0};
    cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pa), DMSG_EINVAL);
    memset(&dst.pk, 0, sizeof dst.pk);
    dst.port = 80;
    cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pa), DMSG_EINVAL);
    dmsg_listener *l = NULL;
    static acceptor acc;
    acc = (acceptor){0};
    cr_assert_eq(dmsg_client_listen(W.b, 0, on_listen, &acc, &l), DMSG_EINVAL);
    cr_assert_eq(dmsg_client_listen(W.b, 80, on_listen, &acc, &l), 0);
    dmsg_listener *l2 = NULL;
    cr_assert_eq(dmsg_client_listen(W.b, 80, on_listen, &acc, &l2), DMSG_EEXIST);
    dmsg_listener_close(l);
    cr_assert_eq(dmsg_client_listen(W.b, 80, on_listen, &acc, &l2), 0, "port freed on close");
}

/* A receiver that takes nothing holds back the sender: no more than one window arrives. */
Test(client, receiver_that_does_not_consume_holds_the_sender_back)
{
    static peer pb;
    pb = (peer){.data_ok = true, .seed = 3, .hold = true};
    static acceptor acc;
    acc = (acceptor){.peers = &pb, .cap = 1, .take = true};
    dmsg_listener *l = NULL;
    cr_assert_eq(dmsg_client_listen(W.b, 80, on_listen, &acc, &l), 0);
    wait_sessions();
    static peer pa;
    pa = (peer){.data_ok = true};
    dmsg_addr dst = {.pk = *dmsg_client_pk(W.b), .port = 80};
    cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pa), 0);
    cr_assert(run_until(&pa.dialed, 5000));
    cr_assert_eq(pa.dial_err, 0);
    pa.send_len = 4u << 20;
    pa.send_seed = 3;
    pace(pa.conn, &pa);
    run_for(500);
    cr_assert(pb.accepted);
    /* B's stream window is 256 KiB; everything beyond waits in A or in the relay. */
    cr_assert_leq(pb.received, 256u * 1024u, "B got %zu bytes without consuming", pb.received);
    cr_assert_gt(pb.received, 0);
    size_t first = pb.received;
    run_for(300);
    cr_assert_eq(pb.received, first, "nothing more arrives while B holds everything");
    /* Taking the bytes opens the window again, and the rest arrives. */
    pb.hold = false;
    dmsg_conn_consume(pb.conn, pb.held);
    pb.held = 0;
    pb.expect = 4u << 20;
    cr_assert(run_until(&pb.closed, 20000), "B got %zu bytes", pb.received);
    cr_assert_eq(pb.received, 4u << 20);
    cr_assert(pb.data_ok);
    cr_assert_eq(pa.sent, 4u << 20);
}

/* Conns wait in the accept queue (bounded like the reference's 20); their early data is kept
 * and handed out after accept. */
Test(client, accept_queue_is_bounded_and_keeps_early_data)
{
    static peer pbs[21];
    memset(pbs, 0, sizeof pbs);
    for (int i = 0; i < 21; i++) {
        pbs[i].data_ok = true;
        pbs[i].seed = 10;
        pbs[i].expect = 1000;
    }
    static acceptor acc;
    acc = (acceptor){.peers = pbs, .cap = 21, .take = false};
    dmsg_listener *l = NULL;
    cr_assert_eq(dmsg_client_listen(W.b, 80, on_listen, &acc, &l), 0);
    wait_sessions();
    static peer pas[21];
    memset(pas, 0, sizeof pas);
    dmsg_addr dst = {.pk = *dmsg_client_pk(W.b), .port = 80};
    for (int i = 0; i < 21; i++) {
        pas[i].data_ok = true;
        cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pas[i]), 0);
        cr_assert(run_until(&pas[i].dialed, 5000), "dial %d", i);
        cr_assert_eq(pas[i].dial_err, 0, "dial %d: %s", i, dmsg_strerror(pas[i].dial_err));
        if (i < 20)
            send_pattern(pas[i].conn, 1000, 10);
    }
    /* The 21st was accepted by B and closed at once, as the reference does. */
    cr_assert(run_until(&pas[20].closed, 5000));
    cr_assert_eq(dmsg_listener_queued(l), 20);
    acc.take = true;
    on_listen(l, &acc);
    cr_assert_eq(acc.n, 20);
    cr_assert_eq(dmsg_listener_queued(l), 0);
    for (int i = 0; i < 20; i++) {
        cr_assert(run_until(&pbs[i].closed, 5000), "conn %d got %zu", i, pbs[i].received);
        cr_assert_eq(pbs[i].received, 1000);
        cr_assert(pbs[i].data_ok);
    }
}

Test(client, many_concurrent_streams)
{
    enum { N = 50, LEN = 100000 };
    static peer pbs[N], pas[N];
    memset(pbs, 0, sizeof pbs);
    memset(pas, 0, sizeof pas);
    for (int i = 0; i < N; i++) {
        pbs[i].data_ok = true;
        pbs[i].seed = 20;
        pbs[i].expect = LEN;
        pas[i].data_ok = true;
    }
    static acceptor acc;
    acc = (acceptor){.peers = pbs, .cap = N, .take = true};
    dmsg_listener *l = NULL;
    cr_assert_eq(dmsg_client_listen(W.b, 80, on_listen, &acc, &l), 0);
    wait_sessions();
    dmsg_addr dst = {.pk = *dmsg_client_pk(W.b), .port = 80};
    for (int i = 0; i < N; i++)
        cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pas[i]), 0);
    for (int i = 0; i < N; i++) {
        cr_assert(run_until(&pas[i].dialed, 10000));
        cr_assert_eq(pas[i].dial_err, 0, "dial %d: %s", i, dmsg_strerror(pas[i].dial_err));
        send_pattern(pas[i].conn, LEN, 20);
    }
    for (int i = 0; i < N; i++) {
        cr_assert(run_until(&pbs[i].closed, 10000), "conn %d got %zu", i, pbs[i].received);
        cr_assert_eq(pbs[i].received, LEN);
        cr_assert(pbs[i].data_ok);
    }
}

Test(client, closing_the_client_closes_its_conns)
{
    static peer pb;
    pb = (peer){.data_ok = true, .seed = 1};
    static acceptor acc;
    acc = (acceptor){.peers = &pb, .cap = 1, .take = true};
    dmsg_listener *l = NULL;
    cr_assert_eq(dmsg_client_listen(W.b, 80, on_listen, &acc, &l), 0);
    wait_sessions();
    static peer pa;
    pa = (peer){.data_ok = true};
    dmsg_addr dst = {.pk = *dmsg_client_pk(W.b), .port = 80};
    cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pa), 0);
    cr_assert(run_until(&pa.dialed, 5000));
    cr_assert_eq(pa.dial_err, 0);
    cr_assert(run_until(&pb.accepted, 5000));
    static peer pending;
    pending = (peer){.data_ok = true};
    dmsg_identity nobody;
    make_identity(&nobody);
    dmsg_addr nowhere = {.pk = nobody.pk, .port = 5};
    cr_assert_eq(dmsg_client_dial(W.a, &nowhere, on_dialed, &pending), 0);
    dmsg_client_close(W.a);
    cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pending), DMSG_ECLOSED);
    cr_assert(run_until(&W.a_closed, 5000));
    cr_assert(pa.closed, "A's conn closed before A's on_close");
    cr_assert(pending.dialed, "pending dials are told");
    cr_assert_neq(pending.dial_err, 0);
    cr_assert(run_until(&pb.closed, 5000), "B's side closes when A goes away");
}

Test(client, reset_reaches_the_peer)
{
    static peer pb;
    pb = (peer){.data_ok = true, .seed = 1};
    static acceptor acc;
    acc = (acceptor){.peers = &pb, .cap = 1, .take = true};
    dmsg_listener *l = NULL;
    cr_assert_eq(dmsg_client_listen(W.b, 80, on_listen, &acc, &l), 0);
    wait_sessions();
    static peer pa;
    pa = (peer){.data_ok = true};
    dmsg_addr dst = {.pk = *dmsg_client_pk(W.b), .port = 80};
    cr_assert_eq(dmsg_client_dial(W.a, &dst, on_dialed, &pa), 0);
    cr_assert(run_until(&pa.dialed, 5000));
    cr_assert(run_until(&pb.accepted, 5000));
    cr_assert_eq(dmsg_conn_reset(pa.conn), 0);
    cr_assert_not(pa.closed, "on_close never runs inside the call");
    cr_assert(run_until(&pa.closed, 5000));
    cr_assert(run_until(&pb.closed, 5000));
}

Test(client, adding_a_held_server_is_refused)
{
    dmsg_server_ref srv = {.pk = W.server_id.pk};
    snprintf(srv.address, sizeof srv.address, "127.0.0.1:%u", (unsigned)server_port(W.server));
    cr_assert_eq(dmsg_client_add_server(W.a, &srv), DMSG_EEXIST);
    dmsg_server_ref bad = {0};
    snprintf(bad.address, sizeof bad.address, "127.0.0.1:1");
    cr_assert_eq(dmsg_client_add_server(W.a, &bad), DMSG_EINVAL, "the null key");
}

/* ---------------------------------------------------------------------------------------------
 * Text forms (no loop needed) */

static const char *const PK_HEX =
    "039366d11f49d387207971fca013c625f02bb7bc17adb48976810d61a3467d3084"; /* keys.json client_a */

Test(client_text, addr_parse)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
    char text[128];
    dmsg_addr a;
    snprintf(text, sizeof text, "%s:80", PK_HEX);
    cr_assert_eq(dmsg_addr_parse(&a, text), 0);
    cr_assert_eq(a.port, 80);
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(&a.pk, hex);
    cr_assert_str_eq(hex, PK_HEX);
    snprintf(text, sizeof text, "%s:65535", PK_HEX);
    cr_assert_eq(dmsg_addr_parse(&a, text), 0);
    cr_assert_eq(a.port, 65535);
    const char *bad_ports[] = {"0", "65536", "", "8o", "-1", "123456", "80 "};
    for (size_t i = 0; i < sizeof bad_ports / sizeof bad_ports[0]; i++) {
        snprintf(text, sizeof text, "%s:%s", PK_HEX, bad_ports[i]);
        cr_assert_eq(dmsg_addr_parse(&a, text), DMSG_EINVAL, "port \"%s\"", bad_ports[i]);
    }
    cr_assert_eq(dmsg_addr_parse(&a, PK_HEX), DMSG_EINVAL, "no port");
    cr_assert_eq(dmsg_addr_parse(&a, "02ab:80"), DMSG_EHEX);
    snprintf(text, sizeof text, "04%s:80", PK_HEX + 2); /* not a compressed key */
    cr_assert_eq(dmsg_addr_parse(&a, text), DMSG_EKEY);
}

Test(client_text, server_ref_parse)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
    char text[DMSG_PK_HEX_LEN + DMSG_CLIENT_ADDRESS_MAX + 128];
    dmsg_server_ref r;
    snprintf(text, sizeof text, "%s@127.0.0.1:8081", PK_HEX);
    cr_assert_eq(dmsg_server_ref_parse(&r, text), 0);
    cr_assert_str_eq(r.address, "127.0.0.1:8081");
    snprintf(text, sizeof text, "%s@[::1]:8081", PK_HEX);
    cr_assert_eq(dmsg_server_ref_parse(&r, text), 0);
    cr_assert_str_eq(r.address, "[::1]:8081");
    snprintf(text, sizeof text, "%s@dmsg.example.org:30080", PK_HEX);
    cr_assert_eq(dmsg_server_ref_parse(&r, text), 0);
    /* Without a key, then with the key and a bad address. */
    cr_assert_eq(dmsg_server_ref_parse(&r, "@127.0.0.1:8081"), DMSG_EHEX);
    cr_assert_eq(dmsg_server_ref_parse(&r, "127.0.0.1:8081"), DMSG_EINVAL);
    const char *bad[] = {"@:8081", "@host", "@host:0", "@host:x", "@host:", "@"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "%s%s", PK_HEX, bad[i]);
        cr_assert_eq(dmsg_server_ref_parse(&r, text), DMSG_EINVAL, "\"%s\"", text);
    }
    char longer[DMSG_CLIENT_ADDRESS_MAX + 100];
    memset(longer, 'a', sizeof longer);
    longer[sizeof longer - 1] = '\0';
    memcpy(longer + sizeof longer - 6, ":8081", 6);
    snprintf(text, sizeof text, "%s@%s", PK_HEX, longer);
    cr_assert_eq(dmsg_server_ref_parse(&r, text), DMSG_EINVAL, "address too long");
}
