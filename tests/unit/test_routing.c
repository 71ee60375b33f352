/* routing: rule and descriptor layouts, Go's String()/Summary(), route checks, id reservation
 * and rule generation, against routing_rules.json and setup_rpc.json. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/routing.h"
#include "dmsg/rpc.h"
#include "route_json.h"
#include "vectors.h"

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

TestSuite(routing, .init = setup);

static json_t *field(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    cr_assert(v, "missing %s", k);
    return v;
}

static uint32_t u32_of(json_t *o, const char *k)
{
    return (uint32_t)json_integer_value(field(o, k));
}

static void addr_of(json_t *in, const char *pk, const char *port, dmsg_route_addr *a)
{
    rj_pk(field(in, pk), &a->pk);
    a->port = (uint16_t)json_integer_value(field(in, port));
}

static void desc_of_inputs(json_t *in, uint8_t desc[DMSG_ROUTE_DESC_LEN])
{
    dmsg_route_addr src, dst;
    addr_of(in, "src_pk", "src_port", &src);
    addr_of(in, "dst_pk", "dst_port", &dst);
    dmsg_route_desc_pack(desc, &src, &dst);
}

static void assert_rule_text(const uint8_t *rule, size_t len, json_t *want_string)
{
    dmsg_rule_summary s;
    char text[DMSG_RULE_STRING_MAX];
    size_t n;
    cr_assert_eq(dmsg_rule_parse(rule, len, &s), 0);
    cr_assert_eq(dmsg_rule_string(&s, text, sizeof text, &n), 0);
    cr_assert_str_eq(text, json_string_value(want_string));
    cr_assert_eq(n, strlen(text));
}

/* ---- layouts and rule vectors ---- */

Test(routing, rule_layouts_match_the_vectors)
{
    json_t *root = vec_load("routing_rules.json");
    struct {
        const char *name;
        dmsg_rule_type type;
        size_t len;
    } kinds[] = {{"consume", DMSG_RULE_CONSUME, DMSG_RULE_CONSUME_LEN},
                 {"forward", DMSG_RULE_FORWARD, DMSG_RULE_FORWARD_LEN},
                 {"intermediary_forward", DMSG_RULE_INTERMEDIARY, DMSG_RULE_INTERMEDIARY_LEN}};
    for (size_t i = 0; i < 3; i++) {
        json_t *l = field(field(root, "rule_layouts"), kinds[i].name);
        cr_assert_eq(json_integer_value(field(l, "type_byte")), kinds[i].type);
        cr_assert_eq((size_t)json_integer_value(field(l, "total_length")), kinds[i].len);
        /* the fields tile the rule exactly, the last being the zero padding where there is one */
        size_t end = 0, k;
        json_t *f;
        json_array_foreach(field(l, "fields"), k, f) {
            cr_assert_eq((size_t)json_integer_value(field(f, "offset")), end);
            end += (size_t)json_integer_value(field(f, "size"));
        }
        cr_assert_eq(end, kinds[i].len);
    }
    size_t end = 0, k;
    json_t *f;
    json_array_foreach(field(root, "route_descriptor_layout"), k, f) {
        cr_assert_eq((size_t)json_integer_value(field(f, "offset")), end);
        end += (size_t)json_integer_value(field(f, "size"));
    }
    cr_assert_eq(end, DMSG_ROUTE_DESC_LEN);
    json_decref(root);
}

static void build_rule(json_t *v, dmsg_rule *rule)
{
    json_t *in = field(v, "inputs");
    const char *type = json_string_value(field(v, "type"));
    int64_t keep_alive = json_integer_value(field(in, "keep_alive_ns"));
    uint32_t key = u32_of(in, "key_route_id");
    uint8_t desc[DMSG_ROUTE_DESC_LEN], tp[DMSG_TP_ID_LEN];
    if (strcmp(type, "Consume") == 0) {
        desc_of_inputs(in, desc);
        dmsg_rule_consume(rule, keep_alive, key, desc);
    } else if (strcmp(type, "Forward") == 0) {
        desc_of_inputs(in, desc);
        rj_hex(field(in, "next_tp_id"), tp, sizeof tp);
        dmsg_rule_forward(rule, keep_alive, key, u32_of(in, "next_route_id"), tp, desc);
    } else {
        cr_assert_str_eq(type, "IntermediaryForward");
        rj_hex(field(in, "next_tp_id"), tp, sizeof tp);
        dmsg_rule_intermediary(rule, keep_alive, key, u32_of(in, "next_route_id"), tp);
    }
}

Test(routing, every_rule_vector_encodes_parses_and_prints_like_go)
{
    json_t *root = vec_load("routing_rules.json");
    size_t i;
    json_t *v;
    json_array_foreach(field(root, "rules"), i, v) {
        const char *name = json_string_value(field(v, "name"));
        dmsg_rule rule;
        build_rule(v, &rule);
        cr_assert_eq(rule.len, json_integer_value(field(v, "length")), "%s", name);
        rj_assert_view_hex((dmsg_gob_bytes){rule.b, rule.len}, field(v, "hex"), name);

        dmsg_rule_summary s;
        cr_assert_eq(dmsg_rule_parse(rule.b, rule.len, &s), 0, "%s", name);
        cr_assert_str_eq(dmsg_rule_type_name(s.type), json_string_value(field(v, "type")));
        assert_rule_text(rule.b, rule.len, field(v, "go_string"));

        char js[DMSG_RULE_SUMMARY_JSON_MAX];
        size_t n;
        cr_assert_eq(dmsg_rule_summary_json(&s, js, sizeof js, &n), 0);
        cr_assert_eq(n, strlen(js));
        json_error_t err;
        json_t *got = json_loads(js, 0, &err);
        cr_assert(got, "%s: our summary is not JSON: %s", name, js);
        cr_assert(json_equal(got, field(v, "go_summary_json")), "%s: summary %s", name, js);
        json_decref(got);

        /* the parsed fields rebuild the same bytes */
        dmsg_rule again;
        if (s.type == DMSG_RULE_CONSUME)
            dmsg_rule_consume(&again, s.keep_alive_ns, s.key_route_id, s.desc);
        else if (s.type == DMSG_RULE_FORWARD)
            dmsg_rule_forward(&again, s.keep_alive_ns, s.key_route_id, s.next_route_id,
                              s.next_tp_id, s.desc);
        else
            dmsg_rule_intermediary(&again, s.keep_alive_ns, s.key_route_id, s.next_route_id,
                                   s.next_tp_id);
        cr_assert_eq(again.len, rule.len);
        cr_assert_eq(memcmp(again.b, rule.b, rule.len), 0, "%s", name);
    }
    cr_assert_gt(i, 0);
    json_decref(root);
}

Test(routing, route_descriptor_packs_inverts_and_prints_like_go)
{
    json_t *root = vec_load("routing_rules.json");
    json_t *v = field(root, "route_descriptor");
    uint8_t desc[DMSG_ROUTE_DESC_LEN], inv[DMSG_ROUTE_DESC_LEN];
    desc_of_inputs(field(v, "inputs"), desc);
    rj_assert_desc(desc, field(v, "hex"), "descriptor");
    char text[256];
    cr_assert_eq(dmsg_route_desc_string(desc, text, sizeof text, NULL), 0);
    cr_assert_str_eq(text, json_string_value(field(v, "go_string")));
    dmsg_route_desc_invert(desc, inv);
    rj_assert_desc(inv, field(v, "inverted_hex"), "inverted");
    cr_assert_eq(dmsg_route_desc_string(inv, text, sizeof text, NULL), 0);
    cr_assert_str_eq(text, json_string_value(field(v, "inverted_string")));
    /* in place, and back */
    dmsg_route_desc_invert(inv, inv);
    cr_assert_eq(memcmp(inv, desc, sizeof desc), 0);
    dmsg_route_addr src, dst;
    dmsg_route_desc_unpack(desc, &src, &dst);
    cr_assert_eq(src.port, json_integer_value(field(field(v, "inputs"), "src_port")));
    cr_assert_eq(dst.port, json_integer_value(field(field(v, "inputs"), "dst_port")));
    json_decref(root);
}

Test(routing, malformed_rules_are_refused)
{
    json_t *root = vec_load("routing_rules.json");
    size_t i;
    json_t *v;
    json_array_foreach(field(root, "rules"), i, v) {
        dmsg_rule rule;
        dmsg_rule_summary s;
        uint8_t b[DMSG_RULE_MAX_LEN + 1];
        build_rule(v, &rule);
        memcpy(b, rule.b, rule.len);
        for (size_t n = 0; n < DMSG_RULE_HEADER_LEN; n++)
            cr_assert_eq(dmsg_rule_parse(b, n, &s), DMSG_ESHORT);
        for (size_t n = DMSG_RULE_HEADER_LEN; n < rule.len; n++)
            cr_assert_eq(dmsg_rule_parse(b, n, &s), DMSG_EPROTO);
        b[rule.len] = 0;
        cr_assert_eq(dmsg_rule_parse(b, rule.len + 1u, &s), DMSG_EPROTO);
        if (rule.b[8] != DMSG_RULE_CONSUME) { /* a set padding byte */
            b[rule.len - 1] = 1;
            cr_assert_eq(dmsg_rule_parse(b, rule.len, &s), DMSG_EPROTO);
            b[rule.len - 1] = 0;
        }
        b[8] = 3;
        cr_assert_eq(dmsg_rule_parse(b, rule.len, &s), DMSG_ETYPE);
        b[8] = 0xff;
        cr_assert_eq(dmsg_rule_parse(b, rule.len, &s), DMSG_ETYPE);
    }
    json_decref(root);
}

Test(routing, text_outputs_refuse_small_buffers)
{
    json_t *root = vec_load("routing_rules.json");
    dmsg_rule rule;
    dmsg_rule_summary s;
    build_rule(json_array_get(field(root, "rules"), 1), &rule);
    cr_assert_eq(dmsg_rule_parse(rule.b, rule.len, &s), 0);
    char text[DMSG_RULE_SUMMARY_JSON_MAX];
    size_t need;
    cr_assert_eq(dmsg_rule_string(&s, text, sizeof text, &need), 0);
    cr_assert_eq(dmsg_rule_string(&s, text, need, NULL), DMSG_ETOOBIG);
    cr_assert_eq(dmsg_rule_string(&s, text, need + 1, NULL), 0);
    cr_assert_eq(dmsg_rule_summary_json(&s, text, sizeof text, &need), 0);
    cr_assert_eq(dmsg_rule_summary_json(&s, text, need, NULL), DMSG_ETOOBIG);
    cr_assert_eq(dmsg_route_desc_string(s.desc, text, 10, NULL), DMSG_ETOOBIG);
    s.type = (dmsg_rule_type)7;
    cr_assert_eq(dmsg_rule_string(&s, text, sizeof text, NULL), DMSG_ETYPE);
    cr_assert_str_eq(dmsg_rule_type_name(s.type), "Unknown");
    json_decref(root);
}

/* ---- generation against generate_rules_expected ---- */

static void reserve_from(dmsg_route_plan *plan, const dmsg_pk *pk, json_t *batches)
{
    int vi = dmsg_route_plan_find(plan, pk);
    cr_assert_geq(vi, 0, "visor of the vector is not in the plan");
    cr_assert_eq(json_array_size(batches), 1, "one ReserveIDs call per visor");
    json_t *batch = json_array_get(batches, 0);
    uint32_t ids[DMSG_ROUTE_MAX_IDS];
    size_t k;
    json_t *id;
    json_array_foreach(batch, k, id) ids[k] = (uint32_t)json_integer_value(id);
    cr_assert_eq(plan->visors[vi].need, json_array_size(batch), "ReserveIDs count");
    cr_assert_eq(dmsg_route_plan_set_ids(plan, (size_t)vi, ids, json_array_size(batch)), 0);
}

static void assert_edge(const dmsg_edge_rules *e, json_t *desc, json_t *fwd, json_t *rev)
{
    rj_assert_desc(e->desc, desc, "EdgeRules.Desc");
    rj_assert_view_hex(e->forward, fwd, "EdgeRules.Forward");
    rj_assert_view_hex(e->reverse, rev, "EdgeRules.Reverse");
}

static void assert_rule_list(const dmsg_gob_bytes *rules, size_t n, json_t *hex, json_t *strings)
{
    cr_assert_eq(n, json_array_size(hex));
    for (size_t k = 0; k < n; k++) {
        rj_assert_view_hex(rules[k], json_array_get(hex, k), "saved rule");
        assert_rule_text(rules[k].ptr, rules[k].len, json_array_get(strings, k));
    }
}

static void check_generated_visor(const dmsg_route_plan *plan, const dmsg_route_rules *rules,
                                  json_t *pv)
{
    dmsg_pk pk;
    rj_pk(field(pv, "pk"), &pk);
    int vi = dmsg_route_plan_find(plan, &pk);
    cr_assert_geq(vi, 0);
    uint8_t roles = plan->visors[vi].roles;
    json_t *saved = field(pv, "saved_rules_hex"), *strings = field(pv, "saved_rules_string");
    json_t *edges = field(pv, "edge_rules_received_via_AddEdgeRules");
    dmsg_gob_bytes list[DMSG_ROUTE_MAX_INTER];
    size_t n = 0;
    if (roles & DMSG_ROUTE_ROLE_INITIATOR) {
        /* the initiator saves the two rules of its DialRouteGroup reply */
        dmsg_edge_rules e;
        dmsg_route_rules_initiator(rules, &e);
        list[n++] = e.forward;
        list[n++] = e.reverse;
    }
    if (roles & DMSG_ROUTE_ROLE_INTERMEDIARY) {
        size_t got;
        cr_assert_eq(dmsg_route_rules_for_visor(rules, (size_t)vi, list + n,
                                                DMSG_ROUTE_MAX_INTER - n, &got), 0);
        n += got;
    }
    if (json_is_null(saved))
        cr_assert_eq(n, 0);
    else
        assert_rule_list(list, n, saved, strings);
    if (roles & DMSG_ROUTE_ROLE_RESPONDER) {
        cr_assert_eq(json_array_size(edges), 1);
        json_t *e0 = json_array_get(edges, 0);
        dmsg_edge_rules e;
        dmsg_route_rules_responder(rules, &e);
        assert_edge(&e, field(e0, "desc_hex"), field(e0, "forward_hex"), field(e0, "reverse_hex"));
    } else {
        cr_assert_eq(json_array_size(edges), 0);
    }
}

Test(routing, generated_rules_match_the_reference_for_0_and_1_hop_routes)
{
    json_t *root = vec_load("routing_rules.json");
    size_t i, visors_checked = 0;
    json_t *sc;
    json_array_foreach(field(root, "generate_rules_expected"), i, sc) {
        dmsg_bidi_route route;
        rj_route_store st;
        const char *why = NULL;
        rj_route(field(sc, "route"), &route, &st);
        cr_assert_eq(dmsg_route_check(&route, &why), 0);
        dmsg_route_policy policy = {.requester = &st.hops[0][0].from};
        cr_assert_eq(dmsg_route_check_policy(&route, &policy, &why), 0, "%s", why);

        dmsg_route_plan plan;
        cr_assert_eq(dmsg_route_plan_init(&plan, &route), 0);
        json_t *per_visor = field(sc, "per_visor");
        cr_assert_eq(plan.nvisors, json_object_size(per_visor), "visors taking part");
        const char *name;
        json_t *pv;
        json_object_foreach(per_visor, name, pv) {
            dmsg_pk pk;
            rj_pk(field(pv, "pk"), &pk);
            reserve_from(&plan, &pk, field(pv, "reserved_ids"));
        }
        dmsg_route_rules rules;
        cr_assert_eq(dmsg_route_generate(&plan, &route, &rules, &why), 0);

        json_t *ie = field(sc, "initiator_edge_rules");
        dmsg_edge_rules e;
        dmsg_route_rules_initiator(&rules, &e);
        assert_edge(&e, field(ie, "desc"), field(ie, "forward"), field(ie, "reverse"));
        assert_rule_text(e.forward.ptr, e.forward.len, field(ie, "forward_string"));
        assert_rule_text(e.reverse.ptr, e.reverse.len, field(ie, "reverse_string"));
        json_object_foreach(per_visor, name, pv) {
            check_generated_visor(&plan, &rules, pv);
            visors_checked++;
        }
    }
    cr_assert_eq(i, 2);
    cr_assert_eq(visors_checked, 5);
    json_decref(root);
}

/* ---- generation against the scenarios of setup_rpc.json, through the RPC streams ---- */

typedef struct stream_reader {
    dmsg_rpc_conn conn;
    uint8_t in[8192];
    uint8_t arena[8192];
} stream_reader;

static void reader_init(stream_reader *r, int port)
{
    dmsg_rpc_config cfg = {
        .role = DMSG_RPC_SERVER,
        .methods = port == DMSG_SETUP_NODE_PORT ? dmsg_setup_node_methods : dmsg_visor_methods,
        .nmethods = port == DMSG_SETUP_NODE_PORT ? DMSG_SETUP_NODE_NMETHODS : DMSG_VISOR_NMETHODS,
        .inbuf = r->in, .inbuf_cap = sizeof r->in, .arena = r->arena,
        .arena_cap = sizeof r->arena};
    cr_assert_eq(dmsg_rpc_init(&r->conn, &cfg), 0);
}

/* The calls of a request stream, read by our server side. */
static size_t read_calls(stream_reader *r, json_t *conn, void (*on_call)(const dmsg_rpc_event *,
                                                                          void *),
                         void *ctx)
{
    size_t n, taken, calls = 0;
    uint8_t *bytes = vec_hex(conn, "request_stream_hex", &n);
    reader_init(r, (int)json_integer_value(field(conn, "dmsg_port")));
    cr_assert_eq(dmsg_rpc_feed(&r->conn, bytes, n, &taken), 0);
    cr_assert_eq(taken, n);
    dmsg_rpc_event ev;
    int rc;
    while ((rc = dmsg_rpc_poll(&r->conn, &ev)) == 0) {
        on_call(&ev, ctx);
        calls++;
    }
    cr_assert_eq(rc, DMSG_EAGAIN);
    cr_assert(!dmsg_rpc_has_partial_input(&r->conn));
    free(bytes);
    return calls;
}

typedef struct scenario_ctx {
    dmsg_bidi_route route;
    dmsg_route_hop hops[2][ROUTE_JSON_MAX_HOPS];
    dmsg_route_plan *plan;
    const dmsg_route_rules *rules;
    int visor;
    size_t checked;
} scenario_ctx;

static void take_route(const dmsg_rpc_event *ev, void *p)
{
    scenario_ctx *ctx = p;
    cr_assert_eq(ev->kind, DMSG_RPC_EV_CALL);
    cr_assert_eq(ev->method, &dmsg_setup_dial_route_group);
    /* copy out of the reader's buffers */
    const dmsg_bidi_route *r = ev->body;
    ctx->route = *r;
    cr_assert(r->forward.len <= ROUTE_JSON_MAX_HOPS && r->reverse.len <= ROUTE_JSON_MAX_HOPS);
    memcpy(ctx->hops[0], r->forward.items, r->forward.len * sizeof(dmsg_route_hop));
    memcpy(ctx->hops[1], r->reverse.items, r->reverse.len * sizeof(dmsg_route_hop));
    ctx->route.forward.items = ctx->hops[0];
    ctx->route.reverse.items = ctx->hops[1];
}

static void check_visor_call(const dmsg_rpc_event *ev, void *p)
{
    scenario_ctx *ctx = p;
    cr_assert_eq(ev->kind, DMSG_RPC_EV_CALL);
    const dmsg_route_visor *v = &ctx->plan->visors[ctx->visor];
    if (ev->method == &dmsg_visor_reserve_ids) {
        cr_assert_eq(ev->seq, 0);
        cr_assert_eq(*(const uint8_t *)ev->body, v->need, "ReserveIDs argument");
    } else if (ev->method == &dmsg_visor_add_edge_rules) {
        cr_assert_eq(ev->seq, 1);
        cr_assert(v->roles & DMSG_ROUTE_ROLE_RESPONDER);
        const dmsg_edge_rules *got = ev->body;
        dmsg_edge_rules want;
        dmsg_route_rules_responder(ctx->rules, &want);
        cr_assert_eq(memcmp(got->desc, want.desc, DMSG_ROUTE_DESC_LEN), 0);
        cr_assert_eq(got->forward.len, want.forward.len);
        cr_assert_eq(memcmp(got->forward.ptr, want.forward.ptr, want.forward.len), 0);
        cr_assert_eq(got->reverse.len, want.reverse.len);
        cr_assert_eq(memcmp(got->reverse.ptr, want.reverse.ptr, want.reverse.len), 0);
    } else {
        cr_assert_eq(ev->method, &dmsg_visor_add_intermediary_rules);
        cr_assert_eq(ev->seq, 1);
        cr_assert(v->roles & DMSG_ROUTE_ROLE_INTERMEDIARY);
        const dmsg_gob_slice *got = ev->body;
        dmsg_gob_bytes want[DMSG_ROUTE_MAX_INTER];
        size_t n;
        cr_assert_eq(dmsg_route_rules_for_visor(ctx->rules, (size_t)ctx->visor, want,
                                                DMSG_ROUTE_MAX_INTER, &n), 0);
        cr_assert_eq(got->len, n);
        const dmsg_gob_bytes *items = got->items;
        for (size_t k = 0; k < n; k++) {
            cr_assert_eq(items[k].len, want[k].len);
            cr_assert_eq(memcmp(items[k].ptr, want[k].ptr, want[k].len), 0, "rule %zu", k);
        }
    }
    ctx->checked++;
}

/* visor_states_after: rules saved (initiator, intermediaries), EdgeRules introduced (responder,
 * as "desc|forward|reverse" hex). */
static void check_visor_state(const dmsg_route_plan *plan, const dmsg_route_rules *rules,
                              size_t v, json_t *state)
{
    uint8_t roles = plan->visors[v].roles;
    dmsg_gob_bytes list[DMSG_ROUTE_MAX_INTER];
    size_t n = 0;
    dmsg_edge_rules e;
    if (roles & DMSG_ROUTE_ROLE_INITIATOR) {
        dmsg_route_rules_initiator(rules, &e);
        list[n++] = e.forward;
        list[n++] = e.reverse;
    }
    if (roles & DMSG_ROUTE_ROLE_INTERMEDIARY) {
        size_t got;
        cr_assert_eq(dmsg_route_rules_for_visor(rules, v, list + n, DMSG_ROUTE_MAX_INTER - n,
                                                &got), 0);
        n += got;
    }
    json_t *saved = field(state, "saved_rules_hex");
    if (json_is_null(saved))
        cr_assert_eq(n, 0);
    else
        assert_rule_list(list, n, saved, field(state, "saved_rules_string"));
    json_t *introduced = field(state, "introduced_edge_rules");
    if (!(roles & DMSG_ROUTE_ROLE_RESPONDER)) {
        cr_assert(json_is_null(introduced));
        return;
    }
    cr_assert_eq(json_array_size(introduced), 1);
    dmsg_route_rules_responder(rules, &e);
    char *d = vec_to_hex(e.desc, DMSG_ROUTE_DESC_LEN), *f = vec_to_hex(e.forward.ptr, e.forward.len),
         *r = vec_to_hex(e.reverse.ptr, e.reverse.len);
    char want[1024];
    snprintf(want, sizeof want, "%s|%s|%s", d, f, r);
    cr_assert_str_eq(json_string_value(json_array_get(introduced, 0)), want);
    free(d);
    free(f);
    free(r);
}

static json_t *visor_state_of(json_t *states, const dmsg_pk *pk)
{
    const char *name;
    json_t *s;
    json_object_foreach(states, name, s) {
        dmsg_pk k;
        rj_pk(field(s, "pk"), &k);
        if (dmsg_pk_equal(&k, pk))
            return s;
    }
    cr_assert_fail("no state for a visor of the plan");
    return NULL;
}

static json_t *conn_to(json_t *sc, const char *visor_name)
{
    size_t i;
    json_t *c;
    char label[64];
    snprintf(label, sizeof label, "SN dials %s on dmsg port 136", visor_name);
    json_array_foreach(field(sc, "connections"), i, c)
        if (strcmp(json_string_value(field(c, "label")), label) == 0)
            return c;
    cr_assert_fail("no connection %s", label);
    return NULL;
}

Test(routing, scenario_streams_carry_exactly_the_rules_we_generate)
{
    json_t *root = vec_load("setup_rpc.json");
    size_t i, successes = 0;
    json_t *sc;
    static stream_reader reader;
    json_array_foreach(field(root, "scenarios"), i, sc) {
        json_t *edge = json_object_get(field(sc, "initiator_result"), "edge_rules");
        if (!edge)
            continue;
        static scenario_ctx ctx;
        memset(&ctx, 0, sizeof ctx);
        json_t *first = json_array_get(field(sc, "connections"), 0);
        cr_assert_eq(read_calls(&reader, first, take_route, &ctx), 1);
        const char *why = NULL;
        dmsg_pk requester;
        rj_pk(field(field(field(root, "keys"), "A"), "public_key"), &requester);
        dmsg_route_policy policy = {.requester = &requester, .max_hops = 4};
        cr_assert_eq(dmsg_route_check(&ctx.route, &why), 0);
        cr_assert_eq(dmsg_route_check_policy(&ctx.route, &policy, &why), 0, "%s", why);

        static dmsg_route_plan plan;
        static dmsg_route_rules rules;
        cr_assert_eq(dmsg_route_plan_init(&plan, &ctx.route), 0);
        json_t *states = field(sc, "visor_states_after");
        for (size_t v = 0; v < plan.nvisors; v++)
            reserve_from(&plan, &plan.visors[v].pk,
                         field(visor_state_of(states, &plan.visors[v].pk), "reserved_batches"));
        cr_assert_eq(dmsg_route_generate(&plan, &ctx.route, &rules, &why), 0);

        dmsg_edge_rules e;
        dmsg_route_rules_initiator(&rules, &e);
        assert_edge(&e, field(edge, "desc"), field(edge, "forward"), field(edge, "reverse"));
        ctx.plan = &plan;
        ctx.rules = &rules;
        for (size_t v = 0; v < plan.nvisors; v++) {
            json_t *state = visor_state_of(states, &plan.visors[v].pk);
            ctx.visor = (int)v;
            ctx.checked = 0;
            size_t calls = read_calls(&reader, conn_to(sc, json_string_value(field(state, "name"))),
                                      check_visor_call, &ctx);
            /* ReserveIDs everywhere; one rule call to the responder and each intermediary */
            cr_assert_eq(calls, plan.visors[v].roles == DMSG_ROUTE_ROLE_INITIATOR ? 1u : 2u);
            cr_assert_eq(ctx.checked, calls);
            check_visor_state(&plan, &rules, v, state);
        }
        successes++;
    }
    cr_assert_eq(successes, 2);
    json_decref(root);
}

/* ---- checks and policy ---- */

/* A 1-hop route of the vectors, editable. */
typedef struct route_fixture {
    dmsg_bidi_route route;
    rj_route_store st;
    dmsg_pk a, b, i;
} route_fixture;

static void one_hop_fixture(route_fixture *f)
{
    json_t *root = vec_load("routing_rules.json");
    rj_route(field(json_array_get(field(root, "generate_rules_expected"), 1), "route"), &f->route,
             &f->st);
    json_t *keys = field(root, "keys");
    rj_pk(field(field(keys, "A"), "public_key"), &f->a);
    rj_pk(field(field(keys, "B"), "public_key"), &f->b);
    rj_pk(field(field(keys, "I"), "public_key"), &f->i);
    json_decref(root);
    cr_assert_eq(f->route.forward.len, 2);
    cr_assert_eq(f->route.reverse.len, 2);
}

static void expect_check(const dmsg_bidi_route *r, int rc, const char *text)
{
    const char *why = NULL;
    cr_assert_eq(dmsg_route_check(r, &why), rc);
    if (text)
        cr_assert_str_eq(why, text);
}

Test(routing, check_reports_invalid_routes_in_gos_words)
{
    json_t *root = vec_load("setup_rpc.json");
    size_t i, found = 0;
    json_t *sc;
    json_array_foreach(field(root, "scenarios"), i, sc) {
        if (strcmp(json_string_value(field(sc, "name")), "invalid_route") != 0)
            continue;
        dmsg_bidi_route route;
        rj_route_store st;
        rj_route(field(sc, "route"), &route, &st);
        expect_check(&route, DMSG_EPROTO,
                     json_string_value(field(field(sc, "initiator_result"), "error")));
        found++;
    }
    cr_assert_eq(found, 1);
    json_decref(root);

    route_fixture f;
    one_hop_fixture(&f);
    expect_check(&f.route, 0, NULL);
    const char *bad_desc = "bidirectional route has an invalid route description";
    dmsg_bidi_route r = f.route;
    r.forward.len = 0;
    expect_check(&r, DMSG_EPROTO, "bidirectional route does not have forward hops");
    r.reverse.len = 0; /* forward is reported first */
    expect_check(&r, DMSG_EPROTO, "bidirectional route does not have forward hops");
    r = f.route;
    r.reverse = (dmsg_gob_slice){NULL, 0};
    expect_check(&r, DMSG_EPROTO, "bidirectional route does not have reverse hops");
    /* each of the four endpoint comparisons */
    dmsg_pk *ends[] = {&f.st.hops[0][0].from, &f.st.hops[1][1].to, &f.st.hops[1][0].from,
                       &f.st.hops[0][1].to};
    for (size_t k = 0; k < 4; k++) {
        dmsg_pk saved = *ends[k];
        *ends[k] = f.i;
        expect_check(&f.route, DMSG_EPROTO, bad_desc);
        *ends[k] = saved;
    }
    expect_check(&f.route, 0, NULL);
    /* a descriptor with other keys */
    dmsg_route_addr src, dst;
    dmsg_route_desc_unpack(f.route.desc, &src, &dst);
    r = f.route;
    dmsg_route_desc_pack(r.desc, &dst, &src);
    expect_check(&r, DMSG_EPROTO, bad_desc);
}

static void expect_policy(const dmsg_bidi_route *r, const dmsg_route_policy *p, int rc,
                          const char *text)
{
    const char *why = NULL;
    cr_assert_eq(dmsg_route_check_policy(r, p, &why), rc, "expected %s", text ? text : "ok");
    if (text)
        cr_assert_str_eq(why, text);
}

Test(routing, policy_binds_the_requester_and_caps_hops)
{
    route_fixture f;
    one_hop_fixture(&f);
    dmsg_route_policy p = {.requester = &f.a, .max_hops = 2};
    expect_policy(&f.route, &p, 0, NULL);
    /* F11: a visor may only ask for routes that start at itself */
    p.requester = &f.b;
    expect_policy(&f.route, &p, DMSG_EPERM,
                  "bidirectional route does not start at the requesting visor");
    p.requester = NULL;
    expect_policy(&f.route, &p, 0, NULL);
    p.max_hops = 1;
    expect_policy(&f.route, &p, DMSG_ELIMIT, "bidirectional route has too many hops");
    dmsg_bidi_route r = f.route;
    r.forward.len = 1; /* only the reverse direction is over the cap */
    expect_policy(&r, &p, DMSG_ELIMIT, "bidirectional route has too many hops");
    p.max_hops = DMSG_ROUTE_MAX_HOPS + 1;
    expect_policy(&f.route, &p, DMSG_EINVAL, NULL);
}

Test(routing, policy_refuses_degenerate_shapes)
{
    route_fixture f;
    one_hop_fixture(&f);
    dmsg_route_policy p = {0};
    dmsg_route_hop *fw = f.st.hops[0], *rv = f.st.hops[1];

    /* source = destination */
    dmsg_bidi_route r = f.route;
    dmsg_route_addr src, dst;
    dmsg_route_desc_unpack(r.desc, &src, &dst);
    dmsg_route_desc_pack(r.desc, &src, &src);
    expect_policy(&r, &p, DMSG_EPROTO, "bidirectional route starts and ends at the same visor");

    /* a hop whose keys do not join up with the next one */
    fw[1].from = f.b;
    expect_policy(&f.route, &p, DMSG_EPROTO, "bidirectional route has hops that do not join up");
    fw[1].from = f.i;

    /* a relay that is an edge: A -> B -> ... with B relaying back */
    fw[0].to = f.b;
    fw[1].from = f.b;
    expect_policy(&f.route, &p, DMSG_EPROTO,
                  "bidirectional route passes through one of its edge visors");
    fw[0].to = f.i;
    fw[1].from = f.i;

    /* an intermediary without a key (Go omits a zero key; it decodes as zero) */
    memset(&rv[0].to, 0, sizeof rv[0].to);
    memset(&rv[1].from, 0, sizeof rv[1].from);
    expect_policy(&f.route, &p, DMSG_EPROTO, "bidirectional route has a hop without a public key");
    rv[0].to = f.i;
    rv[1].from = f.i;
    expect_policy(&f.route, &p, 0, NULL);
}

/* ---- reservation and generation beyond the vectors ---- */

Test(routing, plan_counts_ids_and_refuses_wrong_reservations)
{
    route_fixture f;
    one_hop_fixture(&f);
    dmsg_route_plan plan;
    cr_assert_eq(dmsg_route_plan_init(&plan, &f.route), 0);
    cr_assert_eq(plan.nvisors, 3);
    int a = dmsg_route_plan_find(&plan, &f.a), b = dmsg_route_plan_find(&plan, &f.b),
        i = dmsg_route_plan_find(&plan, &f.i);
    cr_assert(a >= 0 && b >= 0 && i >= 0);
    /* B.3: each of the three visors of a 1-hop route reserves 2 */
    cr_assert_eq(plan.visors[a].need, 2);
    cr_assert_eq(plan.visors[b].need, 2);
    cr_assert_eq(plan.visors[i].need, 2);
    cr_assert_eq(plan.visors[a].roles, DMSG_ROUTE_ROLE_INITIATOR);
    cr_assert_eq(plan.visors[b].roles, DMSG_ROUTE_ROLE_RESPONDER);
    cr_assert_eq(plan.visors[i].roles, DMSG_ROUTE_ROLE_INTERMEDIARY);

    uint32_t ids[3] = {7, 8, 9};
    cr_assert_eq(dmsg_route_plan_set_ids(&plan, (size_t)a, ids, 1), DMSG_EPROTO);
    cr_assert_eq(dmsg_route_plan_set_ids(&plan, (size_t)a, ids, 3), DMSG_EPROTO);
    cr_assert_eq(dmsg_route_plan_set_ids(&plan, 3, ids, 2), DMSG_EINVAL);
    cr_assert_eq(dmsg_route_plan_set_ids(&plan, (size_t)a, ids, 2), 0);
    cr_assert_eq(dmsg_route_plan_set_ids(&plan, (size_t)a, ids, 2), DMSG_ESTATE);

    /* a visor without ids: Go's "id reservoir has no key" */
    dmsg_route_rules rules;
    const char *why = NULL;
    cr_assert_eq(dmsg_route_generate(&plan, &f.route, &rules, &why), DMSG_ENOTFOUND);
    cr_assert_str_eq(why, "id reservoir has no key");

    dmsg_bidi_route r = f.route;
    r.reverse.len = 0;
    cr_assert_eq(dmsg_route_plan_init(&plan, &r), DMSG_EPROTO);
    cr_assert_eq(plan.nvisors, 0);
}

Test(routing, plan_refuses_more_hops_than_a_visor_accepts)
{
    static dmsg_route_hop hops[DMSG_ROUTE_MAX_HOPS + 1];
    route_fixture f;
    one_hop_fixture(&f);
    for (size_t k = 0; k < DMSG_ROUTE_MAX_HOPS + 1; k++)
        hops[k] = f.st.hops[0][0];
    dmsg_bidi_route r = f.route;
    r.forward = (dmsg_gob_slice){hops, DMSG_ROUTE_MAX_HOPS + 1};
    dmsg_route_plan plan;
    cr_assert_eq(dmsg_route_plan_init(&plan, &r), DMSG_ELIMIT);
    r.forward.len = DMSG_ROUTE_MAX_HOPS;
    cr_assert_eq(dmsg_route_plan_init(&plan, &r), 0);
}

static dmsg_pk key_of(uint8_t label)
{
    dmsg_sk sk;
    dmsg_pk pk;
    memset(sk.b, 0, sizeof sk.b);
    sk.b[31] = label;
    cr_assert_eq(dmsg_pk_from_sk(&pk, &sk), 0);
    return pk;
}

static bool all_of_zero(const uint8_t *p, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (p[k])
            return false;
    return true;
}

static void make_path(dmsg_route_hop *hops, const dmsg_pk *keys, size_t n, uint8_t tp_base)
{
    for (size_t k = 0; k < n; k++) {
        memset(hops[k].tp_id, tp_base + (int)k, DMSG_TP_ID_LEN);
        hops[k].from = keys[k];
        hops[k].to = keys[k + 1];
    }
}

/* Follows the rules hop by hop: a packet sent by the source under its FWD rule must arrive at
 * the destination's REV rule, through each intermediary's INTER rule, on the transports of the
 * path. */
static void walk_path(const dmsg_route_plan *plan, const dmsg_route_rules *rules,
                      const dmsg_rule *first, const dmsg_rule *last, const dmsg_route_hop *hops,
                      size_t n, const dmsg_pk *keys)
{
    dmsg_rule_summary s;
    cr_assert_eq(dmsg_rule_parse(first->b, first->len, &s), 0);
    cr_assert_eq(s.type, DMSG_RULE_FORWARD);
    cr_assert_eq(memcmp(s.next_tp_id, hops[0].tp_id, DMSG_TP_ID_LEN), 0);
    uint32_t next = s.next_route_id;
    for (size_t k = 1; k < n; k++) {
        int v = dmsg_route_plan_find(plan, &keys[k]);
        dmsg_gob_bytes mine[DMSG_ROUTE_MAX_INTER];
        size_t cnt, found = 0;
        cr_assert_eq(dmsg_route_rules_for_visor(rules, (size_t)v, mine, DMSG_ROUTE_MAX_INTER,
                                                &cnt), 0);
        for (size_t j = 0; j < cnt; j++) {
            dmsg_rule_summary t;
            cr_assert_eq(dmsg_rule_parse(mine[j].ptr, mine[j].len, &t), 0);
            cr_assert_eq(t.type, DMSG_RULE_INTERMEDIARY);
            if (t.key_route_id != next)
                continue;
            cr_assert_eq(memcmp(t.next_tp_id, hops[k].tp_id, DMSG_TP_ID_LEN), 0);
            next = t.next_route_id;
            found++;
            break;
        }
        cr_assert_eq(found, 1, "hop %zu has no rule for route id %u", k, next);
    }
    cr_assert_eq(dmsg_rule_parse(last->b, last->len, &s), 0);
    cr_assert_eq(s.type, DMSG_RULE_CONSUME);
    cr_assert_eq(s.key_route_id, next);
}

Test(routing, three_hop_routes_chain_their_route_ids)
{
    dmsg_pk fkeys[4] = {key_of(1), key_of(2), key_of(3), key_of(4)};
    dmsg_pk rkeys[4] = {key_of(4), key_of(5), key_of(2), key_of(1)};
    static dmsg_route_hop fwd[3], rev[3];
    make_path(fwd, fkeys, 3, 0x10);
    make_path(rev, rkeys, 3, 0x20);
    dmsg_bidi_route route = {.keep_alive = -1, .forward = {fwd, 3}, .reverse = {rev, 3}};
    dmsg_route_addr src = {fkeys[0], 49153}, dst = {fkeys[3], 7};
    dmsg_route_desc_pack(route.desc, &src, &dst);
    const char *why = NULL;
    dmsg_route_policy p = {.requester = &fkeys[0], .max_hops = 3};
    cr_assert_eq(dmsg_route_check(&route, &why), 0);
    cr_assert_eq(dmsg_route_check_policy(&route, &p, &why), 0, "%s", why);

    static dmsg_route_plan plan;
    cr_assert_eq(dmsg_route_plan_init(&plan, &route), 0);
    cr_assert_eq(plan.nvisors, 5);
    /* key 2 relays both ways, key 3 and key 5 one way each */
    cr_assert_eq(plan.visors[dmsg_route_plan_find(&plan, &fkeys[1])].need, 2);
    cr_assert_eq(plan.visors[dmsg_route_plan_find(&plan, &fkeys[2])].need, 1);
    cr_assert_eq(plan.visors[dmsg_route_plan_find(&plan, &rkeys[1])].need, 1);
    uint32_t base = 100;
    for (size_t v = 0; v < plan.nvisors; v++) {
        uint32_t ids[8];
        for (size_t k = 0; k < plan.visors[v].need; k++)
            ids[k] = base++;
        cr_assert_eq(dmsg_route_plan_set_ids(&plan, v, ids, plan.visors[v].need), 0);
    }
    static dmsg_route_rules rules;
    cr_assert_eq(dmsg_route_generate(&plan, &route, &rules, &why), 0);
    cr_assert_eq(rules.ninter, 4);
    walk_path(&plan, &rules, &rules.initiator_forward, &rules.responder_reverse, fwd, 3, fkeys);
    walk_path(&plan, &rules, &rules.responder_forward, &rules.initiator_reverse, rev, 3, rkeys);
    /* the negative keep-alive is stored as 0 in every rule */
    for (size_t k = 0; k < rules.ninter; k++)
        cr_assert(all_of_zero(rules.inter[k].rule.b, 8));
    /* the forward path's rule comes first for a visor on both paths */
    dmsg_gob_bytes mine[4];
    size_t cnt;
    int v2 = dmsg_route_plan_find(&plan, &fkeys[1]);
    cr_assert_eq(dmsg_route_rules_for_visor(&rules, (size_t)v2, mine, 4, &cnt), 0);
    cr_assert_eq(cnt, 2);
    dmsg_rule_summary s0, s1;
    cr_assert_eq(dmsg_rule_parse(mine[0].ptr, mine[0].len, &s0), 0);
    cr_assert_eq(dmsg_rule_parse(mine[1].ptr, mine[1].len, &s1), 0);
    cr_assert_eq(s0.next_tp_id[0], 0x11);
    cr_assert_eq(s1.next_tp_id[0], 0x22);
    cr_assert_eq(dmsg_route_rules_for_visor(&rules, (size_t)v2, mine, 1, &cnt), DMSG_ETOOBIG);
}
