/* GET /metrics and /v1/metrics (Prometheus text) and GET /v1/stats (stored samples). */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dmsgd.h"
#include "metrics.h"
#include "store.h"
#include "validate.h"

void api_get_metrics(struct api_req *r)
{
    struct metrics_snapshot *s = malloc(sizeof *s);
    if (!s || !r->d->metrics) {
        free(s);
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "metrics are not available");
        return;
    }
    /* Count this answer before rendering, so the scrape sees itself (as Prometheus clients
     * conventionally do). */
    api_count_status(r->a, 200);
    metrics_collect(r->d->metrics, s);
    size_t len = 0;
    char *text = metrics_render(s, &len);
    free(s);
    if (!text) {
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "out of memory rendering metrics");
        return;
    }
    struct dmsg_httpd_header h = {"Cache-Control", "no-store"};
    struct dmsg_httpd_response resp = {
        .status = 200,
        .content_type = METRICS_CONTENT_TYPE,
        .body = text,
        .body_len = len,
        .headers = &h,
        .header_count = 1,
    };
    dmsg_httpd_respond(r->http, &resp);
    r->http = NULL;
    free(text);
}

/* ---- stats ---- */

#define MAX_SERIES_PREFIXES 16

struct stats_build {
    json_t *series;                    /* the array being built */
    json_t *current;                   /* samples array of the current series */
    char current_name[256];
    const char *prefixes[MAX_SERIES_PREFIXES];
    size_t prefix_len[MAX_SERIES_PREFIXES];
    size_t n_prefixes;
};

static bool wanted(const struct stats_build *b, const char *name)
{
    if (b->n_prefixes == 0)
        return true;
    for (size_t i = 0; i < b->n_prefixes; i++)
        if (strncmp(name, b->prefixes[i], b->prefix_len[i]) == 0)
            return true;
    return false;
}

/* A series' kind from its family: counters end in _total (the contract's naming). */
static const char *kind_of(const char *series)
{
    const char *brace = strchr(series, '{');
    size_t n = brace ? (size_t)(brace - series) : strlen(series);
    return n >= 6 && strncmp(series + n - 6, "_total", 6) == 0 ? "counter" : "gauge";
}

static int on_sample(void *user, const char *name, int64_t at, double value)
{
    struct stats_build *b = user;
    if (!name || !wanted(b, name))
        return 0;
    if (!b->current || strcmp(b->current_name, name) != 0) {
        b->current = json_array();
        snprintf(b->current_name, sizeof b->current_name, "%s", name);
        json_array_append_new(b->series, json_pack("{s:s,s:s,s:o}", "name", name, "kind",
                                                   kind_of(name), "samples", b->current));
    }
    json_array_append_new(b->current, json_pack("[I,f]", (json_int_t)at, value));
    return 0;
}

/* Splits "a,b,c" into b->prefixes (pointing into text, which is modified); -1 when invalid. */
static int parse_prefixes(char *text, struct stats_build *b)
{
    for (char *tok = strtok(text, ","); tok; tok = strtok(NULL, ",")) {
        if (*tok == '\0' || b->n_prefixes == MAX_SERIES_PREFIXES)
            return -1;
        b->prefixes[b->n_prefixes] = tok;
        b->prefix_len[b->n_prefixes++] = strlen(tok);
    }
    return b->n_prefixes > 0 ? 0 : -1;
}

void api_get_stats(struct api_req *r)
{
    int64_t since = 3600;
    const char *q_since = dmsg_httpd_request_query(r->http, "since");
    const char *q_series = dmsg_httpd_request_query(r->http, "series");
    if (q_since && api_parse_since(q_since, &since) != 0) {
        api_problem(r, API_P_INVALID_QUERY, 0, NULL,
                    "since must be a positive number with an optional unit s, m, h or d (at most"
                    " 366d), e.g. 15m or 1h");
        return;
    }
    struct stats_build b;
    memset(&b, 0, sizeof b);
    char prefixes[512];
    if (q_series) {
        snprintf(prefixes, sizeof prefixes, "%s", q_series);
        if (strlen(q_series) >= sizeof prefixes || parse_prefixes(prefixes, &b) != 0) {
            api_problem(r, API_P_INVALID_QUERY, 0, NULL,
                        "series must be 1..16 comma-separated name prefixes");
            return;
        }
    }
    int64_t now_ms = api_now_ms();
    int64_t from = now_ms / 1000 - since;
    b.series = json_array();
    if (store_samples_list(r->d->store, from, on_sample, &b) != 0) {
        json_decref(b.series);
        api_store_problem(r);
        return;
    }
    api_store_ok(r);
    uint32_t interval_ms = r->d->metrics ? metrics_sample_interval_ms(r->d->metrics) : 60000;
    api_reply_json(r, 200,
                   json_pack("{s:o,s:o,s:I,s:o}", "since", api_json_time(from * 1000), "until",
                             api_json_time(now_ms), "interval_seconds",
                             (json_int_t)(interval_ms >= 1000 ? interval_ms / 1000 : 1),
                             "series", b.series));
}
