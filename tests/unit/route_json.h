/* Test helpers: route-setup values from the JSON of setup_rpc.json and routing_rules.json. */
#ifndef DMSG_TEST_ROUTE_JSON_H
#define DMSG_TEST_ROUTE_JSON_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/routing.h"
#include "vectors.h"

#define ROUTE_JSON_MAX_HOPS 8

/* Hex (dashes ignored, as in UUID text) of exactly n bytes. */
static inline void rj_hex(json_t *s, uint8_t *out, size_t n)
{
    const char *text = json_string_value(s);
    cr_assert(text, "expected a hex string");
    char clean[1024];
    size_t k = 0;
    for (const char *p = text; *p; p++)
        if (*p != '-') {
            cr_assert(k + 1 < sizeof clean);
            clean[k++] = *p;
        }
    clean[k] = '\0';
    cr_assert_eq(vec_hex_decode(clean, out, n), (long)n, "hex of %zu bytes expected: %s", n, text);
}

static inline void rj_pk(json_t *s, dmsg_pk *pk)
{
    rj_hex(s, pk->b, DMSG_PK_LEN);
}

/* A hex byte string into storage, as a view. */
static inline dmsg_gob_bytes rj_bytes(json_t *s, uint8_t *store, size_t cap)
{
    const char *text = json_string_value(s);
    cr_assert(text);
    long n = vec_hex_decode(text, store, cap);
    cr_assert(n >= 0, "bad hex %s", text);
    return (dmsg_gob_bytes){n ? store : NULL, (size_t)n};
}

typedef struct rj_route_store {
    dmsg_route_hop hops[2][ROUTE_JSON_MAX_HOPS];
} rj_route_store;

/* Hops as the scenario "route" objects write them: {tp_id, from, to}; or as decoded message
 * bodies write them: {TpID, From, To}. */
static inline void rj_hops(json_t *arr, bool body_form, dmsg_route_hop *hops, dmsg_gob_slice *s)
{
    size_t i, n = json_array_size(arr);
    json_t *h;
    cr_assert(n <= ROUTE_JSON_MAX_HOPS);
    json_array_foreach(arr, i, h) {
        rj_hex(json_object_get(h, body_form ? "TpID" : "tp_id"), hops[i].tp_id, DMSG_TP_ID_LEN);
        rj_pk(json_object_get(h, body_form ? "From" : "from"), &hops[i].from);
        rj_pk(json_object_get(h, body_form ? "To" : "to"), &hops[i].to);
    }
    *s = (dmsg_gob_slice){n ? hops : NULL, n};
}

/* A scenario's "route" object. */
static inline void rj_route(json_t *j, dmsg_bidi_route *r, rj_route_store *st)
{
    memset(r, 0, sizeof *r);
    rj_hex(json_object_get(j, "desc_hex"), r->desc, DMSG_ROUTE_DESC_LEN);
    r->keep_alive = json_integer_value(json_object_get(j, "keep_alive_ns"));
    rj_hops(json_object_get(j, "forward"), false, st->hops[0], &r->forward);
    rj_hops(json_object_get(j, "reverse"), false, st->hops[1], &r->reverse);
}

/* A decoded BidirectionalRoute message body. */
static inline void rj_route_body(json_t *j, dmsg_bidi_route *r, rj_route_store *st)
{
    memset(r, 0, sizeof *r);
    rj_hex(json_object_get(j, "Desc"), r->desc, DMSG_ROUTE_DESC_LEN);
    r->keep_alive = json_integer_value(json_object_get(j, "KeepAlive"));
    rj_hops(json_object_get(j, "Forward"), true, st->hops[0], &r->forward);
    rj_hops(json_object_get(j, "Reverse"), true, st->hops[1], &r->reverse);
}

static inline void rj_assert_view_hex(dmsg_gob_bytes got, json_t *want, const char *what)
{
    char *hex = vec_to_hex(got.ptr, got.len);
    cr_assert_str_eq(hex, json_string_value(want), "%s", what);
    free(hex);
}

static inline void rj_assert_desc(const uint8_t *desc, json_t *want, const char *what)
{
    rj_assert_view_hex((dmsg_gob_bytes){desc, DMSG_ROUTE_DESC_LEN}, want, what);
}

static inline void rj_assert_route_eq(const dmsg_bidi_route *a, const dmsg_bidi_route *b)
{
    cr_assert_eq(memcmp(a->desc, b->desc, DMSG_ROUTE_DESC_LEN), 0, "Desc");
    cr_assert_eq(a->keep_alive, b->keep_alive, "KeepAlive");
    cr_assert_eq(a->forward.len, b->forward.len, "Forward length");
    cr_assert_eq(a->reverse.len, b->reverse.len, "Reverse length");
    if (a->forward.len)
        cr_assert_eq(memcmp(a->forward.items, b->forward.items,
                            a->forward.len * sizeof(dmsg_route_hop)), 0, "Forward hops");
    if (a->reverse.len)
        cr_assert_eq(memcmp(a->reverse.items, b->reverse.items,
                            a->reverse.len * sizeof(dmsg_route_hop)), 0, "Reverse hops");
}

#endif
