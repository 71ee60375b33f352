/* The embedded dmsg-discovery: the reference discovery's HTTP API (spec: discovery.md),
 * answered from the store, with server entries expiring on a loop timer.
 *
 * Entry decoding, signature checks and the POST/DELETE validation order are the entry core's
 * (include/dmsg/entry.h); this module routes requests as the reference router does, keeps
 * entries in the store and writes the replies. */
#ifndef DMSGD_DISCOVERY_SERVICE_H
#define DMSGD_DISCOVERY_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dmsg/httpd.h"
#include "store.h"

struct discovery_service;

/* Wall-clock time in Unix nanoseconds; tests substitute their own. */
typedef int64_t (*discovery_clock_fn)(void *user);

struct discovery_service_config {
    struct store *store;                 /* borrowed; must outlive the service */
    /* Where to listen, and the HTTP limits (handler and user are the service's own). With
     * neither tcp_address nor unix_path set, the service has no listener of its own and is
     * reached through discovery_service_handle() from another server. */
    struct dmsg_httpd_config http;
    bool test_mode;                      /* accept loopback server addresses, as the reference's
                                            test mode does */
    discovery_clock_fn clock;            /* NULL: the system's real-time clock */
    void *clock_user;
    unsigned expiry_interval_ms;         /* sweep of expired entries; 0: 10000 */
    int64_t server_ttl_s;                /* server entries live this long per POST; 0: 120 */
    int64_t client_timeout_ttl_s;        /* client entries POSTed with ?timeout=true; 0: 180 */
    size_t available_servers_max;        /* 0: 512 */
    /* For GET /health: the build version (NULL: this dmsgd's) and this discovery's dmsg
     * address "<pk>:80" (NULL: omitted). */
    const char *version;
    const char *dmsg_address;
    /* Network-monitor keys (66 hex) allowed to use DELETE /dmsg-discovery/deregister. */
    const char *const *monitor_keys;
    size_t monitor_key_count;
};

int discovery_service_init(uv_loop_t *loop, struct discovery_service **out,
                           const struct discovery_service_config *cfg);
/* Starts the listener (if any) and the expiry timer. On a listener failure the error of
 * dmsg_httpd_start is returned and discovery_service_last_error() says why. */
int discovery_service_start(struct discovery_service *svc);
/* The bound TCP port of the service's own listener, else 0. */
uint16_t discovery_service_port(const struct discovery_service *svc);
const char *discovery_service_last_error(const struct discovery_service *svc);
void discovery_service_stop(struct discovery_service *svc);
typedef void (*discovery_service_close_fn)(struct discovery_service *svc, void *arg);
void discovery_service_close(struct discovery_service *svc, discovery_service_close_fn on_close,
                             void *arg);

/* Answers one request; usable as the handler of any dmsg_httpd (user = the service). */
void discovery_service_handle(void *svc, struct dmsg_httpd_request *req);

/* Runs one expiry sweep now; *removed (may be NULL) gets how many entries went. */
int discovery_service_expire(struct discovery_service *svc, int64_t *removed);

#endif
