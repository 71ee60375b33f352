/* Go net/rpc with its default gob codec, sans I/O (gob-and-rpc.md A.10).
 *
 * One dmsg_rpc_conn per stream, in the client or the server role. Each direction of the stream
 * is one gob stream: the conn keeps a gob decoder for what arrives and a gob encoder for what it
 * sends, so a type is defined once per stream, as Go does.
 *
 *   client -> server, per call:  Request{ServiceMethod string, Seq uint64}, then the argument
 *   server -> client, per call:  Response{ServiceMethod, Seq, Error string}, then the reply, or
 *                                after an error an empty struct
 *
 * Input: dmsg_rpc_feed() copies bytes, split anywhere, into the caller's input buffer;
 * dmsg_rpc_poll() returns the next complete call (server) or reply (client). Output: the encode
 * functions write one call's bytes (what Go writes with one flush) into a caller buffer.
 *
 * Server behaviour follows Go's: a ServiceMethod with no dot, an unknown service or an unknown
 * method still has its argument read (and discarded) and is answered with Go's error text (see
 * dmsg_rpc_reject_text); the stream stays usable. An argument that fails to decode is answered
 * too, but the stream is then closed (Go's decoder could go on; ours cannot tell where a
 * malformed message's definitions left its type table). A header that fails to decode closes
 * the stream without an answer, as in Go, and so does an unknown method's argument that is not
 * even valid gob. Client behaviour: a reply whose Seq matches no pending call is read and
 * dropped, as in Go.
 *
 * Bounds: a call (header and body with their definitions) must fit the input buffer; gob type
 * definitions per direction are capped by DMSG_GOB_MAX_TYPES; decoded slices must fit the arena;
 * pending client calls are capped by DMSG_RPC_MAX_PENDING. */
#ifndef DMSG_RPC_H
#define DMSG_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/gob.h"

#define DMSG_RPC_MAX_PENDING 8  /* outstanding calls of one client conn */
#define DMSG_RPC_MAX_BODY 256   /* largest C value (sizeof) of an argument or reply */

/* One method: "Service.Method" and the schemas of its argument and reply. */
typedef struct dmsg_rpc_method {
    const char *name;
    const dmsg_gob_type *arg;
    const dmsg_gob_type *reply;
} dmsg_rpc_method;

/* net/rpc's Request and Response headers. */
typedef struct dmsg_rpc_request {
    dmsg_gob_bytes service_method;
    uint64_t seq;
} dmsg_rpc_request;

typedef struct dmsg_rpc_response {
    dmsg_gob_bytes service_method;
    uint64_t seq;
    dmsg_gob_bytes error;
} dmsg_rpc_response;

extern const dmsg_gob_type dmsg_gob_rpc_request;
extern const dmsg_gob_type dmsg_gob_rpc_response;
/* struct{}{}: net/rpc's reply body after an error. The C value is any pointer; nothing is read. */
extern const dmsg_gob_type dmsg_gob_rpc_empty;

typedef enum dmsg_rpc_role {
    DMSG_RPC_CLIENT = 1,
    DMSG_RPC_SERVER = 2
} dmsg_rpc_role;

typedef enum dmsg_rpc_event_kind {
    DMSG_RPC_EV_CALL = 1, /* server: a call of a served method; body = the decoded argument */
    DMSG_RPC_EV_REJECT,   /* server: a call that cannot be served; answer it with the text of
                             dmsg_rpc_reject_text and dmsg_rpc_reply_error */
    DMSG_RPC_EV_REPLY     /* client: the reply to a pending call; body = the decoded reply,
                             or NULL when error is not empty */
} dmsg_rpc_event_kind;

typedef enum dmsg_rpc_reject {
    DMSG_RPC_REJECT_NONE = 0,
    DMSG_RPC_REJECT_ILL_FORMED, /* no '.' in ServiceMethod */
    DMSG_RPC_REJECT_NO_SERVICE,
    DMSG_RPC_REJECT_NO_METHOD,
    DMSG_RPC_REJECT_BAD_ARG     /* the argument did not decode; the stream ends after the answer */
} dmsg_rpc_reject;

/* Views (service_method, error, and anything inside body) point into the conn's input buffer
 * and arena: they are valid until the next dmsg_rpc_feed or dmsg_rpc_poll on the conn. */
typedef struct dmsg_rpc_event {
    dmsg_rpc_event_kind kind;
    dmsg_gob_bytes service_method;
    uint64_t seq;
    dmsg_gob_bytes error;           /* REPLY: the server's Error ("" on success) */
    const dmsg_rpc_method *method;  /* CALL: the served method; REPLY: the method called */
    const void *body;               /* CALL: method->arg value; REPLY: method->reply value */
    dmsg_rpc_reject reject;         /* REJECT: why */
    int arg_error;                  /* REJECT with BAD_ARG: the gob decoder's DMSG_E* code */
} dmsg_rpc_event;

typedef struct dmsg_rpc_config {
    dmsg_rpc_role role;
    /* SERVER: the methods served (each arg/reply size <= DMSG_RPC_MAX_BODY) */
    const dmsg_rpc_method *const *methods;
    size_t nmethods;
    /* Input buffer; its size is also the largest call accepted. */
    uint8_t *inbuf;
    size_t inbuf_cap;
    /* Arena for decoded slices (hops, route ids, rules); NULL/0 if no body has slices. */
    void *arena;
    size_t arena_cap;
    /* Type-id registry shared with other encoders of this process, or NULL for the conn's own
     * (ids then start at 65 as in a fresh Go process). Must outlive the conn. */
    dmsg_gob_registry *registry;
} dmsg_rpc_config;

typedef struct dmsg_rpc_pending {
    uint64_t seq;
    const dmsg_rpc_method *method;
} dmsg_rpc_pending;

/* Fixed size (about 5.3 KiB); fields are private. */
typedef struct dmsg_rpc_conn {
    dmsg_rpc_role role;
    const dmsg_rpc_method *const *methods;
    size_t nmethods;
    uint8_t *in;
    size_t in_cap;
    size_t in_len;    /* bytes held */
    size_t in_pos;    /* bytes parsed */
    bool have_header; /* a header is parsed and its body is awaited */
    size_t hdr_start; /* where that header begins in the buffer (kept until its body arrives) */
    size_t method_rel, method_len; /* the pending header's strings, relative to hdr_start */
    size_t error_rel, error_len;
    uint64_t hdr_seq;
    int broken;       /* the error that ended the stream's input, or 0 */
    uint64_t next_seq;
    size_t npending;
    dmsg_rpc_pending pending[DMSG_RPC_MAX_PENDING];
    dmsg_gob_decoder dec;
    dmsg_gob_encoder enc;
    dmsg_gob_registry own_registry;
    union {
        max_align_t align;
        uint8_t bytes[DMSG_RPC_MAX_BODY];
    } body; /* the decoded argument or reply */
} dmsg_rpc_conn;

/* DMSG_EINVAL for a missing buffer, a server without methods, a method whose C values exceed
 * DMSG_RPC_MAX_BODY, or a bad role. */
int dmsg_rpc_init(dmsg_rpc_conn *conn, const dmsg_rpc_config *cfg);

/* Copies up to len bytes of stream input; *taken gets how many fit (0 when the buffer is full:
 * poll first). Returns 0, or the error that ended the stream. */
int dmsg_rpc_feed(dmsg_rpc_conn *conn, const uint8_t *in, size_t len, size_t *taken);

/* The next event, or DMSG_EAGAIN when the input holds no complete call/reply yet. Any other
 * error ends the stream (close it): DMSG_ETOOBIG (a call larger than the input buffer),
 * DMSG_EGOB / DMSG_EGOBTYPE / DMSG_EDEPTH / DMSG_ELIMIT / DMSG_EKEY (bad gob data, an
 * incompatible header, a reply whose body does not decode), DMSG_EPROTO (after a REJECT with
 * BAD_ARG). The error repeats on later calls. */
int dmsg_rpc_poll(dmsg_rpc_conn *conn, dmsg_rpc_event *ev);

/* True when input bytes are buffered that no event has consumed (a partial call at EOF). */
bool dmsg_rpc_has_partial_input(const dmsg_rpc_conn *conn);

/* Go's error text for a REJECT event: "rpc: service/method request ill-formed: X",
 * "rpc: can't find service X", "rpc: can't find method X" (X = the full ServiceMethod), or for
 * BAD_ARG "gob: " and our description of the decode error. NUL-terminated; DMSG_ETOOBIG when
 * cap is too small; *len (may be NULL) gets the length without the NUL. */
int dmsg_rpc_reject_text(const dmsg_rpc_event *ev, char *out, size_t cap, size_t *len);

/* CLIENT: encodes a call with the next Seq (0, 1, ...) into out[0..cap) and records it as
 * pending. *seq (may be NULL) gets the Seq. DMSG_ETOOBIG when out is too small, DMSG_ELIMIT
 * when DMSG_RPC_MAX_PENDING calls are pending, DMSG_ESTATE on a server conn; nothing changes on
 * an error. */
int dmsg_rpc_call(dmsg_rpc_conn *conn, const dmsg_rpc_method *method, const void *arg,
                  uint8_t *out, size_t cap, size_t *out_len, uint64_t *seq);

/* CLIENT: forgets a pending call (its reply, if it comes, is then dropped). DMSG_ENOTFOUND when
 * no such call is pending. */
int dmsg_rpc_cancel(dmsg_rpc_conn *conn, uint64_t seq);
size_t dmsg_rpc_pending_count(const dmsg_rpc_conn *conn);

/* SERVER: encodes a successful reply to the call (service_method, seq) with reply_type.
 * DMSG_ETOOBIG when out is too small (nothing changes then). */
int dmsg_rpc_reply(dmsg_rpc_conn *conn, dmsg_gob_bytes service_method, uint64_t seq,
                   const dmsg_gob_type *reply_type, const void *reply, uint8_t *out, size_t cap,
                   size_t *out_len);

/* SERVER: encodes an error reply: Response.Error = error (must not be empty) and the empty
 * struct body, as Go's server does. */
int dmsg_rpc_reply_error(dmsg_rpc_conn *conn, dmsg_gob_bytes service_method, uint64_t seq,
                         dmsg_gob_bytes error, uint8_t *out, size_t cap, size_t *out_len);

/* A NUL-terminated C string as a view. */
dmsg_gob_bytes dmsg_rpc_str(const char *s);

#endif
