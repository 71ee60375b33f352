/* dmsgctl events: the live event feed (GET /v1/events, Server-Sent Events). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "command.h"
#include "http.h"
#include "sse.h"

const struct ctl_noun noun_events = {
    .name = "events",
    .summary = "follow sessions, streams, peer links and route setups live",
    .synopsis = "events [--follow] [--type TYPE[,TYPE…]]… [--count N]",
    .description =
        "Prints dmsgd's events as they happen, one line each, until dmsgd ends the\n"
        "feed (it stops, or this client fell too far behind) or Ctrl-C. With\n"
        "--follow, dmsgctl reconnects whenever the feed ends or dmsgd cannot be\n"
        "reached, like `tail -F'; events that happen while it is disconnected are\n"
        "not replayed.\n"
        "\n"
        "Types: session_up, session_down (with the reason: closed, replaced,\n"
        "kicked, timeout, error, shutdown), stream_open, stream_close, peer_link (a\n"
        "peer's link changed state), route_setup (a route setup changed state).\n",
    .options = "-f, --follow\treconnect when the feed ends\n"
               "-t, --type TYPES\tonly these event types (comma-separated; repeatable)\n"
               "--count N\tstop after N events\n",
    .output = "Human: time, type, then the event's fields as key=value. Plain: time, type,\n"
              "then the fields in the same order, tab-separated. --json: each event's JSON\n"
              "object (as in api/openapi.yaml) on its own line.\n",
    .examples = "dmsgctl events --follow\n"
                "dmsgctl events --type peer_link,route_setup\n"
                "dmsgctl events --json --type session_up | jq -r .public_key\n",
};

#define MAX_EVENT_BYTES (1024 * 1024)
#define RECONNECT_DELAY_S 2
#define STOP_COUNT_REACHED 1000 /* not an exit status: the wanted events were printed */

/* ---- one event ---- */

static const struct column session_up_cols[] = {
    {"at", "TIME", 0}, {"type", "EVENT", 0}, {"public_key", "KEY", 0},
    {"kind", "kind", COL_KV}, {"remote_address", "remote", COL_KV}};
static const struct column session_down_cols[] = {
    {"at", "TIME", 0}, {"type", "EVENT", 0}, {"public_key", "KEY", 0},
    {"kind", "kind", COL_KV}, {"reason", "reason", COL_KV},
    {"duration_seconds", "lasted", COL_KV}};
static const struct column stream_open_cols[] = {
    {"at", "TIME", 0}, {"type", "EVENT", 0}, {"id", "id", COL_KV},
    {"initiator", "from", COL_KV}, {"responder", "to", COL_KV}, {"path", "path", COL_KV},
    {"via_peer", "via", COL_KV}};
static const struct column stream_close_cols[] = {
    {"at", "TIME", 0}, {"type", "EVENT", 0}, {"id", "id", COL_KV},
    {"reason", "reason", COL_KV}, {"bytes_forward", "fwd", COL_KV},
    {"bytes_reverse", "rev", COL_KV}, {"duration_ms", "ms", COL_KV}};
static const struct column peer_link_cols[] = {
    {"at", "TIME", 0}, {"type", "EVENT", 0}, {"public_key", "KEY", 0},
    {"address", "address", COL_KV}, {"previous_state", "from", COL_KV},
    {"state", "to", COL_KV}, {"error", "error", COL_KV}};
static const struct column route_setup_cols[] = {
    {"at", "TIME", 0}, {"type", "EVENT", 0}, {"id", "id", COL_KV},
    {"requester", "requester", COL_KV}, {"source", "source", COL_KV},
    {"destination", "destination", COL_KV}, {"state", "state", COL_KV},
    {"duration_ms", "ms", COL_KV}, {"error", "error", COL_KV}};
static const struct column other_cols[] = {
    {"at", "TIME", 0}, {"type", "EVENT", 0}, {"data", "data", COL_KV}};

#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))

/* A stream end as DMSG writes addresses: pk:port (shortened key for people). */
static void end_cell(struct view_table *t, const json_t *end)
{
    const char *pk = jstr(end, "public_key");
    long long port;
    char human[64], plain[96];

    if (pk == NULL || !jint(end, "port", &port)) {
        cell_pair(t, NULL, NULL);
        return;
    }
    snprintf(human, sizeof human, "%.8s\u2026:%lld", pk, port);
    snprintf(plain, sizeof plain, "%s:%lld", pk, port);
    cell_pair(t, human, plain);
}

/* Adds the table of one event of this type and starts its row with the time and the type. */
static struct view_table *event_row(struct view *v, const char *type, const struct column *cols,
                                    size_t ncols, const json_t *e)
{
    struct view_table *t = view_add_table(v, type, cols, ncols, NULL);

    table_row(t);
    cell_time(t, jstr(e, "at"));
    cell_str(t, type);
    return t;
}

static void fill_event(struct view *v, const char *type, const json_t *e, const char *data)
{
    struct view_table *t;

    if (strcmp(type, "session_up") == 0) {
        t = event_row(v, type, session_up_cols, NCOLS(session_up_cols), e);
        cell_str(t, jstr(e, "public_key"));
        cell_str(t, jstr(e, "kind"));
        cell_str(t, jstr(e, "remote_address"));
    } else if (strcmp(type, "session_down") == 0) {
        t = event_row(v, type, session_down_cols, NCOLS(session_down_cols), e);
        cell_str(t, jstr(e, "public_key"));
        cell_str(t, jstr(e, "kind"));
        cell_str(t, jstr(e, "reason"));
        json_duration_cell(t, e, "duration_seconds");
    } else if (strcmp(type, "stream_open") == 0) {
        t = event_row(v, type, stream_open_cols, NCOLS(stream_open_cols), e);
        json_int_cell(t, e, "id");
        end_cell(t, jobj(e, "initiator"));
        end_cell(t, jobj(e, "responder"));
        cell_str(t, jstr(e, "path"));
        cell_pk(t, jstr(e, "via_peer"), true);
    } else if (strcmp(type, "stream_close") == 0) {
        t = event_row(v, type, stream_close_cols, NCOLS(stream_close_cols), e);
        json_int_cell(t, e, "id");
        cell_str(t, jstr(e, "reason"));
        json_int_cell(t, e, "bytes_forward");
        json_int_cell(t, e, "bytes_reverse");
        json_int_cell(t, e, "duration_ms");
    } else if (strcmp(type, "peer_link") == 0) {
        t = event_row(v, type, peer_link_cols, NCOLS(peer_link_cols), e);
        cell_str(t, jstr(e, "public_key"));
        cell_str(t, jstr(e, "address"));
        cell_str(t, jstr(e, "previous_state"));
        cell_str(t, jstr(e, "state"));
        cell_str(t, jstr(e, "error"));
    } else if (strcmp(type, "route_setup") == 0) {
        t = event_row(v, type, route_setup_cols, NCOLS(route_setup_cols), e);
        json_int_cell(t, e, "id");
        cell_pk(t, jstr(e, "requester"), true);
        cell_pk(t, jstr(e, "source"), true);
        cell_pk(t, jstr(e, "destination"), true);
        cell_str(t, jstr(e, "state"));
        json_int_cell(t, e, "duration_ms");
        cell_str(t, jstr(e, "error"));
    } else {
        /* A type newer than this dmsgctl: show it rather than drop it. */
        t = view_add_table(v, "event", other_cols, NCOLS(other_cols), NULL);
        table_row(t);
        cell_time(t, jstr(e, "at"));
        cell_str(t, type);
        cell_str(t, data);
    }
}

int render_event(struct ctl *ctl, const char *type, const char *data, size_t len)
{
    json_t *e = ctl_parse_body(ctl, data, len, "an event");
    struct view *v;
    int rc;

    if (e == NULL)
        return CTL_EXIT_REFUSED;
    if (strcmp(type, "message") == 0 && jstr(e, "type") != NULL)
        type = jstr(e, "type");
    v = view_new();
    view_set_raw(v, data, len, RAW_JSON);
    fill_event(v, type, e, data);
    rc = output_stream(ctl->out, v) == 0 ? CTL_EXIT_OK : CTL_EXIT_OUTPUT;
    view_free(v);
    json_decref(e);
    return rc;
}

/* ---- the feed ---- */

struct feed {
    struct ctl *ctl;
    struct sse_parser sse;
    long long printed;
};

static int on_event(void *user, const struct sse_event *ev)
{
    struct feed *f = user;
    int rc = render_event(f->ctl, ev->type, ev->data, ev->data_len);

    if (rc != CTL_EXIT_OK)
        return rc;
    f->printed++;
    if (f->ctl->args.count > 0 && f->printed >= f->ctl->args.count)
        return STOP_COUNT_REACHED;
    return 0;
}

static int on_data(void *user, const char *data, size_t len)
{
    struct feed *f = user;
    int rc = sse_feed(&f->sse, data, len);

    if (rc == SSE_ETOOBIG) {
        fprintf(f->ctl->err,
                "dmsgctl: an event from dmsgd is larger than %d bytes — is %s dmsgd's admin "
                "API?\n",
                MAX_EVENT_BYTES, http_where(f->ctl->conn));
        return CTL_EXIT_REFUSED;
    }
    return rc;
}

static int run_events(struct ctl *ctl)
{
    struct strbuf path = {0};
    struct feed f = {.ctl = ctl};
    bool follow = (ctl->args.given & OPT_FOLLOW) != 0;
    int rc;

    sb_printf(&path, "/v1/events");
    if (ctl->args.types != NULL)
        ctl_query(&path, "types", ctl->args.types);
    for (;;) {
        sse_init(&f.sse, MAX_EVENT_BYTES, on_event, &f);
        rc = http_stream(ctl, path.s, "text/event-stream", on_data, &f);
        sse_free(&f.sse);
        if (rc == STOP_COUNT_REACHED) {
            rc = CTL_EXIT_OK;
            break;
        }
        if (!follow || (rc != CTL_EXIT_OK && rc != CTL_EXIT_UNREACHABLE))
            break;
        fprintf(ctl->err, "dmsgctl: the event feed ended; reconnecting in %d s\n",
                RECONNECT_DELAY_S);
        {
            struct timespec ts = {RECONNECT_DELAY_S, 0};
            while (nanosleep(&ts, &ts) != 0)
                ;
        }
    }
    sb_free(&path);
    return rc;
}

const struct ctl_command cmd_events = {"events", &noun_events,
                                       OPT_FOLLOW | OPT_TYPE | OPT_COUNT, run_events};
