/* streamclient: many concurrent DMSG streams through the C client library, for the end-to-end
 * tests. Each stream sends its own pseudo-random bytes to an echo listener (`dmsgcat listen
 * --echo`), reads them back and compares SHA-256 of what went out and what came back.
 *
 *   streamclient (--server PK@HOST:PORT | --discovery URL) --dst PK:PORT
 *                [--streams N] [--bytes B] [--dial-window W] [--timeout S]
 *
 * --dial-window bounds the dials waiting for their response at one time (default: all N at
 * once); every stream stays open until its bytes came back, so all N are concurrent in data.
 *
 * Prints one JSON line {"streams","ok","failed","mismatch","seconds","errors":{...}} and exits
 * 0 only when every stream came back intact. A stream's side is closed only after all its bytes
 * came back: through a server, either side's FIN ends the whole stream. */
#include <curl/curl.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "dmsg/client.h"
#include "dmsg/error.h"

#define CHUNK (64u * 1024u)
#define MAX_ERRORS 8

struct run;

struct echo_stream {
    struct run *run;
    unsigned index;
    dmsg_conn *conn;
    uint64_t state;                 /* xorshift state: the stream's bytes */
    uint64_t sent, received;
    crypto_hash_sha256_state out_hash, in_hash;
    bool done;
};

struct run {
    uv_loop_t *loop;
    dmsg_client *client;
    dmsg_addr dst;
    uint64_t bytes;
    unsigned n, finished, ok, failed, mismatch;
    struct echo_stream *streams;
    uint8_t *chunk;
    uv_timer_t deadline;
    uint64_t started_ms;
    bool dialed, finishing;
    unsigned dial_window, next_dial, dialing;
    unsigned dial_outcomes;         /* dials finished either way: data starts once all did */
    unsigned max_open;              /* most streams open at one time */
    unsigned open;
    int error_codes[MAX_ERRORS];
    unsigned error_counts[MAX_ERRORS];
};

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void note_error(struct run *r, int err)
{
    for (unsigned i = 0; i < MAX_ERRORS; i++) {
        if (r->error_counts[i] == 0 || r->error_codes[i] == err) {
            r->error_codes[i] = err;
            r->error_counts[i]++;
            return;
        }
    }
}

static void finish_run(struct run *r)
{
    if (r->finishing)
        return;
    r->finishing = true;
    uv_timer_stop(&r->deadline);
    uv_close((uv_handle_t *)&r->deadline, NULL);
    if (r->client != NULL)
        dmsg_client_close(r->client);
}

static void stream_done(struct echo_stream *s, int err)
{
    struct run *r = s->run;
    uint8_t a[crypto_hash_sha256_BYTES], b[crypto_hash_sha256_BYTES];

    if (s->done)
        return;
    s->done = true;
    s->conn = NULL;
    crypto_hash_sha256_final(&s->out_hash, a);
    crypto_hash_sha256_final(&s->in_hash, b);
    if (s->received == r->bytes && s->sent == r->bytes && memcmp(a, b, sizeof a) == 0) {
        r->ok++;
    } else {
        r->failed++;
        if (s->received == r->bytes)
            r->mismatch++;
        note_error(r, err);
    }
    if (++r->finished == r->n)
        finish_run(r);
}

/* Writes while the stream's queue is under one window. */
static void fill(struct echo_stream *s)
{
    struct run *r = s->run;

    while (s->conn != NULL && s->sent < r->bytes &&
           dmsg_conn_write_queued(s->conn) < DMSG_CLIENT_WINDOW) {
        size_t n = r->bytes - s->sent < CHUNK ? (size_t)(r->bytes - s->sent) : CHUNK;
        for (size_t i = 0; i < n; i += 8) {
            uint64_t v = xorshift(&s->state);
            memcpy(r->chunk + i, &v, n - i < 8 ? n - i : 8);
        }
        crypto_hash_sha256_update(&s->out_hash, r->chunk, n);
        if (dmsg_conn_write(s->conn, r->chunk, n, NULL, NULL) != 0) {
            dmsg_conn_reset(s->conn);
            return;
        }
        s->sent += n;
    }
}

static void on_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    struct echo_stream *s = ctx;

    crypto_hash_sha256_update(&s->in_hash, data, len);
    s->received += len;
    dmsg_conn_consume(c, len);
    if (s->received >= s->run->bytes)
        dmsg_conn_close(c);
}

static void on_eof(dmsg_conn *c, void *ctx)
{
    (void)ctx;
    dmsg_conn_close(c);
}

static void on_writable(dmsg_conn *c, void *ctx)
{
    struct echo_stream *s = ctx;
    (void)c;
    if (s->run->dial_outcomes == s->run->n)
        fill(s);
}

static void on_close(dmsg_conn *c, int err, void *ctx)
{
    struct echo_stream *s = ctx;
    (void)c;
    s->run->open--;
    stream_done(s, err);
}

static const dmsg_conn_callbacks stream_callbacks = {
    .on_data = on_data,
    .on_eof = on_eof,
    .on_writable = on_writable,
    .on_close = on_close,
};

static void dial_more(struct run *r);

static void on_dialed(dmsg_client *client, dmsg_conn *conn, int err, uint16_t code, void *arg)
{
    struct echo_stream *s = arg;

    (void)client;
    struct run *r = s->run;
    r->dialing--;
    r->dial_outcomes++;
    dial_more(r);
    if (err != 0) {
        fprintf(stderr, "streamclient: stream %u: dial failed: %s (code %u)\n", s->index,
                dmsg_strerror(err), (unsigned)code);
        stream_done(s, err);
    } else {
        s->conn = conn;
        dmsg_conn_set_callbacks(conn, &stream_callbacks, s);
        if (++r->open > r->max_open)
            r->max_open = r->open;
    }
    /* No stream sends before every dial is over: then all of them are open at once. */
    if (r->dial_outcomes == r->n)
        for (unsigned i = 0; i < r->n; i++)
            fill(&r->streams[i]);
}

static void dial_more(struct run *r)
{
    while (!r->finishing && r->next_dial < r->n && r->dialing < r->dial_window) {
        struct echo_stream *s = &r->streams[r->next_dial++];
        r->dialing++;
        if (dmsg_client_dial(r->client, &r->dst, on_dialed, s) != 0) {
            r->dialing--;
            stream_done(s, DMSG_EINVAL);
        }
    }
}

static void on_event(dmsg_client *c, dmsg_client_event ev, const dmsg_pk *server, int err,
                     void *ctx)
{
    struct run *r = ctx;

    (void)c;
    (void)server;
    if (ev == DMSG_CLIENT_SESSION_FAILED || ev == DMSG_CLIENT_SESSION_DOWN)
        fprintf(stderr, "streamclient: session event %d: %s\n", (int)ev, dmsg_strerror(err));
    /* Dial once a session is up, so that every dial has a server to go through. */
    if (ev == DMSG_CLIENT_SESSION_UP && !r->dialed && !r->finishing) {
        r->dialed = true;
        r->started_ms = uv_now(r->loop);
        dial_more(r);
    }
}

static void on_client_closed(dmsg_client *c, void *ctx)
{
    struct run *r = ctx;
    (void)c;
    r->client = NULL;
}

static void on_deadline(uv_timer_t *t)
{
    struct run *r = t->data;

    fprintf(stderr, "streamclient: deadline: %u of %u streams finished\n", r->finished, r->n);
    for (unsigned i = 0; i < r->n; i++)
        if (!r->streams[i].done && r->streams[i].conn != NULL)
            dmsg_conn_reset(r->streams[i].conn);
    finish_run(r);
}

static void usage(void)
{
    fprintf(stderr, "usage: streamclient (--server PK@HOST:PORT | --discovery URL) --dst PK:PORT"
                    " [--streams N] [--bytes B] [--dial-window W] [--timeout S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'},  {"discovery", required_argument, NULL, 'D'},
        {"dst", required_argument, NULL, 'd'},     {"streams", required_argument, NULL, 'n'},
        {"bytes", required_argument, NULL, 'b'},   {"timeout", required_argument, NULL, 't'},
        {"dial-window", required_argument, NULL, 'w'},
        {NULL, 0, NULL, 0},
    };
    struct run r;
    dmsg_server_ref server;
    const char *discovery = NULL;
    bool have_server = false, have_dst = false;
    unsigned timeout_s = 120;
    int ch;

    memset(&r, 0, sizeof r);
    r.n = 100;
    r.bytes = 1024 * 1024;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (dmsg_server_ref_parse(&server, optarg) != 0)
                usage();
            have_server = true;
            break;
        case 'D': discovery = optarg; break;
        case 'd':
            if (dmsg_addr_parse(&r.dst, optarg) != 0)
                usage();
            have_dst = true;
            break;
        case 'n': r.n = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'b': r.bytes = strtoull(optarg, NULL, 10); break;
        case 'w': r.dial_window = (unsigned)strtoul(optarg, NULL, 10); break;
        case 't': timeout_s = (unsigned)strtoul(optarg, NULL, 10); break;
        default: usage();
        }
    }
    if ((!have_server && discovery == NULL) || !have_dst || r.n == 0 || r.bytes == 0)
        usage();
    if (r.dial_window == 0)
        r.dial_window = r.n;
    if (dmsg_cipher_init() != 0 || sodium_init() < 0)
        return 2;
    if (discovery != NULL && curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 2;

    dmsg_identity id;
    memset(&id, 0, sizeof id);
    id.rng = dmsg_rng_system();
    if (dmsg_keypair_generate(&id.pk, &id.sk, &id.rng) != 0)
        return 2;
    r.streams = calloc(r.n, sizeof *r.streams);
    r.chunk = malloc(CHUNK + 8);
    if (r.streams == NULL || r.chunk == NULL)
        return 2;
    for (unsigned i = 0; i < r.n; i++) {
        r.streams[i].run = &r;
        r.streams[i].index = i;
        r.streams[i].state = 0x9e3779b97f4a7c15ull * (i + 1);
        crypto_hash_sha256_init(&r.streams[i].out_hash);
        crypto_hash_sha256_init(&r.streams[i].in_hash);
    }

    r.loop = uv_default_loop();
    dmsg_client_config cfg;
    dmsg_client_config_default(&cfg);
    cfg.discovery_url = have_server ? NULL : discovery;
    cfg.servers = have_server ? &server : NULL;
    cfg.n_servers = have_server ? 1 : 0;
    cfg.min_sessions = have_server ? 0 : 1;
    static const dmsg_client_callbacks cb = {.on_event = on_event, .on_close = on_client_closed};
    int err = dmsg_client_start(r.loop, &id, &cfg, &cb, &r, &r.client);
    dmsg_wipe(&id.sk, sizeof id.sk);
    if (err != 0) {
        fprintf(stderr, "streamclient: cannot start the client: %s\n", dmsg_strerror(err));
        return 2;
    }
    uv_timer_init(r.loop, &r.deadline);
    r.deadline.data = &r;
    uv_timer_start(&r.deadline, on_deadline, (uint64_t)timeout_s * 1000u, 0);
    uv_run(r.loop, UV_RUN_DEFAULT);
    uv_update_time(r.loop);
    double seconds = (double)(uv_now(r.loop) - r.started_ms) / 1000.0;

    printf("{\"streams\":%u,\"ok\":%u,\"failed\":%u,\"mismatch\":%u,\"unfinished\":%u,"
           "\"max_open\":%u,\"seconds\":%.3f,\"errors\":{",
           r.n, r.ok, r.failed, r.mismatch, r.n - r.finished, r.max_open, seconds);
    for (unsigned i = 0; i < MAX_ERRORS && r.error_counts[i] > 0; i++)
        printf("%s\"%s\":%u", i ? "," : "", dmsg_strerror(r.error_codes[i]), r.error_counts[i]);
    printf("}}\n");
    uv_loop_close(r.loop);
    free(r.streams);
    free(r.chunk);
    if (discovery != NULL)
        curl_global_cleanup();
    return r.ok == r.n ? 0 : 1;
}
