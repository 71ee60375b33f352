/* libmicrohttpd driven from the libuv loop; see include/dmsg/httpd.h.
 *
 * MHD runs with MHD_USE_EPOLL and no thread of its own: a uv_poll watches its epoll
 * descriptor, a uv_timer follows MHD_get_timeout(), and MHD_run() is only ever called from
 * those two callbacks, so handlers, responses and streams all live on the loop thread.
 * Parked connections (deferred answers, streams waiting for data) are suspended in MHD;
 * resuming one signals MHD's inter-thread channel, which is part of its epoll set, and we
 * also schedule an immediate run. */
#include "dmsg/httpd.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmsg/error.h"
#include "httpd_internal.h"
#include "listen_socket.h"

#define DEFAULT_MAX_CONNECTIONS 128
#define DEFAULT_CONNECTION_TIMEOUT_S 30
#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_MAX_STREAM_BUFFER (256 * 1024)
#define DEFAULT_KEEPALIVE_MS 15000
#define DEFAULT_UNIX_MODE 0660
#define LISTEN_BACKLOG 128

static void set_last_error(struct dmsg_httpd *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_last_error(struct dmsg_httpd *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->last_error, sizeof h->last_error, fmt, ap);
    va_end(ap);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    fprintf(stderr, "level=warn msg=\"httpd: %s\"\n", line);
}

/* ---- driving MHD from the loop ---- */

static void do_stop(struct dmsg_httpd *h);
static void do_close(struct dmsg_httpd *h);

static void on_run_timer(uv_timer_t *timer);

static void arm_run_timer(struct dmsg_httpd *h)
{
    MHD_UNSIGNED_LONG_LONG wait_ms = 0;
    if (h->run_again)
        uv_timer_start(&h->run_timer, on_run_timer, 0, 0);
    else if (MHD_get_timeout(h->mhd, &wait_ms) == MHD_YES)
        uv_timer_start(&h->run_timer, on_run_timer, (uint64_t)wait_ms, 0);
    else
        uv_timer_stop(&h->run_timer);
}

static unsigned connection_count(const struct dmsg_httpd *h)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info ? info->num_connections : 0;
}

/* Runs MHD once; the only place MHD_run is called. A stop or close requested by a callback
 * inside the run is carried out after it returns. */
static void run_mhd(struct dmsg_httpd *h)
{
    if (h->stopped || h->in_run)
        return;
    h->in_run = true;
    h->run_again = false;
    unsigned before = connection_count(h);
    MHD_run(h->mhd);
    /* MHD takes its listening socket out of its epoll set at the connection limit and only
     * puts it back at the start of a run: after a connection closed, nothing else would wake
     * us for the clients waiting in the backlog. */
    if (connection_count(h) < before)
        h->run_again = true;
    h->in_run = false;
    if (h->close_pending)
        do_close(h);
    else if (h->stop_pending)
        do_stop(h);
    else
        arm_run_timer(h);
}

static void on_run_timer(uv_timer_t *timer)
{
    run_mhd(timer->data);
}

static void on_epoll_readable(uv_poll_t *poll, int status, int events)
{
    (void)status; /* on error MHD_run still does its own bookkeeping */
    (void)events;
    run_mhd(poll->data);
}

/* Makes the loop run MHD soon, e.g. after a connection was resumed. */
void httpd_kick(struct dmsg_httpd *h)
{
    if (h->stopped)
        return;
    h->run_again = true;
    if (!h->in_run)
        uv_timer_start(&h->run_timer, on_run_timer, 0, 0);
}

/* ---- responses ---- */

static struct MHD_Response *make_response(const char *content_type, const void *body,
                                          size_t len, const struct dmsg_httpd_header *headers,
                                          size_t header_count)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body,
                                                             MHD_RESPMEM_MUST_COPY);
    if (!r)
        return NULL;
    bool ok = !content_type ||
              MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) == MHD_YES;
    for (size_t i = 0; ok && i < header_count; i++)
        ok = headers[i].name && headers[i].value &&
             MHD_add_response_header(r, headers[i].name, headers[i].value) == MHD_YES;
    if (!ok) {
        MHD_destroy_response(r);
        return NULL;
    }
    return r;
}

static enum MHD_Result queue_simple(struct MHD_Connection *conn, unsigned status,
                                    const char *text)
{
    struct MHD_Response *r = make_response("text/plain; charset=utf-8", text, strlen(text),
                                           NULL, 0);
    if (!r)
        return MHD_NO;
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result queue_too_large(struct dmsg_httpd *h, struct MHD_Connection *conn)
{
    const struct dmsg_httpd_response *tl = h->cfg.too_large;
    if (!tl)
        return queue_simple(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");
    struct MHD_Response *r = make_response(tl->content_type, tl->body, tl->body_len,
                                           tl->headers, tl->header_count);
    if (!r)
        return MHD_NO;
    enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_CONTENT_TOO_LARGE, r);
    MHD_destroy_response(r);
    return ok;
}

/* Hands a built response to MHD and wakes the connection if it was parked. */
int httpd_deliver(struct dmsg_httpd_request *req, unsigned status, struct MHD_Response *r)
{
    enum MHD_Result ok = MHD_queue_response(req->conn, status, r);
    MHD_destroy_response(r);
    if (ok != MHD_YES)
        return DMSG_ESTATE;
    if (req->state == REQ_DEFERRED)
        LIST_REMOVE(req->httpd->deferred, req);
    req->state = REQ_ANSWERED;
    if (req->suspended) {
        req->suspended = false;
        MHD_resume_connection(req->conn);
        httpd_kick(req->httpd);
    }
    return 0;
}

int httpd_check_answerable(const struct dmsg_httpd_request *req, unsigned status)
{
    if (req->state == REQ_ABORTED)
        return DMSG_ECLOSED;
    if (req->state != REQ_HANDLING && req->state != REQ_DEFERRED)
        return DMSG_ESTATE;
    if (status < 200 || status > 599)
        return DMSG_EINVAL;
    return 0;
}

int dmsg_httpd_respond(struct dmsg_httpd_request *req, const struct dmsg_httpd_response *resp)
{
    if (!req || !resp || (!resp->body && resp->body_len))
        return DMSG_EINVAL;
    int err = httpd_check_answerable(req, resp->status);
    if (err)
        return err;
    struct MHD_Response *r = make_response(resp->content_type, resp->body, resp->body_len,
                                           resp->headers, resp->header_count);
    if (!r)
        return DMSG_EINVAL; /* a header MHD refused (or out of memory) */
    return httpd_deliver(req, resp->status, r);
}

int dmsg_httpd_defer(struct dmsg_httpd_request *req, dmsg_httpd_abort_fn on_abort, void *user)
{
    if (!req)
        return DMSG_EINVAL;
    if (req->state != REQ_HANDLING)
        return DMSG_ESTATE;
    req->state = REQ_DEFERRED;
    req->on_abort = on_abort;
    req->abort_user = user;
    LIST_PUSH(req->httpd->deferred, req);
    return 0;
}

/* ---- the request callbacks ---- */

static struct dmsg_httpd_request *new_request(struct dmsg_httpd *h, struct MHD_Connection *conn,
                                              const char *url, const char *method)
{
    struct dmsg_httpd_request *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->httpd = h;
    req->conn = conn;
    req->path = url;
    req->method = method;
    req->state = REQ_READING;
    return req;
}

/* Refuses a declared body over the limit before any of it is read. */
static bool declared_too_big(struct dmsg_httpd *h, struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl)
        return false;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    return errno == ERANGE || (end != cl && n > h->cfg.max_body_bytes);
}

static enum MHD_Result take_body(struct dmsg_httpd_request *req, const char *data, size_t *size)
{
    size_t len = *size;
    *size = 0;
    if (req->state != REQ_READING)
        return MHD_YES;
    /* A chunked body has no declared length: once it passes the limit, drop the connection
     * rather than keep reading an unbounded upload to be able to answer. */
    if (len > req->httpd->cfg.max_body_bytes - req->body_len)
        return MHD_NO;
    if (req->body_len + len + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 1024;
        while (cap < req->body_len + len + 1)
            cap *= 2;
        char *grown = realloc(req->body, cap);
        if (!grown)
            return MHD_NO;
        req->body = grown;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, len);
    req->body_len += len;
    req->body[req->body_len] = '\0';
    return MHD_YES;
}

static enum MHD_Result dispatch(struct dmsg_httpd_request *req)
{
    struct dmsg_httpd *h = req->httpd;
    req->state = REQ_HANDLING;
    h->cfg.handler(h->cfg.user, req);
    if (req->state == REQ_HANDLING) {
        fprintf(stderr, "level=error msg=\"httpd: handler left %s %s unanswered\"\n",
                req->method, req->path);
        req->state = REQ_ANSWERED;
        return queue_simple(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                            "internal error: the request was not answered\n");
    }
    if (req->state == REQ_DEFERRED) {
        req->suspended = true;
        MHD_suspend_connection(req->conn);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct dmsg_httpd *h = cls;
    struct dmsg_httpd_request *req = *con_cls;
    (void)version;
    if (!req) {
        req = new_request(h, conn, url, method);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        if (declared_too_big(h, conn)) {
            req->state = REQ_REFUSED;
            return queue_too_large(h, conn);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0)
        return take_body(req, upload_data, upload_data_size);
    if (req->state == REQ_READING)
        return dispatch(req);
    return MHD_YES;
}

static void on_request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                                 enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct dmsg_httpd_request *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    if (req->state == REQ_DEFERRED) /* cannot happen while suspended; kept for safety */
        LIST_REMOVE(req->httpd->deferred, req);
    struct dmsg_httpd_stream *s = req->stream;
    if (s) {
        s->req = NULL;
        s->conn = NULL;
        httpd_stream_closed(s);
    }
    free(req->body);
    free(req);
}

/* ---- request accessors ---- */

const char *dmsg_httpd_request_method(const struct dmsg_httpd_request *req)
{
    return req->method;
}

const char *dmsg_httpd_request_path(const struct dmsg_httpd_request *req)
{
    return req->path;
}

const char *dmsg_httpd_request_query(const struct dmsg_httpd_request *req, const char *name)
{
    const char *value = NULL;
    size_t value_len = 0;
    if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name),
                                      &value, &value_len) != MHD_YES)
        return NULL;
    return value ? value : "";
}

struct query_walk {
    dmsg_httpd_query_fn fn;
    void *user;
    int result;
};

static enum MHD_Result on_query_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    struct query_walk *w = cls;
    (void)kind;
    w->result = w->fn(w->user, key ? key : "", value ? value : "");
    return w->result == 0 ? MHD_YES : MHD_NO;
}

int dmsg_httpd_request_query_foreach(const struct dmsg_httpd_request *req,
                                     dmsg_httpd_query_fn fn, void *user)
{
    struct query_walk w = {.fn = fn, .user = user, .result = 0};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, on_query_value, &w);
    return w.result;
}

const char *dmsg_httpd_request_header(const struct dmsg_httpd_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *dmsg_httpd_request_body(const struct dmsg_httpd_request *req, size_t *len)
{
    if (len)
        *len = req->body_len;
    return req->body ? req->body : "";
}

/* ---- lifecycle ---- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int dmsg_httpd_init(uv_loop_t *loop, struct dmsg_httpd **out, const struct dmsg_httpd_config *cfg)
{
    if (!loop || !out || !cfg || !cfg->handler)
        return DMSG_EINVAL;
    if ((cfg->tcp_address == NULL) == (cfg->unix_path == NULL))
        return DMSG_EINVAL;
    struct dmsg_httpd *h = calloc(1, sizeof *h);
    if (!h)
        return DMSG_ENOMEM;
    h->loop = loop;
    h->cfg = *cfg;
    h->tcp_address = dup_or_null(cfg->tcp_address);
    h->unix_path = dup_or_null(cfg->unix_path);
    if ((cfg->tcp_address && !h->tcp_address) || (cfg->unix_path && !h->unix_path)) {
        free(h->tcp_address);
        free(h->unix_path);
        free(h);
        return DMSG_ENOMEM;
    }
    struct dmsg_httpd_config *c = &h->cfg;
    c->tcp_address = h->tcp_address;
    c->unix_path = h->unix_path;
    if (!c->unix_mode)
        c->unix_mode = DEFAULT_UNIX_MODE;
    if (!c->max_connections)
        c->max_connections = DEFAULT_MAX_CONNECTIONS;
    if (!c->connection_timeout_s)
        c->connection_timeout_s = DEFAULT_CONNECTION_TIMEOUT_S;
    if (!c->max_body_bytes)
        c->max_body_bytes = DEFAULT_MAX_BODY;
    if (!c->max_stream_buffer)
        c->max_stream_buffer = DEFAULT_MAX_STREAM_BUFFER;
    if (!c->stream_keepalive_ms)
        c->stream_keepalive_ms = DEFAULT_KEEPALIVE_MS;
    uv_timer_init(loop, &h->run_timer);
    uv_timer_init(loop, &h->keepalive_timer);
    h->run_timer.data = h;
    h->keepalive_timer.data = h;
    h->open_handles = 2;
    *out = h;
    return 0;
}

static struct MHD_Daemon *start_mhd(struct dmsg_httpd *h, int listen_fd)
{
    unsigned per_ip = h->unix_path ? 0 : h->cfg.max_connections_per_ip;
    return MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, /* first, so that it gets every message */
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)h->cfg.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)h->cfg.connection_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_request_completed, h,
        MHD_OPTION_END);
}

static int start_polling(struct dmsg_httpd *h)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || info->epoll_fd < 0) {
        set_last_error(h, "libmicrohttpd has no epoll descriptor");
        return DMSG_EIO;
    }
    int rc = uv_poll_init(h->loop, &h->poll, info->epoll_fd);
    if (rc != 0) {
        set_last_error(h, "watching the HTTP server: %s", uv_strerror(rc));
        return DMSG_EIO;
    }
    h->poll.data = h;
    h->poll_initialized = true;
    h->open_handles++;
    uv_poll_start(&h->poll, UV_READABLE, on_epoll_readable);
    arm_run_timer(h);
    return 0;
}

int dmsg_httpd_start(struct dmsg_httpd *h)
{
    if (!h)
        return DMSG_EINVAL;
    if (h->started)
        return DMSG_ESTATE;
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) != MHD_YES) {
        set_last_error(h, "this libmicrohttpd was built without epoll support");
        return DMSG_EIO;
    }
    struct listen_socket *ls = &h->listener;
    int err = h->unix_path
                  ? listen_socket_unix(ls, h->unix_path, h->cfg.unix_mode, LISTEN_BACKLOG,
                                       h->last_error, sizeof h->last_error)
                  : listen_socket_tcp(ls, h->tcp_address, LISTEN_BACKLOG, h->last_error,
                                      sizeof h->last_error);
    if (err)
        return err;
    h->mhd = start_mhd(h, ls->fd); /* MHD owns the descriptor from here */
    if (!h->mhd) {
        set_last_error(h, "libmicrohttpd refused to start on %s",
                       h->unix_path ? h->unix_path : h->tcp_address);
        close(ls->fd);
        listen_socket_remove_file(ls);
        return DMSG_EIO;
    }
    h->started = true;
    err = start_polling(h);
    if (err)
        dmsg_httpd_stop(h);
    return err;
}

uint16_t dmsg_httpd_port(const struct dmsg_httpd *h)
{
    return h && h->started ? h->listener.port : 0;
}

const char *dmsg_httpd_last_error(const struct dmsg_httpd *h)
{
    return h ? h->last_error : "no server";
}

static void on_handle_closed(uv_handle_t *handle)
{
    struct dmsg_httpd *h = handle->data;
    if (--h->open_handles > 0)
        return;
    if (h->on_close) /* as in libuv: the callback still sees the object, then it is freed */
        h->on_close(h, h->close_arg);
    free(h->tcp_address);
    free(h->unix_path);
    free(h);
}

/* Lets every parked connection go so MHD can close it: deferred requests learn that no answer
 * is wanted any more, streams end. */
static void release_parked(struct dmsg_httpd *h)
{
    while (h->deferred) {
        struct dmsg_httpd_request *req = h->deferred;
        LIST_REMOVE(h->deferred, req);
        req->state = REQ_ABORTED;
        if (req->suspended) {
            req->suspended = false;
            MHD_resume_connection(req->conn);
        }
        if (req->on_abort)
            req->on_abort(req->abort_user, req);
    }
    for (struct dmsg_httpd_stream *s = h->streams; s; s = s->next) {
        s->ending = true;
        if (s->suspended && s->conn) {
            s->suspended = false;
            MHD_resume_connection(s->conn);
        }
    }
}

static void do_stop(struct dmsg_httpd *h)
{
    h->stop_pending = false;
    if (h->stopped || !h->started)
        return;
    h->stopped = true;
    uv_timer_stop(&h->run_timer);
    uv_timer_stop(&h->keepalive_timer);
    /* The poll handle must let go of the epoll descriptor before MHD closes it. */
    if (h->poll_initialized) {
        uv_poll_stop(&h->poll);
        uv_close((uv_handle_t *)&h->poll, on_handle_closed);
        h->poll_initialized = false;
    }
    release_parked(h);
    MHD_stop_daemon(h->mhd); /* closes connections (completion callbacks run) and the socket */
    h->mhd = NULL;
    while (h->streams) /* streams whose response MHD had not yet released */
        httpd_stream_closed(h->streams);
    listen_socket_remove_file(&h->listener);
}

void dmsg_httpd_stop(struct dmsg_httpd *h)
{
    if (!h)
        return;
    if (h->in_run) {
        h->stop_pending = true;
        return;
    }
    do_stop(h);
}

static void do_close(struct dmsg_httpd *h)
{
    h->close_pending = false;
    h->stopped = h->stopped || !h->started;
    if (!h->stopped)
        do_stop(h);
    h->stopped = true;
    uv_close((uv_handle_t *)&h->run_timer, on_handle_closed);
    uv_close((uv_handle_t *)&h->keepalive_timer, on_handle_closed);
}

void dmsg_httpd_close(struct dmsg_httpd *h, dmsg_httpd_close_fn on_close, void *arg)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    h->on_close = on_close;
    h->close_arg = arg;
    if (h->in_run) {
        h->close_pending = true;
        return;
    }
    do_close(h);
}
