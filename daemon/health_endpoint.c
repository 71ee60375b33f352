/* GET /health on health_endpoint_address; see health_endpoint.h. */
#include "health_endpoint.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dmsg/error.h"

static void handle(void *user, struct dmsg_httpd_request *req)
{
    struct health_endpoint *h = user;
    struct dmsg_httpd_response resp;
    char body[256];
    int n;

    memset(&resp, 0, sizeof resp);
    resp.content_type = "application/json";
    if (strcmp(dmsg_httpd_request_path(req), "/health") != 0) {
        static const char not_found[] = "{\"error\":\"not found\"}";
        resp.status = 404;
        resp.body = not_found;
        resp.body_len = sizeof not_found - 1;
    } else if (strcmp(dmsg_httpd_request_method(req), "GET") != 0) {
        static const char not_allowed[] = "{\"error\":\"method not allowed\"}";
        resp.status = 405;
        resp.body = not_allowed;
        resp.body_len = sizeof not_allowed - 1;
    } else {
        n = snprintf(body, sizeof body,
                     "{\"build_info\":{\"version\":\"%s\",\"commit\":\"\",\"date\":\"\"},"
                     "\"started_at\":\"%s\"}",
                     h->version, h->started_at);
        resp.status = 200;
        resp.body = body;
        resp.body_len = (size_t)n;
    }
    dmsg_httpd_respond(req, &resp);
}

int health_endpoint_start(struct health_endpoint *h, uv_loop_t *loop, const char *address,
                          const char *version, char *err, size_t err_cap)
{
    struct dmsg_httpd_config cfg;
    time_t now = time(NULL);
    struct tm tm;
    int rc;

    memset(h, 0, sizeof *h);
    h->version = version;
    gmtime_r(&now, &tm);
    strftime(h->started_at, sizeof h->started_at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    memset(&cfg, 0, sizeof cfg);
    cfg.tcp_address = address;
    cfg.max_connections = 16;
    cfg.max_connections_per_ip = 8;
    cfg.connection_timeout_s = 10;
    cfg.max_body_bytes = 1024;
    cfg.handler = handle;
    cfg.user = h;
    rc = dmsg_httpd_init(loop, &h->httpd, &cfg);
    if (rc != 0) {
        snprintf(err, err_cap, "health endpoint %s: %s", address, dmsg_strerror(rc));
        h->httpd = NULL;
        return rc;
    }
    rc = dmsg_httpd_start(h->httpd);
    if (rc != 0) {
        snprintf(err, err_cap, "health endpoint %s: %s", address,
                 dmsg_httpd_last_error(h->httpd));
        dmsg_httpd_close(h->httpd, NULL, NULL);
        h->httpd = NULL;
    }
    return rc;
}

static void on_httpd_closed(struct dmsg_httpd *httpd, void *arg)
{
    struct health_endpoint *h = arg;

    (void)httpd;
    h->httpd = NULL;
}

void health_endpoint_close(struct health_endpoint *h)
{
    if (h->httpd != NULL)
        dmsg_httpd_close(h->httpd, on_httpd_closed, h);
}
