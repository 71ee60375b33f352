/* The route setup toggle as it outlives restarts: the operator's runtime value (PUT
 * /v1/route-setup), stored in the settings table, wins over enable_route_setup of the config
 * file once set. The setup node reads the effective value from struct dmsgd
 * (route_setup_enabled), which dmsgd_start fills from here. */
#ifndef DMSGD_ROUTE_SETUP_SETTING_H
#define DMSGD_ROUTE_SETUP_SETTING_H

#include <stdbool.h>
#include <stdint.h>

struct store;

#define ROUTE_SETUP_SETTING "route_setup"   /* value: {"enabled":bool,"updated_at_ms":int} */

struct route_setup_setting {
    bool enabled;             /* the effective value */
    bool runtime;             /* set through the admin API (else: the config's value) */
    int64_t updated_at_ms;    /* when the runtime value was set; 0 when never */
};

/* Reads the stored value; configured is the config file's enable_route_setup. DMSG_EIO when
 * the store fails (store_last_error says why); a malformed stored value counts as unset. */
int route_setup_setting_get(struct store *st, bool configured, struct route_setup_setting *out);

/* Stores the runtime value; committed when this returns 0. */
int route_setup_setting_set(struct store *st, bool enabled, int64_t now_ms);

#endif
