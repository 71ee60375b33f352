/* The route table of api/openapi.yaml and the checks every request passes, in the contract's
 * order ("Order of checks"), before its handler runs. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "dmsgd.h"

/* ---- the contract ---- */

static const char *const q_none[] = {NULL};
static const char *const q_sessions[] = {"limit", "after", "kind", "pk", "remote", "min_streams",
                                         NULL};
static const char *const q_streams[] = {"limit", "after", "pk", "path", NULL};
static const char *const q_route_setups[] = {"limit", "before", "state", "requester", NULL};
static const char *const q_events[] = {"types", NULL};
static const char *const q_stats[] = {"since", "series", NULL};

static const struct api_field peer_create_fields[] = {
    {"public_key", API_FIELD_STRING, true},
    {"address", API_FIELD_STRING, true},
    {"note", API_FIELD_STRING, false},
};
static const struct api_field route_setup_fields[] = {
    {"enabled", API_FIELD_BOOL, true},
};

#define OP(m, n, s, h, q) {m, n, s, h, q, NULL, 0}
#define OP_BODY(m, n, s, h, f) {m, n, s, h, q_none, f, sizeof f / sizeof f[0]}
#define ROUTE(p, param, ops) {p, param, ops, sizeof ops / sizeof ops[0]}

static const struct api_op health_ops[] = {
    OP("GET", "getHealth", API_SCOPE_READ, api_get_health, q_none)};
static const struct api_op info_ops[] = {
    OP("GET", "getInfo", API_SCOPE_READ, api_get_info, q_none)};
static const struct api_op peers_ops[] = {
    OP("GET", "listPeers", API_SCOPE_READ, api_list_peers, q_none),
    OP_BODY("POST", "addPeer", API_SCOPE_ADMIN, api_add_peer, peer_create_fields)};
static const struct api_op peer_ops[] = {
    OP("GET", "getPeer", API_SCOPE_READ, api_get_peer, q_none),
    OP("DELETE", "removePeer", API_SCOPE_ADMIN, api_remove_peer, q_none)};
static const struct api_op mesh_ops[] = {
    OP("GET", "getMesh", API_SCOPE_READ, api_get_mesh, q_none)};
static const struct api_op route_setup_ops[] = {
    OP("GET", "getRouteSetup", API_SCOPE_READ, api_get_route_setup, q_none),
    OP_BODY("PUT", "setRouteSetup", API_SCOPE_ADMIN, api_set_route_setup, route_setup_fields)};
static const struct api_op route_setups_ops[] = {
    OP("GET", "listRouteSetups", API_SCOPE_READ, api_list_route_setups, q_route_setups)};
static const struct api_op route_setup_record_ops[] = {
    OP("GET", "getRouteSetupRecord", API_SCOPE_READ, api_get_route_setup_record, q_none)};
static const struct api_op sessions_ops[] = {
    OP("GET", "listSessions", API_SCOPE_READ, api_list_sessions, q_sessions)};
static const struct api_op session_ops[] = {
    OP("GET", "getSession", API_SCOPE_READ, api_get_session, q_none),
    OP("DELETE", "kickSession", API_SCOPE_ADMIN, api_kick_session, q_none)};
static const struct api_op streams_ops[] = {
    OP("GET", "listStreams", API_SCOPE_READ, api_list_streams, q_streams)};
static const struct api_op events_ops[] = {
    OP("GET", "followEvents", API_SCOPE_READ, api_follow_events, q_events)};
static const struct api_op stats_ops[] = {
    OP("GET", "getStats", API_SCOPE_READ, api_get_stats, q_stats)};
static const struct api_op metrics_v1_ops[] = {
    OP("GET", "getMetricsV1", API_SCOPE_READ, api_get_metrics, q_none)};
static const struct api_op metrics_ops[] = {
    OP("GET", "getMetrics", API_SCOPE_READ, api_get_metrics, q_none)};

static const struct api_route routes[] = {
    ROUTE("/v1/health", false, health_ops),
    ROUTE("/v1/info", false, info_ops),
    ROUTE("/v1/peers", false, peers_ops),
    ROUTE("/v1/peers/", true, peer_ops),
    ROUTE("/v1/mesh", false, mesh_ops),
    ROUTE("/v1/route-setup", false, route_setup_ops),
    ROUTE("/v1/route-setups", false, route_setups_ops),
    ROUTE("/v1/route-setups/", true, route_setup_record_ops),
    ROUTE("/v1/sessions", false, sessions_ops),
    ROUTE("/v1/sessions/", true, session_ops),
    ROUTE("/v1/streams", false, streams_ops),
    ROUTE("/v1/events", false, events_ops),
    ROUTE("/v1/stats", false, stats_ops),
    ROUTE("/v1/metrics", false, metrics_v1_ops),
    ROUTE("/metrics", false, metrics_ops),
};

/* ---- matching ---- */

static const struct api_route *match_path(const char *path, const char **param)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct api_route *rt = &routes[i];
        size_t n = strlen(rt->path);
        if (!rt->has_param) {
            if (strcmp(path, rt->path) == 0)
                return rt;
            continue;
        }
        if (strncmp(path, rt->path, n) == 0 && path[n] != '\0' && !strchr(path + n, '/')) {
            *param = path + n;
            return rt;
        }
    }
    return NULL;
}

int api_route_find(const char *method, const char *path, const struct api_op **op, char *param,
                   size_t param_cap, char *allow, size_t allow_cap)
{
    const char *p = NULL;
    const struct api_route *rt = match_path(path ? path : "", &p);
    *op = NULL;
    if (param_cap)
        param[0] = '\0';
    if (allow_cap)
        allow[0] = '\0';
    if (!rt)
        return API_P_NOT_FOUND;
    for (size_t i = 0; i < rt->n_ops; i++) {
        if (method && strcmp(method, rt->ops[i].method) == 0) {
            *op = &rt->ops[i];
            if (p && param_cap)
                snprintf(param, param_cap, "%s", p);
            return 0;
        }
    }
    size_t used = 0;
    for (size_t i = 0; i < rt->n_ops && used < allow_cap; i++) {
        int n = snprintf(allow + used, allow_cap - used, "%s%s", i ? ", " : "",
                         rt->ops[i].method);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return API_P_METHOD_NOT_ALLOWED;
}

/* ---- query parameters ---- */

struct query_check {
    const char *const *allowed;
    const char *seen[8];
    size_t n_seen;
    char bad[80];
    bool repeated;
};

static int on_query_arg(void *user, const char *name, const char *value)
{
    struct query_check *qc = user;
    (void)value;
    bool known = false;
    for (const char *const *q = qc->allowed; *q; q++)
        if (strcmp(*q, name) == 0)
            known = true;
    for (size_t i = 0; known && i < qc->n_seen; i++) {
        if (strcmp(qc->seen[i], name) == 0) {
            qc->repeated = true;
            known = false;
        }
    }
    if (!known) {
        size_t j = 0;
        for (size_t i = 0; name[i] && j + 1 < sizeof qc->bad; i++) {
            unsigned char c = (unsigned char)name[i];
            qc->bad[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
        }
        qc->bad[j] = '\0';
        return 1;
    }
    if (qc->n_seen < sizeof qc->seen / sizeof qc->seen[0])
        qc->seen[qc->n_seen++] = name;
    return 0;
}

int api_check_query(struct api_req *r)
{
    struct query_check qc;
    memset(&qc, 0, sizeof qc);
    qc.allowed = r->op->query;
    if (dmsg_httpd_request_query_foreach(r->http, on_query_arg, &qc) == 0)
        return 0;
    if (qc.repeated)
        api_problem(r, API_P_INVALID_QUERY, 0, NULL, "query parameter \"%s\" is given more"
                    " than once", qc.bad);
    else
        api_problem(r, API_P_INVALID_QUERY, 0, NULL, "unknown query parameter \"%s\" for %s %s",
                    qc.bad, r->method, r->path);
    return -1;
}

/* ---- the checks ---- */

static bool from_browser(struct dmsg_httpd_request *http)
{
    if (dmsg_httpd_request_header(http, "Origin"))
        return true;
    const char *site = dmsg_httpd_request_header(http, "Sec-Fetch-Site");
    return site && strcmp(site, "none") != 0;
}

#define REALM "Bearer realm=\"dmsgd\""

/* TCP only: 0 with r->scope set, or -1 after answering. */
static int authenticate(struct api_req *r)
{
    const char *authz = dmsg_httpd_request_header(r->http, "Authorization");
    switch (api_authenticate(authz, r->a->admin_token, r->a->read_token)) {
    case API_AUTH_ADMIN:
        r->scope = API_SCOPE_ADMIN;
        return 0;
    case API_AUTH_READ:
        r->scope = API_SCOPE_READ;
        return 0;
    case API_AUTH_MISSING: {
        struct dmsg_httpd_header h = {"WWW-Authenticate", REALM};
        api_problem_headers(r, API_P_TOKEN_MISSING, 0, &h, 1,
                            "this listener needs Authorization: Bearer <token> with the"
                            " contents of admin.token or admin-readonly.token in dmsgd's"
                            " state directory");
        return -1;
    }
    case API_AUTH_MALFORMED: {
        struct dmsg_httpd_header h = {
            "WWW-Authenticate", REALM ", error=\"invalid_request\", error_description=\"use"
                                " the Bearer scheme\""};
        api_problem_headers(r, API_P_BAD_AUTHORIZATION, 0, &h, 1,
                            "the Authorization header must be \"Bearer <token>\"");
        return -1;
    }
    case API_AUTH_INVALID:
    default: {
        struct dmsg_httpd_header h = {
            "WWW-Authenticate", REALM ", error=\"invalid_token\", error_description=\"the"
                                " access token is not valid\""};
        api_problem_headers(r, API_P_TOKEN_INVALID, 0, &h, 1,
                            "the bearer token is not valid; use the current admin.token or"
                            " admin-readonly.token from dmsgd's state directory");
        return -1;
    }
    }
}

static int parse_body(struct api_req *r)
{
    size_t len = 0;
    const char *body = dmsg_httpd_request_body(r->http, &len);
    const char *ctype = dmsg_httpd_request_header(r->http, "Content-Type");
    struct api_body_error err;
    if (api_body_parse(ctype, body, len, r->op->fields, r->op->n_fields, &r->body, &err) == 0)
        return 0;
    api_problem(r, err.problem, 0, err.field[0] ? err.field : NULL, "%s", err.detail);
    return -1;
}

static bool is_draining(const struct dmsgd *d)
{
    return d->phase != DMSGD_RUNNING && d->phase != DMSGD_NEW;
}

void api_dispatch(struct api_listener *l, struct dmsg_httpd_request *http)
{
    struct api_req r;
    char allow[64];
    memset(&r, 0, sizeof r);
    r.a = l->admin;
    r.d = l->admin->d;
    r.http = http;
    r.method = dmsg_httpd_request_method(http);
    r.path = dmsg_httpd_request_path(http);
    r.scope = API_SCOPE_ADMIN; /* the unix socket: access is the socket file's mode */

    if (from_browser(http)) {
        api_problem(&r, API_P_ORIGIN_REFUSED, 0, NULL,
                    "requests from web browsers are refused; use dmsgctl or another local"
                    " tool");
        return;
    }
    if (l->tcp && authenticate(&r) != 0)
        return;
    int rc = api_route_find(r.method, r.path, &r.op, r.param, sizeof r.param, allow,
                            sizeof allow);
    if (rc == API_P_NOT_FOUND) {
        api_problem(&r, API_P_NOT_FOUND, 0, NULL, "no such path; the API lives under /v1"
                    " (see api/openapi.yaml)");
        return;
    }
    if (rc == API_P_METHOD_NOT_ALLOWED) {
        struct dmsg_httpd_header h = {"Allow", allow};
        char detail[128];
        snprintf(detail, sizeof detail, "%s is not defined for this path; allowed: %s",
                 r.method, allow);
        api_problem_headers(&r, API_P_METHOD_NOT_ALLOWED, 0, &h, 1, detail);
        return;
    }
    if (r.op->scope == API_SCOPE_ADMIN && r.scope != API_SCOPE_ADMIN) {
        struct dmsg_httpd_header h = {
            "WWW-Authenticate", REALM ", error=\"insufficient_scope\", scope=\"admin\""};
        api_problem_headers(&r, API_P_INSUFFICIENT_SCOPE, 0, &h, 1,
                            "the read-only token cannot change anything; use admin.token");
        return;
    }
    if (r.op->fields && parse_body(&r) != 0)
        return;
    if (api_check_query(&r) == 0) {
        if (r.op->scope == API_SCOPE_ADMIN && is_draining(r.d))
            api_problem(&r, API_P_SHUTTING_DOWN, 0, NULL,
                        "dmsgd is stopping and accepts no changes; retry once it is back");
        else
            r.op->handler(&r);
    }
    json_decref(r.body);
    if (r.http) /* a handler that forgot to answer: never leave the client hanging */
        api_problem(&r, API_P_INTERNAL_ERROR, 0, NULL, "%s did not answer", r.op->name);
}
