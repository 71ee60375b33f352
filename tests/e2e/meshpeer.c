/* meshpeer: plays another server towards a dmsgd, for the mesh end-to-end tests (issue 4).
 *
 *   meshpeer --sk HEX --server PK@127.0.0.1:PORT announce [--then-relay]
 *       Connects under the key --sk (as a newer reference server dials its peers), sends a signed
 *       PeerAnnounce on the first stream and reads the answer. With --then-relay (and the relay
 *       options below) it then also sends a relayed request on a second stream.
 *   meshpeer --sk HEX --server PK@127.0.0.1:PORT relay --src-sk HEX --dst PK:PORT
 *       Connects under --sk and sends a StreamRequest whose source is the key of --src-sk
 *       (signed by it, correctly): what a peer server forwards for one of its clients.
 *   meshpeer --sk HEX listen PORT
 *       Listens on 127.0.0.1:PORT as a server of key --sk, takes the first session, reads the
 *       first object of its first stream, checks that it is a PeerAnnounce signed by the
 *       session's key and answers with a signed acceptance (what a newer reference server does
 *       for a peer). Prints "meshpeer: listening" to stderr once bound.
 *
 * Prints one JSON line describing what happened; exit 0 when the run got that far, 1 on a local
 * failure. Never judges the server: the Python test does. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "dmsg/client.h"
#include "dmsg/e2e.h"
#include "dmsg/error.h"
#include "dmsg/noise.h"
#include "dmsg/session.h"
#include "dmsg/wire.h"
#include "mesh_announce.h"

#define FRAME_CAP 70000u

enum step { STEP_ANNOUNCE, STEP_RELAY, STEP_DONE };

struct reader {
    uint8_t prefix[2];
    size_t prefix_have;
    uint8_t *frame;
    size_t frame_len, frame_have;
};

struct app {
    uv_loop_t *loop;
    dmsg_identity id;
    const char *mode;
    bool then_relay;
    dmsg_server_ref server;
    dmsg_sk src_sk;
    bool has_src;
    dmsg_addr dst;
    uint16_t listen_port;
    uv_tcp_t listener;
    bool listening;
    dmsg_session *session;
    dmsg_stream *stream;
    enum step step;
    uint8_t obj[4096];
    size_t obj_len;
    dmsg_e2e_dialer dialer;            /* the relayed request: a real client's KK dial */
    struct reader rd;
    uv_timer_t deadline;
    uint64_t started_ms;
    char result[512];
    bool finished;
};

static struct app app;

static void finish(const char *json)
{
    if (app.finished)
        return;
    app.finished = true;
    if (json != app.result)
        snprintf(app.result, sizeof app.result, "%s", json);
    uv_timer_stop(&app.deadline);
    uv_close((uv_handle_t *)&app.deadline, NULL);
    if (app.listening)
        uv_close((uv_handle_t *)&app.listener, NULL);
    if (app.session != NULL)
        dmsg_session_close(app.session, 0);
}

static long elapsed_ms(void)
{
    return (long)(uv_now(app.loop) - app.started_ms);
}

/* Returns 1 once a whole frame is in rd->frame, 0 for more, -1 on a bad length. */
static int reader_feed(struct reader *rd, const uint8_t *data, size_t len)
{
    size_t used = 0, take;

    while (rd->prefix_have < 2 && used < len)
        rd->prefix[rd->prefix_have++] = data[used++];
    if (rd->prefix_have < 2)
        return 0;
    if (rd->frame == NULL) {
        rd->frame_len = ((size_t)rd->prefix[0] << 8) | rd->prefix[1];
        if (rd->frame_len == 0)
            return -1;
        rd->frame = malloc(rd->frame_len);
        if (rd->frame == NULL)
            return -1;
    }
    take = rd->frame_len - rd->frame_have;
    if (take > len - used)
        take = len - used;
    memcpy(rd->frame + rd->frame_have, data + used, take);
    rd->frame_have += take;
    return rd->frame_have == rd->frame_len ? 1 : 0;
}

static void reader_reset(struct reader *rd)
{
    free(rd->frame);
    memset(rd, 0, sizeof *rd);
}

static int write_object(dmsg_stream *st, const uint8_t *obj, size_t len)
{
    uint8_t sealed[4200];
    size_t sealed_len = 0;
    int rc = dmsg_session_seal_object(dmsg_stream_session(st), obj, len, sealed, sizeof sealed,
                                      &sealed_len);

    return rc == 0 ? dmsg_stream_write(st, sealed, sealed_len, NULL, NULL) : rc;
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------------------------------------------------------------------------------------------
 * Dialing side: announce, relay */

static void start_step(void);

static void on_answer(const uint8_t *obj, size_t len)
{
    char json[256];

    if (app.step == STEP_ANNOUNCE) {
        bool accepted = false;
        int rc = mesh_announce_check_answer(obj, len, app.obj, app.obj_len, &app.server.pk,
                                            &accepted);
        if (rc != 0) {
            snprintf(json, sizeof json, "{\"answer\":\"invalid\",\"error\":\"%s\",\"ms\":%ld}",
                     dmsg_strerror(rc), elapsed_ms());
            finish(json);
            return;
        }
        if (app.then_relay) {
            printf("{\"answer\":\"%s\",\"ms\":%ld}\n", accepted ? "accepted" : "refused",
                   elapsed_ms());
            app.step = STEP_RELAY;
            start_step();
            return;
        }
        snprintf(json, sizeof json, "{\"answer\":\"%s\",\"ms\":%ld}",
                 accepted ? "accepted" : "refused", elapsed_ms());
        finish(json);
        return;
    }
    {
        dmsg_noise_tx tx;
        dmsg_noise_rx rx;
        uint16_t code = 0;
        int rc = dmsg_e2e_dial_finish(&app.dialer, obj, len, &tx, &rx, &code);
        snprintf(json, sizeof json,
                 "{\"result\":\"response\",\"accepted\":%s,\"code\":%u,\"ms\":%ld}",
                 rc == 0 ? "true" : "false", (unsigned)code, elapsed_ms());
        dmsg_wipe(&tx, sizeof tx);
        dmsg_wipe(&rx, sizeof rx);
        finish(json);
    }
}

static void on_data(dmsg_stream *st, const uint8_t *data, size_t len, void *ctx)
{
    uint8_t *obj = NULL;
    size_t obj_len = 0;
    int r;

    (void)ctx;
    dmsg_stream_consume(st, len);
    if (st != app.stream)
        return;
    r = reader_feed(&app.rd, data, len);
    if (r < 0) {
        finish("{\"result\":\"bad_frame\"}");
        return;
    }
    if (r == 0)
        return;
    app.stream = NULL;
    dmsg_stream_close(st);
    if (dmsg_session_open_object(app.session, app.rd.frame, app.rd.frame_len, &obj, &obj_len)) {
        reader_reset(&app.rd);
        finish("{\"result\":\"undecryptable\"}");
        return;
    }
    on_answer(obj, obj_len);
    reader_reset(&app.rd);
}

static void on_fin(dmsg_stream *st, void *ctx)
{
    char json[128];

    (void)ctx;
    if (st != app.stream)
        return;
    app.stream = NULL;
    snprintf(json, sizeof json, "{\"%s\":\"closed\",\"ms\":%ld}",
             app.step == STEP_ANNOUNCE ? "answer" : "result", elapsed_ms());
    finish(json);
}

static void on_stream_close(dmsg_stream *st, int err, void *ctx)
{
    char json[160];

    (void)ctx;
    if (st != app.stream)
        return;
    app.stream = NULL;
    snprintf(json, sizeof json, "{\"%s\":\"reset\",\"error\":\"%s\",\"ms\":%ld}",
             app.step == STEP_ANNOUNCE ? "answer" : "result", dmsg_strerror(err), elapsed_ms());
    finish(json);
}

static const dmsg_stream_callbacks stream_cb = {
    .on_data = on_data, .on_fin = on_fin, .on_writable = NULL, .on_close = on_stream_close};

static void start_step(void)
{
    int rc;

    reader_reset(&app.rd);
    if (app.step == STEP_ANNOUNCE) {
        rc = mesh_announce_make(&app.id.pk, &app.id.sk, now_ns(), app.obj, sizeof app.obj,
                                &app.obj_len);
    } else {
        dmsg_addr src;
        memset(&src, 0, sizeof src);
        rc = dmsg_pk_from_sk(&src.pk, &app.src_sk);
        src.port = 49999;
        if (rc == 0)
            rc = dmsg_e2e_dial_begin(&app.dialer, &src, &app.src_sk, &app.dst, now_ns(),
                                     &app.id.rng);
        if (rc == 0) {
            memcpy(app.obj, app.dialer.obj, app.dialer.obj_len);
            app.obj_len = app.dialer.obj_len;
        }
    }
    if (rc == 0)
        rc = dmsg_session_open_stream(app.session, &stream_cb, NULL, &app.stream);
    if (rc == 0)
        rc = write_object(app.stream, app.obj, app.obj_len);
    if (rc != 0) {
        char json[128];
        snprintf(json, sizeof json, "{\"result\":\"local_error\",\"error\":\"%s\"}",
                 dmsg_strerror(rc));
        finish(json);
    }
}

static int on_ready(dmsg_session *s, void *ctx)
{
    (void)ctx;
    app.session = s;
    if (strcmp(app.mode, "listen") != 0)
        start_step();
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Listening side: answer the dialer's PeerAnnounce */

static void on_deadline(uv_timer_t *t);

static void on_listen_data(dmsg_stream *st, const uint8_t *data, size_t len, void *ctx)
{
    uint8_t *obj = NULL, answer[MESH_ANSWER_MAX], sealed[MESH_ANSWER_MAX + 32];
    size_t obj_len = 0, answer_len = 0, sealed_len = 0;
    dmsg_session *s = dmsg_stream_session(st);
    char hex[DMSG_PK_HEX_LEN + 1], json[256];
    int r, rc;

    (void)ctx;
    dmsg_stream_consume(st, len);
    r = reader_feed(&app.rd, data, len);
    if (r == 0)
        return;
    if (r < 0 || dmsg_session_open_object(s, app.rd.frame, app.rd.frame_len, &obj, &obj_len)) {
        finish("{\"announce\":\"bad_frame\"}");
        return;
    }
    dmsg_pk_to_hex(dmsg_session_remote_pk(s), hex);
    rc = mesh_announce_parse(obj, obj_len, dmsg_session_remote_pk(s), NULL);
    if (rc == 0 &&
        mesh_announce_answer(obj, obj_len, true, &app.id.sk, answer, sizeof answer,
                             &answer_len) == 0 &&
        dmsg_session_seal_object(s, answer, answer_len, sealed, sizeof sealed, &sealed_len) == 0)
        dmsg_stream_write(st, sealed, sealed_len, NULL, NULL);
    dmsg_stream_close(st);
    snprintf(json, sizeof json, "{\"announce\":\"%s\",\"error\":\"%s\",\"from\":\"%s\"}",
             rc == 0 ? "ok" : "invalid", rc == 0 ? "" : dmsg_strerror(rc), hex);
    reader_reset(&app.rd);
    /* Let the answer go out before closing. */
    uv_timer_start(&app.deadline, on_deadline, 300, 0);
    snprintf(app.result, sizeof app.result, "%s", json);
}

static void on_listen_evt(dmsg_stream *st, void *ctx)
{
    (void)st;
    (void)ctx;
}

static void on_listen_close(dmsg_stream *st, int err, void *ctx)
{
    (void)st;
    (void)err;
    (void)ctx;
    if (app.result[0] != '\0')
        finish(app.result);
}

static const dmsg_stream_callbacks listen_stream_cb = {
    .on_data = on_listen_data, .on_fin = on_listen_evt, .on_writable = NULL,
    .on_close = on_listen_close};

static void on_stream(dmsg_session *s, dmsg_stream *st, void *ctx)
{
    (void)s;
    (void)ctx;
    if (strcmp(app.mode, "listen") == 0)
        dmsg_stream_set_callbacks(st, &listen_stream_cb, NULL);
}

static void on_session_close(dmsg_session *s, int err, void *ctx)
{
    char json[160];

    (void)ctx;
    if (s == app.session)
        app.session = NULL;
    snprintf(json, sizeof json, "{\"result\":\"session_closed\",\"error\":\"%s\"}",
             dmsg_strerror(err));
    finish(json);
}

static const dmsg_session_callbacks session_cb = {
    .on_ready = on_ready, .on_stream = on_stream, .on_close = on_session_close};

static void on_connection(uv_stream_t *server, int status)
{
    dmsg_session_config cfg;
    uv_tcp_t *client;

    if (status < 0 || app.session != NULL)
        return;
    client = malloc(sizeof *client);
    if (client == NULL)
        return;
    uv_tcp_init(app.loop, client);
    if (uv_accept(server, (uv_stream_t *)client) != 0) {
        uv_close((uv_handle_t *)client, (uv_close_cb)free);
        return;
    }
    dmsg_session_config_default(&cfg);
    dmsg_session_accept(app.loop, client, &app.id, &cfg, &session_cb, NULL, &app.session);
}

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    if (app.result[0] != '\0')
        finish(app.result);
    else
        finish("{\"result\":\"deadline\"}");
}

/* ---------------------------------------------------------------------------------------------
 * main */

static void usage(void)
{
    fprintf(stderr, "usage: meshpeer --sk HEX (--server PK@HOST:PORT (announce [--then-relay] | "
                    "relay) [--src-sk HEX --dst PK:PORT] | listen PORT) [--timeout S]\n");
    exit(1);
}

int main(int argc, char **argv)
{
    enum { O_SK = 1, O_SERVER, O_SRC, O_DST, O_THEN, O_TIMEOUT };
    static const struct option longopts[] = {
        {"sk", required_argument, NULL, O_SK},
        {"server", required_argument, NULL, O_SERVER},
        {"src-sk", required_argument, NULL, O_SRC},
        {"dst", required_argument, NULL, O_DST},
        {"then-relay", no_argument, NULL, O_THEN},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {NULL, 0, NULL, 0},
    };
    unsigned timeout_s = 15;
    bool has_sk = false, has_server = false;
    dmsg_session_config cfg;
    struct sockaddr_in sa;
    int ch;

    memset(&app, 0, sizeof app);
    if (dmsg_cipher_init() != 0)
        return 1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case O_SK:
            has_sk = dmsg_sk_from_hex(&app.id.sk, optarg, strlen(optarg)) == 0;
            break;
        case O_SERVER:
            has_server = dmsg_server_ref_parse(&app.server, optarg) == 0;
            break;
        case O_SRC:
            app.has_src = dmsg_sk_from_hex(&app.src_sk, optarg, strlen(optarg)) == 0;
            break;
        case O_DST:
            if (dmsg_addr_parse(&app.dst, optarg) != 0)
                usage();
            break;
        case O_THEN:
            app.then_relay = true;
            break;
        case O_TIMEOUT:
            timeout_s = (unsigned)atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (!has_sk || optind >= argc || dmsg_pk_from_sk(&app.id.pk, &app.id.sk) != 0)
        usage();
    app.mode = argv[optind];
    app.id.rng = dmsg_rng_system();
    app.loop = uv_default_loop();
    uv_timer_init(app.loop, &app.deadline);
    uv_timer_start(&app.deadline, on_deadline, (uint64_t)timeout_s * 1000u, 0);
    app.started_ms = uv_now(app.loop);
    dmsg_session_config_default(&cfg);
    if (strcmp(app.mode, "listen") == 0) {
        if (optind + 1 >= argc)
            usage();
        app.listen_port = (uint16_t)atoi(argv[optind + 1]);
        uv_tcp_init(app.loop, &app.listener);
        uv_ip4_addr("127.0.0.1", app.listen_port, &sa);
        if (uv_tcp_bind(&app.listener, (const struct sockaddr *)&sa, 0) != 0 ||
            uv_listen((uv_stream_t *)&app.listener, 8, on_connection) != 0) {
            fprintf(stderr, "meshpeer: cannot listen on %u\n", (unsigned)app.listen_port);
            return 1;
        }
        app.listening = true;
        fprintf(stderr, "meshpeer: listening\n");
    } else {
        char host[256];
        const char *colon;
        if (!has_server || (strcmp(app.mode, "relay") == 0 && !app.has_src) ||
            (app.then_relay && !app.has_src))
            usage();
        app.step = strcmp(app.mode, "relay") == 0 ? STEP_RELAY : STEP_ANNOUNCE;
        colon = strrchr(app.server.address, ':');
        if (colon == NULL || (size_t)(colon - app.server.address) >= sizeof host)
            usage();
        memcpy(host, app.server.address, (size_t)(colon - app.server.address));
        host[colon - app.server.address] = '\0';
        if (uv_ip4_addr(host, atoi(colon + 1), &sa) != 0 ||
            dmsg_session_connect(app.loop, (const struct sockaddr *)&sa, &app.id, &app.server.pk,
                                 &cfg, &session_cb, NULL, &app.session) != 0) {
            fprintf(stderr, "meshpeer: cannot connect to %s\n", app.server.address);
            return 1;
        }
    }
    uv_run(app.loop, UV_RUN_DEFAULT);
    reader_reset(&app.rd);
    printf("%s\n", app.result);
    fflush(stdout);
    uv_loop_close(app.loop);
    return 0;
}
