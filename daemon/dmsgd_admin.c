/* The operator's side of the daemon; see dmsgd_admin.h. */
#include "dmsgd_admin.h"

#include <stdio.h>

#include "admin.h"
#include "dmsg/error.h"
#include "dmsgd.h"
#include "metrics.h"
#include "netaddr.h"
#include "relay.h"
#include "route_setup_setting.h"
#include "store.h"

static void load_route_setup(struct dmsgd *d)
{
    struct route_setup_setting s;
    if (route_setup_setting_get(d->store, d->cfg.enable_route_setup, &s) != 0) {
        log_warn(&d->log, "route setup toggle unreadable; using the config's value",
                 "enable_route_setup=%s error=\"%s\"", d->cfg.enable_route_setup ? "true" : "false",
                 store_last_error(d->store)->message);
        d->route_setup_enabled = d->cfg.enable_route_setup;
        return;
    }
    d->route_setup_enabled = s.enabled;
    if (s.runtime && s.enabled != d->cfg.enable_route_setup)
        log_info(&d->log, "route setup toggle set at runtime overrides the config",
                 "enabled=%s", s.enabled ? "true" : "false");
}

int dmsgd_admin_start(struct dmsgd *d, char *err, size_t err_cap)
{
    struct metrics_options mo = {
        .sample_interval_ms = d->cfg.limits.metrics_sample_interval_ms,
        .retention_s = d->cfg.limits.metrics_retention_s,
    };
    load_route_setup(d);
    int rc = metrics_init(d, &mo, &d->metrics);
    if (rc != 0) {
        snprintf(err, err_cap, "metrics: %s", dmsg_strerror(rc));
        return rc;
    }
    metrics_start(d->metrics);
    rc = admin_start(d, &d->admin, err, err_cap);
    if (rc != 0)
        return rc;
    log_info(&d->log, "admin API listening", "socket=%s tcp=%s",
             d->cfg.admin_socket[0] ? d->cfg.admin_socket : "<state_dir>/admin.sock",
             d->cfg.admin_address[0] ? d->cfg.admin_address : "off");
    return 0;
}

void dmsgd_admin_reload(struct dmsgd *d)
{
    struct metrics_options mo = {
        .sample_interval_ms = d->cfg.limits.metrics_sample_interval_ms,
        .retention_s = d->cfg.limits.metrics_retention_s,
    };
    if (d->metrics)
        metrics_set_options(d->metrics, &mo);
}

static void on_admin_closed(void *arg)
{
    (void)arg;
}

static void on_metrics_closed(void *arg)
{
    (void)arg;
}

void dmsgd_admin_close(struct dmsgd *d)
{
    if (d->admin) {
        admin_close(d->admin, on_admin_closed, d);
        d->admin = NULL;
    }
    if (d->metrics) {
        metrics_close(d->metrics, on_metrics_closed, d);
        d->metrics = NULL;
    }
}

void dmsgd_admin_session_up(struct dmsgd *d, dmsg_session *s, struct relay_session *rs)
{
    metrics_session_up(d->metrics, rs->is_peer);
    admin_session_up(d->admin, s, rs);
}

/* One line per session the glitch budget ended, naming what it did (the server's own close line
 * only has the error). */
static void log_glitch_close(const struct dmsgd *d, const dmsg_session *s)
{
    char pk[DMSG_PK_HEX_LEN + 1], addr[64], kinds[96];

    dmsg_pk_to_hex(dmsg_session_remote_pk(s), pk);
    netaddr_format(dmsg_session_remote_addr(s), addr, sizeof addr);
    dmsg_glitch_kinds_format(dmsg_session_glitch_kinds(s), kinds, sizeof kinds);
    log_warn(&d->log, "session closed: glitch budget crossed",
             "remote_pk=%s remote_addr=%s glitches=%s threshold=%u window_ms=%u", pk, addr, kinds,
             (unsigned)DMSG_GLITCH_THRESHOLD, (unsigned)DMSG_GLITCH_WINDOW_MS);
}

void dmsgd_admin_session_closed(void *ctx, dmsg_session *s, struct relay_session *rs, int err)
{
    struct dmsgd *d = ctx;
    if (err == DMSG_EGLITCH)
        log_glitch_close(d, s);
    metrics_session_down(d->metrics, err);
    admin_session_down(d->admin, s, rs, err);
}

void dmsgd_admin_stream_open(void *ctx, const struct relay_link_info *info)
{
    struct dmsgd *d = ctx;
    admin_stream_open(d->admin, info);
}

void dmsgd_admin_stream_close(void *ctx, const struct relay_link_info *info, const char *reason)
{
    struct dmsgd *d = ctx;
    admin_stream_close(d->admin, info, reason);
}
