/* GET /health over DMSG port 80; see health_dmsg.h. */
#include "health_dmsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/wire.h"
#include "own_conn.h"

#define RESPONSE_MAX 1024

struct health_conn {
    struct own_conn *conn;
    health_dmsg_fill_fn fill;
    void *ctx;
    char head[HEALTH_DMSG_HEAD_MAX];
    size_t head_len;
    bool answered;
};

static const char *find_head_end(const char *head, size_t len)
{
    for (size_t i = 0; i + 4 <= len; i++)
        if (memcmp(head + i, "\r\n\r\n", 4) == 0)
            return head + i;
    return NULL;
}

static size_t status_response(int status, const char *reason, const char *body, char *out,
                              size_t cap)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, reason, strlen(body), body);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t health_dmsg_respond(const char *head, size_t head_len, const struct health_dmsg_info *info,
                           char *out, size_t cap)
{
    const char *end = find_head_end(head, head_len);
    const char *line_end;
    char body[512];
    size_t line_len;
    int n;

    if (end == NULL)
        return 0;
    line_end = memchr(head, '\r', (size_t)(end - head) + 1);
    line_len = (size_t)(line_end - head);
    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    if (line_len < 14 || memcmp(line_end - 9, " HTTP/1.", 8) != 0)
        return status_response(400, "Bad Request", "{\"error\":\"bad request\"}", out, cap);
    if (!(line_len == 20 && memcmp(head, "GET /health ", 12) == 0)) {
        const char *target = memchr(head, ' ', line_len);
        if (target != NULL && (size_t)(line_end - target) == 17 &&
            memcmp(target, " /health ", 9) == 0)
            return status_response(405, "Method Not Allowed",
                                   "{\"error\":\"method not allowed\"}", out, cap);
        return status_response(404, "Not Found", "{\"error\":\"not found\"}", out, cap);
    }
    n = snprintf(body, sizeof body,
                 "{\"build_info\":{\"version\":\"%s\",\"commit\":\"\",\"date\":\"\"},"
                 "\"started_at\":\"%s\",\"status\":\"ok\",\"uptime_s\":%llu,"
                 "\"sessions\":%llu,\"peers\":%llu,\"route_setup\":%s}",
                 info->version, info->started_at, (unsigned long long)info->uptime_s,
                 (unsigned long long)info->sessions, (unsigned long long)info->peers,
                 info->route_setup ? "true" : "false");
    if (n <= 0 || (size_t)n >= sizeof body)
        return 0;
    return status_response(200, "OK", body, out, cap);
}

static void on_data(struct own_conn *c, const uint8_t *data, size_t len, void *ctx)
{
    struct health_conn *h = ctx;
    struct health_dmsg_info info;
    char out[RESPONSE_MAX];
    size_t out_len;

    if (h->answered)
        return; /* one request per stream; the rest is ignored until the stream ends */
    if (len > sizeof h->head - h->head_len) {
        own_conn_reset(c);
        return;
    }
    memcpy(h->head + h->head_len, data, len);
    h->head_len += len;
    memset(&info, 0, sizeof info);
    h->fill(h->ctx, &info);
    out_len = health_dmsg_respond(h->head, h->head_len, &info, out, sizeof out);
    if (out_len == 0) {
        if (h->head_len == sizeof h->head)
            own_conn_reset(c);
        return;
    }
    h->answered = true;
    if (own_conn_write(c, (const uint8_t *)out, out_len) != 0 || own_conn_close(c) != 0)
        own_conn_reset(c);
}

static void on_eof(struct own_conn *c, void *ctx)
{
    struct health_conn *h = ctx;

    if (!h->answered)
        own_conn_reset(c);
}

static void on_close(struct own_conn *c, int err, void *ctx)
{
    (void)c;
    (void)err;
    free(ctx);
}

static const struct own_conn_callbacks health_cb = {on_data, on_eof, on_close};

uint16_t health_dmsg_accept(uv_loop_t *loop, const dmsg_identity *id,
                            const struct relay_own_request *req, health_dmsg_fill_fn fill,
                            void *ctx)
{
    struct health_conn *h = calloc(1, sizeof *h);
    uint16_t code;

    if (h == NULL)
        return DMSG_WIRE_REQ_NO_LISTENER;
    h->fill = fill;
    h->ctx = ctx;
    code = own_conn_accept(loop, id, req, &health_cb, h, &h->conn);
    if (code != 0)
        free(h);
    return code;
}
