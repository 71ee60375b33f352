/* The DMSG client in discovery mode, in one process: the embedded discovery
 * (daemon/discovery_service.c) on a loopback port, two of our servers S1 and S2 registered in
 * it, client B holding a session to S2 only, client A picking its server from
 * available_servers (S1: it advertises more free sessions).
 *
 * What is checked: B's client entry (delegated_servers = S2) appears and is deleted at close;
 * A's dial to B goes through the order of issue 4 item 8 (A's own session to S1 first, the mesh
 * path, then a new session to B's delegated server S2); lookups that fail are reported with the
 * discovery's code. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "discovery_service.h"
#include "dmsg/client.h"
#include "dmsg/disc_client.h"
#include "dmsg/error.h"
#include "log.h"
#include "relay.h"
#include "server.h"
#include "store.h"

typedef struct test_server {
    dmsg_identity id;
    struct relay *relay;
    struct server *server;
    bool idle, closed, relay_closed;
    dmsg_disc_reg reg;
    bool posted, reg_closed;
} test_server;

typedef struct client_state {
    dmsg_client *c;
    bool closed;
    bool entry_posted;
    unsigned sessions_up;
} client_state;

static struct {
    uv_loop_t loop;
    struct dmsgd_log log;
    char dir[64];
    struct store *store;
    struct discovery_service *disc;
    bool disc_closed;
    char url[64];
    dmsg_http http;
    bool http_closed;
    dmsg_disc_client dc;
    test_server s1, s2;
    client_state a, b;
} T;

static bool run_until(const bool *flag, uint64_t timeout_ms)
{
    uint64_t end = uv_now(&T.loop) + timeout_ms;
    while (!*flag) {
        if (uv_now(&T.loop) >= end)
            return false;
        uv_run(&T.loop, UV_RUN_ONCE);
        uv_update_time(&T.loop);
    }
    return true;
}

static void make_identity(dmsg_identity *id)
{
    id->rng = dmsg_rng_system();
    cr_assert_eq(dmsg_keypair_generate(&id->pk, &id->sk, &id->rng), 0);
}

/* ---------------------------------------------------------------------------------------------
 * Servers */

static dmsg_session *find_local(void *ctx, const dmsg_pk *pk)
{
    test_server *ts = ctx;
    return ts->server ? server_find_session(ts->server, pk) : NULL;
}

static void on_idle(void *ctx)
{
    ((test_server *)ctx)->idle = true;
}

static void on_reg_event(dmsg_disc_reg *reg, const dmsg_disc_reg_event *ev)
{
    test_server *ts = reg->data;
    if (ev->kind == DMSG_DISC_REG_POSTED || ev->kind == DMSG_DISC_REG_UPDATED)
        ts->posted = true;
}

static void start_server(test_server *ts, int64_t max_sessions)
{
    make_identity(&ts->id);
    struct relay_limits rlim;
    relay_limits_default(&rlim);
    struct relay_hooks rh = {.ctx = ts, .find_local = find_local};
    cr_assert_eq(relay_init(&T.loop, &ts->id, &rlim, &rh, &T.log, &ts->relay), 0);
    struct server_limits slim = {.max_sessions = 64, .max_pending_handshakes = 64,
                                 .max_pending_per_ip = 64, .max_sessions_per_ip = 64};
    dmsg_session_config_default(&slim.session);
    struct server_hooks sh = {.ctx = ts, .on_idle = on_idle};
    cr_assert_eq(server_init(&T.loop, &ts->id, &slim, ts->relay, &sh, &T.log, &ts->server), 0);
    char err[128] = "", address[64];
    cr_assert_eq(server_listen(ts->server, "127.0.0.1:0", err, sizeof err), 0, "%s", err);
    snprintf(address, sizeof address, "127.0.0.1:%u", (unsigned)server_port(ts->server));
    dmsg_disc_reg_config rc = {.pk = ts->id.pk, .sk = ts->id.sk, .server = true,
                               .address = address, .max_sessions = max_sessions};
    cr_assert_eq(dmsg_disc_reg_init(&ts->reg, &T.dc, &rc, on_reg_event), 0);
    ts->reg.data = ts;
    cr_assert_eq(dmsg_disc_reg_start(&ts->reg), 0);
    cr_assert(run_until(&ts->posted, 5000), "server entry not posted");
}

static void set_flag(void *arg)
{
    *(bool *)arg = true;
}

static void on_reg_closed(dmsg_disc_reg *reg)
{
    ((test_server *)reg->data)->reg_closed = true;
}

static void stop_server(test_server *ts)
{
    dmsg_disc_reg_close(&ts->reg, on_reg_closed);
    cr_assert(run_until(&ts->reg_closed, 5000));
    server_close_sessions(ts->server);
    cr_assert(run_until(&ts->idle, 5000));
    cr_assert_eq(server_close(ts->server, set_flag, &ts->closed), 0);
    relay_close(ts->relay, set_flag, &ts->relay_closed);
    cr_assert(run_until(&ts->closed, 5000));
    cr_assert(run_until(&ts->relay_closed, 5000));
}

/* ---------------------------------------------------------------------------------------------
 * Clients */

static void on_client_event(dmsg_client *c, dmsg_client_event ev, const dmsg_pk *server,
                            int err, void *ctx)
{
    client_state *cs = ctx;
    (void)c;
    (void)server;
    (void)err;
    if (ev == DMSG_CLIENT_ENTRY_POSTED)
        cs->entry_posted = true;
    if (ev == DMSG_CLIENT_SESSION_UP)
        cs->sessions_up++;
}

static void on_client_closed(dmsg_client *c, void *ctx)
{
    (void)c;
    ((client_state *)ctx)->closed = true;
}

static void start_client(client_state *cs, const dmsg_server_ref *fixed, dmsg_client_mesh mesh)
{
    static const dmsg_client_callbacks cb = {.on_event = on_client_event,
                                             .on_close = on_client_closed};
    dmsg_client_config cfg;
    dmsg_client_config_default(&cfg);
    cfg.discovery_url = T.url;
    cfg.servers = fixed;
    cfg.n_servers = fixed ? 1 : 0;
    cfg.mesh = mesh;
    cfg.dial_timeout_ms = 5000;
    dmsg_identity id;
    make_identity(&id);
    cr_assert_eq(dmsg_client_start(&T.loop, &id, &cfg, &cb, cs, &cs->c), 0);
}

static void setup(void)
{
    memset(&T, 0, sizeof T);
    cr_assert_eq(dmsg_cipher_init(), 0);
    cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), 0);
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    log_init(&T.log);
    T.log.level = getenv("TEST_LOG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR;
    snprintf(T.dir, sizeof T.dir, "/tmp/test_client_discovery.XXXXXX");
    cr_assert_not_null(mkdtemp(T.dir));
    char path[128];
    snprintf(path, sizeof path, "%s/dmsgd.sqlite", T.dir);
    struct store_error serr;
    cr_assert_eq(store_open(&T.store, path, NULL, &serr), 0, "%s", serr.message);
    struct discovery_service_config dc = {.store = T.store, .test_mode = true};
    dc.http.tcp_address = "127.0.0.1:0";
    cr_assert_eq(discovery_service_init(&T.loop, &T.disc, &dc), 0);
    cr_assert_eq(discovery_service_start(T.disc), 0);
    snprintf(T.url, sizeof T.url, "http://127.0.0.1:%u", (unsigned)discovery_service_port(T.disc));
    cr_assert_eq(dmsg_http_init(&T.http, &T.loop), 0);
    cr_assert_eq(dmsg_disc_client_init(&T.dc, &T.http, T.url), 0);
    start_server(&T.s1, 100); /* more free sessions: picked first */
    start_server(&T.s2, 10);
}

static void on_disc_closed(struct discovery_service *svc, void *arg)
{
    (void)svc;
    *(bool *)arg = true;
}

static void on_http_closed(dmsg_http *http)
{
    (void)http;
    T.http_closed = true;
}

static void close_client(client_state *cs)
{
    if (cs->c && !cs->closed) {
        dmsg_client_close(cs->c);
        cr_assert(run_until(&cs->closed, 10000), "client did not close");
    }
}

static void teardown(void)
{
    close_client(&T.a);
    close_client(&T.b);
    stop_server(&T.s1);
    stop_server(&T.s2);
    dmsg_disc_client_cancel_all(&T.dc);
    dmsg_http_close(&T.http, on_http_closed);
    cr_assert(run_until(&T.http_closed, 5000));
    discovery_service_close(T.disc, on_disc_closed, &T.disc_closed);
    cr_assert(run_until(&T.disc_closed, 5000));
    uv_run(&T.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&T.loop), 0, "a handle was left open");
    store_close(T.store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", T.dir);
    cr_assert_eq(system(cmd), 0);
    curl_global_cleanup();
}

TestSuite(client_discovery, .init = setup, .fini = teardown, .timeout = 60);

/* ---------------------------------------------------------------------------------------------
 * Helpers */

typedef struct lookup {
    bool done;
    int err;
    dmsg_entry entry;
} lookup;

static void on_entry(void *ctx, const dmsg_disc_reply *reply, const dmsg_entry *e)
{
    lookup *lk = ctx;
    lk->done = true;
    lk->err = reply->err;
    if (e)
        lk->entry = *e;
}

static void get_entry(const dmsg_pk *pk, lookup *lk)
{
    memset(lk, 0, sizeof *lk);
    int err = 0;
    cr_assert_not_null(dmsg_disc_get_entry(&T.dc, pk, on_entry, lk, &err));
    cr_assert(run_until(&lk->done, 5000));
}

typedef struct dial_result {
    bool done;
    int err;
    uint16_t code;
    dmsg_conn *conn;
    bool closed;
} dial_result;

static void on_conn_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    (void)data;
    (void)ctx;
    dmsg_conn_consume(c, len);
}

static void on_conn_close(dmsg_conn *c, int err, void *ctx)
{
    dial_result *r = ctx;
    (void)c;
    (void)err;
    r->closed = true;
    r->conn = NULL;
}

static const dmsg_conn_callbacks conn_cb = {.on_data = on_conn_data, .on_close = on_conn_close};

static void on_dialed(dmsg_client *c, dmsg_conn *conn, int err, uint16_t code, void *arg)
{
    dial_result *r = arg;
    (void)c;
    r->done = true;
    r->err = err;
    r->code = code;
    r->conn = conn;
    if (conn)
        dmsg_conn_set_callbacks(conn, &conn_cb, r);
}

static void on_listen(dmsg_listener *l, void *ctx)
{
    dmsg_conn *conn = NULL;
    while (dmsg_listener_accept(l, &conn_cb, ctx, &conn) == 0)
        ;
}

/* B on S2 only, listening on 80, its entry posted; A picking from discovery. */
static void start_b_and_a(dmsg_client_mesh mesh)
{
    dmsg_server_ref s2 = {.pk = T.s2.id.pk};
    snprintf(s2.address, sizeof s2.address, "127.0.0.1:%u", (unsigned)server_port(T.s2.server));
    start_client(&T.b, &s2, DMSG_MESH_FIRST);
    static dial_result accepted;
    dmsg_listener *l = NULL;
    cr_assert_eq(dmsg_client_listen(T.b.c, 80, on_listen, &accepted, &l), 0);
    cr_assert(run_until(&T.b.entry_posted, 5000), "B's entry was not posted");
    start_client(&T.a, NULL, mesh);
    uint64_t end = uv_now(&T.loop) + 5000;
    dmsg_pk pk;
    while (dmsg_client_sessions(T.a.c, &pk, 1) == 0 || server_session_count(T.s1.server) == 0) {
        cr_assert(uv_now(&T.loop) < end, "A has no session");
        uv_run(&T.loop, UV_RUN_ONCE);
        uv_update_time(&T.loop);
    }
    cr_assert(dmsg_pk_equal(&pk, &T.s1.id.pk), "A picked the server with more free sessions");
}

/* ---------------------------------------------------------------------------------------------
 * Tests */

Test(client_discovery, client_entry_lists_its_servers_and_is_deleted_at_close)
{
    dmsg_server_ref s2 = {.pk = T.s2.id.pk};
    snprintf(s2.address, sizeof s2.address, "127.0.0.1:%u", (unsigned)server_port(T.s2.server));
    start_client(&T.b, &s2, DMSG_MESH_FIRST);
    cr_assert(run_until(&T.b.entry_posted, 5000));
    lookup lk;
    get_entry(dmsg_client_pk(T.b.c), &lk);
    cr_assert_eq(lk.err, 0, "%s", dmsg_strerror(lk.err));
    cr_assert(lk.entry.has_client);
    cr_assert_not(lk.entry.has_server);
    cr_assert_eq(lk.entry.client.n_delegated, 1);
    cr_assert(dmsg_pk_equal(&lk.entry.client.delegated[0], &T.s2.id.pk));
    cr_assert_eq(dmsg_entry_verify(&lk.entry), 0, "the stored entry carries our signature");
    dmsg_pk b_pk = *dmsg_client_pk(T.b.c);
    close_client(&T.b);
    get_entry(&b_pk, &lk);
    cr_assert_eq(lk.err, DMSG_ENOTFOUND, "deleted at close");
}

Test(client_discovery, dial_tries_the_mesh_then_connects_to_the_delegated_server)
{
    start_b_and_a(DMSG_MESH_FIRST);
    static dial_result r;
    dmsg_addr dst = {.pk = *dmsg_client_pk(T.b.c), .port = 80};
    cr_assert_eq(dmsg_client_dial(T.a.c, &dst, on_dialed, &r), 0);
    cr_assert(run_until(&r.done, 15000));
    cr_assert_eq(r.err, 0, "%s", dmsg_strerror(r.err));
    cr_assert(dmsg_pk_equal(dmsg_conn_server_pk(r.conn), &T.s2.id.pk));
    dmsg_pk held[4];
    cr_assert_eq(dmsg_client_sessions(T.a.c, held, 4), 2, "S1 kept, S2 added");
    /* The mesh path was tried first: S1 saw (and refused) a request for B. */
    struct relay_stats st;
    relay_get_stats(T.s1.relay, &st);
    cr_assert_eq(st.counters[RELAY_FAIL_NO_DESTINATION], 1);
    /* A second dial goes straight through S2 (route cache / held delegated server). */
    static dial_result r2;
    cr_assert_eq(dmsg_client_dial(T.a.c, &dst, on_dialed, &r2), 0);
    cr_assert(run_until(&r2.done, 5000));
    cr_assert_eq(r2.err, 0);
    relay_get_stats(T.s1.relay, &st);
    cr_assert_eq(st.counters[RELAY_FAIL_NO_DESTINATION], 1, "S1 was not asked again");
}

Test(client_discovery, mesh_off_goes_to_the_delegated_server_directly)
{
    start_b_and_a(DMSG_MESH_OFF);
    static dial_result r;
    dmsg_addr dst = {.pk = *dmsg_client_pk(T.b.c), .port = 80};
    cr_assert_eq(dmsg_client_dial(T.a.c, &dst, on_dialed, &r), 0);
    cr_assert(run_until(&r.done, 15000));
    cr_assert_eq(r.err, 0, "%s", dmsg_strerror(r.err));
    struct relay_stats st;
    relay_get_stats(T.s1.relay, &st);
    cr_assert_eq(st.counters[RELAY_STREAMS_ACCEPTED], 0, "S1 was never asked");
}

Test(client_discovery, unknown_destination_reports_the_discovery_code)
{
    start_b_and_a(DMSG_MESH_FIRST);
    dmsg_identity nobody;
    make_identity(&nobody);
    static dial_result r;
    dmsg_addr dst = {.pk = nobody.pk, .port = 80};
    cr_assert_eq(dmsg_client_dial(T.a.c, &dst, on_dialed, &r), 0);
    cr_assert(run_until(&r.done, 15000));
    cr_assert_eq(r.err, DMSG_ENOTFOUND, "%s", dmsg_strerror(r.err));
    cr_assert_eq(r.code, DMSG_WIRE_DISC_ENTRY_NOT_FOUND);
    /* A server's key has a server entry, not a client entry: 102 after the blind tries. */
    static dial_result r2;
    dst.pk = T.s2.id.pk;
    cr_assert_eq(dmsg_client_dial(T.a.c, &dst, on_dialed, &r2), 0);
    cr_assert(run_until(&r2.done, 15000));
    cr_assert_eq(r2.err, DMSG_ENOTFOUND, "%s", dmsg_strerror(r2.err));
    cr_assert_eq(r2.code, DMSG_WIRE_DISC_ENTRY_NOT_CLIENT);
}

typedef struct post_result {
    bool done;
    int err;
} post_result;

static void on_posted(void *ctx, const dmsg_disc_reply *reply)
{
    post_result *p = ctx;
    p->done = true;
    p->err = reply->err;
}

static void post_entry(dmsg_entry *e, const dmsg_sk *sk)
{
    cr_assert_eq(dmsg_entry_sign(e, sk), 0);
    static post_result p;
    p = (post_result){0};
    int err = 0;
    cr_assert_not_null(dmsg_disc_post_entry(&T.dc, e, on_posted, &p, &err));
    cr_assert(run_until(&p.done, 5000));
    cr_assert_eq(p.err, 0, "%s", dmsg_strerror(p.err));
}

/* The destination's only delegated server is dead: the dial opens one session to it, sees it
 * fail, and gives up at once instead of redialling it until the dial's deadline. */
Test(client_discovery, dead_delegated_server_fails_the_dial_promptly)
{
    start_b_and_a(DMSG_MESH_FIRST);
    dmsg_identity dead, ghost;
    make_identity(&dead);
    make_identity(&ghost);
    static dmsg_entry e;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    dmsg_entry_init(&e, &dead.pk, 0, now);
    cr_assert_eq(dmsg_entry_set_server(&e, "127.0.0.1:1", 5), 0); /* nothing listens there */
    post_entry(&e, &dead.sk);
    dmsg_entry_init(&e, &ghost.pk, 0, now);
    cr_assert_eq(dmsg_entry_set_client(&e, &dead.pk, 1), 0);
    post_entry(&e, &ghost.sk);

    static dial_result r;
    dmsg_addr dst = {.pk = ghost.pk, .port = 80};
    uint64_t start = uv_now(&T.loop);
    cr_assert_eq(dmsg_client_dial(T.a.c, &dst, on_dialed, &r), 0);
    cr_assert(run_until(&r.done, 15000));
    cr_assert_neq(r.err, 0);
    cr_assert_lt(uv_now(&T.loop) - start, 5000, "took %llu ms",
                 (unsigned long long)(uv_now(&T.loop) - start));
    dmsg_pk held[4];
    cr_assert_eq(dmsg_client_sessions(T.a.c, held, 4), 1, "the dead server is not kept");
}
