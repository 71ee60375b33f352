/* Glitch budget of a session; see dmsg/glitch.h. */
#include "dmsg/glitch.h"

#include <string.h>

/* Weights, with the threshold of 100 a minute in mind:
 * - bad_request 5: a forged signature, another key's source or an undecodable request costs a
 *   signature check or a parse, and no honest client sends one (its library signs with the
 *   session key); 20 a minute are plenty to tell a bug from an attack.
 * - early_reset 2: a reset before the request arrived leaves the server with the stream set-up
 *   and teardown only (HTTP/2 Rapid Reset); a client cancelling a dial now and then stays far off.
 * - over_cap 1: refusals at the rate or pending cap are already cheap (one RST), but a client that
 *   keeps pushing past its caps is flooding; honest bursts stay within the cap's burst.
 * - ping 1: one pong each; keepalives come every few seconds at most and cost nothing. */
static const uint32_t weights[DMSG_GLITCH_KIND_COUNT] = {
    [DMSG_GLITCH_BAD_REQUEST] = 5,
    [DMSG_GLITCH_EARLY_RESET] = 2,
    [DMSG_GLITCH_OVER_CAP] = 1,
    [DMSG_GLITCH_PING] = 1,
};

static const char *const names[DMSG_GLITCH_KIND_COUNT] = {
    [DMSG_GLITCH_BAD_REQUEST] = "bad_request",
    [DMSG_GLITCH_EARLY_RESET] = "early_reset",
    [DMSG_GLITCH_OVER_CAP] = "over_cap",
    [DMSG_GLITCH_PING] = "ping",
};

void dmsg_glitch_init(dmsg_glitch *g, uint32_t threshold, uint32_t window_ms, uint64_t now_ms)
{
    memset(g, 0, sizeof *g);
    g->threshold = threshold;
    g->window_ms = window_ms > 0 ? window_ms : 1;
    g->window_start_ms = now_ms;
}

uint32_t dmsg_glitch_weight(dmsg_glitch_kind kind)
{
    return (unsigned)kind < DMSG_GLITCH_KIND_COUNT ? weights[kind] : 0;
}

const char *dmsg_glitch_kind_name(dmsg_glitch_kind kind)
{
    return (unsigned)kind < DMSG_GLITCH_KIND_COUNT ? names[kind] : "unknown";
}

/* Moves the window forward to contain now_ms; a clock going back changes nothing. */
static void slide(dmsg_glitch *g, uint64_t now_ms)
{
    if (now_ms < g->window_start_ms + g->window_ms)
        return;
    uint64_t windows = (now_ms - g->window_start_ms) / g->window_ms;
    g->prev = windows == 1 ? g->cur : 0;
    g->cur = 0;
    g->window_start_ms += windows * g->window_ms;
}

/* prev counts for the part of the previous window still inside the last window_ms. */
static uint64_t level_at(const dmsg_glitch *g, uint64_t now_ms)
{
    uint64_t into = now_ms > g->window_start_ms ? now_ms - g->window_start_ms : 0;
    if (into > g->window_ms)
        into = g->window_ms;
    return g->cur + g->prev * (g->window_ms - into) / g->window_ms;
}

uint64_t dmsg_glitch_level(const dmsg_glitch *g, uint64_t now_ms)
{
    dmsg_glitch copy = *g;
    slide(&copy, now_ms);
    return level_at(&copy, now_ms);
}

bool dmsg_glitch_add(dmsg_glitch *g, dmsg_glitch_kind kind, uint64_t now_ms)
{
    if ((unsigned)kind >= DMSG_GLITCH_KIND_COUNT)
        return false;
    slide(g, now_ms);
    g->cur += weights[kind];
    g->kinds_seen |= 1u << kind;
    if (g->crossed || g->threshold == 0 || level_at(g, now_ms) < g->threshold)
        return false;
    g->crossed = true;
    return true;
}

void dmsg_glitch_kinds_format(uint32_t kinds_seen, char *out, size_t cap)
{
    size_t len = 0;

    if (cap == 0)
        return;
    out[0] = '\0';
    for (unsigned k = 0; k < DMSG_GLITCH_KIND_COUNT; k++) {
        if (!(kinds_seen & (1u << k)))
            continue;
        size_t n = strlen(names[k]) + (len > 0);
        if (len + n >= cap)
            break;
        if (len > 0)
            out[len++] = ',';
        memcpy(out + len, names[k], strlen(names[k]) + 1);
        len += strlen(names[k]);
    }
    if (len == 0 && cap > 4)
        memcpy(out, "none", 5);
}
