/* The DMSG server's listener and session table (spec dmsg-wire.md §4, threats.md §3.1, §7).
 *
 * Admission happens before any handshake work: a new TCP connection is closed at once when the
 * server is draining, when established plus pending sessions reach the hard cap, when pending
 * handshakes reach their global cap, when its IP address is over its pending or established
 * cap, or, while the server is under handshake load, when its IP address is over its handshake
 * rate (ip_rate.h). The handshake runs under the session layer's absolute deadline.
 *
 * The table is keyed by the client's public key, and the newest session wins: the old session
 * is closed and its entry replaced; a session only ever removes its own entry. One key may
 * replace its session at most once per eviction_interval_ms (a reconnect storm of two clients
 * sharing a key is refused instead of flapping).
 *
 * Streams of established sessions go to the relay. Every change of the established set is
 * reported through on_sessions_changed (discovery registration).
 *
 * Layer 3: sessions only through dmsg/session.h; the listener is the one socket it owns. */
#ifndef DMSGD_SERVER_H
#define DMSGD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dmsg/session.h"
#include "log.h"
#include "relay.h"

struct server;

struct server_limits {
    uint32_t max_sessions;            /* hard cap: established + pending handshakes */
    uint32_t max_pending_handshakes;  /* global */
    uint32_t max_pending_per_ip;
    uint32_t max_sessions_per_ip;     /* established + pending from one address */
    uint32_t eviction_interval_ms;
    dmsg_session_config session;      /* handshake deadline, yamux, keepalive, write limits */
};

struct server_hooks {
    void *ctx;
    /* The established set changed; sessions is its new size. May be NULL. */
    void (*on_sessions_changed)(void *ctx, size_t sessions);
    /* A session entered or left the table (mesh, admin listing). May be NULL. */
    void (*on_session_up)(void *ctx, dmsg_session *s, struct relay_session *rs);
    void (*on_session_down)(void *ctx, dmsg_session *s);
    /* All sessions are gone after server_close_sessions(). May be NULL. */
    void (*on_idle)(void *ctx);
    /* A listed session ended, with the session's close reason (dmsg/session.h on_close; the
     * server's own closes: DMSG_EEXIST replaced, DMSG_EPERM kicked, 0 shutdown). Called right
     * before on_session_down. May be NULL. */
    void (*on_session_closed)(void *ctx, dmsg_session *s, struct relay_session *rs, int err);
};

enum server_counter {
    SERVER_ACCEPTED = 0,              /* TCP connections taken into a handshake */
    SERVER_REJECTED_FULL,             /* hard session cap */
    SERVER_REJECTED_PENDING,          /* global pending-handshake cap */
    SERVER_REJECTED_IP,               /* per-IP caps */
    SERVER_REJECTED_DRAINING,
    SERVER_REJECTED_RATE,             /* per-IP handshake rate, under load only */
    SERVER_ACCEPT_ERRORS,             /* accept() failed (EMFILE …) */
    SERVER_HANDSHAKES_OK,
    SERVER_HANDSHAKES_FAILED,         /* includes deadline expiry */
    SERVER_EVICTED,                   /* old sessions replaced by a newer one */
    SERVER_EVICTIONS_REFUSED,         /* newcomers refused: key replaced too recently */
    SERVER_SESSIONS_CLOSED,           /* established sessions that ended */
    SERVER_COUNTER_COUNT
};

const char *server_counter_name(enum server_counter c);

/* Why handshakes failed (SERVER_HANDSHAKES_FAILED split). */
enum server_handshake_failure {
    SERVER_HS_TIMEOUT = 0,            /* the handshake deadline passed */
    SERVER_HS_INVALID,                /* bad handshake bytes, key or MAC */
    SERVER_HS_CLOSED,                 /* the client closed or the socket failed */
    SERVER_HS_COUNT
};

struct server_stats {
    uint64_t counters[SERVER_COUNTER_COUNT];
    uint64_t handshake_failures[SERVER_HS_COUNT];
    uint32_t established;
    uint32_t pending;
};

/* identity, relay and log are borrowed and must outlive the server. */
int server_init(uv_loop_t *loop, const dmsg_identity *identity, const struct server_limits *lim,
                struct relay *relay, const struct server_hooks *hooks,
                const struct dmsgd_log *log, struct server **out);

/* Binds "host:port" (":port" = every IPv4 address; port 0 picks one) and starts accepting.
 * DMSG_EINVAL (bad address), DMSG_EEXIST (in use), DMSG_EPERM, DMSG_EIO; err says which. */
int server_listen(struct server *srv, const char *address, char *err, size_t err_cap);
/* The bound port, 0 before server_listen. */
uint16_t server_port(const struct server *srv);

/* New limits apply to connections accepted from now on. */
void server_set_limits(struct server *srv, const struct server_limits *lim);

/* The established session of pk, or NULL. */
dmsg_session *server_find_session(const struct server *srv, const dmsg_pk *pk);
size_t server_session_count(const struct server *srv);
/* Calls fn for each established session (do not close sessions from fn). */
void server_foreach_session(const struct server *srv,
                            void (*fn)(dmsg_session *s, struct relay_session *rs, void *arg),
                            void *arg);

/* Graceful drain: stops accepting (the listener is closed) and sends GoAway on every
 * established session; existing streams go on. */
void server_drain(struct server *srv);
/* Streams still open on established sessions (to decide when a drain is done). */
size_t server_stream_count(const struct server *srv);
/* Closes every session, pending or established; on_idle follows once all are gone (at once
 * from the loop when there were none). */
void server_close_sessions(struct server *srv);

void server_get_stats(const struct server *srv, struct server_stats *out);

/* Closes the established session of pk (the operator's kick; its reason is DMSG_EPERM). The
 * client may reconnect at once. DMSG_ENOTFOUND when pk has no established session. */
int server_kick(struct server *srv, const dmsg_pk *pk);

/* Closes the listener (if still open) and frees the server once its handle is closed and no
 * session is left. Call after on_idle; DMSG_ESTATE while sessions remain. on_done may be NULL. */
int server_close(struct server *srv, void (*on_done)(void *arg), void *arg);

#endif
