/* dmsg-discovery entries: the JSON the reference signs, its signature, and the checks a
 * discovery applies to a POSTed or DELETEd entry (spec: discovery.md sections 3-5 and 9).
 *
 * Canonical JSON = what json-iterator's ConfigFastest writes for the Go struct: members in
 * struct order, no whitespace, absent parts and empty optional members omitted, strings escaped
 * only for '"', '\\' and bytes below 0x20. The signature covers that text with the signature
 * member left out; a verifier decodes what it received, re-writes it canonically and checks the
 * signature over those bytes.
 *
 * Parsing follows the Go decoder: member names match without regard to ASCII case, unknown
 * members are skipped (and so dropped), a later duplicate overwrites an earlier one, `null`
 * leaves the zero value, and bytes after the first JSON value are ignored. Where Go would accept
 * something unbounded, this module refuses it with DMSG_ETOOBIG (text longer than
 * DMSG_ENTRY_TEXT_MAX, more than DMSG_ENTRY_DELEGATED_MAX delegated servers, a body over
 * DMSG_ENTRY_JSON_MAX) or DMSG_EDEPTH (nesting over DMSG_ENTRY_DEPTH_MAX); it also refuses
 * invalid UTF-8 and the NUL character in strings (DMSG_EPROTO), which Go would store verbatim.
 *
 * Nothing here allocates, reads a clock (time is an argument) or keeps state. */
#ifndef DMSG_ENTRY_H
#define DMSG_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/cipher.h"

#define DMSG_ENTRY_VERSION "0.0.1"
#define DMSG_ENTRY_TEXT_MAX 255        /* bytes of any string member, after unescaping */
#define DMSG_ENTRY_DELEGATED_MAX 256   /* keys in client.delegated_servers */
#define DMSG_ENTRY_DEPTH_MAX 32        /* nesting of objects/arrays, unknown members included */
/* Largest entry body parsed, and a bound on every canonical text written (the longest possible
 * entry, every text member at its limit and fully escaped, needs about 34 KiB). */
#define DMSG_ENTRY_JSON_MAX 65536

/* Server entries must be this fresh when POSTed (now - 60 s <= timestamp <= now + 5 s). */
#define DMSG_ENTRY_LIFETIME_NS (60LL * 1000000000LL)
#define DMSG_ENTRY_CLOCK_SKEW_NS (5LL * 1000000000LL)

typedef struct dmsg_entry_client {
    /* The Go nil list: written `null` instead of `[]`. Only meaningful when n_delegated == 0;
     * the two are different signed texts, so a parsed entry keeps the form it arrived in. */
    bool delegated_null;
    size_t n_delegated;
    dmsg_pk delegated[DMSG_ENTRY_DELEGATED_MAX];
} dmsg_entry_client;

typedef struct dmsg_entry_server {
    char address[DMSG_ENTRY_TEXT_MAX + 1];        /* "host:port" clients dial */
    /* Newer members (skywire 2024+), written only when non-empty. */
    char address_v6[DMSG_ENTRY_TEXT_MAX + 1];
    char address_udp[DMSG_ENTRY_TEXT_MAX + 1];
    char address_udp_v6[DMSG_ENTRY_TEXT_MAX + 1];
    char address_ws[DMSG_ENTRY_TEXT_MAX + 1];
    int64_t available_sessions;                   /* may be 0 or negative; always written */
    char server_type[DMSG_ENTRY_TEXT_MAX + 1];    /* "serverType", newer */
    bool dht_bootstrap;                           /* newer; written only when true */
} dmsg_entry_server;

/* All text members are NUL-terminated. Members after `static` are optional: a part is present
 * when its has_* flag is set, a text member when it is non-empty. */
typedef struct dmsg_entry {
    char version[DMSG_ENTRY_TEXT_MAX + 1];
    uint64_t sequence;
    int64_t timestamp;                            /* Unix time in nanoseconds */
    dmsg_pk static_pk;                            /* the null key when absent */
    bool has_client;
    dmsg_entry_client client;
    char client_type[DMSG_ENTRY_TEXT_MAX + 1];    /* newer; e.g. "visor" */
    bool has_server;
    dmsg_entry_server server;
    char signature[DMSG_ENTRY_TEXT_MAX + 1];      /* hex text as received; "" = unsigned */
    char protocol[DMSG_ENTRY_TEXT_MAX + 1];       /* newest; written after the signature */
} dmsg_entry;

/* ---------------------------------------------------------------------------------------------
 * Building, writing, signing */

/* A fresh entry: version "0.0.1", the given key, sequence and time, no parts, unsigned. */
void dmsg_entry_init(dmsg_entry *e, const dmsg_pk *pk, uint64_t sequence, int64_t timestamp_ns);
/* Adds (or replaces) the server part. DMSG_ETOOBIG for an address over DMSG_ENTRY_TEXT_MAX. */
int dmsg_entry_set_server(dmsg_entry *e, const char *address, int64_t available_sessions);
/* Adds (or replaces) the client part with n delegated servers; n == 0 gives `[]`, as the Go
 * client sends before its first session. DMSG_ETOOBIG over DMSG_ENTRY_DELEGATED_MAX. */
int dmsg_entry_set_client(dmsg_entry *e, const dmsg_pk *delegated, size_t n);
/* Copies text into one of the entry's text members. DMSG_ETOOBIG when it does not fit. */
int dmsg_entry_set_text(char field[DMSG_ENTRY_TEXT_MAX + 1], const char *text);

/* Canonical JSON of e into out (not NUL-terminated); *len gets its length. Without
 * with_signature the signature member is left out: those are the signed bytes. When out is NULL
 * or cap is too small, returns DMSG_ETOOBIG with *len set to the size needed. */
int dmsg_entry_write(const dmsg_entry *e, bool with_signature, char *out, size_t cap,
                     size_t *len);

/* Signs e with sk (clearing any previous signature first) and stores the 130-char lowercase
 * hex signature. The key is not checked against e->static_pk. Refuses (DMSG_EINVAL) an entry
 * with a text member outside printable ASCII: Go's encoders disagree on how to write such text,
 * so it is never published. DMSG_EKEY for an invalid sk. */
int dmsg_entry_sign(dmsg_entry *e, const dmsg_sk *sk);

/* Checks e's signature against e->static_pk over e's canonical text, as the discovery does.
 * 0, DMSG_EHEX (signature is not 130 hex characters), DMSG_ESIG or DMSG_EKEY (static key). */
int dmsg_entry_verify(const dmsg_entry *e);

/* ---------------------------------------------------------------------------------------------
 * Parsing */

/* Decodes the first JSON value of json[0..len) into e (see the top of this file for the
 * rules). `null` and `{}` give an all-zero entry. Errors: DMSG_EPROTO (not JSON, wrong member
 * type, integer out of range), DMSG_EHEX / DMSG_EKEY (a key that is not hex / not a curve
 * point), DMSG_ETOOBIG, DMSG_EDEPTH. On error e holds partial data. */
int dmsg_entry_parse(dmsg_entry *e, const char *json, size_t len);

/* A public key as the reference reads it from text (JSON members and URL paths): a text of
 * only '0' characters, the empty text included, is the null key; anything else must be
 * exactly 66 hex characters (either case) of a valid compressed point. 0, DMSG_EHEX or
 * DMSG_EKEY. (The Go discovery answers 400 to bad text and 500 to a non-point.) */
int dmsg_entry_pk_parse(dmsg_pk *pk, const char *text, size_t len);

/* Walks a JSON array of entries (the available_servers / all_servers reply) one element at a
 * time, so that no list is ever held in memory. `null` is an empty list. */
typedef struct dmsg_entry_iter {
    const char *json;
    size_t len;
    size_t pos;
    bool done;
} dmsg_entry_iter;

/* 0, or DMSG_EPROTO when the value is neither an array nor null. */
int dmsg_entry_iter_init(dmsg_entry_iter *it, const char *json, size_t len);
/* 1 with the next entry in e, 0 at the end, or a parse error (a `null` element is DMSG_EPROTO).
 * After an error every later call returns the same error class, DMSG_EPROTO. */
int dmsg_entry_iter_next(dmsg_entry_iter *it, dmsg_entry *e);

/* ---------------------------------------------------------------------------------------------
 * What a discovery answers. Every outcome of the reference handlers has a code here, carrying
 * the HTTP status and the exact `message` text of its JSON reply. */

typedef enum dmsg_disc_result {
    DMSG_DISC_OK = 0,                 /* checks passed; the handler continues */
    DMSG_DISC_ENTRY_SET,              /* 200 wrote a new entry */
    DMSG_DISC_ENTRY_UPDATED,          /* 200 wrote new entry iteration */
    DMSG_DISC_ENTRY_DELETED,          /* 200 deleted entry */
    DMSG_DISC_BAD_INPUT,              /* 400 error bad input */
    DMSG_DISC_UNAUTHORIZED,           /* 401 invalid signature */
    DMSG_DISC_KEY_NOT_FOUND,          /* 404 entry of public key is not found */
    DMSG_DISC_NO_AVAILABLE_SERVERS,   /* 404 no delegated dmsg servers available for remote */
    DMSG_DISC_UNEXPECTED,             /* 500 something unexpected happened */
    /* 422 "entry validation error: <cause>" */
    DMSG_DISC_NON_ZERO_SEQUENCE,      /* (known to clients, never sent by the 2023 discovery) */
    DMSG_DISC_NIL_EPHEMERALS,         /* (idem) */
    DMSG_DISC_NIL_KEYS,
    DMSG_DISC_NON_NIL_EPHEMERALS,     /* (idem) */
    DMSG_DISC_NO_SIGNATURE,
    DMSG_DISC_NO_VERSION,
    DMSG_DISC_NO_CLIENT_OR_SERVER,
    DMSG_DISC_WRONG_SEQUENCE,
    DMSG_DISC_WRONG_TIME,
    DMSG_DISC_OUTDATED_TIME,
    DMSG_DISC_LOOPBACK_ADDRESS,
    DMSG_DISC_EMPTY_SERVER_ADDRESS,
    DMSG_DISC_RESULT_COUNT
} dmsg_disc_result;

/* HTTP status of r (200 for DMSG_DISC_OK). */
int dmsg_disc_result_status(dmsg_disc_result r);
/* The exact message text ("" for DMSG_DISC_OK). */
const char *dmsg_disc_result_message(dmsg_disc_result r);
/* How the Go client reads an error reply: the result whose message equals the text, or
 * DMSG_DISC_UNEXPECTED for any other text. */
dmsg_disc_result dmsg_disc_result_from_message(const char *message, size_t len);
/* The reply body {"message":"<text>","code":<status>}, as the discovery writes it. Same
 * buffer contract as dmsg_entry_write. */
int dmsg_disc_reply_write(dmsg_disc_result r, char *out, size_t cap, size_t *len);

typedef enum dmsg_disc_op { DMSG_DISC_OP_POST, DMSG_DISC_OP_DELETE } dmsg_disc_op;

/* Steps 1-4 of the reference handler for `POST /dmsg-discovery/entry/` (op POST) or
 * `DELETE /dmsg-discovery/entry` (op DELETE), in its order: decode (UNEXPECTED), loopback or
 * empty server host (POST only, skipped in test_mode), Validate (the timestamp window only for
 * entries without a client part), signature (UNAUTHORIZED). Fills e with the decoded entry and
 * returns DMSG_DISC_OK when every check passed; the caller then looks up the stored entry and,
 * for a POST over an existing one, calls dmsg_disc_check_iteration. */
dmsg_disc_result dmsg_disc_check_body(dmsg_entry *e, const char *body, size_t len,
                                      dmsg_disc_op op, bool test_mode, int64_t now_ns);

/* Step 6: next must have a greater sequence than stored (WRONG_SEQUENCE) and a timestamp not
 * earlier (WRONG_TIME); else DMSG_DISC_ENTRY_UPDATED. */
dmsg_disc_result dmsg_disc_check_iteration(const dmsg_entry *stored, const dmsg_entry *next);

/* The reference's production-mode address check: true when "host:port" splits (Go's
 * net.SplitHostPort rules) and the host is empty or a loopback IP literal. Text that does not
 * split, and host names, are not loopback. */
bool dmsg_disc_address_is_loopback(const char *address);

/* The timestamp window of Validate. */
bool dmsg_disc_timestamp_fresh(int64_t timestamp_ns, int64_t now_ns);

#endif
