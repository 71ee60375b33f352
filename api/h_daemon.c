/* GET /v1/health and GET /v1/info: is the daemon serving, and what is it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "discovery_service.h"
#include "dmsgd.h"
#include "mesh.h"
#include "metrics.h"
#include "netaddr.h"
#include "relay.h"
#include "server.h"
#include "store.h"

#ifndef DMSGD_VERSION
#define DMSGD_VERSION "dev"
#endif

static int64_t uptime_seconds(const struct dmsgd *d)
{
    int64_t started = d->metrics ? metrics_start_time_ms(d->metrics) : api_now_ms();
    int64_t up = (api_now_ms() - started) / 1000;
    return up > 0 ? up : 0;
}

static const char *health_status(const struct dmsgd *d, bool store_ok)
{
    switch (d->phase) {
    case DMSGD_NEW: return "starting";
    case DMSGD_RUNNING: return store_ok ? "ok" : "degraded";
    default: return "draining";
    }
}

/* The store is "error" while the admin API's or the sampler's last use of it failed. */
static bool store_is_ok(const struct api_req *r)
{
    return !r->a->store_failing && !(r->d->metrics && metrics_store_failing(r->d->metrics));
}

void api_get_health(struct api_req *r)
{
    struct dmsgd *d = r->d;
    bool store_ok = store_is_ok(r);
    const char *status = health_status(d, store_ok);
    json_t *body = json_pack(
        "{s:s,s:s,s:s,s:I,s:I,s:{s:I,s:I},s:b,s:s}", "status", status, "version", DMSGD_VERSION,
        "public_key", d->public_key_hex, "uptime_seconds", (json_int_t)uptime_seconds(d),
        "sessions", (json_int_t)(d->server ? server_session_count(d->server) : 0), "peers",
        "total", (json_int_t)(d->mesh ? mesh_peer_count(d->mesh) : 0), "up",
        (json_int_t)(d->mesh ? mesh_peers_up(d->mesh) : 0), "route_setup",
        d->route_setup_enabled, "store", store_ok ? "ok" : "error");
    bool serving = strcmp(status, "ok") == 0 || strcmp(status, "degraded") == 0;
    api_reply_json(r, serving ? 200 : 503, body);
}

static void local_address(const struct dmsgd *d, char *out, size_t cap)
{
    char host[CONFIG_ADDR_MAX + 1];
    uint16_t port = 0;
    if (netaddr_split(d->cfg.local_address, host, sizeof host, &port) != 0) {
        snprintf(out, cap, "%s", d->cfg.local_address);
        return;
    }
    if (d->server)
        port = server_port(d->server);
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host[0] ? host : "0.0.0.0",
             (unsigned)port);
}

static json_t *addresses_json(const struct api_req *r)
{
    const struct dmsgd *d = r->d;
    char local[CONFIG_ADDR_MAX + 16];
    char admin_tcp[CONFIG_ADDR_MAX + 16] = "";
    local_address(d, local, sizeof local);
    if (r->a->tcp_listener.httpd && d->cfg.admin_address[0]) {
        char host[CONFIG_ADDR_MAX + 1];
        uint16_t port;
        if (netaddr_split(d->cfg.admin_address, host, sizeof host, &port) == 0)
            snprintf(admin_tcp, sizeof admin_tcp, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
                     (unsigned)dmsg_httpd_port(r->a->tcp_listener.httpd));
    }
    char discovery[CONFIG_ADDR_MAX + 16] = "";
    if (d->discovery) {
        char host[CONFIG_ADDR_MAX + 1];
        uint16_t port;
        if (netaddr_split(d->cfg.embedded_discovery_address, host, sizeof host, &port) == 0)
            snprintf(discovery, sizeof discovery, strchr(host, ':') ? "[%s]:%u" : "%s:%u",
                     host[0] ? host : "0.0.0.0", (unsigned)discovery_service_port(d->discovery));
    }
    return json_pack("{s:s,s:s,s:o,s:o,s:s,s:o}", "local", local, "public",
                     d->cfg.public_address[0] ? d->cfg.public_address : local, "health",
                     api_json_str_or_null(d->cfg.health_endpoint_address), "embedded_discovery",
                     api_json_str_or_null(discovery),
                     "admin_socket", r->a->socket_path, "admin_tcp",
                     api_json_str_or_null(admin_tcp));
}

static json_t *counts_json(const struct dmsgd *d)
{
    struct metrics_snapshot *s = NULL;
    uint64_t clients = 0, peers = 0, streams = 0;
    if (d->metrics && (s = malloc(sizeof *s)) != NULL) {
        metrics_collect(d->metrics, s);
        clients = s->sessions[METRICS_CLIENT];
        peers = s->sessions[METRICS_PEER];
        for (int p = 0; p < MP_NONE; p++)
            streams += s->streams[p];
        free(s);
    }
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "sessions", (json_int_t)(clients + peers),
                     "client_sessions", (json_int_t)clients, "peer_sessions", (json_int_t)peers,
                     "streams", (json_int_t)streams, "peers",
                     (json_int_t)(d->mesh ? mesh_peer_count(d->mesh) : 0), "peers_up",
                     (json_int_t)(d->mesh ? mesh_peers_up(d->mesh) : 0));
}

void api_get_info(struct api_req *r)
{
    struct dmsgd *d = r->d;
    int64_t started = d->metrics ? metrics_start_time_ms(d->metrics) : api_now_ms();
    json_t *body = json_pack(
        "{s:s,s:s,s:I,s:o,s:I,s:o,s:s,s:o,s:{s:s,s:b},s:{s:I,s:I,s:I},s:{s:b},s:o,s:s,s:I,s:I}",
        "public_key", d->public_key_hex, "version", DMSGD_VERSION, "pid", (json_int_t)getpid(),
        "started_at", api_json_time(started), "uptime_seconds", (json_int_t)uptime_seconds(d),
        "config_path", api_json_str_or_null(d->config_path), "state_dir", d->cfg.state_dir,
        "addresses", addresses_json(r), "discovery", "url", d->discovery_url, "embedded",
        d->discovery != NULL, "limits", "max_sessions", (json_int_t)d->cfg.max_sessions,
        "max_sessions_hard", (json_int_t)d->hard_max_sessions, "max_streams_per_session",
        (json_int_t)d->cfg.limits.max_streams_per_session, "route_setup", "enabled",
        d->route_setup_enabled, "counts", counts_json(d), "log_level",
        log_level_name(d->log.level), "update_interval_seconds",
        (json_int_t)(d->cfg.update_interval_ns / 1000000000ULL > 0
                         ? d->cfg.update_interval_ns / 1000000000ULL
                         : 1),
        "schema_version", (json_int_t)(d->store ? store_schema_version(d->store) : 0));
    if (!body) {
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "could not build the info document");
        return;
    }
    api_reply_json(r, 200, body);
}
