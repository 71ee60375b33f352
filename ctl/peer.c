/* dmsgctl peer: the mesh peers (GET/POST /v1/peers, GET/DELETE /v1/peers/{pk}). */
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "http.h"

const struct ctl_noun noun_peer = {
    .name = "peer",
    .summary = "list, add and remove mesh peers (other dmsgd servers)",
    .synopsis = "peer ls\n"
                "peer show PK\n"
                "peer add PK HOST:PORT [--note TEXT]\n"
                "peer rm PK",
    .description =
        "Mesh peers are other DMSG servers this one keeps a session to, so that its\n"
        "clients reach their clients (one hop). Peers come from the config file\n"
        "(source config), from this command (admin) or from discovery (discovered).\n"
        "\n"
        "peer ls      every peer with the state of its link: up, connecting or down\n"
        "             (waiting to retry)\n"
        "peer show    one peer: its link in detail (last error, attempts, reconnects,\n"
        "             next attempt, whether the peer also links to us)\n"
        "peer add     store the peer and start linking to it; the answer does not\n"
        "             wait for the link (follow it with `peer show' or `events\n"
        "             --type peer_link'). The peer survives restarts.\n"
        "peer rm      forget the peer and close its link. Peers from the config file\n"
        "             cannot be removed here: edit the file and restart dmsgd.\n"
        "\n"
        "PK is the peer server's public key, 66 hex characters. HOST:PORT is its\n"
        "session listener (its public_address); IPv6 hosts go in brackets:\n"
        "[2001:db8::1]:8081. Both are checked before anything is sent. `peer' alone\n"
        "is `peer ls'; `remove' and `list' are synonyms of `rm' and `ls'.\n",
    .options = "--note TEXT\tpeer add: a note for operators (at most 256 characters)\n",
    .output = "peer ls, human and plain columns: public key, address, source, link state,\n"
              "since (when the link entered that state), streams, inbound (the peer also\n"
              "links to us), note.\n"
              "peer show/add, plain: one line: public key, address, source, added at,\n"
              "note, state, since, remote address, last error, attempts, reconnects,\n"
              "next attempt, inbound, streams.\n"
              "peer rm prints nothing but in human mode.\n",
    .examples = "dmsgctl peer ls\n"
                "dmsgctl peer add \\\n"
                "    03a4c3b1f0e8d7c6b5a49382716f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3 \\\n"
                "    relay2.example.net:8081 --note \"second relay, Frankfurt\"\n"
                "dmsgctl peer show \\\n"
                "    03a4c3b1f0e8d7c6b5a49382716f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3\n"
                "dmsgctl peer rm \\\n"
                "    03a4c3b1f0e8d7c6b5a49382716f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3\n"
                "dmsgctl peer ls --plain | awk -F'\\t' '$4 != \"up\"'   # peers not linked\n",
};

static const struct column list_cols[] = {
    {"public_key", "PUBLIC KEY", 0}, {"address", "ADDRESS", 0},
    {"source", "SOURCE", 0},         {"state", "LINK", 0},
    {"since", "SINCE", 0},           {"streams", "STREAMS", COL_RIGHT},
    {"inbound", "INBOUND", 0},       {"note", "NOTE", 0},
};

static const struct column record_cols[] = {
    {"public_key", "public key", 0},      {"address", "address", 0},
    {"source", "source", 0},              {"added_at", "added at", 0},
    {"note", "note", 0},                  {"state", "link", 0},
    {"since", "since", 0},                {"remote_address", "remote address", 0},
    {"last_error", "last error", 0},      {"attempts", "failed attempts", 0},
    {"reconnects", "reconnects", 0},      {"next_attempt_at", "next attempt", 0},
    {"inbound", "inbound", 0},            {"streams", "streams", 0},
};

static void list_row(struct view_table *t, const json_t *p)
{
    const json_t *link = jobj(p, "link");

    table_row(t);
    cell_str(t, jstr(p, "public_key"));
    cell_str(t, jstr(p, "address"));
    cell_str(t, jstr(p, "source"));
    cell_str(t, jstr(link, "state"));
    cell_time(t, jstr(link, "since"));
    json_int_cell(t, link, "streams");
    json_bool_cell(t, link, "inbound");
    cell_str(t, jstr(p, "note"));
}

static const struct ctl_list peer_list = {
    .what = "peer ls",
    .array_key = "peers",
    .table_name = "peers",
    .cols = list_cols,
    .ncols = sizeof list_cols / sizeof list_cols[0],
    .empty = "no peers (add one with `dmsgctl peer add PK HOST:PORT')",
    .total_noun = NULL,
    .row = list_row,
};

int render_peer_list(struct ctl *ctl, const char *body, size_t len)
{
    return ctl_render_list(ctl, body, len, &peer_list);
}

static void peer_record(struct view_table *t, const json_t *p)
{
    const json_t *link = jobj(p, "link");

    cell_str(t, jstr(p, "public_key"));
    cell_str(t, jstr(p, "address"));
    cell_str(t, jstr(p, "source"));
    cell_time(t, jstr(p, "added_at"));
    cell_str(t, jstr(p, "note"));
    cell_str(t, jstr(link, "state"));
    cell_time(t, jstr(link, "since"));
    cell_str(t, jstr(link, "remote_address"));
    cell_str(t, jstr(link, "last_error"));
    json_int_cell(t, link, "attempts");
    json_int_cell(t, link, "reconnects");
    cell_time(t, jstr(link, "next_attempt_at"));
    json_bool_cell(t, link, "inbound");
    json_int_cell(t, link, "streams");
}

int render_peer(struct ctl *ctl, const char *body, size_t len, const char *title)
{
    json_t *doc = ctl_parse_body(ctl, body, len, "peer");
    struct view *v;

    if (doc == NULL)
        return CTL_EXIT_REFUSED;
    if (jstr(doc, "public_key") == NULL || jobj(doc, "link") == NULL) {
        json_decref(doc);
        return ctl_bad_document(ctl, "peer", "public_key/link");
    }
    v = view_new();
    view_set_raw(v, body, len, RAW_JSON);
    peer_record(view_add_record(v, "peer", record_cols,
                                sizeof record_cols / sizeof record_cols[0], title),
                doc);
    json_decref(doc);
    return ctl_emit(ctl, v);
}

static int run_peer_ls(struct ctl *ctl)
{
    return ctl_call_and_render(ctl, "GET", "/v1/peers", NULL, render_peer_list);
}

static int render_peer_untitled(struct ctl *ctl, const char *body, size_t len)
{
    return render_peer(ctl, body, len, NULL);
}

static int run_peer_show(struct ctl *ctl)
{
    return ctl_get_pk_and_render(ctl, "/v1/peers", render_peer_untitled);
}

static int render_peer_added(struct ctl *ctl, const char *body, size_t len)
{
    return render_peer(ctl, body, len,
                       "Peer added; its link is starting (see `dmsgctl peer show PK').");
}

static int run_peer_add(struct ctl *ctl)
{
    json_t *req = json_object();
    char *body;
    int rc;

    json_object_set_new(req, "public_key", json_string(ctl->args.pk));
    json_object_set_new(req, "address", json_string(ctl->args.address));
    if (ctl->args.note != NULL)
        json_object_set_new(req, "note", json_string(ctl->args.note));
    body = json_dumps(req, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(req);
    if (body == NULL)
        fatal_bug("cannot encode the request (is the note valid UTF-8?)");
    rc = ctl_call_and_render(ctl, "POST", "/v1/peers", body, render_peer_added);
    free(body);
    return rc;
}

static int run_peer_rm(struct ctl *ctl)
{
    int rc = ctl_delete_pk(ctl, "/v1/peers");
    struct view *v;

    if (rc != CTL_EXIT_OK)
        return rc;
    v = view_new();
    view_message(v, "Peer %s removed; its link is closed.", ctl->args.pk);
    return ctl_emit(ctl, v);
}

const struct ctl_command cmd_peer_ls = {"peer ls", &noun_peer, 0, run_peer_ls};
const struct ctl_command cmd_peer_show = {"peer show", &noun_peer, 0, run_peer_show};
const struct ctl_command cmd_peer_add = {"peer add", &noun_peer, OPT_NOTE, run_peer_add};
const struct ctl_command cmd_peer_rm = {"peer rm", &noun_peer, 0, run_peer_rm};
