/* The reference server's HTTP health endpoint (health_endpoint_address): GET /health answers
 * {"build_info":{"version","commit","date"},"started_at":"<RFC 3339>"} (spec dmsg-wire.md §8.1).
 * Served only when the address is configured; it is informational, so a failure to bind is
 * reported and the daemon goes on without it. */
#ifndef DMSGD_HEALTH_ENDPOINT_H
#define DMSGD_HEALTH_ENDPOINT_H

#include <stdint.h>
#include <uv.h>

#include "dmsg/httpd.h"

struct health_endpoint {
    struct dmsg_httpd *httpd;
    char started_at[40];
    const char *version;
};

/* 0, or a DMSG_E code with err naming the address and the cause (nothing to close then). */
int health_endpoint_start(struct health_endpoint *h, uv_loop_t *loop, const char *address,
                          const char *version, char *err, size_t err_cap);

/* Closes the listener; h->httpd becomes NULL from the loop once it is gone. */
void health_endpoint_close(struct health_endpoint *h);

#endif
