/* The services behind the server's own key (relay_hooks.own_service): the route setup node on
 * DMSG port 36 (when route setup is enabled, else a signed refusal 306 at once) and HTTP
 * /health on DMSG port 80. Streams to other ports of our key are refused with 306. */
#ifndef DMSGD_DMSGD_OWN_H
#define DMSGD_DMSGD_OWN_H

#include <stdint.h>

#include "relay.h"

struct dmsgd;

/* Creates the setup node (before the relay can hand streams over). */
int dmsgd_own_start(struct dmsgd *d);
/* relay_hooks.own_service; ctx is the struct dmsgd. */
uint16_t dmsgd_own_service(void *ctx, const struct relay_own_request *req);
/* The setup node's limits from the (reloaded) configuration. */
void dmsgd_own_reload(struct dmsgd *d);
/* Once every session is gone. */
void dmsgd_own_close(struct dmsgd *d);

#endif
