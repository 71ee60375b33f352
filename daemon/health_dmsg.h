/* HTTP/1.1 `GET /health` on the server's own DMSG port 80: the reference's health response
 * (build_info, started_at) plus what an operator wants to see at a glance (status, uptime,
 * sessions, peers, whether route setup is on). One request per stream, answered with
 * Connection: close; a request head larger than HEALTH_DMSG_HEAD_MAX resets the stream. */
#ifndef DMSGD_HEALTH_DMSG_H
#define DMSGD_HEALTH_DMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay.h"

#define HEALTH_DMSG_PORT 80
#define HEALTH_DMSG_HEAD_MAX 4096

struct health_dmsg_info {
    const char *version;
    char started_at[32];          /* RFC 3339, UTC */
    uint64_t uptime_s;
    uint64_t sessions;
    uint64_t peers;
    bool route_setup;
};

/* Fills the figures at the time of a request. */
typedef void (*health_dmsg_fill_fn)(void *ctx, struct health_dmsg_info *info);

/* Takes a stream to our key's port 80 (relay own_service): 0, or a wire code to refuse with. */
uint16_t health_dmsg_accept(uv_loop_t *loop, const dmsg_identity *id,
                            const struct relay_own_request *req, health_dmsg_fill_fn fill,
                            void *ctx);

/* The HTTP response for one request head (exposed for tests): writes into out; returns the
 * length, or 0 when the head is not complete yet ("\r\n\r\n" not seen). */
size_t health_dmsg_respond(const char *head, size_t head_len, const struct health_dmsg_info *info,
                           char *out, size_t cap);

#endif
