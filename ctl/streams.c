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
        "is reached through a peer server; service: this server answers itself,\n"
        "route setup on port 36 or health on port 80), its state (pending: waiting\n"
        "for the responder; relaying; closing), its age and idle time, and the bytes\n"
        "relayed in each direction.\n",
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
    long long n;
    bool has;

    table_row(t);
    has = jint(s, "id", &n);
    cell_int(t, has, n);
    cell_str(t, jstr(s, "path"));
    cell_str(t, jstr(s, "state"));
    cell_pk(t, jstr(ini, "public_key"), true);
    has = jint(ini, "port", &n);
    cell_int(t, has, n);
    cell_pk(t, jstr(res, "public_key"), true);
    has = jint(res, "port", &n);
    cell_int(t, has, n);
    cell_pk(t, jstr(s, "via_peer"), true);
    has = jint(s, "age_seconds", &n);
    cell_duration(t, has, n);
    has = jint(s, "idle_seconds", &n);
    cell_duration(t, has, n);
    has = jint(s, "bytes_forward", &n);
    cell_bytes(t, has, n);
    has = jint(s, "bytes_reverse", &n);
    cell_bytes(t, has, n);
}

int render_stream_list(struct ctl *ctl, const char *body, size_t len)
{
    json_t *doc = ctl_parse_body(ctl, body, len, "streams");
    json_t *list, *s;
    struct view *v;
    struct view_table *t;
    long long total;
    size_t i;

    if (doc == NULL)
        return CTL_EXIT_REFUSED;
    if ((list = jarr(doc, "streams")) == NULL) {
        json_decref(doc);
        return ctl_bad_document(ctl, "streams", "streams");
    }
    v = view_new();
    view_set_raw(v, body, len, RAW_JSON);
    t = view_add_table(v, "streams", stream_cols, stream_ncols, "no streams");
    json_array_foreach(list, i, s)
        stream_row(t, s);
    if (jint(doc, "total", &total) && (size_t)total > json_array_size(list))
        view_message(v, "%zu of %lld streams shown", json_array_size(list), total);
    json_decref(doc);
    return ctl_emit(ctl, v);
}

static int run_streams(struct ctl *ctl)
{
    struct strbuf path = {0};
    struct ctl_paging pg;
    char *body;
    size_t len;
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
    rc = ctl_get_paged(ctl, &pg, &body, &len);
    sb_free(&path);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = render_stream_list(ctl, body, len);
    free(body);
    return rc;
}

const struct ctl_command cmd_streams = {"streams", &noun_streams,
                                        OPT_SESSION | OPT_PATH | OPT_LIMIT, run_streams};
