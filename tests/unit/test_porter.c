/* Port allocator: the reference's ephemeral rotation (first port 49153, wrap to 49152), port 0
 * reserved, listeners' ports, exhaustion. */
#include <criterion/criterion.h>

#include "dmsg/error.h"
#include "dmsg/porter.h"

static dmsg_porter porter; /* 8 KiB: keep it off the test's stack */

Test(porter, port_zero_is_reserved_from_the_start)
{
    dmsg_porter_init(&porter);
    cr_assert(dmsg_porter_in_use(&porter, 0));
    cr_assert_eq(dmsg_porter_reserve(&porter, 0), DMSG_EINVAL);
    dmsg_porter_release(&porter, 0);
    cr_assert(dmsg_porter_in_use(&porter, 0), "port 0 must stay reserved");
    cr_assert_eq(porter.n_used, 1);
}

Test(porter, first_ephemeral_port_is_49153)
{
    dmsg_porter_init(&porter);
    uint16_t port = 0;
    cr_assert_eq(dmsg_porter_reserve_ephemeral(&porter, &port), 0);
    cr_assert_eq(port, 49153, "spec §6.1: pre-increment from 49152");
    cr_assert_eq(dmsg_porter_reserve_ephemeral(&porter, &port), 0);
    cr_assert_eq(port, 49154);
}

Test(porter, released_ports_are_not_reused_before_the_rotation_wraps)
{
    dmsg_porter_init(&porter);
    uint16_t a = 0, b = 0;
    cr_assert_eq(dmsg_porter_reserve_ephemeral(&porter, &a), 0);
    dmsg_porter_release(&porter, a);
    cr_assert_not(dmsg_porter_in_use(&porter, a));
    cr_assert_eq(dmsg_porter_reserve_ephemeral(&porter, &b), 0);
    cr_assert_eq(b, a + 1);
}

Test(porter, rotation_wraps_to_49152_and_skips_taken_ports)
{
    dmsg_porter_init(&porter);
    cr_assert_eq(dmsg_porter_reserve(&porter, 49152), 0); /* a listener on the wrap target */
    uint16_t port = 0, last = 0;
    for (unsigned i = 49153; i <= 65535; i++) {
        cr_assert_eq(dmsg_porter_reserve_ephemeral(&porter, &port), 0);
        cr_assert_eq(port, i);
        last = port;
    }
    cr_assert_eq(last, 65535);
    dmsg_porter_release(&porter, 50000);
    dmsg_porter_release(&porter, 49152);
    cr_assert_eq(dmsg_porter_reserve_ephemeral(&porter, &port), 0);
    cr_assert_eq(port, 49152, "after 65535 the counter wraps back to 49152");
    cr_assert_eq(dmsg_porter_reserve_ephemeral(&porter, &port), 0);
    cr_assert_eq(port, 50000, "taken ports are skipped");
}

Test(porter, exhaustion_is_reported_and_leaves_other_ports_alone)
{
    dmsg_porter_init(&porter);
    uint16_t port = 0;
    for (unsigned i = 0; i < 16384; i++)
        cr_assert_eq(dmsg_porter_reserve_ephemeral(&porter, &port), 0);
    cr_assert_eq(dmsg_porter_reserve_ephemeral(&porter, &port), DMSG_ELIMIT);
    cr_assert_eq(porter.n_used, 16385);
    cr_assert_eq(dmsg_porter_reserve(&porter, 80), 0);
    dmsg_porter_release(&porter, 60000);
    cr_assert_eq(dmsg_porter_reserve_ephemeral(&porter, &port), 0);
    cr_assert_eq(port, 60000);
}

Test(porter, listener_ports_are_exclusive)
{
    dmsg_porter_init(&porter);
    cr_assert_eq(dmsg_porter_reserve(&porter, 80), 0);
    cr_assert_eq(dmsg_porter_reserve(&porter, 80), DMSG_EEXIST);
    cr_assert_eq(dmsg_porter_reserve(&porter, 65535), 0);
    uint16_t port = 0;
    cr_assert_eq(dmsg_porter_reserve_ephemeral(&porter, &port), 0);
    cr_assert_eq(dmsg_porter_reserve(&porter, port), DMSG_EEXIST,
                 "a dial's source port cannot be listened on");
    dmsg_porter_release(&porter, 80);
    dmsg_porter_release(&porter, 80); /* twice: no effect */
    cr_assert_eq(porter.n_used, 3);
    cr_assert_eq(dmsg_porter_reserve(&porter, 80), 0);
}
