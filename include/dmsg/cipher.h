/* secp256k1 keys, ECDH and recoverable signatures exactly as the DMSG reference computes them.
 *
 * Built on libsecp256k1 and libsodium only. Every function that takes a key from outside
 * validates it; none of them aborts on bad input. */
#ifndef DMSG_CIPHER_H
#define DMSG_CIPHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/rng.h"

#define DMSG_PK_LEN 33      /* SEC1 compressed point */
#define DMSG_SK_LEN 32      /* big-endian scalar, 0 < sk < n */
#define DMSG_SIG_LEN 65     /* r || s || recid (0..3, no +27) */
#define DMSG_SHA256_LEN 32
#define DMSG_ECDH_LEN 32    /* SHA256(compressed shared point) */
#define DMSG_NOISE_DH_LEN 33 /* ECDH || 0x00: the reference's Noise DH output */
#define DMSG_PK_HEX_LEN 66
#define DMSG_SK_HEX_LEN 64
#define DMSG_SIG_HEX_LEN 130

typedef struct dmsg_pk { uint8_t b[DMSG_PK_LEN]; } dmsg_pk;
typedef struct dmsg_sk { uint8_t b[DMSG_SK_LEN]; } dmsg_sk;
typedef struct dmsg_sig { uint8_t b[DMSG_SIG_LEN]; } dmsg_sig;

/* Must be called once before any other function here (initialises libsodium and the shared
 * read-only libsecp256k1 context). Returns 0 or DMSG_EINVAL when libsodium cannot start. */
int dmsg_cipher_init(void);

/* The all-zero key means "no key" in the reference; it is never a valid point. */
bool dmsg_pk_is_null(const dmsg_pk *pk);
bool dmsg_pk_equal(const dmsg_pk *a, const dmsg_pk *b);

/* 0 when pk parses as a compressed point on the curve and re-serialises to the same bytes,
 * else DMSG_EKEY (this includes the null key). */
int dmsg_pk_validate(const dmsg_pk *pk);
/* 0 when 0 < sk < n, else DMSG_EKEY. */
int dmsg_sk_validate(const dmsg_sk *sk);

/* Public key of a valid secret key. */
int dmsg_pk_from_sk(dmsg_pk *pk, const dmsg_sk *sk);

/* Draws a secret key from rng (retrying the vanishingly rare invalid scalar) and its public key. */
int dmsg_keypair_generate(dmsg_pk *pk, dmsg_sk *sk, const dmsg_rng *rng);

/* Hex forms: lowercase, no prefix. out must hold *_HEX_LEN + 1 bytes (NUL-terminated). */
void dmsg_pk_to_hex(const dmsg_pk *pk, char out[DMSG_PK_HEX_LEN + 1]);
void dmsg_sk_to_hex(const dmsg_sk *sk, char out[DMSG_SK_HEX_LEN + 1]);
void dmsg_sig_to_hex(const dmsg_sig *sig, char out[DMSG_SIG_HEX_LEN + 1]);
/* Parse exactly 66 (pk), 64 (sk) or 130 (sig) hex characters of len, either case.
 * A pk string of only '0' characters gives the null key (as the reference does).
 * Returns DMSG_EHEX for bad text. Keys are not validated here: call *_validate. */
int dmsg_pk_from_hex(dmsg_pk *pk, const char *hex, size_t len);
int dmsg_sk_from_hex(dmsg_sk *sk, const char *hex, size_t len);
int dmsg_sig_from_hex(dmsg_sig *sig, const char *hex, size_t len);

/* Generic lowercase hex helpers for any buffer; hex_decode returns the byte count or DMSG_EHEX. */
void dmsg_hex_encode(const uint8_t *in, size_t len, char *out /* 2*len+1 */);
long dmsg_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t cap);

void dmsg_sha256(uint8_t out[DMSG_SHA256_LEN], const uint8_t *in, size_t len);

/* cipher.ECDH of the reference: SHA256(compressed(sk * pk)). DMSG_EKEY for an invalid pk or sk. */
int dmsg_ecdh(uint8_t out[DMSG_ECDH_LEN], const dmsg_sk *sk, const dmsg_pk *pk);
/* The reference's Noise DH: ECDH || 0x00 (33 bytes, all of which feed HKDF). */
int dmsg_noise_dh(uint8_t out[DMSG_NOISE_DH_LEN], const dmsg_sk *sk, const dmsg_pk *pk);

/* Signs SHA256(payload): RFC6979 nonce, low-S, recid 0..3. DMSG_EKEY for an invalid sk,
 * DMSG_EINVAL when the digest is all zero (the reference refuses to sign it). */
int dmsg_sign(dmsg_sig *sig, const dmsg_sk *sk, const uint8_t *payload, size_t len);

/* Verifies as the reference's VerifyPubKeySignedPayload: recid < 4, top bit of s clear,
 * recovery over SHA256(payload) succeeds and gives exactly pk. 0 or DMSG_ESIG (DMSG_EKEY when
 * pk itself is invalid). */
int dmsg_verify(const dmsg_pk *pk, const dmsg_sig *sig, const uint8_t *payload, size_t len);

/* Recovers the signer's key of SHA256(payload). 0 or DMSG_ESIG. */
int dmsg_recover(dmsg_pk *pk, const dmsg_sig *sig, const uint8_t *payload, size_t len);

/* Constant-time equality of two buffers. */
bool dmsg_ct_equal(const uint8_t *a, const uint8_t *b, size_t len);

/* Wipes a secret (sodium_memzero). */
void dmsg_wipe(void *p, size_t len);

#endif
