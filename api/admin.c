/* The admin API's lifecycle: tokens, the unix and TCP listeners, closing; see admin.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "api.h"
#include "dmsg/error.h"
#include "dmsgd.h"
#include "mesh.h"

void admin_on_mesh_event(void *user, const struct mesh_event *ev);

static void on_request(void *user, struct dmsg_httpd_request *req)
{
    struct api_listener *l = user;
    api_dispatch(l, req);
}

/* The 413 libmicrohttpd sends for a body over the limit, before reading it. */
static int build_too_large(struct admin *a)
{
    a->too_large_body = api_problem_text(API_P_BODY_TOO_LARGE, 0,
                                         "request bodies are limited to 65536 bytes", NULL, NULL);
    if (!a->too_large_body)
        return DMSG_ENOMEM;
    a->too_large_headers[0].name = "Cache-Control";
    a->too_large_headers[0].value = "no-store";
    a->too_large.status = 413;
    a->too_large.content_type = API_PROBLEM_CONTENT_TYPE;
    a->too_large.body = a->too_large_body;
    a->too_large.body_len = strlen(a->too_large_body);
    a->too_large.headers = a->too_large_headers;
    a->too_large.header_count = 1;
    return 0;
}

static int start_listener(struct admin *a, struct api_listener *l, const char *unix_path,
                          const char *tcp_address, char *err, size_t err_cap)
{
    struct dmsg_httpd_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.unix_path = unix_path;
    cfg.tcp_address = tcp_address;
    cfg.unix_mode = 0660;
    cfg.max_connections = API_MAX_CONNECTIONS;
    cfg.max_connections_per_ip = API_MAX_CONNECTIONS_PER_IP;
    cfg.connection_timeout_s = API_CONNECTION_TIMEOUT_S;
    cfg.max_body_bytes = API_MAX_BODY_BYTES;
    cfg.max_stream_buffer = API_EVENT_BUFFER_BYTES;
    cfg.too_large = &a->too_large;
    cfg.handler = on_request;
    cfg.user = l;
    l->admin = a;
    l->tcp = tcp_address != NULL;
    int rc = dmsg_httpd_init(a->loop, &l->httpd, &cfg);
    if (rc != 0) {
        snprintf(err, err_cap, "admin API on %s: %s", unix_path ? unix_path : tcp_address,
                 dmsg_strerror(rc));
        l->httpd = NULL;
        return rc;
    }
    a->open_servers++;
    rc = dmsg_httpd_start(l->httpd);
    if (rc != 0)
        snprintf(err, err_cap, "admin API: %s", dmsg_httpd_last_error(l->httpd));
    return rc;
}

static void maybe_done(struct admin *a)
{
    if (a->open_servers > 0)
        return;
    void (*on_done)(void *arg) = a->on_done;
    void *arg = a->on_done_arg;
    free(a->too_large_body);
    dmsg_wipe(a->admin_token, sizeof a->admin_token);
    dmsg_wipe(a->read_token, sizeof a->read_token);
    free(a);
    if (on_done)
        on_done(arg);
}

static void on_httpd_closed(struct dmsg_httpd *httpd, void *arg)
{
    struct admin *a = arg;
    (void)httpd;
    a->open_servers--;
    if (a->closing)
        maybe_done(a);
}

static int socket_path(const struct dmsgd *d, char *out, size_t cap, char *err, size_t err_cap)
{
    if (d->cfg.admin_socket[0] != '\0')
        snprintf(out, cap, "%s", d->cfg.admin_socket);
    else
        snprintf(out, cap, "%s/%s", d->cfg.state_dir, ADMIN_SOCKET_NAME);
    struct sockaddr_un sun;
    if (strlen(out) >= sizeof sun.sun_path) {
        snprintf(err, err_cap, "admin socket path %s is longer than %zu bytes; set admin_socket"
                 " to a shorter path (e.g. /run/dmsgd/admin.sock)", out, sizeof sun.sun_path - 1);
        return DMSG_EINVAL;
    }
    return 0;
}

int admin_start(struct dmsgd *d, struct admin **out, char *err, size_t err_cap)
{
    *out = NULL;
    struct admin *a = calloc(1, sizeof *a);
    if (!a)
        return DMSG_ENOMEM;
    a->d = d;
    a->loop = &d->loop;
    int rc = api_tokens_load(d->cfg.state_dir, a->admin_token, a->read_token, err, err_cap);
    if (rc == 0)
        rc = build_too_large(a);
    if (rc == 0)
        rc = socket_path(d, a->socket_path, sizeof a->socket_path, err, err_cap);
    if (rc == 0)
        rc = start_listener(a, &a->unix_listener, a->socket_path, NULL, err, err_cap);
    if (rc == 0 && d->cfg.admin_address[0] != '\0')
        rc = start_listener(a, &a->tcp_listener, NULL, d->cfg.admin_address, err, err_cap);
    if (rc == 0 && d->mesh)
        a->mesh_subscribed = mesh_subscribe(d->mesh, admin_on_mesh_event, a) == 0;
    if (rc != 0) {
        admin_close(a, NULL, NULL);
        return rc;
    }
    *out = a;
    return 0;
}

void admin_close(struct admin *a, void (*on_done)(void *arg), void *arg)
{
    if (!a || a->closing)
        return;
    a->closing = true;
    a->on_done = on_done;
    a->on_done_arg = arg;
    if (a->mesh_subscribed && a->d->mesh)
        mesh_unsubscribe(a->d->mesh, admin_on_mesh_event, a);
    a->mesh_subscribed = false;
    api_events_close_all(a);
    struct api_listener *ls[2] = {&a->unix_listener, &a->tcp_listener};
    int to_close = a->open_servers;
    for (int i = 0; i < 2; i++) {
        if (ls[i]->httpd && !ls[i]->closed) {
            ls[i]->closed = true;
            dmsg_httpd_close(ls[i]->httpd, on_httpd_closed, a);
        }
    }
    if (to_close == 0)
        maybe_done(a);
}
