/* The operator's side of the daemon, started and stopped as one: the metrics (counters and
 * stored samples), the persisted route setup toggle, and the admin API. dmsgd.c calls these and
 * forwards the server's and the relay's hooks here. */
#ifndef DMSGD_DMSGD_ADMIN_H
#define DMSGD_DMSGD_ADMIN_H

#include <stddef.h>

#include "dmsg/session.h"

struct dmsgd;
struct relay_session;
struct relay_link_info;

/* Reads the route setup toggle from the store (falling back to the config on a store error),
 * starts the metrics sampler and the admin API. err gets an operator-facing line. */
int dmsgd_admin_start(struct dmsgd *d, char *err, size_t err_cap);

/* SIGHUP: the metrics' sampling limits as the reloaded config has them. */
void dmsgd_admin_reload(struct dmsgd *d);

/* Closes the admin API and the sampler (their handles close from the loop). Idempotent. */
void dmsgd_admin_close(struct dmsgd *d);

/* Hooks (ctx is the struct dmsgd). */
void dmsgd_admin_session_up(struct dmsgd *d, dmsg_session *s, struct relay_session *rs);
void dmsgd_admin_session_closed(void *ctx, dmsg_session *s, struct relay_session *rs, int err);
void dmsgd_admin_stream_open(void *ctx, const struct relay_link_info *info);
void dmsgd_admin_stream_close(void *ctx, const struct relay_link_info *info, const char *reason);

#endif
