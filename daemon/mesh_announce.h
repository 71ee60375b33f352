/* PeerAnnounce: the object newer reference servers send first on the peer links they dial, and
 * its answer (upstream-mesh.md §2-3).
 *
 * The announce is a SignedObject (signature(65) || gob) of the Go struct
 *   PeerAnnounce { Timestamp int64 (Unix ns); SrcPK cipher.PubKey }
 * signed by SrcPK. It is valid on a session when SrcPK is the session's authenticated remote key
 * and the signature recovers to it. The answer is an ordinary StreamResponse signed by the
 * receiving server: ReqHash = SHA256(the announce SignedObject), Accepted = whether the receiver
 * now treats the session as a peer.
 *
 * Pure functions: no clock (time is an argument), no allocation. */
#ifndef DMSGD_MESH_ANNOUNCE_H
#define DMSGD_MESH_ANNOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/cipher.h"

#define MESH_ANNOUNCE_MAX 512   /* an announce is about 170 bytes; a little room for growth */
#define MESH_ANSWER_MAX 2048    /* a StreamResponse without noise payload is about 150 bytes */

/* Makes our announce into out. DMSG_ETOOBIG when cap is too small, DMSG_EKEY for a bad key. */
int mesh_announce_make(const dmsg_pk *pk, const dmsg_sk *sk, int64_t now_ns, uint8_t *out,
                       size_t cap, size_t *out_len);

/* Checks that obj is a PeerAnnounce signed by session_pk. 0 when it is (*timestamp_ns, may be
 * NULL, gets its Timestamp); DMSG_ESHORT (too short to be a SignedObject), a gob error (not
 * this struct), DMSG_EKEY (SrcPK missing or not the session's key), DMSG_EINVAL (Timestamp <= 0)
 * or DMSG_ESIG (bad signature). */
int mesh_announce_parse(const uint8_t *obj, size_t len, const dmsg_pk *session_pk,
                        int64_t *timestamp_ns);

/* The signed answer to the announce obj: a StreamResponse carrying its hash. */
int mesh_announce_answer(const uint8_t *obj, size_t len, bool accepted, const dmsg_sk *sk,
                         uint8_t *out, size_t cap, size_t *out_len);

/* Checks the answer resp to our announce ann, which remote_pk must have signed. 0 with
 * *accepted set; a gob error, DMSG_ESHORT, DMSG_EMAC (ReqHash is not our announce's) or
 * DMSG_ESIG (not signed by remote_pk). */
int mesh_announce_check_answer(const uint8_t *resp, size_t resp_len, const uint8_t *ann,
                               size_t ann_len, const dmsg_pk *remote_pk, bool *accepted);

#endif
