/* dmsg-discovery HTTP calls and the reference's update procedure (PutEntry). */
#include "dmsg/disc_client.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmsg/error.h"

#define URL_CAP (DMSG_DISC_URL_MAX + 128)
#define ENTRY_PATH "/dmsg-discovery/entry"

typedef enum req_kind { REQ_ENTRY, REQ_DONE, REQ_LIST, REQ_PUT } req_kind;

struct dmsg_disc_req {
    dmsg_disc_client *client;
    dmsg_http_req *http;
    req_kind kind;
    dmsg_disc_entry_cb on_entry;
    dmsg_disc_done_cb on_done;
    dmsg_disc_list_cb on_list;
    void *ctx;
    bool completing; /* the owner's callback runs: cancel is a no-op */
    char message[DMSG_DISC_MESSAGE_MAX + 1];
    /* dmsg_disc_put_entry */
    dmsg_entry *entry;
    dmsg_sk sk;
    uint64_t sequence;
    int rounds;
    bool getting; /* fetching the stored entry after a sequence refusal */
    dmsg_entry stored;
    dmsg_disc_req *prev, *next;
};

static int64_t realtime_ns(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int dmsg_disc_client_init(dmsg_disc_client *c, dmsg_http *http, const char *base_url)
{
    memset(c, 0, sizeof *c);
    size_t len = base_url ? strlen(base_url) : 0;
    if (len > 0 && base_url[len - 1] == '/')
        len--;
    if (len == 0 || len > DMSG_DISC_URL_MAX)
        return DMSG_EINVAL;
    memcpy(c->base, base_url, len);
    c->base[len] = '\0';
    c->http = http;
    c->timeout_ms = DMSG_DISC_DEFAULT_TIMEOUT_MS;
    c->clock = realtime_ns;
    return 0;
}

void dmsg_disc_client_set_clock(dmsg_disc_client *c, dmsg_disc_clock_fn clock, void *ctx)
{
    c->clock = clock ? clock : realtime_ns;
    c->clock_ctx = ctx;
}

int64_t dmsg_disc_client_now(const dmsg_disc_client *c)
{
    return c->clock(c->clock_ctx);
}

/* ---------------------------------------------------------------------------------------------
 * Request bookkeeping */

static dmsg_disc_req *req_new(dmsg_disc_client *c, req_kind kind, void *ctx, int *err)
{
    dmsg_disc_req *req = calloc(1, sizeof *req);
    if (!req) {
        *err = DMSG_ENOMEM;
        return NULL;
    }
    req->client = c;
    req->kind = kind;
    req->ctx = ctx;
    req->next = c->reqs;
    if (req->next)
        req->next->prev = req;
    c->reqs = req;
    return req;
}

static void req_unlink(dmsg_disc_req *req)
{
    dmsg_disc_client *c = req->client;
    if (req->prev)
        req->prev->next = req->next;
    else if (c->reqs == req)
        c->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

static void req_free(dmsg_disc_req *req)
{
    if (req->http)
        dmsg_http_cancel(req->http);
    dmsg_wipe(&req->sk, sizeof req->sk);
    free(req);
}

void dmsg_disc_cancel(dmsg_disc_req *req)
{
    if (!req || req->completing)
        return;
    req_unlink(req);
    req_free(req);
}

void dmsg_disc_client_cancel_all(dmsg_disc_client *c)
{
    while (c->reqs)
        dmsg_disc_cancel(c->reqs);
}

/* ---------------------------------------------------------------------------------------------
 * Replies */

static int error_class(dmsg_disc_result r)
{
    switch (r) {
    case DMSG_DISC_KEY_NOT_FOUND:
    case DMSG_DISC_NO_AVAILABLE_SERVERS: return DMSG_ENOTFOUND;
    case DMSG_DISC_UNAUTHORIZED: return DMSG_ESIG;
    default: break;
    }
    int status = dmsg_disc_result_status(r);
    return status == 400 || status == 422 ? DMSG_EINVAL : DMSG_EIO;
}

/* A non-200 answer: Go decodes {"message":…} and maps the text; a body that does not decode
 * is an error of its own. */
static void read_refusal(dmsg_disc_req *req, const dmsg_http_response *res, dmsg_disc_reply *r)
{
    r->result = DMSG_DISC_UNEXPECTED;
    r->err = DMSG_EPROTO;
    json_t *root = json_loadb(res->body, res->body_len, JSON_DISABLE_EOF_CHECK, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return;
    }
    json_t *m = json_object_get(root, "message");
    if (m && !json_is_string(m) && !json_is_null(m)) {
        json_decref(root);
        return;
    }
    const char *text = json_is_string(m) ? json_string_value(m) : "";
    size_t len = json_is_string(m) ? json_string_length(m) : 0;
    r->result = dmsg_disc_result_from_message(text, len);
    r->err = error_class(r->result);
    if (len > DMSG_DISC_MESSAGE_MAX)
        len = DMSG_DISC_MESSAGE_MAX;
    memcpy(req->message, text, len);
    req->message[len] = '\0';
    r->message = req->message;
    json_decref(root);
}

static dmsg_disc_reply reply_of(dmsg_disc_req *req, const dmsg_http_response *res)
{
    dmsg_disc_reply r = {.err = res->err, .status = res->status, .result = DMSG_DISC_OK,
                         .message = "", .detail = res->detail ? res->detail : ""};
    if (res->err == 0 && res->status != 200)
        read_refusal(req, res, &r);
    return r;
}

static void reply_fail(dmsg_disc_reply *r, int err)
{
    r->err = err;
    r->result = DMSG_DISC_UNEXPECTED;
}

/* Calls the owner's callback once and frees req. */
static void finish(dmsg_disc_req *req, dmsg_disc_reply *r, const dmsg_entry *entry,
                   dmsg_entry_iter *list)
{
    req_unlink(req);
    req->completing = true;
    switch (req->kind) {
    case REQ_ENTRY: req->on_entry(req->ctx, r, r->err == 0 ? entry : NULL); break;
    case REQ_LIST: req->on_list(req->ctx, r, r->err == 0 ? list : NULL); break;
    case REQ_DONE:
    case REQ_PUT: req->on_done(req->ctx, r); break;
    }
    req_free(req);
}

/* The whole listing parses (so the owner's walk cannot fail); it is then walked again. */
static int check_list(const dmsg_http_response *res, dmsg_entry *scratch, dmsg_entry_iter *it)
{
    int rc = dmsg_entry_iter_init(it, res->body, res->body_len);
    while (rc == 0 && (rc = dmsg_entry_iter_next(it, scratch)) == 1)
        rc = 0;
    if (rc < 0)
        return rc;
    return dmsg_entry_iter_init(it, res->body, res->body_len);
}

static void put_on_reply(dmsg_disc_req *req, const dmsg_http_response *res);

static void on_http(void *ctx, const dmsg_http_response *res)
{
    dmsg_disc_req *req = ctx;
    req->http = NULL;
    if (req->kind == REQ_PUT) {
        put_on_reply(req, res);
        return;
    }
    dmsg_disc_reply r = reply_of(req, res);
    dmsg_entry_iter it;
    if (r.err == 0 && req->kind == REQ_ENTRY &&
        dmsg_entry_parse(&req->stored, res->body, res->body_len) < 0)
        reply_fail(&r, DMSG_EPROTO);
    if (r.err == 0 && req->kind == REQ_LIST && check_list(res, &req->stored, &it) < 0)
        reply_fail(&r, DMSG_EPROTO);
    finish(req, &r, &req->stored, &it);
}

/* ---------------------------------------------------------------------------------------------
 * Sending */

static int send_http(dmsg_disc_req *req, const char *method, const char *path, const char *body,
                     size_t body_len, size_t max_response)
{
    dmsg_disc_client *c = req->client;
    char url[URL_CAP];
    int n = snprintf(url, sizeof url, "%s%s", c->base, path);
    if (n < 0 || (size_t)n >= sizeof url)
        return DMSG_EINVAL;
    dmsg_http_request_opts o = {
        .method = method, .url = url, .body = body, .body_len = body_len,
        .content_type = body ? "application/json" : NULL, .timeout_ms = c->timeout_ms,
        .max_response = max_response,
    };
    int err;
    req->http = dmsg_http_request(c->http, &o, on_http, req, &err);
    return req->http ? 0 : err;
}

static int send_get_entry(dmsg_disc_req *req, const dmsg_pk *pk)
{
    char path[sizeof ENTRY_PATH + DMSG_PK_HEX_LEN + 1];
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(pk, hex);
    snprintf(path, sizeof path, "%s/%s", ENTRY_PATH, hex);
    return send_http(req, "GET", path, NULL, 0, DMSG_ENTRY_JSON_MAX);
}

static int send_entry(dmsg_disc_req *req, const char *method, const char *path,
                      const dmsg_entry *e)
{
    char *body = malloc(DMSG_ENTRY_JSON_MAX);
    if (!body)
        return DMSG_ENOMEM;
    size_t len;
    int rc = dmsg_entry_write(e, true, body, DMSG_ENTRY_JSON_MAX, &len);
    if (rc == 0)
        rc = send_http(req, method, path, body, len, DMSG_ENTRY_JSON_MAX);
    free(body);
    return rc;
}

static dmsg_disc_req *refuse(int *err)
{
    *err = DMSG_EINVAL;
    return NULL;
}

/* Unlinks and frees req when starting it failed. */
static dmsg_disc_req *started(dmsg_disc_req *req, int rc, int *err)
{
    *err = rc;
    if (rc == 0)
        return req;
    req_unlink(req);
    req_free(req);
    return NULL;
}

dmsg_disc_req *dmsg_disc_get_entry(dmsg_disc_client *c, const dmsg_pk *pk,
                                   dmsg_disc_entry_cb cb, void *ctx, int *err)
{
    if (!cb || !pk)
        return refuse(err);
    dmsg_disc_req *req = req_new(c, REQ_ENTRY, ctx, err);
    if (!req)
        return NULL;
    req->on_entry = cb;
    return started(req, send_get_entry(req, pk), err);
}

static dmsg_disc_req *entry_call(dmsg_disc_client *c, const char *method, const char *path,
                                 const dmsg_entry *e, dmsg_disc_done_cb cb, void *ctx, int *err)
{
    if (!cb || !e)
        return refuse(err);
    dmsg_disc_req *req = req_new(c, REQ_DONE, ctx, err);
    if (!req)
        return NULL;
    req->on_done = cb;
    return started(req, send_entry(req, method, path, e), err);
}

dmsg_disc_req *dmsg_disc_post_entry(dmsg_disc_client *c, const dmsg_entry *e,
                                    dmsg_disc_done_cb cb, void *ctx, int *err)
{
    return entry_call(c, "POST", ENTRY_PATH "/", e, cb, ctx, err);
}

dmsg_disc_req *dmsg_disc_delete_entry(dmsg_disc_client *c, const dmsg_entry *e,
                                      dmsg_disc_done_cb cb, void *ctx, int *err)
{
    return entry_call(c, "DELETE", ENTRY_PATH, e, cb, ctx, err);
}

static dmsg_disc_req *list_call(dmsg_disc_client *c, const char *path, dmsg_disc_list_cb cb,
                                void *ctx, int *err)
{
    if (!cb)
        return refuse(err);
    dmsg_disc_req *req = req_new(c, REQ_LIST, ctx, err);
    if (!req)
        return NULL;
    req->on_list = cb;
    return started(req, send_http(req, "GET", path, NULL, 0, DMSG_DISC_LIST_MAX_BYTES), err);
}

dmsg_disc_req *dmsg_disc_available_servers(dmsg_disc_client *c, dmsg_disc_list_cb cb,
                                           void *ctx, int *err)
{
    return list_call(c, "/dmsg-discovery/available_servers", cb, ctx, err);
}

dmsg_disc_req *dmsg_disc_all_servers(dmsg_disc_client *c, dmsg_disc_list_cb cb, void *ctx,
                                     int *err)
{
    return list_call(c, "/dmsg-discovery/all_servers", cb, ctx, err);
}

/* ---------------------------------------------------------------------------------------------
 * PutEntry: the timestamp is set once; each round signs the next sequence and POSTs it. */

static int put_round(dmsg_disc_req *req)
{
    req->entry->sequence = req->sequence;
    req->getting = false;
    int rc = dmsg_entry_sign(req->entry, &req->sk);
    if (rc < 0)
        return rc;
    return send_entry(req, "POST", ENTRY_PATH "/", req->entry);
}

static void put_finish(dmsg_disc_req *req, dmsg_disc_reply *r, int err)
{
    if (err < 0)
        reply_fail(r, err);
    finish(req, r, NULL, NULL);
}

static void put_after_get(dmsg_disc_req *req, const dmsg_http_response *res, dmsg_disc_reply *r)
{
    if (r->err < 0 || dmsg_entry_parse(&req->stored, res->body, res->body_len) < 0) {
        put_finish(req, r, r->err < 0 ? r->err : DMSG_EPROTO);
        return;
    }
    if (req->stored.timestamp > req->entry->timestamp) {
        /* Someone wrote a newer iteration: ours is dropped, as the reference does. */
        req->entry->sequence = req->stored.sequence;
        put_finish(req, r, 0);
        return;
    }
    req->sequence = req->stored.sequence + 1;
    int rc = put_round(req);
    if (rc < 0)
        put_finish(req, r, rc);
}

static void put_on_reply(dmsg_disc_req *req, const dmsg_http_response *res)
{
    dmsg_disc_reply r = reply_of(req, res);
    if (req->getting) {
        put_after_get(req, res, &r);
        return;
    }
    if (r.result != DMSG_DISC_WRONG_SEQUENCE) {
        put_finish(req, &r, 0);
        return;
    }
    if (++req->rounds > DMSG_DISC_PUT_ROUNDS_MAX) {
        put_finish(req, &r, DMSG_ELIMIT);
        return;
    }
    req->getting = true;
    int rc = send_get_entry(req, &req->entry->static_pk);
    if (rc < 0)
        put_finish(req, &r, rc);
}

dmsg_disc_req *dmsg_disc_put_entry(dmsg_disc_client *c, dmsg_entry *e, const dmsg_sk *sk,
                                   dmsg_disc_done_cb cb, void *ctx, int *err)
{
    if (!cb || !e || !sk)
        return refuse(err);
    dmsg_disc_req *req = req_new(c, REQ_PUT, ctx, err);
    if (!req)
        return NULL;
    req->on_done = cb;
    req->entry = e;
    req->sk = *sk;
    req->sequence = e->sequence + 1;
    e->timestamp = dmsg_disc_client_now(c);
    return started(req, put_round(req), err);
}
