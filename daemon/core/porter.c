/* Port allocator: a bitmap over the 16-bit DMSG port space (see include/dmsg/porter.h). */
#include "dmsg/porter.h"

#include <string.h>

#include "dmsg/error.h"

static bool bit_get(const dmsg_porter *p, uint16_t port)
{
    return (p->used[port / 64] >> (port % 64)) & 1u;
}

static void bit_set(dmsg_porter *p, uint16_t port)
{
    p->used[port / 64] |= (uint64_t)1 << (port % 64);
    p->n_used++;
}

void dmsg_porter_init(dmsg_porter *p)
{
    memset(p, 0, sizeof *p);
    bit_set(p, 0);
    p->next_ephemeral = DMSG_PORT_EPHEMERAL_MIN;
}

int dmsg_porter_reserve(dmsg_porter *p, uint16_t port)
{
    if (port == 0)
        return DMSG_EINVAL;
    if (bit_get(p, port))
        return DMSG_EEXIST;
    bit_set(p, port);
    return 0;
}

int dmsg_porter_reserve_ephemeral(dmsg_porter *p, uint16_t *port)
{
    const uint32_t range = DMSG_PORT_EPHEMERAL_MAX - DMSG_PORT_EPHEMERAL_MIN + 1;
    for (uint32_t tries = 0; tries < range; tries++) {
        uint32_t next = p->next_ephemeral + 1;
        if (next > DMSG_PORT_EPHEMERAL_MAX)
            next = DMSG_PORT_EPHEMERAL_MIN;
        p->next_ephemeral = next;
        if (!bit_get(p, (uint16_t)next)) {
            bit_set(p, (uint16_t)next);
            *port = (uint16_t)next;
            return 0;
        }
    }
    return DMSG_ELIMIT;
}

void dmsg_porter_release(dmsg_porter *p, uint16_t port)
{
    if (port == 0 || !bit_get(p, port))
        return;
    p->used[port / 64] &= ~((uint64_t)1 << (port % 64));
    p->n_used--;
}

bool dmsg_porter_in_use(const dmsg_porter *p, uint16_t port)
{
    return bit_get(p, port);
}
