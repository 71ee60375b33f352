/* The server's own DMSG endpoint; see dmsgd_own.h. */
#include "dmsgd_own.h"

#include <string.h>
#include <time.h>

#include "dmsg/error.h"
#include "dmsg/wire.h"
#include "dmsgd.h"
#include "health_dmsg.h"
#include "mesh.h"
#include "metrics.h"
#include "route_setup_log.h"
#include "server.h"
#include "setup_node.h"

/* The visor's own session here first, then the mesh's hops in its order (the peer that last
 * reached it, then the others). */
static dmsg_session *route_to(void *ctx, const dmsg_pk *visor, unsigned attempt,
                              uint32_t *timeout_ms)
{
    struct dmsgd *d = ctx;
    dmsg_session *local = d->server != NULL ? server_find_session(d->server, visor) : NULL;
    unsigned seen = 0;

    if (local != NULL) {
        if (attempt == 0)
            return local;
        seen++;
    }
    for (unsigned m = 0; d->mesh != NULL && m < 16; m++) {
        dmsg_session *hop = NULL;
        if (mesh_next_hop(d->mesh, visor, NULL, m, &hop, timeout_ms) != 0)
            return NULL;
        if (hop != NULL && seen++ == attempt)
            return hop;
    }
    return NULL;
}

static enum metrics_rs_result metrics_result(enum setup_node_result r)
{
    switch (r) {
    case SETUP_RESULT_OK:
        return MRS_OK;
    case SETUP_RESULT_REFUSED:
        return MRS_REFUSED;
    case SETUP_RESULT_TIMEOUT:
        return MRS_TIMEOUT;
    default:
        return MRS_ERROR;
    }
}

static void on_report(void *ctx, const struct setup_node_report *r)
{
    struct dmsgd *d = ctx;

    if (strcmp(r->state, "received") == 0)
        metrics_route_setup_started(d->metrics);
    if (r->finished)
        metrics_route_setup_finished(d->metrics, metrics_result(r->result), r->elapsed_ms);
    route_setup_log_report(d, r);
}

static void setup_limits(const struct dmsgd *d, struct setup_node_limits *lim)
{
    setup_node_limits_default(lim);
    lim->max_hops = d->cfg.limits.route_setup_max_hops;
    lim->max_in_flight = d->cfg.limits.route_setup_max_in_flight;
    lim->max_per_requester = d->cfg.limits.route_setup_max_per_requester;
    lim->deadline_ms = d->cfg.limits.route_setup_deadline_ms;
}

void dmsgd_own_reload(struct dmsgd *d)
{
    struct setup_node_limits lim;

    if (d->setup_node == NULL)
        return;
    setup_limits(d, &lim);
    setup_node_set_limits(d->setup_node, &lim);
}

static bool route_setup_on(void *ctx)
{
    const struct dmsgd *d = ctx;

    return d->route_setup_enabled;
}

static uint64_t next_link_id(void *ctx)
{
    struct dmsgd *d = ctx;

    /* The node dials only while serving a stream the relay handed over: the relay exists. */
    return d->relay != NULL ? relay_next_link_id(d->relay) : 0;
}

int dmsgd_own_start(struct dmsgd *d)
{
    struct setup_node_limits lim;
    struct setup_node_hooks hooks;
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(d->own_started_at, sizeof d->own_started_at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    d->own_started_ms = uv_now(&d->loop);
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = d;
    hooks.route_to = route_to;
    hooks.on_report = on_report;
    hooks.enabled = route_setup_on;
    hooks.next_link_id = next_link_id;
    setup_limits(d, &lim);
    return setup_node_init(&d->loop, &d->identity, &lim, &hooks, &d->setup_node);
}

static void fill_health(void *ctx, struct health_dmsg_info *info)
{
    struct dmsgd *d = ctx;

    info->version = DMSGD_VERSION;
    memcpy(info->started_at, d->own_started_at, sizeof info->started_at);
    info->uptime_s = (uv_now(&d->loop) - d->own_started_ms) / 1000;
    info->sessions = d->server != NULL ? server_session_count(d->server) : 0;
    info->peers = d->mesh != NULL ? mesh_peers_up(d->mesh) : 0;
    info->route_setup = d->route_setup_enabled;
}

uint16_t dmsgd_own_service(void *ctx, const struct relay_own_request *req)
{
    struct dmsgd *d = ctx;

    if (d->phase != DMSGD_RUNNING)
        return DMSG_WIRE_REQ_NO_LISTENER;
    switch (req->dst_port) {
    case DMSG_SETUP_NODE_PORT:
        /* Off: refused at once, so that visors fail now rather than after 20 s. */
        if (!d->route_setup_enabled || d->setup_node == NULL)
            return DMSG_WIRE_REQ_NO_LISTENER;
        return setup_node_accept(d->setup_node, req);
    case HEALTH_DMSG_PORT:
        return health_dmsg_accept(&d->loop, &d->identity, req, fill_health, d);
    default:
        return DMSG_WIRE_REQ_NO_LISTENER;
    }
}

void dmsgd_own_foreach_stream(const struct dmsgd *d,
                              void (*fn)(const struct relay_link_info *info, void *arg),
                              void *arg)
{
    if (d->setup_node != NULL)
        setup_node_foreach_stream(d->setup_node, fn, arg);
}

static void count_one(const struct relay_link_info *info, void *arg)
{
    uint64_t *n = arg;

    (void)info;
    (*n)++;
}

uint64_t dmsgd_own_stream_count(const struct dmsgd *d)
{
    uint64_t n = 0;

    dmsgd_own_foreach_stream(d, count_one, &n);
    return n;
}

void dmsgd_own_close(struct dmsgd *d)
{
    if (d->setup_node != NULL) {
        setup_node_close(d->setup_node, NULL, NULL);
        d->setup_node = NULL;
    }
}
