/* The glitch budget (dmsg/glitch.h): weights, the threshold, the sliding window. */
#include <criterion/criterion.h>
#include <string.h>

#include "dmsg/glitch.h"

#define T0 1000000u /* an arbitrary loop time */

static unsigned events_to_cross(dmsg_glitch *g, dmsg_glitch_kind kind, uint64_t now)
{
    for (unsigned i = 1; i <= 1000; i++)
        if (dmsg_glitch_add(g, kind, now))
            return i;
    return 0;
}

Test(glitch, threshold_is_weighted)
{
    dmsg_glitch g;

    dmsg_glitch_init(&g, DMSG_GLITCH_THRESHOLD, DMSG_GLITCH_WINDOW_MS, T0);
    cr_assert_eq(events_to_cross(&g, DMSG_GLITCH_OVER_CAP, T0), 100);
    dmsg_glitch_init(&g, DMSG_GLITCH_THRESHOLD, DMSG_GLITCH_WINDOW_MS, T0);
    cr_assert_eq(events_to_cross(&g, DMSG_GLITCH_BAD_REQUEST, T0),
                 100 / dmsg_glitch_weight(DMSG_GLITCH_BAD_REQUEST));
    dmsg_glitch_init(&g, DMSG_GLITCH_THRESHOLD, DMSG_GLITCH_WINDOW_MS, T0);
    cr_assert_eq(events_to_cross(&g, DMSG_GLITCH_EARLY_RESET, T0),
                 100 / dmsg_glitch_weight(DMSG_GLITCH_EARLY_RESET));
}

Test(glitch, every_kind_weighs_and_has_a_name)
{
    for (unsigned k = 0; k < DMSG_GLITCH_KIND_COUNT; k++) {
        cr_assert_gt(dmsg_glitch_weight((dmsg_glitch_kind)k), 0);
        cr_assert_str_neq(dmsg_glitch_kind_name((dmsg_glitch_kind)k), "unknown");
    }
    cr_assert_eq(dmsg_glitch_weight(DMSG_GLITCH_KIND_COUNT), 0);
    cr_assert_str_eq(dmsg_glitch_kind_name(DMSG_GLITCH_KIND_COUNT), "unknown");
}

Test(glitch, crossing_is_reported_once)
{
    dmsg_glitch g;

    dmsg_glitch_init(&g, 10, 60000, T0);
    cr_assert_eq(events_to_cross(&g, DMSG_GLITCH_PING, T0), 10);
    for (int i = 0; i < 50; i++)
        cr_assert_not(dmsg_glitch_add(&g, DMSG_GLITCH_PING, T0 + (uint64_t)i));
}

Test(glitch, threshold_zero_only_counts)
{
    dmsg_glitch g;

    dmsg_glitch_init(&g, 0, 60000, T0);
    cr_assert_eq(events_to_cross(&g, DMSG_GLITCH_BAD_REQUEST, T0), 0);
    cr_assert_geq(dmsg_glitch_level(&g, T0), 1000);
}

/* 99 a minute for ten minutes, spread evenly, never crosses; the level never exceeds ~2 windows'
 * worth of a steady rate below the threshold. */
Test(glitch, steady_rate_below_threshold_never_crosses)
{
    dmsg_glitch g;
    uint64_t now = T0;

    dmsg_glitch_init(&g, 100, 60000, T0);
    for (int i = 0; i < 99 * 10; i++) {
        cr_assert_not(dmsg_glitch_add(&g, DMSG_GLITCH_OVER_CAP, now), "crossed at event %d", i);
        now += 60000 / 99 + 1;
    }
}

Test(glitch, steady_rate_above_threshold_crosses_within_a_window)
{
    dmsg_glitch g;
    uint64_t now = T0 + 12345;
    unsigned i;

    dmsg_glitch_init(&g, 100, 60000, T0);
    for (i = 0; i < 1000; i++) {
        if (dmsg_glitch_add(&g, DMSG_GLITCH_OVER_CAP, now))
            break;
        now += 60000 / 150; /* 150 a minute */
    }
    cr_assert_lt(i, 150, "took %u events", i);
}

Test(glitch, points_decay_after_a_window)
{
    dmsg_glitch g;

    dmsg_glitch_init(&g, 100, 60000, T0);
    for (int i = 0; i < 99; i++)
        dmsg_glitch_add(&g, DMSG_GLITCH_OVER_CAP, T0 + 59000);
    cr_assert_eq(dmsg_glitch_level(&g, T0 + 59000), 99);
    /* Half a window later half of the previous window still counts: the burst is not forgotten
     * at the boundary. */
    cr_assert_eq(dmsg_glitch_level(&g, T0 + 90000), 49); /* 99 x 1/2, rounded down */
    cr_assert(dmsg_glitch_add(&g, DMSG_GLITCH_BAD_REQUEST, T0 + 60001));
    dmsg_glitch_init(&g, 100, 60000, T0);
    for (int i = 0; i < 99; i++)
        dmsg_glitch_add(&g, DMSG_GLITCH_OVER_CAP, T0 + 59000);
    /* Two windows on, everything has gone. */
    cr_assert_eq(dmsg_glitch_level(&g, T0 + 120000), 0);
    cr_assert_eq(events_to_cross(&g, DMSG_GLITCH_OVER_CAP, T0 + 120000), 100);
}

Test(glitch, clock_going_back_changes_nothing)
{
    dmsg_glitch g;

    dmsg_glitch_init(&g, 100, 60000, T0);
    for (int i = 0; i < 50; i++)
        dmsg_glitch_add(&g, DMSG_GLITCH_OVER_CAP, T0 + 100);
    cr_assert_eq(dmsg_glitch_level(&g, T0 - 500), 50);
    cr_assert_eq(events_to_cross(&g, DMSG_GLITCH_OVER_CAP, T0 - 500), 50);
}

Test(glitch, kinds_are_listed)
{
    dmsg_glitch g;
    char buf[64];

    dmsg_glitch_init(&g, 100, 60000, T0);
    dmsg_glitch_kinds_format(g.kinds_seen, buf, sizeof buf);
    cr_assert_str_eq(buf, "none");
    dmsg_glitch_add(&g, DMSG_GLITCH_PING, T0);
    dmsg_glitch_add(&g, DMSG_GLITCH_BAD_REQUEST, T0);
    dmsg_glitch_add(&g, DMSG_GLITCH_PING, T0);
    dmsg_glitch_kinds_format(g.kinds_seen, buf, sizeof buf);
    cr_assert_str_eq(buf, "bad_request,ping");
    dmsg_glitch_kinds_format(g.kinds_seen, buf, 12);
    cr_assert_str_eq(buf, "bad_request");
}
