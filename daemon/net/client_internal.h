/* Private state of the DMSG client (include/dmsg/client.h), shared by its files:
 *   client.c          lifecycle, config, timers, deferred work
 *   client_servers.c  sessions to servers: connect, redial with backoff, min_sessions
 *   client_disc.c     discovery: our client entry, lookups, available servers
 *   client_dial.c     the order of tries of a dial
 *   client_conn.c     one end-to-end stream: handshake objects, data path, backpressure
 *   client_listen.c   listeners and incoming stream requests */
#ifndef DMSG_CLIENT_INTERNAL_H
#define DMSG_CLIENT_INTERNAL_H

#include "dmsg/client.h"
#include "dmsg/e2e.h"
#include "dmsg/entry.h"
#include "dmsg/disc_client.h"
#include "dmsg/http_client.h"
#include "dmsg/porter.h"

#define CLIENT_SCRATCH_LEN (64u * 1024u)  /* decrypted bytes handed out per on_data call */
#define CLIENT_ROUTE_CACHE 64             /* destinations remembered with the server that worked */
#define CLIENT_DIAL_TRIED_MAX 64          /* servers one dial tries at most */
#define CLIENT_DIAL_OPEN_MAX 8             /* new sessions one dial may open */
#define CLIENT_FAILED_MEMORY 8            /* picked servers that failed lately, avoided */
/* A queued conn holds the peer's bytes until it is accepted: at most one window, plus what a
 * misbehaving peer could add before the session notices (then the conn is reset). */
#define CLIENT_RAW_MAX (DMSG_CLIENT_WINDOW + 64u * 1024u)

typedef enum cs_state {
    CS_IDLE,        /* nothing under way (address unknown yet, or waiting to be picked up) */
    CS_RESOLVING,   /* looking up the address (discovery entry or DNS) */
    CS_CONNECTING,  /* TCP connect and XK handshake */
    CS_UP,
    CS_BACKOFF      /* waiting to redial */
} cs_state;

typedef enum cs_origin {
    CS_FIXED,  /* from the config's server list: redialled forever */
    CS_ADDED,  /* dmsg_client_add_server: redialled forever */
    CS_PICKED, /* from available_servers for min_sessions: dropped after repeated failures */
    CS_DIAL    /* opened by a dial towards a delegated server: never redialled */
} cs_origin;

/* One server we hold, or want, a session to. */
typedef struct client_session {
    dmsg_client *client;
    struct client_session *next;
    dmsg_pk pk;
    char address[DMSG_CLIENT_ADDRESS_MAX + 1]; /* "" until known */
    cs_state state;
    cs_origin origin;
    dmsg_session *s;            /* non-NULL from connect until the session's on_close */
    struct resolve_req *resolve;/* pending DNS lookup */
    dmsg_disc_req *lookup;      /* pending discovery lookup of the address */
    uint32_t backoff_ms;
    uint64_t retry_at;          /* loop time of the next attempt (CS_BACKOFF) */
    unsigned failures;          /* in a row */
    int last_err;
    bool removing;              /* drop once the session is gone */
} client_session;

/* Reads one session object: u16 BE length, then that many bytes. */
typedef struct obj_reader {
    uint8_t hdr[2];
    uint8_t hdr_have;
    uint8_t *buf;
    size_t len, have;
} obj_reader;

typedef enum conn_phase {
    CONN_DIALING,   /* request sent, waiting for the response */
    CONN_REQUESTED, /* a server opened the stream: waiting for the request */
    CONN_REFUSING,  /* our signed refusal is on its way; then FIN */
    CONN_QUEUED,    /* established, in a listener's queue */
    CONN_OPEN       /* handed to the application */
} conn_phase;

struct dmsg_conn {
    dmsg_client *client;
    dmsg_conn *prev, *next;     /* the client's conns */
    dmsg_conn *q_next;          /* listener queue or deferred list */
    dmsg_stream *st;            /* NULL once the stream is gone */
    dmsg_pk server_pk;
    dmsg_addr local, remote;
    conn_phase phase;
    bool owns_port;             /* local.port is ours to release at free */
    struct dmsg_dial *dial;     /* CONN_DIALING: the dial this try belongs to */
    dmsg_listener *listener;    /* CONN_QUEUED */
    uint64_t deadline;          /* loop time; 0 = none */

    obj_reader obj;
    dmsg_e2e_dialer *dialer;    /* CONN_DIALING */

    dmsg_noise_tx tx;
    dmsg_e2e_reader *reader;    /* from the end of the handshake */
    size_t pt_out;              /* plaintext handed out, not yet consumed */
    size_t wire_out;            /* stream bytes behind it, not yet consumed */
    uint8_t *raw;               /* bytes held while queued or awaiting deferred delivery */
    size_t raw_len, raw_cap;
    bool peer_fin;              /* FIN seen */
    bool eof_delivered;
    bool fin_sent;
    bool deferred;              /* on the client's deferred list */
    bool ready;                 /* callbacks set: data may be delivered */
    unsigned busy;              /* inside one of our loops that calls the application */
    bool stream_gone;           /* stream closed while busy: finish when unwound */
    int stream_err;
    int err;                    /* our own reason to drop it (bad data), reported on close */

    dmsg_conn_callbacks cb;
    void *ctx;
};

/* A dial in progress. */
typedef enum dial_state {
    DIAL_STARTING,  /* deferred start, or waiting for the destination's entry */
    DIAL_TRYING,    /* a try is under way */
    DIAL_WAITING,   /* nothing to try now; waiting for a session to come up */
    DIAL_DONE       /* outcome known; the callback runs from deferred work */
} dial_state;

typedef struct dmsg_dial {
    dmsg_client *client;
    struct dmsg_dial *next;
    dmsg_addr dst;
    uint16_t src_port;          /* reserved for the whole dial; given to the conn on success */
    dmsg_dial_cb cb;
    void *arg;
    dial_state state;
    uint64_t deadline;          /* the whole dial */
    dmsg_disc_req *lookup;
    bool lookup_done;
    bool lookup_failed;         /* no usable client entry: try every session */
    uint16_t lookup_code;       /* 100-103 when the lookup said why */
    size_t n_delegated;
    dmsg_pk *delegated;         /* the destination's delegated servers */
    size_t n_tried;
    dmsg_pk tried[CLIENT_DIAL_TRIED_MAX];
    unsigned mesh_tries;
    unsigned n_opened;
    dmsg_pk opened[CLIENT_DIAL_OPEN_MAX]; /* servers this dial opened a session to */
    dmsg_conn *try_conn;
    int best_err;
    uint16_t best_code;
    bool deferred_start;
    dmsg_conn *result;          /* DIAL_DONE: the conn, or NULL with result_err */
    int result_err;
    uint16_t result_code;
} dmsg_dial;

struct dmsg_listener {
    dmsg_client *client;
    dmsg_listener *next;
    uint16_t port;
    dmsg_listener_cb cb;
    void *ctx;
    dmsg_conn *q_head, *q_tail;
    size_t n_queued;
};

/* Discovery state of the client (client_disc.c). */
typedef struct client_disc {
    bool enabled;
    dmsg_http http;
    bool http_open;
    dmsg_disc_client dc;
    dmsg_disc_reg *reg;         /* our client entry (allocated: it embeds a whole entry) */
    bool reg_inited;
    bool reg_started;
    bool reg_stopping;
    uint64_t stop_deadline;
    dmsg_disc_req *pick_req;    /* available_servers */
    uint64_t pick_due;          /* loop time; 0 = no pick wanted */
    uint32_t pick_backoff_ms;
    dmsg_pk failed[CLIENT_FAILED_MEMORY];
    unsigned n_failed, failed_next;
} client_disc;

struct dmsg_client {
    uv_loop_t *loop;
    dmsg_identity id;
    dmsg_client_config cfg;
    dmsg_server_ref *servers;   /* copy of cfg.servers */
    dmsg_client_callbacks cb;
    void *ctx;
    dmsg_porter porter;

    client_session *sessions;
    size_t n_sessions;
    dmsg_listener *listeners;
    dmsg_conn *conns;
    size_t n_conns;
    dmsg_dial *dials;

    uv_timer_t timer;           /* one timer for every deadline and retry */
    uint64_t timer_due;
    bool timer_armed;
    uv_timer_t defer_timer;     /* runs deferred work on the next loop iteration */
    bool defer_armed;
    dmsg_conn *deferred_head, *deferred_tail;
    bool dials_deferred;

    client_disc disc;

    struct { dmsg_pk dst, server; bool used; } routes[CLIENT_ROUTE_CACHE];
    unsigned route_next;

    uint8_t *scratch;           /* CLIENT_SCRATCH_LEN: decrypted data, sealed writes */
    bool scratch_busy;

    bool start_pending;         /* sessions start from the loop */
    bool closing;
    bool teardown_pending;      /* dmsg_client_close: the work happens from the loop */
    bool close_continued;       /* our entry is deleted (or not wanted): sessions closing */
    bool handles_closing;
    unsigned pending_closes;    /* uv handles, http, DNS lookups still to finish */
    bool close_reported;
};

/* client.c */
uint64_t client_now(const dmsg_client *c);
int64_t client_wall_ns(void);
void client_arm(dmsg_client *c, uint64_t due);
void client_defer_conn(dmsg_client *c, dmsg_conn *conn);
void client_undefer_conn(dmsg_client *c, dmsg_conn *conn);
void client_defer_dials(dmsg_client *c);
void defer_arm(dmsg_client *c);
void client_continue_close(dmsg_client *c);
void client_event(dmsg_client *c, dmsg_client_event ev, const dmsg_pk *server, int err);
void client_maybe_finish_close(dmsg_client *c);
uint32_t client_jitter(dmsg_client *c, uint32_t ms);

/* client_servers.c */
client_session *servers_find(dmsg_client *c, const dmsg_pk *pk);
client_session *servers_add(dmsg_client *c, const dmsg_pk *pk, const char *address,
                            cs_origin origin, int *err);
void servers_start(dmsg_client *c, client_session *cs);
void servers_tick(dmsg_client *c, uint64_t now, uint64_t *next_due);
void servers_close_all(dmsg_client *c);
size_t servers_up(const dmsg_client *c, dmsg_pk *out, size_t cap);
size_t servers_count_wanted(const dmsg_client *c);
bool servers_any_pending(const dmsg_client *c);
void servers_address_found(client_session *cs, const char *address, int err);

/* client_disc.c */
int disc_init(dmsg_client *c, const char *url);
void disc_close(dmsg_client *c);
bool disc_stop_entry(dmsg_client *c);
void disc_want_pick(dmsg_client *c, uint32_t delay_ms);
void disc_sessions_changed(dmsg_client *c);
void disc_tick(dmsg_client *c, uint64_t now, uint64_t *next_due);
void disc_server_failed(dmsg_client *c, const dmsg_pk *pk);
int disc_lookup_dst(dmsg_client *c, dmsg_dial *d);
int disc_lookup_server(dmsg_client *c, client_session *cs);

/* client_dial.c */
void dial_begin(dmsg_dial *d);
void dial_next(dmsg_dial *d);
void dial_conn_lost(dmsg_dial *d, dmsg_conn *conn, int err);
void dial_try_failed(dmsg_dial *d, dmsg_conn *conn, int err, uint16_t code);
void dial_try_succeeded(dmsg_dial *d, dmsg_conn *conn);
void dial_lookup_done(dmsg_dial *d, const dmsg_entry *e, int err, uint16_t code);
void dials_sessions_changed(dmsg_client *c);
void dials_run_deferred(dmsg_client *c);
void dials_tick(dmsg_client *c, uint64_t now, uint64_t *next_due);
void dials_fail_all(dmsg_client *c, int err);
void route_remember(dmsg_client *c, const dmsg_pk *dst, const dmsg_pk *server);
const dmsg_pk *route_lookup(const dmsg_client *c, const dmsg_pk *dst);

/* client_conn.c */
dmsg_conn *conn_new(dmsg_client *c, const dmsg_pk *server_pk);
int conn_start_dial(dmsg_conn *conn, dmsg_session *s, dmsg_dial *d, uint32_t timeout_ms);
void conn_accept_stream(dmsg_client *c, dmsg_session *s, dmsg_stream *st,
                        const dmsg_pk *server);
void conn_discard(dmsg_conn *conn);
void conn_abort(dmsg_conn *conn, int err);
void conns_tick(dmsg_client *c, uint64_t now, uint64_t *next_due);
void conn_run_deferred(dmsg_conn *conn);
void conn_open_established(dmsg_conn *conn);

/* client_listen.c */
dmsg_listener *listener_find(dmsg_client *c, uint16_t port);
void listener_enqueue(dmsg_listener *l, dmsg_conn *conn);
void listener_unlink_conn(dmsg_conn *conn);
void listeners_close_all(dmsg_client *c);

#endif
