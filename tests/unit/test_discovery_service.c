/* The embedded discovery over real HTTP on 127.0.0.1: the reference handler's recorded
 * transcript replayed byte for byte, then listings, expiry, persistence, the network-monitor
 * endpoint and storage failures. The loop runs in the test's main thread; requests are made
 * with libcurl from a second thread. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "discovery_service.h"
#include "dmsg/cipher.h"
#include "dmsg/entry.h"
#include "dmsg/error.h"
#include "store.h"
#include "vectors.h"

#define NS 1000000000LL

/* ---- one HTTP exchange ---- */

struct step {
    /* request */
    const char *method;
    char path[256];
    char *body;                 /* owned; NULL for none */
    bool json_body;             /* send Content-Type: application/json */
    char header[2][256];        /* extra request headers ("" for none) */
    int64_t set_clock_ns;       /* when non-zero, the service's clock is set first */
    bool lock_store;            /* hold a write lock on the database during the request */
    /* expectations */
    long want_status;
    const char *want_content_type; /* NULL: not checked */
    char *want_body;            /* owned; NULL: not checked */
    /* outcome */
    CURLcode rc;
    long status;
    char content_type[128];
    char *got;
    size_t got_len;
};

struct got_body {
    char *data;
    size_t len;
};

static size_t on_body(char *data, size_t size, size_t n, void *user)
{
    struct got_body *b = user;
    size_t len = size * n;
    char *grown = realloc(b->data, b->len + len + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->len, data, len);
    b->data = grown;
    b->len += len;
    b->data[b->len] = '\0';
    return len;
}

static void perform(uint16_t port, struct step *s)
{
    char url[320];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, s->path);
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    if (s->json_body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    for (int i = 0; i < 2; i++)
        if (s->header[i][0])
            hdrs = curl_slist_append(hdrs, s->header[i]);
    struct got_body body = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, s->method);
    if (s->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, s->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(s->body));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    s->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(s->content_type, sizeof s->content_type, "%s", ct ? ct : "");
    s->got = body.data ? body.data : strdup("");
    s->got_len = body.data ? body.len : 0;
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
}

/* ---- the service on a loop, the steps in a client thread ---- */

struct run {
    uv_loop_t loop;
    struct store *store;
    struct discovery_service *svc;
    uv_async_t done;
    uv_timer_t watchdog;
    pthread_t thread;
    uint16_t port;
    _Atomic int64_t clock_ns;
    const char *dbpath;
    struct step *steps;
    size_t nsteps;
    unsigned expiry_interval_ms;
    const char *const *monitor_keys;
    size_t monitor_key_count;
    long settle_ms;             /* the client waits this long after its last step */
};

static int64_t fake_clock(void *user)
{
    struct run *r = user;
    return atomic_load(&r->clock_ns);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *client_thread(void *arg)
{
    struct run *r = arg;
    for (size_t i = 0; i < r->nsteps; i++) {
        struct step *s = &r->steps[i];
        if (s->set_clock_ns)
            atomic_store(&r->clock_ns, s->set_clock_ns);
        sqlite3 *locker = NULL;
        if (s->lock_store) {
            sqlite3_open(r->dbpath, &locker);
            sqlite3_exec(locker, "BEGIN EXCLUSIVE", NULL, NULL, NULL);
        }
        perform(r->port, s);
        if (locker) {
            sqlite3_exec(locker, "ROLLBACK", NULL, NULL, NULL);
            sqlite3_close(locker);
        }
    }
    sleep_ms(r->settle_ms);
    uv_async_send(&r->done);
    return NULL;
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_done(uv_async_t *async)
{
    struct run *r = async->data;
    uv_close((uv_handle_t *)&r->done, on_handle_closed);
    uv_close((uv_handle_t *)&r->watchdog, on_handle_closed);
    discovery_service_close(r->svc, NULL, NULL);
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "test_discovery_service: watchdog fired, the test hangs\n");
    abort();
}

/* Opens the store, runs the service and every step, closes everything. */
static void run_steps(struct run *r)
{
    struct store_options opts = {.busy_timeout_ms = 50};
    struct store_error err;
    cr_assert_eq(store_open(&r->store, r->dbpath, &opts, &err), 0, "%s", err.message);
    cr_assert_eq(uv_loop_init(&r->loop), 0);
    struct discovery_service_config cfg = {
        .store = r->store,
        .http = {.tcp_address = "127.0.0.1:0"},
        .clock = fake_clock,
        .clock_user = r,
        .expiry_interval_ms = r->expiry_interval_ms,
        .monitor_keys = r->monitor_keys,
        .monitor_key_count = r->monitor_key_count,
    };
    cr_assert_eq(discovery_service_init(&r->loop, &r->svc, &cfg), 0);
    cr_assert_eq(discovery_service_start(r->svc), 0, "%s", discovery_service_last_error(r->svc));
    r->port = discovery_service_port(r->svc);
    cr_assert_neq(r->port, 0);
    uv_async_init(&r->loop, &r->done, on_done);
    r->done.data = r;
    uv_timer_init(&r->loop, &r->watchdog);
    uv_timer_start(&r->watchdog, on_watchdog, 60000, 0);
    cr_assert_eq(pthread_create(&r->thread, NULL, client_thread, r), 0);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    pthread_join(r->thread, NULL);
    cr_assert_eq(uv_loop_close(&r->loop), 0, "handles left open on the loop");
    store_close(r->store);
    r->store = NULL;
}

static void check_steps(const struct run *r)
{
    for (size_t i = 0; i < r->nsteps; i++) {
        const struct step *s = &r->steps[i];
        cr_expect_eq(s->rc, CURLE_OK, "step %zu %s %s: %s", i, s->method, s->path,
                     curl_easy_strerror(s->rc));
        cr_expect_eq(s->status, s->want_status, "step %zu %s %s: status %ld, body %s", i,
                     s->method, s->path, s->status, s->got);
        if (s->want_content_type)
            cr_expect_str_eq(s->content_type, s->want_content_type, "step %zu %s %s", i,
                             s->method, s->path);
        if (s->want_body)
            cr_expect_str_eq(s->got, s->want_body, "step %zu %s %s", i, s->method, s->path);
    }
}

static void free_steps(struct step *steps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(steps[i].body);
        free(steps[i].want_body);
        free(steps[i].got);
    }
}

static char tmpdir[64];
static char dbpath[128];

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dmsg-disc-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(dbpath, sizeof dbpath, "%s/state.db", tmpdir);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
    curl_global_cleanup();
}

TestSuite(discovery_service, .init = setup, .fini = teardown, .timeout = 120);

/* ---- the recorded transcript ---- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

Test(discovery_service, replays_the_reference_transcript)
{
    json_t *v = vec_load("discovery.json");
    json_t *exchanges = vec_get(v, "api_transcript.exchanges");
    json_t *now = vec_get(v, "api_transcript.note_now_unix_nano");
    cr_assert(json_is_array(exchanges));
    cr_assert(json_is_integer(now));
    size_t n = json_array_size(exchanges);
    cr_assert_eq(n, 23);
    struct step *steps = calloc(n, sizeof *steps);
    for (size_t i = 0; i < n; i++) {
        json_t *ex = json_array_get(exchanges, i);
        struct step *s = &steps[i];
        s->method = json_string_value(json_object_get(ex, "method"));
        snprintf(s->path, sizeof s->path, "%s", json_string_value(json_object_get(ex, "path")));
        s->body = dup_or_null(json_string_value(json_object_get(ex, "request_body")));
        const char *ct = json_string_value(
            json_object_get(json_object_get(ex, "request_headers"), "Content-Type"));
        s->json_body = ct && strcmp(ct, "application/json") == 0;
        s->want_status = (long)json_integer_value(json_object_get(ex, "status"));
        s->want_content_type = json_string_value(json_object_get(ex, "response_content_type"));
        s->want_body = dup_or_null(json_string_value(json_object_get(ex, "response_body")));
        cr_assert_not_null(s->want_body);
    }
    struct run r = {.dbpath = dbpath, .steps = steps, .nsteps = n};
    atomic_store(&r.clock_ns, (int64_t)json_integer_value(now));
    run_steps(&r);
    check_steps(&r);
    free_steps(steps, n);
    free(steps);
    json_decref(v);
}

/* ---- signed entries made for the scenarios below ---- */

struct key {
    dmsg_pk pk;
    dmsg_sk sk;
    char hex[DMSG_PK_HEX_LEN + 1];
};

static struct key key_of(const char *label)
{
    json_t *v = vec_load("discovery.json");
    char path[64];
    snprintf(path, sizeof path, "keys.%s.secret_key", label);
    struct key k;
    const char *sk = json_string_value(vec_get(v, path));
    cr_assert_not_null(sk);
    cr_assert_eq(dmsg_sk_from_hex(&k.sk, sk, strlen(sk)), 0);
    cr_assert_eq(dmsg_pk_from_sk(&k.pk, &k.sk), 0);
    dmsg_pk_to_hex(&k.pk, k.hex);
    snprintf(path, sizeof path, "keys.%s.public_key", label);
    cr_assert_str_eq(k.hex, json_string_value(vec_get(v, path)));
    json_decref(v);
    return k;
}

static char *signed_json(dmsg_entry *e, const struct key *k)
{
    cr_assert_eq(dmsg_entry_sign(e, &k->sk), 0);
    size_t len = 0;
    cr_assert_eq(dmsg_entry_write(e, true, NULL, 0, &len), DMSG_ETOOBIG);
    char *out = malloc(len + 1);
    cr_assert_eq(dmsg_entry_write(e, true, out, len, &len), 0);
    out[len] = '\0';
    return out;
}

static char *server_entry(const struct key *k, uint64_t seq, int64_t ts, const char *address,
                          int64_t sessions)
{
    dmsg_entry *e = calloc(1, sizeof *e);
    dmsg_entry_init(e, &k->pk, seq, ts);
    cr_assert_eq(dmsg_entry_set_server(e, address, sessions), 0);
    char *json = signed_json(e, k);
    free(e);
    return json;
}

static char *client_entry(const struct key *k, uint64_t seq, int64_t ts, const struct key *via)
{
    dmsg_entry *e = calloc(1, sizeof *e);
    dmsg_entry_init(e, &k->pk, seq, ts);
    cr_assert_eq(dmsg_entry_set_client(e, &via->pk, 1), 0);
    char *json = signed_json(e, k);
    free(e);
    return json;
}

static char *reply_text(const char *message, int code)
{
    char *out = malloc(strlen(message) + 64);
    sprintf(out, "{\"message\":\"%s\",\"code\":%d}", message, code);
    return out;
}

/* Step builders. */
static struct step *add(struct step *steps, size_t *n, const char *method, const char *path,
                        char *body, long status, char *want)
{
    struct step *s = &steps[(*n)++];
    memset(s, 0, sizeof *s);
    s->method = method;
    snprintf(s->path, sizeof s->path, "%s", path);
    s->body = body;
    s->json_body = body != NULL;
    s->want_status = status;
    s->want_body = want;
    return s;
}

static char *entry_path(const char *hex)
{
    static char path[128];
    snprintf(path, sizeof path, "/dmsg-discovery/entry/%s", hex);
    return path;
}

static char *concat3(const char *a, const char *b, const char *c)
{
    char *out = malloc(strlen(a) + strlen(b) + strlen(c) + 1);
    sprintf(out, "%s%s%s", a, b, c);
    return out;
}

/* ---- listings ---- */

Test(discovery_service, server_listings_filter_and_sort)
{
    struct key s1 = key_of("S1"), s2 = key_of("S2"), c = key_of("C"), bad = key_of("BAD");
    const int64_t t = 1800000000LL * NS;
    char *e1 = server_entry(&s1, 0, t, "203.0.113.10:30080", 5);
    char *e2 = server_entry(&s2, 0, t, "203.0.113.11:30080", 50);
    char *e3 = server_entry(&bad, 0, t, "relay.example:30080", 0); /* full: not available */
    char *ec = client_entry(&c, 0, t, &s1);
    struct step steps[16];
    size_t n = 0;
    add(steps, &n, "GET", "/dmsg-discovery/all_servers", NULL, 404,
        reply_text("no delegated dmsg servers available for remote", 404))->set_clock_ns = t;
    add(steps, &n, "GET", "/dmsg-discovery/entries", NULL, 200, strdup("[]"));
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(e1), 200,
        reply_text("wrote a new entry", 200));
    /* POST /entry/{pk} reaches the same handler; the key in the path is ignored. */
    add(steps, &n, "POST", entry_path("ignored"), strdup(e2), 200,
        reply_text("wrote a new entry", 200));
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(e3), 200,
        reply_text("wrote a new entry", 200));
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(ec), 200,
        reply_text("wrote a new entry", 200));
    char *avail = malloc(strlen(e1) + strlen(e2) + 8);
    sprintf(avail, "[%s,%s]", e2, e1);
    add(steps, &n, "GET", "/dmsg-discovery/available_servers", NULL, 200, avail)
        ->want_content_type = "application/json";
    struct step *all = add(steps, &n, "GET", "/dmsg-discovery/all_servers", NULL, 200, NULL);
    add(steps, &n, "GET", "/dmsg-discovery/entries", NULL, 200, concat3("[\"", c.hex, "\"]"));
    add(steps, &n, "GET", "/dmsg-discovery/entry/", NULL, 405, strdup(""));
    add(steps, &n, "GET", "/dmsg-discovery/entry/a/b", NULL, 404,
        strdup("404 page not found\n"));
    add(steps, &n, "GET", "/dmsg-discovery/available_servers/", NULL, 404,
        strdup("404 page not found\n"));
    /* An upper-case key is read as the same key. */
    char upper[DMSG_PK_HEX_LEN + 1];
    for (size_t i = 0; i <= DMSG_PK_HEX_LEN; i++)
        upper[i] = (char)(s1.hex[i] >= 'a' && s1.hex[i] <= 'f' ? s1.hex[i] - 32 : s1.hex[i]);
    add(steps, &n, "GET", entry_path(upper), NULL, 200, strdup(e1));
    (void)all;

    struct run r = {.dbpath = dbpath, .steps = steps, .nsteps = n};
    run_steps(&r);
    check_steps(&r);
    /* all_servers: every server entry, the full one included, in some order. */
    cr_assert_eq(all->got[0], '[');
    cr_assert_not_null(strstr(all->got, e1));
    cr_assert_not_null(strstr(all->got, e2));
    cr_assert_not_null(strstr(all->got, e3));
    cr_assert_null(strstr(all->got, ec));
    cr_assert_eq(all->got_len, strlen(e1) + strlen(e2) + strlen(e3) + 4);
    free_steps(steps, n);
    free(e1);
    free(e2);
    free(e3);
    free(ec);
}

/* ---- expiry ---- */

Test(discovery_service, server_entries_expire_and_client_entries_stay)
{
    struct key s1 = key_of("S1"), s2 = key_of("S2"), c = key_of("C"), bad = key_of("BAD");
    const int64_t t = 1800000000LL * NS;
    char *e1 = server_entry(&s1, 0, t, "203.0.113.10:30080", 5);
    char *e2 = server_entry(&s2, 0, t, "203.0.113.11:30080", 7);
    char *e1_again = server_entry(&s1, 0, t + 121 * NS, "203.0.113.10:30080", 4);
    char *ec = client_entry(&c, 0, t, &s1);
    char *ec_timeout = client_entry(&bad, 0, t, &s1);
    struct step steps[24];
    size_t n = 0;
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(e1), 200,
        reply_text("wrote a new entry", 200))->set_clock_ns = t;
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(e2), 200,
        reply_text("wrote a new entry", 200));
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(ec), 200,
        reply_text("wrote a new entry", 200));
    add(steps, &n, "POST", "/dmsg-discovery/entry/?timeout=true", strdup(ec_timeout), 200,
        reply_text("wrote a new entry", 200));
    add(steps, &n, "GET", entry_path(s1.hex), NULL, 200, strdup(e1))->set_clock_ns =
        t + 119 * NS;
    add(steps, &n, "GET", entry_path(s1.hex), NULL, 404,
        reply_text("entry of public key is not found", 404))->set_clock_ns = t + 120 * NS;
    add(steps, &n, "GET", "/dmsg-discovery/available_servers", NULL, 404,
        reply_text("no delegated dmsg servers available for remote", 404))->set_clock_ns =
        t + 121 * NS;
    /* The old iteration is too old to post again; a fresh one registers anew at sequence 0. */
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(e1), 422,
        reply_text("entry validation error: advertised entry has outdated timestamp", 422));
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(e1_again), 200,
        reply_text("wrote a new entry", 200));
    add(steps, &n, "GET", entry_path(bad.hex), NULL, 200, strdup(ec_timeout))->set_clock_ns =
        t + 179 * NS;
    add(steps, &n, "GET", entry_path(bad.hex), NULL, 404,
        reply_text("entry of public key is not found", 404))->set_clock_ns = t + 180 * NS;
    add(steps, &n, "GET", entry_path(c.hex), NULL, 200, strdup(ec))->set_clock_ns =
        t + 1000000 * NS;
    add(steps, &n, "GET", "/dmsg-discovery/entries", NULL, 200,
        concat3("[\"", c.hex, "\"]"));

    struct run r = {.dbpath = dbpath, .steps = steps, .nsteps = n,
                    .expiry_interval_ms = 20, .settle_ms = 300};
    run_steps(&r);
    check_steps(&r);

    /* The sweep ran on the loop with the clock far ahead: it removed the expired rows
     * themselves, not just hid them. Read back at the original time to tell the two apart. */
    struct store *st = NULL;
    cr_assert_eq(store_open(&st, dbpath, NULL, NULL), 0);
    int64_t at = t / NS;
    cr_assert_eq(store_disc_get(st, s2.hex, at, NULL, NULL, NULL, NULL), DMSG_ENOTFOUND);
    cr_assert_eq(store_disc_get(st, s1.hex, at, NULL, NULL, NULL, NULL), DMSG_ENOTFOUND);
    cr_assert_eq(store_disc_get(st, bad.hex, at, NULL, NULL, NULL, NULL), DMSG_ENOTFOUND);
    cr_assert_eq(store_disc_get(st, c.hex, at, NULL, NULL, NULL, NULL), 0);
    store_close(st);
    free_steps(steps, n);
    free(e1);
    free(e2);
    free(e1_again);
    free(ec);
    free(ec_timeout);
}

Test(discovery_service, entries_survive_a_restart)
{
    struct key s1 = key_of("S1");
    const int64_t t = 1800000000LL * NS;
    char *e1 = server_entry(&s1, 0, t, "203.0.113.10:30080", 5);
    char *e1_next = server_entry(&s1, 1, t + NS, "203.0.113.10:30080", 4);
    struct step first[2], second[4];
    size_t n1 = 0, n2 = 0;
    add(first, &n1, "POST", "/dmsg-discovery/entry/", strdup(e1), 200,
        reply_text("wrote a new entry", 200))->set_clock_ns = t;
    struct run r1 = {.dbpath = dbpath, .steps = first, .nsteps = n1};
    run_steps(&r1);
    check_steps(&r1);

    add(second, &n2, "GET", entry_path(s1.hex), NULL, 200, strdup(e1))->set_clock_ns = t + NS;
    add(second, &n2, "POST", "/dmsg-discovery/entry/", strdup(e1), 422,
        reply_text("entry validation error: sequence field of new entry is not sequence of old"
                   " entry + 1", 422));
    add(second, &n2, "POST", "/dmsg-discovery/entry/", strdup(e1_next), 200,
        reply_text("wrote new entry iteration", 200));
    struct run r2 = {.dbpath = dbpath, .steps = second, .nsteps = n2};
    run_steps(&r2);
    check_steps(&r2);
    free_steps(first, n1);
    free_steps(second, n2);
    free(e1);
    free(e1_next);
}

/* ---- failures ---- */

Test(discovery_service, storage_failure_answers_500)
{
    struct key s1 = key_of("S1");
    const int64_t t = 1800000000LL * NS;
    char *e1 = server_entry(&s1, 0, t, "203.0.113.10:30080", 5);
    struct step steps[2];
    size_t n = 0;
    struct step *s = add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(e1), 500,
                         reply_text("something unexpected happened", 500));
    s->set_clock_ns = t;
    s->lock_store = true;
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(e1), 200,
        reply_text("wrote a new entry", 200));
    struct run r = {.dbpath = dbpath, .steps = steps, .nsteps = n};
    run_steps(&r);
    check_steps(&r);
    free_steps(steps, n);
    free(e1);
}

Test(discovery_service, delete_requires_a_valid_signed_entry)
{
    struct key s1 = key_of("S1"), c = key_of("C");
    const int64_t t = 1800000000LL * NS;
    char *ec = client_entry(&c, 0, t, &s1);
    char *e1 = server_entry(&s1, 0, t, "203.0.113.10:30080", 5);
    /* Someone else's signature over C's entry. */
    char *forged = client_entry(&c, 0, t, &s1);
    char *sig = strstr(forged, "\"signature\":\"") + 13;
    sig[0] = sig[0] == '0' ? '1' : '0';
    struct step steps[8];
    size_t n = 0;
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(ec), 200,
        reply_text("wrote a new entry", 200))->set_clock_ns = t;
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(e1), 200,
        reply_text("wrote a new entry", 200));
    add(steps, &n, "DELETE", "/dmsg-discovery/entry", strdup(forged), 401,
        reply_text("invalid signature", 401));
    add(steps, &n, "DELETE", "/dmsg-discovery/entry", strdup("[1,2]"), 500,
        reply_text("something unexpected happened", 500));
    /* A server must delete with a fresh entry: the window applies to DELETE too. */
    add(steps, &n, "DELETE", "/dmsg-discovery/entry", strdup(e1), 422,
        reply_text("entry validation error: advertised entry has outdated timestamp", 422))
        ->set_clock_ns = t + 61 * NS;
    add(steps, &n, "DELETE", "/dmsg-discovery/entry", strdup(ec), 200,
        reply_text("deleted entry", 200));
    add(steps, &n, "DELETE", "/dmsg-discovery/entry", strdup(ec), 200,
        reply_text("deleted entry", 200));
    add(steps, &n, "GET", entry_path(c.hex), NULL, 404,
        reply_text("entry of public key is not found", 404));
    struct run r = {.dbpath = dbpath, .steps = steps, .nsteps = n};
    run_steps(&r);
    check_steps(&r);
    free_steps(steps, n);
    free(ec);
    free(e1);
    free(forged);
}

/* ---- network monitor and health ---- */

static void set_header(struct step *s, int i, const char *name, const char *value)
{
    snprintf(s->header[i], sizeof s->header[i], "%s: %s", name, value);
}

Test(discovery_service, deregister_needs_a_whitelisted_signed_monitor)
{
    struct key s1 = key_of("S1"), s2 = key_of("S2"), c = key_of("C"), nm = key_of("BAD");
    const int64_t t = 1800000000LL * NS;
    char *ec = client_entry(&c, 0, t, &s1);
    char *e2 = server_entry(&s2, 0, t, "203.0.113.11:30080", 3);
    dmsg_sig sig;
    cr_assert_eq(dmsg_sign(&sig, &nm.sk, (const uint8_t *)nm.hex, DMSG_PK_HEX_LEN), 0);
    char sig_hex[DMSG_SIG_HEX_LEN + 1];
    dmsg_sig_to_hex(&sig, sig_hex);
    dmsg_sig other;
    cr_assert_eq(dmsg_sign(&other, &c.sk, (const uint8_t *)nm.hex, DMSG_PK_HEX_LEN), 0);
    char other_hex[DMSG_SIG_HEX_LEN + 1];
    dmsg_sig_to_hex(&other, other_hex);
    const char *monitors[] = {nm.hex};

    char *keys = malloc(256);
    sprintf(keys, "[\"%s\",\"%s\"]", c.hex, s2.hex);
    struct step steps[12];
    size_t n = 0;
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(ec), 200,
        reply_text("wrote a new entry", 200))->set_clock_ns = t;
    add(steps, &n, "POST", "/dmsg-discovery/entry/", strdup(e2), 200,
        reply_text("wrote a new entry", 200));
    /* No monitor key: 403 without body. */
    add(steps, &n, "DELETE", "/dmsg-discovery/deregister", strdup(keys), 403, strdup(""))
        ->want_content_type = "";
    /* A key that is not whitelisted. */
    struct step *s = add(steps, &n, "DELETE", "/dmsg-discovery/deregister", strdup(keys), 403,
                         strdup(""));
    set_header(s, 0, "NM-PK", c.hex);
    set_header(s, 1, "NM-Sign", other_hex);
    /* Whitelisted, but the signature is not the monitor's. */
    s = add(steps, &n, "DELETE", "/dmsg-discovery/deregister", strdup(keys), 403, strdup(""));
    set_header(s, 0, "NM-PK", nm.hex);
    set_header(s, 1, "NM-Sign", other_hex);
    /* Whitelisted, signature not hex. */
    s = add(steps, &n, "DELETE", "/dmsg-discovery/deregister", strdup(keys), 400, strdup(""));
    set_header(s, 0, "NM-PK", nm.hex);
    set_header(s, 1, "NM-Sign", "zz");
    /* Properly signed, body not a list of strings. */
    s = add(steps, &n, "DELETE", "/dmsg-discovery/deregister", strdup("[1]"), 400, strdup(""));
    set_header(s, 0, "NM-PK", nm.hex);
    set_header(s, 1, "NM-Sign", sig_hex);
    /* Properly signed, a key that is not hex. */
    s = add(steps, &n, "DELETE", "/dmsg-discovery/deregister", strdup("[\"xyz\"]"), 400,
            reply_text("error bad input", 400));
    set_header(s, 0, "NM-PK", nm.hex);
    set_header(s, 1, "NM-Sign", sig_hex);
    /* Properly signed: both entries go. */
    s = add(steps, &n, "DELETE", "/dmsg-discovery/deregister", strdup(keys), 200,
            strdup("null"));
    set_header(s, 0, "NM-PK", nm.hex);
    set_header(s, 1, "NM-Sign", sig_hex);
    add(steps, &n, "GET", entry_path(c.hex), NULL, 404,
        reply_text("entry of public key is not found", 404));
    add(steps, &n, "GET", entry_path(s2.hex), NULL, 404,
        reply_text("entry of public key is not found", 404));
    struct run r = {.dbpath = dbpath, .steps = steps, .nsteps = n, .monitor_keys = monitors,
                    .monitor_key_count = 1};
    run_steps(&r);
    check_steps(&r);
    free_steps(steps, n);
    free(keys);
    free(ec);
    free(e2);
}

Test(discovery_service, health_reports_build_and_start_time)
{
    struct step steps[1];
    size_t n = 0;
    add(steps, &n, "GET", "/health", NULL, 200, NULL);
    struct run r = {.dbpath = dbpath, .steps = steps, .nsteps = n};
    atomic_store(&r.clock_ns, 1700000000123000000LL);
    run_steps(&r);
    check_steps(&r);
    json_error_t jerr;
    json_t *doc = json_loads(steps[0].got, 0, &jerr);
    cr_assert_not_null(doc, "%s", steps[0].got);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "started_at")),
                     "2023-11-14T22:13:20.123Z");
    cr_assert_str_eq(json_string_value(vec_get(doc, "build_info.version")), DMSGD_VERSION);
    cr_assert_null(json_object_get(doc, "dmsg_address"));
    json_decref(doc);
    free_steps(steps, n);
}
