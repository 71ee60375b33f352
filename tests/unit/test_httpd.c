/* The libmicrohttpd server on the libuv loop: a real loop in the test's main thread, clients
 * (libcurl easy, raw sockets) in a second thread, on 127.0.0.1 and on a unix socket. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "dmsg/error.h"
#include "dmsg/httpd.h"

/* ---- client side (runs in the client thread) ---- */

struct http_result {
    CURLcode rc;
    long status;
    char content_type[128];
    char headers[2048];
    char body[8192];
    size_t body_len;
    size_t stop_after;          /* abort the transfer once this many body bytes arrived */
    const char *stop_marker;    /* or once the body contains this text */
};

static size_t on_body(char *data, size_t size, size_t n, void *user)
{
    struct http_result *r = user;
    size_t len = size * n;
    size_t room = sizeof r->body - 1 - r->body_len;
    size_t take = len < room ? len : room;
    memcpy(r->body + r->body_len, data, take);
    r->body_len += take;
    r->body[r->body_len] = '\0';
    if (r->stop_after && r->body_len >= r->stop_after)
        return 0;
    if (r->stop_marker && strstr(r->body, r->stop_marker))
        return 0;
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *user)
{
    struct http_result *r = user;
    size_t len = size * n, have = strlen(r->headers);
    if (have + len < sizeof r->headers) {
        memcpy(r->headers + have, data, len);
        r->headers[have + len] = '\0';
    }
    return len;
}

struct http_req {
    const char *method;
    const char *url;
    const char *unix_path;
    const char *body;
    size_t body_len;
    const char *header;         /* one extra request header, may be NULL */
    long timeout_ms;
    bool chunked;
};

static void http_do(const struct http_req *q, struct http_result *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    if (q->header)
        hdrs = curl_slist_append(hdrs, q->header);
    if (q->chunked)
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_URL, q->url);
    if (q->unix_path)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, q->unix_path);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
    if (q->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, q->timeout_ms ? q->timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    r->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r->content_type, sizeof r->content_type, "%s", ct ? ct : "");
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
}

static int raw_connect_tcp(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Reads what arrives within timeout_ms (until the peer closes or the buffer fills). Returns
 * the byte count, and sets *closed when the peer closed the connection. */
static size_t raw_read(int fd, char *buf, size_t cap, int timeout_ms, bool *closed)
{
    size_t got = 0;
    *closed = false;
    while (got + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0)
            break;
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n <= 0) {
            *closed = true;
            break;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    return got;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the loop side ---- */

struct harness;
typedef void (*client_fn)(struct harness *h);

struct harness {
    uv_loop_t loop;
    struct dmsg_httpd *httpd;
    struct dmsg_httpd_config cfg;
    uv_async_t client_done;
    uv_timer_t watchdog;
    pthread_t thread;
    client_fn client;
    char tmpdir[64];
    char sock_path[100];        /* fits sockaddr_un.sun_path */
    char base[64];              /* URL prefix: http://127.0.0.1:<port> or http://localhost */
    uint16_t port;
    bool use_unix;

    /* what the server side saw */
    int handled;
    int aborted;
    int streams_closed;
    struct dmsg_httpd_stream *stream;
    uv_timer_t pusher;
    bool pusher_used;
    int pushes;
    int push_results[64];
    struct dmsg_httpd_request *deferred;
    uv_timer_t deferrer;
    bool deferrer_used;
    char seen_method[16], seen_path[128], seen_query[64], seen_header[64], seen_flag[16];
    char seen_body[4096];
    size_t seen_body_len;

    /* what the client side saw */
    struct http_result res[6];
    int raw_status[6];
    bool raw_closed[6];
    char raw_reply[512];
};

static void on_closed_handle(uv_handle_t *handle)
{
    (void)handle;
}

static void on_client_done(uv_async_t *async)
{
    struct harness *h = async->data;
    uv_close((uv_handle_t *)&h->client_done, on_closed_handle);
    uv_close((uv_handle_t *)&h->watchdog, on_closed_handle);
    if (h->pusher_used)
        uv_close((uv_handle_t *)&h->pusher, on_closed_handle);
    if (h->deferrer_used)
        uv_close((uv_handle_t *)&h->deferrer, on_closed_handle);
    dmsg_httpd_close(h->httpd, NULL, NULL);
}

static void on_watchdog(uv_timer_t *timer)
{
    (void)timer;
    fprintf(stderr, "test_httpd: watchdog fired, the test hangs\n");
    abort();
}

static void *client_thread(void *arg)
{
    struct harness *h = arg;
    h->client(h);
    uv_async_send(&h->client_done);
    return NULL;
}

static void harness_setup(struct harness *h, dmsg_httpd_handler_fn handler, bool use_unix)
{
    memset(h, 0, sizeof *h);
    cr_assert_eq(uv_loop_init(&h->loop), 0);
    h->use_unix = use_unix;
    h->cfg.handler = handler;
    h->cfg.user = h;
    if (use_unix) {
        snprintf(h->tmpdir, sizeof h->tmpdir, "/tmp/dmsg-httpd-XXXXXX");
        cr_assert_not_null(mkdtemp(h->tmpdir));
        snprintf(h->sock_path, sizeof h->sock_path, "%s/api.sock", h->tmpdir);
        h->cfg.unix_path = h->sock_path;
        h->cfg.unix_mode = 0600;
    } else {
        h->cfg.tcp_address = "127.0.0.1:0";
    }
}

/* Starts the server, runs the client in its thread and the loop here until both are done. */
static void harness_run(struct harness *h, client_fn client)
{
    cr_assert_eq(dmsg_httpd_init(&h->loop, &h->httpd, &h->cfg), 0);
    int rc = dmsg_httpd_start(h->httpd);
    cr_assert_eq(rc, 0, "start: %s", dmsg_httpd_last_error(h->httpd));
    h->port = dmsg_httpd_port(h->httpd);
    if (h->use_unix)
        snprintf(h->base, sizeof h->base, "http://localhost");
    else
        snprintf(h->base, sizeof h->base, "http://127.0.0.1:%u", h->port);
    h->client = client;
    uv_async_init(&h->loop, &h->client_done, on_client_done);
    h->client_done.data = h;
    uv_timer_init(&h->loop, &h->watchdog);
    uv_timer_start(&h->watchdog, on_watchdog, 30000, 0);
    cr_assert_eq(pthread_create(&h->thread, NULL, client_thread, h), 0);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    pthread_join(h->thread, NULL);
    cr_assert_eq(uv_loop_close(&h->loop), 0, "handles left open on the loop");
    if (h->use_unix) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", h->tmpdir);
        cr_assert_eq(system(cmd), 0);
    }
}

static void url(const struct harness *h, char *out, size_t cap, const char *path)
{
    snprintf(out, cap, "%s%s", h->base, path);
}

static void request(struct harness *h, int slot, const char *method, const char *path,
                    const char *body, long timeout_ms)
{
    char u[256];
    url(h, u, sizeof u, path);
    struct http_req q = {.method = method, .url = u, .body = body,
                         .body_len = body ? strlen(body) : 0, .timeout_ms = timeout_ms,
                         .unix_path = h->use_unix ? h->sock_path : NULL};
    http_do(&q, &h->res[slot]);
}

static void init_curl(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void fini_curl(void)
{
    curl_global_cleanup();
}

TestSuite(httpd, .init = init_curl, .fini = fini_curl, .timeout = 60);

/* ---- a handler that reports what it received ---- */

static void copy_or_dash(char *out, size_t cap, const char *value)
{
    snprintf(out, cap, "%s", value ? value : "-");
}

static void on_echo(void *user, struct dmsg_httpd_request *req)
{
    struct harness *h = user;
    h->handled++;
    copy_or_dash(h->seen_method, sizeof h->seen_method, dmsg_httpd_request_method(req));
    copy_or_dash(h->seen_path, sizeof h->seen_path, dmsg_httpd_request_path(req));
    copy_or_dash(h->seen_query, sizeof h->seen_query, dmsg_httpd_request_query(req, "x"));
    copy_or_dash(h->seen_flag, sizeof h->seen_flag, dmsg_httpd_request_query(req, "flag"));
    copy_or_dash(h->seen_header, sizeof h->seen_header,
                 dmsg_httpd_request_header(req, "x-test"));
    size_t len = 0;
    const char *body = dmsg_httpd_request_body(req, &len);
    cr_assert_not_null(body);
    cr_assert_lt(len, sizeof h->seen_body);
    memcpy(h->seen_body, body, len);
    h->seen_body_len = len;
    static const struct dmsg_httpd_header extra[] = {{"X-Extra", "yes"}};
    struct dmsg_httpd_response resp = {.status = 201, .content_type = "application/json",
                                       .body = "{\"ok\":true}", .body_len = 11,
                                       .headers = extra, .header_count = 1};
    cr_assert_eq(dmsg_httpd_respond(req, &resp), 0);
}

static void client_echo(struct harness *h)
{
    char u[256];
    url(h, u, sizeof u, "/some/path?x=hello%20world&flag");
    struct http_req q = {.method = "PUT", .url = u, .body = "payload\0with nul", .body_len = 16,
                         .header = "X-Test: header-value",
                         .unix_path = h->use_unix ? h->sock_path : NULL};
    http_do(&q, &h->res[0]);
}

static void check_echo(struct harness *h)
{
    cr_assert_eq(h->res[0].rc, CURLE_OK, "%s", curl_easy_strerror(h->res[0].rc));
    cr_assert_eq(h->res[0].status, 201);
    cr_assert_str_eq(h->res[0].content_type, "application/json");
    cr_assert_str_eq(h->res[0].body, "{\"ok\":true}");
    cr_assert_not_null(strstr(h->res[0].headers, "X-Extra: yes"), "%s", h->res[0].headers);
    cr_assert_eq(h->handled, 1);
    cr_assert_str_eq(h->seen_method, "PUT");
    cr_assert_str_eq(h->seen_path, "/some/path");
    cr_assert_str_eq(h->seen_query, "hello world");
    cr_assert_str_eq(h->seen_flag, "");
    cr_assert_str_eq(h->seen_header, "header-value");
    cr_assert_eq(h->seen_body_len, 16);
    cr_assert_eq(memcmp(h->seen_body, "payload\0with nul", 16), 0);
}

Test(httpd, tcp_request_reaches_handler_and_answer_comes_back)
{
    struct harness h;
    harness_setup(&h, on_echo, false);
    harness_run(&h, client_echo);
    cr_assert_neq(h.port, 0);
    check_echo(&h);
}

Test(httpd, unix_socket_request_mode_and_cleanup)
{
    struct harness h;
    harness_setup(&h, on_echo, true);
    /* A stale socket (bound, nobody listening) is replaced. */
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", h.sock_path);
    cr_assert_eq(bind(stale, (struct sockaddr *)&sun, sizeof sun), 0);
    close(stale);

    cr_assert_eq(dmsg_httpd_init(&h.loop, &h.httpd, &h.cfg), 0);
    cr_assert_eq(dmsg_httpd_start(h.httpd), 0, "%s", dmsg_httpd_last_error(h.httpd));
    struct stat sb;
    cr_assert_eq(stat(h.sock_path, &sb), 0);
    cr_assert(S_ISSOCK(sb.st_mode));
    cr_assert_eq(sb.st_mode & 0777, 0600);
    cr_assert_eq(dmsg_httpd_port(h.httpd), 0);

    /* A second server on the same live path is refused and leaves the socket alone. */
    struct dmsg_httpd *second = NULL;
    cr_assert_eq(dmsg_httpd_init(&h.loop, &second, &h.cfg), 0);
    cr_assert_eq(dmsg_httpd_start(second), DMSG_EEXIST);
    cr_assert_not_null(strstr(dmsg_httpd_last_error(second), "in use"));
    dmsg_httpd_close(second, NULL, NULL);
    dmsg_httpd_close(h.httpd, NULL, NULL);
    uv_run(&h.loop, UV_RUN_DEFAULT);
    cr_assert_neq(stat(h.sock_path, &sb), 0, "socket file left behind after close");

    harness_run(&h, client_echo);
    check_echo(&h);
    struct stat after;
    cr_assert_neq(stat(h.sock_path, &after), 0, "socket file left behind after close");
}

Test(httpd, unix_path_holding_a_regular_file_is_refused)
{
    struct harness h;
    harness_setup(&h, on_echo, true);
    FILE *f = fopen(h.sock_path, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_eq(dmsg_httpd_init(&h.loop, &h.httpd, &h.cfg), 0);
    cr_assert_eq(dmsg_httpd_start(h.httpd), DMSG_EEXIST);
    cr_assert_not_null(strstr(dmsg_httpd_last_error(h.httpd), "not a socket"));
    dmsg_httpd_close(h.httpd, NULL, NULL);
    uv_run(&h.loop, UV_RUN_DEFAULT);
    struct stat sb;
    cr_assert_eq(stat(h.sock_path, &sb), 0, "the regular file must stay");
    cr_assert_eq(uv_loop_close(&h.loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", h.tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static void close_count(struct dmsg_httpd *httpd, void *arg)
{
    (void)httpd;
    ++*(int *)arg;
}

Test(httpd, config_and_address_errors)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct dmsg_httpd *h = NULL;
    struct dmsg_httpd_config cfg = {.handler = on_echo};
    cr_assert_eq(dmsg_httpd_init(&loop, &h, &cfg), DMSG_EINVAL); /* no address */
    cfg.tcp_address = "127.0.0.1:0";
    cfg.unix_path = "/tmp/x.sock";
    cr_assert_eq(dmsg_httpd_init(&loop, &h, &cfg), DMSG_EINVAL); /* both */
    cfg.unix_path = NULL;
    cfg.handler = NULL;
    cr_assert_eq(dmsg_httpd_init(&loop, &h, &cfg), DMSG_EINVAL); /* no handler */
    cfg.handler = on_echo;

    static const char *const bad[] = {"nonsense", "localhost:8080", "127.0.0.1:", "1.2.3:80",
                                      "127.0.0.1:99999", "[::1:80"};
    int closed = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.tcp_address = bad[i];
        cr_assert_eq(dmsg_httpd_init(&loop, &h, &cfg), 0);
        cr_assert_eq(dmsg_httpd_start(h), DMSG_EINVAL, "%s", bad[i]);
        cr_assert_not_null(strstr(dmsg_httpd_last_error(h), bad[i]), "%s",
                           dmsg_httpd_last_error(h));
        dmsg_httpd_close(h, close_count, &closed);
    }

    /* The same port twice: the second start reports the address in use. */
    struct dmsg_httpd *first = NULL, *second = NULL;
    cfg.tcp_address = "127.0.0.1:0";
    cr_assert_eq(dmsg_httpd_init(&loop, &first, &cfg), 0);
    cr_assert_eq(dmsg_httpd_start(first), 0);
    cr_assert_eq(dmsg_httpd_start(first), DMSG_ESTATE);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", dmsg_httpd_port(first));
    cfg.tcp_address = addr;
    cr_assert_eq(dmsg_httpd_init(&loop, &second, &cfg), 0);
    cr_assert_eq(dmsg_httpd_start(second), DMSG_EEXIST);
    dmsg_httpd_stop(first);
    dmsg_httpd_stop(first); /* idempotent */
    dmsg_httpd_close(first, close_count, &closed);
    dmsg_httpd_close(second, close_count, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(closed, (int)(sizeof bad / sizeof bad[0]) + 2);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* ---- body limit ---- */

static void client_body_limit(struct harness *h)
{
    char big[1025];
    memset(big, 'b', sizeof big - 1);
    big[1024] = '\0';
    request(h, 0, "POST", "/exact", big, 0);          /* exactly at the limit */
    big[1023] = '\0';
    request(h, 1, "POST", "/under", big, 0);

    /* Over the limit, declared: 413 before the body is sent at all. */
    int fd = raw_connect_tcp(h->port);
    static const char head[] = "POST /huge HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
                               "\r\n";
    cr_assert_eq(write(fd, head, sizeof head - 1), (ssize_t)(sizeof head - 1));
    raw_read(fd, h->raw_reply, sizeof h->raw_reply, 3000, &h->raw_closed[0]);
    close(fd);

    /* Over the limit, chunked (no declared length): the connection is dropped. */
    char u[256];
    url(h, u, sizeof u, "/chunked");
    char body[2048];
    memset(body, 'c', sizeof body);
    struct http_req q = {.method = "POST", .url = u, .body = body, .body_len = sizeof body,
                         .chunked = true};
    http_do(&q, &h->res[2]);
}

Test(httpd, body_over_limit_gets_413_without_being_read)
{
    struct harness h;
    harness_setup(&h, on_echo, false);
    h.cfg.max_body_bytes = 1024;
    harness_run(&h, client_body_limit);
    cr_assert_eq(h.res[0].status, 201);
    cr_assert_eq(h.res[1].status, 201);
    cr_assert_eq(strncmp(h.raw_reply, "HTTP/1.1 413", 12), 0, "%s", h.raw_reply);
    cr_assert(h.raw_closed[0], "the connection should be closed after the 413");
    cr_assert_neq(h.res[2].rc, CURLE_OK);
    cr_assert_eq(h.handled, 2, "over-limit bodies must not reach the handler");
}

/* ---- connection limits ---- */

static void client_connection_limit(struct harness *h)
{
    /* Two connections parked in the middle of their request headers fill the limit... */
    int held[2];
    for (int i = 0; i < 2; i++) {
        held[i] = raw_connect_tcp(h->port);
        cr_assert_geq(held[i], 0);
        cr_assert_eq(write(held[i], "GET / HTTP/1.1\r\n", 16), 16);
    }
    sleep_ms(200);
    /* ...so a third waits in the backlog and times out... */
    request(h, 0, "GET", "/third", NULL, 700);
    /* ...until one slot is freed. */
    close(held[0]);
    request(h, 1, "GET", "/fourth", NULL, 5000);
    close(held[1]);
}

Test(httpd, connection_limit_holds_new_connections_back)
{
    struct harness h;
    harness_setup(&h, on_echo, false);
    h.cfg.max_connections = 2;
    harness_run(&h, client_connection_limit);
    cr_assert_eq(h.res[0].rc, CURLE_OPERATION_TIMEDOUT, "%s",
                 curl_easy_strerror(h.res[0].rc));
    cr_assert_eq(h.res[1].rc, CURLE_OK, "%s", curl_easy_strerror(h.res[1].rc));
    cr_assert_eq(h.res[1].status, 201);
    /* The timed-out request may still be served (to nobody) once it leaves the backlog. */
    cr_assert_geq(h.handled, 1);
}

static void client_per_ip_limit(struct harness *h)
{
    int held = raw_connect_tcp(h->port);
    cr_assert_eq(write(held, "GET / HTTP/1.1\r\n", 16), 16);
    sleep_ms(200);
    request(h, 0, "GET", "/second-from-same-ip", NULL, 3000);
    close(held);
    sleep_ms(200);
    request(h, 1, "GET", "/after-release", NULL, 3000);
}

Test(httpd, per_ip_limit_refuses_extra_connections)
{
    struct harness h;
    harness_setup(&h, on_echo, false);
    h.cfg.max_connections = 10;
    h.cfg.max_connections_per_ip = 1;
    harness_run(&h, client_per_ip_limit);
    cr_assert_neq(h.res[0].rc, CURLE_OK);
    cr_assert_neq(h.res[0].rc, CURLE_OPERATION_TIMEDOUT, "refused, not held back");
    cr_assert_eq(h.res[1].rc, CURLE_OK, "%s", curl_easy_strerror(h.res[1].rc));
    cr_assert_eq(h.handled, 1);
}

static void client_idle_timeout(struct harness *h)
{
    int fd = raw_connect_tcp(h->port);
    cr_assert_eq(write(fd, "GET / HTTP/1.1\r\n", 16), 16);
    char buf[64];
    raw_read(fd, buf, sizeof buf, 4000, &h->raw_closed[0]);
    close(fd);
}

Test(httpd, idle_connection_times_out)
{
    struct harness h;
    harness_setup(&h, on_echo, false);
    h.cfg.connection_timeout_s = 1;
    harness_run(&h, client_idle_timeout);
    cr_assert(h.raw_closed[0], "the idle connection should have been closed by the server");
    cr_assert_eq(h.handled, 0);
}

/* ---- handlers that answer late or not at all ---- */

static void on_silent(void *user, struct dmsg_httpd_request *req)
{
    struct harness *h = user;
    (void)req;
    h->handled++;
}

static void client_one_get(struct harness *h)
{
    request(h, 0, "GET", "/", NULL, 0);
}

Test(httpd, unanswered_request_gets_500)
{
    struct harness h;
    harness_setup(&h, on_silent, false);
    harness_run(&h, client_one_get);
    cr_assert_eq(h.res[0].status, 500);
    cr_assert_eq(h.handled, 1);
}

static void on_answer_later(uv_timer_t *timer)
{
    struct harness *h = timer->data;
    struct dmsg_httpd_response resp = {.status = 202, .content_type = "text/plain",
                                       .body = "later", .body_len = 5};
    cr_assert_eq(dmsg_httpd_respond(h->deferred, &resp), 0);
    h->deferred = NULL;
}

static void on_defer(void *user, struct dmsg_httpd_request *req)
{
    struct harness *h = user;
    h->handled++;
    cr_assert_eq(dmsg_httpd_defer(req, NULL, NULL), 0);
    cr_assert_eq(dmsg_httpd_defer(req, NULL, NULL), DMSG_ESTATE);
    h->deferred = req;
    uv_timer_start(&h->deferrer, on_answer_later, 100, 0);
}

static void client_two_gets(struct harness *h)
{
    request(h, 0, "GET", "/a", NULL, 0);
    request(h, 1, "GET", "/b", NULL, 0);
}

Test(httpd, deferred_answer_is_sent_from_the_loop)
{
    struct harness h;
    harness_setup(&h, on_defer, false);
    uv_timer_init(&h.loop, &h.deferrer);
    h.deferrer.data = &h;
    h.deferrer_used = true;
    harness_run(&h, client_two_gets);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(h.res[i].rc, CURLE_OK, "%s", curl_easy_strerror(h.res[i].rc));
        cr_assert_eq(h.res[i].status, 202);
        cr_assert_str_eq(h.res[i].body, "later");
    }
    cr_assert_eq(h.handled, 2);
}

static void on_abort_count(void *user, struct dmsg_httpd_request *req)
{
    struct harness *h = user;
    h->aborted++;
    struct dmsg_httpd_response resp = {.status = 200};
    cr_assert_eq(dmsg_httpd_respond(req, &resp), DMSG_ECLOSED);
    h->deferred = NULL;
}

static void on_defer_forever(void *user, struct dmsg_httpd_request *req)
{
    struct harness *h = user;
    h->handled++;
    cr_assert_eq(dmsg_httpd_defer(req, on_abort_count, h), 0);
    h->deferred = req;
}

static void client_waits_while_server_stops(struct harness *h)
{
    request(h, 0, "GET", "/never", NULL, 5000);
}

static void on_stop_soon(uv_timer_t *timer)
{
    struct harness *h = timer->data;
    dmsg_httpd_stop(h->httpd);
}

Test(httpd, stopping_aborts_deferred_requests)
{
    struct harness h;
    harness_setup(&h, on_defer_forever, false);
    uv_timer_init(&h.loop, &h.deferrer);
    h.deferrer.data = &h;
    h.deferrer_used = true;
    uv_timer_start(&h.deferrer, on_stop_soon, 300, 0);
    harness_run(&h, client_waits_while_server_stops);
    cr_assert_eq(h.handled, 1);
    cr_assert_eq(h.aborted, 1);
    cr_assert_null(h.deferred);
    cr_assert_neq(h.res[0].rc, CURLE_OK);
    cr_assert_neq(h.res[0].rc, CURLE_OPERATION_TIMEDOUT, "the connection should be closed");
}

/* ---- streams ---- */

static void on_stream_closed(void *user, struct dmsg_httpd_stream *s)
{
    struct harness *h = user;
    cr_assert_eq(s, h->stream);
    h->streams_closed++;
    h->stream = NULL;
    uv_timer_stop(&h->pusher);
}

static void on_push_tick(uv_timer_t *timer)
{
    struct harness *h = timer->data;
    if (!h->stream)
        return;
    char data[64];
    snprintf(data, sizeof data, "tick %d\nsecond line", h->pushes);
    int rc = h->pushes < 3 ? dmsg_httpd_stream_event(h->stream, "tick", data)
                           : dmsg_httpd_stream_push(h->stream, ": filler\n\n", 10);
    if (h->pushes < 64)
        h->push_results[h->pushes] = rc;
    h->pushes++;
}

static void on_push_three_then_end(uv_timer_t *timer)
{
    struct harness *h = timer->data;
    on_push_tick(timer);
    if (h->pushes == 3) {
        cr_assert_eq(dmsg_httpd_stream_end(h->stream), 0);
        cr_assert_eq(dmsg_httpd_stream_end(h->stream), DMSG_ECLOSED);
        cr_assert_eq(dmsg_httpd_stream_push(h->stream, "x", 1), DMSG_ECLOSED);
        uv_timer_stop(&h->pusher);
    }
}

static void start_stream(struct harness *h, struct dmsg_httpd_request *req, uv_timer_cb tick)
{
    h->handled++;
    cr_assert_eq(dmsg_httpd_stream_start(req, 200, NULL, NULL, 0, on_stream_closed, h,
                                         &h->stream), 0);
    /* The buffer limit is checked before anything is queued. */
    char big[129];
    memset(big, 'x', sizeof big);
    cr_assert_eq(dmsg_httpd_stream_push(h->stream, big, sizeof big), DMSG_ELIMIT);
    cr_assert_eq(dmsg_httpd_stream_event(h->stream, "bad\nevent", "x"), DMSG_EINVAL);
    if (tick)
        uv_timer_start(&h->pusher, tick, 30, 30);
}

static void on_sse(void *user, struct dmsg_httpd_request *req)
{
    start_stream(user, req, on_push_three_then_end);
}

static void client_reads_stream(struct harness *h)
{
    request(h, 0, "GET", "/events", NULL, 5000);
}

static void stream_harness(struct harness *h, dmsg_httpd_handler_fn handler, bool use_unix)
{
    harness_setup(h, handler, use_unix);
    h->cfg.max_stream_buffer = 128;
    uv_timer_init(&h->loop, &h->pusher);
    h->pusher.data = h;
    h->pusher_used = true;
}

Test(httpd, sse_chunks_pushed_from_the_loop_arrive_in_order)
{
    struct harness h;
    stream_harness(&h, on_sse, false);
    harness_run(&h, client_reads_stream);
    cr_assert_eq(h.res[0].rc, CURLE_OK, "%s", curl_easy_strerror(h.res[0].rc));
    cr_assert_eq(h.res[0].status, 200);
    cr_assert_str_eq(h.res[0].content_type, "text/event-stream");
    cr_assert_not_null(strstr(h.res[0].headers, "Cache-Control: no-cache"));
    cr_assert_str_eq(h.res[0].body,
                     "event: tick\ndata: tick 0\ndata: second line\n\n"
                     "event: tick\ndata: tick 1\ndata: second line\n\n"
                     "event: tick\ndata: tick 2\ndata: second line\n\n");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(h.push_results[i], 0);
    cr_assert_eq(h.streams_closed, 1);
}

Test(httpd, sse_over_unix_socket)
{
    struct harness h;
    stream_harness(&h, on_sse, true);
    harness_run(&h, client_reads_stream);
    cr_assert_eq(h.res[0].rc, CURLE_OK, "%s", curl_easy_strerror(h.res[0].rc));
    cr_assert_not_null(strstr(h.res[0].body, "data: tick 2\n"));
    cr_assert_eq(h.streams_closed, 1);
}

static void on_sse_forever(void *user, struct dmsg_httpd_request *req)
{
    start_stream(user, req, on_push_tick);
}

static void client_hangs_up_after_first_event(struct harness *h)
{
    h->res[0].stop_marker = "tick 0";
    request(h, 0, "GET", "/events", NULL, 5000);
    /* Give the server time to notice on its next pushes. */
    for (int i = 0; i < 100 && h->streams_closed == 0; i++)
        sleep_ms(20);
}

Test(httpd, client_hanging_up_closes_the_stream)
{
    struct harness h;
    stream_harness(&h, on_sse_forever, false);
    harness_run(&h, client_hangs_up_after_first_event);
    cr_assert_eq(h.res[0].rc, CURLE_WRITE_ERROR);
    cr_assert_eq(h.streams_closed, 1);
    cr_assert_null(h.stream);
}

static void on_sse_idle(void *user, struct dmsg_httpd_request *req)
{
    start_stream(user, req, NULL);
}

static void client_waits_for_keepalive(struct harness *h)
{
    h->res[0].stop_marker = ": keepalive\n\n";
    request(h, 0, "GET", "/idle", NULL, 5000);
}

Test(httpd, idle_stream_gets_keepalive_comments)
{
    struct harness h;
    stream_harness(&h, on_sse_idle, false);
    h.cfg.stream_keepalive_ms = 50;
    harness_run(&h, client_waits_for_keepalive);
    cr_assert_eq(h.res[0].rc, CURLE_WRITE_ERROR, "%s", curl_easy_strerror(h.res[0].rc));
    cr_assert_str_eq(h.res[0].body, ": keepalive\n\n");
    /* The stream either noticed the hang-up on a later keepalive or closed with the server. */
    cr_assert_eq(h.streams_closed, 1);
}
