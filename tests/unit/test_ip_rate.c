/* The per-IP handshake rate and the under-load detector (daemon/ip_rate.c), on made-up loop
 * times: 20 handshakes/s with a burst of 5, load at 1/8 of the pending cap held for 1 s. */
#include <criterion/criterion.h>

#include "ip_rate.h"

#define T0 100000u /* an arbitrary loop time: nothing may assume the clock starts at 0 */

static unsigned take_all(struct ip_rate_bucket *b, uint64_t now)
{
    unsigned n = 0;

    while (n < 100 && ip_rate_bucket_take(b, now))
        n++;
    return n;
}

Test(ip_rate, a_new_bucket_allows_the_burst_and_no_more)
{
    struct ip_rate_bucket b;

    ip_rate_bucket_init(&b, T0);
    cr_assert(ip_rate_bucket_full(&b, T0));
    cr_assert_eq(take_all(&b, T0), IP_RATE_BURST);
    cr_assert_not(ip_rate_bucket_full(&b, T0));
    cr_assert_not(ip_rate_bucket_take(&b, T0 + 10), "refusals must not be credited");
}

Test(ip_rate, one_handshake_comes_back_every_50_ms)
{
    struct ip_rate_bucket b;

    ip_rate_bucket_init(&b, T0);
    take_all(&b, T0);
    cr_assert_not(ip_rate_bucket_take(&b, T0 + 49));
    cr_assert(ip_rate_bucket_take(&b, T0 + 50));
    cr_assert_not(ip_rate_bucket_take(&b, T0 + 51));
    /* 150 ms of refill since the last grant: three more. */
    cr_assert_eq(take_all(&b, T0 + 200), 3);
}

Test(ip_rate, a_steady_rate_is_20_per_second)
{
    struct ip_rate_bucket b;
    unsigned allowed = 0;

    ip_rate_bucket_init(&b, T0);
    /* 1000 attempts/s for 2 s: the burst plus 20/s. */
    for (uint64_t t = T0; t < T0 + 2000; t++)
        allowed += ip_rate_bucket_take(&b, t);
    cr_assert_eq(allowed, IP_RATE_BURST + 2 * IP_RATE_PER_SECOND - 1);
}

Test(ip_rate, refill_stops_at_the_burst)
{
    struct ip_rate_bucket b;

    ip_rate_bucket_init(&b, T0);
    take_all(&b, T0);
    cr_assert_not(ip_rate_bucket_full(&b, T0 + 249));
    cr_assert(ip_rate_bucket_full(&b, T0 + 250));
    cr_assert_eq(take_all(&b, T0 + 3600000), IP_RATE_BURST, "an hour idle is still a burst of 5");
}

Test(ip_rate, addresses_are_independent)
{
    struct ip_rate_bucket a, b;

    ip_rate_bucket_init(&a, T0);
    ip_rate_bucket_init(&b, T0);
    cr_assert_eq(take_all(&a, T0), IP_RATE_BURST);
    cr_assert(ip_rate_bucket_full(&b, T0));
    cr_assert_eq(take_all(&b, T0), IP_RATE_BURST);
}

Test(ip_rate, an_earlier_time_never_wraps)
{
    struct ip_rate_bucket b;

    ip_rate_bucket_init(&b, T0);
    take_all(&b, T0);
    cr_assert_not(ip_rate_bucket_take(&b, T0 - 5000));
    cr_assert(ip_rate_bucket_take(&b, T0 + 50));
}

/* Feeds pending every 10 ms from `from` to `to` (exclusive); returns the last answer. */
static bool hold(struct ip_rate_load *l, uint32_t pending, uint32_t cap, uint64_t from,
                 uint64_t to)
{
    bool under = false;

    for (uint64_t t = from; t < to; t += 10)
        under = ip_rate_load_update(l, pending, cap, t);
    return under;
}

Test(ip_rate, load_starts_after_the_mark_is_held_for_one_second)
{
    struct ip_rate_load l;

    ip_rate_load_init(&l, T0);
    cr_assert_not(hold(&l, 127, 1024, T0, T0 + 5000), "below 1/8 is never load");
    cr_assert_not(hold(&l, 128, 1024, T0 + 5000, T0 + 6000));
    cr_assert(ip_rate_load_update(&l, 128, 1024, T0 + 6000));
    cr_assert(ip_rate_load_update(&l, 900, 1024, T0 + 6001));
}

Test(ip_rate, a_dip_restarts_the_entry_hold)
{
    struct ip_rate_load l;

    ip_rate_load_init(&l, T0);
    cr_assert_not(hold(&l, 2, 16, T0, T0 + 900));
    cr_assert_not(ip_rate_load_update(&l, 1, 16, T0 + 900));
    cr_assert_not(hold(&l, 2, 16, T0 + 910, T0 + 1900));
    cr_assert(ip_rate_load_update(&l, 2, 16, T0 + 1910));
}

Test(ip_rate, load_ends_after_one_second_below_the_mark)
{
    struct ip_rate_load l;

    ip_rate_load_init(&l, T0);
    hold(&l, 2, 16, T0, T0 + 1010);
    cr_assert(ip_rate_load_update(&l, 2, 16, T0 + 1010));
    /* A short dip (stalled handshakes timing out together) keeps the rate on. */
    cr_assert(hold(&l, 0, 16, T0 + 1020, T0 + 1500));
    cr_assert(hold(&l, 3, 16, T0 + 1500, T0 + 1600));
    cr_assert(hold(&l, 1, 16, T0 + 1600, T0 + 2600));
    cr_assert_not(ip_rate_load_update(&l, 1, 16, T0 + 2600));
    cr_assert_not(ip_rate_load_update(&l, 0, 16, T0 + 9000));
}

Test(ip_rate, a_small_cap_still_has_a_mark)
{
    struct ip_rate_load l;

    ip_rate_load_init(&l, T0);
    cr_assert_not(hold(&l, 0, 4, T0, T0 + 3000));
    cr_assert(hold(&l, 1, 4, T0 + 3000, T0 + 4010));
    ip_rate_load_init(&l, T0);
    cr_assert_not(hold(&l, 5, 0, T0, T0 + 3000), "no cap: never under load");
}
