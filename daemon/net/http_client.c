/* libcurl multi on a libuv loop: curl says which sockets to watch (socket callback → uv_poll)
 * and when to wake it (timer callback → uv_timer); the loop tells curl what happened
 * (curl_multi_socket_action). Completed transfers are collected after every action. */
#include "dmsg/http_client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"

struct dmsg_http_req {
    dmsg_http *http;
    CURL *easy;
    struct curl_slist *headers;
    dmsg_http_cb cb;
    void *ctx;
    char *body;
    size_t len, cap, max;
    bool overflow;   /* the body passed max */
    bool nomem;      /* the body could not grow */
    bool completing; /* its callback is running: cancel is a no-op */
    char detail[CURL_ERROR_SIZE];
    struct dmsg_http_req *prev, *next;
};

struct http_poll {
    dmsg_http *http;
    uv_poll_t handle;
    struct http_poll *prev, *next;
};

/* ---------------------------------------------------------------------------------------------
 * Handle bookkeeping */

static void maybe_closed(dmsg_http *h)
{
    if (h->torn_down && h->open_handles == 0 && h->close_cb) {
        dmsg_http_close_cb cb = h->close_cb;
        h->close_cb = NULL;
        cb(h);
    }
}

static void on_handle_closed(uv_handle_t *handle)
{
    dmsg_http *h = handle->data;
    h->open_handles--;
    maybe_closed(h);
}

static void on_poll_closed(uv_handle_t *handle)
{
    struct http_poll *p = handle->data;
    dmsg_http *h = p->http;
    free(p);
    h->open_handles--;
    maybe_closed(h);
}

static void poll_close(struct http_poll *p)
{
    dmsg_http *h = p->http;
    if (p->prev)
        p->prev->next = p->next;
    else
        h->polls = p->next;
    if (p->next)
        p->next->prev = p->prev;
    uv_close((uv_handle_t *)&p->handle, on_poll_closed);
}

static void req_unlink(dmsg_http_req *req)
{
    dmsg_http *h = req->http;
    if (req->prev)
        req->prev->next = req->next;
    else
        h->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

static void req_free(dmsg_http_req *req)
{
    if (req->easy) {
        if (req->http->multi)
            curl_multi_remove_handle(req->http->multi, req->easy);
        curl_easy_cleanup(req->easy);
    }
    curl_slist_free_all(req->headers);
    free(req->body);
    free(req);
}

/* ---------------------------------------------------------------------------------------------
 * Completion */

static int result_error(const dmsg_http_req *req, CURLcode rc)
{
    switch (rc) {
    case CURLE_OK: return 0;
    case CURLE_OPERATION_TIMEDOUT: return DMSG_ETIMEOUT;
    case CURLE_FILESIZE_EXCEEDED: return DMSG_ETOOBIG;
    case CURLE_OUT_OF_MEMORY: return DMSG_ENOMEM;
    case CURLE_WRITE_ERROR:
        if (req->overflow)
            return DMSG_ETOOBIG;
        return req->nomem ? DMSG_ENOMEM : DMSG_EIO;
    default: return DMSG_EIO;
    }
}

/* Unlinks req, reports err/rc to its owner and frees it. */
static void complete(dmsg_http_req *req, int err)
{
    dmsg_http_response res = {.err = err, .body = "", .detail = ""};
    if (err == 0) {
        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &res.status);
        res.body = req->body ? req->body : "";
        res.body_len = req->len;
    } else if (err != DMSG_ECLOSED) {
        res.detail = req->detail;
    }
    req_unlink(req);
    req->completing = true;
    req->cb(req->ctx, &res);
    req_free(req);
}

static void collect_done(dmsg_http *h)
{
    CURLMsg *msg;
    int left;
    while (!h->closing && (msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        dmsg_http_req *req = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
        CURLcode rc = msg->data.result;
        if (rc != CURLE_OK && !req->detail[0])
            snprintf(req->detail, sizeof req->detail, "%s", curl_easy_strerror(rc));
        complete(req, result_error(req, rc));
    }
}

static void teardown(dmsg_http *h);

static void drive(dmsg_http *h, curl_socket_t fd, int flags)
{
    int running;
    h->dispatching++;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    collect_done(h);
    h->dispatching--;
    if (h->closing && !h->dispatching && !h->torn_down)
        teardown(h);
}

/* ---------------------------------------------------------------------------------------------
 * What curl asks of the loop */

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct http_poll *p = handle->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)handle, &fd) == 0)
        drive(p->http, (curl_socket_t)fd, flags);
}

static void on_timer(uv_timer_t *timer)
{
    drive(timer->data, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    dmsg_http *h = userp;
    struct http_poll *p = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (p) {
            poll_close(p);
            if (!h->torn_down)
                curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p)
            return -1;
        if (uv_poll_init_socket(h->loop, &p->handle, fd) < 0) {
            free(p);
            return -1;
        }
        p->http = h;
        p->handle.data = p;
        p->next = h->polls;
        if (p->next)
            p->next->prev = p;
        h->polls = p;
        h->open_handles++;
        curl_multi_assign(h->multi, fd, p);
    }
    int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    return uv_poll_start(&p->handle, events, on_poll) == 0 ? 0 : -1;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    dmsg_http *h = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else if (!h->torn_down)
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    dmsg_http_req *req = userp;
    size_t bytes = size * n;
    if (bytes > req->max - req->len) {
        req->overflow = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (req->len + bytes + 1 > req->cap) {
        size_t cap = req->cap ? req->cap : 1024;
        while (cap < req->len + bytes + 1)
            cap *= 2;
        if (cap > req->max + 1)
            cap = req->max + 1;
        char *grown = realloc(req->body, cap);
        if (!grown) {
            req->nomem = true;
            return 0;
        }
        req->body = grown;
        req->cap = cap;
    }
    memcpy(req->body + req->len, data, bytes);
    req->len += bytes;
    req->body[req->len] = '\0';
    return bytes;
}

/* ---------------------------------------------------------------------------------------------
 * Public API */

int dmsg_http_init(dmsg_http *h, uv_loop_t *loop)
{
    memset(h, 0, sizeof *h);
    h->loop = loop;
    CURLM *multi = curl_multi_init();
    if (!multi)
        return DMSG_ENOMEM;
    if (uv_timer_init(loop, &h->timer) < 0) {
        curl_multi_cleanup(multi);
        return DMSG_EIO;
    }
    h->timer.data = h;
    h->open_handles = 1;
    h->multi = multi;
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, h);
    return 0;
}

static int configure(dmsg_http_req *req, const dmsg_http_request_opts *o)
{
    CURL *e = req->easy;
    bool ok = curl_easy_setopt(e, CURLOPT_URL, o->url) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                               (long)(o->timeout_ms ? o->timeout_ms
                                                    : DMSG_HTTP_DEFAULT_TIMEOUT_MS)) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEDATA, req) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PRIVATE, req) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->detail) == CURLE_OK;
    if (!ok)
        return DMSG_EINVAL;
    if (o->body) {
        curl_off_t size = (curl_off_t)o->body_len;
        ok = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, size) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body) == CURLE_OK;
        if (ok && strcmp(o->method, "POST") != 0)
            ok = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method) == CURLE_OK;
    } else if (strcmp(o->method, "GET") == 0) {
        ok = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
    } else {
        ok = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method) == CURLE_OK;
    }
    if (!ok)
        return DMSG_ENOMEM;
    /* No "Expect: 100-continue" round trip, and no form Content-Type curl would invent. */
    char type[256];
    int n = o->content_type ? snprintf(type, sizeof type, "Content-Type: %s", o->content_type)
                            : snprintf(type, sizeof type, "Content-Type:");
    if (n < 0 || (size_t)n >= sizeof type)
        return DMSG_EINVAL;
    struct curl_slist *h1 = curl_slist_append(NULL, "Expect:");
    struct curl_slist *h2 = h1 ? curl_slist_append(h1, type) : NULL;
    if (!h2) {
        curl_slist_free_all(h1);
        return DMSG_ENOMEM;
    }
    req->headers = h2;
    return curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers) == CURLE_OK ? 0 : DMSG_ENOMEM;
}

dmsg_http_req *dmsg_http_request(dmsg_http *h, const dmsg_http_request_opts *o, dmsg_http_cb cb,
                                 void *ctx, int *err)
{
    if (!o || !o->method || !o->url || !cb) {
        *err = DMSG_EINVAL;
        return NULL;
    }
    if (h->closing) {
        *err = DMSG_ECLOSED;
        return NULL;
    }
    dmsg_http_req *req = calloc(1, sizeof *req);
    if (!req || !(req->easy = curl_easy_init())) {
        free(req);
        *err = DMSG_ENOMEM;
        return NULL;
    }
    req->http = h;
    req->cb = cb;
    req->ctx = ctx;
    req->max = o->max_response ? o->max_response : DMSG_HTTP_DEFAULT_MAX_RESPONSE;
    int rc = configure(req, o);
    if (rc == 0 && curl_multi_add_handle(h->multi, req->easy) != CURLM_OK)
        rc = DMSG_EIO;
    if (rc < 0) {
        curl_easy_cleanup(req->easy);
        req->easy = NULL;
        req_free(req);
        *err = rc;
        return NULL;
    }
    req->next = h->reqs;
    if (req->next)
        req->next->prev = req;
    h->reqs = req;
    *err = 0;
    return req;
}

void dmsg_http_cancel(dmsg_http_req *req)
{
    if (!req || req->completing)
        return;
    req_unlink(req);
    req_free(req);
}

static void teardown(dmsg_http *h)
{
    h->torn_down = true;
    curl_multi_cleanup(h->multi); /* may still report sockets to remove */
    h->multi = NULL;
    while (h->polls)
        poll_close(h->polls);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
}

void dmsg_http_close(dmsg_http *h, dmsg_http_close_cb close_cb)
{
    if (h->closing)
        return;
    h->closing = true;
    h->close_cb = close_cb;
    while (h->reqs)
        complete(h->reqs, DMSG_ECLOSED);
    if (!h->dispatching)
        teardown(h);
}
