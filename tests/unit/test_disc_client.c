/* The HTTP client on libuv and the discovery client, against a small libmicrohttpd server on
 * 127.0.0.1 that replays the recorded answers of the real discovery (discovery.json). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dmsg/disc_client.h"
#include "dmsg/error.h"
#include "vectors.h"

/* ---------------------------------------------------------------------------------------------
 * A scripted HTTP server: answers requests in order from its script, records what it got. */

#define MOCK_MAX 64

typedef struct canned {
    int status;
    char *body;
    char *type;
} canned;

typedef struct seen {
    char method[16];
    char path[256];
    char type[64];
    char *body;
    size_t len;
} seen;

typedef struct mock {
    struct MHD_Daemon *daemon;
    char base[64];
    pthread_mutex_t mu;
    canned script[MOCK_MAX];
    size_t n_script, next;
    seen got[MOCK_MAX];
    size_t n_got;
} mock;

typedef struct upload {
    char *data;
    size_t len;
} upload;

static void record(mock *m, const char *method, const char *url, struct MHD_Connection *conn,
                   upload *u)
{
    cr_assert_lt(m->n_got, MOCK_MAX);
    seen *s = &m->got[m->n_got++];
    snprintf(s->method, sizeof s->method, "%s", method);
    snprintf(s->path, sizeof s->path, "%s", url);
    const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    snprintf(s->type, sizeof s->type, "%s", type ? type : "");
    s->body = u->data;
    s->len = u->len;
    u->data = NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    (void)version;
    mock *m = cls;
    upload *u = *con_cls;
    if (!u) {
        *con_cls = calloc(1, sizeof *u);
        return MHD_YES;
    }
    if (*data_size) {
        u->data = realloc(u->data, u->len + *data_size + 1);
        memcpy(u->data + u->len, data, *data_size);
        u->len += *data_size;
        u->data[u->len] = '\0';
        *data_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&m->mu);
    record(m, method, url, conn, u);
    canned c = {500, "no script", ""};
    if (m->next < m->n_script)
        c = m->script[m->next++];
    pthread_mutex_unlock(&m->mu);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(c.body), c.body, MHD_RESPMEM_MUST_COPY);
    if (c.type[0])
        MHD_add_response_header(r, "Content-Type", c.type);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)c.status, r);
    MHD_destroy_response(r);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    (void)cls, (void)conn, (void)code;
    upload *u = *con_cls;
    if (u) {
        free(u->data);
        free(u);
    }
    *con_cls = NULL;
}

static void mock_start(mock *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    m->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, m,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    cr_assert_not_null(m->daemon);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    cr_assert(info && info->port);
    snprintf(m->base, sizeof m->base, "http://127.0.0.1:%u", (unsigned)info->port);
}

static void mock_push(mock *m, int status, const char *body, const char *type)
{
    pthread_mutex_lock(&m->mu);
    cr_assert_lt(m->n_script, MOCK_MAX);
    m->script[m->n_script++] = (canned){status, strdup(body), strdup(type)};
    pthread_mutex_unlock(&m->mu);
}

static void mock_push_result(mock *m, dmsg_disc_result r)
{
    char body[256];
    size_t len;
    cr_assert_eq(dmsg_disc_reply_write(r, body, sizeof body - 1, &len), 0);
    body[len] = '\0';
    mock_push(m, dmsg_disc_result_status(r), body, "application/json");
}

static void mock_push_entry(mock *m, const dmsg_entry *e)
{
    char body[DMSG_ENTRY_JSON_MAX + 1];
    size_t len;
    cr_assert_eq(dmsg_entry_write(e, true, body, DMSG_ENTRY_JSON_MAX, &len), 0);
    body[len] = '\0';
    mock_push(m, 200, body, "application/json");
}

static seen *mock_got(mock *m, size_t i)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->n_got;
    pthread_mutex_unlock(&m->mu);
    cr_assert_lt(i, n, "request %zu was not made (%zu made)", i, n);
    return &m->got[i];
}

static size_t mock_count(mock *m)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->n_got;
    pthread_mutex_unlock(&m->mu);
    return n;
}

static void mock_stop(mock *m)
{
    MHD_stop_daemon(m->daemon);
    for (size_t i = 0; i < m->n_script; i++) {
        free(m->script[i].body);
        free(m->script[i].type);
    }
    for (size_t i = 0; i < m->n_got; i++)
        free(m->got[i].body);
    pthread_mutex_destroy(&m->mu);
}

/* A TCP port that accepts connections (into its backlog) and never answers. */
static int silent_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    cr_assert_eq(listen(fd, 8), 0);
    socklen_t len = sizeof addr;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

/* ---------------------------------------------------------------------------------------------
 * The loop under test */

typedef struct env {
    uv_loop_t loop;
    dmsg_http http;
    dmsg_disc_client dc;
    mock m;
    uv_timer_t watchdog;
    bool timed_out;
    int pending;   /* callbacks still expected before the loop stops */
    int64_t now;   /* the discovery client's wall clock */
} env;

static env *E;

static void on_watchdog(uv_timer_t *t)
{
    env *e = t->data;
    e->timed_out = true;
    uv_stop(&e->loop);
}

static int64_t fixed_clock(void *ctx)
{
    return ((env *)ctx)->now;
}

static void env_open(env *e)
{
    memset(e, 0, sizeof *e);
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    cr_assert_eq(dmsg_http_init(&e->http, &e->loop), 0);
    mock_start(&e->m);
    cr_assert_eq(dmsg_disc_client_init(&e->dc, &e->http, e->m.base), 0);
    dmsg_disc_client_set_clock(&e->dc, fixed_clock, e);
    uv_timer_init(&e->loop, &e->watchdog);
    e->watchdog.data = e;
    E = e;
}

/* Runs the loop until `pending` callbacks happened (bounded by a watchdog). */
static void env_run(env *e, int pending)
{
    e->pending = pending;
    uv_timer_start(&e->watchdog, on_watchdog, 10000, 0);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&e->watchdog);
    cr_assert(!e->timed_out, "the loop did not finish");
    cr_assert_eq(e->pending, 0);
}

static void done_one(void)
{
    if (--E->pending == 0)
        uv_stop(&E->loop);
}

static bool http_closed;
static void on_http_closed(dmsg_http *h)
{
    (void)h;
    http_closed = true;
}

static void env_close(env *e)
{
    http_closed = false;
    dmsg_http_close(&e->http, on_http_closed);
    uv_close((uv_handle_t *)&e->watchdog, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    cr_assert(http_closed);
    cr_assert_eq(uv_loop_close(&e->loop), 0);
    mock_stop(&e->m);
}

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
    cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
}

static void teardown(void)
{
    curl_global_cleanup();
}

TestSuite(disc, .init = setup, .fini = teardown);
TestSuite(http, .init = setup, .fini = teardown);

/* ---------------------------------------------------------------------------------------------
 * Captured replies */

typedef struct got {
    int calls;
    dmsg_disc_reply reply;
    char message[DMSG_DISC_MESSAGE_MAX + 1];
    bool has_entry;
    dmsg_entry entry;
    char list[8192]; /* the listing, re-written */
} got;

static void keep(got *g, const dmsg_disc_reply *r)
{
    g->calls++;
    g->reply = *r;
    snprintf(g->message, sizeof g->message, "%s", r->message);
    g->reply.message = g->message;
    g->reply.detail = "";
}

static void on_done(void *ctx, const dmsg_disc_reply *r)
{
    keep(ctx, r);
    done_one();
}

static void on_entry(void *ctx, const dmsg_disc_reply *r, const dmsg_entry *e)
{
    got *g = ctx;
    keep(g, r);
    cr_assert_eq(e != NULL, r->err == 0);
    g->has_entry = e != NULL;
    if (e)
        g->entry = *e;
    done_one();
}

static void on_list(void *ctx, const dmsg_disc_reply *r, dmsg_entry_iter *it)
{
    got *g = ctx;
    keep(g, r);
    cr_assert_eq(it != NULL, r->err == 0);
    if (it) {
        static dmsg_entry e;
        size_t off = 0;
        int rc;
        g->list[off++] = '[';
        while ((rc = dmsg_entry_iter_next(it, &e)) == 1) {
            size_t len;
            if (off > 1)
                g->list[off++] = ',';
            cr_assert_eq(dmsg_entry_write(&e, true, g->list + off, sizeof g->list - off - 2, &len), 0);
            off += len;
        }
        cr_assert_eq(rc, 0);
        g->list[off++] = ']';
        g->list[off] = '\0';
    }
    done_one();
}

static const char *str_at(json_t *root, const char *path)
{
    const char *s = json_string_value(vec_get(root, path));
    cr_assert_not_null(s, "missing %s", path);
    return s;
}

static dmsg_pk pk_at(json_t *root, const char *path)
{
    dmsg_pk pk;
    const char *hex = str_at(root, path);
    cr_assert_eq(dmsg_pk_from_hex(&pk, hex, strlen(hex)), 0);
    return pk;
}

static dmsg_sk sk_at(json_t *root, const char *path)
{
    dmsg_sk sk;
    const char *hex = str_at(root, path);
    cr_assert_eq(dmsg_sk_from_hex(&sk, hex, strlen(hex)), 0);
    return sk;
}

static char *canonical(const dmsg_entry *e)
{
    char *out = malloc(DMSG_ENTRY_JSON_MAX + 1);
    size_t len;
    cr_assert_eq(dmsg_entry_write(e, true, out, DMSG_ENTRY_JSON_MAX, &len), 0);
    out[len] = '\0';
    return out;
}

/* The error class the client reports for a refusal with this status (disc_client.h). */
static int class_of_status(long status, dmsg_disc_result r)
{
    if (r == DMSG_DISC_KEY_NOT_FOUND || r == DMSG_DISC_NO_AVAILABLE_SERVERS)
        return DMSG_ENOTFOUND;
    if (status == 401)
        return DMSG_ESIG;
    if (status == 400 || status == 422)
        return DMSG_EINVAL;
    return DMSG_EIO;
}

/* ---------------------------------------------------------------------------------------------
 * The transcript: every request the client can make, answered as the real discovery did. */

static void check_reply(const got *g, json_t *x)
{
    const char *step = str_at(x, "step");
    long status = (long)json_integer_value(json_object_get(x, "status"));
    const char *body = str_at(x, "response_body");
    cr_assert_eq(g->calls, 1, "%s", step);
    cr_assert_eq(g->reply.status, status, "%s", step);
    if (status == 200) {
        cr_assert_eq(g->reply.err, 0, "%s", step);
        cr_assert_eq(g->reply.result, DMSG_DISC_OK, "%s", step);
        return;
    }
    json_t *answer = json_loads(body, 0, NULL);
    if (!answer) {
        cr_assert_eq(g->reply.err, DMSG_EPROTO, "%s: a body that is not a message", step);
        return;
    }
    const char *message = json_string_value(json_object_get(answer, "message"));
    cr_assert_not_null(message);
    dmsg_disc_result r = dmsg_disc_result_from_message(message, strlen(message));
    if (strcmp(message, dmsg_disc_result_message(DMSG_DISC_UNEXPECTED)) != 0)
        cr_assert_neq(r, DMSG_DISC_UNEXPECTED, "%s: a text the client knows", step);
    cr_assert_eq(g->reply.result, r, "%s", step);
    cr_assert_str_eq(g->reply.message, message, "%s", step);
    cr_assert_eq(g->reply.err, class_of_status(status, r), "%s", step);
    json_decref(answer);
}

static bool replay(env *e, json_t *x, json_t *keys)
{
    const char *method = str_at(x, "method"), *path = str_at(x, "path");
    const char *req_body = json_string_value(json_object_get(x, "request_body"));
    const char *prefix = "/dmsg-discovery/entry/";
    static dmsg_entry sent;
    static got g;
    memset(&g, 0, sizeof g);
    char expected_path[256];
    char *expected_body = NULL;
    int err;
    dmsg_disc_req *req = NULL;
    snprintf(expected_path, sizeof expected_path, "%s", path);

    if ((strcmp(method, "POST") == 0 && strcmp(path, prefix) == 0) ||
        (strcmp(method, "DELETE") == 0 && strcmp(path, "/dmsg-discovery/entry") == 0)) {
        if (dmsg_entry_parse(&sent, req_body, strlen(req_body)) < 0)
            return false; /* not an entry: the client cannot send it */
        expected_body = canonical(&sent);
        req = method[0] == 'P' ? dmsg_disc_post_entry(&e->dc, &sent, on_done, &g, &err)
                               : dmsg_disc_delete_entry(&e->dc, &sent, on_done, &g, &err);
    } else if (strcmp(method, "GET") == 0 && strncmp(path, prefix, strlen(prefix)) == 0) {
        const char *text = path + strlen(prefix);
        dmsg_pk pk;
        if (dmsg_pk_from_hex(&pk, text, strlen(text)) < 0) {
            /* Text no key prints as: ask for some key, the answer is what matters here. */
            pk = pk_at(keys, "C.public_key");
            char hex[DMSG_PK_HEX_LEN + 1];
            dmsg_pk_to_hex(&pk, hex);
            snprintf(expected_path, sizeof expected_path, "%s%s", prefix, hex);
        }
        req = dmsg_disc_get_entry(&e->dc, &pk, on_entry, &g, &err);
    } else if (strcmp(method, "GET") == 0 && strcmp(path, "/dmsg-discovery/available_servers") == 0) {
        req = dmsg_disc_available_servers(&e->dc, on_list, &g, &err);
    } else if (strcmp(method, "GET") == 0 && strcmp(path, "/dmsg-discovery/all_servers") == 0) {
        req = dmsg_disc_all_servers(&e->dc, on_list, &g, &err);
    } else {
        return false; /* a request the client never makes */
    }
    cr_assert_not_null(req, "%s", dmsg_strerror(err));
    mock_push(&e->m, (int)json_integer_value(json_object_get(x, "status")), str_at(x, "response_body"),
              str_at(x, "response_content_type"));
    size_t before = mock_count(&e->m);
    env_run(e, 1);
    cr_assert_eq(mock_count(&e->m), before + 1);
    seen *s = mock_got(&e->m, before);
    cr_assert_str_eq(s->method, method);
    cr_assert_str_eq(s->path, expected_path);
    if (expected_body) {
        cr_assert_str_eq(s->type, "application/json");
        cr_assert_eq(s->len, strlen(expected_body));
        cr_assert_eq(memcmp(s->body, expected_body, s->len), 0);
        dmsg_entry reparsed;
        /* Our canonical body is the very body Go sent whenever Go's was canonical. */
        cr_assert_eq(dmsg_entry_parse(&reparsed, req_body, strlen(req_body)), 0);
        if (req_body[0] == '{' && req_body[1] == '"')
            cr_assert_str_eq(expected_body, req_body);
        free(expected_body);
    } else {
        cr_assert_eq(s->len, 0);
    }
    check_reply(&g, x);
    if (g.reply.err == 0 && g.has_entry) {
        char *text = canonical(&g.entry);
        cr_assert_str_eq(text, str_at(x, "response_body"));
        free(text);
    }
    if (g.reply.err == 0 && strstr(path, "servers"))
        cr_assert_str_eq(g.list, str_at(x, "response_body"));
    return true;
}

Test(disc, transcript_replay)
{
    static env e;
    env_open(&e);
    json_t *root = vec_load("discovery.json");
    json_t *keys = vec_get(root, "keys");
    size_t i, replayed = 0, skipped = 0;
    json_t *x;
    json_array_foreach(vec_get(root, "api_transcript.exchanges"), i, x) {
        if (replay(&e, x, keys))
            replayed++;
        else
            skipped++;
    }
    /* Not sent by a client: a body that is not JSON, POST without the slash, PUT, unknown path. */
    cr_assert_eq(skipped, 4);
    cr_assert_eq(replayed + skipped, json_array_size(vec_get(root, "api_transcript.exchanges")));
    json_decref(root);
    env_close(&e);
}

/* Router answers (no handler ran): not a discovery message, so a protocol error. */
Test(disc, router_answers_are_protocol_errors)
{
    static env e;
    env_open(&e);
    json_t *root = vec_load("discovery.json");
    size_t i, n = 0;
    json_t *x;
    json_array_foreach(vec_get(root, "api_transcript.exchanges"), i, x) {
        const char *type = str_at(x, "response_content_type");
        if (strcmp(type, "application/json") == 0)
            continue;
        long status = (long)json_integer_value(json_object_get(x, "status"));
        static got g;
        memset(&g, 0, sizeof g);
        int err;
        dmsg_pk pk = pk_at(root, "keys.S1.public_key");
        cr_assert_not_null(dmsg_disc_get_entry(&e.dc, &pk, on_entry, &g, &err));
        mock_push(&e.m, (int)status, str_at(x, "response_body"), type);
        env_run(&e, 1);
        cr_assert_eq(g.reply.err, DMSG_EPROTO);
        cr_assert_eq(g.reply.status, status);
        n++;
    }
    cr_assert_eq(n, 4);
    /* A 200 that is not an entry, a listing that is not a list. */
    static got g;
    int err;
    dmsg_pk pk = pk_at(root, "keys.S1.public_key");
    memset(&g, 0, sizeof g);
    cr_assert_not_null(dmsg_disc_get_entry(&e.dc, &pk, on_entry, &g, &err));
    mock_push(&e.m, 200, "[]", "application/json");
    env_run(&e, 1);
    cr_assert_eq(g.reply.err, DMSG_EPROTO);
    memset(&g, 0, sizeof g);
    cr_assert_not_null(dmsg_disc_all_servers(&e.dc, on_list, &g, &err));
    mock_push(&e.m, 200, "[{\"version\":\"0.0.1\"},{\"sequence\":-1}]", "application/json");
    env_run(&e, 1);
    cr_assert_eq(g.reply.err, DMSG_EPROTO);
    memset(&g, 0, sizeof g);
    cr_assert_not_null(dmsg_disc_available_servers(&e.dc, on_list, &g, &err));
    mock_push(&e.m, 503, "{\"message\":\"maintenance\",\"code\":503}", "application/json");
    env_run(&e, 1);
    cr_assert_eq(g.reply.err, DMSG_EIO);
    cr_assert_eq(g.reply.result, DMSG_DISC_UNEXPECTED, "unknown texts read as unexpected");
    cr_assert_str_eq(g.reply.message, "maintenance");
    json_decref(root);
    env_close(&e);
}

/* ---------------------------------------------------------------------------------------------
 * PutEntry and its sequence recovery */

typedef struct keys {
    dmsg_pk pk;
    dmsg_sk sk;
    int64_t now;
} keys;

static keys server_keys(void)
{
    json_t *root = vec_load("discovery.json");
    keys k = {pk_at(root, "keys.S1.public_key"), sk_at(root, "keys.S1.secret_key"),
              json_integer_value(vec_get(root, "api_transcript.note_now_unix_nano"))};
    json_decref(root);
    return k;
}

static void stored_entry(dmsg_entry *e, const keys *k, uint64_t seq, int64_t ts, int64_t avail)
{
    dmsg_entry_init(e, &k->pk, seq, ts);
    cr_assert_eq(dmsg_entry_set_server(e, "203.0.113.10:30080", avail), 0);
    cr_assert_eq(dmsg_entry_sign(e, &k->sk), 0);
}

/* The POST at index i carried an entry signed by k with this sequence and timestamp. */
static dmsg_entry posted_at(env *e, size_t i, const char *method, const char *path)
{
    seen *s = mock_got(&e->m, i);
    cr_assert_str_eq(s->method, method);
    cr_assert_str_eq(s->path, path);
    cr_assert_str_eq(s->type, "application/json");
    dmsg_entry got_entry;
    cr_assert_eq(dmsg_entry_parse(&got_entry, s->body, s->len), 0);
    cr_assert_eq(dmsg_entry_verify(&got_entry), 0);
    char *text = canonical(&got_entry);
    cr_assert_eq(strlen(text), s->len, "the body is canonical");
    cr_assert_eq(memcmp(text, s->body, s->len), 0);
    free(text);
    return got_entry;
}

Test(disc, put_entry_recovers_from_sequence_refusal)
{
    static env e;
    env_open(&e);
    keys k = server_keys();
    e.now = k.now;
    static dmsg_entry mine, stored;
    stored_entry(&mine, &k, 3, k.now - 1000, 100);
    stored_entry(&stored, &k, 9, k.now - 500, 100); /* older than our new timestamp */
    mock_push_result(&e.m, DMSG_DISC_WRONG_SEQUENCE);
    mock_push_entry(&e.m, &stored);
    mock_push_result(&e.m, DMSG_DISC_ENTRY_UPDATED);
    static got g;
    int err;
    cr_assert_not_null(dmsg_disc_put_entry(&e.dc, &mine, &k.sk, on_done, &g, &err));
    env_run(&e, 1);
    cr_assert_eq(g.reply.err, 0);
    cr_assert_eq(mock_count(&e.m), 3);
    dmsg_entry first = posted_at(&e, 0, "POST", "/dmsg-discovery/entry/");
    cr_assert_eq(first.sequence, 4);
    cr_assert_eq(first.timestamp, k.now);
    char own_path[128], hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(&k.pk, hex);
    snprintf(own_path, sizeof own_path, "/dmsg-discovery/entry/%s", hex);
    cr_assert_str_eq(mock_got(&e.m, 1)->method, "GET");
    cr_assert_str_eq(mock_got(&e.m, 1)->path, own_path);
    dmsg_entry second = posted_at(&e, 2, "POST", "/dmsg-discovery/entry/");
    cr_assert_eq(second.sequence, 10);
    cr_assert_eq(second.timestamp, k.now, "the timestamp is set once");
    cr_assert_eq(mine.sequence, 10);
    env_close(&e);
}

Test(disc, put_entry_yields_to_a_newer_entry)
{
    static env e;
    env_open(&e);
    keys k = server_keys();
    e.now = k.now;
    static dmsg_entry mine, stored;
    stored_entry(&mine, &k, 3, k.now - 1000, 100);
    stored_entry(&stored, &k, 9, k.now + 1, 100);
    mock_push_result(&e.m, DMSG_DISC_WRONG_SEQUENCE);
    mock_push_entry(&e.m, &stored);
    static got g;
    int err;
    cr_assert_not_null(dmsg_disc_put_entry(&e.dc, &mine, &k.sk, on_done, &g, &err));
    env_run(&e, 1);
    cr_assert_eq(g.reply.err, 0);
    cr_assert_eq(mock_count(&e.m), 2);
    cr_assert_eq(mine.sequence, 9);
    env_close(&e);
}

Test(disc, put_entry_failures)
{
    static env e;
    env_open(&e);
    keys k = server_keys();
    e.now = k.now;
    static dmsg_entry mine, stored;
    static got g;
    int err;
    /* Endless refusals: bounded. */
    stored_entry(&mine, &k, 3, k.now - 1000, 100);
    stored_entry(&stored, &k, 9, k.now - 500, 100);
    for (int i = 0; i <= DMSG_DISC_PUT_ROUNDS_MAX; i++) {
        mock_push_result(&e.m, DMSG_DISC_WRONG_SEQUENCE);
        if (i < DMSG_DISC_PUT_ROUNDS_MAX)
            mock_push_entry(&e.m, &stored);
    }
    cr_assert_not_null(dmsg_disc_put_entry(&e.dc, &mine, &k.sk, on_done, &g, &err));
    env_run(&e, 1);
    cr_assert_eq(g.reply.err, DMSG_ELIMIT);
    cr_assert_eq(mock_count(&e.m), 2 * DMSG_DISC_PUT_ROUNDS_MAX + 1);
    /* The stored entry vanished meanwhile. */
    size_t before = mock_count(&e.m);
    memset(&g, 0, sizeof g);
    mock_push_result(&e.m, DMSG_DISC_WRONG_SEQUENCE);
    mock_push_result(&e.m, DMSG_DISC_KEY_NOT_FOUND);
    cr_assert_not_null(dmsg_disc_put_entry(&e.dc, &mine, &k.sk, on_done, &g, &err));
    env_run(&e, 1);
    cr_assert_eq(g.reply.err, DMSG_ENOTFOUND);
    cr_assert_eq(mock_count(&e.m), before + 2);
    /* Another refusal is final. */
    memset(&g, 0, sizeof g);
    mock_push_result(&e.m, DMSG_DISC_UNAUTHORIZED);
    cr_assert_not_null(dmsg_disc_put_entry(&e.dc, &mine, &k.sk, on_done, &g, &err));
    env_run(&e, 1);
    cr_assert_eq(g.reply.err, DMSG_ESIG);
    cr_assert_eq(g.reply.status, 401);
    cr_assert_eq(mock_count(&e.m), before + 3);
    env_close(&e);
}

Test(disc, arguments_and_cancel)
{
    static env e;
    env_open(&e);
    int err;
    cr_assert_null(dmsg_disc_get_entry(&e.dc, NULL, on_entry, NULL, &err));
    cr_assert_eq(err, DMSG_EINVAL);
    cr_assert_null(dmsg_disc_available_servers(&e.dc, NULL, NULL, &err));
    cr_assert_eq(err, DMSG_EINVAL);
    dmsg_disc_client other;
    cr_assert_eq(dmsg_disc_client_init(&other, &e.http, ""), DMSG_EINVAL);
    cr_assert_eq(dmsg_disc_client_init(&other, &e.http, "/"), DMSG_EINVAL);
    cr_assert_eq(dmsg_disc_client_init(&other, &e.http, "http://h/"), 0);
    cr_assert_str_eq(other.base, "http://h");
    /* Cancelled requests never call back. */
    static got g;
    keys k = server_keys();
    dmsg_disc_req *r = dmsg_disc_get_entry(&e.dc, &k.pk, on_entry, &g, &err);
    cr_assert_not_null(r);
    dmsg_disc_cancel(r);
    cr_assert_not_null(dmsg_disc_get_entry(&e.dc, &k.pk, on_entry, &g, &err));
    cr_assert_not_null(dmsg_disc_all_servers(&e.dc, on_list, &g, &err));
    dmsg_disc_client_cancel_all(&e.dc);
    cr_assert_null(e.dc.reqs);
    uv_run(&e.loop, UV_RUN_NOWAIT);
    cr_assert_eq(g.calls, 0);
    env_close(&e);
}

/* ---------------------------------------------------------------------------------------------
 * Timeouts */

Test(disc, a_silent_discovery_times_out)
{
    static env e;
    env_open(&e);
    uint16_t port;
    int fd = silent_listener(&port);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%u", (unsigned)port);
    cr_assert_eq(dmsg_disc_client_init(&e.dc, &e.http, base), 0);
    e.dc.timeout_ms = 300;
    static got g;
    int err;
    keys k = server_keys();
    uv_update_time(&e.loop);
    uint64_t start = uv_now(&e.loop);
    cr_assert_not_null(dmsg_disc_get_entry(&e.dc, &k.pk, on_entry, &g, &err));
    env_run(&e, 1);
    uint64_t took = uv_now(&e.loop) - start;
    cr_assert_eq(g.reply.err, DMSG_ETIMEOUT);
    cr_assert_eq(g.reply.status, 0);
    cr_assert_geq(took, 250);
    cr_assert_lt(took, 3000);
    close(fd);
    env_close(&e);
}

/* ---------------------------------------------------------------------------------------------
 * Registration */

#define EVENTS_MAX 32
static dmsg_disc_reg_event_kind events[EVENTS_MAX];
static int event_errs[EVENTS_MAX];
static uint64_t event_retry[EVENTS_MAX];
static dmsg_entry event_entries[EVENTS_MAX];
static int n_events;

static void on_reg_event(dmsg_disc_reg *reg, const dmsg_disc_reg_event *ev)
{
    (void)reg;
    cr_assert_lt(n_events, EVENTS_MAX);
    events[n_events] = ev->kind;
    event_errs[n_events] = ev->reply ? ev->reply->err : 0;
    event_retry[n_events] = ev->retry_in_ms;
    if (ev->entry)
        event_entries[n_events] = *ev->entry;
    n_events++;
    done_one();
}

static bool reg_closed;
static void on_reg_closed(dmsg_disc_reg *reg)
{
    (void)reg;
    reg_closed = true;
}

static void close_reg(env *e, dmsg_disc_reg *reg)
{
    reg_closed = false;
    dmsg_disc_reg_close(reg, on_reg_closed);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    cr_assert(reg_closed);
}

static dmsg_disc_reg_config server_config(const keys *k)
{
    dmsg_disc_reg_config cfg = {
        .pk = k->pk, .sk = k->sk, .server = true, .address = "203.0.113.10:30080",
        .max_sessions = 100, .backoff_initial_ms = 60, .backoff_max_ms = 200, .backoff_factor = 2,
    };
    return cfg;
}

Test(disc, registration_of_a_server)
{
    static env e;
    static dmsg_disc_reg reg;
    env_open(&e);
    keys k = server_keys();
    e.now = k.now;
    n_events = 0;
    dmsg_disc_reg_config cfg = server_config(&k);
    cr_assert_eq(dmsg_disc_reg_init(&reg, &e.dc, &cfg, on_reg_event), 0);

    /* Start: GET 404, POST sequence 0 refused, retried after the backoff, then accepted. */
    mock_push_result(&e.m, DMSG_DISC_KEY_NOT_FOUND);
    mock_push_result(&e.m, DMSG_DISC_UNEXPECTED);
    mock_push_result(&e.m, DMSG_DISC_KEY_NOT_FOUND);
    mock_push_result(&e.m, DMSG_DISC_ENTRY_SET);
    uv_update_time(&e.loop);
    uint64_t start = uv_now(&e.loop);
    cr_assert_eq(dmsg_disc_reg_start(&reg), 0);
    cr_assert_eq(dmsg_disc_reg_start(&reg), DMSG_ESTATE);
    env_run(&e, 2);
    cr_assert_eq(events[0], DMSG_DISC_REG_FAILED);
    cr_assert_eq(event_errs[0], DMSG_EIO);
    cr_assert_leq(event_retry[0], 60);
    cr_assert_eq(events[1], DMSG_DISC_REG_POSTED);
    cr_assert_geq(uv_now(&e.loop) - start, 55, "waited for the backoff");
    cr_assert_eq(mock_count(&e.m), 4);
    dmsg_entry first = posted_at(&e, 1, "POST", "/dmsg-discovery/entry/");
    cr_assert_eq(first.sequence, 0);
    cr_assert_eq(first.timestamp, k.now);
    cr_assert(first.has_server && !first.has_client);
    cr_assert_str_eq(first.server.address, "203.0.113.10:30080");
    cr_assert_eq(first.server.available_sessions, 100);
    dmsg_entry posted = posted_at(&e, 3, "POST", "/dmsg-discovery/entry/");
    cr_assert_eq(posted.sequence, 0);

    /* A session arrives: GET, then the next iteration with one session fewer available. */
    e.now += 1000;
    mock_push_entry(&e.m, &posted);
    mock_push_result(&e.m, DMSG_DISC_ENTRY_UPDATED);
    dmsg_disc_reg_set_sessions(&reg, 1);
    env_run(&e, 1);
    cr_assert_eq(events[2], DMSG_DISC_REG_UPDATED);
    dmsg_entry next = posted_at(&e, 5, "POST", "/dmsg-discovery/entry/");
    cr_assert_eq(next.sequence, 1);
    cr_assert_eq(next.timestamp, e.now);
    cr_assert_eq(next.server.available_sessions, 99);
    cr_assert_eq(event_entries[2].sequence, 1);

    /* Same count again, refresh not due: only the GET. */
    mock_push_entry(&e.m, &next);
    dmsg_disc_reg_set_sessions(&reg, 1);
    env_run(&e, 1);
    cr_assert_eq(events[3], DMSG_DISC_REG_UNCHANGED);
    cr_assert_eq(mock_count(&e.m), 7);

    /* A failure after start is reported, not retried. */
    mock_push_result(&e.m, DMSG_DISC_UNEXPECTED);
    mock_push_result(&e.m, DMSG_DISC_UNEXPECTED);
    dmsg_disc_reg_set_sessions(&reg, 2);
    env_run(&e, 1);
    cr_assert_eq(events[4], DMSG_DISC_REG_FAILED);
    cr_assert_eq(event_retry[4], 0);
    cr_assert_eq(mock_count(&e.m), 9, "GET failed, so a new entry was POSTed, and refused");

    /* Stop: GET for the sequence, DELETE a freshly signed entry. */
    e.now += 5000;
    mock_push_entry(&e.m, &next);
    mock_push_result(&e.m, DMSG_DISC_ENTRY_DELETED);
    cr_assert_eq(dmsg_disc_reg_stop(&reg), 0);
    cr_assert_eq(dmsg_disc_reg_stop(&reg), DMSG_ESTATE);
    env_run(&e, 1);
    cr_assert_eq(events[5], DMSG_DISC_REG_DELETED);
    cr_assert_eq(event_errs[5], 0);
    dmsg_entry deleted = posted_at(&e, 10, "DELETE", "/dmsg-discovery/entry");
    cr_assert_eq(deleted.sequence, 1);
    cr_assert_eq(deleted.timestamp, e.now);
    cr_assert_eq(deleted.server.available_sessions, 98);
    close_reg(&e, &reg);
    env_close(&e);
}

Test(disc, registration_recovers_the_sequence_and_refreshes)
{
    static env e;
    static dmsg_disc_reg reg;
    env_open(&e);
    keys k = server_keys();
    e.now = k.now;
    n_events = 0;
    dmsg_disc_reg_config cfg = server_config(&k);
    cfg.update_interval_ms = 150;
    cr_assert_eq(dmsg_disc_reg_init(&reg, &e.dc, &cfg, on_reg_event), 0);

    /* An entry survives from a previous run (sequence 3); meanwhile another write made it 9. */
    static dmsg_entry old, newer, latest;
    stored_entry(&old, &k, 3, k.now - 2000, 100);
    stored_entry(&newer, &k, 9, k.now - 1000, 100);
    mock_push_entry(&e.m, &old);
    mock_push_result(&e.m, DMSG_DISC_WRONG_SEQUENCE);
    mock_push_entry(&e.m, &newer);
    mock_push_result(&e.m, DMSG_DISC_ENTRY_UPDATED);
    cr_assert_eq(dmsg_disc_reg_start(&reg), 0);
    env_run(&e, 1);
    cr_assert_eq(events[0], DMSG_DISC_REG_UPDATED, "first write is due even without a change");
    cr_assert_eq(posted_at(&e, 1, "POST", "/dmsg-discovery/entry/").sequence, 4);
    cr_assert_eq(posted_at(&e, 3, "POST", "/dmsg-discovery/entry/").sequence, 10);
    cr_assert_eq(event_entries[0].sequence, 10);

    /* Nothing changes: the interval alone brings the next iteration. */
    latest = event_entries[0];
    e.now += 1000;
    mock_push_entry(&e.m, &latest);
    mock_push_result(&e.m, DMSG_DISC_ENTRY_UPDATED);
    uv_update_time(&e.loop);
    uint64_t start = uv_now(&e.loop);
    env_run(&e, 1);
    cr_assert_eq(events[1], DMSG_DISC_REG_UPDATED);
    cr_assert_geq(uv_now(&e.loop) - start, 100);
    cr_assert_eq(posted_at(&e, 5, "POST", "/dmsg-discovery/entry/").sequence, 11);
    close_reg(&e, &reg);
    env_close(&e);
}

Test(disc, registration_of_a_client)
{
    static env e;
    static dmsg_disc_reg reg;
    env_open(&e);
    json_t *root = vec_load("discovery.json");
    dmsg_pk servers[2] = {pk_at(root, "keys.S1.public_key"), pk_at(root, "keys.S2.public_key")};
    dmsg_disc_reg_config cfg = {.pk = pk_at(root, "keys.C.public_key"),
                                .sk = sk_at(root, "keys.C.secret_key"), .client = true};
    e.now = json_integer_value(vec_get(root, "api_transcript.note_now_unix_nano"));
    json_decref(root);
    n_events = 0;
    cr_assert_eq(dmsg_disc_reg_init(&reg, &e.dc, &cfg, on_reg_event), 0);
    cr_assert_eq(dmsg_disc_reg_set_delegated(&reg, servers, 1), 0);
    mock_push_result(&e.m, DMSG_DISC_KEY_NOT_FOUND);
    mock_push_result(&e.m, DMSG_DISC_ENTRY_SET);
    cr_assert_eq(dmsg_disc_reg_start(&reg), 0);
    env_run(&e, 1);
    cr_assert_eq(events[0], DMSG_DISC_REG_POSTED);
    dmsg_entry first = posted_at(&e, 1, "POST", "/dmsg-discovery/entry/");
    cr_assert(first.has_client && !first.has_server);
    cr_assert_eq(first.client.n_delegated, 1);
    cr_assert(dmsg_pk_equal(&first.client.delegated[0], &servers[0]));

    /* A second session: the next iteration lists both, in our order. */
    mock_push_entry(&e.m, &first);
    mock_push_result(&e.m, DMSG_DISC_ENTRY_UPDATED);
    cr_assert_eq(dmsg_disc_reg_set_delegated(&reg, servers, 2), 0);
    env_run(&e, 1);
    cr_assert_eq(events[1], DMSG_DISC_REG_UPDATED);
    dmsg_entry second = posted_at(&e, 3, "POST", "/dmsg-discovery/entry/");
    cr_assert_eq(second.sequence, 1);
    cr_assert_eq(second.client.n_delegated, 2);
    cr_assert(dmsg_pk_equal(&second.client.delegated[1], &servers[1]));

    /* A client entry is rewritten on every change, even to the same list (as the reference). */
    mock_push_entry(&e.m, &second);
    mock_push_result(&e.m, DMSG_DISC_ENTRY_UPDATED);
    cr_assert_eq(dmsg_disc_reg_set_delegated(&reg, servers, 2), 0);
    env_run(&e, 1);
    cr_assert_eq(events[2], DMSG_DISC_REG_UPDATED);
    cr_assert_eq(dmsg_disc_reg_set_delegated(&reg, servers, DMSG_ENTRY_DELEGATED_MAX + 1),
                 DMSG_ETOOBIG);
    close_reg(&e, &reg);
    env_close(&e);
}

Test(disc, registration_refuses_a_foreign_entry_and_bad_configs)
{
    static env e;
    static dmsg_disc_reg reg;
    env_open(&e);
    keys k = server_keys();
    e.now = k.now;
    n_events = 0;
    dmsg_disc_reg_config cfg = server_config(&k);
    cfg.server = false;
    cr_assert_eq(dmsg_disc_reg_init(&reg, &e.dc, &cfg, on_reg_event), DMSG_EINVAL);
    cfg = server_config(&k);
    cfg.address = "";
    cr_assert_eq(dmsg_disc_reg_init(&reg, &e.dc, &cfg, on_reg_event), DMSG_EINVAL);
    cfg.address = "h\xc3\xa9:1";
    cr_assert_eq(dmsg_disc_reg_init(&reg, &e.dc, &cfg, on_reg_event), DMSG_EINVAL);

    cfg = server_config(&k);
    cr_assert_eq(dmsg_disc_reg_init(&reg, &e.dc, &cfg, on_reg_event), 0);
    static dmsg_entry client_only;
    dmsg_entry_init(&client_only, &k.pk, 2, k.now);
    cr_assert_eq(dmsg_entry_set_client(&client_only, NULL, 0), 0);
    cr_assert_eq(dmsg_entry_sign(&client_only, &k.sk), 0);
    mock_push_entry(&e.m, &client_only);
    mock_push_entry(&e.m, &client_only);
    cr_assert_eq(dmsg_disc_reg_start(&reg), 0);
    env_run(&e, 2);
    cr_assert_eq(events[0], DMSG_DISC_REG_FAILED);
    cr_assert_eq(event_errs[0], DMSG_EEXIST);
    cr_assert_gt(event_retry[0], 0);
    cr_assert_eq(events[1], DMSG_DISC_REG_FAILED);
    cr_assert_eq(mock_count(&e.m), 2, "only GETs");
    close_reg(&e, &reg);
    env_close(&e);
}

/* ---------------------------------------------------------------------------------------------
 * The HTTP client itself */

typedef struct http_got {
    int calls;
    int err;
    long status;
    size_t len;
    char body[64];
} http_got;

static void on_http_done(void *ctx, const dmsg_http_response *res)
{
    http_got *g = ctx;
    g->calls++;
    g->err = res->err;
    g->status = res->status;
    g->len = res->body_len;
    snprintf(g->body, sizeof g->body, "%s", res->body);
    cr_assert_eq(res->body[res->body_len], '\0');
    if (E->pending > 0)
        done_one();
}

Test(http, bodies_methods_and_limits)
{
    static env e;
    env_open(&e);
    static http_got g;
    int err;
    char url[128];
    snprintf(url, sizeof url, "%s/some/path", e.m.base);
    char big[3000];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';

    mock_push(&e.m, 201, "created", "text/plain");
    dmsg_http_request_opts o = {.method = "PUT", .url = url, .body = "a\0b", .body_len = 3,
                                .content_type = "application/octet-stream"};
    cr_assert_not_null(dmsg_http_request(&e.http, &o, on_http_done, &g, &err));
    env_run(&e, 1);
    cr_assert_eq(g.err, 0);
    cr_assert_eq(g.status, 201);
    cr_assert_str_eq(g.body, "created");
    seen *s = mock_got(&e.m, 0);
    cr_assert_str_eq(s->method, "PUT");
    cr_assert_str_eq(s->path, "/some/path");
    cr_assert_str_eq(s->type, "application/octet-stream");
    cr_assert_eq(s->len, 3);
    cr_assert_eq(memcmp(s->body, "a\0b", 3), 0);

    /* A body over the request's limit. */
    mock_push(&e.m, 200, big, "text/plain");
    o = (dmsg_http_request_opts){.method = "GET", .url = url, .max_response = 1000};
    cr_assert_not_null(dmsg_http_request(&e.http, &o, on_http_done, &g, &err));
    env_run(&e, 1);
    cr_assert_eq(g.err, DMSG_ETOOBIG);
    cr_assert_eq(g.status, 0);
    mock_push(&e.m, 200, big, "text/plain");
    o.max_response = sizeof big - 1;
    cr_assert_not_null(dmsg_http_request(&e.http, &o, on_http_done, &g, &err));
    env_run(&e, 1);
    cr_assert_eq(g.err, 0);
    cr_assert_eq(g.len, sizeof big - 1);

    /* A body without Content-Type gets none (curl would invent a form type). */
    mock_push(&e.m, 200, "", "");
    o = (dmsg_http_request_opts){.method = "DELETE", .url = url, .body = "{}", .body_len = 2};
    cr_assert_not_null(dmsg_http_request(&e.http, &o, on_http_done, &g, &err));
    env_run(&e, 1);
    cr_assert_eq(g.err, 0);
    s = mock_got(&e.m, 3);
    cr_assert_str_eq(s->method, "DELETE");
    cr_assert_str_eq(s->type, "");
    cr_assert_eq(s->len, 2);

    /* Bad arguments and unsupported schemes. */
    cr_assert_null(dmsg_http_request(&e.http, NULL, on_http_done, &g, &err));
    cr_assert_eq(err, DMSG_EINVAL);
    o = (dmsg_http_request_opts){.method = "GET", .url = "file:///etc/passwd"};
    int calls = g.calls;
    dmsg_http_req *r = dmsg_http_request(&e.http, &o, on_http_done, &g, &err);
    if (r) {
        env_run(&e, 1);
        cr_assert_eq(g.err, DMSG_EIO);
    } else {
        cr_assert_neq(err, 0);
    }
    cr_assert_leq(g.calls, calls + 1);
    env_close(&e);
}

Test(http, refused_cancelled_and_closed)
{
    static env e;
    env_open(&e);
    static http_got g;
    int err;
    char url[128];

    /* Nothing listens: a transport error. */
    uint16_t port;
    int fd = silent_listener(&port);
    close(fd);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", (unsigned)port);
    dmsg_http_request_opts o = {.method = "GET", .url = url};
    cr_assert_not_null(dmsg_http_request(&e.http, &o, on_http_done, &g, &err));
    env_run(&e, 1);
    cr_assert_eq(g.err, DMSG_EIO);

    /* Cancelled: never calls back. */
    fd = silent_listener(&port);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", (unsigned)port);
    memset(&g, 0, sizeof g);
    dmsg_http_req *r = dmsg_http_request(&e.http, &o, on_http_done, &g, &err);
    cr_assert_not_null(r);
    for (int i = 0; i < 20; i++)
        uv_run(&e.loop, UV_RUN_NOWAIT);
    dmsg_http_cancel(r);
    uv_run(&e.loop, UV_RUN_NOWAIT);
    cr_assert_eq(g.calls, 0);

    /* Closing fails what is pending, at once, and refuses new work. */
    cr_assert_not_null(dmsg_http_request(&e.http, &o, on_http_done, &g, &err));
    cr_assert_not_null(dmsg_http_request(&e.http, &o, on_http_done, &g, &err));
    for (int i = 0; i < 20; i++)
        uv_run(&e.loop, UV_RUN_NOWAIT);
    E->pending = 0;
    http_closed = false;
    dmsg_http_close(&e.http, on_http_closed);
    cr_assert_eq(g.calls, 2);
    cr_assert_eq(g.err, DMSG_ECLOSED);
    cr_assert_null(dmsg_http_request(&e.http, &o, on_http_done, &g, &err));
    cr_assert_eq(err, DMSG_ECLOSED);
    uv_close((uv_handle_t *)&e.watchdog, NULL);
    uv_run(&e.loop, UV_RUN_DEFAULT);
    cr_assert(http_closed);
    cr_assert_eq(uv_loop_close(&e.loop), 0);
    mock_stop(&e.m);
    close(fd);
}

/* A callback may close the client it runs on. */
static void on_done_then_close(void *ctx, const dmsg_http_response *res)
{
    http_got *g = ctx;
    g->calls++;
    g->err = res->err;
    dmsg_http_close(&E->http, on_http_closed);
}

Test(http, close_from_a_callback)
{
    static env e;
    env_open(&e);
    static http_got g, other;
    int err;
    char url[128];
    snprintf(url, sizeof url, "%s/x", e.m.base);
    uint16_t port;
    int fd = silent_listener(&port);
    char silent[128];
    snprintf(silent, sizeof silent, "http://127.0.0.1:%u/", (unsigned)port);
    mock_push(&e.m, 200, "ok", "text/plain");
    dmsg_http_request_opts o = {.method = "GET", .url = url};
    dmsg_http_request_opts stuck = {.method = "GET", .url = silent};
    cr_assert_not_null(dmsg_http_request(&e.http, &stuck, on_http_done, &other, &err));
    cr_assert_not_null(dmsg_http_request(&e.http, &o, on_done_then_close, &g, &err));
    http_closed = false;
    uv_close((uv_handle_t *)&e.watchdog, NULL);
    uv_run(&e.loop, UV_RUN_DEFAULT);
    cr_assert_eq(g.calls, 1);
    cr_assert_eq(g.err, 0);
    cr_assert_eq(other.calls, 1);
    cr_assert_eq(other.err, DMSG_ECLOSED);
    cr_assert(http_closed);
    cr_assert_eq(uv_loop_close(&e.loop), 0);
    mock_stop(&e.m);
    close(fd);
}
