/* dmsgctl's transport: libcurl's easy interface over the admin unix socket or TCP, and the
 * mapping of every failure to an exit status and a message that says what to do.
 *
 *   no answer (socket missing, refused, timeout, closed)    CTL_EXIT_UNREACHABLE
 *   socket or token file not accessible, 401, 403           CTL_EXIT_DENIED
 *   any other 4xx/5xx (a problem+json, or not)              CTL_EXIT_REFUSED */
#ifndef DMSGCTL_HTTP_H
#define DMSGCTL_HTTP_H

#include <stdio.h>

#include "dmsgctl.h"
#include "locate.h"
#include "util.h"

struct http_response {
    long status;
    struct strbuf body;
    char content_type[128];
    char www_authenticate[512];
};
void http_response_free(struct http_response *r);

/* Prepares a connection to t (reads the token file). NULL with *exit_code set and a message on
 * err when the token file cannot be used. */
struct ctl_conn *http_open(const struct ctl_target *t, long timeout_ms, FILE *err,
                           int *exit_code);
void http_close(struct ctl_conn *c);

/* Where the requests go, for messages: the socket path or the URL. */
const char *http_where(const struct ctl_conn *c);

/* One request; json_body (may be NULL) is sent as application/json. Returns 0 when dmsgd
 * answered (any status; resp filled), else reports why it could not be reached on err and
 * returns CTL_EXIT_UNREACHABLE or CTL_EXIT_DENIED. */
int http_request(struct ctl_conn *c, const char *method, const char *path,
                 const char *json_body, struct http_response *resp, FILE *err);

/* For an answer that is not 2xx: prints dmsgd's problem (detail, status, code) and a hint on
 * err and returns the exit status it maps to. */
int http_report_failure(const struct ctl_conn *c, const struct http_response *resp, FILE *err);

/* request + report: CTL_EXIT_OK with resp filled on 2xx, else the failure's exit status
 * (resp is freed then). */
int http_call(struct ctl *ctl, const char *method, const char *path, const char *json_body,
              struct http_response *resp);

/* http_call for a GET whose answer is text (Prometheus), with Accept: text/plain. */
int http_get_text(struct ctl *ctl, const char *path, struct http_response *resp);

/* A long GET whose body is handed over as it arrives (Server-Sent Events). on_data returns 0
 * to go on, anything else to stop (then returned as is). Returns CTL_EXIT_OK when the daemon
 * ended the stream, on_data's value when it stopped it, or the failure's exit status (a
 * non-2xx answer is reported like http_call). There is no overall timeout: the connection is
 * given up when nothing (not even a keepalive) arrives for max(45 s, --timeout). */
typedef int (*http_data_fn)(void *user, const char *data, size_t len);
int http_stream(struct ctl *ctl, const char *path, const char *accept, http_data_fn on_data,
                void *user);

#endif
