/* dmsgctl info and health: who the daemon is (GET /v1/info) and whether it serves
 * (GET /v1/health). */
#include <string.h>

#include "command.h"
#include "http.h"

const struct ctl_noun noun_info = {
    .name = "info",
    .summary = "the daemon's key, version, uptime, addresses and settings",
    .synopsis = "info",
    .description =
        "Shows the server's public key, its version and process id, when it started,\n"
        "the config file and state directory it uses, its addresses (sessions,\n"
        "advertised, health, embedded discovery, admin socket and TCP listener), the\n"
        "discovery it registers in, its session limits, whether route setup is on,\n"
        "and how many sessions, streams and peers it has.\n",
    .options = NULL,
    .output = "A record; plain prints its values on one line in this order: public key,\n"
              "version, pid, started at, uptime, config, state dir, local, public, health,\n"
              "embedded discovery, admin socket, admin tcp, discovery url, discovery\n"
              "embedded, max sessions, hard max sessions, max streams per session, route\n"
              "setup, sessions, client sessions, peer sessions, streams, peers, peers up,\n"
              "log level, update interval (seconds), schema version.\n",
    .examples = "dmsgctl info\n"
                "dmsgctl info --json | jq -r .public_key\n",
};

const struct ctl_noun noun_health = {
    .name = "health",
    .summary = "whether dmsgd serves (for scripts and health checks)",
    .synopsis = "health",
    .description =
        "Asks dmsgd whether it serves. Status ok: serving; degraded: serving, but its\n"
        "state store is failing (its log says why); starting or draining: not serving\n"
        "(dmsgctl exits 1). Cheap enough to run every few seconds.\n",
    .options = NULL,
    .output = "A record: status, version, public key, uptime, sessions, peers, peers up,\n"
              "route setup, store. Plain: those values on one line.\n",
    .examples = "dmsgctl health\n"
                "dmsgctl --timeout 2 health >/dev/null || echo unhealthy\n"
                "HEALTHCHECK CMD [\"dmsgctl\", \"--timeout\", \"2\", \"health\"]\n",
};

static const struct column info_cols[] = {
    {"public_key", "public key", 0},
    {"version", "version", 0},
    {"pid", "pid", 0},
    {"started_at", "started", 0},
    {"uptime_seconds", "uptime", 0},
    {"config_path", "config", 0},
    {"state_dir", "state dir", 0},
    {"local", "sessions on", 0},
    {"public", "advertised as", 0},
    {"health", "health on", 0},
    {"embedded_discovery", "embedded discovery", 0},
    {"admin_socket", "admin socket", 0},
    {"admin_tcp", "admin tcp", 0},
    {"discovery_url", "discovery", 0},
    {"discovery_embedded", "discovery embedded", 0},
    {"max_sessions", "max sessions", 0},
    {"max_sessions_hard", "hard max sessions", 0},
    {"max_streams_per_session", "max streams/session", 0},
    {"route_setup", "route setup", 0},
    {"sessions", "sessions", 0},
    {"client_sessions", "client sessions", 0},
    {"peer_sessions", "peer sessions", 0},
    {"streams", "streams", 0},
    {"peers", "peers", 0},
    {"peers_up", "peers up", 0},
    {"log_level", "log level", 0},
    {"update_interval_seconds", "update interval", 0},
    {"schema_version", "schema version", 0},
};

int render_info(struct ctl *ctl, const char *body, size_t len)
{
    json_t *doc = ctl_parse_body(ctl, body, len, "info");
    const json_t *addr, *disc, *lim, *rs, *counts;
    struct view *v;
    struct view_table *t;

    if (doc == NULL)
        return CTL_EXIT_REFUSED;
    if (jstr(doc, "public_key") == NULL) {
        json_decref(doc);
        return ctl_bad_document(ctl, "info", "public_key");
    }
    addr = jobj(doc, "addresses");
    disc = jobj(doc, "discovery");
    lim = jobj(doc, "limits");
    rs = jobj(doc, "route_setup");
    counts = jobj(doc, "counts");
    v = view_new();
    view_set_raw(v, body, len, RAW_JSON);
    t = view_add_record(v, "info", info_cols, sizeof info_cols / sizeof info_cols[0], NULL);
    cell_str(t, jstr(doc, "public_key"));
    cell_str(t, jstr(doc, "version"));
    json_int_cell(t, doc, "pid");
    cell_time(t, jstr(doc, "started_at"));
    json_duration_cell(t, doc, "uptime_seconds");
    cell_str(t, jstr(doc, "config_path"));
    cell_str(t, jstr(doc, "state_dir"));
    cell_str(t, jstr(addr, "local"));
    cell_str(t, jstr(addr, "public"));
    cell_str(t, jstr(addr, "health"));
    cell_str(t, jstr(addr, "embedded_discovery"));
    cell_str(t, jstr(addr, "admin_socket"));
    cell_str(t, jstr(addr, "admin_tcp"));
    cell_str(t, jstr(disc, "url"));
    json_bool_cell(t, disc, "embedded");
    json_int_cell(t, lim, "max_sessions");
    json_int_cell(t, lim, "max_sessions_hard");
    json_int_cell(t, lim, "max_streams_per_session");
    json_bool_cell(t, rs, "enabled");
    json_int_cell(t, counts, "sessions");
    json_int_cell(t, counts, "client_sessions");
    json_int_cell(t, counts, "peer_sessions");
    json_int_cell(t, counts, "streams");
    json_int_cell(t, counts, "peers");
    json_int_cell(t, counts, "peers_up");
    cell_str(t, jstr(doc, "log_level"));
    json_duration_cell(t, doc, "update_interval_seconds");
    json_int_cell(t, doc, "schema_version");
    json_decref(doc);
    return ctl_emit(ctl, v);
}

static const struct column health_cols[] = {
    {"status", "status", 0},        {"version", "version", 0},
    {"public_key", "public key", 0}, {"uptime_seconds", "uptime", 0},
    {"sessions", "sessions", 0},    {"peers", "peers", 0},
    {"peers_up", "peers up", 0},    {"route_setup", "route setup", 0},
    {"store", "store", 0},
};

int render_health(struct ctl *ctl, const char *body, size_t len)
{
    json_t *doc = ctl_parse_body(ctl, body, len, "health");
    const json_t *peers;
    struct view *v;
    struct view_table *t;
    const char *status;
    int rc;

    if (doc == NULL)
        return CTL_EXIT_REFUSED;
    if ((status = jstr(doc, "status")) == NULL) {
        json_decref(doc);
        return ctl_bad_document(ctl, "health", "status");
    }
    peers = jobj(doc, "peers");
    v = view_new();
    view_set_raw(v, body, len, RAW_JSON);
    t = view_add_record(v, "health", health_cols, sizeof health_cols / sizeof health_cols[0],
                        NULL);
    cell_str(t, status);
    cell_str(t, jstr(doc, "version"));
    cell_str(t, jstr(doc, "public_key"));
    json_duration_cell(t, doc, "uptime_seconds");
    json_int_cell(t, doc, "sessions");
    json_int_cell(t, peers, "total");
    json_int_cell(t, peers, "up");
    json_bool_cell(t, doc, "route_setup");
    cell_str(t, jstr(doc, "store"));
    rc = ctl_emit(ctl, v);
    if (rc == CTL_EXIT_OK && strcmp(status, "degraded") == 0)
        fprintf(ctl->err,
                "dmsgctl: dmsgd serves, but its state store is failing — its log says why "
                "(journalctl -u dmsgd); changes through dmsgctl are refused until it is fixed\n");
    if (rc == CTL_EXIT_OK && strcmp(status, "ok") != 0 && strcmp(status, "degraded") != 0) {
        fprintf(ctl->err, "dmsgctl: dmsgd is not serving (status %s)%s\n", status,
                strcmp(status, "starting") == 0 ? " — it is starting; retry in a moment"
                : strcmp(status, "draining") == 0 ? " — it is shutting down"
                                                    : "");
        rc = CTL_EXIT_REFUSED;
    }
    json_decref(doc);
    return rc;
}

static int run_info(struct ctl *ctl)
{
    return ctl_call_and_render(ctl, "GET", "/v1/info", NULL, render_info);
}

static int run_health(struct ctl *ctl)
{
    struct http_response resp;
    int rc = http_request(ctl->conn, "GET", "/v1/health", NULL, &resp, ctl->err);

    if (rc != 0)
        return rc;
    /* A 503 carries the same document (not a problem): show it, then fail. */
    if ((resp.status >= 200 && resp.status < 300) ||
        (resp.status == 503 && strncmp(resp.content_type, "application/json", 16) == 0))
        rc = render_health(ctl, resp.body.s, resp.body.len);
    else
        rc = http_report_failure(ctl->conn, &resp, ctl->err);
    if (rc == CTL_EXIT_OK && resp.status == 503)
        rc = CTL_EXIT_REFUSED;
    http_response_free(&resp);
    return rc;
}

const struct ctl_command cmd_info = {"info", &noun_info, 0, run_info};
const struct ctl_command cmd_health = {"health", &noun_health, 0, run_health};
