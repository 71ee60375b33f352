/* The Prometheus exposition (daemon/metrics_text.c) and the counters daemon/metrics.c keeps:
 * the text follows format 0.0.4 and the contract's family list. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsgd.h"
#include "metrics.h"

TestSuite(admin_metrics, .timeout = 10);

/* The families of api/openapi.yaml (responses/Metrics) with their types. */
static const struct {
    const char *name, *type;
} contract[] = {
    {"dmsgd_build_info", "gauge"},
    {"dmsgd_start_time_seconds", "gauge"},
    {"dmsgd_sessions", "gauge"},
    {"dmsgd_sessions_total", "counter"},
    {"dmsgd_connections_rejected_total", "counter"},
    {"dmsgd_handshakes_failed_total", "counter"},
    {"dmsgd_sessions_evicted_total", "counter"},
    {"dmsgd_streams", "gauge"},
    {"dmsgd_streams_opened_total", "counter"},
    {"dmsgd_streams_failed_total", "counter"},
    {"dmsgd_relay_bytes_total", "counter"},
    {"dmsgd_peer_up", "gauge"},
    {"dmsgd_peer_reconnects_total", "counter"},
    {"dmsgd_route_setups_total", "counter"},
    {"dmsgd_route_setup_duration_seconds", "histogram"},
    {"dmsgd_route_setups_in_flight", "gauge"},
    {"dmsgd_discovery_updates_total", "counter"},
    {"dmsgd_store_errors_total", "counter"},
    {"dmsgd_admin_requests_total", "counter"},
    {"process_open_fds", "gauge"},
    {"process_resident_memory_bytes", "gauge"},
    {"process_start_time_seconds", "gauge"},
};

static void sample_snapshot(struct metrics_snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->version = "1.2.3-\"quoted\"\\back\nline";
    s->start_time_seconds = 1775736000.25;
    s->sessions[METRICS_CLIENT] = 12;
    s->sessions[METRICS_PEER] = 2;
    s->streams_failed[MP_NONE][MF_RATE] = 7;
    s->relay_bytes[MP_MESH] = 123456789012ULL;
    s->n_peers = 2;
    strcpy(s->peers[0].pk_hex, "02aa");
    s->peers[0].up = true;
    s->peers[0].reconnects = 3;
    strcpy(s->peers[1].pk_hex, "03bb");
    s->rs_bucket_counts[0] = 1;
    s->rs_bucket_counts[3] = 2;
    s->rs_count = 4; /* one above 60 s */
    s->rs_sum_seconds = 75.5;
    s->admin_status[0] = 200;
    s->admin_status[1] = 404;
    s->admin_requests[0] = 5;
}

/* Finds the line that starts with prefix; returns its value text or NULL. */
static const char *value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return line + n + 1;
    }
    return NULL;
}

static bool value_is(const char *text, const char *series, const char *want)
{
    const char *v = value_of(text, series);
    return v && strncmp(v, want, strlen(want)) == 0 && v[strlen(want)] == '\n';
}

Test(admin_metrics, every_contract_family_with_help_and_type_once)
{
    struct metrics_snapshot s;
    sample_snapshot(&s);
    size_t len;
    char *text = metrics_render(&s, &len);
    cr_assert_not_null(text);
    cr_assert_eq(strlen(text), len);
    cr_assert_eq(text[len - 1], '\n', "the last line ends with a newline");
    for (size_t i = 0; i < sizeof contract / sizeof contract[0]; i++) {
        char help[128], type[128];
        snprintf(help, sizeof help, "# HELP %s ", contract[i].name);
        snprintf(type, sizeof type, "# TYPE %s %s\n", contract[i].name, contract[i].type);
        const char *h = strstr(text, help);
        cr_assert_not_null(h, "%s", contract[i].name);
        cr_assert_null(strstr(h + 1, help), "one HELP for %s", contract[i].name);
        cr_assert_not_null(strstr(text, type), "%s", type);
        if (strcmp(contract[i].type, "counter") == 0)
            cr_assert(strstr(contract[i].name, "_total") != NULL);
    }
    free(text);
}

Test(admin_metrics, lines_are_well_formed)
{
    struct metrics_snapshot s;
    sample_snapshot(&s);
    char *text = metrics_render(&s, NULL);
    char *save = NULL;
    int samples = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') {
            cr_assert(strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0,
                      "%s", line);
            continue;
        }
        samples++;
        /* name[{labels}] value, no timestamp */
        const char *c = line;
        cr_assert((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_', "%s", line);
        while ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
               *c == '_' || *c == ':')
            c++;
        if (*c == '{') {
            const char *close = strrchr(line, '}');
            cr_assert_not_null(close, "%s", line);
            c = close + 1;
        }
        cr_assert_eq(*c, ' ', "%s", line);
        char *end;
        strtod(c + 1, &end);
        cr_assert(end != c + 1 && *end == '\0', "one value and no timestamp: %s", line);
    }
    cr_assert_gt(samples, 80);
    free(text);
}

Test(admin_metrics, values_labels_and_escaping)
{
    struct metrics_snapshot s;
    sample_snapshot(&s);
    char *text = metrics_render(&s, NULL);
    cr_assert(value_is(text, "dmsgd_sessions{kind=\"client\"}", "12"));
    cr_assert(value_is(text, "dmsgd_sessions{kind=\"peer\"}", "2"));
    cr_assert(value_is(text, "dmsgd_streams_failed_total{path=\"none\",reason=\"rate\"}", "7"));
    cr_assert(value_is(text, "dmsgd_streams_failed_total{path=\"mesh\",reason=\"internal\"}", "0"),
              "every known combination is present at 0");
    cr_assert(value_is(text, "dmsgd_relay_bytes_total{path=\"mesh\"}", "123456789012"));
    cr_assert(value_is(text, "dmsgd_peer_up{peer=\"02aa\"}", "1"));
    cr_assert(value_is(text, "dmsgd_peer_up{peer=\"03bb\"}", "0"));
    cr_assert(value_is(text, "dmsgd_peer_reconnects_total{peer=\"02aa\"}", "3"));
    cr_assert(value_is(text, "dmsgd_admin_requests_total{code=\"404\"}", "0"));
    cr_assert(value_is(text, "dmsgd_start_time_seconds", "1775736000.25"));
    cr_assert(value_is(text, "dmsgd_build_info{version=\"1.2.3-\\\"quoted\\\"\\\\back\\nline\"}",
                       "1"),
              "label values escape \\\\, \\\" and newline:\n%s", text);
    free(text);
}

Test(admin_metrics, histogram_buckets_are_cumulative)
{
    struct metrics_snapshot s;
    sample_snapshot(&s);
    char *text = metrics_render(&s, NULL);
    cr_assert(value_is(text, "dmsgd_route_setup_duration_seconds_bucket{le=\"0.01\"}", "1"));
    cr_assert(value_is(text, "dmsgd_route_setup_duration_seconds_bucket{le=\"0.05\"}", "1"));
    cr_assert(value_is(text, "dmsgd_route_setup_duration_seconds_bucket{le=\"0.1\"}", "3"));
    cr_assert(value_is(text, "dmsgd_route_setup_duration_seconds_bucket{le=\"60\"}", "3"));
    cr_assert(value_is(text, "dmsgd_route_setup_duration_seconds_bucket{le=\"+Inf\"}", "4"));
    cr_assert(value_is(text, "dmsgd_route_setup_duration_seconds_count", "4"));
    cr_assert(value_is(text, "dmsgd_route_setup_duration_seconds_sum", "75.5"));
    free(text);
}

Test(admin_metrics, escape_label)
{
    char out[64];
    cr_assert_str_eq(metrics_escape_label("a\"b\\c\nd", out, sizeof out), "a\\\"b\\\\c\\nd");
    cr_assert_str_eq(metrics_escape_label("plain", out, sizeof out), "plain");
    cr_assert_str_eq(metrics_escape_label("\"\"\"\"", out, 6), "\\\"\\\"", "truncated whole");
}

struct flat {
    int counters, gauges, histograms;
    bool saw_bytes;
};

static void on_sample(void *user, const char *family, enum metrics_type type, const char *series,
                      double value)
{
    struct flat *f = user;
    cr_assert_eq(strncmp(series, family, strlen(family)), 0, "%s in %s", series, family);
    if (type == METRICS_COUNTER)
        f->counters++;
    else if (type == METRICS_GAUGE)
        f->gauges++;
    else
        f->histograms++;
    if (strcmp(series, "dmsgd_relay_bytes_total{path=\"mesh\"}") == 0) {
        cr_assert_eq(value, 123456789012.0);
        f->saw_bytes = true;
    }
}

Test(admin_metrics, visit_gives_the_rendered_series)
{
    struct metrics_snapshot s;
    sample_snapshot(&s);
    struct flat f = {0};
    metrics_visit(&s, on_sample, &f);
    cr_assert(f.saw_bytes);
    cr_assert_eq(f.histograms, 12 + 3);
    cr_assert_gt(f.counters, 60);
    cr_assert_gt(f.gauges, 8);
}

/* ---- the counters of struct metrics ---- */

static void on_closed(void *arg)
{
    *(bool *)arg = true;
}

Test(admin_metrics, kept_counters_and_route_setup_histogram)
{
    struct dmsgd *d = calloc(1, sizeof *d);
    cr_assert_eq(uv_loop_init(&d->loop), 0);
    log_init(&d->log);
    struct metrics *m = NULL;
    cr_assert_eq(metrics_init(d, NULL, &m), 0);
    d->metrics = m;
    cr_assert_eq(metrics_sample_interval_ms(m), 60000);
    metrics_session_up(m, false);
    metrics_session_up(m, false);
    metrics_session_up(m, true);
    metrics_session_down(m, -29 /* DMSG_EPERM: kicked */);
    metrics_route_setup_started(m);
    metrics_route_setup_started(m);
    metrics_route_setup_finished(m, MRS_OK, 30);     /* 0.05 bucket */
    metrics_route_setup_finished(m, MRS_TIMEOUT, 120000); /* over every bound */
    struct metrics_snapshot *s = malloc(sizeof *s);
    metrics_collect(m, s);
    cr_assert_eq(s->sessions_total[METRICS_CLIENT], 2);
    cr_assert_eq(s->sessions_total[METRICS_PEER], 1);
    cr_assert_eq(s->evicted[ME_KICKED], 1);
    cr_assert_eq(s->route_setups[MRS_OK], 1);
    cr_assert_eq(s->route_setups[MRS_TIMEOUT], 1);
    cr_assert_eq(s->rs_bucket_counts[2], 1);
    cr_assert_eq(s->rs_count, 2);
    cr_assert_eq(s->rs_in_flight, 0);
    cr_assert_gt(s->open_fds, 0);
    cr_assert_gt(s->resident_memory_bytes, 0);
    cr_assert_eq(s->admin_status[0], 200, "admin codes present without an admin API");
    free(s);
    bool closed = false;
    metrics_close(m, on_closed, &closed);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    cr_assert(closed);
    cr_assert_eq(uv_loop_close(&d->loop), 0);
    free(d);
}
