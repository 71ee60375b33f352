/* bench_relay: what a DMSG server costs, measured from outside. Points at any DMSG server by
 * key and address (dmsgd or the Go reference), and prints, each as the median of several runs:
 *
 *   - one-stream and 8-stream throughput between two clients through the server;
 *   - stream setups per second, sequential (with p50/p99 setup latency) and pipelined;
 *   - with --pid (a server on this machine): server RSS per idle session at 1k and 10k
 *     sessions (sessions opened in 10 batches, nothing closed in between: the median of the
 *     batches' growth per session), and server CPU seconds per GiB relayed (/proc/PID/stat);
 *   - in the same run, a minimal TCP forwarder (two sockets, one buffer, read/write) over the
 *     same loopback path, and its CPU seconds per GiB: the floor for a relay that never
 *     decrypts the payload.
 *
 * Layout: the listening client runs in a child process, the dialing client in this one, the
 * forwarder and its sink in two more children, so that each side has its own loop and its
 * CPU time is its own. Figures only, never assertions; not part of ctest.
 *
 *   bench_relay --server PK@HOST:PORT [--pid PID] [--runs N] [--mib N] [--setups N]
 *               [--sessions 1000,10000] [--handshake-window N] [--no-forwarder]
 *
 * A server with per-client limits must allow the load: dmsgd needs, in its "limits",
 * stream_requests_per_second/burst and max_pending_requests above the setup rate, and
 * max_sessions / max_sessions_per_ip / max_pending_per_ip for the idle sessions (see
 * tests/bench/run_bench_relay.sh, which starts a dmsgd configured for this). */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "dmsg/client.h"
#include "dmsg/error.h"
#include "dmsg/session.h"

#define PORT_SINK 1         /* listener: counts bytes, answers one byte when all arrived */
#define PORT_SETUP 2        /* listener: accepts, closes when the dialer does */
#define WRITE_BLOCK (256u * 1024u)
#define FORWARD_BUF (64u * 1024u)
#define MAX_STREAMS 8
#define MAX_RUNS 15
#define PIPELINE 32

static void die(const char *what)
{
    fprintf(stderr, "bench_relay: %s\n", what);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double percentile(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

/* ---------------------------------------------------------------------------------------------
 * /proc readings of another process */

static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long utime = 0, stime = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt, then
     * utime stime */
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                            &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static long proc_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* ---------------------------------------------------------------------------------------------
 * Loop helpers: straight-line benchmark code runs the loop until a flag flips */

static uv_loop_t *g_loop;

static void on_timer_flag(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until *flag or timeout_s; false on timeout. */
static bool run_until(const bool *flag, double timeout_s)
{
    uv_timer_t timer;
    bool timed_out = false;
    uv_timer_init(g_loop, &timer);
    timer.data = &timed_out;
    uv_timer_start(&timer, on_timer_flag, (uint64_t)(timeout_s * 1000), 0);
    while (!*flag && !timed_out)
        uv_run(g_loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(g_loop, UV_RUN_NOWAIT);
    return *flag;
}

static void sleep_loop(double seconds)
{
    bool never = false;
    run_until(&never, seconds);
}

/* ---------------------------------------------------------------------------------------------
 * The listening client (child process) */

struct sink {
    uint8_t hdr[8];
    unsigned hdr_have;
    uint64_t total, got;
    bool acked;
};

static void on_sink_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    struct sink *s = ctx;
    size_t used = 0;
    while (s->hdr_have < 8 && used < len)
        s->hdr[s->hdr_have++] = data[used++];
    if (s->hdr_have == 8 && s->total == 0)
        for (int i = 0; i < 8; i++)
            s->total = (s->total << 8) | s->hdr[i];
    s->got += len - used;
    dmsg_conn_consume(c, len);
    if (s->total != 0 && s->got >= s->total && !s->acked) {
        static const uint8_t ack = 1;
        s->acked = true;
        dmsg_conn_write(c, &ack, 1, NULL, NULL);
    }
}

static void on_listener_conn_eof(dmsg_conn *c, void *ctx)
{
    (void)ctx;
    dmsg_conn_close(c);
}

static void on_listener_conn_close(dmsg_conn *c, int err, void *ctx)
{
    (void)c;
    (void)err;
    free(ctx);
}

static const dmsg_conn_callbacks sink_callbacks = {
    .on_data = on_sink_data,
    .on_eof = on_listener_conn_eof,
    .on_close = on_listener_conn_close,
};

static void on_listener(dmsg_listener *l, void *ctx)
{
    (void)ctx;
    for (;;) {
        struct sink *s = calloc(1, sizeof *s);
        dmsg_conn *c = NULL;
        if (s == NULL || dmsg_listener_accept(l, &sink_callbacks, s, &c) != 0) {
            free(s);
            return;
        }
    }
}

struct listener_child {
    int ready_fd;
    dmsg_client *client;
    dmsg_listener *sink, *setup;
    uv_signal_t sigterm;
};

static void on_listener_event(dmsg_client *c, dmsg_client_event ev, const dmsg_pk *server,
                              int err, void *ctx)
{
    struct listener_child *lc = ctx;
    (void)server;
    if (ev == DMSG_CLIENT_SESSION_FAILED)
        fprintf(stderr, "bench_relay: listener session failed: %s\n", dmsg_strerror(err));
    if (ev != DMSG_CLIENT_SESSION_UP || lc->sink != NULL)
        return;
    if (dmsg_client_listen(c, PORT_SINK, on_listener, lc, &lc->sink) != 0 ||
        dmsg_client_listen(c, PORT_SETUP, on_listener, lc, &lc->setup) != 0)
        die("listener: cannot listen");
    if (write(lc->ready_fd, "r", 1) != 1)
        die("listener: cannot report ready");
}

static void on_listener_sigterm(uv_signal_t *s, int signum)
{
    struct listener_child *lc = s->data;
    (void)signum;
    uv_close((uv_handle_t *)s, NULL);
    if (lc->sink)
        dmsg_listener_close(lc->sink);
    if (lc->setup)
        dmsg_listener_close(lc->setup);
    lc->sink = lc->setup = NULL;
    dmsg_client_close(lc->client);
}

static void run_listener_child(const dmsg_server_ref *server, const dmsg_identity *id,
                               int ready_fd)
{
    static struct listener_child lc;
    uv_loop_t loop;
    dmsg_client_config cfg;
    static const dmsg_client_callbacks cb = {.on_event = on_listener_event};

    uv_loop_init(&loop);
    lc.ready_fd = ready_fd;
    dmsg_client_config_default(&cfg);
    cfg.servers = server;
    cfg.n_servers = 1;
    cfg.min_sessions = 0;
    if (dmsg_client_start(&loop, id, &cfg, &cb, &lc, &lc.client) != 0)
        die("listener: cannot start the client");
    uv_signal_init(&loop, &lc.sigterm);
    lc.sigterm.data = &lc;
    uv_signal_start(&lc.sigterm, on_listener_sigterm, SIGTERM);
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(0);
}

/* ---------------------------------------------------------------------------------------------
 * The dialing client (this process) */

static dmsg_client *g_client;
static bool g_session_up;
static uint8_t *g_block;

static void on_dialer_event(dmsg_client *c, dmsg_client_event ev, const dmsg_pk *server, int err,
                            void *ctx)
{
    (void)c;
    (void)server;
    (void)ctx;
    if (ev == DMSG_CLIENT_SESSION_UP)
        g_session_up = true;
    else if (ev == DMSG_CLIENT_SESSION_FAILED || ev == DMSG_CLIENT_SESSION_DOWN)
        fprintf(stderr, "bench_relay: dialer session event: %s\n", dmsg_strerror(err));
}

/* One throughput stream: header, `total` bytes, then wait for the one-byte answer. */
struct flow {
    dmsg_conn *conn;
    uint64_t total, sent;
    bool header_sent, acked, closed, failed;
    unsigned *remaining;
};

static void flow_fill(struct flow *f)
{
    if (f->conn == NULL)
        return;
    if (!f->header_sent) {
        uint8_t hdr[8];
        for (int i = 0; i < 8; i++)
            hdr[i] = (uint8_t)(f->total >> (56 - 8 * i));
        if (dmsg_conn_write(f->conn, hdr, sizeof hdr, NULL, NULL) != 0)
            f->failed = true;
        f->header_sent = true;
    }
    while (f->sent < f->total && dmsg_conn_write_queued(f->conn) < DMSG_CLIENT_WINDOW) {
        size_t n = f->total - f->sent < WRITE_BLOCK ? (size_t)(f->total - f->sent) : WRITE_BLOCK;
        if (dmsg_conn_write(f->conn, g_block, n, NULL, NULL) != 0) {
            f->failed = true;
            dmsg_conn_reset(f->conn);
            return;
        }
        f->sent += n;
    }
}

static void on_flow_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    struct flow *f = ctx;
    (void)data;
    dmsg_conn_consume(c, len);
    if (!f->acked) {
        f->acked = true;
        (*f->remaining)--;
        dmsg_conn_close(c);
    }
}

static void on_flow_writable(dmsg_conn *c, void *ctx)
{
    (void)c;
    flow_fill(ctx);
}

static void on_flow_eof(dmsg_conn *c, void *ctx)
{
    (void)ctx;
    dmsg_conn_close(c);
}

static void on_flow_close(dmsg_conn *c, int err, void *ctx)
{
    struct flow *f = ctx;
    (void)c;
    f->conn = NULL;
    f->closed = true;
    if (!f->acked) {
        f->failed = true;
        f->acked = true;
        (*f->remaining)--;
        if (err)
            fprintf(stderr, "bench_relay: stream closed early: %s\n", dmsg_strerror(err));
    }
}

static const dmsg_conn_callbacks flow_callbacks = {
    .on_data = on_flow_data,
    .on_eof = on_flow_eof,
    .on_writable = on_flow_writable,
    .on_close = on_flow_close,
};

static void on_flow_dialed(dmsg_client *c, dmsg_conn *conn, int err, uint16_t code, void *arg)
{
    struct flow *f = arg;
    (void)c;
    (*f->remaining)--; /* the count of dials still pending */
    if (err != 0) {
        fprintf(stderr, "bench_relay: dial failed: %s (code %u)\n", dmsg_strerror(err),
                (unsigned)code);
        f->failed = f->acked = f->closed = true;
        return;
    }
    f->conn = conn;
    dmsg_conn_set_callbacks(conn, &flow_callbacks, f);
}

/* Moves total bytes over n concurrent streams; returns seconds from the first byte to the
 * last answer (dials excluded), or -1 on failure. *server_cpu gets the server's CPU seconds. */
static double throughput_run(const dmsg_addr *dst, unsigned n, uint64_t total, pid_t server_pid,
                             double *server_cpu)
{
    struct flow flows[MAX_STREAMS];
    unsigned dialing = n, remaining = n;

    memset(flows, 0, sizeof flows);
    for (unsigned i = 0; i < n; i++) {
        flows[i].total = total / n;
        flows[i].remaining = &dialing;
        if (dmsg_client_dial(g_client, dst, on_flow_dialed, &flows[i]) != 0)
            die("dial");
    }
    while (dialing > 0)
        uv_run(g_loop, UV_RUN_ONCE);
    bool dial_failed = false;
    for (unsigned i = 0; i < n; i++) {
        dial_failed |= flows[i].failed;
        flows[i].remaining = &remaining;
    }
    if (dial_failed) {
        /* The flows live on this stack frame: every conn must be gone before returning. */
        for (unsigned i = 0; i < n; i++)
            if (flows[i].conn != NULL)
                dmsg_conn_reset(flows[i].conn);
        for (unsigned i = 0; i < n; i++)
            while (!flows[i].closed)
                uv_run(g_loop, UV_RUN_ONCE);
        return -1;
    }
    double cpu0 = server_pid ? proc_cpu_s(server_pid) : 0;
    double t0 = now_s();
    for (unsigned i = 0; i < n; i++)
        flow_fill(&flows[i]);
    while (remaining > 0)
        uv_run(g_loop, UV_RUN_ONCE);
    double secs = now_s() - t0;
    *server_cpu = server_pid ? proc_cpu_s(server_pid) - cpu0 : 0;
    for (unsigned i = 0; i < n; i++)
        while (!flows[i].closed)
            uv_run(g_loop, UV_RUN_ONCE);
    for (unsigned i = 0; i < n; i++)
        if (flows[i].failed)
            return -1;
    return secs;
}

/* Stream setups: each dial is timed from the call to its callback; the conn is closed at once. */
struct setups {
    unsigned started, finished, failed, total, window;
    double *latency;
    double *t_start;
    const dmsg_addr *dst;
};

static void setup_next(struct setups *s);

static void on_setup_close(dmsg_conn *c, int err, void *ctx)
{
    (void)c;
    (void)err;
    (void)ctx;
}

static const dmsg_conn_callbacks setup_callbacks = {
    .on_eof = on_flow_eof,
    .on_close = on_setup_close,
};

struct setup_arg {
    struct setups *s;
    unsigned index;
};

static void on_setup_dialed(dmsg_client *c, dmsg_conn *conn, int err, uint16_t code,
                                  void *arg)
{
    struct setup_arg *a = arg;
    a->s->latency[a->index] = now_s() - a->s->t_start[a->index];
    struct setups *s = a->s;
    free(a);
    (void)c;
    (void)code;
    s->finished++;
    if (err != 0) {
        s->failed++;
    } else {
        dmsg_conn_set_callbacks(conn, &setup_callbacks, NULL);
        dmsg_conn_close(conn);
    }
    setup_next(s);
}

static void setup_next(struct setups *s)
{
    while (s->started < s->total && s->started - s->finished < s->window) {
        struct setup_arg *a = malloc(sizeof *a);
        if (a == NULL)
            die("out of memory");
        a->s = s;
        a->index = s->started;
        s->t_start[s->started] = now_s();
        s->started++;
        if (dmsg_client_dial(g_client, s->dst, on_setup_dialed, a) != 0)
            die("dial");
    }
}

/* Runs total setups with window dials in flight; returns setups per second and fills the
 * p50/p99 latency in ms. */
static double setups_run(const dmsg_addr *dst, unsigned total, unsigned window, double *p50,
                         double *p99, unsigned *failed)
{
    struct setups s;
    memset(&s, 0, sizeof s);
    s.total = total;
    s.window = window;
    s.dst = dst;
    s.latency = calloc(total, sizeof *s.latency);
    s.t_start = calloc(total, sizeof *s.t_start);
    if (s.latency == NULL || s.t_start == NULL)
        die("out of memory");
    double t0 = now_s();
    setup_next(&s);
    while (s.finished < s.total)
        uv_run(g_loop, UV_RUN_ONCE);
    double secs = now_s() - t0;
    *p50 = percentile(s.latency, (int)total, 0.50) * 1000;
    *p99 = percentile(s.latency, (int)total, 0.99) * 1000;
    *failed = s.failed;
    free(s.latency);
    free(s.t_start);
    sleep_loop(0.3); /* let the closes drain */
    return total / secs;
}

/* ---------------------------------------------------------------------------------------------
 * Idle sessions: many keys, one session each, nothing on them */

struct idle;

struct idle_slot {
    struct idle *st;
    dmsg_identity id;           /* must outlive the session */
    dmsg_session *session;      /* NULL once closed */
    bool ready;
};

struct idle {
    unsigned target, started, ready, ended, failed, window;
    struct idle_slot *slots;
    struct sockaddr_storage addr;
    dmsg_pk server_pk;
    dmsg_session_config cfg;
};

static void idle_next(struct idle *st);

static int on_idle_ready(dmsg_session *s, void *ctx)
{
    struct idle_slot *slot = ctx;
    (void)s;
    slot->ready = true;
    slot->st->ready++;
    idle_next(slot->st);
    return 0;
}

static void on_idle_stream(dmsg_session *s, dmsg_stream *stream, void *ctx)
{
    (void)s;
    (void)ctx;
    dmsg_stream_reset(stream);
}

static void on_idle_close(dmsg_session *s, int err, void *ctx)
{
    struct idle_slot *slot = ctx;
    (void)s;
    (void)err;
    slot->session = NULL;
    slot->st->ended++;
    if (!slot->ready) /* refused (a server limit) or failed before its handshake ended */
        slot->st->failed++;
    idle_next(slot->st);
}

static const dmsg_session_callbacks idle_callbacks = {
    .on_ready = on_idle_ready,
    .on_stream = on_idle_stream,
    .on_close = on_idle_close,
};

/* Keeps at most `window` handshakes in progress (servers cap pending handshakes per IP). */
static void idle_next(struct idle *st)
{
    while (st->started < st->target && st->started - st->ready - st->failed < st->window) {
        struct idle_slot *slot = &st->slots[st->started++];
        if (dmsg_session_connect(g_loop, (struct sockaddr *)&st->addr, &slot->id,
                                 &st->server_pk, &st->cfg, &idle_callbacks, slot,
                                 &slot->session) != 0) {
            slot->session = NULL;
            st->failed++;
            st->ended++;
        }
    }
}

static void resolve_server(const dmsg_server_ref *server, struct sockaddr_storage *out)
{
    char host[DMSG_CLIENT_ADDRESS_MAX + 1];
    snprintf(host, sizeof host, "%s", server->address);
    char *colon = strrchr(host, ':');
    if (colon == NULL)
        die("bad server address");
    *colon = '\0';
    char *h = host;
    if (h[0] == '[' && colon > host && colon[-1] == ']') { /* [v6]:port */
        h++;
        colon[-1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(h, colon + 1, &hints, &res) != 0 || res == NULL)
        die("cannot resolve the server address");
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
}

#define IDLE_BATCHES 10

/* Opens `count` idle sessions in IDLE_BATCHES equal batches, reading the server's RSS after
 * each; nothing is closed in between, so no batch can reuse memory another one freed. Returns
 * the median of the batches' RSS growth per session in bytes (-1 when none came up); *overall
 * gets the growth per session over all of them, *failed the sessions that never came up. */
static double idle_sessions_run(const dmsg_server_ref *server, unsigned count, unsigned window,
                                pid_t server_pid, double *overall, unsigned *failed)
{
    struct idle *st = calloc(1, sizeof *st);
    double per_batch[IDLE_BATCHES];
    int batches = 0;
    if (st == NULL)
        die("out of memory");
    st->window = window;
    st->server_pk = server->pk;
    dmsg_session_config_default(&st->cfg);
    resolve_server(server, &st->addr);
    st->slots = calloc(count, sizeof *st->slots);
    if (st->slots == NULL)
        die("out of memory");
    for (unsigned i = 0; i < count; i++) {
        st->slots[i].st = st;
        st->slots[i].id.rng = dmsg_rng_system();
        if (dmsg_keypair_generate(&st->slots[i].id.pk, &st->slots[i].id.sk,
                                  &st->slots[i].id.rng) != 0)
            die("keypair");
    }
    sleep_loop(0.5);
    long rss_start = proc_rss_kib(server_pid), rss_prev = rss_start;
    for (int b = 1; b <= IDLE_BATCHES; b++) {
        unsigned ready_before = st->ready;
        st->target = (unsigned)((uint64_t)count * (unsigned)b / IDLE_BATCHES);
        idle_next(st);
        double deadline = now_s() + 60;
        while (st->ready + st->failed < st->target && now_s() < deadline)
            uv_run(g_loop, UV_RUN_ONCE);
        sleep_loop(0.3); /* the server settles (discovery updates, buffers back to pools) */
        long rss = proc_rss_kib(server_pid);
        if (st->ready > ready_before)
            per_batch[batches++] =
                (double)(rss - rss_prev) * 1024.0 / (st->ready - ready_before);
        rss_prev = rss;
    }
    unsigned ready = st->ready;
    *failed = count - ready;
    *overall = ready ? (double)(rss_prev - rss_start) * 1024.0 / ready : -1;
    for (unsigned i = 0; i < st->started; i++)
        if (st->slots[i].session != NULL)
            dmsg_session_close(st->slots[i].session, 0);
    double deadline = now_s() + 60;
    while (st->ended < st->started && now_s() < deadline)
        uv_run(g_loop, UV_RUN_ONCE);
    sleep_loop(1.0); /* the server notices the closes */
    for (unsigned i = 0; i < count; i++)
        dmsg_wipe(&st->slots[i].id.sk, sizeof st->slots[i].id.sk);
    if (st->ended == st->started) {
        free(st->slots);
        free(st);
    } else /* sessions still point at their slots: leave them */
        fprintf(stderr, "bench_relay: %u sessions did not close in time\n",
                st->started - st->ended);
    return batches ? median(per_batch, batches) : -1;
}

/* ---------------------------------------------------------------------------------------------
 * The minimal TCP forwarder and its sink (children), and a blocking sender */

static int tcp_listen_any(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("cannot listen on loopback");
    *port = ntohs(a.sin_port);
    return fd;
}

static int tcp_connect(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        die("cannot connect on loopback");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sink: per connection, an 8-byte length, that many bytes, then one byte back. */
static void run_sink_child(int lfd)
{
    static uint8_t buf[1 << 20];
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0)
            _exit(0);
        uint8_t hdr[8];
        size_t have = 0;
        uint64_t total = 0, got = 0;
        for (;;) {
            ssize_t r = read(c, buf, sizeof buf);
            if (r <= 0)
                break;
            size_t used = 0;
            while (have < 8 && used < (size_t)r)
                hdr[have++] = buf[used++];
            if (have == 8 && total == 0)
                for (int i = 0; i < 8; i++)
                    total = (total << 8) | hdr[i];
            got += (size_t)r - used;
            if (total && got >= total) {
                static const uint8_t ack = 1;
                (void)!write(c, &ack, 1);
                break;
            }
        }
        close(c);
    }
}

/* The forwarder: for each client, one connection to the sink; one buffer; poll, read, write. */
static void run_forwarder_child(int lfd, uint16_t sink_port)
{
    static uint8_t buf[FORWARD_BUF];
    for (;;) {
        int a = accept(lfd, NULL, NULL);
        if (a < 0)
            _exit(0);
        int b = tcp_connect(sink_port), one = 1;
        setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
        for (bool open = true; open;) {
            if (poll(p, 2, -1) < 0 && errno != EINTR)
                break;
            for (int i = 0; i < 2 && open; i++) {
                if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                ssize_t r = read(p[i].fd, buf, sizeof buf);
                if (r <= 0 || write_all(p[1 - i].fd, buf, (size_t)r) != 0)
                    open = false;
            }
        }
        close(a);
        close(b);
    }
}

/* Sends total bytes through the forwarder and waits for the sink's answer. */
static double forwarder_run(uint16_t port, uint64_t total)
{
    int fd = tcp_connect(port);
    uint8_t hdr[8], ack;
    for (int i = 0; i < 8; i++)
        hdr[i] = (uint8_t)(total >> (56 - 8 * i));
    double t0 = now_s();
    if (write_all(fd, hdr, 8) != 0)
        die("forwarder write");
    for (uint64_t sent = 0; sent < total;) {
        size_t n = total - sent < WRITE_BLOCK ? (size_t)(total - sent) : WRITE_BLOCK;
        if (write_all(fd, g_block, n) != 0)
            die("forwarder write");
        sent += n;
    }
    if (read(fd, &ack, 1) != 1)
        die("forwarder: no answer from the sink");
    double secs = now_s() - t0;
    close(fd);
    return secs;
}

/* ---------------------------------------------------------------------------------------------
 * main */

struct options {
    dmsg_server_ref server;
    pid_t pid;
    int runs;
    uint64_t mib;
    unsigned setups;
    unsigned sessions[4];
    unsigned n_sessions;
    unsigned handshake_window;
    bool forwarder;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_relay --server PK@HOST:PORT [--pid PID] [--runs N] [--mib N]\n"
            "                   [--setups N] [--sessions 1000,10000] [--handshake-window N]\n"
            "                   [--no-forwarder]\n");
    exit(2);
}

static void parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'}, {"pid", required_argument, NULL, 'p'},
        {"runs", required_argument, NULL, 'r'},   {"mib", required_argument, NULL, 'm'},
        {"setups", required_argument, NULL, 'S'}, {"sessions", required_argument, NULL, 'i'},
        {"handshake-window", required_argument, NULL, 'w'},
        {"no-forwarder", no_argument, NULL, 'F'}, {NULL, 0, NULL, 0},
    };
    bool have_server = false;
    int ch;
    memset(o, 0, sizeof *o);
    o->runs = 5;
    o->mib = 512;
    o->setups = 1000;
    o->sessions[0] = 1000;
    o->sessions[1] = 10000;
    o->n_sessions = 2;
    o->handshake_window = 16;
    o->forwarder = true;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (dmsg_server_ref_parse(&o->server, optarg) != 0)
                usage();
            have_server = true;
            break;
        case 'p': o->pid = (pid_t)atoi(optarg); break;
        case 'r': o->runs = atoi(optarg); break;
        case 'm': o->mib = strtoull(optarg, NULL, 10); break;
        case 'S': o->setups = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'w': o->handshake_window = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'F': o->forwarder = false; break;
        case 'i': {
            o->n_sessions = 0;
            for (char *tok = strtok(optarg, ","); tok && o->n_sessions < 4; tok = strtok(NULL, ","))
                o->sessions[o->n_sessions++] = (unsigned)strtoul(tok, NULL, 10);
            break;
        }
        default: usage();
        }
    }
    if (!have_server || o->runs < 1 || o->runs > MAX_RUNS || o->mib == 0 || o->setups < 2 ||
        o->handshake_window == 0)
        usage();
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void bench_throughput(const struct options *o, const dmsg_addr *dst, unsigned streams,
                             double *cpu_per_gib_out)
{
    double mbps[MAX_RUNS], cpu[MAX_RUNS];
    uint64_t total = o->mib << 20;
    int ok = 0;
    for (int r = 0; r < o->runs; r++) {
        double server_cpu = 0;
        double secs = throughput_run(dst, streams, total, o->pid, &server_cpu);
        if (secs <= 0)
            continue;
        mbps[ok] = (double)total / secs / 1e6;
        cpu[ok] = server_cpu / ((double)total / (1 << 30));
        ok++;
    }
    if (ok == 0) {
        printf("%u-stream throughput:         failed\n", streams);
        *cpu_per_gib_out = -1;
        return;
    }
    printf("%u-stream throughput:         %8.1f MB/s   (median of %d, %llu MiB each)\n", streams,
           median(mbps, ok), ok, (unsigned long long)o->mib);
    *cpu_per_gib_out = o->pid ? median(cpu, ok) : -1;
    if (o->pid)
        printf("  server CPU per GiB relayed: %8.3f s\n", *cpu_per_gib_out);
}

static void bench_setups(const struct options *o, const dmsg_addr *dst)
{
    double rate[MAX_RUNS], p50[MAX_RUNS], p99[MAX_RUNS], prate[MAX_RUNS];
    unsigned failed = 0, f;
    for (int r = 0; r < o->runs; r++) {
        rate[r] = setups_run(dst, o->setups, 1, &p50[r], &p99[r], &f);
        failed += f;
        double a, b;
        prate[r] = setups_run(dst, o->setups, PIPELINE, &a, &b, &f);
        failed += f;
    }
    printf("stream setups, sequential:   %8.0f /s    p50 %.3f ms  p99 %.3f ms\n",
           median(rate, o->runs), median(p50, o->runs), median(p99, o->runs));
    printf("stream setups, %u in flight: %8.0f /s\n", PIPELINE, median(prate, o->runs));
    if (failed)
        printf("  (%u setups failed: is the server rate-limiting this client?)\n", failed);
}

static void bench_idle_sessions(const struct options *o)
{
    for (unsigned k = 0; k < o->n_sessions; k++) {
        double overall = -1;
        unsigned failed = 0;
        double per = idle_sessions_run(&o->server, o->sessions[k], o->handshake_window, o->pid,
                                       &overall, &failed);
        if (per < 0) {
            printf("RSS per idle session at %5u: failed\n", o->sessions[k]);
            continue;
        }
        printf("RSS per idle session at %5u: %7.0f bytes (median of %d batches; overall %.0f)\n",
               o->sessions[k], per, IDLE_BATCHES, overall);
        if (failed)
            printf("  (%u of %u sessions were refused or failed)\n", failed, o->sessions[k]);
    }
}

static void bench_forwarder(const struct options *o, double dmsg_cpu_1, double dmsg_cpu_8)
{
    uint16_t sink_port, fwd_port;
    int sink_fd = tcp_listen_any(&sink_port);
    pid_t sink = fork();
    if (sink == 0)
        run_sink_child(sink_fd);
    int fwd_fd = tcp_listen_any(&fwd_port);
    pid_t fwd = fork();
    if (fwd == 0)
        run_forwarder_child(fwd_fd, sink_port);
    close(sink_fd);
    close(fwd_fd);
    double mbps[MAX_RUNS], cpu[MAX_RUNS];
    uint64_t total = o->mib << 20;
    for (int r = 0; r < o->runs; r++) {
        double c0 = proc_cpu_s(fwd);
        double secs = forwarder_run(fwd_port, total);
        mbps[r] = (double)total / secs / 1e6;
        cpu[r] = (proc_cpu_s(fwd) - c0) / ((double)total / (1 << 30));
    }
    kill(fwd, SIGKILL);
    kill(sink, SIGKILL);
    waitpid(fwd, NULL, 0);
    waitpid(sink, NULL, 0);
    double fcpu = median(cpu, o->runs);
    printf("TCP forwarder (%u KiB buffer): %8.1f MB/s, CPU per GiB %.3f s\n", FORWARD_BUF / 1024,
           median(mbps, o->runs), fcpu);
    if (dmsg_cpu_1 > 0 && fcpu > 0)
        printf("  server/forwarder CPU per GiB: %.2fx (1 stream), %.2fx (8 streams)\n",
               dmsg_cpu_1 / fcpu, dmsg_cpu_8 > 0 ? dmsg_cpu_8 / fcpu : 0);
}

int main(int argc, char **argv)
{
    struct options o;
    parse_options(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (dmsg_cipher_init() != 0)
        die("cipher init");
    g_block = malloc(WRITE_BLOCK);
    if (g_block == NULL)
        die("out of memory");
    for (size_t i = 0; i < WRITE_BLOCK; i++)
        g_block[i] = (uint8_t)(i * 131 + 7);

    dmsg_identity dialer_id, listener_id;
    memset(&dialer_id, 0, sizeof dialer_id);
    memset(&listener_id, 0, sizeof listener_id);
    dialer_id.rng = listener_id.rng = dmsg_rng_system();
    if (dmsg_keypair_generate(&dialer_id.pk, &dialer_id.sk, &dialer_id.rng) != 0 ||
        dmsg_keypair_generate(&listener_id.pk, &listener_id.sk, &listener_id.rng) != 0)
        die("keypair");

    int ready[2];
    if (pipe(ready) != 0)
        die("pipe");
    pid_t listener = fork();
    if (listener < 0)
        die("fork");
    if (listener == 0) {
        close(ready[0]);
        run_listener_child(&o.server, &listener_id, ready[1]);
    }
    close(ready[1]);
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    char byte;
    if (poll(&p, 1, 20000) != 1 || read(ready[0], &byte, 1) != 1) {
        kill(listener, SIGKILL);
        die("the listening client did not come up (is the server reachable?)");
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    g_loop = &loop;
    dmsg_client_config cfg;
    dmsg_client_config_default(&cfg);
    cfg.servers = &o.server;
    cfg.n_servers = 1;
    cfg.min_sessions = 0;
    static const dmsg_client_callbacks cb = {.on_event = on_dialer_event};
    if (dmsg_client_start(&loop, &dialer_id, &cfg, &cb, NULL, &g_client) != 0)
        die("cannot start the dialing client");
    if (!run_until(&g_session_up, 20))
        die("no session to the server");

    printf("bench_relay: server %s, %d runs per figure%s\n", o.server.address, o.runs,
           o.pid ? "" : " (no --pid: no server RSS/CPU figures)");
    dmsg_addr sink = {.pk = listener_id.pk, .port = PORT_SINK};
    dmsg_addr setup = {.pk = listener_id.pk, .port = PORT_SETUP};
    double cpu1 = -1, cpu8 = -1;
    /* Idle sessions first: later figures leave freed buffers in the server's heap, which new
     * sessions would reuse without growing its RSS. */
    if (o.pid)
        bench_idle_sessions(&o);
    bench_throughput(&o, &sink, 1, &cpu1);
    bench_throughput(&o, &sink, 8, &cpu8);
    bench_setups(&o, &setup);
    if (o.forwarder)
        bench_forwarder(&o, cpu1, cpu8);
    fflush(stdout);

    dmsg_client_close(g_client);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    kill(listener, SIGTERM);
    waitpid(listener, NULL, 0);
    dmsg_wipe(&dialer_id.sk, sizeof dialer_id.sk);
    dmsg_wipe(&listener_id.sk, sizeof listener_id.sk);
    free(g_block);
    return 0;
}
