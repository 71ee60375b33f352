/* Randomness source for the protocol cores.
 *
 * Cores never draw randomness on their own: the caller passes a source, so that tests can fix
 * every ephemeral key and replay a recorded transcript byte for byte. */
#ifndef DMSG_RNG_H
#define DMSG_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct dmsg_rng {
    void (*fill)(void *ctx, uint8_t *out, size_t len);
    void *ctx;
} dmsg_rng;

/* The operating system's CSPRNG (libsodium randombytes_buf). */
dmsg_rng dmsg_rng_system(void);

/* Fills out from rng. */
void dmsg_rng_fill(const dmsg_rng *rng, uint8_t *out, size_t len);

#endif
