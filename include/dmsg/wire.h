/* DMSG stream handshake objects: StreamRequest, StreamResponse, SignedObject (dmsg-wire.md §5).
 *
 * A SignedObject is signature(65) || gob bytes; the signature covers SHA256(gob bytes) and is
 * made by the request's source key (requests) or by the request's destination key (responses).
 * A relay parses and verifies both objects but forwards the received bytes verbatim: the parse
 * functions keep a pointer to them in ->raw, and nothing here ever re-encodes a parsed object.
 *
 * Errors: functions return 0 or a negative DMSG_E* code. A failure that the reference reports
 * with a DMSG error code returns DMSG_EWIRE and stores that code (300..370, see enum
 * dmsg_wire_code) in *wire_code; every other failure leaves *wire_code at 0. Parse failures
 * other than the length check are gob errors (see dmsg/gob.h), for which Go has no code either.
 *
 * Newer reference versions added fields (upstream-mesh.md §7): StreamRequest.IPinfo/GeoInfo and
 * StreamResponse.IP/GeoCountry/GeoRegion/GeoLat/GeoLon. They are decoded when present, and sent
 * only when set, so objects without them are byte-identical to the 2023 reference's. */
#ifndef DMSG_WIRE_H
#define DMSG_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/cipher.h"
#include "dmsg/gob.h"

/* ---------------------------------------------------------------------------------------------
 * The reference's error codes (errorCode, uint16) and their texts. */

enum dmsg_wire_code {
    DMSG_WIRE_DISC_ENTRY_NOT_FOUND = 100,
    DMSG_WIRE_DISC_ENTRY_NOT_SERVER = 101,
    DMSG_WIRE_DISC_ENTRY_NOT_CLIENT = 102,
    DMSG_WIRE_DISC_NO_DELEGATED = 103,
    DMSG_WIRE_ENTITY_CLOSED = 200,
    DMSG_WIRE_SESSION_CLOSED = 201,
    DMSG_WIRE_CANNOT_CONNECT_DELEGATED = 202,
    DMSG_WIRE_HANDSHAKE_EXTRA_BYTES = 203,
    DMSG_WIRE_REQ_INVALID_SIG = 300,
    DMSG_WIRE_REQ_INVALID_TIMESTAMP = 301,
    DMSG_WIRE_REQ_INVALID_SRC_PK = 302,
    DMSG_WIRE_REQ_INVALID_DST_PK = 303,
    DMSG_WIRE_REQ_INVALID_SRC_PORT = 304,
    DMSG_WIRE_REQ_INVALID_DST_PORT = 305,
    DMSG_WIRE_REQ_NO_LISTENER = 306,
    DMSG_WIRE_REQ_NO_NEXT_SESSION = 307,
    DMSG_WIRE_RESP_INVALID_SIG = 350,
    DMSG_WIRE_RESP_INVALID_HASH = 351,
    DMSG_WIRE_RESP_NOT_ACCEPTED = 352,
    DMSG_WIRE_SIGNED_OBJECT_INVALID = 370,
    DMSG_WIRE_PORT_OCCUPIED = 400,
    DMSG_WIRE_ACCEPT_CHAN_MAXED = 401
};

/* The reference's message for a code ("request has no associated listener"), or NULL when the
 * reference does not register the code. */
const char *dmsg_wire_error_text(uint16_t code);

/* Whether the reference marks the error temporary (306 and 401). */
bool dmsg_wire_error_is_temporary(uint16_t code);

/* Formats the reference's error text: "dmsg error <code> - <text>", followed by ": <detail>"
 * when detail is not NULL (the reference's wrapped errors). Returns the length written (without
 * the NUL), DMSG_ENOTFOUND for an unregistered code, DMSG_ETOOBIG when cap is too small. */
int dmsg_wire_error_format(char *out, size_t cap, uint16_t code, const char *detail);

/* ---------------------------------------------------------------------------------------------
 * Objects. */

#define DMSG_SIGNED_OBJECT_MIN (DMSG_SIG_LEN + 1)
/* An object travels in a frame whose u16 length also holds a nonce and a tag (§5.1). */
#define DMSG_SIGNED_OBJECT_MAX (65535 - 8 - 16)

typedef struct dmsg_addr {
    dmsg_pk pk;
    uint16_t port;
} dmsg_addr;

typedef struct dmsg_stream_request {
    int64_t timestamp;        /* Unix nanoseconds; must be > 0 */
    dmsg_addr src;
    dmsg_addr dst;
    bool ip_info;             /* newer: "tell me my IP" when dst is the server itself */
    bool geo_info;            /* newer: also the geo fields */
    dmsg_gob_bytes noise_msg; /* KK handshake message 1 */
    /* The SignedObject this request was parsed from or made into: forward these bytes. */
    const uint8_t *raw;
    size_t raw_len;
} dmsg_stream_request;

typedef struct dmsg_stream_response {
    uint8_t req_hash[DMSG_SHA256_LEN]; /* SHA256 of the request's whole SignedObject */
    bool accepted;
    uint16_t err_code;        /* meaningful when !accepted */
    dmsg_gob_bytes noise_msg; /* KK handshake message 2 */
    dmsg_gob_bytes ip;        /* newer: the dialer's IP as text (Go net.IP.MarshalText) */
    dmsg_gob_bytes geo_country;
    dmsg_gob_bytes geo_region;
    double geo_lat;
    double geo_lon;
    const uint8_t *raw;       /* as in dmsg_stream_request */
    size_t raw_len;
} dmsg_stream_response;

/* Gob schemas of the objects, for callers that reuse the types (the RPC codec uses PubKey).
 * The request/response schemas include the newer fields (lenient: a peer that sends them with
 * another Go type is treated like an older peer that does not know them). */
extern const dmsg_gob_type dmsg_gob_pubkey;   /* cipher.PubKey: BinaryMarshaler, 33 bytes */
extern const dmsg_gob_type dmsg_gob_sha256;   /* cipher.SHA256: [32]byte */
extern const dmsg_gob_type dmsg_gob_addr;     /* dmsg.Addr */
extern const dmsg_gob_type dmsg_gob_stream_request;
extern const dmsg_gob_type dmsg_gob_stream_response;

/* Gob encoding alone, as the reference's encodeGob does (one fresh encoder per object). reg
 * stands for the sending process's type registry (see dmsg/gob.h); NULL = a fresh process, which
 * gives the ids of gob.json. The newer fields' definitions are sent only when one is set.
 * DMSG_ETOOBIG when cap is too small; DMSG_EKEY for a key that is neither null nor valid. */
int dmsg_stream_request_encode(const dmsg_stream_request *req, dmsg_gob_registry *reg,
                               uint8_t *out, size_t cap, size_t *out_len);
int dmsg_stream_response_encode(const dmsg_stream_response *resp, dmsg_gob_registry *reg,
                                uint8_t *out, size_t cap, size_t *out_len);

/* Makes a SignedObject into out: sets req->timestamp = now_ns, gob-encodes, signs with sk (which
 * should be the key of req->src.pk), and points req->raw at out. */
int dmsg_stream_request_make(dmsg_stream_request *req, int64_t now_ns, const dmsg_sk *sk,
                             uint8_t *out, size_t cap, size_t *out_len);
/* Same for a response; sk should be the key of the request's destination. */
int dmsg_stream_response_make(dmsg_stream_response *resp, const dmsg_sk *sk, uint8_t *out,
                              size_t cap, size_t *out_len);

/* Parses a received SignedObject (len <= 65 is wire code 370). Only the gob part is decoded and
 * nothing is verified; req's views and ->raw point into obj, which must outlive req. */
int dmsg_stream_request_parse(dmsg_stream_request *req, const uint8_t *obj, size_t len,
                              uint16_t *wire_code);
int dmsg_stream_response_parse(dmsg_stream_response *resp, const uint8_t *obj, size_t len,
                               uint16_t *wire_code);

/* StreamRequest.Verify in the reference's order: 302 null source key, 304 source port 0, 303 null
 * destination key, 305 destination port 0, 301 timestamp <= 0, 300 signature does not recover
 * to the source key. Then, when given: 302 unless the source key is expect_src (a server checks
 * this on client sessions: the session's key; peer sessions relay foreign sources, pass NULL),
 * and 303 unless the destination key is expect_dst (the listening client's own key). */
int dmsg_stream_request_verify(const dmsg_stream_request *req, const dmsg_pk *expect_src,
                               const dmsg_pk *expect_dst, uint16_t *wire_code);

/* StreamResponse.Verify: 351 unless req_hash == SHA256(req->raw), 350 unless signed by
 * req->dst.pk, then if not accepted: err_code when the reference registers it, else 352. */
int dmsg_stream_response_verify(const dmsg_stream_response *resp,
                                const dmsg_stream_request *req, uint16_t *wire_code);

/* SHA256 of a whole SignedObject (signature included): the ReqHash of its response. */
void dmsg_signed_object_hash(uint8_t out[DMSG_SHA256_LEN], const uint8_t *obj, size_t len);

/* ---------------------------------------------------------------------------------------------
 * IP text for the IPinfo response (Go net.IP text forms). */

#define DMSG_IP_TEXT_MAX 46 /* INET6_ADDRSTRLEN, NUL included */

/* 4 or 16 address bytes to Go's text (IPv4-mapped addresses print dotted). Returns the length
 * or DMSG_EINVAL for another length. */
int dmsg_ip_to_text(char out[DMSG_IP_TEXT_MAX], const uint8_t *ip, size_t len);

/* Text to address bytes: 4 for dotted IPv4, 16 otherwise; DMSG_EINVAL when not an address. */
int dmsg_ip_from_text(uint8_t out[16], size_t *out_len, const uint8_t *text, size_t len);

#endif
