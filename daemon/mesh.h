/* The server-to-server mesh: peers, peer links, trust by configuration, one-hop forwarding
 * (issue 4; threats.md §3.6; upstream-mesh.md).
 *
 * Peers. A peer is another server's public key and TCP address. Peers come from the config file
 * (source "config": mirrored into the store at every start and reload, never removable at
 * runtime), from the operator through the admin API (source "admin": stored first, then
 * linked), and, only with accept_discovered_peers, from the discovery's server list (source
 * "discovered"). At most MESH_MAX_PEERS of them.
 *
 * Peer links. For each peer the mesh keeps one outbound session under the server's own key (an
 * ordinary XK client session, yamux client). A link is connecting (TCP or handshake under way),
 * up, or down (waiting to redial: 5 s, ×1.5 per failure, at most 60 s, ±20% jitter; a link that
 * lived at least 30 s redials after the base delay). On every link it dials the mesh sends a
 * signed PeerAnnounce (what newer reference servers expect) and reads the signed answer.
 *
 * Trust by configuration. A session is a peer session iff its remote key is a peer, whoever
 * dialed: the inbound session of a peer (in the server's table) and our outbound link to it.
 * A peer session may carry requests of other sources (verified on their own signature), which
 * are delivered locally only. Removing a peer demotes and closes its sessions at once.
 *
 * Duplicate links. When both servers list each other there are two sessions per pair: ours
 * (outbound) and theirs (inbound). Both are served (the peer may open streams on either, as newer
 * reference servers do) and either carries forwarded requests; the mesh forwards on its own
 * outbound link when that is up (the one every server generation serves), else on the peer's
 * inbound session. So forwarding works whichever side dialed first.
 *
 * Forwarding (relay_hooks.next_hop): for a destination that is not local and a request from a
 * client session, the connected peers are tried in turn, each with its own deadline
 * (peer_timeout_ms, 5 s like the reference): first the peer that last delivered to that
 * destination (a bounded cache with expiry), then the others; never the session the request came
 * from. A destination no peer delivered to is remembered briefly (negative cache) and refused at
 * once. Requests from peer sessions never reach the mesh (relay.c: local delivery only).
 *
 * Layer 3: sessions through dmsg/session.h, the store through store.h. Loop thread only. */
#ifndef DMSGD_MESH_H
#define DMSGD_MESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "dmsg/cipher.h"
#include "dmsg/session.h"
#include "log.h"
#include "relay.h"
#include "store.h"

struct mesh;
struct server;

#define MESH_MAX_PEERS 128          /* 64 from the config file plus the runtime ones */
#define MESH_NOTE_MAX 256           /* bytes of an operator's note */
#define MESH_ERROR_MAX 160          /* bytes of a link's last error text */

/* ---------------------------------------------------------------------------------------------
 * Options */

struct mesh_options {
    uint32_t peer_timeout_ms;       /* 5000: one peer's answer to a forwarded request */
    uint32_t max_peers_per_request; /* 8: peers tried for one request, at most */
    uint32_t backoff_initial_ms;    /* 5000 */
    uint32_t backoff_max_ms;        /* 60000 */
    double backoff_factor;          /* 1.5 */
    double backoff_jitter;          /* 0.2: each wait is scaled by a factor in [1-j, 1+j] */
    uint32_t healthy_after_ms;      /* 30000: a link that lived this long redials at once */
    uint32_t announce_timeout_ms;   /* 5000: our PeerAnnounce's answer */
    uint32_t route_cache_max;       /* 4096 destinations remembered with the peer that had them */
    uint32_t route_cache_ttl_ms;    /* 300000 */
    uint32_t miss_cache_max;        /* 4096 destinations no peer had */
    uint32_t miss_cache_ttl_ms;     /* 3000: short, a client may connect to a peer any time */
    uint32_t discovery_interval_ms; /* 60000: accept_discovered_peers polling */
    dmsg_session_config session;    /* the links' session settings */
};

void mesh_options_default(struct mesh_options *opt);

/* ---------------------------------------------------------------------------------------------
 * Peer state as the admin API shows it */

enum mesh_link_state {
    MESH_LINK_CONNECTING = 0,       /* dialing or in the handshake */
    MESH_LINK_UP,                   /* session established */
    MESH_LINK_DOWN                  /* backing off until next_attempt_ms */
};

/* "connecting", "up", "down" (the admin API's PeerLinkState). */
const char *mesh_link_state_name(enum mesh_link_state s);

/* What the peer answered to our PeerAnnounce on the current or last link. */
enum mesh_announce_state {
    MESH_ANNOUNCE_NONE = 0,         /* not sent (yet) on this link */
    MESH_ANNOUNCE_PENDING,          /* sent, no answer yet */
    MESH_ANNOUNCE_ACCEPTED,         /* a signed acceptance came back */
    MESH_ANNOUNCE_REFUSED,          /* a signed refusal came back */
    MESH_ANNOUNCE_UNANSWERED,       /* closed or timed out unanswered (older servers) */
    MESH_ANNOUNCE_SKIPPED           /* not sent: the peer dropped the link on an earlier one */
};

const char *mesh_announce_state_name(enum mesh_announce_state s);

/* Times are wall-clock Unix milliseconds; 0 means never / not applicable. */
struct mesh_peer_info {
    dmsg_pk public_key;
    char public_key_hex[DMSG_PK_HEX_LEN + 1];
    char address[CONFIG_ADDR_MAX + 1];
    enum store_peer_source source;
    int64_t added_at_ms;
    char note[MESH_NOTE_MAX + 1];

    /* The outbound link. */
    enum mesh_link_state state;
    int64_t since_ms;               /* when the link entered state */
    char remote_address[CONFIG_ADDR_MAX + 1]; /* "ip:port" while up, else "" */
    int last_error;                 /* DMSG_E* of the last failed attempt or link, 0 if none */
    char last_error_text[MESH_ERROR_MAX];     /* "" when none */
    int64_t last_error_ms;
    uint32_t attempts;              /* failed attempts since the link was last up */
    uint64_t reconnects;            /* times the link came up again after having been up */
    int64_t next_attempt_ms;        /* when the next attempt starts (down only) */
    enum mesh_announce_state announce;

    /* The peer's own session to us (duplicate link), if any. */
    bool inbound;
    int64_t inbound_since_ms;

    /* Traffic. */
    uint32_t streams;               /* streams open on the link(s) right now */
    uint64_t streams_forwarded;     /* requests the peer delivered for our clients */
    uint64_t forward_misses;        /* requests tried at the peer that it did not deliver */
    uint64_t bytes_in, bytes_out;   /* TCP bytes of the outbound link, all sessions so far */
};

/* ---------------------------------------------------------------------------------------------
 * Lifecycle (dmsgd.c) */

/* identity, store and log are borrowed and must outlive the mesh. */
int mesh_init(uv_loop_t *loop, const dmsg_identity *identity, struct store *store,
              const struct mesh_options *opt, const struct dmsgd_log *log, struct mesh **out);

/* The services the mesh works with; call before mesh_start. The relay serves the streams a peer
 * opens on our outbound links; the server holds the peers' inbound sessions. */
void mesh_attach(struct mesh *m, struct server *server, struct relay *relay);

/* Mirrors the config file's peers into the store (source "config", replacing the previous
 * mirror), loads the runtime peers from the store and starts every link. discovery_url is the
 * discovery polled when accept_discovered is set ("" or NULL: none). err gets an
 * operator-facing line on failure (DMSG_EIO: store). */
int mesh_start(struct mesh *m, const struct config_peer *peers, size_t n_peers,
               bool accept_discovered, const char *discovery_url, char *err, size_t err_cap);

/* SIGHUP: the config file's peers and accept_discovered_peers as they are now. Config peers
 * that appeared are linked, those that disappeared are removed with their links, changed
 * addresses redial. Returns 0 or the first error (logged). */
int mesh_reload(struct mesh *m, const struct config_peer *peers, size_t n_peers,
                bool accept_discovered);

/* Closes every link and timer; on_done (may be NULL) runs once all handles are closed, possibly
 * from inside this call. No event is sent from here on. */
void mesh_close(struct mesh *m, void (*on_done)(void *arg), void *arg);

/* ---------------------------------------------------------------------------------------------
 * Hooks (dmsgd.c forwards the server's and the relay's hooks here) */

/* server_hooks.on_session_up / on_session_down: marks a peer's inbound session (rs->is_peer). */
void mesh_session_up(struct mesh *m, dmsg_session *s, struct relay_session *rs);
void mesh_session_down(struct mesh *m, dmsg_session *s);

/* relay_hooks.next_hop / hop_result (see relay.h). */
int mesh_next_hop(struct mesh *m, const dmsg_pk *dst, dmsg_session *ingress, unsigned attempt,
                  dmsg_session **hop, uint32_t *timeout_ms);
void mesh_hop_result(struct mesh *m, const dmsg_pk *dst, dmsg_session *hop, int result);

/* relay_hooks.peer_announce: obj is a session's first object that is not a valid request. When
 * it is a PeerAnnounce signed by the session's key, writes the signed answer (accepted iff the
 * key is a peer) into out and returns 1; returns 0 when obj is no announce. */
int mesh_answer_announce(struct mesh *m, dmsg_session *s, struct relay_session *rs,
                         const uint8_t *obj, size_t obj_len, uint8_t *out, size_t cap,
                         size_t *out_len);

/* Whether pk is a peer (any source). */
bool mesh_is_peer(const struct mesh *m, const dmsg_pk *pk);

/* ---------------------------------------------------------------------------------------------
 * The admin API's interface. Every error fills err (may be NULL) with one operator-facing line
 * naming the offending value. */

/* Stores the peer (source "admin"; committed when this returns 0), then starts its link.
 * address is "host:port"; note may be NULL. DMSG_EINVAL: malformed address or note (err says
 * which); DMSG_EPERM: the server's own key; DMSG_EEXIST: already a peer, whatever its source;
 * DMSG_ELIMIT: MESH_MAX_PEERS reached; DMSG_EIO: store failure (err has the store's message);
 * DMSG_ESTATE: the mesh is closing. out (may be NULL) gets the new peer's state. */
int mesh_peer_add(struct mesh *m, const dmsg_pk *pk, const char *address, const char *note,
                  struct mesh_peer_info *out, char *err, size_t err_cap);

/* Deletes the peer from the store, then closes its sessions (outbound link and inbound session)
 * and with them the streams relayed over them; nothing else is touched. DMSG_ENOTFOUND: not a
 * peer; DMSG_EPERM: a peer from the config file (remove it there); DMSG_EIO: store failure. */
int mesh_peer_remove(struct mesh *m, const dmsg_pk *pk, char *err, size_t err_cap);

/* One peer's state. DMSG_ENOTFOUND when pk is not a peer. */
int mesh_peer_get(const struct mesh *m, const dmsg_pk *pk, struct mesh_peer_info *out);

/* Calls visit for every peer, ordered by public key; a non-zero return stops the listing and
 * is returned. info is valid during the call. Do not add or remove peers from visit. */
typedef int (*mesh_visit_fn)(void *user, const struct mesh_peer_info *info);
int mesh_peer_list(const struct mesh *m, mesh_visit_fn visit, void *user);

size_t mesh_peer_count(const struct mesh *m);
size_t mesh_peers_up(const struct mesh *m);

/* Inbound sessions whose key is a peer (for the "peer" session kind and /v1/mesh). */
bool mesh_session_is_peer(const struct mesh *m, const dmsg_session *s);

/* ---------------------------------------------------------------------------------------------
 * Change events (the admin API's event feed subscribes). Callbacks run on the loop, after the
 * change; they may call mesh_peer_get/list and mesh_unsubscribe, nothing that changes peers. */

enum mesh_event_type {
    MESH_EVENT_PEER_ADDED = 0,      /* state is the new link's (connecting) */
    MESH_EVENT_PEER_REMOVED,        /* the peer is gone; state is the link's last state */
    MESH_EVENT_LINK_STATE,          /* the outbound link changed state */
    MESH_EVENT_INBOUND              /* the peer's inbound session came or went (peer->inbound) */
};

struct mesh_event {
    enum mesh_event_type type;
    int64_t at_ms;
    const struct mesh_peer_info *peer;    /* the peer after the change */
    enum mesh_link_state state;           /* now (for PEER_REMOVED: the last state) */
    enum mesh_link_state previous_state;
    const char *error;                    /* why the link went down, else NULL */
};

typedef void (*mesh_event_fn)(void *user, const struct mesh_event *ev);

#define MESH_MAX_SUBSCRIBERS 16

/* DMSG_ELIMIT beyond MESH_MAX_SUBSCRIBERS, DMSG_EEXIST for a (fn, user) pair already there. */
int mesh_subscribe(struct mesh *m, mesh_event_fn fn, void *user);
void mesh_unsubscribe(struct mesh *m, mesh_event_fn fn, void *user);

/* ---------------------------------------------------------------------------------------------
 * Totals (metrics) */

struct mesh_stats {
    uint64_t forwards_tried;        /* peer attempts made for requests */
    uint64_t forwards_delivered;    /* requests a peer delivered */
    uint64_t forwards_missed;       /* requests no peer delivered */
    uint64_t miss_cache_hits;       /* requests refused at once from the negative cache */
    uint64_t route_cache_hits;      /* requests that tried the remembered peer first */
    uint64_t announces_accepted;    /* PeerAnnounce from peers answered with acceptance */
    uint64_t announces_refused;     /* ... from other keys, refused */
    uint32_t peers, peers_up, inbound_peer_sessions;
};

void mesh_get_stats(const struct mesh *m, struct mesh_stats *out);

#endif
