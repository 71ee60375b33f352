#include "dmsg/rng.h"

#include <sodium.h>

static void fill_system(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    randombytes_buf(out, len);
}

dmsg_rng dmsg_rng_system(void)
{
    return (dmsg_rng){ .fill = fill_system, .ctx = 0 };
}

void dmsg_rng_fill(const dmsg_rng *rng, uint8_t *out, size_t len)
{
    rng->fill(rng->ctx, out, len);
}
