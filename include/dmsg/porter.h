/* DMSG port allocator of one client: listening ports and the ephemeral source ports of dials
 * (spec dmsg-wire.md §6.1, §7.4).
 *
 * Port 0 is never valid on the wire, so it is reserved from the start. Ephemeral ports come
 * from 49152-65535 in rotation; the counter is pre-incremented, so the first one handed out is
 * 49153 exactly as in the reference, and after 65535 it wraps back to 49152.
 *
 * Pure: a fixed 8 KiB bitmap the caller embeds; no allocation, no clock. */
#ifndef DMSG_PORTER_H
#define DMSG_PORTER_H

#include <stdbool.h>
#include <stdint.h>

#define DMSG_PORT_EPHEMERAL_MIN 49152u
#define DMSG_PORT_EPHEMERAL_MAX 65535u
#define DMSG_PORT_COUNT 65536u

typedef struct dmsg_porter {
    uint64_t used[DMSG_PORT_COUNT / 64];
    uint32_t next_ephemeral; /* last ephemeral port handed out (starts one below the first) */
    uint32_t n_used;         /* reserved ports, port 0 included */
} dmsg_porter;

void dmsg_porter_init(dmsg_porter *p);

/* Reserves a given port (a listener). DMSG_EINVAL for port 0, DMSG_EEXIST when taken (the
 * reference's "port already occupied", wire code 400). */
int dmsg_porter_reserve(dmsg_porter *p, uint16_t port);

/* Reserves the next free ephemeral port. DMSG_ELIMIT when all 16384 are taken. */
int dmsg_porter_reserve_ephemeral(dmsg_porter *p, uint16_t *port);

/* Frees a port (no effect on port 0 or on a free port). */
void dmsg_porter_release(dmsg_porter *p, uint16_t port);

bool dmsg_porter_in_use(const dmsg_porter *p, uint16_t port);

#endif
