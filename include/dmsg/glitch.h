/* Glitch budget of a session (threats.md DROP+g, after HAProxy's glitches-threshold).
 *
 * Layer 1: pure; time is an argument. A glitch is protocol abuse the server tolerates one at a
 * time (the offending stream is refused or the frame answered) but that costs it work and that a
 * well-behaved peer never causes. Each kind has a weight; once the weighted sum over the last
 * window reaches the threshold, the session is to be closed with GOAWAY.
 *
 * The window slides: the count of the previous window is weighed by how much of it still overlaps
 * the last window_ms, so a burst straddling a window boundary is not forgotten at the boundary
 * (a plain fixed window would let 2 x threshold through in a short burst). */
#ifndef DMSG_GLITCH_H
#define DMSG_GLITCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DMSG_GLITCH_THRESHOLD 100    /* threats.md default limits: 100 weighted events ... */
#define DMSG_GLITCH_WINDOW_MS 60000  /* ... per minute */

typedef enum dmsg_glitch_kind {
    DMSG_GLITCH_BAD_REQUEST = 0, /* request that fails verification (signature, source key, ...) */
    DMSG_GLITCH_EARLY_RESET,     /* stream reset before its request was read (Rapid Reset) */
    DMSG_GLITCH_OVER_CAP,        /* stream refused: session over its rate or pending cap */
    DMSG_GLITCH_PING,            /* yamux ping faster than any keepalive */
    DMSG_GLITCH_KIND_COUNT
} dmsg_glitch_kind;

typedef struct dmsg_glitch {
    uint32_t threshold;          /* 0: counting only, never crossed */
    uint32_t window_ms;
    uint64_t window_start_ms;
    uint64_t cur, prev;          /* weighted points in the current and the previous window */
    uint32_t kinds_seen;         /* bit (1 << kind) */
    bool crossed;                /* sticky: reported once */
} dmsg_glitch;

void dmsg_glitch_init(dmsg_glitch *g, uint32_t threshold, uint32_t window_ms, uint64_t now_ms);

/* The weight of one event of a kind (0 for an unknown kind). */
uint32_t dmsg_glitch_weight(dmsg_glitch_kind kind);

/* Adds one event; true exactly once: on the event that reaches the threshold. */
bool dmsg_glitch_add(dmsg_glitch *g, dmsg_glitch_kind kind, uint64_t now_ms);

/* Weighted points over the last window_ms, as the threshold sees them. */
uint64_t dmsg_glitch_level(const dmsg_glitch *g, uint64_t now_ms);

/* Stable names ("bad_request", ...) for logs; "unknown" out of range. */
const char *dmsg_glitch_kind_name(dmsg_glitch_kind kind);

/* The kinds seen, comma-separated ("bad_request,over_cap"), "none" if none; truncated to cap. */
void dmsg_glitch_kinds_format(uint32_t kinds_seen, char *out, size_t cap);

#endif
