/* dmsgctl's rendering of dmsgd's documents (fixtures that follow api/openapi.yaml) in the
 * three output modes: --json prints the body byte for byte, --plain one tab-separated record
 * per line in the documented column order, human an aligned table or a record. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ctl_support.h"
#include "dmsg/cipher.h"
#include "dmsgctl.h"
#include "output.h"
#include "sse.h"
#include "util.h"

static void init(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

TestSuite(ctl_output, .init = init, .timeout = 10);

typedef int (*renderer)(struct ctl *ctl, const char *body, size_t len);

/* Renders a fixture in one mode; returns the exit status, out/err hold the text. */
static int render(renderer fn, const char *name, enum output_mode mode, struct ctl *ctl,
                  struct capture *out, struct capture *err)
{
    size_t len;
    char *body = fixture(name, &len);
    int rc;

    ctl_setup(ctl, mode, out, err);
    rc = fn(ctl, body, len);
    cap_text(out);
    cap_text(err);
    free(body);
    return rc;
}

static int render_peer_plain_title(struct ctl *ctl, const char *body, size_t len)
{
    return render_peer(ctl, body, len, "Peer added.");
}

static int render_mesh_table(struct ctl *ctl, const char *body, size_t len)
{
    return render_mesh(ctl, body, len, false);
}

static int render_mesh_dot(struct ctl *ctl, const char *body, size_t len)
{
    return render_mesh(ctl, body, len, true);
}

struct json_case {
    renderer fn;
    const char *fixture;
};

Test(ctl_output, json_mode_prints_the_daemons_body_unchanged)
{
    const struct json_case cases[] = {
        {render_peer_list, "peers.json"},        {render_peer_list, "peers_empty.json"},
        {render_peer_plain_title, "peer.json"},  {render_route_setup, "route_setup.json"},
        {render_route_setups, "route_setups.json"}, {render_session_list, "sessions.json"},
        {render_session, "session.json"},        {render_stream_list, "streams.json"},
        {render_mesh_table, "mesh.json"},        {render_info, "info.json"},
        {render_health, "health.json"},          {render_stats, "stats.json"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ctl ctl;
        struct capture out, err;
        size_t len;
        char *body = fixture(cases[i].fixture, &len);
        int rc = render(cases[i].fn, cases[i].fixture, OUTPUT_JSON, &ctl, &out, &err);

        cr_expect_eq(rc, CTL_EXIT_OK, "%s: %s", cases[i].fixture, err.buf);
        cr_expect_eq(out.len, len, "%s: %zu bytes printed, %zu received", cases[i].fixture,
                     out.len, len);
        cr_expect(out.len == len && memcmp(out.buf, body, len) == 0, "%s changed",
                  cases[i].fixture);
        free(body);
        ctl_teardown(&ctl, &out, &err);
    }
}

Test(ctl_output, json_mode_adds_a_final_newline_only_when_missing)
{
    struct ctl ctl;
    struct capture out, err;
    const char body[] = "{\"peers\":[]}";

    ctl_setup(&ctl, OUTPUT_JSON, &out, &err);
    cr_assert_eq(render_peer_list(&ctl, body, strlen(body)), CTL_EXIT_OK);
    cr_expect_str_eq(cap_text(&out), "{\"peers\":[]}\n");
    ctl_teardown(&ctl, &out, &err);
}

static json_t *at(json_t *doc, const char *path)
{
    /* "a.b.c": members only */
    char buf[128];
    char *save, *key;
    json_t *v = doc;

    snprintf(buf, sizeof buf, "%s", path);
    for (key = strtok_r(buf, ".", &save); key != NULL && v != NULL;
         key = strtok_r(NULL, ".", &save))
        v = json_object_get(v, key);
    return v;
}

/* Checks that each plain line equals the fields taken from the JSON objects at the given
 * member paths, in order. */
static void expect_plain_rows(const char *what, const char *text, json_t *items,
                              const char *const *paths, size_t npaths, const char *prefix)
{
    struct lines l;
    size_t i;
    json_t *item;

    lines_split(&l, text);
    cr_expect_eq(l.n, json_array_size(items), "%s: %zu lines for %zu records", what, l.n,
                 json_array_size(items));
    json_array_foreach(items, i, item) {
        json_t *values[32];
        char expect[4096], line[4200];
        for (size_t k = 0; k < npaths; k++)
            values[k] = at(item, paths[k]);
        plain_expect(expect, sizeof expect, values, npaths);
        snprintf(line, sizeof line, "%s%s%s", prefix != NULL ? prefix : "",
                 prefix != NULL ? "\t" : "", expect);
        if (i < l.n)
            cr_expect_str_eq(l.v[i], line, "%s: record %zu", what, i);
    }
    lines_free(&l);
}

Test(ctl_output, peer_list_plain_and_human)
{
    static const char *const paths[] = {"public_key", "address", "source", "link.state",
                                        "link.since", "link.streams", "link.inbound", "note"};
    json_t *doc = fixture_json("peers.json");
    struct ctl ctl;
    struct capture out, err;
    struct lines l;
    json_t *p;
    size_t i;

    cr_assert_eq(render(render_peer_list, "peers.json", OUTPUT_PLAIN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    expect_plain_rows("peer ls", out.buf, json_object_get(doc, "peers"), paths, 8, NULL);
    ctl_teardown(&ctl, &out, &err);

    cr_assert_eq(render(render_peer_list, "peers.json", OUTPUT_HUMAN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    lines_split(&l, out.buf);
    cr_assert_eq(l.n, 1 + json_array_size(json_object_get(doc, "peers")));
    cr_expect(strncmp(l.v[0], "PUBLIC KEY", 10) == 0, "header: %s", l.v[0]);
    /* Columns line up: each address starts where the ADDRESS header does. */
    {
        size_t col = (size_t)(strstr(l.v[0], "ADDRESS") - l.v[0]);
        json_array_foreach(json_object_get(doc, "peers"), i, p) {
            const char *addr = json_string_value(json_object_get(p, "address"));
            cr_expect(strncmp(l.v[1 + i] + col, addr, strlen(addr)) == 0,
                      "row %zu: address not under its header:\n%s\n%s", i, l.v[0], l.v[1 + i]);
            cr_expect(strncmp(l.v[1 + i], json_string_value(json_object_get(p, "public_key")),
                              66) == 0,
                      "human peer tables show whole keys");
        }
    }
    cr_expect(strstr(out.buf, "Frankfurt — rack 3") != NULL, "the note is shown");
    cr_expect(strstr(out.buf, "2026-04-09 10:00:02Z") != NULL,
              "human times drop the T and the fraction: %s", out.buf);
    for (i = 0; i < l.n; i++)
        cr_expect(l.v[i][0] == '\0' || l.v[i][strlen(l.v[i]) - 1] != ' ',
                  "line %zu ends with spaces", i);
    lines_free(&l);
    ctl_teardown(&ctl, &out, &err);
    json_decref(doc);
}

Test(ctl_output, empty_lists)
{
    struct ctl ctl;
    struct capture out, err;

    cr_assert_eq(render(render_peer_list, "peers_empty.json", OUTPUT_HUMAN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    cr_expect(strstr(out.buf, "no peers") != NULL, "%s", out.buf);
    cr_expect(strstr(out.buf, "dmsgctl peer add") != NULL, "says how to add one");
    ctl_teardown(&ctl, &out, &err);
    cr_assert_eq(render(render_peer_list, "peers_empty.json", OUTPUT_PLAIN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    cr_expect_eq(out.len, 0, "plain prints no line for no record: `%s'", out.buf);
    ctl_teardown(&ctl, &out, &err);
}

Test(ctl_output, peer_record)
{
    static const char *const paths[] = {
        "public_key",          "address",        "source",         "added_at",
        "note",                "link.state",     "link.since",     "link.remote_address",
        "link.last_error",     "link.attempts",  "link.reconnects", "link.next_attempt_at",
        "link.inbound",        "link.streams"};
    json_t *doc = fixture_json("peer.json");
    json_t *one = json_array();
    struct ctl ctl;
    struct capture out, err;

    json_array_append(one, doc);
    cr_assert_eq(render(render_peer_plain_title, "peer.json", OUTPUT_PLAIN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    expect_plain_rows("peer show", out.buf, one, paths, 14, NULL);
    ctl_teardown(&ctl, &out, &err);

    cr_assert_eq(render(render_peer_plain_title, "peer.json", OUTPUT_HUMAN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    cr_expect(strncmp(out.buf, "Peer added.\n", 12) == 0, "the title comes first: %s",
              out.buf);
    cr_expect(strstr(out.buf, "last error:") != NULL);
    cr_expect(strstr(out.buf, "connect: connection refused") != NULL);
    cr_expect(strstr(out.buf, "remote address:   -\n") != NULL,
              "null shows as - and labels align: %s", out.buf);
    ctl_teardown(&ctl, &out, &err);
    json_decref(one);
    json_decref(doc);
}

Test(ctl_output, route_setup_and_routes)
{
    static const char *const state_paths[] = {"enabled", "configured", "source", "updated_at",
                                              "in_flight"};
    static const char *const route_paths[] = {
        "id",           "started_at",   "requester", "source", "destination",
        "hops_forward", "hops_reverse", "state",     "duration_ms", "error"};
    json_t *doc = fixture_json("route_setup.json");
    json_t *one = json_array();
    json_t *routes = fixture_json("route_setups.json");
    struct ctl ctl;
    struct capture out, err;

    json_array_append(one, doc);
    cr_assert_eq(render(render_route_setup, "route_setup.json", OUTPUT_PLAIN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    expect_plain_rows("route-setup", out.buf, one, state_paths, 5, NULL);
    ctl_teardown(&ctl, &out, &err);
    cr_assert_eq(render(render_route_setup, "route_setup_off.json", OUTPUT_HUMAN, &ctl, &out,
                        &err),
                 CTL_EXIT_OK);
    cr_expect(strstr(out.buf, "Route setup is off") != NULL, "%s", out.buf);
    cr_expect(strstr(out.buf, "updated at:  -") != NULL, "%s", out.buf);
    ctl_teardown(&ctl, &out, &err);

    cr_assert_eq(render(render_route_setups, "route_setups.json", OUTPUT_PLAIN, &ctl, &out,
                        &err),
                 CTL_EXIT_OK);
    expect_plain_rows("routes", out.buf, json_object_get(routes, "route_setups"), route_paths,
                      10, NULL);
    ctl_teardown(&ctl, &out, &err);
    cr_assert_eq(render(render_route_setups, "route_setups.json", OUTPUT_HUMAN, &ctl, &out,
                        &err),
                 CTL_EXIT_OK);
    cr_expect(strstr(out.buf, "026f4f52\u20261ea9") != NULL, "human tables shorten keys: %s",
              out.buf);
    cr_expect(strstr(out.buf, "350 ms") != NULL);
    ctl_teardown(&ctl, &out, &err);
    json_decref(one);
    json_decref(doc);
    json_decref(routes);
}

Test(ctl_output, sessions_and_streams)
{
    static const char *const session_paths[] = {
        "public_key", "kind",     "remote_address", "age_seconds",     "idle_seconds",
        "streams",    "rx_bytes", "tx_bytes",       "out_queued_bytes"};
    static const char *const stream_paths[] = {
        "id",           "path",         "state",         "initiator.public_key",
        "initiator.port", "responder.public_key", "responder.port", "via_peer",
        "age_seconds",  "idle_seconds", "bytes_forward", "bytes_reverse"};
    json_t *sessions = fixture_json("sessions.json");
    json_t *streams = fixture_json("streams.json");
    struct ctl ctl;
    struct capture out, err;

    cr_assert_eq(render(render_session_list, "sessions.json", OUTPUT_PLAIN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    expect_plain_rows("sessions", out.buf, json_object_get(sessions, "sessions"),
                      session_paths, 9, NULL);
    ctl_teardown(&ctl, &out, &err);

    cr_assert_eq(render(render_session_list, "sessions.json", OUTPUT_HUMAN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    cr_expect(strstr(out.buf, "70.0 MiB") != NULL, "bytes in human units: %s", out.buf);
    cr_expect(strstr(out.buf, "2h3m") != NULL, "durations in human units: %s", out.buf);
    ctl_teardown(&ctl, &out, &err);

    cr_assert_eq(render(render_stream_list, "streams.json", OUTPUT_PLAIN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    expect_plain_rows("streams", out.buf, json_object_get(streams, "streams"), stream_paths, 12,
                      NULL);
    ctl_teardown(&ctl, &out, &err);
    json_decref(sessions);
    json_decref(streams);
}

Test(ctl_output, one_session_plain_prefixes_each_section)
{
    static const char *const session_paths[] = {
        "public_key", "kind",         "remote_address", "established_at",
        "age_seconds", "idle_seconds", "streams",        "rx_bytes",
        "tx_bytes",   "out_queued_bytes"};
    json_t *doc = fixture_json("session.json");
    json_t *one = json_array();
    struct ctl ctl;
    struct capture out, err;
    struct lines l;

    json_array_append(one, json_object_get(doc, "session"));
    cr_assert_eq(render(render_session, "session.json", OUTPUT_PLAIN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    lines_split(&l, out.buf);
    cr_assert_eq(l.n, 1 + json_array_size(json_object_get(doc, "streams")));
    cr_expect(strncmp(l.v[0], "session\t", 8) == 0, "%s", l.v[0]);
    {
        char first[4096];
        snprintf(first, sizeof first, "%s", l.v[0] + 8);
        expect_plain_rows("session", first, one, session_paths, 10, NULL);
    }
    for (size_t i = 1; i < l.n; i++)
        cr_expect(strncmp(l.v[i], "stream\t", 7) == 0, "%s", l.v[i]);
    lines_free(&l);
    ctl_teardown(&ctl, &out, &err);
    json_decref(one);
    json_decref(doc);
}

Test(ctl_output, mesh_table_and_dot)
{
    json_t *doc = fixture_json("mesh.json");
    json_t *peers = json_object_get(doc, "peers"), *p;
    const char *self = json_string_value(json_object_get(doc, "public_key"));
    struct ctl ctl;
    struct capture out, err;
    struct lines l;
    size_t i;

    cr_assert_eq(render(render_mesh_table, "mesh.json", OUTPUT_PLAIN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    lines_split(&l, out.buf);
    cr_expect_eq(l.n, json_array_size(peers) + json_array_size(json_object_get(doc,
                                                                                "inbound_only")));
    cr_expect(strstr(l.v[l.n - 1], "\t(none)\t(none)\t") != NULL,
              "an inbound-only server has no source or outbound state: %s", l.v[l.n - 1]);
    lines_free(&l);
    ctl_teardown(&ctl, &out, &err);

    cr_assert_eq(render(render_mesh_dot, "mesh.json", OUTPUT_HUMAN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    cr_expect(strncmp(out.buf, "digraph \"dmsg_mesh\" {\n", 22) == 0, "%s", out.buf);
    cr_expect(out.buf[out.len - 2] == '}');
    json_array_foreach(peers, i, p) {
        char edge[256];
        const char *state = json_string_value(json_object_get(json_object_get(p, "link"),
                                                              "state"));
        snprintf(edge, sizeof edge, "\"%s\" -> \"%s\" [label=\"%s\", color=%s", self,
                 json_string_value(json_object_get(p, "public_key")), state,
                 strcmp(state, "up") == 0 ? "darkgreen"
                 : strcmp(state, "connecting") == 0 ? "orange"
                                                     : "red");
        cr_expect(strstr(out.buf, edge) != NULL, "no edge `%s' in\n%s", edge, out.buf);
    }
    ctl_teardown(&ctl, &out, &err);
    json_decref(doc);
}

Test(ctl_output, dot_labels_are_escaped)
{
    struct view *v = view_new();
    struct view_graph *g = view_add_graph(v, "g");
    struct capture out;
    struct output *o;

    cap_open(&out);
    o = output_new(OUTPUT_HUMAN, out.f);
    graph_node(g, "a\"b", "line one\nsay \"hi\" \\o/", NULL);
    cr_assert_eq(output_emit(o, v), 0);
    cr_expect(strstr(cap_text(&out), "\"a\\\"b\" [label=\"line one\\nsay \\\"hi\\\" \\\\o/\"]") !=
                  NULL,
              "%s", out.buf);
    output_free(o);
    view_free(v);
    cap_close(&out);
}

Test(ctl_output, info_and_health)
{
    static const char *const info_paths[] = {
        "public_key", "version", "pid", "started_at", "uptime_seconds", "config_path",
        "state_dir", "addresses.local", "addresses.public", "addresses.health",
        "addresses.embedded_discovery", "addresses.admin_socket", "addresses.admin_tcp",
        "discovery.url", "discovery.embedded", "limits.max_sessions",
        "limits.max_sessions_hard", "limits.max_streams_per_session", "route_setup.enabled",
        "counts.sessions", "counts.client_sessions", "counts.peer_sessions", "counts.streams",
        "counts.peers", "counts.peers_up", "log_level", "update_interval_seconds",
        "schema_version"};
    static const char *const health_paths[] = {"status", "version", "public_key",
                                               "uptime_seconds", "sessions", "peers.total",
                                               "peers.up", "route_setup", "store"};
    json_t *info = json_array(), *health = json_array();
    struct ctl ctl;
    struct capture out, err;

    json_array_append_new(info, fixture_json("info.json"));
    json_array_append_new(health, fixture_json("health.json"));
    cr_assert_eq(render(render_info, "info.json", OUTPUT_PLAIN, &ctl, &out, &err), CTL_EXIT_OK);
    expect_plain_rows("info", out.buf, info, info_paths, 28, NULL);
    ctl_teardown(&ctl, &out, &err);
    cr_assert_eq(render(render_health, "health.json", OUTPUT_PLAIN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    expect_plain_rows("health", out.buf, health, health_paths, 9, NULL);
    ctl_teardown(&ctl, &out, &err);

    cr_expect_eq(render(render_health, "health_draining.json", OUTPUT_HUMAN, &ctl, &out, &err),
                 CTL_EXIT_REFUSED, "a draining daemon is not healthy");
    cr_expect(strstr(out.buf, "draining") != NULL, "the document is still shown");
    cr_expect(strstr(err.buf, "not serving (status draining)") != NULL, "%s", err.buf);
    ctl_teardown(&ctl, &out, &err);
    json_decref(info);
    json_decref(health);
}

Test(ctl_output, stats_summaries)
{
    struct ctl ctl;
    struct capture out, err;
    struct lines l;
    json_t *doc = fixture_json("stats.json");
    json_t *counter = json_array_get(json_object_get(doc, "series"), 1);
    json_t *samples = json_object_get(counter, "samples");
    double first = json_number_value(json_array_get(json_array_get(samples, 0), 1));
    double mid = json_number_value(json_array_get(json_array_get(samples, 1), 1));
    double last = json_number_value(json_array_get(json_array_get(samples, 2), 1));
    double t0 = json_number_value(json_array_get(json_array_get(samples, 0), 0));
    double t2 = json_number_value(json_array_get(json_array_get(samples, 2), 0));
    char expect[256];

    cr_assert(last < mid, "the fixture's counter must reset for this test");
    cr_assert_eq(render(render_stats, "stats.json", OUTPUT_PLAIN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    lines_split(&l, out.buf);
    cr_assert_eq(l.n, 3);
    /* After a reset the counter counts from zero: (mid - first) + last. */
    snprintf(expect, sizeof expect, "%s\tcounter\t3\t%.15g\t%.15g\t%.15g\t%.15g\t%.15g\t%.15g",
             json_string_value(json_object_get(counter, "name")), first, last,
             fmin(first, fmin(mid, last)), fmax(first, fmax(mid, last)), (mid - first) + last,
             ((mid - first) + last) / (t2 - t0));
    cr_expect_str_eq(l.v[1], expect);
    cr_expect(strstr(l.v[0], "\tgauge\t3\t") != NULL, "%s", l.v[0]);
    cr_expect(strstr(l.v[0], "\t(none)") != NULL, "gauges have no rate: %s", l.v[0]);
    cr_expect(strstr(l.v[2], "\t0\t(none)\t") != NULL, "a series without samples: %s",
              l.v[2]);
    lines_free(&l);
    ctl_teardown(&ctl, &out, &err);
    json_decref(doc);
}

Test(ctl_output, metrics_in_three_modes)
{
    size_t len, samples = 0;
    char *text = fixture("metrics.txt", &len);
    struct ctl ctl;
    struct capture out, err;
    struct lines src, l;
    json_t *arr;

    lines_split(&src, text);
    for (size_t i = 0; i < src.n; i++)
        samples += src.v[i][0] != '#' && src.v[i][0] != '\0';

    cr_assert_eq(render(render_metrics, "metrics.txt", OUTPUT_HUMAN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    cr_expect(out.len == len && memcmp(out.buf, text, len) == 0,
              "human mode prints the Prometheus text unchanged");
    ctl_teardown(&ctl, &out, &err);

    cr_assert_eq(render(render_metrics, "metrics.txt", OUTPUT_PLAIN, &ctl, &out, &err),
                 CTL_EXIT_OK);
    lines_split(&l, out.buf);
    cr_expect_eq(l.n, samples);
    cr_expect_str_eq(l.v[0], "dmsgd_build_info{version=\"0.1.0\"}\t1");
    for (size_t i = 0; i < l.n; i++) {
        if (strstr(l.v[i], "le=\"+Inf\"") != NULL)
            cr_expect(strstr(l.v[i], "\t5") != NULL, "%s", l.v[i]);
        if (strncmp(l.v[i], "dmsgd_relay_bytes_total{path=\"local\"}", 37) == 0)
            cr_expect_str_eq(strchr(l.v[i], '\t') + 1, "123456789012",
                             "large counters stay exact");
    }
    lines_free(&l);
    ctl_teardown(&ctl, &out, &err);

    cr_assert_eq(render(render_metrics, "metrics.txt", OUTPUT_JSON, &ctl, &out, &err),
                 CTL_EXIT_OK);
    arr = json_loads(out.buf, 0, NULL);
    cr_assert(json_is_array(arr), "%s", out.buf);
    cr_expect_eq(json_array_size(arr), samples);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(arr, 0), "series")),
                     "dmsgd_build_info{version=\"0.1.0\"}");
    cr_expect(json_number_value(json_object_get(json_array_get(arr, 0), "value")) == 1.0);
    json_decref(arr);
    ctl_teardown(&ctl, &out, &err);
    lines_free(&src);
    free(text);
}

Test(ctl_output, metrics_that_are_not_prometheus_are_refused)
{
    static const char *const bad[] = {"dmsgd_x{a=\"1\" 3\n", "dmsgd_x\n", "9bad 1\n",
                                      "dmsgd_x one\n", "dmsgd_x{a=\"}\"} \n"};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ctl ctl;
        struct capture out, err;
        ctl_setup(&ctl, OUTPUT_PLAIN, &out, &err);
        cr_expect_eq(render_metrics(&ctl, bad[i], strlen(bad[i])), CTL_EXIT_REFUSED, "%s",
                     bad[i]);
        cr_expect(strstr(cap_text(&err), "line 1") != NULL);
        ctl_teardown(&ctl, &out, &err);
    }
}

Test(ctl_output, documents_that_break_the_contract_are_reported)
{
    struct bad_doc {
        renderer fn;
        const char *body;
        const char *says;
    } cases[] = {
        {render_peer_list, "not json", "not the JSON object"},
        {render_peer_list, "[]", "not an object"},
        {render_peer_list, "{\"peers\":{}}", "lacks `peers'"},
        {render_session_list, "{}", "lacks `sessions'"},
        {render_session, "{\"session\":{}}", "lacks `streams'"},
        {render_route_setup, "{\"enabled\":\"yes\"}", "lacks `enabled'"},
        {render_stats, "{\"series\":[{\"name\":\"x\",\"kind\":\"gauge\",\"samples\":[[1]]}]}",
         "series[]"},
        {render_info, "{}", "lacks `public_key'"},
        {render_health, "{}", "lacks `status'"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ctl ctl;
        struct capture out, err;
        ctl_setup(&ctl, OUTPUT_HUMAN, &out, &err);
        cr_expect_eq(cases[i].fn(&ctl, cases[i].body, strlen(cases[i].body)), CTL_EXIT_REFUSED,
                     "%s", cases[i].body);
        cr_expect(strstr(cap_text(&err), cases[i].says) != NULL, "%s: %s", cases[i].body,
                  err.buf);
        cr_expect(strstr(err.buf, "versions") != NULL, "says what to do: %s", err.buf);
        cr_expect_eq(strlen(cap_text(&out)), 0, "nothing on stdout");
        ctl_teardown(&ctl, &out, &err);
    }
}

struct event_capture {
    struct ctl *ctl;
    size_t n;
    int rc;
};

static int render_each(void *user, const struct sse_event *ev)
{
    struct event_capture *c = user;

    c->n++;
    c->rc = render_event(c->ctl, ev->type, ev->data, ev->data_len);
    return c->rc;
}

static size_t render_events(enum output_mode mode, struct ctl *ctl, struct capture *out,
                            struct capture *err)
{
    size_t len;
    char *text = fixture("events.sse", &len);
    struct sse_parser p;
    struct event_capture c = {.ctl = ctl};

    ctl_setup(ctl, mode, out, err);
    sse_init(&p, 65536, render_each, &c);
    cr_assert_eq(sse_feed(&p, text, len), 0, "%s", cap_text(err));
    sse_free(&p);
    free(text);
    cap_text(out);
    return c.n;
}

Test(ctl_output, events_in_three_modes)
{
    struct ctl ctl;
    struct capture out, err;
    struct lines l;
    size_t n;

    n = render_events(OUTPUT_JSON, &ctl, &out, &err);
    lines_split(&l, out.buf);
    cr_assert_eq(l.n, n);
    for (size_t i = 0; i < l.n; i++) {
        json_t *e = json_loads(l.v[i], 0, NULL);
        cr_expect(json_is_object(e), "each line is one event object: %s", l.v[i]);
        json_decref(e);
    }
    lines_free(&l);
    ctl_teardown(&ctl, &out, &err);

    n = render_events(OUTPUT_PLAIN, &ctl, &out, &err);
    lines_split(&l, out.buf);
    cr_assert_eq(l.n, n);
    cr_expect(strncmp(l.v[0], "2026-04-09T12:00:00Z\tsession_up\t02", 34) == 0, "%s", l.v[0]);
    cr_expect(strstr(l.v[2], "\t026f4f524720230f86b3047e69fad7b48e09da1119588b051d6055a83d83a31ea9"
                             ":49153\t") != NULL,
              "stream ends as pk:port: %s", l.v[2]);
    lines_free(&l);
    ctl_teardown(&ctl, &out, &err);

    n = render_events(OUTPUT_HUMAN, &ctl, &out, &err);
    lines_split(&l, out.buf);
    cr_assert_eq(l.n, n);
    cr_expect(strstr(l.v[1], "session_down") != NULL && strstr(l.v[1], "reason=kicked") != NULL,
              "%s", l.v[1]);
    cr_expect(strstr(l.v[1], "lasted=1h0m") != NULL, "%s", l.v[1]);
    cr_expect(strstr(l.v[4], "from=up") != NULL && strstr(l.v[4], "to=down") != NULL, "%s",
              l.v[4]);
    lines_free(&l);
    ctl_teardown(&ctl, &out, &err);
}

Test(ctl_output, unknown_event_types_are_shown_not_dropped)
{
    struct ctl ctl;
    struct capture out, err;
    const char data[] = "{\"type\":\"galaxy_brain\",\"at\":\"2026-04-09T12:00:00Z\",\"x\":1}";

    ctl_setup(&ctl, OUTPUT_PLAIN, &out, &err);
    cr_assert_eq(render_event(&ctl, "galaxy_brain", data, strlen(data)), CTL_EXIT_OK);
    cr_expect(strstr(cap_text(&out), "galaxy_brain\t{") != NULL, "%s", out.buf);
    ctl_teardown(&ctl, &out, &err);
}

Test(ctl_output, human_units)
{
    char b[32];

    format_bytes(b, sizeof b, 0);
    cr_expect_str_eq(b, "0 B");
    format_bytes(b, sizeof b, 1023);
    cr_expect_str_eq(b, "1023 B");
    format_bytes(b, sizeof b, 1536);
    cr_expect_str_eq(b, "1.5 KiB");
    format_bytes(b, sizeof b, 5LL << 30);
    cr_expect_str_eq(b, "5.0 GiB");
    format_duration(b, sizeof b, 59);
    cr_expect_str_eq(b, "59s");
    format_duration(b, sizeof b, 61);
    cr_expect_str_eq(b, "1m1s");
    format_duration(b, sizeof b, 3 * 3600 + 12 * 60 + 5);
    cr_expect_str_eq(b, "3h12m");
    format_duration(b, sizeof b, 4 * 86400 + 3 * 3600);
    cr_expect_str_eq(b, "4d3h");
    format_duration(b, sizeof b, -1);
    cr_expect_str_eq(b, "-");
}

Test(ctl_output, plain_cells_never_contain_tabs_or_line_breaks)
{
    static const struct column cols[] = {{"a", "A", 0}, {"b", "B", 0}};
    struct view *v = view_new();
    struct view_table *t = view_add_table(v, "t", cols, 2, NULL);
    struct capture out;
    struct output *o;

    cap_open(&out);
    o = output_new(OUTPUT_PLAIN, out.f);
    table_row(t);
    cell_str(t, "one\ttwo\nthree");
    cell_str(t, "");
    cr_assert_eq(output_emit(o, v), 0);
    cr_expect_str_eq(cap_text(&out), "one two three\t(none)\n");
    output_free(o);
    view_free(v);
    cap_close(&out);
}

Test(ctl_output, write_failures_are_reported)
{
    struct ctl ctl;
    struct capture out, err;
    FILE *full = fopen("/dev/full", "w");
    size_t len;
    char *body = fixture("peers.json", &len);

    cr_assert_not_null(full);
    ctl_setup(&ctl, OUTPUT_JSON, &out, &err);
    output_free(ctl.out);
    ctl.out = output_new(OUTPUT_JSON, full);
    cr_expect_eq(render_peer_list(&ctl, body, len), CTL_EXIT_OUTPUT);
    cr_expect(output_failed(ctl.out));
    fclose(full);
    free(body);
    ctl_teardown(&ctl, &out, &err);
}
