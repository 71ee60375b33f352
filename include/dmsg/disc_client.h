/* dmsg-discovery HTTP client (spec: discovery.md sections 2, 5 and 7; dmsg-wire.md 8.2), and a
 * registration helper that keeps one entry registered and fresh the way the Go dmsg server and
 * client do.
 *
 * Requests run on the loop of the dmsg_http they are given; every callback runs on that loop.
 * A request handle stays valid until its callback has returned or it is cancelled; the
 * callback of a cancelled request is never called. */
#ifndef DMSG_DISC_CLIENT_H
#define DMSG_DISC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/entry.h"
#include "dmsg/http_client.h"

#define DMSG_DISC_URL_MAX 480
#define DMSG_DISC_DEFAULT_TIMEOUT_MS 10000u
#define DMSG_DISC_LIST_MAX_BYTES (8u << 20)  /* body limit of the server listings */
#define DMSG_DISC_PUT_ROUNDS_MAX 8           /* sequence recoveries before DMSG_ELIMIT */
#define DMSG_DISC_MESSAGE_MAX 255

/* Wall-clock time in Unix nanoseconds (entry timestamps). */
typedef int64_t (*dmsg_disc_clock_fn)(void *ctx);

typedef struct dmsg_disc_req dmsg_disc_req;

typedef struct dmsg_disc_client {
    dmsg_http *http;
    char base[DMSG_DISC_URL_MAX + 1]; /* without a trailing '/' */
    uint64_t timeout_ms;              /* per HTTP request */
    dmsg_disc_clock_fn clock;
    void *clock_ctx;
    dmsg_disc_req *reqs;              /* pending, for dmsg_disc_client_cancel_all */
} dmsg_disc_client;

/* Outcome of one call.
 *   err == 0: the discovery answered 200 (result DMSG_DISC_OK).
 *   Transport failure: err from dmsg_http_response (DMSG_ETIMEOUT, DMSG_EIO, ...), status 0.
 *   The discovery refused: status is its HTTP status, result/message come from its
 *   {"message":…,"code":…} body (an unknown text gives DMSG_DISC_UNEXPECTED, as in Go), and err
 *   is DMSG_ENOTFOUND (404 results), DMSG_ESIG (401), DMSG_EINVAL (400 and every 422),
 *   or DMSG_EIO (500 and anything else).
 *   A body that is not what the call expects (an error reply that is not such an object, or a
 *   200 that is not an entry / list): DMSG_EPROTO with the status.
 *   DMSG_ELIMIT: dmsg_disc_put_entry ran out of sequence recoveries. */
typedef struct dmsg_disc_reply {
    int err;
    long status;
    dmsg_disc_result result;
    const char *message; /* the reply's message, "" when none; valid during the callback */
    const char *detail;  /* transport detail for logs, "" when none */
} dmsg_disc_reply;

typedef void (*dmsg_disc_done_cb)(void *ctx, const dmsg_disc_reply *reply);
/* entry is NULL unless reply->err == 0. */
typedef void (*dmsg_disc_entry_cb)(void *ctx, const dmsg_disc_reply *reply,
                                   const dmsg_entry *entry);
/* entries is NULL unless reply->err == 0; the whole list has already been parsed once, so
 * dmsg_entry_iter_next will not fail on it. Valid during the callback only. */
typedef void (*dmsg_disc_list_cb)(void *ctx, const dmsg_disc_reply *reply,
                                  dmsg_entry_iter *entries);

/* base_url: e.g. "http://dmsgd.skywire.skycoin.com" (one trailing '/' is dropped).
 * DMSG_EINVAL when it is empty or over DMSG_DISC_URL_MAX. */
int dmsg_disc_client_init(dmsg_disc_client *c, dmsg_http *http, const char *base_url);
/* Replaces the wall clock (CLOCK_REALTIME by default), e.g. for tests. */
void dmsg_disc_client_set_clock(dmsg_disc_client *c, dmsg_disc_clock_fn clock, void *ctx);
int64_t dmsg_disc_client_now(const dmsg_disc_client *c);
/* Cancels every pending request of c (no callbacks). Cancel or close the registrations using c
 * before calling this. */
void dmsg_disc_client_cancel_all(dmsg_disc_client *c);

/* Each call returns a handle, or NULL with *err set (DMSG_EINVAL, DMSG_ENOMEM, DMSG_ECLOSED,
 * DMSG_ETOOBIG for an entry that cannot be written). */

/* GET /dmsg-discovery/entry/<pk> */
dmsg_disc_req *dmsg_disc_get_entry(dmsg_disc_client *c, const dmsg_pk *pk,
                                   dmsg_disc_entry_cb cb, void *ctx, int *err);
/* POST /dmsg-discovery/entry/ with e written canonically, signature included (sign it first). */
dmsg_disc_req *dmsg_disc_post_entry(dmsg_disc_client *c, const dmsg_entry *e,
                                    dmsg_disc_done_cb cb, void *ctx, int *err);
/* DELETE /dmsg-discovery/entry with e as the body. The discovery checks it like a POST,
 * timestamp window included: sign it with a fresh timestamp. */
dmsg_disc_req *dmsg_disc_delete_entry(dmsg_disc_client *c, const dmsg_entry *e,
                                      dmsg_disc_done_cb cb, void *ctx, int *err);
/* GET /dmsg-discovery/available_servers, GET /dmsg-discovery/all_servers. An empty listing is
 * a 404 (DMSG_ENOTFOUND, DMSG_DISC_NO_AVAILABLE_SERVERS): "none yet". */
dmsg_disc_req *dmsg_disc_available_servers(dmsg_disc_client *c, dmsg_disc_list_cb cb,
                                           void *ctx, int *err);
dmsg_disc_req *dmsg_disc_all_servers(dmsg_disc_client *c, dmsg_disc_list_cb cb, void *ctx,
                                     int *err);

/* The reference's update (Go PutEntry): sequence = e's + 1, timestamp = now, sign with sk,
 * POST. When the discovery answers that the sequence is wrong, GET the stored entry: if it is
 * newer than ours, stop (success; e->sequence becomes the stored one); else retry with the
 * stored sequence + 1. e is updated in place and must stay valid until the callback. */
dmsg_disc_req *dmsg_disc_put_entry(dmsg_disc_client *c, dmsg_entry *e, const dmsg_sk *sk,
                                   dmsg_disc_done_cb cb, void *ctx, int *err);

void dmsg_disc_cancel(dmsg_disc_req *req);

/* ---------------------------------------------------------------------------------------------
 * Registration: one entry, kept registered.
 *
 * start: GET own entry; if that fails, POST a new one (sequence 0); else, unless nothing
 * changed and no refresh is due, PUT (as above) the desired parts. Retried until it works,
 * waiting 1 s, then ×1.3 each time while that stays within 20 s (Go's default retrier;
 * each wait counts from the start of the failed attempt).
 * Then: an update on every change (set_sessions / set_delegated), and, for entries with a
 * server part, at least every update interval (60 s). Later failures are reported and left to
 * the next change or interval, as the reference does.
 * stop: GET own entry (for its sequence), sign ours with a fresh timestamp, DELETE it. */

typedef struct dmsg_disc_reg_config {
    dmsg_pk pk;
    dmsg_sk sk;
    bool server;                 /* publish a server part */
    const char *address;         /* server: advertised "host:port" (copied) */
    int64_t max_sessions;        /* server: availableSessions = max_sessions - sessions */
    bool client;                 /* publish a client part (delegated servers) */
    uint64_t update_interval_ms; /* 0: 60000 */
    uint64_t backoff_initial_ms; /* 0: 1000 */
    uint64_t backoff_max_ms;     /* 0: 20000 */
    double backoff_factor;       /* 0: 1.3 */
} dmsg_disc_reg_config;

typedef enum dmsg_disc_reg_event_kind {
    DMSG_DISC_REG_POSTED,    /* a new entry was written (sequence 0) */
    DMSG_DISC_REG_UPDATED,   /* an iteration was written */
    DMSG_DISC_REG_UNCHANGED, /* nothing changed and no refresh was due */
    DMSG_DISC_REG_FAILED,    /* reply says why; retry_in_ms > 0 while starting */
    DMSG_DISC_REG_DELETED,   /* stop finished (reply->err says how) */
} dmsg_disc_reg_event_kind;

typedef struct dmsg_disc_reg_event {
    dmsg_disc_reg_event_kind kind;
    const dmsg_disc_reply *reply; /* FAILED, DELETED */
    const dmsg_entry *entry;      /* POSTED, UPDATED: what was written */
    uint64_t retry_in_ms;
} dmsg_disc_reg_event;

typedef struct dmsg_disc_reg dmsg_disc_reg;
typedef void (*dmsg_disc_reg_event_cb)(dmsg_disc_reg *reg, const dmsg_disc_reg_event *ev);
typedef void (*dmsg_disc_reg_close_cb)(dmsg_disc_reg *reg);

/* Private: in the header so that callers can embed the object. */
struct dmsg_disc_reg {
    dmsg_disc_client *client;
    dmsg_pk pk;
    dmsg_sk sk;
    bool want_server, want_client;
    char address[DMSG_ENTRY_TEXT_MAX + 1];
    int64_t max_sessions, sessions;
    size_t n_delegated;
    dmsg_pk delegated[DMSG_ENTRY_DELEGATED_MAX];
    uint64_t interval_ms, backoff_initial_ms, backoff_max_ms, backoff_ms;
    double backoff_factor;
    uv_timer_t timer;
    int state;
    bool dirty;                  /* a change arrived while an update was running */
    bool have_last;
    uint64_t last_update_ms;     /* uv_now of the last successful update */
    uint64_t attempt_started_ms;
    dmsg_disc_req *inflight;
    dmsg_entry entry;            /* the entry being written */
    dmsg_disc_reg_event_cb on_event;
    dmsg_disc_reg_close_cb on_close;
    void *data;                  /* free for the caller */
};

/* DMSG_EINVAL for a config with neither part, or a server part whose address is empty, not
 * printable ASCII or over DMSG_ENTRY_TEXT_MAX. On error nothing needs closing; after success,
 * dmsg_disc_reg_close must be called once. */
int dmsg_disc_reg_init(dmsg_disc_reg *reg, dmsg_disc_client *client,
                       const dmsg_disc_reg_config *cfg, dmsg_disc_reg_event_cb on_event);
/* DMSG_ESTATE unless freshly initialised. */
int dmsg_disc_reg_start(dmsg_disc_reg *reg);
/* Server: the current session count changed. */
void dmsg_disc_reg_set_sessions(dmsg_disc_reg *reg, int64_t sessions);
/* Client: the delegated servers changed (copied, in this order). DMSG_ETOOBIG over the max. */
int dmsg_disc_reg_set_delegated(dmsg_disc_reg *reg, const dmsg_pk *servers, size_t n);
/* Stops updating and deletes the entry; the DELETED event reports the outcome. DMSG_ESTATE
 * when already stopping or closed. */
int dmsg_disc_reg_stop(dmsg_disc_reg *reg);
/* Abandons any work (no further events), wipes the key, and calls close_cb (may be NULL) from
 * the loop once the timer is closed. */
void dmsg_disc_reg_close(dmsg_disc_reg *reg, dmsg_disc_reg_close_cb close_cb);

#endif
