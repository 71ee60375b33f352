/* dmsgcat: netcat over DMSG. Pipes stdin/stdout through one end-to-end encrypted DMSG stream.
 *
 *   dmsgcat [options] listen PORT
 *   dmsgcat [options] dial PK:PORT
 *
 * Data flows with backpressure both ways: stdin is read only while the stream's write queue is
 * below one window, and received bytes are reported as taken only once stdout has written them,
 * so dmsgcat holds at most about one window (256 KiB) per direction whatever the speeds. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "dmsg/client.h"
#include "dmsg/error.h"

enum exit_code {
    EXIT_OK = 0,         /* the stream ended normally (the peer closed it) */
    EXIT_USAGE = 1,      /* bad arguments */
    EXIT_KEY = 2,        /* the key could not be read, parsed or written */
    EXIT_SETUP = 3,      /* client or listener could not start (port in use, bad server...) */
    EXIT_REFUSED = 4,    /* the destination refused the stream (e.g. no listener: 306) */
    EXIT_UNREACHED = 5,  /* the dial failed: timeout, unknown destination, no session */
    EXIT_BROKEN = 6,     /* the stream broke after it was established (reset, bad data, I/O) */
    EXIT_SIGNAL = 130    /* interrupted by SIGINT/SIGTERM */
};

#define READ_CHUNK (64u * 1024u)
#define MAX_SERVERS 64

static const char usage_text[] =
    "usage: dmsgcat [options] listen PORT\n"
    "       dmsgcat [options] dial PK:PORT\n"
    "\n"
    "Netcat over DMSG: copies stdin into one DMSG stream and the stream to stdout.\n"
    "\n"
    "options:\n"
    "  --discovery URL        dmsg-discovery base URL (server lookup, our client entry)\n"
    "  --server PK@HOST:PORT  hold a session to this server; repeatable. With --server, exactly\n"
    "                         these servers are used (no discovery picks).\n"
    "  --key-file FILE        our secret key: JSON {\"secret_key\":\"<hex>\"} (dmsgd's keys.json)\n"
    "                         or one line of 64 hex characters; created with a fresh key when\n"
    "                         the file does not exist\n"
    "  --sk HEX               our secret key (64 hex characters)\n"
    "                         Without a key, a fresh one is made. Our public key is printed to\n"
    "                         stderr as \"dmsgcat: pk=<hex>\".\n"
    "  --timeout SECONDS      dial: give up after this long (default 60)\n"
    "  --min-sessions N       sessions to keep with servers picked from discovery (default 1)\n"
    "  --mesh first|last|off  dial through our other sessions before (default) or after new\n"
    "                         sessions to the destination's servers, or never\n"
    "  -d, --no-stdin         do not read stdin: our side stays open until the peer ends\n"
    "                         (through a server, a FIN from either side ends the stream)\n"
    "  --expect BYTES         end the stream once BYTES bytes were received and written;\n"
    "                         EOF on stdin then does not close our side (for echo tests:\n"
    "                         servers end the whole stream when either side closes)\n"
    "  -k, --keep-open        listen: after a stream ends, accept the next one\n"
    "  --echo                 listen: echo every stream back, many at once (no stdin/stdout)\n"
    "  -v, --verbose          report session and discovery events on stderr\n"
    "  -h, --help             this text\n"
    "\n"
    "listen prints \"dmsgcat: ready\" to stderr once a session is up (and, with a discovery,\n"
    "our entry is posted), and \"dmsgcat: accepted <pk>:<port>\" for each stream.\n"
    "EOF on stdin closes our side of the stream; the stream's end (EOF from the peer) ends\n"
    "dmsgcat once stdout is written.\n"
    "\n"
    "exit status:\n"
    "  0    the stream ended normally\n"
    "  1    usage error\n"
    "  2    key error (unreadable, malformed, or the key file could not be written)\n"
    "  3    setup error (bad server, discovery or port; port already in use)\n"
    "  4    the destination refused the stream (e.g. nobody listens on the port)\n"
    "  5    the dial failed (timeout, unknown destination, no server reached)\n"
    "  6    the stream broke after it was established (reset, corrupt data, local I/O error)\n"
    "  130  interrupted (SIGINT or SIGTERM)\n";

typedef struct options {
    const char *mode;           /* "listen" or "dial" */
    const char *target;
    const char *discovery;
    dmsg_server_ref servers[MAX_SERVERS];
    size_t n_servers;
    const char *key_file;
    const char *sk_hex;
    unsigned timeout_s;
    unsigned min_sessions;
    dmsg_client_mesh mesh;
    bool keep_open;
    bool echo;
    bool no_stdin;
    uint64_t expect;            /* end the stream after receiving this many bytes (0: no) */
    bool verbose;
} options;

/* ---------------------------------------------------------------------------------------------
 * Program state: one loop, one client, at most one piped conn (plus echo conns) */

typedef struct out_buf {
    struct out_buf *next;
    size_t len;
    uv_write_t wreq;
    uv_fs_t fsreq;
    uint8_t data[];
} out_buf;

typedef struct app {
    uv_loop_t *loop;
    options opt;
    dmsg_client *client;
    dmsg_listener *listener;
    dmsg_addr dst;
    bool ready_printed;
    bool entry_posted;

    /* stdin */
    bool in_is_file;
    uv_stream_t *in_stream;
    union {
        uv_pipe_t pipe;
        uv_tty_t tty;
    } in_h;
    uv_fs_t in_req;
    bool in_reading;            /* a read is started (stream) or in flight (file) */
    bool in_eof;
    bool in_closed;
    uint8_t *in_buf;

    /* stdout */
    bool out_is_file;
    uv_stream_t *out_stream;
    union {
        uv_pipe_t pipe;
        uv_tty_t tty;
    } out_h;
    out_buf *out_head, *out_tail; /* file mode: writes one at a time */
    bool out_busy;
    size_t out_pending;         /* bytes handed to stdout, not yet written */
    uint64_t out_written;       /* bytes of the current stream written to stdout */
    bool out_failed;

    dmsg_conn *conn;            /* the piped stream */
    bool peer_eof;
    bool stream_over;           /* the piped stream closed without error */
    int exit_code;
    bool finishing;
    uv_signal_t sigint, sigterm;
} app;

static void finish(app *a, int code);
static void maybe_done(app *a);

/* One line on stderr, "dmsgcat: <text>". */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dmsgcat: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---------------------------------------------------------------------------------------------
 * Arguments */

static int parse_uint(const char *text, unsigned max, unsigned *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || !*text || *end || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_args(int argc, char **argv, options *o)
{
    enum { OPT_DISC = 256, OPT_SERVER, OPT_KEYFILE, OPT_SK, OPT_TIMEOUT, OPT_MIN, OPT_MESH,
           OPT_ECHO, OPT_EXPECT };
    static const struct option longopts[] = {
        {"discovery", required_argument, NULL, OPT_DISC},
        {"server", required_argument, NULL, OPT_SERVER},
        {"key-file", required_argument, NULL, OPT_KEYFILE},
        {"sk", required_argument, NULL, OPT_SK},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"min-sessions", required_argument, NULL, OPT_MIN},
        {"mesh", required_argument, NULL, OPT_MESH},
        {"keep-open", no_argument, NULL, 'k'},
        {"no-stdin", no_argument, NULL, 'd'},
        {"echo", no_argument, NULL, OPT_ECHO},
        {"expect", required_argument, NULL, OPT_EXPECT},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->timeout_s = 60;
    o->min_sessions = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "dkvh", longopts, NULL)) != -1) {
        switch (ch) {
        case OPT_DISC:
            o->discovery = optarg;
            break;
        case OPT_SERVER:
            if (o->n_servers == MAX_SERVERS) {
                say("at most 64 --server options");
                return -1;
            }
            if (dmsg_server_ref_parse(&o->servers[o->n_servers], optarg) < 0) {
                say("--server %s: expected PK@HOST:PORT with a valid public key", optarg);
                return -1;
            }
            o->n_servers++;
            break;
        case OPT_KEYFILE:
            o->key_file = optarg;
            break;
        case OPT_SK:
            o->sk_hex = optarg;
            break;
        case OPT_TIMEOUT:
            if (parse_uint(optarg, 86400, &o->timeout_s) < 0 || o->timeout_s == 0) {
                say("--timeout %s: expected 1..86400 seconds", optarg);
                return -1;
            }
            break;
        case OPT_MIN:
            if (parse_uint(optarg, 16, &o->min_sessions) < 0 || o->min_sessions == 0) {
                say("--min-sessions %s: expected 1..16", optarg);
                return -1;
            }
            break;
        case OPT_MESH:
            if (strcmp(optarg, "first") == 0)
                o->mesh = DMSG_MESH_FIRST;
            else if (strcmp(optarg, "last") == 0)
                o->mesh = DMSG_MESH_LAST;
            else if (strcmp(optarg, "off") == 0)
                o->mesh = DMSG_MESH_OFF;
            else {
                say("--mesh %s: expected first, last or off", optarg);
                return -1;
            }
            break;
        case 'k':
            o->keep_open = true;
            break;
        case 'd':
            o->no_stdin = true;
            break;
        case OPT_ECHO:
            o->echo = true;
            break;
        case OPT_EXPECT: {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || !*optarg || *end || v == 0) {
                say("--expect %s: expected a positive byte count", optarg);
                return -1;
            }
            o->expect = v;
            break;
        }
        case 'v':
            o->verbose = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(EXIT_OK);
        default:
            return -1;
        }
    }
    if (argc - optind != 2) {
        say("expected a mode and its argument (see --help)");
        return -1;
    }
    o->mode = argv[optind];
    o->target = argv[optind + 1];
    if (strcmp(o->mode, "listen") != 0 && strcmp(o->mode, "dial") != 0) {
        say("unknown mode \"%s\": expected listen or dial", o->mode);
        return -1;
    }
    if (o->echo && strcmp(o->mode, "listen") != 0) {
        say("--echo is for listen only");
        return -1;
    }
    if (!o->discovery && o->n_servers == 0) {
        say("need --discovery URL or at least one --server PK@HOST:PORT");
        return -1;
    }
    if (o->key_file && o->sk_hex) {
        say("--key-file and --sk exclude each other");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Keys */

static int sk_from_text(dmsg_sk *sk, const char *text, size_t len)
{
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        len--;
    if (dmsg_sk_from_hex(sk, text, len) < 0 || dmsg_sk_validate(sk) < 0)
        return -1;
    return 0;
}

static int read_key_file(const char *path, dmsg_sk *sk)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 1 : -1;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t start = strspn(buf, " \t\r\n");
    if (buf[start] != '{')
        return sk_from_text(sk, buf + start, strlen(buf + start));
    json_error_t jerr;
    json_t *root = json_loads(buf, 0, &jerr);
    const char *hex = root ? json_string_value(json_object_get(root, "secret_key")) : NULL;
    int rc = hex ? sk_from_text(sk, hex, strlen(hex)) : -1;
    json_decref(root);
    dmsg_wipe(buf, sizeof buf);
    return rc;
}

static int write_key_file(const char *path, const dmsg_pk *pk, const dmsg_sk *sk)
{
    char pk_hex[DMSG_PK_HEX_LEN + 1], sk_hex[DMSG_SK_HEX_LEN + 1];
    dmsg_pk_to_hex(pk, pk_hex);
    dmsg_sk_to_hex(sk, sk_hex);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return -1;
    }
    int rc = fprintf(f, "{\"public_key\":\"%s\",\"secret_key\":\"%s\"}\n", pk_hex, sk_hex) < 0;
    rc |= fclose(f) != 0;
    dmsg_wipe(sk_hex, sizeof sk_hex);
    return rc ? -1 : 0;
}

static int load_identity(const options *o, dmsg_identity *id)
{
    id->rng = dmsg_rng_system();
    if (o->sk_hex) {
        if (sk_from_text(&id->sk, o->sk_hex, strlen(o->sk_hex)) < 0) {
            say("--sk: expected 64 hex characters of a valid secret key");
            return -1;
        }
    } else if (o->key_file) {
        int rc = read_key_file(o->key_file, &id->sk);
        if (rc < 0) {
            say("--key-file %s: not a readable secret key", o->key_file);
            return -1;
        }
        if (rc == 1) {
            if (dmsg_keypair_generate(&id->pk, &id->sk, &id->rng) < 0 ||
                write_key_file(o->key_file, &id->pk, &id->sk) < 0) {
                say("--key-file %s: cannot create it", o->key_file);
                return -1;
            }
        }
    } else if (dmsg_keypair_generate(&id->pk, &id->sk, &id->rng) < 0) {
        return -1;
    }
    if (dmsg_pk_from_sk(&id->pk, &id->sk) < 0)
        return -1;
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(&id->pk, hex);
    say("pk=%s", hex);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * stdout: every received chunk is copied once, written, then reported as taken */

static void out_done(app *a, out_buf *b, int status)
{
    a->out_pending -= b->len;
    if (status < 0 && !a->out_failed && !a->finishing) {
        a->out_failed = true;
        say("stdout: %s", uv_strerror(status));
        finish(a, EXIT_BROKEN);
    } else if (a->conn) {
        dmsg_conn_consume(a->conn, b->len);
        a->out_written += b->len;
        if (a->opt.expect && a->out_written >= a->opt.expect)
            dmsg_conn_close(a->conn); /* all we wanted: the stream can end */
    }
    free(b);
    maybe_done(a);
}

static void on_out_stream_written(uv_write_t *req, int status)
{
    out_buf *b = req->data;
    out_done(req->handle->data, b, status);
}

static void out_file_next(app *a);

static void on_out_file_written(uv_fs_t *req)
{
    out_buf *b = req->data;
    app *a = req->loop->data;
    ssize_t res = req->result;
    uv_fs_req_cleanup(req);
    if (res >= 0 && (size_t)res < b->len) { /* short write: write the rest */
        memmove(b->data, b->data + res, b->len - (size_t)res);
        a->out_pending -= (size_t)res;
        if (a->conn)
            dmsg_conn_consume(a->conn, (size_t)res);
        b->len -= (size_t)res;
        uv_buf_t buf = uv_buf_init((char *)b->data, (unsigned)b->len);
        b->fsreq.data = b;
        uv_fs_write(a->loop, &b->fsreq, STDOUT_FILENO, &buf, 1, -1, on_out_file_written);
        return;
    }
    a->out_busy = false;
    a->out_head = b->next;
    if (!a->out_head)
        a->out_tail = NULL;
    out_done(a, b, res < 0 ? (int)res : 0);
    out_file_next(a);
}

static void out_file_next(app *a)
{
    if (a->out_busy || !a->out_head)
        return;
    out_buf *b = a->out_head;
    a->out_busy = true;
    uv_buf_t buf = uv_buf_init((char *)b->data, (unsigned)b->len);
    b->fsreq.data = b;
    if (uv_fs_write(a->loop, &b->fsreq, STDOUT_FILENO, &buf, 1, -1, on_out_file_written) < 0) {
        a->out_busy = false;
        a->out_head = b->next;
        out_done(a, b, UV_EIO);
    }
}

static void out_write(app *a, const uint8_t *data, size_t len)
{
    out_buf *b = malloc(sizeof *b + len);
    if (!b) {
        finish(a, EXIT_BROKEN);
        return;
    }
    b->next = NULL;
    b->len = len;
    memcpy(b->data, data, len);
    a->out_pending += len;
    if (a->out_is_file) {
        if (a->out_tail)
            a->out_tail->next = b;
        else
            a->out_head = b;
        a->out_tail = b;
        out_file_next(a);
        return;
    }
    uv_buf_t buf = uv_buf_init((char *)b->data, (unsigned)len);
    b->wreq.data = b;
    int err = uv_write(&b->wreq, a->out_stream, &buf, 1, on_out_stream_written);
    if (err < 0)
        out_done(a, b, err);
}

static int open_stdio_stream(uv_loop_t *loop, int fd, void *h, uv_stream_t **out, bool readable)
{
    switch (uv_guess_handle(fd)) {
    case UV_TTY:
        if (uv_tty_init(loop, (uv_tty_t *)h, fd, readable) < 0)
            return -1;
        break;
    case UV_NAMED_PIPE:
    case UV_TCP: /* a socket (e.g. from inetd or socat): a pipe handle serves it as well */
        if (uv_pipe_init(loop, (uv_pipe_t *)h, 0) < 0 || uv_pipe_open((uv_pipe_t *)h, fd) < 0)
            return -1;
        break;
    default:
        return 1; /* a regular file or /dev/null: use file requests */
    }
    *out = (uv_stream_t *)h;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * stdin: read only while the stream's queue is under one window */

static void in_pause(app *a);
static void in_resume(app *a);

static void on_in_eof(app *a)
{
    a->in_eof = true;
    in_pause(a);
    if (a->conn && !a->opt.expect)
        dmsg_conn_close(a->conn);
}

static void in_data(app *a, const uint8_t *data, size_t len)
{
    if (!a->conn)
        return;
    int err = dmsg_conn_write(a->conn, data, len, NULL, NULL);
    if (err < 0) {
        say("stream write failed: %s", dmsg_strerror(err));
        finish(a, EXIT_BROKEN);
        return;
    }
    if (dmsg_conn_write_queued(a->conn) >= DMSG_CLIENT_WINDOW)
        in_pause(a);
}

static void on_in_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    app *a = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)a->in_buf, READ_CHUNK);
}

static void on_in_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    app *a = s->data;
    (void)buf;
    if (n == UV_EOF) {
        on_in_eof(a);
    } else if (n < 0) {
        say("stdin: %s", uv_strerror((int)n));
        on_in_eof(a);
    } else if (n > 0) {
        in_data(a, a->in_buf, (size_t)n);
    }
}

static void in_file_read(app *a);

static void on_in_file_read(uv_fs_t *req)
{
    app *a = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    a->in_reading = false;
    if (n <= 0) {
        if (n < 0)
            say("stdin: %s", uv_strerror((int)n));
        on_in_eof(a);
        return;
    }
    in_data(a, a->in_buf, (size_t)n);
    in_file_read(a);
}

static void in_file_read(app *a)
{
    if (a->in_reading || a->in_eof || a->finishing || !a->conn ||
        dmsg_conn_write_queued(a->conn) >= DMSG_CLIENT_WINDOW)
        return;
    uv_buf_t buf = uv_buf_init((char *)a->in_buf, READ_CHUNK);
    a->in_req.data = a;
    a->in_reading = true;
    if (uv_fs_read(a->loop, &a->in_req, STDIN_FILENO, &buf, 1, -1, on_in_file_read) < 0) {
        a->in_reading = false;
        on_in_eof(a);
    }
}

static void in_pause(app *a)
{
    if (!a->in_is_file && a->in_reading && a->in_stream) {
        uv_read_stop(a->in_stream);
        a->in_reading = false;
    }
}

static void in_resume(app *a)
{
    if (a->in_eof || a->finishing || !a->conn || a->opt.no_stdin)
        return;
    if (a->in_is_file) {
        in_file_read(a);
    } else if (!a->in_reading && a->in_stream) {
        if (uv_read_start(a->in_stream, on_in_alloc, on_in_read) == 0)
            a->in_reading = true;
        else
            on_in_eof(a);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The piped conn */

static void on_conn_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    app *a = ctx;
    (void)c;
    out_write(a, data, len);
}

static void on_conn_eof(dmsg_conn *c, void *ctx)
{
    app *a = ctx;
    a->peer_eof = true;
    /* Through a server the stream is over once one side ends: close ours too. */
    dmsg_conn_close(c);
}

static void on_conn_writable(dmsg_conn *c, void *ctx)
{
    app *a = ctx;
    if (dmsg_conn_write_queued(c) < DMSG_CLIENT_WINDOW / 2)
        in_resume(a);
}

static void accept_next(app *a);

static void on_conn_close(dmsg_conn *c, int err, void *ctx)
{
    app *a = ctx;
    (void)c;
    a->conn = NULL;
    in_pause(a);
    if (a->finishing)
        return;
    if (err != 0 && !a->peer_eof) {
        say("stream broken: %s", dmsg_strerror(err));
        finish(a, EXIT_BROKEN);
        return;
    }
    a->stream_over = true;
    maybe_done(a);
}

static const dmsg_conn_callbacks pipe_callbacks = {
    .on_data = on_conn_data,
    .on_eof = on_conn_eof,
    .on_writable = on_conn_writable,
    .on_close = on_conn_close,
};

/* The piped stream is done once it closed and stdout has written everything it brought. */
static void maybe_done(app *a)
{
    if (a->finishing || a->conn || !a->stream_over || a->out_pending > 0)
        return;
    if (a->opt.keep_open && strcmp(a->opt.mode, "listen") == 0) {
        a->stream_over = false;
        accept_next(a);
        return;
    }
    finish(a, EXIT_OK);
}

static void start_piping(app *a, dmsg_conn *c)
{
    a->conn = c;
    a->peer_eof = false;
    a->stream_over = false;
    a->out_written = 0;
    if (a->in_eof && !a->opt.expect)
        dmsg_conn_close(c);
    else
        in_resume(a);
}

/* ---------------------------------------------------------------------------------------------
 * Echo conns (listen --echo): each echoes its bytes; taken once written to the socket */

static void on_echo_written(dmsg_conn *c, size_t len, int err, void *arg)
{
    (void)arg;
    if (err == 0)
        dmsg_conn_consume(c, len);
}

static void on_echo_data(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    (void)ctx;
    if (dmsg_conn_write(c, data, len, on_echo_written, NULL) < 0)
        dmsg_conn_reset(c);
}

static void on_echo_eof(dmsg_conn *c, void *ctx)
{
    (void)ctx;
    dmsg_conn_close(c);
}

static void on_echo_close(dmsg_conn *c, int err, void *ctx)
{
    (void)c;
    (void)err;
    (void)ctx;
}

static const dmsg_conn_callbacks echo_callbacks = {
    .on_data = on_echo_data,
    .on_eof = on_echo_eof,
    .on_close = on_echo_close,
};

/* ---------------------------------------------------------------------------------------------
 * Modes */

static void print_accepted(dmsg_conn *c)
{
    char hex[DMSG_PK_HEX_LEN + 1], line[DMSG_PK_HEX_LEN + 16];
    const dmsg_addr *r = dmsg_conn_remote_addr(c);
    dmsg_pk_to_hex(&r->pk, hex);
    snprintf(line, sizeof line, "%s:%u", hex, (unsigned)r->port);
    say("accepted %s", line);
}

static void accept_next(app *a)
{
    if (!a->listener || a->conn || a->finishing)
        return;
    dmsg_conn *c = NULL;
    if (dmsg_listener_accept(a->listener, &pipe_callbacks, a, &c) < 0)
        return;
    print_accepted(c);
    if (!a->opt.keep_open) { /* one stream only: later dialers are refused at once */
        dmsg_listener_close(a->listener);
        a->listener = NULL;
    }
    start_piping(a, c);
}

static void on_listener(dmsg_listener *l, void *ctx)
{
    app *a = ctx;
    if (!a->opt.echo) {
        accept_next(a);
        return;
    }
    dmsg_conn *c = NULL;
    while (dmsg_listener_accept(l, &echo_callbacks, a, &c) == 0)
        ;
}

static void on_dialed(dmsg_client *client, dmsg_conn *conn, int err, uint16_t code, void *arg)
{
    app *a = arg;
    (void)client;
    if (err < 0) {
        char text[160];
        bool coded = code && dmsg_wire_error_format(text, sizeof text, code, NULL) > 0;
        if (err == DMSG_EWIRE) {
            say("dial refused: %s", coded ? text : dmsg_strerror(err));
            finish(a, EXIT_REFUSED);
        } else {
            say("dial failed: %s%s%s", dmsg_strerror(err), coded ? ": " : "", coded ? text : "");
            finish(a, EXIT_UNREACHED);
        }
        return;
    }
    dmsg_conn_set_callbacks(conn, &pipe_callbacks, a);
    start_piping(a, conn);
}

static void print_ready(app *a)
{
    if (a->ready_printed || strcmp(a->opt.mode, "listen") != 0)
        return;
    if (a->opt.discovery && !a->entry_posted)
        return;
    a->ready_printed = true;
    say("ready");
}

static void on_client_event(dmsg_client *c, dmsg_client_event ev, const dmsg_pk *server,
                            int err, void *ctx)
{
    app *a = ctx;
    (void)c;
    char hex[DMSG_PK_HEX_LEN + 1] = "-";
    if (server)
        dmsg_pk_to_hex(server, hex);
    switch (ev) {
    case DMSG_CLIENT_SESSION_UP:
        if (a->opt.verbose)
            say("session up server=%s", hex);
        break;
    case DMSG_CLIENT_SESSION_DOWN:
    case DMSG_CLIENT_SESSION_FAILED:
        if (a->opt.verbose)
            fprintf(stderr, "dmsgcat: session %s server=%s err=\"%s\"\n",
                    ev == DMSG_CLIENT_SESSION_DOWN ? "down" : "failed", hex,
                    dmsg_strerror(err));
        break;
    case DMSG_CLIENT_ENTRY_POSTED:
        a->entry_posted = true;
        break;
    case DMSG_CLIENT_ENTRY_FAILED:
    case DMSG_CLIENT_DISCOVERY_FAILED:
        if (a->opt.verbose)
            fprintf(stderr, "dmsgcat: discovery %s err=\"%s\"\n",
                    ev == DMSG_CLIENT_ENTRY_FAILED ? "entry post failed" : "lookup failed",
                    dmsg_strerror(err));
        break;
    }
    dmsg_pk up[1];
    if (dmsg_client_sessions(a->client, up, 1) > 0)
        print_ready(a);
}

static void on_client_closed(dmsg_client *c, void *ctx)
{
    app *a = ctx;
    (void)c;
    a->client = NULL;
}

/* Ends the program: closes the client (our discovery entry is deleted) and lets the loop run
 * dry. The first reason given is the exit status. */
static void finish(app *a, int code)
{
    if (a->finishing)
        return;
    a->finishing = true;
    a->exit_code = code;
    in_pause(a);
    if (a->in_stream && !uv_is_closing((uv_handle_t *)a->in_stream))
        uv_close((uv_handle_t *)a->in_stream, NULL);
    if (a->out_stream && !uv_is_closing((uv_handle_t *)a->out_stream))
        uv_close((uv_handle_t *)a->out_stream, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    if (a->listener) {
        dmsg_listener_close(a->listener);
        a->listener = NULL;
    }
    if (a->client)
        dmsg_client_close(a->client);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    finish(s->data, EXIT_SIGNAL);
}

static int start_client(app *a, const dmsg_identity *id)
{
    dmsg_client_config cfg;
    dmsg_client_config_default(&cfg);
    cfg.discovery_url = a->opt.discovery;
    cfg.servers = a->opt.servers;
    cfg.n_servers = a->opt.n_servers;
    if (cfg.max_sessions < cfg.n_servers)
        cfg.max_sessions = (unsigned)cfg.n_servers;
    cfg.min_sessions = a->opt.n_servers ? 0 : a->opt.min_sessions;
    cfg.mesh = a->opt.mesh;
    cfg.dial_total_timeout_ms = a->opt.timeout_s * 1000u;
    if (cfg.dial_timeout_ms > cfg.dial_total_timeout_ms)
        cfg.dial_timeout_ms = cfg.dial_total_timeout_ms;
    if (cfg.mesh_try_timeout_ms > cfg.dial_total_timeout_ms)
        cfg.mesh_try_timeout_ms = cfg.dial_total_timeout_ms;
    static const dmsg_client_callbacks cb = {.on_event = on_client_event,
                                             .on_close = on_client_closed};
    int err = dmsg_client_start(a->loop, id, &cfg, &cb, a, &a->client);
    if (err < 0) {
        say("cannot start the client: %s", dmsg_strerror(err));
        return -1;
    }
    return 0;
}

static int start_mode(app *a)
{
    if (strcmp(a->opt.mode, "dial") == 0) {
        if (dmsg_addr_parse(&a->dst, a->opt.target) < 0) {
            say("dial %s: expected PK:PORT (66 hex characters, port 1-65535)", a->opt.target);
            return EXIT_USAGE;
        }
        int err = dmsg_client_dial(a->client, &a->dst, on_dialed, a);
        if (err < 0) {
            say("dial: %s", dmsg_strerror(err));
            return EXIT_UNREACHED;
        }
        return 0;
    }
    unsigned port = 0;
    if (parse_uint(a->opt.target, 65535, &port) < 0 || port == 0) {
        say("listen %s: expected a port 1-65535", a->opt.target);
        return EXIT_USAGE;
    }
    int err = dmsg_client_listen(a->client, (uint16_t)port, on_listener, a, &a->listener);
    if (err < 0) {
        say("listen: %s", err == DMSG_EEXIST ? "port already occupied" : dmsg_strerror(err));
        return EXIT_SETUP;
    }
    return 0;
}

static int setup_stdio(app *a)
{
    a->in_buf = malloc(READ_CHUNK);
    if (!a->in_buf)
        return -1;
    a->in_h.pipe.data = a;
    a->out_h.pipe.data = a;
    int rc = open_stdio_stream(a->loop, STDIN_FILENO, &a->in_h, &a->in_stream, true);
    if (rc < 0)
        return -1;
    a->in_is_file = rc == 1;
    if (a->in_stream)
        a->in_stream->data = a;
    rc = open_stdio_stream(a->loop, STDOUT_FILENO, &a->out_h, &a->out_stream, false);
    if (rc < 0)
        return -1;
    a->out_is_file = rc == 1;
    if (a->out_stream)
        a->out_stream->data = a;
    return 0;
}

int main(int argc, char **argv)
{
    static app a;
    if (parse_args(argc, argv, &a.opt) < 0) {
        fputs("try dmsgcat --help\n", stderr);
        return EXIT_USAGE;
    }
    if (dmsg_cipher_init() < 0)
        return EXIT_SETUP;
    signal(SIGPIPE, SIG_IGN); /* a closed stdout or socket is an error to handle, not a death */
    dmsg_identity id;
    memset(&id, 0, sizeof id);
    if (load_identity(&a.opt, &id) < 0)
        return EXIT_KEY;
    if (a.opt.discovery && curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return EXIT_SETUP;
    a.loop = uv_default_loop();
    a.loop->data = &a;
    uv_signal_init(a.loop, &a.sigint);
    uv_signal_init(a.loop, &a.sigterm);
    a.sigint.data = a.sigterm.data = &a;
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    int code = EXIT_OK;
    if (!a.opt.echo && setup_stdio(&a) < 0) {
        say("cannot use stdin/stdout");
        code = EXIT_SETUP;
    } else if (start_client(&a, &id) < 0) {
        code = EXIT_SETUP;
    } else {
        code = start_mode(&a);
    }
    dmsg_wipe(&id.sk, sizeof id.sk);
    if (code != EXIT_OK)
        finish(&a, code);
    uv_run(a.loop, UV_RUN_DEFAULT);
    uv_loop_close(a.loop);
    free(a.in_buf);
    if (a.opt.discovery)
        curl_global_cleanup();
    return a.exit_code;
}
