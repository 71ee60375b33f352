/* dmsgctl stats: the metric samples dmsgd stored (GET /v1/stats), summarised per series. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "http.h"

const struct ctl_noun noun_stats = {
    .name = "stats",
    .summary = "what the metrics did over a period (stored samples)",
    .synopsis = "stats [--since DURATION] [--series PREFIX[,PREFIX…]]",
    .description =
        "dmsgd stores a snapshot of its metrics periodically (kept for a configured\n"
        "retention). `stats' summarises each series over the period: its first and\n"
        "last value, the lowest and highest, the change, and for counters the rate\n"
        "per second. A counter that went down (dmsgd restarted) counts from zero\n"
        "again, as Prometheus' increase() does.\n",
    .options = "--since DURATION\thow far back: 90s, 15m, 1h (default), 7d; at most 366d\n"
               "--series PREFIXES\tonly series whose name starts with one of these\n"
               "\t(comma-separated), e.g. dmsgd_sessions,dmsgd_streams\n",
    .output = "Columns: series (name and labels, as in /metrics), kind (counter, gauge),\n"
              "samples, first, last, min, max, change, per second (counters only).\n"
              "--json prints dmsgd's samples themselves.\n",
    .examples = "dmsgctl stats\n"
                "dmsgctl stats --since 7d --series dmsgd_route_setups\n",
};

static const struct column stats_cols[] = {
    {"series", "SERIES", 0},
    {"kind", "KIND", 0},
    {"samples", "SAMPLES", COL_RIGHT},
    {"first", "FIRST", COL_RIGHT},
    {"last", "LAST", COL_RIGHT},
    {"min", "MIN", COL_RIGHT},
    {"max", "MAX", COL_RIGHT},
    {"change", "CHANGE", COL_RIGHT},
    {"per_second", "PER SECOND", COL_RIGHT},
};

struct summary {
    size_t n;
    double first, last, min, max, change;
    double t_first, t_last;
};

static bool sample_at(const json_t *samples, size_t i, double *t, double *v)
{
    const json_t *pair = json_array_get(samples, i);

    if (!json_is_array(pair) || json_array_size(pair) != 2 ||
        !json_is_number(json_array_get(pair, 0)) || !json_is_number(json_array_get(pair, 1)))
        return false;
    *t = json_number_value(json_array_get(pair, 0));
    *v = json_number_value(json_array_get(pair, 1));
    return true;
}

static bool summarise(const json_t *samples, bool counter, struct summary *s)
{
    double t, v, prev = 0;

    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < json_array_size(samples); i++) {
        if (!sample_at(samples, i, &t, &v))
            return false;
        if (s->n == 0) {
            s->first = s->min = s->max = v;
            s->t_first = t;
        } else if (counter) {
            s->change += v >= prev ? v - prev : v; /* a reset starts again from zero */
        }
        if (v < s->min)
            s->min = v;
        if (v > s->max)
            s->max = v;
        s->last = v;
        s->t_last = t;
        prev = v;
        s->n++;
    }
    if (!counter)
        s->change = s->last - s->first;
    return true;
}

int render_stats(struct ctl *ctl, const char *body, size_t len)
{
    json_t *doc = ctl_parse_body(ctl, body, len, "stats");
    json_t *series, *s;
    struct view *v;
    struct view_table *t;
    long long interval;
    size_t i;

    if (doc == NULL)
        return CTL_EXIT_REFUSED;
    if ((series = jarr(doc, "series")) == NULL) {
        json_decref(doc);
        return ctl_bad_document(ctl, "stats", "series");
    }
    v = view_new();
    view_set_raw(v, body, len, RAW_JSON);
    if (jstr(doc, "since") != NULL && jstr(doc, "until") != NULL &&
        jint(doc, "interval_seconds", &interval))
        view_message(v, "from %s to %s, one sample every %lld s", jstr(doc, "since"),
                     jstr(doc, "until"), interval);
    t = view_add_table(v, "stats", stats_cols, sizeof stats_cols / sizeof stats_cols[0],
                       "no samples stored for this period");
    json_array_foreach(series, i, s) {
        const char *kind = jstr(s, "kind");
        bool counter = kind != NULL && strcmp(kind, "counter") == 0;
        struct summary sum;
        if (jstr(s, "name") == NULL || !summarise(jarr(s, "samples"), counter, &sum)) {
            view_free(v);
            json_decref(doc);
            return ctl_bad_document(ctl, "stats", "series[].name/samples");
        }
        table_row(t);
        cell_str(t, jstr(s, "name"));
        cell_str(t, kind);
        cell_int(t, true, (long long)sum.n);
        cell_num(t, sum.n > 0, sum.first);
        cell_num(t, sum.n > 0, sum.last);
        cell_num(t, sum.n > 0, sum.min);
        cell_num(t, sum.n > 0, sum.max);
        cell_num(t, sum.n > 1, sum.change);
        cell_num(t, counter && sum.n > 1 && sum.t_last > sum.t_first,
                 sum.change / (sum.t_last - sum.t_first));
    }
    json_decref(doc);
    return ctl_emit(ctl, v);
}

static int run_stats(struct ctl *ctl)
{
    struct strbuf path = {0};
    int rc;

    sb_printf(&path, "/v1/stats");
    ctl_query(&path, "since", ctl->args.since != NULL ? ctl->args.since : "1h");
    if (ctl->args.series != NULL)
        ctl_query(&path, "series", ctl->args.series);
    rc = ctl_call_and_render(ctl, "GET", path.s, NULL, render_stats);
    sb_free(&path);
    return rc;
}

const struct ctl_command cmd_stats = {"stats", &noun_stats, OPT_SINCE | OPT_SERIES, run_stats};
