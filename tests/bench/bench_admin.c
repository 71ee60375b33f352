/* bench_admin: what the admin API of a running dmsgd serves per second while it holds many
 * sessions. Opens --sessions idle client sessions (distinct keys) to the server, keeps them
 * alive on this process's loop, and meanwhile a second thread sends admin requests over the
 * unix socket, one keep-alive connection at a time, for --seconds each:
 *
 *   GET /v1/sessions?limit=100    (the first page: sort all sessions, render 100)
 *   GET /v1/sessions?limit=1000
 *   GET /v1/sessions?pk=ff&limit=100 (a filter that matches few)
 *   GET /metrics
 *   GET /v1/health                (the floor: no per-session work)
 *
 * printing requests per second and p50/p99 latency for each. Figures only, never assertions.
 *
 *   bench_admin --server PK@HOST:PORT --admin SOCKET [--sessions N] [--seconds S]
 *
 * The server must allow the sessions (max_sessions, limits.max_sessions_per_ip,
 * max_pending_per_ip): tests/bench/run_bench_admin.sh starts one configured for this. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "dmsg/cipher.h"
#include "dmsg/client.h"
#include "dmsg/rng.h"
#include "dmsg/session.h"

#define HANDSHAKE_WINDOW 64
#define MAX_LATENCIES 2000000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_admin: %s\n", what);
    exit(1);
}

/* ---------------------------------------------------------------------------------------------
 * Idle sessions on this thread's loop */

struct slot {
    struct sessions *owner;
    dmsg_identity id;
    dmsg_session *session;
    bool ready;
};

struct sessions {
    uv_loop_t *loop;
    struct slot *slots;
    unsigned target, started, pending, ready, failed;
    struct sockaddr_storage addr;
    dmsg_pk server_pk;
    dmsg_session_config cfg;
};

static void open_more(struct sessions *st);

static int on_ready(dmsg_session *s, void *ctx)
{
    struct slot *slot = ctx;
    (void)s;
    slot->ready = true;
    slot->owner->pending--;
    slot->owner->ready++;
    open_more(slot->owner);
    return 0;
}

static void on_stream(dmsg_session *s, dmsg_stream *stream, void *ctx)
{
    (void)s;
    (void)ctx;
    dmsg_stream_reset(stream);
}

static void on_close(dmsg_session *s, int err, void *ctx)
{
    struct slot *slot = ctx;
    (void)s;
    (void)err;
    slot->session = NULL;
    if (!slot->ready) { /* refused (a server limit) or failed before its handshake ended */
        slot->owner->pending--;
        slot->owner->failed++;
    } else {
        slot->owner->ready--;
    }
    open_more(slot->owner);
}

static const dmsg_session_callbacks callbacks = {
    .on_ready = on_ready, .on_stream = on_stream, .on_close = on_close};

static void open_more(struct sessions *st)
{
    while (st->started < st->target && st->pending < HANDSHAKE_WINDOW) {
        struct slot *slot = &st->slots[st->started++];
        if (dmsg_session_connect(st->loop, (struct sockaddr *)&st->addr, &slot->id,
                                 &st->server_pk, &st->cfg, &callbacks, slot,
                                 &slot->session) != 0) {
            slot->session = NULL;
            st->failed++;
        } else {
            st->pending++;
        }
    }
}

static void resolve(const dmsg_server_ref *server, struct sockaddr_storage *out)
{
    char host[DMSG_CLIENT_ADDRESS_MAX + 1];
    snprintf(host, sizeof host, "%s", server->address);
    char *colon = strrchr(host, ':');
    if (!colon)
        die("bad server address");
    *colon = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
        die("cannot resolve the server address");
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
}

/* ---------------------------------------------------------------------------------------------
 * The admin client (the second thread): HTTP/1.1 keep-alive over the unix socket */

struct admin_conn {
    int fd;
    char buf[1 << 20];
    size_t len;
};

static int admin_connect(struct admin_conn *c, const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    c->len = 0;
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sun, sizeof sun) != 0)
        return -1;
    return 0;
}

/* One request; returns the status (body read and dropped), or -1 when the connection broke. */
static int admin_get(struct admin_conn *c, const char *target, size_t *body_len)
{
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", target);
    if (write(c->fd, req, (size_t)n) != n)
        return -1;
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end) {
            size_t head = (size_t)(end - c->buf) + 4;
            int status = 0;
            sscanf(c->buf, "HTTP/1.1 %d", &status);
            char *cl = memmem(c->buf, head, "Content-Length: ", 16);
            if (!cl)
                cl = memmem(c->buf, head, "content-length: ", 16);
            size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
            while (c->len < head + body) {
                if (c->len == sizeof c->buf)
                    return -1;
                ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
                if (r <= 0)
                    return -1;
                c->len += (size_t)r;
            }
            memmove(c->buf, c->buf + head + body, c->len - head - body);
            c->len -= head + body;
            *body_len = body;
            return status;
        }
        if (c->len == sizeof c->buf)
            return -1;
        ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (r <= 0)
            return -1;
        c->len += (size_t)r;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct measure {
    const char *socket;
    double seconds;
    unsigned sessions;
    atomic_bool done;
};

static void measure_one(const struct measure *m, const char *target)
{
    static double lat[MAX_LATENCIES];
    struct admin_conn *c = malloc(sizeof *c);
    size_t n = 0, bytes = 0, errors = 0;
    if (!c || admin_connect(c, m->socket) != 0)
        die("cannot connect to the admin socket");
    double start = now_s(), end = start + m->seconds;
    while (now_s() < end && n < MAX_LATENCIES) {
        double t0 = now_s();
        size_t body = 0;
        int status = admin_get(c, target, &body);
        if (status < 0) { /* the server closed the keep-alive connection: reconnect */
            close(c->fd);
            if (admin_connect(c, m->socket) != 0)
                die("cannot reconnect to the admin socket");
            continue;
        }
        if (status != 200)
            errors++;
        lat[n++] = now_s() - t0;
        bytes += body;
    }
    double took = now_s() - start;
    close(c->fd);
    free(c);
    qsort(lat, n, sizeof lat[0], cmp_double);
    printf("  %-34s %8.0f req/s  p50 %7.3f ms  p99 %7.3f ms  %7.1f KiB/answer%s\n", target,
           (double)n / took, n ? lat[n / 2] * 1e3 : 0, n ? lat[(n * 99) / 100] * 1e3 : 0,
           n ? (double)bytes / (double)n / 1024 : 0, errors ? "  (non-200 answers!)" : "");
    fflush(stdout);
}

static void *measure_thread(void *arg)
{
    struct measure *m = arg;
    static const char *const targets[] = {
        "/v1/sessions?limit=100", "/v1/sessions?limit=1000", "/v1/sessions?pk=ff&limit=100",
        "/metrics", "/v1/health",
    };
    printf("admin API with %u sessions held, %.0f s per figure, one keep-alive connection:\n",
           m->sessions, m->seconds);
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        measure_one(m, targets[i]);
    atomic_store(&m->done, true);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * main */

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'}, {"admin", required_argument, NULL, 'a'},
        {"sessions", required_argument, NULL, 'n'}, {"seconds", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    dmsg_server_ref server;
    struct measure m = {.seconds = 3, .sessions = 10000};
    bool have_server = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 's': have_server = dmsg_server_ref_parse(&server, optarg) == 0; break;
        case 'a': m.socket = optarg; break;
        case 'n': m.sessions = (unsigned)strtoul(optarg, NULL, 10); break;
        case 't': m.seconds = atof(optarg); break;
        default: have_server = false; break;
        }
    }
    if (!have_server || !m.socket || m.seconds <= 0) {
        fprintf(stderr, "usage: bench_admin --server PK@HOST:PORT --admin SOCKET [--sessions N]"
                        " [--seconds S]\n");
        return 2;
    }
    if (dmsg_cipher_init() != 0)
        die("crypto init");
    raise_fd_limit();

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sessions st = {.loop = &loop, .target = m.sessions, .server_pk = server.pk};
    dmsg_session_config_default(&st.cfg);
    resolve(&server, &st.addr);
    st.slots = calloc(m.sessions ? m.sessions : 1, sizeof *st.slots);
    if (!st.slots)
        die("out of memory");
    for (unsigned i = 0; i < m.sessions; i++) {
        st.slots[i].owner = &st;
        st.slots[i].id.rng = dmsg_rng_system();
        if (dmsg_keypair_generate(&st.slots[i].id.pk, &st.slots[i].id.sk, &st.slots[i].id.rng))
            die("keypair");
    }
    double t0 = now_s();
    open_more(&st);
    while (st.ready + st.failed < m.sessions && now_s() - t0 < 180)
        uv_run(&loop, UV_RUN_ONCE);
    printf("bench_admin: %u of %u sessions up in %.1f s (%u failed)\n", st.ready, m.sessions,
           now_s() - t0, st.failed);
    fflush(stdout);

    pthread_t thread;
    if (pthread_create(&thread, NULL, measure_thread, &m) != 0)
        die("thread");
    /* The sessions stay alive (keepalives answered) while the other thread measures. */
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    while (!atomic_load(&m.done)) {
        uv_timer_start(&tick, on_tick, 50, 0);
        uv_run(&loop, UV_RUN_ONCE);
    }
    pthread_join(thread, NULL);
    uv_close((uv_handle_t *)&tick, NULL);
    for (unsigned i = 0; i < st.started; i++)
        if (st.slots[i].session)
            dmsg_session_close(st.slots[i].session, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < m.sessions; i++)
        dmsg_wipe(&st.slots[i].id.sk, sizeof st.slots[i].id.sk);
    free(st.slots);
    uv_loop_close(&loop);
    return 0;
}
