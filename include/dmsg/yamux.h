/* yamux (hashicorp yamux, protocol version 0) as a sans-IO core, for both roles.
 *
 * The session object never touches a socket or a clock and never buffers outgoing bytes.
 * Two rules make the model:
 *
 *   INPUT   Bytes read from the connection go to dmsg_yamux_feed(), in chunks of any size.
 *           Each call either consumes input or returns one event (or both); call it again
 *           until it returns DMSG_YAMUX_EV_NONE, which means the whole chunk was consumed.
 *           DATA events point into the chunk you passed in (no copy).
 *
 *   OUTPUT  Every frame the core wants on the wire is handed to you the moment it is made,
 *           as 12 header bytes: through an out-parameter of the call you made (open, accept,
 *           consume, data_frame, close, reset, ping, tick, goaway) or as ev.reply of an event
 *           (the pong of a PING, the RST of a REFUSED stream). Append those bytes to the
 *           connection's write queue in the order you received them; a data frame is its
 *           header followed by exactly the payload bytes granted for it. Because the core
 *           keeps no output queue, frame order is simply call order, and the write-queue
 *           limit (and what to do at it: stop feeding) belongs to the transport layer.
 *
 * Flow control is the backpressure of the relay: the core grants window credit to the peer
 * only for bytes you report as consumed (dmsg_yamux_consume), never at receipt.
 *
 * Peer protocol violations put the session in a sticky error state: the failing call and
 * every later one return the same DMSG_E* code (see dmsg_yamux_feed for the list). The
 * caller then closes the connection, optionally after sending dmsg_yamux_goaway(..., 1).
 *
 * Memory: the session struct is fixed-size and may be embedded; its fields are private. The
 * only allocation is the stream table, which grows on stream creation, shrinks as streams go
 * and is freed when the last stream goes, so an idle session owns no heap memory. Streams are
 * kept until both FINs were seen or a RST went either way. */
#ifndef DMSG_YAMUX_H
#define DMSG_YAMUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * Frame header codec: version(1) | type(1) | flags(u16 BE) | stream id(u32 BE) | length(u32 BE) */

#define DMSG_YAMUX_HDR_LEN 12
#define DMSG_YAMUX_VERSION 0

enum dmsg_yamux_type {
    DMSG_YAMUX_DATA = 0,          /* length = payload bytes that follow */
    DMSG_YAMUX_WINDOW_UPDATE = 1, /* length = receive-window increment granted to the peer */
    DMSG_YAMUX_PING = 2,          /* stream 0; length = opaque ping id */
    DMSG_YAMUX_GOAWAY = 3         /* stream 0; length = code (0 normal, 1 protocol, 2 internal) */
};

enum dmsg_yamux_flag {
    DMSG_YAMUX_SYN = 0x1, /* open a stream / ping request */
    DMSG_YAMUX_ACK = 0x2, /* accept a stream / ping reply */
    DMSG_YAMUX_FIN = 0x4, /* half-close */
    DMSG_YAMUX_RST = 0x8  /* reset */
};

enum dmsg_yamux_goaway_code {
    DMSG_YAMUX_GOAWAY_NORMAL = 0,
    DMSG_YAMUX_GOAWAY_PROTO_ERROR = 1,
    DMSG_YAMUX_GOAWAY_INTERNAL_ERROR = 2
};

typedef struct dmsg_yamux_hdr {
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint32_t stream_id;
    uint32_t length;
} dmsg_yamux_hdr;

/* Lays out the fields as they are, unchecked (tests build malformed frames with it). */
void dmsg_yamux_hdr_encode(const dmsg_yamux_hdr *hdr, uint8_t out[DMSG_YAMUX_HDR_LEN]);

/* Reads the first 12 bytes of in. DMSG_ESHORT when len < 12 (hdr untouched); otherwise hdr is
 * filled and the result is DMSG_EVERSION (version != 0), DMSG_ETYPE (type > 3) or 0. */
int dmsg_yamux_hdr_decode(const uint8_t *in, size_t len, dmsg_yamux_hdr *hdr);

/* ---------------------------------------------------------------------------------------------
 * Configuration: Go's yamux.DefaultConfig() plus the limits Go lacks. */

typedef enum dmsg_yamux_role {
    DMSG_YAMUX_CLIENT, /* opens odd stream ids (the dmsg client) */
    DMSG_YAMUX_SERVER  /* opens even stream ids (the dmsg server) */
} dmsg_yamux_role;

typedef struct dmsg_yamux_config {
    uint32_t accept_backlog;        /* 256: peer-opened streams not yet accepted (beyond: RST);
                                     * also the cap on our own not-yet-ACKed opens */
    uint32_t max_streams;           /* 2048 (upstream's per-session cap); beyond: SYN gets RST */
    uint32_t stream_window;         /* 262144: initial and maximum window, each direction. Not
                                     * negotiated: must equal the peer's (Go: 262144) */
    uint32_t max_frame_len;         /* 262144: longer Data frames end the session (DMSG_ETOOBIG);
                                     * also the most one of our data frames carries */
    uint32_t max_send_window;       /* UINT32_MAX: peer credit beyond it is DMSG_EWINDOW */
    bool enable_keepalive;          /* true */
    uint32_t keepalive_interval_ms; /* 30000: a ping every interval */
    uint32_t keepalive_timeout_ms;  /* 10000 (ConnectionWriteTimeout): unanswered ping = dead */
    /* Not enforced by this core (per-stream timers belong to the transport layer); kept so one
     * struct carries Go's DefaultConfig. */
    uint32_t stream_open_timeout_ms;  /* 75000: Go kills the session when its SYN is not ACKed */
    uint32_t stream_close_timeout_ms; /* 300000: after our FIN, RST if the peer never FINs */
} dmsg_yamux_config;

void dmsg_yamux_config_default(dmsg_yamux_config *cfg);

/* ---------------------------------------------------------------------------------------------
 * Session */

struct dmsg_yamux_stream; /* private */

typedef enum dmsg_yamux_event_type {
    DMSG_YAMUX_EV_NONE = 0, /* the input chunk is fully consumed; nothing else to report */
    DMSG_YAMUX_EV_OPENED,   /* peer SYN: a new stream; dmsg_yamux_accept() or _reset() it */
    DMSG_YAMUX_EV_ACCEPTED, /* peer ACK of a stream we opened */
    DMSG_YAMUX_EV_DATA,     /* len > 0 bytes at data (one frame may come as several events);
                             * they hold the peer's window until dmsg_yamux_consume() */
    DMSG_YAMUX_EV_FIN,      /* peer half-closed (after the frame's data); .closed when gone */
    DMSG_YAMUX_EV_RESET,    /* peer reset the stream; it is gone (.closed is true) */
    DMSG_YAMUX_EV_WINDOW,   /* peer granted credit; .send_window is what may be sent now */
    DMSG_YAMUX_EV_PING,     /* peer ping; send .reply (the pong) */
    DMSG_YAMUX_EV_PONG,     /* answer to our ping .ping_id after .rtt_ms */
    DMSG_YAMUX_EV_GOAWAY,   /* peer GoAway(0): existing streams go on, no new opens */
    DMSG_YAMUX_EV_REFUSED   /* a peer SYN was refused (.reason); send .reply (the RST) */
} dmsg_yamux_event_type;

typedef struct dmsg_yamux_event {
    dmsg_yamux_event_type type;
    uint32_t stream_id;      /* stream events (OPENED..WINDOW, REFUSED) */
    void *user;              /* the stream's user pointer (dmsg_yamux_set_user), else NULL */
    const uint8_t *data;     /* DATA: points into the feed() input; valid while that buffer is */
    size_t len;              /* DATA: byte count */
    uint32_t send_window;    /* WINDOW */
    uint32_t ping_id;        /* PING, PONG */
    uint64_t rtt_ms;         /* PONG */
    uint32_t goaway_code;    /* GOAWAY */
    int reason;              /* REFUSED: DMSG_ELIMIT (caps), DMSG_EGOAWAY (we sent GoAway)
                              * or DMSG_ENOMEM */
    bool closed;             /* FIN, RESET: the core forgot the stream; its id is now unknown */
    size_t reply_len;        /* 0 or DMSG_YAMUX_HDR_LEN */
    uint8_t reply[DMSG_YAMUX_HDR_LEN]; /* frame to send when reply_len != 0 */
} dmsg_yamux_event;

typedef struct dmsg_yamux_stats {
    uint32_t streams;               /* live streams */
    uint32_t pending_accept;        /* opened by the peer, not yet accepted */
    uint32_t awaiting_ack;          /* opened by us, not yet ACKed */
    uint32_t table_slots;           /* stream-table capacity (memory = slots * slot size) */
    uint64_t opened_by_peer;
    uint64_t opened_locally;
    uint64_t syns_refused;          /* RST sent for a SYN (caps, our GoAway, no memory) */
    uint64_t frames_unknown_stream; /* ignored frames for ids not (or no longer) in the table */
    uint64_t bytes_drained;         /* their payload bytes, discarded */
    uint64_t resets_received;
    uint64_t resets_sent;
    uint64_t pings_received;
    uint64_t pongs_received;
    uint64_t data_bytes_received;
    uint64_t data_bytes_sent;       /* granted by dmsg_yamux_data_frame */
    bool peer_goaway;
    uint32_t peer_goaway_code;
} dmsg_yamux_stats;

/* Private state, in the header only so the session can be embedded. */
typedef struct dmsg_yamux_input {
    uint8_t hdr_bytes[DMSG_YAMUX_HDR_LEN];
    uint8_t hdr_have;
    dmsg_yamux_hdr hdr;
    uint32_t payload_left; /* bytes of the current Data frame still to come */
    uint16_t pending;      /* events of the current frame still to report */
    bool drain;            /* the payload is discarded */
    bool fin_after;        /* FIN flag to apply once the payload is through */
    int refuse_reason;
    void *reset_user;
    uint64_t rtt_ms;
} dmsg_yamux_input;

typedef struct dmsg_yamux {
    dmsg_yamux_config cfg;
    uint8_t role;
    int err;
    uint32_t next_id;
    struct dmsg_yamux_stream *slots;
    uint32_t slot_bits; /* capacity = 1 << slot_bits when slots != NULL */
    dmsg_yamux_input in;
    bool local_goaway;
    bool ping_outstanding;
    uint32_t next_ping_id;
    uint32_t outstanding_ping_id;
    uint64_t ping_sent_ms;
    uint64_t next_keepalive_ms;
    dmsg_yamux_stats st;
} dmsg_yamux;

/* Starts a session at time now_ms (any monotonic millisecond clock; the same clock for every
 * later call). cfg may be NULL for the defaults. DMSG_EINVAL for a bad role or config (zero
 * caps, window, frame length or ping timeout; max_send_window below the window; a zero
 * interval with keepalive on). */
int dmsg_yamux_init(dmsg_yamux *y, dmsg_yamux_role role, const dmsg_yamux_config *cfg,
                    uint64_t now_ms);

/* Frees the stream table. The session must be re-initialised before any further use. */
void dmsg_yamux_destroy(dmsg_yamux *y);

/* Feeds input. Consumes up to len bytes (*consumed tells how many) and fills *ev with at most
 * one event; ev->type == DMSG_YAMUX_EV_NONE means *consumed == len. Loop:
 *     while ((r = dmsg_yamux_feed(y, p, n, now, &used, &ev)) == 0) {
 *         p += used; n -= used;
 *         if (ev.type == DMSG_YAMUX_EV_NONE) break;
 *         handle(&ev);  -- may call any other dmsg_yamux_* function, e.g. accept or consume
 *     }
 * An event may come with *consumed == 0, so call again even when n is 0 until NONE.
 * Session errors (sticky): DMSG_EVERSION version != 0; DMSG_ETYPE type > 3; DMSG_ETOOBIG Data
 * longer than max_frame_len; DMSG_EWINDOW Data beyond the stream's receive window, or credit
 * beyond max_send_window; DMSG_ESTREAM SYN for a live id; DMSG_EPROTO SYN with id 0 or our
 * parity, a second FIN, data after FIN; DMSG_EGOAWAY peer GoAway with a non-zero code.
 * Not errors: frames for unknown ids (ignored, payload drained); SYNs over the caps (REFUSED). */
int dmsg_yamux_feed(dmsg_yamux *y, const uint8_t *in, size_t len, uint64_t now_ms,
                    size_t *consumed, dmsg_yamux_event *ev);

/* Opens a stream: *id gets the new id, frame the WindowUpdate+SYN to send now. Data may be
 * sent before the peer's ACK. DMSG_EGOAWAY after a peer GoAway, DMSG_ELIMIT at max_streams,
 * at accept_backlog un-ACKed opens or when ids are exhausted, DMSG_ENOMEM. */
int dmsg_yamux_open(dmsg_yamux *y, void *user, uint32_t *id, uint8_t frame[DMSG_YAMUX_HDR_LEN]);

/* Accepts a stream reported by EV_OPENED: frame is the WindowUpdate+ACK to send now (Go
 * gives up the whole session after 75 s without it). Writing, crediting or closing a stream
 * first accepts it implicitly: that frame carries ACK, as Go does. Peer data may arrive
 * before the accept. DMSG_ESTREAM for an unknown id, DMSG_ESTATE when not awaiting accept. */
int dmsg_yamux_accept(dmsg_yamux *y, uint32_t id, uint8_t frame[DMSG_YAMUX_HDR_LEN]);

/* Reserves send window for a data frame carrying up to want bytes: *granted gets the count
 * (<= want, <= the send window, <= max_frame_len) and frame its header. Queue frame and right
 * after it exactly the first *granted bytes of your payload (e.g. as two iovecs; the core never
 * sees or copies the payload); the window is debited now.
 * DMSG_EAGAIN when the send window is 0 (wait for EV_WINDOW), DMSG_ECLOSED after our FIN,
 * DMSG_EINVAL for want 0, DMSG_ESTREAM for an unknown id. */
int dmsg_yamux_data_frame(dmsg_yamux *y, uint32_t id, size_t want,
                          uint8_t frame[DMSG_YAMUX_HDR_LEN], uint32_t *granted);

/* Reports n bytes of this stream's received data as taken by the application (for the relay:
 * written out on the other side). Once consumed-but-uncredited bytes reach half the window,
 * frame gets a WindowUpdate returning them and *frame_len is 12; otherwise *frame_len is 0.
 * DMSG_EINVAL when n exceeds the bytes delivered and not yet consumed; DMSG_ESTREAM for an
 * unknown id (e.g. already closed or reset: nothing to credit then). */
int dmsg_yamux_consume(dmsg_yamux *y, uint32_t id, uint32_t n, uint8_t frame[DMSG_YAMUX_HDR_LEN],
                       size_t *frame_len);

/* Half-closes: frame is the WindowUpdate+FIN. Sent at most once per stream (DMSG_ECLOSED on a
 * second call). When the peer's FIN was already seen, the stream is forgotten. */
int dmsg_yamux_close(dmsg_yamux *y, uint32_t id, uint8_t frame[DMSG_YAMUX_HDR_LEN]);

/* Resets: frame is the WindowUpdate+RST; the stream is forgotten at once. Later frames from the
 * peer for it are ignored and their data drained. */
int dmsg_yamux_reset(dmsg_yamux *y, uint32_t id, uint8_t frame[DMSG_YAMUX_HDR_LEN]);

/* Sends a ping now: frame is the Ping+SYN, *ping_id its id (a counter from 0). One ping is
 * outstanding at a time (shared with keepalive): DMSG_ESTATE while one is. The answer arrives
 * as EV_PONG; an unanswered ping fails the session in dmsg_yamux_tick. */
int dmsg_yamux_ping(dmsg_yamux *y, uint64_t now_ms, uint8_t frame[DMSG_YAMUX_HDR_LEN],
                    uint32_t *ping_id);

/* Keepalive. Call at dmsg_yamux_next_timeout() (earlier is harmless). When a keepalive ping is
 * due, frame gets it and *frame_len is 12, else 0. DMSG_ETIMEOUT (sticky) when a ping stayed
 * unanswered for keepalive_timeout_ms: the session is dead. */
int dmsg_yamux_tick(dmsg_yamux *y, uint64_t now_ms, uint8_t frame[DMSG_YAMUX_HDR_LEN],
                    size_t *frame_len);

/* The next time dmsg_yamux_tick has work, or UINT64_MAX when none (keepalive off, no ping). */
uint64_t dmsg_yamux_next_timeout(const dmsg_yamux *y);

/* GoAway with code: frame is the GoAway frame. From now on every peer SYN is refused with RST;
 * existing streams go on. Works in the error state too (GoAway(1) before closing). */
int dmsg_yamux_goaway(dmsg_yamux *y, uint32_t code, uint8_t frame[DMSG_YAMUX_HDR_LEN]);

/* The sticky session error, or 0. */
int dmsg_yamux_error(const dmsg_yamux *y);

typedef enum dmsg_yamux_stream_state {
    DMSG_YAMUX_SYN_SENT,     /* we opened it, no ACK yet */
    DMSG_YAMUX_SYN_RECEIVED, /* the peer opened it, not accepted yet */
    DMSG_YAMUX_ESTABLISHED,
    DMSG_YAMUX_LOCAL_CLOSE,  /* our FIN sent */
    DMSG_YAMUX_REMOTE_CLOSE  /* the peer's FIN seen */
} dmsg_yamux_stream_state;

typedef struct dmsg_yamux_stream_info {
    dmsg_yamux_stream_state state;
    bool opened_locally;
    uint32_t send_window; /* bytes we may send now */
    uint32_t recv_window; /* bytes the peer may still send before more credit */
    uint32_t buffered;    /* delivered by DATA events, not yet consumed */
    uint32_t uncredited;  /* consumed, not yet returned by a WindowUpdate */
    void *user;
} dmsg_yamux_stream_info;

/* DMSG_ESTREAM when the id is unknown (never opened, or closed/reset and forgotten). */
int dmsg_yamux_stream_info_get(const dmsg_yamux *y, uint32_t id, dmsg_yamux_stream_info *info);

/* Attaches a caller pointer to a stream; reported in its events. DMSG_ESTREAM if unknown. */
int dmsg_yamux_set_user(dmsg_yamux *y, uint32_t id, void *user);

/* Iterates live streams: start with *cursor = 0; returns 0 and fills id/user (either may be
 * NULL), or DMSG_ENOTFOUND at the end. Do not open, close or reset while iterating. */
int dmsg_yamux_next_stream(const dmsg_yamux *y, size_t *cursor, uint32_t *id, void **user);

void dmsg_yamux_get_stats(const dmsg_yamux *y, dmsg_yamux_stats *out);

#endif
