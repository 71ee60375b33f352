/* dmsgctl metrics: dmsgd's Prometheus metrics (GET /metrics). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "http.h"

const struct ctl_noun noun_metrics = {
    .name = "metrics",
    .summary = "the current Prometheus metrics",
    .synopsis = "metrics",
    .description =
        "Prints what dmsgd serves to Prometheus at /metrics: sessions, handshakes,\n"
        "streams, relayed bytes, peer links, route setups, discovery updates, store\n"
        "errors (the families are listed in api/openapi.yaml). For history, see\n"
        "`dmsgctl stats'.\n",
    .options = NULL,
    .output = "Human: the Prometheus text unchanged. Plain: one line per sample, the series\n"
              "(name and labels as in the text) and its value. --json: an array of\n"
              "{\"series\", \"value\"} objects (the text format has no JSON form of its own).\n",
    .examples = "dmsgctl metrics\n"
                "dmsgctl metrics --plain | grep '^dmsgd_sessions'\n",
};

static const struct column sample_cols[] = {
    {"series", "SERIES", 0},
    {"value", "VALUE", COL_RIGHT},
};

static bool name_start(char c)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':';
}

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == ':';
}

/* Splits one sample line into its series (name and labels) and value; false when it is not
 * one (the exposition format 0.0.4). */
static bool parse_sample(const char *line, size_t len, size_t *series_len, double *value,
                         char *value_text, size_t value_cap)
{
    size_t i = 0, v0;
    char *end;

    if (len == 0 || !name_start(line[0]))
        return false;
    while (i < len && name_char(line[i]))
        i++;
    if (i < len && line[i] == '{') {
        bool quoted = false;
        for (i++; i < len; i++) {
            if (quoted && line[i] == '\\')
                i++;
            else if (line[i] == '"')
                quoted = !quoted;
            else if (!quoted && line[i] == '}')
                break;
        }
        if (i >= len)
            return false;
        i++;
    }
    *series_len = i;
    if (i >= len || (line[i] != ' ' && line[i] != '\t'))
        return false;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    v0 = i;
    while (i < len && line[i] != ' ' && line[i] != '\t')
        i++;
    if (i == v0 || i - v0 >= value_cap)
        return false;
    snprintf(value_text, value_cap, "%.*s", (int)(i - v0), line + v0);
    *value = strtod(value_text, &end);
    return *end == '\0';
}

int render_metrics(struct ctl *ctl, const char *body, size_t len)
{
    struct view *v = view_new();
    struct view_table *t;
    const char *p = body, *end = body + len;
    unsigned line_no = 0;

    view_set_raw(v, body, len, RAW_TEXT);
    t = view_add_table(v, "samples", sample_cols, sizeof sample_cols / sizeof sample_cols[0],
                       NULL);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        size_t series_len;
        double value;
        char value_text[64];

        line_no++;
        if (n > 0 && p[0] != '#') {
            char *series;
            if (!parse_sample(p, n, &series_len, &value, value_text, sizeof value_text)) {
                fprintf(ctl->err,
                        "dmsgctl: line %u of dmsgd's metrics is not a Prometheus sample: "
                        "`%.*s' — this is a bug in dmsgd (or not dmsgd at %s)\n",
                        line_no, (int)(n > 120 ? 120 : n), p, http_where(ctl->conn));
                view_free(v);
                return CTL_EXIT_REFUSED;
            }
            series = xasprintf("%.*s", (int)series_len, p);
            table_row(t);
            cell_str(t, series);
            if (isfinite(value))
                cell_num(t, true, value);
            else
                cell_str(t, value_text);
            free(series);
        }
        p += n + (nl != NULL);
    }
    return ctl_emit(ctl, v);
}

static int run_metrics(struct ctl *ctl)
{
    struct http_response resp;
    int rc = http_get_text(ctl, "/metrics", &resp);

    if (rc != CTL_EXIT_OK)
        return rc;
    rc = render_metrics(ctl, resp.body.s != NULL ? resp.body.s : "", resp.body.len);
    http_response_free(&resp);
    return rc;
}

const struct ctl_command cmd_metrics = {"metrics", &noun_metrics, 0, run_metrics};
