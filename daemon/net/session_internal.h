/* Private to the session transport: session.c (lifecycle, timer, deferred work, accessors),
 * session_handshake.c (PROXY header and Noise XK), session_input.c (reading and yamux events),
 * session_output.c (the output queue and the socket write), session_stream.c (the stream API and
 * the framing of stream data).
 *
 * Memory model. An idle session owns its struct, its uv_tcp_t and the (empty) yamux state; the
 * handshake state, the read buffer and every output segment exist only while in use. Streams,
 * write chunks and output segments are freed from the loop only: never inside the call that
 * ended them, so code that runs a user callback may keep using its pointers afterwards. */
#ifndef DMSG_SESSION_INTERNAL_H
#define DMSG_SESSION_INTERNAL_H

#include "dmsg/glitch.h"
#include "dmsg/session.h"

/* Bytes handed to libuv per read (the buffer lives only during the read callback). */
#define SESSION_READ_CHUNK 65536
/* The smallest max_write_queue accepted (reads are a quarter of it). */
#define SESSION_MIN_WRITE_QUEUE 4096
/* Room of a block of control frames (and handshake messages). */
#define SESSION_CTRL_BLOCK 240
/* iovecs per uv_write; more queued segments go in the next write. */
#define SESSION_MAX_IOV 512

typedef struct session_hs session_hs; /* session_handshake.c */

/* One dmsg_stream_write: the bytes are copied once, here, and framed from here. The chunk lives
 * until its callback ran and no output segment points into it. */
typedef struct wchunk {
    struct wchunk *next;
    dmsg_stream *stream; /* NULL once its callback ran (orphan kept alive by segments) */
    dmsg_write_cb cb;
    void *arg;
    size_t len;
    size_t framed;    /* bytes already put into data frames */
    uint32_t refs;    /* output segments pointing into data[] */
    uint8_t data[];
} wchunk;

/* One element of the output queue: inline bytes (a yamux header, a handshake message) and
 * optionally payload bytes from a chunk (a data frame). */
typedef struct out_seg {
    struct out_seg *next;
    wchunk *chunk;
    size_t off, len;  /* payload in chunk->data */
    uint16_t inl_len, inl_cap;
    uint8_t inl[];
} out_seg;

enum stream_flag {
    ST_CALLBACKS = 1 << 0, /* dmsg_stream_set_callbacks was called */
    ST_FIN_WANTED = 1 << 1, /* dmsg_stream_close: FIN after the queued data */
    ST_FIN_SENT = 1 << 2,
    ST_FIN_RECV = 1 << 3,
    ST_DEAD = 1 << 4,       /* yamux forgot it or the session is closing; on_close pending */
    ST_GRACEFUL = 1 << 5,   /* dead by both FINs: on_close waits for its writes */
    ST_IN_SEND = 1 << 6,    /* on the session's send list */
    ST_IN_ZOMBIES = 1 << 7, /* on the session's zombie list */
    ST_NOTIFY = 1 << 8,     /* on the write-completion notify list */
    ST_AWAIT_ACK = 1 << 9,  /* on the ack-timeout list */
    ST_LINGER = 1 << 10     /* on the close-timeout list */
};

/* Intrusive doubly linked list link. */
typedef struct slink {
    dmsg_stream *prev, *next;
} slink;

typedef struct slist {
    dmsg_stream *head, *tail;
} slist;

struct dmsg_stream {
    dmsg_session *sess;
    uint32_t id;
    uint32_t flags;
    int close_err;
    dmsg_stream_callbacks cb;
    void *ctx;
    slink all;    /* every stream of the session, until freed */
    slink zombie; /* zombie list: dead, on_close pending */
    slink send;   /* send list: has bytes to frame or a FIN to send */
    slink timer;  /* ack-timeout or close-timeout list (never both at once) */
    dmsg_stream *notify_next;
    uint64_t timer_since_ms;
    wchunk *chunk_head, *chunk_tail; /* chunks whose callback has not run, oldest first */
    wchunk *frame_chunk;             /* first chunk with unframed bytes */
    size_t queued;                   /* written by the caller, not yet on the socket */
};

struct dmsg_session {
    uv_loop_t *loop;
    uv_tcp_t *tcp; /* malloc'd (the server hands over an accepted handle) */
    uv_timer_t timer;
    uv_idle_t deferred;
    uv_write_t write_req;

    dmsg_session_role role;
    dmsg_session_state state;
    dmsg_session_config cfg;
    dmsg_session_callbacks cb;
    void *ctx;

    session_hs *hs; /* handshake state, NULL once message 3 is done (settling too) */
    dmsg_yamux ymx; /* initialised when OPEN */
    bool ymx_live;
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    dmsg_pk remote_pk;
    struct sockaddr_storage remote_addr;
    /* Client role: message 1 sent at, and the round trip to message 2; after message 3 the
     * session stays quiet until settle_until_ms (0 = not settling), see session_handshake.c. */
    uint64_t hs_sent_ms, hs_rtt_ms, settle_until_ms;

    /* output */
    out_seg *out_head, *out_tail;
    unsigned out_count;     /* segments queued, the write in flight included */
    size_t out_bytes;       /* queued segment bytes, the write in flight included */
    size_t unframed_bytes;  /* stream bytes not yet framed */
    unsigned inflight_segs; /* the first segments of the queue belong to the write in flight */
    bool writing;
    uint64_t write_progress_ms;
    size_t write_progress_mark;

    /* input */
    bool reading;
    bool read_paused; /* by output backpressure */

    /* streams */
    slist all, zombies, sendq, ack_wait, linger;
    uint32_t nstreams; /* live, not dead */
    uint64_t idle_since_ms;

    /* lifecycle */
    unsigned hold;   /* > 0 while inside one of our own loop callbacks: flush at its end */
    bool closing;
    bool silent;     /* construction failed: free without on_close */
    int close_err;
    unsigned handles_open;
    uint64_t timer_due;

    dmsg_session_stats stats;

    /* abuse budget (dmsg/glitch.h) */
    dmsg_glitch glitch;
    uint64_t last_ping_ms;
    uint64_t glitch_close_at; /* close once bytes_out reaches it (the GOAWAY is out); 0: none */
};

/* ---- session.c ----------------------------------------------------------------------------- */
uint64_t session_now(const dmsg_session *s);
/* Makes sure the timer fires no later than due_ms. */
void session_timer_want(dmsg_session *s, uint64_t due_ms);
/* Runs the zombie list and the close from the loop, soon. */
void session_defer(dmsg_session *s);
/* Handshake done: keys set, yamux starts, on_ready runs. */
void session_opened(dmsg_session *s);
/* Client role: opens the session now if it was settling after message 3. */
void session_settle_end(dmsg_session *s);
void session_fail(dmsg_session *s, int err);

/* ---- session_handshake.c ------------------------------------------------------------------- */
int session_hs_start(dmsg_session *s, const dmsg_identity *id, const dmsg_pk *remote_pk);
/* Consumes handshake-phase bytes; returns how many (the rest belong to yamux), or an error. */
int session_hs_input(dmsg_session *s, uint8_t *p, size_t n, size_t *used);
uint64_t session_hs_deadline(const dmsg_session *s);
void session_hs_free(dmsg_session *s);
bool session_hs_truncated(const dmsg_session *s);
/* Client role: starts the TCP connect; message 1 goes out when it completes. */
int session_hs_connect(dmsg_session *s, const struct sockaddr *addr);

/* ---- session_input.c ----------------------------------------------------------------------- */
int session_read_start(dmsg_session *s);
void session_read_stop(dmsg_session *s);

/* ---- session_output.c ---------------------------------------------------------------------- */
int session_queue_bytes(dmsg_session *s, const uint8_t *bytes, size_t len);
int session_queue_data(dmsg_session *s, const uint8_t hdr[DMSG_YAMUX_HDR_LEN], wchunk *c,
                       size_t off, size_t len);
/* Frames stream data as the pacing allows and starts a write; a no-op while held. */
void session_flush(dmsg_session *s);
void session_drop_output(dmsg_session *s);
void session_try_goaway(dmsg_session *s, uint32_t code);

/* ---- session_stream.c ---------------------------------------------------------------------- */
/* Intrusive lists; off is the offsetof() of the slink used. */
void session_list_push(slist *l, dmsg_stream *st, size_t off);
void session_list_remove(slist *l, dmsg_stream *st, size_t off);

void session_stream_incoming(dmsg_session *s, uint32_t id);
/* The stream is gone from yamux (or the session is closing): on_close comes from the loop. */
void session_stream_kill(dmsg_stream *st, int err, bool graceful);
void session_stream_sendable(dmsg_stream *st);
/* Frames queued data while the output queue is under its pacing mark. */
void session_pump_streams(dmsg_session *s);
/* Write completion for the data of a stream: callbacks of finished chunks, on_writable. */
void session_stream_written(dmsg_stream *st);
void session_run_zombies(dmsg_session *s);
void session_kill_all_streams(dmsg_session *s, int err);
/* Ack and close timeouts; returns the next deadline or UINT64_MAX. */
uint64_t session_stream_timers(dmsg_session *s, uint64_t now);

#endif
