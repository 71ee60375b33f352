/* badclient: a DMSG client that misbehaves on purpose, for the end-to-end tests.
 *
 * Blocking-style code on one non-blocking socket with poll(), the protocol cores only: every
 * handshake message, yamux frame and session object is built here by hand, so that each can be
 * broken in a chosen way. Prints one JSON line describing what the server did; the Python tests
 * judge it. Exit status 0 when the run went as far as the mode needs, 1 on a local failure
 * (bad arguments, cannot connect), never on what the server did.
 *
 *   badclient --server PK@HOST:PORT [--deadline-ms N] MODE [options]
 *
 * Modes:
 *   hs-stall        send message 1, read message 2, then nothing: when does the server cut us?
 *   hs-garbage      send message 1, read message 2, then 65 random bytes as message 3
 *   yamux-garbage   finish the handshake, then bytes that are not yamux (version 0x55)
 *   silent-stream   open one stream and never send its request
 *   ping            open one stream and send the newer clients' ping (00 00)
 *   request         one stream carrying one StreamRequest (see the options below)
 *   flood N         N streams opened at once, each with a StreamRequest, in one burst
 *
 * Request options: --dst PK:PORT (default: a random key, port 1), --forge-sig (flip a bit of
 * the signature), --foreign-src (source key is another key that signs the request correctly),
 * --wrong-signer (source is our key, another key signs), --dst-port-zero, --ts-zero.
 * --eager (any mode past the handshake): handshake message 3 and the first yamux frames leave in
 * one write, as a client that does not wait would send them. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/noise.h"
#include "dmsg/rng.h"
#include "dmsg/wire.h"
#include "dmsg/yamux.h"

#define FIRST_SRC_PORT 49153u
#define STREAM_RX_CAP 70000u   /* one response object and a little data */
#define READ_CHUNK 65536u
#define PING_OPAQUE 0x5eed1234u

/* ---------------------------------------------------------------------------------------------
 * Time and small helpers */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "badclient: %s\n", what);
    exit(1);
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Our key pair and randomness. */
struct identity {
    dmsg_pk pk;
    dmsg_sk sk;
    dmsg_rng rng;
};

/* ---------------------------------------------------------------------------------------------
 * The connection: an output queue, an input buffer, the session keys */

struct stream {
    bool acked, fin_rx, rst_rx, fin_tx, responded;
    bool accepted;
    uint16_t code;          /* the refusal's ErrCode, or the verification failure */
    bool verified;          /* the response is signed by the destination and hashes our request */
    uint64_t ended_ms;      /* when it was over (RST or FIN from the server), 0 while open */
    uint8_t *req;           /* our request SignedObject, for checking the response */
    size_t req_len;
    uint8_t *rx;
    size_t rx_len;
};

struct conn {
    int fd;
    uint8_t *out;
    size_t out_len, out_cap;
    uint8_t *in;
    size_t in_len, in_cap;
    bool eof;               /* the server closed or reset the TCP connection */
    uint64_t eof_ms;
    bool proto_error;       /* the server sent something that is not yamux */
    bool pong;
    bool goaway;
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    struct stream *streams;
    size_t n_streams;
};

static void out_append(struct conn *c, const void *p, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 65536;
        while (cap < c->out_len + n)
            cap *= 2;
        c->out = realloc(c->out, cap);
        if (c->out == NULL)
            die("out of memory");
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void send_frame(struct conn *c, uint8_t type, uint16_t flags, uint32_t id, uint32_t len,
                       const uint8_t *payload)
{
    dmsg_yamux_hdr h = {.version = 0, .type = type, .flags = flags, .stream_id = id,
                        .length = len};
    uint8_t hdr[DMSG_YAMUX_HDR_LEN];

    dmsg_yamux_hdr_encode(&h, hdr);
    out_append(c, hdr, sizeof hdr);
    if (type == DMSG_YAMUX_DATA && len > 0)
        out_append(c, payload, len);
}

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int fd = -1;

    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    return fd;
}

/* One poll round: writes what it can, reads what is there. Returns false once the deadline
 * passed. */
static bool io_round(struct conn *c, uint64_t deadline)
{
    uint64_t now = now_ms();
    struct pollfd p = {.fd = c->fd, .events = POLLIN};

    if (now >= deadline)
        return false;
    if (c->out_len > 0 && !c->eof)
        p.events |= POLLOUT;
    if (c->eof && c->out_len == 0)
        return false;
    int n = poll(&p, 1, (int)(deadline - now > 50 ? 50 : deadline - now));
    if (n <= 0)
        return true;
    if ((p.revents & POLLOUT) && c->out_len > 0) {
        ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (w > 0) {
            memmove(c->out, c->out + w, c->out_len - (size_t)w);
            c->out_len -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            c->out_len = 0; /* the server is gone; the read side will notice */
        }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        if (c->in_cap - c->in_len < READ_CHUNK) {
            c->in_cap = c->in_len + 2 * READ_CHUNK;
            c->in = realloc(c->in, c->in_cap);
            if (c->in == NULL)
                die("out of memory");
        }
        ssize_t r = recv(c->fd, c->in + c->in_len, READ_CHUNK, 0);
        if (r > 0) {
            c->in_len += (size_t)r;
        } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            if (!c->eof)
                c->eof_ms = now_ms();
            c->eof = true;
            c->out_len = 0;
        }
    }
    return true;
}

/* Waits until the input holds n bytes. false on EOF or deadline. */
static bool read_exact(struct conn *c, size_t n, uint64_t deadline)
{
    while (c->in_len < n) {
        if (c->eof || !io_round(c, deadline))
            return false;
    }
    return true;
}

static void in_drop(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Flushes the output queue (or gives up at the deadline / EOF). */
static void flush(struct conn *c, uint64_t deadline)
{
    while (c->out_len > 0 && !c->eof && io_round(c, deadline))
        ;
}

/* ---------------------------------------------------------------------------------------------
 * Session handshake (Noise XK initiator) */

enum hs_break {
    HS_COMPLETE,
    HS_COMPLETE_EAGER,      /* message 3 stays queued: the first yamux frames share its write */
    HS_STALL_AFTER_MSG2,
    HS_GARBAGE_MSG3
};

/* Returns 0 when the handshake went as planned; -1 when the server cut it short. */
static int handshake(struct conn *c, const struct identity *id, const dmsg_pk *server_pk,
                     enum hs_break how, uint64_t deadline)
{
    dmsg_noise_hs hs;
    uint8_t msg[DMSG_NOISE_LEN_PREFIX + DMSG_NOISE_HS_MSG_MAX];
    size_t len = 0;

    if (dmsg_noise_hs_init(&hs, DMSG_NOISE_XK, DMSG_NOISE_INITIATOR, &id->sk, server_pk,
                           &id->rng) != 0 ||
        dmsg_noise_hs_write_framed(&hs, msg, sizeof msg, &len) != 0)
        die("cannot make handshake message 1");
    out_append(c, msg, len);
    flush(c, deadline);
    if (!read_exact(c, 2, deadline))
        return -1;
    size_t body = ((size_t)c->in[0] << 8) | c->in[1];
    if (!read_exact(c, 2 + body, deadline))
        return -1;
    if (dmsg_noise_hs_read(&hs, c->in + 2, body) != 0)
        die("message 2 does not authenticate: wrong server key?");
    in_drop(c, 2 + body);
    if (how == HS_STALL_AFTER_MSG2) {
        dmsg_noise_hs_wipe(&hs);
        return 0;
    }
    if (how == HS_GARBAGE_MSG3) {
        uint8_t junk[2 + 65];
        put_be16(junk, 65);
        dmsg_rng_fill(&id->rng, junk + 2, 65);
        out_append(c, junk, sizeof junk);
        flush(c, deadline);
        dmsg_noise_hs_wipe(&hs);
        return 0;
    }
    if (dmsg_noise_hs_write_framed(&hs, msg, sizeof msg, &len) != 0 ||
        dmsg_noise_hs_split(&hs, &c->tx, &c->rx) != 0)
        die("cannot finish the handshake");
    out_append(c, msg, len);
    if (how == HS_COMPLETE)
        flush(c, deadline);
    return c->eof ? -1 : 0;
}

/* Waits for the server to close the connection; returns ms waited, or -1 at the deadline. */
static long wait_for_close(struct conn *c, uint64_t start, uint64_t deadline)
{
    while (!c->eof && io_round(c, deadline))
        c->in_len = 0; /* whatever it sends, we only wait for the end */
    return c->eof ? (long)(c->eof_ms - start) : -1;
}

/* ---------------------------------------------------------------------------------------------
 * Incoming yamux frames */

static struct stream *stream_of(struct conn *c, uint32_t id)
{
    if (id == 0 || id % 2 == 0 || (id - 1) / 2 >= c->n_streams)
        return NULL;
    return &c->streams[(id - 1) / 2];
}

static void stream_finish(struct stream *s)
{
    if (s->ended_ms == 0)
        s->ended_ms = now_ms();
}

/* The first object on a stream is the response; check it like a dialer would. */
static void take_response(struct conn *c, struct stream *s, uint32_t id)
{
    if (s->responded || s->rx_len < 2)
        return;
    size_t body = ((size_t)s->rx[0] << 8) | s->rx[1];
    if (body == 0) { /* the ping echo (00 00) */
        s->responded = true;
        s->accepted = true;
        return;
    }
    if (s->rx_len < 2 + body)
        return;
    s->responded = true;
    uint8_t *obj = NULL;
    size_t obj_len = 0;
    dmsg_stream_request req;
    dmsg_stream_response resp;
    uint16_t code = 0;
    if (dmsg_noise_open(&c->rx, s->rx + 2, body, &obj, &obj_len) != 0) {
        s->code = DMSG_WIRE_SIGNED_OBJECT_INVALID;
        return;
    }
    if (s->req == NULL || dmsg_stream_request_parse(&req, s->req, s->req_len, &code) != 0 ||
        dmsg_stream_response_parse(&resp, obj, obj_len, &code) != 0) {
        s->code = code ? code : DMSG_WIRE_SIGNED_OBJECT_INVALID;
        return;
    }
    int rc = dmsg_stream_response_verify(&resp, &req, &code);
    s->verified = rc == 0 || (rc == DMSG_EWIRE && code != DMSG_WIRE_RESP_INVALID_SIG &&
                              code != DMSG_WIRE_RESP_INVALID_HASH);
    s->accepted = rc == 0 && resp.accepted;
    s->code = rc == 0 ? 0 : code;
    /* Like a well-behaved dialer that is done: close our side; the server ends both. */
    if (!s->fin_tx && !s->rst_rx) {
        send_frame(c, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_FIN, id, 0, NULL);
        s->fin_tx = true;
    }
}

static void on_frame(struct conn *c, const dmsg_yamux_hdr *h, const uint8_t *payload)
{
    struct stream *s = stream_of(c, h->stream_id);

    if (h->type == DMSG_YAMUX_PING) {
        if (h->flags & DMSG_YAMUX_SYN)
            send_frame(c, DMSG_YAMUX_PING, DMSG_YAMUX_ACK, 0, h->length, NULL);
        else if (h->length == PING_OPAQUE)
            c->pong = true;
        return;
    }
    if (h->type == DMSG_YAMUX_GOAWAY) {
        c->goaway = true;
        return;
    }
    if ((h->flags & DMSG_YAMUX_SYN) && h->stream_id % 2 == 0) {
        send_frame(c, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_RST, h->stream_id, 0, NULL);
        return;
    }
    if (s == NULL)
        return;
    if (h->flags & DMSG_YAMUX_ACK)
        s->acked = true;
    if (h->flags & DMSG_YAMUX_RST) {
        s->rst_rx = true;
        stream_finish(s);
    }
    if (h->type == DMSG_YAMUX_DATA && h->length > 0) {
        size_t room = STREAM_RX_CAP - s->rx_len;
        size_t take = h->length < room ? h->length : room;
        if (s->rx == NULL && (s->rx = malloc(STREAM_RX_CAP)) == NULL)
            die("out of memory");
        memcpy(s->rx + s->rx_len, payload, take);
        s->rx_len += take;
        /* Give the window back at once: we never hold the server back. */
        send_frame(c, DMSG_YAMUX_WINDOW_UPDATE, 0, h->stream_id, h->length, NULL);
        take_response(c, s, h->stream_id);
    }
    if (h->flags & DMSG_YAMUX_FIN) {
        s->fin_rx = true;
        stream_finish(s);
        if (!s->fin_tx && !s->rst_rx) {
            send_frame(c, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_FIN, h->stream_id, 0, NULL);
            s->fin_tx = true;
        }
    }
}

/* Parses every complete frame in the input buffer. */
static void process_input(struct conn *c)
{
    size_t off = 0;

    while (!c->proto_error && c->in_len - off >= DMSG_YAMUX_HDR_LEN) {
        dmsg_yamux_hdr h;
        if (dmsg_yamux_hdr_decode(c->in + off, c->in_len - off, &h) != 0) {
            c->proto_error = true;
            break;
        }
        size_t need = DMSG_YAMUX_HDR_LEN + (h.type == DMSG_YAMUX_DATA ? h.length : 0);
        if (c->in_len - off < need)
            break;
        on_frame(c, &h, c->in + off + DMSG_YAMUX_HDR_LEN);
        off += need;
    }
    in_drop(c, off);
}

static bool all_streams_over(const struct conn *c)
{
    for (size_t i = 0; i < c->n_streams; i++)
        if (c->streams[i].ended_ms == 0)
            return false;
    return true;
}

/* Runs the session until every stream is over (or the connection is gone, or the deadline). */
static void run_streams(struct conn *c, uint64_t deadline)
{
    while (!c->eof && !c->proto_error && !all_streams_over(c)) {
        if (!io_round(c, deadline))
            break;
        process_input(c);
    }
    flush(c, now_ms() + 200 < deadline ? now_ms() + 200 : deadline);
}

/* Is the session still served? A yamux ping must come back. */
static const char *session_liveness(struct conn *c, uint64_t deadline)
{
    if (c->eof)
        return "closed";
    c->pong = false;
    send_frame(c, DMSG_YAMUX_PING, DMSG_YAMUX_SYN, 0, PING_OPAQUE, NULL);
    while (!c->pong && !c->eof && !c->proto_error && io_round(c, deadline))
        process_input(c);
    return c->pong ? "alive" : c->eof ? "closed" : "silent";
}

/* ---------------------------------------------------------------------------------------------
 * Requests */

struct request_opts {
    dmsg_addr dst;
    bool forge_sig, foreign_src, wrong_signer, dst_port_zero, ts_zero;
};

/* Builds the SignedObject for stream number i into a fresh buffer. */
static uint8_t *make_request(const struct identity *id, const struct request_opts *o,
                             const uint8_t kk_msg1[49], size_t i, size_t *out_len)
{
    static const size_t cap = 1024;
    uint8_t *out = malloc(cap);
    dmsg_stream_request req;
    dmsg_pk other_pk;
    dmsg_sk other_sk;
    const dmsg_sk *signer = &id->sk;

    if (out == NULL)
        die("out of memory");
    memset(&req, 0, sizeof req);
    req.src.pk = id->pk;
    req.src.port = (uint16_t)(FIRST_SRC_PORT + i % (65536 - FIRST_SRC_PORT));
    req.dst = o->dst;
    if (o->dst_port_zero)
        req.dst.port = 0;
    req.noise_msg.ptr = kk_msg1;
    req.noise_msg.len = 49;
    if (o->foreign_src || o->wrong_signer) {
        if (dmsg_keypair_generate(&other_pk, &other_sk, &id->rng) != 0)
            die("keypair");
        signer = &other_sk;
        if (o->foreign_src)
            req.src.pk = other_pk;
    }
    if (dmsg_stream_request_make(&req, o->ts_zero ? 0 : wall_ns(), signer, out, cap, out_len) != 0)
        die("cannot make the request");
    if (o->forge_sig)
        out[7] ^= 0x01; /* inside r: the signature recovers to some other key */
    dmsg_wipe(&other_sk, sizeof other_sk);
    return out;
}

/* Opens n streams at once, each with its request in the same burst. */
static void open_request_streams(struct conn *c, const struct identity *id,
                                 const struct request_opts *o, size_t n)
{
    dmsg_noise_hs kk;
    uint8_t msg1[64];
    size_t msg1_len = 0;
    uint8_t sealed[DMSG_NOISE_FRAMED_OVERHEAD + 1024];

    /* One KK message 1 serves every stream: listeners do not track replays across streams. */
    if (dmsg_noise_hs_init(&kk, DMSG_NOISE_KK, DMSG_NOISE_INITIATOR, &id->sk, &o->dst.pk,
                           &id->rng) != 0 ||
        dmsg_noise_hs_write(&kk, msg1, sizeof msg1, &msg1_len) != 0 || msg1_len != 49) {
        /* A random destination key may be invalid for KK; any 49 bytes do for the server. */
        dmsg_rng_fill(&id->rng, msg1, 49);
    }
    dmsg_noise_hs_wipe(&kk);
    c->streams = calloc(n, sizeof *c->streams);
    if (c->streams == NULL)
        die("out of memory");
    c->n_streams = n;
    for (size_t i = 0; i < n; i++) {
        struct stream *s = &c->streams[i];
        uint32_t sid = (uint32_t)(2 * i + 1);
        size_t sealed_len = 0;
        s->req = make_request(id, o, msg1, i, &s->req_len);
        if (dmsg_noise_seal_framed(&c->tx, s->req, s->req_len, sealed, sizeof sealed,
                                   &sealed_len) != 0)
            die("cannot seal the request");
        send_frame(c, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, sid, 0, NULL);
        send_frame(c, DMSG_YAMUX_DATA, 0, sid, (uint32_t)sealed_len, sealed);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Reports */

static void report_streams(const struct conn *c, uint64_t start, const char *liveness)
{
    size_t rst = 0, fin = 0, accepted = 0, refused = 0, invalid = 0, hanging = 0, acked = 0;
    size_t dropped = 0; /* still open when the server closed the whole session: ended with it */
    uint64_t max_ms = 0;
    unsigned first_code = 0;

    for (size_t i = 0; i < c->n_streams; i++) {
        const struct stream *s = &c->streams[i];
        acked += s->acked;
        if (s->responded && s->accepted)
            accepted++;
        else if (s->responded && s->verified) {
            refused++;
            if (first_code == 0)
                first_code = s->code;
        } else if (s->responded)
            invalid++;
        if (s->ended_ms == 0) {
            if (c->eof)
                dropped++;
            else
                hanging++;
            continue;
        }
        if (s->rst_rx)
            rst++;
        else
            fin++;
        if (s->ended_ms - start > max_ms)
            max_ms = s->ended_ms - start;
    }
    printf("{\"streams\":%zu,\"acked\":%zu,\"rst\":%zu,\"fin\":%zu,\"accepted\":%zu,"
           "\"refused\":%zu,\"refusal_code\":%u,\"invalid_response\":%zu,\"hanging\":%zu,"
           "\"dropped\":%zu,\"max_end_ms\":%llu,\"session\":\"%s\",\"goaway\":%s,"
           "\"proto_error\":%s}\n",
           c->n_streams, acked, rst, fin, accepted, refused, first_code, invalid, hanging, dropped,
           (unsigned long long)max_ms, liveness, c->goaway ? "true" : "false",
           c->proto_error ? "true" : "false");
}

static void report_close(const char *mode, long ms)
{
    printf("{\"mode\":\"%s\",\"closed_after_ms\":%ld}\n", mode, ms);
}

/* ---------------------------------------------------------------------------------------------
 * main */

static void usage(void)
{
    fprintf(stderr,
            "usage: badclient --server PK@HOST:PORT [--deadline-ms N] MODE [N] [options]\n"
            "modes: hs-stall hs-garbage yamux-garbage silent-stream ping request flood N\n"
            "request options: --dst PK:PORT --forge-sig --foreign-src --wrong-signer\n"
            "                 --dst-port-zero --ts-zero --eager\n");
    exit(1);
}

static int parse_pk_port(const char *text, dmsg_addr *out)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || dmsg_pk_from_hex(&out->pk, text, (size_t)(colon - text)) != 0)
        return -1;
    long port = strtol(colon + 1, NULL, 10);
    if (port < 0 || port > 65535)
        return -1;
    out->port = (uint16_t)port;
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_SERVER = 256, O_DEADLINE, O_DST, O_FORGE, O_FOREIGN, O_SIGNER, O_PORT0, O_TS0,
           O_EAGER };
    static const struct option longopts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"deadline-ms", required_argument, NULL, O_DEADLINE},
        {"dst", required_argument, NULL, O_DST},
        {"forge-sig", no_argument, NULL, O_FORGE},
        {"foreign-src", no_argument, NULL, O_FOREIGN},
        {"wrong-signer", no_argument, NULL, O_SIGNER},
        {"dst-port-zero", no_argument, NULL, O_PORT0},
        {"ts-zero", no_argument, NULL, O_TS0},
        {"eager", no_argument, NULL, O_EAGER},
        {NULL, 0, NULL, 0},
    };
    const char *server = NULL;
    uint64_t deadline_ms = 20000;
    struct request_opts ro;
    bool have_dst = false, eager = false;
    int ch;

    memset(&ro, 0, sizeof ro);
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case O_SERVER: server = optarg; break;
        case O_DEADLINE: deadline_ms = strtoull(optarg, NULL, 10); break;
        case O_DST:
            if (parse_pk_port(optarg, &ro.dst) != 0)
                usage();
            have_dst = true;
            break;
        case O_FORGE: ro.forge_sig = true; break;
        case O_FOREIGN: ro.foreign_src = true; break;
        case O_SIGNER: ro.wrong_signer = true; break;
        case O_PORT0: ro.dst_port_zero = true; break;
        case O_TS0: ro.ts_zero = true; break;
        case O_EAGER: eager = true; break;
        default: usage();
        }
    }
    if (server == NULL || optind >= argc)
        usage();
    const char *mode = argv[optind];
    size_t flood_n = 0;
    if (strcmp(mode, "flood") == 0) {
        if (optind + 1 >= argc)
            usage();
        flood_n = strtoul(argv[optind + 1], NULL, 10);
        if (flood_n == 0 || flood_n > 32767)
            usage();
    }

    /* PK@HOST:PORT */
    char host[256], port[16];
    dmsg_pk server_pk;
    const char *at = strchr(server, '@'), *colon = strrchr(server, ':');
    if (at == NULL || colon == NULL || colon < at || (size_t)(colon - at - 1) >= sizeof host ||
        strlen(colon + 1) >= sizeof port ||
        dmsg_pk_from_hex(&server_pk, server, (size_t)(at - server)) != 0)
        usage();
    memcpy(host, at + 1, (size_t)(colon - at - 1));
    host[colon - at - 1] = '\0';
    strcpy(port, colon + 1);

    if (dmsg_cipher_init() != 0)
        die("cipher init");
    struct identity id;
    id.rng = dmsg_rng_system();
    if (dmsg_keypair_generate(&id.pk, &id.sk, &id.rng) != 0)
        die("keypair");
    if (!have_dst) {
        dmsg_sk unused;
        if (dmsg_keypair_generate(&ro.dst.pk, &unused, &id.rng) != 0)
            die("keypair");
        ro.dst.port = 1;
    }

    struct conn c;
    memset(&c, 0, sizeof c);
    c.fd = connect_to(host, port);
    if (c.fd < 0)
        die("cannot connect");
    uint64_t start = now_ms();
    uint64_t deadline = start + deadline_ms;

    if (strcmp(mode, "hs-stall") == 0 || strcmp(mode, "hs-garbage") == 0) {
        bool stall = strcmp(mode, "hs-stall") == 0;
        if (handshake(&c, &id, &server_pk, stall ? HS_STALL_AFTER_MSG2 : HS_GARBAGE_MSG3,
                      deadline) != 0)
            report_close(mode, (long)(c.eof_ms - start));
        else
            report_close(mode, wait_for_close(&c, start, deadline));
    } else {
        if (handshake(&c, &id, &server_pk, eager ? HS_COMPLETE_EAGER : HS_COMPLETE,
                      deadline) != 0) {
            report_close("handshake-refused", (long)(c.eof_ms - start));
            return 0;
        }
        uint64_t t0 = now_ms();
        if (strcmp(mode, "yamux-garbage") == 0) {
            uint8_t junk[64];
            memset(junk, 0x55, sizeof junk);
            out_append(&c, junk, sizeof junk);
            flush(&c, deadline);
            report_close(mode, wait_for_close(&c, t0, deadline));
        } else if (strcmp(mode, "silent-stream") == 0 || strcmp(mode, "ping") == 0) {
            c.streams = calloc(1, sizeof *c.streams);
            c.n_streams = 1;
            send_frame(&c, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 1, 0, NULL);
            if (strcmp(mode, "ping") == 0) {
                static const uint8_t marker[2] = {0, 0};
                send_frame(&c, DMSG_YAMUX_DATA, 0, 1, 2, marker);
            }
            run_streams(&c, deadline);
            report_streams(&c, t0, session_liveness(&c, now_ms() + 3000));
        } else if (strcmp(mode, "request") == 0 || flood_n > 0) {
            open_request_streams(&c, &id, &ro, flood_n ? flood_n : 1);
            run_streams(&c, deadline);
            report_streams(&c, t0, session_liveness(&c, now_ms() + 3000));
        } else {
            usage();
        }
    }
    for (size_t i = 0; i < c.n_streams; i++) {
        free(c.streams[i].req);
        free(c.streams[i].rx);
    }
    free(c.streams);
    free(c.in);
    free(c.out);
    close(c.fd);
    dmsg_wipe(&id.sk, sizeof id.sk);
    dmsg_noise_tx_wipe(&c.tx);
    dmsg_noise_rx_wipe(&c.rx);
    return 0;
}
