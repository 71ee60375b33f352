/* A DMSG session on the libuv loop: one TCP connection, the Noise XK handshake (either role),
 * then yamux (either role) on the raw TCP bytes, and the yamux streams on it.
 *
 * Layer 2: this module owns the socket, the timers and every buffer's lifetime. The layers above
 * (server, relay, client, mesh) see sessions and streams only through this header.
 *
 * Lifetimes follow libuv: dmsg_session_close() starts closing; the on_close callback runs exactly
 * once, from the loop, after every stream's on_close; the session memory is freed right after
 * on_close returns. A stream likewise: its on_close runs exactly once (FIN both ways, RST either
 * way, or the session going away) and it is freed when that callback returns. Never free either
 * yourself. All callbacks run on the loop thread; any API call is allowed inside them. No
 * callback ever runs inside an API call: what a call ends (a reset, a close) is reported from the
 * loop afterwards, so a pointer stays valid until its on_close has run.
 *
 * Data in: on_data hands out bytes that point into a buffer valid only during the callback. The
 * receiver copies what it keeps, and reports bytes as taken with dmsg_stream_consume() whenever it
 * is done with them (the relay: once the other side's write completed). Window credit goes back to
 * the peer only for consumed bytes: this is the backpressure of the whole relay.
 *
 * Data out: dmsg_stream_write() copies the bytes into the stream's queue (the one user-space copy
 * of relayed payload) and frames them as the peer's window allows; its callback runs when the
 * bytes were written to the socket. The queue never exceeds one yamux window unless the caller
 * ignores dmsg_stream_write_queued(): callers keep at most one window in flight per stream.
 *
 * Output of a session is one queue of frames written with one uv_write at a time (all queued
 * frames as one iovec array). Stream data is framed into it only while it holds less than a
 * quarter of max_write_queue (so one busy stream cannot crowd out the others' control frames);
 * reading pauses while it holds more than half; beyond max_write_queue the session is closed
 * (DMSG_ELIMIT), and a write that makes no progress for write_timeout_ms closes it too. */
#ifndef DMSG_SESSION_H
#define DMSG_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dmsg/cipher.h"
#include "dmsg/glitch.h"
#include "dmsg/noise.h"
#include "dmsg/rng.h"
#include "dmsg/yamux.h"

typedef struct dmsg_session dmsg_session;
typedef struct dmsg_stream dmsg_stream;

typedef enum dmsg_session_role {
    DMSG_SESSION_CLIENT, /* Noise initiator, yamux client (odd stream ids) */
    DMSG_SESSION_SERVER  /* Noise responder, yamux server (even stream ids) */
} dmsg_session_role;

typedef enum dmsg_session_state {
    DMSG_SESSION_CONNECTING, /* client: TCP connect in progress */
    DMSG_SESSION_HANDSHAKE,
    DMSG_SESSION_OPEN,
    DMSG_SESSION_CLOSING
} dmsg_session_state;

typedef struct dmsg_session_config {
    dmsg_yamux_config yamux;        /* yamux limits; dmsg_yamux_config_default() */
    uint32_t handshake_timeout_ms;  /* 5000: from accept/connect to the end of message 3 */
    uint32_t idle_timeout_ms;       /* 0 = none: close a session with no stream for this long */
    uint32_t write_timeout_ms;      /* 10000: a socket write pending longer kills the session */
    size_t max_write_queue;         /* 4 MiB (at least 4096): queued output beyond it kills the
                                     * session; also the most one stream may hold queued
                                     * (DMSG_ELIMIT). Reads are at most a quarter of it */
    bool accept_proxy_header;       /* server: strip a PROXY v1/v2 header (true); the address it
                                     * carries becomes the session's remote address. Set it per
                                     * connection: only for peers that are trusted proxies. A
                                     * header must be complete within 1 s of the accept; a
                                     * malformed one closes the session (DMSG_EPROTO/ETOOBIG) */
    uint32_t glitch_threshold;      /* DMSG_GLITCH_THRESHOLD: weighted glitches a minute that end
                                     * the session (dmsg_session_glitch); 0 = count only */
} dmsg_session_config;
/* Streams also honour cfg.yamux.stream_open_timeout_ms (our SYN not ACKed: the stream is reset,
 * on_close(DMSG_ETIMEOUT)) and stream_close_timeout_ms (our FIN sent, the peer's never came: the
 * same). Keepalive follows cfg.yamux (enable_keepalive, interval, timeout). */

void dmsg_session_config_default(dmsg_session_config *cfg);

typedef struct dmsg_session_callbacks {
    /* Handshake finished; the remote static key is known. Return non-zero to refuse the session
     * (it is then closed with that error and on_close follows). Client role: it comes only once
     * the server had time to read message 3 alone (2 x handshake RTT + 20 ms, at most 1 s, or
     * the server's first bytes); until then the state stays HANDSHAKE and nothing is sent. */
    int (*on_ready)(dmsg_session *s, void *ctx);
    /* The peer opened a stream; it is already accepted (ACK sent). Set its callbacks with
     * dmsg_stream_set_callbacks() before returning, or the stream is reset. */
    void (*on_stream)(dmsg_session *s, dmsg_stream *st, void *ctx);
    /* The session is gone (err is 0 for a local close, else why). Freed after return.
     * Reasons: DMSG_ECLOSED peer closed the connection; DMSG_EIO socket error or failed connect;
     * DMSG_ETIMEOUT handshake deadline, keepalive, stalled write or idle timeout; DMSG_ELIMIT
     * output queue; handshake errors (DMSG_EMAC, DMSG_EKEY, DMSG_ETOOBIG, DMSG_ESHORT, ...);
     * yamux errors (DMSG_EPROTO, DMSG_EWINDOW, DMSG_EVERSION, ...); PROXY errors (DMSG_EPROTO,
     * DMSG_ETOOBIG); or the non-zero value on_ready returned. */
    void (*on_close)(dmsg_session *s, int err, void *ctx);
} dmsg_session_callbacks;

typedef struct dmsg_stream_callbacks {
    /* Bytes arrived; valid during the call only. Call dmsg_stream_consume() when done. */
    void (*on_data)(dmsg_stream *st, const uint8_t *data, size_t len, void *ctx);
    /* The peer half-closed (FIN). No more on_data. */
    void (*on_fin)(dmsg_stream *st, void *ctx);
    /* The peer granted window credit or a queued write went out: more may be written. */
    void (*on_writable)(dmsg_stream *st, void *ctx);
    /* The stream is gone: reset by the peer (err DMSG_ERESET), reset by us (0), both FINs seen
     * (0, after the last write callback), session closed (DMSG_ECLOSED or the session's error),
     * open or close timeout (DMSG_ETIMEOUT). Freed after return. */
    void (*on_close)(dmsg_stream *st, int err, void *ctx);
} dmsg_stream_callbacks;

/* Local identity shared by the sessions of one server or client (read-only while in use). */
typedef struct dmsg_identity {
    dmsg_pk pk;
    dmsg_sk sk;
    dmsg_rng rng; /* ephemeral keys */
} dmsg_identity;

/* Server role: takes over an accepted TCP client and runs the responder handshake (after an
 * optional PROXY header, see cfg.accept_proxy_header). client must come from malloc(), be
 * initialised on loop and accepted; the session takes client->data. From this call on, whatever
 * it returns, the session layer owns the handle: it closes and free()s it (on an error return
 * too, so the caller must not touch it again). Errors: DMSG_EINVAL (bad argument or
 * configuration), DMSG_EKEY (bad identity), DMSG_ENOMEM, DMSG_EIO. */
int dmsg_session_accept(uv_loop_t *loop, uv_tcp_t *client, const dmsg_identity *id,
                        const dmsg_session_config *cfg, const dmsg_session_callbacks *cb,
                        void *ctx, dmsg_session **out);

/* Client role: connects to addr and runs the initiator handshake against remote_pk.
 * Failures after this returns 0 arrive through on_close (a failed connect as DMSG_EIO). */
int dmsg_session_connect(uv_loop_t *loop, const struct sockaddr *addr, const dmsg_identity *id,
                         const dmsg_pk *remote_pk, const dmsg_session_config *cfg,
                         const dmsg_session_callbacks *cb, void *ctx, dmsg_session **out);

/* Starts closing (idempotent). Streams get on_close(DMSG_ECLOSED), then the session's on_close. */
void dmsg_session_close(dmsg_session *s, int err);

/* Sends GoAway(0): the peer opens no new streams; existing ones go on (graceful drain); our
 * side refuses (RST) new peer SYNs from now on. DMSG_ESTATE before the session is OPEN. */
int dmsg_session_goaway(dmsg_session *s);

/* Opens a stream (yamux SYN is sent at once). DMSG_ESTATE before the session is OPEN or while it
 * closes; DMSG_EGOAWAY after the peer's GoAway; DMSG_ELIMIT at cfg.yamux.max_streams or at
 * accept_backlog SYNs not yet ACKed; DMSG_ENOMEM. */
int dmsg_session_open_stream(dmsg_session *s, const dmsg_stream_callbacks *cb, void *ctx,
                             dmsg_stream **out);

dmsg_session_state dmsg_session_get_state(const dmsg_session *s);
dmsg_session_role dmsg_session_get_role(const dmsg_session *s);
const dmsg_pk *dmsg_session_remote_pk(const dmsg_session *s);   /* valid once ready */
const struct sockaddr_storage *dmsg_session_remote_addr(const dmsg_session *s);
void *dmsg_session_ctx(const dmsg_session *s);
void dmsg_session_set_ctx(dmsg_session *s, void *ctx);

/* Adds one glitch (dmsg/glitch.h) to the session's budget. On the one that crosses it, the session
 * sends GoAway(protocol error), stops reading and closes with DMSG_EGLITCH once that frame was
 * written; true then. The session counts its peer's too-frequent pings itself. Owners exempt a
 * session simply by not reporting its glitches. */
bool dmsg_session_glitch(dmsg_session *s, dmsg_glitch_kind kind);
/* The glitch kinds seen so far, bit (1 << kind), for the close log. */
uint32_t dmsg_session_glitch_kinds(const dmsg_session *s);

/* Session objects (StreamRequest/StreamResponse) are sealed with the session's keys: the hop's
 * send key and its one per-session counter shared by every stream; opened with the replay window.
 * seal: out gets u16 len || BE64 N || ct || tag. open: body is one frame without the prefix,
 * decrypted in place (*obj points into body). DMSG_ESTATE unless OPEN; else the noise errors
 * (DMSG_EINVAL small cap, DMSG_ETOOBIG, DMSG_ESHORT, DMSG_EMAC, DMSG_EREPLAY). */
int dmsg_session_seal_object(dmsg_session *s, const uint8_t *obj, size_t len, uint8_t *out,
                             size_t cap, size_t *out_len);
int dmsg_session_open_object(dmsg_session *s, uint8_t *body, size_t len, uint8_t **obj,
                             size_t *obj_len);

typedef struct dmsg_session_stats {
    uint64_t started_ms;       /* loop time when accepted/connected */
    uint64_t bytes_in, bytes_out; /* TCP bytes, handshake and PROXY header included */
    uint32_t streams;
    size_t write_queued;       /* bytes waiting for the socket (framed or not yet framed) */
    uint64_t last_rtt_ms;      /* last keepalive round trip */
    uint64_t last_rx_ms;       /* loop time bytes last arrived (0: never) */
} dmsg_session_stats;

void dmsg_session_get_stats(const dmsg_session *s, dmsg_session_stats *out);

/* Calls fn for every live stream (do not open streams from fn; closing or resetting is fine). */
void dmsg_session_foreach_stream(dmsg_session *s, void (*fn)(dmsg_stream *st, void *arg),
                                 void *arg);

/* ---------------------------------------------------------------------------------------------
 * Streams */

void dmsg_stream_set_callbacks(dmsg_stream *st, const dmsg_stream_callbacks *cb, void *ctx);
/* Detaches a stream its owner no longer wants: whatever still arrives is consumed and dropped,
 * and its end is nobody's concern (close or reset it as well if it should end now). */
void dmsg_stream_orphan(dmsg_stream *st);
void *dmsg_stream_ctx(const dmsg_stream *st);
dmsg_session *dmsg_stream_session(const dmsg_stream *st);
uint32_t dmsg_stream_id(const dmsg_stream *st);

typedef void (*dmsg_write_cb)(dmsg_stream *st, size_t len, int err, void *arg);

/* Queues len bytes (copied) to be sent as data frames; cb (may be NULL) runs once they were all
 * written to the socket, or with an error when the stream or session died first (then the stream's
 * on_close follows) with the stream's close reason, DMSG_ECLOSED where that is 0 (a local reset
 * or close). Returns DMSG_ECLOSED after dmsg_stream_close/reset or once the stream is dead,
 * DMSG_EINVAL for len 0, DMSG_ELIMIT when the stream would hold more than max_write_queue,
 * DMSG_ENOMEM. */
int dmsg_stream_write(dmsg_stream *st, const uint8_t *data, size_t len, dmsg_write_cb cb,
                      void *arg);

/* Bytes queued by dmsg_stream_write and not yet written to the socket. */
size_t dmsg_stream_write_queued(const dmsg_stream *st);

/* Reports n received bytes as taken (see the header comment). Ignored once the stream is dead or
 * for more bytes than were delivered and not yet consumed. */
void dmsg_stream_consume(dmsg_stream *st, size_t n);

/* Half-close: FIN after the queued data (once; DMSG_ECLOSED on a second call or when dead).
 * Incoming data still arrives until the peer's FIN; both FINs end the stream. */
int dmsg_stream_close(dmsg_stream *st);

/* Reset: RST now, queued data dropped (their write callbacks get DMSG_ECLOSED); on_close(0)
 * follows from the loop, never from inside this call. DMSG_ECLOSED when already dead. */
int dmsg_stream_reset(dmsg_stream *st);

#endif
