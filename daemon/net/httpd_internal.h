/* What the parts of the HTTP server share: its objects and the few functions the request
 * side and the stream side call on each other. Private to daemon/net/httpd*.c. */
#ifndef DMSG_NET_HTTPD_INTERNAL_H
#define DMSG_NET_HTTPD_INTERNAL_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "dmsg/httpd.h"
#include "listen_socket.h"

#define STREAM_CHUNK 4096

enum req_state {
    REQ_READING,    /* body still arriving */
    REQ_REFUSED,    /* answered by us (413) before the body was read */
    REQ_HANDLING,   /* inside the handler */
    REQ_DEFERRED,   /* the handler will answer later; the connection is suspended */
    REQ_ANSWERED,
    REQ_ABORTED     /* the server stopped before a deferred answer came */
};

struct byte_queue {
    char *data;
    size_t off, len, cap;   /* unsent bytes are data[off, len) */
};

struct dmsg_httpd_request {
    struct dmsg_httpd *httpd;
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    char *body;
    size_t body_len;
    size_t body_cap;
    enum req_state state;
    bool suspended;
    dmsg_httpd_abort_fn on_abort;
    void *abort_user;
    struct dmsg_httpd_request *prev, *next;    /* in httpd->deferred */
    struct dmsg_httpd_stream *stream;
};

struct dmsg_httpd_stream {
    struct dmsg_httpd *httpd;
    struct MHD_Connection *conn;               /* NULL once the connection is gone */
    struct dmsg_httpd_request *req;            /* NULL once the request is completed */
    struct byte_queue queue;
    bool suspended;
    bool ending;
    bool closed;                               /* on_closed has run */
    bool active_since_tick;
    dmsg_httpd_stream_closed_fn on_closed;
    void *user;
    struct dmsg_httpd_stream *prev, *next;     /* in httpd->streams while open */
};

struct dmsg_httpd {
    uv_loop_t *loop;
    struct dmsg_httpd_config cfg;
    char *tcp_address;
    char *unix_path;
    struct MHD_Daemon *mhd;
    struct listen_socket listener;

    uv_poll_t poll;
    uv_timer_t run_timer;
    uv_timer_t keepalive_timer;
    int open_handles;
    bool poll_initialized;

    bool started;
    bool stopped;
    bool in_run;
    bool run_again;
    bool stop_pending;
    bool close_pending;
    bool closing;
    dmsg_httpd_close_fn on_close;
    void *close_arg;

    struct dmsg_httpd_request *deferred;
    struct dmsg_httpd_stream *streams;
    char last_error[256];
};

#define LIST_PUSH(head, item) do {                          \
        (item)->prev = NULL;                                \
        (item)->next = (head);                              \
        if (head) (head)->prev = (item);                    \
        (head) = (item);                                    \
    } while (0)

#define LIST_REMOVE(head, item) do {                        \
        if ((item)->prev) (item)->prev->next = (item)->next; \
        else (head) = (item)->next;                         \
        if ((item)->next) (item)->next->prev = (item)->prev; \
        (item)->prev = (item)->next = NULL;                 \
    } while (0)

/* Makes the loop run MHD soon, e.g. after a connection was resumed. */
void httpd_kick(struct dmsg_httpd *h);
/* 0 when req may still be answered with status; DMSG_ECLOSED, DMSG_ESTATE, DMSG_EINVAL. */
int httpd_check_answerable(const struct dmsg_httpd_request *req, unsigned status);
/* Hands a built response to MHD (dropping our reference) and wakes a parked connection. */
int httpd_deliver(struct dmsg_httpd_request *req, unsigned status, struct MHD_Response *r);
/* Announces the end of a stream once: unlists it and calls its on_closed. */
void httpd_stream_closed(struct dmsg_httpd_stream *s);

#endif
