/* Prometheus metrics of dmsgd (text exposition format 0.0.4) and their periodic samples in the
 * store, for `dmsgctl stats --since`.
 *
 * The family list is the contract of api/openapi.yaml (responses/Metrics): dmsgd_ prefix,
 * base units, _total on counters, small fixed label sets (no client key ever; `peer` holds only
 * configured or admin-added peers), every known label combination present from the start.
 *
 * Two halves: a snapshot of plain numbers, rendered and flattened by pure functions (unit
 * tested); and the collection of a snapshot from the services' own statistics plus the few
 * counters only this module keeps (sessions by kind, evictions by reason, route setups), with
 * the sampling timer. Loop thread only. */
#ifndef DMSGD_METRICS_H
#define DMSGD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dmsg/cipher.h"

struct dmsgd;
struct metrics;

enum metrics_kind { METRICS_CLIENT = 0, METRICS_PEER, METRICS_KIND_COUNT };
enum metrics_reject { MR_FULL = 0, MR_PENDING, MR_PER_IP, MR_DRAINING, MR_IP_RATE, MR_COUNT };
enum metrics_handshake { MH_TIMEOUT = 0, MH_INVALID, MH_CLOSED, MH_COUNT };
enum metrics_evict {
    ME_REPLACED = 0, ME_KICKED, ME_IDLE, ME_SLOW_READER, ME_GLITCHES, ME_COUNT
};
enum metrics_path { MP_LOCAL = 0, MP_MESH, MP_SERVICE, MP_NONE, MP_COUNT };
enum metrics_fail {
    MF_RATE = 0, MF_PENDING, MF_REQUEST_TIMEOUT, MF_INVALID_REQUEST, MF_SIGNATURE,
    MF_SOURCE_KEY, MF_NO_DESTINATION, MF_RESPONSE_TIMEOUT, MF_REFUSED, MF_DESTINATION_CLOSED,
    MF_DIALER_GONE, MF_EARLY_BYTES, MF_INTERNAL, MF_COUNT
};
enum metrics_rs_result { MRS_OK = 0, MRS_ERROR, MRS_REFUSED, MRS_TIMEOUT, MRS_COUNT };
enum metrics_store_fault { MS_LOCKED = 0, MS_READONLY, MS_FULL, MS_CORRUPT, MS_OTHER, MS_COUNT };

#define METRICS_RS_BUCKETS 12
extern const double metrics_rs_bucket_bounds[METRICS_RS_BUCKETS];

#define METRICS_MAX_PEERS 128
#define METRICS_STATUS_SLOTS 16

struct metrics_peer {
    char pk_hex[DMSG_PK_HEX_LEN + 1];
    bool up;
    uint64_t reconnects;
};

/* Everything /metrics shows, as numbers. */
struct metrics_snapshot {
    const char *version;
    double start_time_seconds;
    uint64_t sessions[METRICS_KIND_COUNT];
    uint64_t sessions_total[METRICS_KIND_COUNT];
    uint64_t rejected[MR_COUNT];
    uint64_t handshakes_failed[MH_COUNT];
    uint64_t evicted[ME_COUNT];
    uint64_t streams[MP_NONE];                 /* local, mesh, service */
    uint64_t streams_opened[MP_NONE];
    uint64_t streams_failed[MP_COUNT][MF_COUNT];
    uint64_t relay_bytes[MP_SERVICE];          /* local, mesh */
    struct metrics_peer peers[METRICS_MAX_PEERS];
    size_t n_peers;
    uint64_t route_setups[MRS_COUNT];
    uint64_t rs_bucket_counts[METRICS_RS_BUCKETS]; /* non-cumulative, per bucket */
    uint64_t rs_count;
    double rs_sum_seconds;
    uint64_t rs_in_flight;
    uint64_t discovery_ok, discovery_error;
    uint64_t store_errors[MS_COUNT];
    unsigned admin_status[METRICS_STATUS_SLOTS];   /* 0-terminated list of status codes */
    uint64_t admin_requests[METRICS_STATUS_SLOTS];
    uint64_t open_fds;
    uint64_t resident_memory_bytes;
};

/* ---- pure: rendering and flattening ---- */

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

/* One sample of family (of type family_type): series is the name with its labels exactly as
 * /metrics shows it ("dmsgd_sessions{kind=\"client\"}"). */
typedef void (*metrics_sample_fn)(void *user, const char *family, enum metrics_type family_type,
                                  const char *series, double value);

/* Calls fn for every sample of s, families in contract order. */
void metrics_visit(const struct metrics_snapshot *s, metrics_sample_fn fn, void *user);

/* The exposition text of s in a fresh NUL-terminated buffer (caller frees); NULL when out of
 * memory. *len (may be NULL) gets its length. */
char *metrics_render(const struct metrics_snapshot *s, size_t *len);

/* Writes value escaped for a label value (\\, \", \n) into out; returns out. */
const char *metrics_escape_label(const char *value, char *out, size_t cap);

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ---- the daemon's metrics object ---- */

struct metrics_options {
    uint32_t sample_interval_ms;    /* 0: 60000 */
    uint32_t retention_s;           /* 0: 3 days */
};

int metrics_init(struct dmsgd *d, const struct metrics_options *opt, struct metrics **out);
/* Takes a first sample and starts the sampling timer. */
void metrics_start(struct metrics *m);
/* New options (SIGHUP): the interval applies from the next sample on. */
void metrics_set_options(struct metrics *m, const struct metrics_options *opt);
/* Stops sampling; frees once the timer is closed, then on_done (may be NULL). */
void metrics_close(struct metrics *m, void (*on_done)(void *arg), void *arg);

uint32_t metrics_sample_interval_ms(const struct metrics *m);
/* True while the last attempt to store samples failed. */
bool metrics_store_failing(const struct metrics *m);
int64_t metrics_start_time_ms(const struct metrics *m);

/* Fills s from the services' statistics and this module's counters. */
void metrics_collect(struct metrics *m, struct metrics_snapshot *s);

/* Hooks the daemon forwards (NULL m is ignored). */
void metrics_session_up(struct metrics *m, bool peer);
void metrics_session_down(struct metrics *m, int err);
/* The route setup node reports here. result: enum metrics_rs_result. */
void metrics_route_setup_started(struct metrics *m);
void metrics_route_setup_finished(struct metrics *m, enum metrics_rs_result result,
                                  uint64_t duration_ms);

/* Writes one sample of every series now (also called by the timer). 0 or DMSG_EIO. */
int metrics_sample_now(struct metrics *m);

#endif
