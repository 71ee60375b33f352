/* The per-IP handshake rate under load (threats.md N7, X5, §7), as pure arithmetic on loop time.
 *
 * Each handshake costs one secp256k1 ECDH before the client has proved anything, so when the
 * server is busy with handshakes every source address gets a token bucket of 20 handshakes/s,
 * burst 5 (the WireGuard ratelimiter's figures). Out of load no rate applies: visors behind one
 * CGNAT address share it, and the per-IP caps already bound them.
 *
 * "Under load" (WireGuard's UnderLoadAfterTime, applied to both edges): pending handshakes at or
 * above 1/8 of the global cap continuously for 1 s enters it; below the mark continuously for 1 s
 * leaves it. The exit hold keeps a flood whose stalled handshakes time out together from getting
 * a fresh unmetered second each time the count dips for a moment.
 *
 * Layer 3 helper: no libuv, no clock reads; every time is loop milliseconds passed in. */
#ifndef DMSGD_IP_RATE_H
#define DMSGD_IP_RATE_H

#include <stdbool.h>
#include <stdint.h>

#define IP_RATE_PER_SECOND 20u
#define IP_RATE_BURST 5u
#define IP_RATE_LOAD_DIVISOR 8u       /* under load from max_pending / 8 pending handshakes */
#define IP_RATE_LOAD_HOLD_MS 1000u    /* either side of the mark, this long, to switch */

/* Tokens are kept as milliseconds of refill time, so refilling is adding elapsed time. */
struct ip_rate_bucket {
    uint32_t budget_ms;
    uint64_t last_ms;
};

/* A full bucket (a new address may open its burst at once). */
void ip_rate_bucket_init(struct ip_rate_bucket *b, uint64_t now_ms);
/* Takes one handshake from the bucket: true when allowed, false (bucket unchanged) when over. */
bool ip_rate_bucket_take(struct ip_rate_bucket *b, uint64_t now_ms);
/* True once the bucket has refilled: forgetting it then loses nothing. */
bool ip_rate_bucket_full(const struct ip_rate_bucket *b, uint64_t now_ms);

struct ip_rate_load {
    bool under_load;
    bool above;                       /* pending was at or above the mark at the last update */
    uint64_t since_ms;                /* when `above` last changed */
};

void ip_rate_load_init(struct ip_rate_load *l, uint64_t now_ms);
/* Feeds the current pending count (call on every change and before every decision); returns
 * whether the server is under load now. With max_pending 0 nothing is admitted: never. */
bool ip_rate_load_update(struct ip_rate_load *l, uint32_t pending, uint32_t max_pending,
                         uint64_t now_ms);

#endif
