/* The pure half of metrics.h: the family table, the visit of a snapshot's samples and the
 * Prometheus text exposition. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

const double metrics_rs_bucket_bounds[METRICS_RS_BUCKETS] = {
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};

static const char *const kind_names[METRICS_KIND_COUNT] = {"client", "peer"};
static const char *const reject_names[MR_COUNT] = {"full", "pending", "per_ip", "draining",
                                                    "ip_rate"};
static const char *const handshake_names[MH_COUNT] = {"timeout", "invalid", "closed"};
static const char *const evict_names[ME_COUNT] = {"replaced", "kicked", "idle", "slow_reader",
                                                   "glitches"};
static const char *const path_names[MP_COUNT] = {"local", "mesh", "service", "none"};
static const char *const fail_names[MF_COUNT] = {
    "rate", "pending", "request_timeout", "invalid_request", "signature", "source_key",
    "no_destination", "response_timeout", "refused", "destination_closed", "dialer_gone",
    "early_bytes", "internal",
};
static const char *const rs_result_names[MRS_COUNT] = {"ok", "error", "refused", "timeout"};
static const char *const fault_names[MS_COUNT] = {"locked", "readonly", "full", "corrupt",
                                                  "other"};

const char *metrics_escape_label(const char *value, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; value[i] && j + 3 < cap; i++) {
        char c = value[i];
        if (c == '\\' || c == '"') {
            out[j++] = '\\';
            out[j++] = c;
        } else if (c == '\n') {
            out[j++] = '\\';
            out[j++] = 'n';
        } else {
            out[j++] = c;
        }
    }
    out[j] = '\0';
    return out;
}

/* ---- visiting ---- */

struct visit {
    metrics_sample_fn fn;
    void *user;
    enum metrics_type type;
    const char *family;
};

static void family(struct visit *v, const char *name, enum metrics_type type)
{
    v->family = name;
    v->type = type;
}

static void sample(struct visit *v, const char *suffix, double value, const char *labels_fmt,
                   ...) __attribute__((format(printf, 4, 5)));

static void sample(struct visit *v, const char *suffix, double value, const char *labels_fmt,
                   ...)
{
    char labels[256] = "";
    char series[384];
    if (labels_fmt) {
        va_list ap;
        va_start(ap, labels_fmt);
        vsnprintf(labels, sizeof labels, labels_fmt, ap);
        va_end(ap);
    }
    snprintf(series, sizeof series, "%s%s%s%s%s", v->family, suffix ? suffix : "",
             labels[0] ? "{" : "", labels, labels[0] ? "}" : "");
    v->fn(v->user, v->family, v->type, series, value);
}

static void by_label(struct visit *v, const char *label, const char *const *names, size_t n,
                     const uint64_t *values)
{
    for (size_t i = 0; i < n; i++)
        sample(v, NULL, (double)values[i], "%s=\"%s\"", label, names[i]);
}

static void visit_sessions(struct visit *v, const struct metrics_snapshot *s)
{
    family(v, "dmsgd_sessions", METRICS_GAUGE);
    by_label(v, "kind", kind_names, METRICS_KIND_COUNT, s->sessions);
    family(v, "dmsgd_sessions_total", METRICS_COUNTER);
    by_label(v, "kind", kind_names, METRICS_KIND_COUNT, s->sessions_total);
    family(v, "dmsgd_connections_rejected_total", METRICS_COUNTER);
    by_label(v, "reason", reject_names, MR_COUNT, s->rejected);
    family(v, "dmsgd_handshakes_failed_total", METRICS_COUNTER);
    by_label(v, "reason", handshake_names, MH_COUNT, s->handshakes_failed);
    family(v, "dmsgd_sessions_evicted_total", METRICS_COUNTER);
    by_label(v, "reason", evict_names, ME_COUNT, s->evicted);
}

static void visit_streams(struct visit *v, const struct metrics_snapshot *s)
{
    family(v, "dmsgd_streams", METRICS_GAUGE);
    by_label(v, "path", path_names, MP_NONE, s->streams);
    family(v, "dmsgd_streams_opened_total", METRICS_COUNTER);
    by_label(v, "path", path_names, MP_NONE, s->streams_opened);
    family(v, "dmsgd_streams_failed_total", METRICS_COUNTER);
    for (int p = 0; p < MP_COUNT; p++)
        for (int f = 0; f < MF_COUNT; f++)
            sample(v, NULL, (double)s->streams_failed[p][f], "path=\"%s\",reason=\"%s\"",
                   path_names[p], fail_names[f]);
    family(v, "dmsgd_relay_bytes_total", METRICS_COUNTER);
    by_label(v, "path", path_names, MP_SERVICE, s->relay_bytes);
}

static void visit_peers(struct visit *v, const struct metrics_snapshot *s)
{
    char esc[2 * DMSG_PK_HEX_LEN + 4];
    family(v, "dmsgd_peer_up", METRICS_GAUGE);
    for (size_t i = 0; i < s->n_peers; i++)
        sample(v, NULL, s->peers[i].up ? 1 : 0, "peer=\"%s\"",
               metrics_escape_label(s->peers[i].pk_hex, esc, sizeof esc));
    family(v, "dmsgd_peer_reconnects_total", METRICS_COUNTER);
    for (size_t i = 0; i < s->n_peers; i++)
        sample(v, NULL, (double)s->peers[i].reconnects, "peer=\"%s\"",
               metrics_escape_label(s->peers[i].pk_hex, esc, sizeof esc));
}

static void visit_route_setups(struct visit *v, const struct metrics_snapshot *s)
{
    family(v, "dmsgd_route_setups_total", METRICS_COUNTER);
    by_label(v, "result", rs_result_names, MRS_COUNT, s->route_setups);
    family(v, "dmsgd_route_setup_duration_seconds", METRICS_HISTOGRAM);
    uint64_t cumulative = 0;
    for (int i = 0; i < METRICS_RS_BUCKETS; i++) {
        cumulative += s->rs_bucket_counts[i];
        sample(v, "_bucket", (double)cumulative, "le=\"%g\"", metrics_rs_bucket_bounds[i]);
    }
    sample(v, "_bucket", (double)s->rs_count, "le=\"+Inf\"");
    sample(v, "_sum", s->rs_sum_seconds, NULL);
    sample(v, "_count", (double)s->rs_count, NULL);
    family(v, "dmsgd_route_setups_in_flight", METRICS_GAUGE);
    sample(v, NULL, (double)s->rs_in_flight, NULL);
}

static void visit_operations(struct visit *v, const struct metrics_snapshot *s)
{
    static const char *const results[2] = {"ok", "error"};
    uint64_t disc[2] = {s->discovery_ok, s->discovery_error};
    family(v, "dmsgd_discovery_updates_total", METRICS_COUNTER);
    by_label(v, "result", results, 2, disc);
    family(v, "dmsgd_store_errors_total", METRICS_COUNTER);
    by_label(v, "fault", fault_names, MS_COUNT, s->store_errors);
    family(v, "dmsgd_admin_requests_total", METRICS_COUNTER);
    for (size_t i = 0; i < METRICS_STATUS_SLOTS && s->admin_status[i]; i++)
        sample(v, NULL, (double)s->admin_requests[i], "code=\"%u\"", s->admin_status[i]);
}

void metrics_visit(const struct metrics_snapshot *s, metrics_sample_fn fn, void *user)
{
    struct visit v = {.fn = fn, .user = user};
    char esc[128];
    family(&v, "dmsgd_build_info", METRICS_GAUGE);
    sample(&v, NULL, 1, "version=\"%s\"",
           metrics_escape_label(s->version ? s->version : "", esc, sizeof esc));
    family(&v, "dmsgd_start_time_seconds", METRICS_GAUGE);
    sample(&v, NULL, s->start_time_seconds, NULL);
    visit_sessions(&v, s);
    visit_streams(&v, s);
    visit_peers(&v, s);
    visit_route_setups(&v, s);
    visit_operations(&v, s);
    family(&v, "process_open_fds", METRICS_GAUGE);
    sample(&v, NULL, (double)s->open_fds, NULL);
    family(&v, "process_resident_memory_bytes", METRICS_GAUGE);
    sample(&v, NULL, (double)s->resident_memory_bytes, NULL);
    family(&v, "process_start_time_seconds", METRICS_GAUGE);
    sample(&v, NULL, s->start_time_seconds, NULL);
}

/* ---- rendering ---- */

struct family_doc {
    const char *name;
    const char *help;
};

static const struct family_doc docs[] = {
    {"dmsgd_build_info", "Build information; always 1."},
    {"dmsgd_start_time_seconds", "Unix time the daemon started."},
    {"dmsgd_sessions", "Established sessions."},
    {"dmsgd_sessions_total", "Sessions established since start."},
    {"dmsgd_connections_rejected_total", "TCP connections closed before a handshake."},
    {"dmsgd_handshakes_failed_total", "Noise handshakes that did not complete."},
    {"dmsgd_sessions_evicted_total", "Sessions closed by the server."},
    {"dmsgd_streams", "Streams currently relaying (service: held by the route setup node)."},
    {"dmsgd_streams_opened_total", "Streams that started relaying."},
    {"dmsgd_streams_failed_total",
     "Stream requests that failed (path none: before a path was chosen)."},
    {"dmsgd_relay_bytes_total", "Payload bytes relayed."},
    {"dmsgd_peer_up", "1 when the outbound link to the peer is up."},
    {"dmsgd_peer_reconnects_total", "Times the peer link came up again after being down."},
    {"dmsgd_route_setups_total", "Route setups finished."},
    {"dmsgd_route_setup_duration_seconds", "Route setup time from request to answer."},
    {"dmsgd_route_setups_in_flight", "Route setups being processed."},
    {"dmsgd_discovery_updates_total", "Registrations of this server's discovery entry."},
    {"dmsgd_store_errors_total", "Failed state store operations."},
    {"dmsgd_admin_requests_total", "Admin API requests answered, by HTTP status."},
    {"process_open_fds", "Open file descriptors."},
    {"process_resident_memory_bytes", "Resident memory size in bytes."},
    {"process_start_time_seconds", "Unix time the process started."},
};

struct textbuf {
    char *data;
    size_t len, cap;
    bool failed;
    const char *last_family;
};

static void tb_append(struct textbuf *b, const char *text, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 8192;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, text, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void tb_printf(struct textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tb_printf(struct textbuf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        tb_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static const char *type_name(enum metrics_type t)
{
    switch (t) {
    case METRICS_COUNTER: return "counter";
    case METRICS_GAUGE: return "gauge";
    case METRICS_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

static const char *help_of(const char *family)
{
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++)
        if (strcmp(docs[i].name, family) == 0)
            return docs[i].help;
    return "";
}

static void on_render_sample(void *user, const char *family, enum metrics_type type,
                             const char *series, double value)
{
    struct textbuf *b = user;
    if (family != b->last_family) {
        b->last_family = family;
        tb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", family, help_of(family), family,
                  type_name(type));
    }
    if (value >= 0 && value < 1e15 && value == (double)(uint64_t)value)
        tb_printf(b, "%s %llu\n", series, (unsigned long long)value);
    else
        tb_printf(b, "%s %.17g\n", series, value);
}

char *metrics_render(const struct metrics_snapshot *s, size_t *len)
{
    struct textbuf b = {0};
    metrics_visit(s, on_render_sample, &b);
    if (b.failed || !b.data) {
        free(b.data);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.data;
}
