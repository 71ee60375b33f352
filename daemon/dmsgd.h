/* The daemon: one struct that owns everything (the loop, the configuration, the identity, the
 * store, the embedded discovery, the relay and the server; later the mesh, the admin API and
 * the setup node), and its start, reload and stop.
 *
 * Shutdown (SIGTERM/SIGINT or dmsgd_stop): the listener closes and every session gets GoAway;
 * streams may finish for up to limits.shutdown_grace_ms (a second signal cuts it short); then
 * every session is closed, the services stop, every handle is closed and dmsgd_run returns. */
#ifndef DMSGD_DMSGD_H
#define DMSGD_DMSGD_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "dmsg/session.h"
#include "health_endpoint.h"
#include "log.h"
#include "registration.h"
#include "store_checkpoint.h"

struct store;
struct server;
struct relay;
struct discovery_service;
struct mesh;
struct metrics;
struct admin;

enum dmsgd_phase {
    DMSGD_NEW = 0,
    DMSGD_RUNNING,
    DMSGD_DRAINING,     /* no new sessions; streams finishing */
    DMSGD_CLOSING,      /* sessions and services closing */
    DMSGD_STOPPED
};

struct dmsgd {
    uv_loop_t loop;
    struct dmsgd_log log;
    struct dmsgd_config cfg;
    char config_path[CONFIG_PATH_MAX + 1];   /* "" when running on the embedded default */
    dmsg_identity identity;
    char public_key_hex[DMSG_PK_HEX_LEN + 1];
    char discovery_url[CONFIG_URL_MAX + 1];  /* the discovery we register in */
    uint32_t hard_max_sessions;              /* after the fd limit */
    int lock_fd;                             /* flock on <state_dir>/dmsgd.lock, -1 when none */

    struct store *store;
    struct discovery_service *discovery;     /* the embedded one, or NULL */
    struct relay *relay;
    struct server *server;
    struct mesh *mesh;                       /* peers and peer links (mesh.h) */
    struct metrics *metrics;                 /* counters and stored samples (metrics.h) */
    struct admin *admin;                     /* the admin HTTP API (api/admin.h), or NULL */
    bool route_setup_enabled;                /* effective: the stored runtime value, else the
                                              * config's (route_setup_setting.h) */
    struct registration registration;        /* our server entry in the discovery */
    bool registration_active;
    struct health_endpoint health;           /* the reference's HTTP /health, when configured */
    struct setup_node *setup_node;           /* our key's port 36 (dmsgd_own.h) */
    char own_started_at[32];                 /* RFC 3339, for /health on DMSG port 80 */
    uint64_t own_started_ms;                 /* loop time at start */

    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t drain_timer;
    uv_timer_t housekeeping_timer;           /* retention of stored history */
    struct store_checkpointer checkpointer;  /* WAL checkpoints off the loop */
    bool handles_open;
    uint64_t drain_started_ms;
    size_t sessions;                         /* last reported established count */
    enum dmsgd_phase phase;
    int exit_code;
};

/* Takes cfg (from a file, or config_defaults() for the embedded default; config_path "" then),
 * fills what it leaves open (state_dir, the key pair from the key file), opens the store.
 * err gets an operator-facing line on failure. */
int dmsgd_init(struct dmsgd *d, const struct dmsgd_config *cfg, const char *config_path,
               char *err, size_t err_cap);

/* Starts the embedded discovery (when cfg.discovery is empty), the relay, the server's
 * listener, the registration in the discovery and the signal handlers, and prints the key and
 * addresses. The caller must have called curl_global_init() once before (libcurl's rule). */
int dmsgd_start(struct dmsgd *d, char *err, size_t err_cap);

/* Runs the loop until the daemon stopped; returns the exit code (0 after a clean stop). */
int dmsgd_run(struct dmsgd *d);

/* Begins the graceful shutdown (what SIGTERM does); a second call closes at once. */
void dmsgd_stop(struct dmsgd *d);

/* Re-reads the config file and applies what can change at runtime (SIGHUP). */
int dmsgd_reload(struct dmsgd *d);

/* Releases what dmsgd_init took, after dmsgd_run returned (or when start failed). */
void dmsgd_free(struct dmsgd *d);

/* Limits in the form each service takes them (exposed for tests). */
struct server_limits;
struct relay_limits;
void dmsgd_server_limits(const struct dmsgd_config *cfg, uint32_t hard_max_sessions,
                         struct server_limits *out);
void dmsgd_relay_limits(const struct dmsgd_config *cfg, struct relay_limits *out);

#endif
