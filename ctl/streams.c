/* dmsgctl streams: the streams dmsgd relays or serves (GET /v1/streams). */
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "http.h"

const struct ctl_noun noun_streams = {
    .name = "streams",
    .summary = "the streams this server relays or serves itself",
    .synopsis = "streams [--session PK] [--path local|mesh|service] [--limit N]",
    .description =
        "Lists open streams, oldest first: who dialed whom on which DMSG ports, how\n"
        "the stream goes (local: both ends are clients of this server; mesh: one end\n"
        "is reached through a peer server; service: this server's route setup node,\n"
        "requests to it on port 36 and its dials to visors' port 136), its state\n"
        "(pending: waiting for the responder; relaying; closing), its age and idle\n"
        "time, and the bytes relayed in each direction (encrypted stream bytes).\n",
    .options = "--session PK\tonly streams with this key at either end\n"
               "--path PATH\tonly local, mesh or service streams\n"
               "--limit N\tat most N streams (default: all)\n",
    .output = "Columns: id, path, state, initiator key, initiator port, responder key,\n"
              "responder port, via peer, age, idle (plain: seconds), bytes forward\n"
              "(initiator to responder), bytes reverse. Human tables shorten keys.\n",
    .examples = "dmsgctl streams\n"
                "dmsgctl streams --path mesh --plain\n",
};

const struct column stream_cols[] = {
    {"id", "ID", COL_RIGHT},
    {"path", "PATH", 0},
    {"state", "STATE", 0},
    {"initiator", "INITIATOR", 0},
    {"initiator_port", "PORT", COL_RIGHT},
    {"responder", "RESPONDER", 0},
    {"responder_port", "PORT", COL_RIGHT},
    {"via_peer", "VIA", 0},
    {"age_seconds", "AGE", COL_RIGHT},
    {"idle_seconds", "IDLE", COL_RIGHT},
    {"bytes_forward", "FWD", COL_RIGHT},
    {"bytes_reverse", "REV", COL_RIGHT},
};
const size_t stream_ncols = sizeof stream_cols / sizeof stream_cols[0];

void stream_row(struct view_table *t, const json_t *s)
{
    const json_t *ini = jobj(s, "initiator");
    const json_t *res = jobj(s, "responder");

    table_row(t);
    json_int_cell(t, s, "id");
    cell_str(t, jstr(s, "path"));
    cell_str(t, jstr(s, "state"));
    cell_pk(t, jstr(ini, "public_key"), true);
    json_int_cell(t, ini, "port");
    cell_pk(t, jstr(res, "public_key"), true);
    json_int_cell(t, res, "port");
    cell_pk(t, jstr(s, "via_peer"), true);
    json_duration_cell(t, s, "age_seconds");
    json_duration_cell(t, s, "idle_seconds");
    json_bytes_cell(t, s, "bytes_forward");
    json_bytes_cell(t, s, "bytes_reverse");
}

static const struct ctl_list stream_list = {
    .what = "streams",
    .array_key = "streams",
    .table_name = "streams",
    .cols = stream_cols,
    .ncols = sizeof stream_cols / sizeof stream_cols[0],
    .empty = "no streams",
    .total_noun = "streams",
    .row = stream_row,
};

int render_stream_list(struct ctl *ctl, const char *body, size_t len)
{
    return ctl_render_list(ctl, body, len, &stream_list);
}

static int run_streams(struct ctl *ctl)
{
    struct strbuf path = {0};
    struct ctl_paging pg;
    int rc;

    sb_printf(&path, "/v1/streams");
    if (ctl->args.session_pk[0] != '\0')
        ctl_query(&path, "pk", ctl->args.session_pk);
    if (ctl->args.path != NULL)
        ctl_query(&path, "path", ctl->args.path);
    pg.path = path.s;
    pg.array_key = "streams";
    pg.cursor_param = "after";
    pg.next_key = "next";
    pg.want = ctl->args.limit;
    rc = ctl_get_paged_and_render(ctl, &pg, render_stream_list);
    sb_free(&path);
    return rc;
}

const struct ctl_command cmd_streams = {"streams", &noun_streams,
                                        OPT_SESSION | OPT_PATH | OPT_LIMIT, run_streams};
