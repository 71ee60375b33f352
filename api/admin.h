/* The admin HTTP API (api/openapi.yaml) as the daemon sees it: start, close, and the hooks
 * through which the services report what the live event feed (/v1/events) carries.
 *
 * It listens on the unix socket (always: admin_socket, default <state_dir>/admin.sock, mode
 * 0660, no token) and, when admin_address is set, on TCP (bearer token from
 * <state_dir>/admin.token or the read-only <state_dir>/admin-readonly.token, both written at
 * first start with mode 0600). Everything runs on the daemon's loop (libmicrohttpd driven from
 * it through dmsg/httpd.h), so handlers read and change daemon state without locks.
 *
 * Layer 4: reaches the services only through their headers (server.h, relay.h, mesh.h,
 * store.h, metrics.h, dmsgd_own.h). */
#ifndef DMSGD_API_ADMIN_H
#define DMSGD_API_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/session.h"

struct admin;
struct dmsgd;
struct relay_session;
struct relay_link_info;

#define ADMIN_SOCKET_NAME "admin.sock"
#define ADMIN_TOKEN_FILE "admin.token"
#define ADMIN_READ_TOKEN_FILE "admin-readonly.token"

/* Writes the token files if missing, binds the listeners and starts serving. The daemon's
 * services (store, server, relay, mesh, metrics) must exist. err gets an operator-facing line
 * naming the address or file on failure. */
int admin_start(struct dmsgd *d, struct admin **out, char *err, size_t err_cap);

/* Stops listening (the socket file is removed), ends every event stream and frees the API once
 * its handles are closed; on_done (may be NULL) runs then, possibly from inside this call. */
void admin_close(struct admin *a, void (*on_done)(void *arg), void *arg);

/* Hooks: the daemon forwards the services' hooks here (NULL a is ignored). They only queue
 * events for /v1/events subscribers and count; they never change the services' state. */
void admin_session_up(struct admin *a, dmsg_session *s, const struct relay_session *rs);
/* err: the session's close reason (dmsg/session.h on_close). */
void admin_session_down(struct admin *a, dmsg_session *s, const struct relay_session *rs,
                        int err);
void admin_stream_open(struct admin *a, const struct relay_link_info *info);
/* reason: "fin", "reset", "session_lost" or "timeout". */
void admin_stream_close(struct admin *a, const struct relay_link_info *info, const char *reason);

/* The route setup node (later) reports each setup here for the feed. state is one of
 * received, reserving, installing, done, failed; duration_ms < 0 while in flight. */
void admin_route_setup_event(struct admin *a, uint64_t id, const dmsg_pk *requester,
                             const dmsg_pk *source, const dmsg_pk *destination,
                             const char *state, const char *error, int64_t duration_ms);

/* dmsgd_admin_requests_total: fills status[] with the counted status codes (0-terminated when
 * fewer than cap) and counts[] with their totals; a NULL a gives the codes with zero counts. */
void admin_get_request_counts(const struct admin *a, unsigned *status, uint64_t *counts,
                              size_t cap);

#endif
