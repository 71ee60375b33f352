/* An HTTP/1.1 server on the libuv loop, built on libmicrohttpd without any extra thread.
 *
 * libmicrohttpd runs in "external epoll" mode: its epoll descriptor is watched by a uv_poll,
 * MHD_run() is called when it is readable, and a uv_timer is armed from MHD_get_timeout()
 * after every run. Everything, including the handler, runs on the loop thread.
 *
 * It listens on a TCP address or on a unix socket that it creates. The embedding module sees a
 * request once its whole body has been read (bodies over the configured limit are answered
 * 413 without being read) and answers it at once or later (deferred), or turns it into a
 * stream whose chunks it pushes from the loop (Server-Sent Events).
 *
 * Lifecycle follows libuv: init, start, stop, close with a callback that runs once every
 * handle is closed and the object is freed. Functions return 0 or a negative DMSG_E* code. */
#ifndef DMSG_HTTPD_H
#define DMSG_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct dmsg_httpd;
struct dmsg_httpd_request;
struct dmsg_httpd_stream;
struct dmsg_httpd_response;

/* Called on the loop thread for every complete request. It must do exactly one of:
 * dmsg_httpd_respond(), dmsg_httpd_stream_start() or dmsg_httpd_defer(); a handler that does
 * none of them gets a 500 sent on its behalf. */
typedef void (*dmsg_httpd_handler_fn)(void *user, struct dmsg_httpd_request *req);

struct dmsg_httpd_config {
    /* Exactly one of these. tcp_address is "host:port" with a numeric host ("127.0.0.1:0",
     * "[::1]:8080", ":8080" for every IPv4 address); port 0 picks a free port (see
     * dmsg_httpd_port). unix_path is created by the server: a stale socket left there is
     * removed, a live one or any other file is an error. */
    const char *tcp_address;
    const char *unix_path;
    unsigned unix_mode;                 /* permission bits of the socket; 0: 0660 */

    unsigned max_connections;           /* 0: 128; above it new connections wait in backlog */
    unsigned max_connections_per_ip;    /* TCP only; 0: no per-address limit */
    unsigned connection_timeout_s;      /* idle connections are closed after it; 0: 30 */
    size_t max_body_bytes;              /* larger bodies get 413; 0: 1 MiB */
    size_t max_stream_buffer;           /* bytes a stream may have unsent; 0: 256 KiB */
    unsigned stream_keepalive_ms;       /* idle streams get an SSE comment; 0: 15000 */
    /* The answer to a body over max_body_bytes (status is forced to 413); NULL: a plain-text
     * one. Its strings and body must stay valid for the server's life. */
    const struct dmsg_httpd_response *too_large;

    dmsg_httpd_handler_fn handler;
    void *user;
};

/* Allocates the server; nothing is bound until start. DMSG_EINVAL for a bad config. */
int dmsg_httpd_init(uv_loop_t *loop, struct dmsg_httpd **out, const struct dmsg_httpd_config *cfg);

/* Binds, listens and starts serving. DMSG_EEXIST: address in use (or a live unix socket or a
 * non-socket file at unix_path); DMSG_EPERM: not allowed; DMSG_EINVAL: malformed address;
 * DMSG_EIO otherwise. dmsg_httpd_last_error() then names the address and the cause. */
int dmsg_httpd_start(struct dmsg_httpd *httpd);

/* The bound TCP port once started (useful after port 0), else 0. */
uint16_t dmsg_httpd_port(const struct dmsg_httpd *httpd);

/* A one-line description of why the last start failed. */
const char *dmsg_httpd_last_error(const struct dmsg_httpd *httpd);

/* Stops listening and closes every connection: deferred requests get their abort callback,
 * streams their closed callback, the unix socket file is removed. Idempotent. */
void dmsg_httpd_stop(struct dmsg_httpd *httpd);

/* Stops if needed, closes the libuv handles and frees the server: on_close (may be NULL) runs
 * from the loop once every handle is closed, and the object is freed when it returns. */
typedef void (*dmsg_httpd_close_fn)(struct dmsg_httpd *httpd, void *arg);
void dmsg_httpd_close(struct dmsg_httpd *httpd, dmsg_httpd_close_fn on_close, void *arg);

/* ---- the request, valid until it is answered (or aborted) ---- */

const char *dmsg_httpd_request_method(const struct dmsg_httpd_request *req);
/* The path without the query string, percent-decoded. */
const char *dmsg_httpd_request_path(const struct dmsg_httpd_request *req);
/* A query argument's value ("" when given without '='), NULL when absent. */
const char *dmsg_httpd_request_query(const struct dmsg_httpd_request *req, const char *name);
/* Calls fn for every query argument in request order, a repeated name once per occurrence
 * (value "" when given without '='); a non-zero return stops the walk and is returned. */
typedef int (*dmsg_httpd_query_fn)(void *user, const char *name, const char *value);
int dmsg_httpd_request_query_foreach(const struct dmsg_httpd_request *req,
                                     dmsg_httpd_query_fn fn, void *user);
/* A header's value (name compared case-insensitively), NULL when absent. */
const char *dmsg_httpd_request_header(const struct dmsg_httpd_request *req, const char *name);
/* The body (never NULL; NUL-terminated for convenience) and its length. */
const char *dmsg_httpd_request_body(const struct dmsg_httpd_request *req, size_t *len);

struct dmsg_httpd_header {
    const char *name;
    const char *value;
};

struct dmsg_httpd_response {
    unsigned status;
    const char *content_type;           /* NULL: no Content-Type header */
    const void *body;                   /* copied; may be NULL when body_len is 0 */
    size_t body_len;
    const struct dmsg_httpd_header *headers; /* extra headers, copied */
    size_t header_count;
};

/* Sends the answer; from the handler, or later for a deferred request. req is invalid after
 * the call. DMSG_ESTATE: already answered; DMSG_ECLOSED: the server is stopping (req is then
 * freed as well); DMSG_ENOMEM. */
int dmsg_httpd_respond(struct dmsg_httpd_request *req, const struct dmsg_httpd_response *resp);

/* Called when a deferred request is dropped unanswered because the server stops; req is
 * invalid after it. */
typedef void (*dmsg_httpd_abort_fn)(void *user, struct dmsg_httpd_request *req);

/* From the handler: the answer comes later through dmsg_httpd_respond(). The connection is
 * parked meanwhile (libmicrohttpd cannot notice a client hanging up while parked). */
int dmsg_httpd_defer(struct dmsg_httpd_request *req, dmsg_httpd_abort_fn on_abort, void *user);

/* ---- streamed responses (Server-Sent Events) ---- */

/* Called exactly once when a stream is over: ended and drained, the client went away, it fell
 * too far behind, or the server stops. stream is invalid after it. */
typedef void (*dmsg_httpd_stream_closed_fn)(void *user, struct dmsg_httpd_stream *stream);

/* From the handler: answers req with a chunked response whose body is pushed later. req is
 * invalid after the call. content_type NULL means "text/event-stream" (with Cache-Control:
 * no-cache). */
int dmsg_httpd_stream_start(struct dmsg_httpd_request *req, unsigned status,
                            const char *content_type, const struct dmsg_httpd_header *headers,
                            size_t header_count, dmsg_httpd_stream_closed_fn on_closed,
                            void *user, struct dmsg_httpd_stream **out);

/* Queues bytes (copied). DMSG_ELIMIT when the unsent bytes would exceed max_stream_buffer
 * (nothing is queued; the client is too slow); DMSG_ECLOSED once the stream is ending. */
int dmsg_httpd_stream_push(struct dmsg_httpd_stream *stream, const void *data, size_t len);

/* Queues one Server-Sent Event: "event: <event>" (when event is not NULL) and one "data:" line
 * per line of data, then a blank line. event must not contain line breaks (DMSG_EINVAL). */
int dmsg_httpd_stream_event(struct dmsg_httpd_stream *stream, const char *event,
                            const char *data);

/* Ends the stream once what is queued has been sent; on_closed follows. */
int dmsg_httpd_stream_end(struct dmsg_httpd_stream *stream);

#endif
