/* Answers of the admin API: JSON, text and problems, every one counted by status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "dmsgd.h"
#include "store.h"
#include "validate.h"

const unsigned api_counted_statuses[API_STATUS_SLOTS] = {
    200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 422, 500, 503, 0, 0,
};

void api_count_status(struct admin *a, unsigned status)
{
    for (size_t i = 0; i < API_STATUS_SLOTS && api_counted_statuses[i]; i++) {
        if (api_counted_statuses[i] == status) {
            a->requests_by_status[i]++;
            return;
        }
    }
    a->requests_other_status++;
}

void admin_get_request_counts(const struct admin *a, unsigned *status, uint64_t *counts,
                              size_t cap)
{
    for (size_t i = 0; i < cap; i++) {
        status[i] = i < API_STATUS_SLOTS ? api_counted_statuses[i] : 0;
        counts[i] = a && i < API_STATUS_SLOTS ? a->requests_by_status[i] : 0;
    }
}

#define NO_STORE {"Cache-Control", "no-store"}

static void send_answer(struct api_req *r, unsigned status, const char *content_type, const char *body,
                 size_t len, const struct dmsg_httpd_header *extra, size_t n_extra)
{
    struct dmsg_httpd_header headers[4] = {NO_STORE};
    size_t n = 1;
    for (size_t i = 0; i < n_extra && n < 4; i++)
        headers[n++] = extra[i];
    struct dmsg_httpd_response resp = {
        .status = status,
        .content_type = content_type,
        .body = body,
        .body_len = len,
        .headers = headers,
        .header_count = n,
    };
    api_count_status(r->a, status);
    dmsg_httpd_respond(r->http, &resp);
    r->http = NULL;
}

void api_reply_json_headers(struct api_req *r, unsigned status, json_t *body,
                            const struct dmsg_httpd_header *headers, size_t n)
{
    if (!body) {
        if (status == 204) {
            send_answer(r, status, NULL, NULL, 0, headers, n);
            return;
        }
        /* A body that could not be built (json_pack failed): never a 2xx without one. */
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "could not build the answer");
        return;
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) {
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "out of memory serialising the answer");
        return;
    }
    send_answer(r, status, "application/json", text, strlen(text), headers, n);
    free(text);
}

void api_reply_json(struct api_req *r, unsigned status, json_t *body)
{
    api_reply_json_headers(r, status, body, NULL, 0);
}

void api_reply_text(struct api_req *r, unsigned status, const char *content_type,
                    const char *text, size_t len)
{
    send_answer(r, status, content_type, text, len, NULL, 0);
}

void api_problem_headers(struct api_req *r, enum api_problem p, unsigned status,
                         const struct dmsg_httpd_header *headers, size_t n, const char *detail)
{
    unsigned st = status ? status : api_problem_status(p);
    char *text = api_problem_text(p, st, detail, r->path, NULL);
    if (!text) {
        static const char fallback[] = "{\"code\":\"internal_error\",\"status\":500}";
        send_answer(r, 500, API_PROBLEM_CONTENT_TYPE, fallback, sizeof fallback - 1, NULL, 0);
        return;
    }
    send_answer(r, st, API_PROBLEM_CONTENT_TYPE, text, strlen(text), headers, n);
    free(text);
}

void api_problem(struct api_req *r, enum api_problem p, unsigned status, const char *field,
                 const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    unsigned st = status ? status : api_problem_status(p);
    char *text = api_problem_text(p, st, detail, r->path, field);
    if (!text) {
        static const char fallback[] = "{\"code\":\"internal_error\",\"status\":500}";
        send_answer(r, 500, API_PROBLEM_CONTENT_TYPE, fallback, sizeof fallback - 1, NULL, 0);
        return;
    }
    send_answer(r, st, API_PROBLEM_CONTENT_TYPE, text, strlen(text), NULL, 0);
    free(text);
}

void api_store_ok(struct api_req *r)
{
    r->a->store_failing = false;
}

void api_store_problem(struct api_req *r)
{
    r->a->store_failing = true;
    const struct store_error *e = store_last_error(r->d->store);
    log_warn(&r->d->log, "admin: store failure", "op=%s error=\"%s\"", r->op ? r->op->name : "-",
             e->message);
    api_problem(r, API_P_STORE_UNAVAILABLE, 0, NULL,
                "%s; the change was not applied (the relay keeps serving)", e->message);
}

json_t *api_json_time(int64_t unix_ms)
{
    char text[32];
    api_format_time(unix_ms, text);
    return json_string(text);
}

json_t *api_json_time_or_null(int64_t unix_ms)
{
    return unix_ms > 0 ? api_json_time(unix_ms) : json_null();
}

json_t *api_json_str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

int64_t api_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t api_wall_of_loop_ms(const struct admin *a, uint64_t loop_ms)
{
    uint64_t now_loop = uv_now(a->loop);
    int64_t now = api_now_ms();
    return loop_ms >= now_loop ? now : now - (int64_t)(now_loop - loop_ms);
}
