/* The server and the relay (daemon/server.c, daemon/relay.c) driven in-process: a server on a
 * loopback port of a private loop, and clients made of the session layer alone that send
 * StreamRequests and StreamResponses built with the wire core, so every byte the relay must
 * forward or refuse is under the test's control. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/session.h"
#include "dmsg/wire.h"
#include "ip_rate.h"
#include "log.h"
#include "relay.h"
#include "server.h"
#include "vectors.h"

#define WINDOW (256u * 1024u)
#define MAX_STREAMS 8

struct harness;
struct client;

/* A client-side stream and everything it received. */
struct pstream {
    struct client *c;
    dmsg_stream *st;
    uint8_t *in;
    size_t in_len, in_cap;
    bool consume;           /* give window credit back as bytes arrive */
    bool fin, closed;
    int close_err;
    size_t written;         /* bytes whose write callback reported success */
    bool listener;          /* opened by the server towards this client */
    bool responded;         /* listener: response sent */
    uint8_t response_raw[1024];
    size_t response_raw_len;
    uint8_t request_raw[1024];  /* listener: the request as it arrived (opened once: replays */
    size_t request_raw_len;     /* of a nonce are refused) */
};

enum listener_mode { LISTEN_ACCEPT, LISTEN_REFUSE, LISTEN_SILENT, LISTEN_BAD_SIGNATURE };

struct client {
    struct harness *h;
    dmsg_identity id;
    dmsg_session *s;
    bool ready, closed;
    int close_err;
    enum listener_mode mode;
    struct pstream streams[MAX_STREAMS];
    size_t n_streams;
};

struct harness {
    uv_loop_t loop;
    dmsg_identity server_id;
    struct dmsgd_log log;
    struct relay *relay;
    struct server *server;
    struct sockaddr_in addr;
    uv_timer_t tick;
    /* Hooks under test */
    bool hide_local;               /* find_local finds nobody: the resolver must */
    dmsg_session *hops[4];         /* what next_hop names, in order */
    size_t n_hops;
    uint32_t hop_timeout_ms;
    int hop_results[4];
    size_t n_hop_results;
    struct pstream *own_taker;     /* own_service takes the stream into this, when set */
    uint16_t own_code;
};

static struct harness H;

/* ---------------------------------------------------------------------------------------------
 * Keys and the loop */

static void key_of(const char *label, dmsg_identity *id)
{
    json_t *v = vec_load("keys.json");
    size_t i;
    json_t *p;
    bool found = false;

    memset(id, 0, sizeof *id);
    json_array_foreach(vec_get(v, "keypairs"), i, p) {
        if (strcmp(json_string_value(json_object_get(p, "label")), label) != 0)
            continue;
        cr_assert_eq(dmsg_sk_from_hex(&id->sk, json_string_value(json_object_get(p, "secret_key")),
                                      DMSG_SK_HEX_LEN), 0);
        cr_assert_eq(dmsg_pk_from_hex(&id->pk, json_string_value(json_object_get(p, "public_key")),
                                      DMSG_PK_HEX_LEN), 0);
        found = true;
    }
    cr_assert(found, "no key %s", label);
    id->rng = dmsg_rng_system();
    json_decref(v);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

typedef bool (*cond_fn)(void *arg);

/* Runs the loop until cond holds or timeout_ms passed; returns cond's last value. */
static bool run_until(cond_fn cond, void *arg, uint64_t timeout_ms)
{
    uint64_t start;

    uv_update_time(&H.loop);
    start = uv_now(&H.loop);
    while (!cond(arg)) {
        uv_update_time(&H.loop);
        if (uv_now(&H.loop) - start > timeout_ms)
            return cond(arg);
        uv_run(&H.loop, UV_RUN_ONCE);
    }
    return true;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void run_for(uint64_t ms)
{
    run_until(never, NULL, ms);
}

static dmsg_session *find_local(void *ctx, const dmsg_pk *pk)
{
    (void)ctx;
    return H.hide_local ? NULL : server_find_session(H.server, pk);
}

static int next_hop(void *ctx, const dmsg_pk *dst, dmsg_session *ingress, unsigned attempt,
                    dmsg_session **hop, uint32_t *timeout_ms)
{
    (void)ctx;
    (void)dst;
    (void)ingress;
    if (attempt >= H.n_hops)
        return DMSG_ENOTFOUND;
    *hop = H.hops[attempt];
    *timeout_ms = H.hop_timeout_ms;
    return 0;
}

static void hop_result(void *ctx, const dmsg_pk *dst, dmsg_session *hop, int result)
{
    (void)ctx;
    (void)dst;
    (void)hop;
    if (H.n_hop_results < 4)
        H.hop_results[H.n_hop_results++] = result;
}

static const dmsg_stream_callbacks pstream_callbacks;

static uint16_t own_service(void *ctx, const struct relay_own_request *req)
{
    (void)ctx;
    if (H.own_taker == NULL)
        return H.own_code;
    H.own_taker->st = req->stream;
    dmsg_stream_set_callbacks(req->stream, &pstream_callbacks, H.own_taker);
    if (req->early_len > 0)
        dmsg_stream_consume(req->stream, req->early_len);
    return 0;
}

static void setup_with(uint32_t max_sessions)
{
    struct relay_limits rl;
    struct relay_hooks rh = {.ctx = NULL, .find_local = find_local, .next_hop = next_hop,
                             .hop_result = hop_result, .own_service = own_service};
    struct server_limits sl;
    char err[256];

    cr_assert_eq(dmsg_cipher_init(), 0);
    memset(&H, 0, sizeof H);
    cr_assert_eq(uv_loop_init(&H.loop), 0);
    key_of("server", &H.server_id);
    log_init(&H.log);
    H.log.level = LOG_LEVEL_ERROR;
    relay_limits_default(&rl);
    cr_assert_eq(relay_init(&H.loop, &H.server_id, &rl, &rh, &H.log, &H.relay), 0);
    memset(&sl, 0, sizeof sl);
    sl.max_sessions = max_sessions;
    sl.max_pending_handshakes = 16;
    sl.max_pending_per_ip = 16;
    sl.max_sessions_per_ip = 64;
    sl.eviction_interval_ms = 0;
    dmsg_session_config_default(&sl.session);
    sl.session.accept_proxy_header = false;
    cr_assert_eq(server_init(&H.loop, &H.server_id, &sl, H.relay, NULL, &H.log, &H.server), 0);
    cr_assert_eq(server_listen(H.server, "127.0.0.1:0", err, sizeof err), 0, "%s", err);
    cr_assert_neq(server_port(H.server), 0);
    uv_ip4_addr("127.0.0.1", server_port(H.server), &H.addr);
    uv_timer_init(&H.loop, &H.tick);
    uv_timer_start(&H.tick, on_tick, 5, 5);
    H.own_code = DMSG_WIRE_REQ_NO_LISTENER;
}

static void setup(void)
{
    setup_with(64);
}

static void set_relay_limits(uint32_t request_ms, uint32_t response_ms)
{
    struct relay_limits rl;

    relay_limits_default(&rl);
    rl.request_timeout_ms = request_ms;
    rl.response_timeout_ms = response_ms;
    relay_set_limits(H.relay, &rl);
}

/* ---------------------------------------------------------------------------------------------
 * Clients */

static void buf_append(struct pstream *p, const uint8_t *data, size_t len)
{
    if (p->in_len + len > p->in_cap) {
        size_t cap = p->in_cap ? p->in_cap : 4096;
        while (cap < p->in_len + len)
            cap *= 2;
        p->in = realloc(p->in, cap);
        cr_assert_not_null(p->in);
        p->in_cap = cap;
    }
    memcpy(p->in + p->in_len, data, len);
    p->in_len += len;
}

static void listener_respond(struct pstream *p);

static void on_pdata(dmsg_stream *st, const uint8_t *data, size_t len, void *ctx)
{
    struct pstream *p = ctx;

    buf_append(p, data, len);
    if (p->consume)
        dmsg_stream_consume(st, len);
    if (p->listener && p->c->mode != LISTEN_SILENT && !p->responded && p->c->s != NULL)
        listener_respond(p);
}

static void on_pfin(dmsg_stream *st, void *ctx)
{
    struct pstream *p = ctx;

    (void)st;
    p->fin = true;
}

static void on_pwritable(dmsg_stream *st, void *ctx)
{
    (void)st;
    (void)ctx;
}

static void on_pclose(dmsg_stream *st, int err, void *ctx)
{
    struct pstream *p = ctx;

    (void)st;
    p->closed = true;
    p->close_err = err;
    p->st = NULL;
}

static const dmsg_stream_callbacks pstream_callbacks = {on_pdata, on_pfin, on_pwritable,
                                                        on_pclose};

static void set_server_limits(uint32_t max_sessions, uint32_t per_ip, uint32_t eviction_ms)
{
    struct server_limits sl;

    memset(&sl, 0, sizeof sl);
    sl.max_sessions = max_sessions;
    sl.max_pending_handshakes = 16;
    sl.max_pending_per_ip = 16;
    sl.max_sessions_per_ip = per_ip;
    sl.eviction_interval_ms = eviction_ms;
    dmsg_session_config_default(&sl.session);
    sl.session.accept_proxy_header = false;
    server_set_limits(H.server, &sl);
}

static struct pstream *new_pstream(struct client *c)
{
    struct pstream *p;

    cr_assert_lt(c->n_streams, MAX_STREAMS);
    p = &c->streams[c->n_streams++];
    memset(p, 0, sizeof *p);
    p->c = c;
    p->consume = true;
    return p;
}

static int on_cready(dmsg_session *s, void *ctx)
{
    struct client *c = ctx;

    (void)s;
    c->ready = true;
    return 0;
}

/* Streams the server opens towards this client: slot 0 is reserved for the dialing side. */
static void on_cstream(dmsg_session *s, dmsg_stream *st, void *ctx)
{
    struct client *c = ctx;
    struct pstream *p;

    (void)s;
    if (c->n_streams == 0)
        c->n_streams = 1;
    p = new_pstream(c);
    p->st = st;
    p->listener = true;
    dmsg_stream_set_callbacks(st, &pstream_callbacks, p);
}

static void on_cclose(dmsg_session *s, int err, void *ctx)
{
    struct client *c = ctx;

    (void)s;
    c->closed = true;
    c->close_err = err;
    c->s = NULL;
}

static const dmsg_session_callbacks client_callbacks = {on_cready, on_cstream, on_cclose};

static bool client_settled(void *arg)
{
    struct client *c = arg;
    return c->ready || c->closed;
}

static void connect_client(struct client *c, const char *label)
{
    dmsg_session_config cfg;

    memset(c, 0, sizeof *c);
    c->h = &H;
    key_of(label, &c->id);
    dmsg_session_config_default(&cfg);
    cr_assert_eq(dmsg_session_connect(&H.loop, (const struct sockaddr *)&H.addr, &c->id,
                                      &H.server_id.pk, &cfg, &client_callbacks, c, &c->s),
                 0);
    run_until(client_settled, c, 5000);
}

static bool server_has(void *arg)
{
    return server_find_session(H.server, arg) != NULL;
}

static void connect_ready(struct client *c, const char *label)
{
    connect_client(c, label);
    cr_assert(c->ready, "client %s did not connect", label);
    cr_assert(run_until(server_has, &c->id.pk, 2000));
}

static void teardown(void)
{
    server_close_sessions(H.server);
    run_for(100);
    server_close(H.server, NULL, NULL);
    relay_close(H.relay, NULL, NULL);
    uv_close((uv_handle_t *)&H.tick, NULL);
    uv_run(&H.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&H.loop), 0, "handles left open");
}

/* ---------------------------------------------------------------------------------------------
 * Objects */

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const uint8_t kk_msg1[49] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

/* A signed request from src (signed with signer's key) to dst:port, in out. */
static size_t make_request(uint8_t *out, size_t cap, const dmsg_pk *src, const dmsg_sk *signer,
                           const dmsg_pk *dst, uint16_t port, bool ip_info)
{
    dmsg_stream_request req;
    size_t len = 0;

    memset(&req, 0, sizeof req);
    req.src.pk = *src;
    req.src.port = 49153;
    req.dst.pk = *dst;
    req.dst.port = port;
    req.ip_info = ip_info;
    req.noise_msg.ptr = kk_msg1;
    req.noise_msg.len = sizeof kk_msg1;
    cr_assert_eq(dmsg_stream_request_make(&req, now_ns(), signer, out, cap, &len), 0);
    return len;
}

static void write_sealed(struct client *c, dmsg_stream *st, const uint8_t *obj, size_t len)
{
    uint8_t sealed[4096];
    size_t n = 0;

    cr_assert_eq(dmsg_session_seal_object(c->s, obj, len, sealed, sizeof sealed, &n), 0);
    cr_assert_eq(dmsg_stream_write(st, sealed, n, NULL, NULL), 0);
}

/* Opens a stream on c (slot 0) and sends obj sealed on it. */
static struct pstream *dial_raw(struct client *c, const uint8_t *obj, size_t len)
{
    struct pstream *p = &c->streams[0];

    if (c->n_streams == 0)
        c->n_streams = 1;
    memset(p, 0, sizeof *p);
    p->c = c;
    p->consume = true;
    cr_assert_eq(dmsg_session_open_stream(c->s, &pstream_callbacks, p, &p->st), 0);
    if (obj != NULL)
        write_sealed(c, p->st, obj, len);
    return p;
}

/* Opens the first object a stream received (u16 length, then the sealed body). */
static bool first_object(struct client *c, struct pstream *p, uint8_t **obj, size_t *obj_len,
                         size_t *frame_len)
{
    size_t body;

    if (p->in_len < 2)
        return false;
    body = ((size_t)p->in[0] << 8) | p->in[1];
    if (p->in_len < 2 + body)
        return false;
    *frame_len = 2 + body;
    return dmsg_session_open_object(c->s, p->in + 2, body, obj, obj_len) == 0;
}

static void listener_respond(struct pstream *p)
{
    struct client *c = p->c;
    dmsg_stream_request req;
    dmsg_stream_response resp;
    uint8_t copy[4096];
    uint8_t *obj;
    size_t obj_len, frame_len, len = 0;
    uint16_t code = 0;

    if (p->in_len < 2 || p->in_len < 2 + (((size_t)p->in[0] << 8) | p->in[1]))
        return;
    memcpy(copy, p->in, p->in_len < sizeof copy ? p->in_len : sizeof copy);
    {
        size_t body = ((size_t)copy[0] << 8) | copy[1];
        cr_assert_eq(dmsg_session_open_object(c->s, copy + 2, body, &obj, &obj_len), 0);
        frame_len = 2 + body;
    }
    (void)frame_len;
    cr_assert_leq(obj_len, sizeof p->request_raw);
    memcpy(p->request_raw, obj, obj_len);
    p->request_raw_len = obj_len;
    cr_assert_eq(dmsg_stream_request_parse(&req, obj, obj_len, &code), 0);
    cr_assert_eq(dmsg_stream_request_verify(&req, NULL, &c->id.pk, &code), 0, "code %u", code);
    memset(&resp, 0, sizeof resp);
    dmsg_signed_object_hash(resp.req_hash, req.raw, req.raw_len);
    resp.accepted = c->mode != LISTEN_REFUSE;
    resp.err_code = c->mode == LISTEN_REFUSE ? DMSG_WIRE_REQ_NO_LISTENER : 0;
    resp.noise_msg.ptr = kk_msg1;
    resp.noise_msg.len = sizeof kk_msg1;
    cr_assert_eq(dmsg_stream_response_make(&resp, &c->id.sk, p->response_raw,
                                           sizeof p->response_raw, &len), 0);
    if (c->mode == LISTEN_BAD_SIGNATURE)
        p->response_raw[5] ^= 1;
    p->response_raw_len = len;
    p->responded = true;
    write_sealed(c, p->st, p->response_raw, len);
}

/* ---------------------------------------------------------------------------------------------
 * Conditions */

static bool stream_ended(void *arg)
{
    struct pstream *p = arg;
    return p->fin || p->closed;
}

static bool stream_closed(void *arg)
{
    struct pstream *p = arg;
    return p->closed;
}

struct want_bytes {
    struct pstream *p;
    size_t n;
};

static bool has_bytes(void *arg)
{
    struct want_bytes *w = arg;
    return w->p->in_len >= w->n;
}

static uint64_t counter(enum relay_counter c)
{
    struct relay_stats st;

    relay_get_stats(H.relay, &st);
    return st.counters[c];
}

TestSuite(relay, .init = setup, .fini = teardown, .timeout = 60);

/* ---------------------------------------------------------------------------------------------
 * The happy path */

static struct client A, B, C;

/* A dials B:80; returns A's stream once the response arrived. */
static struct pstream *establish(uint8_t *req, size_t *req_len)
{
    struct pstream *pa;
    struct want_bytes w;
    uint8_t *obj;
    size_t obj_len, frame_len;
    dmsg_stream_request parsed;
    dmsg_stream_response resp;
    uint16_t code = 0;

    *req_len = make_request(req, 1024, &A.id.pk, &A.id.sk, &B.id.pk, 80, false);
    pa = dial_raw(&A, req, *req_len);
    w.p = pa;
    w.n = 2;
    cr_assert(run_until(has_bytes, &w, 5000), "no response reached the dialer");
    w.n = 2 + (((size_t)pa->in[0] << 8) | pa->in[1]);
    cr_assert(run_until(has_bytes, &w, 5000));
    cr_assert(first_object(&A, pa, &obj, &obj_len, &frame_len));
    /* The destination's SignedObject, byte for byte. */
    cr_assert_eq(B.n_streams, 2);
    cr_assert_eq(obj_len, B.streams[1].response_raw_len);
    cr_assert_eq(memcmp(obj, B.streams[1].response_raw, obj_len), 0);
    cr_assert_eq(dmsg_stream_request_parse(&parsed, req, *req_len, &code), 0);
    cr_assert_eq(dmsg_stream_response_parse(&resp, obj, obj_len, &code), 0);
    cr_assert_eq(dmsg_stream_response_verify(&resp, &parsed, &code), 0, "code %u", code);
    pa->in_len -= frame_len;
    memmove(pa->in, pa->in + frame_len, pa->in_len);
    return pa;
}

Test(relay, request_and_response_are_forwarded_verbatim_then_data_flows)
{
    uint8_t req[1024];
    size_t req_len;
    struct pstream *pa, *pb;
    struct want_bytes w;
    static uint8_t big[3 * WINDOW + 12345];

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    pa = establish(req, &req_len);
    pb = &B.streams[1];
    /* The listener got the dialer's SignedObject byte for byte. */
    cr_assert_eq(pb->request_raw_len, req_len);
    cr_assert_eq(memcmp(pb->request_raw, req, req_len), 0);
    pb->in_len = 0;

    /* More than a window each way, in pieces the windows force apart. */
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 131 + (i >> 9));
    cr_assert_eq(dmsg_stream_write(pa->st, big, sizeof big, NULL, NULL), 0);
    w.p = pb;
    w.n = sizeof big;
    cr_assert(run_until(has_bytes, &w, 10000), "got %zu of %zu", pb->in_len, sizeof big);
    cr_assert_eq(memcmp(pb->in, big, sizeof big), 0);
    cr_assert_eq(dmsg_stream_write(pb->st, big, 1000, NULL, NULL), 0);
    w.p = pa;
    w.n = 1000;
    cr_assert(run_until(has_bytes, &w, 5000));
    cr_assert_eq(memcmp(pa->in, big, 1000), 0);
    cr_assert_eq(counter(RELAY_ESTABLISHED), 1);

    /* A FIN on one side closes both. */
    cr_assert_eq(dmsg_stream_close(pa->st), 0);
    cr_assert(run_until(stream_ended, pb, 5000), "the listener never saw the end");
    cr_assert(pb->fin);
    cr_assert(run_until(stream_closed, pa, 5000), "the dialer's stream never finished");
    cr_assert_eq(counter(RELAY_CLOSED_FIN), 1);
}

Test(relay, reset_propagates)
{
    uint8_t req[1024];
    size_t req_len;
    struct pstream *pa, *pb;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    pa = establish(req, &req_len);
    pb = &B.streams[1];
    cr_assert_eq(dmsg_stream_reset(pa->st), 0);
    cr_assert(run_until(stream_closed, pb, 5000));
    cr_assert_eq(pb->close_err, DMSG_ERESET);
    cr_assert_eq(counter(RELAY_CLOSED_RESET), 1);
}

Test(relay, a_dying_session_ends_the_other_side)
{
    uint8_t req[1024];
    size_t req_len;
    struct pstream *pb;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    establish(req, &req_len);
    pb = &B.streams[1];
    dmsg_session_close(A.s, 0);
    cr_assert(run_until(stream_ended, pb, 5000));
}

/* A receiver that never reads: the sender is held back after about two windows (one at the
 * receiver, at most one in the server), never more. */
Test(relay, slow_receiver_holds_the_sender_back)
{
    uint8_t req[1024];
    size_t req_len;
    struct pstream *pa, *pb;
    static uint8_t chunk[64 * 1024];
    size_t queued_total = 0;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    pa = establish(req, &req_len);
    pb = &B.streams[1];
    pb->in_len = 0;
    pb->consume = false;
    memset(chunk, 0x5a, sizeof chunk);
    for (int round = 0; round < 40; round++) {
        /* Keep one window queued at the sender, as the client library does. */
        while (dmsg_stream_write_queued(pa->st) < WINDOW) {
            cr_assert_eq(dmsg_stream_write(pa->st, chunk, sizeof chunk, NULL, NULL), 0);
            queued_total += sizeof chunk;
        }
        run_for(25);
    }
    {
        size_t left_sender = queued_total - dmsg_stream_write_queued(pa->st);
        cr_assert_leq(pb->in_len, WINDOW, "the receiver got more than its window");
        cr_assert_leq(left_sender, 2 * WINDOW + sizeof chunk,
                      "%zu bytes left the sender: the relay buffered more than one window",
                      left_sender);
        cr_assert_geq(pb->in_len, WINDOW / 2, "data should flow up to the window");
    }
    /* Reading resumes the flow. */
    pb->consume = true;
    dmsg_stream_consume(pb->st, pb->in_len);
    {
        struct want_bytes w = {pb, WINDOW + 1};
        cr_assert(run_until(has_bytes, &w, 5000));
    }
}

/* ---------------------------------------------------------------------------------------------
 * Newer clients */

Test(relay, ping_marker_is_echoed_and_the_stream_closed)
{
    static const uint8_t marker[2] = {0, 0};
    struct pstream *pa;
    struct want_bytes w;

    connect_ready(&A, "client_a");
    pa = dial_raw(&A, NULL, 0);
    cr_assert_eq(dmsg_stream_write(pa->st, marker, 2, NULL, NULL), 0);
    w.p = pa;
    w.n = 2;
    cr_assert(run_until(has_bytes, &w, 5000));
    cr_assert_eq(pa->in_len, 2);
    cr_assert_eq(pa->in[0], 0);
    cr_assert_eq(pa->in[1], 0);
    cr_assert(run_until(stream_ended, pa, 5000));
    cr_assert(pa->fin);
    cr_assert_eq(counter(RELAY_PINGS), 1);
}

Test(relay, ipinfo_to_our_key_is_answered_with_the_clients_ip)
{
    uint8_t req[1024];
    size_t req_len;
    struct pstream *pa;
    struct want_bytes w;
    uint8_t *obj;
    size_t obj_len, frame_len;
    dmsg_stream_request parsed;
    dmsg_stream_response resp;
    uint16_t code = 0;

    connect_ready(&A, "client_a");
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &H.server_id.pk, 1, true);
    pa = dial_raw(&A, req, req_len);
    w.p = pa;
    w.n = 3;
    cr_assert(run_until(has_bytes, &w, 5000));
    cr_assert(run_until(stream_ended, pa, 5000));
    cr_assert(first_object(&A, pa, &obj, &obj_len, &frame_len));
    cr_assert_eq(dmsg_stream_request_parse(&parsed, req, req_len, &code), 0);
    cr_assert_eq(dmsg_stream_response_parse(&resp, obj, obj_len, &code), 0);
    /* Signed by the server, whose key is the destination. */
    cr_assert_eq(dmsg_stream_response_verify(&resp, &parsed, &code), 0, "code %u", code);
    cr_assert(resp.accepted);
    cr_assert_eq(resp.ip.len, strlen("127.0.0.1"));
    cr_assert_eq(memcmp(resp.ip.ptr, "127.0.0.1", resp.ip.len), 0);
    cr_assert_eq(counter(RELAY_IPINFO), 1);
}

Test(relay, other_requests_to_our_key_are_refused_with_306_signed_by_us)
{
    uint8_t req[1024];
    size_t req_len;
    struct pstream *pa;
    uint8_t *obj;
    size_t obj_len, frame_len;
    dmsg_stream_request parsed;
    dmsg_stream_response resp;
    uint16_t code = 0;

    connect_ready(&A, "client_a");
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &H.server_id.pk, 36, false);
    pa = dial_raw(&A, req, req_len);
    cr_assert(run_until(stream_ended, pa, 5000));
    cr_assert(pa->fin);
    cr_assert(first_object(&A, pa, &obj, &obj_len, &frame_len));
    cr_assert_eq(dmsg_stream_request_parse(&parsed, req, req_len, &code), 0);
    cr_assert_eq(dmsg_stream_response_parse(&resp, obj, obj_len, &code), 0);
    cr_assert_eq(dmsg_stream_response_verify(&resp, &parsed, &code), DMSG_EWIRE);
    cr_assert_eq(code, DMSG_WIRE_REQ_NO_LISTENER);
    cr_assert_eq(counter(RELAY_OWN_REFUSED), 1);
}

/* ---------------------------------------------------------------------------------------------
 * Failures: the dialer's stream is closed at once, with no data */

static void expect_refused_at_once(struct pstream *pa, enum relay_counter why)
{
    cr_assert(run_until(stream_ended, pa, 3000), "the dialer's stream was left hanging");
    cr_assert(pa->fin || pa->closed);
    cr_assert_eq(pa->in_len, 0, "nothing but the close may reach a refused dialer");
    cr_assert_eq(counter(why), 1, "counter %s", relay_counter_name(why));
}

Test(relay, unknown_destination_is_closed_at_once)
{
    uint8_t req[1024];
    size_t req_len;

    connect_ready(&A, "client_a");
    key_of("client_b", &B.id); /* B never connects */
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &B.id.pk, 80, false);
    expect_refused_at_once(dial_raw(&A, req, req_len), RELAY_FAIL_NO_DESTINATION);
}

Test(relay, source_key_must_be_the_sessions)
{
    uint8_t req[1024];
    size_t req_len;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    /* A valid request of B's, replayed by A on A's own session. */
    req_len = make_request(req, sizeof req, &B.id.pk, &B.id.sk, &B.id.pk, 80, false);
    expect_refused_at_once(dial_raw(&A, req, req_len), RELAY_FAIL_SOURCE_KEY);
    cr_assert_eq(B.n_streams, 0, "nothing reached the destination");
}

Test(relay, forged_signature_is_refused)
{
    uint8_t req[1024];
    size_t req_len;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &B.id.pk, 80, false);
    req[10] ^= 0x01; /* inside r */
    expect_refused_at_once(dial_raw(&A, req, req_len), RELAY_FAIL_SIGNATURE);
}

Test(relay, garbage_object_is_refused)
{
    uint8_t junk[200];

    connect_ready(&A, "client_a");
    memset(junk, 0x41, sizeof junk);
    expect_refused_at_once(dial_raw(&A, junk, sizeof junk), RELAY_FAIL_INVALID_REQUEST);
}

Test(relay, object_that_does_not_open_is_refused)
{
    static const uint8_t frame[] = {0x00, 0x60}; /* 96 bytes of body follow, none sealed */
    uint8_t body[96];
    struct pstream *pa;

    connect_ready(&A, "client_a");
    pa = dial_raw(&A, NULL, 0);
    memset(body, 7, sizeof body);
    cr_assert_eq(dmsg_stream_write(pa->st, frame, sizeof frame, NULL, NULL), 0);
    cr_assert_eq(dmsg_stream_write(pa->st, body, sizeof body, NULL, NULL), 0);
    expect_refused_at_once(pa, RELAY_FAIL_DECRYPT);
}

Test(relay, tiny_object_length_is_refused)
{
    static const uint8_t frame[] = {0x00, 0x05, 1, 2, 3, 4, 5};
    struct pstream *pa;

    connect_ready(&A, "client_a");
    pa = dial_raw(&A, NULL, 0);
    cr_assert_eq(dmsg_stream_write(pa->st, frame, sizeof frame, NULL, NULL), 0);
    expect_refused_at_once(pa, RELAY_FAIL_OBJECT_SIZE);
}

Test(relay, silent_dialer_is_cut_off_after_the_request_deadline)
{
    struct pstream *pa;

    set_relay_limits(300, 20000);
    connect_ready(&A, "client_a");
    pa = dial_raw(&A, NULL, 0);
    cr_assert(run_until(stream_ended, pa, 3000));
    cr_assert_eq(counter(RELAY_FAIL_REQUEST_TIMEOUT), 1);
}

Test(relay, silent_destination_is_given_up_after_the_response_deadline)
{
    uint8_t req[1024];
    size_t req_len;
    struct pstream *pa;

    set_relay_limits(10000, 300);
    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    B.mode = LISTEN_SILENT;
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &B.id.pk, 80, false);
    pa = dial_raw(&A, req, req_len);
    cr_assert(run_until(stream_ended, pa, 3000));
    cr_assert_eq(pa->in_len, 0);
    cr_assert_eq(counter(RELAY_FAIL_RESPONSE_TIMEOUT), 1);
    /* The stream towards the destination is closed too. */
    cr_assert(run_until(stream_ended, &B.streams[1], 3000));
}

Test(relay, refusing_destination_closes_the_dialer)
{
    uint8_t req[1024];
    size_t req_len;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    B.mode = LISTEN_REFUSE;
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &B.id.pk, 80, false);
    struct pstream *pa = dial_raw(&A, req, req_len);
    cr_assert(run_until(stream_ended, pa, 3000), "the dialer's stream was left hanging");
    cr_assert(pa->fin || pa->closed);
    cr_assert_eq(counter(RELAY_FAIL_REFUSED), 1);
    /* The destination's signed refusal reaches the dialer verbatim, so it fails with the
     * reason (306) at once. */
    uint8_t *obj;
    size_t obj_len, frame_len;
    dmsg_stream_request parsed;
    dmsg_stream_response resp;
    uint16_t code = 0;
    cr_assert(first_object(&A, pa, &obj, &obj_len, &frame_len), "the refusal was not forwarded");
    cr_assert_eq(obj_len, B.streams[1].response_raw_len);
    cr_assert_eq(memcmp(obj, B.streams[1].response_raw, obj_len), 0);
    cr_assert_eq(dmsg_stream_request_parse(&parsed, req, req_len, &code), 0);
    cr_assert_eq(dmsg_stream_response_parse(&resp, obj, obj_len, &code), 0);
    cr_assert_eq(dmsg_stream_response_verify(&resp, &parsed, &code), DMSG_EWIRE);
    cr_assert_eq(code, DMSG_WIRE_REQ_NO_LISTENER);
    cr_assert_eq(pa->in_len, frame_len, "nothing may follow the refusal");
}

Test(relay, response_with_a_bad_signature_is_not_forwarded)
{
    uint8_t req[1024];
    size_t req_len;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    B.mode = LISTEN_BAD_SIGNATURE;
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &B.id.pk, 80, false);
    expect_refused_at_once(dial_raw(&A, req, req_len), RELAY_FAIL_RESPONSE_INVALID);
}

Test(relay, dialer_leaving_before_the_response_closes_the_destination_stream)
{
    uint8_t req[1024];
    size_t req_len;
    struct pstream *pa;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    B.mode = LISTEN_SILENT;
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &B.id.pk, 80, false);
    pa = dial_raw(&A, req, req_len);
    run_for(200);
    cr_assert_eq(B.n_streams, 2, "the request reached the destination");
    cr_assert_eq(dmsg_stream_reset(pa->st), 0);
    cr_assert(run_until(stream_ended, &B.streams[1], 3000));
    cr_assert_eq(counter(RELAY_FAIL_DIALER_GONE), 1);
}

/* ---------------------------------------------------------------------------------------------
 * The session table */

static struct client A2;

Test(relay, newest_session_of_a_key_wins)
{
    connect_ready(&A, "client_a");
    connect_client(&A2, "client_a");
    cr_assert(A2.ready);
    cr_assert(run_until(client_settled, &A, 100));
    {
        bool old_closed = false;
        for (int i = 0; i < 200 && !old_closed; i++) {
            run_for(10);
            old_closed = A.closed;
        }
        cr_assert(old_closed, "the older session must be closed");
    }
    cr_assert_eq(server_session_count(H.server), 1);
    /* The table points at the newcomer: a request from it is served. */
    {
        uint8_t req[1024];
        size_t req_len = make_request(req, sizeof req, &A2.id.pk, &A2.id.sk, &H.server_id.pk, 1,
                                      true);
        struct pstream *p = dial_raw(&A2, req, req_len);
        cr_assert(run_until(stream_ended, p, 3000));
        cr_assert_gt(p->in_len, 2);
    }
    dmsg_session_close(A2.s, 0);
    run_for(50);
}

Test(relay, max_sessions_closes_newcomers_before_the_handshake)
{
    struct server_stats st;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    /* The harness allows 64; lower it to what is in use. */
    {
        struct server_limits sl;
        memset(&sl, 0, sizeof sl);
        sl.max_sessions = 2;
        sl.max_pending_handshakes = 16;
        sl.max_pending_per_ip = 16;
        sl.max_sessions_per_ip = 64;
        dmsg_session_config_default(&sl.session);
        sl.session.accept_proxy_header = false;
        server_set_limits(H.server, &sl);
    }
    connect_client(&C, "one");
    cr_assert(C.closed, "a third session must be refused");
    cr_assert_not(C.ready);
    server_get_stats(H.server, &st);
    cr_assert_eq(st.counters[SERVER_REJECTED_FULL], 1);
    cr_assert_eq(st.established, 2);
    /* The others keep working. */
    {
        uint8_t req[1024];
        size_t req_len;
        establish(req, &req_len);
    }
}

Test(relay, per_ip_cap_closes_newcomers)
{
    struct server_stats st;

    set_server_limits(64, 1, 0);
    connect_ready(&A, "client_a");
    connect_client(&B, "client_b");
    cr_assert(B.closed);
    cr_assert_not(B.ready);
    server_get_stats(H.server, &st);
    cr_assert_eq(st.counters[SERVER_REJECTED_IP], 1);
}

static struct client A3;

Test(relay, a_key_replaces_its_session_at_most_once_per_interval)
{
    struct server_stats st;

    set_server_limits(64, 64, 60000);
    connect_ready(&A, "client_a");
    connect_client(&A2, "client_a"); /* replaces A */
    cr_assert(A2.ready);
    connect_client(&A3, "client_a"); /* too soon: refused, A2 stays */
    for (int i = 0; i < 100 && !A3.closed; i++)
        run_for(10);
    cr_assert(A3.closed);
    cr_assert_not(A2.closed);
    server_get_stats(H.server, &st);
    cr_assert_eq(st.counters[SERVER_EVICTED], 1);
    cr_assert_eq(st.counters[SERVER_EVICTIONS_REFUSED], 1);
    cr_assert_eq(server_session_count(H.server), 1);
    cr_assert_not_null(server_find_session(H.server, &A2.id.pk));
}

Test(relay, drain_refuses_newcomers_and_keeps_streams)
{
    uint8_t req[1024];
    size_t req_len;
    struct pstream *pa, *pb;
    struct want_bytes w;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    pa = establish(req, &req_len);
    pb = &B.streams[1];
    pb->in_len = 0;
    server_drain(H.server);
    run_for(50);
    connect_client(&C, "one");
    cr_assert(C.closed, "no new session while draining");
    cr_assert_eq(server_stream_count(H.server), 2);
    cr_assert_eq(dmsg_stream_write(pa->st, (const uint8_t *)"still here", 10, NULL, NULL), 0);
    w.p = pb;
    w.n = 10;
    cr_assert(run_until(has_bytes, &w, 3000));
    cr_assert_eq(memcmp(pb->in, "still here", 10), 0);
}

Test(relay, pending_request_cap_resets_extra_streams)
{
    struct relay_limits rl;
    struct pstream *p[3];

    relay_limits_default(&rl);
    rl.max_pending_requests = 2;
    relay_set_limits(H.relay, &rl);
    connect_ready(&A, "client_a");
    A.n_streams = 1;
    for (int i = 0; i < 3; i++) {
        p[i] = new_pstream(&A);
        cr_assert_eq(dmsg_session_open_stream(A.s, &pstream_callbacks, p[i], &p[i]->st), 0);
    }
    cr_assert(run_until(stream_closed, p[2], 3000));
    cr_assert_eq(p[2]->close_err, DMSG_ERESET);
    cr_assert_not(p[0]->closed);
    cr_assert_not(p[1]->closed);
    cr_assert_eq(counter(RELAY_FAIL_PENDING), 1);
}

Test(relay, request_rate_is_limited_per_session)
{
    struct relay_limits rl;
    struct pstream *p[2];

    relay_limits_default(&rl);
    rl.requests_per_second = 1;
    rl.requests_burst = 1;
    relay_set_limits(H.relay, &rl);
    connect_ready(&A, "client_a");
    A.n_streams = 1;
    for (int i = 0; i < 2; i++) {
        p[i] = new_pstream(&A);
        cr_assert_eq(dmsg_session_open_stream(A.s, &pstream_callbacks, p[i], &p[i]->st), 0);
    }
    cr_assert(run_until(stream_closed, p[1], 3000));
    cr_assert_eq(p[1]->close_err, DMSG_ERESET);
    cr_assert_not(p[0]->closed);
    cr_assert_eq(counter(RELAY_FAIL_RATE), 1);
}

Test(relay, dialer_flooding_before_the_response_is_cut_off)
{
    uint8_t req[1024];
    size_t req_len;
    static uint8_t flood[70000];
    struct pstream *pa;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    B.mode = LISTEN_SILENT;
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &B.id.pk, 80, false);
    pa = dial_raw(&A, req, req_len);
    cr_assert_eq(dmsg_stream_write(pa->st, flood, sizeof flood, NULL, NULL), 0);
    cr_assert(run_until(stream_ended, pa, 3000));
    cr_assert_eq(counter(RELAY_FAIL_EARLY_BYTES), 1);
}

/* The destination resolver (the mesh's seam): a silent hop is given up after its deadline and
 * the next one delivers. */
Test(relay, resolver_hops_are_tried_in_turn)
{
    uint8_t req[1024];
    size_t req_len;
    struct pstream *pa;
    struct want_bytes w;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    connect_ready(&C, "one");
    C.mode = LISTEN_SILENT;
    H.hide_local = true;
    /* The server's own sessions to C and B (clients see only their end). */
    H.hops[0] = server_find_session(H.server, &C.id.pk);
    H.hops[1] = server_find_session(H.server, &B.id.pk);
    H.n_hops = 2;
    H.hop_timeout_ms = 300;
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &B.id.pk, 80, false);
    pa = dial_raw(&A, req, req_len);
    w.p = pa;
    w.n = 100;
    cr_assert(run_until(has_bytes, &w, 3000), "the second hop should deliver");
    cr_assert_eq(counter(RELAY_ESTABLISHED), 1);
    cr_assert_eq(H.n_hop_results, 2);
    cr_assert_eq(H.hop_results[0], DMSG_ETIMEOUT);
    cr_assert_eq(H.hop_results[1], 0);
    cr_assert(run_until(stream_ended, &C.streams[1], 3000), "the abandoned hop stream is reset");
}

Test(relay, resolver_with_nothing_left_closes_the_dialer)
{
    uint8_t req[1024];
    size_t req_len;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    H.hide_local = true;
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &B.id.pk, 80, false);
    expect_refused_at_once(dial_raw(&A, req, req_len), RELAY_FAIL_NO_DESTINATION);
}

/* Requests from a trusted peer session may carry another source, and are delivered locally
 * only: never handed to the resolver. */
static void mark_peer(dmsg_session *s, struct relay_session *rs, void *arg)
{
    if (s == arg)
        rs->is_peer = true;
}

Test(relay, peer_sessions_may_carry_foreign_sources)
{
    uint8_t req[1024];
    size_t req_len;
    struct pstream *pa;
    struct want_bytes w;
    dmsg_identity other;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    server_foreach_session(H.server, mark_peer, server_find_session(H.server, &A.id.pk));
    key_of("one", &other); /* a client of the peer server, not connected here */
    req_len = make_request(req, sizeof req, &other.pk, &other.sk, &B.id.pk, 80, false);
    pa = dial_raw(&A, req, req_len);
    w.p = pa;
    w.n = 100;
    cr_assert(run_until(has_bytes, &w, 3000));
    cr_assert_eq(counter(RELAY_ESTABLISHED), 1);
    cr_assert_eq(B.streams[1].request_raw_len, req_len);
    cr_assert_eq(memcmp(B.streams[1].request_raw, req, req_len), 0);
}

Test(relay, peer_requests_are_never_forwarded_again)
{
    uint8_t req[1024];
    size_t req_len;
    dmsg_identity other;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    server_foreach_session(H.server, mark_peer, server_find_session(H.server, &A.id.pk));
    H.hide_local = true; /* B is "elsewhere"; the resolver could reach it, but must not */
    H.hops[0] = server_find_session(H.server, &B.id.pk);
    H.n_hops = 1;
    H.hop_timeout_ms = 1000;
    key_of("one", &other);
    req_len = make_request(req, sizeof req, &other.pk, &other.sk, &B.id.pk, 80, false);
    expect_refused_at_once(dial_raw(&A, req, req_len), RELAY_FAIL_NO_DESTINATION);
    cr_assert_eq(H.n_hop_results, 0);
    cr_assert_eq(B.n_streams, 0);
}

Test(relay, relayed_ipinfo_is_refused)
{
    uint8_t req[1024];
    size_t req_len;
    dmsg_identity other;

    connect_ready(&A, "client_a");
    server_foreach_session(H.server, mark_peer, server_find_session(H.server, &A.id.pk));
    key_of("one", &other);
    req_len = make_request(req, sizeof req, &other.pk, &other.sk, &H.server_id.pk, 1, true);
    expect_refused_at_once(dial_raw(&A, req, req_len), RELAY_FAIL_SOURCE_KEY);
}

Test(relay, own_key_service_hook_takes_the_stream)
{
    uint8_t req[1024];
    size_t req_len;
    static struct pstream taken;
    struct pstream *pa;
    struct want_bytes w;

    connect_ready(&A, "client_a");
    memset(&taken, 0, sizeof taken);
    taken.c = &A;
    taken.consume = true;
    H.own_taker = &taken;
    req_len = make_request(req, sizeof req, &A.id.pk, &A.id.sk, &H.server_id.pk, 36, false);
    pa = dial_raw(&A, req, req_len);
    run_for(100);
    cr_assert_eq(counter(RELAY_OWN_SERVICE), 1);
    cr_assert_not_null(taken.st);
    cr_assert_eq(dmsg_stream_write(pa->st, (const uint8_t *)"hello", 5, NULL, NULL), 0);
    w.p = &taken;
    w.n = 5;
    cr_assert(run_until(has_bytes, &w, 3000));
    cr_assert_eq(memcmp(taken.in, "hello", 5), 0);
    dmsg_stream_reset(taken.st);
    run_for(50);
    free(taken.in);
}

/* ---------------------------------------------------------------------------------------------
 * Handshake rate under load (threats.md N7). The session layer cannot bind a source address, so
 * the loading address is 127.0.0.2 (raw sockets) and the well-behaved client is 127.0.0.1. */

#define HELD 4
#define FLOOD 30

static int raw_connect_from(const char *ip)
{
    struct sockaddr_in src;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0);
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    cr_assert_eq(inet_pton(AF_INET, ip, &src.sin_addr), 1);
    cr_assert_eq(bind(fd, (const struct sockaddr *)&src, sizeof src), 0, "bind %s: %s", ip,
                 strerror(errno));
    /* Loopback connects complete in the kernel's backlog, before the server's loop runs. */
    cr_assert_eq(connect(fd, (const struct sockaddr *)&H.addr, sizeof H.addr), 0);
    cr_assert_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    return fd;
}

/* The server closed fd without sending anything. */
static bool raw_closed(int fd)
{
    uint8_t b;
    ssize_t n = recv(fd, &b, 1, 0);

    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static size_t raw_count_closed(const int *fds, size_t n)
{
    size_t closed = 0;

    for (size_t i = 0; i < n; i++)
        closed += raw_closed(fds[i]);
    return closed;
}

static uint64_t server_counter(enum server_counter c)
{
    struct server_stats st;

    server_get_stats(H.server, &st);
    return st.counters[c];
}

static bool pending_at_least(void *arg)
{
    struct server_stats st;

    server_get_stats(H.server, &st);
    return st.pending >= *(const uint32_t *)arg;
}

static bool rate_refusals_closed(void *arg)
{
    uint64_t refused = server_counter(SERVER_REJECTED_RATE);

    return refused > 0 && raw_count_closed(arg, FLOOD) >= refused;
}

/* Puts the server under handshake load with HELD stalled handshakes from 127.0.0.2.
 * max_pending_handshakes 16: load is 2 pending for 1 s. A long handshake deadline keeps every
 * admitted connection open, so every socket found closed was closed by the rate. */
static void hold_load(int held[HELD])
{
    struct server_limits sl;
    uint32_t want = HELD;

    memset(&sl, 0, sizeof sl);
    sl.max_sessions = 64;
    sl.max_pending_handshakes = 16;
    sl.max_pending_per_ip = 16;
    sl.max_sessions_per_ip = 64;
    dmsg_session_config_default(&sl.session);
    sl.session.accept_proxy_header = false;
    sl.session.handshake_timeout_ms = 30000;
    server_set_limits(H.server, &sl);
    for (size_t i = 0; i < HELD; i++)
        held[i] = raw_connect_from("127.0.0.2");
    cr_assert(run_until(pending_at_least, &want, 3000), "stalled handshakes not accepted");
    cr_assert_eq(server_counter(SERVER_REJECTED_RATE), 0, "no rate before the load is held");
    run_for(IP_RATE_LOAD_HOLD_MS + 200);
}

Test(relay, under_handshake_load_an_ip_over_its_rate_is_closed_and_others_connect)
{
    int held[HELD], flood[FLOOD];
    uint64_t refused;

    hold_load(held);

    /* Queued together, the flood is accepted in one loop turn: the burst passes, the rest is
     * over the rate however slow the machine. */
    for (size_t i = 0; i < FLOOD; i++)
        flood[i] = raw_connect_from("127.0.0.2");
    cr_assert(run_until(rate_refusals_closed, flood, 5000), "no connection refused for rate");
    refused = server_counter(SERVER_REJECTED_RATE);
    cr_assert_geq(refused, FLOOD / 2);
    cr_assert_leq(refused, FLOOD - IP_RATE_BURST, "the burst must pass");
    cr_assert_eq(raw_count_closed(flood, FLOOD), refused, "refused = closed at once");
    cr_assert_eq(server_counter(SERVER_REJECTED_PENDING), 0);
    cr_assert_eq(server_counter(SERVER_REJECTED_IP), 0);
    cr_assert_eq(raw_count_closed(held, HELD), 0);

    /* Another address, still under load, completes a real session. */
    connect_ready(&A, "client_a");
    cr_assert_eq(server_counter(SERVER_REJECTED_RATE), refused);

    for (size_t i = 0; i < HELD; i++)
        close(held[i]);
    for (size_t i = 0; i < FLOOD; i++)
        close(flood[i]);
}

static bool pending_back_to(void *arg)
{
    struct server_stats st;

    server_get_stats(H.server, &st);
    return st.pending == *(const uint32_t *)arg;
}

static bool round_settled(void *arg)
{
    uint32_t all_in = HELD + IP_RATE_BURST;

    (void)arg;
    return server_counter(SERVER_REJECTED_RATE) > 0 || pending_at_least(&all_in);
}

Test(relay, an_ip_that_drops_its_handshakes_keeps_its_spent_rate)
{
    int held[HELD], round1[IP_RATE_BURST], round2[IP_RATE_BURST];
    uint32_t want;
    uint64_t t1, t3;

    hold_load(held);
    uv_update_time(&H.loop);
    t1 = uv_now(&H.loop);
    for (size_t i = 0; i < IP_RATE_BURST; i++)
        round1[i] = raw_connect_from("127.0.0.3");
    want = HELD + IP_RATE_BURST;
    cr_assert(run_until(pending_at_least, &want, 3000), "the burst must pass");
    /* The address drops its handshakes: no connection is left, but its bucket is spent. */
    for (size_t i = 0; i < IP_RATE_BURST; i++)
        close(round1[i]);
    want = HELD;
    cr_assert(run_until(pending_back_to, &want, 3000));
    for (size_t i = 0; i < IP_RATE_BURST; i++)
        round2[i] = raw_connect_from("127.0.0.3");
    run_until(round_settled, NULL, 3000);
    uv_update_time(&H.loop);
    t3 = uv_now(&H.loop);
    /* The bucket refills in 250 ms: only a machine slower than that may find it full again. */
    if (t3 - t1 < 250)
        cr_assert_gt(server_counter(SERVER_REJECTED_RATE), 0, "a fresh burst after %llu ms",
                     (unsigned long long)(t3 - t1));
    else
        cr_log_warn("rounds took %llu ms: refill not checked", (unsigned long long)(t3 - t1));
    for (size_t i = 0; i < HELD; i++)
        close(held[i]);
    for (size_t i = 0; i < IP_RATE_BURST; i++)
        close(round2[i]);
}

/* ---------------------------------------------------------------------------------------------
 * Glitch budget (threats.md DROP+g) */

static bool client_closed(void *arg)
{
    return ((struct client *)arg)->closed;
}

static bool server_lacks(void *arg)
{
    return server_find_session(H.server, arg) == NULL;
}

static void send_junk_requests(struct client *c, unsigned n)
{
    uint8_t junk[200];

    memset(junk, 0x41, sizeof junk);
    for (unsigned i = 0; i < n; i++) {
        struct pstream *pa = dial_raw(c, junk, sizeof junk);
        cr_assert(run_until(stream_ended, pa, 3000), "junk request %u left hanging", i);
    }
}

Test(relay, abusive_requests_cost_a_client_its_session)
{
    unsigned below = DMSG_GLITCH_THRESHOLD / dmsg_glitch_weight(DMSG_GLITCH_BAD_REQUEST) - 1;

    connect_ready(&A, "client_a");
    connect_ready(&B, "client_b");
    send_junk_requests(&A, below);
    run_for(50);
    cr_assert_not(A.closed, "closed below the threshold");
    send_junk_requests(&A, 1);
    cr_assert(run_until(client_closed, &A, 3000), "the abuser's session stayed");
    cr_assert(run_until(server_lacks, &A.id.pk, 2000), "the server still lists the abuser");
    cr_assert_not(B.closed, "a bystander lost its session");
    cr_assert_not_null(server_find_session(H.server, &B.id.pk));
}

/* A peer's session carries other servers' clients: their abuse must not cut the mesh link. */
Test(relay, peer_sessions_spend_no_glitch_budget)
{
    unsigned many = 2 * DMSG_GLITCH_THRESHOLD / dmsg_glitch_weight(DMSG_GLITCH_BAD_REQUEST);

    connect_ready(&A, "client_a");
    server_foreach_session(H.server, mark_peer, server_find_session(H.server, &A.id.pk));
    send_junk_requests(&A, many);
    run_for(50);
    cr_assert_not(A.closed, "a peer session was closed for its clients' glitches");
    cr_assert_eq(counter(RELAY_FAIL_INVALID_REQUEST), many);
}

/* Rapid Reset: streams the dialer resets before sending its request. */
Test(relay, rapid_resets_cost_a_client_its_session)
{
    unsigned n = DMSG_GLITCH_THRESHOLD / dmsg_glitch_weight(DMSG_GLITCH_EARLY_RESET);

    connect_ready(&A, "client_a");
    for (unsigned i = 0; i < n; i++) {
        struct pstream *pa;
        if (i == n - 1) {
            run_for(50);
            cr_assert_not(A.closed, "closed below the threshold");
        }
        pa = dial_raw(&A, NULL, 0);
        cr_assert_eq(dmsg_stream_reset(pa->st), 0);
        run_until(stream_ended, pa, 1000);
    }
    cr_assert(run_until(client_closed, &A, 3000), "the session survived %u rapid resets", n);
    cr_assert(run_until(server_lacks, &A.id.pk, 2000));
}
