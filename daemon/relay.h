/* Request routing and data pumping for the streams clients open on their sessions
 * (spec dmsg-wire.md §6, threats.md §3.5).
 *
 * Per accepted stream: the first two bytes `00 00` are a newer client's ping (echoed, then the
 * stream is closed); otherwise exactly one session object is read under a deadline: the signed
 * StreamRequest. It is verified with every reference rule (the source key must be the session's,
 * unless the session is a trusted mesh peer). Then, in the order upstream uses:
 *   - IPinfo to our own key: a response signed by us carrying the client's IP;
 *   - any other request to our own key: the in-process service hook (setup node, health),
 *     else a refusal signed by us (306, no listener);
 *   - a local session of the destination: forward the request there;
 *   - from a client session only: the destination resolver (the mesh) names further sessions
 *     to try in turn, each with its own deadline;
 *   - nothing left: the dialer's stream is closed at once (307 is counted; no wire message can
 *     carry it, a response must be signed by the destination).
 * The request's SignedObject goes out byte-identical (re-sealed with that hop's session keys);
 * the response is read under a deadline, verified against the request and forwarded
 * byte-identical; then bytes are pumped both ways.
 *
 * Backpressure: bytes read from one stream are reported consumed (so window credit returns to
 * their sender) only once the write on the other stream completed, so a relayed stream never
 * holds more than one window per direction. When either side ends, both are closed (FIN once
 * each); a reset is passed on as a reset. Every failure closes the dialer's stream at once.
 *
 * Layer 3: sessions and streams only through dmsg/session.h, no sockets. */
#ifndef DMSGD_RELAY_H
#define DMSGD_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dmsg/cipher.h"
#include "dmsg/session.h"
#include "log.h"

struct relay;

struct relay_limits {
    uint32_t request_timeout_ms;          /* first object must arrive by then */
    uint32_t response_timeout_ms;         /* a local destination's response */
    uint32_t max_object_bytes;            /* largest session-object body (<= 65535) */
    uint32_t max_early_bytes;             /* dialer bytes held before the response */
    uint32_t max_pending_requests;        /* per session: streams not yet relaying */
    uint32_t requests_per_second;         /* per session token bucket ... */
    uint32_t requests_burst;              /* ... and its depth */
    uint32_t linger_ms;                   /* after both FINs went out, reset if not gone by then */
};

void relay_limits_default(struct relay_limits *lim);

/* The relay's per-session state; the server embeds one in each session record and passes it
 * with every stream of that session. Zero it before use. */
struct relay_session {
    uint32_t pending;                     /* streams reading or awaiting a response */
    uint32_t active;                      /* streams relaying data */
    double tokens;                        /* request rate bucket */
    uint64_t tokens_at_ms;
    bool tokens_init;
    bool is_peer;                         /* a trusted mesh peer: may carry other sources'
                                           * requests, which are delivered locally only */
};

/* How a stream reaches its responder: both ends on this server, through a mesh peer (either
 * end), or the server itself (the own-key services). NONE: failed before a path was chosen. */
enum relay_path { RELAY_PATH_NONE = 0, RELAY_PATH_LOCAL, RELAY_PATH_MESH, RELAY_PATH_SERVICE,
                  RELAY_PATH_COUNT };

/* "none", "local", "mesh", "service". */
const char *relay_path_name(enum relay_path p);

enum relay_link_phase {
    RELAY_LINK_PENDING = 0,               /* request forwarded, awaiting the response */
    RELAY_LINK_RELAYING,
    RELAY_LINK_CLOSING
};

/* One relayed stream as the admin API lists it (the own services list theirs in this shape
 * too, path SERVICE); valid during the call that hands it out. */
struct relay_link_info {
    uint64_t id;                          /* unique for the relay's lifetime, from 1 */
    dmsg_pk src_pk, dst_pk;               /* initiator and responder */
    uint16_t src_port, dst_port;
    enum relay_path path;
    bool has_via_peer;
    dmsg_pk via_peer;                     /* the peer server of a mesh path */
    enum relay_link_phase phase;
    uint64_t opened_ms, last_active_ms;   /* loop time (uv_now) */
    uint64_t bytes_forward, bytes_reverse;/* initiator to responder, and back */
    const dmsg_session *ingress, *egress; /* the two sessions, NULL once gone */
};

/* A request to the server's own key handed to the in-process service hook. */
struct relay_own_request {
    uint64_t link_id;                     /* the stream's id: the service lists it under it */
    dmsg_session *session;                /* the ingress session */
    dmsg_stream *stream;                  /* the dialer's stream */
    const uint8_t *raw;                   /* the request SignedObject (valid during the call) */
    size_t raw_len;
    dmsg_pk src_pk, dst_pk;
    uint16_t src_port, dst_port;
    const uint8_t *noise_msg;             /* KK message 1 (valid during the call) */
    size_t noise_msg_len;
    const uint8_t *early;                 /* bytes the dialer sent after the request; already */
    size_t early_len;                     /* received, not yet consumed: the new owner consumes */
};

struct relay_hooks {
    void *ctx;
    /* The established session of pk on this server, or NULL. Required. */
    dmsg_session *(*find_local)(void *ctx, const dmsg_pk *pk);
    /* The destination resolver (the mesh): after find_local found nothing for a request from a
     * client session, called with attempt 0, 1, … until it returns non-zero; each 0 names a
     * session to try (*hop) and its response deadline. NULL: no further hops. */
    int (*next_hop)(void *ctx, const dmsg_pk *dst, dmsg_session *ingress, unsigned attempt,
                    dmsg_session **hop, uint32_t *timeout_ms);
    /* Outcome of a try through a resolver hop (0: delivered), e.g. to remember who holds dst. */
    void (*hop_result)(void *ctx, const dmsg_pk *dst, dmsg_session *hop, int result);
    /* A request to our own key that is not IPinfo. Return 0 when the hook took the stream (it
     * set the stream's callbacks; it now answers and owns it), else a wire error code (e.g.
     * 306): the relay answers with a refusal signed by us and closes. NULL: always 306. */
    uint16_t (*own_service)(void *ctx, const struct relay_own_request *req);
    /* A stream's first object that is not a valid StreamRequest (newer reference servers open
     * their peer links with a signed PeerAnnounce, upstream-mesh.md §2-3). Return 1 after
     * writing the signed answer into out[0..cap) (*out_len): the relay sends it and closes the
     * stream. Return 0 when obj is no announce: the request's own error stands. NULL: none. */
    int (*peer_announce)(void *ctx, dmsg_session *s, struct relay_session *rs,
                         const uint8_t *obj, size_t obj_len, uint8_t *out, size_t cap,
                         size_t *out_len);
    /* A stream started relaying, and a relaying stream ended (reason "fin", "reset",
     * "session_lost" or "timeout"); for the admin API's event feed. May be NULL. */
    void (*on_stream_open)(void *ctx, const struct relay_link_info *info);
    void (*on_stream_close)(void *ctx, const struct relay_link_info *info, const char *reason);
};

/* Outcome counters, for metrics and tests. */
enum relay_counter {
    RELAY_STREAMS_ACCEPTED = 0,
    RELAY_PINGS,                          /* 00 00 echoed */
    RELAY_ESTABLISHED,                    /* response forwarded, data flowing */
    RELAY_IPINFO,                         /* IPinfo answered */
    RELAY_OWN_SERVICE,                    /* handed to the in-process hook */
    RELAY_OWN_REFUSED,                    /* refused with our own signed response */
    RELAY_FAIL_RATE,                      /* session over its request rate */
    RELAY_FAIL_PENDING,                   /* session over its pending-request cap */
    RELAY_FAIL_REQUEST_TIMEOUT,           /* no complete request in time */
    RELAY_FAIL_OBJECT_SIZE,               /* object length out of bounds */
    RELAY_FAIL_DECRYPT,                   /* session object did not open (MAC, replay) */
    RELAY_FAIL_INVALID_REQUEST,           /* 370 or a gob error */
    RELAY_FAIL_SIGNATURE,                 /* 300 */
    RELAY_FAIL_FIELDS,                    /* 301, 303, 304, 305 */
    RELAY_FAIL_SOURCE_KEY,                /* 302: source is not the session's key */
    RELAY_FAIL_NO_DESTINATION,            /* 307 */
    RELAY_FAIL_OPEN_STREAM,               /* could not open the stream to the destination */
    RELAY_FAIL_RESPONSE_TIMEOUT,          /* the destination did not answer in time */
    RELAY_FAIL_DESTINATION_CLOSED,        /* the destination closed before answering */
    RELAY_FAIL_RESPONSE_INVALID,          /* response failed to open, parse or verify */
    RELAY_FAIL_REFUSED,                   /* the destination answered Accepted=false */
    RELAY_FAIL_DIALER_GONE,               /* the dialer closed before the response */
    RELAY_FAIL_EARLY_BYTES,               /* the dialer sent too much before the response */
    RELAY_FAIL_INTERNAL,                  /* allocation or sealing failure */
    RELAY_CLOSED_FIN,                     /* relayed streams ended by a FIN */
    RELAY_CLOSED_RESET,                   /* relayed streams ended by a reset or session loss */
    RELAY_PEER_ANNOUNCES,                 /* PeerAnnounce objects answered (peer_announce hook) */
    RELAY_COUNTER_COUNT
};

const char *relay_counter_name(enum relay_counter c);

struct relay_stats {
    uint64_t counters[RELAY_COUNTER_COUNT];
    uint64_t bytes_forwarded;             /* payload bytes written to the other side */
    uint32_t links;                       /* live links (pending and relaying) */
};

/* identity: our key (signs IPinfo answers and refusals). All pointers are borrowed and must
 * outlive the relay. */
int relay_init(uv_loop_t *loop, const dmsg_identity *identity, const struct relay_limits *lim,
               const struct relay_hooks *hooks, const struct dmsgd_log *log, struct relay **out);
void relay_set_limits(struct relay *r, const struct relay_limits *lim);

/* A stream the peer opened on session s (whose relay state is rs). Sets the stream's
 * callbacks; the relay owns the stream from here on. */
void relay_accept_stream(struct relay *r, dmsg_session *s, struct relay_session *rs,
                         dmsg_stream *st);

void relay_get_stats(const struct relay *r, struct relay_stats *out);

/* An id for a stream an in-process service opens itself, from the sequence relayed streams are
 * numbered with: the admin API lists both kinds together, by id. */
uint64_t relay_next_link_id(struct relay *r);

/* Per-path totals for metrics; failed[path][counter] uses the RELAY_FAIL_* counters (and
 * RELAY_OWN_REFUSED) of the stream requests that failed on that path. */
struct relay_path_stats {
    uint64_t relaying[RELAY_PATH_COUNT];  /* streams relaying now */
    uint64_t opened[RELAY_PATH_COUNT];    /* streams that started relaying (service: handed over) */
    uint64_t failed[RELAY_PATH_COUNT][RELAY_COUNTER_COUNT];
    uint64_t bytes[RELAY_PATH_COUNT];     /* payload bytes written to the other side */
};

void relay_get_path_stats(const struct relay *r, struct relay_path_stats *out);

/* Calls fn for every stream whose request was read and forwarded (pending, relaying or
 * closing), newest first. fn must not close streams or sessions. */
void relay_foreach_link(const struct relay *r,
                        void (*fn)(const struct relay_link_info *info, void *arg), void *arg);

/* Frees the relay once no link is left (links end with their streams, which end with their
 * sessions): call once every session is closing or closed; on_done (may be NULL) runs when the
 * relay is gone, possibly from inside this call. */
void relay_close(struct relay *r, void (*on_done)(void *arg), void *arg);

#endif
