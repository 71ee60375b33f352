/* The daemon's top struct: start, reload, drain and stop; see dmsgd.h. */
#include "dmsgd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include "discovery_service.h"
#include "dmsg/error.h"
#include "keyfile.h"
#include "dmsgd_admin.h"
#include "dmsgd_own.h"
#include "mesh.h"
#include "netaddr.h"
#include "relay.h"
#include "route_setup_log.h"
#include "sd_notify.h"
#include "server.h"
#include "store.h"

#define STORE_FILE_NAME "dmsgd.db"
#define LOCK_FILE_NAME "dmsgd.lock"
#define DRAIN_POLL_MS 100
#define HOUSEKEEPING_MS 60000 /* retention is counted in minutes at the finest */
#define CHECKPOINT_MS 1000
#define FD_RESERVE 64 /* fds kept for the store, listeners, logs and the admin API */

#ifndef DMSGD_VERSION
#define DMSGD_VERSION "dev"
#endif

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

/* ---------------------------------------------------------------------------------------------
 * Limits */

void dmsgd_server_limits(const struct dmsgd_config *cfg, uint32_t hard_max_sessions,
                         struct server_limits *out)
{
    const struct config_limits *l = &cfg->limits;

    memset(out, 0, sizeof *out);
    out->max_sessions = hard_max_sessions;
    out->max_pending_handshakes = l->max_pending_handshakes;
    out->max_pending_per_ip = l->max_pending_per_ip;
    out->max_sessions_per_ip = l->max_sessions_per_ip;
    out->eviction_interval_ms = l->eviction_interval_ms;
    dmsg_session_config_default(&out->session);
    out->session.handshake_timeout_ms = l->handshake_timeout_ms;
    out->session.idle_timeout_ms = l->session_idle_timeout_ms;
    out->session.write_timeout_ms = l->write_timeout_ms;
    out->session.max_write_queue = l->max_write_queue_bytes;
    out->session.accept_proxy_header = l->accept_proxy_header;
    out->session.yamux.max_streams = l->max_streams_per_session;
    out->session.yamux.keepalive_interval_ms = l->keepalive_interval_ms;
    out->session.yamux.keepalive_timeout_ms = l->keepalive_timeout_ms;
}

void dmsgd_relay_limits(const struct dmsgd_config *cfg, struct relay_limits *out)
{
    const struct config_limits *l = &cfg->limits;

    relay_limits_default(out);
    out->request_timeout_ms = l->request_timeout_ms;
    out->response_timeout_ms = l->response_timeout_ms;
    out->max_object_bytes = l->max_object_bytes;
    out->max_early_bytes = l->max_early_bytes;
    out->max_pending_requests = l->max_pending_requests;
    out->requests_per_second = l->stream_requests_per_second;
    out->requests_burst = l->stream_requests_burst;
}

/* The hard session cap: the configured one, within what the fd limit allows (one fd each). */
static uint32_t hard_session_cap(struct dmsgd *d)
{
    uint64_t want = d->cfg.limits.max_sessions_hard != 0 ? d->cfg.limits.max_sessions_hard
                                                         : (uint64_t)d->cfg.max_sessions;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return (uint32_t)want;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want + FD_RESERVE &&
        rl.rlim_cur < rl.rlim_max) {
        rlim_t raised = rl.rlim_max == RLIM_INFINITY ? (rlim_t)(want + FD_RESERVE) : rl.rlim_max;
        if (raised > want + FD_RESERVE)
            raised = (rlim_t)(want + FD_RESERVE);
        rl.rlim_cur = raised;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want + FD_RESERVE) {
        uint64_t fit = rl.rlim_cur > FD_RESERVE * 2 ? rl.rlim_cur - FD_RESERVE : FD_RESERVE;
        log_warn(&d->log, "session cap lowered to fit the open-file limit",
                 "wanted=%llu nofile=%llu cap=%llu", (unsigned long long)want,
                 (unsigned long long)rl.rlim_cur, (unsigned long long)fit);
        return (uint32_t)fit;
    }
    return (uint32_t)want;
}

/* ---------------------------------------------------------------------------------------------
 * Init */

static int load_identity(struct dmsgd *d, char *err, size_t err_cap)
{
    bool created = false;
    int rc;

    d->identity.rng = dmsg_rng_system();
    if (!d->cfg.has_keys) {
        rc = keyfile_load_or_create(d->cfg.state_dir, &d->identity.rng, &d->cfg.public_key,
                                    &d->cfg.secret_key, &created, err, err_cap);
        if (rc != 0)
            return rc;
        if (created)
            log_info(&d->log, "generated a new key pair", "file=%s/%s", d->cfg.state_dir,
                     KEYFILE_NAME);
    }
    d->identity.pk = d->cfg.public_key;
    d->identity.sk = d->cfg.secret_key;
    dmsg_pk_to_hex(&d->identity.pk, d->public_key_hex);
    for (size_t i = 0; i < d->cfg.n_peers; i++) {
        if (dmsg_pk_equal(&d->cfg.peers[i].public_key, &d->identity.pk)) {
            snprintf(err, err_cap, "peers[%zu].public_key is this server's own key", i);
            return DMSG_EINVAL;
        }
    }
    return 0;
}

/* One daemon per state directory: two would share keys, database and admin socket. */
static int lock_state_dir(struct dmsgd *d, char *err, size_t err_cap)
{
    char path[CONFIG_PATH_MAX + 32];

    snprintf(path, sizeof path, "%s/%s", d->cfg.state_dir, LOCK_FILE_NAME);
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lock_fd < 0) {
        snprintf(err, err_cap, "%s: %s", path, strerror(errno));
        return DMSG_EIO;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, err_cap, "state_dir \"%s\" is in use by another dmsgd (%s is locked)",
                 d->cfg.state_dir, path);
        close(d->lock_fd);
        d->lock_fd = -1;
        return DMSG_EEXIST;
    }
    return 0;
}

static int open_store(struct dmsgd *d, char *err, size_t err_cap)
{
    char path[CONFIG_PATH_MAX + 32];
    struct store_error serr;
    int rc;

    snprintf(path, sizeof path, "%s/%s", d->cfg.state_dir, STORE_FILE_NAME);
    rc = store_open(&d->store, path, NULL, &serr);
    if (rc != 0)
        snprintf(err, err_cap, "%s", serr.message);
    return rc;
}

int dmsgd_init(struct dmsgd *d, const struct dmsgd_config *cfg, const char *config_path,
               char *err, size_t err_cap)
{
    int rc;

    memset(d, 0, sizeof *d);
    d->lock_fd = -1;
    log_init(&d->log);
    d->cfg = *cfg;
    d->log.level = cfg->log_level;
    snprintf(d->config_path, sizeof d->config_path, "%s", config_path != NULL ? config_path : "");
    if (dmsg_cipher_init() != 0) {
        snprintf(err, err_cap, "cannot initialise the crypto libraries");
        return DMSG_EINVAL;
    }
    config_resolve_state_dir(&d->cfg, env_lookup, geteuid() == 0);
    rc = state_dir_ensure(d->cfg.state_dir, err, err_cap);
    if (rc == 0)
        rc = lock_state_dir(d, err, err_cap);
    if (rc == 0)
        rc = load_identity(d, err, err_cap);
    if (rc == 0)
        rc = open_store(d, err, err_cap);
    if (rc == 0)
        rc = uv_loop_init(&d->loop) == 0 ? 0 : DMSG_EIO;
    if (rc != 0) {
        if (err[0] == '\0')
            snprintf(err, err_cap, "initialisation failed: %s", dmsg_strerror(rc));
        store_close(d->store);
        d->store = NULL;
        if (d->lock_fd >= 0)
            close(d->lock_fd);
        d->lock_fd = -1;
        dmsg_wipe(&d->cfg.secret_key, sizeof d->cfg.secret_key);
        dmsg_wipe(&d->identity.sk, sizeof d->identity.sk);
        return rc;
    }
    d->phase = DMSGD_NEW;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Hooks between the services */

static dmsg_session *find_local(void *ctx, const dmsg_pk *pk)
{
    struct dmsgd *d = ctx;

    return d->server != NULL ? server_find_session(d->server, pk) : NULL;
}

/* Discovery registration seam: the server entry's availableSessions follows this. */
static void on_sessions_changed(void *ctx, size_t sessions)
{
    struct dmsgd *d = ctx;

    d->sessions = sessions;
    if (d->registration_active)
        registration_set_sessions(&d->registration, (int64_t)sessions);
    log_debug(&d->log, "sessions changed", "sessions=%zu available=%lld", sessions,
              (long long)(d->cfg.max_sessions - (int64_t)sessions));
}

/* Mesh seams: the relay asks the mesh for further hops and peer announcements; the server tells
 * it which sessions come and go (trust by configuration). */
static int mesh_next_hop_hook(void *ctx, const dmsg_pk *dst, dmsg_session *ingress,
                              unsigned attempt, dmsg_session **hop, uint32_t *timeout_ms)
{
    struct dmsgd *d = ctx;

    if (d->mesh == NULL)
        return DMSG_ENOTFOUND;
    return mesh_next_hop(d->mesh, dst, ingress, attempt, hop, timeout_ms);
}

static void mesh_hop_result_hook(void *ctx, const dmsg_pk *dst, dmsg_session *hop, int result)
{
    struct dmsgd *d = ctx;

    if (d->mesh != NULL)
        mesh_hop_result(d->mesh, dst, hop, result);
}

static int mesh_announce_hook(void *ctx, dmsg_session *s, struct relay_session *rs,
                              const uint8_t *obj, size_t obj_len, uint8_t *out, size_t cap,
                              size_t *out_len)
{
    struct dmsgd *d = ctx;

    if (d->mesh == NULL)
        return 0;
    return mesh_answer_announce(d->mesh, s, rs, obj, obj_len, out, cap, out_len);
}

static void on_session_up(void *ctx, dmsg_session *s, struct relay_session *rs)
{
    struct dmsgd *d = ctx;

    if (d->mesh != NULL)
        mesh_session_up(d->mesh, s, rs);
    dmsgd_admin_session_up(d, s, rs); /* after the mesh: it decides the session's kind */
}

static void on_session_down(void *ctx, dmsg_session *s)
{
    struct dmsgd *d = ctx;

    if (d->mesh != NULL)
        mesh_session_down(d->mesh, s);
}

static void on_mesh_closed(void *arg)
{
    struct dmsgd *d = arg;

    d->mesh = NULL;
}

static int start_mesh(struct dmsgd *d, char *err, size_t err_cap)
{
    struct mesh_options mo;
    struct server_limits slim;
    int rc;

    mesh_options_default(&mo);
    dmsgd_server_limits(&d->cfg, d->hard_max_sessions, &slim);
    mo.session = slim.session;
    mo.session.accept_proxy_header = false;
    rc = mesh_init(&d->loop, &d->identity, d->store, &mo, &d->log, &d->mesh);
    if (rc != 0) {
        snprintf(err, err_cap, "mesh: %s", dmsg_strerror(rc));
        return rc;
    }
    mesh_attach(d->mesh, d->server, d->relay);
    return mesh_start(d->mesh, d->cfg.peers, d->cfg.n_peers, d->cfg.accept_discovered_peers,
                      d->discovery_url, err, err_cap);
}

static void finish_close(struct dmsgd *d);

static void on_server_idle(void *ctx)
{
    struct dmsgd *d = ctx;

    if (d->phase == DMSGD_CLOSING)
        finish_close(d);
}

/* ---------------------------------------------------------------------------------------------
 * Start */

static int start_embedded_discovery(struct dmsgd *d, char *err, size_t err_cap)
{
    struct discovery_service_config dc;
    char host[CONFIG_ADDR_MAX + 1];
    uint16_t port;
    int rc;

    memset(&dc, 0, sizeof dc);
    dc.store = d->store;
    dc.http.tcp_address = d->cfg.embedded_discovery_address;
    dc.test_mode = true; /* a private network may well run on loopback or LAN addresses */
    dc.version = DMSGD_VERSION;
    rc = discovery_service_init(&d->loop, &d->discovery, &dc);
    if (rc == 0)
        rc = discovery_service_start(d->discovery);
    if (rc != 0) {
        snprintf(err, err_cap, "embedded discovery on %s: %s", d->cfg.embedded_discovery_address,
                 d->discovery != NULL ? discovery_service_last_error(d->discovery)
                                      : dmsg_strerror(rc));
        return rc;
    }
    netaddr_split(d->cfg.embedded_discovery_address, host, sizeof host, &port);
    port = discovery_service_port(d->discovery);
    snprintf(d->discovery_url, sizeof d->discovery_url, strchr(host, ':') ? "http://[%s]:%u"
                                                                           : "http://%s:%u",
             host[0] != '\0' ? host : "127.0.0.1", (unsigned)port);
    return 0;
}

/* The address clients dial: public_address, else the bound listener (loopback for a wildcard). */
static void advertised_address(const struct dmsgd *d, char *out, size_t cap)
{
    char host[CONFIG_ADDR_MAX + 1];
    uint16_t port;

    if (d->cfg.public_address[0] != '\0') {
        snprintf(out, cap, "%s", d->cfg.public_address);
        return;
    }
    netaddr_split(d->cfg.local_address, host, sizeof host, &port);
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
             (unsigned)server_port(d->server));
}

static void start_registration(struct dmsgd *d)
{
    struct registration_config rc;
    char address[CONFIG_ADDR_MAX + 16];
    int err;

    advertised_address(d, address, sizeof address);
    memset(&rc, 0, sizeof rc);
    rc.discovery_url = d->discovery_url;
    rc.pk = d->identity.pk;
    rc.sk = d->identity.sk;
    rc.address = address;
    rc.max_sessions = d->cfg.max_sessions;
    rc.update_interval_ms = d->cfg.update_interval_ns / 1000000u;
    rc.client_self = true; /* one entry: our server part and a client part for our services */
    err = registration_start(&d->registration, &d->loop, &rc, &d->log);
    dmsg_wipe(&rc.sk, sizeof rc.sk);
    if (err != 0) {
        log_error(&d->log, "cannot register in discovery", "url=%s err=\"%s\"", d->discovery_url,
                  dmsg_strerror(err));
        return;
    }
    d->registration_active = true;
    log_info(&d->log, "registering in discovery", "url=%s address=%s", d->discovery_url,
             address);
}

static void on_discovery_closed(struct discovery_service *svc, void *arg);

static void on_registration_closed(void *arg)
{
    struct dmsgd *d = arg;

    d->registration_active = false;
    /* The embedded discovery stayed up for our own DELETE. */
    if (d->phase == DMSGD_STOPPED && d->discovery != NULL)
        discovery_service_close(d->discovery, on_discovery_closed, d);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct dmsgd *d = h->data;

    if (signum == SIGHUP) {
        dmsgd_notify_reloaded(dmsgd_reload(d) == 0);
        return;
    }
    log_info(&d->log, "signal received", "signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    dmsgd_stop(d);
}

static void start_signals(struct dmsgd *d)
{
    uv_signal_t *sigs[] = {&d->sig_term, &d->sig_int, &d->sig_hup};
    int nums[] = {SIGTERM, SIGINT, SIGHUP};

    for (size_t i = 0; i < 3; i++) {
        uv_signal_init(&d->loop, sigs[i]);
        sigs[i]->data = d;
        uv_signal_start(sigs[i], on_signal, nums[i]);
    }
    uv_timer_init(&d->loop, &d->drain_timer);
    d->drain_timer.data = d;
    uv_timer_init(&d->loop, &d->housekeeping_timer);
    d->housekeeping_timer.data = d;
    d->handles_open = true;
}

static void on_housekeeping(uv_timer_t *t)
{
    route_setup_log_expire(t->data);
}

static void advertised_address(const struct dmsgd *d, char *out, size_t cap);

static void print_banner(struct dmsgd *d)
{
    char host[CONFIG_ADDR_MAX + 1];
    uint16_t port;
    bool embedded = d->discovery != NULL;
    char advertised[CONFIG_ADDR_MAX + 16];

    netaddr_split(d->cfg.local_address, host, sizeof host, &port);
    advertised_address(d, advertised, sizeof advertised);
    log_info(&d->log, "dmsgd started",
             "version=%s public_key=%s local_address=%s:%u public_address=%s discovery=%s "
             "embedded_discovery=%s state_dir=%s max_sessions=%lld max_sessions_hard=%u",
             DMSGD_VERSION, d->public_key_hex, host[0] ? host : "0.0.0.0",
             (unsigned)server_port(d->server), advertised, d->discovery_url,
             embedded ? "on" : "off", d->cfg.state_dir, (long long)d->cfg.max_sessions,
             d->hard_max_sessions);
    printf("dmsgd %s\n", DMSGD_VERSION);
    printf("public key:   %s\n", d->public_key_hex);
    printf("listening on: %s:%u\n", host[0] ? host : "0.0.0.0", (unsigned)server_port(d->server));
    printf("advertised:   %s\n", advertised);
    printf("discovery:    %s%s\n", d->discovery_url, embedded ? " (embedded)" : "");
    printf("state dir:    %s\n", d->cfg.state_dir);
    fflush(stdout);
}

int dmsgd_start(struct dmsgd *d, char *err, size_t err_cap)
{
    struct server_limits slim;
    struct relay_limits rlim;
    struct relay_hooks rh;
    struct server_hooks sh;
    int rc;

    if (d->phase != DMSGD_NEW)
        return DMSG_ESTATE;
    if (d->cfg.discovery[0] == '\0') {
        rc = start_embedded_discovery(d, err, err_cap);
        if (rc != 0)
            return rc;
    } else {
        snprintf(d->discovery_url, sizeof d->discovery_url, "%s", d->cfg.discovery);
    }
    d->hard_max_sessions = hard_session_cap(d);
    dmsgd_relay_limits(&d->cfg, &rlim);
    memset(&rh, 0, sizeof rh);
    rh.ctx = d;
    rh.find_local = find_local;
    rh.next_hop = mesh_next_hop_hook;
    rh.hop_result = mesh_hop_result_hook;
    rh.peer_announce = mesh_announce_hook;
    rh.on_stream_open = dmsgd_admin_stream_open;
    rh.on_stream_close = dmsgd_admin_stream_close;
    rh.own_service = dmsgd_own_service;
    route_setup_log_recover(d);
    rc = dmsgd_own_start(d);
    if (rc != 0) {
        snprintf(err, err_cap, "setup node: %s", dmsg_strerror(rc));
        return rc;
    }
    rc = relay_init(&d->loop, &d->identity, &rlim, &rh, &d->log, &d->relay);
    if (rc != 0) {
        snprintf(err, err_cap, "relay: %s", dmsg_strerror(rc));
        return rc;
    }
    dmsgd_server_limits(&d->cfg, d->hard_max_sessions, &slim);
    memset(&sh, 0, sizeof sh);
    sh.ctx = d;
    sh.on_sessions_changed = on_sessions_changed;
    sh.on_idle = on_server_idle;
    sh.on_session_up = on_session_up;
    sh.on_session_down = on_session_down;
    sh.on_session_closed = dmsgd_admin_session_closed;
    rc = server_init(&d->loop, &d->identity, &slim, d->relay, &sh, &d->log, &d->server);
    if (rc == 0)
        rc = server_listen(d->server, d->cfg.local_address, err, err_cap);
    if (rc != 0) {
        if (err[0] == '\0')
            snprintf(err, err_cap, "server: %s", dmsg_strerror(rc));
        return rc;
    }
    rc = start_mesh(d, err, err_cap);
    if (rc != 0)
        return rc;
    rc = dmsgd_admin_start(d, err, err_cap);
    if (rc != 0)
        return rc;
    if (d->cfg.health_endpoint_address[0] != '\0') {
        char herr[300];
        if (health_endpoint_start(&d->health, &d->loop, d->cfg.health_endpoint_address,
                                  DMSGD_VERSION, herr, sizeof herr) != 0)
            log_warn(&d->log, "health endpoint not served", "error=\"%s\"", herr);
    }
    start_signals(d);
    uv_timer_start(&d->housekeeping_timer, on_housekeeping, 0, HOUSEKEEPING_MS);
    if (d->store != NULL &&
        store_checkpointer_start(&d->checkpointer, &d->loop, d->store, &d->log,
                                 CHECKPOINT_MS) != 0)
        log_warn(&d->log, "WAL checkpoints stay inside commits", "error=\"%s\"",
                 store_last_error(d->store)->message);
    d->phase = DMSGD_RUNNING;
    print_banner(d);
    start_registration(d);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Stop */

static void on_drain_tick(uv_timer_t *t)
{
    struct dmsgd *d = t->data;
    uint64_t elapsed = uv_now(&d->loop) - d->drain_started_ms;

    if (d->phase != DMSGD_DRAINING)
        return;
    if (server_stream_count(d->server) > 0 && elapsed < d->cfg.limits.shutdown_grace_ms)
        return;
    uv_timer_stop(t);
    d->phase = DMSGD_CLOSING;
    log_info(&d->log, "closing sessions", "sessions=%zu", server_session_count(d->server));
    if (d->mesh != NULL)
        mesh_close(d->mesh, on_mesh_closed, d); /* peer links and their streams */
    server_close_sessions(d->server); /* on_server_idle follows */
}

void dmsgd_stop(struct dmsgd *d)
{
    switch (d->phase) {
    case DMSGD_RUNNING:
        dmsgd_notify_stopping();
        d->phase = DMSGD_DRAINING;
        d->drain_started_ms = uv_now(&d->loop);
        log_info(&d->log, "draining", "sessions=%zu grace_ms=%u", server_session_count(d->server),
                 d->cfg.limits.shutdown_grace_ms);
        server_drain(d->server);
        /* Clients stop picking us at once; the reference deletes its entry on shutdown too. */
        if (d->registration_active)
            registration_close(&d->registration, d->cfg.limits.shutdown_grace_ms + 1000,
                               on_registration_closed, d);
        uv_timer_start(&d->drain_timer, on_drain_tick, 0, DRAIN_POLL_MS);
        break;
    case DMSGD_DRAINING:
        /* A second signal: do not wait for streams any longer. */
        d->drain_started_ms = 0;
        d->cfg.limits.shutdown_grace_ms = 0;
        on_drain_tick(&d->drain_timer);
        break;
    default:
        break;
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_discovery_closed(struct discovery_service *svc, void *arg)
{
    struct dmsgd *d = arg;

    (void)svc;
    d->discovery = NULL;
}

static void on_server_freed(void *arg)
{
    struct dmsgd *d = arg;

    d->server = NULL;
}

static void on_relay_freed(void *arg)
{
    struct dmsgd *d = arg;

    d->relay = NULL;
}

/* Every session is gone: stop the services and close our handles; the loop then ends. */
static void finish_close(struct dmsgd *d)
{
    d->phase = DMSGD_STOPPED;
    dmsgd_admin_close(d);
    if (d->registration_active) /* the DELETE may still be on its way: it has its deadline */
        registration_close(&d->registration, d->cfg.limits.shutdown_grace_ms + 1000,
                           on_registration_closed, d);
    else if (d->discovery != NULL)
        discovery_service_close(d->discovery, on_discovery_closed, d);
    health_endpoint_close(&d->health);
    dmsgd_own_close(d);
    if (d->mesh != NULL)
        mesh_close(d->mesh, on_mesh_closed, d);
    if (d->server != NULL)
        server_close(d->server, on_server_freed, d);
    if (d->relay != NULL)
        relay_close(d->relay, on_relay_freed, d);
    if (d->handles_open) {
        d->handles_open = false;
        uv_close((uv_handle_t *)&d->sig_term, on_handle_closed);
        uv_close((uv_handle_t *)&d->sig_int, on_handle_closed);
        uv_close((uv_handle_t *)&d->sig_hup, on_handle_closed);
        uv_close((uv_handle_t *)&d->drain_timer, on_handle_closed);
        uv_close((uv_handle_t *)&d->housekeeping_timer, on_handle_closed);
    }
    store_checkpointer_close(&d->checkpointer);
    log_info(&d->log, "stopped", NULL);
}

int dmsgd_run(struct dmsgd *d)
{
    uv_run(&d->loop, UV_RUN_DEFAULT);
    return d->exit_code;
}

/* ---------------------------------------------------------------------------------------------
 * Reload */

static void log_config_warning(void *user, const char *key, const char *message)
{
    struct dmsgd *d = user;

    log_warn(&d->log, "config", "key=%s problem=\"%s\"", key, message);
}

int dmsgd_reload(struct dmsgd *d)
{
    struct dmsgd_config next;
    struct config_error cerr;
    struct server_limits slim;
    struct relay_limits rlim;
    char changed[512];
    int rc;

    if (d->config_path[0] == '\0') {
        log_info(&d->log, "reload: running on the embedded default, nothing to reload", NULL);
        return 0;
    }
    config_defaults(&next);
    rc = config_load_file(&next, d->config_path, log_config_warning, d, &cerr);
    if (rc != 0) {
        char quoted[600];
        log_error(&d->log, "reload failed; keeping the running configuration", "error=%s",
                  log_quote(cerr.message, quoted, sizeof quoted));
        dmsg_wipe(&next.secret_key, sizeof next.secret_key);
        return rc;
    }
    config_resolve_state_dir(&next, env_lookup, geteuid() == 0);
    if (!next.has_keys) {
        /* The key file is not re-read: keys never change at runtime. */
        next.public_key = d->cfg.public_key;
        next.has_keys = d->cfg.has_keys;
    }
    if (d->mesh != NULL) { /* peers change at runtime: link the new, drop the gone */
        mesh_reload(d->mesh, next.peers, next.n_peers, next.accept_discovered_peers);
        memcpy(d->cfg.peers, next.peers, sizeof d->cfg.peers);
        d->cfg.n_peers = next.n_peers;
        d->cfg.accept_discovered_peers = next.accept_discovered_peers;
    }
    config_apply_reload(&d->cfg, &next, changed, sizeof changed);
    dmsg_wipe(&next.secret_key, sizeof next.secret_key);
    d->log.level = d->cfg.log_level;
    if (d->server != NULL) {
        dmsgd_server_limits(&d->cfg, d->hard_max_sessions, &slim);
        server_set_limits(d->server, &slim);
    }
    if (d->relay != NULL) {
        dmsgd_relay_limits(&d->cfg, &rlim);
        relay_set_limits(d->relay, &rlim);
    }
    dmsgd_own_reload(d);
    dmsgd_admin_reload(d);
    log_info(&d->log, "configuration reloaded", "log_level=%s",
             log_level_name(d->cfg.log_level));
    if (changed[0] != '\0')
        log_warn(&d->log, "reload: these keys changed but need a restart", "keys=%s", changed);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Free */

void dmsgd_free(struct dmsgd *d)
{
    /* After a failed start some services exist without having run: close and drain them. */
    if (d->phase != DMSGD_STOPPED && d->mesh != NULL)
        mesh_close(d->mesh, on_mesh_closed, d);
    if (d->phase != DMSGD_STOPPED && (d->server != NULL || d->relay != NULL ||
                                      d->discovery != NULL || d->handles_open)) {
        d->phase = DMSGD_CLOSING;
        if (d->server != NULL)
            server_close_sessions(d->server);
        else
            finish_close(d);
        uv_run(&d->loop, UV_RUN_DEFAULT);
    }
    dmsgd_own_close(d); /* a start that failed before the loop ran */
    uv_run(&d->loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&d->loop) != 0)
        log_warn(&d->log, "event loop closed with handles still open", NULL);
    store_close(d->store);
    d->store = NULL;
    if (d->lock_fd >= 0)
        close(d->lock_fd); /* releases the state directory */
    d->lock_fd = -1;
    dmsg_wipe(&d->cfg.secret_key, sizeof d->cfg.secret_key);
    dmsg_wipe(&d->identity.sk, sizeof d->identity.sk);
}
