/* Mesh benchmark (issue 4): real dmsgd processes on loopback, clients in this process.
 *
 *   bench_mesh --dmsgd PATH [--mib N] [--dials N] [--links N]
 *
 * Two servers A and B list each other. A dialer client holds a session to A only; listener
 * clients hold one session each, to A (direct) or to B (through the mesh). In the same run:
 *   - throughput of one stream: N MiB (default 256) dialer -> listener, direct and via the mesh,
 *     and their ratio;
 *   - stream setup: N sequential dials (default 500, paced at 90/s) each way, p50/p99/max
 *     from the dial call to the dial callback;
 *   - memory per peer link: a third server C gets N peers (default 64), all played by this
 *     process (one listening socket and one server-role session each); C's RSS before and after
 *     the links came up, per link.
 * Figures are printed, never asserted. Use a release build: sanitizers inflate time and RSS. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "dmsg/client.h"
#include "dmsg/error.h"
#include "dmsg/session.h"

#define CHUNK (64u * 1024u)
#define MAX_LINKS 128

struct server_proc {
    const char *name;
    dmsg_pk pk;
    dmsg_sk sk;
    unsigned port, disc_port;
    char dir[256];
    char cfg[300];
    pid_t pid;
};

struct endpoint {
    dmsg_client *client;
    dmsg_listener *sink;      /* port 10: counts bytes */
    dmsg_listener *setup;     /* port 11: accepts and closes */
    dmsg_pk pk;
    uint64_t received;
    bool up;
};

static struct {
    uv_loop_t *loop;
    const char *dmsgd;
    unsigned mib, dials, links;
    char dir[128];
    struct server_proc a, b, c;
    struct endpoint dialer, direct, meshed;
    /* current measurement */
    bool waiting;
    dmsg_conn *conn;
    uint64_t to_send, sent, target;
    struct endpoint *receiver;
    double t_start, t_end;
    int dial_err;
    uint16_t dial_code;
    /* fake peers of C */
    uv_tcp_t listeners[MAX_LINKS];
    dmsg_identity peer_ids[MAX_LINKS];
    dmsg_session *peer_sessions[MAX_LINKS];
    unsigned peers_ready;
    uint8_t chunk[CHUNK];
} B;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void remove_workdir(void)
{
    char cmd[200];

    if (B.dir[0] == '\0')
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", B.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_mesh: could not remove %s\n", B.dir);
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_mesh: %s: %s\n", what, err ? dmsg_strerror(err) : "failed");
    if (B.a.pid > 0)
        kill(B.a.pid, SIGKILL);
    if (B.b.pid > 0)
        kill(B.b.pid, SIGKILL);
    if (B.c.pid > 0)
        kill(B.c.pid, SIGKILL);
    remove_workdir();
    exit(1);
}

/* Runs the loop until done() or the deadline. */
static void run_until(bool (*done)(void), double seconds, const char *what)
{
    double end = now_s() + seconds;

    while (!done()) {
        if (now_s() > end)
            die(what, DMSG_ETIMEOUT);
        uv_run(B.loop, UV_RUN_ONCE);
    }
}

static unsigned free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        die("free port", DMSG_EIO);
    close(fd);
    return ntohs(sa.sin_port);
}

static bool can_connect(unsigned port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(0x7f000001)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;

    if (fd >= 0)
        close(fd);
    return ok;
}

static void keypair(dmsg_pk *pk, dmsg_sk *sk)
{
    dmsg_rng rng = dmsg_rng_system();

    if (dmsg_keypair_generate(pk, sk, &rng) != 0)
        die("keypair", DMSG_EKEY);
}

/* ---------------------------------------------------------------------------------------------
 * Servers */

static void write_config(struct server_proc *s, const struct server_proc **peers, size_t n,
                         const dmsg_pk *extra_pks, unsigned *extra_ports, size_t n_extra)
{
    char pk[DMSG_PK_HEX_LEN + 1], sk[DMSG_SK_HEX_LEN + 1];
    FILE *f = fopen(s->cfg, "w");

    if (f == NULL)
        die("config file", DMSG_EIO);
    dmsg_pk_to_hex(&s->pk, pk);
    dmsg_sk_to_hex(&s->sk, sk);
    fprintf(f, "{\"public_key\":\"%s\",\"secret_key\":\"%s\",\"local_address\":\"127.0.0.1:%u\","
               "\"embedded_discovery_address\":\"127.0.0.1:%u\",\"state_dir\":\"%s/state\","
               "\"log_level\":\"warn\",\"peers\":[",
            pk, sk, s->port, s->disc_port, s->dir);
    for (size_t i = 0; i < n; i++) {
        dmsg_pk_to_hex(&peers[i]->pk, pk);
        fprintf(f, "%s{\"public_key\":\"%s\",\"address\":\"127.0.0.1:%u\"}", i ? "," : "", pk,
                peers[i]->port);
    }
    for (size_t i = 0; i < n_extra; i++) {
        dmsg_pk_to_hex(&extra_pks[i], pk);
        fprintf(f, "%s{\"public_key\":\"%s\",\"address\":\"127.0.0.1:%u\"}", i + n ? "," : "",
                pk, extra_ports[i]);
    }
    fprintf(f, "]}\n");
    fclose(f);
}

static void server_init(struct server_proc *s, const char *name)
{
    s->name = name;
    keypair(&s->pk, &s->sk);
    s->port = free_port();
    s->disc_port = free_port();
    snprintf(s->dir, sizeof s->dir, "%s/%s", B.dir, name);
    mkdir(s->dir, 0700);
    snprintf(s->cfg, sizeof s->cfg, "%s/config.json", s->dir);
}

static void server_start(struct server_proc *s)
{
    char log_path[300];
    double end = now_s() + 20;

    snprintf(log_path, sizeof log_path, "%s/log.txt", s->dir);
    s->pid = fork();
    if (s->pid < 0)
        die("fork", DMSG_EIO);
    if (s->pid == 0) {
        FILE *lf = fopen(log_path, "w");
        if (lf != NULL) {
            dup2(fileno(lf), 1);
            dup2(fileno(lf), 2);
        }
        execl(B.dmsgd, B.dmsgd, "-c", s->cfg, (char *)NULL);
        _exit(127);
    }
    while (!can_connect(s->port)) {
        if (now_s() > end)
            die("server did not listen", DMSG_ETIMEOUT);
        usleep(20000);
    }
}

/* utime + stime of a process, seconds. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long ut = 0, st = 0;
    FILE *f;
    char *p;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fgets(buf, sizeof buf, f) != NULL && (p = strrchr(buf, ')')) != NULL)
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
    fclose(f);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* ---------------------------------------------------------------------------------------------
 * Clients */

static void on_client_event(dmsg_client *c, dmsg_client_event ev, const dmsg_pk *server, int err,
                            void *ctx)
{
    struct endpoint *e = ctx;

    (void)c;
    (void)server;
    (void)err;
    if (ev == DMSG_CLIENT_SESSION_UP)
        e->up = true;
}

static const dmsg_client_callbacks client_cb = {.on_event = on_client_event};

static void sink_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    struct endpoint *e = ctx;

    (void)data;
    e->received += len;
    dmsg_conn_consume(c, len);
    if (B.receiver == e && e->received >= B.target && B.waiting) {
        B.t_end = now_s();
        B.waiting = false;
    }
}

static void conn_eof(dmsg_conn *c, void *ctx)
{
    (void)ctx;
    dmsg_conn_close(c);
}

static void conn_closed(dmsg_conn *c, int err, void *ctx)
{
    (void)ctx;
    if (c == B.conn) {
        if (B.waiting && B.receiver != NULL)
            fprintf(stderr, "bench_mesh: stream closed early: %s\n", dmsg_strerror(err));
        B.conn = NULL;
    }
}

static const dmsg_conn_callbacks sink_cb = {
    .on_data = sink_data, .on_eof = conn_eof, .on_writable = NULL, .on_close = conn_closed};

static void on_sink(dmsg_listener *l, void *ctx)
{
    dmsg_conn *c;

    while (dmsg_listener_accept(l, &sink_cb, ctx, &c) == 0)
        ;
}

static void on_setup(dmsg_listener *l, void *ctx)
{
    dmsg_conn *c;

    while (dmsg_listener_accept(l, &sink_cb, ctx, &c) == 0)
        dmsg_conn_close(c);
}

static void endpoint_start(struct endpoint *e, const struct server_proc *s, bool listen)
{
    dmsg_client_config cfg;
    dmsg_server_ref ref;
    dmsg_identity id;
    int rc;

    keypair(&id.pk, &id.sk);
    id.rng = dmsg_rng_system();
    e->pk = id.pk;
    memset(&ref, 0, sizeof ref);
    ref.pk = s->pk;
    snprintf(ref.address, sizeof ref.address, "127.0.0.1:%u", s->port);
    dmsg_client_config_default(&cfg);
    cfg.servers = &ref;
    cfg.n_servers = 1;
    rc = dmsg_client_start(B.loop, &id, &cfg, &client_cb, e, &e->client);
    if (rc != 0)
        die("client start", rc);
    if (listen) {
        rc = dmsg_client_listen(e->client, 10, on_sink, e, &e->sink);
        if (rc == 0)
            rc = dmsg_client_listen(e->client, 11, on_setup, e, &e->setup);
        if (rc != 0)
            die("listen", rc);
    }
}

static bool all_up(void)
{
    return B.dialer.up && B.direct.up && B.meshed.up;
}

/* ---------------------------------------------------------------------------------------------
 * Throughput */

static void pump(void);

static void dialer_writable(dmsg_conn *c, void *ctx)
{
    (void)c;
    (void)ctx;
    pump();
}

static void dialer_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    (void)data;
    (void)ctx;
    dmsg_conn_consume(c, len);
}

static const dmsg_conn_callbacks dialer_cb = {.on_data = dialer_data, .on_eof = conn_eof,
                                              .on_writable = dialer_writable,
                                              .on_close = conn_closed};

static void pump(void)
{
    while (B.conn != NULL && B.sent < B.to_send &&
           dmsg_conn_write_queued(B.conn) < DMSG_CLIENT_WINDOW) {
        size_t n = B.to_send - B.sent < CHUNK ? (size_t)(B.to_send - B.sent) : CHUNK;
        int rc = dmsg_conn_write(B.conn, B.chunk, n, NULL, NULL);
        if (rc != 0)
            die("write", rc);
        B.sent += n;
    }
}

static void on_dialed(dmsg_client *c, dmsg_conn *conn, int err, uint16_t code, void *arg)
{
    (void)c;
    (void)arg;
    B.dial_err = err;
    B.dial_code = code;
    B.conn = conn;
    if (conn != NULL)
        dmsg_conn_set_callbacks(conn, &dialer_cb, NULL);
    B.t_end = now_s();
    B.waiting = false;
}

static bool not_waiting(void)
{
    return !B.waiting;
}

static int dial(struct endpoint *to, uint16_t port)
{
    dmsg_addr dst = {.pk = to->pk, .port = port};

    B.conn = NULL;
    B.waiting = true;
    B.t_start = now_s();
    if (dmsg_client_dial(B.dialer.client, &dst, on_dialed, NULL) != 0)
        die("dial", DMSG_EINVAL);
    run_until(not_waiting, 30, "dial");
    return B.dial_err;
}

static double throughput(struct endpoint *to)
{
    int rc;
    double secs;

    /* The first dial through the mesh may find the destination not yet known to A's peer. */
    for (int i = 0; (rc = dial(to, 10)) != 0 && i < 20; i++)
        usleep(100000);
    if (rc != 0)
        die("throughput dial", rc);
    B.receiver = to;
    to->received = 0;
    B.target = (uint64_t)B.mib << 20;
    B.to_send = B.target;
    B.sent = 0;
    double cpu_a = cpu_s(B.a.pid), cpu_b = cpu_s(B.b.pid), cpu_self = cpu_s(getpid());
    B.waiting = true;
    B.t_start = now_s();
    pump();
    run_until(not_waiting, 300, "throughput transfer");
    secs = B.t_end - B.t_start;
    printf("  %-8s %.2f s; CPU s: server A %.2f, server B %.2f, clients %.2f\n",
           to == &B.direct ? "direct" : "via mesh", secs, cpu_s(B.a.pid) - cpu_a,
           cpu_s(B.b.pid) - cpu_b, cpu_s(getpid()) - cpu_self);
    dmsg_conn_close(B.conn);
    B.conn = NULL;
    B.receiver = NULL;
    return (double)B.target / secs / 1e6;
}

/* ---------------------------------------------------------------------------------------------
 * Stream setup */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static void setup_latency(struct endpoint *to, const char *label)
{
    double *ms = calloc(B.dials, sizeof *ms);
    unsigned ok = 0;

    if (ms == NULL)
        die("alloc", DMSG_ENOMEM);
    for (unsigned i = 0; i < B.dials; i++) {
        /* Paced under a client session's request rate (100/s by default): the figure is the
         * setup time, not the rate limit. */
        double next = now_s() + 0.011;
        int rc = dial(to, 11);
        while (now_s() < next) {
            uv_run(B.loop, UV_RUN_NOWAIT);
            usleep(500);
        }
        if (rc != 0)
            continue;
        ms[ok++] = (B.t_end - B.t_start) * 1000.0;
        if (B.conn != NULL)
            dmsg_conn_close(B.conn);
        B.conn = NULL;
    }
    if (ok == 0)
        die("no dial succeeded", DMSG_ECLOSED);
    qsort(ms, ok, sizeof *ms, cmp_double);
    printf("stream setup %-8s %u/%u dials  p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", label, ok,
           B.dials, ms[ok / 2], ms[(size_t)(ok * 0.99)], ms[ok - 1]);
    free(ms);
}

/* ---------------------------------------------------------------------------------------------
 * Memory per peer link: this process plays C's peers */

static int on_peer_ready(dmsg_session *s, void *ctx)
{
    (void)s;
    (void)ctx;
    B.peers_ready++;
    return 0;
}

static void on_peer_stream(dmsg_session *s, dmsg_stream *st, void *ctx)
{
    (void)s;
    (void)st;
    (void)ctx; /* C's PeerAnnounce: left unanswered (reset), as older servers do */
}

static void on_peer_close(dmsg_session *s, int err, void *ctx)
{
    (void)s;
    (void)err;
    (void)ctx;
}

static const dmsg_session_callbacks peer_cb = {
    .on_ready = on_peer_ready, .on_stream = on_peer_stream, .on_close = on_peer_close};

static void on_peer_connection(uv_stream_t *server, int status)
{
    size_t i = (size_t)((uv_tcp_t *)server - B.listeners);
    dmsg_session_config cfg;
    uv_tcp_t *client;

    if (status < 0)
        return;
    client = malloc(sizeof *client);
    if (client == NULL)
        return;
    uv_tcp_init(B.loop, client);
    if (uv_accept(server, (uv_stream_t *)client) != 0) {
        uv_close((uv_handle_t *)client, (uv_close_cb)free);
        return;
    }
    dmsg_session_config_default(&cfg);
    dmsg_session_accept(B.loop, client, &B.peer_ids[i], &cfg, &peer_cb, NULL,
                        &B.peer_sessions[i]);
}

static bool peers_all_ready(void)
{
    return B.peers_ready >= B.links;
}

static void sleep_loop(double seconds)
{
    double end = now_s() + seconds;

    while (now_s() < end) {
        uv_run(B.loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
}

static void memory_per_link(void)
{
    dmsg_pk pks[MAX_LINKS];
    unsigned ports[MAX_LINKS];
    long before, after;

    server_init(&B.c, "C");
    write_config(&B.c, NULL, 0, NULL, NULL, 0);
    server_start(&B.c);
    for (unsigned i = 0; i < B.links; i++) {
        struct sockaddr_in sa;
        keypair(&B.peer_ids[i].pk, &B.peer_ids[i].sk);
        B.peer_ids[i].rng = dmsg_rng_system();
        pks[i] = B.peer_ids[i].pk;
        ports[i] = free_port();
        uv_tcp_init(B.loop, &B.listeners[i]);
        uv_ip4_addr("127.0.0.1", (int)ports[i], &sa);
        if (uv_tcp_bind(&B.listeners[i], (const struct sockaddr *)&sa, 0) != 0 ||
            uv_listen((uv_stream_t *)&B.listeners[i], 16, on_peer_connection) != 0)
            die("peer listener", DMSG_EIO);
    }
    sleep_loop(1.0);
    before = rss_kib(B.c.pid);
    write_config(&B.c, NULL, 0, pks, ports, B.links);
    kill(B.c.pid, SIGHUP);
    run_until(peers_all_ready, 30, "peer links to C's fake peers");
    sleep_loop(6.0); /* announces time out (5 s), buffers settle */
    after = rss_kib(B.c.pid);
    printf("memory per peer link: C RSS %ld KiB with no peers, %ld KiB with %u links up: "
           "%.1f KiB per link\n", before, after, B.links, (double)(after - before) / B.links);
}

/* ---------------------------------------------------------------------------------------------
 * main */

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dmsgd", required_argument, NULL, 'd'}, {"mib", required_argument, NULL, 'm'},
        {"dials", required_argument, NULL, 'n'}, {"links", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0}};
    const struct server_proc *peer_of_a[1], *peer_of_b[1];
    double direct, meshed;
    int ch;

    B.mib = 256;
    B.dials = 500;
    B.links = 64;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'd': B.dmsgd = optarg; break;
        case 'm': B.mib = (unsigned)atoi(optarg); break;
        case 'n': B.dials = (unsigned)atoi(optarg); break;
        case 'l': B.links = (unsigned)atoi(optarg); break;
        default: return 1;
        }
    }
    if (B.dmsgd == NULL || B.links > MAX_LINKS || B.mib == 0 || B.dials == 0) {
        fprintf(stderr, "usage: bench_mesh --dmsgd PATH [--mib N] [--dials N] [--links N<=%d]\n",
                MAX_LINKS);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (dmsg_cipher_init() != 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        die("init", DMSG_EINVAL);
    snprintf(B.dir, sizeof B.dir, "/tmp/bench-mesh-XXXXXX");
    if (mkdtemp(B.dir) == NULL)
        die("mkdtemp", DMSG_EIO);
    B.loop = uv_default_loop();
    memset(B.chunk, 0x5a, sizeof B.chunk);

    server_init(&B.a, "A");
    server_init(&B.b, "B");
    peer_of_a[0] = &B.b;
    peer_of_b[0] = &B.a;
    write_config(&B.a, peer_of_a, 1, NULL, NULL, 0);
    write_config(&B.b, peer_of_b, 1, NULL, NULL, 0);
    server_start(&B.a);
    server_start(&B.b);
    endpoint_start(&B.dialer, &B.a, false);
    endpoint_start(&B.direct, &B.a, true);
    endpoint_start(&B.meshed, &B.b, true);
    run_until(all_up, 20, "client sessions");
    sleep_loop(0.5);

    direct = throughput(&B.direct);
    meshed = throughput(&B.meshed);
    printf("throughput one stream, %u MiB: direct %.0f MB/s, via one peer link %.0f MB/s, "
           "ratio %.2f\n", B.mib, direct, meshed, meshed / direct);
    setup_latency(&B.direct, "direct");
    setup_latency(&B.meshed, "via mesh");
    printf("server RSS after the runs: A %ld KiB, B %ld KiB\n", rss_kib(B.a.pid),
           rss_kib(B.b.pid));
    memory_per_link();

    kill(B.a.pid, SIGKILL);
    kill(B.b.pid, SIGKILL);
    kill(B.c.pid, SIGKILL);
    waitpid(B.a.pid, NULL, 0);
    waitpid(B.b.pid, NULL, 0);
    waitpid(B.c.pid, NULL, 0);
    remove_workdir();
    fflush(stdout);
    _exit(0); /* the clients and fake peers die with the process */
}
