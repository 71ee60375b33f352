/* Token bucket and under-load detector; see ip_rate.h. */
#include "ip_rate.h"

#define COST_MS (1000u / IP_RATE_PER_SECOND)
#define MAX_BUDGET_MS (COST_MS * IP_RATE_BURST)

/* Loop time never goes back, but a bucket made with a later "now" must not wrap. */
static uint64_t elapsed(uint64_t since_ms, uint64_t now_ms)
{
    return now_ms > since_ms ? now_ms - since_ms : 0;
}

static uint32_t refilled(const struct ip_rate_bucket *b, uint64_t now_ms)
{
    uint64_t budget = b->budget_ms + elapsed(b->last_ms, now_ms);

    return budget > MAX_BUDGET_MS ? MAX_BUDGET_MS : (uint32_t)budget;
}

void ip_rate_bucket_init(struct ip_rate_bucket *b, uint64_t now_ms)
{
    b->budget_ms = MAX_BUDGET_MS;
    b->last_ms = now_ms;
}

bool ip_rate_bucket_take(struct ip_rate_bucket *b, uint64_t now_ms)
{
    uint32_t budget = refilled(b, now_ms);

    if (budget < COST_MS)
        return false;
    b->budget_ms = budget - COST_MS;
    b->last_ms = now_ms > b->last_ms ? now_ms : b->last_ms;
    return true;
}

bool ip_rate_bucket_full(const struct ip_rate_bucket *b, uint64_t now_ms)
{
    return refilled(b, now_ms) >= MAX_BUDGET_MS;
}

void ip_rate_load_init(struct ip_rate_load *l, uint64_t now_ms)
{
    l->under_load = false;
    l->above = false;
    l->since_ms = now_ms;
}

static uint32_t load_mark(uint32_t max_pending)
{
    uint32_t mark = max_pending / IP_RATE_LOAD_DIVISOR;

    /* A cap below the divisor still has a load state: one handshake at a time is its 1/8. */
    return mark > 0 ? mark : 1;
}

bool ip_rate_load_update(struct ip_rate_load *l, uint32_t pending, uint32_t max_pending,
                         uint64_t now_ms)
{
    bool above = max_pending > 0 && pending >= load_mark(max_pending);

    if (above != l->above) {
        l->above = above;
        l->since_ms = now_ms;
    }
    if (l->under_load != l->above && elapsed(l->since_ms, now_ms) >= IP_RATE_LOAD_HOLD_MS)
        l->under_load = l->above;
    return l->under_load;
}
