/* Noise handshakes (XK for sessions, KK for end-to-end streams) and dmsg's transport framing.
 *
 * Three independent pieces, each usable from a TCP read callback:
 *   - dmsg_noise_hs:     the handshake state machine; ends in a dmsg_noise_tx/rx key pair.
 *   - dmsg_noise_tx/rx:  per-direction ChaCha20-Poly1305 with dmsg's explicit 8-byte nonce;
 *                        body = BE64(N) || ct || tag, AEAD nonce = 00000000 || LE64(N), ad empty.
 *   - dmsg_noise_framer: reassembles u16-BE-length-prefixed frames from arbitrary chunks.
 *
 * Nothing here allocates or draws randomness on its own. Struct fields are private: they are
 * in the header only so callers can embed the objects. Secrets are wiped by the *_wipe calls and
 * whenever a handshake fails. */
#ifndef DMSG_NOISE_H
#define DMSG_NOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/cipher.h"
#include "dmsg/rng.h"

#define DMSG_NOISE_KEY_LEN 32
#define DMSG_NOISE_HASH_LEN 32
#define DMSG_NOISE_TAG_LEN 16
#define DMSG_NOISE_NONCE_LEN 8                           /* explicit BE64 nonce on the wire */
#define DMSG_NOISE_OVERHEAD (DMSG_NOISE_NONCE_LEN + DMSG_NOISE_TAG_LEN) /* 24 per sealed body */
#define DMSG_NOISE_LEN_PREFIX 2                          /* u16 BE frame length */
#define DMSG_NOISE_FRAMED_OVERHEAD (DMSG_NOISE_LEN_PREFIX + DMSG_NOISE_OVERHEAD) /* 26 */
#define DMSG_NOISE_FRAME_MAX 4094      /* body limit of handshake and end-to-end frames */
#define DMSG_NOISE_OBJECT_FRAME_MAX 65535 /* body limit of session-object frames */
#define DMSG_NOISE_CHUNK_MAX 4070      /* plaintext per end-to-end frame: 4094 - 24 */
#define DMSG_NOISE_HS_MSG_MAX 65       /* longest handshake message we write (XK message 3) */
#define DMSG_NOISE_REPLAY_WINDOW 1024  /* session objects: n passes once if top - n < 1024 */

/* ---------------------------------------------------------------------------------------------
 * Transport */

typedef struct dmsg_noise_tx {
    uint8_t key[DMSG_NOISE_KEY_LEN];
    uint64_t counter; /* last nonce used; pre-incremented, so the first frame carries 1 */
} dmsg_noise_tx;

typedef enum dmsg_noise_order {
    DMSG_NOISE_ANY_ORDER,  /* session objects: each nonce once, within the replay window */
    DMSG_NOISE_INCREASING  /* end-to-end data: each nonce greater than the last, gaps allowed */
} dmsg_noise_order;

#define DMSG_NOISE_WINDOW_WORDS (DMSG_NOISE_REPLAY_WINDOW / 64 + 1) /* +1: whole-word sliding */

typedef struct dmsg_noise_rx {
    uint8_t key[DMSG_NOISE_KEY_LEN];
    uint64_t top; /* highest (ANY_ORDER) or last (INCREASING) accepted nonce; 0 = none yet */
    uint64_t seen[DMSG_NOISE_WINDOW_WORDS];
    uint8_t order;
} dmsg_noise_rx;

/* A sending direction with key, counter at 0 (dmsg_noise_hs_split does this for you). */
void dmsg_noise_tx_init(dmsg_noise_tx *tx, const uint8_t key[DMSG_NOISE_KEY_LEN]);
/* A receiving direction with key and nonce rule, nothing accepted yet. */
void dmsg_noise_rx_init(dmsg_noise_rx *rx, const uint8_t key[DMSG_NOISE_KEY_LEN],
                        dmsg_noise_order order);
/* Wipe the key and state when the connection or stream ends. */
void dmsg_noise_tx_wipe(dmsg_noise_tx *tx);
void dmsg_noise_rx_wipe(dmsg_noise_rx *rx);

/* Seals pt into out as BE64(N) || ct || tag (len + 24 bytes). In place when
 * pt == out + DMSG_NOISE_NONCE_LEN; otherwise pt must not overlap out.
 * DMSG_EINVAL when cap is too small, DMSG_ELIMIT when the counter is exhausted. */
int dmsg_noise_seal(dmsg_noise_tx *tx, const uint8_t *pt, size_t len, uint8_t *out, size_t cap,
                    size_t *out_len);

/* Same, prefixed with the u16 BE body length (len + 26 bytes). In place when
 * pt == out + DMSG_NOISE_LEN_PREFIX + DMSG_NOISE_NONCE_LEN. DMSG_ETOOBIG when the body would
 * exceed 65535 bytes. */
int dmsg_noise_seal_framed(dmsg_noise_tx *tx, const uint8_t *pt, size_t len, uint8_t *out,
                           size_t cap, size_t *out_len);

/* End-to-end writer: frames pt as ceil(len / 4070) frames of at most 4070 plaintext bytes each
 * (u16 len || BE64 N || ct || tag, len <= 4094) into out, which pt must not overlap.
 * Nothing is written for len 0.
 * dmsg_noise_stream_sealed_len gives the bytes needed (0 when it would overflow size_t). */
size_t dmsg_noise_stream_sealed_len(size_t len);
int dmsg_noise_seal_stream(dmsg_noise_tx *tx, const uint8_t *pt, size_t len, uint8_t *out,
                           size_t cap, size_t *out_len);

/* Opens one frame body (BE64 N || ct || tag, no length prefix) in place: on success the
 * plaintext is at *pt (= body + 8), *pt_len = len - 24. DMSG_ESHORT under 24 bytes,
 * DMSG_EREPLAY / DMSG_ENONCE per the rx order, DMSG_EMAC bad tag (the ciphertext is then zeroed).
 * rx changes only on success. */
int dmsg_noise_open(dmsg_noise_rx *rx, uint8_t *body, size_t len, uint8_t **pt, size_t *pt_len);

/* Same, decrypting into out (cap >= len - 24) and leaving body untouched. */
int dmsg_noise_open_to(dmsg_noise_rx *rx, const uint8_t *body, size_t len, uint8_t *out,
                       size_t cap, size_t *pt_len);

/* ---------------------------------------------------------------------------------------------
 * Handshake */

typedef enum dmsg_noise_pattern {
    DMSG_NOISE_XK, /* session: client = initiator, server = responder (static known to client) */
    DMSG_NOISE_KK  /* end-to-end stream: dialer = initiator, both statics known in advance */
} dmsg_noise_pattern;

typedef enum dmsg_noise_role { DMSG_NOISE_INITIATOR, DMSG_NOISE_RESPONDER } dmsg_noise_role;

/* What the handshake expects next (dmsg_noise_hs_next). */
typedef enum dmsg_noise_step {
    DMSG_NOISE_STEP_WRITE,  /* call dmsg_noise_hs_write[_framed] and send the result */
    DMSG_NOISE_STEP_READ,   /* feed the peer's next message to dmsg_noise_hs_read */
    DMSG_NOISE_STEP_SPLIT,  /* complete: call dmsg_noise_hs_split */
    DMSG_NOISE_STEP_DONE,   /* split done; only the hash and remote static remain */
    DMSG_NOISE_STEP_FAILED  /* an error occurred or the state was wiped; secrets are gone */
} dmsg_noise_step;

typedef struct dmsg_noise_hs {
    uint8_t ck[DMSG_NOISE_HASH_LEN];
    uint8_t h[DMSG_NOISE_HASH_LEN];
    uint8_t k[DMSG_NOISE_KEY_LEN];
    uint64_t n;
    bool has_k;
    dmsg_sk s_sk, e_sk;  /* local static and ephemeral */
    dmsg_pk s_pk, e_pk;
    dmsg_pk rs, re;      /* remote static and ephemeral */
    bool has_rs;
    uint8_t pattern, role, msg_index, step;
} dmsg_noise_hs;

/* Starts a handshake with our static secret and, when known in advance, the peer's static key
 * (XK initiator, KK both; NULL for the XK responder). Our ephemeral is drawn from rng now.
 * DMSG_EKEY for an invalid key, DMSG_EINVAL for a missing or superfluous remote static. */
int dmsg_noise_hs_init(dmsg_noise_hs *hs, dmsg_noise_pattern pattern, dmsg_noise_role role,
                       const dmsg_sk *local_static, const dmsg_pk *remote_static,
                       const dmsg_rng *rng);

/* What to do next. */
dmsg_noise_step dmsg_noise_hs_next(const dmsg_noise_hs *hs);

/* Writes our next message (empty payload) to out; *out_len gets its length (<= 65 bytes).
 * The _framed variant prefixes the u16 BE length, as on a TCP session. DMSG_ESTATE when it is
 * not our turn, DMSG_EINVAL when cap is too small. */
int dmsg_noise_hs_write(dmsg_noise_hs *hs, uint8_t *out, size_t cap, size_t *out_len);
int dmsg_noise_hs_write_framed(dmsg_noise_hs *hs, uint8_t *out, size_t cap, size_t *out_len);

/* Reads the peer's next message (without length prefix). Any payload up to the frame limit is
 * authenticated and ignored (newer peers offer ML-KEM there; we stay classical).
 * DMSG_ESHORT truncated, DMSG_ETOOBIG over 4094 bytes, DMSG_EKEY invalid curve point,
 * DMSG_EMAC bad tag, DMSG_ESTATE not our turn. Any error ends the handshake. */
int dmsg_noise_hs_read(dmsg_noise_hs *hs, const uint8_t *msg, size_t len);

/* Derives the transport keys with dmsg's assignment (the writer of the final message sends with
 * k2: XK initiator sends k2, KK initiator sends k1) and wipes the handshake secrets. rx gets
 * the pattern's receive rule: XK (session objects) any order with a replay window, KK (stream
 * data) strictly increasing. */
int dmsg_noise_hs_split(dmsg_noise_hs *hs, dmsg_noise_tx *tx, dmsg_noise_rx *rx);

/* The peer's static key: known from the start, or for the XK responder once message 3 was read.
 * DMSG_ESTATE before that. */
int dmsg_noise_hs_remote_static(const dmsg_noise_hs *hs, dmsg_pk *out);

/* The handshake hash h (final once the handshake is complete; kept after split). */
void dmsg_noise_hs_hash(const dmsg_noise_hs *hs, uint8_t out[DMSG_NOISE_HASH_LEN]);

/* The chaining key ck, for known-answer tests and diagnostics (zero after split). */
void dmsg_noise_hs_chaining_key(const dmsg_noise_hs *hs, uint8_t out[DMSG_NOISE_HASH_LEN]);

/* Wipes every secret; the handshake becomes FAILED (use when abandoning it). */
void dmsg_noise_hs_wipe(dmsg_noise_hs *hs);

/* ---------------------------------------------------------------------------------------------
 * Frame parser: u16 BE length || body, fed in chunks split anywhere. */

typedef struct dmsg_noise_framer {
    uint8_t *buf;      /* caller's buffer for bodies that arrive in pieces */
    size_t cap;
    size_t max;        /* largest body accepted */
    size_t body_len;   /* of the frame in progress, once its header is complete */
    size_t have;       /* body bytes buffered so far */
    uint8_t hdr[DMSG_NOISE_LEN_PREFIX];
    uint8_t hdr_have;
    bool failed;
} dmsg_noise_framer;

/* max is the largest body accepted (DMSG_NOISE_FRAME_MAX or DMSG_NOISE_OBJECT_FRAME_MAX);
 * buf (cap >= max) holds a body that arrives in pieces. DMSG_EINVAL otherwise. */
int dmsg_noise_framer_init(dmsg_noise_framer *fr, size_t max, uint8_t *buf, size_t cap);

/* Consumes input up to the end of the next frame and sets *consumed to the bytes used.
 * Returns 0 with *frame / *frame_len set to the body: it points into in when the body was
 * contiguous there, else into the framer's buffer; either way it is writable (open it in place)
 * and valid until the next call. DMSG_EAGAIN when all input was taken without completing a
 * frame. DMSG_ETOOBIG when a length exceeds max; after that every call gives DMSG_ESTATE.
 * Call again with in + *consumed while bytes remain; the bytes after the last frame you want
 * (e.g. yamux after handshake message 3) are left for the caller. */
int dmsg_noise_framer_next(dmsg_noise_framer *fr, uint8_t *in, size_t len, size_t *consumed,
                           uint8_t **frame, size_t *frame_len);

/* Bytes of an unfinished frame held so far (non-zero at EOF means a truncated frame). */
size_t dmsg_noise_framer_pending(const dmsg_noise_framer *fr);

#endif
