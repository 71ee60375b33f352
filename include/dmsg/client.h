/* A DMSG client on the libuv loop: sessions to DMSG servers, listening on DMSG ports, dialing
 * pk:port, and the end-to-end encrypted streams ("conns") between two clients.
 *
 * Byte-compatible with the Go reference clients (spec dmsg-wire.md §4.2, §5-§7): a dial sends a
 * signed StreamRequest carrying Noise KK message 1 from an ephemeral source port (the first one
 * is 49153), waits at most 20 s for the destination's signed StreamResponse carrying message 2,
 * and from then on the stream carries KK-encrypted frames of at most 4070 plaintext bytes.
 *
 * Servers: either a fixed list (hold sessions to exactly these) or picked from a discovery
 * (available_servers, min_sessions of them). Either way, lost sessions are redialled with capped
 * exponential backoff and jitter. With a discovery the client also keeps its own signed client
 * entry there, listing the servers it holds sessions to as delegated_servers.
 *
 * Dial order (upstream-mesh.md §5, issue 4 item 8): the server that last reached the
 * destination; our sessions to the destination's delegated servers; then, per
 * dmsg_client_config.mesh, our other sessions (a meshed server may deliver) before or after new
 * sessions to up to new_sessions_per_dial delegated servers (discovery mode only). When the
 * destination has no client entry (or no discovery is configured) every session is tried, the
 * one to the destination's own key first. Tries are sequential, never parallel.
 *
 * Lifetimes follow libuv: dmsg_client_close() takes effect from the loop: it fails pending dials
 * (their callbacks run), frees the listeners (do not use them afterwards), and closes conns and
 * sessions; on_close runs once all of that is gone, and the client is freed right after it
 * returns. A conn's on_close runs exactly once and the conn is freed when it returns; a
 * listener is freed when dmsg_listener_close returns (its queued conns are reset). No callback
 * ever runs from inside an API call; all run on the loop thread and may call any API.
 *
 * Backpressure: conn data is handed out in on_data, valid only during the call; the receiver
 * reports plaintext bytes as taken with dmsg_conn_consume(), and only then does window credit go
 * back to the sender. Writers keep dmsg_conn_write_queued() under about one window (256 KiB) and
 * wait for on_writable, so nothing in the client buffers without bound. */
#ifndef DMSG_CLIENT_H
#define DMSG_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dmsg/cipher.h"
#include "dmsg/session.h"
#include "dmsg/wire.h" /* dmsg_addr: a client's public key and a port (0 is never valid) */

#define DMSG_CLIENT_ADDRESS_MAX 255          /* host:port text of a server */
#define DMSG_CLIENT_DIAL_TIMEOUT_MS 20000u   /* the reference's HandshakeTimeout */
#define DMSG_CLIENT_ACCEPT_BACKLOG 20u       /* the reference's AcceptBufferSize */
#define DMSG_CLIENT_WINDOW (256u * 1024u)    /* one yamux window: a sensible write-queue bound */

typedef struct dmsg_client dmsg_client;
typedef struct dmsg_listener dmsg_listener;
typedef struct dmsg_conn dmsg_conn;

/* A server to hold a session to: its static key and TCP address "host:port". */
typedef struct dmsg_server_ref {
    dmsg_pk pk;
    char address[DMSG_CLIENT_ADDRESS_MAX + 1];
} dmsg_server_ref;

/* Parses "PK@HOST:PORT" (66 hex characters, '@', a host of any form and a port). 0, DMSG_EHEX,
 * DMSG_EKEY or DMSG_EINVAL (no '@', no port, too long). */
int dmsg_server_ref_parse(dmsg_server_ref *out, const char *text);

/* Parses "PK:PORT" (port 1..65535). 0, DMSG_EHEX, DMSG_EKEY or DMSG_EINVAL. */
int dmsg_addr_parse(dmsg_addr *out, const char *text);

/* Where tries through our other sessions go in a dial (see the top of this file). */
typedef enum dmsg_client_mesh {
    DMSG_MESH_FIRST = 0, /* before connecting to new delegated servers (default) */
    DMSG_MESH_LAST,      /* only after new sessions to delegated servers failed */
    DMSG_MESH_OFF        /* never: only the destination's delegated servers */
} dmsg_client_mesh;

typedef struct dmsg_client_config {
    dmsg_session_config session;      /* dmsg_session_config_default() */
    const char *discovery_url;        /* NULL or "": no discovery (then servers are required) */
    const dmsg_server_ref *servers;   /* fixed servers (copied); n_servers == 0: use discovery */
    size_t n_servers;
    unsigned min_sessions;            /* discovery mode: sessions to keep (1) */
    unsigned max_sessions;            /* sessions in all, dial-time ones included (16) */
    dmsg_client_mesh mesh;            /* DMSG_MESH_FIRST */
    unsigned new_sessions_per_dial;   /* delegated servers a dial may connect to (2) */
    unsigned mesh_tries_max;          /* other sessions a dial may try (16) */
    uint32_t dial_timeout_ms;         /* one try through a delegated server (20000) */
    uint32_t mesh_try_timeout_ms;     /* one try through another session (5000, as upstream) */
    uint32_t dial_total_timeout_ms;   /* the whole dial, all tries and waits (60000) */
    uint32_t reconnect_min_ms;        /* first redial delay (1000) */
    uint32_t reconnect_max_ms;        /* delay cap (30000) */
    bool delete_entry_on_close;       /* DELETE our client entry when closing (true) */
    unsigned accept_backlog;          /* established conns a listener queues (20) */
    unsigned max_conns;               /* live conns, both directions (65536) */
} dmsg_client_config;

void dmsg_client_config_default(dmsg_client_config *cfg);

/* What happened to a session (for logs and tests). */
typedef enum dmsg_client_event {
    DMSG_CLIENT_SESSION_UP,      /* handshake done */
    DMSG_CLIENT_SESSION_DOWN,    /* closed; err says why; a redial is scheduled when wanted */
    DMSG_CLIENT_SESSION_FAILED,  /* connect, resolve or handshake failed (err) */
    DMSG_CLIENT_ENTRY_POSTED,    /* our client entry was stored by the discovery */
    DMSG_CLIENT_ENTRY_FAILED,    /* posting it failed (err); retried later */
    DMSG_CLIENT_DISCOVERY_FAILED /* a discovery lookup failed (err) */
} dmsg_client_event;

typedef struct dmsg_client_callbacks {
    /* Optional. server is NULL for entry and discovery events. */
    void (*on_event)(dmsg_client *c, dmsg_client_event ev, const dmsg_pk *server, int err,
                     void *ctx);
    /* The client is gone; freed after return. */
    void (*on_close)(dmsg_client *c, void *ctx);
} dmsg_client_callbacks;

/* Creates the client and starts connecting. id is copied; its rng draws every ephemeral key.
 * The loop must outlive the client. With a discovery_url the caller must have called
 * curl_global_init() (see http_client.h). DMSG_EINVAL for a config without servers or
 * discovery, or a bad value; DMSG_ENOMEM. */
int dmsg_client_start(uv_loop_t *loop, const dmsg_identity *id, const dmsg_client_config *cfg,
                      const dmsg_client_callbacks *cb, void *ctx, dmsg_client **out);

/* Starts closing (idempotent). With a discovery and delete_entry_on_close, our client entry is
 * deleted first (bounded by the HTTP timeout), so that short-lived clients leave no stale
 * entries behind. */
void dmsg_client_close(dmsg_client *c);

const dmsg_pk *dmsg_client_pk(const dmsg_client *c);
void *dmsg_client_ctx(const dmsg_client *c);

/* Sessions that finished their handshake; keys into out (up to cap), returns the count. */
size_t dmsg_client_sessions(const dmsg_client *c, dmsg_pk *out, size_t cap);

/* Connects (once, outside the min_sessions logic) to a server; the session is kept and redialled
 * like a fixed one. DMSG_EEXIST when held already, DMSG_ELIMIT over max_sessions. */
int dmsg_client_add_server(dmsg_client *c, const dmsg_server_ref *server);

/* ---------------------------------------------------------------------------------------------
 * Conns: end-to-end streams */

typedef struct dmsg_conn_callbacks {
    /* Plaintext arrived, valid during the call only. Call dmsg_conn_consume() when taken. */
    void (*on_data)(dmsg_conn *c, const uint8_t *data, size_t len, void *ctx);
    /* The peer closed its side (no more on_data). Through a server that is the end of the whole
     * stream: servers close both sides when one ends. */
    void (*on_eof)(dmsg_conn *c, void *ctx);
    /* The write queue drained below what it was, or the peer granted window: write more. */
    void (*on_writable)(dmsg_conn *c, void *ctx);
    /* The conn is gone: 0 after both sides closed, DMSG_ERESET, DMSG_ECLOSED (session or client
     * closed), or a protocol error from the peer's data (DMSG_EMAC, DMSG_ENONCE, ...). */
    void (*on_close)(dmsg_conn *c, int err, void *ctx);
} dmsg_conn_callbacks;

typedef void (*dmsg_conn_write_cb)(dmsg_conn *c, size_t len, int err, void *arg);

/* Encrypts len bytes into frames of at most 4070 plaintext bytes and queues them (copied); cb
 * (may be NULL) runs once they reached the socket, or with an error. DMSG_ECLOSED after
 * dmsg_conn_close/reset or once the stream is gone. Nothing is sent for len 0. */
int dmsg_conn_write(dmsg_conn *c, const uint8_t *data, size_t len, dmsg_conn_write_cb cb,
                    void *arg);

/* Encrypted bytes queued and not yet written to the socket. */
size_t dmsg_conn_write_queued(const dmsg_conn *c);

/* Reports n plaintext bytes handed out by on_data as taken. */
void dmsg_conn_consume(dmsg_conn *c, size_t n);

/* Closes our side after the queued data (FIN, once); the source port is freed with the conn. */
int dmsg_conn_close(dmsg_conn *c);

/* Drops the conn now (RST); on_close follows from the loop. */
int dmsg_conn_reset(dmsg_conn *c);

void dmsg_conn_set_callbacks(dmsg_conn *c, const dmsg_conn_callbacks *cb, void *ctx);
void *dmsg_conn_ctx(const dmsg_conn *c);
const dmsg_addr *dmsg_conn_local_addr(const dmsg_conn *c);
const dmsg_addr *dmsg_conn_remote_addr(const dmsg_conn *c);
/* The server this conn runs through. */
const dmsg_pk *dmsg_conn_server_pk(const dmsg_conn *c);

/* ---------------------------------------------------------------------------------------------
 * Dialing */

/* Exactly once per dial: conn on success (set its callbacks before returning, or it is reset),
 * else NULL with err: DMSG_EWIRE (the destination refused; wire_code is its error code, e.g. 306
 * no listener, or 350/351 for a response that failed verification), DMSG_ETIMEOUT (no response
 * in time), DMSG_ECLOSED (the server closed the stream: e.g. unknown destination, or the
 * client closed), DMSG_ENOTFOUND (no session could be tried; wire_code 100-103 when discovery
 * said why), DMSG_ELIMIT (no free source port, or max_conns). With several tries the most
 * telling failure is reported (a signed refusal over a timeout over a closed stream). */
typedef void (*dmsg_dial_cb)(dmsg_client *c, dmsg_conn *conn, int err, uint16_t wire_code,
                             void *arg);

/* Starts a dial; every outcome arrives through cb, never from inside this call.
 * DMSG_EINVAL for port 0 or an invalid key, DMSG_ECLOSED while closing, DMSG_ENOMEM. */
int dmsg_client_dial(dmsg_client *c, const dmsg_addr *dst, dmsg_dial_cb cb, void *arg);

/* ---------------------------------------------------------------------------------------------
 * Listening (shaped like uv_listen / uv_accept) */

/* A conn waits in the listener's queue; call dmsg_listener_accept() (now or later). */
typedef void (*dmsg_listener_cb)(dmsg_listener *l, void *ctx);

/* Listens on port. Streams to a port nobody listens on are refused with a signed response
 * (Accepted false, code 306) so that dialers fail at once. While the accept queue is full, a
 * new stream is accepted and closed right away, as the reference does. DMSG_EINVAL for port 0,
 * DMSG_EEXIST for a port in use (wire code 400). */
int dmsg_client_listen(dmsg_client *c, uint16_t port, dmsg_listener_cb cb, void *ctx,
                       dmsg_listener **out);

/* Takes the oldest queued conn (DMSG_EAGAIN when none) and sets its callbacks. Data that
 * arrived meanwhile is handed out from the loop, after this returns. */
int dmsg_listener_accept(dmsg_listener *l, const dmsg_conn_callbacks *cb, void *ctx,
                         dmsg_conn **out);

size_t dmsg_listener_queued(const dmsg_listener *l);
uint16_t dmsg_listener_port(const dmsg_listener *l);

/* Stops listening and frees the listener at once (queued conns are reset; accepted ones go on). */
void dmsg_listener_close(dmsg_listener *l);

#endif
