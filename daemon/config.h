/* The dmsgd configuration file: JSON, a superset of the reference dmsg-server's config.
 *
 * Reference keys keep their meaning: public_key, secret_key, discovery, public_address,
 * local_address, health_endpoint_address, log_level, max_sessions, update_interval (a Go
 * time.Duration: integer nanoseconds). Ours: state_dir, embedded_discovery_address,
 * admin_socket, admin_address, peers [{public_key, address}], enable_route_setup,
 * accept_discovered_peers and the "limits" object. Keys of newer reference configs that dmsgd
 * does not implement, and keys nobody knows, are warned about and ignored, never fatal.
 *
 * Every error names the offending key and value. Parsing never reads the clock or the
 * environment: the defaults that depend on the machine (state_dir, generated keys) are filled
 * by config_resolve_state_dir() and the key file (keyfile.h), called by the daemon. */
#ifndef DMSGD_CONFIG_H
#define DMSGD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/cipher.h"
#include "log.h"

#define CONFIG_ADDR_MAX 255          /* host:port text */
#define CONFIG_URL_MAX 1024
#define CONFIG_PATH_MAX 1024
#define CONFIG_MAX_PEERS 64           /* threats.md §7: static peers */

#define CONFIG_DEFAULT_LOCAL_ADDRESS "127.0.0.1:8081"
#define CONFIG_DEFAULT_EMBEDDED_DISCOVERY "127.0.0.1:9090"
#define CONFIG_DEFAULT_MAX_SESSIONS 2048
#define CONFIG_DEFAULT_UPDATE_INTERVAL_NS 60000000000ULL /* the reference's 0 means 1 min */

/* Limits (threats.md §7); every one can be set in the "limits" object under the same name. */
struct config_limits {
    uint32_t handshake_timeout_ms;        /* 5000: absolute, from accept to message 3 */
    uint32_t max_pending_handshakes;      /* 1024: global; over it new TCP is closed at once */
    uint32_t max_pending_per_ip;          /* 16 */
    uint32_t max_sessions_per_ip;         /* 64 (CGNAT visors share addresses) */
    uint32_t max_sessions_hard;           /* 0: max_sessions; always capped by nofile - 64 */
    uint32_t max_streams_per_session;     /* 2048 (upstream's cap): further SYNs get RST */
    uint32_t max_pending_requests;        /* 256 per session (the yamux accept backlog): streams not yet relaying */
    uint32_t stream_requests_per_second;  /* 100 per session ... */
    uint32_t stream_requests_burst;       /* ... burst 300; over it the stream is reset */
    uint32_t request_timeout_ms;          /* 10000: the first object must arrive by then */
    uint32_t response_timeout_ms;         /* 20000: the destination's response (clients' 20 s) */
    uint32_t max_object_bytes;            /* 65535: largest session object body accepted */
    uint32_t max_early_bytes;             /* 65536: bytes a dialer may send before the response */
    uint32_t keepalive_interval_ms;       /* 30000 */
    uint32_t keepalive_timeout_ms;        /* 10000 */
    uint32_t write_timeout_ms;            /* 10000 */
    uint32_t session_idle_timeout_ms;     /* 0: none (clients hold idle sessions on purpose) */
    uint32_t max_write_queue_bytes;       /* 4 MiB per session */
    uint32_t eviction_interval_ms;        /* 1000: a key may replace its session this often */
    uint32_t shutdown_grace_ms;           /* 3000: SIGTERM waits this long for streams */
    uint32_t metrics_sample_interval_ms;  /* 60000: metric samples stored for `dmsgctl stats` */
    uint32_t metrics_retention_s;         /* 259200 (3 days): samples older are deleted */
    uint32_t route_setup_max_hops;        /* 50: hops per direction of a route (visors' cap) */
    uint32_t route_setup_max_in_flight;   /* 64: route setups at once, all requesters */
    uint32_t route_setup_max_per_requester; /* 2: route setups at once per requesting key */
    uint32_t route_setup_deadline_ms;     /* 30000: one route setup, all steps (reference) */
    uint32_t route_setup_retention_s;     /* 604800 (7 days): finished setups kept this long */
    bool accept_proxy_header;             /* false: PROXY v1/v2 only behind a trusted proxy */
};

struct config_peer {
    dmsg_pk public_key;
    char address[CONFIG_ADDR_MAX + 1];
};

struct dmsgd_config {
    bool has_keys;                        /* both keys from the file (else: the key file) */
    dmsg_pk public_key;
    dmsg_sk secret_key;
    char discovery[CONFIG_URL_MAX + 1];   /* "": the embedded discovery serves */
    char public_address[CONFIG_ADDR_MAX + 1];  /* "": local_address */
    char local_address[CONFIG_ADDR_MAX + 1];
    char health_endpoint_address[CONFIG_ADDR_MAX + 1]; /* "": local port + 1 (reference) */
    enum log_level log_level;
    int64_t max_sessions;                 /* advertised; also the hard cap unless limits say */
    uint64_t update_interval_ns;
    char state_dir[CONFIG_PATH_MAX + 1];  /* "": not set (config_resolve_state_dir) */
    char embedded_discovery_address[CONFIG_ADDR_MAX + 1];
    char admin_socket[CONFIG_PATH_MAX + 1];    /* "": <state_dir>/admin.sock */
    char admin_address[CONFIG_ADDR_MAX + 1];   /* "": no TCP admin listener */
    bool admin_allow_remote;              /* admin_address may be a non-loopback address */
    size_t n_peers;
    struct config_peer peers[CONFIG_MAX_PEERS];
    bool enable_route_setup;
    bool accept_discovered_peers;
    struct config_limits limits;
};

/* Called for every non-fatal finding (unknown key, ignored newer key); key is the JSON path. */
typedef void (*config_warn_fn)(void *user, const char *key, const char *message);

struct config_error {
    char key[128];                        /* the offending key ("" when none applies) */
    char message[512];                    /* one line naming key and value */
};

/* The embedded defaults; no keys (has_keys false), state_dir empty. */
void config_defaults(struct dmsgd_config *cfg);

/* Parses JSON text over the defaults. origin names the text in messages (a file name).
 * DMSG_EINVAL with err filled on any bad key or value; warn (may be NULL) gets warnings. */
int config_parse(struct dmsgd_config *cfg, const char *text, size_t len, const char *origin,
                 config_warn_fn warn, void *warn_user, struct config_error *err);

/* Reads and parses a file. Relative state_dir/admin_socket paths in it are taken relative to
 * the file's directory. DMSG_EIO when the file cannot be read (err says why). */
int config_load_file(struct dmsgd_config *cfg, const char *path, config_warn_fn warn,
                     void *warn_user, struct config_error *err);

/* Fills an empty state_dir from the environment: $STATE_DIRECTORY (systemd; its first entry),
 * else /var/lib/dmsgd for root, else $XDG_STATE_HOME/dmsgd, else $HOME/.local/state/dmsgd,
 * else ./dmsgd-state. Pass getenv and geteuid()==0 (tests pass their own). */
void config_resolve_state_dir(struct dmsgd_config *cfg, const char *(*env)(const char *name),
                              bool is_root);

/* The full config as JSON text (caller frees), keys included when cfg->has_keys. Parsing it
 * gives back cfg. NULL on allocation failure. */
char *config_to_json(const struct dmsgd_config *cfg);

/* Splits "host:port" ("[v6]:port", ":port" = every address). 0 or DMSG_EINVAL. host gets ""
 * for the wildcard form. */
int config_split_address(const char *addr, char *host, size_t host_cap, uint16_t *port);

/* The health endpoint address as the reference derives it (local port + 1 when empty). */
int config_health_address(const struct dmsgd_config *cfg, char *out, size_t cap);

/* What SIGHUP may change on a running daemon: the log level and the limits. Copies them from
 * next into cur; changed gets the comma-separated keys that differ but need a restart (their
 * current values are kept), "" when none. */
void config_apply_reload(struct dmsgd_config *cur, const struct dmsgd_config *next,
                         char *changed, size_t cap);

#endif
