/* What the files of the admin API share: the admin object, the request being handled, the
 * route table's entries and the reply helpers. Private to api/. */
#ifndef DMSGD_API_API_H
#define DMSGD_API_API_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "admin.h"
#include "body.h"
#include "dmsg/httpd.h"
#include "problem.h"

#define API_TOKEN_HEX_LEN 64
#define API_MAX_BODY_BYTES 65536
#define API_MAX_CONNECTIONS 16
#define API_MAX_CONNECTIONS_PER_IP 8
#define API_CONNECTION_TIMEOUT_S 10
#define API_EVENT_BUFFER_BYTES (256 * 1024)
#define API_MAX_SUBSCRIBERS 64

enum api_scope { API_SCOPE_READ = 0, API_SCOPE_ADMIN };

struct api_req;
typedef void (*api_handler_fn)(struct api_req *r);

/* One operation of the contract: a method on a path. */
struct api_op {
    const char *method;
    const char *name;                 /* operationId, for logs */
    enum api_scope scope;
    api_handler_fn handler;
    const char *const *query;         /* the query parameters it defines, NULL-terminated */
    const struct api_field *fields;   /* request body members; NULL: no body */
    size_t n_fields;
};

/* A path: literal, or a prefix followed by one parameter segment ("/v1/peers/{public_key}"). */
struct api_route {
    const char *path;                 /* the literal path, or the prefix ending in '/' */
    bool has_param;
    const struct api_op *ops;
    size_t n_ops;
};

enum api_event_type {
    API_EV_SESSION_UP = 0,
    API_EV_SESSION_DOWN,
    API_EV_STREAM_OPEN,
    API_EV_STREAM_CLOSE,
    API_EV_PEER_LINK,
    API_EV_ROUTE_SETUP,
    API_EV_COUNT
};

struct api_sub;

/* The status codes counted in dmsgd_admin_requests_total (present from the start). */
#define API_STATUS_SLOTS 16
extern const unsigned api_counted_statuses[API_STATUS_SLOTS];

struct api_listener {
    struct admin *admin;
    struct dmsg_httpd *httpd;
    bool tcp;
    bool closed;
};

struct admin {
    struct dmsgd *d;
    uv_loop_t *loop;
    struct api_listener unix_listener;
    struct api_listener tcp_listener;
    char socket_path[1100];
    char admin_token[API_TOKEN_HEX_LEN + 1];
    char read_token[API_TOKEN_HEX_LEN + 1];
    struct dmsg_httpd_response too_large;
    char *too_large_body;
    struct dmsg_httpd_header too_large_headers[1];

    struct api_sub *subs;
    size_t n_subs;
    uint64_t event_seq;
    bool mesh_subscribed;

    bool store_failing;               /* the last store operation of a handler failed */
    uint64_t requests_by_status[API_STATUS_SLOTS];
    uint64_t requests_other_status;

    bool closing;
    int open_servers;
    void (*on_done)(void *arg);
    void *on_done_arg;
};

/* The request being handled. */
struct api_req {
    struct admin *a;
    struct dmsgd *d;
    struct dmsg_httpd_request *http;
    const char *method;
    const char *path;
    const struct api_op *op;
    enum api_scope scope;             /* what the caller may do */
    char param[128];                  /* the path parameter, "" when none */
    json_t *body;                     /* the parsed body, NULL when none */
};

/* ---- router.c ---- */

/* Finds the operation for method and path. 0 with *op and param set; API_P_NOT_FOUND; or
 * API_P_METHOD_NOT_ALLOWED with allow set to the defined methods ("GET, POST"). */
int api_route_find(const char *method, const char *path, const struct api_op **op, char *param,
                   size_t param_cap, char *allow, size_t allow_cap);
/* Checks the query against op->query: an unknown or repeated name is invalid_query. */
int api_check_query(struct api_req *r);
/* Runs the checks of api/openapi.yaml "Order of checks" and then the handler. */
void api_dispatch(struct api_listener *l, struct dmsg_httpd_request *http);

/* ---- auth.c ---- */

/* Writes the token files when missing (0600, never overwritten) and reads both. */
int api_tokens_load(const char *state_dir, char admin_token[API_TOKEN_HEX_LEN + 1],
                    char read_token[API_TOKEN_HEX_LEN + 1], char *err, size_t err_cap);
enum api_auth_result {
    API_AUTH_ADMIN = 0,
    API_AUTH_READ,
    API_AUTH_MISSING,                 /* no Authorization header */
    API_AUTH_MALFORMED,               /* not "Bearer <b64token>" */
    API_AUTH_INVALID                  /* a token that is neither */
};
enum api_auth_result api_authenticate(const char *authorization, const char *admin_token,
                                      const char *read_token);

/* ---- replies (reply.c) ---- */

/* Sends body (stolen; NULL sends no body) as application/json. */
void api_reply_json(struct api_req *r, unsigned status, json_t *body);
/* Like api_reply_json with extra headers. */
void api_reply_json_headers(struct api_req *r, unsigned status, json_t *body,
                            const struct dmsg_httpd_header *headers, size_t n);
void api_reply_text(struct api_req *r, unsigned status, const char *content_type,
                    const char *text, size_t len);
/* A problem; status 0: the code's default. */
void api_problem(struct api_req *r, enum api_problem p, unsigned status, const char *field,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same with extra headers (WWW-Authenticate, Allow). */
void api_problem_headers(struct api_req *r, enum api_problem p, unsigned status,
                         const struct dmsg_httpd_header *headers, size_t n, const char *detail);
/* 503 store_unavailable naming the store's last error, and counts it. */
void api_store_problem(struct api_req *r);
/* A handler's store operation succeeded (health shows the store as ok again). */
void api_store_ok(struct api_req *r);
/* Counts an answer in dmsgd_admin_requests_total. */
void api_count_status(struct admin *a, unsigned status);

/* Helpers for JSON bodies. */
json_t *api_json_time(int64_t unix_ms);            /* RFC 3339 string */
json_t *api_json_time_or_null(int64_t unix_ms);    /* null for 0 */
json_t *api_json_str_or_null(const char *s);       /* null for NULL or "" */
int64_t api_now_ms(void);                          /* wall clock */
/* Wall-clock time of a loop timestamp (uv_now). */
int64_t api_wall_of_loop_ms(const struct admin *a, uint64_t loop_ms);

/* ---- handlers, one file per noun ---- */

void api_get_health(struct api_req *r);            /* h_daemon.c */
void api_get_info(struct api_req *r);
void api_list_peers(struct api_req *r);            /* h_peers.c */
void api_add_peer(struct api_req *r);
void api_get_peer(struct api_req *r);
void api_remove_peer(struct api_req *r);
void api_get_mesh(struct api_req *r);              /* h_mesh.c */
void api_get_route_setup(struct api_req *r);       /* h_route_setup.c */
void api_set_route_setup(struct api_req *r);
void api_list_route_setups(struct api_req *r);
void api_get_route_setup_record(struct api_req *r);
void api_list_sessions(struct api_req *r);         /* h_sessions.c */
void api_get_session(struct api_req *r);
void api_kick_session(struct api_req *r);
void api_list_streams(struct api_req *r);          /* h_streams.c */
void api_follow_events(struct api_req *r);         /* events.c */
void api_get_metrics(struct api_req *r);           /* h_metrics.c */
void api_get_stats(struct api_req *r);

/* Peers in the JSON shape of the contract (h_peers.c; also /v1/mesh). */
struct mesh_peer_info;
json_t *api_peer_json(const struct mesh_peer_info *p);
/* Streams in the contract's shape (h_streams.c; also /v1/sessions/{pk}). */
json_t *api_stream_json(const struct admin *a, const struct relay_link_info *l);

/* ---- events.c ---- */

/* Queues one event (data is stolen; its "type" and "at" are added) for every subscriber. */
void api_publish(struct admin *a, enum api_event_type type, json_t *data);
/* Ends every event stream (admin_close). */
void api_events_close_all(struct admin *a);
const char *api_event_name(enum api_event_type t);

#endif
