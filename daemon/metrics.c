/* The daemon's metrics: collection from the services, the counters only this module keeps,
 * and periodic samples into the store; see metrics.h. */
#include "metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "dmsg/error.h"
#include "dmsgd.h"
#include "dmsgd_own.h"
#include "mesh.h"
#include "relay.h"
#include "server.h"
#include "store.h"

#define DEFAULT_SAMPLE_INTERVAL_MS 60000
#define DEFAULT_RETENTION_S (3 * 86400)
#define MAX_SAMPLE_SERIES 512

struct metrics {
    struct dmsgd *d;
    struct metrics_options opt;
    int64_t start_ms;               /* wall clock */
    uv_timer_t timer;
    bool timer_started;
    uint64_t sessions_total[METRICS_KIND_COUNT];
    uint64_t evicted[ME_COUNT];     /* replaced comes from the server; the others from here */
    uint64_t route_setups[MRS_COUNT];
    uint64_t rs_buckets[METRICS_RS_BUCKETS];
    uint64_t rs_count;
    uint64_t rs_sum_ms;
    uint64_t rs_in_flight;
    bool sample_failing;            /* log a failing store once, not every interval */
    uint64_t open_fds;              /* cached: counting /proc/self/fd costs ~1 ms per 10k */
    uint64_t open_fds_at_ms;        /* loop time of the count; 0: never */
    void (*on_done)(void *arg);
    void *on_done_arg;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int metrics_init(struct dmsgd *d, const struct metrics_options *opt, struct metrics **out)
{
    struct metrics *m = calloc(1, sizeof *m);
    *out = NULL;
    if (!m)
        return DMSG_ENOMEM;
    m->d = d;
    if (opt)
        m->opt = *opt;
    if (!m->opt.sample_interval_ms)
        m->opt.sample_interval_ms = DEFAULT_SAMPLE_INTERVAL_MS;
    if (!m->opt.retention_s)
        m->opt.retention_s = DEFAULT_RETENTION_S;
    m->start_ms = wall_ms();
    uv_timer_init(&d->loop, &m->timer);
    m->timer.data = m;
    *out = m;
    return 0;
}

uint32_t metrics_sample_interval_ms(const struct metrics *m)
{
    return m->opt.sample_interval_ms;
}

bool metrics_store_failing(const struct metrics *m)
{
    return m->sample_failing;
}

int64_t metrics_start_time_ms(const struct metrics *m)
{
    return m->start_ms;
}

/* ---- counters kept here ---- */

void metrics_session_up(struct metrics *m, bool peer)
{
    if (m)
        m->sessions_total[peer ? METRICS_PEER : METRICS_CLIENT]++;
}

void metrics_session_down(struct metrics *m, int err)
{
    if (!m)
        return;
    if (err == DMSG_EPERM)
        m->evicted[ME_KICKED]++;
    else if (err == DMSG_ETIMEOUT)
        m->evicted[ME_IDLE]++;
    else if (err == DMSG_ELIMIT)
        m->evicted[ME_SLOW_READER]++;
    else if (err == DMSG_EGLITCH)
        m->evicted[ME_GLITCHES]++;
}

void metrics_route_setup_started(struct metrics *m)
{
    if (m)
        m->rs_in_flight++;
}

void metrics_route_setup_finished(struct metrics *m, enum metrics_rs_result result,
                                  uint64_t duration_ms)
{
    if (!m || (unsigned)result >= MRS_COUNT)
        return;
    if (m->rs_in_flight > 0)
        m->rs_in_flight--;
    m->route_setups[result]++;
    m->rs_count++;
    m->rs_sum_ms += duration_ms;
    for (int i = 0; i < METRICS_RS_BUCKETS; i++) {
        if ((double)duration_ms / 1000.0 <= metrics_rs_bucket_bounds[i]) {
            m->rs_buckets[i]++;
            break;
        }
    }
}

/* ---- collection ---- */

static void collect_server(const struct dmsgd *d, struct metrics_snapshot *s)
{
    if (!d->server)
        return;
    struct server_stats st;
    memset(&st, 0, sizeof st);
    server_get_stats(d->server, &st);
    s->rejected[MR_FULL] = st.counters[SERVER_REJECTED_FULL];
    s->rejected[MR_PENDING] = st.counters[SERVER_REJECTED_PENDING];
    s->rejected[MR_PER_IP] = st.counters[SERVER_REJECTED_IP];
    s->rejected[MR_DRAINING] = st.counters[SERVER_REJECTED_DRAINING];
    s->rejected[MR_IP_RATE] = st.counters[SERVER_REJECTED_RATE];
    s->handshakes_failed[MH_TIMEOUT] = st.handshake_failures[SERVER_HS_TIMEOUT];
    s->handshakes_failed[MH_INVALID] = st.handshake_failures[SERVER_HS_INVALID];
    s->handshakes_failed[MH_CLOSED] = st.handshake_failures[SERVER_HS_CLOSED];
    s->evicted[ME_REPLACED] = st.counters[SERVER_EVICTED];
}

/* The relay's outcome counters, folded into the contract's reasons. */
static int fail_reason_of(enum relay_counter c)
{
    switch (c) {
    case RELAY_FAIL_RATE: return MF_RATE;
    case RELAY_FAIL_PENDING: return MF_PENDING;
    case RELAY_FAIL_REQUEST_TIMEOUT: return MF_REQUEST_TIMEOUT;
    case RELAY_FAIL_OBJECT_SIZE:
    case RELAY_FAIL_DECRYPT:
    case RELAY_FAIL_INVALID_REQUEST:
    case RELAY_FAIL_FIELDS: return MF_INVALID_REQUEST;
    case RELAY_FAIL_SIGNATURE: return MF_SIGNATURE;
    case RELAY_FAIL_SOURCE_KEY: return MF_SOURCE_KEY;
    case RELAY_FAIL_NO_DESTINATION: return MF_NO_DESTINATION;
    case RELAY_FAIL_RESPONSE_TIMEOUT: return MF_RESPONSE_TIMEOUT;
    case RELAY_FAIL_REFUSED:
    case RELAY_OWN_REFUSED: return MF_REFUSED;
    case RELAY_FAIL_OPEN_STREAM:
    case RELAY_FAIL_DESTINATION_CLOSED:
    case RELAY_FAIL_RESPONSE_INVALID: return MF_DESTINATION_CLOSED;
    case RELAY_FAIL_DIALER_GONE: return MF_DIALER_GONE;
    case RELAY_FAIL_EARLY_BYTES: return MF_EARLY_BYTES;
    case RELAY_FAIL_INTERNAL: return MF_INTERNAL;
    default: return -1;
    }
}

static void collect_relay(const struct dmsgd *d, struct metrics_snapshot *s)
{
    if (!d->relay)
        return;
    static const int path_of[RELAY_PATH_COUNT] = {
        [RELAY_PATH_NONE] = MP_NONE,
        [RELAY_PATH_LOCAL] = MP_LOCAL,
        [RELAY_PATH_MESH] = MP_MESH,
        [RELAY_PATH_SERVICE] = MP_SERVICE,
    };
    struct relay_path_stats ps;
    relay_get_path_stats(d->relay, &ps);
    for (int p = 0; p < RELAY_PATH_COUNT; p++) {
        int mp = path_of[p];
        if (mp != MP_NONE) {
            s->streams[mp] = ps.relaying[p];
            s->streams_opened[mp] = ps.opened[p];
        }
        if (mp == MP_LOCAL || mp == MP_MESH)
            s->relay_bytes[mp] = ps.bytes[p];
        for (int c = 0; c < RELAY_COUNTER_COUNT; c++) {
            int reason = fail_reason_of((enum relay_counter)c);
            if (reason >= 0)
                s->streams_failed[mp][reason] += ps.failed[p][c];
        }
    }
    /* The relay lets go of a stream it hands to a service: the services count their own,
     * the same set /v1/streams lists. */
    s->streams[MP_SERVICE] += dmsgd_own_stream_count(d);
}

static int add_peer(void *user, const struct mesh_peer_info *p)
{
    struct metrics_snapshot *s = user;
    if (s->n_peers >= METRICS_MAX_PEERS)
        return 1;
    struct metrics_peer *mp = &s->peers[s->n_peers++];
    memcpy(mp->pk_hex, p->public_key_hex, sizeof mp->pk_hex);
    mp->up = p->state == MESH_LINK_UP;
    mp->reconnects = p->reconnects;
    return 0;
}

#define OPEN_FDS_MAX_AGE_MS 1000

static uint64_t count_open_fds(void)
{
    uint64_t n = 0;
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n > 0 ? n - 1 : 0; /* the directory's own descriptor */
}

static void collect_process(struct metrics *m, struct metrics_snapshot *s)
{
    uint64_t now = uv_now(&m->d->loop);
    if (m->open_fds_at_ms == 0 || now - m->open_fds_at_ms >= OPEN_FDS_MAX_AGE_MS) {
        m->open_fds = count_open_fds();
        m->open_fds_at_ms = now ? now : 1;
    }
    s->open_fds = m->open_fds;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long long size = 0, resident = 0;
        if (fscanf(f, "%llu %llu", &size, &resident) == 2)
            s->resident_memory_bytes = resident * (uint64_t)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
}

void metrics_collect(struct metrics *m, struct metrics_snapshot *s)
{
    const struct dmsgd *d = m->d;
    memset(s, 0, sizeof *s);
    s->version = DMSGD_VERSION;
    s->start_time_seconds = (double)m->start_ms / 1000.0;
    memcpy(s->sessions_total, m->sessions_total, sizeof s->sessions_total);
    /* The kinds from the counts the services keep: no walk over every session per scrape. */
    uint64_t established = d->server ? server_session_count(d->server) : 0;
    uint64_t peers = 0;
    if (d->mesh) {
        struct mesh_stats ms;
        mesh_get_stats(d->mesh, &ms);
        peers = ms.inbound_peer_sessions;
    }
    s->sessions[METRICS_PEER] = peers < established ? peers : established;
    s->sessions[METRICS_CLIENT] = established - s->sessions[METRICS_PEER];
    collect_server(d, s);
    s->evicted[ME_KICKED] = m->evicted[ME_KICKED];
    s->evicted[ME_IDLE] = m->evicted[ME_IDLE];
    s->evicted[ME_SLOW_READER] = m->evicted[ME_SLOW_READER];
    s->evicted[ME_GLITCHES] = m->evicted[ME_GLITCHES];
    collect_relay(d, s);
    if (d->mesh)
        mesh_peer_list(d->mesh, add_peer, s);
    memcpy(s->route_setups, m->route_setups, sizeof s->route_setups);
    memcpy(s->rs_bucket_counts, m->rs_buckets, sizeof s->rs_bucket_counts);
    s->rs_count = m->rs_count;
    s->rs_sum_seconds = (double)m->rs_sum_ms / 1000.0;
    s->rs_in_flight = m->rs_in_flight;
    s->discovery_ok = d->registration.updates_ok;
    s->discovery_error = d->registration.updates_failed;
    if (d->store) {
        uint64_t faults[STORE_FAULT_OTHER + 1];
        store_get_fault_counts(d->store, faults);
        s->store_errors[MS_LOCKED] = faults[STORE_FAULT_LOCKED];
        s->store_errors[MS_READONLY] = faults[STORE_FAULT_READONLY];
        s->store_errors[MS_FULL] = faults[STORE_FAULT_FULL];
        s->store_errors[MS_CORRUPT] = faults[STORE_FAULT_CORRUPT];
        s->store_errors[MS_OTHER] = faults[STORE_FAULT_TOO_NEW] + faults[STORE_FAULT_CANTOPEN] +
                                    faults[STORE_FAULT_INVALID] + faults[STORE_FAULT_OTHER];
    }
    admin_get_request_counts(d->admin, s->admin_status, s->admin_requests,
                             METRICS_STATUS_SLOTS);
    collect_process(m, s);
}

/* ---- sampling ---- */

struct sample_batch {
    struct store_sample samples[MAX_SAMPLE_SERIES];
    char names[MAX_SAMPLE_SERIES][160];
    size_t n;
};

/* Histograms and constants are not sampled; counters still at 0 need no rows (a missing
 * counter reads as 0), which keeps the table small. */
static void on_sample(void *user, const char *family, enum metrics_type type, const char *series,
                      double value)
{
    struct sample_batch *b = user;
    if (type == METRICS_HISTOGRAM || strcmp(family, "dmsgd_build_info") == 0 ||
        strstr(family, "start_time_seconds") != NULL)
        return;
    if (type == METRICS_COUNTER && value == 0)
        return;
    if (b->n >= MAX_SAMPLE_SERIES || strlen(series) >= sizeof b->names[0])
        return;
    memcpy(b->names[b->n], series, strlen(series) + 1);
    b->samples[b->n].name = b->names[b->n];
    b->samples[b->n].value = value;
    b->n++;
}

int metrics_sample_now(struct metrics *m)
{
    struct dmsgd *d = m->d;
    if (!d->store)
        return 0;
    struct metrics_snapshot *s = malloc(sizeof *s);
    struct sample_batch *b = calloc(1, sizeof *b);
    int rc = DMSG_ENOMEM;
    if (s && b) {
        metrics_collect(m, s);
        metrics_visit(s, on_sample, b);
        int64_t now = wall_ms() / 1000;
        /* A sample is worth less than the relay's time: never wait for a lock. */
        int busy_ms = store_set_busy_timeout(d->store, 0);
        rc = store_samples_put(d->store, now, b->samples, b->n);
        if (rc == 0)
            rc = store_samples_expire(d->store, now - (int64_t)m->opt.retention_s, NULL);
        store_set_busy_timeout(d->store, busy_ms);
    }
    free(s);
    free(b);
    if (rc != 0 && rc != DMSG_ENOMEM && !m->sample_failing)
        log_warn(&d->log, "metric samples not stored (the relay is unaffected)", "error=\"%s\"",
                 store_last_error(d->store)->message);
    if (rc == 0 && m->sample_failing)
        log_info(&d->log, "metric samples stored again", NULL);
    m->sample_failing = rc != 0;
    return rc;
}

static void on_sample_timer(uv_timer_t *t)
{
    metrics_sample_now(t->data);
}

void metrics_start(struct metrics *m)
{
    metrics_sample_now(m);
    m->timer_started = true;
    uv_timer_start(&m->timer, on_sample_timer, m->opt.sample_interval_ms,
                   m->opt.sample_interval_ms);
}

void metrics_set_options(struct metrics *m, const struct metrics_options *opt)
{
    uint32_t interval = opt->sample_interval_ms ? opt->sample_interval_ms
                                                : DEFAULT_SAMPLE_INTERVAL_MS;
    m->opt.retention_s = opt->retention_s ? opt->retention_s : DEFAULT_RETENTION_S;
    if (interval != m->opt.sample_interval_ms && m->timer_started)
        uv_timer_start(&m->timer, on_sample_timer, interval, interval);
    m->opt.sample_interval_ms = interval;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct metrics *m = h->data;
    void (*on_done)(void *arg) = m->on_done;
    void *arg = m->on_done_arg;
    free(m);
    if (on_done)
        on_done(arg);
}

void metrics_close(struct metrics *m, void (*on_done)(void *arg), void *arg)
{
    if (!m)
        return;
    m->on_done = on_done;
    m->on_done_arg = arg;
    uv_timer_stop(&m->timer);
    uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}
