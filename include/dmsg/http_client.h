/* Asynchronous HTTP client on a libuv loop: libcurl's multi interface driven by the loop's own
 * polls and one timer (curl_multi_socket_action), so no thread of ours ever runs. libcurl may
 * resolve names on a helper thread of its own (its threaded resolver); that thread never
 * touches loop state.
 *
 * The caller must call curl_global_init(CURL_GLOBAL_DEFAULT) once, before the first
 * dmsg_http_init and before any other thread exists, and curl_global_cleanup() at exit.
 *
 * Objects follow libuv's pattern: the caller owns the dmsg_http memory, calls init, and after
 * dmsg_http_close waits for the close callback before freeing it. Everything runs on the
 * loop's thread. Only http:// and https:// URLs are fetched and redirects are not followed. */
#ifndef DMSG_HTTP_CLIENT_H
#define DMSG_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define DMSG_HTTP_DEFAULT_TIMEOUT_MS 10000u
#define DMSG_HTTP_DEFAULT_MAX_RESPONSE (1u << 20) /* body bytes kept per response */

typedef struct dmsg_http dmsg_http;
typedef struct dmsg_http_req dmsg_http_req;

typedef struct dmsg_http_response {
    /* 0 when an HTTP answer arrived (whatever its status); else DMSG_ETIMEOUT (the request's
     * deadline passed), DMSG_ETOOBIG (the body exceeded the request's limit), DMSG_EIO (no
     * connection, reset, malformed HTTP...), DMSG_ENOMEM, or DMSG_ECLOSED (dmsg_http_close). */
    int err;
    long status;        /* HTTP status; 0 when err != 0 */
    const char *body;   /* NUL-terminated; valid only during the callback */
    size_t body_len;
    const char *detail; /* libcurl's words for a failure, "" otherwise; for logs */
} dmsg_http_response;

/* Called exactly once per request, unless the request is cancelled first. The callback may
 * start new requests, cancel others, or close the dmsg_http. */
typedef void (*dmsg_http_cb)(void *ctx, const dmsg_http_response *res);
typedef void (*dmsg_http_close_cb)(dmsg_http *http);

typedef struct dmsg_http_request_opts {
    const char *method;       /* "GET", "POST", "DELETE", ... */
    const char *url;
    const char *body;         /* NULL for none; copied */
    size_t body_len;
    const char *content_type; /* sent as Content-Type when non-NULL */
    uint64_t timeout_ms;      /* whole exchange, connect included; 0 = the default */
    size_t max_response;      /* 0 = DMSG_HTTP_DEFAULT_MAX_RESPONSE */
} dmsg_http_request_opts;

/* Private: in the header so that callers can embed the object. */
struct dmsg_http {
    uv_loop_t *loop;
    void *multi;              /* CURLM * */
    uv_timer_t timer;
    struct dmsg_http_req *reqs;
    struct http_poll *polls;
    unsigned open_handles;    /* uv handles not yet closed */
    unsigned dispatching;     /* > 0 while completion callbacks run */
    bool closing;
    bool torn_down;
    dmsg_http_close_cb close_cb;
    void *data;               /* free for the caller */
};

/* 0, DMSG_ENOMEM, or DMSG_EIO when libuv or libcurl refuse. */
int dmsg_http_init(dmsg_http *http, uv_loop_t *loop);

/* Starts a request. Returns its handle (for dmsg_http_cancel; it stays valid until the callback
 * returns or the request is cancelled), or NULL with *err set: DMSG_EINVAL (bad arguments),
 * DMSG_ECLOSED (closing), DMSG_ENOMEM, DMSG_EIO. */
dmsg_http_req *dmsg_http_request(dmsg_http *http, const dmsg_http_request_opts *opts,
                                 dmsg_http_cb cb, void *ctx, int *err);

/* Abandons a request: its callback will not be called. */
void dmsg_http_cancel(dmsg_http_req *req);

/* Fails every pending request with DMSG_ECLOSED (their callbacks run before this returns),
 * then releases libcurl and the loop handles; close_cb (may be NULL) runs once everything is
 * closed, from the loop. */
void dmsg_http_close(dmsg_http *http, dmsg_http_close_cb close_cb);

#endif
