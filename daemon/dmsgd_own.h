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
/* The open streams of the services, as relay_foreach_link gives relayed ones (path
 * "service"): the setup node's port-36 streams and its dials to visors. Health streams on
 * port 80 are answered and closed at once and are not listed. fn must not close streams. */
void dmsgd_own_foreach_stream(const struct dmsgd *d,
                              void (*fn)(const struct relay_link_info *info, void *arg),
                              void *arg);
/* How many streams dmsgd_own_foreach_stream lists (the service streams gauge). */
uint64_t dmsgd_own_stream_count(const struct dmsgd *d);
/* Once every session is gone. */
void dmsgd_own_close(struct dmsgd *d);

#endif
