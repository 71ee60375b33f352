/* Route setups as the store keeps them (route_setups, route_setup_events): one row per setup,
 * one event per state transition, and the admin API's event feed. */
#ifndef DMSGD_ROUTE_SETUP_LOG_H
#define DMSGD_ROUTE_SETUP_LOG_H

#include "setup_node.h"

struct dmsgd;

void route_setup_log_report(struct dmsgd *d, const struct setup_node_report *r);

/* Drops setups that finished longer ago than limits.route_setup_retention_s; the daemon calls it
 * on a timer, so history expires on an idle server too. */
void route_setup_log_expire(struct dmsgd *d);

/* Before the setup node starts: setups left unfinished by a previous process end as failed. */
void route_setup_log_recover(struct dmsgd *d);

#endif
