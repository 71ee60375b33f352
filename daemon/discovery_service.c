/* The embedded dmsg-discovery; see discovery_service.h. */
#include "discovery_service.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmsg/cipher.h"
#include "dmsg/entry.h"
#include "dmsg/error.h"

#define DEFAULT_EXPIRY_INTERVAL_MS 10000
#define DEFAULT_SERVER_TTL_S 120          /* 2 x the dmsg servers' update interval */
#define DEFAULT_CLIENT_TIMEOUT_TTL_S 180  /* legacy ?timeout=true */
#define DEFAULT_AVAILABLE_MAX 512
#define NS_PER_S 1000000000LL

struct discovery_service {
    uv_loop_t *loop;
    struct discovery_service_config cfg;
    struct dmsg_httpd *httpd;             /* NULL without a listener of its own */
    uv_timer_t expiry_timer;
    int64_t started_at_ns;
    int open_parts;
    bool closing;
    discovery_service_close_fn on_close;
    void *close_arg;
    char last_error[256];
    /* Scratch space for one request at a time (everything runs on the loop thread): entries
     * are large because of their fixed-size members. */
    dmsg_entry incoming;
    dmsg_entry stored;
    char canonical[DMSG_ENTRY_JSON_MAX];
};

/* ---- growing text for list replies ---- */

struct text {
    char *data;
    size_t len, cap;
    bool failed;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *grown = realloc(t->data, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->data = grown;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

/* ---- clock and logging ---- */

static int64_t system_clock_ns(void *user)
{
    (void)user;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static int64_t now_ns(const struct discovery_service *svc)
{
    return svc->cfg.clock(svc->cfg.clock_user);
}

static int64_t now_s(const struct discovery_service *svc)
{
    return now_ns(svc) / NS_PER_S;
}

static void log_store_failure(const struct discovery_service *svc, const char *doing, int err)
{
    const struct store_error *se = store_last_error(svc->cfg.store);
    fprintf(stderr, "level=error msg=\"discovery: %s failed\" err=\"%s\" detail=\"%s\"\n", doing,
            dmsg_strerror(err), se->message);
}

/* ---- replies ---- */

static void reply(struct dmsg_httpd_request *req, unsigned status, const char *content_type,
                  const char *body, size_t len)
{
    struct dmsg_httpd_response resp = {.status = status, .content_type = content_type,
                                       .body = body, .body_len = len};
    int err = dmsg_httpd_respond(req, &resp);
    if (err)
        fprintf(stderr, "level=warn msg=\"discovery: reply not sent\" status=%u err=\"%s\"\n",
                status, dmsg_strerror(err));
}

static void reply_json(struct dmsg_httpd_request *req, unsigned status, const char *body,
                       size_t len)
{
    reply(req, status, "application/json", body, len);
}

/* The reference's {"message":...,"code":...} reply for an outcome. */
static void reply_result(struct dmsg_httpd_request *req, dmsg_disc_result r)
{
    char body[256];
    size_t len = 0;
    if (dmsg_disc_reply_write(r, body, sizeof body, &len) != 0) {
        reply(req, 500, NULL, NULL, 0);
        return;
    }
    reply_json(req, (unsigned)dmsg_disc_result_status(r), body, len);
}

/* A status with neither body nor Content-Type, as the reference's router and its panic
 * recovery answer. */
static void reply_bare(struct dmsg_httpd_request *req, unsigned status)
{
    reply(req, status, NULL, NULL, 0);
}

static void reply_text_list(struct dmsg_httpd_request *req, struct text *t, int err,
                            dmsg_disc_result when_empty)
{
    if (err || t->failed)
        reply_result(req, DMSG_DISC_UNEXPECTED);
    else if (t->len == 0 && when_empty != DMSG_DISC_OK)
        reply_result(req, when_empty);
    else if (t->len == 0)
        reply_json(req, 200, "[]", 2);
    else {
        text_add(t, "]", 1);
        t->data[0] = '['; /* the first element's separator slot */
        if (t->failed)
            reply_result(req, DMSG_DISC_UNEXPECTED);
        else
            reply_json(req, 200, t->data, t->len);
    }
    free(t->data);
}

/* ---- GET /dmsg-discovery/entry/{pk} ---- */

static void get_entry(struct discovery_service *svc, struct dmsg_httpd_request *req,
                      const char *param)
{
    dmsg_pk pk;
    int err = dmsg_entry_pk_parse(&pk, param, strlen(param));
    if (err == DMSG_EKEY) { /* the reference's key check panics: 500 from its recoverer */
        reply_bare(req, 500);
        return;
    }
    if (err) {
        reply_result(req, DMSG_DISC_BAD_INPUT);
        return;
    }
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(&pk, hex);
    char *json = NULL;
    size_t len = 0;
    err = store_disc_get(svc->cfg.store, hex, now_s(svc), &json, &len, NULL, NULL);
    if (err == DMSG_ENOTFOUND) {
        reply_result(req, DMSG_DISC_KEY_NOT_FOUND);
    } else if (err) {
        log_store_failure(svc, "reading an entry", err);
        reply_result(req, DMSG_DISC_UNEXPECTED);
    } else {
        reply_json(req, 200, json, len);
    }
    free(json);
}

/* ---- POST /dmsg-discovery/entry/ ---- */

/* Step 6 of the reference handler: an update must follow the stored iteration. Returns
 * ENTRY_SET when nothing is stored, ENTRY_UPDATED when e may replace it, else the refusal. */
static dmsg_disc_result check_against_stored(struct discovery_service *svc, const dmsg_entry *e,
                                             const char *hex, int64_t now)
{
    char *json = NULL;
    size_t len = 0;
    int err = store_disc_get(svc->cfg.store, hex, now, &json, &len, NULL, NULL);
    if (err == DMSG_ENOTFOUND)
        return DMSG_DISC_ENTRY_SET;
    if (err) {
        log_store_failure(svc, "reading the previous entry", err);
        return DMSG_DISC_UNEXPECTED;
    }
    err = dmsg_entry_parse(&svc->stored, json, len);
    free(json);
    if (err) {
        fprintf(stderr, "level=error msg=\"discovery: stored entry unreadable\" pk=%s err=\"%s\"\n",
                hex, dmsg_strerror(err));
        return DMSG_DISC_UNEXPECTED;
    }
    return dmsg_disc_check_iteration(&svc->stored, e);
}

static int64_t expiry_of(const struct discovery_service *svc, const dmsg_entry *e, int64_t now,
                         const struct dmsg_httpd_request *req)
{
    if (e->has_server)
        return now + svc->cfg.server_ttl_s;
    const char *timeout = dmsg_httpd_request_query(req, "timeout");
    if (timeout && strcmp(timeout, "true") == 0)
        return now + svc->cfg.client_timeout_ttl_s;
    return 0;
}

/* Writes e as the reference stores it: its canonical text, signature included. */
static dmsg_disc_result store_entry(struct discovery_service *svc, const dmsg_entry *e,
                                    const char *hex, int64_t now, int64_t expires_at)
{
    size_t len = 0;
    if (dmsg_entry_write(e, true, svc->canonical, sizeof svc->canonical, &len) != 0)
        return DMSG_DISC_UNEXPECTED;
    struct store_disc_entry row = {
        .public_key = hex, .entry_json = svc->canonical, .entry_json_len = len,
        .sequence = e->sequence, .timestamp_ns = e->timestamp,
        .is_client = e->has_client, .is_server = e->has_server,
        .available_sessions = e->has_server ? e->server.available_sessions : 0,
        .expires_at = expires_at};
    bool created = false;
    int err = store_disc_put(svc->cfg.store, &row, now, &created);
    switch (err) {
    case 0:
        return created ? DMSG_DISC_ENTRY_SET : DMSG_DISC_ENTRY_UPDATED;
    case DMSG_ENONCE: /* the store re-checks inside its transaction */
        return DMSG_DISC_WRONG_SEQUENCE;
    case DMSG_EREPLAY:
        return DMSG_DISC_WRONG_TIME;
    default:
        log_store_failure(svc, "writing an entry", err);
        return DMSG_DISC_UNEXPECTED;
    }
}

static void post_entry(struct discovery_service *svc, struct dmsg_httpd_request *req,
                       const char *param)
{
    (void)param; /* POST /entry/{pk} is routed here too; the key comes from the body */
    size_t len = 0;
    const char *body = dmsg_httpd_request_body(req, &len);
    dmsg_entry *e = &svc->incoming;
    dmsg_disc_result r = dmsg_disc_check_body(e, body, len, DMSG_DISC_OP_POST,
                                              svc->cfg.test_mode, now_ns(svc));
    if (r != DMSG_DISC_OK) {
        reply_result(req, r);
        return;
    }
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(&e->static_pk, hex);
    int64_t now = now_s(svc);
    r = check_against_stored(svc, e, hex, now);
    if (r == DMSG_DISC_ENTRY_SET || r == DMSG_DISC_ENTRY_UPDATED)
        r = store_entry(svc, e, hex, now, expiry_of(svc, e, now, req));
    reply_result(req, r);
}

/* ---- DELETE /dmsg-discovery/entry ---- */

static void delete_entry(struct discovery_service *svc, struct dmsg_httpd_request *req,
                         const char *param)
{
    (void)param;
    size_t len = 0;
    const char *body = dmsg_httpd_request_body(req, &len);
    dmsg_entry *e = &svc->incoming;
    dmsg_disc_result r = dmsg_disc_check_body(e, body, len, DMSG_DISC_OP_DELETE,
                                              svc->cfg.test_mode, now_ns(svc));
    if (r != DMSG_DISC_OK) {
        reply_result(req, r);
        return;
    }
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(&e->static_pk, hex);
    int err = store_disc_delete(svc->cfg.store, hex);
    if (err && err != DMSG_ENOTFOUND) { /* deleting nothing succeeds, as in Redis */
        log_store_failure(svc, "deleting an entry", err);
        reply_result(req, DMSG_DISC_UNEXPECTED);
        return;
    }
    reply_result(req, DMSG_DISC_ENTRY_DELETED);
}

/* ---- listings ---- */

/* Appends ",<element>"; the first comma becomes the opening bracket. */
static int add_element(void *user, const char *json, size_t len)
{
    struct text *t = user;
    text_add(t, ",", 1);
    text_add(t, json, len);
    return t->failed ? DMSG_ENOMEM : 0;
}

static int add_quoted_element(void *user, const char *text, size_t len)
{
    struct text *t = user;
    text_add(t, ",\"", 2);
    text_add(t, text, len); /* lowercase hex: nothing to escape */
    text_add(t, "\"", 1);
    return t->failed ? DMSG_ENOMEM : 0;
}

static void available_servers(struct discovery_service *svc, struct dmsg_httpd_request *req,
                              const char *param)
{
    (void)param;
    struct text t = {0};
    int err = store_disc_list_available(svc->cfg.store, now_s(svc),
                                        svc->cfg.available_servers_max, add_element, &t);
    if (err && err != DMSG_ENOMEM)
        log_store_failure(svc, "listing available servers", err);
    reply_text_list(req, &t, err, DMSG_DISC_NO_AVAILABLE_SERVERS);
}

static void all_servers(struct discovery_service *svc, struct dmsg_httpd_request *req,
                        const char *param)
{
    (void)param;
    struct text t = {0};
    int err = store_disc_list_servers(svc->cfg.store, now_s(svc), add_element, &t);
    if (err && err != DMSG_ENOMEM)
        log_store_failure(svc, "listing servers", err);
    reply_text_list(req, &t, err, DMSG_DISC_NO_AVAILABLE_SERVERS);
}

static void client_keys(struct discovery_service *svc, struct dmsg_httpd_request *req,
                        const char *param)
{
    (void)param;
    struct text t = {0};
    int err = store_disc_list_clients(svc->cfg.store, now_s(svc), add_quoted_element, &t);
    if (err && err != DMSG_ENOMEM)
        log_store_failure(svc, "listing client entries", err);
    reply_text_list(req, &t, err, DMSG_DISC_OK);
}

/* ---- DELETE /dmsg-discovery/deregister (network monitor) ---- */

static bool is_monitor_key(const struct discovery_service *svc, const char *text)
{
    for (size_t i = 0; text && i < svc->cfg.monitor_key_count; i++)
        if (strcmp(text, svc->cfg.monitor_keys[i]) == 0)
            return true;
    return false;
}

/* The monitor proves itself by signing the hex text of its own key. */
static unsigned check_monitor(const struct discovery_service *svc,
                              const struct dmsg_httpd_request *req)
{
    const char *pk_text = dmsg_httpd_request_header(req, "NM-PK");
    const char *sig_text = dmsg_httpd_request_header(req, "NM-Sign");
    if (!is_monitor_key(svc, pk_text))
        return 403;
    dmsg_pk pk;
    dmsg_sig sig;
    if (dmsg_entry_pk_parse(&pk, pk_text, strlen(pk_text)) != 0)
        return 400;
    if (!sig_text || dmsg_sig_from_hex(&sig, sig_text, strlen(sig_text)) != 0)
        return 400;
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(&pk, hex);
    if (dmsg_verify(&pk, &sig, (const uint8_t *)hex, DMSG_PK_HEX_LEN) != 0)
        return 403;
    return 0;
}

/* Parses the body's key list into hex keys; 0, 400 (not a list of strings) or the reply
 * already sent for a bad key (returned as 1). */
static unsigned parse_key_list(struct dmsg_httpd_request *req, json_t **out)
{
    size_t len = 0;
    const char *body = dmsg_httpd_request_body(req, &len);
    json_t *list = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (!list || !(json_is_array(list) || json_is_null(list))) {
        json_decref(list);
        return 400;
    }
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        if (!json_is_string(item)) {
            json_decref(list);
            return 400;
        }
    }
    *out = list;
    return 0;
}

static void deregister(struct discovery_service *svc, struct dmsg_httpd_request *req,
                       const char *param)
{
    (void)param;
    json_t *list = NULL;
    unsigned status = check_monitor(svc, req);
    if (!status)
        status = parse_key_list(req, &list);
    if (status) {
        reply_bare(req, status);
        return;
    }
    size_t n = json_is_array(list) ? json_array_size(list) : 0;
    dmsg_pk *keys = calloc(n ? n : 1, sizeof *keys);
    int err = keys ? 0 : DMSG_ENOMEM;
    for (size_t i = 0; !err && i < n; i++) {
        const char *text = json_string_value(json_array_get(list, i));
        err = dmsg_entry_pk_parse(&keys[i], text, strlen(text));
    }
    json_decref(list);
    for (size_t i = 0; !err && i < n; i++) {
        char hex[DMSG_PK_HEX_LEN + 1];
        dmsg_pk_to_hex(&keys[i], hex);
        err = store_disc_delete(svc->cfg.store, hex);
        if (err == DMSG_ENOTFOUND)
            err = 0;
        else if (err)
            log_store_failure(svc, "deregistering an entry", err);
    }
    free(keys);
    if (err == DMSG_EKEY)
        reply_bare(req, 500);
    else if (err == DMSG_EHEX)
        reply_result(req, DMSG_DISC_BAD_INPUT);
    else if (err)
        reply_result(req, DMSG_DISC_UNEXPECTED);
    else
        reply_json(req, 200, "null", 4);
}

/* ---- GET /health ---- */

static void format_rfc3339(int64_t ns, char *out, size_t cap)
{
    time_t secs = (time_t)(ns / NS_PER_S);
    long frac = (long)(ns % NS_PER_S);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac > 0) { /* RFC3339Nano: fraction without trailing zeros */
        int width = 9;
        for (; frac % 10 == 0; frac /= 10)
            width--;
        n += (size_t)snprintf(out + n, cap - n, ".%0*ld", width, frac);
    }
    snprintf(out + n, cap - n, "Z");
}

static void health(struct discovery_service *svc, struct dmsg_httpd_request *req,
                   const char *param)
{
    (void)param;
    char started[64];
    format_rfc3339(svc->started_at_ns, started, sizeof started);
    json_t *doc = json_pack("{s:{s:s,s:s,s:s},s:s}", "build_info", "version",
                            svc->cfg.version, "commit", "unknown", "date", "unknown",
                            "started_at", started);
    if (doc && svc->cfg.dmsg_address)
        json_object_set_new(doc, "dmsg_address", json_string(svc->cfg.dmsg_address));
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text)
        reply_json(req, 200, text, strlen(text));
    else
        reply_result(req, DMSG_DISC_UNEXPECTED);
    free(text);
}

/* ---- routing, as the reference's router ---- */

typedef void (*route_fn)(struct discovery_service *svc, struct dmsg_httpd_request *req,
                         const char *param);

struct route {
    const char *method;
    const char *path;      /* exact path, or the prefix before "{pk}" */
    bool has_param;        /* one more non-empty segment without '/' */
    route_fn fn;
};

static const struct route routes[] = {
    {"GET", "/dmsg-discovery/entry/", true, get_entry},
    {"POST", "/dmsg-discovery/entry/", false, post_entry},
    {"POST", "/dmsg-discovery/entry/", true, post_entry},
    {"DELETE", "/dmsg-discovery/entry", false, delete_entry},
    {"GET", "/dmsg-discovery/entries", false, client_keys},
    {"DELETE", "/dmsg-discovery/deregister", false, deregister},
    {"GET", "/dmsg-discovery/available_servers", false, available_servers},
    {"GET", "/dmsg-discovery/all_servers", false, all_servers},
    {"GET", "/health", false, health},
};

/* The parameter when path matches r, else NULL. */
static const char *match_route(const struct route *r, const char *path)
{
    size_t n = strlen(r->path);
    if (!r->has_param)
        return strcmp(path, r->path) == 0 ? path + n : NULL;
    if (strncmp(path, r->path, n) != 0 || path[n] == '\0' || strchr(path + n, '/'))
        return NULL;
    return path + n;
}

void discovery_service_handle(void *user, struct dmsg_httpd_request *req)
{
    struct discovery_service *svc = user;
    const char *method = dmsg_httpd_request_method(req);
    const char *path = dmsg_httpd_request_path(req);
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const char *param = match_route(&routes[i], path);
        if (!param)
            continue;
        path_known = true;
        if (strcmp(method, routes[i].method) == 0) {
            routes[i].fn(svc, req, param);
            return;
        }
    }
    if (path_known) {
        reply_bare(req, 405);
        return;
    }
    static const char not_found[] = "404 page not found\n";
    reply(req, 404, "text/plain; charset=utf-8", not_found, sizeof not_found - 1);
}

/* ---- expiry ---- */

int discovery_service_expire(struct discovery_service *svc, int64_t *removed)
{
    int err = store_disc_expire(svc->cfg.store, now_s(svc), removed);
    if (err)
        log_store_failure(svc, "expiring entries", err);
    return err;
}

static void on_expiry_tick(uv_timer_t *timer)
{
    discovery_service_expire(timer->data, NULL);
}

/* ---- lifecycle ---- */

int discovery_service_init(uv_loop_t *loop, struct discovery_service **out,
                           const struct discovery_service_config *cfg)
{
    if (!loop || !out || !cfg || !cfg->store)
        return DMSG_EINVAL;
    struct discovery_service *svc = calloc(1, sizeof *svc);
    if (!svc)
        return DMSG_ENOMEM;
    svc->loop = loop;
    svc->cfg = *cfg;
    struct discovery_service_config *c = &svc->cfg;
    if (!c->clock)
        c->clock = system_clock_ns;
    if (!c->expiry_interval_ms)
        c->expiry_interval_ms = DEFAULT_EXPIRY_INTERVAL_MS;
    if (!c->server_ttl_s)
        c->server_ttl_s = DEFAULT_SERVER_TTL_S;
    if (!c->client_timeout_ttl_s)
        c->client_timeout_ttl_s = DEFAULT_CLIENT_TIMEOUT_TTL_S;
    if (!c->available_servers_max)
        c->available_servers_max = DEFAULT_AVAILABLE_MAX;
    if (!c->version)
        c->version = DMSGD_VERSION;
    if (c->http.tcp_address || c->http.unix_path) {
        c->http.handler = discovery_service_handle;
        c->http.user = svc;
        if (!c->http.max_body_bytes)
            c->http.max_body_bytes = DMSG_ENTRY_JSON_MAX;
        int err = dmsg_httpd_init(loop, &svc->httpd, &c->http);
        if (err) {
            free(svc);
            return err;
        }
        svc->open_parts++;
    }
    uv_timer_init(loop, &svc->expiry_timer);
    svc->expiry_timer.data = svc;
    svc->open_parts++;
    *out = svc;
    return 0;
}

int discovery_service_start(struct discovery_service *svc)
{
    svc->started_at_ns = now_ns(svc);
    if (svc->httpd) {
        int err = dmsg_httpd_start(svc->httpd);
        if (err) {
            snprintf(svc->last_error, sizeof svc->last_error, "discovery listener: %s",
                     dmsg_httpd_last_error(svc->httpd));
            return err;
        }
    }
    uv_timer_start(&svc->expiry_timer, on_expiry_tick, svc->cfg.expiry_interval_ms,
                   svc->cfg.expiry_interval_ms);
    return 0;
}

uint16_t discovery_service_port(const struct discovery_service *svc)
{
    return svc->httpd ? dmsg_httpd_port(svc->httpd) : 0;
}

const char *discovery_service_last_error(const struct discovery_service *svc)
{
    return svc->last_error;
}

void discovery_service_stop(struct discovery_service *svc)
{
    uv_timer_stop(&svc->expiry_timer);
    if (svc->httpd)
        dmsg_httpd_stop(svc->httpd);
}

static void part_closed(struct discovery_service *svc)
{
    if (--svc->open_parts > 0)
        return;
    if (svc->on_close) /* as in libuv: the callback still sees the object, then it is freed */
        svc->on_close(svc, svc->close_arg);
    free(svc);
}

static void on_timer_closed(uv_handle_t *handle)
{
    part_closed(handle->data);
}

static void on_httpd_closed(struct dmsg_httpd *httpd, void *arg)
{
    (void)httpd;
    part_closed(arg);
}

void discovery_service_close(struct discovery_service *svc, discovery_service_close_fn on_close,
                             void *arg)
{
    if (!svc || svc->closing)
        return;
    svc->closing = true;
    svc->on_close = on_close;
    svc->close_arg = arg;
    uv_timer_stop(&svc->expiry_timer);
    uv_close((uv_handle_t *)&svc->expiry_timer, on_timer_closed);
    if (svc->httpd)
        dmsg_httpd_close(svc->httpd, on_httpd_closed, svc);
}
