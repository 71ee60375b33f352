/* Route setups as the store keeps them (route_setups, route_setup_events): one row per setup,
 * one event per state transition, and the admin API's event feed. */
#ifndef DMSGD_ROUTE_SETUP_LOG_H
#define DMSGD_ROUTE_SETUP_LOG_H

#include "setup_node.h"

struct dmsgd;

void route_setup_log_report(struct dmsgd *d, const struct setup_node_report *r);

#endif
