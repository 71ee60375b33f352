/* The integrated route setup node on the server's own DMSG port 36 and /health on port 80
 * (daemon/setup_node.c, own_conn.c, health_dmsg.c, dmsgd_own.c), end to end in one process: a
 * dmsgd on loopback, simulated visors on our client library (simvisor.h) holding sessions to
 * it, and the scenarios of setup_rpc.json replayed through them: the same keys, the same
 * pre-reserved id counters, so every rule must come out byte for byte as the reference's. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dmsg/error.h"
#include "dmsgd.h"
#include "health_dmsg.h"
#include "mesh.h"
#include "relay.h"
#include "metrics.h"
#include "store.h"
#include "route_json.h"
#include "server.h"
#include "setup_node.h"
#include "simvisor.h"
#include "vectors.h"

static char state_dir[64], state_dir2[64];
static struct dmsgd d;
static dmsg_server_ref server_ref;
static struct dmsgd d2;            /* a meshed second server, when a test starts one */
static dmsg_server_ref server2_ref;
static bool d2_running;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void start_daemon_in(struct dmsgd *dd, const char *dir, bool route_setup,
                            dmsg_server_ref *ref)
{
    struct dmsgd_config cfg;
    char err[512] = "";

    config_defaults(&cfg);
    snprintf(cfg.local_address, sizeof cfg.local_address, "127.0.0.1:0");
    snprintf(cfg.embedded_discovery_address, sizeof cfg.embedded_discovery_address,
             "127.0.0.1:0");
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", dir);
    cfg.log_level = LOG_LEVEL_ERROR;
    cfg.limits.shutdown_grace_ms = 100;
    cfg.enable_route_setup = route_setup;
    memset(dd, 0, sizeof *dd);
    cr_assert_eq(dmsgd_init(dd, &cfg, "", err, sizeof err), 0, "%s", err);
    cr_assert_eq(dmsgd_start(dd, err, sizeof err), 0, "%s", err);
    ref->pk = dd->identity.pk;
    snprintf(ref->address, sizeof ref->address, "127.0.0.1:%u",
             (unsigned)server_port(dd->server));
}

static void start_daemon(bool route_setup)
{
    start_daemon_in(&d, state_dir, route_setup, &server_ref);
}

static void setup(void)
{
    cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), 0);
    snprintf(state_dir, sizeof state_dir, "/tmp/dmsgd-setup-XXXXXX");
    cr_assert_not_null(mkdtemp(state_dir));
    snprintf(state_dir2, sizeof state_dir2, "/tmp/dmsgd-setup2-XXXXXX");
    cr_assert_not_null(mkdtemp(state_dir2));
    d2_running = false;
}

static void teardown(void)
{
    nftw(state_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    nftw(state_dir2, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    curl_global_cleanup();
}

TestSuite(setup_node, .init = setup, .fini = teardown, .timeout = 90);

static void pump(void)
{
    uv_run(&d.loop, UV_RUN_NOWAIT);
    if (d2_running)
        uv_run(&d2.loop, UV_RUN_NOWAIT);
    usleep(200);
}

static void run_until(const bool *flag, unsigned ms)
{
    uint64_t until = uv_hrtime() + (uint64_t)ms * 1000000u;

    while (!*flag && uv_hrtime() < until)
        pump();
}

static void wait_sessions(struct simvisor **v, size_t n)
{
    for (unsigned t = 0; t < 25000; t++) {
        size_t up = 0;
        for (size_t i = 0; i < n; i++)
            up += (server_find_session(d.server, &v[i]->id.pk) != NULL ||
                   (d2_running && server_find_session(d2.server, &v[i]->id.pk) != NULL)) &&
                  dmsg_client_sessions(v[i]->client, NULL, 0) > 0;
        if (up == n)
            return;
        pump();
    }
    cr_assert_fail("visor sessions did not come up");
}

static void stop_all(struct simvisor **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        simvisor_stop(v[i]);
    for (unsigned t = 0; t < 15000; t++) {
        bool all = true;
        for (size_t i = 0; i < n; i++)
            all = all && v[i]->closed;
        if (all)
            break;
        pump();
    }
    if (d2_running) {
        dmsgd_stop(&d2);
        for (int t = 0; t < 15000 && d2.phase != DMSGD_STOPPED; t++)
            pump();
        cr_assert_eq(dmsgd_run(&d2), 0);
        dmsgd_free(&d2);
        d2_running = false;
    }
    dmsgd_stop(&d);
    cr_assert_eq(dmsgd_run(&d), 0);
    dmsgd_free(&d);
}

/* Nothing of a finished setup stays: no setup in flight, no stream to a visor. */
static void assert_nothing_left(struct simvisor **v, size_t n)
{
    struct setup_node_stats st;

    for (unsigned t = 0; t < 15000; t++) {
        int open = 0;
        setup_node_get_stats(d.setup_node, &st);
        for (size_t i = 0; i < n; i++)
            open += v[i]->conns;
        if (st.in_flight == 0 && st.visor_conns == 0 && open == 0)
            return;
        pump();
    }
    setup_node_get_stats(d.setup_node, &st);
    cr_assert_fail("left over: in flight %llu, visor conns %llu", (unsigned long long)st.in_flight,
            (unsigned long long)st.visor_conns);
}

static void sk_of(json_t *keys, const char *label, dmsg_sk *sk)
{
    const char *hex = json_string_value(vec_get(json_object_get(keys, label), "secret_key"));
    cr_assert_not_null(hex);
    cr_assert_eq(dmsg_sk_from_hex(sk, hex, strlen(hex)), 0);
}

static void assert_hex(const uint8_t *b, size_t len, json_t *want, const char *what)
{
    rj_assert_view_hex((dmsg_gob_bytes){b, len}, want, what);
}

static enum simvisor_mode mode_of(json_t *state)
{
    const char *flags = json_string_value(json_object_get(state, "flags"));
    if (flags != NULL && strcmp(flags, "failReserve") == 0)
        return SIMVISOR_FAIL_RESERVE;
    if (flags != NULL && strcmp(flags, "failEdge") == 0)
        return SIMVISOR_FAIL_EDGE;
    return SIMVISOR_NORMAL;
}

/* One scenario of setup_rpc.json through the daemon: the visors present are those of
 * visor_states_after, with the reference's pre-reserved counters and failure flags. */
static void run_scenario(json_t *keys, json_t *sc)
{
    static const char *labels[] = {"A", "B", "I"};
    static struct simvisor visors[3];
    static struct sv_request req;
    struct simvisor *present[3];
    json_t *states = json_object_get(sc, "visor_states_after");
    json_t *result = json_object_get(sc, "initiator_result");
    const char *name = json_string_value(json_object_get(sc, "name"));
    const char *method = json_string_value(json_object_get(sc, "method_called_by_initiator"));
    static dmsg_rpc_method custom;
    dmsg_bidi_route route;
    rj_route_store rs;
    size_t n = 0;

    start_daemon(true);
    for (size_t i = 0; i < 3; i++) {
        json_t *state = json_object_get(states, labels[i]);
        dmsg_sk sk;
        if (state == NULL)
            continue;
        sk_of(keys, labels[i], &sk);
        simvisor_start(&visors[i], &d.loop, &sk, &server_ref);
        visors[i].next_id = (uint32_t)json_integer_value(json_object_get(state, "pre_reserved"));
        visors[i].mode = mode_of(state);
        present[n++] = &visors[i];
    }
    wait_sessions(present, n);

    rj_route(json_object_get(sc, "route"), &route, &rs);
    memset(&req, 0, sizeof req);
    req.route = &route;
    if (strcmp(method, dmsg_setup_dial_route_group.name) != 0) {
        custom = dmsg_setup_dial_route_group;
        custom.name = method;
        req.method = &custom;
    }
    simvisor_request(&visors[0], &d.identity.pk, DMSG_SETUP_NODE_PORT, &req);
    run_until(&req.replied, 10000);
    {
        struct setup_node_stats st;
        setup_node_get_stats(d.setup_node, &st);
        cr_assert(req.replied, "%s: no reply (dial done %d err %d code %u; streams %llu, "
                  "in flight %llu, visor conns %llu, results %llu/%llu; A reserve %d, B %d)",
                  name, req.dial_done, req.dial_err, req.wire_code,
                  (unsigned long long)st.streams, (unsigned long long)st.in_flight,
                  (unsigned long long)st.visor_conns, (unsigned long long)st.results[0],
                  (unsigned long long)st.results[1], visors[0].reserve_calls,
                  visors[1].reserve_calls);
    }

    if (json_object_get(result, "error") != NULL) {
        cr_assert_str_eq(req.error, json_string_value(json_object_get(result, "error")), "%s",
                         name);
    } else {
        json_t *edge = json_object_get(result, "edge_rules");
        cr_assert_str_eq(req.error, "", "%s", name);
        assert_hex(req.desc, DMSG_ROUTE_DESC_LEN, json_object_get(edge, "desc"), name);
        assert_hex(req.fwd, req.fwd_len, json_object_get(edge, "forward"), name);
        assert_hex(req.rev, req.rev_len, json_object_get(edge, "reverse"), name);
    }
    for (size_t i = 0; i < 3; i++) {
        json_t *state = json_object_get(states, labels[i]);
        json_t *batches, *edge, *saved;
        if (state == NULL)
            continue;
        batches = json_object_get(state, "reserved_batches");
        cr_assert_eq((size_t)visors[i].reserve_calls, json_array_size(batches), "%s %s", name,
                     labels[i]);
        if (visors[i].reserve_asks > 0)
            cr_assert(dmsg_pk_equal(&visors[i].src_seen, &d.identity.pk),
                      "visors are dialed as the server's key");
        if (visors[i].reserve_asks > 0)
            cr_assert_neq(visors[i].src_port_seen, 0);
        edge = json_object_get(state, "introduced_edge_rules");
        if (json_is_array(edge) && json_array_size(edge) == 1 && visors[i].mode == 0) {
            char want[1024];
            char *d_hex = vec_to_hex(visors[i].edge_desc, DMSG_ROUTE_DESC_LEN);
            char *f_hex = vec_to_hex(visors[i].edge_fwd, visors[i].edge_fwd_len);
            char *r_hex = vec_to_hex(visors[i].edge_rev, visors[i].edge_rev_len);
            cr_assert(visors[i].got_edge, "%s %s: AddEdgeRules", name, labels[i]);
            snprintf(want, sizeof want, "%s|%s|%s", d_hex, f_hex, r_hex);
            cr_assert_str_eq(want, json_string_value(json_array_get(edge, 0)), "%s", name);
            free(d_hex);
            free(f_hex);
            free(r_hex);
        } else {
            cr_assert_not(visors[i].got_edge, "%s %s", name, labels[i]);
        }
        saved = json_object_get(state, "saved_rules_hex");
        if (i == 2 && json_is_array(saved)) { /* the intermediary's rules came from us */
            cr_assert_eq(visors[i].nrules, json_array_size(saved), "%s", name);
            for (size_t k = 0; k < visors[i].nrules; k++)
                assert_hex(visors[i].rules[k], visors[i].rule_len[k], json_array_get(saved, k),
                           name);
        }
    }
    assert_nothing_left(present, n);
    stop_all(present, n);
}

Test(setup_node, every_scenario_of_the_vectors_end_to_end)
{
    json_t *root = vec_load("setup_rpc.json");
    json_t *keys = json_object_get(root, "keys");
    json_t *sc;
    size_t i;

    json_array_foreach(json_object_get(root, "scenarios"), i, sc)
        run_scenario(keys, sc);
    json_decref(root);
}

/* ---- a small world of fresh visors: initiator A, intermediary I, responder B ---- */

struct world {
    struct simvisor a, b, i;
    struct simvisor *all[3];
    dmsg_route_hop hops[2][2];
    dmsg_bidi_route route;
};

static void world_start(struct world *w, bool route_setup)
{
    start_daemon(route_setup);
    simvisor_start(&w->a, &d.loop, NULL, &server_ref);
    simvisor_start(&w->b, &d.loop, NULL, &server_ref);
    simvisor_start(&w->i, &d.loop, NULL, &server_ref);
    w->all[0] = &w->a;
    w->all[1] = &w->b;
    w->all[2] = &w->i;
    wait_sessions(w->all, 3);
}

/* A -> I -> B and back, ports 49153 -> 1. */
static void world_route(struct world *w, bool via_i)
{
    dmsg_route_addr src = {.pk = w->a.id.pk, .port = 49153};
    dmsg_route_addr dst = {.pk = w->b.id.pk, .port = 1};

    memset(&w->route, 0, sizeof w->route);
    memset(w->hops, 0, sizeof w->hops);
    dmsg_route_desc_pack(w->route.desc, &src, &dst);
    w->route.keep_alive = DMSG_ROUTE_DEFAULT_KEEP_ALIVE_NS;
    for (int dir = 0; dir < 2; dir++) {
        const dmsg_pk *from = dir == 0 ? &w->a.id.pk : &w->b.id.pk;
        const dmsg_pk *to = dir == 0 ? &w->b.id.pk : &w->a.id.pk;
        size_t n = via_i ? 2 : 1;
        for (size_t k = 0; k < n; k++) {
            w->hops[dir][k].tp_id[0] = (uint8_t)(dir * 16 + k + 1);
            w->hops[dir][k].from = k == 0 ? *from : w->i.id.pk;
            w->hops[dir][k].to = (via_i && k == 0) ? w->i.id.pk : *to;
        }
        if (dir == 0)
            w->route.forward = (dmsg_gob_slice){w->hops[0], n};
        else
            w->route.reverse = (dmsg_gob_slice){w->hops[1], n};
    }
}

static void request_and_wait(struct simvisor *from, uint16_t port, struct sv_request *r,
                             unsigned ms)
{
    simvisor_request(from, &d.identity.pk, port, r);
    run_until(&r->closed, ms);
}

Test(setup_node, route_setup_off_refuses_at_once_and_a_runtime_toggle_serves)
{
    static struct world w;
    static struct sv_request r;
    uint64_t t0;

    world_start(&w, false);
    world_route(&w, false);
    memset(&r, 0, sizeof r);
    r.route = &w.route;
    t0 = uv_now(&d.loop);
    simvisor_request(&w.a, &d.identity.pk, DMSG_SETUP_NODE_PORT, &r);
    run_until(&r.dial_done, 5000);
    cr_assert(r.dial_done);
    cr_assert_eq(r.dial_err, DMSG_EWIRE, "a signed refusal, not a timeout: %d", r.dial_err);
    cr_assert_eq(r.wire_code, DMSG_WIRE_REQ_NO_LISTENER);
    cr_assert_lt(uv_now(&d.loop) - t0, 2000, "refused at once");
    cr_assert_eq(w.b.conns_total, 0);

    d.route_setup_enabled = true; /* what PUT /v1/route-setup does */
    memset(&r, 0, sizeof r);
    r.route = &w.route;
    simvisor_request(&w.a, &d.identity.pk, DMSG_SETUP_NODE_PORT, &r);
    run_until(&r.replied, 10000);
    cr_assert(r.replied);
    cr_assert_str_eq(r.error, "");
    cr_assert(w.b.got_edge);
    assert_nothing_left(w.all, 3);

    /* Off while a stream is open and its call still on the way: the call gets an error. */
    memset(&r, 0, sizeof r);
    r.raw = (const uint8_t *)""; /* connect first, call later */
    simvisor_request(&w.a, &d.identity.pk, DMSG_SETUP_NODE_PORT, &r);
    run_until(&r.dial_done, 5000);
    cr_assert_eq(r.dial_err, 0);
    d.route_setup_enabled = false;
    {
        size_t n = 0;
        cr_assert_eq(dmsg_rpc_call(&r.rpc, &dmsg_setup_dial_route_group, &w.route, r.out,
                                   sizeof r.out, &n, NULL), 0);
        cr_assert_eq(dmsg_conn_write(r.conn, r.out, n, NULL, NULL), 0);
    }
    run_until(&r.replied, 5000);
    cr_assert_str_eq(r.error, "disabled on this server");

    /* Off: new requests are refused at once. */
    memset(&r, 0, sizeof r);
    r.route = &w.route;
    simvisor_request(&w.a, &d.identity.pk, DMSG_SETUP_NODE_PORT, &r);
    run_until(&r.dial_done, 5000);
    cr_assert_eq(r.wire_code, DMSG_WIRE_REQ_NO_LISTENER);
    stop_all(w.all, 3);
}

Test(setup_node, health_over_dmsg_port_80)
{
    static struct world w;
    static struct sv_request r;
    static const char get[] = "GET /health HTTP/1.1\r\nHost: dmsgd\r\n\r\n";
    static const char post[] = "POST /health HTTP/1.1\r\n\r\n";

    world_start(&w, true);
    memset(&r, 0, sizeof r);
    r.raw = (const uint8_t *)get;
    r.raw_len = sizeof get - 1;
    r.keep_raw_reply = true;
    request_and_wait(&w.a, HEALTH_DMSG_PORT, &r, 5000);
    cr_assert(r.closed);
    cr_assert_eq(r.dial_err, 0);
    r.raw_reply[r.raw_reply_len] = '\0';
    cr_assert(strncmp(r.raw_reply, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r.raw_reply);
    const char *body = strstr(r.raw_reply, "\r\n\r\n");
    cr_assert_not_null(body);
    json_error_t jerr;
    json_t *j = json_loads(body + 4, 0, &jerr);
    cr_assert_not_null(j, "%s", body + 4);
    cr_assert_str_eq(json_string_value(vec_get(json_object_get(j, "build_info"), "version")),
                     DMSGD_VERSION);
    cr_assert(json_is_string(json_object_get(j, "started_at")));
    cr_assert_eq(json_integer_value(json_object_get(j, "sessions")), 3);
    cr_assert(json_is_true(json_object_get(j, "route_setup")));
    json_decref(j);

    memset(&r, 0, sizeof r);
    r.raw = (const uint8_t *)post;
    r.raw_len = sizeof post - 1;
    r.keep_raw_reply = true;
    request_and_wait(&w.a, HEALTH_DMSG_PORT, &r, 5000);
    r.raw_reply[r.raw_reply_len] = '\0';
    cr_assert(strncmp(r.raw_reply, "HTTP/1.1 405", 12) == 0, "%s", r.raw_reply);

    /* Another port of our key: refused at once. */
    memset(&r, 0, sizeof r);
    r.raw = (const uint8_t *)get;
    r.raw_len = sizeof get - 1;
    request_and_wait(&w.a, 81, &r, 5000);
    cr_assert_eq(r.wire_code, DMSG_WIRE_REQ_NO_LISTENER);
    stop_all(w.all, 3);
}

Test(setup_node, health_response_shape)
{
    struct health_dmsg_info info = {.version = "1.2.3", .started_at = "2026-01-01T00:00:00Z",
                                    .uptime_s = 5, .sessions = 2, .peers = 1,
                                    .route_setup = false};
    char out[1024];
    static const char partial[] = "GET /health HTTP/1.1\r\nHost: x\r\n";
    static const char other[] = "GET /metrics HTTP/1.1\r\n\r\n";
    static const char junk[] = "\x01\x02\r\n\r\n";

    cr_assert_eq(health_dmsg_respond(partial, sizeof partial - 1, &info, out, sizeof out), 0);
    cr_assert_neq(health_dmsg_respond(other, sizeof other - 1, &info, out, sizeof out), 0);
    cr_assert(strncmp(out, "HTTP/1.1 404", 12) == 0);
    cr_assert_neq(health_dmsg_respond(junk, sizeof junk - 1, &info, out, sizeof out), 0);
    cr_assert(strncmp(out, "HTTP/1.1 400", 12) == 0);
}

/* A visor that accepts the stream and never answers: at the deadline the requester's stream is
 * closed (as the reference does), every visor stream is gone, and the next setup works. */
Test(setup_node, a_stalled_visor_ends_at_the_deadline_with_nothing_left)
{
    static struct world w;
    static struct sv_request r;
    struct setup_node_limits lim;
    struct setup_node_stats st;
    uint64_t t0;

    world_start(&w, true);
    setup_node_limits_default(&lim);
    lim.deadline_ms = 1500;
    setup_node_set_limits(d.setup_node, &lim);
    world_route(&w, true);
    w.i.mode = SIMVISOR_STALL;
    memset(&r, 0, sizeof r);
    r.route = &w.route;
    t0 = uv_now(&d.loop);
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 8000);
    cr_assert(r.closed, "the requester's stream ends");
    cr_assert_not(r.replied, "closed without an answer, as the reference does");
    cr_assert_geq(uv_now(&d.loop) - t0, 1400);
    cr_assert_lt(uv_now(&d.loop) - t0, 4000);
    cr_assert_not(w.b.got_edge);
    assert_nothing_left(w.all, 3);
    setup_node_get_stats(d.setup_node, &st);
    cr_assert_eq(st.results[SETUP_RESULT_TIMEOUT], 1);

    w.i.mode = SIMVISOR_NORMAL;
    memset(&r, 0, sizeof r);
    r.route = &w.route;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 8000);
    cr_assert(r.replied);
    cr_assert_str_eq(r.error, "");
    cr_assert_eq(w.i.nrules, 2, "one intermediary rule per direction");
    assert_nothing_left(w.all, 3);
    stop_all(w.all, 3);
}

/* A visor that closes the stream at once (it does not trust us): an error, nothing left. */
Test(setup_node, a_visor_closing_mid_setup_gives_an_error)
{
    static struct world w;
    static struct sv_request r;
    char want[256], hex[DMSG_PK_HEX_LEN + 1];

    world_start(&w, true);
    world_route(&w, false);
    w.b.mode = SIMVISOR_CLOSE;
    memset(&r, 0, sizeof r);
    r.route = &w.route;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 8000);
    cr_assert(r.replied);
    dmsg_pk_to_hex(&w.b.id.pk, hex);
    snprintf(want, sizeof want, "failed to reserve route ids: reserve routeID from %s failed: EOF",
             hex);
    cr_assert_str_eq(r.error, want);
    assert_nothing_left(w.all, 3);
    stop_all(w.all, 3);
}

/* A setup that fails while visors still accept their streams (here a hop nobody can reach,
 * found after A and I were dialed) closes those streams with a FIN: a reference visor ends its
 * whole DMSG session when a stream is reset under its accept, so a requester must not be able
 * to knock third-party visors off the network by naming them next to a bad key. */
Test(setup_node, a_failed_setup_closes_visor_streams_without_resetting_them)
{
    static struct world w;
    static struct sv_request r;
    dmsg_pk nobody;
    dmsg_sk nobody_sk;
    dmsg_rng rng = dmsg_rng_system();

    world_start(&w, true);
    world_route(&w, true);
    cr_assert_eq(dmsg_keypair_generate(&nobody, &nobody_sk, &rng), 0);
    w.hops[0][1].to = nobody;   /* A -> I -> nobody */
    w.hops[1][0].from = nobody; /* nobody -> I -> A */
    dmsg_route_addr src = {.pk = w.a.id.pk, .port = 49153}, dst = {.pk = nobody, .port = 1};
    dmsg_route_desc_pack(w.route.desc, &src, &dst);
    for (int round = 0; round < 5; round++) {
        memset(&r, 0, sizeof r);
        r.route = &w.route;
        request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 8000);
        cr_assert(r.replied);
        cr_assert(strstr(r.error, "entry is not found in discovery") != NULL, "%s", r.error);
        assert_nothing_left(w.all, 3);
    }
    cr_assert_eq(w.i.conns_total, 5, "I accepted each stream: it was not reset under the accept");
    cr_assert_eq(w.a.conns_total, 5);
    cr_assert_eq(w.i.conns_reset + w.a.conns_reset, 0, "visor streams end with a FIN");
    cr_assert_not(w.i.closed || w.a.closed);
    stop_all(w.all, 3);
}

static void expect_error(struct world *w, const char *want_prefix)
{
    static struct sv_request r;

    memset(&r, 0, sizeof r);
    r.route = &w->route;
    request_and_wait(&w->a, DMSG_SETUP_NODE_PORT, &r, 8000);
    cr_assert(r.replied, "answered (%s)", want_prefix);
    cr_assert_neq(r.error[0], '\0', "an error, not rules");
    cr_assert(strncmp(r.error, want_prefix, strlen(want_prefix)) == 0, "got \"%s\", want \"%s\"",
              r.error, want_prefix);
}

Test(setup_node, policy_source_must_be_the_requester_and_hops_are_capped)
{
    static struct world w;
    static dmsg_route_hop many[2][DMSG_ROUTE_MAX_HOPS + 1];
    dmsg_route_addr src, dst;

    world_start(&w, true);
    /* B's route asked for by A: refused before any visor is dialed. */
    world_route(&w, false);
    dmsg_route_desc_unpack(w.route.desc, &src, &dst);
    dmsg_route_desc_pack(w.route.desc, &dst, &src);
    w.route.forward.items = w.hops[1];
    w.route.reverse.items = w.hops[0];
    expect_error(&w, "");
    cr_assert_eq(w.b.conns_total + w.i.conns_total + w.a.conns_total, 0, "no visor dialed");

    /* 51 hops one way: over the visors' own limit. */
    world_route(&w, false);
    for (int dir = 0; dir < 2; dir++) {
        for (size_t k = 0; k <= DMSG_ROUTE_MAX_HOPS; k++) {
            many[dir][k].tp_id[0] = (uint8_t)k;
            many[dir][k].from = k == 0 ? (dir ? w.b.id.pk : w.a.id.pk) : w.i.id.pk;
            many[dir][k].to = k == DMSG_ROUTE_MAX_HOPS ? (dir ? w.a.id.pk : w.b.id.pk)
                                                       : w.i.id.pk;
        }
    }
    w.route.forward = (dmsg_gob_slice){many[0], DMSG_ROUTE_MAX_HOPS + 1};
    w.route.reverse = (dmsg_gob_slice){many[1], 1};
    many[1][0].to = w.a.id.pk;
    {
        static struct sv_request r;
        memset(&r, 0, sizeof r);
        r.route = &w.route;
        request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 8000);
        cr_assert(r.closed);
        cr_assert(r.replied ? r.error[0] != '\0' : true, "an error or a closed stream");
    }
    cr_assert_eq(w.b.conns_total + w.i.conns_total + w.a.conns_total, 0, "no visor dialed");
    assert_nothing_left(w.all, 3);
    stop_all(w.all, 3);
}

Test(setup_node, bad_input_on_port_36_is_answered_or_closed_and_others_are_served)
{
    static struct world w;
    static struct sv_request r, good;
    /* Whole gob messages whose first value is an int (type 4), not a Request header. */
    static const uint8_t garbage[] = {0x03, 0x04, 0x02, 0x00, 0x03, 0x06, 0x0c, 0x00};
    /* The start of a message that announces 254 bytes and never sends them. */
    static const uint8_t stuck[] = {0xff, 0xfe, 0x00};
    struct setup_node_limits lim;
    static uint8_t call[4096];
    dmsg_rpc_conn enc;
    dmsg_rpc_config cfg;
    static uint8_t inbuf[256];
    size_t n = 0;

    world_start(&w, true);
    world_route(&w, false);

    memset(&r, 0, sizeof r);
    r.raw = garbage;
    r.raw_len = sizeof garbage;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 5000);
    cr_assert(r.closed, "garbage: the stream is closed");

    setup_node_limits_default(&lim);
    lim.idle_ms = 500;
    setup_node_set_limits(d.setup_node, &lim);
    memset(&r, 0, sizeof r);
    r.raw = stuck;
    r.raw_len = sizeof stuck;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 5000);
    cr_assert(r.closed, "a call that never completes: the stream is reset when idle");

    /* A truncated call: its first half, then our FIN. */
    memset(&cfg, 0, sizeof cfg);
    cfg.role = DMSG_RPC_CLIENT;
    cfg.inbuf = inbuf;
    cfg.inbuf_cap = sizeof inbuf;
    cr_assert_eq(dmsg_rpc_init(&enc, &cfg), 0);
    cr_assert_eq(dmsg_rpc_call(&enc, &dmsg_setup_dial_route_group, &w.route, call, sizeof call,
                               &n, NULL), 0);
    memset(&r, 0, sizeof r);
    r.raw = call;
    r.raw_len = n / 2;
    r.close_after_send = true;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 5000);
    cr_assert(r.closed, "truncated: the stream is closed");
    cr_assert_not(r.replied);
    cr_assert_eq(w.b.conns_total, 0);

    memset(&good, 0, sizeof good);
    good.route = &w.route;
    request_and_wait(&w.b, DMSG_SETUP_NODE_PORT, &good, 8000);
    cr_assert(good.replied);
    cr_assert_neq(good.error[0], '\0', "B asking for A's route: refused");
    memset(&good, 0, sizeof good);
    good.route = &w.route;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &good, 8000);
    cr_assert_str_eq(good.error, "", "a good request after bad ones is served");
    assert_nothing_left(w.all, 3);
    stop_all(w.all, 3);
}

/* Three requests at once from one key while a visor stalls: the per-requester cap (2) turns
 * the third away at once; another requester is still served. */
Test(setup_node, a_flood_from_one_key_is_capped_and_others_are_served)
{
    static struct world w;
    static struct sv_request r[3], other;
    struct setup_node_limits lim;
    static struct world w2;
    int refused = 0;

    world_start(&w, true);
    setup_node_limits_default(&lim);
    lim.deadline_ms = 3000;
    setup_node_set_limits(d.setup_node, &lim);
    world_route(&w, true);
    w.i.mode = SIMVISOR_STALL;
    for (int k = 0; k < 3; k++) {
        memset(&r[k], 0, sizeof r[k]);
        r[k].route = &w.route;
        simvisor_request(&w.a, &d.identity.pk, DMSG_SETUP_NODE_PORT, &r[k]);
    }
    for (unsigned t = 0; t < 15000 && refused == 0; t++) {
        for (int k = 0; k < 3; k++)
            refused += r[k].replied &&
                       strstr(r[k].error, "too many requests in flight") != NULL;
        uv_run(&d.loop, UV_RUN_NOWAIT), usleep(1000);
    }
    cr_assert_eq(refused, 1, "the third request is turned away at once");

    /* Another requester (B, its own route without the stalling visor) is served meanwhile. */
    (void)w2;
    {
        dmsg_route_addr src = {.pk = w.b.id.pk, .port = 49153};
        dmsg_route_addr dst = {.pk = w.a.id.pk, .port = 2};
        static dmsg_route_hop h[2];
        static dmsg_bidi_route route;
        dmsg_route_desc_pack(route.desc, &src, &dst);
        route.keep_alive = DMSG_ROUTE_DEFAULT_KEEP_ALIVE_NS;
        h[0].from = w.b.id.pk;
        h[0].to = w.a.id.pk;
        h[0].tp_id[0] = 9;
        h[1].from = w.a.id.pk;
        h[1].to = w.b.id.pk;
        h[1].tp_id[0] = 10;
        route.forward = (dmsg_gob_slice){&h[0], 1};
        route.reverse = (dmsg_gob_slice){&h[1], 1};
        memset(&other, 0, sizeof other);
        other.route = &route;
        simvisor_request(&w.b, &d.identity.pk, DMSG_SETUP_NODE_PORT, &other);
        run_until(&other.replied, 3000);
        cr_assert(other.replied);
        cr_assert_str_eq(other.error, "");
    }
    for (int k = 0; k < 3; k++)
        run_until(&r[k].closed, 6000);
    assert_nothing_left(w.all, 3);
    stop_all(w.all, 3);
}

struct rows {
    int n;
    char states[8][16];
    char errors[8][256];
    int64_t finished[8];
    int64_t ids[8];
};

static int take_row(void *user, const struct store_route_setup *r)
{
    struct rows *rows = user;

    if (rows->n < 8) {
        snprintf(rows->states[rows->n], sizeof rows->states[0], "%s", r->state);
        snprintf(rows->errors[rows->n], sizeof rows->errors[0], "%s", r->error);
        rows->finished[rows->n] = r->finished_at_ms;
        rows->ids[rows->n] = r->id;
    }
    rows->n++;
    return 0;
}

struct events {
    int n;
    char states[8][16];
};

static int ignore_row(void *user, const struct store_route_setup *r)
{
    (void)user;
    (void)r;
    return 0;
}

static int take_event(void *user, const char *state, int64_t at_ms, const char *detail)
{
    struct events *e = user;

    (void)at_ms;
    (void)detail;
    if (e->n < 8)
        snprintf(e->states[e->n], sizeof e->states[0], "%s", state);
    e->n++;
    return 0;
}

/* Each setup is a row with its transitions; the metrics count them by result. */
Test(setup_node, setups_are_recorded_with_their_transitions_and_counted)
{
    static struct world w;
    static struct sv_request r;
    static struct metrics_snapshot snap;
    struct rows rows = {0};
    struct events ev = {0};

    world_start(&w, true);
    world_route(&w, true);
    memset(&r, 0, sizeof r);
    r.route = &w.route;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 8000);
    cr_assert_str_eq(r.error, "");
    w.b.mode = SIMVISOR_FAIL_EDGE;
    memset(&r, 0, sizeof r);
    r.route = &w.route;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 8000);
    cr_assert_neq(r.error[0], '\0');
    assert_nothing_left(w.all, 3);

    cr_assert_eq(store_route_setup_list(d.store, 0, 10, NULL, NULL, take_row, &rows), 0);
    cr_assert_eq(rows.n, 2);
    cr_assert_str_eq(rows.states[0], "failed", "newest first");
    cr_assert_str_eq(rows.errors[0], r.error);
    cr_assert_str_eq(rows.states[1], "done");
    cr_assert_gt(rows.finished[1], 0);
    cr_assert_eq(store_route_setup_get(d.store, rows.ids[1], ignore_row, take_event, &ev), 0);
    cr_assert_eq(ev.n, 4);
    cr_assert_str_eq(ev.states[0], "received");
    cr_assert_str_eq(ev.states[1], "reserving");
    cr_assert_str_eq(ev.states[2], "installing");
    cr_assert_str_eq(ev.states[3], "done");

    /* Retention: finished setups older than the bound go, with their events. */
    {
        int64_t removed = 0;
        struct rows after = {0};
        cr_assert_eq(store_route_setup_expire(d.store, rows.finished[1], &removed), 0);
        cr_assert_eq(removed, 0, "nothing finished before the first one");
        cr_assert_eq(store_route_setup_expire(d.store, (int64_t)time(NULL) * 1000 + 1000,
                                              &removed), 0);
        cr_assert_eq(removed, 2);
        cr_assert_eq(store_route_setup_list(d.store, 0, 10, NULL, NULL, take_row, &after), 0);
        cr_assert_eq(after.n, 0);
    }

    metrics_collect(d.metrics, &snap);
    cr_assert_eq(snap.route_setups[MRS_OK], 1);
    cr_assert_eq(snap.route_setups[MRS_ERROR], 1);
    cr_assert_eq(snap.rs_in_flight, 0);
    cr_assert_eq(snap.rs_count, 2);
    stop_all(w.all, 3);
}

/* Older clients look up a client entry for the destination: our one entry has our server part
 * and a client part delegating to ourselves. */
Test(setup_node, our_discovery_entry_has_a_server_and_a_self_delegating_client_part)
{
    char hex[DMSG_PK_HEX_LEN + 1];
    char *text = NULL;
    json_t *entry, *delegated;
    json_error_t jerr;
    int rc = DMSG_ENOTFOUND;

    start_daemon(false);
    dmsg_pk_to_hex(&d.identity.pk, hex);
    for (int t = 0; t < 25000; t++) {
        free(text);
        text = NULL;
        rc = store_disc_get(d.store, hex, (int64_t)time(NULL), &text, NULL, NULL, NULL);
        if (rc == 0 && strstr(text, "delegated_servers") != NULL)
            break;
        uv_run(&d.loop, UV_RUN_NOWAIT), usleep(1000);
    }
    cr_assert_eq(rc, 0);
    entry = json_loads(text, 0, &jerr);
    cr_assert_not_null(entry, "%s", text);
    cr_assert(json_is_object(json_object_get(entry, "server")), "%s", text);
    delegated = vec_get(json_object_get(entry, "client"), "delegated_servers");
    cr_assert(json_is_array(delegated), "%s", text);
    cr_assert_eq(json_array_size(delegated), 1);
    cr_assert_str_eq(json_string_value(json_array_get(delegated, 0)), hex);
    json_decref(entry);
    free(text);
    dmsgd_stop(&d);
    cr_assert_eq(dmsgd_run(&d), 0);
    dmsgd_free(&d);
}

/* Two meshed servers: the setup node on d; the initiator A and the responder B hold sessions
 * to d2 only, the intermediary I to d. A reaches d:36 through d2 and the mesh, and d dials A
 * and B through its peer link: the same rules come out as on one server. */
Test(setup_node, visors_on_two_meshed_servers)
{
    static struct world w;
    static struct sv_request r;
    struct mesh_peer_info info;
    char err[256];

    start_daemon(true);
    start_daemon_in(&d2, state_dir2, false, &server2_ref);
    d2_running = true;
    cr_assert_eq(mesh_peer_add(d.mesh, &d2.identity.pk, server2_ref.address, NULL, &info, err,
                               sizeof err), 0, "%s", err);
    cr_assert_eq(mesh_peer_add(d2.mesh, &d.identity.pk, server_ref.address, NULL, &info, err,
                               sizeof err), 0, "%s", err);
    for (int t = 0; t < 25000 && (mesh_peers_up(d.mesh) == 0 || mesh_peers_up(d2.mesh) == 0); t++)
        pump();
    cr_assert_gt(mesh_peers_up(d.mesh), 0);
    cr_assert_gt(mesh_peers_up(d2.mesh), 0);

    simvisor_start(&w.a, &d2.loop, NULL, &server2_ref);
    simvisor_start(&w.b, &d2.loop, NULL, &server2_ref);
    simvisor_start(&w.i, &d.loop, NULL, &server_ref);
    w.all[0] = &w.a;
    w.all[1] = &w.b;
    w.all[2] = &w.i;
    wait_sessions(w.all, 3);
    cr_assert_null(server_find_session(d.server, &w.a.id.pk), "A is on the other server");
    world_route(&w, true);

    memset(&r, 0, sizeof r);
    r.route = &w.route;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 15000);
    cr_assert(r.replied, "dial err %d code %u", r.dial_err, r.wire_code);
    cr_assert_str_eq(r.error, "");
    cr_assert(w.b.got_edge, "the responder across the mesh got its rules");
    cr_assert_eq(w.i.nrules, 2);
    cr_assert(dmsg_pk_equal(&w.b.src_seen, &d.identity.pk), "dialed as the setup node's key");
    cr_assert_eq(w.a.reserve_calls, 1);
    cr_assert_eq(w.b.reserve_calls, 1);
    cr_assert_eq(w.i.reserve_calls, 1);
    assert_nothing_left(w.all, 3);

    /* An intermediary no server holds: tried here, then through the peer, which closes the
     * stream; then the reference's not-found error, and nothing left. */
    {
        dmsg_pk ghost;
        dmsg_sk ghost_sk;
        struct relay_stats rst;
        char want[256], hex[DMSG_PK_HEX_LEN + 1];
        cr_assert_eq(dmsg_keypair_generate(&ghost, &ghost_sk, &w.a.id.rng), 0);
        w.hops[0][0].to = ghost;
        w.hops[0][1].from = ghost;
        w.hops[1][0].to = ghost;
        w.hops[1][1].from = ghost;
        memset(&r, 0, sizeof r);
        r.route = &w.route;
        request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 15000);
        cr_assert(r.replied);
        dmsg_pk_to_hex(&ghost, hex);
        snprintf(want, sizeof want, "failed to instantiate route id reserver: a dial attempt "
                 "failed with: dial %s@136: dmsg error 100 - entry is not found in discovery",
                 hex);
        cr_assert_str_eq(r.error, want);
        relay_get_stats(d2.relay, &rst);
        cr_assert_geq(rst.counters[RELAY_FAIL_NO_DESTINATION], 1, "the peer was asked");
        assert_nothing_left(w.all, 3);
    }
    stop_all(w.all, 3);
}

/* The global cap: with one setup allowed in flight, a second requester is turned away at once
 * while the first is running, and served once it ended. */
Test(setup_node, the_global_in_flight_cap_turns_requests_away_at_once)
{
    static struct world w;
    static struct sv_request first, second;
    struct setup_node_limits lim;

    world_start(&w, true);
    setup_node_limits_default(&lim);
    lim.max_in_flight = 1;
    lim.deadline_ms = 1500;
    setup_node_set_limits(d.setup_node, &lim);
    world_route(&w, true);
    w.i.mode = SIMVISOR_STALL;
    memset(&first, 0, sizeof first);
    first.route = &w.route;
    simvisor_request(&w.a, &d.identity.pk, DMSG_SETUP_NODE_PORT, &first);
    for (int t = 0; t < 15000 && w.i.conns_total == 0; t++)
        pump();
    cr_assert_eq(w.i.conns_total, 1, "the first setup is under way");
    memset(&second, 0, sizeof second);
    second.route = &w.route;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &second, 1000);
    cr_assert(second.replied);
    cr_assert_str_eq(second.error, "too many requests in flight");
    run_until(&first.closed, 5000);
    cr_assert_not(first.replied, "the stalled one ends at its deadline");
    w.i.mode = SIMVISOR_NORMAL;
    memset(&second, 0, sizeof second);
    second.route = &w.route;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &second, 5000);
    cr_assert_str_eq(second.error, "");
    assert_nothing_left(w.all, 3);
    stop_all(w.all, 3);
}

static int count_fds(void)
{
    char path[64];
    int n = 0;

    for (int fd = 0; fd < 4096; fd++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        n += access(path, F_OK) == 0;
    }
    return n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Many setups in a row (one intermediary, all visors on this server): every one succeeds, and
 * the process's descriptors are where they were before. Prints the rate and latencies (the
 * figures of the closing note). */
Test(setup_node, many_setups_leave_nothing_behind)
{
    enum { N = 300 };
    static struct world w;
    static struct sv_request r;
    static uint64_t lat[N];
    struct setup_node_stats st;
    uint64_t t0, start;
    int fds_before;

    world_start(&w, true);
    world_route(&w, true);
    memset(&r, 0, sizeof r); /* a first setup warms every path up */
    r.route = &w.route;
    request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 5000);
    cr_assert_str_eq(r.error, "");
    assert_nothing_left(w.all, 3);
    fds_before = count_fds();
    start = uv_hrtime();
    for (int k = 0; k < N; k++) {
        memset(&r, 0, sizeof r);
        r.route = &w.route;
        t0 = uv_hrtime();
        request_and_wait(&w.a, DMSG_SETUP_NODE_PORT, &r, 5000);
        cr_assert(r.replied, "setup %d", k);
        cr_assert_str_eq(r.error, "", "setup %d", k);
        lat[k] = uv_hrtime() - t0;
    }
    double secs = (double)(uv_hrtime() - start) / 1e9;
    assert_nothing_left(w.all, 3);
    setup_node_get_stats(d.setup_node, &st);
    cr_assert_eq(st.results[SETUP_RESULT_OK], N + 1);
    cr_assert_eq(st.streams, 0, "every port-36 stream closed");
    /* The daemon's own discovery registration may hold an HTTP socket for a moment. */
    for (uint64_t until = uv_hrtime() + 3000000000u; count_fds() != fds_before &&
                                                     uv_hrtime() < until;)
        pump();
    cr_assert_eq(count_fds(), fds_before, "descriptors back where they were: %d -> %d",
                 fds_before, count_fds());
    qsort(lat, N, sizeof lat[0], cmp_u64);
    fprintf(stderr, "setup_node bench: %d setups (1 intermediary, one server, sanitizers on) in "
            "%.2f s: %.0f/s sequential, p50 %.2f ms, p99 %.2f ms\n", N, secs, N / secs,
            (double)lat[N / 2] / 1e6, (double)lat[N * 99 / 100] / 1e6);
    stop_all(w.all, 3);
}

/* Streams that never send a call are bounded per requester: beyond 4 per allowed setup they
 * are refused at once (401), and they go when idle. */
Test(setup_node, idle_streams_from_one_key_are_capped)
{
    enum { N = 10 };
    static struct world w;
    static struct sv_request r[N];
    static const uint8_t nothing[] = {0x00};
    int refused = 0, done = 0;

    world_start(&w, true);
    for (int k = 0; k < N; k++) {
        memset(&r[k], 0, sizeof r[k]);
        r[k].raw = nothing; /* one byte of a call that never completes */
        r[k].raw_len = 0;
        simvisor_request(&w.a, &d.identity.pk, DMSG_SETUP_NODE_PORT, &r[k]);
    }
    for (uint64_t until = uv_hrtime() + 5000000000u; done < N && uv_hrtime() < until;) {
        pump();
        done = 0;
        for (int k = 0; k < N; k++)
            done += r[k].dial_done;
    }
    cr_assert_eq(done, N);
    for (int k = 0; k < N; k++)
        refused += r[k].dial_err == DMSG_EWIRE && r[k].wire_code == DMSG_WIRE_ACCEPT_CHAN_MAXED;
    cr_assert_eq(refused, N - 8, "2 setups x 4 streams are held, the rest refused");
    stop_all(w.all, 3);
}

/* ---- the setup node's streams in the admin API and the metrics ---- */

struct http_body {
    char buf[65536];
    size_t len;
};

static size_t on_http_body(char *data, size_t size, size_t n, void *user)
{
    struct http_body *b = user;
    size_t len = size * n, room = sizeof b->buf - 1 - b->len;

    memcpy(b->buf + b->len, data, len < room ? len : room);
    b->len += len < room ? len : room;
    b->buf[b->len] = '\0';
    return len;
}

/* GET on the admin socket of d; the loop runs while curl waits (one thread serves both). */
static void admin_get(const char *path, struct http_body *body)
{
    char url[256], sock[160];
    CURL *c = curl_easy_init();
    CURLM *m = curl_multi_init();
    long status = 0;
    int running = 1;
    uint64_t until = uv_hrtime() + 10000000000ull;

    snprintf(url, sizeof url, "http://localhost%s", path);
    snprintf(sock, sizeof sock, "%s/admin.sock", state_dir);
    memset(body, 0, sizeof *body);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_http_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_multi_add_handle(m, c);
    while (running && uv_hrtime() < until) {
        curl_multi_perform(m, &running);
        pump();
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(m, c);
    curl_easy_cleanup(c);
    curl_multi_cleanup(m);
    cr_assert_eq(status, 200, "GET %s: %ld %s", path, status, body->buf);
}

static json_t *admin_get_json(const char *path)
{
    static struct http_body body;
    json_error_t err;
    json_t *j;

    admin_get(path, &body);
    j = json_loads(body.buf, 0, &err);
    cr_assert_not_null(j, "GET %s: %s", path, err.text);
    return j;
}

static bool end_is(json_t *end, const dmsg_pk *pk, int port)
{
    char hex[DMSG_PK_HEX_LEN + 1];

    dmsg_pk_to_hex(pk, hex);
    return strcmp(json_string_value(json_object_get(end, "public_key")), hex) == 0 &&
           (port < 0 || json_integer_value(json_object_get(end, "port")) == port);
}

/* The row whose responder is pk:port, or NULL. */
static json_t *row_to(json_t *list, const dmsg_pk *pk, int port)
{
    size_t i;
    json_t *row;

    json_array_foreach(json_object_get(list, "streams"), i, row)
        if (end_is(json_object_get(row, "responder"), pk, port))
            return row;
    return NULL;
}

static json_int_t streams_total(const char *query)
{
    char path[256];
    json_t *j;
    json_int_t total;

    snprintf(path, sizeof path, "/v1/streams%s", query);
    j = admin_get_json(path);
    total = json_integer_value(json_object_get(j, "total"));
    cr_assert_eq((json_int_t)json_array_size(json_object_get(j, "streams")), total,
                 "one page holds them all");
    json_decref(j);
    return total;
}

static uint64_t service_gauge(void)
{
    static struct metrics_snapshot snap;

    metrics_collect(d.metrics, &snap);
    return snap.streams[MP_SERVICE];
}

/* The requester's port-36 stream and one dial per visor, while the setup waits on a stalled
 * intermediary: listed as path "service" with their two ends, and counted by the gauge. */
static void assert_setup_streams_listed(struct world *w)
{
    const struct simvisor *visors[3] = {&w->a, &w->i, &w->b};
    char hex[DMSG_PK_HEX_LEN + 1], query[128];
    json_t *all = admin_get_json("/v1/streams?path=service"), *row;
    size_t i;

    cr_assert_eq(json_integer_value(json_object_get(all, "total")), 4, "%s",
                 json_dumps(all, 0));
    row = row_to(all, &d.identity.pk, DMSG_SETUP_NODE_PORT);
    cr_assert_not_null(row, "the requester's stream");
    cr_assert(end_is(json_object_get(row, "initiator"), &w->a.id.pk, -1));
    cr_assert_gt(json_integer_value(json_object_get(json_object_get(row, "initiator"), "port")),
                 0);
    cr_assert_str_eq(json_string_value(json_object_get(row, "path")), "service");
    cr_assert_str_eq(json_string_value(json_object_get(row, "state")), "relaying");
    cr_assert(json_is_null(json_object_get(row, "via_peer")));
    cr_assert_gt(json_integer_value(json_object_get(row, "bytes_forward")), 0, "the call");
    for (size_t k = 0; k < 3; k++) {
        row = row_to(all, &visors[k]->id.pk, DMSG_VISOR_SETUP_PORT);
        cr_assert_not_null(row, "the dial to visor %zu", k);
        cr_assert(end_is(json_object_get(row, "initiator"), &d.identity.pk, -1));
        cr_assert_geq(json_integer_value(json_object_get(json_object_get(row, "initiator"),
                                                         "port")), 49153);
        cr_assert_str_eq(json_string_value(json_object_get(row, "path")), "service");
        cr_assert_str_eq(json_string_value(json_object_get(row, "state")), "relaying");
        cr_assert(json_is_null(json_object_get(row, "via_peer")));
        cr_assert_gt(json_integer_value(json_object_get(row, "bytes_forward")), 0, "ReserveIDs");
    }
    cr_assert_gt(json_integer_value(json_object_get(row_to(all, &w->a.id.pk, 136),
                                                    "bytes_reverse")), 0, "A answered");
    cr_assert_eq(json_integer_value(json_object_get(row_to(all, &w->i.id.pk, 136),
                                                    "bytes_reverse")), 0, "I stalls");
    /* Ids are distinct (the relay's sequence) and the list is ordered by them. */
    for (i = 1; i < 4; i++)
        cr_assert_lt(json_integer_value(json_object_get(json_array_get(
                         json_object_get(all, "streams"), i - 1), "id")),
                     json_integer_value(json_object_get(json_array_get(
                         json_object_get(all, "streams"), i), "id")));
    json_decref(all);

    cr_assert_eq(streams_total(""), 4, "no relayed stream besides them");
    cr_assert_eq(streams_total("?path=local"), 0);
    cr_assert_eq(streams_total("?path=mesh"), 0);
    dmsg_pk_to_hex(&w->a.id.pk, hex);
    snprintf(query, sizeof query, "?pk=%s", hex);
    cr_assert_eq(streams_total(query), 2, "A's request and the dial to A");
    dmsg_pk_to_hex(&w->i.id.pk, hex);
    snprintf(query, sizeof query, "?pk=%s&path=service", hex);
    cr_assert_eq(streams_total(query), 1);
    {
        json_t *p1 = admin_get_json("/v1/streams?limit=3"), *p2;
        char next[64];
        cr_assert_eq(json_array_size(json_object_get(p1, "streams")), 3);
        cr_assert_eq(json_integer_value(json_object_get(p1, "total")), 4);
        snprintf(next, sizeof next, "/v1/streams?limit=3&after=%lld",
                 (long long)json_integer_value(json_object_get(p1, "next")));
        p2 = admin_get_json(next);
        cr_assert_eq(json_array_size(json_object_get(p2, "streams")), 1);
        cr_assert(json_is_null(json_object_get(p2, "next")));
        json_decref(p1);
        json_decref(p2);
    }
    /* The session's own view lists what runs on it: A's request and the dial to A. */
    {
        char path[160];
        json_t *s;
        dmsg_pk_to_hex(&w->a.id.pk, hex);
        snprintf(path, sizeof path, "/v1/sessions/%s", hex);
        s = admin_get_json(path);
        cr_assert_eq(json_array_size(json_object_get(s, "streams")), 2, "%s", json_dumps(s, 0));
        json_decref(s);
    }
    cr_assert_eq(service_gauge(), 4);
}

/* A -> I -> B with I stalling and a deadline of 6 s: returns once all three visors hold the
 * setup node's dial (A and B have answered ReserveIDs), the setup still in flight. */
static void stall_setup_until_dialed(struct world *w, struct sv_request *r, unsigned spins)
{
    struct setup_node_limits lim;
    struct setup_node_stats st;

    setup_node_limits_default(&lim);
    lim.deadline_ms = 6000;
    setup_node_set_limits(d.setup_node, &lim);
    world_route(w, true);
    w->i.mode = SIMVISOR_STALL;
    memset(r, 0, sizeof *r);
    r->route = &w->route;
    simvisor_request(&w->a, &d.identity.pk, DMSG_SETUP_NODE_PORT, r);
    for (unsigned t = 0; t < spins; t++) {
        setup_node_get_stats(d.setup_node, &st);
        if (st.visor_conns == 3 && w->a.reserve_calls == 1 && w->b.reserve_calls == 1 &&
            w->i.conns == 1)
            break;
        pump();
    }
    cr_assert_eq(st.in_flight, 1);
    cr_assert_eq(st.visor_conns, 3, "every visor dialed");
}

Test(setup_node, a_setup_in_flight_shows_its_streams_in_the_api_and_the_gauge)
{
    static struct world w;
    static struct sv_request r;
    struct setup_node_stats st;
    struct http_body text;

    world_start(&w, true);
    cr_assert_eq(streams_total("?path=service"), 0);
    cr_assert_eq(service_gauge(), 0);
    stall_setup_until_dialed(&w, &r, 25000);
    assert_setup_streams_listed(&w);
    admin_get("/metrics", &text);
    cr_assert_not_null(strstr(text.buf, "dmsgd_streams{path=\"service\"} 4\n"), "%s", text.buf);

    /* At the deadline the setup ends: nothing of it is listed or counted. */
    run_until(&r.closed, 10000);
    cr_assert(r.closed);
    assert_nothing_left(w.all, 3);
    for (unsigned t = 0; t < 15000; t++) {
        setup_node_get_stats(d.setup_node, &st);
        if (st.streams == 0)
            break;
        pump();
    }
    cr_assert_eq(st.streams, 0, "the requester's stream is gone");
    cr_assert_eq(streams_total("?path=service"), 0);
    cr_assert_eq(streams_total(""), 0);
    cr_assert_eq(service_gauge(), 0);
    stop_all(w.all, 3);
}

/* Across the mesh: A (the requester) and B sit on the second server, so A's stream and the
 * dials to A and B go through that peer and name it; the dial to I, on this server, does not. */
Test(setup_node, service_streams_through_a_peer_name_it)
{
    static struct world w;
    static struct sv_request r;
    struct mesh_peer_info info;
    char err[256], peer[DMSG_PK_HEX_LEN + 1];
    const struct simvisor *via_peer[3] = {&w.a, &w.b, &w.i};
    json_t *all, *row;

    start_daemon(true);
    start_daemon_in(&d2, state_dir2, false, &server2_ref);
    d2_running = true;
    cr_assert_eq(mesh_peer_add(d.mesh, &d2.identity.pk, server2_ref.address, NULL, &info, err,
                               sizeof err), 0, "%s", err);
    cr_assert_eq(mesh_peer_add(d2.mesh, &d.identity.pk, server_ref.address, NULL, &info, err,
                               sizeof err), 0, "%s", err);
    for (int t = 0; t < 25000 && (mesh_peers_up(d.mesh) == 0 || mesh_peers_up(d2.mesh) == 0); t++)
        pump();
    simvisor_start(&w.a, &d2.loop, NULL, &server2_ref);
    simvisor_start(&w.b, &d2.loop, NULL, &server2_ref);
    simvisor_start(&w.i, &d.loop, NULL, &server_ref);
    w.all[0] = &w.a;
    w.all[1] = &w.b;
    w.all[2] = &w.i;
    wait_sessions(w.all, 3);
    stall_setup_until_dialed(&w, &r, 50000);

    all = admin_get_json("/v1/streams?path=service");
    cr_assert_eq(json_integer_value(json_object_get(all, "total")), 4, "%s", json_dumps(all, 0));
    dmsg_pk_to_hex(&d2.identity.pk, peer);
    row = row_to(all, &d.identity.pk, DMSG_SETUP_NODE_PORT);
    cr_assert_not_null(row);
    cr_assert(end_is(json_object_get(row, "initiator"), &w.a.id.pk, -1));
    cr_assert_str_eq(json_string_value(json_object_get(row, "via_peer")), peer);
    for (size_t k = 0; k < 3; k++) {
        row = row_to(all, &via_peer[k]->id.pk, DMSG_VISOR_SETUP_PORT);
        cr_assert_not_null(row, "the dial to visor %zu", k);
        if (k < 2)
            cr_assert_str_eq(json_string_value(json_object_get(row, "via_peer")), peer);
        else
            cr_assert(json_is_null(json_object_get(row, "via_peer")), "I is on this server");
    }
    json_decref(all);
    cr_assert_eq(service_gauge(), 4);

    run_until(&r.closed, 10000);
    cr_assert(r.closed);
    assert_nothing_left(w.all, 3);
    for (unsigned t = 0; t < 15000 && service_gauge() > 0; t++)
        pump();
    cr_assert_eq(streams_total("?path=service"), 0);
    stop_all(w.all, 3);
}
