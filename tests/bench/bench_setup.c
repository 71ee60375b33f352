/* Route setup benchmark (issue 6): the server's setup node on DMSG port 36, driven end to end.
 *
 *   bench_setup [--runs N] [--setups N] [--churn N] [--state-root DIR]
 *
 * Two dmsgd servers run in this process on loopback (as in tests/unit/test_setup_node.c), meshed
 * with each other; the setup node is on the first. Simulated visors (tests/unit/simvisor.h)
 * hold sessions to one server each. Each setup is one DialRouteGroup call from the initiator A
 * over A -> intermediary -> responder and back, made after the previous one answered
 * (sequential). Printed, as the median of the runs: setups per second, p50 and p99 latency
 * (call dial to reply), for all visors on the setup server, for the responder on the peer and
 * for the intermediary on the peer. Then the churn: descriptors and VmRSS of this process
 * (both servers and the visors, kept connected) before and after N setups. Figures are printed,
 * never asserted; a failed setup aborts the run. Build Release: sanitizers inflate everything.
 * The servers' state dirs go under --state-root (default /tmp): every setup's transitions are
 * committed to the store, so the disk's fdatasync cost shows in the figures; a tmpfs root
 * (/dev/shm) shows the figures without it. The per-session stream request rate limit is lifted
 * (see start_server), so the figures are the setup node's own. */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp */
#include <curl/curl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* simvisor.h asserts with Criterion; here a broken invariant ends the benchmark instead. */
#define CRITERION_H_
#define BENCH_FAIL(...) (fprintf(stderr, "bench_setup: " __VA_ARGS__), fputc('\n', stderr), \
                         exit(1))
#define cr_assert(cond, ...) ((cond) ? (void)0 : BENCH_FAIL("check failed: %s", #cond))
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b))
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL)
#include "../unit/simvisor.h"

#include "config.h"
#include "dmsgd.h"
#include "mesh.h"
#include "server.h"
#include "setup_node.h"

#define MAX_RUNS 9

static struct dmsgd servers[2];
static dmsg_server_ref refs[2];
static char dirs[2][256];
static const char *state_root = "/tmp";

static void pump(void)
{
    uv_run(&servers[0].loop, UV_RUN_NOWAIT);
    uv_run(&servers[1].loop, UV_RUN_NOWAIT);
}

static bool run_until(const bool *flag, unsigned ms)
{
    uint64_t until = uv_hrtime() + (uint64_t)ms * 1000000u;

    while (!*flag && uv_hrtime() < until)
        pump();
    return *flag;
}

static void start_server(int k, bool route_setup)
{
    struct dmsgd_config cfg;
    char err[512] = "";

    snprintf(dirs[k], sizeof dirs[k], "%.200s/bench-setup%d-XXXXXX", state_root, k);
    if (mkdtemp(dirs[k]) == NULL)
        BENCH_FAIL("mkdtemp");
    config_defaults(&cfg);
    snprintf(cfg.local_address, sizeof cfg.local_address, "127.0.0.1:0");
    snprintf(cfg.embedded_discovery_address, sizeof cfg.embedded_discovery_address,
             "127.0.0.1:0");
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", dirs[k]);
    cfg.log_level = LOG_LEVEL_ERROR;
    cfg.limits.shutdown_grace_ms = 100;
    cfg.enable_route_setup = route_setup;
    /* The initiator opens one stream per setup; the default per-session request rate (100/s,
     * burst 300) would cap the measured rate, so it is lifted here. */
    cfg.limits.stream_requests_per_second = 1000000;
    cfg.limits.stream_requests_burst = 1000000;
    if (dmsgd_init(&servers[k], &cfg, "", err, sizeof err) != 0 ||
        dmsgd_start(&servers[k], err, sizeof err) != 0)
        BENCH_FAIL("server %d: %s", k, err);
    refs[k].pk = servers[k].identity.pk;
    snprintf(refs[k].address, sizeof refs[k].address, "127.0.0.1:%u",
             (unsigned)server_port(servers[k].server));
}

static void peer_servers(void)
{
    struct mesh_peer_info info;
    char err[256] = "";

    if (mesh_peer_add(servers[0].mesh, &refs[1].pk, refs[1].address, NULL, &info, err,
                      sizeof err) != 0 ||
        mesh_peer_add(servers[1].mesh, &refs[0].pk, refs[0].address, NULL, &info, err,
                      sizeof err) != 0)
        BENCH_FAIL("peering: %s", err);
    for (uint64_t until = uv_hrtime() + 10000000000u;
         (mesh_peers_up(servers[0].mesh) == 0 || mesh_peers_up(servers[1].mesh) == 0) &&
         uv_hrtime() < until;)
        pump();
    if (mesh_peers_up(servers[0].mesh) == 0 || mesh_peers_up(servers[1].mesh) == 0)
        BENCH_FAIL("the servers did not peer");
}

static void wait_session(struct simvisor *v, int k)
{
    for (uint64_t until = uv_hrtime() + 10000000000u; uv_hrtime() < until; pump())
        if (server_find_session(servers[k].server, &v->id.pk) != NULL &&
            dmsg_client_sessions(v->client, NULL, 0) > 0)
            return;
    BENCH_FAIL("a visor's session to server %d did not come up", k);
}

struct route_case {
    const char *name;
    struct simvisor *a, *i, *b;
    dmsg_route_hop hops[2][2];
    dmsg_bidi_route route;
};

/* A -> I -> B and back, ports 49153 -> 1. */
static void build_route(struct route_case *rc)
{
    dmsg_route_addr src = {.pk = rc->a->id.pk, .port = 49153};
    dmsg_route_addr dst = {.pk = rc->b->id.pk, .port = 1};

    memset(rc->hops, 0, sizeof rc->hops);
    memset(&rc->route, 0, sizeof rc->route);
    dmsg_route_desc_pack(rc->route.desc, &src, &dst);
    rc->route.keep_alive = DMSG_ROUTE_DEFAULT_KEEP_ALIVE_NS;
    for (int dir = 0; dir < 2; dir++) {
        const dmsg_pk *from = dir == 0 ? &rc->a->id.pk : &rc->b->id.pk;
        const dmsg_pk *to = dir == 0 ? &rc->b->id.pk : &rc->a->id.pk;
        rc->hops[dir][0] = (dmsg_route_hop){.from = *from, .to = rc->i->id.pk};
        rc->hops[dir][1] = (dmsg_route_hop){.from = rc->i->id.pk, .to = *to};
        rc->hops[dir][0].tp_id[0] = (uint8_t)(dir * 16 + 1);
        rc->hops[dir][1].tp_id[0] = (uint8_t)(dir * 16 + 2);
    }
    rc->route.forward = (dmsg_gob_slice){rc->hops[0], 2};
    rc->route.reverse = (dmsg_gob_slice){rc->hops[1], 2};
}

/* One setup, start to reply; returns its latency in ns. */
static uint64_t one_setup(struct route_case *rc)
{
    static struct sv_request r;
    static unsigned long done;
    uint64_t t0;

    memset(&r, 0, sizeof r);
    r.route = &rc->route;
    t0 = uv_hrtime();
    simvisor_request(rc->a, &servers[0].identity.pk, DMSG_SETUP_NODE_PORT, &r);
    if (!run_until(&r.replied, 15000) || r.error[0] != '\0')
        BENCH_FAIL("%s: setup %lu failed (replied %d, dial err %d, wire code %u): %s",
                   rc->name, done + 1, r.replied, r.dial_err, r.wire_code, r.error);
    done++;
    /* The initiator's stream closes with the reply; let it go before the next call. */
    run_until(&r.closed, 5000);
    return uv_hrtime() - t0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void bench_case(struct route_case *rc, int runs, int setups)
{
    double rate[MAX_RUNS], p50[MAX_RUNS], p99[MAX_RUNS];
    uint64_t *lat = calloc((size_t)setups, sizeof *lat);

    if (lat == NULL)
        BENCH_FAIL("out of memory");
    build_route(rc);
    for (int k = 0; k < 20; k++) /* warm every path up */
        one_setup(rc);
    for (int run = 0; run < runs; run++) {
        uint64_t start = uv_hrtime();
        for (int k = 0; k < setups; k++)
            lat[k] = one_setup(rc);
        rate[run] = setups / ((double)(uv_hrtime() - start) / 1e9);
        qsort(lat, (size_t)setups, sizeof lat[0], cmp_u64);
        p50[run] = (double)lat[setups / 2] / 1e6;
        p99[run] = (double)lat[(size_t)setups * 99 / 100] / 1e6;
    }
    printf("%-34s %8.0f setups/s   p50 %6.3f ms   p99 %6.3f ms\n", rc->name,
           median(rate, runs), median(p50, runs), median(p99, runs));
    fflush(stdout);
    free(lat);
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

static long rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Nothing of a finished setup stays in the node or at the visors. */
static void settle(struct simvisor **v, size_t n)
{
    struct setup_node_stats st;

    for (uint64_t until = uv_hrtime() + 5000000000u; uv_hrtime() < until; pump()) {
        int open = 0;
        setup_node_get_stats(servers[0].setup_node, &st);
        for (size_t k = 0; k < n; k++)
            open += v[k]->conns;
        if (st.in_flight == 0 && st.visor_conns == 0 && st.streams == 0 && open == 0)
            break;
    }
    for (uint64_t until = uv_hrtime() + 1000000000u; uv_hrtime() < until; pump())
        usleep(200);
}

static void bench_churn(struct route_case *rc, struct simvisor **v, size_t n, int setups)
{
    int fds_before, fds_after;
    long rss_before, rss_after;
    uint64_t start;

    settle(v, n);
    fds_before = count_fds();
    rss_before = rss_kib();
    start = uv_hrtime();
    for (int k = 0; k < setups; k++)
        one_setup(rc);
    double secs = (double)(uv_hrtime() - start) / 1e9;
    settle(v, n);
    /* Sockets of the servers' own discovery registrations come and go on their timers. */
    for (uint64_t until = uv_hrtime() + 5000000000u; count_fds() > fds_before &&
                                                     uv_hrtime() < until; pump())
        usleep(200);
    fds_after = count_fds();
    rss_after = rss_kib();
    printf("churn: %d setups (all on one server) in %.1f s, %.0f/s\n", setups, secs,
           setups / secs);
    printf("process fds (2 servers + 5 visors, kept connected): before %d, after %d (%+d)"
           " (waited <= 5 s)\n",
           fds_before, fds_after, fds_after - fds_before);
    printf("process VmRSS:                                       before %ld KiB, after %ld KiB "
           "(%+ld KiB)\n", rss_before, rss_after, rss_after - rss_before);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void stop_everything(struct simvisor **v, size_t n)
{
    for (size_t k = 0; k < n; k++)
        simvisor_stop(v[k]);
    for (uint64_t until = uv_hrtime() + 5000000000u; uv_hrtime() < until; pump()) {
        bool all = true;
        for (size_t k = 0; k < n; k++)
            all = all && v[k]->closed;
        if (all)
            break;
    }
    dmsgd_stop(&servers[1]);
    for (uint64_t until = uv_hrtime() + 5000000000u;
         servers[1].phase != DMSGD_STOPPED && uv_hrtime() < until;)
        pump();
    dmsgd_run(&servers[1]);
    dmsgd_free(&servers[1]);
    dmsgd_stop(&servers[0]);
    dmsgd_run(&servers[0]);
    dmsgd_free(&servers[0]);
    for (int k = 0; k < 2; k++)
        nftw(dirs[k], remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static int arg_int(int argc, char **argv, const char *name, int dflt, int lo, int hi)
{
    for (int k = 1; k + 1 < argc; k++)
        if (strcmp(argv[k], name) == 0) {
            int v = atoi(argv[k + 1]);
            if (v < lo || v > hi)
                BENCH_FAIL("%s must be in [%d, %d]", name, lo, hi);
            return v;
        }
    return dflt;
}

int main(int argc, char **argv)
{
    int runs = arg_int(argc, argv, "--runs", 3, 1, MAX_RUNS);
    int setups = arg_int(argc, argv, "--setups", 1000, 10, 1000000);
    int churn = arg_int(argc, argv, "--churn", 10000, 1, 10000000);
    static struct simvisor a, b, i, b_peer, i_peer;
    struct simvisor *all[] = {&a, &b, &i, &b_peer, &i_peer};
    static struct route_case same = {.name = "one server (A, I, B on it)", .a = &a, .i = &i,
                                     .b = &b};
    static struct route_case resp = {.name = "mesh: responder on the peer", .a = &a, .i = &i,
                                     .b = &b_peer};
    static struct route_case inter = {.name = "mesh: intermediary on the peer", .a = &a,
                                      .i = &i_peer, .b = &b};

    for (int k = 1; k + 1 < argc; k++)
        if (strcmp(argv[k], "--state-root") == 0)
            state_root = argv[k + 1];
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        BENCH_FAIL("curl init");
    start_server(0, true);
    start_server(1, false);
    peer_servers();
    simvisor_start(&a, &servers[0].loop, NULL, &refs[0]);
    simvisor_start(&b, &servers[0].loop, NULL, &refs[0]);
    simvisor_start(&i, &servers[0].loop, NULL, &refs[0]);
    simvisor_start(&b_peer, &servers[1].loop, NULL, &refs[1]);
    simvisor_start(&i_peer, &servers[1].loop, NULL, &refs[1]);
    for (size_t k = 0; k < 5; k++)
        wait_session(all[k], k < 3 ? 0 : 1);

    printf("bench_setup: in-process dmsgd x2 (meshed), setup node on the first; sequential "
           "DialRouteGroup A->I->B, median of %d runs x %d setups; state under %s; request rate "
           "limit lifted\n", runs, setups, state_root);
    bench_case(&same, runs, setups);
    bench_case(&resp, runs, setups);
    bench_case(&inter, runs, setups);
    bench_churn(&same, all, 5, churn);
    stop_everything(all, 5);
    curl_global_cleanup();
    return 0;
}
