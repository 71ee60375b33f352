/* dmsgctl against a stand-in dmsgd: a small libmicrohttpd server on a unix socket in a
 * temporary directory (and on 127.0.0.1 for the token tests) that answers with the fixture
 * documents of api/openapi.yaml, with problem+json errors, 401/403 with WWW-Authenticate, or
 * not at all. Checks the requests dmsgctl sends, what it prints, and the exit status of every
 * kind of outcome; the last tests run the built binary itself. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_support.h"
#include "dmsg/cipher.h"
#include "dmsgctl.h"
#include "http.h"
#include "locate.h"

#define PK_PEER "023eb006af08c4fc3a45f524b9fd58aaa9320f768034b92b16215d343eb668f709"
#define PK_OTHER "026f4f524720230f86b3047e69fad7b48e09da1119588b051d6055a83d83a31ea9"

extern char **environ;

/* ---- the stand-in daemon ---- */

struct fake {
    struct MHD_Daemon *mhd;
    char dir[64];
    char sock[128];
    uint16_t port;                   /* TCP variant */
    pthread_mutex_t lock;

    /* what the last request looked like, and how many came */
    char method[16], url[256], query[512], auth[256], content_type[128], body[4096];
    char all_urls[2048];
    int requests;

    /* behaviour */
    const char *token;               /* require "Bearer <token>" */
    unsigned force_status;           /* answer every request with this ... */
    const char *force_fixture;       /* ... and this fixture ... */
    const char *force_body;          /* ... or this literal body ... */
    const char *force_type;          /* ... of this content type */
    const char *force_www_auth;      /* WWW-Authenticate to add */
    unsigned delay_ms;
    const char *health_fixture;
};

static struct fake fake;

struct upload {
    char buf[4096];
    size_t len;
};

static enum MHD_Result add_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    char *q = cls;
    size_t used = strlen(q);

    (void)kind;
    snprintf(q + used, 512 - used, "%s%s=%s", used > 0 ? "&" : "", key,
             value != NULL ? value : "");
    return MHD_YES;
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *type,
                              const char *body, size_t len, const char *www_auth)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result rc;

    if (type != NULL)
        MHD_add_response_header(r, "Content-Type", type);
    if (www_auth != NULL)
        MHD_add_response_header(r, "WWW-Authenticate", www_auth);
    rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result answer_fixture(struct MHD_Connection *c, unsigned status,
                                      const char *type, const char *name)
{
    size_t len;
    char *body = fixture(name, &len);
    enum MHD_Result rc = answer(c, status, type, body, len, NULL);

    free(body);
    return rc;
}

static enum MHD_Result answer_problem(struct MHD_Connection *c, unsigned status,
                                      const char *code, const char *detail)
{
    char body[1024];

    snprintf(body, sizeof body,
             "{\"type\":\"urn:dmsgd:problem:%s\",\"title\":\"%s\",\"status\":%u,"
             "\"detail\":\"%s\",\"code\":\"%s\"}",
             code, code, status, detail, code);
    return answer(c, status, "application/problem+json", body, strlen(body), NULL);
}

/* The event stream, a few bytes per call, so that dmsgctl sees events split anywhere. */
struct sse_source {
    char *text;
    size_t len;
};

static ssize_t sse_chunk(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sse_source *s = cls;
    size_t n = 5;

    if (pos >= s->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n > s->len - pos)
        n = s->len - (size_t)pos;
    if (n > max)
        n = max;
    memcpy(buf, s->text + pos, n);
    return (ssize_t)n;
}

static void sse_free_source(void *cls)
{
    struct sse_source *s = cls;

    free(s->text);
    free(s);
}

static enum MHD_Result answer_events(struct MHD_Connection *c)
{
    struct sse_source *s = calloc(1, sizeof *s);
    struct MHD_Response *r;
    enum MHD_Result rc;

    s->text = fixture("events.sse", &s->len);
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64, sse_chunk, s, sse_free_source);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    rc = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return rc;
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static enum MHD_Result route(struct MHD_Connection *c, const char *method, const char *url)
{
    bool get = strcmp(method, "GET") == 0;

    if (get && strcmp(url, "/v1/peers") == 0)
        return answer_fixture(c, 200, "application/json", "peers.json");
    if (strcmp(method, "POST") == 0 && strcmp(url, "/v1/peers") == 0) {
        if (strstr(fake.body, PK_PEER) != NULL)
            return answer_fixture(c, 409, "application/problem+json",
                                  "problem_peer_exists.json");
        return answer_fixture(c, 201, "application/json", "peer.json");
    }
    if (starts(url, "/v1/peers/")) {
        if (strcmp(url + 10, PK_PEER) != 0)
            return answer_problem(c, 404, "peer_not_found", "not a peer");
        if (strcmp(method, "DELETE") == 0)
            return answer(c, 204, NULL, "", 0, NULL);
        return answer_fixture(c, 200, "application/json", "peer.json");
    }
    if (strcmp(url, "/v1/route-setup") == 0)
        return answer_fixture(c, 200, "application/json", "route_setup.json");
    if (get && strcmp(url, "/v1/route-setups") == 0)
        return answer_fixture(c, 200, "application/json", "route_setups.json");
    if (get && strcmp(url, "/v1/sessions") == 0) {
        const char *after = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
        return answer_fixture(c, 200, "application/json",
                              after == NULL ? "sessions_page1.json" : "sessions_page2.json");
    }
    if (starts(url, "/v1/sessions/")) {
        if (strcmp(method, "DELETE") == 0)
            return answer(c, 204, NULL, "", 0, NULL);
        return answer_fixture(c, 200, "application/json", "session.json");
    }
    if (get && strcmp(url, "/v1/streams") == 0)
        return answer_fixture(c, 200, "application/json", "streams.json");
    if (get && strcmp(url, "/v1/mesh") == 0)
        return answer_fixture(c, 200, "application/json", "mesh.json");
    if (get && strcmp(url, "/v1/info") == 0)
        return answer_fixture(c, 200, "application/json", "info.json");
    if (get && strcmp(url, "/v1/stats") == 0)
        return answer_fixture(c, 200, "application/json", "stats.json");
    if (get && strcmp(url, "/v1/health") == 0) {
        bool draining = fake.health_fixture != NULL;
        return answer_fixture(c, draining ? 503 : 200, "application/json",
                              draining ? fake.health_fixture : "health.json");
    }
    if (get && strcmp(url, "/metrics") == 0)
        return answer_fixture(c, 200, "text/plain; version=0.0.4; charset=utf-8",
                              "metrics.txt");
    if (get && strcmp(url, "/v1/events") == 0)
        return answer_events(c);
    return answer_problem(c, 404, "not_found", "no such path");
}

static const char token_missing_body[] =
    "{\"type\":\"urn:dmsgd:problem:token_missing\",\"title\":\"Token required\","
    "\"status\":401,\"detail\":\"no token\",\"code\":\"token_missing\"}";
static const char token_invalid_body[] =
    "{\"type\":\"urn:dmsgd:problem:token_invalid\",\"title\":\"Invalid token\","
    "\"status\":401,\"detail\":\"bad\",\"code\":\"token_invalid\"}";

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_size, void **con_cls)
{
    struct upload *up = *con_cls;
    const char *v;

    (void)cls;
    (void)version;
    if (up == NULL) {
        *con_cls = calloc(1, sizeof *up);
        return MHD_YES;
    }
    if (*upload_size > 0) {
        size_t n = *upload_size < sizeof up->buf - 1 - up->len ? *upload_size
                                                                : sizeof up->buf - 1 - up->len;
        memcpy(up->buf + up->len, upload_data, n);
        up->len += n;
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&fake.lock);
    fake.requests++;
    snprintf(fake.method, sizeof fake.method, "%s", method);
    snprintf(fake.url, sizeof fake.url, "%s", url);
    {
        size_t used = strlen(fake.all_urls);
        snprintf(fake.all_urls + used, sizeof fake.all_urls - used, "%s ", url);
    }
    fake.query[0] = '\0';
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_query, fake.query);
    v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    snprintf(fake.auth, sizeof fake.auth, "%s", v != NULL ? v : "");
    v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    snprintf(fake.content_type, sizeof fake.content_type, "%s", v != NULL ? v : "");
    up->buf[up->len] = '\0';
    snprintf(fake.body, sizeof fake.body, "%s", up->buf);
    pthread_mutex_unlock(&fake.lock);

    if (fake.delay_ms > 0)
        usleep(fake.delay_ms * 1000);
    if (fake.token != NULL) {
        char want[256];
        snprintf(want, sizeof want, "Bearer %s", fake.token);
        if (fake.auth[0] == '\0')
            return answer(c, 401, "application/problem+json", token_missing_body,
                          strlen(token_missing_body), "Bearer realm=\"dmsgd\"");
        if (strcmp(fake.auth, want) != 0)
            return answer(c, 401, "application/problem+json", token_invalid_body,
                          strlen(token_invalid_body),
                          "Bearer realm=\"dmsgd\", error=\"invalid_token\", "
                          "error_description=\"the access token is not valid\"");
    }
    if (fake.force_status != 0) {
        if (fake.force_fixture != NULL) {
            size_t len;
            char *body = fixture(fake.force_fixture, &len);
            enum MHD_Result rc = answer(c, fake.force_status, fake.force_type, body, len,
                                        fake.force_www_auth);
            free(body);
            return rc;
        }
        return answer(c, fake.force_status, fake.force_type,
                      fake.force_body != NULL ? fake.force_body : "",
                      fake.force_body != NULL ? strlen(fake.force_body) : 0,
                      fake.force_www_auth);
    }
    return route(c, method, url);
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static void start_unix(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (fake.mhd != NULL)
        return; /* already running (suite and test init both ran) */
    cr_assert_eq(dmsg_cipher_init(), 0);
    memset(&fake, 0, sizeof fake);
    pthread_mutex_init(&fake.lock, NULL);
    snprintf(fake.dir, sizeof fake.dir, "/tmp/dmsgctl-http-XXXXXX");
    cr_assert_not_null(mkdtemp(fake.dir));
    snprintf(fake.sock, sizeof fake.sock, "%s/admin.sock", fake.dir);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    cr_assert_lt(strlen(fake.sock), sizeof sa.sun_path);
    memcpy(sa.sun_path, fake.sock, strlen(fake.sock) + 1);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(fd, 16), 0);
    fake.mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, handler, NULL,
                                MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED,
                                request_done, NULL, MHD_OPTION_END);
    cr_assert_not_null(fake.mhd);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void stop(void)
{
    char cmd[128];

    if (fake.mhd != NULL)
        MHD_stop_daemon(fake.mhd);
    fake.mhd = NULL;
    if (fake.dir[0] != '\0') {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fake.dir);
        cr_expect_eq(system(cmd), 0);
        fake.dir[0] = '\0';
        curl_global_cleanup();
    }
}

TestSuite(ctl_http, .init = start_unix, .fini = stop, .timeout = 30);

/* ---- running a command line in-process, as main() does ---- */

struct result {
    int rc;
    struct capture out, err;
};

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

static int run_line(const char *line, struct result *res)
{
    char *copy = strdup(line);
    char *argv[64];
    int argc = 0;
    struct ctl ctl;
    struct ctl_target target;
    struct ctl_locate_input in;
    char err[2048];

    argv[argc++] = "dmsgctl";
    for (char *w = strtok(copy, " "); w != NULL && argc < 63; w = strtok(NULL, " "))
        argv[argc++] = w;
    argv[argc] = NULL;
    memset(&ctl, 0, sizeof ctl);
    cap_open(&res->out);
    cap_open(&res->err);
    ctl.err = res->err.f;
    res->rc = ctl_parse_args(argc, argv, &ctl.args, ctl.err);
    if (res->rc == 0) {
        memset(&in, 0, sizeof in);
        in.config_path = ctl.args.config_path;
        in.admin = ctl.args.admin;
        in.token_file = ctl.args.token_file;
        in.env = env_lookup;
        in.is_root = geteuid() == 0;
        res->rc = ctl_locate(&in, &target, err, sizeof err);
        if (res->rc != 0)
            fprintf(ctl.err, "dmsgctl: %s\n", err);
    }
    if (res->rc == 0)
        ctl.conn = http_open(&target, ctl.args.timeout_ms, ctl.err, &res->rc);
    if (res->rc == 0 && ctl.conn != NULL) {
        ctl.out = output_new(ctl.args.mode, res->out.f);
        res->rc = ctl.args.cmd->run(&ctl);
        output_free(ctl.out);
    }
    http_close(ctl.conn);
    cap_text(&res->out);
    cap_text(&res->err);
    free(copy);
    return res->rc;
}

static void result_free(struct result *res)
{
    cap_close(&res->out);
    cap_close(&res->err);
}

/* "--admin <the fake's socket> " + rest */
static char *on_socket(const char *rest)
{
    char *line = malloc(strlen(rest) + 256);

    sprintf(line, "--admin %s %s", fake.sock, rest);
    return line;
}

static int run_on_socket(const char *rest, struct result *res)
{
    char *line = on_socket(rest);
    int rc = run_line(line, res);

    free(line);
    return rc;
}

/* ---- success and the requests dmsgctl sends ---- */

Test(ctl_http, listing_succeeds_in_every_mode)
{
    struct result r;
    size_t len;
    char *body = fixture("peers.json", &len);

    cr_assert_eq(run_on_socket("peer ls", &r), CTL_EXIT_OK, "%s", r.err.buf);
    cr_expect(strstr(r.out.buf, "PUBLIC KEY") != NULL);
    cr_expect_str_eq(fake.method, "GET");
    cr_expect_str_eq(fake.url, "/v1/peers");
    cr_expect_str_eq(fake.auth, "", "no token on the unix socket");
    cr_expect_eq(r.err.len, 0, "nothing on stderr: %s", r.err.buf);
    result_free(&r);

    cr_assert_eq(run_on_socket("--json peer ls", &r), CTL_EXIT_OK);
    cr_expect(r.out.len == len && memcmp(r.out.buf, body, len) == 0,
              "--json prints the daemon's body unchanged");
    result_free(&r);
    free(body);
}

Test(ctl_http, every_command_reaches_its_endpoint)
{
    struct endpoint {
        const char *line;
        const char *method;
        const char *url;
    } cases[] = {
        {"peer show " PK_PEER, "GET", "/v1/peers/" PK_PEER},
        {"peer rm " PK_PEER, "DELETE", "/v1/peers/" PK_PEER},
        {"route-setup", "GET", "/v1/route-setup"},
        {"route-setup off", "PUT", "/v1/route-setup"},
        {"routes", "GET", "/v1/route-setups"},
        {"session " PK_OTHER, "GET", "/v1/sessions/" PK_OTHER},
        {"session kick " PK_OTHER, "DELETE", "/v1/sessions/" PK_OTHER},
        {"streams", "GET", "/v1/streams"},
        {"mesh", "GET", "/v1/mesh"},
        {"mesh --dot", "GET", "/v1/mesh"},
        {"metrics", "GET", "/metrics"},
        {"info", "GET", "/v1/info"},
        {"health", "GET", "/v1/health"},
        {"stats", "GET", "/v1/stats"},
        {"events", "GET", "/v1/events"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct result r;
        cr_expect_eq(run_on_socket(cases[i].line, &r), CTL_EXIT_OK, "%s: %s", cases[i].line,
                     r.err.buf);
        cr_expect_str_eq(fake.method, cases[i].method, "%s", cases[i].line);
        cr_expect_str_eq(fake.url, cases[i].url, "%s", cases[i].line);
        cr_expect(r.out.len > 0, "%s printed nothing", cases[i].line);
        result_free(&r);
    }
}

Test(ctl_http, request_bodies_and_queries)
{
    struct result r;

    cr_assert_eq(run_on_socket("peer add " PK_OTHER " relay3.example.net:8081 --note hi",
                               &r),
                 CTL_EXIT_OK, "%s", r.err.buf);
    cr_expect_str_eq(fake.method, "POST");
    cr_expect(starts(fake.content_type, "application/json"), "%s", fake.content_type);
    cr_expect_str_eq(fake.body, "{\"public_key\":\"" PK_OTHER "\",\"address\":"
                                "\"relay3.example.net:8081\",\"note\":\"hi\"}");
    cr_expect(strstr(r.out.buf, "Peer added") != NULL, "%s", r.out.buf);
    result_free(&r);

    cr_assert_eq(run_on_socket("route-setup on", &r), CTL_EXIT_OK);
    cr_expect_str_eq(fake.method, "PUT");
    cr_expect_str_eq(fake.body, "{\"enabled\":true}");
    result_free(&r);

    cr_assert_eq(run_on_socket("stats --since 7d --series dmsgd_a,dmsgd_b", &r), CTL_EXIT_OK);
    cr_expect_str_eq(fake.query, "since=7d&series=dmsgd_a,dmsgd_b");
    result_free(&r);

    cr_assert_eq(run_on_socket("routes --state failed --limit 5", &r), CTL_EXIT_OK);
    cr_expect_str_eq(fake.query, "state=failed&limit=5");
    result_free(&r);

    cr_assert_eq(run_on_socket("streams --path mesh --session " PK_OTHER, &r), CTL_EXIT_OK);
    cr_expect_str_eq(fake.query, "pk=" PK_OTHER "&path=mesh&limit=1000");
    result_free(&r);

    cr_assert_eq(run_on_socket("events --type peer_link,route_setup --count 1", &r),
                 CTL_EXIT_OK);
    cr_expect_str_eq(fake.query, "types=peer_link,route_setup");
    result_free(&r);
}

Test(ctl_http, pages_are_followed_and_joined)
{
    struct result r;
    json_t *doc, *p1 = fixture_json("sessions_page1.json");
    struct lines l;

    cr_assert_eq(run_on_socket("sessions --filter kind=client --filter min-streams=0 --plain",
                               &r),
                 CTL_EXIT_OK, "%s", r.err.buf);
    cr_expect_eq(fake.requests, 2, "two pages: %s", fake.all_urls);
    cr_expect_str_eq(fake.query,
                     "kind=client&min_streams=0&limit=1000&after=" PK_OTHER,
                     "the second request carries the filters and the cursor");
    lines_split(&l, r.out.buf);
    cr_expect_eq(l.n, 3);
    lines_free(&l);
    result_free(&r);

    cr_assert_eq(run_on_socket("sessions --json", &r), CTL_EXIT_OK);
    doc = json_loads(r.out.buf, 0, NULL);
    cr_assert(json_is_object(doc), "%s", r.out.buf);
    cr_expect_eq(json_array_size(json_object_get(doc, "sessions")), 3);
    cr_expect(json_is_null(json_object_get(doc, "next")));
    cr_expect(json_equal(json_object_get(doc, "total"), json_object_get(p1, "total")));
    json_decref(doc);
    json_decref(p1);
    result_free(&r);

    cr_assert_eq(run_on_socket("sessions --limit 2 --plain", &r), CTL_EXIT_OK);
    cr_expect_str_eq(fake.query, "limit=2", "one page holds what was asked for");
    lines_split(&l, r.out.buf);
    cr_expect_eq(l.n, 2);
    lines_free(&l);
    result_free(&r);
}

Test(ctl_http, watch_prints_sessions_as_they_appear)
{
    struct result r;
    struct lines l;

    cr_assert_eq(run_on_socket("sessions --watch --interval 0.2 --count 2 --plain", &r),
                 CTL_EXIT_OK, "%s", r.err.buf);
    lines_split(&l, r.out.buf);
    cr_expect_eq(l.n, 3, "the first poll lists every session as +, the second no change:\n%s",
                 r.out.buf);
    for (size_t i = 0; i < l.n; i++)
        cr_expect(strstr(l.v[i], "\t+\t") != NULL, "%s", l.v[i]);
    lines_free(&l);
    result_free(&r);
}

Test(ctl_http, events_follow_the_stream)
{
    struct result r;
    struct lines l;

    cr_assert_eq(run_on_socket("events --plain", &r), CTL_EXIT_OK, "%s", r.err.buf);
    lines_split(&l, r.out.buf);
    cr_expect_eq(l.n, 6, "%s", r.out.buf);
    lines_free(&l);
    result_free(&r);

    cr_assert_eq(run_on_socket("events --plain --count 2", &r), CTL_EXIT_OK);
    lines_split(&l, r.out.buf);
    cr_expect_eq(l.n, 2, "--count stops the feed: %s", r.out.buf);
    lines_free(&l);
    result_free(&r);
}

/* ---- refusals: exit 1 ---- */

Test(ctl_http, problems_are_refusals_that_say_what_to_do)
{
    struct result r;
    json_t *p = fixture_json("problem_peer_exists.json");

    cr_assert_eq(run_on_socket("peer add " PK_PEER " relay2.example.net:8081", &r),
                 CTL_EXIT_REFUSED);
    cr_expect(strstr(r.err.buf, json_string_value(json_object_get(p, "detail"))) != NULL,
              "the daemon's detail is shown: %s", r.err.buf);
    cr_expect(strstr(r.err.buf, "(409 peer_exists)") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "dmsgctl peer ls") != NULL, "and what to do: %s", r.err.buf);
    cr_expect_eq(r.out.len, 0, "nothing on stdout");
    json_decref(p);
    result_free(&r);

    cr_assert_eq(run_on_socket("peer rm " PK_OTHER, &r), CTL_EXIT_REFUSED);
    cr_expect(strstr(r.err.buf, "(404 peer_not_found)") != NULL, "%s", r.err.buf);
    result_free(&r);

    fake.force_status = 503;
    fake.force_fixture = "problem_store_unavailable.json";
    fake.force_type = "application/problem+json";
    cr_assert_eq(run_on_socket("route-setup on", &r), CTL_EXIT_REFUSED);
    cr_expect(strstr(r.err.buf, "the disk is full") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "dmsgd keeps relaying") != NULL, "%s", r.err.buf);
    result_free(&r);

    fake.force_status = 422;
    fake.force_fixture = "problem_invalid_field.json";
    cr_assert_eq(run_on_socket("peer ls", &r), CTL_EXIT_REFUSED);
    cr_expect(strstr(r.err.buf, "; field note (422 invalid_field)") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "different versions") != NULL, "%s", r.err.buf);
    result_free(&r);

    fake.force_status = 404;
    fake.force_fixture = NULL;
    fake.force_body = "<html>not here</html>";
    fake.force_type = "text/html";
    cr_assert_eq(run_on_socket("info", &r), CTL_EXIT_REFUSED);
    cr_expect(strstr(r.err.buf, "unexpected answer") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "HTTP 404, text/html") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "is this dmsgd's admin API?") != NULL, "%s", r.err.buf);
    result_free(&r);
}

Test(ctl_http, unhealthy_daemon_is_exit_1_with_its_state_shown)
{
    struct result r;

    fake.health_fixture = "health_draining.json";
    cr_assert_eq(run_on_socket("health", &r), CTL_EXIT_REFUSED);
    cr_expect(strstr(r.out.buf, "draining") != NULL, "%s", r.out.buf);
    cr_expect(strstr(r.err.buf, "not serving") != NULL, "%s", r.err.buf);
    result_free(&r);
    fake.health_fixture = NULL;
    cr_assert_eq(run_on_socket("health", &r), CTL_EXIT_OK);
    result_free(&r);
}

/* ---- not permitted: exit 4 ---- */

Test(ctl_http, authentication_failures_are_exit_4)
{
    struct result r;

    fake.force_status = 401;
    fake.force_fixture = "problem_token_missing.json";
    fake.force_type = "application/problem+json";
    fake.force_www_auth = "Bearer realm=\"dmsgd\"";
    cr_assert_eq(run_on_socket("peer ls", &r), CTL_EXIT_DENIED);
    cr_expect(strstr(r.err.buf, "needs a token") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "--token-file") != NULL, "%s", r.err.buf);
    result_free(&r);

    fake.force_fixture = NULL;
    fake.force_body = NULL;
    fake.force_type = NULL;
    fake.force_www_auth = "Bearer realm=\"dmsgd\", error=\"invalid_token\"";
    cr_assert_eq(run_on_socket("peer ls", &r), CTL_EXIT_DENIED,
                 "a 401 without a body is judged by its WWW-Authenticate");
    cr_expect(strstr(r.err.buf, "did not accept the token") != NULL, "%s", r.err.buf);
    result_free(&r);

    fake.force_status = 403;
    fake.force_fixture = "problem_insufficient_scope.json";
    fake.force_type = "application/problem+json";
    fake.force_www_auth = "Bearer realm=\"dmsgd\", error=\"insufficient_scope\", scope=\"admin\"";
    cr_assert_eq(run_on_socket("route-setup on", &r), CTL_EXIT_DENIED);
    cr_expect(strstr(r.err.buf, "read-only") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "admin.token") != NULL, "%s", r.err.buf);
    result_free(&r);

    fake.force_fixture = NULL;
    fake.force_www_auth = NULL;
    fake.force_body = "{\"type\":\"urn:dmsgd:problem:origin_refused\",\"title\":\"x\","
                      "\"status\":403,\"detail\":\"browser\",\"code\":\"origin_refused\"}";
    cr_assert_eq(run_on_socket("info", &r), CTL_EXIT_DENIED);
    cr_expect(strstr(r.err.buf, "Origin") != NULL, "%s", r.err.buf);
    result_free(&r);
}

static void start_tcp(void)
{
    start_unix();
    if (fake.port != 0)
        return;
    MHD_stop_daemon(fake.mhd);
    fake.mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, handler, NULL,
                                MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
                                MHD_OPTION_END);
    cr_assert_not_null(fake.mhd);
    fake.port = MHD_get_daemon_info(fake.mhd, MHD_DAEMON_INFO_BIND_PORT)->port;
    cr_assert_neq(fake.port, 0);
    fake.token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
}

Test(ctl_http, tcp_sends_the_token, .init = start_tcp, .fini = stop)
{
    struct result r;
    char line[512], token_file[128];
    FILE *f;

    snprintf(token_file, sizeof token_file, "%s/admin.token", fake.dir);
    f = fopen(token_file, "w");
    fprintf(f, "%s\n", fake.token);
    fclose(f);

    snprintf(line, sizeof line, "--admin 127.0.0.1:%u --token-file %s info", fake.port,
             token_file);
    cr_assert_eq(run_line(line, &r), CTL_EXIT_OK, "%s", r.err.buf);
    cr_expect_str_eq(fake.auth, "Bearer 0123456789abcdef0123456789abcdef0123456789abcdef"
                                "0123456789abcdef",
                     "the token, without its newline");
    result_free(&r);

    snprintf(line, sizeof line, "--admin http://127.0.0.1:%u info", fake.port);
    cr_assert_eq(run_line(line, &r), CTL_EXIT_DENIED);
    cr_expect(strstr(r.err.buf, "needs a token") != NULL, "%s", r.err.buf);
    result_free(&r);

    f = fopen(token_file, "w");
    fprintf(f, "ffff\n");
    fclose(f);
    snprintf(line, sizeof line, "--admin 127.0.0.1:%u --token-file %s info", fake.port,
             token_file);
    cr_assert_eq(run_line(line, &r), CTL_EXIT_DENIED);
    cr_expect(strstr(r.err.buf, token_file) != NULL, "names the token file: %s", r.err.buf);
    result_free(&r);
}

Test(ctl_http, tcp_token_found_through_the_config, .init = start_tcp, .fini = stop)
{
    struct result r;
    char line[512], path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/admin.token", fake.dir);
    f = fopen(path, "w");
    fprintf(f, "%s", fake.token);
    fclose(f);
    unlink(fake.sock);
    snprintf(path, sizeof path, "%s/config.json", fake.dir);
    f = fopen(path, "w");
    fprintf(f, "{\"state_dir\": \"%s\", \"admin_address\": \"127.0.0.1:%u\"}", fake.dir,
            fake.port);
    fclose(f);
    snprintf(line, sizeof line, "-c %s health", path);
    cr_assert_eq(run_line(line, &r), CTL_EXIT_OK, "%s", r.err.buf);
    cr_expect(starts(fake.auth, "Bearer 0123"), "%s", fake.auth);
    result_free(&r);
}

Test(ctl_http, the_unix_socket_never_gets_a_token)
{
    struct result r;
    char line[512], path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/admin.token", fake.dir);
    f = fopen(path, "w");
    fprintf(f, "sekrit\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/config.json", fake.dir);
    f = fopen(path, "w");
    fprintf(f, "{\"state_dir\": \"%s\"}", fake.dir);
    fclose(f);
    snprintf(line, sizeof line, "-c %s info", path);
    cr_assert_eq(run_line(line, &r), CTL_EXIT_OK, "%s", r.err.buf);
    cr_expect_str_eq(fake.auth, "");
    result_free(&r);
    snprintf(line, sizeof line, "-c %s --token-file %s/admin.token info", path, fake.dir);
    cr_assert_eq(run_line(line, &r), CTL_EXIT_OK);
    cr_expect_str_eq(fake.auth, "", "not even when given: the socket's mode is its guard");
    result_free(&r);
}

Test(ctl_http, unusable_token_files)
{
    struct result r;
    char line[512], path[256];
    FILE *f;

    /* A token file is read for TCP only; the problem shows before anything is sent. */
    snprintf(line, sizeof line, "--admin 127.0.0.1:9 --token-file %s/none info", fake.dir);
    cr_assert_eq(run_line(line, &r), CTL_EXIT_USAGE);
    cr_expect(strstr(r.err.buf, "No such file or directory") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "pass --token-file") != NULL, "%s", r.err.buf);
    result_free(&r);

    snprintf(path, sizeof path, "%s/bad.token", fake.dir);
    f = fopen(path, "w");
    fprintf(f, "two words\n");
    fclose(f);
    snprintf(line, sizeof line, "--admin 127.0.0.1:9 --token-file %s info", path);
    cr_assert_eq(run_line(line, &r), CTL_EXIT_USAGE);
    cr_expect(strstr(r.err.buf, "does not hold a bearer token") != NULL, "%s", r.err.buf);
    result_free(&r);

    if (geteuid() != 0) {
        chmod(path, 0);
        cr_assert_eq(run_line(line, &r), CTL_EXIT_DENIED);
        cr_expect(strstr(r.err.buf, "Permission denied") != NULL, "%s", r.err.buf);
        result_free(&r);
    }
}

/* ---- unreachable: exit 3 ---- */

Test(ctl_http, missing_socket)
{
    struct result r;
    char line[512];

    snprintf(line, sizeof line, "--admin %s/nothing.sock info", fake.dir);
    cr_assert_eq(run_line(line, &r), CTL_EXIT_UNREACHABLE);
    cr_expect(strstr(r.err.buf, "cannot reach dmsgd at") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "nothing.sock: No such file or directory") != NULL, "%s",
              r.err.buf);
    cr_expect(strstr(r.err.buf, "is dmsgd running? start it") != NULL, "%s", r.err.buf);
    result_free(&r);
}

Test(ctl_http, missing_socket_named_by_the_config)
{
    struct result r;
    char line[512], path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/config.json", fake.dir);
    f = fopen(path, "w");
    fprintf(f, "{\"admin_socket\": \"elsewhere.sock\"}");
    fclose(f);
    snprintf(line, sizeof line, "-c %s info", path);
    cr_assert_eq(run_line(line, &r), CTL_EXIT_UNREACHABLE);
    cr_expect(strstr(r.err.buf, "elsewhere.sock: No such file or directory") != NULL, "%s",
              r.err.buf);
    cr_expect(strstr(r.err.buf, "is dmsgd running with") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, path) != NULL, "names the config file: %s", r.err.buf);
    result_free(&r);
}

Test(ctl_http, stale_socket_and_non_socket)
{
    struct result r;
    char line[512], path[256];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    snprintf(path, sizeof path, "%s/stale.sock", fake.dir);
    cr_assert_lt(strlen(path), sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    snprintf(line, sizeof line, "--admin %s info", path);
    cr_assert_eq(run_line(line, &r), CTL_EXIT_UNREACHABLE);
    cr_expect(strstr(r.err.buf, "Connection refused") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "no longer running") != NULL, "%s", r.err.buf);
    result_free(&r);

    snprintf(line, sizeof line, "--admin %s info", "/etc/hostname");
    cr_assert_eq(run_line(line, &r), CTL_EXIT_UNREACHABLE);
    cr_expect(strstr(r.err.buf, "not a socket") != NULL, "%s", r.err.buf);
    result_free(&r);
}

Test(ctl_http, default_search_lists_what_it_tried)
{
    struct result r;
    setenv("STATE_DIRECTORY", fake.dir, 1);
    unlink(fake.sock);
    cr_assert_eq(run_line("info", &r), CTL_EXIT_UNREACHABLE);
    cr_expect(strstr(r.err.buf, "looked for a socket at:") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, fake.sock) != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "pass -c FILE") != NULL, "%s", r.err.buf);
    result_free(&r);
    unsetenv("STATE_DIRECTORY");
}

Test(ctl_http, no_answer_in_time)
{
    struct result r;

    fake.delay_ms = 1500;
    cr_assert_eq(run_on_socket("--timeout 0.3 info", &r), CTL_EXIT_UNREACHABLE);
    cr_expect(strstr(r.err.buf, "did not answer within 0.3 s") != NULL, "%s", r.err.buf);
    cr_expect(strstr(r.err.buf, "--timeout") != NULL, "%s", r.err.buf);
    result_free(&r);
    fake.delay_ms = 0;
}

/* ---- the binary ---- */

struct proc {
    int status;
    char out[65536], err[65536];
};

/* Runs dmsgctl with args (NULL-terminated); stdout_closed: its stdout is a pipe nobody reads. */
static int run_binary(const char *const *args, struct proc *p, bool stdout_closed)
{
    char out_path[128], err_path[128];
    posix_spawn_file_actions_t fa;
    char *argv[32];
    int argc = 0, pipefd[2] = {-1, -1};
    pid_t pid;
    FILE *f;
    size_t n;

    snprintf(out_path, sizeof out_path, "%s/stdout", fake.dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", fake.dir);
    argv[argc++] = DMSGCTL_PATH;
    for (; args[argc - 1] != NULL && argc < 31; argc++)
        argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    posix_spawn_file_actions_init(&fa);
    if (stdout_closed) {
        cr_assert_eq(pipe(pipefd), 0);
        close(pipefd[0]);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    } else {
        posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    }
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_eq(posix_spawn(&pid, DMSGCTL_PATH, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    cr_assert_eq(waitpid(pid, &p->status, 0), pid);
    memset(p->out, 0, sizeof p->out);
    memset(p->err, 0, sizeof p->err);
    if (!stdout_closed && (f = fopen(out_path, "r")) != NULL) {
        n = fread(p->out, 1, sizeof p->out - 1, f);
        p->out[n] = '\0';
        fclose(f);
    }
    if ((f = fopen(err_path, "r")) != NULL) {
        n = fread(p->err, 1, sizeof p->err - 1, f);
        p->err[n] = '\0';
        fclose(f);
    }
    cr_assert(WIFEXITED(p->status), "dmsgctl did not exit normally (signal %d)",
              WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0);
    return WEXITSTATUS(p->status);
}

Test(ctl_http, binary_exit_status_table)
{
    static struct proc p;
    const char *help[] = {"--help", NULL};
    const char *noun_help[] = {"peer", "--help", NULL};
    const char *ok[] = {"--admin", fake.sock, "peer", "ls", NULL};
    const char *usage[] = {"peer", "add", "nonsense", NULL};
    const char *unreachable[] = {"--admin", "/nonexistent/dmsgd.sock", "info", NULL};
    const char *refused[] = {"--admin", fake.sock, "peer", "rm", PK_OTHER, NULL};

    cr_expect_eq(run_binary(help, &p, false), CTL_EXIT_OK);
    cr_expect(strstr(p.out, "SYNOPSIS") != NULL && strstr(p.out, "EXIT STATUS") != NULL &&
                  strstr(p.out, "EXAMPLES") != NULL && strstr(p.out, "OPTIONS") != NULL,
              "--help reads like a man page");
    cr_expect_eq(run_binary(noun_help, &p, false), CTL_EXIT_OK);
    cr_expect(strstr(p.out, "NAME\n    dmsgctl peer") != NULL, "%s", p.out);
    cr_expect_eq(run_binary(ok, &p, false), CTL_EXIT_OK, "%s", p.err);
    cr_expect(strstr(p.out, PK_PEER) != NULL);
    cr_expect_eq(run_binary(usage, &p, false), CTL_EXIT_USAGE);
    cr_expect_str_eq(p.out, "", "errors go to stderr only");
    cr_expect(strstr(p.err, "`nonsense' is not a public key") != NULL, "%s", p.err);
    cr_expect_eq(run_binary(unreachable, &p, false), CTL_EXIT_UNREACHABLE);
    cr_expect(strstr(p.err, "/nonexistent/dmsgd.sock: No such file or directory") != NULL,
              "%s", p.err);
    cr_expect_eq(run_binary(refused, &p, false), CTL_EXIT_REFUSED);
    cr_expect(strstr(p.err, "peer_not_found") != NULL, "%s", p.err);

    fake.force_status = 403;
    fake.force_fixture = "problem_insufficient_scope.json";
    fake.force_type = "application/problem+json";
    cr_expect_eq(run_binary(ok, &p, false), CTL_EXIT_DENIED, "%s", p.err);
    fake.force_status = 0;
    fake.force_fixture = NULL;
}

Test(ctl_http, binary_reports_a_closed_stdout)
{
    static struct proc p;
    const char *list[] = {"--admin", fake.sock, "--json", "peer", "ls", NULL};

    cr_expect_eq(run_binary(list, &p, true), CTL_EXIT_OUTPUT,
                 "a closed pipe is exit 5, not a silent death: %s", p.err);
}
