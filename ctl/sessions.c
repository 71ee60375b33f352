/* dmsgctl sessions and session: established sessions (GET /v1/sessions, GET and DELETE
 * /v1/sessions/{pk}), including the live --watch view. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "command.h"
#include "http.h"

const struct ctl_noun noun_sessions = {
    .name = "sessions",
    .summary = "client and peer sessions: list, watch, show one, kick one",
    .synopsis = "sessions [--filter KEY=VALUE]… [--limit N]\n"
                "sessions --watch [--interval SECONDS] [--count N] [--filter KEY=VALUE]…\n"
                "session PK\n"
                "session show PK\n"
                "session kick PK",
    .description =
        "sessions      lists the established sessions, ordered by key: clients of\n"
        "              this server and peer servers (kind peer), where they connect\n"
        "              from, how long ago, how long idle, how many streams they\n"
        "              carry, the bytes each way and the bytes still queued for them.\n"
        "sessions --watch\n"
        "              polls every --interval seconds (default 2) and prints one line\n"
        "              per session that appeared (+) or vanished (-); the first poll\n"
        "              prints every current session as +. Stop it with Ctrl-C, or\n"
        "              after --count N polls.\n"
        "session PK    one session with the streams it carries (also `session show\n"
        "              PK').\n"
        "session kick PK\n"
        "              closes the session (GoAway, streams reset). The client may\n"
        "              reconnect at once: this is not a ban.\n",
    .options = "--filter KEY=VALUE\tonly matching sessions; repeat to combine (AND):\n"
               "\tkind=client|peer, pk=HEXPREFIX, remote=ADDRESSPREFIX,\n"
               "\tmin-streams=N\n"
               "--limit N\tat most N sessions (default: all)\n"
               "-w, --watch\tfollow appearing and vanishing sessions\n"
               "-i, --interval SECONDS\twith --watch: time between polls (default 2)\n"
               "--count N\twith --watch: stop after N polls\n",
    .output = "sessions, columns: public key, kind, remote address, age, idle (plain:\n"
              "seconds), streams, rx bytes, tx bytes, queued bytes.\n"
              "sessions --watch: time, + or -, public key, kind, remote address; --json\n"
              "prints each poll's document on one line.\n"
              "session PK, plain: a line `session' + the fields above, then one line\n"
              "`stream' + the columns of `dmsgctl streams' per stream.\n",
    .examples = "dmsgctl sessions\n"
                "dmsgctl sessions --filter kind=peer\n"
                "dmsgctl sessions --filter min-streams=10 --plain | sort -t$'\\t' -k6 -n\n"
                "dmsgctl sessions --watch --interval 1\n"
                "dmsgctl session kick \\\n"
                "    02c2a5f1d3e4b6a7980f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b2\n",
};

static const struct column session_cols[] = {
    {"public_key", "PUBLIC KEY", 0},
    {"kind", "KIND", 0},
    {"remote_address", "REMOTE", 0},
    {"age_seconds", "AGE", COL_RIGHT},
    {"idle_seconds", "IDLE", COL_RIGHT},
    {"streams", "STREAMS", COL_RIGHT},
    {"rx_bytes", "RX", COL_RIGHT},
    {"tx_bytes", "TX", COL_RIGHT},
    {"out_queued_bytes", "QUEUED", COL_RIGHT},
};

static const struct column session_record_cols[] = {
    {"public_key", "public key", 0},      {"kind", "kind", 0},
    {"remote_address", "remote", 0},      {"established_at", "established", 0},
    {"age_seconds", "age", 0},            {"idle_seconds", "idle", 0},
    {"streams", "streams", 0},            {"rx_bytes", "received", 0},
    {"tx_bytes", "sent", 0},              {"out_queued_bytes", "queued", 0},
};

static void session_cells(struct view_table *t, const json_t *s, bool record)
{
    cell_str(t, jstr(s, "public_key"));
    cell_str(t, jstr(s, "kind"));
    cell_str(t, jstr(s, "remote_address"));
    if (record)
        cell_time(t, jstr(s, "established_at"));
    json_duration_cell(t, s, "age_seconds");
    json_duration_cell(t, s, "idle_seconds");
    json_int_cell(t, s, "streams");
    json_bytes_cell(t, s, "rx_bytes");
    json_bytes_cell(t, s, "tx_bytes");
    json_bytes_cell(t, s, "out_queued_bytes");
}

static void session_row(struct view_table *t, const json_t *s)
{
    table_row(t);
    session_cells(t, s, false);
}

static const struct ctl_list session_list = {
    .what = "sessions",
    .array_key = "sessions",
    .table_name = "sessions",
    .cols = session_cols,
    .ncols = sizeof session_cols / sizeof session_cols[0],
    .empty = "no sessions",
    .total_noun = "sessions",
    .row = session_row,
};

int render_session_list(struct ctl *ctl, const char *body, size_t len)
{
    return ctl_render_list(ctl, body, len, &session_list);
}

int render_session(struct ctl *ctl, const char *body, size_t len)
{
    json_t *doc = ctl_parse_body(ctl, body, len, "session");
    json_t *session, *streams, *s;
    struct view *v;
    struct view_table *t;
    size_t i;

    if (doc == NULL)
        return CTL_EXIT_REFUSED;
    session = jobj(doc, "session");
    streams = jarr(doc, "streams");
    if (session == NULL || streams == NULL) {
        json_decref(doc);
        return ctl_bad_document(ctl, "session", session == NULL ? "session" : "streams");
    }
    v = view_new();
    view_set_raw(v, body, len, RAW_JSON);
    t = view_add_record(v, "session", session_record_cols,
                        sizeof session_record_cols / sizeof session_record_cols[0], NULL);
    session_cells(t, session, true);
    t = view_add_table(v, "stream", stream_cols, stream_ncols, "no streams");
    json_array_foreach(streams, i, s)
        stream_row(t, s);
    json_decref(doc);
    return ctl_emit(ctl, v);
}

static void sessions_path(const struct ctl_args *a, struct strbuf *path)
{
    sb_printf(path, "/v1/sessions");
    for (size_t i = 0; i < a->n_filters; i++) {
        const char *f = a->filters[i];
        const char *eq = strchr(f, '=');
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)(eq - f), f);
        if (strcmp(key, "min-streams") == 0)
            snprintf(key, sizeof key, "min_streams");
        ctl_query(path, key, eq + 1);
    }
}

static int fetch_sessions(struct ctl *ctl, char **body, size_t *len)
{
    struct strbuf path = {0};
    struct ctl_paging pg;
    int rc;

    sessions_path(&ctl->args, &path);
    pg.path = path.s;
    pg.array_key = "sessions";
    pg.cursor_param = "after";
    pg.next_key = "next";
    pg.want = ctl->args.limit;
    rc = ctl_get_paged(ctl, &pg, body, len);
    sb_free(&path);
    return rc;
}

/* ---- --watch ---- */

struct seen {
    char *pk, *kind, *remote;
};

struct seen_set {
    struct seen *items;
    size_t n;
};

static int seen_cmp(const void *a, const void *b)
{
    return strcmp(((const struct seen *)a)->pk, ((const struct seen *)b)->pk);
}

static void seen_free(struct seen_set *set)
{
    for (size_t i = 0; i < set->n; i++) {
        free(set->items[i].pk);
        free(set->items[i].kind);
        free(set->items[i].remote);
    }
    free(set->items);
    set->items = NULL;
    set->n = 0;
}

static bool seen_load(struct ctl *ctl, const char *body, size_t len, struct seen_set *set)
{
    json_t *doc = ctl_parse_body(ctl, body, len, "sessions");
    json_t *list, *s;
    size_t i;

    if (doc == NULL)
        return false;
    if ((list = jarr(doc, "sessions")) == NULL) {
        json_decref(doc);
        ctl_bad_document(ctl, "sessions", "sessions");
        return false;
    }
    set->items = xcalloc(json_array_size(list), sizeof *set->items);
    set->n = 0;
    json_array_foreach(list, i, s) {
        const char *pk = jstr(s, "public_key");
        if (pk == NULL)
            continue;
        set->items[set->n].pk = xstrdup(pk);
        set->items[set->n].kind = xstrdup(jstr(s, "kind") != NULL ? jstr(s, "kind") : "");
        set->items[set->n].remote =
            xstrdup(jstr(s, "remote_address") != NULL ? jstr(s, "remote_address") : "");
        set->n++;
    }
    qsort(set->items, set->n, sizeof *set->items, seen_cmp);
    json_decref(doc);
    return true;
}

static const struct column change_cols[] = {
    {"at", "TIME", 0},
    {"change", "CHANGE", 0},
    {"public_key", "PUBLIC KEY", 0},
    {"kind", "kind", COL_KV},
    {"remote_address", "remote", COL_KV},
};

static void change_row(struct view_table *t, const char *now, const char *change,
                       const struct seen *s)
{
    table_row(t);
    cell_time(t, now);
    cell_str(t, change);
    cell_str(t, s->pk);
    cell_str(t, s->kind);
    cell_str(t, s->remote);
}

/* Rows for what appeared and vanished between two sorted sets, counting both. */
static void diff_rows(struct view_table *t, const char *now, const struct seen_set *before,
                      const struct seen_set *after, size_t *added, size_t *removed)
{
    size_t i = 0, j = 0;

    *added = *removed = 0;
    while (i < before->n || j < after->n) {
        int c = i == before->n  ? 1
                : j == after->n ? -1
                                : strcmp(before->items[i].pk, after->items[j].pk);
        if (c < 0) {
            change_row(t, now, "-", &before->items[i++]);
            ++*removed;
        } else if (c > 0) {
            change_row(t, now, "+", &after->items[j++]);
            ++*added;
        } else {
            i++;
            j++;
        }
    }
}

static void sleep_seconds(double s)
{
    struct timespec ts;

    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int watch_sessions(struct ctl *ctl)
{
    struct seen_set before = {0}, after = {0};
    int rc = CTL_EXIT_OK;

    for (long long poll = 0; ctl->args.count == 0 || poll < ctl->args.count; poll++) {
        char *body = NULL;
        size_t len, added, removed;
        char now[32];
        struct view *v;

        if (poll > 0)
            sleep_seconds(ctl->args.interval_s);
        if ((rc = fetch_sessions(ctl, &body, &len)) != CTL_EXIT_OK)
            break;
        if (!seen_load(ctl, body, len, &after)) {
            free(body);
            rc = CTL_EXIT_REFUSED;
            break;
        }
        ctl_now_rfc3339(now, sizeof now);
        v = view_new();
        view_set_raw(v, body, len, RAW_JSON);
        free(body);
        diff_rows(view_add_table(v, "changes", change_cols,
                                 sizeof change_cols / sizeof change_cols[0], NULL),
                  now, &before, &after, &added, &removed);
        view_message(v, "%s  %zu sessions (+%zu -%zu)", now, after.n, added, removed);
        rc = output_stream(ctl->out, v) == 0 ? CTL_EXIT_OK : CTL_EXIT_OUTPUT;
        view_free(v);
        seen_free(&before);
        before = after;
        after.items = NULL;
        after.n = 0;
        if (rc != CTL_EXIT_OK)
            break;
    }
    seen_free(&before);
    seen_free(&after);
    return rc;
}

static int run_sessions(struct ctl *ctl)
{
    char *body;
    size_t len;
    int rc;

    if (ctl->args.given & OPT_WATCH)
        return watch_sessions(ctl);
    if ((rc = fetch_sessions(ctl, &body, &len)) != CTL_EXIT_OK)
        return rc;
    rc = render_session_list(ctl, body, len);
    free(body);
    return rc;
}

static int run_session_show(struct ctl *ctl)
{
    return ctl_get_pk_and_render(ctl, "/v1/sessions", render_session);
}

static int run_session_kick(struct ctl *ctl)
{
    int rc = ctl_delete_pk(ctl, "/v1/sessions");
    struct view *v;

    if (rc != CTL_EXIT_OK)
        return rc;
    v = view_new();
    view_message(v, "Session of %s is closing; the client may reconnect.", ctl->args.pk);
    return ctl_emit(ctl, v);
}

const struct ctl_command cmd_sessions = {
    "sessions", &noun_sessions,
    OPT_FILTER | OPT_LIMIT | OPT_WATCH | OPT_INTERVAL | OPT_COUNT, run_sessions};
const struct ctl_command cmd_session_show = {"session show", &noun_sessions, 0,
                                             run_session_show};
const struct ctl_command cmd_session_kick = {"session kick", &noun_sessions, 0,
                                             run_session_kick};
