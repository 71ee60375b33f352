/* dmsgctl route-setup and routes: the integrated route setup node on DMSG port 36
 * (GET/PUT /v1/route-setup, GET /v1/route-setups). */
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "http.h"

const struct ctl_noun noun_route_setup = {
    .name = "route-setup",
    .summary = "turn the integrated route setup node on or off, or show it",
    .synopsis = "route-setup status\n"
                "route-setup on\n"
                "route-setup off",
    .description =
        "With route setup on, dmsgd answers Skywire visors' route setup requests on\n"
        "DMSG port 36 itself. `on' and `off' take effect at once and are stored:\n"
        "they override enable_route_setup of the config file from then on, across\n"
        "restarts. `off' refuses new requests immediately and lets those in flight\n"
        "finish.\n"
        "`route-setup' alone is `route-setup status'; `enable' and `disable' are\n"
        "synonyms of `on' and `off'. See also `dmsgctl routes'.\n",
    .options = NULL,
    .output = "A record: enabled, configured (the config file's value), source (config,\n"
              "or runtime once set here), updated at, in flight. Plain: one line in that\n"
              "order.\n",
    .examples = "dmsgctl route-setup on\n"
                "dmsgctl route-setup status --plain | cut -f1   # true or false\n",
};

const struct ctl_noun noun_routes = {
    .name = "routes",
    .summary = "recent route setups handled by the integrated setup node",
    .synopsis = "routes [--limit N] [--state STATE]",
    .description =
        "Lists the route setups dmsgd recorded, newest first: who asked, the route's\n"
        "source and destination, the number of hops each way, the state (received,\n"
        "reserving, installing, done, failed), how long it took and the error\n"
        "returned to the visor.\n",
    .options = "--limit N\thow many setups to show (default 20)\n"
               "--state STATE\tonly setups in this state: received, reserving, installing,\n"
               "\tdone or failed\n",
    .output = "Columns: id, started at, requester, source, destination, forward hops,\n"
              "reverse hops, state, duration (plain: milliseconds), error. Human tables\n"
              "shorten keys.\n",
    .examples = "dmsgctl routes\n"
                "dmsgctl routes --state failed --limit 100\n",
};

#define ROUTES_DEFAULT_LIMIT 20

static const struct column state_cols[] = {
    {"enabled", "enabled", 0},       {"configured", "configured", 0},
    {"source", "source", 0},         {"updated_at", "updated at", 0},
    {"in_flight", "in flight", 0},
};

int render_route_setup(struct ctl *ctl, const char *body, size_t len)
{
    json_t *doc = ctl_parse_body(ctl, body, len, "route-setup");
    struct view *v;
    struct view_table *t;
    bool enabled, configured = false, has_configured, has_in_flight;
    long long in_flight = 0;

    if (doc == NULL)
        return CTL_EXIT_REFUSED;
    if (!jbool(doc, "enabled", &enabled)) {
        json_decref(doc);
        return ctl_bad_document(ctl, "route-setup", "enabled");
    }
    /* Read before the calls that use them: argument evaluation order is unspecified. */
    has_configured = jbool(doc, "configured", &configured);
    has_in_flight = jint(doc, "in_flight", &in_flight);
    v = view_new();
    view_set_raw(v, body, len, RAW_JSON);
    t = view_add_record(v, "route_setup", state_cols, sizeof state_cols / sizeof state_cols[0],
                        enabled ? "Route setup is on (DMSG port 36)."
                                : "Route setup is off (DMSG port 36 refuses).");
    cell_bool(t, true, enabled);
    cell_bool(t, has_configured, configured);
    cell_str(t, jstr(doc, "source"));
    cell_time(t, jstr(doc, "updated_at"));
    cell_int(t, has_in_flight, in_flight);
    json_decref(doc);
    return ctl_emit(ctl, v);
}

static int run_status(struct ctl *ctl)
{
    return ctl_call_and_render(ctl, "GET", "/v1/route-setup", NULL, render_route_setup);
}

static int set_enabled(struct ctl *ctl, bool on)
{
    return ctl_call_and_render(ctl, "PUT", "/v1/route-setup",
                               on ? "{\"enabled\":true}" : "{\"enabled\":false}",
                               render_route_setup);
}

static int run_on(struct ctl *ctl)
{
    return set_enabled(ctl, true);
}

static int run_off(struct ctl *ctl)
{
    return set_enabled(ctl, false);
}

/* ---- routes ---- */

static const struct column route_cols[] = {
    {"id", "ID", COL_RIGHT},
    {"started_at", "STARTED", 0},
    {"requester", "REQUESTER", 0},
    {"source", "SOURCE", 0},
    {"destination", "DESTINATION", 0},
    {"hops_forward", "FWD", COL_RIGHT},
    {"hops_reverse", "REV", COL_RIGHT},
    {"state", "STATE", 0},
    {"duration_ms", "TOOK", COL_RIGHT},
    {"error", "ERROR", 0},
};

static void route_row(struct view_table *t, const json_t *r)
{
    long long n;

    table_row(t);
    json_int_cell(t, r, "id");
    cell_time(t, jstr(r, "started_at"));
    cell_pk(t, jstr(r, "requester"), true);
    cell_pk(t, jstr(r, "source"), true);
    cell_pk(t, jstr(r, "destination"), true);
    json_int_cell(t, r, "hops_forward");
    json_int_cell(t, r, "hops_reverse");
    cell_str(t, jstr(r, "state"));
    if (jint(r, "duration_ms", &n)) {
        char human[32], plain[32];
        snprintf(human, sizeof human, "%lld ms", n);
        snprintf(plain, sizeof plain, "%lld", n);
        cell_pair(t, human, plain);
    } else {
        cell_pair(t, NULL, NULL);
    }
    cell_str(t, jstr(r, "error"));
}

static const struct ctl_list route_setup_list = {
    .what = "routes",
    .array_key = "route_setups",
    .table_name = "route_setups",
    .cols = route_cols,
    .ncols = sizeof route_cols / sizeof route_cols[0],
    .empty = "no route setups recorded",
    .total_noun = NULL,
    .row = route_row,
};

int render_route_setups(struct ctl *ctl, const char *body, size_t len)
{
    return ctl_render_list(ctl, body, len, &route_setup_list);
}

static int run_routes(struct ctl *ctl)
{
    struct strbuf path = {0};
    struct ctl_paging pg;
    int rc;

    sb_printf(&path, "/v1/route-setups");
    if (ctl->args.state != NULL)
        ctl_query(&path, "state", ctl->args.state);
    pg.path = path.s;
    pg.array_key = "route_setups";
    pg.cursor_param = "before";
    pg.next_key = "next_before";
    pg.want = ctl->args.limit > 0 ? ctl->args.limit : ROUTES_DEFAULT_LIMIT;
    rc = ctl_get_paged_and_render(ctl, &pg, render_route_setups);
    sb_free(&path);
    return rc;
}

const struct ctl_command cmd_route_setup_status = {"route-setup status", &noun_route_setup, 0,
                                                   run_status};
const struct ctl_command cmd_route_setup_on = {"route-setup on", &noun_route_setup, 0, run_on};
const struct ctl_command cmd_route_setup_off = {"route-setup off", &noun_route_setup, 0,
                                                run_off};
const struct ctl_command cmd_routes = {"routes", &noun_routes, OPT_LIMIT | OPT_STATE,
                                       run_routes};
