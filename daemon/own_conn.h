/* The server's own end of an end-to-end stream: a StreamRequest to our key that the relay hands
 * to an in-process service (relay_hooks.own_service) is answered here with our signed
 * StreamResponse (Noise KK message 2) on the dialer's stream, and the stream's encrypted frames
 * are opened and sealed in-process: no TCP connection or handshake to ourselves.
 *
 * Lifetimes: on_close runs exactly once (from the loop, never from inside an own_conn call) and
 * the conn is freed right after it returns. Plaintext handed to on_data is valid during the
 * call only. Input is taken at once (the services bound their own buffers), so window credit
 * goes back as frames are opened. */
#ifndef DMSGD_OWN_CONN_H
#define DMSGD_OWN_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "dmsg/session.h"
#include "dmsg/wire.h"
#include "relay.h"

struct own_conn;

struct own_conn_callbacks {
    void (*on_data)(struct own_conn *c, const uint8_t *data, size_t len, void *ctx);
    void (*on_eof)(struct own_conn *c, void *ctx);          /* the dialer's FIN; may be NULL */
    void (*on_close)(struct own_conn *c, int err, void *ctx); /* gone: freed after return */
};

/* Verifies req as a listening client does, answers it with our KK message 2 and takes the
 * stream (the relay's own_service hook then returns 0). Early bytes are copied and handed out
 * from the loop. Returns 0, or a wire code for the relay to refuse with (e.g. 303, or 306 when
 * something fails locally). */
uint16_t own_conn_accept(uv_loop_t *loop, const dmsg_identity *id,
                         const struct relay_own_request *req,
                         const struct own_conn_callbacks *cb, void *ctx, struct own_conn **out);

/* Dials dst from our key (src port src_port, non-zero) over session via: our signed request
 * with KK message 1 goes out on a new stream of via (the destination's own session on this
 * server, or a mesh peer's), and the signed response must arrive within timeout_ms.
 * on_dialed runs exactly once from the loop: err 0 (the conn is usable), DMSG_EWIRE with the
 * wire code of a refusal, DMSG_ETIMEOUT, DMSG_ECLOSED; on an error on_close does not follow
 * and the caller must forget the conn (it frees itself once its stream is gone: at once, or
 * after a FIN and a few seconds' linger when it timed out). Own_conn_close (FIN) is safe while
 * dialing; a reset there would end a reference visor's whole session.
 * Returns 0 or an error (nothing started). */
typedef void (*own_conn_dialed_fn)(struct own_conn *c, int err, uint16_t wire_code, void *ctx);
int own_conn_dial(uv_loop_t *loop, const dmsg_identity *id, dmsg_session *via,
                  const dmsg_addr *dst, uint16_t src_port, uint32_t timeout_ms,
                  own_conn_dialed_fn on_dialed, const struct own_conn_callbacks *cb, void *ctx,
                  struct own_conn **out);

/* Encrypts and queues len bytes (copied). DMSG_ECLOSED once closing. */
int own_conn_write(struct own_conn *c, const uint8_t *data, size_t len);
/* FIN after the queued data. */
int own_conn_close(struct own_conn *c);
/* RST now; on_close follows from the loop. */
void own_conn_reset(struct own_conn *c);
size_t own_conn_write_queued(const struct own_conn *c);
const dmsg_pk *own_conn_remote_pk(const struct own_conn *c);
uint16_t own_conn_remote_port(const struct own_conn *c);

/* The conn as the admin API lists streams: id is the owner's (relay_own_request.link_id, or
 * relay_next_link_id for a dial), local_pk our key; path "service", pending while dialing,
 * closing once our FIN or reset went out; bytes are those of the encrypted stream after the
 * handshake, as the relay counts them. */
void own_conn_link_info(const struct own_conn *c, uint64_t id, const dmsg_pk *local_pk,
                        struct relay_link_info *out);

#endif
