/* /v1/route-setup (the persisted on/off toggle of the integrated setup node) and
 * /v1/route-setups (the recorded setups, read from the store). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dmsg/error.h"
#include "dmsgd.h"
#include "metrics.h"
#include "route_setup_setting.h"
#include "store.h"
#include "validate.h"

static void answer_state(struct api_req *r, unsigned status, const struct route_setup_setting *s)
{
    struct metrics_snapshot *snap = malloc(sizeof *snap);
    json_int_t in_flight = 0;
    if (snap && r->d->metrics) {
        metrics_collect(r->d->metrics, snap);
        in_flight = (json_int_t)snap->rs_in_flight;
    }
    free(snap);
    api_reply_json(r, status,
                   json_pack("{s:b,s:b,s:s,s:o,s:I}", "enabled", r->d->route_setup_enabled,
                             "configured", r->d->cfg.enable_route_setup, "source",
                             s->runtime ? "runtime" : "config", "updated_at",
                             api_json_time_or_null(s->runtime ? s->updated_at_ms : 0),
                             "in_flight", in_flight));
}

void api_get_route_setup(struct api_req *r)
{
    struct route_setup_setting s;
    if (route_setup_setting_get(r->d->store, r->d->cfg.enable_route_setup, &s) != 0) {
        api_store_problem(r);
        return;
    }
    api_store_ok(r);
    answer_state(r, 200, &s);
}

void api_set_route_setup(struct api_req *r)
{
    bool enabled = json_is_true(json_object_get(r->body, "enabled"));
    int64_t now = api_now_ms();
    /* Committed first: the running daemon changes only once the value survives a restart. */
    if (route_setup_setting_set(r->d->store, enabled, now) != 0) {
        api_store_problem(r);
        return;
    }
    api_store_ok(r);
    if (r->d->route_setup_enabled != enabled)
        log_info(&r->d->log, "admin: route setup switched", "enabled=%s",
                 enabled ? "true" : "false");
    r->d->route_setup_enabled = enabled;
    struct route_setup_setting s = {.enabled = enabled, .runtime = true, .updated_at_ms = now};
    answer_state(r, 200, &s);
}

/* ---- recorded setups ---- */

static json_t *setup_json(const struct store_route_setup *s)
{
    return json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:o,s:o,s:o}", "id", (json_int_t)s->id,
                     "requester", s->requester, "source", s->source, "destination",
                     s->destination, "hops_forward", (json_int_t)s->hops_forward,
                     "hops_reverse", (json_int_t)s->hops_reverse, "state", s->state, "error",
                     s->error ? s->error : "", "started_at", api_json_time(s->started_at_ms),
                     "finished_at", api_json_time_or_null(s->finished_at_ms), "duration_ms",
                     s->finished_at_ms ? json_integer(s->finished_at_ms - s->started_at_ms)
                                       : json_null());
}

struct setup_page {
    json_t *items;
    int64_t last_id;
    size_t n;
};

static int add_setup(void *user, const struct store_route_setup *s)
{
    struct setup_page *p = user;
    json_t *j = setup_json(s);
    if (!j)
        return DMSG_ENOMEM;
    json_array_append_new(p->items, j);
    p->last_id = s->id;
    p->n++;
    return 0;
}

static bool valid_state(const char *s)
{
    static const char *const states[] = {"received", "reserving", "installing", "done",
                                         "failed"};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        if (strcmp(s, states[i]) == 0)
            return true;
    return false;
}

void api_list_route_setups(struct api_req *r)
{
    const char *q_limit = dmsg_httpd_request_query(r->http, "limit");
    const char *q_before = dmsg_httpd_request_query(r->http, "before");
    const char *q_state = dmsg_httpd_request_query(r->http, "state");
    const char *q_req = dmsg_httpd_request_query(r->http, "requester");
    uint64_t limit = API_LIMIT_DEFAULT, before = 0;
    char requester[DMSG_PK_HEX_LEN + 1];
    if (q_limit && api_parse_uint(q_limit, 1, API_LIMIT_MAX, &limit) != 0) {
        api_problem(r, API_P_INVALID_QUERY, 0, NULL, "limit must be 1..1000");
        return;
    }
    if (q_before && api_parse_uint(q_before, 1, INT64_MAX, &before) != 0) {
        api_problem(r, API_P_INVALID_QUERY, 0, NULL, "before must be a positive integer");
        return;
    }
    if (q_state && !valid_state(q_state)) {
        api_problem(r, API_P_INVALID_QUERY, 0, NULL, "state must be received, reserving,"
                    " installing, done or failed");
        return;
    }
    if (q_req && api_parse_public_key(q_req, NULL, requester, NULL, 0) != 0) {
        api_problem(r, API_P_INVALID_PUBLIC_KEY, 400, NULL, "requester must be a 66-character"
                    " hex public key");
        return;
    }
    struct setup_page page = {.items = json_array()};
    /* One more than asked tells whether an older page exists. */
    int rc = store_route_setup_list(r->d->store, (int64_t)before, limit + 1, q_state,
                                    q_req ? requester : NULL, add_setup, &page);
    if (rc != 0) {
        json_decref(page.items);
        api_store_problem(r);
        return;
    }
    api_store_ok(r);
    json_t *next = json_null();
    if (page.n > limit) {
        json_array_remove(page.items, limit);
        json_t *last = json_array_get(page.items, limit - 1);
        next = json_incref(json_object_get(last, "id"));
    }
    api_reply_json(r, 200, json_pack("{s:o,s:o}", "route_setups", page.items, "next_before",
                                     next));
}

struct setup_detail {
    json_t *setup;
    json_t *events;
};

static int take_setup(void *user, const struct store_route_setup *s)
{
    struct setup_detail *d = user;
    d->setup = setup_json(s);
    return d->setup ? 0 : DMSG_ENOMEM;
}

static int take_event(void *user, const char *state, int64_t at_ms, const char *detail)
{
    struct setup_detail *d = user;
    return json_array_append_new(d->events,
                                 json_pack("{s:s,s:o,s:s}", "state", state, "at",
                                           api_json_time(at_ms), "detail", detail ? detail : ""));
}

void api_get_route_setup_record(struct api_req *r)
{
    uint64_t id;
    if (api_parse_uint(r->param, 1, INT64_MAX, &id) != 0) {
        api_problem(r, API_P_ROUTE_SETUP_NOT_FOUND, 0, NULL, "route setup ids are positive integers");
        return;
    }
    struct setup_detail d = {.events = json_array()};
    int rc = store_route_setup_get(r->d->store, (int64_t)id, take_setup, take_event, &d);
    if (rc == DMSG_ENOTFOUND) {
        json_decref(d.events);
        api_problem(r, API_P_ROUTE_SETUP_NOT_FOUND, 0, NULL, "no recorded route setup %llu",
                    (unsigned long long)id);
        return;
    }
    if (rc != 0) {
        json_decref(d.events);
        json_decref(d.setup);
        api_store_problem(r);
        return;
    }
    api_store_ok(r);
    json_object_set_new(d.setup, "events", d.events);
    api_reply_json(r, 200, d.setup);
}
