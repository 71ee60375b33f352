/* What the setup node does with a BidirectionalRoute: check it, count the route ids each visor
 * reserves, and generate the rules as the reference does (gob-and-rpc.md B.2-B.4, B.6). */
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/routing.h"

typedef struct path {
    const dmsg_route_hop *hops;
    size_t n;
} path;

static path path_of(const dmsg_gob_slice *s)
{
    return (path){s->len ? (const dmsg_route_hop *)s->items : NULL, s->items ? s->len : 0};
}

static void desc_keys(const uint8_t desc[DMSG_ROUTE_DESC_LEN], dmsg_pk *src, dmsg_pk *dst)
{
    dmsg_route_addr s, d;
    dmsg_route_desc_unpack(desc, &s, &d);
    *src = s.pk;
    *dst = d.pk;
}

static int refuse(int rc, const char **why, const char *text)
{
    if (why)
        *why = text;
    return rc;
}

/* ---- validation ---- */

int dmsg_route_check(const dmsg_bidi_route *route, const char **why)
{
    if (!route)
        return DMSG_EINVAL;
    path fwd = path_of(&route->forward), rev = path_of(&route->reverse);
    if (fwd.n == 0)
        return refuse(DMSG_EPROTO, why, "bidirectional route does not have forward hops");
    if (rev.n == 0)
        return refuse(DMSG_EPROTO, why, "bidirectional route does not have reverse hops");
    dmsg_pk src, dst;
    desc_keys(route->desc, &src, &dst);
    if (!dmsg_pk_equal(&fwd.hops[0].from, &src) || !dmsg_pk_equal(&rev.hops[rev.n - 1].to, &src) ||
        !dmsg_pk_equal(&rev.hops[0].from, &dst) || !dmsg_pk_equal(&fwd.hops[fwd.n - 1].to, &dst))
        return refuse(DMSG_EPROTO, why, "bidirectional route has an invalid route description");
    return 0;
}

static int check_path_shape(path p, const dmsg_pk *src, const dmsg_pk *dst, const char **why)
{
    for (size_t i = 0; i < p.n; i++) {
        if (dmsg_pk_is_null(&p.hops[i].from) || dmsg_pk_is_null(&p.hops[i].to))
            return refuse(DMSG_EPROTO, why, "bidirectional route has a hop without a public key");
        if (i + 1 < p.n && !dmsg_pk_equal(&p.hops[i].to, &p.hops[i + 1].from))
            return refuse(DMSG_EPROTO, why, "bidirectional route has hops that do not join up");
        /* the reference groups rules by key and role; an edge that also relays breaks that */
        if (i > 0 && (dmsg_pk_equal(&p.hops[i].from, src) || dmsg_pk_equal(&p.hops[i].from, dst)))
            return refuse(DMSG_EPROTO, why,
                          "bidirectional route passes through one of its edge visors");
    }
    return 0;
}

int dmsg_route_check_policy(const dmsg_bidi_route *route, const dmsg_route_policy *policy,
                            const char **why)
{
    if (!route || !policy || policy->max_hops > DMSG_ROUTE_MAX_HOPS)
        return DMSG_EINVAL;
    size_t max_hops = policy->max_hops ? policy->max_hops : DMSG_ROUTE_MAX_HOPS;
    path fwd = path_of(&route->forward), rev = path_of(&route->reverse);
    dmsg_pk src, dst;
    desc_keys(route->desc, &src, &dst);
    if (policy->requester && !dmsg_pk_equal(policy->requester, &src))
        return refuse(DMSG_EPERM, why, "bidirectional route does not start at the requesting visor");
    if (fwd.n > max_hops || rev.n > max_hops)
        return refuse(DMSG_ELIMIT, why, "bidirectional route has too many hops");
    if (dmsg_pk_equal(&src, &dst))
        return refuse(DMSG_EPROTO, why, "bidirectional route starts and ends at the same visor");
    int rc = check_path_shape(fwd, &src, &dst, why);
    return rc ? rc : check_path_shape(rev, &src, &dst, why);
}

/* ---- route-id reservation ---- */

int dmsg_route_plan_find(const dmsg_route_plan *plan, const dmsg_pk *pk)
{
    for (size_t i = 0; i < plan->nvisors; i++)
        if (dmsg_pk_equal(&plan->visors[i].pk, pk))
            return (int)i;
    return -1;
}

static int count_id(dmsg_route_plan *plan, const dmsg_pk *pk)
{
    int i = dmsg_route_plan_find(plan, pk);
    if (i < 0) {
        if (plan->nvisors == DMSG_ROUTE_MAX_VISORS)
            return DMSG_ELIMIT;
        i = (int)plan->nvisors++;
        plan->visors[i].pk = *pk;
    }
    /* Go counts in a uint8 and silently wraps; we refuse instead */
    if (plan->visors[i].need == UINT8_MAX)
        return DMSG_ELIMIT;
    plan->visors[i].need++;
    return 0;
}

static int count_path(dmsg_route_plan *plan, path p)
{
    if (p.n == 0)
        return DMSG_EPROTO;
    if (p.n > DMSG_ROUTE_MAX_HOPS)
        return DMSG_ELIMIT;
    int rc = count_id(plan, &p.hops[0].from);
    for (size_t i = 0; rc == 0 && i < p.n; i++)
        rc = count_id(plan, &p.hops[i].to);
    return rc;
}

static void mark_role(dmsg_route_plan *plan, const dmsg_pk *pk, uint8_t role)
{
    int i = dmsg_route_plan_find(plan, pk);
    if (i >= 0)
        plan->visors[i].roles |= role;
}

static void mark_intermediaries(dmsg_route_plan *plan, path p)
{
    for (size_t i = 1; i < p.n; i++)
        mark_role(plan, &p.hops[i].from, DMSG_ROUTE_ROLE_INTERMEDIARY);
}

int dmsg_route_plan_init(dmsg_route_plan *plan, const dmsg_bidi_route *route)
{
    if (!plan || !route)
        return DMSG_EINVAL;
    memset(plan, 0, sizeof *plan);
    path fwd = path_of(&route->forward), rev = path_of(&route->reverse);
    int rc = count_path(plan, fwd);
    if (rc == 0)
        rc = count_path(plan, rev);
    if (rc) {
        memset(plan, 0, sizeof *plan);
        return rc;
    }
    uint16_t first = 0;
    for (size_t i = 0; i < plan->nvisors; i++) {
        plan->visors[i].first = first;
        first = (uint16_t)(first + plan->visors[i].need);
    }
    dmsg_pk src, dst;
    desc_keys(route->desc, &src, &dst);
    mark_role(plan, &src, DMSG_ROUTE_ROLE_INITIATOR);
    mark_role(plan, &dst, DMSG_ROUTE_ROLE_RESPONDER);
    mark_intermediaries(plan, fwd);
    mark_intermediaries(plan, rev);
    return 0;
}

int dmsg_route_plan_set_ids(dmsg_route_plan *plan, size_t i, const uint32_t *ids, size_t n)
{
    if (!plan || i >= plan->nvisors || (!ids && n))
        return DMSG_EINVAL;
    dmsg_route_visor *v = &plan->visors[i];
    if (v->have)
        return DMSG_ESTATE;
    if (n != v->need)
        return DMSG_EPROTO;
    memcpy(plan->ids + v->first, ids, n * sizeof *ids);
    v->have = v->need;
    return 0;
}

/* ---- rule generation ---- */

typedef struct id_pops {
    const dmsg_route_plan *plan;
    uint8_t popped[DMSG_ROUTE_MAX_VISORS];
} id_pops;

/* Each visor's ids are handed out first to last, in the order the paths ask for them. */
static int pop_id(id_pops *pops, const dmsg_pk *pk, uint32_t *id, int *visor)
{
    int i = dmsg_route_plan_find(pops->plan, pk);
    if (i < 0 || pops->popped[i] >= pops->plan->visors[i].have)
        return DMSG_ENOTFOUND;
    const dmsg_route_visor *v = &pops->plan->visors[i];
    *id = pops->plan->ids[v->first + pops->popped[i]++];
    if (visor)
        *visor = i;
    return 0;
}

/* One direction: FWD at its first visor, INTER at every later hop's sender, REV at its end. */
static int generate_path(id_pops *pops, path p, const uint8_t desc[DMSG_ROUTE_DESC_LEN],
                         int64_t keep_alive, dmsg_rule *fwd, dmsg_rule *rev, dmsg_route_rules *out)
{
    uint32_t rid, nxt;
    int rc = pop_id(pops, &p.hops[0].from, &rid, NULL);
    for (size_t i = 0; rc == 0 && i < p.n; i++) {
        rc = pop_id(pops, &p.hops[i].to, &nxt, NULL);
        if (rc)
            break;
        if (i == 0) {
            dmsg_rule_forward(fwd, keep_alive, rid, nxt, p.hops[i].tp_id, desc);
        } else {
            int from;
            if (out->ninter == DMSG_ROUTE_MAX_INTER ||
                (from = dmsg_route_plan_find(pops->plan, &p.hops[i].from)) < 0)
                return DMSG_ELIMIT;
            dmsg_route_inter_rule *r = &out->inter[out->ninter++];
            r->visor = (uint16_t)from;
            dmsg_rule_intermediary(&r->rule, keep_alive, rid, nxt, p.hops[i].tp_id);
        }
        rid = nxt;
    }
    if (rc == 0)
        dmsg_rule_consume(rev, keep_alive, rid, desc);
    return rc;
}

int dmsg_route_generate(const dmsg_route_plan *plan, const dmsg_bidi_route *route,
                        dmsg_route_rules *out, const char **why)
{
    if (!plan || !route || !out)
        return DMSG_EINVAL;
    memset(out, 0, sizeof *out);
    path fwd = path_of(&route->forward), rev = path_of(&route->reverse);
    if (fwd.n == 0 || rev.n == 0)
        return dmsg_route_check(route, why);
    if (fwd.n > DMSG_ROUTE_MAX_HOPS || rev.n > DMSG_ROUTE_MAX_HOPS)
        return refuse(DMSG_ELIMIT, why, "bidirectional route has too many hops");
    uint8_t rdesc[DMSG_ROUTE_DESC_LEN];
    dmsg_route_desc_invert(route->desc, rdesc);
    id_pops pops = {.plan = plan};
    int rc = generate_path(&pops, fwd, route->desc, route->keep_alive, &out->initiator_forward,
                           &out->responder_reverse, out);
    if (rc == 0)
        rc = generate_path(&pops, rev, rdesc, route->keep_alive, &out->responder_forward,
                           &out->initiator_reverse, out);
    if (rc) {
        memset(out, 0, sizeof *out);
        return refuse(rc, why, rc == DMSG_ENOTFOUND ? "id reservoir has no key"
                                                    : "bidirectional route has too many hops");
    }
    memcpy(out->initiator_desc, rdesc, DMSG_ROUTE_DESC_LEN);
    memcpy(out->responder_desc, route->desc, DMSG_ROUTE_DESC_LEN);
    return 0;
}

static dmsg_gob_bytes rule_view(const dmsg_rule *r)
{
    return (dmsg_gob_bytes){r->b, r->len};
}

void dmsg_route_rules_initiator(const dmsg_route_rules *rules, dmsg_edge_rules *out)
{
    memcpy(out->desc, rules->initiator_desc, DMSG_ROUTE_DESC_LEN);
    out->forward = rule_view(&rules->initiator_forward);
    out->reverse = rule_view(&rules->initiator_reverse);
}

void dmsg_route_rules_responder(const dmsg_route_rules *rules, dmsg_edge_rules *out)
{
    memcpy(out->desc, rules->responder_desc, DMSG_ROUTE_DESC_LEN);
    out->forward = rule_view(&rules->responder_forward);
    out->reverse = rule_view(&rules->responder_reverse);
}

int dmsg_route_rules_for_visor(const dmsg_route_rules *rules, size_t i, dmsg_gob_bytes *views,
                               size_t cap, size_t *n)
{
    if (!rules || !n || (!views && cap))
        return DMSG_EINVAL;
    size_t count = 0;
    for (size_t k = 0; k < rules->ninter; k++) {
        if (rules->inter[k].visor != i)
            continue;
        if (count == cap)
            return DMSG_ETOOBIG;
        views[count++] = rule_view(&rules->inter[k].rule);
    }
    *n = count;
    return 0;
}
