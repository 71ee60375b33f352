/* The end-to-end part of a DMSG stream, between the two clients (spec dmsg-wire.md §5-§7):
 * the Noise KK handshake carried inside the signed StreamRequest / StreamResponse, and the
 * framed, encrypted data that follows.
 *
 * Pure: bytes in, bytes out; time and randomness are arguments. The libuv client (client.h)
 * drives these objects from its stream callbacks.
 *
 * Data path: the writer side is dmsg_noise_seal_stream() (chunks of <= 4070 bytes, nonces
 * 1, 2, 3...). The reader below reassembles frames split anywhere, refuses bodies over 4094
 * bytes, requires strictly increasing nonces (gaps allowed) and skips empty frames silently,
 * as the reference's reader does. Any error is permanent: the stream must be dropped. */
#ifndef DMSG_E2E_H
#define DMSG_E2E_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/cipher.h"
#include "dmsg/noise.h"
#include "dmsg/rng.h"
#include "dmsg/wire.h"

/* ---------------------------------------------------------------------------------------------
 * Handshake: what the dialing and the listening client put into and take out of the signed
 * objects. The session encryption of the objects (per hop) is the caller's business. */

/* Room for the objects we make: a request is 347 bytes, a response at most 302 (§6.1). */
#define DMSG_E2E_OBJECT_MAX 1024

typedef struct dmsg_e2e_dialer {
    dmsg_noise_hs hs;                  /* KK initiator */
    dmsg_stream_request req;           /* req.raw points at obj */
    uint8_t obj[DMSG_E2E_OBJECT_MAX];  /* the signed request: send these bytes */
    size_t obj_len;
} dmsg_e2e_dialer;

/* Starts a dial from src (our key and source port) to dst: KK message 1 with an ephemeral key
 * from rng, inside a StreamRequest stamped now_ns and signed with sk. The SignedObject to send
 * is d->obj[0..d->obj_len). DMSG_EINVAL for a zero port, DMSG_EKEY for a bad key. */
int dmsg_e2e_dial_begin(dmsg_e2e_dialer *d, const dmsg_addr *src, const dmsg_sk *sk,
                        const dmsg_addr *dst, int64_t now_ns, const dmsg_rng *rng);

/* Checks the response SignedObject obj (as the reference's dialer does: parse, ReqHash,
 * signature by the destination, Accepted) and finishes KK with its message 2; on success tx/rx
 * are the stream's keys (we send with k1, receive in increasing order). DMSG_EWIRE with
 * *wire_code for a refusal (the responder's code, 352 when unknown) or a bad object (350, 351,
 * 370); DMSG_EGOB... for undecodable gob; a noise error (DMSG_EMAC, DMSG_EKEY, DMSG_ESHORT)
 * when message 2 is not valid. The handshake secrets are wiped either way. */
int dmsg_e2e_dial_finish(dmsg_e2e_dialer *d, const uint8_t *obj, size_t len, dmsg_noise_tx *tx,
                         dmsg_noise_rx *rx, uint16_t *wire_code);

void dmsg_e2e_dialer_wipe(dmsg_e2e_dialer *d);

/* Listener: parses and verifies a received request as the reference's listening client does
 * (Verify with lastTimestamp 0, then DstAddr.PK == ours: 303). req's views point into obj.
 * DMSG_EWIRE with *wire_code, or a gob error. */
int dmsg_e2e_request_check(dmsg_stream_request *req, const uint8_t *obj, size_t len,
                           const dmsg_pk *our_pk, uint16_t *wire_code);

/* Accepts a checked request: KK responder (our static sk, the source's key), reads message 1,
 * writes message 2 into a signed StreamResponse (Accepted) in out. tx/rx get the stream's keys
 * (we send with k2). A noise error when message 1 is not valid (nothing is written then). */
int dmsg_e2e_accept(const dmsg_stream_request *req, const dmsg_sk *sk, const dmsg_rng *rng,
                    uint8_t *out, size_t cap, size_t *out_len, dmsg_noise_tx *tx,
                    dmsg_noise_rx *rx);

/* A signed refusal: Accepted false with code (e.g. 306 no listener), no noise message. A Go
 * dialer reports it as the reference's error for the code. */
int dmsg_e2e_refuse(const dmsg_stream_request *req, const dmsg_sk *sk, uint16_t code,
                    uint8_t *out, size_t cap, size_t *out_len);

/* ---------------------------------------------------------------------------------------------
 * Reader */

typedef struct dmsg_e2e_reader {
    dmsg_noise_rx rx;
    dmsg_noise_framer framer;
    uint8_t partial[DMSG_NOISE_FRAME_MAX]; /* a body that straddles inputs */
    int err;                               /* sticky: the first error seen */
} dmsg_e2e_reader;

/* Takes over rx (the KK receive side; it must be DMSG_NOISE_INCREASING, else DMSG_EINVAL). */
int dmsg_e2e_reader_init(dmsg_e2e_reader *r, const dmsg_noise_rx *rx);

/* Decrypts the complete frames of in[0..len) into out while a whole frame's plaintext
 * (DMSG_NOISE_CHUNK_MAX) still fits; a frame's tail is kept for the next call. *consumed gets
 * the input bytes used (less than len only when out filled up: call again after draining it),
 * *out_len the plaintext written. 0, or DMSG_ETOOBIG (frame over 4094), DMSG_ESHORT (body under
 * 24 bytes), DMSG_ENONCE, DMSG_EMAC; errors are sticky. cap must be >= DMSG_NOISE_CHUNK_MAX. */
int dmsg_e2e_reader_feed(dmsg_e2e_reader *r, const uint8_t *in, size_t len, size_t *consumed,
                         uint8_t *out, size_t cap, size_t *out_len);

/* Bytes of an unfinished frame held (non-zero at the peer's EOF means a truncated stream). */
size_t dmsg_e2e_reader_pending(const dmsg_e2e_reader *r);

void dmsg_e2e_reader_wipe(dmsg_e2e_reader *r);

#endif
