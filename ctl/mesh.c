/* dmsgctl mesh: this server's links to other servers (GET /v1/mesh), as a table or a
 * Graphviz picture. */
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "http.h"

const struct ctl_noun noun_mesh = {
    .name = "mesh",
    .summary = "this server's links to peer servers, as a table or a graph",
    .synopsis = "mesh [--dot]",
    .description =
        "Shows the mesh as this server sees it: every peer with the state of the\n"
        "outbound link (up, connecting, down), whether the peer also links to us\n"
        "(inbound), the streams relayed over it and the last link error; and the\n"
        "servers that link to us without being our peers (inbound only).\n"
        "With --dot it prints a Graphviz digraph instead: this server in bold, an\n"
        "edge to every peer coloured by the link's state (green up, orange\n"
        "connecting, red down) and a dotted edge back from every server that links\n"
        "to us.\n",
    .options = "--dot\tprint a Graphviz digraph (render it with dot -Tsvg)\n",
    .output = "Columns: peer key, address, source (config, admin, discovered; none for\n"
              "inbound only), outbound link state, since, inbound, streams, last error.\n"
              "Human mode first names this server's key.\n",
    .examples = "dmsgctl mesh\n"
                "dmsgctl mesh --dot | dot -Tsvg > mesh.svg\n",
};

static const struct column mesh_cols[] = {
    {"public_key", "PEER", 0},     {"address", "ADDRESS", 0},
    {"source", "SOURCE", 0},       {"outbound", "OUTBOUND", 0},
    {"since", "SINCE", 0},         {"inbound", "INBOUND", 0},
    {"streams", "STREAMS", COL_RIGHT}, {"last_error", "LAST ERROR", 0},
};

static void table_rows(struct view_table *t, json_t *peers, json_t *inbound_only)
{
    json_t *p;
    size_t i;

    json_array_foreach(peers, i, p) {
        const json_t *link = jobj(p, "link");
        table_row(t);
        cell_str(t, jstr(p, "public_key"));
        cell_str(t, jstr(p, "address"));
        cell_str(t, jstr(p, "source"));
        cell_str(t, jstr(link, "state"));
        cell_time(t, jstr(link, "since"));
        json_bool_cell(t, link, "inbound");
        json_int_cell(t, link, "streams");
        cell_str(t, jstr(link, "last_error"));
    }
    json_array_foreach(inbound_only, i, p) {
        table_row(t);
        cell_str(t, jstr(p, "public_key"));
        cell_str(t, jstr(p, "remote_address"));
        cell_str(t, NULL);
        cell_str(t, NULL);
        cell_time(t, jstr(p, "established_at"));
        cell_bool(t, true, true);
        json_int_cell(t, p, "streams");
        cell_str(t, NULL);
    }
}

static const char *state_attrs(const char *state)
{
    if (state != NULL && strcmp(state, "up") == 0)
        return "color=darkgreen";
    if (state != NULL && strcmp(state, "connecting") == 0)
        return "color=orange, style=dashed";
    return "color=red, style=dashed";
}

static void short_key(char *out, size_t cap, const char *pk)
{
    snprintf(out, cap, "%.8s\u2026", pk != NULL ? pk : "?");
}

static void graph(struct view *v, const char *self, json_t *peers, json_t *inbound_only)
{
    struct view_graph *g = view_add_graph(v, "dmsg_mesh");
    char key[32], *label;
    json_t *p;
    size_t i;

    short_key(key, sizeof key, self);
    label = xasprintf("this server\n%s", key);
    graph_node(g, self, label, "style=bold");
    free(label);
    json_array_foreach(peers, i, p) {
        const char *pk = jstr(p, "public_key");
        const json_t *link = jobj(p, "link");
        bool inbound = false;
        if (pk == NULL)
            continue;
        short_key(key, sizeof key, pk);
        label = xasprintf("%s\n%s", key, jstr(p, "address") != NULL ? jstr(p, "address") : "");
        graph_node(g, pk, label, NULL);
        free(label);
        graph_edge(g, self, pk, jstr(link, "state"), state_attrs(jstr(link, "state")));
        if (jbool(link, "inbound", &inbound) && inbound)
            graph_edge(g, pk, self, NULL, "style=dotted, color=gray40");
    }
    json_array_foreach(inbound_only, i, p) {
        const char *pk = jstr(p, "public_key");
        if (pk == NULL)
            continue;
        short_key(key, sizeof key, pk);
        label = xasprintf("%s\n(links to us, not our peer)", key);
        graph_node(g, pk, label, "style=dashed");
        free(label);
        graph_edge(g, pk, self, NULL, "style=dotted, color=gray40");
    }
}

int render_mesh(struct ctl *ctl, const char *body, size_t len, bool dot)
{
    json_t *doc = ctl_parse_body(ctl, body, len, "mesh");
    json_t *peers, *inbound_only;
    const char *self;
    struct view *v;

    if (doc == NULL)
        return CTL_EXIT_REFUSED;
    self = jstr(doc, "public_key");
    peers = jarr(doc, "peers");
    inbound_only = jarr(doc, "inbound_only");
    if (self == NULL || peers == NULL || inbound_only == NULL) {
        json_decref(doc);
        return ctl_bad_document(ctl, "mesh", self == NULL ? "public_key"
                                             : peers == NULL ? "peers"
                                                             : "inbound_only");
    }
    v = view_new();
    if (dot) {
        graph(v, self, peers, inbound_only);
    } else {
        view_set_raw(v, body, len, RAW_JSON);
        view_message(v, "this server: %s", self);
        table_rows(view_add_table(v, "mesh", mesh_cols, sizeof mesh_cols / sizeof mesh_cols[0],
                                  "no peers and no inbound peer links"),
                   peers, inbound_only);
    }
    json_decref(doc);
    return ctl_emit(ctl, v);
}

static int render_mesh_table(struct ctl *ctl, const char *body, size_t len)
{
    return render_mesh(ctl, body, len, false);
}

static int render_mesh_dot(struct ctl *ctl, const char *body, size_t len)
{
    return render_mesh(ctl, body, len, true);
}

static int run_mesh(struct ctl *ctl)
{
    return ctl_call_and_render(ctl, "GET", "/v1/mesh", NULL,
                               (ctl->args.given & OPT_DOT) != 0 ? render_mesh_dot
                                                                : render_mesh_table);
}

const struct ctl_command cmd_mesh = {"mesh", &noun_mesh, OPT_DOT, run_mesh};
